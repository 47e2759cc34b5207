//! DPoP at the token endpoint (RFC 9449): is this request's proof valid, and
//! which key did it prove?
//!
//! Owns: the proof checks of RFC 9449 §4.3, in this order, each refusal its
//! own `reason` and an `invalid_dpop_proof`: exactly one `DPoP` header; a
//! compact JWS of bounded size; `typ` `dpop+jwt`; no `crit`; an allow-listed
//! asymmetric `alg` (`dpop_signing_alg_values_supported`); a public `jwk`
//! of a supported type (no private or symmetric members, RSA ≥ 2048 bits);
//! the signature by that key; `jti`, `htm`, `htu`, `iat` present; `htm`
//! the request's method; `htu` the token endpoint (query and fragment
//! ignored, both sides normalised, §4.3 check 9); `iat` within
//! `dpop.max_age_secs` (and the clock skew ahead); then the server nonce
//! when required (`use_dpop_nonce`, `nonce.rs`). Single use of `jti` is the
//! store's: the proof's replay mark is committed with the request's record,
//! in the store every instance shares. Which key a new token is bound to is
//! `binding.rs`.
//! Must never: trust the proof's key for anything but the thumbprint it
//! proves (`cnf.jkt`, RFC 7638); run before the client is authenticated (a
//! proof costs a signature check); put a proof in a log, an error or the
//! audit record (the record keeps the key's thumbprint only).

pub mod binding;
pub mod keys;
pub mod nonce;

use josekit::jwk::Jwk;

use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::jose::{Alg, UnverifiedJws};
use crate::params::DpopHeader;
use crate::policy::DpopSettings;
use crate::store::ReplayMark;

/// The proof's media type (RFC 9449 §4.2).
pub const TYP: &str = "dpop+jwt";
/// Replay marks of proofs start with this (`endpoint` answers their replay
/// as `invalid_dpop_proof`).
pub const MARK_PREFIX: &str = "dpop:";
/// A proof carries one public key and four short claims: an RSA-4096 key
/// is under 1 KiB of base64url, so this bounds a hostile one.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti`, `htm`, nonce we read; `htu` may be a URL.
const MAX_CLAIM_BYTES: usize = 256;
const MAX_HTU_BYTES: usize = 2048;
/// RFC 7518 §3.3: an RSA key of at least 2048 bits.
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// JWK members that only a private or symmetric key has (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof that passed every check: the key it proved, and the mark that
/// makes its `jti` single use (set by the request's commit).
#[derive(Debug, Clone)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: the `cnf.jkt` a token bound
    /// to it carries (RFC 9449 §6.1).
    pub jkt: String,
    pub mark: ReplayMark,
}

/// What a proof must match.
pub struct Expected<'a> {
    /// The request's method (`POST` at the token endpoint).
    pub htm: &'a str,
    /// The endpoint's URI as published in metadata.
    pub htu: &'a str,
    pub now: i64,
    pub clock_skew_secs: i64,
    pub settings: &'a DpopSettings,
    /// Verifiers of keys already seen (`keys.rs`).
    pub keys: &'a keys::ProofKeys,
}

impl Expected<'_> {
    fn nonce_key(&self) -> nonce::NonceKey<'_> {
        nonce::NonceKey {
            secret: &self.settings.nonce_secret,
            lifetime_secs: self.settings.nonce_lifetime_secs,
        }
    }

    /// The nonce to hand out with an answer to a request that carried a
    /// proof, when nonces are required (RFC 9449 §8.2: a server may rotate
    /// nonces on any response).
    pub fn fresh_nonce(&self) -> Option<String> {
        self.settings
            .require_nonce
            .then(|| self.nonce_key().current(self.now))
            .flatten()
    }
}

fn refuse(reason: &'static str, description: &'static str) -> OAuthError {
    OAuthError::invalid_dpop_proof(reason, description)
}

/// Check the request's `DPoP` header, if any: `Ok(None)` without one (whether
/// one was required is the caller's rule), the proven key otherwise.
pub fn check(header: &DpopHeader, ex: &Expected<'_>) -> OAuthResult<Option<Proof>> {
    let proof = match header {
        DpopHeader::Absent => return Ok(None),
        DpopHeader::Several => {
            return Err(refuse(
                "dpop.several_headers",
                "send exactly one DPoP header (RFC 9449 §4.3)",
            ));
        }
        DpopHeader::One(p) => p,
    };
    if proof.len() > MAX_PROOF_BYTES {
        return Err(refuse("dpop.too_large", "the DPoP proof is too large"));
    }
    let jws = UnverifiedJws::parse(proof).map_err(|_| {
        refuse(
            "dpop.malformed",
            "the DPoP proof is not a compact JWS with a JSON header and claims",
        )
    })?;
    if jws.header.media_type().as_deref() != Some(TYP) {
        return Err(refuse("dpop.typ", "the DPoP proof's typ must be dpop+jwt"));
    }
    if jws.header.crit.is_some() {
        return Err(refuse(
            "dpop.crit",
            "the DPoP proof uses a critical header extension we do not support",
        ));
    }
    let alg = Alg::parse(&jws.header.alg).ok_or_else(|| {
        refuse(
            "dpop.alg",
            "the DPoP proof's alg is not one of dpop_signing_alg_values_supported (asymmetric only)",
        )
    })?;
    let jwk = public_jwk(jws.header.jwk.as_ref())?;
    let jkt = crate::jose::thumbprint(&jwk).map_err(|_| refuse("dpop.jwk", "the DPoP proof's jwk is incomplete"))?;
    let verifier = ex
        .keys
        .verifier(alg, &jkt, || alg.verifier(&jwk))
        .map_err(|_| refuse("dpop.jwk_alg", "the DPoP proof's jwk is not a key for its alg"))?;
    if !jws.verify(verifier.as_ref()) {
        return Err(refuse(
            "dpop.signature",
            "the DPoP proof's signature does not verify with its jwk",
        ));
    }
    let claims = Claims::read(&jws.payload)?;
    if claims.htm != ex.htm {
        return Err(refuse("dpop.htm", "the DPoP proof's htm is not this request's method"));
    }
    let htu = normalise_htu(claims.htu);
    if htu.is_none() || htu != normalise_htu(ex.htu) {
        return Err(refuse("dpop.htu", "the DPoP proof's htu is not this endpoint's URI"));
    }
    let oldest = ex.now - ex.settings.max_age_secs - ex.clock_skew_secs;
    if claims.iat < oldest || claims.iat > ex.now + ex.clock_skew_secs {
        return Err(refuse("dpop.iat", "the DPoP proof's iat is too old or in the future"));
    }
    if ex.settings.require_nonce {
        let fresh = claims.nonce.is_some_and(|n| ex.nonce_key().accepts(n, ex.now));
        if !fresh {
            return Err(OAuthError::new(
                ErrorCode::UseDpopNonce,
                if claims.nonce.is_some() {
                    "dpop.nonce_stale"
                } else {
                    "dpop.nonce_required"
                },
                "the DPoP proof must carry the server's current nonce (DPoP-Nonce)",
            ));
        }
    }
    Ok(Some(Proof {
        mark: ReplayMark {
            // The jti is the client's text: hashed, so a key stays short.
            key: format!("{MARK_PREFIX}{jkt}:{}", crate::jose::sha256_hex(claims.jti.as_bytes())),
            // Accepted no later than this, so remembered until then.
            expires_at: claims.iat + ex.settings.max_age_secs + 2 * ex.clock_skew_secs,
            authenticates: false,
        },
        jkt,
    }))
}

/// The proof's `jwk`: present, public, of a type we verify (RFC 9449 §4.3
/// check 7: "does not contain a private key").
fn public_jwk(jwk: Option<&serde_json::Map<String, serde_json::Value>>) -> OAuthResult<Jwk> {
    let map = jwk.ok_or_else(|| refuse("dpop.jwk_missing", "the DPoP proof's header has no jwk"))?;
    if PRIVATE_MEMBERS.iter().any(|m| map.contains_key(*m)) {
        return Err(refuse("dpop.jwk_private", "the DPoP proof's jwk must be a public key"));
    }
    match map.get("kty").and_then(|v| v.as_str()) {
        Some("EC" | "OKP") => {}
        Some("RSA") => {
            let modulus = map.get("n").and_then(|v| v.as_str()).map_or(0, |n| n.len() * 3 / 4);
            if modulus < MIN_RSA_MODULUS_BYTES {
                return Err(refuse(
                    "dpop.jwk_weak",
                    "the DPoP proof's RSA key is shorter than 2048 bits",
                ));
            }
        }
        _ => {
            return Err(refuse(
                "dpop.jwk_kty",
                "the DPoP proof's jwk must be an EC, OKP or RSA public key",
            ));
        }
    }
    Jwk::from_map(map.clone()).map_err(|_| refuse("dpop.jwk", "the DPoP proof's jwk is not a valid JWK"))
}

/// The claims every proof carries (RFC 9449 §4.2), bounded.
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    nonce: Option<&'a str>,
}

impl<'a> Claims<'a> {
    fn read(payload: &'a serde_json::Map<String, serde_json::Value>) -> OAuthResult<Self> {
        let text = |name: &str, max: usize| {
            payload
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty() && s.len() <= max)
        };
        let missing = || {
            refuse(
                "dpop.claims",
                "the DPoP proof must carry jti, htm, htu and iat (RFC 9449 §4.2)",
            )
        };
        Ok(Self {
            jti: text("jti", MAX_CLAIM_BYTES).ok_or_else(missing)?,
            htm: text("htm", MAX_CLAIM_BYTES).ok_or_else(missing)?,
            htu: text("htu", MAX_HTU_BYTES).ok_or_else(missing)?,
            iat: payload
                .get("iat")
                .and_then(|v| v.as_f64())
                .filter(|f| f.is_finite())
                .map(|f| f as i64)
                .ok_or_else(missing)?,
            nonce: text("nonce", MAX_CLAIM_BYTES),
        })
    }
}

/// RFC 9449 §4.3 check 9: compare without query and fragment, after the
/// syntax- and scheme-based normalisation of RFC 3986 §6.2.2–6.2.3 (case of
/// scheme and host, default port, empty path), which `url` performs.
fn normalise_htu(raw: &str) -> Option<String> {
    let mut u = url::Url::parse(raw).ok()?;
    if !matches!(u.scheme(), "https" | "http") {
        return None;
    }
    u.set_query(None);
    u.set_fragment(None);
    Some(u.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_compares_normalised_without_query_or_fragment() {
        let ours = normalise_htu("https://broker.example/token");
        assert_eq!(normalise_htu("HTTPS://Broker.Example:443/token?x=1#f"), ours);
        assert_ne!(normalise_htu("https://broker.example/token/"), ours);
        assert_ne!(normalise_htu("https://other.example/token"), ours);
        assert_eq!(normalise_htu("urn:x:token"), None);
    }
}
