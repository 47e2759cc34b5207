//! Building and serving one broker: state, router, and policy reload on
//! SIGHUP. Serving connections (limits, graceful shutdown) is `crate::http::server`.
//!
//! Owns: the wiring of config → policy, keys, upstream key cache, the cache
//! of verified signatures, store, rate limiters, server limits, the audit
//! file and the checkpoint signer;
//! the task that writes out the summaries of unauthenticated noise every
//! `audit.unauthenticated_interval_secs`, and the one that writes signed
//! checkpoints of the chain when due (both once more at shutdown); the
//! metrics recorder (installed once per process), the measured store, and
//! the metrics listener (`[metrics]`) served next to the OAuth one.
//! Must never: contain request logic, or serve `/metrics` on the OAuth port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::http::Router;
use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::audit_file::AuditFile;
use crate::checkpoint::Checkpointer;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, MetricsConfig, ServerConfig, StoreConfig};
use crate::keys::KeyRing;
use crate::limits::Limits;
use crate::noise::Noise;
use crate::observe::allow::AllowList;
use crate::state::AppState;
use crate::store::memory::MemoryStore;
use crate::store::metered::MeteredStore;
use crate::store::{AuditSink, Store};
use crate::trust::jwks::JwksCache;
use crate::trust::verified_cache::VerifiedCache;

/// A built broker, ready to serve.
pub struct App {
    pub state: Arc<AppState>,
    pub router: Router,
    /// How `serve` accepts and bounds connections (`[server]`).
    pub server: ServerConfig,
    /// Where and for whom `/metrics` is served (`[metrics]`).
    pub metrics: MetricsConfig,
    /// The metrics listener, once bound ([`App::bind_metrics`]).
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Build from a config. `name` names the config in errors; `base_dir`
    /// resolves relative key paths.
    pub async fn build(config: &Config, name: &str, base_dir: Option<PathBuf>) -> anyhow::Result<App> {
        Self::build_with_clock(config, name, base_dir, Arc::new(SystemClock)).await
    }

    /// As [`App::build`], with the clock every request reads (tests pass a
    /// `ManualClock` to move time instead of sleeping).
    pub async fn build_with_clock(
        config: &Config,
        name: &str,
        base_dir: Option<PathBuf>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<App> {
        let policy = config.resolve(name)?;
        // Process-wide and idempotent: every App of this process shares it.
        crate::observe::install();
        let keys = KeyRing::from_config(&config.keys, base_dir.as_deref()).context("loading signing keys")?;
        let instance = std::env::var("XAA_INSTANCE").unwrap_or_else(|_| {
            let id = uuid::Uuid::now_v7().simple().to_string();
            format!("i-{}", &id[id.len() - 8..])
        });
        let sink = audit_file(config, name, base_dir.as_deref())?;
        let store: Arc<dyn Store> = match &config.store {
            StoreConfig::Memory { audit_max_bytes } => {
                let store =
                    MemoryStore::with_clock(instance.clone(), crate::store::memory::MAX_AUDIT_RECORDS, clock.clone())
                        .with_audit_max_bytes(*audit_max_bytes);
                match sink {
                    Some(sink) => Arc::new(store.with_sink(sink)),
                    None => Arc::new(store),
                }
            }
            StoreConfig::Redis { url, prefix } => {
                let prefix = prefix.as_deref().unwrap_or(crate::store::redis::DEFAULT_PREFIX);
                let store = crate::store::redis::RedisStore::connect(url, prefix, &instance)
                    .await
                    .with_context(|| format!("{name}: key `store.url`: cannot use the redis store"))?;
                match sink {
                    Some(sink) => Arc::new(store.with_sink(sink)),
                    None => Arc::new(store),
                }
            }
        };
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(store));
        let (head_seq, _) = store
            .audit_head()
            .await
            .with_context(|| format!("{name}: reading this instance's audit chain head"))?;
        let checkpoints = Checkpointer::from_config(&config.audit, base_dir.as_deref(), head_seq, clock.now_ms())
            .with_context(|| format!("{name}: key `audit.checkpoint_key`"))?;
        if checkpoints.is_ephemeral() {
            tracing::warn!(
                "audit.checkpoint_key is not set: audit checkpoints are signed with an ephemeral key, so the \
                 checkpoints of this run cannot be checked after a restart"
            );
        }
        let base = crate::http::base_path(&policy.issuer);
        let state = Arc::new(AppState {
            policy: ArcSwap::from_pointee(policy),
            keys,
            jwks: JwksCache::new(config.upstream.clone())?,
            verified: VerifiedCache::new(config.tokens.verified_cache_bytes, clock.clone()),
            dpop_keys: Default::default(),
            store,
            checkpoints,
            noise: Noise::new(instance.clone()),
            instance,
            limits: Limits::new(clock.clone()),
            clock,
            started_with: restart_only(config),
        });
        tokio::spawn(flush_noise_every_interval(Arc::downgrade(&state)));
        tokio::spawn(checkpoint_every_second(Arc::downgrade(&state)));
        let router = crate::http::router(state.clone(), &base);
        warn_if_deadline_undercuts(config);
        Ok(App {
            state,
            router,
            server: config.server.clone(),
            metrics: config.metrics.clone(),
            metrics_listener: None,
        })
    }

    /// Bind the metrics listener (`metrics.listen`) now, if metrics are
    /// enabled, and return its address: a caller that configured port 0
    /// learns the port here. [`App::serve`] binds it if this was not called.
    pub async fn bind_metrics(&mut self) -> anyhow::Result<Option<SocketAddr>> {
        if !self.metrics.enabled {
            return Ok(None);
        }
        if self.metrics_listener.is_none() {
            let listen = &self.metrics.listen;
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("key `metrics.listen`: cannot listen on {listen}"))?;
            self.metrics_listener = Some(listener);
        }
        Ok(self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok()))
    }

    /// Serve until `shutdown` resolves, then drain in-flight requests within
    /// a bounded grace period (`crate::http::server::serve`).
    /// The metrics listener (`[metrics]`) is served beside it, within the same
    /// `[server]` limits, and stops with it.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let metrics = self.spawn_metrics().await?;
        let served = crate::http::server::serve(listener, self.router, &self.server, shutdown).await;
        if let Some((stop, task)) = metrics {
            drop(stop);
            let _ = task.await;
        }
        served?;
        // The last interval's counts, so a restart loses none.
        if let Err(e) = self.state.flush_noise().await {
            tracing::error!(error = %e, "summaries of unauthenticated requests could not be written at shutdown");
        }
        // The last records, anchored: nothing this run wrote is left
        // unanchored by a clean stop.
        if let Err(e) = self.state.checkpoint(true).await {
            tracing::error!(error = %format!("{e:#}"), "the audit checkpoint could not be written at shutdown");
        }
        Ok(())
    }

    /// Serve `/metrics` on the metrics listener until the returned sender is
    /// dropped. `None` when metrics are disabled.
    async fn spawn_metrics(
        &mut self,
    ) -> anyhow::Result<Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>> {
        let Some(addr) = self.bind_metrics().await? else {
            return Ok(None);
        };
        let Some(listener) = self.metrics_listener.take() else {
            return Ok(None);
        };
        let allow = AllowList::parse(&self.metrics.allow).map_err(|e| anyhow::anyhow!("key `metrics.allow`: {e}"))?;
        let router = crate::http::metrics::router(self.state.clone(), allow);
        let server = self.server.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tracing::info!(listen = %addr, "metrics served at /metrics");
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            if let Err(e) = crate::http::server::serve_as("metrics", listener, router, &server, stopped).await {
                tracing::error!(error = %format!("{e:#}"), "the metrics listener stopped");
            }
        });
        Ok(Some((stop, task)))
    }
}

/// The audit file (`audit.file`), opened for appending; a file that cannot
/// be opened is a start-up error naming the key.
fn audit_file(config: &Config, name: &str, base_dir: Option<&Path>) -> anyhow::Result<Option<Arc<dyn AuditSink>>> {
    let Some(file) = &config.audit.file else {
        return Ok(None);
    };
    let path = match base_dir {
        Some(base) if file.is_relative() => base.join(file),
        _ => file.clone(),
    };
    let a = &config.audit;
    let sink = AuditFile::open(
        &path,
        a.fsync,
        Duration::from_millis(a.fsync_interval_ms.max(1)),
        a.rotate_bytes,
    )
    .with_context(|| format!("{name}: key `audit.file`: cannot open {} for appending", path.display()))?;
    Ok(Some(Arc::new(sink)))
}

/// Every second, write a signed checkpoint of this instance's chain when
/// one is due (`Checkpointer::tick`), for as long as the app exists. A
/// failure is logged and the checkpoint stays due for the next tick.
async fn checkpoint_every_second(state: Weak<AppState>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        if let Err(e) = state.checkpoint(false).await {
            tracing::error!(error = %format!("{e:#}"), "the audit checkpoint could not be written; retrying");
        }
    }
}

/// Flush the noise summaries every `audit.unauthenticated_interval_secs` (as
/// of each wait: a reload applies from the next interval), for as long as
/// the app exists.
async fn flush_noise_every_interval(state: Weak<AppState>) {
    loop {
        let Some(interval) = state.upgrade().map(|s| s.policy.load().audit.unauthenticated_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        if let Err(e) = state.flush_noise().await {
            tracing::error!(error = %e, "summaries of unauthenticated requests could not be written");
        }
    }
}

/// The request deadline should outlast every inner timeout, so that a slow
/// upstream or store fails with its own answer first. A shorter deadline is
/// allowed (tests use one) but said at start.
fn warn_if_deadline_undercuts(config: &Config) {
    let store_ms = match config.store {
        StoreConfig::Redis { .. } => crate::store::redis::OP_TIMEOUT.as_millis() as u64,
        StoreConfig::Memory { .. } => 0,
    };
    let inner_ms = config.upstream.timeout_ms.max(store_ms);
    if config.server.request_timeout_ms <= inner_ms {
        tracing::warn!(
            request_timeout_ms = config.server.request_timeout_ms,
            inner_timeout_ms = inner_ms,
            "server.request_timeout_ms is not longer than the upstream/store timeout: slow upstreams will be \
             answered by the request deadline (503 request.deadline) rather than by their own error"
        );
    }
}

/// The `[audit]` keys built once, at start (the rest of `[audit]` is policy).
const AUDIT_RESTART_ONLY: &str = "audit.{file,fsync*,rotate_bytes,checkpoint_*}";

/// The `[tokens]` key built once, at start (the rest of `[tokens]` is policy).
const TOKENS_RESTART_ONLY: &str = "tokens.verified_cache_bytes";

/// The config sections only a restart applies.
fn restart_only(config: &Config) -> serde_json::Value {
    serde_json::json!({
        "keys": config.keys, "store": config.store, "upstream": config.upstream, "listen": config.listen,
        "server": config.server, "metrics": config.metrics,
        // The verified-signature cache is sized once, at start.
        TOKENS_RESTART_ONLY: config.tokens.verified_cache_bytes,
        // The audit file and checkpoint settings are built once, at start.
        AUDIT_RESTART_ONLY: {
            "file": config.audit.file, "fsync": config.audit.fsync,
            "fsync_interval_ms": config.audit.fsync_interval_ms, "rotate_bytes": config.audit.rotate_bytes,
            "checkpoint_every_records": config.audit.checkpoint_every_records,
            "checkpoint_every_secs": config.audit.checkpoint_every_secs,
            "checkpoint_key": config.audit.checkpoint_key,
        },
    })
}

/// Reload the policy from `path`, keeping the old one if the new file is bad.
/// Issuer and keys are fixed for the life of the process; a file that
/// changes keys, store, upstream, listen, server or metrics is applied for its policy, with a
/// warning naming what still needs a restart.
pub fn reload(state: &AppState, path: &std::path::Path) -> Result<(), String> {
    let name = path.display().to_string();
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let policy = config.resolve(&name).map_err(|e| e.to_string())?;
    if policy.issuer != state.policy.load().issuer {
        return Err(format!("{name}: key `issuer`: cannot change without a restart"));
    }
    let now = restart_only(&config);
    let pending: Vec<&str> = [
        "keys",
        "store",
        "upstream",
        "listen",
        "server",
        "metrics",
        AUDIT_RESTART_ONLY,
        TOKENS_RESTART_ONLY,
    ]
    .into_iter()
    .filter(|k| now.get(k) != state.started_with.get(k))
    .collect();
    if !pending.is_empty() {
        tracing::warn!(config = %name, changed = ?pending, "these settings changed and apply only after a restart");
    }
    state.policy.store(Arc::new(policy));
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// Reload the policy on every SIGHUP.
pub fn spawn_reload_on_sighup(state: Arc<AppState>, path: PathBuf) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match reload(&state, &path) {
                Ok(()) => tracing::info!(config = %path.display(), "policy reloaded"),
                Err(e) => tracing::error!(error = %e, "reload refused; keeping the previous policy"),
            }
        }
    });
}
