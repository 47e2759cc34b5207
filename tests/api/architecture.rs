//! The module graph, read from the code (ARCHITECTURE.md "The layers"):
//! the pure core imports no I/O crate and no module outside the core; only
//! the HTTP edge knows axum (the router type reaches `app` through `http`); and
//! no two modules import each other, directly or around a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure core: plain types and pure functions (policy, chain, claims…).
const CORE: &[&str] = &[
    "audit",
    "chain",
    "chain_check",
    "claims",
    "error",
    "jose",
    "params",
    "policy",
    "trace",
    "trust::keyset",
    "types",
];

/// Crates that do I/O or know HTTP: never imported by the core.
const IO_CRATES: &[&str] = &["axum", "hyper", "reqwest", "redis", "tokio", "tower"];

/// Where axum may appear: the HTTP edge only (the dev IdP, a little HTTP
/// app of its own, lives there too).
const AXUM_ALLOWED: &[&str] = &["http"];

struct Module {
    path: PathBuf,
    /// The code: comments and the `#[cfg(test)]` tail removed.
    code: String,
}

fn modules() -> BTreeMap<String, Module> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let mut name = rel.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_owned();
            }
            if ["lib", "main"].contains(&name.as_str()) || name.ends_with("_tests") {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = without_test_items(&text)
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            Some((name, Module { path, code }))
        })
        .collect()
}

/// `text` without its `#[cfg(test)]` items: a `mod … { … }` up to its
/// matching brace, any other item up to the next blank line. Code after a
/// test module is still read.
fn without_test_items(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let item = &rest[i..];
        let header_end = item.find('\n').map(|n| n + 1).unwrap_or(item.len());
        let body = &item[header_end..];
        let skip = if body.trim_start().starts_with("mod ") && body.find('{') < body.find(';') {
            let open = body.find('{').unwrap_or(0);
            let mut depth = 0usize;
            let mut end = body.len();
            for (k, c) in body[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            header_end + end
        } else {
            header_end + body.find("\n\n").unwrap_or(body.len())
        };
        rest = &item[skip.min(item.len())..];
    }
    out.push_str(rest);
    out
}

/// The modules `code` names through `crate::…` (the longest existing
/// module path) or `super::…`.
fn imports(name: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let resolve = |parts: Vec<&str>| {
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|candidate| known.contains(candidate))
    };
    let mut out = BTreeSet::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent_of(name))] {
        for (i, _) in code.match_indices(prefix) {
            let rest = &code[i + prefix.len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':')
                .collect();
            let mut parts: Vec<&str> = base.split("::").filter(|p| !p.is_empty()).collect();
            parts.extend(path.split("::").filter(|p| !p.is_empty()));
            if let Some(m) = resolve(parts)
                && m != name
            {
                out.insert(m);
            }
        }
    }
    out
}

fn parent_of(name: &str) -> String {
    name.rsplit_once("::").map(|(p, _)| p.to_owned()).unwrap_or_default()
}

fn graph() -> (BTreeMap<String, Module>, BTreeMap<String, BTreeSet<String>>) {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let graph = modules
        .iter()
        .map(|(name, m)| (name.clone(), imports(name, &m.code, &known)))
        .collect();
    (modules, graph)
}

fn names_crate(code: &str, krate: &str) -> bool {
    code.match_indices(krate).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = &code[i + krate.len()..];
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') && after.starts_with("::")
    })
}

#[test]
fn the_pure_core_imports_no_io_and_nothing_outside_the_core() {
    let (modules, graph) = graph();
    assert!(modules.len() > 30, "the walk found the modules: {}", modules.len());
    let mut problems = Vec::new();
    for core in CORE {
        let m = modules
            .get(*core)
            .unwrap_or_else(|| panic!("core module {core} exists"));
        for krate in IO_CRATES {
            if names_crate(&m.code, krate) {
                problems.push(format!("{}: uses {krate}", m.path.display()));
            }
        }
        for dep in &graph[*core] {
            if !CORE.contains(&dep.as_str()) {
                problems.push(format!("{}: imports crate::{dep}, outside the core", m.path.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_the_http_edge_knows_axum() {
    let (modules, _) = graph();
    let offenders: Vec<String> = modules
        .iter()
        .filter(|(name, m)| {
            let top = name.split("::").next().unwrap_or_default();
            !AXUM_ALLOWED.contains(&top) && names_crate(&m.code, "axum")
        })
        .map(|(name, _)| name.clone())
        .collect();
    assert!(offenders.is_empty(), "axum outside http/: {offenders:?}");
    assert!(
        names_crate(&modules["http::oauth"].code, "axum"),
        "the check can see axum"
    );
}

/// Tarjan's strongly connected components: every component of more than
/// one module is an import cycle.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let (_, graph) = graph();
    assert_eq!(cycles(&graph), Vec::<Vec<String>>::new());
}

#[test]
fn test_items_are_skipped_but_code_after_them_is_read() {
    let text = "use a;\n#[cfg(test)]\nmod tests {\n    fn f() { if x { y } }\n}\nuse crate::store;\n";
    let kept = without_test_items(text);
    assert!(kept.contains("use a;") && kept.contains("crate::store"), "{kept}");
    assert!(!kept.contains("fn f()"), "{kept}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_owned()].into());
    g.insert("b".into(), ["c".to_owned()].into());
    g.insert("c".into(), ["a".to_owned()].into());
    g.insert("d".into(), ["a".to_owned()].into());
    assert_eq!(cycles(&g), vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]);
}

/// The SDK (`sdk/`, ARCHITECTURE.md "The SDK") is for servers and agents
/// that must not link the broker: its manifest names no broker crate, its
/// code names none, and only its feature-gated `axum` module knows axum.
#[test]
fn the_sdk_never_depends_on_the_broker_and_only_its_axum_module_knows_axum() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk");
    let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap()).unwrap();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let deps = manifest.get(section).and_then(|d| d.as_table());
        assert!(
            !deps.is_some_and(|d| d.contains_key("xaa-broker")),
            "sdk/Cargo.toml [{section}] names xaa-broker"
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(sdk.join("src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    assert!(files.len() > 10, "the walk found the SDK's modules: {files:?}");
    let mut problems = Vec::new();
    let mut axum_seen = false;
    for path in &files {
        let code: String = without_test_items(&std::fs::read_to_string(path).unwrap())
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        if names_crate(&code, "xaa_broker") {
            problems.push(format!("{}: uses the broker crate", path.display()));
        }
        let is_axum_module = path.file_name().is_some_and(|n| n == "axum.rs");
        if names_crate(&code, "axum") {
            if is_axum_module {
                axum_seen = true;
            } else {
                problems.push(format!("{}: uses axum outside sdk/src/axum.rs", path.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(axum_seen, "the check can see axum");
    let lib = std::fs::read_to_string(sdk.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("#[cfg(feature = \"axum\")]\npub mod axum;"),
        "the axum module is behind the `axum` feature"
    );
}
