//! Fuzzing every parser on the stable toolchain: a small mutation engine (seeded xorshift,
//! byte and dictionary mutations, splicing) over corpora seeded from the repository's own
//! test inputs, driving the targets of tests/fuzz/targets.rs (shared with the cargo-fuzz
//! targets in fuzz/). Each target runs for `CJSM_FUZZ_SECONDS` (default 20) and prints its
//! executions; an input that gives an outcome not seen before joins the corpus.
//!
//! Every input is checked for: no panic (the targets' assertions included), no hang (each
//! input within 1 s; a watchdog aborts the run, saying which input, past 10 s), and memory
//! (the peak of live heap bytes during one input, counted by this binary's allocator, within
//! 256 MiB; the process's VmHWM is printed). A failing input is written to
//! `target/fuzz-failures/` and belongs in `tests/fuzz/regressions/TARGET/` once fixed: every
//! file there is replayed first on every run.
//!
//! The long run: `CJSM_FUZZ_SECONDS=300 cargo test --release --test fuzz -- --nocapture
//! --test-threads 1`. `CJSM_FUZZ_SEED` picks another seed for the mutations.

#[path = "fuzz/targets.rs"]
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The heap, counted: live bytes and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One input may take this long.
const INPUT_LIMIT: Duration = Duration::from_secs(1);
/// Past this the input is taken to hang: the watchdog aborts the whole run.
const HANG_LIMIT: Duration = Duration::from_secs(10);
/// The most heap one input may hold at once, beyond what was live before it.
const MEMORY_LIMIT: usize = 256 << 20;
/// The process's peak resident set (VmHWM) at the end of a target.
const PROCESS_MEMORY_LIMIT_KB: u64 = 1 << 20;

/// The targets run one at a time: the heap count and the time limit are per input.
static SERIAL: Mutex<()> = Mutex::new(());

fn seconds() -> Duration {
    let secs = std::env::var("CJSM_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(15.0);
    Duration::from_secs_f64(secs)
}

fn seed() -> u64 {
    std::env::var("CJSM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f022_c15a_0001)
}

/// xorshift64*: enough randomness for mutations, no dependency, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"255",
    b"256",
    b"65535",
    b"4294967296",
    b"99999999999999999999",
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\xc3",
    b"\xe2\x80",
    b"\xf0\x9f\x98",
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"\t",
    b"\"",
    b"'",
    b"\\",
    b",",
    b":",
    b";",
    b"=",
    b"[",
    b"]",
    b"{",
    b"}",
];

/// One to eight mutations of `input`: byte flips, dictionary words, cuts, copies, splices
/// with another corpus entry. At most `max_len` bytes.
fn mutate(
    rng: &mut Rng,
    input: &[u8],
    corpus: &[Vec<u8>],
    dict: &[&[u8]],
    max_len: usize,
) -> Vec<u8> {
    let mut m = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(m.len() + 1);
        match rng.below(10) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            2 | 3 if !dict.is_empty() => {
                let word = dict[rng.below(dict.len())];
                m.splice(at..at, word.iter().copied());
            }
            4 => {
                let word = INTERESTING[rng.below(INTERESTING.len())];
                m.splice(at..at, word.iter().copied());
            }
            5 if !m.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(m.len());
                m.drain(at.min(end)..end);
            }
            6 if !m.is_empty() => {
                let end = (at + 1 + rng.below(256)).min(m.len());
                let copy = m[at.min(end)..end].to_vec();
                let to = rng.below(m.len() + 1);
                m.splice(to..to, copy);
            }
            7 if !corpus.is_empty() => {
                // Splice: the start of this input, the end of another.
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                m.truncate(at);
                m.extend_from_slice(&other[from..]);
            }
            8 if !m.is_empty() && rng.below(4) == 0 => m.truncate(at),
            _ => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                m.splice(at..at, bytes);
            }
        }
    }
    m.truncate(max_len);
    m
}

/// What the watchdog watches: when the current input started (ms since `EPOCH`, 0 for
/// none) and where it is saved.
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
static WATCHDOG: AtomicBool = AtomicBool::new(false);
/// The input running now and the file the watchdog writes it to.
static CURRENT: Mutex<(Vec<u8>, Option<PathBuf>)> = Mutex::new((Vec::new(), None));

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Aborts the process when one input runs past [`HANG_LIMIT`] (a hang never returns to be
/// checked), naming the file the input is saved in.
fn start_watchdog() {
    if WATCHDOG.swap(true, Ordering::SeqCst) {
        return;
    }
    epoch();
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let started = STARTED_MS.load(Ordering::SeqCst);
            if started == 0 {
                continue;
            }
            let now = epoch().elapsed().as_millis() as u64;
            if now.saturating_sub(started) > HANG_LIMIT.as_millis() as u64 {
                // The lock may be held by the hung thread only between inputs: never now.
                let shown = match CURRENT.try_lock() {
                    Ok(current) => match &current.1 {
                        Some(path) => match std::fs::write(path, &current.0) {
                            Ok(()) => path.display().to_string(),
                            Err(e) => format!("(not written: {e})"),
                        },
                        None => String::new(),
                    },
                    Err(_) => "(not written: locked)".into(),
                };
                eprintln!(
                    "fuzz: an input has run for more than {HANG_LIMIT:?} (a hang); it is in {shown}"
                );
                std::process::abort();
            }
        }
    });
}

fn failures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A target's run: its seeds and regressions, then mutations until the time is up.
struct Run<'a> {
    name: &'a str,
    seeds: Vec<Vec<u8>>,
    dict: Vec<&'a [u8]>,
    max_len: usize,
}

struct Stats {
    executions: u64,
    corpus: usize,
    slowest: Duration,
    peak_heap: usize,
}

impl Run<'_> {
    fn go(self, mut target: impl FnMut(&[u8]) -> u64) -> Stats {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        start_watchdog();
        let budget = seconds();
        let mut rng = Rng(seed()
            ^ self
                .name
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
        let regressions = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz/regressions")
            .join(self.name);
        let mut fixed: Vec<Vec<u8>> = match std::fs::read_dir(&regressions) {
            Ok(entries) => {
                let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
                paths.sort();
                paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
            }
            Err(_) => Vec::new(),
        };
        let mut corpus: Vec<Vec<u8>> = self.seeds.clone();
        corpus.retain(|s| s.len() <= self.max_len);
        let mut seen = std::collections::HashSet::new();
        let mut stats = Stats {
            executions: 0,
            corpus: 0,
            slowest: Duration::ZERO,
            peak_heap: 0,
        };
        let saved = failures_dir().join(format!("{}-hang", self.name));
        CURRENT.lock().unwrap().1 = Some(saved);
        let mut corpus_bytes: usize = corpus.iter().map(Vec::len).sum();
        let started = Instant::now();
        let mut replay: Vec<Vec<u8>> = fixed.drain(..).chain(corpus.iter().cloned()).collect();
        replay.reverse();
        loop {
            let input = match replay.pop() {
                Some(input) => input,
                None if started.elapsed() >= budget || corpus.is_empty() => break,
                None => {
                    let base = &corpus[rng.below(corpus.len())];
                    mutate(&mut rng, base, &corpus, &self.dict, self.max_len)
                }
            };
            // Kept where the watchdog finds it, should it hang.
            {
                let mut current = CURRENT.lock().unwrap();
                current.0.clear();
                current.0.extend_from_slice(&input);
            }
            let before = LIVE.load(Ordering::SeqCst);
            PEAK.store(before, Ordering::SeqCst);
            STARTED_MS.store(
                epoch().elapsed().as_millis().max(1) as u64,
                Ordering::SeqCst,
            );
            let t = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
            let took = t.elapsed();
            STARTED_MS.store(0, Ordering::SeqCst);
            let heap = PEAK.load(Ordering::SeqCst).saturating_sub(before);
            stats.executions += 1;
            stats.slowest = stats.slowest.max(took);
            stats.peak_heap = stats.peak_heap.max(heap);
            let problem = match &result {
                Err(_) => Some("panicked (see the message above)".to_string()),
                Ok(_) if took > INPUT_LIMIT => Some(format!("took {took:?}, over {INPUT_LIMIT:?}")),
                Ok(_) if heap > MEMORY_LIMIT => {
                    Some(format!("held {heap} bytes of heap, over {MEMORY_LIMIT}"))
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                let kept =
                    failures_dir().join(format!("{}-{:016x}", self.name, targets_hash(&input)));
                std::fs::write(&kept, &input).unwrap();
                panic!(
                    "fuzz {}: an input {problem}; it is in {} ({} bytes): {:?}",
                    self.name,
                    kept.display(),
                    input.len(),
                    String::from_utf8_lossy(&input[..input.len().min(300)])
                );
            }
            let outcome = result.unwrap();
            // Bounded: at most 10,000 entries and 64 MiB.
            if seen.insert(outcome)
                && corpus.len() < 10_000
                && corpus_bytes + input.len() <= 64 << 20
                && !corpus.contains(&input)
            {
                corpus_bytes += input.len();
                corpus.push(input);
            }
        }
        stats.corpus = corpus.len();
        let hwm = vm_hwm_kb();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "fuzz {}: {} executions in {:.1} s ({:.0}/s), {} distinct outcomes, corpus {}, \
             slowest input {:?}, peak heap per input {} KiB, process VmHWM {} MiB",
            self.name,
            stats.executions,
            secs,
            stats.executions as f64 / secs.max(0.001),
            seen.len(),
            stats.corpus,
            stats.slowest,
            stats.peak_heap / 1024,
            hwm / 1024
        );
        assert!(
            hwm <= PROCESS_MEMORY_LIMIT_KB,
            "fuzz {}: the process's peak resident set is {hwm} kB",
            self.name
        );
        assert!(stats.executions > 0);
        stats
    }
}

fn targets_hash(input: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    h.finish()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The files under `dir` (not recursive) whose name ends with one of `suffixes`.
fn files(dir: &str, suffixes: &[&str]) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            suffixes.iter().any(|s| name.ends_with(s))
        })
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The test messages: the corpus, the regressions, and the messages written out in the
/// tests' sources (a fixed list would go stale).
fn messages() -> Vec<Vec<u8>> {
    let mut all = files("tests/corpus", &[".eml"]);
    all.extend(files("tests/regressions", &[".eml"]));
    assert!(all.len() >= 30, "the test messages are there");
    all
}

const MESSAGE_DICT: &[&[u8]] = &[
    b"OFFICIAL",
    b"OFFICIAL-SENSITIVE",
    b"SECRET",
    b"TOP SECRET",
    b"PROTECTED",
    b"[SEC=",
    b"Subject: ",
    b"X-Protective-Marking: ",
    b"msip_labels: MSIP_Label_",
    b"SIO-Label: ",
    b"=?UTF-8?B?",
    b"=?iso-8859-1?Q?",
    b"?=",
    b"\r\n\r\n",
    b"\r\n ",
    b"--",
    b"--b\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/alternative; boundary=\"",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/html; charset=utf-8\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"=\r\n",
    b"&shy;",
    b"&#8203;",
    b"<!--",
    b"<div style=\"display:none\">",
    b"\xe2\x80\x8b",
    b"\xe2\x80\x93",
    b"\xd0\x9e",
    b"Classification: ",
    b"-- \r\n",
    b"begin 644 x\r\n",
];

#[test]
fn fuzz_classifier_raw_message() {
    let rig = targets::ClassifierRig::new();
    Run {
        name: "classifier",
        seeds: messages(),
        dict: MESSAGE_DICT.to_vec(),
        max_len: 64 * 1024,
    }
    .go(|data| rig.raw_message(data));
}

#[test]
fn fuzz_classifier_marked_message() {
    let rig = targets::ClassifierRig::new();
    // Seeds: a choice of marking, form and place, then the test messages' text.
    let mut seeds = Vec::new();
    for (i, message) in messages().into_iter().enumerate() {
        let mut seed = vec![i as u8, 0, (i / 3) as u8, 0, (i % 3) as u8, 0, 20, 0];
        seed.extend_from_slice(b"interview schedule 12345678901234");
        seed.extend_from_slice(&message);
        seeds.push(seed);
    }
    Run {
        name: "classifier-marked",
        seeds,
        dict: MESSAGE_DICT.to_vec(),
        max_len: 64 * 1024,
    }
    .go(|data| rig.marked_message(data));
}

#[test]
fn fuzz_milter_session() {
    let rig = targets::MilterRig::new();
    // Seeds: whole transactions in the op codes of `MilterRig::session`.
    let transaction: Vec<u8> = vec![
        0, 0, 0, // connect
        1, 0, 0, // helo
        2, 2, 0, 2, 0, 0, 0, 1, 0, 0, 0, // macros at MAIL: i, tls_version
        3, 2, 0, 1, 3, 0, // MAIL FROM dc.jones
        5, 2, 0, 1, 4, 0, // RCPT TO carol
        7, // DATA
        8, 0, 0, 2, 1, 1, 0,  // Subject: OFFICIAL-SENSITIVE
        10, // EOH
        11, 2, 0, 2, 2, 0,  // body
        12, // EOM
        13, 1, // close
    ];
    let mut twice = transaction.clone();
    twice.extend_from_slice(&transaction);
    let mut without_mail = transaction.clone();
    without_mail.drain(17..23);
    Run {
        name: "milter",
        seeds: vec![
            transaction,
            twice,
            without_mail,
            vec![12],
            vec![8, 10, 11, 12],
        ],
        dict: vec![&[12], &[10], &[3], &[13, 0], &[13, 1], &[2]],
        max_len: 512,
    }
    .go(|data| rig.session(data));
    // Whether the sessions get anywhere: the replies by command (op code) and kind.
    println!("fuzz milter: replies {:?}", rig.counts.borrow());
}

#[test]
fn fuzz_socketmap() {
    let rig = targets::MilterRig::new();
    let queries = [
        "transport firm.co.uk",
        "transport smithchambers.cjsm.net",
        "tlspolicy firm.co.uk",
        "tlspolicy [192.0.2.1]:25",
        "tlspolicy met.pnn.police.uk",
        "mailertable firm.co.uk",
        "mailertable .co.uk",
        "access TLS_Rcpt:firm.co.uk",
        "access TLS_Rcpt:[127.0.0.1]",
        "transport",
        "nosuchmap x",
    ];
    let mut seeds = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let mut seed = vec![i as u8, 0];
        seed.extend(cjsm_milter::routing::netstring(q));
        seed.extend(cjsm_milter::routing::netstring(
            queries[(i + 1) % queries.len()],
        ));
        seeds.push(seed);
    }
    Run {
        name: "socketmap",
        seeds,
        dict: vec![
            b"transport ",
            b"tlspolicy ",
            b"mailertable ",
            b"access ",
            b"TLS_Rcpt:",
            b"1024:",
            b"1025:",
            b"0:,",
            b"firm.co.uk",
            b".cjsm.net",
            b"[",
            b"]:25",
        ],
        max_len: 4096,
    }
    .go(|data| rig.socketmap(data));
}

#[test]
fn fuzz_csv_import() {
    let mut seeds = files("tests", &[".csv"]);
    seeds.push(
        b"secure_address,first_name,last_name,organisation,town,business_type\r\n\
          carol@smithchambers.cjsm.net,Carol,Smith,smithchambers,London,Barristers\r\n\
          dan@smithchambers.cjsm.net,\"Dan, Jr\",'=Jones,Smith Chambers LLP,,\r\n"
            .to_vec(),
    );
    seeds.push(b"\xef\xbb\xbfSECURE_ADDRESS;first_name\n\n,,,,,\n\"a\"\"b\",\n".to_vec());
    Run {
        name: "csv",
        seeds,
        dict: vec![
            b"secure_address,first_name,last_name,organisation,town,business_type\r\n",
            b",",
            b"\"",
            b"\"\"",
            b"'",
            b"'=",
            b"@smithchambers.cjsm.net",
            b"\r\n",
            b"\n",
            b"\xef\xbb\xbf",
            b"\xa0",
        ],
        max_len: 64 * 1024,
    }
    .go(targets::csv_import);
}

#[test]
fn fuzz_config() {
    let mut seeds = files("tests/scenarios", &[".toml"]);
    seeds.extend(files("tests/corpus", &[".toml"]));
    seeds.push(std::fs::read(repo("cjsm-milter.example.toml")).unwrap());
    // The keys the example config documents, as dictionary words.
    let example =
        String::from_utf8(std::fs::read(repo("cjsm-milter.example.toml")).unwrap()).unwrap();
    let mut words: Vec<Vec<u8>> = example
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim();
            if l.starts_with('[') && l.ends_with(']') {
                Some(format!("\n{l}\n").into_bytes())
            } else {
                l.split_once(" = ")
                    .map(|(k, _)| format!("\n{k} = ").into_bytes())
            }
        })
        .collect();
    words.sort();
    words.dedup();
    for w in [
        "\"", "[", "]", "{", "}", "=", "\"\"\"", "'", "0o777", "-1", "1e400", "true",
    ] {
        words.push(w.as_bytes().to_vec());
    }
    let dict: Vec<&[u8]> = words.iter().map(|w| w.as_slice()).collect();
    Run {
        name: "config",
        seeds,
        dict,
        max_len: 64 * 1024,
    }
    .go(targets::config);
}

#[test]
fn fuzz_export_round_trip() {
    // Structure generator input: any bytes mean a directory; these start it off.
    let seeds: Vec<Vec<u8>> = (0u8..16)
        .map(|i| {
            (0..200)
                .map(|j: u32| (j as u8).wrapping_mul(i * 2 + 1) ^ i)
                .collect()
        })
        .collect();
    Run {
        name: "export",
        seeds,
        dict: vec![],
        max_len: 2048,
    }
    .go(targets::export_round_trip);
}

#[test]
fn fuzz_certificate() {
    let seeds = targets::certificate_seeds();
    Run {
        name: "certificate",
        seeds,
        dict: vec![
            b"-----BEGIN CERTIFICATE-----\n",
            b"-----END CERTIFICATE-----\n",
            b"-----BEGIN PRIVATE KEY-----\n",
            b"\x30\x82",
            b"\x30\x80",
            b"\x06\x03\x55\x1d\x11",
            b"\x06\x03\x55\x1d\x0f",
            b"\x06\x03\x55\x1d\x25",
            b"\x81\x1c",
            b"\x17\x0d",
            b"\x18\x0f",
        ],
        max_len: 64 * 1024 + 16,
    }
    .go(targets::certificate);
}

/// Found by `classifier-marked`: a malformed multipart with attached messages after which the
/// MIME parser returned no Subject at all, and a TOP SECRET Subject was read as unmarked
/// (the default). The Subject of the message's own header block must count.
#[test]
fn a_subject_marking_survives_a_parser_that_loses_the_subject() {
    let rig = targets::ClassifierRig::new();
    let top_secret = rig
        .classify(b"Subject: TOP SECRET: x\r\n\r\nbody\r\n")
        .level;
    // Also: the parser returned an attached message's Subject ("FW:") as the message's own.
    for name in [
        "mail-parser-lost-subject.eml",
        "mail-parser-other-subject.eml",
    ] {
        let message = std::fs::read(repo("tests/regressions").join(name)).unwrap();
        let c = rig.classify(&message);
        assert_ne!(
            c.source,
            cjsm_milter::marking::Origin::Default,
            "{name}: {c:?}"
        );
        assert_eq!(c.level, top_secret, "{name}: {c:?}");
    }
}
