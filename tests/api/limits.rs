//! Rate limits (MCP EMA §7.5.1) and unauthenticated noise (decisions §13,
//! §19): a client over its rate and a source that keeps failing to
//! authenticate get `429 temporarily_unavailable` with `Retry-After`; and no
//! flood of unauthenticated requests can grow or evict the hash-chained
//! audit trail: such requests are only counted, in bounded summaries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xaa_broker::audit::Decision;
use xaa_broker::audit::NoiseSummary;
use xaa_broker::config::{Config, RateLimitConfig, StoreConfig};
use xaa_broker::types::now_secs;

use crate::support::redis::{redis_url, unique_prefix};
use crate::support::*;
use xaa_broker::clock::ManualClock;

/// A 429 rate-limit answer: RFC 6749-shaped body with
/// `temporarily_unavailable`, no-store, and `Retry-After` in whole seconds
/// (at least 1). Returns the Retry-After.
#[track_caller]
fn assert_rate_limited(r: &Resp) -> Duration {
    r.assert_error(429, "temporarily_unavailable");
    let retry_after = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("Retry-After in whole seconds: {:?}", r.headers));
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    Duration::from_secs(retry_after)
}

fn rate(per_second: u32, burst: u32) -> Option<RateLimitConfig> {
    Some(RateLimitConfig { per_second, burst })
}

/// The noise summaries written since `before` (a flush happens first).
async fn new_summaries(app: &TestApp, before: &[NoiseSummary]) -> Vec<NoiseSummary> {
    app.flush_noise().await;
    app.noise().await.into_iter().filter(|s| !before.contains(s)).collect()
}

/// (reason, client id) → total count of `summaries`.
fn totals(summaries: &[NoiseSummary]) -> BTreeMap<(String, Option<String>), u64> {
    let mut t = BTreeMap::new();
    for s in summaries {
        *t.entry((s.reason.clone(), s.client_id.clone())).or_default() += s.count;
    }
    t
}

fn key(reason: &str, client: Option<&str>) -> (String, Option<String>) {
    (reason.to_owned(), client.map(str::to_owned))
}

// ---------------------------------------------------------------------------
// Per authenticated client
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_over_its_burst_gets_429_until_its_bucket_refills() {
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::spawn_with_clock(clock.clone(), |c| {
        c.clients.get_mut("chat-app").unwrap().rate_limit = rate(1, 2)
    })
    .await;
    app.first_hop("chat-app", LOGS).await.assert_ok();
    app.first_hop("chat-app", LOGS).await.assert_ok();
    let records = app.all_audit().await.len();
    let noise_before = app.noise().await;

    let over = refused(&app, app.first_hop("chat-app", LOGS)).await;
    let retry_after = assert_rate_limited(&over);
    assert_eq!(retry_after, Duration::from_secs(1), "one token a second");

    // The 429 is not a decision about the client: no audit record, but a
    // noise summary naming the client.
    assert_eq!(app.all_audit().await.len(), records, "a 429 writes no audit record");
    let noise = new_summaries(&app, &noise_before).await;
    assert_eq!(
        totals(&noise),
        BTreeMap::from([(key("rate_limit.client", Some("chat-app")), 1)]),
        "{noise:?}"
    );
    assert_eq!(noise[0].error, "temporarily_unavailable");

    // Another client is unaffected.
    app.first_hop("triage-agent", LOGS).await.assert_ok();
    // After Retry-After (on the broker's clock: no sleeping), the client is
    // served again, and audited again.
    clock.advance_secs(retry_after.as_secs() as i64);
    app.first_hop("chat-app", LOGS).await.assert_ok();
    assert_eq!(app.all_audit().await.len(), records + 2);
}

#[tokio::test]
async fn a_clients_own_rate_limit_replaces_the_default() {
    let app = TestApp::spawn_with(|c| {
        c.limits.client_per_second = 1;
        c.limits.client_burst = 1;
        c.clients.get_mut("chat-app").unwrap().rate_limit = rate(1, 3);
    })
    .await;
    for _ in 0..3 {
        app.first_hop("chat-app", LOGS).await.assert_ok();
    }
    assert_rate_limited(&app.first_hop("chat-app", LOGS).await);
    // triage-agent has no override: the default burst of one.
    app.first_hop("triage-agent", LOGS).await.assert_ok();
    assert_rate_limited(&app.first_hop("triage-agent", LOGS).await);
}

#[tokio::test]
async fn every_client_authenticated_endpoint_counts_against_the_client() {
    let app = TestApp::spawn_with(|c| c.clients.get_mut("security-ops").unwrap().rate_limit = rate(1, 3)).await;
    let hop = app.first_hop("chat-app", LOGS).await;
    hop.assert_ok();
    let txn = hop.claims()["txn"].as_str().unwrap().to_owned();
    let admin = Auth::Basic("security-ops");
    app.post_form("/introspect", admin, &[("token", hop.token())])
        .await
        .assert_ok();
    app.post_form("/revoke", admin, &[("token", "not-a-token")])
        .await
        .assert_ok();
    app.post_form("/admin/audit", admin, &[("txn", &txn)]).await.assert_ok();
    assert_rate_limited(&app.post_form("/admin/revoke", admin, &[("txn", &txn)]).await);
    // Nothing was revoked: the refused call did no work.
    assert_eq!(
        app.post_form("/introspect", Auth::Basic("chat-app"), &[("token", hop.token())])
            .await
            .body["active"],
        true
    );
}

#[tokio::test]
async fn a_reload_that_changes_a_clients_rate_applies_to_its_next_request() {
    let app = TestApp::spawn_with(|c| c.clients.get_mut("chat-app").unwrap().rate_limit = rate(1, 1)).await;
    app.first_hop("chat-app", LOGS).await.assert_ok();
    assert_rate_limited(&app.first_hop("chat-app", LOGS).await);

    let mut config = app.config.clone();
    config.clients.get_mut("chat-app").unwrap().rate_limit = rate(100, 5);
    let path = std::env::temp_dir().join(format!("xaa-limits-{}.toml", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    xaa_broker::app::reload(&app.state, &path).expect("a valid file reloads");
    let _ = std::fs::remove_file(path);

    for _ in 0..5 {
        app.first_hop("chat-app", LOGS).await.assert_ok();
    }
}

#[tokio::test]
async fn with_limits_disabled_nothing_is_rate_limited() {
    let app = TestApp::spawn_with(|c| {
        c.limits.enabled = false;
        c.limits.failed_auth_burst = 1;
        c.clients.get_mut("chat-app").unwrap().rate_limit = rate(1, 1);
    })
    .await;
    for _ in 0..3 {
        app.first_hop("chat-app", LOGS).await.assert_ok();
        app.token(Auth::BasicWith("chat-app", "wrong"), &[("grant_type", TOKEN_EXCHANGE)])
            .await
            .assert_error(401, "invalid_client");
    }
}

// ---------------------------------------------------------------------------
// Per source, for failed client authentication
// ---------------------------------------------------------------------------

/// A private_key_jwt client whose keys are fetched from `keys`, so a test
/// can see whether its authentication was even attempted.
fn add_remote_bot(c: &mut Config, keys: &FakeIdp) {
    let mut bot = c.clients["reporting-bot"].clone();
    bot.jwks = None;
    bot.jwks_uri = Some(keys.jwks_uri());
    bot.actor_sub = Some("agent:remote".into());
    c.clients.insert("remote-bot".into(), bot);
}

fn remote_bot_assertion(app: &TestApp, keys: &FakeIdp) -> String {
    let now = now_secs();
    keys.sign(
        Some("JWT"),
        &json!({
            "iss": "remote-bot", "sub": "remote-bot", "aud": app.issuer,
            "iat": now, "exp": now + 120, "jti": uuid::Uuid::now_v7().to_string(),
        }),
    )
}

async fn remote_bot_first_hop(app: &TestApp, assertion: &str) -> Resp {
    app.first_hop_with_assertion("remote-bot", assertion).await
}

#[tokio::test]
async fn a_source_that_keeps_failing_authentication_is_refused_before_any_authentication_work() {
    let keys = FakeIdp::start().await;
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::spawn_with_clock(clock.clone(), |c| {
        c.limits.failed_auth_per_minute = 30;
        c.limits.failed_auth_burst = 2;
        add_remote_bot(c, &keys);
    })
    .await;
    let records = app.all_audit().await.len();
    let noise_before = app.noise().await;

    // Two failures empty the source's bucket (each a 401 as usual) ...
    for _ in 0..2 {
        app.first_hop_with_secret("chat-app", "not-the-secret")
            .await
            .assert_error(401, "invalid_client");
    }
    // ... so even valid credentials from it now get 429, before they are
    // looked at: the remote client's keys are not even fetched.
    let assertion = remote_bot_assertion(&app, &keys);
    let retry_after = assert_rate_limited(&refused(&app, remote_bot_first_hop(&app, &assertion)).await);
    assert_eq!(keys.jwks_hits(), 0, "no authentication work for a blocked source");
    assert_rate_limited(&refused(&app, app.first_hop("chat-app", LOGS)).await);
    assert_eq!(retry_after, Duration::from_secs(2), "one token per 2 s at 30 a minute");

    // None of it is in the audit trail; all of it is in the summaries.
    assert_eq!(app.all_audit().await.len(), records, "no audit record");
    let noise = new_summaries(&app, &noise_before).await;
    assert_eq!(
        totals(&noise),
        BTreeMap::from([
            (key("client_auth.bad_secret", Some("chat-app")), 2),
            (key("rate_limit.source", None), 2),
        ]),
        "{noise:?}"
    );
    assert!(noise.iter().all(|s| s.source == "127.0.0.1"), "{noise:?}");

    // Once a token has refilled, the source is served again, and the
    // assertion it could not use is still good: nothing was spent.
    clock.advance_secs(retry_after.as_secs() as i64);
    remote_bot_first_hop(&app, &assertion).await.assert_ok();
    assert_eq!(keys.jwks_hits(), 1);
    app.first_hop("chat-app", LOGS).await.assert_ok();
    assert_eq!(app.all_audit().await.len(), records + 2);
}

#[tokio::test]
async fn only_failed_authentication_counts_against_a_source() {
    let app = TestApp::spawn_with(|c| c.limits.failed_auth_burst = 1).await;
    // Refusals of an authenticated client (and malformed requests) do not
    // count: the source keeps being served.
    for _ in 0..3 {
        app.exchange_for_hop("chat-app", "not-a-token", ID_TOKEN, LOGS, &[])
            .await
            .assert_error(400, "invalid_request");
        app.token(Auth::None, &[("grant_type", "urn:example:unknown")])
            .await
            .assert_error(400, "unsupported_grant_type");
    }
    app.first_hop("chat-app", LOGS).await.assert_ok();
    // One failed authentication empties a bucket of one.
    app.first_hop_with_secret("chat-app", "wrong")
        .await
        .assert_error(401, "invalid_client");
    assert_rate_limited(&app.first_hop("chat-app", LOGS).await);
}

// ---------------------------------------------------------------------------
// Floods of unauthenticated requests
// ---------------------------------------------------------------------------

/// The four kinds of garbage of a flood, in turn: no credentials, a wrong
/// secret, a junk body, an unknown client at another endpoint. Each is
/// refused before any client authenticates.
const GARBAGE: [(&str, u16, &str, Option<&str>); 4] = [
    ("/token", 401, "client_auth.missing", None),
    ("/token", 401, "client_auth.bad_secret", Some("chat-app")),
    ("/token", 400, "request.missing_parameter", None),
    ("/introspect", 401, "client_auth.unknown_client", None),
];

fn garbage(http: &reqwest::Client, base: &str, i: usize) -> reqwest::RequestBuilder {
    let (path, ..) = GARBAGE[i % 4];
    let req = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded");
    match i % 4 {
        0 => req.body(format!("grant_type={}", TOKEN_EXCHANGE)),
        1 => req
            .basic_auth("chat-app", Some("not-the-secret"))
            .body(format!("grant_type={}", TOKEN_EXCHANGE)),
        2 => req.body("%%%junk&&=&=\u{1}x&&&"),
        _ => req.basic_auth("no-such-client", Some("x")).body("token=abc"),
    }
}

/// Send `n` garbage requests, 32 in flight, over loopback; each must get its
/// kind's status (so none was rate limited). Bounded in time.
async fn flood(app: &TestApp, n: usize) {
    const IN_FLIGHT: usize = 32;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..IN_FLIGHT {
        let (http, base) = (app.http.clone(), app.base.clone());
        workers.spawn(async move {
            let mut wrong = Vec::new();
            for i in (w..n).step_by(IN_FLIGHT) {
                let status = garbage(&http, &base, i).send().await.unwrap().status().as_u16();
                if status != GARBAGE[i % 4].1 {
                    wrong.push((i, status));
                }
            }
            wrong
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(240), workers.join_all())
        .await
        .expect("the flood finishes in time");
    let wrong: Vec<_> = all.into_iter().flatten().collect();
    assert!(
        wrong.is_empty(),
        "unexpected statuses (request, status): {:?}",
        &wrong[..wrong.len().min(10)]
    );
}

/// The summaries of this app's instance, once their counts add up to `n`
/// (written by the periodic flush; bounded wait).
async fn summaries_adding_up_to(app: &TestApp, n: u64) -> Vec<NoiseSummary> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mine: Vec<NoiseSummary> = app
            .noise()
            .await
            .into_iter()
            .filter(|s| s.instance == app.state.instance)
            .collect();
        let total: u64 = mine.iter().map(|s| s.count).sum();
        if total >= n || Instant::now() > deadline {
            assert_eq!(total, n, "the summaries count every request exactly once");
            return mine;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The flood scenario on a configured app: an authenticated decision before
/// it is still found after it, the flood adds no record to the chain, and
/// the summaries are few and count every request.
async fn a_flood_leaves_the_audit_trail_alone(app: &TestApp, n: usize) {
    let hop = app.first_hop("chat-app", LOGS).await;
    hop.assert_ok();
    let txn = hop.claims()["txn"].as_str().unwrap().to_owned();
    let before = app.audit(&txn).await;
    assert_eq!(before.len(), 1);
    let chain = app.all_audit().await.len();

    let started = Instant::now();
    flood(app, n).await;
    let elapsed = started.elapsed();

    assert_eq!(
        app.all_audit().await.len(),
        chain,
        "the flood added nothing to the chain"
    );
    assert_eq!(
        app.audit(&txn).await,
        before,
        "the decision before the flood is still there"
    );

    let summaries = summaries_adding_up_to(app, n as u64).await;
    // At most one summary per kind of garbage per interval (1 s here).
    let intervals = elapsed.as_secs() as usize + 3;
    assert!(
        summaries.len() <= GARBAGE.len() * intervals,
        "{} summaries for {n} requests over {elapsed:?}",
        summaries.len()
    );
    let per_kind = (n / GARBAGE.len()) as u64;
    let expected: BTreeMap<_, _> = GARBAGE
        .iter()
        .map(|(_, _, reason, client)| (key(reason, *client), per_kind))
        .collect();
    assert_eq!(totals(&summaries), expected);
    for s in &summaries {
        assert_eq!(s.source, "127.0.0.1", "{s:?}");
        assert!(s.first <= s.last, "{s:?}");
    }
}

fn flood_config(c: &mut Config) {
    // The flood is not rate limited, so each request is counted for what it is.
    c.limits.failed_auth_per_minute = 1_000_000;
    c.limits.failed_auth_burst = 1_000_000;
    c.audit.unauthenticated_interval_secs = 1;
}

#[tokio::test]
async fn twenty_thousand_unauthenticated_requests_add_nothing_to_the_audit_trail() {
    let app = TestApp::spawn_with(flood_config).await;
    a_flood_leaves_the_audit_trail_alone(&app, 20_000).await;
}

#[tokio::test]
async fn with_redis_an_unauthenticated_flood_adds_nothing_to_the_audit_trail() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("flood");
    let app = TestApp::spawn_with(|c| {
        flood_config(c);
        c.store = StoreConfig::Redis {
            url: url.clone(),
            prefix: Some(prefix.clone()),
        };
    })
    .await;
    a_flood_leaves_the_audit_trail_alone(&app, 8_000).await;
}

#[tokio::test]
async fn an_admin_reads_the_summaries_newest_first() {
    let app = TestApp::spawn().await;
    app.first_hop_with_secret("chat-app", "wrong")
        .await
        .assert_error(401, "invalid_client");
    app.flush_noise().await;
    app.token(Auth::None, &[("grant_type", TOKEN_EXCHANGE)])
        .await
        .assert_error(401, "invalid_client");
    app.flush_noise().await;

    let r = app
        .post_form(
            "/admin/audit",
            Auth::Basic("security-ops"),
            &[("unauthenticated", "true")],
        )
        .await;
    r.assert_ok();
    let summaries: Vec<Value> = r.body["unauthenticated"].as_array().expect("summaries").clone();
    let reasons: Vec<&str> = summaries.iter().map(|s| s["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["client_auth.missing", "client_auth.bad_secret"],
        "newest first"
    );
    assert_eq!(summaries[1]["client_id"], "chat-app");
    assert_eq!(summaries[1]["count"], 1);
    assert_eq!(summaries[1]["error"], "invalid_client");
    assert_eq!(summaries[1]["source"], "127.0.0.1");

    let one = app
        .post_form(
            "/admin/audit",
            Auth::Basic("security-ops"),
            &[("unauthenticated", "true"), ("limit", "1")],
        )
        .await;
    assert_eq!(one.body["unauthenticated"].as_array().unwrap().len(), 1);
    for bad in [
        vec![("unauthenticated", "true"), ("limit", "0")],
        vec![("unauthenticated", "yes")],
        vec![("unauthenticated", "true"), ("txn", "t")],
    ] {
        app.post_form("/admin/audit", Auth::Basic("security-ops"), &bad)
            .await
            .assert_error(400, "invalid_request");
    }
    // The queries are audited decisions of the admin client.
    let queries: Vec<_> = app
        .all_audit()
        .await
        .into_iter()
        .filter(|r| r.grant.as_deref() == Some("admin.audit"))
        .map(|r| (r.client_id, r.decision))
        .collect();
    let admin = Some("security-ops".to_owned());
    assert_eq!(
        queries,
        [
            (admin.clone(), Decision::Granted),
            (admin.clone(), Decision::Granted),
            (admin.clone(), Decision::Denied),
            (admin.clone(), Decision::Denied),
            (admin, Decision::Denied),
        ]
    );
}
