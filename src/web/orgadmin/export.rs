//! The organisation's users as files to download: CSV (which the bulk upload and
//! `user import` read back) and LDIF for the organisation's own address list. Only the
//! administrator's own organisation's active users.

use super::org_users;
use crate::directory::export::{to_csv, to_ldif};
use crate::web::session::OrgAdmin;
use crate::web::{App, WebError};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// The base DN of the LDIF entries: the same as `directory export --format ldif`'s default.
const BASE_DN: &str = "ou=Secure eMail Directory,dc=cjsm,dc=net";

pub async fn csv(State(app): State<App>, admin: OrgAdmin) -> Result<Response, WebError> {
    download(app, admin, Format::Csv).await
}

pub async fn ldif(State(app): State<App>, admin: OrgAdmin) -> Result<Response, WebError> {
    download(app, admin, Format::Ldif).await
}

#[derive(Clone, Copy)]
enum Format {
    Csv,
    Ldif,
}

async fn download(app: App, admin: OrgAdmin, format: Format) -> Result<Response, WebError> {
    let org = app.store.org(&admin.org).await?.ok_or_else(|| {
        WebError::Forbidden("Your organisation is no longer in the directory.".into())
    })?;
    // Every user of the organisation (the export filters the active ones): memory bounded by
    // the organisation's size, never the directory's.
    let (users, _) = org_users(app.store.as_ref(), &org.id, usize::MAX).await?;
    let orgs = std::slice::from_ref(&org);
    let (body, content_type, extension) = match format {
        Format::Csv => (to_csv(&users, orgs), "text/csv; charset=utf-8", "csv"),
        Format::Ldif => (
            to_ldif(&users, orgs, BASE_DN),
            "text/plain; charset=utf-8",
            "ldif",
        ),
    };
    app.audit(&admin.visitor, "web export", &org.id, extension)
        .await?;
    let file_name: String = org
        .id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    Ok((
        [
            (CONTENT_TYPE, content_type.to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}-users.{extension}\""),
            ),
        ],
        body,
    )
        .into_response())
}
