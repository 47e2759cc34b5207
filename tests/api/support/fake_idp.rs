//! A real upstream issuer for tests: an HTTP server on 127.0.0.1 with real
//! keys, a JWKS endpoint, OIDC discovery, key rotation, an outage switch and a
//! counter of JWKS fetches. Tokens it signs are real JWS.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use josekit::jwk::Jwk;
use serde_json::{Value, json};
use xaa_broker::jose::Alg;
use xaa_broker::types::now_secs;

struct Inner {
    issuer: String,
    /// Private keys; the last one signs.
    keys: Mutex<Vec<Jwk>>,
    jwks_hits: AtomicUsize,
    down: AtomicBool,
}

#[derive(Clone)]
pub struct FakeIdp {
    pub issuer: String,
    inner: Arc<Inner>,
}

impl FakeIdp {
    pub async fn start() -> FakeIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Inner {
            issuer: issuer.clone(),
            keys: Mutex::new(vec![Alg::ES256.generate().unwrap()]),
            jwks_hits: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIdp { issuer, inner }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// How many times the broker fetched our JWKS.
    pub fn jwks_hits(&self) -> usize {
        self.inner.jwks_hits.load(Ordering::SeqCst)
    }

    /// While down, every endpoint answers 503.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// A new key signs from now on. `keep_old`: the old one stays published.
    pub fn rotate(&self, keep_old: bool) {
        let mut keys = self.inner.keys.lock().unwrap();
        if !keep_old {
            keys.clear();
        }
        keys.push(Alg::ES256.generate().unwrap());
    }

    /// New key material under every published `kid` (an IdP that re-keys
    /// without renaming): what it signed before no longer verifies.
    pub fn rekey_keeping_kids(&self) {
        let mut keys = self.inner.keys.lock().unwrap();
        for key in keys.iter_mut() {
            let mut fresh = Alg::ES256.generate().unwrap();
            fresh.set_key_id(key.key_id().unwrap());
            *key = fresh;
        }
    }

    /// The JWK Set it publishes at `/jwks` (to pin it inline in a config).
    pub fn public_jwks(&self) -> Value {
        public_set(&self.inner)
    }

    pub fn active_kid(&self) -> String {
        self.inner
            .keys
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .key_id()
            .unwrap()
            .to_owned()
    }

    /// Sign `claims` with the active key under an explicit header.
    pub fn sign_with_header(&self, header: Value, claims: &Value) -> String {
        let key = self.inner.keys.lock().unwrap().last().unwrap().clone();
        sign_jws(&key, header, claims)
    }

    /// Sign with the active key: `alg` ES256, its `kid`, and `typ` if given.
    pub fn sign(&self, typ: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": "ES256", "kid": self.active_kid()});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        self.sign_with_header(header, claims)
    }

    /// The claims of a good ID token for `sub`, audience `client_id`.
    pub fn id_token_claims(&self, sub: &str, client_id: &str, groups: &[&str]) -> Value {
        let now = now_secs();
        json!({
            "iss": self.issuer, "sub": sub, "aud": client_id, "iat": now, "exp": now + 600,
            "auth_time": now - 5, "amr": ["pwd", "mfa"], "email": format!("{sub}@example.com"),
            "groups": groups, "jti": uuid::Uuid::now_v7().to_string(),
        })
    }

    pub fn id_token(&self, sub: &str, client_id: &str, groups: &[&str]) -> String {
        self.sign(Some("JWT"), &self.id_token_claims(sub, client_id, groups))
    }

    /// An actor token naming `agent`, addressed to `broker_issuer`.
    pub fn actor_token(&self, agent: &str, broker_issuer: &str) -> String {
        let now = now_secs();
        self.sign(
            None,
            &json!({"iss": self.issuer, "sub": agent, "aud": broker_issuer, "iat": now, "exp": now + 300, "jti": uuid::Uuid::now_v7().to_string()}),
        )
    }
}

/// Sign a compact JWS with any header (tests forge headers on purpose).
pub fn sign_jws(key: &Jwk, header: Value, claims: &Value) -> String {
    let alg = Alg::parse(key.algorithm().unwrap_or("ES256")).unwrap();
    let signer = alg.signer(key).unwrap();
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(&header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(sig))
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    inner.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if inner.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(public_set(&inner)).into_response()
}

fn public_set(inner: &Inner) -> Value {
    let keys: Vec<Value> = inner
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|k| {
            let mut p = k.to_public_key().unwrap();
            p.set_key_id(k.key_id().unwrap());
            p.set_algorithm("ES256");
            Value::Object(p.as_ref().clone())
        })
        .collect();
    json!({ "keys": keys })
}

async fn discovery(State(inner): State<Arc<Inner>>) -> Response {
    if inner.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(json!({"issuer": inner.issuer, "jwks_uri": format!("{}/jwks", inner.issuer)})).into_response()
}
