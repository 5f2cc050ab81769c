//! Provides `hammer report`: merge result files exactly (histograms add)
//! and print the combined report; given a `hammer lab` report.json, print
//! the lab's summary again.

use anyhow::{Context, Result};
use hammer_core::result::RunResult;

use super::{bad_input, parse_slo, print_stdout, Exit};
use crate::cli::{Format, ReportArgs};
use hammer_lab::text;
use hammer_lab::{summary, LabReport};

/// Runs `hammer report`.
pub fn run(args: ReportArgs) -> Result<Exit> {
    let slo = parse_slo(args.slo.as_deref())?;
    let mut results = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
        if args.files.len() == 1 && text.contains("\"targets\"") {
            if let Ok(lab) = serde_json::from_str::<LabReport>(&text) {
                return lab_report(&lab, &args);
            }
        }
        let result: RunResult = serde_json::from_str(&text).map_err(|e| {
            bad_input(format!(
                "{} is not a hammer result file: {e}",
                path.display()
            ))
        })?;
        results.push(result);
    }
    let mut merged = RunResult::merge(&results).map_err(|e| bad_input(e.to_string()))?;
    if let Some(slo) = &slo {
        merged.slo = Some(slo.evaluate(&merged).context("judging the SLO")?);
    }
    match args.format {
        Format::Json => print_stdout(&(serde_json::to_string_pretty(&merged)? + "\n"))?,
        Format::Text => {
            let title = format!("hammer report: {} result file(s) merged", results.len());
            print_stdout(&text::render(&merged, &title))?;
        }
    }
    Ok(match &merged.slo {
        Some(s) if !s.passed => Exit::SloViolated,
        _ => Exit::Ok,
    })
}

/// A `hammer lab` report.json: the lab's summary again, or as JSON every
/// step's result (each one mergeable like an `-o` file).
fn lab_report(lab: &LabReport, args: &ReportArgs) -> Result<Exit> {
    match args.format {
        Format::Text => print_stdout(&summary::render(lab))?,
        Format::Json => {
            let steps: Vec<_> = lab
                .targets
                .iter()
                .flat_map(|t| t.steps.iter().map(|s| &s.result))
                .collect();
            print_stdout(&(serde_json::to_string_pretty(&steps)? + "\n"))?;
        }
    }
    Ok(Exit::Ok)
}
