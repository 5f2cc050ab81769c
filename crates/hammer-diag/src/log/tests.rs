//! Tests of the line formats and the request context together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use tracing_subscriber::fmt::format::Writer;

use super::clock::{civil_date, timestamp, with_timestamp_at};
use super::context::{current_request, with_request, RequestContext};
use super::json::{json_string, JsonLine};
use super::options::LogFormat;
use super::request_line::{request_line, RequestLine, REQUEST_TARGET};
use super::text::{write_f64, TextLine};
use crate::request_id::RequestId;

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
    assert!(wall + Duration::from_millis(1) >= before && wall <= after + Duration::from_millis(1));
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
