//! Provides `hammer attack`: resolve the flags into an engine configuration,
//! check the target answers, run with a progress line, then report.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::progress::{Goal, Progress};
use crate::live::Live;
use anyhow::{Context, Result};
use hammer_core::pacer::{Arrivals, Limit, Share};
use hammer_core::plan::RatePlan;
use hammer_core::result::ShardOf;
use hammer_core::slo::Slo;
use hammer_core::targets::{parse_header, parse_targets, Target};
use hammer_engine::nofile;
use hammer_engine::request::{parse_url, prepare, Loaded, Origin};
use hammer_engine::tls::{Tls, TlsOptions};
use hammer_engine::{Config, Mode, Outcome, Run};
use hammer_lab::text;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;

use super::{bad_input, parse_slo, print_stdout, Exit};
use crate::cli::{Arrivals as ArrivalsArg, AttackArgs, Format, Http2};

const DEFAULT_DURATION: Duration = Duration::from_secs(10);
const CLOSED_DEFAULT_CONNECTIONS: usize = 50;
const OPEN_DEFAULT_CONNECTIONS: usize = 10_000;
/// HTTP/2 streams per connection unless the server allows fewer.
const DEFAULT_STREAMS: usize = 100;

/// A fully resolved attack.
struct Attack {
    config: Config,
    title: String,
    goal: Goal,
    slo: Option<Slo>,
}

/// Runs `hammer attack`.
pub fn run(args: AttackArgs) -> Result<Exit> {
    let nofile = nofile::raise_nofile();
    let mut attack = resolve(&args, nofile::max_connections(nofile))?;
    // Listening before the start: a shard waiting for --start-at is up.
    let live = Live::from_flag(
        args.metrics_listen.as_deref(),
        args.shard.clone(),
        args.quiet,
    )?;
    attack.title += &preflight(&mut attack.config, args.http2)?;
    wait_for_start(args.start_at)?;

    let (stop, interrupted) = super::on_ctrl_c();

    let mut progress = Progress::new(attack.goal, args.quiet);
    // A shard says which, so a merge can tell when one is missing.
    let shard_of = args.shard.is_some().then_some(ShardOf {
        index: attack.config.shard.first,
        count: attack.config.shard.stride,
    });
    let run = Run::start(attack.config, stop).context("starting workers")?;
    let outcome = watch(run, &mut progress, args.hdr_log.as_deref(), live.as_deref())?;
    progress.finish();

    let mut result = outcome.result();
    result.shard = shard_of;
    if let Some(slo) = &attack.slo {
        result.slo = Some(result.judge(slo));
    }
    let json = serde_json::to_string_pretty(&result)? + "\n";
    // The output file first: what ran is never lost to a closed stdout.
    if let Some(path) = &args.output {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    match args.format {
        Format::Text => print_stdout(&text::render(&result, &attack.title))?,
        Format::Json => print_stdout(&json)?,
    }
    if let Some(live) = &live {
        live.linger(args.metrics_linger, args.quiet);
    }
    Ok(if interrupted.load(Ordering::SeqCst) {
        Exit::Interrupted
    } else if result.slo.as_ref().is_some_and(|s| !s.passed) {
        Exit::SloViolated
    } else {
        Exit::Ok
    })
}

/// Follows the run once a second: progress, the live metrics (with the
/// rate the run was due to send then) and the interval log.
fn watch(
    run: Run,
    progress: &mut Progress,
    hdr_log: Option<&Path>,
    live: Option<&Live>,
) -> Result<Outcome> {
    let mut file = hdr_log
        .map(|p| {
            File::create(p)
                .map(BufWriter::new)
                .with_context(|| format!("creating {}", p.display()))
        })
        .transpose()?;
    let mut serializer = V2DeflateSerializer::new();
    let mut log = match &mut file {
        Some(f) => Some(
            IntervalLogWriterBuilder::new()
                .with_start_time(SystemTime::now())
                .with_max_value_divisor(1000.0)
                .add_comment("hammer latency log: values in microseconds, from intended send time")
                .begin_log_with(f, &mut serializer)?,
        ),
        None => None,
    };
    let mut log_error = None;
    let outcome = run.watch(Duration::from_secs(1), |run, interval| {
        let (offset, len) = (interval.offset, interval.len);
        progress.update(&interval.recorder, len, offset + len);
        if let Some(live) = live {
            live.record(&interval, run.gauges(), run.due_rate(offset + len));
        }
        if let (Some(log), None) = (&mut log, &log_error) {
            if let Err(e) = log.write_histogram(interval.recorder.latency(), offset, len, None) {
                log_error = Some(anyhow::anyhow!("writing the HdrHistogram log: {e:?}"));
            }
        }
    });
    drop(log);
    if let Some(e) = log_error {
        return Err(e);
    }
    if let Some(mut f) = file {
        f.flush().context("writing the HdrHistogram log")?;
    }
    outcome.context("running the attack")
}

fn resolve(args: &AttackArgs, max_conns: Option<u64>) -> Result<Attack> {
    if args.streams == Some(0) {
        return Err(bad_input("--streams must be at least 1"));
    }
    if args.streams.is_some() && args.http2.is_none() {
        return Err(bad_input("--streams is for HTTP/2: add --http2"));
    }
    if args.requests == Some(0) {
        return Err(bad_input("-n/--requests must be at least 1"));
    }
    if args.workers == Some(0) || args.connections == Some(0) {
        return Err(bad_input("--workers and --connections must be at least 1"));
    }
    let (targets, demo) = load_targets(args)?;
    let (origin, requests) =
        prepare(&targets, !args.disable_keepalive).map_err(|e| bad_input(e.to_string()))?;
    let tls = tls_of(args, &origin)?;
    let shard = parse_shard(args.shard.as_deref())?;
    // The one default: a run bounded by nothing (no -d, no -n, no plan
    // with a length of its own) sends for DEFAULT_DURATION.
    let own_length = args.schedule.is_some() || args.ramp.is_some();
    let duration = match (args.duration, args.requests) {
        (None, None) if !own_length => Some(DEFAULT_DURATION),
        (d, _) => d,
    };
    let mode = mode_of(args, duration)?;
    let open = matches!(mode, Mode::Open { .. });
    let connections = connections(args, open, shard, max_conns)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let slo = parse_slo(args.slo.as_deref())?;
    let config = Config {
        addr: origin.addr,
        requests,
        mode,
        limit: Limit {
            requests: args.requests,
            window: duration,
        },
        warmup: Duration::ZERO,
        connections,
        workers,
        timeout: args.timeout,
        connect_timeout: args.connect_timeout,
        keepalive: !args.disable_keepalive,
        shard,
        tls,
        h2_streams: args.http2.map(|_| args.streams.unwrap_or(DEFAULT_STREAMS)),
    };
    let goal = match (config.window(), args.requests) {
        (_, Some(n)) => Goal::Requests(shard.count_of(n)),
        (Some(d), None) => Goal::Time(d),
        (None, None) => Goal::Open,
    };
    let title = title(&targets[0].target, demo, &config, args.requests);
    Ok(Attack {
        config,
        title,
        goal,
        slo,
    })
}

/// The targets to attack, with their bodies, and whether it is the demo target.
fn load_targets(args: &AttackArgs) -> Result<(Vec<Loaded>, bool)> {
    let headers = args
        .headers
        .iter()
        .map(|h| {
            parse_header(h).ok_or_else(|| bad_input(format!("bad header {h:?}: use 'Name: value'")))
        })
        .collect::<Result<Vec<_>>>()?;
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| bad_input(format!("cannot read body file {}: {e}", p.display())))
    };
    if let Some(path) = &args.targets {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("cannot read targets file {}: {e}", path.display())))?;
        let parsed =
            parse_targets(&text).map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
        let mut out = Vec::with_capacity(parsed.len());
        for mut t in parsed {
            t.headers.extend(headers.iter().cloned());
            let body = match &t.body {
                Some(p) => read(p)?,
                None => Vec::new(),
            };
            out.push(Loaded { target: t, body });
        }
        return Ok((out, false));
    }
    let (url, demo) = match &args.url {
        Some(u) => (u.clone(), false),
        None => {
            let addr = crate::demo::spawn().context("starting the built-in demo target")?;
            (format!("http://{addr}/"), true)
        }
    };
    parse_url(&url).map_err(|e| bad_input(e.to_string()))?;
    let body = args
        .body
        .as_deref()
        .map(read)
        .transpose()?
        .unwrap_or_default();
    let target = Target {
        method: args.method.clone(),
        url,
        headers,
        body: args.body.clone(),
    };
    Ok((vec![Loaded { target, body }], demo))
}

/// The pacing the flags ask for; a constant rate lasts `duration`.
fn mode_of(args: &AttackArgs, duration: Option<Duration>) -> Result<Mode> {
    let plan = if let Some(s) = &args.schedule {
        Some(RatePlan::parse_schedule(s))
    } else if let Some(r) = &args.ramp {
        Some(RatePlan::parse_ramp(r))
    } else {
        args.rate.map(|r| RatePlan::constant(r, duration))
    };
    let Some(plan) = plan.transpose().map_err(|e| bad_input(e.to_string()))? else {
        return Ok(Mode::Closed);
    };
    Ok(Mode::Open {
        plan,
        arrivals: match args.arrivals {
            ArrivalsArg::Even => Arrivals::Even,
            ArrivalsArg::Poisson => Arrivals::Poisson { seed: args.seed },
        },
    })
}

fn connections(args: &AttackArgs, open: bool, shard: Share, max: Option<u64>) -> Result<usize> {
    let max = max.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let wanted = match args.connections {
        Some(c) if c > max => {
            return Err(bad_input(format!(
                "-c {c} needs {c} file descriptors but the open-file limit allows {max} \
                 connections; raise the hard limit (ulimit -Hn) or lower -c"
            )))
        }
        Some(c) => c,
        None if open => OPEN_DEFAULT_CONNECTIONS.min(max),
        None => CLOSED_DEFAULT_CONNECTIONS,
    };
    if open {
        return Ok(wanted);
    }
    // A shard of a closed-loop run drives its share of the connections.
    let share = shard.count_of(wanted as u64) as usize;
    if share == 0 {
        return Err(bad_input(format!(
            "-c {wanted} is too few connections for {} shards",
            shard.stride
        )));
    }
    Ok(share)
}

fn parse_shard(text: Option<&str>) -> Result<Share> {
    let Some(text) = text else {
        return Ok(Share::ALL);
    };
    let bad = || {
        bad_input(format!(
            "bad --shard {text:?}: use I/N with 0 <= I < N, e.g. 0/4"
        ))
    };
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok(Share {
        first: i,
        stride: n,
    })
}

/// TLS for an https:// origin, from the flags (ignored for http://, as curl does).
fn tls_of(args: &AttackArgs, origin: &Origin) -> Result<Option<Tls>> {
    if !origin.https {
        return Ok(None);
    }
    let options = TlsOptions {
        insecure: args.insecure,
        ca_file: args.cacert.clone(),
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
        no_resume: args.no_tls_resume,
        alpn: match args.http2 {
            None => vec![b"http/1.1".to_vec()],
            Some(Http2::On) => vec![b"h2".to_vec()],
            Some(Http2::Auto) => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        },
        alpn_required: args.http2 == Some(Http2::On),
    };
    Tls::new(&origin.host, &options)
        .map(Some)
        .map_err(|e| bad_input(e.to_string()))
}

/// Connects once (and handshakes, over TLS; and checks the server speaks
/// HTTP/2, with --http2) so that a target the run could not reach, a
/// certificate it would reject or a protocol it refuses is one line and
/// exit 2 rather than a run of errors. `--http2=auto` falls back to
/// HTTP/1.1 here. Returns lines for the title: what TLS and HTTP/2 agreed.
fn preflight(cfg: &mut Config, http2: Option<Http2>) -> Result<String> {
    let mut said = String::new();
    let mut h2 = cfg.h2_streams.is_some();
    if let Some(tls) = &cfg.tls {
        let agreed = tls
            .preflight(cfg.addr, cfg.connect_timeout)
            .map_err(|e| bad_input(e.to_string()))?;
        h2 = agreed.alpn.as_deref() == Some("h2");
        let alpn = agreed
            .alpn
            .map(|p| format!(", ALPN {p}"))
            .unwrap_or_default();
        said += &format!("\n  {} {}{alpn}", agreed.version, agreed.suite);
    } else if http2.is_some() {
        if let Err(why) = hammer_engine::probe_h2c(cfg.addr, cfg.connect_timeout) {
            if http2 == Some(Http2::On) {
                return Err(bad_input(format!(
                    "{why}; --http2=auto falls back to HTTP/1.1"
                )));
            }
            h2 = false;
        }
    } else {
        TcpStream::connect_timeout(&cfg.addr, cfg.connect_timeout).map_err(|e| {
            bad_input(format!(
                "cannot connect to {}: {e} (is the service running?)",
                cfg.addr
            ))
        })?;
    }
    match (http2, h2) {
        (Some(_), true) => {
            let streams = cfg.h2_streams.unwrap_or(DEFAULT_STREAMS);
            said += &format!("\n  HTTP/2, at most {streams} streams per connection");
        }
        (Some(_), false) => {
            cfg.h2_streams = None;
            said += "\n  HTTP/1.1: the server does not speak HTTP/2 (--http2=auto fell back)";
        }
        (None, _) => {}
    }
    Ok(said)
}

fn wait_for_start(start_at: Option<f64>) -> Result<()> {
    let Some(at) = start_at else { return Ok(()) };
    if !at.is_finite() || at < 0.0 {
        return Err(bad_input(format!("bad --start-at {at}: use Unix seconds")));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    if at > now + 24.0 * 3600.0 {
        return Err(bad_input("--start-at is more than a day away"));
    }
    if at > now {
        std::thread::sleep(Duration::from_secs_f64(at - now));
    } else if now - at > 1.0 {
        // The other shards started on time: this one's share of the plan
        // runs late, and the merge cannot tell.
        eprintln!(
            "hammer: started {:.1} s after --start-at; this shard's plan runs that much late (give the shards more lead)",
            now - at
        );
    }
    Ok(())
}

fn title(target: &Target, demo: bool, config: &Config, requests: Option<u64>) -> String {
    let what = if demo { " (built-in demo target)" } else { "" };
    let bound = match (config.window(), requests) {
        (Some(d), Some(n)) => format!("{n} requests or {}", humantime::format_duration(d)),
        (Some(d), None) => format!("for {}", humantime::format_duration(d)),
        (None, Some(n)) => format!("{n} requests"),
        (None, None) => "until stopped".into(),
    };
    let how = match (&config.mode, config.pacing().target_rate()) {
        (Mode::Open { arrivals, .. }, Some(rate)) => format!(
            "open loop, {rate:.1} req/s mean ({}), {bound}",
            match arrivals {
                Arrivals::Poisson { .. } => "Poisson arrivals",
                Arrivals::Even => "evenly spaced",
            }
        ),
        _ => format!("closed loop, {} connections, {bound}", config.connections),
    };
    format!(
        "hammer attack {} {}{what}\n  {how}",
        target.method, target.url
    )
}
