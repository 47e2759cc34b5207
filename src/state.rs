//! The state every request shares: the current policy, keys, upstream key
//! cache, the cache of verified signatures, store, checkpoint signer, rate limiters and noise counters.
//!
//! Owns: what a request may read (and the noise flush, which only writes
//! through the store). Built by the composition root (`app`); read by the
//! protocol code and the HTTP edge, neither of which imports `app`.
//! Must never: hold request logic, or anything only development needs (the
//! dev IdP is mounted by the command that serves dev mode).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::checkpoint::Checkpointer;
use crate::clock::Clock;
use crate::keys::KeyRing;
use crate::limits::Limits;
use crate::noise::Noise;
use crate::policy::Policy;
use crate::store::{Store, StoreError};
use crate::trust::jwks::JwksCache;
use crate::trust::verified_cache::VerifiedCache;

pub struct AppState {
    /// Swapped atomically on reload; each request loads one version.
    pub policy: ArcSwap<Policy>,
    pub keys: KeyRing,
    pub jwks: JwksCache,
    /// Subject and actor token signatures already verified, by the token's
    /// SHA-256 and the verifier that accepted it (`tokens.verified_cache_bytes`).
    /// Survives reloads: a changed key is a different verifier, so a miss.
    pub verified: VerifiedCache,
    /// Verifiers of DPoP proof keys already seen (`dpop::keys`).
    pub dpop_keys: crate::dpop::keys::ProofKeys,
    pub store: Arc<dyn Store>,
    /// The audit key and the schedule of signed checkpoints of this
    /// instance's chain (`/audit/jwks` serves its public half).
    pub checkpoints: Checkpointer,
    pub instance: String,
    /// Read once per request (`endpoint::Call::begin`).
    pub clock: Arc<dyn Clock>,
    /// Per-client and per-source rate limits (this instance's).
    pub limits: Limits,
    /// This interval's counts of unauthenticated noise.
    pub noise: Noise,
    /// The settings a reload cannot apply (keys, store, upstream, listen,
    /// server, metrics, audit file and checkpoints),
    /// as started: a reload that changes them says so.
    pub(crate) started_with: serde_json::Value,
}

impl AppState {
    /// Write this interval's noise summaries to the store now, kept for the
    /// current `audit.unauthenticated_retention_secs`. Returns how many.
    pub async fn flush_noise(&self) -> Result<usize, StoreError> {
        let retention = self.policy.load().audit.unauthenticated_retention;
        self.noise.flush(self.store.as_ref(), retention).await
    }

    /// Write a signed checkpoint of this instance's chain if one is due
    /// (`force`: whenever the chain moved, as at shutdown).
    pub async fn checkpoint(&self, force: bool) -> anyhow::Result<Option<crate::audit::Checkpoint>> {
        let now_ms = self.clock.now_ms();
        self.checkpoints
            .tick(self.store.as_ref(), &self.instance, now_ms, force)
            .await
    }
}
