//! Provides the lab's error: what stopped a lab or one of its parts, with
//! the step, file or URL it concerns. Problems at the knee that leave the
//! rest of the report standing (a profile that could not be fetched) are
//! not errors; they go into the knee's `problems`.

use std::path::PathBuf;

/// Why the lab (or a part of it) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The engine could not run a step.
    #[error("running the step at {rate} req/s")]
    Step {
        /// The step's rate.
        rate: f64,
        /// What the engine said.
        #[source]
        source: hammer_engine::EngineError,
    },
    /// The engine could not run a point of the closed-loop sweep.
    #[error("running the closed loop of {connections} connections")]
    Sweep {
        /// The point's connections.
        connections: usize,
        /// What the engine said.
        #[source]
        source: hammer_engine::EngineError,
    },
    /// A report file could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A file the report embeds could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A GET to the target or its diagnostics listener failed.
    #[error("GET {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong (transport error, or the status and body).
        reason: String,
    },
    /// A profile could not be read (not gzip, not a pprof protobuf).
    #[error("reading the profile: {0}")]
    Profile(String),
    /// A chart or a flame graph could not be drawn.
    #[error("drawing {what}: {reason}")]
    Draw {
        /// Which chart.
        what: String,
        /// What the renderer said.
        reason: String,
    },
}

impl LabError {
    /// An error writing `path`.
    pub fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Write { path, source }
    }
}
