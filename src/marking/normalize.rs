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
    for c in text.nfkc() {
        fold_char(c, &mut out);
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
        ];
        for (text, want) in cases {
            assert_eq!(fold(text), want, "{text:?}");
        }
    }

    #[test]
    fn plain_ascii_is_borrowed() {
        assert!(matches!(
            fold("OFFICIAL: rota"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
