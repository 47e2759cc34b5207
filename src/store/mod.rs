//! Shared state behind one trait: replay marks, revocations, the audit trail.
//!
//! Owns: the contract every store keeps (memory for the embedded default,
//! Redis for many instances). `commit` is the single write a granted request
//! makes: replay marks and its audit record together, atomically, before the
//! token leaves (fail closed: an error here means no token). Apart from the
//! chain, a short-lived area of summaries of unauthenticated noise
//! (`noise`), bounded in size and age, never hash-chained.
//! Must never: decide policy, or hold a token (audit records hold jti/hashes).

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

use crate::audit::AuditRecord;
use crate::noise::NoiseSummary;

/// "This value may be used once until `expires_at`" (client assertion `jti`,
/// ID-JAG `jti`: RFC 7523 §3 item 7, MCP EMA §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMark {
    pub key: String,
    /// Unix seconds; the mark is kept until then.
    pub expires_at: i64,
}

/// `Done` is far larger than `Replayed`; it is built once per request and
/// moved, never copied, so boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Commit {
    /// Marks set and record appended (sealed, with its seq and hash).
    Done(AuditRecord),
    /// `marks[index]` was already used: nothing was written.
    Replayed { index: usize },
    /// The guarded token is revoked: nothing was written.
    Revoked,
}

/// "Only if this token is not revoked": checked inside the commit, so a
/// request needs one store round trip, and a revocation landing between a
/// check and the write cannot be missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationGuard {
    pub jti: Option<String>,
    pub txn: Option<String>,
    pub sub: String,
    pub iat: Option<i64>,
}

impl RevocationGuard {
    pub fn token(&self) -> TokenRef<'_> {
        TokenRef {
            jti: self.jti.as_deref(),
            txn: self.txn.as_deref(),
            sub: &self.sub,
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
    /// Every token for `sub` issued at or before `before` (offboarding).
    SubjectBefore {
        sub: String,
        before: i64,
    },
}

/// The facts about a token that revocation is checked against.
#[derive(Debug, Clone, Copy)]
pub struct TokenRef<'a> {
    pub jti: Option<&'a str>,
    pub txn: Option<&'a str>,
    pub sub: &'a str,
    pub iat: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(pub String);

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Atomically: if the guarded token is revoked, or any mark exists, write
    /// nothing and say why; otherwise set all marks, seal and append the record.
    async fn commit(
        &self,
        marks: &[ReplayMark],
        guard: Option<&RevocationGuard>,
        record: AuditRecord,
    ) -> Result<Commit, StoreError>;

    /// Record a revocation, kept until `expires_at` (the longest a token it
    /// could apply to may live).
    async fn revoke(&self, revocation: Revocation, expires_at: i64) -> Result<(), StoreError>;

    async fn is_revoked(&self, token: TokenRef<'_>) -> Result<bool, StoreError>;

    /// Audit records of one correlation id, oldest first.
    async fn audit_by_txn(&self, txn: &str) -> Result<Vec<AuditRecord>, StoreError>;

    /// Every audit record of one instance, in seq order (chain verification).
    async fn audit_chain(&self, instance: &str) -> Result<Vec<AuditRecord>, StoreError>;

    /// Reachable and writable (`/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Append summaries of unauthenticated requests (`noise`), each kept for
    /// `retention`, in an area of bounded size apart from the audit chain.
    async fn append_unauthenticated(&self, summaries: &[NoiseSummary], retention: Duration) -> Result<(), StoreError>;

    /// The newest `limit` summaries still kept, from every instance, newest
    /// first.
    async fn unauthenticated(&self, limit: usize) -> Result<Vec<NoiseSummary>, StoreError>;
}

/// Revocation keys, shared by every store so their contents agree.
pub fn revocation_key(r: &Revocation) -> String {
    match r {
        Revocation::Jti(j) => format!("jti:{j}"),
        Revocation::Txn(t) => format!("txn:{t}"),
        Revocation::SubjectBefore { sub, .. } => format!("sub:{sub}"),
    }
}
