//! The layering check (docs/ARCHITECTURE.md, "Layering"): every `crate::<module>` path in
//! `src/**/*.rs` must be allowed by the table in that section. Comments, doc comments and string
//! literals are ignored; `use crate::{a, b::c}` groups count each top-level name.
//!
//! It also fails when a top-level module is missing from the table (or the table names one that does
//! not exist), when an allowed edge is no longer used (the doc must stay true), and when the allowed
//! edges, those marked "(to go)" excepted, form a cycle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One allowed import: `to`, and whether it is marked "(to go)".
type Rules = BTreeMap<String, BTreeMap<String, bool>>;

/// A `crate::<module>` reference found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    module: String,
    line: usize,
}

#[test]
fn no_module_imports_against_the_documented_layering() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let rules = parse_rules(&doc).unwrap();
    let modules = top_level_modules(&root.join("src"));
    let mut problems = Vec::new();
    for module in &modules {
        if !rules.contains_key(module) {
            problems.push(format!(
                "src/{module}: not in the Layering table, place it there"
            ));
        }
    }
    for module in rules.keys() {
        if !modules.contains(module) {
            problems.push(format!(
                "{module}: in the Layering table but not a module under src/"
            ));
        }
    }
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for file in rust_files(&root.join("src")) {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let Some(from) = module_of(&relative) else {
            continue;
        };
        let source = std::fs::read_to_string(&file).unwrap();
        for reference in crate_references(&source) {
            used.insert((from.clone(), reference.module.clone()));
            problems.extend(violation(&rules, &relative, &from, &reference));
        }
    }
    for (from, allowed) in &rules {
        for to in allowed.keys() {
            if !used.contains(&(from.clone(), to.clone())) {
                problems.push(format!(
                    "{from} → {to}: allowed in docs/ARCHITECTURE.md but no longer used, delete it"
                ));
            }
        }
    }
    problems.extend(cycle(&rules));
    assert!(
        problems.is_empty(),
        "layering (docs/ARCHITECTURE.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_forbidden_import_is_reported_with_file_and_line() {
    let doc = "## Layering\n\n| Module | May import | Role |\n|---|---|---|\n\
               | `route` | `error`, `target` | policy |\n| `upstream` | `target` | mechanism |\n\
               \n## Next\n| `ignored` | `upstream` | |\n";
    let rules = parse_rules(doc).unwrap();
    assert!(!rules.contains_key("ignored"), "only the Layering section");
    let source = "//! Uses [`crate::upstream::Upstream`] in a doc comment: fine.\n\
                  use crate::target::Target;\n\
                  const URL: &str = \"crate::upstream // not code\";\n\
                  use crate::{error::ProxyError, upstream::ProxyCredentials};\n";
    let found: Vec<String> = crate_references(source)
        .iter()
        .flat_map(|r| violation(&rules, "src/route/x.rs", "route", r))
        .collect();
    assert_eq!(
        found,
        ["src/route/x.rs:4: route may not import upstream (docs/ARCHITECTURE.md, Layering)"]
    );
}

#[test]
fn references_skip_comments_strings_and_read_groups() {
    let source = "/* crate::a /* nested crate::b */ crate::c */\n\
                  let s = r#\"crate::d \"quoted\" \"#; let c = '\"'; // crate::e\n\
                  fn f<'a>(x: &'a str) -> crate::f::T { crate :: g::h() }\n\
                  use crate::{\n    i::{x, y},\n    j,\n    self as k,\n};\n";
    let found: Vec<(String, usize)> = crate_references(source)
        .into_iter()
        .map(|r| (r.module, r.line))
        .collect();
    let expected = [("f", 3), ("g", 3), ("i", 4), ("j", 4)];
    let expected: Vec<(String, usize)> =
        expected.iter().map(|(m, l)| (m.to_string(), *l)).collect();
    assert_eq!(found, expected);
}

#[test]
fn allowed_cycles_are_refused_unless_marked_to_go() {
    let doc = "## Layering\n| `a` | `b` | |\n| `b` | `a` (to go) | |\n";
    assert!(cycle(&parse_rules(doc).unwrap()).is_empty());
    let doc = "## Layering\n| `a` | `b` | |\n| `b` | `c` | |\n| `c` | `a` | |\n";
    let found = cycle(&parse_rules(doc).unwrap());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("cycle"), "{found:?}");
}

// === the checker ===

/// The "## Layering" table: `| `module` | `a`, `b` (to go) | role |`; `(nothing)` allows none.
fn parse_rules(doc: &str) -> Result<Rules, String> {
    let start = doc
        .find("## Layering")
        .ok_or("no \"## Layering\" section")?;
    let section = &doc[start + 3..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut rules = Rules::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let module = backticked(cells[1])
            .next()
            .ok_or(format!("bad row: {row}"))?;
        let mut allowed = BTreeMap::new();
        for item in cells.get(2).copied().unwrap_or("").split(',') {
            if let Some(to) = backticked(item).next() {
                allowed.insert(to.to_string(), item.contains("(to go)"));
            }
        }
        rules.insert(module.to_string(), allowed);
    }
    Ok(rules)
}

fn backticked(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

/// The message for `reference` in `file` (module `from`), or `None` when the table allows it.
fn violation(rules: &Rules, file: &str, from: &str, reference: &Reference) -> Option<String> {
    let to = &reference.module;
    let allowed = to == from || rules.get(from).is_some_and(|a| a.contains_key(to));
    (!allowed && rules.contains_key(to)).then(|| {
        format!(
            "{file}:{}: {from} may not import {to} (docs/ARCHITECTURE.md, Layering)",
            reference.line
        )
    })
}

/// A cycle among the allowed edges that are not marked "(to go)", as one message.
fn cycle(rules: &Rules) -> Vec<String> {
    fn visit(
        rules: &Rules,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|n| n == node) {
            return Some(format!(
                "cycle: {} → {node} (mark an edge \"(to go)\" only if it is being removed)",
                path[i..].join(" → ")
            ));
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        let edges = rules.get(node).into_iter().flatten();
        let found = edges
            .filter(|(_, to_go)| !**to_go)
            .find_map(|(to, _)| visit(rules, to, path, done));
        path.pop();
        found
    }
    let mut done = BTreeSet::new();
    rules
        .keys()
        .find_map(|module| visit(rules, module, &mut Vec::new(), &mut done))
        .into_iter()
        .collect()
}

/// Every `crate::<name>` in code (not in comments or literals), with its line.
fn crate_references(source: &str) -> Vec<Reference> {
    let code = code_only(source);
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = code[at..].find("crate") {
        let start = at + offset;
        at = start + "crate".len();
        let preceded = start > 0 && is_ident(bytes[start - 1]);
        if preceded || bytes.get(at).copied().is_some_and(is_ident) {
            continue;
        }
        let rest = code[at..].trim_start();
        let Some(rest) = rest.strip_prefix("::") else {
            continue;
        };
        let line = code[..start].matches('\n').count() + 1;
        let rest = rest.trim_start();
        let names = match rest.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => vec![ident(rest)],
        };
        for name in names.into_iter().filter(|n| !n.is_empty() && *n != "self") {
            found.push(Reference {
                module: name.to_string(),
                line,
            });
        }
    }
    found
}

/// The first name of each item of a `{…}` group (the text after `{`), at depth one only.
fn group_heads(group: &str) -> Vec<&str> {
    let mut heads = vec![ident(group.trim_start())];
    let mut depth = 1;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => break,
            '}' => depth -= 1,
            ',' if depth == 1 => heads.push(ident(group[i + 1..].trim_start())),
            _ => {}
        }
    }
    heads
}

fn ident(text: &str) -> &str {
    let end = text
        .bytes()
        .position(|b| !is_ident(b))
        .unwrap_or(text.len());
    &text[..end]
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `source` with comments and the contents of string and char literals blanked (newlines kept, so
/// line numbers stay right).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |out: &mut String, skipped: &[char]| {
        out.extend(skipped.iter().filter(|c| **c == '\n'));
        out.push(' ');
    };
    while i < chars.len() {
        let rest = &chars[i..];
        let skip = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|c| *c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            block_comment_len(rest)
        } else if let Some(len) = raw_string_len(rest, i > 0 && is_ident_char(chars[i - 1])) {
            len
        } else if rest[0] == '"' {
            quoted_len(rest, '"')
        } else if rest[0] == '\'' && is_char_literal(rest) {
            quoted_len(rest, '\'')
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        blank(&mut out, &rest[..skip]);
        i += skip;
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn block_comment_len(text: &[char]) -> usize {
    let (mut depth, mut i) = (0, 0);
    while i < text.len() {
        if text[i..].starts_with(&['/', '*']) {
            depth += 1;
            i += 2;
        } else if text[i..].starts_with(&['*', '/']) {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    text.len()
}

/// Length of `r"…"`, `r#"…"#`, `br"…"` at the start of `text`; `None` if it is not one.
fn raw_string_len(text: &[char], after_ident: bool) -> Option<usize> {
    if after_ident {
        return None;
    }
    let prefix = if text.starts_with(&['b', 'r']) {
        2
    } else {
        usize::from(text[0] == 'r')
    };
    if prefix == 0 {
        return None;
    }
    let hashes = text[prefix..].iter().take_while(|c| **c == '#').count();
    if text.get(prefix + hashes) != Some(&'"') {
        return None;
    }
    let body = prefix + hashes + 1;
    let closing: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let end = (body..text.len()).find(|&j| text[j..].starts_with(&closing))?;
    Some(end + closing.len())
}

/// Length of a `"…"` or `'…'` literal with backslash escapes.
fn quoted_len(text: &[char], quote: char) -> usize {
    let mut i = 1;
    while i < text.len() {
        match text[i] {
            '\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

/// `'x'`, `'\n'`, `'\u{1F600}'` are char literals; `'a` in `&'a str` is a lifetime.
fn is_char_literal(text: &[char]) -> bool {
    match text.get(1) {
        Some('\\') => true,
        Some(_) => text.get(2) == Some(&'\''),
        None => false,
    }
}

// === the tree ===

/// `src/<m>.rs` and `src/<m>/` (lib.rs and main.rs excepted).
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name()?.to_str()?.to_string();
            match name.strip_suffix(".rs") {
                Some("lib" | "main") => None,
                Some(module) => Some(module.to_string()),
                None => path.is_dir().then_some(name),
            }
        })
        .collect()
}

/// The top-level module of a path relative to the crate root (`src/route/pac/fetch.rs` → `route`).
fn module_of(relative: &str) -> Option<String> {
    let inside = relative.strip_prefix("src/")?;
    let first = inside.split('/').next()?;
    match first {
        "lib.rs" | "main.rs" => None,
        _ => Some(first.trim_end_matches(".rs").to_string()),
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}
