//! Hostile input through `check`: every message gets a verdict, the process never panics,
//! and a message the classifier could not read whole is never "unmarked".

mod common;

use serde_json::Value;

fn check(message: &[u8], extra_config: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let store = dir.path().join("store").display().to_string();
    let scenario = common::scenario("closed_community", &[("store", &store)]);
    std::fs::write(&config, format!("{extra_config}\n{scenario}")).unwrap();
    let args = [
        "--from",
        "a@met.pnn.police.uk",
        "--rcpt",
        "b@cps.gsi.gov.uk",
        "--tls-version",
        "TLSv1.3",
        // A police sender is believed only from a secure-network peer (below).
        "--client-addr",
        "10.20.0.1",
    ];
    common::cli::check_message(&config, &args, message)
}

fn label(report: &Value) -> &str {
    report["marking"]["label"].as_str().unwrap()
}

#[test]
fn nul_bytes_and_invalid_utf8() {
    let mut message = b"Subject: SECRET\x00 plan \xff\xfe\r\nFrom: \x80\x81\r\n\r\n".to_vec();
    message.extend_from_slice(b"\x00\x00\xff body \xc3\x28\r\nOFFICIAL\x00\r\n");
    let report = check(&message, "");
    assert!(report["action"].is_string());
    assert!(!label(&report).is_empty());
}

#[test]
fn thousand_deep_multipart_hits_the_parts_bound() {
    let mut message = String::from(
        "Subject: OFFICIAL: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n",
    );
    for i in 0..1000 {
        message.push_str(&format!(
            "--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n",
            i + 1
        ));
    }
    message.push_str("--b1000\r\nContent-Type: text/plain\r\n\r\nSECRET\r\n");
    let report = check(message.as_bytes(), "");
    // The parts bound stops the structured reading; OFFICIAL in the subject does not free
    // the message, and the raw scan past the bound still finds the SECRET hidden there.
    assert_eq!(label(&report), "SECRET", "{report}");
    assert_eq!(report["marking"]["source"], "raw-scan");
    let limits = report["marking"]["limits_exceeded"].to_string();
    assert!(limits.contains("more than 500 MIME parts"), "{limits}");
    assert_eq!(report["action"], "reject", "above the ceiling");
}

#[test]
fn deeply_nested_attached_messages() {
    let mut message = String::from("Subject: OFFICIAL: fwd\r\n\r\nSECRET\r\n");
    for depth in 0..50 {
        message = format!(
            "Subject: OFFICIAL: level {depth}\r\nContent-Type: multipart/mixed; boundary=m{depth}\r\n\r\n--m{depth}\r\nContent-Type: message/rfc822\r\n\r\n{message}\r\n--m{depth}--\r\n"
        );
    }
    let report = check(message.as_bytes(), "");
    // Below the depth bound the raw scan still reads the innermost SECRET.
    assert_eq!(label(&report), "SECRET", "{report}");
    assert_eq!(report["marking"]["source"], "raw-scan", "{report}");
    let limits = report["marking"]["limits_exceeded"].to_string();
    assert!(limits.contains("nested deeper"), "{limits}");
}

#[test]
fn one_megabyte_subject() {
    let mut message = b"Subject: OFFICIAL: ".to_vec();
    message.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    message.extend_from_slice(b" [SECRET]\r\n\r\nbody\r\n");
    let report = check(&message, "");
    assert_eq!(label(&report), "SECRET", "{}", report["marking"]);
    assert_eq!(report["action"], "reject");

    // Past the header bound: the subject is not read, and the message is held to the ceiling.
    let report = check(&message, "[limits]\nmax_header_bytes = 65536\n");
    assert_eq!(
        label(&report),
        "OFFICIAL-SENSITIVE",
        "{}",
        report["marking"]
    );
    assert_eq!(report["marking"]["source"], "limits");
}

#[test]
fn truncated_messages() {
    let cases: [&[u8]; 6] = [
        b"",
        b"Subj",
        b"Subject: OFFICIAL-SENS",
        b"Subject: x\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nT0ZGSU",
        b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\nSubject: SECRET",
        b"\r\n\r\n\r\n",
    ];
    for message in cases {
        let report = check(message, "");
        assert!(report["action"].is_string(), "{message:?}");
    }
}

#[test]
fn encoded_word_bombs() {
    let subject = "=?UTF-8?B?".to_string() + &"QUFB".repeat(100_000) + "?=";
    let message = format!("Subject: {subject}\r\nSubject: =?x?Q?=ZZ=?=\r\n\r\nb\r\n");
    let report = check(message.as_bytes(), "");
    assert!(report["action"].is_string());
}

#[test]
fn regression_inputs_get_a_verdict() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let report = check(&std::fs::read(&path).unwrap(), "");
        assert!(report["action"].is_string(), "{}", path.display());
        assert!(!label(&report).is_empty());
    }
}
