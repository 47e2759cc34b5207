//! A parsed JWK Set: verifiers by `kid` and algorithm, built once.
//!
//! Owns: turning a JWK Set (RFC 7517 §5) into verifiers, keeping only
//! signing keys (`use` absent or `sig`) usable with the allowed algorithms,
//! and picking the verifier for a token's `kid` and `alg`.
//! Must never: fetch anything (that is `trust::jwks`), or trust a token's
//! header to name a key source (RFC 8725 §3.10).

use std::collections::HashMap;
use std::sync::Arc;

use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;

use crate::jose::Alg;

/// The verifiers one key offers, by algorithm.
type Verifiers = Vec<(Alg, Arc<dyn JwsVerifier>)>;

/// Parsed verifiers of one JWK Set.
#[derive(Default, Debug)]
pub struct KeySet {
    by_kid: HashMap<String, Verifiers>,
    /// Keys without a `kid`: usable only when a token names none.
    anonymous: Verifiers,
}

impl KeySet {
    /// Parse a JWK Set, keeping each signing key under every allowed alg it
    /// can serve (a key's own `alg`, when stated, is the only one).
    pub fn parse(doc: &serde_json::Value, algs: &[Alg]) -> Result<KeySet, String> {
        let keys = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("JWK Set has no \"keys\" array")?;
        let mut set = KeySet::default();
        for k in keys {
            let Some(map) = k.as_object() else { continue };
            let Ok(jwk) = Jwk::from_map(map.clone()) else { continue };
            if jwk.key_use().is_some_and(|u| u != "sig") {
                continue;
            }
            let candidates: Vec<Alg> = match jwk.algorithm() {
                Some(a) => Alg::parse(a).filter(|a| algs.contains(a)).into_iter().collect(),
                None => algs.to_vec(),
            };
            let verifiers: Vec<_> = candidates
                .into_iter()
                .filter_map(|alg| alg.verifier(&jwk).ok().map(|v| (alg, v)))
                .collect();
            match jwk.key_id() {
                Some(kid) => set.by_kid.entry(kid.to_owned()).or_default().extend(verifiers),
                None => set.anonymous.extend(verifiers),
            }
        }
        if set.by_kid.is_empty() && set.anonymous.is_empty() {
            return Err("JWK Set has no usable signing key for the allowed algorithms".into());
        }
        Ok(set)
    }

    /// The verifier for a token's (kid, alg). A token without `kid` is
    /// accepted only when the set holds exactly one key.
    pub fn find(&self, kid: Option<&str>, alg: Alg) -> Option<Arc<dyn JwsVerifier>> {
        let pick = |v: &Verifiers| v.iter().find(|(a, _)| *a == alg).map(|(_, v)| v.clone());
        match kid {
            Some(kid) => self.by_kid.get(kid).and_then(pick),
            None => {
                let total = self.by_kid.len() + usize::from(!self.anonymous.is_empty());
                if total != 1 {
                    return None;
                }
                self.by_kid
                    .values()
                    .next()
                    .and_then(pick)
                    .or_else(|| pick(&self.anonymous))
            }
        }
    }
}
