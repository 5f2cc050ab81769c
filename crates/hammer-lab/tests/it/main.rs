//! hammer-lab's integration tests, one module per area: the method on
//! simulated targets, and the pinned layout of the text report.

mod method;
mod text_snapshot;
