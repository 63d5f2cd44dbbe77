//! S/MIME encryption cost: `smime::encrypt::encrypt` (CMS, DER) plus `base64_lines` (the body
//! the milter writes back) for a 10 KB and a 10 MB MIME entity, AES-256-GCM and AES-256-CBC,
//! for one and for three recipient certificates (throwaway RSA-2048 certificates made here,
//! keyUsage keyEncipherment). Prints the median time and throughput (MB/s of entity) per case.
//! Then the memory: a fresh child process (this binary with `--rss CIPHER`) encrypts one 20 MB
//! entity for one certificate and reports its peak RSS (VmHWM in /proc/self/status) as a
//! multiple of the 20 MB, the entity itself included.
//!
//! ```sh
//! cargo bench --bench encrypt
//! cargo bench --bench encrypt -- --iterations 20     # runs per case (default: by size)
//! ```

use cjsm_milter::smime::encrypt::{Cipher, base64_lines, encrypt};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

const MB: f64 = 1024.0 * 1024.0;

/// A self-signed RSA-2048 certificate for `address`, usable for encryption, as PEM.
fn certificate(address: &str) -> String {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", address).unwrap();
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(365).unwrap())
        .unwrap();
    builder
        .append_extension(BasicConstraints::new().build().unwrap())
        .unwrap();
    builder
        .append_extension(
            KeyUsage::new()
                .critical()
                .key_encipherment()
                .digital_signature()
                .build()
                .unwrap(),
        )
        .unwrap();
    let san = SubjectAlternativeName::new()
        .email(address)
        .build(&builder.x509v3_context(None, None))
        .unwrap();
    builder.append_extension(san).unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    String::from_utf8(builder.build().to_pem().unwrap()).unwrap()
}

/// A canonical (CRLF) MIME entity of about `size` bytes: the content headers and a
/// quoted-printable text body, as the milter encrypts it.
fn entity(size: usize) -> Vec<u8> {
    let mut e = b"Content-Type: text/plain; charset=utf-8\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        .to_vec();
    let line: &[u8] =
        b"The witness statement was taken on Tuesday and is attached for review by counsel.\r\n";
    while e.len() + line.len() <= size {
        e.extend_from_slice(line);
    }
    e.resize(size - 2, b'x');
    e.extend_from_slice(b"\r\n");
    e
}

fn cipher_name(cipher: Cipher) -> &'static str {
    match cipher {
        Cipher::Aes256Gcm => "aes-256-gcm",
        Cipher::Aes256Cbc => "aes-256-cbc",
    }
}

/// One message's work: the CMS structure and its base64 body.
fn encrypt_body(entity: &[u8], recipients: &[&str], cipher: Cipher) -> Vec<u8> {
    let der = encrypt(entity, recipients, cipher).unwrap();
    base64_lines(&der)
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: encrypt one 20 MB entity and report the peak RSS.
fn rss_child(cipher: Cipher) {
    const SIZE: usize = 20 << 20;
    let cert = certificate("expert@gmail.com");
    let before = status_kb("VmHWM:");
    let entity = entity(SIZE);
    let held = status_kb("VmRSS:");
    let body = encrypt_body(&entity, &[&cert], cipher);
    let peak = status_kb("VmHWM:");
    println!(
        "{:<12} {:>10} {:>14.1} {:>14.1} {:>14.1} {:>12.2}x {:>12.2}x",
        cipher_name(cipher),
        format!("{} MB", SIZE >> 20),
        before as f64 / 1024.0,
        held as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak as f64 * 1024.0 / SIZE as f64,
        (peak - before) as f64 * 1024.0 / SIZE as f64,
    );
    black_box(&body);
    assert!(body.len() > SIZE);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .skip_while(|a| *a != name)
            .nth(1)
            .map(String::as_str)
    };
    if let Some(cipher) = value("--rss") {
        rss_child(match cipher {
            "aes-256-cbc" => Cipher::Aes256Cbc,
            _ => Cipher::Aes256Gcm,
        });
        return;
    }
    let iterations: usize = value("--iterations")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);

    let certs: Vec<String> = ["expert@gmail.com", "counsel@example.org", "escrow@cjsm.net"]
        .iter()
        .map(|a| certificate(a))
        .collect();
    let certs: Vec<&str> = certs.iter().map(String::as_str).collect();

    println!(
        "{:<12} {:>8} {:>6} {:>6} {:>12} {:>12} {:>10}",
        "cipher", "entity", "certs", "runs", "median", "min", "MB/s"
    );
    for size in [10 << 10, 10 << 20] {
        let entity = entity(size);
        for cipher in [Cipher::Aes256Gcm, Cipher::Aes256Cbc] {
            for recipients in [1, 3] {
                let runs = if iterations > 0 {
                    iterations
                } else {
                    (200_000_000 / size).clamp(10, 2_000)
                };
                let mut times = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let started = Instant::now();
                    let body = encrypt_body(&entity, &certs[..recipients], cipher);
                    black_box(&body);
                    times.push(started.elapsed());
                }
                times.sort();
                let median = times[times.len() / 2];
                println!(
                    "{:<12} {:>8} {:>6} {:>6} {:>12} {:>12} {:>10.1}",
                    cipher_name(cipher),
                    if size >= 1 << 20 {
                        format!("{} MB", size >> 20)
                    } else {
                        format!("{} KB", size >> 10)
                    },
                    recipients,
                    runs,
                    fmt(median),
                    fmt(times[0]),
                    size as f64 / MB / median.as_secs_f64()
                );
            }
        }
    }

    println!();
    println!(
        "{:<12} {:>10} {:>14} {:>14} {:>14} {:>13} {:>13}",
        "cipher",
        "entity",
        "RSS before MB",
        "entity held",
        "peak (VmHWM)",
        "peak/20MB",
        "(peak-before)"
    );
    let me = std::env::current_exe().unwrap();
    for cipher in [Cipher::Aes256Gcm, Cipher::Aes256Cbc] {
        let status = Command::new(&me)
            .args(["--rss", cipher_name(cipher)])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}
