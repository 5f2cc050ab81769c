//! Provides [`TextLine`], the text format: `2026-11-26T08:15:07.537005Z  INFO
//! request{method=GET route=/hello request_id=4f.. status=200}: target:
//! message k=v`, without colours.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::clock::timestamp;
use super::context::{current_request, is_request_span};

/// Text lines, without colours.
pub(crate) struct TextLine;

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        timestamp(&mut w)?;
        write!(w, " {:>5} ", meta.level())?;
        let in_request = current_request(|request| {
            let Some(r) = request else {
                return Ok(false);
            };
            write!(
                w,
                "request{{method={} route={} request_id={}",
                r.method,
                r.route(),
                r.id()
            )?;
            match r.status {
                0 => w.write_str("}: ")?,
                status => write!(w, " status={status}}}: ")?,
            }
            Ok::<_, fmt::Error>(true)
        })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if in_request && is_request_span(span.metadata()) {
                    continue;
                }
                w.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(w, "{{{fields}}}")?;
                    }
                }
                w.write_str(": ")?;
            }
        }
        write!(w, "{}: ", meta.target())?;
        let mut fields = TextVisitor {
            w: &mut w,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(w)
    }
}

/// Writes an event's fields as text: the message, then ` name=value`
/// (strings and `?` values quoted as `Debug` does, `%` values as they are).
/// Floats whose name ends in `_ms` get six decimals, written as integers
/// (a float's shortest form costs more than the rest of the line's fields).
struct TextVisitor<'a, 'w> {
    w: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl TextVisitor<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let first = std::mem::replace(&mut self.first, false);
        self.result = (|| {
            if !first {
                self.w.write_char(' ')?;
            }
            if field.name() != "message" {
                self.w.write_str(field.name())?;
                self.w.write_char('=')?;
            }
            value(self.w)
        })();
    }
}

impl Visit for TextVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |w| w.write_str(value));
        } else {
            self.field(field, |w| write!(w, "{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| write!(w, "{value:?}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |w| write_f64(w, field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }
}

/// `value`, to the nanosecond from integers when `name` ends in `_ms`.
pub(crate) fn write_f64(w: &mut Writer<'_>, name: &str, value: f64) -> fmt::Result {
    if name.ends_with("_ms") && value.is_finite() && (0.0..1e12).contains(&value) {
        let ns = (value * 1e6).round() as u64;
        write!(w, "{}.{:06}", ns / 1_000_000, ns % 1_000_000)
    } else {
        write!(w, "{value}")
    }
}
