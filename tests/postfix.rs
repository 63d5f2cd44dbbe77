//! cjsm-milter behind a real Postfix, set up as postfix/README.md says: private instances on
//! loopback (each with its own config, queue and data directories, started by the test as a
//! direct child and stopped by PID), the lines of postfix/main.cf.fragment and
//! master.cf.fragment with the test's paths and ports, the milter on the unix socket in the
//! queue directory, its socketmap answering the routing lookups, and smtp-sink as the last
//! hop. Each scenario asserts on the SMTP replies and on what reaches the sink. Certificates
//! come from a private CA made with the openssl CLI.
//!
//! The second instance plays a server-connected organisation's own mail server
//! (`firm.co.uk`): it relays its users' mail through the hub with its client certificate, and
//! receives the hub's mail for them over verified TLS.

mod common;

use common::daemon::Daemon;
use common::pki::{CA_CN, FIRM_CLIENT_CN, Pki};
use common::postfix::{Postfix, SECURE_PEER, Sink, milter_config, refs, start_hub, tls};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn postfix_with_the_milter_as_the_kit_sets_it_up() {
    let lab = tempfile::tempdir().unwrap();
    let pki = Pki::create(&lab.path().join("pki"));
    let sink = Sink::start(lab.path());
    let socketmap_port = common::free_port();
    let hub = start_hub(lab.path(), &pki, &sink, socketmap_port, false);
    let store = lab.path().join("store");
    let milter = Daemon::start(&milter_config(&hub, &store, socketmap_port));
    common::cli::smith_chambers(&milter.config, &["alice"]);
    let tls = tls(&pki);

    // Marked mail to secure recipients, over TLS, is delivered, tagged and marked.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["alice@smithchambers.cjsm.net", "clerk@met.pnn.police.uk"],
        "OFFICIAL-SENSITIVE: custody record",
        &peer(&refs(&tls)),
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let delivered = sink.wait_delivered(1);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    for expected in [
        "Subject: OFFICIAL-SENSITIVE: custody record [CJSM]",
        "X-CJSM-Marking: OFFICIAL-SENSITIVE; source=subject",
        "X-CJSM-Route: secure",
        "(using TLSv1.3",
    ] {
        assert!(
            delivered[0].contains(expected),
            "{expected}: {}",
            delivered[0]
        );
    }

    // Without TLS, from the internet to a secure-network address: refused at the end of DATA.
    let dialogue = hub.swaks(
        "someone@gmail.com",
        &["clerk@met.pnn.police.uk"],
        "OFFICIAL-SENSITIVE: custody record",
        &[],
    );
    assert!(
        dialogue.contains(
            "550 5.7.1 OFFICIAL-SENSITIVE mail to a secure address must be sent over TLS"
        ),
        "{dialogue}"
    );
    // To an insecure recipient: refused in the SMTP dialogue, at the end of DATA.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["someone@gmail.com"],
        "lunch",
        &peer(&refs(&tls)),
    );
    assert!(
        dialogue.contains("550 5.7.1 OFFICIAL-SENSITIVE mail (unmarked mail is treated as such)"),
        "{dialogue}"
    );
    // An unknown hub address: refused at RCPT.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["nobody@smithchambers.cjsm.net"],
        "OFFICIAL: x",
        &SECURE_PEER,
    );
    assert!(dialogue.contains("550 5.1.1"), "{dialogue}");
    // A hosted mailbox's address without SMTP AUTH: refused at MAIL.
    let dialogue = hub.swaks(
        "alice@smithchambers.cjsm.net",
        &["clerk@met.pnn.police.uk"],
        "OFFICIAL: x",
        &refs(&tls),
    );
    assert!(
        dialogue.contains("550 5.7.1 alice@smithchambers.cjsm.net: log in (SMTP AUTH)"),
        "{dialogue}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.delivered().len(), 1, "nothing else reached the sink");

    // The milter stopped: 4xx, nothing accepted; mail submitted on the host waits in the
    // queue, and is delivered once (exactly once) when the milter is back.
    drop(milter);
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["clerk@met.pnn.police.uk"],
        "OFFICIAL: x",
        &[],
    );
    assert!(dialogue.contains("451 4.7.1"), "{dialogue}");
    hub.submit_locally(
        "clerk@met.pnn.police.uk",
        "OFFICIAL: held while the milter was down",
        "body",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sink.delivered().len(),
        1,
        "nothing passes unchecked while the milter is down"
    );
    assert!(
        !hub.queue_is_empty(),
        "the local submission waits in the queue"
    );

    let milter = Daemon::start(&milter_config(&hub, &store, socketmap_port));
    // Wake pickup rather than wait for its 60 s poll.
    let _ = Command::new("postkick")
        .arg("-c")
        .arg(&hub.etc)
        .args(["public", "pickup", "W"])
        .status();
    let delivered = sink.wait_delivered(2);
    assert_eq!(
        delivered.len(),
        2,
        "the held message is delivered once the milter is back"
    );
    assert!(delivered.iter().any(
        |m| m.contains("Subject: OFFICIAL: held while the milter was down")
            && m.contains("X-CJSM-Marking: OFFICIAL; source=subject")
            && m.contains("X-CJSM-Route: secure")
    ));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sink.delivered().len(), 2, "and not twice");
    drop(milter);
}

/// The organisation's own server: relays its users' mail through the hub (relayhost, TLS with
/// its client certificate), and hands the hub's mail for its domain to the sink.
fn start_firm(root: &Path, pki: &Pki, port: u16, hub: &Postfix, sink: &Sink) -> Postfix {
    Postfix::start(
        root,
        "firm",
        port,
        &format!(
            "relay_domains = firm.co.uk\nrelayhost = [127.0.0.1]:{hub}\n\
             transport_maps = inline:{{ firm.co.uk=smtp:[127.0.0.1]:{sink} }}\n\
             smtpd_tls_cert_file = {server_cert}\nsmtpd_tls_key_file = {server_key}\n\
             smtpd_tls_security_level = may\nsmtpd_tls_received_header = yes\n\
             smtp_tls_cert_file = {client_cert}\nsmtp_tls_key_file = {client_key}\n\
             smtp_tls_CAfile = {ca}\nsmtp_tls_security_level = may\n\
             smtp_tls_policy_maps = inline:{{ [127.0.0.1]:{hub}=encrypt }}\n",
            hub = hub.port,
            sink = sink.port,
            server_cert = pki.firm_server_cert.display(),
            server_key = pki.firm_server_key.display(),
            client_cert = pki.firm_client_cert.display(),
            client_key = pki.firm_client_key.display(),
            ca = pki.ca.display(),
        ),
        "",
    )
}

/// `args` and the options that connect from the lab's secure network.
fn peer<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut args = args.to_vec();
    args.extend_from_slice(&SECURE_PEER);
    args
}

/// The sink's message with `needle` in it.
fn find<'m>(messages: &'m [String], needle: &str) -> &'m str {
    messages
        .iter()
        .find(|m| m.contains(needle))
        .unwrap_or_else(|| panic!("no message with {needle:?}: {messages:?}"))
}

#[test]
fn a_connected_organisation_server_through_the_hub_both_ways() {
    let lab = tempfile::tempdir().unwrap();
    let pki = Pki::create(&lab.path().join("pki"));
    let sink = Sink::start(lab.path());
    let socketmap_port = common::free_port();
    let hub = start_hub(lab.path(), &pki, &sink, socketmap_port, false);
    let firm_port = common::free_port();
    let store = lab.path().join("store");
    let milter = Daemon::start(&milter_config(&hub, &store, socketmap_port));
    let firm_server = format!("[127.0.0.1]:{firm_port}");
    common::cli::onboard_with(
        &milter.config,
        "firm",
        "Firm LLP",
        "firm.co.uk",
        "server",
        &[
            "--cert-fingerprint",
            &pki.firm_client_fingerprint,
            "--cert-subject",
            &format!("/O=Test/CN={FIRM_CLIENT_CN}"),
            "--cert-issuer",
            &format!("/O=Test/CN={CA_CN}"),
            "--mail-server",
            &firm_server,
        ],
    );
    for user in ["alice", "bob"] {
        common::cli::cli_add_user(
            &milter.config,
            &format!("{user}@firm.co.uk.cjsm.net"),
            "firm",
            user,
            "Patel",
        );
    }
    let firm = start_firm(lab.path(), &pki, firm_port, &hub, &sink);

    // The routing answers the hub's Postfix gets from the socketmap, asked with postmap.
    let socketmap = |map: &str| format!("socketmap:inet:127.0.0.1:{socketmap_port}:{map}");
    assert_eq!(
        hub.query("bob@firm.co.uk", &socketmap("transport")),
        format!("smtp:{firm_server}")
    );
    assert_eq!(hub.query("gmail.com", &socketmap("transport")), "");
    assert_eq!(
        hub.query(&firm_server, &socketmap("tlspolicy")),
        "secure match=.firm.co.uk:firm.co.uk protocols=>=TLSv1.2 ciphers=high"
    );
    assert_eq!(
        hub.query("met.pnn.police.uk", &socketmap("tlspolicy")),
        "secure match=.pnn.police.uk:pnn.police.uk protocols=>=TLSv1.2 ciphers=high"
    );
    assert_eq!(
        hub.query(
            &format!("[127.0.0.1]:{}", sink.port),
            &socketmap("tlspolicy")
        ),
        ""
    );
    // milter_header_checks, as the kit writes them.
    let checks = lab.path().join("cjsm_header_checks");
    assert_eq!(
        hub.query(
            "X-CJSM-Route: secure",
            &format!("regexp:{}", checks.display())
        ),
        "FILTER cjsm-secure:"
    );
    assert_eq!(
        hub.query(
            "X-CJSM-Route: open",
            &format!("regexp:{}", checks.display())
        ),
        ""
    );

    // Outbound: alice@firm.co.uk sends from the firm's server, which relays through the hub
    // with its client certificate. The world sees her secure address.
    let dialogue = firm.swaks(
        "alice@firm.co.uk",
        &["dc.jones@met.pnn.police.uk"],
        "OFFICIAL-SENSITIVE: witness list",
        &["--h-From", "Alice Patel <alice@firm.co.uk>"],
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let delivered = sink.wait_delivered(1);
    let outbound = find(&delivered, "witness list");
    for expected in [
        "X-Mail-Args: <alice@firm.co.uk.cjsm.net>",
        "From: Alice Patel <alice@firm.co.uk.cjsm.net>",
        "X-CJSM-Marking: OFFICIAL-SENSITIVE; source=subject",
        "X-CJSM-Route: secure",
        &format!("(Client CN \"{FIRM_CLIENT_CN}\", Issuer \"{CA_CN}\" (verified OK))"),
    ] {
        assert!(outbound.contains(expected), "{expected}: {outbound}");
    }

    // Inbound: mail to bob's secure address is delivered to bob@firm.co.uk, through the
    // transport answer, to the firm's server over verified TLS.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["bob@firm.co.uk.cjsm.net"],
        "OFFICIAL-SENSITIVE: interview",
        &peer(&refs(&tls(&pki))),
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let delivered = sink.wait_delivered(2);
    let inbound = find(&delivered, "interview");
    for expected in [
        "X-Rcpt-Args: <bob@firm.co.uk>",
        "To: bob@firm.co.uk.cjsm.net",
        "Subject: OFFICIAL-SENSITIVE: interview [CJSM]",
        "by firm.test.local (Postfix) with ESMTPS",
    ] {
        assert!(inbound.contains(expected), "{expected}: {inbound}");
    }
    let log = hub.maillog();
    assert!(
        log.contains(&format!(
            "Verified TLS connection established to 127.0.0.1[127.0.0.1]:{firm_port}"
        )),
        "the hub delivered to the firm's server over verified TLS: {log}"
    );

    // Someone else claiming the firm's domain (TLS, but no client certificate): refused.
    let dialogue = hub.swaks(
        "alice@firm.co.uk",
        &["dc.jones@met.pnn.police.uk"],
        "OFFICIAL: x",
        &refs(&tls(&pki)),
    );
    assert!(
        dialogue
            .contains("550 5.7.1 alice@firm.co.uk: firm.co.uk belongs to a connected organisation"),
        "{dialogue}"
    );

    // The milter stopped: the hub answers 4xx and the firm's server keeps the message queued;
    // milter back, a flush delivers it once.
    drop(milter);
    let dialogue = firm.swaks(
        "alice@firm.co.uk",
        &["clerk@met.pnn.police.uk"],
        "OFFICIAL: held upstream",
        &[],
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let started = std::time::Instant::now();
    // (With the milter unreachable, the hub's smtpd answers 4xx from the start: STARTTLS gets
    // "454 4.3.0 Try again later".)
    while !firm.maillog().contains("status=deferred") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the hub did not defer: {}",
            firm.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !firm.queue_is_empty(),
        "the firm's server keeps the message"
    );
    assert_eq!(
        sink.delivered().len(),
        2,
        "nothing passed while the milter was down"
    );

    let milter = Daemon::start(&milter_config(&hub, &store, socketmap_port));
    firm.flush();
    let delivered = sink.wait_delivered(3);
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    let held = find(&delivered, "held upstream");
    assert!(
        held.contains("X-Mail-Args: <alice@firm.co.uk.cjsm.net>"),
        "{held}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sink.delivered().len(), 3, "delivered once, not twice");
    assert!(firm.queue_is_empty(), "{}", firm.queue());
    drop(milter);
}

#[test]
fn milter_header_checks_send_secure_mail_only_through_the_tls_transport() {
    let lab = tempfile::tempdir().unwrap();
    let pki = Pki::create(&lab.path().join("pki"));
    let sink = Sink::start(lab.path());
    let socketmap_port = common::free_port();
    // The optional line of the fragment switched on, as the README says.
    let hub = start_hub(lab.path(), &pki, &sink, socketmap_port, true);
    let store = lab.path().join("store");
    let milter = Daemon::start(&milter_config(&hub, &store, socketmap_port));

    // Every recipient secure: X-CJSM-Route: secure, FILTER cjsm-secure:, which insists on
    // verified TLS: the message is held, never sent in clear (the sink offers no TLS).
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["clerk@met.pnn.police.uk"],
        "OFFICIAL-SENSITIVE: route me securely",
        &peer(&refs(&tls(&pki))),
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    // An open message takes the normal route to the sink.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["someone@gmail.com"],
        "OFFICIAL: lunch",
        &SECURE_PEER,
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let delivered = sink.wait_delivered(1);
    std::thread::sleep(Duration::from_secs(1));
    let delivered = if delivered.len() < 2 {
        sink.delivered()
    } else {
        delivered
    };
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(
        delivered[0].contains("X-CJSM-Route: open"),
        "{}",
        delivered[0]
    );
    let started = std::time::Instant::now();
    loop {
        let log = hub.maillog();
        if log.contains("postfix/cjsm-secure/smtp") && log.contains("status=deferred") {
            assert!(log.contains("filter: header X-CJSM-Route: secure"), "{log}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the secure message did not go to cjsm-secure: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!hub.queue_is_empty(), "held, not sent in clear");
    drop(milter);
}

#[test]
fn envelopes_that_cannot_be_forged_behind_postfix() {
    let lab = tempfile::tempdir().unwrap();
    let pki = Pki::create(&lab.path().join("pki"));
    let sink = Sink::start(lab.path());
    let socketmap_port = common::free_port();
    let hub = start_hub(lab.path(), &pki, &sink, socketmap_port, false);
    let store = lab.path().join("store");
    let milter = Daemon::start(&milter_config(&hub, &store, socketmap_port));
    common::cli::smith_chambers(&milter.config, &["mary", "sus"]);
    common::cli::cli_ok(
        &milter.config,
        &["directory", "user", "suspend", "sus@smithchambers.cjsm.net"],
    );
    let tls = tls(&pki);

    // A hosted mailbox's address dressed up so that the raw argument is not the address
    // Postfix queues: refused at MAIL, whatever the dressing.
    for from in [
        "mary@smithchambers.cjsm.net(x)",
        "g:mary@smithchambers.cjsm.net;",
    ] {
        let dialogue = hub.swaks(
            from,
            &["clerk@met.pnn.police.uk"],
            "OFFICIAL: x",
            &refs(&tls),
        );
        assert!(
            dialogue.contains("553 5.1.7") && dialogue.contains("must be a plain address"),
            "{from}: {dialogue}"
        );
    }
    // The same on RCPT for a suspended hub user: refused, not waved past the directory.
    for to in [
        "sus@smithchambers.cjsm.net(x)",
        "g:sus@smithchambers.cjsm.net;",
    ] {
        let dialogue = hub.swaks(
            "dc.jones@met.pnn.police.uk",
            &[to],
            "OFFICIAL: x",
            &peer(&refs(&tls)),
        );
        assert!(dialogue.contains("553 5.1.3"), "{to}: {dialogue}");
    }
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["sus@smithchambers.cjsm.net"],
        "OFFICIAL: x",
        &peer(&refs(&tls)),
    );
    assert!(dialogue.contains("550 5.2.1"), "{dialogue}");

    // The closed community: the internet may not write to a hub mailbox, nor claim to be
    // the police; a secure-network peer may.
    let dialogue = hub.swaks(
        "someone@gmail.com",
        &["mary@smithchambers.cjsm.net"],
        "OFFICIAL-SENSITIVE: hello",
        &refs(&tls),
    );
    assert!(
        dialogue.contains(
            "550 5.7.1 mary@smithchambers.cjsm.net: secure mailboxes receive mail only from"
        ),
        "{dialogue}"
    );
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["mary@smithchambers.cjsm.net"],
        "OFFICIAL-SENSITIVE: custody record",
        &refs(&tls),
    );
    assert!(
        dialogue.contains("550 5.7.1 dc.jones@met.pnn.police.uk: mail from met.pnn.police.uk is accepted only from the secure networks"),
        "{dialogue}"
    );
    let dialogue = hub.swaks(
        "<>",
        &["mary@smithchambers.cjsm.net"],
        "Undelivered Mail Returned to Sender",
        &refs(&tls),
    );
    assert!(
        dialogue.contains("550 5.7.1"),
        "a bounce from the internet: {dialogue}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.delivered().is_empty(), "nothing was delivered");

    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["mary@smithchambers.cjsm.net"],
        "OFFICIAL-SENSITIVE: custody record",
        &peer(&refs(&tls)),
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let delivered = sink.wait_delivered(1);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(
        delivered[0].contains("X-Rcpt-Args: <mary@smithchambers.cjsm.net>"),
        "{}",
        delivered[0]
    );
    drop(milter);
}

/// The milter's log settings for the no-reply tests: its own negotiation line (debug), and
/// indymilter's trace, where a session that ends in a protocol error says so.
const PROTOCOL_LOG: &str = "\n[log]\nlevel = \"info,cjsm_milter=debug,indymilter=trace\"\n";

/// What the milter's log must show after mail went through Postfix with the no-reply stages:
/// the options asked for, and no protocol error or wrong answer.
fn assert_no_reply_negotiated(log: &str) {
    let negotiated = log
        .lines()
        .find(|l| l.contains("milter options negotiated"))
        .unwrap_or_else(|| panic!("no negotiation logged: {log}"));
    for option in [
        "NOREPLY_CONNECT",
        "NOREPLY_HEADER",
        "NOREPLY_EOH",
        "NOREPLY_BODY",
        "NO_HELO",
        "NO_DATA",
        "NO_UNKNOWN",
    ] {
        let requested = negotiated.split("requested=").nth(1).unwrap_or_default();
        assert!(requested.contains(option), "{option}: {negotiated}");
    }
    // (Postfix sends ABORT out of a transaction too, which indymilter ignores as it should.)
    for bad in ["error in session", "Noreply requested but not used"] {
        assert!(!log.contains(bad), "{bad}: {log}");
    }
}

#[test]
fn postfix_does_not_wait_where_the_milter_has_nothing_to_say() {
    let lab = tempfile::tempdir().unwrap();
    let pki = Pki::create(&lab.path().join("pki"));
    let sink = Sink::start(lab.path());
    let socketmap_port = common::free_port();
    let hub = start_hub(lab.path(), &pki, &sink, socketmap_port, false);
    let store = lab.path().join("store");
    // A small body bound: the bound is hit during the body chunks, which Postfix does not
    // wait on, and answered at end of message.
    let config = milter_config(&hub, &store, socketmap_port)
        + "\n[limits]\nmax_scan_bytes = 1000\n"
        + PROTOCOL_LOG;
    let milter = Daemon::start(&config);
    common::cli::smith_chambers(&milter.config, &["alice"]);
    let tls = tls(&pki);

    // Accepted, with the marking header and the tag.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["alice@smithchambers.cjsm.net"],
        "OFFICIAL-SENSITIVE: custody record",
        &peer(&refs(&tls)),
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let delivered = sink.wait_delivered(1);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(
        delivered[0].contains("X-CJSM-Marking: OFFICIAL-SENSITIVE; source=subject")
            && delivered[0].contains("Subject: OFFICIAL-SENSITIVE: custody record [CJSM]"),
        "{}",
        delivered[0]
    );
    // Rejected at the end of DATA.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["someone@gmail.com"],
        "lunch",
        &peer(&refs(&tls)),
    );
    assert!(
        dialogue.contains("550 5.7.1 OFFICIAL-SENSITIVE mail (unmarked mail is treated as such)"),
        "{dialogue}"
    );
    // The body bound hit in a body chunk: OFFICIAL in the subject, but the unread rest may
    // say more, so secure recipients only, said at the end of DATA.
    let long_body = "a".repeat(4000);
    let dialogue = common::swaks_with(
        hub.port,
        "dc.jones@met.pnn.police.uk",
        "someone@gmail.com",
        "OFFICIAL: big file",
        &long_body,
        &peer(&refs(&tls)),
    );
    assert!(
        dialogue.contains("550 5.7.1 OFFICIAL-SENSITIVE mail can only go"),
        "{dialogue}"
    );
    assert_no_reply_negotiated(&milter.log());
    drop(milter);

    // Tempfail at end of message: a deadline no classification of 2 MB can meet (the null
    // sender and a secure-network recipient need no directory lookup to race it).
    let config = (milter_config(&hub, &store, socketmap_port) + PROTOCOL_LOG).replacen(
        "[milter]\n",
        "[milter]\ndeadline_ms = 1\n",
        1,
    );
    let message = lab.path().join("big.eml");
    std::fs::write(
        &message,
        format!(
            "From: <>\r\nTo: clerk@met.pnn.police.uk\r\nSubject: OFFICIAL: big\r\n\r\n{}",
            "line of text\r\n".repeat(150_000)
        ),
    )
    .unwrap();
    let milter = Daemon::start(&config);
    let dialogue = common::swaks_with(
        hub.port,
        "<>",
        "clerk@met.pnn.police.uk",
        "",
        "",
        &["--data", message.to_str().unwrap()],
    );
    // After the data (354): the answer at end of message.
    assert!(
        dialogue.contains("354 ")
            && dialogue.contains("451 4.7.1 Secure mail filter temporarily unavailable"),
        "{dialogue}"
    );
    assert_eq!(sink.delivered().len(), 1, "nothing else reached the sink");

    let log = milter.log();
    drop(milter);
    assert_no_reply_negotiated(&log);
    // Postfix saw no protocol error, no timeout, no unexpected reply from the milter.
    let maillog = hub.maillog();
    for line in maillog.lines() {
        assert!(
            !(line.contains("milter") && (line.contains("warning") || line.contains("error"))),
            "{line}\n{maillog}"
        );
    }
}
