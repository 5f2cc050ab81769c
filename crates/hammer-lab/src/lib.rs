//! Provides `hammer lab`'s method, the seeds' SRE tuning loop as code: for
//! each target, constant-rate steps that grow geometrically until the SLO
//! breaks, bisection to the capacity ([`hammer_core::capacity::Search`]),
//! a CPU profile and trace from the diagnostics listener at the knee, a
//! USL fit and an N+1 plan. The result is a [`LabReport`], written as
//! `report.json` and rendered by [`html`] and [`summary`]. Starting the
//! targets and the terminal display are the CLI's job; so is the text
//! report of one run ([`text`]), which `hammer attack` and `hammer report`
//! print.

pub mod format;
pub mod html;
pub mod profile;
pub mod step;
pub mod summary;
pub mod text;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hammer_core::capacity::{
    instances_needed, judge, Capacity, Judgement, Search, Stop, Usl, Verdict,
};
use hammer_core::result::{Kind, RunResult, GENERATOR_LIMIT_MS};
use hammer_core::slo::Slo;
use serde::{Deserialize, Serialize};

use profile::TopFunction;
use step::{run_step, Load, Tick};

/// How the method runs, shared by every target of a lab.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SLO each step must keep, as written.
    pub slo_text: String,
    /// The SLO, parsed.
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
}

/// One target to run the method on.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Short name for the report (e.g. `mandelweb --pool-size 0`).
    pub name: String,
    /// Used in file names: `a`, `b`, or `target`.
    pub slug: String,
    /// `METHOD URL` as sent.
    pub request: String,
    /// The target's version from its `/info`, when it has one.
    pub version: Option<String>,
    /// Diagnostics listener base URL (`http://127.0.0.1:6060`), if any.
    pub diag: Option<String>,
    /// Where and what to send.
    pub load: Load,
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
    /// Cores the service kept busy on average during the knee step, from
    /// its `process_cpu_seconds_total` (None when it exports none); well
    /// under 1 means its time goes off the CPU.
    #[serde(default)]
    pub cores_busy: Option<f64>,
    /// What went wrong fetching, if anything.
    pub problems: Vec<String>,
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
    /// The SLO, as written.
    pub slo: String,
    /// Steps in the order run.
    pub steps: Vec<StepRecord>,
    /// Highest rate that kept the SLO and the failing rate above it.
    pub capacity: Option<Capacity>,
    /// Why the search ended (None: interrupted or out of budget).
    pub stopped: Option<Stop>,
    /// Profile and trace at the knee.
    pub knee: Option<Knee>,
    /// USL fit of concurrency (Little's law) against throughput.
    pub usl: Option<Usl>,
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

/// Runs the method on one target, writing knee files into `dir`.
pub fn run_target(
    spec: &TargetSpec,
    settings: &Settings,
    dir: &Path,
    stop: &Arc<AtomicBool>,
    deadline: Instant,
    observer: &mut dyn Observer,
) -> Result<TargetReport> {
    let mut search = Search::new(
        settings.start_rate,
        settings.growth,
        settings.precision,
        settings.max_rate,
    );
    let mut report = TargetReport {
        name: spec.name.clone(),
        request: spec.request.clone(),
        version: spec.version.clone(),
        slo: settings.slo_text.clone(),
        steps: Vec::new(),
        capacity: None,
        stopped: None,
        knee: None,
        usl: None,
        plan: None,
        notes: Vec::new(),
    };
    while let Some(rate) = search.next_rate() {
        let rate = round_rate(rate);
        let measure = step_length(settings, rate);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if report.steps.iter().any(|s| s.rate == rate) {
            report.notes.push(format!(
                "the search came back to {rate} req/s; stopped there"
            ));
            break;
        }
        if Instant::now() + settings.warmup + measure > deadline {
            report.notes.push(format!(
                "the --budget ran out before the step at {rate} req/s; the search is incomplete"
            ));
            break;
        }
        observer.step_started(&spec.name, rate, measure);
        let step = measure_step(spec, settings, rate, measure, stop, observer)?;
        if stop.load(Ordering::SeqCst) {
            report.notes.push(format!(
                "interrupted during the step at {rate} req/s (kept, not judged)"
            ));
            report.steps.push(step);
            break;
        }
        observer.step_done(&step);
        search.record(rate, step.judgement.verdict);
        report.steps.push(step);
    }
    report.stopped = search.stopped();
    report.capacity = search.capacity();
    conclude(&mut report, settings);
    if let Some(diag) = &spec.diag {
        report.knee = knee_if_due(
            spec,
            settings,
            diag,
            &mut report,
            dir,
            stop,
            deadline,
            observer,
        )?;
    } else if report
        .steps
        .iter()
        .any(|s| s.judgement.verdict == Verdict::Fail)
    {
        report.notes.push(
            "no profile at the knee: give --diag URL of the target's diagnostics listener".into(),
        );
    }
    Ok(report)
}

/// Notes on the search, the USL fit and the N+1 plan.
fn conclude(report: &mut TargetReport, settings: &Settings) {
    if report.stopped == Some(Stop::GeneratorLimited) {
        report.notes.push(
            format!(
                "hammer could not keep its own schedule (lag p99 > {GENERATOR_LIMIT_MS} ms): the capacity \
                 found is a lower bound; run the generator on another machine or with --shard"
            ),
        );
    }
    if report
        .steps
        .iter()
        .any(|s| s.judgement.generator_lagged && s.judgement.verdict == Verdict::Pass)
    {
        report.notes.push(format!(
            "some passing steps had hammer lagging its schedule by > {GENERATOR_LIMIT_MS} ms p99 \
                 (their latency is, if anything, overstated)"
        ));
    }
    report.usl = Usl::fit(&usl_points(&report.steps));
    report.plan = match (settings.expected_load, report.capacity) {
        (Some(expected), Some(c)) if c.rate > 0.0 => Some(Plan {
            expected_load: expected,
            per_instance: c.rate,
            instances: instances_needed(expected, c.rate),
        }),
        _ => None,
    };
}

/// Profiles the lowest failing rate when there is one and the budget and
/// Ctrl-C allow.
#[allow(clippy::too_many_arguments)]
fn knee_if_due(
    spec: &TargetSpec,
    settings: &Settings,
    diag: &str,
    report: &mut TargetReport,
    dir: &Path,
    stop: &Arc<AtomicBool>,
    deadline: Instant,
    observer: &mut dyn Observer,
) -> Result<Option<Knee>> {
    // The first rate where latency broke, even where hammer lagged too:
    // the target's profile there is still the one to read.
    let knee_rate = report
        .steps
        .iter()
        .filter(|s| s.judgement.verdict != Verdict::Pass)
        .map(|s| s.rate)
        .min_by(f64::total_cmp);
    let Some(rate) = knee_rate else {
        return Ok(None);
    };
    if stop.load(Ordering::SeqCst) {
        return Ok(None);
    }
    let needed = settings.warmup + Duration::from_secs(settings.profile_seconds + 2);
    if Instant::now() + needed > deadline {
        report
            .notes
            .push("no profile at the knee: the --budget ran out".into());
        return Ok(None);
    }
    observer.note(&format!(
        "profiling {} at the knee, {rate} req/s, for {} s",
        spec.name, settings.profile_seconds
    ));
    profile_knee(spec, settings, diag, rate, dir, stop, observer).map(Some)
}

fn measure_step(
    spec: &TargetSpec,
    settings: &Settings,
    rate: f64,
    measure: Duration,
    stop: &Arc<AtomicBool>,
    observer: &mut dyn Observer,
) -> Result<StepRecord> {
    let (result, timeline) = run_step(&spec.load, rate, settings.warmup, measure, stop, |t| {
        observer.tick(t)
    })
    .with_context(|| format!("running the step at {rate} req/s"))?;
    let judgement = judge(&result, &settings.slo, settings.max_error_rate);
    Ok(StepRecord {
        rate,
        low_confidence: result.requests < settings.min_requests,
        judgement,
        result,
        timeline,
    })
}

/// Runs the knee rate while fetching a CPU profile and a 1 s trace.
fn profile_knee(
    spec: &TargetSpec,
    settings: &Settings,
    diag: &str,
    rate: f64,
    dir: &Path,
    stop: &Arc<AtomicBool>,
    observer: &mut dyn Observer,
) -> Result<Knee> {
    let secs = settings.profile_seconds;
    let base = diag.trim_end_matches('/').to_string();
    let lead = settings.warmup + Duration::from_millis(500);
    let fetcher = std::thread::spawn(move || {
        std::thread::sleep(lead);
        let timeout = Duration::from_secs(secs + 10);
        let trace_url = format!("{base}/debug/pprof/trace?seconds=1");
        let trace = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            profile::get(&trace_url, Duration::from_secs(15))
        });
        let pprof = profile::get(
            &format!("{base}/debug/pprof/profile?seconds={secs}&hz={PROFILE_HZ}"),
            timeout,
        );
        let trace = trace
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("trace fetch panicked")));
        (pprof, trace)
    });
    let measure = Duration::from_secs(secs + 1);
    let metrics_url = format!("{}/metrics", diag.trim_end_matches('/'));
    let cpu_before = process_cpu(&metrics_url).map(|c| (c, Instant::now()));
    observer.step_started(&spec.name, rate, measure);
    let step = measure_step(spec, settings, rate, measure, stop, observer)?;
    observer.step_done(&step);
    let cores_busy = cpu_before.and_then(|(before, t0)| {
        let after = process_cpu(&metrics_url)?;
        Some((after - before) / t0.elapsed().as_secs_f64())
    });
    let (pprof, trace) = fetcher
        .join()
        .map_err(|_| anyhow::anyhow!("profile fetch panicked"))?;
    let mut knee = Knee {
        rate,
        step: Some(step),
        profile_file: None,
        flamegraph_file: None,
        trace_file: None,
        top: Vec::new(),
        cores_busy,
        problems: Vec::new(),
    };
    match pprof {
        Ok(bytes) => {
            let name = format!("{}-profile.pb.gz", spec.slug);
            std::fs::write(dir.join(&name), &bytes).with_context(|| format!("writing {name}"))?;
            knee.profile_file = Some(name);
            match profile::folded_stacks(&bytes) {
                Ok(folded) if !folded.is_empty() => {
                    knee.top = profile::top_functions(&folded, 15);
                    let title = format!("{} at {rate} req/s (the knee)", spec.name);
                    let svg = profile::flame_graph(&folded, &title)?;
                    let name = format!("{}-flamegraph.svg", spec.slug);
                    std::fs::write(dir.join(&name), svg)
                        .with_context(|| format!("writing {name}"))?;
                    knee.flamegraph_file = Some(name);
                }
                Ok(_) => knee.problems.push("the profile has no samples".into()),
                Err(e) => knee.problems.push(format!("{e:#}")),
            }
        }
        Err(e) => knee.problems.push(format!("CPU profile: {e:#}")),
    }
    match trace {
        Ok(bytes) => {
            let name = format!("{}-trace.json", spec.slug);
            std::fs::write(dir.join(&name), bytes).with_context(|| format!("writing {name}"))?;
            knee.trace_file = Some(name);
        }
        Err(e) => knee.problems.push(format!("trace: {e:#}")),
    }
    Ok(knee)
}

/// The service's `process_cpu_seconds_total` from its Prometheus metrics.
fn process_cpu(url: &str) -> Option<f64> {
    let text = profile::get(url, Duration::from_secs(5)).ok()?;
    String::from_utf8_lossy(&text).lines().find_map(|l| {
        let value = l.strip_prefix("process_cpu_seconds_total")?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Sampling rate of the knee's CPU profile (hammer-diag takes `hz`; Go's
/// net/http/pprof ignores it and samples at 100 Hz).
const PROFILE_HZ: u64 = 499;

/// Measured length of a step at `rate`.
pub fn step_length(settings: &Settings, rate: f64) -> Duration {
    let for_requests = Duration::from_secs_f64(settings.min_requests as f64 / rate.max(1e-3));
    settings
        .step
        .max(for_requests)
        .min(settings.max_step.max(settings.step))
}

/// Rates shown to three significant figures (bisection makes 137.5, not 137.4999).
fn round_rate(rate: f64) -> f64 {
    if rate <= 0.0 {
        return rate;
    }
    let digits = (rate.log10().floor() as i32 - 2).max(-1);
    // Divide by a power of ten rather than multiply by its inverse: 46 / 10
    // is exactly the double nearest 4.6, 46 * 0.1 is not.
    if digits >= 0 {
        let unit = 10f64.powi(digits);
        (rate / unit).round() * unit
    } else {
        let per = 10f64.powi(-digits);
        (rate * per).round() / per
    }
}

/// (concurrency, throughput) per step: concurrency by Little's law, mean
/// requests in the system = throughput × mean latency.
fn usl_points(steps: &[StepRecord]) -> Vec<(f64, f64)> {
    steps
        .iter()
        .filter(|s| s.result.duration_s > 0.0 && s.result.succeeded > 0)
        .map(|s| {
            let x = s.result.succeeded as f64 / s.result.duration_s;
            (x * s.result.latency_ms.mean / 1000.0, x)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_rounded_to_three_figures() {
        assert_eq!(round_rate(137.4999), 137.0);
        assert_eq!(round_rate(12_345.6), 12_300.0);
        assert_eq!(round_rate(4.5678), 4.6);
        assert_eq!(round_rate(50.0), 50.0);
    }
}
