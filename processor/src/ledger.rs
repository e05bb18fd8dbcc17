//! The ledger of one input partition: dedup on `event_id` and the lifecycle joins per
//! conversion key. Pure: no I/O, so that every rule is unit-tested. The exactly-once engine
//! feeds it events in offset order and writes what it returns in one Kafka transaction.

use chrono::{DateTime, Utc};
use schemas::key::KeyKind;
use schemas::ledger::flags;
use schemas::money::{Money, MoneyError};
use schemas::offers::Offers;
use schemas::{
    ConversionStatus, EventName, LedgerEntry, LinkStatus, PayoutSource, Receipt, ReceiptKind,
    TrackingEvent,
};
use serde::{Deserialize, Serialize};

use crate::payout::{self, Decision, RulePaid};

/// The dedup map key: a 128-bit hash of the `event_id` (xxh3, stable by specification).
/// Keeping the hash instead of the string is what keeps a dedup key under 50 bytes.
pub type EventKey = u128;

pub fn event_key(event_id: &str) -> EventKey {
    xxhash_rust::xxh3::xxh3_128(event_id.as_bytes())
}

/// What the ledger remembers about an `event_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Content fingerprint of the occurrence that was counted.
    pub fingerprint: u64,
    /// When ingest received that occurrence (ms); the dedup window counts from here.
    pub first_received_ms: i64,
    /// Occurrences so far, the counted one included.
    pub count: u32,
    /// A click's: it expires after the click window, not the dedup window. Last: the
    /// changelog's format 2 appended it (it fits in the struct's padding, so memory per key
    /// is unchanged).
    pub click: bool,
}

/// A reversal or status change recorded before its original arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    pub event_id: String,
    pub event_name: EventName,
    pub received_ms: i64,
    pub is_test: bool,
    /// Whether it has been reported as an orphan already.
    pub reported: bool,
}

/// The state of one conversion (a sale with its reversals, or a lead with its statuses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    /// The first SALE's event_id.
    pub sale: Option<String>,
    /// The first LEAD's event_id.
    pub lead: Option<String>,
    pub gross_revenue: Money,
    pub gross_payout: Money,
    pub reversed_revenue: Money,
    pub net_revenue: Money,
    pub net_payout: Money,
    pub charged_back: bool,
    pub canceled: bool,
    /// The lead's status, which may be known before the lead itself.
    pub lead_status: Option<ConversionStatus>,
    pub awaiting: Vec<Awaiting>,
    /// Last time an event touched the conversion (ms); it expires a window after.
    pub touched_ms: i64,
    /// The payout rule that paid the conversion, for its clawbacks.
    pub rule_paid: Option<RulePaid>,
    /// The currency of the conversion's amounts: the first that an event of it named.
    /// Last, with `rule_paid`: the changelog's format 2 appended both to format 1.
    pub currency: Option<String>,
    /// The offer whose caps decided the conversion: its later entries go through the capping
    /// stage too, keyed by it, whatever offer they name. Format 3 appended it.
    pub capped_offer: Option<String>,
    /// The click whose IDs the conversion takes: its later entries go through the click-ID
    /// stage too, keyed by it, so none overtakes an earlier one. Format 4 appended it.
    pub click_ids_from: Option<String>,
}

impl Conversion {
    fn sale_status(&self) -> ConversionStatus {
        if self.sale.is_none() {
            ConversionStatus::AwaitingOriginal
        } else if self.charged_back {
            ConversionStatus::ChargedBack
        } else if self.reversed_revenue.is_positive() && self.reversed_revenue >= self.gross_revenue
        {
            ConversionStatus::Refunded
        } else if self.reversed_revenue.is_positive() {
            ConversionStatus::PartiallyRefunded
        } else if self.canceled {
            ConversionStatus::Canceled
        } else {
            ConversionStatus::Sold
        }
    }

    fn lead_track_status(&self) -> ConversionStatus {
        if self.lead.is_none() {
            ConversionStatus::AwaitingOriginal
        } else {
            self.lead_status.unwrap_or(ConversionStatus::Lead)
        }
    }
}

fn lead_rank(s: ConversionStatus) -> u8 {
    match s {
        ConversionStatus::Qualified => 1,
        ConversionStatus::Approved | ConversionStatus::Rejected => 2,
        _ => 0,
    }
}

fn lead_status_of(name: EventName) -> ConversionStatus {
    match name {
        EventName::QualifiedLead => ConversionStatus::Qualified,
        EventName::ApprovedLead => ConversionStatus::Approved,
        EventName::RejectedLead => ConversionStatus::Rejected,
        _ => ConversionStatus::Lead,
    }
}

/// Keys of the conversions whose lifecycle the ledger joins; clicks and unkeyed events stand
/// alone.
/// A piece of state that changed; the changelog gets its value as of the commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateKey {
    Seen(EventKey),
    Conversion(String),
}

/// A changelog record: the value of a state key, `None` once it is gone.
// One lives at a time, while it is encoded or restored: boxing the conversion would cost an
// allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Seen(EventKey, Option<Seen>),
    Conversion(String, Option<Conversion>),
}

/// Where an event was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// What one input event produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub entry: Option<LedgerEntry>,
    pub receipt: Option<Receipt>,
    pub changed: Vec<StateKey>,
}

/// Which of the three kinds of occurrence an event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    First,
    Duplicate,
    Conflict,
}

impl Outcome {
    pub fn occurrence(&self) -> Occurrence {
        match &self.receipt {
            None => Occurrence::First,
            Some(r) if r.kind == ReceiptKind::Conflict => Occurrence::Conflict,
            Some(_) => Occurrence::Duplicate,
        }
    }
}

/// Orphan receipts and the state changes that mark them reported.
#[derive(Debug, Default)]
pub struct OrphanReport {
    pub receipts: Vec<Receipt>,
    pub changed: Vec<StateKey>,
}

/// The dedup and conversion state of one partition.
#[derive(Debug, Default)]
pub struct PartitionLedger {
    pub seen: HashMap<EventKey, Seen>,
    pub conversions: HashMap<String, Conversion>,
}

// hashbrown's default hasher (foldhash) rather than std's SipHash: the keys are hashes or
// conversion keys, and SipHash showed in the processor's profile.
type HashMap<K, V> = hashbrown::HashMap<K, V>;

fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl PartitionLedger {
    /// Applies one event read at `at`, whose content fingerprint is `fingerprint`, with the
    /// payout rules of `offers`. An amount, or a conversion total, outside `decimal(18, 6)`
    /// is an error, and then nothing changed.
    pub fn apply(
        &mut self,
        event: TrackingEvent,
        conversion_key: String,
        fingerprint: u64,
        at: Position,
        now: DateTime<Utc>,
        offers: &Offers,
    ) -> Result<Outcome, MoneyError> {
        let key = event_key(&event.event_id);
        if let Some(seen) = self.seen.get_mut(&key) {
            seen.count = seen.count.saturating_add(1);
            let seen = *seen;
            let kind = if seen.fingerprint == fingerprint {
                ReceiptKind::Duplicate
            } else {
                ReceiptKind::Conflict
            };
            let receipt = Receipt {
                conversion_key,
                kind,
                event_name: event.event_name.as_str().to_owned(),
                occurrence: i32::try_from(seen.count).unwrap_or(i32::MAX),
                route: event.route,
                delivery_attempt: event.delivery_attempt,
                received_at: event.received_at,
                first_received_at: DateTime::from_timestamp_millis(seen.first_received_ms)
                    .unwrap_or_default(),
                content_fingerprint: fingerprint_hex(fingerprint),
                first_fingerprint: fingerprint_hex(seen.fingerprint),
                is_test: event.is_test,
                recorded_at: now,
                input_partition: at.partition,
                input_offset: at.offset,
                event_id: event.event_id,
            };
            return Ok(Outcome {
                entry: None,
                receipt: Some(receipt),
                changed: vec![StateKey::Seen(key)],
            });
        }

        let seen = Seen {
            fingerprint,
            first_received_ms: millis(event.received_at),
            count: 1,
            click: event.event_name == EventName::Click,
        };
        let mut changed = vec![StateKey::Seen(key)];
        // An amount the ledger cannot hold changes no state: the event is refused whole.
        let entry = if KeyKind::of(&conversion_key).has_lifecycle() {
            let conversion = self.conversions.entry(conversion_key.clone()).or_default();
            let entry = join(conversion, event, conversion_key.clone(), at, now, offers)?;
            changed.push(StateKey::Conversion(conversion_key));
            entry
        } else {
            standalone(event, conversion_key, at, now, offers)?
        };
        self.seen.insert(key, seen);
        Ok(Outcome {
            entry: Some(entry),
            receipt: None,
            changed,
        })
    }

    /// Forgets event IDs first received, and conversions last touched, before `horizon_ms`,
    /// and click IDs first received before `click_horizon_ms`.
    pub fn expire(&mut self, horizon_ms: i64, click_horizon_ms: i64) -> Vec<StateKey> {
        let mut changes = Vec::new();
        self.seen.retain(|key, seen| {
            let horizon = if seen.click {
                click_horizon_ms
            } else {
                horizon_ms
            };
            let keep = seen.first_received_ms >= horizon;
            if !keep {
                changes.push(StateKey::Seen(*key));
            }
            keep
        });
        self.conversions.retain(|key, c| {
            let keep = c.touched_ms >= horizon_ms;
            if !keep {
                changes.push(StateKey::Conversion(key.clone()));
            }
            keep
        });
        changes
    }

    /// Reports, once each, reversals and status changes still waiting for their original
    /// that were received before `horizon_ms`.
    pub fn report_orphans(&mut self, horizon_ms: i64, now: DateTime<Utc>) -> OrphanReport {
        let mut report = OrphanReport::default();
        for (key, conversion) in &mut self.conversions {
            let mut touched = false;
            for a in conversion
                .awaiting
                .iter_mut()
                .filter(|a| !a.reported && a.received_ms < horizon_ms)
            {
                a.reported = true;
                touched = true;
                let received = DateTime::from_timestamp_millis(a.received_ms).unwrap_or_default();
                report.receipts.push(Receipt {
                    event_id: a.event_id.clone(),
                    conversion_key: key.clone(),
                    kind: ReceiptKind::Orphaned,
                    event_name: a.event_name.as_str().to_owned(),
                    occurrence: 1,
                    route: String::new(),
                    delivery_attempt: None,
                    received_at: received,
                    first_received_at: received,
                    content_fingerprint: String::new(),
                    first_fingerprint: String::new(),
                    is_test: a.is_test,
                    recorded_at: now,
                    input_partition: -1,
                    input_offset: -1,
                });
            }
            if touched {
                report.changed.push(StateKey::Conversion(key.clone()));
            }
        }
        report
    }

    /// The changelog record of `key` as the state holds it now.
    pub fn current(&self, key: &StateKey) -> Change {
        match key {
            StateKey::Seen(k) => Change::Seen(*k, self.seen.get(k).copied()),
            StateKey::Conversion(k) => {
                Change::Conversion(k.clone(), self.conversions.get(k).cloned())
            }
        }
    }

    /// Applies a changelog record while restoring.
    pub fn restore(&mut self, change: Change) {
        match change {
            Change::Seen(k, Some(s)) => {
                self.seen.insert(k, s);
            }
            Change::Seen(k, None) => {
                self.seen.remove(&k);
            }
            Change::Conversion(k, Some(c)) => {
                self.conversions.insert(k, c);
            }
            Change::Conversion(k, None) => {
                self.conversions.remove(&k);
            }
        }
    }

    /// Forgets a conversion and the dedup entries of its events (an erasure request). A
    /// later repeat of one of these events counts as new: the price of forgetting.
    pub fn erase(&mut self, conversion_key: &str, event_ids: &[String]) -> Vec<StateKey> {
        let mut changed = Vec::with_capacity(event_ids.len() + 1);
        for id in event_ids {
            let key = event_key(id);
            self.seen.remove(&key);
            changed.push(StateKey::Seen(key));
        }
        self.conversions.remove(conversion_key);
        changed.push(StateKey::Conversion(conversion_key.to_owned()));
        changed
    }
}

fn base_entry(
    mut event: TrackingEvent,
    conversion_key: String,
    status: ConversionStatus,
    at: Position,
    now: DateTime<Utc>,
) -> LedgerEntry {
    // A click's quality flags are the entry's: the ledger embeds the event without them.
    let flags = std::mem::take(&mut event.quality_flags);
    LedgerEntry {
        conversion_key,
        link_status: LinkStatus::None,
        linked_event_id: None,
        adopted_event_ids: Vec::new(),
        signed_revenue: Money::ZERO,
        signed_payout: Money::ZERO,
        conversion_status: status,
        net_revenue: Money::ZERO,
        net_payout: Money::ZERO,
        flags,
        recorded_at: now,
        input_partition: at.partition,
        input_offset: at.offset,
        payout_source: PayoutSource::None,
        payout_rule: None,
        event,
    }
}

/// The entry's payout as the rules decide it, where the event carries none: the signed
/// payout, and the rule (and its currency) when one applied.
fn rule_payout(
    offers: &Offers,
    c: &Conversion,
    event: &TrackingEvent,
    signed_revenue: Money,
    ledger_payout: Money,
) -> Result<(Money, Decision), MoneyError> {
    if event.payout.is_some() {
        return Ok((ledger_payout, Decision::Silent));
    }
    let decision = payout::decide(offers, c, event, signed_revenue)?;
    let amount = match &decision {
        Decision::Paid { amount, .. } => *amount,
        Decision::CurrencyMismatch { .. } => Money::ZERO,
        Decision::Silent => ledger_payout,
    };
    Ok((amount, decision))
}

/// Records on the entry where its payout came from.
fn mark_payout(entry: &mut LedgerEntry, decision: Decision) {
    entry.payout_source = if entry.event.payout.is_some() {
        PayoutSource::Event
    } else {
        match &decision {
            Decision::Paid { .. } => PayoutSource::Rule,
            Decision::CurrencyMismatch { .. } => PayoutSource::None,
            // A reversal's share of a payout the event of its sale carried.
            Decision::Silent if entry.signed_payout != Money::ZERO => PayoutSource::Event,
            Decision::Silent => PayoutSource::None,
        }
    };
    match decision {
        Decision::Paid { rule, currency, .. } => {
            entry.payout_rule = Some(rule);
            // An amount is in the entry's currency: a fixed amount names it where the event
            // (a lead status, a sale without revenue) did not.
            if entry.event.currency.is_none() && entry.signed_payout != Money::ZERO {
                entry.event.currency = Some(currency);
            }
        }
        Decision::CurrencyMismatch { rule } => {
            entry.payout_rule = Some(rule);
            entry.flags.push(flags::PAYOUT_CURRENCY_MISMATCH.into());
        }
        Decision::Silent => {}
    }
}

/// A click (or an event with no conversion key): counted once, joined to nothing.
fn standalone(
    event: TrackingEvent,
    conversion_key: String,
    at: Position,
    now: DateTime<Utc>,
    offers: &Offers,
) -> Result<LedgerEntry, MoneyError> {
    let status = match event.event_name {
        EventName::Click => ConversionStatus::Clicked,
        EventName::Sale => ConversionStatus::Sold,
        _ => lead_status_of(event.event_name),
    };
    let revenue = Money::of(event.revenue)?;
    let own = Money::of(event.payout)?;
    let (payout, decision) = rule_payout(offers, &Conversion::default(), &event, revenue, own)?;
    let mut entry = base_entry(event, conversion_key, status, at, now);
    entry.signed_revenue = revenue;
    entry.signed_payout = payout;
    entry.net_revenue = revenue;
    entry.net_payout = payout;
    mark_payout(&mut entry, decision);
    Ok(entry)
}

/// An entry's signed amounts, from the conversion as it stands: an original adds what it
/// carries; a reversal takes what it carries, or, a full refund (a refund or chargeback
/// without an amount), the rest of the sale's net.
fn signed_amounts(
    c: &Conversion,
    name: EventName,
    revenue: Option<Money>,
    payout: Option<Money>,
    full_refund: bool,
) -> (Money, Money) {
    match name {
        EventName::Refund | EventName::Chargeback | EventName::Canceled => {
            let whole = |given: Option<Money>, net: Money| match given {
                Some(amount) => -amount,
                None if c.sale.is_some() && full_refund => -net.max(Money::ZERO),
                None => Money::ZERO,
            };
            (whole(revenue, c.net_revenue), whole(payout, c.net_payout))
        }
        EventName::Click => (Money::ZERO, Money::ZERO),
        _ => (revenue.unwrap_or_default(), payout.unwrap_or_default()),
    }
}

/// The lifecycle join: the entry for a first occurrence within its conversion. Every sum is
/// checked before the conversion changes, so an error leaves it as it was.
fn join(
    c: &mut Conversion,
    event: TrackingEvent,
    conversion_key: String,
    at: Position,
    now: DateTime<Utc>,
    offers: &Offers,
) -> Result<LedgerEntry, MoneyError> {
    let name = event.event_name;
    let revenue = event.revenue.map(Money::from_decimal).transpose()?;
    let payout = event.payout.map(Money::from_decimal).transpose()?;
    let full_refund = revenue.is_none() && name.is_reversal() && name != EventName::Canceled;
    let (signed_revenue, ledger_payout) = signed_amounts(c, name, revenue, payout, full_refund);
    let (signed_payout, decision) = rule_payout(offers, c, &event, signed_revenue, ledger_payout)?;
    let remaining_revenue = c.net_revenue.max(Money::ZERO);
    let (mut gross_revenue, mut gross_payout) = (c.gross_revenue, c.gross_payout);
    let mut reversed_revenue = c.reversed_revenue;
    if name == EventName::Sale {
        gross_revenue = gross_revenue.checked_add(signed_revenue)?;
        gross_payout = gross_payout.checked_add(signed_payout)?;
    }
    if name == EventName::Refund || name == EventName::Chargeback {
        reversed_revenue = reversed_revenue.checked_sub(signed_revenue)?;
    }
    let net_revenue = c.net_revenue.checked_add(signed_revenue)?;
    let net_payout = c.net_payout.checked_add(signed_payout)?;

    c.touched_ms = c.touched_ms.max(millis(now));
    if let Decision::Paid {
        amount,
        rule,
        currency,
    } = &decision
    {
        if amount.is_positive() {
            c.rule_paid = Some(RulePaid {
                rule: rule.clone(),
                currency: currency.clone(),
            });
        }
    }
    (c.gross_revenue, c.gross_payout) = (gross_revenue, gross_payout);
    c.reversed_revenue = reversed_revenue;
    (c.net_revenue, c.net_payout) = (net_revenue, net_payout);
    let event_id = event.event_id.clone();
    let received_ms = millis(event.received_at);
    let is_test = event.is_test;
    let mut entry = base_entry(event, conversion_key, ConversionStatus::Sold, at, now);

    match name {
        EventName::Sale => match &c.sale {
            // A rebill or another sale on the same order links to the first one.
            Some(first) => {
                entry.link_status = LinkStatus::Linked;
                entry.linked_event_id = Some(first.clone());
            }
            None => {
                c.sale = Some(event_id);
                entry.adopted_event_ids = adopt(c, |n| n.is_reversal());
                if !entry.adopted_event_ids.is_empty() && c.reversed_revenue > c.gross_revenue {
                    entry.flags.push(flags::OVER_REVERSAL.into());
                }
            }
        },
        EventName::Refund | EventName::Chargeback | EventName::Canceled => {
            if full_refund && c.sale.is_none() {
                entry.flags.push(flags::AMOUNT_UNKNOWN.into());
            }
            match name {
                EventName::Chargeback => c.charged_back = true,
                EventName::Canceled => c.canceled = true,
                _ => {}
            }
            match &c.sale {
                Some(sale) => {
                    entry.link_status = LinkStatus::Linked;
                    entry.linked_event_id = Some(sale.clone());
                    if -signed_revenue > remaining_revenue {
                        entry.flags.push(flags::OVER_REVERSAL.into());
                    }
                }
                None => await_original(c, &mut entry, event_id, name, received_ms, is_test),
            }
        }
        EventName::Lead => match &c.lead {
            Some(first) => {
                entry.link_status = LinkStatus::Linked;
                entry.linked_event_id = Some(first.clone());
                entry.flags.push(flags::SECOND_ORIGINAL.into());
            }
            None => {
                c.lead = Some(event_id);
                entry.adopted_event_ids = adopt(c, |n| n.is_lead_status());
            }
        },
        EventName::QualifiedLead | EventName::ApprovedLead | EventName::RejectedLead => {
            let new = lead_status_of(name);
            match c.lead_status {
                Some(current) if lead_rank(current) > lead_rank(new) => {
                    entry.flags.push(flags::STATUS_REGRESSION.into());
                }
                Some(current) if current != new && lead_rank(current) == lead_rank(new) => {
                    entry.flags.push(flags::STATUS_OVERTURNED.into());
                    c.lead_status = Some(new);
                }
                _ => c.lead_status = Some(new),
            }
            match &c.lead {
                Some(lead) => {
                    entry.link_status = LinkStatus::Linked;
                    entry.linked_event_id = Some(lead.clone());
                }
                None => await_original(c, &mut entry, event_id, name, received_ms, is_test),
            }
        }
        // Clicks are keyed by click ID and never reach a lifecycle join; a CLICK that names an
        // order is counted without touching the conversion's money.
        EventName::Click => {}
    }

    entry.signed_revenue = signed_revenue;
    entry.signed_payout = signed_payout;
    entry.net_revenue = c.net_revenue;
    entry.net_payout = c.net_payout;
    mark_payout(&mut entry, decision);
    // An amount the entry took from its conversion (a whole refund without one) is in the
    // conversion's currency, named where the event did not.
    if entry.event.currency.is_none()
        && (entry.signed_revenue != Money::ZERO || entry.signed_payout != Money::ZERO)
    {
        entry.event.currency = c.currency.clone();
    }
    if c.currency.is_none() {
        c.currency = entry.event.currency.clone();
    }
    entry.conversion_status = if name == EventName::Click {
        ConversionStatus::Clicked
    } else if name == EventName::Lead || name.is_lead_status() {
        c.lead_track_status()
    } else {
        c.sale_status()
    };
    Ok(entry)
}

fn await_original(
    c: &mut Conversion,
    entry: &mut LedgerEntry,
    event_id: String,
    event_name: EventName,
    received_ms: i64,
    is_test: bool,
) {
    entry.link_status = LinkStatus::AwaitingOriginal;
    c.awaiting.push(Awaiting {
        event_id,
        event_name,
        received_ms,
        is_test,
        reported: false,
    });
}

/// Takes the awaiting entries the new original adopts.
fn adopt(c: &mut Conversion, belongs: impl Fn(EventName) -> bool) -> Vec<String> {
    let (adopted, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut c.awaiting)
        .into_iter()
        .partition(|a| belongs(a.event_name));
    c.awaiting = rest;
    adopted.into_iter().map(|a| a.event_id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{conversion_key, samples};

    struct Fixture {
        ledger: PartitionLedger,
        offset: i64,
        offers: Offers,
    }

    fn now() -> DateTime<Utc> {
        samples::sale().received_at + chrono::Duration::days(1)
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                ledger: PartitionLedger::default(),
                offset: 0,
                offers: Offers::default(),
            }
        }

        fn feed(&mut self, e: TrackingEvent) -> Outcome {
            self.offset += 1;
            let fp = schemas::avro::ledger::content_fingerprint(&e).unwrap();
            let key = conversion_key(&e);
            self.ledger
                .apply(
                    e,
                    key,
                    fp,
                    Position {
                        partition: 0,
                        offset: self.offset,
                    },
                    now(),
                    &self.offers,
                )
                .expect("amounts within decimal(18, 6)")
        }

        fn entry(&mut self, e: TrackingEvent) -> LedgerEntry {
            self.feed(e).entry.expect("a ledger entry")
        }
    }

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> rust_decimal::Decimal {
        s.parse().unwrap()
    }

    fn reversal(id: &str, name: EventName, revenue: Option<&str>) -> TrackingEvent {
        let mut e = samples::refund();
        e.event_id = id.into();
        e.event_name = name;
        e.revenue = revenue.map(dec);
        e.payout = None;
        e
    }

    #[test]
    fn a_rule_pays_when_the_event_does_not_and_reversals_claw_back_exactly_that() {
        let mut f = Fixture::new();
        f.offers = Offers::parse(
            "[offers.keto-vsl.payout]\nrevshare_percent = \"40\"\n\
             [offers.keto-vsl.payout.affiliates.aff-cpa]\ncpa = \"15\"\ncurrency = \"USD\"\n",
        )
        .unwrap();
        let mut sale = samples::sale();
        sale.payout = None;
        let e = f.entry(sale.clone());
        // 49.99 × 40% = 19.996
        assert_eq!(e.signed_payout, money("19.996"));
        assert_eq!(e.payout_source, PayoutSource::Rule);
        assert_eq!(
            e.payout_rule.as_deref(),
            Some("offer keto-vsl: revshare 40%")
        );
        // A rebill pays its own share.
        let mut rebill = sale.clone();
        rebill.event_id = "evt-rebill".into();
        rebill.revenue = Some(dec("10.01"));
        let e = f.entry(rebill);
        assert_eq!(e.signed_payout, money("4.004"));
        // A partial refund of 20 of the 60 claws back 24 × 20 / 60 = 8.
        let e = f.entry(reversal("r1", EventName::Refund, Some("20")));
        assert_eq!(e.signed_payout, money("-8"));
        assert_eq!(e.payout_source, PayoutSource::Rule);
        assert_eq!(
            e.payout_rule.as_deref(),
            Some("clawback of offer keto-vsl: revshare 40%")
        );
        // The chargeback of the rest takes all that is left: nothing stays paid. It names no
        // currency; its amounts are the conversion's, and so is their currency.
        let mut chargeback = reversal("c1", EventName::Chargeback, None);
        chargeback.currency = None;
        let e = f.entry(chargeback);
        assert_eq!(e.event.currency.as_deref(), Some("USD"));
        assert_eq!(e.signed_payout, money("-16"));
        assert_eq!(e.net_payout, Money::ZERO);
        assert_eq!(e.net_revenue, Money::ZERO);

        // The network's own payout wins over the rule, and so do its reversals' figures.
        let mut network = samples::sale();
        network.event_id = "evt-net".into();
        network.order_id = Some("ord-net".into());
        let e = f.entry(network);
        assert_eq!(e.signed_payout, money("20"));
        assert_eq!(e.payout_source, PayoutSource::Event);
        assert_eq!(e.payout_rule, None);

        // An affiliate's CPA in dollars: paid once, and not at all on a sale in euros.
        let mut cpa = sale.clone();
        cpa.event_id = "evt-cpa".into();
        cpa.order_id = Some("ord-cpa".into());
        cpa.affiliate_id = Some("aff-cpa".into());
        let e = f.entry(cpa.clone());
        assert_eq!(e.signed_payout, money("15"));
        let mut euros = cpa;
        euros.event_id = "evt-cpa-eur".into();
        euros.order_id = Some("ord-cpa-eur".into());
        euros.currency = Some("EUR".into());
        let e = f.entry(euros);
        assert_eq!(e.signed_payout, Money::ZERO);
        assert_eq!(e.payout_source, PayoutSource::None);
        assert_eq!(e.flags, vec![flags::PAYOUT_CURRENCY_MISMATCH.to_owned()]);
        assert_eq!(
            e.payout_rule.as_deref(),
            Some("offer keto-vsl, affiliate aff-cpa: cpa 15 USD")
        );
    }

    #[test]
    fn an_erased_conversion_is_forgotten_with_its_events() {
        let mut f = Fixture::new();
        f.entry(samples::sale());
        f.entry(samples::refund());
        let other = f.ledger.seen.len();
        let key = conversion_key(&samples::sale());
        let ids = [samples::sale().event_id, samples::refund().event_id];
        let changed = f.ledger.erase(&key, &ids);
        assert_eq!(changed.len(), 3);
        assert!(f.ledger.conversions.is_empty());
        assert_eq!(f.ledger.seen.len(), other - 2);
        for change in &changed {
            assert!(matches!(
                f.ledger.current(change),
                Change::Seen(_, None) | Change::Conversion(_, None)
            ));
        }
        // Forgotten: the same sale again is a first occurrence, not a duplicate.
        assert!(f.feed(samples::sale()).entry.is_some());
    }

    #[test]
    fn a_retry_is_a_duplicate_receipt_and_changed_content_a_conflict() {
        let mut f = Fixture::new();
        assert!(f.feed(samples::sale()).entry.is_some());

        let mut retry = samples::sale();
        retry.received_at += chrono::Duration::seconds(30);
        retry.delivery_attempt = Some(2);
        let out = f.feed(retry);
        assert!(out.entry.is_none());
        let r = out.receipt.unwrap();
        assert_eq!((r.kind, r.occurrence), (ReceiptKind::Duplicate, 2));
        assert_eq!(r.delivery_attempt, Some(2));
        assert_eq!(r.first_received_at, samples::sale().received_at);

        let mut changed = samples::sale();
        changed.revenue = Some(dec("99"));
        let out = f.feed(changed);
        assert!(out.entry.is_none());
        let r = out.receipt.unwrap();
        assert_eq!((r.kind, r.occurrence), (ReceiptKind::Conflict, 3));
        assert_ne!(r.content_fingerprint, r.first_fingerprint);
        assert_eq!(f.ledger.seen.len(), 1);
    }

    #[test]
    fn refunds_link_to_the_sale_and_net_down_to_refunded() {
        let mut f = Fixture::new();
        let sale = f.entry(samples::sale());
        assert_eq!(sale.conversion_status, ConversionStatus::Sold);
        assert_eq!(sale.signed_revenue, money("49.99"));

        let part = f.entry(reversal("r1", EventName::Refund, Some("19.99")));
        assert_eq!(part.link_status, LinkStatus::Linked);
        assert_eq!(part.linked_event_id.as_deref(), Some("evt-sale-1001"));
        assert_eq!(part.signed_revenue, money("-19.99"));
        assert_eq!(part.net_revenue, money("30"));
        assert_eq!(part.conversion_status, ConversionStatus::PartiallyRefunded);
        assert!(part.flags.is_empty());

        // No amount: the rest of the sale, payout included.
        let rest = f.entry(reversal("r2", EventName::Refund, None));
        assert_eq!(rest.signed_revenue, money("-30"));
        assert_eq!(rest.net_revenue, Money::ZERO);
        assert_eq!(rest.net_payout, Money::ZERO);
        assert_eq!(rest.conversion_status, ConversionStatus::Refunded);

        let over = f.entry(reversal("r3", EventName::Chargeback, Some("5")));
        assert_eq!(over.flags, vec![flags::OVER_REVERSAL.to_owned()]);
        assert_eq!(over.conversion_status, ConversionStatus::ChargedBack);
        assert_eq!(over.net_revenue, money("-5"));
    }

    #[test]
    fn a_reversal_before_its_sale_is_recorded_then_adopted() {
        let mut f = Fixture::new();
        let early = f.entry(reversal("r1", EventName::Refund, Some("10")));
        assert_eq!(early.link_status, LinkStatus::AwaitingOriginal);
        assert_eq!(early.conversion_status, ConversionStatus::AwaitingOriginal);
        assert_eq!(early.signed_revenue, money("-10"));

        let sale = f.entry(samples::sale());
        assert_eq!(sale.adopted_event_ids, vec!["r1".to_owned()]);
        assert_eq!(sale.net_revenue, money("39.99"));
        assert_eq!(sale.conversion_status, ConversionStatus::PartiallyRefunded);
        assert!(f.ledger.conversions.values().all(|c| c.awaiting.is_empty()));
    }

    #[test]
    fn an_early_reversal_larger_than_the_sale_is_flagged_on_adoption() {
        let mut f = Fixture::new();
        f.entry(reversal("r1", EventName::Chargeback, Some("60")));
        let sale = f.entry(samples::sale());
        assert_eq!(sale.flags, vec![flags::OVER_REVERSAL.to_owned()]);
        assert_eq!(sale.conversion_status, ConversionStatus::ChargedBack);
    }

    #[test]
    fn rebills_link_to_the_first_sale_and_add_to_gross() {
        let mut f = Fixture::new();
        f.entry(samples::sale());
        let mut rebill = samples::sale();
        rebill.event_id = "rebill-2".into();
        rebill.rebill_sequence = Some(2);
        let e = f.entry(rebill);
        assert_eq!(e.linked_event_id.as_deref(), Some("evt-sale-1001"));
        assert_eq!(e.net_revenue, money("99.98"));
        assert_eq!(e.conversion_status, ConversionStatus::Sold);
    }

    fn lead_status(id: &str, name: EventName) -> TrackingEvent {
        let mut e = samples::lead();
        e.event_id = id.into();
        e.event_name = name;
        e
    }

    #[test]
    fn lead_statuses_never_move_back_without_a_flag() {
        let mut f = Fixture::new();
        assert_eq!(
            f.entry(samples::lead()).conversion_status,
            ConversionStatus::Lead
        );
        let q = f.entry(lead_status("q", EventName::QualifiedLead));
        assert_eq!(q.conversion_status, ConversionStatus::Qualified);
        assert_eq!(q.linked_event_id, Some(samples::lead().event_id));
        let a = f.entry(lead_status("a", EventName::ApprovedLead));
        assert_eq!(a.conversion_status, ConversionStatus::Approved);

        let back = f.entry(lead_status("q2", EventName::QualifiedLead));
        assert_eq!(back.flags, vec![flags::STATUS_REGRESSION.to_owned()]);
        assert_eq!(back.conversion_status, ConversionStatus::Approved);

        let over = f.entry(lead_status("r", EventName::RejectedLead));
        assert_eq!(over.flags, vec![flags::STATUS_OVERTURNED.to_owned()]);
        assert_eq!(over.conversion_status, ConversionStatus::Rejected);
    }

    #[test]
    fn a_status_before_its_lead_waits_and_the_lead_takes_it() {
        let mut f = Fixture::new();
        let a = f.entry(lead_status("a", EventName::ApprovedLead));
        assert_eq!(a.link_status, LinkStatus::AwaitingOriginal);
        let lead = f.entry(samples::lead());
        assert_eq!(lead.adopted_event_ids, vec!["a".to_owned()]);
        assert_eq!(lead.conversion_status, ConversionStatus::Approved);
    }

    #[test]
    fn orphans_are_reported_once_after_the_horizon() {
        let mut f = Fixture::new();
        f.entry(reversal("r1", EventName::Refund, Some("1")));
        let received = samples::refund().received_at.timestamp_millis();
        assert!(f.ledger.report_orphans(received, now()).receipts.is_empty());
        let report = f.ledger.report_orphans(received + 1, now());
        assert_eq!(report.receipts.len(), 1);
        assert_eq!(report.receipts[0].kind, ReceiptKind::Orphaned);
        assert_eq!(report.receipts[0].event_id, "r1");
        assert_eq!(report.changed.len(), 1);
        assert!(f.ledger.report_orphans(i64::MAX, now()).receipts.is_empty());
    }

    #[test]
    fn a_clicks_quality_flags_become_its_entrys_flags() {
        let mut f = Fixture::new();
        let mut click = samples::click();
        click.quality_flags = vec![
            schemas::quality::BOT_USER_AGENT.into(),
            schemas::quality::DATACENTER_IP.into(),
        ];
        let e = f.entry(click);
        assert_eq!(e.flags, ["BOT_USER_AGENT", "DATACENTER_IP"]);
        assert!(e.event.quality_flags.is_empty());
    }

    #[test]
    fn clicks_stand_alone_and_expire_with_the_window() {
        let mut f = Fixture::new();
        let mut click = samples::click();
        click.received_at = samples::sale().received_at - chrono::Duration::hours(1);
        let click = f.entry(click);
        assert_eq!(click.conversion_status, ConversionStatus::Clicked);
        assert!(f.ledger.conversions.is_empty());
        f.entry(samples::sale());

        let sale_received = samples::sale().received_at.timestamp_millis();
        let changes = f.ledger.expire(sale_received, i64::MIN);
        assert!(changes.is_empty(), "a click within its own window stays");
        let changes = f.ledger.expire(sale_received, sale_received);
        // The click was received before the sale; the sale's conversion was touched "now".
        assert_eq!(changes.len(), 1);
        assert!(matches!(
            f.ledger.current(&changes[0]),
            Change::Seen(_, None)
        ));
        assert_eq!(f.ledger.seen.len(), 1);
        let changes = f.ledger.expire(i64::MAX, i64::MAX);
        assert_eq!(changes.len(), 2);
        assert!(f.ledger.seen.is_empty() && f.ledger.conversions.is_empty());
    }

    #[test]
    fn restoring_the_changes_rebuilds_the_same_state() {
        let mut f = Fixture::new();
        let mut restored = PartitionLedger::default();
        for e in [
            reversal("r1", EventName::Refund, Some("5")),
            samples::sale(),
            samples::sale(),
            samples::click(),
            samples::lead(),
        ] {
            for key in f.feed(e).changed {
                restored.restore(f.ledger.current(&key));
            }
        }
        assert_eq!(restored.seen, f.ledger.seen);
        assert_eq!(restored.conversions, f.ledger.conversions);
    }

    #[test]
    fn a_total_beyond_decimal_18_6_is_an_error_and_changes_nothing() {
        let mut f = Fixture::new();
        let mut first = samples::sale();
        first.revenue = Some(dec("999999999999"));
        let entry = f.entry(first.clone());
        assert_eq!(entry.net_revenue, money("999999999999"));
        let key = conversion_key(&first);
        let before = f.ledger.current(&StateKey::Conversion(key.clone()));
        let mut rebill = first.clone();
        rebill.event_id = "evt-rebill-huge".into();
        rebill.revenue = Some(dec("1"));
        let refused = f.ledger.apply(
            rebill.clone(),
            key.clone(),
            7,
            Position {
                partition: 0,
                offset: 99,
            },
            now(),
            &f.offers,
        );
        assert!(
            matches!(refused, Err(MoneyError::OutOfRange(_))),
            "{refused:?}"
        );
        assert_eq!(f.ledger.current(&StateKey::Conversion(key)), before);
        // Not marked seen either: the same event, fixed, is a first occurrence.
        rebill.revenue = Some(dec("0"));
        assert!(f.feed(rebill).entry.is_some());
    }
}
