//! An authenticated, encrypted Redis: a TLS-only redis-server that wants a client certificate
//! from a private CA (`tls-auth-clients yes`), the `default` user off, and ACL users limited
//! to the deployment's keys and to the commands the milter (or the admin CLI) sends — the
//! lines the README gives. The milter and the admin commands log in with a password read
//! from a file and present a client certificate; a wrong password or certificate stops them
//! at start with an error naming the file and user, a password changed at run time means
//! tempfail, and the password never shows in their output or in /metrics.

mod common;

use common::cli::{cli, cli_add_user, cli_ok, onboard, run_cli, run_for};
use common::daemon::{Daemon, http_get};
use common::pki::RedisPki;
use common::rcpt_status;
use common::redis::RedisProcess;
use indymilter_test::{MacroStage, Status, TestConnection};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HUB_USER: &str = "alice@hartleylaw.co.uk.cjsm.net";
const SENDER: &str = "dc@met.pnn.police.uk";
const MILTER_PASSWORD: &str = "milter-Pa55word-7f3a91";
const ADMIN_PASSWORD: &str = "admin-Pa55word-c01d42";
const ROOT_PASSWORD: &str = "root-Pa55word-99e1b0";

/// The milter's ACL, as the README gives it: its keys, its channel, and the read commands, the
/// scripts and XADD (the audit trail) alone.
const MILTER_ACL: &str = "resetkeys ~{hub}:* resetchannels &{hub}:changes -@all \
     +ping +get +mget +exists +scard +smembers +hget +hexists +evalsha +script|load +xadd \
     +subscribe";
/// The admin CLI's: the milter's, and the writes.
const ADMIN_ACL: &str = "resetkeys ~{hub}:* resetchannels &{hub}:changes -@all \
     +ping +get +mget +exists +scard +smembers +hget +hexists +evalsha +script|load +xadd \
     +xrevrange +set +del +sadd +srem +hset +hsetnx +zadd +zcard +zrangebylex +publish +multi +exec \
     +hscan +hdel";

/// The server, its certificates and the files the milter and the admin CLI read.
struct Hub {
    redis: RedisProcess,
    pki: RedisPki,
    dir: tempfile::TempDir,
}

fn private_file(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Hub {
    fn start() -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let pki = RedisPki::create(&dir.path().join("pki"), "Hub Redis CA");
        let acl = dir.path().join("users.acl");
        std::fs::write(
            &acl,
            format!(
                "user default off\n\
                 user root on >{ROOT_PASSWORD} ~* &* +@all\n\
                 user cjsm-milter on >{MILTER_PASSWORD} {MILTER_ACL}\n\
                 user cjsm-admin on >{ADMIN_PASSWORD} {ADMIN_ACL}\n"
            ),
        )
        .unwrap();
        let config = format!(
            "port 0\ntls-port {{port}}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {{dir}}\n\
             tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients yes\n\
             aclfile {}\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display(),
            acl.display()
        );
        let redis = RedisProcess::start_tls(&config);
        private_file(
            &dir.path().join("milter.pass"),
            &format!("{MILTER_PASSWORD}\n"),
        );
        private_file(
            &dir.path().join("admin.pass"),
            &format!("{ADMIN_PASSWORD}\n"),
        );
        Hub { redis, pki, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[store]` section for `user` with the password in `password_file`, presenting the
    /// client certificate `cert`/`key` (none when `None`).
    fn store_section(
        &self,
        user: &str,
        password_file: &Path,
        cert: Option<(&Path, &Path)>,
    ) -> String {
        let mut text = format!(
            "[store]\nbackend = \"redis\"\nurl = \"rediss://127.0.0.1:{}/\"\nkey_prefix = \"hub\"\n\
             cache_ttl_ms = 1000\nusername = \"{user}\"\npassword_file = \"{}\"\n\
             tls_ca_file = \"{}\"\n",
            self.redis.port,
            password_file.display(),
            self.pki.ca.display()
        );
        if let Some((cert, key)) = cert {
            text.push_str(&format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                cert.display(),
                key.display()
            ));
        }
        text
    }

    fn client_cert(&self) -> Option<(&Path, &Path)> {
        Some((&self.pki.client_cert, &self.pki.client_key))
    }

    /// A config file for the admin CLI.
    fn admin_config(&self) -> PathBuf {
        let path = self.path("admin.toml");
        let section =
            self.store_section("cjsm-admin", &self.path("admin.pass"), self.client_cert());
        std::fs::write(&path, section).unwrap();
        path
    }

    /// [`Hub::admin_config`], with the hub user's organisation (Hartley Law) onboarded
    /// through it.
    fn admin_config_with_hartley(&self) -> PathBuf {
        let admin = self.admin_config();
        onboard(
            &admin,
            "hartley",
            "Hartley Law LLP",
            "hartleylaw.co.uk",
            "server",
        );
        admin
    }

    /// redis-cli to the hub's Redis over TLS, trusting its CA but showing no client
    /// certificate.
    fn redis_cli_without_certificate(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command
            .args([
                "--tls",
                "-h",
                "127.0.0.1",
                "-p",
                &self.redis.port.to_string(),
            ])
            .arg("--cacert")
            .arg(&self.pki.ca);
        command
    }

    /// redis-cli over TLS with the client certificate, as `user` (the password given through
    /// the environment, not the command line); its output, or its error.
    fn redis_cli(&self, user: &str, password: &str, args: &[&str]) -> String {
        let out = self
            .redis_cli_without_certificate()
            .arg("--cert")
            .arg(&self.pki.client_cert)
            .arg("--key")
            .arg(&self.pki.client_key)
            .args(["--user", user])
            .env("REDISCLI_AUTH", password)
            .args(args)
            .output()
            .expect("redis-cli (Debian package redis-tools)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn root(&self, args: &[&str]) -> String {
        self.redis_cli("root", ROOT_PASSWORD, args)
    }
}

/// One socketmap request (`NAME KEY`) on a new connection: the answer without its netstring.
fn socketmap_ask(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("{}:{request},", request.len()).as_bytes())
        .unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    // LEN ":" TEXT ",": the server's answers are short.
    while reply.len() < 4096 && stream.read(&mut byte).unwrap() == 1 {
        reply.push(byte[0]);
        if byte[0] == b',' && reply.contains(&b':') {
            let text = String::from_utf8_lossy(&reply).into_owned();
            let (len, rest) = text.split_once(':').unwrap();
            if rest.len() == len.parse::<usize>().unwrap() + 1 {
                return rest[..rest.len() - 1].to_string();
            }
        }
    }
    panic!(
        "no whole answer to {request}: {}",
        String::from_utf8_lossy(&reply)
    );
}

fn is_tempfail(status: &Status) -> bool {
    matches!(status, Status::Tempfail { .. })
}

fn assert_no_password(what: &str, text: &str) {
    for password in [MILTER_PASSWORD, ADMIN_PASSWORD, "Pa55word"] {
        assert!(!text.contains(password), "{what} shows a password:\n{text}");
    }
}

/// The milter and the admin CLI work through the authenticated TLS store; the milter's user
/// is held to its keys and its commands; a password changed at run time means tempfail; no
/// password in the output or the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_checked_through_an_authenticated_tls_redis() {
    let hub = Hub::start();
    let admin = hub.admin_config_with_hartley();
    let added = cli(
        &admin,
        &[
            "directory",
            "user",
            "add",
            HUB_USER,
            "--org",
            "hartley",
            "--first-name",
            "Alice",
            "--last-name",
            "Jones",
        ],
    )
    .success();
    assert_no_password(
        "the admin CLI",
        &format!("{}{}", added.stdout, added.stderr),
    );
    let audit = cli_ok(&admin, &["audit", "tail", "-n", "5"]);
    assert!(audit.contains("hartley"), "{audit}");
    // The admin commands that walk or index the directory work within the admin's ACL: a
    // registered mail server, search (the address-ordered index), export.
    cli_ok(
        &admin,
        &[
            "directory",
            "org",
            "update",
            "hartley",
            "--mail-server",
            "[192.0.2.25]:2525",
        ],
    );
    let found = cli_ok(&admin, &["directory", "search", "alice"]);
    assert!(found.contains(HUB_USER), "{found}");
    let exported = cli_ok(&admin, &["directory", "export", "--format", "csv"]);
    assert!(exported.contains(HUB_USER), "{exported}");
    // The website's accounts and sessions: written by script, listed and swept by HSCAN and
    // HDEL (the website logs in as the admin user).
    let one_time = cli_ok(&admin, &["web", "add-operator", "ops@hub.example.uk"]);
    assert_no_password("web add-operator", &one_time.replace(one_time.trim(), ""));
    cli_ok(&admin, &["web", "reset-password", "ops@hub.example.uk"]);
    for command in [
        &["HSCAN", "{hub}:records:account", "0"][..],
        &["HDEL", "{hub}:records:session", "none"][..],
    ] {
        let answer = hub.redis_cli("cjsm-admin", ADMIN_PASSWORD, command);
        assert!(!answer.contains("NOPERM"), "{command:?}: {answer}");
    }

    let port = common::free_port();
    let socketmap_port = common::free_port();
    let milter_store =
        hub.store_section("cjsm-milter", &hub.path("milter.pass"), hub.client_cert());
    let daemon = Daemon::start(&format!(
        "[milter]\nlisten = \"inet:127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [socketmap]\nlisten = \"127.0.0.1:{socketmap_port}\"\n\
         [routing]\nsecure_networks = [\"127.0.0.0/8\"]\n{milter_store}"
    ));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(rcpt_status(addr, SENDER, HUB_USER).await, Status::Continue);
    // The socketmap answers through the milter's user, from the indexes: the organisation's
    // domain and its registered next hop.
    for (request, expected) in [
        ("tlspolicy hartleylaw.co.uk", "OK secure"),
        ("tlspolicy [192.0.2.25]:2525", "OK secure"),
        ("transport hartleylaw.co.uk", "OK "),
    ] {
        let answer = socketmap_ask(socketmap_port, request);
        assert!(answer.starts_with(expected), "{request}: {answer}");
    }
    // An unknown hub user is refused: the answer really comes from the directory.
    let unknown = {
        let mut conn = TestConnection::open(addr).await.unwrap();
        conn.connect("c", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
            .await
            .unwrap();
        conn.macros(MacroStage::Mail, [("i", "RQ2")]).await.unwrap();
        assert_eq!(
            conn.mail(["dc@met.pnn.police.uk"]).await.unwrap(),
            Status::Continue
        );
        let status = conn
            .rcpt(["nobody@hartleylaw.co.uk.cjsm.net"])
            .await
            .unwrap();
        let _ = conn.close().await;
        status
    };
    assert!(matches!(unknown, Status::Reject { .. }), "{unknown:?}");
    // The milter's audit entries reach the stream through its own user (XADD).
    let started = Instant::now();
    while !hub.root(&["XLEN", "{hub}:audit"]).trim().ne("0") {
        assert!(started.elapsed() < Duration::from_secs(5), "no audit entry");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing the milter sent was refused by its ACL.
    let denied = hub.root(&["ACL", "LOG"]);
    assert!(
        !denied.contains("cjsm-milter"),
        "the milter's ACL refused:\n{denied}"
    );

    // The ACL really restricts the milter's user: no key outside its prefix, no write.
    hub.root(&["SET", "other:secret", "x"]);
    let foreign = hub.redis_cli("cjsm-milter", MILTER_PASSWORD, &["GET", "other:secret"]);
    assert!(foreign.contains("NOPERM"), "{foreign}");
    let own = hub.redis_cli("cjsm-milter", MILTER_PASSWORD, &["GET", "{hub}:meta"]);
    assert_eq!(own.trim(), "1");
    let write = hub.redis_cli("cjsm-milter", MILTER_PASSWORD, &["SET", "{hub}:meta", "x"]);
    assert!(write.contains("NOPERM"), "{write}");
    // Nor a client without a certificate from the CA, even with the password.
    let no_cert = hub
        .redis_cli_without_certificate()
        .args(["--user", "cjsm-milter"])
        .env("REDISCLI_AUTH", MILTER_PASSWORD)
        .args(["GET", "{hub}:meta"])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&no_cert.stdout).trim(), "1");

    let (status, metrics) = http_get(daemon.metrics_addr(), "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("cjsm_"), "{metrics}");
    assert_no_password("/metrics", &metrics);

    // The password changes at run time and the milter's connections are dropped: it cannot
    // log in again, and mail that needs the directory is tempfailed, never accepted.
    let changed = hub.root(&[
        "ACL",
        "SETUSER",
        "cjsm-milter",
        "resetpass",
        ">a-New-Secret-55",
    ]);
    assert_eq!(changed.trim(), "OK");
    hub.root(&["CLIENT", "KILL", "USER", "cjsm-milter"]);
    let started = Instant::now();
    loop {
        let status = rcpt_status(addr, SENDER, HUB_USER).await;
        if is_tempfail(&status) {
            break;
        }
        // Until the cached entry (1 s) runs out, the answer is the one just read.
        assert_eq!(status, Status::Continue);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no tempfail within 10 s of the password change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("tempfail {:?} after the password change", started.elapsed());
    for _ in 0..5 {
        assert!(is_tempfail(&rcpt_status(addr, SENDER, HUB_USER).await));
    }
    let (_, metrics) = http_get(daemon.metrics_addr(), "/metrics");
    assert_no_password("/metrics", &metrics);
    let log = daemon.log();
    assert!(log.contains("cjsm-milter listening"), "{log}");
    assert_no_password("the milter's log", &log);
    assert!(!log.contains("a-New-Secret-55"), "{log}");
}

/// A wrong password, a missing or foreign client certificate, a password file every user may
/// read: `run` and the admin commands stop at start with an error naming the file and the
/// user, never the password.
#[test]
fn a_wrong_login_stops_the_milter_and_the_cli_at_start() {
    let hub = Hub::start();
    let wrong = hub.path("wrong.pass");
    private_file(&wrong, "not-the-Pa55word\n");
    let foreign = RedisPki::create(&hub.path("foreign"), "Some Other CA");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "wrong password",
            hub.store_section("cjsm-milter", &wrong, hub.client_cert()),
            vec!["cjsm-milter", "wrong.pass"],
        ),
        (
            "no client certificate",
            hub.store_section("cjsm-milter", &hub.path("milter.pass"), None),
            vec!["cjsm-milter", "milter.pass"],
        ),
        (
            "a client certificate from another CA",
            hub.store_section(
                "cjsm-milter",
                &hub.path("milter.pass"),
                Some((&foreign.client_cert, &foreign.client_key)),
            ),
            vec!["foreign/redis-client.crt"],
        ),
    ];
    for (what, section, named) in &cases {
        let config = hub.path("bad.toml");
        std::fs::write(&config, section).unwrap();
        let config = config.to_str().unwrap();
        for args in [
            vec!["--config", config, "run"],
            vec!["--config", config, "directory", "org", "list"],
            vec!["--config", config, "audit", "tail", "-n", "1"],
        ] {
            let (out, exited) = run_for(&args, Duration::from_secs(20), None);
            assert!(exited, "{what}: {args:?} did not stop: {}", out.stderr);
            eprintln!("{what}, {}: {}", args[2], out.stderr.trim());
            assert!(!out.status.success(), "{what}: {args:?} succeeded");
            assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
            assert!(
                out.stderr.contains("opening the directory store"),
                "{what}: {}",
                out.stderr
            );
            for name in named {
                assert!(
                    out.stderr.contains(name),
                    "{what}: {name} not named: {}",
                    out.stderr
                );
            }
            assert_no_password(what, &format!("{}{}", out.stdout, out.stderr));
            assert!(!out.stderr.contains("not-the-"), "{}", out.stderr);
        }
    }

    // A password file every user may read is refused before it is used.
    let open = hub.path("open.pass");
    std::fs::write(&open, format!("{MILTER_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = hub.path("open.toml");
    std::fs::write(
        &config,
        hub.store_section("cjsm-milter", &open, hub.client_cert()),
    )
    .unwrap();
    let (out, exited) = run_for(
        &["--config", config.to_str().unwrap(), "run"],
        Duration::from_secs(20),
        None,
    );
    assert!(exited && !out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("open.pass"), "{}", out.stderr);
    assert!(out.stderr.contains("every user"), "{}", out.stderr);
    assert_no_password("a refused password file", &out.stderr);
    // `config check` reads the files too, and says so before any start.
    let checked = run_cli(None, b"", &["config", "check", config.to_str().unwrap()]);
    assert!(!checked.status.success(), "{}", checked.stdout);
    assert!(
        checked.stderr.contains("open.pass") && checked.stderr.contains("every user"),
        "{}",
        checked.stderr
    );
    assert_no_password("config check", &checked.stderr);
    let good = hub.path("good.toml");
    std::fs::write(
        &good,
        hub.store_section("cjsm-milter", &hub.path("milter.pass"), hub.client_cert()),
    )
    .unwrap();
    run_cli(None, b"", &["config", "check", good.to_str().unwrap()]).success();

    // The right login still works on the same server: the failures were the login's.
    let listed = cli_ok(&hub.admin_config(), &["directory", "org", "list"]);
    assert_no_password("org list", &listed);
}

/// A Sentinel URL: the master the Sentinel names is reached over TLS with the client
/// certificate and logged into as the milter's user (with `+role`, which the client asks to
/// be sure it reached the master); a wrong password fails naming the file.
#[tokio::test]
async fn the_master_a_sentinel_names_is_reached_with_the_login_and_the_certificate() {
    use cjsm_milter::config::Config;
    use cjsm_milter::store::{self, Access};
    let hub = Hub::start();
    let admin = hub.admin_config_with_hartley();
    cli_add_user(&admin, HUB_USER, "hartley", "Alice", "Jones");
    assert_eq!(
        hub.root(&["ACL", "SETUSER", "cjsm-milter", "+role"]).trim(),
        "OK"
    );
    // The Sentinel itself monitors the master over TLS, as a user of its own.
    let sentinel = RedisProcess::start(
        Some(&format!(
            "port {{port}}\nbind 127.0.0.1\ndir {{dir}}\n\
             tls-replication yes\ntls-cert-file {}\ntls-key-file {}\n\
             tls-client-cert-file {}\ntls-client-key-file {}\ntls-ca-cert-file {}\n\
             sentinel monitor cjsm 127.0.0.1 {} 1\n\
             sentinel auth-user cjsm root\nsentinel auth-pass cjsm {ROOT_PASSWORD}\n\
             sentinel down-after-milliseconds cjsm 5000\n",
            hub.pki.server_cert.display(),
            hub.pki.server_key.display(),
            hub.pki.client_cert.display(),
            hub.pki.client_key.display(),
            hub.pki.ca.display(),
            hub.redis.port
        )),
        &["--sentinel"],
    );
    let section = |password: &Path| {
        hub.store_section("cjsm-milter", password, hub.client_cert())
            .replace(
                &format!("rediss://127.0.0.1:{}/", hub.redis.port),
                &format!("redis+sentinel://127.0.0.1:{}/cjsm", sentinel.port),
            )
    };
    let config = Config::parse(&section(&hub.path("milter.pass"))).unwrap();
    let directory = store::open(&config.store, Access::ReadOnly).await.unwrap();
    let found = directory.lookup(HUB_USER).await.unwrap();
    assert_eq!(found.user.map(|u| u.address).as_deref(), Some(HUB_USER));

    let wrong = hub.path("wrong.pass");
    private_file(&wrong, "not-the-Pa55word\n");
    let config = Config::parse(&section(&wrong)).unwrap();
    let err = match store::open(&config.store, Access::ReadOnly).await {
        Ok(directory) => directory.lookup(HUB_USER).await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!("through the Sentinel, a wrong password: {err}");
    assert!(
        err.contains("wrong.pass") && err.contains("cjsm-milter"),
        "{err}"
    );
    assert_no_password("a Sentinel error", &err);
}
