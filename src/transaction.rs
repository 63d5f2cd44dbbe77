//! One SMTP transaction, MAIL to end of message, as the rules see it: the one type both the
//! milter and `cjsm-milter check` drive, step by step. Each step says what to answer.
//!
//! - `mail`: who the sender is; a refused sender ends the transaction (in report mode it goes
//!   on, and the refusal is only reported).
//! - `rcpt`: each recipient, refused or kept; past `limits.max_recipients` every recipient is
//!   refused with a tempfail, in report mode too (the bound protects the milter, it is not
//!   policy).
//! - `header`, `end_of_headers`, `body`: the message collected within its bounds.
//! - `finish`: the marking and the verdict, encryption carried out when the verdict asks for it.
//!
//! The transaction asks the directory through [`Lookups`] and encrypts through [`Encryptor`]:
//! the shell answers both (the store, OpenSSL), so the transaction itself does no I/O.

use crate::address::{self, EnvelopeAddress, Role};
use crate::collector::Collector;
use crate::marking::{self, Classification};
use crate::policy::client::{Network, network};
use crate::policy::encryption::{Validity, requested};
use crate::policy::message::decide;
use crate::policy::recipient::{
    closed_community_verdict, delivery_address, not_qualified, recipient_verdict,
    too_many_recipients,
};
use crate::policy::sender::{SenderOutcome, from_verdict, secure_form, sender_outcome};
use crate::policy::{
    Delivery, DirectoryAnswer, Edit, Listing, MessageFacts, Reason, Recipient, Rules, SessionFacts,
    Trust, Verdict, Zone, not_plain, zone,
};
use std::future::Future;

/// What the transaction asks of the directory: the listing of one address (lower-case).
pub trait Lookups: Sync {
    type Error;
    fn listing(&self, address: &str) -> impl Future<Output = Result<Listing, Self::Error>> + Send;
}

/// What encryption hands back: the headers of the S/MIME entity and its body (base64 lines).
pub struct Encrypted {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Encrypts a MIME entity for the recipients' certificates (PEM) and whatever the shell adds
/// (the escrow certificate).
pub trait Encryptor {
    fn encrypt(&self, entity: &[u8], certificates: &[&str]) -> Result<Encrypted, EncryptError>;
}

/// Why a message could not be encrypted; the message is tempfailed.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error("the message was not held whole")]
    NotWhole,
    #[error("the escrow certificate (encryption.escrow_certificate) expired on {0}")]
    EscrowExpired(String),
    #[error("{0}")]
    Cms(Box<dyn std::error::Error + Send + Sync>),
}

impl EncryptError {
    /// The reason of the tempfail it causes.
    pub fn reason(&self) -> Reason {
        Reason::EncryptionError
    }
}

/// What a step answers the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Go on.
    Continue,
    /// Refused: the reply to send now.
    Refuse(Verdict),
    /// Would be refused, but report mode only records it: go on.
    Report(Verdict),
}

/// A recipient refused at RCPT (in report mode: that would have been).
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The address as judged (the argument, bounded, when it is not a plain address).
    pub address: String,
    pub verdict: Verdict,
}

/// One transaction: the session's facts, the sender, the recipients and the message.
#[derive(Clone)]
pub struct Transaction {
    pub session: SessionFacts,
    pub sender: SenderOutcome,
    /// The recipients the message goes to (in report mode, refused ones too).
    pub recipients: Vec<Recipient>,
    /// The recipients refused at RCPT.
    pub refused: Vec<Refusal>,
    pub collector: Collector,
    enforcing: bool,
}

/// The end of a transaction.
pub struct Outcome {
    pub classification: Classification,
    /// The verdict for the message as collected.
    pub verdict: Verdict,
    /// Why the verdict is a tempfail for an internal error (logged by the caller, with the
    /// queue ID).
    pub error: Option<EncryptError>,
    /// What the MTA does with the transaction: a refused sender ends it at MAIL, and with
    /// every recipient refused there is no DATA; otherwise the verdict.
    pub decision: Verdict,
    /// What is applied: the decision, or in report mode the message unchanged.
    pub applied: Verdict,
}

impl Transaction {
    /// MAIL: who the sender is, by the session's facts and the directory's answer for the
    /// sender's secure address. `raw` is the MAIL argument, `reported` what the MTA made of it
    /// (`{mail_addr}`; `None` from `check`): the address judged is the one the MTA will use
    /// ([`address::as_the_mta_uses`]).
    pub async fn mail<L: Lookups>(
        rules: &Rules,
        lookups: &L,
        raw: &str,
        reported: Option<&str>,
        session: SessionFacts,
    ) -> Result<(Transaction, Answer), L::Error> {
        let sender = sender(rules, lookups, raw, reported, &session).await?;
        let answer = answer(rules, sender.verdict.clone());
        let transaction = Transaction {
            session,
            sender,
            recipients: Vec::new(),
            refused: Vec::new(),
            collector: Collector::new(&rules.config),
            enforcing: rules.enforcing(),
        };
        Ok((transaction, answer))
    }

    /// RCPT: the recipient with the directory's answer, kept or refused. `raw` is the RCPT
    /// argument and `reported` what the MTA made of it (`{rcpt_addr}`; `None` from `check`).
    pub async fn rcpt<L: Lookups>(
        &mut self,
        rules: &Rules,
        lookups: &L,
        raw: &str,
        reported: Option<&str>,
    ) -> Result<Answer, L::Error> {
        let (recipient, refused) = self.recipient(rules, lookups, raw, reported).await?;
        let Some(verdict) = refused else {
            self.recipients.push(recipient);
            return Ok(Answer::Continue);
        };
        self.refused.push(Refusal {
            address: recipient.address.clone(),
            verdict: verdict.clone(),
        });
        // The recipient bound holds in report mode too: it protects the milter.
        if verdict.reason() == Reason::TooManyRecipients {
            return Ok(Answer::Refuse(verdict));
        }
        if !self.enforcing {
            // Report mode: the recipient stays; the verdict is only reported.
            self.recipients.push(recipient);
        }
        Ok(answer(rules, Some(verdict)))
    }

    /// One header, value without the leading space (as the milter protocol delivers it).
    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        self.collector.header(name, value);
    }

    /// The end of the headers: from here the body is kept whole when a recipient has a usable
    /// certificate (the message may be encrypted).
    pub fn end_of_headers(&mut self) {
        self.collector.recipients(&self.recipients);
        self.collector.end_of_headers();
    }

    /// A chunk of the body.
    pub fn body(&mut self, chunk: &[u8]) {
        self.collector.body(chunk);
    }

    /// End of message: classify the collected message and decide; encrypt when the verdict
    /// says so. Pure CPU work (and the encryptor's), so the milter can run it off the I/O
    /// threads under its deadline.
    pub fn finish(&self, rules: &Rules, encryptor: &impl Encryptor) -> Outcome {
        let message = &self.collector;
        let classification = marking::classify(
            marking::Input {
                raw: message.scanned(),
                overflow: &message.overflow,
                limits_exceeded: message.limits_exceeded.clone(),
            },
            &rules.vocab,
            &rules.config.limits,
            &rules.routing().subject_tag,
        );
        let verdict = self.verdict(rules, &classification);
        let encrypted = match verdict {
            Verdict::Deliver(delivery) if !delivery.encrypt_for.is_empty() => self
                .encrypt(rules, delivery, encryptor)
                .map(Verdict::Deliver),
            verdict => Ok(verdict),
        };
        let (verdict, error) = match encrypted {
            Ok(verdict) => (verdict, None),
            Err(e) => (Verdict::tempfail(e.reason()), Some(e)),
        };
        let decision = match (&self.sender.verdict, self.recipients.is_empty()) {
            (Some(refused), _) => refused.clone(),
            (None, true) => self
                .refused
                .first()
                .map_or_else(|| verdict.clone(), |r| r.verdict.clone()),
            (None, false) => verdict.clone(),
        };
        let applied = if self.enforcing {
            decision.clone()
        } else {
            Verdict::report_only()
        };
        Outcome {
            classification,
            verdict,
            error,
            decision,
            applied,
        }
    }

    /// The verdict for the message as collected: a hub sender writes as itself, whatever the
    /// marking; then the message rules.
    fn verdict(&self, rules: &Rules, classification: &Classification) -> Verdict {
        let message = &self.collector;
        let sender = &self.sender;
        if sender.trust.is_hub_user()
            && let Some(refused) = from_verdict(
                &sender.address,
                sender.translated.as_deref(),
                message.from_headers,
                message.from_raw.as_deref(),
            )
        {
            return refused;
        }
        let subject_raw = message.subject_raw.as_deref();
        let facts = MessageFacts {
            recipients: &self.recipients,
            classification,
            subject_present: message.subject_present,
            subject_raw,
            own_headers_present: message.own_headers,
            route_headers_present: message.route_headers,
            inbound_protected: self.session.tls_version.is_some()
                || network(self.session.client_addr, rules.routing()) != Network::Other,
            sender_translation: sender
                .translated
                .as_deref()
                .map(|secure| (sender.address.as_str(), secure)),
            from_raw: message.from_raw.as_deref(),
            encryption_requested: requested(
                subject_raw,
                classification.subject.as_deref(),
                rules.config.encryption.trigger.as_deref(),
            ),
            whole: message.is_whole(),
        };
        decide(rules, &facts)
    }

    /// The verdict's encryption carried out: the entity (the message's own content headers
    /// and whole body) encrypted for the recipients' certificates, and the edits that put it
    /// in place of the body.
    fn encrypt(
        &self,
        rules: &Rules,
        mut delivery: Delivery,
        encryptor: &impl Encryptor,
    ) -> Result<Delivery, EncryptError> {
        let message = &self.collector;
        let entity = message.whole_entity().ok_or(EncryptError::NotWhole)?;
        let certificates: Vec<&str> = self
            .recipients
            .iter()
            .filter(|r| delivery.encrypt_for.contains(&r.address))
            .filter_map(|r| r.certificate_pem.as_deref())
            .collect();
        let encrypted = encryptor.encrypt(&entity, &certificates)?;
        drop(entity);
        let edits = &mut delivery.edits;
        // The message's own content headers travel inside.
        for (name, count) in message.content_header_counts() {
            edits.extend(Edit::delete_copies(&name, 1, count));
        }
        // A neutral Subject replaces the first Subject (the policy's edit): the real one
        // travels inside, so no other copy of it stays outside.
        if rules.config.encryption.neutral_subject.is_some() {
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
        for (name, value) in encrypted.headers {
            edits.push(Edit::AddHeader { name, value });
        }
        edits.push(Edit::ReplaceBody {
            body: encrypted.body,
        });
        Ok(delivery)
    }

    /// RCPT's rules for one recipient: the recipient with what is known of it, and a verdict
    /// when refused. `self.recipients` is what the message already has.
    async fn recipient<L: Lookups>(
        &self,
        rules: &Rules,
        lookups: &L,
        raw: &str,
        reported: Option<&str>,
    ) -> Result<(Recipient, Option<Verdict>), L::Error> {
        let routing = rules.routing();
        let as_received = raw.trim().to_string();
        let judged = address::as_the_mta_uses(raw, reported, Role::Recipient);
        let address = match &judged {
            Ok(address) => address.as_str().to_string(),
            Err(_) => bounded(raw),
        };
        let zone = zone(&address, routing);
        let unchecked = |address: String| Recipient {
            address,
            zone,
            directory: DirectoryAnswer::NotAsked,
            deliver_to: None,
            as_received: as_received.clone(),
            certificate: None,
            certificate_pem: None,
        };
        if self.recipients.len() >= rules.config.limits.max_recipients {
            return Ok((unchecked(address), Some(too_many_recipients())));
        }
        let judged = match judged {
            Ok(judged) => judged,
            Err(why) => {
                return Ok((
                    unchecked(address),
                    Some(not_plain(Role::Recipient, raw, why)),
                ));
            }
        };
        // A bare user name is completed by the MTA with a domain of its own choosing (Postfix:
        // `myorigin`, which on a hub may be under the secure suffix): only the hub's own hosts
        // may use one.
        if let EnvelopeAddress::Unqualified(_) = judged
            && network(self.session.client_addr, routing) != Network::Trusted
        {
            return Ok((unchecked(address), Some(not_qualified(raw))));
        }
        // Before the directory is asked: an outsider learns nothing of who is a hub user.
        if let Some(verdict) = closed_community_verdict(
            &address,
            zone,
            &self.sender.address,
            self.sender.trust,
            &self.session,
            routing,
        ) {
            return Ok((unchecked(address), Some(verdict)));
        }
        // Hub addresses are looked up for their state; an address without a secure route for
        // its S/MIME certificate, when encryption is on.
        let listing = if zone == Zone::SecureSuffix
            || (zone == Zone::Other && rules.config.encryption.enabled)
        {
            Some(lookups.listing(&address).await?)
        } else {
            None
        };
        let (directory, deliver_to) = match (&listing, zone) {
            (Some(listing), Zone::SecureSuffix) => {
                (listing.answer, delivery_address(&address, listing, routing))
            }
            _ => (DirectoryAnswer::NotAsked, None),
        };
        let (certificate, certificate_pem) = match listing.and_then(|l| l.certificate) {
            Some(cert) => {
                let pem = (cert.validity == Validity::Valid)
                    .then_some(cert.pem)
                    .flatten();
                (Some(cert.validity), pem)
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
        let verdict = recipient_verdict(&recipient);
        Ok((recipient, verdict))
    }
}

/// MAIL's rules: the sender as judged, how it was recognised, and a verdict when refused.
async fn sender<L: Lookups>(
    rules: &Rules,
    lookups: &L,
    raw: &str,
    reported: Option<&str>,
    session: &SessionFacts,
) -> Result<SenderOutcome, L::Error> {
    let routing = rules.routing();
    let address = match address::as_the_mta_uses(raw, reported, Role::Sender) {
        Ok(address) => address.as_str().to_string(),
        Err(why) => {
            return Ok(SenderOutcome {
                verdict: Some(not_plain(Role::Sender, raw, why)),
                trust: Trust::None,
                translated: None,
                address: bounded(raw),
            });
        }
    };
    let zone = zone(&address, routing);
    let listing = if address.contains('@') {
        let secure = secure_form(&address, zone, &routing.secure_suffix);
        lookups.listing(&secure).await?
    } else {
        Listing::default()
    };
    Ok(sender_outcome(&address, zone, &listing, session, routing))
}

/// A refusal as answered: applied, or in report mode only reported.
fn answer(rules: &Rules, refused: Option<Verdict>) -> Answer {
    match refused {
        None => Answer::Continue,
        Some(verdict) if rules.enforcing() => Answer::Refuse(verdict),
        Some(verdict) => Answer::Report(verdict),
    }
}

/// An address as the client sent it, bounded for the log and the audit trail.
fn bounded(raw: &str) -> String {
    address::normalize_address(&raw.chars().take(300).collect::<String>())
}
