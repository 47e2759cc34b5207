//! Multi-hop Cross-App Access (specs/decisions.md §27): an access token
//! issued by a trusted resource AS, or by us, is the subject of an ID-JAG
//! request (RFC 8693 §2.1, ID-JAG §4.3), so that an agent at resource A
//! reaches resource B for the same user. `sub`, `txn` and the `act` chain
//! carry over; the rules are exactly those of a hop token.
//!
//! The first test runs the whole chain across three real deployments over
//! HTTP: the enterprise broker (examples/broker.toml) and two resource ASes
//! (examples/resource-as.toml), each redeeming the broker's ID-JAGs, and
//! the broker trusting resource AS A's access tokens through A's `/jwks`.
//! The broker cannot play resource AS A itself: it never redeems an ID-JAG
//! it issued (ID-JAG security considerations). The attacks after it run
//! against one broker with tokens a fake upstream signs with real keys.

use serde_json::{Value, json};
use xaa_broker::audit::Decision;
use xaa_broker::config::Config;
use xaa_broker::policy::Category;
use xaa_broker::types::now_secs;

use crate::support::*;

/// Resource AS B's MCP server: the resource its access tokens are for.
const RESOURCE_B: &str = "https://mcp.b.example.com/mcp";

/// The jwt-bearer grant (RFC 7523 §2.1) at a resource AS.
async fn redeem(ras: &TestApp, client: &str, assertion: &str) -> Resp {
    ras.token(
        Auth::Basic(client),
        &[("grant_type", JWT_BEARER), ("assertion", assertion)],
    )
    .await
}

fn secret_sha256(client: &str) -> Option<String> {
    Some(xaa_broker::jose::sha256_hex(format!("{client}-secret").as_bytes()))
}

/// The enterprise broker and two resource ASes.
struct Parties {
    broker: TestApp,
    ras_a: TestApp,
    ras_b: TestApp,
}

impl Parties {
    async fn start() -> Parties {
        Self::start_with(|_| {}).await
    }

    /// The example deployments, wired for the agent-to-agent flow:
    ///
    /// - the broker issues ID-JAGs for A (the example's SaaS) and for B (a
    ///   second resource AS, whose catalog also has the destructive
    ///   `crm.delete`, which sre may have); it trusts A's access tokens
    ///   (`issuers.ras-a`, `trust = ["access_token"]`, A's `/jwks`) and the
    ///   roles they carry; `saas-a-mcp` is the service at resource A (its
    ///   `resource`), which may obtain ID-JAGs for B;
    /// - A and B redeem the broker's ID-JAGs; A carries the broker's roles
    ///   into its access tokens (`issuers.acme-broker.roles`).
    async fn start_with(tweak_broker: impl FnOnce(&mut Config)) -> Parties {
        let (a_listener, b_listener) = (bind().await, bind().await);
        let a_issuer = format!("http://{}", a_listener.local_addr().unwrap());
        let b_issuer = format!("http://{}", b_listener.local_addr().unwrap());
        let broker = TestApp::spawn_with(|c| {
            rename_audience(c, SAAS_AS, &a_issuer);
            let mut b = c.audiences[&a_issuer].clone();
            b.aliases.clear();
            b.resources = vec![RESOURCE_B.into()];
            b.scopes.insert("crm.delete".into(), Category::Destructive);
            c.audiences.insert(b_issuer.clone(), b);
            c.roles.get_mut("sre").unwrap().push("crm.delete".into());
            let mut ras_a = c.issuers["partner"].clone();
            ras_a.issuer = a_issuer.clone();
            ras_a.jwks_uri = Some(format!("{a_issuer}/jwks"));
            c.issuers.insert("ras-a".into(), ras_a);
            let mut service = c.clients["mcp-logs"].clone();
            service.actor_sub = Some("mcp:saas-a".into());
            service.resource = Some(SAAS_MCP.into());
            service.secret_sha256 = secret_sha256("saas-a-mcp");
            service.audiences = vec![b_issuer.clone()];
            service.ras_client_ids = [(b_issuer.clone(), "0oa-saas-a".to_owned())].into();
            c.clients.insert("saas-a-mcp".into(), service);
            tweak_broker(c);
        })
        .await;
        let trusting_the_broker = |c: &mut Config| {
            let acme = c.issuers.get_mut("acme-broker").unwrap();
            acme.issuer = broker.issuer.clone();
            acme.jwks_uri = Some(broker.url("/jwks"));
        };
        let ras_a = TestApp::spawn_on(a_listener, resource_as_config(), |c| {
            trusting_the_broker(c);
            c.issuers.get_mut("acme-broker").unwrap().roles = Some(vec!["developer".into(), "sre".into()]);
            c.roles = [
                ("developer".to_owned(), vec!["crm.read".to_owned()]),
                (
                    "sre".to_owned(),
                    vec!["crm.read".into(), "crm.write".into(), "crm.delete".into()],
                ),
            ]
            .into();
        })
        .await;
        let ras_b = TestApp::spawn_on(b_listener, resource_as_config(), |c| {
            trusting_the_broker(c);
            rename_audience(c, SAAS_MCP, RESOURCE_B);
            c.resource_as.default_resource = Some(RESOURCE_B.into());
            let mut client = c.clients["0oa-triage"].clone();
            client.kind = xaa_broker::types::ClientKind::Service;
            client.actor_sub = Some("mcp:saas-a".into());
            client.resource = Some(SAAS_MCP.into());
            client.secret_sha256 = secret_sha256("0oa-saas-a");
            c.clients.insert("0oa-saas-a".into(), client);
        })
        .await;
        Parties { broker, ras_a, ras_b }
    }
}

fn resource_as_config() -> Config {
    Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/resource-as.toml"))
        .expect("examples/resource-as.toml loads")
}

/// Every `sub` of an `act` chain, outermost first.
fn actors(act: &Value) -> Vec<&str> {
    std::iter::successors(Some(act), |a| a.get("act"))
        .filter_map(|a| a["sub"].as_str())
        .collect()
}

fn scopes(claims: &Value) -> Vec<&str> {
    claims["scope"].as_str().unwrap_or_default().split(' ').collect()
}

// ---------------------------------------------------------------------------
// IdP → ID-JAG → resource A's access token → new ID-JAG → resource B
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_agent_at_resource_a_reaches_resource_b_for_the_same_user_across_three_deployments() {
    let p = Parties::start().await;

    // 1. alice signs in at the IdP; the triage agent gets an ID-JAG for A.
    let id_token = p.broker.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let jag_a = p
        .broker
        .exchange_for_id_jag("triage-agent", &id_token, &p.ras_a.issuer, &[("resource", SAAS_MCP)])
        .await;
    jag_a.assert_ok();
    let jag_a_token = jag_a.token().to_owned();
    let jag_a = p
        .broker
        .verify_with_published_jwks(&jag_a_token, "oauth-id-jag+jwt")
        .await;
    let txn = jag_a["txn"].as_str().unwrap().to_owned();

    // 2. Resource AS A redeems it: an access token for resource A, by A.
    let at_a = redeem(&p.ras_a, "0oa-triage", &jag_a_token).await;
    at_a.assert_ok();
    let at_a_token = at_a.token().to_owned();
    let at_a = p.ras_a.verify_with_published_jwks(&at_a_token, "at+jwt").await;
    assert_eq!(
        (at_a["iss"].as_str(), at_a["aud"].as_str()),
        (Some(p.ras_a.issuer.as_str()), Some(SAAS_MCP))
    );
    assert_eq!(
        at_a["roles"],
        json!(["developer", "sre"]),
        "A carries the roles it trusts"
    );

    // 3. The service at resource A exchanges that token at the broker for
    //    an ID-JAG for resource AS B.
    let jag_b = p
        .broker
        .id_jag_from(
            "saas-a-mcp",
            &at_a_token,
            ACCESS_TOKEN,
            &p.ras_b.issuer,
            &[("resource", RESOURCE_B)],
        )
        .await;
    jag_b.assert_ok();
    assert_eq!(
        (
            jag_b.body["issued_token_type"].as_str(),
            jag_b.body["token_type"].as_str()
        ),
        (Some(ID_JAG), Some("N_A"))
    );
    let jag_b_token = jag_b.token().to_owned();
    let jag_b = p
        .broker
        .verify_with_published_jwks(&jag_b_token, "oauth-id-jag+jwt")
        .await;
    assert_eq!(jag_b["iss"], p.broker.issuer);
    assert_eq!(jag_b["aud"], p.ras_b.issuer);
    assert_eq!(jag_b["resource"], RESOURCE_B);
    assert_eq!(jag_b["client_id"], "0oa-saas-a", "its id at B (ras_client_ids)");
    assert_eq!(jag_b["client_profile"], "service");
    assert_eq!(jag_b["sub"], "alice");
    assert_eq!(
        jag_b["sub_id"],
        json!({"format": "iss_sub", "iss": p.ras_a.issuer, "sub": "alice"}),
        "the user as vouched for by the issuer of the token presented (decisions §18)"
    );
    assert_eq!(jag_b["txn"], txn.as_str(), "the transaction carries over");
    assert_eq!(
        jag_b["act"],
        json!({"sub": "mcp:saas-a", "sub_profile": "service",
               "act": {"sub": "agent:triage", "iss": p.broker.issuer, "sub_profile": "ai_agent"}}),
        "the presenting service wraps the chain A received"
    );
    assert_eq!(jag_b["roles"], json!(["developer", "sre"]));
    assert_eq!(
        jag_b["email"], "alice@example.com",
        "sign-in facts carried, never invented"
    );
    assert_eq!(
        jag_b["scope"], "crm.read crm.write",
        "sre may delete at B, but an agent is in the chain"
    );
    assert!(
        jag_b["exp"].as_i64().unwrap() <= at_a["exp"].as_i64().unwrap(),
        "never outlives its subject"
    );

    // 4. Resource AS B redeems it.
    let at_b = redeem(&p.ras_b, "0oa-saas-a", &jag_b_token).await;
    at_b.assert_ok();
    let at_b = p.ras_b.verify_with_published_jwks(at_b.token(), "at+jwt").await;
    assert_eq!(at_b["iss"], p.ras_b.issuer);
    assert_eq!(at_b["aud"], RESOURCE_B);
    assert_eq!(at_b["sub"], "alice", "the same user at the end of the chain");
    assert_eq!(at_b["txn"], txn.as_str(), "one txn from the sign-in to resource B");
    assert_eq!(
        actors(&at_b["act"]),
        ["mcp:saas-a", "agent:triage"],
        "every hop's actor is in the chain"
    );
    for entry in [&at_b["act"], &at_b["act"]["act"]] {
        assert_eq!(entry["iss"], p.broker.issuer, "named by who vouched: {entry}");
    }
    for s in scopes(&at_b) {
        assert!(scopes(&at_a).contains(&s) && scopes(&jag_a).contains(&s), "{s} grew");
    }
    assert!(!scopes(&at_b).contains(&"crm.delete"));

    // 5. The broker's audit trail: both of its steps under the one txn, the
    //    second naming resource A's token (issuer and jti) as its subject.
    let trace = p
        .broker
        .post_form("/audit/trace", Auth::Basic("auditor"), &[("txn", &txn)])
        .await;
    trace.assert_ok();
    let records = trace.body["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(
        records
            .iter()
            .all(|r| r["decision"] == "granted" && r["txn"] == txn.as_str())
    );
    let (first, second) = (&records[0], &records[1]);
    assert_eq!(first["client_id"], "triage-agent");
    assert_eq!(first["audience"], p.ras_a.issuer);
    assert_eq!(first["issued_jti"], jag_a["jti"]);
    assert_eq!(second["client_id"], "saas-a-mcp");
    assert_eq!(second["audience"], p.ras_b.issuer);
    assert_eq!(second["subject_token"]["iss"], p.ras_a.issuer);
    assert_eq!(second["parent_jti"], at_a["jti"], "exchanged from A's token");
    assert_eq!(second["issued_jti"], jag_b["jti"]);
    assert_eq!(second["sub_iss"], p.ras_a.issuer);
    assert_eq!(second["act"], jag_b["act"]);
    assert_eq!(
        second["scope_withheld"],
        json!([{"scope": "crm.delete", "reason": "agent_category"}])
    );
    // Each resource AS recorded its redemption under the same txn, so the
    // lineage crosses the three trails: jag_a → at_a → jag_b → at_b.
    let at_a_record = &p.ras_a.audit(&txn).await[0];
    assert_eq!(at_a_record.parent_jti.as_deref(), jag_a["jti"].as_str());
    assert_eq!(at_a_record.issued_jti.as_deref(), at_a["jti"].as_str());
    let at_b_record = &p.ras_b.audit(&txn).await[0];
    assert_eq!(at_b_record.parent_jti.as_deref(), jag_b["jti"].as_str());
    assert_eq!(at_b_record.issued_jti.as_deref(), at_b["jti"].as_str());
}

#[tokio::test]
async fn a_resource_as_the_broker_does_not_trust_for_access_tokens_cannot_extend_the_chain() {
    let p = Parties::start_with(|c| {
        c.issuers.remove("ras-a");
    })
    .await;
    let id_token = p.broker.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let jag_a = p
        .broker
        .exchange_for_id_jag("triage-agent", &id_token, &p.ras_a.issuer, &[])
        .await;
    jag_a.assert_ok();
    let at_a = redeem(&p.ras_a, "0oa-triage", jag_a.token()).await;
    at_a.assert_ok();
    refused_for(
        &p.broker,
        p.broker
            .id_jag_from("saas-a-mcp", at_a.token(), ACCESS_TOKEN, &p.ras_b.issuer, &[]),
        "token.untrusted_issuer",
    )
    .await
    .assert_error(400, "invalid_request");
}

// ---------------------------------------------------------------------------
// One broker: our own tokens, and the attacks
// ---------------------------------------------------------------------------

/// The example broker, where the logs MCP may also obtain ID-JAGs for the
/// SaaS resource AS (as `0oa-mcp-logs` there), adjusted by `tweak`.
async fn broker_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|c| {
        let logs = c.clients.get_mut("mcp-logs").unwrap();
        logs.audiences.push(SAAS_AS.into());
        logs.ras_client_ids.insert(SAAS_AS.into(), "0oa-mcp-logs".into());
        tweak(c);
    })
    .await
}

/// A partner access token (trusted for access tokens) for the logs MCP: alice,
/// an sre there, in the partner's transaction; `tweak` changes its claims.
fn partner_token(app: &TestApp, tweak: impl FnOnce(&mut Value)) -> String {
    let now = now_secs();
    let mut claims = json!({
        "iss": app.partner.issuer, "sub": "alice", "aud": LOGS, "client_id": "partner-portal",
        "iat": now, "exp": now + 600, "jti": uuid::Uuid::now_v7().to_string(),
        "scope": "logs.read", "groups": ["sre"], "txn": "partner-txn-multi-hop",
    });
    tweak(&mut claims);
    app.partner.sign(Some("at+jwt"), &claims)
}

/// The logs MCP asks for an ID-JAG for the SaaS resource AS with `subject`.
async fn logs_id_jag(app: &TestApp, subject: &str) -> Resp {
    app.id_jag_from("mcp-logs", subject, ACCESS_TOKEN, SAAS_AS, &[]).await
}

/// "Or by us": the hop token the logs MCP received from an agent becomes an
/// ID-JAG, for the same user and transaction, the logs MCP wrapping the
/// agent's chain, under the hop rules (`jwt` is accepted as for hops).
#[tokio::test]
async fn one_of_our_hop_tokens_is_the_subject_of_an_id_jag_for_the_same_user_and_txn() {
    let app = broker_with(|_| {}).await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    let hop_claims = hop.claims();
    for subject_type in [ACCESS_TOKEN, JWT] {
        let r = app
            .id_jag_from("mcp-logs", hop.token(), subject_type, SAAS_AS, &[])
            .await;
        r.assert_ok();
        assert_eq!(r.body["issued_token_type"], ID_JAG);
        let jag = app.verify_with_published_jwks(r.token(), "oauth-id-jag+jwt").await;
        assert_eq!(jag["aud"], SAAS_AS);
        assert_eq!(jag["client_id"], "0oa-mcp-logs");
        assert_eq!(jag["sub"], hop_claims["sub"]);
        assert_eq!(
            jag["sub_id"], hop_claims["sub_id"],
            "ours: the IdP stays the user's issuer"
        );
        assert_eq!(jag["txn"], hop_claims["txn"]);
        assert_eq!(jag["roles"], hop_claims["roles"]);
        assert_eq!(
            jag["act"],
            json!({"sub": "mcp:logs", "sub_profile": "service", "act": hop_claims["act"]})
        );
        assert_eq!(jag["scope"], "crm.read crm.write");
        assert!(jag["exp"].as_i64().unwrap() <= hop_claims["exp"].as_i64().unwrap());
    }
    // In the trace, the ID-JAGs hang under the hop they were exchanged from.
    let records = app.audit(hop_claims["txn"].as_str().unwrap()).await;
    assert_eq!(records.len(), 3);
    for r in &records[1..] {
        assert_eq!(r.decision, Decision::Granted);
        assert_eq!(r.parent_jti.as_deref(), hop_claims["jti"].as_str());
        assert_eq!(r.issued_token_type.as_deref(), Some(ID_JAG));
    }
}

#[tokio::test]
async fn an_access_token_from_an_issuer_not_trusted_for_access_tokens_is_refused() {
    let app = broker_with(|_| {}).await;
    let stranger = FakeIdp::start().await;
    let claims = |iss: &str| {
        let now = now_secs();
        json!({"iss": iss, "sub": "alice", "aud": LOGS, "client_id": "mcp-logs", "iat": now,
               "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string(), "groups": ["sre"]})
    };
    // The IdP (trusted for ID tokens only), the workload identity provider
    // (actor tokens only), and an issuer nobody trusts.
    for (signer, reason) in [
        (&app.idp, "token.issuer_purpose"),
        (&app.agents, "token.issuer_purpose"),
        (&stranger, "token.untrusted_issuer"),
    ] {
        let token = signer.sign(Some("at+jwt"), &claims(&signer.issuer));
        refused_for(&app, logs_id_jag(&app, &token), reason)
            .await
            .assert_error(400, "invalid_request");
    }
    // An ID-JAG of ours is not an access token either.
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let jag = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]).await;
    jag.assert_ok();
    refused_for(&app, logs_id_jag(&app, jag.token()), "token.typ")
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_access_token_not_issued_to_or_for_the_client_is_refused() {
    let app = broker_with(|c| {
        let chat = c.clients.get_mut("chat-app").unwrap();
        chat.audiences.push(COST.into());
    })
    .await;
    // The chat app's token for the cost tool: not the logs MCP's resource,
    // not issued to it.
    let id_token = app.idp.id_token("alice", "chat-app", &["developer", "sre"]);
    let hop = app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, COST, &[]).await;
    hop.assert_ok();
    refused_for(
        &app,
        logs_id_jag(&app, hop.token()),
        "subject_token.not_issued_to_client",
    )
    .await
    .assert_error(400, "invalid_request");
    // A partner token for another resource, issued to another client.
    let elsewhere = partner_token(&app, |c| c["aud"] = json!(COST));
    refused_for(
        &app,
        logs_id_jag(&app, &elsewhere),
        "subject_token.not_issued_to_client",
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_id_token_still_starts_a_fresh_chain_and_no_token_passes_as_the_other_kind() {
    let app = TestApp::spawn().await;
    // An ID token claiming a transaction starts a new one.
    let mut claims = app.idp.id_token_claims("alice", "chat-app", &["developer"]);
    claims["txn"] = json!("0196a3c4-0000-7000-8000-00000000f00d");
    let id_token = app.idp.sign(Some("JWT"), &claims);
    let r = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]).await;
    r.assert_ok();
    let jag = r.claims();
    assert_ne!(jag["txn"], claims["txn"]);
    assert_eq!(
        uuid::Uuid::parse_str(jag["txn"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        7
    );
    assert!(jag.get("act").is_none(), "an app adds no actor");
    // An access token sent as an ID token, and an ID token sent as an
    // access token, are each judged by the rule they claim and refused.
    let hop = app.first_hop("chat-app", LOGS).await;
    hop.assert_ok();
    for (subject, subject_type) in [(hop.token(), ID_TOKEN), (id_token.as_str(), ACCESS_TOKEN)] {
        refused_for(
            &app,
            app.id_jag_from("chat-app", subject, subject_type, SAAS_AS, &[]),
            "token.typ",
        )
        .await
        .assert_error(400, "invalid_request");
    }
}

/// Scope, lifetime and roles never grow: the ID-JAG gets only the roles
/// the partner is trusted with, lives no longer than the token it came
/// from, and a re-exchange for the same audience stays within its scope.
#[tokio::test]
async fn authority_never_grows_through_a_multi_hop_id_jag() {
    let app = broker_with(|c| c.issuers.get_mut("partner").unwrap().roles = Some(vec!["developer".into()])).await;
    let exp = now_secs() + 60;
    let token = partner_token(&app, |c| {
        c["groups"] = json!(["developer", "sre"]);
        c["roles"] = json!(["sre"]);
        c["exp"] = json!(exp);
    });
    let r = app
        .id_jag_from(
            "mcp-logs",
            &token,
            ACCESS_TOKEN,
            SAAS_AS,
            &[("scope", "crm.read crm.write")],
        )
        .await;
    r.assert_ok();
    let jag = r.claims();
    assert_eq!(jag["roles"], json!(["developer"]), "sre is not the partner's to grant");
    assert_eq!(jag["scope"], "crm.read");
    assert_eq!(jag["exp"], exp, "bounded by the subject token's exp");
    let record = app.all_audit().await.pop().unwrap();
    assert_eq!(
        serde_json::to_value(&record.scope_withheld).unwrap(),
        json!([{"scope": "crm.write", "reason": "not_entitled"}])
    );
    // A token already for the resource AS bounds a re-exchange to it: the
    // user is entitled to crm.read, but the token grants only crm.write.
    let same_audience = partner_token(&app, |c| {
        c["aud"] = json!(SAAS_AS);
        c["client_id"] = json!("mcp-logs");
        c["scope"] = json!("crm.write");
        c["groups"] = json!(["developer"]);
    });
    refused_for(&app, logs_id_jag(&app, &same_audience), "scope.empty_grant")
        .await
        .assert_error(400, "invalid_scope");
}

#[tokio::test]
async fn an_agent_never_disappears_from_a_multi_hop_id_jag() {
    let app = broker_with(|c| {
        let saas = c.audiences.get_mut(SAAS_AS).unwrap();
        saas.scopes.insert("crm.delete".into(), Category::Destructive);
        c.roles.get_mut("sre").unwrap().push("crm.delete".into());
    })
    .await;
    // A token the partner issued to the chat app, with an agent acting: the
    // app adds no actor, and the agent stays, capped.
    let token = partner_token(&app, |c| {
        c["aud"] = json!("https://api.partner.example.net");
        c["client_id"] = json!("chat-app");
        c["act"] = json!({"sub": "agent:p", "sub_profile": "ai_agent"});
    });
    let r = app.id_jag_from("chat-app", &token, ACCESS_TOKEN, SAAS_AS, &[]).await;
    r.assert_ok();
    let jag = r.claims();
    assert_eq!(
        jag["act"],
        json!({"sub": "agent:p", "iss": app.partner.issuer, "sub_profile": "ai_agent"})
    );
    assert_eq!(
        jag["scope"], "crm.read crm.write",
        "no destructive scope with an agent acting"
    );
    // A service presenting a token with an agent's chain wraps the chain:
    // the agent stays under it, still capped.
    let for_logs = partner_token(&app, |c| {
        c["act"] = json!({"sub": "agent:p", "sub_profile": "ai_agent"})
    });
    let r = logs_id_jag(&app, &for_logs).await;
    r.assert_ok();
    assert_eq!(actors(&r.claims()["act"]), ["mcp:logs", "agent:p"]);
    assert_eq!(r.claims()["scope"], "crm.read crm.write");
    // Without an agent, the sre's service chain gets the destructive scope:
    // the cap above came from the agent.
    let r = logs_id_jag(&app, &partner_token(&app, |_| {})).await;
    r.assert_ok();
    assert_eq!(r.claims()["scope"], "crm.delete crm.read crm.write");
}

#[tokio::test]
async fn a_revoked_access_token_cannot_become_an_id_jag() {
    let app = broker_with(|_| {}).await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    let txn = hop.claims()["txn"].as_str().unwrap().to_owned();
    app.post_form("/admin/revoke", Auth::Basic("security-ops"), &[("txn", &txn)])
        .await
        .assert_ok();
    refused_for(&app, logs_id_jag(&app, hop.token()), "subject_token.revoked")
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn the_resource_as_must_be_an_audience_of_the_client() {
    // The example's logs MCP may not obtain ID-JAGs at all.
    let app = TestApp::spawn().await;
    let token = partner_token(&app, |_| {});
    refused_for(&app, logs_id_jag(&app, &token), "audience.not_allowed_for_client")
        .await
        .assert_error(400, "invalid_target");
}

#[tokio::test]
async fn a_chain_at_the_depth_cap_cannot_take_a_hop_to_a_resource_as() {
    let app = broker_with(|_| {}).await;
    let service = |sub: &str, act: Option<Value>| {
        let mut entry = json!({"sub": sub, "sub_profile": "service"});
        if let Some(a) = act {
            entry["act"] = a;
        }
        entry
    };
    let four = (0..4).fold(None, |inner, i| Some(service(&format!("svc:{i}"), inner)));
    let token = partner_token(&app, |c| c["act"] = four.unwrap());
    refused_for(&app, logs_id_jag(&app, &token), "chain.depth_exceeded")
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_user_with_no_role_at_the_resource_as_is_denied() {
    // The partner vouches for alice but asserts no role we accept: she has
    // no entitlement at the resource AS, whatever the chain.
    let app = broker_with(|_| {}).await;
    let token = partner_token(&app, |c| c["groups"] = json!(["marketing"]));
    let r = refused_for(&app, logs_id_jag(&app, &token), "policy.no_entitlement").await;
    r.assert_error(400, "access_denied");
    assert_denial_names_only_the_rule(&r, &app);
}
