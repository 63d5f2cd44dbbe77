//! The Secure eMail Directory's storage: the embedded store (SQLite, the default) and the Redis
//! store shared by every milter instance, behind three traits — reading
//! ([`DirectoryRead`]), changing ([`DirectoryWrite`]) and the audit trail ([`AuditTrail`]).
//! The milter only reads and appends to the audit trail; its reads go through the
//! measuring wrapper and, for Redis, the cache, which wrap the read side alone.
//!
//! The data itself (organisations, users, certificates, audit events) is
//! [`crate::directory::model`]; the rules for changing it are [`crate::directory`].

mod cache;
mod instrumented;
pub mod migrate;
mod records;
mod redis;
mod sqlite;

pub use cache::CachedDirectory;
pub use instrumented::Instrumented;
pub(crate) use instrumented::append_audit_measured;
pub use records::{Record, Records};
pub use redis::{Keys, RedisCredentials, RedisStore, redact_url};
pub(crate) use redis::{SENTINEL_FORM, sentinel_parts};
pub use sqlite::{Access, DATABASE_FILE, SqliteStore};

use crate::config::{Backend, StoreConfig};
use crate::directory::model::{AuditEvent, Certificate, Lookup, Organisation, User};
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

/// Reading the directory: what the milter, the socketmap and the admin commands ask.
/// Addresses are lower case; ids are as given.
pub trait DirectoryRead: Send + Sync {
    /// The user with this secure address and their organisation, read together.
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup>;
    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>>;
    /// Every user, ordered by address.
    fn users(&self) -> StoreFuture<'_, Vec<User>>;
    /// At most `limit` users whose address sorts after `after` (from the first when `None`),
    /// ordered by address: a walk over the whole directory in bounded memory (search, export).
    /// This default reads every user; a backend at hub scale answers from an ordered index.
    fn users_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<User>> {
        Box::pin(async move {
            let users = self.users().await?;
            Ok(users
                .into_iter()
                .filter(|u| after.is_none_or(|a| u.address.as_str() > a))
                .take(limit)
                .collect())
        })
    }
    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>>;
    /// Every organisation, ordered by id.
    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>>;
    /// The organisation whose `domains` lists `domain` (any case, a final dot ignored), from
    /// an index rather than a walk over every organisation. The secure forms of a server
    /// organisation's domains (`firm.co.uk.cjsm.net`) are not its `domains`: they answer
    /// `None` here. Domains are held by one organisation at a time (`org apply` claims them);
    /// should two list one anyway, either may answer.
    fn org_by_domain<'a>(&'a self, domain: &'a str) -> StoreFuture<'a, Option<Organisation>>;
    /// Every organisation whose registered `mail_server` is `server` as stored (a next hop
    /// such as `[192.0.2.25]:25`; several organisations may share a provider's), ordered by
    /// id: the socketmap's TLS policy for an organisation's own server. This default reads
    /// every organisation; a backend at hub scale answers from an index.
    fn orgs_by_mail_server<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Vec<Organisation>> {
        Box::pin(async move { Ok(with_mail_server(self.orgs().await?, server)) })
    }
    /// Every registered certificate, ordered by address.
    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>>;
    /// How many users and organisations there are (cheap: for metrics and readiness).
    fn size(&self) -> StoreFuture<'_, (usize, usize)>;
    /// The directory has been written at least once. An empty Redis (flushed, or restarted
    /// without its data) answers `false`: an outage, not an empty directory, for those who
    /// would otherwise read "no such organisation" (the socketmap).
    fn written(&self) -> StoreFuture<'_, bool>;
}

/// Of `orgs`, those whose registered `mail_server` is `server`, ordered by id: the answer of
/// `orgs_by_mail_server` found by reading every organisation.
pub(crate) fn with_mail_server(orgs: Vec<Organisation>, server: &str) -> Vec<Organisation> {
    let mut orgs: Vec<Organisation> = orgs
        .into_iter()
        .filter(|o| o.mail_server.as_deref() == Some(server))
        .collect();
    orgs.sort_by(|a, b| a.id.cmp(&b.id));
    orgs
}

/// Changing the directory: plain writes and compare-and-swap. The rules (who may apply, when
/// an organisation may be switched on) live in `crate::directory`, above the backends.
pub trait DirectoryWrite: Send + Sync {
    /// Inserts or replaces users, all of them or none.
    fn put_users(&self, users: Vec<User>) -> StoreFuture<'_, ()>;
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
}

/// The audit trail: verdicts and admin changes, bounded (the oldest entries go).
pub trait AuditTrail: Send + Sync {
    fn append_audit(&self, event: AuditEvent) -> StoreFuture<'_, ()>;
    /// Appends several entries in order. The milter's audit writer hands over what queued up
    /// while it was writing; a backend that can write them at once (the embedded store:
    /// one transaction and one sync, not one per entry) overrides this.
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
}

/// A whole backend: the three sides on one store (the embedded store, Redis), with the
/// website's records, as the admin commands and the website use it.
pub trait Directory: DirectoryRead + DirectoryWrite + AuditTrail + Records {}

impl<T: DirectoryRead + DirectoryWrite + AuditTrail + Records + ?Sized> Directory for T {}

/// Opens the configured backend, read directly (the admin commands and `check`).
pub async fn open(config: &StoreConfig, access: Access) -> Result<Arc<dyn Directory>, StoreError> {
    match config.backend {
        Backend::Sqlite => Ok(Arc::new(open_sqlite(config, access)?)),
        Backend::Redis => Ok(Arc::new(
            connect_redis(config, &redis_credentials(config)?).await?,
        )),
    }
}

/// Opens Redis with credentials read earlier (by [`milter_credentials`], while still root):
/// the website, which also drops root before opening its store.
pub async fn open_with_credentials(
    config: &StoreConfig,
    credentials: &RedisCredentials,
) -> Result<Arc<dyn Directory>, StoreError> {
    Ok(Arc::new(connect_redis(config, credentials).await?))
}

/// The store as the milter uses it: it reads and appends to the audit trail, never writes.
#[derive(Clone)]
pub struct MilterStore {
    /// Reads, measured as the milter sees them (cache hits included): Redis behind the
    /// invalidated cache.
    pub read: Arc<dyn DirectoryRead>,
    /// The backend's audit trail, for the milter's audit writer (which measures its writes).
    pub audit: Arc<dyn AuditTrail>,
}

/// The login and TLS material the milter's store needs, read from their files now: the
/// daemon reads them before it drops root, since they are usually readable by root (and the
/// service group) only. None for the embedded store.
pub fn milter_credentials(config: &StoreConfig) -> Result<Option<RedisCredentials>, StoreError> {
    match config.backend {
        Backend::Sqlite => Ok(None),
        Backend::Redis => redis_credentials(config).map(Some),
    }
}

/// Opens the store for the milter, with the credentials read by [`milter_credentials`].
pub async fn open_for_milter(
    config: &StoreConfig,
    credentials: Option<&RedisCredentials>,
) -> Result<MilterStore, StoreError> {
    match config.backend {
        Backend::Sqlite => {
            // No cache: a lookup is a few indexed reads on a kept connection (microseconds),
            // and reading the database itself sees an administrator's change at once.
            let store = open_sqlite(config, Access::ReadWrite)?;
            store.open_kept_connections()?;
            Ok(MilterStore {
                read: Arc::new(Instrumented::new(store.clone())),
                audit: Arc::new(store),
            })
        }
        Backend::Redis => {
            let credentials = match credentials {
                Some(credentials) => credentials,
                None => &redis_credentials(config)?,
            };
            let store = Arc::new(connect_redis(config, credentials).await?);
            let ttl = config.cache_ttl;
            let cached = CachedDirectory::new(store.clone(), ttl);
            Ok(MilterStore {
                read: Arc::new(Instrumented::new(cached)),
                audit: store,
            })
        }
    }
}

fn open_sqlite(config: &StoreConfig, access: Access) -> Result<SqliteStore, StoreError> {
    SqliteStore::open_with(&config.path, access, config.audit_retention)
}

async fn connect_redis(
    config: &StoreConfig,
    credentials: &RedisCredentials,
) -> Result<RedisStore, StoreError> {
    let url = config
        .url
        .as_deref()
        .ok_or_else(|| StoreError::Unavailable("[store] url is not set".into()))?;
    RedisStore::connect_with(url, &config.key_prefix, config.audit_retention, credentials).await
}

/// The largest password, certificate or key file read: real ones are a few kilobytes.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The login and TLS material `[store]` names, read from their files: each a bounded regular
/// file, the password and the key also refused when open to every user. An error names the
/// setting and the file, never what is in it.
pub fn redis_credentials(config: &StoreConfig) -> Result<RedisCredentials, StoreError> {
    use crate::config::{read_regular_file, read_secret_file};
    let failed = |key: &str, path: &std::path::Path, e: std::io::Error| {
        StoreError::Unavailable(format!("[store] {key} {}: {e}", path.display()))
    };
    let mut credentials = RedisCredentials {
        username: config.username.clone(),
        ..RedisCredentials::default()
    };
    if let Some(path) = &config.password_file {
        let bytes = read_secret_file(path, MAX_SECRET_BYTES)
            .map_err(|e| failed("password_file", path, e))?;
        credentials.password = Some(password_from(bytes).map_err(|problem| {
            StoreError::Unavailable(format!(
                "[store] password_file {}: {problem}",
                path.display()
            ))
        })?);
        credentials.password_file = Some(path.clone());
    }
    if let Some(path) = &config.tls_ca_file {
        credentials.ca = Some(
            read_regular_file(path, MAX_SECRET_BYTES)
                .map_err(|e| failed("tls_ca_file", path, e))?,
        );
    }
    if let (Some(cert_path), Some(key_path)) = (&config.tls_cert_file, &config.tls_key_file) {
        let cert = read_regular_file(cert_path, MAX_SECRET_BYTES)
            .map_err(|e| failed("tls_cert_file", cert_path, e))?;
        let key = read_secret_file(key_path, MAX_SECRET_BYTES)
            .map_err(|e| failed("tls_key_file", key_path, e))?;
        credentials.client_cert = Some((cert, key));
        credentials.client_cert_file = Some(cert_path.clone());
    }
    Ok(credentials)
}

/// The password a file holds: its one line, without the line end. What is wrong is said
/// without quoting any of it.
fn password_from(bytes: Vec<u8>) -> Result<String, &'static str> {
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text")?;
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err("empty: the file must hold the password");
    }
    if password.contains(['\r', '\n']) {
        return Err("more than one line: the file must hold the password alone");
    }
    Ok(password.to_string())
}

/// A domain as the organisation-by-domain index keys it: trimmed, without a final (or
/// leading) dot, lower case.
fn domain_key(domain: &str) -> String {
    crate::address::Domain::new(domain)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_holds_one_line() {
        assert_eq!(password_from(b"s3cret\n".to_vec()).unwrap(), "s3cret");
        assert_eq!(password_from(b"s3cret\r\n".to_vec()).unwrap(), "s3cret");
        assert_eq!(password_from(b"s3cret".to_vec()).unwrap(), "s3cret");
        assert_eq!(password_from(b" sp ace ".to_vec()).unwrap(), " sp ace ");
        for bad in [
            &b""[..],
            b"\n",
            b"s3cret\nmore\n",
            b"s3\rcret",
            b"\xffs3cret",
        ] {
            let problem = password_from(bad.to_vec()).unwrap_err();
            assert!(!problem.contains("s3"), "{problem}");
        }
    }

    /// The credentials read from the files `[store]` names; a missing file is named with its
    /// setting; the password is never shown by `Debug`.
    #[test]
    fn credentials_are_read_from_their_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("redis.pass");
        std::fs::write(&password, "hunter2\n").unwrap();
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut config = StoreConfig {
            backend: Backend::Redis,
            url: Some("rediss://h/".into()),
            username: Some("cjsm-milter".into()),
            password_file: Some(password.clone()),
            ..StoreConfig::default()
        };
        let credentials = redis_credentials(&config).unwrap();
        assert_eq!(credentials.password.as_deref(), Some("hunter2"));
        assert_eq!(credentials.username.as_deref(), Some("cjsm-milter"));
        let shown = format!("{credentials:?} {config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis.pass"), "{shown}");

        config.tls_key_file = Some(dir.path().join("missing.key"));
        config.tls_cert_file = Some(password.clone());
        let err = redis_credentials(&config).unwrap_err().to_string();
        assert!(
            err.contains("tls_key_file") && err.contains("missing.key"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}
