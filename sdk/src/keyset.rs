//! A parsed JWK Set (RFC 7517 §5): verifiers by `kid` and algorithm, built
//! once per fetch.
//!
//! Owns: the bound on how many keys a set may hold, keeping only signing
//! keys (`use` absent or `sig`) usable with the allowed algorithms (a key's
//! own `alg`, when stated, is the only one it serves), and picking the
//! verifier for a token's (`kid`, `alg`).
//! Must never: fetch anything (that is `jwks`), accept a symmetric key
//! (`kty` `oct`), or build a verifier per token.

use std::collections::HashMap;
use std::sync::Arc;

use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;
use serde_json::Value;

use crate::alg::Alg;

/// The default bound on keys in one JWK Set: a rotation overlap needs two or
/// three; a set of thousands is an attack on the parser.
pub const DEFAULT_MAX_KEYS: usize = 32;

type Verifiers = Vec<(Alg, Arc<dyn JwsVerifier>)>;

/// The verifiers of one JWK Set.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Verifiers>,
    /// Keys without a `kid`: used only for a token that names none.
    anonymous: Verifiers,
}

/// Why a document is not a usable JWK Set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("the JWK Set has no \"keys\" array")]
    NoKeys,
    #[error("the JWK Set holds {found} keys, more than the {max} allowed")]
    TooMany { found: usize, max: usize },
    #[error("the JWK Set has no signing key usable with the allowed algorithms")]
    NoUsableKey,
}

impl KeySet {
    pub fn parse(doc: &Value, algs: &[Alg], max_keys: usize) -> Result<KeySet, KeySetError> {
        let keys = doc.get("keys").and_then(Value::as_array).ok_or(KeySetError::NoKeys)?;
        if keys.len() > max_keys {
            return Err(KeySetError::TooMany {
                found: keys.len(),
                max: max_keys,
            });
        }
        let mut set = KeySet::default();
        for k in keys {
            let Some(map) = k.as_object() else { continue };
            let Ok(jwk) = Jwk::from_map(map.clone()) else { continue };
            if jwk.key_type() == "oct" || jwk.key_use().is_some_and(|u| u != "sig") {
                continue;
            }
            let candidates: Vec<Alg> = match jwk.algorithm() {
                Some(a) => Alg::parse(a).filter(|a| algs.contains(a)).into_iter().collect(),
                None => algs.to_vec(),
            };
            let verifiers: Verifiers = candidates
                .into_iter()
                .filter_map(|alg| alg.verifier(&jwk).ok().map(|v| (alg, v)))
                .collect();
            if verifiers.is_empty() {
                continue;
            }
            match jwk.key_id() {
                Some(kid) => set.by_kid.entry(kid.to_owned()).or_default().extend(verifiers),
                None => set.anonymous.extend(verifiers),
            }
        }
        if set.by_kid.is_empty() && set.anonymous.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(set)
    }

    /// The verifier for a token's (`kid`, `alg`). A token without `kid` is
    /// verified only when the set holds exactly one key, so a `kid`-less
    /// token can never make us try every key.
    pub fn find(&self, kid: Option<&str>, alg: Alg) -> Option<Arc<dyn JwsVerifier>> {
        let pick = |v: &Verifiers| v.iter().find(|(a, _)| *a == alg).map(|(_, v)| v.clone());
        match kid {
            Some(kid) => self.by_kid.get(kid).and_then(pick),
            None => {
                let keys = self.by_kid.len() + usize::from(!self.anonymous.is_empty());
                if keys != 1 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn public(kid: Option<&str>, alg: Option<&str>) -> Value {
        let k = Jwk::generate_ec_key(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
        let mut p = k.to_public_key().unwrap();
        if let Some(kid) = kid {
            p.set_key_id(kid);
        }
        if let Some(alg) = alg {
            p.set_algorithm(alg);
        }
        Value::Object(p.as_ref().clone())
    }

    #[test]
    fn keys_are_found_by_kid_and_only_under_allowed_algs() {
        let set = KeySet::parse(&json!({"keys": [public(Some("a"), Some("ES256"))]}), &[Alg::ES256], 4).unwrap();
        assert!(set.find(Some("a"), Alg::ES256).is_some());
        assert!(set.find(Some("b"), Alg::ES256).is_none());
        assert!(set.find(Some("a"), Alg::ES384).is_none());
        assert!(
            KeySet::parse(&json!({"keys": [public(Some("a"), Some("ES256"))]}), &[Alg::RS256], 4).is_err(),
            "a key whose alg is not allowed is not usable"
        );
    }

    #[test]
    fn a_set_larger_than_the_bound_is_refused_whole() {
        let keys: Vec<Value> = (0..5).map(|i| public(Some(&format!("k{i}")), None)).collect();
        assert_eq!(
            KeySet::parse(&json!({ "keys": keys }), &[Alg::ES256], 4).err(),
            Some(KeySetError::TooMany { found: 5, max: 4 })
        );
    }

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"});
        let mut enc = public(Some("e"), None);
        enc["use"] = json!("enc");
        assert_eq!(
            KeySet::parse(&json!({"keys": [oct, enc]}), &Alg::ALL, 4).err(),
            Some(KeySetError::NoUsableKey)
        );
    }

    #[test]
    fn a_token_without_kid_is_verified_only_against_a_single_key() {
        let one = KeySet::parse(&json!({"keys": [public(Some("a"), None)]}), &[Alg::ES256], 4).unwrap();
        assert!(one.find(None, Alg::ES256).is_some());
        let two = KeySet::parse(
            &json!({"keys": [public(Some("a"), None), public(Some("b"), None)]}),
            &[Alg::ES256],
            4,
        )
        .unwrap();
        assert!(two.find(None, Alg::ES256).is_none());
    }
}
