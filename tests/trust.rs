//! Every inbound-trust and translation rule tried offline with `cjsm-milter check`, which takes
//! the session facts the MTA would report as flags (--client-addr, --tls-version,
//! --cert-subject, --cert-issuer, --verify, --auth) and runs the milter's own pipeline.

mod common;

use common::cli::{cli, cli_ok};
use std::path::Path;

const FIRM_CERT: [&str; 4] = [
    "--cert-subject",
    "mail.firm.co.uk",
    "--cert-issuer",
    "CJSM Client CA",
];

fn setup(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store").display().to_string();
    let config = common::scenario_file(dir, "trusted_network", &[("store", &store)]);
    common::cli::onboard_with(
        &config,
        "firm",
        "Firm LLP",
        "firm.co.uk",
        "server",
        &[
            "--cert-fingerprint",
            &"ab".repeat(32),
            "--cert-subject",
            "/C=GB/O=Firm LLP/CN=mail.firm.co.uk",
            "--cert-issuer",
            "/O=Hub/CN=CJSM Client CA",
        ],
    );
    common::cli::onboard(
        &config,
        "smith",
        "Smith Chambers",
        "smithchambers.cjsm.net",
        "mailbox",
    );
    for (address, org) in [
        ("alice@firm.co.uk.cjsm.net", "firm"),
        ("bob@firm.co.uk.cjsm.net", "firm"),
        ("carol@firm.co.uk.cjsm.net", "firm"),
        ("mary@smithchambers.cjsm.net", "smith"),
    ] {
        common::cli::cli_add_user(&config, address, org, "A", "B");
    }
    cli_ok(
        &config,
        &["directory", "user", "suspend", "carol@firm.co.uk.cjsm.net"],
    );
    config
}

fn check(
    config: &Path,
    message: &Path,
    from: &str,
    rcpt: &str,
    flags: &[&str],
) -> serde_json::Value {
    let args = [&["check", "--from", from, "--rcpt", rcpt], flags].concat();
    let out = cli(config, &[&args[..], &[message.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn every_sender_rule_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let message = dir.path().join("m.eml");
    std::fs::write(
        &message,
        "From: Alice Patel <alice@firm.co.uk>\r\nSubject: OFFICIAL-SENSITIVE: witness list\r\n\r\nHello\r\n",
    )
    .unwrap();
    let tls = ["--tls-version", "TLSv1.3"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut flags = tls.to_vec();
        flags.extend_from_slice(extra);
        flags
    };
    let sendmail_cert = [
        "--cert-subject",
        "/C=GB/O=Firm+20LLP/CN=mail.firm.co.uk",
        "--cert-issuer",
        "/O=Hub/CN=CJSM+20Client+20CA",
        "--verify",
        "OK",
    ];
    let sendmail_failed = [
        "--cert-subject",
        "/C=GB/O=Firm+20LLP/CN=mail.firm.co.uk",
        "--cert-issuer",
        "/O=Hub/CN=CJSM+20Client+20CA",
        "--verify",
        "FAIL",
    ];
    let police = "dc.jones@met.pnn.police.uk";
    // (case, from, rcpt, flags, decision reason, sender trust)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<&'a str>, &'a str, &'a str);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("organisation's server, Postfix's CNs", "alice@firm.co.uk", police, with(&FIRM_CERT), "ok", "certificate"),
        ("organisation's server, Sendmail's DNs", "alice@firm.co.uk", police, with(&sendmail_cert), "ok", "certificate"),
        ("certificate that did not verify", "alice@firm.co.uk", police, with(&sendmail_failed), "sender-not-authorised", "none"),
        ("the firm's domain without its certificate", "alice@firm.co.uk", police, with(&[]), "sender-not-authorised", "none"),
        ("the firm's secure addresses without its certificate", "alice@firm.co.uk.cjsm.net", police, with(&[]), "sender-not-authorised", "none"),
        ("unregistered user from the firm's server", "mallory@firm.co.uk", police, with(&FIRM_CERT), "sender-unknown", "none"),
        ("suspended user from the firm's server", "carol@firm.co.uk", police, with(&FIRM_CERT), "sender-suspended", "none"),
        ("the firm's secure address, root-anchored: not a plain address", "alice@firm.co.uk.cjsm.net.", police, with(&[]), "sender-syntax", "none"),
        ("a hosted mailbox, root-anchored: not a plain address", "mary@smithchambers.cjsm.net.", police, with(&[]), "sender-syntax", "none"),
        ("an address under the secure suffix the directory does not know", "nobody@unclaimed.cjsm.net", police, with(&[]), "sender-unknown", "none"),
        ("the secure suffix itself", "postmaster@cjsm.net", police, with(&[]), "sender-unknown", "none"),
        ("an unqualified sender", "postmaster", police, with(&[]), "sender-not-qualified", "none"),
        ("an unqualified sender from the hub's own host", "postmaster", police, vec!["--client-addr", "192.0.2.5"], "ok", "trusted-network"),
        ("hosted mailbox, logged in", "mary@smithchambers.cjsm.net", police, with(&["--auth", "mary@smithchambers.cjsm.net"]), "ok", "smtp-auth"),
        ("hosted mailbox without SMTP AUTH", "mary@smithchambers.cjsm.net", police, with(&[]), "sender-not-authenticated", "none"),
        ("logged in as someone else", "mary@smithchambers.cjsm.net", police, with(&["--auth", "john@smithchambers.cjsm.net"]), "sender-not-own-address", "none"),
        ("the hub's own host", "alice@firm.co.uk", police, vec!["--client-addr", "192.0.2.5"], "ok", "trusted-network"),
        ("OFFICIAL-SENSITIVE to a secure address without TLS", "someone@gmail.com", police, vec![], "no-inbound-tls", "none"),
        ("the same from a secure network", police, "bob@firm.co.uk.cjsm.net", vec!["--client-addr", "10.20.1.1"], "ok", "none"),
    ];
    for (name, from, rcpt, flags, reason, trust) in cases {
        // Each sender writes as itself (a hub sender's From: must be its own address).
        let message = message_from(dir.path(), "case.eml", from);
        let report = check(&config, &message, from, rcpt, &flags);
        assert_eq!(report["decision"]["reason"], reason, "{name}: {report}");
        assert_eq!(report["sender_trust"], trust, "{name}: {report}");
        if reason != "ok" {
            let status = report["decision"]["reply"]["status"].as_str().unwrap();
            let expected = if reason == "sender-syntax" {
                "5.1.7"
            } else {
                "5.7."
            };
            assert!(status.starts_with(expected), "{name}: {report}");
        }
    }

    // Translation, as the report shows it: the sender and From: outbound, the recipient in.
    let report = check(
        &config,
        &message,
        "alice@firm.co.uk",
        police,
        &with(&FIRM_CERT),
    );
    assert_eq!(
        report["delivered_as"]["sender"], "alice@firm.co.uk.cjsm.net",
        "{report}"
    );
    assert_eq!(
        report["headers_changed"][0]["value"],
        "Alice Patel <alice@firm.co.uk.cjsm.net>"
    );
    // Police mail comes from a secure-network peer (the closed community).
    let secure_peer = ["--tls-version", "TLSv1.3", "--client-addr", "10.20.1.1"];
    let report = check(
        &config,
        &message,
        police,
        "Bob@Firm.co.uk.cjsm.net",
        &secure_peer,
    );
    assert_eq!(report["action"], "accept", "{report}");
    assert_eq!(report["delivered_as"]["recipients"][0], "bob@firm.co.uk");
    assert_eq!(report["routes"][0]["deliver_to"], "bob@firm.co.uk");
    let hosted = check(
        &config,
        &message,
        police,
        "mary@smithchambers.cjsm.net",
        &secure_peer,
    );
    assert_eq!(
        hosted["delivered_as"]["recipients"][0], "mary@smithchambers.cjsm.net",
        "hosted mailboxes keep their address"
    );
    assert!(
        hosted["headers_added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "X-CJSM-Route" && h["value"] == "secure"),
        "{hosted}"
    );
}

/// A message whose only `From:` is `from`.
fn message_from(dir: &Path, name: &str, from: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("From: {from}\r\nSubject: OFFICIAL-SENSITIVE: case file\r\n\r\nHello\r\n"),
    )
    .unwrap();
    path
}

/// The reply's "CODE STATUS" of the decision.
fn code_status(report: &serde_json::Value, at: &str) -> String {
    format!(
        "{} {}",
        report[at]["reply"]["code"].as_str().unwrap_or("-"),
        report[at]["reply"]["status"].as_str().unwrap_or("-")
    )
}

#[test]
fn envelope_addresses_must_be_plain_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let police = "dc.jones@met.pnn.police.uk";
    let message = message_from(dir.path(), "m.eml", police);
    // From a secure-network peer over TLS: nothing but the address is at fault.
    let flags = ["--client-addr", "10.20.1.1", "--tls-version", "TLSv1.3"];
    // Every form a mail server reads as another address than the text says, or that is not
    // an RFC 5321 mailbox. {} is the address: mary (a hosted mailbox) as a sender, carol (a
    // suspended user) as a recipient.
    let forms = [
        "{}(x)",
        "{} (x)",
        "g:{};",
        "@hub.example,@relay.example:{}",
        "\"x\"{}",
        "{}.",
        "{}..",
        "x\\{}",
        "{}\t",
        "ü{}",
        "x%{}",
        "x!{}",
    ];
    let with = |form: &str, address: &str| {
        let (local, domain) = address.split_once('@').unwrap();
        match form {
            "\"x\"{}" => format!("\"{local}\"@{domain}"),
            "x\\{}" => format!("{local}@{}\\.{}", &domain[..5], &domain[5..]),
            "x%{}" => format!("{local}%{domain}@hub.example"),
            "x!{}" => format!("{domain}!{local}"),
            _ => form.replace("{}", address),
        }
    };
    let mary = "mary@smithchambers.cjsm.net";
    let carol = "carol@firm.co.uk.cjsm.net";
    for form in forms {
        for bracketed in [false, true] {
            let wrap = |a: String| if bracketed { format!("<{a}>") } else { a };
            let sender = wrap(with(form, mary));
            let report = check(&config, &message, &sender, police, &flags);
            assert_eq!(
                report["decision"]["reason"], "sender-syntax",
                "{sender}: {report}"
            );
            assert_eq!(code_status(&report, "decision"), "553 5.1.7", "{sender}");
            assert_eq!(report["sender_trust"], "none", "{sender}");

            let rcpt = wrap(with(form, carol));
            let report = check(&config, &message, police, &rcpt, &flags);
            let refused = &report["refused_recipients"][0];
            assert_eq!(refused["reason"], "recipient-syntax", "{rcpt}: {report}");
            assert_eq!(
                format!(
                    "{} {}",
                    refused["reply"]["code"], refused["reply"]["status"]
                ),
                "\"553\" \"5.1.3\"",
                "{rcpt}"
            );
            assert_eq!(report["decision"]["action"], "reject", "{rcpt}: {report}");
        }
    }
    // The plain forms pass, and the null sender is a sender, not a recipient.
    for sender in [mary.to_string(), format!("<{mary}>")] {
        let report = check(
            &config,
            &message_from(dir.path(), "mary.eml", mary),
            &sender,
            police,
            &["--auth", mary, "--tls-version", "TLSv1.3"],
        );
        assert_eq!(report["decision"]["reason"], "ok", "{sender}: {report}");
    }
    let report = check(&config, &message, "<>", police, &flags);
    assert_eq!(report["decision"]["reason"], "ok", "{report}");
    let report = check(&config, &message, police, "<>", &flags);
    assert_eq!(
        report["refused_recipients"][0]["reason"],
        "recipient-syntax"
    );
    // A bare user name is qualified by the MTA: only the hub's own hosts may use one.
    let report = check(&config, &message, police, "postmaster", &flags);
    assert_eq!(
        report["refused_recipients"][0]["reason"], "recipient-not-qualified",
        "{report}"
    );
    let report = check(
        &config,
        &message,
        police,
        "postmaster",
        &["--client-addr", "192.0.2.5"],
    );
    assert_eq!(
        report["refused_recipients"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(report["recipients"][0], "postmaster", "{report}");
}

#[test]
fn hub_mailboxes_receive_only_from_the_secure_community() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let tls = ["--tls-version", "TLSv1.3"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut flags = tls.to_vec();
        flags.extend_from_slice(extra);
        flags
    };
    let police = "dc.jones@met.pnn.police.uk";
    let mary = "mary@smithchambers.cjsm.net";
    let bob = "bob@firm.co.uk.cjsm.net";
    // (case, from, rcpt, flags, decision reason, reply)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<&'a str>, &'a str, &'a str);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("an internet sender to a hub mailbox", "someone@gmail.com", mary, with(&[]), "sender-not-secure", "550 5.7.1"),
        ("an internet sender to a connected organisation's user", "someone@gmail.com", bob, with(&[]), "sender-not-secure", "550 5.7.1"),
        ("an internet sender to a secure-network address: the marking rules decide", "someone@gmail.com", police, with(&[]), "ok", "- -"),
        ("a police address from an internet client", police, police, with(&[]), "sender-not-on-secure-network", "550 5.7.1"),
        ("a police address from an internet client, to a hub mailbox", police, mary, with(&[]), "sender-not-on-secure-network", "550 5.7.1"),
        ("a police address from a secure-network peer", police, mary, with(&["--client-addr", "10.20.1.1"]), "ok", "- -"),
        ("a police address from the hub's own host", police, mary, with(&["--client-addr", "192.0.2.5"]), "ok", "- -"),
        ("an authenticated hub user", mary, bob, with(&["--auth", mary]), "ok", "- -"),
        ("a connected organisation's server", "alice@firm.co.uk", mary, with(&FIRM_CERT), "ok", "- -"),
        ("a bounce from an internet client", "<>", mary, with(&[]), "sender-not-secure", "550 5.7.1"),
        ("a bounce from a secure-network peer", "<>", mary, with(&["--client-addr", "10.20.1.1"]), "ok", "- -"),
        ("a bounce from a connected organisation's server (its verified certificate)", "<>", mary, with(&FIRM_CERT), "ok", "- -"),
    ];
    for (name, from, rcpt, flags, reason, reply) in cases {
        let header = if from == "<>" {
            "MAILER-DAEMON@x.example"
        } else {
            from
        };
        let message = message_from(dir.path(), "m.eml", header);
        let report = check(&config, &message, from, rcpt, &flags);
        assert_eq!(report["decision"]["reason"], reason, "{name}: {report}");
        assert_eq!(code_status(&report, "decision"), reply, "{name}: {report}");
        if reason != "ok" {
            let text = report["decision"]["reply"]["text"].as_str().unwrap();
            assert!(
                text.contains("secure"),
                "{name}: the reply names the rule: {text}"
            );
        }
    }

    // Opened by configuration: the internet may write to hub mailboxes again.
    let open = dir.path().join("open.toml");
    std::fs::write(
        &open,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("[routing]\n", "[routing]\nclosed_community = false\n"),
    )
    .unwrap();
    let message = message_from(dir.path(), "m.eml", "someone@gmail.com");
    let report = check(&open, &message, "someone@gmail.com", mary, &with(&[]));
    assert_eq!(report["decision"]["reason"], "ok", "{report}");
    let message = message_from(dir.path(), "m.eml", police);
    let report = check(&open, &message, police, mary, &with(&[]));
    assert_eq!(report["decision"]["reason"], "ok", "{report}");
}

#[test]
fn a_hub_sender_writes_as_itself_in_from() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let police = "dc.jones@met.pnn.police.uk";
    let mary = "mary@smithchambers.cjsm.net";
    let mary_auth = vec!["--tls-version", "TLSv1.3", "--auth", mary];
    let mut firm = vec!["--tls-version", "TLSv1.3"];
    firm.extend_from_slice(&FIRM_CERT);
    // (case, sender, session, the From: lines, decision reason)
    type Case<'a> = (&'a str, &'a str, Vec<&'a str>, &'a str, &'a str);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("mary as mary", mary, mary_auth.clone(), "From: Mary Smith <Mary@SmithChambers.cjsm.net>\r\n", "ok"),
        ("mary as a police officer", mary, mary_auth.clone(), "From: DC Jones <dc.jones@met.pnn.police.uk>\r\n", "from-not-sender"),
        ("mary and a police officer", mary, mary_auth.clone(), "From: mary@smithchambers.cjsm.net, dc.jones@met.pnn.police.uk\r\n", "from-not-sender"),
        ("mary, with a police address as her display name", mary, mary_auth.clone(), "From: \"dc.jones@met.pnn.police.uk\" <mary@smithchambers.cjsm.net>\r\n", "from-not-sender"),
        ("two From: headers", mary, mary_auth.clone(), "From: mary@smithchambers.cjsm.net\r\nFrom: dc.jones@met.pnn.police.uk\r\n", "from-not-sender"),
        ("no From: header", mary, mary_auth.clone(), "", "from-not-sender"),
        ("a group", mary, mary_auth.clone(), "From: team: mary@smithchambers.cjsm.net;\r\n", "from-not-sender"),
        ("the organisation's server, alice as alice", "alice@firm.co.uk", firm.clone(), "From: Alice Patel <alice@firm.co.uk>\r\n", "ok"),
        ("the organisation's server, alice as her secure address", "alice@firm.co.uk", firm.clone(), "From: alice@firm.co.uk.cjsm.net\r\n", "ok"),
        ("the organisation's server, alice as bob", "alice@firm.co.uk", firm.clone(), "From: Bob Patel <bob@firm.co.uk>\r\n", "from-not-sender"),
        ("not a hub sender: a police officer from a secure network", police, vec!["--client-addr", "10.20.1.1"], "From: Duty Inspector <duty.inspector@met.pnn.police.uk>\r\n", "ok"),
        ("the hub's own host is taken at its word", "alice@firm.co.uk", vec!["--client-addr", "192.0.2.5"], "From: root@hub.example\r\n", "ok"),
    ];
    for (name, from, flags, headers, reason) in cases {
        let message = dir.path().join("from.eml");
        std::fs::write(
            &message,
            format!("{headers}Subject: OFFICIAL-SENSITIVE: statement\r\n\r\nHello\r\n"),
        )
        .unwrap();
        let report = check(&config, &message, from, police, &flags);
        assert_eq!(report["decision"]["reason"], reason, "{name}: {report}");
        if reason != "ok" {
            assert_eq!(code_status(&report, "decision"), "550 5.7.1", "{name}");
        }
    }
}

#[test]
fn sendmail_certificate_common_names_are_preferred_to_the_one_line_dn() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let message = message_from(dir.path(), "m.eml", "alice@firm.co.uk");
    let police = "dc.jones@met.pnn.police.uk";
    let session = |subject: &'static str, cn: &'static str| {
        vec![
            "--tls-version",
            "TLSv1.3",
            "--cert-subject",
            subject,
            "--cert-issuer",
            "/O=Hub/CN=CJSM+20Client+20CA",
            "--cn-subject",
            cn,
            "--cn-issuer",
            "CJSM+20Client+20CA",
            "--verify",
            "OK",
        ]
    };
    // A DN whose O value reads like a second CN: ambiguous as one line, plain as {cn_subject}.
    let report = check(
        &config,
        &message,
        "alice@firm.co.uk",
        police,
        &session("/C=GB/O=x/CN=y/CN=mail.firm.co.uk", "mail.firm.co.uk"),
    );
    assert_eq!(report["sender_trust"], "certificate", "{report}");
    // {cn_subject} says whose certificate it is, whatever the one-line DN seems to say.
    let report = check(
        &config,
        &message,
        "alice@firm.co.uk",
        police,
        &session("/C=GB/CN=mail.firm.co.uk", "mail.firm.co.uk/CN=evil"),
    );
    assert_eq!(
        report["decision"]["reason"], "sender-not-authorised",
        "{report}"
    );
}
