//! `HopTokens`: the next hop's token for a downstream call, from the
//! broker's `/token` (RFC 8693 token exchange), cached.
//!
//! Owns: the exchange of a verified incoming token for a token for one
//! downstream resource (`subject_token_type` access_token, `resource=`,
//! `scope=`), the cache keyed by (subject `jti`, audience, sorted scopes)
//! that holds a token until shortly before its `exp`, and single flight: N
//! concurrent misses for one key make one broker request. With a DPoP key
//! (`with_dpop`), every exchange carries a proof by it (RFC 9449 §5), so
//! the hop tokens are bound to this service's key, and a DPoP-bound
//! incoming token can be exchanged at all (the broker exchanges a bound
//! subject token only with a proof).
//! Must never: cache an error, serve a token past its refresh margin, serve
//! one subject's hop token for another subject, return a bearer token when
//! it sent a proof, or log a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use moka::future::Cache;

use crate::bearer::BearerToken;
use crate::client_auth::ClientAuth;
use crate::discovery::AuthorizationServer;
use crate::dpop_key::DpopKey;
use crate::http::{Http, HttpConfig, TransportError};
use crate::jws::UnverifiedJws;
use crate::oauth_error::TokenError;
use crate::principal::Principal;
use crate::token_request::{self, DpopSession, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN};

/// Default bound on cached hop tokens.
pub const DEFAULT_CAPACITY: u64 = 10_000;
/// A cached token is dropped this long before its `exp`, so a caller never
/// sends one that expires in flight.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// A hop token for one downstream call.
#[derive(Debug, Clone)]
pub struct HopToken {
    /// Send as `Authorization: Bearer …` to the downstream resource; when
    /// `dpop_jkt` is set, as `Authorization: DPoP …` with a fresh proof by
    /// the key ([`DpopKey::resource_proof`], RFC 9449 §7.1).
    pub token: BearerToken,
    /// The resource it is for.
    pub audience: String,
    /// What the broker granted (it may be less than asked: authority only
    /// shrinks along a chain).
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
    /// The thumbprint (`cnf.jkt`) of the DPoP key the token is bound to:
    /// this `HopTokens`' key, when it has one (RFC 9449 §6.1).
    pub dpop_jkt: Option<String>,
}

/// The cache key: whose token, for where, with which scopes (sorted and
/// deduplicated, so `["b", "a"]` and `["a", "b", "a"]` share an entry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HopKey {
    pub subject_jti: String,
    pub audience: String,
    pub scopes: Vec<String>,
}

impl HopKey {
    pub fn new(subject_jti: &str, audience: &str, scopes: &[&str]) -> Self {
        let mut scopes: Vec<String> = scopes
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| (*s).to_owned())
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        Self {
            subject_jti: subject_jti.to_owned(),
            audience: audience.to_owned(),
            scopes,
        }
    }
}

/// Expire each entry `margin` before the token's own `exp`.
struct UntilShortlyBeforeExp {
    margin: Duration,
}

impl Expiry<HopKey, HopToken> for UntilShortlyBeforeExp {
    fn expire_after_create(&self, _key: &HopKey, value: &HopToken, _created_at: Instant) -> Option<Duration> {
        let left = value.expires_at.saturating_sub(now_secs());
        let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        Some(left.saturating_sub(self.margin))
    }
}

/// Configures [`HopTokens`].
#[derive(Debug, Clone)]
pub struct HopTokensBuilder {
    server: AuthorizationServer,
    auth: ClientAuth,
    capacity: u64,
    margin: Duration,
    http: HttpConfig,
    dpop: Option<DpopKey>,
}

impl HopTokensBuilder {
    /// Prove possession of `key` in every exchange (RFC 9449 §5): the hop
    /// tokens are then bound to it (`cnf.jkt`, `token_type` `DPoP`), so a
    /// downstream call needs a proof by the same key; and an incoming
    /// DPoP-bound token (`principal.key_binding`) can be exchanged, the
    /// next hop being bound to this key. One key per `HopTokens`: the cache
    /// key does not name it, so every cached token is bound to this key. A
    /// response that is not bound to it is
    /// [`TokenError::BindingDropped`], never a bearer token.
    pub fn with_dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// At most this many cached tokens (default 10 000).
    pub fn capacity(mut self, n: u64) -> Self {
        self.capacity = n;
        self
    }

    /// Drop a cached token this long before its `exp` (default 30 s).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    pub fn http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    pub fn build(self) -> Result<HopTokens, TransportError> {
        let cache = Cache::builder()
            .max_capacity(self.capacity)
            .expire_after(UntilShortlyBeforeExp { margin: self.margin })
            .build();
        Ok(HopTokens {
            inner: Arc::new(Inner {
                http: Http::new(&self.http)?,
                server: self.server,
                auth: self.auth,
                dpop: self.dpop.map(DpopSession::new),
                cache,
                requests: AtomicU64::new(0),
            }),
        })
    }
}

/// Obtains and caches hop tokens as one service (an MCP server, an API).
/// Cheap to clone.
#[derive(Clone)]
pub struct HopTokens {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    server: AuthorizationServer,
    auth: ClientAuth,
    dpop: Option<DpopSession>,
    cache: Cache<HopKey, HopToken>,
    requests: AtomicU64,
}

impl std::fmt::Debug for HopTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopTokens")
            .field("broker", &self.inner.server.issuer)
            .field("client", &self.inner.auth)
            .field("dpop", &self.inner.dpop)
            .finish_non_exhaustive()
    }
}

impl HopTokens {
    /// Hop tokens from `broker` (its token endpoint), authenticating as
    /// `auth` (this service's client at the broker).
    pub fn builder(broker: AuthorizationServer, auth: ClientAuth) -> HopTokensBuilder {
        HopTokensBuilder {
            server: broker,
            auth,
            capacity: DEFAULT_CAPACITY,
            margin: DEFAULT_REFRESH_MARGIN,
            http: HttpConfig::default(),
            dpop: None,
        }
    }

    /// A token for `audience` (the downstream resource URI) with `scopes`
    /// (none: everything the broker allows), on behalf of the caller of
    /// this request. `incoming` is the token the request carried, and
    /// `principal` what [`TokenValidator`](crate::TokenValidator) made of it.
    ///
    /// RFC 8693 §2.1: `subject_token` = `incoming`, `subject_token_type`
    /// access_token, `resource` = `audience` (RFC 8707), and a DPoP proof
    /// when a key is configured. Cached per (`principal.jti`, `audience`,
    /// sorted `scopes`) until [`DEFAULT_REFRESH_MARGIN`] before the hop
    /// token's `exp`; concurrent misses share one request. A DPoP-bound
    /// `incoming` token without a key here is refused by the broker
    /// (`TokenError::Refused`, `invalid_request`).
    pub async fn token(
        &self,
        incoming: &str,
        principal: &Principal,
        audience: &str,
        scopes: &[&str],
    ) -> Result<HopToken, TokenError> {
        if audience.is_empty() {
            return Err(TokenError::InvalidRequest("the audience must not be empty"));
        }
        // The cache is keyed on the principal's jti: the token sent must be
        // that very token, or one subject could be served another's hop.
        let presented_jti = UnverifiedJws::parse(incoming)
            .ok()
            .and_then(|j| j.payload.get("jti").and_then(|v| v.as_str()).map(str::to_owned));
        if presented_jti.as_deref() != Some(principal.jti.as_str()) {
            return Err(TokenError::InvalidRequest(
                "the incoming token is not the one the principal was verified from",
            ));
        }
        let key = HopKey::new(&principal.jti, audience, scopes);
        let scope = key.scopes.join(" ");
        self.inner
            .cache
            .try_get_with(key.clone(), self.exchange(incoming, principal, audience, &scope))
            .await
            .map_err(|e| (*e).clone())
    }

    /// Requests made to the broker so far (misses; hits make none).
    pub fn broker_requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Drop every cached token (e.g. after the broker revoked a `txn`).
    pub fn clear(&self) {
        self.inner.cache.invalidate_all();
    }

    async fn exchange(
        &self,
        incoming: &str,
        principal: &Principal,
        audience: &str,
        scope: &str,
    ) -> Result<HopToken, TokenError> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let mut form = vec![
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("subject_token", incoming),
            ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN),
            ("resource", audience),
        ];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        let trace = principal.outgoing_trace();
        let r = token_request::post(
            &self.inner.http,
            &self.inner.server,
            &self.inner.auth,
            &form,
            &trace,
            self.inner.dpop.as_ref(),
        )
        .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(subject_jti = %principal.jti, audience, error = %e, "hop exchange refused");
                return Err(e);
            }
        };
        if r.issued_token_type
            .as_deref()
            .is_some_and(|t| t != TOKEN_TYPE_ACCESS_TOKEN)
        {
            return Err(TokenError::InvalidResponse("issued_token_type is not an access token"));
        }
        // With a key, the token request confirmed the DPoP binding.
        if self.inner.dpop.is_none() && !r.token_type.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::InvalidResponse("token_type is not Bearer"));
        }
        // Without expires_in, the hop cannot outlive the subject token.
        let expires_at = r.expires_at.unwrap_or(principal.exp).min(principal.exp);
        tracing::debug!(subject_jti = %principal.jti, audience, expires_at, "hop token obtained");
        Ok(HopToken {
            token: r.access_token,
            audience: audience.to_owned(),
            scopes: r.scopes,
            expires_at,
            dpop_jkt: r.dpop_jkt,
        })
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_ignores_scope_order_and_duplicates() {
        let a = HopKey::new("j1", "https://cost", &["cost.read", "a.b", "cost.read", ""]);
        let b = HopKey::new("j1", "https://cost", &["a.b", "cost.read"]);
        assert_eq!(a, b);
        assert_eq!(a.scopes, vec!["a.b", "cost.read"]);
        assert_ne!(
            a,
            HopKey::new("j2", "https://cost", &["a.b", "cost.read"]),
            "another subject"
        );
        assert_ne!(
            a,
            HopKey::new("j1", "https://other", &["a.b", "cost.read"]),
            "another audience"
        );
        assert_ne!(a, HopKey::new("j1", "https://cost", &["cost.read"]), "other scopes");
    }

    #[test]
    fn an_entry_expires_the_margin_before_the_token() {
        let expiry = UntilShortlyBeforeExp {
            margin: Duration::from_secs(30),
        };
        let token = |left: i64| HopToken {
            token: BearerToken::new("t"),
            audience: "a".into(),
            scopes: vec![],
            expires_at: now_secs() + left,
            dpop_jkt: None,
        };
        let key = HopKey::new("j", "a", &[]);
        let ttl = |left| expiry.expire_after_create(&key, &token(left), Instant::now()).unwrap();
        assert!(ttl(120) <= Duration::from_secs(90) && ttl(120) >= Duration::from_secs(88));
        assert_eq!(ttl(10), Duration::ZERO, "a token inside the margin is not kept");
        assert_eq!(ttl(-5), Duration::ZERO);
    }
}
