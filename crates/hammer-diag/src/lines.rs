//! Provides the log's line formats and the request a line belongs to.
//!
//! With hammer-diag's own logging, a request is named on its lines by a
//! thread-local [`RequestContext`] that the middleware sets while it polls
//! the request (ID, method, route, and the status once known), not by a
//! `tracing` span: a span costs the registry an entry, its fields a
//! formatted string and every poll an enter and an exit, which was most of
//! what a logged request cost. Spans are still made while a trace capture
//! runs, and are still written (name and fields) when the service makes
//! its own.
//!
//! [`TextLine`]: `2026-11-26T08:15:07.537005Z  INFO request{method=GET
//! route=/hello request_id=4f.. status=200}: target: message k=v`.
//! [`JsonLine`]: one object per line, with `timestamp`, `level`, `target`,
//! `message`, the event's fields, the request's and the spans' fields.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Method};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// What names a request on its log lines.
pub(crate) struct RequestContext {
    pub(crate) id: HeaderValue,
    pub(crate) method: Method,
    pub(crate) route: Option<MatchedPath>,
    /// 0 until the response is ready.
    pub(crate) status: AtomicU16,
}

impl RequestContext {
    fn route(&self) -> &str {
        self.route.as_ref().map_or("unmatched", MatchedPath::as_str)
    }

    fn id(&self) -> &str {
        self.id.to_str().unwrap_or("?")
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<RequestContext>>> = const { RefCell::new(None) };
}

/// Runs `f` with `context` as this thread's current request (none: leaves
/// the thread's as it is), then restores the one before, even on a panic.
pub(crate) fn with_request<R>(context: Option<&Arc<RequestContext>>, f: impl FnOnce() -> R) -> R {
    let Some(context) = context else {
        return f();
    };
    struct Restore(Option<Arc<RequestContext>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            let _ = CURRENT.try_with(|c| *c.borrow_mut() = before);
        }
    }
    let before = CURRENT.with(|c| c.borrow_mut().replace(context.clone()));
    let _restore = Restore(before);
    f()
}

fn current_request<R>(f: impl FnOnce(Option<&RequestContext>) -> R) -> R {
    let mut f = Some(f);
    let mut call = |request: Option<&RequestContext>| (f.take().expect("called once"))(request);
    // During thread teardown the context is gone: no request.
    match CURRENT.try_with(|c| c.try_borrow().ok().map(|c| call(c.as_deref()))) {
        Ok(Some(r)) => r,
        _ => call(None),
    }
}

/// The middleware's own span, which the context replaces on a line.
fn is_request_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.name() == "request" && meta.target() == "hammer_diag::middleware"
}

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
            match r.status.load(Ordering::Relaxed) {
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

/// Writes the time now as RFC 3339 UTC with microseconds
/// (`2026-11-26T08:15:07.537005Z`); the part up to the second is made
/// once a second per thread.
fn timestamp(w: &mut Writer<'_>) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            let (y, mo, d) = civil_date(secs / 86_400);
            let t = secs % 86_400;
            second.1.clear();
            write!(
                second.1,
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.",
                t / 3600,
                t / 60 % 60,
                t % 60
            )?;
            second.0 = secs;
        }
        w.write_str(&second.1)
    })?;
    write!(w, "{:06}Z", now.subsec_micros())
}

/// The (year, month, day) of a count of days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
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
fn write_f64(w: &mut Writer<'_>, name: &str, value: f64) -> fmt::Result {
    if name.ends_with("_ms") && value.is_finite() && (0.0..1e12).contains(&value) {
        let ns = (value * 1e6).round() as u64;
        write!(w, "{}.{:06}", ns / 1_000_000, ns % 1_000_000)
    } else {
        write!(w, "{value}")
    }
}

/// One JSON object per event: timestamp, level, target, the event's fields
/// (`message` first), the request's, then the fields of each span it is in,
/// root first. Span fields are kept as JSON by `JsonFields`.
pub(crate) struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
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
        w.write_str("{\"timestamp\":\"")?;
        timestamp(&mut w)?;
        write!(w, "\",\"level\":\"{}\",\"target\":", meta.level())?;
        json_string(&mut w, meta.target())?;
        let mut fields = JsonVisitor {
            w: &mut w,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        let in_request = current_request(|request| {
            let Some(r) = request else {
                return Ok(false);
            };
            w.write_str(",\"request_id\":")?;
            json_string(&mut w, r.id())?;
            write!(w, ",\"method\":\"{}\",\"route\":", r.method)?;
            json_string(&mut w, r.route())?;
            match r.status.load(Ordering::Relaxed) {
                0 => {}
                status => write!(w, ",\"status\":{status}")?,
            }
            Ok::<_, fmt::Error>(true)
        })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if in_request && is_request_span(span.metadata()) {
                    continue;
                }
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                let inner = formatted
                    .fields
                    .trim()
                    .trim_start_matches('{')
                    .trim_end_matches('}');
                if !inner.is_empty() {
                    w.write_char(',')?;
                    w.write_str(inner)?;
                }
            }
        }
        w.write_str("}\n")
    }
}

/// Writes an event's fields as `,"name":value` members.
struct JsonVisitor<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonVisitor<'_, '_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.w.write_char(',')?;
            json_string(self.w, field.name())?;
            self.w.write_char(':')?;
            value(self.w)
        })();
    }
}

impl Visit for JsonVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| json_string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.member(field, |w| write_f64(w, field.name(), value));
        } else {
            self.member(field, |w| w.write_str("null"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }
}

fn json_string(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// A writer that escapes what passes through it for a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found at i");
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{:04x}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_strings_are_json() {
        let mut out = String::new();
        json_string(&mut Writer::new(&mut out), "a \"q\" \\ \n\t\u{1} é").unwrap();
        assert_eq!(out, r#""a \"q\" \\ \n\t\u0001 é""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a \"q\" \\ \n\t\u{1} é");
    }

    #[test]
    fn civil_dates_and_timestamps() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_783), (2026, 11, 26));
        let mut out = String::new();
        timestamp(&mut Writer::new(&mut out)).unwrap();
        assert_eq!(out.len(), "2026-11-26T08:15:07.537005Z".len(), "{out}");
        assert!(out.starts_with("20") && out.ends_with('Z'), "{out}");
        let mut ms = String::new();
        write_f64(&mut Writer::new(&mut ms), "duration_ms", 12.3456).unwrap();
        write_f64(&mut Writer::new(&mut ms), "ratio", 0.5).unwrap();
        assert_eq!(ms, "12.3456000.5");
    }

    #[test]
    fn the_current_request_is_restored_after_a_panic() {
        let context = Arc::new(RequestContext {
            id: HeaderValue::from_static("abc"),
            method: Method::GET,
            route: None,
            status: AtomicU16::new(0),
        });
        let id = || current_request(|r| r.map(|r| r.id().to_string()));
        let caught = std::panic::catch_unwind(|| {
            with_request(Some(&context), || {
                assert_eq!(id().as_deref(), Some("abc"));
                panic!("inside");
            })
        });
        assert!(caught.is_err());
        assert_eq!(id(), None);
    }
}
