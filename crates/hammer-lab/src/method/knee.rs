//! Provides the method's knee: which rate to profile, the profiled step
//! (CPU profile, trace and wall profile taken while it runs), and the
//! comparison with the last passing rate (differential flame graphs).

use std::time::{Duration, Instant};

use hammer_core::capacity::{Stop, Verdict};
use hammer_core::readings::top_functions;

use super::{Method, PROFILE_HZ, TOP_FUNCTIONS};
use crate::{profile, Diagnostics, Knee, LabError, StepRecord};

impl Method<'_> {
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
    pub(super) fn profile_rate(&self) -> Option<(f64, bool)> {
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
    pub(super) fn knee(&mut self, diagnostics: &dyn Diagnostics) -> Result<Option<Knee>, LabError> {
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
fn unnamed(top: &[hammer_core::readings::TopFunction]) -> bool {
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
