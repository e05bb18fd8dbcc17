//! HTTP capture and network postbacks, produced as Avro to Kafka.
//!
//! Not built yet: see issue #3. The crate exists so that the workspace has its final shape.

/// What the binary says when it is started before it is built.
pub const NOT_YET_BUILT: &str = "ingest is not implemented yet (issue #3)";
