//! Provides `/debug/pprof/heap`: jemalloc's sampled heap profile (live
//! allocations by stack) as gzip'd pprof protobuf, which `go tool pprof`
//! reads. Needs the `heap` feature and a service running on
//! tikv-jemallocator with profiling enabled in its `malloc_conf`; otherwise
//! a 501 that says how to enable it.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::reply::error_response;

/// How to switch heap profiling on, for the 501.
pub(crate) const HOW_TO_ENABLE: &str =
    "heap profiling is off: build hammer-diag with the `heap` feature, \
use tikv-jemallocator (feature `profiling`) as the global allocator, and export \
`_rjem_malloc_conf = \"prof:true,prof_active:true,lg_prof_sample:19\"` (see hammer-diag's README)";

pub(crate) async fn heap() -> Response {
    match dump().await {
        Ok(Some(gz)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"heap.pb.gz\"",
                ),
            ],
            gz,
        )
            .into_response(),
        Ok(None) => error_response(StatusCode::NOT_IMPLEMENTED, HOW_TO_ENABLE),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("heap profile failed: {e}"),
        ),
    }
}

/// jemalloc's profiler could not dump the heap (a 500).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HeapError(Box<dyn std::error::Error + Send + Sync>);

/// The gzip'd pprof heap profile, or `None` when profiling is off.
#[cfg(feature = "heap")]
async fn dump() -> Result<Option<Vec<u8>>, HeapError> {
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return Ok(None);
    };
    let mut ctl = ctl.lock().await;
    if !ctl.activated() {
        return Ok(None);
    }
    ctl.dump_pprof().map(Some).map_err(|e| HeapError(e.into()))
}

#[cfg(not(feature = "heap"))]
async fn dump() -> Result<Option<Vec<u8>>, HeapError> {
    Ok(None)
}
