//! Test harness: the milter served in-process on 127.0.0.1:0 with its own file store, the
//! same `serve()` the daemon runs.
#![allow(dead_code)]

pub mod daemon;
pub mod pki;
pub mod postfix;
pub mod redis;

use cjsm_milter::config::Config;
use cjsm_milter::directory::model::{ConnectionType, OrgState, Organisation, User, UserState};
use cjsm_milter::engine::{Engine, Shared, compile};
use cjsm_milter::listen::{self, ListenAddr};
use cjsm_milter::milter;
use cjsm_milter::store::{self, Directory};
use indymilter_test::TestConnection;
use std::net::SocketAddr;
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
        // A config with its own [store] (Redis) keeps it; otherwise a file store in the
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
        let milter_store = store::open_for_milter(&config.store).await.unwrap();
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

/// Adds a user to a store, with an active organisation for its domain.
pub async fn add_user(store: &dyn Directory, address: &str, state: UserState) {
    let domain = address.rsplit_once('@').unwrap().1.to_string();
    let org_id = format!("org-{domain}");
    if store.org(&org_id).await.unwrap().is_none() {
        store
            .put_org(Organisation {
                id: org_id.clone(),
                name: format!("Organisation of {domain}"),
                domains: vec![domain],
                connection: ConnectionType::Mailbox,
                state: OrgState::Active,
                terms_signed: Some(1),
                admins: vec![],
                client_certificate: None,
                mail_server: None,
                approved: Some(1),
                revision: 0,
                created: 0,
                updated: 0,
            })
            .await
            .unwrap();
    }
    store
        .put_users(vec![User {
            address: address.into(),
            org: org_id,
            first_name: "Test".into(),
            last_name: "User".into(),
            town: String::new(),
            business_type: String::new(),
            state,
            created: 0,
            updated: 0,
            smime_certificate: None,
            revision: 0,
        }])
        .await
        .unwrap();
}

/// Runs `cjsm-milter --config CONFIG ARGS…` and asserts it succeeds; its standard output.
pub fn cli_ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cjsm-milter"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cjsm-milter {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Registers an organisation and switches it on, through the admin commands.
pub fn onboard(config: &std::path::Path, id: &str, name: &str, domain: &str, connection: &str) {
    onboard_with(config, id, name, domain, connection, &[]);
}

/// [`onboard`] with more `org apply` options (a client certificate, a mail server).
pub fn onboard_with(
    config: &std::path::Path,
    id: &str,
    name: &str,
    domain: &str,
    connection: &str,
    options: &[&str],
) {
    let mut apply = vec![
        "directory",
        "org",
        "apply",
        "--id",
        id,
        "--name",
        name,
        "--domain",
        domain,
        "--connection",
        connection,
    ];
    apply.extend_from_slice(options);
    cli_ok(config, &apply);
    for step in ["approve", "sign-terms", "activate"] {
        cli_ok(config, &["directory", "org", step, id]);
    }
}

/// `directory user add` for `address` in organisation `org`.
pub fn cli_add_user(config: &std::path::Path, address: &str, org: &str, first: &str, last: &str) {
    cli_ok(
        config,
        &[
            "directory",
            "user",
            "add",
            address,
            "--org",
            org,
            "--first-name",
            first,
            "--last-name",
            last,
        ],
    );
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

/// `cjsm-milter --config CONFIG check ARGS… -` with `message` on its standard input: the
/// JSON report. The process must succeed and never panic, whatever the message.
pub fn check_message(config: &std::path::Path, args: &[&str], message: &[u8]) -> serde_json::Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cjsm-milter"))
        .args(["--config", config.to_str().unwrap(), "check"])
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = message.to_vec();
    // Written from a thread: a large message would fill the pipe before the report is read.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}
