//! The one path every message takes, whether it comes from the MTA through the milter or
//! from a file through `cjsm-milter check`: sender, recipients, collected message, verdict.

use crate::audit::AuditSink;
use crate::config::{Config, ConfigError, Mode};
use crate::marking::{self, Classification, LevelId, Vocabulary};
use crate::policy::{self, DirectoryAnswer, Facts, Recipient, SessionFacts, Verdict, Zone};
use crate::store::{Directory, Lookup, StoreError, normalize_address};
use crate::trust::{self, SenderOutcome};
use std::sync::Arc;

/// A config with everything derived from it: what a session snapshots at its start.
pub struct Engine {
    pub config: Config,
    pub vocab: Vocabulary,
    /// `routing.require_tls_from` as a level (`None`: never).
    pub require_tls_from: Option<LevelId>,
    pub store: Arc<dyn Directory>,
    /// Where the milter records its verdicts (none for `check`).
    pub audit: Option<AuditSink>,
}

impl Engine {
    pub fn new(config: Config, store: Arc<dyn Directory>) -> Result<Engine, ConfigError> {
        let vocab =
            Vocabulary::from_config(&config.marking).map_err(|(key, message)| ConfigError {
                file: None,
                line: None,
                key: Some(key),
                message,
            })?;
        let require_tls_from = match config.routing.require_tls_from.as_str() {
            "" => None,
            name => Some(
                vocab
                    .level_by_name("routing.require_tls_from", name)
                    .map_err(|(key, message)| ConfigError {
                        file: None,
                        line: None,
                        key: Some(key),
                        message,
                    })?,
            ),
        };
        Ok(Engine {
            config,
            vocab,
            require_tls_from,
            store,
            audit: None,
        })
    }

    /// Records verdicts in the audit trail through `sink`.
    pub fn with_audit(mut self, sink: Option<AuditSink>) -> Engine {
        self.audit = sink;
        self
    }

    pub fn enforcing(&self) -> bool {
        self.config.mode == Mode::Enforce
    }

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
    /// the sender's secure address; refused when the verdict says so.
    pub async fn sender(
        &self,
        sender: &str,
        session: &SessionFacts,
    ) -> Result<SenderOutcome, StoreError> {
        let routing = &self.config.routing;
        let address = normalize_address(sender);
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
    /// `accepted` is the number of recipients the message already has.
    pub async fn recipient(
        &self,
        rcpt: &str,
        accepted: usize,
    ) -> Result<(Recipient, Option<Verdict>), StoreError> {
        let address = normalize_address(rcpt);
        let zone = policy::zone(&address, &self.config.routing);
        let as_received = rcpt.trim().to_string();
        if accepted >= self.config.limits.max_recipients {
            let recipient = Recipient {
                address,
                zone,
                directory: DirectoryAnswer::NotAsked,
                deliver_to: None,
                as_received,
            };
            return Ok((recipient, Some(policy::too_many_recipients())));
        }
        let (directory, deliver_to) = if zone == Zone::SecureSuffix {
            let lookup = self.lookup(&address).await?;
            (
                DirectoryAnswer::from_lookup(&lookup),
                trust::delivery_address(&address, &lookup, &self.config.routing),
            )
        } else {
            (DirectoryAnswer::NotAsked, None)
        };
        let recipient = Recipient {
            address,
            zone,
            directory,
            deliver_to,
            as_received,
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
            &message.raw,
            message.limits_exceeded.clone(),
            &self.vocab,
            limits,
            &self.config.routing.subject_tag,
        );
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
        });
        Outcome {
            classification,
            verdict,
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
    pub session: SessionFacts,
}

pub struct Outcome {
    pub classification: Classification,
    pub verdict: Verdict,
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
    /// The first From, as it came (for address translation).
    from_raw: Option<Vec<u8>>,
    own_headers: usize,
    route_headers: usize,
    limits_exceeded: Vec<String>,
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
            own_headers: 0,
            route_headers: 0,
            limits_exceeded: Vec::new(),
            own_header_name: config.marking.header.clone(),
            route_header_name: config.routing.route_header.clone(),
            max_headers: config.limits.max_headers,
            max_header_bytes: config.limits.max_header_bytes,
            max_scan_bytes: config.limits.max_scan_bytes,
        }
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
        let first_subject = is_subject && !self.subject_present;
        self.subject_present |= is_subject;
        self.headers += 1;
        self.header_bytes += name.len() + value.len() + 4;
        if self.headers > self.max_headers {
            self.exceeded(format!("more than {} headers", self.max_headers));
            return;
        }
        if self.header_bytes > self.max_header_bytes {
            self.exceeded(format!(
                "headers longer than {} bytes",
                self.max_header_bytes
            ));
            return;
        }
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

    /// A chunk of the body; bytes past `max_scan_bytes` are counted, not kept.
    pub fn body(&mut self, chunk: &[u8]) {
        self.start_body();
        self.body_bytes += chunk.len() as u64;
        let kept = self.raw.len() - self.body_start.unwrap_or(self.raw.len());
        let room = self.max_scan_bytes.saturating_sub(kept);
        if chunk.len() > room {
            self.exceeded(format!("body longer than {} bytes", self.max_scan_bytes));
        }
        self.raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    fn start_body(&mut self) {
        if self.body_start.is_none() {
            self.raw.extend_from_slice(b"\r\n");
            self.body_start = Some(self.raw.len());
        }
    }

    /// Marks the end of the headers (the body may be empty).
    pub fn end_of_headers(&mut self) {
        self.start_body();
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }
}
