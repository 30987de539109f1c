//! Module arrows point one way. Read from the source text, so a
//! reintroduced import circle fails here with its modules named, not as a
//! vague feeling that everything depends on everything.
//!
//! - `http` is below `providers`: no file under `src/http/` names
//!   `crate::providers` (the shared error lives in `crate::error`).
//! - The files of `src/ledger/` (other than `mod.rs`, which owns `Ledger`
//!   and declares them) reference each other without a cycle.
//!
//! A reference is a path: `super::x`, `crate::ledger::x`, or a group
//! `super::{x::A, y}`, in a `use` or written out inline. Comments are
//! ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The source with `//` comments (doc comments too) removed. Knows string
/// literals well enough that `"http://…"` stays.
fn without_comments(src: &str) -> String {
    src.lines()
        .map(|line| {
            let mut in_string = false;
            let mut prev = ' ';
            for (i, c) in line.char_indices() {
                if c == '"' && prev != '\\' {
                    in_string = !in_string;
                }
                if !in_string && c == '/' && prev == '/' {
                    return &line[..i - 1];
                }
                prev = c;
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn leading_ident(s: &str) -> &str {
    let s = s.trim_start();
    &s[..s.find(|c: char| !is_ident(c)).unwrap_or(s.len())]
}

/// The first segment of every path that starts with `prefix` (`super::`,
/// `crate::ledger::`): `prefix x::y` gives `x`, `prefix {x::A, y}` gives
/// `x` and `y`.
fn references(src: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in src.match_indices(prefix) {
        if src[..at].chars().next_back().is_some_and(is_ident) {
            continue; // `mycrate::`, not `crate::`
        }
        let rest = src[at + prefix.len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // Split the group at its top-level commas.
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(leading_ident(&group[start..i]).to_string());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(leading_ident(&group[start..i]).to_string());
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(leading_ident(rest).to_string());
        }
    }
    out.remove("");
    out
}

fn read(path: &Path) -> String {
    without_comments(&fs::read_to_string(path).unwrap())
}

#[test]
fn http_does_not_name_providers() {
    let http = root().join("src/http");
    let mut offenders = Vec::new();
    for file in rust_files(&http) {
        let src = read(&file);
        let mut named = references(&src, "crate::");
        if file == http.join("mod.rs") {
            // There `super` is the crate root.
            named.extend(references(&src, "super::"));
        }
        if named.contains("providers") {
            offenders.push(file.strip_prefix(root()).unwrap().display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "http is below providers, but these files name crate::providers: {offenders:?}"
    );
}

/// Module -> the sibling modules it references, for the files directly in
/// `dir` other than `mod.rs`.
fn sibling_graph(dir: &Path, crate_path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let files: BTreeMap<String, PathBuf> = rust_files(dir)
        .into_iter()
        .filter(|f| f.parent() == Some(dir))
        .map(|f| (f.file_stem().unwrap().to_string_lossy().into_owned(), f))
        .filter(|(name, _)| name != "mod")
        .collect();
    files
        .iter()
        .map(|(name, file)| {
            let src = read(file);
            let mut named = references(&src, "super::");
            named.extend(references(&src, &format!("{crate_path}::")));
            let siblings = named
                .into_iter()
                .filter(|n| n != name && files.contains_key(n))
                .collect();
            (name.clone(), siblings)
        })
        .collect()
}

/// A cycle in `graph`, as the modules along it with the first repeated at
/// the end (`a -> b -> a`), if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn ledger_modules_reference_each_other_without_a_cycle() {
    let graph = sibling_graph(&root().join("src/ledger"), "crate::ledger");
    assert!(
        graph.contains_key("orders") && graph.contains_key("catalog"),
        "the ledger's files were not found: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "src/ledger has an import cycle: {}\nall references: {graph:#?}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_reference_reader_sees_every_form() {
    let src = without_comments(
        "use super::{Ledger, stock::{A, B}};\n\
         use super::orders::relink_in; // super::links\n\
         let x = crate::ledger::catalog::observe(1);\n\
         let url = \"http://example\"; mycrate::providers::X;\n\
         use crate::{limit::L,\n    providers::ProviderError};",
    );
    assert_eq!(
        references(&src, "super::"),
        ["Ledger", "orders", "stock"].map(String::from).into()
    );
    assert_eq!(
        references(&src, "crate::ledger::"),
        ["catalog"].map(String::from).into()
    );
    assert_eq!(
        references(&src, "crate::"),
        ["ledger", "limit", "providers"].map(String::from).into()
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap().join(" -> "), "a -> b -> c -> a");
}

/// The seams the simulator's determinism rests on (see `tests/sim.rs`):
/// every `select!` is `biased` (an unbiased one picks among ready branches
/// at random, so the same seed could run two ways); nothing outside
/// `clock.rs` reads the system calendar (`Utc::now`, `SystemTime::now`);
/// every ledger call goes through `ledger::exec::db` (checked by the
/// replay test: one that did not would let a database thread decide).
#[test]
fn what_a_seed_replays_through_stays_deterministic() {
    let mut found = Vec::new();
    for path in rust_files(&root().join("src")) {
        let src = without_comments(&fs::read_to_string(&path).unwrap());
        let lines: Vec<&str> = src.lines().collect();
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("select! {") {
                let next = lines.get(i + 1).copied().unwrap_or("");
                if !next.trim_start().starts_with("biased;") {
                    found.push(format!("{name}:{}: a select! that is not biased", i + 1));
                }
            }
            let calendar = ["Utc::now", "SystemTime::now", "Local::now"];
            if !name.ends_with("clock.rs") && calendar.iter().any(|c| line.contains(c)) {
                found.push(format!(
                    "{name}:{}: reads the system calendar; use crate::clock",
                    i + 1
                ));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
