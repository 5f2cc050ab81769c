//! Provides what the lab pulls from a target's diagnostics listener while
//! the knee step runs: a CPU profile in pprof format (from hammer-diag or
//! Go's net/http/pprof alike), turned into folded stacks, a flame graph
//! (inferno) and a list of the top functions; and a short trace.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pprof::protos::{Message, Profile};
use serde::{Deserialize, Serialize};

/// One function's share of the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopFunction {
    /// Symbolized name.
    pub name: String,
    /// Share of samples with this function on top of the stack, %.
    pub self_pct: f64,
    /// Share of samples with this function anywhere on the stack, %.
    pub total_pct: f64,
}

/// A GET with a bound on the whole exchange; non-2xx is an error with the body's text.
pub fn get(url: &str, timeout: Duration) -> Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(512 << 20)
        .read_to_vec()
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}

/// Decodes a pprof profile (gzip'd or not) into folded stacks, root first:
/// `main;serve;handler 42`, one line per distinct stack.
pub fn folded_stacks(pprof: &[u8]) -> Result<Vec<String>> {
    let raw = if pprof.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(pprof)
            .read_to_end(&mut out)
            .context("gunzipping the profile")?;
        out
    } else {
        pprof.to_vec()
    };
    let profile = Profile::parse_from_bytes(&raw).context("decoding the pprof protobuf")?;
    let text = |i: i64| -> &str {
        profile
            .string_table
            .get(usize::try_from(i).unwrap_or(0))
            .map_or("?", |s| s.as_str())
    };
    let functions: HashMap<u64, &str> = profile
        .function
        .iter()
        .map(|f| (f.id, text(f.name)))
        .collect();
    let locations: HashMap<u64, Vec<&str>> = profile
        .location
        .iter()
        .map(|l| {
            // Lines run from the innermost inlined function to its caller.
            let names = l
                .line
                .iter()
                .map(|line| functions.get(&line.function_id).copied().unwrap_or("?"))
                .collect();
            (l.id, names)
        })
        .collect();
    let mut stacks: HashMap<String, i64> = HashMap::new();
    for sample in &profile.sample {
        let count = sample.value.first().copied().unwrap_or(0);
        if count <= 0 {
            continue;
        }
        // Location ids run from the leaf to the root.
        let frames: Vec<&str> = sample
            .location_id
            .iter()
            .flat_map(|id| locations.get(id).cloned().unwrap_or_default())
            .collect();
        let stack = frames
            .iter()
            .rev()
            .map(|f| f.replace(';', ":"))
            .collect::<Vec<_>>()
            .join(";");
        *stacks.entry(stack).or_default() += count;
    }
    let mut lines: Vec<String> = stacks
        .into_iter()
        .filter(|(s, _)| !s.is_empty())
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    lines.sort();
    Ok(lines)
}

/// The functions taking the most samples on top of the stack.
pub fn top_functions(folded: &[String], n: usize) -> Vec<TopFunction> {
    let mut own: HashMap<&str, i64> = HashMap::new();
    let mut total: HashMap<&str, i64> = HashMap::new();
    let mut all = 0i64;
    for line in folded {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let count: i64 = count.parse().unwrap_or(0);
        all += count;
        let frames: Vec<&str> = stack.split(';').collect();
        if let Some(leaf) = frames.last() {
            *own.entry(leaf).or_default() += count;
        }
        let mut seen = std::collections::HashSet::new();
        for f in frames {
            if seen.insert(f) {
                *total.entry(f).or_default() += count;
            }
        }
    }
    let pct = |v: i64| 100.0 * v as f64 / all.max(1) as f64;
    let mut top: Vec<TopFunction> = own
        .iter()
        .map(|(name, &v)| TopFunction {
            name: name.to_string(),
            self_pct: pct(v),
            total_pct: pct(total.get(name).copied().unwrap_or(v)),
        })
        .collect();
    top.sort_by(|a, b| b.self_pct.total_cmp(&a.self_pct).then(a.name.cmp(&b.name)));
    top.truncate(n);
    top
}

/// Renders folded stacks as an interactive SVG flame graph.
pub fn flame_graph(folded: &[String], title: &str) -> Result<Vec<u8>> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    // Roots at the top: the wide frames are in view without scrolling
    // past deep (e.g. rayon's recursive) stacks.
    options.direction = inferno::flamegraph::Direction::Inverted;
    options.count_name = "samples".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.iter().map(String::as_str), &mut svg)
        .context("rendering the flame graph")?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_functions_count_self_and_total_once_per_sample() {
        let folded = vec![
            "main;serve;parse 30".to_string(),
            "main;serve;query;connect 50".to_string(),
            "main;recurse;recurse 20".to_string(),
        ];
        let top = top_functions(&folded, 10);
        assert_eq!(top[0].name, "connect");
        assert_eq!(top[0].self_pct, 50.0);
        let recurse = top.iter().find(|t| t.name == "recurse").unwrap();
        assert_eq!((recurse.self_pct, recurse.total_pct), (20.0, 20.0));
        assert_eq!(top_functions(&folded, 1).len(), 1);
        let svg = flame_graph(&folded, "t").unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("connect"));
    }
}
