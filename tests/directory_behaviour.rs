//! One behaviour suite, run on both backends: the embedded store (SQLite) and Redis (a real
//! redis-server started by the test). The store's reads and writes, the lookup the milter
//! uses, the organisation-by-domain index, the audit trail, and the directory's rules on top.

mod common;

use cjsm_milter::directory::csv::ImportError;
use cjsm_milter::directory::model::{
    AuditEvent, ClientCertificate, ConnectionType, OrgState, Organisation, UserState, VerdictEvent,
};
use cjsm_milter::directory::org::Application;
use cjsm_milter::directory::user::UserDetails;
use cjsm_milter::directory::{Admin, AdminError};
use cjsm_milter::policy::DirectoryAnswer;
use cjsm_milter::store::{Directory, DirectoryRead, DirectoryWrite, RedisStore, SqliteStore};
use common::fixtures::org;
use common::redis::RedisServer;

fn details(first: &str, last: &str) -> UserDetails {
    UserDetails {
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        town: Some("Leeds".into()),
        business_type: Some("Solicitors".into()),
    }
}

fn application(id: &str, domains: &[&str], connection: ConnectionType) -> Application {
    Application {
        id: id.into(),
        name: format!("{id} LLP"),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        connection,
        admins: vec![format!("admin@{}", domains[0])],
        client_certificate: None,
        mail_server: None,
    }
}

fn refusal(result: Result<impl std::fmt::Debug, AdminError>) -> String {
    match result {
        Err(AdminError::Refused(text)) => text,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The id of the organisation the index names for `domain`.
async fn org_of(store: &dyn DirectoryRead, domain: &str) -> Option<String> {
    store.org_by_domain(domain).await.unwrap().map(|o| o.id)
}

async fn answer(store: &dyn Directory, address: &str) -> DirectoryAnswer {
    cjsm_milter::lookups::answer(&store.lookup(address).await.unwrap())
}

/// The suite: every backend must pass it unchanged.
async fn behaviour(store: &dyn Directory) {
    let admin = Admin::new(store, "cjsm.net", Some("tester".into()));

    // Empty.
    assert!(store.orgs().await.unwrap().is_empty());
    assert!(store.users().await.unwrap().is_empty());

    // Applications; a duplicate application for a registered or pending domain is refused,
    // naming the organisation that holds it.
    let firm = admin
        .org_apply(application(
            "hartley",
            &["HartleyLaw.co.uk"],
            ConnectionType::Server,
        ))
        .await
        .unwrap();
    assert_eq!(firm.state, OrgState::Applied);
    let lookup = store.lookup("nobody@x.cjsm.net").await.unwrap();
    assert!(lookup.user.is_none() && lookup.org.is_none());
    assert_eq!(firm.domains, vec!["hartleylaw.co.uk"]);
    let text = refusal(
        admin
            .org_apply(application(
                "copycat",
                &["other.co.uk", "hartleylaw.co.uk"],
                ConnectionType::Server,
            ))
            .await,
    );
    assert!(
        text.contains("hartleylaw.co.uk") && text.contains("hartley"),
        "{text}"
    );
    assert!(
        refusal(
            admin
                .org_apply(application(
                    "hartley",
                    &["new.co.uk"],
                    ConnectionType::Server
                ))
                .await
        )
        .contains("already exists")
    );
    admin
        .org_apply(application(
            "smith",
            &["smithchambers.cjsm.net"],
            ConnectionType::Mailbox,
        ))
        .await
        .unwrap();

    // Not switched on until approved and the terms are signed.
    assert!(refusal(admin.org_activate("hartley").await).contains("not approved"));
    assert!(refusal(admin.org_sign_terms("hartley").await).contains("not approved"));
    admin.org_approve("hartley").await.unwrap();
    assert!(refusal(admin.org_approve("hartley").await).contains("approved"));
    assert!(refusal(admin.org_activate("hartley").await).contains("terms"));
    admin.org_sign_terms("hartley").await.unwrap();
    assert!(refusal(admin.org_sign_terms("hartley").await).contains("already"));
    let active = admin.org_activate("hartley").await.unwrap();
    assert_eq!(active.state, OrgState::Active);
    assert!(active.terms_signed.is_some());
    assert!(refusal(admin.org_approve("nobody").await).contains("no organisation"));

    // The organisation of a domain, from the index: any case, a final dot ignored; a refused
    // application indexed nothing; a server organisation's secure form is not its domain.
    assert_eq!(
        org_of(store, "hartleylaw.co.uk").await.as_deref(),
        Some("hartley")
    );
    assert_eq!(
        org_of(store, "HartleyLaw.CO.uk.").await.as_deref(),
        Some("hartley")
    );
    assert_eq!(
        org_of(store, "smithchambers.cjsm.net").await.as_deref(),
        Some("smith")
    );
    assert_eq!(
        org_of(store, "other.co.uk").await,
        None,
        "refused application"
    );
    assert_eq!(org_of(store, "hartleylaw.co.uk.cjsm.net").await, None);
    assert_eq!(org_of(store, "nowhere.example").await, None);
    assert_eq!(org_of(store, "").await, None);
    let found = store
        .org_by_domain("hartleylaw.co.uk")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found,
        store.org("hartley").await.unwrap().unwrap(),
        "the whole record"
    );

    // An address no user has, in an organisation's domain: the organisation that holds it
    // (so a forged sender there is recognised), in the same one lookup.
    let lookup = store
        .lookup("mallory@hartleylaw.co.uk.cjsm.net")
        .await
        .unwrap();
    assert!(lookup.user.is_none());
    assert_eq!(lookup.org.map(|o| o.id).as_deref(), Some("hartley"));

    // A server organisation's certificate and mail server change; a mailbox one has none.
    let updated = admin
        .org_update(
            "hartley",
            Some(ClientCertificate {
                fingerprint: "AB:".repeat(31) + "AB",
                subject: "CN=mail2.hartleylaw.co.uk".into(),
                issuer: "CN=Hub CA".into(),
            }),
            Some(Some("[MX.hartleylaw.co.uk]:2525".into())),
        )
        .await
        .unwrap();
    assert_eq!(
        updated.client_certificate.unwrap().fingerprint,
        "ab".repeat(32)
    );
    assert_eq!(
        updated.mail_server.as_deref(),
        Some("[mx.hartleylaw.co.uk]:2525")
    );
    assert_eq!(updated.state, OrgState::Active, "still active");
    for bad in ["[mx.x]:99999", "mx x", "[mx.x", ""] {
        let text = refusal(
            admin
                .org_update("hartley", None, Some(Some(bad.into())))
                .await,
        );
        assert!(text.contains("--mail-server"), "{bad}: {text}");
    }
    let cleared = admin.org_update("hartley", None, Some(None)).await.unwrap();
    assert_eq!(cleared.mail_server, None);
    // A change is seen through the index too.
    assert_eq!(
        store.org_by_domain("hartleylaw.co.uk").await.unwrap(),
        Some(cleared)
    );
    assert!(
        refusal(
            admin
                .org_update("smith", None, Some(Some("mx.x".into())))
                .await
        )
        .contains("mailbox")
    );

    // Users: only in the organisation's domains, under the secure suffix.
    let text = refusal(
        admin
            .user_add(
                "alice@hartleylaw.co.uk",
                "hartley",
                details("Alice", "Jones"),
            )
            .await,
    );
    assert!(
        text.contains("not under") && text.contains("@hartleylaw.co.uk.cjsm.net"),
        "{text}"
    );
    let text = refusal(
        admin
            .user_add(
                "alice@elsewhere.co.uk.cjsm.net",
                "hartley",
                details("Alice", "Jones"),
            )
            .await,
    );
    assert!(text.contains("hartleylaw.co.uk.cjsm.net"), "{text}");
    assert!(
        refusal(
            admin
                .user_add("a@x.cjsm.net", "nobody", details("A", "B"))
                .await
        )
        .contains("no organisation")
    );
    let alice = admin
        .user_add(
            "Alice@HartleyLaw.co.uk.cjsm.net",
            "hartley",
            details("Alice", "Jones"),
        )
        .await
        .unwrap();
    assert_eq!(alice.address, "alice@hartleylaw.co.uk.cjsm.net");
    assert!(
        refusal(
            admin
                .user_add(
                    "alice@hartleylaw.co.uk.cjsm.net",
                    "hartley",
                    details("A", "J")
                )
                .await
        )
        .contains("already exists")
    );
    admin
        .user_add(
            "bob@smithchambers.cjsm.net",
            "smith",
            details("Bob", "Smith"),
        )
        .await
        .unwrap();

    // The milter's lookup: user and organisation together; only an active organisation's
    // users send and receive.
    let lookup = store
        .lookup("ALICE@hartleylaw.co.uk.cjsm.net")
        .await
        .unwrap();
    assert_eq!(lookup.user.as_ref().unwrap().first_name, "Alice");
    assert_eq!(lookup.org.as_ref().unwrap().id, "hartley");
    assert_eq!(
        answer(store, "alice@hartleylaw.co.uk.cjsm.net").await,
        DirectoryAnswer::Active
    );
    assert_eq!(
        answer(store, "bob@smithchambers.cjsm.net").await,
        DirectoryAnswer::Suspended,
        "organisation not active"
    );
    assert_eq!(
        answer(store, "carol@hartleylaw.co.uk.cjsm.net").await,
        DirectoryAnswer::Unknown
    );

    // States.
    admin
        .user_set_state("alice@hartleylaw.co.uk.cjsm.net", UserState::Suspended)
        .await
        .unwrap();
    assert_eq!(
        answer(store, "alice@hartleylaw.co.uk.cjsm.net").await,
        DirectoryAnswer::Suspended
    );
    assert!(
        refusal(
            admin
                .user_set_state("alice@hartleylaw.co.uk.cjsm.net", UserState::Suspended)
                .await
        )
        .contains("already")
    );
    admin
        .user_set_state("alice@hartleylaw.co.uk.cjsm.net", UserState::Active)
        .await
        .unwrap();
    admin.org_suspend("hartley").await.unwrap();
    assert_eq!(
        answer(store, "alice@hartleylaw.co.uk.cjsm.net").await,
        DirectoryAnswer::Suspended,
        "organisation suspended"
    );
    admin.org_activate("hartley").await.unwrap();
    admin
        .user_set_state("alice@hartleylaw.co.uk.cjsm.net", UserState::Deleted)
        .await
        .unwrap();
    assert_eq!(
        answer(store, "alice@hartleylaw.co.uk.cjsm.net").await,
        DirectoryAnswer::Deleted
    );
    admin
        .user_set_state("alice@hartleylaw.co.uk.cjsm.net", UserState::Active)
        .await
        .unwrap();

    // Users keep their details current.
    let updated = admin
        .user_update(
            "alice@hartleylaw.co.uk.cjsm.net",
            UserDetails {
                town: Some("York".into()),
                ..UserDetails::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.town, "York");
    assert_eq!(updated.first_name, "Alice");
    assert!(
        refusal(
            admin
                .user_update("alice@hartleylaw.co.uk.cjsm.net", UserDetails::default())
                .await
        )
        .contains("nothing")
    );

    // Listing is ordered.
    let users = store.users().await.unwrap();
    let addresses: Vec<&str> = users.iter().map(|u| u.address.as_str()).collect();
    assert_eq!(
        addresses,
        [
            "alice@hartleylaw.co.uk.cjsm.net",
            "bob@smithchambers.cjsm.net"
        ]
    );
    let orgs: Vec<String> = store
        .orgs()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(orgs, ["hartley", "smith"]);

    // Bulk import: all or nothing, idempotent.
    let mut csv =
        String::from("secure_address,first_name,last_name,organisation,town,business_type\n");
    for i in 0..500 {
        csv.push_str(&format!(
            "user{i:03}@hartleylaw.co.uk.cjsm.net,First{i},Last{i},hartley,Leeds,Solicitors\n"
        ));
    }
    let summary = admin.user_import(csv.as_bytes()).await.unwrap();
    assert_eq!(
        (summary.added, summary.updated, summary.unchanged),
        (500, 0, 0)
    );
    let again = admin.user_import(csv.as_bytes()).await.unwrap();
    assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 500));
    assert_eq!(store.users().await.unwrap().len(), 502);
    // Paging walks the same users, in address order, a page at a time.
    let all: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.address)
        .collect();
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let page = store.users_page(after.as_deref(), 64).await.unwrap();
        assert!(page.len() <= 64);
        let Some(last) = page.last() else { break };
        after = Some(last.address.clone());
        paged.extend(page.into_iter().map(|u| u.address));
    }
    assert_eq!(paged, all);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "users() is ordered by address");
    let last = all.last().unwrap();
    assert!(store.users_page(Some(last), 10).await.unwrap().is_empty());
    assert!(store.users_page(None, 0).await.unwrap().is_empty());
    let too_many = csv.clone() + "user500@hartleylaw.co.uk.cjsm.net,F,L,hartley,Leeds,Solicitors\n";
    let err = admin
        .user_import(too_many.as_bytes())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("500"), "{err}");
    let bad = "secure_address,first_name,last_name,organisation,town,business_type\n\
               new1@hartleylaw.co.uk.cjsm.net,New,One,hartley,Leeds,Solicitors\n\
               new2@elsewhere.cjsm.net,New,Two,hartley,Leeds,Solicitors\n\
               new3@hartleylaw.co.uk.cjsm.net,,Three,hartley,Leeds,Solicitors\n\
               new4@hartleylaw.co.uk.cjsm.net,New,Four,nobody,Leeds,Solicitors\n";
    match admin.user_import(bad.as_bytes()).await {
        Err(AdminError::Import(ImportError::Rows(rows))) => {
            let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
            assert!(
                lines.contains(&3) && lines.contains(&4) && lines.contains(&5),
                "{rows:?}"
            );
            assert!(!lines.contains(&2), "{rows:?}");
        }
        other => panic!("expected row errors, got {other:?}"),
    }
    assert!(
        store
            .user("new1@hartleylaw.co.uk.cjsm.net")
            .await
            .unwrap()
            .is_none(),
        "nothing imported"
    );

    // Never approved, never switched on: apply, suspend, sign, activate all refused.
    admin
        .org_apply(application(
            "sneaky",
            &["sneaky.co.uk"],
            ConnectionType::Server,
        ))
        .await
        .unwrap();
    admin.org_suspend("sneaky").await.unwrap();
    assert!(refusal(admin.org_sign_terms("sneaky").await).contains("not approved"));
    assert!(refusal(admin.org_activate("sneaky").await).contains("not approved"));

    // A server organisation's domain and the same domain under the suffix are one claim.
    let text = refusal(
        admin
            .org_apply(application(
                "clash",
                &["hartleylaw.co.uk.cjsm.net"],
                ConnectionType::Mailbox,
            ))
            .await,
    );
    assert!(text.contains("hartley"), "{text}");

    // Races: of two applications for one domain, and two additions of one address, exactly
    // one wins; a suspension is never lost to a concurrent update.
    for round in 0..5 {
        let domain = format!("race{round}.co.uk");
        let (a, b) = tokio::join!(
            admin.org_apply(application(
                &format!("race{round}a"),
                &[&domain],
                ConnectionType::Server
            )),
            admin.org_apply(application(
                &format!("race{round}b"),
                &[&domain],
                ConnectionType::Server
            )),
        );
        assert!(a.is_ok() != b.is_ok(), "round {round}: {a:?} {b:?}");
        let address = format!("twin{round}@hartleylaw.co.uk.cjsm.net");
        let (a, b) = tokio::join!(
            admin.user_add(&address, "hartley", details("Twin", "A")),
            admin.user_add(&address, "hartley", details("Twin", "B")),
        );
        assert!(a.is_ok() != b.is_ok(), "round {round}: {a:?} {b:?}");
    }
    let bob = "bob@smithchambers.cjsm.net";
    for round in 0..10 {
        let town = format!("Town {round}");
        let (suspended, updated) = tokio::join!(
            admin.user_set_state(bob, UserState::Suspended),
            admin.user_update(
                bob,
                UserDetails {
                    town: Some(town.clone()),
                    ..UserDetails::default()
                }
            ),
        );
        suspended.unwrap();
        updated.unwrap();
        let user = store.user(bob).await.unwrap().unwrap();
        assert_eq!(user.state, UserState::Suspended, "round {round}");
        assert_eq!(user.town, town, "round {round}");
        admin.user_set_state(bob, UserState::Active).await.unwrap();
    }

    // A bulk load names organisations by id or name, and never moves a user.
    let csv = "secure_address,first_name,last_name,organisation,town,business_type\n\
               dora@smithchambers.cjsm.net,Dora,Smith,SMITH LLP,Leeds,Barristers\n";
    admin.user_import(csv.as_bytes()).await.unwrap();
    assert_eq!(
        store
            .user("dora@smithchambers.cjsm.net")
            .await
            .unwrap()
            .unwrap()
            .org,
        "smith"
    );
    let moving = "secure_address,first_name,last_name,organisation,town,business_type\n\
                  alice@hartleylaw.co.uk.cjsm.net,Alice,Jones,smith,York,Solicitors\n";
    let err = admin
        .user_import(moving.as_bytes())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("belongs to organisation hartley"), "{err}");

    // The audit trail: every change, newest first; verdicts appended by the milter too.
    store
        .append_audit(AuditEvent::Verdict(VerdictEvent {
            time_ms: 42,
            queue_id: Some("4XQ1".into()),
            sender: Some("a@met.pnn.police.uk".into()),
            recipients: vec!["alice@hartleylaw.co.uk.cjsm.net".into()],
            marking: Some("OFFICIAL".into()),
            action: "accept".into(),
            reason: "ok".into(),
        }))
        .await
        .unwrap();
    let audit = store.audit(1000).await.unwrap();
    assert_eq!(audit[0].queue_id(), Some("4XQ1"));
    assert!(audit[0].mentions("alice@hartleylaw.co.uk.cjsm.net"));
    let actions: Vec<&str> = audit.iter().map(|e| e.action()).collect();
    for action in [
        "org apply",
        "org approve",
        "org sign-terms",
        "org activate",
        "user add",
        "user suspend",
        "user update",
        "user import add",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(
        audit
            .iter()
            .filter_map(|e| match e {
                AuditEvent::Admin(admin) => Some(admin),
                AuditEvent::Verdict(_) => None,
            })
            .all(|e| e.actor.as_deref() == Some("tester"))
    );
    assert_eq!(store.audit(3).await.unwrap().len(), 3);

    // Organisations by registered mail server (the socketmap's TLS policy for a next hop):
    // every one registered with it, by id; one that moved is no longer.
    let shared = "[mx.shared.example]:25";
    for id in ["srv-b", "srv-a", "srv-c"] {
        store
            .put_org(Organisation {
                mail_server: Some(shared.into()),
                ..server_org(id, &[&format!("{id}.example")])
            })
            .await
            .unwrap();
    }
    let moved = store.org("srv-c").await.unwrap().unwrap();
    assert!(
        store
            .swap_org(
                Some(moved.revision),
                Organisation {
                    mail_server: Some("[mx.srv-c.example]:25".into()),
                    ..moved
                },
                Vec::new()
            )
            .await
            .unwrap()
    );
    let ids: Vec<String> = store
        .orgs_by_mail_server(shared)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(ids, ["srv-a", "srv-b"]);
    assert!(
        store
            .orgs_by_mail_server("[mx.none.example]:25")
            .await
            .unwrap()
            .is_empty()
    );
    // And the socketmap answers from the backend's indexes.
    let routing = cjsm_milter::config::RoutingConfig::default();
    let socketmap = cjsm_milter::config::SocketmapConfig::default();
    let ask = |request: &'static str| {
        cjsm_milter::routing::answer(request.as_bytes(), store, &routing, &socketmap)
    };
    assert_eq!(
        ask("transport bob@srv-a.example").await,
        format!("OK smtp:{shared}")
    );
    assert_eq!(
        ask("tlspolicy [mx.srv-c.example]:25").await,
        "OK secure match=.srv-c.example:srv-c.example protocols=>=TLSv1.2 ciphers=high"
    );
    assert_eq!(
        ask("tlspolicy mx.hartleylaw.co.uk").await,
        "OK secure match=.hartleylaw.co.uk:hartleylaw.co.uk protocols=>=TLSv1.2 ciphers=high"
    );
    assert_eq!(ask("transport bob@gmail.com").await, "NOTFOUND ");
    records_behaviour(store).await;
}

/// The website's records (accounts, sessions, nominations): compare-and-swap by revision,
/// expiry, listing by key prefix in key order, removal, and the sweep of expired ones.
async fn records_behaviour(store: &dyn Directory) {
    let now = 1_000_000;
    assert_eq!(store.record("account", "a@x.uk", now).await.unwrap(), None);
    // Written only as absent the first time, then only at the revision read.
    assert!(
        store
            .swap_record("account", "a@x.uk", None, Some("one".into()), 0, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .swap_record("account", "a@x.uk", None, Some("two".into()), 0, now)
            .await
            .unwrap()
    );
    let read = store
        .record("account", "a@x.uk", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (read.value.as_str(), read.revision, read.expires),
        ("one", 1, 0)
    );
    assert!(
        !store
            .swap_record("account", "a@x.uk", Some(7), Some("two".into()), 0, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .swap_record(
                "account",
                "a@x.uk",
                Some(1),
                Some("two words, \"quoted\" 1 2".into()),
                0,
                now
            )
            .await
            .unwrap()
    );
    let read = store
        .record("account", "a@x.uk", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (read.value.as_str(), read.revision),
        ("two words, \"quoted\" 1 2", 2)
    );
    // Kinds are apart.
    assert_eq!(store.record("session", "a@x.uk", now).await.unwrap(), None);
    // An expired record reads as absent and may be written again as absent.
    assert!(
        store
            .swap_record("session", "s1", None, Some("{}".into()), now + 10, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .record("session", "s1", now + 9)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.record("session", "s1", now + 10).await.unwrap(), None);
    assert!(
        !store
            .swap_record("session", "s1", Some(1), None, 0, now + 10)
            .await
            .unwrap()
    );
    assert!(
        store
            .swap_record("session", "s2", None, Some("{}".into()), now + 100, now)
            .await
            .unwrap()
    );
    assert_eq!(store.purge_expired("session", now + 50).await.unwrap(), 1);
    assert!(
        store
            .record("session", "s2", now + 50)
            .await
            .unwrap()
            .is_some()
    );
    // Removal at the revision read.
    assert!(
        store
            .swap_record("session", "s2", Some(1), None, 0, now)
            .await
            .unwrap()
    );
    assert_eq!(store.record("session", "s2", now).await.unwrap(), None);
    // Listing: by prefix, in key order, bounded; another prefix (and glob characters in
    // keys) not mixed in.
    for key in [
        "org-b/2", "org-a/2", "org-a/1", "org-a*/1", "org-ab/1", "org-a/3",
    ] {
        assert!(
            store
                .swap_record("nomination", key, None, Some(key.into()), 0, now)
                .await
                .unwrap()
        );
    }
    let listed: Vec<String> = store
        .records("nomination", "org-a/", 10, now)
        .await
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(listed, ["org-a/1", "org-a/2", "org-a/3"]);
    let first_two = store.records("nomination", "org-a/", 2, now).await.unwrap();
    assert_eq!(first_two.len(), 2);
    assert_eq!(first_two[1].1.value, "org-a/2");
    let starred = store
        .records("nomination", "org-a*/", 10, now)
        .await
        .unwrap();
    assert_eq!(starred.len(), 1, "{starred:?}");
}

#[tokio::test]
async fn sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    behaviour(&store).await;
}

#[tokio::test]
async fn redis_backend() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "suite", 1000)
        .await
        .unwrap();
    behaviour(&store).await;
    // An emptied Redis (a restart without its data, a flush) is an outage, not an empty
    // directory: lookups fail, so the milter tempfails instead of answering 5.1.1.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let err = store
        .lookup("alice@hartleylaw.co.uk.cjsm.net")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let err = store.org_by_domain("hartleylaw.co.uk").await.unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    // A second deployment on the same Redis sees none of it.
    let other = RedisStore::connect(&server.url(), "other", 1000)
        .await
        .unwrap();
    assert!(other.users().await.unwrap().is_empty());
    assert!(other.orgs().await.unwrap().is_empty());
}

#[tokio::test]
async fn redis_sentinel_backend() {
    let master = RedisServer::start();
    let sentinel = common::redis::RedisProcess::start(
        Some(&format!(
            "port {{port}}\nbind 127.0.0.1\ndir {{dir}}\n\
             sentinel monitor cjsm 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds cjsm 5000\n",
            master.port
        )),
        &["--sentinel"],
    );
    let url = format!("redis+sentinel://127.0.0.1:{}/cjsm", sentinel.port);
    let store = RedisStore::connect(&url, "sentinel", 1000).await.unwrap();
    behaviour(&store).await;
}

#[tokio::test]
async fn redis_cluster_backend() {
    let node_args = [
        "--port",
        "{port}",
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "{dir}/nodes.conf",
        "--save",
        "",
        "--appendonly",
        "no",
    ];
    let nodes: Vec<_> = (0..3)
        .map(|_| common::redis::RedisProcess::start(None, &node_args))
        .collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli (Debian package redis-tools, a dependency of redis-server)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let url = addresses
        .iter()
        .map(|a| format!("redis://{a}/"))
        .collect::<Vec<_>>()
        .join(",");
    // The cluster takes a moment to agree that every slot is served.
    let mut store = None;
    for _ in 0..100 {
        if let Ok(s) = RedisStore::connect(&url, "cluster", 1000).await
            && s.orgs().await.is_ok()
        {
            store = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let store = store.expect("the cluster serves its slots within 10 s");
    behaviour(&store).await;
}

/// `rediss://` through rustls, the server's certificate issued by a private CA (made with the
/// openssl CLI) and verified against `tls_ca_file`.
#[tokio::test]
async fn redis_tls_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl command (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=Test Hub CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.path().join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-out",
        &path("server.pem"),
        "-days",
        "2",
        "-extfile",
        &path("ext"),
    ]);
    let config = format!(
        "port 0\ntls-port {{port}}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {{dir}}\n\
         tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n",
        path("server.pem"),
        path("server.key"),
        path("ca.pem")
    );
    let server = common::redis::RedisProcess::start_tls(&config);
    let url = format!("rediss://127.0.0.1:{}/", server.port);
    // Without the CA the server's certificate is not trusted.
    assert!(RedisStore::connect(&url, "tls", 1000).await.is_err());
    let ca = dir.path().join("ca.pem");
    let store = RedisStore::connect_with_ca(&url, "tls", 1000, Some(&ca))
        .await
        .unwrap();
    behaviour(&store).await;
}

/// A server organisation, as the index tests store it behind the directory's back.
fn server_org(id: &str, domains: &[&str]) -> Organisation {
    Organisation {
        connection: ConnectionType::Server,
        ..org(id, domains)
    }
}

/// A directory file of an earlier version, written before the index existed (it holds no
/// index, and this one not even the domain claims), migrated into the database: the index is
/// built from the organisations' domains, and kept by the writes that follow, from another
/// process's store as well.
#[tokio::test]
async fn a_migrated_directory_indexes_domains_of_a_directory_written_before() {
    let dir = tempfile::tempdir().unwrap();
    let old = serde_json::json!({
        "orgs": { "old": server_org("old", &["old.co.uk", "Second.Example"]) },
        "users": {},
    });
    std::fs::write(
        dir.path().join("directory.json"),
        serde_json::to_string_pretty(&old).unwrap(),
    )
    .unwrap();
    cjsm_milter::store::migrate::migrate(dir.path(), 1000).unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(org_of(&store, "old.co.uk").await.as_deref(), Some("old"));
    assert_eq!(
        org_of(&store, "second.example").await.as_deref(),
        Some("old")
    );
    assert_eq!(org_of(&store, "new.co.uk").await, None);
    // Another process writes: the index follows.
    let writer = SqliteStore::open(dir.path()).unwrap();
    writer
        .put_org(server_org("new", &["new.co.uk"]))
        .await
        .unwrap();
    assert_eq!(org_of(&store, "new.co.uk").await.as_deref(), Some("new"));
    // An organisation that no longer lists a domain is not found by it.
    writer
        .put_org(server_org("old", &["old.co.uk"]))
        .await
        .unwrap();
    assert_eq!(org_of(&store, "second.example").await, None);
}

/// Organisations in Redis written before the index existed (by hand here, as an earlier
/// version left them: the record, the id set, the meta key, and for one of them not even a
/// claim) are found: the first question fills the index from every organisation. An
/// organisation an earlier version writes afterwards (with its claim, without the index) is
/// found through its claim; an index entry for a domain its organisation no longer lists is
/// no answer.
#[tokio::test]
async fn redis_store_finds_organisations_written_before_the_index() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let put = |id: &str, domains: &[&str]| {
        let mut pipe = redis::pipe();
        pipe.set(
            format!("{{old}}:org:{id}"),
            serde_json::to_string(&server_org(id, domains)).unwrap(),
        )
        .sadd("{old}:orgs", id)
        .set("{old}:meta", "1");
        pipe
    };
    let _: () = put("unclaimed", &["unclaimed.co.uk"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = put("claimed", &["claimed.co.uk"])
        .hset("{old}:domains", "claimed.co.uk", "claimed")
        .hset("{old}:domains", "claimed.co.uk.cjsm.net", "claimed")
        .query_async(&mut conn)
        .await
        .unwrap();

    let store = RedisStore::connect(&server.url(), "old", 1000)
        .await
        .unwrap();
    assert_eq!(
        org_of(&store, "unclaimed.co.uk").await.as_deref(),
        Some("unclaimed")
    );
    assert_eq!(
        org_of(&store, "Claimed.co.uk").await.as_deref(),
        Some("claimed")
    );
    assert_eq!(org_of(&store, "claimed.co.uk.cjsm.net").await, None);
    assert_eq!(org_of(&store, "nowhere.co.uk").await, None);
    let built: bool = redis::cmd("HEXISTS")
        .arg("{old}:org-by-domain")
        .arg("#built")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !built,
        "readers only read (the milter's ACL may allow nothing else): the index is filled by the first organisation write"
    );

    // An earlier version writes an organisation after the index was built.
    let _: () = put("later", &["later.co.uk"])
        .hset("{old}:domains", "later.co.uk", "later")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        org_of(&store, "later.co.uk").await.as_deref(),
        Some("later")
    );

    // A stale entry: the organisation no longer lists the domain.
    let _: () = redis::cmd("HSET")
        .arg("{old}:org-by-domain")
        .arg("gone.co.uk")
        .arg("unclaimed")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(org_of(&store, "gone.co.uk").await, None);

    // Writes of this version index the domains they list.
    store
        .put_org(server_org("fresh", &["Fresh.co.uk"]))
        .await
        .unwrap();
    let indexed: Option<String> = redis::cmd("HGET")
        .arg("{old}:org-by-domain")
        .arg("fresh.co.uk")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexed.as_deref(), Some("fresh"));
    assert_eq!(
        org_of(&store, "fresh.co.uk").await.as_deref(),
        Some("fresh")
    );
    // That write filled the index from every organisation first, and marked it built.
    let built: bool = redis::cmd("HEXISTS")
        .arg("{old}:org-by-domain")
        .arg("#built")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(built, "the first organisation write fills the index");
    assert_eq!(
        org_of(&store, "unclaimed.co.uk").await.as_deref(),
        Some("unclaimed")
    );

    // The directory's own records are as an earlier version reads them: the index is a key
    // of its own.
    let record: String = redis::cmd("GET")
        .arg("{old}:org:unclaimed")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Organisation>(&record).unwrap(),
        server_org("unclaimed", &["unclaimed.co.uk"])
    );
}

/// Users in Redis written before the address-ordered index existed (by hand, as an earlier
/// version left them: the record, the address set, the meta key) are walked in address order a
/// page at a time: the first page fills the index; a user an earlier version writes later is
/// added at the next walk (the index then holds fewer addresses than the set); this
/// version's writes index their users themselves.
#[tokio::test]
async fn redis_store_walks_users_from_an_ordered_index() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let put_old = |address: &str| {
        let mut pipe = redis::pipe();
        pipe.set(
            format!("{{old}}:user:{address}"),
            serde_json::to_string(&common::fixtures::user(address, "old")).unwrap(),
        )
        .sadd("{old}:users", address)
        .set("{old}:meta", "1");
        pipe
    };
    let mut addresses: Vec<String> = (0..23)
        .map(|i| format!("u{:02}@old.cjsm.net", (i * 7) % 23))
        .collect();
    for address in &addresses {
        let _: () = put_old(address).query_async(&mut conn).await.unwrap();
    }
    addresses.sort();
    let store = RedisStore::connect(&server.url(), "old", 1000)
        .await
        .unwrap();
    let walk = |size: usize| {
        let store = &store;
        async move {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            for _ in 0..1000 {
                let page = store.users_page(after.as_deref(), size).await.unwrap();
                assert!(page.len() <= size);
                let Some(last) = page.last() else { break };
                after = Some(last.address.clone());
                seen.extend(page.into_iter().map(|u| u.address));
            }
            seen
        }
    };
    assert_eq!(walk(5).await, addresses);
    let indexed: usize = redis::cmd("ZCARD")
        .arg("{old}:users-by-address")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexed, addresses.len(), "the first page filled the index");
    assert_eq!(walk(1).await, addresses);
    assert_eq!(walk(1000).await, addresses);
    let page = store.users_page(Some("u10@old.cjsm.net"), 2).await.unwrap();
    let shown: Vec<&str> = page.iter().map(|u| u.address.as_str()).collect();
    assert_eq!(shown, ["u11@old.cjsm.net", "u12@old.cjsm.net"]);

    // An earlier version adds a user after the index was filled.
    let _: () = put_old("a-late@old.cjsm.net")
        .query_async(&mut conn)
        .await
        .unwrap();
    addresses.insert(0, "a-late@old.cjsm.net".into());
    assert_eq!(walk(4).await, addresses);

    // This version's writes (plain and compare-and-swap) index what they write.
    store
        .put_users(vec![common::fixtures::user("zz-put@old.cjsm.net", "old")])
        .await
        .unwrap();
    assert!(
        store
            .swap_users(vec![(
                None,
                common::fixtures::user("m-swap@old.cjsm.net", "old")
            )])
            .await
            .unwrap()
    );
    for address in ["zz-put@old.cjsm.net", "m-swap@old.cjsm.net"] {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg("{old}:users-by-address")
            .arg(address)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(score, Some(0.0), "{address}");
    }
    addresses.push("zz-put@old.cjsm.net".into());
    addresses.push("m-swap@old.cjsm.net".into());
    addresses.sort();
    assert_eq!(walk(3).await, addresses);
}

/// Organisations registered with a mail server (a next hop several may share) are found from
/// a per-server set: filled once from every organisation for a directory written before it,
/// then kept by every write; an organisation that moved to another server is no answer.
#[tokio::test]
async fn redis_store_finds_organisations_by_mail_server() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let with_server = |id: &str, mail_server: &str| Organisation {
        mail_server: Some(mail_server.into()),
        ..server_org(id, &[&format!("{id}.co.uk")])
    };
    for org in [
        with_server("b-firm", "[mx.provider.net]:25"),
        with_server("a-firm", "[mx.provider.net]:25"),
        with_server("own", "[192.0.2.25]:2525"),
    ] {
        let _: () = redis::pipe()
            .set(
                format!("{{old}}:org:{}", org.id),
                serde_json::to_string(&org).unwrap(),
            )
            .sadd("{old}:orgs", &org.id)
            .set("{old}:meta", "1")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let store = RedisStore::connect(&server.url(), "old", 1000)
        .await
        .unwrap();
    let ids = |orgs: Vec<Organisation>| orgs.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .orgs_by_mail_server("[mx.provider.net]:25")
            .await
            .unwrap()),
        ["a-firm", "b-firm"]
    );
    assert_eq!(
        ids(store
            .orgs_by_mail_server("[192.0.2.25]:2525")
            .await
            .unwrap()),
        ["own"]
    );
    assert!(
        store
            .orgs_by_mail_server("[192.0.2.25]")
            .await
            .unwrap()
            .is_empty()
    );
    let filled: bool = redis::cmd("EXISTS")
        .arg("{old}:servers-indexed")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !filled,
        "readers only read: the sets are filled by the first organisation write"
    );

    // Writes of this version: a new organisation, and one moving to another server.
    store
        .put_org(with_server("new", "[mx.provider.net]:25"))
        .await
        .unwrap();
    let filled: bool = redis::cmd("EXISTS")
        .arg("{old}:servers-indexed")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        filled,
        "the first organisation write fills the sets, then every write keeps them"
    );
    let moved = store.org("a-firm").await.unwrap().unwrap();
    assert!(
        store
            .swap_org(
                Some(moved.revision),
                Organisation {
                    mail_server: Some("mx.a-firm.co.uk".into()),
                    ..moved
                },
                Vec::new(),
            )
            .await
            .unwrap()
    );
    assert_eq!(
        ids(store
            .orgs_by_mail_server("[mx.provider.net]:25")
            .await
            .unwrap()),
        ["b-firm", "new"]
    );
    assert_eq!(
        ids(store.orgs_by_mail_server("mx.a-firm.co.uk").await.unwrap()),
        ["a-firm"]
    );
    // A flushed Redis is an outage here too.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let err = store
        .orgs_by_mail_server("mx.a-firm.co.uk")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

/// A backend that refuses the walks over every user or organisation: the rules at hub scale
/// must answer from the indexes (an organisation by id or domain, a user by address, the
/// address-ordered pages) instead.
struct NoWalks<'a>(&'a dyn Directory);

fn walked<T>(what: &str) -> cjsm_milter::store::StoreFuture<'static, T> {
    let message = format!("walked every {what}");
    Box::pin(async move { Err(cjsm_milter::store::StoreError::Unavailable(message)) })
}

impl DirectoryRead for NoWalks<'_> {
    fn lookup<'a>(
        &'a self,
        address: &'a str,
    ) -> cjsm_milter::store::StoreFuture<'a, cjsm_milter::directory::model::Lookup> {
        self.0.lookup(address)
    }
    fn user<'a>(
        &'a self,
        address: &'a str,
    ) -> cjsm_milter::store::StoreFuture<'a, Option<cjsm_milter::directory::model::User>> {
        self.0.user(address)
    }
    fn users(
        &self,
    ) -> cjsm_milter::store::StoreFuture<'_, Vec<cjsm_milter::directory::model::User>> {
        walked("user")
    }
    fn users_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> cjsm_milter::store::StoreFuture<'a, Vec<cjsm_milter::directory::model::User>> {
        self.0.users_page(after, limit)
    }
    fn org<'a>(&'a self, id: &'a str) -> cjsm_milter::store::StoreFuture<'a, Option<Organisation>> {
        self.0.org(id)
    }
    fn orgs(&self) -> cjsm_milter::store::StoreFuture<'_, Vec<Organisation>> {
        walked("organisation")
    }
    fn org_by_domain<'a>(
        &'a self,
        domain: &'a str,
    ) -> cjsm_milter::store::StoreFuture<'a, Option<Organisation>> {
        self.0.org_by_domain(domain)
    }
    fn orgs_by_mail_server<'a>(
        &'a self,
        server: &'a str,
    ) -> cjsm_milter::store::StoreFuture<'a, Vec<Organisation>> {
        self.0.orgs_by_mail_server(server)
    }
    fn certificates(
        &self,
    ) -> cjsm_milter::store::StoreFuture<'_, Vec<cjsm_milter::directory::model::Certificate>> {
        self.0.certificates()
    }
    fn size(&self) -> cjsm_milter::store::StoreFuture<'_, (usize, usize)> {
        self.0.size()
    }
    fn written(&self) -> cjsm_milter::store::StoreFuture<'_, bool> {
        self.0.written()
    }
}

impl DirectoryWrite for NoWalks<'_> {
    fn put_users(
        &self,
        users: Vec<cjsm_milter::directory::model::User>,
    ) -> cjsm_milter::store::StoreFuture<'_, ()> {
        self.0.put_users(users)
    }
    fn put_org(&self, org: Organisation) -> cjsm_milter::store::StoreFuture<'_, ()> {
        self.0.put_org(org)
    }
    fn swap_users(
        &self,
        changes: Vec<(Option<u64>, cjsm_milter::directory::model::User)>,
    ) -> cjsm_milter::store::StoreFuture<'_, bool> {
        self.0.swap_users(changes)
    }
    fn swap_org(
        &self,
        expected: Option<u64>,
        org: Organisation,
        domains: Vec<String>,
    ) -> cjsm_milter::store::StoreFuture<'_, bool> {
        self.0.swap_org(expected, org, domains)
    }
    fn put_certificate(
        &self,
        cert: cjsm_milter::directory::model::Certificate,
    ) -> cjsm_milter::store::StoreFuture<'_, ()> {
        self.0.put_certificate(cert)
    }
    fn remove_certificate<'a>(
        &'a self,
        address: &'a str,
    ) -> cjsm_milter::store::StoreFuture<'a, bool> {
        self.0.remove_certificate(address)
    }
}

impl cjsm_milter::store::Records for NoWalks<'_> {
    fn record<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        now: u64,
    ) -> cjsm_milter::store::StoreFuture<'a, Option<cjsm_milter::store::Record>> {
        self.0.record(kind, key, now)
    }
    fn swap_record<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        expected: Option<u64>,
        value: Option<String>,
        expires: u64,
        now: u64,
    ) -> cjsm_milter::store::StoreFuture<'a, bool> {
        self.0.swap_record(kind, key, expected, value, expires, now)
    }
    fn records<'a>(
        &'a self,
        kind: &'a str,
        prefix: &'a str,
        limit: usize,
        now: u64,
    ) -> cjsm_milter::store::StoreFuture<'a, Vec<(String, cjsm_milter::store::Record)>> {
        self.0.records(kind, prefix, limit, now)
    }
    fn purge_expired<'a>(
        &'a self,
        kind: &'a str,
        now: u64,
    ) -> cjsm_milter::store::StoreFuture<'a, usize> {
        self.0.purge_expired(kind, now)
    }
}

impl cjsm_milter::store::AuditTrail for NoWalks<'_> {
    fn append_audit(&self, event: AuditEvent) -> cjsm_milter::store::StoreFuture<'_, ()> {
        self.0.append_audit(event)
    }
    fn append_audit_batch(
        &self,
        events: Vec<AuditEvent>,
    ) -> cjsm_milter::store::StoreFuture<'_, ()> {
        self.0.append_audit_batch(events)
    }
    fn audit(&self, limit: usize) -> cjsm_milter::store::StoreFuture<'_, Vec<AuditEvent>> {
        self.0.audit(limit)
    }
}

/// The rules without a walk over the whole directory: applications refused for a domain
/// another organisation holds (its own or the secure form), a bulk load naming organisations
/// by id, checked against the users it names and never moving one.
async fn rules_without_walks(inner: &dyn Directory) {
    let store = NoWalks(inner);
    let admin = Admin::new(&store, "cjsm.net", Some("tester".into()));
    admin
        .org_apply(application(
            "hartley",
            &["HartleyLaw.co.uk"],
            ConnectionType::Server,
        ))
        .await
        .unwrap();
    for taken in ["hartleylaw.co.uk", "HARTLEYLAW.co.uk.cjsm.net"] {
        let text = refusal(
            admin
                .org_apply(application("copycat", &[taken], ConnectionType::Server))
                .await,
        );
        assert!(text.contains("already registered to hartley"), "{text}");
    }
    admin
        .org_apply(application(
            "chambers",
            &["chambers.cjsm.net"],
            ConnectionType::Mailbox,
        ))
        .await
        .unwrap();
    let text = refusal(
        admin
            .org_apply(application(
                "again",
                &["other.co.uk", "chambers.cjsm.net"],
                ConnectionType::Server,
            ))
            .await,
    );
    assert!(
        text.contains("chambers.cjsm.net is already registered to chambers"),
        "{text}"
    );
    for id in ["hartley", "chambers"] {
        admin.org_approve(id).await.unwrap();
        admin.org_sign_terms(id).await.unwrap();
        admin.org_activate(id).await.unwrap();
    }

    let csv = "secure_address,first_name,last_name,organisation,town,business_type\n\
               alice@hartleylaw.co.uk.cjsm.net,Alice,Jones,hartley,Leeds,Solicitors\n\
               bob@chambers.cjsm.net,Bob,Smith,chambers,York,Barristers\n\
               carol@chambers.cjsm.net,Carol,Leeds,chambers,Hull,Barristers\n";
    let summary = admin.user_import(csv.as_bytes()).await.unwrap();
    assert_eq!(
        (summary.added, summary.updated, summary.unchanged),
        (3, 0, 0)
    );
    let summary = admin.user_import(csv.as_bytes()).await.unwrap();
    assert_eq!(
        (summary.added, summary.updated, summary.unchanged),
        (0, 0, 3)
    );
    let changed = csv.replace("York,", "Whitby,");
    let summary = admin.user_import(changed.as_bytes()).await.unwrap();
    assert_eq!(
        (summary.added, summary.updated, summary.unchanged),
        (0, 1, 2)
    );
    let moving = "secure_address,first_name,last_name,organisation,town,business_type\n\
                  alice@hartleylaw.co.uk.cjsm.net,Alice,Jones,chambers,York,Solicitors\n\
                  dora@hartleylaw.co.uk.cjsm.net,Dora,Smith,chambers,York,Solicitors\n";
    let err = admin
        .user_import(moving.as_bytes())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("belongs to organisation hartley"), "{err}");
    assert!(err.contains("line 3, field secure_address"), "{err}");
    // A name that is no organisation's id is looked for among the names: that one question
    // reads every organisation (no index answers a name).
    let named = "secure_address,first_name,last_name,organisation,town,business_type\n\
                 dora@chambers.cjsm.net,Dora,Smith,Chambers LLP,York,Barristers\n";
    let err = admin
        .user_import(named.as_bytes())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("walked every organisation"), "{err}");
    let summary = Admin::new(inner, "cjsm.net", None)
        .user_import(named.as_bytes())
        .await
        .unwrap();
    assert_eq!(summary.added, 1);
    let audit = inner.audit(100).await.unwrap();
    let imported = audit
        .iter()
        .filter(|e| e.action() == "user import add")
        .count();
    assert_eq!(imported, 4);

    // The search and the exports walk the users a page at a time.
    use cjsm_milter::directory::export;
    use cjsm_milter::directory::user::search;
    admin
        .user_set_state("carol@chambers.cjsm.net", UserState::Deleted)
        .await
        .unwrap();
    let found = |results: cjsm_milter::directory::user::SearchResults| {
        let addresses: Vec<String> = results.users.into_iter().map(|u| u.address).collect();
        (addresses, results.more)
    };
    // Names, towns, organisation ids and names as before, and now addresses; never deleted
    // users (carol, from Hull, is named Leeds).
    assert_eq!(
        found(search(&store, "LEEDS", 100).await.unwrap()),
        (vec!["alice@hartleylaw.co.uk.cjsm.net".to_string()], false)
    );
    assert_eq!(
        found(search(&store, "bob@chambers", 100).await.unwrap()),
        (vec!["bob@chambers.cjsm.net".to_string()], false)
    );
    assert_eq!(
        found(search(&store, "chambers llp", 100).await.unwrap()).0,
        ["bob@chambers.cjsm.net", "dora@chambers.cjsm.net"]
    );
    assert_eq!(
        found(search(&store, "cjsm.net", 2).await.unwrap()),
        (
            vec![
                "alice@hartleylaw.co.uk.cjsm.net".to_string(),
                "bob@chambers.cjsm.net".to_string()
            ],
            true
        )
    );
    assert!(!found(search(&store, "cjsm.net", 3).await.unwrap()).1);
    assert!(
        found(search(&store, "nobody", 3).await.unwrap())
            .0
            .is_empty()
    );

    // The users of a suspended organisation are not exported.
    admin.org_suspend("hartley").await.unwrap();
    let users = inner.users().await.unwrap();
    let orgs = inner.orgs().await.unwrap();
    let mut csv = Vec::new();
    export::write_csv(&store, &mut csv).await.unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv, export::to_csv(&users, &orgs));
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let mut ldif = Vec::new();
    export::write_ldif(&store, "dc=hub,dc=example", &mut ldif)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(ldif).unwrap(),
        export::to_ldif(&users, &orgs, "dc=hub,dc=example")
    );
}

#[tokio::test]
async fn sqlite_backend_rules_without_walks() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    rules_without_walks(&store).await;
}

#[tokio::test]
async fn redis_backend_rules_without_walks() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "nowalks", 1000)
        .await
        .unwrap();
    rules_without_walks(&store).await;
}
