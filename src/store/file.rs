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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

const USERS_FILE: &str = "users.json";
const LOCK_FILE: &str = "lock";

type Users = BTreeMap<String, User>;

/// Identity of the file version held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

pub struct FileStore {
    dir: PathBuf,
    cache: Mutex<Option<(Stamp, Arc<Users>)>>,
}

impl FileStore {
    /// Opens (creating if needed) the store directory.
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let store = FileStore {
            dir: dir.to_path_buf(),
            cache: Mutex::new(None),
        };
        // Fail at start-up, not at the first message, if the file is unreadable.
        store.users()?;
        Ok(store)
    }

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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Users::new()),
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
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Users) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", lock_path.display())))?;
        lock.lock()
            .map_err(|e| StoreError::Unavailable(format!("lock {}: {e}", lock_path.display())))?;
        let mut users = self.read_file()?;
        let result = change(&mut users)?;
        let tmp = self.dir.join(format!("{USERS_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut file, &users)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, self.users_path())?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| StoreError::Unavailable(format!("write {}: {e}", tmp.display())))?;
        Ok(result)
    }
}

impl Directory for FileStore {
    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        Box::pin(async move { Ok(self.users()?.get(&normalize_address(address)).cloned()) })
    }

    fn add_user(&self, mut user: User) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            user.address = normalize_address(&user.address);
            self.update(|users| {
                if let Some(existing) = users.get(&user.address) {
                    return Err(StoreError::Refused(format!(
                        "{} already exists (organisation {}, {})",
                        existing.address, existing.org, existing.state
                    )));
                }
                users.insert(user.address.clone(), user);
                Ok(())
            })
        })
    }

    fn set_user_state<'a>(
        &'a self,
        address: &'a str,
        state: UserState,
        now: u64,
    ) -> StoreFuture<'a, User> {
        Box::pin(async move {
            let address = normalize_address(address);
            self.update(|users| {
                let user = users
                    .get_mut(&address)
                    .ok_or_else(|| StoreError::Refused(format!("no user {address}")))?;
                user.state = state;
                user.updated = now;
                Ok(user.clone())
            })
        })
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
    async fn corrupt_file_is_an_error_not_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(USERS_FILE), "{ not json").unwrap();
        assert!(matches!(
            FileStore::open(dir.path()),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
