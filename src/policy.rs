//! The resolved policy and the scope/lifetime decision.
//!
//! Owns: the attenuation rule (specs/decisions.md §5) — granted scope ⊆
//! requested ∩ client allowance ∩ audience catalog ∩ user entitlement ∩
//! subject scope (same audience) ∩ the cap of every actor in the chain; `exp`
//! ≤ subject `exp` and ≤ now + audience TTL; delegation depth bounded.
//! Must never: do I/O, read the clock, or consult anything but its inputs.
//! It is `(&Policy, &ExchangeContext) -> Result<Grant, OAuthError>`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chain::Act;
use crate::error::OAuthError;
use crate::jose::Alg;
use crate::types::{ActorIdentity, ClientKind, GrantType, ScopeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Read,
    Write,
    Destructive,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudienceKind {
    /// A resource authorization server: we issue ID-JAGs for it.
    IdJag,
    /// A resource (RFC 8707 URI): we issue RFC 9068 access tokens for it.
    AccessToken,
}

/// What a trusted issuer may vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    IdToken,
    AccessToken,
    IdJag,
    Actor,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    /// Pinned keys from config, parsed once at load.
    Inline(Arc<crate::trust::keyset::KeySet>),
    /// Keys fetched over HTTPS and cached under `cache_key`.
    Remote {
        cache_key: String,
        /// What metrics call this source: the issuer's name in the config,
        /// or `client:<id>` for a client's `jwks_uri` (bounded by the config).
        name: Arc<str>,
        jwks_uri: Option<String>,
        /// Resolve `jwks_uri` from this issuer's metadata.
        discovery_issuer: Option<String>,
    },
}

#[derive(Debug)]
pub struct TrustedIssuer {
    pub name: String,
    pub issuer: String,
    pub keys: KeySource,
    pub purposes: HashSet<Purpose>,
    pub algs: Vec<Alg>,
    pub groups_claim: String,
    pub actor_profile: ClientKind,
    /// The roles this issuer may assert for its users.
    pub roles: BTreeSet<String>,
}

#[derive(Debug)]
pub enum AuthMethod {
    Secret { sha256: [u8; 32], basic: bool, post: bool },
    PrivateKeyJwt { keys: KeySource },
}

#[derive(Debug)]
pub struct Client {
    pub id: String,
    pub kind: ClientKind,
    pub auth: AuthMethod,
    pub grants: HashSet<GrantType>,
    /// Canonical audience ids (aliases resolved).
    pub audiences: HashSet<String>,
    pub scopes: Option<ScopeSet>,
    pub actor_sub: String,
    pub categories: Option<BTreeSet<Category>>,
    pub resource: Option<String>,
    pub ras_client_ids: HashMap<String, String>,
    /// Identities this client may present actor tokens for.
    pub actor_identities: Vec<ActorIdentity>,
    /// Issuer identifiers whose ID-JAGs this client may redeem.
    pub id_jag_issuers: HashSet<String>,
    /// Its token bucket: `clients.<id>.rate_limit`, else the `[limits]` default.
    pub rate: ClientRate,
    /// Every token request of this client must carry a DPoP proof, so every
    /// token it gets is key-bound (RFC 9449 §5.2 `dpop_bound_access_tokens`).
    pub require_dpop: bool,
}

impl Client {
    /// This client as the chain rules see it (`chain::new_actor`).
    pub fn presenter(&self) -> crate::chain::Presenter<'_> {
        crate::chain::Presenter {
            kind: self.kind,
            actor_sub: &self.actor_sub,
            identities: &self.actor_identities,
        }
    }
}

/// A token bucket for one client: `burst` requests at once, refilled at
/// `per_second` (enforced by `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// `[limits]`, resolved (the per-client rates are on each `Client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub enabled: bool,
    pub failed_auth_per_minute: NonZeroU32,
    pub failed_auth_burst: NonZeroU32,
}

/// `[audit]`, resolved: how unauthenticated noise is summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub unauthenticated_interval: Duration,
    pub unauthenticated_retention: Duration,
    /// Clients that may read the audit trail (`audit.clients`).
    pub clients: HashSet<String>,
}

#[derive(Debug)]
pub struct Audience {
    pub id: String,
    pub kind: AudienceKind,
    pub resources: Vec<String>,
    pub ttl_secs: i64,
    pub scopes: BTreeMap<String, Category>,
}

impl Audience {
    pub fn catalog(&self) -> ScopeSet {
        ScopeSet::from_iter(self.scopes.keys().cloned())
    }
}

#[derive(Debug)]
pub struct TokenSettings {
    pub clock_skew_secs: i64,
    pub max_delegation_depth: usize,
    pub max_client_assertion_lifetime_secs: i64,
    pub max_id_jag_lifetime_secs: i64,
    pub max_upstream_token_lifetime_secs: i64,
}

/// `[dpop]`, resolved: how DPoP proofs (RFC 9449) are judged.
pub struct DpopSettings {
    /// The oldest a proof's `iat` may be (RFC 9449 §4.3 check 11); a proof
    /// from the future is allowed `tokens.clock_skew_secs`.
    pub max_age_secs: i64,
    /// Every proof must carry a current server nonce (RFC 9449 §8).
    pub require_nonce: bool,
    /// A nonce is good for between one and two of these.
    pub nonce_lifetime_secs: i64,
    /// The nonces' HMAC key: `dpop.nonce_secret`, shared by every instance,
    /// or random per process when not set (a single instance only).
    pub nonce_secret: Vec<u8>,
}

impl std::fmt::Debug for DpopSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopSettings")
            .field("max_age_secs", &self.max_age_secs)
            .field("require_nonce", &self.require_nonce)
            .field("nonce_lifetime_secs", &self.nonce_lifetime_secs)
            .field("nonce_secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug)]
pub struct AgentCap {
    pub categories: BTreeSet<Category>,
    pub human_only: ScopeSet,
}

/// Everything the request path needs, resolved and indexed once at load.
/// Swapped atomically on reload; a request sees one consistent version.
#[derive(Debug)]
pub struct Policy {
    pub issuer: String,
    pub token_endpoint: String,
    pub tokens: TokenSettings,
    pub dpop: DpopSettings,
    /// Trusted upstream issuers by issuer identifier.
    pub issuers: HashMap<String, Arc<TrustedIssuer>>,
    pub clients: HashMap<String, Arc<Client>>,
    /// Clients by the identity they carry in `act.sub`, to find their caps.
    pub clients_by_actor: HashMap<String, Arc<Client>>,
    /// Clients by the actor identities configured for them, by issuer then
    /// `sub`: an `act` entry vouched for by an actor issuer is still judged
    /// by the client it belongs to.
    pub clients_by_identity: HashMap<String, HashMap<String, Arc<Client>>>,
    /// Audiences by identifier and by alias.
    pub audiences: HashMap<String, Arc<Audience>>,
    pub roles: BTreeMap<String, ScopeSet>,
    pub agents: AgentCap,
    /// Resource AS role: the resource used when an ID-JAG names none.
    pub default_resource: Option<String>,
    /// Clients allowed to call the admin API.
    pub admin_clients: HashSet<String>,
    pub limits: LimitSettings,
    pub audit: AuditSettings,
}

impl Policy {
    /// Roles the broker knows, out of an upstream's groups: the entitlements
    /// that travel with the chain (RFC 9068 §2.2.3.1 `roles`).
    pub fn known_roles<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let set: BTreeSet<&str> = groups.into_iter().filter(|g| self.roles.contains_key(*g)).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// The roles an upstream issuer asserts that we both know and accept
    /// from that issuer (`issuers.*.roles`): a partner can never grant our
    /// users an entitlement it was not trusted with.
    pub fn roles_from<'a>(&self, issuer: &TrustedIssuer, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        self.known_roles(names.into_iter().filter(|n| issuer.roles.contains(*n)))
    }

    /// The client an `act` entry stands for, if it is one of ours: an entry
    /// we created (no `iss`, or our own issuer, as another deployment
    /// stamps our entries when a chain comes back to us: multi-hop Cross-App
    /// Access, specs/decisions.md §27) by its `actor_sub`, or an actor
    /// identity configured for a client by its issuer and `sub`. Matching
    /// only ever adds caps (`allowed_scopes`), never removes one.
    pub fn client_of(&self, entry: &Act) -> Option<&Arc<Client>> {
        match &entry.iss {
            None => self.clients_by_actor.get(&entry.sub),
            Some(iss) if *iss == self.issuer => self.clients_by_actor.get(&entry.sub),
            Some(iss) => self.clients_by_identity.get(iss)?.get(&entry.sub),
        }
    }

    /// The scopes a user's roles allow, in any audience.
    pub fn entitlement(&self, roles: &[String]) -> ScopeSet {
        let mut out = ScopeSet::default();
        for r in roles {
            if let Some(s) = self.roles.get(r) {
                for x in s.iter() {
                    out.insert(x);
                }
            }
        }
        out
    }

    /// Whether any of `roles` grants at least one scope of `audience`: the
    /// user has an entitlement there at all. No allocation: this runs on
    /// every decision.
    pub fn entitled_at(&self, roles: &[String], audience: &Audience) -> bool {
        roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .any(|scopes| scopes.iter().any(|s| audience.scopes.contains_key(s)))
    }

    /// The audience `name` (an id or an alias) names, if it is of `kind`.
    pub fn audience_of_kind(&self, name: &str, kind: AudienceKind) -> Option<Arc<Audience>> {
        self.audiences.get(name).filter(|a| a.kind == kind).cloned()
    }

    pub fn has_resource(&self, resource: &str) -> Option<&Arc<Audience>> {
        self.audiences
            .get(resource)
            .filter(|a| a.kind == AudienceKind::AccessToken && a.id == resource)
    }

    /// How long a revocation is kept: it must outlive every token it could
    /// apply to — ours (the longest audience TTL) and every upstream token
    /// we accept (ID tokens, partner access tokens and actor tokens are
    /// refused beyond `max_upstream_token_lifetime_secs`, ID-JAGs beyond
    /// `max_id_jag_lifetime_secs`). Otherwise a revoked subject could come
    /// back with a token issued before its cut-off once the cut-off expired.
    pub fn revocation_horizon_secs(&self) -> i64 {
        let t = &self.tokens;
        let ours = self.audiences.values().map(|a| a.ttl_secs).max().unwrap_or(0);
        ours.max(t.max_upstream_token_lifetime_secs)
            .max(t.max_id_jag_lifetime_secs)
            + t.clock_skew_secs
    }
}

/// The inputs of one decision. Every field is already validated.
pub struct ExchangeContext<'a> {
    pub client: &'a Client,
    pub audience: &'a Audience,
    /// `scope` from the request, if any.
    pub requested: Option<&'a ScopeSet>,
    /// The user's roles (from the chain, or the upstream groups on a first
    /// exchange). `None` when roles do not apply (a resource AS honouring the
    /// scopes its trusted IdP granted).
    pub roles: Option<&'a [String]>,
    /// The subject token's scope, when it was issued for this same audience
    /// (a re-exchange may never widen it), or an ID-JAG's granted scope.
    pub subject_scope: Option<&'a ScopeSet>,
    /// The chain as it will be in the new token (new actor included).
    pub chain: Option<&'a Act>,
    /// The subject's flat delegation list (`chain::delegated_through`):
    /// counted toward the depth and capped like `act` entries, never a way
    /// to loosen anything.
    pub delegated_through: &'a [Act],
    pub now: i64,
    pub subject_exp: i64,
}

/// A requested scope that was not granted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    pub scope: String,
    /// The first rule that removed it: `not_in_catalog`, `not_entitled`,
    /// `client_limit`, `subject_scope`, `human_only`, `agent_category`,
    /// `client_category`.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scope: ScopeSet,
    pub exp: i64,
}

/// Decide what may be issued. Pure: same inputs, same answer. In order: the
/// audience must be the client's (`invalid_target`), the chain within the
/// depth (`invalid_request`), the user entitled to something at the audience
/// when roles apply (`access_denied`, `policy.no_entitlement`), and the
/// grant non-empty (`invalid_scope`). `withheld`
/// receives each scope the request named (or, naming none, each scope the
/// user is entitled to here) that is not granted, with the first rule that
/// removed it — for the audit record, granted or refused.
pub fn decide(policy: &Policy, ctx: &ExchangeContext<'_>, withheld: &mut Vec<Withheld>) -> Result<Grant, OAuthError> {
    if !ctx.client.audiences.contains(&ctx.audience.id) {
        return Err(OAuthError::invalid_target(
            "audience.not_allowed_for_client",
            "this client may not obtain tokens for the requested audience",
        ));
    }
    let depth = crate::chain::parties(ctx.chain, ctx.delegated_through);
    if depth > policy.tokens.max_delegation_depth {
        return Err(OAuthError::invalid_request(
            "chain.depth_exceeded",
            format!(
                "delegation chain would be {depth} actors deep; the maximum is {}",
                policy.tokens.max_delegation_depth
            ),
        ));
    }
    let mut removed = Vec::new();
    let allowed = allowed_scopes(policy, ctx, &mut removed);
    let scope = match ctx.requested {
        Some(requested) => requested.intersect(&allowed),
        None => allowed,
    };
    explain_withheld(ctx.requested, &scope, removed, withheld);
    // Not one scope of this audience is in the user's roles: nothing the
    // client could ask differently would help, so this is a denial, not a
    // scope problem (decisions §5, ID-JAG issue 111). The description names
    // the rule and nothing configured (no role, issuer or client).
    if ctx.roles.is_some_and(|roles| !policy.entitled_at(roles, ctx.audience)) {
        return Err(OAuthError::access_denied(
            "policy.no_entitlement",
            "the user has no entitlement at the requested audience: no role of theirs grants any of its scopes",
        ));
    }
    if scope.is_empty() {
        return Err(OAuthError::invalid_scope(
            "scope.empty_grant",
            match ctx.requested {
                Some(_) => "none of the requested scopes may be granted to this client for this user and audience",
                None => "no scope may be granted to this client for this user and audience",
            },
        ));
    }
    let exp = (ctx.now + ctx.audience.ttl_secs).min(ctx.subject_exp);
    if exp <= ctx.now {
        return Err(OAuthError::invalid_request(
            "subject_token.expired",
            "the subject token has expired",
        ));
    }
    Ok(Grant { scope, exp })
}

/// Why a scope was removed, by the rule that removed it (`Withheld::reason`).
mod why {
    pub const NOT_IN_CATALOG: &str = "not_in_catalog";
    pub const NOT_ENTITLED: &str = "not_entitled";
    pub const CLIENT_LIMIT: &str = "client_limit";
    pub const SUBJECT_SCOPE: &str = "subject_scope";
    pub const HUMAN_ONLY: &str = "human_only";
    pub const AGENT_CATEGORY: &str = "agent_category";
    pub const CLIENT_CATEGORY: &str = "client_category";
}

/// Keep the scopes `keep` accepts; note each one removed with `reason`.
fn filter(
    allowed: &mut ScopeSet,
    removed: &mut Vec<(String, &'static str)>,
    reason: &'static str,
    mut keep: impl FnMut(&String) -> bool,
) {
    allowed.retain(|s| {
        let kept = keep(s);
        if !kept {
            removed.push((s.clone(), reason));
        }
        kept
    });
}

/// Agents never receive human-only scopes or categories outside the agent
/// cap; a client with its own `categories` is held to them wherever it acts.
fn apply_cap(
    policy: &Policy,
    audience: &Audience,
    (allowed, removed): (&mut ScopeSet, &mut Vec<(String, &'static str)>),
    is_agent: bool,
    categories: Option<&BTreeSet<Category>>,
) {
    let in_categories =
        |s: &String, cats: &BTreeSet<Category>| audience.scopes.get(s).is_some_and(|c| cats.contains(c));
    if is_agent {
        filter(allowed, removed, why::HUMAN_ONLY, |s| {
            !policy.agents.human_only.contains(s)
        });
        filter(allowed, removed, why::AGENT_CATEGORY, |s| {
            in_categories(s, &policy.agents.categories)
        });
    }
    if let Some(cats) = categories {
        filter(allowed, removed, why::CLIENT_CATEGORY, |s| in_categories(s, cats));
    }
}

/// The audit's view of a decision: each requested scope not granted, with
/// the first rule that removed it (or `not_in_catalog`). With no `scope`
/// sent, the scopes a rule took from what the user is entitled to here (a
/// scope the user never had is not "withheld").
fn explain_withheld(
    requested: Option<&ScopeSet>,
    granted: &ScopeSet,
    removed: Vec<(String, &'static str)>,
    out: &mut Vec<Withheld>,
) {
    let reason_of = |s: &str| {
        removed
            .iter()
            .find(|(r, _)| r == s)
            .map(|(_, why)| *why)
            .unwrap_or(why::NOT_IN_CATALOG)
    };
    let mut push = |scope: &str, reason: &str| {
        out.push(Withheld {
            scope: scope.to_owned(),
            reason: reason.to_owned(),
        })
    };
    match requested {
        Some(requested) => {
            for s in requested.iter().filter(|s| !granted.contains(s)) {
                push(s, reason_of(s));
            }
        }
        None => {
            for (s, reason) in removed.iter().filter(|(_, r)| *r != why::NOT_ENTITLED) {
                push(s, reason);
            }
        }
    }
}

/// Everything that could be granted before the request's own `scope`; each
/// scope of the catalog removed on the way is noted in `removed` with the
/// rule that removed it.
fn allowed_scopes(policy: &Policy, ctx: &ExchangeContext<'_>, removed: &mut Vec<(String, &'static str)>) -> ScopeSet {
    let mut allowed = ctx.audience.catalog();
    if let Some(roles) = ctx.roles {
        let entitled = policy.entitlement(roles);
        filter(&mut allowed, removed, why::NOT_ENTITLED, |s| entitled.contains(s));
    }
    if let Some(client_scopes) = &ctx.client.scopes {
        filter(&mut allowed, removed, why::CLIENT_LIMIT, |s| client_scopes.contains(s));
    }
    if let Some(subject) = ctx.subject_scope {
        filter(&mut allowed, removed, why::SUBJECT_SCOPE, |s| subject.contains(s));
    }
    // The requesting client's own caps apply even when an actor token names
    // someone else as the actor: a client never obtains more than it could
    // for itself.
    apply_cap(
        policy,
        ctx.audience,
        (&mut allowed, removed),
        ctx.client.kind == ClientKind::Agent,
        ctx.client.categories.as_ref(),
    );
    // A `delegated_through` entry is capped exactly like an `act` entry.
    let entries = ctx.chain.into_iter().flat_map(Act::entries);
    for entry in entries.chain(ctx.delegated_through) {
        // An entry is capped as an agent if its profile says so or if it
        // belongs to an agent client: caps only ever add up, so neither an
        // issuer's profile nor a client's kind can loosen the other. An
        // upstream's entry matches one of our clients only through an
        // identity configured for it (see `chain::vouched_by`).
        let known = policy.client_of(entry);
        let is_agent = entry.is_agent() || known.is_some_and(|c| c.kind == ClientKind::Agent);
        apply_cap(
            policy,
            ctx.audience,
            (&mut allowed, removed),
            is_agent,
            known.and_then(|c| c.categories.as_ref()),
        );
    }
    allowed
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
