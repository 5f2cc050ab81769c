//! Provides the live progress line: elapsed time or requests done, the
//! last second's rate and p99, and errors so far. Drawn only on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use hammer_core::histogram::quantile_ms;
use hammer_core::recorder::Recorder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use hammer_lab::format::fmt_ms;

/// What the bar counts towards.
pub enum Goal {
    /// A known duration.
    Time(Duration),
    /// A known number of requests.
    Requests(u64),
    /// Until stopped.
    Open,
}

/// The progress display of one run.
pub struct Progress {
    bar: ProgressBar,
    goal: Goal,
    done: u64,
    errors: u64,
}

impl Progress {
    /// A progress line on stderr, hidden when `quiet` or not a terminal.
    pub fn new(goal: Goal, quiet: bool) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let bar = match goal {
            Goal::Time(d) => ProgressBar::new(d.as_millis() as u64),
            Goal::Requests(n) => ProgressBar::new(n),
            Goal::Open => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let template = match goal {
            Goal::Open => "{spinner} {elapsed_precise} {msg}",
            _ => "{elapsed_precise} [{wide_bar}] {percent:>3}% {msg}",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("static template")
                .progress_chars("=> "),
        );
        Self {
            bar,
            goal,
            done: 0,
            errors: 0,
        }
    }

    /// Shows one interval's measurements.
    pub fn update(&mut self, interval: &Recorder, interval_len: Duration, elapsed: Duration) {
        self.done += interval.completed();
        self.errors += interval.failed();
        let rate = interval.completed() as f64 / interval_len.as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{rate:>8.0} req/s  p99 {:>8}  done {}  failed {}",
            fmt_ms(quantile_ms(interval.latency(), 0.99)),
            self.done,
            self.errors
        ));
        match self.goal {
            Goal::Time(_) => self.bar.set_position(elapsed.as_millis() as u64),
            Goal::Requests(_) => self.bar.set_position(self.done),
            Goal::Open => self.bar.tick(),
        }
    }

    /// Removes the line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
