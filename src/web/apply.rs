//! The public application: an organisation applies for Secure eMail without an account. The
//! directory gets what its rules need (`org apply`, state `applied`, the Organisation
//! Administrator's address in `admins`); the postal address and the administrator's name and
//! telephone are kept beside it as the application's details ([`super::applications`]).
//!
//! The organisation id is made from the name (`Hartley Law LLP` → `hartley-law-llp`, then
//! `hartley-law-llp-2`, … when taken), so the applicant is not asked to invent one.

use super::applications::{self, Details};
use super::session::{CsrfForm, Visitor};
use super::{App, Chrome, WebError, counted, render};
use crate::address::{Domain, normalize_address};
use crate::clock::now_unix;
use crate::directory::AdminError;
use crate::directory::model::{ClientCertificate, ConnectionType, Organisation};
use crate::directory::org::Application;
use crate::directory::rules::{
    MAX_FIELD_CHARS, check_address, check_text, checked_fingerprint, checked_mail_server,
    is_mail_domain,
};
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tracing::warn;

pub fn routes() -> Router<App> {
    Router::new().route("/apply", get(apply_page).post(apply))
}

/// What the applicant typed, as typed: the form is shown again with it after a refusal.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ApplyForm {
    pub name: String,
    pub address1: String,
    pub address2: String,
    pub town: String,
    pub postcode: String,
    pub domain: String,
    /// `server` or `mailbox`.
    pub connection: String,
    pub mail_server: String,
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    pub contact_name: String,
    pub contact_email: String,
    pub contact_telephone: String,
}

/// One thing wrong with the form: the field's id (empty: the form as a whole) and why.
#[derive(Clone, Debug)]
pub struct Problem {
    pub field: &'static str,
    pub text: String,
}

#[derive(Template)]
#[template(path = "web/apply.html")]
struct ApplyPage {
    chrome: Chrome,
    form: ApplyForm,
    problems: Vec<Problem>,
    secure_suffix: String,
}

impl ApplyPage {
    /// The problem with `field`, shown beside it.
    fn problem(&self, field: &str) -> Option<&str> {
        self.problems
            .iter()
            .find(|p| p.field == field)
            .map(|p| p.text.as_str())
    }
}

#[derive(Template)]
#[template(path = "web/apply_done.html")]
struct DonePage {
    chrome: Chrome,
    org: Organisation,
    contact_email: String,
    mailbox: bool,
    /// Where the organisation's users' secure addresses will be.
    secure_domain: String,
}

async fn apply_page(State(app): State<App>, visitor: Visitor) -> Response {
    render(&ApplyPage {
        chrome: Chrome::of(&visitor),
        form: ApplyForm {
            connection: "server".into(),
            ..ApplyForm::default()
        },
        problems: Vec::new(),
        secure_suffix: app.secure_suffix().to_string(),
    })
}

/// How many ids are tried for one name (`smith`, `smith-2`, …) before the applicant is asked
/// to choose another name.
const ID_ATTEMPTS: usize = 20;

async fn apply(
    State(app): State<App>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<ApplyForm>,
) -> Result<Response, WebError> {
    let again = |form: ApplyForm, problems: Vec<Problem>| {
        let mut page = render(&ApplyPage {
            chrome: Chrome::of(&visitor),
            form,
            problems,
            secure_suffix: app.secure_suffix().to_string(),
        });
        *page.status_mut() = StatusCode::BAD_REQUEST;
        page
    };
    let checked = match check(&form, app.secure_suffix()) {
        Ok(checked) => checked,
        Err(problems) => return Ok(again(form, problems)),
    };
    let now = now_unix();
    let store = app.store.as_ref();
    let slug = applications::slug(&checked.name);
    for attempt in 0..ID_ATTEMPTS {
        let id = applications::candidate(&slug, attempt);
        if store.org(&id).await?.is_some() {
            continue;
        }
        let details = checked.details(&id, now);
        // The details first: the id is then reserved against another application of the
        // same name in flight, and the directory's refusal takes them away again.
        if !applications::swap(store, None, &details, now).await? {
            continue;
        }
        match app
            .admin(&visitor)
            .org_apply(checked.application(&id))
            .await
        {
            Ok(org) => {
                counted("org apply");
                return Ok(render(&DonePage {
                    chrome: Chrome::of(&visitor),
                    secure_domain: secure_domain(&org, app.secure_suffix()),
                    mailbox: org.connection == ConnectionType::Mailbox,
                    contact_email: checked.contact_email.clone(),
                    org,
                }));
            }
            Err(e) => {
                forget_details(&app, &id, now).await;
                match e {
                    // Taken by an application made on the command line meanwhile.
                    AdminError::Refused(_) if store.org(&id).await?.is_some() => continue,
                    AdminError::Refused(text) => {
                        let problem = Problem { field: "", text };
                        return Ok(again(form, vec![problem]));
                    }
                    other => return Err(other.into()),
                }
            }
        }
    }
    let problem = Problem {
        field: "name",
        text: "Many organisations have a name like this one: please give your organisation's full name.".into(),
    };
    Ok(again(form, vec![problem]))
}

/// Removes the details of an application the directory refused (a leftover only reserves an
/// id: the queue lists the directory's organisations).
async fn forget_details(app: &App, id: &str, now: u64) {
    let store = app.store.as_ref();
    let removed = match applications::get(store, id, now).await {
        Ok(Some((_, revision))) => applications::remove(store, id, revision, now).await,
        Ok(None) => Ok(true),
        Err(e) => Err(e),
    };
    if let Err(e) = removed {
        warn!(org = id, error = %e, "website: the details of a refused application were left behind");
    }
}

/// The domain of the organisation's users' secure addresses.
fn secure_domain(org: &Organisation, secure_suffix: &str) -> String {
    crate::directory::rules::allowed_domains(org, secure_suffix)
        .first()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// An application that passed the form's checks.
#[derive(Debug)]
struct Checked {
    name: String,
    address_lines: Vec<String>,
    town: String,
    postcode: String,
    email_domain: String,
    /// The domain the directory gets: the organisation's own (server), or the hosted one
    /// under the secure suffix (mailbox).
    directory_domain: String,
    connection: ConnectionType,
    mail_server: Option<String>,
    certificate: Option<ClientCertificate>,
    contact_name: String,
    contact_email: String,
    contact_telephone: String,
}

impl Checked {
    fn application(&self, id: &str) -> Application {
        Application {
            id: id.to_string(),
            name: self.name.clone(),
            domains: vec![self.directory_domain.clone()],
            connection: self.connection,
            admins: vec![self.contact_email.clone()],
            client_certificate: self.certificate.clone(),
            mail_server: self.mail_server.clone(),
        }
    }

    fn details(&self, id: &str, now: u64) -> Details {
        Details {
            org: id.to_string(),
            address_lines: self.address_lines.clone(),
            town: self.town.clone(),
            postcode: self.postcode.clone(),
            email_domain: self.email_domain.clone(),
            contact_name: self.contact_name.clone(),
            contact_email: self.contact_email.clone(),
            contact_telephone: self.contact_telephone.clone(),
            submitted: now,
            refusal: None,
        }
    }
}

/// The problems found so far, in the order of the page's fields.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: &'static str, text: impl Into<String>) {
        self.0.push(Problem {
            field,
            text: text.into(),
        });
    }

    /// A typed field, trimmed: required or not, bounded, no control characters.
    fn text(&mut self, field: &'static str, label: &str, value: &str, required: bool) -> String {
        let value = value.trim();
        if value.is_empty() {
            if required {
                self.add(field, format!("Enter {label}."));
            }
        } else if let Some(why) = check_text(value, MAX_FIELD_CHARS) {
            self.add(field, format!("{} {why}.", capitalised(label)));
        }
        value.to_string()
    }
}

/// Checks every field, answering every problem at once (the directory's rules check again).
fn check(form: &ApplyForm, secure_suffix: &str) -> Result<Checked, Vec<Problem>> {
    let mut problems = Problems::default();
    let name = problems.text("name", "the organisation's name", &form.name, true);
    let address1 = problems.text(
        "address1",
        "the first line of the address",
        &form.address1,
        true,
    );
    let address2 = problems.text(
        "address2",
        "the second line of the address",
        &form.address2,
        false,
    );
    let town = problems.text("town", "the town or city", &form.town, true);
    let postcode = problems
        .text("postcode", "the postcode", &form.postcode, true)
        .to_ascii_uppercase();
    if !postcode.is_empty() && !is_postcode(&postcode) {
        problems.add("postcode", "Enter a postcode such as LS1 4AP.");
    }
    let email_domain = checked_domain(&mut problems, &form.domain);
    let suffix = Domain::new(secure_suffix);
    let under_suffix = Domain::new(&email_domain)
        .zip(suffix.as_ref())
        .is_some_and(|(domain, suffix)| domain.is_within(suffix));
    let connection = match form.connection.as_str() {
        "server" => Some(ConnectionType::Server),
        "mailbox" => Some(ConnectionType::Mailbox),
        _ => {
            problems.add("connection", "Choose how your organisation will connect.");
            None
        }
    };
    // A mailbox organisation's server fields are left as typed and not used: without
    // JavaScript they stay on the page whichever connection is chosen.
    let (mail_server, certificate) = if connection == Some(ConnectionType::Server) {
        if under_suffix {
            problems.add(
                "domain",
                format!(
                    "A server connection keeps your organisation's own domain: enter it without .{secure_suffix}."
                ),
            );
        }
        check_server(&mut problems, form)
    } else {
        (None, None)
    };
    let contact_name = problems.text(
        "contact_name",
        "the Organisation Administrator's name",
        &form.contact_name,
        true,
    );
    let contact_email = normalize_address(&form.contact_email);
    if let Err(why) = check_address(&contact_email) {
        problems.add(
            "contact_email",
            format!("The Organisation Administrator's e-mail address {why}."),
        );
    }
    let contact_telephone = problems.text(
        "contact_telephone",
        "the Organisation Administrator's telephone number",
        &form.contact_telephone,
        true,
    );
    if !contact_telephone.is_empty() && !is_telephone(&contact_telephone) {
        problems.add(
            "contact_telephone",
            "Enter a telephone number such as 0113 496 0000 or +44 113 496 0000.",
        );
    }
    let Some(connection) = connection.filter(|_| problems.0.is_empty()) else {
        return Err(problems.0);
    };
    // A mailbox organisation's addresses are hosted under the secure suffix: its domain
    // with the suffix added, so the domain it uses today stays its claim in the directory.
    let directory_domain = match (connection, &suffix) {
        (ConnectionType::Mailbox, Some(suffix)) if !under_suffix => Domain::new(&email_domain)
            .map_or_else(
                || email_domain.clone(),
                |domain| domain.under(suffix).to_string(),
            ),
        _ => email_domain.clone(),
    };
    Ok(Checked {
        name,
        address_lines: [address1, address2]
            .into_iter()
            .filter(|line| !line.is_empty())
            .collect(),
        town,
        postcode,
        email_domain,
        directory_domain,
        connection,
        mail_server,
        certificate,
        contact_name,
        contact_email,
        contact_telephone,
    })
}

/// The e-mail domain as typed (`@Firm.co.uk.` is `firm.co.uk`).
fn checked_domain(problems: &mut Problems, typed: &str) -> String {
    let domain = typed
        .trim()
        .trim_start_matches('@')
        .trim_matches('.')
        .to_ascii_lowercase();
    if domain.is_empty() {
        problems.add(
            "domain",
            "Enter the domain of your organisation's e-mail addresses.",
        );
    } else if !is_mail_domain(&domain) {
        problems.add(
            "domain",
            format!(
                "{:?} is not a mail domain: enter the part after the @, such as firm.co.uk.",
                domain.chars().take(80).collect::<String>()
            ),
        );
    }
    domain
}

/// A server connection's mail server (optional) and client certificate (required).
fn check_server(
    problems: &mut Problems,
    form: &ApplyForm,
) -> (Option<String>, Option<ClientCertificate>) {
    let mut mail_server = None;
    if !form.mail_server.trim().is_empty() {
        match checked_mail_server(&form.mail_server) {
            Ok(server) => mail_server = Some(server),
            Err(_) => problems.add(
                "mail_server",
                "Enter the mail server as a host name, [host] or [host]:port, such as [mx.firm.co.uk]:25.",
            ),
        }
    }
    let fingerprint = if form.fingerprint.trim().is_empty() {
        problems.add(
            "fingerprint",
            "Enter the SHA-256 fingerprint of your mail server's TLS client certificate.",
        );
        None
    } else {
        checked_fingerprint(form.fingerprint.trim())
            .map_err(|_| {
                problems.add(
                    "fingerprint",
                    "The fingerprint is 64 hexadecimal digits (colons allowed), as `openssl x509 -noout -fingerprint -sha256` prints it.",
                );
            })
            .ok()
    };
    let subject = problems.text("subject", "the certificate's subject", &form.subject, true);
    let issuer = problems.text("issuer", "the certificate's issuer", &form.issuer, true);
    let certificate = fingerprint.map(|fingerprint| ClientCertificate {
        fingerprint,
        subject,
        issuer,
    });
    (mail_server, certificate)
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A UK postcode's shape, loosely (`LS1 4AP`, `SW1A 1AA`, `BFPO 123`): letters, digits and
/// spaces, 5 to 8 characters.
fn is_postcode(postcode: &str) -> bool {
    (5..=8).contains(&postcode.len())
        && postcode
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && postcode.chars().any(|c| c.is_ascii_digit())
}

/// A telephone number: digits with spaces, hyphens, brackets and a leading `+`, 7 to 15
/// digits (E.164's most).
fn is_telephone(number: &str) -> bool {
    let digits = number.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&digits)
        && number
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || " -()".contains(c) || (c == '+' && i == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_form() -> ApplyForm {
        ApplyForm {
            name: "Hartley Law LLP".into(),
            address1: "1 Park Row".into(),
            town: "Leeds".into(),
            postcode: "ls1 5ab".into(),
            domain: "@HartleyLaw.co.uk".into(),
            connection: "server".into(),
            mail_server: "[mx.hartleylaw.co.uk]:25".into(),
            fingerprint: "AB:".repeat(31) + "AB",
            subject: "CN=mail.hartleylaw.co.uk".into(),
            issuer: "CN=CJSM Client CA".into(),
            contact_name: "Ann Hartley".into(),
            contact_email: "It@HartleyLaw.co.uk".into(),
            contact_telephone: "+44 113 496 0000".into(),
            ..ApplyForm::default()
        }
    }

    #[test]
    fn a_server_application_is_normalised() {
        let checked = check(&server_form(), "cjsm.net").unwrap();
        assert_eq!(checked.directory_domain, "hartleylaw.co.uk");
        assert_eq!(checked.postcode, "LS1 5AB");
        assert_eq!(checked.contact_email, "it@hartleylaw.co.uk");
        assert_eq!(checked.address_lines, vec!["1 Park Row".to_string()]);
        assert_eq!(checked.certificate.unwrap().fingerprint, "ab".repeat(32));
    }

    #[test]
    fn a_mailbox_organisation_is_hosted_under_the_suffix() {
        let form = ApplyForm {
            connection: "mailbox".into(),
            domain: "smithchambers.co.uk".into(),
            // Left on the page, not used.
            fingerprint: "nonsense".into(),
            ..server_form()
        };
        let checked = check(&form, "cjsm.net").unwrap();
        assert_eq!(checked.directory_domain, "smithchambers.co.uk.cjsm.net");
        assert_eq!(checked.email_domain, "smithchambers.co.uk");
        assert!(checked.certificate.is_none() && checked.mail_server.is_none());
        let hosted = ApplyForm {
            domain: "smithchambers.cjsm.net".into(),
            ..form
        };
        assert_eq!(
            check(&hosted, "cjsm.net").unwrap().directory_domain,
            "smithchambers.cjsm.net"
        );
    }

    #[test]
    fn every_problem_is_answered_at_once() {
        let form = ApplyForm {
            name: " ".into(),
            postcode: "not a postcode!".into(),
            domain: "firm.co.uk.cjsm.net".into(),
            mail_server: "mx firm".into(),
            fingerprint: "12:34".into(),
            subject: String::new(),
            contact_email: "nobody".into(),
            contact_telephone: "call me".into(),
            ..server_form()
        };
        let problems = check(&form, "cjsm.net").unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "name",
                "postcode",
                "domain",
                "mail_server",
                "fingerprint",
                "subject",
                "contact_email",
                "contact_telephone",
            ]
        );
        let none = ApplyForm::default();
        let problems = check(&none, "cjsm.net").unwrap_err();
        assert!(problems.iter().any(|p| p.field == "connection"));
    }

    #[test]
    fn postcodes_and_telephones() {
        for good in ["LS1 4AP", "SW1A 1AA", "BFPO 123"] {
            assert!(is_postcode(good), "{good}");
        }
        for bad in ["LS", "LS1-4AP", "ABCDE"] {
            assert!(!is_postcode(bad), "{bad}");
        }
        for good in ["0113 496 0000", "+44 (0)113 496-0000"] {
            assert!(is_telephone(good), "{good}");
        }
        for bad in ["123", "0113 496 0000 ext 4", "44+ 113 496 0000"] {
            assert!(!is_telephone(bad), "{bad}");
        }
    }
}
