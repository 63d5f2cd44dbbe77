//! The website's own records beside the directory: sign-in accounts, sessions, nominations
//! and the details of applications. Each is a JSON value under a kind and a key, with a
//! revision for compare-and-swap (as the directory's users and organisations have) and an
//! optional expiry (a session). Both backends keep them: the embedded store in one table,
//! Redis in one hash per kind.

use super::StoreFuture;

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The value, JSON written by the website.
    pub value: String,
    /// 1 when first written, bumped by every write.
    pub revision: u64,
    /// Seconds since the Unix epoch after which the record reads as absent; 0 for never.
    pub expires: u64,
}

impl Record {
    pub fn expired(&self, now: u64) -> bool {
        self.expires != 0 && self.expires <= now
    }
}

/// The website's records. A record past its expiry reads as absent and may be swapped as
/// absent. Keys and kinds are short printable text chosen by the website.
pub trait Records: Send + Sync {
    /// The record of `kind` under `key`, unless absent or expired at `now`.
    fn record<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        now: u64,
    ) -> StoreFuture<'a, Option<Record>>;
    /// Writes `value` (or removes the record, for `None`) only if the record is still at the
    /// revision read (`expected`; `None`: still absent or expired). `false` when it changed in
    /// between: the caller reads again and decides.
    fn swap_record<'a>(
        &'a self,
        kind: &'a str,
        key: &'a str,
        expected: Option<u64>,
        value: Option<String>,
        expires: u64,
        now: u64,
    ) -> StoreFuture<'a, bool>;
    /// At most `limit` unexpired records of `kind` whose key starts with `prefix`, ordered by
    /// key.
    fn records<'a>(
        &'a self,
        kind: &'a str,
        prefix: &'a str,
        limit: usize,
        now: u64,
    ) -> StoreFuture<'a, Vec<(String, Record)>>;
    /// Removes the records of `kind` expired at `now` (sessions of people who never signed
    /// out); answers how many.
    fn purge_expired<'a>(&'a self, kind: &'a str, now: u64) -> StoreFuture<'a, usize>;
}
