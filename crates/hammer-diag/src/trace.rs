//! Provides trace capture: the `tracing` layer that records every span of a
//! capture window (one per request, with its request ID, method, route and
//! status, and the spans inside the handler), and the gate that keeps spans
//! nobody wants out of the registry. `/debug/pprof/trace` and
//! `/debug/pprof/wall` (in the `endpoint` module) open the windows; the logs
//! install the layer and the gate.
//!
//! Outside a window the cost is one relaxed atomic load per span callsite:
//! the capture layer's filter says no, and nothing is recorded.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::filter::{DynFilterFn, LevelFilter};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::reply::error_response;

/// Longest trace window accepted.
pub(crate) const MAX_SECONDS: u64 = 60;
/// Most spans one window keeps; later ones are dropped (and counted).
const MAX_SPANS: usize = 1_000_000;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SPANS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A small number per thread, and its name, for the trace's rows.
fn thread() -> (u64, String) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ME: (u64, String) = (
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::thread::current().name().unwrap_or("unnamed").to_string(),
        );
    }
    ME.with(Clone::clone)
}

pub(crate) struct Recorded {
    pub(crate) seq: u64,
    pub(crate) name: &'static str,
    pub(crate) start: Instant,
    pub(crate) duration: Duration,
    /// Its span names from the root (the request) down to it.
    pub(crate) stack: Vec<&'static str>,
    /// Its duration less its children's: the wall time spent in it alone.
    pub(crate) self_time: Duration,
    pub(crate) thread: (u64, String),
    pub(crate) fields: Vec<(&'static str, String)>,
    pub(crate) parent: Option<Origin>,
}

/// Where a span came from: its parent's start on the parent's thread (the
/// accept of a connection for a request, the request for a handler span).
#[derive(Clone)]
pub(crate) struct Origin {
    pub(crate) start: Instant,
    pub(crate) thread: u64,
}

/// A span's data while it is open.
struct Open {
    seq: u64,
    start: Instant,
    thread: (u64, String),
    fields: Vec<(&'static str, String)>,
    parent: Option<Origin>,
    /// The wall time of its children that have closed.
    children: Duration,
}

/// Numbers spans uniquely (tracing's ids are reused once a span closes).
static SEQ: AtomicU64 = AtomicU64::new(1);

struct Fields<'a>(&'a mut Vec<(&'static str, String)>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

/// The layer that records spans during a capture window.
pub(crate) struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = span.parent().and_then(|p| {
            p.extensions().get::<Open>().map(|o| Origin {
                start: o.start,
                thread: o.thread.0,
            })
        });
        span.extensions_mut().insert(Open {
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            start: Instant::now(),
            thread: thread(),
            fields,
            parent,
            children: Duration::ZERO,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(open) = extensions.get_mut::<Open>() {
            values.record(&mut Fields(&mut open.fields));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let duration = open.start.elapsed();
        if let Some(parent) = span.parent() {
            if let Some(p) = parent.extensions_mut().get_mut::<Open>() {
                p.children += duration;
            }
        }
        let stack = span.scope().from_root().map(|s| s.name()).collect();
        let mut spans = SPANS.lock().unwrap_or_else(|e| e.into_inner());
        if spans.len() >= MAX_SPANS {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        spans.push(Recorded {
            seq: open.seq,
            name: span.name(),
            start: open.start,
            duration,
            stack,
            self_time: duration.saturating_sub(open.children),
            thread: open.thread,
            fields: open.fields,
            parent: open.parent,
        });
    }
}

/// The capture layer with its filter: spans are seen only inside a window.
/// `init_logging` installs it; add it yourself when building your own
/// subscriber.
pub fn layer<S: Subscriber + for<'a> LookupSpan<'a>>() -> impl Layer<S> {
    // Events never interest the capture, so their callsites are cached as
    // "never" and cost nothing; spans are asked each time (one atomic load).
    let filter = DynFilterFn::new(|meta: &tracing::Metadata<'_>, _: &Context<'_, S>| {
        meta.is_span() && ACTIVE.load(Ordering::Relaxed)
    })
    .with_callsite_filter(|meta| {
        if meta.is_span() {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    });
    Capture.with_filter(filter)
}

/// A filter for the whole subscriber, to put outermost: it lets through
/// the events and spans up to the logs' level `logs`, and every span during
/// a capture window; everything else is never created. Without it a stack of
/// per-layer filters (the logs' `EnvFilter`, the capture's window check)
/// still has the registry create every span that one of them might want,
/// which is every span: tens of nanoseconds each, for nothing, on every
/// request. `init_logging` installs it; add it when building your own
/// subscriber, with your logs' most verbose level.
pub fn gate<S: Subscriber>(logs: LevelFilter) -> impl Layer<S> {
    DynFilterFn::new(move |meta: &tracing::Metadata<'_>, _: &Context<'_, S>| {
        *meta.level() <= logs || (meta.is_span() && ACTIVE.load(Ordering::Relaxed))
    })
    .with_callsite_filter(move |meta| {
        // Called once per callsite by each subscriber the gate is part of:
        // only a gate in use counts for the fast path.
        note_gate(logs);
        if *meta.level() <= logs {
            tracing::subscriber::Interest::always()
        } else if meta.is_span() {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    })
}

/// The most verbose logs' level of the [`gate`]s in use, as [`level_rank`];
/// `NO_GATE` before one is.
static GATE_LOGS: AtomicU8 = AtomicU8::new(NO_GATE);
const NO_GATE: u8 = u8::MAX;

fn note_gate(logs: LevelFilter) {
    let rank = level_rank(logs.into_level());
    let _ = GATE_LOGS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
        let most_verbose = if now == NO_GATE { rank } else { now.max(rank) };
        (most_verbose != now).then_some(most_verbose)
    });
}

/// 0 for no level (logs off), then 1 (error) to 5 (trace).
fn level_rank(level: Option<tracing::Level>) -> u8 {
    match level {
        None => 0,
        Some(tracing::Level::ERROR) => 1,
        Some(tracing::Level::WARN) => 2,
        Some(tracing::Level::INFO) => 3,
        Some(tracing::Level::DEBUG) => 4,
        Some(tracing::Level::TRACE) => 5,
    }
}

/// Whether a span at `level` could be enabled now, answered without asking
/// the subscriber: false only when gates are in use, all of their logs are
/// quieter than `level`, and no capture window is open. Lets a hot path skip
/// building a span that would be thrown away. (A subscriber without a gate
/// in a process that has one elsewhere is not seen: add the gate to each.)
pub(crate) fn span_may_be_enabled(level: tracing::Level) -> bool {
    let logs = GATE_LOGS.load(Ordering::Relaxed);
    logs == NO_GATE || level_rank(Some(level)) <= logs || ACTIVE.load(Ordering::Relaxed)
}

/// Whether a trace capture window is open.
pub(crate) fn capturing() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// What one capture window recorded.
pub(crate) struct Window {
    /// Every span that closed inside it.
    pub(crate) spans: Vec<Recorded>,
    /// When it opened.
    pub(crate) begin: Instant,
    /// How long it was open.
    pub(crate) length: Duration,
    /// Spans past the window's limit, not kept.
    pub(crate) dropped: u64,
}

/// Records spans for `seconds`; a 409 response while another window (a
/// trace or a wall profile) is open.
pub(crate) async fn capture(seconds: u64) -> Result<Window, Response> {
    let busy = || {
        error_response(
            StatusCode::CONFLICT,
            "a trace or wall profile is already being captured; try again when it ends",
        )
    };
    if ACTIVE.load(Ordering::SeqCst) {
        return Err(busy());
    }
    SPANS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    DROPPED.store(0, Ordering::Relaxed);
    let begin = Instant::now();
    if ACTIVE.swap(true, Ordering::SeqCst) {
        return Err(busy());
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    ACTIVE.store(false, Ordering::SeqCst);
    let spans = std::mem::take(&mut *SPANS.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Window {
        spans,
        begin,
        length: begin.elapsed(),
        dropped: DROPPED.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// The window flag is process-wide: these tests take turns with it.
    static WINDOW: Mutex<()> = Mutex::new(());

    #[test]
    fn the_gate_keeps_spans_out_of_the_registry_unless_logged_or_captured() {
        use tracing_subscriber::Layer as _;
        let _turn = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(LevelFilter::WARN),
            )
            .with(layer())
            .with(gate(LevelFilter::WARN));
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::info_span!("quiet").is_disabled());
            assert!(!tracing::warn_span!("logged").is_disabled());
            ACTIVE.store(true, Ordering::SeqCst);
            let captured = tracing::info_span!("captured");
            ACTIVE.store(false, Ordering::SeqCst);
            assert!(!captured.is_disabled());
        });
        // The fast path agrees, and follows the most verbose gate in use.
        assert!(!span_may_be_enabled(tracing::Level::DEBUG));
        assert!(span_may_be_enabled(tracing::Level::WARN));
        let verbose = tracing_subscriber::registry().with(gate(LevelFilter::TRACE));
        tracing::subscriber::with_default(verbose, || {
            assert!(!tracing::debug_span!("verbose").is_disabled());
        });
        assert!(span_may_be_enabled(tracing::Level::DEBUG));
    }

    #[test]
    fn records_fields_set_after_creation() {
        let _turn = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            ACTIVE.store(true, Ordering::SeqCst);
            let span = tracing::info_span!("unit", status = tracing::field::Empty);
            span.record("status", 201u16);
            drop(span);
            ACTIVE.store(false, Ordering::SeqCst);
        });
        let spans = std::mem::take(&mut *SPANS.lock().unwrap());
        let unit = spans
            .iter()
            .find(|s| s.name == "unit")
            .expect("span recorded");
        assert_eq!(unit.fields, vec![("status", "201".to_string())]);
    }
}
