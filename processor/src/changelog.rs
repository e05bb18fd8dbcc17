//! The state changelog (`processor.state.v1`, compacted): one record per dedup key and per
//! conversion, the latest value winning, a tombstone when it expires.
//!
//! Keys: `e` + the 16-byte event-key hash, or `c` + the conversion key. Values: a format
//! byte, then postcard. Dedup entries are written in format 2, which appended `click` to
//! format 1's fields; a format-1 entry reads as not a click's. Conversions are written in format 3: format 2 appended two `Option`s
//! (`rule_paid`, `currency`) to format 1's fields, format 3 one (`capped_offer`) and format 4
//! one (`click_ids_from`); an older value still reads, with the fields it lacks `None`. The record goes to the partition number of the input it came from,
//! so that whoever owns input partition *n* restores exactly changelog partition *n*.

use crate::ledger::{Change, Conversion, Seen};

const SEEN: u8 = b'e';
const CONVERSION: u8 = b'c';
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const FORMAT_V3: u8 = 3;
const FORMAT_V4: u8 = 4;
/// Postcard encodes a `None` as one zero byte: what an older conversion lacks to be a format-4
/// one is a `None` per appended field.
const POSTCARD_NONE: u8 = 0;
/// Postcard's `false`.
const POSTCARD_FALSE: u8 = 0;

#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("changelog key is empty or has an unknown prefix")]
    UnknownKey,
    #[error("changelog key is not a 16-byte event key")]
    BadEventKey,
    #[error("changelog conversion key is not UTF-8")]
    BadConversionKey,
    #[error("changelog value has unknown format byte {0}")]
    UnknownFormat(u8),
    #[error("changelog value does not decode: {0}")]
    Value(#[from] postcard::Error),
}

pub fn key(change: &Change) -> Vec<u8> {
    match change {
        Change::Seen(k, _) => {
            let mut key = Vec::with_capacity(17);
            key.push(SEEN);
            key.extend_from_slice(&k.to_be_bytes());
            key
        }
        Change::Conversion(k, _) => {
            let mut key = Vec::with_capacity(1 + k.len());
            key.push(CONVERSION);
            key.extend_from_slice(k.as_bytes());
            key
        }
    }
}

/// The record value; `None` is a tombstone.
pub fn value(change: &Change) -> Option<Vec<u8>> {
    let encoded = match change {
        Change::Seen(_, Some(s)) => postcard::to_extend(s, vec![FORMAT_V2]),
        Change::Conversion(_, Some(c)) => postcard::to_extend(c, vec![FORMAT_V4]),
        Change::Seen(_, None) | Change::Conversion(_, None) => return None,
    };
    Some(encoded.expect("state values always serialize"))
}

/// A dedup entry: format 2 appended `click` to format 1, which reads as not a click's (kept
/// for the longer window).
fn seen(value: &[u8]) -> Result<Seen, ChangelogError> {
    match value.split_first() {
        Some((&FORMAT_V2, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&FORMAT_V1, rest)) => {
            let mut v2 = Vec::with_capacity(rest.len() + 1);
            v2.extend_from_slice(rest);
            v2.push(POSTCARD_FALSE);
            Ok(postcard::from_bytes(&v2)?)
        }
        Some((&other, _)) => Err(ChangelogError::UnknownFormat(other)),
        None => Err(ChangelogError::UnknownFormat(0)),
    }
}

fn conversion(value: &[u8]) -> Result<Conversion, ChangelogError> {
    let (rest, missing) = match value.split_first() {
        Some((&FORMAT_V4, rest)) => return Ok(postcard::from_bytes(rest)?),
        Some((&FORMAT_V3, rest)) => (rest, 1),
        Some((&FORMAT_V2, rest)) => (rest, 2),
        Some((&FORMAT_V1, rest)) => (rest, 4),
        Some((&other, _)) => return Err(ChangelogError::UnknownFormat(other)),
        None => return Err(ChangelogError::UnknownFormat(0)),
    };
    let mut v4 = Vec::with_capacity(rest.len() + missing);
    v4.extend_from_slice(rest);
    v4.extend(std::iter::repeat_n(POSTCARD_NONE, missing));
    Ok(postcard::from_bytes(&v4)?)
}

pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Change, ChangelogError> {
    match key.split_first() {
        Some((&SEEN, k)) => {
            let k: [u8; 16] = k.try_into().map_err(|_| ChangelogError::BadEventKey)?;
            let seen = value.map(seen).transpose()?;
            Ok(Change::Seen(u128::from_be_bytes(k), seen))
        }
        Some((&CONVERSION, k)) => {
            let k = std::str::from_utf8(k).map_err(|_| ChangelogError::BadConversionKey)?;
            let conversion = value.map(conversion).transpose()?;
            Ok(Change::Conversion(k.to_owned(), conversion))
        }
        _ => Err(ChangelogError::UnknownKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{event_key, Awaiting};
    use schemas::{ConversionStatus, EventName};

    fn round_trip(change: Change) {
        let back = decode(&key(&change), value(&change).as_deref()).unwrap();
        assert_eq!(back, change);
    }

    #[test]
    fn every_change_round_trips() {
        let seen = Seen {
            fingerprint: u64::MAX,
            first_received_ms: 1_764_000_000_000,
            count: 3,
            click: true,
        };
        round_trip(Change::Seen(event_key("evt-1"), Some(seen)));
        round_trip(Change::Seen(event_key("evt-1"), None));
        let conversion = Conversion {
            sale: Some("s".into()),
            gross_revenue: schemas::Money::from_micros(49_990_000).unwrap(),
            net_revenue: schemas::Money::from_micros(-1).unwrap(),
            lead_status: Some(ConversionStatus::Approved),
            awaiting: vec![Awaiting {
                event_id: "r".into(),
                event_name: EventName::Chargeback,
                received_ms: 5,
                is_test: true,
                reported: false,
            }],
            ..Conversion::default()
        };
        round_trip(Change::Conversion(
            "buygoods/order/7".into(),
            Some(conversion),
        ));
        round_trip(Change::Conversion("buygoods/order/7".into(), None));
    }

    /// The conversion as format 1 wrote it, field for field.
    #[derive(serde::Serialize)]
    struct ConversionV1 {
        sale: Option<String>,
        lead: Option<String>,
        gross_revenue: schemas::Money,
        gross_payout: schemas::Money,
        reversed_revenue: schemas::Money,
        net_revenue: schemas::Money,
        net_payout: schemas::Money,
        charged_back: bool,
        canceled: bool,
        lead_status: Option<ConversionStatus>,
        awaiting: Vec<Awaiting>,
        touched_ms: i64,
    }

    #[test]
    fn a_format_1_conversion_reads_without_a_payout_rule() {
        let m = |micros| schemas::Money::from_micros(micros).unwrap();
        let old = ConversionV1 {
            sale: Some("s".into()),
            lead: None,
            gross_revenue: m(49_990_000),
            gross_payout: m(20_000_000),
            reversed_revenue: m(1),
            net_revenue: m(49_989_999),
            net_payout: m(20_000_000),
            charged_back: false,
            canceled: true,
            lead_status: None,
            awaiting: Vec::new(),
            touched_ms: 7,
        };
        let bytes = postcard::to_extend(&old, vec![FORMAT_V1]).unwrap();
        let k = key(&Change::Conversion("cb/order/1".into(), None));
        let Change::Conversion(_, Some(c)) = decode(&k, Some(&bytes)).unwrap() else {
            panic!("a conversion");
        };
        assert_eq!(
            c,
            Conversion {
                sale: Some("s".into()),
                gross_revenue: m(49_990_000),
                gross_payout: m(20_000_000),
                reversed_revenue: m(1),
                net_revenue: m(49_989_999),
                net_payout: m(20_000_000),
                canceled: true,
                touched_ms: 7,
                rule_paid: None,
                currency: None,
                ..Conversion::default()
            }
        );
        // And what is written now is format 4, with the rule.
        let now = Conversion {
            rule_paid: Some(crate::payout::RulePaid {
                rule: "offer k: revshare 40%".into(),
                currency: "EUR".into(),
            }),
            currency: Some("EUR".into()),
            ..c
        };
        let change = Change::Conversion("cb/order/1".into(), Some(now));
        assert_eq!(value(&change).unwrap()[0], FORMAT_V4);
        round_trip(change);
    }

    #[test]
    fn a_format_2_conversion_reads_without_a_capped_offer() {
        let c = Conversion {
            sale: Some("s".into()),
            currency: Some("EUR".into()),
            capped_offer: Some("keto".into()),
            ..Conversion::default()
        };
        let mut bytes = value(&Change::Conversion("k".into(), Some(c.clone()))).unwrap();
        // Format 2 is format 4 without its last two fields (click_ids_from is None here).
        assert_eq!(bytes.pop(), Some(POSTCARD_NONE));
        assert_eq!(bytes.pop(), Some(b'o'));
        bytes.truncate(bytes.len() - "ket".len() - 2);
        bytes[0] = FORMAT_V2;
        let Change::Conversion(_, Some(old)) = decode(b"ck", Some(&bytes)).unwrap() else {
            panic!("a conversion");
        };
        assert_eq!(
            old,
            Conversion {
                capped_offer: None,
                ..c
            }
        );
    }

    #[test]
    fn a_format_3_conversion_reads_without_its_click() {
        let c = Conversion {
            sale: Some("s".into()),
            capped_offer: Some("keto".into()),
            click_ids_from: Some("clk".into()),
            ..Conversion::default()
        };
        let mut bytes = value(&Change::Conversion("k".into(), Some(c.clone()))).unwrap();
        round_trip(Change::Conversion("k".into(), Some(c.clone())));
        // Format 3 is format 4 without `click_ids_from`: Some, a length, then the bytes.
        bytes.truncate(bytes.len() - "clk".len() - 2);
        bytes[0] = FORMAT_V3;
        let Change::Conversion(_, Some(old)) = decode(b"ck", Some(&bytes)).unwrap() else {
            panic!("a conversion");
        };
        assert_eq!(
            old,
            Conversion {
                click_ids_from: None,
                ..c
            }
        );
    }

    #[test]
    fn a_format_1_dedup_entry_reads_as_not_a_clicks() {
        let seen = Seen {
            fingerprint: 7,
            first_received_ms: 9,
            count: 2,
            click: true,
        };
        let mut bytes = value(&Change::Seen(1, Some(seen))).unwrap();
        assert_eq!(bytes.pop(), Some(1), "postcard's true, last");
        bytes[0] = FORMAT_V1;
        let k = key(&Change::Seen(1, None));
        assert_eq!(
            decode(&k, Some(&bytes)).unwrap(),
            Change::Seen(
                1,
                Some(Seen {
                    click: false,
                    ..seen
                })
            )
        );
    }

    #[test]
    fn a_dedup_record_stays_small() {
        let seen = Seen {
            fingerprint: u64::MAX,
            first_received_ms: 1_764_000_000_000,
            count: 1,
            click: false,
        };
        let change = Change::Seen(event_key("evt-1"), Some(seen));
        assert_eq!(key(&change).len(), 17);
        // Format byte, varint fingerprint (10), time (6), count (1), click (1).
        assert!(value(&change).unwrap().len() <= 19);
        // In memory the click mark fits in the padding: 24 bytes, as before it.
        assert_eq!(std::mem::size_of::<Seen>(), 24);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"", None).is_err());
        assert!(decode(b"x123", None).is_err());
        assert!(decode(b"e123", None).is_err());
        let k = key(&Change::Seen(1, None));
        assert!(decode(&k, Some(&[9, 1, 2])).is_err());
        assert!(decode(&k, Some(&[FORMAT_V1])).is_err());
    }
}
