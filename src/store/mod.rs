//! The Secure eMail Directory: who is a user of the hub, and in what state.
//!
//! A trait with the embedded file store as the default backend; the Redis backend (shared
//! by every milter instance) implements the same trait.

mod file;

pub use file::{Access, FileStore};

use crate::config::{Backend, StoreConfig};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    Active,
    Suspended,
    Deleted,
}

impl std::fmt::Display for UserState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserState::Active => "active",
            UserState::Suspended => "suspended",
            UserState::Deleted => "deleted",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The secure address, lower case.
    pub address: String,
    pub org: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    pub state: UserState,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
}

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

/// What every backend answers. Addresses are compared in lower case.
pub trait Directory: Send + Sync {
    /// The user with this secure address, if the directory knows it.
    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>>;
    /// Creates a user; refused when the address is already taken.
    fn add_user(&self, user: User) -> StoreFuture<'_, ()>;
    /// Changes a user's state; refused for an unknown address. Returns the updated user.
    fn set_user_state<'a>(
        &'a self,
        address: &'a str,
        state: UserState,
        now: u64,
    ) -> StoreFuture<'a, User>;
}

/// Opens the configured backend.
pub fn open(config: &StoreConfig, access: Access) -> Result<Arc<dyn Directory>, StoreError> {
    match config.backend {
        Backend::File => Ok(Arc::new(FileStore::open_with(&config.path, access)?)),
        Backend::Redis => Err(StoreError::Unavailable(
            "the redis backend is not built yet; use backend = \"file\"".into(),
        )),
    }
}

/// Lower-cases an address and strips the angle brackets of an SMTP path.
pub fn normalize_address(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_ascii_lowercase()
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
