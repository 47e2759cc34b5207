//! Step latency: every grant step (`telemetry::Step`) is one sample of
//! `xaa_step_duration_seconds{step="<step name>"}` when it ends, whether or
//! not its span is exported.
//!
//! Owns: the histogram handle of each step, registered once, so a sample
//! is an atomic push, not a registry lookup with label hashing.
//! Must never: take a label from a request; the label is the step's static
//! name.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Histogram, histogram};

/// Step slots: more than `telemetry::Step` has variants.
const SLOTS: usize = 16;

static HANDLES: [OnceLock<Histogram>; SLOTS] = [const { OnceLock::new() }; SLOTS];

/// One sample for the step in `slot` (its index, stable for the process),
/// labelled `name`.
pub fn record(slot: usize, name: &'static str, took: Duration) {
    let Some(cell) = HANDLES.get(slot) else {
        histogram!(super::STEP_DURATION, "step" => name).record(took.as_secs_f64());
        return;
    };
    let handle = cell.get_or_init(|| {
        // Registered with our recorder: install it first if nobody has
        // (a handle taken from the no-op recorder would stay a no-op).
        let _ = super::install();
        histogram!(super::STEP_DURATION, "step" => name)
    });
    handle.record(took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count of `xaa_step_duration_seconds{step="<step>"}` in the
    /// rendered text (0 when absent).
    fn step_count(step: &str) -> u64 {
        let text = crate::observe::render().unwrap_or_default();
        let prefix = format!("xaa_step_duration_seconds_count{{step=\"{step}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn each_sample_counts_once_under_its_steps_name() {
        crate::observe::install();
        let before = step_count("unit_test_step");
        record(SLOTS - 1, "unit_test_step", Duration::from_micros(5));
        record(SLOTS - 1, "unit_test_step", Duration::from_micros(7));
        record(SLOTS + 3, "unit_test_step_beyond", Duration::from_micros(7));
        assert_eq!(step_count("unit_test_step") - before, 2);
        assert_eq!(step_count("unit_test_step_beyond"), 1);
    }
}
