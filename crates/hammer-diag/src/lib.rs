//! hammer-diag gives an axum service what `net/http/pprof` and the Uptime
//! talk give a Go one, in a few lines:
//!
//! - a separate diagnostics listener, off unless the service asks for it,
//!   serving `/metrics` (Prometheus text) and `/connections`; nothing of it
//!   is ever served on the public listener;
//! - on every public route: a request ID (from `x-request-id`, or made up
//!   when the request is logged or traced) on every log line of the
//!   request, a start and an end line, request metrics, panic capture (a
//!   500, the stack logged, the service keeps serving) and a whole-request
//!   timeout;
//! - `/info` (build-stamped version, start time, uptime), `/healthz`, `/readyz`;
//! - header-read and idle timeouts, and drain on SIGTERM: readiness goes
//!   false, the listeners close, requests in flight finish, then
//!   [`Diag::serve`] returns.
//!
//! - `/debug/pprof/profile?seconds=N` on the diagnostics listener: a CPU
//!   profile as pprof protobuf (`go tool pprof`), SVG flame graph or
//!   callgrind text.
//!
//! - `/debug/pprof/tasks`: live tokio tasks, workers, queue depth and open
//!   connections, so a task leak shows, and each task's trace (the `async
//!   fn`s it waits in) when built with `--cfg tokio_unstable`.
//!
//! - `/debug/pprof/trace?seconds=N`: every span in the window (one per
//!   request, with ID, route and status, and the handler's own spans) as
//!   Chrome trace-event JSON for Perfetto, with flow arrows from each
//!   connection's accept to its requests and on to their handler spans;
//!   free outside a window.
//!
//! - `/debug/pprof/wall?seconds=N`: where requests spend their wall time,
//!   waits included: every span stack's self time in the window, as pprof
//!   protobuf (`wall/nanoseconds`), SVG flame graph or folded stacks.
//!
//! - Load shedding ([`gate::Gate`]): a bounded-wait queue in front of a
//!   scarce resource; what cannot be served in time is a fast 503, counted
//!   in `/metrics` and logged once a second.
//!
//! - `/debug/pprof/heap` (feature `heap`): jemalloc's heap profile as pprof.
//!
//! - Logs ([`init_logging_with`]): text or JSON lines, one end line per
//!   request (or start and end, or none), written by a thread of their own
//!   in batches and flushed when the returned [`LogGuard`] drops.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use hammer_diag::{Diag, Options};
//!
//! # async fn run() -> std::io::Result<()> {
//! let _logs = hammer_diag::init_logging();
//! let app = Router::new().route("/hello", get(|| async { "hello\n" }));
//! let public = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let diag = tokio::net::TcpListener::bind("127.0.0.1:6060").await?;
//! Diag::new("1.0.42-abc1234-20261125.101500", Options::default())
//!     .serve(app, public, Some(diag))
//!     .await
//! # }
//! ```

mod batch;
mod callgrind;
mod connections;
pub mod gate;
mod heap;
mod lines;
mod logging;
mod metrics;
mod middleware;
mod profile;
pub mod query;
mod request_id;
mod routes;
mod serve;
mod tasks;
pub mod trace;
mod wall;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use connections::Connections;
pub use logging::{
    init_logging, init_logging_with, LogFormat, LogGuard, LogOptions, Overflow, ParseOptionError,
    RequestLogs,
};
use metrics::Metrics;
pub use metrics::LATENCY_BUCKETS;
pub use middleware::error_response;
use middleware::install_panic_hook;
pub use request_id::REQUEST_ID;
pub use serve::Shutdown;

/// Timeouts of a service.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Longest a request may take, head to response (503 beyond).
    pub request_timeout: Duration,
    /// Longest a client may take to send a request head; also how long an
    /// idle keep-alive connection waits for its next request. Enforced per
    /// connection, not per request: a connection with no request in flight
    /// (its response body sent) for this long is closed, within a further
    /// half of it.
    pub header_read_timeout: Duration,
    /// Longest a drain waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            request_timeout: middleware::DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// State shared by the middleware, the built-in routes and the server.
pub(crate) struct Shared {
    version: String,
    started: SystemTime,
    started_at: Instant,
    ready: AtomicBool,
    connections: Arc<Connections>,
    metrics: Metrics,
    options: Options,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// A CPU profile is being taken.
    profiling: AtomicBool,
}

/// A service's diagnostics: build one, wrap the service's router, serve.
#[derive(Clone)]
pub struct Diag {
    shared: Arc<Shared>,
}

impl Diag {
    /// Diagnostics for a service of this build `version`.
    pub fn new(version: impl Into<String>, options: Options) -> Self {
        install_panic_hook();
        let connections = Arc::new(Connections::default());
        Self {
            shared: Arc::new(Shared {
                version: version.into(),
                started: SystemTime::now(),
                started_at: Instant::now(),
                ready: AtomicBool::new(false),
                metrics: Metrics::new(connections.clone()),
                connections,
                options,
                shutdown: tokio::sync::watch::channel(false).0,
                profiling: AtomicBool::new(false),
            }),
        }
    }

    /// The service's routes with the middleware applied, plus `/info`,
    /// `/healthz` and `/readyz`.
    pub fn public_router(&self, app: Router) -> Router {
        let builtin = Router::new()
            .route("/info", get(routes::info))
            .route("/healthz", get(routes::healthz))
            .route("/readyz", get(routes::readyz))
            .with_state(self.shared.clone());
        app.merge(builtin).layer(middleware::ObserveLayer {
            shared: self.shared.clone(),
        })
    }

    /// The diagnostics listener's routes: `/metrics`, `/connections` and
    /// `/debug/pprof/{heap,profile,tasks,trace}`.
    pub fn diag_router(&self) -> Router {
        Router::new()
            .route("/debug/pprof/heap", get(heap::heap))
            .route("/debug/pprof/profile", get(profile::profile))
            .route("/debug/pprof/tasks", get(tasks::tasks))
            .route("/debug/pprof/trace", get(trace::trace))
            .route("/debug/pprof/wall", get(wall::wall))
            .route("/metrics", get(routes::metrics))
            .route("/connections", get(routes::connections))
            .with_state(self.shared.clone())
    }

    /// Adds the service's own metrics (a database pool's, a queue's) to
    /// `/metrics`. A collector is read at each scrape, so one that reads
    /// its figures in `collect` costs nothing between scrapes.
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.shared.metrics.register(collector)
    }

    /// Whether the service is serving and not draining (what `/readyz` says).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A handle that starts a drain, as SIGTERM does.
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown(self.shared.shutdown.clone())
    }

    /// Serves `app` on `public` and diagnostics on `diag` (none when
    /// `None`) until a drain completes.
    pub async fn serve(
        self,
        app: Router,
        public: TcpListener,
        diag: Option<TcpListener>,
    ) -> std::io::Result<()> {
        // `with_state(())` turns every route into its final service once;
        // without it axum rebuilds a layered route on each request.
        let app = self.public_router(app).with_state(());
        let diag = diag.map(|listener| (listener, self.diag_router()));
        serve::serve(self.shared, app, public, diag).await
    }
}
