//! The ledger entry and receipt encodings: round trips, agreement with apache-avro's reading
//! of the published schemas, and the embedded event schema kept identical to the contract.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use chrono::{TimeZone, Utc};
use schemas::avro::current_schema;
use schemas::avro::ledger::{
    attempt_schema, decode_attempt, decode_entry, decode_outbox, decode_receipt, encode_attempt,
    encode_entry, encode_entry_v1, encode_entry_v2, encode_outbox, encode_outbox_v1,
    encode_receipt, entry_schema, entry_v1_schema, entry_v2_schema, outbox_schema,
    outbox_v1_schema, receipt_schema,
};
use schemas::ledger::flags;
use schemas::{
    samples, AttemptOutcome, ConversionStatus, LedgerEntry, LinkStatus, MatchKeys, OutboxRecord,
    PayoutSource, PostbackAttempt, Receipt, ReceiptKind, TrackingEvent,
};

/// Match keys with a null among them, so that both union branches are written.
fn ids() -> schemas::PlatformIds {
    schemas::PlatformIds {
        gclid: Some("Cj0KCQiA-gclid".into()),
        fbc: Some("fb.1.1764000000000.IwAR2x".into()),
        ga_client_id: Some("1234567890.1764000000".into()),
        ..Default::default()
    }
}

fn keys() -> MatchKeys {
    MatchKeys {
        email_sha256: Some(
            "6a6c26195c3682faa816966af789717c3bfa834eee6c599d667d2b3429c27cfd".into(),
        ),
        phone_sha256: None,
        phone_digits_sha256: Some(
            "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd".into(),
        ),
    }
}

fn entry() -> LedgerEntry {
    LedgerEntry {
        conversion_key: "first_party/order/ord-1001".into(),
        link_status: LinkStatus::Linked,
        linked_event_id: Some("sale-1".into()),
        adopted_event_ids: vec!["refund-0".into()],
        signed_revenue: "-12.5".parse().unwrap(),
        signed_payout: "-3.25".parse().unwrap(),
        conversion_status: ConversionStatus::PartiallyRefunded,
        net_revenue: "37.5".parse().unwrap(),
        net_payout: schemas::Money::ZERO,
        flags: vec![flags::OVER_REVERSAL.into()],
        recorded_at: Utc.timestamp_millis_opt(1_764_000_000_123).unwrap(),
        input_partition: 3,
        input_offset: 1_234_567,
        event: TrackingEvent {
            match_keys: Some(keys()),
            platform_ids: Some(ids()),
            ..samples::refund()
        },
        payout_source: PayoutSource::Rule,
        payout_rule: Some("clawback of offer keto: revshare 40%".into()),
    }
}

/// `entry` as a v1 record carries it: v1 has no payout rule, and its source is the event's.
fn as_v1(mut e: LedgerEntry) -> LedgerEntry {
    e.event.match_keys = None;
    e.event.platform_ids = None;
    e.payout_rule = None;
    e.payout_source = if e.event.payout.is_some() {
        PayoutSource::Event
    } else {
        PayoutSource::None
    };
    e
}

fn receipt() -> Receipt {
    Receipt {
        event_id: "e-1".into(),
        conversion_key: "click/c1".into(),
        kind: ReceiptKind::Conflict,
        event_name: "CLICK".into(),
        occurrence: 3,
        route: "/c/offer".into(),
        delivery_attempt: Some(2),
        received_at: Utc.timestamp_millis_opt(1_764_000_000_000).unwrap(),
        first_received_at: Utc.timestamp_millis_opt(1_763_000_000_000).unwrap(),
        content_fingerprint: "00000000000000ff".into(),
        first_fingerprint: "0000000000000001".into(),
        is_test: true,
        recorded_at: Utc.timestamp_millis_opt(1_764_000_000_500).unwrap(),
        input_partition: 0,
        input_offset: 9,
    }
}

fn apache_read(schema: &Schema, datum: &[u8]) -> Vec<(String, Value)> {
    let mut rest = datum;
    let value = GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut rest)
        .unwrap();
    assert!(rest.is_empty(), "{} bytes left", rest.len());
    match value {
        Value::Record(fields) => fields,
        v => panic!("not a record: {v:?}"),
    }
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> &'a Value {
    &fields.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn entries_round_trip_and_apache_avro_reads_them() {
    for event in samples::all() {
        let mut e = entry();
        e.event = TrackingEvent {
            match_keys: Some(keys()),
            platform_ids: Some(ids()),
            ..event
        };
        let bytes = encode_entry(&e).unwrap();
        assert_eq!(&bytes[2..10], &entry_schema().fingerprint);
        assert_eq!(decode_entry(&bytes).unwrap(), e);
        let fields = apache_read(&entry_schema().schema, &bytes[10..]);
        let Value::Union(1, keys) = field(&fields, "match_keys") else {
            panic!("match_keys is null")
        };
        let Value::Record(keys) = keys.as_ref() else {
            panic!("match_keys is not a record")
        };
        assert_eq!(
            field(keys, "email_sha256"),
            &Value::Union(
                1,
                Box::new(Value::String(self::keys().email_sha256.unwrap()))
            )
        );
        assert_eq!(
            field(keys, "phone_sha256"),
            &Value::Union(0, Box::new(Value::Null))
        );
        let Value::Union(1, ids) = field(&fields, "platform_ids") else {
            panic!("platform_ids is null")
        };
        let Value::Record(ids) = ids.as_ref() else {
            panic!("platform_ids is not a record")
        };
        assert_eq!(
            field(ids, "ga_client_id"),
            &Value::Union(1, Box::new(Value::String("1234567890.1764000000".into())))
        );
        assert_eq!(
            field(ids, "ttclid"),
            &Value::Union(0, Box::new(Value::Null))
        );
        assert_eq!(
            field(&fields, "conversion_key"),
            &Value::String(e.conversion_key.clone())
        );
        assert_eq!(
            field(&fields, "conversion_status"),
            &Value::Enum(6, "PARTIALLY_REFUNDED".into())
        );
        assert_eq!(field(&fields, "input_offset"), &Value::Long(1_234_567));
        assert_eq!(
            field(&fields, "payout_source"),
            &Value::Enum(2, "RULE".into())
        );
        assert_eq!(
            field(&fields, "payout_rule"),
            &Value::Union(
                1,
                Box::new(Value::String("clawback of offer keto: revshare 40%".into()))
            )
        );
        let Value::Record(event) = field(&fields, "event") else {
            panic!("event is not a record")
        };
        assert_eq!(
            field(event, "event_id"),
            &Value::String(e.event.event_id.clone())
        );
    }
}

#[test]
fn receipts_round_trip_and_apache_avro_reads_them() {
    let r = receipt();
    let bytes = encode_receipt(&r);
    assert_eq!(decode_receipt(&bytes).unwrap(), r);
    let fields = apache_read(&receipt_schema().schema, &bytes[10..]);
    assert_eq!(field(&fields, "kind"), &Value::Enum(1, "CONFLICT".into()));
    assert_eq!(field(&fields, "occurrence"), &Value::Int(3));
    assert_eq!(field(&fields, "is_test"), &Value::Boolean(true));
    assert_eq!(
        field(&fields, "delivery_attempt"),
        &Value::Union(1, Box::new(Value::Int(2)))
    );
}

#[test]
fn the_entry_embeds_the_v1_event_schema() {
    // The ledger keeps an event's quality flags in the entry's own `flags`, so the entry
    // embeds contract v1, which is the current contract without its `quality_flags`.
    let v1_event = &schemas::avro::published_versions()[0].schema;
    for version in [entry_schema(), entry_v2_schema(), entry_v1_schema()] {
        let Schema::Record(entry) = &version.schema else {
            panic!("not a record")
        };
        let event = entry.fields.iter().find(|f| f.name == "event").unwrap();
        assert_eq!(&event.schema, v1_event);
    }
    let (Schema::Record(v1), Schema::Record(current)) = (v1_event, &current_schema().schema) else {
        panic!("not records")
    };
    let mut names: Vec<_> = v1.fields.iter().map(|f| f.name.as_str()).collect();
    names.extend(["quality_flags", "match_keys", "platform_ids"]);
    let current_names: Vec<_> = current.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(current_names, names);
    // v2 is v1 and two fields after it, with defaults: a v2 reader reads v1 records.
    let (Schema::Record(v1), Schema::Record(v2), Schema::Record(v3)) = (
        &entry_v1_schema().schema,
        &entry_v2_schema().schema,
        &entry_schema().schema,
    ) else {
        panic!("not records")
    };
    let names = |r: &apache_avro::schema::RecordSchema| {
        r.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>()
    };
    let mut expected = names(v1);
    expected.extend(["payout_source".to_owned(), "payout_rule".to_owned()]);
    assert_eq!(names(v2), expected);
    assert!(v2.fields[v1.fields.len()..]
        .iter()
        .all(|f| f.default.is_some()));
    // v3 appends match_keys and platform_ids, with defaults: a v3 reader reads v1 and v2.
    expected.extend(["match_keys".to_owned(), "platform_ids".to_owned()]);
    assert_eq!(names(v3), expected);
    assert!(v3.fields[v2.fields.len()..]
        .iter()
        .all(|f| f.default.is_some()));
    for older in [entry_v1_schema(), entry_v2_schema()] {
        schemas::avro::check_can_read(&older.schema, &entry_schema().schema).unwrap();
    }
}

#[test]
fn v2_entries_still_decode_without_match_keys() {
    let e = entry();
    let bytes = encode_entry_v2(&e).unwrap();
    assert_eq!(&bytes[2..10], &entry_v2_schema().fingerprint);
    let mut expected = e;
    expected.event.match_keys = None;
    expected.event.platform_ids = None;
    assert_eq!(decode_entry(&bytes).unwrap(), expected);
    let fields = apache_read(&entry_v2_schema().schema, &bytes[10..]);
    assert_eq!(field(&fields, "input_offset"), &Value::Long(1_234_567));
}

#[test]
fn v1_entries_still_decode_with_the_payout_source_of_their_event() {
    for event in samples::all() {
        let mut e = entry();
        e.event = event;
        let bytes = encode_entry_v1(&e).unwrap();
        assert_eq!(&bytes[2..10], &entry_v1_schema().fingerprint);
        let decoded = decode_entry(&bytes).unwrap();
        assert_eq!(decoded, as_v1(e.clone()));
        assert_eq!(
            decoded.payout_source,
            if e.event.payout.is_some() {
                PayoutSource::Event
            } else {
                PayoutSource::None
            }
        );
        // And apache-avro reads them with the v1 schema.
        let fields = apache_read(&entry_v1_schema().schema, &bytes[10..]);
        assert_eq!(field(&fields, "input_offset"), &Value::Long(1_234_567));
    }
}

#[test]
fn enum_symbols_match_the_schemas() {
    let symbols = |schema: &Schema, field: &str| -> Vec<String> {
        let Schema::Record(r) = schema else { panic!() };
        match &r.fields.iter().find(|f| f.name == field).unwrap().schema {
            Schema::Enum(e) => e.symbols.clone(),
            s => panic!("{field}: {s:?}"),
        }
    };
    let names = |all: &[&str]| all.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        symbols(&entry_schema().schema, "link_status"),
        names(
            &LinkStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        symbols(&entry_schema().schema, "conversion_status"),
        names(
            &ConversionStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        symbols(&entry_schema().schema, "payout_source"),
        names(
            &PayoutSource::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        symbols(&receipt_schema().schema, "kind"),
        names(
            &ReceiptKind::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
}

#[test]
fn wrong_schema_and_truncation_are_errors() {
    let bytes = encode_entry(&entry()).unwrap();
    assert!(decode_receipt(&bytes).is_err());
    for cut in [0, 5, 10, 20, bytes.len() - 1] {
        assert!(decode_entry(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode_entry(&longer).is_err());
}

#[test]
fn outbox_records_round_trip_and_embed_the_entry_schema() {
    let record = OutboxRecord {
        destination: "meta-capi".into(),
        idempotency_key: "evt-refund-1001".into(),
        enqueued_at: Utc.timestamp_millis_opt(1_764_000_000_999).unwrap(),
        entry: entry(),
    };
    let bytes = encode_outbox(&record).unwrap();
    assert_eq!(&bytes[2..10], &outbox_schema().fingerprint);
    // The outbox embeds the entry as ledger_entry.v1 has it, and its match keys after it.
    let mut embedded = as_v1(record.entry.clone());
    embedded.event.match_keys = Some(keys());
    embedded.event.platform_ids = Some(ids());
    let v2 = OutboxRecord {
        entry: embedded,
        ..record.clone()
    };
    assert_eq!(decode_outbox(&bytes).unwrap(), v2);
    // A record written before v2 reads without them.
    let old = encode_outbox_v1(&record).unwrap();
    assert_eq!(&old[2..10], &outbox_v1_schema().fingerprint);
    let v1 = OutboxRecord {
        entry: as_v1(record.entry.clone()),
        ..record
    };
    assert_eq!(decode_outbox(&old).unwrap(), v1);
    schemas::avro::check_can_read(&outbox_v1_schema().schema, &outbox_schema().schema).unwrap();
    let fields = apache_read(&outbox_schema().schema, &bytes[10..]);
    assert_eq!(
        field(&fields, "destination"),
        &Value::String("meta-capi".into())
    );
    let Schema::Record(outbox) = &outbox_schema().schema else {
        panic!("not a record")
    };
    let entry_field = outbox.fields.iter().find(|f| f.name == "entry").unwrap();
    assert_eq!(entry_field.schema, entry_v1_schema().schema);
    assert!(
        decode_entry(&bytes).is_err(),
        "an outbox record is not an entry"
    );
}

#[test]
fn published_ledger_schemas_never_change() {
    // Kafka holds ledger data under these fingerprints; a change is a new versioned file.
    // The first of each pair is the specification's (checked against fastavro in
    // tests/tests/avro_reference.rs), the second what builds before it wrote, still read.
    let hex = |fp: &[u8; 8]| fp.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let pinned = [
        (entry_v1_schema(), "731c46f40eb905c9", "1b7b2b62917ada66"),
        (entry_v2_schema(), "58ba322a11214991", "a0247ca17807d451"),
        (entry_schema(), "6665c2f262373726", "93d4cb3e66aaeabe"),
        (receipt_schema(), "4f756557ed8b8553", "23df8a93fdb93b81"),
        (outbox_v1_schema(), "8d61f403291725ec", "af98671683984bbb"),
        (outbox_schema(), "d3d21b74218e1788", "b8fad745885c982c"),
        (attempt_schema(), "328f7995ca101677", "9465a85b3b2cfca8"),
    ];
    for (version, standard, legacy) in pinned {
        assert_eq!(hex(&version.fingerprint), standard);
        assert_eq!(hex(&version.legacy_fingerprint), legacy);
    }
}

#[test]
fn entries_written_under_the_legacy_fingerprint_still_decode() {
    let entry = entry();
    let mut bytes = encode_entry_v1(&entry).unwrap();
    bytes[2..10].copy_from_slice(&entry_v1_schema().legacy_fingerprint);
    assert_eq!(decode_entry(&bytes).unwrap(), as_v1(entry));
    bytes[2] ^= 1;
    assert!(
        decode_entry(&bytes).is_err(),
        "an unknown fingerprint is refused"
    );
}

#[test]
fn attempts_round_trip_and_apache_avro_reads_them() {
    let mut a = PostbackAttempt {
        destination: "meta-capi".into(),
        idempotency_key: "evt-sale-1001".into(),
        event_name: "SALE".into(),
        offer_id: Some("keto-vsl".into()),
        is_test: false,
        attempt: 2,
        outcome: AttemptOutcome::TransientFailure,
        dead_lettered: false,
        http_status: Some(503),
        error: Some("server error".into()),
        latency_ms: 87,
        response_snippet: "upstream unavailable".into(),
        attempted_at: Utc.timestamp_millis_opt(1_764_000_000_000).unwrap(),
        next_attempt_at: Some(Utc.timestamp_millis_opt(1_764_000_004_000).unwrap()),
    };
    for _ in 0..2 {
        let bytes = encode_attempt(&a);
        assert_eq!(decode_attempt(&bytes).unwrap(), a);
        let fields = apache_read(&attempt_schema().schema, &bytes[10..]);
        assert_eq!(field(&fields, "attempt"), &Value::Int(a.attempt));
        a.http_status = None;
        a.error = None;
        a.next_attempt_at = None;
        a.outcome = AttemptOutcome::Delivered;
    }
}
