//! The integration test binary (one binary, so the suite links once). Every
//! test drives the real broker over real HTTP; upstream IdPs are real local
//! HTTP servers with real keys. Modules are grouped by the behaviour they
//! specify (ARCHITECTURE.md "A map of the tests").

mod browser;
mod support;

// Token exchange (RFC 8693): ID-JAGs, hop tokens, actors, multi-hop
// Cross-App Access, and every refusal.
mod actor;
mod dpop;
mod hop_tokens;
mod id_jag;
mod multi_hop;
mod rejections;

// The resource-AS side: ID-JAG redemption (RFC 7523), introspection
// (RFC 7662), revocation (RFC 7009) and the admin API.
mod admin;
mod audit_page;
mod introspection;
mod resource_as;
mod revocation;

// Clients: authentication and rate limits.
mod client_auth;
mod limits;

// The security review's attacks, one per finding.
mod hardening;

// The store: its contract on both stores, many instances, Redis outages,
// and the tamper evidence an auditor checks (checkpoints, the audit file).
mod audit_tamper;
mod instances;
mod redis_outage;
mod store_contract;

// Operations: the HTTP edge, discovery, upstream keys, keys (and the cache
// of verified signatures), reload, the command line, the quickstart, traces
// (OTLP) and the deployment files.
mod cli;
mod deploy;
mod discovery;
mod http_errors;
mod key_rotation;
mod metrics;
mod quickstart;
mod reload;
mod server_limits;
mod telemetry;
mod upstream_keys;
mod verified_cache;

// The auditor: traces, tool calls, search.
mod audit_trail;

// The SDK (sdk/, crate xaa-sdk) as MCP servers and agents use it, against
// this broker.
mod sdk;
mod sdk_dpop;
mod sdk_dpop_client;

// The examples (examples/): the one-command demo, and the example MCP
// server, logs API and agent as processes.
mod demo;

// The repository itself: the module graph, and citations and links.
mod architecture;
mod citations;
