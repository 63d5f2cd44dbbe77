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
use common::dovecot::{Auth, Dovecot, config_file, reachable_dir, store_dir};
use std::path::Path;
use std::sync::Arc;

const SMITH: &str = "smithchambers.cjsm.net";

fn address(name: &str) -> String {
    format!("{name}@{SMITH}")
}

/// The password `login` chose on the website (each its own, so a log can be searched for it).
fn chosen(login: &str) -> String {
    format!("violet kettle {} harbour", login.split('@').next().unwrap())
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
    for expected in [
        format!("login=\"{alice}\" result=granted"),
        format!("login=\"{bob}\" result=refused reason=\"one-time password not yet changed"),
        format!(
            "login=\"{}\" result=refused reason=\"user suspended or deleted\"",
            address("carol")
        ),
        format!("login=\"{erin}\" result=refused reason=\"organisation not active\""),
        format!(
            "login=\"{}\" result=refused reason=\"no such account\"",
            address("nobody")
        ),
        format!("login=\"{alice}\" result=refused reason=\"wrong password\""),
    ] {
        assert!(log.contains(&expected), "{expected}: {log}");
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
