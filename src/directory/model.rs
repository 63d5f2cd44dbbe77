//! The directory's data: organisations, their users, their certificates, what a lookup
//! answers, and the audit trail. Plain data, as the stores keep it (JSON): it knows nothing of
//! the stores, the rules or the command line (which has its own names for these values).

use serde::{Deserialize, Serialize};

/// How an organisation reaches the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionType {
    /// Its own mail server relays through the hub over TLS with a client certificate; its
    /// users' secure addresses are their own with the secure suffix added.
    Server,
    /// Hosted accounts under the secure suffix, with SMTP AUTH submission.
    Mailbox,
}

/// `applied` → `approved` → (terms signed) → `active`, or `suspended`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgState {
    Applied,
    Approved,
    Active,
    Suspended,
}

/// The TLS client certificate a server-connected organisation presents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// SHA-256 fingerprint, hex.
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    /// Short stable identifier, e.g. `smith-chambers`.
    pub id: String,
    pub name: String,
    /// Mail domains, lower case: a server organisation's own domains (`firm.co.uk`), a mailbox
    /// organisation's hosted domain under the secure suffix (`smithchambers.cjsm.net`).
    pub domains: Vec<String>,
    pub connection: ConnectionType,
    pub state: OrgState,
    /// When the terms and conditions were signed (seconds since the Unix epoch).
    #[serde(default)]
    pub terms_signed: Option<u64>,
    /// Organisation Administrators' addresses.
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub client_certificate: Option<ClientCertificate>,
    /// Server connections: the next hop for mail to the organisation's domains, as Postfix
    /// writes it (`[mx.firm.co.uk]`, `[192.0.2.25]:25`); none: the domains' MX records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_server: Option<String>,
    /// When the application was approved; activation needs it.
    #[serde(default)]
    pub approved: Option<u64>,
    pub created: u64,
    pub updated: u64,
    /// Bumped by every write; a change is written only if the revision read is still current.
    #[serde(default)]
    pub revision: u64,
}

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

impl std::fmt::Display for OrgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrgState::Applied => "applied",
            OrgState::Approved => "approved",
            OrgState::Active => "active",
            OrgState::Suspended => "suspended",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The secure address, lower case.
    pub address: String,
    /// The organisation's id.
    pub org: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// Town or city.
    #[serde(default)]
    pub town: String,
    /// Business type, e.g. "Solicitors", "Police", "Barristers' chambers".
    #[serde(default)]
    pub business_type: String,
    pub state: UserState,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
    /// An S/MIME certificate (PEM), for encryption (a later issue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smime_certificate: Option<String>,
    /// Bumped by every write; a change is written only if the revision read is still current.
    #[serde(default)]
    pub revision: u64,
}

/// An S/MIME certificate registered for an address (a recipient outside the secure
/// networks reached by encryption), with what was read from it at import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// The address, lower case.
    pub address: String,
    /// The certificate, PEM.
    pub pem: String,
    /// SHA-256 fingerprint, hex.
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    /// Validity, seconds since the Unix epoch.
    pub not_before: u64,
    pub not_after: u64,
    /// When it was imported.
    pub added: u64,
}

/// What the milter needs to know of an address: the user and their organisation, read together
/// (one round trip on Redis). For an address no user has, `org` is the organisation that holds
/// its domain, if any (so a forged sender in an organisation's domain is recognised).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    pub user: Option<User>,
    pub org: Option<Organisation>,
    /// The address's S/MIME certificate, if one is registered.
    pub certificate: Option<Certificate>,
}

/// One entry of the audit trail: a verdict or an admin change. Never a message body. Stored as
/// one JSON object with `kind` saying which.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AuditEvent {
    Verdict(VerdictEvent),
    Admin(AdminEvent),
}

/// What the milter decided for a message (or a refused sender or recipient).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictEvent {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The MTA's queue id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marking: Option<String>,
    /// accept, reject, tempfail, quarantine; `report-only …` when it was only reported. Text,
    /// as stored: the trail outlives any one version's set of actions.
    pub action: String,
    /// The policy reason (the metrics' label).
    #[serde(default)]
    pub reason: String,
}

/// A change to the directory, by whom.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminEvent {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The command, e.g. `user suspend`.
    pub action: String,
    /// What changed.
    #[serde(default)]
    pub reason: String,
    /// Who ran the command (the Unix user), or who made the change on the website (their
    /// sign-in name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The client address of a change made on the website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The organisation id or user address changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl AuditEvent {
    pub fn time_ms(&self) -> u64 {
        match self {
            AuditEvent::Verdict(e) => e.time_ms,
            AuditEvent::Admin(e) => e.time_ms,
        }
    }

    /// The verdict's or the command's action.
    pub fn action(&self) -> &str {
        match self {
            AuditEvent::Verdict(e) => &e.action,
            AuditEvent::Admin(e) => &e.action,
        }
    }

    /// A verdict's queue id.
    pub fn queue_id(&self) -> Option<&str> {
        match self {
            AuditEvent::Verdict(e) => e.queue_id.as_deref(),
            AuditEvent::Admin(_) => None,
        }
    }

    /// The addresses the event concerns (for `audit search --address`).
    pub fn mentions(&self, address: &str) -> bool {
        let address = address.to_ascii_lowercase();
        match self {
            AuditEvent::Verdict(e) => {
                e.sender.as_deref() == Some(address.as_str()) || e.recipients.contains(&address)
            }
            AuditEvent::Admin(e) => e.target.as_deref() == Some(address.as_str()),
        }
    }
}

/// The organisation the unit tests build on: active, terms signed, approved.
#[cfg(test)]
pub(crate) fn test_org(
    id: &str,
    name: &str,
    domains: &[&str],
    connection: ConnectionType,
) -> Organisation {
    Organisation {
        id: id.into(),
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        connection,
        state: OrgState::Active,
        terms_signed: Some(1),
        admins: vec![],
        client_certificate: None,
        mail_server: None,
        approved: Some(1),
        revision: 0,
        created: 1,
        updated: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trail written before the events were typed reads back, and is written the same way
    /// (one object, `kind` saying which, empty fields left out).
    #[test]
    fn audit_events_keep_their_stored_form() {
        let stored = [
            r#"{"time_ms":1,"kind":"verdict","queue_id":"4XQ1","sender":"a@x.uk","recipients":["b@y.uk"],"marking":"OFFICIAL","action":"accept","reason":"ok"}"#,
            r#"{"time_ms":2,"kind":"admin","action":"user suspend","reason":"state","actor":"root","target":"b@y.uk"}"#,
            r#"{"time_ms":3,"kind":"verdict","action":"tempfail","reason":"store-error"}"#,
        ];
        for line in stored {
            let event: AuditEvent = serde_json::from_str(line).unwrap();
            let again: serde_json::Value = serde_json::to_value(&event).unwrap();
            let original: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(again, original, "{line}");
        }
        let admin: AuditEvent = serde_json::from_str(stored[1]).unwrap();
        assert!(admin.mentions("B@y.uk") && admin.queue_id().is_none());
        assert_eq!((admin.time_ms(), admin.action()), (2, "user suspend"));
        // An unknown kind or field is refused, not read as something else.
        for bad in [
            r#"{"time_ms":1,"kind":"other","action":"x"}"#,
            r#"{"time_ms":1,"kind":"admin","action":"x","queue_id":"q"}"#,
        ] {
            assert!(serde_json::from_str::<AuditEvent>(bad).is_err(), "{bad}");
        }
    }
}
