//! The store, measured: a [`Store`] that forwards every call to the real
//! store and records its latency and failure (`xaa_store_operation_duration_seconds`,
//! `xaa_store_errors_total`), and for the commit the audit write
//! (`xaa_audit_write_duration_seconds`) and the chain's new head
//! (`xaa_audit_chain_seq`).
//!
//! Owns: which metric each operation moves. Wired by `app` around whichever
//! store the config names, so the stores themselves stay free of metrics.
//! Must never: change an answer, retry, or put anything from a record or a
//! key into a label (the operation name is the only label).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{ChainPage, Commit, CommitPlan, Mode, Revocation, SearchPage, SearchQuery, Store, StoreError, TokenRef};
use crate::audit::{AuditRecord, Checkpoint, NoiseSummary};
use crate::observe;

/// Wraps the store every request uses.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner }
    }
}

/// Record `operation`'s latency and whether it failed, and pass the result on.
fn measured<T>(operation: &'static str, started: Instant, result: Result<T, StoreError>) -> Result<T, StoreError> {
    observe::store_operation(operation, started, result.is_err());
    result
}

#[async_trait]
impl Store for MeteredStore {
    async fn commit(&self, plan: CommitPlan<'_>, record: AuditRecord) -> Result<Commit, StoreError> {
        let started = Instant::now();
        let mode = match plan.mode {
            Mode::Grant => "grant",
            Mode::Deny => "deny",
        };
        let result = self.inner.commit(plan, record).await;
        let seq = match &result {
            Ok(Commit::Done(record)) => Some(record.seq),
            _ => None,
        };
        observe::audit_write(mode, started, seq);
        measured("commit", started, result)
    }

    async fn revoke(&self, revocation: Revocation, expires_at: i64) -> Result<(), StoreError> {
        let started = Instant::now();
        measured("revoke", started, self.inner.revoke(revocation, expires_at).await)
    }

    async fn is_revoked(&self, token: TokenRef<'_>, now: i64) -> Result<bool, StoreError> {
        let started = Instant::now();
        measured("is_revoked", started, self.inner.is_revoked(token, now).await)
    }

    async fn audit_by_txn(&self, txn: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let started = Instant::now();
        measured("audit_by_txn", started, self.inner.audit_by_txn(txn).await)
    }

    async fn audit_chain(&self, instance: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let started = Instant::now();
        measured("audit_chain", started, self.inner.audit_chain(instance).await)
    }

    async fn audit_chain_page(
        &self,
        instance: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ChainPage, StoreError> {
        let started = Instant::now();
        let result = self.inner.audit_chain_page(instance, cursor, limit).await;
        measured("audit_chain_page", started, result)
    }

    async fn audit_search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        let started = Instant::now();
        measured("audit_search", started, self.inner.audit_search(query).await)
    }

    async fn audit_by_issued_jti(&self, jti: &str) -> Result<Option<AuditRecord>, StoreError> {
        let started = Instant::now();
        measured(
            "audit_by_issued_jti",
            started,
            self.inner.audit_by_issued_jti(jti).await,
        )
    }

    async fn audit_instances(&self) -> Result<Vec<String>, StoreError> {
        let started = Instant::now();
        measured("audit_instances", started, self.inner.audit_instances().await)
    }

    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let started = Instant::now();
        measured("audit_head", started, self.inner.audit_head().await)
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let started = Instant::now();
        measured(
            "append_checkpoint",
            started,
            self.inner.append_checkpoint(checkpoint).await,
        )
    }

    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let started = Instant::now();
        measured("checkpoints", started, self.inner.checkpoints(instance).await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        measured("ping", started, self.inner.ping().await)
    }

    async fn append_unauthenticated(&self, summaries: &[NoiseSummary], retention: Duration) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.append_unauthenticated(summaries, retention).await;
        measured("append_unauthenticated", started, result)
    }

    async fn unauthenticated(&self, limit: usize) -> Result<Vec<NoiseSummary>, StoreError> {
        let started = Instant::now();
        measured("unauthenticated", started, self.inner.unauthenticated(limit).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn count(text: &str, line_prefix: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn every_operation_is_timed_under_its_own_name_and_answers_are_unchanged() {
        observe::install();
        let key = "xaa_store_operation_duration_seconds_count{operation=\"audit_instances\"} ";
        let before = count(&observe::render().unwrap_or_default(), key);
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new("metered-test"));
        let expected = inner.audit_instances().await.unwrap();
        let store = MeteredStore::new(inner);
        assert_eq!(store.audit_instances().await.unwrap(), expected);
        store.audit_instances().await.unwrap();
        assert!(count(&observe::render().unwrap_or_default(), key) >= before + 2);
    }
}
