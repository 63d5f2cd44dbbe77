//! Text as a reader sees it: what the classifier compares markings against.
//!
//! A marking can be hidden from a byte-for-byte matcher while the recipient still reads it:
//! full-width or styled letters, invisible characters inside a word, letters from another
//! script that look the same, unusual dashes and spaces. [`fold`] undoes all of these, so
//! that `ＳＥ\u{200B}СRЕТ` (full-width, a zero-width space, Cyrillic С and Е) reads `SECRET`.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// `text` after, in order:
/// - Unicode NFKC (full-width and mathematical letters, ligatures, `：`),
/// - removing format and default-ignorable characters (zero-width space, joiners, word
///   joiner, BOM, soft hyphen, bidi controls, variation selectors), combining marks, and
///   control characters other than tab and line ends (a NUL between letters),
/// - every line end (`\r`, U+2028, U+2029, NEL, form feed, vertical tab) as `\n`, every
///   Unicode space as ` `, every dash and minus sign as `-`,
/// - each remaining non-ASCII character replaced by its Unicode TR39 skeleton (Cyrillic `С`
///   reads `C`), keeping its case.
///
/// ASCII text without control characters comes back unchanged (and without allocating).
pub fn fold(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii() && (!b.is_ascii_control() || b == b'\t' || b == b'\n'));
    if plain {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    // Most non-ASCII text (a `’`, an accented name) is already in NFKC, and the quick check
    // says so in one pass: normalising it again would give the same characters at several
    // times the cost. `Maybe` and `No` take the full normalisation.
    if unicode_normalization::is_nfkc_quick(text.chars())
        == unicode_normalization::IsNormalized::Yes
    {
        for c in text.chars() {
            fold_char(c, &mut out);
        }
    } else {
        for c in text.nfkc() {
            fold_char(c, &mut out);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        match c {
            '\t' | '\n' => out.push(c),
            '\r' | '\x0B' | '\x0C' => out.push('\n'),
            c if c.is_ascii_control() => {}
            c => out.push(c),
        }
        return;
    }
    match c {
        '\u{2028}' | '\u{2029}' | '\u{0085}' => return out.push('\n'),
        // Hangul fillers and Mongolian selectors render as nothing but are letters or marks;
        // the replacement character stands for bytes that could not be decoded (`SEC\xFFRET`).
        '\u{115F}'
        | '\u{1160}'
        | '\u{3164}'
        | '\u{FFA0}'
        | '\u{180B}'..='\u{180F}'
        | '\u{FFFD}' => {
            return;
        }
        _ => {}
    }
    if let Some(capital) = small_capital(c) {
        return out.push(capital);
    }
    // Letters drawn as symbols, which NFKC leaves alone: negative circled and squared
    // letters (🅢, 🆂) and regional indicators (🇸): read as the capitals they show.
    for (first, last) in [
        ('\u{1F150}', '\u{1F169}'),
        ('\u{1F170}', '\u{1F189}'),
        ('\u{1F1E6}', '\u{1F1FF}'),
    ] {
        if (first..=last).contains(&c) {
            return out.push(char::from(b'A' + (c as u32 - first as u32) as u8));
        }
    }
    match c.general_category() {
        GeneralCategory::Format
        | GeneralCategory::Control
        | GeneralCategory::NonspacingMark
        | GeneralCategory::EnclosingMark
        | GeneralCategory::Unassigned
        | GeneralCategory::PrivateUse
        | GeneralCategory::Surrogate => {}
        GeneralCategory::DashPunctuation => out.push('-'),
        GeneralCategory::SpaceSeparator
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => out.push(' '),
        _ if c == '\u{2212}' || c == '\u{FE63}' || c == '\u{FF0D}' => out.push('-'),
        _ => {
            let mut buffer = [0; 4];
            let upper = c.is_uppercase();
            for p in unicode_security::skeleton(c.encode_utf8(&mut buffer)) {
                if matches!(
                    p.general_category(),
                    GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
                ) {
                    continue;
                }
                if upper {
                    out.extend(p.to_uppercase());
                } else {
                    out.push(p);
                }
            }
        }
    }
}

/// Latin small capitals (`ꜱᴇᴄʀᴇᴛ`): lower-case letters by their Unicode category, capitals
/// to the eye, and not all in the confusables data. Read as the capitals they show.
fn small_capital(c: char) -> Option<char> {
    Some(match c {
        '\u{1D00}' => 'A',
        '\u{0299}' | '\u{1D03}' => 'B',
        '\u{1D04}' => 'C',
        '\u{1D05}' | '\u{1D06}' => 'D',
        '\u{1D07}' => 'E',
        '\u{A730}' => 'F',
        '\u{0262}' => 'G',
        '\u{029C}' => 'H',
        '\u{026A}' => 'I',
        '\u{1D0A}' => 'J',
        '\u{1D0B}' => 'K',
        '\u{029F}' | '\u{1D0C}' => 'L',
        '\u{1D0D}' => 'M',
        '\u{0274}' | '\u{1D0E}' => 'N',
        '\u{1D0F}' => 'O',
        '\u{1D18}' => 'P',
        '\u{A7AF}' => 'Q',
        '\u{0280}' | '\u{1D19}' | '\u{1D1A}' => 'R',
        '\u{A731}' => 'S',
        '\u{1D1B}' => 'T',
        '\u{1D1C}' => 'U',
        '\u{1D20}' => 'V',
        '\u{1D21}' => 'W',
        '\u{028F}' => 'Y',
        '\u{1D22}' => 'Z',
        _ => return None,
    })
}

/// The text in the order a reader sees it when it holds a right-to-left override (U+202E):
/// each overridden run up to its pop (U+202C) or the end of the line is reversed, so
/// `\u{202E}TERCES` reads `SECRET`. `None` when there is no override. (`fold` keeps the
/// logical order and removes the controls; both readings are taken, the higher wins.)
pub fn fold_visual(text: &str) -> Option<String> {
    if !text.contains('\u{202E}') {
        return None;
    }
    let mut visual = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\u{202E}') {
        visual.push_str(&rest[..at]);
        let run = &rest[at + '\u{202E}'.len_utf8()..];
        let end = run.find(['\u{202C}', '\n']).unwrap_or(run.len());
        visual.extend(run[..end].chars().rev());
        rest = &run[end..];
    }
    visual.push_str(rest);
    Some(fold(&visual).into_owned())
}

/// Look-alike digits and signs read as the letters they imitate.
pub fn canonical(c: char) -> char {
    match c {
        '0' => 'O',
        '1' | 'L' => 'I',
        '3' => 'E',
        '4' | '@' => 'A',
        '5' | '$' => 'S',
        '7' => 'T',
        '8' => 'B',
        c => c,
    }
}

/// The words of a spelling as the generous reader (`resemble::Mode::Resemble`) compares them.
pub fn canonical_words(words: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|w| w.chars().map(canonical).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_table() {
        let cases = [
            ("SECRET", "SECRET"),
            ("ＳＥＣＲＥＴ", "SECRET"),
            ("SE\u{200B}CRET", "SECRET"),
            ("SEC\u{00AD}RET", "SECRET"),
            ("\u{FEFF}SECRET", "SECRET"),
            ("S\u{2060}E\u{200D}C\u{200C}R\u{202E}ET", "SECRET"),
            ("S\0E\0C\0R\0E\0T\0", "SECRET"),
            // Cyrillic С, Е and Т; Greek Ε.
            ("\u{0405}\u{0415}\u{0421}R\u{0395}\u{0422}", "SECRET"),
            (
                "\u{1D412}\u{1D404}\u{1D402}\u{1D411}\u{1D404}\u{1D413}",
                "SECRET",
            ),
            ("S\u{0336}E\u{0336}CRET", "SECRET"),
            ("SÉCRET", "SECRET"),
            ("OFFICIAL\u{2011}SENSITIVE", "OFFICIAL-SENSITIVE"),
            ("OFFICIAL\u{2014}SENSITIVE", "OFFICIAL-SENSITIVE"),
            ("OFFICIAL\u{00A0}SENSITIVE", "OFFICIAL SENSITIVE"),
            ("OFFICIAL\u{3000}SENSITIVE", "OFFICIAL SENSITIVE"),
            ("a\u{2028}b\u{2029}c\u{0085}d\x0Ce\rf", "a\nb\nc\nd\ne\nf"),
            ("ﬁle", "file"),
            ("SEC\u{FFFD}RET", "SECRET"),
            ("\u{A731}\u{1D07}\u{1D04}\u{0280}\u{1D07}\u{1D1B}", "SECRET"),
            (
                "\u{1F162}\u{1F154}\u{1F152}\u{1F161}\u{1F154}\u{1F163}",
                "SECRET",
            ),
            (
                "\u{1F182}\u{1F174}\u{1F172}\u{1F181}\u{1F174}\u{1F183}",
                "SECRET",
            ),
            ("\u{1F1F8}\u{1F1EA}\u{1F1E8}", "SEC"),
        ];
        for (text, want) in cases {
            assert_eq!(fold(text), want, "{text:?}");
        }
    }

    #[test]
    fn visual_order() {
        assert_eq!(
            fold_visual("plan \u{202E}TERCES\u{202C} now").as_deref(),
            Some("plan SECRET now")
        );
        assert_eq!(fold_visual("SECRET"), None);
    }

    #[test]
    fn plain_ascii_is_borrowed() {
        assert!(matches!(
            fold("OFFICIAL: rota"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
