//! xaa-sdk: the resource-server and agent side of xaa-broker.
//!
//! Owns: what an MCP server, an API or an agent needs to take part in the
//! broker's chains without linking the broker: validating its hop tokens
//! ([`TokenValidator`]), bearer or DPoP-bound with their proofs
//! ([`DpopVerifier`]), deciding per tool ([`ToolPolicy`]), exchanging for
//! the next hop ([`HopTokens`]), with DPoP-bound tokens when given a key
//! ([`DpopKey`]), reporting tool calls ([`AuditReporter`]),
//! Cross-App Access ([`IdJagClient`]), W3C trace context ([`TraceParent`]),
//! and, with the `axum` feature, the extractor, the challenges and the
//! RFC 9728 metadata route.
//! Must never: depend on the `xaa-broker` crate, log or return a token, a
//! secret or an assertion, or read an unbounded input.
//!
//! The README below is the guide; its examples are compiled as doc tests.
#![doc = include_str!("../README.md")]

pub mod act;
pub mod alg;
pub mod audit_reporter;
#[cfg(feature = "axum")]
pub mod axum;
pub mod bearer;
pub mod client_auth;
pub mod discovery;
pub mod dpop;
pub mod dpop_key;
pub mod endpoint;
pub mod hop_tokens;
pub mod http;
pub mod id_jag;
mod jwks;
pub mod jws;
pub mod keyset;
pub mod oauth_error;
pub mod principal;
pub mod resource_metadata;
pub mod token_request;
pub mod tool_policy;
pub mod traceparent;
pub mod validator;

#[cfg(feature = "axum")]
pub use crate::axum::{AuthRejection, Authenticated, ProtectedResource};
pub use act::{ActError, Actor, MAX_ACT_DEPTH};
pub use alg::Alg;
pub use audit_reporter::{AuditReporter, FlushTimedOut, ReporterConfig, ReporterStats, ToolCall, ToolOutcome};
pub use bearer::BearerToken;
pub use client_auth::{ClientAuth, ClientAuthError};
pub use discovery::AuthorizationServer;
pub use dpop::{DpopConfig, DpopConfigError, DpopError, DpopRequest, DpopVerifier};
pub use dpop_key::{DpopKey, DpopKeyError};
pub use hop_tokens::{HopToken, HopTokens};
pub use http::HttpConfig;
pub use id_jag::{IdJag, IdJagClient, IdJagRequest, MultiHopRequest, ResourceToken};
pub use oauth_error::{BindingDropped, ErrorCode, OAuthError, TokenError};
pub use principal::Principal;
pub use resource_metadata::ResourceMetadata;
pub use tool_policy::{Category, Refusal, ToolPolicy};
pub use traceparent::TraceParent;
pub use validator::{TokenValidator, ValidationError, ValidatorBuilder, ValidatorConfigError};
