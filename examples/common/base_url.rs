//! The URL a listener of ours is reached at: `http://127.0.0.1:PORT` for a
//! loopback or wildcard bind, `http://[::1]:PORT` for IPv6.
//!
//! Owns: that one rule, so that a server example names itself (its
//! `listening on` line, the `resource_metadata` of its 401s) the way its
//! clients reach it, without linking the broker crate.
//! Must never: name a host other than the bound address (a wildcard bind is
//! reached on 127.0.0.1).

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// The base URL of `listener`.
pub fn of(listener: &TcpListener) -> io::Result<String> {
    Ok(for_addr(listener.local_addr()?))
}

fn for_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        SocketAddr::V4(a) => format!("http://{a}"),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("http://[::1]:{}", a.port()),
        SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
    }
}
