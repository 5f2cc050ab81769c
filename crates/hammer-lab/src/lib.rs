//! Provides `hammer lab`'s method, the seeds' SRE tuning loop as code: for
//! each target, constant-rate steps that grow geometrically until the SLO
//! breaks, bisection to the capacity ([`hammer_core::capacity::Search`]),
//! a CPU profile and trace from the diagnostics listener at the knee, a
//! USL fit and an N+1 plan. [`Lab`] runs it on anything that is a
//! [`Target`] (the engine over HTTP: [`load::Load`]) with, when there is
//! one, its [`Diagnostics`] ([`diag_client::HttpDiagnostics`]). The result
//! is a [`LabReport`], written as `report.json` and rendered by [`html`]
//! and [`summary`]. Starting the targets and the terminal display are the
//! CLI's job; so is the text report of one run ([`text`]), which `hammer
//! attack` and `hammer report` print.
//!
//! It sits on `hammer-engine` (the runs) and `hammer-core` (the maths and
//! the result model); the `hammer` CLI sits above it.

pub mod diag_client;
mod error;
pub mod format;
pub mod html;
pub mod load;
mod method;
pub mod profile;
pub mod server;
pub mod summary;
pub mod sweep;
pub mod text;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use hammer_core::capacity::{Capacity, Judgement, Stop, Usl};
pub use hammer_core::readings::TopFunction;
use hammer_core::result::{Kind, RunResult};
use hammer_core::slo::Slo;
use hammer_engine::EngineError;
use serde::{Deserialize, Serialize};

pub use error::LabError;
use load::Tick;
pub use method::Lab;

/// What the method measures: something that takes requests at a constant
/// rate. [`load::Load`] is the engine over HTTP; tests use a model.
pub trait Target {
    /// Offers `rate` req/s for `warmup` (not measured) and then `measure`,
    /// calling `tick` after each measured second, and returns the measured
    /// part. Setting `stop` ends it early; what ran is still returned.
    fn step(
        &self,
        rate: f64,
        warmup: Duration,
        measure: Duration,
        stop: &Arc<AtomicBool>,
        tick: &mut dyn FnMut(Tick),
    ) -> Result<RunResult, EngineError>;

    /// Runs a closed loop of `connections`, each sending its next request
    /// when the last one ends, for `warmup` (not measured) and then
    /// `measure`; None when the target cannot (no sweep then).
    fn closed_step(
        &self,
        connections: usize,
        warmup: Duration,
        measure: Duration,
        stop: &Arc<AtomicBool>,
    ) -> Option<Result<RunResult, EngineError>> {
        let _ = (connections, warmup, measure, stop);
        None
    }
}

/// What the method asks of a target's diagnostics listener at the knee.
/// Called from a second thread while the knee step runs, hence `Sync`.
pub trait Diagnostics: Sync {
    /// A CPU profile of the next `seconds`, sampled at `hz`, as pprof
    /// protobuf (gzip'd or not).
    fn cpu_profile(&self, seconds: u64, hz: u64) -> Result<Vec<u8>, LabError>;
    /// A trace of the next `seconds` (Chrome trace-event JSON).
    fn trace(&self, seconds: u64) -> Result<Vec<u8>, LabError>;
    /// A wall profile of the next `seconds`: folded stacks of span names,
    /// nanoseconds of self time each (hammer-diag's `/debug/pprof/wall`).
    fn wall_profile(&self, seconds: u64) -> Result<Vec<u8>, LabError>;
    /// CPU seconds the service has used so far (None when it does not say).
    fn cpu_seconds(&self) -> Option<f64>;
    /// The service's metrics now, as Prometheus text (its `/metrics`),
    /// scraped once a second during each step for its own view of it.
    fn metrics(&self) -> Result<String, LabError> {
        Err(LabError::Fetch {
            url: "/metrics".into(),
            reason: "this diagnostics listener has no metrics".into(),
        })
    }
}

/// What the report calls a target.
#[derive(Debug, Clone)]
pub struct About {
    /// Short name for the report (e.g. `mandelweb --pool-size 0`).
    pub name: String,
    /// Used in file names: `a`, `b`, or `target`.
    pub slug: String,
    /// `METHOD URL` as sent.
    pub request: String,
    /// The target's version from its `/info`, when it has one.
    pub version: Option<String>,
}

/// How the method runs, shared by every target of a lab.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SLO each step must keep (it keeps its text).
    pub slo: Slo,
    /// Error rate (fraction) above which a step fails.
    pub max_error_rate: f64,
    /// First step's rate, req/s.
    pub start_rate: f64,
    /// Factor between steps while they pass.
    pub growth: f64,
    /// Bisection stops when the bracket is this narrow (fraction).
    pub precision: f64,
    /// Never offer more than this.
    pub max_rate: f64,
    /// Measured length of a step (at least; see `min_requests`).
    pub step: Duration,
    /// Unmeasured lead-in before each step.
    pub warmup: Duration,
    /// Steps run long enough for this many requests, up to `max_step`.
    pub min_requests: u64,
    /// Upper bound on one step's measured length.
    pub max_step: Duration,
    /// Seconds of CPU profile taken at the knee.
    pub profile_seconds: u64,
    /// Load the capacity plan is for, req/s.
    pub expected_load: Option<f64>,
    /// The latency histogram in the service's `/metrics` that gives its own
    /// view of each step ([`server::DEFAULT_HISTOGRAM`]: hammer-diag's).
    pub server_histogram: String,
    /// Run the closed-loop sweep for the scalability fit ([`sweep`]).
    pub sweep: bool,
    /// The most connections the sweep goes to.
    pub sweep_max: usize,
    /// Measured length of each sweep point.
    pub sweep_step: Duration,
}

/// One measured step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Offered rate, req/s.
    pub rate: f64,
    /// Pass, fail or generator-limited, and why.
    pub judgement: Judgement,
    /// Fewer requests than `min_requests` (the percentile rests on few samples).
    pub low_confidence: bool,
    /// The full result (histograms included; `hammer report` reads it).
    pub result: RunResult,
    /// Per-second rate and latency.
    pub timeline: Vec<Tick>,
    /// The same step as the service saw it, from its `/metrics` (with
    /// `--diag`, when it exports the latency histogram).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<server::ServerView>,
}

/// What was found at the knee.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knee {
    /// The rate profiled (the lowest failing rate).
    pub rate: f64,
    /// The step that ran while profiling.
    pub step: Option<StepRecord>,
    /// File names in the report directory.
    pub profile_file: Option<String>,
    /// Flame graph SVG file.
    pub flamegraph_file: Option<String>,
    /// Trace JSON file (Perfetto / chrome://tracing).
    pub trace_file: Option<String>,
    /// Top functions by self time.
    pub top: Vec<TopFunction>,
    /// Wall-time flame graph SVG file (span stacks, waits included).
    #[serde(default)]
    pub wall_flamegraph_file: Option<String>,
    /// Spans by their own wall time: where requests wait.
    #[serde(default)]
    pub wall_top: Vec<TopFunction>,
    /// The last passing rate, profiled the same way for comparison.
    #[serde(default)]
    pub last_pass_rate: Option<f64>,
    /// Differential CPU flame graph, last pass → knee: what grew.
    #[serde(default)]
    pub diff_flamegraph_file: Option<String>,
    /// Differential wall flame graph, last pass → knee.
    #[serde(default)]
    pub wall_diff_flamegraph_file: Option<String>,
    /// Cores the service kept busy on average during the knee step, from
    /// its `process_cpu_seconds_total` (None when it exports none); well
    /// under 1 means its time goes off the CPU.
    #[serde(default)]
    pub cores_busy: Option<f64>,
    /// The target passed this rate: it is the highest rate tested, profiled
    /// because the search reached --max-rate without a knee (so a
    /// comparison still has the same views of both targets).
    #[serde(default)]
    pub passed: bool,
    /// What went wrong fetching, if anything.
    pub problems: Vec<String>,
}

impl Knee {
    /// "the knee" or "the highest rate tested", for sentences.
    pub fn what(&self) -> &'static str {
        if self.passed {
            "the highest rate tested"
        } else {
            "the knee"
        }
    }
}

/// The N+1 capacity plan.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Plan {
    /// Load to serve, req/s.
    pub expected_load: f64,
    /// Capacity of one instance, req/s.
    pub per_instance: f64,
    /// Instances to carry the load, plus one spare.
    pub instances: u64,
}

/// Everything the method found for one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    /// Short name.
    pub name: String,
    /// `METHOD URL`.
    pub request: String,
    /// The target's version from its `/info`, when it has one.
    #[serde(default)]
    pub version: Option<String>,
    /// The SLO, as written (parsed; in JSON its text).
    pub slo: Slo,
    /// Steps in the order run.
    pub steps: Vec<StepRecord>,
    /// Highest rate that kept the SLO and the failing rate above it.
    pub capacity: Option<Capacity>,
    /// Why the search ended (None: interrupted or out of budget).
    pub stopped: Option<Stop>,
    /// Profile and trace at the knee.
    pub knee: Option<Knee>,
    /// USL fit of throughput against concurrency: the closed-loop sweep's
    /// when it ran, else the open-loop steps' (concurrency by Little's law).
    pub usl: Option<Usl>,
    /// The closed-loop sweep the fit came from, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<sweep::Sweep>,
    /// Instances for the expected load.
    pub plan: Option<Plan>,
    /// Things the reader should know (budget ran out, generator lagged...).
    pub notes: Vec<String>,
}

/// The machine a lab ran on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// hammer's version.
    pub hammer_version: String,
}

impl Machine {
    /// Describes this machine.
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".into(), |(_, v)| v.trim().to_string());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or("unknown".into(), |s| s.trim().to_string()),
            hammer_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The whole lab: `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabReport {
    /// Always [`Kind::Lab`].
    pub kind: Kind,
    /// Unix seconds at the start.
    pub started_unix: f64,
    /// Wall time taken, s.
    pub elapsed_s: f64,
    /// Where it ran.
    pub machine: Machine,
    /// Why these defaults (for the built-in target), shown in the report.
    pub rationale: Option<String>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// One per target (two with --compare).
    pub targets: Vec<TargetReport>,
}

/// What the method tells whoever displays it.
pub trait Observer {
    /// A step at `rate` begins, measured for `measure` after a warm-up.
    fn step_started(&mut self, target: &str, rate: f64, measure: Duration);
    /// One measured second.
    fn tick(&mut self, tick: &Tick);
    /// A step ended.
    fn step_done(&mut self, step: &StepRecord);
    /// Something worth a line (profiling, budget...).
    fn note(&mut self, text: &str);
}
