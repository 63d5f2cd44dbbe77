//! What the fault matrix breaks: redis-server processes it kills, pauses and restarts by
//! PID (with their append-only files, or without), a proxy that delays Redis's replies, a
//! small tmpfs to fill, and the socketmap asked with postmap during a fault.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A redis-server on a fixed loopback port, its data in an append-only file synced on every
/// write, in a directory that a restart may keep or replace.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    pub fn start(dir: &Path, extra: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port: 0,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // A free port may be taken before redis-server binds it: try a few.
        for _ in 0..5 {
            redis.port = super::common::free_port();
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start after 5 tries");
    }

    fn spawn(&mut self) -> bool {
        std::fs::create_dir_all(&self.dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--logfile", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)");
        match crate::common::redis::wait_until_serving(child, 500, || self.ping()) {
            Some(child) => {
                self.child = Some(child);
                true
            }
            None => false,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn ping(&self) -> bool {
        redis_query(self.port, &["PING"]).is_some_and(|r| r == "PONG")
    }

    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.as_ref().expect("running").id()).unwrap()
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the PID of a redis-server this test started and still holds.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// SIGKILL by PID, reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port, in `dir` (the old one: from its AOF; a new one: empty).
    pub fn restart_in(&mut self, dir: &Path) {
        self.dir = dir.to_path_buf();
        assert!(
            self.spawn(),
            "redis-server did not restart on {}",
            self.port
        );
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server does not die of SIGTERM; SIGKILL (child.kill) ends it anyway.
            // SAFETY: the PID of our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
        }
        self.kill();
    }
}

/// One command to a Redis or Sentinel port, its reply as text (a bulk string, a status, an
/// integer, or an array's items joined with spaces); `None` if it cannot be had in 500 ms.
pub fn redis_query(port: u16, args: &[&str]) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let value: redis::Value = cmd.query(&mut conn).ok()?;
    fn text(value: &redis::Value) -> String {
        match value {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            redis::Value::Okay => "OK".into(),
            redis::Value::Int(i) => i.to_string(),
            redis::Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
            redis::Value::Nil => String::new(),
            other => format!("{other:?}"),
        }
    }
    Some(text(&value))
}

/// A TCP proxy on loopback in front of Redis that, while `slow` is set, holds every chunk of
/// the server's replies for `delay` before passing it on.
pub struct SlowProxy {
    pub port: u16,
    pub slow: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowProxy {
    pub fn start(upstream: u16, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let slow = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (s, d) = (slow.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                pipe(server, client, Some((s.clone(), delay)));
            }
        });
        SlowProxy {
            port,
            slow,
            done,
            thread: Some(thread),
        }
    }
}

/// Copies `from` to `to` on a thread until either side closes (then both are shut down).
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Option<(Arc<AtomicBool>, Duration)>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some((slow, delay)) = &delay
                && slow.load(Ordering::SeqCst)
            {
                std::thread::sleep(*delay);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A small tmpfs mounted on `dir` (root only), unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("cjsm-faults")
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs {
                dir: dir.to_path_buf(),
            })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Fills the file system with `dir/filler` until a write fails (ENOSPC).
    pub fn fill(&self) {
        let mut file = std::fs::File::create(self.dir.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        // Bounded: a tmpfs of a few MiB is full long before this.
        for _ in 0..1_000_000 {
            if file
                .write_all(&chunk)
                .and_then(|()| file.sync_all())
                .is_err()
            {
                return;
            }
        }
        panic!("the tmpfs never filled");
    }

    pub fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// The socketmap asked with Postfix's `postmap -q` every 200 ms while a fault lasts: how many
/// answers were the right one, a temporary failure, or wrong (not found, or another answer).
#[derive(Clone, Copy, Debug, Default)]
pub struct Probe {
    pub right: usize,
    pub temp: usize,
    pub wrong: usize,
    /// The longest the socketmap took to answer a query on the wire (postmap's own time
    /// after a TEMP, a second or more of waiting and retrying, is not the milter's).
    pub slowest: Duration,
}

pub fn postmap(etc: &Path, key: &str, table: &str) -> (bool, String, String) {
    let out = Command::new("postmap")
        .arg("-c")
        .arg(etc)
        .args(["-q", key, table])
        .output()
        .expect("postmap (Debian package postfix)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How long the socketmap on `port` takes to answer `request` (one netstring each way); a
/// connection error or no answer within 30 s counts as 30 s.
fn wire_query(port: u16, request: &str) -> Duration {
    let started = Instant::now();
    let limit = Duration::from_secs(30);
    let answered = (|| -> std::io::Result<()> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(limit))?;
        write!(stream, "{}:{request},", request.len())?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        // A reply is a short netstring: it ends at its comma (bounded, should it not).
        while reply.len() < 100_000 {
            stream.read_exact(&mut byte)?;
            reply.push(byte[0]);
            if byte[0] == b',' && reply.contains(&b':') {
                return Ok(());
            }
        }
        Err(std::io::Error::other("no end of netstring"))
    })();
    match answered {
        Ok(()) => started.elapsed(),
        Err(_) => limit,
    }
}

pub struct Prober {
    done: Arc<AtomicBool>,
    counts: Arc<Mutex<Probe>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prober {
    /// Starts asking `key` in `table`; `expected` is the answer before the fault.
    pub fn start(etc: &Path, key: &str, table: &str, expected: &str) -> Prober {
        let done = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(Probe::default()));
        let (d, c) = (done.clone(), counts.clone());
        let key_for_wire = key.to_string();
        let (etc, key, table, expected) = (
            etc.to_path_buf(),
            key.to_string(),
            table.to_string(),
            expected.to_string(),
        );
        // socketmap:inet:127.0.0.1:PORT:MAP
        let mut parts = table.rsplitn(3, ':');
        let map = parts.next().unwrap().to_string();
        let port: u16 = parts.next().unwrap().parse().unwrap();
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                let started = Instant::now();
                let (ok, answer, stderr) = postmap(&etc, &key, &table);
                let mut counts = c.lock().unwrap();
                if ok && answer == expected {
                    counts.right += 1;
                } else if !ok && (stderr.contains("lookup error") || stderr.contains("query error"))
                {
                    counts.temp += 1;
                } else {
                    eprintln!("socketmap wrong answer: ok={ok} {answer:?} {stderr:?}");
                    counts.wrong += 1;
                }
                drop(counts);
                std::thread::sleep(Duration::from_millis(200).saturating_sub(started.elapsed()));
            }
        });
        // The time to answer, asked on the wire beside postmap (whose own retrying after a
        // TEMP would hide it).
        let (d, c) = (done.clone(), counts.clone());
        let request = format!("{map} {key_for_wire}");
        let timer = std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                let waited = wire_query(port, &request);
                let mut counts = c.lock().unwrap();
                counts.slowest = counts.slowest.max(waited);
                drop(counts);
                std::thread::sleep(Duration::from_millis(200).saturating_sub(waited));
            }
        });
        Prober {
            done,
            counts,
            threads: vec![thread, timer],
        }
    }

    pub fn stop(self) -> Probe {
        self.done.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        *self.counts.lock().unwrap()
    }
}
