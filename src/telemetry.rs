//! Logging: human-readable by default, one JSON object per line with
//! `XAA_LOG_FORMAT=json` (what SIEM pipelines and log shippers want).
//! Filter with `RUST_LOG` (default `info`). Audit records go to target `audit`.
//!
//! Must never: be handed a credential; callers log jti, hashes and claims.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("XAA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Step spans (target `xaa_step`) also feed `xaa_step_duration_seconds`.
    let steps = crate::observe::steps::StepLayer;
    let result = if json {
        builder.json().flatten_event(true).finish().with(steps).try_init()
    } else {
        builder.compact().finish().with(steps).try_init()
    };
    // Already initialised (tests): keep the existing subscriber.
    let _ = result;
}
