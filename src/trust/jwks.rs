//! Upstream keys: fetch JWK Sets (directly or via discovery), cache parsed
//! verifiers per (source, kid, alg), refetch on unknown `kid` at most once per
//! interval, serve cached keys while the IdP is briefly down.
//!
//! Owns: all HTTP to identity providers' key endpoints, and counting its
//! fetches, cache hits and refused refetches by source name (`observe`).
//! Must never: follow redirects, read an unbounded body, fetch keys named by a
//! token (`jku`, `x5u`: RFC 8725 §3.10), or build a verifier per request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use josekit::jws::JwsVerifier;

use crate::config::UpstreamConfig;
use crate::jose::Alg;
use crate::policy::KeySource;
use crate::trust::keyset::KeySet;

/// Why no verifier could be produced.
#[derive(Debug)]
pub enum KeyLookupError {
    /// The keys are known and none matches: the token is bad.
    UnknownKey,
    /// The keys could not be obtained: the check cannot be made (fail closed).
    Unavailable(String),
}

struct Cached {
    keys: Arc<KeySet>,
    fetched_at: Instant,
}

/// Why a fetch is wanted: each reason has its own limit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Nothing cached yet.
    FirstUse,
    /// Cached keys are older than `cache_ttl_secs`.
    Stale,
    /// A token names a kid we do not have: bounded by `min_refetch_interval`.
    UnknownKid,
}

#[derive(Default)]
struct FetchState {
    /// The last refetch an unknown kid caused (the kid-storm budget).
    last_kid_refetch: Option<Instant>,
    /// The last failed fetch: while recent, do not queue more requests
    /// behind another timeout.
    last_failure: Option<Instant>,
}

/// Failed fetches are retried at most this often (or the refetch interval,
/// if shorter), so an outage costs requests no queue of timeouts.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Entry {
    cached: RwLock<Option<Cached>>,
    /// Serialises fetches for one source.
    fetch: tokio::sync::Mutex<FetchState>,
}

impl Entry {
    fn current(&self) -> Option<(Arc<KeySet>, Instant)> {
        self.cached
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| (c.keys.clone(), c.fetched_at))
    }
}

/// The cache of every remote key source, shared by all requests. Survives
/// policy reloads (keyed by the source's cache key, not by config objects).
pub struct JwksCache {
    http: reqwest::Client,
    settings: UpstreamConfig,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
}

impl JwksCache {
    pub fn new(settings: UpstreamConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms.min(2000)))
            .user_agent(concat!("xaa-broker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            settings,
            entries: RwLock::default(),
        })
    }

    /// The verifier for `(kid, alg)` from `source`.
    pub async fn verifier(
        &self,
        source: &KeySource,
        algs: &[Alg],
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<Arc<dyn JwsVerifier>, KeyLookupError> {
        match source {
            KeySource::Inline(set) => set.find(kid, alg).ok_or(KeyLookupError::UnknownKey),
            KeySource::Remote {
                cache_key,
                name,
                jwks_uri,
                discovery_issuer,
            } => {
                let waiting_since = Instant::now();
                let entry = self.entry(cache_key);
                let current = entry.current();
                let found = current.as_ref().and_then(|(keys, _)| keys.find(kid, alg));
                let age = current.as_ref().map(|(_, at)| at.elapsed());
                let ttl = Duration::from_secs(self.settings.cache_ttl_secs);
                let fetch = |why| self.refresh(&entry, name, jwks_uri, discovery_issuer, algs, why, waiting_since);
                match (found, age) {
                    (Some(v), Some(age)) if age < ttl => {
                        crate::observe::jwks_cache_hit(name);
                        Ok(v)
                    }
                    (Some(v), Some(age)) => match fetch(Why::Stale).await {
                        Ok(set) => set.find(kid, alg).ok_or(KeyLookupError::UnknownKey),
                        // Keep serving what we had while the IdP is down, up to max_stale.
                        Err(_) if age < Duration::from_secs(self.settings.max_stale_secs) => Ok(v),
                        Err(e) => Err(e),
                    },
                    (_, Some(_)) => fetch(Why::UnknownKid)
                        .await?
                        .find(kid, alg)
                        .ok_or(KeyLookupError::UnknownKey),
                    (_, None) => fetch(Why::FirstUse)
                        .await?
                        .find(kid, alg)
                        .ok_or(KeyLookupError::UnknownKey),
                }
            }
        }
    }

    fn entry(&self, key: &str) -> Arc<Entry> {
        if let Some(e) = self.entries.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return e.clone();
        }
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// Fetch and install a new key set, within the limits of `why`. A fetch
    /// another request completed while this one waited is reused.
    #[allow(clippy::too_many_arguments)]
    async fn refresh(
        &self,
        entry: &Entry,
        name: &Arc<str>,
        jwks_uri: &Option<String>,
        discovery_issuer: &Option<String>,
        algs: &[Alg],
        why: Why,
        waiting_since: Instant,
    ) -> Result<Arc<KeySet>, KeyLookupError> {
        let mut state = entry.fetch.lock().await;
        let current = entry.current();
        if let Some((keys, fetched_at)) = &current
            && *fetched_at >= waiting_since
        {
            return Ok(keys.clone());
        }
        let interval = Duration::from_secs(self.settings.min_refetch_interval_secs);
        if state
            .last_failure
            .is_some_and(|t| t.elapsed() < FAILURE_BACKOFF.min(interval))
        {
            return Err(KeyLookupError::Unavailable("a recent fetch failed; backing off".into()));
        }
        if why == Why::UnknownKid {
            if state.last_kid_refetch.is_some_and(|t| t.elapsed() < interval) {
                // Budget spent: answer from what we have (the kid stays unknown).
                crate::observe::jwks_refetch_refused(name);
                return current.map(|(keys, _)| keys).ok_or(KeyLookupError::UnknownKey);
            }
            state.last_kid_refetch = Some(Instant::now());
        }
        let fetched = crate::telemetry::timed(
            crate::telemetry::Step::JwksFetch,
            self.fetch(jwks_uri, discovery_issuer, algs),
        )
        .await;
        crate::observe::jwks_fetch(name, fetched.is_ok());
        match fetched {
            Ok(set) => {
                let set = Arc::new(set);
                *entry.cached.write().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
                    keys: set.clone(),
                    fetched_at: Instant::now(),
                });
                state.last_failure = None;
                Ok(set)
            }
            Err(e) => {
                state.last_failure = Some(Instant::now());
                tracing::warn!(source = ?jwks_uri.as_ref().or(discovery_issuer.as_ref()), error = %e, "upstream key fetch failed");
                Err(KeyLookupError::Unavailable(e))
            }
        }
    }

    async fn fetch(
        &self,
        jwks_uri: &Option<String>,
        discovery_issuer: &Option<String>,
        algs: &[Alg],
    ) -> Result<KeySet, String> {
        let uri = match (jwks_uri, discovery_issuer) {
            (Some(u), _) => u.clone(),
            (None, Some(issuer)) => {
                let meta = self
                    .get_json(&format!("{issuer}/.well-known/openid-configuration"))
                    .await?;
                if meta
                    .get("issuer")
                    .and_then(|v| v.as_str())
                    .map(|s| s.trim_end_matches('/'))
                    != Some(issuer.as_str())
                {
                    return Err("discovery document names another issuer".into());
                }
                let uri = meta
                    .get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .ok_or("discovery document has no jwks_uri")?;
                if !discovered_jwks_uri_allowed(issuer, uri) {
                    return Err("discovered jwks_uri is not https".into());
                }
                uri.to_owned()
            }
            (None, None) => return Err("no key location configured".into()),
        };
        let doc = self.get_json(&uri).await?;
        KeySet::parse(&doc, algs)
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let mut resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        let cap = self.settings.max_response_bytes;
        if resp.content_length().is_some_and(|n| n as usize > cap) {
            return Err(format!("GET {url}: body larger than {cap} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > cap {
                return Err(format!("GET {url}: body larger than {cap} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }
}

/// A `jwks_uri` learned from discovery must be https: the keys it serves
/// decide every token of that issuer. Plain http only when the issuer itself
/// is a loopback URL (a local development IdP), and then only on loopback —
/// a discovery document cannot send us to plain http anywhere else.
pub fn discovered_jwks_uri_allowed(issuer: &str, jwks_uri: &str) -> bool {
    let Ok(uri) = url::Url::parse(jwks_uri) else {
        return false;
    };
    let issuer_is_loopback = url::Url::parse(issuer).is_ok_and(|i| crate::types::is_loopback(&i));
    uri.scheme() == "https" || (issuer_is_loopback && crate::types::is_https_or_loopback(&uri))
}

#[cfg(test)]
mod tests {
    use super::discovered_jwks_uri_allowed as allowed;

    #[test]
    fn a_discovered_jwks_uri_must_be_https_unless_the_issuer_is_loopback() {
        assert!(allowed("https://idp.example.com", "https://idp.example.com/keys"));
        assert!(!allowed("https://idp.example.com", "http://idp.example.com/keys"));
        assert!(
            !allowed("https://idp.example.com", "http://127.0.0.1:9/keys"),
            "a remote issuer cannot point us at plain http, even on loopback"
        );
        assert!(allowed("http://127.0.0.1:8080", "http://127.0.0.1:8080/keys"));
        assert!(!allowed("http://127.0.0.1:8080", "http://keys.example.com/keys"));
        assert!(!allowed("http://127.0.0.1:8080", "ftp://127.0.0.1/keys"));
    }
}
