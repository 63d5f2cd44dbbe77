//! What the verdict benchmarks share: an engine on the default config with an empty file
//! store, and a transaction from one police sender over TLS to one secure-network recipient,
//! ready for its message.

use cjsm_milter::config::Config;
use cjsm_milter::engine::{Engine, compile};
use cjsm_milter::policy::SessionFacts;
use cjsm_milter::store::SqliteStore;
use cjsm_milter::transaction::Transaction;
use std::sync::Arc;

/// The engine (its store in the returned directory, kept alive with it) and the transaction,
/// through MAIL and RCPT: clone it for each message.
pub fn engine_to_a_secure_recipient() -> (tempfile::TempDir, Engine, Transaction) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let engine = Engine::new(compile(Config::default()).unwrap(), store);
    // Over TLS, as the secure networks' servers send.
    let session = SessionFacts {
        tls_version: Some("TLSv1.3".into()),
        ..SessionFacts::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let transaction = runtime.block_on(async {
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
    assert_eq!(transaction.recipients.len(), 1, "the recipient is kept");
    (dir, engine, transaction)
}
