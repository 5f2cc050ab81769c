//! Provides callgrind output from sampled call stacks, for kcachegrind and
//! `callgrind_annotate` (the seed's `(pprof) kcachegrind`). No maintained
//! crate writes this format; it is a few lines of text per function: its
//! own samples, then one entry per callee with the samples spent under it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// One sampled stack, leaf first, and how many samples it got.
pub struct Stack {
    /// Function names from the sampled (innermost) function outwards.
    pub frames: Vec<String>,
    /// Samples of this exact stack.
    pub count: u64,
}

#[derive(Default)]
struct Function {
    self_samples: u64,
    /// Callee → (stacks through the call, samples under it).
    calls: BTreeMap<String, (u64, u64)>,
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
        functions.entry(leaf.clone()).or_default().self_samples += stack.count;
        // A recursive stack passes through an edge more than once; its
        // samples count once per edge.
        let mut seen = BTreeSet::new();
        for pair in stack.frames.windows(2) {
            let (callee, caller) = (&pair[0], &pair[1]);
            if seen.insert((caller, callee)) {
                let call = functions
                    .entry(caller.clone())
                    .or_default()
                    .calls
                    .entry(callee.clone())
                    .or_default();
                call.0 += 1;
                call.1 += stack.count;
            }
        }
    }
    let mut out = String::from("# callgrind format\nversion: 1\ncreator: hammer-diag\n");
    let _ = writeln!(out, "positions: line\nevents: Samples\nsummary: {total}\n");
    for (name, f) in &functions {
        let _ = writeln!(out, "fl=???\nfn={name}\n0 {}", f.self_samples);
        for (callee, (calls, samples)) in &f.calls {
            let _ = writeln!(out, "cfl=???\ncfn={callee}\ncalls={calls} 0\n0 {samples}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(frames: &[&str], count: u64) -> Stack {
        Stack {
            frames: frames.iter().map(|s| s.to_string()).collect(),
            count,
        }
    }

    #[test]
    fn self_and_inclusive_costs() {
        let text = write([
            stack(&["leaf", "mid", "main"], 3),
            stack(&["mid", "main"], 2),
        ]);
        assert!(text.contains("summary: 5"));
        assert!(text.contains("fn=leaf\n0 3\n"), "{text}");
        assert!(
            text.contains("fn=mid\n0 2\ncfl=???\ncfn=leaf\ncalls=1 0\n0 3\n"),
            "{text}"
        );
        assert!(
            text.contains("fn=main\n0 0\ncfl=???\ncfn=mid\ncalls=2 0\n0 5\n"),
            "{text}"
        );
    }

    #[test]
    fn recursion_counts_each_edge_once_per_stack() {
        let text = write([stack(&["f", "f", "f", "main"], 4)]);
        assert!(text.contains("cfn=f\ncalls=1 0\n0 4\n"), "{text}");
    }
}
