//! `cjsm-milter directory migrate`: the embedded store of earlier versions (one
//! `directory.json` document, rewritten on every change, and the `audit.log` / `audit.log.1`
//! JSON lines beside it) moved into the SQLite database in one command.
//!
//! The old files are read whole (under the old store's writer lock, so an earlier version's
//! admin command cannot change them meanwhile), written into a database built aside in one
//! transaction, counted back, and only then is the database put in place and the old files
//! renamed aside (`directory.json.migrated`, …). Run again, it says the store is already
//! migrated and changes nothing. This module is the only reader of the old format left.

use super::StoreError;
use super::sqlite::{self, DATABASE_FILE, OLD_FILE};
use crate::address::normalize_address;
use crate::directory::model::{AuditEvent, Certificate, Organisation, User};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// The old store's writer lock.
const OLD_LOCK: &str = "lock";
/// The old audit log: the current half, then the older half.
const OLD_AUDIT: &str = "audit.log";
const OLD_AUDIT_PREVIOUS: &str = "audit.log.1";
/// What the old files are renamed to once migrated.
const MIGRATED: &str = ".migrated";
/// The largest `directory.json` read (50k users made 17 MB): a bound, not a limit in practice.
const MAX_OLD_BYTES: u64 = 1 << 30;

/// `directory.json`'s content, as earlier versions wrote it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Old {
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

/// What a migration did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Migrated {
        organisations: usize,
        users: usize,
        claims: usize,
        certificates: usize,
        audit: usize,
    },
    /// The database is there and no `directory.json`: nothing to do.
    AlreadyMigrated,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Migrated {
                organisations,
                users,
                claims,
                certificates,
                audit,
            } => write!(
                f,
                "migrated {organisations} organisations, {users} users, {claims} domain \
                 claims, {certificates} certificates and {audit} audit entries into \
                 {DATABASE_FILE}; the old files are renamed *{MIGRATED}"
            ),
            Outcome::AlreadyMigrated => write!(
                f,
                "already migrated: {DATABASE_FILE} is the directory and there is no {OLD_FILE}; \
                 nothing changed"
            ),
        }
    }
}

fn unavailable(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(what.to_string())
}

/// Moves the old embedded store in `dir` into the database, keeping at most `audit_retention`
/// audit entries (the newest). Blocking: file and database work.
pub fn migrate(dir: &Path, audit_retention: usize) -> Result<Outcome, StoreError> {
    let old = dir.join(OLD_FILE);
    let database = dir.join(DATABASE_FILE);
    let exists = |path: &Path| {
        fs::symlink_metadata(path)
            .map(|_| true)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(false),
                _ => Err(unavailable(format!("{}: {e}", path.display()))),
            })
    };
    match (exists(&old)?, exists(&database)?) {
        (false, true) => return Ok(Outcome::AlreadyMigrated),
        (false, false) => {
            return Err(unavailable(format!(
                "nothing to migrate: {} holds neither {OLD_FILE} nor {DATABASE_FILE}",
                dir.display()
            )));
        }
        (true, true) => {
            return Err(unavailable(format!(
                "{} and {} both exist (nothing was changed): the database is the directory; \
                 if a migration stopped after putting it in place, or {OLD_FILE} is an old \
                 copy, rename {OLD_FILE} to {OLD_FILE}{MIGRATED}",
                old.display(),
                database.display()
            )));
        }
        (true, false) => {}
    }
    // An earlier version's admin command writes under this lock: hold it throughout.
    let lock_path = dir.join(OLD_LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|file| sqlite::owned_like_dir(file, dir))
        .map_err(|e| unavailable(format!("{}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| unavailable(format!("lock {}: {e}", lock_path.display())))?;

    let data = read_old(&old)?;
    let mut audit = read_audit(&dir.join(OLD_AUDIT_PREVIOUS))?;
    audit.extend(read_audit(&dir.join(OLD_AUDIT))?);
    let audit_retention = audit_retention.max(1);
    if audit.len() > audit_retention {
        audit.drain(..audit.len() - audit_retention);
    }
    let expected = (
        data.orgs.len(),
        data.users.len(),
        data.domains.len(),
        data.certificates.len(),
        audit.len(),
    );
    sqlite::build(dir, |tx| {
        let put = || -> rusqlite::Result<(usize, usize, usize, usize, usize)> {
            for org in data.orgs.values() {
                sqlite::put_org(tx, org)?;
            }
            for user in data.users.values() {
                let mut user = user.clone();
                user.address = normalize_address(&user.address);
                sqlite::put_user(tx, &user)?;
            }
            for (domain, org) in &data.domains {
                sqlite::put_claim(tx, domain, org)?;
            }
            for cert in data.certificates.values() {
                sqlite::put_cert(tx, cert)?;
            }
            sqlite::append_audit(tx, &audit, audit_retention)?;
            Ok((
                sqlite::count(tx, "organisations")?,
                sqlite::count(tx, "users")?,
                sqlite::count(tx, "domain_claims")?,
                sqlite::count(tx, "certificates")?,
                sqlite::count(tx, "audit")?,
            ))
        };
        let counted =
            put().map_err(|e| unavailable(format!("writing the migrated directory: {e}")))?;
        // Everything read is in the database, or nothing is put in place.
        if counted != expected {
            return Err(unavailable(format!(
                "the migrated database holds (organisations, users, claims, certificates, \
                 audit) {counted:?} where {OLD_FILE} held {expected:?}: not put in place"
            )));
        }
        Ok(())
    })?;
    for name in [
        OLD_FILE,
        OLD_AUDIT,
        OLD_AUDIT_PREVIOUS,
        "directory.json.tmp",
    ] {
        let from = dir.join(name);
        if exists(&from)? {
            let to = dir.join(format!("{name}{MIGRATED}"));
            fs::rename(&from, &to).map_err(|e| {
                unavailable(format!(
                    "the database is in place, but renaming {} aside failed: {e} (rename it \
                     by hand before starting the milter)",
                    from.display()
                ))
            })?;
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| unavailable(format!("sync {}: {e}", dir.display())))?;
    drop(lock);
    let _ = fs::remove_file(&lock_path);
    Ok(Outcome::Migrated {
        organisations: expected.0,
        users: expected.1,
        claims: expected.2,
        certificates: expected.3,
        audit: expected.4,
    })
}

/// The old directory file, whole; one that does not parse is refused (nothing is migrated
/// from half a directory).
fn read_old(path: &Path) -> Result<Old, StoreError> {
    let len = fs::metadata(path)
        .map_err(|e| unavailable(format!("{}: {e}", path.display())))?
        .len();
    if len > MAX_OLD_BYTES {
        return Err(unavailable(format!(
            "{}: {len} bytes, more than the {MAX_OLD_BYTES} read",
            path.display()
        )));
    }
    let text =
        fs::read_to_string(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        path: path.display().to_string(),
        message: format!("line {}: {e}", e.line()),
    })
}

/// The events of one old audit file, oldest first. A line that does not parse is skipped, as
/// the old store read them (a line torn by a crash).
fn read_audit(path: &Path) -> Result<Vec<AuditEvent>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unavailable(format!("{}: {e}", path.display()))),
    };
    Ok(BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_slice(&line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What migrate refuses changes nothing: no old file (nothing to migrate), a directory file
    /// that does not parse (nothing migrated from half a directory), and an old file beside a
    /// database already in use.
    #[test]
    fn migrate_refuses_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let err = migrate(dir.path(), 10).unwrap_err();
        assert!(err.to_string().contains("nothing to migrate"), "{err}");

        fs::write(dir.path().join(OLD_FILE), "{ \"orgs\": ").unwrap();
        let err = migrate(dir.path(), 10).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(!dir.path().join(DATABASE_FILE).exists());
        assert!(dir.path().join(OLD_FILE).exists());

        fs::write(dir.path().join(OLD_FILE), "{}").unwrap();
        assert!(matches!(
            migrate(dir.path(), 10).unwrap(),
            Outcome::Migrated { users: 0, .. }
        ));
        fs::write(dir.path().join(OLD_FILE), "{}").unwrap();
        let err = migrate(dir.path(), 10).unwrap_err();
        assert!(err.to_string().contains("both exist"), "{err}");
        assert!(dir.path().join(OLD_FILE).exists());
    }

    /// The old audit log's two halves, oldest first, the newest `audit_retention` kept.
    #[tokio::test]
    async fn the_audit_log_comes_along_in_order() {
        use crate::store::{AuditTrail, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(OLD_FILE), "{}").unwrap();
        let line =
            |i: u64| format!("{{\"kind\":\"admin\",\"time_ms\":{i},\"action\":\"event {i}\"}}\n");
        fs::write(
            dir.path().join(OLD_AUDIT_PREVIOUS),
            (0..5).map(line).collect::<String>(),
        )
        .unwrap();
        fs::write(
            dir.path().join(OLD_AUDIT),
            (5..8).map(line).collect::<String>() + "{torn",
        )
        .unwrap();
        assert!(matches!(
            migrate(dir.path(), 6).unwrap(),
            Outcome::Migrated { audit: 6, .. }
        ));
        let store = SqliteStore::open(dir.path()).unwrap();
        let times: Vec<u64> = store
            .audit(100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.time_ms())
            .collect();
        assert_eq!(times, [7, 6, 5, 4, 3, 2]);
        for old in [OLD_FILE, OLD_AUDIT, OLD_AUDIT_PREVIOUS] {
            assert!(
                dir.path().join(format!("{old}{MIGRATED}")).exists(),
                "{old}"
            );
        }
    }
}
