//! Avro single-object encoding of the processor's outputs: [`LedgerEntry`] on `ledger.v1`,
//! [`Receipt`] on `ledger.receipts.v1` and [`OutboxRecord`] on `postbacks.outbox.v1`; and of
//! the forwarder's [`PostbackAttempt`] on `postbacks.attempts.v1`. Written and read directly, like the event;
//! `tests/ledger_codec.rs` holds both to apache-avro's reading of the published schemas.

use std::sync::LazyLock;

use crate::money::Money;

use super::datum::{self, long, opt_int, opt_string, string, string_array, timestamp, Reader};
use super::{DecodeError, EncodeError, SchemaVersion, HEADER_LEN};
use crate::event::TrackingEvent;
use crate::ledger::{
    AttemptOutcome, ConversionStatus, LedgerEntry, LinkStatus, OutboxRecord, PayoutSource,
    PostbackAttempt, Receipt, ReceiptKind,
};

/// The published ledger-entry schema this build writes: v1's fields, then the payout's source
/// and rule (v2), then the event's match keys (v3).
pub const LEDGER_ENTRY_SCHEMA: &str = include_str!("../../avro/ledger_entry.v3.avsc");
/// The second ledger-entry schema, still read.
pub const LEDGER_ENTRY_V2_SCHEMA: &str = include_str!("../../avro/ledger_entry.v2.avsc");
/// The first ledger-entry schema, still read; the outbox embeds an entry in this shape.
pub const LEDGER_ENTRY_V1_SCHEMA: &str = include_str!("../../avro/ledger_entry.v1.avsc");
/// The published receipt schema this build writes.
pub const RECEIPT_SCHEMA: &str = include_str!("../../avro/receipt.v1.avsc");
/// The published attempt schema this build writes.
pub const ATTEMPT_SCHEMA: &str = include_str!("../../avro/postback_attempt.v1.avsc");
/// The published outbox schema this build writes: v1's fields, then the entry's match keys.
pub const OUTBOX_SCHEMA: &str = include_str!("../../avro/postback_outbox.v2.avsc");
/// The first outbox schema, still read.
pub const OUTBOX_V1_SCHEMA: &str = include_str!("../../avro/postback_outbox.v1.avsc");

static ENTRY: LazyLock<SchemaVersion> =
    LazyLock::new(|| SchemaVersion::parse(3, LEDGER_ENTRY_SCHEMA));
static ENTRY_V2: LazyLock<SchemaVersion> =
    LazyLock::new(|| SchemaVersion::parse(2, LEDGER_ENTRY_V2_SCHEMA));
static ENTRY_V1: LazyLock<SchemaVersion> =
    LazyLock::new(|| SchemaVersion::parse(1, LEDGER_ENTRY_V1_SCHEMA));
static RECEIPT: LazyLock<SchemaVersion> = LazyLock::new(|| SchemaVersion::parse(1, RECEIPT_SCHEMA));
static OUTBOX: LazyLock<SchemaVersion> = LazyLock::new(|| SchemaVersion::parse(2, OUTBOX_SCHEMA));
static OUTBOX_V1: LazyLock<SchemaVersion> =
    LazyLock::new(|| SchemaVersion::parse(1, OUTBOX_V1_SCHEMA));
static ATTEMPT: LazyLock<SchemaVersion> = LazyLock::new(|| SchemaVersion::parse(1, ATTEMPT_SCHEMA));

pub fn entry_schema() -> &'static SchemaVersion {
    &ENTRY
}

pub fn entry_v1_schema() -> &'static SchemaVersion {
    &ENTRY_V1
}

pub fn entry_v2_schema() -> &'static SchemaVersion {
    &ENTRY_V2
}

pub fn outbox_v1_schema() -> &'static SchemaVersion {
    &OUTBOX_V1
}

pub fn receipt_schema() -> &'static SchemaVersion {
    &RECEIPT
}

pub fn outbox_schema() -> &'static SchemaVersion {
    &OUTBOX
}

pub fn attempt_schema() -> &'static SchemaVersion {
    &ATTEMPT
}

/// Always 8 bytes: a `Money` fits `decimal(18, 6)` by construction.
fn money(out: &mut Vec<u8>, amount: Money) {
    datum::bytes(out, &amount.micros().to_be_bytes());
}

fn header(version: &SchemaVersion, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(&super::SINGLE_OBJECT_MARKER);
    out.extend_from_slice(&version.fingerprint);
    out
}

/// The datum of `bytes` if it is a single object written with `version`.
fn body<'a>(version: &SchemaVersion, bytes: &'a [u8]) -> Result<&'a [u8], DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    if bytes[..2] != super::SINGLE_OBJECT_MARKER {
        return Err(DecodeError::NotSingleObject);
    }
    if !version.written_with(&bytes[2..HEADER_LEN]) {
        return Err(DecodeError::UnknownSchema(crate::privacy::lower_hex(
            &bytes[2..HEADER_LEN],
        )));
    }
    Ok(&bytes[HEADER_LEN..])
}

fn finish<T>(r: &Reader<'_>, value: T) -> Result<T, DecodeError> {
    match r.rest().len() {
        0 => Ok(value),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

pub fn encode_entry(e: &LedgerEntry) -> Result<Vec<u8>, EncodeError> {
    let mut out = header(&ENTRY, 768);
    write_entry(e, &mut out)?;
    long(&mut out, i64::from(e.payout_source.index()));
    opt_string(&mut out, &e.payout_rule);
    datum::ad_matching(&mut out, &e.event);
    Ok(out)
}

/// An entry in v2's shape, for records written before v3.
pub fn encode_entry_v2(e: &LedgerEntry) -> Result<Vec<u8>, EncodeError> {
    let mut out = header(&ENTRY_V2, 768);
    write_entry(e, &mut out)?;
    long(&mut out, i64::from(e.payout_source.index()));
    opt_string(&mut out, &e.payout_rule);
    Ok(out)
}

/// An entry in v1's shape, for records written before v2.
pub fn encode_entry_v1(e: &LedgerEntry) -> Result<Vec<u8>, EncodeError> {
    let mut out = header(&ENTRY_V1, 768);
    write_entry(e, &mut out)?;
    Ok(out)
}

fn write_entry(e: &LedgerEntry, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    string(out, &e.conversion_key);
    long(out, i64::from(e.link_status.index()));
    opt_string(out, &e.linked_event_id);
    string_array(out, &e.adopted_event_ids);
    money(out, e.signed_revenue);
    money(out, e.signed_payout);
    long(out, i64::from(e.conversion_status.index()));
    money(out, e.net_revenue);
    money(out, e.net_payout);
    string_array(out, &e.flags);
    timestamp(out, e.recorded_at);
    long(out, i64::from(e.input_partition));
    long(out, e.input_offset);
    datum::write_event_body(&e.event, out)
}

/// An entry written with v3, v2 (no match keys), or v1 (whose payout source reads as NONE,
/// or EVENT for a payout the event carried).
pub fn decode_entry(bytes: &[u8]) -> Result<LedgerEntry, DecodeError> {
    let written_with =
        |v: &SchemaVersion| bytes.len() >= HEADER_LEN && v.written_with(&bytes[2..HEADER_LEN]);
    let version = [&*ENTRY_V1, &*ENTRY_V2]
        .into_iter()
        .find(|v| written_with(v))
        .unwrap_or(&ENTRY);
    let mut r = Reader::new(body(version, bytes)?);
    let mut entry = read_entry(&mut r)?;
    if version.version >= 2 {
        entry.payout_source = r.at("payout_source").symbol(PayoutSource::ALL)?;
        entry.payout_rule = r.at("payout_rule").opt_string()?;
    }
    if version.version >= 3 {
        r.read_ad_matching(&mut entry.event)?;
    }
    finish(&r, entry)
}

fn read_entry(r: &mut Reader<'_>) -> Result<LedgerEntry, DecodeError> {
    Ok(LedgerEntry {
        conversion_key: r.at("conversion_key").string()?,
        link_status: r.at("link_status").symbol(LinkStatus::ALL)?,
        linked_event_id: r.at("linked_event_id").opt_string()?,
        adopted_event_ids: r.at("adopted_event_ids").string_array()?,
        signed_revenue: r.at("signed_revenue").exact_money()?,
        signed_payout: r.at("signed_payout").exact_money()?,
        conversion_status: r.at("conversion_status").symbol(ConversionStatus::ALL)?,
        net_revenue: r.at("net_revenue").exact_money()?,
        net_payout: r.at("net_payout").exact_money()?,
        flags: r.at("flags").string_array()?,
        recorded_at: r.at("recorded_at").timestamp()?,
        input_partition: r.at("input_partition").int()?,
        input_offset: r.at("input_offset").long()?,
        event: datum::read_event_body(r)?,
        payout_source: PayoutSource::None,
        payout_rule: None,
    })
    .map(|mut e| {
        if e.event.payout.is_some() {
            e.payout_source = PayoutSource::Event;
        }
        e
    })
}

pub fn encode_outbox(o: &OutboxRecord) -> Result<Vec<u8>, EncodeError> {
    let mut out = encode_outbox_v1_shape(&OUTBOX, o)?;
    datum::ad_matching(&mut out, &o.entry.event);
    Ok(out)
}

/// An outbox record in v1's shape (no match keys), for records written before v2.
pub fn encode_outbox_v1(o: &OutboxRecord) -> Result<Vec<u8>, EncodeError> {
    encode_outbox_v1_shape(&OUTBOX_V1, o)
}

fn encode_outbox_v1_shape(
    version: &SchemaVersion,
    o: &OutboxRecord,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = header(version, 1024);
    string(&mut out, &o.destination);
    string(&mut out, &o.idempotency_key);
    timestamp(&mut out, o.enqueued_at);
    write_entry(&o.entry, &mut out)?;
    Ok(out)
}

/// An outbox record written with v2, or with v1 (no match keys).
pub fn decode_outbox(bytes: &[u8]) -> Result<OutboxRecord, DecodeError> {
    let v1 = bytes.len() >= HEADER_LEN && OUTBOX_V1.written_with(&bytes[2..HEADER_LEN]);
    let mut r = Reader::new(body(if v1 { &OUTBOX_V1 } else { &OUTBOX }, bytes)?);
    let mut record = OutboxRecord {
        destination: r.at("destination").string()?,
        idempotency_key: r.at("idempotency_key").string()?,
        enqueued_at: r.at("enqueued_at").timestamp()?,
        entry: read_entry(&mut r)?,
    };
    if !v1 {
        r.read_ad_matching(&mut record.entry.event)?;
    }
    finish(&r, record)
}

pub fn encode_receipt(rc: &Receipt) -> Vec<u8> {
    let mut out = header(&RECEIPT, 256);
    string(&mut out, &rc.event_id);
    string(&mut out, &rc.conversion_key);
    long(&mut out, i64::from(rc.kind.index()));
    string(&mut out, &rc.event_name);
    long(&mut out, i64::from(rc.occurrence));
    string(&mut out, &rc.route);
    opt_int(&mut out, rc.delivery_attempt);
    timestamp(&mut out, rc.received_at);
    timestamp(&mut out, rc.first_received_at);
    string(&mut out, &rc.content_fingerprint);
    string(&mut out, &rc.first_fingerprint);
    out.push(u8::from(rc.is_test));
    timestamp(&mut out, rc.recorded_at);
    long(&mut out, i64::from(rc.input_partition));
    long(&mut out, rc.input_offset);
    out
}

pub fn decode_receipt(bytes: &[u8]) -> Result<Receipt, DecodeError> {
    let mut r = Reader::new(body(&RECEIPT, bytes)?);
    let receipt = Receipt {
        event_id: r.at("event_id").string()?,
        conversion_key: r.at("conversion_key").string()?,
        kind: r.at("kind").symbol(ReceiptKind::ALL)?,
        event_name: r.at("event_name").string()?,
        occurrence: r.at("occurrence").int()?,
        route: r.at("route").string()?,
        delivery_attempt: r.at("delivery_attempt").opt_int()?,
        received_at: r.at("received_at").timestamp()?,
        first_received_at: r.at("first_received_at").timestamp()?,
        content_fingerprint: r.at("content_fingerprint").string()?,
        first_fingerprint: r.at("first_fingerprint").string()?,
        is_test: r.at("is_test").boolean()?,
        recorded_at: r.at("recorded_at").timestamp()?,
        input_partition: r.at("input_partition").int()?,
        input_offset: r.at("input_offset").long()?,
    };
    finish(&r, receipt)
}

pub fn encode_attempt(a: &PostbackAttempt) -> Vec<u8> {
    let mut out = header(&ATTEMPT, 256);
    string(&mut out, &a.destination);
    string(&mut out, &a.idempotency_key);
    string(&mut out, &a.event_name);
    opt_string(&mut out, &a.offer_id);
    out.push(u8::from(a.is_test));
    long(&mut out, i64::from(a.attempt));
    long(&mut out, i64::from(a.outcome.index()));
    out.push(u8::from(a.dead_lettered));
    opt_int(&mut out, a.http_status);
    opt_string(&mut out, &a.error);
    long(&mut out, a.latency_ms);
    string(&mut out, &a.response_snippet);
    timestamp(&mut out, a.attempted_at);
    match a.next_attempt_at {
        None => long(&mut out, 0),
        Some(t) => {
            long(&mut out, 1);
            timestamp(&mut out, t);
        }
    }
    out
}

pub fn decode_attempt(bytes: &[u8]) -> Result<PostbackAttempt, DecodeError> {
    let mut r = Reader::new(body(&ATTEMPT, bytes)?);
    let attempt = PostbackAttempt {
        destination: r.at("destination").string()?,
        idempotency_key: r.at("idempotency_key").string()?,
        event_name: r.at("event_name").string()?,
        offer_id: r.at("offer_id").opt_string()?,
        is_test: r.at("is_test").boolean()?,
        attempt: r.at("attempt").int()?,
        outcome: r.at("outcome").symbol(AttemptOutcome::ALL)?,
        dead_lettered: r.at("dead_lettered").boolean()?,
        http_status: r.at("http_status").opt_int()?,
        error: r.at("error").opt_string()?,
        latency_ms: r.at("latency_ms").long()?,
        response_snippet: r.at("response_snippet").string()?,
        attempted_at: r.at("attempted_at").timestamp()?,
        next_attempt_at: if r.at("next_attempt_at").present()? {
            Some(r.timestamp()?)
        } else {
            None
        },
    };
    finish(&r, attempt)
}

/// The content fingerprint of an event: a stable hash of everything except what ingest
/// stamps on each receipt (`received_at`, `route`, `delivery_attempt`), so that a network's
/// retry of the same postback has the same fingerprint and a changed one does not.
///
/// `occurred_at` counts only when the sender supplied it: where a network sends no usable
/// time (S2S, Digistore24), ingest uses the receipt time for both, and a retry would
/// otherwise look like a conflicting change.
pub fn content_fingerprint(e: &TrackingEvent) -> Result<u64, EncodeError> {
    let mut copy_free = Vec::with_capacity(512);
    let mut stamped_free = e.clone();
    if stamped_free.occurred_at == stamped_free.received_at {
        stamped_free.occurred_at = chrono::DateTime::UNIX_EPOCH;
    }
    stamped_free.received_at = chrono::DateTime::UNIX_EPOCH;
    stamped_free.route.clear();
    stamped_free.delivery_attempt = None;
    datum::write_event_body(&stamped_free, &mut copy_free)?;
    Ok(fnv1a64(&copy_free))
}

// FNV-1a: stable across builds and platforms, which the changelog needs (std's hashers are
// not guaranteed stable).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;
    use chrono::Duration;

    #[test]
    fn a_retry_stamped_with_server_time_has_the_same_fingerprint() {
        // S2S and Digistore24: no network time, so occurred_at is the receipt time.
        let mut first = samples::sale();
        first.occurred_at = first.received_at;
        let mut retry = first.clone();
        retry.received_at = first.received_at + Duration::hours(3);
        retry.occurred_at = retry.received_at;
        retry.delivery_attempt = Some(2);
        assert_eq!(
            content_fingerprint(&first).unwrap(),
            content_fingerprint(&retry).unwrap()
        );

        let mut changed = retry.clone();
        changed.revenue = Some("1.00".parse().unwrap());
        assert_ne!(
            content_fingerprint(&first).unwrap(),
            content_fingerprint(&changed).unwrap()
        );
    }

    #[test]
    fn a_network_time_that_changes_is_a_change() {
        let first = samples::sale();
        assert_ne!(first.occurred_at, first.received_at);
        let mut moved = first.clone();
        moved.occurred_at = first.occurred_at - Duration::minutes(5);
        assert_ne!(
            content_fingerprint(&first).unwrap(),
            content_fingerprint(&moved).unwrap()
        );
    }
}
