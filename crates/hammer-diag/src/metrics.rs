//! Provides the service's Prometheus metrics: requests by route, method and
//! status; requests in flight; a latency histogram whose buckets resolve a
//! 60 ms SLO; open and accepted connections; tokio's live tasks and queue
//! depth; and the process's CPU time, resident memory and open file
//! descriptors, read at scrape time. The
//! exposition is the classic Prometheus text format (`promtool check
//! metrics` passes on it).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

use crate::connections::Connections;

/// Latency buckets in seconds: fine around common SLOs (25, 50, 60, 100 ms).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.04, 0.05, 0.06, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Labels of a finished request, borrowed: recording allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLabels<'a> {
    /// The matched route pattern (not the raw path, to bound cardinality).
    pub route: &'a str,
    /// HTTP method.
    pub method: &'a Method,
    /// Response status.
    pub status: StatusCode,
}

impl RequestLabels<'_> {
    fn values(&self) -> [&str; 3] {
        [self.route, self.method.as_str(), self.status.as_str()]
    }
}

/// The metrics of one service.
pub struct Metrics {
    /// Tells this instance's series apart in the per-thread cache.
    id: u64,
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    connections: Arc<Connections>,
    connections_open: IntGauge,
    /// Counted on accept by [`Metrics::accepted`].
    connections_accepted: IntCounter,
    cpu_seconds: Counter,
    resident_bytes: IntGauge,
    open_fds: IntGauge,
    tasks_alive: IntGauge,
    global_queue_depth: IntGauge,
    log_lines_dropped: IntCounter,
}

const LABELS: [&str; 3] = ["route", "method", "status"];

impl Metrics {
    /// Registers every metric; open connections are read from `connections`.
    pub fn new(connections: Arc<Connections>) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served"),
            &LABELS,
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request head to response head",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &LABELS,
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let m = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requests,
            duration,
            in_flight: gauge("http_requests_in_flight", "HTTP requests being served"),
            connections,
            connections_open: gauge("http_connections_open", "Client connections open now"),
            connections_accepted: IntCounter::new(
                "http_connections_accepted_total",
                "Client connections accepted since start",
            )
            .expect("valid metric"),
            cpu_seconds: Counter::new(
                "process_cpu_seconds_total",
                "User and system CPU time spent in seconds",
            )
            .expect("valid metric"),
            resident_bytes: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            open_fds: gauge("process_open_fds", "Open file descriptors"),
            tasks_alive: gauge("tokio_tasks_alive", "Tokio tasks spawned and not finished"),
            global_queue_depth: gauge(
                "tokio_global_queue_depth",
                "Tokio tasks waiting in the global queue",
            ),
            log_lines_dropped: IntCounter::new(
                "log_lines_dropped_total",
                "Log lines dropped because the log writer fell behind",
            )
            .expect("valid metric"),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 11] = [
            Box::new(m.log_lines_dropped.clone()),
            Box::new(m.tasks_alive.clone()),
            Box::new(m.global_queue_depth.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.connections_open.clone()),
            Box::new(m.connections_accepted.clone()),
            Box::new(m.cpu_seconds.clone()),
            Box::new(m.resident_bytes.clone()),
            Box::new(m.open_fds.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// Records a finished request. `first` keeps the series of the first
    /// labels it was given (a route's first method and status, most often
    /// the only ones): the caller holds one per route. Other series a thread
    /// has used are kept in a small per-thread cache. Either way, finding a
    /// series again is a few compares instead of hashing the labels under a
    /// lock.
    pub fn finish(&self, first: &FirstSeries, labels: RequestLabels<'_>, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let series = first.0.get_or_init(|| self.series(labels));
        if series.matches(self.id, labels) {
            return series.record(seconds);
        }
        SERIES.with(|cache| {
            let mut cache = cache.borrow_mut();
            match cache.iter().find(|s| s.matches(self.id, labels)) {
                Some(series) => series.record(seconds),
                None => {
                    let series = self.series(labels);
                    series.record(seconds);
                    if cache.len() < SERIES_CACHED_PER_THREAD {
                        cache.push(series);
                    }
                }
            }
        });
    }

    fn series(&self, labels: RequestLabels<'_>) -> Series {
        let values = labels.values();
        Series {
            metrics: self.id,
            route: labels.route.into(),
            method: labels.method.clone(),
            status: labels.status,
            requests: self.requests.with_label_values(&values),
            duration: self.duration.with_label_values(&values),
        }
    }

    /// The requests-in-flight gauge.
    pub(crate) fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// Adds a collector of the service's own.
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// Counts an accepted connection.
    pub fn accepted(&self) {
        self.connections_accepted.inc();
    }

    /// The Prometheus text exposition of every metric, with the scrape-time
    /// figures read now.
    pub fn render(&self) -> String {
        self.connections_open
            .set(self.connections.open_count() as i64);
        let process = ProcessStats::read();
        if let Some(cpu) = process.cpu_seconds {
            // A counter only goes up: add what was spent since the last scrape.
            self.cpu_seconds
                .inc_by((cpu - self.cpu_seconds.get()).max(0.0));
        }
        if let Some(rss) = process.resident_bytes {
            self.resident_bytes.set(rss as i64);
        }
        if let Some(fds) = process.open_fds {
            self.open_fds.set(fds as i64);
        }
        if let Some(rt) = crate::runtime::RuntimeStats::current() {
            self.tasks_alive.set(rt.alive_tasks as i64);
            self.global_queue_depth.set(rt.global_queue_depth as i64);
        }
        let dropped = crate::log::dropped_lines();
        self.log_lines_dropped
            .inc_by(dropped.saturating_sub(self.log_lines_dropped.get()));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("writing to memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Most labelled series one thread keeps handles to (routes × methods ×
/// statuses it has served); beyond, series are looked up each time.
const SERIES_CACHED_PER_THREAD: usize = 64;

/// Handles to one labelled series of one [`Metrics`].
struct Series {
    metrics: u64,
    route: Box<str>,
    method: Method,
    status: StatusCode,
    requests: IntCounter,
    duration: Histogram,
}

impl Series {
    fn record(&self, seconds: f64) {
        self.requests.inc();
        self.duration.observe(seconds);
    }

    fn matches(&self, metrics: u64, labels: RequestLabels<'_>) -> bool {
        self.metrics == metrics
            && self.status == labels.status
            && self.method == *labels.method
            && *self.route == *labels.route
    }
}

thread_local! {
    static SERIES: RefCell<Vec<Series>> = const { RefCell::new(Vec::new()) };
}

/// The series of the first labels a route recorded; see [`Metrics::finish`].
#[derive(Default)]
pub struct FirstSeries(OnceLock<Series>);

/// The process's own figures from `/proc/self` (absent off Linux).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStats {
    /// User + system CPU seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size in bytes.
    pub resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/self/statm` and `/proc/self/fd`.
    pub fn read() -> Self {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                // utime and stime are the 14th and 15th fields; counting starts
                // after the parenthesised command name, which may hold spaces.
                let rest = &s[s.rfind(')')? + 2..];
                let mut fields = rest.split_whitespace().skip(11);
                let utime: f64 = fields.next()?.parse().ok()?;
                let stime: f64 = fields.next()?.parse().ok()?;
                Some((utime + stime) / ticks)
            });
        let resident_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| {
                let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
                Some(pages * rustix::param::page_size() as u64)
            });
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        Self {
            cpu_seconds,
            resident_bytes,
            open_fds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn every_label_combination_is_counted_whichever_cache_holds_it() {
        let metrics = Metrics::new(Arc::new(Connections::default()));
        let other = Metrics::new(Arc::new(Connections::default()));
        let (first, second) = (FirstSeries::default(), FirstSeries::default());
        let get = Method::GET;
        let labels = |route, status| RequestLabels {
            route,
            method: &get,
            status,
        };
        let ms = Duration::from_millis(1);
        for _ in 0..3 {
            metrics.finish(&first, labels("/a", StatusCode::OK), ms);
        }
        metrics.finish(&first, labels("/a", StatusCode::SERVICE_UNAVAILABLE), ms);
        metrics.finish(&first, labels("/b", StatusCode::OK), ms);
        metrics.finish(&second, labels("/b", StatusCode::OK), ms);
        // Another service's metrics share this thread's cache, not its counts.
        other.finish(&second, labels("/b", StatusCode::OK), ms);
        let text = metrics.render();
        let requests = |route: &str, status: &str| {
            count(
                &text,
                &format!(
                    "http_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}}"
                ),
            )
        };
        assert_eq!(requests("/a", "200"), Some(3), "{text}");
        assert_eq!(requests("/a", "503"), Some(1), "{text}");
        assert_eq!(requests("/b", "200"), Some(2), "{text}");
        let other_text = other.render();
        assert_eq!(
            count(
                &other_text,
                "http_requests_total{method=\"GET\",route=\"/b\",status=\"200\"}"
            ),
            Some(1),
            "{other_text}"
        );
    }
}
