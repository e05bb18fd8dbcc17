//! Exactly-once dedup, lifecycle joins and the canonical ledger.
//!
//! Not built yet: see issue #4. The crate exists so that the workspace has its final shape.

/// What the binary says when it is started before it is built.
pub const NOT_YET_BUILT: &str = "processor is not implemented yet (issue #4)";
