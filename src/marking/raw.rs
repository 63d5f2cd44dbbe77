//! The raw scan: a marking must not hide where the MIME parser cannot be trusted.
//!
//! When the structure of a message is ambiguous (two Content-Type headers, an invalid one, a
//! multipart without boundary, an odd Content-Transfer-Encoding, base64 with junk, a charset
//! that cannot be decoded) a mail client may read it differently from our parser; when a
//! bound cut the structured reading short, part of the message was not read at all. Either
//! way the raw bytes are scanned line by line, as they are and as far as they can be decoded
//! (base64 runs, quoted-printable, bytes of an unknown charset), for any marking that keeps
//! or raises the level. The scan never lowers, and its work is linear in its input.

use super::body::generous_line;
use super::labels;
use super::normalize::fold;
use super::resemble::Mode;
use super::subject;
use super::vocab::Vocabulary;
use super::{Found, max_reading};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Headers whose value is read as a Subject or a label when met in the raw bytes.
const MARKING_HEADERS: &[&str] = &[
    "subject",
    "thread-topic",
    "x-protective-marking",
    "msip_labels",
    "sio-label",
];

/// A line longer than this is read only up to it.
const MAX_LINE: usize = 4096;

/// The highest reading (never lowering) in `bytes`, its decodings included.
pub fn scan(bytes: &[u8], subject_tag: &str, vocab: &Vocabulary) -> Option<Found> {
    let mut budget = Budget {
        lines_left: MAX_LINES_READ,
    };
    let mut best = lines(bytes, subject_tag, vocab, &mut budget);
    best = max_reading(
        vocab,
        [
            best,
            decode_base64_runs(bytes, subject_tag, vocab, &mut budget),
        ],
    );
    if looks_quoted_printable(bytes)
        && let Some(decoded) =
            mail_parser::decoders::quoted_printable::quoted_printable_decode(bytes)
    {
        best = max_reading(
            vocab,
            [best, lines(&decoded, subject_tag, vocab, &mut budget)],
        );
    }
    if budget.lines_left == 0 {
        // Past the budget the lines are no longer read one by one, but every spelling of the
        // vocabulary written out in capitals is still found.
        best = max_reading(vocab, [best, exact_scan(bytes, vocab)]);
    }
    best
}

/// Distinct lines read one by one in a raw scan: past it, [`exact_scan`].
const MAX_LINES_READ: usize = 200_000;

struct Budget {
    lines_left: usize,
}

/// The spellings of the vocabulary that keep or raise the level, written out as they stand
/// (words joined by a space or a hyphen, any case) and, above the ceiling, in capitals, as
/// words of their own; everyday phrases skipped. One linear pass (Aho-Corasick).
pub fn exact_scan(bytes: &[u8], vocab: &Vocabulary) -> Option<Found> {
    let (patterns, levels) = vocab.exact_patterns();
    let finder = aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(&patterns)
        .ok()?;
    let mut best: Option<Found> = None;
    for found in finder.find_iter(bytes) {
        let Some(level) = levels[found.pattern().as_usize()] else {
            continue;
        };
        let (start, end) = (found.start(), found.end());
        let boundary = |b: Option<&u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
        if !boundary(start.checked_sub(1).and_then(|at| bytes.get(at))) || !boundary(bytes.get(end))
        {
            continue;
        }
        let text = &bytes[start..end];
        if vocab.above_ceiling(level) && text.iter().any(u8::is_ascii_lowercase) {
            continue;
        }
        best = max_reading(
            vocab,
            [
                best,
                Some(Found {
                    level,
                    obfuscated: false,
                }),
            ],
        );
    }
    best
}

/// Every line of `bytes` read as a marking line, a marking header, or a `KEY=VALUE` label.
fn lines(
    bytes: &[u8],
    subject_tag: &str,
    vocab: &Vocabulary,
    budget: &mut Budget,
) -> Option<Found> {
    let mut best: Option<Found> = None;
    let mut read = super::SeenLines::default();
    for line in bytes.split(|&b| b == b'\n') {
        let line = &line[..line.len().min(MAX_LINE)];
        if !read.first_time(line) {
            continue;
        }
        if budget.lines_left == 0 {
            break;
        }
        budget.lines_left -= 1;
        let text = String::from_utf8_lossy(line);
        best = max_reading(vocab, [best, line_reading(&text, subject_tag, vocab)]);
        if std::str::from_utf8(line).is_err() {
            // Bytes of a charset we cannot decode: the ASCII letters among them still spell.
            let ascii: String = line
                .iter()
                .filter(|b| b.is_ascii())
                .map(|&b| b as char)
                .collect();
            best = max_reading(vocab, [best, line_reading(&ascii, subject_tag, vocab)]);
        }
    }
    best.filter(|found| !vocab.is_lowering(found.level))
}

fn line_reading(line: &str, subject_tag: &str, vocab: &Vocabulary) -> Option<Found> {
    let folded = fold(line);
    let mut best = generous_line(&folded, vocab, Mode::Resemble)
        .map(|level| Found::checked(vocab, level, || generous_line(line, vocab, Mode::Exact)));
    if let Some((name, value)) = line.split_once(':')
        && MARKING_HEADERS
            .iter()
            .any(|h| name.trim().eq_ignore_ascii_case(h))
    {
        let value = labels::decode_words(value.trim());
        let readings = subject::markings(&value, subject_tag, vocab)
            .into_iter()
            .map(|(found, _)| Some(found))
            .chain(label_readings(&value, vocab));
        best = max_reading(vocab, std::iter::once(best).chain(readings));
    }
    if line.contains('=') {
        best = max_reading(
            vocab,
            std::iter::once(best).chain(label_readings(line, vocab)),
        );
    }
    best.filter(|found| !vocab.is_lowering(found.level))
}

/// A label value anywhere on the line: `SEC=`, `marking=`, `MSIP_Label_…_Name=`.
fn label_readings<'t>(
    text: &'t str,
    vocab: &'t Vocabulary,
) -> impl Iterator<Item = Option<Found>> + 't {
    subject::key_values(text, &[',', ';'])
        .filter(|(key, _)| {
            let lower = key.to_ascii_lowercase();
            lower == "sec"
                || lower == "marking"
                || (lower.starts_with("msip_label_") && lower.ends_with("_name"))
        })
        .map(|(_, value)| labels::value_reading(value.trim_matches('"'), vocab))
}

/// Runs of lines that look like base64 (even with some junk), decoded leniently, and read
/// together in one pass.
fn decode_base64_runs(
    bytes: &[u8],
    subject_tag: &str,
    vocab: &Vocabulary,
    budget: &mut Budget,
) -> Option<Found> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    // Decoded text is read a megabyte at a time: never a second copy of the whole message.
    const CHUNK: usize = 1024 * 1024;
    let mut best = None;
    let mut decoded: Vec<u8> = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    let mut flush = |run: &mut Vec<u8>, decoded: &mut Vec<u8>, last: bool| {
        // Shorter runs are words, not encoded text.
        if run.len() >= 8 {
            run.truncate(run.len() / 4 * 4);
            if let Ok(bytes) = LENIENT.decode(&run) {
                decoded.extend_from_slice(&bytes);
                decoded.push(b'\n');
            }
        }
        run.clear();
        if decoded.len() >= CHUNK || (last && !decoded.is_empty()) {
            best = max_reading(vocab, [best, lines(decoded, subject_tag, vocab, budget)]);
            decoded.clear();
        }
    };
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
        let good = line.iter().filter(|b| alphabet(b) || **b == b'=').count();
        // Mostly base64, no spaces inside (prose has spaces): part of a run.
        if line.len() >= 8 && !line.contains(&b' ') && good * 10 >= line.len() * 9 {
            run.extend(line.iter().filter(|b| alphabet(b)));
            if run.len() >= CHUNK {
                flush(&mut run, &mut decoded, false);
            }
        } else {
            flush(&mut run, &mut decoded, false);
        }
    }
    flush(&mut run, &mut decoded, true);
    best
}

fn looks_quoted_printable(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| {
        w[0] == b'=' && (w[1..].iter().all(u8::is_ascii_hexdigit) || w[1] == b'\r' || w[1] == b'\n')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn level(bytes: &[u8]) -> Option<String> {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        scan(bytes, "[CJSM]", &v).map(|f| v.level(f.level).name.clone())
    }

    #[test]
    fn raw_scan_table() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"Subject: TOP SECRET plan\r\n\r\nbody", Some("TOP SECRET")),
            (
                b"Subject: =?UTF-8?B?VE9QIFNFQ1JFVCBwbGFu?=\r\n\r\nbody",
                Some("TOP SECRET"),
            ),
            (
                b"X-Protective-Marking: VER=2018.4,\r\n SEC=SECRET\r\n\r\n",
                Some("SECRET"),
            ),
            (b"hello\r\nSECRET\r\nbye", Some("SECRET")),
            // base64 of "SECRET\n", with junk inside.
            (
                b"Content-Transfer-Encoding: base64 (x)\r\n\r\nU0VD!UkVUCg==\r\n",
                Some("SECRET"),
            ),
            (b"=53=45=43=52=45=54\r\n", Some("SECRET")),
            (b"S\0E\0C\0R\0E\0T\0\n\0", Some("SECRET")),
            (b"SEC\xffRET\r\n", Some("SECRET")),
            // Lowering never comes from the raw scan.
            (b"Subject: OFFICIAL: x\r\n\r\nOFFICIAL\r\n", None),
            (b"Subject: Secret Santa\r\n\r\nhello", None),
            (b"", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                level(bytes).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn exact_scan_table() {
        let v = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        let level =
            |text: &str| exact_scan(text.as_bytes(), &v).map(|f| v.level(f.level).name.clone());
        assert_eq!(level("xx TOP SECRET yy").as_deref(), Some("TOP SECRET"));
        assert_eq!(level("xx TOP-SECRET yy").as_deref(), Some("TOP SECRET"));
        assert_eq!(level("the secret is out"), None);
        assert_eq!(level("SECRETARY SECRETS"), None);
        assert_eq!(level("the SECRET SANTA draw"), None);
        assert_eq!(
            level("Official-Sensitive").as_deref(),
            Some("OFFICIAL-SENSITIVE")
        );
        assert_eq!(level("OFFICIAL"), None);
    }

    #[test]
    fn hostile_input_is_linear() {
        let lines = b"AAAA".repeat(1 << 20);
        assert_eq!(level(&lines), None);
        let eqs = b"=".repeat(1 << 20);
        assert_eq!(level(&eqs), None);
    }
}
