use super::*;

fn report(failures: u64, first_whoami: &str, refreshes: u64, matched: u64) -> Report {
    Report {
        duration: Duration::from_secs(12),
        token_lifetime: 4,
        counts: Counts {
            rest: 600,
            wsman: 20,
            failures,
            messages: Vec::new(),
        },
        first_whoami: first_whoami.into(),
        sessions: load::Sessions { run: 4, matched },
        refreshes,
    }
}

#[test]
fn passes_only_with_no_failures_the_right_whoami_and_a_refresh() {
    assert!(report(0, DEMO_UPN, 3, 4).passed());
    assert!(!report(1, DEMO_UPN, 3, 4).passed(), "a failed request");
    assert!(
        !report(0, "user@contoso.com", 3, 4).passed(),
        "wrong account"
    );
    assert!(!report(0, DEMO_UPN, 0, 4).passed(), "no refresh");
    assert!(
        !report(0, DEMO_UPN, 3, 3).passed(),
        "a later whoami went wrong"
    );
}

#[test]
fn report_shows_the_counts_and_the_verdict() {
    let text = report(0, DEMO_UPN, 3, 4).to_string();
    for line in [
        "REST requests:    600 from 3 keep-alive clients",
        "WS-Man requests:  20 in 5 whoami sessions (5 printed admin@contoso.com)",
        "failed requests:  0",
        "token refreshes:  3 (expected rollovers: about 3)",
        "result:           PASS",
    ] {
        assert!(text.contains(line), "{line:?} missing in:\n{text}");
    }
    assert!(report(2, DEMO_UPN, 3, 4).to_string().contains("FAIL"));
}
