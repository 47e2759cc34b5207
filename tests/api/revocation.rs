//! RFC 7009 revocation (`POST /revoke`) by the client a token was issued to,
//! and the admin API's revocations by correlation id (`txn`) and by subject,
//! at the enterprise and at the resource AS.

use serde_json::json;
use xaa_broker::config::Config;
use xaa_broker::types::now_secs;

use crate::support::*;

/// Introspect as the token's own resource server (or the client it was
/// issued to): the callers introspection answers truthfully.
async fn introspect(app: &TestApp, token: &str) -> Resp {
    let fallback = if app.config.clients.contains_key("cost-tool") {
        "cost-tool"
    } else {
        "mcp-saas"
    };
    let r = app.introspect_as_entitled(token, fallback).await;
    r.assert_ok();
    r
}

#[track_caller]
fn assert_active(r: &Resp) {
    assert_eq!(r.body["active"], true, "{}", r.body);
}

#[track_caller]
fn assert_inactive(r: &Resp) {
    assert_eq!(r.body, json!({"active": false}));
}

async fn revoke(app: &TestApp, auth: Auth<'_>, token: &str) -> Resp {
    app.post_form("/revoke", auth, &[("token", token)]).await
}

/// RFC 7009 §2.2: 200 with no body of interest, not cacheable.
#[track_caller]
fn assert_revoke_ok(r: &Resp) {
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert!(r.body.get("error").is_none(), "{}", r.body);
}

async fn admin_revoke(app: &TestApp, admin: &str, form: &[(&str, &str)]) -> Resp {
    let r = app.post_form("/admin/revoke", Auth::Basic(admin), form).await;
    r.assert_ok();
    r
}

/// 0oa-triage redeems an ID-JAG at the resource AS.
async fn redeem(ras: &TestApp, assertion: String) -> Resp {
    ras.token(
        Auth::Basic("0oa-triage"),
        &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
    )
    .await
}

fn txn_of(r: &Resp) -> String {
    r.claims()["txn"].as_str().unwrap().to_owned()
}

/// The three hops of one chain at the enterprise, for `sub`:
/// triage-agent (ID token → logs MCP), mcp-logs (→ cost tool),
/// cost-tool (→ incidents).
struct Chain {
    id_token: String,
    hops: [String; 3],
    txn: String,
}

async fn first_two_hops(app: &TestApp, sub: &str) -> (String, Resp, Resp) {
    app.agent_then_logs_to_cost(sub).await
}

async fn three_hops(app: &TestApp, sub: &str) -> Chain {
    let (id_token, h1, h2) = first_two_hops(app, sub).await;
    let h3 = app
        .exchange_for_hop("cost-tool", h2.token(), ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    h3.assert_ok();
    let txn = txn_of(&h1);
    assert_eq!(txn_of(&h2), txn);
    assert_eq!(txn_of(&h3), txn);
    assert_eq!(h3.claims()["scope"], "incidents.read");
    Chain {
        id_token,
        hops: [h1, h2, h3].map(|r| r.token().to_owned()),
        txn,
    }
}

/// Every further exchange a chain's tokens allow, as (client, subject token
/// index, target): each hop's holder going on, and each issued-to client
/// re-exchanging its own token.
const ONWARD: [(&str, usize, &str); 5] = [
    ("mcp-logs", 0, COST),
    ("mcp-logs", 0, INCIDENTS),
    ("triage-agent", 0, COST),
    ("cost-tool", 1, INCIDENTS),
    ("cost-tool", 2, INCIDENTS),
];

async fn onward(app: &TestApp, chain: &Chain, (client, i, target): (&str, usize, &str)) -> Resp {
    app.exchange_for_hop(client, &chain.hops[i], ACCESS_TOKEN, target, &[])
        .await
}

// ---------------------------------------------------------------------------
// RFC 7009
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_revokes_its_own_hop_token() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    assert_active(&introspect(&app, hop.token()).await);

    assert_revoke_ok(&revoke(&app, Auth::Basic("triage-agent"), hop.token()).await);

    assert_inactive(&introspect(&app, hop.token()).await);
    for client in ["mcp-logs", "triage-agent"] {
        refused(&app, app.exchange_for_hop(client, hop.token(), ACCESS_TOKEN, COST, &[]))
            .await
            .assert_error(400, "invalid_request");
    }
    let audit = app.audit(&txn_of(&hop)).await;
    let revocation = audit
        .iter()
        .find(|r| r.grant.as_deref() == Some("revocation"))
        .expect("the revocation is audited under the token's txn");
    assert_eq!(revocation.client_id.as_deref(), Some("triage-agent"));
    assert_eq!(revocation.parent_jti.as_deref(), hop.claims()["jti"].as_str());
    let refusal = audit.last().unwrap();
    assert_eq!(refusal.error.as_deref(), Some("invalid_request"));
    assert_eq!(refusal.reason.as_deref(), Some("subject_token.revoked"));
}

#[tokio::test]
async fn revoking_one_token_leaves_other_tokens_active() {
    let app = TestApp::spawn().await;
    let a = app.first_hop("triage-agent", LOGS).await;
    let b = app.first_hop("triage-agent", LOGS).await;
    assert_revoke_ok(&revoke(&app, Auth::Basic("triage-agent"), a.token()).await);
    assert_inactive(&introspect(&app, a.token()).await);
    assert_active(&introspect(&app, b.token()).await);
    app.exchange_for_hop("mcp-logs", b.token(), ACCESS_TOKEN, COST, &[])
        .await
        .assert_ok();
}

#[tokio::test]
async fn revoking_another_clients_token_answers_200_but_changes_nothing() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    for other in ["mcp-logs", "chat-app", "security-ops"] {
        assert_revoke_ok(&revoke(&app, Auth::Basic(other), hop.token()).await);
    }
    assert_active(&introspect(&app, hop.token()).await);
    app.exchange_for_hop("mcp-logs", hop.token(), ACCESS_TOKEN, COST, &[])
        .await
        .assert_ok();
}

#[tokio::test]
async fn revoking_an_unknown_or_garbage_token_answers_200() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let partner = app.partner.sign(
        Some("at+jwt"),
        &json!({
            "iss": app.partner.issuer, "sub": "alice", "aud": LOGS, "client_id": "mcp-logs",
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
        }),
    );
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let jag = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]).await;
    jag.assert_ok();
    for token in ["garbage", "a.b.c", partner.as_str(), jag.token(), &id_token] {
        assert_revoke_ok(&revoke(&app, Auth::Basic("mcp-logs"), token).await);
        assert_revoke_ok(&revoke(&app, Auth::Basic("chat-app"), token).await);
    }
    // Revoking twice is fine too.
    let hop = app.first_hop("chat-app", LOGS).await;
    for _ in 0..2 {
        assert_revoke_ok(&revoke(&app, Auth::Basic("chat-app"), hop.token()).await);
    }
    assert_inactive(&introspect(&app, hop.token()).await);
}

#[tokio::test]
async fn revocation_requires_client_authentication() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    for auth in [Auth::None, Auth::BasicWith("triage-agent", "wrong-secret")] {
        revoke(&app, auth, hop.token())
            .await
            .assert_error(401, "invalid_client");
    }
    // Naming the client without its secret is not authentication either.
    app.post_form(
        "/revoke",
        Auth::None,
        &[("token", hop.token()), ("client_id", "triage-agent")],
    )
    .await
    .assert_error(401, "invalid_client");
    assert_active(&introspect(&app, hop.token()).await);
}

#[tokio::test]
async fn a_revocation_without_a_token_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    app.post_form("/revoke", Auth::Basic("triage-agent"), &[])
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_client_revokes_its_redeemed_token_at_the_resource_as() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_token = enterprise.idp.id_token("alice", "triage-agent", &["developer"]);
    let jag = enterprise
        .exchange_for_id_jag("triage-agent", &id_token, &ras.issuer, &[])
        .await;
    let token = ras
        .token(
            Auth::Basic("0oa-triage"),
            &[("grant_type", JWT_BEARER), ("assertion", jag.token())],
        )
        .await;
    token.assert_ok();
    assert_revoke_ok(&revoke(&ras, Auth::Basic("0oa-chat-app"), token.token()).await);
    assert_active(&introspect(&ras, token.token()).await);
    assert_revoke_ok(&revoke(&ras, Auth::Basic("0oa-triage"), token.token()).await);
    assert_inactive(&introspect(&ras, token.token()).await);
}

// ---------------------------------------------------------------------------
// Admin: revoke by txn
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revoking_a_txn_kills_every_token_of_a_three_hop_chain() {
    let app = TestApp::spawn().await;
    let chain = three_hops(&app, "alice").await;
    let bystander = three_hops(&app, "alice").await;
    assert_ne!(bystander.txn, chain.txn);

    let r = admin_revoke(&app, "security-ops", &[("txn", &chain.txn)]).await;
    assert_eq!(r.body["revoked"], json!({"txn": chain.txn}));

    for hop in &chain.hops {
        assert_inactive(&introspect(&app, hop).await);
    }
    for step in ONWARD {
        refused(&app, onward(&app, &chain, step))
            .await
            .assert_error(400, "invalid_request");
    }
    let audit = app.audit(&chain.txn).await;
    let refusals: Vec<_> = audit
        .iter()
        .filter(|r| r.reason.as_deref() == Some("subject_token.revoked"))
        .collect();
    assert_eq!(refusals.len(), ONWARD.len(), "{audit:#?}");

    // Another chain of the same user is untouched.
    for hop in &bystander.hops {
        assert_active(&introspect(&app, hop).await);
    }
    for step in ONWARD {
        onward(&app, &bystander, step).await.assert_ok();
    }
}

#[tokio::test]
async fn revoking_a_txn_in_the_middle_of_a_chain_stops_its_later_hops() {
    let app = TestApp::spawn().await;
    let (id_token, h1, h2) = first_two_hops(&app, "alice").await;
    let txn = txn_of(&h1);

    admin_revoke(&app, "security-ops", &[("txn", &txn)]).await;

    // The third hop is refused, and so is every other way onward.
    refused(
        &app,
        app.exchange_for_hop("cost-tool", h2.token(), ACCESS_TOKEN, INCIDENTS, &[]),
    )
    .await
    .assert_error(400, "invalid_request");
    refused(
        &app,
        app.exchange_for_hop("mcp-logs", h1.token(), ACCESS_TOKEN, COST, &[]),
    )
    .await
    .assert_error(400, "invalid_request");
    assert_inactive(&introspect(&app, h1.token()).await);
    assert_inactive(&introspect(&app, h2.token()).await);

    // A token issued later that carries the revoked correlation id (a
    // partner's token continuing this chain) is refused as well.
    let now = now_secs();
    let later = app.partner.sign(
        Some("at+jwt"),
        &json!({
            "iss": app.partner.issuer, "sub": "alice", "aud": LOGS, "client_id": "partner-portal",
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
            "scope": "logs.read", "groups": ["sre"], "txn": txn,
        }),
    );
    refused(&app, app.exchange_for_hop("mcp-logs", &later, ACCESS_TOKEN, COST, &[]))
        .await
        .assert_error(400, "invalid_request");

    // The user signing in again starts a fresh chain, which works end to end.
    let fresh = app
        .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[])
        .await;
    fresh.assert_ok();
    assert_ne!(txn_of(&fresh), txn);
    let fresh_chain = three_hops(&app, "alice").await;
    assert_ne!(fresh_chain.txn, txn);
    for hop in &fresh_chain.hops {
        assert_active(&introspect(&app, hop).await);
    }
}

#[tokio::test]
async fn revoking_a_txn_at_the_resource_as_refuses_its_tokens_and_later_id_jags() {
    let idp = FakeIdp::start().await;
    let (iss, jwks) = (idp.issuer.clone(), idp.jwks_uri());
    let (_enterprise, ras) = TestApp::spawn_pair_with(
        |_| {},
        |c: &mut Config| {
            let trusted = c.issuers.get_mut("acme-broker").unwrap();
            trusted.issuer = iss;
            trusted.jwks_uri = Some(jwks);
        },
    )
    .await;
    let txn = uuid::Uuid::now_v7().to_string();
    let id_jag = |txn: &str, sub: &str| {
        let now = now_secs();
        idp.sign(
            Some("oauth-id-jag+jwt"),
            &json!({
                "iss": idp.issuer, "sub": sub, "aud": ras.issuer, "client_id": "0oa-triage",
                "jti": uuid::Uuid::now_v7().to_string(), "iat": now, "exp": now + 300,
                "resource": SAAS_MCP, "scope": "crm.read", "txn": txn,
            }),
        )
    };
    let redeem = |assertion: String| redeem(&ras, assertion);
    let first = redeem(id_jag(&txn, "alice")).await;
    first.assert_ok();
    let other = redeem(id_jag("another-txn", "alice")).await;
    other.assert_ok();

    admin_revoke(&ras, "saas-ops", &[("txn", &txn)]).await;

    assert_inactive(&introspect(&ras, first.token()).await);
    assert_active(&introspect(&ras, other.token()).await);
    // A later ID-JAG of the same chain is refused: invalid_grant at a RAS.
    refused(&ras, redeem(id_jag(&txn, "alice")))
        .await
        .assert_error(400, "invalid_grant");
    let last = ras.all_audit().await.pop().unwrap();
    assert_eq!(last.reason.as_deref(), Some("id_jag.revoked"));
    redeem(id_jag("yet-another-txn", "alice")).await.assert_ok();
}

// ---------------------------------------------------------------------------
// Admin: revoke by subject
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revoking_a_subject_kills_their_earlier_tokens_and_identity_assertions() {
    let app = TestApp::spawn().await;
    let alice = three_hops(&app, "alice").await;
    let bob = three_hops(&app, "bob").await;
    // An ID token alice obtained before the revocation, not yet used.
    let mut early = app.idp.id_token_claims("alice", "triage-agent", &["developer"]);
    early["iat"] = json!(now_secs() - 30);
    let early = app.idp.sign(Some("JWT"), &early);

    let r = admin_revoke(&app, "security-ops", &[("sub", "alice"), ("iss", &app.idp.issuer)]).await;
    assert_eq!(r.body["revoked"]["sub"], "alice");
    let cut = r.body["revoked"]["issued_before"].as_i64().unwrap();

    for hop in &alice.hops {
        assert_inactive(&introspect(&app, hop).await);
    }
    for step in ONWARD {
        refused(&app, onward(&app, &alice, step))
            .await
            .assert_error(400, "invalid_request");
    }
    for id_token in [&early, &alice.id_token] {
        refused(
            &app,
            app.exchange_for_hop("triage-agent", id_token, ID_TOKEN, LOGS, &[]),
        )
        .await
        .assert_error(400, "invalid_request");
        refused(&app, app.exchange_for_id_jag("triage-agent", id_token, SAAS_AS, &[]))
            .await
            .assert_error(400, "invalid_request");
    }

    // bob is unaffected.
    for hop in &bob.hops {
        assert_active(&introspect(&app, hop).await);
    }
    for step in ONWARD {
        onward(&app, &bob, step).await.assert_ok();
    }

    // alice signing in after the cut-off is a new session.
    let mut later = app.idp.id_token_claims("alice", "triage-agent", &["developer"]);
    later["iat"] = json!(cut + 1);
    let later = app.idp.sign(Some("JWT"), &later);
    app.exchange_for_hop("triage-agent", &later, ID_TOKEN, LOGS, &[])
        .await
        .assert_ok();
}

#[tokio::test]
async fn revoking_a_subject_at_the_resource_as_refuses_their_earlier_id_jags() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = |sub: &'static str| {
        let enterprise = &enterprise;
        let ras = &ras;
        async move {
            let id_token = enterprise.idp.id_token(sub, "triage-agent", &["developer"]);
            let r = enterprise
                .exchange_for_id_jag("triage-agent", &id_token, &ras.issuer, &[])
                .await;
            r.assert_ok();
            r.token().to_owned()
        }
    };
    let redeem = |assertion: String| redeem(&ras, assertion);
    let alice_token = redeem(id_jag("alice").await).await;
    alice_token.assert_ok();
    let bob_token = redeem(id_jag("bob").await).await;
    bob_token.assert_ok();
    let alice_unused = id_jag("alice").await;
    let bob_unused = id_jag("bob").await;

    // alice as vouched for by the enterprise (the ID-JAGs' issuer).
    admin_revoke(&ras, "saas-ops", &[("sub", "alice"), ("iss", &enterprise.issuer)]).await;

    assert_inactive(&introspect(&ras, alice_token.token()).await);
    refused(&ras, redeem(alice_unused))
        .await
        .assert_error(400, "invalid_grant");
    assert_active(&introspect(&ras, bob_token.token()).await);
    redeem(bob_unused).await.assert_ok();
    // The enterprise's own tokens are its business: alice is not revoked there.
    enterprise.first_hop("triage-agent", LOGS).await.assert_ok();
}
