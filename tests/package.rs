//! The Debian package: scripts/package.sh builds it from the test binary, dpkg installs it on
//! this machine (the tests run as root, as scripts/test.sh does), and the installed files, the
//! service user and the state directory are checked; the installed binary validates the
//! installed config; `dpkg --purge` removes all of it. A machine where cjsm-milter is already
//! installed, or has its user, its config directory or its binary, is refused rather than
//! overwritten. A state directory left by `cargo run -- run` (the README's first command, as
//! root) is set aside for the test and put back after it.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PACKAGE: &str = "cjsm-milter";
const USER: &str = "cjsm-milter";
const STATE_DIR: &str = "/var/lib/cjsm-milter";
const CONFIG: &str = "/etc/cjsm-milter/cjsm-milter.toml";

/// Every file the package must install (the kits' and dashboards' are checked against the
/// repository below).
const FILES: &[&str] = &[
    "/usr/sbin/cjsm-milter",
    "/usr/lib/systemd/system/cjsm-milter.service",
    "/usr/lib/systemd/system/cjsm-milter-web.service",
    CONFIG,
    "/usr/share/cjsm-milter/contrib/cjsm-milter.toml",
    "/usr/share/man/man8/cjsm-milter.8.gz",
    "/usr/share/man/man5/cjsm-milter.toml.5.gz",
    "/usr/share/doc/cjsm-milter/copyright",
    "/usr/share/doc/cjsm-milter/changelog.gz",
    "/usr/share/doc/cjsm-milter/CHANGELOG.md.gz",
    "/usr/share/doc/cjsm-milter/README.md.gz",
];

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// dpkg's state for the package: "" when dpkg has never heard of it.
fn dpkg_status() -> String {
    let output = run("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", PACKAGE]);
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn account_exists(database: &str, name: &str) -> bool {
    run("getent", &[database, name]).status.success()
}

/// Refuses, with the reason, to run where the package's install or purge would touch
/// something that is not the test's own.
fn assert_machine_is_clear() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the package test installs a .deb with dpkg and must run as root \
         (scripts/test.sh runs the suite as root)"
    );
    for tool in ["dpkg", "dpkg-deb", "dpkg-query", "getent"] {
        let usable = Command::new(tool)
            .arg(if tool == "getent" {
                "--help"
            } else {
                "--version"
            })
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            usable,
            "{tool} does not run: the package test needs a working dpkg"
        );
    }
    let status = dpkg_status();
    assert!(
        status.is_empty() || status.starts_with("un"),
        "cjsm-milter is already known to dpkg here (status {status:?}); the package test \
         would replace and then purge it: remove it first (dpkg --purge cjsm-milter)"
    );
    for (database, name) in [("passwd", USER), ("group", USER)] {
        assert!(
            !account_exists(database, name),
            "this machine has a {database} entry {name} that no package made; the package \
             test would delete it on purge: remove it first or run the test elsewhere"
        );
    }
    for path in ["/usr/sbin/cjsm-milter", "/etc/cjsm-milter"] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists and is not from the package; the package test would overwrite \
             or delete it: move it away first or run the test elsewhere"
        );
    }
}

/// Where an existing state directory waits while the test runs.
const SET_ASIDE: &str = "/var/lib/cjsm-milter.set-aside-by-the-package-test";

/// The state directory of a milter run by hand (`cargo run -- run` as root keeps its
/// directory there), moved out of the package's way and put back when the test ends, so that
/// the package's purge cannot delete it.
struct SetAside(bool);

impl SetAside {
    fn state_dir() -> SetAside {
        assert!(
            !Path::new(SET_ASIDE).exists(),
            "{SET_ASIDE} exists: an earlier package test was stopped before it put {STATE_DIR} \
             back; move it back (mv {SET_ASIDE} {STATE_DIR}) and run the test again"
        );
        if !Path::new(STATE_DIR).exists() {
            return SetAside(false);
        }
        std::fs::rename(STATE_DIR, SET_ASIDE)
            .unwrap_or_else(|e| panic!("setting {STATE_DIR} aside as {SET_ASIDE}: {e}"));
        eprintln!("package test: {STATE_DIR} set aside as {SET_ASIDE} until the test ends");
        SetAside(true)
    }
}

impl Drop for SetAside {
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        if Path::new(STATE_DIR).exists() {
            eprintln!(
                "package test: {STATE_DIR} is still there after the purge; yours stays in \
                 {SET_ASIDE}"
            );
        } else if let Err(e) = std::fs::rename(SET_ASIDE, STATE_DIR) {
            eprintln!("package test: putting {SET_ASIDE} back as {STATE_DIR}: {e}");
        }
    }
}

/// Purges the package when the test ends, also when an assertion failed midway, so that a
/// failed run leaves the machine as it found it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if !dpkg_status().is_empty() && !dpkg_status().starts_with("un") {
            let _ = run("dpkg", &["--purge", PACKAGE]);
        }
    }
}

fn repository_files(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("reading a directory entry").path();
            if path.is_dir() {
                if path.file_name() != Some("__pycache__".as_ref()) {
                    walk(&path, files);
                }
            } else if path.extension() != Some("pyc".as_ref()) {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    files
}

/// `/usr/sbin/cjsm-milter run` started as root (this test's user) on a config in `dir` that
/// leaves `[milter] user` out, on a free loopback port: its `Uid:` and `Gid:` lines of
/// /proc/PID/status once it listens, and its log. Stopped by its PID.
fn started_as_root(dir: &Path) -> (Vec<String>, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let config = dir.join("run-as-root.toml");
    std::fs::write(
        &config,
        format!("[milter]\nlisten = \"inet:127.0.0.1:{port}\"\n[metrics]\nlisten = \"\"\n"),
    )
    .expect("writing the config");
    let log_path = dir.join("run-as-root.log");
    let log_file = std::fs::File::create(&log_path).expect("creating the log");
    let mut child = Command::new("/usr/sbin/cjsm-milter")
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stderr(log_file)
        .spawn()
        .expect("running the installed binary");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = std::time::Instant::now();
    while !log().contains("cjsm-milter listening")
        && child.try_wait().expect("the daemon's status").is_none()
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let ids = status
        .lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:"))
        .map(String::from)
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    (ids, log())
}

#[test]
fn the_debian_package_installs_runs_and_purges() {
    assert_machine_is_clear();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("a temporary directory");

    // Uncompressed: xz would spend most of the test's time on the binary.
    let built = Command::new(root.join("scripts/package.sh"))
        .arg(env!("CARGO_BIN_EXE_cjsm-milter"))
        .arg(out.path())
        .env("PACKAGE_COMPRESSION", "none")
        .output()
        .expect("running scripts/package.sh");
    assert!(
        built.status.success(),
        "scripts/package.sh: {}\n{}",
        built.status,
        String::from_utf8_lossy(&built.stderr)
    );
    let arch = run_ok("dpkg", &["--print-architecture"]);
    let deb = out.path().join(format!(
        "cjsm-milter_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.trim()
    ));
    assert_eq!(
        String::from_utf8_lossy(&built.stdout).lines().last(),
        Some(deb.to_str().expect("a UTF-8 path")),
        "package.sh names the .deb it built on its last line"
    );
    let deb = deb.to_str().expect("a UTF-8 path");

    let control = run_ok("dpkg-deb", &["--field", deb]);
    assert!(control.contains("Package: cjsm-milter\n"), "{control}");
    assert!(
        control.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{control}"
    );
    assert!(
        control.contains("Depends: ") && control.contains("libc6 (>= 2."),
        "the package depends on the glibc the binary needs: {control}"
    );
    let conffiles = run_ok("dpkg-deb", &["--info", deb, "conffiles"]);
    assert_eq!(conffiles.trim(), CONFIG, "the config is the only conffile");

    // Dropped in reverse order: the purge first, then the state directory put back.
    let _state_dir = SetAside::state_dir();
    let _installed = Installed;
    // The command line's path-include comes after dpkg.cfg.d's path-exclude (a minimal or
    // container image leaves out /usr/share/man and /usr/share/doc), so the test sees every
    // file the package ships.
    run_ok(
        "dpkg",
        &[
            "--path-include=/usr/share/man/man*/cjsm-milter*",
            "--path-include=/usr/share/doc/cjsm-milter/*",
            "-i",
            deb,
        ],
    );
    assert!(dpkg_status().starts_with("ii"), "dpkg: {}", dpkg_status());

    for file in FILES {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    for kit in ["postfix", "sendmail", "dovecot", "dashboards"] {
        for file in repository_files(kit) {
            let relative = file.strip_prefix(root).expect("under the repository");
            let installed = Path::new("/usr/share/cjsm-milter").join(relative);
            assert_eq!(
                std::fs::read(&installed)
                    .unwrap_or_else(|e| panic!("{} is not installed: {e}", installed.display())),
                std::fs::read(&file).expect("reading the repository's file"),
                "{} differs from {}",
                installed.display(),
                relative.display()
            );
        }
    }
    assert_eq!(
        std::fs::read(CONFIG).expect("reading the installed config"),
        std::fs::read(root.join("cjsm-milter.example.toml")).expect("reading the example"),
        "{CONFIG} is the example config"
    );
    let binary = std::fs::metadata("/usr/sbin/cjsm-milter").expect("the installed binary");
    assert_eq!(binary.permissions().mode() & 0o7777, 0o755);
    assert_eq!((binary.uid(), binary.gid()), (0, 0), "root owns the binary");

    let unit = std::fs::read_to_string("/usr/lib/systemd/system/cjsm-milter.service")
        .expect("reading the installed unit");
    assert!(
        unit.lines().any(|l| l
            == "ExecStart=/usr/sbin/cjsm-milter --config /etc/cjsm-milter/cjsm-milter.toml run"),
        "the unit runs the installed binary on the installed config:\n{unit}"
    );
    assert!(
        !unit.contains("/usr/local"),
        "the unit names no /usr/local path:\n{unit}"
    );
    let web_unit = std::fs::read_to_string("/usr/lib/systemd/system/cjsm-milter-web.service")
        .expect("reading the installed website unit");
    assert!(
        web_unit.lines().any(|l| l
            == "ExecStart=/usr/sbin/cjsm-milter --config /etc/cjsm-milter/cjsm-milter.toml web"),
        "the website's unit runs the installed binary on the installed config:\n{web_unit}"
    );
    assert!(
        !web_unit.contains("/usr/local"),
        "the website's unit names no /usr/local path:\n{web_unit}"
    );

    // The service user and group, and the state directory they own.
    let passwd = run_ok("getent", &["passwd", USER]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields.len(), 7, "{passwd}");
    assert_eq!(fields[5], STATE_DIR, "the user's home: {passwd}");
    assert_eq!(
        fields[6], "/usr/sbin/nologin",
        "the user cannot log in: {passwd}"
    );
    let uid: u32 = fields[2].parse().expect("a numeric uid");
    assert!(uid < 1000, "a system user: {passwd}");
    let group = run_ok("getent", &["group", USER]);
    let gid: u32 = group
        .trim()
        .split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .expect("a gid");
    assert_eq!(
        fields[3],
        gid.to_string(),
        "the user's primary group is {USER}"
    );
    let state = std::fs::metadata(STATE_DIR).expect("the state directory");
    assert!(state.is_dir());
    assert_eq!(
        (state.uid(), state.gid()),
        (uid, gid),
        "{STATE_DIR} is the user's"
    );
    assert_eq!(
        state.permissions().mode() & 0o7777,
        0o750,
        "{STATE_DIR} mode"
    );

    // The installed binary runs and accepts the installed config.
    let version = run_ok("/usr/sbin/cjsm-milter", &["--version"]);
    assert_eq!(
        version.trim(),
        format!("cjsm-milter {}", env!("CARGO_PKG_VERSION"))
    );
    let check = run_ok("/usr/sbin/cjsm-milter", &["config", "check", CONFIG]);
    assert_eq!(check.trim(), format!("{CONFIG}: ok"));
    let kit_config = run_ok(
        "/usr/sbin/cjsm-milter",
        &[
            "config",
            "check",
            "/usr/share/cjsm-milter/contrib/cjsm-milter.toml",
        ],
    );
    assert!(kit_config.trim().ends_with(": ok"), "{kit_config}");

    // Started as root on a config that names no account, the installed daemon becomes the
    // service account the package created, and writes its store in the state directory as it.
    let (ids, log) = started_as_root(out.path());
    assert_eq!(
        ids,
        [
            format!("Uid:{}", format!("\t{uid}").repeat(4)),
            format!("Gid:{}", format!("\t{gid}").repeat(4))
        ],
        "{log}"
    );
    let store = std::fs::metadata(Path::new(STATE_DIR).join("directory.sqlite3"))
        .unwrap_or_else(|e| panic!("the store: {e}\n{log}"));
    assert_eq!(
        (store.uid(), store.gid()),
        (uid, gid),
        "the store is the user's"
    );

    // The man pages are gzipped roff that man reads.
    for page in ["cjsm-milter.8", "cjsm-milter.toml.5"] {
        let section = page.rsplit('.').next().expect("a section");
        let installed = format!("/usr/share/man/man{section}/{page}.gz");
        let text = run_ok("zcat", &[&installed]);
        assert_eq!(
            text,
            std::fs::read_to_string(root.join("man").join(page)).expect("reading the page"),
            "{installed} is man/{page}"
        );
    }

    run_ok("dpkg", &["--purge", PACKAGE]);
    let status = dpkg_status();
    assert!(
        status.is_empty() || status.starts_with("un"),
        "purged, yet dpkg says {status:?}"
    );
    for file in FILES {
        assert!(!Path::new(file).exists(), "{file} is left after purge");
    }
    for path in ["/usr/share/cjsm-milter", "/etc/cjsm-milter", STATE_DIR] {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    assert!(
        !account_exists("passwd", USER),
        "the user is left after purge"
    );
    assert!(
        !account_exists("group", USER),
        "the group is left after purge"
    );
}
