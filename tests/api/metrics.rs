//! `/metrics` (specs/operations.md "Metrics"): served on its own listener,
//! never on the OAuth port; refused to peers outside `metrics.allow`; and
//! counting exactly what was sent, read with a real Prometheus text parser.
//!
//! The recorder is process-wide, so every broker this test binary runs adds
//! to the same counters. The exact counts are therefore taken from the real
//! binary, a process of its own; the in-process tests assert only what no
//! other test can change.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};

use crate::support::*;

/// Parse a scrape with the Prometheus text parser.
pub fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The value of the counter, gauge or untyped sample `name` whose labels
/// include every pair of `labels` (summed over the others); 0 when absent.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels)
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn matching<'a>(scrape: &'a Scrape, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
    scrape
        .samples
        .iter()
        .filter(move |s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// Two distinct free ports on loopback (bound together, then released: a
/// race only with other processes choosing the same port in between).
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// The real binary serving `app`'s config (its fake IdPs) on ports of its
/// own; killed when dropped.
struct Broker {
    child: Child,
    base: String,
    metrics: String,
    dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn real_broker(app: &TestApp) -> Broker {
    let dir = std::env::temp_dir().join(format!("xaa-metrics-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = app.config.clone();
    let (port, metrics_port) = free_ports();
    config.listen = format!("127.0.0.1:{port}");
    config.metrics.listen = format!("127.0.0.1:{metrics_port}");
    let path = dir.join("broker.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_xaa-broker"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env_remove("XAA_CONFIG")
        .env_remove("XAA_LISTEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let broker = Broker {
        child,
        base: format!("http://127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        dir,
    };
    for _ in 0..100 {
        if app.http.get(&broker.metrics).send().await.is_ok() {
            return broker;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the real broker's metrics listener never answered");
}

async fn scrape(app: &TestApp, url: &str) -> (Scrape, String) {
    let resp = app.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = resp.text().await.unwrap();
    (parse(&text), text)
}

/// A token request to the real broker as `client` with `secret`.
async fn exchange(
    app: &TestApp,
    broker: &Broker,
    client: &str,
    secret: &str,
    subject: &str,
) -> (u16, serde_json::Value) {
    let resp = app
        .http
        .post(format!("{}/token", broker.base))
        .basic_auth(client, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", TOKEN_EXCHANGE)
                .append_pair("resource", LOGS)
                .append_pair("subject_token", subject)
                .append_pair("subject_token_type", ID_TOKEN)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// `name{labels}` as `app`'s metrics listener serves it now (summed over
/// the other labels). Process-wide: other tests running at the same time
/// add to it, so compare with "at least".
pub async fn current(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = app
        .http
        .get(app.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    value(&parse(&text), name, labels)
}

#[tokio::test]
async fn counters_move_by_exactly_the_requests_sent_and_no_label_names_a_user_or_token() {
    let app = TestApp::spawn().await;
    let broker = real_broker(&app).await;
    let (before, _) = scrape(&app, &broker.metrics).await;

    let mut secrets = BTreeSet::new();
    for _ in 0..3 {
        let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
        let (status, body) = exchange(&app, &broker, "triage-agent", "triage-agent-secret", &id_token).await;
        assert_eq!(status, 200, "{body}");
        let claims = decode_part(body["access_token"].as_str().unwrap(), 1);
        for claim in ["sub", "txn", "jti"] {
            secrets.insert(claims[claim].as_str().unwrap().to_owned());
        }
        secrets.insert(id_token);
    }
    for _ in 0..2 {
        let (status, body) = exchange(&app, &broker, "triage-agent", "triage-agent-secret", "not-a-jwt").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    let (status, _) = exchange(&app, &broker, "triage-agent", "wrong-secret", "not-a-jwt").await;
    assert_eq!(status, 401);
    secrets.extend([
        "triage-agent-secret".to_owned(),
        "wrong-secret".to_owned(),
        "alice".to_owned(),
    ]);

    let (after, text) = scrape(&app, &broker.metrics).await;
    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);

    // Decisions: one per audit record, by grant, outcome, error and reason.
    let granted = [
        ("grant", "token-exchange"),
        ("outcome", "granted"),
        ("error", ""),
        ("reason", ""),
    ];
    assert_eq!(delta("xaa_decisions_total", &granted), 3.0, "{text}");
    let denied = [
        ("grant", "token-exchange"),
        ("outcome", "denied"),
        ("error", "invalid_request"),
    ];
    assert_eq!(delta("xaa_decisions_total", &denied), 2.0, "{text}");
    assert!(
        matching(&after, "xaa_decisions_total", &denied).all(|s| s.labels.get("reason").is_some_and(|r| !r.is_empty())),
        "a denial carries its machine reason: {text}"
    );
    assert_eq!(
        delta("xaa_refused_unauthenticated_total", &[("error", "invalid_client")]),
        1.0,
        "{text}"
    );

    // Requests at the edge, by endpoint and status.
    for (status, n) in [("200", 3.0), ("400", 2.0), ("401", 1.0)] {
        let got = delta("xaa_requests_total", &[("endpoint", "token"), ("status", status)]);
        assert_eq!(got, n, "status {status}: {text}");
    }
    assert_eq!(
        delta("xaa_request_duration_seconds_count", &[("endpoint", "token")]),
        6.0,
        "{text}"
    );
    let buckets = matching(&after, "xaa_request_duration_seconds", &[("endpoint", "token")])
        .find_map(|s| match &s.value {
            Value::Histogram(b) => Some(b.clone()),
            _ => None,
        })
        .expect("a histogram with buckets");
    assert!(buckets.len() > 5, "{buckets:?}");
    assert_eq!(
        buckets.last().map(|b| b.count),
        Some(6.0),
        "the +Inf bucket holds every request"
    );

    // Steps (from tracing spans), the store and the audit write.
    assert!(
        delta("xaa_step_duration_seconds_count", &[("step", "store_commit")]) >= 5.0,
        "{text}"
    );
    assert!(delta("xaa_store_operation_duration_seconds_count", &[("operation", "commit")]) >= 5.0);
    assert_eq!(
        delta("xaa_audit_write_duration_seconds_count", &[("mode", "grant")]),
        3.0
    );
    assert_eq!(
        delta("xaa_audit_write_duration_seconds_count", &[("mode", "deny")]),
        2.0
    );
    assert_eq!(value(&after, "xaa_audit_chain_seq", &[]), 5.0, "{text}");
    assert!(value(&after, "xaa_audit_checkpoint_age_seconds", &[]) >= 0.0);
    assert_eq!(value(&after, "xaa_store_errors_total", &[]), 0.0);

    // Upstream keys: one fetch of corp-idp's set, then the cache.
    let corp = [("issuer", "corp-idp")];
    assert_eq!(
        delta("xaa_jwks_fetches_total", &[corp[0], ("result", "ok")]),
        1.0,
        "{text}"
    );
    assert_eq!(delta("xaa_jwks_cache_hits_total", &corp), 2.0, "{text}");

    // The rest of the surface.
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(value(&after, "xaa_build_info", &[("version", version)]), 1.0);
    assert!(value(&after, "xaa_open_connections", &[("listener", "metrics")]) >= 1.0);
    assert_eq!(value(&after, "xaa_rate_limited_total", &[]), 0.0);

    // Bounded labels: nothing a user, token or secret is ever a label value.
    for sample in &after.samples {
        for (label, v) in sample.labels.iter() {
            assert!(
                !secrets.contains(v),
                "{}{{{label}=\"{v}\"}} names a user, a token or a secret",
                sample.metric
            );
        }
    }
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret} appears in the scrape");
    }
}

#[tokio::test]
async fn every_429_is_counted_by_its_kind() {
    let app = TestApp::spawn().await;
    let broker = real_broker(&app).await;
    let (before, _) = scrape(&app, &broker.metrics).await;
    let mut limited = 0.0;
    // More failed authentications than the source's burst (10).
    for _ in 0..14 {
        let (status, _) = exchange(&app, &broker, "triage-agent", "wrong-secret", "not-a-jwt").await;
        if status == 429 {
            limited += 1.0;
        }
    }
    assert!(limited >= 1.0, "the source was limited");
    let (after, text) = scrape(&app, &broker.metrics).await;
    let delta = |labels: &[(&str, &str)]| {
        value(&after, "xaa_rate_limited_total", labels) - value(&before, "xaa_rate_limited_total", labels)
    };
    assert_eq!(delta(&[("kind", "source")]), limited, "{text}");
    assert_eq!(delta(&[("kind", "client")]), 0.0, "{text}");
    let answered_429 = value(
        &after,
        "xaa_requests_total",
        &[("endpoint", "token"), ("status", "429")],
    );
    assert_eq!(answered_429, limited, "{text}");
}

#[tokio::test]
async fn upstream_key_fetches_and_refused_refetches_are_counted_by_issuer_name() {
    let app = TestApp::spawn().await;
    let broker = real_broker(&app).await;
    let (before, _) = scrape(&app, &broker.metrics).await;
    let hop = |app: &TestApp| app.idp.id_token("alice", "triage-agent", &["developer"]);
    let (status, _) = exchange(&app, &broker, "triage-agent", "triage-agent-secret", &hop(&app)).await;
    assert_eq!(status, 200, "first use: one fetch");
    app.idp.rotate(true);
    let (status, _) = exchange(&app, &broker, "triage-agent", "triage-agent-secret", &hop(&app)).await;
    assert_eq!(status, 200, "an unknown kid: one refetch");
    app.idp.rotate(true);
    let (status, _) = exchange(&app, &broker, "triage-agent", "triage-agent-secret", &hop(&app)).await;
    assert_eq!(
        status, 400,
        "another unknown kid within min_refetch_interval_secs: refused"
    );

    let (after, text) = scrape(&app, &broker.metrics).await;
    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let corp = ("issuer", "corp-idp");
    assert_eq!(
        delta("xaa_jwks_fetches_total", &[corp, ("result", "ok")]),
        2.0,
        "{text}"
    );
    assert_eq!(
        delta("xaa_jwks_fetches_total", &[corp, ("result", "error")]),
        0.0,
        "{text}"
    );
    assert_eq!(delta("xaa_jwks_refetch_refused_total", &[corp]), 1.0, "{text}");
    assert_eq!(delta("xaa_jwks_cache_hits_total", &[corp]), 0.0, "{text}");
}

#[tokio::test]
async fn a_subject_token_presented_twice_is_one_verified_cache_miss_then_one_hit() {
    let app = TestApp::spawn().await;
    let broker = real_broker(&app).await;
    let (before, _) = scrape(&app, &broker.metrics).await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    for _ in 0..2 {
        let (status, body) = exchange(&app, &broker, "triage-agent", "triage-agent-secret", &id_token).await;
        assert_eq!(status, 200, "{body}");
    }
    let (after, text) = scrape(&app, &broker.metrics).await;
    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let kind = [("token", "id_token")];
    assert_eq!(delta("xaa_verified_cache_misses_total", &kind), 1.0, "{text}");
    assert_eq!(delta("xaa_verified_cache_hits_total", &kind), 1.0, "{text}");
    // Client authentication here is a secret: no other token was looked up.
    assert_eq!(delta("xaa_verified_cache_misses_total", &[]), 1.0, "{text}");
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_never_on_the_oauth_port() {
    let app = TestApp::spawn().await;
    let (scrape, _) = scrape(&app, &app.metrics_url()).await;
    assert_eq!(
        value(&scrape, "xaa_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    let on_oauth_port = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(on_oauth_port.status(), 404);
    let post = app.http.post(app.metrics_url()).send().await.unwrap();
    assert_eq!(post.status(), 405);
    let other = app.metrics_url().replace("/metrics", "/token");
    assert_eq!(app.http.get(other).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_peer_outside_the_allow_list_is_refused_403() {
    let app = TestApp::spawn_with(|c| c.metrics.allow = vec!["10.0.0.0/8".into(), "fd00::/8".into()]).await;
    let resp = app.http.get(app.metrics_url()).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("xaa_"), "no metric leaks into a refusal: {body}");
}

#[tokio::test]
async fn disabled_metrics_bind_no_listener() {
    let app = TestApp::spawn_with(|c| c.metrics.enabled = false).await;
    assert!(app.metrics_base.is_none());
}

#[test]
fn bad_metrics_keys_are_refused_naming_the_key() {
    let mut config = example_config();
    config.metrics.listen = "localhost".into();
    config.metrics.allow = vec!["127.0.0.0/8".into(), "10.0.0.1/8".into(), "nope".into()];
    let err = format!("{:#}", config.resolve("test").unwrap_err());
    assert!(err.contains("metrics.listen"), "{err}");
    assert!(err.contains("metrics.allow[1]") && err.contains("host bits"), "{err}");
    assert!(err.contains("metrics.allow[2]"), "{err}");
    config.metrics.listen = "127.0.0.1:9464".into();
    config.metrics.allow = vec![];
    let err = format!("{:#}", config.resolve("test").unwrap_err());
    assert!(err.contains("metrics.allow") && err.contains("allows no one"), "{err}");
}
