//! Server-provided DPoP nonces (RFC 9449 §8), stateless: a nonce is the time
//! window it was made in and an HMAC of that window under the deployment's
//! nonce secret, so any instance sharing the secret accepts any instance's
//! nonce without a store round trip.
//!
//! Owns: making the current nonce and judging a presented one (this window
//! or the previous, MAC compared in constant time).
//! Must never: accept a nonce from a window that has passed, or from the
//! future; treat a nonce as anything but freshness (it proves nothing about
//! who sent it).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// Bytes of MAC kept: 128 bits is far beyond guessing within one window.
const MAC_BYTES: usize = 16;
/// 8 bytes of window, then the MAC.
const RAW_BYTES: usize = 8 + MAC_BYTES;
/// Domain separation: the secret signs nothing but nonces.
const LABEL: &[u8] = b"xaa-broker dpop nonce v1";

/// The key and the window length nonces are made with.
#[derive(Clone, Copy)]
pub struct NonceKey<'a> {
    pub secret: &'a [u8],
    /// A nonce is accepted in its own window and the next: for between one
    /// and two of these.
    pub lifetime_secs: i64,
}

impl NonceKey<'_> {
    fn window(&self, now: i64) -> i64 {
        now.div_euclid(self.lifetime_secs.max(1))
    }

    fn mac(&self, window: i64) -> Option<[u8; MAC_BYTES]> {
        let key = PKey::hmac(self.secret).ok()?;
        let mut signer = Signer::new(MessageDigest::sha256(), &key).ok()?;
        signer.update(LABEL).ok()?;
        signer.update(&window.to_be_bytes()).ok()?;
        let full = signer.sign_to_vec().ok()?;
        full.get(..MAC_BYTES)?.try_into().ok()
    }

    /// The nonce to hand out at `now` (`DPoP-Nonce`). `None` only if the
    /// crypto library fails, which the caller treats as "no nonce to give".
    pub fn current(&self, now: i64) -> Option<String> {
        let window = self.window(now);
        let mac = self.mac(window)?;
        let mut raw = [0u8; RAW_BYTES];
        raw[..8].copy_from_slice(&window.to_be_bytes());
        raw[8..].copy_from_slice(&mac);
        Some(B64.encode(raw))
    }

    /// Whether `nonce` was made by this key in the current window or the
    /// previous one.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        if nonce.len() > 64 {
            return false;
        }
        let Ok(raw) = B64.decode(nonce) else {
            return false;
        };
        let Ok(raw) = <[u8; RAW_BYTES]>::try_from(raw.as_slice()) else {
            return false;
        };
        let mut w = [0u8; 8];
        w.copy_from_slice(&raw[..8]);
        let window = i64::from_be_bytes(w);
        let current = self.window(now);
        if window != current && window != current - 1 {
            return false;
        }
        self.mac(window).is_some_and(|mac| openssl::memcmp::eq(&mac, &raw[8..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: NonceKey<'static> = NonceKey {
        secret: b"0123456789abcdef0123456789abcdef",
        lifetime_secs: 60,
    };

    #[test]
    fn a_nonce_is_accepted_in_its_window_and_the_next_only() {
        let n = KEY.current(1_000_020).unwrap();
        assert!(KEY.accepts(&n, 1_000_020));
        assert!(KEY.accepts(&n, 1_000_079), "the next window still accepts it");
        assert!(!KEY.accepts(&n, 1_000_140), "two windows later it is stale");
        assert!(!KEY.accepts(&n, 999_900), "a nonce from the future is refused");
    }

    #[test]
    fn a_nonce_of_another_secret_or_altered_is_refused() {
        let other = NonceKey {
            secret: b"another secret, just as long....",
            lifetime_secs: 60,
        };
        let n = other.current(1_000_000).unwrap();
        assert!(!KEY.accepts(&n, 1_000_000));
        let mut mine = KEY.current(1_000_000).unwrap().into_bytes();
        let last = mine.len() - 2;
        mine[last] = if mine[last] == b'A' { b'B' } else { b'A' };
        assert!(!KEY.accepts(&String::from_utf8(mine).unwrap(), 1_000_000));
        assert!(!KEY.accepts("", 1_000_000));
        assert!(!KEY.accepts("not base64 !", 1_000_000));
        assert!(!KEY.accepts(&"A".repeat(4096), 1_000_000));
    }
}
