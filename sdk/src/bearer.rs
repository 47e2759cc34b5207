//! `BearerToken`: a token the SDK obtained or holds, kept out of logs.
//!
//! Owns: the one place a token's text is reachable (`expose`).
//! Must never: print the token in `Debug` or `Display`.

use std::fmt;
use std::sync::Arc;

/// An access token, hop token or ID-JAG. `Debug` prints a redaction; use
/// [`BearerToken::expose`] to send it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(Arc<str>);

impl BearerToken {
    pub(crate) fn new(token: &str) -> Self {
        Self(Arc::from(token))
    }

    /// The token's text, to put in an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let t = BearerToken::new("eyJsecret.payload.sig");
        assert!(!format!("{t:?}").contains("secret"));
        assert_eq!(t.expose(), "eyJsecret.payload.sig");
    }
}
