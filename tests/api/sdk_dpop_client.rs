//! The SDK as a DPoP client (RFC 9449 §5, §8) against the real broker, as
//! a specification: `HopTokens` and `IdJagClient` given a `DpopKey` send a
//! proof made by the SDK with every token request, so the tokens they get
//! are bound to that key; an MCP server that receives a DPoP-bound hop
//! token exchanges it for the next hop with its own key (and without one
//! gets the broker's refusal, typed); a server nonce costs one retry, and
//! the nonce is remembered; a bound ID-JAG is redeemed bound to the same
//! key. Against fake token endpoints: an answer that drops the binding is
//! an error, never a bearer token, and a nonce is retried exactly once.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use xaa_broker::audit::{AuditRecord, Decision};
use xaa_broker::dpop::{Expected, check};
use xaa_broker::params::DpopHeader;
use xaa_broker::policy::DpopSettings;
use xaa_broker::types::now_secs;
use xaa_sdk::{
    Alg, AuthorizationServer, BindingDropped, ClientAuth, DpopKey, DpopRequest, ErrorCode, HopTokens, IdJagClient,
    IdJagRequest, Principal, TokenError, TokenValidator, ValidationError,
};

use crate::support::dpop::cnf_jkt;
use crate::support::*;

/// A tool's public URL at the logs MCP and at the cost API.
const LOGS_TOOL: &str = "https://mcp.logs.example.com/tools/search_logs";
const COST_TOOL: &str = "https://cost.example.com/tools/estimate";

fn basic(client: &str) -> ClientAuth {
    ClientAuth::secret_basic(client, format!("{client}-secret"))
}

fn broker(app: &TestApp) -> AuthorizationServer {
    AuthorizationServer::xaa_broker(&app.issuer).unwrap()
}

/// mcp-logs' `HopTokens` at `server`, proving `dpop` when given.
fn logs_hop_tokens(server: AuthorizationServer, dpop: Option<DpopKey>) -> HopTokens {
    let builder = HopTokens::builder(server, basic("mcp-logs"));
    match dpop {
        Some(k) => builder.with_dpop(k),
        None => builder,
    }
    .build()
    .unwrap()
}

fn key() -> DpopKey {
    DpopKey::generate(Alg::ES256).unwrap()
}

async fn validator(app: &TestApp, resource: &str) -> TokenValidator {
    TokenValidator::builder(&app.issuer, resource).build().await.unwrap()
}

/// HOP1 (triage-agent → logs, no proof: a bearer token) as mcp-logs sees it.
async fn unbound_hop_at_logs(app: &TestApp) -> (String, Principal) {
    let hop1 = app.first_hop("triage-agent", LOGS).await;
    hop1.assert_ok();
    let principal = validator(app, LOGS).await.validate(hop1.token()).await.unwrap();
    (hop1.token().to_owned(), principal)
}

/// The agent's hop to the logs MCP, bound to `agent` by a proof the SDK
/// made, as mcp-logs sees it: validated with the agent's proof for the call.
async fn bound_hop_at_logs(app: &TestApp, agent: &DpopKey) -> (String, Principal) {
    let proof = agent.proof("POST", &app.url("/token"), None, None).unwrap();
    let hop1 = app.first_hop_with_dpop(&[&proof]).await;
    hop1.assert_ok();
    assert_eq!(hop1.body["token_type"], "DPoP");
    let call = agent.resource_proof("POST", LOGS_TOOL, hop1.token()).unwrap();
    let request = DpopRequest {
        proofs: &[&call],
        method: "POST",
        uri: LOGS_TOOL,
    };
    let principal = validator(app, LOGS)
        .await
        .validate_dpop(hop1.token(), &request, None)
        .await
        .unwrap();
    assert_eq!(principal.key_binding.as_deref(), Some(agent.thumbprint()));
    (hop1.token().to_owned(), principal)
}

/// What the broker recorded for `client`, in order.
async fn records_of(app: &TestApp, client: &str) -> Vec<AuditRecord> {
    app.all_audit()
        .await
        .into_iter()
        .filter(|r| r.client_id.as_deref() == Some(client))
        .collect()
}

// ---------------------------------------------------------------------------
// The proof the SDK makes is the broker's idea of a proof
// ---------------------------------------------------------------------------

#[test]
fn every_proof_the_sdk_makes_passes_the_brokers_own_check_and_proves_its_thumbprint() {
    let settings = DpopSettings {
        max_age_secs: 60,
        require_nonce: false,
        nonce_lifetime_secs: 300,
        nonce_secret: vec![7; 32],
    };
    let htu = "https://broker.example.com/token";
    for alg in Alg::ALL {
        let key = DpopKey::generate(alg).unwrap();
        let proof = key.proof("POST", &format!("{htu}?x=1"), None, None).unwrap();
        let expected = Expected {
            htm: "POST",
            htu,
            now: now_secs(),
            clock_skew_secs: 5,
            settings: &settings,
            keys: &xaa_broker::dpop::keys::ProofKeys::default(),
        };
        let proven = check(&DpopHeader::One(proof), &expected).unwrap().unwrap();
        assert_eq!(proven.jkt, key.thumbprint(), "{alg}");
    }
}

// ---------------------------------------------------------------------------
// HopTokens with a key
// ---------------------------------------------------------------------------

#[tokio::test]
async fn hop_tokens_with_a_key_get_a_hop_token_bound_to_it() {
    let app = TestApp::spawn().await;
    let (hop1, p) = unbound_hop_at_logs(&app).await;
    let service = key();
    let hops = logs_hop_tokens(broker(&app), Some(service.clone()));

    let hop = hops.token(&hop1, &p, COST, &[]).await.unwrap();
    assert_eq!(hop.dpop_jkt.as_deref(), Some(service.thumbprint()));
    let claims = app.verify_with_published_jwks(hop.token.expose(), "at+jwt").await;
    assert_eq!(
        claims["cnf"],
        json!({"jkt": service.thumbprint()}),
        "bound by the broker"
    );
    let record = records_of(&app, "mcp-logs").await.pop().unwrap();
    assert_eq!(record.decision, Decision::Granted);
    assert_eq!(record.dpop_jkt.as_deref(), Some(service.thumbprint()));

    let again = hops.token(&hop1, &p, COST, &[]).await.unwrap();
    assert_eq!((again.token, hops.broker_requests()), (hop.token.clone(), 1), "cached");

    // At the cost API the token is worth something only with a proof by
    // the key, which the SDK makes for the call.
    let cost = validator(&app, COST).await;
    let as_bearer = cost.validate(hop.token.expose()).await;
    assert_eq!(as_bearer.unwrap_err(), ValidationError::KeyBound);
    let call = service.resource_proof("POST", COST_TOOL, hop.token.expose()).unwrap();
    let request = DpopRequest {
        proofs: &[&call],
        method: "POST",
        uri: COST_TOOL,
    };
    let at_cost = cost.validate_dpop(hop.token.expose(), &request, None).await.unwrap();
    assert_eq!(at_cost.key_binding.as_deref(), Some(service.thumbprint()));
    assert_eq!(at_cost.act[0].sub, "mcp:logs");
}

#[tokio::test]
async fn an_mcp_server_exchanges_a_dpop_bound_hop_token_only_with_its_own_key() {
    let app = TestApp::spawn().await;
    let agent = key();
    let (hop1, p) = bound_hop_at_logs(&app, &agent).await;

    // Without a key, the broker refuses the bound subject token: a typed
    // refusal, nothing cached.
    let keyless = logs_hop_tokens(broker(&app), None);
    let e = keyless.token(&hop1, &p, COST, &[]).await.unwrap_err();
    let TokenError::Refused(oauth) = &e else {
        panic!("refused: {e:?}")
    };
    assert_eq!((oauth.status, &oauth.code), (400, &ErrorCode::InvalidRequest));
    assert!(!format!("{e} {e:?}").contains(&hop1), "the token is not in the error");
    let denied = records_of(&app, "mcp-logs").await.pop().unwrap();
    assert_eq!(denied.decision, Decision::Denied);
    assert_eq!(denied.reason.as_deref(), Some("subject_token.dpop_proof_required"));

    // With its own key, mcp-logs gets the next hop, bound to its key (the
    // agent's key stays with the agent).
    let service = key();
    let hops = logs_hop_tokens(broker(&app), Some(service.clone()));
    let hop2 = hops.token(&hop1, &p, COST, &[]).await.unwrap();
    assert_eq!(cnf_jkt(hop2.token.expose()).as_deref(), Some(service.thumbprint()));
    assert_ne!(service.thumbprint(), agent.thumbprint());
    assert_eq!(hop2.dpop_jkt.as_deref(), Some(service.thumbprint()));
    let claims = app.verify_with_published_jwks(hop2.token.expose(), "at+jwt").await;
    assert_eq!(claims["txn"].as_str(), p.txn.as_deref(), "one transaction");
    assert_eq!(claims["act"]["sub"], "mcp:logs");
}

// ---------------------------------------------------------------------------
// Server nonces (RFC 9449 §8)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_required_nonce_costs_one_retry_and_is_remembered_for_the_next_request() {
    let app = TestApp::spawn_with(|c| c.dpop.require_nonce = true).await;
    let (hop1, p) = unbound_hop_at_logs(&app).await;
    let service = key();
    let hops = logs_hop_tokens(broker(&app), Some(service.clone()));

    let first = hops.token(&hop1, &p, COST, &[]).await.unwrap();
    assert_eq!(cnf_jkt(first.token.expose()).as_deref(), Some(service.thumbprint()));
    let seen: Vec<(Decision, Option<String>)> = records_of(&app, "mcp-logs")
        .await
        .into_iter()
        .map(|r| (r.decision, r.reason))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Decision::Denied, Some("dpop.nonce_required".into())),
            (Decision::Granted, None)
        ],
        "asked for a nonce, then granted with it"
    );

    let second = hops.token(&hop1, &p, INCIDENTS, &[]).await.unwrap();
    assert_eq!(cnf_jkt(second.token.expose()).as_deref(), Some(service.thumbprint()));
    let decisions: Vec<Decision> = records_of(&app, "mcp-logs")
        .await
        .into_iter()
        .map(|r| r.decision)
        .collect();
    assert_eq!(
        decisions,
        vec![Decision::Denied, Decision::Granted, Decision::Granted],
        "the remembered nonce is sent: no second denial"
    );
}

// ---------------------------------------------------------------------------
// IdJagClient with a key
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_bound_id_jag_is_redeemed_for_an_access_token_bound_to_the_same_key() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let agent = key();
    let client = IdJagClient::new(broker(&enterprise), basic("triage-agent"))
        .unwrap()
        .with_dpop(agent.clone());
    let id_token = enterprise.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let request = IdJagRequest {
        id_token: &id_token,
        audience: &ras.issuer,
        resource: Some(SAAS_MCP),
        scopes: &[],
    };
    let jag = client.request(&request, None).await.unwrap();
    assert_eq!(jag.dpop_jkt.as_deref(), Some(agent.thumbprint()));
    assert_eq!(cnf_jkt(jag.assertion.expose()).as_deref(), Some(agent.thumbprint()));

    let saas = AuthorizationServer::discover(&ras.issuer).await.unwrap();
    let access = client
        .redeem(&saas, &basic("0oa-triage"), &jag, &[], None)
        .await
        .unwrap();
    assert_eq!(access.dpop_jkt.as_deref(), Some(agent.thumbprint()));
    let claims = ras.verify_with_published_jwks(access.token.expose(), "at+jwt").await;
    assert_eq!(claims["cnf"], json!({"jkt": agent.thumbprint()}));
    let record = ras.all_audit().await.pop().unwrap();
    assert_eq!(
        record.grant.as_deref(),
        Some("jwt-bearer"),
        "jwt-bearer with a proof (id_jag.rs says why)"
    );
    assert_eq!(record.dpop_jkt.as_deref(), Some(agent.thumbprint()));

    // The SaaS MCP accepts it with the agent's proof.
    let tool = format!("{SAAS_MCP}/tools/list");
    let call = agent.resource_proof("POST", &tool, access.token.expose()).unwrap();
    let request = DpopRequest {
        proofs: &[&call],
        method: "POST",
        uri: &tool,
    };
    let p = validator(&ras, SAAS_MCP)
        .await
        .validate_dpop(access.token.expose(), &request, None)
        .await
        .unwrap();
    assert_eq!(
        (p.sub.as_str(), p.key_binding.as_deref()),
        ("alice", Some(agent.thumbprint()))
    );
}

#[tokio::test]
async fn a_bound_id_jag_cannot_be_redeemed_without_its_key() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let bound = IdJagClient::new(broker(&enterprise), basic("triage-agent"))
        .unwrap()
        .with_dpop(key());
    let id_token = enterprise.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let request = IdJagRequest {
        id_token: &id_token,
        audience: &ras.issuer,
        resource: Some(SAAS_MCP),
        scopes: &[],
    };
    let jag = bound.request(&request, None).await.unwrap();
    let keyless = IdJagClient::new(broker(&enterprise), basic("triage-agent")).unwrap();
    let saas = AuthorizationServer::discover(&ras.issuer).await.unwrap();
    let e = keyless
        .redeem(&saas, &basic("0oa-triage"), &jag, &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::InvalidGrant), "{e}");
    let last = ras.all_audit().await.pop().unwrap();
    assert_eq!(last.reason.as_deref(), Some("id_jag.dpop_proof_required"));
}

// ---------------------------------------------------------------------------
// Servers that do not keep the binding, or keep asking for nonces
// ---------------------------------------------------------------------------

/// A fake token endpoint's answer: status, one extra header, JSON body.
type Answer = (StatusCode, Option<(&'static str, String)>, Value);

/// What a fake token endpoint saw and answers.
#[derive(Default)]
struct Fake {
    /// The `DPoP` header of each request, in order.
    proofs: Vec<Option<String>>,
    /// The answer to every request: status, extra header, body.
    answer: Option<Answer>,
}

/// A token endpoint on loopback answering whatever `fake` says; its server.
async fn fake_token_endpoint(fake: Arc<Mutex<Fake>>) -> AuthorizationServer {
    async fn token(State(fake): State<Arc<Mutex<Fake>>>, headers: HeaderMap) -> impl IntoResponse {
        let mut f = fake.lock().unwrap();
        let proof = headers.get("dpop").map(|v| v.to_str().unwrap().to_owned());
        f.proofs.push(proof);
        let (status, header, body) = f.answer.clone().unwrap();
        let mut h = HeaderMap::new();
        if let Some((name, value)) = header {
            h.insert(name, value.parse().unwrap());
        }
        (status, h, axum::Json(body))
    }
    let router = axum::Router::new().route("/token", post(token)).with_state(fake);
    let listener = bind().await;
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    AuthorizationServer::new(&base, &format!("{base}/token"), None).unwrap()
}

fn nonce_of(proof: &str) -> Option<String> {
    decode_part(proof, 1)["nonce"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_server_that_ignores_the_proof_or_binds_another_key_is_a_dropped_binding() {
    let app = TestApp::spawn().await;
    let (hop1, p) = unbound_hop_at_logs(&app).await;
    let service = key();
    let other = key();
    let ok = |extra: Value| {
        let mut body = json!({
            "access_token": "opaque-token",
            "issued_token_type": ACCESS_TOKEN,
            "expires_in": 300,
        });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        (StatusCode::OK, None, body)
    };
    for (answer, dropped) in [
        (ok(json!({"token_type": "Bearer"})), BindingDropped::NotDpopTokenType),
        (
            ok(json!({"token_type": "DPoP", "cnf": {"jkt": other.thumbprint()}})),
            BindingDropped::OtherKey,
        ),
    ] {
        let fake = Arc::new(Mutex::new(Fake {
            answer: Some(answer),
            ..Fake::default()
        }));
        let hops = logs_hop_tokens(fake_token_endpoint(fake.clone()).await, Some(service.clone()));
        let e = hops.token(&hop1, &p, COST, &[]).await.unwrap_err();
        assert_eq!(e, TokenError::BindingDropped(dropped));
        assert!(e.is_binding_dropped());
        assert!(!e.to_string().contains("opaque-token"), "the token is not in the error");
        assert!(fake.lock().unwrap().proofs[0].is_some(), "a proof was sent");
    }
}

#[tokio::test]
async fn a_nonce_is_retried_exactly_once_and_the_newest_is_used_next_time() {
    let app = TestApp::spawn().await;
    let (hop1, p) = unbound_hop_at_logs(&app).await;
    let fake = Arc::new(Mutex::new(Fake {
        answer: Some((
            StatusCode::BAD_REQUEST,
            Some(("dpop-nonce", "n-1".into())),
            json!({"error": "use_dpop_nonce", "error_description": "nonce required"}),
        )),
        ..Fake::default()
    }));
    let hops = logs_hop_tokens(fake_token_endpoint(fake.clone()).await, Some(key()));
    let e = hops.token(&hop1, &p, COST, &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::UseDpopNonce));
    let nonces: Vec<Option<String>> = fake
        .lock()
        .unwrap()
        .proofs
        .iter()
        .map(|p| nonce_of(p.as_deref().unwrap()))
        .collect();
    assert_eq!(nonces, vec![None, Some("n-1".into())], "one retry, with the nonce");

    // A later request starts with the newest nonce the server handed out.
    fake.lock().unwrap().answer = Some((
        StatusCode::BAD_REQUEST,
        Some(("dpop-nonce", "n-2".into())),
        json!({"error": "invalid_target"}),
    ));
    let e = hops.token(&hop1, &p, INCIDENTS, &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::InvalidTarget));
    let last_nonce = |fake: &Mutex<Fake>| {
        let f = fake.lock().unwrap();
        (f.proofs.len(), nonce_of(f.proofs.last().unwrap().as_deref().unwrap()))
    };
    assert_eq!(last_nonce(&fake), (3, Some("n-1".into())), "no retry for another error");
    hops.token(&hop1, &p, LOGS, &[]).await.unwrap_err();
    assert_eq!(
        last_nonce(&fake),
        (4, Some("n-2".into())),
        "a nonce on any answer replaces the last"
    );
}

#[tokio::test]
async fn without_a_key_no_proof_is_sent_and_a_nonce_request_is_not_retried() {
    let app = TestApp::spawn().await;
    let (hop1, p) = unbound_hop_at_logs(&app).await;
    let fake = Arc::new(Mutex::new(Fake {
        answer: Some((
            StatusCode::BAD_REQUEST,
            Some(("dpop-nonce", "n-1".into())),
            json!({"error": "use_dpop_nonce"}),
        )),
        ..Fake::default()
    }));
    let hops = logs_hop_tokens(fake_token_endpoint(fake.clone()).await, None);
    let e = hops.token(&hop1, &p, COST, &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::UseDpopNonce));
    assert_eq!(fake.lock().unwrap().proofs, vec![None]);
}
