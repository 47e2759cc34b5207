//! The integration test binary (one binary, so the suite links once). Every
//! test drives the real broker over real HTTP; upstream IdPs are real local
//! HTTP servers with real keys.

mod support;

// Issue 2: core broker.
mod actor;
mod cli;
mod client_auth;
mod discovery;
mod hop_tokens;
mod http_errors;
mod id_jag;
mod quickstart;
mod rejections;
mod reload;
mod server_limits;
mod upstream_keys;

// Issue 3: resource-AS side.
mod admin;
mod introspection;
mod resource_as;
mod revocation;

// Issue 7: hardening.
mod hardening;

// Issue 8: architecture.
mod architecture;

// Issue 4: shared state.
mod deploy;
mod instances;
mod key_rotation;
mod limits;
mod redis_outage;
mod store_contract;

// Documentation: citations and Markdown links that point nowhere.
mod citations;
