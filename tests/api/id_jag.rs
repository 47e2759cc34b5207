//! ID-JAG issuance: token exchange of an ID token for an identity assertion
//! JWT authorization grant (draft-ietf-oauth-identity-assertion-authz-grant §4.3).

use crate::support::*;

#[tokio::test]
async fn an_id_token_is_exchanged_for_an_id_jag() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let r = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[("resource", SAAS_MCP)]).await;
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
