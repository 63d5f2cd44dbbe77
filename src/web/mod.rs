//! The Secure eMail website (`cjsm-milter web`): its own process beside the milter, serving
//! server-rendered pages (askama templates, escaped by default; no JavaScript) over HTTPS, or
//! plain HTTP on loopback behind a reverse proxy. It reads and writes the same directory store
//! and audit trail as the command line, through the same rules ([`crate::directory::Admin`]).
//!
//! Who may do what: [`session`] resolves the visitor of each request and gives the handlers
//! role extractors ([`session::Operator`], [`session::OrgAdmin`], [`session::Member`]); every
//! form is a [`session::CsrfForm`]. The pages by role: [`pages`] (signing in and out, the
//! password), [`apply`] (public), [`operator`], [`orgadmin`] and [`member`].

pub mod accounts;
pub mod applications;
pub mod apply;
pub mod member;
pub mod nominations;
pub mod operator;
pub mod orgadmin;
pub mod pages;
pub mod password;
mod serve;
pub mod session;
pub mod throttle;

pub use serve::serve;

use crate::clock::now_unix_ms;
use crate::config::{Config, WebConfig};
use crate::directory::Admin;
use crate::directory::model::{AdminEvent, AuditEvent};
use crate::store::{Directory, StoreError};
use askama::Template;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use session::Visitor;
use std::sync::Arc;
use tracing::{error, info};

/// What every handler shares.
#[derive(Clone)]
pub struct App(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Directory>,
    pub config: Config,
    pub web: WebConfig,
    pub throttle: throttle::Throttle,
}

impl std::ops::Deref for App {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl App {
    pub fn new(store: Arc<dyn Directory>, config: Config) -> App {
        let web = config.web.clone();
        App(Arc::new(Shared {
            store,
            config,
            web,
            throttle: throttle::Throttle::default(),
        }))
    }

    pub fn secure_cookies(&self) -> bool {
        self.web.https() || self.web.behind_https_proxy
    }

    pub fn secure_suffix(&self) -> &str {
        &self.config.routing.secure_suffix
    }

    /// The directory's rules, audited as done by this visitor from their address.
    pub fn admin<'a>(&'a self, visitor: &Visitor) -> Admin<'a> {
        Admin::new(
            self.store.as_ref(),
            self.secure_suffix(),
            Some(visitor.actor()),
        )
        .from_client(visitor.client.to_string())
    }

    /// Records a change made on the website that the directory's rules do not record
    /// themselves (a sign-in, a password change, an account created): the audit trail, the
    /// actions metric and one log line.
    pub async fn audit(
        &self,
        visitor: &Visitor,
        action: &str,
        target: &str,
        reason: impl Into<String>,
    ) -> Result<(), StoreError> {
        self.audit_as(&visitor.actor(), visitor, action, target, reason)
            .await
    }

    /// [`App::audit`] naming `actor` (a sign-in: the person is not signed in until it is done).
    pub async fn audit_as(
        &self,
        actor: &str,
        visitor: &Visitor,
        action: &str,
        target: &str,
        reason: impl Into<String>,
    ) -> Result<(), StoreError> {
        let reason = reason.into();
        info!(action, target, actor, client = %visitor.client, reason = %reason, "website");
        self.store
            .append_audit(AuditEvent::Admin(AdminEvent {
                time_ms: now_unix_ms(),
                action: action.to_string(),
                reason,
                actor: Some(actor.to_string()),
                client: Some(visitor.client.to_string()),
                target: Some(target.to_string()),
            }))
            .await?;
        counted(action);
        Ok(())
    }
}

/// Counts one action in the website's metrics (the directory's rules audit their own; the
/// handler calling them counts the action here).
pub fn counted(action: &str) {
    crate::metrics::metrics()
        .web_actions
        .with_label_values(&[action])
        .inc();
}

/// The whole site: every page, behind the visitor layer.
pub fn router(app: App) -> Router {
    Router::new()
        .merge(pages::routes())
        .merge(apply::routes())
        .merge(operator::routes())
        .merge(orgadmin::routes())
        .merge(member::routes())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            session::visitor_layer,
        ))
        .with_state(app)
}

/// What goes wrong in a handler, as the visitor sees it.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::directory::AdminError> for WebError {
    fn from(e: crate::directory::AdminError) -> WebError {
        match e {
            crate::directory::AdminError::Refused(text) => WebError::BadRequest(text),
            crate::directory::AdminError::Store(e) => WebError::Store(e),
            crate::directory::AdminError::Import(e) => WebError::BadRequest(e.to_string()),
        }
    }
}

/// The page every refusal and failure is shown on.
#[derive(Template)]
#[template(path = "web/message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub title: String,
    pub text: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            WebError::Forbidden(text) => (StatusCode::FORBIDDEN, "Not allowed", text.clone()),
            WebError::NotFound(text) => (StatusCode::NOT_FOUND, "Not found", text.clone()),
            WebError::BadRequest(text) => (StatusCode::BAD_REQUEST, "Not done", text.clone()),
            WebError::TooLarge(text) => (StatusCode::PAYLOAD_TOO_LARGE, "Too large", text.clone()),
            WebError::Store(e) => {
                error!(error = %e, "website: the directory store failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Please try again",
                    "The directory could not be reached, so nothing was changed. Please try again in a minute."
                        .to_string(),
                )
            }
            WebError::Internal(e) => {
                error!(error = %e, "website: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Please try again",
                    "Something went wrong on our side, so nothing was changed.".to_string(),
                )
            }
        };
        let page = MessagePage {
            chrome: Chrome::plain(),
            title: title.to_string(),
            text,
        };
        (status, render(&page)).into_response()
    }
}

/// What the layout shows around every page: who is signed in (and so which links), and the
/// token the sign-out form carries.
#[derive(Clone, Debug, Default)]
pub struct Chrome {
    pub login: Option<String>,
    pub role: Option<accounts::Role>,
    pub csrf: String,
}

impl Chrome {
    pub fn of(visitor: &Visitor) -> Chrome {
        Chrome {
            login: visitor.signed_in.as_ref().map(|s| s.account.login.clone()),
            role: visitor.signed_in.as_ref().map(|s| s.account.role),
            csrf: visitor.csrf.clone(),
        }
    }

    /// For error pages, which show no one's links.
    pub fn plain() -> Chrome {
        Chrome::default()
    }

    pub fn is_operator(&self) -> bool {
        self.role == Some(accounts::Role::Operator)
    }

    pub fn is_org_admin(&self) -> bool {
        self.role == Some(accounts::Role::OrgAdmin)
    }

    pub fn is_user(&self) -> bool {
        self.role == Some(accounts::Role::User)
    }
}

/// A template rendered as the page's HTML; a template that fails is an internal error.
pub fn render<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            error!(error = %e, "website: a template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
