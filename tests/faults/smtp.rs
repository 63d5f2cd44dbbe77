//! The fault matrix's mail: SMTP clients in plain Rust that behave as a sending MTA does
//! (STARTTLS, one transaction per connection, a 4xx or a broken connection means "try again
//! later"), each message with its own Message-ID, and the sink's files read back.

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use socket2::{Domain, Socket, Type};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a message is, and so what the hub must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// OFFICIAL-SENSITIVE from the police, over TLS from the secure network, to a
    /// secure-network address and a hub user: must be accepted, marked and delivered.
    Pass,
    /// To an address of the hub nobody holds: must be refused (550 5.1.1 at RCPT).
    Unknown,
    /// Unmarked (so OFFICIAL-SENSITIVE) to an internet address: must be refused.
    Insecure,
}

impl Kind {
    /// Every tenth message is one that must be refused, of each sort in turn.
    pub fn of(index: usize) -> Kind {
        match index % 10 {
            3 => Kind::Unknown,
            7 => Kind::Insecure,
            _ => Kind::Pass,
        }
    }
}

pub const SENDER: &str = "dc.jones@met.pnn.police.uk";
pub const PASS_TO: [&str; 2] = ["clerk@met.pnn.police.uk", "alice@smithchambers.cjsm.net"];

/// One SMTP transaction's end.
#[derive(Debug)]
pub enum Outcome {
    Accepted,
    /// A 4xx, or the connection failed: an MTA keeps the message and tries again.
    Temp(String),
    /// A 5xx: final.
    Perm(String),
}

fn reply<R: BufRead>(reader: &mut R) -> std::io::Result<(u16, String)> {
    let mut text = String::new();
    // A reply has at most a few lines; a server that sends more is broken.
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        text.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            let code = line.get(..3).and_then(|c| c.parse().ok());
            return code
                .map(|code| (code, text.trim_end().to_string()))
                .ok_or_else(|| std::io::Error::other(format!("not an SMTP reply: {line:?}")));
        }
    }
    Err(std::io::Error::other("an SMTP reply of over 100 lines"))
}

fn command<S: Read + Write>(
    stream: &mut BufReader<S>,
    line: &str,
) -> std::io::Result<(u16, String)> {
    stream.get_mut().write_all(line.as_bytes())?;
    stream.get_mut().flush()?;
    reply(stream)
}

/// `Ok(())` for a reply with the wanted class (2 or 3), else the transaction's outcome.
fn want(reply: (u16, String), class: u16) -> Result<(), Outcome> {
    match reply.0 / 100 {
        c if c == class => Ok(()),
        4 => Err(Outcome::Temp(reply.1)),
        5 => Err(Outcome::Perm(reply.1)),
        _ => Err(Outcome::Temp(format!("unexpected reply {}", reply.1))),
    }
}

fn io(e: impl std::fmt::Display) -> Outcome {
    Outcome::Temp(format!("connection: {e}"))
}

/// A TCP connection to the hub from 127.0.0.2, the lab's secure network.
fn connect(port: u16) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())?;
    socket.connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)).into(),
        Duration::from_secs(5),
    )?;
    let stream: TcpStream = socket.into();
    // Above Postfix's milter timeouts (30 s a command, 60 s the content): a hung hop shows as
    // a temporary failure, never as a hung test.
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

/// One transaction: EHLO, STARTTLS, EHLO, MAIL, RCPT…, DATA.
pub fn transaction(tls: &SslConnector, port: u16, recipients: &[&str], message: &str) -> Outcome {
    let run = || -> Result<(), Outcome> {
        let mut plain = BufReader::new(connect(port).map_err(io)?);
        want(reply(&mut plain).map_err(io)?, 2)?;
        want(
            command(&mut plain, "EHLO client.faults.test\r\n").map_err(io)?,
            2,
        )?;
        want(command(&mut plain, "STARTTLS\r\n").map_err(io)?, 2)?;
        let tcp = plain.into_inner();
        let ssl = tls
            .configure()
            .map_err(io)?
            .verify_hostname(false)
            .use_server_name_indication(false)
            .connect("hub", tcp)
            .map_err(io)?;
        let mut s = BufReader::new(ssl);
        want(
            command(&mut s, "EHLO client.faults.test\r\n").map_err(io)?,
            2,
        )?;
        want(
            command(&mut s, &format!("MAIL FROM:<{SENDER}>\r\n")).map_err(io)?,
            2,
        )?;
        for rcpt in recipients {
            want(
                command(&mut s, &format!("RCPT TO:<{rcpt}>\r\n")).map_err(io)?,
                2,
            )?;
        }
        want(command(&mut s, "DATA\r\n").map_err(io)?, 3)?;
        // No line of ours begins with a dot: nothing to stuff.
        want(command(&mut s, &format!("{message}.\r\n")).map_err(io)?, 2)?;
        let _ = command(&mut s, "QUIT\r\n");
        Ok(())
    };
    match run() {
        Ok(()) => Outcome::Accepted,
        Err(outcome) => outcome,
    }
}

pub fn tls_connector() -> SslConnector {
    let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
    // The lab's CA is not the client's business here: the hub's TLS is tested elsewhere.
    builder.set_verify(SslVerifyMode::NONE);
    builder.build()
}

/// The message `id` of kind `kind`: its recipients and its text (CRLF lines).
pub fn message(id: &str, kind: Kind) -> (Vec<&'static str>, String) {
    let (to, subject): (Vec<&str>, String) = match kind {
        Kind::Pass => (
            PASS_TO.to_vec(),
            format!("OFFICIAL-SENSITIVE: custody record {id}"),
        ),
        Kind::Unknown => (
            vec!["nobody@smithchambers.cjsm.net"],
            format!("OFFICIAL-SENSITIVE: to nobody {id}"),
        ),
        Kind::Insecure => (vec!["someone@gmail.com"], format!("lunch {id}")),
    };
    let text = format!(
        "From: DC Jones <{SENDER}>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{id}@faults.test>\r\n\
         Date: Wed, 2 Dec 2026 04:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n\
         Fault matrix message {id}.\r\n",
        to.join(", ")
    );
    (to, text)
}

/// How one message ended.
#[derive(Debug)]
pub struct Record {
    pub id: String,
    pub kind: Kind,
    /// The final answer: accepted (when), refused (the reply), or given up (the last reply).
    pub accepted_at: Option<Instant>,
    pub refused: Option<String>,
    pub gave_up: Option<String>,
    pub attempts: u32,
    /// The longest single attempt: how long the hub kept the client waiting for an answer.
    pub longest: Duration,
}

/// Clients sending until told to stop; each message retried on 4xx as an MTA would.
pub struct Stream {
    stop: Arc<AtomicBool>,
    pub started: Arc<AtomicUsize>,
    pub records: Arc<Mutex<Vec<Record>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// How long one message is retried before the client gives up on it (a real MTA keeps it
/// for days; past this the row fails as "gave up").
pub const GIVE_UP: Duration = Duration::from_secs(60);

impl Stream {
    /// `clients` parallel clients sending messages `ROW-N`; each waits `pace` between its
    /// messages, and `retry` after a temporary failure.
    pub fn start(port: u16, row: &str, clients: usize, pace: Duration) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, started, records) = (stop.clone(), started.clone(), records.clone());
                let row = row.to_string();
                std::thread::spawn(move || {
                    let tls = tls_connector();
                    while !stop.load(Ordering::SeqCst) {
                        let index = started.fetch_add(1, Ordering::SeqCst);
                        let kind = Kind::of(index);
                        let id = format!("{row}-{index}");
                        let (to, text) = message(&id, kind);
                        let first = Instant::now();
                        let mut record = Record {
                            id,
                            kind,
                            accepted_at: None,
                            refused: None,
                            gave_up: None,
                            attempts: 0,
                            longest: Duration::ZERO,
                        };
                        loop {
                            record.attempts += 1;
                            let attempt = Instant::now();
                            let outcome = transaction(&tls, port, &to, &text);
                            record.longest = record.longest.max(attempt.elapsed());
                            match outcome {
                                Outcome::Accepted => {
                                    record.accepted_at = Some(Instant::now());
                                    break;
                                }
                                Outcome::Perm(reply) => {
                                    record.refused = Some(reply);
                                    break;
                                }
                                Outcome::Temp(reply) => {
                                    if first.elapsed() > GIVE_UP {
                                        record.gave_up = Some(reply);
                                        break;
                                    }
                                    // An MTA waits minutes; the matrix waits briefly to
                                    // measure the recovery to a fraction of a second.
                                    std::thread::sleep(Duration::from_millis(100));
                                }
                            }
                        }
                        records.lock().unwrap().push(record);
                        std::thread::sleep(pace);
                    }
                })
            })
            .collect();
        Stream {
            stop,
            started,
            records,
            threads,
        }
    }

    pub fn finished(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// Messages accepted at or after `at`.
    pub fn accepted_since(&self, at: Instant) -> usize {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .filter(|r| r.accepted_at.is_some_and(|t| t >= at))
            .count()
    }

    /// Asks the clients to stop after their current message; their records.
    pub fn stop(self) -> Vec<Record> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("an SMTP client panicked");
        }
        Arc::try_unwrap(self.records)
            .expect("the clients are done")
            .into_inner()
            .unwrap()
    }
}

/// One message file of the sink: its Message-ID (the local part), its recipients, and
/// whether it carries the milter's marking header.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub id: String,
    pub recipients: Vec<String>,
    pub marked: bool,
}

/// Every complete message file in the sink's directory (smtp-sink -d writes the envelope
/// as X-Rcpt-Args lines, then the message). `cache` keeps the files read whole before: a
/// long run leaves tens of thousands.
pub fn read_sink(dir: &Path, cache: &mut HashMap<std::path::PathBuf, Delivered>) -> Vec<Delivered> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if cache.contains_key(&path) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        // The body's line comes last: without it the file is still being written.
        if !text.contains("\nFault matrix message ") {
            continue;
        }
        let header = |name: &str| -> Vec<String> {
            text.lines()
                .take_while(|l| !l.is_empty())
                .filter_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
                .collect()
        };
        let Some(id) = header("Message-ID").first().and_then(|v| {
            v.trim_matches(['<', '>'])
                .split('@')
                .next()
                .map(String::from)
        }) else {
            continue;
        };
        let recipients = header("X-Rcpt-Args")
            .iter()
            .map(|v| {
                v.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("TO:")
                    .trim_matches(['<', '>'])
                    .to_ascii_lowercase()
            })
            .collect();
        let delivered = Delivered {
            id,
            recipients,
            marked: !header("X-CJSM-Marking").is_empty(),
        };
        cache.insert(path, delivered);
    }
    cache.values().cloned().collect()
}

/// Copies of each (Message-ID, recipient) at the sink.
pub fn copies(delivered: &[Delivered], row: &str) -> HashMap<(String, String), usize> {
    let prefix = format!("{row}-");
    let mut copies = HashMap::new();
    for d in delivered.iter().filter(|d| d.id.starts_with(&prefix)) {
        for rcpt in &d.recipients {
            *copies.entry((d.id.clone(), rcpt.clone())).or_insert(0) += 1;
        }
    }
    copies
}
