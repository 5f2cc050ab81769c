//! Provides callgrind output from sampled call stacks, for kcachegrind and
//! `callgrind_annotate` (the seed's `(pprof) kcachegrind`). No maintained
//! crate writes this format; it is a few lines of text per function: its
//! file, its own samples by line, then one entry per callee with the
//! samples spent under it, at the line of the call.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// One frame of a sampled stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The function's name (its full path when the debug info has it).
    pub name: String,
    /// Its source file, when known.
    pub file: Option<String>,
    /// The line executing in it (for a caller: the call), 0 when unknown.
    pub line: u32,
}

/// One sampled stack, leaf first, and how many samples it got.
pub struct Stack {
    /// Frames from the sampled (innermost) function outwards.
    pub frames: Vec<Frame>,
    /// Samples of this exact stack.
    pub count: u64,
}

#[derive(Default)]
struct Function {
    file: Option<String>,
    /// Samples in the function itself, by line.
    self_samples: BTreeMap<u32, u64>,
    /// (Callee, line of the call) → (stacks through the call, samples under it).
    calls: BTreeMap<(String, u32), (u64, u64)>,
}

/// Writes the callgrind text for these stacks; the event is `Samples`.
pub fn write(stacks: impl IntoIterator<Item = Stack>) -> String {
    let mut functions: BTreeMap<String, Function> = BTreeMap::new();
    let mut total = 0;
    for stack in stacks {
        let Some(leaf) = stack.frames.first() else {
            continue;
        };
        total += stack.count;
        for frame in &stack.frames {
            let f = functions.entry(frame.name.clone()).or_default();
            if f.file.is_none() {
                f.file.clone_from(&frame.file);
            }
        }
        *functions
            .entry(leaf.name.clone())
            .or_default()
            .self_samples
            .entry(leaf.line)
            .or_default() += stack.count;
        // A recursive stack passes through an edge more than once; its
        // samples count once per edge.
        let mut seen = BTreeSet::new();
        for pair in stack.frames.windows(2) {
            let (callee, caller) = (&pair[0], &pair[1]);
            if seen.insert((&caller.name, &callee.name)) {
                let call = functions
                    .entry(caller.name.clone())
                    .or_default()
                    .calls
                    .entry((callee.name.clone(), caller.line))
                    .or_default();
                call.0 += 1;
                call.1 += stack.count;
            }
        }
    }
    let file_of = |name: &str| {
        functions
            .get(name)
            .and_then(|f| f.file.as_deref())
            .unwrap_or("???")
            .to_string()
    };
    let mut out = String::from("# callgrind format\nversion: 1\ncreator: hammer-diag\n");
    let _ = writeln!(out, "positions: line\nevents: Samples\nsummary: {total}\n");
    for (name, f) in &functions {
        let _ = writeln!(out, "fl={}\nfn={name}", file_of(name));
        if f.self_samples.is_empty() {
            out.push_str("0 0\n");
        }
        for (line, samples) in &f.self_samples {
            let _ = writeln!(out, "{line} {samples}");
        }
        for ((callee, line), (calls, samples)) in &f.calls {
            let _ = writeln!(
                out,
                "cfl={}\ncfn={callee}\ncalls={calls} 0\n{line} {samples}",
                file_of(callee)
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(frames: &[(&str, u32)], count: u64) -> Stack {
        Stack {
            frames: frames
                .iter()
                .map(|&(name, line)| Frame {
                    name: name.to_string(),
                    file: (line > 0).then(|| format!("src/{name}.rs")),
                    line,
                })
                .collect(),
            count,
        }
    }

    #[test]
    fn self_and_inclusive_costs_with_files_and_lines() {
        let text = write([
            stack(&[("leaf", 7), ("mid", 20), ("main", 3)], 3),
            stack(&[("mid", 21), ("main", 3)], 2),
        ]);
        assert!(text.contains("summary: 5"));
        assert!(text.contains("fl=src/leaf.rs\nfn=leaf\n7 3\n"), "{text}");
        assert!(
            text.contains(
                "fl=src/mid.rs\nfn=mid\n21 2\ncfl=src/leaf.rs\ncfn=leaf\ncalls=1 0\n20 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("fn=main\n0 0\ncfl=src/mid.rs\ncfn=mid\ncalls=2 0\n3 5\n"),
            "{text}"
        );
    }

    #[test]
    fn recursion_counts_each_edge_once_per_stack() {
        let text = write([stack(&[("f", 0), ("f", 0), ("f", 0), ("main", 0)], 4)]);
        assert!(text.contains("fl=???\nfn=f\n"), "{text}");
        assert!(text.contains("cfn=f\ncalls=1 0\n0 4\n"), "{text}");
    }
}
