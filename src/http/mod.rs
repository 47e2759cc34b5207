//! HTTP routing: every endpoint, mounted under the issuer's path.
//!
//! Owns: the route table, body limits, and the JSON 404/405 answers.
//! Must never: contain protocol logic; handlers extract, call one function,
//! and map the result.

pub mod audit;
pub mod audit_chain;
pub mod audit_jwks;
pub mod audit_page;
pub mod dev_idp;
pub mod extract;
pub mod health;
pub mod jwks;
pub mod measure;
pub mod metadata;
pub mod metrics;
pub mod oauth;
pub mod respond;
pub mod server;
pub mod trace;

use std::sync::Arc;

pub use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::error::{ErrorCode, OAuthError};
use crate::state::AppState;

/// The issuer's path ("" or "/tenant"), under which endpoints live.
pub fn base_path(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

pub fn router(state: Arc<AppState>, base: &str) -> Router {
    let well_known = |doc: &str| {
        if base.is_empty() {
            format!("/.well-known/{doc}")
        } else {
            // RFC 8414 §3.1: path insertion after the well-known segment.
            format!("/.well-known/{doc}{base}")
        }
    };
    let mut r = Router::new()
        .route(
            &format!("{base}/token"),
            post(oauth::token).fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/introspect"),
            post(oauth::introspect).fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/revoke"),
            post(oauth::revoke).fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/admin/revoke"),
            post(oauth::admin_revoke).fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/admin/audit"),
            post(oauth::admin_audit).fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/audit/trace"),
            post(audit::trace).fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/audit/records"),
            post(audit::records).fallback(method_not_allowed),
        )
        .route(&format!("{base}/audit/ui"), get(audit::page))
        .route(
            &format!("{base}/audit/events"),
            post(audit::events).fallback(method_not_allowed),
        )
        .route(&format!("{base}/jwks"), get(jwks::jwks))
        .route(&format!("{base}/audit/jwks"), get(audit_jwks::jwks))
        .route(
            &format!("{base}/audit/chain"),
            post(audit_chain::chain).fallback(method_not_allowed),
        )
        .route(
            &format!("{base}/authorize"),
            get(metadata::authorize).post(metadata::authorize),
        )
        .route(&well_known("oauth-authorization-server"), get(metadata::metadata))
        .route(&well_known("openid-configuration"), get(metadata::metadata))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if !base.is_empty() {
        // OIDC Discovery §4 appends instead of inserting; MCP clients try both.
        r = r.route(
            &format!("{base}/.well-known/openid-configuration"),
            get(metadata::metadata),
        );
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(crate::params::MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(measure::measure))
        .layer(axum::middleware::from_fn(trace::request_span))
        .with_state(state)
}

async fn not_found() -> OAuthError {
    OAuthError::new(ErrorCode::NotFound, "http.not_found", "no such endpoint")
}

async fn method_not_allowed() -> OAuthError {
    OAuthError::invalid_request("http.method", "this endpoint does not accept that HTTP method")
}
