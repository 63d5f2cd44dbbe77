//! The website's common ground, on both stores: starting it, signing in with a one-time
//! password and having to change it, the password rules, the cookies' flags, the form tokens,
//! the sign-in throttles, and what it records (audit trail, metrics).

mod common;

use common::browser::Browser;
use common::web::{Backend, WebSite};

const OPERATOR: &str = "operator@hub.example.uk";

#[tokio::test]
async fn a_first_sign_in_must_change_the_one_time_password_in_a_browser() {
    let site = WebSite::start(Backend::Sqlite);
    let one_time = site.add_operator(OPERATOR);
    let browser = Browser::start(&site.base).await;
    browser.goto("/").await;
    browser.screenshot("home").await;
    browser.goto("/sign-in").await;
    browser.fill("#login", OPERATOR).await;
    browser.fill("#password", &one_time).await;
    browser.screenshot("sign-in").await;
    browser.click("#sign-in").await;
    assert_eq!(
        browser.path().await,
        "/password",
        "{}",
        browser.source().await
    );
    assert!(
        browser
            .text("#must-change")
            .await
            .contains("one-time password")
    );
    // Anywhere else leads back here until it is changed.
    browser.goto("/").await;
    assert_eq!(browser.path().await, "/password");
    // A short password and a common one are refused, with the reason.
    for (new, reason) in [
        ("short", "at least 12 characters"),
        ("Password123!", "too common"),
    ] {
        let problem = browser
            .change_password(&one_time, new)
            .await
            .unwrap_or_default();
        assert!(problem.contains(reason), "{new}: {problem}");
    }
    browser.screenshot("operator-password-refused").await;
    assert_eq!(
        browser
            .change_password(&one_time, "orchid lantern harbour")
            .await,
        None
    );
    assert_eq!(browser.path().await, "/?changed=password");
    assert!(browser.source().await.contains("hub operator"));
    browser.screenshot("signed-in").await;
    // Signed out, the new password works and the one-time one no longer does.
    browser.click("form[action='/sign-out'] button").await;
    assert_eq!(browser.path().await, "/");
    browser.goto("/sign-in").await;
    browser.fill("#login", OPERATOR).await;
    browser.fill("#password", &one_time).await;
    browser.click("#sign-in").await;
    assert!(browser.text("#problem").await.contains("do not match"));
    browser.fill("#password", "orchid lantern harbour").await;
    browser.click("#sign-in").await;
    assert_eq!(browser.path().await, "/");
    browser.close().await;
}

async fn sign_in_rules(backend: Backend) {
    let site = WebSite::start(backend);
    let one_time = site.add_operator(OPERATOR);
    let http = site.http();
    // The form token is a cookie of its own before sign-in, HttpOnly and SameSite=Strict.
    let page = http.get("/sign-in").await;
    let cookie = page.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    // Without the token, or with another, the sign-in is refused before the password is read.
    for fields in [
        vec![("login", OPERATOR), ("password", one_time.as_str())],
        vec![
            (
                "csrf",
                "0000000000000000000000000000000000000000000000000000000000000000",
            ),
            ("login", OPERATOR),
            ("password", one_time.as_str()),
        ],
    ] {
        let page = http.post("/sign-in", &fields).await;
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(http.cookie("cjsm_session").is_none());
    }
    let page = http.sign_in(OPERATOR, &one_time).await;
    assert_eq!(page.status, 303);
    let cookie = page
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with("cjsm_session="))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // Signed in, the form token is the session's: the anonymous one no longer does.
    let anonymous = http.cookie("cjsm_form").unwrap();
    let page = http
        .post(
            "/password",
            &[
                ("csrf", anonymous.as_str()),
                ("current", one_time.as_str()),
                ("new", "orchid lantern harbour"),
                ("confirm", "orchid lantern harbour"),
            ],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    http.first_sign_in_continue(&one_time, "orchid lantern harbour")
        .await;

    // Five wrong passwords lock the account: the right one is refused while it is locked.
    let attacker = site.http();
    for _ in 0..5 {
        let page = attacker.sign_in(OPERATOR, "wrong password here").await;
        assert_eq!(page.status, 401, "{}", page.body);
    }
    let page = attacker.sign_in(OPERATOR, "orchid lantern harbour").await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.body.contains("locked"), "{}", page.body);
    let audit = site.audit(50).await;
    assert!(
        audit.iter().any(|e| e["action"] == "web account locked"
            && e["target"] == OPERATOR
            && e["client"] == "127.0.0.1"),
        "{audit:?}"
    );
    // The hub operator can unlock it from the command line, with a new one-time password.
    let again = site.cli(&["web", "reset-password", OPERATOR]).success();
    let one_time = again.stdout.trim().to_string();
    assert_eq!(attacker.sign_in(OPERATOR, &one_time).await.status, 303);

    // Twenty failed or refused attempts from one address throttle the address, for every
    // account: the five wrong passwords and the refused one above came from this address too.
    let other = site.http();
    for i in 0..14 {
        let page = other
            .sign_in(&format!("nobody{i}@example.uk"), "wrong password here")
            .await;
        assert_eq!(page.status, 401, "attempt {i}: {}", page.body);
    }
    let fresh = site.http();
    let page = fresh.sign_in(OPERATOR, &one_time).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(
        page.body
            .contains("Too many failed sign-ins from your address")
    );
    let (status, ready) = common::daemon::http_get(
        std::net::SocketAddr::from(([127, 0, 0, 1], site.metrics_port)),
        "/readyz",
    );
    assert_eq!(status, 200, "the website's /readyz: {ready}");
    let metrics = site.metrics();
    for (result, at_least) in [("ok", 2), ("failed", 19), ("locked", 2)] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("cjsm_web_sign_ins_total{{result=\"{result}\"}}")))
            .unwrap_or_else(|| panic!("no {result} series:\n{metrics}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= at_least as f64, "{line}");
    }
    let audit = site.audit(100).await;
    assert!(
        audit.iter().any(|e| e["action"] == "web address throttled"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "web sign-in" && e["actor"] == OPERATOR),
        "{audit:?}"
    );
}

#[tokio::test]
async fn sign_in_rules_on_the_embedded_store() {
    sign_in_rules(Backend::Sqlite).await;
}

#[tokio::test]
async fn sign_in_rules_on_redis() {
    sign_in_rules(Backend::Redis).await;
}

/// Every form the website has, posted without its token and with a wrong one, by someone
/// signed in with the role the form is for: 403 each time.
#[tokio::test]
async fn every_form_needs_its_token() {
    let site = WebSite::start(Backend::Sqlite);
    let one_time = site.add_operator(OPERATOR);
    let http = site.http();
    http.first_sign_in(OPERATOR, &one_time, "orchid lantern harbour")
        .await;
    http.assert_forms_need_their_token(
        &["/password", "/sign-out"],
        &[
            ("current", "orchid lantern harbour"),
            ("new", "another long password"),
            ("confirm", "another long password"),
        ],
    )
    .await;
    // Still signed in with the same password: nothing was changed.
    assert_eq!(http.get("/").await.status, 200);
    assert_eq!(
        site.http()
            .sign_in(OPERATOR, "orchid lantern harbour")
            .await
            .status,
        303
    );
}

/// Over HTTPS (rustls, the configured certificate), cookies are `Secure`; the certificate is
/// the one configured, verified by curl against its CA.
#[test]
fn the_website_serves_https_with_secure_cookies() {
    use std::os::unix::fs::PermissionsExt as _;
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = common::pki::Pki::create(pki_dir.path());
    // The key must be private to be read at all.
    std::fs::set_permissions(&pki.hub_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let site = WebSite::start_with(
        Backend::Sqlite,
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            pki.hub_cert.display(),
            pki.hub_key.display()
        ),
    );
    assert!(site.log().contains("https=true"), "{}", site.log());
    let port = site.base.rsplit(':').next().unwrap().to_string();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(&pki.ca)
        .args([
            "--resolve",
            &format!("mx.test.local:{port}:127.0.0.1"),
            &format!("https://mx.test.local:{port}/sign-in"),
        ])
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{headers}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    let cookie = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: cjsm_form="))
        .unwrap_or_else(|| panic!("{headers}"));
    for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    // Plain HTTP to the HTTPS port gets no page.
    let plain = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
}

/// A key file every user may read is refused at start, naming the setting and the file.
#[test]
fn a_key_open_to_everyone_stops_the_website_at_start() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = common::pki::Pki::create(pki_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cjsm.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nallow_root = true\n[store]\npath = \"{}/store\"\n[web]\nlisten = \"127.0.0.1:{}\"\n\
             metrics_listen = \"\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            dir.path().display(),
            common::free_port(),
            pki.hub_cert.display(),
            pki.hub_key.display()
        ),
    )
    .unwrap();
    let (out, exited) = common::cli::run_for(
        &["--config", config.to_str().unwrap(), "web"],
        std::time::Duration::from_secs(20),
        None,
    );
    assert!(exited, "the website started with a key open to everyone");
    assert!(!out.status.success());
    assert!(out.stderr.contains("tls_key_file"), "{}", out.stderr);
    assert!(out.stderr.contains("hub.key"), "{}", out.stderr);
}

/// Behind a reverse proxy on loopback that serves HTTPS: cookies are `Secure`, and the
/// client is the address the proxy forwards, for the throttle as for the audit trail.
#[tokio::test]
async fn behind_a_proxy_the_forwarded_client_is_throttled_and_audited() {
    let site = WebSite::start_with(Backend::Sqlite, "behind_https_proxy = true\n");
    let one_time = site.add_operator(OPERATOR);
    let mut attacker = site.http();
    attacker.forwarded_for = Some("198.51.100.1, 203.0.113.9".into());
    let page = attacker.get("/sign-in").await;
    assert!(page.header("set-cookie").unwrap().contains("Secure"));
    for i in 0..20 {
        let page = attacker
            .sign_in(&format!("nobody{i}@example.uk"), "wrong password here")
            .await;
        assert_eq!(page.status, 401, "attempt {i}");
    }
    assert_eq!(attacker.sign_in(OPERATOR, &one_time).await.status, 429);
    // Another client behind the same proxy is not throttled.
    let mut colleague = site.http();
    colleague.forwarded_for = Some("203.0.113.10".into());
    assert_eq!(colleague.sign_in(OPERATOR, &one_time).await.status, 303);
    let audit = site.audit(50).await;
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "web address throttled" && e["client"] == "203.0.113.9"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "web sign-in" && e["client"] == "203.0.113.10"),
        "{audit:?}"
    );
}

/// A suspension made on the command line ends the user's sessions at their next request, as
/// one made on the website does: every request checks the directory.
#[tokio::test]
async fn a_user_suspended_on_the_command_line_is_signed_out_at_once() {
    let site = WebSite::start(Backend::Sqlite);
    site.onboard("firm", "Hartley Law", "hartleylaw.co.uk", "server", &[]);
    let address = "alice@hartleylaw.co.uk.cjsm.net";
    site.cli(&[
        "directory",
        "user",
        "add",
        address,
        "--org",
        "firm",
        "--first-name",
        "Alice",
        "--last-name",
        "Jones",
    ])
    .success();
    let one_time = site
        .create_account(
            address,
            cjsm_milter::web::accounts::Role::User,
            Some("firm"),
        )
        .await;
    let http = site.http();
    http.first_sign_in(address, &one_time, "orchid lantern harbour")
        .await;
    assert_eq!(http.get("/password").await.status, 200);
    // Another session, which asks for nothing while the user is suspended.
    let quiet = site.http();
    assert_eq!(
        quiet
            .sign_in(address, "orchid lantern harbour")
            .await
            .status,
        303
    );
    site.cli(&["directory", "user", "suspend", address])
        .success();
    let page = http.get("/password").await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), Some("/sign-in"));
    let page = site.http().sign_in(address, "orchid lantern harbour").await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("suspended"), "{}", page.body);
    site.cli(&["directory", "user", "reactivate", address])
        .success();
    // The sessions from before the suspension do not come back; a new sign-in works.
    for session in [&http, &quiet] {
        let page = session.get("/password").await;
        assert_eq!(page.location(), Some("/sign-in"), "{}", page.body);
    }
    assert_eq!(
        site.http()
            .sign_in(address, "orchid lantern harbour")
            .await
            .status,
        303
    );
}

/// Many sign-ins at once get no more guesses than one after another: each attempt is counted
/// before its password is checked.
#[tokio::test]
async fn sign_ins_at_once_get_no_more_guesses_than_one_after_another() {
    let site = WebSite::start(Backend::Sqlite);
    let one_time = site.add_operator(OPERATOR);
    site.http()
        .first_sign_in(OPERATOR, &one_time, "orchid lantern harbour")
        .await;
    let clients: Vec<_> = (0..16).map(|_| site.http()).collect();
    for client in &clients {
        client.get("/sign-in").await;
    }
    let attempts = clients.iter().map(|client| async move {
        let token = client.cookie("cjsm_form").unwrap();
        client
            .post(
                "/sign-in",
                &[
                    ("csrf", token.as_str()),
                    ("login", OPERATOR),
                    ("password", "a wrong guess at it"),
                ],
            )
            .await
            .status
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let guesses = statuses.iter().filter(|&&s| s == 401).count();
    assert!(
        guesses <= 5,
        "{guesses} guesses checked at once: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    let page = site
        .http()
        .sign_in(OPERATOR, "orchid lantern harbour")
        .await;
    assert_eq!(page.status, 429, "{}", page.body);
}

/// An account made for an address in one organisation (say, the contact an application named)
/// opens no mailbox of that address as a user of another organisation.
#[tokio::test]
async fn an_account_of_another_organisation_opens_no_mailbox() {
    use cjsm_milter::web::accounts::{self, MailLogin, Role};
    let site = WebSite::start(Backend::Sqlite);
    site.onboard("alpha", "Alpha Chambers", "alpha.co.uk", "mailbox", &[]);
    site.onboard("evil", "Evil Ltd", "evil.co.uk", "mailbox", &[]);
    let address = "x@alpha.co.uk.cjsm.net";
    // The account is Evil's administrator's; the address then becomes a user of Alpha.
    site.create_account(address, Role::OrgAdmin, Some("evil"))
        .await;
    site.cli(&[
        "directory",
        "user",
        "add",
        address,
        "--org",
        "alpha",
        "--first-name",
        "X",
        "--last-name",
        "Y",
    ])
    .success();
    let store = site.store().await;
    let now = cjsm_milter::clock::now_unix();
    let hash = cjsm_milter::web::password::hash("orchid lantern harbour");
    accounts::update(store.as_ref(), address, now, |a| {
        a.password_hash.clone_from(&hash);
        a.must_change = false;
        true
    })
    .await
    .unwrap();
    let answer = accounts::mail_login(store.as_ref(), address, "orchid lantern harbour", now)
        .await
        .unwrap();
    assert!(matches!(answer, MailLogin::Refused(_)), "{answer:?}");
    // The same account made as Alpha's user's own is granted.
    let mut own = accounts::load(store.as_ref(), address, now)
        .await
        .unwrap()
        .unwrap();
    own.account.org = Some("alpha".into());
    own.account.role = Role::User;
    assert!(
        accounts::swap(store.as_ref(), Some(own.revision), &own.account, now)
            .await
            .unwrap()
    );
    let answer = accounts::mail_login(store.as_ref(), address, "orchid lantern harbour", now)
        .await
        .unwrap();
    assert_eq!(answer, MailLogin::Granted);
}
