//! Digistore24 IPN: a form POST signed with SHA-512, answered with the body `OK` (anything
//! else makes Digistore24 retry for days).
//!
//! Signature: drop `sha_sign` and `SHASIGN`, sort the remaining keys byte-wise, skip empty
//! values, concatenate `key=value` + passphrase for each, SHA-512, upper-case hex. Keys are
//! used as sent (Digistore24's reference implementations do not upper-case them).

use std::collections::BTreeMap;

use schemas::{postback_event_id, EventName, TrackingEvent};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::{
    amount, field, form_fields, one_event, required, set_subtags, ApiError, Outcome,
    PostbackAdapter, PostbackRequest,
};

pub const NETWORK: &str = "digistore24";
pub const ROUTE: &str = "/v1/postbacks/digistore24";
const SIGNATURE_FIELDS: [&str; 2] = ["sha_sign", "SHASIGN"];

pub struct Digistore24 {
    passphrase: String,
}

/// The signature Digistore24 computes over `fields` (signature fields are ignored).
pub fn sign(fields: &BTreeMap<String, String>, passphrase: &str) -> String {
    let mut hasher = Sha512::new();
    // BTreeMap iterates in byte-wise key order.
    for (k, v) in fields {
        if SIGNATURE_FIELDS.contains(&k.as_str()) || v.is_empty() {
            continue;
        }
        hasher.update(k.as_bytes());
        hasher.update(b"=");
        hasher.update(v.as_bytes());
        hasher.update(passphrase.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// What a Digistore24 event becomes; `None` for requests that count nothing.
fn map_event(event: &str) -> Result<Option<(EventName, bool)>, ApiError> {
    Ok(Some(match event {
        "on_payment" => (EventName::Sale, false),
        "on_refund" => (EventName::Refund, false),
        "on_chargeback" => (EventName::Chargeback, false),
        "on_rebill_cancelled" | "last_paid_day" => (EventName::Canceled, false),
        "on_payment_missed" | "payment_denial" => (EventName::Sale, true),
        "connection_test" => return Ok(None),
        other => {
            return Err(ApiError::invalid(
                "event",
                format!("unknown event {other:?}"),
            ))
        }
    }))
}

impl Digistore24 {
    pub fn new(passphrase: &str) -> Self {
        Self {
            passphrase: passphrase.to_owned(),
        }
    }

    fn verify(&self, fields: &BTreeMap<String, String>) -> Result<(), ApiError> {
        let presented = SIGNATURE_FIELDS
            .iter()
            .find_map(|f| field(fields, f))
            .ok_or_else(|| {
                ApiError::unauthenticated("missing_signature", "sha_sign", "required")
            })?;
        let expected = sign(fields, &self.passphrase);
        if bool::from(
            presented
                .to_ascii_uppercase()
                .as_bytes()
                .ct_eq(expected.as_bytes()),
        ) {
            Ok(())
        } else {
            Err(ApiError::unauthenticated(
                "bad_signature",
                "sha_sign",
                "does not match the configured passphrase",
            ))
        }
    }
}

impl PostbackAdapter for Digistore24 {
    fn network(&self) -> &'static str {
        NETWORK
    }

    fn parse(&self, req: &PostbackRequest<'_>) -> Result<Outcome, ApiError> {
        let f = form_fields(req)?;
        self.verify(&f)?;
        let event = required(&f, "event")?;
        let pay_sequence = match field(&f, "pay_sequence_no") {
            Some(s) => Some(
                s.parse::<i32>()
                    .map_err(|_| ApiError::invalid("pay_sequence_no", "not a whole number"))?,
            ),
            None => None,
        };
        let Some((name, status_only)) = map_event(event)? else {
            return Ok(Outcome::Nothing);
        };
        let transaction_id = required(&f, "transaction_id")?;
        let order_id = required(&f, "order_id")?;

        let event_id = postback_event_id(NETWORK, transaction_id, event, None).to_string();
        let mut e = TrackingEvent::new(
            event_id,
            name,
            req.received_at,
            req.received_at,
            NETWORK,
            ROUTE,
        );
        // Digistore24's dates carry no zone; the original text is kept and the server time
        // stands as the event time.
        e.occurred_at_original = field(&f, "transaction_date")
            .or(field(&f, "order_date"))
            .map(str::to_owned);
        e.order_id = Some(order_id.to_owned());
        e.transaction_id = Some(transaction_id.to_owned());
        e.rebill_sequence = pay_sequence;
        e.native_event_type = Some(event.to_owned());
        e.status_only = status_only;
        e.is_test =
            field(&f, "is_test").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        e.revenue = amount("amount_brutto", field(&f, "amount_brutto"))?;
        e.payout = amount("amount_affiliate", field(&f, "amount_affiliate"))?;
        e.currency = field(&f, "currency").map(str::to_ascii_uppercase);
        e.affiliate_id = field(&f, "affiliate_name").map(str::to_owned);
        e.campaign_id = field(&f, "campaignkey").map(str::to_owned);
        e.click_id = field(&f, "cid").map(str::to_owned);
        e.offer_id = field(&f, "product_id").map(str::to_owned);
        set_subtags(&mut e, &f, ["sid1", "sid2", "sid3", "sid4", "sid5"]);
        if let Some(net) = field(&f, "amount_netto") {
            e.attributes.insert("amount_netto".into(), net.to_owned());
        }
        for (attr, name) in [
            ("trackingkey", "trackingkey"),
            ("is_gdpr_country", "is_gdpr_country"),
            ("ipn_version", "ipn_version"),
        ] {
            if let Some(v) = field(&f, name) {
                e.attributes.insert(attr.to_owned(), v.to_owned());
            }
        }
        one_event(e, field(&f, "email"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    const PASS: &str = "ds24-pass-phrase";

    fn fields(event: &str) -> BTreeMap<String, String> {
        [
            ("event", event),
            ("order_id", "DS-ORDER-1"),
            ("transaction_id", "T-9001"),
            ("pay_sequence_no", "1"),
            ("amount_brutto", "59.00"),
            ("amount_netto", "49.58"),
            ("amount_affiliate", "29.50"),
            ("currency", "EUR"),
            ("affiliate_name", "aff12"),
            ("campaignkey", "bf"),
            ("cid", "clk_7"),
            ("sid1", "adset-9"),
            ("email", "Käufer@example.de"),
            ("empty_field", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn body(mut f: BTreeMap<String, String>, signature: Option<String>) -> String {
        if let Some(s) = signature {
            f.insert("sha_sign".into(), s);
        }
        serde_urlencoded::to_string(&f).unwrap()
    }

    fn parse(body: &str) -> Result<Outcome, ApiError> {
        Digistore24::new(PASS).parse(&PostbackRequest {
            method: "POST",
            query: "",
            content_type: Some("application/x-www-form-urlencoded"),
            body: body.as_bytes(),
            received_at: Utc::now(),
            replay: None,
        })
    }

    #[test]
    fn the_signature_follows_the_documented_steps() {
        let mut f = BTreeMap::new();
        f.insert("b".to_owned(), "2".to_owned());
        f.insert("a".to_owned(), "1".to_owned());
        f.insert("c".to_owned(), String::new());
        f.insert("SHASIGN".to_owned(), "ignored".to_owned());
        let expected: String = Sha512::digest(b"a=1PPb=2PP")
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(sign(&f, "PP"), expected);
    }

    #[test]
    fn a_signed_payment_maps_to_a_sale() {
        let f = fields("on_payment");
        let Outcome::Events(events) = parse(&body(f.clone(), Some(sign(&f, PASS)))).unwrap() else {
            panic!()
        };
        let (e, pii) = &events[0];
        assert_eq!(e.event_name, EventName::Sale);
        assert_eq!(e.order_id.as_deref(), Some("DS-ORDER-1"));
        assert_eq!(e.revenue.unwrap().to_string(), "59.00");
        assert_eq!(e.payout.unwrap().to_string(), "29.50");
        assert_eq!(e.rebill_sequence, Some(1));
        assert_eq!(e.click_id.as_deref(), Some("clk_7"));
        assert_eq!(pii.email.as_deref(), Some("käufer@example.de"));
        assert_eq!(
            e.event_id,
            postback_event_id("digistore24", "T-9001", "on_payment", None).to_string()
        );
    }

    /// Digistore24 gives every payment, refund and chargeback its own transaction_id: rebills
    /// and partial refunds of one order stay apart, and a retry (the same IPN) does not.
    #[test]
    fn rebills_and_partial_refunds_of_one_order_stay_apart_and_their_retries_do_not() {
        let id = |event: &str, tx: &str, seq: &str| {
            let mut f = fields(event);
            f.insert("transaction_id".into(), tx.into());
            f.insert("pay_sequence_no".into(), seq.into());
            let signed = body(f.clone(), Some(sign(&f, PASS)));
            let Outcome::Events(events) = parse(&signed).unwrap() else {
                panic!()
            };
            let (e, _) = &events[0];
            assert_eq!(e.order_id.as_deref(), Some("DS-ORDER-1"));
            (e.event_id.clone(), e.rebill_sequence)
        };
        let ids = [
            id("on_payment", "T-1", "1"),
            id("on_payment", "T-2", "2"),
            id("on_refund", "T-3", "2"),
            id("on_refund", "T-4", "2"),
        ];
        let unique: std::collections::HashSet<_> = ids.iter().map(|(i, _)| i).collect();
        assert_eq!(unique.len(), 4, "{ids:?}");
        assert_eq!(ids[1].1, Some(2), "the rebill carries its sequence");
        assert_eq!(id("on_refund", "T-3", "2"), ids[2]);
    }

    #[test]
    fn wrong_and_missing_signatures_are_refused() {
        let f = fields("on_payment");
        let wrong = parse(&body(f.clone(), Some(sign(&f, "other")))).unwrap_err();
        assert_eq!(
            (wrong.status.as_u16(), wrong.reason),
            (401, "bad_signature")
        );
        assert!(!wrong.authenticated);
        let missing = parse(&body(f, None)).unwrap_err();
        assert_eq!(
            (missing.status.as_u16(), missing.reason),
            (401, "missing_signature")
        );
    }

    #[test]
    fn a_tampered_amount_breaks_the_signature() {
        let f = fields("on_payment");
        let sig = sign(&f, PASS);
        let mut tampered = f.clone();
        tampered.insert("amount_affiliate".into(), "999.00".into());
        assert_eq!(
            parse(&body(tampered, Some(sig))).unwrap_err().reason,
            "bad_signature"
        );
    }

    #[test]
    fn connection_test_counts_nothing() {
        let mut f = BTreeMap::new();
        f.insert("event".to_owned(), "connection_test".to_owned());
        assert!(matches!(
            parse(&body(f.clone(), Some(sign(&f, PASS)))).unwrap(),
            Outcome::Nothing
        ));
    }

    #[test]
    fn events_map_as_documented() {
        for (event, name, status_only) in [
            ("on_refund", EventName::Refund, false),
            ("on_chargeback", EventName::Chargeback, false),
            ("on_rebill_cancelled", EventName::Canceled, false),
            ("last_paid_day", EventName::Canceled, false),
            ("on_payment_missed", EventName::Sale, true),
            ("payment_denial", EventName::Sale, true),
        ] {
            let f = fields(event);
            let Outcome::Events(events) = parse(&body(f.clone(), Some(sign(&f, PASS)))).unwrap()
            else {
                panic!()
            };
            assert_eq!(
                (events[0].0.event_name, events[0].0.status_only),
                (name, status_only),
                "{event}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in "[ -~]{0,300}") {
            let _ = parse(&body);
        }
    }
}
