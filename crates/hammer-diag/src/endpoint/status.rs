//! Provides the built-in endpoints: `/info`, `/healthz` and `/readyz` on the
//! public listener; `/metrics` and `/connections` on the diagnostics
//! listener only.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::connections::Snapshot;
use crate::state::Shared;

/// The `/info` document (the Uptime talk's fields).
#[derive(Debug, Serialize)]
pub struct Info {
    /// `<major>.<minor>.<commit#>-<sha>-<date>.<time>`, stamped at build.
    pub version: String,
    /// When the service started, Unix seconds.
    pub start_time_epoch_secs: u64,
    /// Now, Unix seconds.
    pub current_time_epoch_secs: u64,
    /// Time since start, like `167h10m2s`.
    pub uptime: String,
}

/// Formats a duration the way Go prints one: `167h10m2s`.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

pub(crate) async fn info(State(shared): State<Arc<Shared>>) -> Json<Info> {
    let epoch =
        |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    Json(Info {
        version: shared.version.clone(),
        start_time_epoch_secs: epoch(shared.started),
        current_time_epoch_secs: epoch(std::time::SystemTime::now()),
        uptime: go_duration(shared.started_at.elapsed()),
    })
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::SeqCst) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn connections(State(shared): State<Arc<Shared>>) -> Json<Snapshot> {
    Json(shared.connections.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_secs(125)), "2m5s");
        assert_eq!(
            go_duration(Duration::from_secs(167 * 3600 + 10 * 60 + 2)),
            "167h10m2s"
        );
    }
}
