//! The directory's records as tests write them: an organisation that has applied, been
//! approved, signed the terms and been switched on, and an active user. A test that needs
//! something else says only what differs, with struct update syntax:
//! `Organisation { connection: ConnectionType::Server, ..org("firm", &["firm.co.uk"]) }`.

use cjsm_milter::directory::model::{ConnectionType, OrgState, Organisation, User, UserState};

/// An active organisation with a mailbox connection, named "`id` LLP", owning `domains`.
pub fn org(id: &str, domains: &[&str]) -> Organisation {
    Organisation {
        id: id.into(),
        name: format!("{id} LLP"),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        connection: ConnectionType::Mailbox,
        state: OrgState::Active,
        terms_signed: Some(1),
        admins: vec![],
        client_certificate: None,
        mail_server: None,
        approved: Some(1),
        revision: 0,
        created: 0,
        updated: 0,
    }
}

/// An active user "Test User" of organisation `org`, without town, business or certificate.
pub fn user(address: &str, org: &str) -> User {
    User {
        address: address.into(),
        org: org.into(),
        first_name: "Test".into(),
        last_name: "User".into(),
        town: String::new(),
        business_type: String::new(),
        state: UserState::Active,
        created: 0,
        updated: 0,
        smime_certificate: None,
        revision: 0,
    }
}
