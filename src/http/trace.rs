//! The request span: one per HTTP request, named like `POST /token` (the
//! matched route, never the raw path), kind server, a child of the caller's
//! trace when a W3C `traceparent` came in. Its OAuth attributes
//! (`oauth.client_id`, `oauth.grant_type`, `xaa.txn`, `xaa.outcome`, …) are
//! recorded by the protocol code as they become known (`telemetry`).
//!
//! Owns: opening and closing the request span, and the HTTP attributes.
//! Must never: record a header other than `traceparent`/`tracestate`, a
//! query string or a body (credentials travel there).

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;

use crate::telemetry;

pub async fn request_span(req: Request, next: Next) -> Response {
    let traceparent = header(req.headers(), "traceparent").is_some();
    if !telemetry::wants_request_span(traceparent) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        target: "xaa_request",
        "request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        url.path = %req.uri().path(),
        http.route = route,
        http.response.status_code = Empty,
        xaa.txn = Empty,
        oauth.client_id = Empty,
        oauth.grant_type = Empty,
        oauth.requested_token_type = Empty,
        oauth.audience = Empty,
        xaa.outcome = Empty,
        oauth.error = Empty,
        xaa.reason = Empty,
    );
    if !span.is_disabled()
        && let Some(parent) = telemetry::incoming_trace(
            header(req.headers(), "traceparent"),
            header(req.headers(), "tracestate"),
        )
    {
        telemetry::adopt(&span, parent);
    }
    let response = telemetry::in_request(span.clone(), next.run(req)).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
