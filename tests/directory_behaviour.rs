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
    assert!(built, "the index is built once, then kept by every write");

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
