//! Provides the subcommands: each turns raw flags into a typed
//! configuration, runs it, and says which exit code the run earned.

pub mod attack;
pub mod lab;
mod progress;
pub mod report;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A problem with what the user asked for: exit code 2, one line, no trace.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Shorthand for a [`BadInput`] error.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    BadInput(msg.into()).into()
}

/// Writes a report to stdout. A closed pipe (`hammer ... | head`) is not an
/// error worth a panic: the reader has what it wanted.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Parses `--slo` when given; a bad expression is bad input.
pub fn parse_slo(text: Option<&str>) -> anyhow::Result<Option<hammer_core::slo::Slo>> {
    text.map(hammer_core::slo::Slo::parse)
        .transpose()
        .map_err(|e| bad_input(e.to_string()))
}

/// Flags set by Ctrl-C: `(stop, interrupted)`. The first Ctrl-C asks the
/// run to stop (it reports what ran); a second leaves at once.
pub fn on_ctrl_c() -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let (s, i) = (stop.clone(), interrupted.clone());
    let _ = ctrlc::set_handler(move || {
        if i.swap(true, Ordering::SeqCst) {
            std::process::exit(Exit::Interrupted as i32);
        }
        s.store(true, Ordering::SeqCst);
    });
    (stop, interrupted)
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// The SLO was violated.
    SloViolated = 3,
    /// `hammer report` merged the shards of a run with some missing.
    Incomplete = 4,
    /// Stopped by Ctrl-C.
    Interrupted = 130,
}
