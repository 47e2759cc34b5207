//! The configuration file: its shape, loading (TOML + `XAA__SECTION__KEY` env
//! overrides), and validation into a resolved [`Policy`].
//!
//! Owns: every config key, its default, and the error that names it.
//! Must never: be consulted on the request path in raw form; requests only see
//! the resolved `Policy`. Every key is documented in `specs/config.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod validate;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::policy::{AudienceKind, Category, Policy, Purpose};
use crate::types::ClientKind;
use crate::types::GrantType;

/// The whole file. `deny_unknown_fields` everywhere: a typo in a security
/// setting must fail loudly at start, never be silently ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This deployment's issuer identifier (RFC 8414 §2): https, no query or
    /// fragment. Plain http is accepted only for loopback hosts (dev, tests).
    pub issuer: String,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub tokens: TokensConfig,
    #[serde(default)]
    pub dpop: DpopConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub issuers: BTreeMap<String, IssuerConfig>,
    #[serde(default)]
    pub clients: BTreeMap<String, ClientConfig>,
    #[serde(default)]
    pub audiences: BTreeMap<String, AudienceConfig>,
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub agents: AgentsConfig,
    #[serde(default)]
    pub resource_as: ResourceAsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// Where `/metrics` (Prometheus text format) is served: never on the OAuth
/// port, but on a listener of its own, loopback by default, that answers
/// only the addresses in `allow` (others get 403). Applied at start only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Off: no metrics listener (the counters are still kept, in memory).
    pub enabled: bool,
    /// The metrics listener's address (`host:port`). Loopback by default so
    /// that it is never exposed by accident.
    pub listen: String,
    /// CIDR blocks (or single addresses) allowed to scrape.
    pub allow: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

/// Rate limits (MCP EMA §7.5.1: token endpoints SHOULD rate-limit). They
/// hold per instance: N instances behind a load balancer allow about N times
/// these (specs/operations.md "Rate limits").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Off: no 429 is ever answered (limit at a gateway instead).
    pub enabled: bool,
    /// Requests per second one authenticated client may sustain, at every
    /// client-authenticated endpoint together.
    pub client_per_second: u32,
    /// Requests one client may make at once before the rate applies.
    pub client_burst: u32,
    /// Failed client authentications one source address (an IPv6 /64) may
    /// sustain per minute; past its burst, its requests get 429 before any
    /// authentication work until a token refills.
    pub failed_auth_per_minute: u32,
    pub failed_auth_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            client_per_second: 50,
            client_burst: 100,
            failed_auth_per_minute: 30,
            failed_auth_burst: 10,
        }
    }
}

/// A client's own token bucket, replacing the `[limits]` default.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: u32,
    pub burst: u32,
}

/// The audit trail: who may read it, its durable file, its signed
/// checkpoints, and how requests refused before a client is authenticated
/// are recorded (aggregated summaries, apart from the hash-chained trail,
/// decisions §13).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How often the counts are written out as summary records.
    pub unauthenticated_interval_secs: u64,
    /// How long summary records are kept.
    pub unauthenticated_retention_secs: u64,
    /// Client ids that may read the audit trail: `/audit/trace`,
    /// `/audit/records`, `/audit/chain`, the page `/audit/ui`, and the
    /// `xaa-broker audit` commands. They authenticate like any client.
    pub clients: Vec<String>,
    /// A JSON Lines file every record and checkpoint is also appended to
    /// (fail closed: if it cannot be written, no token leaves). Restart only.
    pub file: Option<PathBuf>,
    /// When the file is flushed to disk: `always` (before each answer),
    /// `interval` (every `fsync_interval_ms`), `never` (the OS decides).
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// The file is rotated when it would grow past this (0: never).
    pub rotate_bytes: u64,
    /// A signed checkpoint of this instance's chain every this many records ...
    pub checkpoint_every_records: u64,
    /// ... or every this many seconds when the chain moved.
    pub checkpoint_every_secs: u64,
    /// The private JWK (as `xaa-broker keys generate` writes) that signs
    /// checkpoints; its public half is served at `/audit/jwks`. Absent: an
    /// ephemeral key (checkpoints cannot be checked after a restart).
    pub checkpoint_key: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            unauthenticated_interval_secs: 60,
            unauthenticated_retention_secs: 86_400,
            clients: Vec::new(),
            file: None,
            fsync: FsyncPolicy::Always,
            fsync_interval_ms: 1000,
            rotate_bytes: 100 * 1024 * 1024,
            checkpoint_every_records: 1000,
            checkpoint_every_secs: 60,
            checkpoint_key: None,
        }
    }
}

/// When the audit file reaches the disk (`audit.fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before the answer leaves: nothing released is ever lost.
    Always,
    /// Every `fsync_interval_ms`: a crash can lose that long.
    Interval,
    /// Left to the OS.
    Never,
}

/// The resource authorization server role (ID-JAG redemption, RFC 7523).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceAsConfig {
    /// The resource an access token is issued for when the ID-JAG names none.
    pub default_resource: Option<String>,
}

/// Who may use the admin API (revoke by txn / by subject, audit queries).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Client ids that authenticate like any client and may call /admin/*.
    pub clients: Vec<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    pub clock_skew_secs: i64,
    pub id_jag_ttl_secs: i64,
    pub access_token_ttl_secs: i64,
    pub max_delegation_depth: usize,
    pub max_client_assertion_lifetime_secs: i64,
    /// An ID-JAG presented for redemption may expire at most this far ahead
    /// (RFC 7523 §3: an unreasonably distant `exp` may be refused). It also
    /// bounds how long its replay mark is kept.
    pub max_id_jag_lifetime_secs: i64,
    /// An upstream token (ID token, partner access token, actor token) may
    /// expire at most this far ahead; revocations by subject are kept at
    /// least this long, so a token issued before a cut-off can never
    /// outlive the cut-off.
    pub max_upstream_token_lifetime_secs: i64,
    /// Memory for the signatures of subject and actor tokens already
    /// verified (`trust::verified_cache`), so a token exchanged for several
    /// downstreams is verified once; 0 turns it off. Each entry counts as
    /// `verified_cache::ENTRY_BYTES`, so this bounds the entries too. Read
    /// at start only.
    pub verified_cache_bytes: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            clock_skew_secs: 60,
            id_jag_ttl_secs: 300,
            access_token_ttl_secs: 300,
            max_delegation_depth: 4,
            max_client_assertion_lifetime_secs: 3600,
            max_id_jag_lifetime_secs: 3600,
            max_upstream_token_lifetime_secs: 86400,
            verified_cache_bytes: crate::trust::verified_cache::DEFAULT_BYTES,
        }
    }
}

/// `[dpop]`: how DPoP proofs (RFC 9449) at the token endpoint are judged.
/// A proof is optional for a client unless `clients.<id>.require_dpop`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// The oldest a proof's `iat` may be, in seconds (RFC 9449 §4.3; also
    /// how long its `jti` is remembered). 1..=300.
    pub max_age_secs: i64,
    /// Every proof must carry a current server nonce (RFC 9449 §8): a proof
    /// without one gets `use_dpop_nonce` and a `DPoP-Nonce` to retry with.
    pub require_nonce: bool,
    /// A nonce is accepted for between one and two of these. 10..=3600.
    pub nonce_lifetime_secs: i64,
    /// 64 hex characters (32 bytes): the key nonces are made with. Required
    /// with `require_nonce` on the Redis store, so that every instance
    /// accepts the nonces of the others; a single instance without it makes
    /// a random one at start (nonces then change on reload).
    pub nonce_secret: Option<String>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            max_age_secs: 60,
            require_nonce: false,
            nonce_lifetime_secs: 300,
            nonce_secret: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Generate a key pair at start. Tokens then die with the process and
    /// instances cannot share keys: for development and tests only.
    pub ephemeral: bool,
    /// Algorithm of the ephemeral key (default ES256).
    pub ephemeral_alg: Option<String>,
    /// Private JWK files (as written by `xaa-broker keys generate`).
    pub files: Vec<PathBuf>,
    /// `kid` of the key that signs; the others are published for verification
    /// only (rotation overlap). Default: the first file's key.
    pub active: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum StoreConfig {
    /// One process, no Redis. A struct variant so that a stray key (a `url`
    /// left over from a Redis setup) is an error, not silently ignored.
    Memory {
        /// The audit records kept, by the size of their JSON (oldest dropped
        /// first): what bounds the process's memory under sustained load.
        #[serde(default = "default_audit_max_bytes")]
        audit_max_bytes: usize,
    },
    Redis {
        url: String,
        #[serde(default)]
        prefix: Option<String>,
    },
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::Memory {
            audit_max_bytes: default_audit_max_bytes(),
        }
    }
}

/// The audit records' size the memory store keeps by default (their JSON;
/// in memory a record takes about 2.5 times that, with its indexes).
pub const DEFAULT_MEMORY_AUDIT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// The smallest `store.audit_max_bytes`: a few dozen records.
pub const MIN_MEMORY_AUDIT_MAX_BYTES: usize = 64 * 1024;

fn default_audit_max_bytes() -> usize {
    DEFAULT_MEMORY_AUDIT_MAX_BYTES
}

/// How the broker fetches upstream keys (JWKS, OIDC discovery).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
    /// Keys older than this are refreshed on next use.
    pub cache_ttl_secs: u64,
    /// An unknown `kid` triggers at most one refetch per issuer per interval,
    /// so a storm of forged kids costs the IdP one request, not thousands.
    pub min_refetch_interval_secs: u64,
    /// How long cached keys keep being served while the IdP is unreachable.
    pub max_stale_secs: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 3000,
            max_response_bytes: 256 * 1024,
            cache_ttl_secs: 3600,
            min_refetch_interval_secs: 30,
            max_stale_secs: 24 * 3600,
        }
    }
}

/// How connections are served: the limits that keep one client from holding
/// a connection, or the whole connection table, for ever (`crate::http::server`).
/// Applied at start only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A request head must be complete this long after the connection opened,
    /// or after its first byte on a kept-alive connection (slowloris).
    pub header_read_timeout_ms: u64,
    /// A request body must be complete this long after its head: a slow body
    /// is answered 400 `invalid_request`. Less than `request_timeout_ms`,
    /// which includes the body, so that a slow body is the client's error.
    pub body_read_timeout_ms: u64,
    /// A kept-alive connection with no request in flight and no byte of a new
    /// one is closed after this.
    pub idle_timeout_ms: u64,
    /// Deadline of one request, from its head to its response: past it the
    /// caller gets 503 `temporarily_unavailable`. Longer than every inner
    /// timeout (store operation 2 s, `upstream.timeout_ms`), so that those
    /// fail first with their own answer.
    pub request_timeout_ms: u64,
    /// Concurrent connections. At the cap, the connection idle the longest
    /// is closed for each new one. Clamped at start to the open-files limit
    /// (RLIMIT_NOFILE) minus a reserve.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            request_timeout_ms: 10_000,
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub issuer: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Resolve `jwks_uri` through OIDC discovery / RFC 8414 metadata.
    #[serde(default)]
    pub discovery: bool,
    /// Inline JWK Set (`{"keys": [...]}`), for issuers whose keys are pinned.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// What this issuer may vouch for: `id_token`, `access_token`, `id_jag`, `actor`.
    pub trust: Vec<Purpose>,
    #[serde(default = "default_upstream_algs")]
    pub algs: Vec<String>,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// `sub_profile` recorded for actors this issuer vouches for (`agent`
    /// or `service`). It can only tighten: an identity that belongs to an
    /// agent client, or that an `app` hosts, is capped as an agent anyway.
    #[serde(default)]
    pub actor_profile: Option<ClientKind>,
    /// Roles (names in `[roles]`) this issuer may assert for its users,
    /// through its groups claim or a `roles` claim. Absent: every known role
    /// for an issuer trusted for `id_token` (the enterprise IdP is the
    /// authority on its users), none for any other issuer.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

fn default_upstream_algs() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_groups_claim() -> String {
    "groups".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub kind: ClientKind,
    /// Allowed authentication methods; default from the credential present.
    #[serde(default)]
    pub auth_methods: Option<Vec<String>>,
    /// SHA-256 (hex) of the client secret (`xaa-broker secret generate`).
    #[serde(default)]
    pub secret_sha256: Option<String>,
    /// Public keys for `private_key_jwt`: inline JWK Set or a URI.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default = "default_grants")]
    pub grants: Vec<GrantType>,
    /// Audience identifiers (or aliases) this client may obtain tokens for.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The most this client may ever obtain, in any audience. Absent: no
    /// client-level limit beyond the audience catalogs.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The identity written into `act.sub` when this client acts.
    #[serde(default)]
    pub actor_sub: Option<String>,
    /// Category cap for tokens of any chain this client acts in.
    #[serde(default)]
    pub categories: Option<Vec<Category>>,
    /// For services: the resource URI of tokens issued *for* this client.
    #[serde(default)]
    pub resource: Option<String>,
    /// This client's id at each resource AS, by that AS's issuer.
    #[serde(default)]
    pub ras_client_ids: BTreeMap<String, String>,
    /// Identities this client may present an `actor_token` for (RFC 8693
    /// §2.1): an `app` lists the agents it hosts; an `agent` or `service`
    /// may list extra names for itself (its workload identity). A token
    /// for any other identity is refused, so a stolen actor token cannot
    /// make another client act as that agent.
    #[serde(default)]
    pub actor_identities: Vec<ActorIdentityConfig>,
    /// For `jwt-bearer` clients: the issuers (names under `[issuers]`,
    /// trusted for `id_jag`) whose ID-JAGs this client may redeem. Required
    /// with that grant, so one tenant's IdP can never mint for another's
    /// client.
    #[serde(default)]
    pub id_jag_issuers: Vec<String>,
    /// This client's own rate limit instead of `[limits]`' default.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Refuse this client's token requests that carry no DPoP proof, so
    /// every token it obtains is bound to its key (RFC 9449 §5.2).
    #[serde(default)]
    pub require_dpop: bool,
}

/// One identity an actor token may name: `sub` as vouched for by `issuer`
/// (the name of an `[issuers.<name>]` entry trusted for `actor`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorIdentityConfig {
    pub issuer: String,
    pub sub: String,
}

fn default_grants() -> Vec<GrantType> {
    vec![GrantType::TokenExchange]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceConfig {
    pub kind: AudienceKind,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// For `id_jag` audiences: the RFC 8707 resources at that AS that may be
    /// named with it (the valid `(audience, resource)` pairs, MCP EMA §7).
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub ttl_secs: Option<i64>,
    /// Scope catalog: scope → category.
    #[serde(default)]
    pub scopes: BTreeMap<String, Category>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Categories any agent in a chain may ever receive. Empty: read only.
    pub categories: Vec<Category>,
    /// Scopes never granted to a chain that has an agent in it.
    pub human_only: Vec<String>,
}

/// A configuration problem, naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {problems}")]
pub struct ConfigError {
    pub source_name: String,
    pub problems: String,
}

impl Config {
    /// Load a file (which must exist) and apply `XAA__SECTION__KEY` overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError {
                source_name: name,
                problems: "file not found".into(),
            });
        }
        let figment = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("XAA__").split("__"));
        figment.extract().map_err(|e| ConfigError {
            source_name: name,
            problems: figment_problems(e),
        })
    }

    /// Parse TOML text (the embedded default, tests). No env overrides.
    pub fn from_toml(name: &str, text: &str) -> Result<Config, ConfigError> {
        Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError {
                source_name: name.into(),
                problems: figment_problems(e),
            })
    }

    /// Validate everything and build the policy the request path uses.
    pub fn resolve(&self, name: &str) -> Result<Policy, ConfigError> {
        let mut v = validate::Validator::default();
        let policy = v.resolve(self);
        if v.problems.is_empty() {
            Ok(policy)
        } else {
            Err(ConfigError {
                source_name: name.into(),
                problems: v.problems.join("; "),
            })
        }
    }
}

fn figment_problems(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let kind = e.kind.to_string();
            if path.is_empty() {
                kind
            } else {
                format!("key `{path}`: {kind}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
