//! Click IDs: conversions take the ad-platform IDs of the click they name.
//!
//! A visitor's `gclid`, `fbc`, `ttclid`... are captured on the click (the redirect, or a
//! producer's CLICK event); the sale usually arrives later by network postback, with only our
//! click ID. The ledger stage partitions by conversion key, so a click and its conversions are
//! on different partitions. Both therefore take a second, transactional stage keyed by click
//! ID ([`stage`]):
//! - the ledger stage writes each click that carries IDs to `ledger.clickids.v1` (besides the
//!   ledger), and the stage keeps its IDs ([`ClickBook`]) for `--click-ids-retention`;
//! - a conversion that names a click goes to the same topic instead of the ledger; the stage
//!   fills the IDs it lacks from its click's, then writes it to the ledger with its postbacks
//!   (or on to the capping stage). Once one entry of a conversion takes this path, all of
//!   them do (its state remembers the click), so a refund never overtakes its sale.
//!
//! Consent travels with the IDs. A network does not know the visitor's consent, so a
//! conversion it reports is UNKNOWN; the visitor gave (or withheld) it on the click, which is
//! where the IDs were captured. A conversion whose consent is UNKNOWN therefore takes its
//! click's with the IDs (flag `CONSENT_FROM_CLICK`); one that is DENIED takes nothing, and
//! one that is GRANTED or NOT_REQUIRED keeps its own.

pub mod stage;

use std::collections::HashMap;

use schemas::{ConsentState, PlatformIds};
use serde::{Deserialize, Serialize};

/// The header carrying the capped offer of a conversion that goes on to the capping stage.
pub const CAPPING_OFFER_HEADER: &str = "trackledger-capping-offer";

/// One click's IDs, as the changelog holds them (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickIds {
    pub ids: PlatformIds,
    /// The click's consent, under which its IDs were captured.
    pub consent: ConsentState,
    /// The click's time (Unix ms): it is forgotten a retention after.
    pub clicked_ms: i64,
}

impl ClickIds {
    pub fn value(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("click IDs serialize")
    }

    pub fn decode(value: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(value).map_err(|e| format!("click-ID state does not parse: {e}"))
    }
}

/// What a conversion got from the click-ID stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inheritance {
    /// It took at least one ID from its click, and its click's consent if its own was UNKNOWN.
    Inherited { consent: bool },
    /// Its click is known, but it already had every ID the click has.
    NothingMissing,
    /// Its click is not held: never seen with IDs, forgotten, or not yet arrived.
    ClickUnknown,
    /// Its own consent is DENIED: it takes nothing (ingest would have dropped its own IDs).
    ConsentDenied,
}

impl Inheritance {
    pub fn label(self) -> &'static str {
        match self {
            Inheritance::Inherited { .. } => "inherited",
            Inheritance::NothingMissing => "nothing_missing",
            Inheritance::ClickUnknown => "click_unknown",
            Inheritance::ConsentDenied => "consent_denied",
        }
    }
}

/// One click-ID partition's state: the IDs of each click, by click ID.
#[derive(Debug, Default)]
pub struct ClickBook {
    clicks: HashMap<String, ClickIds>,
}

impl ClickBook {
    /// Applies one changelog record; `None` is a tombstone.
    pub fn restore(&mut self, click_id: String, value: Option<ClickIds>) {
        match value {
            Some(ids) => self.clicks.insert(click_id, ids),
            None => self.clicks.remove(&click_id),
        };
    }

    /// How many clicks are held.
    pub fn clicks(&self) -> usize {
        self.clicks.len()
    }

    /// Keeps a click's IDs and consent; a second click under the same ID adds what the first
    /// lacked. The value to write to the changelog.
    pub fn record(
        &mut self,
        click_id: &str,
        ids: &PlatformIds,
        consent: ConsentState,
        clicked_ms: i64,
    ) -> ClickIds {
        let kept = self
            .clicks
            .entry(click_id.to_owned())
            .or_insert_with(|| ClickIds {
                ids: PlatformIds::default(),
                consent,
                clicked_ms,
            });
        kept.ids.inherit(ids);
        kept.clicked_ms = kept.clicked_ms.max(clicked_ms);
        kept.clone()
    }

    /// Fills what `ids` lacks from click `click_id`'s IDs, and an UNKNOWN `consent` with the
    /// click's; nothing when `consent` is DENIED.
    pub fn inherit(
        &self,
        click_id: &str,
        ids: &mut PlatformIds,
        consent: &mut ConsentState,
    ) -> Inheritance {
        if *consent == ConsentState::Denied {
            return Inheritance::ConsentDenied;
        }
        let Some(click) = self.clicks.get(click_id) else {
            return Inheritance::ClickUnknown;
        };
        if !ids.inherit(&click.ids) {
            return Inheritance::NothingMissing;
        }
        let from_click =
            *consent == ConsentState::Unknown && click.consent != ConsentState::Unknown;
        if from_click {
            *consent = click.consent;
        }
        Inheritance::Inherited {
            consent: from_click,
        }
    }

    /// Forgets a click (an erasure); whether it was held.
    pub fn erase(&mut self, click_id: &str) -> bool {
        self.clicks.remove(click_id).is_some()
    }

    /// Forgets the clicks from before `horizon_ms`; their IDs, for the changelog's tombstones.
    pub fn expire(&mut self, horizon_ms: i64) -> Vec<String> {
        let mut gone = Vec::new();
        self.clicks.retain(|id, click| {
            let keep = click.clicked_ms >= horizon_ms;
            if !keep {
                gone.push(id.clone());
            }
            keep
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(gclid: &str) -> PlatformIds {
        PlatformIds {
            gclid: Some(gclid.into()),
            ..PlatformIds::default()
        }
    }

    #[test]
    fn a_conversion_takes_what_it_lacks_from_a_known_click_only() {
        use ConsentState::*;
        let mut book = ClickBook::default();
        book.record("c1", &ids("G-1"), Granted, 1_000);
        // A network's sale: no IDs, consent unknown; it takes both from its click.
        let (mut own, mut consent) = (PlatformIds::default(), Unknown);
        assert_eq!(
            book.inherit("c1", &mut own, &mut consent),
            Inheritance::Inherited { consent: true }
        );
        assert_eq!((own.gclid.as_deref(), consent), (Some("G-1"), Granted));
        assert_eq!(
            book.inherit("c1", &mut own, &mut consent),
            Inheritance::NothingMissing
        );
        // Its own consent, when it has one, is kept.
        let (mut own, mut consent) = (PlatformIds::default(), NotRequired);
        assert_eq!(
            book.inherit("c1", &mut own, &mut consent),
            Inheritance::Inherited { consent: false }
        );
        assert_eq!(consent, NotRequired);
        let (mut other, mut consent) = (PlatformIds::default(), Unknown);
        assert_eq!(
            book.inherit("c2", &mut other, &mut consent),
            Inheritance::ClickUnknown
        );
        assert_eq!(consent, Unknown);
        let (mut denied, mut consent) = (PlatformIds::default(), Denied);
        assert_eq!(
            book.inherit("c1", &mut denied, &mut consent),
            Inheritance::ConsentDenied
        );
        assert!(denied.is_empty());
        assert_eq!(consent, Denied);
    }

    #[test]
    fn clicks_expire_after_their_time_and_restore_from_the_changelog() {
        let mut book = ClickBook::default();
        let first = book.record("old", &ids("G-old"), ConsentState::Granted, 1_000);
        book.record("new", &ids("G-new"), ConsentState::Unknown, 5_000);
        // A second click under the same ID adds what the first lacked and keeps the later time.
        let fbc = PlatformIds {
            fbc: Some("fb.1.2000.x".into()),
            gclid: Some("ignored".into()),
            ..PlatformIds::default()
        };
        let merged = book.record("old", &fbc, ConsentState::Unknown, 2_000);
        assert_eq!(merged.ids.gclid.as_deref(), Some("G-old"));
        assert_eq!(merged.ids.fbc.as_deref(), Some("fb.1.2000.x"));
        assert_eq!(merged.clicked_ms, 2_000);
        assert_eq!(merged.consent, ConsentState::Granted, "the first click's");
        assert_eq!(book.expire(3_000), vec!["old".to_owned()]);
        assert_eq!(book.clicks(), 1);

        let mut restored = ClickBook::default();
        let value = ClickIds::decode(&first.value()).unwrap();
        assert_eq!(value, first);
        restored.restore("old".into(), Some(value));
        restored.restore("old".into(), None);
        assert_eq!(restored.clicks(), 0);
        assert!(ClickIds::decode(b"{")
            .unwrap_err()
            .contains("does not parse"));
    }

    #[test]
    fn an_erased_click_is_forgotten() {
        let mut book = ClickBook::default();
        book.record("c1", &ids("G-1"), ConsentState::Granted, 1_000);
        assert!(book.erase("c1"));
        assert!(!book.erase("c1"));
        let (mut own, mut consent) = (PlatformIds::default(), ConsentState::Unknown);
        assert_eq!(
            book.inherit("c1", &mut own, &mut consent),
            Inheritance::ClickUnknown
        );
    }
}
