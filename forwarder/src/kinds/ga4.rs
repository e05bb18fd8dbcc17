//! Google Analytics 4's Measurement Protocol: POST `{client_id, events: [...]}` to the
//! destination's `.../mp/collect?measurement_id=G-...`, with the API secret added as
//! `api_secret` (kept out of the file, like every token). A SALE is a `purchase`; a REFUND
//! or a CHARGEBACK is a `refund` of the same `transaction_id`, which is how GA4 takes
//! reversals. GA4 attributes an event only to its `client_id` (the `_ga` cookie), so only
//! entries with `platform_ids.ga_client_id` are routed here (`Destination::matches`).
//!
//! GA4 answers 2xx even to a payload it drops (its `/debug/mp/collect` says why), so the
//! status alone decides, and the mapping is held to the documented fields by the tests.

use schemas::destinations::Destination;
use schemas::{EventName, OutboxRecord};
use serde_json::json;

use super::{
    json_amount, json_post_to, platform_request, BuildError, Credentials, DestinationKind,
    PreparedRequest,
};

pub struct Ga4;

fn ga4_event_name(name: EventName) -> Option<&'static str> {
    match name {
        EventName::Sale => Some("purchase"),
        EventName::Refund | EventName::Chargeback => Some("refund"),
        _ => None,
    }
}

impl DestinationKind for Ga4 {
    fn build(
        &self,
        d: &Destination,
        record: &OutboxRecord,
        credentials: &Credentials<'_>,
    ) -> Result<PreparedRequest, BuildError> {
        let (api_secret, name) = platform_request(
            "GA4",
            "API secret",
            credentials.token,
            record,
            ga4_event_name,
        )?;
        let e = &record.entry.event;
        let client_id = e
            .platform_ids
            .as_ref()
            .and_then(|p| p.ga_client_id.as_deref())
            .ok_or_else(|| BuildError("the event has no GA4 client_id (ga_client_id)".into()))?;
        let mut url = reqwest::Url::parse(&d.url)
            .map_err(|e| BuildError(format!("the destination's url does not parse: {e}")))?;
        url.query_pairs_mut().append_pair("api_secret", api_secret);
        let mut params = serde_json::Map::new();
        // The sale's order ID, which its refunds carry too; else the event's own ID.
        params.insert(
            "transaction_id".into(),
            json!(e.order_id.as_deref().unwrap_or(&e.event_id)),
        );
        if let Some(value) = e.revenue {
            params.insert("value".into(), json_amount(value)?);
        }
        if let Some(c) = &e.currency {
            params.insert("currency".into(), json!(c));
        }
        let consent = e.consent_state.ad_user_data();
        let body = json!({
            "client_id": client_id,
            "timestamp_micros": e.occurred_at.timestamp_micros(),
            "consent": {"ad_user_data": consent, "ad_personalization": consent},
            "events": [{"name": name, "params": params}],
        });
        Ok(json_post_to(url.into(), record, Vec::new(), &body))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parsed, record};
    use super::*;

    fn ga4() -> Destination {
        parsed("[[destination]]\nname='g'\nkind='ga4'\nurl='https://www.google-analytics.com/mp/collect?measurement_id=G-TEST123'\naccess_token_env='S'\nevents=['SALE', 'REFUND']\n")
    }

    #[test]
    fn a_sale_is_a_purchase_and_a_refund_a_refund_of_the_same_transaction() {
        let mut r = record("g");
        r.entry.event.platform_ids = Some(schemas::PlatformIds {
            ga_client_id: Some("1234567890.1764000000".into()),
            ..Default::default()
        });
        r.entry.event.consent_state = schemas::ConsentState::Granted;
        let req = Ga4
            .build(&ga4(), &r, &Credentials::token(Some("s3cr&t")))
            .unwrap();
        assert_eq!(
            req.url,
            "https://www.google-analytics.com/mp/collect?measurement_id=G-TEST123&api_secret=s3cr%26t"
        );
        let body: serde_json::Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["client_id"], "1234567890.1764000000");
        assert_eq!(
            body["consent"],
            json!({"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"})
        );
        assert_eq!(
            body["events"],
            json!([{"name": "purchase", "params": {"transaction_id": "ord-1001", "value": 49.99, "currency": "USD"}}])
        );
        r.entry.event.event_name = EventName::Refund;
        r.entry.event.consent_state = schemas::ConsentState::Unknown;
        let body: serde_json::Value = serde_json::from_slice(
            Ga4.build(&ga4(), &r, &Credentials::token(Some("s")))
                .unwrap()
                .body
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(body["events"][0]["name"], "refund");
        assert_eq!(body["events"][0]["params"]["transaction_id"], "ord-1001");
        assert_eq!(body["consent"]["ad_user_data"], "DENIED");
    }

    #[test]
    fn only_events_with_a_client_id_are_routed_to_ga4() {
        let mut r = record("g");
        assert!(!ga4().matches(&r.entry));
        r.entry.event.platform_ids = Some(schemas::PlatformIds {
            ga_client_id: Some("1.2".into()),
            ..Default::default()
        });
        assert!(ga4().matches(&r.entry));
        let no_id = "[[destination]]\nname='g'\nkind='ga4'\nurl='https://g.example/mp/collect'\naccess_token_env='S'\nevents=['SALE']\n";
        let err = schemas::destinations::Destinations::parse(no_id)
            .unwrap_err()
            .to_string();
        assert!(err.contains("measurement_id"), "{err}");
    }
}
