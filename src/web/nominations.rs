//! Nominations: a user proposes a colleague in their organisation; the organisation's
//! administrators accept (the colleague becomes a user) or decline. Kept as records keyed
//! `ORG/ID`, so an organisation's are read together and no other's.

use crate::store::{Directory, StoreError};
use serde::{Deserialize, Serialize};

pub const KIND: &str = "nomination";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NominationState {
    Pending,
    Accepted,
    Declined,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nomination {
    /// Random, unique within the organisation.
    pub id: String,
    pub org: String,
    /// The colleague's address (in the organisation's domains), lower case.
    pub address: String,
    pub first_name: String,
    pub last_name: String,
    /// Who nominated them (a user's address).
    pub nominated_by: String,
    pub state: NominationState,
    /// The administrator who decided, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    pub created: u64,
    pub updated: u64,
}

fn key(org: &str, id: &str) -> String {
    format!("{org}/{id}")
}

fn corrupt(key: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        path: format!("nomination {key}"),
        message: e.to_string(),
    }
}

/// The most nominations an organisation's page lists.
pub const LISTED: usize = 500;

/// The organisation's nominations, with their revisions, oldest id first.
pub async fn of_org(
    store: &dyn Directory,
    org: &str,
    now: u64,
) -> Result<Vec<(Nomination, u64)>, StoreError> {
    let records = store.records(KIND, &format!("{org}/"), LISTED, now).await?;
    records
        .into_iter()
        .map(|(key, record)| {
            serde_json::from_str(&record.value)
                .map(|n| (n, record.revision))
                .map_err(|e| corrupt(&key, e))
        })
        .collect()
}

/// One nomination of `org` (never another organisation's: the key starts with its id).
pub async fn get(
    store: &dyn Directory,
    org: &str,
    id: &str,
    now: u64,
) -> Result<Option<(Nomination, u64)>, StoreError> {
    let key = key(org, id);
    let Some(record) = store.record(KIND, &key, now).await? else {
        return Ok(None);
    };
    let nomination: Nomination =
        serde_json::from_str(&record.value).map_err(|e| corrupt(&key, e))?;
    Ok(Some((nomination, record.revision)))
}

/// Writes a nomination if it is still at `expected` (`None`: a new one).
pub async fn swap(
    store: &dyn Directory,
    expected: Option<u64>,
    nomination: &Nomination,
    now: u64,
) -> Result<bool, StoreError> {
    let key = key(&nomination.org, &nomination.id);
    let value = serde_json::to_string(nomination).map_err(|e| corrupt(&key, e))?;
    store
        .swap_record(KIND, &key, expected, Some(value), 0, now)
        .await
}
