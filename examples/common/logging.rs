//! The examples' log lines: one `tracing` subscriber on stderr, filtered by
//! `RUST_LOG` (else the example's default).
//!
//! Owns: installing the subscriber, once per example process.
//! Must never: write to stdout (the examples print their results there),
//! or decide what is logged: no example logs a token or a secret, only
//! `jti`, `txn` and claims.

/// Log to stderr at `RUST_LOG`, or at `default` when it is unset.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second call (none is made) would keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
