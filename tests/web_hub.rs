//! The public application and the hub operator's queue: an organisation applies on the
//! website, a duplicate domain is refused naming its holder, the hub operator approves it,
//! records the signed terms and activates it (its Organisation Administrator's one-time
//! password shown once, then changed at first sign-in), and refuses another with a reason.
//! Who may do each, and that what applicants type is shown escaped.

mod common;

use cjsm_milter::directory::model::OrgState;
use cjsm_milter::web::accounts::Role;
use common::browser::Browser;
use common::web::{Backend, Http, WebSite};

const OPERATOR: &str = "operator@hub.example.uk";
const OPERATOR_PASSWORD: &str = "orchid lantern harbour";
const FINGERPRINT: &str = "3F:A1:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:9A";

/// The fields of a server organisation's application, as the form names them.
fn server_application<'a>(
    name: &'a str,
    domain: &'a str,
    admin: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("address1", "1 Park Row"),
        ("town", "Leeds"),
        ("postcode", "LS1 5AB"),
        ("domain", domain),
        ("connection", "server"),
        ("mail_server", "[mx.hartleylaw.co.uk]:25"),
        ("fingerprint", FINGERPRINT),
        ("subject", "CN=mail.hartleylaw.co.uk"),
        ("issuer", "CN=CJSM Client CA"),
        ("contact_name", "Ann Hartley"),
        ("contact_email", admin),
        ("contact_telephone", "0113 496 0000"),
    ]
}

async fn org_state(site: &WebSite, id: &str) -> Option<OrgState> {
    site.store().await.org(id).await.unwrap().map(|o| o.state)
}

/// Fills the application form in the browser (the page is open).
async fn fill_application(browser: &Browser, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        if *name == "connection" {
            // A radio button: choosing it does not leave the page.
            browser
                .find(&format!("#connection-{value}"))
                .await
                .click()
                .await
                .unwrap();
        } else {
            browser.fill(&format!("#{name}"), value).await;
        }
    }
}

async fn the_hub_takes_an_organisation_from_application_to_activation(backend: Backend) {
    let site = WebSite::start(backend);
    let one_time = site.add_operator(OPERATOR);
    let browser = Browser::start(&site.base).await;

    // The applicant: no account, five minutes.
    browser.goto("/").await;
    browser.click("a[href='/apply']").await;
    fill_application(
        &browser,
        &server_application("Hartley Law LLP", "hartleylaw.co.uk", "it@hartleylaw.co.uk"),
    )
    .await;
    // The picture shows the form from its top.
    browser
        .client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    browser.screenshot("apply").await;
    browser.click("#apply").await;
    assert_eq!(browser.text("#reference").await, "hartley-law-llp");
    let next = browser.text("main").await;
    for step in [
        "reviews",
        "approves",
        "sign the terms",
        "one-time password by post",
    ] {
        assert!(next.contains(step), "{step}: {next}");
    }
    browser.screenshot("apply-done").await;

    // Another organisation claiming the same domain is refused, naming the holder, with the
    // form as typed.
    browser.goto("/apply").await;
    let duplicate = server_application("Hartley & Co", "HartleyLaw.co.uk", "ops@hartley.example");
    fill_application(&browser, &duplicate).await;
    browser.click("#apply").await;
    let problem = browser.text("#problem").await;
    assert!(
        problem.contains(
            "hartleylaw.co.uk is already registered to hartley-law-llp (Hartley Law LLP, applied)"
        ),
        "{problem}"
    );
    for (field, typed) in [
        ("name", "Hartley & Co"),
        ("contact_email", "ops@hartley.example"),
    ] {
        let kept = browser
            .find(&format!("#{field}"))
            .await
            .prop("value")
            .await
            .unwrap();
        assert_eq!(kept.as_deref(), Some(typed));
    }
    browser.screenshot("apply-duplicate").await;

    // A mailbox organisation, to be refused: hosted under the secure suffix.
    browser.goto("/apply").await;
    let mut mailbox: Vec<(&str, &str)> = server_application(
        "Smith Chambers",
        "smithchambers.co.uk",
        "clerk@smithchambers.co.uk",
    )
    .into_iter()
    .filter(|(name, _)| {
        !matches!(
            *name,
            "connection" | "mail_server" | "fingerprint" | "subject" | "issuer"
        )
    })
    .collect();
    mailbox.push(("connection", "mailbox"));
    fill_application(&browser, &mailbox).await;
    browser.click("#apply").await;
    assert_eq!(browser.text("#reference").await, "smith-chambers");
    assert!(
        browser
            .text("main")
            .await
            .contains("name@smithchambers.co.uk.cjsm.net")
    );

    // The hub operator: one-time password, changed first.
    browser.goto("/sign-in").await;
    browser.fill("#login", OPERATOR).await;
    browser.fill("#password", &one_time).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.path().await, "/password");
    browser.fill("#current", &one_time).await;
    browser.fill("#new", OPERATOR_PASSWORD).await;
    browser.fill("#confirm", OPERATOR_PASSWORD).await;
    browser.click("#change").await;
    assert_eq!(browser.path().await, "/?changed=password");

    browser.click("a[href='/hub/applications']").await;
    let queue = browser.text("#queue").await;
    for expected in [
        "Hartley Law LLP",
        "hartleylaw.co.uk",
        "Smith Chambers",
        "smithchambers.co.uk.cjsm.net",
        "mailbox",
    ] {
        assert!(queue.contains(expected), "{expected}: {queue}");
    }
    browser.screenshot("hub-queue").await;

    browser
        .click("a[href='/hub/applications/hartley-law-llp']")
        .await;
    assert!(browser.text("#postal-address").await.contains("1 Park Row"));
    let contact = browser.text("#contact").await;
    assert!(
        contact.contains("Ann Hartley") && contact.contains("0113 496 0000"),
        "{contact}"
    );
    let details = browser.text("main").await;
    assert!(details.contains("[mx.hartleylaw.co.uk]:25"), "{details}");
    assert!(
        details.contains(&FINGERPRINT.replace(':', "").to_lowercase()),
        "{details}"
    );
    browser.screenshot("hub-application").await;

    browser.click("#approve").await;
    assert_eq!(
        browser.path().await,
        "/hub/applications/hartley-law-llp?done=approved"
    );
    assert!(browser.text("#org-state").await.contains("approved"));
    browser.click("#terms").await;
    assert!(browser.text("#org-state").await.contains("terms signed"));
    browser.click("#activate").await;
    let oa_password = browser.text("#one-time-password").await;
    assert_eq!(oa_password.len(), 16, "{oa_password}");
    assert!(browser.text("main").await.contains("it@hartleylaw.co.uk"));
    browser.screenshot("hub-activated").await;
    assert_eq!(
        org_state(&site, "hartley-law-llp").await,
        Some(OrgState::Active)
    );

    // Refusing the other, with its reason.
    browser.goto("/hub/applications/smith-chambers").await;
    browser
        .fill(
            "#reason",
            "Not a criminal justice practitioner: no legal aid contract.",
        )
        .await;
    browser.click("#refuse").await;
    assert_eq!(
        browser.path().await,
        "/hub/applications/smith-chambers?done=refused"
    );
    assert!(
        browser
            .text("#refusal-reason")
            .await
            .contains("no legal aid contract")
    );
    browser.screenshot("hub-refused").await;
    browser.goto("/hub/applications").await;
    assert!(browser.text("#refused").await.contains("Smith Chambers"));
    assert!(
        !browser.source().await.contains("id=\"queue\""),
        "nothing else waits"
    );
    // Kept as it was in the directory, never switched on; its domain stays claimed.
    assert_eq!(
        org_state(&site, "smith-chambers").await,
        Some(OrgState::Applied)
    );

    // The Organisation Administrator signs in with the password from the post and must
    // change it.
    browser.click("form[action='/sign-out'] button").await;
    browser.goto("/sign-in").await;
    browser.fill("#login", "it@hartleylaw.co.uk").await;
    browser.fill("#password", &oa_password).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.path().await, "/password");
    browser.goto("/hub/applications").await;
    assert_eq!(browser.path().await, "/password");
    browser.fill("#current", &oa_password).await;
    browser.fill("#new", "copper kettle meadow").await;
    browser.fill("#confirm", "copper kettle meadow").await;
    browser.click("#change").await;
    assert_eq!(browser.path().await, "/?changed=password");
    assert!(
        browser
            .source()
            .await
            .contains("Organisation Administrator")
    );
    browser.close().await;

    // Every step in the audit trail, by whom and from where.
    let audit = site.audit(100).await;
    let did = |action: &str, target: &str, actor: &str| {
        audit.iter().any(|e| {
            e["action"] == action
                && e["target"] == target
                && e["actor"] == actor
                && e["client"] == "127.0.0.1"
        })
    };
    assert!(
        did("org apply", "hartley-law-llp", "anonymous"),
        "{audit:?}"
    );
    for action in [
        "org approve",
        "org sign-terms",
        "org activate",
        "org refuse",
    ] {
        let target = if action == "org refuse" {
            "smith-chambers"
        } else {
            "hartley-law-llp"
        };
        assert!(did(action, target, OPERATOR), "{action}: {audit:?}");
    }
    assert!(
        did("web account created", "it@hartleylaw.co.uk", OPERATOR),
        "{audit:?}"
    );
    let metrics = site.metrics();
    for action in [
        "org apply",
        "org approve",
        "org sign-terms",
        "org activate",
        "org refuse",
    ] {
        assert!(
            metrics.contains(&format!("cjsm_web_actions_total{{action=\"{action}\"}}")),
            "{action}:\n{metrics}"
        );
    }
    // The application's details are beside the directory, not in it.
    let shown = site
        .cli(&["directory", "org", "show", "hartley-law-llp"])
        .success();
    assert!(
        shown.stdout.contains("it@hartleylaw.co.uk"),
        "{}",
        shown.stdout
    );
    assert!(
        !shown.stdout.contains("Park Row") && !shown.stdout.contains("0113"),
        "{}",
        shown.stdout
    );
}

#[tokio::test]
async fn the_hub_takes_an_organisation_from_application_to_activation_in_a_browser() {
    the_hub_takes_an_organisation_from_application_to_activation(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_hub_takes_an_organisation_from_application_to_activation_on_redis() {
    the_hub_takes_an_organisation_from_application_to_activation(Backend::Redis).await;
}

/// An application made over HTTP, as an anonymous visitor; its id.
async fn apply(site: &WebSite, name: &str, domain: &str) -> String {
    let applicant = site.http();
    let page = applicant
        .submit(
            "/apply",
            "/apply",
            &server_application(name, domain, "it@applicant.example"),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.element("reference")
        .expect("the application's reference")
}

/// A signed-in hub operator.
async fn operator(site: &WebSite) -> Http {
    let one_time = site.add_operator(OPERATOR);
    let http = site.http();
    http.first_sign_in(OPERATOR, &one_time, OPERATOR_PASSWORD)
        .await;
    http
}

#[tokio::test]
async fn only_a_hub_operator_decides_applications() {
    let site = WebSite::start(Backend::Sqlite);
    site.onboard(
        "acme",
        "Acme Solicitors",
        "acme.example",
        "server",
        &["oa@acme.example"],
    );
    site.cli(&[
        "directory",
        "user",
        "add",
        "u@acme.example.cjsm.net",
        "--org",
        "acme",
        "--first-name",
        "Una",
        "--last-name",
        "User",
    ])
    .success();
    let id = apply(&site, "Pending Law", "pending.example").await;

    let org_admin = site.http();
    let one_time = site
        .create_account("oa@acme.example", Role::OrgAdmin, Some("acme"))
        .await;
    org_admin
        .first_sign_in("oa@acme.example", &one_time, "copper kettle meadow")
        .await;
    let user = site.http();
    let one_time = site
        .create_account("u@acme.example.cjsm.net", Role::User, Some("acme"))
        .await;
    user.first_sign_in("u@acme.example.cjsm.net", &one_time, "velvet saddle quarry")
        .await;
    // And someone who never signed in, with the token of their own forms.
    let anonymous = site.http();

    for (who, http, own_page) in [
        ("an Organisation Administrator", &org_admin, "/"),
        ("a user", &user, "/"),
        ("an anonymous visitor", &anonymous, "/apply"),
    ] {
        // Their own valid token, from a page of theirs.
        let token = http.get(own_page).await.csrf();
        for action in ["approve", "terms", "activate", "refuse"] {
            let page = http
                .post(
                    &format!("/hub/applications/{id}/{action}"),
                    &[("csrf", token.as_str()), ("reason", "forged")],
                )
                .await;
            assert_eq!(page.status, 403, "{who} {action}: {}", page.body);
        }
        let page = http.get(&format!("/hub/applications/{id}")).await;
        assert_ne!(
            page.status, 200,
            "{who} read the application: {}",
            page.body
        );
        assert!(!page.body.contains("Park Row"), "{who}: {}", page.body);
        assert_eq!(
            org_state(&site, &id).await,
            Some(OrgState::Applied),
            "{who}"
        );
    }
    let store = site.store().await;
    let details = store
        .record("application", &id, cjsm_milter::clock::now_unix())
        .await
        .unwrap()
        .unwrap();
    assert!(!details.value.contains("refusal"), "{}", details.value);

    // The hub operator may, and the rules' refusals are shown on the page.
    let hub = operator(&site).await;
    let token = hub.get("/").await.csrf();
    let page = hub
        .post(
            &format!("/hub/applications/{id}/activate"),
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.element("problem")
            .unwrap()
            .contains("is not approved yet"),
        "{}",
        page.body
    );
    let page = hub
        .post(
            &format!("/hub/applications/{id}/approve"),
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(org_state(&site, &id).await, Some(OrgState::Approved));
    // A refusal needs its reason.
    let page = hub
        .post(
            &format!("/hub/applications/{id}/refuse"),
            &[("csrf", token.as_str()), ("reason", "  ")],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.element("problem").unwrap().contains("reason"),
        "{}",
        page.body
    );
    let details = store
        .record("application", &id, cjsm_milter::clock::now_unix())
        .await
        .unwrap()
        .unwrap();
    assert!(!details.value.contains("refusal"), "{}", details.value);
}

#[tokio::test]
async fn an_application_without_its_form_token_is_refused() {
    let site = WebSite::start(Backend::Sqlite);
    let applicant = site.http();
    // The visitor's form cookie is set; the form does not carry its token.
    applicant.get("/apply").await;
    let fields = server_application("Tokenless LLP", "tokenless.example", "it@tokenless.example");
    let page = applicant.post("/apply", &fields).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let mut wrong = fields.clone();
    wrong.push((
        "csrf",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ));
    let page = applicant.post("/apply", &wrong).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let store = site.store().await;
    assert!(store.orgs().await.unwrap().is_empty(), "nothing applied");
    let now = cjsm_milter::clock::now_unix();
    assert!(
        store
            .records("application", "", 10, now)
            .await
            .unwrap()
            .is_empty(),
        "no details kept"
    );
    assert!(
        !site
            .audit(20)
            .await
            .iter()
            .any(|e| e["action"] == "org apply")
    );
}

#[tokio::test]
async fn what_an_applicant_types_is_shown_escaped_to_the_hub() {
    let site = WebSite::start(Backend::Sqlite);
    let id = apply(&site, "<script>alert(1)</script> Law", "script.example").await;
    let hub = operator(&site).await;
    for path in [
        "/hub/applications".to_string(),
        format!("/hub/applications/{id}"),
    ] {
        let page = hub.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(
            !page.body.contains("<script>alert(1)</script>"),
            "{path}: {}",
            page.body
        );
        assert!(
            page.body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62; Law"),
            "{path}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn a_domain_stays_claimed_whatever_the_connection_and_after_a_refusal() {
    let site = WebSite::start(Backend::Sqlite);
    let id = apply(&site, "Claimant LLP", "claimant.example").await;
    let applicant = site.http();
    // A mailbox organisation would be hosted at claimant.example.cjsm.net: the same claim.
    let mut mailbox: Vec<(&str, &str)> = server_application(
        "Claimant Chambers",
        "claimant.example",
        "clerk@claimant.example",
    )
    .into_iter()
    .filter(|(name, _)| !matches!(*name, "connection" | "fingerprint"))
    .collect();
    mailbox.push(("connection", "mailbox"));
    let refused_page = |page: common::web::Page| {
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.body.contains("id=\"problem\""), "{}", page.body);
        page.body
    };
    let problem = refused_page(applicant.submit("/apply", "/apply", &mailbox).await);
    assert!(
        problem.contains("already registered to claimant-llp (Claimant LLP, applied)"),
        "{problem}"
    );
    // Refused, the organisation keeps its claim (the directory deletes nothing): the next
    // applicant is told who holds the domain, and the hub decides.
    let hub = operator(&site).await;
    let token = hub.get("/").await.csrf();
    let page = hub
        .post(
            &format!("/hub/applications/{id}/refuse"),
            &[
                ("csrf", token.as_str()),
                ("reason", "Duplicate of an earlier\r\napplication."),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let problem = refused_page(applicant.submit("/apply", "/apply", &mailbox).await);
    assert!(problem.contains("registered to claimant-llp"), "{problem}");
    // A refused application is not approved by mistake, and is refused once.
    for (action, fields) in [("approve", vec![]), ("refuse", vec![("reason", "again")])] {
        let mut all = vec![("csrf", token.as_str())];
        all.extend(fields);
        let page = hub
            .post(&format!("/hub/applications/{id}/{action}"), &all)
            .await;
        assert_eq!(page.status, 400, "{action}: {}", page.body);
        let why = page.element("problem").unwrap();
        assert!(
            why.contains("was refused") && why.contains("Duplicate of an earlier application."),
            "{why}"
        );
    }
    assert_eq!(org_state(&site, &id).await, Some(OrgState::Applied));
    // The refused applicants' details were not kept.
    let now = cjsm_milter::clock::now_unix();
    let kept = site
        .store()
        .await
        .records("application", "", 10, now)
        .await
        .unwrap();
    let kept: Vec<&str> = kept.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(kept, [id.as_str()]);
    let audit = site.audit(50).await;
    assert!(
        audit.iter().any(|e| e["action"] == "org refuse"
            && e["target"] == id.as_str()
            && e["reason"] == "Duplicate of an earlier application."),
        "{audit:?}"
    );
}

#[tokio::test]
async fn an_incomplete_application_is_shown_again_with_its_problems() {
    let site = WebSite::start(Backend::Sqlite);
    let applicant = site.http();
    let mut fields = server_application("Half Done LLP", "half.example", "not-an-address");
    fields.retain(|(name, _)| !matches!(*name, "town" | "fingerprint"));
    let page = applicant.submit("/apply", "/apply", &fields).await;
    assert_eq!(page.status, 400, "{}", page.body);
    for problem in [
        "Enter the town or city.",
        "Enter the SHA-256 fingerprint",
        "e-mail address `not-an-address`",
    ] {
        assert!(page.body.contains(problem), "{problem}: {}", page.body);
    }
    // As typed, to be corrected rather than typed again.
    assert!(
        page.body.contains("value=\"Half Done LLP\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("value=\"server\" checked"),
        "{}",
        page.body
    );
    assert!(site.store().await.orgs().await.unwrap().is_empty());
}

#[tokio::test]
async fn activating_again_makes_only_the_missing_administrator_accounts() {
    let site = WebSite::start(Backend::Sqlite);
    // Switched on from the command line: its administrator has no account yet.
    site.onboard(
        "acme",
        "Acme Solicitors",
        "acme.example",
        "server",
        &["oa@acme.example"],
    );
    let hub = operator(&site).await;
    let page = hub.get("/hub/applications/acme").await;
    assert!(
        page.body.contains("oa@acme.example: no account yet"),
        "{}",
        page.body
    );
    let token = page.csrf();
    let fields = [("csrf", token.as_str())];
    let activate = || hub.post("/hub/applications/acme/activate", &fields);
    let page = activate().await;
    assert_eq!(page.status, 200, "{}", page.body);
    let one_time = page
        .element("one-time-password")
        .expect("a one-time password");
    // Once: the next press is the rules' refusal, and shows no password.
    let page = activate().await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.element("problem").unwrap().contains("already active"),
        "{}",
        page.body
    );
    assert!(page.element("one-time-password").is_none());
    let audit = site.audit(50).await;
    let created = audit
        .iter()
        .filter(|e| e["action"] == "web account created" && e["target"] == "oa@acme.example")
        .count();
    assert_eq!(created, 1, "{audit:?}");
    assert!(
        !audit
            .iter()
            .any(|e| e["action"] == "org activate" && e["actor"] == OPERATOR)
    );
    let administrator = site.http();
    administrator
        .first_sign_in("oa@acme.example", &one_time, "copper kettle meadow")
        .await;
}
