//! OTLP export of the request and step spans, configured only by the
//! standard `OTEL_*` environment variables: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) switches it on;
//! `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TIMEOUT` are read by
//! `opentelemetry-otlp`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and
//! `OTEL_TRACES_SAMPLER`(`_ARG`) by the SDK's `Config`, and the batch
//! settings `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE` and
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` here; `OTEL_SDK_DISABLED=true` switches
//! it off.
//!
//! Why not the SDK's tracer and `BatchSpanProcessor`: a request's spans are
//! known whole when its response leaves (`request`), so a request thread
//! hands over one plain record per request — ids, times, names, attributes
//! — in one bounded-queue send, and this module's thread turns it into the
//! SDK's `SpanData` and exports it with `opentelemetry-otlp`'s exporter. The
//! SDK tracer's per-span objects, sampler calls and queue sends cost a
//! request thread more than building the spans' data does (operations.md,
//! Performance); the wire format, the sampler and the exporter are the
//! SDK's own.
//!
//! Owns: the sampler decision for a request, span and trace ids, the queue
//! (bounded: a full queue drops the request's spans and counts them), the
//! export thread, and shutdown.
//! Must never: block or fail a request because a collector is slow or down,
//! hold spans without bound, or log a collector failure more than once a
//! minute.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Config, SamplingDecision, SpanData, SpanEvents, SpanExporter, SpanLinks};

/// How long shutdown waits for the last batch: a collector that is down
/// costs these seconds at most, then the queued spans are dropped.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// `OTEL_BSP_*` defaults (OpenTelemetry SDK specification).
const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_millis(5000);
const DEFAULT_MAX_QUEUE_SPANS: usize = 2048;
const DEFAULT_MAX_BATCH_SPANS: usize = 512;

/// A collector failure is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The sampler's verdict on a request, and the ids its spans will have.
pub struct Started {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None`: the sampler did not sample it (nothing is recorded or exported).
    pub recorded: Option<(TraceFlags, TraceState)>,
    /// The caller's span, when a `traceparent` came in.
    pub parent: Option<SpanId>,
}

/// One step of a finished request.
pub struct FinishedStep {
    pub name: &'static str,
    pub span_id: SpanId,
    /// The enclosing step's span id, or the request span's.
    pub parent: SpanId,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// A finished request: what its spans are made of.
pub struct Finished {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub flags: TraceFlags,
    pub state: TraceState,
    pub parent: Option<SpanId>,
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    pub failed: bool,
    pub txn: Option<Arc<str>>,
    pub steps: Vec<FinishedStep>,
}

impl Finished {
    fn span_count(&self) -> usize {
        1 + self.steps.len()
    }
}

/// What wakes the export thread. Finished requests do not: they wait in
/// the data queue until a batch is full or the schedule delay passes, so a
/// request never pays for waking another thread.
enum Control {
    /// A batch is full.
    Export,
    /// Export everything queued, then answer.
    Flush(SyncSender<()>),
}

/// The export pipeline: sampler, ids, queues and thread.
pub struct Pipeline {
    config: Config,
    data: SyncSender<Box<Finished>>,
    control: SyncSender<Control>,
    shared: Arc<Shared>,
    max_batch: usize,
}

/// Counters both sides read.
struct Shared {
    /// Spans queued since the last drain.
    queued: AtomicUsize,
    /// Whether an `Export` is already on its way.
    signalled: AtomicBool,
    dropped: AtomicU64,
}

impl Pipeline {
    /// The pipeline, if an OTLP endpoint is set and the SDK not disabled,
    /// and a warning to log once the subscriber is up.
    pub fn from_env() -> (Option<Pipeline>, Option<String>) {
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
        let mut exporter = match opentelemetry_otlp::SpanExporter::builder()
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
        // The sampler (`OTEL_TRACES_SAMPLER`) and the id generator.
        let config = Config::default();
        let mut resource = Resource::builder();
        if !set("OTEL_SERVICE_NAME") {
            resource = resource.with_service_name("xaa-broker");
        }
        exporter.set_resource(&resource.build());
        let delay = env_number("OTEL_BSP_SCHEDULE_DELAY")
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_SCHEDULE_DELAY);
        let max_queue = env_number("OTEL_BSP_MAX_QUEUE_SIZE")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_QUEUE_SPANS)
            .max(1);
        let max_batch = env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_BATCH_SPANS)
            .clamp(1, max_queue);
        // The queue holds requests; a request is at least two spans.
        let (data, data_rx) = sync_channel((max_queue / 2).max(1));
        let (control, control_rx) = sync_channel(8);
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            signalled: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let worker = Worker {
            exporter,
            scope: InstrumentationScope::builder("xaa-broker")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            delay,
            max_batch,
            shared: shared.clone(),
            last_warning: None,
        };
        // Detached: it ends with the process (the queues' senders are static).
        if let Err(e) = std::thread::Builder::new()
            .name("xaa-otlp-export".into())
            .spawn(move || worker.run(data_rx, control_rx))
        {
            return (
                None,
                Some(format!(
                    "traces are not exported: the export thread failed to start: {e}"
                )),
            );
        }
        let pipeline = Pipeline {
            config,
            data,
            control,
            shared,
            max_batch,
        };
        (Some(pipeline), warning)
    }

    /// Ids for a new request span and the sampler's decision on it
    /// (`caller`: the `traceparent` context, possibly empty).
    pub fn start(&self, caller: &Context, name: &str) -> Started {
        let parent = caller.span().span_context().clone();
        let parent = parent.is_valid().then_some(parent);
        let trace_id = match &parent {
            Some(p) => p.trace_id(),
            None => self.config.id_generator.new_trace_id(),
        };
        let span_id = self.config.id_generator.new_span_id();
        let result = self
            .config
            .sampler
            .should_sample(Some(caller), trace_id, name, &SpanKind::Server, &[], &[]);
        // As the SDK's batch processor: only sampled spans are exported,
        // so a span recorded but not sampled is not recorded at all.
        let recorded = match result.decision {
            SamplingDecision::Drop | SamplingDecision::RecordOnly => None,
            SamplingDecision::RecordAndSample => Some((TraceFlags::SAMPLED, result.trace_state)),
        };
        Started {
            trace_id,
            span_id,
            recorded,
            parent: parent.map(|p| p.span_id()),
        }
    }

    pub fn new_span_id(&self) -> SpanId {
        self.config.id_generator.new_span_id()
    }

    /// Hand a finished request to the export thread; never waits. A full
    /// queue (a collector slower than the broker) drops it.
    pub fn submit(&self, finished: Finished) {
        let spans = finished.span_count();
        if self.data.try_send(Box::new(finished)).is_err() {
            self.shared.dropped.fetch_add(spans as u64, Ordering::Relaxed);
            return;
        }
        let queued = self.shared.queued.fetch_add(spans, Ordering::Relaxed) + spans;
        if queued >= self.max_batch && !self.shared.signalled.swap(true, Ordering::AcqRel) {
            // A full control queue already holds a wake-up.
            let _ = self.control.try_send(Control::Export);
        }
    }

    /// Export what is queued and stop, waiting at most `SHUTDOWN_TIMEOUT`.
    pub fn shutdown(&self) {
        let (tx, rx) = sync_channel(1);
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        // The queue may be full: keep offering until the deadline.
        let mut flush = Control::Flush(tx);
        loop {
            match self.control.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    flush = m;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => {
                    tracing::warn!("the last spans could not be exported at shutdown: the export queue is stuck");
                    return;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            tracing::warn!("the last spans could not be exported at shutdown: the collector did not answer in time");
            return;
        }
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "spans were dropped: the export queue was full");
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

struct Worker {
    exporter: opentelemetry_otlp::SpanExporter,
    scope: InstrumentationScope,
    delay: Duration,
    max_batch: usize,
    shared: Arc<Shared>,
    last_warning: Option<Instant>,
}

impl Worker {
    fn run(mut self, data: Receiver<Box<Finished>>, control: Receiver<Control>) {
        loop {
            match control.recv_timeout(self.delay) {
                Ok(Control::Export) | Err(RecvTimeoutError::Timeout) => self.drain(&data),
                Ok(Control::Flush(done)) => {
                    self.drain(&data);
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.drain(&data);
                    return;
                }
            }
        }
    }

    /// Export everything queued, in batches of at most `max_batch` spans.
    fn drain(&mut self, data: &Receiver<Box<Finished>>) {
        // Reset first: a request queued while this drains counts towards
        // the next batch (at worst, one early wake-up).
        self.shared.queued.store(0, Ordering::Relaxed);
        self.shared.signalled.store(false, Ordering::Release);
        let mut batch: Vec<SpanData> = Vec::with_capacity(self.max_batch);
        while let Ok(finished) = data.try_recv() {
            self.spans_of(*finished, &mut batch);
            if batch.len() >= self.max_batch {
                self.export(&mut batch);
            }
        }
        self.export(&mut batch);
    }

    fn export(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(self.max_batch));
        let count = spans.len() as u64;
        if let Err(e) = futures_executor::block_on(self.exporter.export(spans)) {
            self.shared.dropped.fetch_add(count, Ordering::Relaxed);
            if self.last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                self.last_warning = Some(Instant::now());
                let dropped = self.shared.dropped.load(Ordering::Relaxed);
                tracing::warn!(error = %e, dropped, "traces could not be exported; requests are unaffected");
            }
        }
    }

    /// The request span and its steps, as the SDK's `SpanData`.
    fn spans_of(&self, f: Finished, out: &mut Vec<SpanData>) {
        let context = |span_id| SpanContext::new(f.trace_id, span_id, f.flags, false, f.state.clone());
        for step in &f.steps {
            let mut attributes = Vec::with_capacity(1);
            if let Some(txn) = &f.txn {
                attributes.push(KeyValue::new(TXN, txn.clone()));
            }
            out.push(SpanData {
                span_context: context(step.span_id),
                parent_span_id: step.parent,
                parent_span_is_remote: false,
                span_kind: SpanKind::Internal,
                name: Cow::Borrowed(step.name),
                start_time: step.start,
                end_time: step.end,
                attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: Status::Unset,
                instrumentation_scope: self.scope.clone(),
            });
        }
        let mut attributes = f.attributes;
        if let Some(txn) = f.txn {
            attributes.push(KeyValue::new(TXN, txn));
        }
        out.push(SpanData {
            span_context: context(f.span_id),
            parent_span_id: f.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: f.parent.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(f.name),
            start_time: f.start,
            end_time: f.end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if f.failed { Status::error("") } else { Status::Unset },
            instrumentation_scope: self.scope.clone(),
        });
    }
}

const TXN: &str = "xaa.txn";
