//! The pure core of hammer: everything about a load test that needs no
//! sockets, threads or clocks.
//!
//! - [`plan`]: rate plans (constant, stepped schedules, ramps).
//! - [`pacer`]: when each request is due (evenly spaced, Poisson, closed loop).
//! - [`recorder`]: constant-memory measurement with HDR histograms.
//! - [`histogram`]: a histogram's quantiles and summary, and its wire form.
//! - [`result`]: the JSON result of a run and the exact merge of shards.
//! - [`slo`]: SLO expressions and their verdict.
//! - [`targets`]: request targets and vegeta's targets file format.
//! - [`capacity`]: step verdicts, the capacity search, N+1 plans, USL fits.
//! - [`steps`]: a lab step's rate, length and USL point.
//! - [`readings`]: a service's metrics and profile, read.
//!
//! It sits at the bottom of the workspace: `hammer-engine` drives sockets
//! with these pieces, `hammer-lab` runs the SRE method on them, and the
//! `hammer` CLI sits on top.
//!
//! ```
//! use std::time::Duration;
//! use hammer_core::pacer::{Even, Limit, Limited, Next, Share};
//! use hammer_core::plan::RatePlan;
//!
//! // 4 requests/s for one second: due at 0, 250, 500 and 750 ms.
//! let plan = RatePlan::constant(4.0, Some(Duration::from_secs(1))).unwrap();
//! let mut pacer = Limited::new(Even::new(plan, Share::ALL), Limit::default(), Share::ALL);
//! pacer.take();
//! assert_eq!(pacer.next(), Next::At(Duration::from_millis(250)));
//! ```

pub mod capacity;
pub mod histogram;
pub mod pacer;
pub mod plan;
pub mod readings;
pub mod recorder;
pub mod result;
pub mod slo;
pub mod steps;
pub mod targets;
