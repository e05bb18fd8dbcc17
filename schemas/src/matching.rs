//! The identifiers the ad platforms match conversions on (contract v3 `match_keys`): SHA-256
//! of the buyer's e-mail and phone, normalised as the platforms publish, computed by ingest
//! only when the event's consent allows ad use.
//!
//! They differ from the keyed `email_hash` on purpose: a platform can only match a plain
//! SHA-256 of the value it holds itself, so these are pseudonymous to the platforms, and are
//! kept out of ClickHouse (docs/CONTRACT.md, "Match keys").

use sha2::{Digest, Sha256};

use crate::event::ConsentState;
use crate::privacy::lower_hex;

/// The platforms' matching hashes of one buyer (`match_keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MatchKeys {
    /// SHA-256 of the e-mail trimmed and lower-cased: Meta `em`, TikTok `email`, Google
    /// Ads `hashed_email`.
    pub email_sha256: Option<String>,
    /// SHA-256 of the phone in E.164 with its `+`: Google Ads `hashed_phone_number`,
    /// TikTok `phone`.
    pub phone_sha256: Option<String>,
    /// SHA-256 of the phone's E.164 digits without the `+`: Meta `ph`.
    pub phone_digits_sha256: Option<String>,
}

/// The ad platforms' own click and browser IDs of a visit (`platform_ids`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlatformIds {
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub wbraid: Option<String>,
    /// Meta's `fbc`: `fb.1.<ms timestamp>.<fbclid>` ([`fbc`]).
    pub fbc: Option<String>,
    pub fbp: Option<String>,
    pub ttclid: Option<String>,
    pub msclkid: Option<String>,
    pub ga_client_id: Option<String>,
}

impl PlatformIds {
    /// The field names a producer or a landing URL uses, in the schema's order; `fbclid`
    /// is read into `fbc`.
    pub const FIELDS: &'static [&'static str] = &[
        "gclid",
        "gbraid",
        "wbraid",
        "fbc",
        "fbp",
        "ttclid",
        "msclkid",
        "ga_client_id",
    ];

    /// The slot of field `name` (one of [`Self::FIELDS`]).
    pub fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "gclid" => &mut self.gclid,
            "gbraid" => &mut self.gbraid,
            "wbraid" => &mut self.wbraid,
            "fbc" => &mut self.fbc,
            "fbp" => &mut self.fbp,
            "ttclid" => &mut self.ttclid,
            "msclkid" => &mut self.msclkid,
            "ga_client_id" => &mut self.ga_client_id,
            _ => return None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Fills each ID this one lacks from `click`'s (a conversion taking its click's IDs);
    /// an ID it has is kept. Whether any was filled.
    pub fn inherit(&mut self, click: &PlatformIds) -> bool {
        let mut theirs = click.clone();
        let mut filled = false;
        for name in Self::FIELDS {
            let id = theirs.slot(name).and_then(Option::take);
            if let (Some(mine @ None), Some(id)) = (self.slot(name), id) {
                *mine = Some(id);
                filled = true;
            }
        }
        filled
    }
}

/// Meta's `fbc` for a click ID first seen at `seen_ms` (Unix milliseconds): the `fb`
/// prefix, subdomain index 1, the time, then the `fbclid` unchanged.
pub fn fbc(fbclid: &str, seen_ms: i64) -> String {
    format!("fb.1.{seen_ms}.{fbclid}")
}

/// Whether `value` can be a platform ID: 1 to 512 bytes of visible ASCII. The platforms'
/// IDs are URL-safe tokens; anything else is a producer's mistake, refused with a reason.
pub fn valid_platform_id(value: &str) -> bool {
    (1..=512).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

impl MatchKeys {
    /// The keys of an e-mail and an E.164 phone ([`e164`]); `None` when neither is given.
    pub fn of(email: Option<&str>, phone_e164: Option<&str>) -> Option<Self> {
        if email.is_none() && phone_e164.is_none() {
            return None;
        }
        Some(Self {
            email_sha256: email.map(|e| sha256_hex(&normalise_email(e))),
            phone_sha256: phone_e164.map(sha256_hex),
            phone_digits_sha256: phone_e164.map(|p| sha256_hex(p.trim_start_matches('+'))),
        })
    }
}

impl ConsentState {
    /// Whether the buyer's identifiers may go to the ad platforms. In Google Consent Mode
    /// v2 terms, GRANTED and NOT_REQUIRED (a jurisdiction without a consent requirement)
    /// are `ad_user_data` granted; DENIED and UNKNOWN are denied: without a known consent,
    /// nothing matchable is computed.
    pub fn allows_ad_use(self) -> bool {
        matches!(self, ConsentState::Granted | ConsentState::NotRequired)
    }

    /// The Consent Mode v2 signal (`ad_user_data`) Google's APIs take: GRANTED or DENIED.
    pub fn ad_user_data(self) -> &'static str {
        if self.allows_ad_use() {
            "GRANTED"
        } else {
            "DENIED"
        }
    }
}

/// An e-mail as the platforms hash it: surrounding spaces removed, lower case.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A phone number in E.164 (`+` then 8 to 15 digits, the first not 0) from what a buyer
/// typed: spaces, dots, dashes and parentheses are dropped, and a leading `00` is read as
/// `+`. A number without its country code (no `+` or `00`) is refused: the platforms need
/// the country code, and guessing one would hash the wrong number.
pub fn e164(raw: &str) -> Option<String> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"))?;
    let valid = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    valid.then(|| format!("+{digits}"))
}

/// Lower-case hex SHA-256 of `value`.
pub fn sha256_hex(value: &str) -> String {
    lower_hex(&Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_plain_sha256_of_the_normalised_values() {
        // Expected digests computed outside this code: printf %s VALUE | sha256sum
        let keys = MatchKeys::of(Some(" John_Smith@Gmail.com "), Some("+16505551212")).unwrap();
        assert_eq!(
            keys.email_sha256.as_deref(),
            // john_smith@gmail.com
            Some("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f")
        );
        assert_eq!(
            keys.phone_sha256.as_deref(),
            // +16505551212
            Some("1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8")
        );
        assert_eq!(
            keys.phone_digits_sha256.as_deref(),
            // 16505551212
            Some("e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176")
        );
        assert_eq!(MatchKeys::of(None, None), None);
        let email_only = MatchKeys::of(Some("a@b.co"), None).unwrap();
        assert!(email_only.phone_sha256.is_none() && email_only.phone_digits_sha256.is_none());
    }

    #[test]
    fn the_vendors_published_examples_hash_the_same() {
        // Snap's Conversions API parameter table (the same rules as Meta's): Person@Example.com
        // becomes person@example.com, 542d2401...; +44 844 412 4653 becomes 448444124653,
        // dc008fda46e2e64002cf2f82a4906236282d4...
        let phone = e164("+44 844 412 4653").unwrap();
        let keys = MatchKeys::of(Some("Person@Example.com"), Some(&phone)).unwrap();
        assert_eq!(
            keys.email_sha256.unwrap(),
            "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345"
        );
        assert!(keys
            .phone_digits_sha256
            .unwrap()
            .starts_with("dc008fda46e2e64002cf2f82a4906236282d4"));
    }

    #[test]
    fn phones_need_their_country_code() {
        assert_eq!(e164("+1 (650) 555-1212").as_deref(), Some("+16505551212"));
        assert_eq!(e164("0049 30 1234567").as_deref(), Some("+49301234567"));
        assert_eq!(e164("+44.20.7946.0958").as_deref(), Some("+442079460958"));
        for bad in [
            "650 555 1212",
            "+0 650 555 1212",
            "+1 650",
            "+1650555121212345",
            "+1 650 CALL NOW",
            "",
        ] {
            assert_eq!(e164(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_granted_or_not_required_consent_allows_ad_use() {
        assert!(ConsentState::Granted.allows_ad_use());
        assert!(ConsentState::NotRequired.allows_ad_use());
        assert!(!ConsentState::Denied.allows_ad_use());
        assert!(!ConsentState::Unknown.allows_ad_use());
    }

    #[test]
    fn a_conversion_keeps_its_own_ids_and_takes_the_missing_ones_from_its_click() {
        let click = PlatformIds {
            gclid: Some("click-gclid".into()),
            fbc: Some("fb.1.1.abc".into()),
            ga_client_id: Some("111.222".into()),
            ..PlatformIds::default()
        };
        let mut own = PlatformIds {
            gclid: Some("own-gclid".into()),
            ..PlatformIds::default()
        };
        assert!(own.inherit(&click));
        assert_eq!(
            own,
            PlatformIds {
                gclid: Some("own-gclid".into()),
                fbc: Some("fb.1.1.abc".into()),
                ga_client_id: Some("111.222".into()),
                ..PlatformIds::default()
            }
        );
        assert!(!own.inherit(&click), "nothing left to fill");
        let mut none = PlatformIds::default();
        assert!(!none.inherit(&PlatformIds::default()));
        assert!(none.is_empty());
    }
}
