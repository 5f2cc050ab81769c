//! Provides what one worker is told (its share of the run: where, what,
//! how many connections, when) and what it reports when it is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hammer_core::recorder::Recorder;
use hammer_core::result::LimitReason;

use super::request::Prepared;
use super::tls::Tls;

/// What one worker needs to know.
#[derive(Clone)]
pub struct WorkerConfig {
    /// Where to connect.
    pub addr: SocketAddr,
    /// TLS, for https.
    pub tls: Option<Tls>,
    /// HTTP/2, with at most this many requests per connection.
    pub h2_streams: Option<usize>,
    /// The prepared requests, sent round robin.
    pub requests: Arc<[Prepared]>,
    /// Most connections this worker may have open.
    pub max_conns: usize,
    /// Whole-request timeout, from actual send.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Reuse connections.
    pub keepalive: bool,
    /// Stop sending at this instant.
    pub deadline: Option<Instant>,
    /// Offset zero of the plan.
    pub start: Instant,
    /// Requests due before this are sent but not measured (a warm-up).
    pub measure_from: Option<Instant>,
    /// Index of this worker's first request in `requests`.
    pub first_request: usize,
}

/// What a worker measured.
pub struct WorkerReport {
    /// Everything recorded.
    pub recorder: Recorder,
    /// When it stopped sending (no earlier than the end of its plan share).
    pub send_stop: Instant,
    /// When its last request ended.
    pub last_done: Instant,
    /// Connections it opened.
    pub opened: u64,
    /// The most connections it had open at once.
    pub peak_open: u64,
    /// The most its policy allowed at the end, and why no more.
    pub limit: (usize, LimitReason),
}
