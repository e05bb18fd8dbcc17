//! The canonical tracking event: the Rust side of `avro/tracking_event.v*.avsc`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Declares a frozen, upper-case enum whose symbols are exactly the Avro enum's symbols.
macro_rules! contract_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $symbol:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $symbol)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $symbol),+ }
            }

            /// Position of the symbol in the Avro enum.
            pub fn index(self) -> u32 {
                Self::ALL.iter().position(|v| *v == self).expect("listed in ALL") as u32
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownSymbol;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($symbol => Ok($name::$variant),)+
                    _ => Err(UnknownSymbol { kind: stringify!($name), symbol: s.to_owned() }),
                }
            }
        }
    };
}

/// A string that is not a symbol of the named contract enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {symbol:?}")]
pub struct UnknownSymbol {
    pub kind: &'static str,
    pub symbol: String,
}

contract_enum!(
    /// The nine event names. They are frozen: a new one is a new contract version.
    EventName {
        Click => "CLICK",
        Lead => "LEAD",
        QualifiedLead => "QUALIFIED_LEAD",
        ApprovedLead => "APPROVED_LEAD",
        RejectedLead => "REJECTED_LEAD",
        Sale => "SALE",
        Refund => "REFUND",
        Chargeback => "CHARGEBACK",
        Canceled => "CANCELED",
    }
);

contract_enum!(PayoutStatus {
    Pending => "PENDING",
    Approved => "APPROVED",
    Rejected => "REJECTED",
    Paid => "PAID",
    Reversed => "REVERSED",
});

contract_enum!(RefundStatus {
    None => "NONE",
    Partial => "PARTIAL",
    Full => "FULL",
});

contract_enum!(ConsentState {
    Granted => "GRANTED",
    Denied => "DENIED",
    Unknown => "UNKNOWN",
    NotRequired => "NOT_REQUIRED",
});

impl EventName {
    /// Events that take money back or end a subscription; they link to an earlier SALE.
    pub fn is_reversal(self) -> bool {
        matches!(
            self,
            EventName::Refund | EventName::Chargeback | EventName::Canceled
        )
    }

    /// Lead status changes; they link to an earlier LEAD.
    pub fn is_lead_status(self) -> bool {
        matches!(
            self,
            EventName::QualifiedLead | EventName::ApprovedLead | EventName::RejectedLead
        )
    }
}

/// The network a first-party producer's events are attributed to.
pub const FIRST_PARTY: &str = "first_party";

/// One canonical tracking event, as it travels on `tracking.events.v1`.
///
/// Money is exact (`rust_decimal`) and carried as a non-negative magnitude; the ledger
/// derives the sign from `event_name`. Times are UTC with millisecond precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackingEvent {
    pub event_id: String,
    pub event_name: EventName,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub occurred_at: DateTime<Utc>,
    pub occurred_at_original: Option<String>,
    pub source_timezone: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds_option")]
    pub settled_at: Option<DateTime<Utc>>,
    pub network: String,
    pub order_id: Option<String>,
    pub transaction_id: Option<String>,
    pub parent_order_id: Option<String>,
    pub rebill_sequence: Option<i32>,
    pub lead_id: Option<String>,
    pub native_event_type: Option<String>,
    pub status_only: bool,
    pub click_id: Option<String>,
    pub affiliate_id: Option<String>,
    pub campaign_id: Option<String>,
    pub offer_id: Option<String>,
    pub source: Option<String>,
    pub placement: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub sub1: Option<String>,
    pub sub2: Option<String>,
    pub sub3: Option<String>,
    pub sub4: Option<String>,
    pub sub5: Option<String>,
    pub revenue: Option<Decimal>,
    pub payout: Option<Decimal>,
    pub currency: Option<String>,
    pub payout_status: Option<PayoutStatus>,
    pub refund_status: Option<RefundStatus>,
    pub is_test: bool,
    pub consent_state: ConsentState,
    pub data_minimization: Vec<String>,
    pub ip_hash: Option<String>,
    pub email_hash: Option<String>,
    pub user_agent: Option<String>,
    pub route: String,
    pub delivery_attempt: Option<i32>,
    pub attributes: BTreeMap<String, String>,
    /// Traffic-quality flags of a click (contract v2; see [`crate::quality`]). Not part of
    /// the event as the ledger embeds it: the processor moves them to the entry's `flags`.
    pub quality_flags: Vec<String>,
    /// The ad platforms' matching hashes (contract v3; see [`crate::matching`]). The ledger
    /// entry carries them beside its embedded event, and the outbox to the forwarder.
    #[serde(default)]
    pub match_keys: Option<crate::matching::MatchKeys>,
    /// The ad platforms' click and browser IDs of the visit (contract v3), carried like
    /// `match_keys`.
    #[serde(default)]
    pub platform_ids: Option<crate::matching::PlatformIds>,
}

impl TrackingEvent {
    /// A minimal event with every optional field empty; callers fill in the rest.
    pub fn new(
        event_id: impl Into<String>,
        event_name: EventName,
        occurred_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
        network: impl Into<String>,
        route: impl Into<String>,
    ) -> Self {
        TrackingEvent {
            event_id: event_id.into(),
            event_name,
            occurred_at,
            occurred_at_original: None,
            source_timezone: None,
            received_at,
            settled_at: None,
            network: network.into(),
            order_id: None,
            transaction_id: None,
            parent_order_id: None,
            rebill_sequence: None,
            lead_id: None,
            native_event_type: None,
            status_only: false,
            click_id: None,
            affiliate_id: None,
            campaign_id: None,
            offer_id: None,
            source: None,
            placement: None,
            utm_source: None,
            utm_medium: None,
            utm_campaign: None,
            utm_term: None,
            utm_content: None,
            sub1: None,
            sub2: None,
            sub3: None,
            sub4: None,
            sub5: None,
            revenue: None,
            payout: None,
            currency: None,
            payout_status: None,
            refund_status: None,
            is_test: false,
            consent_state: ConsentState::Unknown,
            data_minimization: Vec::new(),
            ip_hash: None,
            email_hash: None,
            user_agent: None,
            route: route.into(),
            delivery_attempt: None,
            attributes: BTreeMap::new(),
            quality_flags: Vec::new(),
            match_keys: None,
            platform_ids: None,
        }
    }
}
