//! Provides `/debug/pprof/tasks`, the Rust counterpart of Go's
//! `/debug/pprof/goroutine`: how many tokio tasks are alive, the runtime's
//! workers and queue depth, and the open connections (each holds one task),
//! so a leak (tasks alive after every connection closed) shows, and, like
//! `goroutine?debug=2`, every task's trace: the chain of `async fn`s it is
//! suspended in. The traces use tokio's task dumps, which need the build
//! flag `--cfg tokio_unstable` (this workspace sets it in
//! `.cargo/config.toml`); without it the document says so.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::connections::Snapshot;
use crate::runtime::RuntimeStats;
use crate::state::Shared;

/// One task and where it is suspended.
#[derive(Debug, Serialize)]
pub struct TaskTrace {
    /// tokio's task ID.
    pub id: String,
    /// The tree of `async fn` frames the task is suspended in.
    pub trace: String,
}

/// Per-task traces, or why there are none.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Traces {
    /// Every task of the runtime.
    Tasks(Vec<TaskTrace>),
    /// Why not.
    Unavailable(String),
}

/// The `/debug/pprof/tasks` document.
#[derive(Debug, Serialize)]
pub struct TaskDump {
    /// Runtime figures (absent outside a tokio runtime).
    pub runtime: Option<RuntimeStats>,
    /// Open client connections of the public listener, one task each.
    pub connections: Snapshot,
    /// Each task's trace (the runtime pauses while they are taken).
    pub traces: Traces,
}

pub(crate) async fn tasks(State(shared): State<Arc<Shared>>) -> Json<TaskDump> {
    Json(TaskDump {
        runtime: RuntimeStats::current(),
        connections: shared.connections.snapshot(),
        traces: traces().await,
    })
}

#[cfg(tokio_unstable)]
async fn traces() -> Traces {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return Traces::Unavailable("not inside a tokio runtime".into());
    };
    // A dump waits for every worker; one blocked for long would stall it.
    match tokio::time::timeout(std::time::Duration::from_secs(5), handle.dump()).await {
        Ok(dump) => Traces::Tasks(
            dump.tasks()
                .iter()
                .map(|t| TaskTrace {
                    id: t.id().to_string(),
                    trace: shorten_paths(&t.trace().to_string()),
                })
                .collect(),
        ),
        Err(_) => {
            Traces::Unavailable("the task dump timed out: a runtime worker is blocked".into())
        }
    }
}

/// Cuts cargo's registry prefix from source paths, leaving
/// `tokio-1.54.1/src/time/sleep.rs:457:27`.
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
fn shorten_paths(trace: &str) -> String {
    const REGISTRY: &str = "/registry/src/";
    let mut out = String::with_capacity(trace.len());
    let mut rest = trace;
    while let Some(at) = rest.find(" at /") {
        out.push_str(&rest[..at + 4]);
        let path = &rest[at + 4..];
        match path.find(REGISTRY) {
            // Skip the index directory after `registry/src/` too.
            Some(r) => {
                let after = &path[r + REGISTRY.len()..];
                rest = after.find('/').map_or(after, |slash| &after[slash + 1..]);
            }
            None => rest = path,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(not(tokio_unstable))]
async fn traces() -> Traces {
    Traces::Unavailable(
        "per-task traces need tokio's task dumps: build with RUSTFLAGS='--cfg tokio_unstable'"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::shorten_paths;

    #[test]
    fn registry_prefixes_are_cut() {
        let t = "╼ poll at /root/.cargo/registry/src/index.crates.io-1949/tokio-1.54.1/src/time/sleep.rs:457:27\n  └╼ f at /work/src/main.rs:3:1";
        assert_eq!(
            shorten_paths(t),
            "╼ poll at tokio-1.54.1/src/time/sleep.rs:457:27\n  └╼ f at /work/src/main.rs:3:1"
        );
    }
}
