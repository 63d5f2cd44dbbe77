//! The milter protocol, stage by stage, with indymilter-test: replies at RCPT and at end of
//! message, and the edits made; which stages the MTA is asked not to wait on (or not to
//! send), and that nothing is ever answered there.

mod common;

use cjsm_milter::directory::model::UserState;
use common::TestMilter;
use common::fixtures::{org, user};
use indymilter::message::reply::Reply;
use indymilter_test::{EomAction, MacroStage, ProtoOpts, Status, TestConnection};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

async fn envelope(conn: &mut TestConnection, from: &str, rcpts: &[&str]) -> Vec<Status> {
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
    assert_eq!(
        conn.connect("client.example", client).await.unwrap(),
        quiet(conn, ProtoOpts::NOREPLY_CONNECT)
    );
    helo(conn).await;
    conn.macros(
        MacroStage::Mail,
        [("i", "4XQ1AB2C3D"), ("{tls_version}", "TLSv1.3")],
    )
    .await
    .unwrap();
    assert_eq!(conn.mail([from]).await.unwrap(), Status::Continue);
    let mut statuses = Vec::new();
    for rcpt in rcpts {
        statuses.push(conn.rcpt([*rcpt]).await.unwrap());
    }
    statuses
}

/// What a stage where the milter has nothing to say gets: no reply at all where the MTA
/// agreed not to wait for one (indymilter-test reads none then: a stray reply would be read
/// as the answer to the next command that has one), continue otherwise.
fn quiet(conn: &TestConnection, stage: ProtoOpts) -> Status {
    if conn.negotiated_opts().contains(stage) {
        Status::Noreply
    } else {
        Status::Continue
    }
}

/// HELO and DATA go to the milter only when it negotiated them, as in a real MTA.
async fn helo(conn: &mut TestConnection) {
    if !conn.negotiated_opts().contains(ProtoOpts::NO_HELO) {
        assert_eq!(conn.helo("client.example").await.unwrap(), Status::Continue);
    }
}

async fn data(conn: &mut TestConnection) {
    if !conn.negotiated_opts().contains(ProtoOpts::NO_DATA) {
        assert_eq!(conn.data().await.unwrap(), Status::Continue);
    }
}

async fn message(
    conn: &mut TestConnection,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (indymilter_test::EomActions, Status) {
    data(conn).await;
    for (name, value) in headers {
        assert_eq!(
            conn.header(*name, *value).await.unwrap(),
            quiet(conn, ProtoOpts::NOREPLY_HEADER)
        );
    }
    assert_eq!(
        conn.eoh().await.unwrap(),
        quiet(conn, ProtoOpts::NOREPLY_EOH)
    );
    if !body.is_empty() {
        assert_eq!(
            conn.body(body.to_vec()).await.unwrap(),
            quiet(conn, ProtoOpts::NOREPLY_BODY)
        );
    }
    conn.macros(MacroStage::Eom, [("i", "4XQ1AB2C3D")])
        .await
        .unwrap();
    conn.eom().await.unwrap()
}

/// A milter whose loopback clients are secure-network peers (the police senders of these
/// tests are believed only from there: the closed community), on `config`.
async fn start(config: &str) -> TestMilter {
    TestMilter::start(&format!(
        "{config}\n[routing]\nsecure_networks = [\"127.0.0.0/8\"]\n"
    ))
    .await
}

fn reply(status: &Status) -> String {
    match status {
        Status::Reject { message: Some(m) } | Status::Tempfail { message: Some(m) } => {
            m.to_string_lossy().into_owned()
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn accepted_mail_gets_marking_header_forged_copy_removed_and_subject_tag() {
    let milter = start("").await;
    milter
        .add_user("carol@smithchambers.cjsm.net", UserState::Active)
        .await;
    let mut conn = milter.connect().await;
    let statuses = envelope(
        &mut conn,
        "dc.jones@met.pnn.police.uk",
        &["carol@smithchambers.cjsm.net", "clerk@cps.gsi.gov.uk"],
    )
    .await;
    assert_eq!(statuses, vec![Status::Continue, Status::Continue]);
    let (actions, status) = message(
        &mut conn,
        &[
            ("From", "dc.jones@met.pnn.police.uk"),
            ("Subject", "OFFICIAL-SENSITIVE: interview schedule"),
            ("X-CJSM-Marking", "OFFICIAL; source=forged"),
        ],
        b"Dear Carol,\r\nplease see below.\r\n",
    )
    .await;
    assert_eq!(status, Status::Accept);
    assert_eq!(
        actions.actions,
        vec![
            EomAction::DeleteHeader {
                name: c"X-CJSM-Marking".into(),
                index: 1
            },
            EomAction::AddHeader {
                name: c"X-CJSM-Marking".into(),
                value: c"OFFICIAL-SENSITIVE; source=subject".into()
            },
            EomAction::AddHeader {
                name: c"X-CJSM-Route".into(),
                value: c"secure".into()
            },
            EomAction::ChangeHeader {
                name: c"Subject".into(),
                index: 1,
                value: c"OFFICIAL-SENSITIVE: interview schedule [CJSM]".into()
            },
        ]
    );
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn rcpt_answers_unknown_and_suspended_per_recipient() {
    let milter = start("").await;
    milter
        .add_user("sus@firm.co.uk.cjsm.net", UserState::Suspended)
        .await;
    milter
        .add_user("gone@firm.co.uk.cjsm.net", UserState::Deleted)
        .await;
    milter
        .add_user("ok@firm.co.uk.cjsm.net", UserState::Active)
        .await;
    let mut conn = milter.connect().await;
    let statuses = envelope(
        &mut conn,
        "a@met.pnn.police.uk",
        &[
            "nobody@firm.co.uk.cjsm.net",
            "sus@firm.co.uk.cjsm.net",
            "gone@firm.co.uk.cjsm.net",
            "ok@firm.co.uk.cjsm.net",
        ],
    )
    .await;
    assert!(
        reply(&statuses[0]).starts_with("550 5.1.1 nobody@firm.co.uk.cjsm.net"),
        "{:?}",
        statuses[0]
    );
    assert!(
        reply(&statuses[1]).starts_with("550 5.2.1 sus@firm.co.uk.cjsm.net"),
        "{:?}",
        statuses[1]
    );
    assert!(
        reply(&statuses[2]).starts_with("550 5.2.1 gone@firm.co.uk.cjsm.net"),
        "{:?}",
        statuses[2]
    );
    assert_eq!(statuses[3], Status::Continue);
    // The message goes on to the remaining recipient.
    let (_, status) = message(&mut conn, &[("Subject", "hello [CJSM]")], b"hi\r\n").await;
    assert_eq!(status, Status::Accept);
    milter.stop().await;
}

#[tokio::test]
async fn suspended_sender_is_refused_at_mail() {
    let milter = start("").await;
    milter
        .add_user("sus@firm.co.uk.cjsm.net", UserState::Suspended)
        .await;
    let mut conn = milter.connect().await;
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
    conn.connect("c", client).await.unwrap();
    helo(&mut conn).await;
    let status = conn.mail(["<sus@firm.co.uk.cjsm.net>"]).await.unwrap();
    assert!(
        reply(&status).starts_with("550 5.7.1 Sender sus@firm.co.uk.cjsm.net"),
        "{status:?}"
    );
    milter.stop().await;
}

#[tokio::test]
async fn unmarked_mail_to_the_internet_is_rejected_naming_the_recipients() {
    let milter = start("").await;
    let mut conn = milter.connect().await;
    envelope(
        &mut conn,
        "a@met.pnn.police.uk",
        &["x@gmail.com", "b@cps.gsi.gov.uk", "y@outlook.com"],
    )
    .await;
    let (actions, status) = message(
        &mut conn,
        &[("Subject", "Lunch on Friday")],
        b"See you there\r\n",
    )
    .await;
    let text = reply(&status);
    assert!(
        text.starts_with("550 5.7.1 OFFICIAL-SENSITIVE mail (unmarked"),
        "{text}"
    );
    assert!(text.contains("x@gmail.com, y@outlook.com"), "{text}");
    assert!(!text.contains("gsi.gov.uk"), "{text}");
    assert!(actions.actions.is_empty());
    milter.stop().await;
}

#[tokio::test]
async fn official_goes_anywhere_and_above_ceiling_is_rejected() {
    let milter = start("").await;
    let mut conn = milter.connect().await;
    envelope(&mut conn, "a@met.pnn.police.uk", &["x@gmail.com"]).await;
    let (actions, status) = message(
        &mut conn,
        &[("Subject", "OFFICIAL: office closed on Monday")],
        b"Hi\r\n",
    )
    .await;
    assert_eq!(status, Status::Accept);
    assert!(actions.has_add_header("X-CJSM-Marking", "OFFICIAL; source=subject"));
    assert!(actions.has_add_header("X-CJSM-Route", "open"));
    assert_eq!(
        actions.actions.len(),
        2,
        "no subject tag outside the hub: {actions:?}"
    );

    // A second message on the same connection.
    conn.macros(MacroStage::Mail, [("i", "5ZZ")]).await.unwrap();
    conn.mail(["a@met.pnn.police.uk"]).await.unwrap();
    conn.rcpt(["b@met.pnn.police.uk"]).await.unwrap();
    let (_, status) = message(
        &mut conn,
        &[
            ("Subject", "budget"),
            (
                "X-Protective-Marking",
                "VER=2018.4, NS=gov.au,\r\n\tSEC=SECRET, ORIGIN=x@y.gov.au",
            ),
        ],
        b"body\r\n",
    )
    .await;
    let text = reply(&status);
    assert!(
        text.starts_with("550 5.7.1 Message marked SECRET"),
        "{text}"
    );
    milter.stop().await;
}

#[tokio::test]
async fn body_marking_in_later_chunks_and_html() {
    let milter = start("").await;
    let mut conn = milter.connect().await;
    envelope(&mut conn, "a@met.pnn.police.uk", &["x@gmail.com"]).await;
    data(&mut conn).await;
    conn.header("Subject", "rota").await.unwrap();
    conn.header("Content-Type", "text/html; charset=utf-8")
        .await
        .unwrap();
    conn.eoh().await.unwrap();
    conn.body(b"<p>Hello all</p>\r\n".to_vec()).await.unwrap();
    conn.body(b"<p>rota attached</p><p>UNCLASSIFIED</p>\r\n".to_vec())
        .await
        .unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Accept);
    assert!(
        actions.has_add_header("X-CJSM-Marking", "OFFICIAL; source=body-last-line"),
        "{actions:?}"
    );
    milter.stop().await;
}

#[tokio::test]
async fn report_mode_decides_but_changes_nothing() {
    let milter = start("mode = \"report\"").await;
    let mut conn = milter.connect().await;
    let statuses = envelope(
        &mut conn,
        "a@met.pnn.police.uk",
        &["nobody@x.cjsm.net", "x@gmail.com"],
    )
    .await;
    assert_eq!(statuses, vec![Status::Continue, Status::Continue]);
    let (actions, status) = message(
        &mut conn,
        &[("Subject", "SECRET: plan"), ("X-CJSM-Marking", "forged")],
        b"x\r\n",
    )
    .await;
    assert_eq!(status, Status::Accept);
    assert!(actions.actions.is_empty(), "{actions:?}");
    milter.stop().await;
}

#[tokio::test]
async fn store_failure_answers_tempfail() {
    let milter = start("").await;
    // The directory's database becomes unreadable after start-up.
    std::fs::write(
        milter.dir.path().join("store/directory.sqlite3"),
        "{ broken",
    )
    .unwrap();
    // The sender's directory lookup fails at MAIL.
    let mut conn = milter.connect().await;
    conn.connect(
        "client.example",
        SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
    )
    .await
    .unwrap();
    helo(&mut conn).await;
    let status = conn.mail(["a@met.pnn.police.uk"]).await.unwrap();
    assert!(reply(&status).starts_with("451 4.7.1"), "{status:?}");
    conn.close().await.unwrap();
    // The null sender needs no lookup; a hub recipient does.
    let mut conn = milter.connect().await;
    let statuses = envelope(&mut conn, "<>", &["carol@x.cjsm.net"]).await;
    assert!(
        reply(&statuses[0]).starts_with("451 4.7.1"),
        "{:?}",
        statuses[0]
    );
    // Addresses that need no directory lookup still pass RCPT.
    assert_eq!(
        conn.rcpt(["b@met.pnn.police.uk"]).await.unwrap(),
        Status::Continue
    );
    // The MTA gives up on the transaction; nothing is left in flight.
    conn.abort().await.unwrap();
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn oversized_body_is_read_up_to_the_bound_and_treated_as_the_ceiling() {
    let milter = start("[limits]\nmax_scan_bytes = 1000\n").await;
    let mut conn = milter.connect().await;
    envelope(&mut conn, "a@met.pnn.police.uk", &["x@gmail.com"]).await;
    data(&mut conn).await;
    conn.header("Subject", "OFFICIAL: big file").await.unwrap();
    conn.eoh().await.unwrap();
    let status = conn.body(vec![b'a'; 4000]).await.unwrap();
    assert_eq!(status, quiet(&conn, ProtoOpts::NOREPLY_BODY));
    let (_, status) = conn.eom().await.unwrap();
    // OFFICIAL in the subject, but the unread rest may say more: secure recipients only.
    let text = reply(&status);
    assert!(
        text.starts_with("550 5.7.1 OFFICIAL-SENSITIVE mail can only go"),
        "{text}"
    );
    milter.stop().await;
}

#[tokio::test]
async fn quarantine_when_configured_for_oversize() {
    let milter = start("[limits]\nmax_scan_bytes = 100\non_exceeded = \"quarantine\"\n").await;
    let mut conn = milter.connect().await;
    envelope(&mut conn, "a@met.pnn.police.uk", &["b@met.pnn.police.uk"]).await;
    let (actions, status) = message(&mut conn, &[("Subject", "x")], &[b'z'; 500]).await;
    assert_eq!(status, Status::Accept);
    assert!(
        actions.has_quarantine("not checked whole: body longer than 100 bytes"),
        "{actions:?}"
    );
    milter.stop().await;
}

#[tokio::test]
async fn hostile_bodies_get_a_verdict() {
    let milter = start("").await;
    let mut deep = String::new();
    for i in 0..1000 {
        deep.push_str(&format!(
            "--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n",
            i + 1
        ));
    }
    type Headers = Vec<(&'static str, String)>;
    let bodies: Vec<(Headers, Vec<u8>)> = vec![
        (
            vec![("Subject", "x".into())],
            vec![0xff, 0xfe, 0x00, 0x80, b'\r', b'\n'],
        ),
        (
            vec![("Content-Type", "multipart/mixed; boundary=b0".into())],
            deep.into_bytes(),
        ),
        (vec![("Subject", "S".repeat(100_000))], b"x".to_vec()),
        (
            vec![("Content-Type", "multipart/mixed; boundary=zz".into())],
            b"--zz\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nT0ZG"
                .to_vec(),
        ),
    ];
    for (headers, body) in bodies {
        let mut conn = milter.connect().await;
        envelope(&mut conn, "a@met.pnn.police.uk", &["b@met.pnn.police.uk"]).await;
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (_, status) = message(&mut conn, &headers, &body).await;
        assert!(
            matches!(status, Status::Accept | Status::Reject { .. }),
            "{status:?}"
        );
        conn.close().await.unwrap();
    }
    milter.stop().await;
}

#[tokio::test]
async fn deadline_overrun_answers_tempfail() {
    // A deadline no classification of a 1 MB message can meet.
    let milter = start("[milter]\ndeadline_ms = 1\n").await;
    let mut conn = milter.connect().await;
    // The null sender: no directory lookup at MAIL to race the 1 ms deadline.
    envelope(&mut conn, "<>", &["b@met.pnn.police.uk"]).await;
    data(&mut conn).await;
    conn.header("Subject", "OFFICIAL: big").await.unwrap();
    conn.eoh().await.unwrap();
    for _ in 0..16 {
        conn.body(b"line of text\r\n".repeat(4681)).await.unwrap();
    }
    let (actions, status) = conn.eom().await.unwrap();
    assert!(reply(&status).starts_with("451 4.7.1"), "{status:?}");
    assert!(actions.actions.is_empty());
    milter.stop().await;
}

#[tokio::test]
async fn a_slow_client_before_end_of_data_does_not_use_up_the_deadline() {
    let milter = start("[milter]\ndeadline_ms = 200\n").await;
    let mut conn = milter.connect().await;
    envelope(&mut conn, "a@met.pnn.police.uk", &["b@met.pnn.police.uk"]).await;
    // The SMTP client dawdles longer than the deadline between RCPT and DATA.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, status) = message(&mut conn, &[("Subject", "OFFICIAL: x")], b"hello\r\n").await;
    assert_eq!(status, Status::Accept);
    milter.stop().await;
}

#[tokio::test]
async fn the_recipient_bound_holds_in_both_modes() {
    for mode in ["enforce", "report"] {
        let milter = start(&format!(
            "mode = \"{mode}\"\n[limits]\nmax_recipients = 2\n"
        ))
        .await;
        let mut conn = milter.connect().await;
        let statuses = envelope(
            &mut conn,
            "a@met.pnn.police.uk",
            &[
                "b@met.pnn.police.uk",
                "c@met.pnn.police.uk",
                "d@met.pnn.police.uk",
            ],
        )
        .await;
        assert_eq!(
            statuses[..2],
            [Status::Continue, Status::Continue],
            "{mode}"
        );
        assert!(
            reply(&statuses[2]).starts_with("452 4.5.3"),
            "{mode}: {:?}",
            statuses[2]
        );
        conn.abort().await.unwrap();
        conn.close().await.unwrap();
        milter.stop().await;
    }
}

#[tokio::test]
async fn an_eight_bit_subject_keeps_its_bytes_around_the_tag() {
    let milter = start("").await;
    milter.add_user("carol@x.cjsm.net", UserState::Active).await;
    let mut conn = milter.connect().await;
    envelope(&mut conn, "a@met.pnn.police.uk", &["carol@x.cjsm.net"]).await;
    data(&mut conn).await;
    let subject = std::ffi::CString::new(b"caf\xe9 cr\xe8me".to_vec()).unwrap();
    conn.header("Subject", subject).await.unwrap();
    conn.eoh().await.unwrap();
    conn.body(b"x\r\n".to_vec()).await.unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Accept);
    let wanted = EomAction::ChangeHeader {
        name: c"Subject".into(),
        index: 1,
        value: std::ffi::CString::new(b"caf\xe9 cr\xe8me [CJSM]".to_vec()).unwrap(),
    };
    assert!(actions.actions.contains(&wanted), "{actions:?}");
    milter.stop().await;
}

/// A server-connected organisation (firm.co.uk, client certificate CN mail.firm.co.uk) with
/// users alice and bob.
async fn firm(milter: &TestMilter) {
    use cjsm_milter::directory::model::{ClientCertificate, ConnectionType, Organisation, User};
    let certificate = ClientCertificate {
        fingerprint: "ab".repeat(32),
        subject: "CN=mail.firm.co.uk".into(),
        issuer: "CN=CJSM Client CA".into(),
    };
    let firm = Organisation {
        name: "Firm LLP".into(),
        connection: ConnectionType::Server,
        client_certificate: Some(certificate),
        ..org("firm", &["firm.co.uk"])
    };
    milter.store.put_org(firm).await.unwrap();
    for name in ["alice", "bob"] {
        let address = format!("{name}@firm.co.uk.cjsm.net");
        let user = User {
            first_name: name.into(),
            last_name: "Patel".into(),
            ..user(&address, "firm")
        };
        milter.store.put_users(vec![user]).await.unwrap();
    }
}

#[tokio::test]
async fn translation_rewrites_the_envelope_and_from_at_end_of_message() {
    let milter = start("").await;
    firm(&milter).await;
    let mut conn = milter.connect().await;
    conn.connect(
        "mail.firm.co.uk",
        SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
    )
    .await
    .unwrap();
    helo(&mut conn).await;
    conn.macros(
        MacroStage::Mail,
        [
            ("i", "TR1"),
            ("{tls_version}", "TLSv1.3"),
            ("{cert_subject}", "mail.firm.co.uk"),
            ("{cert_issuer}", "CJSM Client CA"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        conn.mail(["<alice@firm.co.uk>"]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(
        conn.rcpt(["<bob@firm.co.uk.cjsm.net>"]).await.unwrap(),
        Status::Continue
    );
    let (actions, status) = message(
        &mut conn,
        &[
            ("From", "Alice Patel <alice@firm.co.uk>"),
            ("Subject", "OFFICIAL-SENSITIVE: note to self"),
        ],
        b"Hello\r\n",
    )
    .await;
    assert_eq!(status, Status::Accept);
    for expected in [
        EomAction::ChangeSender {
            mail: c"<alice@firm.co.uk.cjsm.net>".into(),
            args: None,
        },
        EomAction::DeleteRecipient {
            rcpt: c"<bob@firm.co.uk.cjsm.net>".into(),
        },
        EomAction::AddRecipient {
            rcpt: c"<bob@firm.co.uk>".into(),
            args: None,
        },
        EomAction::ChangeHeader {
            name: c"From".into(),
            index: 1,
            value: c"Alice Patel <alice@firm.co.uk.cjsm.net>".into(),
        },
    ] {
        assert!(
            actions.actions.contains(&expected),
            "{expected:?} in {:?}",
            actions.actions
        );
    }
    conn.close().await.unwrap();

    // Without the certificate, the firm's domain is refused at MAIL.
    let mut conn = milter.connect().await;
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 40001));
    conn.connect("elsewhere.example", client).await.unwrap();
    helo(&mut conn).await;
    conn.macros(MacroStage::Mail, [("{tls_version}", "TLSv1.3")])
        .await
        .unwrap();
    let status = conn.mail(["<alice@firm.co.uk>"]).await.unwrap();
    assert!(
        reply(&status).starts_with(
            "550 5.7.1 alice@firm.co.uk: firm.co.uk belongs to a connected organisation"
        ),
        "{status:?}"
    );
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn an_authenticated_client_sends_only_as_itself() {
    let milter = start("").await;
    milter
        .add_user("mary@smithchambers.cjsm.net", UserState::Active)
        .await;
    #[rustfmt::skip]
    let logins = [
        ("mary@smithchambers.cjsm.net", "continue"),
        ("john@smithchambers.cjsm.net", "550 5.7.1 Authenticated as john@smithchambers.cjsm.net; may not send as mary@smithchambers.cjsm.net"),
    ];
    for (login, want) in logins {
        let mut conn = milter.connect().await;
        conn.connect("c", SocketAddr::from((Ipv4Addr::LOCALHOST, 40002)))
            .await
            .unwrap();
        helo(&mut conn).await;
        conn.macros(
            MacroStage::Mail,
            [("{auth_authen}", login), ("{tls_version}", "TLSv1.3")],
        )
        .await
        .unwrap();
        let status = conn.mail(["<mary@smithchambers.cjsm.net>"]).await.unwrap();
        let got = if status == Status::Continue {
            "continue".to_string()
        } else {
            reply(&status)
        };
        assert_eq!(got, want, "{login}");
        conn.close().await.unwrap();
    }
    milter.stop().await;
}

#[tokio::test]
async fn negotiation_asks_for_the_addresses_the_mta_will_use() {
    let milter = TestMilter::start("").await;
    let conn = milter.connect().await;
    let requested = conn.requested_macros();
    let names = |stage| {
        requested
            .get(&stage)
            .map(|m| m.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let words =
        |stage| -> Vec<String> { names(stage).split_whitespace().map(String::from).collect() };
    assert!(
        words(MacroStage::Mail).contains(&"{mail_addr}".into()),
        "{:?}",
        names(MacroStage::Mail)
    );
    assert!(
        words(MacroStage::Rcpt).contains(&"{rcpt_addr}".into()),
        "{:?}",
        names(MacroStage::Rcpt)
    );
    for stage in [MacroStage::Helo, MacroStage::Mail] {
        for name in ["{cn_subject}", "{cn_issuer}"] {
            assert!(
                words(stage).contains(&name.into()),
                "{name}: {:?}",
                names(stage)
            );
        }
    }
    conn.close().await.unwrap();
    milter.stop().await;
}

/// Connects from loopback, sends MAIL with `{mail_addr}` (when given); the MAIL status.
async fn mail_as(conn: &mut TestConnection, raw: &str, mail_addr: Option<&str>) -> Status {
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
    conn.connect("client.example", client).await.unwrap();
    helo(conn).await;
    let mut macros = vec![("i", "ENV1"), ("{tls_version}", "TLSv1.3")];
    if let Some(value) = mail_addr {
        macros.push(("{mail_addr}", value));
    }
    conn.macros(MacroStage::Mail, macros).await.unwrap();
    conn.mail([raw]).await.unwrap()
}

async fn rcpt_as(conn: &mut TestConnection, raw: &str, rcpt_addr: Option<&str>) -> Status {
    if let Some(value) = rcpt_addr {
        conn.macros(MacroStage::Rcpt, [("{rcpt_addr}", value)])
            .await
            .unwrap();
    }
    conn.rcpt([raw]).await.unwrap()
}

#[tokio::test]
async fn envelope_addresses_are_judged_as_the_mta_will_use_them() {
    let milter = start("").await;
    milter
        .add_user("mary@smithchambers.cjsm.net", UserState::Active)
        .await;
    milter
        .add_user("sus@smithchambers.cjsm.net", UserState::Suspended)
        .await;
    let mary = "mary@smithchambers.cjsm.net";
    // (raw MAIL argument, {mail_addr}, expected reply prefix)
    #[rustfmt::skip]
    let mail_cases = [
        ("<mary@smithchambers.cjsm.net(x)>", Some(mary), "553 5.1.7"),
        ("<mary@smithchambers.cjsm.net (x)>", Some(mary), "553 5.1.7"),
        ("<g:mary@smithchambers.cjsm.net;>", Some(mary), "553 5.1.7"),
        ("<mary@smithchambers\\.cjsm.net>", Some(mary), "553 5.1.7"),
        ("<@relay.example:mary@smithchambers.cjsm.net>", Some(mary), "553 5.1.7"),
        // Plain, but the MTA made another address of it.
        ("<dc.jones@met.pnn.police.uk>", Some(mary), "553 5.1.7"),
        ("<dc.jones@met.pnn.police.uk>", Some("dc.jones@met.pnn.police.uk"), "continue"),
        ("<>", Some(""), "continue"),
    ];
    for (raw, mta, want) in mail_cases {
        let mut conn = milter.connect().await;
        let status = mail_as(&mut conn, raw, mta).await;
        let got = if status == Status::Continue {
            "continue".into()
        } else {
            reply(&status)
        };
        assert!(got.starts_with(want), "{raw} {mta:?}: {got}");
        conn.close().await.unwrap();
    }
    // (raw RCPT argument, {rcpt_addr}, expected reply prefix)
    let sus = "sus@smithchambers.cjsm.net";
    #[rustfmt::skip]
    let rcpt_cases = [
        ("<sus@smithchambers.cjsm.net(x)>", Some(sus), "553 5.1.3"),
        ("<sus@smithchambers.cjsm.net (x)>", Some(sus), "553 5.1.3"),
        ("<g:sus@smithchambers.cjsm.net;>", Some(sus), "553 5.1.3"),
        ("<sus%smithchambers.cjsm.net@met.pnn.police.uk>", Some(sus), "553 5.1.3"),
        ("<clerk@met.pnn.police.uk>", Some(sus), "553 5.1.3"),
        ("<sus@smithchambers.cjsm.net>", Some(sus), "550 5.2.1"),
        ("<clerk@met.pnn.police.uk>", Some("clerk@met.pnn.police.uk"), "continue"),
        ("<Mary@SmithChambers.cjsm.net>", Some("Mary@SmithChambers.cjsm.net."), "continue"),
    ];
    for (raw, mta, want) in rcpt_cases {
        let mut conn = milter.connect().await;
        assert_eq!(
            mail_as(&mut conn, "<dc.jones@met.pnn.police.uk>", None).await,
            Status::Continue
        );
        let status = rcpt_as(&mut conn, raw, mta).await;
        let got = if status == Status::Continue {
            "continue".into()
        } else {
            reply(&status)
        };
        assert!(got.starts_with(want), "{raw} {mta:?}: {got}");
        conn.abort().await.unwrap();
        conn.close().await.unwrap();
    }
    milter.stop().await;
}

#[tokio::test]
async fn the_closed_community_at_mail_and_rcpt() {
    // The default config: loopback is neither a secure network nor one of the hub's hosts.
    let milter = TestMilter::start("").await;
    milter
        .add_user("mary@smithchambers.cjsm.net", UserState::Active)
        .await;
    let mut conn = milter.connect().await;
    let status = mail_as(&mut conn, "<dc.jones@met.pnn.police.uk>", None).await;
    assert!(reply(&status).starts_with("550 5.7.1"), "{status:?}");
    conn.close().await.unwrap();

    let mut conn = milter.connect().await;
    assert_eq!(
        mail_as(&mut conn, "<someone@gmail.com>", None).await,
        Status::Continue
    );
    let status = rcpt_as(&mut conn, "<mary@smithchambers.cjsm.net>", None).await;
    assert!(reply(&status).starts_with("550 5.7.1"), "{status:?}");
    // A secure-network address is not a hub mailbox: the marking rules decide.
    assert_eq!(
        rcpt_as(&mut conn, "<clerk@met.pnn.police.uk>", None).await,
        Status::Continue
    );
    conn.abort().await.unwrap();
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn an_authenticated_hub_user_may_not_write_as_someone_else() {
    let milter = TestMilter::start("").await;
    milter
        .add_user("mary@smithchambers.cjsm.net", UserState::Active)
        .await;
    for (from, want) in [
        ("Mary <mary@smithchambers.cjsm.net>", "accept"),
        ("DC Jones <dc.jones@met.pnn.police.uk>", "550 5.7.1"),
    ] {
        let mut conn = milter.connect().await;
        conn.connect("c", SocketAddr::from((Ipv4Addr::LOCALHOST, 40002)))
            .await
            .unwrap();
        helo(&mut conn).await;
        conn.macros(
            MacroStage::Mail,
            [
                ("{auth_authen}", "mary@smithchambers.cjsm.net"),
                ("{tls_version}", "TLSv1.3"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            conn.mail(["<mary@smithchambers.cjsm.net>"]).await.unwrap(),
            Status::Continue
        );
        assert_eq!(
            conn.rcpt(["<clerk@met.pnn.police.uk>"]).await.unwrap(),
            Status::Continue
        );
        let (_, status) = message(
            &mut conn,
            &[("From", from), ("Subject", "OFFICIAL: note")],
            b"hello\r\n",
        )
        .await;
        let got = if status == Status::Accept {
            "accept".into()
        } else {
            reply(&status)
        };
        assert!(got.starts_with(want), "{from}: {got}");
        conn.close().await.unwrap();
    }
    milter.stop().await;
}

/// The stages where the milter has nothing to say before end of message.
const NO_REPLY: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_EOH)
    .union(ProtoOpts::NOREPLY_BODY);

/// The stages the milter has no use for.
const SKIPPED: ProtoOpts = ProtoOpts::NO_HELO
    .union(ProtoOpts::NO_DATA)
    .union(ProtoOpts::NO_UNKNOWN);

/// One marked message to a hub user and one unmarked to the internet on one connection: the
/// verdicts are the end-of-message answers, so a reply sent at a stage where `conn` reads none
/// would be taken for one of them (and the second message would read the first one's).
async fn two_messages(milter: &TestMilter) -> TestConnection {
    let mut conn = milter.connect().await;
    envelope(
        &mut conn,
        "dc.jones@met.pnn.police.uk",
        &["carol@smithchambers.cjsm.net"],
    )
    .await;
    let (actions, status) = message(
        &mut conn,
        &[
            ("Subject", "OFFICIAL: rota"),
            ("From", "dc.jones@met.pnn.police.uk"),
        ],
        b"Dear Carol,\r\n",
    )
    .await;
    assert_eq!(status, Status::Accept);
    assert!(
        actions.has_add_header("X-CJSM-Marking", "OFFICIAL; source=subject"),
        "{actions:?}"
    );
    conn.macros(MacroStage::Mail, [("i", "4XQ1AB2C3E")])
        .await
        .unwrap();
    assert_eq!(
        conn.mail(["dc.jones@met.pnn.police.uk"]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(conn.rcpt(["x@gmail.com"]).await.unwrap(), Status::Continue);
    let (_, status) = message(&mut conn, &[("Subject", "lunch")], b"hi\r\n").await;
    assert!(reply(&status).starts_with("550 5.7.1"), "{status:?}");
    conn
}

#[tokio::test]
async fn the_mta_is_not_kept_waiting_where_the_milter_has_nothing_to_say() {
    let milter = start("").await;
    milter
        .add_user("carol@smithchambers.cjsm.net", UserState::Active)
        .await;
    // indymilter-test offers every option, as Postfix 3.x and Sendmail 8.14+ do.
    let conn = two_messages(&milter).await;
    let opts = conn.negotiated_opts();
    assert!(opts.contains(NO_REPLY), "{opts:?}");
    assert!(opts.contains(SKIPPED), "{opts:?}");
    // MAIL and RCPT have answers; the client address and the end of the headers still come.
    for needed in [
        ProtoOpts::NOREPLY_MAIL,
        ProtoOpts::NOREPLY_RCPT,
        ProtoOpts::NO_CONNECT,
        ProtoOpts::NO_MAIL,
        ProtoOpts::NO_RCPT,
        ProtoOpts::NO_HEADER,
        ProtoOpts::NO_EOH,
        ProtoOpts::NO_BODY,
    ] {
        assert!(!opts.contains(needed), "{needed:?} in {opts:?}");
    }
    conn.close().await.unwrap();
    milter.stop().await;
}

#[tokio::test]
async fn an_mta_without_the_options_is_negotiated_as_before() {
    let milter = start("").await;
    milter
        .add_user("carol@smithchambers.cjsm.net", UserState::Active)
        .await;
    // Every option but the no-reply ones: each stage is answered, as before.
    let without = ProtoOpts::all() - NO_REPLY - ProtoOpts::NOREPLY_HELO;
    let mut conn = TestConnection::configure()
        .available_opts(without)
        .open_tcp(milter.addr)
        .await
        .unwrap();
    let opts = conn.negotiated_opts();
    assert!(!opts.intersects(NO_REPLY), "{opts:?}");
    assert!(opts.contains(SKIPPED), "{opts:?}");
    envelope(
        &mut conn,
        "a@met.pnn.police.uk",
        &["carol@smithchambers.cjsm.net"],
    )
    .await;
    let (_, status) = message(&mut conn, &[("Subject", "OFFICIAL: x")], b"x\r\n").await;
    assert_eq!(status, Status::Accept);
    conn.close().await.unwrap();
    // An MTA of milter protocol version 2 offers no skipping of DATA or unknown commands:
    // only what it offers is asked for, and DATA gets its continue.
    let v2 = ProtoOpts::NO_CONNECT
        | ProtoOpts::NO_HELO
        | ProtoOpts::NO_MAIL
        | ProtoOpts::NO_RCPT
        | ProtoOpts::NO_BODY
        | ProtoOpts::NO_HEADER
        | ProtoOpts::NO_EOH;
    let mut conn = TestConnection::configure()
        .protocol_version(2)
        .available_opts(v2)
        .open_tcp(milter.addr)
        .await
        .expect("an MTA of protocol version 2 is served");
    let opts = conn.negotiated_opts();
    assert!(v2.contains(opts), "{opts:?}");
    assert!(!opts.contains(ProtoOpts::NO_DATA), "{opts:?}");
    envelope(
        &mut conn,
        "a@met.pnn.police.uk",
        &["carol@smithchambers.cjsm.net"],
    )
    .await;
    let (_, status) = message(&mut conn, &[("Subject", "OFFICIAL: x")], b"x\r\n").await;
    assert_eq!(status, Status::Accept);
    conn.close().await.unwrap();
    milter.stop().await;
}

/// A milter client written packet by packet, for what indymilter-test will not send: the
/// commands an MTA sends after an unrecognised SMTP command (`U`, then DATA or a body chunk
/// without MAIL), which reach the header, end-of-headers and body stages with no message.
struct RawMta {
    stream: tokio::net::TcpStream,
}

impl RawMta {
    /// Connects and negotiates with `offered` options; the options the milter asked for.
    async fn open(addr: SocketAddr, offered: ProtoOpts) -> (RawMta, ProtoOpts) {
        use indymilter::message::command::{Command, OptNegPayload};
        let mut raw = RawMta {
            stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
        };
        raw.send(Command::OptNeg(OptNegPayload {
            version: 6,
            actions: indymilter::Actions::all(),
            // indymilter-test is built on indymilter 0.2: the same bits, another type.
            opts: indymilter::ProtoOpts::from_bits_retain(offered.bits()),
        }))
        .await;
        let Some(Reply::OptNeg { opts, .. }) = raw.reply().await else {
            panic!("no negotiation reply");
        };
        (raw, ProtoOpts::from_bits_truncate(opts.bits()))
    }

    async fn send(&mut self, command: indymilter::message::command::Command) {
        indymilter::message::write(&mut self.stream, command.into_message())
            .await
            .unwrap();
    }

    /// The next reply, or `None` when none comes within 2 s (or the milter closed).
    async fn reply(&mut self) -> Option<Reply> {
        let read = indymilter::message::read(&mut self.stream);
        match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok(message)) => Some(Reply::parse_reply(message).unwrap()),
            _ => None,
        }
    }

    /// Quits; every reply the milter sent before closing (there should be none left).
    async fn quit(mut self) -> Vec<Reply> {
        use indymilter::message::command::Command;
        self.send(Command::Quit).await;
        let mut left = Vec::new();
        while let Some(reply) = self.reply().await {
            left.push(reply);
        }
        left
    }
}

/// Command sequences that reach a stage without a message, by the first such stage: `U`
/// (answered), DATA (answered: an MTA that skips DATA does not send it), then the stages
/// with nothing to say.
fn without_a_message(first: &str) -> Vec<indymilter::message::command::Command> {
    use indymilter::message::command::{Command, HeaderPayload, UnknownPayload};
    let unknown = Command::Unknown(UnknownPayload {
        arg: c"XYZZY".into(),
    });
    let header = Command::Header(HeaderPayload {
        name: c"Subject".into(),
        value: c"OFFICIAL: x".into(),
    });
    let body = Command::BodyChunk(b"x\r\n".to_vec().into());
    match first {
        "header" => vec![unknown, Command::Data, header, Command::Eoh, body],
        "eoh" => vec![unknown, Command::Data, Command::Eoh, body],
        _ => vec![unknown, body],
    }
}

/// How many of [`without_a_message`]'s commands come before the first stage with nothing to
/// say (each of them answered continue).
fn answered_before(first: &str) -> usize {
    if first == "body" { 1 } else { 2 }
}

fn is_tempfail(reply: &Option<Reply>) -> bool {
    matches!(reply, Some(Reply::ReplyCode { reply }) if reply.to_string_lossy().starts_with("451 4.7.1"))
}

fn data_stage_errors() -> u64 {
    cjsm_milter::metrics::metrics()
        .refusals
        .with_label_values(&["data", "tempfail", "internal-error"])
        .get()
}

/// An error at a stage the MTA does not wait on is answered at end of message, never where it
/// happened (the MTA would read that reply as the answer to a later command); without the
/// options, it is answered at once, as before. (The one test for both: the counter of
/// data-stage errors is the process's.)
#[tokio::test]
async fn an_error_where_the_mta_does_not_wait_is_answered_at_end_of_message() {
    use indymilter::message::command::{Command, MacroPayload};
    let milter = start("").await;
    for first in ["header", "eoh", "body"] {
        let counted = data_stage_errors();
        let (mut mta, opts) = RawMta::open(milter.addr, ProtoOpts::all()).await;
        assert!(opts.contains(NO_REPLY), "{opts:?}");
        for (at, command) in without_a_message(first).into_iter().enumerate() {
            mta.send(command).await;
            if at < answered_before(first) {
                assert_eq!(
                    mta.reply().await,
                    Some(Reply::Continue),
                    "{first}: command {at}"
                );
            }
        }
        mta.send(Command::DefMacros(MacroPayload {
            stage: indymilter::MacroStage::Eom,
            macros: vec![c"i".into(), c"4XQ1NOMAIL".into()],
        }))
        .await;
        mta.send(Command::BodyEnd(Default::default())).await;
        let reply = mta.reply().await;
        assert!(is_tempfail(&reply), "{first}: end of message: {reply:?}");
        assert_eq!(mta.quit().await, vec![], "{first}: a reply left over");
        // Counted once, as the error it was (at DATA), not as one at end of message.
        assert_eq!(data_stage_errors(), counted + 1, "{first}");
    }
    // Without the options: the tempfail where the error happened, as before.
    for first in ["header", "eoh", "body"] {
        let (mut mta, opts) = RawMta::open(milter.addr, ProtoOpts::all() - NO_REPLY).await;
        assert!(!opts.intersects(NO_REPLY), "{opts:?}");
        for (at, command) in without_a_message(first).into_iter().enumerate() {
            mta.send(command).await;
            if at < answered_before(first) {
                assert_eq!(
                    mta.reply().await,
                    Some(Reply::Continue),
                    "{first}: command {at}"
                );
            } else {
                let reply = mta.reply().await;
                assert!(is_tempfail(&reply), "{first}: {reply:?}");
                // The milter left the transaction: indymilter ignores the rest of it.
                break;
            }
        }
        assert_eq!(mta.quit().await, vec![], "{first}: a reply left over");
    }
    milter.stop().await;
}
