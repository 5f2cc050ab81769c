//! Provides the service's log: lines formatted on the request's thread and
//! handed to one writer thread (tracing-appender's non-blocking writer over
//! a 64 KiB buffered stderr, written in batches), so a request pays for
//! formatting its line and a channel send, not for a `write` under a lock.
//! When the writer falls behind, lines are dropped and counted (the
//! `log_lines_dropped_total` metric and one warn line per second) or, with
//! [`Overflow::Block`], the request waits for room. The [`LogGuard`]
//! flushes every accepted line when dropped: keep it until `main` returns.
//! Lines are text (ANSI colours only when stderr is a terminal) or one JSON
//! object per line with the request's span fields (`request_id`, `method`,
//! `route`, `status`) beside the event's own, as log shippers read them.

use std::fmt::{self, Write as _};
use std::io::IsTerminal as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-26T07:43:14.123456Z  INFO request{method=GET ...}: request end ...`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`,
    /// the event's fields and those of the spans it is in.
    Json,
}

/// Which lines each request writes (at `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestLogs {
    /// One line when the response is ready: request ID, method, route,
    /// path, status and duration.
    #[default]
    End,
    /// A start line as the request arrives, then the end line: a request
    /// that never ends (a hang, a crash) still shows in the log.
    Both,
    /// Neither; other lines of a request still carry its ID.
    None,
}

/// What a request's line does when the writer thread has fallen behind by
/// the whole buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The line is dropped and counted; the request does not wait.
    #[default]
    Drop,
    /// The request waits until the writer has room.
    Block,
}

/// How the service logs; see [`init_logging_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// Which lines each request writes.
    pub requests: RequestLogs,
    /// Drop or wait when the writer falls behind.
    pub overflow: Overflow,
    /// Lines held for the writer thread before [`Overflow`] applies.
    pub buffer_lines: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            format: LogFormat::Text,
            requests: RequestLogs::End,
            overflow: Overflow::Drop,
            buffer_lines: 128_000,
        }
    }
}

/// A word that names none of an option's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {allowed}")]
pub struct ParseOptionError {
    value: String,
    allowed: &'static str,
}

fn parse_word<T: Copy>(
    value: &str,
    words: &[(&str, T)],
    allowed: &'static str,
) -> Result<T, ParseOptionError> {
    words
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(value))
        .map(|&(_, v)| v)
        .ok_or_else(|| ParseOptionError {
            value: value.to_string(),
            allowed,
        })
}

impl FromStr for LogFormat {
    type Err = ParseOptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            "text, json",
        )
    }
}

impl FromStr for RequestLogs {
    type Err = ParseOptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[
                ("end", RequestLogs::End),
                ("both", RequestLogs::Both),
                ("none", RequestLogs::None),
            ],
            "end, both, none",
        )
    }
}

impl FromStr for Overflow {
    type Err = ParseOptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[("drop", Overflow::Drop), ("block", Overflow::Block)],
            "drop, block",
        )
    }
}

/// Keeps the writer thread; dropping it writes out every line accepted so
/// far (waiting up to a second for a slow stderr) and stops the thread.
#[must_use = "dropping the guard at once stops the log writer: keep it until main returns"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Which request lines are written; set once by [`init_logging_with`].
static REQUEST_LOGS: AtomicU8 = AtomicU8::new(RequestLogs::End as u8);

/// The writer's count of dropped lines, once logging is set up.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

pub(crate) fn request_logs() -> RequestLogs {
    match REQUEST_LOGS.load(Ordering::Relaxed) {
        x if x == RequestLogs::Both as u8 => RequestLogs::Both,
        x if x == RequestLogs::None as u8 => RequestLogs::None,
        _ => RequestLogs::End,
    }
}

/// Lines dropped because the writer fell behind, since start.
pub(crate) fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// [`init_logging_with`] the defaults: text, an end line per request,
/// drop (and count) rather than wait.
pub fn init_logging() -> LogGuard {
    init_logging_with(LogOptions::default())
}

/// Logs to stderr through `tracing`, one line per event with the request's
/// span fields (its request ID), filtered by `RUST_LOG` (default `info`),
/// through a writer thread; and installs the trace-capture layer, which
/// sees spans only inside a `/debug/pprof/trace` window, whatever
/// `RUST_LOG` says, and [`crate::trace::gate`], so that spans neither wants
/// are never created. A second call changes nothing but returns a guard.
pub fn init_logging_with(options: LogOptions) -> LogGuard {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(options.overflow == Overflow::Drop)
        .buffered_lines_limit(options.buffer_lines.max(1))
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 << 10,
            std::io::stderr(),
        ));
    let first = DROPPED.set(writer.error_counter()).is_ok();
    REQUEST_LOGS.store(options.requests as u8, Ordering::Relaxed);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let lines = match options.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(lines)
        .with(crate::trace::layer())
        .with(crate::trace::gate(logs))
        .try_init()
        .is_ok();
    if first && installed && options.overflow == Overflow::Drop {
        watch_drops();
    }
    LogGuard { _worker: worker }
}

/// Says once a second, in the log, how many lines were dropped in it.
fn watch_drops() {
    let spawned = std::thread::Builder::new()
        .name("log-drops".into())
        .spawn(|| {
            let mut seen = 0;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let now = dropped_lines();
                if now > seen {
                    tracing::warn!(
                        dropped = now - seen,
                        dropped_total = now,
                        "the log writer fell behind: lines dropped in the last second"
                    );
                    seen = now;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for dropped log lines");
    }
}

/// One JSON object per event: timestamp, level, target, the event's fields
/// (`message` first), then the fields of each span it is in, root first.
/// Span fields are kept as JSON by [`JsonFields`].
struct JsonLine;

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
        SystemTime.format_time(&mut w)?;
        write!(w, "\",\"level\":\"{}\",\"target\":", meta.level())?;
        json_string(&mut w, meta.target())?;
        let mut fields = JsonVisitor {
            w: &mut w,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
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
            self.member(field, |w| write!(w, "{value}"));
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
    fn option_words_parse_and_say_what_is_allowed() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("both".parse::<RequestLogs>(), Ok(RequestLogs::Both));
        assert_eq!("block".parse::<Overflow>(), Ok(Overflow::Block));
        assert_eq!(
            "yaml".parse::<LogFormat>().unwrap_err().to_string(),
            "\"yaml\" is not one of text, json"
        );
    }

    #[test]
    fn escaped_strings_are_json() {
        let mut out = String::new();
        json_string(&mut Writer::new(&mut out), "a \"q\" \\ \n\t\u{1} é").unwrap();
        assert_eq!(out, r#""a \"q\" \\ \n\t\u0001 é""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a \"q\" \\ \n\t\u{1} é");
    }
}
