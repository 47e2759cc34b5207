//! The spans of one request, recorded as plain data while it runs: the
//! request span (kind server, a child of the caller's `traceparent`) starts
//! when the request arrives, each grant step's span when the step starts
//! (a child of the innermost open step), and when the response leaves the
//! whole record — ids, times, names, attributes, the request's `xaa.txn`
//! for every span — goes to the export thread in one queue send
//! (`export::Pipeline::submit`), which builds the SDK's span data from it.
//!
//! Why: every span of a request is known whole when the response leaves, so
//! nothing needs a live span object; a step costs a clock read and a push
//! on a vector here. Ending the spans together also gives every span the
//! transaction id, even a step that finished before the transaction was
//! known (client authentication), with no state shared between requests.
//!
//! Owns: the per-request record (task-local, one request per task), the
//! step stack (a log line's `span_id` is its innermost open step), and the
//! bound on steps per request.
//! Must never: be handed a credential (attributes are ids, names and
//! outcomes), hold anything past the request, or share anything between
//! requests. A request dropped before its response (a client that went
//! away, a deadline) exports nothing: it has no outcome to report.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

use super::export::{Finished, FinishedStep, Pipeline};

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
    /// Our request span, when exporting and the sampler kept it.
    recording: Option<Recording>,
    txn: Option<Arc<str>>,
}

struct Recording {
    span_id: SpanId,
    flags: TraceFlags,
    state: TraceState,
    parent: Option<SpanId>,
    name: String,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    steps: Vec<Step>,
    /// Indices into `steps` of the steps still open, innermost last.
    open: Vec<usize>,
}

struct Step {
    name: &'static str,
    span_id: SpanId,
    parent: SpanId,
    start: SystemTime,
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
    /// A request that exports (if the sampler keeps it): its span starts
    /// now, a child of `caller` (the `traceparent` context; an empty one
    /// starts a trace).
    pub fn exporting(pipeline: &Pipeline, start: RequestStart<'_>, caller: &opentelemetry::Context) -> Self {
        let started = pipeline.start(caller, &start.name);
        let recording = started.recorded.map(|(flags, state)| {
            let mut attributes = Vec::with_capacity(12);
            attributes.push(KeyValue::new("http.request.method", start.method));
            attributes.push(KeyValue::new("url.path", start.path.to_owned()));
            if let Some(route) = start.route {
                attributes.push(KeyValue::new("http.route", route.to_owned()));
            }
            Recording {
                span_id: started.span_id,
                flags,
                state,
                parent: started.parent,
                name: start.name,
                start: SystemTime::now(),
                attributes,
                steps: Vec::new(),
                open: Vec::new(),
            }
        });
        Self::new(started.trace_id, recording)
    }

    /// A request that does not export but whose caller named a trace: the
    /// trace id reaches the audit record and log lines, nothing else.
    pub fn caller_only(trace_id: TraceId) -> Self {
        Self::new(trace_id, None)
    }

    fn new(trace_id: TraceId, recording: Option<Recording>) -> Self {
        Self {
            inner: RefCell::new(Inner {
                trace_id,
                recording,
                txn: None,
            }),
        }
    }

    /// Set an attribute on the request span (no-op when not recording).
    pub fn set(&self, attribute: KeyValue) {
        if let Ok(mut inner) = self.inner.try_borrow_mut()
            && let Some(r) = inner.recording.as_mut()
        {
            r.attributes.push(attribute);
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
    pub fn start_step(&self, pipeline: &Pipeline, name: &'static str) -> Option<usize> {
        let mut inner = self.inner.try_borrow_mut().ok()?;
        let r = inner.recording.as_mut()?;
        if r.steps.len() >= MAX_STEPS {
            return None;
        }
        let parent = match r.open.last() {
            Some(&i) => r.steps[i].span_id,
            None => r.span_id,
        };
        let index = r.steps.len();
        r.steps.push(Step {
            name,
            span_id: pipeline.new_span_id(),
            parent,
            start: SystemTime::now(),
            end: None,
        });
        r.open.push(index);
        Some(index)
    }

    pub fn end_step(&self, index: usize) {
        if let Ok(mut inner) = self.inner.try_borrow_mut()
            && let Some(r) = inner.recording.as_mut()
        {
            if let Some(step) = r.steps.get_mut(index) {
                step.end = Some(SystemTime::now());
            }
            // Steps end in reverse order of starting; tolerate any order.
            if let Some(at) = r.open.iter().rposition(|&i| i == index) {
                r.open.remove(at);
            }
        }
    }

    /// The trace id, and the span id of the innermost open step or of the
    /// request span (`None` when nothing is recorded).
    pub fn ids(&self) -> Option<(TraceId, Option<SpanId>)> {
        let inner = self.inner.try_borrow().ok()?;
        let span_id = inner.recording.as_ref().map(|r| match r.open.last() {
            Some(&i) => r.steps[i].span_id,
            None => r.span_id,
        });
        Some((inner.trace_id, span_id))
    }

    /// End every span (a step still open ends now) and hand the request to
    /// the export thread; `failed` marks the request span as an error (a
    /// 5xx answer).
    pub fn finish(self, pipeline: &Pipeline, status: u16, failed: bool) {
        let inner = self.inner.into_inner();
        let Some(mut r) = inner.recording else {
            return;
        };
        let end = SystemTime::now();
        r.attributes
            .push(KeyValue::new("http.response.status_code", i64::from(status)));
        pipeline.submit(Finished {
            trace_id: inner.trace_id,
            span_id: r.span_id,
            flags: r.flags,
            state: r.state,
            parent: r.parent,
            name: r.name,
            start: r.start,
            end,
            attributes: r.attributes,
            failed,
            txn: inner.txn,
            steps: r
                .steps
                .into_iter()
                .map(|s| FinishedStep {
                    name: s.name,
                    span_id: s.span_id,
                    parent: s.parent,
                    start: s.start,
                    end: s.end.unwrap_or(end),
                })
                .collect(),
        });
    }
}

/// Whether `cx` carries a valid span context (the caller's trace).
pub fn trace_of(cx: &opentelemetry::Context) -> Option<TraceId> {
    let span = cx.span();
    let sc: &SpanContext = span.span_context();
    sc.is_valid().then(|| sc.trace_id())
}
