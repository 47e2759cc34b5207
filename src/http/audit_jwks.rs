//! `GET /audit/jwks`: the public keys that sign audit checkpoints.
//!
//! Owns: serving the checkpoint signer's public JWK Set, publicly, cached
//! for five minutes, so an auditor can fetch it without credentials.
//! Must never: serve the token signing keys here (those are `/jwks`), or a
//! private member.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let mut r = state.checkpoints.jwks_json().to_string().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}
