//! Compact JWS (RFC 7515 §7.1): split and verify an inbound token, sign an
//! outbound assertion.
//!
//! Owns: the size bound on inbound tokens, decoding of the three parts, the
//! JOSE header members read (`alg`, `typ`, `kid`, `crit`, and `jwk` for a
//! DPoP proof), and `typ` normalisation (RFC 7515 §4.1.9).
//! Must never: decide whether a token is acceptable (that is `validator`,
//! and `dpop` for a proof), pick a key from a token's header (`jku`, `x5u`,
//! `jwk`: RFC 8725 §3.10; only `dpop` reads `jwk`, from a proof), or put
//! token content into an error.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use josekit::jws::{JwsSigner, JwsVerifier};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Generous for any real JWT (the broker refuses larger ones too), small
/// enough that a hostile one costs nothing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The JOSE header members the SDK reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    /// RFC 7515 §4.1.11: we understand no extension, so any `crit` refuses.
    #[serde(default)]
    pub crit: Option<Value>,
    /// An embedded public key. Read by `dpop` only, where a proof carries the
    /// key it is signed with by design (RFC 9449 §4.2) and what is trusted is
    /// its thumbprint, never the key; for every other token it is ignored,
    /// never a key source (RFC 8725 §3.10). Kept as any JSON value, so that
    /// its shape never changes how an access token parses.
    #[serde(default)]
    pub jwk: Option<Value>,
}

impl Header {
    /// `typ` lowercased without an `application/` prefix (RFC 7515 §4.1.9).
    pub fn media_type(&self) -> Option<String> {
        self.typ.as_deref().map(|t| {
            let lower = t.to_ascii_lowercase();
            match lower.strip_prefix("application/") {
                Some(rest) => rest.to_owned(),
                None => lower,
            }
        })
    }
}

/// Why a string is not a compact JWS at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedJws {
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token is not a compact JWS (three dot-separated parts)")]
    NotCompact,
    #[error("a token part is not base64url")]
    Base64,
    #[error("the token header is not a JOSE header")]
    Header,
    #[error("the token payload is not a JSON object")]
    Payload,
}

/// A compact JWS split into its parts; nothing in it is trusted yet.
pub(crate) struct UnverifiedJws<'a> {
    pub header: Header,
    pub payload: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> UnverifiedJws<'a> {
    pub fn parse(token: &'a str) -> Result<Self, MalformedJws> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(MalformedJws::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(MalformedJws::NotCompact);
        };
        let header_bytes = B64.decode(h).map_err(|_| MalformedJws::Base64)?;
        let payload_bytes = B64.decode(p).map_err(|_| MalformedJws::Base64)?;
        let signature = B64.decode(s).map_err(|_| MalformedJws::Base64)?;
        let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| MalformedJws::Header)?;
        let payload = match serde_json::from_slice(&payload_bytes) {
            Ok(Value::Object(map)) => map,
            _ => return Err(MalformedJws::Payload),
        };
        Ok(Self {
            header,
            payload,
            signing_input: &token[..h.len() + 1 + p.len()],
            signature,
        })
    }

    pub fn verify(&self, verifier: &dyn JwsVerifier) -> bool {
        verifier.verify(self.signing_input.as_bytes(), &self.signature).is_ok()
    }
}

/// Sign `claims` as a compact JWS with this `header` (which must name the
/// signer's `alg`).
pub(crate) fn sign_compact(header: &Value, claims: &Value, signer: &dyn JwsSigner) -> Result<String, String> {
    let h = B64.encode(serde_json::to_vec(header).map_err(|e| e.to_string())?);
    let p = B64.encode(serde_json::to_vec(claims).map_err(|e| e.to_string())?);
    let input = format!("{h}.{p}");
    let signature = signer.sign(input.as_bytes()).map_err(|e| e.to_string())?;
    Ok(format!("{input}.{}", B64.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Alg;
    use josekit::jwk::Jwk;
    use serde_json::json;

    fn key() -> Jwk {
        Jwk::generate_ec_key(josekit::jwk::alg::ec::EcCurve::P256).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_a_tampered_one_does_not() {
        let k = key();
        let token = sign_compact(
            &json!({"alg": "ES256", "typ": "at+jwt"}),
            &json!({"sub": "alice"}),
            Alg::ES256.signer(&k).unwrap().as_ref(),
        )
        .unwrap();
        let verifier = Alg::ES256.verifier(&k.to_public_key().unwrap()).unwrap();
        let jws = UnverifiedJws::parse(&token).unwrap();
        assert!(jws.verify(verifier.as_ref()));
        assert_eq!(jws.header.media_type().as_deref(), Some("at+jwt"));
        let other = Alg::ES256.verifier(&key().to_public_key().unwrap()).unwrap();
        assert!(!jws.verify(other.as_ref()), "another key");
        let (head, _) = token.rsplit_once('.').unwrap();
        let forged_payload = B64.encode(br#"{"sub":"mallory"}"#);
        let h = head.split('.').next().unwrap();
        let sig = token.rsplit('.').next().unwrap();
        let forged = format!("{h}.{forged_payload}.{sig}");
        assert!(!UnverifiedJws::parse(&forged).unwrap().verify(verifier.as_ref()));
    }

    #[test]
    fn typ_compares_without_case_or_application_prefix() {
        let h: Header = serde_json::from_value(json!({"alg": "ES256", "typ": "application/AT+JWT"})).unwrap();
        assert_eq!(h.media_type().as_deref(), Some("at+jwt"));
    }

    #[test]
    fn what_is_not_a_compact_jws_is_named() {
        let b = |v: &str| B64.encode(v);
        let ok_header = b(r#"{"alg":"ES256"}"#);
        for (token, err) in [
            ("a.b".to_owned(), MalformedJws::NotCompact),
            ("a.b.c.d".to_owned(), MalformedJws::NotCompact),
            (format!("{ok_header}.!!.c"), MalformedJws::Base64),
            (format!("{}.{}.", b("[]"), b("{}")), MalformedJws::Header),
            (format!("{ok_header}.{}.", b("[1]")), MalformedJws::Payload),
            ("a".repeat(MAX_TOKEN_BYTES + 1), MalformedJws::TooLarge),
        ] {
            assert_eq!(UnverifiedJws::parse(&token).err(), Some(err));
        }
    }
}
