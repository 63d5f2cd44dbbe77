//! Least privilege: `cjsm-milter run` started as root binds its sockets, then becomes the
//! configured account (`[milter] user`), for good; an account that does not exist, or root
//! with no account and no `allow_root`, is refused at start. The files it writes have the modes
//! the README states. The suite runs as root (scripts/test.sh), as these tests need.

mod common;

use common::cli::run_for;
use common::daemon::{Daemon, unmarked_message_verdict};
use indymilter_test::{Status, TestConnection};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

fn assert_root() {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the privilege tests start the daemon as root (scripts/test.sh)"
    );
}

/// `id OPTION nobody`: the uid (`-u`) or gid (`-g`) of nobody on this machine.
fn nobody(option: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args([option, "nobody"])
        .output()
        .expect("id (coreutils)");
    assert!(out.status.success(), "no user nobody on this machine");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A line of /proc/PID/status (`Uid`, `Gid`, `Groups`, `CapEff`): its values.
fn status_field(pid: u32, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().map(String::from).collect()
}

/// The mode the daemon gives a file created with `mode`, under this process's umask (which
/// the daemon inherits): what the README states, less what the umask takes away.
fn under_umask(mode: u32) -> u32 {
    let umask = status_field(std::process::id(), "Umask");
    mode & !u32::from_str_radix(&umask[0], 8).unwrap()
}

/// (owner uid, group gid, permission bits) of a path.
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777)
}

/// A temporary directory the account can reach (tempfile makes them 0700, root's).
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The daemon on a unix socket in `{dir}/run`, its store in `{dir}/store` (not there yet: the
/// daemon creates it), with the `[milter]` lines given.
fn config(mode: &str, milter: &str) -> String {
    format!(
        "mode = \"{mode}\"\n[milter]\nlisten = \"unix:{{dir}}/run/milter.sock\"\n\
         socket_mode = \"0660\"\n{milter}\n[store]\npath = \"{{dir}}/store\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n[socketmap]\nlisten = \"127.0.0.1:0\"\n\
         [routing]\nsecure_networks = [\"127.0.0.0/8\"]\n"
    )
}

/// One unmarked message to the internet over the unix socket: its verdict.
async fn verdict(socket: &Path) -> Status {
    let conn = TestConnection::configure().open_unix(socket).await.unwrap();
    unmarked_message_verdict(conn, "PRIV1").await
}

/// `cjsm-milter --config FILE run`, which must stop by itself within 10 s with exit status 2
/// (a configuration refused at start): its standard error.
fn run_refused(file: &Path) -> String {
    let (out, exited) = run_for(
        &["--config", file.to_str().unwrap(), "run"],
        Duration::from_secs(10),
        None,
    );
    assert!(exited, "still running: {}", out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    out.stderr
}

/// The audit trail in the store's database once an entry mentions `needle` (the milter writes
/// it shortly after the verdict), read as the test (root) reads it: read-only.
async fn audit_mentioning(store: &Path, needle: &str) -> String {
    use cjsm_milter::store::{Access, AuditTrail, SqliteStore};
    let mut seen = String::new();
    for _ in 0..200 {
        if store.join("directory.sqlite3").exists() {
            let trail = SqliteStore::open_with(store, Access::ReadOnly, 100).unwrap();
            seen = format!("{:?}", trail.audit(100).await.unwrap());
            if seen.contains(needle) {
                return seen;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no audit entry with {needle} within 5 s: {seen}");
}

/// Started as root with `user = "nobody"`: every uid and gid of the process (real, effective,
/// saved, file system) is nobody's, it holds no capability and no root group, its socket is
/// nobody's with the configured mode, and it still answers the MTA, writes its store and audit
/// log (with the README's modes) and reloads its config on SIGHUP.
#[tokio::test]
async fn root_binds_then_runs_as_the_configured_user() {
    assert_root();
    let (uid, gid) = (nobody("-u"), nobody("-g"));
    let dir = open_dir();
    let root = dir.path().to_path_buf();
    std::fs::create_dir(root.join("run")).unwrap();
    let mut daemon = Daemon::start_in(dir, &config("enforce", "user = \"nobody\""));
    let pid = daemon.pid();
    let log = daemon.log();
    assert!(
        log.contains("dropped root: running as the service account"),
        "{log}"
    );
    assert!(
        !log.contains("cannot be read as the service account"),
        "{log}"
    );
    assert_eq!(status_field(pid, "Uid"), vec![uid.to_string(); 4]);
    assert_eq!(status_field(pid, "Gid"), vec![gid.to_string(); 4]);
    // Every thread (the runtime's workers were started before the drop), not only the first.
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    for thread in threads.map(|t| t.unwrap().path()) {
        let status = std::fs::read_to_string(thread.join("status")).unwrap();
        let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert_eq!(
            uids,
            format!("Uid:{}", format!("\t{uid}").repeat(4)),
            "{}",
            thread.display()
        );
    }
    let groups = status_field(pid, "Groups");
    assert!(!groups.contains(&"0".to_string()), "groups {groups:?}");
    assert_eq!(status_field(pid, "CapEff"), ["0000000000000000"]);
    assert_eq!(status_field(pid, "CapPrm"), ["0000000000000000"]);

    let socket = root.join("run/milter.sock");
    assert_eq!(owner_and_mode(&socket), (uid, gid, 0o660), "the socket");
    assert!(matches!(verdict(&socket).await, Status::Reject { .. }));

    // The store, created by root for the account and written by it; the audit log beside it.
    let store = root.join("store");
    assert_eq!(
        owner_and_mode(&store),
        (uid, gid, under_umask(0o750)),
        "the store directory"
    );
    // The database and SQLite's -wal and -shm beside it: the milter's account opens all three.
    let audited = audit_mentioning(&store, "PRIV1").await;
    for file in [
        "directory.sqlite3",
        "directory.sqlite3-wal",
        "directory.sqlite3-shm",
        "store-initialised",
    ] {
        assert_eq!(
            owner_and_mode(&store.join(file)),
            (uid, gid, under_umask(0o640)),
            "{file}"
        );
    }
    assert!(audited.contains("PRIV1"), "{audited}");
    // An administrator's change as root leaves the files to the account: the milter goes on
    // writing its audit trail into them.
    let out = common::cli::cli(
        &daemon.config,
        &[
            "directory",
            "org",
            "apply",
            "--id",
            "rootco",
            "--name",
            "Root Co",
            "--domain",
            "rootco.example",
            "--connection",
            "server",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let conn = TestConnection::configure()
        .open_unix(&socket)
        .await
        .unwrap();
    assert!(matches!(
        unmarked_message_verdict(conn, "PRIV2").await,
        Status::Reject { .. }
    ));
    audit_mentioning(&store, "PRIV2").await;
    for file in [
        "directory.sqlite3",
        "directory.sqlite3-wal",
        "directory.sqlite3-shm",
    ] {
        assert_eq!(owner_and_mode(&store.join(file)).0, uid, "{file}");
    }

    // SIGHUP: the config is read again, as nobody, and applies.
    std::fs::write(
        &daemon.config,
        config("report", "user = \"nobody\"").replace("{dir}", &root.display().to_string()),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("config reloaded");
    assert_eq!(
        verdict(&socket).await,
        Status::Accept,
        "report mode applies"
    );
    assert!(!daemon.log().contains("reload failed"), "{}", daemon.log());

    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success(), "{}", daemon.log());
}

/// A configured account that does not exist stops `run` before it binds anything, with the
/// account named and how to create the service account.
#[test]
fn an_unknown_user_is_refused_at_start() {
    assert_root();
    let dir = open_dir();
    let port = common::free_port();
    let text = format!(
        "[milter]\nlisten = \"inet:127.0.0.1:{port}\"\nuser = \"no-such-cjsm-user\"\n\
         [store]\npath = \"{}/store\"\n[metrics]\nlisten = \"\"\n",
        dir.path().display()
    );
    let file = dir.path().join("cjsm.toml");
    std::fs::write(&file, text).unwrap();
    let stderr = run_refused(&file);
    assert!(
        stderr.contains("[milter] user \"no-such-cjsm-user\" does not exist")
            && stderr.contains("useradd --system"),
        "{}",
        stderr
    );
    assert!(!stderr.contains("panicked"), "{}", stderr);
    assert!(!dir.path().join("store").exists(), "nothing was created");
}

/// Root with no account to become (`user = ""`) is refused unless `allow_root = true`, which
/// keeps it root, as it says.
#[tokio::test]
async fn root_without_an_account_runs_only_when_allowed() {
    assert_root();
    let dir = open_dir();
    let file = dir.path().join("cjsm.toml");
    std::fs::write(
        &file,
        config("enforce", "user = \"\"").replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let stderr = run_refused(&file);
    assert!(
        stderr.contains("started as root with no account to run as")
            && stderr.contains("allow_root = true"),
        "{}",
        stderr
    );
    assert!(!dir.path().join("run/milter.sock").exists());

    std::fs::create_dir(dir.path().join("run")).unwrap();
    let daemon = Daemon::start_in(dir, &config("enforce", "user = \"\"\nallow_root = true"));
    assert!(daemon.log().contains("running as root"), "{}", daemon.log());
    assert_eq!(status_field(daemon.pid(), "Uid"), ["0"; 4]);
}

/// Without a `user` the built-in default is the service account `cjsm-milter`, or, on a
/// machine without it (a fresh one, `cargo run`), `nobody` with a warning that says how to
/// create the service account.
#[tokio::test]
async fn the_default_account_falls_back_to_nobody_with_a_warning() {
    assert_root();
    let service = std::process::Command::new("id")
        .args(["-u", "cjsm-milter"])
        .output()
        .unwrap();
    let dir = open_dir();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    let daemon = Daemon::start_in(dir, &config("enforce", ""));
    let uid = status_field(daemon.pid(), "Uid");
    let log = daemon.log();
    if service.status.success() {
        let expected = String::from_utf8_lossy(&service.stdout).trim().to_string();
        assert_eq!(uid, vec![expected; 4], "{log}");
    } else {
        assert_eq!(uid, vec![nobody("-u").to_string(); 4], "{log}");
        assert!(
            log.contains("no account cjsm-milter on this machine")
                && log.contains("useradd --system --home-dir /var/lib/cjsm-milter"),
            "{log}"
        );
    }
}

/// The shipped unit starts the daemon unprivileged (so `run` drops nothing) with no
/// capabilities, and systemd's own measure of its exposure stays where the README states it:
/// `systemd-analyze security --threshold=20` fails above 2.0.
#[test]
fn the_shipped_unit_runs_unprivileged_and_hardened() {
    unit_runs_unprivileged_and_hardened("contrib/cjsm-milter.service");
}

/// The website's unit likewise.
#[test]
fn the_websites_unit_runs_unprivileged_and_hardened() {
    unit_runs_unprivileged_and_hardened("contrib/cjsm-milter-web.service");
}

fn unit_runs_unprivileged_and_hardened(name: &str) {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&unit).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for line in [
        "User=cjsm-milter",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
    ] {
        assert!(lines.contains(&line), "{line} not in the unit");
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.0: {}{}",
        report.lines().last().unwrap_or(""),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Overall exposure level"), "{report}");
}
