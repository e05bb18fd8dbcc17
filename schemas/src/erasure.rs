//! The erasure request (GDPR): a control record on the events topic that tells the
//! processor to forget one conversion's state.
//!
//! It travels on the events topic, in the partition of the conversion it names, so that the
//! processor applies it in order with that conversion's events and inside the same
//! exactly-once transaction as them. A control record is recognised by its header, never by
//! its value, so it cannot be mistaken for an event (or an event for it).

use serde::{Deserialize, Serialize};

/// The header that marks a control record on the events topic.
pub const CONTROL_HEADER: &str = "trackledger-control";
/// The header value of an erasure request.
pub const ERASE: &str = "erase";

/// Forget the conversion `conversion_key` and the dedup entries of `event_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRequest {
    /// Correlates the request with the `trackctl erase` run that made it; random, and
    /// carries nothing about the person.
    pub erasure_id: String,
    pub conversion_key: String,
    pub event_ids: Vec<String>,
}
