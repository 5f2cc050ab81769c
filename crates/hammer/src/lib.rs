//! hammer: an HTTP load generator that measures latency from the intended
//! send time, so a stalled server cannot hide behind a stalled generator.
//!
//! - [`engine`]: worker threads, connections, pacing and measurement.
//! - [`report`]: the text report, progress line and output files.
//! - [`limits`]: raising the open-file limit.
//! - [`lab`]: the capacity method of `hammer lab` and its reports.
//!
//! The `hammer` binary's subcommands are in `src/cmd/`.

pub mod engine;
pub mod lab;
pub mod limits;
pub mod report;
