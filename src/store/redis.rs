//! The Redis backend: the directory shared by every milter instance.
//!
//! Key layout (`P` is `[store] key_prefix`; the braces are a Cluster hash tag, so every key of
//! a deployment lives in one slot and multi-key operations work on a Cluster too):
//!
//! | key | type | content |
//! |---|---|---|
//! | `{P}:user:<address>` | string | a user, JSON |
//! | `{P}:users` | set | every user's address |
//! | `{P}:users-by-address` | sorted set | every user's address, all at score 0: the walk in address order (`ZRANGEBYLEX`) a page at a time; written with every user, and filled from `{P}:users` whenever it holds fewer addresses (users are never removed) |
//! | `{P}:org:<id>` | string | an organisation, JSON |
//! | `{P}:orgs` | set | every organisation's id |
//! | `{P}:domains` | hash | claimed mail domain -> the organisation holding it |
//! | `{P}:org-by-server:<server>` | set | the ids of the organisations whose `mail_server` is `<server>`, written with every organisation (an entry its organisation no longer has is passed over) |
//! | `{P}:servers-indexed` | string | present once the org-by-server sets were filled from every organisation |
//! | `{P}:org-by-domain` | hash | each domain an organisation's `domains` lists -> its id, written with every organisation; the field `#built` once it was filled from every organisation |
//! | `{P}:cert:<address>` | string | an address's S/MIME certificate, JSON |
//! | `{P}:certs` | set | every address with a certificate |
//! | `{P}:meta` | string | present once the directory was written: an empty Redis (a restart without persistence, a flush, a wrong `key_prefix`) is an outage, not an empty directory |
//! | `{P}:audit` | stream | audit events, field `event` = JSON, trimmed to the retention |
//! | `{P}:changes` | pub/sub channel | `user:<address>`, `org:<id>` or `cert:<address>` after every change |
//!
//! URLs: `redis://` and `rediss://` (TLS through rustls) for one server; several of them
//! separated by commas for a Cluster; `redis+sentinel://HOST:PORT[,HOST:PORT…]/SERVICE` for
//! the master a set of Sentinels names. A URL is only ever shown through [`redact_url`]
//! (user name and password as `***`), and connection errors are scrubbed of the password.

use super::{
    AuditTrail, DirectoryRead, DirectoryWrite, Record, Records, StoreError, StoreFuture, domain_key,
};
use crate::address::normalize_address;
use crate::directory::model::{AuditEvent, Certificate, Lookup, Organisation, User};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Client, IntoConnectionInfo, RedisResult, Script};
use std::path::PathBuf;
use tokio::sync::Mutex;

/// What the client presents besides the URL: an ACL login (`AUTH username password`) and the
/// TLS material for a private CA and a client certificate (mutual TLS), as read from the files
/// `[store]` names. `Debug` is written out: the password and the key are never shown.
#[derive(Clone, Default)]
pub struct RedisCredentials {
    /// The ACL user; the server's `default` user when unset.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Where the password was read: errors name the file, never its content.
    pub password_file: Option<PathBuf>,
    /// The CA (PEM) the server's certificate must chain to; the system's and the Web PKI
    /// roots when unset.
    pub ca: Option<Vec<u8>>,
    /// The client certificate chain and its private key (PEM).
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Where the client certificate was read, for errors.
    pub client_cert_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCredentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("ca", &self.ca.as_ref().map(|_| "PEM"))
            .field("client_cert", &self.client_cert.as_ref().map(|_| "***"))
            .field("client_cert_file", &self.client_cert_file)
            .finish()
    }
}

impl RedisCredentials {
    /// Certificates for rustls, when there is anything beyond the default roots.
    fn tls(&self) -> Option<redis::TlsCertificates> {
        if self.ca.is_none() && self.client_cert.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .client_cert
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        })
    }

    /// `info` with the login added (the URL itself carries none when a password file is set:
    /// the config refuses both).
    fn login(&self, mut info: redis::RedisConnectionInfo) -> redis::RedisConnectionInfo {
        if let Some(password) = &self.password {
            info = info.set_password(password);
            if let Some(username) = &self.username {
                info = info.set_username(username);
            }
        }
        info
    }

    /// A client for one server's URL, with the login and the TLS material.
    fn client(&self, url: &str) -> RedisResult<Client> {
        let info = url.into_connection_info()?;
        let redis = self.login(info.redis_settings().clone());
        let info = info.set_redis_settings(redis);
        match self.tls() {
            Some(certs) => Client::build_with_tls(info, certs),
            None => Client::open(info),
        }
    }

    /// How the connection was made, for an error: the user and the files, never a secret.
    fn describe(&self) -> String {
        let mut shown = String::new();
        if let Some(file) = &self.password_file {
            shown.push_str(&format!(
                " as user {} (password from {})",
                self.username.as_deref().unwrap_or("default"),
                file.display()
            ));
        }
        if let Some(file) = &self.client_cert_file {
            shown.push_str(&format!(" with client certificate {}", file.display()));
        }
        shown
    }

    /// `message` without the password, however it got there.
    fn scrub(&self, message: String) -> String {
        match &self.password {
            Some(password) if !password.is_empty() => message.replace(password.as_str(), "***"),
            _ => message,
        }
    }
}

/// How the server is reached.
enum Target {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// The master a set of Sentinels names; asked again after a connection error, so a
    /// failover is followed.
    Sentinel {
        sentinel: Box<Mutex<redis::sentinel::SentinelClient>>,
        master: Mutex<Option<ConnectionManager>>,
    },
}

pub struct RedisStore {
    target: Target,
    /// Plain clients for pub/sub: the server, or each Cluster node (tried in turn); the
    /// Sentinel master is looked up when needed.
    pubsub_clients: Vec<Client>,
    keys: Keys,
    audit_retention: usize,
    lookup_script: Script,
    swap_users_script: Script,
    swap_org_script: Script,
    org_by_domain_script: Script,
    users_page_script: Script,
    orgs_by_server_script: Script,
    swap_record_script: Script,
}

/// The key names of one deployment.
#[derive(Clone)]
pub struct Keys {
    base: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            base: format!("{{{prefix}}}"),
        }
    }

    fn user(&self, address: &str) -> String {
        format!("{}:user:{address}", self.base)
    }

    fn users(&self) -> String {
        format!("{}:users", self.base)
    }

    fn users_by_address(&self) -> String {
        format!("{}:users-by-address", self.base)
    }

    fn org_by_server(&self, server: &str) -> String {
        format!("{}:org-by-server:{server}", self.base)
    }

    fn servers_indexed(&self) -> String {
        format!("{}:servers-indexed", self.base)
    }

    fn org(&self, id: &str) -> String {
        format!("{}:org:{id}", self.base)
    }

    fn orgs(&self) -> String {
        format!("{}:orgs", self.base)
    }

    fn domains(&self) -> String {
        format!("{}:domains", self.base)
    }

    fn org_by_domain(&self) -> String {
        format!("{}:org-by-domain", self.base)
    }

    fn cert(&self, address: &str) -> String {
        format!("{}:cert:{address}", self.base)
    }

    fn certs(&self) -> String {
        format!("{}:certs", self.base)
    }

    fn meta(&self) -> String {
        format!("{}:meta", self.base)
    }

    fn audit(&self) -> String {
        format!("{}:audit", self.base)
    }

    pub fn changes(&self) -> String {
        format!("{}:changes", self.base)
    }

    /// The website's records of one kind: a hash, key -> "REVISION EXPIRES VALUE".
    fn records(&self, kind: &str) -> String {
        format!("{}:records:{kind}", self.base)
    }
}

/// Compare-and-swap of one website record. KEYS: the kind's hash; ARGV: key, expected revision
/// ("" for absent), value ("" with ARGV[5] = "delete" to remove), expires, "put"/"delete",
/// now. A stored value is "REVISION EXPIRES VALUE"; one past its expiry counts as absent.
const SWAP_RECORD_LUA: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
local revision = nil
if current then
  local r, e = string.match(current, '^(%d+) (%d+) ')
  if tonumber(e) == 0 or tonumber(e) > tonumber(ARGV[6]) then
    revision = r
  end
end
if (revision or '') ~= ARGV[2] then
  return 0
end
if ARGV[5] == 'delete' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  local next = (tonumber(revision) or 0) + 1
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %s ', next, ARGV[4]) .. ARGV[3])
end
return 1
"#;

/// A stored record ("REVISION EXPIRES VALUE") read back.
fn parse_record(stored: &str) -> Option<Record> {
    let (revision, rest) = stored.split_once(' ')?;
    let (expires, value) = rest.split_once(' ')?;
    Some(Record {
        value: value.to_string(),
        revision: revision.parse().ok()?,
        expires: expires.parse().ok()?,
    })
}

/// `prefix` as a literal in a SCAN pattern.
fn glob_literal(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if "*?[]\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The user and their organisation in one round trip (for an unknown user, the organisation
/// holding the domain), and the address's certificate. KEYS: user, meta, domains, certificate;
/// ARGV: org key prefix, domain. A directory never
/// written (no meta key) is an error: the milter tempfails rather than call everyone unknown.
const LOOKUP_LUA: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('CJSMEMPTY the directory in Redis is empty (never written, flushed, or a Redis restarted without its data)')
end
local cert = redis.call('GET', KEYS[4])
local u = redis.call('GET', KEYS[1])
if not u then
  local holder = redis.call('HGET', KEYS[3], ARGV[2])
  if not holder then return {false, false, cert} end
  return {false, redis.call('GET', ARGV[1] .. holder), cert}
end
local ok, user = pcall(cjson.decode, u)
if not ok or type(user.org) ~= 'string' then return {u, false, cert} end
return {u, redis.call('GET', ARGV[1] .. user.org), cert}
"#;

/// Compare-and-set of users. KEYS: the users' keys, then the users set, then meta, then the
/// address-ordered index.
/// ARGV: channel, n, then per user: expected revision ("" = absent), new JSON, address.
const SWAP_USERS_LUA: &str = r#"
local n = tonumber(ARGV[2])
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  local expected = ARGV[3 + (i - 1) * 3]
  if expected == '' then
    if cur then return 0 end
  else
    if not cur then return 0 end
    local ok, user = pcall(cjson.decode, cur)
    if not ok or string.format('%d', user.revision or 0) ~= expected then return 0 end
  end
end
for i = 1, n do
  local address = ARGV[5 + (i - 1) * 3]
  redis.call('SET', KEYS[i], ARGV[4 + (i - 1) * 3])
  redis.call('SADD', KEYS[n + 1], address)
  redis.call('ZADD', KEYS[n + 3], 0, address)
  redis.call('PUBLISH', ARGV[1], 'user:' .. address)
end
redis.call('SET', KEYS[n + 2], '1')
return 1
"#;

/// Compare-and-set of an organisation, claiming its domains and indexing the ones it lists.
/// KEYS: org, orgs set, domains hash, meta, org-by-domain hash, and the org-by-server set of
/// its mail server when it has one. ARGV: channel, id, expected
/// revision ("" = absent), new JSON, the number of claimed domains, the claimed domains, then
/// the domains to index.
const SWAP_ORG_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == '' then
  if cur then return 0 end
else
  if not cur then return 0 end
  local ok, org = pcall(cjson.decode, cur)
  if not ok or string.format('%d', org.revision or 0) ~= ARGV[3] then return 0 end
end
local claims_end = 5 + tonumber(ARGV[5])
for i = 6, claims_end do
  local holder = redis.call('HGET', KEYS[3], ARGV[i])
  if holder and holder ~= ARGV[2] then
    return redis.error_reply('CJSMDOMAIN ' .. ARGV[i] .. ' is held by ' .. holder)
  end
end
for i = 6, claims_end do redis.call('HSET', KEYS[3], ARGV[i], ARGV[2]) end
for i = claims_end + 1, #ARGV do redis.call('HSET', KEYS[5], ARGV[i], ARGV[2]) end
redis.call('SET', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[2])
if KEYS[6] then redis.call('SADD', KEYS[6], ARGV[2]) end
redis.call('SET', KEYS[4], '1')
redis.call('PUBLISH', ARGV[1], 'org:' .. ARGV[2])
return 1
"#;

/// The field of the org-by-domain hash that says it was filled from every organisation (no
/// domain is written `#built`).
const INDEX_BUILT: &str = "#built";

/// The organisations a domain may belong to: the one the org-by-domain index names, and the
/// holder of the claim (which a milter of an earlier version, writing organisations without
/// the index, keeps current). KEYS: meta, org-by-domain hash, domains hash. ARGV: org key
/// prefix, domain, the built field. Like a lookup, a directory never written is an error; an
/// index never filled is one too, on which the caller reads every organisation instead.
const ORG_BY_DOMAIN_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CJSMEMPTY the directory in Redis is empty (never written, flushed, or a Redis restarted without its data)')
end
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then
  return redis.error_reply('CJSMNOINDEX the organisation-by-domain index is not built')
end
local function org_of(id)
  if not id then return false end
  return redis.call('GET', ARGV[1] .. id)
end
return {org_of(redis.call('HGET', KEYS[2], ARGV[2])), org_of(redis.call('HGET', KEYS[3], ARGV[2]))}
"#;

/// A page of users in address order. KEYS: the users set, the address-ordered index. ARGV:
/// the lower bound (`-`, or `(` and the address to start after), the page size (at most
/// [`PAGE_MAX`]), the user key prefix. The index is first filled from the users set when it
/// holds fewer addresses (a directory written before it existed, or by an earlier version):
/// users are never removed, so equal counts mean a complete index. Returns the addresses and
/// their records (nil where a record is gone: left out).
const USERS_PAGE_LUA: &str = r#"
if redis.call('ZCARD', KEYS[2]) < redis.call('SCARD', KEYS[1]) then
  local members = redis.call('SMEMBERS', KEYS[1])
  for i = 1, #members, 500 do
    local args = {}
    for j = i, math.min(i + 499, #members) do
      args[#args + 1] = 0
      args[#args + 1] = members[j]
    end
    redis.call('ZADD', KEYS[2], unpack(args))
  end
end
local addresses = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
if #addresses == 0 then return {{}, {}} end
local keys = {}
for i, address in ipairs(addresses) do keys[i] = ARGV[3] .. address end
return {addresses, redis.call('MGET', unpack(keys))}
"#;

/// The most users one page script reads (Lua's `unpack` has a bounded stack).
const PAGE_MAX: usize = 1000;

/// The organisations registered with one mail server. KEYS: meta, the servers-indexed marker,
/// the server's set. ARGV: org key prefix. A directory never written is an error, as for a
/// lookup; sets never filled are one too, on which the caller reads every organisation.
const ORGS_BY_SERVER_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CJSMEMPTY the directory in Redis is empty (never written, flushed, or a Redis restarted without its data)')
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('CJSMNOINDEX the organisation-by-server index is not built')
end
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local org = redis.call('GET', ARGV[1] .. id)
  if org then found[#found + 1] = org end
end
return found
"#;

const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// How a Sentinel URL is written, for the errors that refuse one.
pub(crate) const SENTINEL_FORM: &str = "redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE";

/// A `redis+sentinel://` URL's Sentinels (`HOST:PORT[,HOST:PORT…]`, with any userinfo) and
/// the service naming the master; `None` for another URL or one without a service name.
pub(crate) fn sentinel_parts(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix(SENTINEL_SCHEME)?
        .split_once('/')
        .filter(|(hosts, service)| !hosts.is_empty() && !service.is_empty())
}

/// The client of a set of Sentinels (`HOST:PORT[,HOST:PORT…]`, each with any userinfo, which
/// is the Sentinels' own login) for the master of `service`, which is logged into with
/// `credentials` and, when they hold TLS material, reached over TLS with it. The Sentinels
/// themselves are reached in plain TCP: the URL form has no way to ask for TLS to them.
fn sentinel_client(
    hosts: &str,
    service: &str,
    credentials: &RedisCredentials,
) -> RedisResult<redis::sentinel::SentinelClient> {
    let sentinels: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
    if credentials.password.is_none() && credentials.tls().is_none() {
        return redis::sentinel::SentinelClient::build(
            sentinels,
            service,
            None,
            redis::sentinel::SentinelServerType::Master,
        );
    }
    let mut addresses = Vec::new();
    let mut sentinel_login: Option<redis::RedisConnectionInfo> = None;
    for sentinel in &sentinels {
        let info = sentinel.as_str().into_connection_info()?;
        if sentinel_login.is_none() && info.redis_settings().password().is_some() {
            sentinel_login = Some(info.redis_settings().clone());
        }
        addresses.push(info.addr().clone());
    }
    let mut builder = redis::sentinel::SentinelClientBuilder::new(
        addresses,
        service,
        redis::sentinel::SentinelServerType::Master,
    )?;
    if let Some(login) = sentinel_login {
        if let Some(password) = login.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if let Some(username) = login.username() {
            builder = builder.set_client_to_sentinel_username(username);
        }
    }
    if let Some(password) = &credentials.password {
        builder = builder.set_client_to_redis_password(password);
        if let Some(username) = &credentials.username {
            builder = builder.set_client_to_redis_username(username);
        }
    }
    if let Some(certs) = credentials.tls() {
        builder = builder
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_redis_certificates(certs);
    }
    builder.build()
}

/// Where the userinfo (`user:password`, `:password`, `user`) of each URL in `url` lies: a
/// single URL, a comma-separated Cluster list, or a Sentinel URL whose hosts may each carry
/// one. The userinfo ends at the last `@` of a URL (a password may hold a raw `@`). A piece
/// with an `@` but no scheme, after one without an `@`, is taken as the rest of a password
/// holding a raw comma, so the span reaches back over both: too much is hidden rather than
/// part of a password shown.
fn userinfo_spans(url: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    // Where the userinfo of the pieces without an `@` since the last URL would start.
    let mut open: Option<usize> = None;
    let mut offset = 0;
    for piece in url.split(',') {
        let scheme_end = piece.find("://").map(|i| i + 3);
        let start = offset + scheme_end.unwrap_or(0);
        let from = match scheme_end {
            Some(_) => start,
            None => open.unwrap_or(start),
        };
        // Only an `@` after the scheme: a span never ends before it starts.
        match url[start..offset + piece.len()].rfind('@') {
            Some(at) => {
                spans.push(from..start + at);
                open = None;
            }
            None => open = Some(from),
        }
        offset += piece.len() + 1;
    }
    spans
}

/// A Redis URL (or a Cluster list of them) as it may be shown in an error, a log line or a
/// metric: every userinfo, the password and any user name with it, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut shown = String::with_capacity(url.len());
    let mut last = 0;
    for span in userinfo_spans(url) {
        shown.push_str(&url[last..span.start]);
        shown.push_str("***");
        last = span.end;
    }
    shown.push_str(&url[last..]);
    shown
}

/// `message` with every secret of `url` in it (its userinfo and passwords, as written and
/// percent-decoded, and the URL itself) replaced: a last guard for text from elsewhere (the
/// redis crate) that might repeat what it was given.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut secrets: Vec<String> = Vec::new();
    for span in userinfo_spans(url) {
        let userinfo = &url[span];
        let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
        for secret in [userinfo, password] {
            secrets.push(secret.to_string());
            secrets.push(percent_decode(secret));
        }
    }
    secrets.retain(|s| !s.is_empty());
    // The longest first, so a password inside a userinfo does not leave the user name half
    // replaced.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut scrubbed = message.replace(url, &redact_url(url));
    for secret in &secrets {
        scrubbed = scrubbed.replace(secret.as_str(), "***");
    }
    scrubbed
}

/// `%XX` decoded, as the redis crate decodes a URL's password; anything else kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        path: format!("redis {what}"),
        message: e.to_string(),
    }
}

/// Runs `$body` with `$conn` bound to a connection of whichever kind the store uses.
macro_rules! with_conn {
    ($store:expr, $conn:ident => $body:expr) => {{
        match &$store.target {
            Target::Single(manager) => {
                let mut $conn = manager.clone();
                $body
            }
            Target::Cluster(cluster) => {
                let mut $conn = cluster.clone();
                $body
            }
            Target::Sentinel { .. } => {
                let mut $conn = $store.sentinel_master().await?;
                let result = $body;
                if result.is_err() {
                    $store.forget_sentinel_master().await;
                }
                result
            }
        }
    }};
}

impl RedisStore {
    pub async fn connect(
        url: &str,
        prefix: &str,
        audit_retention: usize,
    ) -> Result<RedisStore, StoreError> {
        RedisStore::connect_with_ca(url, prefix, audit_retention, None).await
    }

    /// As `connect`; a `rediss://` server's certificate is verified against `tls_ca` (PEM)
    /// when given, else against the system's and the Web PKI roots.
    pub async fn connect_with_ca(
        url: &str,
        prefix: &str,
        audit_retention: usize,
        tls_ca: Option<&std::path::Path>,
    ) -> Result<RedisStore, StoreError> {
        let mut credentials = RedisCredentials::default();
        if let Some(path) = tls_ca {
            let limit = crate::config::MAX_CONFIG_BYTES;
            credentials.ca = Some(crate::config::read_regular_file(path, limit).map_err(|e| {
                StoreError::Unavailable(format!("tls_ca_file {}: {e}", path.display()))
            })?);
        }
        RedisStore::connect_with(url, prefix, audit_retention, &credentials).await
    }

    /// As `connect`, logging in and verifying TLS with `credentials`.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        audit_retention: usize,
        credentials: &RedisCredentials,
    ) -> Result<RedisStore, StoreError> {
        // Every failure names the server (or the Sentinels and their service) as the URL
        // reads with its password hidden, and the user and files it logged in with; it is
        // scrubbed of the passwords should the redis crate ever echo one.
        let clean = |message: &str| credentials.scrub(scrub(message, url));
        RedisStore::open(url, prefix, audit_retention, credentials)
            .await
            .map_err(|e| match e {
                StoreError::Unavailable(message) => StoreError::Unavailable(clean(&format!(
                    "{}{}: {message}",
                    redact_url(url),
                    credentials.describe()
                ))),
                StoreError::Corrupt { path, message } => StoreError::Corrupt {
                    path: clean(&path),
                    message: clean(&message),
                },
                StoreError::Refused(message) => StoreError::Refused(clean(&message)),
            })
    }

    async fn open(
        url: &str,
        prefix: &str,
        audit_retention: usize,
        credentials: &RedisCredentials,
    ) -> Result<RedisStore, StoreError> {
        let (target, pubsub_clients) = if url.starts_with(SENTINEL_SCHEME) {
            let (hosts, service) = sentinel_parts(url)
                .ok_or_else(|| StoreError::Unavailable(format!("expected {SENTINEL_FORM}")))?;
            let sentinel = sentinel_client(hosts, service, credentials).map_err(unavailable)?;
            let target = Target::Sentinel {
                sentinel: Box::new(Mutex::new(sentinel)),
                master: Mutex::new(None),
            };
            (target, Vec::new())
        } else if url.contains(',') {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.clone());
            if let Some(password) = &credentials.password {
                builder = builder.password(password);
                if let Some(username) = &credentials.username {
                    builder = builder.username(username);
                }
            }
            if let Some(certs) = credentials.tls() {
                builder = builder.certs(certs);
            }
            let cluster = builder
                .build()
                .map_err(unavailable)?
                .get_async_connection()
                .await
                .map_err(unavailable)?;
            let clients = nodes
                .iter()
                .map(|node| credentials.client(node).map_err(unavailable))
                .collect::<Result<Vec<_>, _>>()?;
            (Target::Cluster(cluster), clients)
        } else {
            let client = credentials.client(url).map_err(unavailable)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
                .set_response_timeout(Some(std::time::Duration::from_secs(2)))
                .set_number_of_retries(1);
            let manager = ConnectionManager::new_with_config(client.clone(), config)
                .await
                .map_err(unavailable)?;
            (Target::Single(manager), vec![client])
        };
        let store = RedisStore {
            target,
            pubsub_clients,
            keys: Keys::new(prefix),
            audit_retention: audit_retention.max(1),
            lookup_script: Script::new(LOOKUP_LUA),
            swap_users_script: Script::new(SWAP_USERS_LUA),
            swap_org_script: Script::new(SWAP_ORG_LUA),
            org_by_domain_script: Script::new(ORG_BY_DOMAIN_LUA),
            users_page_script: Script::new(USERS_PAGE_LUA),
            orgs_by_server_script: Script::new(ORGS_BY_SERVER_LUA),
            swap_record_script: Script::new(SWAP_RECORD_LUA),
        };
        // Fail at start-up if the server does not answer.
        let _: () = with_conn!(store, conn => redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ()).map_err(unavailable))?;
        Ok(store)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Clients for pub/sub, to try in turn (a change published on any Cluster node reaches
    /// subscribers on every node; the Sentinel master is looked up now).
    pub async fn pubsub_clients(&self) -> Result<Vec<Client>, StoreError> {
        if let Target::Sentinel { sentinel, .. } = &self.target {
            let client = sentinel
                .lock()
                .await
                .async_get_client()
                .await
                .map_err(unavailable)?;
            return Ok(vec![client]);
        }
        Ok(self.pubsub_clients.clone())
    }

    async fn sentinel_master(&self) -> Result<ConnectionManager, StoreError> {
        let Target::Sentinel { sentinel, master } = &self.target else {
            unreachable!("only called for a Sentinel target");
        };
        let mut master = master.lock().await;
        if let Some(manager) = master.as_ref() {
            return Ok(manager.clone());
        }
        let client = sentinel
            .lock()
            .await
            .async_get_client()
            .await
            .map_err(unavailable)?;
        let manager = ConnectionManager::new(client).await.map_err(unavailable)?;
        *master = Some(manager.clone());
        Ok(manager)
    }

    async fn forget_sentinel_master(&self) {
        if let Target::Sentinel { master, .. } = &self.target {
            *master.lock().await = None;
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> =
            with_conn!(self, conn => conn.get(&key).await.map_err(unavailable))?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(&key, e)))
            .transpose()
    }

    /// Every member of an index set, read with MGET in batches (a member deleted between the
    /// two reads is left out).
    async fn all_json<T: serde::de::DeserializeOwned>(
        &self,
        index: String,
        key_of: impl Fn(&str) -> String,
    ) -> Result<Vec<T>, StoreError> {
        let mut members: Vec<String> =
            with_conn!(self, conn => conn.smembers(&index).await.map_err(unavailable))?;
        members.sort();
        let mut all = Vec::with_capacity(members.len());
        for batch in members.chunks(500) {
            let keys: Vec<String> = batch.iter().map(|m| key_of(m)).collect();
            let texts: Vec<Option<String>> = with_conn!(self, conn => redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.map_err(unavailable))?;
            for (key, text) in keys.iter().zip(texts) {
                if let Some(text) = text {
                    all.push(serde_json::from_str(&text).map_err(|e| corrupt(key, e))?);
                }
            }
        }
        Ok(all)
    }

    /// Fills the org-by-domain index from every organisation and marks it built: for a
    /// directory written before the index existed (or restored from such a backup). A domain
    /// already indexed keeps its organisation: an organisation written meanwhile indexed its
    /// own domains, and is newer than what was read here.
    async fn build_org_index(&self) -> Result<(), StoreError> {
        let orgs: Vec<Organisation> = self.orgs().await?;
        let index = self.keys.org_by_domain();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for org in &orgs {
            for domain in &org.domains {
                pipe.hset_nx(&index, domain_key(domain), &org.id).ignore();
            }
        }
        pipe.hset(&index, INDEX_BUILT, "1").ignore();
        with_conn!(self, conn => pipe.query_async::<()>(&mut conn).await.map_err(unavailable))
    }

    /// Fills the organisation indexes (by domain, by mail server) that are not marked filled.
    /// Every organisation write does this first, so the indexes are filled by the admin
    /// commands, whose ACL allows the writes, and never by the milter, whose ACL (the
    /// README's) allows only reads: until then a reader reads every organisation instead.
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let (domains, servers): (bool, bool) = with_conn!(self, conn => redis::pipe()
            .hexists(self.keys.org_by_domain(), INDEX_BUILT)
            .exists(self.keys.servers_indexed())
            .query_async(&mut conn)
            .await
            .map_err(unavailable))?;
        if !domains {
            self.build_org_index().await?;
        }
        if !servers {
            self.build_server_index().await?;
        }
        Ok(())
    }

    /// Fills the org-by-server sets from every organisation and marks them filled: for a
    /// directory written before they existed. Adding to a set is idempotent, and an
    /// organisation written meanwhile added itself.
    async fn build_server_index(&self) -> Result<(), StoreError> {
        let orgs: Vec<Organisation> = self.orgs().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for org in &orgs {
            if let Some(server) = &org.mail_server {
                pipe.sadd(self.keys.org_by_server(server), &org.id).ignore();
            }
        }
        pipe.set(self.keys.servers_indexed(), "1").ignore();
        with_conn!(self, conn => pipe.query_async::<()>(&mut conn).await.map_err(unavailable))
    }

    /// The organisations (JSON) the set of `server` names; `None` when the sets were never
    /// filled.
    async fn orgs_by_server_candidates(
        &self,
        server: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut invocation = self.orgs_by_server_script.prepare_invoke();
        invocation
            .key(self.keys.meta())
            .key(self.keys.servers_indexed())
            .key(self.keys.org_by_server(server))
            .arg(self.keys.org(""));
        with_conn!(self, conn => {
            match invocation.invoke_async(&mut conn).await {
                Ok(found) => Ok(Some(found)),
                Err(e) if e.code() == Some("CJSMNOINDEX") => Ok(None),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    /// The organisations the index and the claim name for `domain` (JSON); `None` when the
    /// index was never built.
    async fn org_by_domain_candidates(
        &self,
        domain: &str,
    ) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
        let mut invocation = self.org_by_domain_script.prepare_invoke();
        invocation
            .key(self.keys.meta())
            .key(self.keys.org_by_domain())
            .key(self.keys.domains())
            .arg(self.keys.org(""))
            .arg(domain)
            .arg(INDEX_BUILT);
        with_conn!(self, conn => {
            match invocation.invoke_async(&mut conn).await {
                Ok(candidates) => Ok(Some(candidates)),
                Err(e) if e.code() == Some("CJSMNOINDEX") => Ok(None),
                Err(e) => Err(unavailable(e)),
            }
        })
    }
}

impl DirectoryRead for RedisStore {
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup> {
        Box::pin(async move {
            let address = normalize_address(address);
            let key = self.keys.user(&address);
            let org_prefix = self.keys.org("");
            let meta = self.keys.meta();
            let (user, org, certificate): (Option<String>, Option<String>, Option<String>) = with_conn!(self, conn => {
                self.lookup_script
                    .key(&key)
                    .key(&meta)
                    .key(self.keys.domains())
                    .key(self.keys.cert(&address))
                    .arg(&org_prefix)
                    .arg(address.rsplit_once('@').map_or("", |(_, domain)| domain))
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)
            })?;
            let user: Option<User> = user
                .map(|t| serde_json::from_str(&t).map_err(|e| corrupt(&key, e)))
                .transpose()?;
            let org: Option<Organisation> = org
                .map(|t| serde_json::from_str(&t).map_err(|e| corrupt("organisation", e)))
                .transpose()?;
            let certificate: Option<Certificate> = certificate
                .map(|t| serde_json::from_str(&t).map_err(|e| corrupt("certificate", e)))
                .transpose()?;
            Ok(Lookup {
                user,
                org,
                certificate,
            })
        })
    }

    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        Box::pin(async move {
            self.get_json(self.keys.user(&normalize_address(address)))
                .await
        })
    }

    fn users(&self) -> StoreFuture<'_, Vec<User>> {
        Box::pin(async move {
            let keys = self.keys.clone();
            self.all_json(self.keys.users(), move |a| keys.user(a))
                .await
        })
    }

    fn users_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<User>> {
        Box::pin(async move {
            let prefix = self.keys.user("");
            let mut users: Vec<User> = Vec::new();
            let mut cursor = after.map(str::to_string);
            while users.len() < limit {
                let size = (limit - users.len()).min(PAGE_MAX);
                let lower = cursor
                    .as_deref()
                    .map_or_else(|| "-".to_string(), |a| format!("({a}"));
                let mut invocation = self.users_page_script.prepare_invoke();
                invocation
                    .key(self.keys.users())
                    .key(self.keys.users_by_address())
                    .arg(&lower)
                    .arg(size)
                    .arg(&prefix);
                let (addresses, texts): (Vec<String>, Vec<Option<String>>) = with_conn!(self, conn => {
                    invocation.invoke_async(&mut conn).await.map_err(unavailable)
                })?;
                let read = addresses.len();
                for text in texts.into_iter().flatten() {
                    users.push(serde_json::from_str(&text).map_err(|e| corrupt("user", e))?);
                }
                match addresses.into_iter().next_back() {
                    Some(last) if read == size => cursor = Some(last),
                    _ => break,
                }
            }
            Ok(users)
        })
    }

    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        Box::pin(async move { self.get_json(self.keys.org(id)).await })
    }

    fn orgs_by_mail_server<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Vec<Organisation>> {
        Box::pin(async move {
            let found = match self.orgs_by_server_candidates(server).await? {
                Some(found) => found,
                // Never filled: every organisation is read, as for the domain index.
                None => return Ok(super::with_mail_server(self.orgs().await?, server)),
            };
            let mut orgs = Vec::new();
            for json in found {
                let org: Organisation =
                    serde_json::from_str(&json).map_err(|e| corrupt("organisation", e))?;
                // An organisation that has since moved to another server is no answer.
                if org.mail_server.as_deref() == Some(server) {
                    orgs.push(org);
                }
            }
            orgs.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(orgs)
        })
    }

    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
        Box::pin(async move {
            let keys = self.keys.clone();
            self.all_json(self.keys.orgs(), move |id| keys.org(id))
                .await
        })
    }

    fn org_by_domain<'a>(&'a self, domain: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        Box::pin(async move {
            let domain = domain_key(domain);
            let candidates = match self.org_by_domain_candidates(&domain).await? {
                Some(candidates) => candidates,
                // Never filled: every organisation is read (the milter's ACL may allow only
                // reads, so readers never fill it; the next organisation write does).
                None => {
                    let mut orgs = self.orgs().await?;
                    orgs.sort_by(|a, b| a.id.cmp(&b.id));
                    return Ok(orgs
                        .into_iter()
                        .find(|o| o.domains.iter().any(|d| domain_key(d) == domain)));
                }
            };
            let (indexed, claimed) = candidates;
            for json in [indexed, claimed].into_iter().flatten() {
                let org: Organisation =
                    serde_json::from_str(&json).map_err(|e| corrupt("organisation", e))?;
                // An entry left by a domain the organisation no longer lists, or a claim on
                // a secure form of its domains, is not an answer.
                if org.domains.iter().any(|d| domain_key(d) == domain) {
                    return Ok(Some(org));
                }
            }
            Ok(None)
        })
    }

    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>> {
        Box::pin(async move {
            let keys = self.keys.clone();
            self.all_json(self.keys.certs(), move |a| keys.cert(a))
                .await
        })
    }

    fn size(&self) -> StoreFuture<'_, (usize, usize)> {
        Box::pin(async move {
            let (users, orgs): (usize, usize) = with_conn!(self, conn => {
                redis::pipe()
                    .scard(self.keys.users())
                    .scard(self.keys.orgs())
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)
            })?;
            Ok((users, orgs))
        })
    }

    fn written(&self) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            with_conn!(self, conn => conn.exists(self.keys.meta()).await.map_err(unavailable))
        })
    }
}

impl DirectoryWrite for RedisStore {
    fn put_users(&self, users: Vec<User>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if users.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            let mut changed = Vec::new();
            for mut user in users {
                user.address = normalize_address(&user.address);
                let json = serde_json::to_string(&user).map_err(|e| corrupt("user", e))?;
                pipe.set(self.keys.user(&user.address), json).ignore();
                pipe.sadd(self.keys.users(), &user.address).ignore();
                pipe.zadd(self.keys.users_by_address(), &user.address, 0)
                    .ignore();
                changed.push(user.address);
            }
            for address in &changed {
                pipe.publish(self.keys.changes(), format!("user:{address}"))
                    .ignore();
            }
            with_conn!(self, conn => pipe.query_async::<()>(&mut conn).await.map_err(unavailable))
        })
    }

    fn put_org(&self, org: Organisation) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.ensure_indexes().await?;
            let json = serde_json::to_string(&org).map_err(|e| corrupt("organisation", e))?;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .set(self.keys.org(&org.id), json)
                .ignore()
                .sadd(self.keys.orgs(), &org.id)
                .ignore()
                .set(self.keys.meta(), "1")
                .ignore()
                .publish(self.keys.changes(), format!("org:{}", org.id))
                .ignore();
            for domain in &org.domains {
                pipe.hset(self.keys.org_by_domain(), domain_key(domain), &org.id)
                    .ignore();
            }
            if let Some(server) = &org.mail_server {
                pipe.sadd(self.keys.org_by_server(server), &org.id).ignore();
            }
            with_conn!(self, conn => pipe.query_async::<()>(&mut conn).await.map_err(unavailable))
        })
    }

    fn swap_users(&self, changes: Vec<(Option<u64>, User)>) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(true);
            }
            let mut invocation = self.swap_users_script.prepare_invoke();
            invocation.arg(self.keys.changes()).arg(changes.len());
            let mut keys = Vec::new();
            for (expected, mut user) in changes {
                user.address = normalize_address(&user.address);
                user.revision = expected.map_or(1, |r| r + 1);
                let json = serde_json::to_string(&user).map_err(|e| corrupt("user", e))?;
                keys.push(self.keys.user(&user.address));
                invocation
                    .arg(expected.map(|r| r.to_string()).unwrap_or_default())
                    .arg(json)
                    .arg(&user.address);
            }
            keys.push(self.keys.users());
            keys.push(self.keys.meta());
            keys.push(self.keys.users_by_address());
            for key in &keys {
                invocation.key(key);
            }
            let done: i64 = with_conn!(self, conn => {
                invocation.invoke_async(&mut conn).await.map_err(unavailable)
            })?;
            Ok(done == 1)
        })
    }

    fn swap_org(
        &self,
        expected: Option<u64>,
        mut org: Organisation,
        domains: Vec<String>,
    ) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            self.ensure_indexes().await?;
            org.revision = expected.map_or(1, |r| r + 1);
            let json = serde_json::to_string(&org).map_err(|e| corrupt("organisation", e))?;
            let mut invocation = self.swap_org_script.prepare_invoke();
            invocation
                .key(self.keys.org(&org.id))
                .key(self.keys.orgs())
                .key(self.keys.domains())
                .key(self.keys.meta())
                .key(self.keys.org_by_domain());
            if let Some(server) = &org.mail_server {
                invocation.key(self.keys.org_by_server(server));
            }
            invocation
                .arg(self.keys.changes())
                .arg(&org.id)
                .arg(expected.map(|r| r.to_string()).unwrap_or_default())
                .arg(json)
                .arg(domains.len());
            for domain in &domains {
                invocation.arg(domain);
            }
            for domain in &org.domains {
                invocation.arg(domain_key(domain));
            }
            let result: Result<i64, redis::RedisError> = with_conn!(self, conn => {
                Ok::<_, StoreError>(invocation.invoke_async(&mut conn).await)
            })?;
            match result {
                Ok(done) => Ok(done == 1),
                Err(e) if e.code() == Some("CJSMDOMAIN") => Err(StoreError::Refused(
                    e.detail().unwrap_or("domain already held").to_string(),
                )),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn put_certificate(&self, mut cert: Certificate) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            cert.address = normalize_address(&cert.address);
            let json = serde_json::to_string(&cert).map_err(|e| corrupt("certificate", e))?;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .set(self.keys.cert(&cert.address), json)
                .ignore()
                .sadd(self.keys.certs(), &cert.address)
                .ignore()
                .set(self.keys.meta(), "1")
                .ignore()
                .publish(self.keys.changes(), format!("cert:{}", cert.address))
                .ignore();
            with_conn!(self, conn => pipe.query_async::<()>(&mut conn).await.map_err(unavailable))
        })
    }

    fn remove_certificate<'a>(&'a self, address: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let address = normalize_address(address);
            let mut pipe = redis::pipe();
            pipe.atomic()
                .del(self.keys.cert(&address))
                .srem(self.keys.certs(), &address)
                .ignore()
                .publish(self.keys.changes(), format!("cert:{address}"))
                .ignore();
            let (removed,): (u64,) =
                with_conn!(self, conn => pipe.query_async(&mut conn).await.map_err(unavailable))?;
            Ok(removed > 0)
        })
    }
}

impl RedisStore {
    /// Every record of `kind` whose key starts with `prefix`, unexpired or not (HSCAN: the
    /// hash is walked a bounded batch at a time).
    async fn scan_records(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Record)>, StoreError> {
        let hash = self.keys.records(kind);
        let pattern = format!("{}*", glob_literal(prefix));
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, batch): (u64, Vec<(String, String)>) = with_conn!(self, conn => {
                redis::cmd("HSCAN")
                    .arg(&hash)
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)
            })?;
            for (key, stored) in batch {
                let record = parse_record(&stored).ok_or_else(|| StoreError::Corrupt {
                    path: format!("redis {hash}"),
                    message: format!("record {key:?} is not REVISION EXPIRES VALUE"),
                })?;
                found.push((key, record));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(found)
    }
}

impl Records for RedisStore {
    fn record<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        now: u64,
    ) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let hash = self.keys.records(kind);
            let stored: Option<String> = with_conn!(self, conn => {
                redis::cmd("HGET").arg(&hash).arg(key).query_async(&mut conn).await.map_err(unavailable)
            })?;
            let Some(stored) = stored else {
                return Ok(None);
            };
            let record = parse_record(&stored).ok_or_else(|| StoreError::Corrupt {
                path: format!("redis {hash}"),
                message: format!("record {key:?} is not REVISION EXPIRES VALUE"),
            })?;
            Ok(Some(record).filter(|r| !r.expired(now)))
        })
    }

    fn swap_record<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        expected: Option<u64>,
        value: Option<String>,
        expires: u64,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut invocation = self.swap_record_script.prepare_invoke();
            invocation
                .key(self.keys.records(kind))
                .arg(key)
                .arg(expected.map(|r| r.to_string()).unwrap_or_default())
                .arg(value.as_deref().unwrap_or(""))
                .arg(expires)
                .arg(if value.is_some() { "put" } else { "delete" })
                .arg(now);
            let done: i64 = with_conn!(self, conn => {
                invocation.invoke_async(&mut conn).await.map_err(unavailable)
            })?;
            Ok(done == 1)
        })
    }

    fn records<'a>(
        &'a self,
        kind: &'a str,
        prefix: &'a str,
        limit: usize,
        now: u64,
    ) -> StoreFuture<'a, Vec<(String, Record)>> {
        Box::pin(async move {
            let mut found: Vec<(String, Record)> = self
                .scan_records(kind, prefix)
                .await?
                .into_iter()
                .filter(|(key, record)| key.starts_with(prefix) && !record.expired(now))
                .collect();
            found.sort_by(|a, b| a.0.cmp(&b.0));
            found.truncate(limit);
            Ok(found)
        })
    }

    fn purge_expired<'a>(&'a self, kind: &'a str, now: u64) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let expired: Vec<String> = self
                .scan_records(kind, "")
                .await?
                .into_iter()
                .filter(|(_, record)| record.expired(now))
                .map(|(key, _)| key)
                .collect();
            for chunk in expired.chunks(500) {
                let hash = self.keys.records(kind);
                let _: i64 = with_conn!(self, conn => {
                    redis::cmd("HDEL").arg(&hash).arg(chunk).query_async(&mut conn).await.map_err(unavailable)
                })?;
            }
            Ok(expired.len())
        })
    }
}

impl AuditTrail for RedisStore {
    /// The entries in order, in one round trip (a bulk load appends one per row).
    fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            let key = self.keys.audit();
            let mut pipe = redis::pipe();
            for event in &events {
                let json = serde_json::to_string(event).map_err(|e| corrupt("audit event", e))?;
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.audit_retention)
                    .arg("*")
                    .arg("event")
                    .arg(json)
                    .ignore();
            }
            with_conn!(self, conn => pipe.query_async::<()>(&mut conn).await.map_err(unavailable))
        })
    }

    fn append_audit(&self, event: AuditEvent) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(&event).map_err(|e| corrupt("audit event", e))?;
            let key = self.keys.audit();
            let retention = self.audit_retention;
            with_conn!(self, conn => {
                redis::cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(retention)
                    .arg("*")
                    .arg("event")
                    .arg(&json)
                    .query_async::<String>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            })
        })
    }

    fn audit(&self, limit: usize) -> StoreFuture<'_, Vec<AuditEvent>> {
        Box::pin(async move {
            let key = self.keys.audit();
            let reply: redis::streams::StreamRangeReply = with_conn!(self, conn => {
                conn.xrevrange_count(&key, "+", "-", limit).await.map_err(unavailable)
            })?;
            let events = reply
                .ids
                .iter()
                .filter_map(|entry| entry.get::<String>("event"))
                .filter_map(|json| serde_json::from_str(&json).ok())
                .collect();
            Ok(events)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_every_userinfo() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:secret@host:6379/0", "redis://***@host:6379/0"),
            ("redis://admin:secret@host:6379", "redis://***@host:6379"),
            ("redis://admin@host", "redis://***@host"),
            (
                "rediss://:secret@tls.example:6380",
                "rediss://***@tls.example:6380",
            ),
            (
                "redis+sentinel://:secret@s1:26379,:secret@s2:26379/mymaster",
                "redis+sentinel://***@s1:26379,***@s2:26379/mymaster",
            ),
            (
                "redis+sentinel://:secret@host:26379",
                "redis+sentinel://***@host:26379",
            ),
            (
                "redis://:secret@n1:7000, redis://u:secret@n2:7001,redis://n3:7002",
                "redis://***@n1:7000, redis://***@n2:7001,redis://n3:7002",
            ),
            // Raw `@` and `,` in a password (not percent-encoded): still hidden whole.
            ("redis://:se@cret@host", "redis://***@host"),
            ("redis://:sec,ret@host", "redis://***@host"),
            (
                "redis+sentinel://s1:1,:secret@s2:2/m",
                "redis+sentinel://***@s2:2/m",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("secret"), "{url}");
            assert!(!redact_url(url).contains("cret"), "{url}");
        }
    }

    /// Every short string of the characters that matter never panics either helper.
    #[test]
    fn odd_urls_never_panic() {
        let alphabet = ['a', '@', ',', ':', '/', '%'];
        for n in 0..=6u32 {
            for mut i in 0..alphabet.len().pow(n) {
                let mut url = String::new();
                for _ in 0..n {
                    url.push(alphabet[i % alphabet.len()]);
                    i /= alphabet.len();
                }
                let shown = redact_url(&url);
                let _ = scrub(&url, &url);
                assert_eq!(redact_url(&shown).len(), shown.len(), "{url:?}");
            }
        }
    }

    #[test]
    fn scrub_removes_the_password_however_written() {
        let url = "redis://admin:s%40cret@host:6379";
        let message = format!("failed {url}; auth admin:s@cret; password s%40cret or s@cret");
        let scrubbed = scrub(&message, url);
        assert!(!scrubbed.contains("cret"), "{scrubbed}");
        assert!(scrubbed.contains("redis://***@host:6379"), "{scrubbed}");
        assert_eq!(scrub("Connection refused", url), "Connection refused");
        assert_eq!(scrub("x", "a@b://c,@"), "x");
    }

    #[test]
    fn sentinel_urls_need_their_service() {
        assert_eq!(
            sentinel_parts("redis+sentinel://:p@h:26379/mymaster"),
            Some((":p@h:26379", "mymaster"))
        );
        assert_eq!(sentinel_parts("redis+sentinel://:p@h:26379"), None);
        assert_eq!(sentinel_parts("redis+sentinel://:p@h:26379/"), None);
        assert_eq!(sentinel_parts("redis+sentinel:///mymaster"), None);
        assert_eq!(sentinel_parts("redis://h:6379/0"), None);
    }
}
