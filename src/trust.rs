//! Inbound trust: who is sending, judged from the facts the MTA reports about the SMTP session
//! (client address, TLS client certificate, SMTP AUTH) and the directory's answer for the
//! sender. Pure: the lookups are done by the shell and passed in.
//!
//! - A client on a `trusted_networks` range (the hub's own hosts) is taken at its word.
//! - A sender in a server-connected organisation's domain must come from that organisation's
//!   server, recognised by the client certificate registered in the directory.
//! - A sender in a hosted-mailbox domain must have logged in (SMTP AUTH) as that address.
//! - An authenticated client may send only as itself; a suspended sender not at all.
//! - The closed community (`routing.closed_community`): a sender in a secure-network domain
//!   is believed only from a secure or trusted network, and a hub mailbox receives only from
//!   secure senders ([`secure_sender`]).
//! - A hub sender's `From:` is its own address ([`from_verdict`]).

use crate::config::RoutingConfig;
use crate::policy::{Action, DirectoryAnswer, Reply, Verdict, Zone};
use crate::store::{ClientCertificate, ConnectionType, Lookup, OrgState, normalize_address};
use serde::Serialize;
use std::net::IpAddr;

pub use crate::policy::SessionFacts;

/// Where the client connects from, by the configured address ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// One of the hub's own hosts (`routing.trusted_networks`).
    Trusted,
    /// A peer on the government secure networks (`routing.secure_networks`).
    Secure,
    Other,
}

/// The client's network, by the ranges the config parsed on load.
pub fn network(client: Option<IpAddr>, routing: &RoutingConfig) -> Network {
    let Some(client) = client else {
        return Network::Other;
    };
    // An IPv4 client seen on an IPv6 socket (::ffff:192.0.2.1) is its IPv4 address.
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let within = |ranges: &[ipnet::IpNet]| ranges.iter().any(|net| net.contains(&client));
    if within(&routing.trusted_networks) {
        Network::Trusted
    } else if within(&routing.secure_networks) {
        Network::Secure
    } else {
        Network::Other
    }
}

/// The address a sender has on the secure side: its own under the secure suffix, or with the
/// suffix added (`alice@firm.co.uk` → `alice@firm.co.uk.cjsm.net`).
pub fn secure_form(address: &str, zone: Zone, suffix: &str) -> String {
    let suffix = suffix.trim_matches('.');
    if zone == Zone::SecureSuffix || !address.contains('@') || suffix.is_empty() {
        address.to_string()
    } else {
        format!("{}.{suffix}", address.trim_end_matches('.'))
    }
}

/// The address a secure-suffix recipient of a server-connected organisation is delivered to:
/// the suffix taken off again (`bob@firm.co.uk.cjsm.net` → `bob@firm.co.uk`), when what is
/// left is one of the organisation's own domains.
pub fn delivery_address(secure: &str, lookup: &Lookup, routing: &RoutingConfig) -> Option<String> {
    if !routing.translate {
        return None;
    }
    let org = lookup.org.as_ref()?;
    if org.connection != ConnectionType::Server
        || DirectoryAnswer::from_lookup(lookup) != DirectoryAnswer::Active
    {
        return None;
    }
    let (local, domain) = secure.rsplit_once('@')?;
    let suffix = routing.secure_suffix.trim_matches('.').to_ascii_lowercase();
    let own = domain.strip_suffix(&suffix)?.strip_suffix('.')?;
    org.domains
        .iter()
        .any(|d| d == own)
        .then(|| format!("{local}@{own}"))
}

/// The common name of a distinguished name, lower-cased: Sendmail's one-line form with `+XX`
/// escapes (`/C=GB/O=Firm+20LLP/CN=mail.firm.co.uk`), an RFC 4514 string
/// (`CN=mail.firm.co.uk,O=Firm LLP`), or a bare CN as Postfix reports it. `None` when a DN
/// has no CN or more than one: a name built to look like another (an O or CN value holding
/// `/CN=...`) is ambiguous, and never matches.
pub fn common_name(dn: &str) -> Option<String> {
    let decoded = decode_xtext(dn.trim());
    let separator = if decoded.starts_with('/') {
        '/'
    } else if decoded.contains('=') {
        ','
    } else {
        return Some(decoded.to_ascii_lowercase());
    };
    let mut names = decoded.split(separator).filter_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("CN")
            .then(|| value.trim().to_ascii_lowercase())
    });
    match (names.next(), names.next()) {
        (Some(cn), None) => Some(cn),
        _ => None,
    }
}

/// The common name in a `{cert_subject}` or `{cert_issuer}` the MTA reported: Sendmail's
/// one-line DN (it starts with `/`), otherwise the CN alone, as Postfix sends it, taken
/// literally (a CN that reads like a DN is not parsed as one).
pub fn reported_common_name(value: &str) -> Option<String> {
    let value = value.trim();
    if value.starts_with('/') {
        common_name(value)
    } else {
        Some(value.to_ascii_lowercase())
    }
}

/// Sendmail's `+XX` hex escapes (xtext, RFC 3461) decoded; other text unchanged.
fn decode_xtext(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'+'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The session has a client certificate the MTA verified (Sendmail's `{verify}` is `OK`;
/// Postfix reports a certificate only when it chains to its CA file, which holds only the CA
/// of the organisations' client certificates).
pub fn certificate_verified(session: &SessionFacts) -> bool {
    session.verify.as_deref().is_none_or(|v| v == "OK")
        && session.cert_subject.is_some()
        && session.cert_issuer.is_some()
}

/// The common name of the client certificate's subject or issuer as the MTA reported it:
/// Sendmail's `{cn_subject}`/`{cn_issuer}` (the CN alone, xtext-encoded) when there is one,
/// otherwise read from `{cert_subject}`/`{cert_issuer}` ([`reported_common_name`]). The CN
/// alone cannot be made ambiguous by a DN whose other values read like a second CN.
fn session_common_name(cn: Option<&str>, dn: &str) -> Option<String> {
    match cn {
        Some(cn) => Some(decode_xtext(cn.trim()).to_ascii_lowercase()),
        None => reported_common_name(dn),
    }
}

/// The session's client certificate is the one registered: verified by the MTA
/// ([`certificate_verified`]), and subject and issuer have the registered common names.
pub fn certificate_matches(session: &SessionFacts, registered: &ClientCertificate) -> bool {
    if !certificate_verified(session) {
        return false;
    }
    let (Some(subject), Some(issuer)) = (&session.cert_subject, &session.cert_issuer) else {
        return false;
    };
    let same = |cn: Option<&str>, reported: &str, registered: &str| {
        session_common_name(cn, reported)
            .is_some_and(|cn| !cn.is_empty() && Some(cn) == common_name(registered))
    };
    same(session.cn_subject.as_deref(), subject, &registered.subject)
        && same(session.cn_issuer.as_deref(), issuer, &registered.issuer)
}

/// What MAIL learns about the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SenderOutcome {
    /// Refused at MAIL, with the reply.
    #[serde(skip)]
    pub verdict: Option<Verdict>,
    /// How the sender was recognised: `trusted-network`, `certificate`, `smtp-auth`, or
    /// `none` (a sender outside any organisation's domain, or a refused one).
    pub trust: &'static str,
    /// The secure address the envelope sender and `From:` become (address translation).
    pub translated: Option<String>,
    /// The sender as judged: the address the MTA will use, lower-case ("" for `<>`); for a
    /// refused argument that is not a plain address, the argument (bounded) for the log.
    #[serde(skip)]
    pub address: String,
}

/// How the sender was recognised, as [`SenderOutcome::trust`] says it: the labels of a
/// directory user sending as itself (an authenticated mailbox, an organisation's server).
pub fn hub_sender(trust: &str) -> bool {
    matches!(trust, "smtp-auth" | "certificate")
}

/// MAIL stage: the rules above, in order, for `sender` (normalised; empty for `<>`).
/// `lookup` is the directory's answer for the sender's [`secure_form`].
pub fn sender_outcome(
    sender: &str,
    zone: Zone,
    lookup: &Lookup,
    session: &SessionFacts,
    routing: &RoutingConfig,
) -> SenderOutcome {
    let refused = |reason: &'static str, text: String| SenderOutcome {
        verdict: Some(Verdict::refuse(
            Action::Reject,
            reason,
            Reply::new("550", "5.7.1", text),
        )),
        trust: "none",
        translated: None,
        address: sender.to_string(),
    };
    let authenticated = session.auth_user.as_deref().map(normalize_address);
    if let Some(login) = &authenticated
        && !sender.is_empty()
        && *login != sender
    {
        return refused(
            "sender-not-own-address",
            format!("Authenticated as {login}; may not send as {sender}"),
        );
    }
    let network = network(session.client_addr, routing);
    // Anyone can type a police address: one is believed only from where police mail comes.
    if routing.closed_community && zone == Zone::SecureNetwork && network == Network::Other {
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
        return refused(
            "sender-not-on-secure-network",
            format!(
                "{sender}: mail from {domain} is accepted only from the secure networks (closed community)"
            ),
        );
    }
    let answer = DirectoryAnswer::from_lookup(lookup);
    if matches!(
        answer,
        DirectoryAnswer::Suspended | DirectoryAnswer::Deleted
    ) {
        return refused(
            "sender-suspended",
            format!("Sender {sender} is not an active user of the secure service"),
        );
    }
    let trusted = network == Network::Trusted;
    let unknown = || {
        refused(
            "sender-unknown",
            format!("{sender} is not a user of the Secure eMail Directory"),
        )
    };
    // An unqualified sender is qualified by the MTA later (Postfix appends `myorigin`, which
    // on a hub may be under the secure suffix): only the hub's own hosts may send one.
    if !sender.is_empty() && !sender.contains('@') && !trusted {
        return refused(
            "sender-not-qualified",
            format!("Sender {sender} must be a full address (user@domain)"),
        );
    }
    let Some(org) = &lookup.org else {
        // Under the secure suffix, every sender is a directory user: an address there that
        // the directory does not know is not one (the hub's own hosts excepted).
        if zone == Zone::SecureSuffix && !trusted {
            return unknown();
        }
        return SenderOutcome {
            verdict: None,
            trust: if trusted { "trusted-network" } else { "none" },
            translated: None,
            address: sender.to_string(),
        };
    };
    let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
    let trust = if trusted {
        "trusted-network"
    } else {
        match org.connection {
            ConnectionType::Server => {
                let matched = org
                    .client_certificate
                    .as_ref()
                    .is_some_and(|c| certificate_matches(session, c));
                if !matched {
                    return refused(
                        "sender-not-authorised",
                        format!(
                            "{sender}: {domain} belongs to a connected organisation; its mail must come from the organisation's server with its registered TLS certificate"
                        ),
                    );
                }
                "certificate"
            }
            ConnectionType::Mailbox => {
                if authenticated.is_none() {
                    return refused(
                        "sender-not-authenticated",
                        format!("{sender}: log in (SMTP AUTH) to send as a secure mailbox"),
                    );
                }
                "smtp-auth"
            }
        }
    };
    if lookup.user.is_none() && !trusted {
        return unknown();
    }
    let translated = (routing.translate
        && zone != Zone::SecureSuffix
        && org.connection == ConnectionType::Server
        && org.state == OrgState::Active
        && answer == DirectoryAnswer::Active)
        .then(|| secure_form(sender, zone, &routing.secure_suffix));
    SenderOutcome {
        verdict: None,
        trust,
        translated,
        address: sender.to_string(),
    }
}

/// Why the sender counts as secure for a hub mailbox (the closed community), or `None`:
/// recognised as a hub user or the hub's own host ([`sender_outcome`]'s trust), or a client
/// on the secure networks. The null sender (a bounce) names nobody to recognise: it counts
/// from those networks, from a session logged in with SMTP AUTH, or from a server whose
/// client certificate the MTA verified (an organisation's server returning a bounce).
pub fn secure_sender(
    sender: &str,
    trust: &'static str,
    session: &SessionFacts,
    routing: &RoutingConfig,
) -> Option<&'static str> {
    if matches!(trust, "smtp-auth" | "certificate" | "trusted-network") {
        return Some(trust);
    }
    match network(session.client_addr, routing) {
        Network::Trusted => return Some("trusted-network"),
        Network::Secure => return Some("secure-network"),
        Network::Other => {}
    }
    if sender.is_empty() {
        if session.auth_user.is_some() {
            return Some("smtp-auth");
        }
        if certificate_verified(session) {
            return Some("certificate");
        }
    }
    None
}

/// RCPT stage: a hub mailbox (an address under the secure suffix) and a sender outside the
/// closed community: refused, naming the rule. `None` when the community is open, the
/// recipient is not a hub mailbox, or the sender is secure ([`secure_sender`]).
pub fn closed_community_verdict(
    recipient: &str,
    zone: Zone,
    sender: &str,
    trust: &'static str,
    session: &SessionFacts,
    routing: &RoutingConfig,
) -> Option<Verdict> {
    if !routing.closed_community
        || zone != Zone::SecureSuffix
        || secure_sender(sender, trust, session, routing).is_some()
    {
        return None;
    }
    let sender = if sender.is_empty() { "<>" } else { sender };
    Some(Verdict::refuse(
        Action::Reject,
        "sender-not-secure",
        Reply::new(
            "550",
            "5.7.1",
            format!(
                "{recipient}: secure mailboxes receive mail only from the secure community (hub users, connected organisations' servers, the secure networks); {sender} is not one of them"
            ),
        ),
    ))
}

/// End of message: a hub sender ([`hub_sender`]) writes as itself. The message must have
/// exactly one `From:` header holding one mailbox, the envelope sender as sent or its
/// translated secure address, without another address in its display name. `from_count` is
/// how many `From:` headers arrived, `first_from` the first one's value (`None` when it was
/// past the header bounds, or there is none). `None` when it holds.
pub fn from_verdict(
    sender: &str,
    translated: Option<&str>,
    from_count: usize,
    first_from: Option<&[u8]>,
) -> Option<Verdict> {
    let refused = |why: &str| {
        Some(Verdict::refuse(
            Action::Reject,
            "from-not-sender",
            Reply::new(
                "550",
                "5.7.1",
                format!("The From: header must be the sender's own address {sender}: {why}"),
            ),
        ))
    };
    let value = match (from_count, first_from) {
        (0, _) => return refused("there is none"),
        (1, Some(value)) => value,
        (1, None) => return refused("it is too large to check"),
        _ => return refused("there must be exactly one"),
    };
    let mut header = b"From: ".to_vec();
    header.extend_from_slice(value);
    header.extend_from_slice(b"\r\n\r\n");
    let parsed = mail_parser::MessageParser::new().parse_headers(&header);
    let addresses = match parsed.as_ref().and_then(|m| m.from()) {
        Some(mail_parser::Address::List(list)) => list.as_slice(),
        Some(mail_parser::Address::Group(_)) => return refused("a group is not an address"),
        None => return refused("no address in it"),
    };
    let [author] = addresses else {
        return refused("it must hold one address");
    };
    let own = |address: &str| {
        let address = normalize_address(address);
        address == sender || translated.is_some_and(|t| address == t)
    };
    if !author.address.as_deref().is_some_and(own) {
        return refused("it names another address");
    }
    // "dc.jones@met.pnn.police.uk" <mary@…> shows the police address to the reader: every
    // address-like word of the display name must be the sender's own too.
    let separator = |c: char| c.is_whitespace() || "()<>[]\",;:'".contains(c);
    if let Some(name) = &author.name
        && name
            .split(separator)
            .any(|word| word.contains('@') && !own(word))
    {
        return refused("its display name holds another address");
    }
    None
}

/// `value` (a header's raw value) with `from` replaced by `to` where it stands as a whole
/// address (case-insensitive); `None` when it does not appear.
pub fn replace_address(value: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let from = from.as_bytes();
    if from.is_empty() || value.len() < from.len() {
        return None;
    }
    let part_of_address =
        |b: u8| b.is_ascii_alphanumeric() || b".-_+=!#$%&'*/?^`{|}~@".contains(&b);
    let mut out = Vec::with_capacity(value.len() + to.len());
    let mut i = 0;
    let mut replaced = false;
    while i < value.len() {
        let fits = i + from.len() <= value.len()
            && value[i..i + from.len()].eq_ignore_ascii_case(from)
            && (i == 0 || !part_of_address(value[i - 1]))
            && value
                .get(i + from.len())
                .is_none_or(|&b| !part_of_address(b));
        if fits {
            out.extend_from_slice(to.as_bytes());
            i += from.len();
            replaced = true;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    replaced.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Organisation, User, UserState};

    fn org(connection: ConnectionType, state: OrgState) -> Organisation {
        let (id, domain) = match connection {
            ConnectionType::Server => ("firm", "firm.co.uk"),
            ConnectionType::Mailbox => ("smith", "smithchambers.cjsm.net"),
        };
        Organisation {
            id: id.into(),
            name: id.into(),
            domains: vec![domain.into()],
            connection,
            state,
            terms_signed: Some(1),
            admins: vec![],
            client_certificate: (connection == ConnectionType::Server).then(|| ClientCertificate {
                fingerprint: "00".repeat(32),
                subject: "/C=GB/O=Firm LLP/CN=mail.firm.co.uk".into(),
                issuer: "CN=CJSM Client CA,O=Hub".into(),
            }),
            mail_server: None,
            approved: Some(1),
            created: 0,
            updated: 0,
            revision: 1,
        }
    }

    fn lookup(address: &str, user: Option<UserState>, org: Option<Organisation>) -> Lookup {
        Lookup {
            user: user.map(|state| User {
                address: address.into(),
                org: org.as_ref().map_or("x".into(), |o| o.id.clone()),
                first_name: String::new(),
                last_name: String::new(),
                town: String::new(),
                business_type: String::new(),
                state,
                created: 0,
                updated: 0,
                smime_certificate: None,
                revision: 1,
            }),
            org,
            certificate: None,
        }
    }

    fn postfix_cert() -> SessionFacts {
        SessionFacts {
            client_addr: Some("192.0.2.10".parse().unwrap()),
            tls_version: Some("TLSv1.3".into()),
            cert_subject: Some("mail.firm.co.uk".into()),
            cert_issuer: Some("CJSM Client CA".into()),
            ..SessionFacts::default()
        }
    }

    #[test]
    fn common_names() {
        let cases = [
            ("mail.firm.co.uk", Some("mail.firm.co.uk")),
            (
                "/C=GB/O=Firm+20LLP/CN=mail.firm.co.uk",
                Some("mail.firm.co.uk"),
            ),
            (
                "CN=Mail.Firm.co.uk,O=Firm LLP,C=GB",
                Some("mail.firm.co.uk"),
            ),
            (
                "C = GB, O = Firm LLP, CN = mail.firm.co.uk",
                Some("mail.firm.co.uk"),
            ),
            ("/CN=CJSM+20Client+20CA", Some("cjsm client ca")),
            ("+2", Some("+2")),
            ("", Some("")),
            // Ambiguous: no CN, or a value that smuggles in a second one.
            ("/C=GB/O=Firm", None),
            ("/O=x/CN=evil.example/CN=mail.firm.co.uk", None),
            ("CN=evil.example,O=x,CN=mail.firm.co.uk", None),
        ];
        for (dn, cn) in cases {
            assert_eq!(common_name(dn).as_deref(), cn, "{dn}");
        }
        // What the MTA reports: Postfix's bare CN is taken literally, even if it reads like
        // a DN; Sendmail's one-line DN is parsed.
        let reported = [
            ("mail.firm.co.uk", Some("mail.firm.co.uk")),
            ("CN=mail.firm.co.uk,O=x", Some("cn=mail.firm.co.uk,o=x")),
            ("/C=GB/CN=mail.firm.co.uk", Some("mail.firm.co.uk")),
            ("/C=GB/CN=x/CN=mail.firm.co.uk", None),
        ];
        for (value, cn) in reported {
            assert_eq!(reported_common_name(value).as_deref(), cn, "{value}");
        }
    }

    #[test]
    fn certificates() {
        let registered = org(ConnectionType::Server, OrgState::Active)
            .client_certificate
            .unwrap();
        let sendmail = SessionFacts {
            cert_subject: Some("/C=GB/O=Firm+20LLP/CN=mail.firm.co.uk".into()),
            cert_issuer: Some("/O=Hub/CN=CJSM+20Client+20CA".into()),
            verify: Some("OK".into()),
            ..SessionFacts::default()
        };
        let cases: Vec<(&str, SessionFacts, bool)> = vec![
            ("postfix CNs", postfix_cert(), true),
            ("sendmail DNs, verified", sendmail.clone(), true),
            (
                "sendmail, verify FAIL",
                SessionFacts {
                    verify: Some("FAIL".into()),
                    ..sendmail.clone()
                },
                false,
            ),
            (
                "another subject",
                SessionFacts {
                    cert_subject: Some("mail.other.co.uk".into()),
                    ..postfix_cert()
                },
                false,
            ),
            (
                "another issuer",
                SessionFacts {
                    cert_issuer: Some("Some Public CA".into()),
                    ..postfix_cert()
                },
                false,
            ),
            (
                "no issuer",
                SessionFacts {
                    cert_issuer: None,
                    ..postfix_cert()
                },
                false,
            ),
            ("no certificate", SessionFacts::default(), false),
            (
                "sendmail's common names, the one-line DN ambiguous",
                SessionFacts {
                    cert_subject: Some("/C=GB/O=x/CN=y/CN=mail.firm.co.uk".into()),
                    cn_subject: Some("mail.firm.co.uk".into()),
                    cn_issuer: Some("CJSM+20Client+20CA".into()),
                    ..sendmail.clone()
                },
                true,
            ),
            (
                "sendmail's common name is another's, whatever the DN says",
                SessionFacts {
                    cn_subject: Some("mail.other.co.uk".into()),
                    ..sendmail.clone()
                },
                false,
            ),
        ];
        for (name, session, expected) in cases {
            assert_eq!(
                certificate_matches(&session, &registered),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn networks() {
        let routing = RoutingConfig {
            trusted_networks: vec!["127.0.0.1/32".parse().unwrap()],
            secure_networks: vec![
                "10.20.0.0/16".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..RoutingConfig::default()
        };
        let cases = [
            (Some("127.0.0.1"), Network::Trusted),
            (Some("::ffff:127.0.0.1"), Network::Trusted),
            (Some("127.0.0.2"), Network::Other),
            (Some("10.20.3.4"), Network::Secure),
            (Some("2001:db8::1"), Network::Secure),
            (Some("192.0.2.1"), Network::Other),
            (None, Network::Other),
        ];
        for (addr, expected) in cases {
            let addr = addr.map(|a| a.parse().unwrap());
            assert_eq!(network(addr, &routing), expected, "{addr:?}");
        }
    }

    #[test]
    fn sender_rules() {
        let routing = RoutingConfig {
            trusted_networks: vec!["127.0.0.1/32".parse().unwrap()],
            ..RoutingConfig::default()
        };
        let server = || Some(org(ConnectionType::Server, OrgState::Active));
        let mailbox = || Some(org(ConnectionType::Mailbox, OrgState::Active));
        let auth = |user: &str| SessionFacts {
            auth_user: Some(user.into()),
            tls_version: Some("TLSv1.3".into()),
            ..SessionFacts::default()
        };
        let local = SessionFacts {
            client_addr: Some("127.0.0.1".parse().unwrap()),
            ..SessionFacts::default()
        };
        let plain = SessionFacts::default();
        let alice = "alice@firm.co.uk";
        let alice_secure = "alice@firm.co.uk.cjsm.net";
        let mary = "mary@smithchambers.cjsm.net";
        // (case, sender, zone, lookup, session, reason or trust, translated)
        type Case<'a> = (
            &'a str,
            &'a str,
            Zone,
            Lookup,
            SessionFacts,
            &'a str,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "server user from the organisation's server: translated",
                alice,
                Zone::Other,
                lookup(alice_secure, Some(UserState::Active), server()),
                postfix_cert(),
                "certificate",
                Some(alice_secure),
            ),
            (
                "server user already under the suffix: not translated",
                alice_secure,
                Zone::SecureSuffix,
                lookup(alice_secure, Some(UserState::Active), server()),
                postfix_cert(),
                "certificate",
                None,
            ),
            (
                "organisation's domain without its certificate",
                alice,
                Zone::Other,
                lookup(alice_secure, Some(UserState::Active), server()),
                plain.clone(),
                "sender-not-authorised",
                None,
            ),
            (
                "organisation's domain, unknown user, no certificate",
                "mallory@firm.co.uk",
                Zone::Other,
                lookup("mallory@firm.co.uk.cjsm.net", None, server()),
                plain.clone(),
                "sender-not-authorised",
                None,
            ),
            (
                "organisation's server, unregistered user",
                "mallory@firm.co.uk",
                Zone::Other,
                lookup("mallory@firm.co.uk.cjsm.net", None, server()),
                postfix_cert(),
                "sender-unknown",
                None,
            ),
            (
                "suspended user from the organisation's server",
                alice,
                Zone::Other,
                lookup(alice_secure, Some(UserState::Suspended), server()),
                postfix_cert(),
                "sender-suspended",
                None,
            ),
            (
                "user of a suspended organisation",
                alice,
                Zone::Other,
                lookup(
                    alice_secure,
                    Some(UserState::Active),
                    Some(org(ConnectionType::Server, OrgState::Suspended)),
                ),
                postfix_cert(),
                "sender-suspended",
                None,
            ),
            (
                "mailbox user logged in as itself",
                mary,
                Zone::SecureSuffix,
                lookup(mary, Some(UserState::Active), mailbox()),
                auth("Mary@SmithChambers.cjsm.net"),
                "smtp-auth",
                None,
            ),
            (
                "mailbox user without SMTP AUTH",
                mary,
                Zone::SecureSuffix,
                lookup(mary, Some(UserState::Active), mailbox()),
                plain.clone(),
                "sender-not-authenticated",
                None,
            ),
            (
                "logged in as someone else",
                mary,
                Zone::SecureSuffix,
                lookup(mary, Some(UserState::Active), mailbox()),
                auth("john@smithchambers.cjsm.net"),
                "sender-not-own-address",
                None,
            ),
            (
                "logged in, sending as an outside address",
                "someone@gmail.com",
                Zone::Other,
                lookup("someone@gmail.com.cjsm.net", None, None),
                auth(mary),
                "sender-not-own-address",
                None,
            ),
            (
                "suspended mailbox user, logged in",
                mary,
                Zone::SecureSuffix,
                lookup(mary, Some(UserState::Suspended), mailbox()),
                auth(mary),
                "sender-suspended",
                None,
            ),
            (
                "the hub's own host: taken at its word, and translated",
                alice,
                Zone::Other,
                lookup(alice_secure, Some(UserState::Active), server()),
                local.clone(),
                "trusted-network",
                Some(alice_secure),
            ),
            (
                "a secure-network address from an outside client (the closed community)",
                "dc.jones@met.pnn.police.uk",
                Zone::SecureNetwork,
                lookup("dc.jones@met.pnn.police.uk.cjsm.net", None, None),
                plain.clone(),
                "sender-not-on-secure-network",
                None,
            ),
            (
                "a secure-network address from the hub's own host",
                "dc.jones@met.pnn.police.uk",
                Zone::SecureNetwork,
                lookup("dc.jones@met.pnn.police.uk.cjsm.net", None, None),
                local.clone(),
                "trusted-network",
                None,
            ),
            (
                "an outside sender",
                "someone@gmail.com",
                Zone::Other,
                lookup("someone@gmail.com.cjsm.net", None, None),
                plain.clone(),
                "none",
                None,
            ),
            (
                "the null sender",
                "",
                Zone::Other,
                Lookup::default(),
                plain.clone(),
                "none",
                None,
            ),
        ];
        for (name, sender, zone, lookup, session, expected, translated) in cases {
            let outcome = sender_outcome(sender, zone, &lookup, &session, &routing);
            let got = outcome.verdict.as_ref().map_or(outcome.trust, |v| v.reason);
            assert_eq!(got, expected, "{name}");
            assert_eq!(outcome.translated.as_deref(), translated, "{name}");
            if let Some(verdict) = &outcome.verdict {
                let reply = verdict.reply.as_ref().unwrap();
                assert_eq!((reply.code.as_str(), &reply.status[..4]), ("550", "5.7."));
            }
        }
        let off = RoutingConfig {
            translate: false,
            ..RoutingConfig::default()
        };
        let outcome = sender_outcome(
            alice,
            Zone::Other,
            &lookup(alice_secure, Some(UserState::Active), server()),
            &postfix_cert(),
            &off,
        );
        assert_eq!((outcome.trust, outcome.translated), ("certificate", None));
        let open = RoutingConfig {
            closed_community: false,
            ..RoutingConfig::default()
        };
        let outcome = sender_outcome(
            "dc.jones@met.pnn.police.uk",
            Zone::SecureNetwork,
            &Lookup::default(),
            &plain,
            &open,
        );
        assert_eq!((outcome.verdict, outcome.trust), (None, "none"));
    }

    #[test]
    fn the_closed_community() {
        let routing = RoutingConfig {
            trusted_networks: vec!["127.0.0.1/32".parse().unwrap()],
            secure_networks: vec!["10.20.0.0/16".parse().unwrap()],
            ..RoutingConfig::default()
        };
        let at = |addr: &str| SessionFacts {
            client_addr: Some(addr.parse().unwrap()),
            ..SessionFacts::default()
        };
        let outside = at("192.0.2.99");
        let sendmail_unverified = SessionFacts {
            verify: Some("NO".into()),
            ..postfix_cert()
        };
        let mary = "mary@smithchambers.cjsm.net";
        // (case, sender, trust, session, secure)
        let cases: Vec<(&str, &str, &'static str, SessionFacts, Option<&str>)> = vec![
            (
                "an authenticated user",
                mary,
                "smtp-auth",
                outside.clone(),
                Some("smtp-auth"),
            ),
            (
                "an organisation's server",
                "a@firm.co.uk",
                "certificate",
                postfix_cert(),
                Some("certificate"),
            ),
            (
                "the hub's own host",
                "x@gmail.com",
                "trusted-network",
                at("127.0.0.1"),
                Some("trusted-network"),
            ),
            (
                "a secure-network peer",
                "dc@met.pnn.police.uk",
                "none",
                at("10.20.1.1"),
                Some("secure-network"),
            ),
            ("the internet", "x@gmail.com", "none", outside.clone(), None),
            (
                "the internet, with a certificate but another sender",
                "x@gmail.com",
                "none",
                postfix_cert(),
                None,
            ),
            (
                "a bounce from the internet",
                "",
                "none",
                outside.clone(),
                None,
            ),
            (
                "a bounce from a secure-network peer",
                "",
                "none",
                at("10.20.1.1"),
                Some("secure-network"),
            ),
            (
                "a bounce from an organisation's server",
                "",
                "none",
                postfix_cert(),
                Some("certificate"),
            ),
            (
                "a bounce, certificate not verified",
                "",
                "none",
                sendmail_unverified,
                None,
            ),
            (
                "a bounce from a logged-in client",
                "",
                "none",
                SessionFacts {
                    auth_user: Some(mary.into()),
                    ..outside.clone()
                },
                Some("smtp-auth"),
            ),
        ];
        for (name, sender, trust, session, secure) in cases {
            assert_eq!(
                secure_sender(sender, trust, &session, &routing),
                secure,
                "{name}"
            );
            let verdict = closed_community_verdict(
                mary,
                Zone::SecureSuffix,
                sender,
                trust,
                &session,
                &routing,
            );
            assert_eq!(verdict.is_none(), secure.is_some(), "{name}");
            if let Some(verdict) = verdict {
                assert_eq!(verdict.reason, "sender-not-secure");
                assert_eq!(verdict.reply.unwrap().to_string()[..9], *"550 5.7.1");
            }
            // Only hub mailboxes are closed; an open community has no such rule.
            for zone in [Zone::SecureNetwork, Zone::Other] {
                assert!(
                    closed_community_verdict(
                        "a@b.example",
                        zone,
                        sender,
                        trust,
                        &session,
                        &routing
                    )
                    .is_none()
                );
            }
            let open = RoutingConfig {
                closed_community: false,
                ..routing.clone()
            };
            assert!(
                closed_community_verdict(mary, Zone::SecureSuffix, sender, trust, &session, &open)
                    .is_none()
            );
        }
    }

    #[test]
    fn a_hub_sender_writes_as_itself() {
        let mary = "mary@smithchambers.cjsm.net";
        let alice = "alice@firm.co.uk";
        let alice_secure = "alice@firm.co.uk.cjsm.net";
        // (sender, translated, From: values, holds)
        type Case<'a> = (&'a str, Option<&'a str>, Vec<&'a [u8]>, bool);
        let cases: Vec<Case> = vec![
            (
                mary,
                None,
                vec![b"Mary Smith <Mary@SmithChambers.cjsm.net>"],
                true,
            ),
            (mary, None, vec![b"mary@smithchambers.cjsm.net"], true),
            (
                mary,
                None,
                vec![b"\"Mary Smith (mary@smithchambers.cjsm.net)\" <mary@smithchambers.cjsm.net>"],
                true,
            ),
            (
                mary,
                None,
                vec![b"=?utf-8?q?Mary?= <mary@smithchambers.cjsm.net>"],
                true,
            ),
            (
                mary,
                None,
                vec![b"DC Jones <dc.jones@met.pnn.police.uk>"],
                false,
            ),
            (
                mary,
                None,
                vec![b"\"dc.jones@met.pnn.police.uk\" <mary@smithchambers.cjsm.net>"],
                false,
            ),
            (
                mary,
                None,
                vec![b"=?utf-8?q?dc.jones=40met.pnn.police.uk?= <mary@smithchambers.cjsm.net>"],
                false,
            ),
            (
                mary,
                None,
                vec![b"mary@smithchambers.cjsm.net, dc.jones@met.pnn.police.uk"],
                false,
            ),
            (
                mary,
                None,
                vec![b"team: mary@smithchambers.cjsm.net;"],
                false,
            ),
            (
                mary,
                None,
                vec![
                    b"mary@smithchambers.cjsm.net",
                    b"mary@smithchambers.cjsm.net",
                ],
                false,
            ),
            (mary, None, vec![b"undisclosed"], false),
            (mary, None, vec![b""], false),
            (mary, None, vec![], false),
            (
                alice,
                Some(alice_secure),
                vec![b"Alice <alice@firm.co.uk>"],
                true,
            ),
            (
                alice,
                Some(alice_secure),
                vec![b"Alice <alice@firm.co.uk.cjsm.net>"],
                true,
            ),
            (
                alice,
                Some(alice_secure),
                vec![b"Bob <bob@firm.co.uk>"],
                false,
            ),
        ];
        for (sender, translated, from, holds) in cases {
            let verdict = from_verdict(sender, translated, from.len(), from.first().copied());
            assert_eq!(verdict.is_none(), holds, "{sender} {from:?}: {verdict:?}");
            if let Some(verdict) = verdict {
                assert_eq!(verdict.reason, "from-not-sender");
            }
        }
        // A From: past the header bounds cannot be checked: refused.
        assert!(from_verdict(mary, None, 1, None).is_some());
    }

    #[test]
    fn delivery_addresses() {
        let routing = RoutingConfig::default();
        let bob = "bob@firm.co.uk.cjsm.net";
        let server = || Some(org(ConnectionType::Server, OrgState::Active));
        assert_eq!(
            delivery_address(
                bob,
                &lookup(bob, Some(UserState::Active), server()),
                &routing
            )
            .as_deref(),
            Some("bob@firm.co.uk")
        );
        assert_eq!(
            delivery_address(
                bob,
                &lookup(bob, Some(UserState::Suspended), server()),
                &routing
            ),
            None
        );
        let mary = "mary@smithchambers.cjsm.net";
        let mailbox = Some(org(ConnectionType::Mailbox, OrgState::Active));
        assert_eq!(
            delivery_address(
                mary,
                &lookup(mary, Some(UserState::Active), mailbox),
                &routing
            ),
            None,
            "hosted mailboxes keep their address"
        );
        let off = RoutingConfig {
            translate: false,
            ..RoutingConfig::default()
        };
        assert_eq!(
            delivery_address(bob, &lookup(bob, Some(UserState::Active), server()), &off),
            None
        );
    }

    #[test]
    fn header_addresses() {
        let cases: [(&[u8], Option<&[u8]>); 6] = [
            (
                b"Alice Smith <alice@firm.co.uk>",
                Some(b"Alice Smith <alice@firm.co.uk.cjsm.net>"),
            ),
            (b"ALICE@Firm.co.uk", Some(b"alice@firm.co.uk.cjsm.net")),
            (
                b"\"alice@firm.co.uk\" <alice@firm.co.uk>",
                Some(b"\"alice@firm.co.uk.cjsm.net\" <alice@firm.co.uk.cjsm.net>"),
            ),
            (b"malice@firm.co.uk", None),
            (b"alice@firm.co.uk.evil.com", None),
            (b"Bob <bob@firm.co.uk>", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                replace_address(value, "alice@firm.co.uk", "alice@firm.co.uk.cjsm.net").as_deref(),
                expected,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
