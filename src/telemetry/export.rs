//! OTLP export of the request and step spans, configured only by the
//! standard `OTEL_*` environment variables: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) switches it on,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`(`_ARG`)
//! and `OTEL_BSP_*` are read by the SDK; `OTEL_SDK_DISABLED=true` switches it off.
//!
//! Owns: the tracer provider and its batch processor (a thread of its own,
//! with a blocking HTTP client: request threads only queue a finished span,
//! and a full queue drops it).
//! Must never: block or fail a request because a collector is slow or down,
//! or hold spans without bound.

use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// How long shutdown waits for the last batch: a collector that is down
/// costs these seconds at most, then the queued spans are dropped.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// The provider, if an OTLP endpoint is set and the SDK not disabled, and a
/// warning to log once the subscriber is up.
pub fn provider_from_env() -> (Option<SdkTracerProvider>, Option<String>) {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        || std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return (None, None);
    }
    let mut warning = None;
    for var in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
        if std::env::var(var).is_ok_and(|p| p.trim() != "http/protobuf") {
            warning = Some(format!(
                "{var}: only http/protobuf is built in; exporting traces with http/protobuf"
            ));
        }
    }
    // The endpoint, headers and timeout come from the environment.
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            return (
                None,
                Some(format!(
                    "traces are not exported: the OTLP exporter failed to start: {e}"
                )),
            );
        }
    };
    let mut resource = Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("xaa-broker");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    (Some(provider), warning)
}

/// Send what is queued, waiting at most `SHUTDOWN_TIMEOUT`.
pub fn shutdown(provider: SdkTracerProvider) {
    if let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
        tracing::warn!(error = %e, "the last spans could not be exported at shutdown");
    }
}
