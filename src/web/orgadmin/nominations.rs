//! The nominations the organisation's users make: the list, and the administrator's decision.
//! Accepting adds the colleague as a user (the directory's rules decide, as for the form) with
//! a sign-in account whose one-time password is shown once.

use super::{CsrfOnly, create_account, not_yours, one_time_password_page};
use crate::clock::now_unix;
use crate::directory::user::UserDetails;
use crate::web::nominations::{self, Nomination, NominationState};
use crate::web::session::{CsrfForm, OrgAdmin};
use crate::web::{App, Chrome, WebError, counted, render};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "web/org_nominations.html")]
struct NominationsPage {
    chrome: Chrome,
    pending: Vec<Nomination>,
    decided: Vec<Nomination>,
    listed: usize,
    declined: bool,
}

#[derive(Deserialize)]
pub struct ListQuery {
    done: Option<String>,
}

pub async fn list(
    State(app): State<App>,
    admin: OrgAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let all = nominations::of_org(app.store.as_ref(), &admin.org, now_unix()).await?;
    let (pending, decided): (Vec<Nomination>, Vec<Nomination>) = all
        .into_iter()
        .map(|(nomination, _)| nomination)
        // A record under this organisation's prefix that names another is not listed.
        .filter(|n| n.org == admin.org)
        .partition(|n| n.state == NominationState::Pending);
    Ok(render(&NominationsPage {
        chrome: Chrome::of(&admin.visitor),
        pending,
        decided,
        listed: nominations::LISTED,
        declined: query.done.as_deref() == Some("declined"),
    }))
}

/// The organisation's nomination `id` and its revision; [`not_yours`] for another
/// organisation's or none. An id is the random text the nomination was given: anything else
/// is no nomination.
async fn owned(app: &App, org: &str, id: &str) -> Result<(Nomination, u64), WebError> {
    let plausible = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return Err(not_yours());
    }
    match nominations::get(app.store.as_ref(), org, id, now_unix()).await? {
        Some((nomination, revision)) if nomination.org == org => Ok((nomination, revision)),
        _ => Err(not_yours()),
    }
}

fn already_decided(nomination: &Nomination) -> WebError {
    WebError::BadRequest(format!(
        "The nomination of {} has already been {}.",
        nomination.address,
        match nomination.state {
            NominationState::Accepted => "accepted",
            NominationState::Declined => "declined",
            NominationState::Pending => "changed",
        }
    ))
}

/// Records the decision if the nomination is still pending (read again when it changed in
/// between); the nomination as decided, or the refusal naming the other decision.
async fn decide(
    app: &App,
    admin: &OrgAdmin,
    id: &str,
    state: NominationState,
) -> Result<Nomination, WebError> {
    for _ in 0..8 {
        let (mut nomination, revision) = owned(app, &admin.org, id).await?;
        if nomination.state != NominationState::Pending {
            return Err(already_decided(&nomination));
        }
        let now = now_unix();
        nomination.state = state;
        nomination.decided_by = Some(admin.person.account.login.clone());
        nomination.updated = now;
        if nominations::swap(app.store.as_ref(), Some(revision), &nomination, now).await? {
            return Ok(nomination);
        }
    }
    Err(WebError::BadRequest(
        "The nomination keeps changing; reload the page and try again.".into(),
    ))
}

pub async fn accept(
    State(app): State<App>,
    admin: OrgAdmin,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    let (nomination, _) = owned(&app, &admin.org, &id).await?;
    if nomination.state != NominationState::Pending {
        return Err(already_decided(&nomination));
    }
    // The user first: a refusal by the rules (an address now taken, say) leaves the
    // nomination pending for the administrator to decline.
    let user = app
        .admin(&admin.visitor)
        .user_add(
            &nomination.address,
            &admin.org,
            UserDetails {
                first_name: Some(nomination.first_name.clone()),
                last_name: Some(nomination.last_name.clone()),
                town: None,
                business_type: None,
            },
        )
        .await?;
    counted("user add");
    // A second administrator accepting at the same moment was refused by user_add (the
    // address is taken), so this decision is the only one.
    let decided = decide(&app, &admin, &id, NominationState::Accepted).await?;
    app.audit(
        &admin.visitor,
        "web nomination accept",
        &decided.address,
        format!("nominated by {}", decided.nominated_by),
    )
    .await?;
    let one_time = create_account(&app, &admin.visitor, &admin.org, &user.address).await?;
    Ok(one_time_password_page(
        &admin.visitor,
        "Nomination accepted",
        format!(
            "{} {} is now a user, as {} nominated.",
            user.first_name, user.last_name, decided.nominated_by
        ),
        &user.address,
        one_time,
    ))
}

pub async fn decline(
    State(app): State<App>,
    admin: OrgAdmin,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    let decided = decide(&app, &admin, &id, NominationState::Declined).await?;
    app.audit(
        &admin.visitor,
        "web nomination decline",
        &decided.address,
        format!("nominated by {}", decided.nominated_by),
    )
    .await?;
    Ok(Redirect::to("/org/nominations?done=declined").into_response())
}
