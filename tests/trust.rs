//! Every inbound-trust and translation rule tried offline with `cjsm-milter check`, which takes
//! the session facts the MTA would report as flags (--client-addr, --tls-version,
//! --cert-subject, --cert-issuer, --verify, --auth) and runs the milter's own pipeline.

mod common;

use common::cli_ok;
use std::path::Path;
use std::process::Command;

const FIRM_CERT: [&str; 4] = [
    "--cert-subject",
    "mail.firm.co.uk",
    "--cert-issuer",
    "CJSM Client CA",
];

fn setup(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("cjsm.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[routing]\nsecure_networks = [\"10.20.0.0/16\"]\n\
             trusted_networks = [\"192.0.2.0/24\"]\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    common::onboard_with(
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
    common::onboard(
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
        common::cli_add_user(&config, address, org, "A", "B");
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
    let out = Command::new(env!("CARGO_BIN_EXE_cjsm-milter"))
        .args(["--config", config.to_str().unwrap(), "check"])
        .args(["--from", from, "--rcpt", rcpt])
        .args(flags)
        .arg(message)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
    let cases: Vec<Case> = vec![
        (
            "organisation's server, Postfix's CNs",
            "alice@firm.co.uk",
            police,
            with(&FIRM_CERT),
            "ok",
            "certificate",
        ),
        (
            "organisation's server, Sendmail's DNs",
            "alice@firm.co.uk",
            police,
            with(&sendmail_cert),
            "ok",
            "certificate",
        ),
        (
            "certificate that did not verify",
            "alice@firm.co.uk",
            police,
            with(&sendmail_failed),
            "sender-not-authorised",
            "none",
        ),
        (
            "the firm's domain without its certificate",
            "alice@firm.co.uk",
            police,
            with(&[]),
            "sender-not-authorised",
            "none",
        ),
        (
            "the firm's secure addresses without its certificate",
            "alice@firm.co.uk.cjsm.net",
            police,
            with(&[]),
            "sender-not-authorised",
            "none",
        ),
        (
            "unregistered user from the firm's server",
            "mallory@firm.co.uk",
            police,
            with(&FIRM_CERT),
            "sender-unknown",
            "none",
        ),
        (
            "suspended user from the firm's server",
            "carol@firm.co.uk",
            police,
            with(&FIRM_CERT),
            "sender-suspended",
            "none",
        ),
        (
            "the firm's secure address, root-anchored, without its certificate",
            "alice@firm.co.uk.cjsm.net.",
            police,
            with(&[]),
            "sender-not-authorised",
            "none",
        ),
        (
            "a hosted mailbox, root-anchored, without SMTP AUTH",
            "mary@smithchambers.cjsm.net.",
            police,
            with(&[]),
            "sender-not-authenticated",
            "none",
        ),
        (
            "an address under the secure suffix the directory does not know",
            "nobody@unclaimed.cjsm.net",
            police,
            with(&[]),
            "sender-unknown",
            "none",
        ),
        (
            "the secure suffix itself",
            "postmaster@cjsm.net",
            police,
            with(&[]),
            "sender-unknown",
            "none",
        ),
        (
            "an unqualified sender",
            "postmaster",
            police,
            with(&[]),
            "sender-not-qualified",
            "none",
        ),
        (
            "an unqualified sender from the hub's own host",
            "postmaster",
            police,
            vec!["--client-addr", "192.0.2.5"],
            "ok",
            "trusted-network",
        ),
        (
            "hosted mailbox, logged in",
            "mary@smithchambers.cjsm.net",
            police,
            with(&["--auth", "mary@smithchambers.cjsm.net"]),
            "ok",
            "smtp-auth",
        ),
        (
            "hosted mailbox without SMTP AUTH",
            "mary@smithchambers.cjsm.net",
            police,
            with(&[]),
            "sender-not-authenticated",
            "none",
        ),
        (
            "logged in as someone else",
            "mary@smithchambers.cjsm.net",
            police,
            with(&["--auth", "john@smithchambers.cjsm.net"]),
            "sender-not-own-address",
            "none",
        ),
        (
            "the hub's own host",
            "alice@firm.co.uk",
            police,
            vec!["--client-addr", "192.0.2.5"],
            "ok",
            "trusted-network",
        ),
        (
            "OFFICIAL-SENSITIVE to a secure address without TLS",
            police,
            "bob@firm.co.uk.cjsm.net",
            vec![],
            "no-inbound-tls",
            "none",
        ),
        (
            "the same from a secure network",
            police,
            "bob@firm.co.uk.cjsm.net",
            vec!["--client-addr", "10.20.1.1"],
            "ok",
            "none",
        ),
    ];
    for (name, from, rcpt, flags, reason, trust) in cases {
        let report = check(&config, &message, from, rcpt, &flags);
        assert_eq!(report["decision"]["reason"], reason, "{name}: {report}");
        assert_eq!(report["sender_trust"], trust, "{name}: {report}");
        if reason != "ok" {
            let status = report["decision"]["reply"]["status"].as_str().unwrap();
            assert!(status.starts_with("5.7."), "{name}: {report}");
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
    let report = check(&config, &message, police, "Bob@Firm.co.uk.cjsm.net", &tls);
    assert_eq!(report["action"], "accept", "{report}");
    assert_eq!(report["delivered_as"]["recipients"][0], "bob@firm.co.uk");
    assert_eq!(report["routes"][0]["deliver_to"], "bob@firm.co.uk");
    let hosted = check(
        &config,
        &message,
        police,
        "mary@smithchambers.cjsm.net",
        &tls,
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
