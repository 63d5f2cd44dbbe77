//! The cost of the milter's directory lookup (user + organisation): the embedded store (SQLite,
//! read inline on a kept connection), Redis read directly (one round trip: a Lua script), and
//! Redis through the milter's cache. Starts its own redis-server on a free loopback port.
//! Run: `cargo bench --bench lookup` (`CJSM_LOOKUP_USERS=100000` for a hub-sized directory;
//! 1000 by default).

use cjsm_milter::directory::model::{ConnectionType, OrgState, Organisation, User, UserState};
use cjsm_milter::store::{CachedDirectory, DirectoryRead, DirectoryWrite, RedisStore, SqliteStore};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Users in the directory: `CJSM_LOOKUP_USERS`, 1000 by default.
fn user_count() -> usize {
    std::env::var("CJSM_LOOKUP_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1000)
}

fn org() -> Organisation {
    Organisation {
        id: "hartley".into(),
        name: "Hartley Law LLP".into(),
        domains: vec!["hartleylaw.co.uk".into()],
        connection: ConnectionType::Server,
        state: OrgState::Active,
        terms_signed: Some(1),
        admins: vec![],
        client_certificate: None,
        mail_server: None,
        approved: Some(1),
        revision: 0,
        created: 0,
        updated: 0,
    }
}

fn users() -> Vec<User> {
    (0..user_count())
        .map(|i| User {
            address: format!("user{i}@hartleylaw.co.uk.cjsm.net"),
            org: "hartley".into(),
            first_name: format!("First{i}"),
            last_name: format!("Last{i}"),
            town: "Leeds".into(),
            business_type: "Solicitors".into(),
            state: UserState::Active,
            created: 0,
            updated: 0,
            smime_certificate: None,
            revision: 0,
        })
        .collect()
}

async fn measure(name: &str, store: &dyn DirectoryRead, rounds: usize) {
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        // Spread over the directory (a prime stride), not the same few pages.
        let address = format!(
            "user{}@hartleylaw.co.uk.cjsm.net",
            (i * 7919) % user_count()
        );
        let started = Instant::now();
        let lookup = store.lookup(&address).await.unwrap();
        times.push(started.elapsed());
        assert!(lookup.user.is_some() && lookup.org.is_some());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "{name:<40} {rounds:>7} {:>10.1} µs {:>10.1} µs",
        us(at(0.5)),
        us(at(0.99))
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server)");
    let url = format!("redis://127.0.0.1:{port}/");
    let mut store = None;
    for _ in 0..100 {
        if let Ok(s) = RedisStore::connect(&url, "bench", 1000).await {
            store = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let redis_store = Arc::new(store.expect("redis-server answers"));
    redis_store.put_org(org()).await.unwrap();
    redis_store.put_users(users()).await.unwrap();
    let embedded = SqliteStore::open(&dir.path().join("embedded")).unwrap();
    embedded.put_org(org()).await.unwrap();
    embedded.put_users(users()).await.unwrap();
    // The milter's store is opened afresh: nothing of the writes is in its connections' caches.
    let embedded = SqliteStore::open(&dir.path().join("embedded")).unwrap();

    println!(
        "{:<40} {:>7} {:>13} {:>13}",
        "lookup (user + organisation)", "runs", "median", "p99"
    );
    measure(
        "embedded store (SQLite, cold)",
        &embedded,
        user_count().min(20_000),
    )
    .await;
    measure("embedded store (SQLite, warm)", &embedded, 20_000).await;
    measure(
        "redis, no cache (1 round trip)",
        redis_store.as_ref(),
        20_000,
    )
    .await;
    let cached = CachedDirectory::new(redis_store.clone(), Duration::from_secs(60));
    measure(
        "redis through the cache (cold)",
        &cached,
        user_count().min(20_000),
    )
    .await;
    measure("redis through the cache (warm)", &cached, 20_000).await;
    drop(cached);
    let _ = redis.kill();
    let _ = redis.wait();
}
