//! The token endpoint's grants, and the one path every grant takes:
//! parse `grant_type` → authenticate the client → run the grant → commit the
//! replay marks and the audit record → respond.
//!
//! Owns: that ordering, and the rule that no token leaves before its audit
//! record and replay marks are stored (fail closed, design §4).
//! Must never: hold grant-specific rules; those live in the grant modules,
//! the shared chain rules in `chain` and `policy`.

pub mod token_exchange;

use std::net::IpAddr;

use axum::Json;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::audit::{AuditRecord, Decision};
use crate::client_auth;
use crate::error::{OAuthError, OAuthResult, no_store_headers};
use crate::http::extract::{OAuthParams, user_agent};
use crate::policy::Policy;
use crate::store::{Commit, ReplayMark};
use crate::trust::validate::Validator;
use crate::types::{GrantType, ScopeSet, TokenType, now_secs};

/// What a grant produced, not yet released.
pub struct Issued {
    pub token: String,
    /// `None` for grants whose response has no `issued_token_type` (RFC 7523).
    pub issued_token_type: Option<TokenType>,
    /// `N_A` for an ID-JAG (RFC 8693 §2.2.1), `Bearer` for access tokens.
    pub token_type: &'static str,
    pub exp: i64,
    pub scope: ScopeSet,
}

/// RFC 6749 §5.1 / RFC 8693 §2.2.1 success body.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
    token_type: &'static str,
    /// A JSON number: the MCP SDKs reject a string (design §6).
    expires_in: i64,
    scope: String,
}

/// Everything a grant needs for one request.
pub struct GrantContext<'a> {
    pub state: &'a AppState,
    pub policy: &'a Policy,
    pub validator: Validator<'a>,
    pub now: i64,
}

/// Handle one token request end to end. Always answers; never panics.
pub async fn handle(state: &AppState, headers: &HeaderMap, source_ip: Option<IpAddr>, params: OAuthParams) -> Response {
    let policy = state.policy.load_full();
    let now = now_secs();
    let cx = GrantContext {
        state,
        policy: &policy,
        validator: Validator {
            policy: &policy,
            keys: &state.keys,
            jwks: &state.jwks,
            now,
        },
        now,
    };
    let mut audit = AuditRecord::begin(source_ip.map(|ip| ip.to_string()), user_agent(headers));
    let mut marks = Vec::new();
    match run(&cx, headers, &params, &mut audit, &mut marks).await {
        Ok(issued) => release(state, issued, audit, &marks, now).await,
        Err(err) => deny(state, audit, &marks, err).await,
    }
}

async fn run(
    cx: &GrantContext<'_>,
    headers: &HeaderMap,
    params: &OAuthParams,
    audit: &mut AuditRecord,
    marks: &mut Vec<ReplayMark>,
) -> OAuthResult<Issued> {
    let raw = params.require("grant_type")?;
    audit.grant = Some(raw.chars().take(128).collect());
    let grant = GrantType::parse(raw).ok_or_else(|| {
        OAuthError::new(
            crate::error::ErrorCode::UnsupportedGrantType,
            "grant.unsupported",
            "grant_type is not supported by this server",
        )
    })?;
    audit.grant = Some(grant.short().to_owned());
    let (client, _method) = client_auth::authenticate(&cx.validator, headers, params, marks).await?;
    audit.client_id = Some(client.id.clone());
    if !client.grants.contains(&grant) {
        return Err(OAuthError::unauthorized_client(
            "grant.not_allowed_for_client",
            format!("this client may not use the {} grant", grant.short()),
        ));
    }
    match grant {
        GrantType::TokenExchange => token_exchange::exchange(cx, &client, params, audit, marks).await,
        GrantType::JwtBearer => Err(OAuthError::new(
            crate::error::ErrorCode::UnsupportedGrantType,
            "grant.role_disabled",
            "this server does not redeem jwt-bearer assertions",
        )),
    }
}

/// Store marks + record, then release the token. If the store cannot be
/// written, the token is dropped and the client gets 503.
async fn release(state: &AppState, issued: Issued, mut audit: AuditRecord, marks: &[ReplayMark], now: i64) -> Response {
    audit.decision = Decision::Granted;
    audit.scope_granted = Some(issued.scope.to_string());
    audit.issued_exp = Some(issued.exp);
    audit.issued_token_type = issued.issued_token_type.map(|t| t.uri().to_owned());
    match state.store.commit(marks, audit.clone()).await {
        Ok(Commit::Done(record)) => {
            record.emit();
            let body = TokenResponse {
                access_token: &issued.token,
                issued_token_type: issued.issued_token_type.map(TokenType::uri),
                token_type: issued.token_type,
                expires_in: issued.exp - now,
                scope: issued.scope.to_string(),
            };
            let mut resp = Json(body).into_response();
            no_store_headers(resp.headers_mut());
            resp
        }
        Ok(Commit::Replayed { index }) => {
            let err = replay_error(&marks[index]);
            deny(state, audit, &[], err).await
        }
        Err(e) => OAuthError::unavailable("store.commit_failed", &e).into_response(),
    }
}

/// The error for a reused one-time value: a client assertion is client
/// authentication (`invalid_client`); an assertion grant is `invalid_grant`.
fn replay_error(mark: &ReplayMark) -> OAuthError {
    if mark.key.starts_with("client_assertion:") {
        OAuthError::invalid_client("client_assertion.replayed", "client authentication failed")
    } else {
        OAuthError::invalid_grant("assertion.replayed", "the assertion has already been used")
    }
}

/// Record a denial and answer with the error. Marks of values already seen
/// are burned too, so a refused assertion cannot be retried. A failed audit
/// write does not change the answer (nothing is issued either way); it is
/// logged.
async fn deny(state: &AppState, mut audit: AuditRecord, marks: &[ReplayMark], err: OAuthError) -> Response {
    audit.deny(&err);
    let mut outcome = state.store.commit(marks, audit.clone()).await;
    if let Ok(Commit::Replayed { .. }) = outcome {
        outcome = state.store.commit(&[], audit).await;
    }
    match outcome {
        Ok(Commit::Done(record)) => record.emit(),
        Ok(Commit::Replayed { .. }) => {}
        Err(e) => tracing::error!(error = %e, reason = err.reason, "audit record of a denial could not be written"),
    }
    err.into_response()
}
