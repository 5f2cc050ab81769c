//! Provides what the middleware, the endpoints and the server share: the
//! service's [`Options`] and its state ([`Shared`]: version, start time,
//! readiness, connections, metrics, the drain signal).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::connections::Connections;
use crate::metrics::Metrics;

/// The default whole-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// State shared by the middleware, the built-in routes and the server.
pub(crate) struct Shared {
    pub(crate) version: String,
    pub(crate) started: SystemTime,
    pub(crate) started_at: Instant,
    pub(crate) ready: AtomicBool,
    pub(crate) connections: Arc<Connections>,
    pub(crate) metrics: Metrics,
    pub(crate) options: Options,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// A CPU profile is being taken.
    pub(crate) profiling: AtomicBool,
}
