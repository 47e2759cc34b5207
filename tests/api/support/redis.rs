//! Real `redis-server`s for the Redis tests (specs/operations.md "Tests that
//! cover this document"): one shared server per test binary, started on first
//! use on a free port, plus dedicated servers a test can kill and restart
//! (fail-closed tests).
//!
//! Each server runs under a small `sh` wrapper that waits on a pipe from this
//! process: when the test binary exits (even when killed), the pipe closes and
//! the wrapper stops its server, so no `redis-server` outlives a run.
//!
//! If `redis-server` is not installed the tests fail saying how to install
//! it, unless `XAA_SKIP_REDIS_TESTS=1` (then `redis_url` and
//! `dedicated_redis` return `None` and the Redis half of a test is skipped).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The wrapper: start the server, wait for our end of stdin to close, then
/// stop the server, wait for it (so its port is free on return) and remove
/// its directory — unless it is durable (`$3` = yes: an append-only file,
/// fsync'd on every write, that a restart reads back, as in production).
const WRAPPER: &str = r#"redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly "$3" --appendfsync always --dir "$2" --logfile "$2/redis.log" &
pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid"
[ "$3" = yes ] || rm -rf "$2"
"#;

/// One running (or stopped) `redis-server` on a fixed port.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    durable: bool,
    running: Option<(Child, ChildStdin)>,
}

impl RedisServer {
    fn start(durable: bool) -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("xaa-redis-{}-{port}", std::process::id()));
        let mut server = RedisServer {
            port,
            dir,
            durable,
            running: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(
            self.running.is_none(),
            "redis-server on port {} is already running",
            self.port
        );
        std::fs::create_dir_all(&self.dir).expect("temp dir for redis-server");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("redis-wrapper")
            .arg(self.port.to_string())
            .arg(&self.dir)
            .arg(if self.durable { "yes" } else { "no" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh for redis-server");
        let stdin = child.stdin.take().expect("piped stdin");
        self.running = Some((child, stdin));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(self.port) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                panic!(
                    "redis-server on port {} did not answer PING within 10 s; its log:\n{log}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server and wait until it is gone. Its data goes with it
    /// unless the server is durable.
    pub async fn kill(&mut self) {
        if let Some((mut child, stdin)) = self.running.take() {
            drop(stdin);
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Start the server again on the same port (kill it first if running).
    /// Blocks for the few ms a start takes.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.running.take() {
            drop(stdin);
            let _ = child.wait();
        }
        if self.durable {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether Redis tests run: panics (with how to install it) when
/// `redis-server` is missing, unless `XAA_SKIP_REDIS_TESTS=1`.
fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if installed {
            return true;
        }
        if std::env::var("XAA_SKIP_REDIS_TESTS").is_ok_and(|v| v == "1") {
            return false;
        }
        panic!(
            "redis-server not found on PATH: the Redis store tests need it. Install it with `apt-get install redis-server` \
             (or set XAA_SKIP_REDIS_TESTS=1 to skip them locally; CI never does)"
        );
    })
}

/// The shared server of this test binary (started on first use), or `None`
/// when Redis tests are skipped. Tests namespace their keys with
/// [`unique_prefix`] instead of flushing.
pub async fn redis_url() -> Option<String> {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    if !available() {
        eprintln!("skipping: no redis-server (XAA_SKIP_REDIS_TESTS=1)");
        return None;
    }
    // Blocking for the few ms a start takes; every test has its own runtime.
    Some(SHARED.get_or_init(|| RedisServer::start(false)).url())
}

/// A server of its own for one test (to kill and restart), or `None` when
/// Redis tests are skipped. Stopped when dropped.
pub async fn dedicated_redis() -> Option<RedisServer> {
    dedicated(false).await
}

/// A dedicated server whose data survives `kill` + `restart` (append-only
/// file, fsync always), as a production Redis holding the audit trail is run.
pub async fn dedicated_durable_redis() -> Option<RedisServer> {
    dedicated(true).await
}

async fn dedicated(durable: bool) -> Option<RedisServer> {
    if !available() {
        eprintln!("skipping: no redis-server (XAA_SKIP_REDIS_TESTS=1)");
        return None;
    }
    Some(
        tokio::task::spawn_blocking(move || RedisServer::start(durable))
            .await
            .expect("start redis-server"),
    )
}

/// A key prefix no other test (or run) shares, e.g. `test:mark_once:0190…:`.
pub fn unique_prefix(test: &str) -> String {
    format!("test:{test}:{}:", uuid::Uuid::now_v7().simple())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
