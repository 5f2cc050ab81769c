//! Provides one step of the lab: one constant-rate run whose first part is
//! an unmeasured warm-up on the same connections, then the measured part,
//! with a per-second timeline of rate, p50, p99 and errors for the
//! report's latency-over-time chart.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use hammer_core::histogram::quantile_ms;
use hammer_core::pacer::{Arrivals, Limit, Share};
use hammer_core::plan::RatePlan;
use hammer_core::result::RunResult;
use serde::{Deserialize, Serialize};

use hammer_engine::request::Prepared;
use hammer_engine::{Config, EngineError, Gauges, Interval, Mode, Run};

use crate::Target;

/// One second of a measured step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Seconds since the measured part began (end of this interval).
    pub t_s: f64,
    /// Responses per second in the interval.
    pub rate: f64,
    /// Latency p50 in the interval, ms.
    pub p50_ms: f64,
    /// Latency p99 in the interval, ms.
    pub p99_ms: f64,
    /// Failed requests in the interval.
    pub errors: u64,
}

/// Sees every measured second of every step as it runs (hammer's
/// `--metrics-listen`).
pub trait Watcher: Send + Sync + std::fmt::Debug {
    /// One interval; `target_rate` is the step's rate (`None`: closed loop).
    fn interval(&self, interval: &Interval, gauges: Gauges, target_rate: Option<f64>);
}

/// Where and how to send a step's requests.
#[derive(Debug, Clone)]
pub struct Load {
    /// Resolved target address.
    pub addr: std::net::SocketAddr,
    /// The request(s), round robin.
    pub requests: Vec<Prepared>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Most connections the engine may open.
    pub connections: usize,
    /// Worker threads.
    pub workers: usize,
    /// TLS, for an https:// target.
    pub tls: Option<hammer_engine::tls::Tls>,
    /// HTTP/2, with at most this many requests per connection.
    pub h2_streams: Option<usize>,
    /// Sees each step's intervals as they are measured.
    pub watcher: Option<Arc<dyn Watcher>>,
}

impl Target for Load {
    fn step(
        &self,
        rate: f64,
        warmup: Duration,
        measure: Duration,
        stop: &Arc<AtomicBool>,
        tick: &mut dyn FnMut(Tick),
    ) -> Result<RunResult, EngineError> {
        run_step(self, rate, warmup, measure, stop, tick)
    }

    fn closed_step(
        &self,
        connections: usize,
        warmup: Duration,
        measure: Duration,
        stop: &Arc<AtomicBool>,
    ) -> Option<Result<RunResult, EngineError>> {
        let config = Config {
            mode: Mode::Closed,
            limit: Limit {
                requests: None,
                window: Some(warmup + measure),
            },
            connections,
            // One request in flight per connection over HTTP/2 too: the
            // sweep sets the concurrency.
            h2_streams: self.h2_streams.map(|_| 1),
            ..config(self, Mode::Closed, warmup)
        };
        Some(run(self, config, stop, |_| {}))
    }
}

/// Runs `rate` req/s for `warmup` (discarded) and then `measure`, calling
/// `tick` with each measured second. Setting `stop` ends it early; what ran
/// is still returned.
pub fn run_step(
    load: &Load,
    rate: f64,
    warmup: Duration,
    measure: Duration,
    stop: &Arc<AtomicBool>,
    mut tick: impl FnMut(Tick),
) -> Result<RunResult, EngineError> {
    // One run: the warm-up is its unmeasured lead, on the same connections,
    // so the measured part starts with the pool the rate needs. The plan
    // states the step's length; the run's window follows from it.
    let mode = Mode::Open {
        plan: RatePlan::constant(rate, Some(warmup + measure))?,
        arrivals: Arrivals::Even,
    };
    run(load, config(load, mode, warmup), stop, |interval| {
        let recorder = &interval.recorder;
        if recorder.completed() > 0 {
            tick(Tick {
                t_s: (interval.offset + interval.len).as_secs_f64(),
                rate: recorder.completed() as f64 / interval.len.as_secs_f64().max(1e-3),
                p50_ms: quantile_ms(recorder.latency(), 0.5),
                p99_ms: quantile_ms(recorder.latency(), 0.99),
                errors: recorder.failed(),
            });
        }
    })
}

/// Runs `config` to its end, showing each second to the watcher and to
/// `each`; the run's result.
fn run(
    load: &Load,
    config: Config,
    stop: &Arc<AtomicBool>,
    mut each: impl FnMut(&Interval),
) -> Result<RunResult, EngineError> {
    let outcome =
        Run::start(config, stop.clone())?.watch(Duration::from_secs(1), |run, interval| {
            if let Some(w) = &load.watcher {
                w.interval(&interval, run.gauges(), run.pacing().target_rate());
            }
            each(&interval);
        })?;
    Ok(outcome.result())
}

/// The engine's configuration of a step in `mode`, `warmup` of it unmeasured.
fn config(load: &Load, mode: Mode, warmup: Duration) -> Config {
    Config {
        addr: load.addr,
        requests: load.requests.clone(),
        mode,
        limit: Limit::default(),
        warmup,
        connections: load.connections,
        workers: load.workers,
        timeout: load.timeout,
        connect_timeout: Duration::from_secs(3),
        keepalive: true,
        shard: Share::ALL,
        tls: load.tls.clone(),
        h2_streams: load.h2_streams,
    }
}
