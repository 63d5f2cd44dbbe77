//! The directory's rules, above the store backends: applications, activation, users, bulk
//! import, search and export. Every change is written to the audit trail.

pub mod export;
pub mod import;

use crate::store::{
    AuditEvent, ClientCertificate, ConnectionType, Directory, OrgState, Organisation, StoreError,
    User, UserState, normalize_address, now_unix, now_unix_ms,
};
use import::{ImportError, address_in_org};

/// A refusal (exit 2 with this one line) or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Import(#[from] ImportError),
}

fn refused<T>(text: impl Into<String>) -> Result<T, AdminError> {
    Err(AdminError::Refused(text.into()))
}

/// An organisation's application.
pub struct Application {
    pub id: String,
    pub name: String,
    pub domains: Vec<String>,
    pub connection: ConnectionType,
    pub admins: Vec<String>,
    /// The TLS client certificate a server connection presents.
    pub client_certificate: Option<ClientCertificate>,
}

/// Changes to a user's own details; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserDetails {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub town: Option<String>,
    pub business_type: Option<String>,
}

/// What a bulk import did.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// The administrator's operations on one store.
pub struct Admin<'a> {
    store: &'a dyn Directory,
    secure_suffix: &'a str,
    /// Who runs the command, for the audit trail.
    actor: Option<String>,
}

impl<'a> Admin<'a> {
    pub fn new(store: &'a dyn Directory, secure_suffix: &'a str, actor: Option<String>) -> Self {
        Admin {
            store,
            secure_suffix,
            actor,
        }
    }

    async fn audit(&self, action: &str, target: &str, reason: String) -> Result<(), AdminError> {
        self.store
            .append_audit(AuditEvent {
                time_ms: now_unix_ms(),
                kind: "admin".into(),
                action: action.into(),
                reason,
                actor: self.actor.clone(),
                target: Some(target.into()),
                ..AuditEvent::default()
            })
            .await?;
        Ok(())
    }

    async fn existing_org(&self, id: &str) -> Result<Organisation, AdminError> {
        match self.store.org(id).await? {
            Some(org) => Ok(org),
            None => refused(format!("no organisation {id:?}")),
        }
    }

    async fn existing_user(&self, address: &str) -> Result<User, AdminError> {
        let address = normalize_address(address);
        match self.store.user(&address).await? {
            Some(user) => Ok(user),
            None => refused(format!("no user {address}")),
        }
    }

    /// `org apply`: a new organisation in state `applied`. A domain already registered or
    /// pending for another organisation is refused, naming that organisation.
    pub async fn org_apply(&self, application: Application) -> Result<Organisation, AdminError> {
        let id = application.id.trim().to_string();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return refused(format!(
                "organisation id {id:?}: use letters, digits, '-', '_' or '.'"
            ));
        }
        if application.name.trim().is_empty() {
            return refused("--name must not be empty");
        }
        let mut domains: Vec<String> = Vec::new();
        for domain in &application.domains {
            let domain = domain.trim().trim_matches('.').to_ascii_lowercase();
            if domain.is_empty() || !domain.contains('.') || domain.contains(['@', ' ']) {
                return refused(format!("{domain:?} is not a mail domain"));
            }
            if !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        if domains.is_empty() {
            return refused("at least one --domain is needed");
        }
        let client_certificate = match (application.connection, application.client_certificate) {
            (ConnectionType::Mailbox, Some(_)) => {
                return refused("a mailbox organisation presents no client certificate");
            }
            (_, Some(mut cert)) => {
                cert.fingerprint = normalize_fingerprint(&cert.fingerprint).ok_or_else(|| {
                    AdminError::Refused(format!(
                        "certificate fingerprint {:?}: expected a SHA-256 fingerprint (64 hex digits, colons allowed)",
                        cert.fingerprint
                    ))
                })?;
                Some(cert)
            }
            (_, None) => None,
        };
        if let Some(org) = self.store.org(&id).await? {
            return refused(format!("organisation {id} already exists ({})", org.state));
        }
        for org in self.store.orgs().await? {
            if let Some(domain) = domains.iter().find(|d| org.domains.contains(d)) {
                return refused(format!(
                    "duplicate application: {domain} is already registered to {} ({}, {})",
                    org.id, org.name, org.state
                ));
            }
        }
        let now = now_unix();
        let org = Organisation {
            id: id.clone(),
            name: application.name.trim().to_string(),
            domains,
            connection: application.connection,
            state: OrgState::Applied,
            terms_signed: None,
            admins: application
                .admins
                .iter()
                .map(|a| normalize_address(a))
                .collect(),
            client_certificate,
            created: now,
            updated: now,
        };
        self.store.put_org(org.clone()).await?;
        self.audit(
            "org apply",
            &id,
            format!("domains {}", org.domains.join(" ")),
        )
        .await?;
        Ok(org)
    }

    async fn save_org(
        &self,
        mut org: Organisation,
        action: &str,
    ) -> Result<Organisation, AdminError> {
        org.updated = now_unix();
        self.store.put_org(org.clone()).await?;
        self.audit(action, &org.id, format!("now {}", org.state))
            .await?;
        Ok(org)
    }

    pub async fn org_approve(&self, id: &str) -> Result<Organisation, AdminError> {
        let mut org = self.existing_org(id).await?;
        if org.state != OrgState::Applied {
            return refused(format!(
                "organisation {id} is {}: only an applied organisation is approved",
                org.state
            ));
        }
        org.state = OrgState::Approved;
        self.save_org(org, "org approve").await
    }

    pub async fn org_sign_terms(&self, id: &str) -> Result<Organisation, AdminError> {
        let mut org = self.existing_org(id).await?;
        if org.state == OrgState::Applied {
            return refused(format!(
                "organisation {id} is not approved yet: approve it before it signs the terms"
            ));
        }
        if org.terms_signed.is_some() {
            return refused(format!("organisation {id} has already signed the terms"));
        }
        org.terms_signed = Some(now_unix());
        self.save_org(org, "org sign-terms").await
    }

    /// Switches an organisation on: only once approved and its terms are signed. Also
    /// switches a suspended one back on.
    pub async fn org_activate(&self, id: &str) -> Result<Organisation, AdminError> {
        let mut org = self.existing_org(id).await?;
        match org.state {
            OrgState::Applied => {
                return refused(format!("organisation {id} is not approved yet"));
            }
            OrgState::Active => return refused(format!("organisation {id} is already active")),
            OrgState::Approved | OrgState::Suspended => {}
        }
        if org.terms_signed.is_none() {
            return refused(format!(
                "organisation {id} has not signed the terms and conditions"
            ));
        }
        org.state = OrgState::Active;
        self.save_org(org, "org activate").await
    }

    pub async fn org_suspend(&self, id: &str) -> Result<Organisation, AdminError> {
        let mut org = self.existing_org(id).await?;
        if org.state == OrgState::Suspended {
            return refused(format!("organisation {id} is already suspended"));
        }
        org.state = OrgState::Suspended;
        self.save_org(org, "org suspend").await
    }

    pub async fn org_show(&self, id: &str) -> Result<Organisation, AdminError> {
        self.existing_org(id).await
    }

    pub async fn org_list(&self) -> Result<Vec<Organisation>, AdminError> {
        Ok(self.store.orgs().await?)
    }

    /// `user add`: refused for an unknown organisation or an address outside its domains.
    pub async fn user_add(
        &self,
        address: &str,
        org_id: &str,
        details: UserDetails,
    ) -> Result<User, AdminError> {
        let address = normalize_address(address);
        import::check_address(&address).map_err(AdminError::Refused)?;
        let org = self.existing_org(org_id).await?;
        if !address_in_org(&address, &org, self.secure_suffix) {
            return refused(import::outside_org_message(
                &address,
                &org,
                self.secure_suffix,
            ));
        }
        if let Some(user) = self.store.user(&address).await? {
            return refused(format!(
                "{address} already exists ({}, organisation {})",
                user.state, user.org
            ));
        }
        let first_name = details.first_name.unwrap_or_default();
        let last_name = details.last_name.unwrap_or_default();
        if first_name.trim().is_empty() || last_name.trim().is_empty() {
            return refused("--first-name and --last-name are needed");
        }
        let now = now_unix();
        let user = User {
            address: address.clone(),
            org: org.id.clone(),
            first_name: first_name.trim().into(),
            last_name: last_name.trim().into(),
            town: details.town.unwrap_or_default().trim().into(),
            business_type: details.business_type.unwrap_or_default().trim().into(),
            state: UserState::Active,
            created: now,
            updated: now,
            smime_certificate: None,
        };
        self.store.put_users(vec![user.clone()]).await?;
        self.audit("user add", &address, format!("organisation {}", org.id))
            .await?;
        Ok(user)
    }

    pub async fn user_show(&self, address: &str) -> Result<User, AdminError> {
        self.existing_user(address).await
    }

    /// Suspend, reactivate or delete (a deleted user is kept, so mail to them gets 5.2.1).
    pub async fn user_set_state(
        &self,
        address: &str,
        state: UserState,
    ) -> Result<User, AdminError> {
        let mut user = self.existing_user(address).await?;
        if user.state == state {
            return refused(format!("{} is already {state}", user.address));
        }
        let was = user.state;
        user.state = state;
        user.updated = now_unix();
        self.store.put_users(vec![user.clone()]).await?;
        let action = match state {
            UserState::Active => "user reactivate",
            UserState::Suspended => "user suspend",
            UserState::Deleted => "user delete",
        };
        self.audit(action, &user.address, format!("{was} -> {state}"))
            .await?;
        Ok(user)
    }

    /// `user update`: users keep their own details current.
    pub async fn user_update(
        &self,
        address: &str,
        details: UserDetails,
    ) -> Result<User, AdminError> {
        let mut user = self.existing_user(address).await?;
        let mut changed = Vec::new();
        for (name, new, field) in [
            ("first_name", details.first_name, &mut user.first_name),
            ("last_name", details.last_name, &mut user.last_name),
            ("town", details.town, &mut user.town),
            (
                "business_type",
                details.business_type,
                &mut user.business_type,
            ),
        ] {
            if let Some(new) = new {
                let new = new.trim().to_string();
                if (name == "first_name" || name == "last_name") && new.is_empty() {
                    return refused(format!("{name} must not be empty"));
                }
                if *field != new {
                    *field = new;
                    changed.push(name);
                }
            }
        }
        if changed.is_empty() {
            return refused(format!("nothing to change for {}", user.address));
        }
        user.updated = now_unix();
        self.store.put_users(vec![user.clone()]).await?;
        self.audit("user update", &user.address, changed.join(" "))
            .await?;
        Ok(user)
    }

    /// `user import`: at most 500 rows, validated whole first, then written all together.
    /// Re-running the same file changes nothing.
    pub async fn user_import(&self, csv: &[u8]) -> Result<ImportSummary, AdminError> {
        let (rows, mut errors) = import::parse_rows(csv)?;
        let orgs = self.store.orgs().await?;
        errors.extend(import::check_against(&rows, &orgs, self.secure_suffix));
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.line);
            return Err(ImportError::Rows(errors).into());
        }
        let existing = self.store.users().await?;
        let now = now_unix();
        let mut summary = ImportSummary::default();
        let mut changed = Vec::new();
        for row in rows {
            let org = orgs
                .iter()
                .find(|o| {
                    o.id == row.organisation || o.name.eq_ignore_ascii_case(&row.organisation)
                })
                .map(|o| o.id.clone())
                .unwrap_or(row.organisation);
            let wanted = User {
                address: row.address.clone(),
                org,
                first_name: row.first_name,
                last_name: row.last_name,
                town: row.town,
                business_type: row.business_type,
                state: UserState::Active,
                created: now,
                updated: now,
                smime_certificate: None,
            };
            match existing.iter().find(|u| u.address == row.address) {
                None => {
                    summary.added += 1;
                    changed.push(wanted);
                }
                Some(user) if same_details(user, &wanted) => summary.unchanged += 1,
                Some(user) => {
                    summary.updated += 1;
                    changed.push(User {
                        state: user.state,
                        created: user.created,
                        smime_certificate: user.smime_certificate.clone(),
                        ..wanted
                    });
                }
            }
        }
        if !changed.is_empty() {
            self.store.put_users(changed).await?;
            self.audit(
                "user import",
                "-",
                format!(
                    "added {}, updated {}, unchanged {}",
                    summary.added, summary.updated, summary.unchanged
                ),
            )
            .await?;
        }
        Ok(summary)
    }
}

/// A SHA-256 fingerprint as lower-case hex without separators.
fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

fn same_details(a: &User, b: &User) -> bool {
    a.org == b.org
        && a.first_name == b.first_name
        && a.last_name == b.last_name
        && a.town == b.town
        && a.business_type == b.business_type
}

/// `search TEXT`: users whose name, organisation (id or name) or town contains the text, in
/// any case. Deleted users are not listed.
pub fn search<'u>(users: &'u [User], orgs: &[Organisation], text: &str) -> Vec<&'u User> {
    let needle = text.trim().to_lowercase();
    users
        .iter()
        .filter(|u| u.state != UserState::Deleted)
        .filter(|u| {
            let org_name = orgs
                .iter()
                .find(|o| o.id == u.org)
                .map_or("", |o| o.name.as_str());
            [
                format!("{} {}", u.first_name, u.last_name),
                u.org.clone(),
                org_name.to_string(),
                u.town.clone(),
            ]
            .iter()
            .any(|field| field.to_lowercase().contains(&needle))
        })
        .collect()
}
