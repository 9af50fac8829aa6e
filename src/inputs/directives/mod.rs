//! The directive scanner: which file names a header or source can make the preprocessor
//! open, read from its text without evaluating anything.
//!
//! It over-approximates on purpose: conditions (`#if`) are not evaluated, so the includes
//! of every branch count, and a name that exists nowhere is dropped later by the
//! resolver (the box will not have it either). What must never happen is the opposite,
//! a directive missed, so the lexer only needs to be exact about what hides text from
//! the preprocessor: comments, string and character literals (which end at the line's
//! end), C++ raw strings (which do not), and backslash-newline splices (also with
//! trailing blanks, as GCC accepts). Anything it cannot follow statically becomes a
//! doubt (the job is then preprocessed locally): `#embed`, `.incbin`, `#pragma GCC
//! dependency`, and `#include`/`__has_include` operands that are neither a literal nor a
//! single macro name.
//!
//! A result depends on the content only, so it is cached by digest.

mod lexer;

use lexer::Lexer;
use lexer::Token;
use lexer::contains;
use lexer::splice;

/// A header name as written between `"…"` or `<…>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Quote(String),
    Angle(String),
}

/// What follows `#include` (or what `__has_include` is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Name(HeaderName),
    /// A single identifier: a computed include, resolved through the macro's values.
    Macro(String),
}

/// An `#include`, `#import` or `#include_next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub next: bool,
    pub operand: Operand,
}

/// A `__has_include` or `__has_include_next` probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HasInclude {
    pub next: bool,
    pub operand: Operand,
    /// Written in a `#define` body: it is evaluated wherever the macro is expanded, so a
    /// quoted name may be looked up next to any file.
    pub in_define: bool,
}

/// What an object-like `#define` makes of its name, as far as include names go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacroValue {
    Header(HeaderName),
    /// Another macro's name.
    Alias(String),
    /// Anything else (numbers, expressions, function-like macros, pasting).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Define {
    pub name: String,
    pub value: MacroValue,
}

/// Everything in one file that can make the preprocessor look for a file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    pub includes: Vec<Include>,
    pub has_includes: Vec<HasInclude>,
    pub defines: Vec<Define>,
    /// Why this file cannot be handled by remote preprocessing, if it cannot.
    pub doubts: Vec<String>,
    /// Whether the text names `__DATE__` or `__TIME__` anywhere (a comment too): a
    /// compile that expands them writes when it ran, which no cache key holds.
    pub names_the_clock: bool,
}

impl Directives {
    /// Scans `text`.
    pub fn scan(text: &[u8]) -> Directives {
        let mut found = Directives {
            names_the_clock: contains(text, b"__DATE__") || contains(text, b"__TIME__"),
            ..Directives::default()
        };
        if contains(text, b".incbin") {
            found
                .doubts
                .push(".incbin reads a file from assembly".into());
        }
        let text = splice(text);
        let mut lexer = Lexer { text: &text, at: 0 };
        let mut line_start = true;
        loop {
            match lexer.next() {
                Token::Eof => break,
                Token::Newline => line_start = true,
                Token::Hash if line_start => found.directive(&mut lexer),
                Token::Ident(b"_Pragma") => {
                    line_start = false;
                    if let (Token::Punct(b'('), Token::Str(text)) = (lexer.next(), lexer.next())
                        && contains(text, b"dependency")
                    {
                        found.doubts.push("_Pragma(\"GCC dependency\")".into());
                    }
                }
                _ => line_start = false,
            }
        }
        found
    }

    /// One directive, from its name to the end of its line.
    fn directive(&mut self, lexer: &mut Lexer) {
        let name = match lexer.next() {
            Token::Ident(name) => name,
            Token::Newline | Token::Eof => return,
            _ => return lexer.skip_line(),
        };
        match name {
            b"include" | b"import" | b"include_next" => {
                let next = name == b"include_next";
                match self.operand(lexer) {
                    Some(operand) => self.includes.push(Include { next, operand }),
                    None => lexer.skip_line(),
                }
            }
            b"define" => self.define(lexer),
            b"embed" => {
                self.doubts.push("#embed reads a file".into());
                lexer.skip_line();
            }
            b"pragma" => {
                let first = lexer.next();
                if matches!(first, Token::Newline | Token::Eof) {
                    return;
                }
                let second = lexer.next();
                if first == Token::Ident(b"GCC")
                    && matches!(second, Token::Ident(b"dependency" | b"pch_preprocess"))
                {
                    self.doubts.push(format!(
                        "#pragma GCC {}",
                        String::from_utf8_lossy(second.text())
                    ));
                }
                if !matches!(second, Token::Newline | Token::Eof) {
                    lexer.skip_line();
                }
            }
            _ => self.rest_of_directive(lexer, false),
        }
    }

    /// An `#include`'s operand. The line's remainder is consumed.
    fn operand(&mut self, lexer: &mut Lexer) -> Option<Operand> {
        if let Some(name) = lexer.header_name() {
            return match name {
                Ok(name) => {
                    lexer.skip_line();
                    Some(Operand::Name(name))
                }
                Err(doubt) => {
                    self.doubts.push(doubt);
                    None
                }
            };
        }
        let start = lexer.at;
        let mut tokens = Vec::new();
        loop {
            match lexer.next() {
                Token::Newline | Token::Eof => break,
                token => tokens.push(token),
            }
        }
        match tokens.as_slice() {
            [] => None,
            [Token::Ident(name)] => Some(Operand::Macro(text_of(name))),
            _ => {
                let end = lexer.at.min(lexer.text.len());
                self.doubts.push(format!(
                    "computed #include {}",
                    String::from_utf8_lossy(&lexer.text[start..end]).trim()
                ));
                None
            }
        }
    }

    fn define(&mut self, lexer: &mut Lexer) {
        let Token::Ident(name) = lexer.next() else {
            return lexer.skip_line();
        };
        if name.starts_with(b"__has_include") {
            // A fallback for compilers without it, inside `#ifndef __has_include`.
            return lexer.skip_line();
        }
        let name = text_of(name);
        if lexer.peek() == Some(b'(') {
            // Function-like: never a plain header name.
            self.defines.push(Define {
                name,
                value: MacroValue::Other,
            });
            return self.rest_of_directive(lexer, true);
        }
        lexer.skip_blanks();
        if lexer.peek() == Some(b'<') {
            let body = lexer.at;
            if let Some(Ok(header)) = lexer.header_name()
                && matches!(lexer.next(), Token::Newline | Token::Eof)
            {
                self.defines.push(Define {
                    name,
                    value: MacroValue::Header(header),
                });
                return;
            }
            lexer.at = body;
        }
        let mut tokens = Vec::new();
        loop {
            match lexer.next() {
                Token::Newline | Token::Eof => break,
                Token::Ident(word) if word.starts_with(b"__has_include") => {
                    tokens.push(Token::Ident(word));
                    self.has_include(lexer, word, true);
                }
                token => tokens.push(token),
            }
        }
        let value = match tokens.as_slice() {
            [Token::Str(literal)] if literal.first() == Some(&b'"') && literal.len() >= 2 => {
                MacroValue::Header(HeaderName::Quote(text_of(&literal[1..literal.len() - 1])))
            }
            [Token::Ident(other)] => MacroValue::Alias(text_of(other)),
            _ => MacroValue::Other,
        };
        self.defines.push(Define { name, value });
    }

    /// The remainder of a directive line, where only `__has_include` matters.
    fn rest_of_directive(&mut self, lexer: &mut Lexer, in_define: bool) {
        loop {
            match lexer.next() {
                Token::Newline | Token::Eof => return,
                Token::Ident(word) if word.starts_with(b"__has_include") => {
                    self.has_include(lexer, word, in_define);
                }
                Token::Ident(b"__has_embed") => {
                    self.doubts.push("__has_embed".into());
                }
                _ => {}
            }
        }
    }

    /// `__has_include(…)` and its spellings (`__has_include__` of GCC < 10,
    /// `__has_include_next`). Without a `(` it is only being tested for (`defined`).
    fn has_include(&mut self, lexer: &mut Lexer, word: &[u8], in_define: bool) {
        let next = match word {
            b"__has_include" | b"__has_include__" => false,
            b"__has_include_next" | b"__has_include_next__" => true,
            _ => return,
        };
        lexer.skip_blanks();
        if lexer.peek() != Some(b'(') {
            return;
        }
        let _ = lexer.next();
        let operand = match lexer.header_name() {
            Some(Ok(name)) => Some(Operand::Name(name)),
            Some(Err(doubt)) => {
                self.doubts.push(doubt);
                None
            }
            None => {
                let mut tokens = Vec::new();
                let mut depth = 1;
                loop {
                    match lexer.next() {
                        Token::Newline | Token::Eof => break,
                        Token::Punct(b'(') => depth += 1,
                        Token::Punct(b')') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        token => tokens.push(token),
                    }
                }
                match tokens.as_slice() {
                    [Token::Ident(name)] => Some(Operand::Macro(text_of(name))),
                    _ => {
                        self.doubts.push(format!(
                            "{} with a computed argument",
                            String::from_utf8_lossy(word)
                        ));
                        None
                    }
                }
            }
        };
        if let Some(operand) = operand {
            self.has_includes.push(HasInclude {
                next,
                operand,
                in_define,
            });
        }
    }
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests;
