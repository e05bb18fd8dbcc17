//! The transactional outbox: which destinations a ledger entry is forwarded to. The
//! processor only routes; the forwarder reads the same destinations file
//! (`schemas::destinations`, one parse for both) for how to send.

use std::path::Path;

use chrono::{DateTime, Utc};
use schemas::destinations::{Destinations, DestinationsError};
use schemas::{LedgerEntry, OutboxRecord};

/// The routes of every configured destination.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    destinations: Destinations,
}

impl Outbox {
    pub fn parse(text: &str) -> Result<Self, DestinationsError> {
        Destinations::parse(text).map(|destinations| Self { destinations })
    }

    /// No destinations without a file: nothing is forwarded.
    pub fn load(path: Option<&Path>) -> Result<Self, DestinationsError> {
        path.map_or_else(
            || Ok(Self::default()),
            |p| Destinations::load(p).map(|destinations| Self { destinations }),
        )
    }

    pub fn destinations(&self) -> impl Iterator<Item = &str> {
        self.destinations.names()
    }

    /// Whether a destination sends the ad platforms' click IDs, which conversions then take
    /// from their clicks (`--click-ids auto`).
    pub fn sends_click_ids(&self) -> bool {
        self.destinations.iter().any(|d| d.kind.uses_platform_ids())
    }

    /// One outbox record per destination that takes `entry`.
    pub fn records(&self, entry: &LedgerEntry, now: DateTime<Utc>) -> Vec<OutboxRecord> {
        self.destinations
            .iter()
            .filter(|d| d.matches(entry))
            .map(|d| OutboxRecord {
                destination: d.name.clone(),
                idempotency_key: entry.event.event_id.clone(),
                enqueued_at: now,
                entry: entry.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{samples, ConversionStatus};

    fn entry(e: schemas::TrackingEvent) -> LedgerEntry {
        LedgerEntry::opening(e, ConversionStatus::Sold, Utc::now())
            .expect("sample amounts fit decimal(18, 6)")
    }

    const FILE: &str = r#"
        [[destination]]
        name = "meta"
        kind = "webhook"
        url = "https://hooks.example/meta"
        events = ["SALE", "REFUND"]
        offers = ["keto-vsl"]

        [[destination]]
        name = "tracker"
        kind = "s2s"
        url = "https://t.example/pb?tx={event_id}"
        events = ["SALE"]
        include_test = true
    "#;

    #[test]
    fn entries_go_to_each_matching_destination() {
        let outbox = Outbox::parse(FILE).unwrap();
        let sale = entry(samples::sale());
        let names: Vec<_> = outbox
            .records(&sale, Utc::now())
            .into_iter()
            .map(|r| (r.destination, r.idempotency_key))
            .collect();
        assert_eq!(
            names,
            [
                ("meta".to_owned(), "evt-sale-1001".to_owned()),
                ("tracker".to_owned(), "evt-sale-1001".to_owned())
            ]
        );
        assert!(outbox
            .records(&entry(samples::click()), Utc::now())
            .is_empty());

        let mut other_offer = samples::sale();
        other_offer.offer_id = Some("other".into());
        other_offer.is_test = true;
        let to: Vec<_> = outbox
            .records(&entry(other_offer), Utc::now())
            .into_iter()
            .map(|r| r.destination)
            .collect();
        assert_eq!(to, ["tracker"]);
    }

    #[test]
    fn the_shared_destinations_file_routes() {
        let outbox = Outbox::parse(include_str!("../../config/destinations.toml")).unwrap();
        let names: Vec<_> = outbox.destinations().collect();
        assert_eq!(names, ["tracker", "webhook", "meta-capi"]);
        let to: Vec<_> = outbox
            .records(&entry(samples::sale()), Utc::now())
            .into_iter()
            .map(|r| r.destination)
            .collect();
        assert_eq!(to, ["tracker", "webhook", "meta-capi"]);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let one = "[[destination]]\nname='a'\nkind='webhook'\nurl='https://h.example/'\n";
        let twice = format!("{one}events=['SALE']\n{one}events=['SALE']");
        assert!(Outbox::parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let no_events = format!("{one}events=[]");
        assert!(Outbox::parse(&no_events)
            .unwrap_err()
            .to_string()
            .contains("no events"));
        assert!(Outbox::parse(&format!("{one}events=['PURCHASE']")).is_err());
        assert!(Outbox::load(None).unwrap().destinations().next().is_none());
    }
}
