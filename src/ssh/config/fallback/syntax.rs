//! How an ssh_config line splits into a keyword and arguments (OpenSSH's `strdelim` and
//! `argv_split`), and time values (`convtime`). `Match` lines split differently, see
//! [`match_criteria`](super::match_criteria).

use anyhow::{Context, Result, bail, ensure};

/// Splits a config line into its keyword and the rest (after whitespace and at most
/// one `=`, as OpenSSH's `strdelim`); `None` for blank lines and comments.
pub(super) fn split_keyword(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    Some((keyword, rest))
}

/// Splits arguments like OpenSSH's `argv_split`: whitespace-separated, `"`/`'`
/// quoting, `\` escaping quotes, backslash and space, and a `#` starting a word ends
/// the line. An unterminated quote is an error, as in OpenSSH, whatever the keyword.
pub(super) fn split_args(text: &str) -> Result<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) if matches!(chars.peek(), Some('\\' | '"' | '\'' | ' ')) => {
                    arg.extend(chars.next());
                }
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => arg.push(c),
            }
        }
        ensure!(quote.is_none(), "invalid quotes");
        args.push(arg);
    }
    Ok(args)
}

/// OpenSSH's `convtime`: a sequence of numbers each with an optional unit
/// (`s`, `m`, `h`, `d`, `w`; seconds without one).
pub(super) fn convtime(text: &str) -> Result<u64> {
    ensure!(!text.is_empty(), "empty time");
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            if chars.peek().is_some() {
                continue;
            }
        }
        ensure!(!number.is_empty(), "no number before {c:?}");
        let multiplier = if c.is_ascii_digit() {
            1
        } else {
            match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 604800,
                _ => bail!("unknown time unit {c:?}"),
            }
        };
        let value: u64 = number.parse()?;
        total = value
            .checked_mul(multiplier)
            .and_then(|v| total.checked_add(v))
            .context("time too large")?;
        number.clear();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_arguments_and_times() {
        assert_eq!(
            split_args(r#"a "b c"  'd e' f\ g h#i # rest"#).unwrap(),
            ["a", "b c", "d e", "f g", "h#i"]
        );
        assert!(split_args("a 'b").is_err());
        assert_eq!(split_keyword("  Port=22 "), Some(("Port", "22")));
        assert_eq!(split_keyword("Port = 22"), Some(("Port", "22")));
        assert_eq!(split_keyword(" # x"), None);
        assert_eq!(convtime("90").unwrap(), 90);
        assert_eq!(convtime("1h2m3S").unwrap(), 3723);
        assert!(convtime("5x").is_err());
        assert!(convtime("m").is_err());
    }
}
