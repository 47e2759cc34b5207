//! axum integration (feature `axum`): the access-token extractor (Bearer and
//! DPoP), the RFC 6750 / RFC 9449 / RFC 9728 challenges, and the protected
//! resource metadata route.
//!
//! Owns: reading `Authorization: Bearer` (RFC 6750 §2.1) or `Authorization:
//! DPoP` with the `DPoP` proof headers (RFC 9449 §7.1), bounded, the
//! request's method and public target URI for the proof, and the caller's
//! `traceparent`; answering 401 with two challenges, `WWW-Authenticate:
//! Bearer resource_metadata="…"` (RFC 9728 §5.1, as MCP authorization
//! requires) first, then `WWW-Authenticate: DPoP algs="…",
//! resource_metadata="…"` (RFC 9449 §7.1–7.2: both schemes are accepted),
//! the `error` in the challenge of the scheme it concerns (`invalid_token`,
//! RFC 6750 §3.1; `invalid_dpop_proof`, RFC 9449 §7.1); 403
//! `insufficient_scope` naming the scope; 503 when the broker's keys or the
//! replay check cannot be had; and serving the RFC 9728 document.
//! Must never: decide policy (that is `validator`, `dpop` and
//! `tool_policy`), echo the token or the proof, read a token from the query
//! or the body (RFC 6750 §2.2, §2.3 are not offered: URLs end up in logs),
//! or build a proof's expected URI from the request's `Host` (a proof made
//! for another server would then pass here): the public URL is configured.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::bearer::BearerToken;
use crate::dpop::DpopRequest;
use crate::endpoint::{self, EndpointError};
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
    /// What the server's root is to its clients: a DPoP proof's `htu` is this
    /// plus the request's path.
    public_base_url: String,
    /// The `algs` of the `DPoP` challenge, space-separated.
    dpop_algs: String,
}

impl ProtectedResource {
    /// `metadata.resource` should be the validator's resource. The
    /// challenge's `resource_metadata` is the document's well-known URL
    /// unless [`ProtectedResource::with_metadata_url`] says otherwise; the
    /// public URL of the server's root (what DPoP proofs' `htu` is checked
    /// against) is the resource identifier's origin unless
    /// [`ProtectedResource::with_public_base_url`] says otherwise.
    pub fn new(validator: TokenValidator, metadata: ResourceMetadata) -> Result<Self, EndpointError> {
        let metadata_url = metadata.well_known_url()?;
        let mut origin = endpoint::checked(&metadata.resource, "resource")?;
        origin.set_path("");
        origin.set_query(None);
        let dpop_algs = validator
            .dpop_algorithms()
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            validator,
            metadata,
            metadata_url,
            public_base_url: origin.as_str().trim_end_matches('/').to_owned(),
            dpop_algs,
        })
    }

    /// The URL clients reach this server's root at, when that is not the
    /// resource identifier's origin (a proxy adding a path prefix, another
    /// host). A DPoP proof's `htu` must be this plus the request's path
    /// (RFC 9449 §4.3 check 9); it is configured, never read from the
    /// request's `Host`.
    pub fn with_public_base_url(mut self, url: &str) -> Result<Self, EndpointError> {
        let u = endpoint::checked(url, "public_base_url")?;
        if u.query().is_some() {
            return Err(EndpointError::Unclean {
                what: "public_base_url",
            });
        }
        self.public_base_url = u.as_str().trim_end_matches('/').to_owned();
        Ok(self)
    }

    /// The target URI a proof for a request to `path` must name.
    fn target_uri(&self, path: &str) -> String {
        format!("{}{path}", self.public_base_url)
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
        let mut doc = self.metadata.to_json();
        // RFC 9728 §2: the proof algorithms this resource verifies.
        let algs: Vec<&str> = self.validator.dpop_algorithms().iter().map(|a| a.name()).collect();
        doc["dpop_signing_alg_values_supported"] = json!(algs);
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

    /// 401: no usable token. Without `error`, the challenges only point at
    /// the metadata (RFC 6750 §3.1: no error code when no token was sent);
    /// with one, it is in the challenge of the scheme it concerns (a DPoP
    /// refusal in the `DPoP` challenge, any other in the `Bearer` one).
    pub fn unauthorized(&self, error: Option<&ValidationError>) -> Response {
        let problem = error.map(|e| Problem::Invalid {
            scheme: if e.is_dpop() { Scheme::Dpop } else { Scheme::Bearer },
            error: e.clone(),
        });
        AuthRejection::new(self, problem).into_response()
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

/// A request whose access token the broker issued for this resource: an
/// unbound token as `Bearer`, or a DPoP-bound one as `DPoP` with a valid
/// proof by its key (then `principal.key_binding` names the key).
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
        let (scheme, token) = match credentials(&parts.headers) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(AuthRejection::new(&resource, None)),
            Err(p) => return Err(AuthRejection::new(&resource, Some(p))),
        };
        let trace = incoming_trace(&parts.headers).unwrap_or_else(TraceParent::new_root);
        let validated = match scheme {
            Scheme::Bearer => resource.validator.validate_in_trace(token, Some(&trace)).await,
            Scheme::Dpop => {
                // Two are enough to know there are several (RFC 9449 §4.3).
                let proofs: Vec<&str> = parts
                    .headers
                    .get_all(DPOP)
                    .iter()
                    .take(2)
                    .map(|v| v.to_str().unwrap_or(""))
                    .collect();
                // The path the client addressed, before any `nest` took its
                // prefix.
                let path = parts
                    .extensions
                    .get::<OriginalUri>()
                    .map_or_else(|| parts.uri.path(), |o| o.0.path());
                let uri = resource.target_uri(path);
                let request = DpopRequest {
                    proofs: &proofs,
                    method: parts.method.as_str(),
                    uri: &uri,
                };
                resource.validator.validate_dpop(token, &request, Some(&trace)).await
            }
        };
        match validated {
            Ok(principal) => Ok(Authenticated {
                principal,
                token: BearerToken::new(token),
            }),
            Err(error) => {
                tracing::info!(
                    reason = error.reason(),
                    scheme = scheme.name(),
                    trace_id = %trace.trace_id(),
                    "access token refused"
                );
                Err(AuthRejection::new(&resource, Some(Problem::Invalid { scheme, error })))
            }
        }
    }
}

/// The caller's `traceparent`, if well formed.
pub fn incoming_trace(headers: &HeaderMap) -> Option<TraceParent> {
    let v = headers.get(TraceParent::HEADER)?.to_str().ok()?;
    TraceParent::parse(v).ok()
}

/// The request header carrying a DPoP proof (RFC 9449 §4.1).
const DPOP: &str = "dpop";

/// The authentication scheme a token was presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// RFC 6750 §2.1.
    Bearer,
    /// RFC 9449 §7.1.
    Dpop,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::Dpop => "DPoP",
        }
    }
}

#[derive(Debug, Clone)]
enum Problem {
    /// The `Authorization` header is not one bounded `Bearer` or `DPoP`
    /// credential.
    Header(&'static str),
    Invalid {
        scheme: Scheme,
        error: ValidationError,
    },
}

/// The access token of a request and its scheme: `None` when no
/// `Authorization` header was sent (or another scheme was: it is not for
/// us).
fn credentials(headers: &HeaderMap) -> Result<Option<(Scheme, &str)>, Problem> {
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
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Ok(None);
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(Problem::Header("the access token is empty"));
    }
    Ok(Some((scheme, token)))
}

/// Why [`Authenticated`] refused: a 401 challenge, or a 503 when the check
/// could not be made.
#[derive(Debug)]
pub struct AuthRejection {
    problem: Option<Problem>,
    metadata_url: String,
    dpop_algs: String,
}

impl AuthRejection {
    fn new(resource: &ProtectedResource, problem: Option<Problem>) -> Self {
        Self {
            problem,
            metadata_url: resource.metadata_url.clone(),
            dpop_algs: resource.dpop_algs.clone(),
        }
    }

    /// The validation error, when a token was presented and refused.
    pub fn validation_error(&self) -> Option<&ValidationError> {
        match &self.problem {
            Some(Problem::Invalid { error, .. }) => Some(error),
            _ => None,
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let meta = quoted(&self.metadata_url);
        let algs = quoted(&self.dpop_algs);
        // RFC 9449 §7.1–7.2: both schemes are offered, Bearer first (the
        // challenge MCP clients read), each its own header field.
        let bearer = format!("Bearer resource_metadata=\"{meta}\"");
        let dpop = format!("DPoP algs=\"{algs}\", resource_metadata=\"{meta}\"");
        let (code, description, dpop_scheme) = match &self.problem {
            None => {
                return with_challenges(
                    StatusCode::UNAUTHORIZED,
                    &[bearer, dpop],
                    json!({"error": "unauthorized", "error_description": "a bearer token is required"}),
                );
            }
            Some(Problem::Invalid { error, .. }) if error.is_unavailable() => {
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
            // A token presented with DPoP, or a refusal about DPoP itself (a
            // bound token as Bearer): answered in the DPoP challenge
            // (RFC 9449 §7.1); any other in the Bearer one (RFC 6750 §3.1).
            Some(Problem::Invalid { scheme, error }) => (
                error.error_code(),
                error.to_string(),
                *scheme == Scheme::Dpop || error.is_dpop(),
            ),
            Some(Problem::Header(what)) => ("invalid_token", (*what).to_owned(), false),
        };
        let error = format!("error=\"{code}\", error_description=\"{}\"", quoted(&description));
        let challenges = if dpop_scheme {
            [
                bearer,
                format!("DPoP {error}, algs=\"{algs}\", resource_metadata=\"{meta}\""),
            ]
        } else {
            [format!("Bearer {error}, resource_metadata=\"{meta}\""), dpop]
        };
        with_challenges(
            StatusCode::UNAUTHORIZED,
            &challenges,
            json!({"error": code, "error_description": description}),
        )
    }
}

fn with_challenge(status: StatusCode, challenge: &str, body: serde_json::Value) -> Response {
    with_challenges(status, &[challenge.to_owned()], body)
}

/// A response with one `WWW-Authenticate` field per challenge, in order
/// (RFC 9110 §11.6.1).
fn with_challenges(status: StatusCode, challenges: &[String], body: serde_json::Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    let h = r.headers_mut();
    for challenge in challenges {
        if let Ok(v) = HeaderValue::from_str(challenge) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
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
    fn the_token_comes_from_the_authorization_header_only_as_bearer_or_dpop() {
        let read = |pairs: &[(&str, &str)]| credentials(&headers(pairs)).map(|c| c.map(|(s, t)| (s, t.to_owned())));
        let ok = |s: Scheme| Some((s, "abc".to_owned()));
        assert_eq!(read(&[("authorization", "Bearer abc")]).unwrap(), ok(Scheme::Bearer));
        assert_eq!(read(&[("authorization", "bearer abc")]).unwrap(), ok(Scheme::Bearer));
        assert_eq!(read(&[("authorization", "DPoP abc")]).unwrap(), ok(Scheme::Dpop));
        assert_eq!(read(&[("authorization", "dpop abc")]).unwrap(), ok(Scheme::Dpop));
        assert_eq!(read(&[("authorization", "Basic abc")]).unwrap(), None);
        assert_eq!(read(&[]).unwrap(), None);
        assert!(read(&[("authorization", "Bearer ")]).is_err());
        assert!(read(&[("authorization", "DPoP ")]).is_err());
        assert!(read(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]).is_err());
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 100));
        assert!(read(&[("authorization", &huge)]).is_err());
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
