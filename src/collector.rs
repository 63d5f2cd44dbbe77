//! The message as the MTA hands it over, kept within the configured bounds: what the
//! classifier reads, what the rules count (our own headers, Subjects, From), and, when the
//! message may be encrypted, the whole of it.

use crate::config::Config;
use crate::policy::Recipient;

/// The message as the MTA hands it over, header by header and chunk by chunk, kept within
/// the configured bounds. Headers and body go into one buffer, so the body is held once.
#[derive(Clone)]
pub struct Collector {
    raw: Vec<u8>,
    /// Offset of the body in `raw`, once the headers are complete.
    body_start: Option<usize>,
    headers: usize,
    header_bytes: usize,
    body_bytes: u64,
    /// The first Subject, as it came (kept while within the header bounds).
    pub(crate) subject_raw: Option<Vec<u8>>,
    /// A Subject header came, kept or not: never add a second one.
    pub(crate) subject_present: bool,
    /// The first From, as it came (address translation, and a hub sender's own address).
    pub(crate) from_raw: Option<Vec<u8>>,
    /// From headers that arrived, kept or not.
    pub(crate) from_headers: usize,
    /// The top-level `Content-*` headers, in order (they travel inside an encrypted message).
    content_headers: Vec<(String, Vec<u8>)>,
    /// Every header was kept (within the header bounds).
    headers_whole: bool,
    pub(crate) mime_version_present: bool,
    /// A recipient has a usable certificate: encryption may follow.
    certificates_present: bool,
    /// The whole body is kept (up to `whole_limit`), for encryption.
    keep_whole: bool,
    whole_limit: usize,
    encryption_enabled: bool,
    /// The Subject travels inside an encrypted message (a neutral one replaces it outside).
    subject_inside: bool,
    pub(crate) own_headers: usize,
    pub(crate) route_headers: usize,
    /// Subject headers, and Outlook's copy of the Subject: what a neutral Subject must hide.
    pub(crate) subjects: usize,
    pub(crate) thread_topics: usize,
    pub(crate) limits_exceeded: Vec<String>,
    /// Marking headers past the header bounds, one per line, for the raw scan only.
    pub(crate) overflow: Vec<u8>,
    own_header_name: String,
    route_header_name: Option<String>,
    max_headers: usize,
    max_header_bytes: usize,
    max_scan_bytes: usize,
}

impl Collector {
    pub fn new(config: &Config) -> Collector {
        Collector {
            raw: Vec::new(),
            body_start: None,
            headers: 0,
            header_bytes: 0,
            body_bytes: 0,
            subject_raw: None,
            subject_present: false,
            from_raw: None,
            from_headers: 0,
            content_headers: Vec::new(),
            headers_whole: true,
            mime_version_present: false,
            certificates_present: false,
            keep_whole: false,
            whole_limit: config.encryption.max_message_bytes,
            encryption_enabled: config.encryption.enabled,
            subject_inside: config.encryption.neutral_subject.is_some(),
            own_headers: 0,
            route_headers: 0,
            subjects: 0,
            thread_topics: 0,
            limits_exceeded: Vec::new(),
            overflow: Vec::new(),
            own_header_name: config.marking.header.clone(),
            route_header_name: config.routing.route_header.clone(),
            max_headers: config.limits.max_headers,
            max_header_bytes: config.limits.max_header_bytes,
            max_scan_bytes: config.limits.max_scan_bytes,
        }
    }

    /// A header past the header bounds: a marking header is kept (within `max_scan_bytes`)
    /// for the classifier's raw scan, so that a bound never hides a marking.
    fn keep_overflow(&mut self, name: &[u8], value: &[u8]) {
        const MARKING_HEADERS: &[&[u8]] = &[
            b"Subject",
            b"Thread-Topic",
            b"X-Protective-Marking",
            b"msip_labels",
            b"SIO-Label",
        ];
        let marking = MARKING_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h));
        if !marking || self.overflow.len() + name.len() + value.len() + 4 > self.max_scan_bytes {
            return;
        }
        self.overflow.extend_from_slice(name);
        self.overflow.extend_from_slice(b": ");
        // One line each: folding would split a value over lines of the raw scan.
        self.overflow.extend(
            value
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.overflow.extend_from_slice(b"\n");
    }

    fn exceeded(&mut self, what: String) {
        if !self.limits_exceeded.contains(&what) {
            self.limits_exceeded.push(what);
        }
    }

    /// One header, value without the leading space (as the milter protocol delivers it).
    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        // Count our own header even past the bounds: every forged copy must be removed.
        if name.eq_ignore_ascii_case(self.own_header_name.as_bytes()) {
            self.own_headers += 1;
        }
        if let Some(route_header) = &self.route_header_name
            && name.eq_ignore_ascii_case(route_header.as_bytes())
        {
            self.route_headers += 1;
        }
        if self.body_start.is_some() {
            return;
        }
        let is_subject = name.eq_ignore_ascii_case(b"Subject");
        self.subjects += usize::from(is_subject);
        self.thread_topics += usize::from(name.eq_ignore_ascii_case(b"Thread-Topic"));
        self.from_headers += usize::from(name.eq_ignore_ascii_case(b"From"));
        let first_subject = is_subject && !self.subject_present;
        self.subject_present |= is_subject;
        self.headers += 1;
        self.header_bytes += name.len() + value.len() + 4;
        if self.headers > self.max_headers {
            self.exceeded(format!("more than {} headers", self.max_headers));
            self.headers_whole = false;
            self.keep_overflow(name, value);
            return;
        }
        if self.header_bytes > self.max_header_bytes {
            self.exceeded(format!(
                "headers longer than {} bytes",
                self.max_header_bytes
            ));
            self.headers_whole = false;
            self.keep_overflow(name, value);
            return;
        }
        if name.len() > 8 && name[..8].eq_ignore_ascii_case(b"Content-") {
            self.content_headers
                .push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
        }
        self.mime_version_present |= name.eq_ignore_ascii_case(b"MIME-Version");
        if first_subject {
            self.subject_raw = Some(value.to_vec());
        }
        if self.from_raw.is_none() && name.eq_ignore_ascii_case(b"From") {
            self.from_raw = Some(value.to_vec());
        }
        self.raw.extend_from_slice(name);
        self.raw.extend_from_slice(b": ");
        self.raw.extend_from_slice(value);
        self.raw.extend_from_slice(b"\r\n");
    }

    /// Before the body: when one of the message's recipients has a usable S/MIME
    /// certificate, the message may be encrypted and its whole body is kept (up to
    /// `[encryption] max_message_bytes`).
    pub fn recipients(&mut self, recipients: &[Recipient]) {
        self.certificates_present = recipients.iter().any(|r| r.certificate_pem.is_some());
    }

    /// A chunk of the body; bytes past `max_scan_bytes` are counted, not kept (unless the
    /// message may be encrypted: then up to the encryption bound).
    pub fn body(&mut self, chunk: &[u8]) {
        self.start_body();
        let before = self.body_bytes;
        self.body_bytes += chunk.len() as u64;
        if self.body_bytes > self.max_scan_bytes as u64 && before <= self.max_scan_bytes as u64 {
            self.exceeded(format!("body longer than {} bytes", self.max_scan_bytes));
        }
        let limit = if self.keep_whole {
            self.whole_limit.max(self.max_scan_bytes)
        } else {
            self.max_scan_bytes
        };
        let kept = self.raw.len() - self.body_start.unwrap_or(self.raw.len());
        let room = limit.saturating_sub(kept);
        self.raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    fn start_body(&mut self) {
        if self.body_start.is_none() {
            self.raw.extend_from_slice(b"\r\n");
            self.body_start = Some(self.raw.len());
            // Only a recipient's certificate makes encryption possible: a Subject trigger
            // alone (anyone can write one) does not make us hold the message.
            self.keep_whole = self.encryption_enabled && self.certificates_present;
        }
    }

    /// What the classifier reads: the headers and at most `max_scan_bytes` of the body.
    pub fn scanned(&self) -> &[u8] {
        match self.body_start {
            Some(start) => &self.raw[..self.raw.len().min(start + self.max_scan_bytes)],
            None => &self.raw,
        }
    }

    /// The whole message is held: what [`Collector::whole_entity`] needs, without the copy.
    pub fn is_whole(&self) -> bool {
        self.body_start.is_some_and(|start| {
            self.keep_whole
                && self.headers_whole
                && (self.raw.len() - start) as u64 == self.body_bytes
        })
    }

    /// The MIME entity an encrypted message carries: the message's own content headers (and
    /// its Subject, when a neutral one replaces it outside), a blank line, the whole body.
    /// `None` unless every header and the whole body were kept.
    pub fn whole_entity(&self) -> Option<Vec<u8>> {
        if !self.is_whole() {
            return None;
        }
        let body = &self.raw[self.body_start?..];
        let mut entity = Vec::with_capacity(body.len() + 1024);
        let mut line = |name: &[u8], value: &[u8]| {
            entity.extend_from_slice(name);
            entity.extend_from_slice(b": ");
            // Folded values come with LF or CRLF: the entity is canonical, CRLF.
            for (i, part) in value.split(|&b| b == b'\n').enumerate() {
                if i > 0 {
                    entity.extend_from_slice(b"\r\n");
                }
                entity.extend_from_slice(part.strip_suffix(b"\r").unwrap_or(part));
            }
            entity.extend_from_slice(b"\r\n");
        };
        if self.subject_inside
            && let Some(subject) = &self.subject_raw
        {
            line(b"Subject", subject);
        }
        for (name, value) in &self.content_headers {
            line(name.as_bytes(), value);
        }
        entity.extend_from_slice(b"\r\n");
        entity.extend_from_slice(body);
        Some(entity)
    }

    /// The content header names with how many of each arrived (for their removal).
    pub fn content_header_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for (name, _) in &self.content_headers {
            match counts
                .iter_mut()
                .find(|(seen, _)| seen.eq_ignore_ascii_case(name))
            {
                Some((_, count)) => *count += 1,
                None => counts.push((name.clone(), 1)),
            }
        }
        counts
    }

    /// Marks the end of the headers (the body may be empty).
    pub fn end_of_headers(&mut self) {
        self.start_body();
    }

    /// Every byte held for the classifier: headers, body, and header lines past the bounds.
    pub fn held_bytes(&self) -> u64 {
        (self.raw.len() + self.overflow.len()) as u64
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }
}

/// A Subject's text with RFC 2047 encoded words decoded (mail-parser), bounded by the header
/// bound the raw value already kept.
pub fn decode_subject(raw: &[u8]) -> Option<String> {
    let mut message = b"Subject: ".to_vec();
    message.extend_from_slice(raw);
    message.extend_from_slice(b"\r\n\r\n");
    mail_parser::MessageParser::new()
        .parse_headers(&message)
        .and_then(|m| m.subject().map(str::to_string))
}
