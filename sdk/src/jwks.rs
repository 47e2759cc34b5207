//! The broker's signing keys: fetched from its `jwks_uri`, cached as parsed
//! verifiers, refetched on an unknown `kid` at most once per interval.
//!
//! Owns: the single-flight fetch (one request at a time; waiters reuse its
//! result), the cache lifetime, the unknown-`kid` refetch budget, the
//! back-off after a failed fetch, and serving cached keys while the broker
//! is briefly unreachable.
//! Must never: fetch keys a token names (`jku`, `x5u`: RFC 8725 §3.10),
//! follow a redirect, read an unbounded body or an unbounded key set, or
//! let a stream of unknown `kid`s turn into a stream of fetches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use josekit::jws::JwsVerifier;

use crate::alg::Alg;
use crate::http::Http;
use crate::keyset::KeySet;
use crate::traceparent::TraceParent;

/// How long to serve cached keys while the key endpoint fails.
const MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// After a failed fetch, wait at least this long (or the refetch interval,
/// if shorter) before the next: an outage must not queue a timeout per token.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);

/// Why no verifier was produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyLookup {
    /// The keys are known and none matches: the token is bad.
    Unknown,
    /// The keys could not be obtained: the check cannot be made.
    Unavailable(String),
}

pub(crate) struct JwksSettings {
    pub algs: Vec<Alg>,
    pub max_keys: usize,
    pub ttl: Duration,
    pub min_refetch_interval: Duration,
}

struct Cached {
    keys: Arc<KeySet>,
    fetched_at: Instant,
}

#[derive(Default)]
struct FetchState {
    last_kid_refetch: Option<Instant>,
    last_failure: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    FirstUse,
    Stale,
    UnknownKid,
}

pub(crate) struct JwksCache {
    http: Http,
    jwks_uri: String,
    settings: JwksSettings,
    cached: RwLock<Option<Cached>>,
    fetch: tokio::sync::Mutex<FetchState>,
    fetches: AtomicU64,
}

impl JwksCache {
    pub fn new(http: Http, jwks_uri: String, settings: JwksSettings) -> Self {
        Self {
            http,
            jwks_uri,
            settings,
            cached: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            fetches: AtomicU64::new(0),
        }
    }

    /// Key fetches attempted so far (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<(Arc<KeySet>, Instant)> {
        self.cached
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| (c.keys.clone(), c.fetched_at))
    }

    /// The verifier for a token's (`kid`, `alg`).
    pub async fn verifier(
        &self,
        kid: Option<&str>,
        alg: Alg,
        trace: &TraceParent,
    ) -> Result<Arc<dyn JwsVerifier>, KeyLookup> {
        let waiting_since = Instant::now();
        let current = self.current();
        let found = current.as_ref().and_then(|(keys, _)| keys.find(kid, alg));
        let age = current.as_ref().map(|(_, at)| at.elapsed());
        match (found, age) {
            (Some(v), Some(age)) if age < self.settings.ttl => Ok(v),
            (Some(v), Some(age)) => match self.refresh(Why::Stale, waiting_since, trace).await {
                Ok(keys) => keys.find(kid, alg).ok_or(KeyLookup::Unknown),
                Err(_) if age < MAX_STALE => Ok(v),
                Err(e) => Err(e),
            },
            (None, Some(_)) => self
                .refresh(Why::UnknownKid, waiting_since, trace)
                .await?
                .find(kid, alg)
                .ok_or(KeyLookup::Unknown),
            (_, None) => self
                .refresh(Why::FirstUse, waiting_since, trace)
                .await?
                .find(kid, alg)
                .ok_or(KeyLookup::Unknown),
        }
    }

    async fn refresh(&self, why: Why, waiting_since: Instant, trace: &TraceParent) -> Result<Arc<KeySet>, KeyLookup> {
        let mut state = self.fetch.lock().await;
        let current = self.current();
        // Another caller fetched while this one waited: use its result.
        if let Some((keys, fetched_at)) = &current
            && *fetched_at >= waiting_since
        {
            return Ok(keys.clone());
        }
        let interval = self.settings.min_refetch_interval;
        if state
            .last_failure
            .is_some_and(|t| t.elapsed() < FAILURE_BACKOFF.min(interval))
        {
            return Err(KeyLookup::Unavailable("a recent key fetch failed; backing off".into()));
        }
        if why == Why::UnknownKid {
            if state.last_kid_refetch.is_some_and(|t| t.elapsed() < interval) {
                // The budget is spent: the kid stays unknown until the interval passes.
                return current.map(|(keys, _)| keys).ok_or(KeyLookup::Unknown);
            }
            state.last_kid_refetch = Some(Instant::now());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch_set(trace).await {
            Ok(set) => {
                let set = Arc::new(set);
                *self.cached.write().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
                    keys: set.clone(),
                    fetched_at: Instant::now(),
                });
                state.last_failure = None;
                Ok(set)
            }
            Err(e) => {
                state.last_failure = Some(Instant::now());
                tracing::warn!(jwks_uri = %self.jwks_uri, error = %e, "broker key fetch failed");
                Err(KeyLookup::Unavailable(e))
            }
        }
    }

    async fn fetch_set(&self, trace: &TraceParent) -> Result<KeySet, String> {
        let reply = self
            .http
            .get(
                &self.jwks_uri,
                "application/jwk-set+json, application/json",
                &trace.child(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if reply.status != 200 {
            return Err(format!("GET {}: HTTP {}", self.jwks_uri, reply.status));
        }
        let doc = reply.json().ok_or_else(|| format!("GET {}: not JSON", self.jwks_uri))?;
        KeySet::parse(&doc, &self.settings.algs, self.settings.max_keys).map_err(|e| e.to_string())
    }
}
