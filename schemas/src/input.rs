//! First-party JSON input: what a producer may send, parsed with one error per bad field.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::event::{
    ConsentState, EventName, PayoutStatus, RefundStatus, TrackingEvent, FIRST_PARTY,
};
use crate::validate::{check_conversion_link, check_fields, Report, ValidationErrors};

/// Personal data a producer sent. It never enters a [`TrackingEvent`] raw: ingest hashes it
/// with the deployment's key (or drops it) before the event leaves the process.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawPii {
    pub email: Option<String>,
    pub ip: Option<IpAddr>,
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
    "ip",
    "is_test",
    "lead_id",
    "occurred_at",
    "offer_id",
    "order_id",
    "parent_order_id",
    "payout",
    "payout_status",
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
    "user_agent",
    "utm_campaign",
    "utm_content",
    "utm_medium",
    "utm_source",
    "utm_term",
];

/// Parses and validates one producer event. `occurred_at` defaults to `received_at`.
pub fn parse_event_json(
    value: &Value,
    received_at: DateTime<Utc>,
    route: &str,
) -> Result<(TrackingEvent, RawPii), ValidationErrors> {
    let Some(obj) = value.as_object() else {
        return Err(ValidationErrors(vec![crate::validate::FieldError::new(
            "<event>",
            "must be a JSON object",
        )]));
    };
    let mut r = Report::default();
    for key in obj.keys() {
        if PRODUCER_FIELDS.binary_search(&key.as_str()).is_err() {
            r.push(key.as_str(), "unknown field");
        }
    }
    let mut p = Parser { obj, r };
    let event_id = p.string("event_id");
    let event_name = p.symbol::<EventName>("event_name");
    if !obj.contains_key("event_id") {
        p.r.push(
            "event_id",
            "required: producers own their event IDs so that retries are safe",
        );
    }
    if !obj.contains_key("event_name") {
        p.r.push("event_name", "required");
    }
    let occurred_at = p.timestamp("occurred_at");
    let mut e = TrackingEvent::new(
        event_id.unwrap_or_default(),
        event_name.unwrap_or(EventName::Click),
        occurred_at.unwrap_or(received_at),
        received_at,
        FIRST_PARTY,
        route,
    );
    e.settled_at = p.timestamp("settled_at");
    e.order_id = p.string("order_id");
    e.transaction_id = p.string("transaction_id");
    e.parent_order_id = p.string("parent_order_id");
    e.rebill_sequence = p.int("rebill_sequence");
    e.lead_id = p.string("lead_id");
    e.click_id = p.string("click_id");
    e.affiliate_id = p.string("affiliate_id");
    e.campaign_id = p.string("campaign_id");
    e.offer_id = p.string("offer_id");
    e.source = p.string("source");
    e.placement = p.string("placement");
    e.utm_source = p.string("utm_source");
    e.utm_medium = p.string("utm_medium");
    e.utm_campaign = p.string("utm_campaign");
    e.utm_term = p.string("utm_term");
    e.utm_content = p.string("utm_content");
    e.sub1 = p.string("sub1");
    e.sub2 = p.string("sub2");
    e.sub3 = p.string("sub3");
    e.sub4 = p.string("sub4");
    e.sub5 = p.string("sub5");
    e.revenue = p.money("revenue");
    e.payout = p.money("payout");
    e.currency = p.string("currency");
    e.payout_status = p.symbol::<PayoutStatus>("payout_status");
    e.refund_status = p.symbol::<RefundStatus>("refund_status");
    e.is_test = p.boolean("is_test").unwrap_or(false);
    e.consent_state = p
        .symbol::<ConsentState>("consent_state")
        .unwrap_or(ConsentState::Unknown);
    e.attributes = p.attributes("attributes");
    e.user_agent = p.string("user_agent");
    let pii = RawPii {
        email: p.email("email"),
        ip: p.ip("ip"),
    };

    // A field that already failed to parse is reported once, by its parse error; and the
    // link check needs a known event name.
    let mut semantic = Report::default();
    check_fields(&mut semantic, &e);
    if event_name.is_some() {
        check_conversion_link(&mut semantic, &e);
    }
    let mut r = p.r;
    let already: Vec<String> = r.fields().map(str::to_owned).collect();
    if let Err(errs) = semantic.finish() {
        r.extend(ValidationErrors(
            errs.0
                .into_iter()
                .filter(|fe| !already.contains(&fe.field))
                .collect(),
        ));
    }
    r.finish().map(|()| (e, pii))
}

struct Parser<'a> {
    obj: &'a Map<String, Value>,
    r: Report,
}

impl Parser<'_> {
    /// The field's value, `None` when absent or JSON null.
    fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn string(&mut self, field: &str) -> Option<String> {
        match self.get(field)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => {
                self.r.push(field, "expected a string");
                None
            }
        }
    }

    fn symbol<T: FromStr>(&mut self, field: &str) -> Option<T> {
        let s = match self.get(field)? {
            Value::String(s) => s.clone(),
            _ => {
                self.r.push(field, "expected a string");
                return None;
            }
        };
        match s.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.r.push(field, format!("unknown value {s:?}"));
                None
            }
        }
    }

    fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.get(field)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.r.push(field, "expected true or false");
                None
            }
        }
    }

    fn int(&mut self, field: &str) -> Option<i32> {
        match self.get(field)?.as_i64().map(i32::try_from) {
            Some(Ok(n)) => Some(n),
            _ => {
                self.r.push(field, "expected a whole number");
                None
            }
        }
    }

    /// RFC 3339 text with an offset, or epoch milliseconds.
    fn timestamp(&mut self, field: &str) -> Option<DateTime<Utc>> {
        let parsed = match self.get(field)? {
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("not an RFC 3339 timestamp with offset: {e}")),
            Value::Number(n) => n
                .as_i64()
                .and_then(DateTime::from_timestamp_millis)
                .ok_or_else(|| "epoch milliseconds out of range".to_owned()),
            _ => Err("expected an RFC 3339 string or epoch milliseconds".to_owned()),
        };
        parsed.map_err(|reason| self.r.push(field, reason)).ok()
    }

    /// A decimal string ("49.99") or a JSON number, kept exact.
    fn money(&mut self, field: &str) -> Option<Decimal> {
        let text = match self.get(field)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                self.r.push(field, "expected a decimal string or number");
                return None;
            }
        };
        Decimal::from_str_exact(&text)
            .map_err(|_| {
                self.r
                    .push(field, format!("{text:?} is not a decimal amount"))
            })
            .ok()
    }

    fn attributes(&mut self, field: &str) -> BTreeMap<String, String> {
        let obj = self.obj;
        let Some(v) = obj.get(field).filter(|v| !v.is_null()) else {
            return BTreeMap::new();
        };
        let Some(map) = v.as_object() else {
            self.r.push(field, "expected an object of strings");
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                _ => self.r.push(format!("{field}.{k}"), "expected a string"),
            }
        }
        out
    }

    fn email(&mut self, field: &str) -> Option<String> {
        let s = self.string(field)?;
        let normalised = s.trim().to_lowercase();
        let valid = normalised.len() <= 254
            && normalised
                .split_once('@')
                .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if valid {
            Some(normalised)
        } else {
            self.r.push(field, "not an e-mail address");
            None
        }
    }

    fn ip(&mut self, field: &str) -> Option<IpAddr> {
        let s = self.string(field)?;
        s.parse()
            .map_err(|_| self.r.push(field, "not an IPv4 or IPv6 address"))
            .ok()
    }
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
            "email": " Buyer@Example.COM ", "ip": "203.0.113.7", "consent_state": "GRANTED"
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
            "email": "not-an-address", "ip": "999.1.1.1"
        }))
        .unwrap_err();
        assert_eq!(err.fields(), ["email", "ip"]);
        assert!(!err.to_string().contains("not-an-address"));
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
