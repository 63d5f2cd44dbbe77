//! The daemon as an administrator runs it: `cjsm-milter run` as a child process, driven over
//! the milter protocol; SIGHUP reloads (a bad file keeps the running config), SIGTERM drains.

use indymilter_test::{MacroStage, ProtoOpts, Status, TestConnection};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// `listen` goes into `[milter]` with `milter_extra`; `extra` holds top-level keys.
    fn start(listen: &str, milter_extra: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cjsm.toml");
        write_config(&config, listen, milter_extra, extra, dir.path());
        let mut child = Command::new(env!("CARGO_BIN_EXE_cjsm-milter"))
            .args(["--config", config.to_str().unwrap(), "run"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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
            _dir: dir,
        };
        daemon.wait_for_log("cjsm-milter listening");
        daemon
    }

    /// Signals the daemon we started, by its PID.
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with a PID of our own child process and a valid signal number.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_for_log(&self, needle: &str) {
        for _ in 0..200 {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{needle:?} not logged within 5 s; log:\n{}", self.log());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
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

fn write_config(path: &Path, listen: &str, milter_extra: &str, extra: &str, dir: &Path) {
    std::fs::write(
        path,
        format!(
            "{extra}\n[milter]\nlisten = \"{listen}\"\n{milter_extra}\n[store]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_message(conn: &mut TestConnection, rcpt: &str) {
    conn.connect("client", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
        .await
        .unwrap();
    conn.macros(MacroStage::Mail, [("i", "ABC123")])
        .await
        .unwrap();
    assert_eq!(
        conn.mail(["a@met.pnn.police.uk"]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(conn.rcpt([rcpt]).await.unwrap(), Status::Continue);
}

async fn finish_message(conn: &mut TestConnection, subject: &str) -> Status {
    if !conn.negotiated_opts().contains(ProtoOpts::NO_DATA) {
        conn.data().await.unwrap();
    }
    conn.header("Subject", subject).await.unwrap();
    conn.eoh().await.unwrap();
    conn.body(b"hello\r\n".to_vec()).await.unwrap();
    conn.eom().await.unwrap().1
}

/// One unmarked message to the internet: rejected when enforcing, accepted in report mode.
async fn verdict(addr: SocketAddr) -> Status {
    let mut conn = TestConnection::open(addr).await.unwrap();
    start_message(&mut conn, "x@gmail.com").await;
    let status = finish_message(&mut conn, "lunch").await;
    conn.close().await.unwrap();
    status
}

#[tokio::test]
async fn sighup_reloads_and_a_bad_file_keeps_the_running_config() {
    let port = free_port();
    let listen = format!("inet:127.0.0.1:{port}");
    let daemon = Daemon::start(&listen, "", "");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert!(matches!(verdict(addr).await, Status::Reject { .. }));

    write_config(
        &daemon.config,
        &listen,
        "",
        "mode = \"report\"",
        daemon._dir.path(),
    );
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("config reloaded");
    assert_eq!(verdict(addr).await, Status::Accept);

    std::fs::write(&daemon.config, "mode = \"enforce\"\n[milter]\nlisen = 1\n").unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("config reload failed");
    assert!(
        daemon.log().contains("lisen"),
        "the log says why: {}",
        daemon.log()
    );
    assert_eq!(
        verdict(addr).await,
        Status::Accept,
        "still the report-mode config"
    );
}

#[tokio::test]
async fn sigterm_drains_the_message_in_flight_and_refuses_new_sessions() {
    let port = free_port();
    let mut daemon = Daemon::start(&format!("inet:127.0.0.1:{port}"), "", "");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut conn = TestConnection::open(addr).await.unwrap();
    start_message(&mut conn, "b@met.pnn.police.uk").await;

    daemon.signal(libc::SIGTERM);
    daemon.wait_for_log("shutting down");
    // A new session is closed before negotiation completes.
    assert!(
        TestConnection::open(addr).await.is_err(),
        "new sessions are refused while draining"
    );
    // The message in flight still gets its verdict.
    assert_eq!(
        finish_message(&mut conn, "OFFICIAL: x").await,
        Status::Accept
    );
    drop(conn);
    let status = daemon.wait_exit();
    assert!(status.success(), "{status:?}; log:\n{}", daemon.log());
    let log = daemon.log();
    assert!(
        log.contains("queue_id=ABC123"),
        "the summary line carries the queue id: {log}"
    );
    assert!(log.contains("action=accept"), "{log}");
}

#[tokio::test]
async fn unix_socket_with_mode_and_stale_file_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    // A stale socket file, as a killed instance leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let mut daemon = Daemon::start(
        &format!("unix:{}", socket.display()),
        "socket_mode = \"0660\"\nsocket_group = \"0\"",
        "",
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let mut conn = indymilter_test::TestConnection::configure()
        .open_unix(&socket)
        .await
        .unwrap();
    start_message(&mut conn, "b@met.pnn.police.uk").await;
    assert_eq!(
        finish_message(&mut conn, "OFFICIAL: x").await,
        Status::Accept
    );
    conn.close().await.unwrap();
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success());
    assert!(!socket.exists(), "the socket file is removed on exit");
}
