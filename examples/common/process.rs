//! The process around a server example: binding its listen address, the
//! Ctrl-C that stops it, and the exit code that reports how it ended.
//!
//! Owns: what `logs_api.rs` and `mcp_server.rs` do as processes (the demo
//! binds and stops its servers itself).
//! Must never: hold a server's logic, or print anything but the one
//! `listening on` line and the error that ended the process.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

/// Bind `addr` (port 0: any free port); the listener and its base URL
/// (`http://127.0.0.1:PORT`).
pub async fn listen(addr: SocketAddr) -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let base = crate::base_url::of(&listener)?;
    Ok((listener, base))
}

/// Resolves on Ctrl-C (SIGINT).
pub async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// 0, or 1 with `name: <the error and its causes>` on stderr.
pub fn exit(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
