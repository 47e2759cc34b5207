//! The spans of one request, built straight on the OpenTelemetry SDK: the
//! request span (kind server, a child of the caller's `traceparent`) is
//! started when the request arrives, each grant step's span when the step
//! starts, and all of them end together when the response leaves, each
//! with its own end time and the request's `xaa.txn`.
//!
//! Why not `tracing` spans bridged by `tracing-opentelemetry`: that bridge
//! sends every span through the subscriber's registry and every layer on
//! creation, enter, exit, record and close, then rebuilds it as an SDK span
//! when it closes; on the 2-core benchmark that alone cost ~10 % of a token
//! exchange, twice the cost of the spans themselves (operations.md,
//! Performance). Here a step costs one SDK span and a push on a vector.
//! Ending the spans together also gives every span the transaction id, even
//! a step that finished before the transaction was known (client
//! authentication), with no shared state between requests.
//!
//! Owns: the per-request record (task-local, one request per task), the
//! step stack (a log line's `span_id` is its innermost open step), the
//! bound on steps per request, and ending every span once (a request
//! dropped before its response, by a client that went away or a deadline,
//! still ends its spans: the SDK ends a span when it is dropped).
//! Must never: be handed a credential (attributes are ids, names and
//! outcomes), hold spans past the request, or share anything between
//! requests.

use std::cell::RefCell;
use std::time::SystemTime;

use opentelemetry::trace::{Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span as SdkSpan};

/// Steps exported per request at most; more (a pathological loop of key
/// fetches) are timed for the metrics and not exported.
const MAX_STEPS: usize = 32;

/// One request's trace state. Lives in the request's task (`REQUEST`).
pub struct RequestTrace {
    inner: RefCell<Inner>,
}

struct Inner {
    /// The trace: the caller's, or the one our request span started.
    trace_id: TraceId,
    /// The request span, when exporting and the sampler kept it.
    span: Option<SdkSpan>,
    /// The steps started so far, in start order, with their end times.
    steps: Vec<StepSpan>,
    /// Indices into `steps` of the steps still open, innermost last.
    open: Vec<usize>,
    /// Shared by every span's `xaa.txn`: one allocation per request.
    txn: Option<std::sync::Arc<str>>,
}

struct StepSpan {
    span: SdkSpan,
    end: Option<SystemTime>,
}

/// The HTTP facts a request span starts with.
pub struct RequestStart<'a> {
    pub name: String,
    pub method: opentelemetry::Value,
    pub path: &'a str,
    pub route: Option<&'a str>,
}

impl RequestTrace {
    /// A request that exports: its span starts now, a child of `caller`
    /// (the `traceparent` context; an empty context starts a trace).
    pub fn exporting(tracer: &SdkTracer, start: RequestStart<'_>, caller: &Context) -> Self {
        let mut attributes = Vec::with_capacity(12);
        attributes.push(KeyValue::new("http.request.method", start.method));
        attributes.push(KeyValue::new("url.path", start.path.to_owned()));
        if let Some(route) = start.route {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        let span = tracer
            .span_builder(start.name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, caller);
        let trace_id = span.span_context().trace_id();
        Self::new(trace_id, span.is_recording().then_some(span))
    }

    /// A request that does not export but whose caller named a trace: the
    /// trace id reaches the audit record and log lines, nothing else.
    pub fn caller_only(trace_id: TraceId) -> Self {
        Self::new(trace_id, None)
    }

    fn new(trace_id: TraceId, span: Option<SdkSpan>) -> Self {
        Self {
            inner: RefCell::new(Inner {
                trace_id,
                span,
                steps: Vec::new(),
                open: Vec::new(),
                txn: None,
            }),
        }
    }

    /// Set an attribute on the request span (no-op when not recording).
    pub fn set(&self, attribute: KeyValue) {
        if let Ok(mut inner) = self.inner.try_borrow_mut()
            && let Some(span) = inner.span.as_mut()
        {
            span.set_attribute(attribute);
        }
    }

    pub fn set_txn(&self, txn: &str) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.txn = Some(txn.into());
        }
    }

    /// Start a step span under the innermost open step (or the request);
    /// the index to hand back to [`RequestTrace::end_step`], `None` when
    /// nothing is recorded.
    pub fn start_step(&self, tracer: &SdkTracer, name: &'static str) -> Option<usize> {
        let mut inner = self.inner.try_borrow_mut().ok()?;
        let request = inner.span.as_ref()?;
        if inner.steps.len() >= MAX_STEPS {
            return None;
        }
        let parent = match inner.open.last() {
            Some(&i) => inner.steps[i].span.span_context().clone(),
            None => request.span_context().clone(),
        };
        // A local parent: `with_remote_span_context` only wraps the span
        // context, whose `is_remote` is false for our own spans.
        let cx = Context::new().with_remote_span_context(parent);
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .start_with_context(tracer, &cx);
        let index = inner.steps.len();
        inner.steps.push(StepSpan { span, end: None });
        inner.open.push(index);
        Some(index)
    }

    pub fn end_step(&self, index: usize) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            if let Some(step) = inner.steps.get_mut(index) {
                step.end = Some(SystemTime::now());
            }
            // Steps end in reverse order of starting; tolerate any order.
            if let Some(at) = inner.open.iter().rposition(|&i| i == index) {
                inner.open.remove(at);
            }
        }
    }

    /// The trace id, and the span id of the innermost open step or of the
    /// request span (`None` when nothing is recorded).
    pub fn ids(&self) -> Option<(TraceId, Option<SpanId>)> {
        let inner = self.inner.try_borrow().ok()?;
        let span_id = match (inner.open.last(), inner.span.as_ref()) {
            (_, None) => None,
            (Some(&i), Some(_)) => Some(inner.steps[i].span.span_context().span_id()),
            (None, Some(request)) => Some(request.span_context().span_id()),
        };
        Some((inner.trace_id, span_id))
    }

    /// End every span: the steps at their own end times, the request now,
    /// each with the request's `xaa.txn`; `failed` marks the request span
    /// as an error (a 5xx answer).
    pub fn finish(self, status: u16, failed: bool) {
        let mut inner = self.inner.into_inner();
        let Some(mut request) = inner.span.take() else {
            return;
        };
        let txn = inner.txn.take();
        for mut step in inner.steps.drain(..) {
            if let Some(txn) = &txn {
                step.span.set_attribute(KeyValue::new("xaa.txn", txn.clone()));
            }
            match step.end {
                Some(end) => step.span.end_with_timestamp(end),
                None => step.span.end(),
            }
        }
        request.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        if let Some(txn) = txn {
            request.set_attribute(KeyValue::new("xaa.txn", txn));
        }
        if failed {
            request.set_status(Status::error(""));
        }
        request.end();
    }
}

/// Whether `cx` carries a valid span context (the caller's trace).
pub fn trace_of(cx: &Context) -> Option<TraceId> {
    let span = cx.span();
    let sc: &SpanContext = span.span_context();
    sc.is_valid().then(|| sc.trace_id())
}
