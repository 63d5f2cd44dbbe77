//! The socketmap server answers Postfix's own client: `postmap -q KEY socketmap:…:tlspolicy`
//! is the lookup `smtp_tls_policy_maps = socketmap:inet:127.0.0.1:PORT:tlspolicy` makes.

mod common;
// The fault matrix's redis-server, which a test can pause by PID.
#[allow(dead_code)]
#[path = "faults/backends.rs"]
mod backends;

use common::daemon::Daemon;
use std::path::Path;
use std::process::Command;

/// `postmap -q` against the socketmap: (exit code, output).
/// A socketmap scenario config with the milter on `milter_port` and the socketmap on `port`.
fn ports_scenario(name: &str, milter_port: u16, port: u16, more: &[(&str, &str)]) -> String {
    let (milter_port, port) = (milter_port.to_string(), port.to_string());
    let ports = [
        ("milter_port", milter_port.as_str()),
        ("port", port.as_str()),
    ];
    common::scenario(name, &[&ports[..], more].concat())
}

fn postmap(conf: &Path, port: u16, key: &str) -> (i32, String) {
    let out = Command::new("postmap")
        .arg("-c")
        .arg(conf)
        .args([
            "-q",
            key,
            &format!("socketmap:inet:127.0.0.1:{port}:tlspolicy"),
        ])
        .output()
        .expect("postmap (Debian package postfix)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text.trim().to_string())
}

#[test]
fn tls_policy_answers_for_organisations_and_secure_networks() {
    let port = common::free_port();
    let milter_port = common::free_port();
    let daemon = Daemon::start(&ports_scenario("socketmap", milter_port, port, &[]));
    common::cli::onboard(
        &daemon.config,
        "hartley",
        "Hartley Law LLP",
        "hartleylaw.co.uk",
        "server",
    );
    let conf = daemon.dir.path().join("postfix");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("main.cf"), "compatibility_level = 3.6\n").unwrap();

    let (code, text) = postmap(&conf, port, "hartleylaw.co.uk");
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text,
        "secure match=.hartleylaw.co.uk:hartleylaw.co.uk protocols=>=TLSv1.2 ciphers=high"
    );
    let (code, text) = postmap(&conf, port, "mx2.hartleylaw.co.uk");
    assert_eq!(code, 0, "{text}");
    let (code, text) = postmap(&conf, port, "met.pnn.police.uk");
    assert_eq!(
        (code, text.contains("match=.pnn.police.uk")),
        (0, true),
        "{text}"
    );
    let (code, text) = postmap(&conf, port, "gmail.com");
    assert_eq!((code, text.as_str()), (1, ""), "not found");

    // A suspended organisation no longer gets the policy.
    common::cli::cli_ok(&daemon.config, &["directory", "org", "suspend", "hartley"]);
    let (code, text) = postmap(&conf, port, "hartleylaw.co.uk");
    assert_eq!((code, text.as_str()), (1, ""));

    // The store broken: a temporary error, never "not found" (which would send in clear).
    std::fs::write(
        daemon.dir.path().join("store/directory.sqlite3"),
        "{ broken",
    )
    .unwrap();
    // postmap, like the smtp client, reports it as a query error (the delivery is deferred).
    let (code, text) = postmap(&conf, port, "met.pnn.police.uk");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("temporary error: directory unavailable"),
        "{text}"
    );
    assert!(text.contains("query error"), "{text}");
}

/// Onboards Firm LLP (firm.co.uk), whose mail goes to its own server at 192.0.2.25:2525.
fn onboard_firm(config: &Path) {
    common::cli::onboard_with(
        config,
        "firm",
        "Firm LLP",
        "firm.co.uk",
        "server",
        &["--mail-server", "[192.0.2.25]:2525"],
    );
}

/// A connection to the socketmap server on `port`, with a read timeout so that a server that
/// never answers fails the test instead of hanging it.
fn socketmap_client(port: u16) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
}

/// One request over the socketmap protocol, as Sendmail's socket map client sends it.
fn ask(stream: &mut std::net::TcpStream, request: &str) -> String {
    use std::io::{Read, Write};
    stream
        .write_all(format!("{}:{request},", request.len()).as_bytes())
        .unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    // LEN: then LEN bytes then ','; bounded by the server's short answers.
    while reply.len() < 1100 {
        if stream.read(&mut byte).unwrap() == 0 {
            break;
        }
        reply.push(byte[0]);
        let text = String::from_utf8_lossy(&reply);
        if let Some((len, rest)) = text.split_once(':')
            && let Ok(len) = len.parse::<usize>()
            && rest.len() == len + 1
        {
            return rest[..len].to_string();
        }
    }
    panic!("no netstring: {:?}", String::from_utf8_lossy(&reply));
}

#[test]
fn sendmail_maps_and_bounds_over_the_wire() {
    let port = common::free_port();
    let milter_port = common::free_port();
    let daemon = Daemon::start(&ports_scenario(
        "socketmap_sendmail_relay",
        milter_port,
        port,
        &[],
    ));
    onboard_firm(&daemon.config);
    let mut stream = socketmap_client(port);
    let cases = [
        ("mailertable firm.co.uk", "OK relay:[192.0.2.25]"),
        ("mailertable .co.uk", "NOTFOUND "),
        ("transport bob@firm.co.uk", "OK smtp:[192.0.2.25]:2525"),
        ("access TLS_Rcpt:firm.co.uk", "OK VERIFY:128"),
        ("access TLS_Rcpt:cps.gsi.gov.uk", "OK VERIFY:128"),
        ("access TLS_Rcpt:gmail.com", "NOTFOUND "),
        ("access Connect:127.0.0.1", "NOTFOUND "),
    ];
    for (request, want) in cases {
        assert_eq!(ask(&mut stream, request), want, "{request}");
    }
    // SIGHUP: a new secure domain and mailer apply to the socketmap without a restart.
    assert_eq!(
        ask(&mut stream, "access TLS_Rcpt:newforce.example"),
        "NOTFOUND "
    );
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(
        &daemon.config,
        text.replace("sendmail_mailer = \"relay\"", "sendmail_mailer = \"esmtp\"")
            + "[routing]\nsecure_domains = [\"newforce.example\"]\n",
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("config reloaded");
    assert_eq!(
        ask(&mut stream, "access TLS_Rcpt:newforce.example"),
        "OK VERIFY:128"
    );
    assert_eq!(
        ask(&mut stream, "mailertable firm.co.uk"),
        "OK esmtp:[192.0.2.25]"
    );
    let unknown = ask(&mut stream, "aliases root");
    assert!(unknown.starts_with("PERM unknown map"), "{unknown}");
    // A request announced past the bound: refused at its length, and the connection closed.
    // (Only the length is sent, so the server closes with nothing unread.)
    use std::io::{Read, Write};
    stream.write_all(b"2010:").unwrap();
    let mut reply = [0u8; 200];
    let n = stream.read(&mut reply).unwrap();
    let refused = String::from_utf8_lossy(&reply[..n]).into_owned();
    assert!(refused.contains("PERM request longer than"), "{refused}");
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap_or(0), 0, "closed");
}

/// A Redis that lost its data (here: restarted without persistence) is an outage for the
/// routes, not an empty directory: `TEMP`, so queued mail for a connected organisation waits
/// for its route rather than leave by MX.
#[test]
fn a_redis_that_lost_its_data_answers_temp() {
    let mut redis = common::redis::RedisServer::start();
    let port = common::free_port();
    let milter_port = common::free_port();
    let daemon = Daemon::start(&ports_scenario(
        "socketmap_redis",
        milter_port,
        port,
        &[("redis_url", &redis.url())],
    ));
    let mut stream = socketmap_client(port);
    // Before anything is written, the directory is not there yet either.
    let empty = ask(&mut stream, "transport bob@firm.co.uk");
    assert!(empty.starts_with("TEMP"), "{empty}");
    onboard_firm(&daemon.config);
    assert_eq!(
        ask(&mut stream, "transport bob@firm.co.uk"),
        "OK smtp:[192.0.2.25]:2525"
    );
    assert_eq!(ask(&mut stream, "transport bob@gmail.com"), "NOTFOUND ");
    // Answered from Redis's indexes (by domain, its parents, and by registered server), the
    // TLS policy follows the organisation's next hop when it moves.
    let policy = "OK secure match=.firm.co.uk:firm.co.uk protocols=>=TLSv1.2 ciphers=high";
    assert_eq!(ask(&mut stream, "tlspolicy [192.0.2.25]:2525"), policy);
    assert_eq!(ask(&mut stream, "tlspolicy mx1.firm.co.uk"), policy);
    assert_eq!(
        ask(&mut stream, "access TLS_Rcpt:firm.co.uk"),
        "OK VERIFY:128"
    );
    common::cli::cli_ok(
        &daemon.config,
        &[
            "directory",
            "org",
            "update",
            "firm",
            "--mail-server",
            "[192.0.2.26]:25",
        ],
    );
    assert_eq!(ask(&mut stream, "tlspolicy [192.0.2.25]:2525"), "NOTFOUND ");
    assert_eq!(ask(&mut stream, "tlspolicy [192.0.2.26]:25"), policy);
    assert_eq!(
        ask(&mut stream, "transport bob@firm.co.uk"),
        "OK smtp:[192.0.2.26]:25"
    );

    redis.stop();
    redis.restart();
    // The daemon's connection to Redis comes back; the data does not.
    let mut answer = String::new();
    for _ in 0..50 {
        answer = ask(&mut stream, "transport bob@firm.co.uk");
        if answer.starts_with("TEMP directory unavailable: the directory store is empty") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        answer.starts_with("TEMP directory unavailable: the directory store is empty"),
        "{answer}"
    );
    let other = ask(&mut stream, "tlspolicy firm.co.uk");
    assert!(other.starts_with("TEMP"), "{other}");
}

#[test]
fn a_paused_redis_answers_temp_at_the_deadline() {
    let data = tempfile::tempdir().unwrap();
    let redis = backends::Redis::start(data.path(), &[]);
    let port = common::free_port();
    let milter_port = common::free_port();
    // Shorter than the Redis client's own response timeout (2 s): the deadline must be what
    // answers.
    let config = ports_scenario(
        "socketmap_redis",
        milter_port,
        port,
        &[("redis_url", &redis.url())],
    )
    .replace("[milter]\n", "[milter]\ndeadline_ms = 300\n");
    let daemon = Daemon::start(&config);
    onboard_firm(&daemon.config);
    let mut stream = socketmap_client(port);
    assert_eq!(
        ask(&mut stream, "transport bob@firm.co.uk"),
        "OK smtp:[192.0.2.25]:2525"
    );

    redis.signal(libc::SIGSTOP);
    let started = std::time::Instant::now();
    let answer = ask(&mut stream, "transport bob@firm.co.uk");
    let took = started.elapsed();
    redis.signal(libc::SIGCONT);
    assert!(answer.starts_with("TEMP directory unavailable"), "{answer}");
    assert!(
        took < std::time::Duration::from_millis(1000),
        "the answer took {took:?} with deadline_ms = 300"
    );

    // Redis resumed: the right answer again.
    let mut answer = String::new();
    for _ in 0..50 {
        answer = ask(&mut stream, "transport bob@firm.co.uk");
        if answer.starts_with("OK") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(answer, "OK smtp:[192.0.2.25]:2525");
}
