//! The hub operator's queue of applications: every organisation not yet switched on, the
//! refused ones apart; one application's details; approving it, recording the signed terms,
//! activating it (which makes the Organisation Administrators' accounts and shows their
//! one-time passwords once, to be sent by post), or refusing it with a reason.
//!
//! A refusal is the hub's decision, kept in the application's details and the audit trail;
//! the directory has no deletion, so the refused organisation stays there, `applied` or
//! `approved` and never switched on, and keeps its claim on its domains: a new application
//! for them is refused naming it, and the hub decides what to do with it.

use super::accounts::{self, Role};
use super::applications::{self, Details, Refusal};
use super::session::{CsrfForm, Operator, Visitor};
use super::{App, Chrome, WebError, counted, render};
use crate::clock::now_unix;
use crate::directory::AdminError;
use crate::directory::model::{ConnectionType, OrgState, Organisation};
use crate::directory::rules::check_text;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::Deserialize;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/hub/applications", get(queue))
        .route("/hub/applications/{id}", get(application))
        .route("/hub/applications/{id}/approve", post(approve))
        .route("/hub/applications/{id}/terms", post(sign_terms))
        .route("/hub/applications/{id}/activate", post(activate))
        .route("/hub/applications/{id}/refuse", post(refuse))
}

/// The most applications the queue lists (each list); more are counted.
const LISTED: usize = 500;
/// How many applications' details are read at once for the queue.
const READS_IN_FLIGHT: usize = 16;
/// The longest reason for a refusal, in characters.
const MAX_REASON_CHARS: usize = 1000;

/// One application as the queue shows it.
struct Row {
    org: Organisation,
    details: Option<Details>,
}

impl Row {
    fn refusal(&self) -> Option<&Refusal> {
        self.details.as_ref().and_then(|d| d.refusal.as_ref())
    }
}

#[derive(Template)]
#[template(path = "web/hub_queue.html")]
struct QueuePage {
    chrome: Chrome,
    waiting: Vec<Row>,
    refused: Vec<Row>,
    /// How many of each were left off the page.
    waiting_more: usize,
    refused_more: usize,
}

async fn queue(
    State(app): State<App>,
    Operator(visitor, _): Operator,
) -> Result<Response, WebError> {
    let now = now_unix();
    let mut pending: Vec<Organisation> = app
        .store
        .orgs()
        .await?
        .into_iter()
        .filter(|org| matches!(org.state, OrgState::Applied | OrgState::Approved))
        .collect();
    pending.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    let store = app.store.as_ref();
    let rows: Vec<Row> = futures_util::stream::iter(pending)
        .map(|org| async move {
            let details = applications::get(store, &org.id, now).await?;
            Ok::<_, WebError>(Row {
                org,
                details: details.map(|(d, _)| d),
            })
        })
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
    let (mut refused, mut waiting): (Vec<Row>, Vec<Row>) =
        rows.into_iter().partition(|row| row.refusal().is_some());
    let waiting_more = waiting.len().saturating_sub(LISTED);
    let refused_more = refused.len().saturating_sub(LISTED);
    waiting.truncate(LISTED);
    // The latest refusals first: the older ones matter less.
    refused.sort_by_key(|row| std::cmp::Reverse(row.refusal().map_or(0, |r| r.at)));
    refused.truncate(LISTED);
    Ok(render(&QueuePage {
        chrome: Chrome::of(&visitor),
        waiting,
        refused,
        waiting_more,
        refused_more,
    }))
}

/// What the templates show of an organisation and a time.
trait Shows {
    fn when(&self, unix: &u64) -> String {
        date(*unix)
    }

    fn stage(&self, org: &Organisation) -> &'static str {
        match (org.state, org.terms_signed.is_some()) {
            (OrgState::Applied, _) => "applied: waiting for approval",
            (OrgState::Approved, false) => "approved: waiting for the signed terms",
            (OrgState::Approved, true) => "terms signed: ready to activate",
            (OrgState::Active, _) => "active",
            (OrgState::Suspended, _) => "suspended",
        }
    }

    fn connection(&self, org: &Organisation) -> &'static str {
        match org.connection {
            ConnectionType::Server => "server",
            ConnectionType::Mailbox => "mailbox",
        }
    }
}

impl Shows for QueuePage {}
impl Shows for ApplicationPage {}

/// An Organisation Administrator named by the organisation, and whether they have an account.
struct AdminAccount {
    address: String,
    has_account: bool,
}

#[derive(Template)]
#[template(path = "web/hub_application.html")]
struct ApplicationPage {
    chrome: Chrome,
    org: Organisation,
    details: Option<Details>,
    admins: Vec<AdminAccount>,
    /// Why the last action was not done.
    problem: Option<String>,
    /// What the last action did.
    done: Option<&'static str>,
}

impl ApplicationPage {
    fn refusal(&self) -> Option<&Refusal> {
        self.details.as_ref().and_then(|d| d.refusal.as_ref())
    }

    fn is_mailbox(&self) -> bool {
        self.org.connection == ConnectionType::Mailbox
    }

    fn can_approve(&self) -> bool {
        self.refusal().is_none() && self.org.state == OrgState::Applied
    }

    fn can_sign_terms(&self) -> bool {
        self.refusal().is_none() && self.org.approved.is_some() && self.org.terms_signed.is_none()
    }

    fn can_activate(&self) -> bool {
        self.refusal().is_none()
            && match self.org.state {
                OrgState::Active => self.admins.iter().any(|a| !a.has_account),
                _ => self.org.approved.is_some() && self.org.terms_signed.is_some(),
            }
    }

    fn can_refuse(&self) -> bool {
        self.refusal().is_none() && matches!(self.org.state, OrgState::Applied | OrgState::Approved)
    }
}

#[derive(Deserialize)]
struct Shown {
    done: Option<String>,
}

/// What an action answers the operator when it is done (the query of the page it sends them
/// back to).
fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "approved" => "Approved. Send the organisation the terms and conditions to sign.",
        "terms" => {
            "The signed terms and conditions are recorded: the organisation can be activated."
        }
        "refused" => "The application is refused. Tell the applicant why.",
        _ => return None,
    })
}

/// The organisation named in the path, with its application's details and revision.
async fn load(
    app: &App,
    id: &str,
    now: u64,
) -> Result<(Organisation, Option<(Details, u64)>), WebError> {
    let not_found = || WebError::NotFound(format!("There is no application {id:?}."));
    if id.is_empty() || id.len() > 64 {
        return Err(not_found());
    }
    let org = app.store.org(id).await?.ok_or_else(not_found)?;
    let details = applications::get(app.store.as_ref(), id, now).await?;
    Ok((org, details))
}

async fn page(
    app: &App,
    chrome: Chrome,
    org: Organisation,
    details: Option<Details>,
    problem: Option<String>,
    done: Option<&'static str>,
) -> Result<Response, WebError> {
    let now = now_unix();
    let mut admins = Vec::with_capacity(org.admins.len());
    for address in &org.admins {
        admins.push(AdminAccount {
            address: address.clone(),
            has_account: accounts::load(app.store.as_ref(), address, now)
                .await?
                .is_some(),
        });
    }
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = render(&ApplicationPage {
        chrome,
        org,
        details,
        admins,
        problem,
        done,
    });
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    Ok(response)
}

async fn application(
    State(app): State<App>,
    Operator(visitor, _): Operator,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Result<Response, WebError> {
    let (org, details) = load(&app, &id, now_unix()).await?;
    let done = shown.done.as_deref().and_then(done_text);
    page(
        &app,
        Chrome::of(&visitor),
        org,
        details.map(|(d, _)| d),
        None,
        done,
    )
    .await
}

#[derive(Deserialize)]
struct CsrfOnly {}

/// The page again with why an action was not done: the rules' refusal, or the hub's own.
async fn not_done(app: &App, chrome: Chrome, id: &str, why: String) -> Result<Response, WebError> {
    let (org, details) = load(app, id, now_unix()).await?;
    page(app, chrome, org, details.map(|(d, _)| d), Some(why), None).await
}

fn refused_already(refusal: &Refusal) -> String {
    format!(
        "This application was refused on {} by {}: {}",
        date(refusal.at),
        refusal.by,
        refusal.reason
    )
}

/// The steps taken with one press and no more to say: approving, recording the terms.
#[derive(Clone, Copy)]
enum Step {
    Approve,
    SignTerms,
}

impl Step {
    /// The action as the audit trail and the metrics name it.
    fn action(self) -> &'static str {
        match self {
            Step::Approve => "org approve",
            Step::SignTerms => "org sign-terms",
        }
    }

    /// What the page says it did (see [`done_text`]).
    fn done(self) -> &'static str {
        match self {
            Step::Approve => "approved",
            Step::SignTerms => "terms",
        }
    }
}

/// A step by the directory's rule, unless the hub refused the application.
async fn step(app: &App, visitor: Visitor, id: &str, step: Step) -> Result<Response, WebError> {
    let chrome = Chrome::of(&visitor);
    let (_, details) = load(app, id, now_unix()).await?;
    if let Some(refusal) = details.as_ref().and_then(|(d, _)| d.refusal.as_ref()) {
        return not_done(app, chrome, id, refused_already(refusal)).await;
    }
    let admin = app.admin(&visitor);
    let result = match step {
        Step::Approve => admin.org_approve(id).await,
        Step::SignTerms => admin.org_sign_terms(id).await,
    };
    match result {
        Ok(_) => {
            counted(step.action());
            let to = format!("/hub/applications/{id}?done={}", step.done());
            Ok(Redirect::to(&to).into_response())
        }
        Err(AdminError::Refused(why)) => not_done(app, chrome, id, why).await,
        Err(e) => Err(e.into()),
    }
}

async fn approve(
    State(app): State<App>,
    Operator(visitor, _): Operator,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    step(&app, visitor, &id, Step::Approve).await
}

async fn sign_terms(
    State(app): State<App>,
    Operator(visitor, _): Operator,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    step(&app, visitor, &id, Step::SignTerms).await
}

/// An Organisation Administrator's new account, with its one-time password, or the note that
/// the address has an account already.
struct NewAccount {
    address: String,
    one_time_password: Option<String>,
}

#[derive(Template)]
#[template(path = "web/hub_activated.html")]
struct ActivatedPage {
    chrome: Chrome,
    org: Organisation,
    accounts: Vec<NewAccount>,
}

/// Switches the organisation on and makes its Organisation Administrators' accounts. An
/// active organisation whose administrator has no account yet (the store failed after the
/// activation) gets the missing accounts without being activated again.
async fn activate(
    State(app): State<App>,
    Operator(visitor, _): Operator,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    let chrome = Chrome::of(&visitor);
    let now = now_unix();
    let (org, details) = load(&app, &id, now).await?;
    if let Some(refusal) = details.as_ref().and_then(|(d, _)| d.refusal.as_ref()) {
        return not_done(&app, chrome, &id, refused_already(refusal)).await;
    }
    let mut an_account_missing = false;
    for address in &org.admins {
        an_account_missing |= accounts::load(app.store.as_ref(), address, now)
            .await?
            .is_none();
    }
    let org = if org.state == OrgState::Active && an_account_missing {
        org
    } else {
        match app.admin(&visitor).org_activate(&id).await {
            Ok(org) => {
                counted("org activate");
                org
            }
            Err(AdminError::Refused(why)) => return not_done(&app, chrome, &id, why).await,
            Err(e) => return Err(e.into()),
        }
    };
    let mut made = Vec::with_capacity(org.admins.len());
    for address in &org.admins {
        let one_time_password = accounts::create(
            app.store.as_ref(),
            address,
            Role::OrgAdmin,
            Some(&org.id),
            now,
        )
        .await?;
        if one_time_password.is_some() {
            app.audit(
                &visitor,
                "web account created",
                address,
                Role::OrgAdmin.as_str(),
            )
            .await?;
        }
        made.push(NewAccount {
            address: address.clone(),
            one_time_password,
        });
    }
    Ok(render(&ActivatedPage {
        chrome,
        org,
        accounts: made,
    }))
}

#[derive(Deserialize)]
struct RefuseForm {
    #[serde(default)]
    reason: String,
}

async fn refuse(
    State(app): State<App>,
    Operator(visitor, person): Operator,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RefuseForm>,
) -> Result<Response, WebError> {
    let chrome = Chrome::of(&visitor);
    let now = now_unix();
    // A reason typed over several lines is kept as one.
    let reason = form
        .reason
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let problem = if reason.is_empty() {
        Some("Give the reason for the refusal.".to_string())
    } else {
        check_text(&reason, MAX_REASON_CHARS).map(|why| format!("The reason {why}."))
    };
    if let Some(problem) = problem {
        return not_done(&app, chrome, &id, problem).await;
    }
    for _ in 0..8 {
        let (org, details) = load(&app, &id, now).await?;
        if !matches!(org.state, OrgState::Applied | OrgState::Approved) {
            let why = format!(
                "Organisation {} is {}: only an application not yet switched on can be refused.",
                org.id, org.state
            );
            return not_done(&app, chrome, &id, why).await;
        }
        let (mut record, revision) = details.map_or_else(
            || {
                let bare = Details {
                    org: org.id.clone(),
                    ..Details::default()
                };
                (bare, None)
            },
            |(d, revision)| (d, Some(revision)),
        );
        if let Some(refusal) = &record.refusal {
            return not_done(&app, chrome, &id, refused_already(refusal)).await;
        }
        record.refusal = Some(Refusal {
            reason: reason.clone(),
            by: person.account.login.clone(),
            at: now,
        });
        if applications::swap(app.store.as_ref(), revision, &record, now).await? {
            app.audit(&visitor, "org refuse", &org.id, reason).await?;
            return Ok(
                Redirect::to(&format!("/hub/applications/{id}?done=refused")).into_response(),
            );
        }
    }
    Err(WebError::Store(crate::store::StoreError::Unavailable(
        format!("application {id} keeps changing; try again"),
    )))
}

/// A time as `2 Dec 2026 13:09 UTC`.
pub fn date(unix: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let seconds = unix % 86_400;
    // Howard Hinnant's civil-from-days, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{day} {} {year} {:02}:{:02} UTC",
        MONTHS[usize::try_from(month - 1).unwrap_or(0)],
        seconds / 3600,
        seconds % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_people_write_them() {
        assert_eq!(date(0), "1 Jan 1970 00:00 UTC");
        assert_eq!(date(951_825_600), "29 Feb 2000 12:00 UTC");
        assert_eq!(date(1_796_216_989), "2 Dec 2026 13:09 UTC");
    }
}
