//! Provides what the lab makes of the CPU profile taken at the knee (pprof
//! format, from hammer-diag or Go's net/http/pprof alike): folded stacks
//! and a flame graph (inferno). The top functions are
//! [`hammer_core::readings::top_functions`].

use std::collections::HashMap;
use std::io::Read;

use pprof::protos::{Message, Profile};

use crate::LabError;

/// Decodes a pprof profile (gzip'd or not) into folded stacks, root first:
/// `main;serve;handler 42`, one line per distinct stack.
pub fn folded_stacks(pprof: &[u8]) -> Result<Vec<String>, LabError> {
    let raw = if pprof.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(pprof)
            .read_to_end(&mut out)
            .map_err(|e| LabError::Profile(format!("gunzipping: {e}")))?;
        out
    } else {
        pprof.to_vec()
    };
    let profile = Profile::parse_from_bytes(&raw)
        .map_err(|e| LabError::Profile(format!("decoding the pprof protobuf: {e}")))?;
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

/// Renders folded stacks as an interactive SVG flame graph.
pub fn flame_graph(folded: &[String], title: &str) -> Result<Vec<u8>, LabError> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    // Roots at the top: the wide frames are in view without scrolling
    // past deep (e.g. rayon's recursive) stacks.
    options.direction = inferno::flamegraph::Direction::Inverted;
    options.count_name = "samples".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.iter().map(String::as_str), &mut svg)
        .map_err(|e| LabError::Draw {
            what: "the flame graph".into(),
            reason: e.to_string(),
        })?;
    Ok(svg)
}

/// Renders what changed from `before` to `after` (folded stacks) as a
/// differential flame graph: the shape is `after`'s, red where a stack
/// grew and blue where it shrank, `before` scaled to the same total
/// (inferno's diff-folded, Brendan Gregg's differential flame graphs).
pub fn diff_flame_graph(
    before: &[String],
    after: &[String],
    title: &str,
) -> Result<Vec<u8>, LabError> {
    let draw = |reason: String| LabError::Draw {
        what: "the differential flame graph".into(),
        reason,
    };
    let (before, after) = (before.join("\n"), after.join("\n"));
    let mut diff = Vec::new();
    let options = inferno::differential::Options {
        normalize: true,
        strip_hex: false,
    };
    inferno::differential::from_readers(options, before.as_bytes(), after.as_bytes(), &mut diff)
        .map_err(|e| draw(e.to_string()))?;
    let diff = String::from_utf8_lossy(&diff);
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.direction = inferno::flamegraph::Direction::Inverted;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, diff.lines(), &mut svg)
        .map_err(|e| draw(e.to_string()))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pprof::protos::{Function, Line, Location, Sample};

    /// A profile of two stacks: main→serve (inlined parse) ×3, main→idle ×1.
    fn profile() -> Vec<u8> {
        let mut p = Profile::new();
        p.string_table = ["", "main", "serve", "parse", "idle"]
            .map(String::from)
            .to_vec();
        p.function = (1..=4)
            .map(|i| {
                let mut f = Function::new();
                f.id = i;
                f.name = i as i64;
                f
            })
            .collect();
        let location = |id: u64, functions: &[u64]| {
            let mut l = Location::new();
            l.id = id;
            l.line = functions
                .iter()
                .map(|&f| {
                    let mut line = Line::new();
                    line.function_id = f;
                    line
                })
                .collect();
            l
        };
        // Location 2 is parse inlined into serve: innermost first.
        p.location = vec![location(1, &[1]), location(2, &[3, 2]), location(3, &[4])];
        let sample = |ids: &[u64], n: i64| {
            let mut s = Sample::new();
            s.location_id = ids.to_vec();
            s.value = vec![n];
            s
        };
        p.sample = vec![sample(&[2, 1], 3), sample(&[3, 1], 1), sample(&[3, 1], 0)];
        p.write_to_bytes().unwrap()
    }

    #[test]
    fn folded_stacks_run_root_first_with_inlined_frames_and_read_gzip() {
        let raw = profile();
        let folded = folded_stacks(&raw).unwrap();
        assert_eq!(folded, vec!["main;idle 1", "main;serve;parse 3"]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        assert_eq!(folded_stacks(&gz.finish().unwrap()).unwrap(), folded);
        assert!(matches!(
            folded_stacks(&[0x1f, 0x8b, 0]),
            Err(LabError::Profile(_))
        ));
        let svg = flame_graph(&folded, "t").unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("parse"));
    }
}
