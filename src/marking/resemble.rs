//! The generous reader: a marking that *resembles* a level counts as that level.
//!
//! Evidence is asymmetric. A reading that would lower a message below the default needs the
//! exact form (the strict matcher in `vocab`); a reading that keeps or raises it needs only a
//! resemblance, so that `S E C R E T`, `$3CR3T`, `OFFICIAL-SENSTIVE`, `OFFICIAL-SENS`,
//! `OFFICIAL|SENSITIVE` or `TOPSECRET` cannot slip a message past the ceiling. This reader
//! works on words (tokens), so every run of punctuation, decoration or emoji between them is
//! a separator, and on folded text (see `normalize`).

use super::normalize::canonical;
use super::vocab::{LevelId, Vocabulary};

/// A word of the text: letters, digits, `$` and `@` (`$ECRET`, `@`-for-A).
#[derive(Clone, Debug)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    /// Upper case, look-alike digits and signs read as letters (`0`→O, `1`/`L`→I, `3`→E, …).
    pub canon: String,
    upper: usize,
    letters: usize,
    /// Only spaces stand between this word and the one before.
    spaced: bool,
}

/// How close a reading has to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Typos, abbreviations, look-alike digits, letter-spaced and run-together words.
    Resemble,
    /// Whole words, case-insensitive: what a plain matcher would find.
    Exact,
}

/// The words of `text`. Bounded: at most `max` tokens (a marking is near the place read).
pub fn tokens(text: &str, mode: Mode, max: usize) -> Vec<Token> {
    let tokens = words(text, mode, max);
    match mode {
        Mode::Resemble => join_spaced_letters(text, tokens),
        Mode::Exact => tokens,
    }
}

/// The words of `text`, each as it stands.
fn words(text: &str, mode: Mode, max: usize) -> Vec<Token> {
    let resemble = mode == Mode::Resemble;
    let mut tokens: Vec<Token> = Vec::new();
    let mut current: Option<Token> = None;
    // Only spaces since the last word (everyday phrases are written with spaces only).
    let mut spaces_only = true;
    let mut gap = 0usize;
    let mut hyphens = 0usize;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        // A sign inside a word read as the letter it imitates: `S€CR€T`, `CONF!DENT!AL`.
        let inside = resemble
            && current.is_some()
            && chars
                .peek()
                .is_some_and(|&(_, next)| next.is_alphanumeric());
        let inner_letter = inside.then(|| inner_sign_letter(c)).flatten();
        if is_word_char(c) || inner_letter.is_some() {
            let token = current.get_or_insert_with(|| Token {
                start: at,
                end: at,
                canon: String::with_capacity(16),
                upper: 0,
                letters: 0,
                spaced: spaces_only,
            });
            token.end = at + c.len_utf8();
            if let Some(letter) = inner_letter {
                token.canon.push(letter);
                continue;
            }
            if c.is_ascii() {
                token.letters += usize::from(c.is_ascii_alphabetic());
                token.upper += usize::from(c.is_ascii_uppercase());
                let u = c.to_ascii_uppercase();
                token.canon.push(if resemble { canonical(u) } else { u });
                continue;
            }
            if c.is_alphabetic() {
                token.letters += 1;
                token.upper += usize::from(c.is_uppercase());
            }
            for u in c.to_uppercase() {
                token.canon.push(if resemble { canonical(u) } else { u });
            }
        } else {
            if let Some(token) = current.take() {
                tokens.push(token);
                if tokens.len() >= max {
                    return tokens;
                }
                spaces_only = true;
                gap = 0;
                hyphens = 0;
            }
            if c == '&' {
                // `PRIVATE & CONFIDENTIAL` is `PRIVATE AND CONFIDENTIAL`.
                tokens.push(Token {
                    start: at,
                    end: at + 1,
                    canon: "AND".into(),
                    upper: 0,
                    letters: 0,
                    spaced: spaces_only,
                });
                if tokens.len() >= max {
                    return tokens;
                }
                continue;
            }
            // Only spaces, or one hyphen and nothing else (`PROTECTED-CHARACTERISTIC`).
            let hyphen_alone = c == '-' && gap == 0;
            spaces_only &= c == ' ' || c == '\t' || hyphen_alone;
            hyphens += usize::from(c == '-');
            gap += 1;
            if hyphens > 0 && gap > hyphens {
                spaces_only = false;
            }
        }
    }
    tokens.extend(current);
    tokens
}

/// Signs that stand for a letter when written inside a word.
fn inner_sign_letter(c: char) -> Option<char> {
    Some(match c {
        // The euro sign; folding reads it as its skeleton, a barred C (U+A792).
        '€' | '\u{A792}' | '\u{A793}' => 'E',
        '©' => 'C',
        '®' => 'R',
        '!' => 'I',
        _ => return None,
    })
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '$' || c == '@'
}

/// How many words `text` has, counting no further than `max`; a run of one-letter words
/// (`S E C R E T`) counts as one.
pub fn count_words(text: &str, max: usize) -> usize {
    let mut count = 0;
    let mut length = 0;
    let mut previous_single = false;
    let end_word = |length: usize, count: &mut usize, previous_single: &mut bool| {
        let single = length == 1;
        if !(single && *previous_single) {
            *count += 1;
        }
        *previous_single = single;
    };
    for c in text.chars() {
        if is_word_char(c) {
            length += 1;
        } else if length > 0 {
            end_word(length, &mut count, &mut previous_single);
            length = 0;
            if count >= max {
                return count;
            }
        }
    }
    if length > 0 {
        end_word(length, &mut count, &mut previous_single);
    }
    count
}

/// `S E C R E T`, `S.E.C.R.E.T`: three or more one-letter words, a short gap apart on one
/// line, read as one word.
fn join_spaced_letters(text: &str, tokens: Vec<Token>) -> Vec<Token> {
    let single = |t: &Token| t.canon.chars().nth(1).is_none();
    if !tokens.iter().any(single) {
        return tokens;
    }
    let mut joined: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut run = 0;
    for token in tokens {
        let one = single(&token);
        let close = joined.last().is_some_and(|last: &Token| {
            let gap = &text[last.end..token.start];
            gap.chars().count() <= 5 && !gap.contains('\n')
        });
        if one && run > 0 && close {
            let last = joined.last_mut().expect("run > 0");
            last.end = token.end;
            last.canon.push_str(&token.canon);
            last.upper += token.upper;
            last.letters += token.letters;
            run += 1;
            continue;
        }
        run = usize::from(one);
        joined.push(token);
    }
    // Two letters joined (`A B`) are two words again: only three or more are spelled out.
    let mut out = Vec::with_capacity(joined.len());
    for t in joined {
        let n = t.canon.chars().count();
        let spaced = t.end - t.start > t.canon.len() && t.letters == n;
        if spaced && n == 2 {
            out.extend(split_pair(text, t));
        } else {
            out.push(t);
        }
    }
    out
}

fn split_pair(text: &str, pair: Token) -> Vec<Token> {
    words(&text[pair.start..pair.end], Mode::Resemble, 2)
        .into_iter()
        .map(|mut t| {
            t.start += pair.start;
            t.end += pair.start;
            t
        })
        .collect()
}

/// What the words at one position read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// A level: the spelling ends before token `end`.
    Level {
        level: LevelId,
        end: usize,
        /// The words stand in capitals (`SECRET`, `SeCrEt`), not `Secret`.
        capitals: bool,
    },
    /// Everyday wording (`SECRET SANTA`, `PROTECTED DISCLOSURE`) that ends before `end`.
    Everyday { end: usize },
}

/// The highest marking standing in capitals anywhere in `tokens` (everyday wording skipped).
pub fn highest_in_capitals(vocab: &Vocabulary, tokens: &[Token], mode: Mode) -> Option<LevelId> {
    highest_in(vocab, tokens, mode, |_, _, capitals| capitals)
}

/// The highest marking anywhere in `tokens` that `counts` takes, given its level, how many
/// words it spans and whether it stands in capitals (everyday wording skipped).
pub fn highest_in(
    vocab: &Vocabulary,
    tokens: &[Token],
    mode: Mode,
    counts: impl Fn(LevelId, usize, bool) -> bool,
) -> Option<LevelId> {
    let mut highest: Option<LevelId> = None;
    let mut at = 0;
    while at < tokens.len() {
        match vocab.reading_at(tokens, at, mode) {
            Some(Reading::Everyday { end }) => at = end,
            Some(Reading::Level {
                level,
                end,
                capitals,
            }) => {
                if counts(level, end - at, capitals)
                    && highest.is_none_or(|h| vocab.rank(level) > vocab.rank(h))
                {
                    highest = Some(level);
                }
                at = end;
            }
            None => at += 1,
        }
    }
    highest
}

/// How one word of a spelling compares with a word of the text.
fn word_resembles(text: &str, word: &str, abbreviation: bool, mode: Mode) -> bool {
    if text == word {
        return true;
    }
    if mode == Mode::Exact {
        return false;
    }
    let (t, w) = (text.len(), word.len());
    // A plural is another word: SECRETS is not SECRET, OFFICIALS not OFFICIAL.
    let plural = t == w + 1 && text.ends_with('S') && text.starts_with(word);
    if w >= 5 && !plural && within_one_edit(text, word) {
        return true;
    }
    abbreviation && t >= 3 && t < w && word.starts_with(text)
}

/// Optimal string alignment distance at most 1: one letter added, dropped, changed, or two
/// neighbours swapped.
fn within_one_edit(a: &str, b: &str) -> bool {
    if a.len().abs_diff(b.len()) > 4 {
        // Four bytes is the longest character: further apart is more than one edit.
        return false;
    }
    if a.is_ascii() && b.is_ascii() {
        one_edit(a.as_bytes(), b.as_bytes())
    } else {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        one_edit(&a, &b)
    }
}

fn one_edit<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short
        .iter()
        .zip(long.iter())
        .take_while(|(x, y)| x == y)
        .count();
    if short.len() == long.len() {
        if prefix == short.len() {
            return true;
        }
        // One change, or a swap of neighbours.
        let changed = short[prefix + 1..] == long[prefix + 1..];
        let swapped = prefix + 1 < short.len()
            && short[prefix] == long[prefix + 1]
            && short[prefix + 1] == long[prefix]
            && short[prefix + 2..] == long[prefix + 2..];
        changed || swapped
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

impl Vocabulary {
    /// The reading at token `at`: the longest spelling (then the highest level) that the
    /// words resemble, or everyday wording at least as long. Levels below the default are
    /// never read here: lowering needs the exact form.
    pub fn reading_at(&self, tokens: &[Token], at: usize, mode: Mode) -> Option<Reading> {
        let mut best: Option<(LevelId, usize)> = None;
        if at >= tokens.len() {
            return None;
        }
        let token = &tokens[at].canon;
        // Spellings are sorted by their first word: the comparison of the token with a first
        // word is made once for all the spellings that share it.
        let mut first_seen: Option<(&str, bool)> = None;
        let mut chars = token.chars();
        let c0 = chars.next()?;
        for spelling in self.candidates(mode == Mode::Resemble, c0, chars.next()) {
            if self.is_lowering(spelling.level) {
                continue;
            }
            let words = match mode {
                Mode::Resemble => &spelling.canon,
                Mode::Exact => &spelling.words,
            };
            if !plausible(token, words, mode) {
                continue;
            }
            let several = words.len() > 1;
            let first = words[0].as_str();
            let resembles = match first_seen {
                Some((word, resembles)) if word == first => resembles,
                _ => {
                    // With abbreviation allowed: refined per spelling in `spelling_at`.
                    let resembles = word_resembles(token, first, true, mode);
                    first_seen = Some((first, resembles));
                    resembles
                }
            };
            let run_together = mode == Mode::Resemble && several && token.len() >= first.len() + 3;
            let split = mode == Mode::Resemble
                && token.len() < first.len()
                && token.chars().next() == first.chars().next();
            if !(resembles || run_together || split) {
                continue;
            }
            let Some(end) = spelling_at(words, tokens, at, mode) else {
                continue;
            };
            let better = best.is_none_or(|(level, best_end)| {
                end > best_end || (end == best_end && self.rank(spelling.level) > self.rank(level))
            });
            if better {
                best = Some((spelling.level, end));
            }
        }
        let (phrases, canon) = self.everyday();
        let phrases = match mode {
            Mode::Resemble => canon,
            Mode::Exact => phrases,
        };
        // Everyday wording is compared word for word, with only spaces between: a typo in it,
        // or `PROTECTED - Disclosure`, is no longer everyday.
        let everyday = phrases
            .iter()
            .filter(|phrase| phrase[0].len() == token.len() && phrase[0] == *token)
            .filter_map(|phrase| spelling_at(phrase, tokens, at, Mode::Exact))
            .filter(|&end| tokens[at + 1..end].iter().all(|t| t.spaced))
            .max();
        match (best, everyday) {
            (Some((_, end)), Some(e)) if e >= end => Some(Reading::Everyday { end: e }),
            (None, Some(e)) => Some(Reading::Everyday { end: e }),
            (Some((level, end)), _) => Some(Reading::Level {
                level: self.qualified(level, tokens, at, end),
                end,
                capitals: capitals(&tokens[at..end]),
            }),
            (None, None) => None,
        }
    }

    /// Whether the first word of `text` can begin a spelling that keeps or raises the level
    /// (as it is, one edit away, abbreviated, run together with the next words, or a letter
    /// of a spelled-out word) or a line label. A cheap test before reading the whole line.
    pub fn could_begin(&self, text: &str, mode: Mode) -> bool {
        let Some(first) = words(text, mode, 1).pop() else {
            return false;
        };
        if mode == Mode::Resemble && first.canon.chars().nth(1).is_none() {
            return true;
        }
        let (labels, canon) = self.line_label_words();
        let labels = match mode {
            Mode::Resemble => canon,
            Mode::Exact => labels,
        };
        if labels
            .iter()
            .any(|label| word_resembles(&first.canon, &label[0], false, mode))
        {
            return true;
        }
        let mut chars = first.canon.chars();
        let Some(c0) = chars.next() else {
            return false;
        };
        self.candidates(mode == Mode::Resemble, c0, chars.next())
            .any(|spelling| {
                if self.is_lowering(spelling.level) {
                    return false;
                }
                let words = match mode {
                    Mode::Resemble => &spelling.canon,
                    Mode::Exact => &spelling.words,
                };
                let several = words.len() > 1;
                let run_together =
                    mode == Mode::Resemble && several && first.canon.len() >= words[0].len() + 3;
                run_together || word_resembles(&first.canon, &words[0], several, mode)
            })
    }

    /// CONFIDENTIAL next to a legal or commercial qualifier (`PRIVATE & CONFIDENTIAL`,
    /// `CONFIDENTIAL - LEGALLY PRIVILEGED`) is that confidentiality, read at the ceiling.
    fn qualified(&self, level: LevelId, tokens: &[Token], at: usize, end: usize) -> LevelId {
        let (confidential, qualifiers) = self.confidential();
        if Some(level) != confidential || qualifiers.is_empty() {
            return level;
        }
        let near = tokens[at.saturating_sub(4)..at]
            .iter()
            .chain(&tokens[end..(end + 4).min(tokens.len())]);
        let mut near = near;
        if near.any(|t| qualifiers.iter().any(|q| canon_eq(q, &t.canon))) {
            self.ceiling
        } else {
            level
        }
    }

    /// True when every token is a descriptor (`PERSONAL`, `LOCSEN`).
    pub fn all_descriptors(&self, tokens: &[Token]) -> bool {
        tokens.iter().all(|t| {
            self.descriptor_words()
                .iter()
                .any(|d| canon_eq(d, &t.canon))
        })
    }

    /// The token after a line label (`Classification:`, `Protective marking -`) at the start
    /// of `tokens`.
    pub fn after_label_tokens(&self, tokens: &[Token], mode: Mode) -> Option<usize> {
        let (labels, canon) = self.line_label_words();
        let labels = match mode {
            Mode::Resemble => canon,
            Mode::Exact => labels,
        };
        // A typo in the label too (`Clasification:`), when reading generously.
        labels
            .iter()
            .find_map(|label| spelling_at(label, tokens, 0, mode))
    }
}

fn canon_eq(word: &str, canon: &str) -> bool {
    word.chars().map(canonical).eq(canon.chars()) || word == canon
}

/// A cheap test before [`spelling_at`]: can a word of this length begin the spelling (the
/// first word, one edit away, abbreviated, or all the words run together)?
fn plausible(token: &str, words: &[String], mode: Mode) -> bool {
    let (t, w) = (token.len(), words[0].len());
    match mode {
        Mode::Exact => t == w,
        Mode::Resemble => {
            t + 4 >= w && t <= w + 4
                || (words.len() > 1 && t >= 3 && t < w)
                || (words.len() > 1 && t >= w + 3)
        }
    }
}

/// Where the spelling's words (`canon`: canonical in [`Mode::Resemble`], upper case in
/// [`Mode::Exact`]) end when they stand at token `at`.
fn spelling_at(canon: &[String], tokens: &[Token], at: usize, mode: Mode) -> Option<usize> {
    let several = canon.len() > 1;
    let mut next = at;
    let mut word_by_word = true;
    for (k, word) in canon.iter().enumerate() {
        let Some(token) = tokens.get(next) else {
            word_by_word = false;
            break;
        };
        // After the first word a plural reads as the word: `TOP SECRETS` (but `SECRETS`
        // alone is a word of its own).
        let plural = k > 0
            && mode == Mode::Resemble
            && token.canon.len() == word.len() + 1
            && token.canon.ends_with('S')
            && token.canon.starts_with(word.as_str());
        if plural || word_resembles(&token.canon, word, several, mode) {
            next += 1;
            continue;
        }
        // A word split by a space or a sign: `SEC RET`, `SEC-RET`, `SE©RET`.
        match split_word(word, tokens, next, mode) {
            Some(end) => next = end,
            None => {
                word_by_word = false;
                break;
            }
        }
    }
    if word_by_word {
        return Some(next);
    }
    if mode == Mode::Resemble && several {
        // Run together: TOPSECRET, OFFICIALSENSITIVE, OFFICIALSENS.
        let token = tokens.get(at)?;
        let length: usize = canon.iter().map(String::len).sum();
        // Long enough to hold the first word and the start of the next, at most one longer
        // than all the words: only then is building the joined words worth it.
        if token.canon.len() >= canon[0].len() + 3 && token.canon.len() <= length + 1 {
            let joined: String = canon.concat();
            if joined.starts_with(&*token.canon)
                || word_resembles(&token.canon, &joined, false, mode)
            {
                return Some(at + 1);
            }
        }
    }
    None
}

/// Where `word` ends when two or three words of the text at `at`, a short gap apart, make
/// it together (`SEC RET`, `SEC-RET`); only for words of five letters or more.
fn split_word(word: &str, tokens: &[Token], at: usize, mode: Mode) -> Option<usize> {
    if mode == Mode::Exact || word.len() < 5 {
        return None;
    }
    let first = tokens.get(at)?;
    // Cheap refusals before building anything: the pieces start the word and fit in it.
    let second = tokens.get(at + 1)?;
    if first.canon.len() >= word.len()
        || second.start - first.end > 3
        || first.canon.len() + second.canon.len() > word.len() + 1
        || first.canon.chars().next() != word.chars().next()
    {
        return None;
    }
    let mut merged = first.canon.clone();
    for end in at + 1..(at + 3).min(tokens.len()) {
        let (previous, token) = (&tokens[end - 1], &tokens[end]);
        if token.start - previous.end > 3 || merged.len() + token.canon.len() > word.len() + 1 {
            return None;
        }
        merged.push_str(&token.canon);
        // Exactly the word: a typo on top of a split (`SEC RE:`) is too far.
        if merged == word {
            return Some(end + 1);
        }
    }
    None
}

/// Most letters upper case, at least two of them: `SECRET`, `S3CR3T`, `SeCrEt`; not `Secret`.
fn capitals(tokens: &[Token]) -> bool {
    let upper: usize = tokens.iter().map(|t| t.upper).sum();
    let letters: usize = tokens.iter().map(|t| t.letters).sum();
    upper >= 2 && 2 * upper >= letters
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn read(text: &str, mode: Mode) -> Option<(String, bool)> {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        let tokens = tokens(text, mode, 64);
        match v.reading_at(&tokens, 0, mode)? {
            Reading::Level {
                level, capitals, ..
            } => Some((v.level(level).name.clone(), capitals)),
            Reading::Everyday { .. } => Some(("everyday".into(), false)),
        }
    }

    #[test]
    fn resemblance_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("SECRET", Some("SECRET")),
            ("SECERT", Some("SECRET")),
            ("SECRT", Some("SECRET")),
            ("S3CR3T", Some("SECRET")),
            ("$ECRET", Some("SECRET")),
            ("S E C R E T", Some("SECRET")),
            ("S.E.C.R.E.T", Some("SECRET")),
            ("*SECRET*", Some("SECRET")),
            ("TOP SECRET", Some("TOP SECRET")),
            ("TOPSECRET", Some("TOP SECRET")),
            ("TOP-SECRT", Some("TOP SECRET")),
            ("T0P SECRET", Some("TOP SECRET")),
            ("OFFICIAL-SENSTIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL-SENS", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL SEN", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL|SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL, SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL…SENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIAL \"SENSITIVE\"", Some("OFFICIAL-SENSITIVE")),
            ("OFFICIALSENSITIVE", Some("OFFICIAL-SENSITIVE")),
            ("OFF-SENS", Some("OFFICIAL-SENSITIVE")),
            ("0FF1C1AL SENS1T1VE", Some("OFFICIAL-SENSITIVE")),
            ("CONFIDENTAL", Some("CONFIDENTIAL")),
            ("PROTECTD", Some("PROTECTED")),
            ("SECRET SANTA", Some("everyday")),
            ("PROTECTED DISCLOSURE", Some("everyday")),
            (
                "CONFIDENTIAL AND LEGALLY PRIVILEGED",
                Some("OFFICIAL-SENSITIVE"),
            ),
            ("Privileged & Confidential", Some("OFFICIAL-SENSITIVE")),
            // Lowering readings are never generous.
            ("OFFICIAL", None),
            ("PROTECT", None),
            ("UNCLASSIFIED", None),
            // Other words.
            ("SECRETS", None),
            ("SECRETARY", None),
            ("OFFICIALS", None),
            ("SECTOR", None),
            ("PROTECTION", None),
            ("CONFIDENCE", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = read(text, Mode::Resemble).map(|(name, _)| name);
            assert_eq!(got.as_deref(), *want, "{text:?}");
        }
    }

    #[test]
    fn exact_mode_is_plain_words() {
        assert_eq!(read("secret", Mode::Exact), Some(("SECRET".into(), false)));
        assert_eq!(read("SECERT", Mode::Exact), None);
        assert_eq!(read("S3CR3T", Mode::Exact), None);
        assert_eq!(read("TOPSECRET", Mode::Exact), None);
    }

    #[test]
    fn capitals_table() {
        let cases = [
            ("SECRET", true),
            ("SeCrEt", true),
            ("S3CR3T", true),
            ("Secret", false),
            ("secret", false),
            ("TOP SECRET", true),
            ("Top Secret", false),
        ];
        for (text, want) in cases {
            assert_eq!(read(text, Mode::Resemble).unwrap().1, want, "{text:?}");
        }
    }

    #[test]
    fn one_edit() {
        assert!(within_one_edit("SECRET", "SECRET"));
        assert!(within_one_edit("SECERT", "SECRET"));
        assert!(within_one_edit("SECRT", "SECRET"));
        assert!(within_one_edit("SEECRET", "SECRET"));
        assert!(within_one_edit("SXCRET", "SECRET"));
        assert!(!within_one_edit("SXCRXT", "SECRET"));
        assert!(!within_one_edit("SECRETARY", "SECRET"));
    }

    #[test]
    fn tokens_are_bounded() {
        let text = "word ".repeat(10_000);
        assert_eq!(tokens(&text, Mode::Resemble, 50).len(), 50);
    }
}
