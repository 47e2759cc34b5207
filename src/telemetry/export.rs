//! OTLP export of the request and step spans, configured only by the
//! standard `OTEL_*` environment variables: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) switches it on,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`(`_ARG`)
//! and `OTEL_BSP_*` are read by the SDK; `OTEL_SDK_DISABLED=true` switches it off.
//!
//! Owns: the tracer provider, its batch processor (a thread of its own, with
//! a blocking HTTP client: request threads only queue a finished span, and a
//! full queue drops it), and `xaa.txn` on every broker span of a request.
//! Must never: block or fail a request because a collector is slow or down,
//! or hold spans without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry::{Context, Key, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanProcessor};

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
        .with_span_processor(TxnOnEveryBrokerSpan::new(BatchSpanProcessor::builder(exporter).build()))
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

/// Spans held at most, over all requests in flight; past it they are sent
/// as they are (without a `xaa.txn` they did not have).
const MAX_HELD: usize = 4096;

/// `xaa.txn` on every broker span of a request. A step that ends before the
/// transaction is known (client authentication; a key fetch while
/// validating the subject) cannot record it itself, so the steps of a
/// request are held until its request span ends, then given the request
/// span's `xaa.txn` if they lack one, and passed on together. Requests
/// end in milliseconds, so what is held is small; it is bounded anyway.
#[derive(Debug)]
struct TxnOnEveryBrokerSpan {
    next: BatchSpanProcessor,
    /// Finished spans by their parent's span id.
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_parent: HashMap<SpanId, Vec<SpanData>>,
    count: usize,
}

const TXN: &str = "xaa.txn";

impl TxnOnEveryBrokerSpan {
    fn new(next: BatchSpanProcessor) -> Self {
        Self {
            next,
            held: Mutex::default(),
        }
    }

    fn release_all(&self) {
        let spans: Vec<SpanData> = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.count = 0;
            held.by_parent.drain().flat_map(|(_, v)| v).collect()
        };
        for span in spans {
            self.next.on_end(span);
        }
    }
}

impl SpanProcessor for TxnOnEveryBrokerSpan {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.next.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if span.span_kind != SpanKind::Server {
            let overflow = {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                held.by_parent.entry(span.parent_span_id).or_default().push(span);
                held.count += 1;
                held.count > MAX_HELD
            };
            if overflow {
                self.release_all();
            }
            return;
        }
        // The request span: collect its subtree, give each span the txn.
        let txn = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == TXN)
            .map(|kv| kv.value.clone());
        let mut subtree = Vec::new();
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let mut parents = vec![span.span_context.span_id()];
            while let Some(parent) = parents.pop() {
                if let Some(children) = held.by_parent.remove(&parent) {
                    held.count -= children.len();
                    parents.extend(children.iter().map(|c| c.span_context.span_id()));
                    subtree.extend(children);
                }
            }
        }
        for mut child in subtree {
            if let Some(txn) = &txn
                && !child.attributes.iter().any(|kv| kv.key.as_str() == TXN)
            {
                child
                    .attributes
                    .push(KeyValue::new(Key::from_static_str(TXN), txn.clone()));
            }
            self.next.on_end(child);
        }
        self.next.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.release_all();
        self.next.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.release_all();
        self.next.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.next.set_resource(resource);
    }
}
