//! TikTok's Events API: POST `{event_source, event_source_id, data: [event]}` to
//! `.../open_api/v1.3/event/track/` with the `Access-Token` header. TikTok deduplicates on
//! the event and `event_id` within 48 hours, like the pixel, so the event_id goes in the
//! payload as well as the idempotency header.
//!
//! TikTok answers errors with HTTP 200 and a non-zero `code` in the body: 40100 is its rate
//! limit and 5xxxx its own failures (retried); any other code (40001 no permission, 40002
//! bad parameters, 40105 a bad access token, ...) is permanent and dead-letters with TikTok's
//! code and message.

use schemas::destinations::Destination;
use schemas::{EventName, OutboxRecord};
use serde_json::json;

use super::{
    json_amount, json_post_to, platform_request, BuildError, Credentials, DestinationKind,
    PreparedRequest, Verdict,
};

pub struct Tiktok;

fn tiktok_event_name(name: EventName) -> Option<&'static str> {
    match name {
        EventName::Sale => Some("CompletePayment"),
        EventName::Lead => Some("SubmitForm"),
        _ => None,
    }
}

/// TikTok's rate-limit code.
const RATE_LIMITED: i64 = 40100;

impl DestinationKind for Tiktok {
    fn build(
        &self,
        d: &Destination,
        record: &OutboxRecord,
        credentials: &Credentials<'_>,
    ) -> Result<PreparedRequest, BuildError> {
        let (token, event) = platform_request(
            "TikTok",
            "access token",
            credentials.token,
            record,
            tiktok_event_name,
        )?;
        let e = &record.entry.event;
        let pixel = d
            .pixel_code
            .as_deref()
            .ok_or_else(|| BuildError("no pixel_code".into()))?;
        // Identifiers only under consent for ad use: the hashes are absent otherwise, and
        // the click ID is held back here.
        let mut user = serde_json::Map::new();
        if let Some(keys) = &e.match_keys {
            if let Some(h) = &keys.email_sha256 {
                user.insert("email".into(), json!(h));
            }
            if let Some(h) = &keys.phone_sha256 {
                user.insert("phone".into(), json!(h));
            }
        }
        if e.consent_state.allows_ad_use() {
            if let Some(ttclid) = e.platform_ids.as_ref().and_then(|p| p.ttclid.as_ref()) {
                user.insert("ttclid".into(), json!(ttclid));
            }
        }
        if let Some(ua) = &e.user_agent {
            user.insert("user_agent".into(), json!(ua));
        }
        let mut properties = serde_json::Map::new();
        if let Some(value) = e.revenue {
            properties.insert("value".into(), json_amount(value)?);
        }
        if let Some(c) = &e.currency {
            properties.insert("currency".into(), json!(c));
        }
        if let Some(o) = &e.order_id {
            properties.insert("order_id".into(), json!(o));
        }
        let body = json!({
            "event_source": "web",
            "event_source_id": pixel,
            "data": [{
                "event": event,
                "event_time": e.occurred_at.timestamp(),
                "event_id": e.event_id,
                "user": user,
                "properties": properties,
            }],
        });
        let headers = vec![("Access-Token".into(), token.to_owned())];
        Ok(json_post_to(d.url.clone(), record, headers, &body))
    }

    fn judge(&self, status: u16, body: &str) -> Verdict {
        if !(200..300).contains(&status) {
            return Verdict::AsStatus;
        }
        let answer: serde_json::Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(_) => return Verdict::Transient("TikTok answered without its JSON code".into()),
        };
        let message = answer["message"].as_str().unwrap_or_default();
        match answer["code"].as_i64() {
            Some(0) => Verdict::Delivered,
            Some(RATE_LIMITED) => {
                Verdict::Transient(format!("TikTok code 40100 (rate limit): {message}"))
            }
            Some(code) if (50000..60000).contains(&code) => {
                Verdict::Transient(format!("TikTok code {code}: {message}"))
            }
            Some(code) => Verdict::Permanent(format!("TikTok code {code}: {message}")),
            None => Verdict::Transient("TikTok answered without its JSON code".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parsed, record};
    use super::*;

    fn tiktok() -> Destination {
        parsed("[[destination]]\nname='t'\nkind='tiktok'\nurl='https://business-api.tiktok.com/open_api/v1.3/event/track/'\naccess_token_env='T'\npixel_code='C4PIXEL'\nevents=['SALE']\n")
    }

    #[test]
    fn a_sale_is_a_complete_payment_with_its_identifiers_under_consent() {
        let mut r = record("t");
        r.entry.event.consent_state = schemas::ConsentState::Granted;
        r.entry.event.user_agent = None;
        r.entry.event.match_keys = Some(schemas::MatchKeys {
            email_sha256: Some("e".repeat(64)),
            phone_sha256: Some("p".repeat(64)),
            phone_digits_sha256: Some("d".repeat(64)),
        });
        r.entry.event.platform_ids = Some(schemas::PlatformIds {
            ttclid: Some("E.C.P.abc".into()),
            ..Default::default()
        });
        let req = Tiktok
            .build(&tiktok(), &r, &Credentials::token(Some("tok")))
            .unwrap();
        assert!(req.headers.contains(&("Access-Token".into(), "tok".into())));
        let body: serde_json::Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["event_source"], "web");
        assert_eq!(body["event_source_id"], "C4PIXEL");
        let event = &body["data"][0];
        assert_eq!(event["event"], "CompletePayment");
        assert_eq!(event["event_id"], "evt-sale-1001");
        assert_eq!(
            event["user"],
            json!({"email": "e".repeat(64), "phone": "p".repeat(64), "ttclid": "E.C.P.abc"})
        );
        assert_eq!(event["properties"]["value"], json!(49.99));
        assert_eq!(event["properties"]["currency"], "USD");
        // Without consent for ad use, the click ID stays home.
        r.entry.event.consent_state = schemas::ConsentState::Unknown;
        r.entry.event.match_keys = None;
        let req = Tiktok
            .build(&tiktok(), &r, &Credentials::token(Some("tok")))
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["data"][0]["user"], json!({}));
    }

    #[test]
    fn tiktok_codes_decide_the_outcome_of_a_200() {
        assert_eq!(
            Tiktok.judge(200, r#"{"code":0,"message":"OK","request_id":"1"}"#),
            Verdict::Delivered
        );
        assert!(matches!(
            Tiktok.judge(200, r#"{"code":40100,"message":"Too many requests"}"#),
            Verdict::Transient(r) if r.contains("rate limit")
        ));
        assert!(matches!(
            Tiktok.judge(200, r#"{"code":50000,"message":"System error"}"#),
            Verdict::Transient(_)
        ));
        assert_eq!(
            Tiktok.judge(200, r#"{"code":40105,"message":"Access token is invalid"}"#),
            Verdict::Permanent("TikTok code 40105: Access token is invalid".into())
        );
        assert!(matches!(Tiktok.judge(200, "<html>"), Verdict::Transient(_)));
        assert_eq!(Tiktok.judge(503, ""), Verdict::AsStatus);
    }

    #[test]
    fn the_file_needs_a_pixel_and_a_token() {
        let base =
            "[[destination]]\nname='t'\nkind='tiktok'\nurl='https://t.example/'\nevents=['SALE']\n";
        let err = |extra: &str| {
            schemas::destinations::Destinations::parse(&format!("{base}{extra}"))
                .unwrap_err()
                .to_string()
        };
        assert!(err("pixel_code='C4'\n").contains("access_token_env"));
        assert!(err("access_token_env='T'\n").contains("pixel_code"));
        let refund = base.replace("['SALE']", "['REFUND']");
        let e = schemas::destinations::Destinations::parse(&format!(
            "{refund}access_token_env='T'\npixel_code='C4'\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("tiktok takes SALE and LEAD, not REFUND"), "{e}");
    }
}
