//! Unauthenticated noise: requests refused before a client is authenticated
//! (no or bad credentials, a malformed request, a rate-limited source) and
//! rate-limited requests of authenticated clients. Anyone can send these by
//! the million; one hash-chained record each would let them flood the audit
//! trail and, in the memory store, evict real records (decisions §13).
//!
//! Owns: counting them in memory per (source, reason, named client) per
//! interval — a count and the first and last time — and writing each
//! interval out as summary records to `Store::append_unauthenticated`, a
//! separate, short-lived store area. Bounded: at most `max_keys` keys per
//! interval ([`MAX_KEYS`] by default); further sources are folded into one
//! overflow summary per reason (source `*`).
//!
//! Must never: write to the audit chain; keep attacker-chosen text (a key is
//! an address, a static reason and the id of a *configured* client); grow
//! with the number of requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::format_description;

use crate::audit::NoiseSummary;
use crate::error::OAuthError;
use crate::limits::SourceKey;
use crate::store::{Store, StoreError};

/// Most distinct keys counted per interval.
pub const MAX_KEYS: usize = 10_000;

/// `source` of the summary that folds every source beyond `MAX_KEYS`.
pub const OVERFLOW_SOURCE: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Addr(SourceKey),
    Unknown,
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: Source,
    reason: &'static str,
    client_id: Option<String>,
}

struct Tally {
    error: &'static str,
    count: u64,
    first: OffsetDateTime,
    last: OffsetDateTime,
}

/// The counts of the current interval (in `AppState`).
pub struct Noise {
    instance: String,
    max_keys: usize,
    current: Mutex<HashMap<Key, Tally>>,
    /// One flush at a time, so an explicit flush waits for a running one.
    flushing: tokio::sync::Mutex<()>,
}

impl Noise {
    pub fn new(instance: impl Into<String>) -> Self {
        Self::with_max_keys(instance, MAX_KEYS)
    }

    pub fn with_max_keys(instance: impl Into<String>, max_keys: usize) -> Self {
        Self {
            instance: instance.into(),
            max_keys,
            current: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Count one refused request. `client_id` must already be known to name
    /// a configured client.
    pub fn note(&self, source: Option<IpAddr>, err: &OAuthError, client_id: Option<&str>) {
        let now = OffsetDateTime::now_utc();
        let mut key = Key {
            source: source.map_or(Source::Unknown, |ip| Source::Addr(SourceKey::of(ip))),
            reason: err.reason,
            client_id: client_id.map(str::to_owned),
        };
        let mut counts = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= self.max_keys && !counts.contains_key(&key) {
            key = Key {
                source: Source::Overflow,
                reason: err.reason,
                client_id: None,
            };
        }
        counts
            .entry(key)
            .and_modify(|t| {
                t.count += 1;
                t.last = now;
            })
            .or_insert(Tally {
                error: err.code.as_str(),
                count: 1,
                first: now,
                last: now,
            });
    }

    /// Take the interval's counts as summaries, starting a new interval.
    pub fn take(&self) -> Vec<NoiseSummary> {
        let counts = std::mem::take(&mut *self.current.lock().unwrap_or_else(|e| e.into_inner()));
        // Fixed width (UTC, milliseconds), so the strings sort as the times do.
        let rfc3339 = |t: OffsetDateTime| {
            t.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .unwrap_or_default()
        };
        let mut summaries: Vec<NoiseSummary> = counts
            .into_iter()
            .map(|(key, t)| NoiseSummary {
                id: uuid::Uuid::now_v7().to_string(),
                instance: self.instance.clone(),
                source: match key.source {
                    Source::Addr(s) => s.to_string(),
                    Source::Unknown => "unknown".into(),
                    Source::Overflow => OVERFLOW_SOURCE.into(),
                },
                error: t.error.to_owned(),
                reason: key.reason.to_owned(),
                client_id: key.client_id,
                count: t.count,
                first: rfc3339(t.first),
                last: rfc3339(t.last),
            })
            .collect();
        summaries.sort_by(|a, b| a.first.cmp(&b.first));
        summaries
    }

    /// Write the interval's summaries to the store (and the `audit` log
    /// target), kept for `retention`. On a store error they are lost from
    /// the store but were logged; the error is returned for the caller to log.
    pub async fn flush(&self, store: &dyn Store, retention: Duration) -> Result<usize, StoreError> {
        let _one = self.flushing.lock().await;
        let summaries = self.take();
        if summaries.is_empty() {
            return Ok(0);
        }
        for s in &summaries {
            s.emit();
        }
        store.append_unauthenticated(&summaries, retention).await?;
        Ok(summaries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn err(reason: &'static str) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidClient, reason, "client authentication failed")
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn requests_are_counted_per_source_reason_and_client() {
        let noise = Noise::new("i1");
        for _ in 0..3 {
            noise.note(ip("192.0.2.1"), &err("client_auth.bad_secret"), Some("chat-app"));
        }
        noise.note(ip("192.0.2.1"), &err("client_auth.missing"), None);
        noise.note(ip("2001:db8::1"), &err("client_auth.missing"), None);
        noise.note(ip("2001:db8::2"), &err("client_auth.missing"), None);
        let mut s = noise.take();
        s.sort_by(|a, b| (&a.source, &a.reason).cmp(&(&b.source, &b.reason)));
        let got: Vec<_> = s
            .iter()
            .map(|s| (s.source.as_str(), s.reason.as_str(), s.client_id.as_deref(), s.count))
            .collect();
        assert_eq!(
            got,
            [
                ("192.0.2.1", "client_auth.bad_secret", Some("chat-app"), 3),
                ("192.0.2.1", "client_auth.missing", None, 1),
                ("2001:db8::/64", "client_auth.missing", None, 2),
            ]
        );
        assert!(
            s.iter()
                .all(|s| s.instance == "i1" && s.error == "invalid_client" && s.first <= s.last)
        );
        assert!(noise.take().is_empty(), "taking starts a new interval");
    }

    #[test]
    fn sources_beyond_the_cap_fold_into_one_overflow_summary_per_reason() {
        let noise = Noise::with_max_keys("i1", 100);
        for i in 0..1000u32 {
            let source = Some(IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + i)));
            noise.note(source, &err("client_auth.missing"), None);
            noise.note(source, &err("client_auth.bad_secret"), None);
        }
        let s = noise.take();
        assert!(s.len() <= 102, "{} summaries", s.len());
        assert_eq!(s.iter().map(|s| s.count).sum::<u64>(), 2000, "nothing is lost");
        let overflow: Vec<_> = s.iter().filter(|s| s.source == OVERFLOW_SOURCE).collect();
        assert_eq!(overflow.len(), 2, "{overflow:?}");
    }
}
