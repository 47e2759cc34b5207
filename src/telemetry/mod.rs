//! Logging and traces. Logs: human-readable by default, one JSON object per
//! line with `XAA_LOG_FORMAT=json` (what SIEM pipelines and log shippers
//! want), filtered with `RUST_LOG` (default `info`); audit records go to
//! target `audit`. Traces: one span per HTTP request (target `xaa_request`,
//! opened by `http::trace`) and one per grant step (target `xaa_step`, named
//! for the step: [`step`]), exported over OTLP/HTTP when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`export`), with the trace and span
//! ids on every JSON log line (`json`) and on the audit record.
//!
//! Owns: the subscriber, which spans reach the exporter, the ids a request
//! is correlated by, and the W3C `traceparent` a caller sent.
//! Must never: be handed a credential (callers log jti, hashes and claims;
//! span attributes are ids, names and outcomes, never token material or
//! secrets), export anything when no OTLP endpoint is set, or let an exporter
//! block or fail a request.

mod export;
mod json;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::{Dispatch, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The tracing target of the request span (`http::trace`).
pub const REQUEST_TARGET: &str = "xaa_request";
/// The tracing target of every grant step span. The metrics layer turns each
/// closed span of this target into a latency sample by span name: keep it.
pub const STEP_TARGET: &str = "xaa_step";

/// What `init` set up; keep it for the life of the process and call
/// [`Telemetry::shutdown`] when serving ends, so the last spans are sent.
#[must_use]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint is set).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Send what is queued and stop the exporter, waiting at most
    /// `export::SHUTDOWN_TIMEOUT`: a collector that is down costs the spans
    /// still queued, never a stuck shutdown.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            export::shutdown(provider);
        }
    }
}

/// Install the process-wide subscriber: the log layer (filtered by
/// `RUST_LOG`) and, when an OTLP endpoint is set, the OpenTelemetry layer,
/// which sees only the request and step spans (never log events: those may
/// carry fields nobody vetted as span attributes). Already initialised
/// (tests): the existing subscriber stays, and nothing is exported.
pub fn init() -> Telemetry {
    // The log layer never sees the request and step spans: formatting their
    // fields for every request would cost the hot path for lines nobody
    // asked for. A JSON line finds its ids through the dispatcher instead.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(off(REQUEST_TARGET))
        .add_directive(off(STEP_TARGET));
    let json = std::env::var("XAA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .event_format(json::JsonWithIds::new())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    let (provider, warning) = export::provider_from_env();
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        let spans_only = Targets::new()
            .with_target(REQUEST_TARGET, tracing::Level::INFO)
            .with_target(STEP_TARGET, tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("xaa-broker"))
            // Only what we name: no `code.*` or thread attributes per span.
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            // Nothing here reads OTel's `Context::current()`: no context
            // push and pop on every poll of a request's future. The ids are
            // read from the span itself (`ids_of`).
            .with_context_activation(false)
            .with_filter(spans_only)
    });
    // The request span exists even when nothing exports (a registry entry,
    // no formatting): it carries the caller's trace id to the record and
    // the log lines. Step spans exist only for a layer that wants them.
    let request_spans = tracing_subscriber::layer::Identity::new()
        .with_filter(Targets::new().with_target(REQUEST_TARGET, tracing::Level::INFO));
    // Step spans always feed `xaa_step_duration_seconds` (metrics are
    // always on), so they exist whether or not anything exports.
    let step_metrics =
        crate::observe::steps::StepLayer.with_filter(Targets::new().with_target(STEP_TARGET, tracing::Level::INFO));
    let installed = Registry::default()
        .with(logs)
        .with(request_spans)
        .with(step_metrics)
        .with(otel)
        .try_init()
        .is_ok();
    if !installed {
        // Already initialised (tests): keep the existing subscriber, export nothing.
        if let Some(p) = provider {
            export::shutdown(p);
        }
        return Telemetry { provider: None };
    }
    EXPORTING.store(provider.is_some(), std::sync::atomic::Ordering::Relaxed);
    // Kept for the JSON formatter, which runs inside the dispatch of an
    // event, where `get_default` may answer "no subscriber" (re-entrancy).
    tracing::dispatcher::get_default(|d| {
        let _ = INSTALLED.set(d.downgrade());
    });
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Telemetry { provider }
}

fn off(target: &str) -> tracing_subscriber::filter::Directive {
    // A target name and `off` always parse.
    format!("{target}=off")
        .parse()
        .unwrap_or_else(|_| tracing::level_filters::LevelFilter::OFF.into())
}

/// The steps of a grant, each its own span of target `xaa_step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    ClientAuthentication,
    SubjectValidation,
    ActorValidation,
    Decision,
    Sign,
    StoreCommit,
    JwksFetch,
}

/// A new span for `step`, a child of the current span. Its `xaa.txn` is
/// recorded by [`record_txn`] once the transaction is known; a step that
/// ends before (client authentication) gets it from the request span at
/// export (`export::TxnOnEveryBrokerSpan`).
pub fn step(step: Step) -> Span {
    use tracing::field::Empty;
    match step {
        Step::ClientAuthentication => {
            tracing::info_span!(target: "xaa_step", "client_authentication", xaa.txn = Empty)
        }
        Step::SubjectValidation => tracing::info_span!(target: "xaa_step", "subject_validation", xaa.txn = Empty),
        Step::ActorValidation => tracing::info_span!(target: "xaa_step", "actor_validation", xaa.txn = Empty),
        Step::Decision => tracing::info_span!(target: "xaa_step", "decision", xaa.txn = Empty),
        Step::Sign => tracing::info_span!(target: "xaa_step", "sign", xaa.txn = Empty),
        Step::StoreCommit => tracing::info_span!(target: "xaa_step", "store_commit", xaa.txn = Empty),
        Step::JwksFetch => tracing::info_span!(target: "xaa_step", "jwks_fetch", xaa.txn = Empty),
    }
}

/// Record the transaction id on the current span (a step or the request)
/// and on the request span: from here on every broker span carries it.
pub fn record_txn(txn: &str) {
    let current = Span::current();
    current.record("xaa.txn", txn);
    // A step knows no handle to the request span: the task remembers it.
    if let Ok(root) = REQUEST_SPAN.try_with(Span::clone) {
        root.record("xaa.txn", txn);
    }
}

tokio::task_local! {
    /// The request span of the request this task serves (set by `http::trace`).
    static REQUEST_SPAN: Span;
}

/// Run `f` with `span` as the request span that `record_request` and
/// `record_txn` write to.
pub async fn in_request<F: std::future::Future>(span: Span, f: F) -> F::Output {
    use tracing::Instrument;
    REQUEST_SPAN.scope(span.clone(), f.instrument(span)).await
}

/// Record an OAuth attribute (`oauth.client_id`, `oauth.grant_type`,
/// `oauth.requested_token_type`, `oauth.audience`, `xaa.outcome`,
/// `oauth.error`, `xaa.reason`) on the request span, when there is one.
pub fn record_request(field: &'static str, value: &str) {
    if let Ok(span) = REQUEST_SPAN.try_with(Span::clone) {
        span.record(field, value);
    }
}

/// The trace a caller's W3C `traceparent` (and `tracestate`) names; `None`
/// when absent or malformed (then the request starts a trace of its own).
pub fn incoming_trace(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<opentelemetry::Context> {
    let traceparent = traceparent?;
    struct Headers<'a>(&'a str, Option<&'a str>);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                "traceparent" => Some(self.0),
                "tracestate" => self.1,
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    let cx = TraceContextPropagator::new().extract(&Headers(traceparent, tracestate));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The caller's trace, remembered on the request span when nothing exports:
/// log lines and the audit record still name the caller's trace id.
#[derive(Clone, Copy)]
struct IncomingTrace(TraceId);

/// Make `span` (the request span) part of the caller's trace: its OTel
/// parent when exporting, else remembered for the ids.
pub fn adopt(span: &Span, parent: opentelemetry::Context) {
    let trace_id = parent.span().span_context().trace_id();
    if span.set_parent(parent).is_err() {
        span.with_subscriber(|(id, dispatch)| {
            if let Some(registry) = dispatch.downcast_ref::<Registry>()
                && let Some(data) = registry.span(id)
            {
                data.extensions_mut().insert(IncomingTrace(trace_id));
            }
        });
    }
}

/// Whether spans are exported (set once by `init`).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a request needs its span: when spans are exported, or when the
/// caller sent a trace to correlate with. Otherwise the request runs without
/// one, and the hot path pays for no span at all.
pub fn wants_request_span(has_traceparent: bool) -> bool {
    has_traceparent || EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The ids a log line or an audit record is correlated by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceIds {
    /// 32 lowercase hex digits (W3C trace-context).
    pub trace_id: String,
    /// 16 lowercase hex digits; `None` when nothing exports (no span of ours
    /// has an id then, only the caller's trace does).
    pub span_id: Option<String>,
}

/// The ids of the current span: its OTel span when exporting, else the
/// caller's trace id if a `traceparent` came in; `None` outside a request
/// or when there is no trace at all.
pub fn current_ids() -> Option<TraceIds> {
    match INSTALLED.get().and_then(tracing::dispatcher::WeakDispatch::upgrade) {
        Some(dispatch) => ids_in(&dispatch),
        None => tracing::dispatcher::get_default(ids_in),
    }
}

/// The subscriber `init` installed (weak: it owns nothing).
static INSTALLED: std::sync::OnceLock<tracing::dispatcher::WeakDispatch> = std::sync::OnceLock::new();

fn ids_in(dispatch: &Dispatch) -> Option<TraceIds> {
    let current = dispatch.current_span();
    current.id().and_then(|id| ids_of(id, dispatch))
}

/// The ids of span `id` (see `current_ids`).
fn ids_of(id: &tracing::span::Id, dispatch: &Dispatch) -> Option<TraceIds> {
    if let Some(cx) = tracing_opentelemetry::get_otel_context(id, dispatch) {
        let span = cx.span();
        let sc: &SpanContext = span.span_context();
        if sc.is_valid() {
            return Some(TraceIds {
                trace_id: sc.trace_id().to_string(),
                span_id: Some(sc.span_id().to_string()),
            });
        }
    }
    let registry = dispatch.downcast_ref::<Registry>()?;
    let span = registry.span(id)?;
    span.scope().find_map(|s| {
        s.extensions().get::<IncomingTrace>().map(|t| TraceIds {
            trace_id: t.0.to_string(),
            span_id: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_traceparent_names_the_callers_trace() {
        let cx = incoming_trace(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None).unwrap();
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn a_malformed_or_missing_traceparent_names_none() {
        assert!(incoming_trace(None, None).is_none());
        assert!(incoming_trace(Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None).is_none());
        assert!(incoming_trace(Some("not a traceparent"), None).is_none());
    }

    #[test]
    fn without_a_subscriber_there_are_no_ids() {
        assert_eq!(current_ids(), None);
    }
}
