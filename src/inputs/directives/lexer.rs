//! The few lexical rules of C that decide what text the preprocessor sees: splices,
//! comments, literals (raw strings included), pp-numbers and header names.

use std::borrow::Cow;

use super::HeaderName;

/// `text` with every backslash-newline (GCC also accepts blanks between the two) removed,
/// as translation phase 2 does before anything else.
pub(super) fn splice(text: &[u8]) -> Cow<'_, [u8]> {
    let continuation_at = |at: usize| -> Option<usize> {
        let mut end = at + 1;
        while end < text.len() && matches!(text[end], b' ' | b'\t') {
            end += 1;
        }
        match text.get(end) {
            Some(b'\n') => Some(end + 1),
            Some(b'\r') if text.get(end + 1) == Some(&b'\n') => Some(end + 2),
            Some(b'\r') => Some(end + 1),
            _ => None,
        }
    };
    let first = (0..text.len()).find(|&at| text[at] == b'\\' && continuation_at(at).is_some());
    let Some(first) = first else {
        return Cow::Borrowed(text);
    };
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(&text[..first]);
    let mut at = first;
    while at < text.len() {
        if text[at] == b'\\'
            && let Some(after) = continuation_at(at)
        {
            at = after;
            continue;
        }
        out.push(text[at]);
        at += 1;
    }
    Cow::Owned(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'a> {
    Eof,
    Newline,
    /// `#`, `%:` or `??=`.
    Hash,
    Ident(&'a [u8]),
    /// A string or character literal, with its quotes (and without a prefix).
    Str(&'a [u8]),
    Number,
    Punct(u8),
}

impl<'a> Token<'a> {
    pub(super) fn text(&self) -> &'a [u8] {
        match self {
            Token::Ident(text) | Token::Str(text) => text,
            _ => b"",
        }
    }
}

pub(super) struct Lexer<'a> {
    pub(super) text: &'a [u8],
    pub(super) at: usize,
}

fn is_ident_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b'$' || byte >= 0x80
}

fn is_ident(byte: u8) -> bool {
    is_ident_start(byte) || byte.is_ascii_digit()
}

impl<'a> Lexer<'a> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn byte(&self, offset: usize) -> Option<u8> {
        self.text.get(self.at + offset).copied()
    }

    /// Skips blanks and comments, never a line's end (a block comment's own line breaks
    /// are inside it).
    pub(super) fn skip_blanks(&mut self) {
        while let Some(byte) = self.peek() {
            match byte {
                b' ' | b'\t' | b'\x0b' | b'\x0c' | 0 => self.at += 1,
                b'\r' if self.byte(1) == Some(b'\n') => self.at += 1,
                b'/' if self.byte(1) == Some(b'*') => {
                    let body = self.at + 2;
                    self.at = self.text[body..]
                        .windows(2)
                        .position(|pair| pair == b"*/")
                        .map_or(self.text.len(), |end| body + end + 2);
                }
                b'/' if self.byte(1) == Some(b'/') => {
                    self.at = self.text[self.at..]
                        .iter()
                        .position(|&byte| byte == b'\n' || byte == b'\r')
                        .map_or(self.text.len(), |end| self.at + end);
                }
                _ => return,
            }
        }
    }

    pub(super) fn next(&mut self) -> Token<'a> {
        self.skip_blanks();
        let Some(byte) = self.peek() else {
            return Token::Eof;
        };
        let start = self.at;
        match byte {
            // A lone CR ends a line too (old Mac files; GCC accepts them).
            b'\n' | b'\r' => {
                self.at += 1;
                Token::Newline
            }
            b'#' if self.byte(1) == Some(b'#') => {
                self.at += 2;
                Token::Punct(b'#')
            }
            b'#' => {
                self.at += 1;
                Token::Hash
            }
            b'%' if self.byte(1) == Some(b':') => {
                self.at += 2;
                Token::Hash
            }
            b'?' if self.byte(1) == Some(b'?') && self.byte(2) == Some(b'=') => {
                self.at += 3;
                Token::Hash
            }
            b'"' | b'\'' => self.literal(byte),
            _ if is_ident_start(byte) => {
                while self.peek().is_some_and(is_ident) {
                    self.at += 1;
                }
                let word = &self.text[start..self.at];
                match (word, self.peek()) {
                    (b"R" | b"LR" | b"uR" | b"UR" | b"u8R", Some(b'"')) => self.raw_string(),
                    (b"L" | b"u" | b"U" | b"u8", Some(quote @ (b'"' | b'\''))) => {
                        self.literal(quote)
                    }
                    _ => Token::Ident(word),
                }
            }
            _ if byte.is_ascii_digit()
                || (byte == b'.' && self.byte(1).is_some_and(|b| b.is_ascii_digit())) =>
            {
                // A pp-number, including C++14 digit separators (`1'000`), which must not
                // open a character literal.
                self.at += 1;
                while let Some(byte) = self.peek() {
                    match byte {
                        b'e' | b'E' | b'p' | b'P' if matches!(self.byte(1), Some(b'+' | b'-')) => {
                            self.at += 2
                        }
                        b'\'' if self.byte(1).is_some_and(is_ident) => self.at += 2,
                        _ if is_ident(byte) || byte == b'.' => self.at += 1,
                        _ => break,
                    }
                }
                Token::Number
            }
            _ => {
                self.at += 1;
                Token::Punct(byte)
            }
        }
    }

    /// A string or character literal; an unterminated one ends with its line.
    fn literal(&mut self, quote: u8) -> Token<'a> {
        let start = self.at;
        self.at += 1;
        while let Some(byte) = self.peek() {
            match byte {
                b'\n' | b'\r' => break,
                b'\\' => self.at += 2,
                _ if byte == quote => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        self.at = self.at.min(self.text.len());
        Token::Str(&self.text[start..self.at])
    }

    /// `R"delim( … )delim"`, which may span lines. A malformed delimiter makes it an
    /// ordinary string (GCC rejects the file anyway).
    fn raw_string(&mut self) -> Token<'a> {
        let start = self.at;
        let delimiter_start = self.at + 1;
        let Some(open) = self.text[delimiter_start..]
            .iter()
            .take(17)
            .position(|&byte| byte == b'(')
        else {
            return self.literal(b'"');
        };
        let delimiter = &self.text[delimiter_start..delimiter_start + open];
        if delimiter
            .iter()
            .any(|&byte| matches!(byte, b' ' | b'\\' | b')' | b'\t' | b'\n' | b'\r' | b'"'))
        {
            return self.literal(b'"');
        }
        let body = delimiter_start + open + 1;
        let mut closing = Vec::with_capacity(delimiter.len() + 2);
        closing.push(b')');
        closing.extend_from_slice(delimiter);
        closing.push(b'"');
        self.at = self.text[body..]
            .windows(closing.len())
            .position(|window| window == closing.as_slice())
            .map_or(self.text.len(), |end| body + end + closing.len());
        Token::Str(&self.text[start..self.at])
    }

    /// A `"…"` or `<…>` header name at the cursor (after blanks), if there is one: no
    /// escapes are interpreted in it, and it cannot span lines.
    pub(super) fn header_name(&mut self) -> Option<Result<HeaderName, String>> {
        self.skip_blanks();
        let close = match self.peek()? {
            b'"' => b'"',
            b'<' => b'>',
            _ => return None,
        };
        let start = self.at + 1;
        let end = self.text[start..]
            .iter()
            .position(|&byte| byte == close || byte == b'\n' || byte == b'\r')
            .map(|end| start + end)
            .filter(|&end| self.text[end] == close)?;
        self.at = end + 1;
        let Ok(name) = std::str::from_utf8(&self.text[start..end]) else {
            return Some(Err(format!(
                "header name {:?} is not UTF-8",
                String::from_utf8_lossy(&self.text[start..end])
            )));
        };
        let name = name.to_string();
        Some(Ok(if close == b'"' {
            HeaderName::Quote(name)
        } else {
            HeaderName::Angle(name)
        }))
    }

    pub(super) fn skip_line(&mut self) {
        while !matches!(self.next(), Token::Newline | Token::Eof) {}
    }
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
