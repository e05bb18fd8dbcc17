//! The partition key: the conversion an event belongs to.
//!
//! A sale, its refunds, chargebacks and cancellation, and a lead and its status changes,
//! carry the same key and so land on the same partition, which keeps the processor's joins
//! local. The rule, in order:
//! 1. `{network}/order/{order_id}` when the event names an order (network or first-party);
//! 2. `{network}/lead/{lead_id}` for first-party leads without an order;
//! 3. `click/{click_id}` for clicks;
//! 4. `event/{event_id}` otherwise (validation makes this unreachable for accepted events).

use crate::event::TrackingEvent;

const ORDER: &str = "/order/";
const LEAD: &str = "/lead/";
const CLICK: &str = "click/";
const EVENT: &str = "event/";

pub fn conversion_key(e: &TrackingEvent) -> String {
    if let Some(order) = &e.order_id {
        format!("{}{ORDER}{order}", e.network)
    } else if let Some(lead) = &e.lead_id {
        format!("{}{LEAD}{lead}", e.network)
    } else if let Some(click) = &e.click_id {
        format!("{CLICK}{click}")
    } else {
        format!("{EVENT}{}", e.event_id)
    }
}

/// The click ID of a click's key (`click/{click_id}`).
pub fn click_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(CLICK)
}

/// What a conversion key names, read back from the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Order,
    Lead,
    Click,
    Event,
}

impl KeyKind {
    /// The kind of a key made by [`conversion_key`].
    pub fn of(key: &str) -> KeyKind {
        if key.starts_with(CLICK) {
            KeyKind::Click
        } else if key.starts_with(EVENT) {
            KeyKind::Event
        } else if key
            .split_once('/')
            .is_some_and(|(_, rest)| rest.starts_with(&LEAD[1..]))
        {
            KeyKind::Lead
        } else {
            KeyKind::Order
        }
    }

    /// Whether events under such a key join into a lifecycle (a sale with its reversals, a
    /// lead with its statuses); clicks and lone events stand alone.
    pub fn has_lifecycle(self) -> bool {
        matches!(self, KeyKind::Order | KeyKind::Lead)
    }
}

/// A ClickBank receipt's order and rebill number: `ABCD1234-B002` is the second rebill of
/// order `ABCD1234` (and keyed by it, so that rebills share their order's partition).
pub fn split_receipt(receipt: &str) -> (&str, Option<i32>) {
    match receipt.rsplit_once("-B") {
        Some((base, seq))
            if !base.is_empty() && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (base, seq.parse().ok())
        }
        _ => (receipt, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    #[test]
    fn a_key_knows_its_kind() {
        let kind = |e: &TrackingEvent| KeyKind::of(&conversion_key(e));
        assert_eq!(kind(&samples::sale()), KeyKind::Order);
        assert_eq!(kind(&samples::lead()), KeyKind::Lead);
        assert_eq!(kind(&samples::click()), KeyKind::Click);
        let mut lone = samples::click();
        lone.click_id = None;
        assert_eq!(kind(&lone), KeyKind::Event);
        assert!(KeyKind::Order.has_lifecycle() && KeyKind::Lead.has_lifecycle());
        assert!(!KeyKind::Click.has_lifecycle() && !KeyKind::Event.has_lifecycle());
        // IDs that look like another kind do not change it.
        assert_eq!(KeyKind::of("s2s/order/a/lead/b"), KeyKind::Order);
        assert_eq!(KeyKind::of("first_party/lead/a/order/b"), KeyKind::Lead);
    }

    #[test]
    fn a_sale_and_its_refund_share_a_key() {
        assert_eq!(
            conversion_key(&samples::sale()),
            conversion_key(&samples::refund())
        );
        assert_eq!(
            conversion_key(&samples::sale()),
            "first_party/order/ord-1001"
        );
    }

    #[test]
    fn same_order_id_on_two_networks_differs() {
        let mut other = samples::sale();
        other.network = "buygoods".into();
        assert_ne!(conversion_key(&samples::sale()), conversion_key(&other));
    }

    #[test]
    fn leads_and_clicks() {
        assert_eq!(conversion_key(&samples::lead()), "first_party/lead/lead-77");
        assert_eq!(conversion_key(&samples::click()), "click/clk_01");
    }
}
