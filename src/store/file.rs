//! The embedded file store: one JSON file in a directory the milter owns.
//!
//! Writers (the admin CLI) take an exclusive lock, write a temporary file and rename it over
//! the old one, so a reader never sees half a file. Readers (the milter) keep the parsed
//! directory in memory and re-read it when the file changes, so a suspension is seen by the
//! next lookup.

use super::{Directory, StoreError, StoreFuture, User, UserState, normalize_address};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

const USERS_FILE: &str = "users.json";
const LOCK_FILE: &str = "lock";
const TMP_FILE: &str = "users.json.tmp";

type Users = BTreeMap<String, User>;

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
    cache: Mutex<Option<(Stamp, Arc<Users>)>>,
}

impl FileStore {
    /// Opens the store directory. Read-write, a missing directory (or an empty one: a fresh
    /// install) is initialised with an empty directory file; a directory that holds other
    /// files but no directory file is refused, as is, later, a directory file that has gone:
    /// that is a store outage (tempfail), not an empty directory (5.1.1 for everyone).
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        FileStore::open_with(dir, Access::ReadWrite)
    }

    pub fn open_with(dir: &Path, access: Access) -> Result<FileStore, StoreError> {
        let store = FileStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                access,
                cache: Mutex::new(None),
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
                return Ok(Users::new());
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

    /// The current directory, re-read when the file changed since the last call.
    fn users(&self) -> Result<Arc<Users>, StoreError> {
        let stamp = self.stamp()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(stamp), Some((held, users))) = (stamp, cache.as_ref())
            && *held == stamp
        {
            return Ok(users.clone());
        }
        let users = Arc::new(self.read_file()?);
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
                .open(&tmp)?;
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
        self.save(&Users::new())
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

impl Directory for FileStore {
    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        let address = normalize_address(address);
        Box::pin(self.blocking(move |inner| Ok(inner.users()?.get(&address).cloned())))
    }

    fn add_user(&self, mut user: User) -> StoreFuture<'_, ()> {
        user.address = normalize_address(&user.address);
        Box::pin(self.blocking(move |inner| {
            inner.update(|users| {
                if let Some(existing) = users.get(&user.address) {
                    return Err(StoreError::Refused(format!(
                        "{} already exists (organisation {}, {})",
                        existing.address, existing.org, existing.state
                    )));
                }
                users.insert(user.address.clone(), user);
                Ok(())
            })
        }))
    }

    fn set_user_state<'a>(
        &'a self,
        address: &'a str,
        state: UserState,
        now: u64,
    ) -> StoreFuture<'a, User> {
        let address = normalize_address(address);
        Box::pin(self.blocking(move |inner| {
            inner.update(|users| {
                let user = users
                    .get_mut(&address)
                    .ok_or_else(|| StoreError::Refused(format!("no user {address}")))?;
                user.state = state;
                user.updated = now;
                Ok(user.clone())
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(address: &str) -> User {
        User {
            address: address.into(),
            org: "smith-chambers".into(),
            first_name: "Alice".into(),
            last_name: "Smith".into(),
            state: UserState::Active,
            created: 1,
            updated: 1,
        }
    }

    #[tokio::test]
    async fn add_find_suspend() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.user("a@x.cjsm.net").await.unwrap(), None);
        store.add_user(user("Alice@X.cjsm.net")).await.unwrap();
        let found = store.user("<alice@x.cjsm.net>").await.unwrap().unwrap();
        assert_eq!(found.state, UserState::Active);
        assert!(matches!(
            store.add_user(user("alice@x.cjsm.net")).await,
            Err(StoreError::Refused(_))
        ));

        // A second handle (another process) sees the change on its next lookup.
        let other = FileStore::open(dir.path()).unwrap();
        other
            .set_user_state("alice@x.cjsm.net", UserState::Suspended, 2)
            .await
            .unwrap();
        let found = store.user("alice@x.cjsm.net").await.unwrap().unwrap();
        assert_eq!(found.state, UserState::Suspended);
        assert_eq!(found.updated, 2);
        assert!(matches!(
            store
                .set_user_state("nobody@x.cjsm.net", UserState::Active, 3)
                .await,
            Err(StoreError::Refused(_))
        ));
    }

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

    #[tokio::test]
    async fn read_only_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let store = FileStore::open_with(&path, Access::ReadOnly).unwrap();
        assert_eq!(store.user("a@x.cjsm.net").await.unwrap(), None);
        assert!(!path.exists());
        assert!(matches!(
            store.add_user(user("a@x.cjsm.net")).await,
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
}
