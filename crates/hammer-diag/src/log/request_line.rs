//! Provides a request's own start and end lines, made from bytes straight
//! into the log writer's buffer: the very lines [`super::text::TextLine`]
//! and [`super::json::JsonLine`] make of the same `tracing` event.

use std::time::{Duration, Instant};

use super::clock::{push_six_digits, push_timestamp};
use super::context::RequestContext;
use super::options::LogFormat;

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
/// [`super::text::TextLine`] or [`super::json::JsonLine`] makes of `tracing::info!(path = %path,
/// duration_ms, "request end")` logged inside the request, made from
/// bytes: no `tracing` dispatch and no `core::fmt`, which were two thirds
/// of a logged request's instructions.
/// `at` is when the line is written, as a monotonic reading (see
/// [`super::clock::with_timestamp_at`]).
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

/// Milliseconds to the nanosecond, as [`super::text::write_f64`] writes a `_ms` field.
fn push_ms(out: &mut Vec<u8>, elapsed: Duration) {
    let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    out.extend_from_slice(itoa::Buffer::new().format(ns / 1_000_000).as_bytes());
    out.push(b'.');
    push_six_digits(out, (ns % 1_000_000) as u32);
}

/// `s` as a JSON string, escaped as [`super::json::json_string`] escapes it.
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
