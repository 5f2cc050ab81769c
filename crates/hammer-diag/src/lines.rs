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
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::http::Method;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::logging::LogFormat;
use crate::request_id::RequestId;

/// What names a request on its log lines.
pub(crate) struct RequestContext {
    pub(crate) id: RequestId,
    pub(crate) method: Method,
    pub(crate) route: Option<MatchedPath>,
    /// 0 until the response is ready.
    pub(crate) status: u16,
}

impl RequestContext {
    pub(crate) fn route(&self) -> &str {
        self.route.as_ref().map_or("unmatched", MatchedPath::as_str)
    }

    fn id(&self) -> &str {
        self.id.as_str()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Box<RequestContext>>> = const { RefCell::new(None) };
}

/// Runs `f` with the context in `slot` as this thread's current request
/// (an empty slot leaves the thread's as it is), then puts the context back
/// in the slot and restores the one before, even on a panic. The context
/// is boxed and moves rather than being shared: a pointer in and out of
/// the thread-local per poll, no reference count.
pub(crate) fn with_request<R>(slot: &mut Option<Box<RequestContext>>, f: impl FnOnce() -> R) -> R {
    if slot.is_none() {
        return f();
    }
    let Ok(before) = CURRENT.try_with(|c| c.replace(slot.take())) else {
        return f();
    };
    struct Restore<'a> {
        slot: &'a mut Option<Box<RequestContext>>,
        before: Option<Box<RequestContext>>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let before = self.before.take();
            let _ = CURRENT.try_with(|c| *self.slot = c.replace(before));
        }
    }
    let _restore = Restore { slot, before };
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

/// Writes the time now as RFC 3339 UTC with microseconds
/// (`2026-11-26T08:15:07.537005Z`).
fn timestamp(w: &mut Writer<'_>) -> fmt::Result {
    with_timestamp(|second, micros| {
        w.write_str(second)?;
        write!(w, "{micros:06}Z")
    })
}

/// Calls `f` with the time now as its part up to the second
/// (`2026-11-26T08:15:07.`, made once a second per thread) and its
/// microseconds.
fn with_timestamp<R>(f: impl FnOnce(&str, u32) -> R) -> R {
    with_timestamp_at(Instant::now(), f)
}

/// What a thread's lines take their wall-clock time from: a reading of the
/// system clock and of the monotonic clock taken together, at most a
/// second old, and the text of the second being written.
struct Clock {
    anchor: Option<(Instant, Duration)>,
    second: u64,
    prefix: String,
}

/// Calls `f` with the wall-clock time of `at` (a monotonic reading the
/// caller already made, such as the one a request's duration came from,
/// so a line costs no second clock read), as with [`with_timestamp`]. The
/// system clock is read again once a second: between two readings the
/// time moves with the monotonic clock, which NTP slews by at most 0.05%,
/// so a line's time is off by 0.5 ms at the very worst.
fn with_timestamp_at<R>(at: Instant, f: impl FnOnce(&str, u32) -> R) -> R {
    thread_local! {
        static CLOCK: RefCell<Clock> = const {
            RefCell::new(Clock { anchor: None, second: u64::MAX, prefix: String::new() })
        };
    }
    let read_system_clock = || {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (Instant::now(), wall)
    };
    let wall_at = |(when, wall): (Instant, Duration)| match at.checked_duration_since(when) {
        Some(after) => wall + after,
        None => wall.saturating_sub(when - at),
    };
    let mut f = Some(f);
    let mut call = |second: &str, micros| (f.take().expect("called once"))(second, micros);
    let cached = CLOCK.try_with(|clock| {
        let mut clock = clock.borrow_mut();
        let within_anchor_second = clock.anchor.and_then(|(when, wall)| {
            let after = at.checked_duration_since(when)?;
            (after < Duration::from_secs(1)).then(|| wall + after)
        });
        let now = within_anchor_second.unwrap_or_else(|| {
            let anchor = read_system_clock();
            clock.anchor = Some(anchor);
            wall_at(anchor)
        });
        let secs = now.as_secs();
        if clock.second != secs {
            clock.prefix = second_prefix(secs);
            clock.second = secs;
        }
        call(&clock.prefix, now.subsec_micros())
    });
    match cached {
        Ok(r) => r,
        // During thread teardown: made for this line.
        Err(_) => {
            let now = wall_at(read_system_clock());
            call(&second_prefix(now.as_secs()), now.subsec_micros())
        }
    }
}

/// `2026-11-26T08:15:07.` for a count of seconds since 1970.
fn second_prefix(secs: u64) -> String {
    let (y, mo, d) = civil_date(secs / 86_400);
    let t = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// One of the lines a request writes itself (at `info`, target
/// [`REQUEST_TARGET`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RequestLine<'a> {
    /// `request start path=…`.
    Start { path: &'a str },
    /// `request end path=… duration_ms=…`.
    End { path: &'a str, elapsed: Duration },
}

/// The target a request's own lines are logged under.
pub(crate) const REQUEST_TARGET: &str = "hammer_diag::middleware";

/// Appends to `out` a request's start or end line, the very line
/// [`TextLine`] or [`JsonLine`] makes of `tracing::info!(path = %path,
/// duration_ms, "request end")` logged inside the request, made from
/// bytes: no `tracing` dispatch and no `core::fmt`, which were two thirds
/// of a logged request's instructions.
/// `at` is when the line is written, as a monotonic reading (see
/// [`with_timestamp_at`]).
pub(crate) fn request_line(
    out: &mut Vec<u8>,
    format: LogFormat,
    r: &RequestContext,
    line: RequestLine<'_>,
    at: Instant,
) {
    let (message, path, elapsed) = match line {
        RequestLine::Start { path } => ("request start", path, None),
        RequestLine::End { path, elapsed } => ("request end", path, Some(elapsed)),
    };
    let status = r.status;
    match format {
        LogFormat::Text => {
            push_timestamp(out, at);
            out.extend_from_slice(b"  INFO request{method=");
            out.extend_from_slice(r.method.as_str().as_bytes());
            out.extend_from_slice(b" route=");
            out.extend_from_slice(r.route().as_bytes());
            out.extend_from_slice(b" request_id=");
            out.extend_from_slice(r.id.as_bytes());
            if status != 0 {
                out.extend_from_slice(b" status=");
                out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
            }
            out.extend_from_slice(b"}: ");
            out.extend_from_slice(REQUEST_TARGET.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(message.as_bytes());
            out.extend_from_slice(b" path=");
            out.extend_from_slice(path.as_bytes());
            if let Some(elapsed) = elapsed {
                out.extend_from_slice(b" duration_ms=");
                push_ms(out, elapsed);
            }
            out.push(b'\n');
        }
        LogFormat::Json => {
            out.extend_from_slice(b"{\"timestamp\":\"");
            push_timestamp(out, at);
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"");
            out.extend_from_slice(REQUEST_TARGET.as_bytes());
            out.extend_from_slice(b"\",\"message\":\"");
            out.extend_from_slice(message.as_bytes());
            out.extend_from_slice(b"\",\"path\":");
            push_json_string(out, path.as_bytes());
            if let Some(elapsed) = elapsed {
                out.extend_from_slice(b",\"duration_ms\":");
                push_ms(out, elapsed);
            }
            out.extend_from_slice(b",\"request_id\":");
            push_json_string(out, r.id.as_bytes());
            out.extend_from_slice(b",\"method\":");
            push_json_string(out, r.method.as_str().as_bytes());
            out.extend_from_slice(b",\"route\":");
            push_json_string(out, r.route().as_bytes());
            if status != 0 {
                out.extend_from_slice(b",\"status\":");
                out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
            }
            out.extend_from_slice(b"}\n");
        }
    }
}

fn push_timestamp(out: &mut Vec<u8>, at: Instant) {
    with_timestamp_at(at, |second, micros| {
        out.extend_from_slice(second.as_bytes());
        push_six_digits(out, micros);
        out.push(b'Z');
    });
}

/// Milliseconds to the nanosecond, as [`write_f64`] writes a `_ms` field.
fn push_ms(out: &mut Vec<u8>, elapsed: Duration) {
    let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    out.extend_from_slice(itoa::Buffer::new().format(ns / 1_000_000).as_bytes());
    out.push(b'.');
    push_six_digits(out, (ns % 1_000_000) as u32);
}

/// `n` (below 10^6) in six digits, zeros in front.
fn push_six_digits(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits);
}

/// `s` as a JSON string, escaped as [`json_string`] escapes it.
fn push_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            b if b < b' ' => b"\\u00",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        out.extend_from_slice(escaped);
        if escaped == b"\\u00" {
            out.push(b"0123456789abcdef"[usize::from(b >> 4)]);
            out.push(b"0123456789abcdef"[usize::from(b & 0xf)]);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
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
            match r.status {
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
    use std::sync::Arc;

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

    /// What the formatter makes of `log`'s events, in `format`.
    fn formatted(format: LogFormat, log: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Out(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Out {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Out::default();
        let make = {
            let out = out.clone();
            move || out.clone()
        };
        match format {
            LogFormat::Text => {
                let subscriber = tracing_subscriber::fmt()
                    .event_format(TextLine)
                    .with_writer(make)
                    .finish();
                tracing::subscriber::with_default(subscriber, log);
            }
            LogFormat::Json => {
                let subscriber = tracing_subscriber::fmt()
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(JsonLine)
                    .with_writer(make)
                    .finish();
                tracing::subscriber::with_default(subscriber, log);
            }
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// The line with its timestamp's 27 characters taken out.
    fn timeless(line: &str) -> String {
        let at = usize::from(line.starts_with('{')) * "{\"timestamp\":\"".len();
        assert_eq!(line.as_bytes()[at + 26], b'Z', "{line}");
        format!("{}{}", &line[..at], &line[at + 27..])
    }

    #[test]
    fn a_request_line_made_from_bytes_is_the_line_the_formatter_makes() {
        let mut context = Some(Box::new(RequestContext {
            id: RequestId::Given(axum::http::HeaderValue::from_static("id-\"quoted\\")),
            method: Method::POST,
            route: None,
            status: 0,
        }));
        let start = RequestLine::Start { path: "/find" };
        let end = RequestLine::End {
            path: "/a\"b",
            elapsed: Duration::from_micros(12_345),
        };
        for format in [LogFormat::Text, LogFormat::Json] {
            for (status, line) in [(0, start), (503, end), (200, start)] {
                context.as_mut().unwrap().status = status;
                let mut ours = Vec::new();
                request_line(
                    &mut ours,
                    format,
                    context.as_ref().unwrap(),
                    line,
                    Instant::now(),
                );
                let ours = String::from_utf8(ours).unwrap();
                let theirs = formatted(format, || {
                    with_request(&mut context, || match line {
                        RequestLine::Start { path } => {
                            tracing::info!(target: REQUEST_TARGET, path = %path, "request start")
                        }
                        RequestLine::End { path, elapsed } => tracing::info!(
                            target: REQUEST_TARGET,
                            path = %path,
                            duration_ms = elapsed.as_secs_f64() * 1000.0,
                            "request end"
                        ),
                    })
                });
                assert_eq!(timeless(&ours), timeless(&theirs), "{format:?} {line:?}");
                if format == LogFormat::Json {
                    let v: serde_json::Value = serde_json::from_str(&ours).unwrap();
                    assert_eq!(v["request_id"], "id-\"quoted\\");
                }
            }
        }
    }

    /// The wall-clock time of a monotonic reading, as a line writes it.
    fn wall_of(at: Instant) -> Duration {
        with_timestamp_at(at, |second, micros| {
            let t = chrono_like(second);
            t + Duration::from_micros(micros.into())
        })
    }

    /// Seconds since 1970 of a `2026-11-26T08:15:07.` prefix.
    fn chrono_like(prefix: &str) -> Duration {
        let n = |r: std::ops::Range<usize>| prefix[r].parse::<u64>().unwrap();
        let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
        let days = (0..).find(|&days| civil_date(days) == (y, mo, d)).unwrap();
        Duration::from_secs(days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19))
    }

    #[test]
    fn a_lines_time_is_the_system_clocks_at_the_reading_given() {
        let system = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
        };
        let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_millis(5);
        let (before, at, after) = (system(), Instant::now(), system());
        let wall = wall_of(at);
        assert!(
            wall + Duration::from_millis(1) >= before && wall <= after + Duration::from_millis(1)
        );
        // Within the anchor's second, a later reading moves with it.
        std::thread::sleep(Duration::from_millis(30));
        let (later, later_system) = (Instant::now(), system());
        assert!(close(wall_of(later), later_system), "{:?}", wall_of(later));
        // A reading from before the anchor (a request's start line).
        let earlier = later - Duration::from_secs(3);
        assert!(close(
            wall_of(earlier),
            later_system - Duration::from_secs(3)
        ));
        // And after a pause of more than a second, a new anchor.
        std::thread::sleep(Duration::from_millis(1_100));
        assert!(close(wall_of(Instant::now()), system()));
    }

    #[test]
    fn the_current_request_is_restored_after_a_panic() {
        let mut context = Some(Box::new(RequestContext {
            id: RequestId::Made(*b"0123456789abcdef"),
            method: Method::GET,
            route: None,
            status: 0,
        }));
        let id = || current_request(|r| r.map(|r| r.id().to_string()));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_request(&mut context, || {
                assert_eq!(id().as_deref(), Some("0123456789abcdef"));
                panic!("inside");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(id(), None);
        assert!(context.is_some(), "the context is back in its slot");
    }
}
