//! Protocol values parsed once at the edge: scopes, token types, grant types.
//!
//! Owns: turning raw form strings into typed values (parse, don't validate).
//! Must never: do I/O or consult policy; these are plain values.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// RFC 6749 §3.3 scope: a set of case-sensitive tokens, space-delimited on the
/// wire. A `BTreeSet` keeps the wire form canonical (sorted, no duplicates),
/// so equal grants always serialize identically in tokens and audit records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// Parse a `scope` parameter. RFC 6749 §3.3 allows only `%x21 / %x23-5B /
    /// %x5D-7E` in a scope token; anything else is malformed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(format!("scope token {token:?} has characters RFC 6749 §3.3 forbids"));
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn intersect(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.intersection(&other.0).cloned().collect())
    }
    pub fn retain(&mut self, f: impl FnMut(&String) -> bool) {
        self.0.retain(f)
    }
    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }
    pub fn insert(&mut self, s: impl Into<String>) {
        self.0.insert(s.into());
    }
}

impl<S: Into<String>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(items: I) -> Self {
        Self(items.into_iter().map(Into::into).collect())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// RFC 8693 §3 token type identifiers the broker understands, plus ID-JAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenType {
    #[serde(rename = "urn:ietf:params:oauth:token-type:access_token")]
    AccessToken,
    #[serde(rename = "urn:ietf:params:oauth:token-type:id_token")]
    IdToken,
    #[serde(rename = "urn:ietf:params:oauth:token-type:jwt")]
    Jwt,
    #[serde(rename = "urn:ietf:params:oauth:token-type:id-jag")]
    IdJag,
    #[serde(rename = "urn:ietf:params:oauth:token-type:refresh_token")]
    RefreshToken,
    #[serde(rename = "urn:ietf:params:oauth:token-type:saml2")]
    Saml2,
    #[serde(rename = "urn:ietf:params:oauth:token-type:txn_token")]
    TxnToken,
}

impl TokenType {
    pub const ALL: [TokenType; 7] = [
        Self::AccessToken,
        Self::IdToken,
        Self::Jwt,
        Self::IdJag,
        Self::RefreshToken,
        Self::Saml2,
        Self::TxnToken,
    ];

    pub fn uri(self) -> &'static str {
        match self {
            Self::AccessToken => "urn:ietf:params:oauth:token-type:access_token",
            Self::IdToken => "urn:ietf:params:oauth:token-type:id_token",
            Self::Jwt => "urn:ietf:params:oauth:token-type:jwt",
            Self::IdJag => "urn:ietf:params:oauth:token-type:id-jag",
            Self::RefreshToken => "urn:ietf:params:oauth:token-type:refresh_token",
            Self::Saml2 => "urn:ietf:params:oauth:token-type:saml2",
            Self::TxnToken => "urn:ietf:params:oauth:token-type:txn_token",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.uri() == raw)
    }
}

pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// draft-parecki-oauth-jwt-dpop-grant: the jwt-bearer grant with a DPoP
/// proof that the assertion and the issued token are bound to.
pub const GRANT_JWT_DPOP: &str = "urn:ietf:params:oauth:grant-type:jwt-dpop";
pub const CLIENT_ASSERTION_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const GRANT_PROFILE_ID_JAG: &str = "urn:ietf:params:oauth:grant-profile:id-jag";

/// Grant types the broker implements, named in config (`grants = [...]`) by
/// their short names and on the wire by their URIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantType {
    /// RFC 8693.
    TokenExchange,
    /// RFC 7523 §2.1 (ID-JAG redemption).
    JwtBearer,
    /// The same redemption with a DPoP proof required
    /// (draft-parecki-oauth-jwt-dpop-grant). Not a config name: a client
    /// allowed `jwt-bearer` may use it ([`GrantType::permission`]).
    #[serde(skip)]
    JwtDpop,
}

impl GrantType {
    pub fn uri(self) -> &'static str {
        match self {
            Self::TokenExchange => GRANT_TOKEN_EXCHANGE,
            Self::JwtBearer => GRANT_JWT_BEARER,
            Self::JwtDpop => GRANT_JWT_DPOP,
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            GRANT_TOKEN_EXCHANGE => Some(Self::TokenExchange),
            GRANT_JWT_BEARER => Some(Self::JwtBearer),
            GRANT_JWT_DPOP => Some(Self::JwtDpop),
            _ => None,
        }
    }
    pub fn short(self) -> &'static str {
        match self {
            Self::TokenExchange => "token-exchange",
            Self::JwtBearer => "jwt-bearer",
            Self::JwtDpop => "jwt-dpop",
        }
    }
    /// The configured grant that permits this one: `jwt-dpop` is
    /// `jwt-bearer` with a proof, never a wider permission.
    pub fn permission(self) -> Self {
        match self {
            Self::JwtDpop => Self::JwtBearer,
            other => other,
        }
    }
}

/// The entity profiles we write (draft-mora-oauth-entity-profiles §3.3,
/// draft-mcguinness-oauth-actor-profile): `sub_profile` in `act` entries and
/// `client_profile` in tokens. Only a profile of `service` alone lifts the
/// agent cap (`chain::Act::is_agent`).
pub const PROFILE_AGENT: &str = "ai_agent";
pub const PROFILE_SERVICE: &str = "service";

/// What a client is, which decides what it adds to `act`
/// (specs/decisions.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// An application acting directly for its signed-in user.
    App,
    /// An AI agent: capped by `[agents]` wherever it appears in a chain.
    Agent,
    /// A workload such as an MCP server calling downstream.
    Service,
}

impl ClientKind {
    /// The `client_profile` claim for a client of this kind
    /// (draft-mora-oauth-entity-profiles §4.1): `ai_agent` for an agent,
    /// `service` for a service. An `app` gets none: whether it is a
    /// `web_app`, `native_app` or `browser_app` is not configured, and a
    /// profile is never guessed.
    pub fn client_profile(self) -> Option<&'static str> {
        match self {
            ClientKind::Agent => Some(PROFILE_AGENT),
            ClientKind::Service => Some(PROFILE_SERVICE),
            ClientKind::App => None,
        }
    }
}

/// An actor identity: `sub` in the namespace of issuer `iss`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActorIdentity {
    pub iss: String,
    pub sub: String,
}

/// The principal a token speaks for: a subject is only meaningful within the
/// issuer that vouched for it (RFC 9493 §3.2.2 `iss_sub`), so `bob` of one
/// IdP is never `bob` of another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub iss: String,
    pub sub: String,
}

/// A loopback host (`localhost`, 127.0.0.0/8, `::1`): where plain http is
/// acceptable (development, tests), and nowhere else.
pub fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// RFC 8707 §2 (and RFC 3986 §4.3): a resource indicator is an absolute
/// URI without a fragment.
pub fn is_resource_indicator(raw: &str) -> bool {
    url::Url::parse(raw).is_ok_and(|u| u.fragment().is_none())
}

/// Where keys, metadata and issuers may live: https, or plain http on a
/// loopback host (development, tests) and nowhere else.
pub fn is_https_or_loopback(u: &url::Url) -> bool {
    u.scheme() == "https" || (u.scheme() == "http" && is_loopback(u))
}

/// Seconds since the Unix epoch, the unit of JWT `NumericDate` (RFC 7519 §2),
/// from the system clock: for code outside the request path (the CLI, the
/// dev IdP, tests). Requests read `AppState::clock` once (`crate::clock`).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_is_canonical_and_deduplicated() {
        let s = ScopeSet::parse("b a  b").unwrap();
        assert_eq!(s.to_string(), "a b");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn scope_rejects_forbidden_characters() {
        assert!(ScopeSet::parse("a\"b").is_err());
        assert!(ScopeSet::parse("a\\b").is_err());
        assert!(ScopeSet::parse("caf\u{e9}").is_err());
    }

    #[test]
    fn token_types_round_trip() {
        for t in TokenType::ALL {
            assert_eq!(TokenType::parse(t.uri()), Some(t));
        }
        assert_eq!(TokenType::parse("urn:x"), None);
    }
}
