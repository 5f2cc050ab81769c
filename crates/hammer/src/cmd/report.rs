//! Provides `hammer report`: merge result files exactly (histograms add)
//! and print the combined report; given a `hammer lab` report.json, print
//! the lab's summary again.

use anyhow::Result;
use hammer_core::result::{Kind, RunResult};

use super::{bad_input, parse_slo, print_stdout, Exit};
use crate::cli::{Format, ReportArgs};
use hammer_lab::text;
use hammer_lab::{summary, LabReport};

/// The field that says what a hammer JSON file holds.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    kind: Kind,
}

/// Runs `hammer report`.
pub fn run(args: ReportArgs) -> Result<Exit> {
    let slo = parse_slo(args.slo.as_deref())?;
    let mut results = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("cannot read {}: {e}", path.display())))?;
        let kind = serde_json::from_str::<Head>(&text).map_or(Kind::Run, |h| h.kind);
        if kind == Kind::Lab {
            if args.files.len() > 1 {
                return Err(bad_input(format!(
                    "{} is a hammer lab report: give it alone (its steps merge with --format json)",
                    path.display()
                )));
            }
            let lab: LabReport = serde_json::from_str(&text).map_err(|e| {
                bad_input(format!(
                    "{} is not a hammer lab report: {e}",
                    path.display()
                ))
            })?;
            return lab_report(&lab, &args);
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
        merged.slo = Some(merged.judge(slo));
    }
    let incomplete = !merged.missing_shards.is_empty();
    match args.format {
        Format::Json => print_stdout(&(serde_json::to_string_pretty(&merged)? + "\n"))?,
        Format::Text => {
            let title = format!("hammer report: {} result file(s) merged", results.len());
            print_stdout(&text::render(&merged, &title))?;
        }
    }
    if incomplete {
        // Said last, on stderr too: a CI gate must not pass on part of a run.
        eprintln!(
            "incomplete: shard(s) {} of {} missing; every figure above lacks their requests",
            list(&merged.missing_shards),
            results.first().and_then(|r| r.shard).map_or(0, |s| s.count)
        );
        return Ok(Exit::Incomplete);
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

/// `1, 3` for the shard list.
fn list(shards: &[u64]) -> String {
    shards
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
