//! Markings in a (decoded, unfolded) Subject: at the start, after reply and forward prefixes,
//! and at the end in brackets.

use super::vocab::{LevelId, Vocabulary};

/// Where in the Subject a marking stood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Start,
    End,
}

/// Reply and forward prefixes, compared case-insensitively, each followed by `:`.
const PREFIXES: &[&str] = &["RE", "FW", "FWD", "AW", "WG", "TR", "SV", "VS"];

/// The markings of one Subject. `tag` is the hub's own subject tag (`[CJSM]`), skipped where
/// it stands before or after a marking.
pub fn markings(subject: &str, tag: &str, vocab: &Vocabulary) -> Vec<(LevelId, Place)> {
    let mut found = Vec::new();
    if let Some(level) = at_start(subject, tag, vocab) {
        found.push((level, Place::Start));
    }
    if let Some(level) = at_end(subject, tag, vocab) {
        found.push((level, Place::End));
    }
    found
}

fn at_start(subject: &str, tag: &str, vocab: &Vocabulary) -> Option<LevelId> {
    let mut text = subject;
    // Each turn consumes a bracketed group, so this is linear in the Subject.
    loop {
        text = skip_prefixes(text, tag);
        let Some(inner) = text.strip_prefix(['[', '(']) else {
            break;
        };
        let close = if text.starts_with('[') { ']' } else { ')' };
        let end = inner.find(close)?;
        let inside = inner[..end].trim_start();
        if let Some(m) = vocab.best_match(inside, 0, |_, rest| vocab.only_descriptors(rest)) {
            return Some(m.level);
        }
        // Not a marking: a gateway's tag (`[EXTERNAL]`, `[SPAM?]`). The marking may follow.
        text = &inner[end + 1..];
    }
    vocab
        .best_match(text, 0, |m, rest| {
            let next = rest.trim_start().chars().next();
            match next {
                None => true,
                // In capitals, any delimiter or a space may follow: `SECRET Operation X`.
                Some(c) if m.capitals => {
                    !c.is_alphanumeric() || rest.starts_with(char::is_whitespace)
                }
                // Otherwise only a delimiter that makes it a label: `Official-Sensitive: ...`.
                Some(c) => ":])".contains(c) || super::vocab::is_dash(c),
            }
        })
        .map(|m| m.level)
}

fn skip_prefixes<'s>(subject: &'s str, tag: &str) -> &'s str {
    let mut text = subject.trim_start();
    // Every turn consumes at least one byte (the tag is never empty), so this is linear.
    loop {
        if let Some(rest) = strip_prefix_ignore_case(text, tag).filter(|_| !tag.is_empty()) {
            text = rest.trim_start();
            continue;
        }
        let Some(rest) = PREFIXES.iter().find_map(|p| strip_reply_prefix(text, p)) else {
            break;
        };
        text = rest.trim_start();
    }
    text
}

/// `RE:`, `Re :`, `RE[2]:`.
fn strip_reply_prefix<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let rest = strip_prefix_ignore_case(text, prefix)?;
    let rest = match rest.strip_prefix('[') {
        Some(counted) => {
            let close = counted.find(']')?;
            if !counted[..close].bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            &counted[close + 1..]
        }
        None => rest,
    };
    rest.trim_start().strip_prefix(':')
}

fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn strip_suffix_ignore_case<'s>(text: &'s str, suffix: &str) -> Option<&'s str> {
    let cut = text.len().checked_sub(suffix.len())?;
    let tail = text.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &text[..cut])
}

/// `… [SEC=OFFICIAL:Sensitive, ACCESS=Legal-Privilege]` or `… [SECRET]`.
fn at_end(subject: &str, tag: &str, vocab: &Vocabulary) -> Option<LevelId> {
    let mut text = subject.trim_end();
    while !tag.is_empty()
        && let Some(rest) = strip_suffix_ignore_case(text, tag)
    {
        text = rest.trim_end();
    }
    let inner = text.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    let inside = &inner[open + 1..];
    if inside.contains('=') {
        let sec = key_values(inside, ',').find(|(k, _)| k.eq_ignore_ascii_case("SEC"))?;
        return vocab.whole_marking(sec.1);
    }
    vocab.whole_marking(inside)
}

/// `KEY=VALUE` pairs separated by `sep`, trimmed; pairs without `=` are skipped.
pub fn key_values(text: &str, sep: char) -> impl Iterator<Item = (&str, &str)> {
    text.split(sep).filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        Some((k.trim(), v.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn names(subject: &str) -> Vec<(String, Place)> {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        markings(subject, "[CJSM]", &v)
            .into_iter()
            .map(|(id, place)| (v.level(id).name.clone(), place))
            .collect()
    }

    fn start(label: &str) -> Vec<(String, Place)> {
        vec![(label.to_string(), Place::Start)]
    }

    fn end(label: &str) -> Vec<(String, Place)> {
        vec![(label.to_string(), Place::End)]
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
            ("OFFICIAL rota for December", start("OFFICIAL")),
            ("Official rota for December", none.clone()),
            ("Official: rota", start("OFFICIAL")),
            ("[RESTRICTED] custody record", start("OFFICIAL-SENSITIVE")),
            (
                "[OFFICIAL-SENSITIVE PERSONAL] custody record",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("(Secret) plan", start("SECRET")),
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
            ("SECRET Operation Nightjar", start("SECRET")),
            ("Secret Santa draw", none.clone()),
            ("Our secret weapon: the new form", none.clone()),
            ("Private message about lunch", none.clone()),
            (
                "PRIVATE AND CONFIDENTIAL: statement",
                start("OFFICIAL-SENSITIVE"),
            ),
            ("Protected: new rota", start("PROTECTED")),
            ("PROTECT: new rota", start("OFFICIAL")),
            (
                "Budget [SEC=OFFICIAL:Sensitive, ACCESS=Legal-Privilege]",
                end("OFFICIAL-SENSITIVE"),
            ),
            ("Budget [SEC=PROTECTED]", end("PROTECTED")),
            ("Budget [SEC=UNOFFICIAL]", end("OFFICIAL")),
            ("Budget [SECRET]", end("SECRET")),
            ("Budget [SEC=OFFICIAL] [CJSM]", end("OFFICIAL")),
            ("Budget [draft]", none.clone()),
            ("Budget [SEC=GIBBERISH]", none.clone()),
            ("", none.clone()),
            ("[", none.clone()),
            ("]", none.clone()),
            ("RE:", none.clone()),
        ];
        for (subject, want) in cases {
            assert_eq!(names(subject), want, "{subject:?}");
        }
    }

    #[test]
    fn start_and_end_both_reported() {
        assert_eq!(
            names("OFFICIAL: budget [SEC=PROTECTED]"),
            vec![
                ("OFFICIAL".to_string(), Place::Start),
                ("PROTECTED".to_string(), Place::End)
            ]
        );
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
