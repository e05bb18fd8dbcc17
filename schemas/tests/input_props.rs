//! Producer JSON: any input is either a valid event or a list of field errors, never a panic.

use chrono::Utc;
use proptest::prelude::*;
use schemas::{parse_event_json, validate};

use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,20}".prop_map(Value::String),
        proptest::sample::select(vec![
            "SALE",
            "CLICK",
            "LEAD",
            "REFUND",
            "USD",
            "49.99",
            "2026-11-23T10:00:00Z",
            "o-1"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects built from the contract's own field names, so that many inputs get deep into
/// validation rather than failing on unknown fields.
fn event_like() -> impl Strategy<Value = Value> {
    let names = schemas::input::PRODUCER_FIELDS.to_vec();
    proptest::collection::vec((proptest::sample::select(names), json_value()), 0..12).prop_map(
        |pairs| {
            let mut map = Map::new();
            for (k, v) in pairs {
                map.insert(k.to_owned(), v);
            }
            Value::Object(map)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_is_an_event_or_field_errors(v in prop_oneof![json_value(), event_like()]) {
        let now = Utc::now();
        let from_value = parse_event_json(&v, now, "/v1/events");
        // The streaming text parser and the JSON-value parser give the same answer.
        prop_assert_eq!(&schemas::input::parse_event_str(&v.to_string(), now, "/v1/events"), &from_value);
        match from_value {
            Ok((event, _)) => prop_assert!(validate(&event).is_ok()),
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(!e.field.is_empty() && !e.reason.is_empty());
                }
            }
        }
    }
}
