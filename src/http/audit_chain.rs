//! `POST /audit/chain` as an HTTP handler.
//!
//! Owns: extracting the plain `OAuthRequest`, calling `audit_chain::chain`
//! and rendering its answer (JSON, `no-store`) or its OAuth error.
//! Must never: hold the endpoint's rules (they are `crate::audit_chain`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::http::respond::json_no_store;
use crate::params::OAuthRequest;
use crate::state::AppState;

pub async fn chain(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    match crate::audit_chain::chain(&state, &req).await {
        Ok(body) => json_no_store(body),
        Err(e) => e.into_response(),
    }
}
