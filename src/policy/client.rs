//! Who the client is, from the facts the MTA reports about the SMTP session: the network it
//! connects from, and the TLS client certificate it presented.

use super::{RegisteredCertificate, SessionFacts};
use crate::config::RoutingConfig;
use serde::Serialize;
use std::net::IpAddr;

/// Where the client connects from, by the configured address ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// One of the hub's own hosts (`routing.trusted_networks`).
    Trusted,
    /// A peer on the government secure networks (`routing.secure_networks`).
    Secure,
    Other,
}

/// The client's network, by the ranges the config parsed on load.
pub fn network(client: Option<IpAddr>, routing: &RoutingConfig) -> Network {
    let Some(client) = client else {
        return Network::Other;
    };
    // An IPv4 client seen on an IPv6 socket (::ffff:192.0.2.1) is its IPv4 address.
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let within = |ranges: &[ipnet::IpNet]| ranges.iter().any(|net| net.contains(&client));
    if within(&routing.trusted_networks) {
        Network::Trusted
    } else if within(&routing.secure_networks) {
        Network::Secure
    } else {
        Network::Other
    }
}

/// The common name of a distinguished name, lower-cased: Sendmail's one-line form with `+XX`
/// escapes (`/C=GB/O=Firm+20LLP/CN=mail.firm.co.uk`), an RFC 4514 string
/// (`CN=mail.firm.co.uk,O=Firm LLP`), or a bare CN as Postfix reports it. `None` when a DN
/// has no CN or more than one: a name built to look like another (an O or CN value holding
/// `/CN=...`) is ambiguous, and never matches.
pub fn common_name(dn: &str) -> Option<String> {
    let decoded = decode_xtext(dn.trim());
    let separator = if decoded.starts_with('/') {
        '/'
    } else if decoded.contains('=') {
        ','
    } else {
        return Some(decoded.to_ascii_lowercase());
    };
    let mut names = decoded.split(separator).filter_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("CN")
            .then(|| value.trim().to_ascii_lowercase())
    });
    match (names.next(), names.next()) {
        (Some(cn), None) => Some(cn),
        _ => None,
    }
}

/// The common name in a `{cert_subject}` or `{cert_issuer}` the MTA reported: Sendmail's
/// one-line DN (it starts with `/`), otherwise the CN alone, as Postfix sends it, taken
/// literally (a CN that reads like a DN is not parsed as one).
pub fn reported_common_name(value: &str) -> Option<String> {
    let value = value.trim();
    if value.starts_with('/') {
        common_name(value)
    } else {
        Some(value.to_ascii_lowercase())
    }
}

/// Sendmail's `+XX` hex escapes (xtext, RFC 3461) decoded; other text unchanged.
fn decode_xtext(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'+'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The session has a client certificate the MTA verified (Sendmail's `{verify}` is `OK`;
/// Postfix reports a certificate only when it chains to its CA file, which holds only the CA
/// of the organisations' client certificates).
pub fn certificate_verified(session: &SessionFacts) -> bool {
    session.verify.as_deref().is_none_or(|v| v == "OK")
        && session.cert_subject.is_some()
        && session.cert_issuer.is_some()
}

/// The common name of the client certificate's subject or issuer as the MTA reported it:
/// Sendmail's `{cn_subject}`/`{cn_issuer}` (the CN alone, xtext-encoded) when there is one,
/// otherwise read from `{cert_subject}`/`{cert_issuer}` ([`reported_common_name`]). The CN
/// alone cannot be made ambiguous by a DN whose other values read like a second CN.
fn session_common_name(cn: Option<&str>, dn: &str) -> Option<String> {
    match cn {
        Some(cn) => Some(decode_xtext(cn.trim()).to_ascii_lowercase()),
        None => reported_common_name(dn),
    }
}

/// The session's client certificate is the one registered: verified by the MTA
/// ([`certificate_verified`]), and subject and issuer have the registered common names.
pub fn certificate_matches(session: &SessionFacts, registered: &RegisteredCertificate) -> bool {
    if !certificate_verified(session) {
        return false;
    }
    let (Some(subject), Some(issuer)) = (&session.cert_subject, &session.cert_issuer) else {
        return false;
    };
    let same = |cn: Option<&str>, reported: &str, registered: &str| {
        session_common_name(cn, reported)
            .is_some_and(|cn| !cn.is_empty() && Some(cn) == common_name(registered))
    };
    same(session.cn_subject.as_deref(), subject, &registered.subject)
        && same(session.cn_issuer.as_deref(), issuer, &registered.issuer)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client certificate as Postfix reports it (the common names alone).
    pub(crate) fn postfix_cert() -> SessionFacts {
        SessionFacts {
            client_addr: Some("192.0.2.10".parse().unwrap()),
            tls_version: Some("TLSv1.3".into()),
            cert_subject: Some("mail.firm.co.uk".into()),
            cert_issuer: Some("CJSM Client CA".into()),
            ..SessionFacts::default()
        }
    }

    #[test]
    fn common_names() {
        let cases = [
            ("mail.firm.co.uk", Some("mail.firm.co.uk")),
            (
                "/C=GB/O=Firm+20LLP/CN=mail.firm.co.uk",
                Some("mail.firm.co.uk"),
            ),
            (
                "CN=Mail.Firm.co.uk,O=Firm LLP,C=GB",
                Some("mail.firm.co.uk"),
            ),
            (
                "C = GB, O = Firm LLP, CN = mail.firm.co.uk",
                Some("mail.firm.co.uk"),
            ),
            ("/CN=CJSM+20Client+20CA", Some("cjsm client ca")),
            ("+2", Some("+2")),
            ("", Some("")),
            // Ambiguous: no CN, or a value that smuggles in a second one.
            ("/C=GB/O=Firm", None),
            ("/O=x/CN=evil.example/CN=mail.firm.co.uk", None),
            ("CN=evil.example,O=x,CN=mail.firm.co.uk", None),
        ];
        for (dn, cn) in cases {
            assert_eq!(common_name(dn).as_deref(), cn, "{dn}");
        }
        // What the MTA reports: Postfix's bare CN is taken literally, even if it reads like
        // a DN; Sendmail's one-line DN is parsed.
        let reported = [
            ("mail.firm.co.uk", Some("mail.firm.co.uk")),
            ("CN=mail.firm.co.uk,O=x", Some("cn=mail.firm.co.uk,o=x")),
            ("/C=GB/CN=mail.firm.co.uk", Some("mail.firm.co.uk")),
            ("/C=GB/CN=x/CN=mail.firm.co.uk", None),
        ];
        for (value, cn) in reported {
            assert_eq!(reported_common_name(value).as_deref(), cn, "{value}");
        }
    }

    #[test]
    fn certificates() {
        let registered = RegisteredCertificate {
            subject: "/C=GB/O=Firm LLP/CN=mail.firm.co.uk".into(),
            issuer: "CN=CJSM Client CA,O=Hub".into(),
        };
        let sendmail = SessionFacts {
            cert_subject: Some("/C=GB/O=Firm+20LLP/CN=mail.firm.co.uk".into()),
            cert_issuer: Some("/O=Hub/CN=CJSM+20Client+20CA".into()),
            verify: Some("OK".into()),
            ..SessionFacts::default()
        };
        let cases: Vec<(&str, SessionFacts, bool)> = vec![
            ("postfix CNs", postfix_cert(), true),
            ("sendmail DNs, verified", sendmail.clone(), true),
            (
                "sendmail, verify FAIL",
                SessionFacts {
                    verify: Some("FAIL".into()),
                    ..sendmail.clone()
                },
                false,
            ),
            (
                "another subject",
                SessionFacts {
                    cert_subject: Some("mail.other.co.uk".into()),
                    ..postfix_cert()
                },
                false,
            ),
            (
                "another issuer",
                SessionFacts {
                    cert_issuer: Some("Some Public CA".into()),
                    ..postfix_cert()
                },
                false,
            ),
            (
                "no issuer",
                SessionFacts {
                    cert_issuer: None,
                    ..postfix_cert()
                },
                false,
            ),
            ("no certificate", SessionFacts::default(), false),
            (
                "sendmail's common names, the one-line DN ambiguous",
                SessionFacts {
                    cert_subject: Some("/C=GB/O=x/CN=y/CN=mail.firm.co.uk".into()),
                    cn_subject: Some("mail.firm.co.uk".into()),
                    cn_issuer: Some("CJSM+20Client+20CA".into()),
                    ..sendmail.clone()
                },
                true,
            ),
            (
                "sendmail's common name is another's, whatever the DN says",
                SessionFacts {
                    cn_subject: Some("mail.other.co.uk".into()),
                    ..sendmail.clone()
                },
                false,
            ),
        ];
        for (name, session, expected) in cases {
            assert_eq!(
                certificate_matches(&session, &registered),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn networks() {
        let routing = RoutingConfig {
            trusted_networks: vec!["127.0.0.1/32".parse().unwrap()],
            secure_networks: vec![
                "10.20.0.0/16".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..RoutingConfig::default()
        };
        let cases = [
            (Some("127.0.0.1"), Network::Trusted),
            (Some("::ffff:127.0.0.1"), Network::Trusted),
            (Some("127.0.0.2"), Network::Other),
            (Some("10.20.3.4"), Network::Secure),
            (Some("2001:db8::1"), Network::Secure),
            (Some("192.0.2.1"), Network::Other),
            (None, Network::Other),
        ];
        for (addr, expected) in cases {
            let addr = addr.map(|a| a.parse().unwrap());
            assert_eq!(network(addr, &routing), expected, "{addr:?}");
        }
    }
}
