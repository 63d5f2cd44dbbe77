//! cjsm-milter behind a real Postfix, set up as postfix/README.md says: a private instance on
//! loopback (its own config, queue and data directories, started by the test as a direct child
//! and stopped by PID), the lines of postfix/main.cf.fragment, the milter on the unix socket in
//! the queue directory, and smtp-sink as the next hop. Each scenario asserts on the SMTP
//! replies and on what reaches the sink. See ../shared/RECIPES.md §2.

mod common;

use common::daemon::Daemon;
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

/// The lines of the kit's main.cf fragment up to its TLS section (the test has no
/// certificates), as an administrator adds them.
fn fragment() -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("postfix/main.cf.fragment"),
    )
    .unwrap();
    let end = text.find("# --- client certificates").unwrap_or(text.len());
    text[..end].to_string()
}

struct Lab {
    dir: tempfile::TempDir,
    etc: PathBuf,
    smtpd_port: u16,
    sink_dir: PathBuf,
    postfix: Option<Child>,
    sink: Child,
}

impl Lab {
    fn start() -> Lab {
        let postfix = need("postfix", "postfix");
        let smtp_sink = need("smtp-sink", "postfix");
        need("swaks", "swaks");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let etc = root.join("pf/etc");
        for sub in ["pf/etc", "pf/spool", "pf/data", "sink"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        chown_to(&root.join("pf/data"), "postfix");
        chown_to(&root.join("sink"), "nobody");
        // The kit's socket directory, inside the queue directory.
        std::fs::create_dir_all(root.join("pf/spool/cjsm-milter")).unwrap();
        let (smtpd_port, sink_port) = (common::free_port(), common::free_port());
        let lab = root.display().to_string();
        std::fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {lab}/pf/spool\ndata_directory = {lab}/pf/data\n\
                 maillog_file = {lab}/pf/maillog\nmaillog_file_prefixes = /var, /dev/stdout, {lab}\n\
                 myhostname = mx.test.local\nmydomain = test.local\nmyorigin = $myhostname\n\
                 inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmydestination =\nlocal_recipient_maps =\n\
                 alias_maps =\nalias_database =\nmynetworks = 127.0.0.0/8\n\
                 relay_domains = test.example, gmail.com, cjsm.net, pnn.police.uk\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
                 relayhost = [127.0.0.1]:{sink_port}\nsmtp_dns_support_level = disabled\nsmtpd_peername_lookup = no\nbiff = no\n\
                 # --- postfix/main.cf.fragment, as the README says ---\n{}\n",
                fragment()
            ),
        )
        .unwrap();
        std::fs::write(
            etc.join("master.cf"),
            format!(
                "{smtpd_port} inet n - n - - smtpd\npickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\n\
                 qmgr unix n - n 300 1 qmgr\nrewrite unix - - n - - trivial-rewrite\nbounce unix - - n - 0 bounce\n\
                 defer unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\nverify unix - - n - 1 verify\n\
                 flush unix n - n 1000? 0 flush\nproxymap unix - - n - - proxymap\nsmtp unix - - n - - smtp\n\
                 relay unix - - n - - smtp\nshowq unix n - n - - showq\nerror unix - - n - - error\n\
                 retry unix - - n - - error\ndiscard unix - - n - - discard\nanvil unix - - n - 1 anvil\n\
                 scache unix - - n - 1 scache\npostlog unix-dgram n - n - 1 postlogd\n"
            ),
        )
        .unwrap();
        let sink_dir = root.join("sink");
        let sink = Command::new(smtp_sink)
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%M%S.", sink_dir.display()))
            .arg(format!("127.0.0.1:{sink_port}"))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::wait_listening(sink_port, "smtp-sink");
        let check = Command::new(&postfix)
            .arg("-c")
            .arg(&etc)
            .arg("check")
            .status()
            .unwrap();
        assert!(
            check.success(),
            "postfix check failed; see {lab}/pf/maillog"
        );
        let child = Command::new(&postfix)
            .arg("-c")
            .arg(&etc)
            .arg("start-fg")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::wait_listening(smtpd_port, "postfix smtpd");
        Lab {
            dir,
            etc,
            smtpd_port,
            sink_dir,
            postfix: Some(child),
            sink,
        }
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("pf/spool")
    }

    /// One SMTP transaction with swaks; the whole dialogue.
    fn swaks(&self, from: &str, to: &[&str], subject: &str, body: &str) -> String {
        common::swaks(self.smtpd_port, from, &to.join(","), subject, body)
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

    /// The messages the sink received so far, as text.
    /// The messages the sink received so far (complete ones).
    fn delivered(&self) -> Vec<String> {
        common::sink_messages(&self.sink_dir, 0, Duration::ZERO)
    }

    fn wait_delivered(&self, count: usize) -> Vec<String> {
        common::sink_messages(&self.sink_dir, count, Duration::from_secs(30))
    }

    fn queue_is_empty(&self) -> bool {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(&self.etc)
            .arg("-p")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("Mail queue is empty")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.postfix.take() {
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
        let _ = self.sink.kill();
        let _ = self.sink.wait();
    }
}

fn milter_config(spool: &Path) -> String {
    format!(
        "[milter]\nlisten = \"unix:{}/cjsm-milter/milter.sock\"\nsocket_mode = \"0660\"\nsocket_group = \"postfix\"\n\
         [store]\npath = \"{{dir}}/store\"\n[metrics]\nlisten = \"\"\n",
        spool.display()
    )
}

#[test]
fn postfix_with_the_milter_as_the_kit_sets_it_up() {
    let lab = Lab::start();
    let milter = Daemon::start(&milter_config(&lab.spool()));
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

    // Marked mail to secure recipients is delivered, tagged and marked.
    let dialogue = lab.swaks(
        "dc.jones@met.pnn.police.uk",
        &["alice@smithchambers.cjsm.net", "clerk@met.pnn.police.uk"],
        "OFFICIAL-SENSITIVE: custody record",
        "Please see the record.",
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let delivered = lab.wait_delivered(1);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
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

    // To an insecure recipient: refused in the SMTP dialogue, at the end of DATA.
    let dialogue = lab.swaks(
        "dc.jones@met.pnn.police.uk",
        &["someone@gmail.com"],
        "lunch",
        "hi",
    );
    assert!(
        dialogue.contains("550 5.7.1 OFFICIAL-SENSITIVE mail (unmarked mail is treated as such)"),
        "{dialogue}"
    );
    // An unknown hub address: refused at RCPT.
    let dialogue = lab.swaks(
        "dc.jones@met.pnn.police.uk",
        &["nobody@smithchambers.cjsm.net"],
        "OFFICIAL: x",
        "hi",
    );
    assert!(dialogue.contains("550 5.1.1"), "{dialogue}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.delivered().len(), 1, "nothing else reached the sink");

    // The milter stopped: 4xx, nothing accepted; mail submitted on the host waits in the
    // queue, and is delivered once (exactly once) when the milter is back.
    drop(milter);
    let dialogue = lab.swaks(
        "dc.jones@met.pnn.police.uk",
        &["clerk@met.pnn.police.uk"],
        "OFFICIAL: x",
        "hi",
    );
    assert!(dialogue.contains("451 4.7.1"), "{dialogue}");
    lab.submit_locally(
        "clerk@met.pnn.police.uk",
        "OFFICIAL: held while the milter was down",
        "body",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lab.delivered().len(),
        1,
        "nothing passes unchecked while the milter is down"
    );
    assert!(
        !lab.queue_is_empty(),
        "the local submission waits in the queue"
    );

    let milter = Daemon::start(&milter_config(&lab.spool()));
    // Wake pickup rather than wait for its 60 s poll.
    let _ = Command::new("postkick")
        .arg("-c")
        .arg(&lab.etc)
        .args(["public", "pickup", "W"])
        .status();
    let delivered = lab.wait_delivered(2);
    assert_eq!(
        delivered.len(),
        2,
        "the held message is delivered once the milter is back"
    );
    assert!(
        delivered
            .iter()
            .any(|m| m.contains("Subject: OFFICIAL: held while the milter was down"))
    );
    assert!(
        delivered
            .iter()
            .any(|m| m.contains("X-CJSM-Marking: OFFICIAL; source=subject"))
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.delivered().len(), 2, "and not twice");
    drop(milter);
}
