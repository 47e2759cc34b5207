//! The one OAuth error type.
//!
//! Owns: the RFC 6749 §5.2 / RFC 8693 §2.2.2 / RFC 7009 error codes and the
//! HTTP status each one means. Rendering it (the JSON body, `no-store`,
//! `WWW-Authenticate`, `Retry-After`) is `http::respond`'s, in one place.
//! Must never: put internal detail (I/O errors, store errors, panics) or any
//! credential into a description; import an HTTP framework. Internal causes
//! are logged here, once.

use std::borrow::Cow;

use serde::Serialize;

/// The registered OAuth error codes the broker emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    /// The request is well-formed and authenticated, but the user has no
    /// entitlement at the requested audience (decisions, "Error codes";
    /// ID-JAG issue 111: `invalid_grant` would be indistinguishable from a
    /// misconfiguration). Registered by RFC 6749 §4.1.2.1 ("the resource
    /// owner or authorization server denied the request"); answered 400, as
    /// RFC 6749 §5.2 answers every token-endpoint refusal but client
    /// authentication.
    AccessDenied,
    UnsupportedTokenType,
    UnsupportedResponseType,
    /// A DPoP proof is missing where required, malformed, or fails a check
    /// (RFC 9449 §5, §4.3).
    InvalidDpopProof,
    /// The proof lacks the server's current nonce; the answer carries a
    /// fresh one in `DPoP-Nonce` (RFC 9449 §8).
    UseDpopNonce,
    TemporarilyUnavailable,
    /// Over a rate limit (MCP EMA §7.5.1). On the wire it is
    /// `temporarily_unavailable` (RFC 6749 §4.1.2.1, "temporary overloading"):
    /// no registry entry names rate limiting; the 429 status says which kind
    /// of "later" it is (decisions §19).
    #[serde(rename = "temporarily_unavailable")]
    RateLimited,
    ServerError,
    NotFound,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 16] = [
        Self::InvalidRequest,
        Self::InvalidClient,
        Self::InvalidGrant,
        Self::UnauthorizedClient,
        Self::UnsupportedGrantType,
        Self::InvalidScope,
        Self::InvalidTarget,
        Self::AccessDenied,
        Self::UnsupportedTokenType,
        Self::UnsupportedResponseType,
        Self::InvalidDpopProof,
        Self::UseDpopNonce,
        Self::TemporarilyUnavailable,
        Self::RateLimited,
        Self::ServerError,
        Self::NotFound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::TemporarilyUnavailable | Self::RateLimited => "temporarily_unavailable",
            Self::ServerError => "server_error",
            Self::NotFound => "not_found",
        }
    }

    /// RFC 6749 §5.2: 400 for everything except client authentication (401).
    /// `temporarily_unavailable` is 503 so load balancers and clients retry;
    /// rate limited, it is 429 (RFC 6585 §4), which tells a client that it,
    /// not the service, must slow down.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidClient => 401,
            Self::TemporarilyUnavailable => 503,
            Self::RateLimited => 429,
            Self::ServerError => 500,
            Self::NotFound => 404,
            _ => 400,
        }
    }
}

/// An OAuth error on its way to the client.
///
/// `reason` is a stable machine string (`subject_token.expired`) for the audit
/// record and metrics; `description` is the human `error_description`.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub reason: &'static str,
    pub description: Cow<'static, str>,
    /// Set when the client tried HTTP Basic: RFC 6749 §5.2 then requires
    /// `WWW-Authenticate` on the 401.
    pub basic_challenge: bool,
    /// Whole seconds for `Retry-After` (RFC 9110 §10.2.3), when known: a rate
    /// limit knows when its bucket refills.
    pub retry_after: Option<u64>,
    /// A fresh server nonce for `DPoP-Nonce` (RFC 9449 §8): set on
    /// `use_dpop_nonce`, and on any refusal of a request that carried a
    /// proof while nonces are required.
    pub dpop_nonce: Option<String>,
}

pub type OAuthResult<T> = Result<T, OAuthError>;

impl OAuthError {
    pub fn new(code: ErrorCode, reason: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            reason,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
            dpop_nonce: None,
        }
    }

    /// Over a rate limit: 429 with `Retry-After` = `wait` rounded up to
    /// whole seconds, at least 1 (a 0 would invite an immediate retry).
    pub fn rate_limited(reason: &'static str, d: impl Into<Cow<'static, str>>, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(ErrorCode::RateLimited, reason, d)
        }
    }

    pub fn invalid_request(reason: &'static str, d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, reason, d)
    }
    pub fn invalid_client(reason: &'static str, d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, reason, d)
    }
    pub fn invalid_grant(reason: &'static str, d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, reason, d)
    }
    pub fn invalid_target(reason: &'static str, d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, reason, d)
    }
    pub fn invalid_scope(reason: &'static str, d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, reason, d)
    }
    pub fn access_denied(reason: &'static str, d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::AccessDenied, reason, d)
    }
    pub fn unauthorized_client(reason: &'static str, d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, reason, d)
    }
    pub fn invalid_dpop_proof(reason: &'static str, d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidDpopProof, reason, d)
    }

    /// Attach the server's current DPoP nonce (answered in `DPoP-Nonce`).
    pub fn with_dpop_nonce(mut self, nonce: Option<String>) -> Self {
        if nonce.is_some() {
            self.dpop_nonce = nonce;
        }
        self
    }

    /// A check could not be made (store down, JWKS unreachable with no cached
    /// key). The cause is logged here and never shown to the client.
    pub fn unavailable(reason: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(reason, cause = %cause, "failing closed");
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            reason,
            "the service cannot complete this check right now; retry later",
        )
    }

    /// A bug or an invariant broken on our side. Logged; the body says nothing.
    pub fn internal(reason: &'static str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(reason, cause = %cause, "internal error");
        Self::new(ErrorCode::ServerError, reason, "internal error")
    }

    pub fn with_basic_challenge(mut self, basic: bool) -> Self {
        self.basic_challenge = basic;
        self
    }

    /// Change the code while keeping reason and description: used where a
    /// spec assigns one code to a whole class of failures (RFC 7523 §3.1:
    /// everything wrong with the assertion is `invalid_grant`). Never an
    /// outage, a rate limit, a client failure, a DPoP proof's failure (the
    /// proof is not the assertion, RFC 9449 §5), or `access_denied`: a user
    /// without entitlement is not a bad assertion, and saying so is the
    /// point of that code (ID-JAG issue 111).
    pub fn recode(mut self, code: ErrorCode) -> Self {
        if !matches!(
            self.code,
            ErrorCode::TemporarilyUnavailable
                | ErrorCode::RateLimited
                | ErrorCode::ServerError
                | ErrorCode::InvalidClient
                | ErrorCode::AccessDenied
                | ErrorCode::InvalidDpopProof
                | ErrorCode::UseDpopNonce
        ) {
            self.code = code;
        }
        self
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code.as_str(), self.reason, self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_is_429_temporarily_unavailable_and_never_recoded() {
        assert_eq!(ErrorCode::RateLimited.as_str(), "temporarily_unavailable");
        assert_eq!(ErrorCode::RateLimited.status(), 429);
        let e = OAuthError::rate_limited("x", "y", std::time::Duration::from_secs(3)).recode(ErrorCode::InvalidGrant);
        assert_eq!(e.code, ErrorCode::RateLimited, "a rate limit is never recoded");
    }

    #[test]
    fn recode_never_hides_an_outage_or_client_failure() {
        let e = OAuthError::new(ErrorCode::TemporarilyUnavailable, "x", "y").recode(ErrorCode::InvalidGrant);
        assert_eq!(e.code, ErrorCode::TemporarilyUnavailable);
        let e = OAuthError::invalid_request("x", "y").recode(ErrorCode::InvalidGrant);
        assert_eq!(e.code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn access_denied_is_a_400_that_no_grant_recodes() {
        assert_eq!(ErrorCode::AccessDenied.as_str(), "access_denied");
        assert_eq!(ErrorCode::AccessDenied.status(), 400);
        let e = OAuthError::access_denied("policy.no_entitlement", "y").recode(ErrorCode::InvalidGrant);
        assert_eq!(e.code, ErrorCode::AccessDenied, "a denial is not a bad assertion");
    }
}
