//! The black-box list of bad subject tokens and malformed token exchange
//! requests (RFC 8693 §2.2.2, RFC 8725; specs/decisions.md §1 and §8). Each is
//! refused with its exact error, never a 500; nothing is issued; and the
//! refusal is recorded as a denied audit record naming why.

use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use xaa_broker::jose::Alg;
use xaa_broker::types::now_secs;

use crate::support::*;

/// Send a request that must be refused with 400 `error`: nothing issued, and
/// exactly one new audit record, denied, with `error` and `reason`.
async fn refused(app: &TestApp, request: impl Future<Output = Resp>, error: &str, reason: &str) -> Resp {
    let r = refused_for(app, request, reason).await;
    r.assert_error(400, error);
    let records = app.all_audit().await;
    let last = records.last().expect("audited");
    assert_eq!(last.error.as_deref(), Some(error), "record: {last:?}");
    r
}

/// chat-app's first hop to the logs MCP with `subject` as an ID token.
async fn present_id_token(app: &TestApp, subject: &str) -> Resp {
    app.exchange_for_hop("chat-app", subject, ID_TOKEN, LOGS, &[]).await
}

/// The claims of a good ID token for alice at chat-app, with `tweak` applied.
fn id_claims(app: &TestApp, tweak: impl FnOnce(&mut Value)) -> Value {
    let mut claims = app.idp.id_token_claims("alice", "chat-app", &["developer"]);
    tweak(&mut claims);
    claims
}

/// An ID token signed by corp-idp's real key with the claims tweaked.
fn id_token_with(app: &TestApp, tweak: impl FnOnce(&mut Value)) -> String {
    app.idp.sign(Some("JWT"), &id_claims(app, tweak))
}

fn b64_json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

fn remove(claims: &mut Value, name: &str) {
    claims.as_object_mut().unwrap().remove(name);
}

/// corp-idp's active public key as PEM (SubjectPublicKeyInfo), built from its
/// published JWKS: what an alg-confusion attacker uses as an HMAC secret.
async fn idp_public_key_pem(app: &TestApp) -> Vec<u8> {
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;

    let jwks: Value = app
        .http
        .get(app.idp.jwks_uri())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = app.idp.active_kid();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap();
    let coord = |name: &str| BigNum::from_slice(&B64.decode(jwk[name].as_str().unwrap()).unwrap()).unwrap();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = EcKey::from_public_key_affine_coordinates(&group, &coord("x"), &coord("y")).unwrap();
    PKey::from_ec_key(key).unwrap().public_key_to_pem().unwrap()
}

// ---------------------------------------------------------------------------
// Bad subject tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_tampered_payload_under_the_original_signature_is_refused() {
    let app = TestApp::spawn().await;
    let good = app.idp.id_token("alice", "chat-app", &["developer"]);
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = decode_part(&good, 1);
    claims["groups"] = json!(["developer", "sre"]);
    let forged = format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2]);
    refused(
        &app,
        present_id_token(&app, &forged),
        "invalid_request",
        "token.signature",
    )
    .await;
}

#[tokio::test]
async fn an_expired_subject_token_is_refused() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let token = id_token_with(&app, |c| {
        c["iat"] = json!(now - 900);
        c["auth_time"] = json!(now - 905);
        c["exp"] = json!(now - 120);
    });
    refused(&app, present_id_token(&app, &token), "invalid_request", "token.expired").await;
}

#[tokio::test]
async fn a_subject_token_not_yet_valid_is_refused() {
    let app = TestApp::spawn().await;
    let nbf = now_secs() + 300;
    let token = id_token_with(&app, |c| c["nbf"] = json!(nbf));
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.not_yet_valid",
    )
    .await;
}

#[tokio::test]
async fn a_subject_token_issued_in_the_future_is_refused() {
    let app = TestApp::spawn().await;
    let iat = now_secs() + 300;
    let token = id_token_with(&app, |c| c["iat"] = json!(iat));
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.iat_in_future",
    )
    .await;
}

#[tokio::test]
async fn an_unsigned_alg_none_subject_token_is_refused() {
    let app = TestApp::spawn().await;
    let header = json!({"alg": "none", "typ": "JWT"});
    let token = format!("{}.{}.", b64_json(&header), b64_json(&id_claims(&app, |_| {})));
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.alg_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_idps_public_key_is_refused() {
    let app = TestApp::spawn().await;
    let pem = idp_public_key_pem(&app).await;
    let header = json!({"alg": "HS256", "kid": app.idp.active_kid(), "typ": "JWT"});
    let input = format!("{}.{}", b64_json(&header), b64_json(&id_claims(&app, |_| {})));
    let signer = josekit::jws::HS256.signer_from_bytes(&pem).unwrap();
    let signature = josekit::jws::JwsSigner::sign(&signer, input.as_bytes()).unwrap();
    let token = format!("{input}.{}", B64.encode(signature));
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.alg_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn an_at_jwt_presented_as_an_id_token_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.idp.sign(Some("at+jwt"), &id_claims(&app, |_| {}));
    refused(&app, present_id_token(&app, &token), "invalid_request", "token.typ").await;
}

#[tokio::test]
async fn an_id_token_presented_as_an_access_token_is_refused() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        app.exchange_for_hop("chat-app", &id_token, ACCESS_TOKEN, LOGS, &[]),
        "invalid_request",
        "token.typ",
    )
    .await;
}

/// An ID-JAG we issued to chat-app for the SaaS resource AS.
async fn our_id_jag(app: &TestApp) -> String {
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let r = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]).await;
    r.assert_ok();
    assert_eq!(r.jose_header()["typ"], "oauth-id-jag+jwt");
    r.token().to_owned()
}

#[tokio::test]
async fn an_id_jag_presented_as_an_id_token_is_refused() {
    let app = TestApp::spawn().await;
    let id_jag = our_id_jag(&app).await;
    refused(&app, present_id_token(&app, &id_jag), "invalid_request", "token.typ").await;
}

#[tokio::test]
async fn an_id_jag_presented_as_an_access_token_is_refused() {
    let app = TestApp::spawn().await;
    let id_jag = our_id_jag(&app).await;
    refused(
        &app,
        app.exchange_for_hop("chat-app", &id_jag, ACCESS_TOKEN, LOGS, &[]),
        "invalid_request",
        "token.typ",
    )
    .await;
}

#[tokio::test]
async fn an_id_token_for_another_client_is_refused() {
    let app = TestApp::spawn().await;
    let for_triage = app.idp.id_token("alice", "triage-agent", &["developer"]);
    refused(
        &app,
        present_id_token(&app, &for_triage),
        "invalid_request",
        "token.audience",
    )
    .await;
}

#[tokio::test]
async fn a_token_from_an_untrusted_issuer_is_refused() {
    let app = TestApp::spawn().await;
    let key = Alg::ES256.generate().unwrap();
    let claims = id_claims(&app, |c| c["iss"] = json!("https://evil.example.com"));
    let header = json!({"alg": "ES256", "kid": key.key_id().unwrap(), "typ": "JWT"});
    let token = sign_jws(&key, header, &claims);
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.untrusted_issuer",
    )
    .await;
}

#[tokio::test]
async fn a_trusted_issuer_vouching_outside_its_purpose_is_refused() {
    let app = TestApp::spawn().await;
    // partner is trusted for access tokens only.
    let token = app.partner.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.issuer_purpose",
    )
    .await;
}

#[tokio::test]
async fn a_token_naming_an_unknown_kid_is_refused() {
    let app = TestApp::spawn().await;
    let header = json!({"alg": "ES256", "kid": "no-such-kid", "typ": "JWT"});
    let token = app.idp.sign_with_header(header, &id_claims(&app, |_| {}));
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.unknown_key",
    )
    .await;
}

#[tokio::test]
async fn a_token_with_a_crit_header_is_refused() {
    let app = TestApp::spawn().await;
    let header = json!({
        "alg": "ES256", "kid": app.idp.active_kid(), "typ": "JWT",
        "crit": ["urn:example:ext"], "urn:example:ext": true,
    });
    let token = app.idp.sign_with_header(header, &id_claims(&app, |_| {}));
    refused(&app, present_id_token(&app, &token), "invalid_request", "token.crit").await;
}

#[tokio::test]
async fn a_jwe_shaped_token_is_refused() {
    let app = TestApp::spawn().await;
    let header = json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": app.idp.active_kid()});
    let token = format!(
        "{}.{}.{}.{}.{}",
        b64_json(&header),
        B64.encode([7u8; 256]),
        B64.encode([1u8; 12]),
        B64.encode(b"ciphertext"),
        B64.encode([9u8; 16])
    );
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.malformed",
    )
    .await;
}

#[tokio::test]
async fn a_garbage_subject_token_is_refused() {
    let app = TestApp::spawn().await;
    refused(
        &app,
        present_id_token(&app, "this is not a JWT at all"),
        "invalid_request",
        "token.malformed",
    )
    .await;
}

#[tokio::test]
async fn a_subject_token_over_16_kib_is_refused() {
    let app = TestApp::spawn().await;
    let token = id_token_with(&app, |c| c["padding"] = json!("x".repeat(17 * 1024)));
    assert!(token.len() > 16 * 1024);
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.malformed",
    )
    .await;
}

#[tokio::test]
async fn a_subject_token_without_sub_is_refused() {
    let app = TestApp::spawn().await;
    let token = id_token_with(&app, |c| remove(c, "sub"));
    refused(&app, present_id_token(&app, &token), "invalid_request", "token.no_sub").await;
}

#[tokio::test]
async fn a_subject_token_without_exp_is_refused() {
    let app = TestApp::spawn().await;
    let token = id_token_with(&app, |c| remove(c, "exp"));
    refused(&app, present_id_token(&app, &token), "invalid_request", "token.no_exp").await;
}

#[tokio::test]
async fn a_subject_token_whose_sub_is_not_a_string_is_refused() {
    let app = TestApp::spawn().await;
    let token = id_token_with(&app, |c| c["sub"] = json!(42));
    refused(
        &app,
        present_id_token(&app, &token),
        "invalid_request",
        "token.claims_malformed",
    )
    .await;
}

#[tokio::test]
async fn an_access_token_of_ours_presented_by_another_client_is_refused() {
    let app = TestApp::spawn().await;
    let first = app.first_hop("chat-app", LOGS).await;
    first.assert_ok();
    // Issued to chat-app for the logs MCP: triage-agent is neither.
    refused(
        &app,
        app.exchange_for_hop("triage-agent", first.token(), ACCESS_TOKEN, COST, &[]),
        "invalid_request",
        "subject_token.not_issued_to_client",
    )
    .await;
}

// ---------------------------------------------------------------------------
// Malformed token exchange requests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_exchange_without_subject_token_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("resource", LOGS),
        ("subject_token_type", ID_TOKEN),
    ];
    refused(
        &app,
        app.token(Auth::Basic("chat-app"), &form),
        "invalid_request",
        "request.missing_parameter",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_subject_token_type_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        app.exchange_for_hop("chat-app", &id_token, "urn:example:token-type:mystery", LOGS, &[]),
        "invalid_request",
        "request.token_type",
    )
    .await;
}

#[tokio::test]
async fn a_requested_saml2_token_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        app.exchange_for_hop(
            "chat-app",
            &id_token,
            ID_TOKEN,
            LOGS,
            &[("requested_token_type", "urn:ietf:params:oauth:token-type:saml2")],
        ),
        "invalid_request",
        "request.requested_token_type",
    )
    .await;
}

#[tokio::test]
async fn a_scope_with_forbidden_characters_is_an_invalid_scope() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    refused(
        &app,
        app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, LOGS, &[("scope", "logs.read a\"b")]),
        "invalid_scope",
        "scope.malformed",
    )
    .await;
}
