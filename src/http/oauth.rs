//! The client-authenticated endpoints as HTTP handlers: `/token`,
//! `/introspect`, `/revoke`, `/admin/revoke`, `/admin/audit`.
//!
//! Owns: one shape for all of them — extract the plain `OAuthRequest`, call
//! the protocol function, render its result with `respond`.
//! Must never: hold protocol logic (that is `grant`, `introspection`,
//! `revocation`, `admin`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::OAuthResult;
use crate::http::respond::{dpop_nonce_header, empty_no_store, json_no_store};
use crate::params::OAuthRequest;
use crate::state::AppState;

/// A JSON answer that must not be cached, or the OAuth error.
fn render<T: Serialize>(result: OAuthResult<T>) -> Response {
    match result {
        Ok(body) => json_no_store(body),
        Err(e) => e.into_response(),
    }
}

/// `POST /token`: every grant enters here (RFC 6749 §3.2). A DPoP nonce
/// handed out rides in `DPoP-Nonce` (RFC 9449 §8.2).
pub async fn token(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    match crate::grant::handle(&state, &req).await {
        Ok(body) => {
            let mut r = json_no_store(&body);
            dpop_nonce_header(r.headers_mut(), body.dpop_nonce.as_deref());
            r
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /introspect` (RFC 7662).
pub async fn introspect(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    render(crate::introspection::introspect(&state, &req).await)
}

/// `POST /revoke` (RFC 7009): 200 with no body whatever the token was.
pub async fn revoke(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    match crate::revocation::revoke(&state, &req).await {
        Ok(()) => empty_no_store(),
        Err(e) => e.into_response(),
    }
}

/// `POST /admin/revoke`.
pub async fn admin_revoke(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    render(crate::admin::revoke(&state, &req).await)
}

/// `POST /admin/audit`.
pub async fn admin_audit(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    render(crate::admin::audit(&state, &req).await)
}
