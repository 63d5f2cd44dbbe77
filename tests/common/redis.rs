//! A real redis-server for a test: started on a free loopback port, no persistence, stopped
//! by PID. A missing redis-server fails the test with the package to install.

use super::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Keep the data across a restart (append-only file, synced on every write).
    persistent: bool,
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// Waits, `tries` times 10 ms at most, until the redis-server just spawned as `child` answers
/// (`answers`): the child then; `None` if it exits first (a port taken meanwhile, say) or
/// never answers, when it is killed by PID and reaped.
pub fn wait_until_serving(
    mut child: Child,
    tries: u32,
    answers: impl Fn() -> bool,
) -> Option<Child> {
    for _ in 0..tries {
        if answers() {
            return Some(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// A server whose data survives `stop()` and `restart()`.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(true)
    }

    fn start_with(persistent: bool) -> RedisServer {
        let mut dir = tempfile::tempdir().unwrap();
        // Picking a free port then binding it races; try a few ports.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                dir,
                persistent,
            };
            if server.spawn() {
                return server;
            }
            dir = server.take_dir();
        }
        panic!("redis-server did not start on a free port after 5 tries");
    }

    fn take_dir(self) -> tempfile::TempDir {
        let mut this = self;
        this.stop();
        std::mem::replace(&mut this.dir, tempfile::tempdir().unwrap())
    }

    /// Starts (or restarts, on the same port) the server; true once it answers PING.
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--logfile", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: the Redis tests need Debian's redis-server package \
                 (scripts/test.sh installs it)"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        match wait_until_serving(child, 200, || ping(self.port)) {
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

    /// Stops the server by its PID and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (the data is gone: no persistence).
    pub fn restart(&mut self) {
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A redis-server started with extra arguments (a Sentinel, a Cluster node), stopped by PID.
pub struct RedisProcess {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisProcess {
    /// `args` may contain `{port}` and `{dir}`, replaced before the start; `config` (if
    /// any) is written to `{dir}/redis.conf` and passed first.
    pub fn start(config: Option<&str>, args: &[&str]) -> RedisProcess {
        RedisProcess::start_with(config, args, ping)
    }

    /// A TLS-only server: ready once its port accepts connections.
    pub fn start_tls(config: &str) -> RedisProcess {
        RedisProcess::start_with(Some(config), &[], |port| {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    fn start_with(config: Option<&str>, args: &[&str], ready: fn(u16) -> bool) -> RedisProcess {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let fill = |s: &str| {
                s.replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.path().display().to_string())
            };
            let mut command = Command::new("redis-server");
            if let Some(config) = config {
                let path = dir.path().join("redis.conf");
                std::fs::write(&path, fill(config)).unwrap();
                command.arg(path);
            }
            let child = command
                .args(args.iter().map(|a| fill(a)))
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server is not installed: the Redis tests need Debian's redis-server package"
                ),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            if let Some(child) = wait_until_serving(child, 300, || ready(port)) {
                return RedisProcess {
                    child,
                    port,
                    _dir: dir,
                };
            }
        }
        panic!("redis-server {args:?} did not start after 5 tries");
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
