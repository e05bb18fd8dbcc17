//! Personal data never leaves the process raw: IPs and e-mails become keyed hashes
//! (HMAC-SHA256 under the deployment's secret), and a denied consent keeps only what
//! attribution needs. What was hashed or dropped is recorded in `data_minimization`.

use crate::event::{ConsentState, TrackingEvent};
use crate::input::RawPii;
use crate::matching::MatchKeys;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lower-case hex.
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    hex
}

pub struct PiiHasher {
    /// Keyed once: cloning the keyed state skips re-deriving the inner and outer pads.
    keyed: Hmac<Sha256>,
}

impl PiiHasher {
    pub fn new(key: &[u8]) -> Self {
        Self {
            keyed: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length"),
        }
    }

    /// Lower-case hex HMAC-SHA256 of `value`.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(value.as_bytes());
        lower_hex(&mac.finalize().into_bytes())
    }

    /// Applies the consent rules to an event and the personal data that came with it.
    ///
    /// - consent `DENIED`: IP, e-mail, phone and user agent are dropped, not even hashed;
    /// - otherwise: IP and e-mail are keyed-hashed, the user agent is kept;
    /// - consent that allows ad use (GRANTED, NOT_REQUIRED): the e-mail and phone also
    ///   become the platforms' `match_keys` (plain SHA-256 of the normalised values); else
    ///   the phone, which has no keyed hash, is dropped.
    pub fn minimise(&self, event: &mut TrackingEvent, pii: RawPii) {
        let denied = event.consent_state == ConsentState::Denied;
        let phone_given = pii.phone.is_some();
        let platform_keys = event
            .consent_state
            .allows_ad_use()
            .then(|| MatchKeys::of(pii.email.as_deref(), pii.phone.as_deref()))
            .flatten();
        let mut note =
            |field: &str, action: &str| event.data_minimization.push(format!("{field}:{action}"));
        let (ip, email) = (pii.ip.map(|ip| ip.to_string()), pii.email);
        if denied {
            if ip.is_some() {
                note("ip", "dropped");
            }
            if email.is_some() {
                note("email", "dropped");
            }
            if event.user_agent.take().is_some() {
                event.data_minimization.push("user_agent:dropped".into());
            }
            event.ip_hash = None;
            event.email_hash = None;
            if event.platform_ids.take().is_some() {
                event.data_minimization.push("platform_ids:dropped".into());
            }
        } else {
            if let Some(ip) = ip {
                note("ip", "hashed");
                event.ip_hash = Some(self.hash(&ip));
            }
            if let Some(email) = email {
                note("email", "hashed");
                event.email_hash = Some(self.hash(&email));
            }
        }
        if let Some(keys) = &platform_keys {
            if keys.email_sha256.is_some() {
                event.data_minimization.push("email:platform_hashed".into());
            }
            if keys.phone_sha256.is_some() {
                event.data_minimization.push("phone:platform_hashed".into());
            }
        } else if phone_given {
            event.data_minimization.push("phone:dropped".into());
        }
        event.match_keys = platform_keys;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    fn pii() -> RawPii {
        RawPii {
            email: Some("buyer@example.com".into()),
            ip: Some("203.0.113.7".parse().unwrap()),
            phone: Some("+447700900123".into()),
        }
    }

    #[test]
    fn hashes_are_keyed_and_stable() {
        let a = PiiHasher::new(b"key-one-0123456789");
        let b = PiiHasher::new(b"key-two-0123456789");
        assert_eq!(a.hash("x"), a.hash("x"));
        assert_ne!(a.hash("x"), b.hash("x"));
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a published test value.
        assert_eq!(
            PiiHasher::new(b"key").hash("The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn granted_consent_hashes_and_records_it() {
        let h = PiiHasher::new(b"0123456789abcdef");
        let mut e = samples::lead();
        e.consent_state = ConsentState::Granted;
        h.minimise(&mut e, pii());
        assert_eq!(e.email_hash, Some(h.hash("buyer@example.com")));
        assert_eq!(e.ip_hash, Some(h.hash("203.0.113.7")));
        // Granted consent allows ad use: the platforms' plain SHA-256 as well (digests from
        // `printf %s buyer@example.com | sha256sum`, and so on).
        assert_eq!(
            e.data_minimization,
            [
                "ip:hashed",
                "email:hashed",
                "email:platform_hashed",
                "phone:platform_hashed"
            ]
        );
        assert_eq!(
            e.match_keys,
            Some(MatchKeys {
                email_sha256: Some(
                    "6a6c26195c3682faa816966af789717c3bfa834eee6c599d667d2b3429c27cfd".into()
                ),
                phone_sha256: Some(
                    "a8acc3a90a7b4e4dc65e93db9240ed26523050ef754d63b75b5161de76781436".into()
                ),
                phone_digits_sha256: Some(
                    "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd".into()
                ),
            })
        );
        crate::validate(&e).unwrap();
    }

    #[test]
    fn without_consent_for_ad_use_nothing_matchable_is_computed() {
        let h = PiiHasher::new(b"0123456789abcdef");
        let mut e = samples::lead();
        e.consent_state = ConsentState::Unknown;
        e.match_keys = Some(MatchKeys::default());
        h.minimise(&mut e, pii());
        assert_eq!(e.match_keys, None);
        assert_eq!(e.email_hash, Some(h.hash("buyer@example.com")));
        assert_eq!(
            e.data_minimization,
            ["ip:hashed", "email:hashed", "phone:dropped"]
        );
    }

    #[test]
    fn denied_consent_keeps_only_attribution() {
        let h = PiiHasher::new(b"0123456789abcdef");
        let mut e = samples::lead();
        e.consent_state = ConsentState::Denied;
        e.user_agent = Some("Mozilla/5.0".into());
        h.minimise(&mut e, pii());
        assert_eq!((e.email_hash, e.ip_hash, e.user_agent), (None, None, None));
        assert_eq!(
            e.data_minimization,
            [
                "ip:dropped",
                "email:dropped",
                "user_agent:dropped",
                "phone:dropped"
            ]
        );
        assert_eq!(e.match_keys, None);
        assert_eq!(e.click_id.as_deref(), Some("clk_01"));
    }
}
