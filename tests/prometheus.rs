//! The dashboards and alert rules against a real Prometheus (Debian's `prometheus`) scraping a
//! real milter under traffic: every panel query and every rule expression is evaluated through
//! Prometheus' HTTP API, and any that errors or returns nothing fails the test. The results of
//! the key panels are written to `target/dashboard-data.json` for `dashboards/render.py`.

mod common;

use common::daemon::{Daemon, http_get};
use indymilter_test::{MacroStage, Status, TestConnection};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/cjsm-rules.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: cjsm-milter\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    let port = common::free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus ({e}): the dashboard test needs Debian's prometheus package")
        });
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "prometheus did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Prometheus {
        child,
        addr,
        _dir: dir,
    }
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query; the JSON `data` on success.
fn query(prometheus: SocketAddr, expr: &str) -> Result<Value, String> {
    let (status, body) = http_get(prometheus, &format!("/api/v1/query?query={}", encode(expr)));
    let json: Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
    if json["status"] != "success" {
        return Err(format!("{}: {}", json["errorType"], json["error"]));
    }
    Ok(json["data"].clone())
}

fn query_range(prometheus: SocketAddr, expr: &str, start: f64, end: f64) -> Value {
    let path = format!(
        "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1",
        encode(expr)
    );
    let (_, body) = http_get(prometheus, &path);
    serde_json::from_str::<Value>(&body).unwrap()["data"]["result"].clone()
}

/// A dashboard query as Grafana would send it, its variables filled in.
fn fill(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$job", ".*")
}

/// The left side of an alert condition: `cjsm_ready == 0` -> `cjsm_ready`.
fn without_threshold(expr: &str) -> Vec<String> {
    expr.split(" and ")
        .map(|part| {
            let cut = [" == ", " > ", " < ", " >= ", " <= ", " != "]
                .iter()
                .filter_map(|op| part.find(op))
                .min()
                .unwrap_or(part.len());
            part[..cut].trim().to_string()
        })
        .collect()
}

async fn send(milter: SocketAddr, rcpt: &str, subject: &str) -> Status {
    let mut conn = TestConnection::open(milter).await.unwrap();
    conn.connect("c", SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)))
        .await
        .unwrap();
    conn.macros(
        MacroStage::Mail,
        [("i", "PQ1"), ("{tls_version}", "TLSv1.3")],
    )
    .await
    .unwrap();
    conn.mail(["dc@met.pnn.police.uk"]).await.unwrap();
    let status = conn.rcpt([rcpt]).await.unwrap();
    if status != Status::Continue {
        conn.abort().await.unwrap();
        return status;
    }
    conn.header("Subject", subject).await.unwrap();
    conn.eoh().await.unwrap();
    conn.body(b"hello\r\n".repeat(200)).await.unwrap();
    let status = conn.eom().await.unwrap().1;
    conn.close().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_rule_evaluates_on_a_real_prometheus() {
    let port = common::free_port();
    let daemon = Daemon::start(&common::scenario(
        "daemon",
        &[
            ("mode", "enforce"),
            ("listen", &format!("inet:127.0.0.1:{port}")),
        ],
    ));
    let milter = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let prometheus = start_prometheus(daemon.metrics_addr());
    let began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    // Traffic for a while: Prometheus scrapes every second; rate() needs several samples.
    let traffic_until = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while Instant::now() < traffic_until {
        for (rcpt, subject) in [
            ("x@gmail.com", "OFFICIAL: rota"),
            ("b@cps.gsi.gov.uk", "OFFICIAL-SENSITIVE: case papers"),
            ("x@gmail.com", "lunch"),
            ("nobody@smith.cjsm.net", "x"),
            ("c@met.pnn.police.uk", "RESTRICTED: statement"),
        ] {
            send(milter, rcpt, subject).await;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sent > 50);
    // Let the last scrapes and rule evaluations land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let data = query(
        prometheus.addr,
        "count_over_time(up{job=\"cjsm-milter\"}[1m])",
    )
    .unwrap();
    let scrapes: f64 = data["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(scrapes >= 10.0, "only {scrapes} scrapes");

    let mut failures = Vec::new();
    let dashboards = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut panels_checked = 0;
    for file in ["availability.json", "traffic.json", "performance.json"] {
        let board: Value =
            serde_json::from_str(&std::fs::read_to_string(dashboards.join(file)).unwrap()).unwrap();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = fill(target["expr"].as_str().unwrap());
                panels_checked += 1;
                match query(prometheus.addr, &expr) {
                    Err(e) => failures.push(format!("{file} / {}: {expr}: {e}", panel["title"])),
                    Ok(data) if data["result"].as_array().is_none_or(Vec::is_empty) => {
                        failures.push(format!("{file} / {}: {expr}: no data", panel["title"]))
                    }
                    Ok(_) => {}
                }
            }
        }
    }

    // Every rule loaded and healthy; every recording rule has data; every alert's quantity
    // evaluates to data (the alerts themselves are quiet: nothing is wrong).
    let (_, body) = http_get(prometheus.addr, "/api/v1/rules");
    let rules: Value = serde_json::from_str(&body).unwrap();
    let mut rules_checked = 0;
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            rules_checked += 1;
            let name = rule["name"].as_str().unwrap();
            if rule["health"] != "ok" {
                failures.push(format!(
                    "rule {name}: health {} {}",
                    rule["health"], rule["lastError"]
                ));
            }
            let exprs = if rule["type"] == "recording" {
                vec![name.to_string()]
            } else {
                without_threshold(rule["query"].as_str().unwrap())
            };
            for expr in exprs {
                match query(prometheus.addr, &expr) {
                    Err(e) => failures.push(format!("rule {name}: {expr}: {e}")),
                    Ok(data) if data["result"].as_array().is_none_or(Vec::is_empty) => {
                        failures.push(format!("rule {name}: {expr}: no data"))
                    }
                    Ok(_) => {}
                }
            }
            if rule["type"] == "alerting" && rule["state"] != "inactive" {
                failures.push(format!(
                    "alert {name} is {} with healthy traffic",
                    rule["state"]
                ));
            }
        }
    }
    assert!(
        panels_checked >= 20 && rules_checked == 11,
        "{panels_checked} panels, {rules_checked} rules"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The key panels' real results, for the picture in the README.
    let end = began + 25.0;
    let key = [
        (
            "Messages by marking (per s)",
            "sum by (marking) (rate(cjsm_messages_total[5s]))",
        ),
        (
            "Messages by action (per s)",
            "sum by (action) (rate(cjsm_messages_total[5s]))",
        ),
        (
            "Refusals by reason (per s)",
            "sum by (reason) (rate(cjsm_refusals_total{action=\"reject\"}[5s]))",
        ),
        (
            "Verdict latency p50 / p99 (s)",
            "histogram_quantile(0.5, sum by (le) (rate(cjsm_verdict_duration_seconds_bucket[5s])))",
        ),
        (
            "Verdict latency p50 / p99 (s)",
            "histogram_quantile(0.99, sum by (le) (rate(cjsm_verdict_duration_seconds_bucket[5s])))",
        ),
        ("Ready and store up", "cjsm_ready"),
        ("Ready and store up", "cjsm_store_up"),
    ];
    let data: Vec<Value> = key
        .iter()
        .map(|(title, expr)| {
            serde_json::json!({"title": title, "expr": expr, "result": query_range(prometheus.addr, expr, began, end)})
        })
        .collect();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-data.json");
    std::fs::write(out, serde_json::to_string_pretty(&data).unwrap()).unwrap();
}
