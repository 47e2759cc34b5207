//! The logs MCP server over HTTP: `rmcp`'s streamable HTTP service at
//! `/mcp`, behind the SDK's bearer-token check, and its RFC 9728
//! protected-resource metadata.
//!
//! Owns: its settings (flags and environment), the broker clients it
//! authenticates as (`HopTokens`, `AuditReporter`), the layer that refuses a
//! request without a valid token before `rmcp` sees it (401 with
//! `resource_metadata`, RFC 9728 §5.1), the metadata routes, and serving
//! until a shutdown, then flushing the audit reports.
//! Run alone by `examples/mcp_server.rs`, in process by `examples/demo.rs`.
//! Must never: let a request reach a tool without a verified principal, or
//! log a token or its client secret.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use xaa_sdk::resource_metadata::WELL_KNOWN;
use xaa_sdk::{
    AuditReporter, Authenticated, AuthorizationServer, ClientAuth, HopTokens, ProtectedResource, ReporterConfig,
    ReporterStats, ResourceMetadata, TokenValidator,
};

use crate::mcp_tools::{Backend, LogsTools, policy};

/// Where the MCP endpoint is on this server.
pub const MCP_PATH: &str = "/mcp";
/// The longest the audit reports still queued at shutdown are waited for.
const FLUSH: Duration = Duration::from_secs(5);

/// Where the MCP server listens, who it is at the broker, and where the
/// logs API is.
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// The broker's issuer: tokens are accepted from it only, and hop tokens
    /// and audit reports go to it.
    #[arg(long = "broker", env = "XAA_BROKER_URL", default_value = "http://127.0.0.1:8080")]
    pub broker: String,
    /// This server's resource identifier: the `aud` of every token it
    /// accepts and the `resource` of its RFC 9728 document. The MCP
    /// TypeScript SDK requires it to be this server's URL
    /// (`http://127.0.0.1:PORT/mcp`); the broker must then know it as an
    /// audience and as this client's `resource`.
    #[arg(
        long = "resource",
        env = "MCP_RESOURCE",
        default_value = "https://mcp.logs.example.com"
    )]
    pub resource: String,
    /// The address to listen on (port 0: any free port).
    #[arg(long = "listen", env = "MCP_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// This server's client at the broker (a `service` whose `resource` is
    /// the one above).
    #[arg(long = "client-id", env = "MCP_CLIENT_ID", default_value = "mcp-logs")]
    pub client_id: String,
    /// Its secret (`client_secret_basic`, RFC 6749 §2.3.1). Prefer the
    /// environment variable: it stays out of the process list.
    #[arg(
        long = "client-secret",
        env = "MCP_CLIENT_SECRET",
        default_value = "mcp-logs-secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub client_secret: String,
    /// The logs API's base URL.
    #[arg(long = "logs-api", env = "LOGS_API_URL", default_value = "http://127.0.0.1:8091")]
    pub logs_api_url: String,
    /// The logs API's resource identifier: the audience of the hop tokens
    /// this server obtains for it.
    #[arg(
        long = "logs-api-resource",
        env = "LOGS_API_RESOURCE",
        default_value = "https://logs-api.example.com"
    )]
    pub logs_api_resource: String,
}

/// Serve the MCP server on `listener` until `shutdown` resolves, then flush
/// the audit reports (bounded) and return the reporter's counters. Fails
/// before serving when the broker cannot be discovered.
pub async fn serve(
    listener: TcpListener,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ReporterStats> {
    let local = crate::base_url::of(&listener)?;
    let broker = AuthorizationServer::discover(&settings.broker)
        .await
        .with_context(|| format!("cannot discover the broker at {}", settings.broker))?;
    let me = ClientAuth::secret_basic(&settings.client_id, &settings.client_secret);
    let reporter = AuditReporter::new(&broker, me.clone(), ReporterConfig::default())?;
    let backend = Arc::new(Backend {
        policy: policy(),
        hops: HopTokens::builder(broker.clone(), me).build()?,
        reporter: reporter.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        logs_api_url: settings.logs_api_url.clone(),
        logs_api_resource: settings.logs_api_resource.clone(),
    });
    let validator = TokenValidator::builder(&broker.issuer, &settings.resource)
        .build()
        .await
        .with_context(|| format!("cannot discover the keys of the broker at {}", settings.broker))?;
    let metadata = ResourceMetadata::new(&settings.resource, &broker.issuer)
        .scopes(&["logs.read", "logs.purge"])
        .name("logs MCP server (xaa-broker example)");
    let own_path = metadata.well_known_path()?;
    let protected =
        Arc::new(ProtectedResource::new(validator, metadata.clone())?.with_metadata_url(format!("{local}{own_path}")));

    let config = StreamableHttpServerConfig::default();
    let cancel = config.cancellation_token.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(LogsTools::new(backend.clone())),
        LocalSessionManager::default().into(),
        config,
    );
    let router = Router::new()
        .nest_service(MCP_PATH, mcp)
        // Only the routes above: the metadata stays public.
        .layer(middleware::from_fn_with_state(protected.clone(), require_token))
        .merge(metadata_routes(&protected, &metadata, &own_path)?);
    tracing::info!(url = %format!("{local}{MCP_PATH}"), resource = %settings.resource, "MCP server listening");
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Ends the open sessions (and their event streams), or the
            // graceful shutdown would wait for them.
            cancel.cancel();
        })
        .await
        .context("the MCP server stopped");
    if let Err(e) = reporter.flush(FLUSH).await {
        tracing::warn!(pending = e.pending, "audit reports still queued at shutdown are lost");
    }
    served?;
    Ok(reporter.stats())
}

/// Every request to `/mcp` carries a token the broker issued for this
/// resource, or gets the SDK's answer before `rmcp` sees it: 401 with
/// `resource_metadata` (RFC 9728 §5.1), plus `error="invalid_token"` when a
/// token was presented (RFC 6750 §3.1); 503 when the broker's keys cannot be
/// had. The verified principal and its token travel in the request's
/// extensions, where the tools find them (`rmcp` hands the tools the
/// request's `http::request::Parts`).
async fn require_token(auth: Authenticated, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(auth);
    next.run(request).await
}

/// The RFC 9728 document at the well-known path of the resource identifier
/// (§3.1, what the 401 names), and also at the other of the two paths a
/// client may try for an MCP endpoint at `/mcp`: `…/oauth-protected-resource`
/// and `…/oauth-protected-resource/mcp`.
fn metadata_routes(
    protected: &Arc<ProtectedResource>,
    metadata: &ResourceMetadata,
    own_path: &str,
) -> anyhow::Result<Router> {
    let mut routes = protected.metadata_router()?;
    let doc = metadata.to_json();
    for path in [WELL_KNOWN.to_owned(), format!("{WELL_KNOWN}{MCP_PATH}")] {
        if path == own_path {
            continue;
        }
        let doc = doc.clone();
        routes = routes.route(
            &path,
            get(move || async move {
                let mut r = axum::Json(doc).into_response();
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
                r
            }),
        );
    }
    Ok(routes)
}
