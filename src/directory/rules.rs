//! The rules every way into the directory shares (`org apply`, `user add`, the CSV import):
//! what a typed field, a secure address, a mail server and a fingerprint may be, which domains
//! an organisation's users may have, and how a refusal names what was wrong.

use super::AdminError;
use super::model::Organisation;
use crate::address::Domain;

/// The longest a field other than the address may be, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// The longest an address may be, in characters (RFC 5321's limit on a path).
pub const MAX_ADDRESS_CHARS: usize = 254;

const MAX_LOCAL_PART_CHARS: usize = 64;
const MAX_LABEL_CHARS: usize = 63;
/// How much of a value an error message quotes.
const MAX_SHOWN_CHARS: usize = 80;

/// The length and character checks every field gets. The length is checked first, so a huge
/// field costs no more than its size.
pub fn check_text(text: &str, max_chars: usize) -> Option<String> {
    // A char is at most 4 bytes: a field longer than that in bytes is too long in chars.
    let chars = if text.len() > 4 * max_chars {
        None
    } else {
        Some(text.chars().count())
    };
    match chars {
        Some(n) if n <= max_chars => {}
        Some(n) => return Some(format!("is {n} characters long, at most {max_chars}")),
        None => {
            return Some(format!(
                "is {} bytes long, at most {max_chars} characters",
                text.len()
            ));
        }
    }
    let (position, c) = text.chars().enumerate().find(|(_, c)| c.is_control())?;
    Some(if c == '\n' || c == '\r' {
        "contains a line break (is a quote left open?)".to_string()
    } else {
        format!(
            "contains a control character (U+{:04X}) at character {}",
            u32::from(c),
            position + 1
        )
    })
}

/// Whether `address` (already trimmed and lower-cased) is a plausible secure address: one `@`,
/// a dot-atom local part of at most 64 characters, a domain name of at least two labels, at
/// most 254 characters in all, ASCII only.
pub fn check_address(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("is empty; it is required".to_string());
    }
    if let Some(reason) = check_text(address, MAX_ADDRESS_CHARS) {
        return Err(reason);
    }
    if address.contains(char::is_whitespace) {
        return Err(format!("`{}` contains a space", shown(address)));
    }
    // A spreadsheet would run it as a formula wherever the address is exported or pasted.
    if let Some(sign) = address.chars().next().filter(|&c| "=+-".contains(c)) {
        return Err(format!(
            "`{}` begins with `{sign}`, which a spreadsheet would run as a formula",
            shown(address)
        ));
    }
    let Some((local, domain)) = address.split_once('@') else {
        return Err(format!("`{}` has no @", shown(address)));
    };
    if domain.contains('@') {
        return Err(format!("`{}` has more than one @", shown(address)));
    }
    if local.is_empty() {
        return Err(format!("`{}` has nothing before the @", shown(address)));
    }
    if domain.is_empty() {
        return Err(format!("`{}` has no domain after the @", shown(address)));
    }
    if local.chars().count() > MAX_LOCAL_PART_CHARS {
        return Err(format!(
            "the part before the @ is longer than {MAX_LOCAL_PART_CHARS} characters"
        ));
    }
    if let Some(c) = local.chars().find(|&c| !is_atext(c) && c != '.') {
        return Err(format!(
            "`{}` has `{}` before the @, which an address cannot have",
            shown(address),
            c.escape_debug()
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(format!(
            "`{}` has a misplaced dot before the @",
            shown(address)
        ));
    }
    if !is_mail_domain(domain) {
        return Err(format!(
            "`{}` does not have a valid domain name after the @",
            shown(address)
        ));
    }
    Ok(())
}

/// A mail domain as the directory keeps it: at least two labels of letters, digits and inner
/// hyphens, none longer than 63 characters, short enough for an address at it (`x@…`) to fit.
pub fn is_mail_domain(domain: &str) -> bool {
    if domain.len() > MAX_ADDRESS_CHARS - 2 {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let bad_label = |label: &&str| {
        label.is_empty()
            || label.len() > MAX_LABEL_CHARS
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.len() >= 2 && !labels.iter().any(bad_label)
}

/// RFC 5322 `atext`.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// A value as an error message quotes it: escaped, and cut short if long.
pub(crate) fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(MAX_SHOWN_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(MAX_SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A field typed by an administrator: trimmed, bounded, no control characters.
pub(crate) fn checked_text(field: &str, value: &str) -> Result<String, AdminError> {
    let value = value.trim();
    match check_text(value, MAX_FIELD_CHARS) {
        Some(why) => Err(AdminError::Refused(format!("{field} {why}"))),
        None => Ok(value.to_string()),
    }
}

/// A next hop as Postfix writes it: `host`, `[host]` or `[host]:port`, nothing else.
pub(crate) fn checked_mail_server(text: &str) -> Result<String, AdminError> {
    let text = text.trim();
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => (host, Some("")),
            },
            None => ("", None),
        },
        None => (text, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok && !text.contains(char::is_whitespace) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(AdminError::Refused(format!(
            "--mail-server {text:?}: expected a host name, [host] or [host]:port"
        )))
    }
}

/// A client certificate's SHA-256 fingerprint as stored: 64 lower-case hex digits (an
/// administrator may paste it with colons, in either case).
pub(crate) fn checked_fingerprint(text: &str) -> Result<String, AdminError> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(AdminError::Refused(format!(
            "certificate fingerprint {text:?}: expected a SHA-256 fingerprint (64 hex digits, colons allowed)"
        )))
    }
}

/// The refusal of an application for a domain another organisation holds, naming it.
pub(crate) fn duplicate_message(domain: &str, holder: &Organisation) -> String {
    format!(
        "duplicate application: {domain} is already registered to {} ({}, {})",
        holder.id, holder.name, holder.state
    )
}

/// The message for an address outside its organisation's domains, naming the allowed ones.
pub fn outside_org_message(address: &str, org: &Organisation, secure_suffix: &str) -> String {
    let allowed = allowed_domains(org, secure_suffix);
    if allowed.is_empty() {
        format!(
            "`{}` cannot be added: organisation `{}` has no mail domains",
            shown(address),
            org.id
        )
    } else {
        let allowed: Vec<String> = allowed.iter().map(|d| format!("@{d}")).collect();
        format!(
            "`{}` is not under organisation `{}`'s domains; allowed: {}",
            shown(address),
            org.id,
            allowed.join(", ")
        )
    }
}

/// The domains an organisation's secure addresses may have: each of its domains that is
/// already under the secure suffix (a hosted mailbox domain such as `smithchambers.cjsm.net`)
/// as it is, and each other one (a server organisation's own `firm.co.uk`) with the suffix
/// added (`firm.co.uk.cjsm.net`).
pub fn allowed_domains(org: &Organisation, secure_suffix: &str) -> Vec<Domain> {
    let suffix = Domain::new(secure_suffix);
    org.domains
        .iter()
        .filter_map(|domain| Domain::new(domain))
        .map(|domain| match &suffix {
            Some(suffix) if !domain.is_within(suffix) => domain.under(suffix),
            _ => domain,
        })
        .collect()
}

/// Whether `address`'s domain is one of [`allowed_domains`] of `org`.
pub fn address_in_org(address: &str, org: &Organisation, secure_suffix: &str) -> bool {
    Domain::of(address.trim())
        .is_some_and(|domain| allowed_domains(org, secure_suffix).contains(&domain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::model::ConnectionType;

    use crate::directory::model::test_org as org;

    #[test]
    fn address_in_org_rules() {
        let server = org(
            "smith-llp",
            "Smith LLP",
            &["firm.co.uk", "Smith.Example."],
            ConnectionType::Server,
        );
        let mailbox = org(
            "smith-chambers",
            "Smith Chambers",
            &["smithchambers.cjsm.net"],
            ConnectionType::Mailbox,
        );
        let cases: &[(&str, &Organisation, bool)] = &[
            ("alice@firm.co.uk.cjsm.net", &server, true),
            ("alice@smith.example.cjsm.net", &server, true),
            ("alice@FIRM.CO.UK.cjsm.net", &server, true),
            ("alice@firm.co.uk", &server, false),
            ("alice@x.firm.co.uk.cjsm.net", &server, false),
            ("alice@firm.co.uk.cjsm.net.evil.com", &server, false),
            ("alice@smithchambers.cjsm.net", &mailbox, true),
            ("alice@smithchambers.cjsm.net.cjsm.net", &mailbox, false),
            ("alice@other.cjsm.net", &mailbox, false),
            ("alice@firm.co.uk.cjsm.net", &mailbox, false),
            ("alice", &mailbox, false),
            ("alice@", &mailbox, false),
        ];
        for (address, org, ok) in cases {
            assert_eq!(
                address_in_org(address, org, "cjsm.net"),
                *ok,
                "{address} in {}",
                org.id
            );
        }
        assert_eq!(
            allowed_domains(&server, ".CJSM.net"),
            ["firm.co.uk.cjsm.net", "smith.example.cjsm.net"]
        );
        // A domain that only ends in the suffix's letters is not under it.
        let lookalike = org("x", "X", &["notcjsm.net"], ConnectionType::Server);
        assert_eq!(
            allowed_domains(&lookalike, "cjsm.net"),
            ["notcjsm.net.cjsm.net"]
        );
    }

    #[test]
    fn fingerprints_and_mail_servers() {
        let hex = "ab".repeat(32);
        for (text, ok) in [
            (hex.clone(), true),
            ("AB:".repeat(31) + "AB", true),
            ("ab".repeat(31), false),
            ("zz".repeat(32), false),
            (String::new(), false),
        ] {
            assert_eq!(
                checked_fingerprint(&text).ok(),
                ok.then(|| hex.clone()),
                "{text}"
            );
        }
        for (text, wanted) in [
            ("MX.firm.co.uk", Some("mx.firm.co.uk")),
            ("[mx.firm.co.uk]", Some("[mx.firm.co.uk]")),
            (" [192.0.2.25]:25 ", Some("[192.0.2.25]:25")),
            ("[mx.firm.co.uk]:0", None),
            ("[mx.firm.co.uk]25", None),
            ("mx firm", None),
            ("", None),
        ] {
            assert_eq!(checked_mail_server(text).ok().as_deref(), wanted, "{text}");
        }
    }
}
