//! The exporter keeps the dashboards and alerts honest: drive known traffic through a real
//! milter process, scrape /metrics, and check that the counters moved exactly as the traffic
//! says and that every metric named in the dashboards and rules is one the exporter serves.

mod common;

use common::cli::onboard;
use common::daemon::{Daemon, http_get};
use indymilter_test::{MacroStage, Status, TestConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses the text exposition format into (name, labels) -> value.
fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let mut labels = BTreeMap::new();
                for pair in rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter(|p| !p.is_empty())
                {
                    let (k, v) = pair.split_once("=\"").unwrap();
                    labels.insert(
                        k.trim_start_matches(',').to_string(),
                        v.trim_end_matches('"').to_string(),
                    );
                }
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        samples.insert((name, labels), value.parse().unwrap());
    }
    samples
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    *samples
        .get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

fn scrape(addr: SocketAddr) -> Samples {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    parse(&body)
}

async fn message(milter: SocketAddr, rcpts: &[&str], subject: &str) -> Vec<Status> {
    let mut conn = TestConnection::open(milter).await.unwrap();
    conn.connect("c", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
        .await
        .unwrap();
    conn.macros(
        MacroStage::Mail,
        [("i", "MQ1"), ("{tls_version}", "TLSv1.3")],
    )
    .await
    .unwrap();
    conn.mail(["dc@met.pnn.police.uk"]).await.unwrap();
    let mut statuses = Vec::new();
    let mut accepted = 0;
    for rcpt in rcpts {
        let status = conn.rcpt([*rcpt]).await.unwrap();
        accepted += usize::from(status == Status::Continue);
        statuses.push(status);
    }
    if accepted > 0 {
        conn.header("Subject", subject).await.unwrap();
        conn.eoh().await.unwrap();
        conn.body(b"hello\r\n".to_vec()).await.unwrap();
        statuses.push(conn.eom().await.unwrap().1);
    } else {
        conn.abort().await.unwrap();
    }
    conn.close().await.unwrap();
    statuses
}

/// Metric names the dashboards and rules use (recording rules, `cjsm:…`, are not scraped).
fn names_used() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut names = BTreeSet::new();
    for file in [
        "availability.json",
        "traffic.json",
        "performance.json",
        "cjsm-rules.yml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("cjsm_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name.clone());
            rest = &rest[at + name.len()..];
        }
    }
    names
}

#[tokio::test]
async fn counters_move_as_the_traffic_says_and_every_used_metric_is_served() {
    let port = common::free_port();
    let daemon = Daemon::start(&common::scenario(
        "daemon",
        &[
            ("mode", "enforce"),
            ("listen", &format!("inet:127.0.0.1:{port}")),
        ],
    ));
    let milter = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let metrics = daemon.metrics_addr();
    assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(metrics, "/readyz"), (200, "ready\n".to_string()));
    assert_eq!(http_get(metrics, "/nothing").0, 404);

    onboard(
        &daemon.config,
        "smith",
        "Smith Chambers",
        "smith.cjsm.net",
        "mailbox",
    );
    common::cli::cli_add_user(
        &daemon.config,
        "alice@smith.cjsm.net",
        "smith",
        "Alice",
        "Smith",
    );

    for _ in 0..3 {
        let s = message(milter, &["x@gmail.com"], "OFFICIAL: rota").await;
        assert_eq!(s.last(), Some(&Status::Accept));
    }
    for _ in 0..2 {
        let s = message(milter, &["x@gmail.com", "y@outlook.com"], "lunch").await;
        assert!(matches!(s.last(), Some(Status::Reject { .. })));
    }
    let s = message(milter, &["nobody@smith.cjsm.net"], "x").await;
    assert!(matches!(s[0], Status::Reject { .. }));
    let s = message(
        milter,
        &["alice@smith.cjsm.net", "b@cps.gsi.gov.uk"],
        "case papers",
    )
    .await;
    assert_eq!(s.last(), Some(&Status::Accept));

    let samples = scrape(metrics);
    assert_eq!(
        value(
            &samples,
            "cjsm_messages_total",
            &[("marking", "OFFICIAL"), ("action", "accept")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_messages_total",
            &[("marking", "OFFICIAL-SENSITIVE"), ("action", "reject")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_messages_total",
            &[("marking", "OFFICIAL-SENSITIVE"), ("action", "accept")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_messages_total",
            &[("marking", "SECRET"), ("action", "reject")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_refusals_total",
            &[
                ("stage", "eom"),
                ("action", "reject"),
                ("reason", "no-secure-route")
            ]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_refusals_total",
            &[
                ("stage", "rcpt"),
                ("action", "reject"),
                ("reason", "recipient-unknown")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_refusals_total",
            &[
                ("stage", "rcpt"),
                ("action", "tempfail"),
                ("reason", "store-error")
            ]
        ),
        0.0
    );
    assert_eq!(
        value(&samples, "cjsm_recipients_total", &[("zone", "other")]),
        7.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_recipients_total",
            &[("zone", "secure-suffix")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_recipients_total",
            &[("zone", "secure-network")]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "cjsm_verdict_duration_seconds_count", &[]),
        6.0
    );
    assert!(value(&samples, "cjsm_store_operations_total", &[("op", "lookup")]) >= 2.0);
    assert_eq!(
        value(&samples, "cjsm_store_errors_total", &[("op", "lookup")]),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "cjsm_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(value(&samples, "cjsm_ready", &[]), 1.0);
    assert_eq!(value(&samples, "cjsm_store_up", &[]), 1.0);
    assert!(
        value(
            &samples,
            "cjsm_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );

    // Sessions close; the directory size is refreshed every 5 s.
    let mut settled = false;
    for _ in 0..80 {
        let samples = scrape(metrics);
        if value(&samples, "cjsm_milter_sessions_active", &[]) == 0.0
            && value(&samples, "cjsm_directory_users", &[]) == 1.0
            && value(&samples, "cjsm_directory_organisations", &[]) == 1.0
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled, "sessions back to 0 and the directory counted");

    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("config reloaded");
    let samples = scrape(metrics);
    assert_eq!(
        value(&samples, "cjsm_config_reloads_total", &[("result", "ok")]),
        1.0
    );

    let served: BTreeSet<String> = samples.keys().map(|(name, _)| name.clone()).collect();
    let used = names_used();
    assert!(used.len() >= 12, "{used:?}");
    let missing: Vec<&String> = used.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "used in dashboards or rules but not served: {missing:?}"
    );
}
