//! The fault matrix under load (issue 13 §1): a private Postfix with the milter in front of a
//! real redis-server (or the embedded store), a stream of distinct messages from parallel SMTP
//! clients that retry on 4xx as an MTA does, and one fault per row while the stream runs.
//! For each row, from the sink and Postfix's queue: messages lost (answered 250, never
//! delivered after recovery and a queue flush), unchecked (delivered without the milter's
//! marking header, or delivered though they must be refused), duplicated, wrongly refused
//! (a 5xx for a message that must pass: a fault gives 4xx, never 5xx), and the recovery time
//! (fault cleared → the first message accepted after it). During each Redis fault the
//! socketmap is asked with `postmap -q`: a right answer or a temporary failure, never a wrong
//! answer (not found would send queued mail out without its route).
//!
//! Short by default (every row, a few seconds of mail each); the long form is
//! `CJSM_FAULT_MESSAGES=2000 scripts/faults.sh` (see RELIABILITY.md), and
//! `CJSM_FAULT_ROWS=redis-kill,sentinel` runs only the rows named.

#[path = "faults/backends.rs"]
mod backends;
mod common;
#[path = "faults/smtp.rs"]
mod smtp;

use backends::{Probe, Prober, Redis, SlowProxy, Tmpfs, postmap};
use common::daemon::Daemon;
use common::pki::Pki;
use common::postfix::{Postfix, Sink, start_hub};
use smtp::{Kind, Record, Stream};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The milter's stage deadline in the matrix: short, so that a paused Redis is noticed.
const DEADLINE_MS: u64 = 1000;
/// The longest a socketmap query may take during a fault: the deadline, and a margin for
/// starting postmap on a busy machine.
const SOCKETMAP_LIMIT: Duration = Duration::from_millis(DEADLINE_MS + 700);
/// The most a row may take from the fault cleared to the first accepted message.
const RECOVERY_LIMIT: Duration = Duration::from_secs(2);

/// How much mail each row sends.
struct Load {
    /// At least this many messages per row (0: only as many as the fault's span takes).
    messages: usize,
    clients: usize,
    /// Each client's wait between two messages.
    pace: Duration,
}

impl Load {
    fn from_env() -> Load {
        let messages = std::env::var("CJSM_FAULT_MESSAGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if messages > 0 {
            Load {
                messages,
                clients: 4,
                pace: Duration::ZERO,
            }
        } else {
            // Light enough for `cargo test` on two shared cores.
            Load {
                messages: 0,
                clients: 3,
                pace: Duration::from_millis(150),
            }
        }
    }
}

/// One row of the matrix as measured.
#[derive(Default)]
struct Row {
    key: &'static str,
    fault: &'static str,
    how: String,
    messages: usize,
    accepted: usize,
    refused_rightly: usize,
    tempfails: usize,
    lost: usize,
    unchecked: usize,
    duplicated: usize,
    wrongly_refused: usize,
    gave_up: usize,
    recovery: Option<Duration>,
    /// The longest single SMTP transaction of the row.
    longest: Duration,
    probe: Option<Probe>,
    /// Whether the fault must hold mail back (a 4xx while it lasts).
    blocks: bool,
    /// Whether the directory is out of reach while the fault lasts (the socketmap must say
    /// TEMP at least once).
    outage: bool,
    notes: Vec<String>,
}

/// What a fault did: when it was cleared, what the socketmap answered meanwhile.
struct Fault {
    cleared: Instant,
    probe: Option<Probe>,
    notes: Vec<String>,
}

impl Fault {
    /// A fault cleared now, not watched through the socketmap.
    fn cleared_now(notes: Vec<String>) -> Fault {
        Fault {
            cleared: Instant::now(),
            probe: None,
            notes,
        }
    }

    /// A fault cleared now and watched through the socketmap: the prober goes on for `settle`
    /// to see the recovery, then stops.
    fn probed_until_settled(prober: Prober, settle: Duration) -> Fault {
        let cleared = Instant::now();
        std::thread::sleep(settle);
        Fault {
            cleared,
            probe: Some(prober.stop()),
            notes: vec![],
        }
    }
}

struct Lab {
    root: PathBuf,
    sink: Sink,
    hub: Postfix,
    socketmap_port: u16,
    load: Load,
    only: Option<Vec<String>>,
    rows: Vec<Row>,
    /// The sink's files read so far.
    seen: std::cell::RefCell<std::collections::HashMap<PathBuf, smtp::Delivered>>,
}

impl Lab {
    fn wanted(&self, key: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == key))
    }

    fn config(&self, store: &str) -> String {
        format!(
            "[milter]\nlisten = \"unix:{spool}/cjsm-milter/milter.sock\"\nsocket_mode = \"0660\"\n\
             socket_group = \"postfix\"\ndeadline_ms = {DEADLINE_MS}\n\n{store}\n\
             [metrics]\nlisten = \"\"\n\n[socketmap]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [routing]\nsecure_networks = [\"127.0.0.2/32\"]\n",
            spool = self.hub.spool().display(),
            port = self.socketmap_port,
        )
    }

    /// Writes `text` for the admin CLI, and fills the directory: Smith Chambers with alice,
    /// and a server-connected firm whose route the socketmap gives (no mail goes there).
    fn provision(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        common::cli::smith_chambers(&path, &["alice"]);
        common::cli::onboard_with(
            &path,
            "firm",
            "Firm LLP",
            "firm.co.uk",
            "server",
            &["--mail-server", "[192.0.2.25]:25"],
        );
        path
    }

    fn socketmap(&self) -> String {
        format!("socketmap:inet:127.0.0.1:{}:transport", self.socketmap_port)
    }

    /// Starts asking the socketmap for the firm's transport, which needs the directory; the
    /// answer must be the one given before the fault.
    fn prober(&self) -> Prober {
        let (ok, expected, stderr) = postmap(&self.hub.etc, "firm.co.uk", &self.socketmap());
        assert!(
            ok && !expected.is_empty(),
            "socketmap before the fault: {stderr}"
        );
        Prober::start(&self.hub.etc, "firm.co.uk", &self.socketmap(), &expected)
    }

    /// Runs one row: the stream, the fault (`inject` returns once it is cleared), the stream
    /// on until mail flows again, then the queue flushed and the sink counted.
    fn row(
        &mut self,
        key: &'static str,
        fault: &'static str,
        how: &str,
        blocks: bool,
        inject: impl FnOnce(&Stream) -> Fault,
    ) {
        eprintln!("faults: {key}: {how}");
        let stream = Stream::start(self.hub.port, key, self.load.clients, self.load.pace);
        // Warm up: mail flows before the fault.
        let warm = (self.load.messages / 3).max(self.load.clients * 2);
        let started = Instant::now();
        while stream.finished() < warm && started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let Fault {
            cleared,
            probe,
            notes,
        } = inject(&stream);
        // Mail flows again: a few accepted after the fault is cleared, and every message.
        let after = Instant::now();
        while (stream.accepted_since(cleared) < self.load.clients * 2
            || stream.started.load(std::sync::atomic::Ordering::SeqCst) < self.load.messages)
            && after.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let records = stream.stop();
        let mut row = self.count(key, &records, cleared);
        row.fault = fault;
        row.how = how.to_string();
        row.probe = probe;
        row.blocks = blocks;
        row.outage = probe.is_some() && (blocks || key == "redis-stop");
        row.notes = notes;
        eprintln!("faults: {}", line(&row));
        self.rows.push(row);
    }

    /// Flushes the queue until every accepted message is at the sink (or 60 s pass), then
    /// counts.
    fn count(&self, key: &'static str, records: &[Record], cleared: Instant) -> Row {
        let expected: HashSet<(String, String)> = records
            .iter()
            .filter(|r| r.kind == Kind::Pass && r.accepted_at.is_some())
            .flat_map(|r| {
                smtp::PASS_TO
                    .iter()
                    .map(|to| (r.id.clone(), to.to_string()))
            })
            .collect();
        let started = Instant::now();
        let mut flushed = Instant::now() - Duration::from_secs(10);
        loop {
            let copies = smtp::copies(
                &smtp::read_sink(&self.sink.dir, &mut self.seen.borrow_mut()),
                key,
            );
            let missing = expected.iter().filter(|k| !copies.contains_key(*k)).count();
            if missing == 0 || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            if flushed.elapsed() > Duration::from_secs(2) {
                self.hub.flush();
                flushed = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Late copies (a duplicate delivered after the last expected one) have a moment.
        std::thread::sleep(Duration::from_millis(500));
        let delivered = smtp::read_sink(&self.sink.dir, &mut self.seen.borrow_mut());
        let copies = smtp::copies(&delivered, key);
        let kinds: std::collections::HashMap<&str, Kind> =
            records.iter().map(|r| (r.id.as_str(), r.kind)).collect();
        let prefix = format!("{key}-");
        let lost_ids: HashSet<&str> = expected
            .iter()
            .filter(|k| !copies.contains_key(*k))
            .map(|(id, _)| id.as_str())
            .collect();
        let unmarked = delivered
            .iter()
            .filter(|d| d.id.starts_with(&prefix) && !d.marked)
            .count();
        let delivered_refusable = delivered
            .iter()
            .filter(|d| d.id.starts_with(&prefix))
            .filter(|d| kinds.get(d.id.as_str()).is_none_or(|k| *k != Kind::Pass))
            .count();
        let accepted_refusable = records
            .iter()
            .filter(|r| r.kind != Kind::Pass && r.accepted_at.is_some())
            .count();
        let recovery = records
            .iter()
            .filter_map(|r| r.accepted_at)
            .filter(|t| *t >= cleared)
            .min()
            .map(|t| t - cleared);
        Row {
            key,
            messages: records.len(),
            accepted: records.iter().filter(|r| r.accepted_at.is_some()).count(),
            refused_rightly: records
                .iter()
                .filter(|r| r.kind != Kind::Pass && r.refused.is_some())
                .count(),
            tempfails: records.iter().map(|r| r.attempts as usize - 1).sum(),
            lost: lost_ids.len(),
            unchecked: unmarked + delivered_refusable.max(accepted_refusable),
            duplicated: copies.values().map(|n| n - 1).sum(),
            wrongly_refused: records
                .iter()
                .filter(|r| r.kind == Kind::Pass && r.refused.is_some())
                .inspect(|r| eprintln!("faults: {key}: wrongly refused {}: {:?}", r.id, r.refused))
                .count(),
            gave_up: records
                .iter()
                .filter(|r| r.gave_up.is_some())
                .inspect(|r| eprintln!("faults: {key}: gave up on {}: {:?}", r.id, r.gave_up))
                .count(),
            recovery,
            longest: records.iter().map(|r| r.longest).max().unwrap_or_default(),
            ..Row::default()
        }
    }
}

fn line(row: &Row) -> String {
    let probe = row.probe.map_or("–".to_string(), |p| {
        format!(
            "{} right, {} temp, {} wrong; slowest {:.1} s",
            p.right,
            p.temp,
            p.wrong,
            p.slowest.as_secs_f64()
        )
    });
    let recovery = row
        .recovery
        .map_or("none".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} |",
        row.fault,
        row.how,
        row.messages,
        row.accepted,
        row.tempfails,
        row.lost,
        row.unchecked,
        row.duplicated,
        row.wrongly_refused,
        row.gave_up,
        recovery,
        row.longest.as_secs_f64(),
        probe
    )
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| fault | how | messages | accepted | 4xx answers | lost | unchecked | duplicated | wrongly refused | gave up | recovery | longest transaction | socketmap during the fault |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// Waits until `what` holds (at most `limit`).
fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn restart_milter(milter: &mut Option<Daemon>, config: &str) {
    if let Some(mut old) = milter.take() {
        old.signal(libc::SIGTERM);
        old.wait_exit();
    }
    *milter = Some(Daemon::start(config));
}

/// Sends the running milter `signal` by PID, waits for it to exit, leaves it down for `down`,
/// then starts it again on `config`: how the old one exited.
fn signal_and_restart(
    milter: &mut Option<Daemon>,
    signal: libc::c_int,
    down: Duration,
    config: &str,
) -> std::process::ExitStatus {
    let mut old = milter.take().unwrap();
    old.signal(signal);
    let status = old.wait_exit();
    std::thread::sleep(down);
    *milter = Some(Daemon::start(config));
    status
}

fn milter_rows(lab: &mut Lab) {
    let config = lab.config(&format!(
        "[store]\nbackend = \"sqlite\"\npath = \"{}\"\n",
        lab.root.join("store").display()
    ));
    lab.provision("file", &config);
    let mut milter = Some(Daemon::start(&config));

    if lab.wanted("milter-kill") {
        lab.row(
            "milter-kill",
            "milter killed and restarted",
            "SIGKILL by PID, down 1 s, started again",
            true,
            |_| {
                signal_and_restart(&mut milter, libc::SIGKILL, Duration::from_secs(1), &config);
                Fault::cleared_now(vec![])
            },
        );
    }

    if lab.wanted("milter-drain") {
        lab.row(
            "milter-drain",
            "milter drained mid-stream and restarted",
            "SIGTERM by PID (drain), down 1 s, started again",
            true,
            |_| {
                let status =
                    signal_and_restart(&mut milter, libc::SIGTERM, Duration::from_secs(1), &config);
                let notes = if status.success() {
                    vec![]
                } else {
                    vec![format!("the drained milter exited {status}")]
                };
                Fault::cleared_now(notes)
            },
        );
    }

    if lab.wanted("sighup") {
        lab.row(
            "sighup",
            "SIGHUP every 100 ms, good and bad config in turn",
            "config rewritten and SIGHUP by PID every 100 ms for 3 s",
            false,
            |_| {
                let daemon = milter.as_ref().unwrap();
                // Not a level of the vocabulary: the reload must refuse it and keep running.
                let bad = config.replace(
                    "[routing]",
                    "[marking]\nceiling = \"NO-SUCH-LEVEL\"\n\n[routing]",
                );
                let started = Instant::now();
                let mut hups = 0;
                while started.elapsed() < Duration::from_secs(3) {
                    let text = if hups % 2 == 0 { &config } else { &bad };
                    std::fs::write(&daemon.config, text).unwrap();
                    daemon.signal(libc::SIGHUP);
                    hups += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::fs::write(&daemon.config, &config).unwrap();
                daemon.signal(libc::SIGHUP);
                let cleared = Instant::now();
                let log = daemon.log();
                let mut notes = vec![];
                for needle in ["config reload failed", "config reloaded"] {
                    if !log.contains(needle) {
                        notes.push(format!("the milter never logged {needle:?}"));
                    }
                }
                Fault {
                    cleared,
                    probe: None,
                    notes,
                }
            },
        );
    }

    if lab.wanted("file-corrupt") {
        // Written in place under the running milter, which holds it open (and the later
        // changes in its WAL): what it reads must fail, not come from memory.
        let file = lab.root.join("store/directory.sqlite3");
        lab.row(
            "file-corrupt",
            "embedded store: directory.sqlite3 truncated, emptied, garbage",
            "half the file, then 0 bytes, then 4 KiB of garbage, 1 s each; the file put back",
            true,
            |_| {
                let good = std::fs::read(&file).unwrap();
                std::fs::write(&file, &good[..good.len() / 2]).unwrap();
                std::thread::sleep(Duration::from_secs(1));
                std::fs::write(&file, b"").unwrap();
                std::thread::sleep(Duration::from_secs(1));
                let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
                std::fs::write(&file, garbage).unwrap();
                std::thread::sleep(Duration::from_secs(1));
                std::fs::write(&file, &good).unwrap();
                Fault::cleared_now(vec![])
            },
        );
    }
    drop(milter);

    if lab.wanted("disk-full") {
        disk_full_row(lab);
    }
}

fn disk_full_row(lab: &mut Lab) {
    let tmpfs = match Tmpfs::mount(&lab.root.join("full"), "4m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            // Without CAP_SYS_ADMIN (an unprivileged container) there is no small file system
            // to fill; the row says so rather than pass silently.
            lab.rows.push(Row {
                key: "disk-full",
                fault: "embedded store: disk full when a change is written",
                how: format!("not run: cannot mount a tmpfs ({why})"),
                ..Row::default()
            });
            return;
        }
    };
    let store = tmpfs.dir.join("store");
    let config = lab.config(&format!(
        "[store]\nbackend = \"sqlite\"\npath = \"{}\"\n",
        store.display()
    ));
    let cli_config = lab.provision("full", &config);
    let mut milter = Some(Daemon::start(&config));
    let add_bob = [
        "directory",
        "user",
        "add",
        "bob@smithchambers.cjsm.net",
        "--org",
        "smith",
        "--first-name",
        "Bob",
        "--last-name",
        "Smith",
    ];
    lab.row(
        "disk-full",
        "embedded store: disk full when a change is written",
        "a 4 MiB tmpfs filled; `directory user add` while full; space freed, the change again",
        false,
        |_| {
            tmpfs.fill();
            let refused = common::cli::cli(&cli_config, &add_bob);
            let mut notes = vec![];
            if refused.status.success() {
                notes.push("a change on a full disk said it succeeded".to_string());
            }
            // The transaction is all or nothing: nothing of the refused change was kept.
            let shown = common::cli::cli(
                &cli_config,
                &["directory", "user", "show", "bob@smithchambers.cjsm.net"],
            );
            if shown.status.success() {
                notes.push("the refused change was kept on a full disk".to_string());
            }
            std::thread::sleep(Duration::from_secs(1));
            tmpfs.free();
            let cleared = Instant::now();
            let added = common::cli::cli(&cli_config, &add_bob);
            if !added.status.success() {
                notes.push(format!("the change failed with space: {}", added.stderr));
            }
            Fault {
                cleared,
                probe: None,
                notes,
            }
        },
    );
    if let Some(mut daemon) = milter.take() {
        daemon.signal(libc::SIGTERM);
        daemon.wait_exit();
    }
    drop(tmpfs);
}

fn redis_rows(lab: &mut Lab) {
    let data = lab.root.join("redis-data");
    let mut redis = Redis::start(&data, &[]);
    let store = format!(
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"faults\"\ncache_ttl_ms = 1000\n",
        redis.url()
    );
    let config = lab.config(&store);
    lab.provision("redis", &config);
    let mut milter = Some(Daemon::start(&config));

    if lab.wanted("redis-kill") {
        let prober = lab.prober();
        lab.row(
            "redis-kill",
            "Redis killed, restarted from its AOF",
            "SIGKILL by PID, down 2 s, started again on its data directory",
            true,
            |_| {
                redis.kill();
                std::thread::sleep(Duration::from_secs(2));
                redis.restart_in(&data);
                Fault::probed_until_settled(prober, Duration::from_secs(1))
            },
        );
    }

    if lab.wanted("redis-empty") {
        let prober = lab.prober();
        let empty = lab.root.join("redis-empty");
        lab.row(
            "redis-empty",
            "Redis restarted without its data",
            "SIGKILL by PID, started on a new empty directory for 2 s, then on its data again",
            true,
            |_| {
                redis.kill();
                redis.restart_in(&empty);
                std::thread::sleep(Duration::from_secs(2));
                // The operator restores the data (here: the server on its old directory).
                redis.kill();
                redis.restart_in(&data);
                Fault::probed_until_settled(prober, Duration::from_secs(1))
            },
        );
    }

    if lab.wanted("redis-stop") {
        let prober = lab.prober();
        lab.row(
            "redis-stop",
            "Redis paused longer than deadline_ms",
            "SIGSTOP by PID for 3 s (deadline_ms = 1000), then SIGCONT",
            // Mail may only be slowed: a client held in DATA behind Postfix's resolver (which
            // waits for the socketmap's TEMP) meets no 4xx. The socketmap's TEMP, within the
            // deadline, is the evidence the fault took effect.
            false,
            |_| {
                redis.signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_secs(3));
                redis.signal(libc::SIGCONT);
                Fault::probed_until_settled(prober, Duration::from_secs(1))
            },
        );
    }

    if lab.wanted("redis-slow") {
        let proxy = SlowProxy::start(redis.port, Duration::from_millis(50));
        let slow_config =
            config.replace(&redis.url(), &format!("redis://127.0.0.1:{}/", proxy.port));
        restart_milter(&mut milter, &slow_config);
        let prober = lab.prober();
        lab.row(
            "redis-slow",
            "Redis slow: every reply delayed 50 ms",
            "a proxy on loopback holding each reply 50 ms, for 3 s",
            false,
            |_| {
                proxy.slow.store(true, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(3));
                proxy.slow.store(false, std::sync::atomic::Ordering::SeqCst);
                Fault::probed_until_settled(prober, Duration::ZERO)
            },
        );
        restart_milter(&mut milter, &config);
    }
    drop(milter);
}

fn sentinel_row(lab: &mut Lab) {
    let mut master = Redis::start(&lab.root.join("s-master"), &[]);
    let master_port = master.port.to_string();
    let replica = Redis::start(
        &lab.root.join("s-replica"),
        &["--replicaof", "127.0.0.1", &master_port],
    );
    until("the replica in sync", Duration::from_secs(15), || {
        backends::redis_query(replica.port, &["INFO", "replication"])
            .is_some_and(|info| info.contains("master_link_status:up"))
    });
    let sentinel = common::redis::RedisProcess::start(
        Some(&format!(
            "port {{port}}\nbind 127.0.0.1\ndir {{dir}}\n\
             sentinel monitor faults 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds faults 1000\n\
             sentinel failover-timeout faults 10000\n"
        )),
        &["--sentinel"],
    );
    until(
        "the Sentinel knows the replica",
        Duration::from_secs(30),
        || {
            backends::redis_query(sentinel.port, &["SENTINEL", "REPLICAS", "faults"])
                .is_some_and(|r| r.contains(&replica.port.to_string()))
        },
    );
    let store = format!(
        "[store]\nbackend = \"redis\"\nurl = \"redis+sentinel://127.0.0.1:{}/faults\"\n\
         key_prefix = \"faults\"\ncache_ttl_ms = 1000\n",
        sentinel.port
    );
    let config = lab.config(&store);
    lab.provision("sentinel", &config);
    until(
        "the directory on the replica",
        Duration::from_secs(15),
        || {
            backends::redis_query(
                replica.port,
                &["EXISTS", "{faults}:user:alice@smithchambers.cjsm.net"],
            )
            .is_some_and(|r| r == "1")
        },
    );
    let milter = Daemon::start(&config);
    let prober = lab.prober();
    let replica_port = replica.port.to_string();
    lab.row(
        "sentinel",
        "Sentinel failover: master killed, replica promoted",
        "master SIGKILL by PID; one redis-server --sentinel (quorum 1, down after 1 s) promotes the replica",
        true,
        |_| {
            master.kill();
            until("the Sentinel promotes the replica", Duration::from_secs(30), || {
                backends::redis_query(
                    sentinel.port,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "faults"],
                )
                .is_some_and(|r| r.ends_with(&replica_port))
                    && backends::redis_query(replica.port, &["ROLE"])
                        .is_some_and(|r| r.starts_with("master"))
            });
            Fault::probed_until_settled(prober, Duration::from_secs(1))
        },
    );
    drop(milter);
}

#[test]
fn fault_matrix_under_load() {
    let lab_dir = tempfile::tempdir().unwrap();
    let root = lab_dir.path().to_path_buf();
    let pki = Pki::create(&root.join("pki"));
    let sink = Sink::start(&root);
    let socketmap_port = common::free_port();
    let hub = start_hub(&root, &pki, &sink, socketmap_port, false);
    let only = std::env::var("CJSM_FAULT_ROWS")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let mut lab = Lab {
        root,
        sink,
        hub,
        socketmap_port,
        load: Load::from_env(),
        only,
        rows: Vec::new(),
        seen: Default::default(),
    };
    let started = Instant::now();
    milter_rows(&mut lab);
    if ["redis-kill", "redis-empty", "redis-stop", "redis-slow"]
        .iter()
        .any(|k| lab.wanted(k))
    {
        redis_rows(&mut lab);
    }
    if lab.wanted("sentinel") {
        sentinel_row(&mut lab);
    }
    let table = table(&lab.rows);
    eprintln!(
        "\nThe fault matrix ({} clients, {:.0} s):\n{table}",
        lab.load.clients,
        started.elapsed().as_secs_f64()
    );
    if let Ok(path) = std::env::var("CJSM_FAULT_TABLE") {
        std::fs::write(path, &table).unwrap();
    }
    assert!(!lab.rows.is_empty(), "CJSM_FAULT_ROWS named no row");
    let mut failures = Vec::new();
    // Every accepted message was delivered: nothing is left waiting in Postfix's queue.
    if !lab.hub.queue_is_empty() {
        failures.push(format!("left in Postfix's queue:\n{}", lab.hub.queue()));
    }
    for row in &lab.rows {
        let mut fail = |what: String| failures.push(format!("{}: {what}", row.key));
        for note in &row.notes {
            fail(note.clone());
        }
        if row.messages == 0 {
            continue;
        }
        for (what, n) in [
            ("lost", row.lost),
            ("unchecked", row.unchecked),
            ("wrongly refused", row.wrongly_refused),
            ("gave up", row.gave_up),
        ] {
            if n > 0 {
                fail(format!("{n} {what}"));
            }
        }
        match row.recovery {
            Some(d) if d <= RECOVERY_LIMIT => {}
            other => fail(format!("recovery {other:?}, over {RECOVERY_LIMIT:?}")),
        }
        if row.refused_rightly == 0 {
            fail("no message that must be refused was refused".into());
        }
        if row.blocks && row.tempfails == 0 {
            fail("the fault never showed as a 4xx: it did not take effect".into());
        }
        if let Some(probe) = row.probe {
            if probe.wrong > 0 {
                fail(format!("{} wrong socketmap answers", probe.wrong));
            }
            if row.outage && probe.temp == 0 {
                fail("the socketmap never answered TEMP during the outage".into());
            }
            // Postfix waits for the socketmap in its shared address resolver: an answer
            // (TEMP at worst) must come within the milter's deadline, not when Redis returns.
            if probe.slowest > SOCKETMAP_LIMIT {
                fail(format!(
                    "a socketmap answer took {:?}, over {SOCKETMAP_LIMIT:?}",
                    probe.slowest
                ));
            }
        }
        // A duplicate is a copy delivered twice: an MTA retrying after a lost 250. None of
        // these faults cuts a connection between the 250 and the client reading it, so
        // none may happen.
        if row.duplicated > 0 {
            fail(format!("{} duplicated", row.duplicated));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{table}");
}
