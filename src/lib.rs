//! xaa-broker: a Cross-App Access token broker.
//!
//! RFC 8693 token exchange issuing ID-JAGs (draft-ietf-oauth-identity-
//! assertion-authz-grant) and RFC 9068 hop tokens that carry the user
//! (`sub`), the agent chain (`act`) and the correlation id (`txn`), with every
//! decision in a hash-chained audit trail. See `ARCHITECTURE.md` (at the
//! repository root) for the map of modules; each module's `//!` says what it
//! owns.

pub mod admin;
pub mod app;
pub mod audit;
pub mod audit_api;
pub mod audit_chain;
pub mod audit_file;
pub mod chain;
pub mod chain_check;
pub mod checkpoint;
pub mod claims;
pub mod cli;
pub mod client_auth;
pub mod clock;
pub mod config;
pub mod dev;
pub mod dpop;
pub mod endpoint;
pub mod error;
pub mod grant;
pub mod http;
pub mod inspect;
pub mod introspection;
pub mod jose;
pub mod keys;
pub mod limits;
pub mod noise;
pub mod observe;
pub mod params;
pub mod policy;
pub mod revocation;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tool_events;
pub mod trace;
pub mod trust;
pub mod types;
