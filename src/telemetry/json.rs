//! The JSON log line (`XAA_LOG_FORMAT=json`) with the ids of its trace:
//! tracing-subscriber's JSON object, plus `trace_id` and `span_id` when the
//! line is written while serving a traced request (`telemetry::current_ids`'s
//! rule), so a line leads to its trace and its audit record.
//!
//! Owns: adding the two ids. Must never: change or drop what the JSON
//! formatter wrote.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub struct JsonWithIds {
    inner: Format<Json>,
}

impl JsonWithIds {
    pub fn new() -> Self {
        Self {
            // The event's own fields only, as before traces: the span's
            // fields are the trace's business, reached by the ids.
            inner: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        // The request this task serves, and its innermost open step.
        let ids = super::current_ids();
        match (ids, line.trim_end().strip_suffix('}')) {
            (Some(ids), Some(head)) => {
                write!(writer, "{head},\"trace_id\":\"{}\"", ids.trace_id)?;
                if let Some(span_id) = ids.span_id {
                    write!(writer, ",\"span_id\":\"{span_id}\"")?;
                }
                writeln!(writer, "}}")
            }
            _ => writer.write_str(&line),
        }
    }
}
