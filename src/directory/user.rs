//! Users of the hub: adding one, their state (suspended, reactivated, deleted), their own
//! details, and the search.

use super::model::{User, UserState};
use super::rules::{address_in_org, check_address, checked_text, outside_org_message};
use super::{ATTEMPTS, Admin, AdminError, PAGE, learn_orgs, refused};
use crate::address::normalize_address;
use crate::clock::now_unix;
use crate::store::{DirectoryRead, StoreError};
use std::collections::HashMap;

/// Changes to a user's own details; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserDetails {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub town: Option<String>,
    pub business_type: Option<String>,
}

impl Admin<'_> {
    async fn existing_user(&self, address: &str) -> Result<User, AdminError> {
        let address = normalize_address(address);
        match self.store.user(&address).await? {
            Some(user) => Ok(user),
            None => refused(format!("no user {address}")),
        }
    }

    /// `user add`: refused for an unknown organisation or an address outside its domains.
    pub async fn user_add(
        &self,
        address: &str,
        org_id: &str,
        details: UserDetails,
    ) -> Result<User, AdminError> {
        let address = normalize_address(address);
        check_address(&address).map_err(AdminError::Refused)?;
        let org = self.existing_org(org_id).await?;
        if !address_in_org(&address, &org, self.secure_suffix) {
            return refused(outside_org_message(&address, &org, self.secure_suffix));
        }
        let first_name = checked_text("--first-name", details.first_name.as_deref().unwrap_or(""))?;
        let last_name = checked_text("--last-name", details.last_name.as_deref().unwrap_or(""))?;
        if first_name.is_empty() || last_name.is_empty() {
            return refused("--first-name and --last-name are needed");
        }
        let now = now_unix();
        let user = User {
            address: address.clone(),
            org: org.id.clone(),
            first_name,
            last_name,
            town: checked_text("--town", details.town.as_deref().unwrap_or(""))?,
            business_type: checked_text(
                "--business-type",
                details.business_type.as_deref().unwrap_or(""),
            )?,
            state: UserState::Active,
            created: now,
            updated: now,
            smime_certificate: None,
            revision: 0,
        };
        if !self.store.swap_users(vec![(None, user.clone())]).await? {
            let existing = self.store.user(&address).await?;
            return refused(match existing {
                Some(u) => format!(
                    "{address} already exists ({}, organisation {})",
                    u.state, u.org
                ),
                None => format!("{address} already exists"),
            });
        }
        self.audit("user add", &address, format!("organisation {}", org.id))
            .await?;
        Ok(User {
            revision: 1,
            ..user
        })
    }

    pub async fn user_show(&self, address: &str) -> Result<User, AdminError> {
        self.existing_user(address).await
    }

    /// Reads, changes and writes a user, again if it changed in between (a suspension is
    /// never lost to a concurrent update).
    async fn change_user(
        &self,
        address: &str,
        action: &str,
        change: impl Fn(&mut User) -> Result<String, AdminError>,
    ) -> Result<User, AdminError> {
        for _ in 0..ATTEMPTS {
            let mut user = self.existing_user(address).await?;
            let expected = user.revision;
            let what = change(&mut user)?;
            user.updated = now_unix();
            if self
                .store
                .swap_users(vec![(Some(expected), user.clone())])
                .await?
            {
                self.audit(action, &user.address, what).await?;
                return Ok(User {
                    revision: expected + 1,
                    ..user
                });
            }
        }
        refused(format!("{address} keeps changing; try again"))
    }

    /// Suspend, reactivate or delete (a deleted user is kept, so mail to them gets 5.2.1).
    pub async fn user_set_state(
        &self,
        address: &str,
        state: UserState,
    ) -> Result<User, AdminError> {
        let action = match state {
            UserState::Active => "user reactivate",
            UserState::Suspended => "user suspend",
            UserState::Deleted => "user delete",
        };
        self.change_user(address, action, |user| {
            if user.state == state {
                return refused(format!("{} is already {state}", user.address));
            }
            let was = user.state;
            user.state = state;
            Ok(format!("{was} -> {state}"))
        })
        .await
    }

    /// `user update`: users keep their own details current.
    pub async fn user_update(
        &self,
        address: &str,
        details: UserDetails,
    ) -> Result<User, AdminError> {
        let mut wanted = Vec::new();
        for (name, value) in [
            ("first_name", &details.first_name),
            ("last_name", &details.last_name),
            ("town", &details.town),
            ("business_type", &details.business_type),
        ] {
            if let Some(value) = value {
                let value = checked_text(name, value)?;
                if (name == "first_name" || name == "last_name") && value.is_empty() {
                    return refused(format!("{name} must not be empty"));
                }
                wanted.push((name, value));
            }
        }
        self.change_user(address, "user update", |user| {
            let mut changed = Vec::new();
            for (name, value) in &wanted {
                let field = match *name {
                    "first_name" => &mut user.first_name,
                    "last_name" => &mut user.last_name,
                    "town" => &mut user.town,
                    _ => &mut user.business_type,
                };
                if field != value {
                    field.clone_from(value);
                    changed.push(*name);
                }
            }
            if changed.is_empty() {
                return refused(format!("nothing to change for {}", user.address));
            }
            Ok(changed.join(" "))
        })
        .await
    }
}

/// What `search` found: at most the limit asked for, and whether there were more.
#[derive(Debug, Default)]
pub struct SearchResults {
    pub users: Vec<User>,
    /// More users matched than the limit: the search stopped at the first one past it.
    pub more: bool,
}

/// `search TEXT`: users whose address, name, organisation (id or name) or town contains the
/// text, in any case, ordered by address, at most `limit` of them. Deleted users are not
/// listed. The users are read a page at a time and each organisation once (its name), and
/// the walk stops at the first match past the limit: memory is bounded by the limit and
/// the number of organisations, never by the number of users.
pub async fn search(
    store: &dyn DirectoryRead,
    text: &str,
    limit: usize,
) -> Result<SearchResults, StoreError> {
    let needle = text.trim().to_lowercase();
    // Whether each organisation seen so far has the text in its name.
    let mut org_matches: HashMap<String, bool> = HashMap::new();
    let mut results = SearchResults::default();
    let mut after: Option<String> = None;
    loop {
        let page = store.users_page(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(results);
        };
        after = Some(last.address.clone());
        let full = page.len() == PAGE;
        learn_orgs(store, &page, &mut org_matches, |org| {
            org.is_some_and(|o| o.name.to_lowercase().contains(&needle))
        })
        .await?;
        for user in page {
            if user.state == UserState::Deleted {
                continue;
            }
            let org_name_matches = org_matches.get(&user.org).copied().unwrap_or(false);
            let matches = org_name_matches
                || [
                    user.address.as_str(),
                    &format!("{} {}", user.first_name, user.last_name),
                    &user.org,
                    &user.town,
                ]
                .iter()
                .any(|field| field.to_lowercase().contains(&needle));
            if !matches {
                continue;
            }
            if results.users.len() == limit {
                results.more = true;
                return Ok(results);
            }
            results.users.push(user);
        }
        if !full {
            return Ok(results);
        }
    }
}
