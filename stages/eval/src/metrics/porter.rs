//! The Porter stemmer exactly as NLTK's `PorterStemmer()` in its default
//! `NLTK_EXTENSIONS` mode (the one rouge-score uses), rule list by rule list.
//!
//! Works on lowercase ASCII words, which is all rouge-score's tokenizer emits;
//! other input is returned lowercased and otherwise untouched.

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// NLTK `_is_consonant`: `y` is a consonant unless it follows a consonant.
fn is_consonant(w: &[u8], mut i: usize) -> bool {
    if is_vowel(w[i]) {
        return false;
    }
    if w[i] == b'y' {
        let mut negate = false;
        while i > 0 && w[i] == b'y' {
            negate = !negate;
            i -= 1;
        }
        return is_vowel(w[i]) == negate;
    }
    true
}

/// Number of `vc` sequences in the consonant/vowel pattern.
fn measure(stem: &[u8]) -> usize {
    let mut prev_cons: Option<bool> = None;
    let mut flags_prev = false;
    let mut m = 0;
    for (i, &ch) in stem.iter().enumerate() {
        let cons = if is_vowel(ch) {
            false
        } else if ch == b'y' {
            if i == 0 { true } else { !flags_prev }
        } else {
            true
        };
        if prev_cons == Some(false) && cons {
            m += 1;
        }
        prev_cons = Some(cons);
        flags_prev = cons;
    }
    m
}

fn contains_vowel(stem: &[u8]) -> bool {
    (0..stem.len()).any(|i| !is_consonant(stem, i))
}

fn ends_double_consonant(w: &[u8]) -> bool {
    w.len() >= 2 && w[w.len() - 1] == w[w.len() - 2] && is_consonant(w, w.len() - 1)
}

fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

type Cond<'a> = &'a dyn Fn(&[u8]) -> bool;

/// NLTK `_apply_rule_list`: the first rule whose suffix matches decides,
/// whether or not its condition holds.
fn apply_rules(word: Vec<u8>, rules: &[(&[u8], &[u8], Option<Cond<'_>>)]) -> Vec<u8> {
    for (suffix, replacement, cond) in rules {
        if *suffix == b"*d" && ends_double_consonant(&word) {
            let stem = &word[..word.len() - 2];
            if cond.is_none_or(|c| c(stem)) {
                let mut s = stem.to_vec();
                s.extend_from_slice(replacement);
                return s;
            }
            return word;
        }
        if word.ends_with(suffix) {
            let stem = &word[..word.len() - suffix.len()];
            if cond.is_none_or(|c| c(stem)) {
                let mut s = stem.to_vec();
                s.extend_from_slice(replacement);
                return s;
            }
            return word;
        }
    }
    word
}

fn replace_suffix(w: &[u8], suffix: &[u8], rep: &[u8]) -> Vec<u8> {
    let mut s = w[..w.len() - suffix.len()].to_vec();
    s.extend_from_slice(rep);
    s
}

fn step1a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ies") && w.len() == 4 {
        return replace_suffix(&w, b"ies", b"ie");
    }
    apply_rules(
        w,
        &[
            (b"sses", b"ss", None),
            (b"ies", b"i", None),
            (b"ss", b"ss", None),
            (b"s", b"", None),
        ],
    )
}

fn step1b(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ied") {
        return if w.len() == 4 {
            replace_suffix(&w, b"ied", b"ie")
        } else {
            replace_suffix(&w, b"ied", b"i")
        };
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        if measure(stem) > 0 {
            let mut s = stem.to_vec();
            s.extend_from_slice(b"ee");
            return s;
        }
        return w;
    }
    let mut intermediate: Option<Vec<u8>> = None;
    for suffix in [&b"ed"[..], &b"ing"[..]] {
        if w.ends_with(suffix) {
            let stem = &w[..w.len() - suffix.len()];
            if contains_vowel(stem) {
                intermediate = Some(stem.to_vec());
                break;
            }
        }
    }
    let Some(stem) = intermediate else {
        return w;
    };
    let last = *stem.last().expect("a stem with a vowel is not empty");
    let last_rep = [last];
    let double_cond = |_: &[u8]| !matches!(last, b'l' | b's' | b'z');
    let e_cond = |s: &[u8]| measure(s) == 1 && ends_cvc(s);
    apply_rules(
        stem,
        &[
            (b"at", b"ate", None),
            (b"bl", b"ble", None),
            (b"iz", b"ize", None),
            (b"*d", &last_rep, Some(&double_cond)),
            (b"", b"e", Some(&e_cond)),
        ],
    )
}

fn step1c(w: Vec<u8>) -> Vec<u8> {
    let cond = |s: &[u8]| s.len() > 1 && is_consonant(s, s.len() - 1);
    apply_rules(w, &[(b"y", b"i", Some(&cond))])
}

fn positive(s: &[u8]) -> bool {
    measure(s) > 0
}

fn step2(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        return step2(replace_suffix(&w, b"alli", b"al"));
    }
    let word_for_logi = w.clone();
    let logi = move |_: &[u8]| positive(&word_for_logi[..word_for_logi.len() - 3]);
    let p: Cond<'_> = &positive;
    apply_rules(
        w,
        &[
            (b"ational", b"ate", Some(p)),
            (b"tional", b"tion", Some(p)),
            (b"enci", b"ence", Some(p)),
            (b"anci", b"ance", Some(p)),
            (b"izer", b"ize", Some(p)),
            (b"bli", b"ble", Some(p)),
            (b"alli", b"al", Some(p)),
            (b"entli", b"ent", Some(p)),
            (b"eli", b"e", Some(p)),
            (b"ousli", b"ous", Some(p)),
            (b"ization", b"ize", Some(p)),
            (b"ation", b"ate", Some(p)),
            (b"ator", b"ate", Some(p)),
            (b"alism", b"al", Some(p)),
            (b"iveness", b"ive", Some(p)),
            (b"fulness", b"ful", Some(p)),
            (b"ousness", b"ous", Some(p)),
            (b"aliti", b"al", Some(p)),
            (b"iviti", b"ive", Some(p)),
            (b"biliti", b"ble", Some(p)),
            (b"fulli", b"ful", Some(p)),
            (b"logi", b"log", Some(&logi)),
        ],
    )
}

fn step3(w: Vec<u8>) -> Vec<u8> {
    let p: Cond<'_> = &positive;
    apply_rules(
        w,
        &[
            (b"icate", b"ic", Some(p)),
            (b"ative", b"", Some(p)),
            (b"alize", b"al", Some(p)),
            (b"iciti", b"ic", Some(p)),
            (b"ical", b"ic", Some(p)),
            (b"ful", b"", Some(p)),
            (b"ness", b"", Some(p)),
        ],
    )
}

fn step4(w: Vec<u8>) -> Vec<u8> {
    let gt1 = |s: &[u8]| measure(s) > 1;
    let g: Cond<'_> = &gt1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's' | b't'));
    apply_rules(
        w,
        &[
            (b"al", b"", Some(g)),
            (b"ance", b"", Some(g)),
            (b"ence", b"", Some(g)),
            (b"er", b"", Some(g)),
            (b"ic", b"", Some(g)),
            (b"able", b"", Some(g)),
            (b"ible", b"", Some(g)),
            (b"ant", b"", Some(g)),
            (b"ement", b"", Some(g)),
            (b"ment", b"", Some(g)),
            (b"ent", b"", Some(g)),
            (b"ion", b"", Some(&ion)),
            (b"ou", b"", Some(g)),
            (b"ism", b"", Some(g)),
            (b"ate", b"", Some(g)),
            (b"iti", b"", Some(g)),
            (b"ous", b"", Some(g)),
            (b"ive", b"", Some(g)),
            (b"ize", b"", Some(g)),
        ],
    )
}

fn step5a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w
}

fn step5b(w: Vec<u8>) -> Vec<u8> {
    let whole = w.clone();
    let cond = move |_: &[u8]| measure(&whole[..whole.len() - 1]) > 1;
    apply_rules(w, &[(b"ll", b"l", Some(&cond))])
}

/// NLTK's irregular forms (`pool`), checked before any rule.
fn irregular(word: &str) -> Option<&'static str> {
    Some(match word {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

/// `PorterStemmer().stem(word)`.
pub fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some(s) = irregular(&lower) {
        return s.to_owned();
    }
    if word.chars().count() <= 2 || !lower.is_ascii() {
        return lower;
    }
    let mut w = lower.into_bytes();
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    w = step5b(w);
    String::from_utf8(w).expect("ASCII in, ASCII out")
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn classic_examples() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("generalization", "gener"),
            ("running", "run"),
            ("dying", "die"),
            ("skies", "sky"),
        ] {
            assert_eq!(stem(w), s, "stem({w})");
        }
    }
}
