//! A private Dovecot for the mail sign-in tests: its own config, run, state and log
//! directories, no protocols on the network (only its auth service, which Postfix and
//! `doveadm auth test` ask), started by the test as a direct child (`dovecot -F`) and stopped
//! by PID. Its passdb is the kit's: dovecot/10-cjsm-auth.conf with the test's paths, so the
//! auth process runs as Dovecot's internal user `dovecot` with the store's group added.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The store's owner in the tests: `nobody:nogroup` stands for the `cjsm-milter` service
/// account and group of a real installation.
pub const STORE_OWNER: &str = "nobody:nogroup";
pub const STORE_GROUP: &str = "nogroup";

fn need_dovecot() -> PathBuf {
    let path = Path::new("/usr/sbin/dovecot");
    assert!(
        path.exists(),
        "dovecot is not installed: the mail sign-in tests need Debian's dovecot-core package \
         (apt-get install dovecot-core)"
    );
    path.to_path_buf()
}

pub fn kit_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dovecot")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A directory the `dovecot` user can reach (tempfile makes them 0700, root's).
pub fn reachable_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// An empty store directory owned as a real installation's is ([`STORE_OWNER`], 0750): the
/// database the milter (or an admin command run as root) creates in it gets that owner, 0640.
pub fn store_dir(parent: &Path) -> PathBuf {
    let store = parent.join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o750)).unwrap();
    super::postfix::chown_to(&store, STORE_OWNER);
    store
}

/// The milter's config file as the kit expects it: readable by the service group, not by
/// everyone (0640 root:`STORE_GROUP`), so the test also shows the group is enough to read it.
pub fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cjsm.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    super::postfix::chown_to(&path, &format!("root:{STORE_GROUP}"));
    path
}

/// What `doveadm auth test` answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Auth {
    /// Signed in, as this user name (what Dovecot, and so Postfix, carries on with).
    Granted(String),
    Refused,
    TemporaryFailure,
}

pub struct Dovecot {
    child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The auth socket for Postfix (and doveadm).
    pub auth_socket: PathBuf,
    attempts: AtomicU32,
}

impl Dovecot {
    /// Starts Dovecot with the kit's fragment, under `dir` (reachable by `dovecot`), signing
    /// users in through `cjsm-milter --config MILTER_CONFIG dovecot-auth`, its auth socket at
    /// `auth_socket`. `edit` may change the fragment (a negative test takes a line out).
    pub fn start(
        dir: &Path,
        milter_config: &Path,
        auth_socket: &Path,
        edit: impl FnOnce(String) -> String,
    ) -> Dovecot {
        let dovecot = need_dovecot();
        let dir = dir.join("dovecot");
        for sub in ["run", "state", "log", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let d = dir.display();
        let fragment = kit_file("10-cjsm-auth.conf")
            .replace("/usr/sbin/cjsm-milter", env!("CARGO_BIN_EXE_cjsm-milter"))
            .replace(
                "/etc/cjsm-milter/cjsm-milter.toml",
                &milter_config.display().to_string(),
            )
            .replace(
                "extra_groups = cjsm-milter",
                &format!("extra_groups = {STORE_GROUP}"),
            )
            .replace(
                "/var/spool/postfix/private/auth",
                &auth_socket.display().to_string(),
            )
            .replace(
                "uid=vmail gid=vmail home=/var/vmail/%d/%n",
                &format!("uid=nobody gid=nogroup home={d}/mail/%d/%n"),
            );
        let fragment = edit(fragment);
        // The base a Debian install has in dovecot.conf and conf.d, for a private instance.
        let config = dir.join("dovecot.conf");
        std::fs::write(
            &config,
            format!(
                "instance_name = dovecot-{}\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
                 log_path = {d}/log/dovecot.log\nprotocols =\nlisten = 127.0.0.1\nssl = no\n\
                 default_login_user = dovenull\ndefault_internal_user = dovecot\n\
                 auth_verbose = yes\n\
                 # --- dovecot/10-cjsm-auth.conf, as the README says ---\n{fragment}\n",
                std::process::id()
            ),
        )
        .unwrap();
        let child = Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log/stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut dovecot = Dovecot {
            child: Some(child),
            dir,
            config,
            auth_socket: auth_socket.to_path_buf(),
            attempts: AtomicU32::new(0),
        };
        dovecot.wait_for_socket();
        dovecot
    }

    fn wait_for_socket(&mut self) {
        let started = Instant::now();
        while !self.auth_socket.exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let stderr =
                    std::fs::read_to_string(self.dir.join("log/stderr")).unwrap_or_default();
                panic!("dovecot exited ({status}): {stderr}{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "dovecot made no auth socket at {} within 15 s; log:\n{}",
                self.auth_socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/dovecot.log")).unwrap_or_default()
    }

    /// `doveadm auth test -a SOCKET USER PASSWORD`, as Postfix's SMTP AUTH asks. Each
    /// attempt comes from a client address of its own (TEST-NET-1): Dovecot delays an address
    /// that keeps failing by up to 15 s more, which would slow every case after a refusal.
    pub fn auth_test(&self, user: &str, password: &str) -> Auth {
        let client = 1 + self.attempts.fetch_add(1, Ordering::Relaxed) % 250;
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.config)
            .args(["auth", "test", "-a"])
            .arg(&self.auth_socket)
            .args(["-x", &format!("rip=192.0.2.{client}")])
            .args([user, password])
            .stdin(Stdio::null())
            .output()
            .expect("doveadm (Debian package dovecot-core)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                let user = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("user="))
                    .unwrap_or_else(|| panic!("granted without user=: {text}"));
                Auth::Granted(user.to_string())
            }
            Some(77) if text.contains("code=temp_fail") => Auth::TemporaryFailure,
            Some(77) => Auth::Refused,
            other => panic!("doveadm auth test exited {other:?}: {text}"),
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The master stops its own processes on SIGTERM.
            let pid = libc::pid_t::try_from(child.id()).unwrap();
            // SAFETY: kill(2) with the PID of the Dovecot master we started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.wait();
        }
    }
}
