//! Provides [`Lab`], the method run on one target: steps up until the SLO
//! breaks, bisection to the capacity, notes on the search, the USL fit and
//! the N+1 plan, then the knee profiled from the target's diagnostics while
//! the knee rate runs again. Each target's run is a [`Method`] value that
//! holds what its steps share, so no step threads eight parameters.
//!
//! Here: the lab, the method's state and one step ([`Method::measure`]).
//! Its parts are its own files: the search and its conclusions
//! ([`search`]), the closed-loop sweep ([`sweep`]), the knee's profiles
//! ([`knee`]) and the service's own view ([`scrape`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hammer_core::capacity::judge;

use crate::server::ServerView;
use crate::{About, Diagnostics, LabError, Observer, Settings, StepRecord, Target, TargetReport};
use scrape::{scrape_step, Scraped};

mod knee;
mod scrape;
mod search;
mod sweep;

/// Sampling rate of the knee's CPU profile (hammer-diag takes `hz`; Go's
/// net/http/pprof ignores it and samples at 100 Hz).
const PROFILE_HZ: u64 = 499;

/// Functions listed from the knee's profile.
const TOP_FUNCTIONS: usize = 15;

/// The lab: how the method runs, where knee files go, when to stop.
#[derive(Debug, Clone)]
pub struct Lab {
    settings: Settings,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    deadline: Instant,
}

impl Lab {
    /// A lab that writes knee files into `dir`, stops when `stop` is set
    /// (reporting what ran) and starts no step that would end past `deadline`.
    pub fn new(settings: Settings, dir: &Path, stop: Arc<AtomicBool>, deadline: Instant) -> Lab {
        Lab {
            settings,
            dir: dir.to_path_buf(),
            stop,
            deadline,
        }
    }

    /// Runs the method on `target`, profiling its knee through
    /// `diagnostics` when given.
    pub fn run(
        &self,
        about: &About,
        target: &dyn Target,
        diagnostics: Option<&dyn Diagnostics>,
        observer: &mut dyn Observer,
    ) -> Result<TargetReport, LabError> {
        let mut method = Method {
            lab: self,
            about,
            target,
            diagnostics,
            scrape: true,
            scrape_failures: None,
            observer,
            report: TargetReport {
                name: about.name.clone(),
                request: about.request.clone(),
                version: about.version.clone(),
                slo: self.settings.slo.clone(),
                steps: Vec::new(),
                capacity: None,
                stopped: None,
                knee: None,
                usl: None,
                sweep: None,
                plan: None,
                notes: Vec::new(),
            },
        };
        method.search()?;
        method.conclude();
        match diagnostics {
            Some(diagnostics) => method.report.knee = method.knee(diagnostics)?,
            None if method.profile_rate().is_some() => method.report.notes.push(
                "no profile at the knee: give --diag URL of the target's diagnostics listener"
                    .into(),
            ),
            None => {}
        }
        method.sweep()?;
        Ok(method.report)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether `length` more of running fits in the budget.
    fn fits(&self, length: Duration) -> bool {
        Instant::now() + length <= self.deadline
    }
}

/// The method on one target, in progress.
struct Method<'a> {
    lab: &'a Lab,
    about: &'a About,
    target: &'a dyn Target,
    diagnostics: Option<&'a dyn Diagnostics>,
    /// Whether steps scrape the service's `/metrics` (no longer once it
    /// turned out to have no such histogram, said in a note).
    scrape: bool,
    /// Steps whose first scrape failed: how many, the first one's rate and why.
    scrape_failures: Option<(usize, f64, String)>,
    observer: &'a mut dyn Observer,
    report: TargetReport,
}

impl Method<'_> {
    /// Runs and judges one step at `rate`, measured for `measure`, while
    /// a second thread scrapes the service's `/metrics` once a second (from
    /// the end of the warm-up to a last scrape after the step) for its own
    /// view of the step.
    fn measure(&mut self, rate: f64, measure: Duration) -> Result<StepRecord, LabError> {
        let s = &self.lab.settings;
        self.observer.step_started(&self.about.name, rate, measure);
        let mut timeline = Vec::new();
        let observer = &mut *self.observer;
        let target = self.target;
        let stop = &self.lab.stop;
        let diagnostics = self.diagnostics.filter(|_| self.scrape);
        let (result, scraped) = std::thread::scope(|scope| {
            let (done, finished) = std::sync::mpsc::channel::<()>();
            let scraper = diagnostics.map(|d| {
                scope.spawn(move || scrape_step(d, &s.server_histogram, s.warmup, &finished))
            });
            let result = target.step(rate, s.warmup, measure, stop, &mut |tick| {
                observer.tick(&tick);
                timeline.push(tick);
            });
            drop(done);
            let scraped = scraper.map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Scraped::Failed("the scraping thread panicked".into())))
            });
            (result, scraped)
        });
        let mut result = result.map_err(|source| LabError::Step { rate, source })?;
        let verdict = result.judge(&s.slo);
        let server = match scraped {
            Some(Ok(samples)) => ServerView::from_samples(&samples),
            Some(Err(Scraped::NoHistogram)) => {
                self.scrape = false;
                self.report.notes.push(format!(
                    "no server-side view: the service's /metrics has no {} histogram \
                     (name the one it has with --server-histogram)",
                    s.server_histogram
                ));
                None
            }
            Some(Err(Scraped::Failed(why))) => {
                let failed = self.scrape_failures.get_or_insert((0, rate, why));
                failed.0 += 1;
                None
            }
            None => None,
        };
        let judgement = judge(&result, &verdict, s.max_error_rate);
        result.slo = Some(verdict);
        let step = StepRecord {
            rate,
            judgement,
            low_confidence: result.requests < s.min_requests,
            result,
            timeline,
            server,
        };
        if !self.lab.stopped() {
            self.observer.step_done(&step);
        }
        Ok(step)
    }

    /// Writes `<slug>-<what>` into the report directory; returns its name.
    fn write(&self, what: &str, bytes: &[u8]) -> Result<String, LabError> {
        let name = format!("{}-{what}", self.about.slug);
        let path = self.lab.dir.join(&name);
        std::fs::write(&path, bytes).map_err(LabError::write(path))?;
        Ok(name)
    }
}
