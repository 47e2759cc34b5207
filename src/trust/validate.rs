//! Validation of every inbound JWT: ID tokens, access tokens, ID-JAGs, client
//! assertions and actor tokens, each by its own mutually exclusive rule
//! (RFC 8725 §3.11–3.12), so none can ever pass as another.
//!
//! Owns: header checks (alg allow-list, `crit`, explicit `typ`), issuer trust
//! by purpose, signature, time (`exp`/`nbf`/`iat` with skew), `sub`, `aud`
//! and `jti` presence; and which kinds of token may skip a signature check
//! already made (`Expect::verified_cache_label`, `trust::verified_cache`).
//! Must never: apply grant policy (scopes, presenter binding, replay marks);
//! callers do that with the typed claims this returns.

use std::sync::Arc;

use crate::claims::{InboundClaims, TYP_ACCESS_TOKEN, TYP_ID_JAG};
use crate::error::{ErrorCode, OAuthError};
use crate::jose::{Alg, UnverifiedJws};
use crate::keys::KeyRing;
use crate::policy::{AuthMethod, Client, KeySource, Policy, Purpose, TrustedIssuer};
use crate::trust::jwks::{JwksCache, KeyLookupError};
use crate::trust::verified_cache::VerifiedCache;

/// What the caller expects the token to be.
#[derive(Clone, Copy)]
pub enum Expect<'a> {
    /// An OIDC ID token whose audience is this client (ID-JAG §4.3.3 step 2).
    IdToken { client_id: &'a str },
    /// An RFC 9068 access token (ours or a trusted issuer's).
    AccessToken,
    /// An ID-JAG presented to us as a resource AS.
    IdJag,
    /// A `private_key_jwt` client assertion (RFC 7523 §3).
    ClientAssertion { client: &'a Client },
    /// An actor token: a JWT from an issuer trusted for `actor`, addressed to us.
    ActorToken,
}

impl Expect<'_> {
    /// The one rule for which tokens `trust::verified_cache` remembers, and
    /// the metric label they are counted under: the subject and actor
    /// tokens a client presents again and again (an MCP server exchanging
    /// one incoming token once per downstream, since each token we issue
    /// has one audience: specs/decisions.md §2 and §24). Never ID-JAGs or
    /// client assertions: each is single-use (a replay mark, RFC 7523 §3),
    /// so remembering it would only take room.
    pub fn verified_cache_label(self) -> Option<&'static str> {
        match self {
            Expect::IdToken { .. } => Some("id_token"),
            Expect::AccessToken => Some("access_token"),
            Expect::ActorToken => Some("actor_token"),
            Expect::IdJag | Expect::ClientAssertion { .. } => None,
        }
    }
}

/// A token that passed every check of its kind.
#[derive(Debug)]
pub struct Verified {
    pub claims: InboundClaims,
    /// The trusted upstream issuer; `None` when we issued the token.
    pub issuer: Option<Arc<TrustedIssuer>>,
    /// Subject, present and non-empty.
    pub sub: String,
    pub exp: i64,
}

/// Why a token was refused. `unavailable` means the check could not be made
/// (keys unreachable) and the request must fail closed with a 503.
#[derive(Debug)]
pub struct Rejected {
    pub reason: &'static str,
    pub detail: String,
    pub unavailable: bool,
}

const UNTRUSTED_ISSUER: &str = "issuer is not trusted";

impl Rejected {
    /// The one mapping of a refused token to an OAuth error. A check that
    /// could not be made is 503 `temporarily_unavailable` (fail closed,
    /// specs/decisions.md §10), whatever the grant; otherwise `code`, with a
    /// description that names which token was refused and why.
    pub fn into_error(self, code: ErrorCode, which: &str) -> OAuthError {
        if self.unavailable {
            return OAuthError::unavailable(self.reason, &self.detail);
        }
        OAuthError::new(code, self.reason, format!("{which} is invalid: {}", self.detail))
    }

    /// As [`Rejected::into_error`], but with a fixed description that says
    /// nothing of the cause (client authentication, RFC 6749 §5.2).
    pub fn into_opaque_error(self, code: ErrorCode, description: &'static str) -> OAuthError {
        if self.unavailable {
            return OAuthError::unavailable(self.reason, &self.detail);
        }
        OAuthError::new(code, self.reason, description)
    }
}

fn reject(reason: &'static str, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
        unavailable: false,
    }
}

pub struct Validator<'a> {
    pub policy: &'a Policy,
    pub keys: &'a KeyRing,
    pub jwks: &'a JwksCache,
    /// Signatures already verified (the instance's, in `AppState`).
    pub verified: &'a VerifiedCache,
    pub now: i64,
}

enum Keys<'a> {
    Ours,
    Source(&'a KeySource, &'a [Alg]),
}

impl Validator<'_> {
    pub async fn validate(&self, token: &str, expect: Expect<'_>) -> Result<Verified, Rejected> {
        self.validate_with_grace(token, expect, 0).await
    }

    /// One of our access tokens that a resource server reports a tool call
    /// made with (`/audit/events`): every check of [`Expect::AccessToken`],
    /// but still accepted up to `grace` seconds after `exp`, since a call
    /// that started before expiry may finish after it. Never a way to use a
    /// token: nothing is issued on it.
    pub async fn validate_reported(&self, token: &str, grace: i64) -> Result<Verified, Rejected> {
        let v = self.validate_with_grace(token, Expect::AccessToken, grace).await?;
        if v.issuer.is_some() {
            return Err(reject("token.not_ours", "the token was not issued by this server"));
        }
        Ok(v)
    }

    async fn validate_with_grace(&self, token: &str, expect: Expect<'_>, grace: i64) -> Result<Verified, Rejected> {
        let jws = UnverifiedJws::parse(token).map_err(|e| reject("token.malformed", e.to_string()))?;
        let alg = Alg::parse(&jws.header.alg).ok_or_else(|| {
            reject(
                "token.alg_not_allowed",
                format!("alg {:?} is not allowed", jws.header.alg),
            )
        })?;
        if jws.header.crit.is_some() {
            return Err(reject(
                "token.crit",
                "token uses critical header extensions we do not understand",
            ));
        }
        check_typ(jws.header.media_type().as_deref(), expect)?;
        let claims: InboundClaims = serde_json::from_value(serde_json::Value::Object(jws.payload.clone()))
            .map_err(|e| reject("token.claims_malformed", format!("claims are malformed: {e}")))?;

        // Who signed it, and may they vouch for this kind of token?
        let (issuer, keys) = self.key_source(&claims.iss, expect)?;
        let verifier = match keys {
            Keys::Ours => {
                let kid = jws
                    .header
                    .kid
                    .as_deref()
                    .ok_or_else(|| reject("token.unknown_key", "token has no kid"))?;
                match self.keys.verifier(kid) {
                    Some((key_alg, v)) if *key_alg == alg => v.clone(),
                    _ => return Err(reject("token.unknown_key", "no key of ours matches kid and alg")),
                }
            }
            Keys::Source(source, algs) => {
                if !algs.contains(&alg) {
                    return Err(reject(
                        "token.alg_not_allowed",
                        format!("alg {alg} is not allowed for this issuer"),
                    ));
                }
                self.jwks
                    .verifier(source, algs, jws.header.kid.as_deref(), alg)
                    .await
                    .map_err(|e| match e {
                        KeyLookupError::UnknownKey => {
                            // A client's unknown key costs what a wrong key
                            // costs: no enumeration of keys by timing.
                            if matches!(expect, Expect::ClientAssertion { .. }) {
                                jws.verify_decoy();
                            }
                            reject("token.unknown_key", "no trusted key matches the token's kid and alg")
                        }
                        KeyLookupError::Unavailable(cause) => Rejected {
                            reason: "keys.unavailable",
                            detail: cause,
                            unavailable: true,
                        },
                    })?
            }
        };
        // The signature, unless this very verifier already accepted these
        // very bytes (SHA-256 of the whole token). Only the signature check
        // is skipped on a hit: every check below runs, at this request's
        // `now`, whatever the cache says.
        let label = expect.verified_cache_label();
        let fingerprint = label.and_then(|_| self.verified.fingerprint(token));
        let hit = match (&fingerprint, label) {
            (Some(fp), Some(label)) => self.verified.verified_by(fp, &verifier, label),
            _ => false,
        };
        if !hit && !jws.verify(verifier.as_ref()) {
            return Err(reject("token.signature", "signature verification failed"));
        }

        let skew = self.policy.tokens.clock_skew_secs;
        let exp = claims.exp.ok_or_else(|| reject("token.no_exp", "token has no exp"))?;
        if exp.saturating_add(skew).saturating_add(grace) <= self.now {
            return Err(reject("token.expired", "token has expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf - skew > self.now) {
            return Err(reject("token.not_yet_valid", "token is not yet valid (nbf)"));
        }
        match claims.iat {
            Some(iat) if iat - skew > self.now => {
                return Err(reject("token.iat_in_future", "token was issued in the future (iat)"));
            }
            None if !matches!(expect, Expect::ClientAssertion { .. } | Expect::ActorToken) => {
                return Err(reject("token.no_iat", "token has no iat"));
            }
            _ => {}
        }
        let sub = match claims.sub.as_deref() {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => return Err(reject("token.no_sub", "token has no sub")),
        };
        self.check_audience(&claims, expect)?;
        let needs_jti = matches!(expect, Expect::IdJag | Expect::ClientAssertion { .. }) || issuer.is_none();
        if needs_jti && claims.jti.as_deref().is_none_or(str::is_empty) {
            return Err(reject("token.no_jti", "token has no jti"));
        }
        // An upstream token that lives longer than we keep revocations could
        // outlive a cut-off: refuse it (specs/decisions.md §17).
        if issuer.is_some()
            && matches!(
                expect,
                Expect::IdToken { .. } | Expect::AccessToken | Expect::ActorToken
            )
        {
            let max = self.policy.tokens.max_upstream_token_lifetime_secs;
            if exp > self.now + max + skew {
                return Err(reject(
                    "token.lifetime",
                    format!("token exp is more than {max} s ahead"),
                ));
            }
        }
        if matches!(expect, Expect::IdJag) {
            let max = self.policy.tokens.max_id_jag_lifetime_secs;
            if exp > self.now + max + skew {
                return Err(reject(
                    "id_jag.lifetime",
                    format!("assertion exp is more than {max} s ahead"),
                ));
            }
        }
        if let Expect::ClientAssertion { client } = expect {
            if sub != client.id {
                return Err(reject(
                    "client_assertion.sub",
                    "client assertion sub must be the client_id",
                ));
            }
            let max = self.policy.tokens.max_client_assertion_lifetime_secs;
            if exp > self.now + max + skew {
                return Err(reject(
                    "client_assertion.lifetime",
                    format!("client assertion exp is more than {max} s ahead"),
                ));
            }
        }
        // Remembered only once every check passed, and only until `exp`.
        if let (Some(fp), false) = (fingerprint, hit) {
            self.verified.remember(fp, &verifier, exp);
        }
        Ok(Verified {
            claims,
            issuer,
            sub,
            exp,
        })
    }

    fn key_source<'p>(
        &'p self,
        iss: &str,
        expect: Expect<'p>,
    ) -> Result<(Option<Arc<TrustedIssuer>>, Keys<'p>), Rejected> {
        let ours = iss == self.policy.issuer;
        let purpose = match expect {
            Expect::ClientAssertion { client } => {
                if iss != client.id {
                    return Err(reject(
                        "client_assertion.iss",
                        "client assertion iss must be the client_id",
                    ));
                }
                return match &client.auth {
                    AuthMethod::PrivateKeyJwt { keys } => Ok((None, Keys::Source(keys, &Alg::ALL))),
                    AuthMethod::Secret { .. } => Err(reject(
                        "client_assertion.not_registered",
                        "client has no registered keys",
                    )),
                };
            }
            Expect::AccessToken if ours => return Ok((None, Keys::Ours)),
            Expect::IdJag if ours => {
                return Err(reject(
                    "id_jag.self_issued",
                    "an ID-JAG issued by this server cannot be redeemed here (ID-JAG security considerations)",
                ));
            }
            Expect::IdToken { .. } => Purpose::IdToken,
            Expect::AccessToken => Purpose::AccessToken,
            Expect::IdJag => Purpose::IdJag,
            Expect::ActorToken => Purpose::Actor,
        };
        match self.policy.issuers.get(iss) {
            Some(t) if t.purposes.contains(&purpose) => Ok((Some(t.clone()), Keys::Source(&t.keys, &t.algs))),
            // One description for both: which issuers are trusted for what
            // is configuration and must not leak (ID-JAG §7.2); the audit
            // reason tells them apart.
            Some(_) => Err(reject("token.issuer_purpose", UNTRUSTED_ISSUER)),
            None => Err(reject("token.untrusted_issuer", UNTRUSTED_ISSUER)),
        }
    }

    fn check_audience(&self, claims: &InboundClaims, expect: Expect<'_>) -> Result<(), Rejected> {
        let aud = claims
            .aud
            .as_ref()
            .ok_or_else(|| reject("token.no_aud", "token has no aud"))?;
        let us = [self.policy.issuer.as_str(), self.policy.token_endpoint.as_str()];
        let ok = match expect {
            // OIDC Core §2 and §3.1.3.7: aud contains the client; with
            // several, azp names it; and an azp, when present, is this
            // client whatever aud holds.
            Expect::IdToken { client_id } => {
                aud.contains(client_id)
                    && (aud.single().is_some() || claims.azp.is_some())
                    && claims.azp.as_deref().is_none_or(|azp| azp == client_id)
            }
            Expect::AccessToken => true, // presenter binding is checked by the grant
            // ID-JAG §4.4 (specs/decisions.md §8): exactly our issuer, as a
            // string or a one-element array; anything else is audience injection.
            Expect::IdJag => aud.single() == Some(self.policy.issuer.as_str()),
            // RFC 7523 §3: issuer or token endpoint, which deployed clients
            // send (specs/decisions.md §8); rfc7523bis: a single value.
            Expect::ClientAssertion { .. } | Expect::ActorToken => aud.single().is_some_and(|a| us.contains(&a)),
        };
        if ok {
            Ok(())
        } else {
            Err(reject("token.audience", "token audience is not acceptable here"))
        }
    }
}

/// Explicit typing (RFC 8725 §3.11). ID tokens, client assertions and actor
/// tokens are told apart by audience and issuer purpose as well, since their
/// `typ` is commonly `JWT` or absent.
fn check_typ(typ: Option<&str>, expect: Expect<'_>) -> Result<(), Rejected> {
    let ok = match expect {
        Expect::AccessToken => typ == Some(TYP_ACCESS_TOKEN),
        Expect::IdJag => typ == Some(TYP_ID_JAG),
        Expect::IdToken { .. } | Expect::ActorToken => matches!(typ, None | Some("jwt")),
        Expect::ClientAssertion { .. } => matches!(typ, None | Some("jwt") | Some("client-authentication+jwt")),
    };
    if ok {
        Ok(())
    } else {
        Err(reject(
            "token.typ",
            format!(
                "token typ {:?} is not acceptable for this kind of token",
                typ.unwrap_or("(none)")
            ),
        ))
    }
}
