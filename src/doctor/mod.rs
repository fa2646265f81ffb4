//! `exoproxy doctor`: the verdicts and their rendering. Pure: every check is a small function in
//! [`checks`] that turns facts gathered elsewhere (`app::doctor` reads files, asks the running proxy,
//! dials through the route) into one [`Finding`]; nothing here does I/O, so every verdict and every
//! fix text is a unit test.
//!
//! Contract:
//! - A [`Finding`] names its check, a [`Verdict`], what was found, and for anything but a pass the fix,
//!   as a command or a config key the user can act on (README, "doctor").
//! - The run succeeds when nothing [`Verdict::Fail`]s ([`all_passed`]); a warning does not fail it.
//! - Nothing rendered is a secret: the facts handed in are host names, states and error texts that
//!   the crate already keeps free of tokens and passwords (docs/ARCHITECTURE.md, security model).

pub mod checks;

use std::fmt;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Works, but something will bite (no proxy running, a CA near expiry, clock skew).
    Warn,
    /// Broken: `doctor` exits non-zero.
    Fail,
    /// Does not apply here (the Windows stores on Linux, interception off, no federated domain).
    Skip,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked, short: `config`, `proxy`, `ca`, `reach login.microsoftonline.com`, ...
    pub check: String,
    pub verdict: Verdict,
    /// What was found, in words.
    pub detail: String,
    /// What to do about it; `None` for a pass or a skip.
    pub fix: Option<String>,
}

// === impl Verdict ===

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        })
    }
}

// === impl Finding ===

impl Finding {
    pub fn pass(check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding::new(check, Verdict::Pass, detail, None)
    }

    pub fn skip(check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding::new(check, Verdict::Skip, detail, None)
    }

    pub fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding::new(check, Verdict::Warn, detail, Some(fix.into()))
    }

    pub fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding::new(check, Verdict::Fail, detail, Some(fix.into()))
    }

    fn new(
        check: impl Into<String>,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Finding {
        Finding {
            check: check.into(),
            verdict,
            detail: detail.into(),
            fix,
        }
    }
}

/// Width of the check column, so details line up.
const CHECK_WIDTH: usize = 14;

/// One finding as printed: `VERDICT  check  detail`, then `fix: ...` indented below.
pub fn render(finding: &Finding) -> String {
    let mut out = format!(
        "{}  {:<width$} {}\n",
        finding.verdict,
        finding.check,
        finding.detail,
        width = CHECK_WIDTH
    );
    if let Some(fix) = &finding.fix {
        out.push_str(&format!(
            "      {:<width$} fix: {fix}\n",
            "",
            width = CHECK_WIDTH
        ));
    }
    out
}

/// The closing line: counts per verdict and the outcome.
pub fn summary(findings: &[Finding]) -> String {
    let count = |v: Verdict| findings.iter().filter(|f| f.verdict == v).count();
    let counts = format!(
        "{} passed, {} warning(s), {} failed, {} skipped",
        count(Verdict::Pass),
        count(Verdict::Warn),
        count(Verdict::Fail),
        count(Verdict::Skip)
    );
    if all_passed(findings) {
        format!("{counts}: nothing is broken\n")
    } else {
        format!("{counts}: fix the FAIL lines above, then run `exoproxy doctor` again\n")
    }
}

/// True when no finding failed: `doctor` exits 0.
pub fn all_passed(findings: &[Finding]) -> bool {
    !findings.iter().any(|f| f.verdict == Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_renders_its_verdict_check_detail_and_fix_lines() {
        let f = Finding::fail("proxy", "nothing answers", "run `exoproxy run`");
        assert_eq!(
            render(&f),
            "FAIL  proxy          nothing answers\n                     fix: run `exoproxy run`\n"
        );
        let p = Finding::pass("config", "ok");
        assert_eq!(render(&p), "PASS  config         ok\n");
        assert_eq!(Verdict::Skip.to_string(), "SKIP");
        assert_eq!(Verdict::Warn.to_string(), "WARN");
    }

    #[test]
    fn only_a_failure_fails_the_run_and_the_summary_counts_each_verdict() {
        let mut findings = vec![
            Finding::pass("a", "ok"),
            Finding::warn("b", "hm", "do x"),
            Finding::skip("c", "n/a"),
        ];
        assert!(all_passed(&findings));
        assert_eq!(
            summary(&findings),
            "1 passed, 1 warning(s), 0 failed, 1 skipped: nothing is broken\n"
        );
        findings.push(Finding::fail("d", "broken", "fix it"));
        assert!(!all_passed(&findings));
        assert!(summary(&findings).contains("1 failed"));
        assert!(summary(&findings).contains("fix the FAIL lines"));
    }
}
