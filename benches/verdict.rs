//! Verdict cost: the milter's end-of-message work (collect, classify, decide) for messages
//! of 2 KB to 1 MB. Run with `cargo bench --bench verdict`; prints the median and p99 per
//! message over many runs. For instruction counts that do not depend on machine noise:
//! `valgrind --tool=callgrind target/release/deps/verdict-* --iterations 200`.

mod common;

use cjsm_milter::check::feed;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn message(size: usize, marked: bool) -> Vec<u8> {
    let subject = if marked {
        "RE: OFFICIAL-SENSITIVE: witness statements"
    } else {
        "case 4711 papers"
    };
    let mut m = format!(
        "From: DC Jones <dc.jones@met.pnn.police.uk>\r\nTo: clerk@cps.gsi.gov.uk\r\n\
         Subject: {subject}\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000\r\n\
         Message-ID: <a1@met.pnn.police.uk>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    );
    let line =
        "The witness statement was taken on Tuesday and is attached for review by counsel.\r\n";
    let text_size = size.saturating_sub(m.len() + 400) / 2;
    while m.len() < text_size {
        m.push_str(line);
    }
    m.push_str("OFFICIAL-SENSITIVE PERSONAL\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>");
    while m.len() < size.saturating_sub(40) {
        m.push_str("<p>The witness statement was taken on Tuesday.</p>\r\n");
    }
    m.push_str("</body></html>\r\n--alt--\r\n");
    m.into_bytes()
}

fn main() {
    let iterations: usize = std::env::args()
        .skip_while(|a| a != "--iterations")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let (_dir, engine, template) = common::engine_to_a_secure_recipient();
    println!(
        "{:<28} {:>8} {:>12} {:>12}",
        "message", "runs", "median", "p99"
    );
    for (size, marked) in [
        (2_048, true),
        (10_240, true),
        (10_240, false),
        (102_400, true),
        (1_048_576, true),
    ] {
        let raw = message(size, marked);
        let runs = if iterations > 0 {
            iterations
        } else {
            (20_000_000 / size).clamp(50, 5_000)
        };
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let mut transaction = template.clone();
            feed(&mut transaction, &raw);
            let outcome = transaction.finish(&engine.rules, &engine.smime);
            black_box(&outcome.verdict);
            times.push(started.elapsed());
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "{:<28} {:>8} {:>12} {:>12}",
            format!(
                "{} KB {}",
                size / 1024,
                if marked { "marked" } else { "unmarked" }
            ),
            runs,
            fmt(at(0.5)),
            fmt(at(0.99))
        );
    }
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}
