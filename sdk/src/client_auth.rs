//! How the SDK authenticates as a client at a token or audit endpoint.
//!
//! Owns: `client_secret_basic` (RFC 6749 §2.3.1: id and secret
//! form-encoded, then Base64) and `private_key_jwt` (RFC 7523 §2.2: a fresh,
//! single-use, short-lived assertion per request, `aud` the server's
//! issuer), the key loaded from PEM or a JWK.
//! Must never: print a secret or a private key (`Debug` redacts), reuse an
//! assertion, or send a secret anywhere but the `Authorization` header.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64_STD;
use josekit::jwk::Jwk;
use josekit::jws::JwsSigner;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::alg::Alg;
use crate::http::Authorization;
use crate::jws::sign_compact;

/// RFC 7523 §2.2's `client_assertion_type`.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid: one request's worth.
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// Why client credentials could not be loaded or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    #[error("the private key is not a PEM EC (P-256, P-384), RSA or Ed25519 private key")]
    UnsupportedKey,
    #[error("the JWK is not a usable private signing key")]
    InvalidJwk,
    #[error("the client assertion could not be signed")]
    Signing,
}

/// A client's credentials at one authorization server.
#[derive(Clone)]
pub struct ClientAuth {
    client_id: String,
    method: Method,
}

#[derive(Clone)]
enum Method {
    SecretBasic(SecretString),
    PrivateKeyJwt {
        alg: Alg,
        kid: Option<String>,
        signer: Arc<dyn JwsSigner>,
    },
}

/// What a request carries to authenticate.
pub(crate) enum Credentials {
    /// The `Authorization` header value.
    Basic(String),
    /// `client_assertion` (with `client_assertion_type` and `client_id`).
    Assertion(String),
}

impl Credentials {
    /// Put the credentials where they go: the Basic header (returned), or
    /// the assertion's parameters appended to `form` (RFC 7523 §2.2).
    pub(crate) fn attach<'a>(&'a self, client_id: &'a str, form: &mut Vec<(&'a str, &'a str)>) -> Authorization<'a> {
        match self {
            Credentials::Basic(header) => Authorization::Header(header),
            Credentials::Assertion(assertion) => {
                form.push(("client_id", client_id));
                form.push(("client_assertion_type", ASSERTION_TYPE));
                form.push(("client_assertion", assertion));
                Authorization::None
            }
        }
    }
}

impl ClientAuth {
    /// `client_secret_basic` (RFC 6749 §2.3.1).
    pub fn secret_basic(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            method: Method::SecretBasic(SecretString::from(secret.into())),
        }
    }

    /// `private_key_jwt` with a PEM private key (PKCS#8, or SEC1 / PKCS#1):
    /// ES256 for P-256, ES384 for P-384, RS256 for RSA, EdDSA for Ed25519.
    /// `kid` is sent in the assertion's header when given, so the server
    /// picks the key without trying each.
    pub fn private_key_jwt_pem(
        client_id: impl Into<String>,
        pem: &[u8],
        kid: Option<&str>,
    ) -> Result<Self, ClientAuthError> {
        let alg = Alg::for_pem(pem).ok_or(ClientAuthError::UnsupportedKey)?;
        let signer = alg.signer_from_pem(pem).map_err(|_| ClientAuthError::UnsupportedKey)?;
        Ok(Self {
            client_id: client_id.into(),
            method: Method::PrivateKeyJwt {
                alg,
                kid: kid.map(str::to_owned),
                signer,
            },
        })
    }

    /// `private_key_jwt` with a private JWK (RFC 7517) as JSON; its `alg` (or
    /// its key type) chooses the algorithm, its `kid` goes in the header.
    pub fn private_key_jwt_jwk(client_id: impl Into<String>, jwk_json: &str) -> Result<Self, ClientAuthError> {
        let jwk = Jwk::from_bytes(jwk_json.as_bytes()).map_err(|_| ClientAuthError::InvalidJwk)?;
        let alg = Alg::for_key(&jwk).ok_or(ClientAuthError::InvalidJwk)?;
        let signer = alg.signer(&jwk).map_err(|_| ClientAuthError::InvalidJwk)?;
        Ok(Self {
            client_id: client_id.into(),
            method: Method::PrivateKeyJwt {
                alg,
                kid: jwk.key_id().map(str::to_owned),
                signer,
            },
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The credentials for one request to the server whose issuer is
    /// `audience`.
    pub(crate) fn credentials(&self, audience: &str) -> Result<Credentials, ClientAuthError> {
        match &self.method {
            Method::SecretBasic(secret) => {
                let pair = format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(secret.expose_secret())
                );
                Ok(Credentials::Basic(format!("Basic {}", B64_STD.encode(pair))))
            }
            Method::PrivateKeyJwt { alg, kid, signer } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut header = json!({"alg": alg.name(), "typ": "JWT"});
                if let Some(kid) = kid {
                    header["kid"] = json!(kid);
                }
                // RFC 7523 §3: iss = sub = the client; aud the server; a
                // unique jti (the broker spends it: one use only).
                let claims = json!({
                    "iss": self.client_id, "sub": self.client_id, "aud": audience,
                    "iat": now, "exp": now + ASSERTION_LIFETIME_SECS,
                    "jti": uuid::Uuid::new_v4().to_string(),
                });
                sign_compact(&header, &claims, signer.as_ref())
                    .map(Credentials::Assertion)
                    .map_err(|_| ClientAuthError::Signing)
            }
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match &self.method {
            Method::SecretBasic(_) => "client_secret_basic",
            Method::PrivateKeyJwt { .. } => "private_key_jwt",
        };
        f.debug_struct("ClientAuth")
            .field("client_id", &self.client_id)
            .field("method", &method)
            .finish_non_exhaustive()
    }
}

/// RFC 6749 §2.3.1 / Appendix B: `application/x-www-form-urlencoded`,
/// except that a space becomes `%20`, never `+` (the broker percent-decodes
/// Basic credentials and does not read `+` as a space, specs/decisions.md
/// §9). Unreserved characters stay as they are.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::UnverifiedJws;

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        let auth = ClientAuth::secret_basic("my client", "s3cr:t+/=");
        let Credentials::Basic(header) = auth.credentials("https://b").unwrap() else {
            panic!("basic")
        };
        let decoded = String::from_utf8(B64_STD.decode(header.strip_prefix("Basic ").unwrap()).unwrap()).unwrap();
        assert_eq!(decoded, "my%20client:s3cr%3At%2B%2F%3D");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let auth = ClientAuth::secret_basic("c", "very-secret-value");
        assert!(!format!("{auth:?}").contains("very-secret"));
    }

    #[test]
    fn each_request_gets_a_fresh_assertion_for_the_server() {
        let key = Jwk::generate_ec_key(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
        let mut private = key.clone();
        private.set_key_id("k1");
        let auth = ClientAuth::private_key_jwt_jwk("bot", &private.to_string()).unwrap();
        let assertion = |auth: &ClientAuth| match auth.credentials("https://broker").unwrap() {
            Credentials::Assertion(a) => a,
            Credentials::Basic(_) => panic!("assertion"),
        };
        let (a, b) = (assertion(&auth), assertion(&auth));
        let (ja, jb) = (UnverifiedJws::parse(&a).unwrap(), UnverifiedJws::parse(&b).unwrap());
        assert_eq!(ja.header.alg, "ES256");
        assert_eq!(ja.header.kid.as_deref(), Some("k1"));
        assert_eq!(ja.payload["iss"], "bot");
        assert_eq!(ja.payload["sub"], "bot");
        assert_eq!(ja.payload["aud"], "https://broker");
        assert_ne!(ja.payload["jti"], jb.payload["jti"], "single use");
        let verifier = Alg::ES256.verifier(&key.to_public_key().unwrap()).unwrap();
        assert!(ja.verify(verifier.as_ref()));
    }

    #[test]
    fn a_pem_key_chooses_its_algorithm() {
        let ec =
            openssl::ec::EcKey::generate(&openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap())
                .unwrap();
        let pem = openssl::pkey::PKey::from_ec_key(ec)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        let auth = ClientAuth::private_key_jwt_pem("svc", &pem, Some("k")).unwrap();
        let Credentials::Assertion(a) = auth.credentials("https://b").unwrap() else {
            panic!("assertion")
        };
        assert_eq!(UnverifiedJws::parse(&a).unwrap().header.alg, "ES384");
        assert_eq!(
            ClientAuth::private_key_jwt_pem("svc", b"not a key", None).err(),
            Some(ClientAuthError::UnsupportedKey)
        );
    }
}
