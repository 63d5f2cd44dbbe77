//! Milter-protocol load generator: N concurrent MTA-like connections (indymilter-test's
//! `TestConnection`, not a hand-written protocol) against cjsm-milter (the release binary) and,
//! in the same run, against the no-op indymilter in examples/noop_milter.rs, negotiated the
//! usual way (the ratio column's baseline) and with `--noreply` (not waited on where it has
//! nothing to say, as cjsm-milter negotiates with an MTA that offers it). Each milter runs
//! as a separate process started and stopped by PID, fresh for every measurement, so its peak
//! RSS (VmHWM in /proc/PID/status) belongs to that measurement alone.
//!
//! ```sh
//! cargo build --release --example noop_milter
//! cargo bench --bench milter_load                      # every scenario, 3 runs each
//! cargo bench --bench milter_load -- --only 10k --repeat 5
//! ```
//! Options: `--only WORD` (scenarios whose name contains WORD; repeatable), `--repeat N` (runs
//! per row; the median is reported), `--scale F` (multiply message counts), `--cjsm-only` (no
//! no-op runs). Scenarios that need redis-server (Debian package) skip themselves when it is
//! missing. To profile the milters under this load, set `CJSM_BENCH_WRAP` (a command prefix
//! for both), e.g. `CJSM_BENCH_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p"`
//! or `CJSM_BENCH_WRAP="perf record -e cpu-clock -o /tmp/perf.data --"` (add `--cjsm-only` for
//! cjsm-milter alone). The wrapper gets the SIGTERM: valgrind and `perf record` pass it on, but
//! `strace -c` and `perf trace` do not and leave the milter running (stop it by its PID).
//!
//! Each message is sent as Postfix sends it: macros, MAIL, RCPT per recipient, every header,
//! end of headers, the body in 64 KB chunks, end of message; one message per milter
//! connection (smtp-source's default, one message per SMTP session). The verdict latency is
//! the end-of-message round trip (with the no-reply stages it also holds the work on the
//! headers and body the client sent without waiting, and the wait for a CPU while the other
//! sessions' messages are decided); "own verdict" is cjsm-milter's own time to classify and
//! decide, from the `verdict_us` of its log line per message. cjsm-milter's answers are checked against the expected
//! verdict (accepted unless unmarked mail goes to an insecure recipient), so a broken set-up
//! cannot pass as a fast one.

use cjsm_milter::directory::model::{ConnectionType, OrgState, Organisation, User, UserState};
use cjsm_milter::store::{DirectoryWrite, RedisStore, SqliteStore};
use indymilter_test::{MacroStage, Status, TestConnection};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Messages

const SENDER: &str = "dc.jones@met.pnn.police.uk";
/// Secure recipients: one on the secure network, one directory user under the secure suffix
/// (a store lookup per message).
const SECURE: &[&str] = &["clerk@cps.gsi.gov.uk", "user0@hartleylaw.co.uk.cjsm.net"];
const INSECURE: &[&str] = &["someone@gmail.com"];
const DIRECTORY_USERS: usize = 1000;

#[derive(Clone)]
struct Message {
    label: String,
    headers: Vec<(String, String)>,
    body: bytes::Bytes,
    recipients: Vec<String>,
    /// cjsm-milter should refuse it (unmarked, so OFFICIAL-SENSITIVE, to an insecure address).
    refused: bool,
}

fn message(size: usize, marked: bool, secure: bool) -> Message {
    let subject = if marked {
        "OFFICIAL: case 4711 papers"
    } else {
        "case 4711 papers"
    };
    let recipients: Vec<String> = if secure { SECURE } else { INSECURE }
        .iter()
        .map(|s| s.to_string())
        .collect();
    let headers = vec![
        ("From".into(), format!("DC Jones <{SENDER}>")),
        ("To".into(), recipients.join(", ")),
        ("Subject".into(), subject.into()),
        ("Date".into(), "Fri, 27 Nov 2026 09:00:00 +0000".into()),
        ("Message-ID".into(), "<a1@met.pnn.police.uk>".into()),
        ("MIME-Version".into(), "1.0".into()),
        (
            "Content-Type".into(),
            "multipart/alternative; boundary=\"alt\"".into(),
        ),
    ];
    let mut body = String::from(
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    let line =
        "The witness statement was taken on Tuesday and is attached for review by counsel.\r\n";
    let text_size = size.saturating_sub(600) / 2;
    while body.len() < text_size {
        body.push_str(line);
    }
    body.push_str("--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>");
    while body.len() < size.saturating_sub(340) {
        body.push_str("<p>The witness statement was taken on Tuesday.</p>\r\n");
    }
    body.push_str("</body></html>\r\n--alt--\r\n");
    Message {
        label: format!(
            "{}{} {} {}",
            if size >= 1 << 20 {
                size >> 20
            } else {
                size >> 10
            },
            if size >= 1 << 20 { "MB" } else { "KB" },
            if marked { "marked" } else { "unmarked" },
            if secure { "secure" } else { "insecure" }
        ),
        headers,
        body: body.into_bytes().into(),
        recipients,
        refused: !marked && !secure,
    }
}

/// The fixed mix: per 20 messages, 8 of 2 KB, 8 of 10 KB, 3 of 100 KB, 1 of 1 MB; marked and
/// unmarked, secure and insecure recipients alternating.
fn mix() -> Vec<Message> {
    let mut out = Vec::new();
    for (size, count) in [(2_048, 8), (10_240, 8), (102_400, 3), (1_048_576, 1)] {
        for i in 0..count {
            out.push(message(size, i % 2 == 0, (i / 2) % 2 == 0 || count == 1));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The milters, as child processes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Cjsm,
    Noop,
    /// The no-op milter asking, as cjsm-milter does, not to be waited on where it has nothing
    /// to say (`--noreply`): the like-for-like baseline for the protocol's round trips.
    NoopNoreply,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cjsm => "cjsm-milter",
            Kind::Noop => "no-op milter",
            Kind::NoopNoreply => "no-op milter, no-reply",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Socket {
    Inet,
    Unix,
}

#[derive(Clone, Debug)]
enum Target {
    Inet(std::net::SocketAddr),
    Unix(PathBuf),
}

impl Target {
    fn spec(&self) -> String {
        match self {
            Target::Inet(a) => format!("inet:{a}"),
            Target::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    async fn open(&self) -> TestConnection {
        let builder = TestConnection::configure()
            .read_timeout(Duration::from_secs(60))
            .write_timeout(Duration::from_secs(60));
        match self {
            Target::Inet(a) => builder.open_tcp(a).await,
            Target::Unix(p) => builder.open_unix(p).await,
        }
        .expect("milter connection")
    }
}

struct Milter {
    child: Child,
    target: Target,
    _dir: tempfile::TempDir,
}

enum StoreSetup {
    File,
    Redis(String),
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn noop_binary() -> PathBuf {
    // target/release/deps/milter_load-HASH -> target/release/examples/noop_milter
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap();
    let path = release.join("examples/noop_milter");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --example noop_milter` first",
        path.display()
    );
    path
}

/// The milter's command, under `CJSM_BENCH_WRAP` when set (e.g. "valgrind --tool=callgrind",
/// "strace -c -f -o FILE", "perf record -e cpu-clock -o FILE --"): profiles under this load.
fn wrapped(binary: &Path) -> Command {
    let wrap = std::env::var("CJSM_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(binary);
            c
        }
        None => Command::new(binary),
    }
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
    (0..DIRECTORY_USERS)
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

impl Milter {
    async fn start(kind: Kind, socket: Socket, store: &StoreSetup) -> Milter {
        let dir = tempfile::tempdir().unwrap();
        let target = match socket {
            Socket::Inet => Target::Inet(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
            Socket::Unix => Target::Unix(dir.path().join("milter.sock")),
        };
        let log = std::fs::File::create(dir.path().join("milter.log")).unwrap();
        let mut command = match kind {
            Kind::Cjsm => {
                let store_section = match store {
                    StoreSetup::File => {
                        let path = dir.path().join("store");
                        let file = SqliteStore::open(&path).unwrap();
                        file.put_org(org()).await.unwrap();
                        file.put_users(users()).await.unwrap();
                        format!("backend = \"file\"\npath = \"{}\"", path.display())
                    }
                    StoreSetup::Redis(url) => format!("backend = \"redis\"\nurl = \"{url}\""),
                };
                let config = dir.path().join("cjsm.toml");
                // `secure_networks`: the client plays a server on the secure network, as in
                // scripts/bench-mta.sh (mail from a police address is accepted only from there).
                // `allow_root`: the store above was written by this process (root, when the
                // benchmark runs as root), so a milter that dropped to its service account
                // could not open it; the drop changes nothing of what is measured here.
                std::fs::write(
                    &config,
                    format!(
                        "[milter]\nlisten = \"{}\"\nmax_connections = 500\nallow_root = true\n\n[store]\n{store_section}\n\n\
                         [metrics]\nlisten = \"\"\n\n[log]\nlevel = \"{}\"\n\n\
                         [routing]\nsecure_networks = [\"127.0.0.0/8\"]\n",
                        target.spec(),
                        // One info line per message, as deployed; CJSM_BENCH_LOG=warn to compare.
                        std::env::var("CJSM_BENCH_LOG").unwrap_or_else(|_| "info".into())
                    ),
                )
                .unwrap();
                let mut c = wrapped(Path::new(env!("CARGO_BIN_EXE_cjsm-milter")));
                c.arg("--config").arg(&config).arg("run");
                c
            }
            Kind::Noop | Kind::NoopNoreply => {
                let mut c = wrapped(&noop_binary());
                if kind == Kind::NoopNoreply {
                    c.arg("--noreply");
                }
                c.arg(target.spec());
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the milter");
        if std::env::var_os("CJSM_BENCH_KEEP").is_some() {
            // Keep the milter's directory (config, log, store) for a look afterwards.
            eprintln!("  {} directory: {}", kind.name(), dir.keep().display());
            let dir = tempfile::tempdir().unwrap();
            let milter = Milter {
                child,
                target,
                _dir: dir,
            };
            milter.wait_ready().await;
            return milter;
        }
        let milter = Milter {
            child,
            target,
            _dir: dir,
        };
        milter.wait_ready().await;
        milter
    }

    async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ok = match &self.target {
                Target::Inet(a) => tokio::net::TcpStream::connect(a).await.is_ok(),
                Target::Unix(p) => tokio::net::UnixStream::connect(p).await.is_ok(),
            };
            if ok {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "milter did not listen on {} within 60 s",
                self.target.spec()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Peak resident set size so far, in KiB.
    fn peak_rss_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }

    /// CPU time used so far (user, system), in seconds, every thread included.
    fn cpu_seconds(&self) -> (f64, f64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name in parentheses: state is field 3; utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = 100.0; // sysconf(_SC_CLK_TCK) on Linux
        let get = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (get(11) / tick, get(12) / tick)
    }

    /// The last `count` `verdict_us` values of cjsm-milter's log (one line per message),
    /// sorted.
    fn verdict_times(&self, count: usize) -> Vec<Duration> {
        let log = std::fs::read_to_string(self._dir.path().join("milter.log")).unwrap_or_default();
        let mut times: Vec<Duration> = log
            .lines()
            .filter_map(|line| {
                let value = line.split("verdict_us=").nth(1)?;
                let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok().map(Duration::from_micros)
            })
            .collect();
        let mut measured = times.split_off(times.len().saturating_sub(count));
        measured.sort();
        measured
    }

    /// Stops the milter by its PID (SIGTERM, then SIGKILL after 10 s).
    fn stop(mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the PID of our own child, which has not been waited for yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..1000 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Milter {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load

struct Load {
    sessions: usize,
    messages: usize,
    /// Messages per milter connection (1: a new connection per message, as smtp-source does).
    per_connection: usize,
    mix: Arc<Vec<Message>>,
    /// Directory users to spread the secure-suffix recipient over (1: always user0).
    spread: usize,
}

struct RunResult {
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    peak_rss_kb: u64,
    /// The milter's CPU time per message (user + system), µs.
    cpu_us: f64,
    /// cjsm-milter's own verdict time (classify and decide, from its log line per message:
    /// `verdict_us`), p99 over the measured messages: the round trip above less the queueing
    /// for the CPU and the protocol. `None` for the no-op milter.
    own_verdict_p99_us: Option<f64>,
    wrong: usize,
}

/// Sends one message; the end-of-message round trip, and whether the answer was as expected.
async fn send(
    conn: &mut TestConnection,
    msg: &Message,
    seq: usize,
    spread: usize,
    check: bool,
) -> (Duration, bool) {
    let qid = format!("Q{seq:09X}");
    conn.macros(
        MacroStage::Mail,
        [
            ("i", qid.as_str()),
            ("{client_addr}", "127.0.0.1"),
            // Over STARTTLS, as hub traffic arrives (OFFICIAL-SENSITIVE needs it).
            ("{tls_version}", "TLSv1.3"),
        ],
    )
    .await
    .unwrap();
    let status = conn.mail([format!("<{SENDER}>")]).await.unwrap();
    // A refused sender ends the transaction: the rest of this message would wait for replies
    // that never come. Every sender here must be accepted.
    assert_eq!(
        status,
        Status::Continue,
        "the milter refused the sender at MAIL (see its log: CJSM_BENCH_KEEP=1)"
    );
    let mut ok = true;
    for rcpt in &msg.recipients {
        let rcpt = if spread > 1 && rcpt.starts_with("user0@") {
            rcpt.replacen("user0@", &format!("user{}@", seq % spread), 1)
        } else {
            rcpt.clone()
        };
        conn.macros(MacroStage::Rcpt, [("i", qid.as_str())])
            .await
            .unwrap();
        let status = conn.rcpt([format!("<{rcpt}>")]).await.unwrap();
        ok &= status == Status::Continue;
    }
    for (name, value) in &msg.headers {
        let status = conn.header(name.as_str(), value.as_str()).await.unwrap();
        ok &= matches!(status, Status::Continue | Status::Noreply);
    }
    conn.macros(MacroStage::Eoh, [("i", qid.as_str())])
        .await
        .unwrap();
    conn.eoh().await.unwrap();
    conn.body(msg.body.clone()).await.unwrap();
    conn.macros(MacroStage::Eom, [("i", qid.as_str())])
        .await
        .unwrap();
    let started = Instant::now();
    let (_, status) = conn.eom().await.unwrap();
    let latency = started.elapsed();
    if check {
        let refused = matches!(status, Status::Reject { .. });
        ok &= refused == msg.refused && !matches!(status, Status::Tempfail { .. });
    }
    (latency, ok)
}

async fn session(
    target: Target,
    load: Arc<Load>,
    next: Arc<AtomicUsize>,
    check: bool,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut wrong = 0;
    'connections: loop {
        let mut conn = target.open().await;
        conn.macros(
            MacroStage::Connect,
            [("j", "mx.test.local"), ("{client_addr}", "127.0.0.1")],
        )
        .await
        .unwrap();
        conn.connect("client.test.local", [127, 0, 0, 1])
            .await
            .unwrap();
        for _ in 0..load.per_connection {
            let seq = next.fetch_add(1, Ordering::Relaxed);
            if seq >= load.messages {
                conn.close().await.unwrap();
                break 'connections;
            }
            let msg = &load.mix[seq % load.mix.len()];
            let (latency, ok) = send(&mut conn, msg, seq, load.spread, check).await;
            latencies.push(latency);
            if !ok {
                wrong += 1;
                if wrong == 1 {
                    eprintln!("  unexpected verdict for {}", msg.label);
                }
            }
        }
        conn.close().await.unwrap();
    }
    (latencies, wrong)
}

/// Drives `load` against a running milter: msgs/s and the end-of-message latencies.
async fn drive(target: &Target, load: &Arc<Load>, check: bool) -> (f64, Vec<Duration>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..load.sessions)
        .map(|_| tokio::spawn(session(target.clone(), load.clone(), next.clone(), check)))
        .collect();
    let mut latencies = Vec::with_capacity(load.messages);
    let mut wrong = 0;
    for task in tasks {
        let (l, w) = tokio::time::timeout(Duration::from_secs(600), task)
            .await
            .expect("load run finished within 10 minutes")
            .unwrap();
        latencies.extend(l);
        wrong += w;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    (
        load.messages as f64 / elapsed.as_secs_f64(),
        latencies,
        wrong,
    )
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

async fn run_once(kind: Kind, socket: Socket, load: &Arc<Load>) -> RunResult {
    let milter = Milter::start(kind, socket, &StoreSetup::File).await;
    // Warm-up (threads, allocator, file store cache): one message per session, unmeasured.
    let warm = Arc::new(Load {
        sessions: load.sessions.min(10),
        messages: load.sessions.min(10),
        per_connection: 1,
        mix: load.mix.clone(),
        spread: 1,
    });
    if load.messages >= 100 {
        drive(&milter.target, &warm, false).await;
    }
    let cpu_before = milter.cpu_seconds();
    let (rate, latencies, wrong) = drive(&milter.target, load, kind == Kind::Cjsm).await;
    let cpu_after = milter.cpu_seconds();
    let cpu = (cpu_after.0 + cpu_after.1) - (cpu_before.0 + cpu_before.1);
    let result = RunResult {
        cpu_us: cpu * 1e6 / load.messages as f64,
        msgs_per_s: rate,
        p50_us: quantile(&latencies, 0.5),
        p99_us: quantile(&latencies, 0.99),
        peak_rss_kb: milter.peak_rss_kb(),
        own_verdict_p99_us: (kind == Kind::Cjsm)
            .then(|| quantile(&milter.verdict_times(load.messages), 0.99)),
        wrong,
    };
    milter.stop();
    result
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    socket: Socket,
    sessions: usize,
    messages: usize,
    per_connection: usize,
    mix: Vec<Message>,
}

fn scenarios(scale: f64) -> Vec<Scenario> {
    let n = |count: usize| ((count as f64 * scale) as usize).max(1);
    let ten_k: Vec<Message> = vec![
        message(10_240, true, true),
        message(10_240, false, true),
        message(10_240, true, false),
        message(10_240, false, false),
    ];
    vec![
        Scenario {
            name: "10k-inet",
            what: "10 KB (marked/unmarked x secure/insecure), 10 sessions, inet",
            socket: Socket::Inet,
            sessions: 10,
            messages: n(8_000),
            per_connection: 1,
            mix: ten_k.clone(),
        },
        Scenario {
            name: "10k-unix",
            what: "10 KB (marked/unmarked x secure/insecure), 10 sessions, unix",
            socket: Socket::Unix,
            sessions: 10,
            messages: n(8_000),
            per_connection: 1,
            mix: ten_k.clone(),
        },
        Scenario {
            name: "10k-inet-reuse",
            what: "10 KB, 10 sessions, inet, 20 messages per connection",
            socket: Socket::Inet,
            sessions: 10,
            messages: n(8_000),
            per_connection: 20,
            mix: ten_k,
        },
        Scenario {
            name: "mix-inet",
            what: "mix 2 KB/10 KB/100 KB/1 MB (8:8:3:1), 10 sessions, inet",
            socket: Socket::Inet,
            sessions: 10,
            messages: n(2_000),
            per_connection: 1,
            mix: mix(),
        },
        Scenario {
            name: "1m-unix",
            what: "1 MB (marked/unmarked to a secure recipient), 10 sessions, unix",
            socket: Socket::Unix,
            sessions: 10,
            messages: n(400),
            per_connection: 1,
            mix: vec![message(1 << 20, true, true), message(1 << 20, false, true)],
        },
        Scenario {
            name: "100k-200-sessions",
            what: "100 KB, 200 concurrent sessions, inet",
            socket: Socket::Inet,
            sessions: 200,
            messages: n(4_000),
            per_connection: 1,
            mix: vec![message(102_400, true, true), message(102_400, false, true)],
        },
        Scenario {
            name: "50mb-one",
            what: "one 50 MB message, 1 session, inet",
            socket: Socket::Inet,
            sessions: 1,
            messages: 1,
            per_connection: 1,
            mix: vec![message(50 << 20, true, true)],
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Redis round trips per recipient

struct Redis {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Redis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
            _dir: dir,
        })
    }

    async fn commandstats(&self) -> BTreeMap<String, u64> {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the PID of our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..500 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, v)| *v > 0 && k != "info")
        .collect()
}

async fn redis_round_trips() {
    println!("\n## Redis store: round trips per secure-suffix recipient\n");
    let Some(redis) = Redis::start() else {
        println!("redis-server not found (Debian package redis-server): skipped");
        return;
    };
    let mut store = None;
    for _ in 0..250 {
        if let Ok(s) = RedisStore::connect(&redis.url, "cjsm", 1000).await {
            store = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = store.expect("redis-server answers");
    store.put_org(org()).await.unwrap();
    store.put_users(users()).await.unwrap();
    let milter = Milter::start(
        Kind::Cjsm,
        Socket::Inet,
        &StoreSetup::Redis(redis.url.clone()),
    )
    .await;
    // Each message goes to one secure-network and one secure-suffix recipient; `spread`
    // distinct directory users, every one new to the cache in the first pass.
    let distinct = 200;
    let load = Arc::new(Load {
        sessions: 1,
        messages: distinct,
        per_connection: 1,
        mix: Arc::new(vec![message(2_048, true, true)]),
        spread: distinct,
    });
    println!(
        "{distinct} messages, each to clerk@cps.gsi.gov.uk (no lookup) and a different \
         userN@hartleylaw.co.uk.cjsm.net; cache_ttl_ms = 1000 (default); 1 session\n"
    );
    println!(
        "| pass | secure-suffix recipients | lookup scripts (EVALSHA+EVAL) | per recipient | other commands | time |"
    );
    println!("|---|---|---|---|---|---|");
    for pass in ["first (cache miss)", "again at once (cache hit)"] {
        let before = redis.commandstats().await;
        let started = Instant::now();
        let (_, _, wrong) = drive(&milter.target, &load, true).await;
        let took = started.elapsed();
        let after = redis.commandstats().await;
        let d = delta(&before, &after);
        let lookups: u64 = ["evalsha", "eval"]
            .iter()
            .map(|k| d.get(*k).copied().unwrap_or(0))
            .sum();
        let others: Vec<String> = d
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "evalsha" | "eval"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "| {pass} | {distinct} | {lookups} | {:.2} | {} | {:.0} ms{} |",
            lookups as f64 / distinct as f64,
            if others.is_empty() {
                "none".into()
            } else {
                others.join(" ")
            },
            took.as_secs_f64() * 1e3,
            if wrong > 0 {
                format!(" ({wrong} UNEXPECTED VERDICTS)")
            } else {
                String::new()
            }
        );
    }
    milter.stop();
}

// ---------------------------------------------------------------------------------------------

fn args() -> (Vec<String>, usize, f64) {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].clone())
            .collect()
    };
    let only = value("--only");
    let repeat = value("--repeat")
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let scale = value("--scale")
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    (only, repeat, scale)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    let (only, repeat, scale) = args();
    let cjsm_only = std::env::args().any(|a| a == "--cjsm-only");
    // `cargo bench` passes `--bench`; nothing else from the harness is used.
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    println!(
        "# milter_load: cjsm-milter vs the no-op indymilter, {repeat} runs per row (median; runs \
         interleaved cjsm/no-op)\n"
    );
    println!(
        "| scenario | milter | msgs/s | ratio | verdict p50 | verdict p99 | own verdict p99 | milter CPU/msg | peak RSS | runs (msgs/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for scenario in scenarios(scale) {
        if !wanted(scenario.name) {
            continue;
        }
        let load = Arc::new(Load {
            sessions: scenario.sessions,
            messages: scenario.messages,
            per_connection: scenario.per_connection,
            mix: Arc::new(scenario.mix),
            spread: 1,
        });
        let mut results: Vec<(Kind, Vec<RunResult>)> = vec![(Kind::Cjsm, Vec::new())];
        if !cjsm_only {
            results.push((Kind::Noop, Vec::new()));
            results.push((Kind::NoopNoreply, Vec::new()));
        }
        for _ in 0..repeat {
            for (kind, runs) in results.iter_mut() {
                runs.push(run_once(*kind, scenario.socket, &load).await);
            }
        }
        let noop_rate = results.get(1).map_or(f64::NAN, |(_, runs)| {
            median(runs.iter().map(|r| r.msgs_per_s).collect())
        });
        for (kind, runs) in &results {
            let rate = median(runs.iter().map(|r| r.msgs_per_s).collect());
            let wrong: usize = runs.iter().map(|r| r.wrong).sum();
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.0} µs | {:.0} µs | {} | {:.0} µs | {:.1} MB | {}{} |",
                scenario.what,
                kind.name(),
                rate,
                rate / noop_rate,
                median(runs.iter().map(|r| r.p50_us).collect()),
                median(runs.iter().map(|r| r.p99_us).collect()),
                match runs
                    .iter()
                    .map(|r| r.own_verdict_p99_us)
                    .collect::<Option<Vec<_>>>()
                {
                    Some(p99s) if !p99s.is_empty() => format!("{:.0} µs", median(p99s)),
                    _ => "-".into(),
                },
                median(runs.iter().map(|r| r.cpu_us).collect()),
                mb(runs.iter().map(|r| r.peak_rss_kb).max().unwrap_or(0)),
                runs.iter()
                    .map(|r| format!("{:.0}", r.msgs_per_s))
                    .collect::<Vec<_>>()
                    .join(" / "),
                if wrong > 0 {
                    format!(" — {wrong} UNEXPECTED VERDICTS")
                } else {
                    String::new()
                }
            );
        }
    }
    if wanted("redis") {
        redis_round_trips().await;
    }
}
