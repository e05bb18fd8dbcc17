//! Postback forwarding: each outbox record goes to its destination, rate-limited, retried on
//! transient failures, dead-lettered on permanent ones, every attempt recorded.
//!
//! [`destinations`] is the configuration; [`kinds`] builds requests, one module per
//! destination kind behind [`kinds::DestinationKind`]; [`retry`] and [`outcome`] decide what
//! follows an answer; [`engine`] is the delivery loop; [`dlq`] holds the dead-letter and
//! retry record format and the replay; [`metrics`] feeds the shared `/metrics` endpoint.

pub mod config;
pub mod dlq;
pub mod engine;
pub mod kinds;
pub mod metrics;
pub mod oauth;
pub mod outcome;
pub mod retry;
