//! RFC 9728 protected resource metadata: the document a resource server
//! publishes so that clients (MCP clients among them) find its
//! authorization server.
//!
//! Owns: the document's members (`resource`, `authorization_servers`,
//! `bearer_methods_supported`, `scopes_supported`, `resource_name`) and its
//! well-known location (RFC 9728 §3.1: inserted between the host and the
//! path of the resource identifier).
//! Must never: list anything but public facts (no client ids, no keys).

use serde_json::{Value, json};

use crate::endpoint::{self, EndpointError};

/// The well-known URI suffix (RFC 9728 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A protected resource's metadata (RFC 9728 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// The resource identifier: the `aud` of the tokens it accepts.
    pub resource: String,
    /// The issuers whose tokens it accepts: the broker.
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub resource_name: Option<String>,
}

impl ResourceMetadata {
    pub fn new(resource: impl Into<String>, authorization_server: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: vec![authorization_server.into()],
            scopes_supported: Vec::new(),
            resource_name: None,
        }
    }

    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes_supported = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// The path this document is served at on the resource's own host
    /// (`/.well-known/oauth-protected-resource` + the resource's path).
    pub fn well_known_path(&self) -> Result<String, EndpointError> {
        let u = endpoint::checked(&self.resource, "resource")?;
        Ok(format!("{WELL_KNOWN}{}", u.path().trim_end_matches('/')))
    }

    /// Where clients fetch this document (RFC 9728 §3.1), what a 401's
    /// `resource_metadata` names (RFC 9728 §5.1).
    pub fn well_known_url(&self) -> Result<String, EndpointError> {
        let u = endpoint::checked(&self.resource, "resource")?;
        let mut origin = u.clone();
        origin.set_path("");
        origin.set_query(None);
        Ok(format!(
            "{}{}",
            origin.as_str().trim_end_matches('/'),
            self.well_known_path()?
        ))
    }

    /// The JSON document (RFC 9728 §2). Tokens are accepted in the
    /// `Authorization` header only (RFC 6750 §2.1).
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
        });
        if !self.scopes_supported.is_empty() {
            doc["scopes_supported"] = json!(self.scopes_supported);
        }
        if let Some(name) = &self.resource_name {
            doc["resource_name"] = json!(name);
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_segment_goes_between_host_and_path() {
        let root = ResourceMetadata::new("https://mcp.logs.example.com", "https://broker");
        assert_eq!(
            root.well_known_url().unwrap(),
            "https://mcp.logs.example.com/.well-known/oauth-protected-resource"
        );
        let with_path = ResourceMetadata::new("https://mcp.saas.example.com/mcp", "https://broker");
        assert_eq!(
            with_path.well_known_url().unwrap(),
            "https://mcp.saas.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            with_path.well_known_path().unwrap(),
            "/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn the_document_names_the_resource_and_its_authorization_server() {
        let doc = ResourceMetadata::new("https://mcp.logs.example.com", "https://broker")
            .scopes(&["logs.read"])
            .to_json();
        assert_eq!(doc["resource"], "https://mcp.logs.example.com");
        assert_eq!(doc["authorization_servers"], json!(["https://broker"]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(doc["scopes_supported"], json!(["logs.read"]));
    }
}
