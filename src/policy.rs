//! The CJSM rules: a pure function from the facts of a message to a verdict.
//!
//! No I/O and no clock: the directory answers are looked up by the shell beforehand and
//! passed in, so the same facts always give the same verdict (and `check` can show it).

use crate::config::{OverLimit, RoutingConfig};
use crate::marking::{Classification, LevelId, Vocabulary};
use crate::store::{Lookup, OrgState, UserState};
use serde::Serialize;
use std::net::IpAddr;

/// What the MTA told us about the SMTP session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionFacts {
    pub client_addr: Option<IpAddr>,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    pub cert_subject: Option<String>,
    pub cert_issuer: Option<String>,
    /// Sendmail's `{verify}`: `OK` for a client certificate that verified.
    pub verify: Option<String>,
    pub auth_user: Option<String>,
    /// Sendmail's `{cn_subject}` and `{cn_issuer}`: the certificate's common names alone
    /// (xtext-encoded), preferred to the one-line DNs of `{cert_subject}`/`{cert_issuer}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cn_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cn_issuer: Option<String>,
}

/// Where an address sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Zone {
    /// A domain on the government secure networks (`*.gsi.gov.uk`, `*.pnn.police.uk`, …).
    SecureNetwork,
    /// Under the hub's own secure suffix (`*.cjsm.net`): checked against the directory.
    SecureSuffix,
    /// Anywhere else.
    Other,
}

/// The directory's answer for an address under the secure suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectoryAnswer {
    /// Not under the suffix: the directory was not asked.
    NotAsked,
    Unknown,
    Active,
    Suspended,
    Deleted,
}

impl DirectoryAnswer {
    /// Only users of an active organisation send or receive: a user of an organisation that
    /// is not active (or has gone) is answered like a suspended one.
    pub fn from_lookup(lookup: &Lookup) -> DirectoryAnswer {
        let Some(user) = &lookup.user else {
            return DirectoryAnswer::Unknown;
        };
        let org_active = lookup
            .org
            .as_ref()
            .is_some_and(|o| o.state == OrgState::Active);
        match user.state {
            UserState::Active if org_active => DirectoryAnswer::Active,
            UserState::Active | UserState::Suspended => DirectoryAnswer::Suspended,
            UserState::Deleted => DirectoryAnswer::Deleted,
        }
    }
}

/// A recipient with what we know of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub address: String,
    pub zone: Zone,
    pub directory: DirectoryAnswer,
    /// Address translation: the address the message is delivered to instead
    /// (`bob@firm.co.uk.cjsm.net` → `bob@firm.co.uk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_to: Option<String>,
    /// The RCPT argument as the MTA received it: how the MTA knows the recipient when it is
    /// replaced.
    #[serde(skip)]
    pub as_received: String,
    /// The recipient's registered S/MIME certificate, and whether it can be used now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::smime::cert::Validity>,
    /// That certificate (PEM), when it is valid now.
    #[serde(skip)]
    pub certificate_pem: Option<std::sync::Arc<str>>,
}

impl Recipient {
    /// Reached over a secure route: a secure network, or an active user of the hub.
    pub fn is_secure(&self) -> bool {
        match self.zone {
            Zone::SecureNetwork => true,
            Zone::SecureSuffix => self.directory == DirectoryAnswer::Active,
            Zone::Other => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Accept,
    Reject,
    Tempfail,
    Quarantine,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
            Action::Tempfail => "tempfail",
            Action::Quarantine => "quarantine",
        }
    }
}

/// An SMTP reply: `550 5.7.1 text`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub code: String,
    pub status: String,
    pub text: String,
}

impl Reply {
    pub(crate) fn new(code: &str, status: &str, text: String) -> Reply {
        Reply {
            code: code.into(),
            status: status.into(),
            text: sanitize(&text, 900),
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.code, self.status, self.text)
    }
}

/// A header edit, applied by the milter at end of message. Indexes count headers of the
/// same name from 1, as the milter protocol does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "edit", rename_all = "kebab-case")]
pub enum Edit {
    DeleteHeader {
        name: String,
        index: usize,
    },
    AddHeader {
        name: String,
        value: String,
    },
    ChangeHeader {
        name: String,
        index: usize,
        /// Bytes, not text: a raw 8-bit Subject must come back unchanged around our tag.
        #[serde(serialize_with = "lossy_text")]
        value: Vec<u8>,
    },
    /// The envelope sender becomes `address` (address translation).
    ChangeSender {
        address: String,
    },
    /// The envelope recipient `as_received` becomes `address` (address translation).
    ReplaceRecipient {
        as_received: String,
        address: String,
    },
    /// The body becomes `body` (the encrypted S/MIME entity).
    ReplaceBody {
        #[serde(rename = "bytes", serialize_with = "length_only")]
        body: Vec<u8>,
    },
}

impl Edit {
    /// Deletes copies `first..=last` of header `name`, highest index first, so the remaining
    /// indexes stay valid whichever way the MTA counts.
    pub fn delete_copies(name: &str, first: usize, last: usize) -> impl Iterator<Item = Edit> {
        (first..=last).rev().map(move |index| Edit::DeleteHeader {
            name: name.into(),
            index,
        })
    }
}

fn length_only<S: serde::Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(value.len() as u64)
}

fn lossy_text<S: serde::Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&String::from_utf8_lossy(value))
}

/// The decision for a message (or a recipient).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub action: Action,
    pub reply: Option<Reply>,
    /// A short, fixed reason (safe as a metric label): `ok`, `above-ceiling`, …
    pub reason: &'static str,
    pub edits: Vec<Edit>,
    /// For a quarantined message: why, for the operator.
    pub quarantine_reason: Option<String>,
    /// Encrypt the message for these recipients' certificates (S/MIME), done by the shell.
    pub encrypt_for: Vec<String>,
}

impl Verdict {
    pub(crate) fn refuse(action: Action, reason: &'static str, reply: Reply) -> Verdict {
        Verdict {
            action,
            reply: Some(reply),
            reason,
            edits: Vec::new(),
            quarantine_reason: None,
            encrypt_for: Vec::new(),
        }
    }

    /// The answer to any internal failure: the MTA keeps the message and retries.
    pub fn tempfail(reason: &'static str) -> Verdict {
        Verdict::refuse(
            Action::Tempfail,
            reason,
            Reply::new(
                "451",
                "4.7.1",
                "Secure mail filter temporarily unavailable, try again later".into(),
            ),
        )
    }
}

/// The facts a decision at end of message rests on.
pub struct Facts<'a> {
    pub vocab: &'a Vocabulary,
    pub routing: &'a RoutingConfig,
    pub on_exceeded: OverLimit,
    pub marking_header: &'a str,
    pub recipients: &'a [Recipient],
    pub classification: &'a Classification,
    /// The message has a Subject header (kept or not).
    pub subject_present: bool,
    /// The raw value of the first Subject header, when kept.
    pub subject_raw: Option<&'a [u8]>,
    /// The decoded value of the first Subject header, if any.
    pub subject_decoded: Option<&'a str>,
    /// How many copies of our marking header arrived with the message.
    pub own_headers_present: usize,
    /// How many copies of the routing header (`routing.route_header`) arrived.
    pub route_headers_present: usize,
    /// From this level up, inbound mail to a secure address needs TLS (`None`: never).
    pub require_tls_from: Option<LevelId>,
    /// The session was encrypted, or came from a secure or trusted network.
    pub inbound_protected: bool,
    /// Address translation of the sender: the address as sent and its secure address.
    pub sender_translation: Option<(&'a str, &'a str)>,
    /// The raw value of the first From header, when kept.
    pub from_raw: Option<&'a [u8]>,
    pub encryption: EncryptionFacts<'a>,
}

/// What encryption may do for this message.
#[derive(Clone, Copy, Debug, Default)]
pub struct EncryptionFacts<'a> {
    pub enabled: bool,
    /// The sender's trigger (`[encrypt]`) is in the Subject.
    pub requested: bool,
    /// The trigger text, removed from the Subject when used.
    pub trigger: &'a str,
    /// The whole message is held, so it can be encrypted.
    pub whole: bool,
    /// Replaces the outer Subject when encrypting ("" keeps it).
    pub neutral_subject: &'a str,
}

/// Classifies an address by its domain.
pub fn zone(address: &str, routing: &RoutingConfig) -> Zone {
    let domain = address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let under = |parent: &str| {
        let parent = parent.trim_matches('.').to_ascii_lowercase();
        domain == parent || domain.ends_with(&format!(".{parent}"))
    };
    if under(&routing.secure_suffix) {
        Zone::SecureSuffix
    } else if routing.secure_domains.iter().any(|d| under(d)) {
        Zone::SecureNetwork
    } else {
        Zone::Other
    }
}

/// The reason of the verdict for a recipient past `limits.max_recipients`.
pub const TOO_MANY_RECIPIENTS: &str = "too-many-recipients";

/// RCPT stage, past the recipient bound: the client may send them in another message.
pub fn too_many_recipients() -> Verdict {
    Verdict::refuse(
        Action::Tempfail,
        TOO_MANY_RECIPIENTS,
        Reply::new("452", "4.5.3", "Too many recipients".into()),
    )
}

/// RCPT stage: a secure-suffix recipient unknown to the directory, or not active.
pub fn recipient_verdict(recipient: &Recipient) -> Option<Verdict> {
    if recipient.zone != Zone::SecureSuffix {
        return None;
    }
    let address = &recipient.address;
    match recipient.directory {
        DirectoryAnswer::Unknown => Some(Verdict::refuse(
            Action::Reject,
            "recipient-unknown",
            Reply::new(
                "550",
                "5.1.1",
                format!("{address}: no such user in the Secure eMail Directory"),
            ),
        )),
        DirectoryAnswer::Suspended | DirectoryAnswer::Deleted => Some(Verdict::refuse(
            Action::Reject,
            "recipient-suspended",
            Reply::new(
                "550",
                "5.2.1",
                format!(
                    "{address}: secure mailbox disabled ({})",
                    answer_word(recipient.directory)
                ),
            ),
        )),
        DirectoryAnswer::Active | DirectoryAnswer::NotAsked => None,
    }
}

fn answer_word(answer: DirectoryAnswer) -> &'static str {
    match answer {
        DirectoryAnswer::Suspended => "suspended",
        DirectoryAnswer::Deleted => "deleted",
        _ => "not active",
    }
}

/// End of message: the verdict for the whole message.
pub fn decide(facts: &Facts) -> Verdict {
    let vocab = facts.vocab;
    let marking = vocab.level(facts.classification.level);
    let ceiling = vocab.level(vocab.ceiling);

    if marking.rank > ceiling.rank {
        return Verdict::refuse(
            Action::Reject,
            "above-ceiling",
            Reply::new(
                "550",
                "5.7.1",
                format!(
                    "Message marked {} may not be sent through this service; the highest marking this service carries is {}",
                    marking.name, ceiling.name
                ),
            ),
        );
    }

    let over_limits = !facts.classification.limits_exceeded.is_empty();
    if over_limits {
        match facts.on_exceeded {
            OverLimit::Reject => {
                return Verdict::refuse(
                    Action::Reject,
                    "limits",
                    Reply::new(
                        "550",
                        "5.7.1",
                        "Message too large or too complex to check its protective marking".into(),
                    ),
                );
            }
            OverLimit::Tempfail => return Verdict::tempfail("limits"),
            OverLimit::Ceiling | OverLimit::Quarantine => {}
        }
    }

    // Who must be reached by encryption: every recipient without a secure route, when the
    // marking needs one or the sender asked for encryption. (Recipients with a secure route
    // receive the same, encrypted, message: a milter cannot split it.)
    let needs_secure = marking.rank >= vocab.rank(vocab.secure_from);
    let encryption = &facts.encryption;
    let requested = encryption.enabled && encryption.requested;
    let must_encrypt: Vec<&Recipient> = facts
        .recipients
        .iter()
        .filter(|r| (requested || needs_secure) && !r.is_secure())
        .collect();
    let mut encrypt_for = Vec::new();
    if encryption.enabled && !must_encrypt.is_empty() {
        let usable = |r: &Recipient| r.certificate == Some(crate::smime::cert::Validity::Valid);
        let any_certificate = must_encrypt.iter().any(|r| r.certificate.is_some());
        let without: Vec<&str> = must_encrypt
            .iter()
            .filter(|r| !usable(r))
            .map(|r| r.address.as_str())
            .collect();
        if without.is_empty() && encryption.whole {
            encrypt_for = facts
                .recipients
                .iter()
                .filter(|r| usable(r))
                .map(|r| r.address.clone())
                .collect();
        } else if without.is_empty() {
            return Verdict::refuse(
                Action::Reject,
                "too-large-to-encrypt",
                Reply::new(
                    "550",
                    "5.7.1",
                    "Message too large to encrypt; send it in smaller parts".into(),
                ),
            );
        } else if requested || any_certificate {
            let why = if requested {
                format!(
                    "Encryption was requested ({}) but there is no valid S/MIME certificate for",
                    encryption.trigger
                )
            } else {
                format!(
                    "{} mail can only go to secure addresses or be encrypted; no secure route and no valid S/MIME certificate for",
                    marking.name
                )
            };
            return Verdict::refuse(
                Action::Reject,
                "no-secure-route",
                Reply::new("550", "5.7.1", format!("{why} {}", name_list(&without))),
            );
        }
    }
    if needs_secure && encrypt_for.is_empty() {
        let insecure: Vec<&str> = facts
            .recipients
            .iter()
            .filter(|r| !r.is_secure())
            .map(|r| r.address.as_str())
            .collect();
        if !insecure.is_empty() {
            let unmarked = if facts.classification.source == "default" {
                " (unmarked mail is treated as such)"
            } else {
                ""
            };
            return Verdict::refuse(
                Action::Reject,
                "no-secure-route",
                Reply::new(
                    "550",
                    "5.7.1",
                    format!(
                        "{} mail{unmarked} can only go to secure addresses; no secure route to {}",
                        marking.name,
                        name_list(&insecure)
                    ),
                ),
            );
        }
    }

    if let Some(required) = facts.require_tls_from
        && marking.rank >= vocab.rank(required)
        && !facts.inbound_protected
        && facts.recipients.iter().any(|r| r.zone != Zone::Other)
    {
        return Verdict::refuse(
            Action::Reject,
            "no-inbound-tls",
            Reply::new(
                "550",
                "5.7.1",
                format!(
                    "{} mail to a secure address must be sent over TLS (STARTTLS); this session was not encrypted",
                    marking.name
                ),
            ),
        );
    }

    let mut edits = Vec::new();
    // Our marking header is ours alone: remove copies from outside before adding ours.
    edits.extend(Edit::delete_copies(
        facts.marking_header,
        1,
        facts.own_headers_present,
    ));
    edits.push(Edit::AddHeader {
        name: facts.marking_header.into(),
        value: format!("{}; source={}", marking.name, facts.classification.source),
    });
    if let Some(route_header) = facts.routing.route_header.as_deref() {
        edits.extend(Edit::delete_copies(
            route_header,
            1,
            facts.route_headers_present,
        ));
        let secure = facts.recipients.iter().all(Recipient::is_secure);
        edits.push(Edit::AddHeader {
            name: route_header.into(),
            value: if secure { "secure" } else { "open" }.into(),
        });
    }
    let tag = facts
        .recipients
        .iter()
        .any(|r| r.zone == Zone::SecureSuffix);
    let encrypting = !encrypt_for.is_empty();
    if let Some(edit) = subject_edit(facts, tag, encrypting && requested, encrypting) {
        edits.push(edit);
    }
    if let Some((as_sent, secure)) = facts.sender_translation {
        if let Some(value) = facts
            .from_raw
            .and_then(|raw| crate::trust::replace_address(raw, as_sent, secure))
        {
            edits.push(Edit::ChangeHeader {
                name: "From".into(),
                index: 1,
                value,
            });
        }
        edits.push(Edit::ChangeSender {
            address: secure.into(),
        });
    }
    for recipient in facts.recipients {
        if let Some(address) = &recipient.deliver_to {
            edits.push(Edit::ReplaceRecipient {
                as_received: recipient.as_received.clone(),
                address: address.clone(),
            });
        }
    }

    let (action, reason, quarantine_reason) =
        if over_limits && facts.on_exceeded == OverLimit::Quarantine {
            (
                Action::Quarantine,
                "limits",
                Some(format!(
                    "not checked whole: {}",
                    facts.classification.limits_exceeded.join("; ")
                )),
            )
        } else {
            (
                Action::Accept,
                if encrypting { "encrypt" } else { "ok" },
                None,
            )
        };
    Verdict {
        action,
        reply: None,
        reason,
        edits,
        quarantine_reason,
        encrypt_for,
    }
}

/// The Subject edit: the tag put in once (none when the tag's word is already there: a reply to
/// a tagged message is not tagged twice), the encryption trigger taken out once used, or the
/// neutral Subject of an encrypted message. `None` when the Subject stays as it is.
fn subject_edit(facts: &Facts, tag: bool, remove_trigger: bool, encrypting: bool) -> Option<Edit> {
    let tag_text = facts.routing.subject_tag.trim();
    let neutral = facts.encryption.neutral_subject.trim();
    let with_tag = |mut value: Vec<u8>| {
        if tag {
            if !value.is_empty() {
                value.push(b' ');
            }
            value.extend_from_slice(tag_text.as_bytes());
        }
        value
    };
    if encrypting && !neutral.is_empty() {
        let value = with_tag(neutral.as_bytes().to_vec());
        return Some(if facts.subject_present {
            Edit::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value,
            }
        } else {
            Edit::AddHeader {
                name: "Subject".into(),
                value: String::from_utf8_lossy(&value).into_owned(),
            }
        });
    }
    if !facts.subject_present {
        return tag.then(|| Edit::AddHeader {
            name: "Subject".into(),
            value: tag_text.into(),
        });
    }
    // A Subject too large to keep is left as it is rather than rewritten from a part of it.
    let raw = facts.subject_raw?;
    let mut value = raw.trim_ascii().to_vec();
    let mut changed = false;
    if remove_trigger && let Some(rest) = remove_once(&value, facts.encryption.trigger) {
        value = rest;
        changed = true;
    }
    let raw_text = String::from_utf8_lossy(raw);
    let tag = tag && !already_tagged(facts.subject_decoded.unwrap_or(&raw_text), tag_text);
    if tag {
        value = with_tag(value);
        changed = true;
    }
    changed.then(|| Edit::ChangeHeader {
        name: "Subject".into(),
        index: 1,
        value,
    })
}

/// `text` without the first occurrence of `word` (ASCII case-insensitive), its spaces tidied.
fn remove_once(text: &[u8], word: &str) -> Option<Vec<u8>> {
    let word = word.trim().as_bytes();
    if word.is_empty() || text.len() < word.len() {
        return None;
    }
    let at = text
        .windows(word.len())
        .position(|w| w.eq_ignore_ascii_case(word))?;
    let before = text[..at].trim_ascii_end();
    let after = text[at + word.len()..].trim_ascii_start();
    let mut out = before.to_vec();
    if !before.is_empty() && !after.is_empty() {
        out.push(b' ');
    }
    out.extend_from_slice(after);
    Some(out)
}

/// The Subject asks for encryption: the trigger in its raw or decoded text.
pub fn encryption_requested(
    subject_raw: Option<&[u8]>,
    subject_decoded: Option<&str>,
    trigger: &str,
) -> bool {
    let trigger = trigger.trim().to_ascii_lowercase();
    if trigger.is_empty() {
        return false;
    }
    subject_decoded.is_some_and(|s| s.to_ascii_lowercase().contains(&trigger))
        || subject_raw.is_some_and(|raw| {
            raw.windows(trigger.len())
                .any(|w| w.eq_ignore_ascii_case(trigger.as_bytes()))
        })
}

/// The Subject already carries the tag: the tag itself in any case (`[cjsm]`), or its word
/// standing alone in capitals (`RE: CJSM: …`). The word inside an address or a domain
/// (`bob@firm.cjsm.net`) does not count.
fn already_tagged(subject: &str, tag: &str) -> bool {
    let lower = subject.to_lowercase();
    if lower.contains(&tag.to_lowercase()) {
        return true;
    }
    let word: String = tag.chars().filter(|c| c.is_alphanumeric()).collect();
    if word.is_empty() {
        return false;
    }
    let joins = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || "@.-_".contains(c));
    subject.match_indices(word.as_str()).any(|(i, _)| {
        !joins(subject[..i].chars().next_back()) && !joins(subject[i + word.len()..].chars().next())
    })
}

/// At most ten names, then a count: a reply line has room for about 980 bytes.
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut list = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

/// Reply text is one line of printable ASCII, bounded: parts of it come from the envelope.
fn sanitize(text: &str, max: usize) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| {
            // `%` is special in MTA reply handling (Sendmail formats it): keep it out.
            if (c.is_ascii_graphic() && c != '%') || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if clean.len() > max {
        clean.truncate(max);
        clean.push_str("...");
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, MarkingConfig};
    use crate::marking::{Classification, Finding};

    fn vocab() -> Vocabulary {
        Vocabulary::from_config(&MarkingConfig::default()).unwrap()
    }

    fn rcpt(address: &str, directory: DirectoryAnswer) -> Recipient {
        Recipient {
            address: address.into(),
            zone: zone(address, &RoutingConfig::default()),
            directory,
            deliver_to: None,
            as_received: format!("<{address}>"),
            certificate: None,
            certificate_pem: None,
        }
    }

    fn classification(v: &Vocabulary, label: Option<&str>, limits: bool) -> Classification {
        let level = label.map(|l| v.whole_marking(l).unwrap());
        Classification {
            level: level.unwrap_or(v.default),
            source: if level.is_some() {
                "subject".into()
            } else {
                "default".into()
            },
            found: level
                .map(|level| {
                    vec![Finding {
                        level,
                        source: "subject".into(),
                        obfuscated: false,
                    }]
                })
                .unwrap_or_default(),
            conflict: false,
            limits_exceeded: if limits { vec!["big".into()] } else { vec![] },
            ambiguous: vec![],
            warnings: vec![],
            subject: None,
        }
    }

    /// The facts the tests share; each test spells out only what it is about.
    fn facts<'a>(
        vocab: &'a Vocabulary,
        routing: &'a RoutingConfig,
        classification: &'a Classification,
        recipients: &'a [Recipient],
    ) -> Facts<'a> {
        Facts {
            vocab,
            routing,
            on_exceeded: OverLimit::Ceiling,
            marking_header: "X-CJSM-Marking",
            recipients,
            classification,
            subject_present: false,
            subject_raw: None,
            subject_decoded: None,
            own_headers_present: 0,
            route_headers_present: 0,
            require_tls_from: None,
            inbound_protected: true,
            sender_translation: None,
            from_raw: None,
            encryption: EncryptionFacts::default(),
        }
    }

    struct Case {
        label: Option<&'static str>,
        rcpts: Vec<Recipient>,
        want: Action,
        reason: &'static str,
        status: Option<&'static str>,
    }

    use DirectoryAnswer::*;

    #[test]
    fn policy_table() {
        let secure_net = || rcpt("dc.jones@met.pnn.police.uk", NotAsked);
        let gsi = || rcpt("clerk@cps.gsi.gov.uk", NotAsked);
        let hub = || rcpt("alice@firm.co.uk.cjsm.net", Active);
        let hub_suspended = || rcpt("bob@firm.co.uk.cjsm.net", Suspended);
        let internet = || rcpt("someone@gmail.com", NotAsked);
        let lookalike = || rcpt("x@notpnn.police.uk", NotAsked);
        let cases = vec![
            Case {
                label: Some("SECRET"),
                rcpts: vec![secure_net()],
                want: Action::Reject,
                reason: "above-ceiling",
                status: Some("5.7.1"),
            },
            Case {
                label: Some("TOP SECRET"),
                rcpts: vec![hub()],
                want: Action::Reject,
                reason: "above-ceiling",
                status: Some("5.7.1"),
            },
            Case {
                label: Some("PROTECTED"),
                rcpts: vec![hub()],
                want: Action::Reject,
                reason: "above-ceiling",
                status: Some("5.7.1"),
            },
            Case {
                label: Some("OFFICIAL"),
                rcpts: vec![internet()],
                want: Action::Accept,
                reason: "ok",
                status: None,
            },
            Case {
                label: Some("OFFICIAL"),
                rcpts: vec![internet(), hub()],
                want: Action::Accept,
                reason: "ok",
                status: None,
            },
            Case {
                label: Some("OFFICIAL-SENSITIVE"),
                rcpts: vec![secure_net(), gsi(), hub()],
                want: Action::Accept,
                reason: "ok",
                status: None,
            },
            Case {
                label: Some("OFFICIAL-SENSITIVE"),
                rcpts: vec![hub(), internet()],
                want: Action::Reject,
                reason: "no-secure-route",
                status: Some("5.7.1"),
            },
            Case {
                label: Some("OFFICIAL-SENSITIVE"),
                rcpts: vec![lookalike()],
                want: Action::Reject,
                reason: "no-secure-route",
                status: Some("5.7.1"),
            },
            Case {
                label: Some("RESTRICTED"),
                rcpts: vec![hub_suspended()],
                want: Action::Reject,
                reason: "no-secure-route",
                status: Some("5.7.1"),
            },
            Case {
                label: None,
                rcpts: vec![internet()],
                want: Action::Reject,
                reason: "no-secure-route",
                status: Some("5.7.1"),
            },
            Case {
                label: None,
                rcpts: vec![secure_net(), hub()],
                want: Action::Accept,
                reason: "ok",
                status: None,
            },
        ];
        let v = vocab();
        let routing = RoutingConfig::default();
        for case in cases {
            let c = classification(&v, case.label, false);
            let facts = Facts {
                subject_present: true,
                subject_raw: Some(b"hello"),
                subject_decoded: Some("hello"),
                ..facts(&v, &routing, &c, &case.rcpts)
            };
            let verdict = decide(&facts);
            let what = format!(
                "{:?} -> {:?}",
                case.label,
                case.rcpts.iter().map(|r| &r.address).collect::<Vec<_>>()
            );
            assert_eq!(verdict.action, case.want, "{what}: {verdict:?}");
            assert_eq!(verdict.reason, case.reason, "{what}");
            assert_eq!(
                verdict.reply.as_ref().map(|r| r.status.as_str()),
                case.status,
                "{what}"
            );
        }
    }

    fn accept_edits(
        rcpts: &[Recipient],
        raw: Option<&str>,
        decoded: Option<&str>,
        own: usize,
    ) -> Vec<Edit> {
        let v = vocab();
        let c = classification(&v, Some("OFFICIAL"), false);
        // The routing header has its own test.
        let routing = RoutingConfig {
            route_header: None,
            ..RoutingConfig::default()
        };
        decide(&Facts {
            subject_present: raw.is_some(),
            subject_raw: raw.map(str::as_bytes),
            subject_decoded: decoded,
            own_headers_present: own,
            ..facts(&v, &routing, &c, rcpts)
        })
        .edits
    }

    #[test]
    fn edits_remove_forged_headers_and_tag_once() {
        let hub = [rcpt("alice@firm.co.uk.cjsm.net", Active)];
        let edits = accept_edits(&hub, Some("=?UTF-8?Q?caf=C3=A9?="), Some("café"), 2);
        assert_eq!(
            edits,
            vec![
                Edit::DeleteHeader {
                    name: "X-CJSM-Marking".into(),
                    index: 2
                },
                Edit::DeleteHeader {
                    name: "X-CJSM-Marking".into(),
                    index: 1
                },
                Edit::AddHeader {
                    name: "X-CJSM-Marking".into(),
                    value: "OFFICIAL; source=subject".into()
                },
                Edit::ChangeHeader {
                    name: "Subject".into(),
                    index: 1,
                    value: b"=?UTF-8?Q?caf=C3=A9?= [CJSM]".to_vec()
                },
            ]
        );
        // A raw 8-bit Subject keeps its bytes.
        let v = vocab();
        let c = classification(&v, Some("OFFICIAL"), false);
        // The routing header has its own test.
        let routing = RoutingConfig {
            route_header: None,
            ..RoutingConfig::default()
        };
        let verdict = decide(&Facts {
            subject_present: true,
            subject_raw: Some(b"caf\xe9 cr\xe8me"),
            ..facts(&v, &routing, &c, &hub)
        });
        assert_eq!(
            verdict.edits[1],
            Edit::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value: b"caf\xe9 cr\xe8me [CJSM]".to_vec()
            }
        );
        // Already tagged (a reply): no change. Not to the hub: no tag.
        let edits = accept_edits(&hub, Some("RE: x [CJSM]"), Some("RE: x [CJSM]"), 0);
        assert_eq!(edits.len(), 1);
        let edits = accept_edits(&hub, Some("RE: [cjsm] x"), Some("RE: [cjsm] x"), 0);
        assert_eq!(edits.len(), 1);
        let edits = accept_edits(&hub, Some("CJSM: x"), Some("CJSM: x"), 0);
        assert_eq!(edits.len(), 1);
        // The word in an address, a domain or in lower case prose is not the tag.
        for subject in [
            "final bob@firm.cjsm.net",
            "cjsm registration",
            "see www.cjsm.net",
        ] {
            let edits = accept_edits(&hub, Some(subject), Some(subject), 0);
            assert_eq!(edits.len(), 2, "{subject}");
        }
        let edits = accept_edits(&[rcpt("a@gmail.com", NotAsked)], Some("x"), Some("x"), 0);
        assert_eq!(edits.len(), 1);
        // "CJSMX" is not the tag word.
        let edits = accept_edits(&hub, Some("CJSMX"), Some("CJSMX"), 0);
        assert_eq!(edits.len(), 2);
        // A Subject too large to keep is left alone, and no second one is added.
        let verdict = decide(&Facts {
            subject_present: true,
            ..facts(&v, &routing, &c, &hub)
        });
        assert_eq!(verdict.edits.len(), 1, "{:?}", verdict.edits);
        // No Subject at all: one is added.
        let edits = accept_edits(&hub, None, None, 0);
        assert_eq!(
            edits[1],
            Edit::AddHeader {
                name: "Subject".into(),
                value: "[CJSM]".into()
            }
        );
    }

    #[test]
    fn limits_actions() {
        let v = vocab();
        let routing = RoutingConfig::default();
        let c = classification(&v, Some("OFFICIAL-SENSITIVE"), true);
        let rcpts = [rcpt("a@x.pnn.police.uk", NotAsked)];
        for (on, want) in [
            (OverLimit::Ceiling, Action::Accept),
            (OverLimit::Quarantine, Action::Quarantine),
            (OverLimit::Reject, Action::Reject),
            (OverLimit::Tempfail, Action::Tempfail),
        ] {
            let verdict = decide(&Facts {
                on_exceeded: on,
                ..facts(&v, &routing, &c, &rcpts)
            });
            assert_eq!(verdict.action, want, "{on:?}");
        }
    }

    #[test]
    fn rcpt_and_sender_verdicts() {
        assert_eq!(
            recipient_verdict(&rcpt("a@x.cjsm.net", Unknown))
                .unwrap()
                .reply
                .unwrap()
                .status,
            "5.1.1"
        );
        assert_eq!(
            recipient_verdict(&rcpt("a@x.cjsm.net", Suspended))
                .unwrap()
                .reply
                .unwrap()
                .status,
            "5.2.1"
        );
        assert_eq!(
            recipient_verdict(&rcpt("a@x.cjsm.net", Deleted))
                .unwrap()
                .reply
                .unwrap()
                .status,
            "5.2.1"
        );
        assert_eq!(recipient_verdict(&rcpt("a@x.cjsm.net", Active)), None);
        assert_eq!(recipient_verdict(&rcpt("a@gmail.com", NotAsked)), None);
    }

    #[test]
    fn encryption_decisions() {
        use crate::smime::cert::Validity;
        let v = vocab();
        let routing = RoutingConfig::default();
        let with_cert = |address: &str, validity: Option<Validity>| {
            let mut r = rcpt(address, NotAsked);
            r.certificate = validity;
            r.certificate_pem = (validity == Some(Validity::Valid)).then(|| "PEM".into());
            r
        };
        let valid = with_cert("expert@gmail.com", Some(Validity::Valid));
        let none = with_cert("friend@gmail.com", None);
        let expired = with_cert("old@gmail.com", Some(Validity::Expired));
        let early = with_cert("early@gmail.com", Some(Validity::NotYetValid));
        let police = rcpt("dc@met.pnn.police.uk", NotAsked);
        let on = EncryptionFacts {
            enabled: true,
            requested: false,
            trigger: "[encrypt]",
            whole: true,
            neutral_subject: "",
        };
        // (case, marking, recipients, encryption, reason, encrypted for, reply contains)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<Recipient>,
            EncryptionFacts<'a>,
            &'a str,
            Vec<&'a str>,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                "sensitive, certificate",
                None,
                vec![valid.clone()],
                on,
                "encrypt",
                vec!["expert@gmail.com"],
                "",
            ),
            (
                "secure-route recipients get the encrypted form too",
                Some("OFFICIAL-SENSITIVE"),
                vec![valid.clone(), police.clone()],
                on,
                "encrypt",
                vec!["expert@gmail.com"],
                "",
            ),
            (
                "mixed: rejected, naming only the one without",
                None,
                vec![valid.clone(), none.clone()],
                on,
                "no-secure-route",
                vec![],
                "no valid S/MIME certificate for friend@gmail.com",
            ),
            (
                "expired",
                None,
                vec![expired.clone()],
                on,
                "no-secure-route",
                vec![],
                "old@gmail.com",
            ),
            (
                "not yet valid",
                None,
                vec![early],
                on,
                "no-secure-route",
                vec![],
                "early@gmail.com",
            ),
            (
                "no certificates at all: the plain refusal",
                None,
                vec![none.clone()],
                on,
                "no-secure-route",
                vec![],
                "can only go to secure addresses; no secure route to friend@gmail.com",
            ),
            (
                "too large to hold whole",
                None,
                vec![valid.clone()],
                EncryptionFacts { whole: false, ..on },
                "too-large-to-encrypt",
                vec![],
                "too large to encrypt",
            ),
            (
                "encryption off: the plain refusal",
                None,
                vec![valid.clone()],
                EncryptionFacts {
                    enabled: false,
                    ..on
                },
                "no-secure-route",
                vec![],
                "no secure route to expert@gmail.com",
            ),
            (
                "OFFICIAL: in clear",
                Some("OFFICIAL"),
                vec![valid.clone()],
                on,
                "ok",
                vec![],
                "",
            ),
            (
                "OFFICIAL, requested",
                Some("OFFICIAL"),
                vec![valid.clone()],
                EncryptionFacts {
                    requested: true,
                    ..on
                },
                "encrypt",
                vec!["expert@gmail.com"],
                "",
            ),
            (
                "requested, one without a certificate",
                Some("OFFICIAL"),
                vec![valid.clone(), none.clone(), police.clone()],
                EncryptionFacts {
                    requested: true,
                    ..on
                },
                "no-secure-route",
                vec![],
                "Encryption was requested ([encrypt]) but there is no valid S/MIME certificate for friend@gmail.com",
            ),
            (
                "requested, only secure routes: delivered over them",
                Some("OFFICIAL"),
                vec![police.clone()],
                EncryptionFacts {
                    requested: true,
                    ..on
                },
                "ok",
                vec![],
                "",
            ),
        ];
        for (name, label, rcpts, encryption, reason, encrypted, reply) in cases {
            let c = classification(&v, label, false);
            let verdict = decide(&Facts {
                encryption,
                ..facts(&v, &routing, &c, &rcpts)
            });
            assert_eq!(verdict.reason, reason, "{name}: {verdict:?}");
            assert_eq!(verdict.encrypt_for, encrypted, "{name}");
            let text = verdict.reply.map(|r| r.text).unwrap_or_default();
            assert!(text.contains(reply), "{name}: {text}");
        }
    }

    #[test]
    fn encryption_subjects() {
        let v = vocab();
        let routing = RoutingConfig::default();
        let c = classification(&v, Some("OFFICIAL"), false);
        let mut r = rcpt("expert@gmail.com", NotAsked);
        r.certificate = Some(crate::smime::cert::Validity::Valid);
        let rcpts = [r];
        let subject = |raw: &str, neutral: &str| {
            let verdict = decide(&Facts {
                subject_present: true,
                subject_raw: Some(raw.as_bytes()),
                subject_decoded: Some(raw),
                encryption: EncryptionFacts {
                    enabled: true,
                    requested: true,
                    trigger: "[encrypt]",
                    whole: true,
                    neutral_subject: neutral,
                },
                ..facts(&v, &routing, &c, &rcpts)
            });
            verdict.edits.iter().find_map(|e| match e {
                Edit::ChangeHeader { name, value, .. } if name == "Subject" => {
                    Some(String::from_utf8_lossy(value).into_owned())
                }
                _ => None,
            })
        };
        assert_eq!(
            subject("OFFICIAL: [Encrypt] accounts", "").as_deref(),
            Some("OFFICIAL: accounts")
        );
        assert_eq!(
            subject("OFFICIAL: accounts [encrypt]", "").as_deref(),
            Some("OFFICIAL: accounts")
        );
        assert_eq!(
            subject("OFFICIAL: accounts [encrypt]", "Encrypted message").as_deref(),
            Some("Encrypted message")
        );
        assert!(encryption_requested(
            None,
            Some("RE: [ENCRYPT] x"),
            "[encrypt]"
        ));
        assert!(encryption_requested(
            Some(b"x [encrypt]"),
            None,
            "[encrypt]"
        ));
        assert!(!encryption_requested(Some(b"x encrypt"), None, "[encrypt]"));
        assert!(!encryption_requested(Some(b"x [encrypt]"), None, ""));
    }

    #[test]
    fn inbound_tls_rule() {
        let v = vocab();
        let routing = RoutingConfig::default();
        let sensitive = v.level_by_name("test", "OFFICIAL-SENSITIVE").ok();
        let secure = [rcpt("a@x.cjsm.net", Active)];
        let network = [rcpt("b@met.pnn.police.uk", NotAsked)];
        let outside = [rcpt("c@gmail.com", NotAsked)];
        // (marking, recipients, encrypted session, expected reason)
        let cases: [(Option<&str>, &[Recipient], bool, &str); 6] = [
            (None, &secure, false, "no-inbound-tls"),
            (
                Some("OFFICIAL-SENSITIVE"),
                &network,
                false,
                "no-inbound-tls",
            ),
            (Some("OFFICIAL-SENSITIVE"), &secure, true, "ok"),
            (Some("OFFICIAL"), &secure, false, "ok"),
            (Some("OFFICIAL"), &outside, false, "ok"),
            (None, &outside, false, "no-secure-route"),
        ];
        for (label, rcpts, protected, want) in cases {
            let c = classification(&v, label, false);
            let verdict = decide(&Facts {
                require_tls_from: sensitive,
                inbound_protected: protected,
                ..facts(&v, &routing, &c, rcpts)
            });
            assert_eq!(verdict.reason, want, "{label:?} {rcpts:?} {protected}");
        }
        let c = classification(&v, None, false);
        let never = decide(&Facts {
            require_tls_from: None,
            inbound_protected: false,
            ..facts(&v, &routing, &c, &secure)
        });
        assert_eq!(never.reason, "ok");
    }

    #[test]
    fn route_header_and_translation_edits() {
        let v = vocab();
        let routing = RoutingConfig::default();
        let c = classification(&v, Some("OFFICIAL"), false);
        let mut bob = rcpt("bob@firm.co.uk.cjsm.net", Active);
        bob.deliver_to = Some("bob@firm.co.uk".into());
        let rcpts = [bob, rcpt("dc@met.pnn.police.uk", NotAsked)];
        let verdict = decide(&Facts {
            route_headers_present: 2,
            sender_translation: Some(("alice@firm.co.uk", "alice@firm.co.uk.cjsm.net")),
            from_raw: Some(b"Alice <Alice@firm.co.uk>"),
            ..facts(&v, &routing, &c, &rcpts)
        });
        let edits = &verdict.edits;
        let has = |edit: Edit| assert!(edits.contains(&edit), "{edit:?} in {edits:?}");
        has(Edit::DeleteHeader {
            name: "X-CJSM-Route".into(),
            index: 2,
        });
        has(Edit::AddHeader {
            name: "X-CJSM-Route".into(),
            value: "secure".into(),
        });
        has(Edit::ChangeHeader {
            name: "From".into(),
            index: 1,
            value: b"Alice <alice@firm.co.uk.cjsm.net>".to_vec(),
        });
        has(Edit::ChangeSender {
            address: "alice@firm.co.uk.cjsm.net".into(),
        });
        has(Edit::ReplaceRecipient {
            as_received: "<bob@firm.co.uk.cjsm.net>".into(),
            address: "bob@firm.co.uk".into(),
        });

        let rcpts = [rcpt("someone@gmail.com", NotAsked)];
        let open = decide(&facts(&v, &routing, &c, &rcpts));
        assert!(open.edits.contains(&Edit::AddHeader {
            name: "X-CJSM-Route".into(),
            value: "open".into(),
        }));
        let none = RoutingConfig {
            route_header: None,
            ..RoutingConfig::default()
        };
        let quiet = decide(&facts(&v, &none, &c, &rcpts));
        assert!(
            !quiet
                .edits
                .iter()
                .any(|e| matches!(e, Edit::AddHeader { name, .. } if name.is_empty()))
        );
        assert_eq!(quiet.edits.len(), 1, "{:?}", quiet.edits);
    }

    #[test]
    fn reply_names_every_recipient_bounded() {
        let v = vocab();
        let routing = RoutingConfig::default();
        let c = classification(&v, None, false);
        let rcpts: Vec<Recipient> = (0..25)
            .map(|i| rcpt(&format!("u{i}@gmail.com"), NotAsked))
            .collect();
        let verdict = decide(&facts(&v, &routing, &c, &rcpts));
        let text = verdict.reply.unwrap().text;
        assert!(text.contains("u0@gmail.com, u1@gmail.com"), "{text}");
        assert!(text.contains("and 15 more"), "{text}");
        assert!(text.contains("unmarked"), "{text}");
    }

    #[test]
    fn zones() {
        let routing = Config::default().routing;
        assert_eq!(zone("a@cjsm.net", &routing), Zone::SecureSuffix);
        assert_eq!(zone("a@Firm.Co.UK.CJSM.NET", &routing), Zone::SecureSuffix);
        assert_eq!(zone("a@met.pnn.police.uk", &routing), Zone::SecureNetwork);
        assert_eq!(zone("a@pnn.police.uk.", &routing), Zone::SecureNetwork);
        assert_eq!(zone("a@xpnn.police.uk", &routing), Zone::Other);
        assert_eq!(zone("a@cjsm.net.evil.com", &routing), Zone::Other);
        assert_eq!(zone("nodomain", &routing), Zone::Other);
    }

    #[test]
    fn sanitize_is_bounded_ascii() {
        assert_eq!(sanitize("a\r\nb\u{e9}", 100), "a??b?");
        assert_eq!(sanitize("user%host@x", 100), "user?host@x");
        assert_eq!(sanitize(&"x".repeat(2000), 900).len(), 903);
    }
}
