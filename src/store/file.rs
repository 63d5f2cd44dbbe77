//! The embedded file store: one JSON file in a directory the milter owns, and an audit log
//! beside it.
//!
//! Writers (the admin CLI) take an exclusive lock, write a temporary file and rename it over
//! the old one, so a reader never sees half a file. Readers (the milter) keep the parsed
//! directory in memory, with the organisation-by-domain index built from it (the file holds
//! no index), and re-read both when the file changes, so a suspension is seen by the next
//! lookup. The audit log is JSON lines, rotated once it holds half the retention, so at
//! most `audit_retention` entries are kept.

use super::{AuditTrail, DirectoryRead, DirectoryWrite, StoreError, StoreFuture, domain_key};
use crate::address::normalize_address;
use crate::directory::model::{AuditEvent, Certificate, Lookup, Organisation, User};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

const USERS_FILE: &str = "directory.json";
const LOCK_FILE: &str = "lock";
const TMP_FILE: &str = "directory.json.tmp";
const AUDIT_FILE: &str = "audit.log";
const AUDIT_OLD_FILE: &str = "audit.log.1";

/// The directory file's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Users {
    #[serde(default)]
    orgs: BTreeMap<String, Organisation>,
    #[serde(default)]
    users: BTreeMap<String, User>,
    /// Claimed domain -> the organisation holding it.
    #[serde(default)]
    domains: BTreeMap<String, String>,
    /// Address -> its S/MIME certificate.
    #[serde(default)]
    certificates: BTreeMap<String, Certificate>,
}

/// The directory as held in memory: the file's content, and what is built from it on load.
struct Loaded {
    data: Users,
    /// A domain (as [`domain_key`] writes it) -> the organisation whose `domains` lists it;
    /// should two list one, the first by id.
    org_by_domain: HashMap<String, String>,
}

impl Loaded {
    fn new(data: Users) -> Loaded {
        let mut org_by_domain = HashMap::new();
        for (id, org) in &data.orgs {
            for domain in &org.domains {
                org_by_domain
                    .entry(domain_key(domain))
                    .or_insert_with(|| id.clone());
            }
        }
        Loaded {
            data,
            org_by_domain,
        }
    }
}

impl std::ops::Deref for Loaded {
    type Target = Users;

    fn deref(&self) -> &Users {
        &self.data
    }
}

/// Identity of the file version held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// How the store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The milter and the admin commands: the directory is created on first use.
    ReadWrite,
    /// `check`: nothing is created; a store that does not exist is an empty directory.
    ReadOnly,
}

#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    access: Access,
    cache: Mutex<Option<(Stamp, Arc<Loaded>)>>,
    audit_retention: usize,
    /// Entries in the current audit file, counted at open and kept up to date by this process.
    audit_lines: Mutex<usize>,
}

impl FileStore {
    /// Opens the store directory. Read-write, a missing directory (or an empty one: a fresh
    /// install) is initialised with an empty directory file; a directory that holds other
    /// files but no directory file is refused, as is, later, a directory file that has gone:
    /// that is a store outage (tempfail), not an empty directory (5.1.1 for everyone).
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        FileStore::open_with(dir, Access::ReadWrite, 100_000)
    }

    pub fn open_with(
        dir: &Path,
        access: Access,
        audit_retention: usize,
    ) -> Result<FileStore, StoreError> {
        let audit_lines = count_lines(&dir.join(AUDIT_FILE));
        let store = FileStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                access,
                cache: Mutex::new(None),
                audit_retention: audit_retention.max(2),
                audit_lines: Mutex::new(audit_lines),
            }),
        };
        if access == Access::ReadWrite {
            store.initialise()?;
        }
        // Fail at start-up, not at the first message, if the file is unreadable.
        store.inner.users()?;
        Ok(store)
    }

    fn initialise(&self) -> Result<(), StoreError> {
        let dir = &self.inner.dir;
        // The directory holds personal data: owner and group only.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        if self.inner.users_path().exists() {
            return Ok(());
        }
        let mut entries = fs::read_dir(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        // Only an empty directory is a fresh install: once initialised, it holds the lock.
        let fresh = entries.next().is_none();
        if !fresh {
            return Err(StoreError::Unavailable(format!(
                "{} holds files but no {USERS_FILE}: not starting on an empty directory \
                 (restore {USERS_FILE}, or point [store] path at an empty directory)",
                dir.display()
            )));
        }
        self.inner.create_empty()
    }
}

impl Inner {
    fn users_path(&self) -> PathBuf {
        self.dir.join(USERS_FILE)
    }

    fn stamp(&self) -> Result<Option<Stamp>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(self.users_path()) {
            Ok(meta) => Ok(Some(Stamp {
                modified: meta.modified().ok(),
                len: meta.len(),
                inode: meta.ino(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(format!(
                "{}: {e}",
                self.users_path().display()
            ))),
        }
    }

    fn read_file(&self) -> Result<Users, StoreError> {
        let path = self.users_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && self.access == Access::ReadOnly =>
            {
                return Ok(Users::default());
            }
            Err(e) => {
                return Err(StoreError::Unavailable(format!("{}: {e}", path.display())));
            }
        };
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            message: format!("line {}: {e}", e.line()),
        })
    }

    /// The directory held in memory, if the file has not changed since it was read.
    fn current(&self) -> Option<Arc<Loaded>> {
        let stamp = self.stamp().ok()??;
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some((held, users)) if *held == stamp => Some(users.clone()),
            _ => None,
        }
    }

    /// The current directory, re-read when the file changed since the last call.
    fn users(&self) -> Result<Arc<Loaded>, StoreError> {
        let stamp = self.stamp()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(stamp), Some((held, users))) = (stamp, cache.as_ref())
            && *held == stamp
        {
            return Ok(users.clone());
        }
        let users = Arc::new(Loaded::new(self.read_file()?));
        if let Some(stamp) = stamp {
            *cache = Some((stamp, users.clone()));
        }
        Ok(users)
    }

    /// Runs `change` on the directory under the writer lock and saves the result atomically.
    /// The writer lock, held while the returned file is open.
    fn lock(&self) -> Result<File, StoreError> {
        if self.access == Access::ReadOnly {
            return Err(StoreError::Refused("the store is open read-only".into()));
        }
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(&lock_path)
            .and_then(|file| owned_like_dir(file, &self.dir))
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", lock_path.display())))?;
        lock.lock()
            .map_err(|e| StoreError::Unavailable(format!("lock {}: {e}", lock_path.display())))?;
        Ok(lock)
    }

    /// Writes the directory file atomically: a temporary file renamed over the old one.
    fn save(&self, users: &Users) -> Result<(), StoreError> {
        let tmp = self.dir.join(TMP_FILE);
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .open(&tmp)
                .and_then(|file| owned_like_dir(file, &self.dir))?;
            serde_json::to_writer_pretty(&mut file, users)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, self.users_path())?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| StoreError::Unavailable(format!("write {}: {e}", tmp.display())))
    }

    /// Creates an empty directory file unless one exists.
    fn create_empty(&self) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        if self.users_path().exists() {
            return Ok(());
        }
        self.save(&Users::default())
    }

    /// Runs `change` on the directory under the writer lock and saves the result.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Users) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        let mut users = self.read_file()?;
        let result = change(&mut users)?;
        self.save(&users)?;
        Ok(result)
    }
}

impl FileStore {
    /// Runs file work on the blocking pool, so a slow disk cannot stall the milter's I/O
    /// threads and the stage deadline can still fire.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store worker failed: {e}")))?
    }
}

impl Inner {
    fn audit_path(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    /// Appends one line per event, in one write while the current file has room; past half
    /// the retention the file becomes `audit.log.1` (replacing the older half), so at most
    /// `audit_retention` entries are kept.
    fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if self.access == Access::ReadOnly {
            return Err(StoreError::Refused("the store is open read-only".into()));
        }
        let mut pending: Vec<Vec<u8>> = Vec::with_capacity(events.len());
        for event in events {
            let mut line = serde_json::to_vec(event)
                .map_err(|e| StoreError::Unavailable(format!("audit event: {e}")))?;
            line.push(b'\n');
            pending.push(line);
        }
        let mut lines = self.audit_lines.lock().unwrap_or_else(|p| p.into_inner());
        let half = self.audit_retention / 2;
        let mut rest = &pending[..];
        while !rest.is_empty() {
            if *lines >= half {
                let _lock = self.lock()?;
                // Another process may have rotated already: count again under the lock.
                if count_lines(&self.audit_path()) >= half {
                    fs::rename(self.audit_path(), self.dir.join(AUDIT_OLD_FILE)).map_err(|e| {
                        StoreError::Unavailable(format!(
                            "rotate {}: {e}",
                            self.audit_path().display()
                        ))
                    })?;
                }
                *lines = count_lines(&self.audit_path());
            }
            let room = half.saturating_sub(*lines).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(self.audit_path())
                .and_then(|file| owned_like_dir(file, &self.dir))
                .map_err(|e| {
                    StoreError::Unavailable(format!("{}: {e}", self.audit_path().display()))
                })?;
            file.write_all(&now.concat()).map_err(|e| {
                StoreError::Unavailable(format!("{}: {e}", self.audit_path().display()))
            })?;
            *lines += now.len();
            rest = later;
        }
        Ok(())
    }

    fn audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = Vec::new();
        for file in [AUDIT_FILE, AUDIT_OLD_FILE] {
            let mut newest_first = read_audit(&self.dir.join(file))?;
            newest_first.reverse();
            events.extend(newest_first);
            if events.len() >= limit {
                break;
            }
        }
        events.truncate(limit);
        Ok(events)
    }
}

/// A file of the store as this process opened (maybe created) it; when root opened it (an
/// administrator's command run as root), given to the store directory's owner and group if
/// it is not theirs, as the service account would have created it: the milter, running as
/// that account, must still read the directory file and append to the audit log.
fn owned_like_dir(file: File, dir: &Path) -> std::io::Result<File> {
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

/// Lines in a file (0 when it does not exist).
fn count_lines(path: &Path) -> usize {
    File::open(path).map_or(0, |f| BufReader::new(f).split(b'\n').count())
}

/// The events of one audit file, oldest first; a line that does not parse is skipped.
fn read_audit(path: &Path) -> Result<Vec<AuditEvent>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::Unavailable(format!("{}: {e}", path.display()))),
    };
    Ok(BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_slice(&line).ok())
        .collect())
}

impl DirectoryRead for FileStore {
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup> {
        let address = normalize_address(address);
        let answer = move |data: &Users| {
            let user = data.users.get(&address).cloned();
            let org = match &user {
                Some(u) => data.orgs.get(&u.org).cloned(),
                // No such user: the organisation holding the domain, if any.
                None => address
                    .rsplit_once('@')
                    .and_then(|(_, domain)| data.domains.get(domain))
                    .and_then(|id| data.orgs.get(id).cloned()),
            };
            let certificate = data.certificates.get(&address).cloned();
            Lookup {
                user,
                org,
                certificate,
            }
        };
        // The directory in memory is current (one stat): answer here, without a hop to a
        // worker thread and back for every recipient. A changed file is re-read on one.
        if let Some(data) = self.inner.current() {
            let lookup = answer(&data);
            return Box::pin(async move { Ok(lookup) });
        }
        Box::pin(self.blocking(move |inner| Ok(answer(&*inner.users()?))))
    }

    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        let address = normalize_address(address);
        Box::pin(self.blocking(move |inner| Ok(inner.users()?.users.get(&address).cloned())))
    }

    fn users(&self) -> StoreFuture<'_, Vec<User>> {
        Box::pin(self.blocking(|inner| Ok(inner.users()?.users.values().cloned().collect())))
    }

    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        let id = id.to_string();
        Box::pin(self.blocking(move |inner| Ok(inner.users()?.orgs.get(&id).cloned())))
    }

    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
        Box::pin(self.blocking(|inner| Ok(inner.users()?.orgs.values().cloned().collect())))
    }

    fn org_by_domain<'a>(&'a self, domain: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        let key = domain_key(domain);
        let answer = move |data: &Loaded| {
            data.org_by_domain
                .get(&key)
                .and_then(|id| data.orgs.get(id).cloned())
        };
        if let Some(data) = self.inner.current() {
            let org = answer(&data);
            return Box::pin(async move { Ok(org) });
        }
        Box::pin(self.blocking(move |inner| Ok(answer(&*inner.users()?))))
    }

    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>> {
        Box::pin(self.blocking(|inner| Ok(inner.users()?.certificates.values().cloned().collect())))
    }

    fn size(&self) -> StoreFuture<'_, (usize, usize)> {
        Box::pin(self.blocking(|inner| {
            let data = inner.users()?;
            Ok((data.users.len(), data.orgs.len()))
        }))
    }

    fn written(&self) -> StoreFuture<'_, bool> {
        Box::pin(async { Ok(true) })
    }
}

impl DirectoryWrite for FileStore {
    fn put_users(&self, users: Vec<User>) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |inner| {
            inner.update(|data| {
                for mut user in users {
                    user.address = normalize_address(&user.address);
                    data.users.insert(user.address.clone(), user);
                }
                Ok(())
            })
        }))
    }

    fn put_org(&self, org: Organisation) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |inner| {
            inner.update(|data| {
                data.orgs.insert(org.id.clone(), org);
                Ok(())
            })
        }))
    }

    fn swap_users(&self, changes: Vec<(Option<u64>, User)>) -> StoreFuture<'_, bool> {
        Box::pin(self.blocking(move |inner| {
            inner.update(|data| {
                let current = |address: &str| data.users.get(address).map(|u| u.revision);
                if changes
                    .iter()
                    .any(|(expected, user)| current(&normalize_address(&user.address)) != *expected)
                {
                    return Ok(false);
                }
                for (expected, mut user) in changes {
                    user.address = normalize_address(&user.address);
                    user.revision = expected.map_or(1, |r| r + 1);
                    data.users.insert(user.address.clone(), user);
                }
                Ok(true)
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
            inner.update(|data| {
                if data.orgs.get(&org.id).map(|o| o.revision) != expected {
                    return Ok(false);
                }
                for domain in &domains {
                    if let Some(holder) = data.domains.get(domain).filter(|h| **h != org.id) {
                        return Err(StoreError::Refused(format!("{domain} is held by {holder}")));
                    }
                }
                for domain in domains {
                    data.domains.insert(domain, org.id.clone());
                }
                org.revision = expected.map_or(1, |r| r + 1);
                data.orgs.insert(org.id.clone(), org);
                Ok(true)
            })
        }))
    }

    fn put_certificate(&self, mut cert: Certificate) -> StoreFuture<'_, ()> {
        cert.address = normalize_address(&cert.address);
        Box::pin(self.blocking(move |inner| {
            inner.update(|data| {
                data.certificates.insert(cert.address.clone(), cert);
                Ok(())
            })
        }))
    }

    fn remove_certificate<'a>(&'a self, address: &'a str) -> StoreFuture<'a, bool> {
        let address = normalize_address(address);
        Box::pin(self.blocking(move |inner| {
            inner.update(|data| Ok(data.certificates.remove(&address).is_some()))
        }))
    }
}

impl AuditTrail for FileStore {
    fn append_audit(&self, event: AuditEvent) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |inner| inner.append_audit(std::slice::from_ref(&event))))
    }

    fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |inner| inner.append_audit(&events)))
    }

    fn audit(&self, limit: usize) -> StoreFuture<'_, Vec<AuditEvent>> {
        Box::pin(self.blocking(move |inner| inner.audit(limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::model::{AdminEvent, VerdictEvent};

    #[tokio::test]
    async fn a_lost_directory_file_is_an_outage_not_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.user("a@x.cjsm.net").await.unwrap(), None);
        fs::remove_file(dir.path().join(USERS_FILE)).unwrap();
        assert!(matches!(
            store.user("a@x.cjsm.net").await,
            Err(StoreError::Unavailable(_))
        ));
        // Nor does a restart paper over it.
        assert!(matches!(
            FileStore::open(dir.path()),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn files_are_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        FileStore::open(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path) & 0o007, 0, "directory");
        assert_eq!(mode(&path.join(USERS_FILE)) & 0o007, 0, "directory file");
    }

    /// An administrator's command run as root must not leave the directory file, the lock or
    /// the audit log to root alone: the milter, running as the service account that owns the
    /// store directory, has to keep reading and appending to them.
    #[tokio::test]
    async fn files_written_by_root_keep_the_owner_of_the_store() {
        use std::os::unix::fs::MetadataExt;
        assert!(
            crate::privilege::is_root(),
            "this test gives files to another owner and must run as root (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        fs::create_dir(&path).unwrap();
        // nobody:nogroup on Debian; any ids other than root's do.
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let store = FileStore::open(&path).unwrap();
        store
            .put_org(crate::directory::model::test_org(
                "o1",
                "Firm",
                &["firm.example"],
                crate::directory::model::ConnectionType::Server,
            ))
            .await
            .unwrap();
        let event = AuditEvent::Admin(AdminEvent {
            action: "root's change".into(),
            ..AdminEvent::default()
        });
        store.append_audit(event).await.unwrap();
        for file in [USERS_FILE, LOCK_FILE, AUDIT_FILE] {
            let meta = fs::metadata(path.join(file)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{file}");
        }
    }

    #[tokio::test]
    async fn read_only_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let store = FileStore::open_with(&path, Access::ReadOnly, 10).unwrap();
        assert_eq!(store.user("a@x.cjsm.net").await.unwrap(), None);
        assert!(!path.exists());
        assert!(matches!(
            store.put_users(vec![]).await,
            Err(StoreError::Refused(_))
        ));
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn corrupt_file_is_an_error_not_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(USERS_FILE), "{ not json").unwrap();
        assert!(matches!(
            FileStore::open(dir.path()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn audit_rotation_keeps_at_most_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_with(dir.path(), Access::ReadWrite, 10).unwrap();
        for i in 0..25 {
            let event = AuditEvent::Admin(AdminEvent {
                time_ms: i,
                action: format!("event {i}"),
                ..AdminEvent::default()
            });
            store.append_audit(event).await.unwrap();
        }
        let events = store.audit(100).await.unwrap();
        assert!(events.len() <= 10, "{}", events.len());
        assert_eq!(events[0].action(), "event 24", "newest first");
        let newest: Vec<u64> = events.iter().map(|e| e.time_ms()).collect();
        assert!(newest.windows(2).all(|w| w[0] > w[1]), "{newest:?}");
    }

    #[tokio::test]
    async fn a_batch_rotates_where_single_appends_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_with(dir.path(), Access::ReadWrite, 10).unwrap();
        let events = |range: std::ops::Range<u64>| -> Vec<AuditEvent> {
            range
                .map(|i| {
                    AuditEvent::Verdict(VerdictEvent {
                        time_ms: i,
                        action: format!("event {i}"),
                        ..VerdictEvent::default()
                    })
                })
                .collect()
        };
        store.append_audit_batch(events(0..3)).await.unwrap();
        store.append_audit_batch(events(3..25)).await.unwrap();
        let got = store.audit(100).await.unwrap();
        assert_eq!(got.len(), 10, "two full halves of the retention");
        let newest: Vec<u64> = got.iter().map(|e| e.time_ms()).collect();
        assert_eq!(newest, (15..25).rev().collect::<Vec<u64>>());
    }
}
