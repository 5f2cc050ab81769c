//! Provides a ground truth for latency under pauses: an HTTP/1.1 server
//! that answers every request at once, except that for `pause` of every
//! `every` it answers nothing (a GC pause, a lock convoy, a slow flush) —
//! while still accepting connections and reading requests promptly, so a
//! request that reaches it during a pause waits *at the server*, where the
//! server sees it. It measures each request's residence (its last byte
//! read to its response written) itself, so a load generator can be graded
//! against what the server did rather than against its own view.
//!
//! One thread, one `mio` poll loop: nothing in it waits but the poll, and a
//! `timerfd` in the poll ends each pause to the microsecond (epoll's own
//! timeouts are whole milliseconds, late by up to one). `GET /__residence` answers the
//! residence quantiles so far as JSON and `GET /__reset` forgets them;
//! neither is measured nor paused.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use std::os::fd::{AsRawFd, OwnedFd};

const LISTENER: Token = Token(usize::MAX);
const TIMER: Token = Token(usize::MAX - 1);
const BODY: &[u8] = b"ok";

/// When the server answers nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pauses {
    /// How long each pause lasts (zero: never paused).
    pub pause: Duration,
    /// How often a pause starts, from the server's start.
    pub every: Duration,
}

impl Pauses {
    /// Whether `since_start` falls in a pause; if so, when it ends.
    pub fn ends(&self, since_start: Duration) -> Option<Duration> {
        if self.pause.is_zero() || self.every.is_zero() {
            return None;
        }
        let every = self.every.as_nanos();
        let phase = since_start.as_nanos() % every;
        (phase < self.pause.as_nanos()).then(|| {
            let start = since_start.as_nanos() - phase;
            Duration::from_nanos((start + self.pause.as_nanos()) as u64)
        })
    }

    /// The analytic residence quantile `q` (0..1) of requests arriving
    /// evenly or at random, uniformly over the schedule, answered at once
    /// outside pauses: a request arriving in a pause waits for its end,
    /// uniformly on (0, pause]; the rest wait nothing.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.pause.is_zero() || self.every.is_zero() {
            return Duration::ZERO;
        }
        let share = (self.pause.as_secs_f64() / self.every.as_secs_f64()).min(1.0);
        let above = 1.0 - q;
        if above >= share {
            return Duration::ZERO;
        }
        self.pause.mul_f64(1.0 - above / share)
    }
}

/// Residence times in µs.
#[derive(Debug)]
struct Measured {
    residence: Histogram<u64>,
}

/// A running pause server; stops when dropped.
pub struct PauseServer {
    addr: SocketAddr,
    measured: Arc<Mutex<Measured>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PauseServer {
    /// Starts one on `addr` (port 0: any free port) pausing as `pauses` says.
    pub fn start(addr: SocketAddr, pauses: Pauses) -> io::Result<PauseServer> {
        let mut listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        poll.registry()
            .register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
        let measured = Arc::new(Mutex::new(Measured {
            residence: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = Server {
            poll,
            listener,
            timer,
            conns: Vec::new(),
            free: Vec::new(),
            pauses,
            start: Instant::now(),
            measured: Arc::clone(&measured),
        };
        let halt = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pause-server".into())
            .spawn(move || server.run(&halt))?;
        Ok(PauseServer {
            addr,
            measured,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Residence quantile `q` (0..1) of the requests answered so far.
    pub fn residence(&self, q: f64) -> Duration {
        let m = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_micros(m.residence.value_at_quantile(q))
    }

    /// Requests answered so far (control requests aside).
    pub fn answered(&self) -> u64 {
        let m = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        m.residence.len()
    }
}

impl Drop for PauseServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Requests read and not yet answered: when each was read, and whether
    /// it is a control request (answered with this body, not measured).
    waiting: VecDeque<(Instant, Option<Vec<u8>>)>,
    out: Vec<u8>,
    close: bool,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    /// Fires when the pause under way ends.
    timer: OwnedFd,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    pauses: Pauses,
    start: Instant,
    measured: Arc<Mutex<Measured>>,
}

impl Server {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) {
            let pause_end = self.pauses.ends(self.start.elapsed());
            if let Some(end) = pause_end {
                let left = (self.start + end).saturating_duration_since(Instant::now());
                let spec = Itimerspec {
                    it_interval: Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: i64::from(left.subsec_nanos()).max(1),
                    },
                };
                // Re-arming resets the expiry count: the timer needs no reading.
                if timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &spec).is_err() {
                    return;
                }
            }
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_millis(50))) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    self.accept();
                } else if ev.token() == TIMER {
                    // The pause is over: answered below.
                } else {
                    self.read(ev.token().0);
                }
            }
            let paused = self.pauses.ends(self.start.elapsed()).is_some();
            self.answer(paused);
        }
    }

    fn accept(&mut self) {
        while let Ok((mut stream, _)) = self.listener.accept() {
            let _ = stream.set_nodelay(true);
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if self
                .poll
                .registry()
                .register(&mut stream, Token(slot), Interest::READABLE)
                .is_err()
            {
                self.free.push(slot);
                continue;
            }
            self.conns[slot] = Some(Conn {
                stream,
                buf: Vec::new(),
                waiting: VecDeque::new(),
                out: Vec::new(),
                close: false,
            });
            // Data may have come with the connection.
            self.read(slot);
        }
    }

    fn read(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        let mut chunk = [0u8; 16 * 1024];
        let mut gone = false;
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    gone = true;
                    break;
                }
                Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        let mut at = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(head)) = req.parse(&conn.buf[at..]) else {
                break;
            };
            let mut length = 0usize;
            let mut close = false;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = h.value.eq_ignore_ascii_case(b"close");
                }
            }
            if conn.buf.len() - at < head + length {
                break;
            }
            let control = match req.path {
                Some("/__residence") => Some(report(&self.measured)),
                Some("/__reset") => {
                    let mut m = self.measured.lock().unwrap_or_else(|e| e.into_inner());
                    m.residence.reset();
                    Some(b"{}".to_vec())
                }
                _ => None,
            };
            conn.waiting.push_back((now, control));
            conn.close |= close;
            at += head + length;
        }
        conn.buf.drain(..at);
        if gone && conn.waiting.is_empty() {
            self.drop_conn(slot);
        } else if gone {
            conn.close = true;
        }
    }

    /// Answers every request waiting, control requests even in a pause.
    fn answer(&mut self, paused: bool) {
        let mut done = Vec::new();
        let mut measured = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, entry) in self.conns.iter_mut().enumerate() {
            let Some(conn) = entry else { continue };
            if conn.waiting.is_empty() {
                continue;
            }
            let now = Instant::now();
            while let Some((read_at, control)) = conn.waiting.front() {
                if paused && control.is_none() {
                    break;
                }
                let body = control.as_deref().unwrap_or(BODY);
                let last = conn.close && conn.waiting.len() == 1;
                let _ = write!(
                    conn.out,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{}\r\n",
                    body.len(),
                    if last { "connection: close\r\n" } else { "" }
                );
                conn.out.extend_from_slice(body);
                if control.is_none() {
                    let us = now.saturating_duration_since(*read_at).as_micros() as u64;
                    let _ = measured.residence.record(us.max(1));
                }
                conn.waiting.pop_front();
            }
            // Responses are small: a loopback socket takes them whole; a
            // client that does not read loses its connection.
            let mut written = 0;
            while written < conn.out.len() {
                match conn.stream.write(&conn.out[written..]) {
                    Ok(0) => break,
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let all = written == conn.out.len();
            conn.out.clear();
            if !all || (conn.close && conn.waiting.is_empty()) {
                done.push(slot);
            }
        }
        drop(measured);
        for slot in done {
            self.drop_conn(slot);
        }
    }

    fn drop_conn(&mut self, slot: usize) {
        if let Some(mut conn) = self.conns[slot].take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.free.push(slot);
        }
    }
}

/// The residence quantiles so far, as JSON.
fn report(measured: &Mutex<Measured>) -> Vec<u8> {
    let m = measured.lock().unwrap_or_else(|e| e.into_inner());
    let h = &m.residence;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "{{\"count\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}}}",
        h.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_schedule_says_when_a_pause_ends() {
        let p = Pauses {
            pause: 2 * MS,
            every: 100 * MS,
        };
        assert_eq!(p.ends(MS), Some(2 * MS));
        assert_eq!(p.ends(3 * MS), None);
        assert_eq!(p.ends(101 * MS), Some(102 * MS));
        assert_eq!(Pauses::default().ends(MS), None);
    }

    #[test]
    fn the_analytic_quantiles_follow_the_share_in_pauses() {
        let p = Pauses {
            pause: 2 * MS,
            every: 100 * MS,
        };
        // 2% of requests meet a pause: p99 is its middle, p99.9 near its end.
        assert_eq!(p.quantile(0.99), MS);
        assert_eq!(p.quantile(0.999), Duration::from_micros(1900));
        assert_eq!(p.quantile(0.9), Duration::ZERO);
    }
}
