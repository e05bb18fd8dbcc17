//! Deterministic event IDs for network postbacks.
//!
//! A network retries a postback with the same native ID and type, so the derived ID repeats
//! and the processor counts it once; a different transaction, type or rebill gets a
//! different ID. The ID is a UUIDv5 over `network|native_id|transaction_type|sequence` in
//! this project's own namespace, so it can be recomputed in any language.

use uuid::Uuid;

/// UUIDv5 of the URL `urn:trackledger:event-id:v1` in the standard URL namespace.
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xb483ecc3_51a2_58bf_a98f_f23174c1a4d3);

/// Escapes the separator so that no two component lists join to the same text.
fn component(s: &str) -> String {
    s.trim().replace('\\', "\\\\").replace('|', "\\|")
}

/// The event ID of one network transaction.
///
/// - `network`: the adapter's network name (`clickbank`, `digistore24`, ...), case-insensitive;
/// - `native_id`: the network's own ID for the transaction (ClickBank `receipt`, Digistore24
///   `transaction_id`, BuyGoods `order_id`), compared exactly;
/// - `transaction_type`: the network's own type (`SALE`, `on_refund`, `neworder`...),
///   case-insensitive;
/// - `sequence`: what tells apart the network's transactions that share its ID and type,
///   and that its retries repeat: a rebill's sequence number, or the transaction time (in
///   epoch milliseconds) of one of several partial refunds of one order. Compared exactly;
///   `Some("2")` is what a sequence number 2 has always given.
pub fn postback_event_id(
    network: &str,
    native_id: &str,
    transaction_type: &str,
    sequence: Option<&str>,
) -> Uuid {
    let name = format!(
        "{}|{}|{}|{}",
        component(&network.to_ascii_lowercase()),
        component(native_id),
        component(&transaction_type.to_ascii_uppercase()),
        sequence.map(component).unwrap_or_default()
    );
    Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_the_documented_v5_name() {
        assert_eq!(
            EVENT_ID_NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:trackledger:event-id:v1")
        );
    }

    #[test]
    fn a_retried_postback_gets_the_same_id() {
        let first = postback_event_id("clickbank", "ABCD1234", "SALE", None);
        let retry = postback_event_id("ClickBank", " ABCD1234 ", "sale", None);
        assert_eq!(first, retry);
    }

    #[test]
    fn the_id_is_stable_across_releases() {
        // A changed derivation would double-count every retried postback after an upgrade.
        assert_eq!(
            postback_event_id("digistore24", "T-9001", "on_payment", Some("1")).to_string(),
            GOLDEN
        );
    }

    /// Computed independently with Python: uuid5(namespace, "digistore24|T-9001|ON_PAYMENT|1").
    const GOLDEN: &str = "f5d61e8e-ec46-5cfa-9f4d-71c084f8f07b";

    #[test]
    fn types_sequences_and_networks_never_collide() {
        let ids = [
            postback_event_id("clickbank", "ABCD1234", "SALE", None),
            postback_event_id("clickbank", "ABCD1234", "RFND", None),
            postback_event_id("clickbank", "ABCD1234", "CGBK", None),
            postback_event_id("clickbank", "ABCD1234", "BILL", Some("2")),
            postback_event_id("clickbank", "ABCD1234", "BILL", Some("3")),
            postback_event_id("clickbank", "ABCD1234", "RFND", Some("1763631000000")),
            postback_event_id("clickbank", "ABCD1234", "RFND", Some("1763634600000")),
            postback_event_id("clickbank", "ABCD1234", "RFND|1", None),
            postback_event_id("buygoods", "ABCD1234", "SALE", None),
            postback_event_id("clickbank", "ABCD1234|RFND", "", None),
            postback_event_id("clickbank", "ABCD1234", "|RFND", None),
        ];
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }
}
