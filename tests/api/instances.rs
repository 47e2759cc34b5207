//! Many stateless instances of one deployment sharing Redis
//! (specs/operations.md): one-time values, revocations and the audit trail are
//! shared state.

use serde_json::Value;

use crate::support::redis::{redis_url, unique_prefix};
use crate::support::*;

/// Two instances of the enterprise deployment on one Redis prefix and one key.
async fn two_instances(test: &str) -> Option<(TestApp, TestApp)> {
    let url = redis_url().await?;
    let (prefix, keys) = (unique_prefix(test), shared_signing_key());
    let one = TestApp::spawn_with(|c| with_redis(c, &url, &prefix, &keys)).await;
    let two = one.spawn_sibling(|_| {}).await;
    assert_ne!(
        one.state.instance, two.state.instance,
        "each instance has its own audit chain"
    );
    Some((one, two))
}

#[tokio::test]
async fn a_client_assertion_used_at_one_instance_is_refused_at_the_other() {
    let Some((one, two)) = two_instances("assertion").await else {
        return;
    };
    let assertion = one.bot_assertion(|_| {});
    exchange_with_assertion(&one, &assertion).await.assert_ok();
    exchange_with_assertion(&two, &assertion)
        .await
        .assert_error(401, "invalid_client");
}

/// A DPoP proof's `jti` is single use across the deployment (RFC 9449 §11.1):
/// its mark is in the store every instance shares.
#[tokio::test]
async fn a_dpop_proof_used_at_one_instance_is_refused_at_the_other() {
    let Some((one, two)) = two_instances("dpop").await else {
        return;
    };
    let key = crate::support::dpop::DpopKey::es256();
    // One deployment, one token endpoint: both instances serve `issuer`.
    let proof = key.proof(&format!("{}/token", one.issuer));
    one.first_hop_with_dpop(&[&proof]).await.assert_ok();
    two.first_hop_with_dpop(&[&proof])
        .await
        .assert_error(400, "invalid_dpop_proof");
}

/// reporting-bot (private_key_jwt) takes alice's first hop with `assertion`.
async fn exchange_with_assertion(app: &TestApp, assertion: &str) -> Resp {
    app.first_hop_with_assertion("reporting-bot", assertion).await
}

#[tokio::test]
async fn an_id_jag_redeemed_at_one_instance_is_refused_at_the_other() {
    let Some(url) = redis_url().await else { return };
    let (prefix, keys) = (unique_prefix("id-jag"), shared_signing_key());
    let (enterprise, ras_one) = TestApp::spawn_pair_with(|_| {}, |c| with_redis(c, &url, &prefix, &keys)).await;
    let ras_two = ras_one.spawn_sibling(|_| {}).await;
    let id_token = enterprise.idp.id_token("alice", "triage-agent", &["developer"]);
    let jag = enterprise
        .exchange_for_id_jag("triage-agent", &id_token, &ras_one.issuer, &[("resource", SAAS_MCP)])
        .await;
    jag.assert_ok();
    let redeem = [("grant_type", JWT_BEARER), ("assertion", jag.token())];
    ras_one.token(Auth::Basic("0oa-triage"), &redeem).await.assert_ok();
    let again = ras_two.token(Auth::Basic("0oa-triage"), &redeem).await;
    again.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_revocation_made_at_one_instance_is_honoured_at_the_other() {
    let Some((one, two)) = two_instances("revoke").await else {
        return;
    };
    let hop = one.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    let txn = hop.claims()["txn"].as_str().unwrap().to_owned();
    two.post_form("/admin/revoke", Auth::Basic("security-ops"), &[("txn", &txn)])
        .await
        .assert_ok();
    let introspected = one
        .post_form("/introspect", Auth::Basic("security-ops"), &[("token", hop.token())])
        .await;
    assert_eq!(introspected.body, serde_json::json!({"active": false}));
    one.exchange_for_hop("mcp-logs", hop.token(), ACCESS_TOKEN, COST, &[])
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_audit_query_at_either_instance_returns_the_records_of_both() {
    let Some((one, two)) = two_instances("audit").await else {
        return;
    };
    let hop = one.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    let next = two
        .exchange_for_hop("mcp-logs", hop.token(), ACCESS_TOKEN, COST, &[])
        .await;
    next.assert_ok();
    let txn = hop.claims()["txn"].as_str().unwrap().to_owned();
    for app in [&one, &two] {
        let r = app
            .post_form("/admin/audit", Auth::Basic("security-ops"), &[("txn", &txn)])
            .await;
        r.assert_ok();
        let records = r.body["records"].as_array().unwrap();
        let token_records: Vec<&Value> = records.iter().filter(|r| r["grant"] == "token-exchange").collect();
        assert_eq!(token_records.len(), 2, "{records:?}");
        assert_eq!(token_records[0]["instance"], one.state.instance.as_str());
        assert_eq!(token_records[1]["instance"], two.state.instance.as_str());
        assert_eq!(token_records[0]["issued_jti"], hop.claims()["jti"]);
        assert_eq!(token_records[1]["issued_jti"], next.claims()["jti"]);
    }
}
