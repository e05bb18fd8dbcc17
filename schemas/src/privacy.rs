//! Personal data never leaves the process raw: IPs and e-mails become keyed hashes
//! (HMAC-SHA256 under the deployment's secret), and a denied consent keeps only what
//! attribution needs. What was hashed or dropped is recorded in `data_minimization`.

use crate::event::{ConsentState, TrackingEvent};
use crate::input::RawPii;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const HEX: &[u8; 16] = b"0123456789abcdef";

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
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(digest.len() * 2);
        for b in digest {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        hex
    }

    /// Applies the consent rules to an event and the personal data that came with it.
    ///
    /// - consent `DENIED`: IP, e-mail and user agent are dropped, not even hashed;
    /// - otherwise: IP and e-mail are keyed-hashed, the user agent is kept.
    pub fn minimise(&self, event: &mut TrackingEvent, pii: RawPii) {
        let denied = event.consent_state == ConsentState::Denied;
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
        assert_eq!(e.data_minimization, ["ip:hashed", "email:hashed"]);
        crate::validate(&e).unwrap();
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
            ["ip:dropped", "email:dropped", "user_agent:dropped"]
        );
        assert_eq!(e.click_id.as_deref(), Some("clk_01"));
    }
}
