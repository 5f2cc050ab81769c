//! Provides `/debug/pprof/tasks`, the Rust counterpart of Go's
//! `/debug/pprof/goroutine`: how many tokio tasks are alive, the runtime's
//! workers and queue depth, and the open connections (each holds one task),
//! so a leak (tasks alive after every connection closed) shows. Per-task
//! stack traces need tokio's unstable task dumps and are not built yet.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::connections::Snapshot;
use crate::Shared;

/// The runtime's own figures.
#[derive(Debug, Serialize, Clone, Copy)]
pub struct RuntimeStats {
    /// Tasks spawned and not yet finished.
    pub alive_tasks: usize,
    /// Worker threads.
    pub workers: usize,
    /// Tasks waiting in the global queue.
    pub global_queue_depth: usize,
}

impl RuntimeStats {
    /// Reads the current runtime's metrics (`None` outside a runtime).
    pub fn current() -> Option<Self> {
        let m = tokio::runtime::Handle::try_current().ok()?.metrics();
        Some(Self {
            alive_tasks: m.num_alive_tasks(),
            workers: m.num_workers(),
            global_queue_depth: m.global_queue_depth(),
        })
    }
}

/// The `/debug/pprof/tasks` document.
#[derive(Debug, Serialize)]
pub struct TaskDump {
    /// Runtime figures (absent outside a tokio runtime).
    pub runtime: Option<RuntimeStats>,
    /// Open client connections of the public listener, one task each.
    pub connections: Snapshot,
    /// Why there are no per-task traces.
    pub traces: &'static str,
}

pub(crate) async fn tasks(State(shared): State<Arc<Shared>>) -> Json<TaskDump> {
    Json(TaskDump {
        runtime: RuntimeStats::current(),
        connections: shared.connections.snapshot(),
        traces: "not built yet: per-task stack traces need tokio's unstable task dumps",
    })
}
