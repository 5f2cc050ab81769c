//! Provides the diagnostics listener's endpoints (`/debug/pprof/*`,
//! `/metrics`, `/connections`) and the public listener's built-in ones
//! (`/info`, `/healthz`, `/readyz`). They sit above the middleware and the
//! trace capture they read.

pub(crate) mod callgrind;
pub(crate) mod heap;
pub(crate) mod profile;
pub(crate) mod status;
pub(crate) mod tasks;
pub(crate) mod trace;
pub(crate) mod wall;
