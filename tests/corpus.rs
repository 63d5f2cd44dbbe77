//! The corpus: realistic `.eml` messages with expected verdicts, each run through
//! `cjsm-milter check` exactly as an admin would run it.
//!
//! `tests/corpus/cases.toml` holds the expectations (derived from the marking and policy
//! rules), `tests/corpus/config.toml` the config (the runner appends a `[store]` in a temporary
//! directory and creates the directory users listed in `cases.toml`). Every mismatch of every
//! case is collected and reported together; a `.eml` file without a case fails the test too.

mod common;

use common::cli::{cli, cli_add_user, cli_ok, onboard};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

const MARKING_HEADER: &str = "X-CJSM-Marking";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    #[serde(default)]
    user: Vec<UserSpec>,
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    address: String,
    org: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    /// active | suspended | deleted
    state: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    from: String,
    rcpt: Vec<String>,
    label: String,
    source: Option<String>,
    action: String,
    /// Enhanced status of the reply; `None` means no reply at all.
    status: Option<String>,
    found: Option<Vec<String>>,
    subject: Option<String>,
    #[serde(default)]
    conflict: bool,
    /// "ADDRESS STATUS" for each recipient refused at RCPT.
    #[serde(default)]
    refused: Vec<String>,
    recipients: Option<Vec<String>>,
    #[serde(default)]
    warnings_count: usize,
    #[serde(default)]
    reply_contains: Vec<String>,
    #[serde(default)]
    reply_excludes: Vec<String>,
    /// Number of incoming marking headers removed.
    removed: Option<usize>,
    /// The message arrives over TLS (the default), as hub traffic does.
    #[serde(default = "over_tls")]
    tls: bool,
}

fn over_tls() -> bool {
    true
}

struct Mismatch {
    file: String,
    field: String,
    expected: String,
    got: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: expected {}, got {}",
            self.file, self.field, self.expected, self.got
        )
    }
}

struct Report<'a> {
    file: &'a str,
    mismatches: &'a mut Vec<Mismatch>,
}

impl Report<'_> {
    fn add(&mut self, field: &str, expected: impl fmt::Debug, got: impl fmt::Debug) {
        self.mismatches.push(Mismatch {
            file: self.file.to_string(),
            field: field.to_string(),
            expected: format!("{expected:?}"),
            got: format!("{got:?}"),
        });
    }

    fn check<T: PartialEq + fmt::Debug>(&mut self, field: &str, expected: T, got: T) {
        if expected != got {
            self.add(field, expected, got);
        }
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

/// Writes the corpus config with a `[store]` in `dir`, and creates the directory users.
fn prepare(dir: &Path, users: &[UserSpec]) -> PathBuf {
    let base = std::fs::read_to_string(corpus_dir().join("config.toml"))
        .expect("tests/corpus/config.toml");
    let store = dir.join("store");
    let store_path = toml::Value::String(store.display().to_string());
    let text = format!("{base}\n[store]\nbackend = \"file\"\npath = {store_path}\n");
    let config = dir.join("config.toml");
    std::fs::write(&config, text).expect("write config");

    // Each organisation named by the users is registered and switched on through the admin
    // commands: a server organisation for `name@firm.co.uk.cjsm.net`, a mailbox one for
    // `name@chambers.cjsm.net`.
    let mut orgs: Vec<(String, String)> = Vec::new();
    for user in users {
        let domain = user.address.rsplit_once('@').expect("an address").1;
        let own = domain.strip_suffix(".cjsm.net").expect("a hub address");
        let org_domain = if own.contains('.') {
            own.to_string()
        } else {
            domain.to_string()
        };
        if orgs.iter().any(|(name, _)| *name == user.org) {
            continue;
        }
        let id = format!("org{}", orgs.len() + 1);
        let connection = if own.contains('.') {
            "server"
        } else {
            "mailbox"
        };
        onboard(&config, &id, &user.org, &org_domain, connection);
        orgs.push((user.org.clone(), id));
    }
    for user in users {
        let org_id = &orgs
            .iter()
            .find(|(name, _)| *name == user.org)
            .expect("registered")
            .1;
        cli_add_user(
            &config,
            &user.address,
            org_id,
            &user.first_name,
            &user.last_name,
        );
        match user.state.as_str() {
            "active" => {}
            "suspended" => {
                cli_ok(&config, &["directory", "user", "suspend", &user.address]);
            }
            "deleted" => {
                cli_ok(&config, &["directory", "user", "delete", &user.address]);
            }
            other => panic!("user {}: unknown state {other:?}", user.address),
        }
    }
    config
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// An address from either a plain string or an object with an `address` field.
fn address_of(value: &Value) -> String {
    value
        .as_str()
        .or_else(|| str_at(value, "/address"))
        .unwrap_or("<no address>")
        .to_string()
}

fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn run_case(config: &Path, case: &Case, mismatches: &mut Vec<Mismatch>) {
    let mut report = Report {
        file: &case.file,
        mismatches,
    };
    let path = corpus_dir().join(&case.file);
    let path_text = path.display().to_string();
    let mut args = vec!["check", "--from", case.from.as_str()];
    args.extend(["--client-addr", "192.0.2.25"]);
    if case.tls {
        args.extend(["--tls-version", "TLSv1.3"]);
    }
    for rcpt in &case.rcpt {
        args.extend(["--rcpt", rcpt.as_str()]);
    }
    args.push(&path_text);
    let out = cli(config, &args);
    if !out.status.success() {
        report.add(
            "exit status",
            0,
            format!("{:?}: {}", out.status.code(), out.stderr.trim()),
        );
        return;
    }
    let json: Value = match serde_json::from_str(&out.stdout) {
        Ok(json) => json,
        Err(e) => {
            report.add("json", "one JSON object", format!("{e}"));
            return;
        }
    };

    let label = str_at(&json, "/marking/label");
    let source = str_at(&json, "/marking/source");
    report.check("marking.label", Some(case.label.as_str()), label);
    if let Some(expected) = &case.source {
        report.check("marking.source", Some(expected.as_str()), source);
    }

    if let Some(expected) = &case.found {
        let expected: BTreeSet<String> = expected.iter().cloned().collect();
        let got: BTreeSet<String> = array(&json, "/marking/found")
            .iter()
            .map(|f| {
                format!(
                    "{}@{}",
                    str_at(f, "/label").unwrap_or("?"),
                    str_at(f, "/source").unwrap_or("?")
                )
            })
            .collect();
        report.check("marking.found", expected, got);
    }

    let conflict = json.pointer("/marking/conflict").and_then(Value::as_bool);
    report.check("marking.conflict", Some(case.conflict), conflict);

    let warnings = array(&json, "/marking/warnings");
    if warnings.len() != case.warnings_count {
        report.add("marking.warnings (count)", case.warnings_count, warnings);
    }

    report.check(
        "action",
        Some(case.action.as_str()),
        str_at(&json, "/action"),
    );

    let reply = json.get("reply").filter(|r| !r.is_null());
    report.check(
        "reply.status",
        case.status.as_deref(),
        reply.and_then(|r| str_at(r, "/status")),
    );
    let reply_text = reply.and_then(|r| str_at(r, "/text")).unwrap_or("");
    for needle in &case.reply_contains {
        if !reply_text.contains(needle.as_str()) {
            report.add("reply.text", format!("to contain {needle}"), reply_text);
        }
    }
    for needle in &case.reply_excludes {
        if reply_text.contains(needle.as_str()) {
            report.add("reply.text", format!("not to contain {needle}"), reply_text);
        }
    }

    if let Some(expected) = &case.subject {
        report.check(
            "subject",
            Some(expected.as_str()),
            str_at(&json, "/subject"),
        );
    }

    if let Some(expected) = &case.recipients {
        let got: Vec<String> = array(&json, "/recipients").iter().map(address_of).collect();
        report.check("recipients", expected.clone(), got);
    }

    let expected_refused: BTreeSet<String> = case.refused.iter().cloned().collect();
    let got_refused: BTreeSet<String> = array(&json, "/refused_recipients")
        .iter()
        .map(|r| {
            let status = str_at(r, "/reply/status")
                .or_else(|| str_at(r, "/status"))
                .unwrap_or("?");
            format!("{} {status}", address_of(r))
        })
        .collect();
    report.check("refused_recipients", expected_refused, got_refused);

    let added: Vec<&str> = array(&json, "/headers_added")
        .iter()
        .filter(|h| str_at(h, "/name").is_some_and(|n| n.eq_ignore_ascii_case(MARKING_HEADER)))
        .map(|h| str_at(h, "/value").unwrap_or("?"))
        .collect();
    if case.action == "accept" {
        let effective_source = case.source.as_deref().or(source).unwrap_or("?");
        let expected = format!("{}; source={effective_source}", case.label);
        report.check(
            "headers_added X-CJSM-Marking",
            vec![expected.as_str()],
            added,
        );
    }

    if let Some(expected) = case.removed {
        let removed = array(&json, "/headers_removed")
            .iter()
            .filter(|h| str_at(h, "/name").is_some_and(|n| n.eq_ignore_ascii_case(MARKING_HEADER)))
            .count();
        report.check("headers_removed X-CJSM-Marking (count)", expected, removed);
    }
}

#[test]
fn corpus_verdicts() {
    let dir = corpus_dir();
    let cases_text = std::fs::read_to_string(dir.join("cases.toml")).expect("cases.toml");
    let corpus: Corpus = toml::from_str(&cases_text).expect("cases.toml parses");
    let mut mismatches = Vec::new();

    // Every .eml has exactly one case, every case has its .eml.
    let mut by_file: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &corpus.case {
        *by_file.entry(case.file.as_str()).or_default() += 1;
    }
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("tests/corpus") {
        let name = entry.expect("dir entry").file_name();
        let name = name.to_string_lossy().into_owned();
        if name.ends_with(".eml") {
            files.insert(name);
        }
    }
    for file in &files {
        if !by_file.contains_key(file.as_str()) {
            mismatches.push(Mismatch {
                file: file.clone(),
                field: "case".into(),
                expected: "a [[case]] in cases.toml".into(),
                got: "none".into(),
            });
        }
    }
    for (file, count) in &by_file {
        if !files.contains(*file) {
            mismatches.push(Mismatch {
                file: file.to_string(),
                field: "file".into(),
                expected: "the file in tests/corpus".into(),
                got: "missing".into(),
            });
        }
        if *count > 1 {
            mismatches.push(Mismatch {
                file: file.to_string(),
                field: "case".into(),
                expected: "one [[case]]".into(),
                got: format!("{count}"),
            });
        }
    }

    let temp = tempfile::tempdir().expect("temp dir");
    let config = prepare(temp.path(), &corpus.user);
    for case in &corpus.case {
        if files.contains(&case.file) {
            run_case(&config, case, &mut mismatches);
        }
    }

    assert!(!corpus.case.is_empty(), "cases.toml has no cases");
    if !mismatches.is_empty() {
        let list: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
        panic!(
            "{} corpus mismatch(es) over {} case(s):\n  {}",
            mismatches.len(),
            corpus.case.len(),
            list.join("\n  ")
        );
    }
}
