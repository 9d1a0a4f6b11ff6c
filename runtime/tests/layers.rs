//! The library's module graph, read from its sources: the layers (core, io, recording, studies) use only the
//! layers before them, no module imports itself back through others, and nothing inside the crate reaches an
//! item through a layer's re-export instead of the module that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, each allowed to use itself and those before it.
const LAYERS: [&str; 4] = ["core", "io", "recording", "studies"];

/// A module's path (`core::session`) for each library source file, and the modules each uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "cli") {
                sources(&path, found);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|name| name != "main.rs")
        {
            found.push(path);
        }
    }
}

/// `core/session.rs` -> `core::session`; `io/mod.rs` -> `io`; `lib.rs` -> ``.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// Every path a line of code names from the crate's root, with `use` groups expanded
/// (`crate::{a::b, c::{d, e}}` -> `a::b`, `c::d`, `c::e`).
fn crate_paths(code: &str, module: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let parent = module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string());
    for (anchor, base) in [("crate::", String::new()), ("super::", parent)] {
        let mut rest = code;
        while let Some(at) = rest.find(anchor) {
            let before = rest[..at].chars().last();
            rest = &rest[at + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for path in expand(rest) {
                if path != "*" {
                    let full = if base.is_empty() {
                        path
                    } else {
                        format!("{base}::{path}")
                    };
                    paths.push(full);
                }
            }
        }
    }
    paths
}

/// The paths at the start of `text`: one path, or a `{...}` group of them.
fn expand(text: &str) -> Vec<String> {
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 1;
        let end = group
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(group.len(), |(i, _)| i);
        let mut items = Vec::new();
        let mut nested = 0;
        let mut start = 0;
        let inner = &group[..end];
        for (i, c) in inner.char_indices() {
            match c {
                '{' => nested += 1,
                '}' => nested -= 1,
                ',' if nested == 0 => {
                    items.push(inner[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(inner[start..].trim());
        return items
            .into_iter()
            .filter(|item| !item.is_empty())
            .flat_map(|item| {
                let item = item.split(" as ").next().unwrap().trim();
                match item.find("::{") {
                    Some(at) => expand(&item[at + 2..])
                        .into_iter()
                        .map(|tail| format!("{}::{tail}", &item[..at]))
                        .collect(),
                    None => vec![item.to_string()],
                }
            })
            .collect();
    }
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '*'))
        .unwrap_or(text.len());
    let path = text[..end].trim_end_matches("::");
    if text[end..].starts_with('{') && text[..end].ends_with("::") {
        return expand(&text[end..])
            .into_iter()
            .map(|tail| format!("{path}::{tail}"))
            .collect();
    }
    vec![path.to_string()]
}

/// The longest prefix of `path` that is a module with its own file.
fn resolve<'a>(path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .find_map(|n| modules.get(&segments[..n].join("::")))
}

/// The library's module graph and the names of modules whose file only declares others (`mod.rs`, `lib.rs`).
fn library_graph() -> (Graph, BTreeSet<String>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let texts: Vec<(String, bool, String)> = files
        .iter()
        .map(|file| {
            let relative = file.strip_prefix(&root).unwrap();
            let is_mod = relative.ends_with("mod.rs") || relative.ends_with("lib.rs");
            let text = std::fs::read_to_string(file).unwrap();
            // A file's unit tests (its last item, by convention) use the module itself through `super`.
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let code: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            (module_of(relative), is_mod, code)
        })
        .collect();
    let modules: BTreeSet<String> = texts.iter().map(|(m, _, _)| m.clone()).collect();
    let declaring: BTreeSet<String> = texts
        .iter()
        .filter(|(_, is_mod, _)| *is_mod)
        .map(|(m, _, _)| m.clone())
        .collect();
    let mut graph = Graph::new();
    let mut through_reexports = Vec::new();
    for (module, is_mod, code) in &texts {
        let uses = graph.entry(module.clone()).or_default();
        if *is_mod {
            continue;
        }
        for path in crate_paths(code, module) {
            match resolve(&path, &modules) {
                Some(target) if declaring.contains(target) => {
                    through_reexports.push(format!("{module} names crate::{path}"))
                }
                Some(target) if target != module => {
                    uses.insert(target.clone());
                }
                _ => {}
            }
        }
    }
    (graph, declaring, through_reexports)
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let at = stack.iter().position(|n| n == node).unwrap();
                let mut cycle = stack[at..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(node.to_string(), false);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.to_string(), true);
        None
    }
    let mut state = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut state, &mut Vec::new()))
}

fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().position(|layer| *layer == top)
}

#[test]
fn the_module_graph_has_no_loops() {
    let (graph, _, _) = library_graph();
    assert!(graph.len() > 40, "read only {} modules", graph.len());
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import loop: {}", cycle.join(" -> "));
    }
}

#[test]
fn each_layer_uses_only_itself_and_the_layers_before_it() {
    let (graph, declaring, _) = library_graph();
    let mut breaches = Vec::new();
    for (module, uses) in &graph {
        if declaring.contains(module) {
            continue;
        }
        let layer = layer_of(module).unwrap_or_else(|| panic!("{module} is in no layer"));
        for used in uses {
            if layer_of(used).is_some_and(|l| l > layer) {
                breaches.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(breaches.is_empty(), "layer breaches: {breaches:#?}");
}

#[test]
fn modules_name_what_they_use_where_it_is_defined() {
    let (_, _, through_reexports) = library_graph();
    assert!(
        through_reexports.is_empty(),
        "paths through a layer's module file instead of the defining module: {through_reexports:#?}"
    );
}

#[test]
fn the_reader_finds_grouped_and_relative_paths_and_the_cycle_finder_finds_a_planted_loop() {
    let code =
        "use crate::{core::clock::{Clock, wall_clock_ns}, io::link};\nuse super::report::Sweep;";
    let paths = crate_paths(code, "studies::delay_benchmark::figure");
    assert_eq!(
        paths,
        [
            "core::clock::Clock",
            "core::clock::wall_clock_ns",
            "io::link",
            "studies::delay_benchmark::report::Sweep"
        ]
    );
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph.entry(from.into()).or_default().insert(to.into());
    }
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&graph), None);
}
