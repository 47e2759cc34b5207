//! `AuditReporter`: each tool call reported to the broker's
//! `POST /audit/events` (specs/audit.md), off the call's path.
//!
//! Owns: the report's fields (tool, category, outcome, SHA-256 of the
//! arguments, optional redacted summary, `call_id`, `at`), the bounded
//! queue, the background task that drains it, bounded retries, and the
//! counters (`sent`, `retried`, `dropped`).
//!
//! **The guarantee.** `report`, `before` and `after` never wait on the
//! network and never fail the tool call: they put the event on a bounded
//! queue (`queue_capacity`, default 1024) and return. One background task
//! sends the events in the order queued, one at a time. An event is
//! delivered *at most once* as far as this process knows: it is counted
//! `sent` when the broker answers 200 (then it is a record in the broker's
//! hash chain). It is retried — counted in `retried` each time — after a
//! network error, a 429 or a 5xx, up to `max_attempts` attempts in all,
//! waiting `retry_backoff` doubled each time (capped at 5 s, or the
//! broker's `Retry-After` within that cap). It is counted `dropped`, and
//! logged with `tracing::warn!` (tool, category, outcome, `call_id`, the
//! token's `jti`; never the token), when the queue is full at `report`, when
//! its attempts are spent, or when the broker refuses it (another 4xx:
//! retrying cannot help). Events still queued when the process exits are
//! lost unless [`AuditReporter::flush`] was awaited first; `flush` waits
//! until every queued event is sent or dropped, or the timeout passes. A
//! report that timed out on the client may still have been recorded by the
//! broker, and is then retried: the `call_id` pairs duplicates.
//!
//! Must never: block or fail a tool call, grow without bound, send or log
//! the arguments (only their SHA-256), or log a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};

use crate::bearer::BearerToken;
use crate::client_auth::ClientAuth;
use crate::discovery::AuthorizationServer;
use crate::http::{Http, HttpConfig, TransportError};
use crate::principal::Principal;
use crate::tool_policy::Category;
use crate::traceparent::{TraceParent, hex};

/// The broker's bounds on a report (src/tool_events.rs).
pub const MAX_TOOL_NAME: usize = 128;
pub const MAX_SUMMARY: usize = 256;
pub const MAX_CALL_ID: usize = 64;
/// The most a retry waits.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A tool call's outcome: `allowed`/`denied` before it runs (this server's
/// own permission check), `succeeded`/`failed` after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    Allowed,
    Denied,
    Succeeded,
    Failed,
}

impl ToolOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolOutcome::Allowed => "allowed",
            ToolOutcome::Denied => "denied",
            ToolOutcome::Succeeded => "succeeded",
            ToolOutcome::Failed => "failed",
        }
    }
}

/// Why a tool call cannot be described as the broker requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallError {
    #[error("tool must be 1 to {MAX_TOOL_NAME} characters without control characters")]
    ToolName,
    #[error("call_id must be 1 to {MAX_CALL_ID} characters of A-Z a-z 0-9 . _ : -")]
    CallId,
}

/// One tool call, as reported: never its arguments, only their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    tool: String,
    category: Category,
    args_sha256: String,
    summary: Option<String>,
    call_id: String,
}

impl ToolCall {
    /// `args`: the arguments as received (e.g. the JSON-RPC `arguments`
    /// bytes); only their SHA-256 leaves. A fresh `call_id` pairs the
    /// report before the call with the one after it.
    pub fn new(tool: &str, category: Category, args: &[u8]) -> Result<Self, ToolCallError> {
        if tool.is_empty() || tool.chars().count() > MAX_TOOL_NAME || tool.chars().any(char::is_control) {
            return Err(ToolCallError::ToolName);
        }
        Ok(Self {
            tool: tool.to_owned(),
            category,
            args_sha256: hex(&openssl::sha::sha256(args)),
            summary: None,
            call_id: uuid::Uuid::now_v7().to_string(),
        })
    }

    /// A short description you have redacted: control characters removed,
    /// cut at [`MAX_SUMMARY`] characters.
    pub fn with_summary(mut self, summary: &str) -> Self {
        let s: String = summary.chars().filter(|c| !c.is_control()).take(MAX_SUMMARY).collect();
        self.summary = Some(s).filter(|s| !s.is_empty());
        self
    }

    /// Use the caller's own call id (e.g. the JSON-RPC request id).
    pub fn with_call_id(mut self, call_id: &str) -> Result<Self, ToolCallError> {
        let ok = !call_id.is_empty()
            && call_id.len() <= MAX_CALL_ID
            && call_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !ok {
            return Err(ToolCallError::CallId);
        }
        self.call_id = call_id.to_owned();
        Ok(self)
    }

    pub fn tool(&self) -> &str {
        &self.tool
    }
    pub fn category(&self) -> Category {
        self.category
    }
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
    pub fn args_sha256(&self) -> &str {
        &self.args_sha256
    }
}

/// Bounds of the reporter.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// Events waiting to be sent, at most (default 1024, 1 to 65 536).
    pub queue_capacity: usize,
    /// Attempts per event, the first included (default 3, 1 to 10).
    pub max_attempts: u32,
    /// The wait before the first retry, doubled for each next (default
    /// 250 ms; every wait is at most 5 s).
    pub retry_backoff: Duration,
    pub http: HttpConfig,
}

impl Default for ReporterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            max_attempts: 3,
            retry_backoff: Duration::from_millis(250),
            http: HttpConfig::default(),
        }
    }
}

/// Why a reporter could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReporterError {
    #[error("the queue capacity must be 1 to 65536")]
    QueueCapacity,
    #[error("max_attempts must be 1 to 10")]
    Attempts,
    #[error("an AuditReporter must be created inside a Tokio runtime")]
    NoRuntime,
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// `flush` returned before the queue drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{pending} audit events still pending at the flush timeout")]
pub struct FlushTimedOut {
    pub pending: usize,
}

/// The reporter's counters since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReporterStats {
    /// Recorded by the broker (it answered 200).
    pub sent: u64,
    /// Retry attempts made (an event retried twice counts 2).
    pub retried: u64,
    /// Given up: queue full, attempts spent, or refused by the broker.
    pub dropped: u64,
    /// Queued or in flight now.
    pub pending: usize,
}

struct Event {
    token: BearerToken,
    jti: String,
    call: ToolCall,
    outcome: ToolOutcome,
    at: u64,
    trace: TraceParent,
}

#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicUsize,
    idle: Notify,
}

/// Reports tool calls to the broker in the background. Cheap to clone; the
/// background task ends when the last clone is dropped and the queue is
/// drained.
#[derive(Clone)]
pub struct AuditReporter {
    tx: mpsc::Sender<Event>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditReporter").field("stats", &self.stats()).finish()
    }
}

impl AuditReporter {
    /// Report to `broker`'s `/audit/events`, authenticating as `auth`: the
    /// client whose `resource` the reported tokens were issued for. Spawns
    /// the background task on the current Tokio runtime.
    pub fn new(broker: &AuthorizationServer, auth: ClientAuth, config: ReporterConfig) -> Result<Self, ReporterError> {
        if !(1..=65_536).contains(&config.queue_capacity) {
            return Err(ReporterError::QueueCapacity);
        }
        if !(1..=10).contains(&config.max_attempts) {
            return Err(ReporterError::Attempts);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ReporterError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            http: Http::new(&config.http)?,
            url: broker.audit_events_endpoint(),
            audience: broker.issuer.clone(),
            auth,
            max_attempts: config.max_attempts,
            backoff: config.retry_backoff,
            shared: shared.clone(),
        };
        runtime.spawn(worker.run(rx));
        Ok(Self { tx, shared })
    }

    /// Report the permission check before the call: `allowed` or `denied`.
    pub fn before(&self, token: &str, principal: &Principal, call: &ToolCall, allowed: bool) -> bool {
        let outcome = if allowed {
            ToolOutcome::Allowed
        } else {
            ToolOutcome::Denied
        };
        self.report(token, principal, call, outcome)
    }

    /// Report the call's result: `succeeded` or `failed`.
    pub fn after(&self, token: &str, principal: &Principal, call: &ToolCall, succeeded: bool) -> bool {
        let outcome = if succeeded {
            ToolOutcome::Succeeded
        } else {
            ToolOutcome::Failed
        };
        self.report(token, principal, call, outcome)
    }

    /// Queue one report about a call made with `token` (the token the
    /// request carried; the broker takes the user, chain and `txn` from it).
    /// Returns whether it was queued; never waits.
    pub fn report(&self, token: &str, principal: &Principal, call: &ToolCall, outcome: ToolOutcome) -> bool {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let event = Event {
            token: BearerToken::new(token),
            jti: principal.jti.clone(),
            call: call.clone(),
            outcome,
            at,
            trace: principal.outgoing_trace(),
        };
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(e) => {
                let (mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev)) = e;
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.finish_one();
                tracing::warn!(
                    tool = %ev.call.tool, category = %ev.call.category, outcome = ev.outcome.as_str(),
                    call_id = %ev.call.call_id, jti = %ev.jti,
                    "audit event dropped: the report queue is full"
                );
                false
            }
        }
    }

    pub fn stats(&self) -> ReporterStats {
        ReporterStats {
            sent: self.shared.sent.load(Ordering::Relaxed),
            retried: self.shared.retried.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            pending: self.shared.pending.load(Ordering::SeqCst),
        }
    }

    /// Wait until every event queued so far is sent or dropped, at most
    /// `timeout` (for shutdown).
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushTimedOut> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let pending = self.shared.pending.load(Ordering::SeqCst);
            if pending == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return Err(FlushTimedOut {
                    pending: self.shared.pending.load(Ordering::SeqCst),
                });
            }
        }
    }
}

impl Shared {
    fn finish_one(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Sent,
    /// Worth another attempt, after at least this long when the broker said.
    Retry(String, Option<Duration>),
    /// Retrying cannot help.
    Refused(String),
}

struct Worker {
    http: Http,
    url: String,
    audience: String,
    auth: ClientAuth,
    max_attempts: u32,
    backoff: Duration,
    shared: Arc<Shared>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Event>) {
        while let Some(event) = rx.recv().await {
            self.deliver(&event).await;
            self.shared.finish_one();
        }
    }

    async fn deliver(&self, event: &Event) {
        let mut wait = self.backoff;
        for attempt in 1..=self.max_attempts {
            let why = match self.send(event).await {
                Attempt::Sent => {
                    self.shared.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Attempt::Refused(why) => {
                    self.drop_event(event, &why);
                    return;
                }
                Attempt::Retry(why, retry_after) => {
                    if attempt < self.max_attempts {
                        self.shared.retried.fetch_add(1, Ordering::Relaxed);
                        let pause = retry_after.map_or(wait, |r| r.max(wait)).min(MAX_BACKOFF);
                        tokio::time::sleep(pause).await;
                        wait = wait.saturating_mul(2).min(MAX_BACKOFF);
                    }
                    why
                }
            };
            if attempt == self.max_attempts {
                self.drop_event(event, &format!("{why} (after {attempt} attempts)"));
            }
        }
    }

    fn drop_event(&self, event: &Event, why: &str) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            tool = %event.call.tool, category = %event.call.category, outcome = event.outcome.as_str(),
            call_id = %event.call.call_id, jti = %event.jti, reason = why,
            "audit event dropped"
        );
    }

    async fn send(&self, event: &Event) -> Attempt {
        let credentials = match self.auth.credentials(&self.audience) {
            Ok(c) => c,
            Err(e) => return Attempt::Refused(e.to_string()),
        };
        let at = event.at.to_string();
        let c = &event.call;
        let mut form: Vec<(&str, &str)> = vec![
            ("token", event.token.expose()),
            ("tool", &c.tool),
            ("category", c.category.as_str()),
            ("outcome", event.outcome.as_str()),
            ("args_sha256", &c.args_sha256),
            ("call_id", &c.call_id),
            ("at", &at),
        ];
        if let Some(s) = &c.summary {
            form.push(("summary", s));
        }
        let authorization = credentials.attach(self.auth.client_id(), &mut form);
        match self.http.post_form(&self.url, &form, authorization, &event.trace).await {
            Ok(r) if r.status == 200 => Attempt::Sent,
            Ok(r) => {
                let error = r
                    .json()
                    .and_then(|b| b.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                    .unwrap_or_default();
                let why = format!("HTTP {} {error}", r.status);
                if r.status == 429 || r.status >= 500 {
                    Attempt::Retry(why, r.retry_after)
                } else {
                    Attempt::Refused(why)
                }
            }
            Err(e) => Attempt::Retry(e.to_string(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_call_carries_the_hash_of_its_arguments_never_the_arguments() {
        let c = ToolCall::new("search_logs", Category::Read, br#"{"query":"error"}"#).unwrap();
        // printf '{"query":"error"}' | sha256sum (the README's step 6)
        assert_eq!(
            c.args_sha256(),
            "85d67b3904ece57d0f6a350c4fc2ca20a8af6a5bb1bb26c8549d204d76598d34"
        );
        assert!(!format!("{c:?}").contains("error\""), "the arguments are not kept");
    }

    #[test]
    fn calls_get_distinct_ids_the_broker_accepts() {
        let a = ToolCall::new("t", Category::Read, b"").unwrap();
        let b = ToolCall::new("t", Category::Read, b"").unwrap();
        assert_ne!(a.call_id(), b.call_id());
        assert!(a.clone().with_call_id(a.call_id()).is_ok());
        assert_eq!(a.clone().with_call_id("a b").err(), Some(ToolCallError::CallId));
        assert_eq!(a.with_call_id(&"x".repeat(65)).err(), Some(ToolCallError::CallId));
    }

    #[test]
    fn tool_names_and_summaries_are_held_to_the_brokers_bounds() {
        assert_eq!(
            ToolCall::new("", Category::Read, b"").err(),
            Some(ToolCallError::ToolName)
        );
        assert_eq!(
            ToolCall::new("a\nb", Category::Read, b"").err(),
            Some(ToolCallError::ToolName)
        );
        assert!(ToolCall::new(&"x".repeat(MAX_TOOL_NAME), Category::Read, b"").is_ok());
        assert!(ToolCall::new(&"x".repeat(MAX_TOOL_NAME + 1), Category::Read, b"").is_err());
        let c = ToolCall::new("t", Category::Read, b"")
            .unwrap()
            .with_summary(&format!("a\u{1b}b{}", "y".repeat(1000)));
        let s = c.summary.unwrap();
        assert!(s.starts_with("ab") && s.chars().count() == MAX_SUMMARY);
    }

    #[tokio::test]
    async fn a_full_queue_drops_without_waiting_and_counts_it() {
        // Nothing listens on port 9 of loopback: every send fails fast.
        let broker = AuthorizationServer::xaa_broker("http://127.0.0.1:9").unwrap();
        let reporter = AuditReporter::new(
            &broker,
            ClientAuth::secret_basic("c", "s"),
            ReporterConfig {
                queue_capacity: 1,
                max_attempts: 1,
                ..ReporterConfig::default()
            },
        )
        .unwrap();
        let call = ToolCall::new("t", Category::Read, b"").unwrap();
        let p = crate::principal::example();
        let queued: Vec<bool> = (0..20).map(|_| reporter.before("tok", &p, &call, true)).collect();
        assert!(queued[0], "the first fits");
        assert!(queued.iter().any(|q| !q), "a full queue refuses at once");
        reporter.flush(Duration::from_secs(30)).await.unwrap();
        let s = reporter.stats();
        assert_eq!((s.sent, s.dropped, s.pending), (0, 20, 0));
    }

    #[test]
    fn a_reporter_needs_a_runtime_and_sane_bounds() {
        let broker = AuthorizationServer::xaa_broker("http://127.0.0.1:9").unwrap();
        let auth = ClientAuth::secret_basic("c", "s");
        assert_eq!(
            AuditReporter::new(&broker, auth.clone(), ReporterConfig::default()).err(),
            Some(ReporterError::NoRuntime)
        );
        let zero = ReporterConfig {
            queue_capacity: 0,
            ..ReporterConfig::default()
        };
        assert_eq!(
            AuditReporter::new(&broker, auth, zero).err(),
            Some(ReporterError::QueueCapacity)
        );
    }
}
