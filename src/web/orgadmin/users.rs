//! The organisation's users: the list, adding one, one user's page, and what an administrator
//! does to a user (suspend, reactivate, delete, reset the password).

use super::{
    CsrfOnly, create_account, not_yours, one_time_password_page, org_users, owned_user, user_path,
    users_account,
};
use crate::clock::now_unix;
use crate::directory::AdminError;
use crate::directory::model::{User, UserState};
use crate::directory::user::UserDetails;
use crate::web::accounts;
use crate::web::session::{CsrfForm, OrgAdmin};
use crate::web::{App, Chrome, WebError, counted, render};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// The most users the list shows; the exports have them all.
pub const LISTED: usize = 2000;

/// One row of the list.
pub struct Row {
    pub user: User,
    pub href: String,
}

#[derive(Template)]
#[template(path = "web/org_users.html")]
struct UsersPage {
    chrome: Chrome,
    org_name: String,
    rows: Vec<Row>,
    more: bool,
    listed: usize,
    max_rows: usize,
}

pub async fn list(State(app): State<App>, admin: OrgAdmin) -> Result<Response, WebError> {
    let org_name = org_name(&app, &admin.org).await?;
    let (users, more) = org_users(app.store.as_ref(), &admin.org, LISTED).await?;
    let rows = users
        .into_iter()
        .map(|user| Row {
            href: user_path(&user.address),
            user,
        })
        .collect();
    Ok(render(&UsersPage {
        chrome: Chrome::of(&admin.visitor),
        org_name,
        rows,
        more,
        listed: LISTED,
        max_rows: crate::directory::csv::MAX_IMPORT_ROWS,
    }))
}

async fn org_name(app: &App, org: &str) -> Result<String, WebError> {
    Ok(app
        .store
        .org(org)
        .await?
        .map_or_else(|| org.to_string(), |o| o.name))
}

#[derive(Deserialize, Default)]
pub struct NewUserForm {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    town: String,
    #[serde(default)]
    business_type: String,
}

#[derive(Template)]
#[template(path = "web/org_user_new.html")]
struct NewUserPage {
    chrome: Chrome,
    form: NewUserForm,
    problem: Option<String>,
}

pub async fn new_page(admin: OrgAdmin) -> Response {
    render(&NewUserPage {
        chrome: Chrome::of(&admin.visitor),
        form: NewUserForm::default(),
        problem: None,
    })
}

pub async fn add(
    State(app): State<App>,
    admin: OrgAdmin,
    CsrfForm(form): CsrfForm<NewUserForm>,
) -> Result<Response, WebError> {
    let again = |form: NewUserForm, problem: String| {
        let mut page = render(&NewUserPage {
            chrome: Chrome::of(&admin.visitor),
            form,
            problem: Some(problem),
        });
        *page.status_mut() = StatusCode::BAD_REQUEST;
        Ok(page)
    };
    if form.first_name.trim().is_empty() || form.last_name.trim().is_empty() {
        return again(form, "Give the user's first name and last name.".into());
    }
    let details = UserDetails {
        first_name: Some(form.first_name.clone()),
        last_name: Some(form.last_name.clone()),
        town: Some(form.town.clone()),
        business_type: Some(form.business_type.clone()),
    };
    let user = match app
        .admin(&admin.visitor)
        .user_add(&form.address, &admin.org, details)
        .await
    {
        Ok(user) => user,
        Err(AdminError::Refused(why)) => return again(form, refusal_for_people(&why)),
        Err(e) => return Err(e.into()),
    };
    counted("user add");
    let one_time = create_account(&app, &admin.visitor, &admin.org, &user.address).await?;
    Ok(one_time_password_page(
        &admin.visitor,
        "User added",
        format!("{} {} is now a user.", user.first_name, user.last_name),
        &user.address,
        one_time,
    ))
}

/// The rules name fields as the command line's options (`--first-name`); the form's labels
/// say it in words.
fn refusal_for_people(why: &str) -> String {
    let mut text = why.to_string();
    for (option, label) in [
        ("--first-name", "The first name"),
        ("--last-name", "The last name"),
        ("--town", "The town"),
        ("--business-type", "The business type"),
    ] {
        text = text.replace(option, label);
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

#[derive(Template)]
#[template(path = "web/org_user.html")]
struct UserPage {
    chrome: Chrome,
    user: User,
    /// The user's state in words, for the choice of actions.
    state: String,
    href: String,
    /// `None`: no sign-in account yet; else whether it still has its one-time password.
    account_pending_change: Option<bool>,
    done: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct UserQuery {
    done: Option<String>,
}

pub async fn show(
    State(app): State<App>,
    admin: OrgAdmin,
    Path(address): Path<String>,
    Query(query): Query<UserQuery>,
) -> Result<Response, WebError> {
    let user = owned_user(&app, &admin.org, &address).await?;
    let account = accounts::load(app.store.as_ref(), &user.address, now_unix())
        .await?
        .map(|stored| stored.account.must_change);
    let done = match query.done.as_deref() {
        Some("suspended") => Some("The user is suspended: they are signed out and cannot sign in."),
        Some("reactivated") => Some("The user is active again."),
        Some("deleted") => {
            Some("The user is deleted: they are signed out, and mail to them is refused.")
        }
        _ => None,
    };
    Ok(render(&UserPage {
        chrome: Chrome::of(&admin.visitor),
        href: user_path(&user.address),
        state: user.state.to_string(),
        user,
        account_pending_change: account,
        done,
    }))
}

/// Suspends, reactivates or deletes a user of the administrator's organisation; a suspended or
/// deleted user's sessions end at once.
async fn set_state(
    app: App,
    admin: OrgAdmin,
    address: String,
    state: UserState,
) -> Result<Response, WebError> {
    let user = owned_user(&app, &admin.org, &address).await?;
    let now = now_unix();
    // Read before the change. An address that signs in as someone else (a hub operator, an
    // administrator) is still this organisation's user to suspend, but that account's
    // sessions are not the administrator's to end.
    let own_account = match users_account(&app, &admin.org, &user.address, now).await {
        Ok(account) => account.is_some(),
        Err(WebError::Forbidden(_)) => false,
        Err(e) => return Err(e),
    };
    let (action, done) = match state {
        UserState::Active => ("user reactivate", "reactivated"),
        UserState::Suspended => ("user suspend", "suspended"),
        UserState::Deleted => ("user delete", "deleted"),
    };
    let changed = app
        .admin(&admin.visitor)
        .user_set_state(&user.address, state)
        .await?;
    counted(action);
    if state != UserState::Active && own_account {
        accounts::end_sessions(app.store.as_ref(), &changed.address, now).await?;
    }
    Ok(Redirect::to(&format!("{}?done={done}", user_path(&changed.address))).into_response())
}

pub async fn suspend(
    State(app): State<App>,
    admin: OrgAdmin,
    Path(address): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    set_state(app, admin, address, UserState::Suspended).await
}

pub async fn reactivate(
    State(app): State<App>,
    admin: OrgAdmin,
    Path(address): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    set_state(app, admin, address, UserState::Active).await
}

pub async fn delete(
    State(app): State<App>,
    admin: OrgAdmin,
    Path(address): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    set_state(app, admin, address, UserState::Deleted).await
}

/// A new one-time password for a user (every session of theirs ends); a user without a
/// sign-in account gets one.
pub async fn reset_password(
    State(app): State<App>,
    admin: OrgAdmin,
    Path(address): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    let user = owned_user(&app, &admin.org, &address).await?;
    if user.state == UserState::Deleted {
        return Err(WebError::BadRequest(
            "This user is deleted: reactivate them before giving them a new password.".into(),
        ));
    }
    let now = now_unix();
    let account = users_account(&app, &admin.org, &user.address, now).await?;
    let (title, done, one_time) = match account {
        Some(_) => {
            let one_time = accounts::reset(app.store.as_ref(), &user.address, now)
                .await?
                .ok_or_else(not_yours)?;
            app.audit(
                &admin.visitor,
                "web password reset",
                &user.address,
                "one-time password",
            )
            .await?;
            (
                "Password reset",
                "Their old password no longer works and they are signed out everywhere.",
                Some(one_time),
            )
        }
        None => (
            "Account created",
            "They had no sign-in account; one has been made.",
            super::create_account(&app, &admin.visitor, &admin.org, &user.address).await?,
        ),
    };
    Ok(one_time_password_page(
        &admin.visitor,
        title,
        done.to_string(),
        &user.address,
        one_time,
    ))
}
