//! What an application says beyond the directory's organisation: the postal address, the
//! e-mail domain the organisation uses today, the Organisation Administrator's name and
//! telephone, and the hub's refusal if there is one. Kept as a record keyed by organisation
//! id, so the directory holds only what the milter and the rules need.

use crate::store::{Directory, StoreError};
use serde::{Deserialize, Serialize};

pub const KIND: &str = "application";

/// The details of one application. An organisation applied for on the command line has none
/// until the hub refuses it (then only the refusal).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Details {
    pub org: String,
    #[serde(default)]
    pub address_lines: Vec<String>,
    #[serde(default)]
    pub town: String,
    #[serde(default)]
    pub postcode: String,
    /// The domain the organisation's mail uses today; a mailbox organisation's hosted domain
    /// is made from it.
    #[serde(default)]
    pub email_domain: String,
    #[serde(default)]
    pub contact_name: String,
    #[serde(default)]
    pub contact_email: String,
    #[serde(default)]
    pub contact_telephone: String,
    /// When it was submitted on the website (seconds since the epoch); 0: not on the website.
    #[serde(default)]
    pub submitted: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

/// The hub's refusal of an application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub reason: String,
    /// The hub operator who refused it.
    pub by: String,
    pub at: u64,
}

fn corrupt(org: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        path: format!("application {org}"),
        message: e.to_string(),
    }
}

/// The details of `org`'s application, with the revision a change must still find.
pub async fn get(
    store: &dyn Directory,
    org: &str,
    now: u64,
) -> Result<Option<(Details, u64)>, StoreError> {
    let Some(record) = store.record(KIND, org, now).await? else {
        return Ok(None);
    };
    let details: Details = serde_json::from_str(&record.value).map_err(|e| corrupt(org, e))?;
    Ok(Some((details, record.revision)))
}

/// Writes the details if the record is still at `expected` (`None`: still absent).
pub async fn swap(
    store: &dyn Directory,
    expected: Option<u64>,
    details: &Details,
    now: u64,
) -> Result<bool, StoreError> {
    let value = serde_json::to_string(details).map_err(|e| corrupt(&details.org, e))?;
    store
        .swap_record(KIND, &details.org, expected, Some(value), 0, now)
        .await
}

/// Removes the details written for an application the directory then refused.
pub async fn remove(
    store: &dyn Directory,
    org: &str,
    revision: u64,
    now: u64,
) -> Result<bool, StoreError> {
    store
        .swap_record(KIND, org, Some(revision), None, 0, now)
        .await
}

/// An organisation id made from its name: lower-case letters and digits joined by single
/// hyphens, at most [`SLUG_CHARS`] characters; `org` when the name has no such letters.
pub fn slug(name: &str) -> String {
    let mut slug = String::new();
    for word in name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let room = SLUG_CHARS.saturating_sub(slug.len() + usize::from(!slug.is_empty()));
        if room == 0 {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&word[..word.len().min(room)]);
    }
    if slug.is_empty() {
        "org".to_string()
    } else {
        slug
    }
}

/// The longest id [`slug`] makes: room for a `-NNN` beneath the directory's 64.
pub const SLUG_CHARS: usize = 48;

/// The `attempt`-th candidate id for `slug`: itself, then `slug-2`, `slug-3`, …
pub fn candidate(slug: &str, attempt: usize) -> String {
    if attempt == 0 {
        slug.to_string()
    } else {
        format!("{slug}-{}", attempt + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_from_names() {
        assert_eq!(slug("Hartley Law LLP"), "hartley-law-llp");
        assert_eq!(slug("  O'Brien & Sons (Leeds) "), "o-brien-sons-leeds");
        assert_eq!(slug("<script>alert(1)</script>"), "script-alert-1-script");
        assert_eq!(slug("Ærøskøbing"), "r-sk-bing");
        assert_eq!(slug("☃☃"), "org");
        let long = slug(&"word ".repeat(40));
        assert!(long.len() <= SLUG_CHARS && !long.ends_with('-'), "{long}");
        assert_eq!(candidate("smith", 0), "smith");
        assert_eq!(candidate("smith", 2), "smith-3");
    }

    #[test]
    fn details_keep_their_stored_form() {
        let details = Details {
            org: "smith".into(),
            address_lines: vec!["1 High Street".into()],
            town: "Leeds".into(),
            postcode: "LS1 1AA".into(),
            email_domain: "smith.co.uk".into(),
            contact_name: "Mary Smith".into(),
            contact_email: "mary@smith.co.uk".into(),
            contact_telephone: "0113 496 0000".into(),
            submitted: 5,
            refusal: Some(Refusal {
                reason: "not in the criminal justice system".into(),
                by: "op@hub.example".into(),
                at: 6,
            }),
        };
        let json = serde_json::to_string(&details).unwrap();
        assert_eq!(serde_json::from_str::<Details>(&json).unwrap(), details);
        // A refusal recorded for a command-line application needs nothing else.
        let bare: Details =
            serde_json::from_str(r#"{"org":"x","refusal":{"reason":"r","by":"b","at":1}}"#)
                .unwrap();
        assert!(bare.refusal.is_some() && bare.submitted == 0);
    }
}
