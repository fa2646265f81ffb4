//! `shExpMatch` without regular expressions (PAC-4): an anchored shell glob where `*` matches any run of
//! characters, `?` exactly one, and everything else itself.
//!
//! Contract: [`sh_exp_match`] runs in O(len(text) × len(pattern)) at worst and never backtracks
//! exponentially; inputs beyond [`MAX_TEXT_CHARS`] / [`MAX_PATTERN_CHARS`] do not match, which bounds one
//! call to a few milliseconds whatever the script passes (a native call cannot be interrupted).
//!
//! Why it is linear-ish: the pattern is split at `*` into literal segments; the first must be a prefix,
//! the last a suffix, and each middle segment is taken at its leftmost occurrence. Leftmost is always
//! safe for globs, so no choice is ever revisited.

/// Longer texts never match (URLs the proxy builds are far shorter).
pub const MAX_TEXT_CHARS: usize = 16 * 1024;
/// Longer patterns never match.
pub const MAX_PATTERN_CHARS: usize = 1024;

/// True when `text` matches the shell expression `pattern` as a whole.
pub fn sh_exp_match(text: &str, pattern: &str) -> bool {
    if text.is_ascii() && pattern.is_ascii() {
        // Host names and URLs: match bytes in place, no allocation.
        return text.len() <= MAX_TEXT_CHARS
            && pattern.len() <= MAX_PATTERN_CHARS
            && glob(text.as_bytes(), pattern.as_bytes(), b'*', b'?');
    }
    let text: Vec<char> = text.chars().take(MAX_TEXT_CHARS + 1).collect();
    let pattern: Vec<char> = pattern.chars().take(MAX_PATTERN_CHARS + 1).collect();
    text.len() <= MAX_TEXT_CHARS
        && pattern.len() <= MAX_PATTERN_CHARS
        && glob(&text, &pattern, '*', '?')
}

/// The matcher over bytes or chars.
fn glob<T: Copy + PartialEq>(text: &[T], pattern: &[T], star: T, any: T) -> bool {
    let segments: Vec<&[T]> = pattern.split(|c| *c == star).collect();
    let [first, middle @ .., last] = segments.as_slice() else {
        // No star at all: one segment that must cover the whole text.
        return text.len() == pattern.len() && segment_matches(text, pattern, any);
    };
    if text.len() < first.len() + last.len() || !segment_matches(text, first, any) {
        return false;
    }
    let tail_start = text.len() - last.len();
    if !segment_matches(&text[tail_start..], last, any) {
        return false;
    }
    let mut pos = first.len();
    for segment in middle {
        match find_segment(&text[pos..tail_start], segment, any) {
            Some(at) => pos += at + segment.len(),
            None => return false,
        }
    }
    true
}

/// True when `segment` matches the start of `text` (`any` is any one element).
fn segment_matches<T: Copy + PartialEq>(text: &[T], segment: &[T], any: T) -> bool {
    text.len() >= segment.len() && segment.iter().zip(text).all(|(p, t)| *p == any || p == t)
}

/// The leftmost offset where `segment` matches inside `text`.
fn find_segment<T: Copy + PartialEq>(text: &[T], segment: &[T], any: T) -> Option<usize> {
    if segment.len() > text.len() {
        return None;
    }
    (0..=text.len() - segment.len()).find(|&at| segment_matches(&text[at..], segment, any))
}

#[cfg(test)]
mod tests {
    use super::sh_exp_match;

    #[test]
    fn glob_semantics() {
        let cases = [
            ("www.example.com", "*.example.com", true),
            ("example.com", "*.example.com", false),
            (
                "http://home.netscape.com/people/ari/index.html",
                "*/ari/*",
                true,
            ),
            (
                "http://home.netscape.com/people/montulli/index.html",
                "*/ari/*",
                false,
            ),
            ("abc", "a?c", true),
            ("ac", "a?c", false),
            ("a.c", "a.c", true),
            ("abc", "a.c", false),
            ("", "*", true),
            ("", "", true),
            ("x", "", false),
            ("aaa", "a*a*a", true),
            ("aa", "a*a*a", false),
            ("10.1.2.3", "10.*", true),
            ("abcabd", "*abd", true),
            ("abcabcabd", "a*abd", true),
            ("host.CORP", "*.corp", false),
            ("caf\u{e9}.example", "caf?.example", true),
            ("\u{e9}t\u{e9}", "*t?", true),
        ];
        for (text, pattern, want) in cases {
            assert_eq!(sh_exp_match(text, pattern), want, "{text:?} ~ {pattern:?}");
        }
    }

    #[test]
    fn hostile_patterns_are_fast() {
        let text = "a".repeat(16 * 1024);
        let pattern = format!("{}b", "*a".repeat(500));
        let start = std::time::Instant::now();
        assert!(!sh_exp_match(&text, &pattern));
        assert!(start.elapsed() < std::time::Duration::from_millis(500));
        assert!(!sh_exp_match(&"a".repeat(20_000), "*"));
    }
}
