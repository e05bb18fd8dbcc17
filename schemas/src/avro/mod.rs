//! Avro encoding of [`TrackingEvent`].
//!
//! Kafka values use Avro single-object encoding (`C3 01` + the writer schema's CRC-64-AVRO
//! fingerprint + the datum), so that a consumer can pick the writer schema without a registry.
//! Callers only see [`EventCodec`]: a Confluent wire-format codec backed by a registry can be
//! another implementation of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::{Decimal as AvroDecimal, Schema};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::event::{ConsentState, EventName, PayoutStatus, RefundStatus, TrackingEvent};
use crate::matching::{MatchKeys, PlatformIds};
use crate::money::Money;

pub mod datum;
pub mod framing;
pub mod ledger;

/// Scale of every money field (`decimal(18, 6)` in Avro and ClickHouse).
pub const MONEY_SCALE: u32 = crate::money::SCALE;
/// Precision of every money field.
pub const MONEY_PRECISION: u32 = crate::money::PRECISION;

/// Every published version of the tracking-event schema, oldest first. Published files are
/// never edited; a change is a new file, and `tests/compatibility.rs` checks it can read all
/// the data written before it.
pub const PUBLISHED_SCHEMAS: &[(u32, &str)] = &[
    (1, include_str!("../../avro/tracking_event.v1.avsc")),
    (2, include_str!("../../avro/tracking_event.v2.avsc")),
    (3, include_str!("../../avro/tracking_event.v3.avsc")),
];

pub(crate) const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
pub(crate) const HEADER_LEN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("event does not fit the Avro schema: {0}")]
    Avro(#[from] apache_avro::Error),
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {0} bytes, shorter than its framing's header")]
    Truncated(usize),
    #[error("message starts with neither the Avro single-object marker C3 01 nor the Confluent magic byte 00")]
    UnknownFraming,
    #[error("message does not start with the Avro single-object marker C3 01")]
    NotSingleObject,
    #[error("unknown writer schema fingerprint {0}")]
    UnknownSchema(String),
    #[error("Confluent-framed record (schema id {0}): reading it needs the schema registry")]
    NeedsRegistry(u32),
    #[error("Avro datum cannot be read: {0}")]
    Avro(#[from] apache_avro::Error),
    #[error("{0} trailing bytes after the Avro datum")]
    TrailingBytes(usize),
    #[error("field {field}: {reason}")]
    Field { field: String, reason: String },
}

/// How tracking events become Kafka message values and back.
pub trait EventCodec: Send + Sync {
    fn encode(&self, event: &TrackingEvent) -> Result<Vec<u8>, EncodeError>;
    fn decode(&self, bytes: &[u8]) -> Result<TrackingEvent, DecodeError>;
}

/// One published schema version, parsed, with its fingerprints.
pub struct SchemaVersion {
    pub version: u32,
    pub schema: Schema,
    /// The specification's fingerprint, which this build writes.
    pub fingerprint: [u8; 8],
    /// The fingerprint that builds before it wrote (apache-avro's own canonical form), still
    /// read so that no record already on Kafka becomes unreadable.
    pub legacy_fingerprint: [u8; 8],
}

impl SchemaVersion {
    pub(crate) fn parse(version: u32, json: &str) -> Self {
        let schema = Schema::parse_str(json)
            .unwrap_or_else(|e| panic!("published schema v{version} does not parse: {e}"));
        Self {
            version,
            fingerprint: fingerprint(&schema),
            legacy_fingerprint: legacy_fingerprint(&schema),
            schema,
        }
    }

    /// Whether a single-object header's fingerprint names this version.
    pub fn written_with(&self, fingerprint: &[u8]) -> bool {
        fingerprint == self.fingerprint || fingerprint == self.legacy_fingerprint
    }
}

/// The CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, exactly as the
/// Avro specification defines it, little-endian as single-object encoding writes it: what
/// Java's `SchemaNormalization` and fastavro compute.
///
/// apache-avro 0.22's own canonical form keeps logical types' attributes (`{"type":"long"}`
/// for a timestamp, `precision` and `scale` for a decimal; AVRO-4004), so its fingerprint
/// differs from every other implementation's. The spec's [STRIP] rule drops every attribute
/// but the structural ones, so a logical type is its underlying type: stripping them first
/// and letting apache-avro canonicalise the rest gives the spec's form.
pub fn fingerprint(schema: &Schema) -> [u8; 8] {
    let mut json = serde_json::to_value(schema).expect("a parsed schema serialises");
    strip_logical_types(&mut json);
    let plain = Schema::parse(&json).expect("a schema without logical types parses");
    legacy_fingerprint(&plain)
}

/// apache-avro's fingerprint, which builds before the standard one wrote.
pub fn legacy_fingerprint(schema: &Schema) -> [u8; 8] {
    let fp = schema.fingerprint::<Rabin>();
    fp.bytes
        .as_slice()
        .try_into()
        .expect("Rabin fingerprints are 8 bytes")
}

/// Each logical type becomes its underlying type (`{"type":"long","logicalType":...}` is
/// `"long"`; a fixed keeps its size).
fn strip_logical_types(json: &mut serde_json::Value) {
    match json {
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_logical_types),
        serde_json::Value::Object(map) => {
            if map.remove("logicalType").is_some() {
                map.remove("precision");
                map.remove("scale");
            }
            map.values_mut().for_each(strip_logical_types);
            if map.len() == 1 {
                if let Some(serde_json::Value::String(primitive)) = map.get("type") {
                    *json = serde_json::Value::String(primitive.clone());
                }
            }
        }
        _ => {}
    }
}

static VERSIONS: LazyLock<Vec<SchemaVersion>> = LazyLock::new(|| {
    PUBLISHED_SCHEMAS
        .iter()
        .map(|(v, json)| SchemaVersion::parse(*v, json))
        .collect()
});

/// The schema this build writes, the newest published version.
pub fn current_schema() -> &'static SchemaVersion {
    VERSIONS.last().expect("at least one published schema")
}

/// The published file of the schema this build writes, as a producer registers it.
pub fn current_schema_json() -> &'static str {
    PUBLISHED_SCHEMAS
        .last()
        .expect("at least one published schema")
        .1
}

/// All published schema versions, oldest first.
pub fn published_versions() -> &'static [SchemaVersion] {
    &VERSIONS
}

/// The compatibility rule every subject of the contract has in a schema registry: a new
/// version must read everything written with the previous one.
pub const REGISTRY_COMPATIBILITY: &str = "BACKWARD";

/// One registry subject of the contract: TopicNameStrategy (`<topic>-value`), and the
/// published schema versions of its topic's values, oldest first.
pub struct Subject {
    pub subject: String,
    pub topic: &'static str,
    pub versions: Vec<(u32, &'static str)>,
}

/// Every Avro topic of the contract, as registry subjects.
pub fn registry_subjects() -> Vec<Subject> {
    use crate::topics;
    let outbox = || vec![(1, ledger::OUTBOX_V1_SCHEMA), (2, ledger::OUTBOX_SCHEMA)];
    let subject = |topic: &'static str, versions: Vec<(u32, &'static str)>| Subject {
        subject: format!("{topic}-value"),
        topic,
        versions,
    };
    vec![
        subject(topics::EVENTS, PUBLISHED_SCHEMAS.to_vec()),
        subject(
            topics::LEDGER,
            vec![
                (1, ledger::LEDGER_ENTRY_V1_SCHEMA),
                (2, ledger::LEDGER_ENTRY_V2_SCHEMA),
                (3, ledger::LEDGER_ENTRY_SCHEMA),
            ],
        ),
        subject(topics::RECEIPTS, vec![(1, ledger::RECEIPT_SCHEMA)]),
        subject(topics::POSTBACK_OUTBOX, outbox()),
        subject(topics::POSTBACK_RETRY, outbox()),
        subject(topics::POSTBACK_DLQ, outbox()),
        subject(topics::POSTBACK_ATTEMPTS, vec![(1, ledger::ATTEMPT_SCHEMA)]),
    ]
}

/// Whether a reader using `reader` can read everything written with `writer`.
pub fn check_can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    SchemaCompatibility::can_read(writer, reader)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Single-object encoding against the schemas compiled into this build. Encoding writes the
/// datum directly (see [`datum`]). Data written with the current schema is read directly
/// too; older versions go through apache-avro, which resolves them against the current one.
pub struct SingleObjectCodec {
    readers: HashMap<[u8; 8], GenericDatumReader<'static>>,
}

impl Default for SingleObjectCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl SingleObjectCodec {
    pub fn new() -> Self {
        let current = current_schema();
        let readers = published_versions()
            .iter()
            .flat_map(|v| {
                // Data written with the current schema needs no resolution step.
                let reader = || {
                    if v.fingerprint == current.fingerprint {
                        GenericDatumReader::builder(&v.schema).build()
                    } else {
                        GenericDatumReader::builder(&v.schema)
                            .reader_schema(&current.schema)
                            .build()
                    }
                    .expect("published schemas resolve against the current one")
                };
                [(v.fingerprint, reader()), (v.legacy_fingerprint, reader())]
            })
            .collect();
        Self { readers }
    }
}

impl EventCodec for SingleObjectCodec {
    fn encode(&self, event: &TrackingEvent) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&SINGLE_OBJECT_MARKER);
        out.extend_from_slice(&current_schema().fingerprint);
        datum::write_event(event, &mut out)?;
        Ok(out)
    }

    fn decode(&self, bytes: &[u8]) -> Result<TrackingEvent, DecodeError> {
        match framing::frame(bytes)? {
            framing::Frame::SingleObject { fingerprint, datum } => {
                self.read_datum(&fingerprint, datum)
            }
            framing::Frame::Confluent { schema_id, .. } => {
                Err(DecodeError::NeedsRegistry(schema_id))
            }
        }
    }
}

impl SingleObjectCodec {
    /// The datum of a single-object record whose header was already read: the writer schema
    /// is the published version with `fingerprint`.
    pub fn read_datum(
        &self,
        fingerprint: &[u8; 8],
        datum: &[u8],
    ) -> Result<TrackingEvent, DecodeError> {
        if current_schema().written_with(fingerprint) {
            return framing::read_current(datum);
        }
        let reader = self
            .readers
            .get(fingerprint)
            .ok_or_else(|| DecodeError::UnknownSchema(crate::privacy::lower_hex(fingerprint)))?;
        framing::read_resolved(reader, datum)
    }
}

fn union(value: Option<Value>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

fn opt_string(s: &Option<String>) -> Value {
    union(s.clone().map(Value::String))
}

fn enum_value(index: u32, symbol: &str) -> Value {
    Value::Enum(index, symbol.to_owned())
}

/// The scaled integer of a money amount, checked to fit `decimal(18, 6)`.
pub(crate) fn money_mantissa(field: &'static str, amount: Decimal) -> Result<i64, EncodeError> {
    Money::from_decimal(amount)
        .map(Money::micros)
        .map_err(|e| EncodeError::Field {
            field,
            reason: e.to_string(),
        })
}

// Always 8 bytes: apache-avro refuses to read a decimal whose byte length could not hold the
// declared precision, even though the spec allows the minimal length.
fn money_value(field: &'static str, amount: Decimal) -> Result<Value, EncodeError> {
    let mantissa = money_mantissa(field, amount)?;
    Ok(Value::Decimal(AvroDecimal::from(mantissa.to_be_bytes())))
}

pub(crate) fn from_twos_complement(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let sign = if bytes[0] & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut full = [sign; 16];
    full[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(full))
}

/// The apache-avro `Value` of an event, in the current schema's field order. Encoding does
/// not use it (see [`datum`]); it is the reference the direct writer is tested against.
pub fn to_value(e: &TrackingEvent) -> Result<Value, EncodeError> {
    let money = |field, v: Option<Decimal>| -> Result<Value, EncodeError> {
        Ok(union(v.map(|d| money_value(field, d)).transpose()?))
    };
    let ts = |t: DateTime<Utc>| Value::TimestampMillis(t.timestamp_millis());
    let fields = vec![
        ("event_id", Value::String(e.event_id.clone())),
        (
            "event_name",
            enum_value(e.event_name.index(), e.event_name.as_str()),
        ),
        ("occurred_at", ts(e.occurred_at)),
        ("occurred_at_original", opt_string(&e.occurred_at_original)),
        ("source_timezone", opt_string(&e.source_timezone)),
        ("received_at", ts(e.received_at)),
        ("settled_at", union(e.settled_at.map(ts))),
        ("network", Value::String(e.network.clone())),
        ("order_id", opt_string(&e.order_id)),
        ("transaction_id", opt_string(&e.transaction_id)),
        ("parent_order_id", opt_string(&e.parent_order_id)),
        ("rebill_sequence", union(e.rebill_sequence.map(Value::Int))),
        ("lead_id", opt_string(&e.lead_id)),
        ("native_event_type", opt_string(&e.native_event_type)),
        ("status_only", Value::Boolean(e.status_only)),
        ("click_id", opt_string(&e.click_id)),
        ("affiliate_id", opt_string(&e.affiliate_id)),
        ("campaign_id", opt_string(&e.campaign_id)),
        ("offer_id", opt_string(&e.offer_id)),
        ("source", opt_string(&e.source)),
        ("placement", opt_string(&e.placement)),
        ("utm_source", opt_string(&e.utm_source)),
        ("utm_medium", opt_string(&e.utm_medium)),
        ("utm_campaign", opt_string(&e.utm_campaign)),
        ("utm_term", opt_string(&e.utm_term)),
        ("utm_content", opt_string(&e.utm_content)),
        ("sub1", opt_string(&e.sub1)),
        ("sub2", opt_string(&e.sub2)),
        ("sub3", opt_string(&e.sub3)),
        ("sub4", opt_string(&e.sub4)),
        ("sub5", opt_string(&e.sub5)),
        ("revenue", money("revenue", e.revenue)?),
        ("payout", money("payout", e.payout)?),
        ("currency", opt_string(&e.currency)),
        (
            "payout_status",
            union(e.payout_status.map(|s| enum_value(s.index(), s.as_str()))),
        ),
        (
            "refund_status",
            union(e.refund_status.map(|s| enum_value(s.index(), s.as_str()))),
        ),
        ("is_test", Value::Boolean(e.is_test)),
        (
            "consent_state",
            enum_value(e.consent_state.index(), e.consent_state.as_str()),
        ),
        (
            "data_minimization",
            Value::Array(
                e.data_minimization
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        ),
        ("ip_hash", opt_string(&e.ip_hash)),
        ("email_hash", opt_string(&e.email_hash)),
        ("user_agent", opt_string(&e.user_agent)),
        ("route", Value::String(e.route.clone())),
        (
            "delivery_attempt",
            union(e.delivery_attempt.map(Value::Int)),
        ),
        (
            "attributes",
            Value::Map(
                e.attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        ),
        (
            "quality_flags",
            Value::Array(e.quality_flags.iter().cloned().map(Value::String).collect()),
        ),
        ("match_keys", match_keys_value(&e.match_keys)),
        ("platform_ids", platform_ids_value(&e.platform_ids)),
    ];
    Ok(Value::Record(
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    ))
}

/// `match_keys` as a `Value` (see [`datum::match_keys`]).
pub(crate) fn match_keys_value(keys: &Option<MatchKeys>) -> Value {
    union(keys.as_ref().map(|k| {
        Value::Record(vec![
            ("email_sha256".into(), opt_string(&k.email_sha256)),
            ("phone_sha256".into(), opt_string(&k.phone_sha256)),
            (
                "phone_digits_sha256".into(),
                opt_string(&k.phone_digits_sha256),
            ),
        ])
    }))
}

/// `platform_ids` as a `Value`.
pub(crate) fn platform_ids_value(ids: &Option<PlatformIds>) -> Value {
    union(ids.as_ref().map(|p| {
        let mut p = p.clone();
        Value::Record(
            PlatformIds::FIELDS
                .iter()
                .map(|name| {
                    let value = p.slot(name).expect("a known field").clone();
                    ((*name).to_owned(), opt_string(&value))
                })
                .collect(),
        )
    }))
}

/// Fields of a decoded record, taken out by name.
struct Fields(HashMap<String, Value>);

impl Fields {
    /// An array of strings.
    fn strings(&mut self, field: &str) -> Result<Vec<String>, DecodeError> {
        match self.take(field)? {
            Value::Array(items) => items.into_iter().map(|v| as_string(field, v)).collect(),
            v => Err(Self::err(field, format!("expected array, got {v:?}"))),
        }
    }

    fn err(field: &str, reason: impl Into<String>) -> DecodeError {
        DecodeError::Field {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, field: &str) -> Result<Value, DecodeError> {
        self.0
            .remove(field)
            .ok_or_else(|| Self::err(field, "missing"))
    }

    /// The inner value of a nullable field, `None` for null.
    fn take_opt(&mut self, field: &str) -> Result<Option<Value>, DecodeError> {
        match self.take(field)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                v => Ok(Some(v)),
            },
            Value::Null => Ok(None),
            v => Ok(Some(v)),
        }
    }

    fn string(&mut self, field: &str) -> Result<String, DecodeError> {
        as_string(field, self.take(field)?)
    }

    fn opt_string(&mut self, field: &str) -> Result<Option<String>, DecodeError> {
        self.take_opt(field)?
            .map(|v| as_string(field, v))
            .transpose()
    }

    fn boolean(&mut self, field: &str) -> Result<bool, DecodeError> {
        match self.take(field)? {
            Value::Boolean(b) => Ok(b),
            v => Err(Self::err(field, format!("expected boolean, got {v:?}"))),
        }
    }

    fn opt_int(&mut self, field: &str) -> Result<Option<i32>, DecodeError> {
        match self.take_opt(field)? {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(i)),
            Some(v) => Err(Self::err(field, format!("expected int, got {v:?}"))),
        }
    }

    fn timestamp(&mut self, field: &str) -> Result<DateTime<Utc>, DecodeError> {
        let v = self.take(field)?;
        as_timestamp(field, v)
    }

    fn opt_timestamp(&mut self, field: &str) -> Result<Option<DateTime<Utc>>, DecodeError> {
        self.take_opt(field)?
            .map(|v| as_timestamp(field, v))
            .transpose()
    }

    fn symbol(&mut self, field: &str) -> Result<String, DecodeError> {
        match self.take(field)? {
            Value::Enum(_, s) => Ok(s),
            v => Err(Self::err(field, format!("expected enum, got {v:?}"))),
        }
    }

    fn opt_symbol(&mut self, field: &str) -> Result<Option<String>, DecodeError> {
        match self.take_opt(field)? {
            None => Ok(None),
            Some(Value::Enum(_, s)) => Ok(Some(s)),
            Some(v) => Err(Self::err(field, format!("expected enum, got {v:?}"))),
        }
    }

    fn opt_money(&mut self, field: &str) -> Result<Option<Decimal>, DecodeError> {
        match self.take_opt(field)? {
            None => Ok(None),
            Some(Value::Decimal(d)) => {
                let bytes = Vec::<u8>::try_from(&d)?;
                let mantissa = from_twos_complement(&bytes)
                    .ok_or_else(|| Self::err(field, "decimal wider than 16 bytes"))?;
                Decimal::try_from_i128_with_scale(mantissa, MONEY_SCALE)
                    .map(|d| Some(d.normalize()))
                    .map_err(|e| Self::err(field, e.to_string()))
            }
            Some(v) => Err(Self::err(field, format!("expected decimal, got {v:?}"))),
        }
    }
}

fn as_string(field: &str, v: Value) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        v => Err(Fields::err(field, format!("expected string, got {v:?}"))),
    }
}

fn as_timestamp(field: &str, v: Value) -> Result<DateTime<Utc>, DecodeError> {
    match v {
        Value::TimestampMillis(ms) | Value::Long(ms) => DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| Fields::err(field, format!("{ms} ms is out of range"))),
        v => Err(Fields::err(
            field,
            format!("expected timestamp-millis, got {v:?}"),
        )),
    }
}

fn parse_symbol<T: std::str::FromStr<Err = crate::event::UnknownSymbol>>(
    field: &str,
    s: String,
) -> Result<T, DecodeError> {
    s.parse()
        .map_err(|e: crate::event::UnknownSymbol| Fields::err(field, e.to_string()))
}

/// The event held by a record value that was resolved against the current schema.
pub fn from_value(value: Value) -> Result<TrackingEvent, DecodeError> {
    let Value::Record(fields) = value else {
        return Err(Fields::err("<root>", "expected a record"));
    };
    let mut f = Fields(fields.into_iter().collect());
    let event_name = f.symbol("event_name")?;
    let payout_status = f.opt_symbol("payout_status")?;
    let refund_status = f.opt_symbol("refund_status")?;
    let consent_state = f.symbol("consent_state")?;
    let data_minimization = f.strings("data_minimization")?;
    let quality_flags = f.strings("quality_flags")?;
    let match_keys = match f.take_opt("match_keys")? {
        None => None,
        Some(Value::Record(keys)) => {
            let mut k = Fields(keys.into_iter().collect());
            Some(MatchKeys {
                email_sha256: k.opt_string("email_sha256")?,
                phone_sha256: k.opt_string("phone_sha256")?,
                phone_digits_sha256: k.opt_string("phone_digits_sha256")?,
            })
        }
        Some(v) => {
            return Err(Fields::err(
                "match_keys",
                format!("expected a record, got {v:?}"),
            ))
        }
    };
    let platform_ids = match f.take_opt("platform_ids")? {
        None => None,
        Some(Value::Record(values)) => {
            let mut k = Fields(values.into_iter().collect());
            let mut ids = PlatformIds::default();
            for name in PlatformIds::FIELDS {
                *ids.slot(name).expect("a known field") = k.opt_string(name)?;
            }
            Some(ids)
        }
        Some(v) => {
            return Err(Fields::err(
                "platform_ids",
                format!("expected a record, got {v:?}"),
            ))
        }
    };
    let attributes = match f.take("attributes")? {
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Ok((k, as_string("attributes", v)?)))
            .collect::<Result<BTreeMap<_, _>, DecodeError>>()?,
        v => {
            return Err(Fields::err(
                "attributes",
                format!("expected map, got {v:?}"),
            ))
        }
    };
    Ok(TrackingEvent {
        event_id: f.string("event_id")?,
        event_name: parse_symbol::<EventName>("event_name", event_name)?,
        occurred_at: f.timestamp("occurred_at")?,
        occurred_at_original: f.opt_string("occurred_at_original")?,
        source_timezone: f.opt_string("source_timezone")?,
        received_at: f.timestamp("received_at")?,
        settled_at: f.opt_timestamp("settled_at")?,
        network: f.string("network")?,
        order_id: f.opt_string("order_id")?,
        transaction_id: f.opt_string("transaction_id")?,
        parent_order_id: f.opt_string("parent_order_id")?,
        rebill_sequence: f.opt_int("rebill_sequence")?,
        lead_id: f.opt_string("lead_id")?,
        native_event_type: f.opt_string("native_event_type")?,
        status_only: f.boolean("status_only")?,
        click_id: f.opt_string("click_id")?,
        affiliate_id: f.opt_string("affiliate_id")?,
        campaign_id: f.opt_string("campaign_id")?,
        offer_id: f.opt_string("offer_id")?,
        source: f.opt_string("source")?,
        placement: f.opt_string("placement")?,
        utm_source: f.opt_string("utm_source")?,
        utm_medium: f.opt_string("utm_medium")?,
        utm_campaign: f.opt_string("utm_campaign")?,
        utm_term: f.opt_string("utm_term")?,
        utm_content: f.opt_string("utm_content")?,
        sub1: f.opt_string("sub1")?,
        sub2: f.opt_string("sub2")?,
        sub3: f.opt_string("sub3")?,
        sub4: f.opt_string("sub4")?,
        sub5: f.opt_string("sub5")?,
        revenue: f.opt_money("revenue")?,
        payout: f.opt_money("payout")?,
        currency: f.opt_string("currency")?,
        payout_status: payout_status
            .map(|s| parse_symbol::<PayoutStatus>("payout_status", s))
            .transpose()?,
        refund_status: refund_status
            .map(|s| parse_symbol::<RefundStatus>("refund_status", s))
            .transpose()?,
        is_test: f.boolean("is_test")?,
        consent_state: parse_symbol::<ConsentState>("consent_state", consent_state)?,
        data_minimization,
        ip_hash: f.opt_string("ip_hash")?,
        email_hash: f.opt_string("email_hash")?,
        user_agent: f.opt_string("user_agent")?,
        route: f.string("route")?,
        delivery_attempt: f.opt_int("delivery_attempt")?,
        attributes,
        quality_flags,
        match_keys,
        platform_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twos_complement_of_any_length_is_read() {
        assert_eq!(from_twos_complement(&[0x7F]), Some(127));
        assert_eq!(from_twos_complement(&[0x00, 0x80]), Some(128));
        assert_eq!(from_twos_complement(&[0x80]), Some(-128));
        assert_eq!(from_twos_complement(&[0xFF, 0x7F]), Some(-129));
        assert_eq!(from_twos_complement(&(-5i64).to_be_bytes()), Some(-5));
        assert_eq!(from_twos_complement(&[]), None);
        assert_eq!(from_twos_complement(&[0; 17]), None);
    }

    #[test]
    fn money_outside_decimal_18_6_is_refused() {
        assert!(money_value("revenue", Decimal::new(1, 7)).is_err());
        assert!(money_value("revenue", Decimal::from(1_000_000_000_000i64)).is_err());
        assert!(money_value("revenue", Decimal::from(999_999_999_999i64)).is_ok());
    }

    /// apache-avro's own writer differs only in the fingerprint: it writes its legacy one.
    #[test]
    fn the_library_single_object_writer_differs_only_in_its_fingerprint() {
        let mut w =
            apache_avro::GenericSingleObjectWriter::new_with_capacity(&current_schema().schema, 64)
                .unwrap();
        let event = crate::samples::sale();
        let ours = SingleObjectCodec::new().encode(&event).unwrap();
        let mut theirs = Vec::new();
        w.write_value(to_value(&event).unwrap(), &mut theirs)
            .unwrap();
        assert_eq!(ours[..2], theirs[..2]);
        assert_eq!(ours[2..HEADER_LEN], current_schema().fingerprint);
        assert_eq!(theirs[2..HEADER_LEN], current_schema().legacy_fingerprint);
        assert_eq!(ours[HEADER_LEN..], theirs[HEADER_LEN..]);
        // What it wrote still reads.
        assert_eq!(SingleObjectCodec::new().decode(&theirs).unwrap(), event);
    }
}
