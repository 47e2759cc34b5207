//! The security review's attacks (issue 7), each sent as an attacker would
//! and checked for status, error code, what was issued and what the audit
//! trail says. Server-level floods (slowloris, connection floods) are in
//! `server_limits`; rate limits and unauthenticated noise in `limits`.

use josekit::jwk::Jwk;
use serde_json::{Value, json};
use xaa_broker::audit::{AuditRecord, Decision};
use xaa_broker::config::ActorIdentityConfig;
use xaa_broker::jose::Alg;
use xaa_broker::types::ClientKind;
use xaa_broker::types::now_secs;

use crate::support::*;

/// POST a form authenticated by a `private_key_jwt` assertion.
async fn with_assertion(app: &TestApp, path: &str, assertion: &str, form: &[(&str, &str)]) -> Resp {
    let mut form = form.to_vec();
    form.push(("client_assertion_type", ASSERTION_TYPE));
    form.push(("client_assertion", assertion));
    app.post_form(path, Auth::None, &form).await
}

/// The last record this instance wrote.
async fn last_record(app: &TestApp) -> AuditRecord {
    app.all_audit().await.pop().expect("a record")
}

#[track_caller]
fn assert_denied(record: &AuditRecord, error: &str, reason: &str) {
    assert_eq!(record.decision, Decision::Denied, "{record:#?}");
    assert_eq!(record.error.as_deref(), Some(error), "{record:#?}");
    assert_eq!(record.reason.as_deref(), Some(reason), "{record:#?}");
    assert!(record.issued_jti.is_none(), "{record:#?}");
}

/// triage-agent's first hop to the logs MCP for alice, with an actor token.
async fn agent_first_hop_with_actor(app: &TestApp, actor_token: &str) -> Resp {
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    app.first_hop_with_actor("triage-agent", &id_token, actor_token).await
}

/// chat-app's first hop to the logs MCP for alice, with an actor token.
async fn chat_first_hop_with_actor(app: &TestApp, actor_token: String) -> Resp {
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    app.first_hop_with_actor("chat-app", &id_token, &actor_token).await
}

fn agent_identity_says_service(c: &mut xaa_broker::config::Config) {
    c.issuers.get_mut("agent-identity").unwrap().actor_profile = Some(ClientKind::Service);
}

// ---------------------------------------------------------------------------
// 1. An agent can never launder itself out of the chain
// ---------------------------------------------------------------------------

/// The review's attack: an agent presents an actor token for a service
/// identity from an issuer whose profile is `service`, hoping to vanish from
/// `act` and reach the human-only and admin scopes at the next hop.
#[tokio::test]
async fn an_agent_presenting_a_service_actor_token_is_refused() {
    let app = TestApp::spawn_with(agent_identity_says_service).await;
    let service = app.agents.actor_token("svc:billing", &app.issuer);
    let r = refused_for(
        &app,
        agent_first_hop_with_actor(&app, &service),
        "actor_token.not_this_client",
    )
    .await;
    r.assert_error(400, "invalid_request");
    let record = last_record(&app).await;
    assert_eq!(record.client_id.as_deref(), Some("triage-agent"));
    assert!(record.actor_token.is_some(), "the refused actor token is fingerprinted");
}

/// An agent proving its own identity with a token from a `service`-profile
/// issuer stays in the chain, capped as an agent at every later hop.
#[tokio::test]
async fn an_agents_own_actor_token_keeps_it_in_the_chain_and_capped() {
    let app = TestApp::spawn_with(agent_identity_says_service).await;
    let own = app.agents.actor_token("agent:triage", &app.issuer);
    let first = agent_first_hop_with_actor(&app, &own).await;
    first.assert_ok();
    assert_eq!(
        first.claims()["act"],
        json!({"sub": "agent:triage", "sub_profile": "ai_agent"})
    );
    let to_cost = app
        .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, COST, &[])
        .await;
    to_cost.assert_ok();
    assert_eq!(to_cost.claims()["scope"], "cost.read", "cost.approve is human-only");
    let to_incidents = app
        .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    to_incidents.assert_ok();
    assert_eq!(
        to_incidents.claims()["scope"],
        "incidents.read incidents.write",
        "admin is outside the agent cap"
    );
}

/// An identity configured for an agent client keeps its issuer in `act`,
/// and is judged as that agent client at the next hop whatever profile the
/// issuer gave it.
#[tokio::test]
async fn an_agents_configured_identity_is_capped_as_an_agent_at_every_hop() {
    let app = TestApp::spawn_with(|c| {
        agent_identity_says_service(c);
        c.clients
            .get_mut("triage-agent")
            .unwrap()
            .actor_identities
            .push(ActorIdentityConfig {
                issuer: "agent-identity".into(),
                sub: "spiffe://corp/triage".into(),
            });
    })
    .await;
    let workload = app.agents.actor_token("spiffe://corp/triage", &app.issuer);
    let first = agent_first_hop_with_actor(&app, &workload).await;
    first.assert_ok();
    assert_eq!(
        first.claims()["act"],
        json!({"sub": "spiffe://corp/triage", "iss": app.agents.issuer, "sub_profile": "ai_agent"})
    );
    assert_eq!(first.claims()["scope"], "logs.read logs.write");
    let next = app
        .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, COST, &[])
        .await;
    next.assert_ok();
    assert_eq!(next.claims()["scope"], "cost.read");
}

/// A stolen actor token lets no other client act as that agent: chat-app
/// hosts agent:x; neither an agent nor another app may present it.
#[tokio::test]
async fn a_stolen_actor_token_does_not_let_another_client_act_as_that_agent() {
    let app = TestApp::spawn_with(|c| {
        let mut other = c.clients["chat-app"].clone();
        other.actor_identities.clear();
        other.ras_client_ids.clear();
        c.clients.insert("other-app".into(), other);
    })
    .await;
    let stolen = app.agents.actor_token("agent:x", &app.issuer);
    refused_for(
        &app,
        agent_first_hop_with_actor(&app, &stolen),
        "actor_token.not_this_client",
    )
    .await
    .assert_error(400, "invalid_request");
    let id_token = app.idp.id_token("alice", "other-app", &["developer"]);
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("resource", LOGS),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN),
        ("actor_token", stolen.as_str()),
        ("actor_token_type", JWT),
    ];
    refused_for(
        &app,
        app.token(Auth::BasicWith("other-app", "chat-app-secret"), &form),
        "actor_token.not_this_client",
    )
    .await
    .assert_error(400, "invalid_request");
}

/// An actor can be offboarded like a user: revoked by `sub` and issuer, its
/// actor tokens issued before the cut-off start nothing.
#[tokio::test]
async fn a_revoked_actor_is_refused() {
    let app = TestApp::spawn().await;
    let mut claims = json!({
        "iss": app.agents.issuer, "sub": "agent:x", "aud": app.issuer,
        "iat": now_secs() - 5, "exp": now_secs() + 300, "jti": uuid::Uuid::now_v7().to_string(),
    });
    let before = app.agents.sign(None, &claims);
    app.post_form(
        "/admin/revoke",
        Auth::Basic("security-ops"),
        &[("sub", "agent:x"), ("iss", &app.agents.issuer)],
    )
    .await
    .assert_ok();
    refused_for(&app, chat_first_hop_with_actor(&app, before), "actor_token.revoked")
        .await
        .assert_error(400, "invalid_request");
    // Issued after the cut-off (an `iat` a second ahead is within skew).
    claims["iat"] = json!(now_secs() + 1);
    claims["jti"] = json!(uuid::Uuid::now_v7().to_string());
    chat_first_hop_with_actor(&app, app.agents.sign(None, &claims))
        .await
        .assert_ok();
}

/// Actor tokens get the same lifetime bound as every upstream token.
#[tokio::test]
async fn an_actor_token_living_longer_than_the_upstream_bound_is_refused() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let long = app.agents.sign(
        None,
        &json!({"iss": app.agents.issuer, "sub": "agent:x", "aud": app.issuer,
                "iat": now, "exp": now + 2 * 86400, "jti": uuid::Uuid::now_v7().to_string()}),
    );
    refused_for(&app, chat_first_hop_with_actor(&app, long), "token.lifetime")
        .await
        .assert_error(400, "invalid_request");
}

// ---------------------------------------------------------------------------
// 2. Authentication completes before any side effect
// ---------------------------------------------------------------------------

/// A replayed `private_key_jwt` assertion on `/revoke` revokes nothing, and
/// the record says it was the replay that was refused.
#[tokio::test]
async fn a_replayed_assertion_on_revoke_revokes_nothing() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "reporting-bot", &["developer"]);
    let hop = with_assertion(
        &app,
        "/token",
        &app.bot_assertion(|_| {}),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("resource", LOGS),
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN),
        ],
    )
    .await;
    hop.assert_ok();
    let spent = app.bot_assertion(|_| {});
    let first = with_assertion(&app, "/revoke", &spent, &[("token", "not-a-token")]).await;
    assert_eq!(first.status, 200);
    let replay = with_assertion(&app, "/revoke", &spent, &[("token", hop.token())]).await;
    replay.assert_error(401, "invalid_client");
    assert_denied(&last_record(&app).await, "invalid_client", "client_assertion.replayed");
    let seen = app.introspect_as_entitled(hop.token(), "mcp-logs").await;
    assert_eq!(seen.body["active"], true, "nothing was revoked: {}", seen.body);
}

/// The same on the admin API: a replayed admin assertion revokes no txn.
#[tokio::test]
async fn a_replayed_assertion_on_admin_revoke_revokes_nothing() {
    let app = TestApp::spawn_with(|c| c.admin.clients.push("reporting-bot".into())).await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    let txn = hop.claims()["txn"].as_str().unwrap().to_owned();
    let spent = app.bot_assertion(|_| {});
    with_assertion(&app, "/admin/audit", &spent, &[("txn", &txn)])
        .await
        .assert_ok();
    let replay = with_assertion(&app, "/admin/revoke", &spent, &[("txn", &txn)]).await;
    replay.assert_error(401, "invalid_client");
    let record = last_record(&app).await;
    assert_denied(&record, "invalid_client", "client_assertion.replayed");
    assert_eq!(record.grant.as_deref(), Some("admin.revoke"));
    assert_eq!(record.client_auth_method.as_deref(), Some("private_key_jwt"));
    app.exchange_for_hop("mcp-logs", hop.token(), ACCESS_TOKEN, COST, &[])
        .await
        .assert_ok();
}

/// One request, two single-use values: a replayed ID-JAG still spends the
/// fresh client assertion beside it, and a replayed client assertion spends
/// nothing of the (unauthenticated) request.
#[tokio::test]
async fn a_fresh_client_assertion_never_authenticates_twice() {
    let key = Alg::ES256.generate().unwrap();
    let public = {
        let mut p = key.to_public_key().unwrap();
        p.set_key_id("ras-chat-1");
        p.set_algorithm("ES256");
        Value::Object(p.as_ref().clone())
    };
    let (enterprise, ras) = TestApp::spawn_pair_with(
        |_| {},
        move |c| {
            let chat = c.clients.get_mut("0oa-chat-app").unwrap();
            chat.secret_sha256 = None;
            chat.jwks = Some(json!({ "keys": [public] }));
        },
    )
    .await;
    let assertion = |key: &Jwk| {
        let now = now_secs();
        sign_jws(
            key,
            json!({"alg": "ES256", "kid": "ras-chat-1"}),
            &json!({"iss": "0oa-chat-app", "sub": "0oa-chat-app", "aud": ras.issuer,
                    "iat": now, "exp": now + 60, "jti": uuid::Uuid::now_v7().to_string()}),
        )
    };
    let id_jag = || async {
        let id_token = enterprise.idp.id_token("alice", "chat-app", &["developer"]);
        let r = enterprise
            .exchange_for_id_jag("chat-app", &id_token, &ras.issuer, &[])
            .await;
        r.assert_ok();
        r.token().to_owned()
    };
    let redeem = |jag: String, assertion: String| {
        let ras = &ras;
        async move {
            with_assertion(
                ras,
                "/token",
                &assertion,
                &[("grant_type", JWT_BEARER), ("assertion", &jag)],
            )
            .await
        }
    };
    let (jag1, jag2) = (id_jag().await, id_jag().await);
    redeem(jag1.clone(), assertion(&key)).await.assert_ok();

    let fresh = assertion(&key);
    refused(&ras, redeem(jag1, fresh.clone()))
        .await
        .assert_error(400, "invalid_grant");
    assert_denied(&last_record(&ras).await, "invalid_grant", "assertion.replayed");

    refused(&ras, redeem(jag2.clone(), fresh))
        .await
        .assert_error(401, "invalid_client");
    assert_denied(&last_record(&ras).await, "invalid_client", "client_assertion.replayed");

    redeem(jag2, assertion(&key)).await.assert_ok();
}

// ---------------------------------------------------------------------------
// 3. Form parsing is linear and bounded
// ---------------------------------------------------------------------------

/// The review's key flood: a 64 KiB body of thousands of distinct keys is
/// refused at the first key over the limit, and the broker keeps serving.
#[tokio::test]
async fn a_body_of_thousands_of_distinct_keys_is_refused() {
    let app = TestApp::spawn().await;
    let body: String = (0..7000).map(|i| format!("k{i}=v&")).collect();
    assert!(body.len() < 64 * 1024);
    let r = app
        .http
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"].as_str().unwrap().contains("parameters"),
        "{body}"
    );
    app.first_hop("triage-agent", LOGS).await.assert_ok();
}

// ---------------------------------------------------------------------------
// 6. Multi-tenant safety at the resource AS
// ---------------------------------------------------------------------------

/// A second tenant's IdP, trusted for ID-JAGs at the resource AS.
struct TwoTenants {
    enterprise: TestApp,
    ras: TestApp,
    tenant_b: FakeIdp,
}

impl TwoTenants {
    async fn start(bind_chat_app_to_b: bool) -> TwoTenants {
        let tenant_b = FakeIdp::start().await;
        let (iss, jwks) = (tenant_b.issuer.clone(), tenant_b.jwks_uri());
        let (enterprise, ras) = TestApp::spawn_pair_with(
            |_| {},
            move |c| {
                let mut b = c.issuers["acme-broker"].clone();
                b.issuer = iss;
                b.jwks_uri = Some(jwks);
                c.issuers.insert("tenant-b".into(), b);
                if bind_chat_app_to_b {
                    let chat = c.clients.get_mut("0oa-chat-app").unwrap();
                    chat.id_jag_issuers.push("tenant-b".into());
                }
            },
        )
        .await;
        TwoTenants {
            enterprise,
            ras,
            tenant_b,
        }
    }

    /// Tenant B's ID-JAG for `sub` and 0oa-chat-app.
    fn tenant_b_id_jag(&self, sub: &str) -> String {
        let now = now_secs();
        self.tenant_b.sign(
            Some("oauth-id-jag+jwt"),
            &json!({"iss": self.tenant_b.issuer, "sub": sub, "aud": self.ras.issuer,
                    "client_id": "0oa-chat-app", "jti": uuid::Uuid::now_v7().to_string(),
                    "iat": now, "exp": now + 300, "scope": "crm.read"}),
        )
    }

    /// Tenant A's (the enterprise broker's) ID-JAG for `sub`.
    async fn tenant_a_id_jag(&self, sub: &str) -> String {
        let id_token = self.enterprise.idp.id_token(sub, "chat-app", &["developer"]);
        let r = self
            .enterprise
            .exchange_for_id_jag("chat-app", &id_token, &self.ras.issuer, &[])
            .await;
        r.assert_ok();
        r.token().to_owned()
    }

    async fn redeem(&self, jag: &str) -> Resp {
        self.ras
            .token(
                Auth::Basic("0oa-chat-app"),
                &[("grant_type", JWT_BEARER), ("assertion", jag)],
            )
            .await
    }
}

/// A jwt-bearer client redeems only ID-JAGs from the issuers it is bound to:
/// tenant B cannot mint for tenant A's client, and the refused ID-JAG is not
/// spent.
#[tokio::test]
async fn a_jwt_bearer_client_redeems_only_from_its_own_issuers() {
    let t = TwoTenants::start(false).await;
    let from_b = t.tenant_b_id_jag("bob");
    refused_for(&t.ras, t.redeem(&from_b), "id_jag.issuer_not_for_client")
        .await
        .assert_error(400, "invalid_grant");
    t.redeem(&t.tenant_a_id_jag("bob").await).await.assert_ok();
}

/// Tenant A's bob and tenant B's bob are two principals: their tokens say
/// who vouched (`sub_id`), and revoking one leaves the other.
#[tokio::test]
async fn two_tenants_bobs_are_never_the_same_principal() {
    let t = TwoTenants::start(true).await;
    let bob_a = t.redeem(&t.tenant_a_id_jag("bob").await).await;
    bob_a.assert_ok();
    let bob_b = t.redeem(&t.tenant_b_id_jag("bob")).await;
    bob_b.assert_ok();
    assert_eq!(bob_a.claims()["sub"], "bob");
    assert_eq!(bob_b.claims()["sub"], "bob");
    assert_eq!(
        bob_a.claims()["sub_id"],
        json!({"format": "iss_sub", "iss": t.enterprise.issuer, "sub": "bob"})
    );
    assert_eq!(
        bob_b.claims()["sub_id"],
        json!({"format": "iss_sub", "iss": t.tenant_b.issuer, "sub": "bob"})
    );

    t.ras
        .post_form(
            "/admin/revoke",
            Auth::Basic("saas-ops"),
            &[("sub", "bob"), ("iss", &t.tenant_b.issuer)],
        )
        .await
        .assert_ok();
    let seen = |token: String| {
        let ras = &t.ras;
        async move { ras.introspect_as_entitled(&token, "mcp-saas").await.body["active"].clone() }
    };
    assert_eq!(seen(bob_b.token().to_owned()).await, false);
    assert_eq!(seen(bob_a.token().to_owned()).await, true);
    refused_for(&t.ras, t.redeem(&t.tenant_b_id_jag("bob")), "id_jag.revoked")
        .await
        .assert_error(400, "invalid_grant");
    t.redeem(&t.tenant_a_id_jag("bob").await).await.assert_ok();
}

/// Roles in a partner's access token count only as configured for that
/// issuer (`issuers.partner.roles`).
#[tokio::test]
async fn a_partner_grants_only_the_roles_it_is_trusted_with() {
    let app =
        TestApp::spawn_with(|c| c.issuers.get_mut("partner").unwrap().roles = Some(vec!["developer".into()])).await;
    let now = now_secs();
    let partner = app.partner.sign(
        Some("at+jwt"),
        &json!({"iss": app.partner.issuer, "sub": "alice", "aud": LOGS, "client_id": "partner-portal",
                "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
                "groups": ["sre", "developer"], "roles": ["sre"]}),
    );
    let r = app
        .exchange_for_hop("mcp-logs", &partner, ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    r.assert_ok();
    assert_eq!(r.claims()["roles"], json!(["developer"]));
    assert_eq!(
        r.claims()["scope"],
        "incidents.read",
        "sre's incidents.write is not the partner's to grant"
    );
}

// ---------------------------------------------------------------------------
// 7. Smaller holes
// ---------------------------------------------------------------------------

/// OIDC Core §3.1.3.7: an `azp` must be the client, whatever `aud` holds.
#[tokio::test]
async fn an_id_token_authorised_for_another_party_is_refused() {
    let app = TestApp::spawn().await;
    let mut claims = app.idp.id_token_claims("alice", "chat-app", &["developer"]);
    claims["azp"] = json!("triage-agent");
    let id_token = app.idp.sign(Some("JWT"), &claims);
    refused_for(
        &app,
        app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, LOGS, &[]),
        "token.audience",
    )
    .await
    .assert_error(400, "invalid_request");
}

/// Upstream tokens are bounded in lifetime, and subject revocations last at
/// least that long.
#[tokio::test]
async fn an_upstream_token_living_longer_than_the_bound_is_refused_and_cut_offs_outlive_it() {
    let app = TestApp::spawn().await;
    let mut claims = app.idp.id_token_claims("alice", "chat-app", &["developer"]);
    claims["exp"] = json!(now_secs() + 2 * 86400);
    let long = app.idp.sign(Some("JWT"), &claims);
    refused_for(
        &app,
        app.exchange_for_hop("chat-app", &long, ID_TOKEN, LOGS, &[]),
        "token.lifetime",
    )
    .await
    .assert_error(400, "invalid_request");
    let r = app
        .post_form(
            "/admin/revoke",
            Auth::Basic("security-ops"),
            &[("sub", "alice"), ("iss", &app.idp.issuer)],
        )
        .await;
    r.assert_ok();
    let bound = app.config.tokens.max_upstream_token_lifetime_secs;
    assert!(r.body["until"].as_i64().unwrap() >= now_secs() + bound, "{}", r.body);
}

/// "Not trusted" and "not trusted for this" read the same: the trust list
/// does not leak through error descriptions.
#[tokio::test]
async fn an_untrusted_issuer_and_a_wrong_purpose_get_the_same_description() {
    let app = TestApp::spawn().await;
    let stranger = FakeIdp::start().await;
    let wrong_purpose = refused_for(
        &app,
        chat_first_hop_with_actor(&app, app.idp.actor_token("agent:x", &app.issuer)),
        "token.issuer_purpose",
    )
    .await;
    let untrusted = refused_for(
        &app,
        chat_first_hop_with_actor(&app, stranger.actor_token("agent:x", &app.issuer)),
        "token.untrusted_issuer",
    )
    .await;
    wrong_purpose.assert_error(400, "invalid_request");
    assert_eq!(wrong_purpose.body, untrusted.body);
}

/// RFC 7662 §2.1: only the client a token was issued to, or its resource
/// server, learns that it is active.
#[tokio::test]
async fn introspection_tells_only_the_token_holder_or_its_resource() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    let ask = |client: &'static str| {
        let (app, token) = (&app, hop.token().to_owned());
        async move {
            let r = app
                .post_form("/introspect", Auth::Basic(client), &[("token", &token)])
                .await;
            r.assert_ok();
            r.body
        }
    };
    assert_eq!(ask("triage-agent").await["active"], true, "the client it was issued to");
    assert_eq!(ask("mcp-logs").await["active"], true, "its resource server");
    assert_eq!(ask("cost-tool").await, json!({"active": false}));
    let record = last_record(&app).await;
    assert_eq!(record.decision, Decision::Granted);
    assert_eq!(record.reason.as_deref(), Some("introspection.not_for_caller"));
    assert_eq!(record.client_auth_method.as_deref(), Some("client_secret_basic"));
}

/// Store keys are never ambiguous: a client id with `:` is a config error.
#[test]
fn a_client_id_that_could_make_store_keys_ambiguous_is_refused_at_load() {
    let mut config = example_config();
    let chat = config.clients["chat-app"].clone();
    config.clients.insert("evil:client".into(), chat);
    let err = config.resolve("test").unwrap_err().to_string();
    assert!(
        err.contains("key `clients.evil:client`") && err.contains("A-Z a-z 0-9 - . _ ~"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// 8. RFC conformance
// ---------------------------------------------------------------------------

/// RFC 7662 §2.2: our own token past its `exp` is inactive at once — no
/// clock-skew grace for tokens we issued — and revoking it changes nothing.
#[tokio::test]
async fn our_own_token_is_inactive_the_second_it_expires() {
    let clock = std::sync::Arc::new(xaa_broker::clock::ManualClock::new());
    let app = TestApp::spawn_with_clock(clock.clone(), |c| c.audiences.get_mut(COST).unwrap().ttl_secs = Some(1)).await;
    let (_, _, hop) = app.agent_then_logs_to_cost("alice").await;
    // One second past `exp` on the broker's clock: no sleeping.
    clock.advance_secs(2);
    let r = app
        .post_form("/introspect", Auth::Basic("cost-tool"), &[("token", hop.token())])
        .await;
    assert_eq!(r.body, json!({"active": false}), "within the 60 s skew, yet expired");
    let revoked = app
        .post_form("/revoke", Auth::Basic("mcp-logs"), &[("token", hop.token())])
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(last_record(&app).await.reason, None, "nothing to revoke");
}

/// RFC 6749 §5.2: a missing `assertion` is a malformed request; RFC 7523
/// §3.1 keeps `invalid_grant` for a bad one.
#[tokio::test]
async fn jwt_bearer_without_an_assertion_is_an_invalid_request() {
    let (_enterprise, ras) = TestApp::spawn_pair().await;
    let r = refused_for(
        &ras,
        ras.token(Auth::Basic("0oa-chat-app"), &[("grant_type", JWT_BEARER)]),
        "request.missing_parameter",
    )
    .await;
    r.assert_error(400, "invalid_request");
    ras.token(
        Auth::Basic("0oa-chat-app"),
        &[("grant_type", JWT_BEARER), ("assertion", "not-a-jwt")],
    )
    .await
    .assert_error(400, "invalid_grant");
}
