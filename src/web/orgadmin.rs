//! The Organisation Administrator's pages: their organisation's users (listed, added one at a
//! time or in a bulk upload, suspended, reactivated, deleted, their passwords reset), the
//! exports, and the nominations their users make. **Only within their own organisation**:
//! every address or nomination named in a URL or a form is read from the store and must
//! belong to the administrator's organisation, or the answer is 403 — the same 403 whether it
//! belongs to another organisation or does not exist, so the page does not tell which — before
//! anything changes.

mod export;
mod nominations;
mod upload;
mod users;

use super::accounts::{self, Role};
use super::session::Visitor;
use super::{App, Chrome, WebError, render};
use crate::clock::now_unix;
use crate::directory::PAGE;
use crate::directory::model::User;
use crate::store::{DirectoryRead, StoreError};
use askama::Template;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/org/users", get(users::list))
        .route("/org/users/new", get(users::new_page).post(users::add))
        .route(
            "/org/users/upload",
            // Larger than the upload's own limit, so that an oversized file is read to its end
            // and refused with a page, not cut off mid-request.
            post(upload::upload).layer(DefaultBodyLimit::max(upload::BODY_LIMIT)),
        )
        .route("/org/users/{address}", get(users::show))
        .route("/org/users/{address}/suspend", post(users::suspend))
        .route("/org/users/{address}/reactivate", post(users::reactivate))
        .route("/org/users/{address}/delete", post(users::delete))
        .route(
            "/org/users/{address}/reset-password",
            post(users::reset_password),
        )
        .route("/org/export.csv", get(export::csv))
        .route("/org/export.ldif", get(export::ldif))
        .route("/org/nominations", get(nominations::list))
        .route("/org/nominations/{id}/accept", post(nominations::accept))
        .route("/org/nominations/{id}/decline", post(nominations::decline))
}

/// The one refusal for a user or a nomination outside the administrator's organisation, and
/// for one that does not exist: the page does not tell which.
fn not_yours() -> WebError {
    WebError::Forbidden("That is not in your organisation.".into())
}

/// The user at `address` if they belong to `org`; [`not_yours`] otherwise.
async fn owned_user(app: &App, org: &str, address: &str) -> Result<User, WebError> {
    let address = crate::address::normalize_address(address);
    match app.store.user(&address).await? {
        Some(user) if user.org == org => Ok(user),
        _ => Err(not_yours()),
    }
}

/// The sign-in account at a user's address, if it is that user's own: an account of the
/// user role in the same organisation. An address that signs in as someone else (a hub
/// operator or an administrator who happens to share it) is refused: an administrator must
/// never reset or end the sessions of an account that is not one of their users'.
async fn users_account(
    app: &App,
    org: &str,
    address: &str,
    now: u64,
) -> Result<Option<accounts::Account>, WebError> {
    match accounts::load(app.store.as_ref(), address, now).await? {
        None => Ok(None),
        Some(stored)
            if stored.account.role == Role::User
                && stored.account.org.as_deref() == Some(org) =>
        {
            Ok(Some(stored.account))
        }
        Some(_) => Err(WebError::Forbidden(
            "This address signs in to the website with another role; only the hub operators can change its account."
                .into(),
        )),
    }
}

/// Creates the sign-in account of a user just added: the one-time password to show once, or
/// `None` when the address already had an account (left as it was).
async fn create_account(
    app: &App,
    visitor: &Visitor,
    org: &str,
    address: &str,
) -> Result<Option<String>, WebError> {
    let created = accounts::create(
        app.store.as_ref(),
        address,
        Role::User,
        Some(org),
        now_unix(),
    )
    .await?;
    if created.is_some() {
        app.audit(visitor, "web account created", address, "user")
            .await?;
    }
    Ok(created)
}

/// Every user of `org`, in address order, at most `limit` of them, and whether there were
/// more: a walk over the directory a page at a time keeping the organisation's (memory
/// bounded by the limit and a page).
async fn org_users(
    store: &dyn DirectoryRead,
    org: &str,
    limit: usize,
) -> Result<(Vec<User>, bool), StoreError> {
    let mut users = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.users_page(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Ok((users, false));
        };
        after = Some(last.address.clone());
        let full = page.len() == PAGE;
        for user in page.into_iter().filter(|u| u.org == org) {
            if users.len() == limit {
                return Ok((users, true));
            }
            users.push(user);
        }
        if !full {
            return Ok((users, false));
        }
    }
}

/// The path of a user's page: the address percent-encoded, so that characters a mail
/// address may hold (`/`, `?`, `#`, `%`) stay in the path segment.
pub fn user_path(address: &str) -> String {
    let mut path = String::from("/org/users/");
    for byte in address.bytes() {
        if byte.is_ascii_alphanumeric() || b"@.-_+".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path
}

/// A form with nothing but its CSRF token (the buttons of a user's and a nomination's page).
#[derive(Deserialize)]
struct CsrfOnly {}

/// The page that shows a one-time password, once: after a user is added, a password is
/// reset or a nomination is accepted.
#[derive(Template)]
#[template(path = "web/org_password.html")]
struct OneTimePasswordPage {
    chrome: Chrome,
    title: String,
    /// What was done, in a sentence.
    done: String,
    address: String,
    user_href: String,
    /// `None`: the address already had a sign-in account, left as it was.
    one_time_password: Option<String>,
}

fn one_time_password_page(
    visitor: &Visitor,
    title: &str,
    done: String,
    address: &str,
    one_time_password: Option<String>,
) -> Response {
    render(&OneTimePasswordPage {
        chrome: Chrome::of(visitor),
        title: title.to_string(),
        done,
        address: address.to_string(),
        user_href: user_path(address),
        one_time_password,
    })
}

#[cfg(test)]
mod tests {
    use super::user_path;

    #[test]
    fn a_user_path_keeps_the_address_in_one_segment() {
        assert_eq!(
            user_path("jo.bloggs@a.cjsm.net"),
            "/org/users/jo.bloggs@a.cjsm.net"
        );
        assert_eq!(
            user_path("a/b?c#d%e@x.uk"),
            "/org/users/a%2Fb%3Fc%23d%25e@x.uk"
        );
    }
}
