//! What the verdict benchmarks share: an engine on the default config with an empty file
//! store, and one police sender over TLS to one secure-network recipient.

use cjsm_milter::config::Config;
use cjsm_milter::engine::{Engine, compile};
use cjsm_milter::pipeline::Envelope;
use cjsm_milter::policy::{DirectoryAnswer, Recipient, SessionFacts, Zone};
use cjsm_milter::store::FileStore;
use std::sync::Arc;

/// The engine (its store in the returned directory, kept alive with it), the recipients and
/// the envelope.
pub fn engine_to_a_secure_recipient() -> (tempfile::TempDir, Engine, [Recipient; 1], Envelope) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    let engine = Engine::new(compile(Config::default()).unwrap(), store);
    let recipients = [Recipient {
        address: "clerk@cps.gsi.gov.uk".into(),
        zone: Zone::SecureNetwork,
        directory: DirectoryAnswer::NotAsked,
        deliver_to: None,
        as_received: "<clerk@cps.gsi.gov.uk>".into(),
        certificate: None,
        certificate_pem: None,
    }];
    // Over TLS, as the secure networks' servers send.
    let envelope = Envelope {
        sender: "dc.jones@met.pnn.police.uk".into(),
        sender_translation: None,
        sender_trust: "none",
        session: SessionFacts {
            tls_version: Some("TLSv1.3".into()),
            ..SessionFacts::default()
        },
    };
    (dir, engine, recipients, envelope)
}
