//! Hop tokens: RFC 8693 exchanges for RFC 9068 access tokens to a downstream
//! resource, carrying `sub`, the `act` chain, `roles` and one `txn`
//! (specs/decisions.md §3–5).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use xaa_broker::audit::Decision;
use xaa_broker::types::now_secs;

use crate::support::*;

/// The `txn` of an issued token.
fn txn(r: &Resp) -> String {
    r.claims()["txn"]
        .as_str()
        .unwrap_or_else(|| panic!("no txn in {}", r.claims()))
        .to_owned()
}

/// alice (developer + sre) via triage-agent to the logs MCP, then the logs
/// MCP onwards to the cost tool: `(first hop, second hop)`.
async fn agent_then_logs_to_cost(app: &TestApp) -> (Resp, Resp) {
    let (_, first, second) = app.agent_then_logs_to_cost("alice").await;
    (first, second)
}

/// An access token from the partner broker (trusted for access tokens),
/// with `tweak` applied to its claims.
fn partner_claims(app: &TestApp, tweak: impl FnOnce(&mut Value)) -> Value {
    let now = now_secs();
    let mut claims = json!({
        "iss": app.partner.issuer, "sub": "alice", "aud": LOGS, "client_id": "partner-portal",
        "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
        "scope": "logs.read", "groups": ["sre"], "txn": "partner-txn-7f3a",
    });
    tweak(&mut claims);
    claims
}

#[tokio::test]
async fn a_first_hop_from_an_id_token_mints_an_at_jwt_with_a_new_txn() {
    let app = TestApp::spawn().await;
    let r = app.first_hop("chat-app", LOGS).await;
    r.assert_ok();
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["issued_token_type"], ACCESS_TOKEN);
    assert!(
        r.body["expires_in"].is_i64(),
        "expires_in must be a JSON number: {}",
        r.body
    );
    assert_eq!(r.body["scope"], "logs.purge logs.read logs.write");
    let header = r.jose_header();
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()), "kid: {header}");
    let claims = app.verify_with_published_jwks(r.token(), "at+jwt").await;
    assert_eq!(claims["iss"], app.issuer);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], LOGS);
    assert_eq!(claims["client_id"], "chat-app");
    assert_eq!(claims["roles"], json!(["developer", "sre"]));
    assert_eq!(claims["scope"], "logs.purge logs.read logs.write");
    assert!(claims.get("act").is_none(), "an app acting for its user adds no actor");
    for id in ["txn", "jti"] {
        let v = claims[id].as_str().unwrap_or_else(|| panic!("no {id}"));
        assert_eq!(
            uuid::Uuid::parse_str(v).unwrap().get_version_num(),
            7,
            "{id} is a UUIDv7"
        );
    }
    assert_ne!(claims["txn"], claims["jti"]);
}

#[tokio::test]
async fn a_second_hop_keeps_the_txn_and_wraps_the_act_chain() {
    let app = TestApp::spawn().await;
    let (first, second) = agent_then_logs_to_cost(&app).await;
    let (c1, c2) = (first.claims(), second.claims());
    assert_eq!(c1["act"], json!({"sub": "agent:triage", "sub_profile": "ai_agent"}));
    assert_eq!(c1["scope"], "logs.read logs.write");

    let claims = app.verify_with_published_jwks(second.token(), "at+jwt").await;
    assert_eq!(claims, c2);
    assert_eq!(c2["sub"], "alice");
    assert_eq!(c2["aud"], COST);
    assert_eq!(c2["client_id"], "mcp-logs");
    assert_eq!(c2["txn"], c1["txn"]);
    assert_eq!(
        c2["act"],
        json!({"sub": "mcp:logs", "sub_profile": "service", "act": {"sub": "agent:triage", "sub_profile": "ai_agent"}})
    );
    assert_eq!(c2["roles"], c1["roles"]);
    assert_eq!(c2["roles"], json!(["developer", "sre"]));
    // Re-derived for the cost tool from the roles, not copied from the
    // logs token (which carried no cost scope at all).
    assert_eq!(c2["scope"], "cost.read");
    assert_eq!(second.body["scope"], "cost.read");
}

#[tokio::test]
async fn an_agent_anywhere_in_the_chain_never_receives_a_human_only_scope() {
    let app = TestApp::spawn().await;
    // The agent itself, directly to the cost tool.
    let direct = app.first_hop("triage-agent", COST).await;
    direct.assert_ok();
    assert_eq!(direct.claims()["scope"], "cost.read");
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    refused(
        &app,
        app.exchange_for_hop("triage-agent", &id_token, ID_TOKEN, COST, &[("scope", "cost.approve")]),
    )
    .await
    .assert_error(400, "invalid_scope");

    // A service acting after the agent: the agent is still in the chain.
    let (first, second) = agent_then_logs_to_cost(&app).await;
    assert!(!second.claims()["scope"].as_str().unwrap().contains("cost.approve"));
    refused(
        &app,
        app.exchange_for_hop(
            "mcp-logs",
            first.token(),
            ACCESS_TOKEN,
            COST,
            &[("scope", "cost.approve")],
        ),
    )
    .await
    .assert_error(400, "invalid_scope");
}

#[tokio::test]
async fn a_human_only_scope_is_granted_to_an_app_acting_directly_for_an_sre() {
    let app = TestApp::spawn_with(|c| c.clients.get_mut("chat-app").unwrap().audiences.push(COST.to_owned())).await;
    let r = app.first_hop("chat-app", COST).await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["scope"], "cost.approve cost.read");
    assert!(claims.get("act").is_none());
}

#[tokio::test]
async fn an_agent_never_receives_a_destructive_scope_even_for_an_sre() {
    let app = TestApp::spawn().await;
    let r = app.first_hop("triage-agent", LOGS).await;
    r.assert_ok();
    assert_eq!(r.claims()["roles"], json!(["developer", "sre"]));
    assert_eq!(r.claims()["scope"], "logs.read logs.write");
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    refused(
        &app,
        app.exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[("scope", "logs.purge")]),
    )
    .await
    .assert_error(400, "invalid_scope");
}

#[tokio::test]
async fn a_re_exchange_to_the_same_audience_never_widens_the_scope() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer", "sre"]);
    let narrow = app
        .exchange_for_hop("chat-app", &id_token, ID_TOKEN, LOGS, &[("scope", "logs.read")])
        .await;
    narrow.assert_ok();
    assert_eq!(narrow.claims()["scope"], "logs.read");

    let asked_more = app
        .exchange_for_hop(
            "chat-app",
            narrow.token(),
            ACCESS_TOKEN,
            LOGS,
            &[("scope", "logs.read logs.write")],
        )
        .await;
    asked_more.assert_ok();
    assert_eq!(asked_more.body["scope"], "logs.read");
    assert_eq!(asked_more.claims()["scope"], "logs.read");

    let asked_nothing = app
        .exchange_for_hop("chat-app", narrow.token(), ACCESS_TOKEN, LOGS, &[])
        .await;
    asked_nothing.assert_ok();
    assert_eq!(asked_nothing.claims()["scope"], "logs.read");

    refused(
        &app,
        app.exchange_for_hop(
            "chat-app",
            narrow.token(),
            ACCESS_TOKEN,
            LOGS,
            &[("scope", "logs.write")],
        ),
    )
    .await
    .assert_error(400, "invalid_scope");
}

#[tokio::test]
async fn a_hop_token_never_outlives_its_subject_token() {
    let app = TestApp::spawn().await;
    let mut claims = app.idp.id_token_claims("alice", "triage-agent", &["developer", "sre"]);
    let id_token_exp = now_secs() + 100;
    claims["exp"] = json!(id_token_exp);
    let id_token = app.idp.sign(Some("JWT"), &claims);
    // Both audiences' TTLs (300 s logs, 120 s cost) reach past the ID token.
    let first = app
        .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[])
        .await;
    first.assert_ok();
    assert_eq!(first.claims()["exp"], id_token_exp);
    let second = app
        .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, COST, &[])
        .await;
    second.assert_ok();
    assert_eq!(second.claims()["exp"], id_token_exp);
}

#[tokio::test]
async fn a_token_for_the_logs_resource_cannot_be_exchanged_by_another_service() {
    let app = TestApp::spawn().await;
    let stolen = app.first_hop("triage-agent", LOGS).await;
    stolen.assert_ok();
    refused(
        &app,
        app.exchange_for_hop("cost-tool", stolen.token(), ACCESS_TOKEN, INCIDENTS, &[]),
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_token_issued_to_a_client_may_be_re_exchanged_by_that_client() {
    let app = TestApp::spawn().await;
    let first = app.first_hop("chat-app", LOGS).await;
    first.assert_ok();
    let again = app
        .exchange_for_hop("chat-app", first.token(), ACCESS_TOKEN, LOGS, &[])
        .await;
    again.assert_ok();
    let (c1, c2) = (first.claims(), again.claims());
    assert_eq!(c2["client_id"], "chat-app");
    assert_eq!(c2["sub"], "alice");
    assert_eq!(c2["txn"], c1["txn"]);
    assert_eq!(c2["scope"], c1["scope"]);
    assert_ne!(c2["jti"], c1["jti"]);
}

#[tokio::test]
async fn a_resource_and_an_audience_naming_different_resources_is_an_invalid_target() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    refused(
        &app,
        app.exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[("audience", COST)]),
    )
    .await
    .assert_error(400, "invalid_target");
}

#[tokio::test]
async fn an_audience_alias_names_the_target_resource() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("audience", "logs"),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN),
    ];
    let r = app.token(Auth::Basic("chat-app"), &form).await;
    r.assert_ok();
    assert_eq!(r.body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(r.claims()["aud"], LOGS);
    assert_eq!(r.claims()["scope"], "logs.read");
}

#[tokio::test]
async fn a_resource_with_a_fragment_is_an_invalid_target() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let with_fragment = format!("{LOGS}#tail");
    refused(
        &app,
        app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, &with_fragment, &[]),
    )
    .await
    .assert_error(400, "invalid_target");
}

#[tokio::test]
async fn a_chain_deeper_than_the_maximum_delegation_depth_is_refused() {
    let app = TestApp::spawn_with(|c| c.tokens.max_delegation_depth = 2).await;
    let (_, second) = agent_then_logs_to_cost(&app).await;
    assert_eq!(
        second.claims()["act"]["act"]["sub"],
        "agent:triage",
        "depth 2 is allowed"
    );
    refused(
        &app,
        app.exchange_for_hop("cost-tool", second.token(), ACCESS_TOKEN, INCIDENTS, &[]),
    )
    .await
    .assert_error(400, "invalid_request");
    let audit = app.audit(&txn(&second)).await;
    let denied = audit.last().expect("the refusal is audited");
    assert_eq!(denied.decision, Decision::Denied);
    assert_eq!(denied.reason.as_deref(), Some("chain.depth_exceeded"));
}

#[tokio::test]
async fn a_partner_access_token_for_the_services_resource_is_accepted_and_its_txn_inherited() {
    let app = TestApp::spawn().await;
    let partner = app.partner.sign(Some("at+jwt"), &partner_claims(&app, |_| {}));
    let r = app
        .exchange_for_hop("mcp-logs", &partner, ACCESS_TOKEN, COST, &[])
        .await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["iss"], app.issuer);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], COST);
    assert_eq!(claims["client_id"], "mcp-logs");
    assert_eq!(claims["txn"], "partner-txn-7f3a");
    assert_eq!(claims["act"], json!({"sub": "mcp:logs", "sub_profile": "service"}));
    assert_eq!(claims["roles"], json!(["sre"]));
    assert_eq!(claims["scope"], "cost.approve cost.read");
}

#[tokio::test]
async fn a_partner_access_token_issued_to_the_presenting_client_is_accepted() {
    let app = TestApp::spawn().await;
    let claims = partner_claims(&app, |c| {
        c["client_id"] = json!("triage-agent");
        c["aud"] = json!("https://api.partner.example.net");
    });
    let partner = app.partner.sign(Some("at+jwt"), &claims);
    let r = app
        .exchange_for_hop("triage-agent", &partner, ACCESS_TOKEN, LOGS, &[])
        .await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["txn"], "partner-txn-7f3a");
    assert_eq!(claims["aud"], LOGS);
    assert_eq!(claims["act"], json!({"sub": "agent:triage", "sub_profile": "ai_agent"}));
    assert_eq!(claims["scope"], "logs.read logs.write");
}

#[tokio::test]
async fn a_partner_token_not_typed_at_jwt_is_refused() {
    let app = TestApp::spawn().await;
    let claims = partner_claims(&app, |_| {});
    for typ in [Some("JWT"), None] {
        let untyped = app.partner.sign(typ, &claims);
        refused(
            &app,
            app.exchange_for_hop("mcp-logs", &untyped, ACCESS_TOKEN, COST, &[]),
        )
        .await
        .assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn a_client_cannot_set_the_txn() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let first = app
        .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[("txn", "evil")])
        .await;
    first.assert_ok();
    let minted = txn(&first);
    assert_eq!(
        uuid::Uuid::parse_str(&minted).unwrap().get_version_num(),
        7,
        "minted, not taken from the request"
    );
    let second = app
        .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, COST, &[("txn", "evil")])
        .await;
    second.assert_ok();
    assert_eq!(txn(&second), minted);
    assert!(app.audit("evil").await.is_empty());
}

#[tokio::test]
async fn a_tampered_hop_token_is_refused() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let r = app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, LOGS, &[]).await;
    r.assert_ok();
    let mut claims = r.claims();
    assert_eq!(claims["scope"], "logs.read");
    claims["scope"] = json!("logs.read logs.write logs.purge");
    claims["roles"] = json!(["developer", "sre"]);
    let parts: Vec<&str> = r.token().split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    refused(
        &app,
        app.exchange_for_hop("chat-app", &tampered, ACCESS_TOKEN, LOGS, &[]),
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn every_hop_and_refusal_of_a_chain_is_audited_under_its_txn() {
    let app = TestApp::spawn().await;
    let (first, second) = agent_then_logs_to_cost(&app).await;
    let txn = txn(&first);
    refused(
        &app,
        app.exchange_for_hop(
            "mcp-logs",
            first.token(),
            ACCESS_TOKEN,
            COST,
            &[("scope", "cost.approve")],
        ),
    )
    .await
    .assert_error(400, "invalid_scope");

    let audit = app.audit(&txn).await;
    assert_eq!(audit.len(), 3, "{audit:#?}");
    let (c1, c2) = (first.claims(), second.claims());
    for (rec, claims, client) in [(&audit[0], &c1, "triage-agent"), (&audit[1], &c2, "mcp-logs")] {
        assert_eq!(rec.decision, Decision::Granted);
        assert_eq!(rec.txn.as_deref(), Some(txn.as_str()));
        assert_eq!(rec.client_id.as_deref(), Some(client));
        assert_eq!(rec.sub.as_deref(), Some("alice"));
        assert_eq!(rec.issued_jti.as_deref(), claims["jti"].as_str());
        assert_eq!(serde_json::to_value(&rec.act).unwrap(), claims["act"]);
    }
    assert_eq!(audit[0].audience.as_deref(), Some(LOGS));
    assert_eq!(audit[1].audience.as_deref(), Some(COST));
    assert_eq!(
        audit[1].parent_jti.as_deref(),
        c1["jti"].as_str(),
        "the second hop names its subject token"
    );

    let denied = &audit[2];
    assert_eq!(denied.decision, Decision::Denied);
    assert_eq!(denied.txn.as_deref(), Some(txn.as_str()));
    assert_eq!(denied.error.as_deref(), Some("invalid_scope"));
    assert_eq!(denied.client_id.as_deref(), Some("mcp-logs"));
    assert_eq!(denied.scope_requested.as_deref(), Some("cost.approve"));
    assert_eq!(denied.issued_jti, None);
}

/// A role that reaches the logs MCP and nothing else.
fn with_a_logs_only_role(c: &mut xaa_broker::config::Config) {
    c.roles.insert("viewer".into(), vec!["logs.read".into()]);
}

#[tokio::test]
async fn a_hop_to_an_audience_the_user_has_no_entitlement_at_is_access_denied() {
    let app = TestApp::spawn_with(with_a_logs_only_role).await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["viewer"]);
    let first = app
        .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[])
        .await;
    first.assert_ok();
    assert_eq!(first.claims()["scope"], "logs.read");
    // The logs MCP goes on to the cost tool: alice's roles reach no scope there.
    let r = refused_for(
        &app,
        app.exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, COST, &[]),
        "policy.no_entitlement",
    )
    .await;
    r.assert_error(400, "access_denied");
    assert_denial_names_only_the_rule(&r, &app);
    let audit = app.audit(&txn(&first)).await;
    let denied = audit.last().unwrap();
    assert_eq!(denied.decision, Decision::Denied);
    assert_eq!(denied.reason.as_deref(), Some("policy.no_entitlement"));
    assert_eq!(denied.error.as_deref(), Some("access_denied"));
    assert_eq!(denied.audience.as_deref(), Some(COST));
    assert_eq!(denied.client_id.as_deref(), Some("mcp-logs"));
    assert_eq!(denied.issued_jti, None);
}

#[tokio::test]
async fn scope_beyond_an_entitlement_is_still_narrowed_or_invalid_scope() {
    let app = TestApp::spawn_with(with_a_logs_only_role).await;
    let id_token = app.idp.id_token("alice", "chat-app", &["viewer"]);
    // Entitled at the logs MCP: asking for more is narrowed, as before ...
    let r = app
        .exchange_for_hop(
            "chat-app",
            &id_token,
            ID_TOKEN,
            LOGS,
            &[("scope", "logs.read logs.write")],
        )
        .await;
    r.assert_ok();
    assert_eq!(r.claims()["scope"], "logs.read");
    // ... and asking only for what the roles do not give is a scope problem.
    refused_for(
        &app,
        app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, LOGS, &[("scope", "logs.write")]),
        "scope.empty_grant",
    )
    .await
    .assert_error(400, "invalid_scope");
}

#[tokio::test]
async fn an_unknown_resource_is_still_invalid_target_whatever_the_roles() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("mallory", "chat-app", &["marketing"]);
    refused_for(
        &app,
        app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, "https://unknown.example.com", &[]),
        "target.unknown_resource",
    )
    .await
    .assert_error(400, "invalid_target");
}
