//! The directory's answers as the rules take them: the store's [`Lookup`] made into a
//! [`Listing`] (the organisation's state folded into the user's, a certificate's validity
//! judged by the clock), asked through the [`Lookups`] the transaction uses.

use crate::clock::now_unix;
use crate::directory::model::{ConnectionType, Lookup, OrgState, UserState};
use crate::policy::encryption::{Validity, validity};
use crate::policy::{
    CertificateListing, Connection, DirectoryAnswer, Listing, OrgListing, RegisteredCertificate,
};
use crate::store::{DirectoryRead, StoreError};
use crate::transaction::Lookups;

/// The store, asked as the transaction asks.
pub struct StoreLookups<'a>(pub &'a dyn DirectoryRead);

impl Lookups for StoreLookups<'_> {
    type Error = StoreError;

    async fn listing(&self, address: &str) -> Result<Listing, StoreError> {
        let lookup = self
            .0
            .lookup(&crate::address::normalize_address(address))
            .await?;
        // A user whose organisation record has gone is broken data, not a verdict: tempfail.
        if let (Some(user), None) = (&lookup.user, &lookup.org) {
            return Err(StoreError::Corrupt {
                path: "directory".into(),
                message: format!("{}: organisation {} is missing", user.address, user.org),
            });
        }
        Ok(listing(&lookup, now_unix()))
    }
}

/// The store's answer at `now` (Unix seconds).
pub fn listing(lookup: &Lookup, now: u64) -> Listing {
    Listing {
        answer: answer(lookup),
        org: lookup.org.as_ref().map(|org| OrgListing {
            connection: match org.connection {
                ConnectionType::Server => Connection::Server,
                ConnectionType::Mailbox => Connection::Mailbox,
            },
            active: org.state == OrgState::Active,
            domains: org.domains.clone(),
            client_certificate: org
                .client_certificate
                .as_ref()
                .map(|c| RegisteredCertificate {
                    subject: c.subject.clone(),
                    issuer: c.issuer.clone(),
                }),
        }),
        certificate: lookup.certificate.as_ref().map(|cert| {
            let validity = validity(cert.not_before, cert.not_after, now);
            CertificateListing {
                validity,
                pem: (validity == Validity::Valid).then(|| cert.pem.as_str().into()),
            }
        }),
    }
}

/// Only users of an active organisation send or receive: a user of an organisation that is
/// not active (or has gone) is answered like a suspended one.
pub fn answer(lookup: &Lookup) -> DirectoryAnswer {
    let Some(user) = &lookup.user else {
        return DirectoryAnswer::Unknown;
    };
    let org_active = lookup
        .org
        .as_ref()
        .is_some_and(|o| o.state == OrgState::Active);
    match user.state {
        UserState::Active if org_active => DirectoryAnswer::Active,
        UserState::Active | UserState::Suspended => DirectoryAnswer::Suspended,
        UserState::Deleted => DirectoryAnswer::Deleted,
    }
}
