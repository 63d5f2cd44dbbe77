//! Measuring the store for the metrics: a wrapper around the read side that counts and times
//! every read, and the measured append the milter's audit writer uses.

use super::{AuditTrail, DirectoryRead, StoreError, StoreFuture};
use crate::directory::model::{AuditEvent, Certificate, Lookup, Organisation, User};
use crate::metrics::metrics;
use std::future::Future;
use std::time::Instant;

pub struct Instrumented<D> {
    inner: D,
}

impl<D> Instrumented<D> {
    pub fn new(inner: D) -> Instrumented<D> {
        Instrumented { inner }
    }
}

/// Times `work` as operation `op`, counting it and, when it fails, the error.
fn measured<'a, T: 'a>(
    op: &'static str,
    work: impl Future<Output = Result<T, StoreError>> + Send + 'a,
) -> StoreFuture<'a, T> {
    Box::pin(async move {
        let started = Instant::now();
        let result = work.await;
        let m = metrics();
        m.store_operations.with_label_values(&[op]).inc();
        m.store_seconds
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            m.store_errors.with_label_values(&[op]).inc();
        }
        result
    })
}

/// Appends the milter's audit entries, measured as `append_audit`: counted per entry, as
/// single appends are; timed per write.
pub(crate) async fn append_audit_measured(
    trail: &dyn AuditTrail,
    events: Vec<AuditEvent>,
) -> Result<(), StoreError> {
    let extra = events.len().saturating_sub(1) as u64;
    let result = measured("append_audit", trail.append_audit_batch(events)).await;
    metrics()
        .store_operations
        .with_label_values(&["append_audit"])
        .inc_by(extra);
    result
}

impl<D: DirectoryRead> DirectoryRead for Instrumented<D> {
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup> {
        measured("lookup", self.inner.lookup(address))
    }

    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        measured("user", self.inner.user(address))
    }

    fn users(&self) -> StoreFuture<'_, Vec<User>> {
        measured("users", self.inner.users())
    }

    fn users_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<User>> {
        measured("users_page", self.inner.users_page(after, limit))
    }

    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        measured("org", self.inner.org(id))
    }

    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
        measured("orgs", self.inner.orgs())
    }

    fn org_by_domain<'a>(&'a self, domain: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        measured("org_by_domain", self.inner.org_by_domain(domain))
    }

    fn orgs_by_mail_server<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Vec<Organisation>> {
        measured(
            "orgs_by_mail_server",
            self.inner.orgs_by_mail_server(server),
        )
    }

    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>> {
        measured("certificates", self.inner.certificates())
    }

    fn size(&self) -> StoreFuture<'_, (usize, usize)> {
        measured("size", self.inner.size())
    }

    fn written(&self) -> StoreFuture<'_, bool> {
        measured("written", self.inner.written())
    }
}
