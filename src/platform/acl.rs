//! Owner-only folders: the SDDL text (platform-neutral) and the best-effort call that applies it.

use std::path::Path;

/// The SDDL of an owner-only folder: a protected DACL (`P`: nothing inherited from the parent) with
/// full control (`FA`) for `user_sid` and SYSTEM (`SY`), inherited by files and subfolders (`OICI`).
/// Administrators get no entry: they can still take ownership, but nothing is granted by default.
/// `None` when `user_sid` is not a plain `S-1-…` string, so nothing else can be spliced into the SDDL.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn owner_only_sddl(user_sid: &str) -> Option<String> {
    is_sid_string(user_sid).then(|| format!("D:P(A;OICI;FA;;;{user_sid})(A;OICI;FA;;;SY)"))
}

/// `S-1-` followed by one or more dash-separated decimal fields.
fn is_sid_string(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("S-1-") else {
        return false;
    };
    rest.split('-')
        .all(|field| !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit()))
}

/// Makes `dir` owner-only on Windows (see the module doc of `platform`); a no-op elsewhere.
/// Never fails: a folder whose ACL cannot be set keeps the one inherited from the profile, with a warning.
pub(crate) fn restrict_dir_to_owner(dir: &Path) {
    #[cfg(windows)]
    if let Err(reason) = super::windows_acl::set_owner_only(dir) {
        tracing::warn!(dir = %dir.display(), %reason,
            "could not make the folder owner-only (ACL); it keeps the permissions inherited from its \
             parent. Check that you own the folder and that it is on an NTFS volume (`icacls <dir>`)");
    }
    #[cfg(not(windows))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sddl_grants_the_user_and_system_only_and_blocks_inheritance() {
        let sddl = owner_only_sddl("S-1-5-21-1004336348-1177238915-682003330-1001").unwrap();
        assert_eq!(
            sddl,
            "D:P(A;OICI;FA;;;S-1-5-21-1004336348-1177238915-682003330-1001)(A;OICI;FA;;;SY)"
        );
        assert!(sddl.starts_with("D:P("), "protected DACL");
        assert!(!sddl.contains(";BA)"), "no Administrators entry");
        assert!(
            !sddl.contains(";WD)") && !sddl.contains(";BU)"),
            "no Everyone/Users entry"
        );
    }

    #[test]
    fn sddl_accepts_system_as_the_user() {
        assert!(owner_only_sddl("S-1-5-18").is_some());
    }

    #[test]
    fn sddl_refuses_anything_but_a_sid_string() {
        for bad in [
            "",
            "S-1-",
            "S-1-5-",
            "S-1-5--18",
            "S-2-5-18",
            "s-1-5-18",
            "WD",
            "S-1-5-18)(A;OICI;FA;;;WD",
            "S-1-5-18 ",
            "S-1-5-x",
        ] {
            assert_eq!(owner_only_sddl(bad), None, "{bad:?}");
        }
    }
}
