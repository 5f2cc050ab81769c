//! Provides `hammer lab`: resolve the flags, start the built-in target(s)
//! when no URL is given (mandelweb in a child process of this binary, on
//! free loopback ports with its diagnostics listener), run the method of
//! [`hammer_lab::Lab`] with a progress display, and write `report.json`,
//! `index.html` and the summary. Ctrl-C stops it with the report of what ran.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hammer_core::result::Kind;
use hammer_core::slo::Slo;
use hammer_core::targets::{parse_header, Target};
use hammer_engine::nofile;
use hammer_engine::request::{prepare, Loaded};
use hammer_engine::tls::{Tls, TlsOptions};
use hammer_lab::diag_client::{HttpDiagnostics, Trust};
use hammer_lab::load::{Load, Tick};
use hammer_lab::{html, summary, About, Lab, LabReport, Machine, Observer, StepRecord};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{bad_input, print_stdout, Exit};
use crate::cli::LabArgs;

const FIND_BY_AGE_BODY: &[u8] = br#"{"age": 300}"#;

/// Runs `hammer lab`.
pub fn run(args: LabArgs) -> Result<Exit> {
    let started = Instant::now();
    let deadline = started + args.budget;
    let settings = settings(&args)?;
    // The connection cap every step may use, once the open-file limit is raised.
    let connections = nofile::max_connections(nofile::raise_nofile())
        .map_or(10_000, |m| usize::try_from(m).unwrap_or(10_000).min(10_000));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let (stop, interrupted) = super::on_ctrl_c();

    let specs = target_specs(&args)?;
    let live = crate::live::Live::from_flag(args.metrics_listen.as_deref(), None, args.quiet)?;
    let mut display = Display::new(args.quiet);
    let mut report = LabReport {
        kind: Kind::Lab,
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        elapsed_s: 0.0,
        machine: Machine::this(),
        rationale: rationale(&args, &settings),
        interrupted: false,
        targets: Vec::new(),
    };
    let lab = Lab::new(settings, &args.out, stop.clone(), deadline);
    for spec in &specs {
        // Started one at a time, so two built-in targets never share the CPU.
        let (mut target, _service) = spec.start(&args, connections)?;
        target.load.watcher = live
            .as_ref()
            .map(|l| l.clone() as Arc<dyn hammer_lab::load::Watcher>);
        let diagnostics = target
            .diag
            .as_ref()
            .map(|d| d as &dyn hammer_lab::Diagnostics);
        let found = lab.run(&target.about, &target.load, diagnostics, &mut display)?;
        report.targets.push(found);
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    display.finish();
    report.interrupted = interrupted.load(Ordering::SeqCst);
    report.elapsed_s = started.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&report)? + "\n";
    std::fs::write(args.out.join("report.json"), json).context("writing report.json")?;
    html::write(&report, &args.out)?;
    print_stdout(&format!(
        "{}\nreport: {}\n",
        summary::render(&report),
        args.out.join("index.html").display()
    ))?;
    if let Some(live) = &live {
        live.linger(args.metrics_linger, args.quiet);
    }
    Ok(if report.interrupted {
        Exit::Interrupted
    } else {
        Exit::Ok
    })
}

fn percent(text: &str, flag: &str) -> Result<f64> {
    let t = text.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (t, 1.0),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|v| v * scale)
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1.0)
        .ok_or_else(|| bad_input(format!("bad {flag} {text:?}: use a percentage like 5%")))
}

fn settings(args: &LabArgs) -> Result<hammer_lab::Settings> {
    let slo = Slo::parse(&args.slo).map_err(|e| bad_input(e.to_string()))?;
    let precision = percent(&args.precision, "--precision")?;
    if precision < 0.01 {
        return Err(bad_input(
            "--precision below 1% would outrun the noise of any machine",
        ));
    }
    if !(args.growth > 1.0 && args.growth.is_finite()) {
        return Err(bad_input("--growth must be above 1"));
    }
    if args.max_rate.is_nan() || args.max_rate <= 0.0 {
        return Err(bad_input("--max-rate must be positive"));
    }
    if args.step.is_zero() {
        return Err(bad_input("--step must be longer than zero"));
    }
    if args.compare.len() == 2 && args.target.is_some() {
        return Err(bad_input("give either --target or --compare A B, not both"));
    }
    let find_by_age = args.target.is_none() && args.database_url.is_some();
    let start_rate = args
        .start_rate
        .unwrap_or(if find_by_age { 250.0 } else { 50.0 });
    if !(start_rate > 0.0 && start_rate.is_finite()) {
        return Err(bad_input("--start-rate must be positive"));
    }
    let builtin = args.target.is_none() && args.compare.iter().all(|c| !c.starts_with("http"));
    let expected_load = args.expected_load.or(match (builtin, find_by_age) {
        (true, true) => Some(10_000.0),
        (true, false) => Some(1_000.0),
        _ => None,
    });
    Ok(hammer_lab::Settings {
        slo,
        max_error_rate: percent(&args.max_error_rate, "--max-error-rate")?,
        start_rate,
        growth: args.growth,
        precision,
        max_rate: args.max_rate,
        step: args.step,
        warmup: args.warmup,
        min_requests: args.min_requests,
        max_step: args.step * 3,
        profile_seconds: args.profile_seconds.clamp(1, 300),
        expected_load,
        server_histogram: args.server_histogram.clone(),
        sweep: !args.no_sweep,
        sweep_max: args.sweep_max.max(1),
        sweep_step: args.sweep_step.max(Duration::from_millis(200)),
    })
}

fn rationale(args: &LabArgs, settings: &hammer_lab::Settings) -> Option<String> {
    if args.target.is_some() || args.compare.iter().any(|c| c.starts_with("http")) {
        return None;
    }
    let plan = settings
        .expected_load
        .map_or(String::new(), |l| format!(" The plan is for {l:.0} req/s."));
    Some(if args.database_url.is_some() {
        format!(
            "Built-in target: mandelweb POST /find-by-age with the seed's no-match body {{\"age\": 300}} \
             against PostgreSQL, SLO {} as in the seed.{plan}",
            settings.slo
        )
    } else {
        format!(
            "Built-in target: mandelweb GET /mandelbrot, the original Mandelweb's default view \
             (512×512 pixels, 1000 iterations), about 7 ms of CPU across 2 cores per render. SLO {}: \
             the seed's interactive budget, which leaves room for about 8 renders of queueing, so it \
             breaks where the CPU saturates, not on the first slow render. Expected load 1,000 req/s \
             (a busy image endpoint) makes the N+1 plan a real choice of instance count.{plan}",
            settings.slo
        )
    })
}

/// A target as the user named it, before it runs.
enum Spec {
    /// The built-in mandelweb with these extra flags.
    Builtin {
        name: String,
        slug: String,
        flags: Vec<String>,
    },
    /// A URL the user runs.
    Url {
        name: String,
        slug: String,
        url: String,
        diag: Option<String>,
    },
}

fn target_specs(args: &LabArgs) -> Result<Vec<Spec>> {
    let one = |text: &str, slug: &str| -> Spec {
        if text.starts_with("http://") || text.starts_with("https://") {
            Spec::Url {
                name: text.to_string(),
                slug: slug.into(),
                url: text.to_string(),
                diag: None,
            }
        } else {
            Spec::Builtin {
                name: format!("mandelweb {text}").trim().to_string(),
                slug: slug.into(),
                flags: text.split_whitespace().map(String::from).collect(),
            }
        }
    };
    Ok(match (&args.target, args.compare.as_slice()) {
        (Some(url), _) => vec![Spec::Url {
            name: url.clone(),
            slug: "target".into(),
            url: url.clone(),
            diag: args.diag.clone(),
        }],
        (None, [a, b]) => vec![one(a, "a"), one(b, "b")],
        _ => vec![one("", "target")],
    })
}

/// A target ready for the method.
struct Started {
    about: About,
    load: Load,
    diag: Option<HttpDiagnostics>,
}

/// The built-in target's process, killed on drop.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Spec {
    /// Starts the target if it is built in, checks it answers, and builds
    /// what the method needs.
    fn start(&self, args: &LabArgs, connections: usize) -> Result<(Started, Option<Service>)> {
        let (name, slug, url, diag, service) = match self {
            Spec::Url {
                name,
                slug,
                url,
                diag,
            } => (name, slug, url.clone(), diag.clone(), None),
            Spec::Builtin { name, slug, flags } => {
                let (service, public, diag) =
                    spawn_mandelweb(args, flags, &args.out.join(format!("{slug}-service.log")))?;
                let path = if args.database_url.is_some() {
                    "find-by-age"
                } else {
                    "mandelbrot"
                };
                (
                    name,
                    slug,
                    format!("{public}{path}"),
                    Some(diag),
                    Some(service),
                )
            }
        };
        let builtin_db = service.is_some() && args.database_url.is_some();
        let method = args
            .method
            .clone()
            .unwrap_or_else(|| if builtin_db { "POST" } else { "GET" }.into());
        let mut headers = args
            .headers
            .iter()
            .map(|h| {
                parse_header(h)
                    .ok_or_else(|| bad_input(format!("bad header {h:?}: use 'Name: value'")))
            })
            .collect::<Result<Vec<_>>>()?;
        let body = match &args.body {
            Some(p) => std::fs::read(p)
                .map_err(|e| bad_input(format!("cannot read body file {}: {e}", p.display())))?,
            None if builtin_db => {
                headers.push(("Content-Type".into(), "application/json".into()));
                FIND_BY_AGE_BODY.to_vec()
            }
            None => Vec::new(),
        };
        let loaded = Loaded {
            target: Target {
                method: method.clone(),
                url: url.clone(),
                headers,
                body: args.body.clone(),
            },
            body,
        };
        let (origin, requests) = prepare(&[loaded], true).map_err(|e| bad_input(e.to_string()))?;
        let options = TlsOptions {
            insecure: args.insecure,
            ca_file: args.cacert.clone(),
            alpn: vec![if args.http2 {
                b"h2".to_vec()
            } else {
                b"http/1.1".to_vec()
            }],
            alpn_required: args.http2,
            ..TlsOptions::default()
        };
        if args.http2 && !origin.https {
            hammer_engine::probe_h2c(origin.addr, Duration::from_secs(3))
                .map_err(|e| bad_input(e.to_string()))?;
        }
        let tls = origin
            .https
            .then(|| Tls::new(&origin.host, &options))
            .transpose()
            .map_err(|e| bad_input(e.to_string()))?;
        if let Some(tls) = &tls {
            tls.preflight(origin.addr, Duration::from_secs(3))
                .map_err(|e| bad_input(e.to_string()))?;
        }
        let https_diag = diag.as_deref().is_some_and(|d| d.starts_with("https://"));
        let trust = if origin.https || https_diag {
            Trust::new(&options).map_err(|e| bad_input(e.to_string()))?
        } else {
            Trust::default()
        };
        let load = Load {
            addr: origin.addr,
            requests,
            timeout: args.timeout,
            connections,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            tls,
            h2_streams: args.http2.then_some(H2_STREAMS),
            watcher: None,
        };
        let started = Started {
            about: About {
                name: name.clone(),
                slug: slug.clone(),
                request: format!("{method} {url}"),
                version: info_version(&origin.display, &trust),
            },
            load,
            diag: diag
                .as_deref()
                .map(|d| HttpDiagnostics::new(d, trust.clone())),
        };
        probe(&started, args, builtin_db)?;
        Ok((started, service))
    }
}

/// HTTP/2 streams per connection in the lab (fewer if the server says so).
const H2_STREAMS: usize = 100;

/// The version a hammer-diag (or Uptime-style) service reports at `/info`.
fn info_version(origin: &str, trust: &Trust) -> Option<String> {
    let body =
        hammer_lab::diag_client::get(&format!("{origin}/info"), Duration::from_secs(2), trust)
            .ok()?;
    let info: serde_json::Value = serde_json::from_slice(&body).ok()?;
    info["version"].as_str().map(String::from)
}

/// Starts `hammer mandelweb ...` and reads the two addresses it prints.
/// mandelweb's readiness line.
#[derive(serde::Deserialize)]
struct Ready {
    listening: String,
    diagnostics: String,
}

fn ready(line: std::io::Result<Option<String>>, log: &Path) -> Result<Ready> {
    let line =
        line?.ok_or_else(|| anyhow::anyhow!("mandelweb exited at start; see {}", log.display()))?;
    serde_json::from_str(&line).with_context(|| format!("mandelweb's readiness line {line:?}"))
}

fn spawn_mandelweb(
    args: &LabArgs,
    flags: &[String],
    log: &Path,
) -> Result<(Service, String, String)> {
    let exe = std::env::current_exe().context("finding hammer's own executable")?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "mandelweb",
        "--listen",
        "127.0.0.1:0",
        "--diag-listen",
        "127.0.0.1:0",
    ]);
    if let Some(db) = &args.database_url {
        cmd.args(["--database-url", db]);
    }
    cmd.args(flags);
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the built-in mandelweb")?;
    // The built-in target shares this machine with the generator: a little
    // less priority keeps its renders from making hammer late for its own
    // schedule (best effort; the service still gets every idle cycle).
    let pid = rustix::process::Pid::from_child(&child);
    let _ = rustix::process::setpriority_process(Some(pid), 5);
    let stdout = child.stdout.take().expect("piped");
    let mut service = Service(child);
    let mut lines = BufReader::new(stdout).lines();
    match ready(lines.next().transpose(), log) {
        Ok(r) => Ok((
            service,
            r.listening,
            r.diagnostics.trim_end_matches('/').to_string(),
        )),
        Err(e) => {
            let _ = service.0.kill();
            let _ = service.0.wait();
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            Err(bad_input(format!("{e}: {}", log_text.trim())))
        }
    }
}

/// One request before any step: the target must answer 2xx. The built-in
/// find-by-age target gets its table seeded when it is missing.
fn probe(target: &Started, args: &LabArgs, builtin_db: bool) -> Result<()> {
    // Whether one request succeeded, and else what came back.
    let once = || -> Result<(bool, String)> {
        let load = Load {
            connections: 1,
            workers: 1,
            watcher: None,
            ..target.load.clone()
        };
        let r = hammer_lab::load::run_step(
            &load,
            5.0,
            Duration::ZERO,
            Duration::from_millis(200),
            &Arc::new(AtomicBool::new(false)),
            |_| {},
        )?;
        let status = r.status_codes.keys().next().cloned().unwrap_or_default();
        let errors: Vec<String> = r
            .errors
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, _)| k.clone())
            .collect();
        Ok((
            r.succeeded > 0,
            if errors.is_empty() {
                status
            } else {
                errors.join(", ")
            },
        ))
    };
    let (ok, what) = once()?;
    if ok {
        return Ok(());
    }
    if builtin_db && what == "500" {
        eprintln!("hammer lab: seeding the people table (100,000 rows) for find-by-age");
        let exe = std::env::current_exe()?;
        let out = Command::new(exe)
            .args(["mandelweb", "seed-db", "--rows", "100000", "--database-url"])
            .arg(args.database_url.as_deref().unwrap_or_default())
            .output()
            .context("seeding the database")?;
        if !out.status.success() {
            return Err(bad_input(format!(
                "seeding {} failed: {}",
                args.database_url.as_deref().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if once()?.0 {
            return Ok(());
        }
    }
    Err(bad_input(format!(
        "{} does not answer with success before the lab starts (got {what}); fix the target or the request",
        target.about.request
    )))
}

/// The terminal display: a bar per step, a line per finished step.
struct Display {
    bar: ProgressBar,
    quiet: bool,
    step: usize,
}

impl Display {
    fn new(quiet: bool) -> Display {
        let bar = ProgressBar::new(0);
        bar.set_draw_target(if !quiet && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{wide_bar}] {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        Display {
            bar,
            quiet,
            step: 0,
        }
    }

    fn line(&self, text: &str) {
        if !self.quiet {
            self.bar.suspend(|| eprintln!("{text}"));
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Display {
    fn step_started(&mut self, target: &str, rate: f64, measure: Duration) {
        self.step += 1;
        self.bar.set_length(measure.as_secs().max(1));
        self.bar.set_position(0);
        self.bar
            .set_prefix(format!("{target}: step {} at {rate} req/s", self.step));
        self.bar.set_message("warming up");
    }

    fn tick(&mut self, tick: &Tick) {
        self.bar.set_position(tick.t_s as u64);
        self.bar.set_message(format!(
            "{:.0} req/s  p99 {:.2} ms  failed {}",
            tick.rate, tick.p99_ms, tick.errors
        ));
    }

    fn step_done(&mut self, step: &StepRecord) {
        let verdict = step.judgement.describe();
        // The service's own p99 beside hammer's, when it has a histogram.
        let own = step
            .server
            .as_ref()
            .and_then(|v| v.whole.p99_bucket())
            .map_or(String::new(), |p99| format!(" (service's own {p99} ms)"));
        self.line(&format!(
            "  {:>9} req/s: achieved {:.1}, p99 {:.2} ms{own}, {} failed: {verdict}",
            step.rate, step.result.achieved_rate, step.result.latency_ms.p99, step.result.failed
        ));
    }

    fn note(&mut self, text: &str) {
        self.line(&format!("  {text}"));
    }
}
