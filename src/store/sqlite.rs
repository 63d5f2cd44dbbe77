//! The embedded store: a SQLite database (`directory.sqlite3`) in the store directory, in WAL
//! mode, opened at once by the daemon, every milter and the admin commands.
//!
//! - **Tables with real columns and indexes**: organisations by id, the organisation-by-domain
//!   index (`org_domains`: every domain an organisation lists), the domain claims
//!   (`domain_claims`: one holder per domain, taken by `swap_org` in its transaction), users by
//!   address (the primary key is the ordered index `users_page` walks; a second index by
//!   organisation), certificates by address, the audit trail (a sequence, the oldest deleted
//!   past the retention) and `meta` (schema version, the change counter).
//! - **Transactions**: every write is one `BEGIN IMMEDIATE` transaction (the write lock taken
//!   up front, so two writers queue on `busy_timeout` instead of failing on an upgrade);
//!   compare-and-swap reads the revisions and writes inside it.
//! - **Durability**: `synchronous = FULL`. In WAL mode NORMAL would skip the WAL's sync at
//!   commit and could lose the last changes at a power loss; an administrator's suspension must
//!   not come back undone, and a verdict's audit entry is as precious, so every commit is
//!   synced (one fsync, a few milliseconds: far within the 50 ms a change may take).
//! - **Readers see a change at once**: a read is its own read transaction, so a milter's next
//!   lookup after a commit sees it; nothing is cached. The milter's point reads (the recipient
//!   lookup, the organisation by domain) run inline on the caller's thread — a kept connection,
//!   a prepared statement, tens of microseconds — not on the blocking pool; scans and writes run
//!   on the blocking pool. For whoever does cache (a compiled table), [`SqliteStore::changes`]
//!   answers "did anything change?": a counter row bumped by every directory write. A counter
//!   rather than `PRAGMA data_version`: that one also moves on every audit append (a verdict per
//!   message), so it would say "changed" all day, and it is per connection, not comparable
//!   between the connections of a pool.
//! - **Fail closed**: the database is never created over a file that exists (a 0-byte or
//!   garbage file is `Corrupt`, not an empty directory), and a database that has gone after it
//!   was written is an outage: a marker file written with it says the store was initialised,
//!   so a restart does not start on an empty directory either. A database replaced by a restore
//!   (another inode) is reopened.
//! - **Ownership**: the database is created 0640 and owned by the store directory's owner and
//!   group even when root runs an admin command; SQLite (running as root) gives its `-wal` and
//!   `-shm` files the owner and mode of the database, so the milter's account can open them.

use super::{
    AuditTrail, DirectoryRead, DirectoryWrite, Record, Records, StoreError, StoreFuture, domain_key,
};
use crate::address::normalize_address;
use crate::directory::model::{
    AuditEvent, Certificate, ClientCertificate, Lookup, Organisation, User,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The database, in the store directory.
pub const DATABASE_FILE: &str = "directory.sqlite3";
/// A database being built (a fresh install, a migration), renamed over [`DATABASE_FILE`]
/// once complete: the database is never seen half made.
pub(crate) const NEW_FILE: &str = "directory.sqlite3.new";
/// Written with the database: the store was initialised, so a directory without the database
/// is a lost database (an outage), not a fresh install.
pub(crate) const MARKER_FILE: &str = "store-initialised";
/// The embedded store before SQLite: `cjsm-milter directory migrate` reads it.
pub(crate) const OLD_FILE: &str = "directory.json";
/// The schema this version writes and reads.
const SCHEMA_VERSION: &str = "1";

/// How long a writer waits for another process's write transaction (an import of a few
/// thousand rows is well under a second).
const WRITE_BUSY: Duration = Duration::from_secs(10);
/// How long a reader waits: in WAL mode only the recovery after a crash makes it wait, and the
/// milter's inline lookup must not hold a runtime thread for long.
const READ_BUSY: Duration = Duration::from_millis(250);
/// Reader connections kept for reuse: one per thread that reads inline (the runtime's
/// workers, one per core) and two for the scans on the blocking pool. More readers at once
/// open connections of their own, closed after use.
fn readers_kept() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 2
}

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE organisations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domains TEXT NOT NULL,           -- JSON array, as listed
    connection TEXT NOT NULL,
    state TEXT NOT NULL,
    terms_signed INTEGER,
    admins TEXT NOT NULL,            -- JSON array
    cert_fingerprint TEXT,
    cert_subject TEXT,
    cert_issuer TEXT,
    mail_server TEXT,
    approved INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
-- The socketmap's TLS policy for an organisation's own next hop (orgs_by_mail_server).
CREATE INDEX organisations_by_mail_server ON organisations(mail_server);
-- Every domain an organisation lists, as domain_key writes it: org_by_domain.
CREATE TABLE org_domains (
    domain TEXT NOT NULL,
    org TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    PRIMARY KEY (domain, org)
) WITHOUT ROWID;
CREATE INDEX org_domains_by_org ON org_domains(org);
-- Claimed domain -> the one organisation holding it (swap_org); the lookup of an address no
-- user has.
CREATE TABLE domain_claims (domain TEXT PRIMARY KEY, org TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE users (
    address TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    town TEXT NOT NULL,
    business_type TEXT NOT NULL,
    state TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    smime_certificate TEXT,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX users_by_org ON users(org);
CREATE TABLE certificates (
    address TEXT PRIMARY KEY,
    pem TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    subject TEXT NOT NULL,
    issuer TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    added INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    event TEXT NOT NULL              -- the whole entry, JSON
);
";

/// The website's records ([`Records`]): made with the database, and on opening one made
/// before the website existed (the same schema version: a table added, nothing changed).
const RECORDS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    revision INTEGER NOT NULL,
    expires INTEGER NOT NULL         -- seconds since the epoch; 0: never
) ;
CREATE UNIQUE INDEX IF NOT EXISTS records_by_key ON records(kind, key);
CREATE INDEX IF NOT EXISTS records_by_expiry ON records(expires) WHERE expires > 0;
";

/// How the store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The milter and the admin commands: the database is created on first use.
    ReadWrite,
    /// `check`, `audit`: nothing is created; a store that does not exist is an empty directory.
    ReadOnly,
}

/// Identity of the database file the kept connections have open: a file restored under the
/// same name is another inode, and the connections are opened again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
}

/// The database file's state as last checked: whenever it differs (the main file changes only
/// at a checkpoint in WAL mode, so rarely), its header is checked again before SQLite reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Checked {
    stamp: Stamp,
    len: u64,
    modified: (i64, i64),
}

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    access: Access,
    /// Read-only on a store that does not exist: every read answers empty.
    absent: bool,
    audit_retention: usize,
    readers: Mutex<(Option<Stamp>, Vec<Connection>)>,
    /// How many reader connections are kept ([`readers_kept`]).
    readers_kept: usize,
    checked: Mutex<Option<Checked>>,
    writer: Mutex<Option<(Stamp, Connection)>>,
}

fn unavailable(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(what.to_string())
}

impl SqliteStore {
    /// Opens the store directory. Read-write, a missing directory (or an empty one: a fresh
    /// install) is initialised with an empty database; a directory holding the old
    /// `directory.json` is refused until `cjsm-milter directory migrate` has moved it; one that
    /// holds other files but no database is refused, as is, later, a database that has gone:
    /// that is a store outage (tempfail), not an empty directory (5.1.1 for everyone).
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(dir, Access::ReadWrite, 100_000)
    }

    pub fn open_with(
        dir: &Path,
        access: Access,
        audit_retention: usize,
    ) -> Result<SqliteStore, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let exists = path_exists(&path)?;
        if !exists {
            refuse_unmigrated(dir)?;
        }
        if !exists && access == Access::ReadWrite {
            initialise(dir)?;
        }
        let store = SqliteStore {
            inner: Arc::new(Inner {
                path,
                access,
                absent: !exists && access == Access::ReadOnly,
                audit_retention: audit_retention.max(1),
                readers: Mutex::new((None, Vec::new())),
                readers_kept: readers_kept(),
                checked: Mutex::new(None),
                writer: Mutex::new(None),
            }),
        };
        // Fail at start-up, not at the first message, if the database cannot be read.
        if !store.inner.absent {
            store.inner.read(|_| Ok(()))?;
        }
        if exists && access == Access::ReadWrite {
            // A database from before the website: its table is added (read-only openers of
            // such a database find no records until then).
            let missing: bool = store.inner.read(|conn| {
                conn.query_row(
                    "SELECT NOT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'records')",
                    [],
                    |r| r.get(0),
                )
            })?;
            if missing {
                store.inner.write(false, |tx| {
                    tx.execute_batch(RECORDS_SCHEMA)?;
                    Ok(((), true))
                })?;
            }
        }
        Ok(store)
    }

    /// Opens now the connections a running milter keeps (the writer, and every reader the
    /// pool keeps) rather than at first use: the milter then holds the same descriptors at
    /// rest before and after any load, and its first messages pay no connection set-up.
    pub fn open_kept_connections(&self) -> Result<(), StoreError> {
        if self.inner.absent {
            return Ok(());
        }
        if self.inner.access == Access::ReadWrite {
            self.inner.write(false, |_| Ok(((), false)))?;
        }
        let stamp = self.inner.stamp()?;
        let mut opened = Vec::new();
        let wanted = {
            let readers = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            self.inner.readers_kept.saturating_sub(readers.1.len())
        };
        for _ in 0..wanted {
            opened.push(self.inner.connect(false)?);
        }
        let mut readers = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.0 != Some(stamp) {
            readers.1.clear();
            readers.0 = Some(stamp);
        }
        for conn in opened {
            if readers.1.len() < self.inner.readers_kept {
                readers.1.push(conn);
            }
        }
        Ok(())
    }

    /// The directory's change counter: bumped by every write to organisations, users, claims
    /// or certificates (not by audit appends). Equal answers: nothing changed in between.
    pub fn changes(&self) -> Result<u64, StoreError> {
        if self.inner.absent {
            return Ok(0);
        }
        self.inner.read(|conn| {
            let text: String = conn
                .prepare_cached("SELECT value FROM meta WHERE key = 'changes'")?
                .query_row([], |r| r.get(0))?;
            Ok(text.parse().unwrap_or(0))
        })
    }

    /// The database's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs database work on the blocking pool, so a slow disk cannot stall the milter's I/O
    /// threads and the stage deadline can still fire.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| unavailable(format!("store worker failed: {e}")))?
    }

    /// A point read (a key, an index), answered on the caller's thread: a kept connection and
    /// a cached statement take microseconds, less than a hop to a worker thread and back.
    /// `empty` while the store is absent (read-only access to a store never created).
    fn point<T: Send + 'static>(
        &self,
        empty: T,
        work: impl FnOnce(&Connection) -> Sql<T>,
    ) -> StoreFuture<'_, T> {
        let answer = if self.inner.absent {
            Ok(empty)
        } else {
            self.inner.read(work)
        };
        Box::pin(async move { answer })
    }

    /// Every row `sql` (no parameters) selects, read on the blocking pool: a scan.
    fn scan<T: Send + 'static>(
        &self,
        sql: String,
        from: fn(&Row) -> Sql<T>,
    ) -> StoreFuture<'_, Vec<T>> {
        if self.inner.absent {
            return Box::pin(async { Ok(Vec::new()) });
        }
        Box::pin(self.blocking(move |inner| {
            inner.read(|conn| conn.prepare_cached(&sql)?.query_map([], from)?.collect())
        }))
    }
}

fn path_exists(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(unavailable(format!("{}: {e}", path.display()))),
    }
}

/// The old embedded store's `directory.json` is there and no database: the daemon and the
/// admin commands do not start on an empty directory beside it.
pub(crate) fn refuse_unmigrated(dir: &Path) -> Result<(), StoreError> {
    let old = dir.join(OLD_FILE);
    if path_exists(&old)? {
        return Err(unavailable(format!(
            "{} is the directory of an earlier version and {} does not exist yet: run \
             `cjsm-milter directory migrate` (with the same config) to move it into the \
             database; not starting on an empty directory",
            old.display(),
            dir.join(DATABASE_FILE).display()
        )));
    }
    Ok(())
}

/// Creates the store directory (0750: it holds personal data) and, in an empty one, the empty
/// database and the marker.
fn initialise(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
    let entries = fs::read_dir(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
    // Only an empty directory is a fresh install (what a crashed first start left being built
    // aside counts for nothing): once initialised, it holds the marker.
    let mut others = Vec::new();
    for entry in entries {
        let name = entry
            .map_err(|e| unavailable(format!("{}: {e}", dir.display())))?
            .file_name();
        if !name.to_string_lossy().starts_with(NEW_FILE) {
            others.push(name.to_string_lossy().into_owned());
        }
    }
    if !others.is_empty() {
        let restore = if others.iter().any(|n| n == MARKER_FILE) {
            "the database was lost: restore it from a backup"
        } else {
            "point [store] path at an empty directory, or restore the database"
        };
        return Err(unavailable(format!(
            "{} holds files ({}) but no {DATABASE_FILE}: not starting on an empty directory \
             ({restore})",
            dir.display(),
            others.join(", ")
        )));
    }
    build(dir, |_| Ok(()))
}

/// Builds a database aside (the schema, then `fill`, in one transaction), then puts it in
/// place with the marker: the database is never seen half made. Used by the first start and by
/// the migration.
pub(crate) fn build(
    dir: &Path,
    fill: impl FnOnce(&Transaction) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let new = dir.join(NEW_FILE);
    for leftover in ["", "-wal", "-shm", "-journal"] {
        let _ = fs::remove_file(dir.join(format!("{NEW_FILE}{leftover}")));
    }
    // Created by us, 0640 and owned like the directory, before SQLite opens it: SQLite gives
    // its -wal and -shm files this file's mode and (running as root) owner.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&new)
        .and_then(|file| owned_like_dir(file, dir))
        .map_err(|e| unavailable(format!("create {}: {e}", new.display())))?;
    drop(file);
    let made = (|| -> Result<(), StoreError> {
        let mut conn = Connection::open_with_flags(
            &new,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error(&new, e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| sql_error(&new, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(unavailable(format!(
                "{}: WAL mode refused ({mode})",
                new.display()
            )));
        }
        configure(&conn, WRITE_BUSY).map_err(|e| sql_error(&new, e))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&new, e))?;
        tx.execute_batch(SCHEMA).map_err(|e| sql_error(&new, e))?;
        tx.execute_batch(RECORDS_SCHEMA)
            .map_err(|e| sql_error(&new, e))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema', ?1), ('changes', '0')",
            [SCHEMA_VERSION],
        )
        .map_err(|e| sql_error(&new, e))?;
        fill(&tx)?;
        tx.commit().map_err(|e| sql_error(&new, e))?;
        // Closing the last connection checkpoints the WAL into the file and removes it.
        conn.close().map_err(|(_, e)| sql_error(&new, e))?;
        Ok(())
    })();
    if let Err(e) = made {
        for leftover in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(dir.join(format!("{NEW_FILE}{leftover}")));
        }
        return Err(e);
    }
    let database = dir.join(DATABASE_FILE);
    fs::rename(&new, &database)
        .map_err(|e| unavailable(format!("rename {} into place: {e}", new.display())))?;
    let marker = dir.join(MARKER_FILE);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&marker)
        .and_then(|file| owned_like_dir(file, dir))
        .and_then(|mut file| {
            use std::io::Write as _;
            file.write_all(
                b"cjsm-milter: this store was initialised; directory.sqlite3 must be here.\n",
            )?;
            file.sync_all()
        })
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(|e| unavailable(format!("write {}: {e}", marker.display())))
}

/// The settings every connection gets (they are per connection, not stored).
fn configure(conn: &Connection, busy: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy)?;
    // Keep each cached statement's plan: without this SQLite compiles a join again at every
    // new bound value (the organisation of a domain: once per recipient without a user),
    // which was a fifth of the milter's CPU. Our queries are point reads on keys; a plan
    // tuned to one value gains nothing.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // FULL: see the module documentation ("lose nothing" for an administrator's change).
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// A SQLite error as the store reports it: a file that is not a database, or a damaged one,
/// is `Corrupt` (never an empty directory); anything else (busy, I/O) is an outage.
fn sql_error(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let corrupt = match &e {
        rusqlite::Error::SqliteFailure(f, message) => {
            matches!(f.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
                || message
                    .as_deref()
                    .is_some_and(|m| m.contains("no such table"))
        }
        // A statement on a table that is not there: a database, but not this store's.
        rusqlite::Error::SqlInputError { msg, .. } => msg.contains("no such"),
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => true,
        _ => e.to_string().contains("no such table"),
    };
    if corrupt {
        StoreError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    } else {
        unavailable(format!("{}: {e}", path.display()))
    }
}

/// A store error inside database work, carried through rusqlite's error type.
#[derive(Debug)]
struct Carried(StoreError);

impl std::fmt::Display for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Carried {}

/// The result of database work: SQLite's errors, or the store's own (a refusal).
type Sql<T> = rusqlite::Result<T>;

fn carry(e: StoreError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(Carried(e)))
}

fn uncarry(path: &Path, e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::ToSqlConversionFailure(inner) => match inner.downcast::<Carried>() {
            Ok(carried) => carried.0,
            Err(other) => sql_error(path, rusqlite::Error::ToSqlConversionFailure(other)),
        },
        e => sql_error(path, e),
    }
}

impl Inner {
    /// The database file's identity now; its absence is an outage (it was there at open).
    /// When the file changed since it was last checked, its header is checked first: a file
    /// emptied, cut short or overwritten is `Corrupt` before SQLite reads a page of it (pages it
    /// holds in memory would otherwise go on answering while the file is damaged).
    fn stamp(&self) -> Result<Stamp, StoreError> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(&self.path) {
            Ok(meta) => {
                let checked = Checked {
                    stamp: Stamp {
                        dev: meta.dev(),
                        ino: meta.ino(),
                    },
                    len: meta.len(),
                    modified: (meta.mtime(), meta.mtime_nsec()),
                };
                let mut last = self.checked.lock().unwrap_or_else(|p| p.into_inner());
                if *last != Some(checked) {
                    *last = None;
                    check_header(&self.path, meta.len())?;
                    *last = Some(checked);
                }
                Ok(checked.stamp)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(unavailable(format!(
                "{} is gone: the directory database was lost (restore it from a backup); \
                 not answering from an empty directory",
                self.path.display()
            ))),
            Err(e) => Err(unavailable(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Opens a connection on the database as it is (never creating it) and checks it is this
    /// store's, at this schema.
    fn connect(&self, write: bool) -> Result<Connection, StoreError> {
        let flags = if write && self.access == Access::ReadWrite {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&self.path, flags).map_err(|e| sql_error(&self.path, e))?;
        configure(&conn, if write { WRITE_BUSY } else { READ_BUSY })
            .map_err(|e| sql_error(&self.path, e))?;
        let schema: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| sql_error(&self.path, e))?;
        match schema.as_deref() {
            Some(SCHEMA_VERSION) => Ok(conn),
            Some(other) => Err(unavailable(format!(
                "{}: schema version {other}, this version reads {SCHEMA_VERSION}",
                self.path.display()
            ))),
            None => Err(StoreError::Corrupt {
                path: self.path.display().to_string(),
                message: "not a cjsm-milter directory database (no schema version)".into(),
            }),
        }
    }

    /// Runs `work` in one read transaction on a kept reader connection.
    fn read<T>(&self, work: impl FnOnce(&Connection) -> Sql<T>) -> Result<T, StoreError> {
        let stamp = self.stamp()?;
        let conn = {
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if readers.0 != Some(stamp) {
                // Another file under the name (a restore): the kept connections read the old.
                readers.1.clear();
                readers.0 = Some(stamp);
            }
            readers.1.pop()
        };
        let mut conn = match conn {
            Some(conn) => conn,
            None => self.connect(false)?,
        };
        let result = (|| {
            let tx = conn.transaction()?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        match result {
            Ok(value) => {
                let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
                if readers.0 == Some(stamp) && readers.1.len() < self.readers_kept {
                    readers.1.push(conn);
                }
                Ok(value)
            }
            // A connection that failed is not kept: the next read opens (and checks) afresh.
            Err(e) => Err(uncarry(&self.path, e)),
        }
    }

    /// Runs `change` in one write transaction (the write lock taken at its start); it answers
    /// its result and whether it changed the directory (the change counter is bumped then).
    /// Nothing is written when it fails or answers "unchanged".
    fn write<T>(
        &self,
        directory: bool,
        change: impl FnOnce(&Transaction) -> Sql<(T, bool)>,
    ) -> Result<T, StoreError> {
        if self.access == Access::ReadOnly {
            return Err(StoreError::Refused("the store is open read-only".into()));
        }
        let stamp = self.stamp()?;
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.as_ref().is_none_or(|(held, _)| *held != stamp) {
            *writer = Some((stamp, self.connect(true)?));
        }
        let Some((_, conn)) = writer.as_mut() else {
            unreachable!("set above")
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (value, changed) = change(&tx)?;
            if !changed {
                return Ok(value);
            }
            if directory {
                tx.prepare_cached(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'changes'",
                )?
                .execute([])?;
            }
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| {
            // A failed commit may leave the connection unusable: the next write opens afresh.
            *writer = None;
            uncarry(&self.path, e)
        })
    }
}

/// Checks the header of the database file (`len` bytes long): SQLite's magic string, a page
/// size SQLite writes, a length in whole pages (SQLite only ever writes whole pages).
/// Cheap (one read of 100 bytes); done when the file has changed, not on every read.
fn check_header(path: &Path, len: u64) -> Result<(), StoreError> {
    use std::io::Read as _;
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.display().to_string(),
        message,
    };
    let mut header = [0u8; 100];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                corrupt(format!("{len} bytes: shorter than a database header"))
            }
            _ => unavailable(format!("{}: {e}", path.display())),
        })?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(corrupt("not a SQLite database (its header is not)".into()));
    }
    let page = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    if !(512..=65536).contains(&page) || !page.is_power_of_two() {
        return Err(corrupt(format!("page size {page} in its header")));
    }
    if !len.is_multiple_of(page) {
        return Err(corrupt(format!(
            "{len} bytes: not whole pages of {page} (cut short?)"
        )));
    }
    // Not compared: the page count in the header with the file's length. Another process's
    // checkpoint writes page 1 (the new count) before the pages that lengthen the file, so a
    // reader could see a "short" file that is not; a file really cut short fails in SQLite
    // (a page past its end is read as zeros: "malformed"), an error all the same.
    Ok(())
}

/// A file of the store as this process made it; when root made it (an administrator's command
/// run as root), given to the store directory's owner and group if it is not theirs, as the
/// service account would have created it: the milter, running as that account, must still open
/// and write the database (and SQLite gives the `-wal` and `-shm` files the database's owner).
pub(crate) fn owned_like_dir(file: File, dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    if !crate::privilege::is_root() {
        return Ok(file);
    }
    let (dir, own) = (fs::metadata(dir)?, file.metadata()?);
    if (own.uid(), own.gid()) != (dir.uid(), dir.gid()) {
        std::os::unix::fs::fchown(&file, Some(dir.uid()), Some(dir.gid()))?;
    }
    Ok(file)
}

/// An enum as its serde name (`active`, `server`), the form the columns hold.
fn text_of<T: Serialize>(value: &T) -> Sql<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => Ok(text),
        Ok(other) => Err(rusqlite::Error::ToSqlConversionFailure(
            format!("not a name: {other}").into(),
        )),
        Err(e) => Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
    }
}

fn from_text<T: DeserializeOwned>(row: &Row, index: usize) -> Sql<T> {
    let text: String = row.get(index)?;
    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn json_of<T: Serialize>(value: &T) -> Sql<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn from_json<T: DeserializeOwned>(row: &Row, index: usize) -> Sql<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

const ORG_COLUMNS: &str = "o.id, o.name, o.domains, o.connection, o.state, o.terms_signed, \
    o.admins, o.cert_fingerprint, o.cert_subject, o.cert_issuer, o.mail_server, o.approved, \
    o.created, o.updated, o.revision";

fn org_from(row: &Row) -> Sql<Organisation> {
    let fingerprint: Option<String> = row.get(7)?;
    Ok(Organisation {
        id: row.get(0)?,
        name: row.get(1)?,
        domains: from_json(row, 2)?,
        connection: from_text(row, 3)?,
        state: from_text(row, 4)?,
        terms_signed: row.get(5)?,
        admins: from_json(row, 6)?,
        client_certificate: match fingerprint {
            Some(fingerprint) => Some(ClientCertificate {
                fingerprint,
                subject: row.get(8)?,
                issuer: row.get(9)?,
            }),
            None => None,
        },
        mail_server: row.get(10)?,
        approved: row.get(11)?,
        created: row.get(12)?,
        updated: row.get(13)?,
        revision: row.get(14)?,
    })
}

const USER_COLUMNS: &str = "address, org, first_name, last_name, town, business_type, state, \
    created, updated, smime_certificate, revision";

fn user_from(row: &Row) -> Sql<User> {
    Ok(User {
        address: row.get(0)?,
        org: row.get(1)?,
        first_name: row.get(2)?,
        last_name: row.get(3)?,
        town: row.get(4)?,
        business_type: row.get(5)?,
        state: from_text(row, 6)?,
        created: row.get(7)?,
        updated: row.get(8)?,
        smime_certificate: row.get(9)?,
        revision: row.get(10)?,
    })
}

const CERT_COLUMNS: &str =
    "address, pem, fingerprint, subject, issuer, not_before, not_after, added";

fn cert_from(row: &Row) -> Sql<Certificate> {
    Ok(Certificate {
        address: row.get(0)?,
        pem: row.get(1)?,
        fingerprint: row.get(2)?,
        subject: row.get(3)?,
        issuer: row.get(4)?,
        not_before: row.get(5)?,
        not_after: row.get(6)?,
        added: row.get(7)?,
    })
}

pub(crate) fn put_user(tx: &Connection, user: &User) -> Sql<()> {
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO users ({USER_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(rusqlite::params![
        user.address,
        user.org,
        user.first_name,
        user.last_name,
        user.town,
        user.business_type,
        text_of(&user.state)?,
        user.created,
        user.updated,
        user.smime_certificate,
        user.revision,
    ])?;
    Ok(())
}

/// Writes an organisation and its entries in the organisation-by-domain index.
pub(crate) fn put_org(tx: &Connection, org: &Organisation) -> Sql<()> {
    let cert = org.client_certificate.as_ref();
    tx.prepare_cached(
        "INSERT INTO organisations (id, name, domains, connection, state, terms_signed, \
         admins, cert_fingerprint, cert_subject, cert_issuer, mail_server, approved, created, \
         updated, revision) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
         ?14, ?15) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
         domains = excluded.domains, connection = excluded.connection, state = excluded.state, \
         terms_signed = excluded.terms_signed, admins = excluded.admins, \
         cert_fingerprint = excluded.cert_fingerprint, cert_subject = excluded.cert_subject, \
         cert_issuer = excluded.cert_issuer, mail_server = excluded.mail_server, \
         approved = excluded.approved, created = excluded.created, \
         updated = excluded.updated, revision = excluded.revision",
    )?
    .execute(rusqlite::params![
        org.id,
        org.name,
        json_of(&org.domains)?,
        text_of(&org.connection)?,
        text_of(&org.state)?,
        org.terms_signed,
        json_of(&org.admins)?,
        cert.map(|c| &c.fingerprint),
        cert.map(|c| &c.subject),
        cert.map(|c| &c.issuer),
        org.mail_server,
        org.approved,
        org.created,
        org.updated,
        org.revision,
    ])?;
    tx.prepare_cached("DELETE FROM org_domains WHERE org = ?1")?
        .execute([&org.id])?;
    let mut index =
        tx.prepare_cached("INSERT OR IGNORE INTO org_domains (domain, org) VALUES (?1, ?2)")?;
    for domain in &org.domains {
        let key = domain_key(domain);
        if !key.is_empty() {
            index.execute([&key, &org.id])?;
        }
    }
    Ok(())
}

pub(crate) fn put_claim(tx: &Connection, domain: &str, org: &str) -> Sql<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO domain_claims (domain, org) VALUES (?1, ?2)")?
        .execute([domain, org])?;
    Ok(())
}

pub(crate) fn put_cert(tx: &Connection, cert: &Certificate) -> Sql<()> {
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO certificates ({CERT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(rusqlite::params![
        cert.address,
        cert.pem,
        cert.fingerprint,
        cert.subject,
        cert.issuer,
        cert.not_before,
        cert.not_after,
        cert.added,
    ])?;
    Ok(())
}

/// Appends audit entries in order and deletes the oldest past `retention`.
pub(crate) fn append_audit(tx: &Connection, events: &[AuditEvent], retention: usize) -> Sql<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO audit (time_ms, kind, action, event) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for event in events {
        let kind = match event {
            AuditEvent::Verdict(_) => "verdict",
            AuditEvent::Admin(_) => "admin",
        };
        insert.execute(rusqlite::params![
            event.time_ms(),
            kind,
            event.action(),
            json_of(event)?
        ])?;
    }
    // The sequence has no gaps but for deletions, which only take the oldest: the entries
    // past the newest `retention` sequence numbers are the oldest, found by the key.
    tx.prepare_cached("DELETE FROM audit WHERE seq <= (SELECT max(seq) FROM audit) - ?1")?
        .execute([retention as i64])?;
    Ok(())
}

/// Counts of what a database holds (the migration's check).
pub(crate) fn count(tx: &Connection, table: &str) -> Sql<usize> {
    let n: i64 = tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

fn org_by_id(conn: &Connection, id: &str) -> Sql<Option<Organisation>> {
    conn.prepare_cached(&format!(
        "SELECT {ORG_COLUMNS} FROM organisations o WHERE o.id = ?1"
    ))?
    .query_row([id], org_from)
    .optional()
}

fn user_by_address(conn: &Connection, address: &str) -> Sql<Option<User>> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE address = ?1"
    ))?
    .query_row([address], user_from)
    .optional()
}

impl DirectoryRead for SqliteStore {
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup> {
        let address = normalize_address(address);
        // The user, their organisation and certificate in one read transaction.
        self.point(Lookup::default(), |conn| {
            let user = user_by_address(conn, &address)?;
            let org = match &user {
                Some(u) => org_by_id(conn, &u.org)?,
                // No such user: the organisation holding the domain, if any.
                None => match address.rsplit_once('@') {
                    Some((_, domain)) => conn
                        .prepare_cached(&format!(
                            "SELECT {ORG_COLUMNS} FROM domain_claims c \
                             JOIN organisations o ON o.id = c.org WHERE c.domain = ?1"
                        ))?
                        .query_row([domain], org_from)
                        .optional()?,
                    None => None,
                },
            };
            let certificate = conn
                .prepare_cached(&format!(
                    "SELECT {CERT_COLUMNS} FROM certificates WHERE address = ?1"
                ))?
                .query_row([&address], cert_from)
                .optional()?;
            Ok(Lookup {
                user,
                org,
                certificate,
            })
        })
    }

    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        let address = normalize_address(address);
        self.point(None, |conn| user_by_address(conn, &address))
    }

    fn users(&self) -> StoreFuture<'_, Vec<User>> {
        self.scan(
            format!("SELECT {USER_COLUMNS} FROM users ORDER BY address"),
            user_from,
        )
    }

    fn users_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<User>> {
        if self.inner.absent {
            return Box::pin(async { Ok(Vec::new()) });
        }
        let after = after.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(self.blocking(move |inner| {
            inner.read(|conn| {
                // The primary key is the ordered index: a range scan from `after` (two
                // statements: an `OR` in the condition would make SQLite scan the table).
                match &after {
                    Some(after) => conn
                        .prepare_cached(&format!(
                            "SELECT {USER_COLUMNS} FROM users WHERE address > ?1 \
                             ORDER BY address LIMIT ?2"
                        ))?
                        .query_map(rusqlite::params![after, limit], user_from)?
                        .collect(),
                    None => conn
                        .prepare_cached(&format!(
                            "SELECT {USER_COLUMNS} FROM users ORDER BY address LIMIT ?1"
                        ))?
                        .query_map([limit], user_from)?
                        .collect(),
                }
            })
        }))
    }

    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        self.point(None, |conn| org_by_id(conn, id))
    }

    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
        self.scan(
            format!("SELECT {ORG_COLUMNS} FROM organisations o ORDER BY o.id"),
            org_from,
        )
    }

    fn org_by_domain<'a>(&'a self, domain: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        let key = domain_key(domain);
        // Should two organisations list the domain, the first by id.
        self.point(None, |conn| {
            conn.prepare_cached(&format!(
                "SELECT {ORG_COLUMNS} FROM org_domains d JOIN organisations o ON o.id = d.org \
                 WHERE d.domain = ?1 ORDER BY d.org LIMIT 1"
            ))?
            .query_row([&key], org_from)
            .optional()
        })
    }

    fn orgs_by_mail_server<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Vec<Organisation>> {
        self.point(Vec::new(), |conn| {
            conn.prepare_cached(&format!(
                "SELECT {ORG_COLUMNS} FROM organisations o WHERE o.mail_server = ?1 ORDER BY o.id"
            ))?
            .query_map([server], org_from)?
            .collect()
        })
    }

    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>> {
        self.scan(
            format!("SELECT {CERT_COLUMNS} FROM certificates ORDER BY address"),
            cert_from,
        )
    }

    fn size(&self) -> StoreFuture<'_, (usize, usize)> {
        if self.inner.absent {
            return Box::pin(async { Ok((0, 0)) });
        }
        Box::pin(self.blocking(|inner| {
            inner.read(|conn| Ok((count(conn, "users")?, count(conn, "organisations")?)))
        }))
    }

    fn written(&self) -> StoreFuture<'_, bool> {
        // A database that exists was written (created with its schema); one that has gone
        // fails every read as an outage.
        Box::pin(async { Ok(true) })
    }
}

impl DirectoryWrite for SqliteStore {
    fn put_users(&self, users: Vec<User>) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |inner| {
            inner.write(true, |tx| {
                for mut user in users {
                    user.address = normalize_address(&user.address);
                    put_user(tx, &user)?;
                }
                Ok(((), true))
            })
        }))
    }

    fn put_org(&self, org: Organisation) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |inner| {
            inner.write(true, |tx| {
                put_org(tx, &org)?;
                Ok(((), true))
            })
        }))
    }

    fn swap_users(&self, changes: Vec<(Option<u64>, User)>) -> StoreFuture<'_, bool> {
        Box::pin(self.blocking(move |inner| {
            inner.write(true, |tx| {
                let mut revision =
                    tx.prepare_cached("SELECT revision FROM users WHERE address = ?1")?;
                for (expected, user) in &changes {
                    let current: Option<u64> = revision
                        .query_row([normalize_address(&user.address)], |r| r.get(0))
                        .optional()?;
                    if current != *expected {
                        return Ok((false, false));
                    }
                }
                drop(revision);
                for (expected, mut user) in changes {
                    user.address = normalize_address(&user.address);
                    user.revision = expected.map_or(1, |r| r + 1);
                    put_user(tx, &user)?;
                }
                Ok((true, true))
            })
        }))
    }

    fn swap_org(
        &self,
        expected: Option<u64>,
        mut org: Organisation,
        domains: Vec<String>,
    ) -> StoreFuture<'_, bool> {
        Box::pin(self.blocking(move |inner| {
            inner.write(true, |tx| {
                let current: Option<u64> = tx
                    .prepare_cached("SELECT revision FROM organisations WHERE id = ?1")?
                    .query_row([&org.id], |r| r.get(0))
                    .optional()?;
                if current != expected {
                    return Ok((false, false));
                }
                let mut holder =
                    tx.prepare_cached("SELECT org FROM domain_claims WHERE domain = ?1")?;
                for domain in &domains {
                    let held: Option<String> =
                        holder.query_row([domain], |r| r.get(0)).optional()?;
                    if let Some(held) = held.filter(|h| *h != org.id) {
                        return Err(carry(StoreError::Refused(format!(
                            "{domain} is held by {held}"
                        ))));
                    }
                }
                drop(holder);
                for domain in &domains {
                    put_claim(tx, domain, &org.id)?;
                }
                org.revision = expected.map_or(1, |r| r + 1);
                put_org(tx, &org)?;
                Ok((true, true))
            })
        }))
    }

    fn put_certificate(&self, mut cert: Certificate) -> StoreFuture<'_, ()> {
        cert.address = normalize_address(&cert.address);
        Box::pin(self.blocking(move |inner| {
            inner.write(true, |tx| {
                put_cert(tx, &cert)?;
                Ok(((), true))
            })
        }))
    }

    fn remove_certificate<'a>(&'a self, address: &'a str) -> StoreFuture<'a, bool> {
        let address = normalize_address(address);
        Box::pin(self.blocking(move |inner| {
            inner.write(true, |tx| {
                let removed = tx
                    .prepare_cached("DELETE FROM certificates WHERE address = ?1")?
                    .execute([&address])?
                    > 0;
                Ok((removed, removed))
            })
        }))
    }
}

impl AuditTrail for SqliteStore {
    fn append_audit(&self, event: AuditEvent) -> StoreFuture<'_, ()> {
        self.append_audit_batch(vec![event])
    }

    /// The batch in one transaction: one commit (one sync) for what queued up.
    fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |inner| {
            let retention = inner.audit_retention;
            inner.write(false, |tx| {
                append_audit(tx, &events, retention)?;
                Ok(((), !events.is_empty()))
            })
        }))
    }

    fn audit(&self, limit: usize) -> StoreFuture<'_, Vec<AuditEvent>> {
        if self.inner.absent {
            return Box::pin(async { Ok(Vec::new()) });
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(self.blocking(move |inner| {
            inner.read(|conn| {
                conn.prepare_cached("SELECT event FROM audit ORDER BY seq DESC LIMIT ?1")?
                    .query_map([limit], |row| from_json(row, 0))?
                    .collect()
            })
        }))
    }
}

fn record_from(row: &Row) -> Sql<(String, Record)> {
    Ok((
        row.get(0)?,
        Record {
            value: row.get(1)?,
            revision: row.get(2)?,
            expires: row.get(3)?,
        },
    ))
}

/// Whether the records table is there: a read-only opener of a database from before the
/// website (not yet opened read-write) finds no records.
fn has_records(conn: &Connection) -> Sql<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'records')")?
        .query_row([], |r| r.get(0))
}

impl Records for SqliteStore {
    fn record<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        now: u64,
    ) -> StoreFuture<'a, Option<Record>> {
        self.point(None, |conn| {
            if !has_records(conn)? {
                return Ok(None);
            }
            let found = conn
                .prepare_cached(
                    "SELECT key, value, revision, expires FROM records WHERE kind = ?1 AND key = ?2",
                )?
                .query_row(rusqlite::params![kind, key], record_from)
                .optional()?;
            Ok(found
                .map(|(_, record)| record)
                .filter(|record| !record.expired(now)))
        })
    }

    fn swap_record<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        expected: Option<u64>,
        value: Option<String>,
        expires: u64,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        let (kind, key) = (kind.to_string(), key.to_string());
        Box::pin(self.blocking(move |inner| {
            inner.write(false, |tx| {
                let current: Option<(u64, u64)> = tx
                    .prepare_cached(
                        "SELECT revision, expires FROM records WHERE kind = ?1 AND key = ?2",
                    )?
                    .query_row(rusqlite::params![kind, key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let live = current.filter(|&(_, exp)| exp == 0 || exp > now);
                if live.map(|(revision, _)| revision) != expected {
                    return Ok((false, false));
                }
                match value {
                    Some(value) => {
                        let revision = live.map_or(1, |(revision, _)| revision + 1);
                        tx.prepare_cached(
                            "INSERT INTO records (kind, key, value, revision, expires) \
                             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (kind, key) DO UPDATE SET \
                             value = excluded.value, revision = excluded.revision, \
                             expires = excluded.expires",
                        )?
                        .execute(rusqlite::params![kind, key, value, revision, expires])?;
                    }
                    None => {
                        tx.prepare_cached("DELETE FROM records WHERE kind = ?1 AND key = ?2")?
                            .execute(rusqlite::params![kind, key])?;
                    }
                }
                Ok((true, true))
            })
        }))
    }

    fn records<'a>(
        &'a self,
        kind: &'a str,
        prefix: &'a str,
        limit: usize,
        now: u64,
    ) -> StoreFuture<'a, Vec<(String, Record)>> {
        if self.inner.absent {
            return Box::pin(async { Ok(Vec::new()) });
        }
        let (kind, prefix) = (kind.to_string(), prefix.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(self.blocking(move |inner| {
            inner.read(|conn| {
                if !has_records(conn)? {
                    return Ok(Vec::new());
                }
                // Keys from the prefix up to the prefix followed by the highest character.
                let end = format!("{prefix}\u{10FFFF}");
                conn.prepare_cached(
                    "SELECT key, value, revision, expires FROM records WHERE kind = ?1 \
                     AND key >= ?2 AND key < ?3 AND (expires = 0 OR expires > ?4) \
                     ORDER BY key LIMIT ?5",
                )?
                .query_map(
                    rusqlite::params![kind, prefix, end, now, limit],
                    record_from,
                )?
                .collect()
            })
        }))
    }

    fn purge_expired<'a>(&'a self, kind: &'a str, now: u64) -> StoreFuture<'a, usize> {
        let kind = kind.to_string();
        Box::pin(self.blocking(move |inner| {
            inner.write(false, |tx| {
                let removed = tx
                    .prepare_cached(
                        "DELETE FROM records WHERE kind = ?1 AND expires > 0 AND expires <= ?2",
                    )?
                    .execute(rusqlite::params![kind, now])?;
                Ok((removed, removed > 0))
            })
        }))
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("access", &self.inner.access)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::model::{AdminEvent, ConnectionType, VerdictEvent, test_org};

    fn test_user(address: &str, org: &str) -> User {
        User {
            address: address.into(),
            org: org.into(),
            first_name: "A".into(),
            last_name: "B".into(),
            town: "Leeds".into(),
            business_type: "Solicitors".into(),
            state: crate::directory::model::UserState::Active,
            created: 1,
            updated: 1,
            smime_certificate: None,
            revision: 0,
        }
    }

    fn admin_event(i: u64) -> AuditEvent {
        AuditEvent::Admin(AdminEvent {
            time_ms: i,
            action: format!("event {i}"),
            ..AdminEvent::default()
        })
    }

    /// The milter's lookup runs a few cached statements per recipient, each with another
    /// address bound: they must be compiled once per connection, not again at every binding
    /// (SQLite re-prepares a statement whose plan may depend on a bound value, unless the query
    /// planner is told to keep its plans: `SQLITE_DBCONFIG_ENABLE_QPSG`).
    #[tokio::test]
    async fn lookups_do_not_compile_their_statements_again_for_each_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .put_org(test_org("o", "O", &["o.example"], ConnectionType::Server))
            .await
            .unwrap();
        let users = (0..20)
            .map(|i| test_user(&format!("u{i}@o.example.cjsm.net"), "o"))
            .collect();
        store.put_users(users).await.unwrap();
        for i in 0..20 {
            let lookup = store
                .lookup(&format!("u{i}@o.example.cjsm.net"))
                .await
                .unwrap();
            assert!(lookup.user.is_some() && lookup.org.is_some());
            store
                .lookup(&format!("nobody{i}@o{i}.example"))
                .await
                .unwrap();
            // As in the milter: its audit writer commits between two messages' lookups.
            store.append_audit(admin_event(i)).await.unwrap();
        }
        // Sequential reads take the same kept connection, whose statement cache holds them.
        let statements = [
            format!("SELECT {USER_COLUMNS} FROM users WHERE address = ?1"),
            format!("SELECT {ORG_COLUMNS} FROM organisations o WHERE o.id = ?1"),
            format!(
                "SELECT {ORG_COLUMNS} FROM domain_claims c \
                 JOIN organisations o ON o.id = c.org WHERE c.domain = ?1"
            ),
            format!("SELECT {CERT_COLUMNS} FROM certificates WHERE address = ?1"),
        ];
        for domain in ["o.example", "O.example.", "other.example"] {
            store.org_by_domain(domain).await.unwrap();
        }
        let statements = statements.into_iter().chain([format!(
            "SELECT {ORG_COLUMNS} FROM org_domains d JOIN organisations o ON o.id = d.org \
             WHERE d.domain = ?1 ORDER BY d.org LIMIT 1"
        )]);
        for sql in statements {
            let reprepared = store
                .inner
                .read(|conn| {
                    Ok(conn
                        .prepare_cached(&sql)?
                        .get_status(rusqlite::StatementStatus::RePrepare))
                })
                .unwrap();
            assert!(reprepared <= 1, "{sql}: compiled again {reprepared} times");
        }
    }

    /// The descriptors of a running milter's store: what it keeps is opened when it opens
    /// (the writer and every kept reader), so neither a burst of concurrent lookups nor the
    /// first audit write leaves it holding more once at rest (the soak's leak check).
    #[test]
    fn a_milter_store_keeps_the_same_descriptors_before_and_after_load() {
        let dir = tempfile::tempdir().unwrap();
        // This store's descriptors only: the other tests of the binary run alongside and open
        // files of their own.
        let descriptors = || {
            fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
                .filter(|target| target.starts_with(dir.path()))
                .count()
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        store.open_kept_connections().unwrap();
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
        };
        let before = descriptors();
        // As many threads reading at once as connections are kept (the milter's inline reads
        // are one per runtime worker, fewer). Beyond that a read opens a connection of its own;
        // SQLite may hold such a connection's descriptor open after it closes, for reuse (a
        // close would drop the process's locks on the file), so it is not counted here.
        std::thread::scope(|scope| {
            for t in 0..store.inner.readers_kept {
                let store = &store;
                let runtime = runtime();
                scope.spawn(move || {
                    for i in 0..50 {
                        runtime
                            .block_on(store.lookup(&format!("u{t}-{i}@o.example.cjsm.net")))
                            .unwrap();
                    }
                });
            }
        });
        runtime()
            .block_on(store.append_audit(admin_event(1)))
            .unwrap();
        assert_eq!(
            descriptors(),
            before,
            "the store holds more descriptors at rest"
        );
    }

    #[tokio::test]
    async fn a_lost_database_is_an_outage_not_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.user("a@x.cjsm.net").await.unwrap(), None);
        fs::remove_file(dir.path().join(DATABASE_FILE)).unwrap();
        for result in [
            store.user("a@x.cjsm.net").await.map(|_| ()),
            store.lookup("a@x.cjsm.net").await.map(|_| ()),
            store
                .put_org(test_org("o", "O", &["o.example"], ConnectionType::Server))
                .await,
        ] {
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{result:?}"
            );
        }
        // Nor does a restart paper over it, even once the connections are closed (SQLite
        // removes its -wal and -shm files then).
        drop(store);
        let err = SqliteStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("restore"), "{err}");
        assert!(!dir.path().join(DATABASE_FILE).exists());
    }

    /// A database put back (a restore: another file under the name) is read, not the one the
    /// kept connections had open.
    #[tokio::test]
    async fn a_restored_database_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .put_org(test_org(
                "o1",
                "Firm",
                &["firm.example"],
                ConnectionType::Server,
            ))
            .await
            .unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let other = tempfile::tempdir().unwrap();
        let backup = SqliteStore::open(other.path()).unwrap();
        backup
            .put_org(test_org(
                "o2",
                "Restored",
                &["restored.example"],
                ConnectionType::Server,
            ))
            .await
            .unwrap();
        drop(backup);
        // As RELIABILITY.md says to restore: the old file's -wal and -shm go with it (SQLite
        // would read the old file's pages from them), the copy is renamed into place.
        for stale in ["directory.sqlite3-wal", "directory.sqlite3-shm"] {
            fs::remove_file(dir.path().join(stale)).unwrap();
        }
        let copy = dir.path().join("restoring");
        fs::copy(other.path().join(DATABASE_FILE), &copy).unwrap();
        fs::rename(&copy, &path).unwrap();
        assert!(store.org("o1").await.unwrap().is_none());
        assert_eq!(store.org("o2").await.unwrap().unwrap().name, "Restored");
    }

    #[test]
    fn files_are_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = SqliteStore::open(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path) & 0o007, 0, "directory");
        for file in [
            DATABASE_FILE,
            "directory.sqlite3-wal",
            "directory.sqlite3-shm",
        ] {
            assert_eq!(mode(&path.join(file)) & 0o007, 0, "{file}");
        }
        drop(store);
    }

    /// An administrator's command run as root must not leave the database, its -wal and -shm
    /// files or the marker to root alone: the milter, running as the service account that
    /// owns the store directory, has to keep opening and writing them.
    #[tokio::test]
    async fn files_written_by_root_keep_the_owner_of_the_store() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert!(
            crate::privilege::is_root(),
            "this test gives files to another owner and must run as root (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        fs::create_dir(&path).unwrap();
        // nobody:nogroup on Debian; any ids other than root's do.
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let store = SqliteStore::open(&path).unwrap();
        store
            .put_org(test_org(
                "o1",
                "Firm",
                &["firm.example"],
                ConnectionType::Server,
            ))
            .await
            .unwrap();
        store.append_audit(admin_event(1)).await.unwrap();
        let umask = {
            // SAFETY: umask is set and set back at once, in a test that starts no thread doing
            // file work meanwhile.
            let old = unsafe { libc::umask(0o022) };
            unsafe { libc::umask(old) };
            old
        };
        for file in [
            DATABASE_FILE,
            "directory.sqlite3-wal",
            "directory.sqlite3-shm",
            MARKER_FILE,
        ] {
            let meta = fs::metadata(path.join(file)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{file}");
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o640 & !(umask as u32),
                "{file}"
            );
        }
    }

    #[tokio::test]
    async fn read_only_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let store = SqliteStore::open_with(&path, Access::ReadOnly, 10).unwrap();
        assert_eq!(store.user("a@x.cjsm.net").await.unwrap(), None);
        assert!(store.audit(10).await.unwrap().is_empty());
        assert!(!path.exists());
        assert!(matches!(
            store.put_users(vec![]).await,
            Err(StoreError::Refused(_))
        ));
        assert!(!path.exists());
        // On an existing store, read-only reads and still refuses writes.
        SqliteStore::open(&path).unwrap();
        let store = SqliteStore::open_with(&path, Access::ReadOnly, 10).unwrap();
        assert!(store.orgs().await.unwrap().is_empty());
        assert!(matches!(
            store.append_audit(admin_event(1)).await,
            Err(StoreError::Refused(_))
        ));
    }

    /// Garbage, an emptied file, a file cut short, written in place under a running reader (as
    /// the fault matrix does) and at a start: an error, never an empty directory, nor answers
    /// from what the reader held in memory; the file is left as it was (nothing is created
    /// over it); put back, it is read again.
    #[tokio::test]
    async fn a_damaged_database_is_an_error_not_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let users: Vec<User> = (0..2000)
            .map(|i| {
                let mut user = test_user(&format!("u{i:05}@o.cjsm.net"), "o1");
                user.town = "x".repeat(200);
                user
            })
            .collect();
        store.put_users(users).await.unwrap();
        // The last connection closed: the WAL is checkpointed into the file.
        drop(store);
        let milter = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(milter.users().await.unwrap().len(), 2000);
        // Later changes in the WAL, not yet in the file (as under a running milter).
        milter.append_audit(admin_event(1)).await.unwrap();
        milter
            .put_org(test_org(
                "o1",
                "Firm",
                &["firm.example"],
                ConnectionType::Server,
            ))
            .await
            .unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let whole = fs::read(&path).unwrap();
        assert!(whole.len() > 64 * 1024, "{}", whole.len());
        for (what, bytes) in [
            ("garbage", vec![0x5a_u8; 4096]),
            ("emptied", Vec::new()),
            ("cut to half", whole[..whole.len() / 2].to_vec()),
        ] {
            fs::write(&path, &bytes).unwrap();
            // Garbage or nothing: every read fails (the header is checked). Cut short: what
            // is read from the pages left is right, what needs the pages gone fails; never an
            // answer of "no such user", never a whole directory read.
            let lookup = milter.lookup("u01999@o.cjsm.net").await;
            let whole_pages_left = what == "cut to half";
            match &lookup {
                Ok(found) => assert!(
                    whole_pages_left && found.user.is_some(),
                    "{what}: {lookup:?}"
                ),
                Err(e) => assert!(
                    whole_pages_left || matches!(e, StoreError::Corrupt { .. }),
                    "{what}: {e}"
                ),
            }
            let users = milter.users().await.map(|u| u.len());
            assert!(users.is_err(), "{what}: {users:?}");
            let reopened = match SqliteStore::open(dir.path()) {
                Ok(store) => store.users().await.map(|u| u.len()),
                Err(e) => Err(e),
            };
            assert!(reopened.is_err(), "{what}: {reopened:?}");
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "{what}: the file was changed"
            );
        }
        fs::write(&path, &whole).unwrap();
        assert!(milter.user("u00001@o.cjsm.net").await.unwrap().is_some());
        assert_eq!(milter.users().await.unwrap().len(), 2000);
    }

    /// The old store's file beside no database: refused, naming the migration, read-write or
    /// read-only, and nothing is created.
    #[test]
    fn an_unmigrated_store_is_refused_naming_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(OLD_FILE), "{}").unwrap();
        for access in [Access::ReadWrite, Access::ReadOnly] {
            let err = SqliteStore::open_with(dir.path(), access, 10).unwrap_err();
            assert!(
                err.to_string().contains("cjsm-milter directory migrate"),
                "{err}"
            );
        }
        assert!(!dir.path().join(DATABASE_FILE).exists());
    }

    #[tokio::test]
    async fn the_audit_trail_keeps_the_newest_retention_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path(), Access::ReadWrite, 10).unwrap();
        for i in 0..25 {
            store.append_audit(admin_event(i)).await.unwrap();
        }
        let events = store.audit(100).await.unwrap();
        assert_eq!(events.len(), 10);
        assert_eq!(events[0].action(), "event 24", "newest first");
        let newest: Vec<u64> = events.iter().map(|e| e.time_ms()).collect();
        assert_eq!(newest, (15..25).rev().collect::<Vec<u64>>());
        let batch: Vec<AuditEvent> = (25..40)
            .map(|i| {
                AuditEvent::Verdict(VerdictEvent {
                    time_ms: i,
                    action: format!("event {i}"),
                    ..VerdictEvent::default()
                })
            })
            .collect();
        store.append_audit_batch(batch).await.unwrap();
        let newest: Vec<u64> = store
            .audit(100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.time_ms())
            .collect();
        assert_eq!(newest, (30..40).rev().collect::<Vec<u64>>());
    }

    /// "Did anything change?": the counter moves with a change made by another process's
    /// store, and not with audit appends (a verdict per message).
    #[tokio::test]
    async fn the_change_counter_moves_with_directory_writes_only() {
        let dir = tempfile::tempdir().unwrap();
        let milter = SqliteStore::open(dir.path()).unwrap();
        let admin = SqliteStore::open(dir.path()).unwrap();
        let before = milter.changes().unwrap();
        milter.append_audit(admin_event(1)).await.unwrap();
        assert_eq!(milter.changes().unwrap(), before);
        admin
            .put_org(test_org(
                "o1",
                "Firm",
                &["firm.example"],
                ConnectionType::Server,
            ))
            .await
            .unwrap();
        let after = milter.changes().unwrap();
        assert!(after > before, "{before} -> {after}");
        // A compare-and-swap that lost writes nothing, and moves nothing.
        assert!(
            !admin
                .swap_users(vec![(Some(7), test_user("a@o.cjsm.net", "o1"))])
                .await
                .unwrap()
        );
        assert_eq!(milter.changes().unwrap(), after);
    }
}
