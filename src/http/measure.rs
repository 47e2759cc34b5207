//! Request metrics at the edge: `xaa_requests_total{endpoint, status}` and
//! `xaa_request_duration_seconds{endpoint}` for every answer the router
//! gives.
//!
//! Owns: the endpoint label, a static name per route (`token`, `introspect`,
//! `metadata`, …; `unmatched` for the 404 fallback), so a scanner sending
//! random paths adds no series.
//! Must never: label with the request path, a header, or anything else the
//! client chose.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Route suffixes and their label, longest first where one ends another
/// (`/admin/revoke` before `/revoke`, `/audit/jwks` before `/jwks`).
const ENDPOINTS: &[(&str, &str)] = &[
    ("/admin/revoke", "admin_revoke"),
    ("/admin/audit", "admin_audit"),
    ("/audit/trace", "audit_trace"),
    ("/audit/records", "audit_records"),
    ("/audit/ui", "audit_ui"),
    ("/audit/events", "audit_events"),
    ("/audit/jwks", "audit_jwks"),
    ("/audit/chain", "audit_chain"),
    ("/token", "token"),
    ("/introspect", "introspect"),
    ("/revoke", "revoke"),
    ("/jwks", "jwks"),
    ("/authorize", "authorize"),
    ("/healthz", "healthz"),
    ("/readyz", "readyz"),
];

/// The label of a matched route (`None`: no route matched).
pub fn endpoint_of(route: Option<&str>) -> &'static str {
    let Some(route) = route else {
        return "unmatched";
    };
    if route.contains("/.well-known/") {
        return "metadata";
    }
    ENDPOINTS
        .iter()
        .find(|(suffix, _)| route.ends_with(suffix))
        .map_or("other", |(_, name)| name)
}

/// The middleware (`axum::middleware::from_fn`).
pub async fn measure(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = endpoint_of(request.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let response = next.run(request).await;
    crate::observe::request(endpoint, response.status().as_u16(), started);
    response
}

#[cfg(test)]
mod tests {
    use super::endpoint_of;

    #[test]
    fn routes_get_their_own_names_and_unknown_paths_one_label() {
        assert_eq!(endpoint_of(Some("/tenant/token")), "token");
        assert_eq!(endpoint_of(Some("/admin/revoke")), "admin_revoke");
        assert_eq!(endpoint_of(Some("/revoke")), "revoke");
        assert_eq!(endpoint_of(Some("/audit/jwks")), "audit_jwks");
        assert_eq!(endpoint_of(Some("/jwks")), "jwks");
        assert_eq!(
            endpoint_of(Some("/.well-known/openid-configuration/tenant")),
            "metadata"
        );
        assert_eq!(
            endpoint_of(Some("/tenant/.well-known/openid-configuration")),
            "metadata"
        );
        assert_eq!(endpoint_of(Some("/dev/idp/{*rest}")), "other");
        assert_eq!(endpoint_of(None), "unmatched");
    }
}
