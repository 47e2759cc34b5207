//! The cache of verified signatures: "these exact bytes verified under this
//! exact verifier", so that a subject token an MCP server exchanges for
//! several downstreams (one request each, since a token we issue has one
//! audience: specs/decisions.md §2) costs one signature check, not one per
//! exchange (issue 12; the design is specs/decisions.md §24).
//!
//! Owns: the SHA-256 fingerprint of a whole compact JWS (RFC 7515 §7.1:
//! header, payload and signature), remembered with the verifier that
//! accepted its signature; the bounds (bytes, hence entries; each entry
//! gone by the token's `exp`); and counting hits and misses (`observe`).
//! Which tokens are remembered is `trust::validate`'s rule
//! (`Expect::verified_cache_label`), and so is everything else about
//! validity: header, issuer, time, audience and the rest are checked on
//! every request, hit or miss, against the request's clock.
//! Must never: hold a token (only its SHA-256), decide whether a token is
//! valid, answer a hit for a verifier other than the one the request found
//! (a key rotation, a refetch or a reload is a miss), or keep an entry past
//! the token's `exp`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use josekit::jws::JwsVerifier;
use moka::Expiry;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::clock::Clock;

/// What one entry is counted as, in bytes, against `tokens.verified_cache_bytes`.
/// Measured with a counting global allocator on moka 0.12.16 (this key and
/// entry, per-entry expiry, LRU; 10 000 and 100 000 entries): 311 to 317
/// bytes an entry, the cache's own bookkeeping included; 384 leaves a fifth
/// for the hash table's growth steps. A fixed weight, so the byte bound is
/// also the entry bound: at most `bytes / ENTRY_BYTES` entries (10 922 at
/// the 4 MiB default).
pub const ENTRY_BYTES: u32 = 384;

/// The default `tokens.verified_cache_bytes`: 4 MiB.
pub const DEFAULT_BYTES: u64 = 4 * 1024 * 1024;
/// The smallest non-zero `tokens.verified_cache_bytes` (170 entries).
pub const MIN_BYTES: u64 = 64 * 1024;
/// The largest `tokens.verified_cache_bytes`.
pub const MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// The SHA-256 of a whole compact token: what an entry is known by. A token
/// with the same header and payload but another signature (tampered, or a
/// second signature of the same claims) has another fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// The verifier that accepted the signature, by identity only. A `Weak`:
/// the entry does not keep a retired key alive, and while the entry exists
/// the verifier's allocation cannot be reused by another verifier, so an
/// equal address always means the same verifier (no ABA).
#[derive(Clone)]
struct Entry {
    verifier: Weak<dyn JwsVerifier>,
    /// How long the entry may live, from its insertion: until the token's
    /// `exp`, never later.
    ttl: Duration,
}

/// Each entry expires at its token's `exp`; an update (a new verifier for
/// the same token) takes the new entry's time.
struct UntilExp;

impl Expiry<Fingerprint, Entry> for UntilExp {
    fn expire_after_create(&self, _: &Fingerprint, e: &Entry, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }
    fn expire_after_update(&self, _: &Fingerprint, e: &Entry, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(e.ttl)
    }
}

/// The cache, shared by every request of one instance (in `AppState`). It
/// survives policy reloads: an entry only ever matches the verifier object
/// that accepted it, and a reload, a JWKS refetch or a restart builds new
/// verifier objects.
pub struct VerifiedCache {
    /// `None` when `tokens.verified_cache_bytes` is 0: nothing is hashed or
    /// remembered.
    cache: Option<Cache<Fingerprint, Entry>>,
    /// The broker's clock, read at insertion, so an entry's time to live is
    /// exactly what remains of its token's life.
    clock: Arc<dyn Clock>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl VerifiedCache {
    /// A cache of at most `max_bytes` (counted as [`ENTRY_BYTES`] an
    /// entry); 0 turns it off.
    pub fn new(max_bytes: u64, clock: Arc<dyn Clock>) -> Self {
        let cache = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &Fingerprint, _: &Entry| ENTRY_BYTES)
                // A subject token is reused in a burst right after it is
                // minted (one tool call fanning out to its downstreams),
                // then rarely: recency predicts the next hit, and LRU admits
                // a new token at once where TinyLFU could refuse it against
                // older, busier entries.
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(UntilExp)
                .build()
        });
        Self {
            cache,
            clock,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A cache that remembers nothing (tests and benchmarks that measure
    /// the signature check itself).
    pub fn off() -> Self {
        Self::new(0, Arc::new(crate::clock::SystemClock))
    }

    /// The token's fingerprint, or `None` when the cache is off.
    pub fn fingerprint(&self, token: &str) -> Option<Fingerprint> {
        self.cache.as_ref()?;
        Some(Fingerprint(openssl::sha::sha256(token.as_bytes())))
    }

    /// Did this very verifier already accept this token's signature? Counted
    /// as a hit or a miss under `label` (a bounded token kind). An entry left
    /// by another verifier (the key was rotated, refetched or reloaded) is a
    /// miss, and dropped: it can never match again.
    pub fn verified_by(&self, fp: &Fingerprint, verifier: &Arc<dyn JwsVerifier>, label: &'static str) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        let hit = match cache.get(fp) {
            Some(e) if std::ptr::addr_eq(e.verifier.as_ptr(), Arc::as_ptr(verifier)) => true,
            Some(_) => {
                cache.invalidate(fp);
                false
            }
            None => false,
        };
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::observe::verified_cache(label, hit);
        hit
    }

    /// Remember that `verifier` accepted the token known by `fp`, until
    /// `exp` (seconds since the epoch) by the broker's clock. A token already
    /// at or past its `exp` is not remembered.
    pub fn remember(&self, fp: Fingerprint, verifier: &Arc<dyn JwsVerifier>, exp: i64) {
        let Some(cache) = &self.cache else {
            return;
        };
        let Some(ttl) = time_to_live(exp, self.clock.now_ms()) else {
            return;
        };
        cache.insert(
            fp,
            Entry {
                verifier: Arc::downgrade(verifier),
                ttl,
            },
        );
    }

    /// Hits and misses so far (this instance's; the metrics are process-wide).
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Entries and their weighted size in bytes, after moka's pending
    /// maintenance (evictions) has run: for tests and diagnostics.
    pub fn size(&self) -> (u64, u64) {
        match &self.cache {
            Some(c) => {
                c.run_pending_tasks();
                (c.entry_count(), c.weighted_size())
            }
            None => (0, 0),
        }
    }
}

/// What remains of a token's life at `now_ms`, if anything: the entry's
/// time to live, so that it is gone by `exp`.
fn time_to_live(exp: i64, now_ms: i64) -> Option<Duration> {
    let left_ms = exp.saturating_mul(1000).saturating_sub(now_ms);
    u64::try_from(left_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use crate::config::{Config, KeysConfig, UpstreamConfig};
    use crate::jose::{Alg, VERIFICATIONS};
    use crate::keys::KeyRing;
    use crate::trust::jwks::JwksCache;
    use crate::trust::validate::{Expect, Validator};

    fn verifier() -> Arc<dyn JwsVerifier> {
        let jwk = Alg::ES256.generate().unwrap();
        Alg::ES256.verifier(&jwk.to_public_key().unwrap()).unwrap()
    }

    fn cache(bytes: u64) -> VerifiedCache {
        VerifiedCache::new(bytes, Arc::new(SystemClock))
    }

    #[test]
    fn an_entry_lives_until_exp_and_never_past_it() {
        assert_eq!(time_to_live(1_000, 999_250), Some(Duration::from_millis(750)));
        assert_eq!(time_to_live(1_000, 1_000_000), None, "expired now");
        assert_eq!(time_to_live(1_000, 2_000_000), None, "expired long ago");
        assert_eq!(time_to_live(i64::MIN, 0), None);
        // Not remembered once expired, by the broker's clock.
        let clock = Arc::new(ManualClock::new());
        let c = VerifiedCache::new(MIN_BYTES, clock.clone());
        let v = verifier();
        let (fp, old) = (c.fingerprint("a.b.c").unwrap(), c.fingerprint("d.e.f").unwrap());
        c.remember(fp, &v, clock.now() + 60);
        c.remember(old, &v, clock.now());
        assert!(c.verified_by(&fp, &v, "access_token"));
        assert!(!c.verified_by(&old, &v, "access_token"));
    }

    #[test]
    fn only_the_verifier_that_accepted_the_token_hits() {
        let c = cache(MIN_BYTES);
        let jwk = Alg::ES256.generate().unwrap();
        let public = jwk.to_public_key().unwrap();
        let first = Alg::ES256.verifier(&public).unwrap();
        // The same key, parsed again (as a refetch or a reload does).
        let again = Alg::ES256.verifier(&public).unwrap();
        let fp = c.fingerprint("h.p.s").unwrap();
        c.remember(fp, &first, crate::types::now_secs() + 60);
        assert!(c.verified_by(&fp, &first.clone(), "id_token"));
        assert!(!c.verified_by(&fp, &again, "id_token"));
        // The mismatch dropped the entry.
        assert!(!c.verified_by(&fp, &first, "id_token"));
        assert_eq!(c.stats(), (1, 2));
    }

    #[test]
    fn the_byte_bound_holds_however_many_tokens_are_remembered() {
        let capacity = MIN_BYTES;
        let c = cache(capacity);
        let v = verifier();
        let exp = crate::types::now_secs() + 300;
        for i in 0..10_000 {
            c.remember(c.fingerprint(&format!("h.p{i}.s")).unwrap(), &v, exp);
        }
        let (entries, bytes) = c.size();
        assert!(bytes <= capacity, "{bytes} bytes in a cache of {capacity}");
        assert!(entries <= capacity / u64::from(ENTRY_BYTES), "{entries} entries");
        assert!(entries > 0);
        // The newest is kept (LRU): a fan-out's token is admitted at once.
        let newest = c.fingerprint("h.p9999.s").unwrap();
        assert!(c.verified_by(&newest, &v, "access_token"));
    }

    #[test]
    fn off_remembers_nothing() {
        let c = VerifiedCache::off();
        assert!(c.fingerprint("a.b.c").is_none());
        assert_eq!(c.size(), (0, 0));
    }

    /// A validator over the example policy and an ephemeral key ring, with
    /// a cache, and one of our access tokens.
    struct Setup {
        policy: crate::policy::Policy,
        keys: KeyRing,
        jwks: JwksCache,
        cache: VerifiedCache,
    }

    impl Setup {
        fn new() -> Self {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/broker.toml");
            let mut config = Config::load(&path).unwrap();
            config.keys = KeysConfig {
                ephemeral: true,
                ..KeysConfig::default()
            };
            Self {
                policy: config.resolve("test").unwrap(),
                keys: KeyRing::from_config(&config.keys, None).unwrap(),
                jwks: JwksCache::new(UpstreamConfig::default()).unwrap(),
                cache: cache(DEFAULT_BYTES),
            }
        }

        fn validator(&self) -> Validator<'_> {
            Validator {
                policy: &self.policy,
                keys: &self.keys,
                jwks: &self.jwks,
                verified: &self.cache,
                now: crate::types::now_secs(),
            }
        }

        fn access_token(&self) -> String {
            let now = crate::types::now_secs();
            let claims = serde_json::json!({
                "iss": self.policy.issuer, "sub": "alice", "aud": "https://cost.example.com",
                "client_id": "mcp-logs", "iat": now, "exp": now + 300, "jti": "j-1",
            });
            self.keys.sign("at+jwt", &claims).unwrap()
        }
    }

    /// The signature checks one validation makes.
    async fn checks(v: &Validator<'_>, token: &str, expect: Expect<'_>) -> (usize, Result<(), &'static str>) {
        let before = VERIFICATIONS.with(|n| n.get());
        let r = v.validate(token, expect).await.map(|_| ()).map_err(|r| r.reason);
        (VERIFICATIONS.with(|n| n.get()) - before, r)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_hit_skips_only_the_signature_check() {
        let s = Setup::new();
        let token = s.access_token();
        let v = s.validator();
        assert_eq!(checks(&v, &token, Expect::AccessToken).await, (1, Ok(())));
        assert_eq!(checks(&v, &token, Expect::AccessToken).await, (0, Ok(())));
        // Every other check still runs, with the request's clock: past
        // exp + skew, a hit is refused as a miss would be.
        let later = Validator {
            now: crate::types::now_secs() + 300 + s.policy.tokens.clock_skew_secs,
            ..s.validator()
        };
        assert_eq!(
            checks(&later, &token, Expect::AccessToken).await,
            (0, Err("token.expired"))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_tampered_signature_over_the_same_claims_never_hits() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let s = Setup::new();
        let token = s.access_token();
        let v = s.validator();
        assert_eq!(checks(&v, &token, Expect::AccessToken).await, (1, Ok(())));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut bytes = B64.decode(sig).unwrap();
        bytes[10] ^= 1;
        let tampered = format!("{input}.{}", B64.encode(&bytes));
        assert_eq!(
            checks(&v, &tampered, Expect::AccessToken).await,
            (1, Err("token.signature"))
        );
        // Nor is a refused token remembered: refused again, checked again.
        assert_eq!(
            checks(&v, &tampered, Expect::AccessToken).await,
            (1, Err("token.signature"))
        );
        // A second, valid signature of the same claims is its own entry.
        let resigned = s.keys.sign("at+jwt", &decode_claims(&token)).unwrap();
        assert_ne!(resigned, token, "ECDSA signatures are randomised");
        assert_eq!(checks(&v, &resigned, Expect::AccessToken).await, (1, Ok(())));
    }

    fn decode_claims(token: &str) -> serde_json::Value {
        use base64::Engine;
        let part = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}
