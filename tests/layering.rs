//! The layering rule, checked on the sources: no import circle between the modules of the
//! binary (`src/`) or of the library (`luks2/src/`), and nothing below `main.rs` imports from
//! the crate root. A module's imports are the `crate::`, `super::` and `self::`-free paths its
//! code (not its comments, not its `#[cfg(test)] mod tests`) names; a path is charged to the
//! longest module it starts with. A submodule naming its parent (`super::f`) is an edge, and
//! so is a parent naming its submodule by the short path (`child::f`): a parent that calls
//! its children must not also be what they import (the shared item moves into a leaf).
//!
//! A circle accepted for now would be listed in `KNOWN`; there is none, so any circle fails
//! the test. (The library's error facade, which wraps the error types of the modules that
//! return it, stays out of circles because those types live in leaf modules, such as
//! `header::error`, that the facade and their module both import.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Circles that exist and are accepted for now, each as its sorted module list: none.
const KNOWN: &[&[&str]] = &[];

/// Module path (`a::b`, "" for the crate root) -> source file text.
fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The code of a file without comments and without inline modules (`mod x { ... }`: test
/// modules, whose `super::` is the file's own module).
fn code(text: &str) -> String {
    let text: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = find_inline_mod(rest) {
        out.push_str(&rest[..i]);
        let open = i + rest[i..].find('{').unwrap();
        let mut depth = 0usize;
        let mut end = rest.len();
        for (k, c) in rest[open..].char_indices() {
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
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Where the next `mod NAME {` starts (at a word boundary).
fn find_inline_mod(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("mod ") {
        let at = from + i;
        let boundary = s[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let after = &s[at + 4..];
        let name_len = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .count();
        if boundary && name_len > 0 && after[name_len..].trim_start().starts_with('{') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// The paths after each `crate::` in `s`, with `{a, b::c}` groups expanded one level.
fn crate_paths(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 7..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let path = path.trim_end_matches(':').to_string();
        if rest[path.len()..].starts_with("::{") || (path.is_empty() && rest.starts_with('{')) {
            let open = rest.find('{').unwrap();
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            for item in rest[open + 1..close].split(',') {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                out.push(if path.is_empty() {
                    item.to_string()
                } else {
                    format!("{path}::{item}")
                });
            }
        } else {
            out.push(path);
        }
    }
    out
}

/// Module -> the modules it imports (the crate root as "").
fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(root);
    let mut g = BTreeMap::new();
    for (m, text) in &mods {
        let mut s = code(text);
        // `super::x` from `a::b` is `crate::a::x`.
        let parent = m.rsplit_once("::").map_or("", |(p, _)| p);
        let sup = if parent.is_empty() {
            "crate::".to_string()
        } else {
            format!("crate::{parent}::")
        };
        s = s.replace("super::", &sup);
        let mut deps = BTreeSet::new();
        for p in crate_paths(&s) {
            let parts: Vec<&str> = p.split("::").collect();
            let target = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|c| mods.contains_key(c))
                .unwrap_or_default();
            // A module naming itself (a submodule naming its parent is an edge like any other).
            if target == *m {
                continue;
            }
            deps.insert(target);
        }
        // A parent naming its own submodule by the short path (`child::f`, `self::child::f`).
        for child in mods.keys() {
            let Some(name) = child_name(m, child) else {
                continue;
            };
            if names_path(&s, name) {
                deps.insert(child.clone());
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

/// `child`'s last name when it is a direct submodule of `parent`.
fn child_name<'a>(parent: &str, child: &'a str) -> Option<&'a str> {
    let rest = if parent.is_empty() {
        child
    } else {
        child.strip_prefix(parent)?.strip_prefix("::")?
    };
    (!rest.is_empty() && !rest.contains("::")).then_some(rest)
}

/// Whether `s` uses the path `name::...` as a relative path (not after another `::`, except
/// `self::`; `use name::{...}` counts).
fn names_path(s: &str, name: &str) -> bool {
    let needle = format!("{name}::");
    let mut from = 0;
    while let Some(i) = s[from..].find(&needle) {
        let at = from + i;
        from = at + needle.len();
        let before = &s[..at];
        let prev = before.chars().last();
        if prev.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if before.ends_with("::") && !before.ends_with("self::") {
            continue;
        }
        if before.ends_with("super::self::") {
            continue;
        }
        return true;
    }
    false
}

/// The strongly connected components of more than one module (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in &g[v] {
            let w = w.as_str();
            if !g.contains_key(w) {
                continue;
            }
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                c.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn check(dir: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let g = graph(&root);
    assert!(g.len() > 10, "{dir}: only {} modules found", g.len());
    let unknown: Vec<_> = circles(&g)
        .into_iter()
        .filter(|c| !KNOWN.iter().any(|k| k.iter().eq(c.iter())))
        .collect();
    assert!(
        unknown.is_empty(),
        "{dir}: import circles {unknown:?}\n(a lower module must not import a higher one: move \
         the shared item down)"
    );
    let up: Vec<_> = g
        .iter()
        .filter(|(m, deps)| !m.is_empty() && deps.contains(""))
        .map(|(m, _)| m.clone())
        .collect();
    assert!(
        up.is_empty(),
        "{dir}: modules importing from the crate root: {up:?}"
    );
}

#[test]
fn the_binary_has_no_import_circle() {
    check("src");
}

#[test]
fn the_library_has_no_import_circle() {
    check("luks2/src");
}

/// The checker itself finds a circle and an import from the root.
#[test]
fn the_checker_sees_circles() {
    let dir = tempfile::tempdir().unwrap();
    let w = |p: &str, s: &str| std::fs::write(dir.path().join(p), s).unwrap();
    w("main.rs", "mod a;\nmod b;\nfn x() {}\n");
    w(
        "a.rs",
        "use crate::b::f;\n// crate::c::ignored\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    );
    w("b.rs", "use super::{a::g, x};\n");
    // A parent that calls its submodule by the short path, which imports from the parent.
    std::fs::create_dir(dir.path().join("c")).unwrap();
    w("c/mod.rs", "mod d;\nmod e;\npub fn f() {\n    d::g();\n}\n");
    w("c/d.rs", "use super::f;\npub fn g() {}\n");
    // A submodule importing its parent, which does not name it: no circle.
    w("c/e.rs", "use super::f;\n");
    let g = graph(dir.path());
    let mut found = circles(&g);
    found.sort();
    assert_eq!(
        found,
        vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["c".to_string(), "c::d".to_string()]
        ]
    );
    assert!(g["b"].contains(""), "{g:?}");
    assert!(!g["a"].contains(""), "{g:?}");
}

/// The command layer's rule: below `cli/` (and `main.rs`, which parses the command line and
/// prints the error), no module's code names clap or builds the CLI's error; only `error.rs`,
/// which maps the services' errors, names `CliError`. Test modules may (they check the mapping).
#[test]
fn the_services_never_see_clap_or_the_cli_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut clap = Vec::new();
    let mut cli_error = Vec::new();
    for (m, text) in modules(&root) {
        if m.is_empty() || m == "cli" || m.starts_with("cli::") {
            continue;
        }
        let c = code(&text);
        if c.contains("clap::") || c.contains("use clap") {
            clap.push(m.clone());
        }
        if m != "error" && c.contains("CliError") {
            cli_error.push(m);
        }
    }
    assert!(clap.is_empty(), "services naming clap: {clap:?}");
    assert!(
        cli_error.is_empty(),
        "services naming CliError (return a typed error; error.rs maps it): {cli_error:?}"
    );
}
