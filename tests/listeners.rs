//! Every listener of the daemon (the milter, the socketmap, /metrics) against a local client
//! that opens connections and sends nothing: the daemon must never exit, the MTA must not be
//! locked out for long, and readiness must say when the milter's slots are full.

mod common;

use common::daemon::{Daemon, http_get, verdict};
use common::free_port;
use indymilter_test::Status;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The listeners scenario: the milter on a free port with `slots` connections, the socketmap
/// on another free port. (config text, milter address, socketmap address)
fn listeners(slots: usize) -> (String, SocketAddr, SocketAddr) {
    let milter = free_port();
    let socketmap = free_port();
    let text = common::scenario(
        "listeners",
        &[
            ("listen", &format!("inet:127.0.0.1:{milter}")),
            ("max_connections", &slots.to_string()),
            ("socketmap_port", &socketmap.to_string()),
        ],
    );
    (
        text,
        SocketAddr::from((Ipv4Addr::LOCALHOST, milter)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, socketmap)),
    )
}

/// `count` connections to `addr` that send nothing (kept open while the vector lives).
fn idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("idle connection {i} to {addr}: {e}"))
        })
        .collect()
}

/// The verdict of one milter conversation, or a failure naming how long it waited.
async fn verdict_within(addr: SocketAddr, limit: Duration) -> Status {
    tokio::time::timeout(limit, verdict(addr))
        .await
        .unwrap_or_else(|_| panic!("no verdict within {limit:?}: the MTA is locked out"))
}

/// The value of a metric line (`name{labels} value`) in the exposition.
fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn idle_socketmap_and_metrics_connections_cannot_exhaust_the_open_files() {
    // 20 milter slots and 256 open files: enough for the milter, not for 350 idle
    // connections besides (350), unless the other listeners are capped.
    let (config, milter, socketmap) = listeners(20);
    let mut daemon = Daemon::start_with_open_files(&config, 256);
    let metrics = daemon.metrics_addr();
    let _socketmap_idle = idle_connections(socketmap, 250);
    let _metrics_idle = idle_connections(metrics, 100);
    std::thread::sleep(Duration::from_millis(500));

    assert!(
        matches!(
            verdict_within(milter, Duration::from_secs(10)).await,
            Status::Reject { .. }
        ),
        "log:\n{}",
        daemon.log()
    );
    assert!(daemon.is_running(), "daemon exited; log:\n{}", daemon.log());
    assert!(
        !daemon.log().contains("Too many open files"),
        "log:\n{}",
        daemon.log()
    );
}

#[tokio::test]
async fn an_accept_error_on_the_milter_socket_never_ends_the_daemon() {
    // More milter slots (500) than open files (128): accepting fails with EMFILE.
    let (config, milter, _) = listeners(500);
    let mut daemon = Daemon::start_with_open_files(&config, 128);
    let idle = idle_connections(milter, 200);
    daemon.wait_for_log("accept failed");
    drop(idle);

    assert!(
        matches!(
            verdict_within(milter, Duration::from_secs(20)).await,
            Status::Reject { .. }
        ),
        "log:\n{}",
        daemon.log()
    );
    assert!(daemon.is_running(), "daemon exited; log:\n{}", daemon.log());
}

#[tokio::test]
async fn unnegotiated_connections_time_out_and_readiness_says_when_the_slots_are_full() {
    let (config, milter, _) = listeners(3);
    let daemon = Daemon::start(&config);
    let metrics = daemon.metrics_addr();
    // Ready once its first check of the store has answered (the metrics endpoint listens
    // before: on a busy machine that check may come a moment later).
    let mut ready = (0, String::new());
    for _ in 0..100 {
        ready = http_get(metrics, "/readyz");
        if ready.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ready.0, 200, "{}", ready.1);

    let _idle = idle_connections(milter, 3);
    let mut full = (0, String::new());
    for _ in 0..40 {
        full = http_get(metrics, "/readyz");
        if full.0 == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(full.0, 503, "readyz: {full:?}");
    assert!(full.1.contains("milter connection slots full"), "{full:?}");
    let exposition = http_get(metrics, "/metrics").1;
    assert_eq!(
        metric(&exposition, "cjsm_connections_open{listener=\"milter\"}"),
        Some(3.0),
        "{exposition}"
    );
    assert_eq!(
        metric(&exposition, "cjsm_milter_connection_slots"),
        Some(3.0)
    );

    // Connections that never negotiate are closed within seconds, so the MTA gets in.
    let started = Instant::now();
    assert!(matches!(
        verdict_within(milter, Duration::from_secs(15)).await,
        Status::Reject { .. }
    ));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(http_get(metrics, "/readyz").0, 200);
}

/// Reads until the daemon closes the connection; how long that took (at most `limit`).
fn closed_within(mut stream: TcpStream, limit: Duration) -> Duration {
    use std::io::Read;
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buffer = [0u8; 512];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return started.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return started.elapsed();
            }
            Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
        }
    }
}

/// Sends a socketmap request a byte a second (each read well within any per-read timeout)
/// until the daemon closes the connection; how long that took (at most `limit`).
fn trickled_until_closed(addr: SocketAddr, limit: Duration) -> Duration {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let started = Instant::now();
    let request = b"100:transport firm.example";
    for byte in request.iter().cycle() {
        if stream.write_all(&[*byte]).is_err() {
            return started.elapsed();
        }
        let mut buffer = [0u8; 64];
        match stream.read(&mut buffer) {
            Ok(0) => return started.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return started.elapsed();
            }
            _ => {}
        }
        assert!(started.elapsed() < limit, "still open after {limit:?}");
    }
    unreachable!("the request cycles forever")
}

#[tokio::test]
async fn unfinished_socketmap_and_metrics_requests_are_closed_within_seconds() {
    use std::io::Write;
    let (config, _, socketmap) = listeners(3);
    let daemon = Daemon::start(&config);
    let metrics = daemon.metrics_addr();

    let mut partial_query = TcpStream::connect(socketmap).unwrap();
    partial_query.write_all(b"30:transport firm").unwrap();
    let mut partial_headers = TcpStream::connect(metrics).unwrap();
    partial_headers
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .unwrap();
    let silent = TcpStream::connect(metrics).unwrap();

    let (query, headers, silence) = std::thread::scope(|scope| {
        let trickle = scope.spawn(|| trickled_until_closed(socketmap, Duration::from_secs(25)));
        let query = scope.spawn(|| closed_within(partial_query, Duration::from_secs(20)));
        let headers = scope.spawn(|| closed_within(partial_headers, Duration::from_secs(20)));
        let silence = scope.spawn(|| closed_within(silent, Duration::from_secs(40)));
        let trickle = trickle.join().unwrap();
        assert!(
            trickle <= Duration::from_secs(12),
            "socketmap, a byte a second: {trickle:?}"
        );
        (
            query.join().unwrap(),
            headers.join().unwrap(),
            silence.join().unwrap(),
        )
    });
    assert!(query <= Duration::from_secs(12), "socketmap: {query:?}");
    assert!(
        headers <= Duration::from_secs(7),
        "metrics headers: {headers:?}"
    );
    assert!(
        silence <= Duration::from_secs(32),
        "metrics, silent: {silence:?}"
    );

    let exposition = http_get(metrics, "/metrics").1;
    assert!(
        metric(
            &exposition,
            "cjsm_connections_timed_out_total{listener=\"socketmap\"}"
        ) >= Some(1.0),
        "{exposition}"
    );
}
