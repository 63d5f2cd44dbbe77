//! End of message: the verdict for the whole message, from its marking and its recipients.
//! [`decide`] is the rules in the order they apply; the first that refuses decides.

use super::encryption::recipients_to_encrypt_for;
use super::{Delivery, MessageFacts, Reason, Rules, Verdict, Zone, edits, name_list};
use crate::config::OverLimit;
use crate::marking::{Level, Origin};

/// End of message: the verdict for the whole message.
pub fn decide(rules: &Rules, message: &MessageFacts) -> Verdict {
    let vocab = &rules.vocab;
    let marking = vocab.level(message.classification.level);
    if let Some(refused) = above_ceiling(rules, marking) {
        return refused;
    }
    if let Some(refused) = over_limits(rules, message) {
        return refused;
    }
    let needs_secure = marking.rank >= vocab.rank(vocab.secure_from);
    let encrypt_for = match recipients_to_encrypt_for(rules, message, marking, needs_secure) {
        Ok(encrypt_for) => encrypt_for,
        Err(refused) => return *refused,
    };
    if needs_secure
        && encrypt_for.is_empty()
        && let Some(refused) = no_secure_route(message, marking)
    {
        return refused;
    }
    if let Some(refused) = no_inbound_tls(rules, message, marking) {
        return refused;
    }
    accepted(rules, message, marking, encrypt_for)
}

/// Above the ceiling (`marking.ceiling`) nothing goes through this service.
fn above_ceiling(rules: &Rules, marking: &Level) -> Option<Verdict> {
    let ceiling = rules.vocab.level(rules.vocab.ceiling);
    (marking.rank > ceiling.rank).then(|| {
        Verdict::reject(
            Reason::AboveCeiling,
            format!(
                "Message marked {} may not be sent through this service; the highest marking this service carries is {}",
                marking.name, ceiling.name
            ),
        )
    })
}

/// A message not checked whole (a bound was hit) is refused when `limits.on_exceeded` says
/// so; otherwise it goes on (read at the ceiling, or quarantined: see [`accepted`]).
fn over_limits(rules: &Rules, message: &MessageFacts) -> Option<Verdict> {
    if message.classification.limits_exceeded.is_empty() {
        return None;
    }
    match rules.config.limits.on_exceeded {
        OverLimit::Reject => Some(Verdict::reject(
            Reason::Limits,
            "Message too large or too complex to check its protective marking".into(),
        )),
        OverLimit::Tempfail => Some(Verdict::tempfail(Reason::Limits)),
        OverLimit::Ceiling | OverLimit::Quarantine => None,
    }
}

/// A marking that needs a secure route, and a recipient without one (nor encryption).
fn no_secure_route(message: &MessageFacts, marking: &Level) -> Option<Verdict> {
    let insecure: Vec<&str> = message
        .recipients
        .iter()
        .filter(|r| !r.is_secure())
        .map(|r| r.address.as_str())
        .collect();
    if insecure.is_empty() {
        return None;
    }
    let unmarked = if message.classification.source == Origin::Default {
        " (unmarked mail is treated as such)"
    } else {
        ""
    };
    Some(Verdict::reject(
        Reason::NoSecureRoute,
        format!(
            "{} mail{unmarked} can only go to secure addresses; no secure route to {}",
            marking.name,
            name_list(&insecure)
        ),
    ))
}

/// From `routing.require_tls_from` up, mail to a secure address must have come protected.
fn no_inbound_tls(rules: &Rules, message: &MessageFacts, marking: &Level) -> Option<Verdict> {
    let required = rules.require_tls_from?;
    (marking.rank >= rules.vocab.rank(required)
        && !message.inbound_protected
        && message.recipients.iter().any(|r| r.zone != Zone::Other))
    .then(|| {
        Verdict::reject(
            Reason::NoInboundTls,
            format!(
                "{} mail to a secure address must be sent over TLS (STARTTLS); this session was not encrypted",
                marking.name
            ),
        )
    })
}

/// The message goes on, with its edits: quarantined when it was not checked whole and
/// `limits.on_exceeded = "quarantine"`, otherwise accepted (and encrypted when `encrypt_for`
/// names anyone).
fn accepted(
    rules: &Rules,
    message: &MessageFacts,
    marking: &Level,
    encrypt_for: Vec<String>,
) -> Verdict {
    let encrypting = !encrypt_for.is_empty();
    let edits = edits::for_accepted(rules, message, marking, encrypting);
    let limits_exceeded = &message.classification.limits_exceeded;
    let quarantined =
        !limits_exceeded.is_empty() && rules.config.limits.on_exceeded == OverLimit::Quarantine;
    let (reason, quarantine) = if quarantined {
        let why = format!("not checked whole: {}", limits_exceeded.join("; "));
        (Reason::Limits, Some(why))
    } else if encrypting {
        (Reason::Encrypt, None)
    } else {
        (Reason::Ok, None)
    };
    Verdict::Deliver(Delivery {
        reason,
        edits,
        quarantine,
        encrypt_for,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::marking::{Classification, Origin, Place, Source};

    fn subject() -> Source {
        Source {
            within: String::new(),
            place: Place::Subject,
        }
    }
    use crate::marking::{Finding, Vocabulary};
    use crate::policy::encryption::requested;
    use crate::policy::{Action, DirectoryAnswer, Edit, Recipient};

    fn vocab() -> Vocabulary {
        rules(|_| {}).vocab
    }

    /// The rules of the default config, with encryption and the inbound TLS rule off (each
    /// test turns on what it is about), changed by `change`.
    pub(super) fn rules(change: impl FnOnce(&mut Config)) -> Rules {
        let mut config = Config::default();
        config.encryption.enabled = false;
        config.routing.require_tls_from = None;
        change(&mut config);
        Rules::new(config).unwrap()
    }

    /// What the encryption tests vary.
    #[derive(Clone, Copy)]
    struct Encryption {
        enabled: bool,
        requested: bool,
        whole: bool,
    }

    fn rcpt(address: &str, directory: DirectoryAnswer) -> Recipient {
        Recipient {
            address: address.into(),
            zone: crate::policy::zone(address, &Config::default().routing),
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
                Origin::Found(subject())
            } else {
                Origin::Default
            },
            found: level
                .map(|level| {
                    vec![Finding {
                        level,
                        source: subject(),
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
        classification: &'a Classification,
        recipients: &'a [Recipient],
    ) -> MessageFacts<'a> {
        MessageFacts {
            recipients,
            classification,
            subject_present: false,
            subject_raw: None,
            own_headers_present: 0,
            route_headers_present: 0,
            inbound_protected: true,
            sender_translation: None,
            from_raw: None,
            encryption_requested: false,
            whole: false,
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
        let rules = rules(|_| {});
        for case in cases {
            let mut c = classification(&v, case.label, false);
            c.subject = Some("hello".into());
            let facts = MessageFacts {
                subject_present: true,
                subject_raw: Some(b"hello"),
                ..facts(&c, &case.rcpts)
            };
            let verdict = decide(&rules, &facts);
            let what = format!(
                "{:?} -> {:?}",
                case.label,
                case.rcpts.iter().map(|r| &r.address).collect::<Vec<_>>()
            );
            assert_eq!(verdict.action(), case.want, "{what}: {verdict:?}");
            assert_eq!(verdict.reason(), case.reason, "{what}");
            assert_eq!(
                verdict.reply().as_ref().map(|r| r.status.as_str()),
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
        let mut c = classification(&v, Some("OFFICIAL"), false);
        c.subject = decoded.map(String::from);
        // The routing header has its own test.
        let rules = rules(|c| c.routing.route_header = None);
        decide(
            &rules,
            &MessageFacts {
                subject_present: raw.is_some(),
                subject_raw: raw.map(str::as_bytes),
                own_headers_present: own,
                ..facts(&c, rcpts)
            },
        )
        .edits()
        .to_vec()
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
        let rules = rules(|c| c.routing.route_header = None);
        let verdict = decide(
            &rules,
            &MessageFacts {
                subject_present: true,
                subject_raw: Some(b"caf\xe9 cr\xe8me"),
                ..facts(&c, &hub)
            },
        );
        assert_eq!(
            verdict.edits()[1],
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
        let verdict = decide(
            &rules,
            &MessageFacts {
                subject_present: true,
                ..facts(&c, &hub)
            },
        );
        assert_eq!(verdict.edits().len(), 1, "{:?}", verdict.edits());
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
        let c = classification(&v, Some("OFFICIAL-SENSITIVE"), true);
        let rcpts = [rcpt("a@x.pnn.police.uk", NotAsked)];
        for (on, want) in [
            (OverLimit::Ceiling, Action::Accept),
            (OverLimit::Quarantine, Action::Quarantine),
            (OverLimit::Reject, Action::Reject),
            (OverLimit::Tempfail, Action::Tempfail),
        ] {
            let rules = rules(|c| c.limits.on_exceeded = on);
            let verdict = decide(&rules, &facts(&c, &rcpts));
            assert_eq!(verdict.action(), want, "{on:?}");
        }
    }

    #[test]
    fn encryption_decisions() {
        use crate::policy::encryption::Validity;
        let v = vocab();
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
        let on = Encryption {
            enabled: true,
            requested: false,
            whole: true,
        };
        // (case, marking, recipients, encryption, reason, encrypted for, reply contains)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<Recipient>,
            Encryption,
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
                Encryption { whole: false, ..on },
                "too-large-to-encrypt",
                vec![],
                "too large to encrypt",
            ),
            (
                "encryption off: the plain refusal",
                None,
                vec![valid.clone()],
                Encryption {
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
                Encryption {
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
                Encryption {
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
                Encryption {
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
            let rules = rules(|c| c.encryption.enabled = encryption.enabled);
            let verdict = decide(
                &rules,
                &MessageFacts {
                    encryption_requested: encryption.requested,
                    whole: encryption.whole,
                    ..facts(&c, &rcpts)
                },
            );
            assert_eq!(verdict.reason(), reason, "{name}: {verdict:?}");
            assert_eq!(verdict.encrypt_for(), encrypted, "{name}");
            let text = verdict.reply().map(|r| r.text.clone()).unwrap_or_default();
            assert!(text.contains(reply), "{name}: {text}");
        }
    }

    #[test]
    fn encryption_subjects() {
        let v = vocab();
        let mut r = rcpt("expert@gmail.com", NotAsked);
        r.certificate = Some(crate::policy::encryption::Validity::Valid);
        let rcpts = [r];
        let subject = |raw: &str, neutral: &str| {
            let mut c = classification(&v, Some("OFFICIAL"), false);
            c.subject = Some(raw.into());
            let rules = rules(|c| {
                c.encryption.enabled = true;
                c.encryption.neutral_subject =
                    Some(neutral.to_string()).filter(|n| !n.trim().is_empty());
            });
            let verdict = decide(
                &rules,
                &MessageFacts {
                    subject_present: true,
                    subject_raw: Some(raw.as_bytes()),
                    encryption_requested: true,
                    whole: true,
                    ..facts(&c, &rcpts)
                },
            );
            verdict.edits().iter().find_map(|e| match e {
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
        assert!(requested(None, Some("RE: [ENCRYPT] x"), Some("[encrypt]")));
        assert!(requested(Some(b"x [encrypt]"), None, Some("[encrypt]")));
        assert!(!requested(Some(b"x encrypt"), None, Some("[encrypt]")));
        assert!(!requested(Some(b"x [encrypt]"), None, Some("")));
        assert!(!requested(Some(b"x [encrypt]"), None, None));
    }

    #[test]
    fn inbound_tls_rule() {
        let v = vocab();
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
            let mut rules = rules(|_| {});
            rules.require_tls_from = sensitive;
            let verdict = decide(
                &rules,
                &MessageFacts {
                    inbound_protected: protected,
                    ..facts(&c, rcpts)
                },
            );
            assert_eq!(verdict.reason(), want, "{label:?} {rcpts:?} {protected}");
        }
        let c = classification(&v, None, false);
        let never = decide(
            &rules(|_| {}),
            &MessageFacts {
                inbound_protected: false,
                ..facts(&c, &secure)
            },
        );
        assert_eq!(never.reason(), "ok");
    }

    #[test]
    fn route_header_and_translation_edits() {
        let v = vocab();
        let rules = rules(|_| {});
        let c = classification(&v, Some("OFFICIAL"), false);
        let mut bob = rcpt("bob@firm.co.uk.cjsm.net", Active);
        bob.deliver_to = Some("bob@firm.co.uk".into());
        let rcpts = [bob, rcpt("dc@met.pnn.police.uk", NotAsked)];
        let verdict = decide(
            &rules,
            &MessageFacts {
                route_headers_present: 2,
                sender_translation: Some(("alice@firm.co.uk", "alice@firm.co.uk.cjsm.net")),
                from_raw: Some(b"Alice <Alice@firm.co.uk>"),
                ..facts(&c, &rcpts)
            },
        );
        let edits = &verdict.edits();
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
        let open = decide(&rules, &facts(&c, &rcpts));
        assert!(open.edits().contains(&Edit::AddHeader {
            name: "X-CJSM-Route".into(),
            value: "open".into(),
        }));
        let none = super::tests::rules(|c| c.routing.route_header = None);
        let quiet = decide(&none, &facts(&c, &rcpts));
        assert!(
            !quiet
                .edits()
                .iter()
                .any(|e| matches!(e, Edit::AddHeader { name, .. } if name.is_empty()))
        );
        assert_eq!(quiet.edits().len(), 1, "{:?}", quiet.edits());
    }

    #[test]
    fn reply_names_every_recipient_bounded() {
        let v = vocab();
        let c = classification(&v, None, false);
        let rcpts: Vec<Recipient> = (0..25)
            .map(|i| rcpt(&format!("u{i}@gmail.com"), NotAsked))
            .collect();
        let verdict = decide(&rules(|_| {}), &facts(&c, &rcpts));
        let text = verdict.reply().unwrap().text.clone();
        assert!(text.contains("u0@gmail.com, u1@gmail.com"), "{text}");
        assert!(text.contains("and 15 more"), "{text}");
        assert!(text.contains("unmarked"), "{text}");
    }
}
