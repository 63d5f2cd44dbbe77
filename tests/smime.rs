//! Encrypt or reject: S/MIME certificates in the directory (checked on import with the CLI),
//! and OFFICIAL-SENSITIVE mail to recipients without a secure route encrypted for their
//! certificates behind a real Postfix. What reaches the sink is decrypted with the openssl CLI
//! (`openssl cms -decrypt`, `openssl smime -decrypt`) and compared with the original MIME
//! entity byte for byte.

mod common;

use common::cli::{CliOutput, cli};
use common::daemon::Daemon;
use common::pki::{Dates, Pki, SmimeCa};
use common::postfix::{SECURE_PEER, Sink, milter_config, refs, start_hub, tls};
use std::path::{Path, PathBuf};
use std::process::Command;

fn import(config: &Path, address: &str, cert: &Path) -> CliOutput {
    cli(
        config,
        &[
            "directory",
            "cert",
            "import",
            address,
            cert.to_str().unwrap(),
        ],
    )
}

#[test]
fn certificates_are_checked_on_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let config = common::scenario_file(dir.path(), "file_store", &[("store", &store)]);
    let ca = SmimeCa::create(&dir.path().join("ca"));
    let address = "expert@gmail.com";
    let (good, _) = ca.issue("good", Some(address), "keyEncipherment", Dates::Days(365));
    let (soon, _) = ca.issue(
        "soon",
        Some("soon@gmail.com"),
        "keyEncipherment",
        Dates::Days(10),
    );
    let (expired, _) = ca.issue(
        "expired",
        Some(address),
        "keyEncipherment",
        Dates::Range("200101000000Z", "200201000000Z"),
    );
    let (early, _) = ca.issue(
        "early",
        Some(address),
        "keyEncipherment",
        Dates::Range("490101000000Z", "491231000000Z"),
    );
    let (signing, _) = ca.issue(
        "signing",
        Some(address),
        "digitalSignature",
        Dates::Days(365),
    );
    let (other, _) = ca.issue(
        "other",
        Some("someone@else.org"),
        "keyEncipherment",
        Dates::Days(365),
    );
    let (nobody, _) = ca.issue("nobody", None, "keyEncipherment", Dates::Days(365));

    // Refused, with the reason, and nothing stored.
    #[rustfmt::skip]
    let refusals = [
        (&expired, "expired on"),
        (&early, "not valid yet"),
        (&signing, "allows neither key encipherment nor key agreement"),
        (&other, "issued for someone@else.org, not for expert@gmail.com"),
        (&nobody, "issued for no e-mail address"),
        (&dir.path().join("cjsm.toml"), "not an X.509 certificate"),
    ];
    for (cert, reason) in refusals {
        let out = import(&config, address, cert);
        let stderr = out.stderr.as_str();
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", cert.display());
        assert!(stderr.contains(reason), "{}: {stderr}", cert.display());
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    let out = cli(&config, &["directory", "cert", "show", address]);
    assert_eq!(out.status.code(), Some(2), "nothing was stored");

    // Accepted: PEM, and DER (converted with the openssl CLI).
    let out = import(&config, address, &good);
    assert!(out.status.success(), "{}", out.stderr.as_str());
    let der = dir.path().join("soon.der");
    let converted = Command::new("openssl")
        .args(["x509", "-in"])
        .arg(&soon)
        .args(["-outform", "DER", "-out"])
        .arg(&der)
        .status()
        .unwrap();
    assert!(converted.success());
    let out = import(&config, "Soon@Gmail.com", &der);
    assert!(out.status.success(), "{}", out.stderr.as_str());

    let out = cli(&config, &["directory", "cert", "show", address]);
    let shown: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(shown["address"], address);
    assert!(
        shown["pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(shown["fingerprint"].as_str().unwrap().len(), 64);

    // Lapsing within 30 days: only the 10-day one.
    let out = cli(
        &config,
        &["directory", "cert", "expiring", "--within", "30d"],
    );
    let listed = out.stdout.as_str();
    assert!(listed.contains("soon@gmail.com"), "{listed}");
    assert!(!listed.contains(address), "{listed}");

    let out = cli(&config, &["directory", "cert", "remove", "soon@gmail.com"]);
    assert!(out.status.success());
    let out = cli(&config, &["directory", "cert", "remove", "soon@gmail.com"]);
    assert_eq!(out.status.code(), Some(2), "already gone");
    let audit = cli(&config, &["audit", "tail"]);
    let audit = audit.stdout.as_str();
    assert!(
        audit.contains("cert import") && audit.contains("cert remove"),
        "{audit}"
    );
}

/// The original MIME entity of the test message, as it must come out of decryption.
const ENTITY: &str = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nDear expert,\r\n\r\nthe report is below. Caf\u{e9}.\r\n\r\nOFFICIAL-SENSITIVE\r\n";

/// The message file swaks sends: without its final line break, as swaks ends the data with
/// CRLF "." CRLF itself; the MTA then holds exactly the headers and ENTITY.
fn message(to: &str, subject: &str) -> String {
    let entity = ENTITY.strip_suffix("\r\n").unwrap();
    format!(
        "From: dc.jones@met.pnn.police.uk\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n{entity}"
    )
}

/// `openssl cms|smime -decrypt` of a message file with a certificate and key.
fn decrypt(tool: &str, message: &Path, cert: &Path, key: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args([tool, "-decrypt", "-in"])
        .arg(message)
        .arg("-recip")
        .arg(cert)
        .arg("-inkey")
        .arg(key)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {tool} -decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

struct Keys {
    cert: PathBuf,
    key: PathBuf,
}

#[test]
fn sensitive_mail_to_certificate_holders_is_encrypted_behind_postfix() {
    let lab = tempfile::tempdir().unwrap();
    let pki = Pki::create(&lab.path().join("pki"));
    let ca = SmimeCa::create(&lab.path().join("smime"));
    let mut keys = std::collections::BTreeMap::new();
    for (name, address) in [
        ("expert", "expert@gmail.com"),
        ("second", "second@outlook.com"),
        ("escrow", "archive@hub.example"),
    ] {
        let (cert, key) = ca.issue(name, Some(address), "keyEncipherment", Dates::Days(365));
        keys.insert(name, Keys { cert, key });
    }
    let sink = Sink::start(lab.path());
    let socketmap_port = common::free_port();
    let hub = start_hub(lab.path(), &pki, &sink, socketmap_port, false);
    let store = lab.path().join("store");
    let config = |cipher: &str| {
        format!(
            "{}[encryption]\ncipher = \"{cipher}\"\nescrow_certificate = \"{}\"\n",
            milter_config(&hub, &store, socketmap_port),
            keys["escrow"].cert.display()
        )
    };
    let milter = Daemon::start(&config("aes-256-gcm"));
    for (name, address) in [
        ("expert", "expert@gmail.com"),
        ("second", "second@outlook.com"),
    ] {
        let out = import(&milter.config, address, &keys[name].cert);
        assert!(out.status.success(), "{}", out.stderr.as_str());
    }
    let send = |to: &[&str], subject: &str| {
        let file = lab.path().join("message.eml");
        std::fs::write(&file, message(&to.join(", "), subject)).unwrap();
        let tls = tls(&pki);
        let mut args = refs(&tls);
        // The police sender connects from the lab's secure network.
        args.extend_from_slice(&SECURE_PEER);
        let data = format!("@{}", file.display());
        args.extend(["--data", data.as_str()]);
        common::swaks_with(
            hub.port,
            "dc.jones@met.pnn.police.uk",
            &to.join(","),
            subject,
            "unused with --data",
            &args,
        )
    };

    // Two recipients with certificates: one encrypted message; each key, and the escrow key,
    // decrypts it to the original entity, byte for byte (AES-256-GCM: openssl cms).
    let dialogue = send(
        &["expert@gmail.com", "second@outlook.com"],
        "OFFICIAL-SENSITIVE: expert report",
    );
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    sink.wait_delivered(1);
    // (Postfix may hand the two recipients over in one transaction or two: the same message.)
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (file, text) = sink_file_with(&sink, "expert report");
    let text = &text;
    for expected in [
        "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data; name=\"smime.p7m\"",
        "Content-Transfer-Encoding: base64",
        "X-CJSM-Marking: OFFICIAL-SENSITIVE; source=",
        "Subject: OFFICIAL-SENSITIVE: expert report",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(!text.contains("Dear expert"), "no clear text: {text}");
    assert!(!text.contains("Content-Type: text/plain"), "{text}");
    for name in ["expert", "second", "escrow"] {
        let plain = decrypt("cms", &file, &keys[name].cert, &keys[name].key);
        assert_eq!(
            String::from_utf8_lossy(&plain),
            ENTITY,
            "{name}'s key decrypts the original entity"
        );
    }

    // One recipient without a certificate: rejected, naming only that one.
    let dialogue = send(
        &["expert@gmail.com", "friend@gmail.com"],
        "OFFICIAL-SENSITIVE: expert report",
    );
    assert!(
        dialogue.contains("550 5.7.1 OFFICIAL-SENSITIVE mail can only go to secure addresses or be encrypted; no secure route and no valid S/MIME certificate for friend@gmail.com"),
        "{dialogue}"
    );
    assert!(!dialogue.contains("for expert@gmail.com"), "{dialogue}");

    // A certificate that lapsed after import is not used: rejected, not sent in clear.
    drop(milter);
    lapse(&store, "second@outlook.com");
    let milter = Daemon::start(&config("aes-256-cbc"));
    let dialogue = send(&["second@outlook.com"], "OFFICIAL-SENSITIVE: expert report");
    assert!(
        dialogue.contains("no valid S/MIME certificate for second@outlook.com"),
        "{dialogue}"
    );

    // AES-256-CBC for older clients: enveloped-data, which openssl smime reads too; the
    // [encrypt] trigger forces encryption of OFFICIAL mail and is taken out of the Subject.
    let dialogue = send(&["expert@gmail.com"], "OFFICIAL: [encrypt] fee note");
    assert!(dialogue.contains("250 2.0.0 Ok: queued"), "{dialogue}");
    let started = std::time::Instant::now();
    while !sink.delivered().iter().any(|m| m.contains("fee note")) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "not delivered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (file, cbc) = sink_file_with(&sink, "fee note");
    assert!(cbc.contains("smime-type=enveloped-data"), "{cbc}");
    assert!(
        cbc.contains("Subject: OFFICIAL: fee note\n"),
        "trigger removed: {cbc}"
    );
    for tool in ["smime", "cms"] {
        let plain = decrypt(tool, &file, &keys["expert"].cert, &keys["expert"].key);
        assert_eq!(String::from_utf8_lossy(&plain), ENTITY, "openssl {tool}");
    }
    let plain = decrypt("smime", &file, &keys["escrow"].cert, &keys["escrow"].key);
    assert_eq!(String::from_utf8_lossy(&plain), ENTITY, "escrow");
    drop(milter);
}

/// The first sink file (and its text) that contains `needle`.
fn sink_file_with(sink: &Sink, needle: &str) -> (PathBuf, String) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sink.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
            (f, text)
        })
        .find(|(_, text)| text.contains(needle))
        .unwrap_or_else(|| panic!("no sink file with {needle:?}"))
}

/// Makes a stored certificate look lapsed, as time would: its record says it expired a day
/// ago (the milter checks the dates at each message).
fn lapse(store: &Path, address: &str) {
    use cjsm_milter::store::{DirectoryRead, DirectoryWrite, SqliteStore};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let directory = SqliteStore::open(store).unwrap();
        let mut cert = directory
            .certificates()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.address == address)
            .unwrap_or_else(|| panic!("no certificate for {address}"));
        cert.not_after = now - 86_400;
        directory.put_certificate(cert).await.unwrap();
    });
}

/// With a neutral Subject, no copy of the real one stays outside the encrypted message: the
/// first Subject is replaced, further Subject headers and Outlook's Thread-Topic removed (as
/// `check` reports the edits). A Subject trigger without any certificate holder encrypts
/// nothing and is refused, naming the recipient.
#[test]
fn a_neutral_subject_hides_every_copy_of_the_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let config = common::scenario_file(dir.path(), "neutral_subject", &[("store", &store)]);
    let ca = SmimeCa::create(&dir.path().join("ca"));
    let (cert, _) = ca.issue(
        "expert",
        Some("expert@gmail.com"),
        "keyEncipherment",
        Dates::Days(365),
    );
    let out = import(&config, "expert@gmail.com", &cert);
    assert!(out.status.success(), "{out:?}");
    let message = dir.path().join("m.eml");
    std::fs::write(
        &message,
        "From: dc.jones@met.pnn.police.uk\r\nTo: expert@gmail.com\r\n\
         Subject: OFFICIAL-SENSITIVE: Operation Larch\r\nThread-Topic: Operation Larch\r\n\
         Subject: Operation Larch (copy)\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain\r\n\r\nThe report.\r\n",
    )
    .unwrap();
    let check = |rcpt: &str| -> serde_json::Value {
        let out = cli(
            &config,
            &[
                "check",
                "--from",
                "dc.jones@met.pnn.police.uk",
                // A police sender is believed only from a secure-network peer.
                "--client-addr",
                "10.20.0.1",
                "--rcpt",
                rcpt,
                message.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    };
    let report = check("expert@gmail.com");
    assert_eq!(report["decision"]["reason"], "encrypt", "{report}");
    assert_eq!(report["subject"], "Secure message", "{report}");
    let removed = report["headers_removed"].as_array().unwrap();
    for (name, index) in [("Subject", 2), ("Thread-Topic", 1), ("Content-Type", 1)] {
        assert!(
            removed
                .iter()
                .any(|h| h["name"] == name && h["index"] == index),
            "{name} {index} removed: {report}"
        );
    }
    assert!(
        !removed
            .iter()
            .any(|h| h["name"] == "Subject" && h["index"] == 1),
        "the first Subject is replaced, not removed: {report}"
    );

    // Asked for with the trigger, but nobody holds a certificate: refused, nothing held.
    std::fs::write(
        &message,
        "From: dc.jones@met.pnn.police.uk\r\nTo: someone@gmail.com\r\n\
         Subject: [encrypt] OFFICIAL: minutes\r\n\r\nThe minutes.\r\n",
    )
    .unwrap();
    let report = check("someone@gmail.com");
    assert_eq!(report["action"], "reject", "{report}");
    let text = report["decision"]["reply"]["text"].as_str().unwrap();
    assert!(
        text.contains("Encryption was requested") && text.contains("someone@gmail.com"),
        "{report}"
    );
}
