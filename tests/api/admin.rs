//! The admin API: `POST /admin/revoke` (`txn=` or `sub=`) and
//! `POST /admin/audit` (`txn=`), for clients listed in `admin.clients` only.

use serde_json::{Value, json};
use xaa_broker::audit::Decision;

use crate::support::*;

const ADMIN: &str = "security-ops";

fn txn_of(r: &Resp) -> String {
    r.claims()["txn"].as_str().unwrap().to_owned()
}

async fn audit_of(app: &TestApp, txn: &str) -> Resp {
    let r = app.post_form("/admin/audit", Auth::Basic(ADMIN), &[("txn", txn)]).await;
    r.assert_ok();
    r
}

async fn introspect(app: &TestApp, token: &str) -> Value {
    let r = app.introspect_as_entitled(token, "cost-tool").await;
    r.assert_ok();
    r.body
}

/// A chain at the enterprise: two granted hops, then a refused one (the cost
/// tool may not reach the logs MCP). Returns the tokens and the txn.
async fn chain_with_a_refusal(app: &TestApp) -> (String, Vec<String>, String) {
    let (id_token, h1, h2) = app.agent_then_logs_to_cost("alice").await;
    app.exchange_for_hop("cost-tool", h2.token(), ACCESS_TOKEN, LOGS, &[])
        .await
        .assert_error(400, "invalid_target");
    let txn = txn_of(&h1);
    (id_token, vec![h1.token().to_owned(), h2.token().to_owned()], txn)
}

#[tokio::test]
async fn a_client_not_listed_as_admin_is_an_unauthorized_client() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    let txn = txn_of(&hop);
    for client in ["triage-agent", "mcp-logs", "chat-app"] {
        let idp = app.idp.issuer.as_str();
        for form in [vec![("txn", txn.as_str())], vec![("sub", "alice"), ("iss", idp)]] {
            app.post_form("/admin/revoke", Auth::Basic(client), &form)
                .await
                .assert_error(400, "unauthorized_client");
        }
        let r = app
            .post_form("/admin/audit", Auth::Basic(client), &[("txn", &txn)])
            .await;
        r.assert_error(400, "unauthorized_client");
        assert!(r.body.get("records").is_none(), "{}", r.body);
    }
    // Nothing was revoked.
    assert_eq!(introspect(&app, hop.token()).await["active"], true);
    app.exchange_for_hop("mcp-logs", hop.token(), ACCESS_TOKEN, COST, &[])
        .await
        .assert_ok();
    // The refusals are audited.
    let refusals: Vec<_> = app
        .all_audit()
        .await
        .into_iter()
        .filter(|r| r.grant.as_deref().is_some_and(|g| g.starts_with("admin.")))
        .collect();
    assert_eq!(refusals.len(), 9, "{refusals:#?}");
    assert!(
        refusals
            .iter()
            .all(|r| r.decision == Decision::Denied && r.error.as_deref() == Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn the_resource_as_admin_api_is_for_its_own_admin_clients() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let alice = [("sub", "alice"), ("iss", enterprise.issuer.as_str())];
    for client in ["mcp-saas", "0oa-triage"] {
        ras.post_form("/admin/revoke", Auth::Basic(client), &alice)
            .await
            .assert_error(400, "unauthorized_client");
    }
    // The enterprise's admin is not a client there at all.
    ras.post_form("/admin/revoke", Auth::Basic(ADMIN), &alice)
        .await
        .assert_error(401, "invalid_client");
    ras.post_form("/admin/revoke", Auth::Basic("saas-ops"), &alice)
        .await
        .assert_ok();
}

#[tokio::test]
async fn the_admin_api_requires_client_authentication() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    let txn = txn_of(&hop);
    for auth in [Auth::None, Auth::BasicWith(ADMIN, "wrong-secret")] {
        app.post_form("/admin/revoke", auth, &[("txn", &txn)])
            .await
            .assert_error(401, "invalid_client");
        app.post_form("/admin/audit", auth, &[("txn", &txn)])
            .await
            .assert_error(401, "invalid_client");
    }
    app.post_form("/admin/revoke", Auth::None, &[("txn", &txn), ("client_id", ADMIN)])
        .await
        .assert_error(401, "invalid_client");
    assert_eq!(introspect(&app, hop.token()).await["active"], true);
}

#[tokio::test]
async fn a_revocation_names_exactly_one_of_txn_or_sub() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    let txn = txn_of(&hop);
    // A subject is only unique within its issuer: `sub` needs a known `iss`.
    for form in [
        vec![],
        vec![("txn", txn.as_str()), ("sub", "alice")],
        vec![("sub", "alice")],
        vec![("sub", "alice"), ("iss", "https://unknown.example.com")],
    ] {
        app.post_form("/admin/revoke", Auth::Basic(ADMIN), &form)
            .await
            .assert_error(400, "invalid_request");
    }
    assert_eq!(introspect(&app, hop.token()).await["active"], true);
    // An audit query needs its txn.
    app.post_form("/admin/audit", Auth::Basic(ADMIN), &[])
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn the_admin_authenticates_with_client_secret_post_too() {
    let app = TestApp::spawn().await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    let r = app
        .post_form("/admin/audit", Auth::Post(ADMIN), &[("txn", &txn_of(&hop))])
        .await;
    r.assert_ok();
    assert_eq!(r.body["records"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_audit_of_a_txn_lists_its_records_oldest_first_without_tokens() {
    let app = TestApp::spawn().await;
    let (id_token, tokens, txn) = chain_with_a_refusal(&app).await;
    let r = audit_of(&app, &txn).await;
    assert_eq!(r.body["txn"], txn);
    let records = r.body["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{records:#?}");

    let decisions: Vec<&str> = records.iter().map(|r| r["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["granted", "granted", "denied"]);
    let clients: Vec<&str> = records.iter().map(|r| r["client_id"].as_str().unwrap()).collect();
    assert_eq!(clients, ["triage-agent", "mcp-logs", "cost-tool"]);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first: {seqs:?}");
    for (record, token) in records.iter().zip(&tokens) {
        assert_eq!(record["txn"], txn);
        assert_eq!(record["sub"], "alice");
        assert_eq!(record["issued_jti"], decode_part(token, 1)["jti"]);
    }
    assert_eq!(records[2]["error"], "invalid_target");
    assert!(records[2].get("issued_jti").is_none());
    // The second hop names its parent token.
    assert_eq!(records[1]["parent_jti"], decode_part(&tokens[0], 1)["jti"]);

    // No record holds a token: only fingerprints.
    let text = r.body.to_string();
    for token in tokens.iter().chain([&id_token]) {
        assert!(!text.contains(token.as_str()), "a token leaked into the audit");
        for part in token.split('.') {
            assert!(!text.contains(part), "a token part leaked into the audit");
        }
    }
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

#[tokio::test]
async fn an_unknown_txn_has_no_records() {
    let app = TestApp::spawn().await;
    let r = audit_of(&app, "no-such-txn").await;
    assert_eq!(r.body, json!({"txn": "no-such-txn", "records": []}));
}

#[tokio::test]
async fn a_revocation_by_txn_is_itself_audited() {
    let app = TestApp::spawn().await;
    let (_, tokens, txn) = chain_with_a_refusal(&app).await;
    let r = app
        .post_form("/admin/revoke", Auth::Basic(ADMIN), &[("txn", &txn)])
        .await;
    r.assert_ok();
    assert_eq!(r.body["revoked"], json!({"txn": txn}));
    assert!(r.body["until"].is_i64());
    for token in &tokens {
        assert_eq!(introspect(&app, token).await, json!({"active": false}));
    }

    let audit = audit_of(&app, &txn).await;
    let records = audit.body["records"].as_array().unwrap();
    let revocation = records
        .iter()
        .find(|r| r["grant"] == "admin.revoke")
        .unwrap_or_else(|| panic!("the revocation is in the txn's trail: {records:#?}"));
    assert_eq!(revocation["client_id"], ADMIN);
    assert_eq!(revocation["decision"], "granted");
    assert_eq!(revocation["reason"], "revoked");
    assert_eq!(revocation["txn"], txn);
    // It comes after the chain's own records.
    let position = records.iter().position(|r| r == revocation).unwrap();
    assert!(position >= 3, "{records:#?}");
}

#[tokio::test]
async fn a_revocation_by_subject_is_itself_audited() {
    let app = TestApp::spawn().await;
    let r = app
        .post_form(
            "/admin/revoke",
            Auth::Basic(ADMIN),
            &[("sub", "alice"), ("iss", &app.idp.issuer)],
        )
        .await;
    r.assert_ok();
    assert_eq!(r.body["revoked"]["sub"], "alice");
    assert_eq!(r.body["revoked"]["iss"], app.idp.issuer);
    let record = app.all_audit().await.pop().unwrap();
    assert_eq!(record.grant.as_deref(), Some("admin.revoke"));
    assert_eq!(record.client_id.as_deref(), Some(ADMIN));
    assert_eq!(record.decision, Decision::Granted);
    assert_eq!(record.sub.as_deref(), Some("alice"));
    assert_eq!(record.sub_iss.as_deref(), Some(app.idp.issuer.as_str()));
    assert_eq!(record.reason.as_deref(), Some("revoked"));
}

#[tokio::test]
async fn the_audit_query_is_audited_too() {
    let app = TestApp::spawn().await;
    let (_, _, txn) = chain_with_a_refusal(&app).await;
    audit_of(&app, &txn).await;
    let records = app.audit(&txn).await;
    let query = records.last().unwrap();
    assert_eq!(query.grant.as_deref(), Some("admin.audit"));
    assert_eq!(query.client_id.as_deref(), Some(ADMIN));
    assert_eq!(query.decision, Decision::Granted);
}

#[tokio::test]
async fn the_admin_client_obtains_no_tokens() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", ADMIN, &["sre"]);
    let before = app.issued_count().await;
    app.exchange_for_hop(ADMIN, &id_token, ID_TOKEN, LOGS, &[])
        .await
        .assert_error(400, "unauthorized_client");
    assert_eq!(app.issued_count().await, before);
}
