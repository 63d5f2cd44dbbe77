//! The milter's side of the audit trail: verdicts are queued and written by one background
//! task, so a slow or absent store never delays an answer to the MTA. The queue is bounded;
//! when it is full, entries are dropped and the drop is logged (mail is never held for the
//! audit trail).

use crate::directory::model::AuditEvent;
use crate::store::{AuditTrail, append_audit_measured};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tracing::warn;

const QUEUE: usize = 10_000;
/// Entries handed to the store at once, at most.
const BATCH: usize = 256;
/// How long the writer waits for more entries after the first: entries reach the store at
/// most this much later.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEvent>,
    dropped: Arc<AtomicU64>,
    /// Entries queued and not yet written (or given up on).
    pending: Arc<AtomicU64>,
}

impl AuditSink {
    /// Starts the writer task for `store`.
    pub fn start(store: Arc<dyn AuditTrail>) -> AuditSink {
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(QUEUE);
        let pending = Arc::new(AtomicU64::new(0));
        let written = pending.clone();
        tokio::spawn(async move {
            // Entries are gathered for a moment and written together (at most BATCH at once):
            // a write per message would cost a hand-off to a blocking thread per message.
            let mut events = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut events, BATCH).await > 0 {
                if events.len() < BATCH {
                    tokio::time::sleep(GATHER).await;
                    while events.len() < BATCH {
                        let Ok(event) = rx.try_recv() else { break };
                        events.push(event);
                    }
                }
                let count = events.len();
                if let Err(e) =
                    append_audit_measured(store.as_ref(), std::mem::take(&mut events)).await
                {
                    warn!(error = %e, entries = count, "audit entries not written");
                }
                written.fetch_sub(count as u64, Ordering::AcqRel);
            }
        });
        AuditSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            pending,
        }
    }

    /// Queues an entry; never waits.
    pub fn record(&self, event: AuditEvent) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.try_send(event).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            crate::metrics::metrics().audit_dropped.inc();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(dropped, "audit queue full: entries dropped");
            }
        }
    }

    /// At shutdown: waits (at most `limit`) until every queued entry has been written.
    pub async fn drain(&self, limit: std::time::Duration) {
        let started = std::time::Instant::now();
        while self.pending.load(Ordering::Acquire) > 0 && started.elapsed() < limit {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
