//! The one HTTP client every SDK call goes through.
//!
//! Owns: timeouts, no redirects, the response-size bound, the `traceparent`
//! header on every request, `Retry-After` (delay-seconds), form bodies, and
//! DPoP's headers at a token endpoint: the `DPoP` proof sent, the
//! `DPoP-Nonce` answered (RFC 9449 §8.1 syntax, bounded).
//! Must never: follow a redirect (a token request must not be replayed at
//! another host), read an unbounded body, or put a credential, a token or a
//! body into an error or a log line.

use std::time::Duration;

use crate::traceparent::TraceParent;

/// Bounds on every HTTP exchange the SDK makes.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The whole request, connect to last byte (default 5 s).
    pub timeout: Duration,
    /// Connecting only (default 2 s).
    pub connect_timeout: Duration,
    /// The largest response body read (default 256 KiB); larger ones are
    /// refused whole.
    pub max_response_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_response_bytes: 256 * 1024,
        }
    }
}

/// Why an HTTP exchange did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("the HTTP client could not be built: {0}")]
    Build(String),
    #[error("request to {url} failed: {cause}")]
    Send { url: String, cause: String },
    #[error("response from {url} is larger than {max} bytes")]
    TooLarge { url: String, max: usize },
}

/// A response, read whole and bounded.
pub(crate) struct Reply {
    pub status: u16,
    /// `Retry-After` as delay-seconds (RFC 9110 §10.2.3), when sent so.
    pub retry_after: Option<Duration>,
    /// `DPoP-Nonce` (RFC 9449 §8.1), when sent as one well-formed value.
    pub dpop_nonce: Option<String>,
    pub body: Vec<u8>,
}

/// The `DPoP-Nonce` response header (RFC 9449 §8.1).
const DPOP_NONCE: &str = "dpop-nonce";
/// Longest nonce kept: a server's nonce is an opaque short value.
const MAX_NONCE_BYTES: usize = 256;

/// RFC 9449 §8.1: `nonce = 1*NQCHAR`, NQCHAR = %x21 / %x23-5B / %x5D-7E.
fn well_formed_nonce(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_NONCE_BYTES
        && value.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Credentials in the `Authorization` header.
pub(crate) enum Authorization<'a> {
    None,
    /// A ready header value (`Basic …`); never logged.
    Header(&'a str),
}

#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub fn new(config: &HttpConfig) -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("xaa-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::Build(e.to_string()))?;
        Ok(Self {
            client,
            max_response_bytes: config.max_response_bytes,
        })
    }

    pub async fn get(&self, url: &str, accept: &str, trace: &TraceParent) -> Result<Reply, TransportError> {
        let request = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .header(TraceParent::HEADER, trace.to_string());
        self.read(url, request).await
    }

    /// POST an `application/x-www-form-urlencoded` body (RFC 6749 §4.1.3).
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        authorization: Authorization<'_>,
        trace: &TraceParent,
    ) -> Result<Reply, TransportError> {
        self.post_form_with_proof(url, form, authorization, None, trace).await
    }

    /// [`Self::post_form`], with a `DPoP` proof header when given (RFC 9449
    /// §4.1: exactly one).
    pub async fn post_form_with_proof(
        &self,
        url: &str,
        form: &[(&str, &str)],
        authorization: Authorization<'_>,
        dpop: Option<&str>,
        trace: &TraceParent,
    ) -> Result<Reply, TransportError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .header(TraceParent::HEADER, trace.to_string())
            .body(body);
        if let Authorization::Header(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(proof) = dpop {
            request = request.header(crate::dpop::HEADER, proof);
        }
        self.read(url, request).await
    }

    async fn read(&self, url: &str, request: reqwest::RequestBuilder) -> Result<Reply, TransportError> {
        let send_error = |e: reqwest::Error| TransportError::Send {
            url: url.to_owned(),
            // reqwest's message names the URL and the failure, never a header or body.
            cause: e.without_url().to_string(),
        };
        let mut resp = request.send().await.map_err(send_error)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)));
        let mut nonces = resp.headers().get_all(DPOP_NONCE).iter();
        let dpop_nonce = match (nonces.next(), nonces.next()) {
            (Some(one), None) => one.to_str().ok().filter(|v| well_formed_nonce(v)).map(str::to_owned),
            _ => None,
        };
        let max = self.max_response_bytes;
        let too_large = || TransportError::TooLarge {
            url: url.to_owned(),
            max,
        };
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(send_error)? {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            retry_after,
            dpop_nonce,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_nonce_of_rfc_9449_characters_is_kept() {
        assert!(well_formed_nonce("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert!(well_formed_nonce("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        for bad in ["", "a b", "a\"b", "a\\b", "caf\u{e9}", "a\r\nSet-Cookie: x"] {
            assert!(!well_formed_nonce(bad), "{bad:?}");
        }
        assert!(!well_formed_nonce(&"n".repeat(MAX_NONCE_BYTES + 1)));
    }
}
