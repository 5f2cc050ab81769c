//! Provides the method's search: steps up until the SLO breaks, bisects to
//! the capacity, and concludes: notes on the search, the USL fit from the
//! open-loop steps and the N+1 plan.

use hammer_core::capacity::{instances_needed, Search, Stop, Usl, Verdict};
use hammer_core::result::GENERATOR_LIMIT_MS;
use hammer_core::steps::{round_rate, step_length, usl_point};

use super::scrape::server_notes;
use super::Method;
use crate::{LabError, Plan};

impl Method<'_> {
    /// Steps up, then bisects, until the search ends, the budget runs out
    /// or Ctrl-C.
    pub(super) fn search(&mut self) -> Result<(), LabError> {
        let s = &self.lab.settings;
        let mut search = Search::new(s.start_rate, s.growth, s.precision, s.max_rate);
        while let Some(rate) = search.next_rate() {
            let rate = round_rate(rate);
            let measure = step_length(rate, s.step, s.min_requests, s.max_step);
            if self.lab.stopped() {
                break;
            }
            if self.report.steps.iter().any(|step| step.rate == rate) {
                self.report.notes.push(format!(
                    "the search came back to {rate} req/s; stopped there"
                ));
                break;
            }
            if !self.lab.fits(s.warmup + measure) {
                self.report.notes.push(format!(
                    "the --budget ran out before the step at {rate} req/s; the search is incomplete"
                ));
                break;
            }
            let step = self.measure(rate, measure)?;
            if self.lab.stopped() {
                self.report.notes.push(format!(
                    "interrupted during the step at {rate} req/s (kept, not judged)"
                ));
                self.report.steps.push(step);
                break;
            }
            search.record(rate, step.judgement.verdict);
            self.report.steps.push(step);
        }
        self.report.stopped = search.stopped();
        self.report.capacity = search.capacity();
        Ok(())
    }

    /// Notes on the search, the USL fit and the N+1 plan.
    pub(super) fn conclude(&mut self) {
        if let Some((n, rate, why)) = &self.scrape_failures {
            self.report.notes.push(format!(
                "no server-side view of {n} step(s), the first at {rate} req/s: its /metrics could not be read ({why})"
            ));
        }
        server_notes(&mut self.report);
        let report = &mut self.report;
        if report.stopped == Some(Stop::GeneratorLimited) {
            report.notes.push(format!(
                "hammer could not keep its own schedule (lag p99 > {GENERATOR_LIMIT_MS} ms): the capacity \
                 found is a lower bound; run the generator on another machine or with --shard"
            ));
        }
        if report
            .steps
            .iter()
            .any(|s| s.judgement.generator_lagged && s.judgement.verdict == Verdict::Pass)
        {
            report.notes.push(format!(
                "some passing steps had hammer lagging its schedule by > {GENERATOR_LIMIT_MS} ms p99 \
                 (their latency is, if anything, overstated)"
            ));
        }
        let points: Vec<(f64, f64)> = report
            .steps
            .iter()
            .filter_map(|s| usl_point(&s.result))
            .collect();
        report.usl = Usl::fit(&points);
        report.plan = match (self.lab.settings.expected_load, report.capacity) {
            (Some(expected), Some(c)) if c.rate > 0.0 => Some(Plan {
                expected_load: expected,
                per_instance: c.rate,
                instances: instances_needed(expected, c.rate),
            }),
            _ => None,
        };
    }
}
