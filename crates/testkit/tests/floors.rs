//! Floors inside the crates: in each crate's `src/`, no module uses one that
//! uses it back, however far round (a circle of `use crate::…` and
//! `super::…` paths), and no file outside tests is over 600 lines. A module
//! that the middleware needs must not need the middleware back: put shared
//! state and small helpers on the lowest floor that uses them.
//!
//! Each `.rs` file is a module; a path names the longest module prefix that
//! is a file. `lib.rs`/`main.rs` (which only declare and re-export) and a
//! file's inline `#[cfg(test)]` part (tests may reach anywhere) are left
//! out. `cargo test -p testkit --test floors` prints the floors it found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may grow before it hides a missing concept.
const MAX_LINES: usize = 600;

type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `src`, by module path.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(src).unwrap().with_extension("");
            let mut m: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if m.last().is_some_and(|l| l == "mod") {
                m.pop();
            }
            if m == ["lib"] || m == ["main"] {
                m.clear();
            }
            (m, f)
        })
        .collect()
}

/// The code of a file that counts: comments and its inline tests removed.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `crate::…`/`super::…` paths in `code`, with `use crate::{a, b::{c,
/// d}}` groups spread out at any depth: (root word, the names after it).
fn paths(code: &str) -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for root in ["crate", "super"] {
        let needle = format!("{root}::");
        let mut at = 0;
        while let Some(found) = code[at..].find(&needle) {
            let start = at + found;
            at = start + needle.len();
            if start > 0 && code[..start].ends_with(ident) {
                continue;
            }
            let mut spread_out = Vec::new();
            spread(&[], &code[at..], &mut spread_out);
            out.extend(spread_out.into_iter().map(|names| (root, names)));
        }
    }
    out
}

fn ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths `rest` names after `prefix` (`a::b`, `a::{b, c::d}`, `self`).
fn spread(prefix: &[String], rest: &str, out: &mut Vec<Vec<String>>) {
    let mut names = prefix.to_vec();
    let mut tail = rest.trim_start();
    loop {
        if let Some(group) = tail.strip_prefix('{') {
            let mut depth = 0usize;
            let mut from = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    ',' | '}' if depth == 0 => {
                        spread(&names, &group[from..i], out);
                        if c == '}' {
                            return;
                        }
                        from = i + 1;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            return;
        }
        let len = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
        if len == 0 {
            break;
        }
        if &tail[..len] != "self" {
            names.push(tail[..len].to_string());
        }
        match tail[len..].strip_prefix("::") {
            Some(more) => tail = more.trim_start(),
            None => break,
        }
    }
    if !names.is_empty() {
        out.push(names);
    }
}

/// Which modules each module uses.
fn edges(mods: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    mods.iter()
        .map(|(m, file)| {
            let text = code(&std::fs::read_to_string(file).unwrap());
            let is_dir_module = file.file_name().is_some_and(|n| n == "mod.rs") || m.is_empty();
            // Where `super` points: the parent of a file's own module.
            let here: Module = if is_dir_module {
                m.clone()
            } else {
                m[..m.len().saturating_sub(1)].to_vec()
            };
            let mut to = BTreeSet::new();
            for (root, names) in paths(&text) {
                let base: Module = match root {
                    "crate" => Vec::new(),
                    _ if is_dir_module => m[..m.len().saturating_sub(1)].to_vec(),
                    _ => here.clone(),
                };
                let full: Module = base.into_iter().chain(names).collect();
                let target = (1..=full.len())
                    .rev()
                    .map(|n| full[..n].to_vec())
                    .find(|prefix| mods.contains_key(prefix));
                if let Some(t) = target.filter(|t| t != m && !t.is_empty()) {
                    to.insert(t);
                }
            }
            (m.clone(), to)
        })
        .collect()
}

/// Sets of two or more modules that reach each other (Tarjan's algorithm).
fn circles(g: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        g: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for w in &s.g[v] {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if s.on.contains(w) {
                let iw = s.index[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn crates() -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().join("src"),
            )
        })
        .filter(|(_, src)| src.is_dir())
        .collect();
    out.sort();
    out
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("/")
    }
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let mut found = Vec::new();
    for (krate, src) in crates() {
        let g = edges(&modules(&src));
        // The floors, for whoever runs this with --nocapture.
        for (m, to) in &g {
            let to: Vec<String> = to.iter().map(name).collect();
            println!("{krate}: {} -> {}", name(m), to.join(" "));
        }
        for comp in circles(&g) {
            let names: Vec<String> = comp.iter().map(name).collect();
            found.push(format!("{krate}: {}", names.join(" <-> ")));
        }
    }
    assert!(
        found.is_empty(),
        "modules in a circle:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("log")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod log;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::log::{text::Line, Format};\n").unwrap();
    std::fs::write(src.join("log/mod.rs"), "mod text;\n").unwrap();
    std::fs::write(
        src.join("log/text.rs"),
        "// use crate::a; in a comment does not count\nfn f() { crate::a::g() }\n",
    )
    .unwrap();
    let g = edges(&modules(src));
    let text: Module = vec!["log".into(), "text".into()];
    assert!(g[&vec!["a".to_string()]].contains(&text), "{g:?}");
    assert_eq!(circles(&g).len(), 1, "{g:?}");
    // Without the way back, none.
    std::fs::write(
        src.join("log/text.rs"),
        "fn f() {}\n#[cfg(test)]\nuse crate::a;\n",
    )
    .unwrap();
    assert!(circles(&edges(&modules(src))).is_empty());
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut long = Vec::new();
    for (krate, src) in crates() {
        for file in modules(&src).values() {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            if lines > MAX_LINES {
                long.push(format!("{krate}: {} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (each usually hides a missing concept):\n{}",
        long.join("\n")
    );
}
