//! The signature algorithms the SDK will verify or sign with.
//!
//! Owns: the allow-list (asymmetric algorithms only) and building josekit
//! verifiers and signers from JWKs.
//! Must never: offer `none` or an HMAC algorithm. With only asymmetric keys
//! there is nothing for an alg-confusion attack (RFC 8725 §2.1, §3.1) to
//! confuse: a public key can never be used as a shared secret.

use std::fmt;
use std::sync::Arc;

use josekit::jwk::Jwk;
use josekit::jws::{JwsSigner, JwsVerifier};

/// A JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1). `none` and `HS*` are not
/// representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

    /// The algorithm a JOSE header names; `None` for anything not listed
    /// (`none`, `HS256`, …).
    pub fn parse(s: &str) -> Option<Alg> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    pub(crate) fn verifier(self, jwk: &Jwk) -> Result<Arc<dyn JwsVerifier>, josekit::JoseError> {
        Ok(match self {
            Alg::ES256 => Arc::new(josekit::jws::ES256.verifier_from_jwk(jwk)?),
            Alg::ES384 => Arc::new(josekit::jws::ES384.verifier_from_jwk(jwk)?),
            Alg::RS256 => Arc::new(josekit::jws::RS256.verifier_from_jwk(jwk)?),
            Alg::PS256 => Arc::new(josekit::jws::PS256.verifier_from_jwk(jwk)?),
            Alg::EdDSA => Arc::new(josekit::jws::EdDSA.verifier_from_jwk(jwk)?),
        })
    }

    pub(crate) fn signer(self, jwk: &Jwk) -> Result<Arc<dyn JwsSigner>, josekit::JoseError> {
        Ok(match self {
            Alg::ES256 => Arc::new(josekit::jws::ES256.signer_from_jwk(jwk)?),
            Alg::ES384 => Arc::new(josekit::jws::ES384.signer_from_jwk(jwk)?),
            Alg::RS256 => Arc::new(josekit::jws::RS256.signer_from_jwk(jwk)?),
            Alg::PS256 => Arc::new(josekit::jws::PS256.signer_from_jwk(jwk)?),
            Alg::EdDSA => Arc::new(josekit::jws::EdDSA.signer_from_jwk(jwk)?),
        })
    }

    pub(crate) fn signer_from_pem(self, pem: &[u8]) -> Result<Arc<dyn JwsSigner>, josekit::JoseError> {
        Ok(match self {
            Alg::ES256 => Arc::new(josekit::jws::ES256.signer_from_pem(pem)?),
            Alg::ES384 => Arc::new(josekit::jws::ES384.signer_from_pem(pem)?),
            Alg::RS256 => Arc::new(josekit::jws::RS256.signer_from_pem(pem)?),
            Alg::PS256 => Arc::new(josekit::jws::PS256.signer_from_pem(pem)?),
            Alg::EdDSA => Arc::new(josekit::jws::EdDSA.signer_from_pem(pem)?),
        })
    }

    /// The algorithm a PEM private key signs with: EC keys by curve, RSA as
    /// RS256, Ed25519 as EdDSA; `None` for anything else.
    pub(crate) fn for_pem(pem: &[u8]) -> Option<Alg> {
        use openssl::nid::Nid;
        use openssl::pkey::{Id, PKey};
        let key = PKey::private_key_from_pem(pem).ok()?;
        match key.id() {
            Id::EC => match key.ec_key().ok()?.group().curve_name()? {
                Nid::X9_62_PRIME256V1 => Some(Alg::ES256),
                Nid::SECP384R1 => Some(Alg::ES384),
                _ => None,
            },
            Id::RSA => Some(Alg::RS256),
            Id::ED25519 => Some(Alg::EdDSA),
            _ => None,
        }
    }

    /// The algorithm a private key signs with when its JWK names none: EC
    /// keys by curve, RSA as RS256, Ed25519 as EdDSA.
    pub(crate) fn for_key(jwk: &Jwk) -> Option<Alg> {
        if let Some(named) = jwk.algorithm() {
            return Alg::parse(named);
        }
        let crv = jwk.parameter("crv").and_then(|c| c.as_str());
        match (jwk.key_type(), crv) {
            ("EC", Some("P-256")) => Some(Alg::ES256),
            ("EC", Some("P-384")) => Some(Alg::ES384),
            ("RSA", _) => Some(Alg::RS256),
            ("OKP", Some("Ed25519")) => Some(Alg::EdDSA),
            _ => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_hmac_are_not_algorithms_here() {
        for name in ["none", "None", "HS256", "HS384", "HS512", "es256", ""] {
            assert_eq!(Alg::parse(name), None, "{name}");
        }
        for alg in Alg::ALL {
            assert_eq!(Alg::parse(alg.name()), Some(alg));
        }
    }

    #[test]
    fn a_key_without_alg_signs_with_its_family() {
        let ec = Jwk::generate_ec_key(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
        assert_eq!(Alg::for_key(&ec), Some(Alg::ES256));
        let ed = Jwk::generate_ed_key(josekit::jwk::alg::ed::EdCurve::Ed25519).unwrap();
        assert_eq!(Alg::for_key(&ed), Some(Alg::EdDSA));
        let mut named = ec.clone();
        named.set_algorithm("HS256");
        assert_eq!(Alg::for_key(&named), None, "a JWK naming HMAC is refused");
    }
}
