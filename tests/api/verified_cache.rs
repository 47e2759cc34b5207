//! The cache of verified signatures (specs/decisions.md §24): a subject
//! token an MCP server exchanges for several downstreams is verified once,
//! and a hit never accepts what a miss would refuse — an expired token, a
//! token whose key was rotated, re-keyed or reloaded, a revoked token.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use xaa_broker::app::reload;
use xaa_broker::clock::{Clock, ManualClock};
use xaa_broker::config::Config;
use xaa_broker::types::now_secs;

use crate::support::*;

const LOGS_API: &str = "https://logs-api.example.com";

/// The cache's (hits, misses) since `before`.
fn since(app: &TestApp, before: (u64, u64)) -> (u64, u64) {
    let (hits, misses) = app.state.verified.stats();
    (hits - before.0, misses - before.1)
}

/// triage-agent exchanges the ID token for two audiences: verified at the
/// first exchange, a cache hit at the second.
async fn exchanged_twice(app: &TestApp, id_token: &str) {
    let before = app.state.verified.stats();
    for target in [LOGS, COST] {
        app.exchange_for_hop("triage-agent", id_token, ID_TOKEN, target, &[])
            .await
            .assert_ok();
    }
    assert_eq!(since(app, before), (1, 1), "the second exchange was a hit");
}

/// mcp-logs exchanges `cached` (its signature remembered) and then `unseen`
/// (never verified) for the logs API: both are refused for `reason`, the
/// first as a hit and the second as a miss, with the same answer.
async fn refused_alike(app: &TestApp, cached: &str, unseen: &str, reason: &str) {
    let before = app.state.verified.stats();
    let hit = refused_for(
        app,
        app.exchange_for_hop("mcp-logs", cached, ACCESS_TOKEN, LOGS_API, &[]),
        reason,
    )
    .await;
    hit.assert_error(400, "invalid_request");
    assert_eq!(since(app, before), (1, 0), "found in the cache, and refused");

    let before = app.state.verified.stats();
    let miss = refused_for(
        app,
        app.exchange_for_hop("mcp-logs", unseen, ACCESS_TOKEN, LOGS_API, &[]),
        reason,
    )
    .await;
    assert_eq!(since(app, before), (0, 1));
    assert_eq!(hit.body, miss.body, "the same answer, hit or miss");
}

/// The three downstreams mcp-logs may reach, with the scope alice's chain
/// through triage-agent gets at each.
const FAN_OUT: [(&str, &str); 3] = [
    (COST, "cost.read"),
    (INCIDENTS, "incidents.read incidents.write"),
    (LOGS_API, "logs.query"),
];

/// mcp-logs exchanges `subject` for each of [`FAN_OUT`]; every token is
/// checked against the published keys and for its claims.
async fn fan_out(app: &TestApp, first: &Resp) -> Vec<Value> {
    let mut issued = Vec::new();
    for (target, scope) in FAN_OUT {
        let r = app
            .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, target, &[])
            .await;
        r.assert_ok();
        let claims = app.verify_with_published_jwks(r.token(), "at+jwt").await;
        assert_eq!(claims["aud"], target);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["client_id"], "mcp-logs");
        assert_eq!(claims["txn"], first.claims()["txn"]);
        assert_eq!(claims["roles"], json!(["developer", "sre"]));
        assert_eq!(
            claims["act"],
            json!({"sub": "mcp:logs", "sub_profile": "service", "act": {"sub": "agent:triage", "sub_profile": "ai_agent"}})
        );
        assert_eq!(
            (claims["scope"].as_str(), r.body["scope"].as_str()),
            (Some(scope), Some(scope))
        );
        assert!(
            claims["exp"].as_i64() <= first.claims()["exp"].as_i64(),
            "never outlives the subject"
        );
        issued.push(claims);
    }
    issued
}

#[tokio::test]
async fn one_subject_token_fans_out_to_three_audiences_verified_once() {
    let app = TestApp::spawn().await;
    let first = app.first_hop("triage-agent", LOGS).await;
    first.assert_ok();
    let before = app.state.verified.stats();
    let issued = fan_out(&app, &first).await;
    assert_eq!(since(&app, before), (2, 1), "one signature check, then two hits");
    let jtis: std::collections::BTreeSet<_> = issued.iter().map(|c| c["jti"].to_string()).collect();
    assert_eq!(jtis.len(), 3, "three distinct tokens");

    // The same answers with the cache off, where nothing is remembered.
    let off = TestApp::spawn_with(|c| c.tokens.verified_cache_bytes = 0).await;
    let first = off.first_hop("triage-agent", LOGS).await;
    first.assert_ok();
    fan_out(&off, &first).await;
    assert_eq!(off.state.verified.stats(), (0, 0));
}

#[tokio::test]
async fn an_id_token_exchanged_for_two_audiences_is_verified_once() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    exchanged_twice(&app, &id_token).await;
}

#[tokio::test]
async fn a_cached_token_is_refused_once_expired_like_one_never_seen() {
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let cached = app.first_hop("triage-agent", LOGS).await;
    let unseen = app.first_hop("triage-agent", LOGS).await;
    for r in [&cached, &unseen] {
        r.assert_ok();
    }
    for target in [COST, INCIDENTS] {
        app.exchange_for_hop("mcp-logs", cached.token(), ACCESS_TOKEN, target, &[])
            .await
            .assert_ok();
    }

    // Past exp + skew by the broker's clock (no real time passes: the
    // entry is still in the cache).
    let exp = cached.claims()["exp"].as_i64().unwrap();
    let skew = app.config.tokens.clock_skew_secs;
    clock.advance_secs(exp + skew - clock.now());

    refused_alike(&app, cached.token(), unseen.token(), "token.expired").await;
}

#[tokio::test]
async fn a_cached_id_token_is_refused_once_its_key_is_retired() {
    let app = TestApp::spawn().await;
    let old = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    exchanged_twice(&app, &old).await;

    // The IdP rotates and drops the old key; a token under the new key
    // makes the broker refetch.
    app.idp.rotate(false);
    app.first_hop("triage-agent", LOGS).await.assert_ok();

    refused_for(
        &app,
        app.exchange_for_hop("triage-agent", &old, ID_TOKEN, COST, &[]),
        "token.unknown_key",
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_cached_id_token_is_refused_once_its_kid_is_re_keyed() {
    let app = TestApp::spawn().await;
    let old = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    exchanged_twice(&app, &old).await;

    // New material under the same kid. The broker learns it at its next
    // refetch, here caused by a token naming a kid it does not know.
    app.idp.rekey_keeping_kids();
    let unknown = app.idp.sign_with_header(
        json!({"alg": "ES256", "kid": "not-published", "typ": "JWT"}),
        &app.idp.id_token_claims("alice", "triage-agent", &["developer"]),
    );
    let hits = app.idp.jwks_hits();
    refused_for(
        &app,
        app.exchange_for_hop("triage-agent", &unknown, ID_TOKEN, LOGS, &[]),
        "token.unknown_key",
    )
    .await;
    assert_eq!(app.idp.jwks_hits(), hits + 1, "refetched");

    // The old token's kid now names another key: its cached signature does
    // not count for it.
    let before = app.state.verified.stats();
    refused_for(
        &app,
        app.exchange_for_hop("triage-agent", &old, ID_TOKEN, COST, &[]),
        "token.signature",
    )
    .await
    .assert_error(400, "invalid_request");
    assert_eq!(since(&app, before), (0, 1));
    app.first_hop("triage-agent", LOGS).await.assert_ok();
}

/// The running app's config with `edit` applied, as a TOML file to reload.
fn config_file(app: &TestApp, edit: impl FnOnce(&mut Config)) -> PathBuf {
    let mut config = app.config.clone();
    edit(&mut config);
    let path = std::env::temp_dir().join(format!("xaa-verified-{}.toml", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

/// Pin the partner's current keys inline (`issuers.partner.jwks`) and reload.
fn reload_with_partner_keys_inline(app: &TestApp) {
    let keys = app.partner.public_jwks();
    let path = config_file(app, |c| {
        let partner = c.issuers.get_mut("partner").unwrap();
        partner.jwks = Some(keys);
        partner.jwks_uri = None;
    });
    reload(&app.state, &path).expect("the file reloads");
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_reload_that_re_keys_an_inline_issuer_refuses_its_cached_tokens() {
    let app = TestApp::spawn().await;
    reload_with_partner_keys_inline(&app);
    let now = now_secs();
    let claims = json!({
        "iss": app.partner.issuer, "sub": "alice", "aud": LOGS, "client_id": "partner-portal",
        "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(), "scope": "logs.read",
        "groups": ["sre"],
    });
    let old = app.partner.sign(Some("at+jwt"), &claims);
    let before = app.state.verified.stats();
    for target in [COST, INCIDENTS] {
        app.exchange_for_hop("mcp-logs", &old, ACCESS_TOKEN, target, &[])
            .await
            .assert_ok();
    }
    assert_eq!(since(&app, before), (1, 1));

    // A reload parses the inline keys again: even unchanged, they are new
    // verifiers, so the next use checks the signature again (and passes).
    reload_with_partner_keys_inline(&app);
    let before = app.state.verified.stats();
    app.exchange_for_hop("mcp-logs", &old, ACCESS_TOKEN, COST, &[])
        .await
        .assert_ok();
    assert_eq!(since(&app, before), (0, 1));

    // Re-keyed under the same kid and reloaded: the cached token is refused.
    app.partner.rekey_keeping_kids();
    reload_with_partner_keys_inline(&app);
    refused_for(
        &app,
        app.exchange_for_hop("mcp-logs", &old, ACCESS_TOKEN, INCIDENTS, &[]),
        "token.signature",
    )
    .await
    .assert_error(400, "invalid_request");
    let fresh = app.partner.sign(Some("at+jwt"), &claims);
    app.exchange_for_hop("mcp-logs", &fresh, ACCESS_TOKEN, COST, &[])
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_revoked_subject_token_is_refused_at_commit_though_its_signature_is_cached() {
    let app = TestApp::spawn().await;
    let cached = app.first_hop("triage-agent", LOGS).await;
    let unseen = app.first_hop("triage-agent", LOGS).await;
    for r in [&cached, &unseen] {
        r.assert_ok();
    }
    for target in [COST, INCIDENTS] {
        app.exchange_for_hop("mcp-logs", cached.token(), ACCESS_TOKEN, target, &[])
            .await
            .assert_ok();
    }
    // The security team revokes both transactions (by txn: the revocation
    // itself reads no token, so `unseen` stays out of the cache).
    for r in [&cached, &unseen] {
        let txn = r.claims()["txn"].as_str().unwrap().to_owned();
        app.post_form("/admin/revoke", Auth::Basic("security-ops"), &[("txn", &txn)])
            .await
            .assert_ok();
    }

    refused_alike(&app, cached.token(), unseen.token(), "subject_token.revoked").await;
}

#[tokio::test]
async fn a_subject_token_revoked_by_its_client_is_refused_though_its_signature_is_cached() {
    let app = TestApp::spawn().await;
    let first = app.first_hop("triage-agent", LOGS).await;
    first.assert_ok();
    for target in [COST, INCIDENTS] {
        app.exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, target, &[])
            .await
            .assert_ok();
    }
    // RFC 7009, by the client it was issued to: revoked by its jti.
    let revoked = app
        .post_form("/revoke", Auth::Basic("triage-agent"), &[("token", first.token())])
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    let before = app.state.verified.stats();
    refused_for(
        &app,
        app.exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, LOGS_API, &[]),
        "subject_token.revoked",
    )
    .await
    .assert_error(400, "invalid_request");
    assert_eq!(since(&app, before), (1, 0));
}
