//! An authorization server's answer when it refuses: RFC 6749 §5.2 errors,
//! typed, and the error every token request returns.
//!
//! Owns: reading `error` / `error_description` (bounded, and only the
//! characters RFC 6749 §5.2 allows), the HTTP status and `Retry-After`, and
//! telling a refusal from a temporary outage.
//! Must never: carry a request parameter, a credential or a token; only
//! what the server answered, bounded.

use std::fmt;
use std::time::Duration;

/// Longest `error_description` kept.
const MAX_DESCRIPTION: usize = 512;
/// Longest unregistered `error` code kept.
const MAX_CODE: usize = 64;

/// The RFC 6749 §5.2 / RFC 8693 §2.2.2 / RFC 8707 §2 error codes the broker
/// answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// RFC 8707 §2: the resource or audience is unknown or not allowed.
    InvalidTarget,
    /// The request was fine, but the user has no entitlement at the
    /// requested audience (RFC 6749 §4.1.2.1 `access_denied`, as the broker
    /// answers it at `/token`, with 400): asking again, or for other scopes,
    /// will not help; the user needs a role there.
    AccessDenied,
    /// RFC 9449 §5: the DPoP proof is missing where required, or fails a
    /// check (a replayed `jti`, a stale `iat`, a wrong `htu`): make a new one.
    InvalidDpopProof,
    /// RFC 9449 §8: retry with a proof carrying the server's nonce, which
    /// the answer's `DPoP-Nonce` header holds.
    UseDpopNonce,
    /// 503 (the broker's store or upstream keys are unreachable) or 429 (a
    /// rate limit).
    TemporarilyUnavailable,
    Other(String),
}

impl ErrorCode {
    pub fn parse(s: &str) -> Self {
        match s {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "invalid_target" => Self::InvalidTarget,
            "access_denied" => Self::AccessDenied,
            "invalid_dpop_proof" => Self::InvalidDpopProof,
            "use_dpop_nonce" => Self::UseDpopNonce,
            "temporarily_unavailable" => Self::TemporarilyUnavailable,
            other => Self::Other(clean(other, MAX_CODE)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::Other(s) => s,
        }
    }
}

/// What the server said when it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The HTTP status.
    pub status: u16,
    pub code: ErrorCode,
    pub description: Option<String>,
    /// `Retry-After`, on a 503 or a 429.
    pub retry_after: Option<Duration>,
}

impl OAuthError {
    /// Read an error answer. A body that is not RFC 6749 §5.2 JSON (a proxy's
    /// 502 page) becomes `Other("http_<status>")`.
    pub(crate) fn from_reply(status: u16, body: Option<&serde_json::Value>, retry_after: Option<Duration>) -> Self {
        let text = |name| body.and_then(|b| b.get(name)).and_then(|v| v.as_str());
        Self {
            status,
            code: text("error")
                .map(ErrorCode::parse)
                .unwrap_or_else(|| ErrorCode::Other(format!("http_{status}"))),
            description: text("error_description").map(|d| clean(d, MAX_DESCRIPTION)),
            retry_after,
        }
    }

    /// `503 temporarily_unavailable`: the broker could not decide (store or
    /// keys unreachable, a deadline); the same request may succeed later.
    pub fn is_temporarily_unavailable(&self) -> bool {
        self.status == 503 && self.code == ErrorCode::TemporarilyUnavailable
    }

    /// `429`: over a rate limit; retry after `retry_after`.
    pub fn is_rate_limited(&self) -> bool {
        self.status == 429
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.code.as_str())?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// Only RFC 6749 §5.2's characters (%x20-21 / %x23-5B / %x5D-7E), at most
/// `max` of them.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| matches!(*c, ' '..='!' | '#'..='[' | ']'..='~'))
        .take(max)
        .collect()
}

/// Why a token request (a hop exchange, an ID-JAG request or redemption)
/// produced no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The server refused (4xx): the request, the client or the subject is
    /// wrong; retrying the same request will not help.
    #[error("the authorization server refused: {0}")]
    Refused(OAuthError),
    /// 503 or 429, or another 5xx: the same request may succeed later
    /// (after `retry_after`, when given).
    #[error("the authorization server is unavailable: {0}")]
    Unavailable(OAuthError),
    #[error(transparent)]
    Transport(#[from] crate::http::TransportError),
    /// The server answered 200 with something that is not the token
    /// response expected.
    #[error("the authorization server's response is invalid: {0}")]
    InvalidResponse(&'static str),
    #[error(transparent)]
    ClientAuth(#[from] crate::client_auth::ClientAuthError),
    /// The caller's request is unusable before anything is sent.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The request carried a DPoP proof, and the token that came back is
    /// not bound to our key (RFC 9449 §5): never taken as a bearer token in
    /// its place.
    #[error("the DPoP binding was dropped: {0}")]
    BindingDropped(BindingDropped),
    /// The DPoP proof could not be made.
    #[error(transparent)]
    DpopKey(#[from] crate::dpop_key::DpopKeyError),
}

/// How a response to a request with a DPoP proof failed to confirm the
/// binding. Carries nothing the server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindingDropped {
    /// An access token came back with a `token_type` other than `DPoP`
    /// (RFC 9449 §5: a bound access token is a `DPoP` token): the server
    /// ignored the proof and issued a bearer token.
    #[error("the access token's token_type is not DPoP (RFC 9449 §5)")]
    NotDpopTokenType,
    /// The response's or the token's `cnf` names another key, or another
    /// confirmation method, than our key's `jkt` (RFC 9449 §6.1).
    #[error("the token's cnf is not our key's thumbprint (RFC 9449 §6.1)")]
    OtherKey,
}

impl TokenError {
    /// The server's OAuth error, when it answered with one.
    pub fn oauth(&self) -> Option<&OAuthError> {
        match self {
            TokenError::Refused(e) | TokenError::Unavailable(e) => Some(e),
            _ => None,
        }
    }

    /// The OAuth error code, when the server answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        self.oauth().map(|e| &e.code)
    }

    /// Whether we asked for a DPoP-bound token and got one that is not
    /// bound to our key.
    pub fn is_binding_dropped(&self) -> bool {
        matches!(self, TokenError::BindingDropped(_))
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TokenError::Unavailable(_) | TokenError::Transport(_))
    }

    pub(crate) fn from_status(status: u16, body: Option<&serde_json::Value>, retry_after: Option<Duration>) -> Self {
        let e = OAuthError::from_reply(status, body, retry_after);
        if status == 429 || status >= 500 {
            TokenError::Unavailable(e)
        } else {
            TokenError::Refused(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_503_temporarily_unavailable_is_told_apart_from_a_refusal() {
        let e = TokenError::from_status(
            503,
            Some(&json!({"error": "temporarily_unavailable", "error_description": "store"})),
            Some(Duration::from_secs(1)),
        );
        assert!(e.is_retryable());
        assert!(e.oauth().unwrap().is_temporarily_unavailable());
        assert_eq!(e.oauth().unwrap().retry_after, Some(Duration::from_secs(1)));
        let r = TokenError::from_status(400, Some(&json!({"error": "invalid_target"})), None);
        assert!(!r.is_retryable());
        assert_eq!(r.code(), Some(&ErrorCode::InvalidTarget));
        assert!(matches!(r, TokenError::Refused(_)));
        let denied = TokenError::from_status(400, Some(&json!({"error": "access_denied"})), None);
        assert_eq!(denied.code(), Some(&ErrorCode::AccessDenied));
        assert!(!denied.is_retryable(), "a denial is not an outage");
        assert!(
            TokenError::from_status(429, None, None)
                .oauth()
                .unwrap()
                .is_rate_limited()
        );
    }

    #[test]
    fn what_the_server_said_is_bounded_and_cleaned() {
        let long = "x".repeat(10_000);
        let e = OAuthError::from_reply(
            400,
            Some(&json!({"error": "weird\n\"code", "error_description": format!("a\u{1b}[31m{long}")})),
            None,
        );
        assert_eq!(e.code, ErrorCode::Other("weirdcode".into()));
        let d = e.description.unwrap();
        assert_eq!(d.len(), MAX_DESCRIPTION);
        assert!(d.starts_with("a[31m"), "control characters dropped: {d:.10}");
        let e = OAuthError::from_reply(502, None, None);
        assert_eq!(e.code.as_str(), "http_502");
    }
}
