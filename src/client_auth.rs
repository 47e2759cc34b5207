//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2).
//!
//! Owns: `client_secret_basic` (percent-decoded, RFC 6749 §2.3.1),
//! `client_secret_post`, `private_key_jwt` (OIDC Core §9) with single-use
//! `jti`; refusing two methods in one request; constant-time secret checks.
//! Also: which configured client a failed request named (`named_client`),
//! for the noise summaries.
//! Must never: log or echo a secret or an assertion; reveal whether a client
//! id exists (unknown client and wrong secret get the same answer).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::jose::UnverifiedJws;
use crate::params::OAuthParams;
use crate::policy::{AuthMethod, Client, Policy};
use crate::store::ReplayMark;
use crate::trust::validate::{Expect, Validator};
use crate::types::CLIENT_ASSERTION_TYPE_JWT_BEARER;

/// The credentials a request presented, before checking them.
enum Presented<'a> {
    Basic { id: String, secret: SecretString },
    Post { id: &'a str, secret: &'a str },
    Assertion { id: Option<&'a str>, assertion: &'a str },
    None,
}

/// Which method authenticated the client, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Basic,
    Post,
    PrivateKeyJwt,
}

impl Method {
    /// Its name in RFC 8414 / RFC 7591 (`token_endpoint_auth_method`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Basic => "client_secret_basic",
            Method::Post => "client_secret_post",
            Method::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

fn fail(reason: &'static str, basic: bool) -> OAuthError {
    OAuthError::invalid_client(reason, "client authentication failed").with_basic_challenge(basic)
}

fn presented<'a>(authorization: Option<&str>, params: &'a OAuthParams) -> OAuthResult<Presented<'a>> {
    let basic = match authorization {
        None => None,
        Some(v) => {
            let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_request(
                    "client_auth.unsupported_scheme",
                    "only HTTP Basic client authentication is accepted in the Authorization header",
                ));
            }
            let decoded = STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| fail("client_auth.malformed_header", true))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| fail("client_auth.malformed_header", true))?;
            // RFC 6749 §2.3.1: both parts are form-encoded before base64.
            let decode = |s: &str| percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
            let id = decode(id).map_err(|_| fail("client_auth.malformed_header", true))?;
            let secret = decode(secret).map_err(|_| fail("client_auth.malformed_header", true))?;
            Some((id, SecretString::from(secret)))
        }
    };
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    let assertion = params.get("client_assertion");
    let assertion_type = params.get("client_assertion_type");
    let methods = usize::from(basic.is_some()) + usize::from(body_secret.is_some()) + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "client_auth.multiple_methods",
            "use exactly one client authentication method (RFC 6749 §2.3)",
        ));
    }
    if assertion.is_some() != assertion_type.is_some() {
        return Err(OAuthError::invalid_request(
            "client_auth.assertion_type",
            "client_assertion and client_assertion_type go together",
        ));
    }
    if let Some((id, secret)) = basic {
        // Interop: some clients repeat client_id in the body; it must agree.
        if body_id.is_some_and(|b| b != id) {
            return Err(OAuthError::invalid_request(
                "client_auth.client_id_mismatch",
                "client_id in the body differs from the Authorization header",
            ));
        }
        return Ok(Presented::Basic { id, secret });
    }
    if let Some(secret) = body_secret {
        let id = body_id.ok_or_else(|| {
            OAuthError::invalid_request("client_auth.missing_client_id", "client_secret requires client_id")
        })?;
        return Ok(Presented::Post { id, secret });
    }
    if let Some(assertion) = assertion {
        if assertion_type != Some(CLIENT_ASSERTION_TYPE_JWT_BEARER) {
            return Err(OAuthError::invalid_request(
                "client_auth.assertion_type",
                format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE_JWT_BEARER}"),
            ));
        }
        return Ok(Presented::Assertion { id: body_id, assertion });
    }
    Ok(Presented::None)
}

/// Authenticate the client. A `private_key_jwt` assertion's `jti` is added
/// to `marks`, to be consumed atomically with the request's audit record.
pub async fn authenticate(
    validator: &Validator<'_>,
    authorization: Option<&str>,
    params: &OAuthParams,
    marks: &mut Vec<ReplayMark>,
) -> OAuthResult<(Arc<Client>, Method)> {
    let policy: &Policy = validator.policy;
    match presented(authorization, params)? {
        Presented::None => Err(OAuthError::invalid_client(
            "client_auth.missing",
            "client authentication is required (client_secret_basic, client_secret_post or private_key_jwt)",
        )),
        Presented::Basic { id, secret } => {
            let client = check_secret(policy, &id, secret.expose_secret(), Method::Basic)
                .map_err(|e| e.with_basic_challenge(true))?;
            Ok((client, Method::Basic))
        }
        Presented::Post { id, secret } => Ok((check_secret(policy, id, secret, Method::Post)?, Method::Post)),
        Presented::Assertion { id, assertion } => {
            // RFC 7523 §3: sub (= iss) names the client; read it unverified
            // only to find whose keys verify it.
            let jws = UnverifiedJws::parse(assertion).map_err(|_| fail("client_assertion.malformed", false))?;
            let claimed = jws
                .payload
                .get("sub")
                .and_then(|s| s.as_str())
                .ok_or_else(|| fail("client_assertion.malformed", false))?;
            // Every refusal below spends one signature check, as a known
            // client with a wrong key does: timing reveals no client id.
            let refuse = |reason| {
                jws.verify_decoy();
                fail(reason, false)
            };
            if id.is_some_and(|id| id != claimed) {
                return Err(refuse("client_assertion.client_id_mismatch"));
            }
            let client = policy
                .clients
                .get(claimed)
                .cloned()
                .ok_or_else(|| refuse("client_auth.unknown_client"))?;
            if !matches!(client.auth, AuthMethod::PrivateKeyJwt { .. }) {
                return Err(refuse("client_auth.method_not_allowed"));
            }
            let verified = validator
                .validate(assertion, Expect::ClientAssertion { client: &client })
                .await
                .map_err(|r| {
                    if !r.unavailable {
                        tracing::info!(client_id = %client.id, reason = r.reason, detail = %r.detail, "client assertion refused");
                    }
                    r.into_opaque_error(ErrorCode::InvalidClient, "client authentication failed")
                })?;
            let jti = verified.claims.jti.unwrap_or_default();
            marks.push(ReplayMark {
                key: format!("client_assertion:{}:{jti}", client.id),
                expires_at: verified.exp + policy.tokens.clock_skew_secs,
                authenticates: true,
            });
            Ok((client, Method::PrivateKeyJwt))
        }
    }
}

/// The configured client a request named, whether or not it authenticated:
/// the Basic user, the body's `client_id`, or a client assertion's
/// (unverified) `sub`. Only for the noise summaries (who is being guessed
/// at); only the id of a configured client, so no attacker-chosen text is
/// kept. Reads no secret and verifies nothing.
pub fn named_client(policy: &Policy, authorization: Option<&str>, params: &OAuthParams) -> Option<String> {
    let id = match presented(authorization, params) {
        Ok(Presented::Basic { id, .. }) => Some(id),
        Ok(Presented::Post { id, .. }) => Some(id.to_owned()),
        Ok(Presented::Assertion { id: Some(id), .. }) => Some(id.to_owned()),
        Ok(Presented::Assertion { id: None, assertion }) => UnverifiedJws::parse(assertion)
            .ok()
            .and_then(|j| j.payload.get("sub").and_then(|s| s.as_str()).map(str::to_owned)),
        Ok(Presented::None) | Err(_) => params.get("client_id").map(str::to_owned),
    }?;
    policy.clients.contains_key(&id).then_some(id)
}

fn check_secret(policy: &Policy, id: &str, secret: &str, method: Method) -> OAuthResult<Arc<Client>> {
    let presented_hash = openssl::sha::sha256(secret.as_bytes());
    let Some(client) = policy.clients.get(id) else {
        return Err(fail("client_auth.unknown_client", false));
    };
    let AuthMethod::Secret { sha256, basic, post } = &client.auth else {
        return Err(fail("client_auth.method_not_allowed", false));
    };
    let allowed = match method {
        Method::Basic => *basic,
        Method::Post => *post,
        Method::PrivateKeyJwt => false,
    };
    // Constant time: the comparison must not reveal how much of a guess matched.
    if !openssl::memcmp::eq(&presented_hash, sha256) {
        return Err(fail("client_auth.bad_secret", false));
    }
    if !allowed {
        return Err(fail("client_auth.method_not_allowed", false));
    }
    Ok(client.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, KeysConfig, UpstreamConfig};
    use crate::jose::{Alg, VERIFICATIONS, sign_compact};
    use crate::keys::KeyRing;
    use crate::trust::jwks::JwksCache;

    /// An assertion for `client` signed by a key nobody registered, with
    /// header `kid`.
    fn assertion(client: &str, kid: &str, issuer: &str) -> String {
        let jwk = Alg::ES256.generate().unwrap();
        let signer = Alg::ES256.signer(&jwk).unwrap();
        let now = crate::types::now_secs();
        let claims = serde_json::json!({
            "iss": client, "sub": client, "aud": issuer, "iat": now, "exp": now + 60,
            "jti": uuid::Uuid::now_v7().to_string(),
        });
        sign_compact(signer.as_ref(), Alg::ES256, kid, "JWT", &claims).unwrap()
    }

    /// What one authentication attempt costs in signature checks, and its
    /// refusal reason.
    async fn attempt(validator: &Validator<'_>, assertion: &str) -> (usize, &'static str) {
        let body = format!("client_assertion_type={CLIENT_ASSERTION_TYPE_JWT_BEARER}&client_assertion={assertion}");
        let params = OAuthParams::parse(body.as_bytes()).unwrap();
        VERIFICATIONS.with(|n| n.set(0));
        let err = authenticate(validator, None, &params, &mut Vec::new())
            .await
            .err()
            .unwrap();
        assert_eq!(err.code, ErrorCode::InvalidClient);
        (VERIFICATIONS.with(|n| n.get()), err.reason)
    }

    /// No client enumeration by timing: an unknown client id, a secret
    /// client, a known client's unknown key and its wrong key all cost
    /// exactly one signature check (the benchmark `client_auth` measures
    /// the same paths in time).
    #[tokio::test]
    async fn every_private_key_jwt_refusal_costs_one_signature_check() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/broker.toml");
        let mut config = Config::load(&path).unwrap();
        config.keys = KeysConfig {
            ephemeral: true,
            ..KeysConfig::default()
        };
        let policy = config.resolve("test").unwrap();
        let keys = KeyRing::from_config(&config.keys, None).unwrap();
        let jwks = JwksCache::new(UpstreamConfig::default()).unwrap();
        let validator = Validator {
            policy: &policy,
            keys: &keys,
            jwks: &jwks,
            verified: &crate::trust::verified_cache::VerifiedCache::off(),
            now: crate::types::now_secs(),
        };
        let iss = policy.issuer.clone();
        let cases = [
            (assertion("no-such-client", "k", &iss), "client_auth.unknown_client"),
            (assertion("chat-app", "k", &iss), "client_auth.method_not_allowed"),
            (assertion("reporting-bot", "no-such-kid", &iss), "token.unknown_key"),
            (assertion("reporting-bot", "reporting-bot-1", &iss), "token.signature"),
        ];
        for (token, reason) in cases {
            assert_eq!(attempt(&validator, &token).await, (1, reason));
        }
    }
}
