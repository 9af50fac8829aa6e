//! OpenSSH's `*`/`?` patterns: the pattern lists of `Host` and `Match` with `!`
//! negation, host names matched ignoring case, and the globs of `Include`.

use std::path::{Path, PathBuf};

/// OpenSSH's `match_pattern_list`: whether some pattern matches `text` and no
/// `!`-negated one does. `Host` gives its patterns as separate words, `Match` as one
/// comma-separated list.
pub(super) fn pattern_list_matches<'p>(
    patterns: impl IntoIterator<Item = &'p str>,
    text: &str,
) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, text) {
                return false;
            }
        } else if wildcard_match(pattern, text) {
            matched = true;
        }
    }
    matched
}

/// OpenSSH's `match_hostname`: a comma-separated pattern list matched ignoring ASCII
/// case.
pub(super) fn hostname_matches(patterns: &str, host: &str) -> bool {
    let patterns = patterns.to_ascii_lowercase();
    // OpenSSH's list parser ends at a trailing comma rather than reading an empty
    // pattern after it.
    let patterns = patterns.strip_suffix(',').unwrap_or(&patterns);
    pattern_list_matches(patterns.split(','), &host.to_ascii_lowercase())
}

/// `*` / `?` wildcard match, case-sensitive, as OpenSSH's `match_pattern`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    p = bp + 1;
                    t = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Expands `*` / `?` in any component of `pattern` (hidden files only match a
/// pattern starting with `.`), sorted like glob(3); a path without wildcards is
/// returned as is, whether or not it exists.
pub(super) fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        if !part.contains(['*', '?']) {
            for path in &mut paths {
                path.push(component);
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &paths {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| {
                    (!name.starts_with('.') || part.starts_with('.')) && wildcard_match(&part, name)
                })
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|name| dir.join(name)));
        }
        paths = next;
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("b*-?", "build-7"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("B*", "build"));
        assert!(!wildcard_match("b?", "b"));
    }
}
