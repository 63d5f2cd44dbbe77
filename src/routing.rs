//! Outbound route enforcement: the TLS policy Postfix's `smtp_tls_policy_maps` (and Sendmail's
//! socket map) asks for a next hop, answered over the socketmap protocol from the directory and
//! the secure-network list.
//!
//! The answer is pure ([`tls_policy`]); the server ([`serve`]) only reads netstrings, looks the
//! organisations up and writes netstrings, with bounded work per query.

use crate::config::RoutingConfig;
use crate::store::{Directory, OrgState, Organisation};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::warn;

/// The longest request accepted (a map name and a key): Postfix's own limit is 100000, but
/// no domain is longer than 255 bytes.
pub const MAX_REQUEST: usize = 1024;

/// The TLS policy for a next-hop domain, if the hub enforces one: an active server-connected
/// organisation's domain or a secure network (each with its subdomains) gets `secure` with
/// TLS 1.2 or later. Postfix sends the full next hop (`firm.co.uk`, `[mx.firm.co.uk]:25`); the
/// parent-domain walk is done here.
pub fn tls_policy(
    next_hop: &str,
    orgs: &[Organisation],
    routing: &RoutingConfig,
) -> Option<String> {
    let domain = next_hop
        .trim()
        .trim_start_matches('[')
        .split([']', ':'])
        .next()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if domain.is_empty() || domain.len() > 255 {
        return None;
    }
    let mut candidate = domain.as_str();
    loop {
        let secure_network = routing
            .secure_domains
            .iter()
            .any(|d| d.trim_matches('.').eq_ignore_ascii_case(candidate));
        let organisation = orgs.iter().any(|o| {
            o.state == OrgState::Active
                && o.connection == crate::store::ConnectionType::Server
                && o.domains.iter().any(|d| d == candidate)
        });
        if secure_network || organisation {
            return Some(format!(
                "secure match=.{candidate}:{candidate} protocols=>=TLSv1.2 ciphers=high"
            ));
        }
        match candidate.split_once('.') {
            Some((_, parent)) if parent.contains('.') => candidate = parent,
            _ => return None,
        }
    }
}

/// One netstring (`LEN:DATA,`) from `bytes`, bounded by `max`: `Ok(None)` when more bytes are
/// needed, `Err` for a malformed or oversized one.
pub fn parse_netstring(bytes: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, String> {
    let Some(colon) = bytes.iter().take(8).position(|&b| b == b':') else {
        return if bytes.len() >= 8 || bytes.iter().any(|b| !b.is_ascii_digit()) {
            Err("not a netstring".into())
        } else {
            Ok(None)
        };
    };
    let digits = std::str::from_utf8(&bytes[..colon]).map_err(|_| "not a netstring")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a netstring".into());
    }
    let len: usize = digits.parse().map_err(|_| "not a netstring")?;
    if len > max {
        return Err(format!("request longer than {max} bytes"));
    }
    let end = colon + 1 + len;
    if bytes.len() < end + 1 {
        return Ok(None);
    }
    if bytes[end] != b',' {
        return Err("netstring without its comma".into());
    }
    Ok(Some((&bytes[colon + 1..end], end + 1)))
}

pub fn netstring(text: &str) -> Vec<u8> {
    format!("{}:{text},", text.len()).into_bytes()
}

/// The answer to one request `NAME KEY`.
pub async fn answer(request: &[u8], store: &dyn Directory, routing: &RoutingConfig) -> String {
    let Ok(request) = std::str::from_utf8(request) else {
        return "PERM request is not UTF-8".into();
    };
    let Some((name, key)) = request.split_once(' ') else {
        return "PERM expected: NAME KEY".into();
    };
    match name {
        "tlspolicy" => match store.orgs().await {
            Ok(orgs) => match tls_policy(key, &orgs, routing) {
                Some(policy) => format!("OK {policy}"),
                None => "NOTFOUND ".into(),
            },
            // The MTA defers the delivery rather than send it without the policy.
            Err(e) => format!("TEMP directory unavailable: {e}")
                .chars()
                .take(200)
                .collect(),
        },
        _ => format!(
            "PERM unknown map {:?}",
            name.chars().take(40).collect::<String>()
        ),
    }
}

/// Serves socketmap connections until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Directory>,
    routing: Arc<RoutingConfig>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let store = store.clone();
        let routing = routing.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::with_capacity(256);
            let mut chunk = [0u8; 1024];
            loop {
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(300),
                    stream.read(&mut chunk),
                )
                .await;
                let n = match read {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
                    Ok(Ok(n)) => n,
                };
                buffer.extend_from_slice(&chunk[..n]);
                loop {
                    match parse_netstring(&buffer, MAX_REQUEST) {
                        Ok(Some((request, used))) => {
                            let reply = answer(request, store.as_ref(), &routing).await;
                            if stream.write_all(&netstring(&reply)).await.is_err() {
                                return;
                            }
                            buffer.drain(..used);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(error = %e, "socketmap: bad request; closing the connection");
                            let _ = stream.write_all(&netstring(&format!("PERM {e}"))).await;
                            return;
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ConnectionType;

    fn org(domain: &str, state: OrgState, connection: ConnectionType) -> Organisation {
        Organisation {
            id: domain.into(),
            name: domain.into(),
            domains: vec![domain.into()],
            connection,
            state,
            terms_signed: Some(1),
            admins: vec![],
            client_certificate: None,
            mail_server: None,
            approved: Some(1),
            created: 0,
            updated: 0,
            revision: 1,
        }
    }

    #[test]
    fn policies() {
        let routing = RoutingConfig::default();
        let orgs = [
            org("firm.co.uk", OrgState::Active, ConnectionType::Server),
            org("gone.co.uk", OrgState::Suspended, ConnectionType::Server),
            org("smith.cjsm.net", OrgState::Active, ConnectionType::Mailbox),
        ];
        let policy = |hop: &str| tls_policy(hop, &orgs, &routing);
        assert_eq!(
            policy("firm.co.uk").as_deref(),
            Some("secure match=.firm.co.uk:firm.co.uk protocols=>=TLSv1.2 ciphers=high")
        );
        assert!(
            policy("mx1.firm.co.uk")
                .unwrap()
                .contains("match=.firm.co.uk")
        );
        assert!(policy("[mx.firm.co.uk]:25").is_some());
        assert!(
            policy("met.pnn.police.uk")
                .unwrap()
                .contains("match=.pnn.police.uk")
        );
        assert!(policy("cps.gsi.gov.uk").is_some());
        assert_eq!(policy("gone.co.uk"), None, "a suspended organisation");
        assert_eq!(
            policy("smith.cjsm.net"),
            None,
            "hosted mailboxes are delivered by the hub"
        );
        assert_eq!(policy("gmail.com"), None);
        assert_eq!(policy("notfirm.co.uk"), None);
        assert_eq!(policy(""), None);
        assert_eq!(policy(&"a.".repeat(200)), None);
    }

    #[test]
    fn netstrings() {
        assert_eq!(
            parse_netstring(b"5:hello,", 10),
            Ok(Some((&b"hello"[..], 8)))
        );
        assert_eq!(parse_netstring(b"5:hel", 10), Ok(None));
        assert_eq!(parse_netstring(b"12", 10), Ok(None));
        assert!(parse_netstring(b"5:hello!", 10).is_err());
        assert!(parse_netstring(b"x:", 10).is_err());
        assert!(parse_netstring(b"99999999999", 10).is_err());
        assert!(parse_netstring(b"11:hello world,", 10).is_err());
        assert_eq!(netstring("OK x"), b"4:OK x,");
    }
}
