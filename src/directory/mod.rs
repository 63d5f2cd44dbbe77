//! The Secure eMail Directory, above the store backends: its data ([`model`]), the rules every
//! way in shares ([`rules`]), the administrator's operations on organisations ([`org`]), users
//! ([`user`]) and certificates ([`cert`]), the CSV bulk load ([`csv`]) and the exports
//! ([`export`]). Every change is written to the audit trail.

pub mod cert;
pub mod csv;
pub mod export;
pub mod model;
pub mod org;
pub mod rules;
pub mod user;

use self::csv::ImportError;
use crate::clock::now_unix_ms;
use crate::store::{Directory, DirectoryRead, StoreError};
use futures_util::{StreamExt as _, TryStreamExt as _};
use model::{AdminEvent, AuditEvent, Organisation, User};
use std::collections::HashMap;

/// How many users a walk over the directory (search, export) reads at a time.
pub(crate) const PAGE: usize = 1000;

/// Reads the organisations of `users` not yet in `known`, a few at a time, and keeps what
/// `keep` takes of each (`None`: no such organisation): a walk over the users learns each
/// organisation once, with one entry per organisation, never one per user, and without
/// reading every organisation at once.
pub(crate) async fn learn_orgs<T>(
    store: &dyn DirectoryRead,
    users: &[User],
    known: &mut HashMap<String, T>,
    keep: impl Fn(Option<Organisation>) -> T,
) -> Result<(), StoreError> {
    let mut ids: Vec<&str> = users
        .iter()
        .map(|u| u.org.as_str())
        .filter(|id| !known.contains_key(*id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // The reads are made in a loop, not mapped by a closure over the borrowed ids: the
    // compiler cannot prove a future holding that closure `Send` for every lifetime
    // (rust-lang/rust#110338), and a website handler calling `search` must be `Send`.
    let mut reads = Vec::with_capacity(ids.len());
    for id in &ids {
        reads.push(store.org(id));
    }
    let orgs: Vec<Option<Organisation>> = futures_util::stream::iter(reads)
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
    for (id, org) in ids.into_iter().zip(orgs) {
        known.insert(id.to_string(), keep(org));
    }
    Ok(())
}

/// How many reads of one operation are in flight at once (a bulk load's users, a walk's
/// organisations): enough to hide Redis's round trips.
pub(crate) const READS_IN_FLIGHT: usize = 64;

/// A refusal (exit 2 with this one line) or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Import(#[from] ImportError),
}

fn refused<T>(text: impl Into<String>) -> Result<T, AdminError> {
    Err(AdminError::Refused(text.into()))
}

/// How often a change is retried when the record changed between read and write.
const ATTEMPTS: usize = 8;

/// The administrator's operations on one store; they are written by subject in [`org`],
/// [`user`], [`cert`] and [`csv`].
pub struct Admin<'a> {
    store: &'a dyn Directory,
    secure_suffix: &'a str,
    /// Who runs the command, for the audit trail.
    actor: Option<String>,
    /// From which client address, for a change made on the website.
    client: Option<String>,
}

impl<'a> Admin<'a> {
    pub fn new(store: &'a dyn Directory, secure_suffix: &'a str, actor: Option<String>) -> Self {
        Admin {
            store,
            secure_suffix,
            actor,
            client: None,
        }
    }

    /// The same operations, audited as made from `client` (the website's visitor's address).
    pub fn from_client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }

    /// The store the operations change.
    pub fn store(&self) -> &'a dyn Directory {
        self.store
    }

    /// Several audit entries (action, target, reason) in order, in one append: a bulk load's
    /// rows.
    async fn audit_batch(&self, entries: Vec<(&str, String, String)>) -> Result<(), AdminError> {
        let time_ms = now_unix_ms();
        let events = entries
            .into_iter()
            .map(|(action, target, reason)| {
                AuditEvent::Admin(AdminEvent {
                    time_ms,
                    action: action.into(),
                    reason,
                    actor: self.actor.clone(),
                    client: self.client.clone(),
                    target: Some(target),
                })
            })
            .collect();
        self.store.append_audit_batch(events).await?;
        Ok(())
    }

    pub async fn audit(
        &self,
        action: &str,
        target: &str,
        reason: String,
    ) -> Result<(), AdminError> {
        self.store
            .append_audit(AuditEvent::Admin(AdminEvent {
                time_ms: now_unix_ms(),
                action: action.into(),
                reason,
                actor: self.actor.clone(),
                client: self.client.clone(),
                target: Some(target.into()),
            }))
            .await?;
        Ok(())
    }
}
