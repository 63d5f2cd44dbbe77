//! cjsm-milter behind a real Postfix, set up as postfix/README.md says: private instances on
//! loopback (each with its own config, queue and data directories, started by the test as a
//! direct child and stopped by PID), the lines of postfix/main.cf.fragment and
//! master.cf.fragment with the test's paths and ports, the milter on the unix socket in the
//! queue directory, its socketmap answering the routing lookups, and smtp-sink as the last
//! hop. Each scenario asserts on the SMTP replies and on what reaches the sink. Certificates
//! come from a private CA made with the openssl CLI. See ../shared/RECIPES.md §2.
//!
//! The second instance plays a server-connected organisation's own mail server
//! (`firm.co.uk`): it relays its users' mail through the hub with its client certificate, and
//! receives the hub's mail for them over verified TLS.

mod common;

use common::daemon::Daemon;
use common::pki::{CA_CN, FIRM_CLIENT_CN, Pki};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn need(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin"] {
        let path = Path::new(dir).join(program);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{program} is not installed: the Postfix tests need Debian's {package} package (scripts/test.sh installs it)"
    );
}

fn chown_to(path: &Path, user: &str) {
    let status = Command::new("chown").arg(user).arg(path).status().unwrap();
    assert!(status.success(), "chown {user} {}", path.display());
}

fn kit_file(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("postfix")
            .join(name),
    )
    .unwrap()
}

/// smtp-sink, writing one file per message (with the envelope in X-Mail-Args/X-Rcpt-Args).
struct Sink {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Sink {
    fn start(root: &Path) -> Sink {
        let dir = root.join("sink");
        std::fs::create_dir_all(&dir).unwrap();
        chown_to(&dir, "nobody");
        let port = common::free_port();
        let child = Command::new(need("smtp-sink", "postfix"))
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%M%S.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::wait_listening(port, "smtp-sink");
        Sink { child, dir, port }
    }

    /// The messages received so far (complete ones).
    fn delivered(&self) -> Vec<String> {
        common::sink_messages(&self.dir, 0, Duration::ZERO)
    }

    fn wait_delivered(&self, count: usize) -> Vec<String> {
        common::sink_messages(&self.dir, count, Duration::from_secs(30))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The services every instance runs (Debian's master.cf, unchrooted, without the extras).
const MASTER_CF: &str = "pickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\n\
    qmgr unix n - n 300 1 qmgr\ntlsmgr unix - - n 1000? 1 tlsmgr\nrewrite unix - - n - - trivial-rewrite\n\
    bounce unix - - n - 0 bounce\ndefer unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\n\
    verify unix - - n - 1 verify\nflush unix n - n 1000? 0 flush\nproxymap unix - - n - - proxymap\n\
    smtp unix - - n - - smtp\nrelay unix - - n - - smtp\nshowq unix n - n - - showq\n\
    error unix - - n - - error\nretry unix - - n - - error\ndiscard unix - - n - - discard\n\
    anvil unix - - n - 1 anvil\nscache unix - - n - 1 scache\npostlog unix-dgram n - n - 1 postlogd\n";

/// A private Postfix instance.
struct Postfix {
    root: PathBuf,
    etc: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Postfix {
    /// Configures and starts an instance under `root/name` listening on `port`, with
    /// `main_extra` and `master_extra` added to the base configuration.
    fn start(root: &Path, name: &str, port: u16, main_extra: &str, master_extra: &str) -> Postfix {
        let postfix = need("postfix", "postfix");
        need("swaks", "swaks");
        let root = root.join(name);
        let etc = root.join("etc");
        for sub in ["etc", "spool", "data"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        chown_to(&root.join("data"), "postfix");
        // The kit's socket directory, inside the queue directory.
        std::fs::create_dir_all(root.join("spool/cjsm-milter")).unwrap();
        let r = root.display();
        std::fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {r}/spool\ndata_directory = {r}/data\n\
                 maillog_file = {r}/maillog\nmaillog_file_prefixes = /var, /dev/stdout, {r}\n\
                 myhostname = {name}.test.local\nmydomain = test.local\nmyorigin = $myhostname\n\
                 inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmydestination =\nlocal_recipient_maps =\n\
                 alias_maps =\nalias_database =\nmynetworks = 127.0.0.0/8\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
                 smtp_dns_support_level = disabled\nsmtpd_peername_lookup = no\nbiff = no\n\
                 delay_warning_time = 0\nminimal_backoff_time = 300s\n{main_extra}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            etc.join("master.cf"),
            format!("{port} inet n - n - - smtpd\n{MASTER_CF}{master_extra}\n"),
        )
        .unwrap();
        let check = Command::new(&postfix)
            .arg("-c")
            .arg(&etc)
            .arg("check")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "postfix check failed: {}; see {r}/maillog",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(&postfix)
            .arg("-c")
            .arg(&etc)
            .arg("start-fg")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::wait_listening(port, "postfix smtpd");
        Postfix {
            root,
            etc,
            port,
            child: Some(child),
        }
    }

    fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.root.join("maillog")).unwrap_or_default()
    }

    /// One SMTP transaction with swaks; the whole dialogue.
    fn swaks(&self, from: &str, to: &[&str], subject: &str, extra: &[&str]) -> String {
        common::swaks_with(
            self.port,
            from,
            &to.join(","),
            subject,
            "Please see.",
            extra,
        )
    }

    /// A message submitted on the host with Postfix's sendmail(1): maildrop, pickup, cleanup,
    /// and so the non_smtpd_milters.
    fn submit_locally(&self, to: &str, subject: &str, body: &str) {
        let mut child = Command::new("/usr/sbin/sendmail")
            .args(["-C"])
            .arg(&self.etc)
            .args(["-f", "dc.jones@met.pnn.police.uk", to])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                format!(
                    "From: dc.jones@met.pnn.police.uk\nTo: {to}\nSubject: {subject}\n\n{body}\n"
                )
                .as_bytes(),
            )
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    fn queue(&self) -> String {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(&self.etc)
            .arg("-p")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn queue_is_empty(&self) -> bool {
        self.queue().contains("Mail queue is empty")
    }

    /// `postqueue -f`: deliver what is deferred now.
    fn flush(&self) {
        let status = Command::new("postqueue")
            .arg("-c")
            .arg(&self.etc)
            .arg("-f")
            .status()
            .unwrap();
        assert!(status.success(), "postqueue -f");
    }

    /// `postmap -q KEY TABLE` with this instance's configuration.
    fn query(&self, key: &str, table: &str) -> String {
        let out = Command::new("postmap")
            .arg("-c")
            .arg(&self.etc)
            .args(["-q", key, table])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The master leads its own process group: end the group, then reap the script.
            let master = std::fs::read_to_string(self.spool().join("pid/master.pid"))
                .ok()
                .and_then(|pid| pid.trim().parse::<i32>().ok());
            if let Some(pid) = master {
                // SAFETY: signalling the process group of the Postfix master we started.
                unsafe { libc::kill(-pid, libc::SIGTERM) };
                for _ in 0..100 {
                    // SAFETY: signal 0 only checks whether the group still exists.
                    if unsafe { libc::kill(-pid, 0) } != 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // SAFETY: as above; whatever is left of our own Postfix is killed.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The hub: the kit's main.cf and master.cf fragments as an administrator adds them, with the
/// test's certificate paths and socketmap port, and smtp-sink as the relay host.
fn start_hub(
    root: &Path,
    pki: &Pki,
    sink: &Sink,
    socketmap_port: u16,
    milter_header_checks: bool,
) -> Postfix {
    let mut fragment = kit_file("main.cf.fragment")
        .replace(
            "/etc/postfix/cjsm-hub.crt",
            &pki.hub_cert.display().to_string(),
        )
        .replace(
            "/etc/postfix/cjsm-hub.key",
            &pki.hub_key.display().to_string(),
        )
        .replace(
            "/etc/postfix/cjsm-client-ca.pem",
            &pki.ca.display().to_string(),
        )
        .replace(
            "/etc/ssl/certs/ca-certificates.crt",
            &pki.ca.display().to_string(),
        )
        .replace("127.0.0.1:7358", &format!("127.0.0.1:{socketmap_port}"));
    let checks = root.join("cjsm_header_checks");
    std::fs::write(&checks, kit_file("cjsm_header_checks")).unwrap();
    if milter_header_checks {
        fragment = fragment.replace(
            "#milter_header_checks = regexp:/etc/postfix/cjsm_header_checks",
            &format!("milter_header_checks = regexp:{}", checks.display()),
        );
    }
    // master.cf: the cjsm-secure transport (the submission service needs a SASL set-up).
    let master = kit_file("master.cf.fragment");
    let secure_transport = master.split("# Submission").next().unwrap().to_string();
    Postfix::start(
        root,
        "hub",
        common::free_port(),
        &format!(
            "relay_domains = test.example, gmail.com, cjsm.net, pnn.police.uk\n\
             relayhost = [127.0.0.1]:{}\n\
             # --- postfix/main.cf.fragment, as the README says ---\n{fragment}",
            sink.port
        ),
        &secure_transport,
    )
}

fn milter_config(hub: &Postfix, store: &Path, socketmap_port: u16) -> String {
    format!(
        "[milter]\nlisten = \"unix:{}/cjsm-milter/milter.sock\"\nsocket_mode = \"0660\"\nsocket_group = \"postfix\"\n\
         [store]\npath = \"{}\"\n[metrics]\nlisten = \"\"\n[socketmap]\nlisten = \"127.0.0.1:{socketmap_port}\"\n",
        hub.spool().display(),
        store.display()
    )
}

/// swaks with STARTTLS (as a client without a certificate).
fn tls(_pki: &Pki) -> Vec<String> {
    vec!["--tls".into()]
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn postfix_with_the_milter_as_the_kit_sets_it_up() {
    let lab = tempfile::tempdir().unwrap();
    let pki = Pki::create(&lab.path().join("pki"));
    let sink = Sink::start(lab.path());
    let socketmap_port = common::free_port();
    let hub = start_hub(lab.path(), &pki, &sink, socketmap_port, false);
    let store = lab.path().join("store");
    let milter = Daemon::start(&milter_config(&hub, &store, socketmap_port));
    common::onboard(
        &milter.config,
        "smith",
        "Smith Chambers",
        "smithchambers.cjsm.net",
        "mailbox",
    );
    common::cli_ok(
        &milter.config,
        &[
            "directory",
            "user",
            "add",
            "alice@smithchambers.cjsm.net",
            "--org",
            "smith",
            "--first-name",
            "Alice",
            "--last-name",
            "Smith",
        ],
    );
    let tls = tls(&pki);

    // Marked mail to secure recipients, over TLS, is delivered, tagged and marked.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["alice@smithchambers.cjsm.net", "clerk@met.pnn.police.uk"],
        "OFFICIAL-SENSITIVE: custody record",
        &refs(&tls),
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

    // The same without TLS: refused at the end of DATA.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["alice@smithchambers.cjsm.net"],
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
        &refs(&tls),
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
        &[],
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
    common::cli_ok(
        &milter.config,
        &[
            "directory",
            "org",
            "apply",
            "--id",
            "firm",
            "--name",
            "Firm LLP",
            "--domain",
            "firm.co.uk",
            "--connection",
            "server",
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
    for step in ["approve", "sign-terms", "activate"] {
        common::cli_ok(&milter.config, &["directory", "org", step, "firm"]);
    }
    for user in ["alice", "bob"] {
        common::cli_ok(
            &milter.config,
            &[
                "directory",
                "user",
                "add",
                &format!("{user}@firm.co.uk.cjsm.net"),
                "--org",
                "firm",
                "--first-name",
                user,
                "--last-name",
                "Patel",
            ],
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
        &refs(&tls(&pki)),
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
        &refs(&tls(&pki)),
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    // An open message takes the normal route to the sink.
    let dialogue = hub.swaks(
        "dc.jones@met.pnn.police.uk",
        &["someone@gmail.com"],
        "OFFICIAL: lunch",
        &[],
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
