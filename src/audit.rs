//! The milter's side of the audit trail: verdicts are queued and written by one background
//! task, so a slow or absent store never delays an answer to the MTA. The queue is bounded;
//! when it is full, entries are dropped and the drop is logged (mail is never held for the
//! audit trail).

use crate::store::{AuditEvent, Directory};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tracing::warn;

const QUEUE: usize = 10_000;
/// Entries handed to the store at once, at most.
const BATCH: usize = 256;

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEvent>,
    dropped: Arc<AtomicU64>,
}

impl AuditSink {
    /// Starts the writer task for `store`.
    pub fn start(store: Arc<dyn Directory>) -> AuditSink {
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(QUEUE);
        tokio::spawn(async move {
            // What queued up while the last write ran goes in one write (at most BATCH).
            let mut events = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut events, BATCH).await > 0 {
                let count = events.len();
                if let Err(e) = store.append_audit_batch(std::mem::take(&mut events)).await {
                    warn!(error = %e, entries = count, "audit entries not written");
                }
            }
        });
        AuditSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an entry; never waits.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.try_send(event).is_err() {
            crate::metrics::metrics().audit_dropped.inc();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(dropped, "audit queue full: entries dropped");
            }
        }
    }
}
