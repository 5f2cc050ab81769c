//! The load engine of hammer: worker threads that send HTTP/1.1 and HTTP/2
//! requests (over TCP or TLS) on a schedule and measure them, with no async
//! runtime. It sits on `hammer-core` (pacing, recording, the result model);
//! `hammer-lab` and the `hammer` CLI sit above it.
//!
//! [`Run::start`] splits the plan and the connection cap across workers
//! (one poll loop per thread, generic over the pacer), hands out merged
//! interval measurements while they run ([`Run::intervals`],
//! [`Run::watch`]), and joins them into one [`Outcome`], whose
//! [`Outcome::result`] is the run's result. The run is the one place that
//! knows its plan: its window, its target rate and the rate due at any
//! moment ([`Config::window`], [`Run::pacing`], [`Run::due_rate`]).
//! Requests are prepared once ([`request`]); the hot path copies bytes and
//! parses response heads ([`response`]).
//!
//! Floors inside: [`response`], [`request`], [`tls`], `exchange` (a
//! request in flight, how it ended) at the bottom; `h2` (frames, HPACK,
//! the connection state machine, the h2c probe) and `conn` (one
//! connection's I/O) above them; `table`, `tally`, `pool`, `holds` and
//! `timer` beside; `worker` (the poll loop) on top of those; this file
//! over all.
//!
//! ```no_run
//! use std::sync::{atomic::AtomicBool, Arc};
//! use std::time::Duration;
//! use hammer_core::pacer::{Arrivals, Limit, Share};
//! use hammer_core::plan::RatePlan;
//! use hammer_core::targets::Target;
//! use hammer_engine::request::{prepare, Loaded};
//! use hammer_engine::{Config, Mode, Run};
//!
//! let target = Target {
//!     method: "GET".into(),
//!     url: "http://127.0.0.1:8080/".into(),
//!     headers: vec![],
//!     body: None,
//! };
//! let (origin, requests) = prepare(&[Loaded { target, body: vec![] }], true).unwrap();
//! let window = Duration::from_secs(5);
//! let config = Config {
//!     addr: origin.addr,
//!     requests,
//!     // 1,000 requests/s, evenly spaced, for 5 s.
//!     mode: Mode::Open {
//!         plan: RatePlan::constant(1000.0, Some(window)).unwrap(),
//!         arrivals: Arrivals::Even,
//!     },
//!     limit: Limit { requests: None, window: Some(window) },
//!     warmup: Duration::ZERO,
//!     connections: 10_000,
//!     workers: 1,
//!     timeout: Duration::from_secs(10),
//!     connect_timeout: Duration::from_secs(3),
//!     keepalive: true,
//!     shard: Share::ALL,
//!     tls: None,
//!     h2_streams: None,
//! };
//! let outcome = Run::start(config, Arc::new(AtomicBool::new(false))).unwrap().join().unwrap();
//! println!("{} requests, {} connections", outcome.recorder.completed(), outcome.connections.opened);
//! println!("p99 {} ms", outcome.result().latency_ms.p99);
//! ```

mod assignment;
mod conn;
mod exchange;
mod h2;
pub use h2::{probe_h2c, ProbeError};
mod holds;
pub mod nofile;
mod pool;
pub mod request;
pub mod response;
mod table;
mod tally;
mod timer;
pub mod tls;
mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hammer_core::pacer::{Arrivals, Even, Limit, Limited, Pacer, Poisson, Share, Unpaced};
use hammer_core::plan::{PlanError, RatePlan};
use hammer_core::recorder::Recorder;
use hammer_core::result::{Connections, Pacing, PoolLimit, RunResult};

use assignment::{WorkerConfig, WorkerReport};
use request::Prepared;
use tally::Shared;
use tls::Tls;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A rate plan that cannot be run.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A worker thread could not be started.
    #[error("starting a worker thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A worker's poll loop failed.
    #[error("worker {worker}: {source}")]
    Worker {
        /// Which worker, from 0.
        worker: usize,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread panicked (a bug in hammer).
    #[error("worker {worker} panicked")]
    WorkerPanicked {
        /// Which worker, from 0.
        worker: usize,
    },
}

/// How requests are paced.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Open loop: send times follow the plan whatever the target does.
    Open {
        /// The rate plan.
        plan: RatePlan,
        /// How arrivals are spaced.
        arrivals: Arrivals,
    },
    /// Closed loop: each connection sends its next request when the last one ends.
    Closed,
}

/// Everything the engine needs for one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Requests to send, round robin.
    pub requests: Vec<Prepared>,
    /// Pacing.
    pub mode: Mode,
    /// `-n` and `-d`: the whole run's count, and how long it sends (the
    /// warm-up included). An open loop without a window sends for its
    /// plan's length ([`Config::window`]).
    pub limit: Limit,
    /// An unmeasured lead: requests due before this offset are sent, on
    /// the same connections, but not recorded; the send window starts here.
    pub warmup: Duration,
    /// Closed loop: the connections. Open loop: the most it may open.
    pub connections: usize,
    /// Worker threads.
    pub workers: usize,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Reuse connections.
    pub keepalive: bool,
    /// This process's share of a run split across machines (`Share::ALL` alone).
    pub shard: Share,
    /// TLS, for an https:// origin.
    pub tls: Option<Tls>,
    /// HTTP/2 (h2c with prior knowledge on http://, ALPN h2 on https://),
    /// with at most this many requests in flight per connection.
    pub h2_streams: Option<usize>,
}

impl Config {
    /// How long the run sends, the warm-up included: `-d` when given, else
    /// an open loop's plan length (none: until `-n` or a stop).
    pub fn window(&self) -> Option<Duration> {
        match &self.mode {
            Mode::Open { plan, .. } => self.limit.window.or(plan.duration()),
            Mode::Closed => self.limit.window,
        }
    }

    /// How this process's share of the run is paced: an open loop's
    /// planned mean rate, divided among the shards.
    pub fn pacing(&self) -> Pacing {
        match &self.mode {
            Mode::Open { plan, .. } => Pacing::Open {
                rate: plan.mean_rate() / self.shard.stride.max(1) as f64,
            },
            Mode::Closed => Pacing::Closed,
        }
    }

    /// The rate this process's share is due to send at `at` from the
    /// plan's start (warm-up included); none for a closed loop.
    pub fn due_rate(&self, at: Duration) -> Option<f64> {
        match &self.mode {
            Mode::Open { plan, .. } => {
                Some(plan.rate_at(at.as_secs_f64()) / self.shard.stride.max(1) as f64)
            }
            Mode::Closed => None,
        }
    }
}

/// The measurements of a finished run.
pub struct Outcome {
    /// Everything recorded, all workers merged.
    pub recorder: Recorder,
    /// The send window the achieved rate is measured over.
    pub window: Duration,
    /// Connections opened, and the most open at once.
    pub connections: Connections,
    /// How the run was paced.
    pub pacing: Pacing,
}

impl Outcome {
    /// The run's result: what was recorded, its pacing, window and
    /// connections.
    pub fn result(&self) -> RunResult {
        RunResult::from_recorder(&self.recorder, self.pacing, self.window)
            .with_connections(self.connections)
    }
}

/// What the workers measured over one interval of a run.
pub struct Interval {
    /// Everything recorded in the interval, all workers merged.
    pub recorder: Recorder,
    /// Where the interval begins, from the start of the measured part.
    pub offset: Duration,
    /// How long it lasted.
    pub len: Duration,
}

/// A running engine's gauges, as its workers last handed them over (every
/// 100 ms); zero once a worker has finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Connections open.
    pub open: u64,
    /// Requests sent and not yet ended.
    pub in_flight: u64,
    /// Connections opened since the start.
    pub opened: u64,
}

/// The intervals of a run ([`Run::intervals`]); ends after the workers do.
pub struct Intervals<'a> {
    run: &'a Run,
    every: Duration,
    last: Instant,
    done: bool,
}

/// How often [`Intervals`] looks whether an interval is due.
const WATCH_POLL: Duration = Duration::from_millis(50);

impl Iterator for Intervals<'_> {
    type Item = Interval;

    fn next(&mut self) -> Option<Interval> {
        while !self.done {
            std::thread::sleep(WATCH_POLL);
            let finished = self.run.is_finished();
            let now = Instant::now();
            if now.saturating_duration_since(self.last) >= self.every || finished {
                self.done = finished;
                let interval = Interval {
                    recorder: self.run.take_interval(),
                    offset: self
                        .last
                        .saturating_duration_since(self.run.measured_from()),
                    len: now.saturating_duration_since(self.last),
                };
                self.last = now;
                return Some(interval);
            }
        }
        None
    }
}

/// One worker's part of a run, before its pacer is chosen.
struct Work<'a> {
    cfg: WorkerConfig,
    limit: Limit,
    share: Share,
    shared: &'a Shared,
    stop: &'a AtomicBool,
}

impl Work<'_> {
    fn run<P: Pacer>(self, pacer: P) -> std::io::Result<WorkerReport> {
        let pacer = Limited::new(pacer, self.limit, self.share);
        worker::run(self.cfg, pacer, self.shared, self.stop)
    }
}

/// A run in progress.
pub struct Run {
    start: Instant,
    warmup: Duration,
    stop: Arc<AtomicBool>,
    shared: Arc<Vec<Shared>>,
    handles: Vec<JoinHandle<std::io::Result<WorkerReport>>>,
    /// Its configuration less the requests (the workers hold those).
    config: Config,
}

/// Open loop: how long past its window a worker may still send requests
/// that were due within it.
const LATE_GRACE: Duration = Duration::from_secs(1);

/// Workers get a moment to start before the first request is due, so the
/// schedule does not begin late.
const LEAD_IN: Duration = Duration::from_millis(5);

impl Run {
    /// Starts the workers. Setting `stop` ends sending; in-flight requests
    /// get a short grace period.
    pub fn start(mut cfg: Config, stop: Arc<AtomicBool>) -> Result<Run, EngineError> {
        let closed = matches!(cfg.mode, Mode::Closed);
        let window = cfg.window();
        // Every worker needs a connection of its own: never more workers
        // than connections, so `-c` caps the total in either mode.
        let workers = cfg.workers.min(cfg.connections).max(1);
        let start = Instant::now() + LEAD_IN;
        let requests: Arc<[Prepared]> = std::mem::take(&mut cfg.requests).into();
        let shared: Arc<Vec<Shared>> = Arc::new((0..workers).map(|_| Shared::default()).collect());
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let share = cfg.shard.split(i as u64, workers as u64);
            let max_conns =
                (cfg.connections / workers + usize::from(i < cfg.connections % workers)).max(1);
            let wcfg = WorkerConfig {
                addr: cfg.addr,
                tls: cfg.tls.clone(),
                h2_streams: cfg.h2_streams,
                requests: requests.clone(),
                max_conns,
                timeout: cfg.timeout,
                connect_timeout: cfg.connect_timeout,
                keepalive: cfg.keepalive,
                // The pacer ends an open loop at the window; past it, requests
                // already due may still go out for a moment (they wait for a
                // connection the target holds), rather than vanish.
                deadline: window
                    .map(|d| start + d + if closed { Duration::ZERO } else { LATE_GRACE }),
                start,
                measure_from: (!cfg.warmup.is_zero()).then(|| start + cfg.warmup),
                first_request: i % requests.len(),
            };
            let mode = cfg.mode.clone();
            let limit = Limit {
                window,
                ..cfg.limit
            };
            let (shared, stop) = (shared.clone(), stop.clone());
            let handle = std::thread::Builder::new()
                .name(format!("hammer-worker-{i}"))
                .spawn(move || {
                    let work = Work {
                        cfg: wcfg,
                        limit,
                        share,
                        shared: &shared[i],
                        stop: &stop,
                    };
                    match mode {
                        Mode::Closed => work.run(Unpaced),
                        Mode::Open {
                            plan,
                            arrivals: Arrivals::Even,
                        } => work.run(Even::new(plan, share)),
                        Mode::Open {
                            plan,
                            arrivals: Arrivals::Poisson { seed },
                        } => work.run(Poisson::new(plan, share, seed)),
                    }
                })
                .map_err(EngineError::Spawn)?;
            handles.push(handle);
        }
        Ok(Run {
            start,
            warmup: cfg.warmup,
            stop,
            shared,
            handles,
            config: cfg,
        })
    }

    /// How this run is paced (an open loop's target rate).
    pub fn pacing(&self) -> Pacing {
        self.config.pacing()
    }

    /// The rate due at `at` from the start of the measured part (this
    /// process's share; none for a closed loop).
    pub fn due_rate(&self, at: Duration) -> Option<f64> {
        self.config.due_rate(self.warmup + at)
    }

    /// Hands `each` every interval (`every` apart, as [`Run::intervals`])
    /// with the run, for its gauges and due rate; then joins.
    pub fn watch(
        self,
        every: Duration,
        mut each: impl FnMut(&Run, Interval),
    ) -> Result<Outcome, EngineError> {
        for interval in self.intervals(every) {
            each(&self, interval);
        }
        self.join()
    }

    /// When offset zero of the plan is.
    pub fn started_at(&self) -> Instant {
        self.start
    }

    /// When the measured part begins (after the warm-up).
    pub fn measured_from(&self) -> Instant {
        self.start + self.warmup
    }

    /// Asks the workers to stop sending.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether every worker has finished.
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// What the workers measure, every `every` while they run and once more
    /// when they have finished: the one watch loop behind live progress,
    /// interval logs and the lab's timelines. Blocks between items.
    pub fn intervals(&self, every: Duration) -> Intervals<'_> {
        Intervals {
            run: self,
            every,
            last: self.measured_from(),
            done: false,
        }
    }

    /// What all workers measured since the last call (workers hand over
    /// their measurements every 100 ms).
    pub fn take_interval(&self) -> Recorder {
        let mut merged = Recorder::new();
        for m in self.shared.iter() {
            let mut r = m.recorder.lock().unwrap_or_else(|e| e.into_inner());
            merged.add(&r);
            r.clear();
        }
        merged
    }

    /// The workers' gauges as last handed over, summed.
    pub fn gauges(&self) -> Gauges {
        let mut g = Gauges::default();
        for w in self.shared.iter() {
            w.add_gauges(&mut g);
        }
        g
    }

    /// Waits for the workers and merges what they measured.
    pub fn join(self) -> Result<Outcome, EngineError> {
        let mut recorder = Recorder::new();
        let (mut last_done, mut send_stop) = (self.start, None::<Instant>);
        let mut connections = Connections::default();
        for (worker, h) in self.handles.into_iter().enumerate() {
            let report = h
                .join()
                .map_err(|_| EngineError::WorkerPanicked { worker })?
                .map_err(|source| EngineError::Worker { worker, source })?;
            recorder.add(&report.recorder);
            last_done = last_done.max(report.last_done);
            // Each worker's window closes where its first unsent arrival was
            // due; the earliest of those is where the run's plan stopped.
            send_stop = Some(send_stop.map_or(report.send_stop, |t| t.min(report.send_stop)));
            let (most, reason) = report.limit;
            connections.add(&Connections {
                opened: report.opened,
                peak_open: report.peak_open,
                limit: Some(PoolLimit {
                    most: most as u64,
                    reason,
                }),
            });
        }
        let end = match send_stop {
            Some(t) if !matches!(self.config.mode, Mode::Closed) => t,
            _ => last_done,
        };
        Ok(Outcome {
            recorder,
            window: end.saturating_duration_since(self.start + self.warmup),
            connections,
            pacing: self.config.pacing(),
        })
    }
}
