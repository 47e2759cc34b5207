//! Signed checkpoints of this instance's audit chain (specs/decisions.md §22).
//!
//! Owns: the audit key (the private JWK named by `audit.checkpoint_key`, or
//! an ephemeral one), signing a checkpoint of the chain head — a compact JWS
//! of typ `xaa-audit-checkpoint+jwt` whose payload is exactly `instance`,
//! `seq`, `hash`, `time` — the public JWK Set served at `/audit/jwks`, and
//! when the next checkpoint is due (`Checkpointer::tick`: every
//! `audit.checkpoint_every_records` records, or every
//! `audit.checkpoint_every_secs` when the chain moved, and once at shutdown).
//! The checks an auditor applies are `chain_check` (pure).
//! Must never: sign anything but a checkpoint with the audit key, take the
//! token signing keys for it, or publish a private member.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use josekit::jwk::Jwk;

use crate::audit::{Checkpoint, format_time_ms};
use crate::chain_check::{CHECKPOINT_TYP, CheckpointPayload};
use crate::config::AuditConfig;
use crate::jose::Alg;
use crate::keys::KeyRing;
use crate::store::Store;

/// The chain head as of the last checkpoint (or of the start).
#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u64,
    at_ms: i64,
}

/// The audit key and the checkpoint schedule of this instance.
pub struct Checkpointer {
    keys: KeyRing,
    ephemeral: bool,
    every_records: u64,
    every_ms: i64,
    /// Held across a whole tick, so the task and the shutdown checkpoint
    /// never interleave.
    last: tokio::sync::Mutex<Last>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("keys", &self.keys)
            .field("ephemeral", &self.ephemeral)
            .field("every_records", &self.every_records)
            .field("every_ms", &self.every_ms)
            .finish()
    }
}

impl Checkpointer {
    /// The key from `audit.checkpoint_key` (relative to `base_dir`), or an
    /// ephemeral ES256 key; the schedule from `audit.checkpoint_every_*`.
    /// `head_seq` is the chain head at start: the first checkpoint is due
    /// once the chain moves past it.
    pub fn from_config(cfg: &AuditConfig, base_dir: Option<&Path>, head_seq: u64, now_ms: i64) -> anyhow::Result<Self> {
        let (keys, ephemeral) = match &cfg.checkpoint_key {
            Some(file) => {
                let path = match base_dir {
                    Some(base) if file.is_relative() => base.join(file),
                    _ => file.clone(),
                };
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("audit.checkpoint_key: cannot read {}", path.display()))?;
                let jwk = Jwk::from_bytes(&bytes)
                    .with_context(|| format!("audit.checkpoint_key: {} is not a JWK", path.display()))?;
                let ring = KeyRing::from_private_jwks(vec![jwk], None).context("audit.checkpoint_key")?;
                (ring, false)
            }
            None => (KeyRing::ephemeral(Alg::ES256)?, true),
        };
        Ok(Self {
            keys,
            ephemeral,
            every_records: cfg.checkpoint_every_records.max(1),
            every_ms: i64::try_from(cfg.checkpoint_every_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX),
            last: tokio::sync::Mutex::new(Last {
                seq: head_seq,
                at_ms: now_ms,
            }),
        })
    }

    /// True when no `audit.checkpoint_key` was configured: checkpoints of
    /// an earlier run cannot be checked after a restart.
    /// When the last checkpoint was written (or, before the first, when
    /// this checkpointer started): `xaa_audit_checkpoint_age_seconds`.
    pub async fn last_at_ms(&self) -> i64 {
        self.last.lock().await.at_ms
    }

    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The public audit keys (`/audit/jwks`).
    pub fn jwks_json(&self) -> Arc<str> {
        self.keys.jwks_json()
    }

    /// A checkpoint "`instance`'s chain had `hash` at `seq`", signed now.
    pub fn sign(&self, instance: &str, seq: u64, hash: &str, at_ms: i64) -> anyhow::Result<Checkpoint> {
        let payload = CheckpointPayload {
            instance: instance.to_owned(),
            seq,
            hash: hash.to_owned(),
            time: format_time_ms(at_ms),
        };
        let jws = self.keys.sign(CHECKPOINT_TYP, &payload)?;
        Ok(Checkpoint {
            instance: payload.instance,
            seq,
            hash: payload.hash,
            time: payload.time,
            jws,
        })
    }

    /// Whether a checkpoint of a head at `seq` is due at `now_ms`: the
    /// chain moved since the last one, by `every_records` or for
    /// `every_secs`; at shutdown (`force`) whenever it moved.
    fn due(&self, last: Last, seq: u64, now_ms: i64, force: bool) -> bool {
        seq > last.seq
            && (force || seq - last.seq >= self.every_records || now_ms.saturating_sub(last.at_ms) >= self.every_ms)
    }

    /// Write a checkpoint of `instance`'s head if one is due: kept by the
    /// store (and its audit file) and emitted on target `audit` (field
    /// `checkpoint`). A failure is returned and the checkpoint stays due, so
    /// the next tick tries again.
    pub async fn tick(
        &self,
        store: &dyn Store,
        instance: &str,
        now_ms: i64,
        force: bool,
    ) -> anyhow::Result<Option<Checkpoint>> {
        let mut last = self.last.lock().await;
        let (seq, hash) = store.audit_head().await.context("reading the chain head")?;
        if !self.due(*last, seq, now_ms, force) {
            return Ok(None);
        }
        let checkpoint = self.sign(instance, seq, &hash, now_ms)?;
        store
            .append_checkpoint(&checkpoint)
            .await
            .context("storing the checkpoint")?;
        *last = Last { seq, at_ms: now_ms };
        match serde_json::to_string(&checkpoint) {
            Ok(json) => tracing::info!(target: "audit", checkpoint = %json),
            Err(e) => tracing::error!(target: "audit", error = %e, "checkpoint not serialisable"),
        }
        Ok(Some(checkpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditRecord;
    use crate::chain_check::{audit_key_set, verify_checkpoint};
    use crate::store::memory::MemoryStore;
    use crate::store::{CommitPlan, Mode};

    fn checkpointer(every_records: u64, every_secs: u64) -> Checkpointer {
        let cfg = AuditConfig {
            checkpoint_every_records: every_records,
            checkpoint_every_secs: every_secs,
            ..AuditConfig::default()
        };
        Checkpointer::from_config(&cfg, None, 0, 0).unwrap()
    }

    async fn append(store: &MemoryStore, n: usize) {
        for _ in 0..n {
            let record = AuditRecord::begin(0, None, None);
            store
                .commit(CommitPlan::record_only(Mode::Deny, 0), record)
                .await
                .unwrap();
        }
    }

    #[test]
    fn a_checkpoint_verifies_against_the_published_keys_and_nothing_else() {
        let c = checkpointer(10, 60);
        let cp = c.sign("i1", 7, &"a".repeat(64), 1_800_000_000_000).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(&c.jwks_json()).unwrap();
        assert_eq!(verify_checkpoint(&cp, &audit_key_set(&jwks).unwrap()), Ok(()));
        assert!(jwks["keys"][0].get("d").is_none(), "no private member published");
        let other: serde_json::Value = serde_json::from_str(&checkpointer(10, 60).jwks_json()).unwrap();
        assert!(verify_checkpoint(&cp, &audit_key_set(&other).unwrap()).is_err());
    }

    #[tokio::test]
    async fn a_checkpoint_is_due_every_n_records_or_after_the_interval_when_the_chain_moved() {
        let store = MemoryStore::new("i1");
        let c = checkpointer(3, 60);
        assert!(
            c.tick(&store, "i1", 1_000, false).await.unwrap().is_none(),
            "nothing moved"
        );
        append(&store, 2).await;
        assert!(
            c.tick(&store, "i1", 2_000, false).await.unwrap().is_none(),
            "2 < 3 records"
        );
        append(&store, 1).await;
        let cp = c.tick(&store, "i1", 3_000, false).await.unwrap().expect("3 records");
        assert_eq!(cp.seq, 3);
        append(&store, 1).await;
        assert!(
            c.tick(&store, "i1", 62_000, false).await.unwrap().is_none(),
            "59 s later"
        );
        assert_eq!(
            c.tick(&store, "i1", 63_000, false).await.unwrap().map(|c| c.seq),
            Some(4)
        );
        assert!(
            c.tick(&store, "i1", 999_000, false).await.unwrap().is_none(),
            "not moved"
        );
        append(&store, 1).await;
        assert_eq!(
            c.tick(&store, "i1", 999_001, true).await.unwrap().map(|c| c.seq),
            Some(5)
        );
        let kept: Vec<u64> = store.checkpoints("i1").await.unwrap().iter().map(|c| c.seq).collect();
        assert_eq!(kept, [3, 4, 5]);
    }
}
