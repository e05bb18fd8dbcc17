//! Loads the canonical ledger into ClickHouse.
//!
//! Not built yet: see issue #6. The crate exists so that the workspace has its final shape.

/// What the binary says when it is started before it is built.
pub const NOT_YET_BUILT: &str = "sink is not implemented yet (issue #6)";
