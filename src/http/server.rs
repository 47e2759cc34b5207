//! Serving connections: the accept loop, the connection table, and the time
//! limits that keep one client from holding a connection, or all of them.
//!
//! Owns: accepting TCP connections and serving HTTP/1.1 on them with hyper;
//! each connection's phase (awaiting a request head, idle between requests,
//! request in flight) and its deadline; the cap on concurrent connections
//! (`server.max_connections`, clamped to RLIMIT_NOFILE) with eviction of the
//! longest-idle connection; the body deadline and the per-request deadline
//! around the router; the `ConnectInfo<SocketAddr>` extension handlers read;
//! and graceful shutdown with a bounded grace period.
//! Must never: exit on an accept error; close a connection that has a request
//! in flight, except when the shutdown grace period is over; contain request
//! logic.
//!
//! Why the phases are timed here and not by hyper alone: hyper's
//! `http1::Builder::header_read_timeout` starts its timer whenever the
//! connection starts reading a head, which on a kept-alive connection is the
//! moment the previous response is done (hyper 1.12 `proto/h1/conn.rs`: `idle`
//! sets `notify_read` "so we can close the connection if another header isn't
//! received in a timely manner"). It therefore also bounds the keep-alive
//! wait, and a 5 s head limit would close every idle connection after 5 s. So
//! this module tracks the phases itself, as Go's `net/http` does
//! (`ReadHeaderTimeout` vs `IdleTimeout`): the head deadline runs from accept,
//! or from the first byte of the next request on a kept-alive connection; the
//! idle deadline from the end of the previous response. hyper's own header
//! timer is off: it would duplicate these at the price of a timer per request.
//!
//! Why HTTP/1.1 only: the broker never served HTTP/2 (axum's default features
//! do not include it and the `h2` crate is not a dependency). Adding it would
//! add a second protocol to bound (stream concurrency, flow-control windows,
//! reset and CONTINUATION floods, pings) for no benefit to OAuth clients,
//! which send one small form per request. A TLS-terminating proxy in front
//! may speak HTTP/2 to clients and HTTP/1.1 to us.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_http::timeout::{RequestBodyDeadline, RequestBodyDeadlineLayer};

use crate::config::ServerConfig;
use crate::error::OAuthError;

/// File descriptors kept free of connections for everything else the
/// process opens: the listener, Redis, upstream key fetches, key files, logs.
pub const RESERVED_FDS: u64 = 64;

/// The largest request head (request line and headers) read before hyper
/// answers 431. hyper's default is about 400 KiB per connection, which
/// across thousands of connections is memory an attacker chooses to fill.
/// Requests carry credentials in the body (at most
/// `params::MAX_FORM_BYTES`), so heads are small.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// At the cap with every connection busy: how often to look again for a slot
/// or for a connection that has become idle.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// After an accept error that is not about one connection (EMFILE, ENFILE,
/// ENOBUFS): the pause before accepting again, so that a full descriptor
/// table does not spin the loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// How long an idle connection being closed may take to flush the end of
/// its last response before it is dropped anyway (a client not reading).
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Beyond the request deadline, how long shutdown waits for responses in
/// flight to be written before closing their connections.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

/// How often at most the "connection table full" warning is logged.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The limits in force, as durations, with the connection cap clamped.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read: Duration,
    body_read: Duration,
    idle: Duration,
    request: Duration,
    max_connections: usize,
}

impl Limits {
    fn new(config: &ServerConfig) -> Limits {
        Limits {
            header_read: Duration::from_millis(config.header_read_timeout_ms),
            body_read: Duration::from_millis(config.body_read_timeout_ms),
            idle: Duration::from_millis(config.idle_timeout_ms),
            request: Duration::from_millis(config.request_timeout_ms),
            max_connections: clamp_connections(config.max_connections, nofile_soft_limit()),
        }
    }
}

/// `max_connections`, lowered to the open-files soft limit minus
/// [`RESERVED_FDS`] (with a warning) so that the cap, not `accept` failing
/// with EMFILE, is what bounds connections. Never below one.
fn clamp_connections(configured: usize, soft_limit: Option<u64>) -> usize {
    let Some(limit) = soft_limit else {
        return configured;
    };
    let usable = usize::try_from(limit.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .max(1);
    if configured > usable {
        tracing::warn!(
            configured,
            clamped_to = usable,
            rlimit_nofile = limit,
            reserved = RESERVED_FDS,
            "server.max_connections exceeds the open-files limit minus a reserve; raise the limit \
             (ulimit -n, systemd LimitNOFILE) to allow more"
        );
        usable
    } else {
        configured
    }
}

/// The RLIMIT_NOFILE soft limit; `None` when unlimited or unknown.
#[cfg(unix)]
fn nofile_soft_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn nofile_soft_limit() -> Option<u64> {
    None
}

/// Accept connections on `listener` and serve `router` on them within the
/// limits of `config` until `shutdown` resolves. Then stop accepting, let
/// every request in flight finish (each is bounded by the request deadline),
/// close idle connections at once, and return after at most the request
/// deadline plus a margin.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_as("oauth", listener, router, config, shutdown).await
}

/// As [`serve`], counting open connections under `name` in
/// `xaa_open_connections{listener}` (`oauth`, `metrics`).
pub async fn serve_as(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = Limits::new(config);
    let mut http = hyper::server::conn::http1::Builder::new();
    // No hyper timer: `drive` times the head and idle phases itself, and a
    // hyper header timeout would arm a boxed sleep for every request (~4 %
    // of throughput measured with bench/hop_exchange.sh) to duplicate it.
    http.header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let app = RequestBodyDeadlineLayer::new(limits.body_read).layer(router);
    let table = Arc::new(Table {
        name,
        ..Table::default()
    });
    let mut shutdown = pin!(shutdown);
    let mut full_warned: Option<Instant> = None;
    let mut accept_error_logged: Option<Instant> = None;

    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(e, &mut accept_error_logged).await;
                continue;
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = table.make_room(limits.max_connections, &mut full_warned) => {}
        }
        let conn = Arc::new(Conn::new());
        let id = table.insert(conn.clone());
        let service = RequestService {
            app: app.clone(),
            conn: conn.clone(),
            peer,
            deadline: limits.request,
        };
        let io = TokioIo::new(Tracked {
            io: tcp,
            conn: conn.clone(),
        });
        let connection = http.serve_connection(io, service);
        let slot = Slot {
            table: table.clone(),
            id,
        };
        let task = tokio::spawn(async move {
            let _slot = slot;
            drive(connection, &conn, limits, peer).await;
        });
        table.set_task(id, task.abort_handle());
    }

    drop(listener);
    table.close_all(limits.request.saturating_add(SHUTDOWN_MARGIN)).await;
    Ok(())
}

/// An accept error. Errors about one connection (reset before we took it)
/// are skipped; any other (EMFILE, ENFILE, ENOBUFS, ENOMEM) is logged at most
/// once a second and waited out: the process must keep serving once
/// descriptors or memory free up, never exit.
async fn accept_error(e: io::Error, last_logged: &mut Option<Instant>) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    if last_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        tracing::error!(error = %e, "accept failed; retrying shortly");
        *last_logged = Some(Instant::now());
    }
    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
}

/// Why a connection with no request in flight is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    /// The connection table was full and this one had been idle the longest.
    Evicted,
    /// The server is shutting down.
    Shutdown,
}

impl CloseReason {
    fn describe(self) -> &'static str {
        match self {
            CloseReason::Evicted => "evicted: the connection table is full and this one was idle the longest",
            CloseReason::Shutdown => "shutting down",
        }
    }
}

/// What a connection without a request in flight is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The (rest of the) next request head: `header_read_timeout_ms`.
    Head,
    /// The first byte of the next request on a kept-alive connection:
    /// `idle_timeout_ms`.
    Idle,
}

/// One connection's state, shared by its I/O (bytes arriving), its service
/// (requests starting and finishing), the task driving it, and the accept
/// loop (eviction, shutdown).
struct Conn {
    state: Mutex<ConnState>,
    /// Set while the driving task polls hyper's connection: a request that
    /// ends then (the usual case: its body is written from inside that poll)
    /// needs no wake-up, since the task re-reads the state right after the
    /// poll. Saves one spurious task poll per request.
    polling: AtomicBool,
}

struct ConnState {
    /// Requests whose head has arrived and whose response has not yet been
    /// written (the body guard not yet dropped).
    in_flight: usize,
    /// Meaningful when `in_flight == 0`.
    phase: Phase,
    /// When `phase` began: the deadline counts from here, and the longest
    /// idle connection is the one with the earliest `since`.
    since: Instant,
    /// Close as soon as no request is in flight.
    close: Option<CloseReason>,
    /// The driving task, woken when a request ends or a close is asked.
    waker: Option<Waker>,
}

/// What the driving task should do next, as seen under the state lock.
enum Verdict {
    /// A request is in flight; `close` says whether to stop after it.
    Busy { close: bool },
    /// Close now: nothing is in flight and a close was asked.
    Close { reason: CloseReason, phase: Phase },
    /// Nothing in flight: close at `deadline` unless something happens.
    WaitUntil { deadline: Instant, phase: Phase },
}

impl Conn {
    /// A fresh connection awaits its first head from now.
    fn new() -> Conn {
        Conn {
            state: Mutex::new(ConnState {
                in_flight: 0,
                phase: Phase::Head,
                since: Instant::now(),
                close: None,
                waker: None,
            }),
            polling: AtomicBool::new(false),
        }
    }

    /// Never poisoned in practice (no code panics under it); if it were, the
    /// state is still consistent, so carry on rather than fail the request.
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived. On an idle kept-alive connection they are the start of
    /// the next request: the head deadline now runs.
    fn bytes_arrived(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.phase == Phase::Idle {
            s.phase = Phase::Head;
            s.since = Instant::now();
        }
    }

    /// A request head has arrived: the connection is busy until the guard
    /// (held by the response body) is dropped.
    fn begin_request(self: &Arc<Self>) -> InFlight {
        self.lock().in_flight += 1;
        InFlight(self.clone())
    }

    /// Ask the connection to close once nothing is in flight (at once if
    /// nothing is).
    fn request_close(&self, reason: CloseReason) {
        let mut s = self.lock();
        s.close.get_or_insert(reason);
        if let Some(w) = &s.waker {
            w.wake_by_ref();
        }
    }

    /// For eviction: when this connection became idle, if it is idle and
    /// not already closing.
    fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        (s.in_flight == 0 && s.close.is_none()).then_some(s.since)
    }

    fn verdict(&self, cx: &Context<'_>, limits: &Limits) -> Verdict {
        let mut s = self.lock();
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        if s.in_flight > 0 {
            return Verdict::Busy {
                close: s.close.is_some(),
            };
        }
        if let Some(reason) = s.close {
            return Verdict::Close { reason, phase: s.phase };
        }
        let limit = match s.phase {
            Phase::Head => limits.header_read,
            Phase::Idle => limits.idle,
        };
        Verdict::WaitUntil {
            // Limits are validated to at most a day: no overflow.
            deadline: s.since + limit,
            phase: s.phase,
        }
    }
}

/// A request in flight on a connection; dropped when its response body has
/// been written (or the request was abandoned).
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle;
            s.since = Instant::now();
            if !self.0.polling.load(Ordering::Acquire)
                && let Some(w) = &s.waker
            {
                w.wake_by_ref();
            }
        }
    }
}

/// A hyper connection as this module serves it.
type Connection = hyper::server::conn::http1::Connection<TokioIo<Tracked>, RequestService>;

/// Serve one connection until it ends, times out, is evicted or is shut
/// down. A request in flight is always let finish: hyper is asked to close
/// after it. A connection awaiting a request head is dropped at once (there
/// is nothing to lose). An idle kept-alive connection is closed gracefully,
/// so that the end of the last response is flushed, within [`CLOSE_LINGER`].
async fn drive(connection: Connection, conn: &Conn, limits: Limits, peer: SocketAddr) {
    let mut connection = pin!(connection);
    let mut timer = pin!(tokio::time::sleep(limits.header_read));
    let mut draining = false;
    let mut closing: Option<(Instant, &'static str)> = None;
    let why = std::future::poll_fn(|cx| {
        loop {
            conn.polling.store(true, Ordering::Release);
            let polled = connection.as_mut().poll(cx);
            conn.polling.store(false, Ordering::Release);
            if let Poll::Ready(result) = polled {
                return Poll::Ready(match (result, closing) {
                    (Err(e), _) => Some(format!("{e}")),
                    (Ok(()), Some((_, why))) => Some(why.to_owned()),
                    (Ok(()), None) => None,
                });
            }
            if let Some((until, why)) = closing {
                if timer.deadline() != until {
                    timer.as_mut().reset(until);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(format!("{why}; the last response was not flushed in time")));
                }
                return Poll::Pending;
            }
            let (why, phase) = match conn.verdict(cx, &limits) {
                Verdict::Busy { close } => {
                    if close && !draining {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                        continue;
                    }
                    return Poll::Pending;
                }
                Verdict::Close { reason, phase } => (reason.describe(), phase),
                Verdict::WaitUntil { deadline, phase } => {
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let why = match phase {
                        Phase::Head => "request head not received within server.header_read_timeout_ms",
                        Phase::Idle => "idle for server.idle_timeout_ms",
                    };
                    (why, phase)
                }
            };
            if phase == Phase::Head {
                return Poll::Ready(Some(why.to_owned()));
            }
            connection.as_mut().graceful_shutdown();
            closing = Some((Instant::now() + CLOSE_LINGER, why));
        }
    })
    .await;
    if let Some(why) = why {
        tracing::debug!(%peer, why, "connection closed");
    }
}

/// The router with the body deadline, as served on each connection.
type App = RequestBodyDeadline<Router>;

/// Per-connection service: marks the request in flight, adds the peer
/// address, and applies the request deadline.
struct RequestService {
    app: App,
    conn: Arc<Conn>,
    peer: SocketAddr,
    deadline: Duration,
}

impl hyper::service::Service<Request<Incoming>> for RequestService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let in_flight = self.conn.begin_request();
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let app = self.app.clone();
        let deadline = self.deadline;
        // For the deadline's log line only: both clones are reference counts.
        let (method, uri) = (req.method().clone(), req.uri().clone());
        Box::pin(async move {
            let response = match tokio::time::timeout(deadline, app.oneshot(req)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_elapsed) => OAuthError::unavailable(
                    "request.deadline",
                    &format_args!(
                        "{method} {}: no response within server.request_timeout_ms ({} ms)",
                        uri.path(),
                        deadline.as_millis()
                    ),
                )
                .into_response(),
            };
            // The connection stays busy until the body is written: the guard
            // lives in the body and is dropped with it.
            Ok(response.map(move |body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &in_flight;
                    frame
                }))
            }))
        })
    }
}

/// The socket, reporting arriving bytes to its connection's state.
struct Tracked {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Every open connection, by id.
#[derive(Default)]
struct Table {
    /// The listener's name in `xaa_open_connections`.
    name: &'static str,
    entries: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    /// Notified whenever an entry is removed.
    freed: Notify,
}

struct Entry {
    conn: Arc<Conn>,
    /// Set right after the task is spawned.
    task: Option<AbortHandle>,
}

impl Table {
    fn entries(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, conn: Arc<Conn>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.entries().insert(id, Entry { conn, task: None });
        crate::observe::connection_opened(self.name);
        id
    }

    /// The task may already have finished and removed its entry: then
    /// there is nothing to record.
    fn set_task(&self, id: u64, task: AbortHandle) {
        if let Some(entry) = self.entries().get_mut(&id) {
            entry.task = Some(task);
        }
    }

    fn remove(&self, id: u64) {
        if self.entries().remove(&id).is_some() {
            crate::observe::connection_closed(self.name);
        }
        self.freed.notify_waiters();
    }

    /// Return once the table has room for one more connection. At the cap,
    /// close the connection idle the longest (awaiting a head counts as
    /// idle: no request is in flight), so that a flood of idle connections
    /// cannot lock legitimate clients out. If every connection has a request
    /// in flight, wait for one to end: requests are bounded by the deadline.
    async fn make_room(&self, max: usize, warned: &mut Option<Instant>) {
        loop {
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            let victim = {
                let entries = self.entries();
                if entries.len() < max {
                    return;
                }
                entries
                    .values()
                    .filter_map(|e| e.conn.idle_since().map(|since| (since, e.conn.clone())))
                    .min_by_key(|(since, _)| *since)
                    .map(|(_, conn)| conn)
            };
            if warned.is_none_or(|t| t.elapsed() >= FULL_WARNING_INTERVAL) {
                tracing::warn!(
                    max_connections = max,
                    "connection table full: closing the longest-idle connection for each new one"
                );
                *warned = Some(Instant::now());
            }
            if let Some(victim) = victim {
                victim.request_close(CloseReason::Evicted);
            }
            let _ = tokio::time::timeout(ACCEPT_BACKOFF, freed).await;
        }
    }

    /// Shutdown: ask every connection to close (idle ones at once, busy ones
    /// after their request), wait up to `grace` for all to go, then abort
    /// what remains.
    async fn close_all(&self, grace: Duration) {
        for entry in self.entries().values() {
            entry.conn.request_close(CloseReason::Shutdown);
        }
        let until = Instant::now() + grace;
        loop {
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            if self.entries().is_empty() {
                return;
            }
            if tokio::time::timeout_at(until, freed).await.is_err() {
                break;
            }
        }
        let entries = self.entries();
        tracing::warn!(
            remaining = entries.len(),
            "shutdown grace period over: closing connections still busy"
        );
        for task in entries.values().filter_map(|e| e.task.as_ref()) {
            task.abort();
        }
    }
}

/// A connection's place in the table, given back when its task ends, however
/// it ends (finished, timed out, evicted, aborted).
struct Slot {
    table: Arc<Table>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_clamped_to_the_open_files_limit_minus_the_reserve() {
        assert_eq!(clamp_connections(4096, None), 4096);
        assert_eq!(clamp_connections(4096, Some(1_048_576)), 4096);
        assert_eq!(clamp_connections(4096, Some(1024)), 1024 - 64);
        assert_eq!(clamp_connections(4096, Some(10)), 1, "never below one");
    }

    #[test]
    fn a_fresh_connection_awaits_its_head_and_then_idles_after_a_request() {
        let limits = Limits::new(&ServerConfig::default());
        let conn = Arc::new(Conn::new());
        let cx = Context::from_waker(Waker::noop());
        let opened = conn.idle_since().expect("a fresh connection has no request in flight");
        assert!(matches!(
            conn.verdict(&cx, &limits),
            Verdict::WaitUntil { phase: Phase::Head, deadline } if deadline == opened + limits.header_read
        ));

        let request = conn.begin_request();
        conn.bytes_arrived();
        assert!(matches!(conn.verdict(&cx, &limits), Verdict::Busy { close: false }));
        assert_eq!(conn.idle_since(), None, "a busy connection is never evicted");

        drop(request);
        let done = conn.idle_since().expect("idle once the response is written");
        assert!(done >= opened);
        assert!(matches!(
            conn.verdict(&cx, &limits),
            Verdict::WaitUntil { phase: Phase::Idle, deadline } if deadline == done + limits.idle
        ));

        std::thread::sleep(Duration::from_millis(2));
        conn.bytes_arrived();
        let head = conn.idle_since().expect("a head in progress is not in flight");
        assert!(
            head > done,
            "the head deadline runs from the first byte of the next request"
        );
        assert!(matches!(
            conn.verdict(&cx, &limits),
            Verdict::WaitUntil { phase: Phase::Head, deadline } if deadline == head + limits.header_read
        ));
    }

    #[test]
    fn a_close_waits_for_the_request_in_flight() {
        let limits = Limits::new(&ServerConfig::default());
        let conn = Arc::new(Conn::new());
        let cx = Context::from_waker(Waker::noop());
        let request = conn.begin_request();
        conn.request_close(CloseReason::Evicted);
        assert!(matches!(conn.verdict(&cx, &limits), Verdict::Busy { close: true }));
        drop(request);
        assert!(matches!(
            conn.verdict(&cx, &limits),
            Verdict::Close {
                reason: CloseReason::Evicted,
                phase: Phase::Idle
            }
        ));
    }
}
