//! cjsm-milter behind a real Sendmail, set up with sendmail/cjsm-milter.mc.fragment: Sendmail
//! from Debian's packages unpacked into target/sendmail by scripts/test.sh (its package
//! conflicts with postfix), its own .cf and queue, on a loopback port, in a private UTS
//! namespace with a fully qualified hostname (Sendmail refuses to start without one),
//! smtp-sink as the next hop.

mod common;

use common::daemon::Daemon;
use common::pki::{CA_CN, FIRM_CLIENT_CN, Pki};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Sendmail command in a private UTS namespace with a fully qualified hostname: with the
/// machine's unqualified one, Sendmail waits 60 s before it reads its .cf.
fn fqdn(command: &str) -> Command {
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--uts", "sh", "-c"])
        .arg(format!("hostname smx.test.local; exec {command}"));
    unshare
}

struct Lab {
    dir: tempfile::TempDir,
    pki: Pki,
    /// The milter's socketmap port, as the .mc asks it.
    socketmap_port: u16,
    /// A second sink on 127.0.0.2 (same port): the organisation's own server.
    firm_sink: Child,
    firm_sink_dir: PathBuf,
    binary: PathBuf,
    cf: PathBuf,
    port: u16,
    sink_dir: PathBuf,
    socket: PathBuf,
    sendmail: Child,
    sink: Child,
}

impl Lab {
    fn start() -> Lab {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sendmail/root");
        let binary = root.join("usr/libexec/sendmail/sendmail");
        assert!(
            binary.exists(),
            "Sendmail is not unpacked in {}: scripts/test.sh downloads Debian's sendmail-bin, sendmail-cf \
             and sendmail-base and unpacks them there",
            root.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path();
        let sm = lab.join("sm");
        std::fs::create_dir_all(sm.join("mqueue")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(sm.join("mqueue"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::write(sm.join("service.switch"), "hosts files\naliases files\n").unwrap();
        std::fs::write(
            sm.join("aliases"),
            "postmaster: root\nMAILER-DAEMON: postmaster\n",
        )
        .unwrap();
        let sink_dir = lab.join("sink");
        std::fs::create_dir_all(&sink_dir).unwrap();
        assert!(
            Command::new("chown")
                .arg("nobody")
                .arg(&sink_dir)
                .status()
                .unwrap()
                .success()
        );
        let socket = lab.join("milter/milter.sock");
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let firm_sink_dir = lab.join("firm-sink");
        std::fs::create_dir_all(&firm_sink_dir).unwrap();
        assert!(
            Command::new("chown")
                .arg("nobody")
                .arg(&firm_sink_dir)
                .status()
                .unwrap()
                .success()
        );
        let pki = Pki::create(&lab.join("pki"));
        // Sendmail's TLS directory: the hub's key readable by root only, as Sendmail insists.
        let tls = sm.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::copy(&pki.ca, tls.join("cjsm-client-ca.pem")).unwrap();
        std::fs::copy(&pki.hub_cert, tls.join("cjsm-hub.crt")).unwrap();
        std::fs::copy(&pki.hub_key, tls.join("cjsm-hub.key")).unwrap();
        std::fs::set_permissions(
            tls.join("cjsm-hub.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();

        let (port, sink_port, socketmap_port) = (
            common::free_port(),
            common::free_port(),
            common::free_port(),
        );
        let fragment = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("sendmail/cjsm-milter.mc.fragment"),
        )
        .unwrap()
        .replace(
            "/run/cjsm-milter/milter.sock",
            &socket.display().to_string(),
        )
        .replace("/etc/mail/tls", &tls.display().to_string())
        .replace(
            "inet:7358@127.0.0.1",
            &format!("inet:{socketmap_port}@127.0.0.1"),
        );
        let s = sm.display();
        let mc = format!(
            "divert(-1)\ndivert(0)dnl\nVERSIONID(`cjsm-milter test instance')dnl\nOSTYPE(`linux')dnl\n\
             define(`confDOMAIN_NAME', `smx.test.local')dnl\ndefine(`confDONT_PROBE_INTERFACES', `True')dnl\n\
             define(`confSERVICE_SWITCH_FILE', `{s}/service.switch')dnl\ndefine(`QUEUE_DIR', `{s}/mqueue')dnl\n\
             define(`confPID_FILE', `{s}/sendmail.pid')dnl\ndefine(`STATUS_FILE', `{s}/statistics')dnl\n\
             define(`HELP_FILE', `{}/etc/mail/helpfile')dnl\ndefine(`ALIAS_FILE', `{s}/aliases')dnl\n\
             define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit,MapInUnsafeDirPath,HelpFileInUnsafeDirPath')dnl\n\
             define(`confTO_IDENT', `0')dnl\ndefine(`confQUEUE_LA', `100')dnl\ndefine(`confREFUSE_LA', `100')dnl\n\
             define(`confDELAY_LA', `0')dnl\ndefine(`SMART_HOST', `esmtp:[127.0.0.1]')dnl\n\
             define(`ESMTP_MAILER_ARGS', `TCP $h {sink_port}')dnl\ndefine(`RELAY_MAILER_ARGS', `TCP $h {sink_port}')dnl\n\
             FEATURE(`no_default_msa')dnl\nFEATURE(`nocanonify')dnl\nFEATURE(`accept_unresolvable_domains')dnl\n\
             FEATURE(`accept_unqualified_senders')dnl\nRELAY_DOMAIN(`cjsm.net')dnl\nRELAY_DOMAIN(`pnn.police.uk')dnl\n\
             RELAY_DOMAIN(`gmail.com')dnl\nDAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl\n\
             dnl --- sendmail/cjsm-milter.mc.fragment, as the README says ---\n{fragment}\n\
             MAILER(`local')dnl\nMAILER(`smtp')dnl\n",
            root.display()
        );
        std::fs::write(sm.join("sendmail.mc"), mc).unwrap();
        let cf_dir = root.join("usr/share/sendmail/cf");
        let out = Command::new("m4")
            .arg(format!("-D_CF_DIR_={}/", cf_dir.display()))
            .arg(cf_dir.join("m4/cf.m4"))
            .arg(sm.join("sendmail.mc"))
            .output()
            .expect("m4 (Debian package m4)");
        assert!(
            out.status.success(),
            "m4: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cf = sm.join("sendmail.cf");
        std::fs::write(&cf, &out.stdout).unwrap();
        let status = fqdn(&format!("{} -C {} -bi", binary.display(), cf.display()))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "sendmail -bi");

        let sink = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%M%S.", sink_dir.display()))
            .arg(format!("127.0.0.1:{sink_port}"))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (Debian package postfix)");
        common::wait_listening(sink_port, "smtp-sink");
        let firm_sink = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%M%S.", firm_sink_dir.display()))
            .arg(format!("127.0.0.2:{sink_port}"))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (Debian package postfix)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.2", sink_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "smtp-sink on 127.0.0.2"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let sendmail = fqdn(&format!("{} -C {} -bD", binary.display(), cf.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::wait_listening(port, "sendmail");
        Lab {
            dir,
            pki,
            socketmap_port,
            firm_sink,
            firm_sink_dir,
            binary,
            cf,
            port,
            sink_dir,
            socket,
            sendmail,
            sink,
        }
    }

    /// From a secure-network sender, over STARTTLS, connecting from the lab's secure network
    /// (127.0.0.2, `secure_networks` in [`milter_config`]; 127.0.0.1 is the internet).
    fn swaks(&self, to: &str, subject: &str) -> String {
        self.swaks_with(
            "dc.jones@met.pnn.police.uk",
            to,
            subject,
            &["--tls", "--local-interface", "127.0.0.2"],
        )
    }

    fn swaks_with(&self, from: &str, to: &str, subject: &str, extra: &[&str]) -> String {
        common::swaks_with(self.port, from, to, subject, "hello", extra)
    }

    /// What the organisation's server (the sink on 127.0.0.2) received.
    fn firm_delivered(&self, count: usize) -> Vec<String> {
        common::sink_messages(&self.firm_sink_dir, count, Duration::from_secs(30))
    }

    /// The queue as `mailq` shows it, for failure messages.
    fn queue(&self) -> String {
        let out = fqdn(&format!(
            "{} -C {} -bp",
            self.binary.display(),
            self.cf.display()
        ))
        .output()
        .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The messages the sink received so far (complete ones).
    fn delivered(&self) -> Vec<String> {
        common::sink_messages(&self.sink_dir, 0, Duration::ZERO)
    }

    fn wait_delivered(&self, count: usize) -> Vec<String> {
        common::sink_messages(&self.sink_dir, count, Duration::from_secs(30))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in [&mut self.sendmail, &mut self.sink, &mut self.firm_sink] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn milter_config(lab: &Lab) -> String {
    common::scenario(
        "sendmail",
        &[
            ("socket", &lab.socket.display().to_string()),
            ("store", &format!("{}/store", lab.dir.path().display())),
            ("socketmap_port", &lab.socketmap_port.to_string()),
        ],
    )
}

#[test]
fn sendmail_with_the_milter_as_the_kit_sets_it_up() {
    let lab = Lab::start();
    let milter = Daemon::start(&milter_config(&lab));
    common::cli::smith_chambers(&milter.config, &["alice"]);

    let dialogue = lab.swaks(
        "alice@smithchambers.cjsm.net",
        "OFFICIAL-SENSITIVE: custody record",
    );
    assert!(
        dialogue.contains("250 2.0.0") && dialogue.contains("Message accepted for delivery"),
        "{dialogue}"
    );
    let delivered = lab.wait_delivered(1);
    assert_eq!(delivered.len(), 1, "{dialogue}\nqueue: {}", lab.queue());
    assert!(
        delivered[0].contains("Subject: OFFICIAL-SENSITIVE: custody record [CJSM]"),
        "{}",
        delivered[0]
    );
    assert!(
        delivered[0].contains("X-CJSM-Marking: OFFICIAL-SENSITIVE; source=subject"),
        "{}",
        delivered[0]
    );

    let dialogue = lab.swaks("someone@gmail.com", "lunch");
    assert!(dialogue.contains("550 5.7.1"), "{dialogue}");
    // Without TLS, from the internet to a secure-network address.
    let dialogue = lab.swaks_with(
        "someone@gmail.com",
        "clerk@met.pnn.police.uk",
        "OFFICIAL-SENSITIVE: custody record",
        &[],
    );
    assert!(
        dialogue.contains(
            "550 5.7.1 OFFICIAL-SENSITIVE mail to a secure address must be sent over TLS"
        ),
        "{dialogue}"
    );
    let dialogue = lab.swaks("nobody@smithchambers.cjsm.net", "OFFICIAL: x");
    assert!(dialogue.contains("550 5.1.1"), "{dialogue}");

    // A server-connected organisation: Sendmail reports its client certificate as whole DNs
    // with +XX escapes ({cert_subject}, {cert_issuer}) and {verify} = OK.
    common::cli::onboard_with(
        &milter.config,
        "firm",
        "Firm LLP",
        "firm.co.uk",
        "server",
        &[
            "--cert-fingerprint",
            &lab.pki.firm_client_fingerprint,
            "--cert-subject",
            FIRM_CLIENT_CN,
            "--cert-issuer",
            CA_CN,
            "--mail-server",
            "[127.0.0.2]",
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
    let cert = lab.pki.firm_client_cert.display().to_string();
    let key = lab.pki.firm_client_key.display().to_string();
    let dialogue = lab.swaks_with(
        "alice@firm.co.uk",
        "clerk@met.pnn.police.uk",
        "OFFICIAL-SENSITIVE: from the firm",
        &["--tls", "--tls-cert", &cert, "--tls-key", &key],
    );
    assert!(dialogue.contains("250 2.0.0"), "{dialogue}");
    let delivered = lab.wait_delivered(2);
    let outbound = delivered
        .iter()
        .find(|m| m.contains("from the firm"))
        .unwrap_or_else(|| panic!("{delivered:?}"));
    assert!(
        outbound.contains("X-Mail-Args: <alice@firm.co.uk.cjsm.net>"),
        "translated: {outbound}"
    );
    assert!(outbound.contains("verify=OK"), "{outbound}");
    // Without the certificate: refused at MAIL.
    let dialogue = lab.swaks_with(
        "alice@firm.co.uk",
        "clerk@met.pnn.police.uk",
        "OFFICIAL: x",
        &["--tls"],
    );
    assert!(
        dialogue.contains("550 5.7.1 <alice@firm.co.uk>... alice@firm.co.uk: firm.co.uk belongs to a connected organisation"),
        "{dialogue}"
    );
    // Inbound to bob's secure address: delivered to bob@firm.co.uk at the organisation's
    // server, found through the mailertable socket map.
    let dialogue = lab.swaks("bob@firm.co.uk.cjsm.net", "OFFICIAL-SENSITIVE: interview");
    assert!(dialogue.contains("250 2.0.0"), "{dialogue}");
    let firm = lab.firm_delivered(1);
    assert_eq!(firm.len(), 1, "queue: {}", lab.queue());
    assert!(
        firm[0].contains("X-Rcpt-Args: <bob@firm.co.uk>"),
        "{}",
        firm[0]
    );
    assert!(
        firm[0].contains("Subject: OFFICIAL-SENSITIVE: interview [CJSM]"),
        "{}",
        firm[0]
    );

    drop(milter);
    // (Over TLS the session would already get 454 4.7.0 at STARTTLS.)
    let dialogue = lab.swaks_with(
        "dc.jones@met.pnn.police.uk",
        "clerk@met.pnn.police.uk",
        "OFFICIAL: x",
        &[],
    );
    assert!(
        dialogue.contains("451 4.3.2"),
        "F=T: tempfail while the milter is down: {dialogue}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.delivered().len(), 2, "nothing passed unchecked");
}

#[test]
fn envelopes_that_cannot_be_forged_behind_sendmail() {
    let lab = Lab::start();
    let milter = Daemon::start(&milter_config(&lab));
    common::cli::smith_chambers(&milter.config, &["mary", "sus"]);
    common::cli::cli_ok(
        &milter.config,
        &["directory", "user", "suspend", "sus@smithchambers.cjsm.net"],
    );
    let peer = ["--tls", "--local-interface", "127.0.0.2"];

    // Dressed-up addresses: refused, at MAIL and at RCPT.
    for from in [
        "mary@smithchambers.cjsm.net(x)",
        "g:mary@smithchambers.cjsm.net;",
    ] {
        let dialogue = lab.swaks_with(from, "clerk@met.pnn.police.uk", "OFFICIAL: x", &["--tls"]);
        assert!(dialogue.contains("553 5.1.7"), "{from}: {dialogue}");
    }
    for to in [
        "sus@smithchambers.cjsm.net(x)",
        "g:sus@smithchambers.cjsm.net;",
    ] {
        let dialogue = lab.swaks_with("dc.jones@met.pnn.police.uk", to, "OFFICIAL: x", &peer);
        assert!(dialogue.contains("553 5.1.3"), "{to}: {dialogue}");
    }

    // The closed community.
    let dialogue = lab.swaks_with(
        "someone@gmail.com",
        "mary@smithchambers.cjsm.net",
        "OFFICIAL-SENSITIVE: hello",
        &["--tls"],
    );
    assert!(
        dialogue.contains("550 5.7.1")
            && dialogue.contains("secure mailboxes receive mail only from"),
        "{dialogue}"
    );
    let dialogue = lab.swaks_with(
        "dc.jones@met.pnn.police.uk",
        "mary@smithchambers.cjsm.net",
        "OFFICIAL-SENSITIVE: custody record",
        &["--tls"],
    );
    assert!(
        dialogue.contains("550 5.7.1")
            && dialogue.contains("accepted only from the secure networks"),
        "{dialogue}"
    );
    let dialogue = lab.swaks_with("<>", "mary@smithchambers.cjsm.net", "bounce", &["--tls"]);
    assert!(
        dialogue.contains("550 5.7.1"),
        "a bounce from the internet: {dialogue}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.delivered().is_empty(), "nothing was delivered");
    // From the secure network: a police sender, and a bounce (Sendmail's {mail_addr} for `<>`).
    let dialogue = lab.swaks(
        "mary@smithchambers.cjsm.net",
        "OFFICIAL-SENSITIVE: custody record",
    );
    assert!(dialogue.contains("250 2.0.0"), "{dialogue}");
    let dialogue = lab.swaks_with(
        "<>",
        "mary@smithchambers.cjsm.net",
        "OFFICIAL: bounce",
        &peer,
    );
    assert!(dialogue.contains("250 2.0.0"), "{dialogue}");
    let delivered = lab.wait_delivered(2);
    assert_eq!(delivered.len(), 2, "queue: {}", lab.queue());

    // A connected organisation's server whose certificate's O value holds "/CN=": the one-line
    // {cert_subject} names two CNs and matches nothing; {cn_subject} names the server.
    common::cli::onboard_with(
        &milter.config,
        "firm",
        "Firm LLP",
        "firm.co.uk",
        "server",
        &[
            "--cert-fingerprint",
            &lab.pki.firm_client_fingerprint,
            "--cert-subject",
            FIRM_CLIENT_CN,
            "--cert-issuer",
            CA_CN,
        ],
    );
    common::cli::cli_add_user(
        &milter.config,
        "alice@firm.co.uk.cjsm.net",
        "firm",
        "Alice",
        "Patel",
    );
    let cert = lab.pki.firm_client_odd_o_cert.display().to_string();
    let key = lab.pki.firm_client_odd_o_key.display().to_string();
    let dialogue = lab.swaks_with(
        "alice@firm.co.uk",
        "clerk@met.pnn.police.uk",
        "OFFICIAL-SENSITIVE: from the firm",
        &["--tls", "--tls-cert", &cert, "--tls-key", &key],
    );
    assert!(dialogue.contains("250 2.0.0"), "{dialogue}");
    let delivered = lab.wait_delivered(3);
    let outbound = delivered
        .iter()
        .find(|m| m.contains("from the firm"))
        .unwrap_or_else(|| panic!("{delivered:?}"));
    assert!(
        outbound.contains("X-Mail-Args: <alice@firm.co.uk.cjsm.net>"),
        "recognised by its certificate and translated: {outbound}"
    );
    drop(milter);
}

/// The milter's log settings for the no-reply test: its own negotiation line (debug), and
/// indymilter's trace, where a session that ends in a protocol error says so.
const PROTOCOL_LOG: &str = "\n[log]\nlevel = \"info,cjsm_milter=debug,indymilter=trace\"\n";

/// Sendmail asked not to wait at CONNECT, headers, end of headers and body chunks (8.14 and
/// later, protocol version 6), and the milter's log shows no protocol error or wrong answer.
/// (This lab has no syslog for Sendmail's own log; with F=T a protocol error or a timeout
/// would be Sendmail's own 451 4.3.0 in the dialogue instead of the verdicts asserted.)
fn assert_no_reply_negotiated(log: &str) {
    let negotiated = log
        .lines()
        .find(|l| l.contains("milter options negotiated"))
        .unwrap_or_else(|| panic!("no negotiation logged: {log}"));
    let requested = negotiated.split("requested=").nth(1).unwrap_or_default();
    for option in [
        "NOREPLY_CONNECT",
        "NOREPLY_HEADER",
        "NOREPLY_EOH",
        "NOREPLY_BODY",
        "NO_HELO",
        "NO_DATA",
        "NO_UNKNOWN",
    ] {
        assert!(requested.contains(option), "{option}: {negotiated}");
    }
    for bad in ["error in session", "Noreply requested but not used"] {
        assert!(!log.contains(bad), "{bad}: {log}");
    }
}

#[test]
fn sendmail_does_not_wait_where_the_milter_has_nothing_to_say() {
    let lab = Lab::start();
    // A small body bound: hit during the body chunks, which Sendmail does not wait on, and
    // answered at end of message.
    let config = milter_config(&lab) + "\n[limits]\nmax_scan_bytes = 1000\n" + PROTOCOL_LOG;
    let milter = Daemon::start(&config);
    common::cli::smith_chambers(&milter.config, &["alice"]);

    // Accepted, with the marking header and the tag.
    let dialogue = lab.swaks(
        "alice@smithchambers.cjsm.net",
        "OFFICIAL-SENSITIVE: custody record",
    );
    assert!(
        dialogue.contains("Message accepted for delivery"),
        "{dialogue}"
    );
    let delivered = lab.wait_delivered(1);
    assert_eq!(delivered.len(), 1, "{dialogue}\nqueue: {}", lab.queue());
    assert!(
        delivered[0].contains("X-CJSM-Marking: OFFICIAL-SENSITIVE; source=subject")
            && delivered[0].contains("Subject: OFFICIAL-SENSITIVE: custody record [CJSM]"),
        "{}",
        delivered[0]
    );
    // Rejected at the end of DATA.
    let dialogue = lab.swaks("someone@gmail.com", "lunch");
    assert!(
        dialogue.contains("550 5.7.1 OFFICIAL-SENSITIVE mail (unmarked mail is treated as such)"),
        "{dialogue}"
    );
    // The body bound hit in a body chunk: secure recipients only, said at the end of DATA.
    let dialogue = common::swaks_with(
        lab.port,
        "dc.jones@met.pnn.police.uk",
        "someone@gmail.com",
        "OFFICIAL: big file",
        &"a".repeat(4000),
        &["--tls", "--local-interface", "127.0.0.2"],
    );
    assert!(
        dialogue.contains("550 5.7.1 OFFICIAL-SENSITIVE mail can only go"),
        "{dialogue}"
    );
    assert_no_reply_negotiated(&milter.log());
    drop(milter);

    // Tempfail at end of message: a deadline no classification of 2 MB can meet (the null
    // sender and a secure-network recipient need no directory lookup to race it).
    let config = (milter_config(&lab) + PROTOCOL_LOG).replacen(
        "[milter]\n",
        "[milter]\ndeadline_ms = 1\n",
        1,
    );
    let message = lab.dir.path().join("big.eml");
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
        lab.port,
        "<>",
        "clerk@met.pnn.police.uk",
        "",
        "",
        &["--data", message.to_str().unwrap()],
    );
    // After the data (354): the answer at end of message, the milter's own.
    assert!(
        dialogue.contains("354 ")
            && dialogue.contains("451 4.7.1 Secure mail filter temporarily unavailable"),
        "{dialogue}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.delivered().len(), 1, "nothing else reached the sink");
    assert_no_reply_negotiated(&milter.log());
    drop(milter);
}
