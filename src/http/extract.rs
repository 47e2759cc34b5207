//! Request extraction for OAuth endpoints.
//!
//! Owns: reading the form body (`crate::params::OAuthParams`, whose parse is
//! RFC 6749's) as an axum extractor, with the body size limit, and the
//! caller facts the audit record keeps.
//! Must never: answer with axum's 415/422 plain-text rejections: every
//! failure here is a 400 `invalid_request` JSON body.

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{HeaderMap, header};

use crate::error::OAuthError;
use crate::params::{Caller, DpopHeader, MAX_FORM_BYTES, OAuthParams, OAuthRequest};

impl<S: Send + Sync> FromRequest<S> for OAuthParams {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::invalid_request(
                "request.content_type",
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            OAuthError::invalid_request(
                "request.body",
                format!("the request body was cut short, not sent in time, or exceeds {MAX_FORM_BYTES} bytes"),
            )
        })?;
        Self::parse(&body)
    }
}

/// A client-authenticated endpoint's request in plain types: the caller's
/// address and user agent, the `Authorization` header (undecodable bytes are
/// replaced, so a malformed header still fails Basic decoding as one), and
/// the form.
impl<S: Send + Sync> FromRequest<S> for OAuthRequest {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (caller, authorization) = caller_and_authorization(&req);
        let dpop = dpop_header(req.headers());
        let params = OAuthParams::from_request(req, state).await?;
        Ok(OAuthRequest {
            caller,
            authorization,
            dpop,
            params,
        })
    }
}

/// The caller (peer address, user agent) and the `Authorization` header of a
/// request: undecodable bytes are replaced, so a malformed header still
/// fails Basic decoding as one.
pub fn caller_and_authorization(req: &Request) -> (Caller, Option<String>) {
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let headers = req.headers();
    let caller = Caller {
        source,
        user_agent: user_agent(headers).map(str::to_owned),
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    (caller, authorization)
}

/// The `DPoP` header(s) of a request (RFC 9449 §4.1), counted: more than one
/// is refused by the proof checks, never resolved by picking one.
fn dpop_header(headers: &HeaderMap) -> DpopHeader {
    let mut all = headers.get_all("dpop").iter();
    match (all.next(), all.next()) {
        (None, _) => DpopHeader::Absent,
        (Some(v), None) => DpopHeader::One(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        (Some(_), Some(_)) => DpopHeader::Several,
    }
}

/// The facts about the caller an audit record keeps.
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}
