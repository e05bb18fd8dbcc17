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

pub fn conversion_key(e: &TrackingEvent) -> String {
    if let Some(order) = &e.order_id {
        format!("{}/order/{order}", e.network)
    } else if let Some(lead) = &e.lead_id {
        format!("{}/lead/{lead}", e.network)
    } else if let Some(click) = &e.click_id {
        format!("click/{click}")
    } else {
        format!("event/{}", e.event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

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
