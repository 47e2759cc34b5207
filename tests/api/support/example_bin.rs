//! The built examples (`examples/*.rs`) as processes. `cargo test` builds
//! every example next to the test binary (`target/<profile>/examples/`);
//! tests run those binaries as a user would run `cargo run --example`.
//!
//! Owns: finding an example's binary (a clear failure, never a skip, when
//! it was not built), running one to its end within a bound, and running a
//! server example until dropped, with its stdout lines.
//! Must never: wait without a bound, or leave a process running after the
//! test (killed on drop and on timeout).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/<name>`, beside `target/<profile>/deps/`,
/// where this test binary is.
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("examples"))
        .expect("the test binary is in target/<profile>/deps");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the example `{name}` is not built at {}: `cargo test` builds the examples, but \
         `cargo test --test api` alone does not; run `cargo build --examples` first",
        bin.display()
    );
    bin
}

/// What a finished example printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run example `name` with `args` to its end, within `limit`; killed and
/// failed past it, with what it printed so far.
pub fn run(name: &str, args: &[&str], limit: Duration) -> Finished {
    let mut child = command(name, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("example {name} does not start: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the example can be waited for") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "example {name} still running after {}s; it printed:\n{}\n{}",
                limit.as_secs(),
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A server example, killed on drop.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    name: String,
}

impl Running {
    /// Start example `name` with `args`; its log (stderr) is discarded.
    pub fn start(name: &str, args: &[&str]) -> Running {
        let mut child = command(name, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("example {name} does not start: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        // Keeps draining stdout: a closed pipe would end the server.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            lines,
            name: name.to_owned(),
        }
    }

    /// The URL it prints after `listening on `, within a minute.
    pub fn listening_url(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("example {} printed no `listening on` line", self.name));
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example's command, with the environment the examples read cleared
/// so that only `args` configure it.
fn command(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(path(name));
    c.args(args).stdin(Stdio::null()).env_remove("RUST_LOG");
    for var in [
        "XAA_BROKER_URL",
        "LOGS_API_RESOURCE",
        "LOGS_API_LISTEN",
        "LOGS_API_URL",
        "MCP_RESOURCE",
        "MCP_LISTEN",
        "MCP_CLIENT_ID",
        "MCP_CLIENT_SECRET",
        "MCP_URL",
        "AGENT_USER",
        "AGENT_CLIENT_ID",
        "AGENT_CLIENT_SECRET",
    ] {
        c.env_remove(var);
    }
    c
}

/// Read `pipe` to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
