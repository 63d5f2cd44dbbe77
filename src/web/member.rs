//! The pages of a user of the directory: searching the Secure eMail Directory, keeping their
//! own details current, and nominating a colleague in their organisation. A user acts only on
//! themselves and their own organisation: their address comes from their session, never from
//! the form, and a colleague they nominate must be under their organisation's domains.

use super::nominations::{self, Nomination, NominationState};
use super::session::{CsrfForm, Member, SignedIn, Visitor};
use super::{App, Chrome, WebError, counted, password, render};
use crate::address::normalize_address;
use crate::clock::now_unix;
use crate::directory::model::{OrgState, Organisation, User, UserState};
use crate::directory::rules::{
    MAX_FIELD_CHARS, address_in_org, check_address, check_text, outside_org_message,
};
use crate::directory::user::{UserDetails, search};
use crate::directory::{AdminError, learn_orgs};
use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use std::collections::HashMap;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/directory", get(directory))
        .route("/me", get(details_page).post(update_details))
        .route("/nominate", get(nominate_page).post(nominate))
}

/// The most people one search shows: enough to find someone, few enough to read.
pub const SHOWN: usize = 50;
/// How many the directory's search is asked for: it lists suspended users too (and users of
/// an organisation that is not active), which this page leaves out, so it asks for more than
/// it shows. A search whose matches are mostly hidden says "refine"; the work stays bounded.
const ASKED: usize = 4 * SHOWN;
/// The longest search text read, in characters.
const MAX_QUERY_CHARS: usize = 200;

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// One person found, as the directory shows them to another user.
struct Found {
    name: String,
    org_name: String,
    town: String,
    business_type: String,
    address: String,
}

#[derive(Template)]
#[template(path = "web/member_directory.html")]
struct DirectoryPage {
    chrome: Chrome,
    query: String,
    searched: bool,
    found: Vec<Found>,
    more: bool,
    problem: Option<String>,
    shown: usize,
}

async fn directory(
    State(app): State<App>,
    Member(visitor, _): Member,
    Query(SearchQuery { q }): Query<SearchQuery>,
) -> Result<Response, WebError> {
    let query = q.trim().to_string();
    let mut page = DirectoryPage {
        chrome: Chrome::of(&visitor),
        query: query.clone(),
        searched: false,
        found: Vec::new(),
        more: false,
        problem: None,
        shown: SHOWN,
    };
    if query.is_empty() {
        return Ok(render(&page));
    }
    if let Some(why) = check_text(&query, MAX_QUERY_CHARS) {
        // The text is not echoed back: it is what was too long or not printable.
        page.query.clear();
        page.problem = Some(format!("The search text {why}."));
        let mut response = render(&page);
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    let results = search(app.store.as_ref(), &query, ASKED).await?;
    let active: Vec<User> = results
        .users
        .into_iter()
        .filter(|u| u.state == UserState::Active)
        .collect();
    // Each organisation's name if it is active (a user of one that is not cannot be
    // mailed, so is not listed), read once however many of its users matched.
    let mut org_names: HashMap<String, Option<String>> = HashMap::new();
    learn_orgs(app.store.as_ref(), &active, &mut org_names, |org| {
        org.filter(|o| o.state == OrgState::Active).map(|o| o.name)
    })
    .await?;
    let mut found: Vec<Found> = active
        .into_iter()
        .filter_map(|user| {
            let org_name = org_names.get(&user.org).cloned().flatten()?;
            Some(Found {
                name: format!("{} {}", user.first_name, user.last_name)
                    .trim()
                    .to_string(),
                org_name,
                town: user.town,
                business_type: user.business_type,
                address: user.address,
            })
        })
        .collect();
    page.more = results.more || found.len() > SHOWN;
    found.truncate(SHOWN);
    page.found = found;
    page.searched = true;
    Ok(render(&page))
}

#[derive(Template)]
#[template(path = "web/member_details.html")]
struct DetailsPage {
    chrome: Chrome,
    address: String,
    org_name: String,
    first_name: String,
    last_name: String,
    town: String,
    business_type: String,
    problem: Option<String>,
    saved: bool,
    max_chars: usize,
}

#[derive(Deserialize)]
struct Flags {
    #[serde(default)]
    saved: Option<String>,
    #[serde(default)]
    nominated: Option<String>,
}

/// The signed-in user's own record and their organisation, as the directory has them now.
async fn own_record(app: &App, person: &SignedIn) -> Result<(User, Organisation), WebError> {
    let login = &person.account.login;
    let user = app
        .store
        .user(login)
        .await?
        .ok_or_else(|| WebError::Forbidden("You are no longer in the directory.".into()))?;
    let org = app.store.org(&user.org).await?.ok_or_else(|| {
        WebError::Forbidden("Your organisation is no longer in the directory.".into())
    })?;
    Ok((user, org))
}

async fn details_page(
    State(app): State<App>,
    Member(visitor, person): Member,
    Query(flags): Query<Flags>,
) -> Result<Response, WebError> {
    let (user, org) = own_record(&app, &person).await?;
    Ok(render(&DetailsPage {
        chrome: Chrome::of(&visitor),
        address: user.address,
        org_name: org.name,
        first_name: user.first_name,
        last_name: user.last_name,
        town: user.town,
        business_type: user.business_type,
        problem: None,
        saved: flags.saved.is_some(),
        max_chars: MAX_FIELD_CHARS,
    }))
}

/// The fields a user may change of themselves. There is deliberately no address: whose
/// details change is the session's, and any other field posted is ignored.
#[derive(Deserialize)]
struct DetailsForm {
    first_name: String,
    last_name: String,
    #[serde(default)]
    town: String,
    #[serde(default)]
    business_type: String,
}

async fn update_details(
    State(app): State<App>,
    Member(visitor, person): Member,
    CsrfForm(form): CsrfForm<DetailsForm>,
) -> Result<Response, WebError> {
    let login = person.account.login.clone();
    let problem = if form.first_name.trim().is_empty() {
        Some("Enter your first name.".to_string())
    } else if form.last_name.trim().is_empty() {
        Some("Enter your last name.".to_string())
    } else {
        let details = UserDetails {
            first_name: Some(form.first_name.clone()),
            last_name: Some(form.last_name.clone()),
            town: Some(form.town.clone()),
            business_type: Some(form.business_type.clone()),
        };
        match app.admin(&visitor).user_update(&login, details).await {
            Ok(_) => {
                counted("user update");
                return Ok(Redirect::to("/me?saved=1").into_response());
            }
            Err(AdminError::Refused(why)) if why.starts_with("nothing to change") => {
                // Saving the form unchanged is not a mistake worth a warning.
                return Ok(Redirect::to("/me?saved=1").into_response());
            }
            Err(AdminError::Refused(why)) => Some(why),
            Err(e) => return Err(e.into()),
        }
    };
    let (user, org) = own_record(&app, &person).await?;
    let mut page = render(&DetailsPage {
        chrome: Chrome::of(&visitor),
        address: user.address,
        org_name: org.name,
        first_name: form.first_name,
        last_name: form.last_name,
        town: form.town,
        business_type: form.business_type,
        problem,
        saved: false,
        max_chars: MAX_FIELD_CHARS,
    });
    *page.status_mut() = StatusCode::BAD_REQUEST;
    Ok(page)
}

/// The most nominations one user may have waiting at once: a user cannot fill their
/// administrators' queue (or the store) by posting the form in a loop.
pub const MAX_PENDING_PER_USER: usize = 20;

/// The alphabet of a nomination's id: lower case, no 0/o, 1/l, so it reads unambiguously.
const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A nomination waiting, as its nominator sees it.
struct Waiting {
    name: String,
    address: String,
    since: String,
}

#[derive(Template)]
#[template(path = "web/member_nominate.html")]
struct NominatePage {
    chrome: Chrome,
    org_name: String,
    domains: String,
    first_name: String,
    last_name: String,
    address: String,
    problem: Option<String>,
    nominated: bool,
    waiting: Vec<Waiting>,
    max_chars: usize,
}

/// The user's organisation (as their account names it) and the nominations waiting in it.
async fn nominate_context(
    app: &App,
    person: &SignedIn,
    now: u64,
) -> Result<(Organisation, Vec<Nomination>), WebError> {
    let org_id = person
        .account
        .org
        .as_deref()
        .ok_or_else(|| WebError::Forbidden("This account has no organisation.".into()))?;
    let org = app.store.org(org_id).await?.ok_or_else(|| {
        WebError::Forbidden("Your organisation is no longer in the directory.".into())
    })?;
    let all = nominations::of_org(app.store.as_ref(), &org.id, now).await?;
    if all.len() >= nominations::LISTED {
        // The list is read whole to check the limits below: past what one read holds, a
        // nomination could slip past them. Refused rather than counted short.
        return Err(WebError::BadRequest(format!(
            "Your organisation has {} nominations on record, the most the hub keeps: ask your Organisation Administrator.",
            nominations::LISTED
        )));
    }
    let waiting = all
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.state == NominationState::Pending)
        .collect();
    Ok((org, waiting))
}

/// The nominations among `waiting` that `person` made.
fn theirs(waiting: &[Nomination], person: &SignedIn) -> Vec<Nomination> {
    waiting
        .iter()
        .filter(|n| n.nominated_by == person.account.login)
        .cloned()
        .collect()
}

fn nominate_page_of(
    app: &App,
    visitor: &Visitor,
    org: &Organisation,
    mine: &[Nomination],
    form: NominateForm,
    problem: Option<String>,
    nominated: bool,
) -> NominatePage {
    let domains: Vec<String> = crate::directory::rules::allowed_domains(org, app.secure_suffix())
        .iter()
        .map(|d| format!("@{d}"))
        .collect();
    NominatePage {
        chrome: Chrome::of(visitor),
        org_name: org.name.clone(),
        domains: domains.join(", "),
        first_name: form.first_name,
        last_name: form.last_name,
        address: form.address,
        problem,
        nominated,
        waiting: mine
            .iter()
            .map(|n| Waiting {
                name: format!("{} {}", n.first_name, n.last_name),
                address: n.address.clone(),
                since: crate::smime::cert::date(n.created),
            })
            .collect(),
        max_chars: MAX_FIELD_CHARS,
    }
}

async fn nominate_page(
    State(app): State<App>,
    Member(visitor, person): Member,
    Query(flags): Query<Flags>,
) -> Result<Response, WebError> {
    let (org, waiting) = nominate_context(&app, &person, now_unix()).await?;
    let mine = theirs(&waiting, &person);
    Ok(render(&nominate_page_of(
        &app,
        &visitor,
        &org,
        &mine,
        NominateForm::default(),
        None,
        flags.nominated.is_some(),
    )))
}

#[derive(Default, Deserialize)]
struct NominateForm {
    first_name: String,
    last_name: String,
    address: String,
}

/// Why a nomination is refused, and the status it is answered with.
type Refusal = (StatusCode, String);

/// Checks a nomination against the rules: a plausible address under the user's own
/// organisation's domains (anything else is another organisation's business: 403), not
/// already a user or waiting, names given, and the user's queue not full.
async fn check_nomination(
    app: &App,
    org: &Organisation,
    waiting: &[Nomination],
    mine: &[Nomination],
    form: &NominateForm,
    address: &str,
) -> Result<Option<Refusal>, WebError> {
    let bad = |why: String| Ok(Some((StatusCode::BAD_REQUEST, why)));
    for (label, value) in [
        ("first name", &form.first_name),
        ("last name", &form.last_name),
    ] {
        let value = value.trim();
        if value.is_empty() {
            return bad(format!("Enter your colleague's {label}."));
        }
        if let Some(why) = check_text(value, MAX_FIELD_CHARS) {
            return bad(format!("The {label} {why}."));
        }
    }
    if let Err(why) = check_address(address) {
        return bad(format!("The address {why}."));
    }
    if !address_in_org(address, org, app.secure_suffix()) {
        return Ok(Some((
            StatusCode::FORBIDDEN,
            outside_org_message(address, org, app.secure_suffix()),
        )));
    }
    if app.store.user(address).await?.is_some() {
        return bad(format!(
            "{address} is already in the Secure eMail Directory, so needs no nomination."
        ));
    }
    // Anyone's nomination of this colleague, not only this user's.
    if waiting.iter().any(|n| n.address == address) {
        return bad(format!(
            "{address} has already been nominated; your Organisation Administrator will decide."
        ));
    }
    if mine.len() >= MAX_PENDING_PER_USER {
        return bad(format!(
            "You have {MAX_PENDING_PER_USER} nominations waiting: nominate more once your Organisation Administrator has decided on those."
        ));
    }
    Ok(None)
}

async fn nominate(
    State(app): State<App>,
    Member(visitor, person): Member,
    CsrfForm(form): CsrfForm<NominateForm>,
) -> Result<Response, WebError> {
    let now = now_unix();
    let (org, waiting) = nominate_context(&app, &person, now).await?;
    let address = normalize_address(form.address.trim());
    let mine = theirs(&waiting, &person);
    let refusal = check_nomination(&app, &org, &waiting, &mine, &form, &address).await?;
    if let Some((status, why)) = refusal {
        let mut page = render(&nominate_page_of(
            &app,
            &visitor,
            &org,
            &mine,
            form,
            Some(why),
            false,
        ));
        *page.status_mut() = status;
        return Ok(page);
    }
    let login = person.account.login.clone();
    let mut nomination = Nomination {
        id: String::new(),
        org: org.id.clone(),
        address: address.clone(),
        first_name: form.first_name.trim().to_string(),
        last_name: form.last_name.trim().to_string(),
        nominated_by: login.clone(),
        state: NominationState::Pending,
        decided_by: None,
        created: now,
        updated: now,
    };
    // A fresh id is new but for a one in 32^12 chance; a clash is drawn again.
    let mut stored = false;
    for _ in 0..4 {
        nomination.id = password::random_text(12, ID_ALPHABET);
        if nominations::swap(app.store.as_ref(), None, &nomination, now).await? {
            stored = true;
            break;
        }
    }
    if !stored {
        return Err(WebError::Internal(format!(
            "no free nomination id for {address} in {}",
            org.id
        )));
    }
    app.audit(&visitor, "web nominate", &address, format!("by {login}"))
        .await?;
    Ok(Redirect::to("/nominate?nominated=1").into_response())
}
