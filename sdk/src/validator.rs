//! `TokenValidator`: is this bearer token an access token the broker issued
//! for this resource, and what does it say?
//!
//! Owns: the RFC 9068 §4 validation of the broker's `at+jwt` tokens, in
//! order — explicit `typ`, allow-listed `alg`, signature by the broker's
//! published keys, `iss`, `aud`, `exp`/`nbf`/`iat` within a bounded leeway,
//! the required claims, the key binding (`cnf`, RFC 9449 §6.1), the `act`
//! chain — and the typed `Principal` built from them; and which scheme a
//! token may be presented with (RFC 9449 §7.2): a DPoP-bound token only
//! with `DPoP` and a proof by its key (`dpop`), an unbound one only as
//! `Bearer`.
//! Must never: accept `none`, an HMAC or any alg outside the allow-list; a
//! token without `typ: at+jwt` (an ID token or an ID-JAG is not an access
//! token, RFC 9068 §4 and RFC 8725 §3.11); a key named by the token; a
//! bound token without a proof, or a `cnf` it cannot verify (such a token
//! is refused, never taken for a bearer token); or put the token, or any
//! part of it, into an error or a log line.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::act::{self, ActError, MAX_ACT_DEPTH};
use crate::alg::Alg;
use crate::discovery::{AuthorizationServer, DiscoveryError};
use crate::dpop::{DpopConfig, DpopConfigError, DpopError, DpopRequest, DpopVerifier};
use crate::endpoint::{self, EndpointError};
use crate::http::{Http, HttpConfig, TransportError};
use crate::jwks::{JwksCache, JwksSettings, KeyLookup};
use crate::jws::{MalformedJws, UnverifiedJws};
use crate::keyset::DEFAULT_MAX_KEYS;
use crate::principal::Principal;
use crate::traceparent::TraceParent;

/// The media type of an RFC 9068 access token (§2.1), compared without
/// case and without `application/` (RFC 7515 §4.1.9).
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";
/// The default allowed clock difference.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway a validator accepts: more would keep expired tokens
/// alive.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// The largest JWK Set a validator may be configured to accept.
pub const MAX_JWKS_KEYS: usize = 256;

/// Why a token was refused. Never carries the token: a variant names the
/// rule, and at most the claim's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("the token is malformed: {0}")]
    Malformed(#[from] MalformedJws),
    #[error("the token's typ is not at+jwt (RFC 9068 §2.1)")]
    WrongType,
    #[error("the token's alg is not allowed")]
    AlgorithmNotAllowed,
    #[error("the token carries a crit header, which is not understood (RFC 7515 §4.1.11)")]
    CriticalHeader,
    #[error("no key of the broker matches the token's kid and alg")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is not for this resource (aud)")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the token has no {0} claim (RFC 9068 §2.2)")]
    MissingClaim(&'static str),
    #[error("the token's {0} claim is malformed")]
    InvalidClaim(&'static str),
    #[error("the token's act claim is refused: {0}")]
    Act(#[from] ActError),
    /// `cnf` is present but is not `{"jkt": "<thumbprint>"}`, the one
    /// confirmation method the SDK verifies (RFC 9449 §6.1): a binding it
    /// cannot check is never ignored.
    #[error("the token's cnf is not a key binding this resource can verify (RFC 9449 §6.1)")]
    UnsupportedBinding,
    /// A DPoP-bound token presented as a bearer token (RFC 9449 §7.2).
    #[error("the token is bound to a key (cnf.jkt) and must be presented with the DPoP scheme and a proof")]
    KeyBound,
    /// An unbound token presented with the `DPoP` scheme: there is no
    /// binding to verify the proof against (RFC 9449 §7.2).
    #[error("the token is not bound to a key: present it as a bearer token")]
    NotKeyBound,
    /// The token is bound and valid, its DPoP proof is not.
    #[error(transparent)]
    Proof(#[from] DpopError),
    /// The broker's keys could not be obtained: the check could not be
    /// made, so the request fails closed (a 503, not a 401).
    #[error("the broker's keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl ValidationError {
    /// The check could not be made (keys unreachable), as opposed to a bad
    /// token.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ValidationError::KeysUnavailable(_) => true,
            ValidationError::Proof(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// The OAuth error code of the challenge: `invalid_dpop_proof` for a bad
    /// proof, `invalid_token` for everything else (RFC 6750 §3.1,
    /// RFC 9449 §7.1).
    pub fn error_code(&self) -> &'static str {
        match self {
            ValidationError::Proof(e) => e.error_code(),
            _ => "invalid_token",
        }
    }

    /// Whether the refusal is about DPoP (the binding or the proof), so that
    /// it is answered in the `DPoP` challenge (RFC 9449 §7.1).
    pub fn is_dpop(&self) -> bool {
        matches!(
            self,
            ValidationError::KeyBound | ValidationError::NotKeyBound | ValidationError::Proof(_)
        )
    }

    /// A short machine reason (`token.expired`), for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::Malformed(_) => "token.malformed",
            ValidationError::WrongType => "token.typ",
            ValidationError::AlgorithmNotAllowed => "token.alg",
            ValidationError::CriticalHeader => "token.crit",
            ValidationError::UnknownKey => "token.unknown_key",
            ValidationError::BadSignature => "token.signature",
            ValidationError::WrongIssuer => "token.iss",
            ValidationError::WrongAudience => "token.aud",
            ValidationError::Expired => "token.expired",
            ValidationError::NotYetValid => "token.not_yet_valid",
            ValidationError::IssuedInFuture => "token.iat_in_future",
            ValidationError::MissingClaim(_) => "token.missing_claim",
            ValidationError::InvalidClaim(_) => "token.invalid_claim",
            ValidationError::Act(_) => "token.act",
            ValidationError::UnsupportedBinding => "token.cnf",
            ValidationError::KeyBound => "token.dpop_bound",
            ValidationError::NotKeyBound => "token.not_dpop_bound",
            ValidationError::Proof(e) => e.reason(),
            ValidationError::KeysUnavailable(_) => "keys.unavailable",
        }
    }
}

/// Why a validator could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorConfigError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("jwks_uri discovery failed: {0}")]
    Discovery(#[from] DiscoveryError),
    #[error("the broker's metadata has no jwks_uri")]
    NoJwksUri,
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the leeway must be at most {} s", MAX_LEEWAY.as_secs())]
    LeewayTooLarge,
    #[error("the act depth cap must be 1 to {MAX_ACT_DEPTH}")]
    ActDepth,
    #[error("the JWK Set bound must be 1 to {MAX_JWKS_KEYS} keys")]
    MaxKeys,
    #[error("at least one algorithm must be allowed")]
    NoAlgorithm,
    #[error("the minimum refetch interval must be at least 1 s")]
    RefetchInterval,
    #[error("the resource must not be empty")]
    NoResource,
    #[error(transparent)]
    Dpop(#[from] DpopConfigError),
}

/// Configures a [`TokenValidator`].
#[derive(Debug, Clone)]
pub struct ValidatorBuilder {
    issuer: String,
    resource: String,
    jwks_uri: Option<String>,
    algs: Vec<Alg>,
    leeway: Duration,
    max_act_depth: usize,
    max_keys: usize,
    jwks_ttl: Duration,
    min_refetch_interval: Duration,
    http: HttpConfig,
    dpop: DpopConfig,
}

impl ValidatorBuilder {
    /// Where the broker's keys are. Without it, `build` reads `jwks_uri`
    /// from the broker's RFC 8414 metadata.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// The algorithms accepted (default: ES256, what the broker signs with
    /// unless configured otherwise). Only asymmetric algorithms exist here.
    pub fn algorithms(mut self, algs: &[Alg]) -> Self {
        self.algs = algs.to_vec();
        self
    }

    /// Allowed clock difference for `exp`, `nbf` and `iat` (default 30 s, at
    /// most [`MAX_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The deepest `act` chain accepted (default and maximum
    /// [`MAX_ACT_DEPTH`]).
    pub fn max_act_depth(mut self, depth: usize) -> Self {
        self.max_act_depth = depth;
        self
    }

    /// The most keys a JWK Set may hold (default 32, at most
    /// [`MAX_JWKS_KEYS`]).
    pub fn max_jwks_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// How long fetched keys are used before a refetch (default 5 min, as
    /// the broker's `/jwks` `max-age`).
    pub fn jwks_cache_ttl(mut self, ttl: Duration) -> Self {
        self.jwks_ttl = ttl;
        self
    }

    /// At most one refetch for an unknown `kid` per this interval (default
    /// 30 s, at least 1 s).
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    pub fn http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// How DPoP proofs are judged for bound tokens (default
    /// [`DpopConfig::default`]: 60 s old at most, 5 s clock skew, every
    /// asymmetric algorithm, 100 000 proofs remembered).
    pub fn dpop(mut self, config: DpopConfig) -> Self {
        self.dpop = config;
        self
    }

    /// Check the settings and, without an explicit `jwks_uri`, discover it.
    pub async fn build(self) -> Result<TokenValidator, ValidatorConfigError> {
        if self.leeway > MAX_LEEWAY {
            return Err(ValidatorConfigError::LeewayTooLarge);
        }
        if !(1..=MAX_ACT_DEPTH).contains(&self.max_act_depth) {
            return Err(ValidatorConfigError::ActDepth);
        }
        if !(1..=MAX_JWKS_KEYS).contains(&self.max_keys) {
            return Err(ValidatorConfigError::MaxKeys);
        }
        if self.algs.is_empty() {
            return Err(ValidatorConfigError::NoAlgorithm);
        }
        if self.min_refetch_interval < Duration::from_secs(1) {
            return Err(ValidatorConfigError::RefetchInterval);
        }
        if self.resource.is_empty() {
            return Err(ValidatorConfigError::NoResource);
        }
        let issuer = endpoint::issuer(&self.issuer)?;
        let http = Http::new(&self.http)?;
        let jwks_uri = match self.jwks_uri {
            Some(uri) => uri,
            None => AuthorizationServer::discover_with(&http, &issuer, &TraceParent::new_root())
                .await?
                .jwks_uri
                .ok_or(ValidatorConfigError::NoJwksUri)?,
        };
        endpoint::checked(&jwks_uri, "jwks_uri")?;
        let dpop = DpopVerifier::new(self.dpop)?;
        let keys = JwksCache::new(
            http,
            jwks_uri,
            JwksSettings {
                algs: self.algs.clone(),
                max_keys: self.max_keys,
                ttl: self.jwks_ttl,
                min_refetch_interval: self.min_refetch_interval,
            },
        );
        Ok(TokenValidator {
            inner: Arc::new(Inner {
                issuer,
                resource: self.resource,
                algs: self.algs,
                leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(0),
                max_act_depth: self.max_act_depth,
                keys,
                dpop,
            }),
        })
    }
}

/// Validates the broker's access and hop tokens for one resource. Cheap to
/// clone (shared keys).
#[derive(Clone)]
pub struct TokenValidator {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    resource: String,
    algs: Vec<Alg>,
    leeway: i64,
    max_act_depth: usize,
    keys: JwksCache,
    dpop: DpopVerifier,
}

impl std::fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenValidator")
            .field("issuer", &self.inner.issuer)
            .field("resource", &self.inner.resource)
            .finish_non_exhaustive()
    }
}

impl TokenValidator {
    /// A validator for tokens issued by `issuer` (the broker) for `resource`
    /// (this server's resource URI, the token's `aud`).
    pub fn builder(issuer: impl Into<String>, resource: impl Into<String>) -> ValidatorBuilder {
        ValidatorBuilder {
            issuer: issuer.into(),
            resource: resource.into(),
            jwks_uri: None,
            algs: vec![Alg::ES256],
            leeway: DEFAULT_LEEWAY,
            max_act_depth: MAX_ACT_DEPTH,
            max_keys: DEFAULT_MAX_KEYS,
            jwks_ttl: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(30),
            http: HttpConfig::default(),
            dpop: DpopConfig::default(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// How many times the broker's keys were fetched (the first use, stale
    /// refreshes, and unknown-`kid` refetches).
    pub fn key_fetches(&self) -> u64 {
        self.inner.keys.fetches()
    }

    /// The DPoP proof algorithms accepted: the `algs` of a `DPoP` challenge
    /// (RFC 9449 §7.1).
    pub fn dpop_algorithms(&self) -> &[Alg] {
        self.inner.dpop.algorithms()
    }

    /// Validate `token`, presented as a bearer token (RFC 6750); a key
    /// fetch, if one is needed, starts a fresh trace. A DPoP-bound token is
    /// refused ([`ValidationError::KeyBound`]): use
    /// [`validate_dpop`](Self::validate_dpop).
    pub async fn validate(&self, token: &str) -> Result<Principal, ValidationError> {
        self.validate_in_trace(token, None).await
    }

    /// Validate `token`, presented as a bearer token, for a request that
    /// arrived in `trace`: a key fetch is a child of it, and the principal
    /// carries it. A DPoP-bound token is refused
    /// ([`ValidationError::KeyBound`], RFC 9449 §7.2): a stolen bound token
    /// must not work as a bearer token.
    pub async fn validate_in_trace(
        &self,
        token: &str,
        trace: Option<&TraceParent>,
    ) -> Result<Principal, ValidationError> {
        let principal = self.verified(token, trace, now_secs()).await?;
        if principal.key_binding.is_some() {
            return Err(ValidationError::KeyBound);
        }
        Ok(principal)
    }

    /// Validate `token`, presented with the `DPoP` scheme (RFC 9449 §7.1),
    /// and the request's proof: the token as [`validate`](Self::validate)
    /// does, then that it is bound (`cnf.jkt`; an unbound token is refused,
    /// [`ValidationError::NotKeyBound`]: with no binding there is nothing
    /// the proof proves), then every check of [`DpopVerifier`] for this
    /// token and request ([`ValidationError::Proof`]). The principal carries
    /// the binding in `key_binding`.
    pub async fn validate_dpop(
        &self,
        token: &str,
        request: &DpopRequest<'_>,
        trace: Option<&TraceParent>,
    ) -> Result<Principal, ValidationError> {
        let now = now_secs();
        let principal = self.verified(token, trace, now).await?;
        let jkt = principal.key_binding.as_deref().ok_or(ValidationError::NotKeyBound)?;
        self.inner.dpop.verify_at(request, token, jkt, now)?;
        Ok(principal)
    }

    /// The token's own checks (RFC 9068 §4), whatever the scheme.
    async fn verified(&self, token: &str, trace: Option<&TraceParent>, now: i64) -> Result<Principal, ValidationError> {
        let i = &self.inner;
        let jws = UnverifiedJws::parse(token)?;
        if jws.header.crit.is_some() {
            return Err(ValidationError::CriticalHeader);
        }
        // RFC 9068 §4: the typ header must be at+jwt; RFC 8725 §3.11.
        if jws.header.media_type().as_deref() != Some(TYP_ACCESS_TOKEN) {
            return Err(ValidationError::WrongType);
        }
        let alg = Alg::parse(&jws.header.alg)
            .filter(|a| i.algs.contains(a))
            .ok_or(ValidationError::AlgorithmNotAllowed)?;
        let key_trace = TraceParent::child_of(trace);
        let verifier = i
            .keys
            .verifier(jws.header.kid.as_deref(), alg, &key_trace)
            .await
            .map_err(|e| match e {
                KeyLookup::Unknown => ValidationError::UnknownKey,
                KeyLookup::Unavailable(cause) => ValidationError::KeysUnavailable(cause),
            })?;
        if !jws.verify(verifier.as_ref()) {
            return Err(ValidationError::BadSignature);
        }
        let mut principal = check_claims(&jws.payload, i, now)?;
        principal.trace = trace.copied();
        Ok(principal)
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The claim checks of RFC 9068 §4 after the signature, at `now`.
fn check_claims(claims: &Map<String, Value>, v: &Inner, now: i64) -> Result<Principal, ValidationError> {
    let string = |name: &'static str| -> Result<Option<String>, ValidationError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ValidationError::InvalidClaim(name)),
        }
    };
    let required = |name: &'static str| -> Result<String, ValidationError> {
        string(name)?
            .filter(|s| !s.is_empty())
            .ok_or(ValidationError::MissingClaim(name))
    };
    // RFC 7519 §2 NumericDate may be fractional: whole seconds are kept.
    let date = |name: &'static str| -> Result<Option<i64>, ValidationError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or(ValidationError::InvalidClaim(name)),
            Some(_) => Err(ValidationError::InvalidClaim(name)),
        }
    };

    if required("iss")? != v.issuer {
        return Err(ValidationError::WrongIssuer);
    }
    let audience: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(ValidationError::InvalidClaim("aud"))?,
        None => return Err(ValidationError::MissingClaim("aud")),
        Some(_) => return Err(ValidationError::InvalidClaim("aud")),
    };
    if !audience.contains(&v.resource) {
        return Err(ValidationError::WrongAudience);
    }
    let exp = date("exp")?.ok_or(ValidationError::MissingClaim("exp"))?;
    if exp.saturating_add(v.leeway) <= now {
        return Err(ValidationError::Expired);
    }
    if date("nbf")?.is_some_and(|nbf| nbf.saturating_sub(v.leeway) > now) {
        return Err(ValidationError::NotYetValid);
    }
    let iat = date("iat")?.ok_or(ValidationError::MissingClaim("iat"))?;
    if iat.saturating_sub(v.leeway) > now {
        return Err(ValidationError::IssuedInFuture);
    }
    let sub = required("sub")?;
    let client_id = required("client_id")?;
    let jti = required("jti")?;
    let scopes: BTreeSet<String> = string("scope")?
        .map(|s| s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let roles = match claims.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(ValidationError::InvalidClaim("roles"))?,
        Some(_) => return Err(ValidationError::InvalidClaim("roles")),
    };
    let key_binding = key_binding(claims)?;
    let act = act::parse_act_chain(claims.get("act"), v.max_act_depth)?;
    let user_issuer = vouched_by(claims, &sub).unwrap_or_else(|| v.issuer.clone());
    Ok(Principal {
        sub,
        user_issuer,
        iss: v.issuer.clone(),
        act,
        txn: string("txn")?,
        scopes,
        roles,
        jti,
        client_id,
        audience,
        iat,
        exp,
        key_binding,
        trace: None,
    })
}

/// The key a token is bound to (RFC 9449 §6.1): `None` without `cnf`; the
/// thumbprint when `cnf` is exactly `{"jkt": "<non-empty string>"}`; any
/// other `cnf` (another confirmation method, extra members, `null`) is
/// refused, never read as "unbound".
fn key_binding(claims: &Map<String, Value>) -> Result<Option<String>, ValidationError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    match cnf.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("jkt")) {
        Some(Value::String(jkt)) if !jkt.is_empty() => Ok(Some(jkt.clone())),
        _ => Err(ValidationError::UnsupportedBinding),
    }
}

/// The issuer of an RFC 9493 §3.2.2 `iss_sub` subject identifier (`sub_id`,
/// RFC 9493 §4.1) naming this token's own `sub`: the upstream IdP that
/// vouched for the user, as the broker writes it (src/claims.rs).
fn vouched_by(claims: &Map<String, Value>, sub: &str) -> Option<String> {
    let o = claims.get("sub_id")?.as_object()?;
    let format = o.get("format")?.as_str()?;
    let named = o.get("sub")?.as_str()?;
    let iss = o.get("iss")?.as_str()?;
    (format == "iss_sub" && named == sub && !iss.is_empty()).then(|| iss.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn inner() -> Inner {
        Inner {
            issuer: "https://broker".into(),
            resource: "https://mcp.logs.example.com".into(),
            algs: vec![Alg::ES256],
            leeway: 30,
            max_act_depth: 4,
            keys: JwksCache::new(
                Http::new(&HttpConfig::default()).unwrap(),
                "https://broker/jwks".into(),
                JwksSettings {
                    algs: vec![Alg::ES256],
                    max_keys: 4,
                    ttl: Duration::from_secs(300),
                    min_refetch_interval: Duration::from_secs(30),
                },
            ),
            dpop: DpopVerifier::new(DpopConfig::default()).unwrap(),
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://broker", "sub": "alice", "aud": "https://mcp.logs.example.com",
            "client_id": "triage-agent", "jti": "j1", "iat": NOW - 10, "exp": NOW + 290,
            "scope": "logs.read logs.write", "roles": ["developer"], "txn": "t1",
            "sub_id": {"format": "iss_sub", "iss": "https://idp", "sub": "alice"},
            "act": {"sub": "agent:triage", "sub_profile": "ai_agent"}
        })
    }

    fn check(c: Value) -> Result<Principal, ValidationError> {
        let Value::Object(map) = c else { unreachable!() };
        check_claims(&map, &inner(), NOW)
    }

    fn with(f: impl FnOnce(&mut Value)) -> Result<Principal, ValidationError> {
        let mut c = claims();
        f(&mut c);
        check(c)
    }

    #[test]
    fn a_good_claim_set_becomes_a_principal() {
        let p = check(claims()).unwrap();
        assert_eq!(p.sub, "alice");
        assert_eq!(p.user_issuer, "https://idp", "sub_id names the upstream issuer");
        assert_eq!(p.scopes, ["logs.read".to_owned(), "logs.write".to_owned()].into());
        assert_eq!(p.roles, vec!["developer"]);
        assert_eq!(p.act.len(), 1);
        assert!(p.has_agent());
        assert_eq!(
            (p.jti.as_str(), p.client_id.as_str(), p.txn.as_deref()),
            ("j1", "triage-agent", Some("t1"))
        );
    }

    #[test]
    fn without_a_matching_sub_id_the_user_is_the_brokers_own() {
        let p = with(|c| c["sub_id"]["sub"] = json!("bob")).unwrap();
        assert_eq!(p.user_issuer, "https://broker");
        let p = with(|c| {
            c.as_object_mut().unwrap().remove("sub_id");
        })
        .unwrap();
        assert_eq!(p.user_issuer, "https://broker");
    }

    #[test]
    fn the_audience_may_be_an_array_that_contains_the_resource() {
        assert!(with(|c| c["aud"] = json!(["https://other", "https://mcp.logs.example.com"])).is_ok());
        assert_eq!(
            with(|c| c["aud"] = json!(["https://other"])).err(),
            Some(ValidationError::WrongAudience)
        );
    }

    #[test]
    fn time_is_checked_with_the_leeway_and_no_more() {
        assert!(with(|c| c["exp"] = json!(NOW - 29)).is_ok(), "inside the leeway");
        assert_eq!(
            with(|c| c["exp"] = json!(NOW - 30)).err(),
            Some(ValidationError::Expired)
        );
        assert!(with(|c| c["nbf"] = json!(NOW + 30)).is_ok());
        assert_eq!(
            with(|c| c["nbf"] = json!(NOW + 31)).err(),
            Some(ValidationError::NotYetValid)
        );
        assert_eq!(
            with(|c| c["iat"] = json!(NOW + 31)).err(),
            Some(ValidationError::IssuedInFuture)
        );
        assert!(
            with(|c| c["exp"] = json!(NOW as f64 + 10.5)).is_ok(),
            "fractional dates"
        );
    }

    #[test]
    fn every_required_claim_is_required() {
        for name in ["iss", "sub", "aud", "exp", "iat", "client_id", "jti"] {
            let r = with(|c| {
                c.as_object_mut().unwrap().remove(name);
            });
            assert_eq!(r.err(), Some(ValidationError::MissingClaim(name)), "{name}");
        }
    }

    #[test]
    fn malformed_claims_are_refused_by_name() {
        assert_eq!(
            with(|c| c["sub"] = json!(5)).err(),
            Some(ValidationError::InvalidClaim("sub"))
        );
        assert_eq!(
            with(|c| c["exp"] = json!("soon")).err(),
            Some(ValidationError::InvalidClaim("exp"))
        );
        assert_eq!(
            with(|c| c["roles"] = json!("admin")).err(),
            Some(ValidationError::InvalidClaim("roles"))
        );
        assert_eq!(
            with(|c| c["iss"] = json!("https://evil")).err(),
            Some(ValidationError::WrongIssuer)
        );
        assert_eq!(
            with(|c| c["act"] = json!(["agent"])).err(),
            Some(ValidationError::Act(ActError::NotAnObject))
        );
    }

    #[test]
    fn a_jkt_confirmation_is_the_key_binding_and_none_is_unbound() {
        let p = with(|c| c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})).unwrap();
        assert_eq!(
            p.key_binding.as_deref(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
        assert_eq!(check(claims()).unwrap().key_binding, None);
    }

    #[test]
    fn a_cnf_that_is_not_exactly_one_jkt_is_refused_never_ignored() {
        for cnf in [
            json!(null),
            json!("jkt"),
            json!({}),
            json!({"jkt": ""}),
            json!({"jkt": 5}),
            json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            json!({"jkt": "abc", "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            json!({"jwk": {"kty": "EC"}}),
        ] {
            assert_eq!(
                with(|c| c["cnf"] = cnf.clone()).err(),
                Some(ValidationError::UnsupportedBinding),
                "{cnf}"
            );
        }
    }

    #[test]
    fn dpop_refusals_are_answered_in_the_dpop_challenge_with_their_code() {
        assert!(ValidationError::KeyBound.is_dpop() && ValidationError::NotKeyBound.is_dpop());
        assert!(!ValidationError::Expired.is_dpop());
        assert_eq!(ValidationError::KeyBound.error_code(), "invalid_token");
        assert_eq!(
            ValidationError::Proof(DpopError::Ath).error_code(),
            "invalid_dpop_proof"
        );
        assert_eq!(ValidationError::Proof(DpopError::Ath).reason(), "dpop.ath");
        assert!(ValidationError::Proof(DpopError::ReplayCacheFull).is_unavailable());
    }

    #[test]
    fn a_chain_deeper_than_the_configured_cap_is_refused() {
        let deep =
            json!({"sub": "a", "act": {"sub": "b", "act": {"sub": "c", "act": {"sub": "d", "act": {"sub": "e"}}}}});
        assert_eq!(
            with(|c| c["act"] = deep).err(),
            Some(ValidationError::Act(ActError::TooDeep(4)))
        );
    }
}
