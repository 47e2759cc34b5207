//! Step latency from tracing spans: every span with target [`TARGET`]
//! (`client_authentication`, `subject_validation`, `store_commit`, …) is
//! timed from creation to close and recorded in
//! `xaa_step_duration_seconds{step="<span name>"}`.
//!
//! Owns: the `tracing_subscriber` layer that turns step spans into the
//! histogram, so the code that does a step only opens a span.
//! Must never: read a span's fields (they may carry request values); the
//! label is the span's name, a static string at its call site.

use std::time::Instant;

use tracing::span::{Attributes, Id};
use tracing::{Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The target of step spans. A span is timed only with this target, so
/// the layer costs other spans one string comparison.
pub const TARGET: &str = "xaa_step";

/// When a step span started (kept in the span's extensions).
struct Started(Instant);

/// Records each step span's duration when it closes. Add it to the
/// subscriber next to the log formatter (`telemetry::init`); the spans
/// must pass the subscriber's filter (`RUST_LOG`: step spans are `info`).
#[derive(Debug, Default, Clone, Copy)]
pub struct StepLayer;

impl<S> Layer<S> for StepLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != TARGET {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        if span.metadata().target() != TARGET {
            return;
        }
        if let Some(Started(at)) = span.extensions().get::<Started>() {
            metrics::histogram!(super::STEP_DURATION, "step" => span.metadata().name())
                .record(at.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

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
    fn a_closed_step_span_is_one_sample_labelled_by_its_name_and_other_spans_none() {
        crate::observe::install();
        let subscriber = tracing_subscriber::registry().with(StepLayer);
        tracing::subscriber::with_default(subscriber, || {
            let before = step_count("unit_test_step");
            {
                let span = tracing::info_span!(target: TARGET, "unit_test_step", sub = "alice");
                let _entered = span.enter();
            }
            // Same name, another target: not a step.
            drop(tracing::info_span!(target: "xaa_broker::other", "unit_test_step").entered());
            // Entered twice, closed once: one sample.
            let span = tracing::info_span!(target: TARGET, "unit_test_step");
            drop(span.enter());
            drop(span.enter());
            drop(span);
            assert_eq!(step_count("unit_test_step") - before, 2);
            let text = crate::observe::render().unwrap_or_default();
            assert!(!text.contains("alice"), "a span field became a label: {text}");
        });
    }
}
