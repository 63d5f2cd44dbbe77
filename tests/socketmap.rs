//! The socketmap server answers Postfix's own client: `postmap -q KEY socketmap:…:tlspolicy`
//! is the lookup `smtp_tls_policy_maps = socketmap:inet:127.0.0.1:PORT:tlspolicy` makes.

mod common;

use common::daemon::Daemon;
use std::path::Path;
use std::process::Command;

/// `postmap -q` against the socketmap: (exit code, output).
fn postmap(conf: &Path, port: u16, key: &str) -> (i32, String) {
    let out = Command::new("postmap")
        .arg("-c")
        .arg(conf)
        .args([
            "-q",
            key,
            &format!("socketmap:inet:127.0.0.1:{port}:tlspolicy"),
        ])
        .output()
        .expect("postmap (Debian package postfix)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text.trim().to_string())
}

#[test]
fn tls_policy_answers_for_organisations_and_secure_networks() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let milter_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = Daemon::start(&format!(
        "[milter]\nlisten = \"inet:127.0.0.1:{milter_port}\"\n[store]\npath = \"{{dir}}/store\"\n\
         [metrics]\nlisten = \"\"\n[socketmap]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    common::onboard(
        &daemon.config,
        "hartley",
        "Hartley Law LLP",
        "hartleylaw.co.uk",
        "server",
    );
    let conf = daemon.dir.path().join("postfix");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("main.cf"), "compatibility_level = 3.6\n").unwrap();

    let (code, text) = postmap(&conf, port, "hartleylaw.co.uk");
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text,
        "secure match=.hartleylaw.co.uk:hartleylaw.co.uk protocols=>=TLSv1.2 ciphers=high"
    );
    let (code, text) = postmap(&conf, port, "mx2.hartleylaw.co.uk");
    assert_eq!(code, 0, "{text}");
    let (code, text) = postmap(&conf, port, "met.pnn.police.uk");
    assert_eq!(
        (code, text.contains("match=.pnn.police.uk")),
        (0, true),
        "{text}"
    );
    let (code, text) = postmap(&conf, port, "gmail.com");
    assert_eq!((code, text.as_str()), (1, ""), "not found");

    // A suspended organisation no longer gets the policy.
    common::cli_ok(&daemon.config, &["directory", "org", "suspend", "hartley"]);
    let (code, text) = postmap(&conf, port, "hartleylaw.co.uk");
    assert_eq!((code, text.as_str()), (1, ""));

    // The store broken: a temporary error, never "not found" (which would send in clear).
    std::fs::write(daemon.dir.path().join("store/directory.json"), "{ broken").unwrap();
    // postmap, like the smtp client, reports it as a query error (the delivery is deferred).
    let (code, text) = postmap(&conf, port, "met.pnn.police.uk");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("temporary error: directory unavailable"),
        "{text}"
    );
    assert!(text.contains("query error"), "{text}");
}
