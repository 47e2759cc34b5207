//! The resource-AS role: redeeming ID-JAGs with the RFC 7523 jwt-bearer grant
//! (draft-ietf-oauth-identity-assertion-authz-grant §4.4), across two real
//! deployments.
//!
//! Happy paths use ID-JAGs the enterprise deployment really issues. To break
//! one validation rule at a time (ID-JAG §4.4, specs/resource-as.md §3), the
//! resource AS's trust in the enterprise is pointed at a fake IdP whose key
//! the test holds, so any claim set can be signed with a *trusted* key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use xaa_broker::audit::Decision;
use xaa_broker::config::Config;
use xaa_broker::types::now_secs;

use crate::support::*;

const METADATA: &str = "/.well-known/oauth-authorization-server";
const GRANT_PROFILE_ID_JAG: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
const FORGED_TXN: &str = "0196a3c4-0000-7000-8000-000000000001";

/// alice signs in for `client` at the enterprise, which issues an ID-JAG for
/// the SaaS resource AS.
async fn id_jag_for(enterprise: &TestApp, ras: &TestApp, client: &str) -> String {
    let id_token = enterprise.idp.id_token("alice", client, &["developer", "sre"]);
    let r = enterprise
        .exchange_for_id_jag(client, &id_token, &ras.issuer, &[("resource", SAAS_MCP)])
        .await;
    r.assert_ok();
    r.token().to_owned()
}

/// The jwt-bearer grant (RFC 7523 §2.1), with the client's RAS credentials.
async fn redeem(ras: &TestApp, client: &str, assertion: &str, extra: &[(&str, &str)]) -> Resp {
    let mut form = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    form.extend_from_slice(extra);
    ras.token(Auth::Basic(client), &form).await
}

/// The last audit record is the refusal, with `invalid_grant` and `reason`.
#[track_caller]
fn assert_denied(records: &[xaa_broker::audit::AuditRecord], reason: &str) {
    let last = records.last().expect("the refusal is audited");
    assert_eq!(last.decision, Decision::Denied, "{last:#?}");
    assert_eq!(last.error.as_deref(), Some("invalid_grant"), "{last:#?}");
    assert_eq!(last.reason.as_deref(), Some(reason), "{last:#?}");
    assert_eq!(last.grant.as_deref(), Some("jwt-bearer"), "{last:#?}");
    assert!(last.issued_jti.is_none(), "{last:#?}");
}

/// A pair of deployments whose resource AS trusts `idp` (a fake whose key the
/// test holds) for ID-JAGs in place of the enterprise broker.
struct Forge {
    enterprise: TestApp,
    ras: TestApp,
    idp: FakeIdp,
}

impl Forge {
    async fn start() -> Forge {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak_ras: impl FnOnce(&mut Config)) -> Forge {
        let idp = FakeIdp::start().await;
        let (issuer, jwks_uri) = (idp.issuer.clone(), idp.jwks_uri());
        let (enterprise, ras) = TestApp::spawn_pair_with(
            |_| {},
            |c| {
                let trusted = c.issuers.get_mut("acme-broker").unwrap();
                trusted.issuer = issuer;
                trusted.jwks_uri = Some(jwks_uri);
                tweak_ras(c);
            },
        )
        .await;
        Forge { enterprise, ras, idp }
    }

    /// The claims of a good ID-JAG for 0oa-triage, as the enterprise writes
    /// them: triage agent acting for alice, with a correlation id.
    fn claims(&self) -> Value {
        let now = now_secs();
        json!({
            "iss": self.idp.issuer, "sub": "alice", "aud": self.ras.issuer,
            "client_id": "0oa-triage", "jti": uuid::Uuid::now_v7().to_string(),
            "iat": now, "exp": now + 300, "resource": SAAS_MCP,
            "scope": "crm.read crm.write", "txn": FORGED_TXN,
            "act": {"sub": "agent:triage", "sub_profile": "ai_agent"},
            "email": "alice@example.com",
        })
    }

    /// A good ID-JAG with `tweak` applied to its claims, signed by the
    /// trusted key with `typ: oauth-id-jag+jwt`.
    fn id_jag(&self, tweak: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims();
        tweak(&mut claims);
        self.idp.sign(Some("oauth-id-jag+jwt"), &claims)
    }

    /// The assertion must be refused with `invalid_grant` for `reason`,
    /// nothing issued, and the refusal audited.
    async fn assert_refused(&self, client: &str, assertion: &str, reason: &str) {
        refused(&self.ras, redeem(&self.ras, client, assertion, &[]))
            .await
            .assert_error(400, "invalid_grant");
        assert_denied(&self.ras.all_audit().await, reason);
    }
}

fn b64_json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

fn remove(claim: &'static str) -> impl FnOnce(&mut Value) {
    move |c| {
        c.as_object_mut().unwrap().remove(claim);
    }
}

// ---------------------------------------------------------------------------
// Redemption
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_jag_from_a_trusted_broker_is_redeemed_for_an_access_token() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    let jag = decode_part(&id_jag, 1);
    let r = ras
        .token(
            Auth::Basic("0oa-triage"),
            &[("grant_type", JWT_BEARER), ("assertion", &id_jag)],
        )
        .await;
    r.assert_ok();
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].is_i64());
    assert!(r.body.get("refresh_token").is_none());
    let claims = ras.verify_with_published_jwks(r.token(), "at+jwt").await;
    assert_eq!(claims["iss"], ras.issuer);
    assert_eq!(claims["aud"], SAAS_MCP);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "0oa-triage");
    assert_eq!(
        claims["txn"], jag["txn"],
        "the correlation id crosses the trust boundary"
    );
    // The chain crosses the trust boundary; each entry now names the issuer
    // whose namespace its `sub` is in (RFC 8693 §4.1 `act.iss`).
    let mut expected_act = jag["act"].clone();
    expected_act["iss"] = enterprise.issuer.as_str().into();
    assert_eq!(
        claims["act"], expected_act,
        "the agent chain crosses the trust boundary"
    );
    assert_eq!(claims["scope"], "crm.read crm.write");
}

#[tokio::test]
async fn the_redemption_response_is_a_plain_bearer_token_response_for_the_resource() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "chat-app").await;
    let jag = decode_part(&id_jag, 1);
    let r = redeem(&ras, "0oa-chat-app", &id_jag, &[]).await;
    r.assert_ok();
    let body = r.body.as_object().unwrap();
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "scope", "token_type"],
        "no refresh token, no issued_token_type (RFC 7523 / ID-JAG §4.4.3): {}",
        r.body
    );
    assert_eq!(r.body["token_type"], "Bearer");
    let claims = ras.verify_with_published_jwks(r.token(), "at+jwt").await;
    assert_eq!(
        r.body["expires_in"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap()
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900,
        "the resource's ttl (examples/resource-as.toml), not the ID-JAG's"
    );
    assert_eq!(claims["aud"], SAAS_MCP);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "0oa-chat-app");
    assert_eq!(claims["scope"], jag["scope"]);
    assert_eq!(r.body["scope"], jag["scope"]);
    assert_eq!(claims["txn"], jag["txn"]);
    assert!(claims.get("act").is_none(), "an app adds no actor: {claims}");
    assert_ne!(claims["jti"], jag["jti"], "a new token, not the assertion");
    assert_eq!(
        uuid::Uuid::parse_str(claims["jti"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        7
    );
}

#[tokio::test]
async fn a_redemption_is_audited_under_the_id_jags_txn_without_the_token() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    let jag = decode_part(&id_jag, 1);
    let r = redeem(&ras, "0oa-triage", &id_jag, &[]).await;
    r.assert_ok();
    let claims = r.claims();
    let records = ras.audit(jag["txn"].as_str().unwrap()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let rec = &records[0];
    assert_eq!(rec.decision, Decision::Granted);
    assert_eq!(rec.grant.as_deref(), Some("jwt-bearer"));
    assert_eq!(rec.client_id.as_deref(), Some("0oa-triage"));
    assert_eq!(rec.sub.as_deref(), Some("alice"));
    assert_eq!(rec.audience.as_deref(), Some(SAAS_MCP));
    assert_eq!(rec.issued_jti.as_deref(), claims["jti"].as_str());
    let presented = rec.subject_token.as_ref().expect("the assertion is fingerprinted");
    assert_eq!(presented.iss.as_deref(), Some(enterprise.issuer.as_str()));
    assert_eq!(presented.jti.as_deref(), jag["jti"].as_str());
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains(&id_jag) && !text.contains(r.token()));
}

#[tokio::test]
async fn a_well_formed_id_jag_signed_by_a_trusted_issuer_is_redeemed() {
    let f = Forge::start().await;
    let r = redeem(&f.ras, "0oa-triage", &f.id_jag(|_| {}), &[]).await;
    r.assert_ok();
    let claims = f.ras.verify_with_published_jwks(r.token(), "at+jwt").await;
    assert_eq!(claims["iss"], f.ras.issuer);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], SAAS_MCP);
    assert_eq!(claims["client_id"], "0oa-triage");
    assert_eq!(claims["scope"], "crm.read crm.write");
    assert_eq!(claims["txn"], FORGED_TXN);
    assert_eq!(
        claims["act"],
        json!({"sub": "agent:triage", "iss": f.idp.issuer, "sub_profile": "ai_agent"})
    );
    assert_eq!(claims["email"], "alice@example.com");
    assert!(r.body.get("refresh_token").is_none());
}

#[tokio::test]
async fn an_id_jag_without_txn_gets_a_fresh_uuidv7_correlation_id() {
    let f = Forge::start().await;
    let r = redeem(&f.ras, "0oa-triage", &f.id_jag(remove("txn")), &[]).await;
    r.assert_ok();
    let txn = r.claims()["txn"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&txn).unwrap().get_version_num(), 7);
    let records = f.ras.audit(&txn).await;
    assert_eq!(records.len(), 1, "the redemption is audited under the new txn");
    // A second ID-JAG without txn starts its own correlation id.
    let again = redeem(&f.ras, "0oa-triage", &f.id_jag(remove("txn")), &[]).await;
    again.assert_ok();
    assert_ne!(again.claims()["txn"], txn);
}

#[tokio::test]
async fn an_id_jag_without_act_issues_a_token_without_act() {
    let f = Forge::start().await;
    let r = redeem(
        &f.ras,
        "0oa-chat-app",
        &f.id_jag(|c| {
            c["client_id"] = json!("0oa-chat-app");
            c.as_object_mut().unwrap().remove("act");
        }),
        &[],
    )
    .await;
    r.assert_ok();
    assert!(r.claims().get("act").is_none(), "{}", r.claims());
}

#[tokio::test]
async fn aud_as_a_one_element_array_naming_us_is_accepted() {
    let f = Forge::start().await;
    let aud = json!([f.ras.issuer]);
    let r = redeem(&f.ras, "0oa-triage", &f.id_jag(|c| c["aud"] = aud), &[]).await;
    r.assert_ok();
    assert_eq!(r.claims()["aud"], SAAS_MCP);
}

#[tokio::test]
async fn an_id_jag_without_a_resource_gets_the_default_resource() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_token = enterprise.idp.id_token("alice", "triage-agent", &["developer"]);
    let r = enterprise
        .exchange_for_id_jag("triage-agent", &id_token, &ras.issuer, &[])
        .await;
    r.assert_ok();
    assert!(r.claims().get("resource").is_none(), "{}", r.claims());
    let redeemed = redeem(&ras, "0oa-triage", r.token(), &[]).await;
    redeemed.assert_ok();
    assert_eq!(redeemed.claims()["aud"], SAAS_MCP);
    assert_eq!(redeemed.claims()["scope"], "crm.read");
}

#[tokio::test]
async fn aud_sub_becomes_the_subject_at_the_resource_as() {
    let f = Forge::start().await;
    let r = redeem(
        &f.ras,
        "0oa-triage",
        &f.id_jag(|c| c["aud_sub"] = json!("00u-saas-alice")),
        &[],
    )
    .await;
    r.assert_ok();
    assert_eq!(r.claims()["sub"], "00u-saas-alice");
}

#[tokio::test]
async fn extra_resource_and_scope_parameters_are_tolerated() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    let r = redeem(
        &ras,
        "0oa-triage",
        &id_jag,
        &[("resource", SAAS_MCP), ("scope", "crm.read crm.write")],
    )
    .await;
    r.assert_ok();
    assert_eq!(r.claims()["aud"], SAAS_MCP);
    assert_eq!(r.claims()["scope"], "crm.read crm.write");
}

#[tokio::test]
async fn a_scope_parameter_narrows_the_grant_and_is_echoed() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    let r = redeem(&ras, "0oa-triage", &id_jag, &[("scope", "crm.read")]).await;
    r.assert_ok();
    assert_eq!(r.body["scope"], "crm.read");
    assert_eq!(r.claims()["scope"], "crm.read");
}

#[tokio::test]
async fn a_scope_parameter_never_widens_beyond_the_id_jag() {
    let f = Forge::start().await;
    let r = redeem(
        &f.ras,
        "0oa-triage",
        &f.id_jag(|c| c["scope"] = json!("crm.read")),
        &[("scope", "crm.read crm.write")],
    )
    .await;
    r.assert_ok();
    assert_eq!(r.body["scope"], "crm.read");
    assert_eq!(r.claims()["scope"], "crm.read");
}

#[tokio::test]
async fn scopes_of_the_id_jag_outside_our_catalog_are_dropped() {
    let f = Forge::start().await;
    let r = redeem(
        &f.ras,
        "0oa-triage",
        &f.id_jag(|c| c["scope"] = json!("crm.read billing.admin")),
        &[],
    )
    .await;
    r.assert_ok();
    assert_eq!(r.claims()["scope"], "crm.read");
}

#[tokio::test]
async fn an_agent_in_the_id_jags_chain_caps_the_scopes() {
    let f = Forge::start().await;
    // An app client acting directly: the destructive scope is granted…
    let direct = f.id_jag(|c| {
        c["client_id"] = json!("0oa-chat-app");
        c["scope"] = json!("crm.read crm.delete");
        c.as_object_mut().unwrap().remove("act");
    });
    let r = redeem(&f.ras, "0oa-chat-app", &direct, &[]).await;
    r.assert_ok();
    assert_eq!(r.claims()["scope"], "crm.delete crm.read");
    // …but not when the ID-JAG says an agent is acting in the chain.
    let via_agent = f.id_jag(|c| {
        c["client_id"] = json!("0oa-chat-app");
        c["scope"] = json!("crm.read crm.delete");
        c["act"] = json!({"sub": "agent:triage", "sub_profile": "ai_agent"});
    });
    let r = redeem(&f.ras, "0oa-chat-app", &via_agent, &[]).await;
    r.assert_ok();
    assert_eq!(r.claims()["scope"], "crm.read");
    assert_eq!(r.body["scope"], "crm.read");
}

#[tokio::test]
async fn an_actor_without_a_profile_counts_as_an_agent() {
    let f = Forge::start().await;
    let id_jag = f.id_jag(|c| {
        c["client_id"] = json!("0oa-chat-app");
        c["scope"] = json!("crm.read crm.delete");
        c["act"] = json!({"sub": "someone", "act": {"sub": "agent:x", "sub_profile": "service"}});
    });
    let r = redeem(&f.ras, "0oa-chat-app", &id_jag, &[]).await;
    r.assert_ok();
    assert_eq!(r.claims()["scope"], "crm.read");
}

/// A flat `delegated_through` list beside `act` (decisions §3, "The actor
/// profile") is read at redemption for caps and audit only: an agent it
/// names caps the grant, it travels on in the access token, stamped with
/// the IdP that vouched for it, and `act` stays as the IdP wrote it.
#[tokio::test]
async fn an_agent_in_the_id_jags_delegated_through_caps_the_scopes_and_travels_on() {
    let f = Forge::start().await;
    let id_jag = f.id_jag(|c| {
        c["client_id"] = json!("0oa-chat-app");
        c["scope"] = json!("crm.read crm.delete");
        c["act"] = json!({"sub": "svc:relay", "sub_profile": "service"});
        c["delegated_through"] = json!([{"sub": "agent:hidden", "sub_profile": "ai_agent"}]);
    });
    let r = redeem(&f.ras, "0oa-chat-app", &id_jag, &[]).await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["scope"], "crm.read", "the listed agent's cap holds");
    assert_eq!(
        claims["act"],
        json!({"sub": "svc:relay", "sub_profile": "service", "iss": f.idp.issuer}),
        "act is never replaced by the list"
    );
    let listed = json!([{"sub": "agent:hidden", "iss": f.idp.issuer, "sub_profile": "ai_agent"}]);
    assert_eq!(claims["delegated_through"], listed);
    let record = f.ras.all_audit().await.pop().unwrap();
    assert_eq!(serde_json::to_value(&record.delegated_through).unwrap(), listed);
    assert_eq!(record.scope_withheld[0].reason, "agent_category");
}

#[tokio::test]
async fn an_id_jag_whose_delegated_through_cannot_be_read_is_refused() {
    let f = Forge::start().await;
    let seventeen: Vec<String> = (0..17).map(|i| format!("agent:{i}")).collect();
    for list in [json!(seventeen), json!("agent:a"), json!([{"iss": "https://x"}])] {
        let token = f.id_jag(|c| c["delegated_through"] = list.clone());
        f.assert_refused("0oa-triage", &token, "id_jag.delegated_through_malformed")
            .await;
    }
}

// ---------------------------------------------------------------------------
// §2.3 step 1: explicit typing — nothing else passes as an ID-JAG
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_jag_without_the_id_jag_typ_is_refused() {
    let f = Forge::start().await;
    let claims = f.claims();
    for typ in [None, Some("JWT"), Some("at+jwt"), Some("jwt")] {
        let token = f.idp.sign(typ, &claims);
        f.assert_refused("0oa-triage", &token, "token.typ").await;
    }
}

#[tokio::test]
async fn an_id_token_presented_as_the_assertion_is_refused() {
    let f = Forge::start().await;
    // Signed by the trusted key, for us, for this client: but an ID token.
    let mut claims = f.idp.id_token_claims("alice", &f.ras.issuer, &["sre"]);
    claims["client_id"] = json!("0oa-triage");
    claims["resource"] = json!(SAAS_MCP);
    let id_token = f.idp.sign(Some("JWT"), &claims);
    f.assert_refused("0oa-triage", &id_token, "token.typ").await;
    // The enterprise's real IdP's ID token for the client is refused too.
    let real = f.enterprise.idp.id_token("alice", "0oa-triage", &["sre"]);
    f.assert_refused("0oa-triage", &real, "token.typ").await;
}

#[tokio::test]
async fn an_at_jwt_from_the_enterprise_is_refused_as_the_assertion() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let hop = enterprise.first_hop("triage-agent", LOGS).await;
    hop.assert_ok();
    refused(&ras, redeem(&ras, "0oa-triage", hop.token(), &[]))
        .await
        .assert_error(400, "invalid_grant");
    assert_denied(&ras.all_audit().await, "token.typ");
}

#[tokio::test]
async fn an_at_jwt_signed_by_the_trusted_issuer_is_refused_as_the_assertion() {
    let f = Forge::start().await;
    let at = f.idp.sign(Some("at+jwt"), &f.claims());
    f.assert_refused("0oa-triage", &at, "token.typ").await;
}

// ---------------------------------------------------------------------------
// §2.3 step 2: trusted issuer, allowed alg, signature
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_jag_from_an_untrusted_issuer_is_refused() {
    let f = Forge::start().await;
    let stranger = FakeIdp::start().await;
    let mut claims = f.claims();
    claims["iss"] = json!(stranger.issuer);
    let token = stranger.sign(Some("oauth-id-jag+jwt"), &claims);
    f.assert_refused("0oa-triage", &token, "token.untrusted_issuer").await;
}

#[tokio::test]
async fn an_id_jag_naming_a_trusted_issuer_but_signed_by_another_key_is_refused() {
    let f = Forge::start().await;
    let stranger = FakeIdp::start().await;
    let token = stranger.sign(Some("oauth-id-jag+jwt"), &f.claims());
    f.assert_refused("0oa-triage", &token, "token.unknown_key").await;
}

#[tokio::test]
async fn an_id_jag_from_an_issuer_trusted_only_for_other_tokens_is_refused() {
    let other = FakeIdp::start().await;
    let (other_iss, other_jwks) = (other.issuer.clone(), other.jwks_uri());
    let f = Forge::start_with(|c| {
        let mut partner = c.issuers["acme-broker"].clone();
        partner.issuer = other_iss;
        partner.jwks_uri = Some(other_jwks);
        partner.trust = vec![xaa_broker::policy::Purpose::AccessToken];
        c.issuers.insert("partner".into(), partner);
    })
    .await;
    let mut claims = f.claims();
    claims["iss"] = json!(other.issuer);
    let token = other.sign(Some("oauth-id-jag+jwt"), &claims);
    f.assert_refused("0oa-triage", &token, "token.issuer_purpose").await;
}

#[tokio::test]
async fn an_alg_not_allowed_for_the_issuer_is_refused() {
    // The key is in the issuer's JWKS, but ES256 is not on its allow-list.
    let f = Forge::start_with(|c| {
        c.issuers.get_mut("acme-broker").unwrap().algs = vec!["RS256".into()];
    })
    .await;
    f.assert_refused("0oa-triage", &f.id_jag(|_| {}), "token.alg_not_allowed")
        .await;
}

#[tokio::test]
async fn an_unsigned_id_jag_is_refused() {
    let f = Forge::start().await;
    let header = json!({"alg": "none", "typ": "oauth-id-jag+jwt"});
    let unsigned = format!("{}.{}.", b64_json(&header), b64_json(&f.claims()));
    f.assert_refused("0oa-triage", &unsigned, "token.alg_not_allowed").await;
}

#[tokio::test]
async fn a_tampered_id_jag_is_refused() {
    let f = Forge::start().await;
    let good = f.id_jag(|_| {});
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = decode_part(&good, 1);
    claims["scope"] = json!("crm.read crm.write crm.delete");
    claims["client_id"] = json!("0oa-chat-app");
    let payload = b64_json(&claims);
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    f.assert_refused("0oa-chat-app", &tampered, "token.signature").await;
}

// ---------------------------------------------------------------------------
// §2.3 step 3: audience — exactly our issuer
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_jag_for_another_audience_is_refused() {
    let f = Forge::start().await;
    for aud in [
        json!("https://auth.other-saas.example.com"),
        json!(f.ras.url("/token")),
        json!([]),
        json!(["https://auth.other-saas.example.com"]),
    ] {
        let token = f.id_jag(|c| c["aud"] = aud.clone());
        f.assert_refused("0oa-triage", &token, "token.audience").await;
    }
    f.assert_refused("0oa-triage", &f.id_jag(remove("aud")), "token.no_aud")
        .await;
}

#[tokio::test]
async fn an_id_jag_with_a_two_valued_aud_is_refused_even_if_it_names_us() {
    let f = Forge::start().await;
    for aud in [
        json!([f.ras.issuer, "https://auth.other-saas.example.com"]),
        json!(["https://auth.other-saas.example.com", f.ras.issuer]),
        json!([f.ras.issuer, f.ras.issuer]),
    ] {
        let token = f.id_jag(|c| c["aud"] = aud.clone());
        f.assert_refused("0oa-triage", &token, "token.audience").await;
    }
}

// ---------------------------------------------------------------------------
// §2.3 step 4: time and single use
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_id_jag_is_refused() {
    let f = Forge::start().await;
    let now = now_secs();
    // Beyond the 60 s skew of the example.
    let token = f.id_jag(|c| {
        c["iat"] = json!(now - 600);
        c["exp"] = json!(now - 61);
    });
    f.assert_refused("0oa-triage", &token, "token.expired").await;
    f.assert_refused("0oa-triage", &f.id_jag(remove("exp")), "token.no_exp")
        .await;
}

#[tokio::test]
async fn an_id_jag_expired_within_the_clock_skew_is_accepted() {
    let f = Forge::start().await;
    let now = now_secs();
    let token = f.id_jag(|c| {
        c["iat"] = json!(now - 300);
        c["exp"] = json!(now - 30);
    });
    redeem(&f.ras, "0oa-triage", &token, &[]).await.assert_ok();
}

#[tokio::test]
async fn an_id_jag_not_yet_valid_is_refused() {
    let f = Forge::start().await;
    let nbf = now_secs() + 300;
    let token = f.id_jag(|c| c["nbf"] = json!(nbf));
    f.assert_refused("0oa-triage", &token, "token.not_yet_valid").await;
}

#[tokio::test]
async fn an_id_jag_issued_in_the_future_is_refused() {
    let f = Forge::start().await;
    let iat = now_secs() + 300;
    let token = f.id_jag(|c| {
        c["iat"] = json!(iat);
        c["exp"] = json!(iat + 300);
    });
    f.assert_refused("0oa-triage", &token, "token.iat_in_future").await;
    f.assert_refused("0oa-triage", &f.id_jag(remove("iat")), "token.no_iat")
        .await;
}

#[tokio::test]
async fn an_id_jag_without_jti_is_refused() {
    let f = Forge::start().await;
    f.assert_refused("0oa-triage", &f.id_jag(remove("jti")), "token.no_jti")
        .await;
    let empty = f.id_jag(|c| c["jti"] = json!(""));
    f.assert_refused("0oa-triage", &empty, "token.no_jti").await;
}

#[tokio::test]
async fn a_replayed_id_jag_is_refused() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    redeem(&ras, "0oa-triage", &id_jag, &[]).await.assert_ok();
    refused(&ras, redeem(&ras, "0oa-triage", &id_jag, &[]))
        .await
        .assert_error(400, "invalid_grant");
    assert_denied(&ras.all_audit().await, "assertion.replayed");
    // Still refused with extra parameters, or a third time.
    refused(&ras, redeem(&ras, "0oa-triage", &id_jag, &[("scope", "crm.read")]))
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_different_id_jag_reusing_a_jti_of_the_same_issuer_is_refused() {
    let f = Forge::start().await;
    let jti = uuid::Uuid::now_v7().to_string();
    let first = f.id_jag(|c| c["jti"] = json!(jti));
    redeem(&f.ras, "0oa-triage", &first, &[]).await.assert_ok();
    let second = f.id_jag(|c| {
        c["jti"] = json!(jti);
        c["scope"] = json!("crm.read");
    });
    assert_ne!(first, second);
    f.assert_refused("0oa-triage", &second, "assertion.replayed").await;
}

#[tokio::test]
async fn the_same_jti_from_another_trusted_issuer_is_not_a_replay() {
    let other = FakeIdp::start().await;
    let (other_iss, other_jwks) = (other.issuer.clone(), other.jwks_uri());
    let f = Forge::start_with(|c| {
        let mut second = c.issuers["acme-broker"].clone();
        second.issuer = other_iss;
        second.jwks_uri = Some(other_jwks);
        c.issuers.insert("other-broker".into(), second);
        c.clients
            .get_mut("0oa-triage")
            .unwrap()
            .id_jag_issuers
            .push("other-broker".into());
    })
    .await;
    let jti = uuid::Uuid::now_v7().to_string();
    let first = f.id_jag(|c| c["jti"] = json!(jti));
    redeem(&f.ras, "0oa-triage", &first, &[]).await.assert_ok();
    let mut claims = f.claims();
    claims["iss"] = json!(other.issuer);
    claims["jti"] = json!(jti);
    let from_other = other.sign(Some("oauth-id-jag+jwt"), &claims);
    redeem(&f.ras, "0oa-triage", &from_other, &[]).await.assert_ok();
}

// ---------------------------------------------------------------------------
// §2.3 step 5: issued for the authenticated client
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_jag_issued_for_another_client_is_refused() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let for_triage = id_jag_for(&enterprise, &ras, "triage-agent").await;
    refused(&ras, redeem(&ras, "0oa-chat-app", &for_triage, &[]))
        .await
        .assert_error(400, "invalid_grant");
    assert_denied(&ras.all_audit().await, "id_jag.client_id");
}

#[tokio::test]
async fn an_id_jag_without_client_id_is_refused() {
    let f = Forge::start().await;
    f.assert_refused("0oa-triage", &f.id_jag(remove("client_id")), "id_jag.client_id")
        .await;
}

// ---------------------------------------------------------------------------
// Resource and scope
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_jag_for_a_resource_not_served_here_is_refused() {
    let f = Forge::start().await;
    let token = f.id_jag(|c| c["resource"] = json!(ELSEWHERE));
    f.assert_refused("0oa-triage", &token, "id_jag.unknown_resource").await;
}

/// A resource no deployment here serves.
const ELSEWHERE: &str = "https://mcp.other.example.com/mcp";
/// A second resource, served by the resource AS when a test adds it.
const SECOND: &str = "https://mcp2.saas.example.com/mcp";

/// The resource AS also serves [`SECOND`], and 0oa-triage may obtain it.
fn serving_a_second_resource(c: &mut Config) {
    let mut second = c.audiences[SAAS_MCP].clone();
    second.aliases.clear();
    c.audiences.insert(SECOND.into(), second);
    c.clients.get_mut("0oa-triage").unwrap().audiences.push(SECOND.into());
}

#[tokio::test]
async fn a_resource_array_is_redeemed_for_the_one_served_here() {
    let f = Forge::start().await;
    for resource in [json!([SAAS_MCP]), json!([ELSEWHERE, SAAS_MCP])] {
        let r = redeem(
            &f.ras,
            "0oa-triage",
            &f.id_jag(|c| c["resource"] = resource.clone()),
            &[],
        )
        .await;
        r.assert_ok();
        assert_eq!(r.claims()["aud"], SAAS_MCP, "{resource}");
        let granted = f.ras.all_audit().await.pop().unwrap();
        assert_eq!(granted.decision, Decision::Granted);
        assert_eq!(
            granted.resource.as_deref(),
            Some(SAAS_MCP),
            "the record names the one redeemed"
        );
    }
}

#[tokio::test]
async fn a_resource_parameter_picks_one_of_the_arrays_resources() {
    let f = Forge::start_with(serving_a_second_resource).await;
    let both = json!([SAAS_MCP, SECOND]);
    let r = redeem(
        &f.ras,
        "0oa-triage",
        &f.id_jag(|c| c["resource"] = both.clone()),
        &[("resource", SECOND)],
    )
    .await;
    r.assert_ok();
    assert_eq!(r.claims()["aud"], SECOND);
    // The parameter must be one of the ID-JAG's resources ...
    refused(
        &f.ras,
        redeem(
            &f.ras,
            "0oa-triage",
            &f.id_jag(|c| c["resource"] = json!([SAAS_MCP])),
            &[("resource", SECOND)],
        ),
    )
    .await
    .assert_error(400, "invalid_grant");
    assert_denied(&f.ras.all_audit().await, "id_jag.resource_mismatch");
    // ... and two served here without the parameter is ambiguous, never a guess.
    f.assert_refused(
        "0oa-triage",
        &f.id_jag(|c| c["resource"] = both.clone()),
        "id_jag.resource_ambiguous",
    )
    .await;
}

#[tokio::test]
async fn a_resource_array_naming_nothing_served_here_is_refused() {
    let f = Forge::start().await;
    let token = f.id_jag(|c| c["resource"] = json!([ELSEWHERE, "https://mcp.third.example.com/mcp"]));
    f.assert_refused("0oa-triage", &token, "id_jag.unknown_resource").await;
}

#[tokio::test]
async fn a_malformed_resource_claim_is_refused_whatever_its_shape() {
    let f = Forge::start().await;
    let too_many: Vec<String> = (0..17)
        .map(|i| format!("https://mcp{i}.saas.example.com/mcp"))
        .collect();
    let mut seventeen_with_ours = too_many.clone();
    seventeen_with_ours[16] = SAAS_MCP.into();
    for resource in [
        json!(seventeen_with_ours),
        json!([]),
        json!([SAAS_MCP, 7]),
        json!([SAAS_MCP, ""]),
        json!([[SAAS_MCP]]),
        json!(""),
        json!(42),
        json!({"uri": SAAS_MCP}),
    ] {
        let token = f.id_jag(|c| c["resource"] = resource.clone());
        f.assert_refused("0oa-triage", &token, "id_jag.resource_malformed")
            .await;
    }
}

#[tokio::test]
async fn a_resource_parameter_differing_from_the_id_jags_is_refused() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    refused(
        &ras,
        redeem(
            &ras,
            "0oa-triage",
            &id_jag,
            &[("resource", "https://mcp.other.example.com/mcp")],
        ),
    )
    .await
    .assert_error(400, "invalid_grant");
    assert_denied(&ras.all_audit().await, "id_jag.resource_mismatch");
}

#[tokio::test]
async fn a_scope_parameter_naming_only_scopes_outside_the_catalog_is_refused() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    refused(&ras, redeem(&ras, "0oa-triage", &id_jag, &[("scope", "billing.admin")]))
        .await
        .assert_error(400, "invalid_grant");
    assert_denied(&ras.all_audit().await, "scope.empty_grant");
}

#[tokio::test]
async fn an_id_jag_whose_scopes_are_all_capped_away_is_refused() {
    let f = Forge::start().await;
    // An agent acting: the destructive scope, the only one asked, is capped.
    let token = f.id_jag(|c| c["scope"] = json!("crm.delete"));
    f.assert_refused("0oa-triage", &token, "scope.empty_grant").await;
}

#[tokio::test]
async fn an_id_jag_with_a_malformed_act_is_refused() {
    let f = Forge::start().await;
    for act in [json!("agent:admin"), json!(["agent:admin"]), json!({"sub": 7})] {
        let token = f.id_jag(|c| c["act"] = act.clone());
        f.assert_refused("0oa-triage", &token, "id_jag.act_malformed").await;
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_authentication_failure_is_invalid_client_not_invalid_grant() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_jag = id_jag_for(&enterprise, &ras, "triage-agent").await;
    let form = [("grant_type", JWT_BEARER), ("assertion", id_jag.as_str())];
    for auth in [
        Auth::BasicWith("0oa-triage", "wrong-secret"),
        Auth::BasicWith("0oa-nobody", "0oa-nobody-secret"),
        Auth::None,
    ] {
        refused(&ras, ras.token(auth, &form))
            .await
            .assert_error(401, "invalid_client");
    }
    // A public client (an id, no credential) is not authenticated either.
    let mut public = form.to_vec();
    public.push(("client_id", "0oa-triage"));
    refused(&ras, ras.token(Auth::None, &public))
        .await
        .assert_error(401, "invalid_client");
    // The assertion was never looked at: the real client can still redeem it.
    redeem(&ras, "0oa-triage", &id_jag, &[]).await.assert_ok();
}

#[tokio::test]
async fn a_client_without_the_jwt_bearer_grant_is_an_unauthorized_client() {
    let f = Forge::start().await;
    let token = f.id_jag(|c| c["client_id"] = json!("mcp-saas"));
    refused(&f.ras, redeem(&f.ras, "mcp-saas", &token, &[]))
        .await
        .assert_error(400, "unauthorized_client");
}

// ---------------------------------------------------------------------------
// ID-JAG security considerations: no self-redemption
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_jag_issued_by_the_resource_as_itself_is_refused() {
    let (_enterprise, ras) = TestApp::spawn_pair().await;
    let now = now_secs();
    // Signed with the resource AS's own, published signing key.
    let self_issued = ras
        .state
        .keys
        .sign(
            "oauth-id-jag+jwt",
            &json!({
                "iss": ras.issuer, "sub": "alice", "aud": ras.issuer,
                "client_id": "0oa-triage", "jti": uuid::Uuid::now_v7().to_string(),
                "iat": now, "exp": now + 300, "resource": SAAS_MCP,
                "scope": "crm.read crm.write crm.delete", "txn": FORGED_TXN,
            }),
        )
        .unwrap();
    refused(&ras, redeem(&ras, "0oa-triage", &self_issued, &[]))
        .await
        .assert_error(400, "invalid_grant");
    assert_denied(&ras.all_audit().await, "id_jag.self_issued");
}

#[tokio::test]
async fn a_broker_with_both_roles_never_redeems_its_own_id_jags() {
    // The enterprise also acts as a resource AS (another IdP is trusted for
    // ID-JAGs) and has an ID-JAG audience that is its own issuer.
    let other = FakeIdp::start().await;
    let (other_iss, other_jwks) = (other.issuer.clone(), other.jwks_uri());
    let app = TestApp::spawn_with(|c| {
        let me = c.issuer.clone();
        rename_audience(c, SAAS_AS, &me);
        let mut trusted = c.issuers["partner"].clone();
        trusted.issuer = other_iss;
        trusted.jwks_uri = Some(other_jwks);
        trusted.trust = vec![xaa_broker::policy::Purpose::IdJag];
        c.issuers.insert("other-idp".into(), trusted);
        let chat = c.clients.get_mut("chat-app").unwrap();
        chat.grants.push(xaa_broker::types::GrantType::JwtBearer);
        chat.id_jag_issuers.push("other-idp".into());
    })
    .await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer", "sre"]);
    let r = app.exchange_for_id_jag("chat-app", &id_token, &app.issuer, &[]).await;
    r.assert_ok();
    assert_eq!(r.claims()["aud"], app.issuer);
    refused(&app, redeem(&app, "chat-app", r.token(), &[]))
        .await
        .assert_error(400, "invalid_grant");
    assert_denied(&app.all_audit().await, "id_jag.self_issued");
}

// ---------------------------------------------------------------------------
// Metadata (ID-JAG §7.2)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_resource_as_advertises_the_id_jag_profile_and_no_trusted_issuer() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let r = ras.get(METADATA).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["authorization_grant_profiles_supported"],
        json!([GRANT_PROFILE_ID_JAG])
    );
    let grants = r.body["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!(JWT_BEARER)), "{grants:?}");
    let text = r.body.to_string();
    assert!(
        !text.contains(&enterprise.issuer),
        "metadata leaks the trusted issuer: {text}"
    );
    for private in ["acme-broker", "0oa-triage", "0oa-chat-app", "saas-ops"] {
        assert!(!text.contains(private), "metadata leaks {private}: {text}");
    }
    // Both discovery documents say the same.
    let oidc = ras.get("/.well-known/openid-configuration").await;
    assert_eq!(oidc.body, r.body);
}

#[tokio::test]
async fn a_forged_trust_is_not_advertised_either() {
    let f = Forge::start().await;
    let text = f.ras.get(METADATA).await.body.to_string();
    assert!(!text.contains(&f.idp.issuer), "{text}");
}

#[tokio::test]
async fn the_enterprise_without_jwt_bearer_clients_advertises_neither() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let r = enterprise.get(METADATA).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.get("authorization_grant_profiles_supported").is_none(),
        "{}",
        r.body
    );
    let grants = r.body["grant_types_supported"].as_array().unwrap();
    assert!(!grants.contains(&json!(JWT_BEARER)), "{grants:?}");
    assert!(grants.contains(&json!(TOKEN_EXCHANGE)), "{grants:?}");
    let text = r.body.to_string();
    for trusted in [&enterprise.idp.issuer, &enterprise.partner.issuer, &ras.issuer] {
        assert!(!text.contains(trusted.as_str()), "{text}");
    }
}

// ---------------------------------------------------------------------------
// Binding, key-bound assertions, malformed scope, a pure resource AS
// ---------------------------------------------------------------------------

/// Another client presenting an ID-JAG is refused without spending it: the
/// client it was issued for can still redeem it.
#[tokio::test]
async fn another_client_presenting_an_id_jag_does_not_spend_it() {
    let f = Forge::start().await;
    let id_jag = f.id_jag(|_| {});
    f.assert_refused("0oa-chat-app", &id_jag, "id_jag.client_id").await;
    redeem(&f.ras, "0oa-triage", &id_jag, &[]).await.assert_ok();
}

/// ID-JAG §4.4 step 6: a `cnf`-bound assertion without a DPoP proof is
/// refused, never downgraded to Bearer (the proof's cases: tests/api/dpop.rs).
#[tokio::test]
async fn a_key_bound_id_jag_without_a_proof_is_refused_rather_than_redeemed_unbound() {
    let f = Forge::start().await;
    let id_jag = f.id_jag(|c| c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}));
    f.assert_refused("0oa-triage", &id_jag, "id_jag.dpop_proof_required")
        .await;
}

/// A binding we cannot verify (a certificate thumbprint, RFC 8705) is
/// refused, never read as "no binding".
#[tokio::test]
async fn an_id_jag_bound_by_a_method_we_do_not_verify_is_refused() {
    let f = Forge::start().await;
    let id_jag = f.id_jag(|c| c["cnf"] = json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}));
    f.assert_refused("0oa-triage", &id_jag, "id_jag.cnf_unsupported").await;
}

/// A scope the IdP wrote but that does not parse bounds nothing: refused,
/// never read as "no restriction".
#[tokio::test]
async fn an_id_jag_with_a_malformed_scope_is_refused() {
    let f = Forge::start().await;
    let id_jag = f.id_jag(|c| c["scope"] = json!("crm.read \"crm.write\""));
    f.assert_refused("0oa-triage", &id_jag, "id_jag.scope_malformed").await;
}

/// A deployment with no token-exchange client does not advertise token
/// exchange or identity chaining.
#[tokio::test]
async fn a_pure_resource_as_advertises_only_what_it_offers() {
    let (_enterprise, ras) = TestApp::spawn_pair().await;
    let meta = ras.get("/.well-known/oauth-authorization-server").await.body;
    assert_eq!(
        meta["grant_types_supported"],
        json!([JWT_BEARER, "urn:ietf:params:oauth:grant-type:jwt-dpop"])
    );
    assert!(
        meta.get("identity_chaining_requested_token_types_supported").is_none(),
        "{meta}"
    );
}

/// RFC 7523 §3: an assertion expiring unreasonably far ahead is refused
/// (`tokens.max_id_jag_lifetime_secs`, default an hour); that also bounds how
/// long its replay mark must be kept.
#[tokio::test]
async fn an_id_jag_expiring_too_far_ahead_is_refused() {
    let f = Forge::start().await;
    let id_jag = f.id_jag(|c| c["exp"] = json!(now_secs() + 7200));
    f.assert_refused("0oa-triage", &id_jag, "id_jag.lifetime").await;
    let within = f.id_jag(|c| c["exp"] = json!(now_secs() + 3000));
    redeem(&f.ras, "0oa-triage", &within, &[]).await.assert_ok();
}
