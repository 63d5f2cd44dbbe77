//! Reading and checking an S/MIME certificate: on import (a clear refusal naming what is wrong)
//! and at each message (a certificate that lapsed since is not used).

use crate::directory::model::Certificate;
use crate::policy::encryption::{Validity, validity};
use x509_parser::prelude::*;

/// What a certificate says, read once at import.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub pem: String,
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: u64,
    pub not_after: u64,
    /// E-mail addresses: subjectAltName rfc822Name entries and the subject's emailAddress.
    pub emails: Vec<String>,
    /// `None` when the certificate may encrypt; otherwise why not.
    pub unusable_for_encryption: Option<String>,
}

/// The largest certificate file read (a certificate is a few KB).
pub const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// Why a certificate is refused, in words for the administrator importing it.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("larger than {MAX_CERTIFICATE_BYTES} bytes: not one certificate")]
    TooLarge,
    #[error("not a PEM certificate: {0}")]
    NotPem(String),
    #[error("PEM block {0:?}, expected CERTIFICATE")]
    NotACertificateBlock(String),
    #[error("not an X.509 certificate: {0}")]
    NotX509(String),
    #[error("trailing bytes after the certificate")]
    TrailingBytes,
    #[error("not a certificate OpenSSL reads: {0}")]
    NotForOpenssl(openssl::error::ErrorStack),
    #[error("not valid yet: its validity starts {}", date(*.0))]
    NotYetValid(u64),
    #[error("expired on {}", date(*.0))]
    Expired(u64),
    #[error("cannot be used for encryption: {0}")]
    Unusable(String),
    #[error("issued for no e-mail address; {0} needs its own certificate")]
    NoAddress(String),
    #[error("issued for {issued_for}, not for {address}")]
    OtherAddress { issued_for: String, address: String },
}

/// One certificate, PEM or DER.
pub fn parse(bytes: &[u8]) -> Result<Parsed, CertError> {
    if bytes.len() > MAX_CERTIFICATE_BYTES {
        return Err(CertError::TooLarge);
    }
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let (_, pem) = parse_x509_pem(bytes).map_err(|e| CertError::NotPem(e.to_string()))?;
        if pem.label != "CERTIFICATE" {
            return Err(CertError::NotACertificateBlock(pem.label));
        }
        pem.contents
    } else {
        bytes.to_vec()
    };
    let (rest, cert) =
        X509Certificate::from_der(&der).map_err(|e| CertError::NotX509(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::TrailingBytes);
    }
    let validity = cert.validity();
    let to_unix = |t: &ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
    let mut emails: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::RFC822Name(email) = name {
                emails.push(email.to_ascii_lowercase());
            }
        }
    }
    for attribute in cert.subject().iter_email() {
        if let Ok(email) = attribute.as_str() {
            emails.push(email.to_ascii_lowercase());
        }
    }
    let unusable_for_encryption = usage_problem(&cert);
    let pem = openssl::x509::X509::from_der(&der)
        .and_then(|x| x.to_pem())
        .map_err(CertError::NotForOpenssl)?;
    Ok(Parsed {
        pem: String::from_utf8_lossy(&pem).into_owned(),
        fingerprint: hex(&openssl::sha::sha256(&der)),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: to_unix(&validity.not_before),
        not_after: to_unix(&validity.not_after),
        emails,
        unusable_for_encryption,
    })
}

/// Key usage (when present) must allow key encipherment or key agreement, and extended key
/// usage (when present) must allow e-mail protection.
fn usage_problem(cert: &X509Certificate) -> Option<String> {
    match cert.key_usage() {
        Ok(Some(usage)) if !(usage.value.key_encipherment() || usage.value.key_agreement()) => {
            return Some(format!(
                "its key usage ({}) allows neither key encipherment nor key agreement",
                usage.value
            ));
        }
        Err(e) => return Some(format!("its key usage cannot be read: {e}")),
        _ => {}
    }
    match cert.extended_key_usage() {
        Ok(Some(usage)) if !(usage.value.email_protection || usage.value.any) => {
            Some("its extended key usage does not allow e-mail protection".into())
        }
        Err(e) => Some(format!("its extended key usage cannot be read: {e}")),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checks of `cert import`: usable for encryption, valid now, and issued for `address`.
pub fn check_for(parsed: &Parsed, address: &str, now: u64) -> Result<(), CertError> {
    match validity(parsed.not_before, parsed.not_after, now) {
        Validity::Valid => {}
        Validity::NotYetValid => return Err(CertError::NotYetValid(parsed.not_before)),
        Validity::Expired => return Err(CertError::Expired(parsed.not_after)),
    }
    if let Some(problem) = &parsed.unusable_for_encryption {
        return Err(CertError::Unusable(problem.clone()));
    }
    let address = address.to_ascii_lowercase();
    if !parsed.emails.contains(&address) {
        return Err(if parsed.emails.is_empty() {
            CertError::NoAddress(address)
        } else {
            CertError::OtherAddress {
                issued_for: parsed.emails.join(", "),
                address,
            }
        });
    }
    Ok(())
}

/// The record the store keeps.
pub fn record(parsed: Parsed, address: &str, now: u64) -> Certificate {
    Certificate {
        address: address.to_ascii_lowercase(),
        pem: parsed.pem,
        fingerprint: parsed.fingerprint,
        subject: parsed.subject,
        issuer: parsed.issuer,
        not_before: parsed.not_before,
        not_after: parsed.not_after,
        added: now,
    }
}

/// A date as `2026-11-27 09:30:00 UTC`.
pub fn date(unix: u64) -> String {
    ASN1Time::from_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .map_or_else(|_| unix.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_windows() {
        assert_eq!(validity(10, 20, 15), Validity::Valid);
        assert_eq!(validity(10, 20, 10), Validity::Valid);
        assert_eq!(validity(10, 20, 20), Validity::Valid);
        assert_eq!(validity(10, 20, 9), Validity::NotYetValid);
        assert_eq!(validity(10, 20, 21), Validity::Expired);
    }

    #[test]
    fn garbage_is_refused_clearly() {
        assert!(
            parse(b"hello")
                .unwrap_err()
                .to_string()
                .contains("not an X.509")
        );
        assert!(parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
        assert!(
            parse(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err()
                .to_string()
                .contains("PRIVATE KEY")
        );
        assert!(parse(&vec![b'a'; MAX_CERTIFICATE_BYTES + 1]).is_err());
    }
}
