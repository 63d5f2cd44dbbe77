//! A user's pages of the website, on both stores: the first sign-in with a one-time password,
//! searching the Secure eMail Directory, keeping one's own details and nominating a colleague;
//! what a user may not do (another organisation's nomination, another user's details, the
//! pages of other roles, forms without their token); and the sign-in throttles for a user.

mod common;

use cjsm_milter::clock::now_unix;
use cjsm_milter::directory::model::{OrgState, Organisation, User, UserState};
use cjsm_milter::web::accounts::Role;
use cjsm_milter::web::nominations::{self, Nomination, NominationState};
use common::browser::Browser;
use common::cli::{cli_add_user, onboard};
use common::fixtures;
use common::web::{Backend, Http, WebSite};

const ALICE: &str = "alice@smithchambers.cjsm.net";
const BOB: &str = "bob@smithchambers.cjsm.net";
const SUSPENDED: &str = "sam@smithchambers.cjsm.net";
const DELETED: &str = "dee@smithchambers.cjsm.net";
const DAN: &str = "dan@joneslaw.co.uk.cjsm.net";
const ORG_ADMIN: &str = "admin@smithchambers.cjsm.net";
const OPERATOR: &str = "operator@hub.example.uk";
const PASSWORD: &str = "orchid lantern harbour";

/// `directory user add` with a town and a business type.
fn add_user(site: &WebSite, address: &str, org: &str, name: (&str, &str), town: &str, kind: &str) {
    site.cli(&[
        "directory",
        "user",
        "add",
        address,
        "--org",
        org,
        "--first-name",
        name.0,
        "--last-name",
        name.1,
        "--town",
        town,
        "--business-type",
        kind,
    ])
    .success();
}

/// Two active organisations, Smith Chambers (hosted mailboxes, with an Organisation
/// Administrator) and Jones Solicitors LLP (its own mail server), their users (one of Smith's
/// suspended, one deleted, all three in Harrogate), and Alice's account: its one-time password.
async fn two_organisations(site: &WebSite) -> String {
    site.onboard(
        "smith",
        "Smith Chambers",
        "smithchambers.cjsm.net",
        "mailbox",
        &[ORG_ADMIN],
    );
    onboard(
        &site.config,
        "jones",
        "Jones Solicitors LLP",
        "joneslaw.co.uk",
        "server",
    );
    add_user(
        site,
        ALICE,
        "smith",
        ("Alice", "Smith"),
        "Leeds",
        "Barristers' chambers",
    );
    add_user(
        site,
        BOB,
        "smith",
        ("Robert", "Brown"),
        "Harrogate",
        "Barristers' chambers",
    );
    add_user(
        site,
        SUSPENDED,
        "smith",
        ("Samira", "Quayle"),
        "Harrogate",
        "Clerks",
    );
    add_user(
        site,
        DELETED,
        "smith",
        ("Deirdre", "Quayle"),
        "Harrogate",
        "Clerks",
    );
    cli_add_user(&site.config, DAN, "jones", "Daniel", "Okafor");
    site.cli(&[
        "directory",
        "user",
        "update",
        DAN,
        "--town",
        "Truro",
        "--business-type",
        "Solicitors",
    ])
    .success();
    site.cli(&["directory", "user", "suspend", SUSPENDED])
        .success();
    site.cli(&["directory", "user", "delete", DELETED])
        .success();
    site.create_account(ALICE, Role::User, Some("smith")).await
}

/// The nominations the store holds for `org`.
async fn nominations_of(site: &WebSite, org: &str) -> Vec<Nomination> {
    let store = site.store().await;
    nominations::of_org(store.as_ref(), org, now_unix())
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// The directory's record of a user, as JSON (`directory user show`).
fn user_json(site: &WebSite, address: &str) -> serde_json::Value {
    site.cli(&["directory", "user", "show", address])
        .success()
        .json()
}

/// The rows of the search results table, each as its cells' visible text joined by " | ".
async fn result_rows(browser: &Browser) -> Vec<String> {
    let mut rows = Vec::new();
    let Ok(table) = browser
        .client
        .find(fantoccini::Locator::Css("#results tbody"))
        .await
    else {
        return rows;
    };
    for row in table
        .find_all(fantoccini::Locator::Css("tr"))
        .await
        .unwrap()
    {
        let mut cells = Vec::new();
        for cell in row.find_all(fantoccini::Locator::Css("td")).await.unwrap() {
            cells.push(cell.text().await.unwrap());
        }
        rows.push(cells.join(" | "));
    }
    rows
}

async fn search(browser: &Browser, text: &str) -> Vec<String> {
    browser.goto("/directory").await;
    browser.fill("#q", text).await;
    browser.click("#search").await;
    result_rows(browser).await
}

/// The whole of a user's first visit, in a real browser.
async fn a_users_visit(backend: Backend) {
    let site = WebSite::start(backend);
    let one_time = two_organisations(&site).await;
    let browser = Browser::start(&site.base).await;

    // The first sign-in, with the one-time password, leads to choosing one's own.
    browser.goto("/sign-in").await;
    browser.fill("#login", ALICE).await;
    browser.fill("#password", &one_time).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.path().await, "/password");
    assert!(
        browser
            .text("#must-change")
            .await
            .contains("one-time password")
    );
    browser.screenshot("password-change").await;
    browser.goto("/directory").await;
    assert_eq!(browser.path().await, "/password", "nothing else first");
    for (new, reason) in [
        ("too short", "at least 12 characters"),
        ("iloveyou1234", "too common"),
    ] {
        let problem = browser
            .change_password(&one_time, new)
            .await
            .unwrap_or_default();
        assert!(problem.contains(reason), "{new}: {problem}");
    }
    browser.screenshot("password-refused").await;
    browser.fill("#current", &one_time).await;
    browser.fill("#new", PASSWORD).await;
    browser.fill("#confirm", PASSWORD).await;
    browser.click("#change").await;
    assert_eq!(browser.path().await, "/?changed=password");

    // The directory: the form alone until something is searched for.
    browser.click("a[href='/directory']").await;
    assert!(browser.source().await.contains("id=\"q\""));
    assert!(result_rows(&browser).await.is_empty());
    assert!(!browser.source().await.contains("id=\"none\""));
    // A colleague by name, organisation name, town and address; never a suspended or a
    // deleted user, though their town and name match.
    let robert =
        format!("Robert Brown | Smith Chambers | Harrogate | Barristers' chambers | {BOB}");
    let daniel = format!("Daniel Okafor | Jones Solicitors LLP | Truro | Solicitors | {DAN}");
    assert_eq!(search(&browser, "robert").await, vec![robert.clone()]);
    assert_eq!(
        search(&browser, "Jones Solicitors").await,
        vec![daniel.clone()]
    );
    assert_eq!(search(&browser, "TRURO").await, vec![daniel.clone()]);
    assert_eq!(
        search(&browser, "bob@smithchambers").await,
        vec![robert.clone()]
    );
    assert_eq!(search(&browser, "harrogate").await, vec![robert.clone()]);
    assert_eq!(search(&browser, "Quayle").await, Vec::<String>::new());
    assert!(browser.text("#none").await.contains("Quayle"));
    let chambers = search(&browser, "smith chambers").await;
    assert_eq!(chambers.len(), 2, "{chambers:?}");
    assert!(chambers[0].starts_with("Alice Smith | Smith Chambers | Leeds"));
    assert_eq!(chambers[1], robert);
    assert_eq!(
        browser.find("#q").await.prop("value").await.unwrap(),
        Some("smith chambers".to_string())
    );
    browser.screenshot("directory-search").await;

    // Her own details: the address and organisation shown, the rest hers to change.
    browser.click("a[href='/me']").await;
    assert_eq!(browser.text("#address").await, ALICE);
    assert_eq!(browser.text("#organisation").await, "Smith Chambers");
    assert!(
        browser
            .client
            .find(fantoccini::Locator::Css("input[name='address']"))
            .await
            .is_err()
    );
    browser.fill("#town", "Wakefield").await;
    browser
        .fill("#business_type", "Barristers (criminal)")
        .await;
    browser.click("#save").await;
    assert_eq!(browser.path().await, "/me?saved=1");
    assert!(browser.text("#saved").await.contains("saved"));
    assert_eq!(
        browser.find("#town").await.prop("value").await.unwrap(),
        Some("Wakefield".to_string())
    );
    browser.screenshot("my-details").await;
    let alice = user_json(&site, ALICE);
    assert_eq!(alice["town"], "Wakefield");
    assert_eq!(alice["business_type"], "Barristers (criminal)");
    assert_eq!(search(&browser, "wakefield").await.len(), 1);
    // An empty last name is refused on the form, and nothing changes.
    browser.goto("/me").await;
    browser.fill("#last_name", " ").await;
    browser
        .client
        .execute(
            "document.getElementById('last_name').removeAttribute('required')",
            vec![],
        )
        .await
        .unwrap();
    browser.click("#save").await;
    assert!(browser.text("#problem").await.contains("last name"));
    assert_eq!(user_json(&site, ALICE)["last_name"], "Smith");

    // A colleague nominated: the Organisation Administrator decides; meanwhile it waits.
    browser.click("a[href='/nominate']").await;
    assert!(
        browser
            .text("#none-waiting")
            .await
            .contains("None of your nominations")
    );
    browser.fill("#first_name", "Carol").await;
    browser.fill("#last_name", "Green").await;
    browser
        .fill("#address", "Carol@SmithChambers.cjsm.net")
        .await;
    browser.click("#nominate").await;
    assert_eq!(browser.path().await, "/nominate?nominated=1");
    assert!(
        browser
            .text("#nominated")
            .await
            .contains("Organisation Administrator, who decides")
    );
    let waiting = browser.text("#waiting").await;
    assert!(
        waiting.contains("Carol Green") && waiting.contains("carol@smithchambers.cjsm.net"),
        "{waiting}"
    );
    browser.screenshot("nominate").await;
    let stored = nominations_of(&site, "smith").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let carol = &stored[0];
    assert_eq!(carol.address, "carol@smithchambers.cjsm.net");
    assert_eq!(carol.state, NominationState::Pending);
    assert_eq!(carol.nominated_by, ALICE);
    assert_eq!(carol.id.len(), 12);
    // Nominating her again, or a colleague already a user, is refused with the reason.
    for (address, reason) in [
        ("carol@smithchambers.cjsm.net", "already been nominated"),
        (BOB, "already in the Secure eMail Directory"),
    ] {
        browser.fill("#first_name", "Some").await;
        browser.fill("#last_name", "One").await;
        browser.fill("#address", address).await;
        browser.click("#nominate").await;
        let problem = browser.text("#problem").await;
        assert!(problem.contains(reason), "{address}: {problem}");
    }
    assert_eq!(nominations_of(&site, "smith").await.len(), 1);
    browser.close().await;

    let audit = site.audit(50).await;
    for (action, target) in [
        ("web nominate", "carol@smithchambers.cjsm.net"),
        ("user update", ALICE),
        ("web password change", ALICE),
    ] {
        assert!(
            audit.iter().any(|e| e["action"] == action
                && e["target"] == target
                && e["actor"] == ALICE
                && e["client"] == "127.0.0.1"),
            "{action}: {audit:?}"
        );
    }
    let metrics = site.metrics();
    for action in ["web nominate", "user update"] {
        assert!(
            metrics.contains(&format!("cjsm_web_actions_total{{action=\"{action}\"}} 1")),
            "{action}:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_users_visit_on_the_embedded_store() {
    a_users_visit(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_users_visit_on_redis() {
    a_users_visit(Backend::Redis).await;
}

/// The website with the two organisations, and Alice signed in over HTTP.
async fn alice_signed_in() -> (WebSite, Http) {
    let site = WebSite::start(Backend::Sqlite);
    let one_time = two_organisations(&site).await;
    let http = site.http();
    http.first_sign_in(ALICE, &one_time, PASSWORD).await;
    (site, http)
}

#[tokio::test]
async fn a_nomination_outside_ones_own_organisation_is_refused() {
    let (site, http) = alice_signed_in().await;
    for address in [
        "eve@joneslaw.co.uk.cjsm.net",
        "eve@joneslaw.co.uk",
        "eve@smithchambers.cjsm.net.example.com",
        "eve@elsewhere.example",
    ] {
        let page = http
            .submit(
                "/nominate",
                "/nominate",
                &[
                    ("first_name", "Eve"),
                    ("last_name", "Evans"),
                    ("address", address),
                ],
            )
            .await;
        assert_eq!(page.status, 403, "{address}: {}", page.body);
        let problem = page.element("problem").unwrap();
        assert!(
            problem.contains("is not under organisation `smith`")
                && problem.contains("@smithchambers.cjsm.net"),
            "{address}: {problem}"
        );
    }
    assert!(nominations_of(&site, "smith").await.is_empty());
    assert!(nominations_of(&site, "jones").await.is_empty());
    assert!(
        !site
            .audit(50)
            .await
            .iter()
            .any(|e| e["action"] == "web nominate")
    );
}

#[tokio::test]
async fn a_user_changes_their_own_details_only() {
    let (site, http) = alice_signed_in().await;
    let bob_before = user_json(&site, BOB);
    // A forged `address` field naming a colleague is ignored: the session says whose details.
    let page = http
        .submit(
            "/me",
            "/me",
            &[
                ("address", BOB),
                ("first_name", "Mallory"),
                ("last_name", "Forger"),
                ("town", "Nowhere"),
                ("business_type", "Forgery"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(user_json(&site, BOB), bob_before, "Bob is unchanged");
    let alice = user_json(&site, ALICE);
    assert_eq!(alice["first_name"], "Mallory");
    assert_eq!(alice["town"], "Nowhere");
    let audit = site.audit(20).await;
    assert!(
        !audit
            .iter()
            .any(|e| e["action"] == "user update" && e["target"] == BOB),
        "{audit:?}"
    );
}

/// The directory search, one's details and nominating are a user's pages: a hub operator and
/// an Organisation Administrator are refused them (they have their own pages), and someone
/// not signed in is sent to sign in.
#[tokio::test]
async fn the_users_pages_are_for_users_only() {
    let site = WebSite::start(Backend::Sqlite);
    two_organisations(&site).await;
    let operator = site.http();
    let one_time = site.add_operator(OPERATOR);
    operator.first_sign_in(OPERATOR, &one_time, PASSWORD).await;
    let org_admin = site.http();
    let one_time = site
        .create_account(ORG_ADMIN, Role::OrgAdmin, Some("smith"))
        .await;
    org_admin
        .first_sign_in(ORG_ADMIN, &one_time, PASSWORD)
        .await;
    for (who, http) in [("hub operator", &operator), ("org admin", &org_admin)] {
        for path in ["/directory", "/directory?q=smith", "/me", "/nominate"] {
            let page = http.get(path).await;
            assert_eq!(page.status, 403, "{who} GET {path}: {}", page.body);
            assert!(!page.body.contains(BOB), "{who} GET {path}");
        }
        for path in ["/me", "/nominate"] {
            let page = http
                .submit(
                    "/",
                    path,
                    &[
                        ("first_name", "Carol"),
                        ("last_name", "Green"),
                        ("address", "carol@smithchambers.cjsm.net"),
                        ("town", "Nowhere"),
                    ],
                )
                .await;
            assert_eq!(page.status, 403, "{who} POST {path}: {}", page.body);
        }
    }
    let anonymous = site.http();
    for path in ["/directory?q=smith", "/me", "/nominate"] {
        let page = anonymous.get(path).await;
        assert_eq!(page.status, 303, "anonymous GET {path}");
        assert_eq!(page.location(), Some("/sign-in"));
    }
    assert!(nominations_of(&site, "smith").await.is_empty());
    assert_eq!(user_json(&site, ALICE)["town"], "Leeds");
}

#[tokio::test]
async fn what_is_searched_for_and_found_is_shown_as_text() {
    let (site, http) = alice_signed_in().await;
    add_user(
        &site,
        "liam@smithchambers.cjsm.net",
        "smith",
        ("Liam", "<b>O'Brien</b>"),
        "<script>alert(2)</script>",
        "\"Quoted\" & co",
    );
    let page = http
        .get("/directory?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(
        page.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        page.body
    );
    let page = http.get("/directory?q=liam").await;
    assert!(
        !page.body.contains("<script>") && !page.body.contains("<b>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("&#60;b&#62;O&#39;Brien&#60;/b&#62;"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("&#34;Quoted&#34; &#38; co"),
        "{}",
        page.body
    );
    // Too long a search text is refused, not echoed.
    let long = "x".repeat(300);
    let page = http.get(&format!("/directory?q={long}")).await;
    assert_eq!(page.status, 400);
    assert!(!page.body.contains(&long));
}

/// A search shows at most 50 people, and says when more match; the suspended users and the
/// users of an organisation that is not active, which the directory's search also finds,
/// are never among them.
#[tokio::test]
async fn a_search_shows_at_most_fifty_active_people() {
    let (site, http) = alice_signed_in().await;
    let store = site.store().await;
    store
        .put_org(Organisation {
            state: OrgState::Suspended,
            ..fixtures::org("closed", &["closed.cjsm.net"])
        })
        .await
        .unwrap();
    let in_harrogate = |address: String, org: &str, state: UserState| User {
        town: "Harrogate".into(),
        state,
        ..fixtures::user(&address, org)
    };
    let mut users = Vec::new();
    for i in 0..30 {
        // Listed first (by address), so the directory's search meets them before the others.
        users.push(in_harrogate(
            format!("aa-away{i:02}@smithchambers.cjsm.net"),
            "smith",
            UserState::Suspended,
        ));
        users.push(in_harrogate(
            format!("aa-closed{i:02}@closed.cjsm.net"),
            "closed",
            UserState::Active,
        ));
    }
    store.put_users(users).await.unwrap();
    // Bob alone, though sixty more in Harrogate come before him.
    let page = http.get("/directory?q=harrogate").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("aa-"), "{}", page.body);
    assert_eq!(page.body.matches("<tr><td>").count(), 1, "{}", page.body);
    assert!(page.element("more").is_none());

    let clerks: Vec<User> = (0..55)
        .map(|i| {
            in_harrogate(
                format!("clerk{i:02}@smithchambers.cjsm.net"),
                "smith",
                UserState::Active,
            )
        })
        .collect();
    store.put_users(clerks).await.unwrap();
    let page = http.get("/directory?q=harrogate").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("aa-"), "{}", page.body);
    assert_eq!(page.body.matches("<tr><td>").count(), 50, "{}", page.body);
    assert!(
        page.element("more").unwrap().contains("refine your search"),
        "{}",
        page.body
    );
    assert!(page.element("summary").unwrap().contains("The first 50"));
}

#[tokio::test]
async fn the_users_forms_need_their_token() {
    let (site, http) = alice_signed_in().await;
    let alice_before = user_json(&site, ALICE);
    http.assert_forms_need_their_token(
        &["/me", "/nominate"],
        &[
            ("first_name", "Carol"),
            ("last_name", "Green"),
            ("address", "carol@smithchambers.cjsm.net"),
            ("town", "Nowhere"),
        ],
    )
    .await;
    assert_eq!(user_json(&site, ALICE), alice_before);
    assert!(nominations_of(&site, "smith").await.is_empty());
    // The same forms with the page's token go through.
    let page = http
        .submit(
            "/nominate",
            "/nominate",
            &[
                ("first_name", "Carol"),
                ("last_name", "Green"),
                ("address", "carol@smithchambers.cjsm.net"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(nominations_of(&site, "smith").await.len(), 1);
}

/// A user's sign-in throttles: five wrong passwords lock the account (even the right password
/// is refused, and the lock-out is audited and counted); twenty failures from one address
/// throttle the address for every account.
#[tokio::test]
async fn a_users_sign_in_is_throttled() {
    let site = WebSite::start(Backend::Sqlite);
    let one_time = two_organisations(&site).await;
    site.http().first_sign_in(ALICE, &one_time, PASSWORD).await;
    let bob_one_time = site.create_account(BOB, Role::User, Some("smith")).await;

    let guesser = site.http();
    for i in 0..5 {
        let page = guesser.sign_in(ALICE, "not her password at all").await;
        assert_eq!(page.status, 401, "guess {i}: {}", page.body);
    }
    let page = site.http().sign_in(ALICE, PASSWORD).await;
    assert_eq!(page.status, 429, "{}", page.body);
    let problem = page.element("problem").unwrap();
    assert!(
        problem.contains("This account is locked after 5 failed sign-ins"),
        "{problem}"
    );
    let metrics = site.metrics();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("cjsm_web_sign_ins_total{result=\"locked\"}") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    // The lock-out in the audit trail, as the command line shows it.
    let tail = site.cli(&["audit", "tail", "-n", "50"]).success().stdout;
    assert!(
        tail.lines().any(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            entry["action"] == "web account locked"
                && entry["target"] == ALICE
                && entry["client"] == "127.0.0.1"
        }),
        "{tail}"
    );

    // Six attempts so far from this address (five wrong, one refused as locked); fourteen
    // more, at accounts that exist or not.
    for i in 0..14 {
        let login = if i % 2 == 0 {
            format!("nobody{i}@smithchambers.cjsm.net")
        } else {
            DAN.to_string()
        };
        let page = guesser.sign_in(&login, "a wrong password").await;
        assert_eq!(page.status, 401, "attempt {i}: {}", page.body);
    }
    // Bob, whose password is right and whose account is not locked, is refused from here.
    let page = site.http().sign_in(BOB, &bob_one_time).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(
        page.element("problem")
            .unwrap()
            .contains("Too many failed sign-ins from your address")
    );
    let audit = site.audit(100).await;
    assert!(
        audit.iter().any(|e| e["action"] == "web address throttled"),
        "{audit:?}"
    );
}

/// A user may have 20 nominations waiting, no more: posting the form in a loop does not fill
/// the administrators' queue or the store.
#[tokio::test]
async fn a_users_waiting_nominations_are_bounded() {
    let (site, http) = alice_signed_in().await;
    for i in 0..21 {
        let address = format!("colleague{i:02}@smithchambers.cjsm.net");
        let page = http
            .submit(
                "/nominate",
                "/nominate",
                &[
                    ("first_name", "Colleague"),
                    ("last_name", "Number"),
                    ("address", &address),
                ],
            )
            .await;
        if i < 20 {
            assert_eq!(page.status, 303, "{i}: {}", page.body);
        } else {
            assert_eq!(page.status, 400, "{i}: {}", page.body);
            assert!(
                page.element("problem")
                    .unwrap()
                    .contains("You have 20 nominations waiting")
            );
        }
    }
    assert_eq!(nominations_of(&site, "smith").await.len(), 20);
    let page = http.get("/nominate").await;
    assert_eq!(
        page.body.matches("@smithchambers.cjsm.net</td>").count(),
        20
    );
}
