//! Postback forwarding: each outbox record goes to its destination, rate-limited, retried on
//! transient failures, dead-lettered on permanent ones, every attempt recorded.
//!
//! Built so far (issue #5): [`destinations`] (the configuration), [`kinds`] (one module per
//! destination kind behind [`kinds::DestinationKind`]), [`retry`] (back-off, jitter, give-up
//! rules) and [`outcome`] (how an HTTP answer is classified). The delivery loop (Kafka, HTTP,
//! durable retry state) is not built yet.

pub mod destinations;
pub mod kinds;
pub mod outcome;
pub mod retry;
