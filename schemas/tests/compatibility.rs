//! Schema evolution: every published version must read all data written with the versions
//! before it, and a published version never changes.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use schemas::avro::{check_can_read, current_schema, fingerprint, published_versions, to_value};
use schemas::samples;

fn fixture(name: &str) -> Schema {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    Schema::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn every_published_version_reads_all_earlier_versions() {
    let versions = published_versions();
    for (i, newer) in versions.iter().enumerate() {
        for older in &versions[..i] {
            check_can_read(&older.schema, &newer.schema).unwrap_or_else(|e| {
                panic!(
                    "v{} cannot read v{} data: {e}",
                    newer.version, older.version
                )
            });
        }
    }
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=versions.len() as u32).collect::<Vec<_>>(),
        "versions are numbered 1..n without gaps"
    );
}

#[test]
fn published_schema_files_never_change() {
    // Kafka holds data under these fingerprints: editing a published file orphans it. Add a
    // new version instead, and extend this list.
    let pinned: &[(u32, &str)] = &[
        (1, "27d16ee37b9a8a3d"),
        (2, "c955d89eb5df5798"),
        (3, "60ced4cb4c373348"),
    ];
    for (version, hex) in pinned {
        let v = &published_versions()[*version as usize - 1];
        let actual: String = v.fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&actual, hex, "published schema v{version} was edited");
    }
}

#[test]
fn a_breaking_change_is_caught() {
    let breaking = fixture("tracking_event.next-breaking.avsc");
    let err = check_can_read(&current_schema().schema, &breaking).unwrap_err();
    assert!(!err.is_empty());
}

#[test]
fn a_compatible_change_is_accepted_and_reads_current_data() {
    let compatible = fixture("tracking_event.next-compatible.avsc");
    check_can_read(&current_schema().schema, &compatible).unwrap();
    assert_ne!(fingerprint(&compatible), current_schema().fingerprint);

    // Not only the checker: real bytes written today decode under the newer reader.
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&current_schema().schema)
        .build()
        .unwrap();
    let reader = GenericDatumReader::builder(&current_schema().schema)
        .reader_schema(&compatible)
        .build()
        .unwrap();
    for event in samples::all() {
        let bytes = writer
            .write_value_to_vec(to_value(&event).unwrap())
            .unwrap();
        let Value::Record(fields) = reader.read_value(&mut bytes.as_slice()).unwrap() else {
            panic!("not a record");
        };
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("event_id"), Some(Value::String(event.event_id.clone())));
        assert_eq!(
            get("tenant_id"),
            Some(Value::Union(0, Box::new(Value::Null)))
        );
    }
}

#[test]
fn fingerprints_follow_the_specification_and_the_old_ones_still_read() {
    // 4434526639987020071 is the CRC-64-AVRO of v1's Parsing Canonical Form as Java's
    // SchemaNormalization computes it (and fastavro: tests/tests/avro_reference.rs); the
    // single-object header writes it little-endian.
    let v1 = &published_versions()[0];
    assert_eq!(u64::from_le_bytes(v1.fingerprint), 4434526639987020071);
    let hex = |fp: &[u8; 8]| fp.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(&v1.legacy_fingerprint), "c515898e5977cdcd");
    assert!(v1.written_with(&v1.fingerprint) && v1.written_with(&v1.legacy_fingerprint));
    // v2 was never written under apache-avro's own fingerprint.
    let v2 = &published_versions()[1];
    assert_eq!(u64::from_le_bytes(v2.fingerprint), 10977488587885925833);
}
