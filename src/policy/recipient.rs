//! RCPT: whether a recipient may receive the message, and the address it is delivered to.
//!
//! - The envelope address must be plain and agree with what the MTA made of it
//!   ([`crate::address`]); a bare user name only from the hub's own hosts.
//! - A hub mailbox (under the secure suffix) receives only from the secure community
//!   ([`closed_community_verdict`]), and must be an active user of the directory.
//! - A recipient of a server-connected organisation is delivered to its own address
//!   ([`delivery_address`]).

use super::not_plain;
use super::sender::secure_sender;
use super::{
    Action, Connection, DirectoryAnswer, Listing, Reason, Recipient, Reply, SessionFacts, Trust,
    Verdict, Zone,
};
use crate::address::{Domain, Role};
use crate::config::RoutingConfig;

/// A recipient without a domain from a client that may not use one: `553 5.1.3`.
pub fn not_qualified(raw: &str) -> Verdict {
    let mut verdict = not_plain(
        Role::Recipient,
        raw,
        "a user name without a domain is accepted only from the hub's own hosts",
    );
    if let Verdict::Refuse(refusal) = &mut verdict {
        refusal.reason = Reason::RecipientNotQualified;
    }
    verdict
}

/// RCPT stage, past the recipient bound: the client may send them in another message.
pub fn too_many_recipients() -> Verdict {
    Verdict::refuse(
        Action::Tempfail,
        Reason::TooManyRecipients,
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
            Reason::RecipientUnknown,
            Reply::new(
                "550",
                "5.1.1",
                format!("{address}: no such user in the Secure eMail Directory"),
            ),
        )),
        DirectoryAnswer::Suspended | DirectoryAnswer::Deleted => Some(Verdict::refuse(
            Action::Reject,
            Reason::RecipientSuspended,
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

/// RCPT stage: a hub mailbox (an address under the secure suffix) and a sender outside the
/// closed community: refused, naming the rule. `None` when the community is open, the
/// recipient is not a hub mailbox, or the sender is secure ([`secure_sender`]).
pub fn closed_community_verdict(
    recipient: &str,
    zone: Zone,
    sender: &str,
    trust: Trust,
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
    Some(Verdict::reject(
        Reason::SenderNotSecure,
        format!(
            "{recipient}: secure mailboxes receive mail only from the secure community (hub users, connected organisations' servers, the secure networks); {sender} is not one of them"
        ),
    ))
}

/// The address a secure-suffix recipient of a server-connected organisation is delivered to:
/// the suffix taken off again (`bob@firm.co.uk.cjsm.net` → `bob@firm.co.uk`), when what is
/// left is one of the organisation's own domains.
pub fn delivery_address(
    secure: &str,
    listing: &Listing,
    routing: &RoutingConfig,
) -> Option<String> {
    if !routing.translate {
        return None;
    }
    let org = listing.org.as_ref()?;
    if org.connection != Connection::Server || listing.answer != DirectoryAnswer::Active {
        return None;
    }
    let (local, _) = secure.rsplit_once('@')?;
    let own = Domain::of(secure)?.less(&Domain::new(&routing.secure_suffix)?)?;
    org.domains
        .iter()
        .any(|d| Domain::new(d).as_ref() == Some(&own))
        .then(|| format!("{local}@{own}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::sender::tests::{State, listing, org};
    use DirectoryAnswer::*;

    fn rcpt(address: &str, directory: DirectoryAnswer) -> Recipient {
        Recipient {
            address: address.into(),
            zone: crate::policy::zone(address, &RoutingConfig::default()),
            directory,
            deliver_to: None,
            as_received: format!("<{address}>"),
            certificate: None,
            certificate_pem: None,
        }
    }

    #[test]
    fn rcpt_and_sender_verdicts() {
        assert_eq!(
            recipient_verdict(&rcpt("a@x.cjsm.net", Unknown))
                .unwrap()
                .reply()
                .unwrap()
                .status,
            "5.1.1"
        );
        assert_eq!(
            recipient_verdict(&rcpt("a@x.cjsm.net", Suspended))
                .unwrap()
                .reply()
                .unwrap()
                .status,
            "5.2.1"
        );
        assert_eq!(
            recipient_verdict(&rcpt("a@x.cjsm.net", Deleted))
                .unwrap()
                .reply()
                .unwrap()
                .status,
            "5.2.1"
        );
        assert_eq!(recipient_verdict(&rcpt("a@x.cjsm.net", Active)), None);
        assert_eq!(recipient_verdict(&rcpt("a@gmail.com", NotAsked)), None);
    }

    #[test]
    fn delivery_addresses() {
        let routing = RoutingConfig::default();
        let bob = "bob@firm.co.uk.cjsm.net";
        let server = || Some(org(Connection::Server, true));
        assert_eq!(
            delivery_address(bob, &listing(bob, Some(State::Active), server()), &routing)
                .as_deref(),
            Some("bob@firm.co.uk")
        );
        assert_eq!(
            delivery_address(
                bob,
                &listing(bob, Some(State::Suspended), server()),
                &routing
            ),
            None
        );
        let mary = "mary@smithchambers.cjsm.net";
        let mailbox = Some(org(Connection::Mailbox, true));
        assert_eq!(
            delivery_address(mary, &listing(mary, Some(State::Active), mailbox), &routing),
            None,
            "hosted mailboxes keep their address"
        );
        let off = RoutingConfig {
            translate: false,
            ..RoutingConfig::default()
        };
        assert_eq!(
            delivery_address(bob, &listing(bob, Some(State::Active), server()), &off),
            None
        );
    }
}
