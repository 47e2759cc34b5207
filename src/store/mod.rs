//! Shared state behind one trait: replay marks, revocations, the audit trail.
//!
//! Owns: the contract every store keeps (memory for the embedded default,
//! Redis for many instances). `commit` is the single write a request makes:
//! its replay marks, its effects (revocations) and its audit record together,
//! atomically, before anything leaves (fail closed: an error here means no
//! token and no effect). Apart from the chain, a short-lived area of
//! summaries of unauthenticated noise (`noise`), bounded in size and age,
//! never hash-chained.
//! Must never: decide policy, or hold a token (audit records hold jti/hashes).

pub mod memory;
pub mod metered;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

use crate::audit::NoiseSummary;
use crate::audit::{AuditRecord, Checkpoint};
use crate::types::Principal;

/// "This value may be used once until `expires_at`" (client assertion `jti`,
/// ID-JAG `jti`: RFC 7523 §3 item 7, MCP EMA §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMark {
    pub key: String,
    /// Unix seconds; the mark is kept until then.
    pub expires_at: i64,
    /// The mark of the credential that authenticated the client (a
    /// `private_key_jwt` assertion). If it is already set the client was
    /// never authenticated, so a denial sets no other mark (see [`Mode`]).
    pub authenticates: bool,
}

/// What a commit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Release a token or an effect: every guard must hold and every mark
    /// must be fresh, else nothing at all is written.
    Grant,
    /// Record a denial. If an authenticating mark was already used, nothing
    /// is written (the caller re-records the denial as that replay). Else
    /// every mark not yet set is set — a credential seen once is spent even
    /// when the request fails, so a fresh client assertion can never
    /// authenticate twice — and the record is appended. Guards and effects
    /// are ignored.
    Deny,
}

/// A revocation to record, kept until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub revocation: Revocation,
    pub expires_at: i64,
}

/// Everything one commit checks and writes besides its audit record.
#[derive(Debug, Clone, Copy)]
pub struct CommitPlan<'a> {
    pub mode: Mode,
    /// The request's instant (Unix seconds, `crate::clock`): what a store
    /// that keeps its own expiry (memory) judges marks and revocations by.
    /// Redis judges by its own `TIME`, the clock every instance shares.
    pub now: i64,
    pub marks: &'a [ReplayMark],
    /// Release only if none of these tokens is revoked (subject, actor).
    pub guards: &'a [RevocationGuard],
    /// Revocations that happen only if the commit does (RFC 7009, admin).
    pub effects: &'a [Effect],
}

impl<'a> CommitPlan<'a> {
    /// A plan that only appends a record (tests, simple endpoints).
    pub fn record_only(mode: Mode, now: i64) -> Self {
        Self {
            mode,
            now,
            marks: &[],
            guards: &[],
            effects: &[],
        }
    }
}

/// `Done` is far larger than the others; it is built once per request and
/// moved, never copied, so boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Commit {
    /// Marks set, effects applied and record appended (sealed, with its seq
    /// and hash).
    Done(AuditRecord),
    /// `marks[index]` was already used: nothing was written.
    Replayed { index: usize },
    /// `guards[index]` names a revoked token: nothing was written.
    Revoked { index: usize },
}

/// "Only if this token is not revoked": checked inside the commit, so a
/// request needs one store round trip, and a revocation landing between a
/// check and the write cannot be missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationGuard {
    pub jti: Option<String>,
    pub txn: Option<String>,
    pub principal: Principal,
    pub iat: Option<i64>,
}

impl RevocationGuard {
    pub fn token(&self) -> TokenRef<'_> {
        TokenRef {
            jti: self.jti.as_deref(),
            txn: self.txn.as_deref(),
            principal: &self.principal,
            iat: self.iat,
        }
    }
}

/// What can be revoked (RFC 7009 plus the admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Jti(String),
    /// Every token carrying this correlation id, including later ones.
    Txn(String),
    /// Every token for this principal issued at or before `before`
    /// (offboarding), scoped by the issuer that vouched for the user.
    SubjectBefore {
        principal: Principal,
        before: i64,
    },
}

/// The facts about a token that revocation is checked against.
#[derive(Debug, Clone, Copy)]
pub struct TokenRef<'a> {
    pub jti: Option<&'a str>,
    pub txn: Option<&'a str>,
    pub principal: &'a Principal,
    pub iat: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(pub String);

/// Most records one trace returns: a correlation id is one user's task, so
/// more than this is a runaway client, and the answer says it was cut.
pub const MAX_TRACE_RECORDS: usize = 10_000;

/// How long past its `exp` a token may still be reported on (a tool call
/// that started before expiry may finish after it): `/audit/events`
/// accepts the token, or finds its issuing record by `jti`, this long.
pub const JTI_REPORT_GRACE_SECS: i64 = 86_400;

/// A search of the audit trail (`/audit/records`): records in a time range,
/// optionally of one user, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The user (`sub`); with `iss`, only as vouched for by that issuer.
    pub sub: Option<String>,
    pub iss: Option<String>,
    /// Record `time` (the request's start), Unix milliseconds, inclusive.
    pub since_ms: i64,
    /// Exclusive.
    pub until_ms: i64,
    /// Where the previous page ended (opaque, from [`SearchPage::next_cursor`]).
    pub cursor: Option<String>,
    pub limit: usize,
}

/// One page of a search, oldest first. A page may hold fewer than `limit`
/// records and still have a next one; the search is over when
/// `next_cursor` is `None`.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    pub records: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
}

/// One page of one instance's chain, in `seq` order (`audit verify`).
#[derive(Debug, Clone, Default)]
pub struct ChainPage {
    pub records: Vec<AuditRecord>,
    /// Where to continue (opaque); `None` at the end of the chain.
    pub next_cursor: Option<String>,
}

/// A second copy of the chain on local disk (`[audit] file`), written by
/// the store inside the chain's lock, so that its order is the chain's.
/// Fail closed: a store asks `ready` before it commits anything, and a
/// failed append fails the commit (no token leaves). A sink keeps a line it
/// could not write and writes it first next time, so its copy of each
/// chain stays complete.
pub trait AuditSink: Send + Sync + 'static {
    /// Writable, with any line kept from an earlier failure written out.
    fn ready(&self) -> std::io::Result<()>;
    /// Append a sealed record, as the JSON `AuditRecord::seal` returned
    /// (the stores already hold it: the record is serialised once).
    fn append_record(&self, sealed_json: &str) -> std::io::Result<()>;
    fn append_checkpoint(&self, checkpoint: &Checkpoint) -> std::io::Result<()>;
    /// The last record of `instance` in the sink (`seq`, `hash`): a memory
    /// store restarted with the same `XAA_INSTANCE` continues its chain.
    fn head(&self, instance: &str) -> Option<(u64, String)>;
}

/// The error of a failed audit-file write (the reason is logged; the caller
/// gets 503).
pub fn sink_error(e: &std::io::Error) -> StoreError {
    StoreError(format!("the audit file cannot be written ({:?})", e.kind()))
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Atomically check and write what `plan` says (see [`Mode`]), sealing
    /// and appending `record` when it is written.
    async fn commit(&self, plan: CommitPlan<'_>, record: AuditRecord) -> Result<Commit, StoreError>;

    /// Record a revocation outside a request (operators, tests), kept until
    /// `expires_at`. Requests revoke through `commit` so that the effect
    /// and its audit record are one write.
    async fn revoke(&self, revocation: Revocation, expires_at: i64) -> Result<(), StoreError>;

    /// Whether `token` is revoked at `now` (the request's instant; Redis
    /// judges expiry by its own clock).
    async fn is_revoked(&self, token: TokenRef<'_>, now: i64) -> Result<bool, StoreError>;

    /// Audit records of one correlation id from every instance, in the
    /// order they were recorded, at most [`MAX_TRACE_RECORDS`].
    async fn audit_by_txn(&self, txn: &str) -> Result<Vec<AuditRecord>, StoreError>;

    /// Every audit record of one instance, in seq order (chain verification).
    async fn audit_chain(&self, instance: &str) -> Result<Vec<AuditRecord>, StoreError>;

    /// Up to `limit` records of one instance's chain after `cursor`.
    async fn audit_chain_page(
        &self,
        instance: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ChainPage, StoreError>;

    /// Records by time range, and by user, from every instance.
    async fn audit_search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError>;

    /// The granted record that issued the token with this `jti`, while that
    /// token may still be reported on (a day past its `exp`).
    async fn audit_by_issued_jti(&self, jti: &str) -> Result<Option<AuditRecord>, StoreError>;

    /// The instances whose chains the store holds.
    async fn audit_instances(&self) -> Result<Vec<String>, StoreError>;

    /// This instance's chain head: the last `seq` and its `hash` (`0` and
    /// the genesis hash before the first record).
    async fn audit_head(&self) -> Result<(u64, String), StoreError>;

    /// Keep a signed checkpoint of this instance's chain (and write it to
    /// the sink, in order with the records).
    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// The checkpoints kept for one instance, oldest first.
    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError>;

    /// Reachable and writable (`/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Append summaries of unauthenticated requests (`noise`), each kept for
    /// `retention`, in an area of bounded size apart from the audit chain.
    async fn append_unauthenticated(&self, summaries: &[NoiseSummary], retention: Duration) -> Result<(), StoreError>;

    /// The newest `limit` summaries still kept, from every instance, newest
    /// first.
    async fn unauthenticated(&self, limit: usize) -> Result<Vec<NoiseSummary>, StoreError>;
}

/// Revocation keys, shared by every store so their contents agree. Values
/// that may contain `:` are length-prefixed, so no two revocations can ever
/// name the same key (an issuer URL is full of colons).
pub fn revocation_key(r: &Revocation) -> String {
    match r {
        Revocation::Jti(j) => format!("jti:{j}"),
        Revocation::Txn(t) => format!("txn:{t}"),
        Revocation::SubjectBefore { principal, .. } => {
            format!("sub:{}:{}:{}", principal.iss.len(), principal.iss, principal.sub)
        }
    }
}

/// The cut-off rule, in one place: a token of a revoked principal is
/// revoked if it was issued at or before the cut-off, or if it has no `iat`
/// (it cannot prove it came after). The Lua commit script applies the same
/// rule (`store::redis`, "A token without iat").
pub fn issued_before_cutoff(cutoff: i64, iat: Option<i64>) -> bool {
    iat.is_none_or(|iat| iat <= cutoff)
}

/// The key of a subject cut-off for this principal.
pub fn subject_key(principal: &Principal) -> String {
    revocation_key(&Revocation::SubjectBefore {
        principal: principal.clone(),
        before: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_keys_of_different_issuers_never_collide() {
        let p = |iss: &str, sub: &str| Principal {
            iss: iss.into(),
            sub: sub.into(),
        };
        assert_ne!(subject_key(&p("https://a", "b:c")), subject_key(&p("https://a:b", "c")));
        assert_ne!(
            subject_key(&p("https://idp-a", "bob")),
            subject_key(&p("https://idp-b", "bob"))
        );
    }
}
