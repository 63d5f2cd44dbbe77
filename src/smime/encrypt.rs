//! CMS encryption of a MIME entity for a set of certificates, written as an S/MIME body.

/// The content cipher is a setting (`encryption.cipher`); what it means to CMS is here.
pub use crate::config::Cipher;

impl Cipher {
    /// The `smime-type` parameter of the Content-Type (RFC 8551).
    pub fn smime_type(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "authEnveloped-data",
            Cipher::Aes256Cbc => "enveloped-data",
        }
    }

    fn openssl(self) -> openssl::symm::Cipher {
        match self {
            Cipher::Aes256Gcm => openssl::symm::Cipher::aes_256_gcm(),
            Cipher::Aes256Cbc => openssl::symm::Cipher::aes_256_cbc(),
        }
    }
}

/// Why CMS encryption failed.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    #[error("no certificate to encrypt for")]
    NoCertificate,
    #[error("certificate: {0}")]
    Certificate(openssl::error::ErrorStack),
    #[error("CMS encryption: {0}")]
    Encryption(openssl::error::ErrorStack),
    #[error("CMS encoding: {0}")]
    Encoding(openssl::error::ErrorStack),
}

/// The CMS structure (DER) of `entity` encrypted for every certificate (PEM) in `recipients`.
pub fn encrypt(entity: &[u8], recipients: &[&str], cipher: Cipher) -> Result<Vec<u8>, CmsError> {
    use openssl::cms::{CMSOptions, CmsContentInfo};
    use openssl::stack::Stack;
    use openssl::x509::X509;
    if recipients.is_empty() {
        return Err(CmsError::NoCertificate);
    }
    let mut certs = Stack::new().map_err(CmsError::Encryption)?;
    for pem in recipients {
        let cert = X509::from_pem(pem.as_bytes()).map_err(CmsError::Certificate)?;
        certs.push(cert).map_err(CmsError::Encryption)?;
    }
    // BINARY: the entity is already canonical (CRLF); encrypt its bytes as they are.
    let cms = CmsContentInfo::encrypt(&certs, entity, cipher.openssl(), CMSOptions::BINARY)
        .map_err(CmsError::Encryption)?;
    cms.to_der().map_err(CmsError::Encoding)
}

/// Base64 in lines of 76 characters, each ended by CRLF: the body of the S/MIME entity.
pub fn base64_lines(der: &[u8]) -> Vec<u8> {
    // 57 input bytes make one 76-character line.
    let mut out = Vec::with_capacity(der.len() / 57 * 78 + 80);
    for chunk in der.chunks(57) {
        out.extend_from_slice(openssl::base64::encode_block(chunk).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The top-level headers of the encrypted message (name, value).
pub fn headers(cipher: Cipher) -> Vec<(&'static str, String)> {
    vec![
        (
            "Content-Type",
            format!(
                "application/pkcs7-mime; smime-type={}; name=\"smime.p7m\"",
                cipher.smime_type()
            ),
        ),
        ("Content-Transfer-Encoding", "base64".into()),
        (
            "Content-Disposition",
            "attachment; filename=\"smime.p7m\"".into(),
        ),
        ("Content-Description", "S/MIME Encrypted Message".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lines_are_76_wide_and_decode_back() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = base64_lines(&data);
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        assert!(lines[..lines.len() - 2].iter().all(|l| l.len() == 77)); // 76 + CR
        let joined: String = String::from_utf8(text.clone()).unwrap().replace("\r\n", "");
        assert_eq!(openssl::base64::decode_block(&joined).unwrap(), data);
        assert!(encrypt(b"x", &[], Cipher::Aes256Gcm).is_err());
        assert!(encrypt(b"x", &["not pem"], Cipher::Aes256Gcm).is_err());
    }
}
