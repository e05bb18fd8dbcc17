//! Reading the events topic: both framings (docs/CONTRACT.md), the writer schemas of
//! Confluent-framed records from the schema registry, and the contract's validation, so that
//! a producer writing to Kafka directly meets exactly the rules an HTTP client meets.
//!
//! A writer schema is fetched once per schema id and kept: after warm-up every record is a
//! cache hit. An id the registry does not know is remembered for [`REFUSAL_TTL`], so a run of
//! bad records does not become a run of registry requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemas::avro::framing::{frame, Frame, WriterSchema, WriterSchemaError};
use schemas::validate::FieldError;
use schemas::{DecodeError, SingleObjectCodec, TrackingEvent};
use telemetry::registry::{RegistryError, SchemaRegistry};

use crate::metrics::Metrics;

/// How long a schema id that the registry did not know stays refused without asking again.
pub const REFUSAL_TTL: Duration = Duration::from_secs(60);
/// At most this many refused ids are remembered.
const MAX_REFUSALS: usize = 10_000;

/// Why an event is not applied: quarantined with this reason and these field errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The quarantine reason: `undecodable_event`, `unknown_schema`, `incompatible_schema`
    /// or `validation`.
    pub reason: &'static str,
    pub errors: Vec<FieldError>,
}

impl Refusal {
    fn value(reason: &'static str, detail: impl std::fmt::Display) -> Self {
        Self {
            reason,
            errors: vec![FieldError::new("value", detail.to_string())],
        }
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The record is bad: it goes to quarantine.
    Refused(Refusal),
    /// The registry could not be asked for the record's writer schema: the record waits.
    RegistryUnavailable(String),
}

impl From<DecodeError> for ReadError {
    fn from(e: DecodeError) -> Self {
        let reason = match e {
            DecodeError::UnknownSchema(_) => "unknown_schema",
            _ => "undecodable_event",
        };
        ReadError::Refused(Refusal::value(reason, e))
    }
}

pub struct EventReader {
    codec: SingleObjectCodec,
    registry: SchemaRegistry,
    schemas: HashMap<u32, Arc<WriterSchema>>,
    refused: HashMap<u32, (Refusal, Instant)>,
    // The loop is blocking; registry requests (cache misses only) run on this.
    runtime: tokio::runtime::Runtime,
    metrics: Arc<Metrics>,
}

impl EventReader {
    pub fn new(registry: SchemaRegistry, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        Ok(Self {
            codec: SingleObjectCodec::new(),
            registry,
            schemas: HashMap::new(),
            refused: HashMap::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            metrics,
        })
    }

    /// The valid event a record holds.
    pub fn read(&mut self, bytes: &[u8]) -> Result<TrackingEvent, ReadError> {
        let event = match frame(bytes)? {
            Frame::SingleObject { fingerprint, datum } => {
                self.codec.read_datum(&fingerprint, datum)?
            }
            Frame::Confluent { schema_id, datum } => self.writer(schema_id)?.read(datum)?,
        };
        schemas::validate(&event).map_err(|e| {
            ReadError::Refused(Refusal {
                reason: "validation",
                errors: e.0,
            })
        })?;
        Ok(event)
    }

    /// The writer schema of `id`, from the cache or else the registry.
    fn writer(&mut self, id: u32) -> Result<Arc<WriterSchema>, ReadError> {
        if let Some(w) = self.schemas.get(&id) {
            return Ok(w.clone());
        }
        if let Some((refusal, at)) = self.refused.get(&id) {
            if at.elapsed() < REFUSAL_TTL {
                return Err(ReadError::Refused(refusal.clone()));
            }
        }
        let fetched = self.runtime.block_on(self.registry.schema_by_id(id));
        let result = match &fetched {
            Ok(_) => "ok",
            Err(RegistryError::Unavailable(_)) => "unavailable",
            Err(_) => "not_found",
        };
        self.metrics
            .registry_requests
            .with_label_values(&[result])
            .inc();
        let refusal = match fetched {
            Ok(json) => match WriterSchema::from_json(&json) {
                Ok(w) => {
                    tracing::info!(schema_id = id, version = ?w.version(), "writer schema fetched from the registry");
                    let w = Arc::new(w);
                    self.schemas.insert(id, w.clone());
                    return Ok(w);
                }
                Err(e @ WriterSchemaError::Invalid(_)) => {
                    Refusal::value("unknown_schema", format!("schema id {id}: {e}"))
                }
                Err(e @ WriterSchemaError::Incompatible(_)) => {
                    Refusal::value("incompatible_schema", format!("schema id {id}: {e}"))
                }
            },
            Err(RegistryError::Unavailable(e)) => return Err(ReadError::RegistryUnavailable(e)),
            Err(e) => Refusal::value("unknown_schema", e),
        };
        if self.refused.len() >= MAX_REFUSALS {
            self.refused.clear();
        }
        self.refused.insert(id, (refusal.clone(), Instant::now()));
        Err(ReadError::Refused(refusal))
    }
}
