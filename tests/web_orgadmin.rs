//! The Organisation Administrator's pages, on the real website (`cjsm-milter web`, started by
//! each test on a fresh store): the whole flow in a real browser (with the screenshots of
//! docs/web/) on both stores, and over plain HTTP the authorization rules — only within their
//! own organisation, only with the page's form token, only for administrators — and the
//! limits of the bulk upload.

mod common;

use cjsm_milter::clock::now_unix;
use cjsm_milter::directory::model::UserState;
use cjsm_milter::web::accounts::{self, Role};
use cjsm_milter::web::nominations::{self, Nomination, NominationState};
use common::browser::Browser;
use common::web::{Backend, Http, Page, WebSite};

/// The password every test person chooses after their one-time password.
const CHOSEN: &str = "correct horse battery staple";

const ALPHA_ADMIN: &str = "admin@alpha.co.uk";
const BETA_ADMIN: &str = "admin@beta.co.uk";
/// Alpha's users are under its hosted domain; so are Beta's under its own.
const ANN: &str = "ann@alpha.cjsm.net";
const BOB: &str = "bob@beta.cjsm.net";

/// Two active organisations, Alpha and Beta, each with its administrator's account (one-time
/// passwords answered) and one user with a sign-in account: Ann of Alpha, Bob of Beta.
struct TwoOrgs {
    site: WebSite,
    alpha_admin_password: String,
    beta_admin_password: String,
    ann_password: String,
    bob_password: String,
}

async fn two_orgs(backend: Backend) -> TwoOrgs {
    let site = WebSite::start(backend);
    site.onboard(
        "alpha",
        "Alpha Chambers",
        "alpha.cjsm.net",
        "mailbox",
        &[ALPHA_ADMIN],
    );
    site.onboard(
        "beta",
        "Beta Solicitors",
        "beta.cjsm.net",
        "mailbox",
        &[BETA_ADMIN],
    );
    for (address, org) in [(ANN, "alpha"), (BOB, "beta")] {
        site.cli(&[
            "directory",
            "user",
            "add",
            address,
            "--org",
            org,
            "--first-name",
            "Test",
            "--last-name",
            "Person",
        ])
        .success();
    }
    let alpha_admin_password = site
        .create_account(ALPHA_ADMIN, Role::OrgAdmin, Some("alpha"))
        .await;
    let beta_admin_password = site
        .create_account(BETA_ADMIN, Role::OrgAdmin, Some("beta"))
        .await;
    let ann_password = site.create_account(ANN, Role::User, Some("alpha")).await;
    let bob_password = site.create_account(BOB, Role::User, Some("beta")).await;
    TwoOrgs {
        site,
        alpha_admin_password,
        beta_admin_password,
        ann_password,
        bob_password,
    }
}

impl TwoOrgs {
    /// Alpha's administrator, signed in over HTTP with their own password.
    async fn alpha_admin(&self) -> Http {
        let http = self.site.http();
        http.first_sign_in(ALPHA_ADMIN, &self.alpha_admin_password, CHOSEN)
            .await;
        http
    }

    /// Everything the tests compare before and after a refused request: the users (with
    /// their states and details), the sign-in accounts, and the nominations.
    async fn snapshot(&self) -> String {
        let store = self.site.store().await;
        let now = now_unix();
        let mut out = String::new();
        for user in store.users().await.unwrap() {
            out.push_str(&format!("{user:?}\n"));
            if let Some(stored) = accounts::load(store.as_ref(), &user.address, now)
                .await
                .unwrap()
            {
                out.push_str(&format!("{:?} rev {}\n", stored.account, stored.revision));
            }
        }
        for org in ["alpha", "beta"] {
            for (n, revision) in nominations::of_org(store.as_ref(), org, now).await.unwrap() {
                out.push_str(&format!("{n:?} rev {revision}\n"));
            }
        }
        out
    }

    async fn user_state(&self, address: &str) -> Option<UserState> {
        let store = self.site.store().await;
        store.user(address).await.unwrap().map(|u| u.state)
    }

    async fn user_count(&self) -> usize {
        self.site.store().await.users().await.unwrap().len()
    }
}

/// A pending nomination of `address` in `org`, made through the library as the nomination
/// page makes it.
async fn nominate(site: &WebSite, org: &str, id: &str, address: &str, by: &str) {
    // "nora@…" is Nora.
    let local = address.split('@').next().unwrap_or("");
    let first_name = local[..1].to_uppercase() + &local[1..];
    let store = site.store().await;
    let now = now_unix();
    let nomination = Nomination {
        id: id.into(),
        org: org.into(),
        address: address.into(),
        first_name,
        last_name: "Nominee".into(),
        nominated_by: by.into(),
        state: NominationState::Pending,
        decided_by: None,
        created: now,
        updated: now,
    };
    assert!(
        nominations::swap(store.as_ref(), None, &nomination, now)
            .await
            .unwrap()
    );
}

async fn nomination_state(site: &WebSite, org: &str, id: &str) -> Option<NominationState> {
    let store = site.store().await;
    nominations::get(store.as_ref(), org, id, now_unix())
        .await
        .unwrap()
        .map(|(n, _)| n.state)
}

async fn account_of(site: &WebSite, login: &str) -> Option<(accounts::Account, u64)> {
    let store = site.store().await;
    let stored = accounts::load(store.as_ref(), login, now_unix())
        .await
        .unwrap();
    stored.map(|s| (s.account, s.revision))
}

fn assert_forbidden(page: &Page, what: &str) {
    assert_eq!(page.status, 403, "{what}: {}", page.body);
}

/// A CSV file for the bulk upload: the header and these rows.
fn csv(rows: &[String]) -> Vec<u8> {
    let mut file =
        String::from("secure_address,first_name,last_name,organisation,town,business_type\n");
    for row in rows {
        file.push_str(row);
        file.push('\n');
    }
    file.into_bytes()
}

// ----- The whole flow in a browser -------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_administrator_manages_users_in_a_browser_embedded_store() {
    browser_flow(Backend::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_administrator_manages_users_in_a_browser_on_redis() {
    browser_flow(Backend::Redis, false).await;
}

async fn browser_flow(backend: Backend, screenshots: bool) {
    let orgs = two_orgs(backend).await;
    let site = &orgs.site;
    let browser = Browser::start(&site.base).await;
    let shoot = |name: &'static str| {
        let browser = &browser;
        async move {
            if screenshots {
                browser.screenshot(name).await;
            }
        }
    };

    // The first sign-in, with the one-time password, asks for a password of their own.
    browser.goto("/sign-in").await;
    browser.fill("#login", ALPHA_ADMIN).await;
    browser.fill("#password", &orgs.alpha_admin_password).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.path().await, "/password");
    browser.fill("#current", &orgs.alpha_admin_password).await;
    browser.fill("#new", CHOSEN).await;
    browser.fill("#confirm", CHOSEN).await;
    browser.click("#change").await;

    // Adding one user: the one-time password is shown once.
    browser.goto("/org/users").await;
    browser.click("#add-user").await;
    browser.fill("#first_name", "Carol").await;
    browser.fill("#last_name", "Danvers").await;
    browser.fill("#address", "not-ours@beta.cjsm.net").await;
    browser.fill("#town", "Leeds").await;
    browser.fill("#business_type", "Barristers' chambers").await;
    browser.click("#add").await;
    // Refused by the rules: the values are kept for the correction.
    let problem = browser.text("#problem").await;
    assert!(
        problem.contains("not under organisation `alpha`'s domains"),
        "{problem}"
    );
    assert_eq!(
        browser.find("#town").await.prop("value").await.unwrap(),
        Some("Leeds".into())
    );
    browser.fill("#address", "carol@alpha.cjsm.net").await;
    browser.click("#add").await;
    let carol_password = browser.text("#one-time-password").await;
    assert!(carol_password.len() >= 12, "{carol_password}");
    shoot("org-user-added").await;
    // It signs Carol in (and must be changed first).
    let carol = site.http();
    carol
        .first_sign_in("carol@alpha.cjsm.net", &carol_password, CHOSEN)
        .await;

    // A bulk upload with problems: nothing imported, every problem named by its line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("users-with-errors.csv");
    std::fs::write(
        &bad,
        csv(&[
            "dan@alpha.cjsm.net,Dan,Smith,alpha,York,Solicitors".into(),
            "eve@elsewhere.cjsm.net,Eve,Jones,alpha,,".into(),
            "fay@alpha.cjsm.net,,Brown,Alpha Chambers,,".into(),
            "gus@beta.cjsm.net,Gus,Grey,beta,,".into(),
        ]),
    )
    .unwrap();
    let before = orgs.user_count().await;
    browser.goto("/org/users").await;
    browser.choose_file("#file", &bad).await;
    browser.click("#upload").await;
    let errors = browser.text("#upload-errors").await;
    for expected in [
        "line 3, field secure_address",
        "line 4, field first_name",
        "line 5, field organisation",
    ] {
        assert!(errors.contains(expected), "{expected} in {errors}");
    }
    assert!(!errors.contains("line 2"), "{errors}");
    assert_eq!(orgs.user_count().await, before, "nothing imported");
    shoot("org-upload-errors").await;

    // The corrected file: every new user's one-time password, once, in a table.
    let good = dir.path().join("users.csv");
    std::fs::write(
        &good,
        csv(&[
            "dan@alpha.cjsm.net,Dan,Smith,alpha,York,Solicitors".into(),
            "eve@alpha.cjsm.net,Eve,Jones,alpha,Hull,Police".into(),
            "fay@alpha.cjsm.net,Fay,Brown,Alpha Chambers,Leeds,Solicitors".into(),
        ]),
    )
    .unwrap();
    browser.choose_file("#file", &good).await;
    browser.click("#upload").await;
    let table = browser.text("#one-time-passwords").await;
    for address in ["dan@", "eve@", "fay@"] {
        assert!(table.contains(address), "{address} in {table}");
    }
    assert!(browser.text("#done").await.contains("3 added"));
    shoot("org-upload").await;
    assert_eq!(orgs.user_count().await, before + 3);

    // The list: Alpha's users only.
    browser.goto("/org/users").await;
    let list = browser.text("#org-users").await;
    for address in [ANN, "carol@", "dan@", "eve@", "fay@"] {
        assert!(list.contains(address), "{address} in {list}");
    }
    assert!(!list.contains(BOB), "{list}");
    shoot("org-users").await;

    // One user's page, and what the administrator does there.
    browser
        .click("a[href='/org/users/dan@alpha.cjsm.net']")
        .await;
    assert_eq!(browser.text("#user-state").await, "active");
    shoot("org-user").await;
    browser.click("#suspend").await;
    assert_eq!(browser.text("#user-state").await, "suspended");
    assert_eq!(
        orgs.user_state("dan@alpha.cjsm.net").await,
        Some(UserState::Suspended)
    );
    browser.click("#reactivate").await;
    assert_eq!(browser.text("#user-state").await, "active");
    browser.click("#reset-password").await;
    let dan_password = browser.text("#one-time-password").await;
    let dan = site.http();
    dan.first_sign_in("dan@alpha.cjsm.net", &dan_password, CHOSEN)
        .await;
    browser.goto("/org/users/dan@alpha.cjsm.net").await;
    browser.click("#delete").await;
    assert_eq!(browser.text("#user-state").await, "deleted");
    assert_eq!(
        orgs.user_state("dan@alpha.cjsm.net").await,
        Some(UserState::Deleted)
    );
    // Deleted, Dan is signed out.
    assert_eq!(dan.get("/password").await.location(), Some("/sign-in"));

    // Nominations: accept one (the colleague becomes a user with a one-time password),
    // decline another.
    nominate(site, "alpha", "n1", "nora@alpha.cjsm.net", ANN).await;
    nominate(site, "alpha", "n2", "ned@alpha.cjsm.net", ANN).await;
    nominate(site, "beta", "n3", "nat@beta.cjsm.net", BOB).await;
    browser.goto("/org/nominations").await;
    let listed = browser.text("#org-nominations").await;
    assert!(listed.contains("nora@alpha.cjsm.net") && listed.contains("ned@alpha.cjsm.net"));
    assert!(!listed.contains("nat@beta.cjsm.net"), "{listed}");
    shoot("org-nominations").await;
    browser.click("#accept-n1").await;
    assert!(!browser.text("#one-time-password").await.is_empty());
    assert_eq!(
        orgs.user_state("nora@alpha.cjsm.net").await,
        Some(UserState::Active)
    );
    browser.goto("/org/nominations").await;
    browser.click("#decline-n2").await;
    assert_eq!(
        nomination_state(site, "alpha", "n1").await,
        Some(NominationState::Accepted)
    );
    assert_eq!(
        nomination_state(site, "alpha", "n2").await,
        Some(NominationState::Declined)
    );
    assert_eq!(orgs.user_state("ned@alpha.cjsm.net").await, None);
    browser.close().await;

    // The exports: Alpha's active users only, as attachments, audited.
    let http = site.http();
    let page = http.sign_in(ALPHA_ADMIN, CHOSEN).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let csv_export = http.get("/org/export.csv").await;
    assert_eq!(csv_export.status, 200);
    assert!(
        csv_export
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment") && d.contains("alpha-users.csv"))
    );
    assert!(csv_export.body.starts_with("secure_address,first_name"));
    for address in [ANN, "carol@alpha.cjsm.net", "nora@alpha.cjsm.net"] {
        assert!(
            csv_export.body.contains(address),
            "{address}: {}",
            csv_export.body
        );
    }
    assert!(
        !csv_export.body.contains("dan@"),
        "deleted users are not exported"
    );
    assert!(!csv_export.body.contains(BOB));
    let ldif = http.get("/org/export.ldif").await;
    assert_eq!(ldif.status, 200);
    assert!(
        ldif.header("content-disposition")
            .is_some_and(|d| d.contains("alpha-users.ldif"))
    );
    assert!(ldif.body.contains(&format!("mail: {ANN}")));
    assert!(!ldif.body.contains(BOB));
    let audit = site.audit(1000).await;
    for (action, reason) in [("web export", "csv"), ("web export", "ldif")] {
        assert!(
            audit.iter().any(|e| e["action"] == action
                && e["reason"] == reason
                && e["actor"] == ALPHA_ADMIN
                && e["target"] == "alpha"),
            "{action} {reason} in {audit:?}"
        );
    }
    for action in [
        "user add",
        "user import add",
        "user suspend",
        "user delete",
        "web password reset",
        "web nomination accept",
        "web nomination decline",
        "web account created",
    ] {
        assert!(
            audit.iter().any(|e| e["action"] == action
                && e["actor"] == ALPHA_ADMIN
                && e["client"] == "127.0.0.1"),
            "{action} by the administrator from their address in {audit:?}"
        );
    }
}

// ----- Only within their own organisation ------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_cannot_see_another_organisations_user() {
    let orgs = two_orgs(Backend::Sqlite).await;
    let alpha = orgs.alpha_admin().await;
    let other = alpha.get(&format!("/org/users/{BOB}")).await;
    assert_forbidden(&other, "Beta's user");
    // The same answer as for nobody at all: the page does not tell whether Bob exists.
    let nobody = alpha.get("/org/users/nobody@beta.cjsm.net").await;
    assert_forbidden(&nobody, "no such user");
    assert_eq!(other.body, nobody.body);
    let own = alpha.get(&format!("/org/users/{ANN}")).await;
    assert_eq!(own.status, 200, "{}", own.body);
    let list = alpha.get("/org/users").await;
    assert!(
        list.body.contains(ANN) && !list.body.contains(BOB),
        "{}",
        list.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_cannot_change_another_organisations_user() {
    let orgs = two_orgs(Backend::Sqlite).await;
    let alpha = orgs.alpha_admin().await;
    let token = alpha.get("/org/users").await.csrf();
    let before = orgs.snapshot().await;
    for action in ["suspend", "delete", "reset-password", "reactivate"] {
        let page = alpha
            .post(&format!("/org/users/{BOB}/{action}"), &[("csrf", &token)])
            .await;
        assert_forbidden(&page, action);
        assert!(!page.body.contains("one-time-password"), "{}", page.body);
    }
    assert_eq!(
        orgs.snapshot().await,
        before,
        "Beta's user and account unchanged"
    );
    // Bob still signs in with his password.
    let bob = orgs.site.http();
    bob.first_sign_in(BOB, &orgs.bob_password, CHOSEN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_cannot_decide_another_organisations_nomination() {
    let orgs = two_orgs(Backend::Sqlite).await;
    nominate(&orgs.site, "beta", "beta1", "nat@beta.cjsm.net", BOB).await;
    let alpha = orgs.alpha_admin().await;
    let token = alpha.get("/org/nominations").await.csrf();
    let before = orgs.snapshot().await;
    for path in [
        "/org/nominations/beta1/accept",
        "/org/nominations/beta1/decline",
        // Another organisation's key spelled into the id.
        "/org/nominations/..%2Fbeta%2Fbeta1/accept",
        "/org/nominations/nosuch/accept",
    ] {
        let page = alpha.post(path, &[("csrf", &token)]).await;
        assert_forbidden(&page, path);
    }
    assert_eq!(orgs.snapshot().await, before);
    assert_eq!(orgs.user_state("nat@beta.cjsm.net").await, None);
    assert_eq!(
        nomination_state(&orgs.site, "beta", "beta1").await,
        Some(NominationState::Pending)
    );
    let listed = alpha.get("/org/nominations").await;
    assert!(
        !listed.body.contains("nat@beta.cjsm.net"),
        "{}",
        listed.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_cannot_use_the_administrators_pages() {
    let orgs = two_orgs(Backend::Sqlite).await;
    let ann = orgs.site.http();
    ann.first_sign_in(ANN, &orgs.ann_password, CHOSEN).await;
    let token = ann.get("/password").await.csrf();
    let before = orgs.snapshot().await;
    let page = ann
        .post(
            "/org/users/new",
            &[
                ("csrf", &token),
                ("first_name", "Sneaky"),
                ("last_name", "Colleague"),
                ("address", "sneaky@alpha.cjsm.net"),
            ],
        )
        .await;
    assert_forbidden(&page, "a user adding a user");
    for path in [
        "/org/users",
        "/org/users/new",
        "/org/nominations",
        "/org/export.csv",
    ] {
        assert_forbidden(&ann.get(path).await, path);
    }
    let page = ann
        .post(
            &format!("/org/users/{ANN}/reset-password"),
            &[("csrf", &token)],
        )
        .await;
    assert_forbidden(&page, "a user resetting a password");
    assert_eq!(orgs.snapshot().await, before);
    // Beta's administrator is an administrator, but of another organisation.
    let beta = orgs.site.http();
    beta.first_sign_in(BETA_ADMIN, &orgs.beta_admin_password, CHOSEN)
        .await;
    let token = beta.get("/org/users").await.csrf();
    let page = beta
        .post(&format!("/org/users/{ANN}/suspend"), &[("csrf", &token)])
        .await;
    assert_forbidden(&page, "Beta's administrator suspending Ann");
    assert_eq!(orgs.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_cannot_reset_an_account_of_another_role_at_a_users_address() {
    let orgs = two_orgs(Backend::Sqlite).await;
    // A hub operator signs in with an address that is in Alpha's domain; Alpha's
    // administrator then adds a user at that address.
    let operator = "ops@alpha.cjsm.net";
    let operator_password = orgs.site.add_operator(operator);
    let alpha = orgs.alpha_admin().await;
    let page = alpha
        .submit(
            "/org/users/new",
            "/org/users/new",
            &[
                ("first_name", "Op"),
                ("last_name", "Erator"),
                ("address", operator),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.element("one-time-password").is_none(), "{}", page.body);
    assert!(page.element("account-exists").is_some(), "{}", page.body);
    let before = account_of(&orgs.site, operator).await;
    assert_eq!(before.as_ref().map(|(a, _)| a.role), Some(Role::Operator));
    let token = alpha.get("/org/users").await.csrf();
    let page = alpha
        .post(
            &format!("/org/users/{operator}/reset-password"),
            &[("csrf", &token)],
        )
        .await;
    assert_forbidden(&page, "reset of the operator's password");
    assert!(!page.body.contains("one-time-password"), "{}", page.body);
    // The directory's user is Alpha's to suspend; the operator's sessions are not ended.
    let page = alpha
        .post(
            &format!("/org/users/{operator}/suspend"),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        account_of(&orgs.site, operator).await,
        before,
        "the operator's account unchanged"
    );
    let page = orgs.site.http().sign_in(operator, &operator_password).await;
    assert_eq!(page.status, 303, "{}", page.body);
}

// ----- Form tokens -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_form_of_the_administrator_needs_its_token() {
    let orgs = two_orgs(Backend::Sqlite).await;
    nominate(&orgs.site, "alpha", "a1", "nora@alpha.cjsm.net", ANN).await;
    let alpha = orgs.alpha_admin().await;
    let real = alpha.get("/org/users").await.csrf();
    let wrong = "0".repeat(64);
    let before = orgs.snapshot().await;
    let new_user = [
        ("first_name", "Nat"),
        ("last_name", "Ural"),
        ("address", "nat@alpha.cjsm.net"),
    ];
    let file = csv(&["nat@alpha.cjsm.net,Nat,Ural,alpha,,".into()]);
    for token in [None, Some(wrong.as_str()), Some("")] {
        let with = |fields: &[(&'static str, &'static str)]| {
            let mut all: Vec<(&str, &str)> = token.map(|t| ("csrf", t)).into_iter().collect();
            all.extend_from_slice(fields);
            all
        };
        let what = format!("token {token:?}");
        assert_forbidden(&alpha.post("/org/users/new", &with(&new_user)).await, &what);
        for action in ["suspend", "reactivate", "delete", "reset-password"] {
            let page = alpha
                .post(&format!("/org/users/{ANN}/{action}"), &with(&[]))
                .await;
            assert_forbidden(&page, &format!("{action} with {what}"));
        }
        for decision in ["accept", "decline"] {
            let page = alpha
                .post(&format!("/org/nominations/a1/{decision}"), &with(&[]))
                .await;
            assert_forbidden(&page, &format!("{decision} with {what}"));
        }
        let fields: Vec<(&str, &str)> = token.map(|t| ("csrf", t)).into_iter().collect();
        let page = alpha
            .post_multipart("/org/users/upload", &fields, ("file", "users.csv", &file))
            .await;
        assert_forbidden(&page, &format!("upload with {what}"));
        // The file before the token is not read either.
        let page = alpha
            .post_multipart("/org/users/upload", &[], ("file", "users.csv", &file))
            .await;
        assert_forbidden(&page, "upload with the file first");
    }
    assert_eq!(orgs.snapshot().await, before, "nothing changed");
    // With the real token the same forms work (the refusals above were the token's).
    let page = alpha
        .post_multipart(
            "/org/users/upload",
            &[("csrf", &real)],
            ("file", "users.csv", &file),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        orgs.user_state("nat@alpha.cjsm.net").await,
        Some(UserState::Active)
    );
}

// ----- What is shown ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_name_with_markup_is_shown_escaped() {
    let orgs = two_orgs(Backend::Sqlite).await;
    let alpha = orgs.alpha_admin().await;
    let page = alpha
        .submit(
            "/org/users/new",
            "/org/users/new",
            &[
                ("first_name", "<script>alert(1)</script>"),
                ("last_name", "\"><img src=x onerror=alert(2)>"),
                ("address", "mallory@alpha.cjsm.net"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    for path in ["/org/users", "/org/users/mallory@alpha.cjsm.net"] {
        let page = alpha.get(path).await;
        // The name is there, as text: its markup escaped (askama writes numeric entities).
        assert!(
            page.body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("<script>"), "{path}: {}", page.body);
        assert!(!page.body.contains("<img"), "{path}: {}", page.body);
    }
}

// ----- Suspension ends sessions ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_user_suspended_on_the_website_is_signed_out_and_cannot_sign_in() {
    let orgs = two_orgs(Backend::Sqlite).await;
    let ann = orgs.site.http();
    ann.first_sign_in(ANN, &orgs.ann_password, CHOSEN).await;
    assert_eq!(ann.get("/password").await.status, 200, "Ann is signed in");
    let alpha = orgs.alpha_admin().await;
    let page = alpha
        .submit(
            &format!("/org/users/{ANN}"),
            &format!("/org/users/{ANN}/suspend"),
            &[],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    // Her session is over: her next request is sent to sign in, and a form is refused.
    let next = ann.get("/password").await;
    assert_eq!(next.location(), Some("/sign-in"), "{next:?}");
    let stale = ann.cookie("cjsm_session");
    assert!(stale.is_some(), "the old cookie is still sent");
    let again = orgs.site.http().sign_in(ANN, CHOSEN).await;
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(again.body.contains("suspended"), "{}", again.body);
    // Reactivated, she signs in again, but the session of before stays ended.
    let page = alpha
        .submit(
            &format!("/org/users/{ANN}"),
            &format!("/org/users/{ANN}/reactivate"),
            &[],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        ann.get("/password").await.location(),
        Some("/sign-in"),
        "the session from before the suspension does not come back"
    );
    let fresh = orgs.site.http();
    assert_eq!(fresh.sign_in(ANN, CHOSEN).await.status, 303);
}

// ----- The upload's limits ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_501st_row_and_a_5_mb_file_are_refused_and_nothing_is_imported() {
    let orgs = two_orgs(Backend::Sqlite).await;
    let alpha = orgs.alpha_admin().await;
    let before = orgs.snapshot().await;
    let count = orgs.user_count().await;

    let rows: Vec<String> = (1..=501)
        .map(|i| format!("user{i}@alpha.cjsm.net,User,Number {i},alpha,,"))
        .collect();
    let token = alpha.get("/org/users").await.csrf();
    let page = alpha
        .post_multipart(
            "/org/users/upload",
            &[("csrf", &token)],
            ("file", "501.csv", &csv(&rows)),
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    let problem = page.element("problem").unwrap();
    assert!(
        problem.contains("Nothing was imported")
            && problem.contains("501 rows: a bulk load takes at most 500"),
        "{problem}"
    );

    let mut large = csv(&rows[..1]);
    large.resize(5 * 1024 * 1024, b'\n');
    let page = alpha
        .post_multipart(
            "/org/users/upload",
            &[("csrf", &token)],
            ("file", "large.csv", &large),
        )
        .await;
    assert_eq!(page.status, 413, "{}", page.body);
    let problem = page.element("problem").unwrap();
    assert!(
        problem.contains("The file is larger than 1 MB, so nothing was imported"),
        "{problem}"
    );
    assert_eq!(orgs.user_count().await, count);
    assert_eq!(orgs.snapshot().await, before);

    // A row for another organisation refuses the whole file, naming its line.
    let page = alpha
        .post_multipart(
            "/org/users/upload",
            &[("csrf", &token)],
            (
                "file",
                "mixed.csv",
                &csv(&[
                    "new1@alpha.cjsm.net,New,One,alpha,,".into(),
                    "new2@beta.cjsm.net,New,Two,beta,,".into(),
                    "new3@beta.cjsm.net,New,Three,Beta Solicitors,,".into(),
                ]),
            ),
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    let errors = &page.body[page.body.find("id=\"upload-errors\"").unwrap()..];
    assert!(errors.contains("line 3, field organisation"), "{errors}");
    assert!(errors.contains("line 4, field organisation"), "{errors}");
    assert!(!errors.contains("line 2"), "{errors}");
    assert_eq!(orgs.snapshot().await, before);
}
