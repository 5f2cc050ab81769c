//! Provides `/debug/pprof/wall?seconds=N`: where requests spend their wall
//! time, waiting included. For the window, every span that closes (the
//! request, the handler's spans such as `db.pool.get`, `db.connect`,
//! `db.query`, `render.queue`, `render`) adds its *self* time (its wall
//! time less its children's) to its stack of span names. The result is a
//! pprof protobuf with sample type `wall/nanoseconds` (`go tool pprof -top`
//! reads it, one "function" per span name), or with `&format=flamegraph`
//! an SVG flame graph, or `&format=folded` the folded stacks.
//!
//! An on-CPU profile shows a service that waits (for a database to fork a
//! backend, for a pool, for a queue) only thinly; this shows the wait. It
//! shares the trace's window (one at a time) and costs nothing outside it.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pprof::protos::{self, Message as _};

use crate::query::{self, QueryError};
use crate::reply::error_response;
use crate::state::Shared;
use crate::trace::{capture, Recorded, MAX_SECONDS};

/// What to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pprof,
    Flamegraph,
    Folded,
}

fn parse(query: Option<&str>) -> Result<(u64, Format), QueryError> {
    let (mut seconds, mut format) = (5, Format::Pprof);
    for (k, v) in query::pairs(query) {
        match k {
            "seconds" => seconds = query::bounded("seconds", v, 1..=MAX_SECONDS)?,
            "format" => {
                format = query::one_of(
                    "format",
                    v,
                    &[
                        ("pprof", Format::Pprof),
                        ("proto", Format::Pprof),
                        ("flamegraph", Format::Flamegraph),
                        ("svg", Format::Flamegraph),
                        ("folded", Format::Folded),
                    ],
                    "pprof, flamegraph or folded",
                )?
            }
            _ => {
                return Err(QueryError::Unknown {
                    name: k.to_string(),
                    known: "seconds, format",
                })
            }
        }
    }
    Ok((seconds, format))
}

/// hammer-diag's span for an accepted connection: its own time is the
/// connection's idle time between requests, not time any request spent.
const CONNECTION: &str = "connection";

/// Wall nanoseconds per stack of span names (root first), most first; the
/// connection a request came on is left out of its stack.
pub(crate) fn stacks(spans: &[Recorded]) -> Vec<(Vec<&'static str>, u64)> {
    let mut by_stack: HashMap<&[&'static str], u64> = HashMap::new();
    for s in spans.iter().filter(|s| s.name != CONNECTION) {
        let nanos = u64::try_from(s.self_time.as_nanos()).unwrap_or(u64::MAX);
        let stack = match s.stack.first() {
            Some(&CONNECTION) => &s.stack[1..],
            _ => &s.stack[..],
        };
        *by_stack.entry(stack).or_default() += nanos;
    }
    let mut out: Vec<(Vec<&'static str>, u64)> = by_stack
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(stack, n)| (stack.to_vec(), n))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The folded-stack text (`request;handler;db.connect 1234`), nanoseconds.
pub(crate) fn folded(stacks: &[(Vec<&'static str>, u64)]) -> String {
    stacks
        .iter()
        .map(|(stack, n)| format!("{} {n}\n", stack.join(";")))
        .collect()
}

/// A pprof profile with one sample per stack: value wall/nanoseconds,
/// leaf first as pprof wants, one function per span name.
pub(crate) fn pprof(
    stacks: &[(Vec<&'static str>, u64)],
    window_nanos: i64,
    start: SystemTime,
) -> protos::Profile {
    let mut strings: Vec<String> = vec![String::new(), "wall".into(), "nanoseconds".into()];
    let mut string_ids: HashMap<&str, i64> = HashMap::new();
    let mut function_ids: HashMap<&str, u64> = HashMap::new();
    let (mut functions, mut locations) = (Vec::new(), Vec::new());
    let mut samples = Vec::new();
    for (stack, nanos) in stacks {
        let mut ids = Vec::with_capacity(stack.len());
        for &name in stack.iter().rev() {
            let id = *function_ids.entry(name).or_insert_with(|| {
                let string = *string_ids.entry(name).or_insert_with(|| {
                    strings.push(name.to_string());
                    strings.len() as i64 - 1
                });
                let id = functions.len() as u64 + 1;
                functions.push(protos::Function {
                    id,
                    name: string,
                    system_name: string,
                    ..Default::default()
                });
                locations.push(protos::Location {
                    id,
                    line: vec![protos::Line {
                        function_id: id,
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                id
            });
            ids.push(id);
        }
        samples.push(protos::Sample {
            location_id: ids,
            value: vec![i64::try_from(*nanos).unwrap_or(i64::MAX)],
            ..Default::default()
        });
    }
    let wall = protos::ValueType {
        ty: 1,
        unit: 2,
        ..Default::default()
    };
    protos::Profile {
        sample_type: vec![wall.clone()],
        sample: samples,
        location: locations,
        function: functions,
        string_table: strings,
        time_nanos: start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        duration_nanos: window_nanos,
        period_type: Some(wall).into(),
        period: 1,
        ..Default::default()
    }
}

pub(crate) async fn wall(
    State(_shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let (seconds, format) = match parse(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let start = SystemTime::now();
    let window = match capture(seconds).await {
        Ok(w) => w,
        Err(busy) => return busy,
    };
    let stacks = stacks(&window.spans);
    match format {
        Format::Folded => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            folded(&stacks),
        )
            .into_response(),
        Format::Flamegraph => {
            let text = folded(&stacks);
            let mut options = inferno::flamegraph::Options::default();
            options.title = format!("Wall time by span, {seconds} s");
            options.count_name = "ns".into();
            let mut svg = Vec::new();
            if stacks.is_empty() {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "no span closed in the window: no requests, or the service has no spans",
                );
            }
            match inferno::flamegraph::from_lines(&mut options, text.lines(), &mut svg) {
                Ok(()) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
                Err(e) => error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("drawing the flame graph: {e}"),
                ),
            }
        }
        Format::Pprof => {
            let length = i64::try_from(window.length.as_nanos()).unwrap_or(i64::MAX);
            let bytes = match pprof(&stacks, length, start).write_to_bytes() {
                Ok(b) => b,
                Err(e) => {
                    return error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("encoding the profile: {e}"),
                    )
                }
            };
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            if gz.write_all(&bytes).is_err() {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "compressing");
            }
            let Ok(body) = gz.finish() else {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "compressing");
            };
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"wall.pb.gz\"",
                    ),
                ],
                body,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds_the_query() {
        assert_eq!(parse(None).unwrap(), (5, Format::Pprof));
        assert_eq!(
            parse(Some("seconds=2&format=folded")).unwrap(),
            (2, Format::Folded)
        );
        for bad in ["seconds=0", "seconds=61", "format=png", "hz=9"] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
