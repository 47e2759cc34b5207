//! Request extraction for OAuth endpoints.
//!
//! Owns: reading an `application/x-www-form-urlencoded` body into parameters
//! with RFC 6749 semantics (§3.1: empty = omitted; §3.2: no repeats except
//! where a spec allows them), and the caller facts the audit record keeps.
//! Must never: answer with axum's 415/422 plain-text rejections: every
//! failure here is a 400 `invalid_request` JSON body.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};

use crate::error::{OAuthError, OAuthResult};

/// Largest form we read. Tokens are capped at 16 KiB each; a token request
/// carries at most three of them plus short parameters.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Parameters that a spec allows to repeat (RFC 8693 §2.1, RFC 8707 §2).
const REPEATABLE: &[&str] = &["resource", "audience"];

#[derive(Debug, Default)]
pub struct OAuthParams {
    pairs: Vec<(String, String)>,
}

impl OAuthParams {
    pub fn parse(body: &[u8]) -> OAuthResult<Self> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
            .into_owned()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !REPEATABLE.contains(&k.as_str()) && pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(OAuthError::invalid_request(
                    "request.repeated_parameter",
                    format!("parameter {k:?} must not be repeated (RFC 6749 §3.2)"),
                ));
            }
        }
        Ok(Self { pairs })
    }

    /// A single-valued parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A required single-valued parameter.
    pub fn require(&self, name: &'static str) -> OAuthResult<&str> {
        self.get(name).ok_or_else(|| {
            OAuthError::invalid_request(
                "request.missing_parameter",
                format!("missing required parameter {name:?}"),
            )
        })
    }

    /// Every value of a repeatable parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

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

/// The facts about the caller an audit record keeps.
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_omitted() {
        let p = OAuthParams::parse(b"scope=&grant_type=x").unwrap();
        assert_eq!(p.get("scope"), None);
        assert_eq!(p.get("grant_type"), Some("x"));
    }

    #[test]
    fn repeats_are_refused_except_resource_and_audience() {
        assert!(OAuthParams::parse(b"scope=a&scope=b").is_err());
        let p = OAuthParams::parse(b"resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb").unwrap();
        assert_eq!(p.all("resource"), vec!["https://a", "https://b"]);
    }
}
