//! ClickBank Instant Notification Service, v6 to v8.
//!
//! The body is `{"notification": base64, "iv": base64}`: AES-256-CBC with PKCS#7, keyed by
//! the first 32 hex characters of SHA-1(secret key) used as 32 ASCII bytes. Decrypting to
//! valid JSON is the only authenticity check ClickBank offers.

use aes::cipher::block_padding::{NoPadding, Pkcs7};
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use sha1::{Digest, Sha1};
use subtle::{Choice, ConstantTimeEq, ConstantTimeGreater, ConstantTimeLess};

use schemas::key::split_receipt;
use schemas::{postback_event_id, EventName, TrackingEvent};

use super::{amount, one_event, ApiError, Outcome, PostbackAdapter, PostbackRequest};

pub const NETWORK: &str = "clickbank";
pub const ROUTE: &str = "/v1/postbacks/clickbank";

type Decryptor = cbc::Decryptor<aes::Aes256>;
type Encryptor = cbc::Encryptor<aes::Aes256>;

pub struct ClickBank {
    key: [u8; 32],
}

/// The AES key ClickBank derives from a secret key.
fn derive_key(secret: &str) -> [u8; 32] {
    let digest = Sha1::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex.as_bytes()[..32].try_into().expect("40 hex characters")
}

impl ClickBank {
    pub fn new(secret_key: &str) -> Self {
        Self {
            key: derive_key(secret_key),
        }
    }

    /// Decrypts and reads a notification.
    ///
    /// CBC without a MAC is malleable, so no step may say how far a forged body got: every
    /// failure is the same authentication failure to the sender, the whole ciphertext is
    /// always decrypted, the padding is checked in constant time, and the JSON is parsed
    /// whether or not the padding was valid (trailing bytes after the last `}` are cut
    /// either way, so the parsed bytes do not depend on the padding).
    fn decrypt(&self, body: &[u8]) -> Result<Value, ApiError> {
        let envelope: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::unauthenticated("malformed", "<body>", format!("not JSON: {e}"))
        })?;
        let part = |name: &str| -> Result<Vec<u8>, ApiError> {
            let text = envelope
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::unauthenticated("missing_field", name, "required"))?;
            B64.decode(text)
                .map_err(|_| ApiError::unauthenticated("invalid_field", name, "not base64"))
        };
        let (mut plain, iv) = (part("notification")?, part("iv")?);
        let iv: [u8; 16] = iv.as_slice().try_into().map_err(|_| {
            ApiError::unauthenticated(
                "invalid_field",
                "iv",
                format!("{} bytes, expected 16", iv.len()),
            )
        })?;
        if plain.is_empty() || plain.len() % 16 != 0 {
            // The length is public: it says nothing about the key.
            return Err(ApiError::unauthenticated(
                "decryption_failed",
                "notification",
                "not a whole number of AES blocks",
            ));
        }
        Decryptor::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut plain)
            .expect("a whole number of blocks");
        let padding_ok = pkcs7_valid(&plain);
        let end = plain.iter().rposition(|b| *b == b'}').map_or(0, |i| i + 1);
        let parsed = serde_json::from_slice::<Value>(&plain[..end]);
        match (bool::from(padding_ok), parsed) {
            (true, Ok(value)) => Ok(value),
            _ => Err(ApiError::unauthenticated(
                "decryption_failed",
                "notification",
                "does not decrypt to JSON with the configured secret key",
            )),
        }
    }
}

/// Whether `plain` ends in valid PKCS#7 padding, computed over the whole last block in
/// constant time.
fn pkcs7_valid(plain: &[u8]) -> Choice {
    let block = &plain[plain.len() - 16..];
    let pad = block[15];
    let mut ok = !pad.ct_eq(&0) & !pad.ct_gt(&16);
    for (i, byte) in block.iter().rev().enumerate() {
        let inside = (i as u8).ct_lt(&pad);
        ok &= !inside | byte.ct_eq(&pad);
    }
    ok
}

/// The INS versions whose format this adapter reads (v6 introduced the encrypted JSON).
fn supported_version(v: &Value) -> bool {
    let major = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    major.is_some_and(|m| (6.0..9.0).contains(&m))
}

/// Encrypts a notification the way ClickBank does. The demo generator and the tests use it
/// to send real, correctly encrypted INS requests.
pub fn encrypt_notification(secret_key: &str, plaintext: &[u8], iv: [u8; 16]) -> String {
    let ciphertext = Encryptor::new(&derive_key(secret_key).into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    serde_json::json!({"notification": B64.encode(ciphertext), "iv": B64.encode(iv)}).to_string()
}

/// What a ClickBank transaction type becomes: the event name, whether it only updates a
/// status, and whether it is a test.
fn map_type(transaction_type: &str) -> Result<(EventName, bool, bool), ApiError> {
    let (test, base) = match transaction_type.strip_prefix("TEST_") {
        Some(rest) => (true, rest),
        None => (false, transaction_type),
    };
    let (name, status_only) = match base {
        "SALE" | "BILL" => (EventName::Sale, false),
        "RFND" => (EventName::Refund, false),
        "CGBK" => (EventName::Chargeback, false),
        "CANCEL-REBILL" => (EventName::Canceled, false),
        "INSF" | "UNCANCEL-REBILL" => (EventName::Sale, true),
        other => {
            return Err(ApiError::invalid(
                "transactionType",
                format!("unknown type {other:?}"),
            ))
        }
    };
    Ok((name, status_only, test))
}

/// ClickBank writes times in the account's zone, with the offset.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y%m%dT%H%M%S%z"))
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%z"))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
}

fn text(v: &Value, name: &str) -> Option<String> {
    match v.get(name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl PostbackAdapter for ClickBank {
    fn network(&self) -> &'static str {
        NETWORK
    }

    /// Every refusal is an authentication failure: decrypting to JSON is all the
    /// authentication ClickBank offers, so a forger must not learn which check failed.
    fn parse(&self, req: &PostbackRequest<'_>) -> Result<Outcome, ApiError> {
        self.read(req).map_err(ApiError::before_authentication)
    }

    fn opaque_refusals(&self) -> bool {
        true
    }
}

impl ClickBank {
    fn read(&self, req: &PostbackRequest<'_>) -> Result<Outcome, ApiError> {
        let n = self.decrypt(req.body)?;
        if let Some(version) = n.get("version").filter(|v| !supported_version(v)) {
            return Err(ApiError::invalid(
                "version",
                format!("INS version {version} is not 6.x to 8.x"),
            ));
        }
        let receipt = text(&n, "receipt").ok_or_else(|| ApiError::missing("receipt"))?;
        let tx_type =
            text(&n, "transactionType").ok_or_else(|| ApiError::missing("transactionType"))?;
        let (name, status_only, is_test) = map_type(&tx_type)?;
        let time_text =
            text(&n, "transactionTime").ok_or_else(|| ApiError::missing("transactionTime"))?;
        let occurred_at = parse_time(&time_text).ok_or_else(|| {
            ApiError::invalid(
                "transactionTime",
                format!("{time_text:?} is not a timestamp"),
            )
        })?;
        let (order, rebill) = split_receipt(&receipt);

        // ClickBank may send several RFND (or CGBK) for one receipt, partial refunds each with
        // its own transactionTime, which its retries repeat: the time tells them apart, and a
        // retry stays a duplicate. A sale or rebill is one per receipt and keeps its old ID.
        let sequence = matches!(name, EventName::Refund | EventName::Chargeback)
            .then(|| occurred_at.timestamp_millis().to_string());
        let event_id =
            postback_event_id(NETWORK, &receipt, &tx_type, sequence.as_deref()).to_string();
        let mut e =
            TrackingEvent::new(event_id, name, occurred_at, req.received_at, NETWORK, ROUTE);
        e.occurred_at_original = Some(time_text);
        e.order_id = Some(order.to_owned());
        e.transaction_id = Some(receipt.clone());
        e.rebill_sequence = rebill;
        e.native_event_type = Some(tx_type);
        e.status_only = status_only;
        e.is_test = is_test;
        e.parent_order_id = n
            .get("upsell")
            .and_then(|u| text(u, "upsellOriginalReceipt"));
        e.affiliate_id = text(&n, "affiliate");
        e.click_id = text(&n, "clickId");
        e.sub1 = n
            .get("trackingCodes")
            .and_then(|t| t.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned);
        e.offer_id = n
            .get("lineItems")
            .and_then(|l| l.get(0))
            .and_then(|i| text(i, "itemNo"));
        e.delivery_attempt = n
            .get("attemptCount")
            .and_then(Value::as_i64)
            .and_then(|a| i32::try_from(a).ok());
        e.currency = text(&n, "currency");
        e.payout = amount(
            "totalAccountAmount",
            text(&n, "totalAccountAmount").as_deref(),
        )?;
        e.revenue = match text(&n, "totalOrderAmount") {
            Some(total) => amount("totalOrderAmount", Some(&total))?,
            None => e.payout,
        };
        for (attr, field) in [
            ("vendor", "vendor"),
            ("role", "role"),
            ("ins_version", "version"),
        ] {
            if let Some(v) = text(&n, field) {
                e.attributes.insert(attr.to_owned(), v);
            }
        }
        let email = n
            .pointer("/customer/billing/email")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_lowercase());
        one_event(e, email.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::RawPii;
    use serde_json::json;

    const SECRET: &str = "MYSECRETKEY";

    fn request(body: &[u8]) -> PostbackRequest<'_> {
        PostbackRequest {
            method: "POST",
            query: "",
            content_type: Some("application/json"),
            body,
            received_at: Utc::now(),
            replay: None,
        }
    }

    fn sale(tx_type: &str, receipt: &str) -> Value {
        json!({
            "transactionTime": "2026-11-20T01:30:00-08:00", "receipt": receipt, "transactionType": tx_type,
            "vendor": "ketovsl", "affiliate": "aff12", "role": "VENDOR", "totalAccountAmount": -30.50,
            "totalOrderAmount": 47.0, "currency": "EUR", "attemptCount": 2, "version": 8.0,
            "clickId": "clk_9", "trackingCodes": ["adset-9"], "lineItems": [{"itemNo": "keto-1"}],
            "customer": {"billing": {"email": "Buyer@Example.com"}},
            "upsell": {"upsellOriginalReceipt": "FRONT001"}
        })
    }

    fn parse(v: &Value) -> Result<(TrackingEvent, RawPii), ApiError> {
        let body = encrypt_notification(SECRET, v.to_string().as_bytes(), [7; 16]);
        match ClickBank::new(SECRET).parse(&request(body.as_bytes()))? {
            Outcome::Events(mut events) => Ok(events.remove(0)),
            Outcome::Nothing => panic!("expected an event"),
        }
    }

    #[test]
    fn the_key_is_the_sha1_hex_prefix() {
        // sha1("MYSECRETKEY") = 4ab8b5a1..., of which the first 32 hex characters are the key.
        let key = derive_key(SECRET);
        assert_eq!(key.len(), 32);
        let full: String = Sha1::digest(SECRET.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&key[..], &full.as_bytes()[..32]);
    }

    #[test]
    fn a_rebill_maps_to_a_sale_with_its_sequence() {
        let (e, pii) = parse(&sale("BILL", "ABCD1234-B002")).unwrap();
        assert_eq!(e.event_name, EventName::Sale);
        assert_eq!(e.order_id.as_deref(), Some("ABCD1234"));
        assert_eq!(e.transaction_id.as_deref(), Some("ABCD1234-B002"));
        assert_eq!(e.rebill_sequence, Some(2));
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-20T09:30:00+00:00");
        assert_eq!(
            e.occurred_at_original.as_deref(),
            Some("2026-11-20T01:30:00-08:00")
        );
        // JSON numbers: compared as decimals, so 30.50 and 30.5 are the same amount.
        assert_eq!(e.payout, Some("30.50".parse().unwrap()));
        assert_eq!(e.revenue, Some("47".parse().unwrap()));
        assert_eq!(e.currency.as_deref(), Some("EUR"));
        assert_eq!(e.parent_order_id.as_deref(), Some("FRONT001"));
        assert_eq!(e.click_id.as_deref(), Some("clk_9"));
        assert_eq!(e.delivery_attempt, Some(2));
        assert_eq!(pii.email.as_deref(), Some("buyer@example.com"));
        assert_eq!(
            e.event_id,
            postback_event_id("clickbank", "ABCD1234-B002", "BILL", None).to_string()
        );
    }

    #[test]
    fn partial_refunds_of_one_receipt_stay_apart_and_their_retries_do_not() {
        let refund = |time: &str, amount: f64| {
            let mut n = sale("RFND", "ABCD1234");
            n["transactionTime"] = json!(time);
            n["totalOrderAmount"] = json!(amount);
            parse(&n).unwrap().0
        };
        let first = refund("2026-11-21T10:00:00-08:00", 10.0);
        let second = refund("2026-11-23T10:00:00-08:00", 5.0);
        let retry = refund("2026-11-21T10:00:00-08:00", 10.0);
        // The same instant written in another zone is the same transaction time.
        let retry_utc = refund("2026-11-21T18:00:00Z", 10.0);
        assert_ne!(first.event_id, second.event_id);
        assert_eq!(first.event_id, retry.event_id);
        assert_eq!(first.event_id, retry_utc.event_id);
        // The documented derivation: the transaction time in epoch milliseconds.
        assert_eq!(
            first.event_id,
            postback_event_id("clickbank", "ABCD1234", "RFND", Some("1795284000000")).to_string()
        );
        assert_eq!(first.order_id, second.order_id);
        let chargeback = parse(&sale("CGBK", "ABCD1234")).unwrap().0;
        assert_eq!(
            chargeback.event_id,
            postback_event_id("clickbank", "ABCD1234", "CGBK", Some("1795167000000")).to_string()
        );
        // A sale keeps the ID it always had: an upgrade does not re-count retried sales.
        let sale_id = parse(&sale("SALE", "ABCD1234")).unwrap().0.event_id;
        assert_eq!(
            sale_id,
            postback_event_id("clickbank", "ABCD1234", "SALE", None).to_string()
        );
    }

    #[test]
    fn types_map_as_documented() {
        let cases = [
            ("SALE", EventName::Sale, false, false),
            ("RFND", EventName::Refund, false, false),
            ("CGBK", EventName::Chargeback, false, false),
            ("CANCEL-REBILL", EventName::Canceled, false, false),
            ("INSF", EventName::Sale, true, false),
            ("UNCANCEL-REBILL", EventName::Sale, true, false),
            ("TEST_SALE", EventName::Sale, false, true),
        ];
        for (t, name, status_only, test) in cases {
            let (e, _) = parse(&sale(t, "R1")).unwrap();
            assert_eq!(
                (e.event_name, e.status_only, e.is_test),
                (name, status_only, test),
                "{t}"
            );
        }
        assert_eq!(
            parse(&sale("BOGUS", "R1")).unwrap_err().errors[0].field,
            "transactionType"
        );
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let body = encrypt_notification(
            "OTHERKEY",
            sale("SALE", "R1").to_string().as_bytes(),
            [1; 16],
        );
        let err = ClickBank::new(SECRET)
            .parse(&request(body.as_bytes()))
            .unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.reason),
            (401, "decryption_failed")
        );
        assert!(!err.authenticated);
    }

    #[test]
    fn trailing_control_bytes_are_trimmed() {
        let mut plain = sale("SALE", "R1").to_string().into_bytes();
        plain.extend_from_slice(b"\x00\x00\x04");
        let body = encrypt_notification(SECRET, &plain, [3; 16]);
        assert!(ClickBank::new(SECRET)
            .parse(&request(body.as_bytes()))
            .is_ok());
    }

    #[test]
    fn envelope_errors_name_the_field() {
        let cb = ClickBank::new(SECRET);
        assert_eq!(cb.parse(&request(b"nope")).unwrap_err().reason, "malformed");
        assert_eq!(
            cb.parse(&request(br#"{"iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#))
                .unwrap_err()
                .errors[0]
                .field,
            "notification"
        );
        assert_eq!(
            cb.parse(&request(br#"{"notification":"AAAA","iv":"AAAA"}"#))
                .unwrap_err()
                .errors[0]
                .field,
            "iv"
        );
    }

    #[test]
    fn every_refusal_is_the_same_authentication_failure() {
        let cb = ClickBank::new(SECRET);
        let good = |v: &Value, iv| encrypt_notification(SECRET, v.to_string().as_bytes(), iv);
        let mut missing = sale("SALE", "R1");
        missing.as_object_mut().unwrap().remove("receipt");
        let mut version = sale("SALE", "R1");
        version["version"] = json!(5.0);
        let bodies = [
            "nope".to_owned(),
            r#"{"notification":"!!!","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#.to_owned(),
            r#"{"notification":"AAAAAAAAAAAAAAAAAAAAAA==","iv":"AAAA"}"#.to_owned(),
            encrypt_notification(
                "OTHERKEY",
                sale("SALE", "R1").to_string().as_bytes(),
                [1; 16],
            ),
            encrypt_notification(SECRET, b"not json at all", [2; 16]),
            good(&missing, [3; 16]),
            good(&version, [4; 16]),
            good(&sale("BOGUS", "R1"), [5; 16]),
        ];
        for body in &bodies {
            let err = cb.parse(&request(body.as_bytes())).unwrap_err();
            assert_eq!(
                (err.status.as_u16(), err.authenticated),
                (401, false),
                "{body}"
            );
        }
        assert!(cb
            .parse(&request(good(&sale("SALE", "R1"), [6; 16]).as_bytes()))
            .is_ok());
    }

    #[test]
    fn padding_is_checked_like_pkcs7() {
        let mut block = [0x41u8; 16];
        for pad in 0..=255u8 {
            block[15] = pad;
            let expected =
                (1..=16).contains(&pad) && block[16 - pad as usize..].iter().all(|b| *b == pad);
            assert_eq!(bool::from(pkcs7_valid(&block)), expected, "{pad}");
        }
        let mut two = [0x41u8; 16];
        two[15] = 0x02;
        assert!(!bool::from(pkcs7_valid(&two)));
        two[14] = 0x02;
        assert!(bool::from(pkcs7_valid(&two)));
        assert!(bool::from(pkcs7_valid(&[0x10u8; 16])));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = ClickBank::new(SECRET).parse(&request(&body));
        }

        #[test]
        fn arbitrary_plaintexts_are_errors_or_valid_events(plain in "[ -~]{0,200}") {
            let body = encrypt_notification(SECRET, plain.as_bytes(), [9; 16]);
            if let Ok(Outcome::Events(events)) = ClickBank::new(SECRET).parse(&request(body.as_bytes())) {
                for (e, _) in events {
                    proptest::prop_assert!(schemas::validate(&e).is_ok());
                }
            }
        }
    }
}
