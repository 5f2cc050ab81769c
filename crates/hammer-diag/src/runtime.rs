//! Provides the tokio runtime's own figures (tasks alive, workers, queue
//! depth), read for `/metrics` and `/debug/pprof/tasks`.

use serde::Serialize;

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
