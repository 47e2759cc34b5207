//! RFC 8414 authorization server metadata (also served as OpenID discovery),
//! and the authorization endpoint that exists only so clients accept us.
//!
//! Owns: the metadata document. MCP SDKs refuse metadata without
//! `authorization_endpoint`, `response_types_supported` and
//! `code_challenge_methods_supported` (specs/decisions.md §7).
//! Must never: list trusted issuers or client ids (ID-JAG §7.2: advertising
//! a profile says "I implement the rules", not "I trust X").

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{ErrorCode, OAuthError};
use crate::jose::Alg;
use crate::policy::Policy;
use crate::state::AppState;
use crate::types::{GRANT_PROFILE_ID_JAG, GrantType, TokenType};

pub fn document(policy: &Policy, keys_alg: Alg) -> serde_json::Value {
    let issuer = &policy.issuer;
    let offers = |g: GrantType| policy.clients.values().any(|c| c.grants.contains(&g));
    let (exchange, resource_as) = (offers(GrantType::TokenExchange), offers(GrantType::JwtBearer));
    let mut grants = Vec::new();
    if exchange {
        grants.push(GrantType::TokenExchange.uri());
    }
    if resource_as {
        grants.push(GrantType::JwtBearer.uri());
        grants.push(GrantType::JwtDpop.uri());
    }
    let auth_methods = ["client_secret_basic", "client_secret_post", "private_key_jwt"];
    let mut scopes: Vec<&str> = policy
        .audiences
        .values()
        .flat_map(|a| a.scopes.keys().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let mut doc = json!({
        "issuer": issuer,
        "token_endpoint": policy.token_endpoint,
        "jwks_uri": format!("{issuer}/jwks"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "response_types_supported": ["code"],
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": Alg::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
        // RFC 9449 §5.1: the algorithms a DPoP proof may use (asymmetric only).
        "dpop_signing_alg_values_supported": Alg::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "id_token_signing_alg_values_supported": [keys_alg.name()],
        "subject_types_supported": ["public"],
        "introspection_endpoint": format!("{issuer}/introspect"),
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint": format!("{issuer}/revoke"),
        "revocation_endpoint_auth_methods_supported": auth_methods,
    });
    if exchange {
        doc["identity_chaining_requested_token_types_supported"] =
            json!([TokenType::IdJag.uri(), TokenType::AccessToken.uri()]);
    }
    if resource_as {
        // ID-JAG §7.2: "I implement the ID-JAG rules" — never which IdPs we trust.
        doc["authorization_grant_profiles_supported"] = json!([GRANT_PROFILE_ID_JAG]);
    }
    doc
}

pub async fn metadata(State(state): State<Arc<AppState>>) -> Response {
    let policy = state.policy.load();
    let mut r = Json(document(&policy, state.keys.alg())).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

/// Cross-App Access forbids sending the user to the resource AS's
/// authorization endpoint (MCP EMA); this one exists for metadata validity
/// and says so.
pub async fn authorize() -> OAuthError {
    OAuthError::new(
        ErrorCode::UnsupportedResponseType,
        "authorize.not_supported",
        "this server issues tokens only at the token endpoint (token exchange / jwt-bearer); there is no interactive authorization",
    )
}
