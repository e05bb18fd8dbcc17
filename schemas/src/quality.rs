//! Traffic-quality flags of clicks and conversions: one place for their names.
//!
//! Two are set by ingest on a CLICK, where the raw request is still at hand (the IP before it
//! is hashed, the user agent before a denied consent drops it), and travel in the event's
//! `quality_flags`; the processor moves them to the ledger entry's `flags`. The others need
//! every click of an IP, a sub-ID or an affiliate at once, which only the ledger in ClickHouse
//! has whatever the partitioning: the `click_quality` and `conversion_attribution` views
//! compute them (docs/ANALYST_GUIDE.md#traffic-quality).

/// The user agent is a known bot or crawler (the `isbot` crate's list).
pub const BOT_USER_AGENT: &str = "BOT_USER_AGENT";
/// The client IP is in one of the operator's data-centre or cloud ranges.
pub const DATACENTER_IP: &str = "DATACENTER_IP";
/// More clicks from the click's IP hash within a minute than the threshold (a view's flag).
pub const FLOOD_IP: &str = "FLOOD_IP";
/// More clicks of the click's affiliate and sub1 within a minute than the threshold.
pub const FLOOD_SUB_ID: &str = "FLOOD_SUB_ID";
/// More clicks of the click's affiliate within a minute than the threshold.
pub const FLOOD_AFFILIATE: &str = "FLOOD_AFFILIATE";
/// An earlier click with the same IP hash, user agent and offer, within the duplicate window.
pub const DUPLICATE_CLICK: &str = "DUPLICATE_CLICK";
/// A conversion sooner after its click than its offer's minimum (flagged on the conversion).
pub const TOO_FAST: &str = "TOO_FAST";

/// The flags an event may carry in `quality_flags`, in the order ingest sets them.
pub const EVENT_FLAGS: [&str; 2] = [BOT_USER_AGENT, DATACENTER_IP];

/// Whether `flag` is one that an event may carry.
pub fn is_event_flag(flag: &str) -> bool {
    EVENT_FLAGS.contains(&flag)
}
