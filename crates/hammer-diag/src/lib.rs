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
//! It depends on no other hammer crate; services sit above it (`mandelweb`,
//! the seeds' reference service, is one). Inside, floors run bottom up:
//! `reply`, `query`, `request_id`, `connections`, `runtime`; then `trace`
//! (capture), `log` and `metrics`; then `state` and [`gate`]; then the
//! middleware, the server and the endpoints; [`Diag`] on top.
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

mod connections;
mod endpoint;
pub mod gate;
mod log;
mod metrics;
mod middleware;
pub mod query;
mod reply;
mod request_id;
mod runtime;
mod serve;
mod state;
pub mod trace;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use connections::Connections;
pub use log::{
    init_logging, init_logging_with, LogFormat, LogGuard, LogOptions, Overflow, ParseOptionError,
    RequestLogs,
};
use metrics::Metrics;
pub use metrics::LATENCY_BUCKETS;
use middleware::install_panic_hook;
pub use reply::error_response;
pub use request_id::REQUEST_ID;
pub use serve::Shutdown;
pub use state::Options;
use state::Shared;

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
            .route("/info", get(endpoint::status::info))
            .route("/healthz", get(endpoint::status::healthz))
            .route("/readyz", get(endpoint::status::readyz))
            .with_state(self.shared.clone());
        app.merge(builtin).layer(middleware::ObserveLayer {
            shared: self.shared.clone(),
        })
    }

    /// The diagnostics listener's routes: `/metrics`, `/connections` and
    /// `/debug/pprof/{heap,profile,tasks,trace}`.
    pub fn diag_router(&self) -> Router {
        Router::new()
            .route("/debug/pprof/heap", get(endpoint::heap::heap))
            .route("/debug/pprof/profile", get(endpoint::profile::profile))
            .route("/debug/pprof/tasks", get(endpoint::tasks::tasks))
            .route("/debug/pprof/trace", get(endpoint::trace::trace))
            .route("/debug/pprof/wall", get(endpoint::wall::wall))
            .route("/metrics", get(endpoint::status::metrics))
            .route("/connections", get(endpoint::status::connections))
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
