//! Markings in the text of a message: the first and the last non-blank lines of a text part.

use super::vocab::{LevelId, Vocabulary};

/// Which line of the part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    First,
    Last,
}

/// The markings of one text (already decoded, HTML already rendered to text).
pub fn markings(text: &str, vocab: &Vocabulary) -> Vec<(LevelId, Line)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next();
    let last = lines.next_back();
    let mut found = Vec::new();
    if let Some(level) = first.and_then(|l| line_marking(l, vocab)) {
        found.push((level, Line::First));
    }
    if let Some(level) = last.and_then(|l| line_marking(l, vocab)) {
        found.push((level, Line::Last));
    }
    found
}

/// Decoration that may frame a marking line: `*** OFFICIAL-SENSITIVE ***`, `== SECRET ==`.
fn is_decoration(c: char) -> bool {
    c.is_whitespace() || "*#=_~".contains(c)
}

/// A line that is a marking with its descriptors (`OFFICIAL-SENSITIVE PERSONAL`,
/// `[RESTRICTED]`), or a labelled line (`Classification: OFFICIAL`).
pub fn line_marking(line: &str, vocab: &Vocabulary) -> Option<LevelId> {
    let line = line.trim_matches(is_decoration);
    if let Some(value) = vocab.after_line_label(line) {
        return vocab.leading_marking(value.trim_matches(is_decoration));
    }
    let inner = line.trim_start_matches(['[', '(']).trim_start();
    vocab
        .best_match(inner, 0, |_, rest| vocab.only_descriptors(rest))
        .map(|m| m.level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn names(text: &str) -> Vec<(String, Line)> {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        markings(text, &v)
            .into_iter()
            .map(|(id, line)| (v.level(id).name.clone(), line))
            .collect()
    }

    #[test]
    fn body_table() {
        let os = |line| vec![("OFFICIAL-SENSITIVE".to_string(), line)];
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
            (
                "Classification: SECRET\nbody\nend",
                vec![("SECRET".into(), Line::First)],
            ),
            (
                "Hello\nProtective Marking: OFFICIAL",
                vec![("OFFICIAL".into(), Line::Last)],
            ),
            ("Hello\nThis is OFFICIAL-SENSITIVE material\nBye", vec![]),
            ("Secret Santa is on Friday\nBring a gift", vec![]),
            ("The secret is out", vec![]),
            (
                "OFFICIAL\nbody\nSECRET",
                vec![
                    ("OFFICIAL".into(), Line::First),
                    ("SECRET".into(), Line::Last),
                ],
            ),
            ("", vec![]),
            ("   \n \t \n", vec![]),
        ];
        for (text, want) in cases {
            assert_eq!(names(text), want, "{text:?}");
        }
    }

    #[test]
    fn a_single_line_counts_once() {
        assert_eq!(names("SECRET"), vec![("SECRET".to_string(), Line::First)]);
    }
}
