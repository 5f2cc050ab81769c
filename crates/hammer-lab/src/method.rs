//! Provides [`Lab`], the method run on one target: steps up until the SLO
//! breaks, bisection to the capacity, notes on the search, the USL fit and
//! the N+1 plan, then the knee profiled from the target's diagnostics while
//! the knee rate runs again. Each target's run is a [`Method`] value that
//! holds what its steps share, so no step threads eight parameters.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hammer_core::capacity::{instances_needed, judge, Search, Stop, Usl, Verdict};
use hammer_core::diagnostics::top_functions;
use hammer_core::result::GENERATOR_LIMIT_MS;
use hammer_core::steps::{round_rate, step_length, usl_point};

use crate::server::{self, ServerView};
use crate::sweep;
use crate::{
    profile, About, Diagnostics, Knee, LabError, Observer, Plan, Settings, StepRecord, Target,
    TargetReport,
};

/// Sampling rate of the knee's CPU profile (hammer-diag takes `hz`; Go's
/// net/http/pprof ignores it and samples at 100 Hz).
const PROFILE_HZ: u64 = 499;

/// Functions listed from the knee's profile.
const TOP_FUNCTIONS: usize = 15;

/// The lab: how the method runs, where knee files go, when to stop.
#[derive(Debug, Clone)]
pub struct Lab {
    settings: Settings,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    deadline: Instant,
}

impl Lab {
    /// A lab that writes knee files into `dir`, stops when `stop` is set
    /// (reporting what ran) and starts no step that would end past `deadline`.
    pub fn new(settings: Settings, dir: &Path, stop: Arc<AtomicBool>, deadline: Instant) -> Lab {
        Lab {
            settings,
            dir: dir.to_path_buf(),
            stop,
            deadline,
        }
    }

    /// Runs the method on `target`, profiling its knee through
    /// `diagnostics` when given.
    pub fn run(
        &self,
        about: &About,
        target: &dyn Target,
        diagnostics: Option<&dyn Diagnostics>,
        observer: &mut dyn Observer,
    ) -> Result<TargetReport, LabError> {
        let mut method = Method {
            lab: self,
            about,
            target,
            diagnostics,
            scrape: true,
            scrape_failures: None,
            observer,
            report: TargetReport {
                name: about.name.clone(),
                request: about.request.clone(),
                version: about.version.clone(),
                slo: self.settings.slo_text.clone(),
                steps: Vec::new(),
                capacity: None,
                stopped: None,
                knee: None,
                usl: None,
                sweep: None,
                plan: None,
                notes: Vec::new(),
            },
        };
        method.search()?;
        method.conclude();
        match diagnostics {
            Some(diagnostics) => method.report.knee = method.knee(diagnostics)?,
            None if method.profile_rate().is_some() => method.report.notes.push(
                "no profile at the knee: give --diag URL of the target's diagnostics listener"
                    .into(),
            ),
            None => {}
        }
        method.sweep()?;
        Ok(method.report)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether `length` more of running fits in the budget.
    fn fits(&self, length: Duration) -> bool {
        Instant::now() + length <= self.deadline
    }
}

/// The method on one target, in progress.
struct Method<'a> {
    lab: &'a Lab,
    about: &'a About,
    target: &'a dyn Target,
    diagnostics: Option<&'a dyn Diagnostics>,
    /// Whether steps scrape the service's `/metrics` (no longer once it
    /// turned out to have no such histogram, said in a note).
    scrape: bool,
    /// Steps whose first scrape failed: how many, the first one's rate and why.
    scrape_failures: Option<(usize, f64, String)>,
    observer: &'a mut dyn Observer,
    report: TargetReport,
}

impl Method<'_> {
    /// Steps up, then bisects, until the search ends, the budget runs out
    /// or Ctrl-C.
    fn search(&mut self) -> Result<(), LabError> {
        let s = &self.lab.settings;
        let mut search = Search::new(s.start_rate, s.growth, s.precision, s.max_rate);
        while let Some(rate) = search.next_rate() {
            let rate = round_rate(rate);
            let measure = step_length(rate, s.step, s.min_requests, s.max_step);
            if self.lab.stopped() {
                break;
            }
            if self.report.steps.iter().any(|step| step.rate == rate) {
                self.report.notes.push(format!(
                    "the search came back to {rate} req/s; stopped there"
                ));
                break;
            }
            if !self.lab.fits(s.warmup + measure) {
                self.report.notes.push(format!(
                    "the --budget ran out before the step at {rate} req/s; the search is incomplete"
                ));
                break;
            }
            let step = self.measure(rate, measure)?;
            if self.lab.stopped() {
                self.report.notes.push(format!(
                    "interrupted during the step at {rate} req/s (kept, not judged)"
                ));
                self.report.steps.push(step);
                break;
            }
            search.record(rate, step.judgement.verdict);
            self.report.steps.push(step);
        }
        self.report.stopped = search.stopped();
        self.report.capacity = search.capacity();
        Ok(())
    }

    /// Notes on the search, the USL fit and the N+1 plan.
    fn conclude(&mut self) {
        if let Some((n, rate, why)) = &self.scrape_failures {
            self.report.notes.push(format!(
                "no server-side view of {n} step(s), the first at {rate} req/s: its /metrics could not be read ({why})"
            ));
        }
        server_notes(&mut self.report);
        let report = &mut self.report;
        if report.stopped == Some(Stop::GeneratorLimited) {
            report.notes.push(format!(
                "hammer could not keep its own schedule (lag p99 > {GENERATOR_LIMIT_MS} ms): the capacity \
                 found is a lower bound; run the generator on another machine or with --shard"
            ));
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
        let points: Vec<(f64, f64)> = report
            .steps
            .iter()
            .filter_map(|s| usl_point(&s.result))
            .collect();
        report.usl = Usl::fit(&points);
        report.plan = match (self.lab.settings.expected_load, report.capacity) {
            (Some(expected), Some(c)) if c.rate > 0.0 => Some(Plan {
                expected_load: expected,
                per_instance: c.rate,
                instances: instances_needed(expected, c.rate),
            }),
            _ => None,
        };
    }

    /// The closed-loop sweep for the scalability fit: 1, 2, 4, …
    /// connections until throughput stops growing, errors pass the limit,
    /// --sweep-max, the budget or Ctrl-C; its fit replaces the open-loop
    /// steps' (which stays when the sweep has too few points).
    fn sweep(&mut self) -> Result<(), LabError> {
        let s = &self.lab.settings;
        if !s.sweep || self.lab.stopped() {
            return Ok(());
        }
        let warmup = Duration::from_millis(500);
        let mut points = Vec::new();
        let mut connections = 1;
        let stopped = loop {
            if connections > s.sweep_max {
                break format!("reached --sweep-max {}", s.sweep_max);
            }
            if !self.lab.fits(warmup + s.sweep_step) {
                break "the --budget ran out".to_string();
            }
            if self.lab.stopped() {
                break "interrupted".to_string();
            }
            self.observer.note(&format!(
                "closed loop, {connections} connection(s), {:?}",
                s.sweep_step
            ));
            let Some(result) =
                self.target
                    .closed_step(connections, warmup, s.sweep_step, &self.lab.stop)
            else {
                return Ok(());
            };
            let result = result.map_err(|source| LabError::Sweep {
                connections,
                source,
            })?;
            let point = sweep::SweepPoint::of(connections, &result);
            self.observer.note(&format!(
                "  {connections} connection(s): {:.1} req/s, p99 {:.2} ms, {} failed",
                point.throughput, point.p99_ms, point.failed
            ));
            points.push(point);
            if result.error_rate() > s.max_error_rate {
                break format!(
                    "{:.1}% of requests failed at {connections} connections",
                    100.0 * result.error_rate()
                );
            }
            if sweep::stopped_growing(&points) {
                break "throughput stopped growing".to_string();
            }
            connections *= 2;
        };
        let swept = sweep::Sweep::conclude(points, stopped);
        if swept.usl.is_some() {
            self.report.usl = swept.usl;
        }
        if swept.fit_is_exact() {
            self.report.notes.push(format!(
                "the closed-loop sweep has {} points ({}): the USL curve passes through them \
                 exactly, so its R² says nothing and its predicted peak is a guess; use the \
                 measured peak (a service that sheds load stops the sweep early: its 503s are \
                 failures)",
                swept.points.len(),
                swept.stopped
            ));
        }
        self.report.sweep = Some(swept);
        Ok(())
    }

    /// The first rate where latency broke, even where hammer lagged too:
    /// the target's profile there is still the one to read.
    fn knee_rate(&self) -> Option<f64> {
        self.report
            .steps
            .iter()
            .filter(|s| s.judgement.verdict != Verdict::Pass)
            .map(|s| s.rate)
            .min_by(f64::total_cmp)
    }

    /// The rate to profile: the knee, or when the search reached
    /// --max-rate without one, the highest rate tested (true: it passed).
    fn profile_rate(&self) -> Option<(f64, bool)> {
        if let Some(rate) = self.knee_rate() {
            return Some((rate, false));
        }
        if self.report.stopped != Some(Stop::MaxRate) {
            return None;
        }
        self.last_pass_rate(f64::INFINITY).map(|rate| (rate, true))
    }

    /// Profiles the knee (or the highest rate tested, when there is no
    /// knee below --max-rate) when the budget and Ctrl-C allow.
    fn knee(&mut self, diagnostics: &dyn Diagnostics) -> Result<Option<Knee>, LabError> {
        let Some((rate, passed)) = self.profile_rate() else {
            return Ok(None);
        };
        if self.lab.stopped() {
            return Ok(None);
        }
        let s = &self.lab.settings;
        if !self
            .lab
            .fits(s.warmup + Duration::from_secs(s.profile_seconds + 2))
        {
            self.report
                .notes
                .push("no profile at the knee: the --budget ran out".into());
            return Ok(None);
        }
        let what = if passed {
            "the highest rate tested (no knee below --max-rate)"
        } else {
            "the knee"
        };
        self.observer.note(&format!(
            "profiling {} at {what}, {rate} req/s, for {} s",
            self.about.name, s.profile_seconds
        ));
        let (mut knee, folded) = self.profile_knee(diagnostics, rate, passed)?;
        if !passed {
            self.compare_last_pass(diagnostics, &mut knee, &folded)?;
        }
        Ok(Some(knee))
    }

    /// The highest rate that passed below the knee.
    fn last_pass_rate(&self, knee: f64) -> Option<f64> {
        self.report
            .steps
            .iter()
            .filter(|s| s.judgement.verdict == Verdict::Pass && s.rate < knee)
            .map(|s| s.rate)
            .max_by(f64::total_cmp)
    }

    /// Profiles the last passing rate the same way and draws what grew
    /// from it to the knee, when the budget allows.
    fn compare_last_pass(
        &mut self,
        diagnostics: &dyn Diagnostics,
        knee: &mut Knee,
        at_knee: &Folded,
    ) -> Result<(), LabError> {
        let Some(rate) = self.last_pass_rate(knee.rate) else {
            return Ok(());
        };
        let s = &self.lab.settings;
        if self.lab.stopped() {
            return Ok(());
        }
        if !self
            .lab
            .fits(s.warmup + Duration::from_secs(s.profile_seconds + 2))
        {
            self.report
                .notes
                .push("no profile at the last passing rate (nothing to compare the knee with): the --budget ran out".into());
            return Ok(());
        }
        self.observer.note(&format!(
            "profiling {} at the last passing rate, {rate} req/s, to compare",
            self.about.name
        ));
        let before = self.capture(diagnostics, rate, false)?;
        knee.last_pass_rate = Some(rate);
        let title = |what: &str| {
            format!(
                "{}: {what} from {rate} req/s (passed) to {} req/s (the knee); red grew, blue shrank",
                self.about.name, knee.rate
            )
        };
        let cpu_before = before
            .pprof
            .ok()
            .and_then(|b| profile::folded_stacks(&b).ok());
        match cpu_before {
            Some(a) if !a.is_empty() && !at_knee.cpu.is_empty() => {
                let svg = profile::diff_flame_graph(&a, &at_knee.cpu, &title("CPU"))?;
                knee.diff_flamegraph_file = Some(self.write("diff-flamegraph.svg", &svg)?);
            }
            _ => knee
                .problems
                .push("no CPU profile at the last passing rate to compare with".into()),
        }
        match before.wall.ok().map(|b| folded_lines(&b)) {
            Some(a) if !a.is_empty() && !at_knee.wall.is_empty() => {
                let svg =
                    profile::diff_flame_graph(&a, &at_knee.wall, &title("wall time by span"))?;
                knee.wall_diff_flamegraph_file = Some(self.write("wall-diff.svg", &svg)?);
            }
            _ => knee
                .problems
                .push("no wall profile at the last passing rate to compare with".into()),
        }
        Ok(())
    }

    /// Runs `rate` again while a second thread fetches a CPU profile and,
    /// a second into it, a 1 s trace (with `trace`), then a wall profile
    /// (they share the service's capture window, so they take turns).
    fn capture(
        &mut self,
        diagnostics: &dyn Diagnostics,
        rate: f64,
        trace: bool,
    ) -> Result<Captured, LabError> {
        let secs = self.lab.settings.profile_seconds;
        let lead = self.lab.settings.warmup + Duration::from_millis(500);
        let measure = Duration::from_secs(secs + 1);
        let wall_secs = secs.saturating_sub(2).max(1);
        let cpu_before = diagnostics.cpu_seconds().map(|c| (c, Instant::now()));
        let (step, (pprof, (trace, wall))) = std::thread::scope(|scope| {
            let fetch = scope.spawn(|| {
                std::thread::sleep(lead);
                let windows = scope.spawn(|| {
                    std::thread::sleep(Duration::from_secs(1));
                    let trace = trace.then(|| diagnostics.trace(1));
                    (trace, diagnostics.wall_profile(wall_secs))
                });
                let pprof = diagnostics.cpu_profile(secs, PROFILE_HZ);
                (
                    pprof,
                    windows
                        .join()
                        .unwrap_or_else(|_| (Some(Err(panicked("trace"))), Err(panicked("wall")))),
                )
            });
            let step = self.measure(rate, measure);
            let fetched = fetch.join().unwrap_or_else(|_| {
                (
                    Err(panicked("profile")),
                    (Some(Err(panicked("trace"))), Err(panicked("wall"))),
                )
            });
            (step, fetched)
        });
        let step = step?;
        let cores_busy = cpu_before.and_then(|(before, t0)| {
            let after = diagnostics.cpu_seconds()?;
            Some((after - before) / t0.elapsed().as_secs_f64())
        });
        Ok(Captured {
            step,
            pprof,
            trace,
            wall,
            cores_busy,
        })
    }

    /// Profiles the knee: CPU profile, trace and wall profile, their flame
    /// graphs and top lists; also returns the folded stacks, to compare.
    fn profile_knee(
        &mut self,
        diagnostics: &dyn Diagnostics,
        rate: f64,
        passed: bool,
    ) -> Result<(Knee, Folded), LabError> {
        let captured = self.capture(diagnostics, rate, true)?;
        let mut knee = Knee {
            rate,
            step: Some(captured.step),
            profile_file: None,
            flamegraph_file: None,
            trace_file: None,
            top: Vec::new(),
            wall_flamegraph_file: None,
            wall_top: Vec::new(),
            last_pass_rate: None,
            diff_flamegraph_file: None,
            wall_diff_flamegraph_file: None,
            cores_busy: captured.cores_busy,
            passed,
            problems: Vec::new(),
        };
        let what = knee.what();
        let mut folded = Folded::default();
        match captured.pprof {
            Ok(bytes) => {
                knee.profile_file = Some(self.write("profile.pb.gz", &bytes)?);
                match profile::folded_stacks(&bytes) {
                    Ok(cpu) if !cpu.is_empty() => {
                        knee.top = top_functions(&cpu, TOP_FUNCTIONS);
                        if unnamed(&knee.top) {
                            knee.problems.push(STRIPPED.into());
                        }
                        let title = format!("{} at {rate} req/s ({what})", self.about.name);
                        let svg = profile::flame_graph(&cpu, &title)?;
                        knee.flamegraph_file = Some(self.write("flamegraph.svg", &svg)?);
                        folded.cpu = cpu;
                    }
                    Ok(_) => knee.problems.push(empty_profile(captured.cores_busy)),
                    Err(e) => knee.problems.push(e.to_string()),
                }
            }
            Err(e) => knee.problems.push(format!("CPU profile: {e}")),
        }
        match captured.trace {
            Some(Ok(bytes)) => knee.trace_file = Some(self.write("trace.json", &bytes)?),
            Some(Err(e)) => knee.problems.push(format!("trace: {e}")),
            None => {}
        }
        match captured.wall {
            Ok(bytes) => {
                let wall = folded_lines(&bytes);
                if wall.is_empty() {
                    knee.problems.push(
                        "the wall profile is empty: the service has no spans (hammer-diag's request span and the handler's own)"
                            .into(),
                    );
                } else {
                    knee.wall_top = top_functions(&wall, TOP_FUNCTIONS);
                    let title = format!(
                        "{} at {rate} req/s ({what}): wall time by span",
                        self.about.name
                    );
                    let svg = profile::flame_graph(&wall, &title)?;
                    knee.wall_flamegraph_file = Some(self.write("wall.svg", &svg)?);
                    folded.wall = wall;
                }
            }
            Err(e) => knee.problems.push(format!("wall profile: {e}")),
        }
        Ok((knee, folded))
    }

    /// Runs and judges one step at `rate`, measured for `measure`, while
    /// a second thread scrapes the service's `/metrics` once a second (from
    /// the end of the warm-up to a last scrape after the step) for its own
    /// view of the step.
    fn measure(&mut self, rate: f64, measure: Duration) -> Result<StepRecord, LabError> {
        let s = &self.lab.settings;
        self.observer.step_started(&self.about.name, rate, measure);
        let mut timeline = Vec::new();
        let observer = &mut *self.observer;
        let target = self.target;
        let stop = &self.lab.stop;
        let diagnostics = self.diagnostics.filter(|_| self.scrape);
        let (result, scraped) = std::thread::scope(|scope| {
            let (done, finished) = std::sync::mpsc::channel::<()>();
            let scraper = diagnostics.map(|d| {
                scope.spawn(move || scrape_step(d, &s.server_histogram, s.warmup, &finished))
            });
            let result = target.step(rate, s.warmup, measure, stop, &mut |tick| {
                observer.tick(&tick);
                timeline.push(tick);
            });
            drop(done);
            let scraped = scraper.map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Scraped::Failed("the scraping thread panicked".into())))
            });
            (result, scraped)
        });
        let result = result.map_err(|source| LabError::Step { rate, source })?;
        let server = match scraped {
            Some(Ok(samples)) => ServerView::from_samples(&samples),
            Some(Err(Scraped::NoHistogram)) => {
                self.scrape = false;
                self.report.notes.push(format!(
                    "no server-side view: the service's /metrics has no {} histogram \
                     (name the one it has with --server-histogram)",
                    s.server_histogram
                ));
                None
            }
            Some(Err(Scraped::Failed(why))) => {
                let failed = self.scrape_failures.get_or_insert((0, rate, why));
                failed.0 += 1;
                None
            }
            None => None,
        };
        let step = StepRecord {
            rate,
            judgement: judge(&result, &s.slo, s.max_error_rate),
            low_confidence: result.requests < s.min_requests,
            result,
            timeline,
            server,
        };
        if !self.lab.stopped() {
            self.observer.step_done(&step);
        }
        Ok(step)
    }

    /// Writes `<slug>-<what>` into the report directory; returns its name.
    fn write(&self, what: &str, bytes: &[u8]) -> Result<String, LabError> {
        let name = format!("{}-{what}", self.about.slug);
        let path = self.lab.dir.join(&name);
        std::fs::write(&path, bytes).map_err(LabError::write(path))?;
        Ok(name)
    }
}

/// What a profiled step fetched.
struct Captured {
    step: StepRecord,
    pprof: Result<Vec<u8>, LabError>,
    trace: Option<Result<Vec<u8>, LabError>>,
    wall: Result<Vec<u8>, LabError>,
    cores_busy: Option<f64>,
}

/// Folded stacks of a profiled step, CPU and wall.
#[derive(Default)]
struct Folded {
    cpu: Vec<String>,
    wall: Vec<String>,
}

/// Why a CPU profile may have come back empty, from how busy the service was.
fn empty_profile(cores_busy: Option<f64>) -> String {
    match cores_busy {
        Some(busy) if busy >= 0.2 => format!(
            "the CPU profile has no named frames although the service kept {busy:.2} cores busy: \
             its binaries have no symbol tables (`strip` removes them; `strip --strip-debug` \
             keeps them), so the profiler cannot name a frame"
        ),
        Some(busy) => format!(
            "the CPU profile has no samples: the service kept only {busy:.2} cores busy, so its \
             time went off the CPU (the wall profile shows where)"
        ),
        None => "the CPU profile has no samples (and the service exports no process_cpu_seconds_total to say how busy it was)".into(),
    }
}

/// What a profile of a binary without its symbol table looks like, and why.
const STRIPPED: &str = "the CPU profile names only thread entry points (start_thread, clone3): \
     the service's binary has no symbol table (`strip` removes it; `strip --strip-debug` keeps it), \
     so its own frames have no names";

/// Frames a thread starts in, the only ones left named when the program's
/// own symbols are gone.
const THREAD_ENTRY: [&str; 4] = ["start_thread", "clone3", "clone", "__clone"];

/// Whether a profile's time sits almost all in thread-entry frames: the
/// program's own frames had no names.
fn unnamed(top: &[hammer_core::diagnostics::TopFunction]) -> bool {
    top.first()
        .is_some_and(|f| THREAD_ENTRY.contains(&f.name.as_str()) && f.self_pct > 90.0)
}

/// The non-empty lines of folded-stack text.
fn folded_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

fn panicked(what: &str) -> LabError {
    LabError::Fetch {
        url: what.into(),
        reason: "the fetching thread panicked".into(),
    }
}

/// What the service's own view says that hammer's does not: the lowest rate
/// where hammer's p99 sat far above the service's (time outside the
/// handler), and the first passing step where the service counted far
/// more or fewer requests than hammer sent.
fn server_notes(report: &mut TargetReport) {
    let gap = report
        .steps
        .iter()
        .filter_map(|s| {
            let view = &s.server.as_ref()?.whole;
            let hammer = s.result.latency_ms.p99;
            let gap = server::gap_ms(hammer, view)?;
            Some((s.rate, hammer, view.p99_ms?, view.p99_at_most_ms?, gap))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((rate, hammer, own, at_most, gap)) = gap {
        report.notes.push(format!(
            "from {rate} req/s hammer's p99 ({hammer:.1} ms) is far above the service's own ({own:.1} ms \
             from its histogram, at most {at_most:.0} ms): at least {gap:.1} ms of the slowest requests \
             went outside the handler, in the accept queue, the network or hammer itself"
        ));
    }
    // Counts, not rates: the service's window runs from the end of the
    // warm-up to a scrape after the step's last answer, hammer's over the
    // requests it sent in the measured part; over a passing step the two
    // hold the same requests.
    let apart = report
        .steps
        .iter()
        .filter(|s| s.judgement.verdict == Verdict::Pass)
        .find_map(|s| {
            let counted = s.server.as_ref()?.whole.requests;
            let sent = s.result.requests as f64;
            ((counted - sent).abs() > (0.1 * sent).max(20.0)).then_some((s.rate, counted, sent))
        });
    if let Some((rate, counted, sent)) = apart {
        report.notes.push(format!(
            "at {rate} req/s the service counted {counted:.0} requests while hammer sent {sent:.0}: \
             something between them (another client, a proxy, requests its histogram does not see) \
             makes the two views differ"
        ));
    }
}

/// Why a step has no server-side view.
enum Scraped {
    /// The service exports no such histogram.
    NoHistogram,
    /// Its `/metrics` could not be read at the start of the step.
    Failed(String),
}

/// Scrapes `/metrics` at the end of the warm-up, then once a second, then
/// once more when `finished` says the step is over (or hangs up). A scrape
/// that fails after the first is skipped: an overloaded service may answer
/// its diagnostics late, and the view then rests on the scrapes it answered.
fn scrape_step(
    diagnostics: &dyn Diagnostics,
    histogram: &str,
    warmup: Duration,
    finished: &std::sync::mpsc::Receiver<()>,
) -> Result<Vec<server::Sample>, Scraped> {
    use std::sync::mpsc::RecvTimeoutError;
    let over =
        |wait: Duration| !matches!(finished.recv_timeout(wait), Err(RecvTimeoutError::Timeout));
    let scrape = || {
        let text = diagnostics
            .metrics()
            .map_err(|e| Scraped::Failed(e.to_string()))?;
        server::Sample::parse(&text, histogram, Instant::now()).ok_or(Scraped::NoHistogram)
    };
    let mut done = over(warmup);
    let mut samples = vec![scrape()?];
    let mut next = Instant::now();
    loop {
        // The last scrape is the one after the step ended.
        if !done {
            next += Duration::from_secs(1);
            done = over(next.saturating_duration_since(Instant::now()));
        }
        if let Ok(sample) = scrape() {
            samples.push(sample);
        }
        if done {
            return Ok(samples);
        }
    }
}
