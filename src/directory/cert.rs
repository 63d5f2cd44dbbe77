//! S/MIME certificates of recipients reached by encryption: import (checked), show, remove,
//! and those about to lapse.

use super::model::Certificate;
use super::rules::check_address;
use super::{Admin, AdminError, refused};
use crate::address::normalize_address;
use crate::clock::now_unix;

impl Admin<'_> {
    /// `cert import`: an S/MIME certificate (PEM or DER) for `address`, checked first: valid
    /// now, usable for encryption, and issued for that address. Replaces any earlier one.
    pub async fn cert_import(
        &self,
        address: &str,
        bytes: &[u8],
    ) -> Result<Certificate, AdminError> {
        let address = normalize_address(address);
        check_address(&address).map_err(AdminError::Refused)?;
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

    pub async fn cert_show(&self, address: &str) -> Result<Certificate, AdminError> {
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
    pub async fn cert_expiring(&self, within: u64) -> Result<Vec<Certificate>, AdminError> {
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
}
