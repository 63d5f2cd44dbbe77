//! A store wrapper that counts and times every operation for the metrics.

use super::{AuditEvent, Certificate, Directory, Lookup, Organisation, StoreFuture, User};
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
    work: impl Future<Output = Result<T, super::StoreError>> + Send + 'a,
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

impl<D: Directory> Directory for Instrumented<D> {
    fn lookup<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Lookup> {
        measured("lookup", self.inner.lookup(address))
    }

    fn user<'a>(&'a self, address: &'a str) -> StoreFuture<'a, Option<User>> {
        measured("user", self.inner.user(address))
    }

    fn users(&self) -> StoreFuture<'_, Vec<User>> {
        measured("users", self.inner.users())
    }

    fn put_users(&self, users: Vec<User>) -> StoreFuture<'_, ()> {
        measured("put_users", self.inner.put_users(users))
    }

    fn swap_users(&self, changes: Vec<(Option<u64>, User)>) -> StoreFuture<'_, bool> {
        measured("swap_users", self.inner.swap_users(changes))
    }

    fn swap_org(
        &self,
        expected: Option<u64>,
        org: Organisation,
        domains: Vec<String>,
    ) -> StoreFuture<'_, bool> {
        measured("swap_org", self.inner.swap_org(expected, org, domains))
    }

    fn org<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Organisation>> {
        measured("org", self.inner.org(id))
    }

    fn orgs(&self) -> StoreFuture<'_, Vec<Organisation>> {
        measured("orgs", self.inner.orgs())
    }

    fn put_org(&self, org: Organisation) -> StoreFuture<'_, ()> {
        measured("put_org", self.inner.put_org(org))
    }

    fn put_certificate(&self, cert: Certificate) -> StoreFuture<'_, ()> {
        measured("put_certificate", self.inner.put_certificate(cert))
    }

    fn remove_certificate<'a>(&'a self, address: &'a str) -> StoreFuture<'a, bool> {
        measured("remove_certificate", self.inner.remove_certificate(address))
    }

    fn certificates(&self) -> StoreFuture<'_, Vec<Certificate>> {
        measured("certificates", self.inner.certificates())
    }

    fn append_audit(&self, event: AuditEvent) -> StoreFuture<'_, ()> {
        measured("append_audit", self.inner.append_audit(event))
    }

    fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, ()> {
        // Counted per entry, as single appends are; timed per write.
        let extra = events.len().saturating_sub(1) as u64;
        let work = self.inner.append_audit_batch(events);
        Box::pin(async move {
            let result = measured("append_audit", work).await;
            metrics()
                .store_operations
                .with_label_values(&["append_audit"])
                .inc_by(extra);
            result
        })
    }

    fn audit(&self, limit: usize) -> StoreFuture<'_, Vec<AuditEvent>> {
        measured("audit", self.inner.audit(limit))
    }

    fn size(&self) -> StoreFuture<'_, (usize, usize)> {
        measured("size", self.inner.size())
    }

    fn written(&self) -> StoreFuture<'_, bool> {
        measured("written", self.inner.written())
    }
}
