//! `POST /token`: every grant enters here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::params::OAuthParams;
use crate::state::AppState;

pub async fn token(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Response {
    crate::grant::handle(&state, &headers, Some(peer.ip()), params).await
}
