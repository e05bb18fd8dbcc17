//! A generic JSON webhook: POST of the ledger entry's essentials, the event_id both in the
//! body and in the idempotency header.

use schemas::OutboxRecord;
use serde_json::json;

use super::{json_post, BuildError, Credentials, DestinationKind, PreparedRequest};
use schemas::destinations::Destination;

pub struct Webhook;

impl DestinationKind for Webhook {
    fn build(
        &self,
        d: &Destination,
        record: &OutboxRecord,
        _credentials: &Credentials<'_>,
    ) -> Result<PreparedRequest, BuildError> {
        let entry = &record.entry;
        let e = &entry.event;
        let body = json!({
            "event_id": e.event_id,
            "event_name": e.event_name.as_str(),
            "conversion_key": entry.conversion_key,
            "status": entry.conversion_status.as_str(),
            "linked_event_id": entry.linked_event_id,
            "signed_revenue": entry.signed_revenue.to_string(),
            "signed_payout": entry.signed_payout.to_string(),
            "net_revenue": entry.net_revenue.to_string(),
            "net_payout": entry.net_payout.to_string(),
            "currency": e.currency,
            "network": e.network,
            "order_id": e.order_id,
            "lead_id": e.lead_id,
            "click_id": e.click_id,
            "offer_id": e.offer_id,
            "affiliate_id": e.affiliate_id,
            "campaign_id": e.campaign_id,
            "sub1": e.sub1, "sub2": e.sub2, "sub3": e.sub3, "sub4": e.sub4, "sub5": e.sub5,
            "occurred_at": e.occurred_at.to_rfc3339(),
            "is_test": e.is_test,
        });
        Ok(json_post(d, record, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{destination, record};
    use super::*;

    #[test]
    fn the_body_carries_the_entry_and_its_key() {
        let d = destination("webhook", "https://hooks.example/in");
        let r = Webhook
            .build(&d, &record("d"), &Credentials::default())
            .unwrap();
        assert_eq!(r.method, "POST");
        let body: serde_json::Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["event_id"], "evt-sale-1001");
        assert_eq!(body["signed_revenue"], "49.99");
        assert_eq!(body["status"], "SOLD");
        assert!(r
            .headers
            .contains(&("Idempotency-Key".into(), "evt-sale-1001".into())));
    }
}
