//! Avro single-object encoding round trips, and malformed bytes are errors, never panics.

use proptest::prelude::*;
use rust_decimal::Decimal;
use schemas::avro::current_schema;
use schemas::{samples, DecodeError, EventCodec, EventName, SingleObjectCodec, TrackingEvent};

#[test]
fn samples_round_trip_exactly() {
    let codec = SingleObjectCodec::new();
    for event in samples::all() {
        let bytes = codec.encode(&event).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(&bytes[2..10], &current_schema().fingerprint);
        assert_eq!(codec.decode(&bytes).unwrap(), event);
    }
}

/// The datum apache-avro writes for `e` through its generic `Value` path: the reference the
/// direct writer must match byte for byte.
fn reference_datum(e: &TrackingEvent) -> Vec<u8> {
    apache_avro::writer::datum::GenericDatumWriter::builder(&current_schema().schema)
        .build()
        .unwrap()
        .write_value_to_vec(schemas::avro::to_value(e).unwrap())
        .unwrap()
}

#[test]
fn the_direct_writer_matches_apache_avro_byte_for_byte() {
    let codec = SingleObjectCodec::new();
    for event in samples::all() {
        assert_eq!(
            codec.encode(&event).unwrap()[10..],
            reference_datum(&event)[..],
            "{}",
            event.event_id
        );
    }
}

#[test]
fn money_keeps_every_digit() {
    let codec = SingleObjectCodec::new();
    let mut e = samples::sale();
    e.revenue = Some("999999999999.999999".parse().unwrap());
    e.payout = Some("0.000001".parse().unwrap());
    let back = codec.decode(&codec.encode(&e).unwrap()).unwrap();
    assert_eq!(back.revenue.unwrap().to_string(), "999999999999.999999");
    assert_eq!(back.payout.unwrap().to_string(), "0.000001");
}

#[test]
fn malformed_messages_are_precise_errors() {
    let codec = SingleObjectCodec::new();
    let good = codec.encode(&samples::sale()).unwrap();
    assert!(matches!(
        codec.decode(&good[..5]),
        Err(DecodeError::Truncated(5))
    ));
    let mut wrong_marker = good.clone();
    wrong_marker[0] = 0x01;
    assert!(matches!(
        codec.decode(&wrong_marker),
        Err(DecodeError::UnknownFraming)
    ));
    // A Confluent-framed record is recognised, and needs the registry.
    let mut confluent = vec![0x00, 0, 0, 0, 9];
    confluent.extend_from_slice(&good[10..]);
    assert!(matches!(
        codec.decode(&confluent),
        Err(DecodeError::NeedsRegistry(9))
    ));
    let mut unknown = good.clone();
    unknown[2] ^= 0xFF;
    assert!(matches!(
        codec.decode(&unknown),
        Err(DecodeError::UnknownSchema(_))
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        codec.decode(&trailing),
        Err(DecodeError::TrailingBytes(1))
    ));
    assert!(codec.decode(&good[..good.len() - 3]).is_err());
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9 _.-]{0,24}")
}

fn amount() -> impl Strategy<Value = Option<Decimal>> {
    proptest::option::of(
        (0i64..999_999_999_999_999_999, 0u32..=6)
            .prop_map(|(m, s)| Decimal::new(m / 10i64.pow(6 - s), s)),
    )
}

prop_compose! {
    fn event()(
        id in "[a-z0-9-]{1,40}",
        name in proptest::sample::select(EventName::ALL.to_vec()),
        occurred in 946_684_800_000i64..4_102_444_800_000,
        order in opt_text(), click in opt_text(), sub3 in opt_text(),
        revenue in amount(), payout in amount(),
        rebill in proptest::option::of(1i32..100),
        is_test in any::<bool>(),
        attrs in proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,16}", 0..4),
        flags in proptest::sample::subsequence(schemas::quality::EVENT_FLAGS.to_vec(), 0..=2),
        keys in proptest::option::of((opt_text(), opt_text(), opt_text())),
        ids in proptest::option::of((opt_text(), opt_text(), opt_text(), opt_text())),
    ) -> TrackingEvent {
        let t = chrono::DateTime::from_timestamp_millis(occurred).unwrap();
        let mut e = TrackingEvent::new(id, name, t, t, "first_party", "/v1/events");
        e.order_id = order;
        e.click_id = click;
        e.sub3 = sub3;
        e.revenue = revenue;
        e.payout = payout;
        e.currency = Some("USD".into());
        e.rebill_sequence = rebill;
        e.is_test = is_test;
        e.attributes = attrs;
        e.quality_flags = flags.into_iter().map(String::from).collect();
        e.match_keys = keys.map(|(email, phone, digits)| schemas::MatchKeys {
            email_sha256: email,
            phone_sha256: phone,
            phone_digits_sha256: digits,
        });
        e.platform_ids = ids.map(|(gclid, fbc, ttclid, ga)| schemas::PlatformIds {
            gclid,
            fbc,
            ttclid,
            ga_client_id: ga,
            ..Default::default()
        });
        e
    }
}

/// The event apache-avro reads from a datum: the reference the direct reader must agree with.
fn reference_read(datum: &[u8]) -> TrackingEvent {
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&current_schema().schema)
        .build()
        .unwrap()
        .read_value(&mut &datum[..])
        .unwrap();
    schemas::avro::from_value(value).unwrap()
}

#[test]
fn the_direct_reader_agrees_with_apache_avro() {
    let codec = SingleObjectCodec::new();
    for event in samples::all() {
        let bytes = codec.encode(&event).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), reference_read(&bytes[10..]));
    }
}

proptest! {
    #[test]
    fn any_event_round_trips(e in event()) {
        let codec = SingleObjectCodec::new();
        let bytes = codec.encode(&e).unwrap();
        prop_assert_eq!(codec.decode(&bytes).unwrap(), e.clone());
        prop_assert_eq!(reference_read(&bytes[10..]), e.clone());
        // apache-avro writes map entries in HashMap order, which varies; Avro gives map order
        // no meaning. Bytes are compared with at most one attribute, content with all of them.
        let mut one_attribute = e;
        let keep = one_attribute.attributes.pop_first();
        one_attribute.attributes = keep.into_iter().collect();
        prop_assert_eq!(&codec.encode(&one_attribute).unwrap()[10..], &reference_datum(&one_attribute)[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let codec = SingleObjectCodec::new();
        let mut framed = vec![0xC3, 0x01];
        framed.extend_from_slice(&current_schema().fingerprint);
        framed.extend_from_slice(&bytes);
        let _ = codec.decode(&bytes);
        let _ = codec.decode(&framed);
    }
}
