//! Signing keys shared by the instances of one deployment, and their rotation
//! (RFC 7517 key sets): publish the new key, switch signing to it, retire the
//! old one after its last token has expired.

use std::path::PathBuf;

use serde_json::Value;
use xaa_broker::config::KeysConfig;
use xaa_broker::jose::Alg;
use xaa_broker::keys::generate_to_dir;

use crate::support::*;

fn key_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xaa-keys-{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keys(files: &[&PathBuf], active: Option<&str>) -> KeysConfig {
    KeysConfig {
        files: files.iter().map(|p| (*p).clone()).collect(),
        active: active.map(str::to_owned),
        ..KeysConfig::default()
    }
}

async fn published_kids(app: &TestApp) -> Vec<String> {
    let jwks = app.get("/jwks").await;
    jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn introspect(app: &TestApp, token: &str) -> Value {
    let r = app.introspect_as_entitled(token, "cost-tool").await;
    r.assert_ok();
    r.body
}

#[tokio::test]
async fn a_token_signed_before_a_rotation_validates_until_its_key_is_retired() {
    let dir = key_dir("rotation");
    let (old_path, old) = generate_to_dir(Alg::ES256, &dir).unwrap();
    let (new_path, new) = generate_to_dir(Alg::ES256, &dir).unwrap();
    let (old_kid, new_kid) = (old.key_id().unwrap().to_owned(), new.key_id().unwrap().to_owned());

    // Before: the deployment signs with the old key.
    let before = TestApp::spawn_with(|c| c.keys = keys(&[&old_path], None)).await;
    let hop = before.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    assert_eq!(hop.jose_header()["kid"], old_kid.as_str());

    // 1. Publish the new key beside the old one, old still signing.
    let published = before
        .spawn_sibling(|c| c.keys = keys(&[&old_path, &new_path], Some(&old_kid)))
        .await;
    assert_eq!(published_kids(&published).await.len(), 2);
    let still_old = published.first_hop("triage-agent", LOGS).await;
    assert_eq!(still_old.jose_header()["kid"], old_kid.as_str());

    // 2. Switch signing to the new key; the old one stays published.
    let switched = before
        .spawn_sibling(|c| c.keys = keys(&[&old_path, &new_path], Some(&new_kid)))
        .await;
    let kids = published_kids(&switched).await;
    assert!(
        kids.contains(&old_kid) && kids.contains(&new_kid),
        "both keys during the overlap: {kids:?}"
    );
    let fresh = switched.first_hop("triage-agent", LOGS).await;
    assert_eq!(fresh.jose_header()["kid"], new_kid.as_str());
    // The token signed before the rotation still works everywhere in the deployment.
    assert_eq!(introspect(&switched, hop.token()).await["active"], true);
    let next = switched
        .exchange_for_hop("mcp-logs", hop.token(), ACCESS_TOKEN, COST, &[])
        .await;
    next.assert_ok();
    assert_eq!(next.claims()["txn"], hop.claims()["txn"]);

    // 3. Retire the old key (after its last token expired): only the new one remains.
    let retired = before.spawn_sibling(|c| c.keys = keys(&[&new_path], None)).await;
    assert_eq!(published_kids(&retired).await, vec![new_kid.clone()]);
    assert_eq!(
        introspect(&retired, hop.token()).await,
        serde_json::json!({"active": false})
    );
    retired
        .exchange_for_hop("mcp-logs", hop.token(), ACCESS_TOKEN, COST, &[])
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(introspect(&retired, fresh.token()).await["active"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn instances_of_one_deployment_verify_each_others_tokens() {
    let dir = key_dir("shared");
    let (path, _) = generate_to_dir(Alg::ES256, &dir).unwrap();
    let one = TestApp::spawn_with(|c| c.keys = keys(&[&path], None)).await;
    let two = one.spawn_sibling(|_| {}).await;
    assert_eq!(one.issuer, two.issuer);
    assert_ne!(one.base, two.base);
    let hop = one.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    let next = two
        .exchange_for_hop("mcp-logs", hop.token(), ACCESS_TOKEN, COST, &[])
        .await;
    next.assert_ok();
    assert_eq!(next.claims()["iss"], one.issuer.as_str());
    assert_eq!(published_kids(&one).await, published_kids(&two).await);
    let _ = std::fs::remove_dir_all(&dir);
}
