//! Provides what a worker measures and hands over: its recorders (the
//! current interval, the whole run, and the warm-up it throws away) and the
//! [`Shared`] hand-over the run reads every [`FLUSH_EVERY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hammer_core::recorder::Recorder;

/// How often a worker hands over its measurements and gauges.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// What a worker hands over while it runs, every [`FLUSH_EVERY`]: its
/// measurements since the last hand-over, and its gauges as they were then.
#[derive(Default)]
pub struct Shared {
    /// Measurements not yet taken by [`crate::Run::take_interval`].
    pub recorder: Mutex<Recorder>,
    open: AtomicU64,
    in_flight: AtomicU64,
    opened: AtomicU64,
}

impl Shared {
    /// Publishes a worker's gauges.
    pub fn publish(&self, open: u64, in_flight: u64, opened: u64) {
        self.open.store(open, Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
        self.opened.store(opened, Ordering::Relaxed);
    }

    /// Adds this worker's gauges to `to`.
    pub fn add_gauges(&self, to: &mut crate::Gauges) {
        to.open += self.open.load(Ordering::Relaxed);
        to.in_flight += self.in_flight.load(Ordering::Relaxed);
        to.opened += self.opened.load(Ordering::Relaxed);
    }
}

/// A worker's recorders.
pub struct Tally {
    interval: Recorder,
    total: Recorder,
    /// What the warm-up measured, thrown away at each hand-over.
    warmup: Recorder,
    /// Requests due before this are sent but not measured.
    measure_from: Option<Instant>,
}

impl Tally {
    /// Empty recorders; requests due before `measure_from` go to the warm-up.
    pub fn new(measure_from: Option<Instant>) -> Self {
        Self {
            interval: Recorder::new(),
            total: Recorder::new(),
            warmup: Recorder::new(),
            measure_from,
        }
    }

    /// Where a request due at `intended` is recorded: the interval, or the
    /// discarded warm-up before `measure_from`.
    #[inline]
    pub fn at(&mut self, intended: Instant) -> &mut Recorder {
        if self.measure_from.is_some_and(|t| intended < t) {
            &mut self.warmup
        } else {
            &mut self.interval
        }
    }

    /// Adds the interval to the whole run's and to `shared`, and starts the
    /// next; the warm-up's measurements are dropped.
    pub fn hand_over(&mut self, shared: &Shared) {
        self.warmup.clear();
        self.total.add(&self.interval);
        shared
            .recorder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&self.interval);
        self.interval.clear();
    }

    /// Everything measured, once the last interval is handed over.
    pub fn into_total(self) -> Recorder {
        self.total
    }
}
