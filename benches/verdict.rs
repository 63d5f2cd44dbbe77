//! Verdict cost: the milter's end-of-message work (collect, classify, decide) for messages
//! of 2 KB to 1 MB. Run with `cargo bench --bench verdict`; prints the median and p99 per
//! message over many runs. `-- --only 10 KB` (or `1024 KB`, `qp-html`, …) runs only the rows
//! whose name contains the text; `-- --iterations N` fixes the runs per row. For instruction
//! counts that do not depend on machine noise:
//! `valgrind --tool=callgrind target/release/deps/verdict-* --iterations 200`, or
//! `perf stat -e instructions` where the machine has hardware counters.
//!
//! Shapes, at 10 KB and 1 MB: `alternative` (a text part and its HTML alternative, the
//! message of the earlier runs), `plain` (one text/plain part), `qp-html` (quoted-printable
//! text and HTML with soft line breaks and escapes), `attachments` (a short text and a base64
//! attachment), `rfc822` (a short text and an attached message with its own alternative).

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

/// The text lines of a body, repeated to `size` bytes.
fn fill(m: &mut String, size: usize, line: &str) {
    while m.len() + line.len() < size {
        m.push_str(line);
    }
}

const HEADERS: &str = "From: DC Jones <dc.jones@met.pnn.police.uk>\r\nTo: clerk@cps.gsi.gov.uk\r\n\
    Subject: RE: OFFICIAL-SENSITIVE: witness statements\r\n\
    Date: Fri, 27 Nov 2026 09:00:00 +0000\r\nMessage-ID: <a1@met.pnn.police.uk>\r\n\
    MIME-Version: 1.0\r\n";

/// One text/plain part, 7bit, marked on its last line.
fn plain(size: usize) -> Vec<u8> {
    let mut m = format!(
        "{HEADERS}Content-Type: text/plain; charset=utf-8\r\n\r\nOFFICIAL-SENSITIVE\r\n\r\n"
    );
    fill(
        &mut m,
        size - 40,
        "The witness statement was taken on Tuesday and is attached for review by counsel.\r\n",
    );
    m.push_str("\r\nOFFICIAL-SENSITIVE PERSONAL\r\n");
    m.into_bytes()
}

/// Quoted-printable text and HTML alternatives: soft line breaks, `=3D`, UTF-8 escapes.
fn qp_html(size: usize) -> Vec<u8> {
    let mut m = format!(
        "{HEADERS}Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\nOFFICIAL-SENSITIVE\r\n\r\n"
    );
    fill(
        &mut m,
        size / 3,
        "The witness=E2=80=99s statement was taken on Tuesday and is attached for revi=\r\new by counsel; =3D see the bundle.\r\n",
    );
    m.push_str(
        "OFFICIAL-SENSITIVE PERSONAL\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p style=3D\"margin:0\">=\r\nOFFICIAL-SENSITIVE</p>\r\n",
    );
    fill(
        &mut m,
        size - 120,
        "<div class=3D\"MsoNormal\"><span style=3D\"font-size:11pt;color:#1F497D\">The witn=\r\ness=E2=80=99s statement was taken on Tuesday.</span></div>\r\n",
    );
    m.push_str("<p>OFFICIAL-SENSITIVE PERSONAL</p></body></html>\r\n--alt--\r\n");
    m.into_bytes()
}

/// A short marked text and a base64 attachment making up the size.
fn attachments(size: usize) -> Vec<u8> {
    let mut m = format!(
        "{HEADERS}Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
         --mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         OFFICIAL-SENSITIVE\r\n\r\nPlease find the statement attached.\r\n\r\nDC Jones\r\n\
         --mix\r\nContent-Type: application/pdf; name=\"statement.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"statement.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    );
    fill(
        &mut m,
        size - 20,
        "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29k\r\n",
    );
    m.push_str("--mix--\r\n");
    m.into_bytes()
}

/// A short text and an attached message (text and HTML alternatives) making up the size.
fn rfc822(size: usize) -> Vec<u8> {
    let mut m = format!(
        "{HEADERS}Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
         --mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         OFFICIAL-SENSITIVE\r\n\r\nForwarding the original below.\r\n\
         --mix\r\nContent-Type: message/rfc822\r\n\r\n\
         From: a@b.example\r\nSubject: OFFICIAL: the original\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"in\"\r\n\r\n\
         --in\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOFFICIAL\r\n"
    );
    fill(
        &mut m,
        size / 2,
        "The witness statement was taken on Tuesday and is attached for review by counsel.\r\n",
    );
    m.push_str(
        "--in\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>OFFICIAL</p>\r\n",
    );
    fill(
        &mut m,
        size - 60,
        "<p>The witness statement was taken on <b>Tuesday</b>.</p>\r\n",
    );
    m.push_str("</body></html>\r\n--in--\r\n--mix--\r\n");
    m.into_bytes()
}

fn main() {
    let iterations: usize = std::env::args()
        .skip_while(|a| a != "--iterations")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let only: Option<String> = std::env::args().skip_while(|a| a != "--only").nth(1);
    let (_dir, engine, template) = common::engine_to_a_secure_recipient();
    println!(
        "{:<28} {:>8} {:>12} {:>12}  read as",
        "message", "runs", "median", "p99"
    );
    let mut rows: Vec<(String, Vec<u8>)> = [
        (2_048, true),
        (10_240, true),
        (10_240, false),
        (102_400, true),
        (1_048_576, true),
    ]
    .into_iter()
    .map(|(size, marked)| {
        let name = format!(
            "{} KB {}",
            size / 1024,
            if marked { "marked" } else { "unmarked" }
        );
        (name, message(size, marked))
    })
    .collect();
    type Shape = fn(usize) -> Vec<u8>;
    let shapes: [(&str, Shape); 4] = [
        ("plain", plain),
        ("qp-html", qp_html),
        ("attachments", attachments),
        ("rfc822", rfc822),
    ];
    for size in [10_240, 1_048_576] {
        for (shape, build) in shapes {
            rows.push((format!("{} KB {shape}", size / 1024), build(size)));
        }
    }
    for (name, raw) in rows {
        if only
            .as_ref()
            .is_some_and(|only| !name.contains(only.as_str()))
        {
            continue;
        }
        let size = raw.len();
        let runs = if iterations > 0 {
            iterations
        } else {
            (20_000_000 / size).clamp(50, 5_000)
        };
        let mut times = Vec::with_capacity(runs);
        let mut read_as = String::new();
        for _ in 0..runs {
            let started = Instant::now();
            let mut transaction = template.clone();
            feed(&mut transaction, &raw);
            let outcome = transaction.finish(&engine.rules, &engine.smime);
            black_box(&outcome.verdict);
            if read_as.is_empty() {
                let c = &outcome.classification;
                read_as = format!("{} ({})", engine.rules.vocab.level(c.level).name, c.source);
            }
            times.push(started.elapsed());
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "{:<28} {:>8} {:>12} {:>12}  {}",
            name,
            runs,
            fmt(at(0.5)),
            fmt(at(0.99)),
            read_as
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
