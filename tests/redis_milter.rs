//! Milters sharing one Redis: a suspension made with the admin CLI is enforced by every
//! instance within a second; Redis going away means tempfail, and its return means mail
//! flows again, in the same milter process.

mod common;

use common::cli::{cli, cli_add_user, cli_ok, onboard};
use common::redis::RedisServer;
use common::{TestMilter, rcpt_status};
use indymilter_test::{MacroStage, Status, TestConnection};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const HUB_USER: &str = "alice@hartleylaw.co.uk.cjsm.net";
const SENDER: &str = "dc@met.pnn.police.uk";

fn code(status: &Status) -> String {
    match status {
        Status::Reject { message: Some(m) } | Status::Tempfail { message: Some(m) } => {
            m.to_string_lossy().chars().take(9).collect()
        }
        Status::Continue => "continue".into(),
        other => format!("{other:?}"),
    }
}

/// Polls every milter until each answers `want`, or the limit passes; returns the time taken.
async fn until_all(milters: &[&TestMilter], want: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut answers = Vec::new();
        for milter in milters {
            answers.push(code(&rcpt_status(milter.addr, SENDER, HUB_USER).await));
        }
        if answers.iter().all(|a| a == want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not every milter answered {want:?} within {limit:?}: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_reaches_every_milter_and_redis_outage_means_tempfail() {
    let mut redis = RedisServer::start_persistent();
    let dir = tempfile::tempdir().unwrap();
    let store_section = format!(
        // The police sender is believed only from a secure-network peer: the loopback client.
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"hub\"\ncache_ttl_ms = 1000\n\
         [routing]\nsecure_networks = [\"127.0.0.0/8\"]\n",
        redis.url()
    );
    let config = dir.path().join("cjsm.toml");
    std::fs::write(&config, &store_section).unwrap();
    onboard(
        &config,
        "hartley",
        "Hartley Law LLP",
        "hartleylaw.co.uk",
        "server",
    );
    cli_add_user(&config, HUB_USER, "hartley", "Alice", "Jones");

    let one = TestMilter::start(&store_section).await;
    let two = TestMilter::start(&store_section).await;
    until_all(&[&one, &two], "continue", Duration::from_secs(3)).await;

    cli_ok(&config, &["directory", "user", "suspend", HUB_USER]);
    let took = until_all(&[&one, &two], "550 5.2.1", Duration::from_secs(1)).await;
    eprintln!("suspension enforced by both milters after {took:?}");

    cli_ok(&config, &["directory", "user", "reactivate", HUB_USER]);
    until_all(&[&one, &two], "continue", Duration::from_secs(1)).await;

    // Redis goes away: the cache is dropped with the subscription, lookups fail: tempfail.
    redis.stop();
    let took = until_all(&[&one, &two], "451 4.7.1", Duration::from_secs(10)).await;
    eprintln!("tempfail after Redis stopped: {took:?}");

    // Redis comes back: the same processes accept again.
    redis.restart();
    let took = until_all(&[&one, &two], "continue", Duration::from_secs(10)).await;
    eprintln!("accepting again after Redis restarted: {took:?}");

    // The cache really answers: a change written behind the milters' backs (no publish) is
    // not seen while the entry is fresh; the published notice makes it seen at once.
    until_all(&[&one], "continue", Duration::from_secs(1)).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Both milters have subscribed again (PUBLISH answers with the number of subscribers).
    let started = Instant::now();
    loop {
        let listeners: i64 = redis::cmd("PUBLISH")
            .arg("{hub}:changes")
            .arg("ping")
            .query_async(&mut conn)
            .await
            .unwrap();
        if listeners >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "milters did not resubscribe"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_all(&[&one], "continue", Duration::from_secs(1)).await;
    let key = format!("{{hub}}:user:{HUB_USER}");
    let json: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let suspended = json.replace("\"state\":\"active\"", "\"state\":\"suspended\"");
    assert_ne!(json, suspended);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&suspended)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        code(&rcpt_status(one.addr, SENDER, HUB_USER).await),
        "continue",
        "answered from the cache"
    );
    let _: () = redis::cmd("PUBLISH")
        .arg("{hub}:changes")
        .arg(format!("user:{HUB_USER}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // The entry is a few milliseconds old and would live for the rest of its second: seeing
    // the change within half of that can only be the pushed notice.
    until_all(&[&one], "550 5.2.1", Duration::from_millis(500)).await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&json)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("PUBLISH")
        .arg("{hub}:changes")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    until_all(&[&one], "continue", Duration::from_secs(1)).await;

    // Verdicts reach the audit trail in Redis.
    let mut conn = TestConnection::open(one.addr).await.unwrap();
    conn.connect("c", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
        .await
        .unwrap();
    conn.macros(MacroStage::Mail, [("i", "AUDIT1")])
        .await
        .unwrap();
    conn.mail(["dc@met.pnn.police.uk"]).await.unwrap();
    conn.rcpt([HUB_USER]).await.unwrap();
    conn.header("Subject", "OFFICIAL: x").await.unwrap();
    conn.eoh().await.unwrap();
    conn.body(b"x\r\n".to_vec()).await.unwrap();
    conn.macros(MacroStage::Eom, [("i", "AUDIT1")])
        .await
        .unwrap();
    let (_, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Accept);
    let mut found = false;
    for _ in 0..100 {
        let out = cli(&config, &["audit", "search", "--queue-id", "AUDIT1"]);
        if out.stdout.contains("\"action\":\"accept\"") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(found, "the verdict is in the audit trail");
    // Refusals at RCPT are verdicts too.
    let search = ["audit", "search", "--address", HUB_USER, "-n", "1000"];
    let trail = cli(&config, &search).stdout;
    assert!(
        trail.contains("\"reason\":\"recipient-suspended\""),
        "{trail}"
    );
    one.stop().await;
    two.stop().await;
}
