//! Who is visiting: the session behind the cookie (kept in the store, with an expiry), the
//! CSRF token their forms must carry, and their client address. Resolved once per request by
//! [`visitor_layer`]; handlers take [`Visitor`], [`SignedIn`] or a role's extractor.

use super::accounts::{self, Account, Role, Standing};
use super::{App, WebError};
use crate::clock::now_unix;
use crate::store::StoreError;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// The records' kind for sessions, keyed by the SHA-256 of the cookie's token (a copy of the
/// store does not hold a usable cookie).
pub const KIND: &str = "session";
pub const SESSION_COOKIE: &str = "cjsm_session";
/// The token a visitor who has not signed in carries in their forms (sign-in, apply): kept in
/// a cookie of its own and compared with the form's.
pub const FORM_COOKIE: &str = "cjsm_form";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub login: String,
    pub generation: u64,
    /// The token every form of this session carries.
    pub csrf: String,
    pub client: String,
    pub created: u64,
}

/// The peer address of the connection, put on each request by the server.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The person behind a request.
#[derive(Clone, Debug)]
pub struct Visitor {
    pub client: IpAddr,
    /// The token the page's forms carry.
    pub csrf: String,
    pub signed_in: Option<SignedIn>,
}

#[derive(Clone, Debug)]
pub struct SignedIn {
    pub account: Account,
    /// The session's key in the store (the hash of the cookie's token).
    pub session_key: String,
}

impl Visitor {
    /// Whether `token` is this visitor's form token.
    pub fn csrf_matches(&self, token: &str) -> bool {
        // Compared as hashes: equal-length values whose comparison time says nothing of
        // the token.
        !self.csrf.is_empty() && hash_token(&self.csrf) == hash_token(token)
    }

    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if self.csrf_matches(token) {
            Ok(())
        } else {
            Err(WebError::Forbidden(
                "This form has expired or did not come from this site. Go back, reload the page and try again."
                    .into(),
            ))
        }
    }

    /// Who, for the audit trail: the sign-in name, or "anonymous".
    pub fn actor(&self) -> String {
        self.signed_in
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |s| s.account.login.clone())
    }
}

pub fn hash_token(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A `Set-Cookie` value: never readable by scripts, sent only to this site's own pages,
/// `Secure` when the site is served over HTTPS.
pub fn set_cookie(app: &App, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if app.secure_cookies() { "; Secure" } else { "" };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .expect("cookie text is ASCII")
}

/// The client's address: the connection's peer, or behind a reverse proxy on loopback (when
/// the config says there is one) the last address the proxy added to `X-Forwarded-For`.
fn client_address(app: &App, parts_headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    let peer_ip = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.ip());
    if app.web.behind_https_proxy && peer_ip.is_loopback() {
        let forwarded = parts_headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back();
        if let Some(address) = forwarded {
            return address;
        }
    }
    peer_ip
}

/// The session behind `token`, if it is current: not expired, of an account that still
/// exists at the same generation and stands in the directory.
async fn resolve(
    app: &App,
    token: &str,
    now: u64,
) -> Result<Option<(Session, SignedIn)>, StoreError> {
    let key = hash_token(token);
    let Some(record) = app.store.record(KIND, &key, now).await? else {
        return Ok(None);
    };
    let Ok(session) = serde_json::from_str::<Session>(&record.value) else {
        return Ok(None);
    };
    let Some(stored) = accounts::load(app.store.as_ref(), &session.login, now).await? else {
        return Ok(None);
    };
    if stored.account.generation != session.generation {
        return Ok(None);
    }
    if accounts::standing(app.store.as_ref(), &stored.account).await? != Standing::Good {
        // Ended, not only refused: it does not come back if the user or the organisation is
        // reactivated.
        app.store
            .swap_record(KIND, &key, Some(record.revision), None, 0, now)
            .await?;
        return Ok(None);
    }
    Ok(Some((
        session,
        SignedIn {
            account: stored.account,
            session_key: key,
        },
    )))
}

/// Paths a person holding a one-time password may still reach.
const BEFORE_PASSWORD_CHANGE: &[&str] = &["/password", "/sign-out", "/style.css"];

/// Resolves the visitor of every request (see [`Visitor`]); a signed-in person who must
/// change their one-time password is sent to do so first. Adds the security headers to
/// every response.
pub async fn visitor_layer(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let now = now_unix();
    let peer = request.extensions().get::<Peer>().map(|p| p.0);
    let client = client_address(&app, request.headers(), peer);
    let mut signed_in = None;
    let mut csrf = String::new();
    if let Some(token) = cookie(request.headers(), SESSION_COOKIE) {
        match resolve(&app, &token, now).await {
            Ok(Some((session, person))) => {
                csrf = session.csrf;
                signed_in = Some(person);
            }
            Ok(None) => {}
            Err(e) => return WebError::Store(e).into_response(),
        }
    }
    let mut new_form_cookie = None;
    if signed_in.is_none() {
        csrf = match cookie(request.headers(), FORM_COOKIE) {
            Some(token) => token,
            None => {
                let token = super::password::token();
                new_form_cookie = Some(token.clone());
                token
            }
        };
    }
    let must_change = signed_in.as_ref().is_some_and(|s| s.account.must_change);
    let path = request.uri().path().to_string();
    let visitor = Visitor {
        client,
        csrf,
        signed_in,
    };
    request.extensions_mut().insert(visitor.clone());
    let mut response = if must_change && !BEFORE_PASSWORD_CHANGE.contains(&path.as_str()) {
        Redirect::to("/password").into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    if let Some(token) = new_form_cookie {
        headers.append(SET_COOKIE, set_cookie(&app, FORM_COOKIE, &token, None));
    }
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if visitor.signed_in.is_some() && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Visitor>()
            .cloned()
            .ok_or_else(|| WebError::Internal("the visitor layer did not run".into()))
    }
}

/// A signed-in person, of any role; anyone else is sent to sign in.
pub struct Person(pub Visitor, pub SignedIn);

impl<S: Send + Sync> FromRequestParts<S> for Person {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let visitor = Visitor::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match visitor.signed_in.clone() {
            Some(person) => Ok(Person(visitor, person)),
            None if parts.method == Method::GET => Err(Redirect::to("/sign-in").into_response()),
            None => Err(WebError::Forbidden("Sign in first.".into()).into_response()),
        }
    }
}

fn with_role(person: Person, role: Role) -> Result<Person, Box<Response>> {
    if person.1.account.role == role {
        Ok(person)
    } else {
        Err(Box::new(
            WebError::Forbidden(format!("This page is for a {} only.", role.as_str()))
                .into_response(),
        ))
    }
}

/// A hub operator; anyone else signed in gets 403.
pub struct Operator(pub Visitor, pub SignedIn);

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Person(visitor, person) = with_role(
            Person::from_request_parts(parts, state).await?,
            Role::Operator,
        )
        .map_err(|r| *r)?;
        Ok(Operator(visitor, person))
    }
}

/// An Organisation Administrator, with their organisation's id; anyone else gets 403.
pub struct OrgAdmin {
    pub visitor: Visitor,
    pub person: SignedIn,
    pub org: String,
}

impl<S: Send + Sync> FromRequestParts<S> for OrgAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Person(visitor, person) = with_role(
            Person::from_request_parts(parts, state).await?,
            Role::OrgAdmin,
        )
        .map_err(|r| *r)?;
        let Some(org) = person.account.org.clone() else {
            return Err(
                WebError::Forbidden("This account has no organisation.".into()).into_response(),
            );
        };
        Ok(OrgAdmin {
            visitor,
            person,
            org,
        })
    }
}

/// A user of the directory; anyone else gets 403.
pub struct Member(pub Visitor, pub SignedIn);

impl<S: Send + Sync> FromRequestParts<S> for Member {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Person(visitor, person) =
            with_role(Person::from_request_parts(parts, state).await?, Role::User)
                .map_err(|r| *r)?;
        Ok(Member(visitor, person))
    }
}

/// The largest form accepted (uploads have their own limit).
const FORM_LIMIT: usize = 64 * 1024;

/// A form (`application/x-www-form-urlencoded`) whose `csrf` field is the visitor's token:
/// 403 without it, or with another, before anything else is read of it.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for CsrfForm<T> {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, FORM_LIMIT)
            .await
            .map_err(|_| WebError::BadRequest("The form is too large.".into()))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| WebError::BadRequest("The form could not be read.".into()))?;
        let token = fields
            .iter()
            .find(|(key, _)| key == "csrf")
            .map(|(_, value)| value.as_str())
            .unwrap_or("");
        visitor.check_csrf(token)?;
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError::BadRequest(format!("The form is incomplete: {e}.")))?;
        Ok(CsrfForm(form))
    }
}

/// Starts a session for `account` and answers its cookie.
pub async fn start(
    app: &App,
    account: &Account,
    client: IpAddr,
    now: u64,
) -> Result<HeaderValue, StoreError> {
    let token = super::password::token();
    let session = Session {
        login: account.login.clone(),
        generation: account.generation,
        csrf: super::password::token(),
        client: client.to_string(),
        created: now,
    };
    let lifetime = app.web.session_minutes.saturating_mul(60);
    let value = serde_json::to_string(&session).expect("a session serialises");
    app.store
        .swap_record(
            KIND,
            &hash_token(&token),
            None,
            Some(value),
            now + lifetime,
            now,
        )
        .await?;
    Ok(set_cookie(app, SESSION_COOKIE, &token, None))
}

/// Ends this session (sign-out) and answers the cookie that clears it.
pub async fn end(app: &App, person: &SignedIn, now: u64) -> Result<HeaderValue, StoreError> {
    if let Some(record) = app.store.record(KIND, &person.session_key, now).await? {
        app.store
            .swap_record(
                KIND,
                &person.session_key,
                Some(record.revision),
                None,
                0,
                now,
            )
            .await?;
    }
    Ok(set_cookie(app, SESSION_COOKIE, "", Some(0)))
}
