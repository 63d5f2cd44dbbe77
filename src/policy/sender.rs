//! MAIL: who is sending, judged from the facts the MTA reports about the SMTP session (client
//! address, TLS client certificate, SMTP AUTH) and the directory's answer for the sender.
//!
//! - A client on a `trusted_networks` range (the hub's own hosts) is taken at its word.
//! - A sender in a server-connected organisation's domain must come from that organisation's
//!   server, recognised by the client certificate registered in the directory.
//! - A sender in a hosted-mailbox domain must have logged in (SMTP AUTH) as that address.
//! - An authenticated client may send only as itself; a suspended sender not at all.
//! - The closed community (`routing.closed_community`): a sender in a secure-network domain
//!   is believed only from a secure or trusted network; whether a sender counts as secure for
//!   a hub mailbox is [`secure_sender`] (the rule itself is the recipient's).
//! - A hub sender's `From:` is its own address ([`from_verdict`]).

use super::client::{Network, certificate_matches, certificate_verified, network};
use super::{Connection, DirectoryAnswer, Listing, Reason, SessionFacts, Trust, Verdict, Zone};
use crate::address;
use crate::config::RoutingConfig;
use serde::Serialize;

/// The address a sender has on the secure side: its own under the secure suffix, or with the
/// suffix added (`alice@firm.co.uk` → `alice@firm.co.uk.cjsm.net`).
pub fn secure_form(address: &str, zone: Zone, suffix: &str) -> String {
    if zone == Zone::SecureSuffix {
        address.to_string()
    } else {
        address::with_suffix(address, suffix)
    }
}

/// What MAIL learns about the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SenderOutcome {
    /// Refused at MAIL, with the reply.
    #[serde(skip)]
    pub verdict: Option<Verdict>,
    /// How the sender was recognised.
    pub trust: Trust,
    /// The secure address the envelope sender and `From:` become (address translation).
    pub translated: Option<String>,
    /// The sender as judged: the address the MTA will use, lower-case ("" for `<>`); for a
    /// refused argument that is not a plain address, the argument (bounded) for the log.
    #[serde(skip)]
    pub address: String,
}

/// MAIL stage: the rules above, in order, for `sender` (normalised; empty for `<>`).
/// `listing` is the directory's answer for the sender's [`secure_form`].
pub fn sender_outcome(
    sender: &str,
    zone: Zone,
    listing: &Listing,
    session: &SessionFacts,
    routing: &RoutingConfig,
) -> SenderOutcome {
    let refused = |reason: Reason, text: String| SenderOutcome {
        verdict: Some(Verdict::reject(reason, text)),
        trust: Trust::None,
        translated: None,
        address: sender.to_string(),
    };
    let authenticated = session.auth_user.as_deref().map(address::normalize_address);
    if let Some(login) = &authenticated
        && !sender.is_empty()
        && *login != sender
    {
        return refused(
            Reason::SenderNotOwnAddress,
            format!("Authenticated as {login}; may not send as {sender}"),
        );
    }
    let network = network(session.client_addr, routing);
    // Anyone can type a police address: one is believed only from where police mail comes.
    if routing.closed_community && zone == Zone::SecureNetwork && network == Network::Other {
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
        return refused(
            Reason::SenderNotOnSecureNetwork,
            format!(
                "{sender}: mail from {domain} is accepted only from the secure networks (closed community)"
            ),
        );
    }
    let answer = listing.answer;
    if matches!(
        answer,
        DirectoryAnswer::Suspended | DirectoryAnswer::Deleted
    ) {
        return refused(
            Reason::SenderSuspended,
            format!("Sender {sender} is not an active user of the secure service"),
        );
    }
    let trusted = network == Network::Trusted;
    let unknown = || {
        refused(
            Reason::SenderUnknown,
            format!("{sender} is not a user of the Secure eMail Directory"),
        )
    };
    // An unqualified sender is qualified by the MTA later (Postfix appends `myorigin`, which
    // on a hub may be under the secure suffix): only the hub's own hosts may send one.
    if !sender.is_empty() && !sender.contains('@') && !trusted {
        return refused(
            Reason::SenderNotQualified,
            format!("Sender {sender} must be a full address (user@domain)"),
        );
    }
    let Some(org) = &listing.org else {
        // Under the secure suffix, every sender is a directory user: an address there that
        // the directory does not know is not one (the hub's own hosts excepted).
        if zone == Zone::SecureSuffix && !trusted {
            return unknown();
        }
        return SenderOutcome {
            verdict: None,
            trust: if trusted {
                Trust::TrustedNetwork
            } else {
                Trust::None
            },
            translated: None,
            address: sender.to_string(),
        };
    };
    let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
    let trust = if trusted {
        Trust::TrustedNetwork
    } else {
        match org.connection {
            Connection::Server => {
                let matched = org
                    .client_certificate
                    .as_ref()
                    .is_some_and(|c| certificate_matches(session, c));
                if !matched {
                    return refused(
                        Reason::SenderNotAuthorised,
                        format!(
                            "{sender}: {domain} belongs to a connected organisation; its mail must come from the organisation's server with its registered TLS certificate"
                        ),
                    );
                }
                Trust::Certificate
            }
            Connection::Mailbox => {
                if authenticated.is_none() {
                    return refused(
                        Reason::SenderNotAuthenticated,
                        format!("{sender}: log in (SMTP AUTH) to send as a secure mailbox"),
                    );
                }
                Trust::SmtpAuth
            }
        }
    };
    if answer == DirectoryAnswer::Unknown && !trusted {
        return unknown();
    }
    let translated = (routing.translate
        && zone != Zone::SecureSuffix
        && org.connection == Connection::Server
        && org.active
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
    trust: Trust,
    session: &SessionFacts,
    routing: &RoutingConfig,
) -> Option<Trust> {
    if matches!(
        trust,
        Trust::SmtpAuth | Trust::Certificate | Trust::TrustedNetwork
    ) {
        return Some(trust);
    }
    match network(session.client_addr, routing) {
        Network::Trusted => return Some(Trust::TrustedNetwork),
        Network::Secure => return Some(Trust::SecureNetwork),
        Network::Other => {}
    }
    if sender.is_empty() {
        if session.auth_user.is_some() {
            return Some(Trust::SmtpAuth);
        }
        if certificate_verified(session) {
            return Some(Trust::Certificate);
        }
    }
    None
}

/// End of message: a hub sender ([`Trust::is_hub_user`]) writes as itself. The message must have
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
        Some(Verdict::reject(
            Reason::FromNotSender,
            format!("The From: header must be the sender's own address {sender}: {why}"),
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
    let own = |named: &str| {
        let named = address::normalize_address(named);
        named == sender || translated.is_some_and(|t| named == t)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::client::tests::postfix_cert;
    use crate::policy::recipient::closed_community_verdict;
    use crate::policy::{OrgListing, RegisteredCertificate};

    /// A user's state, before the organisation's state is folded in.
    #[derive(Clone, Copy)]
    pub(crate) enum State {
        Active,
        Suspended,
    }

    /// An organisation: a server one (`firm.co.uk`, with its client certificate) or a mailbox
    /// one (`smithchambers.cjsm.net`), active or not.
    pub(crate) fn org(connection: Connection, active: bool) -> OrgListing {
        let domain = match connection {
            Connection::Server => "firm.co.uk",
            Connection::Mailbox => "smithchambers.cjsm.net",
        };
        OrgListing {
            connection,
            active,
            domains: vec![domain.into()],
            client_certificate: (connection == Connection::Server).then(|| RegisteredCertificate {
                subject: "/C=GB/O=Firm LLP/CN=mail.firm.co.uk".into(),
                issuer: "CN=CJSM Client CA,O=Hub".into(),
            }),
        }
    }

    /// The directory's answer for an address: a user in `state` (none: no such user) of `org`.
    /// Only users of an active organisation are active (the shell folds the states in).
    pub(crate) fn listing(_address: &str, user: Option<State>, org: Option<OrgListing>) -> Listing {
        let active_org = org.as_ref().is_some_and(|o| o.active);
        Listing {
            answer: match user {
                None => DirectoryAnswer::Unknown,
                Some(State::Active) if active_org => DirectoryAnswer::Active,
                Some(_) => DirectoryAnswer::Suspended,
            },
            org,
            certificate: None,
        }
    }

    #[test]
    fn sender_rules() {
        let routing = RoutingConfig {
            trusted_networks: vec!["127.0.0.1/32".parse().unwrap()],
            ..RoutingConfig::default()
        };
        let server = || Some(org(Connection::Server, true));
        let mailbox = || Some(org(Connection::Mailbox, true));
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
            Listing,
            SessionFacts,
            &'a str,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "server user from the organisation's server: translated",
                alice,
                Zone::Other,
                listing(alice_secure, Some(State::Active), server()),
                postfix_cert(),
                "certificate",
                Some(alice_secure),
            ),
            (
                "server user already under the suffix: not translated",
                alice_secure,
                Zone::SecureSuffix,
                listing(alice_secure, Some(State::Active), server()),
                postfix_cert(),
                "certificate",
                None,
            ),
            (
                "organisation's domain without its certificate",
                alice,
                Zone::Other,
                listing(alice_secure, Some(State::Active), server()),
                plain.clone(),
                "sender-not-authorised",
                None,
            ),
            (
                "organisation's domain, unknown user, no certificate",
                "mallory@firm.co.uk",
                Zone::Other,
                listing("mallory@firm.co.uk.cjsm.net", None, server()),
                plain.clone(),
                "sender-not-authorised",
                None,
            ),
            (
                "organisation's server, unregistered user",
                "mallory@firm.co.uk",
                Zone::Other,
                listing("mallory@firm.co.uk.cjsm.net", None, server()),
                postfix_cert(),
                "sender-unknown",
                None,
            ),
            (
                "suspended user from the organisation's server",
                alice,
                Zone::Other,
                listing(alice_secure, Some(State::Suspended), server()),
                postfix_cert(),
                "sender-suspended",
                None,
            ),
            (
                "user of a suspended organisation",
                alice,
                Zone::Other,
                listing(
                    alice_secure,
                    Some(State::Active),
                    Some(org(Connection::Server, false)),
                ),
                postfix_cert(),
                "sender-suspended",
                None,
            ),
            (
                "mailbox user logged in as itself",
                mary,
                Zone::SecureSuffix,
                listing(mary, Some(State::Active), mailbox()),
                auth("Mary@SmithChambers.cjsm.net"),
                "smtp-auth",
                None,
            ),
            (
                "mailbox user without SMTP AUTH",
                mary,
                Zone::SecureSuffix,
                listing(mary, Some(State::Active), mailbox()),
                plain.clone(),
                "sender-not-authenticated",
                None,
            ),
            (
                "logged in as someone else",
                mary,
                Zone::SecureSuffix,
                listing(mary, Some(State::Active), mailbox()),
                auth("john@smithchambers.cjsm.net"),
                "sender-not-own-address",
                None,
            ),
            (
                "logged in, sending as an outside address",
                "someone@gmail.com",
                Zone::Other,
                listing("someone@gmail.com.cjsm.net", None, None),
                auth(mary),
                "sender-not-own-address",
                None,
            ),
            (
                "suspended mailbox user, logged in",
                mary,
                Zone::SecureSuffix,
                listing(mary, Some(State::Suspended), mailbox()),
                auth(mary),
                "sender-suspended",
                None,
            ),
            (
                "the hub's own host: taken at its word, and translated",
                alice,
                Zone::Other,
                listing(alice_secure, Some(State::Active), server()),
                local.clone(),
                "trusted-network",
                Some(alice_secure),
            ),
            (
                "a secure-network address from an outside client (the closed community)",
                "dc.jones@met.pnn.police.uk",
                Zone::SecureNetwork,
                listing("dc.jones@met.pnn.police.uk.cjsm.net", None, None),
                plain.clone(),
                "sender-not-on-secure-network",
                None,
            ),
            (
                "a secure-network address from the hub's own host",
                "dc.jones@met.pnn.police.uk",
                Zone::SecureNetwork,
                listing("dc.jones@met.pnn.police.uk.cjsm.net", None, None),
                local.clone(),
                "trusted-network",
                None,
            ),
            (
                "an outside sender",
                "someone@gmail.com",
                Zone::Other,
                listing("someone@gmail.com.cjsm.net", None, None),
                plain.clone(),
                "none",
                None,
            ),
            (
                "the null sender",
                "",
                Zone::Other,
                Listing::default(),
                plain.clone(),
                "none",
                None,
            ),
        ];
        for (name, sender, zone, lookup, session, expected, translated) in cases {
            let outcome = sender_outcome(sender, zone, &lookup, &session, &routing);
            let got = outcome
                .verdict
                .as_ref()
                .map_or(outcome.trust.as_str(), |v| v.reason().as_str());
            assert_eq!(got, expected, "{name}");
            assert_eq!(outcome.translated.as_deref(), translated, "{name}");
            if let Some(verdict) = &outcome.verdict {
                let reply = verdict.reply().unwrap();
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
            &listing(alice_secure, Some(State::Active), server()),
            &postfix_cert(),
            &off,
        );
        assert_eq!(
            (outcome.trust, outcome.translated),
            (Trust::Certificate, None)
        );
        let open = RoutingConfig {
            closed_community: false,
            ..RoutingConfig::default()
        };
        let outcome = sender_outcome(
            "dc.jones@met.pnn.police.uk",
            Zone::SecureNetwork,
            &Listing::default(),
            &plain,
            &open,
        );
        assert_eq!((outcome.verdict, outcome.trust), (None, Trust::None));
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
        let cases: Vec<(&str, &str, Trust, SessionFacts, Option<Trust>)> = vec![
            (
                "an authenticated user",
                mary,
                Trust::SmtpAuth,
                outside.clone(),
                Some(Trust::SmtpAuth),
            ),
            (
                "an organisation's server",
                "a@firm.co.uk",
                Trust::Certificate,
                postfix_cert(),
                Some(Trust::Certificate),
            ),
            (
                "the hub's own host",
                "x@gmail.com",
                Trust::TrustedNetwork,
                at("127.0.0.1"),
                Some(Trust::TrustedNetwork),
            ),
            (
                "a secure-network peer",
                "dc@met.pnn.police.uk",
                Trust::None,
                at("10.20.1.1"),
                Some(Trust::SecureNetwork),
            ),
            (
                "the internet",
                "x@gmail.com",
                Trust::None,
                outside.clone(),
                None,
            ),
            (
                "the internet, with a certificate but another sender",
                "x@gmail.com",
                Trust::None,
                postfix_cert(),
                None,
            ),
            (
                "a bounce from the internet",
                "",
                Trust::None,
                outside.clone(),
                None,
            ),
            (
                "a bounce from a secure-network peer",
                "",
                Trust::None,
                at("10.20.1.1"),
                Some(Trust::SecureNetwork),
            ),
            (
                "a bounce from an organisation's server",
                "",
                Trust::None,
                postfix_cert(),
                Some(Trust::Certificate),
            ),
            (
                "a bounce, certificate not verified",
                "",
                Trust::None,
                sendmail_unverified,
                None,
            ),
            (
                "a bounce from a logged-in client",
                "",
                Trust::None,
                SessionFacts {
                    auth_user: Some(mary.into()),
                    ..outside.clone()
                },
                Some(Trust::SmtpAuth),
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
                assert_eq!(verdict.reason(), "sender-not-secure");
                assert_eq!(verdict.reply().unwrap().to_string()[..9], *"550 5.7.1");
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
                assert_eq!(verdict.reason(), "from-not-sender");
            }
        }
        // A From: past the header bounds cannot be checked: refused.
        assert!(from_verdict(mary, None, 1, None).is_some());
    }
}
