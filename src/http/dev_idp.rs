//! The built-in development IdP of the embedded default: its own issuer under
//! `/dev/idp`, an ephemeral key, a JWKS, and endpoints that mint ID tokens
//! for demo users and actor tokens for demo agents.
//!
//! Owns: nothing the production path depends on. It exists only in dev mode
//! (no config file, or `--dev`) and every response says so.
//! Must never: be mounted when a config file is served.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::error::{OAuthError, OAuthResult};
use crate::jose::Alg;
use crate::keys::KeyRing;
use crate::params::OAuthParams;
use crate::types::now_secs;

/// Demo users and their IdP groups (which the demo policy maps to roles).
pub const USERS: &[(&str, &str, &[&str])] = &[
    ("alice", "alice@example.com", &["developer", "sre"]),
    ("bob", "bob@example.com", &["developer"]),
    ("carol", "carol@example.com", &[]),
];

pub struct DevIdp {
    pub issuer: String,
    broker_issuer: String,
    keys: KeyRing,
}

impl DevIdp {
    pub fn new(broker_issuer: &str) -> anyhow::Result<Self> {
        Ok(Self {
            issuer: format!("{broker_issuer}/dev/idp"),
            broker_issuer: broker_issuer.to_owned(),
            keys: KeyRing::ephemeral(Alg::ES256)?,
        })
    }

    pub fn jwks(&self) -> serde_json::Value {
        serde_json::from_str(&self.keys.jwks_json()).unwrap_or_default()
    }

    /// An OIDC ID token for `user`, audience `client_id`.
    pub fn id_token(&self, user: &str, client_id: &str) -> OAuthResult<String> {
        let (sub, email, groups) = USERS.iter().find(|(u, _, _)| *u == user).ok_or_else(|| {
            OAuthError::invalid_request("dev_idp.unknown_user", "unknown demo user (alice, bob, carol)")
        })?;
        let now = now_secs();
        #[derive(Serialize)]
        struct IdToken<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            iat: i64,
            exp: i64,
            auth_time: i64,
            amr: [&'a str; 1],
            email: &'a str,
            groups: &'a [&'a str],
            jti: String,
        }
        self.keys
            .sign(
                "JWT",
                &IdToken {
                    iss: &self.issuer,
                    sub,
                    aud: client_id,
                    iat: now,
                    exp: now + 3600,
                    auth_time: now,
                    amr: ["pwd"],
                    email,
                    groups,
                    jti: uuid::Uuid::now_v7().to_string(),
                },
            )
            .map_err(|e| OAuthError::internal("dev_idp.sign", &e))
    }

    /// An actor token naming `agent`, addressed to the broker.
    pub fn actor_token(&self, agent: &str) -> OAuthResult<String> {
        let now = now_secs();
        self.keys
            .sign(
                "JWT",
                &serde_json::json!({
                    "iss": self.issuer, "sub": agent, "aud": self.broker_issuer,
                    "iat": now, "exp": now + 600, "jti": uuid::Uuid::now_v7().to_string(),
                }),
            )
            .map_err(|e| OAuthError::internal("dev_idp.sign", &e))
    }
}

fn dev_json(v: serde_json::Value) -> Response {
    let mut r = Json(v).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert("x-xaa-dev-mode", HeaderValue::from_static("true"));
    r
}

pub fn router(idp: Arc<DevIdp>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/id-token", post(id_token))
        .route("/actor-token", post(actor_token))
        .method_not_allowed_fallback(|| async {
            OAuthError::invalid_request("http.method", "this endpoint does not accept that HTTP method")
        })
        .with_state(idp)
}

async fn discovery(State(idp): State<Arc<DevIdp>>) -> Response {
    dev_json(serde_json::json!({
        "issuer": idp.issuer,
        "jwks_uri": format!("{}/jwks", idp.issuer),
        "id_token_signing_alg_values_supported": ["ES256"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
    }))
}

async fn jwks(State(idp): State<Arc<DevIdp>>) -> Response {
    dev_json(idp.jwks())
}

async fn id_token(State(idp): State<Arc<DevIdp>>, params: OAuthParams) -> Result<Response, OAuthError> {
    let token = idp.id_token(params.require("user")?, params.require("client_id")?)?;
    Ok(dev_json(
        serde_json::json!({ "id_token": token, "token_type": "N_A", "expires_in": 3600, "dev_mode": true }),
    ))
}

async fn actor_token(State(idp): State<Arc<DevIdp>>, params: OAuthParams) -> Result<Response, OAuthError> {
    let token = idp.actor_token(params.require("agent")?)?;
    Ok(dev_json(
        serde_json::json!({ "actor_token": token, "expires_in": 600, "dev_mode": true }),
    ))
}
