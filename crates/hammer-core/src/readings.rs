//! Provides what the lab reads out of a service's diagnostics once fetched:
//! a sample's value from Prometheus text, and the functions that take the
//! most time in a profile's folded stacks (`main;serve;handler 42`).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// The value of the first sample of `metric` without labels in Prometheus
/// text exposition (`process_cpu_seconds_total 12.5`), if there is one.
pub fn metric_value(text: &str, metric: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?;
        // `metric_other 1` and `metric{...} 1` are other series.
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One function's share of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopFunction {
    /// Symbolized name.
    pub name: String,
    /// Share of samples with this function on top of the stack, %.
    pub self_pct: f64,
    /// Share of samples with this function anywhere on the stack, %.
    pub total_pct: f64,
}

/// The `n` functions with the most samples on top of the stack, from folded
/// stacks (root first, `;`-separated, then a space and the count). A
/// function that recurses counts once per sample in its total.
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
        let mut seen = HashSet::new();
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
        assert_eq!(top[0].total_pct, 50.0);
        let recurse = top.iter().find(|t| t.name == "recurse").unwrap();
        assert_eq!((recurse.self_pct, recurse.total_pct), (20.0, 20.0));
        assert_eq!(top_functions(&folded, 1).len(), 1);
        assert!(top_functions(&[], 5).is_empty());
    }

    #[test]
    fn metric_value_reads_only_the_unlabelled_series_of_that_name() {
        let text = "# HELP process_cpu_seconds_total CPU.\n\
                    # TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total_extra 9\n\
                    process_cpu_seconds_total{mode=\"user\"} 7\n\
                    process_cpu_seconds_total 12.5\n";
        assert_eq!(metric_value(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(metric_value(text, "missing"), None);
        assert_eq!(metric_value("x nan-ish\n", "x"), None);
    }
}
