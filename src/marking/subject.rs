//! Markings in a (decoded, unfolded) Subject: at the start, after the prefixes mail clients
//! and gateways add; anywhere in capitals; and at the end in brackets.

use super::normalize::fold;
use super::resemble::{self, Mode, Reading, Token};
use super::vocab::{LevelId, Vocabulary};
use super::{Found, max_reading};
use std::sync::LazyLock;

/// Where in the Subject a marking stood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Start,
    End,
}

/// Reply and forward prefixes, each followed by `:` (or a full-width colon), compared without
/// regard to case: English, German (AW, WG, Antw, Antwort), Nordic (SV, VS, VB, VL, FS),
/// Dutch, French (TR, RÉF), Spanish and Portuguese (RV, RES, ENC), Italian (R, I, RIF),
/// Polish (ODP, PD), Turkish, Greek, Russian, Hebrew, Chinese, Japanese and Korean.
const REPLY_PREFIXES: &[&str] = &[
    "RE",
    "FW",
    "FWD",
    "AW",
    "WG",
    "SV",
    "VS",
    "VB",
    "VL",
    "FS",
    "RV",
    "TR",
    "ANTW",
    "ANTWORT",
    "DOORST",
    "RES",
    "ENC",
    "RIF",
    "R",
    "I",
    "ODP",
    "PD",
    "YNT",
    "İLT",
    "RÉF",
    "REF",
    "ΑΠ",
    "ΣΧΕΤ",
    "ΠΡΘ",
    "ΠΡΟΩΘ",
    "НА",
    "ОТВ",
    "ОТВЕТ",
    "ПЕРЕСЛ",
    "השב",
    "הועבר",
    "回复",
    "转发",
    "回覆",
    "轉寄",
    "答复",
    "返信",
    "転送",
    "회신",
    "답장",
    "전달",
];

/// Words gateways and senders put before a marking: `EXTERNAL:`, `*EXTERNAL*`, `CAUTION:`,
/// `URGENT:`. Counted as a prefix only with a colon or between asterisks (or in brackets,
/// which any non-marking group is).
const TAG_WORDS: &[&str] = &[
    "EXTERNAL",
    "EXT",
    "EXTERNAL EMAIL",
    "EXTERNAL E-MAIL",
    "EXTERNAL SENDER",
    "CAUTION",
    "WARNING",
    "SPAM",
    "SUSPECTED SPAM",
    "POSSIBLE SPAM",
    "PHISHING",
    "SUSPICIOUS",
    "BULK",
    "URGENT",
    "IMPORTANT",
    "HIGH PRIORITY",
    "PRIORITY",
    "ACTION REQUIRED",
    "FYI",
    "FOR INFORMATION",
    "REMINDER",
];

/// Upper-case prefixes, compared against the upper-cased Subject.
static PREFIXES: LazyLock<Vec<String>> =
    LazyLock::new(|| REPLY_PREFIXES.iter().map(|p| p.to_uppercase()).collect());

/// The markings of one Subject. `tag` is the hub's own subject tag (`[CJSM]`), skipped where
/// it stands before or after a marking.
pub fn markings(subject: &str, tag: &str, vocab: &Vocabulary) -> Vec<(Found, Place)> {
    let mut found = Vec::new();
    if let Some(start) = start(subject, tag, vocab) {
        found.push((start, Place::Start));
    }
    if let Some(end) = at_end(subject, tag, vocab) {
        found.push((end, Place::End));
    }
    found
}

/// The start and the rest of the Subject: the strict reading (the only one that may lower),
/// the generous one, and whether the generous one needed folding or resemblance.
fn start(subject: &str, tag: &str, vocab: &Vocabulary) -> Option<Found> {
    let rest = skip_prefixes(subject, tag);
    let strict = strict_start(rest, vocab);
    let generous = |text: &str, rest: &str, mode| {
        super::max_level(
            vocab,
            [at_start(rest, vocab, mode), anywhere(text, vocab, mode)],
        )
    };
    let mut loose = generous(&fold(subject), &fold(rest), Mode::Resemble);
    // Under a right-to-left override the reader sees the text reversed.
    if let Some(visual) = super::normalize::fold_visual(subject) {
        loose = super::max_level(vocab, [loose, anywhere(&visual, vocab, Mode::Resemble)]);
    }
    max_reading(
        vocab,
        [
            strict.map(Found::plain),
            loose
                .map(|level| Found::checked(vocab, level, || generous(subject, rest, Mode::Exact))),
        ],
    )
}

/// The generous reading right after the prefixes. In capitals any level counts; otherwise
/// only up to the ceiling (everyday `Secret:` and `Confidential:` are no government
/// classification), and a single word only as a label: `Private: …`, not `Private lunch`.
fn at_start(rest: &str, vocab: &Vocabulary, mode: Mode) -> Option<LevelId> {
    let tokens = resemble::tokens(rest, mode, 16);
    let Some(Reading::Level {
        level,
        end,
        capitals,
    }) = vocab.reading_at(&tokens, 0, mode)
    else {
        return None;
    };
    if capitals {
        return Some(level);
    }
    let labelled = || {
        let next = rest[tokens[end - 1].end..].trim_start().chars().next();
        next.is_none_or(|c| ":])".contains(c) || c == '-')
    };
    (!vocab.above_ceiling(level) && (end > 1 || labelled())).then_some(level)
}

/// A marking in capitals anywhere in the Subject, as a word sequence of its own:
/// `Bail hearing TOP SECRET`, `Fwd: SECRET`, `[EXTERNAL] ***SECRET*** plan`.
fn anywhere(text: &str, vocab: &Vocabulary, mode: Mode) -> Option<LevelId> {
    let tokens = resemble::tokens(text, mode, usize::MAX);
    // In capitals; or, up to the ceiling, a phrase of several words in any case
    // (`Official-Sensitive`, `Commercial in Confidence`), never a lone word (`Private`,
    // `Restricted` are prose too).
    resemble::highest_in(vocab, &tokens, mode, |level, words, capitals| {
        capitals || (words > 1 && !vocab.above_ceiling(level))
    })
}

/// The strict reading at the start, from the exact form only: `OFFICIAL:`, `[OFFICIAL]`,
/// `(OFFICIAL PERSONAL) …`, or a Subject that is only the marking. `OFFICIAL` followed by
/// anything else (`OFFICIAL RECEIVER`, `OFFICIAL - SENSTIVE`) is no reading at all.
fn strict_start(rest: &str, vocab: &Vocabulary) -> Option<LevelId> {
    let mut text = rest;
    // Each turn consumes a bracketed group, so this is linear in the Subject.
    while let Some(inner) = text.strip_prefix(['[', '(']) {
        let close = if text.starts_with('[') { ']' } else { ')' };
        let end = inner.find(close)?;
        let inside = inner[..end].trim();
        if let Some(m) = vocab.best_match(inside, 0, |m, rest| vocab.exact_tail(m, rest)) {
            return strict_level(vocab, m.level);
        }
        // Not a marking: a gateway's tag (`[EXTERNAL]`, `[SPAM?]`). The marking may follow.
        let after = &inner[end + 1..];
        text = skip_prefixes(strip_colon(after).unwrap_or(after), "");
    }
    let m = vocab.best_match(text, 0, |_, rest| label_ends(rest))?;
    strict_level(vocab, m.level)
}

/// What may follow a marking in its exact form at the start of a Subject: nothing, a colon,
/// or a dash standing alone (`OFFICIAL - Court listings`). Anything else (`OFFICIAL RECEIVER`,
/// `OFFICIAL, SENSITIVE`, `OFFICIAL\u{200B}: …`) is no exact form. A dash may be followed by
/// a continuation that resembles a higher marking (`OFFICIAL - SENSTIVE`): the generous
/// reading of the same Subject finds that, and the higher reading wins.
fn label_ends(rest: &str) -> bool {
    let rest = rest.trim_start();
    let mut chars = rest.chars();
    match chars.next() {
        None | Some(':' | '\u{FF1A}') => true,
        Some(c) if super::vocab::is_dash(c) => {
            let after = chars.as_str().trim_start_matches(super::vocab::is_dash);
            after.is_empty() || after.starts_with(char::is_whitespace)
        }
        _ => false,
    }
}

/// Strict readings serve lowering; above the ceiling only the generous reader (which asks
/// for capitals) decides.
fn strict_level(vocab: &Vocabulary, level: LevelId) -> Option<LevelId> {
    (!vocab.above_ceiling(level)).then_some(level)
}

/// The Subject after reply and forward prefixes (`RE:`, `AW:`, `RE[2]:`, `回复：`), gateway
/// tags (`EXTERNAL:`, `*EXTERNAL*`, `[EXT]` is left to the bracket loop) and the hub's tag.
pub fn skip_prefixes<'s>(subject: &'s str, tag: &str) -> &'s str {
    let mut text = subject.trim_start();
    // Every turn consumes at least one character, so this is linear.
    loop {
        if !tag.is_empty()
            && let Some(rest) = strip_prefix_ignore_case(text, tag)
        {
            text = rest.trim_start();
            continue;
        }
        let next = PREFIXES
            .iter()
            .find_map(|p| strip_reply_prefix(text, p))
            .or_else(|| strip_tag_word(text));
        let Some(rest) = next else {
            break;
        };
        text = rest.trim_start();
    }
    text
}

/// `RE:`, `Re :`, `RE[2]:`, `RE(2):`, `RE^2:`, `回复：`.
fn strip_reply_prefix<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let rest = strip_prefix_ignore_case(text, prefix)?;
    // `R:` and `I:` must not take the first letter of a word.
    if rest.starts_with(char::is_alphanumeric) {
        return None;
    }
    let rest = match rest.chars().next() {
        Some(open @ ('[' | '(')) => {
            let counted = &rest[1..];
            let close = counted.find(if open == '[' { ']' } else { ')' })?;
            if !counted[..close].bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            &counted[close + 1..]
        }
        Some('^' | '*') => rest[1..].trim_start_matches(|c: char| c.is_ascii_digit()),
        _ => rest,
    };
    strip_colon(rest)
}

pub(super) fn strip_colon(text: &str) -> Option<&str> {
    let text = text.trim_start();
    text.strip_prefix(':')
        .or_else(|| text.strip_prefix('\u{FF1A}'))
        .or_else(|| text.strip_prefix('\u{FE55}'))
}

/// `EXTERNAL:`, `*EXTERNAL*`, `**EXTERNAL**:`, `CAUTION -`.
fn strip_tag_word(text: &str) -> Option<&str> {
    let stars = text.len() - text.trim_start_matches('*').len();
    let inner = &text[stars..];
    TAG_WORDS.iter().find_map(|word| {
        let after = strip_prefix_ignore_case(inner, word)?;
        if after.starts_with(char::is_alphanumeric) {
            return None;
        }
        let trailing = after.len() - after.trim_start_matches('*').len();
        let after = &after[trailing..];
        if stars > 0 && trailing > 0 {
            return Some(strip_colon(after).unwrap_or(after));
        }
        strip_colon(after)
    })
}

pub(super) fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let mut rest = text;
    for p in prefix.chars() {
        let c = rest.chars().next()?;
        if !c.to_uppercase().eq(p.to_uppercase()) {
            return None;
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(rest)
}

fn strip_suffix_ignore_case<'s>(text: &'s str, suffix: &str) -> Option<&'s str> {
    let cut = text.len().checked_sub(suffix.len())?;
    let tail = text.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &text[..cut])
}

/// `… [SEC=OFFICIAL:Sensitive, ACCESS=Legal-Privilege]` or `… [SECRET]`.
fn at_end(subject: &str, tag: &str, vocab: &Vocabulary) -> Option<Found> {
    let strict = end_group(subject, tag).and_then(|inside| {
        if inside.contains('=') {
            let values = sec_values(inside);
            super::max_level(vocab, values.map(|sec| vocab.whole_marking(sec)))
        } else {
            vocab.whole_marking(inside)
        }
        .and_then(|level| strict_level(vocab, level))
    });
    let folded = fold(subject);
    let generous = |text: &str, mode| {
        let inside = end_group(text, tag)?;
        if inside.contains('=') {
            // The structured form: any case, anything after the level (caveats).
            super::max_level(vocab, sec_values(inside).map(|v| leading(v, vocab, mode)))
        } else {
            let tokens = resemble::tokens(inside, mode, 16);
            match vocab.reading_at(&tokens, 0, mode)? {
                // In capitals, whatever follows (`[SECRET UK EYES ONLY]`); otherwise a marking
                // with its descriptors only.
                Reading::Level {
                    level,
                    end,
                    capitals,
                } if capitals
                    || (!vocab.above_ceiling(level) && vocab.all_descriptors(&tokens[end..])) =>
                {
                    Some(level)
                }
                _ => None,
            }
        }
    };
    let loose = generous(&folded, Mode::Resemble);
    max_reading(
        vocab,
        [
            strict.map(Found::plain),
            loose.map(|level| Found::checked(vocab, level, || generous(subject, Mode::Exact))),
        ],
    )
}

/// The inside of the last bracketed group of the Subject, after the hub's tag.
fn end_group<'s>(subject: &'s str, tag: &str) -> Option<&'s str> {
    let mut text = subject.trim_end();
    while !tag.is_empty()
        && let Some(rest) = strip_suffix_ignore_case(text, tag)
    {
        text = rest.trim_end();
    }
    let inner = text.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    Some(&inner[open + 1..])
}

/// Every `SEC=` value (given twice, each is read: the highest wins), separated by `,` or `;`,
/// quotes removed.
fn sec_values(inside: &str) -> impl Iterator<Item = &str> {
    key_values(inside, &[',', ';'])
        .filter(|(k, _)| k.eq_ignore_ascii_case("SEC") || k.eq_ignore_ascii_case("DLM"))
        .map(|(_, v)| v.trim_matches(['"', '\'']).trim())
}

/// The generous reading of a label value: the level its first words resemble, in any case,
/// whatever follows (`SECRET AUSTEO`, `OFFICIAL Sensitive`, `Secret - Internal`).
pub fn leading(value: &str, vocab: &Vocabulary, mode: Mode) -> Option<LevelId> {
    let tokens: Vec<Token> = resemble::tokens(value, mode, 16);
    match vocab.reading_at(&tokens, 0, mode)? {
        Reading::Level { level, .. } => Some(level),
        Reading::Everyday { .. } => None,
    }
}

/// `KEY=VALUE` pairs separated by any of `seps`, trimmed. A segment without `=` continues
/// the value before it (`SEC=OFFICIAL, Sensitive` is `OFFICIAL, Sensitive`, not `OFFICIAL`).
pub fn key_values<'t>(text: &'t str, seps: &'t [char]) -> impl Iterator<Item = (&'t str, &'t str)> {
    let mut pairs: Vec<(&str, usize, usize)> = Vec::new();
    let mut start = 0;
    for segment in text.split(seps) {
        let end = start + segment.len();
        match segment.split_once('=') {
            Some((key, _)) => {
                let value_start = start + key.len() + 1;
                pairs.push((key.trim(), value_start, end));
            }
            None => {
                if let Some(last) = pairs.last_mut() {
                    last.2 = end;
                }
            }
        }
        // The separator (one character) follows.
        start = end + text[end..].chars().next().map_or(0, char::len_utf8);
    }
    pairs
        .into_iter()
        .map(move |(key, from, to)| (key, text[from..to].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn names(subject: &str) -> Vec<(String, Place)> {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        markings(subject, "[CJSM]", &v)
            .into_iter()
            .map(|(found, place)| (v.level(found.level).name.clone(), place))
            .collect()
    }

    fn start(label: &str) -> Vec<(String, Place)> {
        vec![(label.to_string(), Place::Start)]
    }

    fn end(label: &str) -> Vec<(String, Place)> {
        vec![(label.to_string(), Place::End)]
    }

    /// A bracket at the end in capitals: read as a label, and as part of the Subject.
    fn both(label: &str) -> Vec<(String, Place)> {
        vec![
            (label.to_string(), Place::Start),
            (label.to_string(), Place::End),
        ]
    }

    #[test]
    fn subject_table() {
        let none: Vec<(String, Place)> = vec![];
        let cases = [
            (
                "OFFICIAL-SENSITIVE: Case 1234 disclosure",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "OFFICIAL: SENSITIVE - bail conditions",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "OFFICIAL - SENSITIVE PERSONAL - witness list",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "OFFICIAL SENSITIVE witness list",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "Official-Sensitive: hearing moved",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "official sensitive: hearing moved",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("OFFICIAL: rota for December", start("OFFICIAL")),
            ("OFFICIAL", start("OFFICIAL")),
            ("[OFFICIAL] rota", start("OFFICIAL")),
            // The descriptors belong to OFFICIAL-SENSITIVE: no exact OFFICIAL.
            ("(OFFICIAL PERSONAL) rota", none.clone()),
            // Lowering needs the exact form: OFFICIAL followed by anything but a colon is no
            // reading (unmarked: the default).
            ("OFFICIAL rota for December", none.clone()),
            ("OFFICIAL RECEIVER - Smith Ltd", none.clone()),
            ("PROTECT YOURSELF FROM FRAUD", none.clone()),
            ("OFFICIAL - rota", start("OFFICIAL")),
            ("OFFICIAL \u{2013} rota", start("OFFICIAL")),
            ("OFFICIAL -rota", none.clone()),
            ("OFFICIAL - SENSTIVE - rota", start("OFFICIAL-SENSITIVE")),
            ("OFFICIAL - SENS - rota", start("OFFICIAL-SENSITIVE")),
            (
                "OFFICIAL - S\u{200B}ENSITIVE - rota",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("OFFICIAL\u{200B} - rota", none.clone()),
            ("Official rota for December", none.clone()),
            ("Official: rota", start("OFFICIAL")),
            ("OFFICIAL-SENSTIVE: bail", start("OFFICIAL-SENSITIVE")),
            ("OFFICIAL-SENS: bail", start("OFFICIAL-SENSITIVE")),
            ("OFFICIAL: Sens. bail", start("OFFICIAL-SENSITIVE")),
            ("OFFICIAL, SENSITIVE: bail", start("OFFICIAL-SENSITIVE")),
            ("OFFICIAL | SENSITIVE: bail", start("OFFICIAL-SENSITIVE")),
            ("OFFICIAL…SENSITIVE: bail", start("OFFICIAL-SENSITIVE")),
            ("OFFICIAL \"SENSITIVE\": bail", start("OFFICIAL-SENSITIVE")),
            (
                "OFFICIAL-SEN\u{200B}SITIVE: bail",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "OFFICIAL-SEN\u{00AD}SITIVE: bail",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "OFFICIAL-ＳＥＮＳＩＴＩＶＥ: bail",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "OFFICIAL-S\u{0415}NSITIVE: bail",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("OFF\u{200B}ICIAL: rota", none.clone()),
            ("ＯＦＦＩＣＩＡＬ: rota", none.clone()),
            ("[RESTRICTED] custody record", start("OFFICIAL-SENSITIVE")),
            (
                "[OFFICIAL-SENSITIVE PERSONAL] custody record",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("[EXTERNAL] SECRET: plan", start("SECRET")),
            (
                "[EXT] RE: [SPAM?] Official-Sensitive: x",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("[EXTERNAL] lunch", none.clone()),
            ("OFFICIAL (SENSITIVE): bail", start("OFFICIAL-SENSITIVE")),
            (
                "OFFICIAL\u{2011}SENSITIVE bail",
                start("OFFICIAL-SENSITIVE"),
            ),
            (
                "Official\u{2010}Sensitive: bail",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("OFFICIAL [SENSITIVE] bail", start("OFFICIAL-SENSITIVE")),
            (
                "RE: OFFICIAL - SENSITIVE PERSONAL - hearing",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("RE: FW: Fwd: SECRET: operation", start("SECRET")),
            ("Re[2]: TOP SECRET", start("TOP SECRET")),
            ("[CJSM] RE: OFFICIAL: x", start("OFFICIAL")),
            ("AW: WG: OFFICIAL: x", start("OFFICIAL")),
            ("回复：OFFICIAL: x", start("OFFICIAL")),
            ("RE(3): Antw: OFFICIAL: x", start("OFFICIAL")),
            ("EXTERNAL: OFFICIAL: x", start("OFFICIAL")),
            ("*EXTERNAL* OFFICIAL: x", start("OFFICIAL")),
            ("[EXTERNAL]: OFFICIAL: x", start("OFFICIAL")),
            ("CAUTION: URGENT: OFFICIAL: x", start("OFFICIAL")),
            ("SECRET Operation Nightjar", start("SECRET")),
            ("Bail hearing TOP SECRET", start("TOP SECRET")),
            ("*SECRET* plan", start("SECRET")),
            ("---- SECRET ---- plan", start("SECRET")),
            ("=== SECRET === plan", start("SECRET")),
            ("\"SECRET\" plan", start("SECRET")),
            ("🔒 SECRET 🔒 plan", start("SECRET")),
            ("S E C R E T plan", start("SECRET")),
            ("Secret Santa draw", none.clone()),
            ("SECRET SANTA DRAW", none.clone()),
            ("Secret: the surprise party", none.clone()),
            ("(Secret) plan", none.clone()),
            ("Our secret weapon: the new form", none.clone()),
            ("Private message about lunch", none.clone()),
            (
                "PRIVATE AND CONFIDENTIAL: statement",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("Confidential: salary review", none.clone()),
            ("[Confidential] draft advice", none.clone()),
            (
                "CONFIDENTIAL AND LEGALLY PRIVILEGED - R v Jones",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("Privileged & Confidential", start("OFFICIAL-SENSITIVE")),
            ("PROTECTED DISCLOSURE - concerns", none.clone()),
            ("Protected: characteristics training", none.clone()),
            ("PROTECTED: new rota", start("PROTECTED")),
            ("PROTECT: new rota", start("OFFICIAL")),
            (
                "Budget [SEC=OFFICIAL:Sensitive, ACCESS=Legal-Privilege]",
                vec![
                    ("OFFICIAL-SENSITIVE".into(), Place::Start),
                    ("OFFICIAL-SENSITIVE".into(), Place::End),
                ],
            ),
            ("Budget [SEC=PROTECTED]", both("PROTECTED")),
            ("Budget [SEC=UNOFFICIAL]", end("OFFICIAL")),
            ("Budget [SECRET]", both("SECRET")),
            ("Budget [Secret]", none.clone()),
            ("Budget [SEC=OFFICIAL] [CJSM]", end("OFFICIAL")),
            ("Budget [SEC=OFFICIAL, SEC=SECRET]", both("SECRET")),
            ("Budget [SEC=\"Secret\"; CAVEAT=x]", end("SECRET")),
            ("Budget [SEC=OFFICIAL SENSTIVE]", both("OFFICIAL-SENSITIVE")),
            ("Budget [draft]", none.clone()),
            ("Budget [SEC=GIBBERISH]", none.clone()),
            ("", none.clone()),
            ("[", none.clone()),
            ("]", none.clone()),
            ("RE:", none.clone()),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(subject, want)| names(subject) != *want)
            .map(|(subject, want)| format!("{subject:?}: want {want:?}, got {:?}", names(subject)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn start_and_end_both_reported() {
        assert_eq!(
            names("OFFICIAL: budget [SEC=PROTECTED]"),
            vec![
                // The bracket is read as a label and, in capitals, as part of the Subject.
                ("PROTECTED".to_string(), Place::Start),
                ("PROTECTED".to_string(), Place::End)
            ]
        );
    }

    #[test]
    fn obfuscation_is_reported() {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        let obfuscated = |s: &str| markings(s, "", &v)[0].0.obfuscated;
        assert!(!obfuscated("SECRET: plan"));
        assert!(!obfuscated("OFFICIAL-SENSITIVE: plan"));
        assert!(obfuscated("SE\u{200B}CRET: plan"));
        assert!(obfuscated("S E C R E T: plan"));
        assert!(obfuscated("OFFICIAL-SENSTIVE: plan"));
    }

    #[test]
    fn hostile_subjects_terminate() {
        let long = "RE: ".repeat(100_000) + "SECRET";
        assert_eq!(names(&long), start("SECRET"));
        let brackets = "[".repeat(100_000);
        assert!(names(&brackets).is_empty());
        let tags = "[x] ".repeat(100_000) + "SECRET";
        assert_eq!(names(&tags), start("SECRET"));
        let multibyte = "é".repeat(1000) + "]";
        assert!(names(&multibyte).is_empty());
    }
}
