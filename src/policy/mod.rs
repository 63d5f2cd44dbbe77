//! The CJSM rules: pure functions from what is known of a transaction to a verdict, one file
//! per stage of the SMTP transaction.
//!
//! - [`client`]: who the client is (its network, its TLS client certificate);
//! - [`sender`]: MAIL, who the sender is and whether it may send; a hub sender's `From:`;
//! - [`recipient`]: RCPT, whether the recipient may receive, and where it is delivered;
//! - [`message`]: end of message, the verdict for the marking and the recipients;
//! - [`encryption`]: who must be reached by S/MIME, and whether it can be done;
//! - [`edits`]: the header and envelope edits of an accepted message.
//!
//! No I/O and no clock: the directory's answers ([`Listing`]) are looked up by the shell
//! beforehand and passed in, so the same facts always give the same verdict (and `check` can
//! show it). The rules never see the store's types.

pub mod client;
pub mod edits;
pub mod encryption;
pub mod message;
pub mod recipient;
pub mod sender;

use crate::address::{Domain, Role};
use crate::config::{Config, ConfigError, Mode, RoutingConfig};
use crate::marking::{Classification, LevelId, Vocabulary};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;

use encryption::Validity;

/// The rules of one engine: the config with everything derived from it, built once when the
/// config is loaded (and again on reload), never per message.
pub struct Rules {
    pub config: Config,
    pub vocab: Vocabulary,
    /// `routing.require_tls_from` as a level (`None`: never).
    pub require_tls_from: Option<LevelId>,
}

impl Rules {
    /// The rules of `config`: its words checked and compiled ([`vocabulary`]).
    pub fn new(config: Config) -> Result<Rules, ConfigError> {
        let (vocab, require_tls_from) = vocabulary(&config)?;
        Ok(Rules {
            config,
            vocab,
            require_tls_from,
        })
    }

    pub fn routing(&self) -> &RoutingConfig {
        &self.config.routing
    }

    /// Verdicts are applied (`enforce`), not only reported.
    pub fn enforcing(&self) -> bool {
        self.config.mode == Mode::Enforce
    }
}

/// The vocabulary, and `routing.require_tls_from` as one of its levels: the settings' words
/// checked, without reading any other file. (The directory and audit commands, which never
/// classify or encrypt, check a config with this alone.)
pub fn vocabulary(config: &Config) -> Result<(Vocabulary, Option<LevelId>), ConfigError> {
    let locate = |error| config.source.locate(error);
    let vocab = Vocabulary::from_config(&config.marking).map_err(locate)?;
    let require_tls_from = config
        .routing
        .require_tls_from
        .as_deref()
        .map(|name| vocab.level_by_name("routing.require_tls_from", name))
        .transpose()
        .map_err(locate)?;
    Ok((vocab, require_tls_from))
}

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

impl Zone {
    pub const ALL: [Zone; 3] = [Zone::SecureNetwork, Zone::SecureSuffix, Zone::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Zone::SecureNetwork => "secure-network",
            Zone::SecureSuffix => "secure-suffix",
            Zone::Other => "other",
        }
    }
}

/// Classifies an address by its domain.
pub fn zone(address: &str, routing: &RoutingConfig) -> Zone {
    let Some(domain) = Domain::of(address) else {
        return Zone::Other;
    };
    let within = |parent: &str| Domain::new(parent).is_some_and(|p| domain.is_within(&p));
    if within(&routing.secure_suffix) {
        Zone::SecureSuffix
    } else if routing.secure_domains.iter().any(|d| within(d)) {
        Zone::SecureNetwork
    } else {
        Zone::Other
    }
}

/// The directory's answer for an address: its user, with the organisation's state folded in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectoryAnswer {
    /// Not under the suffix: the directory was not asked.
    NotAsked,
    #[default]
    Unknown,
    Active,
    Suspended,
    Deleted,
}

/// What the directory says of one address, as the rules read it. The shell makes it from the
/// store's answer; the rules never see the store's types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Only users of an active organisation send or receive: a user of an organisation that
    /// is not active (or has gone) is answered like a suspended one.
    pub answer: DirectoryAnswer,
    /// The organisation of the user or, for an address no user has, the organisation that
    /// holds its domain (so a forged sender in an organisation's domain is recognised).
    pub org: Option<OrgListing>,
    /// The address's registered S/MIME certificate.
    pub certificate: Option<CertificateListing>,
}

/// An organisation, as the rules read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgListing {
    pub connection: Connection,
    pub active: bool,
    /// Its mail domains, lower case.
    pub domains: Vec<String>,
    /// A server organisation's registered TLS client certificate: subject and issuer.
    pub client_certificate: Option<RegisteredCertificate>,
}

/// How an organisation reaches the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Its own mail server, over TLS with a client certificate.
    Server,
    /// Hosted mailboxes under the secure suffix, with SMTP AUTH.
    Mailbox,
}

/// The subject and issuer a server organisation's client certificate was registered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredCertificate {
    pub subject: String,
    pub issuer: String,
}

/// A registered S/MIME certificate: whether it can be used now (judged by the shell, which has
/// the clock), and the certificate itself when it can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateListing {
    pub validity: Validity,
    pub pem: Option<Arc<str>>,
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
    pub certificate: Option<Validity>,
    /// That certificate (PEM), when it is valid now.
    #[serde(skip)]
    pub certificate_pem: Option<Arc<str>>,
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

/// What end of message knows of the message itself (the rules come from [`Rules`]).
#[derive(Clone, Copy)]
pub struct MessageFacts<'a> {
    pub recipients: &'a [Recipient],
    pub classification: &'a Classification,
    /// The message has a Subject header (kept or not).
    pub subject_present: bool,
    /// The raw value of the first Subject header, when kept.
    pub subject_raw: Option<&'a [u8]>,
    /// How many copies of our marking header arrived with the message.
    pub own_headers_present: usize,
    /// How many copies of the routing header (`routing.route_header`) arrived.
    pub route_headers_present: usize,
    /// The session was encrypted, or came from a secure or trusted network.
    pub inbound_protected: bool,
    /// Address translation of the sender: the address as sent and its secure address.
    pub sender_translation: Option<(&'a str, &'a str)>,
    /// The raw value of the first From header, when kept.
    pub from_raw: Option<&'a [u8]>,
    /// The sender's trigger (`[encrypt]`) is in the Subject.
    pub encryption_requested: bool,
    /// The whole message is held, so it can be encrypted.
    pub whole: bool,
}

/// How the sender was recognised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Not recognised: a sender outside any organisation's domain, or a refused one.
    #[default]
    None,
    /// One of the hub's own hosts (`routing.trusted_networks`).
    TrustedNetwork,
    /// An organisation's server, by its registered TLS client certificate.
    Certificate,
    /// A hosted mailbox, logged in with SMTP AUTH.
    SmtpAuth,
    /// A client on the secure networks (only as a reason a sender counts as secure).
    SecureNetwork,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::None => "none",
            Trust::TrustedNetwork => "trusted-network",
            Trust::Certificate => "certificate",
            Trust::SmtpAuth => "smtp-auth",
            Trust::SecureNetwork => "secure-network",
        }
    }

    /// A directory user sending as itself: an authenticated mailbox, an organisation's server.
    pub fn is_hub_user(self) -> bool {
        matches!(self, Trust::SmtpAuth | Trust::Certificate)
    }
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    pub const ALL: [Action; 4] = [
        Action::Accept,
        Action::Reject,
        Action::Tempfail,
        Action::Quarantine,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
            Action::Tempfail => "tempfail",
            Action::Quarantine => "quarantine",
        }
    }
}

/// The stage of the SMTP transaction a refusal is answered at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Mail,
    Rcpt,
    Data,
    Eom,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Mail, Stage::Rcpt, Stage::Data, Stage::Eom];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Eom => "eom",
        }
    }
}

/// Why a verdict is what it is: a fixed set, safe as a metric label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    #[default]
    Ok,
    Encrypt,
    ReportOnly,
    Limits,
    AboveCeiling,
    NoSecureRoute,
    TooLargeToEncrypt,
    NoInboundTls,
    FromNotSender,
    SenderSyntax,
    SenderNotQualified,
    SenderNotOwnAddress,
    SenderNotOnSecureNetwork,
    SenderSuspended,
    SenderUnknown,
    SenderNotAuthorised,
    SenderNotAuthenticated,
    SenderNotSecure,
    RecipientSyntax,
    RecipientNotQualified,
    RecipientUnknown,
    RecipientSuspended,
    TooManyRecipients,
    StoreError,
    Deadline,
    InternalError,
    EncryptionError,
}

impl Reason {
    pub const ALL: [Reason; 27] = [
        Reason::Ok,
        Reason::Encrypt,
        Reason::ReportOnly,
        Reason::Limits,
        Reason::AboveCeiling,
        Reason::NoSecureRoute,
        Reason::TooLargeToEncrypt,
        Reason::NoInboundTls,
        Reason::FromNotSender,
        Reason::SenderSyntax,
        Reason::SenderNotQualified,
        Reason::SenderNotOwnAddress,
        Reason::SenderNotOnSecureNetwork,
        Reason::SenderSuspended,
        Reason::SenderUnknown,
        Reason::SenderNotAuthorised,
        Reason::SenderNotAuthenticated,
        Reason::SenderNotSecure,
        Reason::RecipientSyntax,
        Reason::RecipientNotQualified,
        Reason::RecipientUnknown,
        Reason::RecipientSuspended,
        Reason::TooManyRecipients,
        Reason::StoreError,
        Reason::Deadline,
        Reason::InternalError,
        Reason::EncryptionError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Encrypt => "encrypt",
            Reason::ReportOnly => "report-only",
            Reason::Limits => "limits",
            Reason::AboveCeiling => "above-ceiling",
            Reason::NoSecureRoute => "no-secure-route",
            Reason::TooLargeToEncrypt => "too-large-to-encrypt",
            Reason::NoInboundTls => "no-inbound-tls",
            Reason::FromNotSender => "from-not-sender",
            Reason::SenderSyntax => "sender-syntax",
            Reason::SenderNotQualified => "sender-not-qualified",
            Reason::SenderNotOwnAddress => "sender-not-own-address",
            Reason::SenderNotOnSecureNetwork => "sender-not-on-secure-network",
            Reason::SenderSuspended => "sender-suspended",
            Reason::SenderUnknown => "sender-unknown",
            Reason::SenderNotAuthorised => "sender-not-authorised",
            Reason::SenderNotAuthenticated => "sender-not-authenticated",
            Reason::SenderNotSecure => "sender-not-secure",
            Reason::RecipientSyntax => "recipient-syntax",
            Reason::RecipientNotQualified => "recipient-not-qualified",
            Reason::RecipientUnknown => "recipient-unknown",
            Reason::RecipientSuspended => "recipient-suspended",
            Reason::TooManyRecipients => "too-many-recipients",
            Reason::StoreError => "store-error",
            Reason::Deadline => "deadline",
            Reason::InternalError => "internal-error",
            Reason::EncryptionError => "encryption-error",
        }
    }

    /// Where a refusal for this reason is answered, and how: what the metrics count
    /// (`cjsm_refusals_total{stage,action,reason}`), so every series exists from the start.
    /// Internal failures can happen at any stage; `limits` refuses as `limits.on_exceeded` says.
    pub fn refusals(self) -> Vec<(Stage, Action)> {
        use Action::{Reject, Tempfail};
        match self {
            Reason::Ok | Reason::Encrypt | Reason::ReportOnly => Vec::new(),
            Reason::StoreError | Reason::Deadline | Reason::InternalError => {
                Stage::ALL.iter().map(|&stage| (stage, Tempfail)).collect()
            }
            Reason::EncryptionError => vec![(Stage::Eom, Tempfail)],
            Reason::Limits => vec![(Stage::Eom, Reject), (Stage::Eom, Tempfail)],
            Reason::AboveCeiling
            | Reason::NoSecureRoute
            | Reason::TooLargeToEncrypt
            | Reason::NoInboundTls
            | Reason::FromNotSender => vec![(Stage::Eom, Reject)],
            Reason::SenderSyntax
            | Reason::SenderNotQualified
            | Reason::SenderNotOwnAddress
            | Reason::SenderNotOnSecureNetwork
            | Reason::SenderSuspended
            | Reason::SenderUnknown
            | Reason::SenderNotAuthorised
            | Reason::SenderNotAuthenticated => vec![(Stage::Mail, Reject)],
            Reason::SenderNotSecure
            | Reason::RecipientSyntax
            | Reason::RecipientNotQualified
            | Reason::RecipientUnknown
            | Reason::RecipientSuspended => vec![(Stage::Rcpt, Reject)],
            Reason::TooManyRecipients => vec![(Stage::Rcpt, Tempfail)],
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tests and reports compare a reason with its label.
impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
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

/// The decision for a message (or a recipient): it goes on, with its edits, or it is refused
/// with a reply and nothing else (a refused message is never edited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Deliver(Delivery),
    Refuse(Refusal),
}

/// A message that goes on: accepted, or quarantined with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub reason: Reason,
    pub edits: Vec<Edit>,
    /// Quarantined (held by the MTA for the operator), and why.
    pub quarantine: Option<String>,
    /// Encrypt the message for these recipients' certificates (S/MIME), done by the shell.
    pub encrypt_for: Vec<String>,
}

/// A refusal: reject or tempfail, with its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The MTA keeps the message and retries (4xx), rather than returning it (5xx).
    pub temporary: bool,
    pub reason: Reason,
    pub reply: Reply,
}

impl Verdict {
    /// A refusal with `reply`: a reject, or with `Action::Tempfail` a tempfail.
    pub(crate) fn refuse(action: Action, reason: Reason, reply: Reply) -> Verdict {
        Verdict::Refuse(Refusal {
            temporary: action == Action::Tempfail,
            reason,
            reply,
        })
    }

    /// A `550 5.7.1` refusal, the answer of most rules.
    pub(crate) fn reject(reason: Reason, text: String) -> Verdict {
        Verdict::refuse(Action::Reject, reason, Reply::new("550", "5.7.1", text))
    }

    /// The answer to any internal failure: the MTA keeps the message and retries.
    pub fn tempfail(reason: Reason) -> Verdict {
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

    /// What report mode applies whatever the verdict: the message passes unchanged.
    pub fn report_only() -> Verdict {
        Verdict::Deliver(Delivery {
            reason: Reason::ReportOnly,
            ..Delivery::default()
        })
    }

    pub fn action(&self) -> Action {
        match self {
            Verdict::Deliver(d) if d.quarantine.is_some() => Action::Quarantine,
            Verdict::Deliver(_) => Action::Accept,
            Verdict::Refuse(r) if r.temporary => Action::Tempfail,
            Verdict::Refuse(_) => Action::Reject,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            Verdict::Deliver(d) => d.reason,
            Verdict::Refuse(r) => r.reason,
        }
    }

    /// The reply of a refusal.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Verdict::Deliver(_) => None,
            Verdict::Refuse(r) => Some(&r.reply),
        }
    }

    /// The edits of a message that goes on (none for a refusal).
    pub fn edits(&self) -> &[Edit] {
        match self {
            Verdict::Deliver(d) => &d.edits,
            Verdict::Refuse(_) => &[],
        }
    }

    /// Who the message is encrypted for (none for a refusal).
    pub fn encrypt_for(&self) -> &[String] {
        match self {
            Verdict::Deliver(d) => &d.encrypt_for,
            Verdict::Refuse(_) => &[],
        }
    }

    /// Why a quarantined message is held.
    pub fn quarantine_reason(&self) -> Option<&str> {
        match self {
            Verdict::Deliver(d) => d.quarantine.as_deref(),
            Verdict::Refuse(_) => None,
        }
    }

    /// The message goes on (accepted or quarantined), with its edits.
    pub fn delivers(&self) -> bool {
        matches!(self, Verdict::Deliver(_))
    }
}

/// An envelope address that is not a plain address, or not the one the MTA made of it:
/// `553 5.1.7` (sender) or `553 5.1.3` (recipient), naming what is wrong.
pub fn not_plain(role: Role, raw: &str, why: &str) -> Verdict {
    let (reason, status, what) = match role {
        Role::Sender => (Reason::SenderSyntax, "5.1.7", "sender"),
        Role::Recipient => (Reason::RecipientSyntax, "5.1.3", "recipient"),
    };
    // The argument comes from the client: the reply text is sanitised and bounded by Reply.
    let shown: String = raw.chars().take(300).collect();
    Verdict::refuse(
        Action::Reject,
        reason,
        Reply::new(
            "553",
            status,
            format!("{shown}: the {what} must be a plain address (user@domain): {why}"),
        ),
    )
}

/// At most ten names, then a count: a reply line has room for about 980 bytes.
pub(crate) fn name_list(names: &[&str]) -> String {
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

    #[test]
    fn reasons_are_labelled_as_they_serialise() {
        for reason in Reason::ALL {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::Value::from(reason.as_str())
            );
        }
        for trust in [
            Trust::None,
            Trust::TrustedNetwork,
            Trust::Certificate,
            Trust::SmtpAuth,
            Trust::SecureNetwork,
        ] {
            assert_eq!(
                serde_json::to_value(trust).unwrap(),
                serde_json::Value::from(trust.as_str())
            );
        }
    }
}
