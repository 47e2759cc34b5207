//! Rate limits at the client-authenticated endpoints (MCP Enterprise-Managed
//! Authorization §7.5.1: token endpoints SHOULD rate-limit), with governor's
//! GCRA token buckets.
//!
//! Owns two limits, both per instance (specs/operations.md "Rate limits"):
//! - **per authenticated client**: one direct limiter per client id (the ids
//!   are bounded by the config), at the client's own `rate_limit` or the
//!   `[limits]` default, rebuilt when a reload changes that rate; checked
//!   right after authentication, before any grant work.
//! - **per source** for failed client authentication: each `invalid_client`
//!   takes a token from its source's bucket (an IPv4 address, or an IPv6 /64
//!   so one host cannot rotate addresses out of its bucket). The failure that
//!   empties a bucket marks the source blocked until the next token; a
//!   blocked source is refused at the start of authentication, before any
//!   secret is hashed or signature verified. governor cannot peek at a
//!   bucket, hence the separate "blocked until" map.
//!
//! Every 429 either limit answers is counted in `xaa_rate_limited_total`
//! by kind (`client`, `source`).
//!
//! Memory is bounded whatever the number of addresses: both per-source maps
//! are moka caches capped at [`MAX_SOURCES`] entries, each entry expiring
//! once it can no longer change an answer (a bucket when it would be full
//! again, a block when it ends).
//!
//! Time is the broker's clock (`crate::clock`, through `LimiterClock`), so
//! buckets refill by the instant every request reads and tests move it.
//!
//! Must never: do authentication work, I/O or await; see a credential (it
//! sees client ids and addresses only); or answer anything but 429.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::clock::{Clock as BrokerClock, SystemClock};

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use moka::Expiry;
use moka::sync::Cache;

use crate::error::{OAuthError, OAuthResult};
use crate::policy::{Client, ClientRate, Policy};

/// Most sources tracked at once in each per-source map (about 200 bytes an
/// entry). Past it moka evicts the least useful entries first (TinyLFU), so
/// a flood of one-shot addresses does not push out a persistent guesser.
pub const MAX_SOURCES: u64 = 50_000;

/// governor's view of the broker's clock (`crate::clock`): the buckets fill
/// by the same time every request reads, so tests move it instead of
/// sleeping. Milliseconds since the epoch, as a `Duration`.
#[derive(Clone)]
pub struct LimiterClock(Arc<dyn BrokerClock>);

impl Clock for LimiterClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now_ms()).unwrap_or(0))
    }
}

/// A governor bucket that reports what is left after a positive decision.
type Bucket = RateLimiter<NotKeyed, InMemoryState, LimiterClock, StateInformationMiddleware>;

/// Whom a per-source limit applies to: an IPv4 address, or an IPv6 /64 (the
/// smallest block a site is normally given, RFC 6177; one host can pick any
/// address in it). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Net(u64),
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6Net((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6Net(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*net) << 64)),
        }
    }
}

/// A bucket with the quota it was built for, so a reload that changes the
/// quota is noticed and the bucket rebuilt.
struct Limited {
    quota: Quota,
    bucket: Bucket,
}

impl Limited {
    fn new(quota: Quota, clock: &LimiterClock) -> Arc<Self> {
        Arc::new(Self {
            quota,
            bucket: RateLimiter::direct_with_clock(quota, clock.clone()).with_middleware(),
        })
    }
}

/// A source's failure bucket is forgotten once it would be full again: a
/// fresh bucket then gives the same answers.
struct UntilRefilled;

impl Expiry<SourceKey, Arc<Limited>> for UntilRefilled {
    fn expire_after_create(&self, _: &SourceKey, v: &Arc<Limited>, _: Instant) -> Option<Duration> {
        Some(v.quota.burst_size_replenished_in())
    }
    fn expire_after_read(
        &self,
        _: &SourceKey,
        v: &Arc<Limited>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(v.quota.burst_size_replenished_in())
    }
    fn expire_after_update(
        &self,
        _: &SourceKey,
        v: &Arc<Limited>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.quota.burst_size_replenished_in())
    }
}

/// A block (until a time in ms, by the broker's clock) is forgotten when it
/// ends.
struct UntilUnblocked(Arc<dyn BrokerClock>);

impl UntilUnblocked {
    fn left(&self, until_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(until_ms - self.0.now_ms()).unwrap_or(0))
    }
}

impl Expiry<SourceKey, i64> for UntilUnblocked {
    fn expire_after_create(&self, _: &SourceKey, until: &i64, _: Instant) -> Option<Duration> {
        Some(self.left(*until))
    }
    fn expire_after_update(&self, _: &SourceKey, until: &i64, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(self.left(*until))
    }
}

/// The limiters of one instance (in `AppState`).
pub struct Limits {
    clients: RwLock<HashMap<String, Arc<Limited>>>,
    failures: Cache<SourceKey, Arc<Limited>>,
    /// Until when (ms, the broker's clock) each blocked source is refused.
    blocked: Cache<SourceKey, i64>,
    clock: LimiterClock,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl Limits {
    pub fn new(clock: Arc<dyn BrokerClock>) -> Self {
        Self {
            clock: LimiterClock(clock.clone()),
            clients: RwLock::new(HashMap::new()),
            failures: Cache::builder()
                .max_capacity(MAX_SOURCES)
                .expire_after(UntilRefilled)
                .build(),
            blocked: Cache::builder()
                .max_capacity(MAX_SOURCES)
                .expire_after(UntilUnblocked(clock))
                .build(),
        }
    }

    /// At the start of authentication: a source whose failed-authentication
    /// bucket is empty gets 429 until its next token, before any work.
    /// A request without a known source address is never limited here.
    pub fn check_source(&self, policy: &Policy, source: Option<IpAddr>) -> OAuthResult<()> {
        let (true, Some(ip)) = (policy.limits.enabled, source) else {
            return Ok(());
        };
        let now = self.clock.0.now_ms();
        match self.blocked.get(&SourceKey::of(ip)) {
            Some(until) if until > now => {
                crate::observe::rate_limited("source");
                Err(OAuthError::rate_limited(
                    "rate_limit.source",
                    "too many failed client authentications from this address; retry later",
                    Duration::from_millis(u64::try_from(until - now).unwrap_or(0)),
                ))
            }
            _ => Ok(()),
        }
    }

    /// A client authentication from `source` failed (`invalid_client`): it
    /// takes one token, and the failure that takes the last one blocks the
    /// source until the bucket has a token again.
    pub fn note_failure(&self, policy: &Policy, source: Option<IpAddr>) {
        let (true, Some(ip)) = (policy.limits.enabled, source) else {
            return;
        };
        let key = SourceKey::of(ip);
        let l = &policy.limits;
        let quota = Quota::per_minute(l.failed_auth_per_minute).allow_burst(l.failed_auth_burst);
        let mut limited = self.failures.get_with(key, || Limited::new(quota, &self.clock));
        if limited.quota != quota {
            limited = Limited::new(quota, &self.clock);
            self.failures.insert(key, limited.clone());
        }
        let wait = match limited.bucket.check() {
            // Empty now: the next token comes at most one interval from now.
            Ok(left) if left.remaining_burst_capacity() == 0 => quota.replenish_interval(),
            Ok(_) => return,
            // Already empty (requests that passed the check concurrently).
            Err(not_until) => not_until.wait_time_from(self.clock.now()),
        };
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        self.blocked.insert(key, self.clock.0.now_ms().saturating_add(wait_ms));
    }

    /// Right after `client` authenticated: within its rate, or 429 with the
    /// wait until its next token.
    pub fn check_client(&self, policy: &Policy, client: &Client) -> OAuthResult<()> {
        if !policy.limits.enabled {
            return Ok(());
        }
        match self.client_bucket(policy, client).bucket.check() {
            Ok(_) => Ok(()),
            Err(not_until) => {
                crate::observe::rate_limited("client");
                Err(OAuthError::rate_limited(
                    "rate_limit.client",
                    "this client is over its request rate; retry later",
                    not_until.wait_time_from(self.clock.now()),
                ))
            }
        }
    }

    /// The client's bucket, (re)built when absent or when its rate changed.
    /// A rebuild also drops the buckets of clients no longer configured.
    fn client_bucket(&self, policy: &Policy, client: &Client) -> Arc<Limited> {
        let quota = client_quota(client.rate);
        let current = |map: &HashMap<String, Arc<Limited>>| map.get(&client.id).filter(|l| l.quota == quota).cloned();
        if let Some(l) = current(&self.clients.read().unwrap_or_else(|e| e.into_inner())) {
            return l;
        }
        let mut map = self.clients.write().unwrap_or_else(|e| e.into_inner());
        // Another request may have rebuilt it meanwhile.
        if let Some(l) = current(&map) {
            return l;
        }
        map.retain(|id, _| policy.clients.contains_key(id));
        let l = Limited::new(quota, &self.clock);
        map.insert(client.id.clone(), l.clone());
        l
    }
}

fn client_quota(rate: ClientRate) -> Quota {
    Quota::per_second(rate.per_second).allow_burst(rate.burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        assert_eq!(SourceKey::of(a).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(SourceKey::of(mapped), SourceKey::V4(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(SourceKey::of(mapped).to_string(), "192.0.2.7");
    }

    #[test]
    fn the_per_source_maps_stay_bounded_under_a_flood_of_addresses() {
        let limits = Limits::default();
        let policy = crate::config::Config::from_toml(
            "t",
            "issuer = \"http://127.0.0.1:1\"\nkeys.ephemeral = true\n[limits]\nfailed_auth_burst = 1\n",
        )
        .unwrap()
        .resolve("t")
        .unwrap();
        for i in 0..(MAX_SOURCES as u32 + 20_000) {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            limits.note_failure(&policy, Some(ip));
        }
        limits.failures.run_pending_tasks();
        limits.blocked.run_pending_tasks();
        assert!(
            limits.failures.entry_count() <= MAX_SOURCES,
            "{}",
            limits.failures.entry_count()
        );
        assert!(
            limits.blocked.entry_count() <= MAX_SOURCES,
            "{}",
            limits.blocked.entry_count()
        );
    }
}
