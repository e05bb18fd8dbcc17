//! The Meta Conversions API: POST `{"data": [event]}` with the access token from the
//! environment. Meta deduplicates on `event_name` + `event_id` within 48 hours, so the
//! event_id is the payload's dedup field as well as the idempotency header.
//!
//! What Meta matches on is the event's `match_keys` (present only when consent allows ad
//! use): `em` (SHA-256 of the normalised e-mail) and `ph` (of the phone's E.164 digits). The
//! keyed e-mail hash goes as `external_id`, a stable pseudonymous id Meta can only match
//! against itself, and the user agent as `client_user_agent`. The click's `fbc` and the
//! browser's `fbp` go too, under the same consent.

use schemas::{EventName, OutboxRecord};
use serde_json::json;

use super::{
    json_amount, json_post, platform_request, BuildError, Credentials, DestinationKind,
    PreparedRequest, Verdict,
};
use schemas::destinations::Destination;

pub struct MetaCapi;

fn meta_event_name(name: EventName) -> Option<&'static str> {
    match name {
        EventName::Sale => Some("Purchase"),
        EventName::Lead => Some("Lead"),
        EventName::QualifiedLead | EventName::ApprovedLead => Some("QualifiedLead"),
        _ => None,
    }
}

impl DestinationKind for MetaCapi {
    fn build(
        &self,
        d: &Destination,
        record: &OutboxRecord,
        credentials: &Credentials<'_>,
    ) -> Result<PreparedRequest, BuildError> {
        let (token, event_name) = platform_request(
            "Meta",
            "access token",
            credentials.token,
            record,
            meta_event_name,
        )?;
        let e = &record.entry.event;
        let mut user_data = serde_json::Map::new();
        if let Some(keys) = &e.match_keys {
            if let Some(h) = &keys.email_sha256 {
                user_data.insert("em".into(), json!([h]));
            }
            if let Some(h) = &keys.phone_digits_sha256 {
                user_data.insert("ph".into(), json!([h]));
            }
        }
        // Click and browser IDs go only where consent allows ad use, like the match keys.
        if let Some(ids) = e
            .platform_ids
            .as_ref()
            .filter(|_| e.consent_state.allows_ad_use())
        {
            if let Some(fbc) = &ids.fbc {
                user_data.insert("fbc".into(), json!(fbc));
            }
            if let Some(fbp) = &ids.fbp {
                user_data.insert("fbp".into(), json!(fbp));
            }
        }
        if let Some(h) = &e.email_hash {
            user_data.insert("external_id".into(), json!([h]));
        }
        if let Some(ua) = &e.user_agent {
            user_data.insert("client_user_agent".into(), json!(ua));
        }
        let mut custom_data = serde_json::Map::new();
        if let Some(r) = e.revenue {
            // A number, as Meta documents `value` (its SDKs type it so).
            custom_data.insert("value".into(), json_amount(r)?);
        }
        if let Some(c) = &e.currency {
            custom_data.insert("currency".into(), json!(c));
        }
        if let Some(o) = &e.order_id {
            custom_data.insert("order_id".into(), json!(o));
        }
        let body = json!({
            "data": [{
                "event_name": event_name,
                "event_time": e.occurred_at.timestamp(),
                "event_id": e.event_id,
                "action_source": "website",
                "user_data": user_data,
                "custom_data": custom_data,
            }],
            "access_token": token,
        });
        Ok(json_post(d, record, &body))
    }

    /// Graph API errors carry their code in the body, throttling included (which comes as
    /// a 400): codes 1 and 2 (Meta's own failures), 4, 17, 32, 341, 613 (rate limits) and
    /// 368 (a temporary block) are retried; any other code is permanent, e.g. 190 (the
    /// access token expired or was revoked) or 100 (a bad parameter).
    fn judge(&self, status: u16, body: &str) -> Verdict {
        if (200..300).contains(&status) {
            return Verdict::AsStatus;
        }
        let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let Some(code) = answer["error"]["code"].as_i64() else {
            return Verdict::AsStatus;
        };
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        match code {
            1 | 2 | 4 | 17 | 32 | 341 | 368 | 613 => {
                Verdict::Transient(format!("Meta code {code}: {message}"))
            }
            190 => Verdict::Permanent(format!(
                "Meta refused the access token (code 190): {message}"
            )),
            _ => Verdict::Permanent(format!("Meta code {code}: {message}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parsed, record};
    use super::*;

    fn meta() -> Destination {
        parsed("[[destination]]\nname='m'\nkind='meta_capi'\nurl='https://graph.example/v19.0/1/events'\naccess_token_env='T'\nevents=['SALE']\n")
    }

    #[test]
    fn the_file_accepts_exactly_the_events_meta_has_a_name_for() {
        use schemas::destinations::Kind;
        for &name in EventName::ALL {
            assert_eq!(
                Kind::MetaCapi.accepts(name),
                meta_event_name(name).is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_sale_is_a_purchase_deduplicated_on_the_event_id() {
        let r = MetaCapi
            .build(&meta(), &record("m"), &Credentials::token(Some("tok")))
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        let event = &body["data"][0];
        assert_eq!(event["event_name"], "Purchase");
        assert_eq!(event["event_id"], "evt-sale-1001");
        assert_eq!(event["custom_data"]["value"], serde_json::json!(49.99));
        assert!(event["custom_data"]["value"].is_number());
        assert_eq!(event["custom_data"]["currency"], "USD");
        assert_eq!(body["access_token"], "tok");
    }

    #[test]
    fn matchable_hashes_go_as_em_and_ph_only_when_the_event_has_them() {
        let mut r = record("m");
        r.entry.event.email_hash = Some("keyed".into());
        r.entry.event.user_agent = None;
        let body = |r: &OutboxRecord| -> serde_json::Value {
            let req = MetaCapi
                .build(&meta(), r, &Credentials::token(Some("tok")))
                .unwrap();
            serde_json::from_slice(req.body.as_ref().unwrap()).unwrap()
        };
        let user = body(&r)["data"][0]["user_data"].clone();
        assert_eq!(user, json!({"external_id": ["keyed"]}));
        r.entry.event.match_keys = Some(schemas::MatchKeys {
            email_sha256: Some("e".repeat(64)),
            phone_sha256: Some("p".repeat(64)),
            phone_digits_sha256: Some("d".repeat(64)),
        });
        let user = body(&r)["data"][0]["user_data"].clone();
        assert_eq!(
            user,
            json!({"em": ["e".repeat(64)], "ph": ["d".repeat(64)], "external_id": ["keyed"]})
        );
    }

    #[test]
    fn fbc_and_fbp_go_only_under_consent_for_ad_use() {
        let mut r = record("m");
        r.entry.event.user_agent = None;
        r.entry.event.email_hash = None;
        r.entry.event.platform_ids = Some(schemas::PlatformIds {
            fbc: Some("fb.1.1764000000000.IwAR2x".into()),
            fbp: Some("fb.1.1764000000000.123456789".into()),
            gclid: Some("not-for-meta".into()),
            ..Default::default()
        });
        let user = |r: &OutboxRecord| -> serde_json::Value {
            let req = MetaCapi
                .build(&meta(), r, &Credentials::token(Some("tok")))
                .unwrap();
            let body: serde_json::Value =
                serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
            body["data"][0]["user_data"].clone()
        };
        r.entry.event.consent_state = schemas::ConsentState::Granted;
        assert_eq!(
            user(&r),
            json!({"fbc": "fb.1.1764000000000.IwAR2x", "fbp": "fb.1.1764000000000.123456789"})
        );
        r.entry.event.consent_state = schemas::ConsentState::Unknown;
        assert_eq!(user(&r), json!({}));
    }

    #[test]
    fn graph_api_codes_decide_between_retry_and_dead_letter() {
        let error = |code: i64| {
            format!(
                r#"{{"error":{{"message":"m","type":"OAuthException","code":{code},"fbtrace_id":"x"}}}}"#
            )
        };
        assert!(
            matches!(MetaCapi.judge(400, &error(17)), Verdict::Transient(r) if r == "Meta code 17: m")
        );
        assert!(matches!(
            MetaCapi.judge(400, &error(613)),
            Verdict::Transient(_)
        ));
        assert!(matches!(
            MetaCapi.judge(500, &error(2)),
            Verdict::Transient(_)
        ));
        assert_eq!(
            MetaCapi.judge(400, &error(190)),
            Verdict::Permanent("Meta refused the access token (code 190): m".into())
        );
        assert_eq!(
            MetaCapi.judge(400, &error(100)),
            Verdict::Permanent("Meta code 100: m".into())
        );
        assert_eq!(
            MetaCapi.judge(200, r#"{"events_received":1}"#),
            Verdict::AsStatus
        );
        assert_eq!(MetaCapi.judge(502, "<html>"), Verdict::AsStatus);
    }

    #[test]
    fn no_token_or_an_unmapped_event_cannot_be_built() {
        assert!(MetaCapi
            .build(&meta(), &record("m"), &Credentials::default())
            .is_err());
        let mut refund = record("m");
        refund.entry.event.event_name = EventName::Refund;
        assert!(MetaCapi
            .build(&meta(), &refund, &Credentials::token(Some("tok")))
            .is_err());
        let bad = "[[destination]]\nname='m'\nkind='meta_capi'\nurl='https://g.example'\nevents=['SALE']\n";
        assert!(schemas::destinations::Destinations::parse(bad).is_err());
    }
}
