//! Encryption: who must be reached by S/MIME, and whether it can be done. The encryption
//! itself is the shell's (it holds the escrow certificate and calls OpenSSL).

use super::{MessageFacts, Recipient, Rules, Verdict, name_list};
use crate::marking::Level;
use serde::Serialize;

/// Whether a certificate may be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validity {
    Valid,
    NotYetValid,
    Expired,
}

/// A certificate's validity at `now` (seconds since the Unix epoch; the caller has the clock).
pub fn validity(not_before: u64, not_after: u64, now: u64) -> Validity {
    if now < not_before {
        Validity::NotYetValid
    } else if now > not_after {
        Validity::Expired
    } else {
        Validity::Valid
    }
}

/// The Subject asks for encryption: the trigger in its raw or decoded text.
pub fn requested(
    subject_raw: Option<&[u8]>,
    subject_decoded: Option<&str>,
    trigger: Option<&str>,
) -> bool {
    let Some(trigger) = trigger
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
    else {
        return false;
    };
    subject_decoded.is_some_and(|s| s.to_ascii_lowercase().contains(&trigger))
        || subject_raw.is_some_and(|raw| {
            raw.windows(trigger.len())
                .any(|w| w.eq_ignore_ascii_case(trigger.as_bytes()))
        })
}

/// Who the message is encrypted for: every recipient with a usable certificate, when every
/// recipient that must be reached by encryption has one (those without a secure route, when the
/// marking needs one or the sender asked for encryption). Empty when nothing is encrypted; a
/// refusal when encryption is needed and cannot be done. (Recipients with a secure route
/// receive the same, encrypted, message: a milter cannot split it.)
pub fn recipients_to_encrypt_for(
    rules: &Rules,
    message: &MessageFacts,
    marking: &Level,
    needs_secure: bool,
) -> Result<Vec<String>, Box<Verdict>> {
    let settings = &rules.config.encryption;
    let requested = settings.enabled && message.encryption_requested;
    let must_encrypt: Vec<&Recipient> = message
        .recipients
        .iter()
        .filter(|r| (requested || needs_secure) && !r.is_secure())
        .collect();
    if !settings.enabled || must_encrypt.is_empty() {
        return Ok(Vec::new());
    }
    let usable = |r: &Recipient| r.certificate == Some(Validity::Valid);
    let any_certificate = must_encrypt.iter().any(|r| r.certificate.is_some());
    let without: Vec<&str> = must_encrypt
        .iter()
        .filter(|r| !usable(r))
        .map(|r| r.address.as_str())
        .collect();
    if without.is_empty() && message.whole {
        return Ok(message
            .recipients
            .iter()
            .filter(|r| usable(r))
            .map(|r| r.address.clone())
            .collect());
    }
    if without.is_empty() {
        return Err(Box::new(Verdict::reject(
            super::Reason::TooLargeToEncrypt,
            "Message too large to encrypt; send it in smaller parts".into(),
        )));
    }
    if requested || any_certificate {
        let why = if requested {
            format!(
                "Encryption was requested ({}) but there is no valid S/MIME certificate for",
                settings.trigger.as_deref().unwrap_or_default()
            )
        } else {
            format!(
                "{} mail can only go to secure addresses or be encrypted; no secure route and no valid S/MIME certificate for",
                marking.name
            )
        };
        return Err(Box::new(Verdict::reject(
            super::Reason::NoSecureRoute,
            format!("{why} {}", name_list(&without)),
        )));
    }
    Ok(Vec::new())
}
