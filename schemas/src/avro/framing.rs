//! The two framings a tracking event may have on Kafka, and reading a datum written with any
//! writer schema that the current contract can read.
//!
//! - Avro single-object encoding (`C3 01`, the writer schema's 8-byte CRC-64-AVRO
//!   fingerprint, the datum): what ingest writes; the writer schema is one of the contract's
//!   published versions, known without a registry.
//! - The Confluent wire format (byte `0`, the writer schema's 4-byte big-endian registry id,
//!   the datum): what producers using a schema registry's serializer write; the writer schema
//!   comes from the registry.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;

use super::{
    check_can_read, current_schema, datum, fingerprint, from_value, published_versions,
    DecodeError, EncodeError, HEADER_LEN, SINGLE_OBJECT_MARKER,
};
use crate::event::TrackingEvent;

/// The first byte of a Confluent-framed record.
pub const CONFLUENT_MAGIC: u8 = 0;
/// Magic byte and schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// A record's framing, and the datum it frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    SingleObject {
        fingerprint: [u8; 8],
        datum: &'a [u8],
    },
    Confluent {
        schema_id: u32,
        datum: &'a [u8],
    },
}

/// Which framing `bytes` has. The two cannot be confused: single-object starts with `C3`.
pub fn frame(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    match bytes.first() {
        Some(&CONFLUENT_MAGIC) => {
            if bytes.len() < CONFLUENT_HEADER_LEN {
                return Err(DecodeError::Truncated(bytes.len()));
            }
            let id: [u8; 4] = bytes[1..CONFLUENT_HEADER_LEN].try_into().expect("4 bytes");
            Ok(Frame::Confluent {
                schema_id: u32::from_be_bytes(id),
                datum: &bytes[CONFLUENT_HEADER_LEN..],
            })
        }
        Some(_) if bytes.starts_with(&SINGLE_OBJECT_MARKER) => {
            if bytes.len() < HEADER_LEN {
                return Err(DecodeError::Truncated(bytes.len()));
            }
            Ok(Frame::SingleObject {
                fingerprint: bytes[2..HEADER_LEN].try_into().expect("8 bytes"),
                datum: &bytes[HEADER_LEN..],
            })
        }
        Some(_) => Err(DecodeError::UnknownFraming),
        None => Err(DecodeError::Truncated(0)),
    }
}

/// An event in the Confluent wire format, written with the current schema registered as
/// `schema_id`.
pub fn encode_confluent(schema_id: u32, event: &TrackingEvent) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(512);
    out.push(CONFLUENT_MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    datum::write_event(event, &mut out)?;
    Ok(out)
}

/// Why a writer schema cannot be read with.
#[derive(Debug, thiserror::Error)]
pub enum WriterSchemaError {
    #[error("the writer schema is not valid Avro: {0}")]
    Invalid(String),
    #[error("the current contract cannot read data written with this schema: {0}")]
    Incompatible(String),
}

/// A writer schema, ready to read its datums as events of the current contract.
pub struct WriterSchema {
    how: How,
    /// The published version it is, if it is one.
    version: Option<u32>,
}

enum How {
    /// The current schema: the direct reader, no resolution.
    Current,
    /// An older published version: resolved by apache-avro against the current one.
    Published(GenericDatumReader<'static>),
    /// A schema this build does not ship (a producer's newer compatible version, say):
    /// resolved against the current one on each read.
    Foreign(Box<Schema>),
}

impl WriterSchema {
    /// The writer schema given as JSON (what a registry holds). It is matched to the
    /// published versions by its Parsing Canonical Form, so documentation, attribute order
    /// or whitespace that a registry adds or drops make no difference.
    pub fn from_json(json: &str) -> Result<Self, WriterSchemaError> {
        let schema =
            Schema::parse_str(json).map_err(|e| WriterSchemaError::Invalid(e.to_string()))?;
        let fp = fingerprint(&schema);
        if fp == current_schema().fingerprint {
            return Ok(Self {
                how: How::Current,
                version: Some(current_schema().version),
            });
        }
        if let Some(v) = published_versions().iter().find(|v| v.fingerprint == fp) {
            return Ok(Self {
                how: How::Published(
                    GenericDatumReader::builder(&v.schema)
                        .reader_schema(&current_schema().schema)
                        .build()
                        .map_err(|e| WriterSchemaError::Incompatible(e.to_string()))?,
                ),
                version: Some(v.version),
            });
        }
        check_can_read(&schema, &current_schema().schema)
            .map_err(WriterSchemaError::Incompatible)?;
        Ok(Self {
            how: How::Foreign(Box::new(schema)),
            version: None,
        })
    }

    /// The contract version this schema is, `None` for one this build does not ship.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// The event in `datum`, which must be exactly one datum.
    pub fn read(&self, datum: &[u8]) -> Result<TrackingEvent, DecodeError> {
        match &self.how {
            How::Current => read_current(datum),
            How::Published(reader) => read_resolved(reader, datum),
            How::Foreign(schema) => {
                let reader = GenericDatumReader::builder(schema)
                    .reader_schema(&current_schema().schema)
                    .build()?;
                read_resolved(&reader, datum)
            }
        }
    }
}

/// A datum written with the current schema, read directly.
pub(crate) fn read_current(datum: &[u8]) -> Result<TrackingEvent, DecodeError> {
    let mut r = datum::Reader::new(datum);
    let event = datum::read_event(&mut r)?;
    if !r.rest().is_empty() {
        return Err(DecodeError::TrailingBytes(r.rest().len()));
    }
    Ok(event)
}

pub(crate) fn read_resolved(
    reader: &GenericDatumReader<'_>,
    datum: &[u8],
) -> Result<TrackingEvent, DecodeError> {
    let mut body = datum;
    let value = reader.read_value(&mut body)?;
    if !body.is_empty() {
        return Err(DecodeError::TrailingBytes(body.len()));
    }
    from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::{EventCodec, SingleObjectCodec};
    use crate::samples;

    #[test]
    fn framings_are_told_apart() {
        let event = samples::sale();
        let confluent = encode_confluent(258, &event).unwrap();
        assert_eq!(confluent[..5], [0, 0, 0, 1, 2]);
        let Frame::Confluent { schema_id, datum } = frame(&confluent).unwrap() else {
            panic!("not Confluent");
        };
        assert_eq!(schema_id, 258);
        let single = SingleObjectCodec::new().encode(&event).unwrap();
        // Same datum, different header.
        assert_eq!(datum, &single[HEADER_LEN..]);
        assert!(matches!(
            frame(&single).unwrap(),
            Frame::SingleObject { fingerprint, .. } if fingerprint == current_schema().fingerprint
        ));
        assert!(matches!(frame(&[0, 0, 1]), Err(DecodeError::Truncated(3))));
        assert!(matches!(
            frame(&[0xC3, 0x01, 1]),
            Err(DecodeError::Truncated(3))
        ));
        assert!(matches!(
            frame(b"{\"a\":1}"),
            Err(DecodeError::UnknownFraming)
        ));
        assert!(matches!(frame(&[]), Err(DecodeError::Truncated(0))));
    }

    #[test]
    fn a_registry_copy_of_the_contract_reads_directly() {
        // A registry may hand the schema back reformatted: compact, without docs.
        let (version, current) = *crate::avro::PUBLISHED_SCHEMAS.last().unwrap();
        let mut json: serde_json::Value = serde_json::from_str(current).unwrap();
        strip_docs(&mut json);
        let writer = WriterSchema::from_json(&json.to_string()).unwrap();
        assert_eq!(writer.version(), Some(version));
        assert!(matches!(writer.how, How::Current));
        let mut event = samples::click();
        event.quality_flags = vec![crate::quality::BOT_USER_AGENT.into()];
        let bytes = encode_confluent(7, &event).unwrap();
        assert_eq!(writer.read(&bytes[CONFLUENT_HEADER_LEN..]).unwrap(), event);
    }

    #[test]
    fn a_v1_record_reads_with_no_quality_flags() {
        let writer = WriterSchema::from_json(crate::avro::PUBLISHED_SCHEMAS[0].1).unwrap();
        assert_eq!(writer.version(), Some(1));
        assert!(matches!(writer.how, How::Published(_)));
        let event = samples::click();
        let mut v1 = Vec::new();
        datum::write_event_body(&event, &mut v1).unwrap();
        assert_eq!(writer.read(&v1).unwrap(), event);
        assert!(event.quality_flags.is_empty());
    }

    #[test]
    fn a_newer_compatible_schema_is_resolved_and_an_incompatible_one_refused() {
        let mut json: serde_json::Value =
            serde_json::from_str(crate::avro::PUBLISHED_SCHEMAS.last().unwrap().1).unwrap();
        // A producer's own version that appends a field: our reader ignores it.
        json["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(
                {"name": "loyalty_tier", "type": "string", "default": ""}
            ));
        let newer = WriterSchema::from_json(&json.to_string()).unwrap();
        assert_eq!(newer.version(), None);
        let event = samples::sale();
        let mut datum = Vec::new();
        datum::write_event(&event, &mut datum).unwrap();
        // The appended string field: length 4 (zig-zag 8), "gold".
        datum.extend_from_slice(&[8, b'g', b'o', b'l', b'd']);
        assert_eq!(newer.read(&datum).unwrap(), event);

        // One that drops a field the contract requires without a default cannot be read.
        let mut broken: serde_json::Value =
            serde_json::from_str(crate::avro::PUBLISHED_SCHEMAS.last().unwrap().1).unwrap();
        broken["fields"].as_array_mut().unwrap().remove(0);
        assert!(matches!(
            WriterSchema::from_json(&broken.to_string()),
            Err(WriterSchemaError::Incompatible(_))
        ));
        assert!(matches!(
            WriterSchema::from_json("{\"type\":"),
            Err(WriterSchemaError::Invalid(_))
        ));
    }

    fn strip_docs(json: &mut serde_json::Value) {
        match json {
            serde_json::Value::Object(map) => {
                map.remove("doc");
                map.values_mut().for_each(strip_docs);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip_docs),
            _ => {}
        }
    }
}
