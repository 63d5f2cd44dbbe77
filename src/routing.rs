//! Outbound route enforcement, answered over the socketmap protocol from the directory and the
//! secure-network list:
//!
//! | map | asked by | answer |
//! |---|---|---|
//! | `transport` | Postfix `transport_maps` | an organisation's own server: `smtp:[mx.firm.co.uk]:25` |
//! | `tlspolicy` | Postfix `smtp_tls_policy_maps` | `secure` with TLS 1.2 or later for its next hops and the secure networks |
//! | `mailertable` | Sendmail `FEATURE(mailertable)` | `esmtp:[mx.firm.co.uk]` |
//! | `access` | Sendmail `FEATURE(access_db)` | `TLS_Rcpt:firm.co.uk` → `VERIFY:128` (a verified TLS session) |
//!
//! The answers are pure functions of the organisations they are given; [`answer`] gives them
//! only those that can decide a query, read from the store's indexes (the organisation holding
//! the key's domain or a parent of it, those registered with the next hop as their server),
//! never every organisation, so a query costs the same at 10 organisations as at 10,000. The
//! server ([`serve`]) reads netstrings, answers and writes netstrings, with bounded work per
//! query.

use crate::address::Domain;
use crate::config::{RoutingConfig, SocketmapConfig};
use crate::directory::model::{ConnectionType, OrgState, Organisation};
use crate::metrics::{Listener, metrics};
use crate::store::DirectoryRead;
use std::sync::Arc;
use std::time::Duration;
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
    let (hop, domain) = next_hop_parts(next_hop)?;
    // An organisation's own server, as registered: `[192.0.2.25]:25` is its next hop.
    if let Some(org) = active_servers(orgs).find(|o| {
        o.mail_server
            .as_deref()
            .is_some_and(|server| server == hop || server == domain)
    }) {
        let own = &org.domains[0];
        return Some(format!(
            "secure match=.{own}:{own} protocols=>=TLSv1.2 ciphers=high"
        ));
    }
    for candidate in parent_domains(&domain) {
        let secure_network = routing
            .secure_domains
            .iter()
            .any(|d| d.trim_matches('.').eq_ignore_ascii_case(candidate));
        let organisation = active_servers(orgs).any(|o| o.domains.iter().any(|d| d == candidate));
        if secure_network || organisation {
            return Some(format!(
                "secure match=.{candidate}:{candidate} protocols=>=TLSv1.2 ciphers=high"
            ));
        }
    }
    None
}

/// A next hop as Postfix sends it (`firm.co.uk`, `[mx.firm.co.uk]:25`): the whole of it lower
/// case (an organisation's registered server is compared with it) and its host, without
/// brackets, port or final dot; `None` for an empty or overlong host.
fn next_hop_parts(next_hop: &str) -> Option<(String, String)> {
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
    Some((next_hop.trim().to_ascii_lowercase(), domain))
}

/// `domain` and its parents that still hold a dot (`mx.firm.co.uk`, `firm.co.uk`, `co.uk`):
/// the domains a TLS policy may be found for, at most 128 of a 255-byte host.
fn parent_domains(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |candidate| match candidate.split_once('.') {
        Some((_, parent)) if parent.contains('.') => Some(parent),
        _ => None,
    })
}

/// The active server-connected organisations (with at least one domain).
fn active_servers(orgs: &[Organisation]) -> impl Iterator<Item = &Organisation> {
    orgs.iter().filter(|o| {
        o.state == OrgState::Active
            && o.connection == ConnectionType::Server
            && !o.domains.is_empty()
    })
}

/// The domain of a lookup key: an address (`bob@firm.co.uk`) or a domain, lower case; `None`
/// for a parent-domain key (`.co.uk`), which never names one organisation.
fn key_domain(key: &str) -> Option<String> {
    let key = key.trim();
    let domain = key.rsplit_once('@').map_or(key, |(_, d)| d);
    if domain.starts_with('.') {
        return None;
    }
    Domain::new(domain)
        .map(|d| d.to_string())
        .filter(|d| d.len() <= 255)
}

/// The active server-connected organisation that owns `key`'s domain and registered a mail
/// server.
fn server_for<'o>(key: &str, orgs: &'o [Organisation]) -> Option<(&'o Organisation, &'o str)> {
    let domain = key_domain(key)?;
    active_servers(orgs)
        .find(|o| o.domains.contains(&domain))
        .and_then(|o| o.mail_server.as_deref().map(|server| (o, server)))
}

/// Postfix `transport_maps`: mail to an organisation's domain goes to its registered server
/// (`smtp:[mx.firm.co.uk]:25`); anything else is not ours to route.
pub fn transport(key: &str, orgs: &[Organisation]) -> Option<String> {
    server_for(key, orgs).map(|(_, server)| format!("smtp:{server}"))
}

/// Sendmail's mailertable: `MAILER:[host]` for an organisation's domain. Sendmail's mailertable
/// has no port: the mailer's own (`ESMTP_MAILER_ARGS`) applies.
pub fn mailertable(key: &str, orgs: &[Organisation], mailer: &str) -> Option<String> {
    let (_, server) = server_for(key, orgs)?;
    let host = match server.strip_prefix('[') {
        Some(rest) => format!("[{}]", rest.split(']').next().unwrap_or("")),
        None => server.to_string(),
    };
    Some(format!("{mailer}:{host}"))
}

/// Sendmail's access map, for `TLS_Rcpt:DOMAIN`: mail to an organisation's domain or a secure
/// network leaves only over a verified TLS session with at least 128-bit encryption.
pub fn sendmail_access(
    key: &str,
    orgs: &[Organisation],
    routing: &RoutingConfig,
) -> Option<String> {
    let (tag, domain) = key.split_once(':')?;
    if !tag.eq_ignore_ascii_case("TLS_Rcpt") || domain.contains(['[', ']']) {
        return None;
    }
    tls_policy(domain, orgs, routing).map(|_| "VERIFY:128".to_string())
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

/// The maps this server answers.
pub const MAPS: [&str; 4] = ["transport", "tlspolicy", "mailertable", "access"];

/// The answer to one request `NAME KEY`.
pub async fn answer(
    request: &[u8],
    store: &dyn DirectoryRead,
    routing: &RoutingConfig,
    socketmap: &SocketmapConfig,
) -> String {
    let Ok(request) = std::str::from_utf8(request) else {
        return "PERM request is not UTF-8".into();
    };
    let Some((name, key)) = request.split_once(' ') else {
        return "PERM expected: NAME KEY".into();
    };
    if !MAPS.contains(&name) {
        return format!(
            "PERM unknown map {:?}; this server answers {}",
            name.chars().take(40).collect::<String>(),
            MAPS.join(", ")
        );
    }
    // Whether the directory was ever written is asked alongside: a store never written (a new
    // hub, or a Redis that lost its data) answers TEMP, not NOTFOUND (queued mail would
    // otherwise leave by MX, not the route).
    let (written, orgs) = tokio::join!(store.written(), candidates(name, key, store));
    let unavailable = |e: crate::store::StoreError| -> String {
        format!("TEMP directory unavailable: {e}")
            .chars()
            .take(200)
            .collect()
    };
    let orgs = match (written, orgs) {
        // The MTA defers the delivery rather than route it without the directory.
        (Err(e), _) => return unavailable(e),
        (Ok(false), _) => {
            return "TEMP directory unavailable: the directory store is empty".into();
        }
        (Ok(true), Err(e)) => return unavailable(e),
        (Ok(true), Ok(orgs)) => orgs,
    };
    let found = match name {
        "transport" => transport(key, &orgs),
        "tlspolicy" => tls_policy(key, &orgs, routing),
        "mailertable" => mailertable(key, &orgs, &socketmap.sendmail_mailer),
        _ => sendmail_access(key, &orgs, routing),
    };
    match found {
        Some(value) => format!("OK {value}"),
        None => "NOTFOUND ".into(),
    }
}

/// The organisations that can decide the answer to `name KEY`, read from the indexes rather
/// than by reading every organisation: the one holding the key's domain (for a TLS policy,
/// the host's and each parent's) and those registered with the next hop as their mail server;
/// ordered by id, as the pure functions above see every organisation. Secure forms
/// (`firm.co.uk.cjsm.net`) are no organisation's `domains`, so they find none here either.
async fn candidates(
    name: &str,
    key: &str,
    store: &dyn DirectoryRead,
) -> Result<Vec<Organisation>, crate::store::StoreError> {
    let mut domains: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    let mut next_hop = |hop: &str| {
        if let Some((hop, domain)) = next_hop_parts(hop) {
            domains.extend(parent_domains(&domain).map(str::to_string));
            servers.push(hop);
            servers.push(domain);
        }
    };
    match name {
        "transport" | "mailertable" => domains.extend(key_domain(key)),
        "tlspolicy" => next_hop(key),
        _ => {
            if let Some((tag, domain)) = key.split_once(':')
                && tag.eq_ignore_ascii_case("TLS_Rcpt")
                && !domain.contains(['[', ']'])
            {
                next_hop(domain);
            }
        }
    }
    servers.dedup();
    // At most 128 domains and two servers: asked at once (one round trip's wait on Redis).
    let (by_domain, by_server) = tokio::join!(
        futures_util::future::try_join_all(domains.iter().map(|d| store.org_by_domain(d))),
        futures_util::future::try_join_all(servers.iter().map(|s| store.orgs_by_mail_server(s))),
    );
    let mut orgs: Vec<Organisation> = by_domain?.into_iter().flatten().collect();
    orgs.extend(by_server?.into_iter().flatten());
    orgs.sort_by(|a, b| a.id.cmp(&b.id));
    orgs.dedup_by(|a, b| a.id == b.id);
    Ok(orgs)
}

/// How long a connection may stay idle between requests (Postfix closes its own after 10 s;
/// Sendmail keeps one open, and opens a new one when this closes it).
const IDLE_LIMIT: Duration = Duration::from_secs(300);

/// How long a request, once begun, may take to arrive whole.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// Serves socketmap connections, at most `max_connections` at once: more wait in the
/// listen queue until one closes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<crate::engine::Shared>,
    max_connections: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut stream = crate::listen::accept(&listener, Listener::Socketmap).await;
        let open = metrics().connection_opened(Listener::Socketmap);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _held = (slot, open);
            let mut buffer = Vec::with_capacity(256);
            let mut chunk = [0u8; 1024];
            // When the request now in the buffer began: it has REQUEST_LIMIT in all, however
            // slowly its bytes come.
            let mut began: Option<std::time::Instant> = None;
            loop {
                let limit = match began {
                    None => IDLE_LIMIT,
                    Some(began) => REQUEST_LIMIT.saturating_sub(began.elapsed()),
                };
                let n = match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Err(_) => {
                        metrics()
                            .connections_timed_out
                            .with_label_values(&[Listener::Socketmap.as_str()])
                            .inc();
                        return;
                    }
                    Ok(Ok(n)) => n,
                };
                buffer.extend_from_slice(&chunk[..n]);
                began.get_or_insert_with(std::time::Instant::now);
                loop {
                    match parse_netstring(&buffer, MAX_REQUEST) {
                        Ok(Some((request, used))) => {
                            // The config in force for each query: a reload (SIGHUP) that
                            // changes the secure networks or domains applies here too.
                            let engine = shared.current();
                            let config = engine.config();
                            // The MTA waits for this answer in its shared address resolver
                            // (Postfix's trivial-rewrite): a directory that hangs (a paused
                            // Redis) must give TEMP at the milter's deadline, as a milter
                            // stage does, not hold every lookup until it returns.
                            let limit = config.milter.deadline;
                            let reply = tokio::time::timeout(
                                limit,
                                answer(
                                    request,
                                    engine.store.as_ref(),
                                    &config.routing,
                                    &config.socketmap,
                                ),
                            )
                            .await
                            .unwrap_or_else(|_| {
                                format!(
                                    "TEMP directory unavailable: no answer within {} ms (deadline_ms)",
                                    limit.as_millis()
                                )
                            });
                            if stream.write_all(&netstring(&reply)).await.is_err() {
                                return;
                            }
                            buffer.drain(..used);
                            began = (!buffer.is_empty()).then(std::time::Instant::now);
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
    use crate::directory::model::{ConnectionType, test_org};
    use crate::store::{StoreError, StoreFuture};

    fn org(domain: &str, state: OrgState, connection: ConnectionType) -> Organisation {
        Organisation {
            state,
            revision: 1,
            ..test_org(domain, domain, &[domain], connection)
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
    fn routes_to_organisation_servers() {
        let routing = RoutingConfig::default();
        let mut firm = org("firm.co.uk", OrgState::Active, ConnectionType::Server);
        firm.mail_server = Some("[192.0.2.25]:2525".into());
        let mut named = org("named.co.uk", OrgState::Active, ConnectionType::Server);
        named.mail_server = Some("mx.named.co.uk".into());
        let mut gone = org("gone.co.uk", OrgState::Suspended, ConnectionType::Server);
        gone.mail_server = Some("[192.0.2.26]".into());
        let mx_only = org("mxonly.co.uk", OrgState::Active, ConnectionType::Server);
        let orgs = [firm, named, gone, mx_only];
        let cases = [
            ("bob@firm.co.uk", Some("smtp:[192.0.2.25]:2525")),
            ("firm.co.uk", Some("smtp:[192.0.2.25]:2525")),
            ("Bob@FIRM.co.uk", Some("smtp:[192.0.2.25]:2525")),
            (".co.uk", None),
            ("bob@sub.firm.co.uk", None),
            ("named.co.uk", Some("smtp:mx.named.co.uk")),
            ("gone.co.uk", None),
            ("mxonly.co.uk", None),
            ("gmail.com", None),
            ("", None),
        ];
        for (key, want) in cases {
            assert_eq!(transport(key, &orgs).as_deref(), want, "{key}");
        }
        assert_eq!(
            mailertable("firm.co.uk", &orgs, "esmtp").as_deref(),
            Some("esmtp:[192.0.2.25]")
        );
        assert_eq!(
            mailertable("named.co.uk", &orgs, "relay").as_deref(),
            Some("relay:mx.named.co.uk")
        );
        assert_eq!(mailertable(".co.uk", &orgs, "esmtp"), None);
        // The registered next hop gets the organisation's policy; another port does not.
        assert_eq!(
            tls_policy("[192.0.2.25]:2525", &orgs, &routing).as_deref(),
            Some("secure match=.firm.co.uk:firm.co.uk protocols=>=TLSv1.2 ciphers=high")
        );
        assert_eq!(tls_policy("[192.0.2.25]:25", &orgs, &routing), None);
        assert_eq!(tls_policy("[192.0.2.26]", &orgs, &routing), None);
        let access = |key: &str| sendmail_access(key, &orgs, &routing);
        assert_eq!(access("TLS_Rcpt:firm.co.uk").as_deref(), Some("VERIFY:128"));
        assert_eq!(
            access("TLS_Rcpt:met.pnn.police.uk").as_deref(),
            Some("VERIFY:128")
        );
        assert_eq!(access("TLS_Rcpt:gmail.com"), None);
        assert_eq!(access("Connect:firm.co.uk"), None);
        assert_eq!(access("firm.co.uk"), None);
    }

    /// A store that refuses the walks over every organisation or user: what the socketmap
    /// answers must come from the indexes (by domain, by mail server, by id).
    struct NoWalks(crate::store::SqliteStore);

    impl DirectoryRead for NoWalks {
        fn lookup<'a>(&'a self, a: &'a str) -> StoreFuture<'a, crate::directory::model::Lookup> {
            self.0.lookup(a)
        }
        fn user<'a>(
            &'a self,
            a: &'a str,
        ) -> StoreFuture<'a, Option<crate::directory::model::User>> {
            self.0.user(a)
        }
        fn users(&self) -> StoreFuture<'_, Vec<crate::directory::model::User>> {
            Box::pin(async { Err(StoreError::Unavailable("walked every user".into())) })
        }
        fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
            self.0.org(id)
        }
        fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
            Box::pin(async { Err(StoreError::Unavailable("walked every organisation".into())) })
        }
        fn org_by_domain<'a>(&'a self, d: &'a str) -> StoreFuture<'a, Option<Organisation>> {
            self.0.org_by_domain(d)
        }
        fn orgs_by_mail_server<'a>(
            &'a self,
            server: &'a str,
        ) -> StoreFuture<'a, Vec<Organisation>> {
            self.0.orgs_by_mail_server(server)
        }
        fn certificates(&self) -> StoreFuture<'_, Vec<crate::directory::model::Certificate>> {
            self.0.certificates()
        }
        fn size(&self) -> StoreFuture<'_, (usize, usize)> {
            self.0.size()
        }
        fn written(&self) -> StoreFuture<'_, bool> {
            self.0.written()
        }
    }

    /// Every map answers as the pure functions over every organisation do, without reading
    /// every organisation: from the domain index (the key's domain, its parents for a TLS
    /// policy) and the mail-server index (an organisation's own next hop, shared by several).
    #[tokio::test]
    async fn answers_without_reading_every_organisation() {
        use crate::store::DirectoryWrite as _;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(dir.path()).unwrap();
        let mut firm = org("firm.co.uk", OrgState::Active, ConnectionType::Server);
        firm.mail_server = Some("[192.0.2.25]:2525".into());
        firm.domains.push("firm.example".into());
        let mut named = org("named.co.uk", OrgState::Active, ConnectionType::Server);
        named.mail_server = Some("mx.named.co.uk".into());
        // Two organisations behind one provider's server: the suspended one sorts first.
        let mut a_gone = org("a-gone.co.uk", OrgState::Suspended, ConnectionType::Server);
        a_gone.mail_server = Some("[mx.provider.net]:25".into());
        let mut b_live = org("b-live.co.uk", OrgState::Active, ConnectionType::Server);
        b_live.mail_server = Some("[mx.provider.net]:25".into());
        let mailbox = org("smith.cjsm.net", OrgState::Active, ConnectionType::Mailbox);
        let mxonly = org("mxonly.co.uk", OrgState::Active, ConnectionType::Server);
        let all = [firm, named, a_gone, b_live, mailbox, mxonly];
        for o in &all {
            store.put_org(o.clone()).await.unwrap();
        }
        let mut sorted = store.orgs().await.unwrap();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let routing = RoutingConfig::default();
        let socketmap = SocketmapConfig::default();
        let indexed = NoWalks(store);
        let mut keys = vec![
            "firm.co.uk",
            "FIRM.co.uk.",
            "bob@firm.co.uk",
            "Bob@Firm.Example",
            "mx1.firm.co.uk",
            "a.b.c.firm.example",
            "[192.0.2.25]:2525",
            "[192.0.2.25]:25",
            "[192.0.2.25]",
            "named.co.uk",
            "mx.named.co.uk",
            "[mx.named.co.uk]:25",
            "[mx.provider.net]:25",
            "[mx.provider.net]",
            "a-gone.co.uk",
            "b-live.co.uk",
            "smith.cjsm.net",
            "x@smith.cjsm.net",
            "mxonly.co.uk",
            "firm.co.uk.cjsm.net",
            "bob@firm.co.uk.cjsm.net",
            ".co.uk",
            ".firm.co.uk",
            "co.uk",
            "gmail.com",
            "met.pnn.police.uk",
            "x.cps.gsi.gov.uk",
            "",
            " ",
            "@",
            "bob@",
            "[",
            "]:25",
            "a..b",
        ];
        let long = "a.".repeat(200);
        keys.push(&long);
        for key in keys {
            for map in MAPS {
                let keyed = if map == "access" {
                    format!("TLS_Rcpt:{key}")
                } else {
                    key.to_string()
                };
                let request = format!("{map} {keyed}");
                let want = match match map {
                    "transport" => transport(&keyed, &sorted),
                    "tlspolicy" => tls_policy(&keyed, &sorted, &routing),
                    "mailertable" => mailertable(&keyed, &sorted, &socketmap.sendmail_mailer),
                    _ => sendmail_access(&keyed, &sorted, &routing),
                } {
                    Some(value) => format!("OK {value}"),
                    None => "NOTFOUND ".into(),
                };
                let got = answer(request.as_bytes(), &indexed, &routing, &socketmap).await;
                assert_eq!(got, want, "{request:?}");
            }
        }
        let got = answer(b"access Connect:firm.co.uk", &indexed, &routing, &socketmap).await;
        assert_eq!(got, "NOTFOUND ");
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
