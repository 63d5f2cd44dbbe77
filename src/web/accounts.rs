//! Sign-in accounts: who may use the website (hub operators, Organisation Administrators,
//! users) and with which password, kept as records beside the directory. A user's account
//! stands only while the directory says the user and their organisation are active; an
//! Organisation Administrator's while the organisation is active and still names them.

use super::password;
use crate::directory::model::{OrgState, UserState};
use crate::store::{Directory, StoreError};
use serde::{Deserialize, Serialize};

/// The records' kind for accounts (keyed by sign-in name).
pub const KIND: &str = "account";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the hub: the queue of applications. The first is created on the command line.
    Operator,
    /// Manages one organisation's users.
    OrgAdmin,
    /// A user of the directory: searches it, keeps their details, nominates colleagues.
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "hub operator",
            Role::OrgAdmin => "Organisation Administrator",
            Role::User => "user",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The sign-in name: an e-mail address, lower case.
    pub login: String,
    pub role: Role,
    /// The organisation of an Organisation Administrator or a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Argon2id, PHC string.
    pub password_hash: String,
    /// The password is a one-time password: it must be changed before anything else (and
    /// before it signs in to mail).
    pub must_change: bool,
    /// Failed sign-ins since the last success or lock-out.
    #[serde(default)]
    pub failures: u32,
    /// Locked against sign-in until then (seconds since the epoch); 0: not locked.
    #[serde(default)]
    pub locked_until: u64,
    /// Every session carries the generation it was made in; bumping it ends them all (a
    /// suspension, a deletion, a password changed or reset).
    #[serde(default)]
    pub generation: u64,
    pub created: u64,
    pub updated: u64,
}

/// An account as read, with the revision a change must still find.
pub struct Stored {
    pub account: Account,
    pub revision: u64,
}

pub async fn load(
    store: &dyn Directory,
    login: &str,
    now: u64,
) -> Result<Option<Stored>, StoreError> {
    let login = login.trim().to_ascii_lowercase();
    let Some(record) = store.record(KIND, &login, now).await? else {
        return Ok(None);
    };
    let account: Account =
        serde_json::from_str(&record.value).map_err(|e| StoreError::Corrupt {
            path: format!("account {login}"),
            message: e.to_string(),
        })?;
    Ok(Some(Stored {
        account,
        revision: record.revision,
    }))
}

/// Writes `account` if it is still at `expected` (`None`: still absent).
pub async fn swap(
    store: &dyn Directory,
    expected: Option<u64>,
    account: &Account,
    now: u64,
) -> Result<bool, StoreError> {
    let value = serde_json::to_string(account).map_err(|e| StoreError::Corrupt {
        path: format!("account {}", account.login),
        message: e.to_string(),
    })?;
    store
        .swap_record(KIND, &account.login, expected, Some(value), 0, now)
        .await
}

/// A new account with a fresh one-time password, which is answered (to be shown once); `None`
/// when the login already has an account.
pub async fn create(
    store: &dyn Directory,
    login: &str,
    role: Role,
    org: Option<&str>,
    now: u64,
) -> Result<Option<String>, StoreError> {
    let one_time = password::one_time();
    let account = Account {
        login: login.trim().to_ascii_lowercase(),
        role,
        org: org.map(str::to_string),
        password_hash: password::hash_off_thread(one_time.clone()).await,
        must_change: true,
        failures: 0,
        locked_until: 0,
        generation: 0,
        created: now,
        updated: now,
    };
    Ok(swap(store, None, &account, now).await?.then_some(one_time))
}

/// Reads, changes and writes an account, again if it changed in between; `None` when there is
/// no such account. `change` answers whether there is anything to write.
pub async fn update(
    store: &dyn Directory,
    login: &str,
    now: u64,
    change: impl Fn(&mut Account) -> bool,
) -> Result<Option<Account>, StoreError> {
    for _ in 0..8 {
        let Some(Stored {
            mut account,
            revision,
        }) = load(store, login, now).await?
        else {
            return Ok(None);
        };
        if !change(&mut account) {
            return Ok(Some(account));
        }
        account.updated = now;
        if swap(store, Some(revision), &account, now).await? {
            return Ok(Some(account));
        }
    }
    Err(StoreError::Unavailable(format!(
        "account {login} keeps changing; try again"
    )))
}

/// A fresh one-time password for an existing account (a reset): every session ends, and the
/// lock-out is lifted. `None` when there is no such account.
pub async fn reset(
    store: &dyn Directory,
    login: &str,
    now: u64,
) -> Result<Option<String>, StoreError> {
    let one_time = password::one_time();
    let hash = password::hash_off_thread(one_time.clone()).await;
    let done = update(store, login, now, |account| {
        account.password_hash.clone_from(&hash);
        account.must_change = true;
        account.failures = 0;
        account.locked_until = 0;
        account.generation += 1;
        true
    })
    .await?;
    Ok(done.map(|_| one_time))
}

/// Ends every session of an account (a suspension or a deletion in the directory).
pub async fn end_sessions(store: &dyn Directory, login: &str, now: u64) -> Result<(), StoreError> {
    update(store, login, now, |account| {
        account.generation += 1;
        true
    })
    .await?;
    Ok(())
}

/// Whether an account may be used now, by what the directory says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    Good,
    /// Why not, in words for the person.
    Barred(String),
}

pub async fn standing(store: &dyn Directory, account: &Account) -> Result<Standing, StoreError> {
    let barred = |why: &str| Ok(Standing::Barred(why.to_string()));
    match account.role {
        Role::Operator => Ok(Standing::Good),
        Role::OrgAdmin => {
            let Some(org) = account.org.as_deref() else {
                return barred("This account has no organisation.");
            };
            match store.org(org).await? {
                Some(org)
                    if org.state == OrgState::Active && org.admins.contains(&account.login) =>
                {
                    Ok(Standing::Good)
                }
                Some(org) if org.state == OrgState::Active => {
                    barred("You are no longer an administrator of your organisation.")
                }
                Some(_) => barred("Your organisation is not active."),
                None => barred("Your organisation is no longer in the directory."),
            }
        }
        Role::User => {
            let Some(user) = store.user(&account.login).await? else {
                return barred("You are no longer in the directory.");
            };
            if account.org.as_deref() != Some(user.org.as_str()) {
                return barred("You are no longer a user of this organisation.");
            }
            if user.state != UserState::Active {
                return barred(match user.state {
                    UserState::Suspended => "Your account is suspended.",
                    _ => "Your account has been deleted.",
                });
            }
            match store.org(&user.org).await? {
                Some(org) if org.state == OrgState::Active => Ok(Standing::Good),
                _ => barred("Your organisation is not active."),
            }
        }
    }
}

/// What a mail sign-in (Dovecot, for SMTP AUTH and IMAP) is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailLogin {
    Granted,
    /// Refused, and why (for the log; never the password).
    Refused(&'static str),
}

/// A mail sign-in: the website's password, of an account that is in good standing, is not
/// locked, has changed its one-time password, and is an active user of the directory (an
/// Organisation Administrator or a hub operator without a mailbox gets no mail sign-in).
pub async fn mail_login(
    store: &dyn Directory,
    login: &str,
    password: &str,
    now: u64,
) -> Result<MailLogin, StoreError> {
    let Some(Stored { account, .. }) = load(store, login, now).await? else {
        // The same work as a real check, so that timing does not tell who has an account.
        let _ = password::verify_off_thread(password.to_string(), DUMMY_HASH.into()).await;
        return Ok(MailLogin::Refused("no such account"));
    };
    if account.locked_until > now {
        return Ok(MailLogin::Refused("account locked after failed sign-ins"));
    }
    if !password::verify_off_thread(password.to_string(), account.password_hash.clone()).await {
        return Ok(MailLogin::Refused("wrong password"));
    }
    if account.must_change {
        return Ok(MailLogin::Refused(
            "one-time password not yet changed on the website",
        ));
    }
    let user = store.user(&account.login).await?;
    let Some(user) = user else {
        return Ok(MailLogin::Refused("not a user of the directory"));
    };
    if user.state != UserState::Active {
        return Ok(MailLogin::Refused("user suspended or deleted"));
    }
    // The account must be this user's own: one made for the same address in another
    // organisation (a contact named in someone else's application) opens no mailbox.
    if account.org.as_deref() != Some(user.org.as_str()) {
        return Ok(MailLogin::Refused(
            "the account belongs to another organisation than the user",
        ));
    }
    match store.org(&user.org).await? {
        Some(org) if org.state == OrgState::Active => Ok(MailLogin::Granted),
        _ => Ok(MailLogin::Refused("organisation not active")),
    }
}

/// A hash of a password nobody has, checked when there is no account so that a refusal takes
/// as long either way.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$5lvw4VbEzBzWmc5+qy/9eDT5b6SRHuRA6vRn0+fx4Yw";

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash checked when there is no account is a real Argon2id hash (so the check does
    /// the same work as a real one) that no password matches here.
    #[test]
    fn the_stand_in_hash_is_a_real_one() {
        let parsed = argon2::PasswordHash::new(DUMMY_HASH).expect("a PHC string");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let real = password::hash("x");
        assert_eq!(
            argon2::PasswordHash::new(&real).unwrap().params,
            parsed.params,
            "the same cost as the hashes made now"
        );
        assert!(!password::verify("", DUMMY_HASH));
        assert!(!password::verify("password", DUMMY_HASH));
    }
}
