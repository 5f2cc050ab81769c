//! Provides `/debug/pprof/profile?seconds=N`: a CPU profile of every thread,
//! sampled by pprof-rs, as gzip'd pprof protobuf (what `go tool pprof`
//! reads), or with `&format=flamegraph` an SVG flame graph (inferno), or
//! with `&format=callgrind` callgrind text (kcachegrind, callgrind_annotate).
//! One profile at a time: a second gets 409.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use pprof::protos::Message as _;

use super::callgrind;
use crate::query::{self, QueryError};
use crate::reply::error_response;
use crate::state::Shared;

/// Longest profile accepted.
pub(crate) const MAX_SECONDS: u64 = 300;

/// What to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// gzip'd pprof protobuf.
    Pprof,
    /// SVG flame graph.
    Flamegraph,
    /// callgrind text.
    Callgrind,
}

/// A parsed profile request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProfileRequest {
    /// How long to sample.
    pub(crate) seconds: u64,
    /// Samples per second per thread.
    pub(crate) hz: i32,
    /// Output format.
    pub(crate) format: Format,
}

impl ProfileRequest {
    /// Parses `seconds` (1..=300, default 30), `hz` (1..=1000, default 99)
    /// and `format` (pprof, flamegraph, callgrind).
    pub(crate) fn parse(query: Option<&str>) -> Result<Self, QueryError> {
        let mut req = ProfileRequest {
            seconds: 30,
            hz: 99,
            format: Format::Pprof,
        };
        for (k, v) in query::pairs(query) {
            match k {
                "seconds" => req.seconds = query::bounded("seconds", v, 1..=MAX_SECONDS)?,
                "hz" => req.hz = query::bounded("hz", v, 1..=1000)?,
                "format" => {
                    req.format = query::one_of(
                        "format",
                        v,
                        &[
                            ("pprof", Format::Pprof),
                            ("proto", Format::Pprof),
                            ("flamegraph", Format::Flamegraph),
                            ("svg", Format::Flamegraph),
                            ("callgrind", Format::Callgrind),
                        ],
                        "pprof, flamegraph or callgrind",
                    )?
                }
                _ => {
                    return Err(QueryError::Unknown {
                        name: k.to_string(),
                        known: "seconds, hz, format",
                    })
                }
            }
        }
        Ok(req)
    }
}

/// Clears the "profiling" flag however the profile ends.
struct Busy(Arc<Shared>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.profiling.store(false, Ordering::SeqCst);
    }
}

pub(crate) async fn profile(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let req = match ProfileRequest::parse(query.as_deref()) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if shared.profiling.swap(true, Ordering::SeqCst) {
        return error_response(
            StatusCode::CONFLICT,
            "a CPU profile is already running; try again when it ends",
        );
    }
    let busy = Busy(shared);
    // The profiler is process-wide and its guard is not Send: sample on a
    // blocking thread and sleep there.
    let result = tokio::task::spawn_blocking(move || sample(req)).await;
    drop(busy);
    match result {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("profiling failed: {e}"),
        ),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("profiling failed: {e}"),
        ),
    }
}

/// Why a profile could not be taken or encoded (a 500).
#[derive(Debug, thiserror::Error)]
enum ProfileError {
    #[error(transparent)]
    Profiler(#[from] pprof::Error),
    #[error("encoding the protobuf: {0}")]
    Encode(Box<dyn std::error::Error + Send + Sync>),
    #[error("compressing: {0}")]
    Io(#[from] std::io::Error),
}

fn sample(req: ProfileRequest) -> Result<Response, ProfileError> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(req.hz)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()?;
    std::thread::sleep(Duration::from_secs(req.seconds));
    let report = guard.report().build()?;
    drop(guard);
    Ok(match req.format {
        Format::Pprof => {
            let profile = report.pprof()?;
            let bytes = profile
                .write_to_bytes()
                .map_err(|e| ProfileError::Encode(e.into()))?;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&bytes)?;
            let body = gz.finish()?;
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"profile.pb.gz\"",
                    ),
                ],
                body,
            )
                .into_response()
        }
        Format::Flamegraph => {
            let mut svg = Vec::new();
            report.flamegraph(&mut svg)?;
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        Format::Callgrind => {
            let stacks = report.data.iter().map(|(frames, &count)| callgrind::Stack {
                frames: frames
                    .frames
                    .iter()
                    .flat_map(|inlined| {
                        inlined.iter().map(|s| callgrind::Frame {
                            name: s.name(),
                            file: s.filename.as_ref().map(|f| f.display().to_string()),
                            line: s.lineno.unwrap_or(0),
                        })
                    })
                    .collect(),
                count: count.max(0) as u64,
            });
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                callgrind::write(stacks),
            )
                .into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds_the_query() {
        let r = ProfileRequest::parse(Some("seconds=5&format=callgrind&hz=250")).unwrap();
        assert_eq!((r.seconds, r.hz, r.format), (5, 250, Format::Callgrind));
        assert_eq!(ProfileRequest::parse(None).unwrap().seconds, 30);
        for bad in [
            "seconds=0",
            "seconds=301",
            "seconds=x",
            "hz=0",
            "hz=5000",
            "format=png",
            "depth=3",
        ] {
            assert!(ProfileRequest::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
