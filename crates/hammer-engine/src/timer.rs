//! Provides a wake-up with microsecond precision for the worker's poll loop.
//!
//! epoll timeouts are whole milliseconds, so pacing by them alone would make
//! every request up to 1 ms late. A `timerfd` armed at the absolute due time
//! of the next request, registered in the same poll, wakes the worker on
//! time. It is re-armed only when the due time changes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};

/// A one-shot monotonic timer that wakes a mio poll.
pub struct PreciseTimer {
    fd: OwnedFd,
    /// `Instant` and `CLOCK_MONOTONIC` read together, to translate one to the other.
    base: (Instant, Duration),
    armed: Option<Instant>,
}

fn to_duration(ts: Timespec) -> Duration {
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl PreciseTimer {
    /// Creates the timer and registers it with `registry` under `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        let base = (
            Instant::now(),
            to_duration(clock_gettime(ClockId::Monotonic)),
        );
        Ok(Self {
            fd,
            base,
            armed: None,
        })
    }

    /// Makes sure the timer fires at `at` (at once if `at` has passed).
    pub fn arm(&mut self, at: Instant) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        let mono = self.base.1 + at.saturating_duration_since(self.base.0);
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: mono.as_secs() as i64,
                tv_nsec: i64::from(mono.subsec_nanos()).max(1),
            },
        };
        // Re-arming also resets the expiry count, so the timer never needs reading.
        timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &spec)?;
        self.armed = Some(at);
        Ok(())
    }

    /// Forgets an arming whose time has passed.
    pub fn expire(&mut self, now: Instant) {
        if self.armed.is_some_and(|at| at <= now) {
            self.armed = None;
        }
    }
}
