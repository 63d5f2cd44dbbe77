//! A private Postfix instance and smtp-sink for the MTA tests: each instance has its own
//! config, queue and data directories, runs as a direct child of the test and is stopped by
//! PID; the hub is set up with the kit's main.cf and master.cf fragments (see
//! postfix/README.md).

use super::pki::Pki;
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

pub fn chown_to(path: &Path, user: &str) {
    let status = Command::new("chown").arg(user).arg(path).status().unwrap();
    assert!(status.success(), "chown {user} {}", path.display());
}

pub fn kit_file(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("postfix")
            .join(name),
    )
    .unwrap()
}

/// smtp-sink, writing one file per message (with the envelope in X-Mail-Args/X-Rcpt-Args).
pub struct Sink {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
}

impl Sink {
    pub fn start(root: &Path) -> Sink {
        let dir = root.join("sink");
        std::fs::create_dir_all(&dir).unwrap();
        chown_to(&dir, "nobody");
        let port = super::free_port();
        let child = Command::new(need("smtp-sink", "postfix"))
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%M%S.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        super::wait_listening(port, "smtp-sink");
        Sink { child, dir, port }
    }

    /// The messages received so far (complete ones).
    pub fn delivered(&self) -> Vec<String> {
        super::sink_messages(&self.dir, 0, Duration::ZERO)
    }

    pub fn wait_delivered(&self, count: usize) -> Vec<String> {
        super::sink_messages(&self.dir, count, Duration::from_secs(30))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The services every instance runs (Debian's master.cf, unchrooted, without the extras).
pub const MASTER_CF: &str = "pickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\n\
    qmgr unix n - n 300 1 qmgr\ntlsmgr unix - - n 1000? 1 tlsmgr\nrewrite unix - - n - - trivial-rewrite\n\
    bounce unix - - n - 0 bounce\ndefer unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\n\
    verify unix - - n - 1 verify\nflush unix n - n 1000? 0 flush\nproxymap unix - - n - - proxymap\n\
    smtp unix - - n - - smtp\nrelay unix - - n - - smtp\nshowq unix n - n - - showq\n\
    error unix - - n - - error\nretry unix - - n - - error\ndiscard unix - - n - - discard\n\
    anvil unix - - n - 1 anvil\nscache unix - - n - 1 scache\npostlog unix-dgram n - n - 1 postlogd\n";

/// A private Postfix instance.
pub struct Postfix {
    pub root: PathBuf,
    pub etc: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Postfix {
    /// Configures and starts an instance under `root/name` listening on `port`, with
    /// `main_extra` and `master_extra` added to the base configuration.
    pub fn start(
        root: &Path,
        name: &str,
        port: u16,
        main_extra: &str,
        master_extra: &str,
    ) -> Postfix {
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
        super::wait_listening(port, "postfix smtpd");
        Postfix {
            root,
            etc,
            port,
            child: Some(child),
        }
    }

    pub fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }

    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.root.join("maillog")).unwrap_or_default()
    }

    /// One SMTP transaction with swaks; the whole dialogue.
    pub fn swaks(&self, from: &str, to: &[&str], subject: &str, extra: &[&str]) -> String {
        super::swaks_with(
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
    pub fn submit_locally(&self, to: &str, subject: &str, body: &str) {
        let mut child = Command::new("/usr/sbin/sendmail")
            .args(["-C"])
            .arg(&self.etc)
            // Not a secure-network address: local submission comes from 127.0.0.1, which
            // is not on the lab's secure networks (a police sender would be refused there).
            .args(["-f", "clerk@firm-solicitors.example", to])
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
                    "From: clerk@firm-solicitors.example\nTo: {to}\nSubject: {subject}\n\n{body}\n"
                )
                .as_bytes(),
            )
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    pub fn queue(&self) -> String {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(&self.etc)
            .arg("-p")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn queue_is_empty(&self) -> bool {
        self.queue().contains("Mail queue is empty")
    }

    /// `postqueue -f`: deliver what is deferred now.
    pub fn flush(&self) {
        let status = Command::new("postqueue")
            .arg("-c")
            .arg(&self.etc)
            .arg("-f")
            .status()
            .unwrap();
        assert!(status.success(), "postqueue -f");
    }

    /// `postmap -q KEY TABLE` with this instance's configuration.
    pub fn query(&self, key: &str, table: &str) -> String {
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
pub fn start_hub(
    root: &Path,
    pki: &Pki,
    sink: &Sink,
    socketmap_port: u16,
    milter_header_checks: bool,
) -> Postfix {
    start_hub_with(
        root,
        pki,
        sink,
        socketmap_port,
        milter_header_checks,
        "",
        "",
    )
}

/// The hub with SMTP AUTH through Dovecot, as dovecot/README.md sets it up: the Dovecot kit's
/// main.cf lines, and the Postfix kit's submission service on `submission_port` (unchrooted,
/// as every service here). Dovecot's auth socket must be in place first, at
/// `ROOT/hub/spool/private/auth` ([`dovecot_auth_socket`]).
pub fn start_hub_with_dovecot_sasl(
    root: &Path,
    pki: &Pki,
    sink: &Sink,
    socketmap_port: u16,
    submission_port: u16,
) -> Postfix {
    let sasl = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dovecot/main.cf.fragment"),
    )
    .unwrap();
    let master = kit_file("master.cf.fragment");
    let submission = master
        .split("# Submission")
        .nth(1)
        .and_then(|rest| rest.split_once("\nsubmission inet  n       -       y"))
        .map(|(_, options)| format!("{submission_port} inet  n       -       n{options}"))
        .expect("the kit's submission service");
    let hub = start_hub_with(
        root,
        pki,
        sink,
        socketmap_port,
        false,
        &format!("# --- dovecot/main.cf.fragment, as the README says ---\n{sasl}"),
        &submission,
    );
    super::wait_listening(submission_port, "postfix submission");
    hub
}

/// Where the hub of [`start_hub_with_dovecot_sasl`] finds Dovecot's auth socket (main.cf:
/// `smtpd_sasl_path = private/auth`, in its queue directory); the directory is made here,
/// as Postfix would make it, so that Dovecot can be started first.
pub fn dovecot_auth_socket(root: &Path) -> PathBuf {
    let private = root.join("hub/spool/private");
    std::fs::create_dir_all(&private).unwrap();
    chown_to(&private, "postfix");
    private.join("auth")
}

fn start_hub_with(
    root: &Path,
    pki: &Pki,
    sink: &Sink,
    socketmap_port: u16,
    milter_header_checks: bool,
    main_extra: &str,
    master_extra: &str,
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
        super::free_port(),
        &format!(
            "relay_domains = test.example, gmail.com, cjsm.net, pnn.police.uk\n\
             relayhost = [127.0.0.1]:{}\n\
             # --- postfix/main.cf.fragment, as the README says ---\n{fragment}\n{main_extra}",
            sink.port
        ),
        &format!("{secure_transport}{master_extra}"),
    )
}

/// The milter's config for the hub. The lab's networks: clients connecting from
/// [`SECURE_PEER`]'s address are on the government secure networks (`secure_networks`); from
/// 127.0.0.1 (swaks' default, and local submission), the internet.
pub fn milter_config(hub: &Postfix, store: &Path, socketmap_port: u16) -> String {
    super::scenario(
        "postfix",
        &[
            ("spool", &hub.spool().display().to_string()),
            ("store", &store.display().to_string()),
            ("socketmap_port", &socketmap_port.to_string()),
        ],
    )
}

/// swaks options that connect from a secure-network peer (see [`milter_config`]): police and
/// government senders are believed only from there (the closed community).
pub const SECURE_PEER: [&str; 2] = ["--local-interface", "127.0.0.2"];

/// swaks with STARTTLS (as a client without a certificate).
pub fn tls(_pki: &Pki) -> Vec<String> {
    vec!["--tls".into()]
}

pub fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
