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

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;

use crate::audit_api::PAGE_PARAMS;
use crate::error::{ErrorCode, OAuthError};
use crate::http::audit_page;
use crate::http::extract::caller_and_authorization;
use crate::http::respond::{json_no_store, no_store_headers};
use crate::params::{OAuthParams, OAuthRequest};
use crate::state::AppState;

/// Longest page query read: its parameters are a txn, a user, two times and
/// a cursor.
const MAX_PAGE_QUERY: usize = 4096;

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

/// `GET /audit/ui`: the auditor's page, drawn from the data `audit_api::page`
/// gives for its query, or its error. Authenticated by the `Authorization`
/// header only: the query's own parameters are the only ones read, so a
/// `client_secret` in a URL (which ends up in histories and proxy logs) is
/// never a credential.
pub async fn page(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (caller, authorization) = caller_and_authorization(&req);
    let result = match page_params(req.uri().query().unwrap_or("")) {
        Ok(params) => {
            let request = OAuthRequest {
                caller,
                authorization,
                dpop: Default::default(),
                params,
            };
            crate::audit_api::page(&state, &request).await
        }
        Err(e) => Err(e),
    };
    let (status, data, challenge) = match result {
        Ok(data) => (StatusCode::OK, data, false),
        Err(e) => (
            StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"view": "error", "error": e.code.as_str(), "error_description": e.description}),
            e.code == ErrorCode::InvalidClient,
        ),
    };
    let nonce = nonce();
    let mut response = (status, Html(audit_page::render(&data, &nonce))).into_response();
    let h = response.headers_mut();
    no_store_headers(h);
    if let Ok(csp) = HeaderValue::from_str(&audit_page::content_security_policy(&nonce)) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if challenge {
        // A browser prompts for the audit client's id and secret.
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="xaa-broker audit", charset="UTF-8""#),
        );
    }
    if matches!(status.as_u16(), 429 | 503) {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The page's own parameters from its query string, bounded like a form.
fn page_params(query: &str) -> Result<OAuthParams, OAuthError> {
    if query.len() > MAX_PAGE_QUERY {
        return Err(OAuthError::invalid_request(
            "audit.page_query_too_long",
            format!("the page's query must be at most {MAX_PAGE_QUERY} bytes"),
        ));
    }
    let own: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| PAGE_PARAMS.contains(&k.as_ref())))
        .finish();
    OAuthParams::parse(own.as_bytes())
}

/// 128 random bits for the page's Content-Security-Policy nonce.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        // Never a fixed nonce: an all-zero one would still only admit the
        // page's own script, but a fresh UUIDv7's random bits are better.
        bytes.copy_from_slice(uuid::Uuid::now_v7().as_bytes());
    }
    B64.encode(bytes)
}
