//! First-party JSON input: what a producer may send, parsed with one error per bad field.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;

use crate::event::{ConsentState, EventName, TrackingEvent, FIRST_PARTY};
use crate::matching::PlatformIds;
use crate::validate::{check_conversion_link, check_fields, FieldError, Report, ValidationErrors};

/// Personal data a producer sent. It never enters a [`TrackingEvent`] raw: ingest hashes it
/// with the deployment's key (or drops it) before the event leaves the process.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawPii {
    pub email: Option<String>,
    pub ip: Option<IpAddr>,
    /// In E.164 (`+` and the country code), as [`crate::matching::e164`] makes it.
    pub phone: Option<String>,
}

/// The fields a first-party producer may set, sorted for binary search. Everything else
/// (`received_at`, `route`, hashes, `data_minimization`) is stamped by the server.
pub const PRODUCER_FIELDS: &[&str] = &[
    "affiliate_id",
    "attributes",
    "campaign_id",
    "click_id",
    "consent_state",
    "currency",
    "email",
    "event_id",
    "event_name",
    "fbc",
    "fbclid",
    "fbp",
    "ga_client_id",
    "gbraid",
    "gclid",
    "ip",
    "is_test",
    "lead_id",
    "msclkid",
    "occurred_at",
    "offer_id",
    "order_id",
    "parent_order_id",
    "payout",
    "payout_status",
    "phone",
    "placement",
    "rebill_sequence",
    "refund_status",
    "revenue",
    "settled_at",
    "source",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "transaction_id",
    "ttclid",
    "user_agent",
    "utm_campaign",
    "utm_content",
    "utm_medium",
    "utm_source",
    "utm_term",
    "wbraid",
];

/// Every field in the contract's order, with the producer's `email` and `ip` beside the
/// hashes they become: the order in which errors are reported, whatever the order of the
/// client's keys.
pub const FIELD_ORDER: &[&str] = &[
    "event_id",
    "event_name",
    "occurred_at",
    "occurred_at_original",
    "source_timezone",
    "received_at",
    "settled_at",
    "network",
    "order_id",
    "transaction_id",
    "parent_order_id",
    "rebill_sequence",
    "lead_id",
    "native_event_type",
    "status_only",
    "click_id",
    "affiliate_id",
    "campaign_id",
    "offer_id",
    "source",
    "placement",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "revenue",
    "payout",
    "currency",
    "payout_status",
    "refund_status",
    "is_test",
    "consent_state",
    "data_minimization",
    "email",
    "ip",
    "phone",
    "ip_hash",
    "email_hash",
    "user_agent",
    "route",
    "delivery_attempt",
    "attributes",
    "gclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "fbc",
    "fbp",
    "ttclid",
    "msclkid",
    "ga_client_id",
];

/// Where an error on `field` is reported: unknown fields first, then the contract's order.
fn report_rank(field: &str) -> usize {
    let base = field.split('.').next().unwrap_or(field);
    FIELD_ORDER
        .iter()
        .position(|f| *f == base)
        .map_or(0, |i| i + 1)
}

/// Parses and validates one producer event held as a JSON value.
pub fn parse_event_json(
    value: &Value,
    received_at: DateTime<Utc>,
    route: &str,
) -> Result<(TrackingEvent, RawPii), ValidationErrors> {
    parse_with(value, received_at, route)
}

/// Parses and validates one producer event from its JSON text, in one pass and without an
/// intermediate JSON tree (the hot path of `POST /v1/events`).
pub fn parse_event_str(
    text: &str,
    received_at: DateTime<Utc>,
    route: &str,
) -> Result<(TrackingEvent, RawPii), ValidationErrors> {
    let mut de = serde_json::Deserializer::from_str(text);
    parse_with(&mut de, received_at, route)
}

fn parse_with<'de, D: Deserializer<'de>>(
    de: D,
    received_at: DateTime<Utc>,
    route: &str,
) -> Result<(TrackingEvent, RawPii), ValidationErrors> {
    match de.deserialize_any(EventVisitor) {
        Ok(fields) => fields.finish(received_at, route),
        Err(e) => Err(ValidationErrors(vec![FieldError::new(
            "<event>",
            e.to_string(),
        )])),
    }
}

/// A JSON value as the parser needs it, with strings borrowed from the input where possible.
enum Loose<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Map(Vec<(String, Loose<'a>)>),
    Other,
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Loose::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Loose::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Loose::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Loose::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Loose::Int(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Loose::Uint(n))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
                Ok(Loose::Float(n))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    entries.push((k, map.next_value::<Loose<'de>>()?));
                }
                Ok(Loose::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_unit<E>(self) -> Result<Fields, E> {
        Ok(Fields::not_an_object())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Fields, E> {
        Ok(Fields::not_an_object())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Fields, E> {
        Ok(Fields::not_an_object())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Fields, E> {
        Ok(Fields::not_an_object())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Fields, E> {
        Ok(Fields::not_an_object())
    }
    fn visit_str<E>(self, _: &str) -> Result<Fields, E> {
        Ok(Fields::not_an_object())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fields, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Fields::not_an_object())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Loose<'de>>()? {
            let value = map.next_value::<Loose<'de>>()?;
            if let Loose::Str(key) = key {
                fields.assign(&key, value);
            }
        }
        Ok(fields)
    }
}

/// The producer's fields as they are read, with every error found so far.
#[derive(Default)]
struct Fields {
    /// Set when the input is JSON but not an object: nothing else is reported then.
    not_an_object: bool,
    r: Report,
    event: Option<TrackingEvent>,
    event_id: Option<String>,
    event_name: Option<EventName>,
    saw_event_id: bool,
    saw_event_name: bool,
    occurred_at: Option<DateTime<Utc>>,
    pii: RawPii,
    /// Meta's click ID as the landing URL had it; becomes `platform_ids.fbc`.
    fbclid: Option<String>,
}

impl Fields {
    fn not_an_object() -> Self {
        Fields {
            not_an_object: true,
            ..Fields::default()
        }
    }

    fn assign(&mut self, key: &str, v: Loose<'_>) {
        let Fields {
            r,
            event,
            event_id,
            event_name,
            saw_event_id,
            saw_event_name,
            occurred_at,
            pii,
            fbclid,
            ..
        } = self;
        // The event being built; its identity and times are filled in by `finish`.
        let e = event.get_or_insert_with(|| {
            TrackingEvent::new(
                String::new(),
                EventName::Click,
                DateTime::<Utc>::MIN_UTC,
                DateTime::<Utc>::MIN_UTC,
                FIRST_PARTY,
                "",
            )
        });
        *saw_event_id |= key == "event_id";
        *saw_event_name |= key == "event_name";
        if matches!(v, Loose::Null) {
            if PRODUCER_FIELDS.binary_search(&key).is_err() {
                r.push(key, "unknown field");
            }
            return;
        }
        match key {
            "event_id" => *event_id = string(r, key, v),
            "event_name" => *event_name = symbol(r, key, v),
            "occurred_at" => *occurred_at = timestamp(r, key, v),
            "settled_at" => e.settled_at = timestamp(r, key, v),
            "rebill_sequence" => e.rebill_sequence = int(r, key, v),
            "revenue" => e.revenue = money(r, key, v),
            "payout" => e.payout = money(r, key, v),
            "payout_status" => e.payout_status = symbol(r, key, v),
            "refund_status" => e.refund_status = symbol(r, key, v),
            "is_test" => e.is_test = boolean(r, key, v).unwrap_or(false),
            "consent_state" => e.consent_state = symbol(r, key, v).unwrap_or(ConsentState::Unknown),
            "attributes" => e.attributes = attributes(r, key, v),
            "email" => pii.email = email(r, key, v),
            "ip" => pii.ip = ip(r, key, v),
            "phone" => pii.phone = phone(r, key, v),
            "fbclid" => *fbclid = platform_id(r, key, v),
            name if PlatformIds::FIELDS.contains(&name) => {
                let value = platform_id(r, key, v);
                let ids = e.platform_ids.get_or_insert_with(PlatformIds::default);
                *ids.slot(name).expect("a platform field") = value;
            }
            _ => match text_slot(e, key) {
                Some(slot) => *slot = string(r, key, v),
                None => r.push(key, "unknown field"),
            },
        }
    }

    fn finish(
        mut self,
        received_at: DateTime<Utc>,
        route: &str,
    ) -> Result<(TrackingEvent, RawPii), ValidationErrors> {
        if self.not_an_object {
            return Err(ValidationErrors(vec![FieldError::new(
                "<event>",
                "must be a JSON object",
            )]));
        }
        if !self.saw_event_id {
            self.r.push(
                "event_id",
                "required: producers own their event IDs so that retries are safe",
            );
        }
        if !self.saw_event_name {
            self.r.push("event_name", "required");
        }
        let mut e = self.event.take().unwrap_or_else(|| {
            TrackingEvent::new(
                String::new(),
                EventName::Click,
                received_at,
                received_at,
                FIRST_PARTY,
                route,
            )
        });
        e.event_id = self.event_id.take().unwrap_or_default();
        e.event_name = self.event_name.unwrap_or(EventName::Click);
        e.occurred_at = self.occurred_at.unwrap_or(received_at);
        e.received_at = received_at;
        e.route = route.to_owned();
        if let Some(fbclid) = self.fbclid.take() {
            let ids = e.platform_ids.get_or_insert_with(PlatformIds::default);
            ids.fbc.get_or_insert_with(|| {
                crate::matching::fbc(&fbclid, received_at.timestamp_millis())
            });
        }
        if e.platform_ids.as_ref().is_some_and(PlatformIds::is_empty) {
            e.platform_ids = None;
        }

        // A field that already failed to parse is reported once, by its parse error; and the
        // link check needs a known event name.
        let mut semantic = Report::default();
        check_fields(&mut semantic, &e);
        if self.event_name.is_some() {
            check_conversion_link(&mut semantic, &e);
        }
        let mut r = self.r;
        let already: Vec<String> = r.fields().map(str::to_owned).collect();
        if let Err(errs) = semantic.finish() {
            r.extend(ValidationErrors(
                errs.0
                    .into_iter()
                    .filter(|fe| !already.contains(&fe.field))
                    .collect(),
            ));
        }
        r.finish().map(|()| (e, self.pii)).map_err(|mut errs| {
            errs.0.sort_by_key(|fe| report_rank(&fe.field));
            errs
        })
    }
}

/// The free-text and ID fields, all parsed the same way.
fn text_slot<'e>(e: &'e mut TrackingEvent, key: &str) -> Option<&'e mut Option<String>> {
    Some(match key {
        "order_id" => &mut e.order_id,
        "transaction_id" => &mut e.transaction_id,
        "parent_order_id" => &mut e.parent_order_id,
        "lead_id" => &mut e.lead_id,
        "click_id" => &mut e.click_id,
        "affiliate_id" => &mut e.affiliate_id,
        "campaign_id" => &mut e.campaign_id,
        "offer_id" => &mut e.offer_id,
        "source" => &mut e.source,
        "placement" => &mut e.placement,
        "utm_source" => &mut e.utm_source,
        "utm_medium" => &mut e.utm_medium,
        "utm_campaign" => &mut e.utm_campaign,
        "utm_term" => &mut e.utm_term,
        "utm_content" => &mut e.utm_content,
        "sub1" => &mut e.sub1,
        "sub2" => &mut e.sub2,
        "sub3" => &mut e.sub3,
        "sub4" => &mut e.sub4,
        "sub5" => &mut e.sub5,
        "currency" => &mut e.currency,
        "user_agent" => &mut e.user_agent,
        _ => return None,
    })
}

fn string(r: &mut Report, field: &str, v: Loose<'_>) -> Option<String> {
    match v {
        Loose::Str(s) => Some(s.into_owned()),
        Loose::Int(n) => Some(n.to_string()),
        Loose::Uint(n) => Some(n.to_string()),
        Loose::Float(n) => Some(n.to_string()),
        _ => {
            r.push(field, "expected a string");
            None
        }
    }
}

fn symbol<T: FromStr>(r: &mut Report, field: &str, v: Loose<'_>) -> Option<T> {
    let Loose::Str(s) = v else {
        r.push(field, "expected a string");
        return None;
    };
    s.parse()
        .map_err(|_| r.push(field, format!("unknown value {s:?}")))
        .ok()
}

fn boolean(r: &mut Report, field: &str, v: Loose<'_>) -> Option<bool> {
    match v {
        Loose::Bool(b) => Some(b),
        _ => {
            r.push(field, "expected true or false");
            None
        }
    }
}

fn int(r: &mut Report, field: &str, v: Loose<'_>) -> Option<i32> {
    let n = match v {
        Loose::Int(n) => i32::try_from(n).ok(),
        Loose::Uint(n) => i32::try_from(n).ok(),
        _ => None,
    };
    if n.is_none() {
        r.push(field, "expected a whole number");
    }
    n
}

/// RFC 3339 text with an offset, or epoch milliseconds.
fn timestamp(r: &mut Report, field: &str, v: Loose<'_>) -> Option<DateTime<Utc>> {
    let parsed = match v {
        Loose::Str(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("not an RFC 3339 timestamp with offset: {e}")),
        Loose::Int(ms) => DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| "epoch milliseconds out of range".to_owned()),
        Loose::Uint(ms) => i64::try_from(ms)
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| "epoch milliseconds out of range".to_owned()),
        _ => Err("expected an RFC 3339 string or epoch milliseconds".to_owned()),
    };
    parsed.map_err(|reason| r.push(field, reason)).ok()
}

/// A decimal string ("49.99") or a JSON number, kept exact.
fn money(r: &mut Report, field: &str, v: Loose<'_>) -> Option<Decimal> {
    let text = match v {
        Loose::Str(s) => s.into_owned(),
        Loose::Int(n) => n.to_string(),
        Loose::Uint(n) => n.to_string(),
        Loose::Float(n) => n.to_string(),
        _ => {
            r.push(field, "expected a decimal string or number");
            return None;
        }
    };
    crate::money::parse_decimal(&text)
        .map_err(|e| r.push(field, e.to_string()))
        .ok()
}

fn attributes(r: &mut Report, field: &str, v: Loose<'_>) -> BTreeMap<String, String> {
    let Loose::Map(entries) = v else {
        r.push(field, "expected an object of strings");
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        match v {
            Loose::Str(s) => {
                out.insert(k, s.into_owned());
            }
            _ => r.push(format!("{field}.{k}"), "expected a string"),
        }
    }
    out
}

fn email(r: &mut Report, field: &str, v: Loose<'_>) -> Option<String> {
    let s = string(r, field, v)?;
    let normalised = s.trim().to_lowercase();
    let valid = normalised.len() <= 254
        && normalised
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
    if valid {
        Some(normalised)
    } else {
        r.push(field, "not an e-mail address");
        None
    }
}

fn platform_id(r: &mut Report, field: &str, v: Loose<'_>) -> Option<String> {
    let s = string(r, field, v)?;
    if crate::matching::valid_platform_id(&s) {
        Some(s)
    } else {
        r.push(field, "not a platform ID (1-512 visible ASCII characters)");
        None
    }
}

fn phone(r: &mut Report, field: &str, v: Loose<'_>) -> Option<String> {
    let s = string(r, field, v)?;
    let e164 = crate::matching::e164(&s);
    if e164.is_none() {
        r.push(
            field,
            "not a phone number in international format ('+' or '00', then 8 to 15 digits starting with the country code)",
        );
    }
    e164
}

fn ip(r: &mut Report, field: &str, v: Loose<'_>) -> Option<IpAddr> {
    let s = string(r, field, v)?;
    s.parse()
        .map_err(|_| r.push(field, "not an IPv4 or IPv6 address"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse(v: Value) -> Result<(TrackingEvent, RawPii), ValidationErrors> {
        parse_event_json(&v, now(), "/v1/events")
    }

    fn fields(v: Value) -> Vec<String> {
        parse(v)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_complete_sale_parses_exactly() {
        let (e, pii) = parse(json!({
            "event_id": "ord-1001-sale", "event_name": "SALE", "order_id": "ord-1001",
            "occurred_at": "2026-11-23T03:00:00-08:00", "revenue": "49.99", "payout": 20.1,
            "currency": "EUR", "click_id": "clk_1", "sub2": "adset-9",
            "email": " Buyer@Example.COM ", "ip": "203.0.113.7", "consent_state": "GRANTED",
            "phone": "0044 (20) 7946-0958"
        }))
        .unwrap();
        assert_eq!(e.event_name, EventName::Sale);
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-23T11:00:00+00:00");
        assert_eq!(e.revenue, Some(Decimal::from_str("49.99").unwrap()));
        assert_eq!(e.payout, Some(Decimal::from_str("20.1").unwrap()));
        assert_eq!(e.network, FIRST_PARTY);
        assert_eq!(e.route, "/v1/events");
        assert_eq!(e.received_at, now());
        assert_eq!(pii.email.as_deref(), Some("buyer@example.com"));
        assert_eq!(pii.ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(pii.phone.as_deref(), Some("+442079460958"));
    }

    #[test]
    fn platform_ids_are_captured_and_fbclid_becomes_meta_fbc() {
        let (e, _) = parse(json!({
            "event_id": "s1", "event_name": "SALE", "order_id": "o1", "revenue": 10, "currency": "USD",
            "gclid": "Cj0KCQiA-abc_123", "fbclid": "IwAR2xyz", "fbp": "fb.1.1764000000000.42",
            "ttclid": "E.C.P.abc", "ga_client_id": "1234567890.1764000000"
        }))
        .unwrap();
        let ids = e.platform_ids.unwrap();
        assert_eq!(ids.gclid.as_deref(), Some("Cj0KCQiA-abc_123"));
        // Meta's format: fb.1.<ms when first seen>.<fbclid>; here the receipt time.
        assert_eq!(
            ids.fbc.as_deref(),
            Some(format!("fb.1.{}.IwAR2xyz", now().timestamp_millis()).as_str())
        );
        assert_eq!(ids.fbp.as_deref(), Some("fb.1.1764000000000.42"));
        assert_eq!(ids.ttclid.as_deref(), Some("E.C.P.abc"));
        assert_eq!(ids.ga_client_id.as_deref(), Some("1234567890.1764000000"));
        assert_eq!((ids.gbraid, ids.wbraid, ids.msclkid), (None, None, None));
        // A producer's own fbc wins over the fbclid; none at all leaves the group null.
        let (e, _) = parse(json!({
            "event_id": "s2", "event_name": "LEAD", "lead_id": "l1",
            "fbclid": "IwAR2xyz", "fbc": "fb.1.1700000000000.IwAR2xyz"
        }))
        .unwrap();
        assert_eq!(
            e.platform_ids.unwrap().fbc.as_deref(),
            Some("fb.1.1700000000000.IwAR2xyz")
        );
        let (e, _) =
            parse(json!({"event_id": "s3", "event_name": "LEAD", "lead_id": "l1"})).unwrap();
        assert_eq!(e.platform_ids, None);
        let err = parse(json!({
            "event_id": "s4", "event_name": "LEAD", "lead_id": "l1", "gclid": "has space"
        }))
        .unwrap_err();
        assert_eq!(err.fields(), ["gclid"]);
    }

    #[test]
    fn missing_id_is_rejected_with_its_reason() {
        let err = parse(json!({"event_name": "CLICK", "click_id": "c1"})).unwrap_err();
        assert_eq!(err.fields(), ["event_id"]);
        assert!(err.0[0].reason.contains("producers own their event IDs"));
    }

    #[test]
    fn unknown_event_name_and_unknown_field() {
        assert_eq!(
            fields(
                json!({"event_id": "e1", "event_name": "PURCHASE", "order_id": "o", "colour": "red"})
            ),
            ["colour", "event_name"]
        );
        // Ingest sets a click's quality flags; a producer's JSON cannot.
        assert_eq!(
            fields(
                json!({"event_id": "e1", "event_name": "CLICK", "click_id": "c1",
                          "quality_flags": ["BOT_USER_AGENT"]})
            ),
            ["quality_flags"]
        );
    }

    #[test]
    fn type_errors_are_reported_once_per_field() {
        let err = parse(json!({
            "event_id": "e1", "event_name": "SALE", "order_id": "o1",
            "revenue": "12,50", "currency": "EUR", "occurred_at": "yesterday", "is_test": "yes"
        }))
        .unwrap_err();
        assert_eq!(err.fields(), ["occurred_at", "revenue", "is_test"]);
    }

    #[test]
    fn bad_pii_is_named_and_never_echoed() {
        let err = parse(json!({
            "event_id": "e1", "event_name": "LEAD", "lead_id": "l1",
            "email": "not-an-address", "ip": "999.1.1.1", "phone": "555 0199"
        }))
        .unwrap_err();
        assert_eq!(err.fields(), ["email", "ip", "phone"]);
        assert!(!err.to_string().contains("not-an-address"));
        assert!(!err.to_string().contains("555 0199"));
        assert!(err.to_string().contains("international format"), "{err}");
    }

    #[test]
    fn text_and_value_entry_points_agree() {
        // The escape makes the parser copy instead of borrow: both paths are covered.
        let text = r#"{"event_id": "e1", "event_name": "SALE", "order_id": "o1", "sub1": "caf\u00e9", "revenue": 12.5, "currency": "EUR", "attributes": {"k": "v"}}"#;
        let from_value = parse(serde_json::from_str(text).unwrap()).unwrap();
        let from_text = parse_event_str(text, now(), "/v1/events").unwrap();
        assert_eq!(from_value, from_text);
        assert_eq!(from_text.0.sub1.as_deref(), Some("caf\u{e9}"));
    }

    #[test]
    fn errors_follow_the_contract_order_whatever_the_key_order() {
        let text = r#"{"is_test": "yes", "revenue": "12,50", "zz": 1, "event_name": "SALE", "order_id": "o1", "currency": "EUR", "occurred_at": "yesterday", "event_id": "e1"}"#;
        assert_eq!(
            parse_event_str(text, now(), "/v1/events")
                .unwrap_err()
                .fields(),
            ["zz", "occurred_at", "revenue", "is_test"]
        );
    }

    #[test]
    fn field_order_lists_every_producer_field() {
        for f in PRODUCER_FIELDS {
            assert!(FIELD_ORDER.contains(f), "{f}");
        }
    }

    #[test]
    fn producer_fields_are_sorted_for_binary_search() {
        assert!(PRODUCER_FIELDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn non_object_is_rejected() {
        assert_eq!(fields(json!([1, 2])), ["<event>"]);
    }

    #[test]
    fn epoch_millis_are_accepted() {
        let (e, _) = parse(json!({
            "event_id": "e1", "event_name": "CLICK", "click_id": "c1", "occurred_at": 1_763_899_200_000i64
        }))
        .unwrap();
        assert_eq!(e.occurred_at.timestamp_millis(), 1_763_899_200_000);
    }
}
