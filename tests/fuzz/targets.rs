//! The fuzz targets: one function per parser, taking raw bytes and asserting the invariants
//! (a failed assertion is a panic, which the driver reports with the input that caused it).
//! Shared by the stable driver (tests/fuzz.rs, run by `cargo test`) and the cargo-fuzz
//! targets for nightly users (fuzz/), so both check the same things.
//!
//! Each target returns a small "signature" of what the input did (the classification, the
//! replies, the error kind): the stable driver keeps an input that gives a signature it has
//! not seen as a new seed, a cheap substitute for coverage feedback.
#![allow(dead_code)]

use cjsm_milter::check::feed;
use cjsm_milter::config::Config;
use cjsm_milter::directory::csv::{self, ImportRow, MAX_IMPORT_ROWS};
use cjsm_milter::directory::export::{escape_dn_value, to_csv, to_ldif};
use cjsm_milter::directory::model::{Certificate, Lookup};
use cjsm_milter::directory::model::{ConnectionType, OrgState, Organisation, User, UserState};
use cjsm_milter::directory::rules::{MAX_FIELD_CHARS, check_address, check_text};
use cjsm_milter::engine::{Engine, Shared, compile};
use cjsm_milter::listen::{self, ListenAddr};
use cjsm_milter::marking::{Origin, profile};
use cjsm_milter::policy::SessionFacts;
use cjsm_milter::store::{DirectoryRead, DirectoryWrite, SqliteStore, StoreError, StoreFuture};
use cjsm_milter::transaction::Transaction;
use indymilter_test::{MacroStage, Status, TestConnection};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

fn signature(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Reads an input as a stream of choices: a structure generator over plain bytes (as
/// `arbitrary` does), so that byte mutations become structural ones. Past the end it gives
/// zeros, so every input means something.
pub struct Choices<'a> {
    bytes: &'a [u8],
}

impl<'a> Choices<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Choices { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let wide = u16::from_le_bytes([self.byte(), self.byte()]) as usize;
        wide % n
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    pub fn word<'t>(&mut self, words: &[&'t str]) -> &'t str {
        words[self.below(words.len())]
    }

    /// Up to `max` bytes, length-prefixed.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max + 1).min(self.bytes.len());
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        taken
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// A short string made of pieces that matter to the parsers downstream.
    pub fn text(&mut self, pieces: &[&str], max_pieces: usize) -> String {
        let n = self.below(max_pieces + 1);
        let mut out = String::new();
        for _ in 0..n {
            match self.byte() % 8 {
                0 => out.push_str(&String::from_utf8_lossy(self.bytes(6))),
                1 => out.push(char::from(b'a' + self.byte() % 26)),
                _ => out.push_str(self.word(pieces)),
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// 1 and 2. The classifier, on the whole message as the milter sees it.

/// The classifier's rig: the default (CJSM) rules and a transaction from a secure-network
/// sender to a secure-network recipient, over TLS, up to DATA. Each input is fed into a copy.
pub struct ClassifierRig {
    engine: Engine,
    template: Transaction,
    _dir: tempfile::TempDir,
}

impl ClassifierRig {
    pub fn new() -> ClassifierRig {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(
            compile(Config::default()).unwrap(),
            Arc::new(SqliteStore::open(dir.path()).unwrap()),
        );
        let session = SessionFacts {
            tls_version: Some("TLSv1.3".into()),
            ..SessionFacts::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let template = runtime.block_on(async {
            let lookups = engine.lookups();
            let (mut transaction, _) = Transaction::mail(
                &engine.rules,
                &lookups,
                "<dc.jones@met.pnn.police.uk>",
                None,
                session,
            )
            .await
            .unwrap();
            transaction
                .rcpt(&engine.rules, &lookups, "<clerk@cps.gsi.gov.uk>", None)
                .await
                .unwrap();
            transaction
        });
        ClassifierRig {
            engine,
            template,
            _dir: dir,
        }
    }

    pub fn classify(&self, message: &[u8]) -> cjsm_milter::marking::Classification {
        let mut transaction = self.template.clone();
        feed(&mut transaction, message);
        transaction
            .finish(&self.engine.rules, &self.engine.smime)
            .classification
    }

    /// Target 1: any bytes as a message. A message whose scan hit a bound is never below
    /// the ceiling; one with no finding and no bound takes the default.
    pub fn raw_message(&self, data: &[u8]) -> u64 {
        let c = self.classify(data);
        let vocab = &self.engine.rules.vocab;
        if !c.limits_exceeded.is_empty() {
            assert!(
                vocab.rank(c.level) >= vocab.rank(vocab.ceiling),
                "a bound was hit but the level is below the ceiling: {c:?}"
            );
            assert_ne!(c.source, Origin::Default, "{c:?}");
        }
        if c.found.is_empty() && c.limits_exceeded.is_empty() {
            assert_eq!(c.source, Origin::Default, "{c:?}");
            assert_eq!(c.level, vocab.default, "{c:?}");
        }
        signature((
            vocab.level(c.level).name.as_str(),
            c.source.to_string(),
            c.found.len().min(4),
            c.limits_exceeded.is_empty(),
            c.ambiguous.is_empty(),
            c.warnings.is_empty(),
        ))
    }

    /// Target 2: a message with a marking of the CJSM vocabulary where the rules read one
    /// (the Subject, the body's first or last line), around fuzzed text. It is never
    /// classified as unmarked.
    pub fn marked_message(&self, data: &[u8]) -> u64 {
        let (message, marking, place) = marked(data);
        let c = self.classify(&message);
        // Asserted for the markings that keep or raise a message (at or above the default):
        // missing one of those would let mail out below its marking. A lowering marking
        // needs its exact form where it marks this message, and the rules decline it in
        // places by design (in the body after quoted or forwarded text begins), so a
        // message keeping the default there errs the safe way; see RELIABILITY.md.
        let vocab = &self.engine.rules.vocab;
        if level_rank(&marking) < vocab.level(vocab.default).rank {
            return signature((place, "lowering", c.source.to_string()));
        }
        assert_ne!(
            c.source,
            Origin::Default,
            "a message with {marking:?} in its {place} was classified unmarked: {c:?}\n\
             message: {:?}",
            String::from_utf8_lossy(&message)
        );
        signature((place, marking, c.source.to_string()))
    }
}

impl Default for ClassifierRig {
    fn default() -> Self {
        ClassifierRig::new()
    }
}

/// The rank of the level `marking` (as [`marked`] writes it) names.
fn level_rank(marking: &str) -> u32 {
    let word = marking
        .trim_start_matches("Classification: ")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches(" PERSONAL");
    profile::cjsm_levels()
        .into_iter()
        .find(|level| level.name == word || level.spellings.iter().any(|s| s == word))
        .map_or(u32::MAX, |level| level.rank)
}

/// Every name and spelling of a level of the CJSM profile.
pub fn vocabulary_markings() -> Vec<String> {
    let mut all = Vec::new();
    for level in profile::cjsm_levels() {
        all.push(level.name.clone());
        all.extend(level.spellings.iter().cloned());
    }
    all
}

/// How a marking may be written where it stands alone.
const FORMS: &[(&str, &str)] = &[
    ("", ""),
    ("[", "]"),
    ("Classification: ", ""),
    // (Only after OFFICIAL-SENSITIVE; see `marked`.)
    ("", " PERSONAL"),
];

/// Builds the message of [`ClassifierRig::marked_message`]: the marking, its place and form
/// chosen by the first bytes; the rest is headers and body text around it.
pub fn marked(data: &[u8]) -> (Vec<u8>, String, &'static str) {
    let mut choices = Choices::new(data);
    let markings = vocabulary_markings();
    let marking = choices.pick(&markings).clone();
    let (before, mut after) = *choices.pick(FORMS);
    // A descriptor goes with OFFICIAL-SENSITIVE only: "OFFICIAL PERSONAL" is no marking of
    // the scheme, and is rightly read as unmarked.
    if marking != "OFFICIAL-SENSITIVE" {
        after = after.trim_start_matches(" PERSONAL");
    }
    let place = *choices.pick(&["subject", "body-first-line", "body-last-line"]);
    let subject_rest = one_line(choices.bytes(80));
    let body = choices.rest();
    let mut message = Vec::new();
    match place {
        "subject" => {
            // The first header: whatever follows, headers or not, is the rest of the message.
            message.extend_from_slice(format!("Subject: {marking}: ").as_bytes());
            message.extend_from_slice(&subject_rest);
            message.extend_from_slice(b"\r\n");
            message.extend_from_slice(body);
        }
        _ => {
            // A plain-text message: headers the rules do not read, then the body's lines
            // (fuzzed text, one line per line of the input, so no header can sneak in).
            message.extend_from_slice(
                b"From: dc.jones@met.pnn.police.uk\r\nTo: clerk@cps.gsi.gov.uk\r\nSubject: ",
            );
            message.extend_from_slice(&subject_rest);
            message.extend_from_slice(b"\r\n\r\n");
            let line = format!("{before}{marking}{after}\r\n");
            if place == "body-first-line" {
                message.extend_from_slice(line.as_bytes());
            }
            for text in body.split(|&b| b == b'\n') {
                message.extend_from_slice(&one_line(text));
                message.extend_from_slice(b"\r\n");
            }
            if place == "body-last-line" {
                message.extend_from_slice(line.as_bytes());
            }
        }
    }
    (message, format!("{before}{marking}{after}"), place)
}

/// Bytes without line ends or NULs (a header value, a line of text).
fn one_line(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n' | 0))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 3. The milter session.

/// A milter served on loopback (the same `serve()` the daemon runs) with a file store
/// holding a few users, on a current-thread runtime: each input is one or more milter
/// sessions driven through indymilter-test.
pub struct MilterRig {
    runtime: tokio::runtime::Runtime,
    /// The milter on the directory, and one on the directory behind [`FaultyStore`]: there,
    /// lookups fail when the input says so, and what the milter answers next is checked.
    milters: [SocketAddr; 2],
    fault: Arc<std::sync::atomic::AtomicBool>,
    socketmap: SocketAddr,
    /// Replies seen, by kind: whether the sessions get anywhere (accept, reject, tempfail).
    pub counts: std::cell::RefCell<std::collections::BTreeMap<String, u64>>,
    _dir: tempfile::TempDir,
}

/// The milter's config: loopback clients are secure-network peers (so that mail is accepted
/// at all, and an accept can be checked), the rest is the default.
const MILTER_CONFIG: &str = "[routing]\nsecure_networks = [\"127.0.0.0/8\"]\n";

impl MilterRig {
    pub fn new() -> MilterRig {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store_dir = dir.path().join("store");
        let fault = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (milters, socketmap) = runtime.block_on(async {
            let store = Arc::new(SqliteStore::open(&store_dir).unwrap());
            for org in directory_orgs() {
                store.put_org(org).await.unwrap();
            }
            store.put_users(directory_users()).await.unwrap();
            let mut milters = Vec::new();
            let mut shared_default = None;
            let faulty: Arc<dyn DirectoryRead> = Arc::new(FaultyStore {
                inner: store.clone(),
                fail: fault.clone(),
            });
            for read in [store.clone() as Arc<dyn DirectoryRead>, faulty] {
                let text = format!(
                    "{MILTER_CONFIG}\n[store]\nbackend = \"file\"\npath = \"{}\"\n",
                    store_dir.display()
                );
                let compiled = compile(Config::parse(&text).unwrap()).unwrap();
                let shared = Shared::new(Engine::new(compiled, read));
                let (listener, local) = listen::bind(
                    &ListenAddr::Inet("127.0.0.1:0".parse().unwrap()),
                    None,
                    None,
                )
                .await
                .unwrap();
                let ListenAddr::Inet(addr) = local else {
                    unreachable!("an inet listener")
                };
                tokio::spawn(cjsm_milter::milter::serve(
                    listener,
                    shared.clone(),
                    std::future::pending::<()>(),
                ));
                milters.push(addr);
                shared_default.get_or_insert(shared);
            }
            let socketmap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let socketmap_addr = socketmap.local_addr().unwrap();
            tokio::spawn(cjsm_milter::routing::serve(
                socketmap,
                shared_default.unwrap(),
                16,
            ));
            ([milters[0], milters[1]], socketmap_addr)
        });
        MilterRig {
            runtime,
            milters,
            fault,
            socketmap,
            counts: Default::default(),
            _dir: dir,
        }
    }

    /// Target 3: a sequence of milter stages with fuzzed arguments and macros, in any order
    /// an MTA may send them (see [`Protocol`]). Every command gets its reply in time (no
    /// hang), and after the milter answered a tempfail for an error ("temporarily
    /// unavailable") in a transaction, it never accepts that transaction.
    pub fn session(&self, data: &[u8]) -> u64 {
        self.runtime.block_on(async {
            let mut choices = Choices::new(data);
            let faulty = choices.byte().is_multiple_of(4);
            let addr = self.milters[usize::from(faulty)];
            let mut replies = Vec::new();
            let mut conn: Option<(TestConnection, Protocol)> = None;
            // An error tempfail seen in the current transaction.
            let mut failed = false;
            for _ in 0..64 {
                if choices.is_empty() {
                    break;
                }
                if conn.is_none() {
                    let c = TestConnection::configure()
                        .read_timeout(Duration::from_secs(2))
                        .write_timeout(Duration::from_secs(2))
                        .open_tcp(addr)
                        .await
                        .expect("the milter negotiates");
                    let protocol = Protocol::new(c.negotiated_opts());
                    conn = Some((c, protocol));
                    failed = false;
                }
                let (c, protocol) = conn.as_mut().unwrap();
                // Any command the MTA may send now (out of order ones included: indymilter
                // leaves the transaction and starts again from HELO), or a macro, or close.
                let ops: Vec<u8> = (0..14)
                    .filter(|&op| stage_of(op).is_none_or(|stage| protocol.takes(stage)))
                    .collect();
                let op = *choices.pick(&ops);
                let stage = stage_of(op);
                self.fault.store(
                    faulty && choices.byte().is_multiple_of(4),
                    std::sync::atomic::Ordering::SeqCst,
                );
                if let Some(stage) = stage {
                    if !protocol.goes_to(stage) {
                        // indymilter, like libmilter, ignores a command out of protocol order
                        // without a reply; no MTA sends one.
                        replies.push(format!("{op}:out-of-order"));
                        continue;
                    }
                    if matches!(stage, Stage::Mail | Stage::Abort) || protocol.left_transaction {
                        failed = false;
                    }
                }
                let result = match op {
                    0 => {
                        let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
                        let host = choices.text(HOST_PIECES, 3);
                        c.connect(host, client).await
                    }
                    1 => c.helo(choices.text(HOST_PIECES, 3)).await,
                    2 => {
                        let stage = *choices.pick(&[
                            MacroStage::Connect,
                            MacroStage::Helo,
                            MacroStage::Mail,
                            MacroStage::Rcpt,
                            MacroStage::Data,
                            MacroStage::Eoh,
                            MacroStage::Eom,
                        ]);
                        let mut macros = Vec::new();
                        for _ in 0..choices.below(4) {
                            let name = *choices.pick(MACROS);
                            macros.push((name, c_text(&choices.text(MACRO_PIECES, 4))));
                        }
                        c.macros(stage, macros).await.map(|()| Status::Noreply)
                    }
                    3 | 4 => c.mail([address(&mut choices)]).await,
                    5 | 6 => c.rcpt([address(&mut choices)]).await,
                    7 => c.data().await,
                    8 | 9 => {
                        let name = c_text(choices.word(HEADER_NAMES));
                        let value = c_text(&choices.text(HEADER_PIECES, 6));
                        c.header(name, value).await
                    }
                    10 => c.eoh().await,
                    11 => {
                        // Never empty: an MTA sends no empty chunk, and indymilter closes the
                        // connection on one.
                        let chunk = choices.text(BODY_PIECES, 12) + "\r\n";
                        c.body(chunk.into_bytes()).await
                    }
                    12 => c.eom().await.map(|(_, status)| status),
                    _ => {
                        if choices.byte().is_multiple_of(2) {
                            c.abort().await.map(|()| Status::Noreply)
                        } else {
                            let (c, _) = conn.take().unwrap();
                            let _ = c.close().await;
                            replies.push("close".to_string());
                            continue;
                        }
                    }
                };
                match result {
                    Ok(status) => {
                        if status == Status::Accept {
                            assert!(
                                !failed,
                                "accepted after an error tempfail in the same transaction: \
                                 {replies:?}"
                            );
                        }
                        if let Status::Tempfail { message: Some(m) } = &status
                            && m.to_string_lossy().contains("temporarily unavailable")
                            && stage != Some(Stage::Rcpt)
                        {
                            // (At RCPT an error refuses that recipient only.)
                            failed = true;
                        }
                        if let Some(stage) = stage {
                            protocol.answered(stage, &status);
                        }
                        if stage == Some(Stage::Eom) {
                            failed = false;
                        }
                        let name = format!("{op}:{}", status_name(&status));
                        *self.counts.borrow_mut().entry(name.clone()).or_default() += 1;
                        replies.push(name);
                    }
                    Err(indymilter_test::TestError::MilterUsage) => {
                        // Not allowed by what was negotiated: an MTA would not send it.
                        replies.push(format!("{op}:usage"));
                    }
                    Err(indymilter_test::TestError::Io(e))
                        if e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        panic!("no reply within 2 s to command {op}: {replies:?}")
                    }
                    Err(e) => panic!("command {op} failed: {e}: {replies:?}"),
                }
            }
            if let Some((c, _)) = conn {
                let _ = c.close().await;
            }
            // The kinds of reply seen, not their order: a coarse outcome.
            replies.sort();
            replies.dedup();
            signature(&replies)
        })
    }

    /// Target 4: bytes to the socketmap server, cut into chunks. Each complete request gets
    /// exactly one reply, a netstring saying OK, NOTFOUND, TEMP or PERM; a malformed one
    /// gets one PERM reply and the connection is closed; nothing hangs.
    pub fn socketmap(&self, data: &[u8]) -> u64 {
        let mut choices = Choices::new(data);
        let chunk = 1 + choices.below(64);
        let stream_bytes = sendable(choices.rest(), MAX_SOCKETMAP_REQUEST);
        // What the server should answer, from the reader on its own.
        let (requests, malformed) = netstrings(stream_bytes, MAX_SOCKETMAP_REQUEST);
        let expected = requests + usize::from(malformed);
        let replies = self.runtime.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(self.socketmap)
                .await
                .unwrap();
            let (mut reader, mut writer) = stream.split();
            let write = async {
                for piece in stream_bytes.chunks(chunk) {
                    if writer.write_all(piece).await.is_err() {
                        break;
                    }
                }
                let _ = writer.shutdown().await;
            };
            let read = async {
                let mut replies = Vec::new();
                let _ = reader.read_to_end(&mut replies).await;
                replies
            };
            let work = async { futures_join(write, read).await.1 };
            tokio::time::timeout(Duration::from_secs(2), work)
                .await
                .expect("the socketmap server answered and closed within 2 s")
        });
        let mut answers = Vec::new();
        let mut rest = &replies[..];
        while !rest.is_empty() {
            let (answer, used) = cjsm_milter::routing::parse_netstring(rest, 1 << 20)
                .expect("replies are netstrings")
                .expect("replies are whole netstrings");
            let answer = std::str::from_utf8(answer).expect("replies are UTF-8");
            let kind = answer.split(' ').next().unwrap_or("");
            assert!(
                ["OK", "NOTFOUND", "TEMP", "PERM"].contains(&kind),
                "reply {answer:?}"
            );
            assert!(answer.len() <= 10_000, "a reply of {} bytes", answer.len());
            answers.push(kind.to_string());
            rest = &rest[used..];
        }
        assert_eq!(
            answers.len(),
            expected,
            "{requests} requests (malformed after them: {malformed}), replies {answers:?}"
        );
        if malformed {
            assert_eq!(answers.last().map(String::as_str), Some("PERM"));
        }
        signature((answers, malformed))
    }
}

impl Default for MilterRig {
    fn default() -> Self {
        MilterRig::new()
    }
}

/// The socketmap server's bound on one request.
const MAX_SOCKETMAP_REQUEST: usize = cjsm_milter::routing::MAX_REQUEST;

/// The complete netstrings at the start of `bytes` and whether a malformed one follows, read
/// as the server reads them.
fn netstrings(bytes: &[u8], max: usize) -> (usize, bool) {
    let mut count = 0;
    let mut rest = bytes;
    loop {
        match cjsm_milter::routing::parse_netstring(rest, max) {
            Ok(Some((_, used))) => {
                count += 1;
                rest = &rest[used..];
            }
            Ok(None) => return (count, false),
            Err(_) => return (count, true),
        }
    }
}

/// The bytes up to the first malformed netstring's first byte that shows it malformed: the
/// server answers PERM and closes there, and bytes sent past that point would make the
/// kernel reset the connection, discarding replies not yet read (that is TCP, not the
/// server).
fn sendable(bytes: &[u8], max: usize) -> &[u8] {
    let mut start = 0;
    loop {
        let rest = &bytes[start..];
        match cjsm_milter::routing::parse_netstring(rest, max) {
            Ok(Some((_, used))) => start += used,
            Ok(None) => return bytes,
            Err(_) => {
                let bad = (1..=rest.len())
                    .find(|&n| cjsm_milter::routing::parse_netstring(&rest[..n], max).is_err())
                    .unwrap_or(rest.len());
                return &bytes[..start + bad];
            }
        }
    }
}

/// Runs two futures to completion on one task.
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

/// The stages of the milter protocol, in order (indymilter's session states, without those
/// the harness does not send).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Opts,
    Conn,
    Helo,
    Mail,
    Rcpt,
    Data,
    Header,
    Eoh,
    Body,
    Eom,
    Quit,
    Abort,
}

/// Which commands an MTA may send next: indymilter's state machine (as libmilter's), with
/// the stages the milter negotiated away skipped.
struct Protocol {
    state: Stage,
    opts: indymilter_test::ProtoOpts,
    /// The last command started a new transaction (the previous one was left).
    left_transaction: bool,
}

impl Protocol {
    const ORDER: [Stage; 12] = [
        Stage::Opts,
        Stage::Conn,
        Stage::Helo,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
        Stage::Header,
        Stage::Eoh,
        Stage::Body,
        Stage::Eom,
        Stage::Quit,
        Stage::Abort,
    ];

    fn new(opts: indymilter_test::ProtoOpts) -> Protocol {
        Protocol {
            state: Stage::Opts,
            opts,
            left_transaction: false,
        }
    }

    fn skippable(&self, stage: Stage) -> bool {
        use indymilter_test::ProtoOpts as P;
        let opt = match stage {
            Stage::Conn => P::NO_CONNECT,
            Stage::Helo => P::NO_HELO,
            Stage::Mail => P::NO_MAIL,
            Stage::Rcpt => P::NO_RCPT,
            Stage::Data => P::NO_DATA,
            Stage::Header => P::NO_HEADER,
            Stage::Eoh => P::NO_EOH,
            Stage::Body => P::NO_BODY,
            _ => return false,
        };
        self.opts.contains(opt)
    }

    fn next(from: Stage, to: Stage) -> bool {
        use Stage::*;
        match from {
            Opts => matches!(to, Conn),
            Conn | Helo => matches!(to, Helo | Mail),
            Mail => matches!(to, Rcpt | Abort),
            Rcpt => matches!(to, Header | Eoh | Data | Body | Eom | Rcpt | Abort),
            Data | Header => matches!(to, Eoh | Header | Abort),
            Eoh | Body => matches!(to, Body | Eom | Abort),
            Eom => matches!(to, Quit | Mail),
            Quit | Abort => false,
        }
    }

    /// Whether the milter takes `stage` now, from where it is or after leaving the
    /// transaction.
    fn takes(&self, stage: Stage) -> bool {
        self.reaches(self.state, stage) || self.reaches(Stage::Helo, stage)
    }

    fn reaches(&self, from: Stage, to: Stage) -> bool {
        Self::next(from, to)
            || Self::ORDER
                .iter()
                .skip_while(|&&s| s != from)
                .skip(1)
                .take_while(|&&s| self.skippable(s))
                .any(|&s| Self::next(s, to))
    }

    /// Whether the milter takes `stage` now (if so, it is now in it). Out of order, the
    /// transaction is left and the command tried again from HELO, as indymilter does.
    fn goes_to(&mut self, stage: Stage) -> bool {
        self.left_transaction = false;
        if !self.reaches(self.state, stage) {
            if !self.reaches(Stage::Helo, stage) {
                return false;
            }
            self.left_transaction = true;
        }
        self.state = stage;
        true
    }

    /// A reply that ends the stage's processing sends the milter back to HELO.
    fn answered(&mut self, stage: Stage, status: &Status) {
        let ends = matches!(status, Status::Accept)
            || (matches!(
                status,
                Status::Reject { .. } | Status::Discard | Status::Tempfail { .. }
            ) && stage != Stage::Rcpt);
        if ends {
            self.state = Stage::Helo;
        }
    }
}

/// The stage a command of the session target goes to (none for macros and close).
fn stage_of(op: u8) -> Option<Stage> {
    match op {
        0 => Some(Stage::Conn),
        1 => Some(Stage::Helo),
        3 | 4 => Some(Stage::Mail),
        5 | 6 => Some(Stage::Rcpt),
        7 => Some(Stage::Data),
        8 | 9 => Some(Stage::Header),
        10 => Some(Stage::Eoh),
        11 => Some(Stage::Body),
        12 => Some(Stage::Eom),
        13 => Some(Stage::Abort),
        _ => None,
    }
}

/// An envelope address: mostly one of the directory's or the secure networks', as sent;
/// sometimes fuzzed text.
fn address(choices: &mut Choices) -> std::ffi::CString {
    const WHOLE: &[&str] = &[
        "<dc.jones@met.pnn.police.uk>",
        "<carol@smithchambers.cjsm.net>",
        "<dan@smithchambers.cjsm.net>",
        "<clerk@cps.gsi.gov.uk>",
        "<someone@gmail.com>",
        "<>",
        "dc.jones@met.pnn.police.uk",
    ];
    if choices.byte().is_multiple_of(4) {
        c_text(&choices.text(ADDRESS_PIECES, 4))
    } else {
        c_text(choices.word(WHOLE))
    }
}

/// The directory with faults injected: while `fail` is set, every read fails as an
/// unreachable store's would. (The store is what the milter depends on, not what is tested.)
struct FaultyStore {
    inner: Arc<SqliteStore>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultyStore {
    fn fault<'a, T: Send + 'a>(&'a self, read: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            Box::pin(async { Err(StoreError::Unavailable("injected fault".into())) })
        } else {
            read
        }
    }
}

impl DirectoryRead for FaultyStore {
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup> {
        self.fault(self.inner.lookup(address))
    }
    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        self.fault(self.inner.user(address))
    }
    fn users(&self) -> StoreFuture<'_, Vec<User>> {
        self.fault(self.inner.users())
    }
    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        self.fault(self.inner.org(id))
    }
    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
        self.fault(self.inner.orgs())
    }
    fn org_by_domain<'a>(&'a self, domain: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        self.fault(self.inner.org_by_domain(domain))
    }
    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>> {
        self.fault(self.inner.certificates())
    }
    fn size(&self) -> StoreFuture<'_, (usize, usize)> {
        self.fault(self.inner.size())
    }
    fn written(&self) -> StoreFuture<'_, bool> {
        self.fault(self.inner.written())
    }
}

fn status_name(status: &Status) -> &'static str {
    match status {
        Status::Accept => "accept",
        Status::Continue => "continue",
        Status::Discard => "discard",
        Status::Skip => "skip",
        Status::Reject { .. } => "reject",
        Status::Tempfail { .. } => "tempfail",
        Status::Noreply => "noreply",
    }
}

/// A C string for the milter protocol: NULs cannot cross it.
fn c_text(text: &str) -> std::ffi::CString {
    std::ffi::CString::new(text.replace('\0', "")).unwrap()
}

const HOST_PIECES: &[&str] = &["client", ".", "example", "[127.0.0.1]", "-", " ", "\u{e9}"];
const MACROS: &[&str] = &[
    "i",
    "{tls_version}",
    "{cipher}",
    "{cert_subject}",
    "{cert_issuer}",
    "{verify}",
    "{auth_authen}",
    "{cn_subject}",
    "{cn_issuer}",
    "{mail_addr}",
    "{rcpt_addr}",
    "{client_addr}",
    "{daemon_name}",
    "j",
];
const MACRO_PIECES: &[&str] = &[
    "TLSv1.3",
    "TLSv1.2",
    "OK",
    "FAIL",
    "NONE",
    "127.0.0.1",
    "::1",
    "4XQ1AB2C3D",
    "dc.jones@met.pnn.police.uk",
    "carol@smithchambers.cjsm.net",
    "/CN=x",
    "\n",
    "%",
    "\u{202e}",
];
const ADDRESS_PIECES: &[&str] = &[
    "<",
    ">",
    "@",
    "dc.jones@met.pnn.police.uk",
    "carol@smithchambers.cjsm.net",
    "clerk@cps.gsi.gov.uk",
    "someone@gmail.com",
    "smithchambers.cjsm.net",
    "\"",
    "\\",
    " ",
    ":",
    "@relay:",
    "SIZE=100",
    "=?UTF-8?B?",
    "\r\n",
    "%",
];
const HEADER_NAMES: &[&str] = &[
    "Subject",
    "From",
    "To",
    "Cc",
    "Sender",
    "Content-Type",
    "Content-Transfer-Encoding",
    "X-Protective-Marking",
    "X-CJSM-Marking",
    "X-CJSM-Route",
    "msip_labels",
    "SIO-Label",
    "MIME-Version",
    "Received",
    "x",
];
const HEADER_PIECES: &[&str] = &[
    "OFFICIAL",
    "OFFICIAL-SENSITIVE",
    "SECRET",
    "TOP SECRET",
    "[SEC=PROTECTED]",
    ": ",
    " ",
    "multipart/mixed; boundary=b",
    "text/html",
    "base64",
    "quoted-printable",
    "=?UTF-8?B?T0ZGSUNJQUw=?=",
    "dc.jones@met.pnn.police.uk",
    "\r\n\t",
    "MSIP_Label_x_Name=OFFICIAL;",
    "[CJSM]",
];
const BODY_PIECES: &[&str] = &[
    "OFFICIAL-SENSITIVE\r\n",
    "SECRET\r\n",
    "Dear Carol,\r\n",
    "\r\n",
    "--b\r\n",
    "--b--\r\n",
    "Content-Type: text/plain\r\n\r\n",
    "Content-Type: message/rfc822\r\n\r\n",
    "<p>",
    "T0ZGSUNJQUw=",
    "=\r\n",
    "-- \r\n",
    "\u{ad}",
];

// ---------------------------------------------------------------------------------------------
// 5. The CSV user import.

/// Target 5: any bytes as a bulk-load file. What comes back is what the directory accepts
/// (every field passes the directory's rules), in order, within the row bound; `parse`
/// and `parse_rows` agree; the error report is bounded.
pub fn csv_import(data: &[u8]) -> u64 {
    let outcome = csv::parse_rows(data);
    let whole = csv::parse(data);
    match &outcome {
        Ok((rows, errors)) => {
            assert!(rows.len() <= MAX_IMPORT_ROWS);
            assert_eq!(
                whole.is_ok(),
                errors.is_empty(),
                "parse and parse_rows agree"
            );
            let mut last_line = 0;
            for row in rows {
                assert!(row.line > last_line, "rows in file order: {rows:?}");
                last_line = row.line;
                check_accepted(row);
            }
            for error in errors {
                // An error quotes at most a short part of what it is about.
                assert!(
                    error.reason.len() <= 1_000,
                    "an error of {} bytes",
                    error.reason.len()
                );
                let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
                assert!(
                    error.line >= 1 && error.line <= lines,
                    "error on line {} of {lines}",
                    error.line
                );
            }
            // The directory checks never panic either.
            let orgs = directory_orgs();
            let _ = csv::check_against(rows, &orgs, "cjsm.net");
            signature((
                rows.len().min(3),
                errors.len().min(3),
                errors.first().map(|e| &e.field),
            ))
        }
        Err(e) => {
            assert!(whole.is_err());
            let text = e.to_string();
            assert!(text.len() <= 2_000, "an error of {} bytes", text.len());
            signature(text.split(':').next().unwrap_or("").to_string())
        }
    }
}

/// A row the import returns is one the directory accepts.
fn check_accepted(row: &ImportRow) {
    assert_eq!(
        row.address,
        row.address.trim().to_ascii_lowercase(),
        "{row:?}"
    );
    assert_eq!(check_address(&row.address), Ok(()), "{row:?}");
    for (i, field) in [
        &row.first_name,
        &row.last_name,
        &row.organisation,
        &row.town,
        &row.business_type,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(check_text(field, MAX_FIELD_CHARS), None, "{row:?}");
        assert_eq!(field.trim(), field.as_str(), "{row:?}");
        if i < 3 {
            assert!(!field.is_empty(), "{row:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. The config loader.

/// Target 6: any text as a config file: parsed and, when it parses, compiled into rules,
/// without a panic; an error names what is wrong in a bounded message.
pub fn config(data: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(data) else {
        // `Config::load` refuses a file that is not UTF-8 before parsing it.
        return signature("not utf-8");
    };
    match Config::parse(text) {
        Ok(config) => match compile(config) {
            Ok(_) => signature("ok"),
            Err(e) => signature(("compile", error_kind(&e.to_string()))),
        },
        Err(e) => signature(("parse", error_kind(&e.to_string()))),
    }
}

fn error_kind(text: &str) -> String {
    text.chars().take_while(|c| *c != ':').take(40).collect()
}

// ---------------------------------------------------------------------------------------------
// 7. CSV and LDIF export, read back.

/// Target 7: a directory built from the input (only values the directory accepts, as
/// `user add` and `org apply` store them: trimmed, checked), exported as CSV and LDIF. The
/// CSV imports back to exactly the exported users; the LDIF reads back (RFC 2849, with the
/// DN unescaped as RFC 4514 says) to exactly their values.
pub fn export_round_trip(data: &[u8]) -> u64 {
    let mut choices = Choices::new(data);
    let mut orgs = Vec::new();
    for i in 0..1 + choices.below(3) {
        let id = accepted_text(&mut choices, ID_PIECES).unwrap_or_else(|| format!("org{i}"));
        if orgs.iter().any(|o: &Organisation| o.id == id) {
            continue;
        }
        let name = accepted_text(&mut choices, NAME_PIECES).unwrap_or_else(|| format!("Org {i}"));
        orgs.push(Organisation {
            id,
            name,
            domains: vec![format!("org{i}.cjsm.net")],
            connection: ConnectionType::Mailbox,
            state: if choices.byte().is_multiple_of(8) {
                OrgState::Suspended
            } else {
                OrgState::Active
            },
            terms_signed: Some(1),
            admins: vec![],
            client_certificate: None,
            mail_server: None,
            approved: Some(1),
            revision: 0,
            created: 0,
            updated: 0,
        });
    }
    let mut users: Vec<User> = Vec::new();
    for _ in 0..choices.below(8) {
        let org = choices.pick(&orgs).id.clone();
        let local = choices.text(LOCAL_PIECES, 4).trim().to_ascii_lowercase();
        let address = format!("{local}@{}", choices.pick(DOMAINS));
        if check_address(&address).is_err() || users.iter().any(|u| u.address == address) {
            continue;
        }
        let mut field = |required: bool| match accepted_text(&mut choices, NAME_PIECES) {
            Some(text) => text,
            None if required => "Name".to_string(),
            None => String::new(),
        };
        let first_name = field(true);
        let last_name = field(true);
        let town = field(false);
        let business_type = field(false);
        users.push(User {
            address,
            org,
            first_name,
            last_name,
            town,
            business_type,
            state: if choices.byte().is_multiple_of(8) {
                UserState::Suspended
            } else {
                UserState::Active
            },
            created: 0,
            updated: 0,
            smime_certificate: None,
            revision: 0,
        });
    }
    let mut listed: Vec<&User> = users
        .iter()
        .filter(|u| u.state == UserState::Active)
        .filter(|u| {
            orgs.iter()
                .any(|o| o.id == u.org && o.state == OrgState::Active)
        })
        .collect();
    listed.sort_by(|a, b| a.address.cmp(&b.address));

    // CSV: imported back, row for row.
    let exported = to_csv(&users, &orgs);
    let rows = csv::parse(exported.as_bytes())
        .unwrap_or_else(|e| panic!("the export does not import: {e}\n{exported}"));
    let back: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.address.as_str(),
                &r.first_name,
                &r.last_name,
                &r.organisation,
                &r.town,
                &r.business_type,
            ]
        })
        .collect();
    let sent: Vec<[&str; 6]> = listed
        .iter()
        .map(|u| {
            [
                u.address.as_str(),
                &u.first_name,
                &u.last_name,
                &u.org,
                &u.town,
                &u.business_type,
            ]
        })
        .collect();
    assert_eq!(back, sent, "CSV export then import\n{exported}");
    let errors = csv::check_against(&rows, &orgs, "cjsm.net");
    assert!(
        errors.iter().all(|e| e.field != "organisation"),
        "the exported organisation column names the organisation: {errors:?}"
    );

    // LDIF: read back, entry for entry.
    let base = "ou=people,dc=cjsm,dc=net";
    let ldif = to_ldif(&users, &orgs, base);
    for line in ldif.lines() {
        assert!(
            line.len() <= 76,
            "LDIF line of {} bytes: {line:?}",
            line.len()
        );
    }
    let entries = read_ldif(&ldif);
    assert_eq!(entries.len(), listed.len(), "{ldif}");
    for (entry, user) in entries.iter().zip(&listed) {
        let get = |name: &str| -> Vec<&str> {
            entry
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let dn = get("dn");
        assert_eq!(
            dn,
            [format!("mail={},{base}", escape_dn_value(&user.address)).as_str()]
        );
        let rdn = dn[0]
            .strip_prefix("mail=")
            .and_then(|rest| rest.strip_suffix(&format!(",{base}")))
            .unwrap();
        assert_eq!(unescape_dn_value(rdn), user.address, "{ldif}");
        assert_eq!(get("mail"), [user.address.as_str()], "{ldif}");
        assert_eq!(get("givenName"), [user.first_name.as_str()], "{ldif}");
        assert_eq!(get("sn"), [user.last_name.as_str()], "{ldif}");
        assert_eq!(
            get("cn"),
            [format!("{} {}", user.first_name, user.last_name).as_str()],
            "{ldif}"
        );
        let org = orgs.iter().find(|o| o.id == user.org).unwrap();
        assert_eq!(get("o"), [org.name.as_str()], "{ldif}");
        let optional = |value: &str| -> Vec<String> {
            if value.is_empty() {
                vec![]
            } else {
                vec![value.to_string()]
            }
        };
        assert_eq!(get("l"), optional(&user.town), "{ldif}");
        assert_eq!(
            get("businessCategory"),
            optional(&user.business_type),
            "{ldif}"
        );
    }
    signature((listed.len(), exported.contains('\''), ldif.contains("::")))
}

/// A field as the directory stores it (trimmed, checked), or `None` if it refuses it.
fn accepted_text(choices: &mut Choices, pieces: &[&str]) -> Option<String> {
    let text = choices.text(pieces, 6);
    let text = text.trim();
    (!text.is_empty() && check_text(text, MAX_FIELD_CHARS).is_none()).then(|| text.to_string())
}

const ID_PIECES: &[&str] = &["firm", "-", "=", "+", "@", "'", "1", "_", " ", "x"];
const NAME_PIECES: &[&str] = &[
    "=",
    "+",
    "-",
    "@",
    "'",
    "\"",
    ",",
    " ",
    ";",
    ":",
    "<",
    "#",
    "\\",
    "\t",
    "=cmd|' /C calc'!A0",
    "O'Brien",
    "Zo\u{eb}",
    "\u{a0}",
    "\u{3000}",
    "\u{202e}",
    "\u{feff}",
    "\u{1f600}",
    "Smith & Co",
    "dn: x",
    "Ann",
];
const LOCAL_PIECES: &[&str] = &[
    "ann", ".", "-", "+", "=", "@", "'", "_", "#", "!", "~", "{", "}", "/", "?", "%", "&", "*",
    "x1",
];
const DOMAINS: &[&str] = &["org0.cjsm.net", "org1.cjsm.net", "org2.cjsm.net"];

/// A minimal RFC 2849 reader: entries separated by blank lines, continuation lines (a leading
/// space) unfolded, `name: value` and `name:: base64`. Panics on anything else: the export
/// must write only that.
pub fn read_ldif(text: &str) -> Vec<Vec<(String, String)>> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.split('\n') {
        if let Some(rest) = line.strip_prefix(' ') {
            lines
                .last_mut()
                .expect("a continuation continues a line")
                .push_str(rest);
        } else {
            lines.push(line.to_string());
        }
    }
    let mut entries = Vec::new();
    let mut entry: Vec<(String, String)> = Vec::new();
    for line in lines.iter().skip_while(|l| l.starts_with("version:")) {
        if line.is_empty() {
            if !entry.is_empty() {
                entries.push(std::mem::take(&mut entry));
            }
            continue;
        }
        let (name, value) = line.split_once(':').expect("name: value");
        let value = match value.strip_prefix(':') {
            Some(encoded) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim_start_matches(' '))
                    .expect("base64 value");
                String::from_utf8(bytes).expect("UTF-8 value")
            }
            None => value.strip_prefix(' ').unwrap_or(value).to_string(),
        };
        entry.push((name.to_string(), value));
    }
    if !entry.is_empty() {
        entries.push(entry);
    }
    entries
}

/// RFC 4514's unescaping of an attribute value: `\c` for a special character, `\XX` hex.
fn unescape_dn_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(bytes[i + 1]);
                    i += 2;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8 DN value")
}

/// The organisations of the rigs' directory.
pub fn directory_orgs() -> Vec<Organisation> {
    let org = |id: &str, domains: &[&str], connection| Organisation {
        id: id.into(),
        name: format!("{id} LLP"),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        connection,
        state: OrgState::Active,
        terms_signed: Some(1),
        admins: vec![],
        client_certificate: None,
        mail_server: None,
        approved: Some(1),
        revision: 0,
        created: 0,
        updated: 0,
    };
    vec![
        org(
            "smithchambers",
            &["smithchambers.cjsm.net"],
            ConnectionType::Mailbox,
        ),
        Organisation {
            mail_server: Some("[mx.firm.co.uk]:25".into()),
            ..org("firm", &["firm.co.uk"], ConnectionType::Server)
        },
    ]
}

fn directory_users() -> Vec<User> {
    ["carol@smithchambers.cjsm.net", "dan@smithchambers.cjsm.net"]
        .into_iter()
        .map(|address| User {
            address: address.into(),
            org: "smithchambers".into(),
            first_name: "Test".into(),
            last_name: "User".into(),
            town: String::new(),
            business_type: String::new(),
            state: UserState::Active,
            created: 0,
            updated: 0,
            smime_certificate: None,
            revision: 0,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 8. The certificate importer.

/// Target 8: any bytes as a certificate file (PEM or DER). What it accepts it reads the same
/// way again from the PEM it keeps (same fingerprint, addresses and dates), and the import
/// checks never panic.
pub fn certificate(data: &[u8]) -> u64 {
    use cjsm_milter::smime::cert;
    match cert::parse(data) {
        Ok(parsed) => {
            assert_eq!(parsed.fingerprint.len(), 64);
            let again = cert::parse(parsed.pem.as_bytes()).expect("the kept PEM reads back");
            assert_eq!(again.fingerprint, parsed.fingerprint);
            assert_eq!(again.emails, parsed.emails);
            assert_eq!(
                (again.not_before, again.not_after),
                (parsed.not_before, parsed.not_after)
            );
            let address = parsed
                .emails
                .first()
                .cloned()
                .unwrap_or_else(|| "carol@smithchambers.cjsm.net".into());
            let now = cjsm_milter::clock::now_unix();
            let checked = cert::check_for(&parsed, &address, now);
            let usable = parsed.unusable_for_encryption.is_none();
            let record = cert::record(parsed, &address, now);
            assert_eq!(record.fingerprint, again.fingerprint);
            signature(("ok", checked.is_ok(), usable))
        }
        Err(e) => signature(("err", error_kind(&e.to_string()))),
    }
}

/// Certificates to start from, made here with OpenSSL: an S/MIME certificate (PEM and DER),
/// one with no address, one for signing only, an expired one.
pub fn certificate_seeds() -> Vec<Vec<u8>> {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let make = |email: Option<&str>, encipher: bool, days: (u32, u32)| {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "Carol Test").unwrap();
        if let Some(email) = email {
            name.append_entry_by_text("emailAddress", email).unwrap();
        }
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        let now = cjsm_milter::clock::now_unix() as i64;
        b.set_not_before(&Asn1Time::from_unix(now - i64::from(days.0) * 86_400).unwrap())
            .unwrap();
        b.set_not_after(
            &Asn1Time::from_unix(now + i64::from(days.1) * 86_400 - 86_400 * 400).unwrap(),
        )
        .unwrap();
        let mut usage = KeyUsage::new();
        usage.critical().digital_signature();
        if encipher {
            usage.key_encipherment();
        }
        b.append_extension(usage.build().unwrap()).unwrap();
        b.append_extension(ExtendedKeyUsage::new().email_protection().build().unwrap())
            .unwrap();
        if let Some(email) = email {
            let san = SubjectAlternativeName::new()
                .email(email)
                .build(&b.x509v3_context(None, None))
                .unwrap();
            b.append_extension(san).unwrap();
        }
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build()
    };
    let good = make(Some("carol@smithchambers.cjsm.net"), true, (1, 800));
    vec![
        good.to_pem().unwrap(),
        good.to_der().unwrap(),
        make(None, true, (1, 800)).to_der().unwrap(),
        make(Some("dan@smithchambers.cjsm.net"), false, (1, 800))
            .to_pem()
            .unwrap(),
        make(Some("eve@smithchambers.cjsm.net"), true, (800, 300))
            .to_der()
            .unwrap(),
    ]
}
