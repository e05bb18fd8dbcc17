//! Sample events of every shape, for tests, benchmarks and the demo.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;

use crate::event::{ConsentState, EventName, PayoutStatus, TrackingEvent, FIRST_PARTY};

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, h, m, 0).unwrap()
}

fn money(s: &str) -> Option<Decimal> {
    Some(Decimal::from_str(s).expect("sample amount"))
}

/// A click with full attribution.
pub fn click() -> TrackingEvent {
    let mut e = TrackingEvent::new(
        "evt-click-01",
        EventName::Click,
        at(9, 0),
        at(9, 0),
        FIRST_PARTY,
        "/c/{offer_id}",
    );
    e.click_id = Some("clk_01".into());
    e.offer_id = Some("keto-vsl".into());
    e.affiliate_id = Some("aff-12".into());
    e.campaign_id = Some("cmp-3".into());
    e.source = Some("facebook".into());
    e.placement = Some("feed".into());
    e.utm_source = Some("fb".into());
    e.utm_medium = Some("paid_social".into());
    e.utm_campaign = Some("black-friday".into());
    e.sub1 = Some("adset-9".into());
    e.consent_state = ConsentState::Granted;
    e
}

/// A first-party lead.
pub fn lead() -> TrackingEvent {
    let mut e = TrackingEvent::new(
        "evt-lead-77",
        EventName::Lead,
        at(9, 5),
        at(9, 5),
        FIRST_PARTY,
        "/v1/events",
    );
    e.lead_id = Some("lead-77".into());
    e.click_id = Some("clk_01".into());
    e.offer_id = Some("keto-vsl".into());
    e.payout = money("2.50");
    e.currency = Some("USD".into());
    e.payout_status = Some(PayoutStatus::Pending);
    e
}

/// A first-party sale with money, hashed PII and every field kind set.
pub fn sale() -> TrackingEvent {
    let mut e = TrackingEvent::new(
        "evt-sale-1001",
        EventName::Sale,
        at(9, 30),
        at(9, 31),
        FIRST_PARTY,
        "/v1/events",
    );
    e.order_id = Some("ord-1001".into());
    e.transaction_id = Some("tx-1001".into());
    e.click_id = Some("clk_01".into());
    e.offer_id = Some("keto-vsl".into());
    e.affiliate_id = Some("aff-12".into());
    e.campaign_id = Some("cmp-3".into());
    e.source = Some("facebook".into());
    e.sub1 = Some("adset-9".into());
    e.revenue = money("49.99");
    e.payout = money("20.00");
    e.currency = Some("USD".into());
    e.payout_status = Some(PayoutStatus::Pending);
    e.rebill_sequence = Some(1);
    e.occurred_at_original = Some("2026-11-20T01:30:00-08:00".into());
    e.source_timezone = Some("America/Los_Angeles".into());
    e.settled_at = Some(at(23, 59) + chrono::Duration::days(14));
    e.consent_state = ConsentState::Granted;
    e.ip_hash = Some("a".repeat(64));
    e.email_hash = Some("b".repeat(64));
    e.data_minimization = vec!["ip:hashed".into(), "email:hashed".into()];
    e.user_agent = Some("Mozilla/5.0".into());
    e.delivery_attempt = Some(1);
    e.attributes.insert("product_sku".into(), "KETO-3".into());
    e
}

/// A partial refund of [`sale`].
pub fn refund() -> TrackingEvent {
    let mut e = TrackingEvent::new(
        "evt-refund-1001",
        EventName::Refund,
        at(12, 0),
        at(12, 0),
        FIRST_PARTY,
        "/v1/events",
    );
    e.order_id = Some("ord-1001".into());
    e.revenue = money("19.99");
    e.payout = money("8");
    e.currency = Some("USD".into());
    e
}

/// One of each sample.
pub fn all() -> Vec<TrackingEvent> {
    vec![click(), lead(), sale(), refund()]
}
