//! S/MIME: the certificates registered for recipients outside the secure networks, and the
//! encryption that reaches them (CMS enveloped data, through OpenSSL).

pub mod cert;
pub mod encrypt;
