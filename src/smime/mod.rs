//! S/MIME: the certificates registered for recipients outside the secure networks, and the
//! encryption that reaches them (CMS enveloped data, through OpenSSL).

pub mod cert;
pub mod encrypt;

use crate::clock::now_unix;
use crate::config::Cipher;
use crate::transaction::{EncryptError, Encrypted, Encryptor};

/// The hub's archive certificate (`encryption.escrow_certificate`): every encrypted message is
/// also encrypted for it.
#[derive(Clone, Debug)]
pub struct Escrow {
    pub pem: String,
    /// When it lapses (Unix seconds): past it, encryption tempfails rather than leave the
    /// hub's archive without a copy.
    pub not_after: u64,
}

/// The hub's encryption: CMS with the configured cipher, every message also encrypted for the
/// escrow certificate when there is one.
pub struct Smime {
    pub cipher: Cipher,
    /// The hub's archive certificate, when there is one.
    pub escrow: Option<Escrow>,
}

impl Encryptor for Smime {
    fn encrypt(&self, entity: &[u8], certificates: &[&str]) -> Result<Encrypted, EncryptError> {
        let mut certificates = certificates.to_vec();
        if let Some(escrow) = &self.escrow {
            if now_unix() > escrow.not_after {
                return Err(EncryptError::EscrowExpired(cert::date(escrow.not_after)));
            }
            certificates.push(&escrow.pem);
        }
        let der = encrypt::encrypt(entity, &certificates, self.cipher)
            .map_err(|e| EncryptError::Cms(Box::new(e)))?;
        crate::metrics::metrics().messages_encrypted.inc();
        Ok(Encrypted {
            headers: encrypt::headers(self.cipher)
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
            body: encrypt::base64_lines(&der),
        })
    }
}
