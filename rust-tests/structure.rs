//! The project's shape, checked: the layers of ARCHITECTURE.md depend on each other only
//! inward, there are no import cycles between the crate's top-level modules, no glob
//! imports in the process layer, and no source file over 800 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// Modules of the core: they must not name a face.
const CORE: &[&str] = &[
    "process", "reactor", "channel", "registry", "wire", "sigsafe",
];
const FACES: &[&str] = &["capi", "api"];
/// What the reactor (the event-loop seam and its backends) may use: nothing of IPC.
const REACTOR_MAY_USE: &[&str] = &["abi", "log", "sys", "melon"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, exts, out);
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| exts.contains(&x))
        {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("non-empty");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// Top-level modules named as `crate::<name>` in `text` (comments included: a doc link to
/// a face is a dependency too).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// The cycles of `g` (depth-first search with colours), each as `a -> b -> a`.
fn find_cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        match state.get(n).copied() {
            Some(2) => return,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                cycles.push(format!("{} -> {n}", path[start..].join(" -> ")));
                return;
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            visit(m, g, state, path, cycles);
        }
        path.pop();
        state.insert(n.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for n in g.keys() {
        visit(n, g, &mut state, &mut Vec::new(), &mut cycles);
    }
    cycles
}

/// Sibling modules named in `text` as `super::<name>`, including every path of a
/// `use super::{a, b::c, ...}` group.
fn super_refs(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("super::") {
        rest = &rest[i + "super::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        out.insert(ident(group[start..k].trim_start()));
                        start = k + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// `src/process/` in layers: no file calls a file that calls back into it (loop callbacks
/// on top, the state machine and the records at the bottom; `mod.rs` puts them together
/// and is left out).
#[test]
fn process_files_call_one_way() {
    let dir = root().join("src/process");
    let mut rs = Vec::new();
    files(&dir, &["rs"], &mut rs);
    let names: BTreeSet<String> = rs
        .iter()
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|n| n != "mod")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &rs {
        let m = f.file_stem().unwrap().to_string_lossy().into_owned();
        if m == "mod" {
            continue;
        }
        let refs = super_refs(&fs::read_to_string(f).unwrap());
        graph
            .entry(m.clone())
            .or_default()
            .extend(refs.into_iter().filter(|r| names.contains(r) && *r != m));
    }
    // The check sees the edges it must: the top calls down.
    assert!(graph["callbacks"].contains("recv"), "{graph:?}");
    let cycles = find_cycles(&graph);
    assert!(
        cycles.is_empty(),
        "files of src/process/ calling each other in a circle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn layers_and_no_cycles() {
    let src = root().join("src");
    let mut rs = Vec::new();
    files(&src, &["rs"], &mut rs);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in &rs {
        let m = module_of(&src, f);
        let text = fs::read_to_string(f).unwrap();
        let refs = crate_refs(&text);
        for r in &refs {
            if CORE.contains(&m.as_str()) && FACES.contains(&r.as_str()) {
                problems.push(format!(
                    "{}: core module `{m}` names face `{r}`",
                    f.display()
                ));
            }
            if m == "reactor" && !REACTOR_MAY_USE.contains(&r.as_str()) && r != "reactor" {
                problems.push(format!("{}: the reactor names `{r}`", f.display()));
            }
        }
        if m == "process" && text.contains("use super::*") {
            problems.push(format!("{}: glob import", f.display()));
        }
        graph
            .entry(m.clone())
            .or_default()
            .extend(refs.into_iter().filter(|r| *r != m && r != "lib"));
    }
    let cycles = find_cycles(&graph);
    for c in cycles {
        problems.push(format!("import cycle: {c}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_source_file_over_800_lines() {
    let mut all = Vec::new();
    for d in [
        "src",
        "rust-tests",
        "benches",
        "examples",
        "ctests",
        "fuzz/fuzz_targets",
        "scripts",
    ] {
        files(&root().join(d), &["rs", "c", "h", "sh"], &mut all);
    }
    let long: Vec<String> = all
        .iter()
        .filter_map(|f| {
            let n = fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{} has {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}
