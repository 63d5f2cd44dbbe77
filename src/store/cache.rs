//! The milter's read-through cache in front of Redis: lookups are answered from memory for
//! at most `cache_ttl_ms`, and every change published on `{P}:changes` empties the cache of
//! every milter instance at once, so a suspension is enforced everywhere within a second.
//! When Redis cannot be reached and the cache cannot answer, the lookup fails: tempfail.
//! Only lookups are cached; the other reads go to Redis. The cache wraps the read side only:
//! writes go to the store itself, whose published change empties the cache.

use super::redis::RedisStore;
use super::{DirectoryRead, StoreFuture};
use crate::address::normalize_address;
use crate::directory::model::{Certificate, Lookup, Organisation, User};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Entries kept at most; past it the cache is emptied (bounded memory, whatever the traffic).
const MAX_ENTRIES: usize = 100_000;

pub struct CachedDirectory {
    inner: Arc<RedisStore>,
    ttl: Duration,
    entries: Arc<Mutex<HashMap<String, (Instant, Lookup)>>>,
    /// Bumped at every invalidation: a lookup that raced with one is not cached.
    generation: Arc<AtomicU64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for CachedDirectory {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl CachedDirectory {
    pub fn new(inner: Arc<RedisStore>, ttl: Duration) -> CachedDirectory {
        let entries = Arc::new(Mutex::new(HashMap::new()));
        let generation = Arc::new(AtomicU64::new(0));
        let listener = tokio::spawn(listen(inner.clone(), entries.clone(), generation.clone()));
        CachedDirectory {
            inner,
            ttl,
            entries,
            generation,
            listener,
        }
    }
}

fn clear(entries: &Mutex<HashMap<String, (Instant, Lookup)>>, generation: &AtomicU64) {
    generation.fetch_add(1, Ordering::AcqRel);
    entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// Follows `{P}:changes`; (re)subscribing empties the cache, since changes may have been
/// missed while the subscription was down.
async fn listen(
    store: Arc<RedisStore>,
    entries: Arc<Mutex<HashMap<String, (Instant, Lookup)>>>,
    generation: Arc<AtomicU64>,
) {
    let channel = store.keys().changes();
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut last_error = String::from("no node to subscribe on");
            for client in store.pubsub_clients().await.map_err(|e| e.to_string())? {
                let attempt = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                match attempt.await {
                    Ok(pubsub) => return Ok(pubsub),
                    Err(e) => last_error = e.to_string(),
                }
            }
            Err(last_error)
        }
        .await;
        match subscribed {
            Ok(mut pubsub) => {
                clear(&entries, &generation);
                backoff = Duration::from_millis(100);
                info!(channel = %channel, "directory cache follows changes");
                let mut messages = pubsub.on_message();
                while messages.next().await.is_some() {
                    clear(&entries, &generation);
                }
                clear(&entries, &generation);
                warn!("directory change subscription lost; resubscribing");
            }
            Err(e) => {
                clear(&entries, &generation);
                warn!(error = %e, "cannot subscribe to directory changes; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

impl DirectoryRead for CachedDirectory {
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup> {
        Box::pin(async move {
            let address = normalize_address(address);
            {
                let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((at, lookup)) = entries.get(&address)
                    && at.elapsed() < self.ttl
                {
                    return Ok(lookup.clone());
                }
            }
            let generation = self.generation.load(Ordering::Acquire);
            // Stamped before the query: an entry is never older than it claims.
            let asked = Instant::now();
            let lookup = self.inner.lookup(&address).await?;
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if self.generation.load(Ordering::Acquire) == generation {
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(address, (asked, lookup.clone()));
            }
            Ok(lookup)
        })
    }

    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        self.inner.user(address)
    }

    fn users(&self) -> StoreFuture<'_, Vec<User>> {
        self.inner.users()
    }

    fn users_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<User>> {
        self.inner.users_page(after, limit)
    }

    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        self.inner.org(id)
    }

    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
        self.inner.orgs()
    }

    fn org_by_domain<'a>(&'a self, domain: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        self.inner.org_by_domain(domain)
    }

    fn orgs_by_mail_server<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Vec<Organisation>> {
        self.inner.orgs_by_mail_server(server)
    }

    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>> {
        self.inner.certificates()
    }

    fn size(&self) -> StoreFuture<'_, (usize, usize)> {
        self.inner.size()
    }

    fn written(&self) -> StoreFuture<'_, bool> {
        self.inner.written()
    }
}
