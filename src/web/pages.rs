//! The pages everyone shares: the home page, signing in and out, changing one's password, and
//! the stylesheet.

use super::accounts::{self, Standing};
use super::session::{CsrfForm, Person, Visitor};
use super::throttle::{ACCOUNT_FAILURES, WINDOW};
use super::{App, Chrome, WebError, password, render};
use crate::clock::now_unix;
use crate::metrics::metrics;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::atomic::Ordering::Relaxed;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route("/password", get(password_page).post(change_password))
        .route("/style.css", get(stylesheet))
}

#[derive(Template)]
#[template(path = "web/home.html")]
struct HomePage {
    chrome: Chrome,
}

async fn home(visitor: Visitor) -> Response {
    render(&HomePage {
        chrome: Chrome::of(&visitor),
    })
}

async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("style.css"),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "web/sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    login: String,
    problem: Option<String>,
}

async fn sign_in_page(visitor: Visitor) -> Response {
    if visitor.signed_in.is_some() {
        return Redirect::to("/").into_response();
    }
    render(&SignInPage {
        chrome: Chrome::of(&visitor),
        login: String::new(),
        problem: None,
    })
}

#[derive(Deserialize)]
struct SignInForm {
    login: String,
    password: String,
}

/// Why a sign-in failed, as counted and as shown. The same words whether the account exists
/// or the password is wrong, so the page does not tell who has an account.
const WRONG: &str = "That address and password do not match an account.";

async fn sign_in(
    State(app): State<App>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<SignInForm>,
) -> Result<Response, WebError> {
    let now = now_unix();
    let login = form.login.trim().to_ascii_lowercase();
    let again = |problem: String, status: axum::http::StatusCode| {
        let mut page = render(&SignInPage {
            chrome: Chrome::of(&visitor),
            login: login.clone(),
            problem: Some(problem),
        });
        *page.status_mut() = status;
        page
    };
    let sign_ins = &metrics().web_sign_ins;
    // The address's attempt is counted before the password is checked, so that many requests
    // at once cannot each get a guess past the limit; a success takes it back.
    match app.throttle.attempt(visitor.client, now) {
        Err(until) => {
            sign_ins.with_label_values(&["locked"]).inc();
            return Ok(again(
                format!(
                    "Too many failed sign-ins from your address: try again in {} minutes.",
                    until.saturating_sub(now).div_ceil(60)
                ),
                axum::http::StatusCode::TOO_MANY_REQUESTS,
            ));
        }
        Ok(true) => {
            app.audit(
                &visitor,
                "web address throttled",
                &login,
                format!(
                    "{} failed sign-ins from {}",
                    super::throttle::ADDRESS_FAILURES,
                    visitor.client
                ),
            )
            .await?;
        }
        Ok(false) => {}
    }
    // The account's likewise: the attempt is counted in the same write that checks the lock,
    // and at most ACCOUNT_FAILURES attempts are ever in flight or failed in a row.
    let refused_as_locked = std::sync::atomic::AtomicBool::new(false);
    let newly_locked = std::sync::atomic::AtomicBool::new(false);
    let counted = if login.is_empty() || login.len() > 254 {
        None
    } else {
        accounts::update(app.store.as_ref(), &login, now, |a| {
            newly_locked.store(false, Relaxed);
            if a.locked_until > now {
                refused_as_locked.store(true, Relaxed);
                return false;
            }
            if a.failures >= ACCOUNT_FAILURES {
                // As many attempts as allowed are in flight or failed: locked from now.
                refused_as_locked.store(true, Relaxed);
                newly_locked.store(true, Relaxed);
                a.failures = 0;
                a.locked_until = now + WINDOW;
                return true;
            }
            refused_as_locked.store(false, Relaxed);
            a.failures += 1;
            true
        })
        .await?
    };
    let Some(account) = counted else {
        let _ =
            password::verify_off_thread(form.password.clone(), accounts::DUMMY_HASH.into()).await;
        sign_ins.with_label_values(&["failed"]).inc();
        return Ok(again(WRONG.into(), axum::http::StatusCode::UNAUTHORIZED));
    };
    if newly_locked.load(Relaxed) {
        app.audit(
            &visitor,
            "web account locked",
            &login,
            format!("{ACCOUNT_FAILURES} sign-ins at once"),
        )
        .await?;
    }
    if refused_as_locked.load(Relaxed) {
        sign_ins.with_label_values(&["locked"]).inc();
        return Ok(again(
            format!(
                "This account is locked after {ACCOUNT_FAILURES} failed sign-ins: try again in {} minutes, or ask your administrator to reset your password.",
                account.locked_until.saturating_sub(now).div_ceil(60).max(1)
            ),
            axum::http::StatusCode::TOO_MANY_REQUESTS,
        ));
    }
    if !password::verify_off_thread(form.password.clone(), account.password_hash.clone()).await {
        sign_ins.with_label_values(&["failed"]).inc();
        // The attempt stays counted; the last one allowed locks the account.
        let locked = accounts::update(app.store.as_ref(), &login, now, |a| {
            if a.failures < ACCOUNT_FAILURES || a.locked_until > now {
                return false;
            }
            a.failures = 0;
            a.locked_until = now + WINDOW;
            true
        })
        .await?
        .is_some_and(|a| a.locked_until == now + WINDOW);
        if locked {
            app.audit(
                &visitor,
                "web account locked",
                &login,
                format!("{ACCOUNT_FAILURES} failed sign-ins in a row"),
            )
            .await?;
        }
        return Ok(again(WRONG.into(), axum::http::StatusCode::UNAUTHORIZED));
    }
    app.throttle.succeeded(visitor.client);
    if let Standing::Barred(why) = accounts::standing(app.store.as_ref(), &account).await? {
        sign_ins.with_label_values(&["failed"]).inc();
        return Ok(again(why, axum::http::StatusCode::FORBIDDEN));
    }
    // The counts are cleared only on the account as its password was checked: a password
    // changed or reset meanwhile (another generation) is not signed in with the old one.
    let stale = std::sync::atomic::AtomicBool::new(false);
    let account = accounts::update(app.store.as_ref(), &login, now, |a| {
        if a.generation != account.generation || a.password_hash != account.password_hash {
            stale.store(true, Relaxed);
            return false;
        }
        stale.store(false, Relaxed);
        a.failures = 0;
        a.locked_until = 0;
        true
    })
    .await?
    .filter(|_| !stale.load(Relaxed))
    .ok_or_else(|| {
        WebError::Forbidden("Your password was changed meanwhile: sign in again.".into())
    })?;
    let cookie = super::session::start(&app, &account, visitor.client, now).await?;
    sign_ins.with_label_values(&["ok"]).inc();
    app.audit_as(
        &login,
        &visitor,
        "web sign-in",
        &login,
        account.role.as_str(),
    )
    .await?;
    let to = if account.must_change {
        "/password"
    } else {
        "/"
    };
    Ok(([(SET_COOKIE, cookie)], Redirect::to(to)).into_response())
}

#[derive(Deserialize)]
struct CsrfOnly {}

async fn sign_out(
    State(app): State<App>,
    Person(visitor, person): Person,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> Result<Response, WebError> {
    let cookie = super::session::end(&app, &person, now_unix()).await?;
    app.audit(&visitor, "web sign-out", &person.account.login, "")
        .await?;
    Ok(([(SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

#[derive(Template)]
#[template(path = "web/password.html")]
struct PasswordPage {
    chrome: Chrome,
    must_change: bool,
    problem: Option<String>,
    min_length: usize,
}

async fn password_page(Person(visitor, person): Person) -> Response {
    render(&PasswordPage {
        chrome: Chrome::of(&visitor),
        must_change: person.account.must_change,
        problem: None,
        min_length: password::MIN_LENGTH,
    })
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

async fn change_password(
    State(app): State<App>,
    Person(visitor, person): Person,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<Response, WebError> {
    let now = now_unix();
    let login = person.account.login.clone();
    let current_matches =
        password::verify_off_thread(form.current.clone(), person.account.password_hash.clone())
            .await;
    let problem = if !current_matches {
        Some("Your current password is not right.".to_string())
    } else if form.new != form.confirm {
        Some("The new password and its confirmation differ.".to_string())
    } else if form.new == form.current {
        Some("Choose a password other than the current one.".to_string())
    } else {
        password::problem(&form.new, &login)
    };
    if let Some(problem) = problem {
        let mut page = render(&PasswordPage {
            chrome: Chrome::of(&visitor),
            must_change: person.account.must_change,
            problem: Some(problem),
            min_length: password::MIN_LENGTH,
        });
        *page.status_mut() = axum::http::StatusCode::BAD_REQUEST;
        return Ok(page);
    }
    let hash = password::hash_off_thread(form.new.clone()).await;
    // A new generation ends every other session; this one is started again below.
    // Only on the account as this session knew it: a reset by an administrator meanwhile (a
    // new generation) is not overwritten by a password chosen with the old one.
    let stale = std::sync::atomic::AtomicBool::new(false);
    let account = accounts::update(app.store.as_ref(), &login, now, |a| {
        if a.generation != person.account.generation
            || a.password_hash != person.account.password_hash
        {
            stale.store(true, Relaxed);
            return false;
        }
        stale.store(false, Relaxed);
        a.password_hash.clone_from(&hash);
        a.must_change = false;
        a.generation += 1;
        true
    })
    .await?
    .filter(|_| !stale.load(Relaxed))
    .ok_or_else(|| {
        WebError::Forbidden("Your password was reset or changed meanwhile: sign in again.".into())
    })?;
    super::session::end(&app, &person, now).await?;
    let cookie = super::session::start(&app, &account, visitor.client, now).await?;
    app.audit(&visitor, "web password change", &login, "")
        .await?;
    Ok(([(SET_COOKIE, cookie)], Redirect::to("/?changed=password")).into_response())
}
