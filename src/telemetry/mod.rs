//! Logging and traces. Logs: human-readable by default, one JSON object per
//! line with `XAA_LOG_FORMAT=json` (what SIEM pipelines and log shippers
//! want), filtered with `RUST_LOG` (default `info`); audit records go to
//! target `audit`. Traces: one span per HTTP request (opened by
//! `http::trace`) and one per grant step ([`step`], [`timed`]), built on
//! the OpenTelemetry SDK (`request`) and exported over OTLP/HTTP when the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`export`), with the trace
//! and span ids on every JSON log line (`json`) and on the audit record.
//! Every step is also timed into `xaa_step_duration_seconds`, exported or
//! not (`observe::steps`).
//!
//! Owns: the subscriber, the tracer, the request a task serves and its
//! spans, the ids a request is correlated by, and the W3C `traceparent` a
//! caller sent.
//! Must never: be handed a credential (callers log jti, hashes and claims;
//! span attributes are ids, names and outcomes, never token material or
//! secrets), export anything when no OTLP endpoint is set, or let an exporter
//! block or fail a request.

mod export;
mod json;
mod request;

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use request::RequestStart;
use request::RequestTrace;

/// What `init` set up; keep it for the life of the process and call
/// [`Telemetry::shutdown`] when serving ends, so the last spans are sent.
#[must_use]
pub struct Telemetry {
    exporting: bool,
}

impl Telemetry {
    /// Send what is queued and stop the exporter, waiting at most
    /// `export::SHUTDOWN_TIMEOUT`: a collector that is down costs the spans
    /// still queued, never a stuck shutdown.
    pub fn shutdown(self) {
        if self.exporting
            && let Some(pipeline) = PIPELINE.get()
        {
            pipeline.shutdown();
        }
    }
}

/// Install the process-wide subscriber (the log layer, filtered by
/// `RUST_LOG`) and, when an OTLP endpoint is set, the tracer the request
/// and step spans are built with. Already initialised (tests): the existing
/// subscriber stays, and nothing is exported.
pub fn init() -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
    if Registry::default().with(logs).try_init().is_err() {
        // Already initialised (tests): keep the existing subscriber, export nothing.
        return Telemetry { exporting: false };
    }
    let (pipeline, warning) = export::Pipeline::from_env();
    let exporting = pipeline.is_some_and(|p| PIPELINE.set(p).is_ok());
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Telemetry { exporting }
}

/// The export pipeline, once `init` found an OTLP endpoint: its presence is
/// what "exporting" means.
static PIPELINE: OnceLock<export::Pipeline> = OnceLock::new();

/// The steps of a grant, each its own span, named for the step.
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

impl Step {
    /// The span's name and the `step` label of `xaa_step_duration_seconds`.
    pub const fn name(self) -> &'static str {
        match self {
            Step::ClientAuthentication => "client_authentication",
            Step::SubjectValidation => "subject_validation",
            Step::ActorValidation => "actor_validation",
            Step::Decision => "decision",
            Step::Sign => "sign",
            Step::StoreCommit => "store_commit",
            Step::JwksFetch => "jwks_fetch",
        }
    }
}

/// A step in progress: its span (a child of the innermost open step, or of
/// the request span) when the request is traced, and its latency sample
/// when it is dropped. Hold it for the step's duration.
#[must_use = "a step lasts as long as its guard"]
pub struct StepGuard {
    step: Step,
    started: std::time::Instant,
    span: Option<usize>,
}

/// Start `step` now (see [`StepGuard`]); for an async step, [`timed`].
pub fn step(step: Step) -> StepGuard {
    let span = PIPELINE.get().and_then(|pipeline| {
        REQUEST
            .try_with(|request| request.start_step(pipeline, step.name()))
            .ok()
            .flatten()
    });
    StepGuard {
        step,
        started: std::time::Instant::now(),
        span,
    }
}

impl StepGuard {
    /// Run `f` as this step, then end it.
    pub fn in_scope<T>(self, f: impl FnOnce() -> T) -> T {
        let out = f();
        drop(self);
        out
    }
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        crate::observe::steps::record(self.step as usize, self.step.name(), self.started.elapsed());
        if let Some(index) = self.span {
            let _ = REQUEST.try_with(|request| request.end_step(index));
        }
    }
}

/// Run the future `f` as `step`: the step starts when it is first polled
/// and ends when it completes (or is dropped).
pub async fn timed<F: std::future::Future>(step: Step, f: F) -> F::Output {
    let _guard = self::step(step);
    f.await
}

/// Record the transaction id: from here on, and back to the request's
/// first step, every span of the request carries it as `xaa.txn`.
pub fn record_txn(txn: &str) {
    let _ = REQUEST.try_with(|request| request.set_txn(txn));
}

tokio::task_local! {
    /// The traced request this task serves (set by [`in_request`]).
    static REQUEST: RequestTrace;
}

/// Serve `f` as a traced request: its span starts now (when exporting; a
/// child of the caller's trace, `caller`, when one came in), and ends with
/// `f`'s response; the status and failure come from `status_of`. Without
/// export and without a caller's trace, `f` runs untraced.
pub async fn in_request<F, T>(
    start: RequestStart<'_>,
    caller: Option<opentelemetry::Context>,
    f: F,
    status_of: impl FnOnce(&T) -> u16,
) -> T
where
    F: std::future::Future<Output = T>,
{
    let trace = match (PIPELINE.get(), caller) {
        (Some(pipeline), caller) => RequestTrace::exporting(pipeline, start, &caller.unwrap_or_default()),
        (None, Some(caller)) => match request::trace_of(&caller) {
            Some(trace_id) => RequestTrace::caller_only(trace_id),
            None => return f.await,
        },
        (None, None) => return f.await,
    };
    let mut scoped = std::pin::pin!(REQUEST.scope(trace, f));
    let out = scoped.as_mut().await;
    if let (Some(trace), Some(pipeline)) = (scoped.as_mut().take_value(), PIPELINE.get()) {
        let status = status_of(&out);
        trace.finish(pipeline, status, status >= 500);
    }
    out
}

/// Record an OAuth attribute (`oauth.client_id`, `oauth.grant_type`,
/// `oauth.requested_token_type`, `oauth.audience`, `xaa.outcome`,
/// `oauth.error`, `xaa.reason`) on the request span, when there is one.
pub fn record_request(field: &'static str, value: &str) {
    if PIPELINE.get().is_some() {
        let _ = REQUEST.try_with(|request| request.set(opentelemetry::KeyValue::new(field, value.to_owned())));
    }
}

/// [`record_request`] for a code or name fixed at build time: no copy.
pub fn record_request_static(field: &'static str, value: &'static str) {
    if PIPELINE.get().is_some() {
        let _ = REQUEST.try_with(|request| request.set(opentelemetry::KeyValue::new(field, value)));
    }
}

/// The trace a caller's W3C `traceparent` (and `tracestate`) names; `None`
/// when absent or malformed (then the request starts a trace of its own).
pub fn incoming_trace(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt;
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

/// Whether a request needs tracing: when spans are exported, or when the
/// caller sent a trace to correlate with. Otherwise the request runs
/// untraced, and the hot path pays for nothing.
pub fn wants_request_span(has_traceparent: bool) -> bool {
    has_traceparent || PIPELINE.get().is_some()
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

/// The ids of the request this task serves: its trace, and the innermost
/// open step's span (else the request span) when exporting; `None` outside
/// a traced request.
pub fn current_ids() -> Option<TraceIds> {
    let (trace_id, span_id): (TraceId, Option<SpanId>) = REQUEST.try_with(RequestTrace::ids).ok().flatten()?;
    Some(TraceIds {
        trace_id: trace_id.to_string(),
        span_id: span_id.map(|s| s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_traceparent_names_the_callers_trace() {
        let cx = incoming_trace(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None).unwrap();
        assert_eq!(
            request::trace_of(&cx).map(|t| t.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn a_malformed_or_missing_traceparent_names_none() {
        assert!(incoming_trace(None, None).is_none());
        assert!(incoming_trace(Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None).is_none());
        assert!(incoming_trace(Some("not a traceparent"), None).is_none());
    }

    #[test]
    fn outside_a_traced_request_there_are_no_ids() {
        assert_eq!(current_ids(), None);
    }

    /// Without export, a caller's trace still names the request's ids
    /// (no span id: no span of ours exists), and a step inside it neither
    /// invents a span nor loses its latency sample.
    #[tokio::test]
    async fn a_callers_trace_names_the_request_without_export() {
        let caller = incoming_trace(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None);
        let start = RequestStart {
            name: "POST /token".into(),
            method: "POST".into(),
            path: "/token",
            route: Some("/token"),
        };
        let ids = in_request(
            start,
            caller,
            async { timed(Step::Decision, async { current_ids() }).await },
            |_| 200,
        )
        .await;
        assert_eq!(
            ids,
            Some(TraceIds {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                span_id: None
            })
        );
        assert_eq!(current_ids(), None, "the request's ids end with it");
    }
}
