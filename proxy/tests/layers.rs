//! The proxy's top-level modules form layers: no module reaches, through `crate::` paths
//! (tests included), a module that reaches it back. A cycle is reported with the files
//! that close it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Top-level module → the top-level modules it names, with one file naming each.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let first = rel.iter().next().expect("a component").to_string_lossy();
            let top = first.trim_end_matches(".rs").to_owned();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = fs::read_to_string(&path).expect("read file");
            let uses = graph.entry(top.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let name: String = text[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    uses.entry(name)
                        .or_insert_with(|| rel.display().to_string());
                }
            }
        }
    }
    graph
}

/// A path from `from` to `to`, as the modules on it.
fn path(graph: &Graph, from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![vec![from.to_owned()]];
    while let Some(p) = stack.pop() {
        let last = p.last().expect("non-empty").clone();
        if last == to && p.len() > 1 {
            return Some(p);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in graph.get(&last).into_iter().flat_map(BTreeMap::keys) {
            let mut longer = p.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

#[test]
fn top_level_modules_have_no_cycles() {
    let graph = graph();
    assert!(
        graph.contains_key("serve") && graph["serve"].contains_key("access"),
        "the walk found the modules: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(module, uses)| uses.iter().map(move |(used, file)| (module, used, file)))
        .filter_map(|(module, used, file)| {
            let back = path(&graph, used, module)?;
            Some(format!(
                "{module} -> {used} ({file}), back by {}",
                back.join(" -> ")
            ))
        })
        .collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}
