//! The daemon as a child process: `cjsm-milter --config FILE run`, its stderr collected, stopped
//! by PID.

use indymilter_test::{MacroStage, ProtoOpts, Status, TestConnection};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Writes `config_text` (with `{dir}` replaced by a fresh temporary directory) and runs
    /// the milter on it, waiting until it listens.
    ///
    /// The suite runs as root: a config that says nothing of the account to run as gets
    /// `allow_root = true`, so the daemon stays root as these tests expect (its own temporary
    /// directories are root's); tests/privilege.rs tests the drop itself.
    pub fn start(config_text: &str) -> Daemon {
        Daemon::start_with(
            tempfile::tempdir().unwrap(),
            &root_allowed(config_text),
            |_| {},
        )
    }

    /// [`Daemon::start`] in the directory given, on the config text as it is.
    pub fn start_in(dir: tempfile::TempDir, config_text: &str) -> Daemon {
        Daemon::start_with(dir, config_text, |_| {})
    }

    /// [`Daemon::start`] with at most `limit` open files (soft and hard), as a systemd unit's
    /// `LimitNOFILE` would give it.
    pub fn start_with_open_files(config_text: &str, limit: u64) -> Daemon {
        use std::os::unix::process::CommandExt;
        Daemon::start_with(
            tempfile::tempdir().unwrap(),
            &root_allowed(config_text),
            |command| {
                // SAFETY: setrlimit(2) is async-signal-safe; the closure allocates nothing.
                unsafe {
                    command.pre_exec(move || {
                        let rlimit = libc::rlimit {
                            rlim_cur: limit,
                            rlim_max: limit,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            },
        )
    }

    fn start_with(
        dir: tempfile::TempDir,
        config_text: &str,
        configure: impl FnOnce(&mut Command),
    ) -> Daemon {
        let config = dir.path().join("cjsm.toml");
        std::fs::write(
            &config,
            config_text.replace("{dir}", &dir.path().display().to_string()),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cjsm-milter"));
        command
            .args(["--config", config.to_str().unwrap(), "run"])
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let daemon = Daemon {
            child,
            log,
            config,
            dir,
        };
        daemon.wait_for_log("cjsm-milter listening");
        daemon
    }

    /// Signals the daemon we started, by its PID.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with a PID of our own child process and a valid signal number.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_log(&self, needle: &str) {
        for _ in 0..200 {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{needle:?} not logged within 5 s; log:\n{}", self.log());
    }

    /// The address of /metrics, from the start-up log.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.wait_for_log("metrics endpoint");
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("metrics endpoint"))
            .unwrap();
        let addr = line
            .split("listen=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        addr.parse().unwrap()
    }

    /// Whether the daemon is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        panic!("daemon did not exit within 10 s; log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `text` with `allow_root = true` in its `[milter]` table, unless it sets `user`, `group` or
/// `allow_root` there itself.
pub fn root_allowed(text: &str) -> String {
    let sets_account = text.lines().any(|line| {
        let line = line.trim_start();
        ["user", "group", "allow_root"].iter().any(|key| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    });
    if sets_account {
        return text.to_string();
    }
    match text.lines().position(|line| line.trim() == "[milter]") {
        Some(at) => {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.insert(at + 1, "allow_root = true");
            lines.join("\n") + "\n"
        }
        None => format!("{text}\n[milter]\nallow_root = true\n"),
    }
}

/// GET over HTTP/1.0 from a loopback address: (status code, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// MAIL from a police sender (from loopback) to `rcpt`, under queue ID ABC123.
pub async fn start_message(conn: &mut TestConnection, rcpt: &str) {
    start_message_as(conn, "ABC123", rcpt).await
}

/// [`start_message`] under the queue ID given, for tests that find the message by it.
pub async fn start_message_as(conn: &mut TestConnection, queue_id: &str, rcpt: &str) {
    conn.connect("client", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
        .await
        .unwrap();
    conn.macros(MacroStage::Mail, [("i", queue_id)])
        .await
        .unwrap();
    assert_eq!(
        conn.mail(["a@met.pnn.police.uk"]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(conn.rcpt([rcpt]).await.unwrap(), Status::Continue);
}

pub async fn finish_message(conn: &mut TestConnection, subject: &str) -> Status {
    if !conn.negotiated_opts().contains(ProtoOpts::NO_DATA) {
        conn.data().await.unwrap();
    }
    conn.header("Subject", subject).await.unwrap();
    conn.eoh().await.unwrap();
    conn.body(b"hello\r\n".to_vec()).await.unwrap();
    conn.eom().await.unwrap().1
}

/// One unmarked message to the internet: rejected when enforcing, accepted in report mode.
pub async fn verdict(addr: SocketAddr) -> Status {
    let conn = TestConnection::open(addr).await.unwrap();
    unmarked_message_verdict(conn, "ABC123").await
}

/// One unmarked message to the internet on an open `conn` (TCP or unix), under `queue_id`:
/// its verdict.
pub async fn unmarked_message_verdict(mut conn: TestConnection, queue_id: &str) -> Status {
    start_message_as(&mut conn, queue_id, "x@gmail.com").await;
    let status = finish_message(&mut conn, "lunch").await;
    conn.close().await.unwrap();
    status
}
