//! The event contract of the pipeline: the canonical [`TrackingEvent`], its validation, its
//! Avro encoding, the deterministic event-ID rule, the partition-key rule, the topics, and
//! the ledger records the processor derives from events.
//! No other crate redefines any of these.

pub mod avro;
pub mod caps;
pub mod destinations;
pub mod erasure;
#[macro_use]
pub mod event;
pub mod event_id;
pub mod input;
pub mod key;
pub mod ledger;
pub mod matching;
pub mod money;
pub mod offers;
pub mod privacy;
pub mod quality;
pub mod quarantine;
pub mod samples;
pub mod template;
pub mod topics;
pub mod validate;

pub use avro::{DecodeError, EncodeError, EventCodec, SingleObjectCodec};
pub use event::{ConsentState, EventName, PayoutStatus, RefundStatus, TrackingEvent, FIRST_PARTY};
pub use event_id::postback_event_id;
pub use input::{parse_event_json, RawPii};
pub use key::conversion_key;
pub use ledger::{
    AttemptOutcome, ConversionStatus, LedgerEntry, LinkStatus, OutboxRecord, PayoutSource,
    PostbackAttempt, Receipt, ReceiptKind,
};
pub use matching::{MatchKeys, PlatformIds};
pub use money::Money;
pub use quarantine::{QuarantineKey, QuarantineRecord};
pub use validate::{validate, FieldError, ValidationErrors};
