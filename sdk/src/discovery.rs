//! Where an authorization server's endpoints are: RFC 8414 metadata, or
//! given explicitly.
//!
//! Owns: `AuthorizationServer` (issuer, token endpoint, `jwks_uri`), the
//! RFC 8414 §3.1 well-known URL (inserted before the issuer's path), and the
//! §3.3 rule that the document names the issuer asked for.
//! Must never: accept endpoints that fail the `endpoint` rule, or a document
//! that names another issuer (an attacker's metadata could point
//! `jwks_uri` at its own keys).

use crate::endpoint::{self, EndpointError};
use crate::http::{Http, HttpConfig, TransportError};
use crate::traceparent::TraceParent;

/// The endpoints of an authorization server (the broker, or a resource AS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationServer {
    /// The issuer identifier, as tokens carry it in `iss`.
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: Option<String>,
}

/// Why metadata could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("metadata request answered HTTP {0}")]
    Status(u16),
    #[error("the metadata document is not a JSON object with string members")]
    NotMetadata,
    #[error("the metadata document names another issuer (RFC 8414 §3.3)")]
    IssuerMismatch,
    #[error("the metadata document has no {0}")]
    Missing(&'static str),
}

impl AuthorizationServer {
    /// Explicit endpoints, checked (https, or http on loopback).
    pub fn new(issuer: &str, token_endpoint: &str, jwks_uri: Option<&str>) -> Result<Self, EndpointError> {
        let issuer = endpoint::issuer(issuer)?;
        endpoint::checked(token_endpoint, "token_endpoint")?;
        if let Some(uri) = jwks_uri {
            endpoint::checked(uri, "jwks_uri")?;
        }
        Ok(Self {
            issuer,
            token_endpoint: token_endpoint.to_owned(),
            jwks_uri: jwks_uri.map(str::to_owned),
        })
    }

    /// An xaa-broker's endpoints without a round trip: the broker serves
    /// `/token` and `/jwks` under its issuer (README "Endpoints").
    pub fn xaa_broker(issuer: &str) -> Result<Self, EndpointError> {
        let issuer = endpoint::issuer(issuer)?;
        Self::new(&issuer, &format!("{issuer}/token"), Some(&format!("{issuer}/jwks")))
    }

    /// Fetch `{issuer}`'s RFC 8414 metadata.
    pub async fn discover(issuer: &str) -> Result<Self, DiscoveryError> {
        let http = Http::new(&HttpConfig::default())?;
        Self::discover_with(&http, issuer, &TraceParent::new_root()).await
    }

    pub(crate) async fn discover_with(http: &Http, issuer: &str, trace: &TraceParent) -> Result<Self, DiscoveryError> {
        let issuer = endpoint::issuer(issuer)?;
        let url = well_known_url(&issuer)?;
        let reply = http.get(&url, "application/json", trace).await?;
        if reply.status != 200 {
            return Err(DiscoveryError::Status(reply.status));
        }
        let doc = reply.json().ok_or(DiscoveryError::NotMetadata)?;
        let member = |name: &'static str| -> Result<Option<&str>, DiscoveryError> {
            match doc.get(name) {
                None => Ok(None),
                Some(v) => v.as_str().map(Some).ok_or(DiscoveryError::NotMetadata),
            }
        };
        if member("issuer")? != Some(issuer.as_str()) {
            return Err(DiscoveryError::IssuerMismatch);
        }
        let token_endpoint = member("token_endpoint")?.ok_or(DiscoveryError::Missing("token_endpoint"))?;
        Ok(Self::new(&issuer, token_endpoint, member("jwks_uri")?)?)
    }

    /// Where the broker takes tool-call reports (specs/audit.md).
    pub fn audit_events_endpoint(&self) -> String {
        format!("{}/audit/events", self.issuer)
    }
}

/// RFC 8414 §3.1: the well-known segment goes between the host and the
/// issuer's path.
fn well_known_url(issuer: &str) -> Result<String, EndpointError> {
    let u = endpoint::checked(issuer, "issuer")?;
    let path = u.path().trim_end_matches('/');
    let mut origin = u.clone();
    origin.set_path("");
    origin.set_query(None);
    let origin = origin.as_str().trim_end_matches('/').to_owned();
    Ok(format!("{origin}/.well-known/oauth-authorization-server{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_segment_goes_before_the_issuers_path() {
        assert_eq!(
            well_known_url("https://b.example.com").unwrap(),
            "https://b.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            well_known_url("https://b.example.com/tenant").unwrap(),
            "https://b.example.com/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            well_known_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn the_broker_layout_lives_under_the_issuer() {
        let b = AuthorizationServer::xaa_broker("https://b.example.com/t/").unwrap();
        assert_eq!(b.issuer, "https://b.example.com/t");
        assert_eq!(b.token_endpoint, "https://b.example.com/t/token");
        assert_eq!(b.jwks_uri.as_deref(), Some("https://b.example.com/t/jwks"));
        assert_eq!(b.audit_events_endpoint(), "https://b.example.com/t/audit/events");
        assert!(AuthorizationServer::xaa_broker("http://b.example.com").is_err());
    }
}
