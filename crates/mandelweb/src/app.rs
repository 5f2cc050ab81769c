//! Provides the `mandelweb` program as a function, so both its own binary
//! and `hammer lab` (which runs it as its built-in target in a child
//! process) parse the same flags: `GET /mandelbrot` (CPU bound) and `POST
//! /find-by-age` (PostgreSQL bound) with hammer-diag switched on, and
//! `mandelweb seed-db` to create its table. Prints the addresses it listens
//! on, one per line, so a caller that asked for port 0 learns the real ones.

use std::ffi::OsString;

use std::time::Duration;

use crate::db::{self, Db, Settings};
use crate::service::{render_gate, router, VERSION};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hammer_diag::{Diag, LogFormat, LogOptions, Options, Overflow, RequestLogs};
use indicatif::{ProgressBar, ProgressStyle};

/// The seeds' reference service: GET /mandelbrot renders a PNG, POST
/// /find-by-age {"age": N} queries PostgreSQL.
///
/// Example: mandelweb seed-db --rows 100000 --database-url postgres://postgres@127.0.0.1/postgres
/// then mandelweb --database-url ... --pool-size 16 --diag-listen 127.0.0.1:6060
#[derive(Debug, Parser)]
#[command(name = "mandelweb", version = VERSION)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Public listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Diagnostics listener (profiles, trace, /metrics, /connections); off when absent.
    #[arg(long, value_name = "ADDR")]
    diag_listen: Option<String>,
    /// Also write the readiness line (the JSON printed on stdout once both
    /// listeners are bound) to this file, whole or not at all: a supervisor
    /// can wait for it to appear.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<std::path::PathBuf>,
    /// Longest a request may take (503 beyond).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Load shedding: how long a /mandelbrot request may wait for a
    /// renderer and render, together. A request still waiting when what
    /// the budget leaves after a render (its usual time is learned) runs
    /// out gets a 503 with Retry-After, so under overload the requests
    /// admitted keep their latency and the renderer stays busy; a burst
    /// that fits is served. The 60 ms SLO less 10 ms for the network and
    /// the client by default; a large value turns shedding off.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    render_budget: Duration,
    /// Longest a drain on SIGTERM waits for requests in flight.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// PostgreSQL for /find-by-age, e.g. postgres://postgres@127.0.0.1:5432/postgres.
    /// Without it /find-by-age answers 503.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// 0: open a new database connection per request (the seed's starting
    /// point); N: a pool of at most N connections.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    /// Pooled connections opened at start and kept warm (the seed's
    /// MaxIdleConns step).
    #[arg(long, default_value_t = 0)]
    pool_min_idle: usize,
    /// Bound on the database part of a request: connect or pool wait,
    /// prepare and query together (a 503 beyond, so a hung database is a
    /// fast answer, never a hang).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    db_timeout: Duration,
    /// Log lines as `text` or `json` (one object per line with timestamp,
    /// level, message, request_id, method, route, status, duration_ms).
    /// Which lines: RUST_LOG (default info).
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// Lines per request at info: `end` (one, with status and duration),
    /// `both` (also a start line, so a request that never ends still shows)
    /// or `none`.
    #[arg(long, default_value = "end")]
    log_requests: RequestLogs,
    /// When the log writer falls behind by --log-buffer-lines: `drop` lines
    /// (counted in /metrics as log_lines_dropped_total, and said once a
    /// second) or `block` the requests until it catches up.
    #[arg(long, default_value = "drop")]
    log_overflow: Overflow,
    /// Log lines held for the writer thread.
    #[arg(long, default_value_t = 128_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    log_buffer_lines: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// (Re)create the `people` table (id, name, age; index on age) and fill
    /// it by COPY. Ages cycle through 0..=99, so {"age": 300} matches none.
    SeedDb {
        /// Rows to write.
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
    },
}

/// Runs mandelweb with these command-line arguments (the first is the
/// program name); `--help` and bad flags print and exit as usual.
pub fn main_from(argv: impl IntoIterator<Item = OsString>) -> Result<()> {
    let args = Args::parse_from(argv);
    // Kept until this returns: dropping it writes out every line logged.
    let _logs = hammer_diag::init_logging_with(LogOptions {
        format: args.log_format,
        requests: args.log_requests,
        overflow: args.log_overflow,
        buffer_lines: usize::try_from(args.log_buffer_lines).unwrap_or(usize::MAX),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        match args.command {
            Some(Command::SeedDb { rows }) => seed(args.database_url.as_deref(), rows).await,
            None => serve(args).await,
        }
    })
}

async fn seed(url: Option<&str>, rows: usize) -> Result<()> {
    let url = url.context("seed-db needs --database-url (or DATABASE_URL)")?;
    let bar = ProgressBar::new(rows as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .expect("a valid template"),
    );
    db::seed(url, rows, |done| bar.set_position(done as u64))
        .await
        .context("seeding the people table")?;
    bar.finish_and_clear();
    println!("people: {rows} rows, index on age");
    Ok(())
}

async fn serve(args: Args) -> Result<()> {
    let db = match &args.database_url {
        Some(url) => {
            let db = Db::new(&Settings {
                url: url.clone(),
                pool_size: args.pool_size,
                min_idle: args.pool_min_idle,
                timeout: args.db_timeout,
            })?;
            match db.warm().await {
                Ok(n) if n > 0 => tracing::info!(connections = n, "database pool warm"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "database not reachable yet; /find-by-age answers 503 until it is")
                }
            }
            Some(db)
        }
        None => None,
    };
    let public = bind(&args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let diag = match &args.diag_listen {
        Some(addr) => Some(
            bind(addr)
                .await
                .with_context(|| format!("binding --diag-listen {addr}"))?,
        ),
        None => None,
    };
    // Readiness, as one JSON line a supervisor parses (hammer lab does).
    let diagnostics = match &diag {
        Some(d) => Some(format!("http://{}/", d.local_addr()?)),
        None => None,
    };
    let ready = serde_json::json!({
        "listening": format!("http://{}/", public.local_addr()?),
        "diagnostics": diagnostics,
    });
    println!("{ready}");
    if let Some(path) = &args.ready_file {
        write_whole(path, format!("{ready}\n").as_bytes())
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }
    tracing::info!(
        version = VERSION,
        pool_size = args.pool_size,
        "mandelweb started"
    );
    let options = Options {
        request_timeout: args.request_timeout,
        drain_timeout: args.drain_timeout,
        ..Options::default()
    };
    let diagnostics = Diag::new(VERSION, options);
    let renders = render_gate(args.render_budget);
    diagnostics
        .register(renders.collector())
        .context("registering the render gate's metrics")?;
    if let Some(pool) = db.as_ref().and_then(Db::pool_metrics) {
        diagnostics
            .register(Box::new(pool))
            .context("registering the pool's metrics")?;
    }
    diagnostics
        .serve(router(db, renders), public, diag)
        .await
        .context("serving")
}

/// Writes `bytes` to `path` through a temporary file beside it and a
/// rename, so a reader never sees part of it.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Pending connections the kernel queues for `accept` (the default of 128
/// drops a burst of connects, and each dropped SYN costs its client a
/// retransmit a second or more later).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener on `addr` (`host:port`; the first address it resolves
/// to) with a backlog of [`LISTEN_BACKLOG`].
async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let resolved = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "resolves to no address")
    })?;
    let socket = if resolved.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(resolved)?;
    socket.listen(LISTEN_BACKLOG)
}
