//! The Secure eMail Directory: who is a user of the hub, and in what state.
//!
//! A trait with the embedded file store as the default backend; the Redis backend (shared
//! by every milter instance) implements the same trait.

mod cache;
mod file;
mod instrumented;
mod model;
mod redis;

pub use cache::CachedDirectory;
pub use file::{Access, FileStore};
pub use instrumented::Instrumented;
pub use model::{
    AuditEvent, Certificate, ClientCertificate, ConnectionType, Lookup, OrgState, Organisation,
    User, UserState,
};
pub use redis::{Keys, RedisStore};

use crate::config::{Backend, StoreConfig};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("directory store unavailable: {0}")]
    Unavailable(String),
    #[error("directory store {path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("{0}")]
    Refused(String),
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What every backend answers: plain reads and writes. The rules (who may apply, when an
/// organisation may be switched on) live in `crate::directory`, above the backends.
/// Addresses are lower case; ids are as given.
pub trait Directory: Send + Sync {
    /// The user with this secure address and their organisation, read together.
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup>;
    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>>;
    /// Every user, ordered by address.
    fn users(&self) -> StoreFuture<'_, Vec<User>>;
    /// Inserts or replaces users, all of them or none.
    fn put_users(&self, users: Vec<User>) -> StoreFuture<'_, ()>;
    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>>;
    /// Every organisation, ordered by id.
    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>>;
    /// Inserts or replaces an organisation.
    fn put_org(&self, org: Organisation) -> StoreFuture<'_, ()>;
    /// Writes users only if each is still at the revision read (`None`: still absent), all
    /// of them or none; each is stored with the next revision. `false` when something changed
    /// in between: the caller reads again and retries.
    fn swap_users(&self, changes: Vec<(Option<u64>, User)>) -> StoreFuture<'_, bool>;
    /// Writes an organisation only if it is still at the revision read (`None`: still absent),
    /// claiming `domains` for it; refused, naming the holder, when another organisation holds
    /// one of them.
    fn swap_org(
        &self,
        expected: Option<u64>,
        org: Organisation,
        domains: Vec<String>,
    ) -> StoreFuture<'_, bool>;
    /// Registers (or replaces) the S/MIME certificate of `cert.address`.
    fn put_certificate(&self, cert: Certificate) -> StoreFuture<'_, ()>;
    /// Removes an address's certificate; `false` when it had none.
    fn remove_certificate<'a>(&'a self, address: &'a str) -> StoreFuture<'a, bool>;
    /// Every registered certificate, ordered by address.
    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>>;
    /// Appends to the audit trail (bounded: the oldest entries go).
    fn append_audit(&self, event: AuditEvent) -> StoreFuture<'_, ()>;
    /// Appends several entries in order. The milter's audit writer hands over what queued up
    /// while it was writing; a backend that can write them at once (the file store: one
    /// write, not one worker-thread hop and one open per entry) overrides this.
    fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            for event in events {
                self.append_audit(event).await?;
            }
            Ok(())
        })
    }
    /// The newest audit events, newest first, at most `limit`.
    fn audit(&self, limit: usize) -> StoreFuture<'_, Vec<AuditEvent>>;
    /// How many users and organisations there are (cheap: for metrics and readiness).
    fn size(&self) -> StoreFuture<'_, (usize, usize)>;
    /// The directory has been written at least once. An empty Redis (flushed, or restarted
    /// without its data) answers `false`: an outage, not an empty directory, for those who
    /// would otherwise read "no such organisation" (the socketmap).
    fn written(&self) -> StoreFuture<'_, bool>;
}

/// Opens the configured backend. The milter's Redis store reads through a cache that
/// follows the directory's changes; the admin commands and `check` read Redis directly.
pub async fn open(config: &StoreConfig, access: Access) -> Result<Arc<dyn Directory>, StoreError> {
    match config.backend {
        Backend::File => Ok(Arc::new(open_file(config, access)?)),
        Backend::Redis => Ok(Arc::new(connect_redis(config).await?)),
    }
}

/// The store as the milter uses it, measured as the milter sees it (cache hits included):
/// Redis behind the invalidated cache.
pub async fn open_for_milter(config: &StoreConfig) -> Result<Arc<dyn Directory>, StoreError> {
    match config.backend {
        Backend::File => Ok(Arc::new(Instrumented::new(open_file(
            config,
            Access::ReadWrite,
        )?))),
        Backend::Redis => {
            let store = connect_redis(config).await?;
            let ttl = config.cache_ttl;
            let cached = CachedDirectory::new(Arc::new(store), ttl);
            Ok(Arc::new(Instrumented::new(cached)))
        }
    }
}

fn open_file(config: &StoreConfig, access: Access) -> Result<FileStore, StoreError> {
    FileStore::open_with(&config.path, access, config.audit_retention)
}

async fn connect_redis(config: &StoreConfig) -> Result<RedisStore, StoreError> {
    let url = config
        .url
        .as_deref()
        .ok_or_else(|| StoreError::Unavailable("[store] url is not set".into()))?;
    RedisStore::connect_with_ca(
        url,
        &config.key_prefix,
        config.audit_retention,
        config.tls_ca_file.as_deref(),
    )
    .await
}

/// Lower-cases an address and strips the angle brackets of an SMTP path.
pub fn normalize_address(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        // A root-anchored domain (`a@firm.co.uk.`) is the same domain: the MTA drops the dot
        // when it rewrites the address, so it must not dodge a lookup here.
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
