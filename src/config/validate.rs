//! Validation of a loaded config into the resolved [`Policy`]: every rule,
//! every problem collected with the key it concerns.
//!
//! Must never: stop at the first problem (one `config check` shows them all)
//! or let an unvalidated value reach the request path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::{ClientConfig, Config, MIN_MEMORY_AUDIT_MAX_BYTES, MetricsConfig, ServerConfig, StoreConfig};
use crate::jose::Alg;
use crate::policy::{
    AgentCap, Audience, AudienceKind, AuditSettings, AuthMethod, Category, Client, ClientRate, DpopSettings, KeySource,
    LimitSettings, Policy, Purpose, TokenSettings, TrustedIssuer,
};
use crate::store::redis::AUDIT_RETENTION;
use crate::trust::keyset::KeySet;
use crate::types::{ActorIdentity, ClientKind, GrantType, ScopeSet, is_https_or_loopback, is_resource_indicator};

/// Trusted issuers by identifier, and by their name in the config.
type Issuers = HashMap<String, Arc<TrustedIssuer>>;
type IssuersByName<'c> = HashMap<&'c str, Arc<TrustedIssuer>>;

/// Collects every problem, so one `config check` run shows them all.
#[derive(Default)]
pub(super) struct Validator {
    pub(super) problems: Vec<String>,
}

impl Validator {
    fn problem(&mut self, key: impl std::fmt::Display, what: impl std::fmt::Display) {
        self.problems.push(format!("key `{key}`: {what}"));
    }

    fn url(&mut self, key: &str, raw: &str) -> Option<url::Url> {
        match url::Url::parse(raw) {
            Ok(u) if u.fragment().is_some() => {
                self.problem(key, "must not have a fragment");
                None
            }
            Ok(u) if is_https_or_loopback(&u) => Some(u),
            Ok(_) => {
                self.problem(
                    key,
                    format!("{raw:?} must be an https URL (http only for loopback hosts)"),
                );
                None
            }
            Err(e) => {
                self.problem(key, format!("{raw:?} is not a URL: {e}"));
                None
            }
        }
    }

    fn algs(&mut self, key: &str, raw: &[String]) -> Vec<Alg> {
        let mut out = Vec::new();
        for a in raw {
            match Alg::parse(a) {
                Some(alg) => out.push(alg),
                None => self.problem(
                    key,
                    format!("algorithm {a:?} is not allowed (allowed: ES256, ES384, RS256, PS256, EdDSA)"),
                ),
            }
        }
        if out.is_empty() && !raw.is_empty() {
            return out;
        }
        if raw.is_empty() {
            self.problem(key, "at least one algorithm is required");
        }
        out
    }

    fn inline_jwks(&mut self, key: &str, value: &serde_json::Value, algs: &[Alg]) -> Option<KeySource> {
        match KeySet::parse(value, algs) {
            Ok(set) => Some(KeySource::Inline(Arc::new(set))),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    /// A count that must be at least 1 (a zero rate or burst would refuse
    /// everything; `limits.enabled = false` is how limits are turned off).
    fn at_least_one(&mut self, key: impl std::fmt::Display, v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap_or_else(|| {
            self.problem(
                key,
                "must be at least 1 (set limits.enabled = false to turn rate limits off)",
            );
            NonZeroU32::MIN
        })
    }

    fn limits(&mut self, c: &Config) -> (LimitSettings, ClientRate) {
        let l = &c.limits;
        let default_rate = ClientRate {
            per_second: self.at_least_one("limits.client_per_second", l.client_per_second),
            burst: self.at_least_one("limits.client_burst", l.client_burst),
        };
        let settings = LimitSettings {
            enabled: l.enabled,
            failed_auth_per_minute: self.at_least_one("limits.failed_auth_per_minute", l.failed_auth_per_minute),
            failed_auth_burst: self.at_least_one("limits.failed_auth_burst", l.failed_auth_burst),
        };
        (settings, default_rate)
    }

    fn audit(&mut self, c: &Config) -> AuditSettings {
        let a = &c.audit;
        if !(1..=3600).contains(&a.unauthenticated_interval_secs) {
            self.problem(
                "audit.unauthenticated_interval_secs",
                "must be between 1 and 3600 seconds",
            );
        }
        // Summaries are noise, not evidence: never kept longer than the
        // audit trail itself, and at least one interval so each is readable.
        if a.unauthenticated_retention_secs < a.unauthenticated_interval_secs
            || a.unauthenticated_retention_secs > AUDIT_RETENTION.as_secs()
        {
            self.problem(
                "audit.unauthenticated_retention_secs",
                format!(
                    "must be at least audit.unauthenticated_interval_secs and at most {} (90 days, the audit trail's retention)",
                    AUDIT_RETENTION.as_secs()
                ),
            );
        }
        for (i, id) in a.clients.iter().enumerate() {
            if !c.clients.contains_key(id) {
                self.problem(format!("audit.clients[{i}]"), format!("unknown client {id:?}"));
            }
        }
        if a.checkpoint_every_records == 0 {
            self.problem("audit.checkpoint_every_records", "must be at least 1");
        }
        if !(1..=86_400).contains(&a.checkpoint_every_secs) {
            self.problem("audit.checkpoint_every_secs", "must be between 1 and 86400 seconds");
        }
        if a.fsync == crate::config::FsyncPolicy::Interval && !(1..=60_000).contains(&a.fsync_interval_ms) {
            self.problem("audit.fsync_interval_ms", "must be between 1 and 60000 ms");
        }
        if a.rotate_bytes != 0 && a.rotate_bytes < 64 * 1024 {
            self.problem("audit.rotate_bytes", "must be 0 (never rotate) or at least 65536");
        }
        AuditSettings {
            unauthenticated_interval: Duration::from_secs(a.unauthenticated_interval_secs.clamp(1, 3600)),
            unauthenticated_retention: Duration::from_secs(a.unauthenticated_retention_secs.max(1)),
            clients: a.clients.iter().cloned().collect(),
        }
    }

    /// Validate everything and build the policy, section by section; each
    /// section's rules live in the method named for it.
    pub(super) fn resolve(&mut self, c: &Config) -> Policy {
        let issuer = c.issuer.trim_end_matches('/').to_owned();
        if let Some(u) = self.url("issuer", &issuer)
            && u.query().is_some()
        {
            self.problem("issuer", "must not have a query (RFC 8414 §2)");
        }
        if c.listen.parse::<std::net::SocketAddr>().is_err() {
            self.problem(
                "listen",
                format!("{:?} is not an address like 127.0.0.1:8080", c.listen),
            );
        }
        self.tokens(c);
        let (audiences, all_scopes) = self.audiences(c);
        let roles = self.roles(c, &all_scopes);
        let (issuers, issuers_by_name) = self.issuers(c, &issuer, &roles);
        let (limits, default_rate) = self.limits(c);
        let audit = self.audit(c);
        let clients = self.clients(
            c,
            &issuer,
            &audiences,
            &all_scopes,
            &issuers,
            &issuers_by_name,
            default_rate,
        );
        let clients_by_identity = self.clients_by_identity(&clients);
        for (i, s) in c.agents.human_only.iter().enumerate() {
            if !all_scopes.contains(s) {
                self.problem(
                    format!("agents.human_only[{i}]"),
                    format!("scope {s:?} is in no audience's catalog"),
                );
            }
        }
        let agent_categories: BTreeSet<Category> = if c.agents.categories.is_empty() {
            [Category::Read].into()
        } else {
            c.agents.categories.iter().copied().collect()
        };

        if let StoreConfig::Redis { url, .. } = &c.store
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            self.problem("store.url", "must be a redis:// or rediss:// URL");
        }
        match (c.keys.ephemeral, c.keys.files.is_empty()) {
            (false, true) => self.problem(
                "keys",
                "set keys.files (see `xaa-broker keys generate`) or keys.ephemeral = true for development",
            ),
            (true, false) => self.problem("keys", "set either keys.ephemeral = true or keys.files, not both"),
            _ => {}
        }
        if let Some(a) = &c.keys.ephemeral_alg
            && Alg::parse(a).is_none()
        {
            self.problem("keys.ephemeral_alg", format!("{a:?} is not an allowed algorithm"));
        }

        if let Some(r) = &c.resource_as.default_resource
            && !audiences
                .get(r)
                .is_some_and(|a| a.kind == AudienceKind::AccessToken && &a.id == r)
        {
            self.problem(
                "resource_as.default_resource",
                format!("{r:?} is not an access_token audience"),
            );
        }
        for (i, id) in c.admin.clients.iter().enumerate() {
            if !clients.contains_key(id) {
                self.problem(format!("admin.clients[{i}]"), format!("unknown client {id:?}"));
            }
        }
        let dpop = self.dpop(c);
        let t = &c.tokens;
        Policy {
            issuer: issuer.clone(),
            default_resource: c.resource_as.default_resource.clone(),
            admin_clients: c.admin.clients.iter().cloned().collect(),
            limits,
            audit,
            token_endpoint: format!("{issuer}/token"),
            dpop,
            tokens: TokenSettings {
                clock_skew_secs: t.clock_skew_secs,
                max_delegation_depth: t.max_delegation_depth,
                max_client_assertion_lifetime_secs: t.max_client_assertion_lifetime_secs,
                max_id_jag_lifetime_secs: t.max_id_jag_lifetime_secs,
                max_upstream_token_lifetime_secs: t.max_upstream_token_lifetime_secs,
            },
            issuers,
            clients_by_actor: clients
                .values()
                .map(|c: &Arc<Client>| (c.actor_sub.clone(), c.clone()))
                .collect(),
            clients_by_identity,
            clients,
            audiences,
            roles,
            agents: AgentCap {
                categories: agent_categories,
                human_only: ScopeSet::from_iter(c.agents.human_only.iter().cloned()),
            },
        }
    }

    fn tokens(&mut self, c: &Config) {
        let t = &c.tokens;
        for (k, v) in [
            ("tokens.clock_skew_secs", t.clock_skew_secs),
            ("tokens.id_jag_ttl_secs", t.id_jag_ttl_secs),
            ("tokens.access_token_ttl_secs", t.access_token_ttl_secs),
            (
                "tokens.max_client_assertion_lifetime_secs",
                t.max_client_assertion_lifetime_secs,
            ),
            ("tokens.max_id_jag_lifetime_secs", t.max_id_jag_lifetime_secs),
            (
                "tokens.max_upstream_token_lifetime_secs",
                t.max_upstream_token_lifetime_secs,
            ),
        ] {
            if v < 0 || (k != "tokens.clock_skew_secs" && v == 0) {
                self.problem(k, "must be a positive number of seconds");
            }
        }
        if t.clock_skew_secs > 300 {
            self.problem(
                "tokens.clock_skew_secs",
                "more than 300 s of skew would weaken every expiry check",
            );
        }
        if t.max_delegation_depth == 0 {
            self.problem("tokens.max_delegation_depth", "must be at least 1");
        }
        {
            use crate::trust::verified_cache::{MAX_BYTES, MIN_BYTES};
            let bytes = t.verified_cache_bytes;
            if bytes != 0 && !(MIN_BYTES..=MAX_BYTES).contains(&bytes) {
                self.problem(
                    "tokens.verified_cache_bytes",
                    format!(
                        "must be 0 (off) or between {MIN_BYTES} (64 KiB) and {MAX_BYTES} (1 GiB): \
                         a smaller cache holds a handful of tokens"
                    ),
                );
            }
        }
        self.server(&c.server);
        self.metrics(&c.metrics);
        self.store(&c.store);
    }

    /// `[dpop]`: bounded windows, and a nonce secret every instance shares
    /// when nonces are required on the shared store.
    fn dpop(&mut self, c: &Config) -> DpopSettings {
        let d = &c.dpop;
        if !(1..=300).contains(&d.max_age_secs) {
            self.problem("dpop.max_age_secs", "must be 1..=300 seconds");
        }
        if !(10..=3600).contains(&d.nonce_lifetime_secs) {
            self.problem("dpop.nonce_lifetime_secs", "must be 10..=3600 seconds");
        }
        let configured = d.nonce_secret.as_deref().map(|hex| {
            let bytes = (hex.len() == 64)
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .flatten();
            if bytes.is_none() {
                self.problem("dpop.nonce_secret", "must be 64 hex characters (32 bytes)");
            }
            bytes.unwrap_or_default()
        });
        if d.require_nonce && configured.is_none() && matches!(c.store, StoreConfig::Redis { .. }) {
            self.problem(
                "dpop.nonce_secret",
                "set it when require_nonce is on with the Redis store, so that every instance accepts the others' nonces",
            );
        }
        let nonce_secret = match configured {
            Some(bytes) => bytes,
            None => {
                let mut random = vec![0u8; 32];
                if openssl::rand::rand_bytes(&mut random).is_err() {
                    self.problem("dpop.nonce_secret", "no random secret could be made; set one");
                }
                random
            }
        };
        DpopSettings {
            max_age_secs: d.max_age_secs,
            require_nonce: d.require_nonce,
            nonce_lifetime_secs: d.nonce_lifetime_secs,
            nonce_secret,
        }
    }

    fn store(&mut self, s: &StoreConfig) {
        if let StoreConfig::Memory { audit_max_bytes } = s
            && *audit_max_bytes < MIN_MEMORY_AUDIT_MAX_BYTES
        {
            self.problem(
                "store.audit_max_bytes",
                format!(
                    "must be at least {MIN_MEMORY_AUDIT_MAX_BYTES} (64 KiB): the trail would hold a handful of records"
                ),
            );
        }
    }

    fn audiences(&mut self, c: &Config) -> (HashMap<String, Arc<Audience>>, BTreeSet<String>) {
        let t = &c.tokens;
        let mut audiences: HashMap<String, Arc<Audience>> = HashMap::new();
        let mut all_scopes = BTreeSet::new();
        for (id, a) in &c.audiences {
            let key = format!("audiences.{id}");
            if id.contains(' ') || id.is_empty() {
                self.problem(&key, "an audience identifier must be non-empty with no spaces");
            }
            // ID-JAG §4.3: the audience is the resource AS's issuer identifier.
            if a.kind == AudienceKind::IdJag {
                self.url(&key, id);
            }
            if a.kind == AudienceKind::AccessToken && url::Url::parse(id).is_err() {
                self.problem(
                    &key,
                    "an access_token audience is a resource: an absolute URI (RFC 8707)",
                );
            }
            for (i, r) in a.resources.iter().enumerate() {
                if !is_resource_indicator(r) {
                    self.problem(
                        format!("{key}.resources[{i}]"),
                        format!("{r:?} must be an absolute URI without fragment"),
                    );
                }
            }
            if a.kind == AudienceKind::AccessToken && !a.resources.is_empty() {
                self.problem(format!("{key}.resources"), "only id_jag audiences list resources");
            }
            if a.scopes.is_empty() {
                self.problem(
                    format!("{key}.scopes"),
                    "the scope catalog is empty: nothing could ever be granted",
                );
            }
            for s in a.scopes.keys() {
                if ScopeSet::parse(s).map(|p| p.len() != 1).unwrap_or(true) {
                    self.problem(
                        format!("{key}.scopes"),
                        format!("{s:?} is not a single RFC 6749 scope token"),
                    );
                }
                all_scopes.insert(s.clone());
            }
            let ttl = a.ttl_secs.unwrap_or(match a.kind {
                AudienceKind::IdJag => t.id_jag_ttl_secs,
                AudienceKind::AccessToken => t.access_token_ttl_secs,
            });
            if ttl <= 0 {
                self.problem(format!("{key}.ttl_secs"), "must be positive");
            }
            let aud = Arc::new(Audience {
                id: id.clone(),
                kind: a.kind,
                resources: a.resources.clone(),
                ttl_secs: ttl,
                scopes: a.scopes.clone(),
            });
            for name in std::iter::once(id).chain(a.aliases.iter()) {
                if audiences.insert(name.clone(), aud.clone()).is_some() {
                    self.problem(&key, format!("{name:?} names more than one audience"));
                }
            }
        }

        (audiences, all_scopes)
    }

    fn roles(&mut self, c: &Config, all_scopes: &BTreeSet<String>) -> BTreeMap<String, ScopeSet> {
        let mut roles = BTreeMap::new();
        for (role, scopes) in &c.roles {
            for s in scopes {
                if !all_scopes.contains(s) {
                    self.problem(
                        format!("roles.{role}"),
                        format!("scope {s:?} is in no audience's catalog"),
                    );
                }
            }
            roles.insert(role.clone(), ScopeSet::from_iter(scopes.iter().cloned()));
        }

        roles
    }

    fn issuers<'c>(
        &mut self,
        c: &'c Config,
        issuer: &str,
        roles: &BTreeMap<String, ScopeSet>,
    ) -> (Issuers, IssuersByName<'c>) {
        let mut issuers = HashMap::new();
        let mut issuers_by_name: HashMap<&str, Arc<TrustedIssuer>> = HashMap::new();
        for (name, i) in &c.issuers {
            let key = format!("issuers.{name}");
            let iss = i.issuer.trim_end_matches('/').to_owned();
            self.url(&format!("{key}.issuer"), &iss);
            if iss == issuer {
                self.problem(
                    &key,
                    "our own issuer is trusted implicitly for our access tokens and must not be listed",
                );
            }
            if i.trust.is_empty() {
                self.problem(
                    format!("{key}.trust"),
                    "list what this issuer may vouch for: id_token, access_token, id_jag, actor",
                );
            }
            let algs = self.algs(&format!("{key}.algs"), &i.algs);
            let keys = match (&i.jwks_uri, i.discovery, &i.jwks) {
                (Some(uri), false, None) => self.url(&format!("{key}.jwks_uri"), uri).map(|u| KeySource::Remote {
                    cache_key: format!("issuer:{iss}"),
                    name: Arc::from(name.as_str()),
                    jwks_uri: Some(u.to_string()),
                    discovery_issuer: None,
                }),
                (None, true, None) => Some(KeySource::Remote {
                    cache_key: format!("issuer:{iss}"),
                    name: Arc::from(name.as_str()),
                    jwks_uri: None,
                    discovery_issuer: Some(iss.clone()),
                }),
                (None, false, Some(jwks)) => self.inline_jwks(&format!("{key}.jwks"), jwks, &algs),
                _ => {
                    self.problem(&key, "set exactly one of jwks_uri, discovery = true, or jwks");
                    None
                }
            };
            if i.actor_profile == Some(ClientKind::App) {
                self.problem(format!("{key}.actor_profile"), "must be agent or service");
            }
            let accepted_roles: BTreeSet<String> = match &i.roles {
                None if i.trust.contains(&Purpose::IdToken) => roles.keys().cloned().collect(),
                None => BTreeSet::new(),
                Some(list) => {
                    for r in list {
                        if !roles.contains_key(r) {
                            self.problem(format!("{key}.roles"), format!("unknown role {r:?} (see [roles])"));
                        }
                    }
                    list.iter().cloned().collect()
                }
            };
            if let Some(keys) = keys {
                let trusted = TrustedIssuer {
                    name: name.clone(),
                    issuer: iss.clone(),
                    keys,
                    purposes: i.trust.iter().copied().collect(),
                    algs,
                    groups_claim: i.groups_claim.clone(),
                    actor_profile: i.actor_profile.unwrap_or(ClientKind::Agent),
                    roles: accepted_roles,
                };
                let trusted = Arc::new(trusted);
                issuers_by_name.insert(name.as_str(), trusted.clone());
                if issuers.insert(iss.clone(), trusted).is_some() {
                    self.problem(&key, format!("issuer {iss:?} is configured twice"));
                }
            }
        }

        (issuers, issuers_by_name)
    }

    #[allow(clippy::too_many_arguments)]
    fn clients(
        &mut self,
        c: &Config,
        issuer: &str,
        audiences: &HashMap<String, Arc<Audience>>,
        all_scopes: &BTreeSet<String>,
        issuers: &Issuers,
        issuers_by_name: &IssuersByName<'_>,
        default_rate: ClientRate,
    ) -> HashMap<String, Arc<Client>> {
        let mut clients = HashMap::new();
        let mut actor_subs: HashMap<String, String> = HashMap::new();
        for (id, cc) in &c.clients {
            let key = format!("clients.{id}");
            // Client ids become parts of store keys and audit fields: RFC
            // 3986 unreserved characters only, so no key is ambiguous.
            if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            {
                self.problem(&key, "a client id is 1 to 128 characters from A-Z a-z 0-9 - . _ ~");
            }
            if id == issuer || issuers.contains_key(id.as_str()) {
                self.problem(&key, "a client id must not equal an issuer identifier (its assertions would be confusable with issuer tokens)");
            }
            let auth = self.client_auth(&key, id, cc);
            let (allowed_audiences, scopes, ras_client_ids) = self.client_targets(&key, cc, audiences, all_scopes);
            if cc.kind == ClientKind::Service && cc.resource.is_none() {
                self.problem(
                    format!("{key}.resource"),
                    "a service client needs its own resource URI (the aud of tokens it may exchange)",
                );
            }
            if let Some(r) = &cc.resource
                && url::Url::parse(r).is_err()
            {
                self.problem(format!("{key}.resource"), "must be an absolute URI");
            }
            let actor_sub = cc.actor_sub.clone().unwrap_or_else(|| id.clone());
            if let Some(other) = actor_subs.insert(actor_sub.clone(), id.clone()) {
                self.problem(
                    format!("{key}.actor_sub"),
                    format!("{actor_sub:?} is also the actor of client {other:?}"),
                );
            }
            let actor_identities = self.actor_identities(&key, cc, issuers_by_name);
            let id_jag_issuers = self.id_jag_issuers(&key, cc, issuers_by_name);
            let rate = match cc.rate_limit {
                Some(r) => ClientRate {
                    per_second: self.at_least_one(format!("{key}.rate_limit.per_second"), r.per_second),
                    burst: self.at_least_one(format!("{key}.rate_limit.burst"), r.burst),
                },
                None => default_rate,
            };
            if let Some(auth) = auth {
                clients.insert(
                    id.clone(),
                    Arc::new(Client {
                        id: id.clone(),
                        kind: cc.kind,
                        auth,
                        grants: cc.grants.iter().copied().collect(),
                        audiences: allowed_audiences,
                        scopes,
                        actor_sub,
                        categories: cc.categories.as_ref().map(|c| c.iter().copied().collect()),
                        resource: cc.resource.clone(),
                        ras_client_ids,
                        actor_identities,
                        id_jag_issuers,
                        rate,
                        require_dpop: cc.require_dpop,
                    }),
                );
            }
        }

        clients
    }

    /// What a client may obtain: its `audiences` (aliases resolved), its
    /// `scopes`, and its ids at resource ASes (`ras_client_ids`).
    fn client_targets(
        &mut self,
        key: &str,
        cc: &ClientConfig,
        audiences: &HashMap<String, Arc<Audience>>,
        all_scopes: &BTreeSet<String>,
    ) -> (HashSet<String>, Option<ScopeSet>, HashMap<String, String>) {
        let mut allowed_audiences = HashSet::new();
        for (i, a) in cc.audiences.iter().enumerate() {
            match audiences.get(a) {
                Some(aud) => {
                    allowed_audiences.insert(aud.id.clone());
                }
                None => self.problem(format!("{key}.audiences[{i}]"), format!("unknown audience {a:?}")),
            }
        }
        let scopes = cc.scopes.as_ref().map(|s| {
            for x in s {
                if !all_scopes.contains(x) {
                    self.problem(
                        format!("{key}.scopes"),
                        format!("scope {x:?} is in no audience's catalog"),
                    );
                }
            }
            ScopeSet::from_iter(s.iter().cloned())
        });
        let mut ras_client_ids = HashMap::new();
        for (ras, rid) in &cc.ras_client_ids {
            match audiences.get(ras) {
                Some(aud) if aud.kind == AudienceKind::IdJag => {
                    ras_client_ids.insert(aud.id.clone(), rid.clone());
                }
                _ => self.problem(
                    format!("{key}.ras_client_ids"),
                    format!("{ras:?} is not an id_jag audience"),
                ),
            }
        }
        (allowed_audiences, scopes, ras_client_ids)
    }

    /// `clients.<id>.actor_identities`: each an issuer trusted for `actor`
    /// and a non-empty `sub` (specs/decisions.md §3).
    fn actor_identities(
        &mut self,
        key: &str,
        cc: &ClientConfig,
        issuers_by_name: &IssuersByName<'_>,
    ) -> Vec<ActorIdentity> {
        let mut actor_identities = Vec::new();
        for (i, a) in cc.actor_identities.iter().enumerate() {
            let akey = format!("{key}.actor_identities[{i}]");
            match issuers_by_name.get(a.issuer.as_str()) {
                Some(t) if t.purposes.contains(&Purpose::Actor) => {
                    if a.sub.is_empty() {
                        self.problem(format!("{akey}.sub"), "must not be empty");
                    }
                    actor_identities.push(ActorIdentity {
                        iss: t.issuer.clone(),
                        sub: a.sub.clone(),
                    });
                }
                Some(_) => self.problem(
                    format!("{akey}.issuer"),
                    format!("issuer {:?} is not trusted for actor", a.issuer),
                ),
                None => self.problem(
                    format!("{akey}.issuer"),
                    format!("{:?} is not an issuer name under [issuers]", a.issuer),
                ),
            }
        }
        actor_identities
    }

    /// `clients.<id>.id_jag_issuers`: issuers trusted for `id_jag`, required
    /// with the jwt-bearer grant (specs/decisions.md §18).
    fn id_jag_issuers(&mut self, key: &str, cc: &ClientConfig, issuers_by_name: &IssuersByName<'_>) -> HashSet<String> {
        let mut id_jag_issuers = HashSet::new();
        for (i, name) in cc.id_jag_issuers.iter().enumerate() {
            match issuers_by_name.get(name.as_str()) {
                Some(t) if t.purposes.contains(&Purpose::IdJag) => {
                    id_jag_issuers.insert(t.issuer.clone());
                }
                _ => self.problem(
                    format!("{key}.id_jag_issuers[{i}]"),
                    format!("{name:?} is not an issuer name under [issuers] trusted for id_jag"),
                ),
            }
        }
        if cc.grants.contains(&GrantType::JwtBearer) && cc.id_jag_issuers.is_empty() {
            self.problem(
                format!("{key}.id_jag_issuers"),
                "a jwt-bearer client must name the issuers whose ID-JAGs it may redeem",
            );
        }
        id_jag_issuers
    }

    /// Each actor identity belongs to one client, whose caps follow it.
    fn clients_by_identity(
        &mut self,
        clients: &HashMap<String, Arc<Client>>,
    ) -> HashMap<String, HashMap<String, Arc<Client>>> {
        let mut clients_by_identity: HashMap<String, HashMap<String, Arc<Client>>> = HashMap::new();
        let mut sorted: Vec<&Arc<Client>> = clients.values().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for client in sorted {
            for ident in &client.actor_identities {
                let by_sub = clients_by_identity.entry(ident.iss.clone()).or_default();
                if let Some(other) = by_sub.insert(ident.sub.clone(), client.clone()) {
                    self.problem(
                        format!("clients.{}.actor_identities", client.id),
                        format!("{:?} is also an actor identity of client {:?}", ident.sub, other.id),
                    );
                }
            }
        }

        clients_by_identity
    }

    /// `[server]`: every limit positive, timeouts at most a day (a longer one
    /// is no limit, and deadlines are computed as instants), and the body
    /// deadline inside the request deadline.
    fn server(&mut self, s: &ServerConfig) {
        const DAY_MS: u64 = 24 * 3600 * 1000;
        for (k, v) in [
            ("server.header_read_timeout_ms", s.header_read_timeout_ms),
            ("server.body_read_timeout_ms", s.body_read_timeout_ms),
            ("server.idle_timeout_ms", s.idle_timeout_ms),
            ("server.request_timeout_ms", s.request_timeout_ms),
        ] {
            if v == 0 {
                self.problem(k, "must be positive");
            } else if v > DAY_MS {
                self.problem(k, format!("must be at most {DAY_MS} (one day)"));
            }
        }
        if s.max_connections == 0 {
            self.problem("server.max_connections", "must be positive");
        }
        if s.body_read_timeout_ms >= s.request_timeout_ms && s.request_timeout_ms > 0 {
            self.problem(
                "server.body_read_timeout_ms",
                "must be less than server.request_timeout_ms: the request deadline includes reading the body, \
                 and a slow body is the client's error (400), not ours (503)",
            );
        }
    }

    fn metrics(&mut self, m: &MetricsConfig) {
        if m.listen.parse::<std::net::SocketAddr>().is_err() {
            self.problem(
                "metrics.listen",
                "must be an IP address and port, such as 127.0.0.1:9464",
            );
        }
        for (i, entry) in m.allow.iter().enumerate() {
            if let Err(e) = crate::observe::allow::Cidr::parse(entry) {
                self.problem(format!("metrics.allow[{i}]"), e);
            }
        }
        if m.enabled && m.allow.is_empty() {
            self.problem(
                "metrics.allow",
                "allows no one: list who may scrape (such as 127.0.0.0/8), or set metrics.enabled = false",
            );
        }
    }

    fn client_auth(&mut self, key: &str, id: &str, cc: &ClientConfig) -> Option<AuthMethod> {
        let has_keys = cc.jwks.is_some() || cc.jwks_uri.is_some();
        let methods: Vec<String> = match &cc.auth_methods {
            Some(m) => m.clone(),
            None if has_keys => vec!["private_key_jwt".into()],
            None => vec!["client_secret_basic".into(), "client_secret_post".into()],
        };
        let mut basic = false;
        let mut post = false;
        let mut jwt = false;
        for m in &methods {
            match m.as_str() {
                "client_secret_basic" => basic = true,
                "client_secret_post" => post = true,
                "private_key_jwt" => jwt = true,
                other => self.problem(
                    format!("{key}.auth_methods"),
                    format!("{other:?} is not supported (client_secret_basic, client_secret_post, private_key_jwt)"),
                ),
            }
        }
        if jwt && (basic || post) {
            self.problem(
                format!("{key}.auth_methods"),
                "a client uses either a secret or private_key_jwt, not both",
            );
            return None;
        }
        if jwt {
            if cc.secret_sha256.is_some() {
                self.problem(format!("{key}.secret_sha256"), "a private_key_jwt client has no secret");
            }
            let keys = match (&cc.jwks, &cc.jwks_uri) {
                (Some(j), None) => self.inline_jwks(&format!("{key}.jwks"), j, &Alg::ALL),
                (None, Some(u)) => self.url(&format!("{key}.jwks_uri"), u).map(|u| KeySource::Remote {
                    cache_key: format!("client:{id}"),
                    name: Arc::from(format!("client:{id}")),
                    jwks_uri: Some(u.to_string()),
                    discovery_issuer: None,
                }),
                _ => {
                    self.problem(key, "private_key_jwt needs exactly one of jwks or jwks_uri");
                    None
                }
            }?;
            return Some(AuthMethod::PrivateKeyJwt { keys });
        }
        match &cc.secret_sha256 {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                let mut hash = [0u8; 32];
                for (i, chunk) in h.as_bytes().chunks(2).enumerate() {
                    let s = std::str::from_utf8(chunk).unwrap_or("00");
                    hash[i] = u8::from_str_radix(s, 16).unwrap_or(0);
                }
                Some(AuthMethod::Secret {
                    sha256: hash,
                    basic,
                    post,
                })
            }
            Some(_) => {
                self.problem(
                    format!("{key}.secret_sha256"),
                    "must be 64 hex characters (see `xaa-broker secret generate`)",
                );
                None
            }
            None => {
                self.problem(key, "set secret_sha256, or jwks/jwks_uri for private_key_jwt");
                None
            }
        }
    }
}
