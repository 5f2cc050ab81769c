//! Provides the service's own view of each step: its `/metrics` scraped at
//! the end of the warm-up, once a second and after the step, and the notes
//! where its view and hammer's differ.

use std::time::{Duration, Instant};

use hammer_core::capacity::Verdict;

use crate::server::{self};
use crate::{Diagnostics, TargetReport};

/// What the service's own view says that hammer's does not: the lowest rate
/// where hammer's p99 sat far above the service's (time outside the
/// handler), and the first passing step where the service counted far
/// more or fewer requests than hammer sent.
pub(super) fn server_notes(report: &mut TargetReport) {
    let gap = report
        .steps
        .iter()
        .filter_map(|s| {
            let view = &s.server.as_ref()?.whole;
            let hammer = s.result.latency_ms.p99;
            let gap = server::gap_ms(hammer, view)?;
            Some((s.rate, hammer, view.p99_ms?, view.p99_at_most_ms?, gap))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((rate, hammer, own, at_most, gap)) = gap {
        report.notes.push(format!(
            "from {rate} req/s hammer's p99 ({hammer:.1} ms) is far above the service's own ({own:.1} ms \
             from its histogram, at most {at_most:.0} ms): at least {gap:.1} ms of the slowest requests \
             went outside the handler, in the accept queue, the network or hammer itself"
        ));
    }
    // Counts, not rates: the service's window runs from the end of the
    // warm-up to a scrape after the step's last answer, hammer's over the
    // requests it sent in the measured part; over a passing step the two
    // hold the same requests.
    let apart = report
        .steps
        .iter()
        .filter(|s| s.judgement.verdict == Verdict::Pass)
        .find_map(|s| {
            let counted = s.server.as_ref()?.whole.requests;
            let sent = s.result.requests as f64;
            ((counted - sent).abs() > (0.1 * sent).max(20.0)).then_some((s.rate, counted, sent))
        });
    if let Some((rate, counted, sent)) = apart {
        report.notes.push(format!(
            "at {rate} req/s the service counted {counted:.0} requests while hammer sent {sent:.0}: \
             something between them (another client, a proxy, requests its histogram does not see) \
             makes the two views differ"
        ));
    }
}

/// Why a step has no server-side view.
pub(super) enum Scraped {
    /// The service exports no such histogram.
    NoHistogram,
    /// Its `/metrics` could not be read at the start of the step.
    Failed(String),
}

/// Scrapes `/metrics` at the end of the warm-up, then once a second, then
/// once more when `finished` says the step is over (or hangs up). A scrape
/// that fails after the first is skipped: an overloaded service may answer
/// its diagnostics late, and the view then rests on the scrapes it answered.
pub(super) fn scrape_step(
    diagnostics: &dyn Diagnostics,
    histogram: &str,
    warmup: Duration,
    finished: &std::sync::mpsc::Receiver<()>,
) -> Result<Vec<server::Sample>, Scraped> {
    use std::sync::mpsc::RecvTimeoutError;
    let over =
        |wait: Duration| !matches!(finished.recv_timeout(wait), Err(RecvTimeoutError::Timeout));
    let scrape = || {
        let text = diagnostics
            .metrics()
            .map_err(|e| Scraped::Failed(e.to_string()))?;
        server::Sample::parse(&text, histogram, Instant::now()).ok_or(Scraped::NoHistogram)
    };
    let mut done = over(warmup);
    let mut samples = vec![scrape()?];
    let mut next = Instant::now();
    loop {
        // The last scrape is the one after the step ended.
        if !done {
            next += Duration::from_secs(1);
            done = over(next.saturating_duration_since(Instant::now()));
        }
        if let Ok(sample) = scrape() {
            samples.push(sample);
        }
        if done {
            return Ok(samples);
        }
    }
}
