//! Defines the recorder: what one worker measured, in constant memory.
//!
//! Every request adds to three HDR histograms (latency, service time,
//! schedule lag, all in microseconds) and to fixed counters for status codes
//! and error kinds, so memory does not grow with the number of requests.
//! Recorders from several workers or intervals add up exactly.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest value a histogram keeps exactly: one hour, in microseconds.
/// Longer values are clamped to it.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// Why a request failed without a usable HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The target refused the connection.
    Refused,
    /// The connection was not established within `--connect-timeout`.
    ConnectTimeout,
    /// The connection failed for another reason.
    Connect,
    /// The peer reset the connection.
    Reset,
    /// No complete response within `--timeout`.
    Timeout,
    /// The peer closed the connection before the response was complete.
    Closed,
    /// The response was not valid HTTP/1.x.
    BadResponse,
    /// The run was stopped (Ctrl-C) before the response arrived.
    Canceled,
    /// Any other I/O error.
    Io,
    /// The TLS handshake failed (certificate, protocol or ALPN) or did not
    /// finish within `--connect-timeout`.
    TlsHandshake,
    /// The peer sent a TLS alert, or TLS records that do not decrypt, after
    /// the handshake.
    TlsAlert,
    /// HTTP/2: the server reset the request's stream (RST_STREAM).
    RstStream,
    /// HTTP/2: the server said GOAWAY before it processed the request.
    GoAway,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::Refused,
        ErrorKind::ConnectTimeout,
        ErrorKind::Connect,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::BadResponse,
        ErrorKind::Canceled,
        ErrorKind::Io,
        ErrorKind::TlsHandshake,
        ErrorKind::TlsAlert,
        ErrorKind::RstStream,
        ErrorKind::GoAway,
    ];

    /// The stable name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Io => "io",
            ErrorKind::TlsHandshake => "tls_handshake",
            ErrorKind::TlsAlert => "tls_alert",
            ErrorKind::RstStream => "rst_stream",
            ErrorKind::GoAway => "goaway",
        }
    }

    /// The kind with this stable name.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Status codes are kept in a fixed table; anything outside is clamped.
const STATUS_SLOTS: usize = 600;

/// Whether a status code counts as success (2xx and 3xx, as vegeta does).
pub fn is_success(status: u16) -> bool {
    (200..400).contains(&status)
}

/// One worker's (or one interval's) measurements.
#[derive(Debug, Clone)]
pub struct Recorder {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    lag: Histogram<u64>,
    connect: Histogram<u64>,
    handshake: Histogram<u64>,
    settings: Histogram<u64>,
    status: Vec<u64>,
    errors: [u64; ErrorKind::ALL.len()],
    sent: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// What [`Recorder::from_parts`] rebuilds a recorder from.
#[derive(Debug)]
pub struct Parts {
    /// Latency histogram (µs).
    pub latency: Histogram<u64>,
    /// Service time histogram (µs).
    pub service: Histogram<u64>,
    /// Schedule lag histogram (µs).
    pub lag: Histogram<u64>,
    /// TCP connect times (µs), where measured.
    pub connect: Option<Histogram<u64>>,
    /// TLS handshake times (µs), where measured.
    pub handshake: Option<Histogram<u64>>,
    /// HTTP/2: times to the server's first SETTINGS (µs), where measured.
    pub settings: Option<Histogram<u64>>,
    /// Responses by status code.
    pub status: Vec<(u16, u64)>,
    /// Failures by kind.
    pub errors: Vec<(ErrorKind, u64)>,
    /// Requests sent.
    pub sent: u64,
    /// Response bytes received.
    pub bytes_in: u64,
    /// Request bytes sent.
    pub bytes_out: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// An empty histogram with hammer's bounds: 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            latency: new_histogram(),
            service: new_histogram(),
            lag: new_histogram(),
            connect: new_histogram(),
            handshake: new_histogram(),
            settings: new_histogram(),
            status: vec![0; STATUS_SLOTS],
            errors: [0; ErrorKind::ALL.len()],
            sent: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// A request left the generator `lag` after its intended time.
    pub fn record_send(&mut self, lag: Duration, bytes: u64) {
        self.sent += 1;
        self.bytes_out += bytes;
        self.lag.saturating_record(micros(lag));
    }

    /// A connection was established in `d` (TCP connect).
    pub fn record_connect(&mut self, d: Duration) {
        self.connect.saturating_record(micros(d));
    }

    /// A TLS handshake took `d`, from connected to done.
    pub fn record_handshake(&mut self, d: Duration) {
        self.handshake.saturating_record(micros(d));
    }

    /// HTTP/2: the server's first SETTINGS came `d` after the connection
    /// was ready (connected, or its TLS handshake done).
    pub fn record_settings(&mut self, d: Duration) {
        self.settings.saturating_record(micros(d));
    }

    /// A complete response arrived.
    pub fn record_response(
        &mut self,
        status: u16,
        latency: Duration,
        service: Duration,
        bytes: u64,
    ) {
        self.status[usize::from(status).min(STATUS_SLOTS - 1)] += 1;
        self.bytes_in += bytes;
        self.latency.saturating_record(micros(latency));
        self.service.saturating_record(micros(service));
    }

    /// A request failed. Timeouts carry their timings (the time waited is
    /// real latency); other errors do not enter the latency histograms, so a
    /// refused connection cannot flatter the percentiles.
    pub fn record_error(&mut self, kind: ErrorKind, timings: Option<(Duration, Duration)>) {
        self.errors[kind as usize] += 1;
        if let Some((latency, service)) = timings {
            self.latency.saturating_record(micros(latency));
            self.service.saturating_record(micros(service));
        }
    }

    /// A due request waited for a connection until its whole timeout had
    /// passed, without being sent: a timeout at the time waited, counted
    /// from its intended send time (no service time: it never reached the
    /// target), with the part of the wait that was the generator's as lag.
    pub fn record_expired(&mut self, waited: Duration, lag: Duration) {
        self.sent += 1;
        self.lag.saturating_record(micros(lag));
        self.errors[ErrorKind::Timeout as usize] += 1;
        self.latency.saturating_record(micros(waited));
    }

    /// A recorder holding what a finished run measured, from its parts:
    /// the three histograms (µs), counts by status and by error kind,
    /// requests sent and bytes each way.
    pub fn from_parts(parts: Parts) -> Recorder {
        let mut r = Recorder::new();
        // Same bounds on both sides (the caller re-homed them), so adding cannot fail.
        r.latency.add(&parts.latency).expect("same bounds");
        r.service.add(&parts.service).expect("same bounds");
        r.lag.add(&parts.lag).expect("same bounds");
        if let Some(h) = &parts.connect {
            r.connect.add(h).expect("same bounds");
        }
        if let Some(h) = &parts.handshake {
            r.handshake.add(h).expect("same bounds");
        }
        if let Some(h) = &parts.settings {
            r.settings.add(h).expect("same bounds");
        }
        for (code, n) in parts.status {
            r.status[usize::from(code).min(STATUS_SLOTS - 1)] += n;
        }
        for (kind, n) in parts.errors {
            r.errors[kind as usize] += n;
        }
        (r.sent, r.bytes_in, r.bytes_out) = (parts.sent, parts.bytes_in, parts.bytes_out);
        r
    }

    /// Adds everything `other` measured to this recorder.
    pub fn add(&mut self, other: &Recorder) {
        // Same bounds on both sides, so adding cannot fail.
        self.latency.add(&other.latency).expect("same bounds");
        self.service.add(&other.service).expect("same bounds");
        self.lag.add(&other.lag).expect("same bounds");
        self.connect.add(&other.connect).expect("same bounds");
        self.handshake.add(&other.handshake).expect("same bounds");
        self.settings.add(&other.settings).expect("same bounds");
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        self.sent += other.sent;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }

    /// Forgets everything, keeping the allocations. A reset walks every
    /// count of a histogram (190 KB each), so empty ones are left alone: a
    /// worker clears its recorders ten times a second.
    pub fn clear(&mut self) {
        for h in [
            &mut self.latency,
            &mut self.service,
            &mut self.lag,
            &mut self.connect,
            &mut self.handshake,
            &mut self.settings,
        ] {
            if !h.is_empty() {
                h.reset();
            }
        }
        self.status.fill(0);
        self.errors = [0; ErrorKind::ALL.len()];
        self.sent = 0;
        self.bytes_in = 0;
        self.bytes_out = 0;
    }

    /// Latency from intended send to response, in µs.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }
    /// Service time from actual send to response, in µs.
    pub fn service_time(&self) -> &Histogram<u64> {
        &self.service
    }
    /// Schedule lag (actual − intended send), in µs.
    pub fn schedule_lag(&self) -> &Histogram<u64> {
        &self.lag
    }
    /// TCP connect times, in µs.
    pub fn connect_time(&self) -> &Histogram<u64> {
        &self.connect
    }
    /// TLS handshake times, in µs.
    pub fn handshake_time(&self) -> &Histogram<u64> {
        &self.handshake
    }
    /// HTTP/2: times to the server's first SETTINGS, in µs.
    pub fn settings_time(&self) -> &Histogram<u64> {
        &self.settings
    }
    /// Requests sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }
    /// Response bytes received (headers and body).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
    /// Request bytes sent.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Non-zero status counts, ascending by code.
    pub fn status_counts(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(code, &n)| (code as u16, n))
    }

    /// Counts of every error kind, zeros included.
    pub fn error_counts(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .into_iter()
            .map(|k| (k, self.errors[k as usize]))
    }

    /// Requests that ended, one way or another.
    pub fn completed(&self) -> u64 {
        self.status.iter().sum::<u64>() + self.errors.iter().sum::<u64>()
    }

    /// Requests answered with a 2xx or 3xx status.
    pub fn succeeded(&self) -> u64 {
        self.status_counts()
            .filter(|&(code, _)| is_success(code))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests that ended in an error or a non-success status.
    pub fn failed(&self) -> u64 {
        self.completed() - self.succeeded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_successes_failures_and_errors() {
        let mut r = Recorder::new();
        let ms = Duration::from_millis;
        r.record_send(Duration::ZERO, 100);
        r.record_response(200, ms(5), ms(4), 50);
        r.record_response(503, ms(1), ms(1), 10);
        r.record_error(ErrorKind::Refused, None);
        r.record_error(ErrorKind::Timeout, Some((ms(10_000), ms(10_000))));
        assert_eq!(r.completed(), 4);
        assert_eq!(r.succeeded(), 1);
        assert_eq!(r.failed(), 3);
        // The refused connection is not a latency sample; the timeout is.
        assert_eq!(r.latency().len(), 3);
        assert_eq!(
            r.status_counts().collect::<Vec<_>>(),
            vec![(200, 1), (503, 1)]
        );
        assert_eq!(r.bytes_in(), 60);
    }

    proptest! {
        #[test]
        fn adding_recorders_equals_recording_once(values in prop::collection::vec((1u64..10_000_000, 100u16..600), 0..300), split in 0usize..300) {
            let split = split.min(values.len());
            let (mut a, mut b, mut whole) = (Recorder::new(), Recorder::new(), Recorder::new());
            for (i, &(us, status)) in values.iter().enumerate() {
                let d = Duration::from_micros(us);
                let part = if i < split { &mut a } else { &mut b };
                part.record_response(status, d, d, 1);
                whole.record_response(status, d, d, 1);
            }
            a.add(&b);
            prop_assert_eq!(a.latency(), whole.latency());
            prop_assert_eq!(a.status_counts().collect::<Vec<_>>(), whole.status_counts().collect::<Vec<_>>());
            prop_assert_eq!(a.completed(), values.len() as u64);
        }
    }
}
