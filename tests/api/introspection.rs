//! RFC 7662 token introspection (`POST /introspect`): at the enterprise on
//! hop tokens, and at the resource AS on tokens it minted from ID-JAGs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use xaa_broker::types::now_secs;

use crate::support::*;

/// The members an active token's introspection answer has (issue 3 §5),
/// with `client_profile` when the token carries one
/// (draft-mora-oauth-entity-profiles; decisions §16).
const ACTIVE_FIELDS: [&str; 13] = [
    "act",
    "active",
    "aud",
    "client_id",
    "client_profile",
    "exp",
    "iat",
    "iss",
    "jti",
    "scope",
    "sub",
    "token_type",
    "txn",
];

async fn introspect(app: &TestApp, auth: Auth<'_>, token: &str) -> Resp {
    app.post_form("/introspect", auth, &[("token", token)]).await
}

/// `{"active": false}` and nothing else (RFC 7662 §2.2), not cacheable.
#[track_caller]
fn assert_inactive(r: &Resp) {
    r.assert_ok();
    assert_eq!(r.body, json!({"active": false}));
}

/// What introspection must say about one of our access tokens: its claims.
fn expected_answer(claims: &Value) -> Value {
    json!({
        "active": true,
        "iss": claims["iss"],
        "sub": claims["sub"],
        "aud": claims["aud"],
        "client_id": claims["client_id"],
        "client_profile": claims["client_profile"],
        "scope": claims["scope"],
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
        "token_type": "Bearer",
        "txn": claims["txn"],
        "act": claims["act"],
    })
}

#[track_caller]
fn assert_listed_fields(r: &Resp, claims: &Value) {
    r.assert_ok();
    let expected = expected_answer(claims);
    for field in ACTIVE_FIELDS {
        assert_eq!(r.body[field], expected[field], "{field} in {}", r.body);
    }
}

#[track_caller]
fn assert_no_other_fields(r: &Resp) {
    let mut keys: Vec<&str> = r.body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ACTIVE_FIELDS, "body: {}", r.body);
}

/// triage-agent's first hop for alice to the logs MCP, then mcp-logs' second
/// hop to the cost tool: a token with a two-entry act chain.
async fn second_hop(app: &TestApp) -> Resp {
    app.agent_then_logs_to_cost("alice").await.2
}

/// alice's ID-JAG from the enterprise, redeemed at the resource AS by
/// 0oa-triage.
async fn redeemed(enterprise: &TestApp, ras: &TestApp) -> Resp {
    let id_token = enterprise.idp.id_token("alice", "triage-agent", &["sre"]);
    let jag = enterprise
        .exchange_for_id_jag("triage-agent", &id_token, &ras.issuer, &[("resource", SAAS_MCP)])
        .await;
    jag.assert_ok();
    let r = ras
        .token(
            Auth::Basic("0oa-triage"),
            &[("grant_type", JWT_BEARER), ("assertion", jag.token())],
        )
        .await;
    r.assert_ok();
    r
}

#[tokio::test]
async fn introspection_requires_client_authentication() {
    let app = TestApp::spawn().await;
    let hop = second_hop(&app).await;
    for auth in [
        Auth::None,
        Auth::BasicWith("mcp-logs", "wrong-secret"),
        Auth::BasicWith("nobody", "nobody-secret"),
    ] {
        let r = introspect(&app, auth, hop.token()).await;
        r.assert_error(401, "invalid_client");
        assert!(r.body.get("active").is_none(), "{}", r.body);
    }
}

#[tokio::test]
async fn an_active_hop_token_introspects_with_its_claims() {
    let app = TestApp::spawn().await;
    let hop = second_hop(&app).await;
    let claims = hop.claims();
    let r = introspect(&app, Auth::Basic("cost-tool"), hop.token()).await;
    assert_listed_fields(&r, &claims);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["iss"], app.issuer);
    assert_eq!(r.body["sub"], "alice");
    assert_eq!(r.body["aud"], COST);
    assert_eq!(r.body["client_id"], "mcp-logs");
    assert_eq!(r.body["client_profile"], "service");
    assert_eq!(r.body["scope"], "cost.read");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(
        r.body["act"],
        json!({"sub": "mcp:logs", "sub_profile": "service",
               "act": {"sub": "agent:triage", "sub_profile": "ai_agent"}})
    );
    assert!(r.body["exp"].is_i64() && r.body["iat"].is_i64());
    let txn = r.body["txn"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(txn).unwrap().get_version_num(), 7);
}

/// Issue 3 §5 lists the members of an active answer; nothing else (such as
/// the chain's `roles`) is disclosed to an introspecting client.
#[tokio::test]
async fn an_active_hop_token_introspects_with_exactly_the_listed_fields() {
    let app = TestApp::spawn().await;
    let hop = second_hop(&app).await;
    let r = introspect(&app, Auth::Basic("cost-tool"), hop.token()).await;
    r.assert_ok();
    assert_eq!(r.body, expected_answer(&hop.claims()));
    assert_no_other_fields(&r);
}

#[tokio::test]
async fn a_token_redeemed_at_the_resource_as_introspects_there_with_exactly_the_listed_fields() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let token = redeemed(&enterprise, &ras).await;
    let claims = token.claims();
    let r = introspect(&ras, Auth::Basic("mcp-saas"), token.token()).await;
    assert_listed_fields(&r, &claims);
    assert_no_other_fields(&r);
    assert_eq!(r.body["iss"], ras.issuer);
    assert_eq!(r.body["aud"], SAAS_MCP);
    assert_eq!(r.body["client_id"], "0oa-triage");
    assert_eq!(r.body["client_profile"], "ai_agent", "the redeeming client's kind");
    assert_eq!(r.body["sub"], "alice");
    assert_eq!(r.body["scope"], "crm.read crm.write");
    assert_eq!(
        r.body["act"],
        json!({"sub": "agent:triage", "iss": enterprise.issuer, "sub_profile": "ai_agent"})
    );
    // The resource AS's tokens are foreign at the enterprise, and vice versa.
    assert_inactive(&introspect(&enterprise, Auth::Basic("mcp-logs"), token.token()).await);
    let hop = enterprise.first_hop("triage-agent", LOGS).await;
    assert_inactive(&introspect(&ras, Auth::Basic("mcp-saas"), hop.token()).await);
}

#[tokio::test]
async fn a_token_without_an_actor_introspects_without_act() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("chat-app", LOGS).await;
    hop.assert_ok();
    let r = introspect(&app, Auth::Basic("mcp-logs"), hop.token()).await;
    r.assert_ok();
    assert_eq!(r.body["active"], true);
    assert!(r.body.get("act").is_none(), "no null act: {}", r.body);
    assert_eq!(r.body["client_id"], "chat-app");
    assert!(
        r.body.get("client_profile").is_none(),
        "an app's token has no profile to disclose: {}",
        r.body
    );
}

#[tokio::test]
async fn the_token_type_hint_is_only_a_hint() {
    let app = TestApp::spawn().await;
    let hop = second_hop(&app).await;
    for hint in ["refresh_token", "access_token", "nonsense"] {
        let r = app
            .post_form(
                "/introspect",
                Auth::Basic("cost-tool"),
                &[("token", hop.token()), ("token_type_hint", hint)],
            )
            .await;
        r.assert_ok();
        assert_eq!(r.body["active"], true, "hint {hint}: {}", r.body);
    }
}

#[tokio::test]
async fn an_expired_token_is_inactive() {
    let clock = std::sync::Arc::new(xaa_broker::clock::ManualClock::new());
    let app = TestApp::spawn_with_clock(clock.clone(), |c| {
        c.tokens.clock_skew_secs = 0;
        c.audiences.get_mut(LOGS).unwrap().ttl_secs = Some(1);
    })
    .await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    let claims = hop.claims();
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 1);
    // Two seconds later on the broker's clock: no sleeping.
    clock.advance_secs(2);
    assert_inactive(&introspect(&app, Auth::Basic("mcp-logs"), hop.token()).await);
}

#[tokio::test]
async fn an_expired_token_at_the_resource_as_is_inactive() {
    let (enterprise, ras) = TestApp::spawn_pair_with(
        |_| {},
        |c| {
            c.tokens.clock_skew_secs = 0;
            c.audiences.get_mut(SAAS_MCP).unwrap().ttl_secs = Some(1);
        },
    )
    .await;
    let token = redeemed(&enterprise, &ras).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_inactive(&introspect(&ras, Auth::Basic("mcp-saas"), token.token()).await);
}

#[tokio::test]
async fn garbage_is_inactive() {
    let app = TestApp::spawn().await;
    let hop = second_hop(&app).await;
    let mut tampered: Vec<String> = hop.token().split('.').map(str::to_owned).collect();
    let mut claims = hop.claims();
    claims["scope"] = json!("cost.read cost.approve");
    tampered[1] = B64.encode(claims.to_string());
    let tampered = tampered.join(".");
    for garbage in [
        "not-a-token",
        "a.b.c",
        "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
        tampered.as_str(),
        &"x".repeat(20_000),
    ] {
        assert_inactive(&introspect(&app, Auth::Basic("cost-tool"), garbage).await);
    }
}

#[tokio::test]
async fn a_foreign_token_is_inactive() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    // A partner at+jwt: trusted as a subject token, but not ours to vouch for.
    let partner = app.partner.sign(
        Some("at+jwt"),
        &json!({
            "iss": app.partner.issuer, "sub": "alice", "aud": LOGS, "client_id": "partner-portal",
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
            "scope": "logs.read", "txn": "partner-txn",
        }),
    );
    assert_inactive(&introspect(&app, Auth::Basic("mcp-logs"), &partner).await);
    // One claiming to be ours but signed by someone else.
    let forged = app.partner.sign(
        Some("at+jwt"),
        &json!({
            "iss": app.issuer, "sub": "alice", "aud": LOGS, "client_id": "triage-agent",
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
            "scope": "logs.read", "txn": "forged-txn",
        }),
    );
    assert_inactive(&introspect(&app, Auth::Basic("mcp-logs"), &forged).await);
}

#[tokio::test]
async fn an_id_jag_or_id_token_is_not_an_active_access_token() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let jag = app
        .exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[("resource", SAAS_MCP)])
        .await;
    jag.assert_ok();
    assert_eq!(jag.claims()["iss"], app.issuer, "an ID-JAG we issued");
    assert_inactive(&introspect(&app, Auth::Basic("chat-app"), jag.token()).await);
    assert_inactive(&introspect(&app, Auth::Basic("chat-app"), &id_token).await);
}

#[tokio::test]
async fn a_missing_token_parameter_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    app.post_form("/introspect", Auth::Basic("mcp-logs"), &[])
        .await
        .assert_error(400, "invalid_request");
    app.post_form("/introspect", Auth::Basic("mcp-logs"), &[("token", "")])
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn introspection_answers_are_not_cacheable() {
    let app = TestApp::spawn().await;
    let hop = second_hop(&app).await;
    for token in [hop.token(), "garbage"] {
        let r = introspect(&app, Auth::Basic("cost-tool"), token).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }
}

#[tokio::test]
async fn introspection_accepts_client_secret_post() {
    let app = TestApp::spawn().await;
    let hop = second_hop(&app).await;
    let r = introspect(&app, Auth::Post("cost-tool"), hop.token()).await;
    r.assert_ok();
    assert_eq!(r.body["active"], true);
}
