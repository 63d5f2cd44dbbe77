//! The daemon as an administrator runs it: `cjsm-milter run` as a child process, driven over
//! the milter protocol; SIGHUP reloads (a bad file keeps the running config), SIGTERM drains.

mod common;

use common::daemon::{Daemon, finish_message, start_message, verdict};
use common::free_port;
use indymilter_test::{MacroStage, ProtoOpts, Status, TestConnection};
use std::net::{Ipv4Addr, SocketAddr};

/// The daemon scenario in `mode`, the milter listening on `listen`.
fn config_text(mode: &str, listen: &str) -> String {
    common::scenario("daemon", &[("mode", mode), ("listen", listen)])
}

#[tokio::test]
async fn sighup_reloads_and_a_bad_file_keeps_the_running_config() {
    let port = free_port();
    let listen = format!("inet:127.0.0.1:{port}");
    let daemon = Daemon::start(&config_text("enforce", &listen));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert!(matches!(verdict(addr).await, Status::Reject { .. }));

    std::fs::write(
        &daemon.config,
        config_text("report", &listen).replace("{dir}", &daemon.dir.path().display().to_string()),
    )
    .unwrap();
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

/// A config path swapped for a FIFO: SIGHUP refuses it at once (reading would block until a
/// writer appears), and the milter, /healthz and SIGTERM go on answering meanwhile.
#[tokio::test]
async fn sighup_on_a_fifo_is_refused_and_the_milter_keeps_answering() {
    let port = free_port();
    let listen = format!("inet:127.0.0.1:{port}");
    let mut daemon = Daemon::start(&config_text("enforce", &listen));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let metrics = daemon.metrics_addr();

    std::fs::remove_file(&daemon.config).unwrap();
    let path = std::ffi::CString::new(daemon.config.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path in the daemon's temporary directory.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    for _ in 0..3 {
        daemon.signal(libc::SIGHUP);
    }
    let bounded = std::time::Duration::from_secs(5);
    for _ in 0..3 {
        let status = tokio::time::timeout(bounded, verdict(addr))
            .await
            .expect("the milter answers while a reload is pending");
        assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    }
    let (code, _) =
        tokio::task::spawn_blocking(move || common::daemon::http_get(metrics, "/healthz"))
            .await
            .unwrap();
    assert_eq!(code, 200);
    daemon.wait_for_log("config reload failed");
    assert!(
        daemon.log().contains("not a regular file"),
        "{}",
        daemon.log()
    );

    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit();
    assert!(status.success(), "{status:?}; log:\n{}", daemon.log());
}

#[tokio::test]
async fn sigterm_drains_the_message_in_flight_and_refuses_new_sessions() {
    let port = free_port();
    let listen = format!("inet:127.0.0.1:{port}");
    let mut daemon = Daemon::start(&config_text("enforce", &listen));
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
    let socket_path = socket.display().to_string();
    let mut daemon = Daemon::start(&common::scenario(
        "daemon_unix_socket",
        &[("socket", &socket_path)],
    ));
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

#[tokio::test]
async fn logs_to_syslog_as_json_carry_the_queue_id_and_never_the_body() {
    let port = free_port();
    let daemon = Daemon::start(&common::scenario(
        "daemon_syslog_json",
        &[("port", &port.to_string())],
    ));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut conn = TestConnection::open(addr).await.unwrap();
    start_message(&mut conn, "x@gmail.com").await;
    if !conn.negotiated_opts().contains(ProtoOpts::NO_DATA) {
        conn.data().await.unwrap();
    }
    conn.header("Subject", "lunch plans").await.unwrap();
    conn.eoh().await.unwrap();
    conn.body(b"BODY-CANARY-7f3a the body must never be logged\r\n".to_vec())
        .await
        .unwrap();
    let (_, status) = conn.eom().await.unwrap();
    assert!(matches!(status, Status::Reject { .. }));
    conn.close().await.unwrap();
    daemon.wait_for_log("\"reason\":\"no-secure-route\"");
    let log = daemon.log();
    // glibc's copy of what went to syslog: identity and PID, then the JSON line.
    let summary = log
        .lines()
        .find(|l| l.contains("\"reason\":\"no-secure-route\""))
        .unwrap();
    assert!(summary.starts_with("cjsm-milter["), "{summary}");
    let json: serde_json::Value =
        serde_json::from_str(&summary[summary.find('{').unwrap()..]).unwrap();
    assert_eq!(json["fields"]["queue_id"], "ABC123", "{json}");
    assert_eq!(json["fields"]["action"], "reject");
    assert_eq!(json["fields"]["marking"], "OFFICIAL-SENSITIVE");
    assert!(!log.contains("BODY-CANARY"), "{log}");
    assert!(!log.contains("lunch plans"), "no subjects either: {log}");
}

/// A queue ID (from the MTA's `i` macro) or an address holding a newline cannot write a line
/// of its own into the plain log: control characters in every logged field are escaped.
#[tokio::test]
async fn control_characters_in_logged_fields_cannot_forge_a_log_line() {
    let port = free_port();
    let listen = format!("inet:127.0.0.1:{port}");
    let mut daemon = Daemon::start(&config_text("enforce", &listen));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let forged = "FORGED action=accept reason=none";
    let mut conn = TestConnection::open(addr).await.unwrap();
    conn.connect("client", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
        .await
        .unwrap();
    conn.macros(
        MacroStage::Mail,
        [("i", format!("Q1\n{forged}\r").as_str())],
    )
    .await
    .unwrap();
    assert_eq!(
        conn.mail(["a@met.pnn.police.uk"]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(conn.rcpt(["x@gmail.com"]).await.unwrap(), Status::Continue);
    assert!(matches!(
        finish_message(&mut conn, "lunch").await,
        Status::Reject { .. }
    ));
    conn.close().await.unwrap();
    // A recipient address with a newline in it, refused or not, is logged on one line too.
    let mut conn = TestConnection::open(addr).await.unwrap();
    conn.connect("client", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
        .await
        .unwrap();
    conn.macros(MacroStage::Mail, [("i", "Q2")]).await.unwrap();
    let _ = conn.mail(["a@met.pnn.police.uk"]).await;
    let _ = conn.rcpt([format!("x@gmail.com\n{forged}").as_str()]).await;
    drop(conn);
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
    let log = daemon.log();
    assert!(
        log.contains("queue_id=Q1\\n"),
        "the queue id is logged, escaped: {log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "no line of the client's making: {log}"
    );
}
