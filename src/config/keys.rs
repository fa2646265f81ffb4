//! The TOML text as a tree of spanned keys: stage one's error collection and the line of every key
//! path.
//!
//! Contract:
//! - [`parse_all`] reports every unknown key and every value of the wrong type at once: serde (the
//!   `deny_unknown_fields` mirror in [`super::file`]) stays the only schema; each error's span names
//!   the key in error, which is taken out of the tree before deserializing again, so the rest of the
//!   file is still read and validated. A syntax error stops there (nothing after it can be trusted).
//! - [`KeyLines`] maps the key paths `validate` reports (`upstream.credentials[1].proxy`,
//!   `account[0].flow`) to their 1-based lines; a path that is not in the file gets its nearest
//!   enclosing table's line.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

use super::ConfigError;
use super::file::FileConfig;

/// The 1-based line of each key path in one file.
#[derive(Debug, Default)]
pub(super) struct KeyLines(HashMap<String, usize>);

/// Deserializes `text`, leaving out and reporting each key that is unknown or has the wrong type.
pub(super) fn parse_all(text: &str) -> Result<(FileConfig, Vec<ConfigError>), ConfigError> {
    let mut root = DeTable::parse(text).map_err(|e| ConfigError {
        path: String::new(),
        line: e.span().map(|s| line_at(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let mut errors = Vec::new();
    // Each round takes one key out, so this ends; the bound is a guard against a span that names
    // no key (then the rest of the file is not read rather than looping).
    for _ in 0..=text.len() {
        let error = match FileConfig::deserialize(Deserializer::from(root.clone())) {
            Ok(file) => return Ok((file, errors)),
            Err(e) => e,
        };
        let message = error.message().trim().to_string();
        let removed = error
            .span()
            .and_then(|span| remove_key_at(root.get_mut(), &span, ""));
        let Some((path, key_start)) = removed else {
            errors.push(ConfigError {
                path: String::new(),
                line: error.span().map(|s| line_at(text, s.start)),
                message,
            });
            break;
        };
        errors.push(ConfigError {
            path,
            line: Some(line_at(text, key_start)),
            message,
        });
    }
    Ok((FileConfig::default(), errors))
}

/// Removes the innermost key whose name or value contains `span`; returns its path and where it
/// starts.
fn remove_key_at(
    table: &mut DeTable<'_>,
    span: &Range<usize>,
    path: &str,
) -> Option<(String, usize)> {
    for (key, value) in table.iter_mut() {
        let here = join(path, key.get_ref());
        if let Some(found) = remove_in_value(value.get_mut(), span, &here) {
            return Some(found);
        }
    }
    let contains = |s: Range<usize>| s.start <= span.start && span.end <= s.end.max(s.start + 1);
    let (key, found) = table
        .iter()
        .find(|(k, v)| contains(k.span()) || contains(v.span()))
        .map(|(k, _)| {
            (
                k.get_ref().to_string(),
                (join(path, k.get_ref()), k.span().start),
            )
        })?;
    table.remove(key.as_str());
    Some(found)
}

fn remove_in_value(
    value: &mut DeValue<'_>,
    span: &Range<usize>,
    path: &str,
) -> Option<(String, usize)> {
    match value {
        DeValue::Table(t) => remove_key_at(t, span, path),
        DeValue::Array(items) => {
            items
                .iter_mut()
                .enumerate()
                .find_map(|(i, item)| match item.get_mut() {
                    DeValue::Table(t) => remove_key_at(t, span, &format!("{path}[{i}]")),
                    _ => None,
                })
        }
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The 1-based line of byte offset `at`.
pub(super) fn line_at(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

// === impl KeyLines ===

impl KeyLines {
    /// Every key path of `text` (empty when it does not parse: stage one reported that).
    pub(super) fn of(text: &str) -> KeyLines {
        let mut lines = KeyLines::default();
        if let Ok(root) = DeTable::parse(text) {
            lines.walk(text, root.get_ref(), "");
        }
        lines
    }

    fn walk(&mut self, text: &str, table: &DeTable<'_>, path: &str) {
        for (key, value) in table.iter() {
            let here = join(path, key.get_ref());
            self.0.insert(here.clone(), line_at(text, key.span().start));
            self.walk_value(text, value, &here);
        }
    }

    fn walk_value(&mut self, text: &str, value: &Spanned<DeValue<'_>>, path: &str) {
        match value.get_ref() {
            DeValue::Table(t) => self.walk(text, t, path),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let here = format!("{path}[{i}]");
                    self.0
                        .insert(here.clone(), line_at(text, item.span().start));
                    self.walk_value(text, item, &here);
                }
            }
            _ => {}
        }
    }

    /// The line of `path`, else of its nearest enclosing key that is in the file.
    pub(super) fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.0.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

#[cfg(test)]
mod tests;
