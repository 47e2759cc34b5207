//! Verifiers of DPoP proof keys already seen, by algorithm and RFC 7638
//! thumbprint: a client proves the same key request after request, and
//! building a verifier from a JWK costs several signature checks.
//!
//! Owns: a bounded map (moka, by entries and by idle time) from
//! `(alg, jkt)` to the verifier built for that key. A key is its
//! thumbprint (RFC 7638 §1: the hash of its required members), so one entry
//! stands for one public key whatever optional members a later proof adds.
//! Must never: skip a signature check (only the verifier's construction is
//! remembered), hold anything private, or grow without bound.

use std::sync::Arc;
use std::time::Duration;

use josekit::jws::JwsVerifier;

use crate::jose::Alg;

/// Keys remembered: a verifier is about 1 KiB; a busy deployment's active
/// DPoP clients fit many times over.
const MAX_KEYS: u64 = 10_000;
/// A key not seen for this long is rebuilt on its next proof.
const IDLE: Duration = Duration::from_secs(600);

/// The remembered verifiers (`AppState::dpop_keys`).
#[derive(Clone)]
pub struct ProofKeys {
    cache: moka::sync::Cache<(Alg, String), Arc<dyn JwsVerifier>>,
}

impl Default for ProofKeys {
    fn default() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_idle(IDLE)
                .build(),
        }
    }
}

impl ProofKeys {
    /// The verifier of the key with thumbprint `jkt` for `alg`, built by
    /// `build` the first time (an error is not remembered).
    pub fn verifier<E>(
        &self,
        alg: Alg,
        jkt: &str,
        build: impl FnOnce() -> Result<Arc<dyn JwsVerifier>, E>,
    ) -> Result<Arc<dyn JwsVerifier>, E> {
        let key = (alg, jkt.to_owned());
        if let Some(v) = self.cache.get(&key) {
            return Ok(v);
        }
        let v = build()?;
        self.cache.insert(key, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_built_once_per_alg_and_a_failure_is_not_remembered() {
        let keys = ProofKeys::default();
        let jwk = Alg::ES256.generate().unwrap().to_public_key().unwrap();
        let mut builds = 0;
        for _ in 0..3 {
            keys.verifier(Alg::ES256, "k", || {
                builds += 1;
                Alg::ES256.verifier(&jwk)
            })
            .unwrap();
        }
        assert_eq!(builds, 1);
        assert!(keys.verifier(Alg::ES384, "k", || Alg::ES384.verifier(&jwk)).is_err());
        assert!(
            keys.verifier(Alg::ES384, "k", || Alg::ES384.verifier(&jwk)).is_err(),
            "a key that is not an ES384 key is refused every time"
        );
    }
}
