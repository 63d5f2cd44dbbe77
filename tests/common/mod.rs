//! The integration tests' harness, one place for each job: the milter served in-process on
//! 127.0.0.1:0 with its own embedded store (the same `serve()` the daemon runs), the scenario
//! configs of tests/scenarios, a free loopback port, and SMTP through swaks and smtp-sink.
//! `cli` runs the binary's commands, `daemon` runs `cjsm-milter run` as a child process,
//! `fixtures` writes the directory's records; `pki`, `postfix` and `redis` start what the tests
//! talk to.
#![allow(dead_code)]

pub mod browser;
pub mod cli;
pub mod daemon;
pub mod dovecot;
pub mod fixtures;
pub mod pki;
pub mod postfix;
pub mod redis;
pub mod web;

use cjsm_milter::config::Config;
use cjsm_milter::directory::model::{Organisation, User, UserState};
use cjsm_milter::engine::{Engine, Shared, compile};
use cjsm_milter::listen::{self, ListenAddr};
use cjsm_milter::milter;
use cjsm_milter::store::{self, Directory};
use indymilter_test::{MacroStage, Status, TestConnection};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestMilter {
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub shared: Arc<Shared>,
    /// The milter's store opened for writing: the milter itself only reads it.
    pub store: Arc<dyn Directory>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestMilter {
    /// Starts a milter on the given config text (the store section is added here).
    pub async fn start(config_text: &str) -> TestMilter {
        let dir = tempfile::tempdir().unwrap();
        // A config with its own [store] (Redis) keeps it; otherwise an embedded store in the
        // test's directory.
        let text = if config_text.contains("[store]") {
            config_text.to_string()
        } else {
            format!(
                "{config_text}\n[store]\nbackend = \"file\"\npath = \"{}\"\n",
                dir.path().join("store").display()
            )
        };
        let compiled = compile(Config::parse(&text).unwrap()).unwrap();
        let config = compiled.config();
        let milter_store = store::open_for_milter(&config.store, None).await.unwrap();
        let store = store::open(&config.store, store::Access::ReadWrite)
            .await
            .unwrap();
        let audit = cjsm_milter::audit::AuditSink::start(milter_store.audit);
        let engine = Engine::new(compiled, milter_store.read).with_audit(Some(audit));
        let shared = Shared::new(engine);
        let (listener, local) = listen::bind(
            &ListenAddr::Inet("127.0.0.1:0".parse().unwrap()),
            None,
            None,
        )
        .await
        .unwrap();
        let ListenAddr::Inet(addr) = local else {
            unreachable!()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(milter::serve(listener, shared.clone(), async move {
            let _ = rx.await;
        }));
        TestMilter {
            addr,
            dir,
            shared,
            store,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Adds a user (and, if needed, an active organisation owning its domain).
    pub async fn add_user(&self, address: &str, state: UserState) {
        add_user(self.store.as_ref(), address, state).await
    }

    pub async fn connect(&self) -> TestConnection {
        TestConnection::open(self.addr).await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The RCPT answer for `rcpt` on a fresh session with the milter at `addr`, after MAIL from
/// `sender`. The sender's own lookup comes first, so a refused MAIL (a store away, say) is the
/// answer itself and RCPT is never sent.
pub async fn rcpt_status(addr: SocketAddr, sender: &str, rcpt: &str) -> Status {
    let mut conn = TestConnection::open(addr).await.unwrap();
    conn.connect("c", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
        .await
        .unwrap();
    conn.macros(MacroStage::Mail, [("i", "RQ1")]).await.unwrap();
    let status = conn.mail([sender]).await.unwrap();
    if status != Status::Continue {
        let _ = conn.close().await;
        return status;
    }
    let status = conn.rcpt([rcpt]).await.unwrap();
    let _ = conn.abort().await;
    let _ = conn.close().await;
    status
}

/// Adds a user to a store, with an active organisation for its domain.
pub async fn add_user(store: &dyn Directory, address: &str, state: UserState) {
    let domain = address.rsplit_once('@').unwrap().1;
    let org_id = format!("org-{domain}");
    if store.org(&org_id).await.unwrap().is_none() {
        let name = format!("Organisation of {domain}");
        let org = Organisation {
            name,
            ..fixtures::org(&org_id, &[domain])
        };
        store.put_org(org).await.unwrap();
    }
    let user = User {
        state,
        ..fixtures::user(address, &org_id)
    };
    store.put_users(vec![user]).await.unwrap();
}

/// The messages smtp-sink (`-d DIR/…`) wrote into `dir`, once at least `count` are there and
/// none is still being written (sizes unchanged over 200 ms); what is there after `limit`.
pub fn sink_messages(
    dir: &std::path::Path,
    count: usize,
    limit: std::time::Duration,
) -> Vec<String> {
    let sizes = || -> Vec<(std::path::PathBuf, u64)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let len = std::fs::metadata(&p).map_or(0, |m| m.len());
                (p, len)
            })
            .collect();
        files.sort();
        files
    };
    let started = std::time::Instant::now();
    let mut before = sizes();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = sizes();
        let settled = now == before && now.iter().all(|(_, len)| *len > 0);
        if (settled && now.len() >= count) || started.elapsed() > limit {
            return now
                .iter()
                .map(|(p, _)| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
                .collect();
        }
        before = now;
    }
}

/// The scenario config `tests/scenarios/NAME.toml` with each `{key}` of `values` replaced by
/// its value. Only `{dir}` may be left, for [`daemon::Daemon::start`] to fill in.
pub fn scenario(name: &str, values: &[(&str, &str)]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(format!("{name}.toml"));
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (key, value) in values {
        let placeholder = format!("{{{key}}}");
        assert!(
            text.contains(&placeholder),
            "{} has no {placeholder}",
            path.display()
        );
        text = text.replace(&placeholder, value);
    }
    let unfilled = text.match_indices('{').find_map(|(at, _)| {
        let name = text[at + 1..].split('}').next()?;
        let is_placeholder =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        (is_placeholder && name != "dir").then_some(name)
    });
    assert_eq!(
        unfilled,
        None,
        "{}: a placeholder left unfilled",
        path.display()
    );
    text
}

/// Writes the scenario config (see [`scenario`]) to `DIR/cjsm.toml`; its path.
pub fn scenario_file(
    dir: &std::path::Path,
    name: &str,
    values: &[(&str, &str)],
) -> std::path::PathBuf {
    let config = dir.join("cjsm.toml");
    std::fs::write(&config, scenario(name, values)).unwrap();
    config
}

/// A loopback port free right now (binding it later may still race; callers retry or fail).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on the loopback port (at most 15 s).
pub fn wait_listening(port: u16, what: &str) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One SMTP transaction with swaks against a loopback port; the whole dialogue.
pub fn swaks(port: u16, from: &str, to: &str, subject: &str, body: &str) -> String {
    swaks_with(port, from, to, subject, body, &[])
}

/// The same with more swaks options (`--tls`, `--tls-cert FILE`, `--h-From …`).
pub fn swaks_with(
    port: u16,
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    extra: &[&str],
) -> String {
    let mut command = std::process::Command::new("swaks");
    command
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--from", from, "--to", to])
        // Never a prompt: swaks asks on its terminal for anything given empty.
        .stdin(std::process::Stdio::null());
    // With --data the message is given whole; otherwise swaks builds it from these.
    if !extra.contains(&"--data") {
        command.args(["--header", &format!("Subject: {subject}"), "--body", body]);
    }
    let out = command
        .args(extra)
        .args(["--hide-informational", "--timeout", "60"])
        .output()
        .expect("swaks (Debian package swaks)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
