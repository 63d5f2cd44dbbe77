//! Mutated corpus messages through the pipeline: random byte flips, cuts, duplications and
//! inserted marking fragments. Every one must get a verdict without a panic, and a message whose
//! scan hit a bound must never come out below the ceiling. Deterministic (fixed seed).

use cjsm_milter::check::feed;
use cjsm_milter::config::Config;
use cjsm_milter::engine::{Engine, compile};
use cjsm_milter::policy::{SessionFacts, Zone};
use cjsm_milter::store::SqliteStore;
use cjsm_milter::transaction::Transaction;
use std::sync::Arc;

/// xorshift64*: enough randomness for mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutations per corpus message.
const MUTATIONS: usize = 400;

const FRAGMENTS: &[&[u8]] = &[
    b"OFFICIAL-SENSITIVE",
    b"SECRET",
    b"[SEC=",
    b"]",
    b"=?UTF-8?B?",
    b"?=",
    b"\r\n",
    b"\r\n ",
    b"--",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\n",
    b"\xff\xfe",
    b"\x00",
    b"MSIP_Label_",
    b"marking=\"",
    b":",
    b"\xe2\x80\x93",
    b"<p>",
];

fn mutate(rng: &mut Rng, message: &[u8]) -> Vec<u8> {
    let mut m = message.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(m.len() + 1);
        match rng.below(5) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            1 => m.truncate(at),
            2 => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())];
                m.splice(at..at, fragment.iter().copied());
            }
            3 if !m.is_empty() => {
                let end = (at + rng.below(200)).min(m.len());
                let copy = m[at.min(end)..end].to_vec();
                m.splice(at..at, copy);
            }
            _ => {
                let end = (at + rng.below(50)).min(m.len());
                m.drain(at.min(end)..end);
            }
        }
    }
    m
}

#[test]
fn mutated_corpus_messages_always_get_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(
        compile(Config::default()).unwrap(),
        Arc::new(SqliteStore::open(dir.path()).unwrap()),
    );
    // Over TLS, as the secure networks' servers send, to one secure-network recipient.
    let session = SessionFacts {
        tls_version: Some("TLSv1.3".into()),
        ..SessionFacts::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let template = runtime.block_on(async {
        let lookups = engine.lookups();
        let (mut transaction, _) = Transaction::mail(
            &engine.rules,
            &lookups,
            "<dc.jones@met.pnn.police.uk>",
            None,
            session,
        )
        .await
        .unwrap();
        transaction
            .rcpt(&engine.rules, &lookups, "<clerk@cps.gsi.gov.uk>", None)
            .await
            .unwrap();
        transaction
    });
    assert_eq!(template.recipients[0].zone, Zone::SecureNetwork);
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus is there");
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let ceiling = engine.rules.vocab.rank(engine.rules.vocab.ceiling);
    let mut runs = 0;
    for file in &files {
        let original = std::fs::read(file).unwrap();
        for _ in 0..MUTATIONS {
            let message = mutate(&mut rng, &original);
            let mut transaction = template.clone();
            feed(&mut transaction, &message);
            let outcome = transaction.finish(&engine.rules, &engine.smime);
            let c = &outcome.classification;
            if !c.limits_exceeded.is_empty() {
                assert!(
                    engine.rules.vocab.rank(c.level) >= ceiling,
                    "{}: {c:?}",
                    file.display()
                );
            }
            if c.found.is_empty() && c.limits_exceeded.is_empty() {
                assert_eq!(c.source, "default");
            }
            runs += 1;
        }
    }
    assert_eq!(runs, files.len() * MUTATIONS);
}
