//! Actor tokens (RFC 8693 §2.1 `actor_token`) and the subject's `may_act`
//! (§4.4): who becomes the new actor, and who may not.

use serde_json::{Value, json};
use xaa_broker::types::now_secs;

use crate::support::*;

/// chat-app takes alice's first hop to the logs MCP with `actor_token`.
async fn first_hop_with_actor(app: &TestApp, actor_token: &str) -> Resp {
    let id_token = app.idp.id_token("alice", "chat-app", &["developer", "sre"]);
    app.first_hop_with_actor("chat-app", &id_token, actor_token).await
}

/// A partner access token issued for the logs MCP (so mcp-logs may present
/// it), with `tweak` applied to its claims.
fn partner_token(app: &TestApp, tweak: impl FnOnce(&mut Value)) -> String {
    let now = now_secs();
    let mut claims = json!({
        "iss": app.partner.issuer, "sub": "alice", "aud": LOGS, "client_id": "partner-portal",
        "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(),
        "scope": "logs.read", "groups": ["sre"], "txn": "partner-txn-actor",
    });
    tweak(&mut claims);
    app.partner.sign(Some("at+jwt"), &claims)
}

#[tokio::test]
async fn an_actor_token_names_the_actor_and_an_app_client_adds_nothing_else() {
    let app = TestApp::spawn().await;
    let actor = app.agents.actor_token("agent:x", &app.issuer);
    let r = first_hop_with_actor(&app, &actor).await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "chat-app");
    assert_eq!(
        claims["act"],
        json!({"sub": "agent:x", "iss": app.agents.issuer, "sub_profile": "ai_agent"})
    );
    // The agent's cap applies: no destructive scope although alice is an sre.
    assert_eq!(claims["scope"], "logs.read logs.write");
    let audit = app.audit(claims["txn"].as_str().unwrap()).await;
    let fingerprint = audit[0].actor_token.as_ref().expect("the actor token is recorded");
    assert_eq!(fingerprint.iss.as_deref(), Some(app.agents.issuer.as_str()));
}

#[tokio::test]
async fn an_actor_token_from_an_issuer_not_trusted_for_actors_is_refused() {
    let app = TestApp::spawn().await;
    let from_corp_idp = app.idp.actor_token("agent:x", &app.issuer);
    refused(&app, first_hop_with_actor(&app, &from_corp_idp))
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_actor_token_addressed_to_another_audience_is_refused() {
    let app = TestApp::spawn().await;
    let elsewhere = app.agents.actor_token("agent:x", "https://broker.other.example.com");
    refused(&app, first_hop_with_actor(&app, &elsewhere))
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_actor_token_without_an_actor_token_type_is_refused() {
    let app = TestApp::spawn().await;
    let actor = app.agents.actor_token("agent:x", &app.issuer);
    let id_token = app.idp.id_token("alice", "chat-app", &["developer", "sre"]);
    refused(
        &app,
        app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, LOGS, &[("actor_token", &actor)]),
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_actor_that_is_the_subject_is_refused() {
    let app = TestApp::spawn().await;
    let alice_as_actor = app.agents.actor_token("alice", &app.issuer);
    refused(&app, first_hop_with_actor(&app, &alice_as_actor))
        .await
        .assert_error(400, "invalid_request");
}

/// alice's ID token for chat-app naming who may act for her, and chat-app's
/// first hop to the logs MCP with an actor token for `agent`.
async fn first_hop_with_may_act(app: &TestApp, may_act: Value, agent: &str) -> Resp {
    let mut claims = app.idp.id_token_claims("alice", "chat-app", &["developer", "sre"]);
    claims["may_act"] = may_act;
    let id_token = app.idp.sign(Some("JWT"), &claims);
    let actor = app.agents.actor_token(agent, &app.issuer);
    app.first_hop_with_actor("chat-app", &id_token, &actor).await
}

#[tokio::test]
async fn may_act_admits_the_actor_it_names() {
    let app = TestApp::spawn().await;
    let r = first_hop_with_may_act(&app, json!({"sub": "agent:x", "iss": app.agents.issuer}), "agent:x").await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["act"],
        json!({"sub": "agent:x", "iss": app.agents.issuer, "sub_profile": "ai_agent"})
    );
    assert_eq!(
        claims["scope"], "logs.read logs.write",
        "an agent actor never gets the destructive logs.purge"
    );
}

/// A service client is its own actor: `may_act` naming it admits it.
#[tokio::test]
async fn may_act_admits_a_service_client_acting_as_itself() {
    let app = TestApp::spawn().await;
    let subject = partner_token(&app, |c| c["may_act"] = json!({"sub": "mcp:logs"}));
    let r = app
        .exchange_for_hop("mcp-logs", &subject, ACCESS_TOKEN, COST, &[])
        .await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["txn"], "partner-txn-actor");
    assert_eq!(claims["act"], json!({"sub": "mcp:logs", "sub_profile": "service"}));
}

#[tokio::test]
async fn may_act_refuses_any_other_actor() {
    let app = TestApp::spawn_with(|c| {
        let hosts = &mut c.clients.get_mut("chat-app").unwrap().actor_identities;
        let mut y = hosts[0].clone();
        y.sub = "agent:y".into();
        hosts.push(y);
    })
    .await;
    let may_act = json!({"sub": "agent:x", "iss": app.agents.issuer});
    refused_for(&app, first_hop_with_may_act(&app, may_act, "agent:y"), "chain.may_act")
        .await
        .assert_error(400, "invalid_request");
}

/// `may_act` without `iss` names a party in the subject token's own
/// namespace: an actor vouched for by a third issuer does not match it,
/// even with the same `sub`.
#[tokio::test]
async fn may_act_without_iss_never_matches_another_issuers_actor() {
    let app = TestApp::spawn().await;
    refused_for(
        &app,
        first_hop_with_may_act(&app, json!({"sub": "agent:x"}), "agent:x"),
        "chain.may_act",
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_subject_token_with_a_malformed_act_is_refused() {
    let app = TestApp::spawn().await;
    for forged in [
        json!("agent:admin"),
        json!({"iss": "https://agents.example.com"}),
        json!({"sub": 7}),
    ] {
        let subject = partner_token(&app, |c| c["act"] = forged.clone());
        refused(
            &app,
            app.exchange_for_hop("mcp-logs", &subject, ACCESS_TOKEN, COST, &[]),
        )
        .await
        .assert_error(400, "invalid_request");
    }
}

/// RFC 8693 §4.1: `act` is a JSON object. An array is not an actor, even one
/// whose elements line up with an actor's fields.
#[tokio::test]
async fn a_subject_token_whose_act_is_an_array_is_refused() {
    let app = TestApp::spawn().await;
    let subject = partner_token(&app, |c| c["act"] = json!(["agent:admin"]));
    refused(
        &app,
        app.exchange_for_hop("mcp-logs", &subject, ACCESS_TOKEN, COST, &[]),
    )
    .await
    .assert_error(400, "invalid_request");
}

/// An upstream chain entry naming one of our own services (`mcp:logs`) is
/// not that service: it is stamped with the upstream's issuer and judged by
/// its own profile, so it cannot shed the agent cap or borrow a client's
/// identity.
#[tokio::test]
async fn an_upstream_act_entry_cannot_pose_as_one_of_our_services() {
    let app = TestApp::spawn().await;
    // A partner token (for the logs resource) whose chain claims mcp:logs
    // without a profile: an unknown actor, capped as an agent.
    let token = partner_token(&app, |c| {
        c["scope"] = json!("logs.read logs.write logs.purge");
        c["act"] = json!({"sub": "mcp:logs"});
    });
    let r = app
        .exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    r.assert_ok();
    let act = &r.claims()["act"];
    assert_eq!(
        act["act"],
        json!({"sub": "mcp:logs", "iss": app.partner.issuer}),
        "stamped with who vouched"
    );
    assert_eq!(
        r.claims()["scope"],
        "incidents.read incidents.write",
        "capped as an agent: no admin scope"
    );
}

/// A client whose actor identity equals the user's subject would make `act`
/// and `sub` indistinguishable: refused.
#[tokio::test]
async fn a_client_acting_as_the_users_own_subject_is_refused() {
    let app =
        TestApp::spawn_with(|c| c.clients.get_mut("triage-agent").unwrap().actor_sub = Some("alice".into())).await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    let r = refused_for(
        &app,
        app.exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[]),
        "chain.actor_is_subject",
    )
    .await;
    r.assert_error(400, "invalid_request");
}

// ---------------------------------------------------------------------------
// The actor profile (draft-mcguinness-oauth-actor-profile,
// draft-mora-oauth-entity-profiles): `sub_profile` on inbound entries,
// `client_profile` on what we sign.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_inbound_entry_profiled_ai_agent_is_capped_and_only_service_alone_lifts_it() {
    let app = TestApp::spawn().await;
    // mcp-logs exchanges a partner token (alice, sre) onwards to the cost
    // tool; cost.approve is human-only, so it survives only if every entry
    // of the chain is a service.
    for (profile, scope) in [
        (Some("ai_agent"), "cost.read"),
        (Some("service AI_AGENT"), "cost.read"),
        (Some("user"), "cost.read"),
        (Some("service acme_robot"), "cost.read"),
        (None, "cost.read"),
        (Some("service"), "cost.approve cost.read"),
        (Some("Service"), "cost.approve cost.read"),
    ] {
        let token = partner_token(&app, |c| {
            // client_profile inside act classifies nothing (actor profile §3.4).
            let mut entry = json!({"sub": "bot:partner", "client_profile": "service"});
            if let Some(p) = profile {
                entry["sub_profile"] = json!(p);
            }
            c["act"] = entry;
        });
        let r = app.exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, COST, &[]).await;
        r.assert_ok();
        let claims = r.claims();
        assert_eq!(claims["scope"], scope, "sub_profile {profile:?}");
        let inherited = &claims["act"]["act"];
        assert_eq!(inherited["sub"], "bot:partner");
        assert_eq!(
            inherited["iss"],
            app.partner.issuer.as_str(),
            "vouched for by the partner"
        );
        assert_eq!(
            inherited.get("sub_profile").and_then(Value::as_str),
            profile,
            "kept as written"
        );
        assert!(inherited.get("client_profile").is_none(), "never carried inside act");
    }
}

#[tokio::test]
async fn every_token_we_sign_names_its_clients_profile_and_never_guesses_one() {
    let app = TestApp::spawn().await;
    // An agent's hop token, then a service's onwards.
    let (_, first, second) = app.agent_then_logs_to_cost("alice").await;
    assert_eq!(first.claims()["client_profile"], "ai_agent");
    assert_eq!(second.claims()["client_profile"], "service");
    for entry in [&second.claims()["act"], &second.claims()["act"]["act"]] {
        assert!(entry.get("client_profile").is_none(), "{entry}");
    }
    // An app: web, native or browser is not configured, so no profile.
    let hop = app.first_hop("chat-app", LOGS).await;
    hop.assert_ok();
    assert!(hop.claims().get("client_profile").is_none(), "{}", hop.claims());
    // An ID-JAG for an agent names the agent's profile too.
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    let jag = app.exchange_for_id_jag("triage-agent", &id_token, SAAS_AS, &[]).await;
    jag.assert_ok();
    assert_eq!(jag.claims()["client_profile"], "ai_agent");
}

// ---------------------------------------------------------------------------
// `delegated_through`: a flat delegation list beside `act`, read for caps
// and audit, never trusted to loosen anything (decisions §3, "The actor
// profile").
// ---------------------------------------------------------------------------

/// A partner token for the logs MCP carrying `list` as `delegated_through`.
fn partner_token_delegated(app: &TestApp, list: Value, tweak: impl FnOnce(&mut Value)) -> String {
    partner_token(app, |c| {
        c["delegated_through"] = list;
        tweak(c);
    })
}

#[tokio::test]
async fn an_agent_listed_in_delegated_through_is_held_to_the_agent_categories_at_every_hop() {
    // cost-tool without its own `read` cap, so that only the chain caps it.
    let app = TestApp::spawn_with(|c| c.clients.get_mut("cost-tool").unwrap().categories = None).await;
    // Without a list, the service chain gets the admin scope of an sre.
    let plain = partner_token(&app, |_| {});
    let r = app
        .exchange_for_hop("mcp-logs", &plain, ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    r.assert_ok();
    assert_eq!(r.claims()["scope"], "incidents.admin incidents.read incidents.write");

    // An ai_agent named only in the flat list: the agent categories apply.
    let listed = json!([{"sub": "agent:z", "sub_profile": "ai_agent"}, "svc:relay"]);
    let token = partner_token_delegated(&app, listed, |_| {});
    let r = app
        .exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["scope"], "incidents.read incidents.write");
    assert_eq!(
        claims["act"],
        json!({"sub": "mcp:logs", "sub_profile": "service"}),
        "act is what it was plus this hop's actor: the list adds no entry to it"
    );
    let stamped = json!([
        {"sub": "agent:z", "iss": app.partner.issuer, "sub_profile": "ai_agent"},
        {"sub": "svc:relay", "iss": app.partner.issuer}
    ]);
    assert_eq!(claims["delegated_through"], stamped, "carried on, named by who vouched");

    // The audit record has the list, and says which rule withheld what.
    let records = app.audit("partner-txn-actor").await;
    let record = records.last().unwrap();
    assert_eq!(serde_json::to_value(&record.delegated_through).unwrap(), stamped);
    assert_eq!(
        serde_json::to_value(&record.scope_withheld).unwrap(),
        json!([{"scope": "incidents.admin", "reason": "agent_category"}])
    );
    assert_eq!(xaa_broker::audit::verify_chain(&app.all_audit().await), Ok(()));

    // The next hop, from our own token, still knows the agent was there.
    let to_cost = app.exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, COST, &[]).await;
    to_cost.assert_ok();
    assert_eq!(to_cost.claims()["scope"], "cost.read", "cost.approve is human-only");
    let onward = app
        .exchange_for_hop("cost-tool", to_cost.token(), ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    onward.assert_ok();
    assert_eq!(onward.claims()["scope"], "incidents.read incidents.write");
    assert_eq!(onward.claims()["delegated_through"], stamped);
}

#[tokio::test]
async fn a_delegated_through_of_seventeen_entries_is_refused_as_malformed() {
    let app = TestApp::spawn().await;
    let seventeen: Vec<String> = (0..17).map(|i| format!("agent:{i}")).collect();
    for list in [json!(seventeen), json!("agent:a"), json!([{"sub": 7}])] {
        let token = partner_token_delegated(&app, list, |_| {});
        refused_for(
            &app,
            app.exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, COST, &[]),
            "subject_token.delegated_through_malformed",
        )
        .await
        .assert_error(400, "invalid_request");
    }
    // Sixteen is the bound, not a refusal: the depth cap decides then.
    let sixteen: Vec<String> = (0..16).map(|_| "agent:same".to_owned()).collect();
    let token = partner_token_delegated(&app, json!(sixteen), |_| {});
    app.exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, COST, &[])
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_delegated_through_naming_fewer_hops_than_act_never_shortens_the_chain() {
    let app = TestApp::spawn().await;
    // Three inherited entries; the list names only the outermost one.
    let act = json!({"sub": "svc:a", "sub_profile": "service",
        "act": {"sub": "svc:b", "sub_profile": "service",
            "act": {"sub": "agent:c", "sub_profile": "ai_agent"}}});
    let token = partner_token_delegated(&app, json!(["svc:a"]), |c| c["act"] = act.clone());
    let r = app.exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, COST, &[]).await;
    r.assert_ok();
    let claims = r.claims();
    let subs: Vec<&str> = std::iter::successors(Some(&claims["act"]), |a| a.get("act"))
        .filter_map(|a| a["sub"].as_str())
        .collect();
    assert_eq!(
        subs,
        ["mcp:logs", "svc:a", "svc:b", "agent:c"],
        "every actor stays in act"
    );
    assert_eq!(claims["scope"], "cost.read", "the agent deep in act still caps");

    // Four inherited entries and a one-entry list: five with this hop, over
    // the depth cap (4) — the short list did not make the chain shorter.
    let deep = json!({"sub": "svc:0", "sub_profile": "service", "act": act});
    let token = partner_token_delegated(&app, json!(["svc:0"]), |c| c["act"] = deep);
    refused_for(
        &app,
        app.exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, COST, &[]),
        "chain.depth_exceeded",
    )
    .await
    .assert_error(400, "invalid_request");
    let denied = app.all_audit().await.pop().unwrap();
    assert_eq!(
        serde_json::to_value(&denied.delegated_through).unwrap(),
        json!([{"sub": "svc:0", "iss": app.partner.issuer}]),
        "a denial records the list it read"
    );

    // A list naming parties act does not: they count toward the depth.
    let others = json!(["svc:x", "svc:y"]);
    let token = partner_token_delegated(&app, others, |c| c["act"] = act.clone());
    refused_for(
        &app,
        app.exchange_for_hop("mcp-logs", &token, ACCESS_TOKEN, COST, &[]),
        "chain.depth_exceeded",
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_id_token_carrying_delegated_through_is_refused() {
    let app = TestApp::spawn().await;
    let mut claims = app.idp.id_token_claims("alice", "chat-app", &["developer"]);
    claims["delegated_through"] = json!(["agent:evil"]);
    let id_token = app.idp.sign(Some("JWT"), &claims);
    refused_for(
        &app,
        app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, LOGS, &[]),
        "subject_token.delegated_through_in_id_token",
    )
    .await
    .assert_error(400, "invalid_request");
}
