//! Hostile input: the milter's end-of-message work (collect, classify, decide) on messages
//! built to be expensive, each as large as the bounds let it be (`max_scan_bytes`, 16 MiB, or
//! `max_header_bytes`, 2 MiB). Budget: at most 1 s and 64 MB of memory per message.
//!
//! Run with `cargo bench --bench hostile`. Each case runs in a child process of its own, so
//! its peak memory is its own: the figure printed is the peak resident memory while deciding
//! (VmHWM, reset once the message is built) less the resident memory before, so it counts
//! what the milter holds for the message (the collector's copy included) and what deciding
//! costs on top. `-- --quick` runs each case once.

mod common;

use cjsm_milter::check::feed;
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const HEAD: &str = "From: DC Jones <dc.jones@met.pnn.police.uk>\r\nTo: clerk@cps.gsi.gov.uk\r\n\
                    Subject: OFFICIAL: papers\r\nMIME-Version: 1.0\r\n";

/// A case: its name, what it is, and how to build it.
type Case = (&'static str, &'static str, fn() -> Vec<u8>);

/// The cases.
fn cases() -> Vec<Case> {
    vec![
        ("prose", "16 MiB of ordinary text (for comparison)", || {
            body(
                "text/plain",
                &repeat(
                    "The witness statement was taken on Tuesday and is attached for counsel.\r\n",
                    16 * MIB,
                ),
            )
        }),
        (
            "rfc2231",
            "RFC 2231 continuations in a part's Content-Type, 13 MiB",
            || {
                let mut m = format!(
                    "{HEAD}Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
                );
                let mut i = 0;
                while m.len() < 13 * MIB {
                    write!(m, ";\r\n name*{i}=abcdefgh").unwrap();
                    i += 1;
                }
                m.push_str("\r\n\r\nhello\r\n--b--\r\n");
                m.into_bytes()
            },
        ),
        (
            "msip-labels",
            "msip_labels with 60,000 labels, 2 MiB",
            || {
                let mut labels = String::new();
                let mut i = 0u32;
                while labels.len() < 2 * MIB - 4096 {
                    write!(labels, "MSIP_Label_{i:x}_Enabled=true; ").unwrap();
                    i += 1;
                }
                format!("{HEAD}msip_labels: {labels}\r\n\r\nhello\r\n").into_bytes()
            },
        ),
        (
            "attached-headers",
            "an attached message of short header lines, 16 MiB",
            || {
                let mut m = format!(
                    "{HEAD}Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
                );
                let mut i = 0;
                while m.len() < 16 * MIB - 64 {
                    write!(m, "X-{i}: a\r\n").unwrap();
                    i += 1;
                }
                m.push_str("\r\nhello\r\n--b--\r\n");
                m.into_bytes()
            },
        ),
        ("many-parts", "a multipart of 800,000 parts, 16 MiB", || {
            let mut m = format!("{HEAD}Content-Type: multipart/mixed; boundary=b\r\n\r\n");
            m.push_str(&repeat("--b\r\n\r\nOFFICIAL\r\n", 16 * MIB - 64));
            m.push_str("--b--\r\n");
            m.into_bytes()
        }),
        (
            "short-lines",
            "16 MiB of short lines that nearly spell a marking",
            || body("text/plain", &repeat("SECRT SENS\r\n", 16 * MIB)),
        ),
        (
            "unique-short-lines",
            "16 MiB of short lines, each different, that nearly spell a marking",
            || {
                let mut text = String::new();
                let mut i = 0u32;
                while text.len() < 16 * MIB - 32 {
                    write!(text, "SECRT SENS {i}\r\n").unwrap();
                    i += 1;
                }
                body("text/plain", &text)
            },
        ),
        (
            "html-tags",
            "16 MiB of HTML: hidden elements and entities",
            || {
                body(
                    "text/html",
                    &repeat(
                        "<div style=\"display:none\"><p>S&#0;E&shy;C</p></div>",
                        16 * MIB,
                    ),
                )
            },
        ),
        (
            "ambiguous-base64",
            "two Content-Types over 16 MiB of base64-like lines",
            || {
                let mut m =
                    format!("{HEAD}Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\n");
                m.push_str(&repeat(
                    "U0VDUkVUCgU0VDUkVUCgU0VDUkVUCgU0VDUkVUCgU0VDUkVUCgU0VDUkVUCgU0VDUkVUCg\r\n",
                    16 * MIB - 128,
                ));
                m.into_bytes()
            },
        ),
        (
            "subject-words",
            "a 2 MiB Subject of words that nearly spell markings",
            || {
                let subject = repeat("SECRE SANTA OFFICIAL ", 2 * MIB - 4096);
                format!("From: a@met.pnn.police.uk\r\nSubject: {subject}\r\n\r\nhi\r\n")
                    .into_bytes()
            },
        ),
        (
            "deep-nesting",
            "attached messages nested 5,000 deep",
            || {
                let mut m = "Subject: SECRET\r\n\r\nhello\r\n".to_string();
                for depth in 0..5000 {
                    m = format!(
                        "Subject: OFFICIAL: {depth}\r\nContent-Type: message/rfc822\r\n\r\n{m}"
                    );
                }
                format!("{HEAD}{m}").into_bytes()
            },
        ),
    ]
}

fn repeat(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len())
}

fn body(content_type: &str, text: &str) -> Vec<u8> {
    format!("{HEAD}Content-Type: {content_type}; charset=utf-8\r\n\r\n{text}").into_bytes()
}

/// A figure of /proc/self/status (`VmHWM`, the peak resident memory; `VmRSS`), in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One case in this process: prints `seconds peak_growth_kib label`.
fn run_one(name: &str, runs: usize) {
    let (_, _, build) = cases()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .expect("a case");
    let raw = build();
    let (_dir, engine, template) = common::engine_to_a_secure_recipient();
    // Forget the peak of building the message (Linux: "5" resets VmHWM to the current RSS).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS");
    let mut best = Duration::MAX;
    let mut label = String::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut transaction = template.clone();
        feed(&mut transaction, &raw);
        let outcome = transaction.finish(&engine.rules, &engine.smime);
        best = best.min(started.elapsed());
        label = engine
            .rules
            .vocab
            .level(outcome.classification.level)
            .name
            .clone();
        black_box(&outcome.verdict);
    }
    let growth = status_kib("VmHWM").saturating_sub(before);
    println!("{} {growth} {label}", best.as_secs_f64());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs = if quick { 1 } else { 3 };
    if let Some(at) = args.iter().position(|a| a == "--one") {
        run_one(&args[at + 1], runs);
        return;
    }
    let me = std::env::current_exe().unwrap();
    println!(
        "{:<18} {:>9} {:>10} {:<20} what",
        "case", "seconds", "peak MB", "read as"
    );
    let mut over = Vec::new();
    for (name, what, _) in cases() {
        let out = Command::new(&me)
            .args(["--one", name])
            .args(quick.then_some("--quick"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let (Some(seconds), Some(kib)) = (fields.next(), fields.next()) else {
            println!(
                "{name:<18} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            over.push(name);
            continue;
        };
        let label: Vec<&str> = fields.collect();
        let seconds: f64 = seconds.parse().unwrap();
        let mb = kib.parse::<f64>().unwrap() / 1024.0;
        if seconds > 1.0 || mb > 64.0 {
            over.push(name);
        }
        println!(
            "{name:<18} {seconds:>9.3} {mb:>10.1} {:<20} {what}",
            label.join(" ")
        );
    }
    if !over.is_empty() {
        println!("over the budget (1 s, 64 MB): {}", over.join(", "));
    }
}
