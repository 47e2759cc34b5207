//! The metrics listener's app: `GET /metrics` in the Prometheus text format,
//! for the addresses in `metrics.allow` only. It is served on its own
//! listener (`metrics.listen`), never on the OAuth port, by the same bounded
//! `http::server` (specs/operations.md "Metrics").
//!
//! Owns: the allow check (403 for any other peer), and the gauges read at
//! scrape time (the checkpoint age).
//! Must never: be mounted on the OAuth router, or answer anything but the
//! metrics text, 403, 404 or 405.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::observe::allow::AllowList;
use crate::state::AppState;

/// The Prometheus text exposition format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Scrape {
    state: Arc<AppState>,
    allow: AllowList,
}

/// The router of the metrics listener.
pub fn router(state: Arc<AppState>, allow: AllowList) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "not found\n") })
        .method_not_allowed_fallback(|| async { plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n") })
        .with_state(Arc::new(Scrape { state, allow }))
}

async fn metrics(State(scrape): State<Arc<Scrape>>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    if !scrape.allow.allows(Some(peer.ip())) {
        return plain(
            StatusCode::FORBIDDEN,
            "this address may not read metrics (metrics.allow)\n",
        );
    }
    let last_ms = scrape.state.checkpoints.last_at_ms().await;
    let age_ms = scrape.state.clock.now_ms().saturating_sub(last_ms).max(0);
    crate::observe::checkpoint_age(age_ms as f64 / 1000.0);
    match crate::observe::render() {
        Some(text) => (
            [
                (header::CONTENT_TYPE, CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        None => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process\n",
        ),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}
