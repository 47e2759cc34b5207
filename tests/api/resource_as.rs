//! The resource-AS role: redeeming ID-JAGs with the RFC 7523 jwt-bearer grant
//! (draft-ietf-oauth-identity-assertion-authz-grant §4.4), across two real
//! deployments.

use crate::support::*;

/// alice signs in for `client` at the enterprise, which issues an ID-JAG for
/// the SaaS resource AS.
async fn id_jag_for(enterprise: &TestApp, ras: &TestApp, client: &str) -> String {
    let id_token = enterprise.idp.id_token("alice", client, &["developer", "sre"]);
    let r = enterprise.exchange_for_id_jag(client, &id_token, &ras.issuer, &[("resource", SAAS_MCP)]).await;
    r.assert_ok();
    r.token().to_owned()
}

#[tokio::test]
async fn an_id_jag_from_a_trusted_broker_is_redeemed_for_an_access_token() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    let jag = decode_part(&id_jag, 1);
    let r = ras.token(Auth::Basic("0oa-triage"), &[("grant_type", JWT_BEARER), ("assertion", &id_jag)]).await;
    r.assert_ok();
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].is_i64());
    assert!(r.body.get("refresh_token").is_none());
    let claims = ras.verify_with_published_jwks(r.token(), "at+jwt").await;
    assert_eq!(claims["iss"], ras.issuer);
    assert_eq!(claims["aud"], SAAS_MCP);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "0oa-triage");
    assert_eq!(claims["txn"], jag["txn"], "the correlation id crosses the trust boundary");
    assert_eq!(claims["act"], jag["act"], "the agent chain crosses the trust boundary");
    assert_eq!(claims["scope"], "crm.read crm.write");
}
