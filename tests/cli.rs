//! The command line as an administrator uses it: exit codes, one-line errors, the directory
//! commands on the embedded store, and `config check` naming the key and line at fault.

mod common;

use common::cli::{cli, cli_add_user, cli_ok, onboard, run_cli, run_for};
use common::pki::{Dates, SmimeCa};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn config_in(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store").display().to_string();
    common::scenario_file(dir, "closed_community", &[("store", &store)])
}

#[test]
fn directory_user_lifecycle_changes_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let cfg = Some(config.as_path());
    let message = dir.path().join("m.eml");
    std::fs::write(
        &message,
        "Subject: OFFICIAL-SENSITIVE: case papers\r\n\r\nHello\r\n",
    )
    .unwrap();
    let check = || {
        let out = run_cli(
            cfg,
            b"",
            &[
                "check",
                "--from",
                "a@met.pnn.police.uk",
                "--rcpt",
                "alice@smithchambers.cjsm.net",
                "--tls-version",
                "TLSv1.3",
                "--client-addr",
                "10.20.0.1",
                message.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", out.stderr);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };

    let report = check();
    assert_eq!(
        report["refused_recipients"][0]["reply"]["status"], "5.1.1",
        "{report}"
    );

    onboard(
        &config,
        "smith-chambers",
        "Smith Chambers",
        "smithchambers.cjsm.net",
        "mailbox",
    );
    cli_add_user(
        &config,
        "Alice@SmithChambers.cjsm.net",
        "smith-chambers",
        "Alice",
        "Smith",
    );
    let report = check();
    assert_eq!(report["action"], "accept", "{report}");
    assert_eq!(report["subject"], "OFFICIAL-SENSITIVE: case papers [CJSM]");

    let out = run_cli(
        cfg,
        b"",
        &["directory", "user", "show", "alice@smithchambers.cjsm.net"],
    );
    let user: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(user["state"], "active");
    assert_eq!(user["last_name"], "Smith");

    for (command, state, status) in [
        ("suspend", "suspended", "5.2.1"),
        ("reactivate", "active", ""),
        ("delete", "deleted", "5.2.1"),
    ] {
        let out = run_cli(
            cfg,
            b"",
            &["directory", "user", command, "alice@smithchambers.cjsm.net"],
        );
        assert!(out.status.success(), "{command}: {}", out.stderr);
        assert!(out.stdout.contains(state), "{}", out.stdout);
        let report = check();
        if status.is_empty() {
            assert_eq!(report["action"], "accept", "{report}");
        } else {
            assert_eq!(
                report["refused_recipients"][0]["reply"]["status"], status,
                "{command}: {report}"
            );
            assert_eq!(report["action"], "reject", "no recipient left: {report}");
        }
    }
}

#[test]
fn directory_refusals_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let cfg = Some(config.as_path());
    let cases: &[&[&str]] = &[
        &[
            "directory",
            "user",
            "add",
            "bob@firm.co.uk",
            "--org",
            "firm",
            "--first-name",
            "B",
            "--last-name",
            "F",
        ],
        &["directory", "user", "show", "nobody@x.cjsm.net"],
        &["directory", "user", "suspend", "nobody@x.cjsm.net"],
        &["directory", "org", "activate", "nobody"],
    ];
    for args in cases {
        let out = run_cli(cfg, b"", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = out.stderr;
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("cjsm-milter: error: "), "{err}");
    }
    let apply = [
        "directory",
        "org",
        "apply",
        "--id",
        "x",
        "--name",
        "X",
        "--domain",
        "x.cjsm.net",
        "--connection",
        "mailbox",
    ];
    let out = run_cli(cfg, b"", &apply);
    assert!(out.status.success(), "{}", out.stderr);
    let add = [
        "directory",
        "user",
        "add",
        "b@x.cjsm.net",
        "--org",
        "x",
        "--first-name",
        "B",
        "--last-name",
        "X",
    ];
    let out = run_cli(cfg, b"", &add);
    assert!(out.status.success(), "{}", out.stderr);
    let out = run_cli(cfg, b"", &add);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    // A duplicate application names the organisation holding the domain.
    let out = run_cli(
        cfg,
        b"",
        &[
            "directory",
            "org",
            "apply",
            "--id",
            "y",
            "--name",
            "Y",
            "--domain",
            "X.cjsm.net",
            "--connection",
            "mailbox",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("x.cjsm.net is already registered to x"),
        "{}",
        out.stderr
    );
}

#[test]
fn config_check_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "mode = \"report\"\n[marking]\nceiling = \"OFFICIAL-SENSITIVE\"\n[marking.msip_labels]\n\"a1b2\" = \"OFFICIAL\"\n").unwrap();
    let out = run_cli(None, b"", &["config", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr);

    let cases = [
        (
            "[milter]\nlisten = \"inet:127.0.0.1:7357\"\nlisen = 1\n",
            "line 3",
            "lisen",
        ),
        (
            "[marking]\n\n\ndefault = \"BANANA\"\n",
            "line 4",
            "marking.default",
        ),
        (
            "[routing]\nsecure_domains = \"gsi.gov.uk\"\n",
            "line 2",
            "secure_domains",
        ),
        ("mode = \"loud\"\n", "line 1", "loud"),
        (
            "[marking.msip_labels]\n\"guid\" = \"NOPE\"\n",
            "line 2",
            "NOPE",
        ),
        ("[limits]\non_exceeded = \"ignore\"\n", "line 2", "ignore"),
    ];
    for (text, line, key) in cases {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = run_cli(None, b"", &["config", "check", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = out.stderr;
        assert!(err.contains(line) && err.contains(key), "{text:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

/// `config check` refuses what `run` refuses: settings that are only understood once compiled
/// (the escrow certificate, read and checked; a level name).
#[test]
fn config_check_refuses_what_run_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let ca = SmimeCa::create(&dir.path().join("ca"));
    let (expired, _) = ca.issue(
        "escrow-expired",
        Some("archive@hub.example"),
        "keyEncipherment",
        Dates::Range("200101000000Z", "200201000000Z"),
    );
    let (valid, _) = ca.issue(
        "escrow",
        Some("archive@hub.example"),
        "keyEncipherment",
        Dates::Days(365),
    );
    let missing = dir.path().join("missing.pem");
    let escrow = |cert: &Path| {
        format!(
            "mode = \"report\"\n[encryption]\nescrow_certificate = \"{}\"\n",
            cert.display()
        )
    };
    let file = dir.path().join("cjsm.toml");
    std::fs::write(&file, escrow(&valid)).unwrap();
    let out = run_cli(None, b"", &["config", "check", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr);
    let cases = [
        (escrow(&missing), "line 3", "encryption.escrow_certificate"),
        (escrow(&expired), "line 3", "not valid now"),
        (
            "[routing]\nrequire_tls_from = \"BANANA\"\n".to_string(),
            "line 2",
            "routing.require_tls_from",
        ),
    ];
    for (text, line, key) in cases {
        std::fs::write(&file, &text).unwrap();
        let check = run_cli(None, b"", &["config", "check", file.to_str().unwrap()]);
        assert_eq!(check.status.code(), Some(2), "{text}");
        let err = check.stderr;
        assert!(err.contains(line) && err.contains(key), "{text:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        // `run` refuses the same file before it binds anything.
        let run = cli(&file, &["run"]);
        assert_eq!(run.status.code(), Some(2), "{text}");
        assert!(run.stderr.contains(key), "{text:?}: {}", run.stderr);
    }
}

/// The directory and audit commands refuse a config whose words are wrong, as every command
/// does, but do not read the escrow certificate (they never encrypt).
#[test]
fn directory_commands_check_the_words_but_not_the_escrow() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cjsm.toml");
    let store = format!(
        "[store]\npath = \"{}\"\n",
        dir.path().join("store").display()
    );
    std::fs::write(&file, format!("{store}[marking]\nceiling = \"BANANA\"\n")).unwrap();
    let out = cli(&file, &["directory", "org", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("line 4, key `marking.ceiling`"),
        "{}",
        out.stderr
    );
    std::fs::write(
        &file,
        format!(
            "{store}[encryption]\nescrow_certificate = \"{}\"\n",
            dir.path().join("missing.pem").display()
        ),
    )
    .unwrap();
    let out = cli(&file, &["directory", "org", "list"]);
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn check_usage_and_input_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let cfg = Some(config.as_path());
    let out = run_cli(
        cfg,
        b"",
        &[
            "check",
            "--from",
            "a@b",
            "--rcpt",
            "c@d",
            "/nonexistent/message.eml",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("/nonexistent/message.eml"));
    let out = run_cli(cfg, b"", &["check", "--rcpt", "c@d", "-"]);
    assert_eq!(out.status.code(), Some(2), "missing --from");
    let out = run_cli(
        cfg,
        b"",
        &[
            "check",
            "--from",
            "a@b",
            "--rcpt",
            "c@d",
            "--client-addr",
            "not-an-ip",
            "-",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "nonsense = 1\n").unwrap();
    let out = cli(&bad, &["check", "--from", "a@b", "--rcpt", "c@d", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("nonsense"));
}

#[test]
fn check_takes_session_facts_as_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let message = dir.path().join("m.eml");
    std::fs::write(&message, "Subject: OFFICIAL: x\r\n\r\nb\r\n").unwrap();
    let out = cli(
        &config,
        &[
            "check",
            "--from",
            "a@firm.co.uk",
            "--rcpt",
            "x@gmail.com",
            "--auth",
            "A@firm.co.uk",
            "--client-addr",
            "192.0.2.7",
            "--tls-version",
            "TLSv1.3",
            "--cert-subject",
            "CN=mail.firm.co.uk",
            "--cert-issuer",
            "CN=Hub CA",
            message.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["session"]["client_addr"], "192.0.2.7");
    assert_eq!(report["session"]["tls_version"], "TLSv1.3");
    assert_eq!(report["session"]["auth_user"], "A@firm.co.uk");
    assert_eq!(
        report["sender_trust"], "none",
        "no organisation holds firm.co.uk"
    );
    assert_eq!(report["session"]["cert_subject"], "CN=mail.firm.co.uk");
    assert_eq!(report["action"], "accept");
}

#[test]
fn example_config_is_valid_and_states_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cjsm-milter.example.toml");
    let mut example = cjsm_milter::config::Config::load(&path).unwrap();
    let mut defaults = cjsm_milter::config::Config::default();
    // Where the settings were read is no setting.
    example.source = Default::default();
    // The example states the profile's lists of words; the defaults leave them to the profile.
    for config in [&mut example, &mut defaults] {
        config.marking = cjsm_milter::marking::profile::complete(&config.marking);
    }
    assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
}

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["contrib/cjsm-milter.toml", "cjsm-milter.example.toml"] {
        let out = run_cli(
            None,
            b"",
            &["config", "check", root.join(file).to_str().unwrap()],
        );
        assert!(out.status.success(), "{file}: {}", out.stderr);
    }
}

#[test]
fn import_export_search_and_audit_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let cfg = Some(config.as_path());
    let ok = |args: &[&str]| {
        let out = run_cli(cfg, b"", args);
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        out.stdout
    };
    let fingerprint = "AB:".repeat(31) + "AB";
    ok(&[
        "directory",
        "org",
        "apply",
        "--id",
        "hartley",
        "--name",
        "Hartley Law LLP",
        "--domain",
        "hartleylaw.co.uk",
        "--connection",
        "server",
        "--cert-fingerprint",
        &fingerprint,
        "--cert-subject",
        "CN=mail.hartleylaw.co.uk",
        "--cert-issuer",
        "CN=Hub CA",
    ]);
    let org: serde_json::Value =
        serde_json::from_str(&ok(&["directory", "org", "show", "hartley"])).unwrap();
    assert_eq!(org["client_certificate"]["fingerprint"], "ab".repeat(32));
    assert_eq!(org["state"], "applied");
    assert!(ok(&["directory", "org", "list"]).starts_with("hartley\tapplied\t"));

    let csv = dir.path().join("staff.csv");
    std::fs::write(
        &csv,
        "secure_address,first_name,last_name,organisation,town,business_type\n\
         alice@hartleylaw.co.uk.cjsm.net,Alice,Jones,hartley,Leeds,Solicitors\n\
         bob@elsewhere.cjsm.net,Bob,Smith,hartley,York,Solicitors\n\
         carol@hartleylaw.co.uk.cjsm.net,,Brown,hartley,York,Solicitors\n",
    )
    .unwrap();
    let out = run_cli(
        cfg,
        b"",
        &["directory", "user", "import", csv.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = out.stderr;
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "one line per bad row, then the summary: {err}"
    );
    assert!(
        lines[0].starts_with("line 3, field secure_address"),
        "{err}"
    );
    assert!(lines[1].starts_with("line 4, field first_name"), "{err}");
    assert!(
        lines[2].contains("2 bad rows; nothing was imported"),
        "{err}"
    );

    std::fs::write(
        &csv,
        "secure_address,first_name,last_name,organisation,town,business_type\n\
         alice@hartleylaw.co.uk.cjsm.net,Alice,Jones,hartley,Leeds,Solicitors\n\
         carol@hartleylaw.co.uk.cjsm.net,Carol,Brown,Hartley Law LLP,York,Solicitors\n",
    )
    .unwrap();
    assert!(
        ok(&["directory", "user", "import", csv.to_str().unwrap()])
            .contains("2 added, 0 updated, 0 unchanged")
    );
    assert!(
        ok(&["directory", "user", "import", csv.to_str().unwrap()])
            .contains("0 added, 0 updated, 2 unchanged")
    );
    assert_eq!(ok(&["directory", "search", "york"]).lines().count(), 1);
    assert!(ok(&["directory", "search", "HARTLEY"]).contains("carol@hartleylaw.co.uk.cjsm.net"));
    ok(&[
        "directory",
        "user",
        "update",
        "carol@hartleylaw.co.uk.cjsm.net",
        "--town",
        "Leeds",
    ]);
    assert_eq!(ok(&["directory", "search", "leeds"]).lines().count(), 2);
    // Addresses match too; --limit (100 by default) cuts the list by address, and a last
    // line on standard error says so.
    let found = ok(&["directory", "search", "ALICE@hartley"]);
    assert!(
        found.starts_with("alice@hartleylaw.co.uk.cjsm.net\tAlice Jones\thartley\tLeeds\tactive"),
        "{found}"
    );
    assert_eq!(found.lines().count(), 1, "{found}");
    let out = run_cli(
        cfg,
        b"",
        &["directory", "search", "cjsm.net", "--limit", "1"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.starts_with("alice@"), "{}", out.stdout);
    assert!(out.stderr.contains("raise --limit"), "{}", out.stderr);
    let out = run_cli(
        cfg,
        b"",
        &["directory", "search", "cjsm.net", "--limit", "2"],
    );
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(!out.stderr.contains("--limit"), "{}", out.stderr);
    let out = run_cli(
        cfg,
        b"",
        &["directory", "search", "cjsm.net", "--limit", "0"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);

    // Only an active organisation's users are listed.
    assert_eq!(
        ok(&["directory", "export", "--format", "csv"])
            .lines()
            .count(),
        1
    );
    for step in ["approve", "sign-terms", "activate"] {
        ok(&["directory", "org", step, "hartley"]);
    }
    let exported = ok(&["directory", "export", "--format", "csv"]);
    assert!(
        exported.starts_with("secure_address,first_name,last_name,organisation,town,business_type")
    );
    assert_eq!(exported.lines().count(), 3);
    // Unfolded (RFC 2849 folds long lines); the real LDIF readers are in tests/ldif_reader.rs.
    let ldif = ok(&["directory", "export", "--format", "ldif"]).replace("\n ", "");
    assert!(
        ldif.contains(
            "dn: mail=alice@hartleylaw.co.uk.cjsm.net,ou=Secure eMail Directory,dc=cjsm,dc=net"
        ),
        "{ldif}"
    );

    let tail = ok(&["audit", "tail", "-n", "3"]);
    assert_eq!(tail.lines().count(), 3);
    assert!(
        tail.lines()
            .next()
            .unwrap()
            .contains("\"action\":\"org activate\""),
        "newest first: {tail}"
    );
    let carol = ok(&[
        "audit",
        "search",
        "--address",
        "carol@hartleylaw.co.uk.cjsm.net",
        "--since",
        "1h",
    ]);
    assert_eq!(
        carol.lines().count(),
        2,
        "the import and the update: {carol}"
    );
    assert!(carol.contains("\"action\":\"user import add\""), "{carol}");
    assert!(ok(&["audit", "search", "--since", "2999-01-01"]).is_empty());
    assert_eq!(
        run_cli(cfg, b"", &["audit", "search", "--since", "soon"])
            .status
            .code(),
        Some(2)
    );
}

/// What a careless administrator types is refused at the door (an Organisation
/// Administrator's address with a line break, not an address, or 5,000 characters long), and
/// the audit trail names who changed the directory even when no `USER` is set (cron, systemd):
/// by uid.
#[test]
fn careless_input_is_refused_and_every_change_has_an_author() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let apply = |admin: &str| -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cjsm-milter"));
        command.arg("--config").arg(&config);
        command.args(["directory", "org", "apply", "--id", "hartley"]);
        command.args(["--name", "Hartley Law LLP", "--domain", "hartleylaw.co.uk"]);
        command.args(["--connection", "server", "--admin", admin]);
        command
    };
    let long = format!("{}@hartleylaw.co.uk", "a".repeat(5_000));
    for admin in [
        "clerk@hartleylaw.co.uk\nforged line",
        "not an address",
        long.as_str(),
    ] {
        let out = apply(admin).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{admin:?} accepted");
        assert!(stderr.contains("--admin"), "{admin:?}: {stderr}");
    }
    let out = apply("clerk@hartleylaw.co.uk")
        .env_remove("USER")
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tail = cli_ok(&config, &["audit", "tail", "-n", "1"]);
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap();
    assert!(tail.contains(&format!("\"actor\":\"uid {uid}\"")), "{tail}");
}

/// A bulk load's report counts bad rows (not their errors), and a field that is not UTF-8
/// text is one more row error: the report goes on to every other row.
#[test]
fn an_import_report_counts_rows_and_reads_past_bad_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    onboard(
        &config,
        "hartley",
        "Hartley Law LLP",
        "hartleylaw.co.uk",
        "server",
    );
    let mut csv = b"secure_address,first_name,last_name,organisation,town,business_type\n".to_vec();
    csv.extend_from_slice(b"a@hartleylaw.co.uk.cjsm.net,Al\xffce,Jones,hartley,York,Solicitors\n");
    csv.extend_from_slice(b"b@elsewhere.cjsm.net,Bob,Smith,hartley,York,Solicitors\n");
    csv.extend_from_slice(b"c@hartleylaw.co.uk.cjsm.net,,,hartley,York,Solicitors\n");
    let file = dir.path().join("users.csv");
    std::fs::write(&file, &csv).unwrap();
    let out = cli(
        &config,
        &["directory", "user", "import", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines[0].starts_with("line 2, field first_name"),
        "{}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("line 3, field secure_address")),
        "{}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("line 4, field last_name")),
        "{}",
        out.stderr
    );
    let summary = lines.last().unwrap();
    assert!(
        summary.contains("3 bad rows; nothing was imported"),
        "{summary}"
    );
    assert!(summary.contains("4 problems"), "{summary}");
}

/// A Redis password in `[store] url` is never printed: `config check` refuses a Sentinel URL
/// without its service name without echoing the URL.
#[test]
fn config_check_refuses_a_sentinel_url_without_its_service_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "mode = \"report\"\n[store]\nbackend = \"redis\"\nurl = \"redis+sentinel://:secret@host:26379\"\n",
    )
    .unwrap();
    let out = run_cli(None, b"", &["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("store.url"), "{}", out.stderr);
    assert!(out.stderr.contains("line 4"), "{}", out.stderr);
    assert!(!out.stderr.contains("secret"), "{}", out.stderr);
    assert!(!out.stdout.contains("secret"), "{}", out.stdout);
}

/// Against a Redis (or a Sentinel) that does not answer, `run` and the admin commands say
/// which server failed, never the password in the URL.
#[test]
fn an_unreachable_redis_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    for scheme in [
        "redis://:secret@127.0.0.1:{port}",
        "redis+sentinel://:secret@127.0.0.1:{port}/mymaster",
        "redis://admin:secret@127.0.0.1:{port}/0",
    ] {
        let port = common::free_port();
        let url = scheme.replace("{port}", &port.to_string());
        let config = dir.path().join("redis.toml");
        let milter_port = common::free_port();
        std::fs::write(
            &config,
            format!(
                "mode = \"report\"\n[milter]\nlisten = \"inet:127.0.0.1:{milter_port}\"\n[store]\nbackend = \"redis\"\nurl = \"{url}\"\n"
            ),
        )
        .unwrap();
        let checked = run_cli(None, b"", &["config", "check", config.to_str().unwrap()]);
        assert!(checked.status.success(), "{url}: {}", checked.stderr);
        for args in [
            &["directory", "user", "show", "a@b.example"][..],
            &["directory", "org", "list"][..],
            &["audit", "tail"][..],
        ] {
            let out = cli(&config, args);
            assert!(!out.status.success(), "{url} {args:?}: {}", out.stdout);
            assert!(
                out.stderr.contains(&format!("127.0.0.1:{port}")),
                "{url} {args:?}: names the server: {}",
                out.stderr
            );
            assert!(
                !out.stderr.contains("secret"),
                "{url} {args:?}: {}",
                out.stderr
            );
            assert!(
                !out.stdout.contains("secret"),
                "{url} {args:?}: {}",
                out.stdout
            );
            assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        }
        let args = ["--config", config.to_str().unwrap(), "run"];
        let (out, _) = run_for(&args, Duration::from_secs(20), None);
        assert!(!out.status.success(), "{url}: run should fail");
        assert!(
            out.stderr.contains(&format!("127.0.0.1:{port}")),
            "{url}: names the server: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("secret"), "{url}: {}", out.stderr);
        assert!(!out.stdout.contains("secret"), "{url}: {}", out.stdout);
    }
}

/// `cjsm-milter ARGS…` under a 1 GiB address-space limit, which must exit within `seconds`:
/// its exit code and standard error.
fn run_bounded(args: &[&str], seconds: u64) -> (Option<i32>, String) {
    let (out, exited) = run_for(args, Duration::from_secs(seconds), Some(1 << 30));
    assert!(
        exited,
        "cjsm-milter {args:?} still running after {seconds} s"
    );
    (out.status.code(), out.stderr)
}

/// A config path that names a FIFO or a device is refused at once with a one-line error naming
/// the file: reading it would block until a writer appears, or never end.
#[test]
fn config_check_refuses_a_fifo_and_a_device_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("cjsm.toml");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path in our own temporary directory.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    for file in [fifo.to_str().unwrap(), "/dev/zero"] {
        let (code, err) = run_bounded(&["config", "check", file], 10);
        assert_eq!(code, Some(2), "{file}: {err}");
        assert!(
            err.contains(file) && err.contains("not a regular file"),
            "{file}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        // `run` loads through the same door.
        let (code, err) = run_bounded(&["--config", file, "run"], 10);
        assert_eq!(code, Some(2), "{file}: {err}");
        assert!(err.contains("not a regular file"), "{file}: {err}");
    }
}

/// A regular file too large to be a config is refused without being read into memory, and an
/// error quotes only the start of a long bad value.
#[test]
fn config_check_bounds_the_file_and_the_values_it_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(64 << 30).unwrap();
    drop(file);
    let (code, err) = run_bounded(&["config", "check", big.to_str().unwrap()], 10);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("big.toml") && err.contains("larger than"),
        "{err}"
    );

    let long = format!("inet:{}", "9".repeat(5000));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("[milter]\nlisten = \"{long}\"\n")).unwrap();
    let out = run_cli(None, b"", &["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    assert!(out.stderr.contains("…"), "{}", out.stderr);
    assert!(out.stderr.len() < 400, "{}", out.stderr);
}

/// An earlier version's embedded store (`directory.json` and its audit log) is moved into the
/// database by one command: the daemon's commands refuse to start on an empty database beside
/// it, naming the command; after it, everything is there (a suspension, a domain claim, the
/// audit trail), the old files are renamed aside, and running it again changes nothing.
#[test]
fn directory_migrate_moves_the_old_store_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let cfg = Some(config.as_path());
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let cli_ok = |_: Option<&Path>, args: &[&str]| cli_ok(&config, args);
    let org = serde_json::json!({
        "id": "smith-chambers", "name": "Smith Chambers",
        "domains": ["smithchambers.cjsm.net"], "connection": "mailbox", "state": "active",
        "terms_signed": 1, "admins": ["alice@smithchambers.cjsm.net"], "client_certificate": null,
        "approved": 1, "created": 1, "updated": 2, "revision": 4
    });
    let user = |address: &str, state: &str| {
        serde_json::json!({
            "address": address, "org": "smith-chambers", "first_name": "A", "last_name": "B",
            "town": "Leeds", "business_type": "Barristers", "state": state,
            "created": 1, "updated": 2, "revision": 3
        })
    };
    let old = serde_json::json!({
        "orgs": { "smith-chambers": org },
        "users": {
            "alice@smithchambers.cjsm.net": user("alice@smithchambers.cjsm.net", "active"),
            "bob@smithchambers.cjsm.net": user("bob@smithchambers.cjsm.net", "suspended"),
        },
        "domains": { "smithchambers.cjsm.net": "smith-chambers" },
        "certificates": {},
    });
    std::fs::write(
        store.join("directory.json"),
        serde_json::to_string_pretty(&old).unwrap(),
    )
    .unwrap();
    std::fs::write(
        store.join("audit.log"),
        "{\"kind\":\"admin\",\"time_ms\":5,\"action\":\"user suspend\",\"reason\":\"old\",\
         \"target\":\"bob@smithchambers.cjsm.net\"}\n",
    )
    .unwrap();
    std::fs::write(store.join("lock"), "").unwrap();

    // Not migrated: refused, naming the command, and nothing is created.
    let out = run_cli(
        cfg,
        b"",
        &["directory", "user", "show", "alice@smithchambers.cjsm.net"],
    );
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(
        out.stderr.contains("cjsm-milter directory migrate"),
        "{}",
        out.stderr
    );
    assert!(!store.join("directory.sqlite3").exists());

    let out = cli_ok(cfg, &["directory", "migrate"]);
    assert!(
        out.contains("1 organisations, 2 users, 1 domain claims, 0 certificates and 1 audit"),
        "{out}"
    );
    assert!(!store.join("directory.json").exists());
    assert!(store.join("directory.json.migrated").exists());
    assert!(store.join("audit.log.migrated").exists());
    assert!(store.join("directory.sqlite3").exists());

    let show = |address: &str| {
        let out = cli_ok(cfg, &["directory", "user", "show", address]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    assert_eq!(show("alice@smithchambers.cjsm.net")["state"], "active");
    let bob = show("bob@smithchambers.cjsm.net");
    assert_eq!(
        (bob["state"].as_str(), bob["revision"].as_u64()),
        (Some("suspended"), Some(3))
    );
    // The claim came along: a new application for the domain is refused, naming the holder.
    let out = run_cli(
        cfg,
        b"",
        &[
            "directory",
            "org",
            "apply",
            "--id",
            "copycat",
            "--name",
            "Copy Cat",
            "--domain",
            "smithchambers.cjsm.net",
            "--connection",
            "mailbox",
            "--admin",
            "x@smithchambers.cjsm.net",
        ],
    );
    assert!(
        !out.status.success() && out.stderr.contains("smith-chambers"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let audit = cli_ok(cfg, &["audit", "tail", "-n", "50"]);
    assert!(audit.contains("\"reason\":\"old\""), "{audit}");

    // Again: already migrated, nothing changed.
    let out = cli_ok(cfg, &["directory", "migrate"]);
    assert!(out.contains("already migrated"), "{out}");
    assert_eq!(show("alice@smithchambers.cjsm.net")["state"], "active");
}

/// The daemon, too, refuses to start on an empty database beside an earlier version's
/// `directory.json`: exit 2, naming the command that migrates it; nothing is created.
#[test]
fn run_refuses_an_unmigrated_store_naming_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(
        store.join("directory.json"),
        "{\"orgs\": {}, \"users\": {}}",
    )
    .unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nlisten = \"inet:127.0.0.1:{}\"\nuser = \"\"\nallow_root = true\n\
             [store]\npath = \"{}\"\n[metrics]\nlisten = \"\"\n\
             [socketmap]\nlisten = \"127.0.0.1:0\"\n",
            common::free_port(),
            store.display()
        ),
    )
    .unwrap();
    let (out, exited) = run_for(
        &["--config", config.to_str().unwrap(), "run"],
        Duration::from_secs(10),
        None,
    );
    assert!(exited, "still running: {}", out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("cjsm-milter directory migrate"),
        "{}",
        out.stderr
    );
    assert!(!store.join("directory.sqlite3").exists());
}
