//! The library's layers point one way (`docs/DESIGN.md`): no import cycle among its top-level
//! modules, nor among the files of one directory. Read from the sources (every `crate::<m>`
//! path and every `super::<sibling>` path outside comments and unit-test modules), without
//! building anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The source without comments and without a trailing `#[cfg(test)] mod ...` block.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        out.push_str(line);
        out.push('\n');
    }
    for marker in [
        "#[cfg(test)]\nmod ",
        "#[cfg(all(test, target_arch = \"x86_64\"))]\nmod ",
    ] {
        if let Some(at) = out.find(marker) {
            out.truncate(at);
        }
    }
    out
}

/// The identifiers after each occurrence of `prefix` (`crate::`, `super::`).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .map(|(at, _)| {
            code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("src/ is readable") {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The edges of `graph` that lie on a cycle.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for d in graph.get(&n).into_iter().flatten() {
                if d == to {
                    return true;
                }
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        false
    };
    let mut out = Vec::new();
    for (a, deps) in graph {
        for b in deps {
            if reaches(b, a) {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

#[test]
fn no_import_cycle_among_modules_or_sibling_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src/");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        // The binary (main.rs, cli/) sits above the library.
        if parts[0] == "main" || parts[0] == "cli" {
            continue;
        }
        let text = code(&fs::read_to_string(f).expect("readable"));
        let module = parts[0].clone();
        let deps = names_after(&text, "crate::");
        top.entry(module.clone())
            .or_default()
            .extend(deps.into_iter().filter(|d| *d != module && d != "error"));
        if parts.len() > 1 {
            let dir = parts[..parts.len() - 1].join("/");
            let name = parts[parts.len() - 1].clone();
            if name != "mod" {
                let mut sib = names_after(&text, "super::");
                sib.extend(names_after(&text, &format!("crate::{dir}::")));
                sib.remove(&name);
                siblings.entry(dir).or_default().insert(name, sib);
            }
        }
    }
    assert!(top.len() > 8, "the walk found the modules: {top:?}");
    let found = cycles(&top);
    assert!(
        found.is_empty(),
        "import cycles among top-level modules: {found:?}"
    );
    for (dir, graph) in &siblings {
        let graph: BTreeMap<String, BTreeSet<String>> = graph
            .iter()
            .map(|(k, v)| {
                let v = v
                    .iter()
                    .filter(|d| graph.contains_key(*d))
                    .cloned()
                    .collect();
                (k.clone(), v)
            })
            .collect();
        let found = cycles(&graph);
        assert!(
            found.is_empty(),
            "import cycles among the files of src/{dir}: {found:?}"
        );
    }
}

/// The check itself sees a cycle (this test would catch a checker that finds none).
#[test]
fn a_cycle_is_found() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    g.insert("d".into(), ["a".to_string()].into());
    assert_eq!(cycles(&g).len(), 3);
    assert_eq!(
        names_after(&code("use crate::x::y; // crate::z"), "crate::"),
        ["x".to_string()].into()
    );
}
