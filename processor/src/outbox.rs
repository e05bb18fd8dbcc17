//! The transactional outbox: which destinations a ledger entry is forwarded to. The
//! processor only routes; the forwarder reads the same destinations file for how to send.
//!
//! The file is TOML, one `[[destination]]` table each; fields this module does not use (the
//! kind, URL template, rate limit, retry policy) are the forwarder's and are ignored here.
//!
//! ```toml
//! [[destination]]
//! name = "meta-capi"
//! events = ["SALE", "REFUND", "CHARGEBACK"]
//! offers = ["keto-vsl"]   # optional; every offer when absent
//! include_test = false    # optional; test events are not forwarded by default
//! ```

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use schemas::{EventName, LedgerEntry, OutboxRecord};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    pub name: String,
    /// Event names the destination receives; required, so that nothing floods it by default.
    pub events: Vec<EventName>,
    #[serde(default)]
    pub offers: Vec<String>,
    #[serde(default)]
    pub include_test: bool,
}

impl Route {
    pub fn matches(&self, entry: &LedgerEntry) -> bool {
        let e = &entry.event;
        self.takes(e.event_name, e.offer_id.as_deref(), e.is_test)
    }

    /// Whether an event of this name, offer and test flag goes to the destination.
    pub fn takes(&self, name: EventName, offer: Option<&str>, is_test: bool) -> bool {
        self.events.contains(&name)
            && (self.include_test || !is_test)
            && (self.offers.is_empty() || offer.is_some_and(|o| self.offers.iter().any(|x| x == o)))
    }
}

#[derive(Debug, Deserialize)]
struct DestinationsFile {
    #[serde(default)]
    destination: Vec<Route>,
}

/// The routes of every configured destination.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    routes: Vec<Route>,
}

impl Outbox {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: DestinationsFile = toml::from_str(text)?;
        let mut names = HashSet::new();
        for r in &file.destination {
            anyhow::ensure!(!r.name.is_empty(), "a destination has an empty name");
            anyhow::ensure!(
                names.insert(&r.name),
                "destination {:?} is listed twice",
                r.name
            );
            anyhow::ensure!(
                !r.events.is_empty(),
                "destination {:?} lists no events",
                r.name
            );
        }
        Ok(Self {
            routes: file.destination,
        })
    }

    /// No destinations without a file: nothing is forwarded.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Ok(Self::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Self::parse(&text).with_context(|| format!("in {}", path.display()))
            }
        }
    }

    pub fn destinations(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.name.as_str())
    }

    /// The destinations an event of this name, offer and test flag is forwarded to.
    pub fn routes_for<'a>(
        &'a self,
        name: EventName,
        offer: Option<&'a str>,
        is_test: bool,
    ) -> impl Iterator<Item = &'a str> {
        self.routes
            .iter()
            .filter(move |r| r.takes(name, offer, is_test))
            .map(|r| r.name.as_str())
    }

    /// One outbox record per destination that takes `entry`.
    pub fn records(&self, entry: &LedgerEntry, now: DateTime<Utc>) -> Vec<OutboxRecord> {
        self.routes
            .iter()
            .filter(|r| r.matches(entry))
            .map(|r| OutboxRecord {
                destination: r.name.clone(),
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
        kind = "meta_capi"          # the forwarder's field, ignored here
        events = ["SALE", "REFUND"]
        offers = ["keto-vsl"]

        [[destination]]
        name = "tracker"
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
        let twice = "[[destination]]\nname='a'\nevents=['SALE']\n[[destination]]\nname='a'\nevents=['SALE']";
        assert!(Outbox::parse(twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let no_events = "[[destination]]\nname='a'\nevents=[]";
        assert!(Outbox::parse(no_events)
            .unwrap_err()
            .to_string()
            .contains("no events"));
        assert!(Outbox::parse("[[destination]]\nname='a'\nevents=['PURCHASE']").is_err());
        assert!(Outbox::load(None).unwrap().destinations().next().is_none());
    }
}
