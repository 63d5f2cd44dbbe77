//! The Redis backend: the directory shared by every milter instance.
//!
//! Key layout (`P` is `[store] key_prefix`; the braces are a Cluster hash tag, so every key of
//! a deployment lives in one slot and multi-key operations work on a Cluster too):
//!
//! | key | type | content |
//! |---|---|---|
//! | `{P}:user:<address>` | string | a user, JSON |
//! | `{P}:users` | set | every user's address |
//! | `{P}:org:<id>` | string | an organisation, JSON |
//! | `{P}:orgs` | set | every organisation's id |
//! | `{P}:audit` | stream | audit events, field `event` = JSON, trimmed to the retention |
//! | `{P}:changes` | pub/sub channel | `user:<address>` or `org:<id>` after every change |
//!
//! URLs: `redis://` and `rediss://` (TLS through rustls) for one server; several of them
//! separated by commas for a Cluster; `redis+sentinel://HOST:PORT[,HOST:PORT…]/SERVICE` for
//! the master a set of Sentinels names.

use super::{
    AuditEvent, Directory, Lookup, Organisation, StoreError, StoreFuture, User, normalize_address,
};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Client, Script};
use tokio::sync::Mutex;

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
    /// A plain client for pub/sub: the server, a Cluster node, or the Sentinel master.
    pubsub_client: Mutex<Option<Client>>,
    keys: Keys,
    audit_retention: usize,
    lookup_script: Script,
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

    fn org(&self, id: &str) -> String {
        format!("{}:org:{id}", self.base)
    }

    fn orgs(&self) -> String {
        format!("{}:orgs", self.base)
    }

    fn audit(&self) -> String {
        format!("{}:audit", self.base)
    }

    pub fn changes(&self) -> String {
        format!("{}:changes", self.base)
    }
}

/// The user and their organisation in one round trip.
const LOOKUP_LUA: &str = r#"
local u = redis.call('GET', KEYS[1])
if not u then return {false, false} end
local ok, user = pcall(cjson.decode, u)
if not ok or type(user.org) ~= 'string' then return {u, false} end
return {u, redis.call('GET', ARGV[1] .. user.org)}
"#;

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
        let (target, pubsub_client) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (hosts, service) = rest
                .split_once('/')
                .filter(|(_, s)| !s.is_empty())
                .ok_or_else(|| {
                    StoreError::Unavailable(format!(
                        "{url}: expected redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE"
                    ))
                })?;
            let sentinels: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
            let sentinel = redis::sentinel::SentinelClient::build(
                sentinels,
                service,
                None,
                redis::sentinel::SentinelServerType::Master,
            )
            .map_err(unavailable)?;
            let target = Target::Sentinel {
                sentinel: Box::new(Mutex::new(sentinel)),
                master: Mutex::new(None),
            };
            (target, None)
        } else if url.contains(',') {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            let cluster = redis::cluster::ClusterClient::new(nodes.clone())
                .map_err(unavailable)?
                .get_async_connection()
                .await
                .map_err(unavailable)?;
            let client = Client::open(nodes[0]).map_err(unavailable)?;
            (Target::Cluster(cluster), Some(client))
        } else {
            let client = match tls_ca {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        StoreError::Unavailable(format!("tls_ca_file {}: {e}", path.display()))
                    })?;
                    let certs = redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    };
                    Client::build_with_tls(url, certs).map_err(unavailable)?
                }
                None => Client::open(url).map_err(unavailable)?,
            };
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
                .set_response_timeout(Some(std::time::Duration::from_secs(2)))
                .set_number_of_retries(1);
            let manager = ConnectionManager::new_with_config(client.clone(), config)
                .await
                .map_err(unavailable)?;
            (Target::Single(manager), Some(client))
        };
        let store = RedisStore {
            target,
            pubsub_client: Mutex::new(pubsub_client),
            keys: Keys::new(prefix),
            audit_retention: audit_retention.max(1),
            lookup_script: Script::new(LOOKUP_LUA),
        };
        // Fail at start-up if the server does not answer.
        let _: () = with_conn!(store, conn => redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ()).map_err(unavailable))?;
        Ok(store)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A client for pub/sub (the Sentinel master is looked up when needed).
    pub async fn pubsub_client(&self) -> Result<Client, StoreError> {
        if let Target::Sentinel { sentinel, .. } = &self.target {
            let client = sentinel
                .lock()
                .await
                .async_get_client()
                .await
                .map_err(unavailable)?;
            return Ok(client);
        }
        self.pubsub_client
            .lock()
            .await
            .clone()
            .ok_or_else(|| StoreError::Unavailable("no pub/sub client".into()))
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

    /// Every member of an index set, read with MGET in batches.
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
}

impl Directory for RedisStore {
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

    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup> {
        Box::pin(async move {
            let address = normalize_address(address);
            let key = self.keys.user(&address);
            let org_prefix = self.keys.org("");
            let (user, org): (Option<String>, Option<String>) = with_conn!(self, conn => {
                self.lookup_script
                    .key(&key)
                    .arg(&org_prefix)
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
            Ok(Lookup { user, org })
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
                changed.push(user.address);
            }
            for address in &changed {
                pipe.publish(self.keys.changes(), format!("user:{address}"))
                    .ignore();
            }
            with_conn!(self, conn => pipe.query_async::<()>(&mut conn).await.map_err(unavailable))
        })
    }

    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        Box::pin(async move { self.get_json(self.keys.org(id)).await })
    }

    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
        Box::pin(async move {
            let keys = self.keys.clone();
            self.all_json(self.keys.orgs(), move |id| keys.org(id))
                .await
        })
    }

    fn put_org(&self, org: Organisation) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(&org).map_err(|e| corrupt("organisation", e))?;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .set(self.keys.org(&org.id), json)
                .ignore()
                .sadd(self.keys.orgs(), &org.id)
                .ignore()
                .publish(self.keys.changes(), format!("org:{}", org.id))
                .ignore();
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
