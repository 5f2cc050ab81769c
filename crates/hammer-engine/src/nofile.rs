//! Provides the open-file limit check: every connection is a file
//! descriptor, and the soft limit (often 1024) is what stopped go-hammer at
//! ~225 TPS. hammer raises it to the hard limit before a run.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors hammer keeps for itself (poll, timers, stdio, output files).
pub const RESERVED_FDS: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft
/// limit (`None` when unlimited).
pub fn raise_nofile() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}

/// How many connections fit under a file limit.
pub fn max_connections(nofile: Option<u64>) -> Option<u64> {
    nofile.map(|n| n.saturating_sub(RESERVED_FDS))
}
