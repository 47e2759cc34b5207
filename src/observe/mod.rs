//! Metrics: the process-wide Prometheus recorder, the name and meaning of
//! every metric the broker exports, and the small functions the rest of the
//! code calls to move them (specs/operations.md "Metrics").
//!
//! Owns: installing the recorder once per process (`metrics` keeps one
//! global recorder, so every `App` built in one process, as in the tests,
//! adds to the same counters); its periodic upkeep; rendering the text
//! format; the histogram buckets; and the rule that every label value comes
//! from a bounded set (static strings, or names the config bounds: issuer
//! names, client ids).
//! Must never: take a label value from a request (no `sub`, `txn`, `jti`,
//! token, secret, scope, source address or user agent), or fail a request.

pub mod allow;
pub mod steps;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "xaa_requests_total";
pub const REQUEST_DURATION: &str = "xaa_request_duration_seconds";
pub const DECISIONS: &str = "xaa_decisions_total";
pub const REFUSED_UNAUTHENTICATED: &str = "xaa_refused_unauthenticated_total";
pub const STEP_DURATION: &str = "xaa_step_duration_seconds";
pub const JWKS_FETCHES: &str = "xaa_jwks_fetches_total";
pub const JWKS_CACHE_HITS: &str = "xaa_jwks_cache_hits_total";
pub const JWKS_REFETCH_REFUSED: &str = "xaa_jwks_refetch_refused_total";
pub const VERIFIED_CACHE_HITS: &str = "xaa_verified_cache_hits_total";
pub const VERIFIED_CACHE_MISSES: &str = "xaa_verified_cache_misses_total";
pub const STORE_DURATION: &str = "xaa_store_operation_duration_seconds";
pub const STORE_ERRORS: &str = "xaa_store_errors_total";
pub const AUDIT_WRITE_DURATION: &str = "xaa_audit_write_duration_seconds";
pub const AUDIT_CHECKPOINT_AGE: &str = "xaa_audit_checkpoint_age_seconds";
pub const AUDIT_CHAIN_SEQ: &str = "xaa_audit_chain_seq";
pub const RATE_LIMITED: &str = "xaa_rate_limited_total";
pub const OPEN_CONNECTIONS: &str = "xaa_open_connections";
pub const BUILD_INFO: &str = "xaa_build_info";

/// Histogram buckets in seconds: from 100 µs (a memory-store commit) to
/// 10 s (the default request deadline), so that both the hot path and an
/// upstream timeout land in a bucket of their own.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder folds recorded histogram samples into its
/// buckets when nobody scrapes: without it, samples would pile up in memory
/// between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the recorder if no one has (idempotent, cheap after the first
/// call). `None` if another recorder was installed first (an embedding
/// program's own): the broker then records into that one and serves no
/// text of its own.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(BUCKETS).ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed: /metrics serves nothing");
                return None;
            }
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            let upkeep = handle.clone();
            // A plain thread, not a task: the recorder outlives any one
            // runtime (the tests run many).
            let spawned = std::thread::Builder::new()
                .name("xaa-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "the metrics upkeep thread could not start; histograms fold at each scrape");
            }
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric, or `None` when the
/// recorder is not ours (see [`install`]).
pub fn render() -> Option<String> {
    install().map(PrometheusHandle::render)
}

fn describe() {
    describe_counter!(REQUESTS, "HTTP requests answered, by endpoint and status code.");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from request head to response, by endpoint."
    );
    describe_counter!(
        DECISIONS,
        "Audit records of authenticated calls, by grant (or endpoint), outcome, OAuth error and machine reason."
    );
    describe_counter!(
        REFUSED_UNAUTHENTICATED,
        "Calls refused before a client authenticated (or rate limited), by OAuth error and machine reason."
    );
    describe_histogram!(
        STEP_DURATION,
        Unit::Seconds,
        "Time spent in one step of a request, by step."
    );
    describe_counter!(JWKS_FETCHES, "Upstream JWK Set fetches, by key source and result.");
    describe_counter!(JWKS_CACHE_HITS, "Upstream keys served from the cache, by key source.");
    describe_counter!(
        JWKS_REFETCH_REFUSED,
        "Refetches for an unknown kid refused by min_refetch_interval_secs, by key source."
    );
    describe_counter!(
        VERIFIED_CACHE_HITS,
        "Subject and actor token signatures not checked again: verified before under the same key, by token kind."
    );
    describe_counter!(
        VERIFIED_CACHE_MISSES,
        "Subject and actor token signatures checked (not in the verified cache, or under another key), by token kind."
    );
    describe_histogram!(STORE_DURATION, Unit::Seconds, "Store operation latency, by operation.");
    describe_counter!(STORE_ERRORS, "Store operations that failed, by operation.");
    describe_histogram!(
        AUDIT_WRITE_DURATION,
        Unit::Seconds,
        "Time to commit one audit record with its marks and effects, by mode (grant, deny)."
    );
    describe_gauge!(
        AUDIT_CHECKPOINT_AGE,
        Unit::Seconds,
        "Time since this instance's last signed checkpoint."
    );
    describe_gauge!(
        AUDIT_CHAIN_SEQ,
        "The seq of the last record this instance appended to its chain."
    );
    describe_counter!(RATE_LIMITED, "Requests answered 429, by kind (client, source).");
    describe_gauge!(OPEN_CONNECTIONS, "Open TCP connections, by listener (oauth, metrics).");
    describe_gauge!(BUILD_INFO, "Always 1; the version label says which build runs.");
}

/// `xaa_requests_total` and `xaa_request_duration_seconds` for one answer.
pub fn request(endpoint: &'static str, status: u16, started: Instant) {
    counter!(REQUESTS, "endpoint" => endpoint, "status" => status_label(status)).increment(1);
    histogram!(REQUEST_DURATION, "endpoint" => endpoint).record(started.elapsed().as_secs_f64());
}

/// One audit record written for an authenticated call. `what` is the grant's
/// short name (or the endpoint, for calls that are not grants); `error` and
/// `reason` are empty for a grant.
pub fn decision(what: &'static str, granted: bool, error: &'static str, reason: &'static str) {
    let outcome = if granted { "granted" } else { "denied" };
    counter!(DECISIONS, "grant" => what, "outcome" => outcome, "error" => error, "reason" => reason).increment(1);
}

/// One call refused before a client authenticated, or rate limited (what
/// the noise summaries count).
pub fn refused_unauthenticated(error: &'static str, reason: &'static str) {
    counter!(REFUSED_UNAUTHENTICATED, "error" => error, "reason" => reason).increment(1);
}

/// One 429 (`kind`: `client` or `source`).
pub fn rate_limited(kind: &'static str) {
    counter!(RATE_LIMITED, "kind" => kind).increment(1);
}

/// An upstream key fetch for `source` (the issuer's name in the config, or
/// `client:<id>` for a client's `jwks_uri`).
pub fn jwks_fetch(source: &std::sync::Arc<str>, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!(JWKS_FETCHES, "issuer" => source.clone(), "result" => result).increment(1);
}

pub fn jwks_cache_hit(source: &std::sync::Arc<str>) {
    counter!(JWKS_CACHE_HITS, "issuer" => source.clone()).increment(1);
}

pub fn jwks_refetch_refused(source: &std::sync::Arc<str>) {
    counter!(JWKS_REFETCH_REFUSED, "issuer" => source.clone()).increment(1);
}

/// One lookup in the cache of verified signatures (`trust::verified_cache`);
/// `token` is the kind (`id_token`, `access_token`, `actor_token`).
pub fn verified_cache(token: &'static str, hit: bool) {
    let name = if hit {
        VERIFIED_CACHE_HITS
    } else {
        VERIFIED_CACHE_MISSES
    };
    counter!(name, "token" => token).increment(1);
}

/// One store operation's latency, and its failure if it failed.
pub fn store_operation(operation: &'static str, started: Instant, failed: bool) {
    histogram!(STORE_DURATION, "operation" => operation).record(started.elapsed().as_secs_f64());
    if failed {
        counter!(STORE_ERRORS, "operation" => operation).increment(1);
    }
}

/// One audit commit's latency (`mode`: `grant` or `deny`), and the chain's
/// new head when it was written.
pub fn audit_write(mode: &'static str, started: Instant, seq: Option<u64>) {
    histogram!(AUDIT_WRITE_DURATION, "mode" => mode).record(started.elapsed().as_secs_f64());
    if let Some(seq) = seq {
        gauge!(AUDIT_CHAIN_SEQ).set(seq as f64);
    }
}

/// Set at each scrape from the checkpointer's state.
pub fn checkpoint_age(age_secs: f64) {
    gauge!(AUDIT_CHECKPOINT_AGE).set(age_secs);
}

pub fn connection_opened(listener: &'static str) {
    gauge!(OPEN_CONNECTIONS, "listener" => listener).increment(1.0);
}

pub fn connection_closed(listener: &'static str) {
    gauge!(OPEN_CONNECTIONS, "listener" => listener).decrement(1.0);
}

/// The status code as a static label (no allocation per request); codes
/// the broker does not answer are folded into `other`.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        429 => "429",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_renders_build_info() {
        let first = install().map(|h| h as *const _);
        let second = install().map(|h| h as *const _);
        assert_eq!(first, second);
        let text = render().unwrap_or_default();
        assert!(
            text.contains(&format!(
                "xaa_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }

    #[test]
    fn every_status_label_is_a_code_or_other() {
        for code in [200, 302, 400, 429, 503, 999] {
            let label = status_label(code);
            assert!(label == "other" || label == code.to_string(), "{code} → {label}");
        }
    }
}
