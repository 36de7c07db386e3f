//! GPT-2's pre-tokenizer split, written out by hand.
//!
//! The split is the regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! (leftmost-first). Every character is exactly one of letter (`\p{L}`), number
//! (`\p{N}`), whitespace (`\s`) or other, so the pieces tile the text and each
//! one is decided by its first one or two characters; a small loop over those
//! classes does what the regex engines do with an automaton and a reverse
//! search per match (the `regex` crate) or backtracking (fancy-regex in
//! tokenizers), several times faster.
//!
//! The classes come from `regex-syntax`, the crate that builds the character
//! tables of both regex engines, so a character's class here is the one the
//! tokenizers pipeline sees. Tests compare the pieces with tokenizers'
//! `ByteLevel` pre-tokenizer.

use std::sync::OnceLock;

use regex_syntax::hir::{Class as HirClass, HirKind};

/// Which run a character belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

/// Character classes: a table for ASCII, sorted disjoint ranges for the rest.
struct Classes {
    ascii: [Class; 128],
    /// `(first, last, class)` of every non-ASCII letter, number and space range.
    ranges: Vec<(u32, u32, Class)>,
}

impl Classes {
    fn get() -> &'static Classes {
        static CLASSES: OnceLock<Classes> = OnceLock::new();
        CLASSES.get_or_init(Classes::build)
    }

    fn build() -> Classes {
        let mut ranges = Vec::new();
        for (pattern, class) in [
            (r"\p{L}", Class::Letter),
            (r"\p{N}", Class::Number),
            (r"\s", Class::Space),
        ] {
            let hir = regex_syntax::parse(pattern).expect("the class patterns parse");
            let HirKind::Class(HirClass::Unicode(set)) = hir.kind() else {
                panic!("{pattern} is not a Unicode class");
            };
            ranges.extend(
                set.ranges()
                    .iter()
                    .map(|r| (u32::from(r.start()), u32::from(r.end()), class)),
            );
        }
        ranges.sort_unstable_by_key(|r| r.0);
        let mut ascii = [Class::Other; 128];
        for (c, slot) in ascii.iter_mut().enumerate() {
            *slot = lookup(&ranges, c as u32);
        }
        ranges.retain(|r| r.1 >= 128);
        Classes { ascii, ranges }
    }

    #[inline]
    fn of(&self, c: char) -> Class {
        let c = u32::from(c);
        if c < 128 {
            self.ascii[c as usize]
        } else {
            lookup(&self.ranges, c)
        }
    }

    /// Class and byte length of the character at byte `i` of `text`.
    #[inline]
    fn at(&self, text: &str, i: usize) -> (Class, usize) {
        let b = text.as_bytes()[i];
        if b < 128 {
            (self.ascii[b as usize], 1)
        } else {
            let c = text[i..].chars().next().expect("i is a char boundary");
            (self.of(c), c.len_utf8())
        }
    }

    /// End of the run of `class` characters starting at byte `i`.
    #[inline]
    fn run_end(&self, text: &str, mut i: usize, class: Class) -> usize {
        while i < text.len() {
            let (c, n) = self.at(text, i);
            if c != class {
                break;
            }
            i += n;
        }
        i
    }
}

fn lookup(ranges: &[(u32, u32, Class)], c: u32) -> Class {
    let k = ranges.partition_point(|r| r.1 < c);
    match ranges.get(k) {
        Some(&(first, _, class)) if first <= c => class,
        _ => Class::Other,
    }
}

/// Calls `piece(start, end)` for each GPT-2 piece of `text`, in order; the
/// pieces cover `text` exactly.
pub(crate) fn split(text: &str, mut piece: impl FnMut(usize, usize)) {
    let classes = Classes::get();
    let mut i = 0;
    while i < text.len() {
        let end = piece_end(classes, text, i);
        piece(i, end);
        i = end;
    }
}

/// End of the piece that starts at byte `i`: the first alternative of the
/// regex that matches there, taken as far as it goes.
fn piece_end(classes: &Classes, text: &str, i: usize) -> usize {
    let bytes = text.as_bytes();
    if bytes[i] == b'\'' {
        // 's 't 'm 'd 're 've 'll (lowercase only).
        let rest = &bytes[i + 1..];
        let n = match rest {
            [b's' | b't' | b'm' | b'd', ..] => 1,
            [b'r' | b'v', b'e', ..] | [b'l', b'l', ..] => 2,
            _ => 0,
        };
        if n > 0 {
            return i + 1 + n;
        }
    }
    if bytes[i] == b' ' && i + 1 < text.len() {
        // ` ?X+`: a space joins the letter, number or other run after it.
        let (next, _) = classes.at(text, i + 1);
        if next != Class::Space {
            return classes.run_end(text, i + 1, next);
        }
    }
    let (class, _) = classes.at(text, i);
    let end = classes.run_end(text, i, class);
    if class == Class::Space && end < text.len() {
        // `\s+(?!\S)`: before a non-space the run stops one character short
        // (that character starts the next piece), unless it is one character.
        let last = text[..end]
            .char_indices()
            .next_back()
            .map(|(k, _)| k)
            .expect("the run is not empty");
        if last > i {
            return last;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        split(text, |a, b| out.push(&text[a..b]));
        out
    }

    #[test]
    fn words_numbers_punctuation_and_contractions() {
        assert_eq!(
            pieces("I'LL pay 12345 USD, don't!"),
            [
                "I", "'", "LL", " pay", " 12345", " USD", ",", " don", "'t", "!"
            ]
        );
        assert_eq!(pieces("''s 're"), ["''", "s", " '", "re"]);
    }

    #[test]
    fn whitespace_leaves_its_last_char_to_the_next_word() {
        assert_eq!(pieces("a  b"), ["a", " ", " b"]);
        assert_eq!(pieces("a\n\n b"), ["a", "\n\n", " b"]);
        assert_eq!(pieces("a\nb"), ["a", "\n", "b"]);
        assert_eq!(pieces("x   "), ["x", "   "]);
        assert_eq!(pieces("\u{3000}\u{3000}x"), ["\u{3000}", "\u{3000}", "x"]);
    }

    #[test]
    fn classes_come_from_unicode_tables() {
        let c = Classes::get();
        assert_eq!(c.of('é'), Class::Letter);
        assert_eq!(c.of('日'), Class::Letter);
        assert_eq!(c.of('½'), Class::Number);
        assert_eq!(c.of('\u{00A0}'), Class::Space);
        assert_eq!(c.of('🙂'), Class::Other);
        assert_eq!(c.of('_'), Class::Other);
    }
}
