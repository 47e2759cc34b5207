//! Compact JWS primitives over josekit's raw signers and verifiers.
//!
//! Owns: the algorithm allow-list, splitting and joining compact JWS
//! (RFC 7515 §7.1), `typ` comparison (RFC 7515 §4.1.9), building signers and
//! verifiers from JWKs, and RFC 7638 thumbprints.
//! Must never: decide whether a token is acceptable (that is `trust::validate`)
//! or fetch keys (that is `trust::jwks`). Nothing here trusts header content
//! to pick a key source: no `jku`, `x5u` or embedded `jwk` (RFC 8725 §3.10).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use josekit::jwk::Jwk;
use josekit::jws::{JwsSigner, JwsVerifier};
use serde::{Deserialize, Serialize};

/// Signature algorithms the broker will ever sign or verify with. `none` and
/// the HMAC family are absent on purpose: every key here is asymmetric, so an
/// alg-confusion attack (RFC 8725 §2.1) has nothing to confuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Alg {
    ES256,
    ES384,
    RS256,
    PS256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 5] = [Alg::ES256, Alg::ES384, Alg::RS256, Alg::PS256, Alg::EdDSA];

    pub fn name(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Alg> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Building a verifier from a JWK costs ~100+ µs, so callers cache the
    /// result per (issuer, kid, alg) and never call this on the request path.
    pub fn verifier(self, jwk: &Jwk) -> Result<Arc<dyn JwsVerifier>, josekit::JoseError> {
        Ok(match self {
            Alg::ES256 => Arc::new(josekit::jws::ES256.verifier_from_jwk(jwk)?),
            Alg::ES384 => Arc::new(josekit::jws::ES384.verifier_from_jwk(jwk)?),
            Alg::RS256 => Arc::new(josekit::jws::RS256.verifier_from_jwk(jwk)?),
            Alg::PS256 => Arc::new(josekit::jws::PS256.verifier_from_jwk(jwk)?),
            Alg::EdDSA => Arc::new(josekit::jws::EdDSA.verifier_from_jwk(jwk)?),
        })
    }

    pub fn signer(self, jwk: &Jwk) -> Result<Box<dyn JwsSigner>, josekit::JoseError> {
        Ok(match self {
            Alg::ES256 => Box::new(josekit::jws::ES256.signer_from_jwk(jwk)?),
            Alg::ES384 => Box::new(josekit::jws::ES384.signer_from_jwk(jwk)?),
            Alg::RS256 => Box::new(josekit::jws::RS256.signer_from_jwk(jwk)?),
            Alg::PS256 => Box::new(josekit::jws::PS256.signer_from_jwk(jwk)?),
            Alg::EdDSA => Box::new(josekit::jws::EdDSA.signer_from_jwk(jwk)?),
        })
    }

    /// Generate a fresh private JWK for this algorithm.
    pub fn generate(self) -> Result<Jwk, josekit::JoseError> {
        use josekit::jwk::alg::ec::EcCurve;
        use josekit::jwk::alg::ed::EdCurve;
        let mut jwk = match self {
            Alg::ES256 => Jwk::generate_ec_key(EcCurve::P256)?,
            Alg::ES384 => Jwk::generate_ec_key(EcCurve::P384)?,
            Alg::RS256 | Alg::PS256 => Jwk::generate_rsa_key(2048)?,
            Alg::EdDSA => Jwk::generate_ed_key(EdCurve::Ed25519)?,
        };
        jwk.set_algorithm(self.name());
        jwk.set_key_use("sig");
        let kid = thumbprint(&jwk).map_err(josekit::JoseError::InvalidKeyFormat)?;
        jwk.set_key_id(kid);
        Ok(jwk)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): the required members in
/// lexicographic order, no whitespace. Used as the default `kid`.
pub fn thumbprint(jwk: &Jwk) -> Result<String, anyhow::Error> {
    let member = |name: &str| -> Result<&str, anyhow::Error> {
        jwk.parameter(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow::anyhow!("JWK lacks member {name:?}"))
    };
    let canonical = match jwk.key_type() {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, member("e")?, member("n")?),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, member("crv")?, member("x")?),
        other => anyhow::bail!("unsupported key type {other:?}"),
    };
    Ok(B64.encode(openssl::sha::sha256(canonical.as_bytes())))
}

/// The JOSE header members the broker reads. Unknown members are ignored
/// except `crit`, which makes a token unacceptable (RFC 7515 §4.1.11: we
/// understand no extensions).
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
    /// An embedded public key. Read by `dpop` only, where the proof carries
    /// the key it is signed with by design (RFC 9449 §4.2) and what is
    /// trusted is its thumbprint, never the key itself; for every other
    /// token it is ignored, never a key source (RFC 8725 §3.10).
    #[serde(default)]
    pub jwk: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Header {
    /// RFC 7515 §4.1.9: `typ` compares case-insensitively and may omit the
    /// `application/` prefix. Returns the normalised media type, if any.
    pub fn media_type(&self) -> Option<String> {
        self.typ.as_deref().map(normalise_typ)
    }
}

pub fn normalise_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// A compact JWS split into its parts; nothing about it is trusted yet.
pub struct UnverifiedJws<'a> {
    pub header: Header,
    pub payload: serde_json::Map<String, serde_json::Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// Why a compact JWS could not even be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("token is larger than {0} bytes")]
    TooLarge(usize),
    #[error("token is not a compact JWS (expected three dot-separated parts)")]
    NotCompactJws,
    #[error("token part is not valid base64url")]
    Base64,
    #[error("token header is not a valid JOSE header")]
    Header,
    #[error("token payload is not a JSON object")]
    Payload,
}

/// Generous for any real JWT, small enough that a hostile one costs nothing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

impl<'a> UnverifiedJws<'a> {
    pub fn parse(token: &'a str) -> Result<Self, ParseError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ParseError::TooLarge(MAX_TOKEN_BYTES));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::NotCompactJws);
        };
        let header_bytes = B64.decode(h).map_err(|_| ParseError::Base64)?;
        let payload_bytes = B64.decode(p).map_err(|_| ParseError::Base64)?;
        let signature = B64.decode(s).map_err(|_| ParseError::Base64)?;
        let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| ParseError::Header)?;
        let payload = match serde_json::from_slice(&payload_bytes) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(ParseError::Payload),
        };
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Self {
            header,
            payload,
            signing_input,
            signature,
        })
    }

    pub fn verify(&self, verifier: &dyn JwsVerifier) -> bool {
        #[cfg(test)]
        VERIFICATIONS.with(|n| n.set(n.get() + 1));
        verifier.verify(self.signing_input.as_bytes(), &self.signature).is_ok()
    }

    /// Spend exactly the work of a real check and fail: verify against a
    /// key nobody holds, of the token's own algorithm. Used where no key was
    /// found, so that "no such client" or "no such key" costs the same as
    /// "wrong key" and timing cannot enumerate client ids (RFC 7523 §3, OIDC
    /// Core §9 leave this to the server).
    pub fn verify_decoy(&self) -> bool {
        if let Some(v) = Alg::parse(&self.header.alg).and_then(decoy_verifier) {
            let _ = self.verify(v.as_ref());
        }
        false
    }
}

// Signature checks made on this thread (tests only: the timing-equivalence
// tests count them instead of timing them).
#[cfg(test)]
thread_local! {
    pub static VERIFICATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One verifier per algorithm for a key generated at first use and thrown
/// away: no signature ever verifies under it.
fn decoy_verifier(alg: Alg) -> Option<Arc<dyn JwsVerifier>> {
    static DECOYS: [std::sync::OnceLock<Option<Arc<dyn JwsVerifier>>>; 5] = [const { std::sync::OnceLock::new() }; 5];
    let i = Alg::ALL.iter().position(|a| *a == alg)?;
    DECOYS[i]
        .get_or_init(|| {
            let jwk = alg.generate().ok()?;
            let public = jwk.to_public_key().ok()?;
            alg.verifier(&public).ok()
        })
        .clone()
}

/// Serialize and sign a compact JWS with an explicit `typ` (RFC 8725 §3.11).
pub fn sign_compact<T: Serialize>(
    signer: &dyn JwsSigner,
    alg: Alg,
    kid: &str,
    typ: &str,
    claims: &T,
) -> Result<String, anyhow::Error> {
    #[derive(Serialize)]
    struct OutHeader<'a> {
        alg: &'a str,
        typ: &'a str,
        kid: &'a str,
    }
    let header = serde_json::to_vec(&OutHeader {
        alg: alg.name(),
        typ,
        kid,
    })?;
    let payload = serde_json::to_vec(claims)?;
    let mut out = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 100);
    B64.encode_string(&header, &mut out);
    out.push('.');
    B64.encode_string(&payload, &mut out);
    let signature = signer.sign(out.as_bytes())?;
    out.push('.');
    B64.encode_string(&signature, &mut out);
    Ok(out)
}

/// SHA-256 as lowercase hex: for secrets at rest and token fingerprints.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&openssl::sha::sha256(data))
}

/// Lowercase hex, in one allocation (it runs on every request: hashes in
/// the audit record and its chain).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_the_lowercase_digest() {
        // FIPS 180-2 test vector "abc".
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
    }

    #[test]
    fn typ_comparison_follows_rfc7515() {
        assert_eq!(normalise_typ("application/AT+JWT"), "at+jwt");
        assert_eq!(normalise_typ("oauth-id-jag+jwt"), "oauth-id-jag+jwt");
    }

    #[test]
    fn every_alg_signs_and_verifies_its_own_key() {
        for alg in Alg::ALL {
            let jwk = alg.generate().unwrap();
            let signer = alg.signer(&jwk).unwrap();
            let token = sign_compact(signer.as_ref(), alg, "k", "at+jwt", &serde_json::json!({"a":1})).unwrap();
            let jws = UnverifiedJws::parse(&token).unwrap();
            let verifier = alg.verifier(&jwk.to_public_key().unwrap()).unwrap();
            assert!(jws.verify(verifier.as_ref()), "{alg}");
            assert_eq!(jws.header.media_type().as_deref(), Some("at+jwt"));
        }
    }

    #[test]
    fn a_key_never_verifies_under_another_alg_family() {
        let ec = Alg::ES256.generate().unwrap().to_public_key().unwrap();
        assert!(Alg::RS256.verifier(&ec).is_err());
        assert!(Alg::EdDSA.verifier(&ec).is_err());
        assert!(Alg::ES384.verifier(&ec).is_err());
    }

    #[test]
    fn tampered_payload_fails_verification() {
        let jwk = Alg::ES256.generate().unwrap();
        let signer = Alg::ES256.signer(&jwk).unwrap();
        let token = sign_compact(
            signer.as_ref(),
            Alg::ES256,
            "k",
            "JWT",
            &serde_json::json!({"sub":"alice"}),
        )
        .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = B64.encode(br#"{"sub":"mallory"}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        let jws = UnverifiedJws::parse(&forged).unwrap();
        let verifier = Alg::ES256.verifier(&jwk.to_public_key().unwrap()).unwrap();
        assert!(!jws.verify(verifier.as_ref()));
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1 example key and its thumbprint.
        let jwk = Jwk::from_bytes(br#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#).unwrap();
        assert_eq!(thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
