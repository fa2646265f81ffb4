//! Keeps `docs/TESTING.md` honest (docs/TESTING.md#map-format): every ID of the plan (its `plan-ids:`
//! line) has exactly one row; every test a row names exists (`fn name` in that file) and every script
//! or bench it names exists; a `covered` or `partly` row names at least one test, a `does not apply`
//! row says why; the summary table matches the rows, the "named by ID" column included
//! (docs/TESTING.md#naming). It also checks that every `docs/<FILE>.md#anchor` the code cites
//! exists. Everything is read from this repository; nothing outside it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where code may name tests and where citations are looked for.
const ROOTS: [&str; 5] = ["src/", "sim/", "tests/", "scripts/", "benches/"];
/// The project docs code may cite.
const DOCS: [&str; 3] = ["ARCHITECTURE", "PROTOCOL", "TESTING"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Covered,
    Partly,
    NoTestYet,
    DoesNotApply,
}

/// One `path` or `path::fn_name` named in a row.
#[derive(Debug)]
struct Ref {
    path: String,
    name: Option<String>,
}

#[derive(Debug)]
struct Row {
    id: String,
    line: usize,
    status: Status,
    refs: Vec<Ref>,
    reason: String,
}

/// Per prefix: IDs, covered, partly, no test yet, does not apply, named by ID.
type Counts = [usize; 6];

// === parsing ===

/// `LOAD 1-12, FLT 1-20` → {LOAD-1, …, FLT-20}.
fn plan_ids(doc: &str) -> Result<BTreeSet<String>, String> {
    let line = doc
        .lines()
        .find_map(|l| l.trim().strip_prefix("plan-ids:"))
        .ok_or("no `plan-ids:` line")?;
    let mut ids = BTreeSet::new();
    for group in line.split(',') {
        let (prefix, range) = group
            .trim()
            .split_once(' ')
            .ok_or(format!("bad plan-ids group {group:?}"))?;
        let (lo, hi) = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .ok_or(format!("bad plan-ids range {group:?}"))?;
        ids.extend((lo..=hi).map(|n| format!("{prefix}-{n}")));
    }
    Ok(ids)
}

fn parse_status(cell: &str) -> Option<Status> {
    match cell {
        "covered" => Some(Status::Covered),
        "partly" => Some(Status::Partly),
        "no test yet" => Some(Status::NoTestYet),
        "does not apply" => Some(Status::DoesNotApply),
        _ => None,
    }
}

/// The backticked spans of `cell` that name a file of the repository.
fn refs_in(cell: &str) -> Vec<Ref> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| ROOTS.iter().any(|r| span.starts_with(r)))
        .map(|span| match span.split_once("::") {
            Some((path, name)) => Ref {
                path: path.to_string(),
                name: Some(name.to_string()),
            },
            None => Ref {
                path: span.to_string(),
                name: None,
            },
        })
        .collect()
}

/// Rows of the map: table lines whose first cell is `<a id="…"></a>ID`.
fn rows(doc: &str, errors: &mut Vec<String>) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        let line_no = i + 1;
        let Some(rest) = line.trim().strip_prefix("| <a id=\"") else {
            continue;
        };
        let cells: Vec<&str> = rest
            .trim_end_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [first, _meaning, status, last] = cells[..] else {
            errors.push(format!(
                "line {line_no}: a row needs 4 cells, has {}",
                cells.len()
            ));
            continue;
        };
        let Some((anchor, id)) = first.split_once("\"></a>") else {
            errors.push(format!("line {line_no}: bad ID cell {first:?}"));
            continue;
        };
        if anchor != id.to_lowercase() {
            errors.push(format!(
                "line {line_no}: anchor {anchor:?} is not {id:?} in lower case"
            ));
        }
        let Some(status) = parse_status(status) else {
            errors.push(format!("line {line_no}: {id}: unknown status {status:?}"));
            continue;
        };
        rows.push(Row {
            id: id.to_string(),
            line: line_no,
            status,
            refs: refs_in(last),
            reason: last.to_string(),
        });
    }
    rows
}

/// The summary table: `| PREFIX | n | n | n | n | n | n |` after the `## Summary` heading.
fn summary(doc: &str) -> BTreeMap<String, Vec<usize>> {
    doc.lines()
        .skip_while(|l| !l.starts_with("## Summary"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let numbers: Vec<usize> = cells
                .get(1..)?
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect();
            (numbers.len() == 6).then(|| (cells[0].trim_matches('*').to_string(), numbers))
        })
        .collect()
}

// === the naming rule ===

/// The plan IDs a test name carries: `sec19_x` → SEC-19, `bad_20_21_x` → BAD-20, BAD-21,
/// `bad_1_to_4_x` → BAD-1…BAD-4 (docs/TESTING.md#naming).
fn ids_in_name(name: &str, prefixes: &BTreeSet<String>) -> BTreeSet<String> {
    let mut tokens = Vec::new();
    for part in name.split('_') {
        let split = part
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(part.len());
        let (letters, digits) = part.split_at(split);
        tokens.extend([letters, digits].into_iter().filter(|t| !t.is_empty()));
    }
    let mut ids = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let prefix = tokens[i].to_ascii_uppercase();
        i += 1;
        if !prefixes.contains(&prefix) {
            continue;
        }
        let mut last = None;
        while let Some(token) = tokens.get(i) {
            if let Ok(n) = token.parse::<u32>() {
                ids.insert(format!("{prefix}-{n}"));
                last = Some(n);
            } else if *token == "to" && last.is_some() {
                let Some(hi) = tokens.get(i + 1).and_then(|t| t.parse::<u32>().ok()) else {
                    break;
                };
                let lo = last.unwrap_or(hi);
                ids.extend((lo..=hi).map(|n| format!("{prefix}-{n}")));
                last = Some(hi);
                i += 1;
            } else {
                break;
            }
            i += 1;
        }
    }
    ids
}

// === checks ===

/// Checks the map in `doc`; `read` returns a repository file's text (path relative to the root).
/// Returns every problem found.
fn check_map(doc: &str, read: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut errors = Vec::new();
    let plan = match plan_ids(doc) {
        Ok(ids) => ids,
        Err(e) => return vec![e],
    };
    let prefixes: BTreeSet<String> = plan
        .iter()
        .filter_map(|id| id.split_once('-').map(|(p, _)| p.to_string()))
        .collect();
    let rows = rows(doc, &mut errors);
    let mut seen = BTreeSet::new();
    let mut counts: BTreeMap<String, Counts> = prefixes
        .iter()
        .chain(&["all".to_string()])
        .map(|p| (p.clone(), Counts::default()))
        .collect();
    for row in &rows {
        let at = format!("line {}: {}", row.line, row.id);
        if !seen.insert(row.id.clone()) {
            errors.push(format!("{at}: listed twice"));
        }
        if !plan.contains(&row.id) {
            errors.push(format!("{at}: not an ID of the plan"));
        }
        check_refs(row, read, &at, &mut errors);
        let tests = row.refs.iter().filter(|r| r.name.is_some()).count();
        match row.status {
            Status::Covered | Status::Partly if tests == 0 => {
                errors.push(format!("{at}: {:?} but names no test", row.status));
            }
            Status::DoesNotApply if row.reason.is_empty() || row.reason == "—" => {
                errors.push(format!("{at}: does not apply, but says no reason"));
            }
            _ => {}
        }
        let named = matches!(row.status, Status::Covered | Status::Partly)
            && row.refs.iter().any(|r| {
                r.name
                    .as_deref()
                    .is_some_and(|n| ids_in_name(n, &prefixes).contains(&row.id))
            });
        let prefix = row.id.split('-').next().unwrap_or_default().to_string();
        for key in [prefix, "all".to_string()] {
            let c = counts.entry(key).or_default();
            c[0] += 1;
            c[1 + row.status as usize] += 1;
            c[5] += usize::from(named);
        }
    }
    for missing in plan.difference(&seen) {
        errors.push(format!("{missing}: no row in the map"));
    }
    let table = summary(doc);
    for (prefix, computed) in &counts {
        match table.get(prefix) {
            Some(written) if written[..] == computed[..] => {}
            Some(written) => errors.push(format!(
                "summary {prefix}: says {written:?}, the rows give {computed:?} \
                 (IDs, covered, partly, no test yet, does not apply, named)"
            )),
            None => errors.push(format!(
                "summary: no row for {prefix}, the rows give {computed:?}"
            )),
        }
    }
    errors
}

/// Every named file exists; every named test is a `fn` in it (or, in a script, appears in it).
fn check_refs(
    row: &Row,
    read: &dyn Fn(&str) -> Option<String>,
    at: &str,
    errors: &mut Vec<String>,
) {
    for r in &row.refs {
        let Some(text) = read(&r.path) else {
            errors.push(format!("{at}: {} does not exist", r.path));
            continue;
        };
        let Some(name) = &r.name else { continue };
        let found = match r.path.ends_with(".rs") {
            true => text.match_indices(&format!("fn {name}")).any(|(i, m)| {
                !text[i + m.len()..].starts_with(|c: char| c == '_' || c.is_alphanumeric())
            }),
            false => text.contains(name.as_str()),
        };
        if !found {
            errors.push(format!("{at}: {} has no test {name}", r.path));
        }
    }
}

/// `docs/X.md#anchor` citations in `text` (X one of [`DOCS`]).
fn citations(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for doc in DOCS {
        let needle = format!("docs/{doc}.md#");
        for (i, _) in text.match_indices(&needle) {
            let anchor: String = text[i + needle.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !anchor.is_empty() {
                out.push((doc.to_string(), anchor));
            }
        }
    }
    out
}

/// The anchors a Markdown file offers: `<a id="…">` and GitHub's heading slugs.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in markdown.match_indices("id=\"") {
        let rest = &markdown[i + 4..];
        if let Some(end) = rest.find('"') {
            out.insert(rest[..end].to_string());
        }
    }
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix('#') {
            let slug: String = heading
                .trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            out.insert(slug);
        }
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match path.is_dir() {
            true if !path.ends_with("target") => files_under(&path, out),
            true => {}
            false => out.push(path),
        }
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_repo(rel: &str) -> Option<String> {
    std::fs::read_to_string(repo().join(rel)).ok()
}

// === tests ===

#[test]
fn testing_md_maps_every_plan_id_to_real_tests_or_a_reason() {
    let doc = read_repo("docs/TESTING.md").unwrap_or_default();
    let errors = check_map(&doc, &read_repo);
    assert!(errors.is_empty(), "docs/TESTING.md:\n{}", errors.join("\n"));
}

#[test]
fn every_cited_doc_anchor_exists() {
    let mut files = Vec::new();
    for root in ROOTS.iter().chain(&["docs/"]) {
        files_under(&repo().join(root), &mut files);
    }
    files.push(repo().join("README.md"));
    let mut broken = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (doc, anchor) in citations(&text) {
            let offered = read_repo(&format!("docs/{doc}.md")).map(|d| anchors(&d));
            if !offered.is_some_and(|a| a.contains(&anchor)) {
                let shown = file.strip_prefix(repo()).unwrap_or(file).display();
                broken.push(format!("{shown}: docs/{doc}.md#{anchor}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "citations of missing anchors:\n{}",
        broken.join("\n")
    );
}

/// The checker must be able to fail: a fake map with one bad row of each kind.
#[test]
fn a_map_with_bad_rows_is_refused() {
    let doc = r#"
plan-ids: XX 1-5, YY 1-1

## Summary

| Prefix | IDs | Covered | Partly | No test yet | Does not apply | Named by ID |
|---|---|---|---|---|---|---|
| XX | 5 | 2 | 1 | 1 | 1 | 1 |
| **all** | 5 | 2 | 1 | 1 | 1 | 1 |

## Rows

| ID | Meaning | Status | Tests or reason |
|---|---|---|---|
| <a id="xx-1"></a>XX-1 | a good row | covered | `tests/fake.rs::xx1_is_real` |
| <a id="xx-2"></a>XX-2 | names a test that is not there | covered | `tests/fake.rs::xx2_is_gone` |
| <a id="xx-3"></a>XX-3 | covered without a test | partly | it works, trust me |
| <a id="xx-3"></a>XX-3 | listed twice | no test yet | — |
| <a id="xx-4"></a>XX-4 | no reason | does not apply | — |
| <a id="xx-9"></a>XX-9 | not in the plan | no test yet | `scripts/missing.sh` |
| <a id="xx-5"></a>XX-5 | unknown status | done | `tests/fake.rs::xx1_is_real` |
"#;
    let fake = |path: &str| {
        (path == "tests/fake.rs")
            .then(|| "#[test]\nfn xx1_is_real() {}\nfn xx2_is_gone_really() {}\n".to_string())
    };
    let errors = check_map(doc, &fake).join("\n");
    for expected in [
        "XX-2: tests/fake.rs has no test xx2_is_gone",
        "XX-3: Partly but names no test",
        "XX-3: listed twice",
        "XX-4: does not apply, but says no reason",
        "XX-9: not an ID of the plan",
        "XX-9: scripts/missing.sh does not exist",
        "XX-5: unknown status \"done\"",
        "XX-5: no row in the map",
        "YY-1: no row in the map",
        "summary XX: says",
        "summary: no row for YY",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    assert!(
        !errors.contains("XX-1:"),
        "the good row was flagged:\n{errors}"
    );
}

#[test]
fn test_names_carry_ids_by_the_naming_rule() {
    let prefixes: BTreeSet<String> = ["BAD", "SEC", "CA", "TLS", "LOAD"].map(String::from).into();
    let ids = |name: &str| ids_in_name(name, &prefixes).into_iter().collect::<Vec<_>>();
    assert_eq!(ids("sec19_canary_never_leaks"), ["SEC-19"]);
    assert_eq!(ids("bad_20_21_malformed"), ["BAD-20", "BAD-21"]);
    assert_eq!(
        ids("bad_1_to_4_framing"),
        ["BAD-1", "BAD-2", "BAD-3", "BAD-4"]
    );
    assert_eq!(ids("local_refused_bad_22_bad_23"), ["BAD-22", "BAD-23"]);
    assert_eq!(ids("load11_herd"), ["LOAD-11"]);
    assert_eq!(ids("tls7_h2_only_client_is_refused"), ["TLS-7"]);
    assert!(ids("ca_certificate_is_name_constrained").is_empty());
    assert!(ids("second_request_is_fine").is_empty());
}

#[test]
fn citations_and_anchors_are_read_like_github() {
    let text = "see docs/PROTOCOL.md#pac-result and docs/TESTING.md#sec-19.";
    assert_eq!(
        citations(text),
        [
            ("PROTOCOL".to_string(), "pac-result".to_string()),
            ("TESTING".to_string(), "sec-19".to_string())
        ]
    );
    let offered = anchors("<a id=\"sec-19\"></a>\n## Request flow: top-down\n");
    assert!(offered.contains("sec-19"));
    assert!(offered.contains("request-flow-top-down"));
}
