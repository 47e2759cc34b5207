//! axum integration (feature `axum`): the bearer-token extractor, the
//! RFC 6750 / RFC 9728 challenges, and the protected resource metadata
//! route.
//!
//! Owns: reading `Authorization: Bearer` (RFC 6750 §2.1, bounded) and the
//! caller's `traceparent`; answering 401 with `WWW-Authenticate: Bearer
//! resource_metadata="…"` (RFC 9728 §5.1, as MCP authorization requires),
//! plus `error="invalid_token"` when a token was presented (RFC 6750 §3.1);
//! 403 `insufficient_scope` naming the scope; 503 when the broker's keys
//! cannot be had; and serving the RFC 9728 document.
//! Must never: decide policy (that is `validator` and `tool_policy`), echo
//! the token, or read a token from the query or the body (RFC 6750 §2.2,
//! §2.3 are not offered: URLs end up in logs).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::bearer::BearerToken;
use crate::endpoint::EndpointError;
use crate::jws::MAX_TOKEN_BYTES;
use crate::principal::Principal;
use crate::resource_metadata::ResourceMetadata;
use crate::tool_policy::Refusal;
use crate::traceparent::TraceParent;
use crate::validator::{TokenValidator, ValidationError};

/// One protected resource: its validator and its metadata. Put an
/// `Arc<ProtectedResource>` in the router's state (directly, or through
/// `FromRef`) and take [`Authenticated`] in handlers.
#[derive(Debug)]
pub struct ProtectedResource {
    validator: TokenValidator,
    metadata: ResourceMetadata,
    metadata_url: String,
}

impl ProtectedResource {
    /// `metadata.resource` should be the validator's resource. The
    /// challenge's `resource_metadata` is the document's well-known URL
    /// unless [`ProtectedResource::with_metadata_url`] says otherwise.
    pub fn new(validator: TokenValidator, metadata: ResourceMetadata) -> Result<Self, EndpointError> {
        let metadata_url = metadata.well_known_url()?;
        Ok(Self {
            validator,
            metadata,
            metadata_url,
        })
    }

    /// Where clients reach the metadata document when that is not under the
    /// resource identifier's host (a proxy, a local test).
    pub fn with_metadata_url(mut self, url: impl Into<String>) -> Self {
        self.metadata_url = url.into();
        self
    }

    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    pub fn validator(&self) -> &TokenValidator {
        &self.validator
    }

    /// A router serving `GET {well-known path}` (RFC 9728 §3); merge it
    /// into the application's router.
    pub fn metadata_router<S: Clone + Send + Sync + 'static>(
        self: &Arc<Self>,
    ) -> Result<axum::Router<S>, EndpointError> {
        let path = self.metadata.well_known_path()?;
        let doc = self.metadata.to_json();
        Ok(axum::Router::new().route(
            &path,
            axum::routing::get(move || {
                let doc = doc.clone();
                async move {
                    let mut r = axum::Json(doc).into_response();
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
                    r
                }
            }),
        ))
    }

    /// 401: no usable token. Without `error`, the challenge only points at
    /// the metadata (RFC 6750 §3.1: no error code when no token was sent).
    pub fn unauthorized(&self, error: Option<&ValidationError>) -> Response {
        AuthRejection::new(self, error.map(|e| Problem::Invalid(e.clone()))).into_response()
    }

    /// 403 `insufficient_scope` naming `scope` (RFC 6750 §3.1), the answer to
    /// [`Refusal::MissingScope`].
    pub fn insufficient_scope(&self, scope: &str) -> Response {
        let challenge = format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
            quoted(scope),
            quoted(&self.metadata_url)
        );
        with_challenge(
            StatusCode::FORBIDDEN,
            &challenge,
            json!({"error": "insufficient_scope", "scope": scope}),
        )
    }

    /// 403 for a tool-policy refusal: `insufficient_scope` with the scope when
    /// one would help; otherwise (an agent in the chain, an unknown tool) a
    /// plain 403 naming the rule, without a challenge: no new token would
    /// change the answer.
    pub fn refuse(&self, refusal: &Refusal) -> Response {
        if let Some(scope) = refusal.missing_scope() {
            return self.insufficient_scope(scope);
        }
        let mut r = (
            StatusCode::FORBIDDEN,
            axum::Json(
                json!({"error": "access_denied", "rule": refusal.rule(), "error_description": refusal.to_string()}),
            ),
        )
            .into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// A request whose bearer token the broker issued for this resource.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// What the token says, inside the request's trace (its `traceparent`,
    /// or a fresh trace when none came).
    pub principal: Principal,
    /// The token itself, for [`HopTokens`](crate::HopTokens) and
    /// [`AuditReporter`](crate::AuditReporter).
    pub token: BearerToken,
}

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<ProtectedResource>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let resource = Arc::<ProtectedResource>::from_ref(state);
        let token = match bearer(&parts.headers) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(AuthRejection::new(&resource, None)),
            Err(p) => return Err(AuthRejection::new(&resource, Some(p))),
        };
        let trace = incoming_trace(&parts.headers).unwrap_or_else(TraceParent::new_root);
        match resource.validator.validate_in_trace(token, Some(&trace)).await {
            Ok(principal) => Ok(Authenticated {
                principal,
                token: BearerToken::new(token),
            }),
            Err(e) => {
                tracing::info!(reason = e.reason(), trace_id = %trace.trace_id(), "bearer token refused");
                Err(AuthRejection::new(&resource, Some(Problem::Invalid(e))))
            }
        }
    }
}

/// The caller's `traceparent`, if well formed.
pub fn incoming_trace(headers: &HeaderMap) -> Option<TraceParent> {
    let v = headers.get(TraceParent::HEADER)?.to_str().ok()?;
    TraceParent::parse(v).ok()
}

#[derive(Debug, Clone)]
enum Problem {
    /// The `Authorization` header is not one bounded `Bearer` credential.
    Header(&'static str),
    Invalid(ValidationError),
}

/// The bearer token of a request: `None` when no `Authorization` header
/// was sent (or another scheme was: it is not for us).
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Problem::Header("more than one Authorization header"));
    }
    // "Bearer " + a token the validator would refuse anyway when longer.
    if value.len() > MAX_TOKEN_BYTES + 16 {
        return Err(Problem::Header("the Authorization header is too large"));
    }
    let value = value
        .to_str()
        .map_err(|_| Problem::Header("the Authorization header is not ASCII"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Problem::Header("the bearer token is empty"));
    }
    Ok(Some(token))
}

/// Why [`Authenticated`] refused: a 401 challenge, or a 503 when the check
/// could not be made.
#[derive(Debug)]
pub struct AuthRejection {
    problem: Option<Problem>,
    metadata_url: String,
}

impl AuthRejection {
    fn new(resource: &ProtectedResource, problem: Option<Problem>) -> Self {
        Self {
            problem,
            metadata_url: resource.metadata_url.clone(),
        }
    }

    /// The validation error, when a token was presented and refused.
    pub fn validation_error(&self) -> Option<&ValidationError> {
        match &self.problem {
            Some(Problem::Invalid(e)) => Some(e),
            _ => None,
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let meta = quoted(&self.metadata_url);
        let description = match &self.problem {
            None => {
                return with_challenge(
                    StatusCode::UNAUTHORIZED,
                    &format!("Bearer resource_metadata=\"{meta}\""),
                    json!({"error": "unauthorized", "error_description": "a bearer token is required"}),
                );
            }
            Some(Problem::Invalid(e)) if e.is_unavailable() => {
                let mut r = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"error": "temporarily_unavailable", "error_description": "the token cannot be checked now"})),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return r;
            }
            Some(Problem::Invalid(e)) => e.to_string(),
            Some(Problem::Header(what)) => (*what).to_owned(),
        };
        with_challenge(
            StatusCode::UNAUTHORIZED,
            &format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{meta}\"",
                quoted(&description)
            ),
            json!({"error": "invalid_token", "error_description": description}),
        )
    }
}

fn with_challenge(status: StatusCode, challenge: &str, body: serde_json::Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(challenge) {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Text safe inside an RFC 9110 §5.6.4 quoted-string of a header: visible
/// ASCII and spaces, without `"` or `\`.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_bearer_token_comes_from_the_authorization_header_only() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])).unwrap(),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer abc")])).unwrap(),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])).unwrap(), None);
        assert_eq!(bearer(&headers(&[])).unwrap(), None);
        assert!(bearer(&headers(&[("authorization", "Bearer ")])).is_err());
        assert!(
            bearer(&headers(&[
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b")
            ]))
            .is_err()
        );
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 100));
        assert!(bearer(&headers(&[("authorization", &huge)])).is_err());
    }

    #[test]
    fn a_quoted_string_cannot_be_broken_out_of() {
        assert_eq!(quoted("a\"b\\c\nd§"), "abcd");
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(incoming_trace(&headers(&[("traceparent", good)])).is_some());
        assert!(incoming_trace(&headers(&[("traceparent", "garbage")])).is_none());
    }
}
