//! Provides `--metrics-listen`: hammer's own measurements as Prometheus
//! text while a run goes on, for a Prometheus (and the Grafana board in
//! `deploy/`) to watch a run live beside the service's metrics.
//!
//! Nothing here touches the workers' hot path. The watch loop that already
//! takes the workers' measurements once a second ([`hammer_engine::Run::intervals`])
//! adds each interval to a running total; a scrape turns that total into
//! metric families on the listener's own thread. Histograms keep the
//! workers' microsecond HdrHistograms and are cut into classic buckets
//! only when scraped — the same buckets as hammer-diag's
//! `http_request_duration_seconds`, so the two sides' `histogram_quantile`
//! land on the same bounds (and one of them is the 60 ms SLO).
//!
//! What it serves is what the run has *measured*: a warm-up is not in it.
//! The listener lives as long as the process; a run's last second can be
//! missed by a scraper whose interval is longer than what is left.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hammer_core::recorder::Recorder;
use hammer_engine::{Gauges, Interval};
use hammer_lab::load::Watcher;
use hdrhistogram::Histogram;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram as PromHistogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

/// A request head larger than this is refused.
const MAX_HEAD: usize = 8 * 1024;
/// How long a scraper may take to send its request and read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The running totals a scrape reads.
#[derive(Default)]
struct State {
    /// Intervals recorded, and how many of them the last scrape saw.
    recorded: u64,
    scraped: u64,
    total: Recorder,
    gauges: Gauges,
    target_rate: Option<f64>,
    achieved_rate: f64,
}

/// hammer's live metrics, fed by the watch loop and served on a listener.
pub struct Live {
    state: Mutex<State>,
    /// Labels on every series (`shard="I/N"` when sharded).
    labels: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("labels", &self.labels)
            .finish()
    }
}

impl Live {
    /// `--metrics-listen`: serves on `addr` when one is given, saying where
    /// unless `quiet`.
    pub fn from_flag(
        addr: Option<&str>,
        shard: Option<String>,
        quiet: bool,
    ) -> Result<Option<Arc<Live>>> {
        let Some(addr) = addr else { return Ok(None) };
        let (live, at) = Live::serve(addr, shard)?;
        if !quiet {
            eprintln!("metrics: http://{at}/metrics");
        }
        Ok(Some(live))
    }

    /// Binds `addr` and serves `GET /metrics` on a thread of its own.
    /// Returns the metrics and the address bound (port 0 picks one).
    pub fn serve(addr: &str, shard: Option<String>) -> Result<(Arc<Live>, SocketAddr)> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| crate::cmd::bad_input(format!("--metrics-listen {addr}: {e}")))?;
        let bound = listener.local_addr()?;
        let live = Arc::new(Live::new(shard));
        let serving = live.clone();
        std::thread::Builder::new()
            .name("hammer-metrics".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    // One scraper at a time, each bounded by IO_TIMEOUT; a
                    // scraper that fails gets no answer and tries again.
                    let _ = serving.answer(stream);
                }
            })
            .context("starting the metrics listener")?;
        Ok((live, bound))
    }

    fn new(shard: Option<String>) -> Live {
        Live {
            state: Mutex::new(State::default()),
            labels: shard.map(|s| ("shard", s)).into_iter().collect(),
        }
    }

    /// Adds one interval the workers measured; `target_rate` is what the
    /// plan asked of this process as the interval ended (`None`: closed loop).
    pub fn record(&self, interval: &Interval, gauges: Gauges, target_rate: Option<f64>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.total.add(&interval.recorder);
        state.recorded += 1;
        state.gauges = gauges;
        state.target_rate = target_rate;
        state.achieved_rate =
            interval.recorder.completed() as f64 / interval.len.as_secs_f64().max(1e-3);
    }

    /// At the end of a run: waits for the last scrape (see
    /// [`Live::last_scrape`]) and says when none came.
    pub fn linger(&self, linger: Duration, quiet: bool) {
        if !self.last_scrape(linger) && !quiet && !linger.is_zero() {
            eprintln!(
                "metrics: no scrape within {} after the run; its last second was not scraped",
                humantime::format_duration(linger)
            );
        }
    }

    /// Waits, up to `linger`, for a scrape that has seen every interval
    /// recorded: the end of a run reaches Prometheus before hammer exits.
    /// Returns whether one came.
    pub fn last_scrape(&self, linger: Duration) -> bool {
        let until = std::time::Instant::now() + linger;
        loop {
            {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.scraped == state.recorded {
                    return true;
                }
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The metric families as they stand.
    fn families(&self) -> Vec<MetricFamily> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.scraped = state.recorded;
        let r = &state.total;
        let mut families = vec![
            self.family(
                "hammer_responses_total",
                "Responses received, by status code",
                MetricType::COUNTER,
                r.status_counts()
                    .map(|(code, n)| self.metric(&[("code", code.to_string())], counter(n)))
                    .collect(),
            ),
            self.family(
                "hammer_errors_total",
                "Requests that ended without a response, by kind",
                MetricType::COUNTER,
                r.error_counts()
                    .map(|(kind, n)| self.metric(&[("kind", kind.name().to_string())], counter(n)))
                    .collect(),
            ),
            self.single(
                "hammer_requests_sent_total",
                "Requests sent",
                MetricType::COUNTER,
                counter(r.sent()),
            ),
            self.single(
                "hammer_bytes_received_total",
                "Response bytes received",
                MetricType::COUNTER,
                counter(r.bytes_in()),
            ),
            self.single(
                "hammer_bytes_sent_total",
                "Request bytes sent",
                MetricType::COUNTER,
                counter(r.bytes_out()),
            ),
            self.single(
                "hammer_in_flight",
                "Requests sent and not yet ended",
                MetricType::GAUGE,
                gauge(state.gauges.in_flight as f64),
            ),
            self.single(
                "hammer_connections_open",
                "Connections open",
                MetricType::GAUGE,
                gauge(state.gauges.open as f64),
            ),
            self.single(
                "hammer_connections_opened_total",
                "Connections opened",
                MetricType::COUNTER,
                counter(state.gauges.opened),
            ),
            self.single(
                "hammer_achieved_rate",
                "Responses per second over the last second",
                MetricType::GAUGE,
                gauge(state.achieved_rate),
            ),
            self.histogram(
                "hammer_latency_seconds",
                "Latency from the intended send time (open loop) to the end of the response",
                r.latency(),
            ),
            self.histogram(
                "hammer_service_time_seconds",
                "Time from the actual send to the end of the response",
                r.service_time(),
            ),
            self.histogram(
                "hammer_schedule_lag_seconds",
                "How late requests were sent after their intended time",
                r.schedule_lag(),
            ),
        ];
        if let Some(rate) = state.target_rate {
            families.push(self.single(
                "hammer_target_rate",
                "Requests per second the plan asks of this process now",
                MetricType::GAUGE,
                gauge(rate),
            ));
        }
        // Before the first response there are no status codes yet: a
        // family without series is not valid text format.
        families.retain(|f| !f.get_metric().is_empty());
        families
    }

    /// The Prometheus text of the metrics as they stand.
    pub fn encode(&self) -> prometheus::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new().encode(&self.families(), &mut out)?;
        Ok(out)
    }

    fn family(
        &self,
        name: &str,
        help: &str,
        kind: MetricType,
        metrics: Vec<Metric>,
    ) -> MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(name.into());
        f.set_help(help.into());
        f.set_field_type(kind);
        f.set_metric(metrics);
        f
    }

    fn single(&self, name: &str, help: &str, kind: MetricType, value: Value) -> MetricFamily {
        self.family(name, help, kind, vec![self.metric(&[], value)])
    }

    fn histogram(&self, name: &str, help: &str, h: &Histogram<u64>) -> MetricFamily {
        let bounds = &hammer_diag::LATENCY_BUCKETS;
        // One pass over the values recorded (not a count per bound, which
        // walks the histogram's slots once per bucket: 0.6 ms a scrape).
        // Values are microseconds; HdrHistogram's three digits put a value
        // within 0.1% of a bound on either side of it.
        let mut counts = vec![0u64; bounds.len()];
        for v in h.iter_recorded() {
            let seconds = h.lowest_equivalent(v.value_iterated_to()) as f64 / 1e6;
            let at = bounds.partition_point(|&le| le < seconds);
            if let Some(c) = counts.get_mut(at) {
                *c += v.count_at_value();
            }
        }
        let mut cumulative = 0;
        let buckets = bounds
            .iter()
            .zip(counts)
            .map(|(&le, n)| {
                cumulative += n;
                let mut b = Bucket::default();
                b.set_upper_bound(le);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        let mut p = PromHistogram::default();
        p.set_sample_count(h.len());
        p.set_sample_sum(h.mean() * h.len() as f64 / 1e6);
        p.set_bucket(buckets);
        self.family(
            name,
            help,
            MetricType::HISTOGRAM,
            vec![self.metric(&[], Value::Histogram(p))],
        )
    }

    fn metric(&self, extra: &[(&str, String)], value: Value) -> Metric {
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name(k.into());
                l.set_value(v.into());
                l
            })
            .collect();
        let mut m = Metric::from_label(labels);
        match value {
            Value::Counter(c) => m.set_counter(c),
            Value::Gauge(g) => m.set_gauge(g),
            Value::Histogram(h) => m.set_histogram(h),
        }
        m
    }

    /// Answers one scraper: `GET /metrics` (or `/`), else 404; then closes.
    fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut head = vec![0; MAX_HEAD];
        let mut len = 0;
        let path = loop {
            let n = stream.read(&mut head[len..])?;
            if n == 0 {
                return Ok(());
            }
            len += n;
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&head[..len]) {
                Ok(httparse::Status::Complete(_)) => {
                    break (req.method == Some("GET")).then(|| req.path.unwrap_or("").to_owned());
                }
                Ok(httparse::Status::Partial) if len < MAX_HEAD => continue,
                _ => {
                    return respond(
                        &mut stream,
                        "400 Bad Request",
                        "text/plain",
                        b"bad request\n",
                    )
                }
            }
        };
        match path.as_deref().map(|p| p.split('?').next().unwrap_or(p)) {
            Some("/metrics" | "/") => match self.encode() {
                Ok(text) => respond(
                    &mut stream,
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    &text,
                ),
                Err(e) => respond(
                    &mut stream,
                    "500 Internal Server Error",
                    "text/plain",
                    format!("{e}\n").as_bytes(),
                ),
            },
            _ => respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"GET /metrics\n",
            ),
        }
    }
}

impl Watcher for Live {
    fn interval(&self, interval: &Interval, gauges: Gauges, target_rate: Option<f64>) {
        self.record(interval, gauges, target_rate);
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

enum Value {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(PromHistogram),
}

fn counter(n: u64) -> Value {
    let mut c = Counter::default();
    c.set_value(n as f64);
    Value::Counter(c)
}

fn gauge(v: f64) -> Value {
    let mut g = Gauge::default();
    g.set_value(v);
    Value::Gauge(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hammer_core::recorder::ErrorKind;

    fn interval(latencies_ms: &[u64], errors: usize) -> Interval {
        let mut recorder = Recorder::new();
        for &ms in latencies_ms {
            recorder.record_send(Duration::from_micros(50), 100);
            recorder.record_response(
                200,
                Duration::from_millis(ms),
                Duration::from_millis(ms),
                1000,
            );
        }
        for _ in 0..errors {
            recorder.record_error(ErrorKind::Timeout, None);
        }
        Interval {
            recorder,
            offset: Duration::ZERO,
            len: Duration::from_secs(1),
        }
    }

    #[test]
    fn counters_add_up_and_buckets_cut_where_prometheus_expects() {
        let live = Live::new(Some("1/4".into()));
        // 100 requests: 90 at 5 ms, 10 at 70 ms (past the 60 ms SLO bound).
        let mut ms = vec![5; 90];
        ms.extend([70; 10]);
        live.record(&interval(&ms, 3), Gauges::default(), Some(250.0));
        live.record(
            &interval(&[30], 0),
            Gauges {
                open: 7,
                in_flight: 2,
                opened: 9,
            },
            Some(250.0),
        );
        let text = String::from_utf8(live.encode().unwrap()).unwrap();
        for line in [
            r#"hammer_responses_total{shard="1/4",code="200"} 101"#,
            r#"hammer_errors_total{shard="1/4",kind="timeout"} 3"#,
            r#"hammer_latency_seconds_bucket{shard="1/4",le="0.005"} 90"#,
            r#"hammer_latency_seconds_bucket{shard="1/4",le="0.025"} 90"#,
            r#"hammer_latency_seconds_bucket{shard="1/4",le="0.04"} 91"#,
            r#"hammer_latency_seconds_bucket{shard="1/4",le="0.06"} 91"#,
            r#"hammer_latency_seconds_bucket{shard="1/4",le="0.075"} 101"#,
            r#"hammer_latency_seconds_bucket{shard="1/4",le="+Inf"} 101"#,
            r#"hammer_latency_seconds_count{shard="1/4"} 101"#,
            r#"hammer_connections_open{shard="1/4"} 7"#,
            r#"hammer_in_flight{shard="1/4"} 2"#,
            r#"hammer_target_rate{shard="1/4"} 250"#,
            r#"hammer_achieved_rate{shard="1/4"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(r#"hammer_latency_seconds_sum{shard="1/4"} "#))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 1.18).abs() < 0.002, "{sum}");
    }

    #[test]
    fn closed_loop_has_no_target_rate_and_a_bare_run_no_labels() {
        let live = Live::new(None);
        // Scraped before the first second: valid, if empty, text.
        let text = String::from_utf8(live.encode().unwrap()).unwrap();
        assert!(!text.contains("hammer_responses_total"), "{text}");
        assert!(
            text.contains("hammer_errors_total{kind=\"timeout\"} 0"),
            "{text}"
        );
        live.record(&interval(&[1], 0), Gauges::default(), None);
        let text = String::from_utf8(live.encode().unwrap()).unwrap();
        assert!(!text.contains("hammer_target_rate"), "{text}");
        assert!(text
            .lines()
            .any(|l| l == r#"hammer_responses_total{code="200"} 1"#));
    }
}
