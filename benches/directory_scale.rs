//! The directory at the size of a real hub (issue 14, BENCHMARKS.md "Directory at hub scale"):
//! builds a directory of 100k users and 10k organisations on each backend — the embedded store
//! (the default backend of `[store]`, opened with `store::open` as the admin commands open it)
//! and Redis (a redis-server this benchmark starts on a free loopback port and stops by PID) —
//! then measures every row of the table through the public API:
//!
//! - one change (`user suspend`, `user update`) through `Admin`, median and p99;
//! - how long a running milter takes to see a suspension: its read path (`open_for_milter`:
//!   the file store, or Redis behind the invalidated cache), warmed with the address, asked
//!   again and again from the moment the write returns until it answers "suspended";
//! - a bulk load of 500 new rows (`Admin::user_import`), several times;
//! - a recipient lookup through the milter's read path, cold (each address asked once);
//! - a socketmap query (`routing::answer`) over organisations' domains, their servers, their
//!   users' addresses and domains that are no organisation's;
//! - `directory search` (a text nothing matches: the whole walk) and the CSV and LDIF exports,
//!   time and peak heap (this process's allocations, counted).
//!
//! Run: `cargo bench --bench directory_scale`. Smaller: `CJSM_SCALE_USERS=2000
//! CJSM_SCALE_ORGS=200` (the short form `scripts/test.sh` runs); one backend:
//! `CJSM_SCALE_BACKENDS=redis` (or `embedded`). A MISS is reported, not fatal: timings on a
//! shared machine vary; a wrong answer or an error fails the run.

use cjsm_milter::config::{Backend, RoutingConfig, SocketmapConfig, StoreConfig};
use cjsm_milter::directory::Admin;
use cjsm_milter::directory::model::{ConnectionType, OrgState, Organisation, User, UserState};
use cjsm_milter::directory::user::{UserDetails, search};
use cjsm_milter::store::{self, Access, Directory};
use futures_util::{StreamExt as _, TryStreamExt as _};
use std::alloc::{GlobalAlloc, Layout, System};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts the heap in use and its peak, so an operation's peak memory can be read.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let now = IN_USE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                IN_USE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `work` and gives its time and the heap it took at its peak above what was in use
/// when it began.
async fn with_peak<T>(work: impl Future<Output = T>) -> (T, Duration, usize) {
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let out = work.await;
    let took = started.elapsed();
    (out, took, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

const SECURE_SUFFIX: &str = "cjsm.net";

fn env_size(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?}: expected a number")),
        Err(_) => default,
    }
}

/// Organisation `i`: even ones connect their own server (half of those registered at an IP
/// next hop, half at a name; every tenth shares a provider's), odd ones are hosted mailboxes.
fn organisation(i: usize) -> Organisation {
    let id = format!("org{i:05}");
    let server = i.is_multiple_of(2);
    let domain = if server {
        format!("{id}.co.uk")
    } else {
        format!("{id}.{SECURE_SUFFIX}")
    };
    let mail_server = server.then(|| match i % 20 {
        0 => "[mx.provider.example]:25".to_string(),
        n if n.is_multiple_of(4) => format!("[192.0.{}.{}]:25", (i / 250) % 250, i % 250),
        _ => format!("mx.{domain}"),
    });
    Organisation {
        id: id.clone(),
        name: format!("Organisation {i} LLP"),
        domains: vec![domain],
        connection: if server {
            ConnectionType::Server
        } else {
            ConnectionType::Mailbox
        },
        state: OrgState::Active,
        terms_signed: Some(1),
        admins: vec![],
        client_certificate: None,
        mail_server,
        approved: Some(1),
        revision: 0,
        created: 1,
        updated: 1,
    }
}

/// The domain a user of organisation `i` has their secure address in.
fn secure_domain(i: usize) -> String {
    let org = organisation(i);
    match org.connection {
        ConnectionType::Server => format!("{}.{SECURE_SUFFIX}", org.domains[0]),
        ConnectionType::Mailbox => org.domains[0].clone(),
    }
}

fn address(j: usize, orgs: usize) -> String {
    format!("user{j:06}@{}", secure_domain(j % orgs))
}

fn user(j: usize, orgs: usize) -> User {
    User {
        address: address(j, orgs),
        org: format!("org{:05}", j % orgs),
        first_name: format!("First{j}"),
        last_name: format!("Last{j}"),
        town: ["Leeds", "York", "Hull", "Bradford"][j % 4].into(),
        business_type: "Solicitors".into(),
        state: UserState::Active,
        created: 1,
        updated: 1,
        smime_certificate: None,
        revision: 0,
    }
}

/// One row of the table.
struct Row {
    backend: &'static str,
    operation: String,
    shown: String,
    target: String,
    pass: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile(times: &mut [Duration], q: f64) -> Duration {
    times.sort();
    times[((times.len() as f64 * q) as usize).min(times.len() - 1)]
}

/// A redis-server on a free loopback port, without persistence; stopped by PID when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting redis-server (Debian package redis-server)");
        RedisServer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fills the store: every organisation, then the users in batches.
async fn build(store: &dyn Directory, users: usize, orgs: usize) {
    futures_util::stream::iter(0..orgs)
        .map(|i| store.put_org(organisation(i)))
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .expect("writing the organisations");
    for start in (0..users).step_by(5000) {
        let batch = (start..(start + 5000).min(users))
            .map(|j| user(j, orgs))
            .collect();
        store.put_users(batch).await.expect("writing the users");
    }
}

async fn run_backend(
    backend: &'static str,
    config: &StoreConfig,
    users: usize,
    orgs: usize,
    rows: &mut Vec<Row>,
) {
    let redis = backend == "redis";
    let target = |embedded_ms: f64, redis_ms: f64| if redis { redis_ms } else { embedded_ms };
    let store = store::open(config, Access::ReadWrite)
        .await
        .expect("opening the store");
    let started = Instant::now();
    build(store.as_ref(), users, orgs).await;
    println!(
        "{backend}: built {users} users and {orgs} organisations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let milter = store::open_for_milter(config, None)
        .await
        .expect("opening the store as the milter does")
        .read;
    let admin = Admin::new(store.as_ref(), SECURE_SUFFIX, Some("bench".into()));
    let mut push = |operation: &str, shown: String, target: String, pass: bool| {
        rows.push(Row {
            backend,
            operation: operation.into(),
            shown,
            target,
            pass,
        })
    };

    // One change: a suspension (and the reactivation after it), an update of the town.
    let rounds = 100.min(users / 4).max(1);
    let (mut suspends, mut updates) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let who = address(users - 1 - r, orgs);
        let t = Instant::now();
        admin
            .user_set_state(&who, UserState::Suspended)
            .await
            .expect("suspending");
        suspends.push(t.elapsed());
        admin
            .user_set_state(&who, UserState::Active)
            .await
            .expect("reactivating");
        let t = Instant::now();
        admin
            .user_update(
                &who,
                UserDetails {
                    town: Some(format!("Town {r}")),
                    ..UserDetails::default()
                },
            )
            .await
            .expect("updating");
        updates.push(t.elapsed());
    }
    let change_target = target(50.0, 5.0);
    for (name, times) in [
        ("one change: suspend", &mut suspends),
        ("one change: update", &mut updates),
    ] {
        let (median, p99) = (quantile(times, 0.5), quantile(times, 0.99));
        push(
            name,
            format!("median {:.2} ms, p99 {:.2} ms", ms(median), ms(p99)),
            format!("<= {change_target} ms"),
            ms(p99) <= change_target,
        );
    }

    // A running milter sees a suspension: warmed with the address, then asked from the
    // moment the write returns until it answers the new state.
    let mut seen = Vec::new();
    for r in 0..20.min(users) {
        let who = address(r * (users / 20).max(1) % users, orgs);
        let before = milter.lookup(&who).await.expect("milter lookup");
        assert_eq!(before.user.map(|u| u.state), Some(UserState::Active));
        admin
            .user_set_state(&who, UserState::Suspended)
            .await
            .expect("suspending");
        let written = Instant::now();
        loop {
            let lookup = milter.lookup(&who).await.expect("milter lookup");
            if lookup.user.map(|u| u.state) == Some(UserState::Suspended) {
                seen.push(written.elapsed());
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "{backend}: the milter never saw the suspension of {who}"
            );
            tokio::task::yield_now().await;
        }
        admin
            .user_set_state(&who, UserState::Active)
            .await
            .expect("reactivating");
    }
    let (median, max) = (quantile(&mut seen, 0.5), quantile(&mut seen, 1.0));
    push(
        "a running milter sees the change",
        format!("median {:.2} ms, max {:.2} ms", ms(median), ms(max)),
        "<= 1000 ms".into(),
        ms(max) <= 1000.0,
    );

    // A bulk load of 500 new rows, several times (each file adds 500 users).
    let mut imports = Vec::new();
    for run in 0..5 {
        let mut csv =
            String::from("secure_address,first_name,last_name,organisation,town,business_type\n");
        for k in 0..500 {
            let j = users + run * 500 + k;
            csv.push_str(&format!(
                "{},New{j},Row{j},org{:05},Leeds,Solicitors\n",
                address(j, orgs),
                j % orgs
            ));
        }
        let t = Instant::now();
        let summary = admin.user_import(csv.as_bytes()).await.expect("importing");
        imports.push(t.elapsed());
        assert_eq!(summary.added, 500);
    }
    let (median, max) = (quantile(&mut imports, 0.5), quantile(&mut imports, 1.0));
    push(
        "import of 500 rows",
        format!("median {:.0} ms, max {:.0} ms", ms(median), ms(max)),
        "<= 1000 ms".into(),
        ms(max) <= 1000.0,
    );

    // Recipient lookups through the milter's read path, cold: each address asked once.
    let asked = 5000.min(users);
    let mut lookups = Vec::with_capacity(asked);
    for k in 0..asked {
        let who = address((k * 7919) % users, orgs);
        let t = Instant::now();
        let lookup = milter.lookup(&who).await.expect("milter lookup");
        lookups.push(t.elapsed());
        assert!(lookup.user.is_some() && lookup.org.is_some(), "{who}");
    }
    let lookup_target = target(0.1, 1.0);
    let (median, p99) = (quantile(&mut lookups, 0.5), quantile(&mut lookups, 0.99));
    push(
        "recipient lookup (cold)",
        format!(
            "median {:.1} µs, p99 {:.1} µs",
            ms(median) * 1e3,
            ms(p99) * 1e3
        ),
        format!("p99 <= {} µs", lookup_target * 1e3),
        ms(p99) <= lookup_target,
    );

    // Socketmap queries, as the daemon answers them from the milter's read path.
    let routing = RoutingConfig::default();
    let socketmap = SocketmapConfig::default();
    let mut requests = Vec::new();
    for k in 0..2000 {
        let org = organisation((k * 31) % orgs);
        let domain = org.domains[0].clone();
        requests.push(match k % 8 {
            0 => format!("transport {domain}"),
            1 => format!("transport {}", address(k % users, orgs)),
            2 => format!("tlspolicy {domain}"),
            3 => format!(
                "tlspolicy {}",
                org.mail_server.unwrap_or_else(|| domain.clone())
            ),
            4 => format!("tlspolicy mx{k}.nowhere{k}.example"),
            5 => format!("mailertable {domain}"),
            6 => format!("access TLS_Rcpt:{domain}"),
            _ => format!("transport nobody{k}.example"),
        });
    }
    // The first question fills Redis's indexes of a directory written without them.
    let _ = cjsm_milter::routing::answer(
        b"tlspolicy x.example",
        milter.as_ref(),
        &routing,
        &socketmap,
    )
    .await;
    let mut queries = Vec::with_capacity(requests.len());
    let mut routed = 0;
    for request in &requests {
        let t = Instant::now();
        let reply =
            cjsm_milter::routing::answer(request.as_bytes(), milter.as_ref(), &routing, &socketmap)
                .await;
        queries.push(t.elapsed());
        assert!(
            !reply.starts_with("TEMP") && !reply.starts_with("PERM"),
            "{request}: {reply}"
        );
        routed += usize::from(reply.starts_with("OK "));
    }
    assert!(
        routed > requests.len() / 4,
        "{backend}: only {routed} routes found"
    );
    let (median, p99) = (quantile(&mut queries, 0.5), quantile(&mut queries, 0.99));
    push(
        "socketmap query",
        format!(
            "median {:.1} µs, p99 {:.1} µs",
            ms(median) * 1e3,
            ms(p99) * 1e3
        ),
        "p99 <= 1000 µs".into(),
        ms(p99) <= 1.0,
    );

    // `directory search` (nothing matches: the whole walk), then the exports.
    let memory_target = 16 << 20;
    let (found, took, peak) = with_peak(search(store.as_ref(), "no-such-text-anywhere", 100)).await;
    assert!(found.expect("searching").users.is_empty());
    push(
        "directory search (whole walk)",
        format!(
            "{:.0} ms, peak heap {:.1} MB",
            ms(took),
            peak as f64 / 1048576.0
        ),
        "<= 1000 ms, <= 16 MB".into(),
        ms(took) <= 1000.0 && peak <= memory_target,
    );
    for format in ["csv", "ldif"] {
        let mut out = Counted::default();
        let (result, took, peak) = with_peak(async {
            if format == "csv" {
                cjsm_milter::directory::export::write_csv(store.as_ref(), &mut out).await
            } else {
                cjsm_milter::directory::export::write_ldif(store.as_ref(), "dc=hub", &mut out).await
            }
        })
        .await;
        result.expect("exporting");
        assert!(out.lines > users / 2, "{format}: {} lines", out.lines);
        push(
            &format!("export ({format})"),
            format!(
                "{:.0} ms, peak heap {:.1} MB ({:.1} MB out)",
                ms(took),
                peak as f64 / 1048576.0,
                out.bytes as f64 / 1048576.0
            ),
            "<= 1000 ms, <= 16 MB".into(),
            ms(took) <= 1000.0 && peak <= memory_target,
        );
    }
}

/// An export's output, counted and dropped.
#[derive(Default)]
struct Counted {
    bytes: usize,
    lines: usize,
}

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        self.lines += buf.iter().filter(|&&b| b == b'\n').count();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let users = env_size("CJSM_SCALE_USERS", 100_000).max(100);
    let orgs = env_size("CJSM_SCALE_ORGS", 10_000).clamp(2, users);
    let backends = std::env::var("CJSM_SCALE_BACKENDS").unwrap_or_else(|_| "embedded,redis".into());
    let mut rows = Vec::new();
    for backend in backends.split(',').map(str::trim) {
        match backend {
            "embedded" => {
                let dir = tempfile::tempdir().unwrap();
                let config = StoreConfig {
                    path: dir.path().to_path_buf(),
                    ..StoreConfig::default()
                };
                run_backend("embedded", &config, users, orgs, &mut rows).await;
            }
            "redis" => {
                let server = RedisServer::start();
                let config = StoreConfig {
                    backend: Backend::Redis,
                    url: Some(format!("redis://127.0.0.1:{}/", server.port)),
                    key_prefix: "scale".into(),
                    ..StoreConfig::default()
                };
                // Up to 2 s for the server to listen.
                for _ in 0..100 {
                    if store::open(&config, Access::ReadWrite).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                run_backend("redis", &config, users, orgs, &mut rows).await;
                drop(server);
            }
            other => panic!("CJSM_SCALE_BACKENDS: unknown backend {other:?} (embedded, redis)"),
        }
    }
    println!();
    println!("Directory at hub scale: {users} users, {orgs} organisations");
    println!(
        "{:<9} {:<34} {:<52} {:<22} result",
        "backend", "operation", "measured", "target"
    );
    for row in &rows {
        println!(
            "{:<9} {:<34} {:<52} {:<22} {}",
            row.backend,
            row.operation,
            row.shown,
            row.target,
            if row.pass { "PASS" } else { "MISS" }
        );
    }
}
