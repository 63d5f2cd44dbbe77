//! Markings in the text of a message part: its first and last non-blank lines (the last
//! also before a signature delimiter or a disclaimer), and any line that is nothing but a
//! marking above the default.

use super::normalize::fold;
use super::resemble::{self, Mode, Reading};
use super::vocab::{LevelId, Vocabulary};
use super::{Found, max_reading};
use std::borrow::Cow;

/// Distinct lines of one text read one by one beyond its first and last (a bound: past it,
/// the raw scan's exact reading takes over).
pub const MAX_OTHER_LINES: usize = 100_000;

/// Which line of the part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    First,
    /// The last line, or the last before a signature or a disclaimer.
    Last,
    /// Any other line: only raises.
    Other,
}

/// One line of text. `hidden`: it holds text a reader does not see (HTML hidden by style,
/// comments): such a line may raise a message, never lower it.
#[derive(Clone, Debug)]
pub struct TextLine<'t> {
    pub text: Cow<'t, str>,
    pub hidden: bool,
}

/// The lines of plain text: every line end counts (`\n`, `\r`, U+2028, U+2029, NEL, form
/// feed, vertical tab).
pub fn plain_lines(text: &str) -> impl Iterator<Item = TextLine<'_>> + Clone {
    LineSplit { rest: Some(text) }.map(|line| TextLine {
        text: Cow::Borrowed(line),
        hidden: false,
    })
}

/// The pieces of `str::split` on the line ends of [`plain_lines`], found byte by byte: a
/// split on a set of characters decodes and compares every character against each, and the
/// text is walked twice (see [`markings`]).
#[derive(Clone)]
struct LineSplit<'t> {
    rest: Option<&'t str>,
}

impl<'t> Iterator for LineSplit<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        for (at, &b) in bytes.iter().enumerate() {
            // In UTF-8, 0xC2 and 0xE2 only lead a character: U+0085 is C2 85, U+2028 and
            // U+2029 are E2 80 A8 and E2 80 A9.
            let end = match b {
                b'\n' | b'\r' | 0x0B | 0x0C => 1,
                0xC2 if bytes.get(at + 1) == Some(&0x85) => 2,
                0xE2 if bytes.get(at + 1) == Some(&0x80)
                    && matches!(bytes.get(at + 2), Some(0xA8 | 0xA9)) =>
                {
                    3
                }
                _ => continue,
            };
            self.rest = Some(&rest[at + end..]);
            return Some(&rest[..at]);
        }
        self.rest = None;
        Some(rest)
    }
}

/// Format=flowed text (RFC 3676) as the reader sees it: a line ending in a space (a soft
/// break; not the signature delimiter `-- `) runs on into the next, its space removed when
/// `delsp=yes`.
pub fn unflowed(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let soft = line.ends_with(' ') && line != "-- ";
        if soft {
            out.push_str(if delsp { &line[..line.len() - 1] } else { line });
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Lines held elsewhere (an HTML part's), lent to [`markings`].
pub fn lent<'t>(lines: &'t [TextLine]) -> impl Iterator<Item = TextLine<'t>> + Clone {
    lines.iter().map(|line| TextLine {
        text: Cow::Borrowed(&line.text),
        hidden: line.hidden,
    })
}

/// Lines longer than this are prose, not a marking line (bounds the generous reading).
const MAX_MARKING_LINE: usize = 200;
/// A marking line has few words: the marking, descriptors, caveats.
const MAX_MARKING_TOKENS: usize = 16;

/// Lines that begin a disclaimer block: the line before is the message's real last line.
const DISCLAIMER_STARTS: &[&str] = &[
    "DISCLAIMER",
    "THIS EMAIL",
    "THIS E-MAIL",
    "THIS MESSAGE",
    "THIS COMMUNICATION",
    "THE INFORMATION IN THIS",
    "THE INFORMATION CONTAINED",
    "THE CONTENTS OF THIS",
    "CONFIDENTIALITY NOTICE",
    "CONFIDENTIALITY STATEMENT",
    "IMPORTANT NOTICE",
    "LEGAL NOTICE",
    "NOTICE:",
    "IF YOU ARE NOT THE INTENDED RECIPIENT",
    "IF YOU HAVE RECEIVED THIS",
    "PLEASE CONSIDER THE ENVIRONMENT",
    "ALL COMMUNICATIONS",
    "COMMUNICATIONS WITH",
    "SENT FROM MY",
];

/// The markings of one text: at most one finding per [`Line`] kind, the highest.
pub fn markings<'t, I>(lines: I, vocab: &Vocabulary) -> TextReading
where
    I: Iterator<Item = TextLine<'t>> + Clone,
{
    // First pass: where the first and last lines stand, kept as indices (not the lines: a
    // part of many short lines is read twice rather than held twice).
    // First and last are what the reader sees: hidden lines are never first or last.
    let seen = |line: &TextLine| !line.hidden && !is_blank(&line.text);
    let mut first = None;
    let mut last = None;
    // The last line before a signature or a disclaimer counts as a last line too.
    let mut last_before_end = None;
    let mut ended = false;
    // Where quoted or forwarded text begins: from there on, lines are another message's,
    // never this one's first or last (they may raise, never lower).
    let mut quoted_from = usize::MAX;
    for (index, line) in lines.clone().enumerate() {
        if quoted_from == usize::MAX && !line.hidden && starts_quote(&line.text) {
            quoted_from = index;
        }
        if !ended && !line.hidden && (ends_message(&line.text) || index == quoted_from) {
            ended = true;
            last_before_end = last;
        }
        if index < quoted_from && seen(&line) {
            first.get_or_insert(index);
            last = Some(index);
        }
    }
    let lasts = [last, last_before_end];

    let mut by_kind: [Option<Found>; 3] = [None, None, None];
    let mut read = super::SeenLines::default();
    let mut other_lines_left = MAX_OTHER_LINES;
    let mut over_budget = false;
    for (index, line) in lines.clone().enumerate() {
        let folded = fold(&line.text);
        let letters = match &folded {
            // Borrowed: ASCII, where a letter or digit is an ASCII one.
            Cow::Borrowed(ascii) => ascii.bytes().any(|b| b.is_ascii_alphanumeric()),
            Cow::Owned(folded) => folded.chars().any(char::is_alphanumeric),
        };
        if !letters {
            continue;
        }
        let kind = if line.hidden || index >= quoted_from {
            Line::Other
        } else if Some(index) == first {
            Line::First
        } else if lasts.contains(&Some(index)) {
            Line::Last
        } else {
            Line::Other
        };
        // Another line read before says the same: hostile input repeats its lines by the
        // million. (A bounded set of hashes; first and last lines are always read.)
        if kind == Line::Other {
            // Past the budget only the first and last lines are read; the caller counts it as
            // a bound hit (the raw scan then takes over).
            if other_lines_left == 0 {
                over_budget = true;
                continue;
            }
            if !read.first_time(&*line.text) {
                continue;
            }
            other_lines_left -= 1;
        }
        let mut strict = match kind {
            Line::First | Line::Last => line_marking(&line.text, vocab),
            Line::Other => None,
        };
        // A lowering line continued on the next (`OFFICIAL` / `SENSITIVE`, as format=flowed
        // text or two HTML paragraphs show it) is not the exact form: the continuation wins.
        let mut continued = None;
        if strict.is_some_and(|level| vocab.is_lowering(level))
            && let Some(next) = lines.clone().skip(index + 1).find(seen)
        {
            continued = continuation(&line.text, &next.text, vocab);
            if continued.is_some() {
                strict = None;
            }
        }
        let forwarded = forwarded_subject(&line.text).and_then(|subject| {
            let readings = super::subject::markings(subject, "", vocab);
            max_reading(vocab, readings.into_iter().map(|(found, _)| Some(found)))
                .filter(|found| !vocab.is_lowering(found.level))
        });
        // Under a right-to-left override the reader sees the line reversed.
        let visual = super::normalize::fold_visual(&line.text)
            .and_then(|visual| generous_line(&visual, vocab, Mode::Resemble))
            .map(|level| Found {
                level,
                obfuscated: true,
            });
        // The first line can also be the last: report it once, as the first.
        let slot = &mut by_kind[kind as usize];
        // Whether the reading was obfuscated is asked only of a reading that raises this
        // kind's finding: a thousand equal lines cost one exact reading, not a thousand.
        let current = slot.map(|found| vocab.rank(found.level));
        let generous = generous_line(&folded, vocab, Mode::Resemble).map(|level| {
            if current.is_some_and(|rank| rank >= vocab.rank(level)) {
                return Found {
                    level,
                    obfuscated: true,
                };
            }
            Found::checked(vocab, level, || {
                generous_line(&line.text, vocab, Mode::Exact)
            })
        });
        *slot = max_reading(
            vocab,
            [
                *slot,
                strict.map(Found::plain),
                generous,
                visual,
                continued,
                forwarded,
            ],
        );
    }
    TextReading {
        found: [Line::First, Line::Last, Line::Other]
            .into_iter()
            .zip(by_kind)
            .filter_map(|(kind, found)| Some((found?, kind)))
            .collect(),
        over_budget,
    }
}

/// What one text says: at most one finding per [`Line`] kind, the highest; and whether its
/// lines were more than [`MAX_OTHER_LINES`] (the rest not read one by one).
pub struct TextReading {
    pub found: Vec<(Found, Line)>,
    pub over_budget: bool,
}

/// The reading of `line` continued by `next`, when the spelling runs on into `next`.
fn continuation(line: &str, next: &str, vocab: &Vocabulary) -> Option<Found> {
    let joined = format!("{} {}", line.trim(), next.trim());
    let folded = fold(&joined);
    let tokens = resemble::tokens(&folded, Mode::Resemble, MAX_MARKING_TOKENS);
    let on_the_line = resemble::tokens(&fold(line), Mode::Resemble, MAX_MARKING_TOKENS).len();
    match vocab.reading_at(&tokens, 0, Mode::Resemble)? {
        Reading::Level { level, end, .. } if end > on_the_line => Some(Found {
            level,
            obfuscated: true,
        }),
        _ => None,
    }
}

/// Headers that introduce the Subject of a message forwarded inline, in the languages mail
/// clients write them (`Subject:`, `Betreff:`, `Objet :`, `主题：`).
const FORWARDED_SUBJECT: &[&str] = &[
    "SUBJECT",
    "BETREFF",
    "OBJET",
    "ASUNTO",
    "OGGETTO",
    "ONDERWERP",
    "ASSUNTO",
    "ÄMNE",
    "EMNE",
    "AIHE",
    "TEMAT",
    "主题",
    "主旨",
    "件名",
];

/// The Subject of a message forwarded inline in the text (`Subject: SECRET - plan`, quoted
/// or not): it carries that message's own marking.
fn forwarded_subject(line: &str) -> Option<&str> {
    let line = line.trim_start_matches(|c: char| c.is_whitespace() || c == '>' || c == '*');
    // The label is short: a colon must come early.
    let head = line.get(..line.len().min(16)).unwrap_or(line);
    if !head.contains(':') && !line.chars().take(8).any(|c| c == '\u{FF1A}') {
        return None;
    }
    FORWARDED_SUBJECT.iter().find_map(|label| {
        super::subject::strip_colon(super::subject::strip_prefix_ignore_case(line, label)?)
    })
}

/// No letters or digits: blank, or only decoration (`-----`, `*****`).
fn is_blank(line: &str) -> bool {
    // Folding never takes an ASCII letter or digit away (it removes only format and control
    // characters and marks, and composes a letter with its marks into a letter): a line with
    // one is not blank; ASCII without one folds to no letter at all.
    if line.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    if line.is_ascii() {
        return true;
    }
    !fold(line).chars().any(char::is_alphanumeric)
}

/// The first line of quoted or forwarded text: `> …`, `-----Original Message-----`,
/// `---------- Forwarded message ---------`, `Begin forwarded message:`, `On … wrote:`.
fn starts_quote(line: &str) -> bool {
    let trimmed = line.trim();
    if trimmed.starts_with('>') {
        return true;
    }
    // Cheap refusals first: most lines are none of these.
    let wrote = trimmed
        .get(..3)
        .is_some_and(|on| on.eq_ignore_ascii_case("on "))
        && trimmed
            .get(trimmed.len().saturating_sub(6)..)
            .is_some_and(|end| end.eq_ignore_ascii_case("wrote:"));
    if wrote {
        return true;
    }
    if trimmed.len() > 200 || !contains_essage(trimmed.as_bytes()) {
        return false;
    }
    let lower = trimmed.to_lowercase();
    lower.contains("original message") || lower.contains("forwarded message")
}

/// `essage` or `ESSAGE` in `line` (most lines have neither): a byte loop, cheaper on a short
/// line than setting up a substring search for each.
fn contains_essage(line: &[u8]) -> bool {
    memchr::memchr2_iter(b'e', b'E', line).any(|at| {
        line.get(at..at + 6)
            .is_some_and(|w| w == b"essage" || w == b"ESSAGE")
    })
}

/// A signature delimiter (`-- `), a rule (`_____`), or the first line of a disclaimer.
fn ends_message(line: &str) -> bool {
    let trimmed = line.trim();
    if trimmed == "--" || trimmed == "—" {
        return true;
    }
    let Some(first) = trimmed.bytes().next() else {
        return false;
    };
    if b"-_=*~".contains(&first) {
        return trimmed.len() >= 4 && trimmed.bytes().all(|b| b"-_=*~".contains(&b));
    }
    // Each start begins with a letter: most lines are refused on their first byte.
    if !b"ACDILNPST".contains(&first.to_ascii_uppercase()) {
        return false;
    }
    // Only the starts that begin with the line's first letter are compared.
    DISCLAIMER_STARTS.iter().any(|start| {
        start.as_bytes()[0] == first.to_ascii_uppercase()
            && trimmed
                .get(..start.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(start))
    })
}

/// Decoration that may frame a marking line: `*** OFFICIAL-SENSITIVE ***`, `== SECRET ==`,
/// a quoted line's `>`.
fn is_decoration(c: char) -> bool {
    c.is_whitespace() || "*#=_~>".contains(c)
}

/// The strict reading of a line (the only one that may lower): a marking with its
/// descriptors (`OFFICIAL PERSONAL`, `[OFFICIAL]`), or a labelled line whose value is exactly
/// that (`Classification: OFFICIAL`).
pub fn line_marking(line: &str, vocab: &Vocabulary) -> Option<LevelId> {
    // A quoted line is another message's: it may raise, never lower.
    let quoted = line.trim_start().starts_with('>');
    let line = line.trim_matches(is_decoration);
    // The marking itself: after a line label, or the whole line.
    let value = vocab
        .after_line_label(line)
        .map(|value| value.trim_matches(is_decoration));
    let level = match value {
        Some(value) => vocab.whole_marking(value),
        None => {
            let inner = line.trim_start_matches(['[', '(']).trim_start();
            vocab
                .best_match(inner, 0, |m, rest| vocab.exact_tail(m, rest))
                .map(|m| m.level)
        }
    }?;
    // Above the ceiling, only the generous reading (which asks for capitals) decides.
    if vocab.above_ceiling(level) {
        return None;
    }
    // A lowering marking stands in capitals (`OFFICIAL`), not in prose (`official.`), and
    // is not quoted.
    let marking = value.unwrap_or(line);
    if vocab.is_lowering(level) && (quoted || marking.chars().any(char::is_lowercase)) {
        return None;
    }
    Some(level)
}

/// The generous reading of a line (never lowering):
/// - a labelled line, in any case and whatever follows: `Classification: SECRET//UK EYES`,
///   `Security Marking - Secret`, `Classification level: SECRET` (a typo in the label too);
/// - a line in capitals with at most a few words: a marking anywhere in it, as in the
///   Subject (`UK EYES ONLY - SECRET`);
/// - a line that starts with a marking (in capitals above the ceiling) and holds nothing but
///   descriptors after it, or a delimiter right after it: `SECRET - do not forward`,
///   `TOP SECRET: Operation Nightjar briefing …`.
pub(super) fn generous_line(line: &str, vocab: &Vocabulary, mode: Mode) -> Option<LevelId> {
    let line = line.trim();
    // Only the start of a long line is read: the marking leads a marking line.
    let mut cut = line.len().min(MAX_MARKING_LINE);
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &line[..cut];
    let short = line.len() <= MAX_MARKING_LINE
        && resemble::count_words(line, MAX_MARKING_TOKENS + 1) <= MAX_MARKING_TOKENS;
    let in_capitals = short && {
        let upper = line.chars().filter(|c| c.is_uppercase()).count();
        let lower = line.chars().filter(|c| c.is_lowercase()).count();
        upper >= 2 && (lower == 0 || upper >= 4 * lower)
    };
    // A cheap refusal first: prose does not begin with a word that can begin a spelling.
    if !in_capitals && !vocab.could_begin(head, mode) {
        return None;
    }
    let tokens = resemble::tokens(head, mode, MAX_MARKING_TOKENS + 1);
    if let Some(at) = vocab.after_label_tokens(&tokens, mode) {
        // The value follows the label, perhaps after a word or two (`Classification level:`).
        let value = (at..tokens.len().min(at + 3)).find_map(|at| {
            match vocab.reading_at(&tokens, at, mode)? {
                Reading::Level { level, .. } => Some(level),
                Reading::Everyday { .. } => None,
            }
        });
        if value.is_some() {
            return value;
        }
    }
    if in_capitals {
        // The whole line was read, its start included.
        return resemble::highest_in_capitals(vocab, &tokens, mode);
    }
    let Reading::Level {
        level,
        end,
        capitals,
    } = vocab.reading_at(&tokens, 0, mode)?
    else {
        return None;
    };
    if vocab.above_ceiling(level) && !capitals {
        return None;
    }
    if short && vocab.all_descriptors(&tokens[end..]) {
        return Some(level);
    }
    let after = head[tokens[end - 1].end..].trim_start();
    let delimited = after
        .chars()
        .next()
        .is_some_and(|c| ":/|=".contains(c) || c == '-' || super::vocab::is_dash(c));
    delimited.then_some(level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn names(text: &str) -> Vec<(String, Line)> {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        markings(plain_lines(text), &v)
            .found
            .into_iter()
            .map(|(found, line)| (v.level(found.level).name.clone(), line))
            .collect()
    }

    #[test]
    fn body_table() {
        let os = |line| vec![("OFFICIAL-SENSITIVE".to_string(), line)];
        let official = |line| vec![("OFFICIAL".to_string(), line)];
        let secret = |line| vec![("SECRET".to_string(), line)];
        let cases: Vec<(&str, Vec<(String, Line)>)> = vec![
            ("OFFICIAL-SENSITIVE\n\nDear Sir,\nRegards", os(Line::First)),
            (
                "\n\n  OFFICIAL - SENSITIVE [PERSONAL]  \nDear Sir",
                os(Line::First),
            ),
            (
                "Dear Sir,\nthe file.\n\nJ Smith\nOFFICIAL-SENSITIVE PERSONAL\n\n",
                os(Line::Last),
            ),
            ("Dear Sir,\nRegards\n*** RESTRICTED ***", os(Line::Last)),
            ("Classification: SECRET\nbody\nend", secret(Line::First)),
            ("Hello\nProtective Marking: OFFICIAL", official(Line::Last)),
            ("Hello\nThis is OFFICIAL-SENSITIVE material\nBye", vec![]),
            ("Secret Santa is on Friday\nBring a gift", vec![]),
            ("SECRET SANTA\nBring a gift", vec![]),
            ("The secret is out", vec![]),
            ("Confidential\n\nDear Sir,\nRegards", vec![]),
            (
                "CONFIDENTIAL\n\nDear Sir,\nRegards",
                vec![("CONFIDENTIAL".into(), Line::First)],
            ),
            (
                "OFFICIAL\nbody\nSECRET",
                vec![
                    ("OFFICIAL".into(), Line::First),
                    ("SECRET".into(), Line::Last),
                ],
            ),
            // Lowering needs the exact form.
            ("OFFICIAL-SENSTIVE\nbody", os(Line::First)),
            ("OFFICIAL SENS\nbody", os(Line::First)),
            ("Classification: OFFICIAL SENSTIVE\nbody", os(Line::First)),
            ("Classification: OFFICIAL - internal\nbody", vec![]),
            ("OFFICIAL RECEIVER - Smith Ltd\nbody", vec![]),
            ("OFF\u{200B}ICIAL\nbody", vec![]),
            // Hidden and obfuscated markings above the default.
            ("S\u{200B}ECRET\nbody", secret(Line::First)),
            ("body\nＳＥＣＲＥＴ", secret(Line::Last)),
            ("body\n---- SECRET ----\nend", secret(Line::Other)),
            ("SECRET UK EYES ONLY\nbody", secret(Line::First)),
            ("> SECRET\nbody", secret(Line::Other)),
            // Quoted and forwarded text is another message's: it never lowers this one.
            (
                "Thanks\nRegards\n-----Original Message-----\nFrom: x\nOFFICIAL\n",
                vec![],
            ),
            ("Thanks\nOn Monday, X wrote:\nOFFICIAL", vec![]),
            // A lowering line continued on the next line is no exact form.
            (
                "OFFICIAL\nSENSITIVE\nDear Sir",
                vec![
                    ("OFFICIAL-SENSITIVE".into(), Line::First),
                    ("OFFICIAL-SENSITIVE".into(), Line::Other),
                ],
            ),
            ("OFFICIAL \nSENS\nDear Sir", os(Line::First)),
            ("OFFICIAL\nDear Sir", official(Line::First)),
            // A message forwarded inline carries its own marking.
            (
                "OFFICIAL\nsee below\n-----Original Message-----\nSubject: SECRET plan\nhi\nbye",
                vec![
                    ("OFFICIAL".into(), Line::First),
                    ("SECRET".into(), Line::Other),
                ],
            ),
            (
                "OFFICIAL\nhi\n> Betreff: AW: TOP SECRET\nbye",
                vec![
                    ("OFFICIAL".into(), Line::First),
                    ("TOP SECRET".into(), Line::Other),
                ],
            ),
            (
                "OFFICIAL\nhi\nSubject: OFFICIAL: x\nbye",
                official(Line::First),
            ),
            ("Classification SECRET\nbody", secret(Line::First)),
            ("Protective marking - SECRET\nbody", secret(Line::First)),
            ("\u{FEFF}SECRET\nbody", secret(Line::First)),
            // Every line end counts.
            ("Hello\u{2028}SECRET\u{2029}Bye", secret(Line::Other)),
            ("Hello\rSECRET\rBye", secret(Line::Other)),
            ("Hello\x0CSECRET\u{85}Bye", secret(Line::Other)),
            // The last line before a signature or a disclaimer.
            (
                "Dear Sir\nthe file\nOFFICIAL\n-- \nJ Smith\nClerk",
                official(Line::Last),
            ),
            (
                "Dear Sir\nthe file\nOFFICIAL\n\nThis email is confidential and intended...\nbye",
                official(Line::Last),
            ),
            ("", vec![]),
            ("   \n \t \n", vec![]),
        ];
        for (text, want) in cases {
            assert_eq!(names(text), want, "{text:?}");
        }
    }

    #[test]
    fn disclaimer_starts_begin_with_a_letter_ends_message_looks_for() {
        for start in DISCLAIMER_STARTS {
            assert!(b"ACDILNPST".contains(&start.as_bytes()[0]), "{start}");
            assert!(ends_message(&start.to_lowercase()), "{start}");
        }
    }

    #[test]
    fn plain_lines_end_where_str_split_ends_them() {
        let ends = ['\n', '\r', '\u{2028}', '\u{2029}', '\u{85}', '\x0C', '\x0B'];
        for text in [
            "",
            "one",
            "a\nb",
            "a\r\nb\r\n",
            "\n\n",
            "a\u{2028}b\u{2029}c\u{85}d\x0Ce\x0Bf",
            // Look-alikes of the line ends' bytes that are other characters.
            "\u{2027}x\u{202A}y\u{84}z\u{C5}\u{2080}",
            "é\u{2028}",
            "\u{85}",
        ] {
            let split: Vec<&str> = text.split(ends).collect();
            let ours: Vec<String> = plain_lines(text).map(|l| l.text.into_owned()).collect();
            assert_eq!(ours, split, "{text:?}");
        }
    }

    #[test]
    fn a_single_line_counts_once() {
        assert_eq!(names("SECRET"), vec![("SECRET".to_string(), Line::First)]);
    }

    #[test]
    fn hidden_lines_raise_but_never_lower() {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        let hidden = |text: &str| TextLine {
            text: Cow::Owned(text.to_string()),
            hidden: true,
        };
        assert!(markings(lent(&[hidden("OFFICIAL")]), &v).found.is_empty());
        let found = markings(lent(&[hidden("SECRET")]), &v).found;
        assert_eq!(v.level(found[0].0.level).name, "SECRET");
    }
}
