//! The one path every message takes, whether it comes from the MTA through the milter or
//! from a file through `cjsm-milter check`: sender, recipients, collected message, verdict.

use crate::address::{self, EnvelopeAddress, Role};
use crate::config::Config;
use crate::engine::Engine;
use crate::marking::{self, Classification};
use crate::policy::{self, DirectoryAnswer, Edit, Facts, Recipient, SessionFacts, Verdict, Zone};
use crate::smime;
use crate::store::{Lookup, StoreError, normalize_address, now_unix};
use crate::trust::{self, SenderOutcome};

impl Engine {
    async fn lookup(&self, address: &str) -> Result<Lookup, StoreError> {
        let lookup = self.store.lookup(&normalize_address(address)).await?;
        // A user whose organisation record has gone is broken data, not a verdict: tempfail.
        if let (Some(user), None) = (&lookup.user, &lookup.org) {
            return Err(StoreError::Corrupt {
                path: "directory".into(),
                message: format!("{}: organisation {} is missing", user.address, user.org),
            });
        }
        Ok(lookup)
    }

    /// MAIL stage: who the sender is, by the session's facts and the directory's answer for
    /// the sender's secure address; refused when the verdict says so. `raw` is the MAIL
    /// argument, `reported` what the MTA made of it (`{mail_addr}`; `None` from `check`):
    /// the address judged is the one the MTA will use ([`address::as_the_mta_uses`]).
    pub async fn sender(
        &self,
        raw: &str,
        reported: Option<&str>,
        session: &SessionFacts,
    ) -> Result<SenderOutcome, StoreError> {
        let routing = &self.config.routing;
        let address = match address::as_the_mta_uses(raw, reported, Role::Sender) {
            Ok(address) => address.as_str().to_string(),
            Err(verdict) => {
                return Ok(SenderOutcome {
                    verdict: Some(*verdict),
                    trust: "none",
                    translated: None,
                    address: bounded(raw),
                });
            }
        };
        let zone = policy::zone(&address, routing);
        let lookup = if address.contains('@') {
            let secure = trust::secure_form(&address, zone, &routing.secure_suffix);
            self.lookup(&secure).await?
        } else {
            Lookup::default()
        };
        Ok(trust::sender_outcome(
            &address, zone, &lookup, session, routing,
        ))
    }

    /// RCPT stage: the recipient with the directory's answer, and a verdict when refused.
    /// `raw` is the RCPT argument and `reported` what the MTA made of it (`{rcpt_addr}`;
    /// `None` from `check`); `accepted` is the number of recipients the message already has;
    /// `sender` and `sender_trust` are the MAIL stage's [`SenderOutcome::address`] and
    /// [`SenderOutcome::trust`] in this `session` (the closed community).
    pub async fn recipient(
        &self,
        raw: &str,
        reported: Option<&str>,
        accepted: usize,
        (sender, sender_trust): (&str, &'static str),
        session: &SessionFacts,
    ) -> Result<(Recipient, Option<Verdict>), StoreError> {
        let routing = &self.config.routing;
        let as_received = raw.trim().to_string();
        let judged = address::as_the_mta_uses(raw, reported, Role::Recipient);
        let address = match &judged {
            Ok(address) => address.as_str().to_string(),
            Err(_) => bounded(raw),
        };
        let zone = policy::zone(&address, routing);
        let unchecked = |address: String| Recipient {
            address,
            zone,
            directory: DirectoryAnswer::NotAsked,
            deliver_to: None,
            as_received: as_received.clone(),
            certificate: None,
            certificate_pem: None,
        };
        if accepted >= self.config.limits.max_recipients {
            return Ok((unchecked(address), Some(policy::too_many_recipients())));
        }
        let judged = match judged {
            Ok(judged) => judged,
            Err(verdict) => return Ok((unchecked(address), Some(*verdict))),
        };
        // A bare user name is completed by the MTA with a domain of its own choosing (Postfix:
        // `myorigin`, which on a hub may be under the secure suffix): only the hub's own hosts
        // may use one.
        if let EnvelopeAddress::Unqualified(_) = judged
            && trust::network(session.client_addr, routing) != trust::Network::Trusted
        {
            return Ok((unchecked(address), Some(address::not_qualified(raw))));
        }
        // Before the directory is asked: an outsider learns nothing of who is a hub user.
        if let Some(verdict) =
            trust::closed_community_verdict(&address, zone, sender, sender_trust, session, routing)
        {
            return Ok((unchecked(address), Some(verdict)));
        }
        // Hub addresses are looked up for their state; an address without a secure route for
        // its S/MIME certificate, when encryption is on.
        let lookup = if zone == Zone::SecureSuffix
            || (zone == Zone::Other && self.config.encryption.enabled)
        {
            Some(self.lookup(&address).await?)
        } else {
            None
        };
        let (directory, deliver_to) = match (&lookup, zone) {
            (Some(lookup), Zone::SecureSuffix) => (
                DirectoryAnswer::from_lookup(lookup),
                trust::delivery_address(&address, lookup, &self.config.routing),
            ),
            _ => (DirectoryAnswer::NotAsked, None),
        };
        let (certificate, certificate_pem) = match lookup.and_then(|l| l.certificate) {
            Some(cert) => {
                let validity = smime::cert::validity(cert.not_before, cert.not_after, now_unix());
                let pem = (validity == smime::cert::Validity::Valid).then(|| cert.pem.into());
                (Some(validity), pem)
            }
            None => (None, None),
        };
        let recipient = Recipient {
            address,
            zone,
            directory,
            deliver_to,
            as_received,
            certificate,
            certificate_pem,
        };
        let verdict = policy::recipient_verdict(&recipient);
        Ok((recipient, verdict))
    }

    /// End of message: classify the collected message and decide. Pure and synchronous, so
    /// the milter can run it off the I/O threads under its deadline.
    pub fn end_of_message(
        &self,
        envelope: &Envelope,
        recipients: &[Recipient],
        message: &Collector,
    ) -> Outcome {
        let limits = &self.config.limits;
        let classification = marking::classify(
            marking::Input {
                raw: message.scanned(),
                overflow: &message.overflow,
                limits_exceeded: message.limits_exceeded.clone(),
            },
            &self.vocab,
            limits,
            &self.config.routing.subject_tag,
        );
        // A hub sender writes as itself, whatever the marking.
        if trust::hub_sender(envelope.sender_trust)
            && let Some(verdict) = trust::from_verdict(
                &envelope.sender,
                envelope.sender_translation.as_deref(),
                message.from_headers,
                message.from_raw.as_deref(),
            )
        {
            return Outcome {
                classification,
                verdict,
                error: None,
            };
        }
        // Policy reads "" as no trigger.
        let trigger = self
            .config
            .encryption
            .trigger
            .as_deref()
            .unwrap_or_default();
        let verdict = policy::decide(&Facts {
            vocab: &self.vocab,
            routing: &self.config.routing,
            on_exceeded: limits.on_exceeded,
            marking_header: &self.config.marking.header,
            recipients,
            classification: &classification,
            subject_present: message.subject_present,
            subject_raw: message.subject_raw.as_deref(),
            subject_decoded: classification.subject.as_deref(),
            own_headers_present: message.own_headers,
            route_headers_present: message.route_headers,
            require_tls_from: self.require_tls_from,
            inbound_protected: envelope.session.tls_version.is_some()
                || trust::network(envelope.session.client_addr, &self.config.routing)
                    != trust::Network::Other,
            sender_translation: envelope
                .sender_translation
                .as_deref()
                .map(|secure| (envelope.sender.as_str(), secure)),
            from_raw: message.from_raw.as_deref(),
            encryption: policy::EncryptionFacts {
                enabled: self.config.encryption.enabled,
                requested: policy::encryption_requested(
                    message.subject_raw.as_deref(),
                    classification.subject.as_deref(),
                    trigger,
                ),
                trigger,
                whole: message.is_whole(),
                neutral_subject: self
                    .config
                    .encryption
                    .neutral_subject
                    .as_deref()
                    .unwrap_or_default(),
            },
        });
        let mut error = None;
        let verdict = if verdict.encrypt_for.is_empty() {
            verdict
        } else {
            match self.encrypt(verdict, recipients, message) {
                Ok(verdict) => verdict,
                Err(e) => {
                    error = Some(format!("encryption failed: {e}"));
                    Verdict::tempfail("encryption-error")
                }
            }
        };
        Outcome {
            classification,
            verdict,
            error,
        }
    }
}

/// The envelope facts an end-of-message decision needs besides the recipients.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    /// The envelope sender, normalised.
    pub sender: String,
    /// The secure address the sender is translated to, if any.
    pub sender_translation: Option<String>,
    /// How the sender was recognised at MAIL ([`SenderOutcome::trust`]).
    pub sender_trust: &'static str,
    pub session: SessionFacts,
}

/// An address as the client sent it, bounded for the log and the audit trail.
fn bounded(raw: &str) -> String {
    normalize_address(&raw.chars().take(300).collect::<String>())
}

impl Engine {
    /// The verdict's encryption carried out: the entity (the message's own content headers
    /// and whole body) encrypted for the recipients' certificates and the escrow certificate,
    /// and the edits that put it in place of the body.
    fn encrypt(
        &self,
        mut verdict: Verdict,
        recipients: &[Recipient],
        message: &Collector,
    ) -> Result<Verdict, String> {
        let entity = message
            .whole_entity()
            .ok_or("the message was not held whole")?;
        let mut certificates: Vec<&str> = recipients
            .iter()
            .filter(|r| verdict.encrypt_for.contains(&r.address))
            .filter_map(|r| r.certificate_pem.as_deref())
            .collect();
        if let Some(escrow) = &self.escrow {
            if now_unix() > escrow.not_after {
                return Err(format!(
                    "the escrow certificate (encryption.escrow_certificate) expired on {}",
                    smime::cert::date(escrow.not_after)
                ));
            }
            certificates.push(&escrow.pem);
        }
        let cipher = self.config.encryption.cipher;
        let der = smime::encrypt::encrypt(&entity, &certificates, cipher)?;
        drop(entity);
        let edits = &mut verdict.edits;
        // The message's own content headers travel inside.
        for (name, count) in message.content_header_counts() {
            edits.extend(Edit::delete_copies(&name, 1, count));
        }
        // A neutral Subject replaces the first Subject (the policy's edit): the real one
        // travels inside, so no other copy of it stays outside.
        if self.config.encryption.neutral_subject.is_some() {
            edits.extend(Edit::delete_copies("Subject", 2, message.subjects));
            edits.extend(Edit::delete_copies(
                "Thread-Topic",
                1,
                message.thread_topics,
            ));
        }
        if !message.mime_version_present {
            edits.push(Edit::AddHeader {
                name: "MIME-Version".into(),
                value: "1.0".into(),
            });
        }
        for (name, value) in smime::encrypt::headers(cipher) {
            edits.push(Edit::AddHeader {
                name: name.into(),
                value,
            });
        }
        edits.push(Edit::ReplaceBody {
            body: smime::encrypt::base64_lines(&der),
        });
        crate::metrics::metrics().messages_encrypted.inc();
        Ok(verdict)
    }
}

pub struct Outcome {
    pub classification: Classification,
    pub verdict: Verdict,
    /// What went wrong when the verdict is a tempfail for an internal error (logged by the
    /// caller, with the queue ID).
    pub error: Option<String>,
}

/// The message as the MTA hands it over, header by header and chunk by chunk, kept within
/// the configured bounds. Headers and body go into one buffer, so the body is held once.
pub struct Collector {
    raw: Vec<u8>,
    /// Offset of the body in `raw`, once the headers are complete.
    body_start: Option<usize>,
    headers: usize,
    header_bytes: usize,
    body_bytes: u64,
    /// The first Subject, as it came (kept while within the header bounds).
    subject_raw: Option<Vec<u8>>,
    /// A Subject header came, kept or not: never add a second one.
    subject_present: bool,
    /// The first From, as it came (address translation, and a hub sender's own address).
    from_raw: Option<Vec<u8>>,
    /// From headers that arrived, kept or not.
    from_headers: usize,
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
    own_headers: usize,
    route_headers: usize,
    /// Subject headers, and Outlook's copy of the Subject: what a neutral Subject must hide.
    subjects: usize,
    thread_topics: usize,
    limits_exceeded: Vec<String>,
    /// Marking headers past the header bounds, one per line, for the raw scan only.
    pub(crate) overflow: Vec<u8>,
    own_header_name: String,
    route_header_name: String,
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
            route_header_name: config.routing.route_header.clone().unwrap_or_default(),
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
        if !self.route_header_name.is_empty()
            && name.eq_ignore_ascii_case(self.route_header_name.as_bytes())
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
