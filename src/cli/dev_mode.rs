//! The embedded default, composed and served: the broker with the dev IdP
//! mounted, and the demo resource AS (deployment B) on the next port.
//!
//! Owns: binding both listeners, building both apps from `crate::dev`'s
//! embedded configurations, mounting the dev IdP under the issuer, and
//! serving both until one shutdown. `serve --dev` runs it, and so does
//! `examples/demo.rs`, in process, so that the demo is exactly the
//! binary's dev mode.
//! Must never: serve a configuration file, or mount the dev IdP anywhere
//! else; print (the banner is the command's job).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;

/// Both deployments of the embedded default, bound and built, not yet
/// serving.
pub struct DevMode {
    /// The broker's issuer (`http://127.0.0.1:<port>`).
    pub issuer: String,
    /// The demo resource AS's issuer (the next port, or any free one).
    pub ras_issuer: String,
    broker: App,
    listener: TcpListener,
    ras: App,
    ras_listener: TcpListener,
}

impl DevMode {
    /// Bind `listen` (port 0: any free port, and the metrics listener on any
    /// free port too) and the port after it for the demo resource AS, and
    /// build both apps.
    pub async fn bind(listen: SocketAddr) -> anyhow::Result<DevMode> {
        Self::bind_with(listen, |_| Ok(())).await
    }

    /// [`DevMode::bind`], with the broker's embedded configuration changed
    /// by `tweak` before it is validated (e.g. `crate::dev::rename_resource`).
    pub async fn bind_with(
        listen: SocketAddr,
        tweak: impl FnOnce(&mut Config) -> anyhow::Result<()>,
    ) -> anyhow::Result<DevMode> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = listener.local_addr()?;
        // Deployment B (the demo resource AS) takes the next port.
        let ras_listen = match bound.port() {
            0 | u16::MAX => SocketAddr::new(bound.ip(), 0),
            p => SocketAddr::new(bound.ip(), if listen.port() == 0 { 0 } else { p + 1 }),
        };
        let ras_listener = TcpListener::bind(ras_listen).await.with_context(|| {
            format!("cannot listen on {ras_listen} (the demo resource AS uses the port after --listen)")
        })?;
        let issuer = crate::dev::issuer_for(bound);
        let ras_issuer = crate::dev::issuer_for(ras_listener.local_addr()?);
        let (mut config, idp) = crate::dev::embedded_config(&issuer, bound, &ras_issuer)?;
        tweak(&mut config)?;
        if listen.port() == 0 {
            // Any free port asked for: the metrics listener too.
            config.metrics.listen = SocketAddr::new(bound.ip(), 0).to_string();
        }
        let mut broker = App::build(&config, "embedded default", None).await?;
        // Dev mode only: the built-in IdP, mounted here and never part of a
        // configured deployment.
        let dev_base = crate::http::base_path(&issuer);
        broker.router = broker.router.nest_service(
            &format!("{dev_base}/dev/idp"),
            crate::http::dev_idp::router(Arc::clone(&idp)),
        );
        let mut ras_config = crate::dev::embedded_ras_config(&ras_issuer, ras_listener.local_addr()?, &issuer)?;
        // One process, one recorder: the broker's metrics listener already
        // serves the demo resource AS's metrics.
        ras_config.metrics.enabled = false;
        let ras = App::build(&ras_config, "embedded resource AS", None).await?;
        tracing::warn!("DEVELOPMENT MODE: ephemeral keys, in-memory state, published demo secrets");
        Ok(DevMode {
            issuer,
            ras_issuer,
            broker,
            listener,
            ras,
            ras_listener,
        })
    }

    /// Serve both until `shutdown` resolves, then drain both.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut ras_stop = stop_rx;
        let ras_task = tokio::spawn(self.ras.serve(self.ras_listener, async move {
            let _ = ras_stop.changed().await;
        }));
        let result = self
            .broker
            .serve(self.listener, async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        let _ = ras_task.await;
        result
    }
}
