//! Defines the command line as raw flags; `cmd::*` resolves them into a
//! typed run configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hammer: how much load your HTTP service takes within its SLO.
#[derive(Debug, Parser)]
#[command(name = "hammer", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// hammer's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send HTTP load to a target and measure it (open or closed loop).
    Attack(Box<AttackArgs>),
    /// Merge result files written with -o (e.g. shards of one run) and print the report.
    Report(ReportArgs),
    /// Find the load a service takes within its SLO, profile the knee, plan N+1, write an HTML report.
    Lab(Box<LabArgs>),
    /// Run the built-in target, mandelweb, with its own flags (`hammer mandelweb --help`).
    #[command(hide = true)]
    Mandelweb {
        /// mandelweb's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

const LAB_EXAMPLES: &str = "\
Examples:
  # The whole method on the built-in target (mandelweb GET /mandelbrot)
  hammer lab

  # The seed's pool experiment: find-by-age on PostgreSQL, no pool vs a pool of 16
  hammer lab --database-url postgres://postgres@127.0.0.1:5432/postgres \\
      --compare '--pool-size 0' '--pool-size 16' --expected-load 10000

  # Your own service, with hammer-diag (or Go's net/http/pprof) on a diagnostics port
  hammer lab --target http://127.0.0.1:8080/api --diag http://127.0.0.1:6060 \\
      --slo 'p99<100ms' --max-rate 5000 --budget 5m

The report goes to lab-report/index.html (charts, flame graph at the knee, capacity
plan) and lab-report/report.json (every step's full result).";

/// Flags of `hammer lab`.
#[derive(Debug, Args)]
#[command(after_help = LAB_EXAMPLES)]
pub struct LabArgs {
    /// URL of the service to test. Default: the built-in mandelweb, started
    /// on free loopback ports with its diagnostics listener.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Base URL of the target's diagnostics listener (profiles and trace at the knee).
    #[arg(long, value_name = "URL")]
    pub diag: Option<String>,
    /// Two targets to run the same method on: URLs, or flags for the
    /// built-in mandelweb (e.g. '--pool-size 0' '--pool-size 16').
    #[arg(long, num_args = 2, value_names = ["A", "B"], allow_hyphen_values = true)]
    pub compare: Vec<String>,
    /// The built-in target serves POST /find-by-age {"age": 300} from this
    /// PostgreSQL (seeded with 100,000 rows if the table is missing).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// HTTP method (default GET; POST for the built-in find-by-age).
    #[arg(short, long)]
    pub method: Option<String>,
    /// Request header, repeatable.
    #[arg(short = 'H', long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,
    /// Request body file.
    #[arg(short, long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// The SLO every step must keep.
    #[arg(long, default_value = "p99<60ms")]
    pub slo: String,
    /// A step with more failed requests than this fails.
    #[arg(long, default_value = "0.1%")]
    pub max_error_rate: String,
    /// Rate of the first step, req/s (default 50; 250 for find-by-age).
    #[arg(long, value_name = "R")]
    pub start_rate: Option<f64>,
    /// Factor between steps while they pass.
    #[arg(long, default_value_t = 2.0)]
    pub growth: f64,
    /// Bisection ends when the failing rate is within this of the passing one.
    #[arg(long, default_value = "5%")]
    pub precision: String,
    /// Never offer more than this, req/s.
    #[arg(long, value_name = "R", default_value_t = 1_000_000.0)]
    pub max_rate: f64,
    /// Measured length of a step (longer at low rates to reach --min-requests, up to 3x).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// Unmeasured warm-up before each step.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Requests a step should hold for its percentile to be trusted.
    #[arg(long, default_value_t = 500)]
    pub min_requests: u64,
    /// Bound on the whole lab's time.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub budget: Duration,
    /// Seconds of CPU profile at the knee.
    #[arg(long, default_value_t = 5)]
    pub profile_seconds: u64,
    /// The latency histogram in the target's /metrics (on --diag) that
    /// gives the service's own view of each step: its request rate, its
    /// p99 beside hammer's, and the time spent outside its handler.
    #[arg(long, value_name = "NAME", default_value = hammer_lab::server::DEFAULT_HISTOGRAM)]
    pub server_histogram: String,
    /// Skip the closed-loop sweep (1, 2, 4, ... connections until goodput
    /// stops growing, five points at least, or three doublings in a row
    /// shed past the error limit) that the scalability (USL) fit comes
    /// from; the fit then uses the open-loop steps.
    #[arg(long)]
    pub no_sweep: bool,
    /// The most connections the sweep goes to.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub sweep_max: usize,
    /// Measured length of each sweep point.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub sweep_step: Duration,
    /// Load the capacity plan is for, req/s (default 1,000 for /mandelbrot,
    /// 10,000 for find-by-age as in the seed).
    #[arg(long, value_name = "R")]
    pub expected_load: Option<f64>,
    /// Whole-request timeout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// https target and diagnostics: accept any server certificate.
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// https target and diagnostics: trust only the CAs in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Load the target over HTTP/2 (h2c on http://, ALPN h2 on https://),
    /// up to 100 streams per connection.
    #[arg(long)]
    pub http2: bool,
    /// Report directory.
    #[arg(short, long, default_value = "lab-report")]
    pub out: PathBuf,
    /// Serve hammer's live measurements of every step as Prometheus text
    /// on ADDR (GET /metrics), as `hammer attack --metrics-listen` does.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// With --metrics-listen: after the run, wait up to this long for one
    /// more scrape, so the run's last second reaches Prometheus before
    /// hammer exits (0s: exit at once).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub metrics_linger: Duration,
    /// No progress display.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Whether to speak HTTP/2.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Http2 {
    /// HTTP/2 or an error.
    On,
    /// HTTP/2 if the server agrees, else HTTP/1.1.
    Auto,
}

/// How arrivals are spaced in open loop.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Arrivals {
    /// Evenly spaced: at rate R, one request every 1/R seconds.
    Even,
    /// A Poisson process with mean rate R.
    Poisson,
}

/// Output format on stdout.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// A summary for people.
    Text,
    /// The full result as JSON (same as -o).
    Json,
}

const ATTACK_EXAMPLES: &str = "\
Examples:
  # Open loop: 500 requests/s, evenly spaced, for 30 seconds
  hammer attack -r 500 -d 30s http://127.0.0.1:8080/

  # Closed loop: 50 connections, one request in flight each, 100,000 requests
  hammer attack -c 50 -n 100000 http://127.0.0.1:8080/

  # Steps of a rate plan with an SLO; exit code 3 when it is violated
  hammer attack --schedule 50:30s,500:30s,1000:30s --slo 'p99<60ms' http://127.0.0.1:8080/

  # A POST with a JSON body, results kept for later merging
  hammer attack -r 1000 -d 10s -m POST -H 'Content-Type: application/json' \\
      -b body.json -o run.json http://127.0.0.1:8080/find-by-age

  # No URL: attack hammer's built-in demo target on a loopback port
  hammer attack -r 2000 -d 5s

  # https with a private CA; a full TLS handshake per request
  hammer attack -r 200 -d 30s --cacert ca.pem --disable-keepalive --no-tls-resume \\
      https://127.0.0.1:8443/

Latency is measured from the time each request was due (open loop), so a
stalled server cannot hide behind a stalled generator. Service time is
measured from the actual send, schedule lag is the difference.

Exit codes: 0 done, 1 runtime failure, 2 bad input, 3 SLO violated, 4 (hammer report) a shard missing, 130 interrupted.";

/// Flags of `hammer attack`.
#[derive(Debug, Args)]
#[command(after_help = ATTACK_EXAMPLES)]
pub struct AttackArgs {
    /// Target URL (http://). Omit it (and --targets) to attack the built-in demo target.
    pub url: Option<String>,

    /// Targets file in vegeta's format: `METHOD URL`, header lines, optional
    /// `@body-file`, blank line between targets. All must share one origin.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    pub targets: Option<PathBuf>,

    /// Open loop: requests per second, sent on schedule whatever the target
    /// does. Without --rate, --schedule or --ramp the run is closed loop.
    #[arg(short, long, value_name = "R", allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Open loop rate plan: RATE:DURATION steps, e.g. 50:30s,500:30s,1000:30s.
    #[arg(long, value_name = "PLAN", conflicts_with_all = ["rate", "ramp"])]
    pub schedule: Option<String>,

    /// Open loop linear ramp: FROM..TO:DURATION, e.g. 0..2000:60s.
    #[arg(long, value_name = "PLAN", conflicts_with = "rate")]
    pub ramp: Option<String>,

    /// Spacing of open-loop arrivals.
    #[arg(long, value_enum, default_value_t = Arrivals::Even)]
    pub arrivals: Arrivals,

    /// Closed loop: connections, each with one request in flight (default 50).
    /// Open loop: the most connections hammer may open (default 10000); it
    /// opens one whenever all are busy and never delays the schedule.
    #[arg(short, long, value_name = "N")]
    pub connections: Option<usize>,

    /// Stop after N requests.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,

    /// Stop sending after this long, e.g. 30s, 2m. With -n, whichever comes
    /// first. Default 10s when neither is given (a plan sets its own).
    #[arg(short, long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,

    /// HTTP method.
    #[arg(short, long, default_value = "GET")]
    pub method: String,

    /// Request header, repeatable: -H 'Content-Type: application/json'.
    #[arg(short = 'H', long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,

    /// File whose contents are sent as the request body.
    #[arg(short, long, value_name = "FILE")]
    pub body: Option<PathBuf>,

    /// Whole-request timeout, from send to complete response.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,

    /// Connect timeout.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub connect_timeout: std::time::Duration,

    /// HTTP/2: h2c with prior knowledge on http://, ALPN h2 on https://; a
    /// server that does not agree is an error. --http2=auto falls back to
    /// HTTP/1.1 and says so.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true,
          default_missing_value = "on", value_name = "auto")]
    pub http2: Option<Http2>,

    /// HTTP/2: most requests in flight per connection (default: what the
    /// server allows, at most 100). Closed loop keeps -c × N in flight.
    #[arg(long, value_name = "N")]
    pub streams: Option<usize>,

    /// https: accept any server certificate (self-signed, expired, another
    /// name). The traffic is still encrypted.
    #[arg(long, short = 'k')]
    pub insecure: bool,

    /// https: trust only the CA certificates in this PEM file instead of the
    /// system's store (as curl's --cacert).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// https: a client certificate chain (PEM) for servers that require
    /// mutual TLS; needs --client-key.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// https: the private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// https: no TLS session resumption, so every new connection makes a full
    /// handshake (with --disable-keepalive: a full handshake per request).
    #[arg(long)]
    pub no_tls_resume: bool,

    /// A new connection for every request (sends `Connection: close`).
    #[arg(long)]
    pub disable_keepalive: bool,

    /// Worker threads (default: one per available core).
    #[arg(short, long, value_name = "N")]
    pub workers: Option<usize>,

    /// Write the full result as JSON to FILE (mergeable with `hammer report`).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write an HdrHistogram interval log (one latency histogram per second).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,

    /// Serve hammer's live measurements as Prometheus text on ADDR
    /// (`127.0.0.1:9099`; GET /metrics) while it runs: responses by status,
    /// errors by kind, in flight, connections, target and achieved rate,
    /// latency, service time and schedule lag histograms (labelled
    /// `shard` when sharded). `deploy/` has a Prometheus config and a
    /// Grafana board for it.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// With --metrics-listen: after the run, wait up to this long for one
    /// more scrape, so the run's last second reaches Prometheus before
    /// hammer exits (0s: exit at once).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub metrics_linger: Duration,

    /// Format of the report on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Service level objective, e.g. 'p99<60ms,error-rate<0.1%'. Exit code 3
    /// when violated. Metrics: pN (p50, p99, p99.9), mean, max, error-rate.
    #[arg(long, value_name = "CHECKS")]
    pub slo: Option<String>,

    /// Run the I-th of N equal shares of the plan (0-based), for a run split
    /// across machines; merge the results with `hammer report`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// Start at this Unix time (seconds), so shards on several machines start together.
    #[arg(long, value_name = "UNIX_SECS")]
    pub start_at: Option<f64>,

    /// Seed for --arrivals poisson.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Flags of `hammer report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Result files written by `hammer attack -o`. The shards of one run
    /// (`--shard I/N`) merge exactly; with one missing, the report says
    /// which and exits 4, so a CI gate cannot pass on part of a run.
    #[arg(required = true, value_name = "RESULT.json")]
    pub files: Vec<PathBuf>,

    /// Format of the merged report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Judge the merged result against an SLO (exit code 3 when violated).
    #[arg(long, value_name = "CHECKS")]
    pub slo: Option<String>,
}
