//! DPoP-bound hop tokens at an SDK-protected server (RFC 9449 §7), as a
//! specification: the broker binds a hop token to the agent's key; the
//! logs MCP server, built on `xaa-sdk`, accepts it only as `DPoP` with a
//! fresh proof by that key, for this request and this token; a bound token
//! replayed as a bearer token is refused; an unbound token keeps working as
//! `Bearer` exactly as before, and is refused as `DPoP`. Tokens and proofs
//! are real: the broker's, over HTTP, and proofs made as a client makes
//! them.

use std::sync::Arc;

use axum::routing::post;
use serde_json::{Value, json};
use xaa_broker::types::now_secs;
use xaa_sdk::{
    Authenticated, DpopError, DpopRequest, ProtectedResource, ResourceMetadata, TokenValidator, ValidationError,
};

use crate::support::dpop::{DpopKey, cnf_jkt};
use crate::support::*;

/// The tool's URL as the agent addresses it: the logs resource's public
/// origin and the route's path (the server itself listens on 127.0.0.1).
const TOOL: &str = "https://mcp.logs.example.com/tools/search_logs";
const METADATA: &str = "https://mcp.logs.example.com/.well-known/oauth-protected-resource";
/// Every asymmetric algorithm, the SDK's default for proofs.
const ALGS: &str = "ES256 ES384 RS256 PS256 EdDSA";

/// A broker, the SDK-protected logs server, a client key, and a hop token
/// bound to that key: where most cases start.
struct Bound {
    app: TestApp,
    base: String,
    key: DpopKey,
    token: String,
}

impl Bound {
    async fn start() -> Bound {
        let app = TestApp::spawn().await;
        let base = logs_server(&app).await;
        let key = DpopKey::es256();
        let token = bound_hop(&app, &key).await;
        Bound { app, base, key, token }
    }
}

/// alice signs in for triage-agent, which takes the first hop to the logs
/// MCP with a proof by `key`: a hop token bound to it.
async fn bound_hop(app: &TestApp, key: &DpopKey) -> String {
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let r = app
        .token_with_dpop(
            Auth::Basic("triage-agent"),
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("resource", LOGS),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
            ],
            &[&key.proof(&format!("{}/token", app.issuer))],
        )
        .await;
    r.assert_ok();
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(cnf_jkt(r.token()), Some(key.jkt()));
    r.token().to_owned()
}

/// The same first hop without a proof: an unbound (bearer) hop token.
async fn unbound_hop(app: &TestApp) -> String {
    let r = app.first_hop("triage-agent", LOGS).await;
    r.assert_ok();
    assert_eq!(cnf_jkt(r.token()), None);
    r.token().to_owned()
}

async fn validator(app: &TestApp) -> TokenValidator {
    TokenValidator::builder(&app.issuer, LOGS).build().await.unwrap()
}

/// The logs MCP server on the SDK: `POST /tools/search_logs` answers who
/// called and the key their token is bound to.
async fn logs_server(app: &TestApp) -> String {
    let resource = ProtectedResource::new(validator(app).await, ResourceMetadata::new(LOGS, &app.issuer)).unwrap();
    serve(Arc::new(resource), None).await
}

/// Serve `resource`'s tool route, under `prefix` when given; the base URL.
async fn serve(resource: Arc<ProtectedResource>, prefix: Option<&str>) -> String {
    async fn search(auth: Authenticated) -> axum::Json<Value> {
        axum::Json(json!({"sub": auth.principal.sub, "key_binding": auth.principal.key_binding}))
    }
    let tools = axum::Router::new()
        .route("/tools/search_logs", post(search))
        .with_state(resource.clone());
    let router = match prefix {
        Some(p) => axum::Router::new().nest(p, tools),
        None => tools,
    }
    .merge(resource.metadata_router().unwrap());
    let listener = bind().await;
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// `POST {base}{path}` with this `Authorization` and these `DPoP` headers.
async fn call_at(base: &str, path: &str, authorization: Option<&str>, proofs: &[&str]) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(format!("{base}{path}"));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    for p in proofs {
        req = req.header("dpop", *p);
    }
    req.send().await.unwrap()
}

async fn call(base: &str, authorization: Option<&str>, proofs: &[&str]) -> reqwest::Response {
    call_at(base, "/tools/search_logs", authorization, proofs).await
}

/// Every `WWW-Authenticate` field, in order.
fn challenges(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// A 401 that offers both schemes (RFC 9449 §7.1–7.2), Bearer first and
/// plain, and names `error` with `description` in the DPoP challenge (there
/// in visible ASCII: a header's quoted-string); the token and the proof are
/// never echoed.
async fn assert_dpop_refusal(r: reqwest::Response, error: &str, description: &str, secrets: &[&str]) {
    assert_eq!(r.status(), 401);
    let ch = challenges(&r);
    assert_eq!(ch.len(), 2, "{ch:?}");
    assert_eq!(ch[0], format!("Bearer resource_metadata=\"{METADATA}\""));
    assert_eq!(
        ch[1],
        format!(
            "DPoP error=\"{error}\", error_description=\"{}\", algs=\"{ALGS}\", \
             resource_metadata=\"{METADATA}\"",
            description.replace('§', "")
        )
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"error": error, "error_description": description}));
    for secret in secrets {
        assert!(
            !body.to_string().contains(secret) && !ch.concat().contains(secret),
            "never echoed"
        );
    }
}

/// A proof the server must refuse as `invalid_dpop_proof` for `rule`.
async fn assert_bad_proof(base: &str, token: &str, proof: &str, rule: DpopError) {
    let r = call(base, Some(&format!("DPoP {token}")), &[proof]).await;
    assert_dpop_refusal(r, "invalid_dpop_proof", &rule.to_string(), &[token, proof]).await;
}

// ---------------------------------------------------------------------------
// A bound token with its proof
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_bound_hop_token_with_a_good_proof_is_accepted_and_the_principal_names_its_key() {
    let b = Bound::start().await;
    let (base, key, token) = (&b.base, &b.key, &b.token);
    let r = call(
        base,
        Some(&format!("DPoP {token}")),
        &[&key.resource_proof("POST", TOOL, token)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"sub": "alice", "key_binding": key.jkt()}));
}

#[tokio::test]
async fn every_allowed_algorithm_proves_a_key_at_the_resource() {
    let app = TestApp::spawn().await;
    let base = logs_server(&app).await;
    for alg in xaa_broker::jose::Alg::ALL {
        let key = DpopKey::new(alg);
        let token = bound_hop(&app, &key).await;
        let r = call(
            &base,
            Some(&format!("DPoP {token}")),
            &[&key.resource_proof("POST", TOOL, &token)],
        )
        .await;
        assert_eq!(r.status(), 200, "{alg}");
    }
}

#[tokio::test]
async fn a_bound_token_presented_as_bearer_is_refused_with_a_dpop_challenge() {
    let Bound { app, base, key, token } = Bound::start().await;
    // Stolen from its holder, sent as a bearer token, with or without a
    // proof the thief cannot make anyway.
    for proofs in [vec![], vec![key.resource_proof("POST", TOOL, &token)]] {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let r = call(&base, Some(&format!("Bearer {token}")), &proofs).await;
        assert_dpop_refusal(r, "invalid_token", &ValidationError::KeyBound.to_string(), &[&token]).await;
    }
    assert_eq!(
        validator(&app).await.validate(&token).await.unwrap_err(),
        ValidationError::KeyBound,
        "the validator's bearer path refuses it too"
    );
}

#[tokio::test]
async fn a_proof_by_another_key_is_refused_as_an_invalid_key_binding() {
    let app = TestApp::spawn().await;
    let base = logs_server(&app).await;
    let (key, thief) = (DpopKey::es256(), DpopKey::es256());
    let token = bound_hop(&app, &key).await;
    let proof = thief.resource_proof("POST", TOOL, &token);
    let r = call(&base, Some(&format!("DPoP {token}")), &[&proof]).await;
    // RFC 9449 §7.1: the token is not this client's ("invalid DPoP key
    // binding"), so invalid_token.
    assert_dpop_refusal(r, "invalid_token", &DpopError::OtherKey.to_string(), &[&token, &proof]).await;
}

// ---------------------------------------------------------------------------
// The proof checks at the resource, one refusal each
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    let b = Bound::start().await;
    let (base, key, token) = (&b.base, &b.key, &b.token);
    for method in ["GET", "post"] {
        let proof = key.resource_proof(method, TOOL, token);
        assert_bad_proof(base, token, &proof, DpopError::WrongMethod).await;
    }
}

#[tokio::test]
async fn a_proof_for_another_uri_is_refused_and_the_servers_own_address_is_not_its_uri() {
    let b = Bound::start().await;
    let (base, key, token) = (&b.base, &b.key, &b.token);
    for htu in [
        "https://mcp.logs.example.com/tools/purge_logs".to_owned(),
        "https://cost.example.com/tools/search_logs".to_owned(),
        // Where the request physically went: a proof is for the public URL
        // the client addressed, never for what the Host header says.
        format!("{base}/tools/search_logs"),
    ] {
        let proof = key.resource_proof("POST", &htu, token);
        assert_bad_proof(base, token, &proof, DpopError::WrongUri).await;
    }
    // RFC 9449 §4.3 check 9: without query and fragment, normalised.
    let proof = key.resource_proof(
        "POST",
        "HTTPS://MCP.logs.example.com:443/tools/search_logs?q=1#f",
        token,
    );
    let r = call(base, Some(&format!("DPoP {token}")), &[&proof]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_proof_without_the_tokens_hash_or_with_another_tokens_is_refused() {
    let Bound { app, base, key, token } = Bound::start().await;
    let other_token = bound_hop(&app, &key).await;
    let without = key.resource_proof_with("POST", TOOL, &token, |_, c| {
        c.as_object_mut().unwrap().remove("ath");
    });
    assert_bad_proof(&base, &token, &without, DpopError::Ath).await;
    // Same key, another of its tokens: a proof is for one token.
    let for_other = key.resource_proof("POST", TOOL, &other_token);
    assert_bad_proof(&base, &token, &for_other, DpopError::Ath).await;
}

#[tokio::test]
async fn a_stale_or_future_proof_is_refused() {
    let b = Bound::start().await;
    let (base, key, token) = (&b.base, &b.key, &b.token);
    // Default window: 60 s old at most, 5 s of clock skew either way.
    for iat in [now_secs() - 120, now_secs() + 60] {
        let proof = key.resource_proof_with("POST", TOOL, token, |_, c| c["iat"] = json!(iat));
        assert_bad_proof(base, token, &proof, DpopError::Iat).await;
    }
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let b = Bound::start().await;
    let (base, key, token) = (&b.base, &b.key, &b.token);
    let proof = key.resource_proof("POST", TOOL, token);
    let first = call(base, Some(&format!("DPoP {token}")), &[&proof]).await;
    assert_eq!(first.status(), 200);
    assert_bad_proof(base, token, &proof, DpopError::Replayed).await;
    let fresh = key.resource_proof("POST", TOOL, token);
    assert_eq!(
        call(base, Some(&format!("DPoP {token}")), &[&fresh]).await.status(),
        200,
        "a fresh proof for the same token is fine"
    );
}

#[tokio::test]
async fn a_dpop_request_carries_exactly_one_proof_and_the_proof_must_be_one() {
    let b = Bound::start().await;
    let (base, key, token) = (&b.base, &b.key, &b.token);
    let auth = format!("DPoP {token}");
    let r = call(base, Some(&auth), &[]).await;
    assert_dpop_refusal(r, "invalid_dpop_proof", &DpopError::Missing.to_string(), &[token]).await;
    let (a, b) = (
        key.resource_proof("POST", TOOL, token),
        key.resource_proof("POST", TOOL, token),
    );
    let r = call(base, Some(&auth), &[&a, &b]).await;
    assert_dpop_refusal(
        r,
        "invalid_dpop_proof",
        &DpopError::SeveralHeaders.to_string(),
        &[token],
    )
    .await;
    // A token is not a proof: typ at+jwt, no jwk.
    assert_bad_proof(base, token, token, DpopError::WrongType).await;
    let untyped = key.resource_proof_with("POST", TOOL, token, |h, _| h["typ"] = json!("JWT"));
    assert_bad_proof(base, token, &untyped, DpopError::WrongType).await;
    let private = Value::Object(key.private.as_ref().clone());
    let leaky = key.resource_proof_with("POST", TOOL, token, |h, _| h["jwk"] = private);
    assert_bad_proof(base, token, &leaky, DpopError::JwkPrivate).await;
}

// ---------------------------------------------------------------------------
// Unbound tokens: Bearer as before, never DPoP
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unbound_token_with_the_dpop_scheme_is_refused() {
    let app = TestApp::spawn().await;
    let base = logs_server(&app).await;
    let token = unbound_hop(&app).await;
    // A well-made proof, but the token names no key for it to prove: the
    // binding cannot be verified, so the DPoP scheme is not honoured
    // (RFC 9449 §7.2); the client is told to use it as the bearer token it is.
    let proof = DpopKey::es256().resource_proof("POST", TOOL, &token);
    let r = call(&base, Some(&format!("DPoP {token}")), &[&proof]).await;
    assert_dpop_refusal(
        r,
        "invalid_token",
        &ValidationError::NotKeyBound.to_string(),
        &[&token, &proof],
    )
    .await;
}

#[tokio::test]
async fn an_unbound_token_as_bearer_is_still_accepted_and_challenges_offer_both_schemes() {
    let app = TestApp::spawn().await;
    let base = logs_server(&app).await;
    let token = unbound_hop(&app).await;
    let r = call(&base, Some(&format!("Bearer {token}")), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"sub": "alice", "key_binding": null})
    );

    // No token: the Bearer challenge MCP clients read, unchanged and first;
    // then the DPoP one (RFC 9449 §7.1).
    let none = call(&base, None, &[]).await;
    assert_eq!(none.status(), 401);
    assert_eq!(
        challenges(&none),
        vec![
            format!("Bearer resource_metadata=\"{METADATA}\""),
            format!("DPoP algs=\"{ALGS}\", resource_metadata=\"{METADATA}\""),
        ]
    );
    // A bad bearer token: the error stays in the Bearer challenge.
    let bad = call(&base, Some("Bearer not-a-jwt"), &[]).await;
    assert_eq!(bad.status(), 401);
    let ch = challenges(&bad);
    assert!(
        ch[0].starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{ch:?}"
    );
    assert_eq!(ch[1], format!("DPoP algs=\"{ALGS}\", resource_metadata=\"{METADATA}\""));

    let doc: Value = reqwest::get(format!("{base}/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(ALGS.split(' ').collect::<Vec<_>>()),
        "RFC 9728 §2"
    );
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
}

// ---------------------------------------------------------------------------
// The validator, without axum; a server behind a path prefix
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_validator_checks_a_bound_token_with_its_proof_once() {
    let app = TestApp::spawn().await;
    let v = validator(&app).await;
    let key = DpopKey::es256();
    let token = bound_hop(&app, &key).await;
    let proof = key.resource_proof("GET", TOOL, &token);
    let request = DpopRequest {
        proofs: &[&proof],
        method: "GET",
        uri: TOOL,
    };
    let p = v.validate_dpop(&token, &request, None).await.unwrap();
    assert_eq!(p.key_binding, Some(key.jkt()));
    assert_eq!((p.sub.as_str(), p.client_id.as_str()), ("alice", "triage-agent"));
    assert_eq!(
        v.clone().validate_dpop(&token, &request, None).await.unwrap_err(),
        ValidationError::Proof(DpopError::Replayed),
        "clones share the replay set"
    );
    let unbound = unbound_hop(&app).await;
    let proof = key.resource_proof("GET", TOOL, &unbound);
    let request = DpopRequest {
        proofs: &[&proof],
        method: "GET",
        uri: TOOL,
    };
    assert_eq!(
        v.validate_dpop(&unbound, &request, None).await.unwrap_err(),
        ValidationError::NotKeyBound
    );
    assert_eq!(v.validate(&unbound).await.unwrap().key_binding, None);
}

#[tokio::test]
async fn behind_a_path_prefix_the_proof_names_the_public_url() {
    let app = TestApp::spawn().await;
    let resource = ProtectedResource::new(validator(&app).await, ResourceMetadata::new(LOGS, &app.issuer))
        .unwrap()
        .with_public_base_url("https://gateway.example.com/")
        .unwrap();
    let base = serve(Arc::new(resource), Some("/logs")).await;
    let key = DpopKey::es256();
    let token = bound_hop(&app, &key).await;
    let public = "https://gateway.example.com/logs/tools/search_logs";
    let auth = format!("DPoP {token}");
    let proof = key.resource_proof("POST", public, &token);
    let r = call_at(&base, "/logs/tools/search_logs", Some(&auth), &[&proof]).await;
    assert_eq!(r.status(), 200);
    let proof = key.resource_proof("POST", TOOL, &token);
    let r = call_at(&base, "/logs/tools/search_logs", Some(&auth), &[&proof]).await;
    assert_eq!(
        r.status(),
        401,
        "the resource's own origin is not where this server is reached"
    );
}
