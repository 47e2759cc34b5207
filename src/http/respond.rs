//! Rendering answers: the one place an OAuth error becomes an HTTP response,
//! and the one builder of JSON answers that must not be cached.
//!
//! Owns: the RFC 6749 §5.2 error body (`error`, `error_description`), the
//! `Cache-Control: no-store` / `Pragma: no-cache` pair every token-endpoint
//! style answer carries (RFC 6749 §5.1), `WWW-Authenticate` for a client that
//! tried Basic (§5.2), `Retry-After` on 429/503 (RFC 6585 §4, RFC 9110
//! §10.2.3), and `DPoP-Nonce` when the server hands out a nonce (RFC 9449
//! §8).
//! Must never: decide anything; put anything but `error` and
//! `error_description` into an error body.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ErrorCode, OAuthError};

/// Headers every token-endpoint style response carries (RFC 6749 §5.1).
pub fn no_store_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// 200 with a JSON body that must not be cached.
pub fn json_no_store(body: impl Serialize) -> Response {
    let mut r = Json(body).into_response();
    no_store_headers(r.headers_mut());
    r
}

/// `DPoP-Nonce: <nonce>` (RFC 9449 §8.1), when there is one. A nonce is
/// base64url (our own), so it is always a valid header value.
pub fn dpop_nonce_header(headers: &mut HeaderMap, nonce: Option<&str>) {
    if let Some(v) = nonce.and_then(|n| HeaderValue::from_str(n).ok()) {
        headers.insert(DPOP_NONCE, v);
    }
}

const DPOP_NONCE: header::HeaderName = header::HeaderName::from_static("dpop-nonce");

/// 200 with no body, not cached (RFC 7009 §2.2).
pub fn empty_no_store() -> Response {
    let mut r = StatusCode::OK.into_response();
    no_store_headers(r.headers_mut());
    r
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    error_description: &'a str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.as_str(),
            error_description: &self.description,
        };
        let status = StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        no_store_headers(headers);
        if self.code == ErrorCode::InvalidClient && self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="xaa-broker", charset="UTF-8""#),
            );
        }
        dpop_nonce_header(headers, self.dpop_nonce.as_deref());
        match (self.retry_after, self.code) {
            (Some(secs), _) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            (None, ErrorCode::TemporarilyUnavailable | ErrorCode::RateLimited) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            (None, _) => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn invalid_client_is_401_and_challenges_only_basic_callers() {
        let e = OAuthError::invalid_client("x", "bad").with_basic_challenge(true);
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = OAuthError::invalid_client("x", "bad").into_response();
        assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn every_error_is_no_store() {
        let r = OAuthError::invalid_request("x", "bad").into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn a_rate_limit_is_429_with_retry_after_in_whole_seconds() {
        for (wait, header) in [(1500, "2"), (2000, "2"), (1, "1"), (0, "1")] {
            let r = OAuthError::rate_limited("x", "slow down", Duration::from_millis(wait)).into_response();
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(r.headers()[header::RETRY_AFTER], header, "wait {wait} ms");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        }
    }

    #[test]
    fn use_dpop_nonce_carries_the_nonce_in_its_header() {
        let e = OAuthError::new(ErrorCode::UseDpopNonce, "dpop.nonce_required", "send the nonce")
            .with_dpop_nonce(Some("abc_-1".into()));
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["dpop-nonce"], "abc_-1");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn every_status_is_a_valid_http_status() {
        for code in ErrorCode::ALL {
            assert!(StatusCode::from_u16(code.status()).is_ok(), "{code:?}");
        }
    }
}
