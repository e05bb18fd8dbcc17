//! Google Ads: a SALE or LEAD is an offline click conversion
//! (`customers/{id}:uploadClickConversions`), uploaded by its `gclid`, `gbraid` or `wbraid`
//! with the `order_id` Google deduplicates on; a REFUND or CHARGEBACK adjusts the conversion
//! of the same order (`customers/{id}:uploadConversionAdjustments`): a RETRACTION when
//! nothing of the sale remains, else a RESTATEMENT to what remains.
//!
//! Both are sent with `partialFailure: true`, so a refused conversion comes back as a 200
//! with a `partialFailureError`; a 400 carries the same error codes. An error saying the
//! conversion or adjustment is already there is a success (a retry of something that
//! landed); Google's own transient errors are retried; any other is permanent. A 401 is
//! retried with a fresh access token (the engine drops the refused one).

use schemas::destinations::Destination;
use schemas::{EventName, OutboxRecord};
use serde_json::json;

use super::{
    json_amount, json_post_to, platform_request, BuildError, Credentials, DestinationKind,
    PreparedRequest, Verdict,
};

pub struct GoogleAds;

/// What a Google Ads destination does with an event: upload or adjust.
fn operation(name: EventName) -> Option<&'static str> {
    match name {
        EventName::Sale | EventName::Lead => Some("uploadClickConversions"),
        EventName::Refund | EventName::Chargeback => Some("uploadConversionAdjustments"),
        _ => None,
    }
}

/// Error codes that mean the upload or adjustment is already in Google Ads.
const ALREADY_THERE: &[&str] = &[
    "CLICK_CONVERSION_ALREADY_EXISTS",
    "CONVERSION_ALREADY_RETRACTED",
    "RESTATEMENT_ALREADY_EXISTS",
];
/// Google's own passing failures.
const TRANSIENT: &[&str] = &[
    "CONCURRENT_MODIFICATION",
    "INTERNAL_ERROR",
    "TRANSIENT_ERROR",
];

/// Google Ads' date-time format: `yyyy-mm-dd hh:mm:ss+hh:mm`, here in UTC.
fn google_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
}

impl DestinationKind for GoogleAds {
    fn build(
        &self,
        d: &Destination,
        record: &OutboxRecord,
        credentials: &Credentials<'_>,
    ) -> Result<PreparedRequest, BuildError> {
        let (bearer, operation) = platform_request(
            "Google Ads",
            "OAuth access token",
            credentials.token,
            record,
            operation,
        )?;
        let developer_token = credentials
            .developer_token
            .ok_or_else(|| BuildError("the Google Ads developer token is not set".into()))?;
        let settings = d
            .google_ads
            .as_ref()
            .ok_or_else(|| BuildError("no [destination.google_ads] table".into()))?;
        let customer = settings.customer_id.as_deref().unwrap_or_default();
        let action = format!(
            "customers/{customer}/conversionActions/{}",
            settings.conversion_action_id.as_deref().unwrap_or_default()
        );
        let e = &record.entry.event;
        let consent = e.consent_state.ad_user_data();
        let body = if e.event_name.is_reversal() {
            let order = e
                .order_id
                .as_deref()
                .ok_or_else(|| BuildError("an adjustment needs the sale's order_id".into()))?;
            let remaining = record.entry.net_revenue;
            let mut adjustment = json!({
                "conversionAction": action,
                "orderId": order,
                "adjustmentDateTime": google_time(e.occurred_at),
                "adjustmentType": if remaining.is_positive() { "RESTATEMENT" } else { "RETRACTION" },
            });
            if remaining.is_positive() {
                adjustment["restatementValue"] = json!({
                    "adjustedValue": json_amount(remaining.to_decimal().normalize())?,
                    "currencyCode": e.currency,
                });
            }
            json!({"conversionAdjustments": [adjustment], "partialFailure": true})
        } else {
            let ids = e.platform_ids.clone().unwrap_or_default();
            let mut conversion = json!({
                "conversionAction": action,
                "conversionDateTime": google_time(e.occurred_at),
                "consent": {"adUserData": consent},
            });
            // One click ID per conversion, in Google's order of preference.
            let (field, click) = [
                ("gclid", ids.gclid),
                ("gbraid", ids.gbraid),
                ("wbraid", ids.wbraid),
            ]
            .into_iter()
            .find_map(|(f, v)| v.map(|v| (f, v)))
            .ok_or_else(|| BuildError("no gclid, gbraid or wbraid to upload by".into()))?;
            conversion[field] = json!(click);
            if let Some(value) = e.revenue {
                conversion["conversionValue"] = json_amount(value)?;
            }
            if let Some(c) = &e.currency {
                conversion["currencyCode"] = json!(c);
            }
            conversion["orderId"] = json!(e.order_id.as_deref().unwrap_or(&e.event_id));
            if let Some(email) = e.match_keys.as_ref().and_then(|k| k.email_sha256.as_ref()) {
                conversion["userIdentifiers"] = json!([{"hashedEmail": email}]);
            }
            json!({"conversions": [conversion], "partialFailure": true})
        };
        let mut headers = vec![
            ("Authorization".into(), format!("Bearer {bearer}")),
            ("developer-token".into(), developer_token.to_owned()),
        ];
        if let Some(login) = &settings.login_customer_id {
            headers.push(("login-customer-id".into(), login.clone()));
        }
        let url = format!(
            "{}/customers/{customer}:{operation}",
            d.url.trim_end_matches('/')
        );
        Ok(json_post_to(url, record, headers, &body))
    }

    fn judge(&self, status: u16, body: &str) -> Verdict {
        let named =
            |codes: &'static [&'static str]| codes.iter().copied().find(|c| body.contains(c));
        // A retry of an upload or adjustment that had landed: nothing left to do.
        if named(ALREADY_THERE).is_some() && ((200..300).contains(&status) || status == 400) {
            return Verdict::Delivered;
        }
        match status {
            401 => {
                Verdict::Transient("Google Ads refused the access token (401); refreshed".into())
            }
            200..=299 => {
                let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                match answer.get("partialFailureError") {
                    None | Some(serde_json::Value::Null) => Verdict::Delivered,
                    Some(error) => {
                        let message = error["message"].as_str().unwrap_or("partial failure");
                        if let Some(code) = named(TRANSIENT) {
                            Verdict::Transient(format!("Google Ads {code}: {message}"))
                        } else {
                            Verdict::Permanent(format!(
                                "Google Ads refused the conversion: {message}"
                            ))
                        }
                    }
                }
            }
            400 => {
                let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                let message = answer["error"]["message"].as_str().unwrap_or("HTTP 400");
                Verdict::Permanent(format!("Google Ads refused the request: {message}"))
            }
            _ => Verdict::AsStatus,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{parsed, record};
    use super::*;

    fn google() -> Destination {
        parsed(
            "[[destination]]\nname='g'\nkind='google_ads'\nurl='https://googleads.googleapis.com/v21'\n\
             events=['SALE', 'REFUND']\n[destination.google_ads]\ncustomer_id='1234567890'\n\
             conversion_action_id='987654'\nlogin_customer_id='1112223334'\n\
             developer_token_env='D'\noauth_client_id='cid.apps.googleusercontent.com'\n\
             oauth_client_secret_env='S'\noauth_refresh_token_env='R'\n",
        )
    }

    fn credentials() -> Credentials<'static> {
        Credentials {
            token: Some("ya29.token"),
            developer_token: Some("dev-token"),
        }
    }

    #[test]
    fn a_sale_is_uploaded_by_its_click_id_and_a_refund_adjusts_its_order() {
        let mut r = record("g");
        r.entry.event.platform_ids = Some(schemas::PlatformIds {
            gbraid: Some("gb-1".into()),
            gclid: Some("Cj0-gclid".into()),
            ..Default::default()
        });
        r.entry.event.occurred_at = chrono::DateTime::from_timestamp(1_795_860_000, 0).unwrap();
        let req = GoogleAds.build(&google(), &r, &credentials()).unwrap();
        assert_eq!(
            req.url,
            "https://googleads.googleapis.com/v21/customers/1234567890:uploadClickConversions"
        );
        for header in [
            ("Authorization", "Bearer ya29.token"),
            ("developer-token", "dev-token"),
            ("login-customer-id", "1112223334"),
        ] {
            assert!(
                req.headers.contains(&(header.0.into(), header.1.into())),
                "{header:?}"
            );
        }
        let body: serde_json::Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"partialFailure": true, "conversions": [{
                "conversionAction": "customers/1234567890/conversionActions/987654",
                "conversionDateTime": "2026-11-28 10:00:00+00:00",
                "consent": {"adUserData": "GRANTED"},
                "gclid": "Cj0-gclid", "conversionValue": 49.99, "currencyCode": "USD",
                "orderId": "ord-1001"
            }]})
        );
        // A full refund retracts; a partial one restates what remains.
        r.entry.event.event_name = EventName::Refund;
        r.entry.net_revenue = schemas::Money::ZERO;
        let req = GoogleAds.build(&google(), &r, &credentials()).unwrap();
        assert!(req.url.ends_with(":uploadConversionAdjustments"));
        let body: serde_json::Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body["conversionAdjustments"][0]["adjustmentType"],
            "RETRACTION"
        );
        assert_eq!(body["conversionAdjustments"][0]["orderId"], "ord-1001");
        r.entry.net_revenue = "20.5".parse().unwrap();
        let req = GoogleAds.build(&google(), &r, &credentials()).unwrap();
        let body: serde_json::Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body["conversionAdjustments"][0]["adjustmentType"],
            "RESTATEMENT"
        );
        assert_eq!(
            body["conversionAdjustments"][0]["restatementValue"],
            json!({"adjustedValue": 20.5, "currencyCode": "USD"})
        );
    }

    #[test]
    fn google_errors_are_judged_by_their_codes() {
        assert_eq!(
            GoogleAds.judge(200, r#"{"results":[{"gclid":"x"}]}"#),
            Verdict::Delivered
        );
        let already = r#"{"partialFailureError":{"code":3,"message":"Conversion already exists.","details":[{"errors":[{"errorCode":{"conversionUploadError":"CLICK_CONVERSION_ALREADY_EXISTS"}}]}]}}"#;
        assert_eq!(GoogleAds.judge(200, already), Verdict::Delivered);
        let not_found = r#"{"partialFailureError":{"code":3,"message":"The click was not found.","details":[{"errors":[{"errorCode":{"conversionUploadError":"CLICK_NOT_FOUND"}}]}]}}"#;
        assert_eq!(
            GoogleAds.judge(200, not_found),
            Verdict::Permanent(
                "Google Ads refused the conversion: The click was not found.".into()
            )
        );
        assert!(matches!(GoogleAds.judge(401, "{}"), Verdict::Transient(_)));
        assert!(matches!(
            GoogleAds.judge(200, r#"{"partialFailureError":{"message":"x","details":[{"errors":[{"errorCode":{"databaseError":"CONCURRENT_MODIFICATION"}}]}]}}"#),
            Verdict::Transient(_)
        ));
        assert_eq!(GoogleAds.judge(429, "{}"), Verdict::AsStatus);
        assert!(
            matches!(GoogleAds.judge(400, r#"{"error":{"message":"bad"}}"#), Verdict::Permanent(m) if m.ends_with("bad"))
        );
    }

    #[test]
    fn the_file_names_what_is_missing_and_routing_needs_a_click_id() {
        let err = |table: &str| {
            schemas::destinations::Destinations::parse(&format!(
                "[[destination]]\nname='g'\nkind='google_ads'\nurl='https://g.example/v21'\nevents=['SALE']\n{table}"
            ))
            .unwrap_err()
            .to_string()
        };
        assert!(err("").contains("[destination.google_ads]"));
        assert!(
            err("[destination.google_ads]\ncustomer_id='123-456-7890'\n").contains("digits only")
        );
        let mut r = record("g");
        assert!(!google().matches(&r.entry), "no click ID: not routed");
        r.entry.event.platform_ids = Some(schemas::PlatformIds {
            wbraid: Some("wb".into()),
            ..Default::default()
        });
        assert!(google().matches(&r.entry));
    }
}
