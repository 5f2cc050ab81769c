//! Provides the service's log: lines formatted on the request's thread and
//! handed to one writer thread that writes them to stderr in batches
//! ([`batch`]), so a request pays for formatting its line and a
//! copy, not for a `write` under a lock.
//! When the writer falls behind, lines are dropped and counted (the
//! `log_lines_dropped_total` metric and one warn line per second) or, with
//! [`Overflow::Block`], the request waits for room. The [`LogGuard`]
//! flushes every accepted line when dropped: keep it until `main` returns.
//! Lines are text (no colours) or one JSON object per line with the
//! request's fields (`request_id`, `method`, `route`, `status`) beside the
//! event's own, as log shippers read them ([`json`]).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::format::JsonFields;

mod batch;
mod clock;
mod context;
mod json;
mod options;
mod request_line;
#[cfg(test)]
mod tests;
mod text;

use batch::{Batcher, Writer as BatchWriter};
pub(crate) use context::{with_request, RequestContext};
use json::JsonLine;
pub use options::{LogFormat, LogOptions, Overflow, ParseOptionError, RequestLogs};
pub(crate) use request_line::RequestLine;
use request_line::{request_line, REQUEST_TARGET};
use text::TextLine;

/// Keeps the writer thread; dropping it writes out every line accepted so
/// far (waiting up to 2 s for a slow stderr) and stops the thread; lines
/// logged after that are written to stderr directly.
#[must_use = "dropping the guard at once stops the log writer: keep it until main returns"]
pub struct LogGuard {
    _writer: Option<BatchWriter>,
}

/// Which request lines are written; set once by [`init_logging_with`].
static REQUEST_LOGS: AtomicU8 = AtomicU8::new(RequestLogs::End as u8);

/// The lines' format; set once by [`init_logging_with`].
static FORMAT: AtomicU8 = AtomicU8::new(LogFormat::Text as u8);

/// The log's writer, once logging is set up (for its count of dropped lines).
static WRITER: OnceLock<Batcher> = OnceLock::new();

/// hammer-diag's logging is installed and writes `info` lines: requests
/// get a [`RequestContext`] instead of a span.
static LOGS_INFO: AtomicBool = AtomicBool::new(false);

/// Whether a request's lines are named by its context (hammer-diag's
/// logging at `info`) rather than by a `tracing` span.
pub(crate) fn logs_requests() -> bool {
    LOGS_INFO.load(Ordering::Relaxed)
}

/// Whether `RUST_LOG` lets a request's own lines through: asked once of
/// the filter, which does not change (asking the dispatcher instead costs
/// a dispatch per line, and its answer is wrong here: the [`crate::trace::gate`]
/// says yes to every `info` event before the fmt layer's own filter is asked).
static REQUEST_LINES: AtomicU8 = AtomicU8::new(LINES_OFF);
/// The filter drops them.
const LINES_OFF: u8 = 0;
/// The filter keeps them: write them directly.
const LINES_DIRECT: u8 = 1;
/// The filter decides per line (a directive on span fields): log events.
const LINES_EVENTS: u8 = 2;

/// What `filter` says to an `info` event of the request lines' target.
fn request_lines_verdict(filter: &tracing_subscriber::EnvFilter) -> u8 {
    use tracing::callsite::{Callsite, Identifier};
    use tracing::subscriber::Interest;
    use tracing_subscriber::layer::Filter;

    struct Probe;
    static PROBE: Probe = Probe;
    static META: tracing::Metadata<'static> = tracing::Metadata::new(
        "request end",
        REQUEST_TARGET,
        tracing::Level::INFO,
        None,
        None,
        None,
        tracing::field::FieldSet::new(&["message", "path", "duration_ms"], Identifier(&PROBE)),
        tracing::metadata::Kind::EVENT,
    );
    impl Callsite for Probe {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            &META
        }
    }
    let interest =
        <tracing_subscriber::EnvFilter as Filter<tracing_subscriber::Registry>>::callsite_enabled(
            filter, &META,
        );
    if interest.is_always() {
        LINES_DIRECT
    } else if interest.is_never() {
        LINES_OFF
    } else {
        LINES_EVENTS
    }
}

/// hammer-diag's logging is the process's subscriber.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether hammer-diag's own logging is the process's subscriber.
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

pub(crate) fn request_logs() -> RequestLogs {
    match REQUEST_LOGS.load(Ordering::Relaxed) {
        x if x == RequestLogs::Both as u8 => RequestLogs::Both,
        x if x == RequestLogs::None as u8 => RequestLogs::None,
        _ => RequestLogs::End,
    }
}

/// Writes a request's start or end line straight into the log's buffer
/// when hammer-diag's logging is the process's and `RUST_LOG` lets the
/// line through (the same line the formatter would make of a `tracing`
/// event, at a third of the cost: [`request_line`]). False
/// when hammer-diag's logging is not installed: the caller logs an event.
pub(crate) fn write_request_line(
    request: &RequestContext,
    line: RequestLine<'_>,
    at: Instant,
) -> bool {
    let Some(writer) = WRITER.get().filter(|_| installed()) else {
        return false;
    };
    match REQUEST_LINES.load(Ordering::Relaxed) {
        LINES_OFF => return true,
        LINES_DIRECT => {}
        _ => return false,
    }
    let format = match FORMAT.load(Ordering::Relaxed) {
        x if x == LogFormat::Json as u8 => LogFormat::Json,
        _ => LogFormat::Text,
    };
    // Formatted straight into the writer's buffer: no copy of the line.
    writer.push_with(|buf| request_line(buf, format, request, line, at));
    true
}

/// Lines dropped because the writer fell behind, since start.
pub(crate) fn dropped_lines() -> u64 {
    WRITER.get().map_or(0, Batcher::dropped)
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

    if WRITER.get().is_some() {
        return LogGuard { _writer: None };
    }
    let (writer, thread) = match Batcher::start(
        std::io::stderr(),
        options.buffer_lines,
        options.overflow == Overflow::Block,
    ) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("cannot start the log writer thread ({e}); no logs");
            return LogGuard { _writer: None };
        }
    };
    if WRITER.set(writer.clone()).is_err() {
        return LogGuard { _writer: None };
    }
    REQUEST_LOGS.store(options.requests as u8, Ordering::Relaxed);
    FORMAT.store(options.format as u8, Ordering::Relaxed);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let lines_verdict = request_lines_verdict(&filter);
    let logs = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let lines = match options.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .event_format(TextLine)
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .with_ansi(false)
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
    INSTALLED.store(installed, Ordering::Relaxed);
    if installed {
        REQUEST_LINES.store(lines_verdict, Ordering::Relaxed);
    }
    LOGS_INFO.store(
        installed && logs >= tracing_subscriber::filter::LevelFilter::INFO,
        Ordering::Relaxed,
    );
    if installed && options.overflow == Overflow::Drop {
        watch_drops();
    }
    LogGuard {
        _writer: Some(thread),
    }
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
