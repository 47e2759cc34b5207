//! `DpopKey`: a client's DPoP key pair and the proofs it makes (RFC 9449
//! §4), for the token requests of `HopTokens` and `IdJagClient` and for
//! calls to a resource server with a DPoP-bound token.
//!
//! Owns: generating a key for an allow-listed [`Alg`] or loading one from a
//! PEM or a private JWK (checked: a private key of a supported type, RSA of
//! at least 2048 bits, its public half matching it); the public JWK sent in
//! proofs (the RFC 7638 required members only) and its thumbprint, the
//! `cnf.jkt` a bound token carries (RFC 9449 §6.1); and one fresh proof per
//! request (§4.2: `typ` `dpop+jwt`, `alg`, `jwk`; `jti` a fresh UUIDv7,
//! `htm`, `htu` without query and fragment, `iat` now, and `nonce` and
//! `ath` when given).
//! Must never: print, log or return the private key (`Debug` shows the
//! algorithm and the thumbprint only), put a private member in a proof's
//! `jwk`, or reuse a `jti`.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::JwsSigner;
use serde_json::{Map, Value, json};

use crate::alg::Alg;
use crate::dpop::{self, MIN_RSA_MODULUS_BITS, TYP};
use crate::jws::sign_compact;

/// The RSA key size [`DpopKey::generate`] makes (RFC 7518 §3.3's minimum).
const GENERATED_RSA_BITS: u32 = 2048;

/// Why a DPoP key could not be made or used. Never carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopKeyError {
    #[error("the PEM is not an EC (P-256, P-384), RSA or Ed25519 private key")]
    UnsupportedPem,
    #[error("the JWK is not a private EC (P-256, P-384), RSA or Ed25519 signing key for an allowed alg")]
    InvalidJwk,
    #[error("the RSA key is shorter than {MIN_RSA_MODULUS_BITS} bits")]
    WeakRsa,
    #[error("the key's public half does not match its private half")]
    Mismatched,
    #[error("a key could not be generated")]
    Generation,
    #[error("the DPoP proof could not be signed")]
    Signing,
    #[error("the DPoP proof's htu is not an absolute http(s) URI")]
    Htu,
}

/// A client's DPoP key: makes proofs of possession (RFC 9449 §4) for the
/// requests it signs. Cheap to clone (the key is shared).
///
/// A token requested with a proof by this key is bound to it (`cnf.jkt` =
/// [`DpopKey::thumbprint`]) and is worth nothing without a fresh proof by
/// the same key, so a copy that leaks is not a credential.
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    alg: Alg,
    signer: Arc<dyn JwsSigner>,
    /// The RFC 7638 required members only: nothing private, nothing extra.
    public: Map<String, Value>,
    jkt: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.inner.alg)
            .field("jkt", &self.inner.jkt)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A fresh key for `alg`: P-256 for ES256, P-384 for ES384, RSA 2048
    /// for RS256 and PS256, Ed25519 for EdDSA. It lives in memory only: a
    /// token bound to it dies with the process.
    pub fn generate(alg: Alg) -> Result<Self, DpopKeyError> {
        let jwk = match alg {
            Alg::ES256 => EcKeyPair::generate(EcCurve::P256).map(|k| k.to_jwk_key_pair()),
            Alg::ES384 => EcKeyPair::generate(EcCurve::P384).map(|k| k.to_jwk_key_pair()),
            Alg::RS256 | Alg::PS256 => RsaKeyPair::generate(GENERATED_RSA_BITS).map(|k| k.to_jwk_key_pair()),
            Alg::EdDSA => EdKeyPair::generate(EdCurve::Ed25519).map(|k| k.to_jwk_key_pair()),
        }
        .map_err(|_| DpopKeyError::Generation)?;
        Self::from_private(alg, jwk.as_ref())
    }

    /// A key from a PEM private key (PKCS#8, or SEC1 / PKCS#1): ES256 for
    /// P-256, ES384 for P-384, RS256 for RSA, EdDSA for Ed25519 (as
    /// `ClientAuth::private_key_jwt_pem`; for PS256, use a JWK naming it).
    pub fn from_pem(pem: &[u8]) -> Result<Self, DpopKeyError> {
        let alg = Alg::for_pem(pem).ok_or(DpopKeyError::UnsupportedPem)?;
        let jwk = match alg {
            Alg::ES256 | Alg::ES384 => EcKeyPair::from_pem(pem, None).map(|k| k.to_jwk_key_pair()),
            Alg::RS256 | Alg::PS256 => RsaKeyPair::from_pem(pem).map(|k| k.to_jwk_key_pair()),
            Alg::EdDSA => EdKeyPair::from_pem(pem).map(|k| k.to_jwk_key_pair()),
        }
        .map_err(|_| DpopKeyError::UnsupportedPem)?;
        Self::from_private(alg, jwk.as_ref())
    }

    /// A key from a private JWK (RFC 7517) as JSON: its `alg` chooses the
    /// algorithm (it must be allow-listed), else its key type and curve do
    /// (RSA signs RS256). Its `kid` and `use` are not sent in proofs.
    pub fn from_jwk(jwk_json: &str) -> Result<Self, DpopKeyError> {
        let jwk = Jwk::from_bytes(jwk_json.as_bytes()).map_err(|_| DpopKeyError::InvalidJwk)?;
        let alg = Alg::for_key(&jwk).ok_or(DpopKeyError::InvalidJwk)?;
        Self::from_private(alg, jwk.as_ref())
    }

    /// Check a private key pair for `alg` and build the key.
    fn from_private(alg: Alg, private: &Map<String, Value>) -> Result<Self, DpopKeyError> {
        if !private.contains_key("d") {
            return Err(DpopKeyError::InvalidJwk);
        }
        let public = public_members(alg, private)?;
        let private_jwk = Jwk::from_map(private.clone()).map_err(|_| DpopKeyError::InvalidJwk)?;
        let public_jwk = Jwk::from_map(public.clone()).map_err(|_| DpopKeyError::InvalidJwk)?;
        let signer = alg.signer(&private_jwk).map_err(|_| DpopKeyError::InvalidJwk)?;
        let verifier = alg.verifier(&public_jwk).map_err(|_| DpopKeyError::InvalidJwk)?;
        // A proof is checked with the public key it carries: one that does
        // not belong to the private key would make every proof fail.
        let probe = b"xaa-sdk dpop key check";
        let signature = signer.sign(probe).map_err(|_| DpopKeyError::Signing)?;
        if verifier.verify(probe, &signature).is_err() {
            return Err(DpopKeyError::Mismatched);
        }
        let jkt = dpop::jwk_thumbprint(&public).ok_or(DpopKeyError::InvalidJwk)?;
        Ok(Self {
            inner: Arc::new(Inner {
                alg,
                signer,
                public,
                jkt,
            }),
        })
    }

    /// The algorithm proofs are signed with.
    pub fn alg(&self) -> Alg {
        self.inner.alg
    }

    /// The public JWK proofs carry (the RFC 7638 required members only).
    pub fn public_jwk(&self) -> &Map<String, Value> {
        &self.inner.public
    }

    /// The key's RFC 7638 SHA-256 thumbprint (base64url): the `cnf.jkt` of
    /// a token bound to it (RFC 9449 §6.1).
    pub fn thumbprint(&self) -> &str {
        &self.inner.jkt
    }

    /// A fresh proof for a request `htm htu` (RFC 9449 §4.2), made now with
    /// a new `jti`: `htu` loses its query and fragment; `nonce` is the
    /// server's `DPoP-Nonce` (§8) when it asked for one; `ath` is the
    /// access token hash (§4.2, [`crate::dpop::ath`]) when the request
    /// presents an access token. Send it as the request's one `DPoP`
    /// header; never reuse it.
    pub fn proof(&self, htm: &str, htu: &str, nonce: Option<&str>, ath: Option<&str>) -> Result<String, DpopKeyError> {
        let htu = proof_htu(htu)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = json!({"typ": TYP, "alg": self.inner.alg.name(), "jwk": self.inner.public});
        let mut claims = json!({
            "jti": uuid::Uuid::now_v7().to_string(),
            "htm": htm,
            "htu": htu,
            "iat": now,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(ath) = ath {
            claims["ath"] = json!(ath);
        }
        sign_compact(&header, &claims, self.inner.signer.as_ref()).map_err(|_| DpopKeyError::Signing)
    }

    /// A proof for calling a resource server with `access_token` (a token
    /// bound to this key) as `Authorization: DPoP <token>`: [`Self::proof`]
    /// with the token's `ath` (RFC 9449 §7.1).
    pub fn resource_proof(&self, method: &str, uri: &str, access_token: &str) -> Result<String, DpopKeyError> {
        self.proof(method, uri, None, Some(&dpop::ath(access_token)))
    }
}

/// The public members RFC 7638 §3.2 requires for the key type `alg` signs
/// with, and nothing else; the key type must be `alg`'s, and an RSA key at
/// least [`MIN_RSA_MODULUS_BITS`] (the broker's and the SDK verifier's
/// minimum, RFC 7518 §3.3).
fn public_members(alg: Alg, private: &Map<String, Value>) -> Result<Map<String, Value>, DpopKeyError> {
    let (kty, members): (&str, &[&str]) = match alg {
        Alg::ES256 | Alg::ES384 => ("EC", &["crv", "x", "y"]),
        Alg::RS256 | Alg::PS256 => ("RSA", &["e", "n"]),
        Alg::EdDSA => ("OKP", &["crv", "x"]),
    };
    if private.get("kty").and_then(Value::as_str) != Some(kty) {
        return Err(DpopKeyError::InvalidJwk);
    }
    let mut public = Map::new();
    public.insert("kty".into(), json!(kty));
    for m in members {
        let value = private
            .get(*m)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or(DpopKeyError::InvalidJwk)?;
        public.insert((*m).to_owned(), json!(value));
    }
    if kty == "RSA" && dpop::rsa_modulus_bits(public.get("n")) < MIN_RSA_MODULUS_BITS {
        return Err(DpopKeyError::WeakRsa);
    }
    Ok(public)
}

/// RFC 9449 §4.2: "the HTTP target URI, without query and fragment parts".
fn proof_htu(htu: &str) -> Result<String, DpopKeyError> {
    let mut u = url::Url::parse(htu).map_err(|_| DpopKeyError::Htu)?;
    if !matches!(u.scheme(), "https" | "http") {
        return Err(DpopKeyError::Htu);
    }
    u.set_query(None);
    u.set_fragment(None);
    Ok(u.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::{DpopConfig, DpopError, DpopRequest, DpopVerifier, PRIVATE_MEMBERS};
    use crate::jws::UnverifiedJws;

    const URI: &str = "https://mcp.logs.example.com/tools/search_logs";
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";

    fn verify(key: &DpopKey, proof: &str, method: &str, uri: &str) -> Result<(), DpopError> {
        let v = DpopVerifier::new(DpopConfig::default()).unwrap();
        let request = DpopRequest {
            proofs: &[proof],
            method,
            uri,
        };
        v.verify(&request, TOKEN, key.thumbprint())
    }

    #[test]
    fn a_proof_by_every_allowed_algorithm_passes_the_sdks_own_verifier() {
        for alg in Alg::ALL {
            let key = DpopKey::generate(alg).unwrap();
            let proof = key.resource_proof("POST", URI, TOKEN).unwrap();
            assert_eq!(verify(&key, &proof, "POST", URI), Ok(()), "{alg}");
            assert_eq!(key.alg(), alg);
        }
    }

    #[test]
    fn a_proof_carries_the_rfc_9449_header_and_claims() {
        let key = DpopKey::generate(Alg::ES256).unwrap();
        let proof = key
            .proof(
                "POST",
                "https://broker.example.com/token?x=1#frag",
                Some("n-1"),
                Some("h"),
            )
            .unwrap();
        let jws = UnverifiedJws::parse(&proof).unwrap();
        assert_eq!(jws.header.typ.as_deref(), Some("dpop+jwt"));
        assert_eq!(jws.header.alg, "ES256");
        let jwk = jws.header.jwk.clone().unwrap();
        assert_eq!(jwk.as_object().unwrap(), key.public_jwk());
        let p = &jws.payload;
        assert_eq!(p["htm"], "POST");
        assert_eq!(
            p["htu"], "https://broker.example.com/token",
            "no query, no fragment (§4.2)"
        );
        assert_eq!((p["nonce"].as_str(), p["ath"].as_str()), (Some("n-1"), Some("h")));
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
        assert!((p["iat"].as_i64().unwrap() - now).abs() <= 2);
        let bare = UnverifiedJws::parse(&key.proof("POST", URI, None, None).unwrap())
            .unwrap()
            .payload;
        assert!(!bare.contains_key("nonce") && !bare.contains_key("ath"));
    }

    #[test]
    fn every_proof_has_its_own_jti_so_none_is_a_replay() {
        let key = DpopKey::generate(Alg::ES256).unwrap();
        let v = DpopVerifier::new(DpopConfig::default()).unwrap();
        let mut jtis = std::collections::HashSet::new();
        for _ in 0..20 {
            let proof = key.resource_proof("GET", URI, TOKEN).unwrap();
            let jti = UnverifiedJws::parse(&proof).unwrap().payload["jti"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(jtis.insert(jti));
            let request = DpopRequest {
                proofs: &[&proof],
                method: "GET",
                uri: URI,
            };
            assert_eq!(v.verify(&request, TOKEN, key.thumbprint()), Ok(()));
        }
    }

    #[test]
    fn a_proof_is_for_its_method_uri_and_token_only() {
        let key = DpopKey::generate(Alg::ES256).unwrap();
        let proof = key.resource_proof("POST", URI, TOKEN).unwrap();
        assert_eq!(verify(&key, &proof, "GET", URI), Err(DpopError::WrongMethod));
        assert_eq!(
            verify(&key, &proof, "POST", "https://mcp.logs.example.com/tools/purge_logs"),
            Err(DpopError::WrongUri)
        );
        let other = key.resource_proof("POST", URI, "another.token.x").unwrap();
        assert_eq!(verify(&key, &other, "POST", URI), Err(DpopError::Ath));
        let v = DpopVerifier::new(DpopConfig::default()).unwrap();
        let someone_else = DpopKey::generate(Alg::ES256).unwrap();
        let request = DpopRequest {
            proofs: &[&proof],
            method: "POST",
            uri: URI,
        };
        assert_eq!(
            v.verify(&request, TOKEN, someone_else.thumbprint()),
            Err(DpopError::OtherKey)
        );
    }

    #[test]
    fn the_public_jwk_holds_the_thumbprint_members_and_nothing_private() {
        for alg in Alg::ALL {
            let key = DpopKey::generate(alg).unwrap();
            let jwk = key.public_jwk();
            assert!(PRIVATE_MEMBERS.iter().all(|m| !jwk.contains_key(*m)), "{alg}");
            assert_eq!(dpop::jwk_thumbprint(jwk).as_deref(), Some(key.thumbprint()));
        }
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let private = Jwk::generate_ec_key(EcCurve::P256).unwrap();
        let d = private.parameter("d").and_then(Value::as_str).unwrap().to_owned();
        let key = DpopKey::from_jwk(&private.to_string()).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&d), "{shown}");
        assert!(shown.contains(key.thumbprint()) && shown.contains("ES256"));
    }

    #[test]
    fn a_key_loads_from_a_jwk_or_a_pem_with_the_same_thumbprint() {
        let pair = EcKeyPair::generate(EcCurve::P384).unwrap();
        let pem = pair.to_pem_private_key();
        let from_pem = DpopKey::from_pem(&pem).unwrap();
        let from_jwk = DpopKey::from_jwk(&pair.to_jwk_key_pair().to_string()).unwrap();
        assert_eq!(from_pem.alg(), Alg::ES384);
        assert_eq!(from_pem.thumbprint(), from_jwk.thumbprint());
        let mut ps = RsaKeyPair::generate(2048).unwrap().to_jwk_key_pair();
        ps.set_algorithm("PS256");
        let ps = DpopKey::from_jwk(&ps.to_string()).unwrap();
        assert_eq!(ps.alg(), Alg::PS256, "a JWK's alg chooses");
        let proof = ps.resource_proof("POST", URI, TOKEN).unwrap();
        assert_eq!(verify(&ps, &proof, "POST", URI), Ok(()));
    }

    #[test]
    fn unusable_keys_are_refused_by_name() {
        let ec = Jwk::generate_ec_key(EcCurve::P256).unwrap();
        let public = ec.to_public_key().unwrap();
        assert_eq!(
            DpopKey::from_jwk(&public.to_string()).err(),
            Some(DpopKeyError::InvalidJwk),
            "a public key cannot sign"
        );
        let mut hmac = Jwk::generate_oct_key(32).unwrap();
        hmac.set_algorithm("HS256");
        assert_eq!(
            DpopKey::from_jwk(&hmac.to_string()).err(),
            Some(DpopKeyError::InvalidJwk)
        );
        let mut wrong_family = ec.clone();
        wrong_family.set_algorithm("RS256");
        assert_eq!(
            DpopKey::from_jwk(&wrong_family.to_string()).err(),
            Some(DpopKeyError::InvalidJwk)
        );
        let weak = RsaKeyPair::generate(1024).unwrap().to_jwk_key_pair();
        assert_eq!(DpopKey::from_jwk(&weak.to_string()).err(), Some(DpopKeyError::WeakRsa));
        let mut mismatched = ec.as_ref().clone();
        let other = Jwk::generate_ec_key(EcCurve::P256).unwrap();
        mismatched.insert("x".into(), other.parameter("x").unwrap().clone());
        mismatched.insert("y".into(), other.parameter("y").unwrap().clone());
        assert_eq!(
            DpopKey::from_jwk(&Value::Object(mismatched).to_string()).err(),
            Some(DpopKeyError::Mismatched)
        );
        assert_eq!(
            DpopKey::from_pem(b"not a key").err(),
            Some(DpopKeyError::UnsupportedPem)
        );
        assert_eq!(DpopKey::from_jwk("{").err(), Some(DpopKeyError::InvalidJwk));
    }

    #[test]
    fn an_htu_must_be_an_absolute_http_uri() {
        let key = DpopKey::generate(Alg::ES256).unwrap();
        for bad in ["/token", "urn:x:token", "not a url"] {
            assert_eq!(
                key.proof("POST", bad, None, None).err(),
                Some(DpopKeyError::Htu),
                "{bad}"
            );
        }
    }
}
