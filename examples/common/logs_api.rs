//! The logs API: the downstream HTTP API behind the logs MCP server. It
//! accepts only the broker's hop tokens issued for its own resource, and
//! answers `GET /logs` with what the token told it: the user, the `act`
//! chain, the `txn`, the scopes and the client.
//!
//! Owns: its settings (flags and environment), its routes (`GET /logs` and
//! its RFC 9728 metadata document) and serving them until a shutdown.
//! Run alone by `examples/logs_api.rs`, in process by `examples/demo.rs`.
//! Must never: accept a token issued for another audience, log a token
//! (only `jti`, `txn` and claims), or call anything downstream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use xaa_sdk::{Authenticated, ProtectedResource, ResourceMetadata, TokenValidator};

use crate::principal_json::what_the_token_says;

/// The scope `GET /logs` needs: the one read scope of the audience
/// `https://logs-api.example.com` in the broker's embedded default.
pub const SCOPE: &str = "logs.query";

/// Where the logs API listens and whose tokens it accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// The broker's issuer: tokens are accepted from it only (its keys are
    /// discovered from its RFC 8414 metadata).
    #[arg(long = "broker", env = "XAA_BROKER_URL", default_value = "http://127.0.0.1:8080")]
    pub broker: String,
    /// This API's resource identifier: the `aud` every token must carry
    /// (RFC 9068 §4), and the broker's audience id for it.
    #[arg(
        long = "resource",
        env = "LOGS_API_RESOURCE",
        default_value = "https://logs-api.example.com"
    )]
    pub resource: String,
    /// The address to listen on (port 0: any free port).
    #[arg(long = "listen", env = "LOGS_API_LISTEN", default_value = "127.0.0.1:8091")]
    pub listen: SocketAddr,
}

/// Serve the logs API on `listener` until `shutdown` resolves. Fails before
/// serving when the broker's keys cannot be discovered.
pub async fn serve(
    listener: TcpListener,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = crate::base_url::of(&listener)?;
    let router = router(settings, &local).await?;
    tracing::info!(url = %format!("{local}/logs"), resource = %settings.resource, "logs API listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the logs API stopped")
}

/// `GET /logs` behind the SDK's extractor, and the RFC 9728 document.
/// `local` is this server's own base URL: the 401 challenge's
/// `resource_metadata` points there (RFC 9728 §5.1), since the resource
/// identifier's host need not be this server.
async fn router(settings: &Settings, local: &str) -> anyhow::Result<Router> {
    let validator = TokenValidator::builder(&settings.broker, &settings.resource)
        .build()
        .await
        .with_context(|| format!("cannot discover the keys of the broker at {}", settings.broker))?;
    let metadata = ResourceMetadata::new(&settings.resource, &settings.broker)
        .scopes(&[SCOPE])
        .name("logs API (xaa-broker example)");
    let metadata_url = format!("{local}{}", metadata.well_known_path()?);
    let protected = Arc::new(ProtectedResource::new(validator, metadata)?.with_metadata_url(metadata_url));
    Ok(Router::new()
        .route("/logs", get(logs))
        .with_state(protected.clone())
        .merge(protected.metadata_router()?))
}

/// `GET /logs?query=…`: the matching entries, and what the token said about
/// the call. Without [`SCOPE`]: 403 `insufficient_scope` (RFC 6750 §3.1).
async fn logs(
    State(resource): State<Arc<ProtectedResource>>,
    auth: Authenticated,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let p = &auth.principal;
    if !p.has_scope(SCOPE) {
        return resource.insufficient_scope(SCOPE);
    }
    let query = params
        .iter()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    tracing::info!(jti = %p.jti, txn = ?p.txn, sub = %p.sub, client_id = %p.client_id, "GET /logs");
    Json(json!({
        "service": "logs-api",
        "saw": what_the_token_says(p),
        "query": query,
        "entries": entries(query),
    }))
    .into_response()
}

/// A few canned log lines, those containing `query` (case-insensitive).
fn entries(query: &str) -> Vec<Value> {
    const LINES: &[(&str, &str, &str)] = &[
        ("2026-11-30T04:12:09Z", "error", "payments: upstream timeout after 5s"),
        (
            "2026-11-30T04:12:10Z",
            "warn",
            "checkout: retrying payment authorisation",
        ),
        ("2026-11-30T04:12:14Z", "error", "payments: circuit breaker open"),
        ("2026-11-30T04:13:02Z", "info", "payments: circuit breaker closed"),
    ];
    let q = query.to_lowercase();
    LINES
        .iter()
        .filter(|(_, level, text)| q.is_empty() || level.contains(&q) || text.to_lowercase().contains(&q))
        .map(|(time, level, text)| json!({"time": time, "level": level, "message": text}))
        .collect()
}
