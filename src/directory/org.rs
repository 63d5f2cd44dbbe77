//! Organisations: the application, approval, the terms, activation, suspension, and a
//! server connection's certificate and mail server.

use super::model::{ClientCertificate, ConnectionType, OrgState, Organisation};
use super::rules::{
    allowed_domains, check_address, checked_fingerprint, checked_mail_server, checked_text,
    duplicate_message, is_mail_domain,
};
use super::{ATTEMPTS, Admin, AdminError, refused};
use crate::address::normalize_address;
use crate::clock::now_unix;
use crate::store::StoreError;

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

impl Admin<'_> {
    pub(super) async fn existing_org(&self, id: &str) -> Result<Organisation, AdminError> {
        match self.store.org(id).await? {
            Some(org) => Ok(org),
            None => refused(format!("no organisation {id:?}")),
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
            if !is_mail_domain(&domain) {
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
                cert.fingerprint = checked_fingerprint(&cert.fingerprint)?;
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
        // The Organisation Administrators' addresses: real addresses, like any user's.
        let mut admins = Vec::new();
        for admin in &application.admins {
            let address = normalize_address(admin);
            if let Err(why) = check_address(&address) {
                return refused(format!("--admin {why}"));
            }
            admins.push(address);
        }
        let now = now_unix();
        let org = Organisation {
            id: id.clone(),
            name,
            domains,
            connection: application.connection,
            state: OrgState::Applied,
            terms_signed: None,
            admins,
            client_certificate,
            mail_server,
            approved: None,
            created: now,
            updated: now,
            revision: 0,
        };
        let claims = self.claims(&org);
        // The friendly refusal, naming the holder; the store's claim below is the guarantee.
        if let Some((domain, other)) = self.holder_of(&claims).await? {
            return refused(duplicate_message(&domain, &other));
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

    /// The first of `claims` another organisation claims too, and that organisation: found
    /// from the organisation-by-domain index, not by reading every organisation. A claim is
    /// an organisation's own domain or the secure form of one (`firm.co.uk.cjsm.net`), so the
    /// organisations that may hold it list it, or list it without the secure suffix. Holders
    /// are asked claim by claim, so with several the one named may differ from a walk's.
    async fn holder_of(
        &self,
        claims: &[String],
    ) -> Result<Option<(String, Organisation)>, AdminError> {
        // A directory never written holds nothing (and Redis answers its index with an
        // outage then).
        if !self.store.written().await? {
            return Ok(None);
        }
        let suffix = format!(
            ".{}",
            self.secure_suffix.trim_matches('.').to_ascii_lowercase()
        );
        for claim in claims {
            let mut asked = vec![claim.as_str()];
            if let Some(own) = claim.strip_suffix(suffix.as_str()) {
                asked.push(own);
            }
            for domain in asked {
                if let Some(other) = self.store.org_by_domain(domain).await?
                    && self.claims(&other).contains(claim)
                {
                    return Ok(Some((claim.clone(), other)));
                }
            }
        }
        Ok(None)
    }

    /// The domains an organisation claims: its own and the secure addresses' domains.
    fn claims(&self, org: &Organisation) -> Vec<String> {
        let mut claims = org.domains.clone();
        for domain in allowed_domains(org, self.secure_suffix) {
            let domain = domain.to_string();
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
                cert.fingerprint = checked_fingerprint(&cert.fingerprint)?;
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

    pub async fn org_show(&self, id: &str) -> Result<Organisation, AdminError> {
        self.existing_org(id).await
    }

    pub async fn org_list(&self) -> Result<Vec<Organisation>, AdminError> {
        Ok(self.store.orgs().await?)
    }
}
