//! Mail sign-in with the website's password, as dovecot/README.md sets it up: a real Dovecot
//! whose passdb is `cjsm-milter dovecot-auth` (checkpassword), its auth process running as the
//! `dovecot` user with only the store's group added, asked with `doveadm auth test` (as
//! Postfix's SMTP AUTH asks it) and, end to end, by a private Postfix with Dovecot SASL in
//! front of the milter.

mod common;

use cjsm_milter::config::Config;
use cjsm_milter::store::{self, Access, Directory};
use cjsm_milter::web::accounts::{self, Role};
use cjsm_milter::web::password;
use common::cli::{cli_add_user, cli_ok, onboard};
use common::daemon::Daemon;
use common::dovecot::{Auth, Dovecot, STORE_GROUP, config_file, reachable_dir, store_dir};
use common::pki::Pki;
use common::postfix::{Sink, dovecot_auth_socket, milter_config, start_hub_with_dovecot_sasl};
use common::redis::RedisServer;
use common::web::{Backend, WebSite};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

const SMITH: &str = "smithchambers.cjsm.net";

fn address(name: &str) -> String {
    format!("{name}@{SMITH}")
}

/// The password `login` chose on the website: each its own, so that a log can be searched
/// for it, and without the address in it, which the website refuses.
fn chosen(login: &str) -> String {
    let local = login.split('@').next().unwrap();
    format!(
        "violet kettle {} harbour",
        local.chars().rev().collect::<String>()
    )
}

async fn open(config: &Path) -> Arc<dyn Directory> {
    let config = Config::load(config).unwrap();
    store::open(&config.store, Access::ReadWrite).await.unwrap()
}

/// An account for `login` with its one-time password (answered), as an Organisation
/// Administrator's "add user" makes it.
async fn account(store: &dyn Directory, login: &str, role: Role, org: Option<&str>) -> String {
    accounts::create(store, login, role, org, now())
        .await
        .unwrap()
        .expect("a new account")
}

/// The one-time password changed to [`chosen`], as the website's password page does.
async fn change_password(store: &dyn Directory, login: &str) {
    let hash = password::hash(&chosen(login));
    accounts::update(store, login, now(), |account| {
        account.password_hash.clone_from(&hash);
        account.must_change = false;
        account.generation += 1;
        true
    })
    .await
    .unwrap()
    .expect("the account exists");
}

/// Whether dovecot-auth logged `outcome` for `login` (a line of Dovecot's log).
fn logged(log: &str, login: &str, outcome: &str) -> bool {
    log.lines()
        .any(|line| line.contains(&format!("login=\"{login}\"")) && line.contains(outcome))
}

fn now() -> u64 {
    cjsm_milter::clock::now_unix()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_sign_in_asks_the_directory_on_the_embedded_store() {
    let lab = reachable_dir();
    let store_path = store_dir(lab.path());
    let config = config_file(
        lab.path(),
        &format!("[store]\npath = \"{}\"\n", store_path.display()),
    );
    // Held open for the whole test, as the running milter and website hold it: a reader
    // that may not write the store needs the database's -shm file, which only they create.
    let store = open(&config).await;
    onboard(&config, "smith", "Smith Chambers", SMITH, "mailbox");
    onboard(
        &config,
        "jones",
        "Jones Chambers",
        "joneschambers.cjsm.net",
        "mailbox",
    );
    for name in ["alice", "bob", "carol", "dave"] {
        cli_add_user(&config, &address(name), "smith", name, "Smith");
    }
    let erin = "erin@joneschambers.cjsm.net";
    cli_add_user(&config, erin, "jones", "Erin", "Jones");
    let operator = "operator@hub.cjsm.net";
    let mut one_time = std::collections::HashMap::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let login = address(name);
        one_time.insert(
            name,
            account(store.as_ref(), &login, Role::User, Some("smith")).await,
        );
        if name != "bob" {
            change_password(store.as_ref(), &login).await;
        }
    }
    account(store.as_ref(), erin, Role::User, Some("jones")).await;
    change_password(store.as_ref(), erin).await;
    account(store.as_ref(), operator, Role::Operator, None).await;
    change_password(store.as_ref(), operator).await;
    cli_ok(
        &config,
        &["directory", "user", "suspend", &address("carol")],
    );
    cli_ok(&config, &["directory", "user", "delete", &address("dave")]);
    cli_ok(&config, &["directory", "org", "suspend", "jones"]);

    let dovecot = Dovecot::start(lab.path(), &config, &lab.path().join("auth"), |kit| kit);
    let alice = address("alice");
    assert_eq!(
        dovecot.auth_test(&alice, &chosen(&alice)),
        Auth::Granted(alice.clone()),
        "{}",
        dovecot.log()
    );
    // The login as typed, in any case: Dovecot (and so Postfix) carries on with the
    // directory's spelling.
    assert_eq!(
        dovecot.auth_test("Alice@SmithChambers.cjsm.net", &chosen(&alice)),
        Auth::Granted(alice.clone())
    );
    let bob = address("bob");
    let refused = [
        (
            "wrong password",
            alice.clone(),
            "not her password".to_string(),
        ),
        (
            "one-time password not yet changed",
            bob.clone(),
            one_time["bob"].clone(),
        ),
        (
            "suspended user",
            address("carol"),
            chosen(&address("carol")),
        ),
        ("deleted user", address("dave"), chosen(&address("dave"))),
        (
            "no such account",
            address("nobody"),
            chosen(&address("nobody")),
        ),
        ("organisation suspended", erin.to_string(), chosen(erin)),
        (
            "hub operator (no mailbox)",
            operator.to_string(),
            chosen(operator),
        ),
    ];
    for (case, login, password) in &refused {
        assert_eq!(
            dovecot.auth_test(login, password),
            Auth::Refused,
            "{case}: {}",
            dovecot.log()
        );
    }

    // One line per attempt in Dovecot's log, with the login and the outcome; no password.
    let log = dovecot.log();
    for (login, outcome) in [
        (alice.as_str(), "result=granted"),
        (
            bob.as_str(),
            "result=refused reason=\"one-time password not yet changed",
        ),
        (
            &address("carol"),
            "result=refused reason=\"user suspended or deleted\"",
        ),
        (erin, "result=refused reason=\"organisation not active\""),
        (
            &address("nobody"),
            "result=refused reason=\"no such account\"",
        ),
        (alice.as_str(), "result=refused reason=\"wrong password\""),
    ] {
        assert!(logged(&log, login, outcome), "{login} {outcome}: {log}");
    }
    for (_, login, password) in &refused {
        assert!(
            !log.contains(password.as_str()),
            "{login}'s password logged: {log}"
        );
    }
    assert!(!log.contains(&chosen(&alice)), "{log}");

    // Nothing holds the store open (the milter and the website stopped): the reader cannot
    // make the -shm file in a directory it may not write, so every sign-in is a temporary
    // failure, never a grant or a "wrong password".
    drop(store);
    assert_eq!(
        dovecot.auth_test(&alice, &chosen(&alice)),
        Auth::TemporaryFailure,
        "{}",
        dovecot.log()
    );
    assert!(
        dovecot.log().contains("result=temporary-failure"),
        "{}",
        dovecot.log()
    );
}

/// The store's group is what lets Dovecot's auth process read the store: without the kit's
/// `extra_groups`, the `dovecot` user cannot, and every sign-in is a temporary failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_store_group_dovecot_cannot_read_the_store() {
    let lab = reachable_dir();
    let store_path = store_dir(lab.path());
    let config = config_file(
        lab.path(),
        &format!("[store]\npath = \"{}\"\n", store_path.display()),
    );
    let store = open(&config).await;
    onboard(&config, "smith", "Smith Chambers", SMITH, "mailbox");
    let alice = address("alice");
    cli_add_user(&config, &alice, "smith", "Alice", "Smith");
    account(store.as_ref(), &alice, Role::User, Some("smith")).await;
    change_password(store.as_ref(), &alice).await;

    let dovecot = Dovecot::start(lab.path(), &config, &lab.path().join("auth"), |kit| {
        let without = kit.replace("  extra_groups = nogroup\n", "");
        assert_ne!(
            without, kit,
            "the kit gives the auth process the store's group"
        );
        without
    });
    assert_eq!(
        dovecot.auth_test(&alice, &chosen(&alice)),
        Auth::TemporaryFailure,
        "{}",
        dovecot.log()
    );
    assert!(
        dovecot.log().contains("Permission denied"),
        "{}",
        dovecot.log()
    );
}

/// End to end, as people use it: an Organisation Administrator adds a user on the website,
/// the user changes the one-time password there, then logs in to Postfix's submission
/// service (SMTP AUTH), which asks Dovecot, which asks `cjsm-milter dovecot-auth`; the milter
/// trusts the mail because its sender logged in as itself. The milter, the website and
/// Dovecot share one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_auth_with_the_password_chosen_on_the_website() {
    const ADMIN: &str = "admin@smithchambers.co.uk";
    let site = WebSite::start(Backend::Sqlite);
    // The store as installed: the service account's (nobody here), 0750, its files 0640; the
    // website's directory opened so that the dovecot user can reach the store in it.
    let store_path = site.dir.path().join("store");
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = std::process::Command::new("chown")
        .args(["-R", common::dovecot::STORE_OWNER])
        .arg(&store_path)
        .status()
        .unwrap();
    assert!(status.success());
    let lab = reachable_dir();
    let pki = Pki::create(&lab.path().join("pki"));
    let sink = Sink::start(lab.path());
    let socketmap_port = common::free_port();
    let submission_port = common::free_port();
    // Dovecot first: Postfix finds its socket at start. It reads the milter's config, written
    // once the hub's paths are known (the file is read at every sign-in).
    let auth_socket = dovecot_auth_socket(lab.path());
    let auth_config = config_file(
        lab.path(),
        &format!("[store]\npath = \"{}\"\n", store_path.display()),
    );
    let dovecot = Dovecot::start(lab.path(), &auth_config, &auth_socket, |kit| kit);
    let hub = start_hub_with_dovecot_sasl(lab.path(), &pki, &sink, socketmap_port, submission_port);
    let milter_text = milter_config(&hub, &store_path, socketmap_port);
    config_file(lab.path(), &milter_text);
    let milter = Daemon::start(&milter_text);
    let alice = address("alice");
    let submit = |password: &str| {
        common::swaks_with(
            submission_port,
            &alice,
            "clerk@met.pnn.police.uk",
            "OFFICIAL: case papers",
            "Please see.",
            &[
                "--tls",
                "--auth",
                "PLAIN",
                "--auth-user",
                &alice,
                "--auth-password",
                password,
            ],
        )
    };

    // The Organisation Administrator adds Alice on the website: the page shows her one-time
    // password, once.
    site.onboard("smith", "Smith Chambers", SMITH, "mailbox", &[ADMIN]);
    let admin_password = site
        .create_account(ADMIN, Role::OrgAdmin, Some("smith"))
        .await;
    let admin = site.http();
    admin
        .first_sign_in(ADMIN, &admin_password, "tea lantern over the harbour")
        .await;
    let page = admin
        .submit(
            "/org/users/new",
            "/org/users/new",
            &[
                ("first_name", "Alice"),
                ("last_name", "Smith"),
                ("address", &alice),
                ("town", "London"),
                ("business_type", "Barristers"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let one_time = page
        .element("one-time-password")
        .unwrap_or_else(|| panic!("no one-time password on the page: {}", page.body));

    // Not with the one-time password: it must be changed on the website first.
    let dialogue = submit(&one_time);
    assert!(dialogue.contains("535 5.7.8"), "{dialogue}");
    assert!(
        logged(&dovecot.log(), &alice, "one-time password not yet changed"),
        "{}",
        dovecot.log()
    );

    // She signs in on the website and chooses her own: she logs in with it, and her mail is
    // trusted as hers.
    site.http()
        .first_sign_in(&alice, &one_time, &chosen(&alice))
        .await;
    let dialogue = submit(&chosen(&alice));
    assert!(
        dialogue.contains("235 2.7.0"),
        "{dialogue}\n{}\n{}",
        dovecot.log(),
        hub.maillog()
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let delivered = sink.wait_delivered(1);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(
        delivered[0].contains("X-CJSM-Marking: OFFICIAL"),
        "{}",
        delivered[0]
    );
    milter.wait_for_log("trust=smtp-auth");
    let log = milter.log();
    let line = log.lines().find(|l| l.contains("trust=smtp-auth")).unwrap();
    assert!(line.contains(&format!("sender={alice}")), "{line}");
    assert!(line.contains("action=accept"), "{line}");

    // The administrator suspends her on the website: she can no longer log in.
    let token = admin.get("/org/users").await.csrf();
    let page = admin
        .post(&format!("/org/users/{alice}/suspend"), &[("csrf", &token)])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let dialogue = submit(&chosen(&alice));
    assert!(dialogue.contains("535 5.7.8"), "{dialogue}");
    assert!(
        logged(
            &dovecot.log(),
            &alice,
            "result=refused reason=\"user suspended or deleted\""
        ),
        "{}",
        dovecot.log()
    );

    // The program cannot read its config (root's alone now): a temporary failure in Dovecot.
    // Postfix 3.7 tells the client no more than for a refusal.
    std::fs::set_permissions(&auth_config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dialogue = submit(&chosen(&alice));
    assert!(dialogue.contains("535 5.7.8"), "{dialogue}");
    assert!(
        logged(
            &dovecot.log(),
            &alice,
            "result=temporary-failure reason=\"config:"
        ),
        "{}",
        dovecot.log()
    );
    for secret in [one_time, chosen(&alice)] {
        assert!(!dovecot.log().contains(&secret), "{}", dovecot.log());
        assert!(!hub.maillog().contains(&secret), "{}", hub.maillog());
        assert!(!milter.log().contains(&secret), "{}", milter.log());
    }
    drop(hub);
}

/// On Redis: the program logs in with the `[store]` settings of the milter's config, its
/// password file readable through the group Dovecot's auth process is given; Redis stopped
/// means a temporary failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_sign_in_on_redis() {
    const REDIS_PASSWORD: &str = "redis-Pa55word-5e1c07";
    let mut redis = RedisServer::start();
    require_password(redis.port, REDIS_PASSWORD);
    let lab = reachable_dir();
    let password_file = lab.path().join("redis.pass");
    std::fs::write(&password_file, format!("{REDIS_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    common::postfix::chown_to(&password_file, &format!("root:{STORE_GROUP}"));
    let config = config_file(
        lab.path(),
        &format!(
            "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{}/\"\n\
             password_file = \"{}\"\nkey_prefix = \"hub\"\n",
            redis.port,
            password_file.display()
        ),
    );
    onboard(&config, "smith", "Smith Chambers", SMITH, "mailbox");
    for name in ["alice", "bob", "carol"] {
        cli_add_user(&config, &address(name), "smith", name, "Smith");
    }
    let store = open(&config).await;
    let mut one_time = std::collections::HashMap::new();
    for name in ["alice", "bob", "carol"] {
        let login = address(name);
        one_time.insert(
            name,
            account(store.as_ref(), &login, Role::User, Some("smith")).await,
        );
        if name != "bob" {
            change_password(store.as_ref(), &login).await;
        }
    }
    cli_ok(
        &config,
        &["directory", "user", "suspend", &address("carol")],
    );

    let dovecot = Dovecot::start(lab.path(), &config, &lab.path().join("auth"), |kit| kit);
    let (alice, bob, carol) = (address("alice"), address("bob"), address("carol"));
    assert_eq!(
        dovecot.auth_test(&alice, &chosen(&alice)),
        Auth::Granted(alice.clone()),
        "{}",
        dovecot.log()
    );
    assert_eq!(dovecot.auth_test(&alice, "not her password"), Auth::Refused);
    assert_eq!(dovecot.auth_test(&bob, &one_time["bob"]), Auth::Refused);
    assert_eq!(dovecot.auth_test(&carol, &chosen(&carol)), Auth::Refused);
    assert!(!dovecot.log().contains(REDIS_PASSWORD), "{}", dovecot.log());

    // Redis stopped: neither a grant nor a "wrong password".
    redis.stop();
    assert_eq!(
        dovecot.auth_test(&alice, &chosen(&alice)),
        Auth::TemporaryFailure,
        "{}",
        dovecot.log()
    );
    assert!(
        logged(&dovecot.log(), &alice, "result=temporary-failure"),
        "{}",
        dovecot.log()
    );
}

/// `CONFIG SET requirepass`: from now on the server wants the password.
fn require_password(port: u16, password: &str) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(stream, "CONFIG SET requirepass {password}\r\n").unwrap();
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}

/// The checkpassword interface without Dovecot: descriptor 3 in, the reply program run with
/// `USER` on a grant, the exit statuses otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpassword_interface() {
    let lab = reachable_dir();
    let store_path = store_dir(lab.path());
    let config = config_file(
        lab.path(),
        &format!("[store]\npath = \"{}\"\n", store_path.display()),
    );
    let store = open(&config).await;
    onboard(&config, "smith", "Smith Chambers", SMITH, "mailbox");
    let alice = address("alice");
    cli_add_user(&config, &alice, "smith", "Alice", "Smith");
    account(store.as_ref(), &alice, Role::User, Some("smith")).await;
    change_password(store.as_ref(), &alice).await;
    let password = chosen(&alice);
    let reply = ["/bin/sh", "-c", "printf 'reply ran for %s' \"$USER\""];

    // Granted: the reply program runs in its place, with the directory's spelling.
    let input = format!("ALICE@SmithChambers.cjsm.net\0{password}\01764000000\0");
    let (status, stdout, stderr) = checkpassword(&config, Some(input.as_bytes()), &reply);
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(stdout, format!("reply ran for {alice}"));
    assert!(stderr.contains("result=granted"), "{stderr}");
    assert!(!stderr.contains(&password), "{stderr}");
    // Refused: 1, and the reply program does not run.
    let input = format!("{alice}\0not her password\0");
    let (status, stdout, stderr) = checkpassword(&config, Some(input.as_bytes()), &reply);
    assert_eq!((status, stdout.as_str()), (Some(1), ""), "{stderr}");
    // More than 1 KB on descriptor 3: refused unread.
    let long = format!("{alice}\0{}\0", "x".repeat(2000));
    let (status, _, stderr) = checkpassword(&config, Some(long.as_bytes()), &reply);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("more than 1024 bytes"), "{stderr}");
    // Run by hand, without descriptor 3 (the number then belongs to the program's own
    // runtime): a temporary failure that says what the program is for.
    let (status, _, stderr) = checkpassword(&config, None, &reply);
    assert_eq!(status, Some(111), "{stderr}");
    assert!(
        stderr.contains("descriptor 3 was not handed over"),
        "{stderr}"
    );
    // Granted but no reply program to run: not a grant.
    let input = format!("{alice}\0{password}\0");
    let (status, _, stderr) = checkpassword(&config, Some(input.as_bytes()), &[]);
    assert_eq!(status, Some(111), "{stderr}");
}

/// `cjsm-milter --config CONFIG dovecot-auth REPLY…` with `input` on descriptor 3 (a pipe, as
/// Dovecot gives it): exit status, standard output, standard error.
fn checkpassword(
    config: &Path,
    input: Option<&[u8]>,
    reply: &[&str],
) -> (Option<i32>, String, String) {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cjsm-milter"));
    command
        .arg("--config")
        .arg(config)
        .arg("dovecot-auth")
        .args(reply)
        .stdin(std::process::Stdio::null());
    let mut read_end: Option<OwnedFd> = None;
    if let Some(input) = input {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just made by pipe(2) and are owned here alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // The input fits the pipe's buffer: written and closed before the program starts.
        std::fs::File::from(write).write_all(input).unwrap();
        let raw = read.as_raw_fd();
        // SAFETY: dup2(2) between fork and exec, allocation-free: the pipe becomes
        // descriptor 3 of the child (dup2 clears close-on-exec on it).
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        read_end = Some(read);
    } else {
        // SAFETY: close(2) between fork and exec: whatever this test process has at 3 (a
        // jobserver pipe, say) is not handed over.
        unsafe {
            command.pre_exec(|| {
                libc::close(3);
                Ok(())
            });
        }
    }
    let out = command.output().unwrap();
    drop(read_end);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
