//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523
//! §2.2, specs/decisions.md §9): `client_secret_basic` (percent-decoded),
//! `client_secret_post` and `private_key_jwt`, exactly one per request.
//! A request refused before its client authenticates leaves no audit record
//! but is counted once in the noise summaries, with its reason (decisions
//! §13); a replayed assertion is refused after authentication and audited.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use serde_json::{Value, json};
use xaa_broker::jose::Alg;
use xaa_broker::types::now_secs;

use crate::support::*;

/// A first-hop exchange to the logs MCP for alice, signed in at `client`,
/// without any client authentication.
fn first_hop_form(id_token: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("resource", LOGS),
        ("subject_token", id_token),
        ("subject_token_type", ID_TOKEN),
    ]
}

fn id_token_for(app: &TestApp, client: &str) -> String {
    app.idp.id_token("alice", client, &["developer"])
}

/// A first hop by `client` authenticated with `auth`, plus `extra` form
/// parameters (extra credentials).
async fn first_hop_with(app: &TestApp, client: &str, auth: Auth<'_>, extra: &[(&str, &str)]) -> Resp {
    let id_token = id_token_for(app, client);
    let mut form = first_hop_form(&id_token);
    form.extend_from_slice(extra);
    app.token(auth, &form).await
}

/// A first hop by reporting-bot authenticated with `assertion`
/// (`private_key_jwt`), plus `extra` form parameters.
async fn bot_first_hop(app: &TestApp, assertion: &str, extra: &[(&str, &str)]) -> Resp {
    let id_token = id_token_for(app, "reporting-bot");
    let mut form = first_hop_form(&id_token);
    form.push(("client_assertion_type", ASSERTION_TYPE));
    form.push(("client_assertion", assertion));
    form.extend_from_slice(extra);
    app.token(Auth::None, &form).await
}

/// Good reporting-bot assertion claims, with `tweak` applied.
fn bot_claims(app: &TestApp, tweak: impl FnOnce(&mut Value)) -> Value {
    let now = now_secs();
    let mut claims = json!({
        "iss": "reporting-bot", "sub": "reporting-bot", "aud": app.issuer,
        "iat": now, "exp": now + 60, "jti": uuid::Uuid::now_v7().to_string(),
    });
    tweak(&mut claims);
    claims
}

/// A reporting-bot assertion signed with its key under an explicit header.
fn bot_assertion_with_header(app: &TestApp, header: Value) -> String {
    sign_jws(&app.bot_key, header, &bot_claims(app, |_| {}))
}

fn bot_kid(app: &TestApp) -> String {
    app.bot_key.key_id().unwrap().to_owned()
}

#[track_caller]
fn assert_issued(r: &Resp) {
    r.assert_ok();
    assert_eq!(r.body["issued_token_type"], ACCESS_TOKEN, "body: {}", r.body);
    assert!(!r.token().is_empty());
}

// ---------------------------------------------------------------------------
// Client secrets
// ---------------------------------------------------------------------------

#[tokio::test]
async fn client_secret_basic_authenticates_the_client() {
    let app = TestApp::spawn().await;
    let r = first_hop_with(&app, "chat-app", Auth::Basic("chat-app"), &[]).await;
    assert_issued(&r);
    assert_eq!(r.claims()["client_id"], "chat-app");
}

#[tokio::test]
async fn basic_credentials_are_percent_decoded() {
    let app = TestApp::spawn().await;
    let id_token = id_token_for(&app, "chat-app");
    let credentials = STANDARD.encode("chat%2Dapp:chat%2Dapp%2Dsecret");
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(first_hop_form(&id_token))
        .finish();
    let resp = app
        .http
        .post(app.url("/token"))
        .header("authorization", format!("Basic {credentials}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(
        decode_part(body["access_token"].as_str().unwrap(), 1)["client_id"],
        "chat-app"
    );
}

#[tokio::test]
async fn client_secret_post_authenticates_the_client() {
    let app = TestApp::spawn().await;
    let r = first_hop_with(&app, "chat-app", Auth::Post("chat-app"), &[]).await;
    assert_issued(&r);
    assert_eq!(r.claims()["client_id"], "chat-app");
}

#[tokio::test]
async fn client_id_repeated_in_the_body_with_basic_is_accepted_when_equal() {
    let app = TestApp::spawn().await;
    let r = first_hop_with(&app, "chat-app", Auth::Basic("chat-app"), &[("client_id", "chat-app")]).await;
    assert_issued(&r);
}

#[tokio::test]
async fn client_id_in_the_body_differing_from_basic_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let r = refused_before_auth(
        &app,
        first_hop_with(
            &app,
            "chat-app",
            Auth::Basic("chat-app"),
            &[("client_id", "triage-agent")],
        ),
        "client_auth.client_id_mismatch",
    )
    .await;
    r.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_wrong_basic_secret_is_invalid_client_with_a_basic_challenge() {
    let app = TestApp::spawn().await;
    let r = refused_before_auth(
        &app,
        first_hop_with(&app, "chat-app", Auth::BasicWith("chat-app", "not-the-secret"), &[]),
        "client_auth.bad_secret",
    )
    .await;
    r.assert_error(401, "invalid_client");
    let challenge = r.headers.get("www-authenticate").and_then(|v| v.to_str().ok());
    assert!(
        challenge.is_some_and(|c| c.starts_with("Basic ")),
        "WWW-Authenticate: {challenge:?}"
    );
}

#[tokio::test]
async fn an_unknown_client_via_post_is_invalid_client_without_a_challenge() {
    let app = TestApp::spawn().await;
    let r = refused_before_auth(
        &app,
        first_hop_with(&app, "no-such-client", Auth::Post("no-such-client"), &[]),
        "client_auth.unknown_client",
    )
    .await;
    r.assert_error(401, "invalid_client");
    assert!(r.headers.get("www-authenticate").is_none(), "headers: {:?}", r.headers);
}

#[tokio::test]
async fn a_method_the_client_is_not_configured_for_is_refused() {
    let app = TestApp::spawn_with(|c| {
        c.clients.get_mut("chat-app").unwrap().auth_methods = Some(vec!["client_secret_basic".into()]);
    })
    .await;
    let r = refused_before_auth(
        &app,
        first_hop_with(&app, "chat-app", Auth::Post("chat-app"), &[]),
        "client_auth.method_not_allowed",
    )
    .await;
    r.assert_error(401, "invalid_client");
    // The configured method still works.
    assert_issued(&first_hop_with(&app, "chat-app", Auth::Basic("chat-app"), &[]).await);
}

#[tokio::test]
async fn basic_and_client_secret_together_are_an_invalid_request() {
    let app = TestApp::spawn().await;
    let r = refused_before_auth(
        &app,
        first_hop_with(
            &app,
            "chat-app",
            Auth::Basic("chat-app"),
            &[("client_secret", "chat-app-secret")],
        ),
        "client_auth.multiple_methods",
    )
    .await;
    r.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn basic_and_a_client_assertion_together_are_an_invalid_request() {
    let app = TestApp::spawn().await;
    let assertion = app.bot_assertion(|_| {});
    let r = refused_before_auth(
        &app,
        first_hop_with(
            &app,
            "chat-app",
            Auth::Basic("chat-app"),
            &[
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
        ),
        "client_auth.multiple_methods",
    )
    .await;
    r.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_request_without_credentials_is_invalid_client() {
    let app = TestApp::spawn().await;
    let r = refused_before_auth(
        &app,
        first_hop_with(&app, "chat-app", Auth::None, &[]),
        "client_auth.missing",
    )
    .await;
    r.assert_error(401, "invalid_client");
}

// ---------------------------------------------------------------------------
// private_key_jwt
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_assertion_addressed_to_the_issuer_authenticates_the_client() {
    let app = TestApp::spawn().await;
    let r = bot_first_hop(&app, &app.bot_assertion(|_| {}), &[]).await;
    assert_issued(&r);
    assert_eq!(r.claims()["client_id"], "reporting-bot");
}

#[tokio::test]
async fn a_client_assertion_addressed_to_the_token_endpoint_authenticates_the_client() {
    let app = TestApp::spawn().await;
    let token_endpoint = app.url("/token");
    let assertion = app.bot_assertion(|c| c["aud"] = json!(token_endpoint));
    assert_issued(&bot_first_hop(&app, &assertion, &[]).await);
}

#[tokio::test]
async fn a_client_assertion_without_typ_is_accepted() {
    let app = TestApp::spawn().await;
    let assertion = bot_assertion_with_header(&app, json!({"alg": "ES256", "kid": bot_kid(&app)}));
    assert_issued(&bot_first_hop(&app, &assertion, &[]).await);
}

#[tokio::test]
async fn a_client_assertion_typed_client_authentication_jwt_is_accepted() {
    let app = TestApp::spawn().await;
    let assertion = bot_assertion_with_header(
        &app,
        json!({"alg": "ES256", "kid": bot_kid(&app), "typ": "client-authentication+jwt"}),
    );
    assert_issued(&bot_first_hop(&app, &assertion, &[]).await);
}

#[tokio::test]
async fn a_client_assertion_with_a_multi_valued_audience_is_refused() {
    let app = TestApp::spawn().await;
    let both = json!([app.issuer, app.url("/token")]);
    let assertion = app.bot_assertion(|c| c["aud"] = both);
    let r = refused_before_auth(&app, bot_first_hop(&app, &assertion, &[]), "token.audience").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_client_assertion_for_another_audience_is_refused() {
    let app = TestApp::spawn().await;
    let assertion = app.bot_assertion(|c| c["aud"] = json!("https://other-as.example.com"));
    let r = refused_before_auth(&app, bot_first_hop(&app, &assertion, &[]), "token.audience").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_client_assertion_expiring_more_than_an_hour_ahead_is_refused() {
    let app = TestApp::spawn().await;
    let exp = now_secs() + 3600 + 600;
    let assertion = app.bot_assertion(|c| c["exp"] = json!(exp));
    let r = refused_before_auth(&app, bot_first_hop(&app, &assertion, &[]), "client_assertion.lifetime").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn an_expired_client_assertion_is_refused() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let assertion = app.bot_assertion(|c| {
        c["iat"] = json!(now - 600);
        c["exp"] = json!(now - 300);
    });
    let r = refused_before_auth(&app, bot_first_hop(&app, &assertion, &[]), "token.expired").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_client_assertion_without_jti_is_refused() {
    let app = TestApp::spawn().await;
    let assertion = app.bot_assertion(|c| {
        c.as_object_mut().unwrap().remove("jti");
    });
    let r = refused_before_auth(&app, bot_first_hop(&app, &assertion, &[]), "token.no_jti").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_client_assertion_used_twice_is_refused_the_second_time() {
    let app = TestApp::spawn().await;
    let assertion = app.bot_assertion(|_| {});
    assert_issued(&bot_first_hop(&app, &assertion, &[]).await);
    let r = refused_for(&app, bot_first_hop(&app, &assertion, &[]), "client_assertion.replayed").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_client_assertion_signed_with_another_key_is_refused() {
    let app = TestApp::spawn().await;
    let mut other = Alg::ES256.generate().unwrap();
    // Same kid as the registered key: only the key itself differs.
    other.set_key_id(bot_kid(&app));
    let header = json!({"alg": "ES256", "kid": bot_kid(&app), "typ": "JWT"});
    let assertion = sign_jws(&other, header, &bot_claims(&app, |_| {}));
    let r = refused_before_auth(&app, bot_first_hop(&app, &assertion, &[]), "token.signature").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_client_assertion_whose_iss_differs_from_sub_is_refused() {
    let app = TestApp::spawn().await;
    let assertion = app.bot_assertion(|c| c["iss"] = json!("chat-app"));
    let r = refused_before_auth(&app, bot_first_hop(&app, &assertion, &[]), "client_assertion.iss").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_client_id_parameter_differing_from_the_assertion_sub_is_refused() {
    let app = TestApp::spawn().await;
    let assertion = app.bot_assertion(|_| {});
    let r = refused_before_auth(
        &app,
        bot_first_hop(&app, &assertion, &[("client_id", "triage-agent")]),
        "client_assertion.client_id_mismatch",
    )
    .await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_client_assertion_for_a_secret_only_client_is_refused() {
    let app = TestApp::spawn().await;
    // Signed by a key the attacker holds, claiming to be chat-app, which has
    // no registered keys at all.
    let attacker = Alg::ES256.generate().unwrap();
    let claims = bot_claims(&app, |c| {
        c["iss"] = json!("chat-app");
        c["sub"] = json!("chat-app");
    });
    let header = json!({"alg": "ES256", "kid": attacker.key_id().unwrap(), "typ": "JWT"});
    let assertion = sign_jws(&attacker, header, &claims);
    let id_token = id_token_for(&app, "chat-app");
    let mut form = first_hop_form(&id_token);
    form.push(("client_assertion_type", ASSERTION_TYPE));
    form.push(("client_assertion", &assertion));
    let r = refused_before_auth(&app, app.token(Auth::None, &form), "client_auth.method_not_allowed").await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn a_wrong_client_assertion_type_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let assertion = app.bot_assertion(|_| {});
    let id_token = id_token_for(&app, "reporting-bot");
    let mut form = first_hop_form(&id_token);
    form.push((
        "client_assertion_type",
        "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    ));
    form.push(("client_assertion", &assertion));
    let r = refused_before_auth(&app, app.token(Auth::None, &form), "client_auth.assertion_type").await;
    r.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn an_unsigned_alg_none_client_assertion_is_refused() {
    let app = TestApp::spawn().await;
    let header = B64.encode(serde_json::to_vec(&json!({"alg": "none", "typ": "JWT"})).unwrap());
    let payload = B64.encode(serde_json::to_vec(&bot_claims(&app, |_| {})).unwrap());
    let assertion = format!("{header}.{payload}.");
    let r = refused_before_auth(&app, bot_first_hop(&app, &assertion, &[]), "token.alg_not_allowed").await;
    r.assert_error(401, "invalid_client");
}
