use super::*;

const TEXT: &str = "\
state_dir = \"x\"

[listen]
adresses = [\"127.0.0.1:1\"]
max_connections = \"many\"

[[account]]
upn = \"a@contoso.com\"

[[account]]
upn = \"b@contoso.com\"
flow = 7
colour = \"blue\"
";

#[test]
fn every_unknown_key_and_wrong_type_is_reported_and_left_out() {
    let (file, errors) = parse_all(TEXT).unwrap();
    let found: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    for expected in [
        ("listen.adresses", Some(4)),
        ("listen.max_connections", Some(5)),
        ("account[1].flow", Some(12)),
        ("account[1].colour", Some(13)),
    ] {
        assert!(found.contains(&expected), "{expected:?} in {errors:?}");
    }
    assert_eq!(errors.len(), 4, "{errors:?}");
    let flow = errors.iter().find(|e| e.path == "account[1].flow").unwrap();
    assert!(flow.message.contains("invalid type"), "{flow:?}");
    // What was right is still there for stage two.
    assert_eq!(file.state_dir.as_deref(), Some("x"));
    assert_eq!(file.account.len(), 2);
    assert_eq!(file.account[1].upn.as_deref(), Some("b@contoso.com"));
    assert_eq!(file.account[1].flow, None);
}

#[test]
fn a_syntax_error_is_one_error_with_its_line() {
    let err = parse_all("[listen]\naddresses = [\n").unwrap_err();
    assert!(err.line.is_some(), "{err:?}");
}

#[test]
fn key_lines_follow_tables_and_arrays_of_tables() {
    let lines = KeyLines::of(TEXT);
    assert_eq!(lines.line("state_dir"), Some(1));
    assert_eq!(lines.line("listen.max_connections"), Some(5));
    assert_eq!(lines.line("account[1].flow"), Some(12));
    assert_eq!(lines.line("account[0].upn"), Some(8));
    // Not in the file: the enclosing table's line.
    assert_eq!(lines.line("account[1].secret_env"), Some(10));
    assert_eq!(lines.line("--listen"), None);
}
