//! The lab's method against a model target and model diagnostics, without
//! sockets or clocks: a service that answers in 5 ms up to its capacity and
//! in 400 ms above it. The search must bracket the capacity within the
//! precision, profile the knee (the lowest failing rate), write the knee's
//! files, and say why when it cannot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hammer_core::capacity::{Stop, Verdict};
use hammer_core::recorder::Recorder;
use hammer_core::result::{Pacing, RunResult};
use hammer_core::slo::Slo;
use hammer_engine::EngineError;
use hammer_lab::load::Tick;
use hammer_lab::{
    About, Diagnostics, Lab, LabError, Observer, Settings, StepRecord, Target, TargetReport,
};
use pprof::protos::{Function, Line, Location, Message, Profile, Sample};

/// Answers in 5 ms up to `capacity` req/s, in 400 ms above it.
struct Model {
    capacity: f64,
    /// Rates offered, in order, with their warm-up and measured lengths.
    offered: Mutex<Vec<(f64, Duration, Duration)>>,
    /// Sets the stop flag during the step at this rate.
    stop_at: Option<f64>,
    /// From this many connections on, sheds as many requests (503) as it
    /// serves, as a service behind a load-shedding gate does.
    shed_from: Option<usize>,
}

impl Model {
    fn new(capacity: f64) -> Model {
        Model {
            capacity,
            offered: Mutex::new(Vec::new()),
            stop_at: None,
            shed_from: None,
        }
    }
}

impl Target for Model {
    fn step(
        &self,
        rate: f64,
        warmup: Duration,
        measure: Duration,
        stop: &Arc<AtomicBool>,
        tick: &mut dyn FnMut(Tick),
    ) -> Result<RunResult, EngineError> {
        self.offered.lock().unwrap().push((rate, warmup, measure));
        if self.stop_at == Some(rate) {
            stop.store(true, Ordering::SeqCst);
        }
        let latency = if rate <= self.capacity {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(400)
        };
        let mut recorder = Recorder::new();
        let requests = (rate * measure.as_secs_f64()).round() as u64;
        for _ in 0..requests {
            recorder.record_send(Duration::from_micros(50), 100);
            recorder.record_response(200, latency, latency, 1000);
        }
        for s in 1..=measure.as_secs() {
            tick(Tick {
                t_s: s as f64,
                rate,
                p50_ms: latency.as_secs_f64() * 1e3,
                p99_ms: latency.as_secs_f64() * 1e3,
                errors: 0,
            });
        }
        Ok(RunResult::from_recorder(
            &recorder,
            Pacing::Open { rate },
            measure,
        ))
    }

    /// Closed loop: throughput follows the USL with λ = 100 req/s,
    /// σ = 0.05, κ = 0.001 (peak near 31 connections), latency by
    /// Little's law.
    fn closed_step(
        &self,
        connections: usize,
        _warmup: Duration,
        measure: Duration,
        _stop: &Arc<AtomicBool>,
    ) -> Option<Result<RunResult, EngineError>> {
        let usl = |n: f64| 100.0 * n / (1.0 + 0.05 * (n - 1.0) + 0.001 * n * (n - 1.0));
        let shedding = self.shed_from.is_some_and(|from| connections >= from);
        // A service that sheds from `from` connections serves what it
        // served just below, and answers one 503 per success.
        let n = match self.shed_from {
            Some(from) if shedding => (from / 2).max(1) as f64,
            _ => connections as f64,
        };
        let x = usl(n);
        let latency = Duration::from_secs_f64(n / x);
        let mut recorder = Recorder::new();
        for _ in 0..(x * measure.as_secs_f64()).round() as u64 {
            recorder.record_send(Duration::ZERO, 100);
            recorder.record_response(200, latency, latency, 1000);
            if shedding {
                recorder.record_send(Duration::ZERO, 100);
                recorder.record_response(503, Duration::ZERO, Duration::ZERO, 50);
            }
        }
        Some(Ok(RunResult::from_recorder(
            &recorder,
            Pacing::Closed,
            measure,
        )))
    }
}

/// A diagnostics listener whose service burns 0.5 core while profiled.
struct ModelDiagnostics {
    cpu_reads: AtomicU64,
    profiles: AtomicU64,
    fail_profile: bool,
    /// Profiles as of a binary without its symbol table.
    stripped: bool,
    /// Serves a latency histogram: every request handled in 1-10 ms, 1,000
    /// more requests at each scrape.
    metrics: bool,
    scrapes: AtomicU64,
}

impl ModelDiagnostics {
    fn new() -> ModelDiagnostics {
        ModelDiagnostics {
            cpu_reads: AtomicU64::new(0),
            profiles: AtomicU64::new(0),
            fail_profile: false,
            stripped: false,
            metrics: false,
            scrapes: AtomicU64::new(0),
        }
    }
}

impl Diagnostics for ModelDiagnostics {
    fn cpu_profile(&self, seconds: u64, hz: u64) -> Result<Vec<u8>, LabError> {
        assert!(seconds >= 1 && hz >= 1);
        self.profiles.fetch_add(1, Ordering::SeqCst);
        if self.fail_profile {
            return Err(LabError::Fetch {
                url: "model/profile".into(),
                reason: "503: busy".into(),
            });
        }
        if self.stripped {
            return Ok(profile(&[(&["clone3", "start_thread"], 100)]));
        }
        Ok(profile(&[
            (&["main", "serve", "render"], 90),
            (&["main", "accept"], 10),
        ]))
    }

    fn trace(&self, seconds: u64) -> Result<Vec<u8>, LabError> {
        assert_eq!(seconds, 1);
        Ok(br#"{"traceEvents":[]}"#.to_vec())
    }

    fn wall_profile(&self, seconds: u64) -> Result<Vec<u8>, LabError> {
        assert!(seconds >= 1);
        // Requests wait for a connection four times as long as they render.
        Ok(b"request;db.connect 800000000\nrequest;render 200000000\n".to_vec())
    }

    fn metrics(&self) -> Result<String, LabError> {
        if !self.metrics {
            return Ok("# no histogram here\nprocess_cpu_seconds_total 1\n".into());
        }
        let n = 1000 * (self.scrapes.fetch_add(1, Ordering::SeqCst) + 1);
        Ok(format!(
            "# TYPE http_request_duration_seconds histogram\n\
             http_request_duration_seconds_bucket{{le=\"0.001\"}} 0\n\
             http_request_duration_seconds_bucket{{le=\"0.01\"}} {n}\n\
             http_request_duration_seconds_bucket{{le=\"+Inf\"}} {n}\n\
             http_request_duration_seconds_count {n}\n"
        ))
    }

    fn cpu_seconds(&self) -> Option<f64> {
        // 100 CPU-seconds, then 100 more: the knee step took about no time
        // here, so only that a figure came back is checked.
        Some(100.0 * (self.cpu_reads.fetch_add(1, Ordering::SeqCst) + 1) as f64)
    }
}

/// A pprof profile of the given stacks (root first) and sample counts.
fn profile(stacks: &[(&[&str], i64)]) -> Vec<u8> {
    let mut p = Profile::new();
    let mut names: Vec<String> = vec![String::new()];
    let mut id_of = |name: &str, p: &mut Profile| -> u64 {
        if let Some(i) = names.iter().position(|n| n == name) {
            return i as u64;
        }
        names.push(name.to_string());
        let id = (names.len() - 1) as u64;
        let mut f = Function::new();
        f.id = id;
        f.name = id as i64;
        p.function.push(f);
        let mut line = Line::new();
        line.function_id = id;
        let mut l = Location::new();
        l.id = id;
        l.line.push(line);
        p.location.push(l);
        id
    };
    for (stack, count) in stacks {
        let mut s = Sample::new();
        // Leaf first.
        s.location_id = stack.iter().rev().map(|f| id_of(f, &mut p)).collect();
        s.value = vec![*count];
        p.sample.push(s);
    }
    p.string_table = names;
    p.write_to_bytes().unwrap()
}

fn settings() -> Settings {
    Settings {
        slo: Slo::parse("p99 < 60ms").unwrap(),
        max_error_rate: 0.01,
        start_rate: 50.0,
        growth: 2.0,
        precision: 0.05,
        max_rate: 100_000.0,
        step: Duration::from_secs(5),
        warmup: Duration::from_secs(2),
        min_requests: 1000,
        max_step: Duration::from_secs(15),
        profile_seconds: 3,
        expected_load: Some(1000.0),
        server_histogram: hammer_lab::server::DEFAULT_HISTOGRAM.into(),
        sweep: true,
        sweep_max: 256,
        sweep_step: Duration::from_secs(2),
    }
}

fn about() -> About {
    About {
        name: "model".into(),
        slug: "target".into(),
        request: "GET http://model/".into(),
        version: Some("1.0".into()),
    }
}

/// Counts what the method told its observer.
#[derive(Default)]
struct Seen {
    started: Vec<f64>,
    ticks: usize,
    done: Vec<f64>,
    notes: Vec<String>,
}

impl Observer for Seen {
    fn step_started(&mut self, _target: &str, rate: f64, _measure: Duration) {
        self.started.push(rate);
    }
    fn tick(&mut self, _tick: &Tick) {
        self.ticks += 1;
    }
    fn step_done(&mut self, step: &StepRecord) {
        self.done.push(step.rate);
    }
    fn note(&mut self, text: &str) {
        self.notes.push(text.to_string());
    }
}

/// The report's notes that contain `text`.
fn notes_saying<'a>(report: &'a TargetReport, text: &str) -> Vec<&'a String> {
    report.notes.iter().filter(|n| n.contains(text)).collect()
}

fn run(
    settings: Settings,
    budget: Duration,
    target: &Model,
    diagnostics: Option<&dyn Diagnostics>,
    dir: &std::path::Path,
) -> (TargetReport, Seen) {
    let lab = Lab::new(
        settings,
        dir,
        Arc::new(AtomicBool::new(false)),
        Instant::now() + budget,
    );
    let mut seen = Seen::default();
    let report = lab.run(&about(), target, diagnostics, &mut seen).unwrap();
    (report, seen)
}

/// [`run`] with the default settings and all the time it needs.
fn run_through(
    target: &Model,
    diagnostics: Option<&dyn Diagnostics>,
    dir: &std::path::Path,
) -> (TargetReport, Seen) {
    run(
        settings(),
        Duration::from_secs(3600),
        target,
        diagnostics,
        dir,
    )
}

#[test]
fn the_search_brackets_the_capacity_and_profiles_the_knee() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(230.0);
    let diagnostics = ModelDiagnostics::new();
    let (report, seen) = run_through(&model, Some(&diagnostics), dir.path());

    // Up by 2× (50, 100, 200 pass; 400 fails), then bisection to 5%.
    let rates: Vec<f64> = report.steps.iter().map(|s| s.rate).collect();
    assert_eq!(&rates[..4], &[50.0, 100.0, 200.0, 400.0], "{rates:?}");
    let capacity = report.capacity.expect("a capacity");
    let failing = capacity.first_failing.expect("a failing rate above it");
    assert!(capacity.rate <= 230.0 && failing > 230.0, "{capacity:?}");
    assert!(capacity.margin() <= 0.05 + 1e-9, "{capacity:?}");
    assert_eq!(report.stopped, Some(Stop::Converged));
    for step in &report.steps {
        let expected = if step.rate <= 230.0 {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        assert_eq!(step.judgement.verdict, expected, "{}", step.rate);
        // 50 req/s for the 15 s cap is 750 requests, short of 1,000.
        assert_eq!(
            step.low_confidence,
            step.rate == 50.0,
            "{} req/s",
            step.rate
        );
    }
    // Steps run long enough for 1,000 requests, within 15 s; warm-up first.
    let offered = model.offered.lock().unwrap().clone();
    assert_eq!(
        offered[0],
        (50.0, Duration::from_secs(2), Duration::from_secs(15))
    );
    assert_eq!(offered[1].2, Duration::from_secs(10));
    assert_eq!(offered[2].2, Duration::from_secs(5));

    // N+1 for 1,000 req/s.
    let plan = report.plan.expect("a plan");
    assert_eq!(plan.per_instance, capacity.rate);
    assert_eq!(
        plan.instances,
        (1000.0 / capacity.rate).ceil() as u64 + 1,
        "{plan:?}"
    );
    assert!(report.usl.is_some(), "enough steps for a USL fit");

    // The knee is the lowest failing rate, run once more while profiled;
    // then the last passing rate, profiled the same way to compare.
    let knee = report.knee.expect("a knee");
    assert_eq!(knee.rate, failing);
    let n = offered.len();
    assert_eq!(offered[n - 2].0, failing);
    assert_eq!(offered[n - 2].2, Duration::from_secs(3 + 1));
    assert_eq!(offered[n - 1].0, capacity.rate);
    assert_eq!(knee.last_pass_rate, Some(capacity.rate));
    assert!(knee.problems.is_empty(), "{:?}", knee.problems);
    assert_eq!(knee.top[0].name, "render");
    assert_eq!(knee.top[0].self_pct, 90.0);
    assert!(knee.cores_busy.is_some());
    // The wall profile names the wait, and the report says why in a sentence.
    assert_eq!(knee.wall_top[0].name, "db.connect");
    assert_eq!(knee.wall_top[0].self_pct, 80.0);
    let why = hammer_lab::summary::why_line(&knee).unwrap();
    assert!(
        why.contains("`db.connect` (80% of it)") && why.contains("`render` (90%)"),
        "{why}"
    );
    for file in [
        &knee.profile_file,
        &knee.flamegraph_file,
        &knee.wall_flamegraph_file,
        &knee.diff_flamegraph_file,
        &knee.wall_diff_flamegraph_file,
        &knee.trace_file,
    ] {
        let name = file.as_ref().expect("a knee file");
        assert!(name.starts_with("target-"), "{name}");
        assert!(
            dir.path().join(name).metadata().unwrap().len() > 0,
            "{name}"
        );
    }
    // The knee's profile and the last passing rate's.
    assert_eq!(diagnostics.profiles.load(Ordering::SeqCst), 2);

    // The observer saw every step start and end, and their seconds (the
    // two profiled runs included).
    assert_eq!(seen.started.len(), report.steps.len() + 2);
    assert_eq!(seen.done.len(), report.steps.len() + 2);
    assert!(seen.ticks >= 5 * seen.started.len());
    assert!(seen.notes.iter().any(|n| n.contains("profiling model")));
}

#[test]
fn without_diagnostics_or_budget_the_report_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = run_through(&Model::new(120.0), None, dir.path());
    assert!(report.knee.is_none());
    assert!(
        report.notes.iter().any(|n| n.contains("give --diag")),
        "{:?}",
        report.notes
    );

    // The model answers at once, so the budget is checked per step: 6 s
    // is less than the first step's 2 s warm-up and 15 s.
    let model = Model::new(120.0);
    let (report, _) = run(
        settings(),
        Duration::from_secs(6),
        &model,
        Some(&ModelDiagnostics::new()),
        dir.path(),
    );
    assert!(model.offered.lock().unwrap().is_empty());
    assert!(report.capacity.is_none() && report.stopped.is_none());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("--budget ran out before the step at 50 req/s")),
        "{:?}",
        report.notes
    );

    // Steps of 7 s fit in 10 s; a 10 s profile (2 + 10 + 2 s) does not.
    let diagnostics = ModelDiagnostics::new();
    let (report, _) = run(
        Settings {
            start_rate: 200.0,
            profile_seconds: 10,
            ..settings()
        },
        Duration::from_secs(10),
        &Model::new(300.0),
        Some(&diagnostics),
        dir.path(),
    );
    assert!(report.capacity.and_then(|c| c.first_failing).is_some());
    assert!(report.knee.is_none());
    assert_eq!(diagnostics.profiles.load(Ordering::SeqCst), 0);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n == "no profile at the knee: the --budget ran out"),
        "{:?}",
        report.notes
    );
}

/// The knee of a model service of capacity 120 req/s, profiled through
/// `diagnostics`, with time to spare.
fn knee_of(diagnostics: ModelDiagnostics) -> hammer_lab::Knee {
    let dir = tempfile::tempdir().unwrap();
    let (report, _) = run_through(&Model::new(120.0), Some(&diagnostics), dir.path());
    report.knee.expect("a knee")
}

#[test]
fn a_failed_profile_is_a_problem_at_the_knee_not_an_error() {
    let knee = knee_of(ModelDiagnostics {
        fail_profile: true,
        ..ModelDiagnostics::new()
    });
    assert!(knee.profile_file.is_none() && knee.flamegraph_file.is_none());
    assert_eq!(
        knee.problems,
        vec![
            "CPU profile: GET model/profile: 503: busy",
            "no CPU profile at the last passing rate to compare with"
        ]
    );
    assert!(knee.trace_file.is_some());
    // The wall profile and its comparison do not need the CPU profile.
    assert!(knee.wall_diff_flamegraph_file.is_some());
}

/// A service whose binary lost its symbol table gives profiles that name
/// only where threads start: the knee says so, and why.
#[test]
fn a_profile_without_names_is_explained() {
    let knee = knee_of(ModelDiagnostics {
        stripped: true,
        ..ModelDiagnostics::new()
    });
    assert!(
        knee.problems
            .iter()
            .any(|p| p.contains("no symbol table") && p.contains("strip --strip-debug")),
        "{:?}",
        knee.problems
    );
}

#[test]
fn ctrl_c_keeps_the_step_it_stopped_unjudged_and_profiles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model {
        stop_at: Some(200.0),
        ..Model::new(1000.0)
    };
    let diagnostics = ModelDiagnostics::new();
    let (report, seen) = run_through(&model, Some(&diagnostics), dir.path());
    let rates: Vec<f64> = report.steps.iter().map(|s| s.rate).collect();
    assert_eq!(rates, vec![50.0, 100.0, 200.0]);
    assert_eq!(
        seen.done,
        vec![50.0, 100.0],
        "the stopped step is not shown as done"
    );
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("interrupted during the step at 200")));
    assert!(report.knee.is_none());
    assert_eq!(diagnostics.profiles.load(Ordering::SeqCst), 0);
    assert_eq!(report.capacity.map(|c| c.rate), Some(100.0));
}

/// Above capacity the model answers in 400 ms while its own histogram says
/// its handler took at most 10 ms: the lab says the difference went outside
/// the handler, from the lowest rate where it did; each step carries the
/// service's view. A service without the histogram is said once.
#[test]
fn the_service_own_view_flags_time_outside_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(230.0);
    let mut diagnostics = ModelDiagnostics::new();
    diagnostics.metrics = true;
    let (report, _) = run_through(&model, Some(&diagnostics), dir.path());
    for step in &report.steps {
        let view = step.server.as_ref().expect("a server view of every step");
        let own = view.whole.p99_ms.unwrap();
        assert!((own - 9.91).abs() < 0.01, "interpolated p99 {own}");
    }
    let lowest_failing = report.capacity.unwrap().first_failing.unwrap();
    let gap = notes_saying(&report, "outside the handler");
    assert_eq!(gap.len(), 1, "{:?}", report.notes);
    assert!(
        gap[0].starts_with(&format!("from {lowest_failing} req/s hammer's p99 (400.")),
        "{gap:?}"
    );
    assert!(gap[0].contains("own (9.9 ms"), "{gap:?}");

    let without = ModelDiagnostics::new();
    let (report, _) = run_through(&model, Some(&without), dir.path());
    assert!(report.steps.iter().all(|s| s.server.is_none()));
    let said = notes_saying(&report, "no http_request_duration_seconds histogram");
    assert_eq!(said.len(), 1, "{:?}", report.notes);
}

/// A service that sheds load past some concurrency keeps its goodput
/// there: the sweep counts goodput, goes two doublings past the first
/// shedding point, says what share failed at each, and fits five points.
#[test]
fn a_sweep_goes_past_the_first_shedding_and_counts_goodput() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model {
        shed_from: Some(4),
        ..Model::new(230.0)
    };
    let (report, _) = run_through(&model, None, dir.path());
    let sweep = report.sweep.as_ref().expect("a sweep");
    let connections: Vec<usize> = sweep.points.iter().map(|p| p.connections).collect();
    assert_eq!(connections, [1, 2, 4, 8, 16], "{sweep:?}");
    assert!(sweep.stopped.contains("from 4 connections on"), "{sweep:?}");
    for p in &sweep.points {
        let expected = if p.connections >= 4 { 0.5 } else { 0.0 };
        assert!((p.failed_share() - expected).abs() < 0.01, "{p:?}");
    }
    // Goodput: the successes only, flat from 2 connections on.
    let plateau = sweep.points[1].throughput;
    for p in &sweep.points[2..] {
        assert!((p.throughput - plateau).abs() < 0.02 * plateau, "{p:?}");
    }
    assert!(!sweep.fit_is_exact());
    assert!(notes_saying(&report, "passes through them exactly").is_empty());
    let text = hammer_lab::summary::sweep_line(&report).expect("a sweep line");
    assert!(
        text.contains("good req/s by connections: 1: 100, 2: 190, 4: 190 (50.0% failed), 8: 190 (50.0% failed), 16: 190 (50.0% failed)"),
        "{text}"
    );
    let line = hammer_lab::summary::usl_line(&report).expect("a fit");
    assert!(line.contains("R²="), "{line}");
}

/// A sweep of three points (--sweep-max 4): the USL passes through them
/// exactly, and the report says its R² and predicted peak mean nothing
/// rather than print R² = 1.
#[test]
fn a_sweep_of_three_points_says_its_fit_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(230.0);
    let mut settings = settings();
    settings.sweep_max = 4;
    let (report, _) = run(
        settings,
        Duration::from_secs(3600),
        &model,
        None,
        dir.path(),
    );
    let sweep = report.sweep.as_ref().expect("a sweep");
    let connections: Vec<usize> = sweep.points.iter().map(|p| p.connections).collect();
    assert_eq!(connections, [1, 2, 4], "{sweep:?}");
    assert!(sweep.fit_is_exact());
    let said = notes_saying(&report, "passes through them exactly");
    assert_eq!(said.len(), 1, "{:?}", report.notes);
    let line = hammer_lab::summary::usl_line(&report).expect("a fit");
    assert!(
        line.contains("R² says nothing") && !line.contains("R²="),
        "{line}"
    );
}

/// The closed-loop sweep doubles the connections until throughput has not
/// grown for two doublings, and the USL fitted to its points recovers the
/// model's σ and κ, and a peak near the one measured.
#[test]
fn the_closed_loop_sweep_fits_the_usl() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(230.0);
    let (report, _) = run_through(&model, None, dir.path());
    let sweep = report.sweep.expect("a sweep");
    let connections: Vec<usize> = sweep.points.iter().map(|p| p.connections).collect();
    assert_eq!(connections, [1, 2, 4, 8, 16, 32, 64, 128], "{sweep:?}");
    assert_eq!(sweep.stopped, "throughput stopped growing");
    let usl = sweep.usl.expect("a fit");
    assert_eq!(report.usl, Some(usl), "the sweep's fit is the report's");
    assert!((usl.sigma - 0.05).abs() < 0.0025, "{usl:?}");
    assert!((usl.kappa - 0.001).abs() < 0.00005, "{usl:?}");
    assert!(usl.r_squared > 0.999, "{usl:?}");
    let (n, x) = sweep.predicted_peak.expect("a retrograde peak");
    assert!((n - 30.8).abs() < 1.5, "predicted peak at {n}");
    let (measured_n, measured_x) = sweep.measured_peak.unwrap();
    assert_eq!(measured_n, 32);
    assert!(
        (x - measured_x).abs() / measured_x < 0.02,
        "{x} vs {measured_x}"
    );

    let mut no_sweep = settings();
    no_sweep.sweep = false;
    let (report, _) = run(
        no_sweep,
        Duration::from_secs(3600),
        &model,
        None,
        dir.path(),
    );
    assert!(report.sweep.is_none());
}
