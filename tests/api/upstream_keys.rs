//! Upstream keys (specs/decisions.md §11; RFC 7517, RFC 8725 §3.10): JWK Sets
//! are fetched once and cached, refetched on an unknown `kid` at most once per
//! interval, served stale while the IdP is briefly down, and refused when the
//! key endpoint misbehaves. A first-hop exchange (an ID token from corp-idp)
//! is the probe throughout.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use josekit::jwk::Jwk;
use serde_json::{Value, json};
use xaa_broker::audit::Decision;
use xaa_broker::jose::Alg;

use crate::support::*;

/// A first hop by triage-agent to the logs server: the probe.
async fn probe(app: &TestApp) -> Resp {
    app.first_hop("triage-agent", LOGS).await
}

#[tokio::test]
async fn keys_are_fetched_once_and_cached() {
    let app = TestApp::spawn().await;
    probe(&app).await.assert_ok();
    probe(&app).await.assert_ok();
    assert_eq!(app.idp.jwks_hits(), 1);
}

#[tokio::test]
async fn a_rotated_key_triggers_exactly_one_refetch_and_verifies() {
    let app = TestApp::spawn().await;
    probe(&app).await.assert_ok();
    assert_eq!(app.idp.jwks_hits(), 1);

    app.idp.rotate(false);
    let r = probe(&app).await;
    r.assert_ok();
    assert_eq!(app.idp.jwks_hits(), 2, "one refetch for the new kid");

    probe(&app).await.assert_ok();
    assert_eq!(app.idp.jwks_hits(), 2, "the new key is cached");
}

#[tokio::test]
async fn an_unknown_kid_storm_costs_the_idp_at_most_one_refetch() {
    let app = Arc::new(TestApp::spawn().await);
    probe(&app).await.assert_ok();
    let hits = app.idp.jwks_hits();
    let issued = app.issued_count().await;

    let mut storm = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let app = app.clone();
        storm.spawn(async move {
            // A real signature by a key the IdP never published, under corp-idp's iss.
            let forger = Alg::ES256.generate().unwrap();
            let kid = uuid::Uuid::now_v7().to_string();
            let claims = app.idp.id_token_claims("alice", "triage-agent", &["developer", "sre"]);
            let token = sign_jws(&forger, json!({"alg": "ES256", "kid": kid, "typ": "JWT"}), &claims);
            app.exchange_for_hop("triage-agent", &token, ID_TOKEN, LOGS, &[]).await
        });
    }
    while let Some(r) = storm.join_next().await {
        r.unwrap().assert_error(400, "invalid_request");
    }
    assert!(
        app.idp.jwks_hits() <= hits + 1,
        "JWKS fetched {} times during the storm",
        app.idp.jwks_hits() - hits
    );
    assert_eq!(app.issued_count().await, issued, "nothing issued to the storm");
}

#[tokio::test]
async fn an_idp_down_before_any_key_is_cached_fails_closed_with_503() {
    let app = TestApp::spawn().await;
    app.idp.set_down(true);

    let r = probe(&app).await;
    r.assert_error(503, "temporarily_unavailable");
    assert!(r.headers.contains_key(header::RETRY_AFTER), "Retry-After on a 503");

    assert_eq!(app.issued_count().await, 0);
    let audit = app.all_audit().await;
    let last = audit.last().expect("the denial is audited");
    assert_eq!(last.decision, Decision::Denied);
    assert_eq!(last.error.as_deref(), Some("temporarily_unavailable"));
    assert_eq!(last.client_id.as_deref(), Some("triage-agent"));
    assert!(last.issued_jti.is_none());
}

#[tokio::test]
async fn cached_keys_keep_verifying_while_the_idp_is_down() {
    let app = TestApp::spawn().await;
    probe(&app).await.assert_ok();
    app.idp.set_down(true);
    probe(&app).await.assert_ok();
    probe(&app).await.assert_ok();
}

#[tokio::test]
async fn stale_keys_are_served_while_the_idp_is_down() {
    let app = TestApp::spawn_with(|cfg| cfg.upstream.cache_ttl_secs = 0).await;
    probe(&app).await.assert_ok();
    app.idp.set_down(true);
    probe(&app).await.assert_ok();
    // Not served by skipping the refresh: the stale set was refreshed on use
    // (cache_ttl_secs), the refresh failed, and the old keys were kept.
    assert_eq!(app.idp.jwks_hits(), 2, "a stale key set is refreshed on next use");
}

#[tokio::test]
async fn stale_keys_past_max_stale_are_not_served() {
    let app = TestApp::spawn_with(|cfg| {
        cfg.upstream.cache_ttl_secs = 0;
        cfg.upstream.max_stale_secs = 0;
    })
    .await;
    probe(&app).await.assert_ok();
    app.idp.set_down(true);
    let r = probe(&app).await;
    r.assert_error(503, "temporarily_unavailable");
    assert!(r.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn actor_tokens_verify_through_oidc_discovery() {
    let app = TestApp::spawn().await;
    // chat-app hosts agent:x (examples/broker.toml `actor_identities`).
    let id_token = app.idp.id_token("alice", "chat-app", &["developer", "sre"]);
    let actor = app.agents.actor_token("agent:x", &app.issuer);
    let r = app
        .exchange_for_hop(
            "chat-app",
            &id_token,
            ID_TOKEN,
            LOGS,
            &[("actor_token", &actor), ("actor_token_type", JWT)],
        )
        .await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["act"]["sub"], "agent:x");
    assert_eq!(claims["act"]["iss"], app.agents.issuer.as_str());
    assert_eq!(
        app.agents.jwks_hits(),
        1,
        "agent-identity's jwks_uri came from its discovery document"
    );
}

// ---------------------------------------------------------------------------
// A misbehaving key endpoint: a tiny server whose every route would serve the
// key that signed the probe, if the broker accepted the way it is served.
// ---------------------------------------------------------------------------

/// A local JWKS server for one signing key.
struct KeyServer {
    base: String,
    key: Jwk,
}

impl KeyServer {
    async fn start(max_response_bytes: usize) -> KeyServer {
        let key = Alg::ES256.generate().unwrap();
        let mut public = key.to_public_key().unwrap();
        public.set_key_id(key.key_id().unwrap());
        public.set_algorithm("ES256");
        let jwks = json!({"keys": [Value::Object(public.as_ref().clone())]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());

        let good = jwks.to_string();
        let mut padded = jwks.clone();
        padded["padding"] = json!("x".repeat(max_response_bytes));
        let padded = padded.to_string();
        let location = format!("{base}/good");
        let jwk_set = |body: String| {
            move || {
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, "application/jwk-set+json")], body).into_response() }
            }
        };
        let router = Router::new()
            .route("/good", get(jwk_set(good)))
            .route("/oversized", get(jwk_set(padded)))
            .route(
                "/redirect",
                get(move || {
                    let location = location.clone();
                    async move { (StatusCode::FOUND, [(header::LOCATION, location)]).into_response() }
                }),
            )
            .route(
                "/not-json",
                get(|| async {
                    ([(header::CONTENT_TYPE, "text/html")], "<html>keys moved</html>").into_response() as Response
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        KeyServer { base, key }
    }

    /// An ID token for alice, signed by this server's key under corp-idp's iss.
    fn id_token(&self, app: &TestApp) -> String {
        let claims = app.idp.id_token_claims("alice", "triage-agent", &["developer", "sre"]);
        sign_jws(
            &self.key,
            json!({"alg": "ES256", "kid": self.key.key_id().unwrap(), "typ": "JWT"}),
            &claims,
        )
    }
}

const MAX_RESPONSE_BYTES: usize = 4096;

/// A broker whose corp-idp keys live at `path` on the key server, probed once.
async fn probe_keys_at(path: &str) -> Resp {
    let server = KeyServer::start(MAX_RESPONSE_BYTES).await;
    let uri = format!("{}{path}", server.base);
    let app = TestApp::spawn_with(|cfg| {
        cfg.upstream.max_response_bytes = MAX_RESPONSE_BYTES;
        cfg.issuers.get_mut("corp-idp").unwrap().jwks_uri = Some(uri);
    })
    .await;
    let r = app
        .exchange_for_hop("triage-agent", &server.id_token(&app), ID_TOKEN, LOGS, &[])
        .await;
    if r.status != 200 {
        assert_eq!(app.issued_count().await, 0);
    }
    r
}

#[tokio::test]
async fn a_well_formed_jwks_endpoint_is_accepted() {
    // The control for the refusals below: the same key, served plainly.
    probe_keys_at("/good").await.assert_ok();
}

#[tokio::test]
async fn a_jwks_endpoint_that_redirects_is_refused() {
    probe_keys_at("/redirect")
        .await
        .assert_error(503, "temporarily_unavailable");
}

#[tokio::test]
async fn a_jwks_body_over_max_response_bytes_is_refused() {
    probe_keys_at("/oversized")
        .await
        .assert_error(503, "temporarily_unavailable");
}

#[tokio::test]
async fn a_jwks_body_that_is_not_json_is_refused() {
    probe_keys_at("/not-json")
        .await
        .assert_error(503, "temporarily_unavailable");
}
