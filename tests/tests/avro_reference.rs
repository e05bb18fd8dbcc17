//! Our single-object encoding against a reference implementation nobody here wrote:
//! fastavro (tests/reference/single_object.py, run by the stack's Python). It must find its
//! own CRC-64-AVRO fingerprint of each schema's Parsing Canonical Form in the headers that
//! ingest's codec and the processor's ledger writer produce, decode the records, and write
//! them back in a form that our decoders read to the same values.

use std::io::Write;
use std::process::{Command, Stdio};

use chrono::{TimeZone, Utc};
use schemas::avro::ledger::{decode_entry, encode_entry, entry_schema, LEDGER_ENTRY_SCHEMA};
use schemas::avro::{current_schema, PUBLISHED_SCHEMAS};
use schemas::ledger::{ConversionStatus, LedgerEntry};
use schemas::{samples, EventCodec, SingleObjectCodec};
use serde_json::Value;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// fastavro's fingerprint, and its decoding and re-encoding of each record.
fn fastavro(schema_json: &str, records: &[Vec<u8>]) -> (String, Vec<(Value, Vec<u8>)>) {
    let dir = std::env::temp_dir().join(tests::unique_name("avro-reference"));
    std::fs::create_dir_all(&dir).unwrap();
    let schema_file = dir.join("schema.avsc");
    std::fs::write(&schema_file, schema_json).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/single_object.py");
    let mut child = Command::new(tests::stack_env("STACK_PYTHON"))
        .args([script, schema_file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the stack's Python runs");
    let mut stdin = child.stdin.take().unwrap();
    for r in records {
        writeln!(stdin, "{}", hex(r)).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "fastavro refused our records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = std::str::from_utf8(&out.stdout).unwrap().lines();
    let first: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let decoded = lines
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["record"].clone(), unhex(v["rewritten"].as_str().unwrap()))
        })
        .collect();
    (first["fingerprint"].as_str().unwrap().to_owned(), decoded)
}

#[test]
fn fastavro_reads_our_events_and_we_read_what_it_writes() {
    let codec = SingleObjectCodec::new();
    let events = samples::all();
    let records: Vec<Vec<u8>> = events.iter().map(|e| codec.encode(e).unwrap()).collect();
    let (_, json) = PUBLISHED_SCHEMAS.last().unwrap();
    let (fingerprint, decoded) = fastavro(json, &records);
    assert_eq!(fingerprint, hex(&current_schema().fingerprint));
    assert_eq!(decoded.len(), events.len());
    for (event, (record, rewritten)) in events.iter().zip(&decoded) {
        assert_eq!(record["event_id"], event.event_id.as_str());
        assert_eq!(record["event_name"], event.event_name.as_str());
        assert_eq!(&rewritten[2..10], &current_schema().fingerprint);
        assert_eq!(&codec.decode(rewritten).unwrap(), event);
    }
}

#[test]
fn fastavro_reads_our_ledger_entries_and_we_read_what_it_writes() {
    let recorded = Utc.with_ymd_and_hms(2026, 11, 28, 6, 0, 0).unwrap();
    let entries: Vec<LedgerEntry> = samples::all()
        .into_iter()
        // Recorded on a whole millisecond: the schema keeps milliseconds.
        .map(|e| LedgerEntry::opening(e, ConversionStatus::Sold, recorded).unwrap())
        .collect();
    let records: Vec<Vec<u8>> = entries.iter().map(|e| encode_entry(e).unwrap()).collect();
    let (fingerprint, decoded) = fastavro(LEDGER_ENTRY_SCHEMA, &records);
    assert_eq!(fingerprint, hex(&entry_schema().fingerprint));
    for (entry, (record, rewritten)) in entries.iter().zip(&decoded) {
        assert_eq!(record["conversion_key"], entry.conversion_key.as_str());
        assert_eq!(&decode_entry(rewritten).unwrap(), entry);
    }
}

#[test]
fn every_published_schema_has_fastavros_fingerprint() {
    use schemas::avro::ledger::{
        attempt_schema, outbox_schema, receipt_schema, ATTEMPT_SCHEMA, OUTBOX_SCHEMA,
        RECEIPT_SCHEMA,
    };
    let published = [
        (LEDGER_ENTRY_SCHEMA, entry_schema()),
        (RECEIPT_SCHEMA, receipt_schema()),
        (OUTBOX_SCHEMA, outbox_schema()),
        (ATTEMPT_SCHEMA, attempt_schema()),
    ];
    for (json, version) in published {
        assert_eq!(fastavro(json, &[]).0, hex(&version.fingerprint));
    }
    for (v, json) in PUBLISHED_SCHEMAS {
        let ours = &schemas::avro::published_versions()[*v as usize - 1];
        assert_eq!(fastavro(json, &[]).0, hex(&ours.fingerprint), "v{v}");
    }
}
