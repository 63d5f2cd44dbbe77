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
    /// Server connections: the next hop for mail to its domains (`[mx.firm.co.uk]:25`).
    pub mail_server: Option<String>,
}

/// A next hop as Postfix writes it: `host`, `[host]` or `[host]:port`, nothing else.
fn checked_mail_server(text: &str) -> Result<String, AdminError> {
    let text = text.trim();
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => (host, Some("")),
            },
            None => ("", None),
        },
        None => (text, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok && !text.contains(char::is_whitespace) {
        Ok(text.to_ascii_lowercase())
    } else {
        refused(format!(
            "--mail-server {text:?}: expected a host name, [host] or [host]:port"
        ))
    }
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
    /// pending for another organisation is refused, naming that organisation; the store
    /// claims the domains atomically, so two applications racing for one domain cannot both
    /// succeed.
    pub async fn org_apply(&self, application: Application) -> Result<Organisation, AdminError> {
        let id = application.id.trim().to_string();
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return refused(format!(
                "organisation id {id:?}: use up to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        let name = checked_text("--name", &application.name)?;
        if name.is_empty() {
            return refused("--name must not be empty");
        }
        let mut domains: Vec<String> = Vec::new();
        for domain in &application.domains {
            let domain = domain.trim().trim_matches('.').to_ascii_lowercase();
            if domain.is_empty()
                || !domain.contains('.')
                || import::check_address(&format!("x@{domain}")).is_err()
            {
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
        let mail_server = match (application.connection, application.mail_server.as_deref()) {
            (ConnectionType::Mailbox, Some(_)) => {
                return refused(
                    "a mailbox organisation's mail is delivered by the hub: no --mail-server",
                );
            }
            (_, Some(server)) => Some(checked_mail_server(server)?),
            (_, None) => None,
        };
        let now = now_unix();
        let org = Organisation {
            id: id.clone(),
            name,
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
            mail_server,
            approved: None,
            created: now,
            updated: now,
            revision: 0,
        };
        let claims = self.claims(&org);
        // The friendly refusal, naming the holder; the store's claim below is the guarantee.
        for other in self.store.orgs().await? {
            let theirs = self.claims(&other);
            if let Some(domain) = claims.iter().find(|d| theirs.contains(d)) {
                return refused(duplicate_message(domain, &other));
            }
        }
        match self.store.swap_org(None, org.clone(), claims).await {
            Ok(true) => {}
            Ok(false) => return refused(format!("organisation {id} already exists")),
            Err(StoreError::Refused(why)) => {
                return refused(format!("duplicate application: {why}"));
            }
            Err(e) => return Err(e.into()),
        }
        self.audit(
            "org apply",
            &id,
            format!("domains {}", org.domains.join(" ")),
        )
        .await?;
        Ok(Organisation { revision: 1, ..org })
    }

    /// The domains an organisation claims: its own and the secure addresses' domains.
    fn claims(&self, org: &Organisation) -> Vec<String> {
        let mut claims = org.domains.clone();
        for domain in import::allowed_domains(org, self.secure_suffix) {
            if !claims.contains(&domain) {
                claims.push(domain);
            }
        }
        claims
    }

    /// Reads, changes and writes an organisation, again if it changed in between.
    async fn change_org(
        &self,
        id: &str,
        action: &str,
        change: impl Fn(&mut Organisation) -> Result<(), AdminError>,
    ) -> Result<Organisation, AdminError> {
        for _ in 0..ATTEMPTS {
            let mut org = self.existing_org(id).await?;
            let expected = org.revision;
            change(&mut org)?;
            org.updated = now_unix();
            if self
                .store
                .swap_org(Some(expected), org.clone(), Vec::new())
                .await?
            {
                self.audit(action, &org.id, format!("now {}", org.state))
                    .await?;
                return Ok(Organisation {
                    revision: expected + 1,
                    ..org
                });
            }
        }
        refused(format!("organisation {id} keeps changing; try again"))
    }

    pub async fn org_approve(&self, id: &str) -> Result<Organisation, AdminError> {
        self.change_org(id, "org approve", |org| {
            if org.state != OrgState::Applied || org.approved.is_some() {
                return refused(format!(
                    "organisation {} is {}: only an applied organisation is approved",
                    org.id, org.state
                ));
            }
            org.state = OrgState::Approved;
            org.approved = Some(now_unix());
            Ok(())
        })
        .await
    }

    pub async fn org_sign_terms(&self, id: &str) -> Result<Organisation, AdminError> {
        self.change_org(id, "org sign-terms", |org| {
            if org.approved.is_none() {
                return refused(format!(
                    "organisation {} is not approved yet: approve it before it signs the terms",
                    org.id
                ));
            }
            if org.terms_signed.is_some() {
                return refused(format!(
                    "organisation {} has already signed the terms",
                    org.id
                ));
            }
            org.terms_signed = Some(now_unix());
            Ok(())
        })
        .await
    }

    /// Switches an organisation on: only once approved and its terms are signed. Also
    /// switches a suspended one back on (if it was ever approved and signed).
    pub async fn org_activate(&self, id: &str) -> Result<Organisation, AdminError> {
        self.change_org(id, "org activate", |org| {
            if org.state == OrgState::Active {
                return refused(format!("organisation {} is already active", org.id));
            }
            if org.approved.is_none() {
                return refused(format!("organisation {} is not approved yet", org.id));
            }
            if org.terms_signed.is_none() {
                return refused(format!(
                    "organisation {} has not signed the terms and conditions",
                    org.id
                ));
            }
            org.state = OrgState::Active;
            Ok(())
        })
        .await
    }

    pub async fn org_suspend(&self, id: &str) -> Result<Organisation, AdminError> {
        self.change_org(id, "org suspend", |org| {
            if org.state == OrgState::Suspended {
                return refused(format!("organisation {} is already suspended", org.id));
            }
            org.state = OrgState::Suspended;
            Ok(())
        })
        .await
    }

    /// `org update`: a renewed client certificate, or a new mail server (`Some(None)` removes
    /// it), for a server-connected organisation.
    pub async fn org_update(
        &self,
        id: &str,
        certificate: Option<ClientCertificate>,
        mail_server: Option<Option<String>>,
    ) -> Result<Organisation, AdminError> {
        if certificate.is_none() && mail_server.is_none() {
            return refused("nothing to update: give the certificate or --mail-server");
        }
        let certificate = certificate
            .map(|mut cert| {
                cert.fingerprint = normalize_fingerprint(&cert.fingerprint).ok_or_else(|| {
                    AdminError::Refused(format!(
                        "certificate fingerprint {:?}: expected a SHA-256 fingerprint (64 hex digits, colons allowed)",
                        cert.fingerprint
                    ))
                })?;
                Ok::<_, AdminError>(cert)
            })
            .transpose()?;
        let mail_server = match mail_server {
            Some(Some(server)) => Some(Some(checked_mail_server(&server)?)),
            other => other,
        };
        self.change_org(id, "org update", |org| {
            if org.connection != ConnectionType::Server {
                return refused(format!(
                    "organisation {} is a mailbox organisation: no certificate or mail server",
                    org.id
                ));
            }
            if let Some(cert) = &certificate {
                org.client_certificate = Some(cert.clone());
            }
            if let Some(server) = &mail_server {
                org.mail_server = server.clone();
            }
            Ok(())
        })
        .await
    }

    /// `cert import`: an S/MIME certificate (PEM or DER) for `address`, checked first: valid
    /// now, usable for encryption, and issued for that address. Replaces any earlier one.
    pub async fn cert_import(
        &self,
        address: &str,
        bytes: &[u8],
    ) -> Result<crate::store::Certificate, AdminError> {
        let address = normalize_address(address);
        import::check_address(&address).map_err(AdminError::Refused)?;
        let parsed = crate::smime::cert::parse(bytes)
            .map_err(|e| AdminError::Refused(format!("certificate for {address}: {e}")))?;
        let now = now_unix();
        crate::smime::cert::check_for(&parsed, &address, now)
            .map_err(|e| AdminError::Refused(format!("certificate for {address}: {e}")))?;
        let record = crate::smime::cert::record(parsed, &address, now);
        self.store.put_certificate(record.clone()).await?;
        self.audit(
            "cert import",
            &address,
            format!(
                "sha256 {} valid until {}",
                record.fingerprint,
                crate::smime::cert::date(record.not_after)
            ),
        )
        .await?;
        Ok(record)
    }

    pub async fn cert_show(&self, address: &str) -> Result<crate::store::Certificate, AdminError> {
        let address = normalize_address(address);
        match self.store.lookup(&address).await?.certificate {
            Some(cert) => Ok(cert),
            None => refused(format!("no certificate for {address}")),
        }
    }

    pub async fn cert_remove(&self, address: &str) -> Result<(), AdminError> {
        let address = normalize_address(address);
        if !self.store.remove_certificate(&address).await? {
            return refused(format!("no certificate for {address}"));
        }
        self.audit("cert remove", &address, "removed".into()).await
    }

    /// Certificates that lapse within `within` seconds from now (or already have), soonest
    /// first.
    pub async fn cert_expiring(
        &self,
        within: u64,
    ) -> Result<Vec<crate::store::Certificate>, AdminError> {
        let limit = now_unix().saturating_add(within);
        let mut certs: Vec<_> = self
            .store
            .certificates()
            .await?
            .into_iter()
            .filter(|c| c.not_after <= limit)
            .collect();
        certs.sort_by_key(|c| c.not_after);
        Ok(certs)
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

    /// `user import`: at most 500 rows, validated whole first, then written all together
    /// (compare-and-swap: a concurrent change makes it read and check again). Re-running the
    /// same file changes nothing; a row never moves a user to another organisation.
    pub async fn user_import(&self, csv: &[u8]) -> Result<ImportSummary, AdminError> {
        if csv.len() > MAX_IMPORT_BYTES {
            return refused(format!(
                "the file is {} bytes; a bulk load of at most {} rows is at most {MAX_IMPORT_BYTES} bytes",
                csv.len(),
                import::MAX_IMPORT_ROWS
            ));
        }
        let (rows, parse_errors) = import::parse_rows(csv)?;
        for _ in 0..ATTEMPTS {
            let orgs = self.store.orgs().await?;
            let mut errors = parse_errors.clone();
            errors.extend(import::check_against(&rows, &orgs, self.secure_suffix));
            let existing = self.store.users().await?;
            let now = now_unix();
            let mut summary = ImportSummary::default();
            let mut changes = Vec::new();
            for row in &rows {
                // check_against reported rows whose organisation is unknown or ambiguous.
                let Ok(org) = import::find_org(&row.organisation, &orgs) else {
                    continue;
                };
                let wanted = User {
                    address: row.address.clone(),
                    org: org.id.clone(),
                    first_name: row.first_name.clone(),
                    last_name: row.last_name.clone(),
                    town: row.town.clone(),
                    business_type: row.business_type.clone(),
                    state: UserState::Active,
                    created: now,
                    updated: now,
                    smime_certificate: None,
                    revision: 0,
                };
                match existing.iter().find(|u| u.address == row.address) {
                    None => {
                        summary.added += 1;
                        changes.push((None, wanted));
                    }
                    Some(user) if user.org != wanted.org => errors.push(import::RowError {
                        line: row.line,
                        field: "organisation".into(),
                        reason: format!(
                            "{} belongs to organisation {}; a bulk load does not move users",
                            user.address, user.org
                        ),
                    }),
                    Some(user) if same_details(user, &wanted) => summary.unchanged += 1,
                    Some(user) => {
                        summary.updated += 1;
                        changes.push((
                            Some(user.revision),
                            User {
                                state: user.state,
                                created: user.created,
                                smime_certificate: user.smime_certificate.clone(),
                                ..wanted
                            },
                        ));
                    }
                }
            }
            if !errors.is_empty() {
                errors.sort_by_key(|e| e.line);
                errors.dedup_by(|a, b| {
                    a.line == b.line && a.field == b.field && a.reason == b.reason
                });
                return Err(ImportError::Rows(errors).into());
            }
            let written: Vec<(String, bool)> = changes
                .iter()
                .map(|(expected, u)| (u.address.clone(), expected.is_none()))
                .collect();
            if !self.store.swap_users(changes).await? {
                continue;
            }
            for (address, added) in written {
                let action = if added {
                    "user import add"
                } else {
                    "user import update"
                };
                self.audit(action, &address, "bulk load".into()).await?;
            }
            return Ok(summary);
        }
        refused("the directory keeps changing under the import; try again")
    }
}

/// How often a change is retried when the record changed between read and write.
const ATTEMPTS: usize = 8;

/// A bulk-load file larger than this is refused before it is parsed (500 rows of at most
/// six 200-character fields fit well within it).
const MAX_IMPORT_BYTES: usize = 4 * 1024 * 1024;

/// A field typed by an administrator: trimmed, bounded, no control characters.
fn checked_text(field: &str, value: &str) -> Result<String, AdminError> {
    let value = value.trim();
    match import::check_text(value, import::MAX_FIELD_CHARS) {
        Some(why) => refused(format!("{field} {why}")),
        None => Ok(value.to_string()),
    }
}

fn duplicate_message(domain: &str, holder: &Organisation) -> String {
    format!(
        "duplicate application: {domain} is already registered to {} ({}, {})",
        holder.id, holder.name, holder.state
    )
}

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
