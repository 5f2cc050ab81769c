//! The `mandelweb` service: `GET /mandelbrot` (CPU bound) with hammer-diag
//! switched on. Prints the addresses it listens on, one per line, so a
//! caller that asked for port 0 learns the real ones.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use hammer_diag::{Diag, Options};
use mandelweb::service::{router, VERSION};

/// The seeds' reference service.
#[derive(Debug, Parser)]
#[command(name = "mandelweb", version = VERSION)]
struct Args {
    /// Public listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Diagnostics listener (/metrics, /connections); off when absent.
    #[arg(long, value_name = "ADDR")]
    diag_listen: Option<String>,
    /// Longest a request may take (503 beyond).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Longest a drain on SIGTERM waits for requests in flight.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    hammer_diag::init_logging();
    let public = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let diag = match &args.diag_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --diag-listen {addr}"))?,
        ),
        None => None,
    };
    println!("listening on http://{}/", public.local_addr()?);
    if let Some(d) = &diag {
        println!("diagnostics on http://{}/", d.local_addr()?);
    }
    tracing::info!(version = VERSION, "mandelweb started");
    let options = Options {
        request_timeout: args.request_timeout,
        drain_timeout: args.drain_timeout,
        ..Options::default()
    };
    Diag::new(VERSION, options)
        .serve(router(), public, diag)
        .await
        .context("serving")
}
