//! ID-JAG issuance: token exchange of an ID token for an identity assertion
//! JWT authorization grant (draft-ietf-oauth-identity-assertion-authz-grant §4.3).

use serde_json::json;
use xaa_broker::audit::Decision;
use xaa_broker::types::now_secs;

use crate::support::*;

/// An ID-JAG request with the audiences given (none, one, or several).
async fn id_jag_request(app: &TestApp, client: &str, id_token: &str, audiences: &[&str]) -> Resp {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", ID_JAG),
        ("subject_token", id_token),
        ("subject_token_type", ID_TOKEN),
    ];
    form.extend(audiences.iter().map(|a| ("audience", *a)));
    app.token(Auth::Basic(client), &form).await
}

#[tokio::test]
async fn an_id_token_is_exchanged_for_an_id_jag() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let r = app
        .exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[("resource", SAAS_MCP)])
        .await;
    r.assert_ok();
    assert_eq!(r.body["issued_token_type"], ID_JAG);
    assert_eq!(r.body["token_type"], "N_A");
    assert!(r.body["expires_in"].is_i64());
    assert!(r.body.get("refresh_token").is_none());
    let claims = app.verify_with_published_jwks(r.token(), "oauth-id-jag+jwt").await;
    assert_eq!(claims["iss"], app.issuer);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], SAAS_AS);
    assert_eq!(claims["client_id"], "0oa-chat-app");
    assert_eq!(claims["resource"], SAAS_MCP);
    assert_eq!(claims["scope"], "crm.read");
    assert_eq!(claims["roles"], serde_json::json!(["developer"]));
    assert_eq!(claims["email"], "alice@example.com");
    assert!(claims.get("act").is_none(), "an app adds no actor");
    let txn = claims["txn"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(txn).unwrap().get_version_num(), 7);
    let audit = app.audit(txn).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].issued_jti.as_deref(), claims["jti"].as_str());
}

#[tokio::test]
async fn an_audience_alias_resolves_to_the_resource_as_issuer() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let r = app
        .exchange_for_id_jag("chat-app", &id_token, "urn:example:saas", &[])
        .await;
    r.assert_ok();
    assert_eq!(r.claims()["aud"], SAAS_AS);
}

#[tokio::test]
async fn an_id_token_issued_to_another_client_is_refused() {
    let app = TestApp::spawn().await;
    let for_chat_app = app.idp.id_token("alice", "chat-app", &["developer", "sre"]);
    refused(
        &app,
        app.exchange_for_id_jag("triage-agent", &for_chat_app, SAAS_AS, &[]),
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_id_jag_request_without_an_audience_is_refused() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(&app, id_jag_request(&app, "chat-app", &id_token, &[]))
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_id_jag_request_with_two_audiences_is_refused() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        id_jag_request(&app, "chat-app", &id_token, &[SAAS_AS, "urn:example:saas"]),
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_unknown_audience_is_an_invalid_target() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        app.exchange_for_id_jag("chat-app", &id_token, "https://auth.unknown.example.com", &[]),
    )
    .await
    .assert_error(400, "invalid_target");
}

#[tokio::test]
async fn a_resource_not_served_by_the_audience_is_an_invalid_target() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[("resource", LOGS)]),
    )
    .await
    .assert_error(400, "invalid_target");
}

#[tokio::test]
async fn an_agent_client_is_named_as_the_actor_of_its_id_jag() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    let r = app.exchange_for_id_jag("triage-agent", &id_token, SAAS_AS, &[]).await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["act"], json!({"sub": "agent:triage", "sub_profile": "ai_agent"}));
}

#[tokio::test]
async fn client_id_is_the_clients_id_at_the_resource_as() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    let r = app.exchange_for_id_jag("triage-agent", &id_token, SAAS_AS, &[]).await;
    r.assert_ok();
    assert_eq!(r.claims()["client_id"], "0oa-triage");
}

#[tokio::test]
async fn a_requested_scope_is_narrowed_and_the_grant_echoed() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let r = app
        .exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[("scope", "crm.read crm.write")])
        .await;
    r.assert_ok();
    assert_eq!(r.body["scope"], "crm.read");
    assert_eq!(r.claims()["scope"], "crm.read");
}

#[tokio::test]
async fn a_scope_entirely_outside_the_users_roles_is_an_invalid_scope() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[("scope", "crm.write")]),
    )
    .await
    .assert_error(400, "invalid_scope");
}

#[tokio::test]
async fn a_user_outside_every_role_is_access_denied_with_the_rule_named() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("mallory", "chat-app", &["marketing", "contractors"]);
    for extra in [&[][..], &[("scope", "crm.read")][..]] {
        let r = refused_for(
            &app,
            app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, extra),
            "policy.no_entitlement",
        )
        .await;
        r.assert_error(400, "access_denied");
        assert_denial_names_only_the_rule(&r, &app);
    }
    let denied = app.all_audit().await.pop().unwrap();
    assert_eq!(denied.decision, Decision::Denied);
    assert_eq!(denied.error.as_deref(), Some("access_denied"));
    assert_eq!(
        denied.sub.as_deref(),
        Some("mallory"),
        "the record names who was refused"
    );
    assert_eq!(denied.audience.as_deref(), Some(SAAS_AS));
}

#[tokio::test]
async fn an_unknown_audience_is_still_invalid_target_for_a_user_without_roles() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("mallory", "chat-app", &["marketing"]);
    refused_for(
        &app,
        app.exchange_for_id_jag("chat-app", &id_token, "https://auth.unknown.example.com", &[]),
        "target.unknown_audience",
    )
    .await
    .assert_error(400, "invalid_target");
}

/// An access token may be the subject of an ID-JAG (multi-hop Cross-App
/// Access, tests/api/multi_hop.rs), but never by posing as an ID token.
#[tokio::test]
async fn an_access_token_presented_as_an_id_token_is_refused() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("chat-app", LOGS).await;
    hop.assert_ok();
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", ID_JAG),
        ("audience", SAAS_AS),
        ("subject_token", hop.token()),
        ("subject_token_type", ID_TOKEN),
    ];
    refused_for(&app, app.token(Auth::Basic("chat-app"), &form), "token.typ")
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_subject_token_type_we_do_not_read_is_refused_for_an_id_jag() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    for subject_type in [ID_JAG, "urn:ietf:params:oauth:token-type:saml2"] {
        let form = [
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", SAAS_AS),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", subject_type),
        ];
        refused_for(
            &app,
            app.token(Auth::Basic("chat-app"), &form),
            "subject_token.type_not_accepted",
        )
        .await
        .assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn an_id_token_carrying_an_act_claim_is_refused() {
    let app = TestApp::spawn().await;
    let mut claims = app.idp.id_token_claims("alice", "chat-app", &["developer"]);
    claims["act"] = json!({"sub": "agent:evil"});
    let id_token = app.idp.sign(Some("JWT"), &claims);
    refused(&app, app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]))
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_id_jag_never_outlives_its_id_token() {
    let app = TestApp::spawn().await;
    let mut claims = app.idp.id_token_claims("alice", "chat-app", &["developer"]);
    let id_token_exp = now_secs() + 120;
    claims["exp"] = json!(id_token_exp);
    let id_token = app.idp.sign(Some("JWT"), &claims);
    let r = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]).await;
    r.assert_ok();
    assert_eq!(r.claims()["exp"], id_token_exp);
}

#[tokio::test]
async fn an_id_jag_lives_at_most_the_audience_ttl() {
    let app = TestApp::spawn().await;
    // The ID token is good for 600 s; the SaaS audience's TTL is 300 s.
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let r = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]).await;
    r.assert_ok();
    let claims = r.claims();
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp, iat + 300);
    assert!(exp <= now_secs() + 300);
    assert!(r.body["expires_in"].as_i64().unwrap() <= 300);
}

#[tokio::test]
async fn authentication_facts_are_copied_from_the_id_token() {
    let app = TestApp::spawn().await;
    let upstream = app.idp.id_token_claims("alice", "chat-app", &["developer"]);
    let id_token = app.idp.sign(Some("JWT"), &upstream);
    let r = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]).await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["auth_time"], upstream["auth_time"]);
    assert_eq!(claims["amr"], json!(["pwd", "mfa"]));
    assert_eq!(claims["email"], "alice@example.com");
}

#[tokio::test]
async fn an_id_jag_is_recorded_under_its_txn() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    let r = app
        .exchange_for_id_jag("triage-agent", &id_token, SAAS_AS, &[("resource", SAAS_MCP)])
        .await;
    r.assert_ok();
    let claims = r.claims();
    let audit = app.audit(claims["txn"].as_str().unwrap()).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let rec = &audit[0];
    assert_eq!(rec.decision, Decision::Granted);
    assert_eq!(rec.error, None);
    assert_eq!(rec.client_id.as_deref(), Some("triage-agent"));
    assert_eq!(rec.sub.as_deref(), Some("alice"));
    assert_eq!(rec.audience.as_deref(), Some(SAAS_AS));
    assert_eq!(rec.resource.as_deref(), Some(SAAS_MCP));
    assert_eq!(rec.requested_token_type.as_deref(), Some(ID_JAG));
    assert_eq!(rec.issued_token_type.as_deref(), Some(ID_JAG));
    assert_eq!(rec.scope_granted.as_deref(), Some("crm.read"));
    assert_eq!(rec.issued_jti.as_deref(), claims["jti"].as_str());
    assert_eq!(rec.issued_exp, claims["exp"].as_i64());
    assert_eq!(serde_json::to_value(&rec.act).unwrap(), claims["act"]);
    let subject = rec.subject_token.as_ref().expect("subject token fingerprint");
    assert_eq!(subject.iss.as_deref(), Some(app.idp.issuer.as_str()));
}
