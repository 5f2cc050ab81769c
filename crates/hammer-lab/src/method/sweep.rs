//! Provides the method's closed-loop sweep: 1, 2, 4, … connections until
//! goodput stops growing; its USL fit replaces the open-loop steps'.

use std::time::Duration;

use super::Method;
use crate::sweep;
use crate::LabError;

/// Doublings in a row whose errors pass the limit that end the sweep: a
/// service that sheds (fast 503s) past some concurrency keeps its goodput
/// there, and the fit needs those points; a service that fails outright
/// costs two more short steps.
const SHED_POINTS: usize = 3;

impl Method<'_> {
    /// The closed-loop sweep for the scalability fit: 1, 2, 4, …
    /// connections until goodput stops growing, errors pass the limit at
    /// [`SHED_POINTS`] doublings in a row, --sweep-max, the budget or
    /// Ctrl-C; its fit replaces the open-loop steps' (which stays when the
    /// sweep has too few points).
    pub(super) fn sweep(&mut self) -> Result<(), LabError> {
        let s = &self.lab.settings;
        if !s.sweep || self.lab.stopped() {
            return Ok(());
        }
        let warmup = Duration::from_millis(500);
        let mut points = Vec::new();
        let mut connections = 1;
        let stopped = loop {
            if connections > s.sweep_max {
                break format!("reached --sweep-max {}", s.sweep_max);
            }
            if !self.lab.fits(warmup + s.sweep_step) {
                break "the --budget ran out".to_string();
            }
            if self.lab.stopped() {
                break "interrupted".to_string();
            }
            self.observer.note(&format!(
                "closed loop, {connections} connection(s), {:?}",
                s.sweep_step
            ));
            let Some(result) =
                self.target
                    .closed_step(connections, warmup, s.sweep_step, &self.lab.stop)
            else {
                return Ok(());
            };
            let result = result.map_err(|source| LabError::Sweep {
                connections,
                source,
            })?;
            let point = sweep::SweepPoint::of(connections, &result);
            self.observer.note(&format!(
                "  {connections} connection(s): {:.1} good req/s, p99 {:.2} ms, {} failed",
                point.throughput, point.p99_ms, point.failed
            ));
            points.push(point);
            let failing = points
                .iter()
                .rev()
                .take_while(|p| p.failed_share() > s.max_error_rate)
                .count();
            if failing >= SHED_POINTS {
                let first = points[points.len() - failing].connections;
                break format!(
                    "requests failed past the limit from {first} connections on \
                     ({:.1}% at {connections})",
                    100.0 * result.error_rate()
                );
            }
            if sweep::stopped_growing(&points) {
                break "throughput stopped growing".to_string();
            }
            connections *= 2;
        };
        let swept = sweep::Sweep::conclude(points, stopped);
        if swept.usl.is_some() {
            self.report.usl = swept.usl;
        }
        if swept.fit_is_exact() {
            self.report.notes.push(format!(
                "the closed-loop sweep has {} points ({}): the USL curve passes through them \
                 exactly, so its R² says nothing and its predicted peak is a guess; use the \
                 measured peak",
                swept.points.len(),
                swept.stopped
            ));
        }
        self.report.sweep = Some(swept);
        Ok(())
    }
}
