//! The protective-marking classifier: reads every place a marking stands and reports each
//! finding with its source; the highest rank wins. Pure: bytes in, a `Classification` out.
//!
//! Evidence is asymmetric: a reading that lowers a message below the default needs the
//! exact form, a reading that keeps or raises it needs only a resemblance (after the text is
//! folded as a reader sees it: `normalize`; and compared word by word: `resemble`).

mod body;
mod bound;
mod html;
mod labels;
mod normalize;
pub mod profile;
mod raw;
mod resemble;
mod subject;
mod vocab;

pub use labels::LabelResult;
pub use normalize::fold;
pub use vocab::{Level, LevelId, Vocabulary};

use crate::config::Limits;
use mail_parser::{
    Encoding, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

/// One reading of one place: its level, and whether it was found only after folding the
/// text or by resemblance (an obfuscated marking: logged and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub level: LevelId,
    pub obfuscated: bool,
}

impl Found {
    /// Read in the exact form.
    pub fn plain(level: LevelId) -> Found {
        Found {
            level,
            obfuscated: false,
        }
    }

    /// Read generously: obfuscated unless `exact` (the same reading without folding or
    /// resemblance) reaches the level too.
    pub fn checked(
        vocab: &Vocabulary,
        level: LevelId,
        exact: impl FnOnce() -> Option<LevelId>,
    ) -> Found {
        let reached = exact().is_some_and(|e| vocab.rank(e) >= vocab.rank(level));
        Found {
            level,
            obfuscated: !reached,
        }
    }
}

/// Lines already read, remembered by hash: hostile input repeats its lines by the million
/// (boundaries, filler), and a line read once need not be read again. Bounded: 64 Ki
/// hashes, about 1 MB; past that, new lines are read without being remembered.
///
/// Hashed with a key of this process (not a fixed one): with a key known in advance, two
/// lines with the same 64-bit hash can be found offline, and the second (a marking) would be
/// skipped as read.
#[derive(Default)]
pub struct SeenLines {
    hashes: std::collections::HashSet<u64>,
    key: std::collections::hash_map::RandomState,
}

impl SeenLines {
    const MAX: usize = 64 * 1024;

    /// True the first time `line` is offered (or when it can no longer be remembered).
    pub fn first_time<T: std::hash::Hash + ?Sized>(&mut self, line: &T) -> bool {
        use std::hash::BuildHasher;
        let hash = self.key.hash_one(line);
        if self.hashes.contains(&hash) {
            return false;
        }
        if self.hashes.len() < Self::MAX {
            self.hashes.insert(hash);
        }
        true
    }
}

/// The highest of some readings; of two at the same level, the plain one.
pub fn max_reading(
    vocab: &Vocabulary,
    readings: impl IntoIterator<Item = Option<Found>>,
) -> Option<Found> {
    readings.into_iter().flatten().reduce(|a, b| {
        match vocab.rank(a.level).cmp(&vocab.rank(b.level)) {
            std::cmp::Ordering::Less => b,
            std::cmp::Ordering::Greater => a,
            std::cmp::Ordering::Equal => Found {
                level: a.level,
                obfuscated: a.obfuscated && b.obfuscated,
            },
        }
    })
}

/// The highest of some levels.
pub fn max_level(
    vocab: &Vocabulary,
    levels: impl IntoIterator<Item = Option<LevelId>>,
) -> Option<LevelId> {
    levels.into_iter().flatten().max_by_key(|&l| vocab.rank(l))
}

/// Where in a message a marking stood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Subject,
    SubjectEnd,
    XProtectiveMarking,
    MsipLabels,
    SioLabel,
    BodyFirstLine,
    BodyLastLine,
    BodyLine,
    /// The scan of the raw bytes.
    RawScan,
}

impl Place {
    /// Its name in the log, the report and the metrics' labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Subject => "subject",
            Place::SubjectEnd => "subject-end",
            Place::XProtectiveMarking => "x-protective-marking",
            Place::MsipLabels => "msip_labels",
            Place::SioLabel => "sio-label",
            Place::BodyFirstLine => "body-first-line",
            Place::BodyLastLine => "body-last-line",
            Place::BodyLine => "body-line",
            Place::RawScan => "raw-scan",
        }
    }
}

/// Where a marking was found: a place of the message, or of a message attached to it
/// (`attachment 1/subject`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The attached message it is in (`attachment 1/`, `attachment 1/attachment 2/`); empty
    /// for the message itself.
    pub within: String,
    pub place: Place,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.within, self.place.as_str())
    }
}

impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Tests and reports compare a source with its text.
impl PartialEq<&str> for Source {
    fn eq(&self, other: &&str) -> bool {
        other
            .strip_prefix(self.within.as_str())
            .is_some_and(|place| place == self.place.as_str())
    }
}

/// What the effective level rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The highest marking found.
    Found(Source),
    /// None found: the unmarked message's level.
    Default,
    /// Raised to the ceiling because the scan hit a bound.
    Limits,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Found(source) => source.fmt(f),
            Origin::Default => f.write_str("default"),
            Origin::Limits => f.write_str("limits"),
        }
    }
}

impl serde::Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Tests and reports compare an origin with its text.
impl PartialEq<&str> for Origin {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Origin::Found(source) => source == other,
            Origin::Default => *other == "default",
            Origin::Limits => *other == "limits",
        }
    }
}

/// One marking found in the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: LevelId,
    pub source: Source,
    /// Found only after normalisation or by resemblance: someone may have tried to hide it.
    pub obfuscated: bool,
}

/// The outcome of classifying one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The effective level.
    pub level: LevelId,
    /// What the effective level rests on.
    pub source: Origin,
    pub found: Vec<Finding>,
    /// Findings disagree about the level.
    pub conflict: bool,
    /// Bounds the scan hit (empty when the whole message was read).
    pub limits_exceeded: Vec<String>,
    /// Why the MIME structure could not be trusted (the raw bytes were scanned too).
    pub ambiguous: Vec<String>,
    /// Markings stated in a form we could not map (an unknown MSIP label, say).
    pub warnings: Vec<String>,
    /// The first Subject of the message, decoded (RFC 2047) and unfolded.
    pub subject: Option<String>,
}

impl Classification {
    /// The findings someone may have tried to hide.
    pub fn obfuscated(&self) -> impl Iterator<Item = &Finding> {
        self.found.iter().filter(|f| f.obfuscated)
    }
}

/// What the classifier reads of one message.
pub struct Input<'a> {
    /// The message: headers and (at most `max_scan_bytes` of) the body.
    pub raw: &'a [u8],
    /// Header lines past the header bounds, kept for the raw scan only.
    pub overflow: &'a [u8],
    /// The bounds the collector already hit (e.g. the body was longer than `max_scan_bytes`
    /// and only its start is in `raw`).
    pub limits_exceeded: Vec<String>,
}

/// Classifies a message.
pub fn classify(
    input: Input,
    vocab: &Vocabulary,
    limits: &Limits,
    subject_tag: &str,
) -> Classification {
    let Input {
        raw,
        overflow,
        mut limits_exceeded,
    } = input;
    let mut scan = Scan {
        vocab,
        limits,
        subject_tag,
        found: Vec::new(),
        warnings: Vec::new(),
        limits_exceeded: Vec::new(),
        ambiguous: Vec::new(),
        parts_seen: 0,
        may_lower: true,
        body_part: None,
        pending_lowering: Vec::new(),
    };
    let mut subject = None;
    // The parser is given only what it can read within the bounds (see `bound`).
    let cut = bound::parser_input_end(raw, limits);
    let parse_input = match &cut {
        Some((end, why)) => {
            limits_exceeded.push(why.clone());
            &raw[..*end]
        }
        None => raw,
    };
    // The parser promises not to panic; should it break that promise, the message is
    // treated as unreadable (a bound hit: at least the ceiling), not as unmarked.
    let parsed = std::panic::catch_unwind(|| MessageParser::default().parse(parse_input));
    let parser_failed = parsed.is_err();
    let parsed = parsed.unwrap_or_else(|_| {
        limits_exceeded.push("the MIME parser failed on this message".into());
        None
    });
    match parsed {
        Some(message) => {
            subject = message
                .headers()
                .iter()
                .find(|h| h.name == HeaderName::Subject)
                .map(|h| h.value.as_text().unwrap_or_default().to_string());
            scan.message(&message, "", 0);
        }
        None => scan
            .ambiguous
            .push("the message could not be parsed".into()),
    }
    // Some malformed structures (attached messages inside a broken multipart) make the parser
    // return a message without the Subject its own header block has, or with another's: the
    // raw scan reads it.
    if subject_lost(parse_input, subject.as_deref()) {
        scan.ambiguous
            .push("the parser lost the message's Subject".into());
    }
    // Where the structured reading skipped part of what it was given (past `max_parts`,
    // below `max_depth`, a parser failure) or cannot be trusted (an ambiguous structure), the
    // raw bytes are scanned too; header lines past the header bounds never reached the parser
    // and are scanned on their own. A bound or a parser differential must not hide a marking.
    // (A body cut at `max_scan_bytes` needs no raw scan: what was kept was read whole.)
    let skipped = !scan.limits_exceeded.is_empty() || parser_failed || cut.is_some();
    let raw_found = if skipped || !scan.ambiguous.is_empty() {
        raw::scan(raw, subject_tag, vocab)
    } else {
        None
    };
    let overflow_found = raw::scan(overflow, subject_tag, vocab);
    if let Some(found) = max_reading(vocab, [raw_found, overflow_found]) {
        scan.add("", Place::RawScan, found);
    }
    limits_exceeded.append(&mut scan.limits_exceeded);

    let highest = scan
        .found
        .iter()
        .max_by_key(|f| vocab.rank(f.level))
        .map(|f| (f.level, f.source.clone()));
    let (mut level, mut source) = match &highest {
        Some((level, source)) => (*level, Origin::Found(source.clone())),
        None => (vocab.default, Origin::Default),
    };
    // A message we could not read whole is never less than the ceiling, and never
    // "unmarked": what we did not read may be marked too.
    let below_ceiling = vocab.rank(level) < vocab.rank(vocab.ceiling);
    if !limits_exceeded.is_empty() && (highest.is_none() || below_ceiling) {
        if below_ceiling {
            level = vocab.ceiling;
        }
        source = Origin::Limits;
    }
    let conflict = scan.found.iter().any(|f| f.level != scan.found[0].level);
    Classification {
        level,
        source,
        found: scan.found,
        conflict,
        limits_exceeded,
        ambiguous: scan.ambiguous,
        warnings: scan.warnings,
        subject,
    }
}

/// Whether the parser's Subject is not the one the message's own header block (up to the
/// first empty line) starts with: missing, or another. Compared by words, as a prefix (the
/// line may be folded), up to the first encoded word or 8-bit byte.
fn subject_lost(raw: &[u8], parsed: Option<&str>) -> bool {
    let mut first_line = None;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
            first_line = Some(&line[8..]);
            break;
        }
    }
    let Some(line) = first_line else {
        return false;
    };
    let Some(parsed) = parsed else {
        return true;
    };
    // The plain ASCII start of the line: the parser decodes what follows (encoded words,
    // 8-bit text) in ways of its own.
    let plain = line
        .iter()
        .enumerate()
        .position(|(i, &b)| !b.is_ascii() || line[i..].starts_with(b"=?"))
        .map_or(line, |end| &line[..end]);
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let raw = words(&String::from_utf8_lossy(plain));
    !words(parsed).starts_with(&raw)
}

struct Scan<'a> {
    vocab: &'a Vocabulary,
    limits: &'a Limits,
    subject_tag: &'a str,
    found: Vec<Finding>,
    warnings: Vec<String>,
    limits_exceeded: Vec<String>,
    ambiguous: Vec<String>,
    parts_seen: usize,
    /// Findings here may lower the message (see [`Scan::add`]).
    may_lower: bool,
    /// The top-level body part being read, if any.
    body_part: Option<u32>,
    /// Lowering findings of the body, by part, until [`Scan::settle_lowering`].
    pending_lowering: Vec<(u32, Finding)>,
}

impl Scan<'_> {
    fn add(&mut self, prefix: &str, place: Place, found: Found) {
        // A lowering marking counts only where it marks this message: its own headers and
        // the body its reader is shown. Not an attached message's, not an attachment, not
        // the text alternative of an HTML message.
        let lowering = self.vocab.is_lowering(found.level);
        if lowering && !self.may_lower {
            return;
        }
        let finding = Finding {
            level: found.level,
            source: Source {
                within: prefix.to_string(),
                place,
            },
            obfuscated: found.obfuscated,
        };
        // In the body, held until every alternative the reader might be shown agrees.
        match self.body_part {
            Some(part) if lowering => self.pending_lowering.push((part, finding)),
            _ => self.found.push(finding),
        }
    }

    fn label(&mut self, prefix: &str, place: Place, result: LabelResult) {
        match result {
            LabelResult::Level(found) => self.add(prefix, place, found),
            LabelResult::Unrecognised(what) => self.warnings.push(format!("{prefix}{what}")),
        }
    }

    fn message(&mut self, message: &Message, prefix: &str, depth: usize) {
        self.may_lower = depth == 0;
        self.body_part = None;
        self.headers(message, prefix);
        let displayed = if message.html_body.is_empty() {
            &message.text_body
        } else {
            &message.html_body
        };
        // The alternatives a reader may be shown: a client shows the HTML, or the text, of
        // a multipart/alternative, whichever it prefers (RFC 2046 says the last it can).
        let mut alternatives: Vec<u32> = message
            .text_body
            .iter()
            .chain(&message.html_body)
            .copied()
            .filter(|&i| {
                message
                    .parts
                    .get(i as usize)
                    .is_some_and(|p| p.attachment_name().is_none())
            })
            .collect();
        alternatives.sort_unstable();
        alternatives.dedup();
        let mut attachment = 0;
        for (index, part) in message.parts.iter().enumerate() {
            // A text part with a file name is an attachment, whatever its disposition.
            self.may_lower = depth == 0
                && displayed.contains(&(index as u32))
                && part.attachment_name().is_none();
            self.body_part = Some(index as u32);
            self.parts_seen += 1;
            if self.parts_seen > self.limits.max_parts {
                self.limits_exceeded
                    .push(format!("more than {} MIME parts", self.limits.max_parts));
                return;
            }
            if let Some(why) = ambiguity(message.raw_message(), part)
                && self.ambiguous.len() < 8
            {
                self.ambiguous.push(format!("{prefix}{why}"));
            }
            match &part.body {
                PartType::Text(text) => {
                    // format=flowed (RFC 3676): soft line breaks join lines for the reader.
                    let flowed = part.content_type().and_then(|ct| {
                        let format = ct.attribute("format")?;
                        format.eq_ignore_ascii_case("flowed").then(|| {
                            ct.attribute("delsp")
                                .is_some_and(|d| d.eq_ignore_ascii_case("yes"))
                        })
                    });
                    match flowed {
                        _ if is_enriched(part) => {
                            // Enriched text: tags as in HTML, and a blank line ends a line.
                            let marked = text.replace("\r\n", "\n").replace("\n\n", "<br>");
                            self.text(body::lent(&html::lines(&marked)), prefix)
                        }
                        Some(delsp) => {
                            let joined = body::unflowed(text, delsp);
                            self.text(body::plain_lines(&joined), prefix);
                        }
                        None => self.text(body::plain_lines(text), prefix),
                    }
                }
                PartType::Html(html) => self.text(body::lent(&html::lines(html)), prefix),
                PartType::Message(inner) => {
                    attachment += 1;
                    if depth + 1 > self.limits.max_depth {
                        self.limits_exceeded.push(format!(
                            "attached messages nested deeper than {}",
                            self.limits.max_depth
                        ));
                    } else {
                        let inner_prefix = format!("{prefix}attachment {attachment}/");
                        self.message(inner, &inner_prefix, depth + 1);
                    }
                }
                PartType::Binary(_) | PartType::InlineBinary(_) => {
                    // The parser leaves an attached message it could not read (too deep or
                    // broken) as bytes: say so rather than treat it as unmarked.
                    let is_message = part
                        .content_type()
                        .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("message"));
                    if is_message {
                        attachment += 1;
                        self.limits_exceeded.push(format!(
                            "{prefix}attachment {attachment} is a message that could not be read"
                        ));
                    }
                }
                PartType::Multipart(_) => {}
            }
        }
        self.body_part = None;
        if depth == 0 {
            self.settle_lowering(&alternatives);
        }
    }

    /// Body findings that lower count only when every alternative the reader may be shown
    /// has one (an HTML part marked OFFICIAL with an unmarked text alternative does not
    /// lower, nor the other way round).
    fn settle_lowering(&mut self, alternatives: &[u32]) {
        let pending = std::mem::take(&mut self.pending_lowering);
        let agreed = !alternatives.is_empty()
            && alternatives
                .iter()
                .all(|part| pending.iter().any(|(p, _)| p == part));
        if agreed {
            self.found
                .extend(pending.into_iter().map(|(_, finding)| finding));
        }
    }

    /// The marking headers of one message (the outer one, or an attached one): read from
    /// the parsed values, so offsets into another message's bytes never matter.
    fn headers(&mut self, message: &Message, prefix: &str) {
        for header in message.headers() {
            match &header.name {
                HeaderName::Subject => {
                    let subject = header.value.as_text().unwrap_or_default();
                    for (found, place) in subject::markings(subject, self.subject_tag, self.vocab) {
                        let place = match place {
                            subject::Place::Start => Place::Subject,
                            subject::Place::End => Place::SubjectEnd,
                        };
                        self.add(prefix, place, found);
                    }
                }
                HeaderName::Other(name) => {
                    if name.eq_ignore_ascii_case("X-Protective-Marking") {
                        if let Some(r) =
                            labels::x_protective_marking(&unfold(&header.value), self.vocab)
                        {
                            self.label(prefix, Place::XProtectiveMarking, r);
                        }
                    } else if name.eq_ignore_ascii_case("msip_labels") {
                        for r in labels::msip_labels(&unfold(&header.value), self.vocab) {
                            self.label(prefix, Place::MsipLabels, r);
                        }
                    }
                }
                HeaderName::SioLabel => {
                    if let Some(r) = labels::sio_label(&unfold(&header.value), self.vocab) {
                        self.label(prefix, Place::SioLabel, r);
                    }
                }
                _ => {}
            }
        }
    }

    fn text<'t>(&mut self, lines: impl Iterator<Item = body::TextLine<'t>> + Clone, prefix: &str) {
        let reading = body::markings(lines, self.vocab);
        if reading.over_budget {
            let bound = format!(
                "more than {} lines of one text read for a marking",
                body::MAX_OTHER_LINES
            );
            if !self.limits_exceeded.contains(&bound) {
                self.limits_exceeded.push(bound);
            }
        }
        for (found, line) in reading.found {
            let place = match line {
                body::Line::First => Place::BodyFirstLine,
                body::Line::Last => Place::BodyLastLine,
                body::Line::Other => Place::BodyLine,
            };
            self.add(prefix, place, found);
        }
    }
}

/// `text/enriched` and `text/richtext` mark text up with tags too (`<bold>SECRET</bold>`).
fn is_enriched(part: &MessagePart) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.subtype().is_some_and(|s| {
            s.eq_ignore_ascii_case("enriched") || s.eq_ignore_ascii_case("richtext")
        })
    })
}

/// A label header's value with folding removed and RFC 2047 encoded words decoded.
fn unfold(value: &HeaderValue) -> String {
    let text = match value {
        HeaderValue::Text(text) => text.as_ref(),
        HeaderValue::TextList(list) => list.first().map_or("", |t| t.as_ref()),
        _ => "",
    };
    let unfolded: String = text.split(['\r', '\n']).collect();
    labels::decode_words(unfolded.trim())
}

/// Why a MIME part's structure cannot be trusted: a mail client may read it otherwise than
/// our parser does.
fn ambiguity(raw: &[u8], part: &MessagePart) -> Option<&'static str> {
    if part.is_encoding_problem {
        return Some("a part could not be decoded");
    }
    let mut content_types = 0;
    let mut encodings = 0;
    for header in &part.headers {
        match header.name {
            HeaderName::ContentType => {
                content_types += 1;
                let HeaderValue::ContentType(ct) = &header.value else {
                    return Some("an invalid Content-Type");
                };
                if ct.c_subtype.is_none() {
                    return Some("a Content-Type without subtype");
                }
                if ct.c_type.eq_ignore_ascii_case("multipart") && ct.attribute("boundary").is_none()
                {
                    return Some("a multipart without boundary");
                }
                if let Some(charset) = ct.attribute("charset")
                    && !known_charset(charset)
                {
                    return Some("a charset that cannot be decoded");
                }
            }
            HeaderName::ContentTransferEncoding => {
                encodings += 1;
                let value = header
                    .value
                    .as_text()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                if !["7bit", "8bit", "binary", "base64", "quoted-printable"]
                    .contains(&value.as_str())
                {
                    return Some("an unknown Content-Transfer-Encoding");
                }
            }
            _ => {}
        }
    }
    if content_types > 1 {
        return Some("two Content-Type headers");
    }
    if encodings > 1 {
        return Some("two Content-Transfer-Encoding headers");
    }
    if part.encoding == Encoding::Base64
        && let Some(body) = raw.get(part.offset_body as usize..part.offset_end as usize)
        && body.iter().any(|&b| !BASE64_TEXT[usize::from(b)])
    {
        return Some("base64 with characters outside its alphabet");
    }
    None
}

/// The bytes a base64 body may hold: its alphabet, padding, line ends and the spaces and
/// dashes mail software leaves. A table: an attachment of megabytes is checked byte by byte.
static BASE64_TEXT: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'+' | b'/' | b'=' | b'\r' | b'\n' | b'\t' | b' ' | b'-');
        b += 1;
    }
    table
};

fn known_charset(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    ["utf-8", "utf8", "us-ascii", "ascii"].contains(&lower.as_str())
        || mail_parser::decoders::charsets::map::charset_decoder(lower.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn input(raw: &[u8], limits_exceeded: Vec<String>) -> Input<'_> {
        Input {
            raw,
            overflow: b"",
            limits_exceeded,
        }
    }

    fn classify_str(raw: &str) -> (String, String, Vec<(String, String)>, Classification) {
        let vocab = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        let c = classify(
            input(raw.as_bytes(), vec![]),
            &vocab,
            &Limits::default(),
            "[CJSM]",
        );
        let found = c
            .found
            .iter()
            .map(|f| (vocab.level(f.level).name.clone(), f.source.to_string()))
            .collect();
        (
            vocab.level(c.level).name.clone(),
            c.source.to_string(),
            found,
            c,
        )
    }

    #[test]
    fn unmarked_takes_the_default() {
        let (label, source, found, c) =
            classify_str("From: a@b\r\nSubject: Secret Santa draw\r\n\r\nHello\r\n");
        assert_eq!(
            (label.as_str(), source.as_str()),
            ("OFFICIAL-SENSITIVE", "default")
        );
        assert!(found.is_empty());
        assert!(!c.conflict);
    }

    #[test]
    fn explicit_official() {
        let (label, source, ..) = classify_str("Subject: OFFICIAL: rota\r\n\r\nHello\r\n");
        assert_eq!((label.as_str(), source.as_str()), ("OFFICIAL", "subject"));
    }

    #[test]
    fn highest_wins_and_conflict_is_reported() {
        let raw = "Subject: OFFICIAL: rota\r\n\
                   X-Protective-Marking: VER=2018.4, NS=gov.au,\r\n SEC=SECRET\r\n\r\n\
                   Hello\r\nOFFICIAL-SENSITIVE\r\n";
        let (label, source, found, c) = classify_str(raw);
        assert_eq!(
            (label.as_str(), source.as_str()),
            ("SECRET", "x-protective-marking")
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(c.conflict);
    }

    #[test]
    fn encoded_folded_subjects_and_several_subject_headers() {
        let raw = "Subject: =?UTF-8?B?T0ZGSUNJQUwtU0VOU0lUSVZFOiBjYXNl?=\r\n\
                   Subject: =?ISO-8859-1?Q?RE=3A_TOP_SECRET_=E9t=E9?=\r\n\r\nbody\r\n";
        let (label, _, found, _) = classify_str(raw);
        assert_eq!(label, "TOP SECRET");
        assert_eq!(
            found,
            vec![
                ("OFFICIAL-SENSITIVE".into(), "subject".into()),
                ("TOP SECRET".into(), "subject".into())
            ]
        );
        let folded = "Subject: RE: OFFICIAL -\r\n SENSITIVE PERSONAL - bail\r\n\r\nx\r\n";
        assert_eq!(classify_str(folded).0, "OFFICIAL-SENSITIVE");
    }

    #[test]
    fn body_html_base64_and_attached_messages() {
        let raw = "Subject: hello\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
            --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
            <p>Dear all</p><p>Thanks</p><p><b>OFFICIAL-SENSITIVE</b></p>\r\n\
            --b1\r\nContent-Type: message/rfc822\r\n\r\n\
            Subject: [SECRET] the original\r\nContent-Type: text/plain\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n\
            UkVTVFJJQ1RFRApoZWxsbwo=\r\n\
            --b1--\r\n";
        let (label, source, found, _) = classify_str(raw);
        assert_eq!(label, "SECRET");
        assert_eq!(source, "attachment 1/subject");
        assert!(
            found.contains(&("OFFICIAL-SENSITIVE".into(), "body-last-line".into())),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                "OFFICIAL-SENSITIVE".into(),
                "attachment 1/body-first-line".into()
            )),
            "{found:?}"
        );
    }

    #[test]
    fn limits_raise_to_the_ceiling_never_unmarked() {
        let vocab = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        let raw = b"Subject: OFFICIAL: big\r\n\r\nstart of a long body";
        let c = classify(
            input(raw, vec!["body longer than 1 bytes".into()]),
            &vocab,
            &Limits::default(),
            "[CJSM]",
        );
        assert_eq!(vocab.level(c.level).name, "OFFICIAL-SENSITIVE");
        assert_eq!(c.source, "limits");

        let limits = Limits {
            max_parts: 2,
            ..Limits::default()
        };
        let raw = "Subject: OFFICIAL: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\n\r\na\r\n--b\r\n\r\nb\r\n--b\r\n\r\nc\r\n--b--\r\n";
        let c = classify(input(raw.as_bytes(), vec![]), &vocab, &limits, "[CJSM]");
        assert_eq!(c.source, "limits");
        assert!(
            c.limits_exceeded[0].contains("MIME parts"),
            "{:?}",
            c.limits_exceeded
        );
    }

    /// The edges where a reading could be cut short: a marking split by a quoted-printable soft
    /// break or an encoded entity, a line cut inside a multibyte character, the last line
    /// after a long run of blank lines, a marking in the middle of a long part, base64 line
    /// ends inside a marking. Each must read as it did when every part was read whole.
    #[test]
    fn window_edges_table() {
        let single = |headers: &str, body: &str| {
            format!("Subject: x\r\nMIME-Version: 1.0\r\n{headers}\r\n{body}")
        };
        let qp = "Content-Type: text/plain; charset=utf-8\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n";
        let qp_html = "Content-Type: text/html; charset=utf-8\r\n\
                       Content-Transfer-Encoding: quoted-printable\r\n";
        let b64 = "Content-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: base64\r\n";
        let plain = "Content-Type: text/plain; charset=utf-8\r\n";
        let html = "Content-Type: text/html; charset=utf-8\r\n";
        let prose = "The statement was taken on Tuesday and is attached for counsel.\r\n";
        let long_prose = prose.repeat(20_000);
        let blank_run = "\r\n \t \r\n".repeat(50_000);
        let unicode_blank_run = "\u{A0}\u{2003}\r\n\u{200B}\r\n".repeat(20_000);
        let multibyte_cut = format!("{}é{}", "a".repeat(4095), "é".repeat(10));
        let base64_lines = |text: &str| {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            // Lines of 10: the marking's bytes fall across line ends.
            encoded
                .as_bytes()
                .chunks(10)
                .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
                .collect::<String>()
        };
        let cases: Vec<(String, &str, &str)> = vec![
            // A soft line break inside the marking of the last line: the reader sees one word.
            (
                single(qp, "Dear Sir\r\nOFFICIAL-SEN=\r\nSITIVE\r\n"),
                "OFFICIAL-SENSITIVE",
                "body-last-line",
            ),
            (
                single(qp, "Dear Sir\r\nTOP SE=\r\nCRET\r\n"),
                "TOP SECRET",
                "body-last-line",
            ),
            (
                single(qp, "OFFI=\r\nCIAL\r\n\r\nDear Sir\r\n"),
                "OFFICIAL",
                "body-first-line",
            ),
            // An escaped byte of a multibyte character split by a soft break.
            (
                single(qp, "Dear Sir\r\nSE=E2=80=\r\n=8BCRET\r\n"),
                "SECRET",
                "body-last-line",
            ),
            // A character reference in HTML cut by a soft break, hiding a zero-width space.
            (
                single(qp_html, "<p>Dear Sir</p><p>SE&#82=\r\n03;CRET</p>\r\n"),
                "SECRET",
                "body-last-line",
            ),
            (
                single(qp_html, "<p>Dear Sir</p><p>SE&shy=\r\n;CRET</p>\r\n"),
                "SECRET",
                "body-last-line",
            ),
            (
                single(html, "<p>Dear Sir</p><p>&#83;&#x45;CRET</p>\r\n"),
                "SECRET",
                "body-last-line",
            ),
            // A line cut (4096 bytes kept) inside a multibyte character: the next line counts.
            (
                single(html, &format!("<p>{multibyte_cut}</p><p>SECRET</p>\r\n")),
                "SECRET",
                "body-last-line",
            ),
            (
                single(plain, &format!("{multibyte_cut}\r\nSECRET\r\n")),
                "SECRET",
                "body-last-line",
            ),
            // The last non-blank line after a long run of blank lines and whitespace.
            (
                single(plain, &format!("Dear Sir\r\nOFFICIAL\r\n{blank_run}")),
                "OFFICIAL",
                "body-last-line",
            ),
            (
                single(plain, &format!("Dear Sir\r\nSECRET\r\n{unicode_blank_run}")),
                "SECRET",
                "body-last-line",
            ),
            (
                single(
                    html,
                    &format!(
                        "<p>Dear Sir</p><p>OFFICIAL</p>{}",
                        "<p>&nbsp;</p>\r\n".repeat(20_000)
                    ),
                ),
                "OFFICIAL",
                "body-last-line",
            ),
            // A marking in the middle of a long part, far from both ends: still read.
            (
                single(
                    plain,
                    &format!("Dear Sir\r\n{long_prose}SECRET\r\n{long_prose}Regards\r\n"),
                ),
                "SECRET",
                "body-line",
            ),
            (
                single(
                    qp,
                    &format!("Dear Sir\r\n{long_prose}TOP SE=\r\nCRET\r\n{long_prose}Regards\r\n"),
                ),
                "TOP SECRET",
                "body-line",
            ),
            // base64 line ends inside the marking, first and last.
            (
                single(b64, &base64_lines("OFFICIAL\r\nDear Sir\r\n")),
                "OFFICIAL",
                "body-first-line",
            ),
            (
                single(
                    b64,
                    &base64_lines(&format!("Dear Sir\r\n{prose}SECRET\r\n")),
                ),
                "SECRET",
                "body-last-line",
            ),
            // Line ends other than CRLF, as a quoted-printable text writes them.
            (
                single(qp, "Hello=E2=80=A8SECRET=E2=80=A9Bye\r\n"),
                "SECRET",
                "body-line",
            ),
        ];
        for (raw, level, source) in cases {
            let (label, got, found, _) = classify_str(&raw);
            let head: String = raw.chars().take(160).collect();
            assert_eq!(label, level, "{head:?}: {found:?}");
            assert_eq!(got, source, "{head:?}: {found:?}");
        }
    }

    #[test]
    fn msip_and_sio_headers() {
        let raw = "Subject: x\r\n\
            msip_labels: MSIP_Label_abc_Enabled=true;\r\n MSIP_Label_abc_Name=OFFICIAL\r\n\
            SIO-Label: marking=\"CONFIDENTIAL\"; type=\":ess\"\r\n\r\nbody\r\n";
        let (label, source, found, _) = classify_str(raw);
        assert_eq!(
            (label.as_str(), source.as_str()),
            ("CONFIDENTIAL", "sio-label")
        );
        assert_eq!(found[0], ("OFFICIAL".into(), "msip_labels".into()));
    }

    #[test]
    fn unknown_msip_label_is_a_warning() {
        let raw = "Subject: x\r\nmsip_labels: MSIP_Label_abc_Enabled=true; MSIP_Label_abc_Name=General\r\n\r\nb\r\n";
        let (_, source, _, c) = classify_str(raw);
        assert_eq!(source, "default");
        assert_eq!(c.warnings.len(), 1);
    }
}
