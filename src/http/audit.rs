//! The audit endpoints as HTTP handlers: `POST /audit/trace`,
//! `POST /audit/records`, `POST /audit/events`, and the page `GET /audit/ui`.
//!
//! Owns: extraction and rendering only, as `oauth` does for the token
//! endpoints; for the page, reading its query (its own parameters only) and
//! answering a missing or wrong credential with a Basic challenge so a
//! browser prompts for it.
//! Must never: hold audit logic (that is `audit_api` and `tool_events`), or
//! read a credential from a URL.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::http::respond::json_no_store;
use crate::params::OAuthRequest;
use crate::state::AppState;

fn render(result: crate::error::OAuthResult<serde_json::Value>) -> Response {
    match result {
        Ok(body) => json_no_store(body),
        Err(e) => e.into_response(),
    }
}

/// `POST /audit/trace`: one transaction as a tree.
pub async fn trace(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    render(crate::audit_api::trace(&state, &req).await)
}

/// `POST /audit/records`: records by user and time range, by page.
pub async fn records(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    render(crate::audit_api::records(&state, &req).await)
}

/// `POST /audit/events`: a resource server reports a tool call.
pub async fn events(State(state): State<Arc<AppState>>, req: OAuthRequest) -> Response {
    render(crate::tool_events::report(&state, &req).await)
}
