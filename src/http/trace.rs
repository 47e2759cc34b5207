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
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry::{self, RequestStart};

pub async fn request_span(req: Request, next: Next) -> Response {
    let traceparent = header(req.headers(), "traceparent");
    if !telemetry::wants_request_span(traceparent.is_some()) {
        return next.run(req).await;
    }
    let caller = telemetry::incoming_trace(traceparent, header(req.headers(), "tracestate"));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let start = RequestStart {
        name,
        method: method_value(&method),
        path: &path,
        route: route.as_deref(),
    };
    telemetry::in_request(start, caller, next.run(req), |r: &Response| r.status().as_u16()).await
}

/// The method as a span attribute, without a copy for the usual ones.
fn method_value(method: &Method) -> opentelemetry::Value {
    match *method {
        Method::GET => "GET".into(),
        Method::POST => "POST".into(),
        Method::HEAD => "HEAD".into(),
        Method::OPTIONS => "OPTIONS".into(),
        _ => method.as_str().to_owned().into(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
