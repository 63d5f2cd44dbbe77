//! The protective-marking classifier: reads every place a marking stands and reports each
//! finding with its source; the highest rank wins. Pure: bytes in, a `Classification` out.

mod body;
mod labels;
mod subject;
mod vocab;

pub use labels::LabelResult;
pub use vocab::{Level, LevelId, Vocabulary};

use crate::config::Limits;
use mail_parser::decoders::html::html_to_text;
use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders, PartType};

/// One marking found in the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: LevelId,
    /// Where it stood: `subject`, `subject-end`, `x-protective-marking`, `msip_labels`,
    /// `sio-label`, `body-first-line`, `body-last-line`; inside an attached message prefixed
    /// with `attachment N/`.
    pub source: String,
}

/// The outcome of classifying one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The effective level.
    pub level: LevelId,
    /// The source of the effective level: a finding's source, `default` (unmarked) or
    /// `limits` (raised to the ceiling because the scan hit a bound).
    pub source: String,
    pub found: Vec<Finding>,
    /// Findings disagree about the level.
    pub conflict: bool,
    /// Bounds the scan hit (empty when the whole message was read).
    pub limits_exceeded: Vec<String>,
    /// Markings stated in a form we could not map (an unknown MSIP label, say).
    pub warnings: Vec<String>,
    /// The first Subject of the message, decoded (RFC 2047) and unfolded.
    pub subject: Option<String>,
}

/// Classifies a message. `limits_exceeded` carries the bounds the collector already hit
/// (e.g. the body was longer than `max_scan_bytes` and only its start is in `raw`).
pub fn classify(
    raw: &[u8],
    mut limits_exceeded: Vec<String>,
    vocab: &Vocabulary,
    limits: &Limits,
    subject_tag: &str,
) -> Classification {
    let mut scan = Scan {
        vocab,
        limits,
        subject_tag,
        found: Vec::new(),
        warnings: Vec::new(),
        limits_exceeded: Vec::new(),
        parts_seen: 0,
    };
    let mut subject = None;
    // The parser promises not to panic; should it break that promise, the message is
    // treated as unreadable (a bound hit: at least the ceiling), not as unmarked.
    let parsed = std::panic::catch_unwind(|| MessageParser::default().parse(raw));
    let parsed = parsed.unwrap_or_else(|_| {
        limits_exceeded.push("the MIME parser failed on this message".into());
        None
    });
    if let Some(message) = parsed {
        subject = message
            .headers()
            .iter()
            .find(|h| h.name == HeaderName::Subject)
            .map(|h| h.value.as_text().unwrap_or_default().to_string());
        scan.message(&message, "", 0);
    }
    limits_exceeded.append(&mut scan.limits_exceeded);

    let highest = scan
        .found
        .iter()
        .max_by_key(|f| vocab.rank(f.level))
        .map(|f| (f.level, f.source.clone()));
    let (mut level, mut source) = match &highest {
        Some((level, source)) => (*level, source.clone()),
        None => (vocab.default, "default".to_string()),
    };
    // A message we could not read whole is never less than the ceiling, and never
    // "unmarked": what we did not read may be marked too.
    let below_ceiling = vocab.rank(level) < vocab.rank(vocab.ceiling);
    if !limits_exceeded.is_empty() && (highest.is_none() || below_ceiling) {
        if below_ceiling {
            level = vocab.ceiling;
        }
        source = "limits".into();
    }
    let conflict = scan.found.iter().any(|f| f.level != scan.found[0].level);
    Classification {
        level,
        source,
        found: scan.found,
        conflict,
        limits_exceeded,
        warnings: scan.warnings,
        subject,
    }
}

struct Scan<'a> {
    vocab: &'a Vocabulary,
    limits: &'a Limits,
    subject_tag: &'a str,
    found: Vec<Finding>,
    warnings: Vec<String>,
    limits_exceeded: Vec<String>,
    parts_seen: usize,
}

impl Scan<'_> {
    fn add(&mut self, prefix: &str, source: &str, level: LevelId) {
        self.found.push(Finding {
            level,
            source: format!("{prefix}{source}"),
        });
    }

    fn label(&mut self, prefix: &str, source: &str, result: LabelResult) {
        match result {
            LabelResult::Level(level) => self.add(prefix, source, level),
            LabelResult::Unrecognised(what) => self.warnings.push(format!("{prefix}{what}")),
        }
    }

    fn message(&mut self, message: &Message, prefix: &str, depth: usize) {
        self.headers(message, prefix);
        let mut attachment = 0;
        for part in &message.parts {
            self.parts_seen += 1;
            if self.parts_seen > self.limits.max_parts {
                self.limits_exceeded
                    .push(format!("more than {} MIME parts", self.limits.max_parts));
                return;
            }
            match &part.body {
                PartType::Text(text) => self.text(text, prefix),
                PartType::Html(html) => self.text(&html_to_text(html), prefix),
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
    }

    fn headers(&mut self, message: &Message, prefix: &str) {
        let raw = message.raw_message();
        for header in message.headers() {
            match &header.name {
                HeaderName::Subject => {
                    let subject = header.value.as_text().unwrap_or_default();
                    for (level, place) in subject::markings(subject, self.subject_tag, self.vocab) {
                        let source = match place {
                            subject::Place::Start => "subject",
                            subject::Place::End => "subject-end",
                        };
                        self.add(prefix, source, level);
                    }
                }
                HeaderName::Other(name) => {
                    let value = || unfold(raw, header.offset_start, header.offset_end);
                    if name.eq_ignore_ascii_case("X-Protective-Marking") {
                        if let Some(r) = labels::x_protective_marking(&value(), self.vocab) {
                            self.label(prefix, "x-protective-marking", r);
                        }
                    } else if name.eq_ignore_ascii_case("msip_labels") {
                        for r in labels::msip_labels(&value(), self.vocab) {
                            self.label(prefix, "msip_labels", r);
                        }
                    }
                }
                HeaderName::SioLabel => {
                    let value = unfold(raw, header.offset_start, header.offset_end);
                    if let Some(r) = labels::sio_label(&value, self.vocab) {
                        self.label(prefix, "sio-label", r);
                    }
                }
                _ => {}
            }
        }
    }

    fn text(&mut self, text: &str, prefix: &str) {
        for (level, line) in body::markings(text, self.vocab) {
            let source = match line {
                body::Line::First => "body-first-line",
                body::Line::Last => "body-last-line",
            };
            self.add(prefix, source, level);
        }
    }
}

/// The raw value of a header with folding removed (no decoding: label headers are ASCII).
fn unfold(raw: &[u8], start: u32, end: u32) -> String {
    let bytes = raw.get(start as usize..end as usize).unwrap_or_default();
    String::from_utf8_lossy(bytes)
        .split(['\r', '\n'])
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MarkingConfig;

    fn classify_str(raw: &str) -> (String, String, Vec<(String, String)>, Classification) {
        let vocab = Vocabulary::from_config(&MarkingConfig::default()).unwrap();
        let c = classify(raw.as_bytes(), vec![], &vocab, &Limits::default(), "[CJSM]");
        let found = c
            .found
            .iter()
            .map(|f| (vocab.level(f.level).name.clone(), f.source.clone()))
            .collect();
        (
            vocab.level(c.level).name.clone(),
            c.source.clone(),
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
            raw,
            vec!["body longer than 1 bytes".into()],
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
        let c = classify(raw.as_bytes(), vec![], &vocab, &limits, "[CJSM]");
        assert_eq!(c.source, "limits");
        assert!(
            c.limits_exceeded[0].contains("MIME parts"),
            "{:?}",
            c.limits_exceeded
        );
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
