//! Least privilege for `cjsm-milter run`.
//!
//! Started as root (by hand, or by an init system without `User=`), the daemon binds what may
//! need root (a unix socket in a root-owned directory, a port below 1024), gives the socket to
//! the service account, and then becomes that account for good: supplementary groups, group,
//! user, in that order (once the user is changed, the groups can no longer be). The Redis
//! password and TLS files are read before, while root may still read them; what it opens
//! afterwards (the store, the audit log, the config and certificates on SIGHUP) it opens as
//! that account, so a fault in the code that reads hostile mail holds no more than the
//! account's rights. Started unprivileged (systemd's `User=`), nothing here runs.

use crate::config::MilterConfig;
use std::ffi::CString;
use std::io;
use std::path::Path;
use tracing::warn;

/// The service account the Debian package and the MTA kits create.
pub const SERVICE_USER: &str = "cjsm-milter";

/// The built-in default's account where the service account does not exist (a fresh machine,
/// `cargo run`): present on every Debian system, and owning nothing.
pub const FALLBACK_USER: &str = "nobody";

/// How to create the service account, as postfix/README.md and the package do.
pub const CREATE_USER: &str =
    "useradd --system --home-dir /var/lib/cjsm-milter --shell /usr/sbin/nologin cjsm-milter";

/// The account the daemon becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

/// What `run` does about privileges, decided before anything is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Not started as root: nothing to drop, nothing attempted.
    Unprivileged,
    /// Started as root with `allow_root = true`: stays root.
    StayRoot,
    /// Started as root: becomes this account once the sockets are bound.
    Become(Account),
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "started as root with no account to run as ([milter] user = \"\"): set [milter] user \
         to the service account (create it with: {CREATE_USER}), or set [milter] allow_root = \
         true to stay root"
    )]
    NoUser,
    #[error(
        "started as root, and neither the service account {SERVICE_USER} nor {FALLBACK_USER} \
         exists: create the service account with: {CREATE_USER} (or set [milter] allow_root = \
         true to stay root)"
    )]
    NoServiceUser,
    #[error(
        "[milter] user {0:?} does not exist: create it (for the service account: {CREATE_USER}) \
         or name an existing account"
    )]
    UnknownUser(String),
    #[error("[milter] group {0:?} does not exist")]
    UnknownGroup(String),
    #[error(
        "[milter] user {0:?} is root (uid 0), which keeps every privilege: name an unprivileged \
         account, or set [milter] allow_root = true to stay root"
    )]
    RootUser(String),
    #[error("[milter] group {0:?} is root's (gid 0): name an unprivileged group")]
    RootGroup(String),
    #[error("looking up {what} {name:?}: {error}")]
    Lookup {
        what: &'static str,
        name: String,
        error: io::Error,
    },
    #[error("becoming {user}:{group}: {step} failed: {error}")]
    Drop {
        user: String,
        group: String,
        step: &'static str,
        error: io::Error,
    },
    #[error("becoming {user}:{group}: still privileged afterwards ({what})")]
    StillPrivileged {
        user: String,
        group: String,
        what: String,
    },
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    effective_uid() == 0
}

/// What to do, from the settings; a configured account that does not exist is an error here,
/// before anything is bound or opened.
pub fn plan(milter: &MilterConfig) -> Result<Plan, PrivilegeError> {
    if !is_root() {
        return Ok(Plan::Unprivileged);
    }
    if milter.allow_root {
        warn!(
            "running as root ([milter] allow_root = true): the milter keeps every privilege; \
             give it an account of its own ([milter] user)"
        );
        return Ok(Plan::StayRoot);
    }
    let (user, uid, login_gid) = match milter.user.as_deref() {
        Some("") => return Err(PrivilegeError::NoUser),
        Some(name) => {
            let (uid, gid) =
                user_by_name(name)?.ok_or_else(|| PrivilegeError::UnknownUser(name.into()))?;
            (name.to_string(), uid, gid)
        }
        None => match user_by_name(SERVICE_USER)? {
            Some((uid, gid)) => (SERVICE_USER.to_string(), uid, gid),
            None => {
                let (uid, gid) =
                    user_by_name(FALLBACK_USER)?.ok_or(PrivilegeError::NoServiceUser)?;
                (FALLBACK_USER.to_string(), uid, gid)
            }
        },
    };
    if uid == 0 {
        return Err(PrivilegeError::RootUser(user));
    }
    let (group, gid) = match milter.group.as_deref() {
        Some(name) => {
            let gid =
                group_by_name(name)?.ok_or_else(|| PrivilegeError::UnknownGroup(name.into()))?;
            (name.to_string(), gid)
        }
        // A login group without a name in /etc/group is shown by its number.
        None => (
            group_name(login_gid)?.unwrap_or_else(|| login_gid.to_string()),
            login_gid,
        ),
    };
    if gid == 0 {
        return Err(PrivilegeError::RootGroup(group));
    }
    if milter.user.is_none() && user != SERVICE_USER {
        warn!(
            user = %user,
            group = %group,
            "no account {SERVICE_USER} on this machine: running as {user}:{group}; create the \
             service account with: {CREATE_USER}"
        );
    }
    Ok(Plan::Become(Account {
        user,
        uid,
        group,
        gid,
    }))
}

/// Before the drop: a store directory that does not exist yet is created (0750, its missing
/// parents 0755 so the account can reach it) and given to the account, which could not create
/// it under a root-owned parent. One that exists is left as it is: whose it is stays the
/// administrator's choice, and opening it as the account says if the account cannot use it.
pub fn prepare_directory(path: &Path, account: &Account) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", parent.display())))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o750)
        .create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", path.display())))?;
    // lchown: a path swapped for a link in between is not followed.
    std::os::unix::fs::lchown(path, Some(account.uid), Some(account.gid)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "chown {}:{} {}: {e}",
                account.user,
                account.group,
                path.display()
            ),
        )
    })
}

/// Before the drop: the unix socket is given to the account, as it would be had the account
/// bound it, and to its group unless `[milter] socket_group` gave it to the MTA's.
pub fn give_socket(path: &Path, account: &Account, keep_group: bool) -> io::Result<()> {
    let gid = (!keep_group).then_some(account.gid);
    std::os::unix::fs::lchown(path, Some(account.uid), gid).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("chown {} {}: {e}", account.user, path.display()),
        )
    })
}

/// Becomes the account for good: its supplementary groups (from the group database), its
/// group, its user; then checks that the real, effective and saved ids are all the account's
/// and that root cannot be had back. Any failure is an error: the daemon does not serve mail
/// half-dropped.
pub fn become_account(account: &Account) -> Result<(), PrivilegeError> {
    let failed = |step: &'static str| PrivilegeError::Drop {
        user: account.user.clone(),
        group: account.group.clone(),
        step,
        error: io::Error::last_os_error(),
    };
    let name = CString::new(account.user.as_str()).map_err(|e| PrivilegeError::Drop {
        user: account.user.clone(),
        group: account.group.clone(),
        step: "the user name",
        error: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    // SAFETY: initgroups(3), setgid(2) and setuid(2) with a NUL-terminated name and plain ids;
    // glibc applies each to every thread of the process.
    unsafe {
        if libc::initgroups(name.as_ptr(), account.gid) != 0 {
            return Err(failed("initgroups"));
        }
        if libc::setgid(account.gid) != 0 {
            return Err(failed("setgid"));
        }
        if libc::setuid(account.uid) != 0 {
            return Err(failed("setuid"));
        }
    }
    let still = |what: String| PrivilegeError::StillPrivileged {
        user: account.user.clone(),
        group: account.group.clone(),
        what,
    };
    let (mut ruid, mut euid, mut suid) = (0, 0, 0);
    let (mut rgid, mut egid, mut sgid) = (0, 0, 0);
    // SAFETY: getresuid(2) and getresgid(2) write three ids into our own variables.
    let read = unsafe {
        libc::getresuid(&mut ruid, &mut euid, &mut suid) == 0
            && libc::getresgid(&mut rgid, &mut egid, &mut sgid) == 0
    };
    if !read {
        return Err(still(format!(
            "reading the ids: {}",
            io::Error::last_os_error()
        )));
    }
    if [ruid, euid, suid] != [account.uid; 3] || [rgid, egid, sgid] != [account.gid; 3] {
        return Err(still(format!(
            "uids {ruid}/{euid}/{suid}, gids {rgid}/{egid}/{sgid}"
        )));
    }
    // SAFETY: setuid(2); it must fail now. Should it succeed we are root again, and the caller
    // stops the daemon.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(still("setuid(0) succeeded".into()));
    }
    Ok(())
}

/// The uid and login gid of a user in the password database; `None` when there is none.
fn user_by_name(name: &str) -> Result<Option<(u32, u32)>, PrivilegeError> {
    let lookup = |error| PrivilegeError::Lookup {
        what: "user",
        name: name.into(),
        error,
    };
    let c_name =
        CString::new(name).map_err(|e| lookup(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    with_buffer(|buf| {
        // SAFETY: getpwnam_r(3) with a NUL-terminated name, a zeroed passwd it fills, and a
        // buffer of the length given, which its strings point into.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        (
            rc,
            (!found.is_null()).then_some((entry.pw_uid, entry.pw_gid)),
        )
    })
    .map_err(lookup)
}

/// The gid of a group in the group database; `None` when there is none.
fn group_by_name(name: &str) -> Result<Option<u32>, PrivilegeError> {
    let lookup = |error| PrivilegeError::Lookup {
        what: "group",
        name: name.into(),
        error,
    };
    let c_name =
        CString::new(name).map_err(|e| lookup(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    with_buffer(|buf| {
        // SAFETY: getgrnam_r(3), as getpwnam_r above.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        (rc, (!found.is_null()).then_some(entry.gr_gid))
    })
    .map_err(lookup)
}

/// The name of a group by its gid, for what the log says.
fn group_name(gid: u32) -> Result<Option<String>, PrivilegeError> {
    with_buffer(|buf| {
        // SAFETY: getgrgid_r(3), as getpwnam_r above; the name is copied out before the buffer
        // is reused.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrgid_r(
                gid,
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        let name = (!found.is_null()).then(|| {
            // SAFETY: gr_name of a found entry is a NUL-terminated string inside `buf`.
            unsafe { std::ffi::CStr::from_ptr(entry.gr_name) }
                .to_string_lossy()
                .into_owned()
        });
        (rc, name)
    })
    .map_err(|error| PrivilegeError::Lookup {
        what: "group id",
        name: gid.to_string(),
        error,
    })
}

/// Runs a `get*_r` lookup with a buffer grown while it says ERANGE (up to 1 MiB). "Not found"
/// is `Ok(None)`: POSIX reports it as 0 with no entry, and some name services as ENOENT or
/// ESRCH.
fn with_buffer<T>(mut lookup: impl FnMut(&mut [u8]) -> (i32, Option<T>)) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; 4096];
    loop {
        match lookup(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (libc::ENOENT | libc::ESRCH, _) => return Ok(None),
            (rc, _) => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_database_is_read() {
        // root and nobody are on every Debian system; the other name cannot be an account.
        assert_eq!(user_by_name("root").unwrap().map(|(uid, _)| uid), Some(0));
        assert!(user_by_name("nobody").unwrap().is_some());
        assert_eq!(user_by_name("no-such-user-cjsm-x").unwrap(), None);
        assert_eq!(group_by_name("root").unwrap(), Some(0));
        assert_eq!(group_by_name("no-such-group-cjsm-x").unwrap(), None);
        assert_eq!(group_name(0).unwrap().as_deref(), Some("root"));
    }

    #[test]
    fn unprivileged_or_root_by_the_settings() {
        let settings = |text: &str| crate::config::Config::parse(text).unwrap().milter;
        if !is_root() {
            assert_eq!(plan(&settings("")).unwrap(), Plan::Unprivileged);
            return;
        }
        let allowed = plan(&settings("[milter]\nallow_root = true\n")).unwrap();
        assert_eq!(allowed, Plan::StayRoot);
        let none = plan(&settings("[milter]\nuser = \"\"\n")).unwrap_err();
        assert!(matches!(none, PrivilegeError::NoUser), "{none}");
        let root = plan(&settings("[milter]\nuser = \"root\"\n")).unwrap_err();
        assert!(matches!(root, PrivilegeError::RootUser(_)), "{root}");
        let Plan::Become(nobody) = plan(&settings("[milter]\nuser = \"nobody\"\n")).unwrap() else {
            panic!("root with a user becomes it");
        };
        assert_eq!(nobody.user, "nobody");
        assert_ne!(nobody.uid, 0);
        assert_ne!(nobody.gid, 0);
    }
}
