//! The bulk upload: a CSV file of the organisation's users in the format of
//! `cjsm-milter directory user import` (at most 500 rows, all or nothing, every problem named
//! by its line), each row naming this organisation. Each new user gets a sign-in account,
//! and the one-time passwords are shown once.

use super::{create_account, user_path};
use crate::directory::AdminError;
use crate::directory::csv::{
    IMPORT_HEADER, ImportError, ImportRow, MAX_IMPORT_ROWS, RowError, find_org, parse_rows,
};
use crate::directory::export::neutralise_formula;
use crate::directory::model::Organisation;
use crate::directory::rules::{address_in_org, outside_org_message, shown};
use crate::web::session::OrgAdmin;
use crate::web::{App, Chrome, WebError, counted, render};
use askama::Template;
use axum::extract::State;
use axum::extract::multipart::{Field, Multipart};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{StreamExt as _, TryStreamExt as _};

/// The largest file taken: 500 rows of six fields fit many times over.
pub const FILE_LIMIT: usize = 1024 * 1024;
/// The largest request read to its end (so that a larger file is answered with a page rather
/// than a connection cut mid-upload); past it the request is refused as it arrives.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

const TOO_LARGE: &str = "The file is larger than 1 MB, so nothing was imported. A bulk upload \
     takes at most 500 users; split a larger list into several files.";

/// One new user's one-time password, shown once.
pub struct Issued {
    pub address: String,
    pub href: String,
    pub name: String,
    /// `None`: the address already had a sign-in account.
    pub one_time_password: Option<String>,
}

#[derive(Template)]
#[template(path = "web/org_upload.html")]
struct UploadPage {
    chrome: Chrome,
    /// Why nothing was imported, as a whole (the file, its size, its rows).
    problem: Option<String>,
    /// Every problem of every line.
    errors: Vec<String>,
    added: usize,
    updated: usize,
    unchanged: usize,
    issued: Vec<Issued>,
    max_rows: usize,
}

impl UploadPage {
    fn new(chrome: Chrome) -> UploadPage {
        UploadPage {
            chrome,
            problem: None,
            errors: Vec::new(),
            added: 0,
            updated: 0,
            unchanged: 0,
            issued: Vec::new(),
            max_rows: MAX_IMPORT_ROWS,
        }
    }

    fn refused(self, status: StatusCode) -> Response {
        let mut page = render(&self);
        *page.status_mut() = status;
        page
    }
}

pub async fn upload(
    State(app): State<App>,
    admin: OrgAdmin,
    mut multipart: Multipart,
) -> Result<Response, WebError> {
    let page = UploadPage::new(Chrome::of(&admin.visitor));
    // The token comes first and is checked before the file is read at all.
    let token = match multipart.next_field().await {
        Ok(Some(field)) if field.name() == Some("csrf") => read_text(field).await,
        _ => None,
    };
    admin.visitor.check_csrf(token.as_deref().unwrap_or(""))?;
    let file = loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => break read_file(field).await,
            Ok(Some(_)) => continue,
            Ok(None) => {
                return Ok(UploadPage {
                    problem: Some("Choose a CSV file to upload.".into()),
                    ..page
                }
                .refused(StatusCode::BAD_REQUEST));
            }
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => break Upload::TooLarge,
            Err(e) => {
                return Err(WebError::BadRequest(format!(
                    "The upload could not be read: {}",
                    e.body_text()
                )));
            }
        }
    };
    let bytes = match file {
        Upload::File(bytes) => bytes,
        Upload::TooLarge => {
            return Ok(UploadPage {
                problem: Some(TOO_LARGE.into()),
                ..page
            }
            .refused(StatusCode::PAYLOAD_TOO_LARGE));
        }
        Upload::Broken(why) => {
            return Err(WebError::BadRequest(format!(
                "The upload could not be read: {why}"
            )));
        }
    };
    let org = app.store.org(&admin.org).await?.ok_or_else(|| {
        WebError::Forbidden("Your organisation is no longer in the directory.".into())
    })?;
    let rows = match own_rows(&bytes, &org, app.secure_suffix()) {
        Ok(rows) => rows,
        Err(refusal) => return Ok(refusal.shown(page)),
    };
    let rewritten = rewrite(&rows, &org.id);
    let existed = existing(&app, &rows).await?;
    let summary = match app.admin(&admin.visitor).user_import(&rewritten).await {
        Ok(summary) => summary,
        Err(AdminError::Import(e)) => return Ok(Refusal::Import(e).shown(page)),
        Err(AdminError::Refused(why)) => return Ok(Refusal::Whole(why).shown(page)),
        Err(AdminError::Store(e)) => return Err(e.into()),
    };
    counted("user import");
    // Each account's one-time password is hashed on the blocking pool, as many at once as
    // there are cores: 500 new users take seconds, not 500 hashes one after another.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let new_rows: Vec<_> = rows
        .iter()
        .zip(existed)
        .filter(|(_, existed)| !existed)
        .map(|(row, _)| row)
        .collect();
    // The futures are made first, then run: a closure inside the stream would keep the
    // handler's future from being Send.
    let creations: Vec<_> = new_rows
        .iter()
        .map(|row| create_account(&app, &admin.visitor, &org.id, &row.address))
        .collect();
    let passwords: Vec<Option<String>> = futures_util::stream::iter(creations)
        .buffered(cores)
        .try_collect()
        .await?;
    let issued: Vec<Issued> = new_rows
        .into_iter()
        .zip(passwords)
        .map(|(row, one_time_password)| Issued {
            href: user_path(&row.address),
            address: row.address.clone(),
            name: format!("{} {}", row.first_name, row.last_name),
            one_time_password,
        })
        .collect();
    Ok(render(&UploadPage {
        added: summary.added,
        updated: summary.updated,
        unchanged: summary.unchanged,
        issued,
        ..page
    }))
}

enum Upload {
    File(Vec<u8>),
    TooLarge,
    Broken(String),
}

/// A small text field (the token): at most 256 bytes of it.
async fn read_text(mut field: Field<'_>) -> Option<String> {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = field.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > 256 {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The file, chunk by chunk: kept up to [`FILE_LIMIT`]; past it the rest is read and dropped
/// (up to the route's body limit) so that the refusal reaches the browser.
async fn read_file(mut field: Field<'_>) -> Upload {
    let mut bytes = Vec::new();
    let mut too_large = false;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if too_large {
                    continue;
                }
                if bytes.len() + chunk.len() > FILE_LIMIT {
                    too_large = true;
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(&chunk);
                }
            }
            Ok(None) if too_large => return Upload::TooLarge,
            Ok(None) => return Upload::File(bytes),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Upload::TooLarge,
            Err(e) => return Upload::Broken(e.body_text()),
        }
    }
}

/// Why nothing was imported.
enum Refusal {
    Import(ImportError),
    Whole(String),
}

impl Refusal {
    fn shown(self, page: UploadPage) -> Response {
        match self {
            Refusal::Import(ImportError::Rows(errors)) => UploadPage {
                problem: Some(format!(
                    "Nothing was imported: the file has {}. Correct {} and upload it again.",
                    match errors.len() {
                        1 => "1 problem".to_string(),
                        n => format!("{n} problems"),
                    },
                    if errors.len() == 1 { "it" } else { "them" }
                )),
                errors: errors.iter().map(ToString::to_string).collect(),
                ..page
            },
            Refusal::Import(e) => UploadPage {
                problem: Some(format!("Nothing was imported: {e}.")),
                ..page
            },
            Refusal::Whole(why) => UploadPage {
                problem: Some(format!("Nothing was imported: {why}.")),
                ..page
            },
        }
        .refused(StatusCode::BAD_REQUEST)
    }
}

/// The file's rows if each is valid, names `org` (by its id or its name) and has an address in
/// its domains; every problem of every line otherwise (the import itself then checks only
/// what the directory holds: an address that is another organisation's user).
fn own_rows(
    bytes: &[u8],
    org: &Organisation,
    secure_suffix: &str,
) -> Result<Vec<ImportRow>, Refusal> {
    let (rows, mut errors) = parse_rows(bytes).map_err(Refusal::Import)?;
    let own = std::slice::from_ref(org);
    for row in &rows {
        if find_org(&row.organisation, own).is_err() {
            errors.push(RowError {
                line: row.line,
                field: IMPORT_HEADER[3].to_string(),
                reason: format!(
                    "names `{}`: this upload takes only your own organisation's users ({} or `{}`)",
                    shown(&row.organisation),
                    org.id,
                    org.name
                ),
            });
        } else if !address_in_org(&row.address, org, secure_suffix) {
            // Reported with the other problems now, rather than by the import after they
            // are corrected.
            errors.push(RowError {
                line: row.line,
                field: IMPORT_HEADER[0].to_string(),
                reason: outside_org_message(&row.address, org, secure_suffix),
            });
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(Refusal::Import(ImportError::Rows(errors)))
    }
}

/// The rows again as a file for the import, each naming the organisation by its id (a name in
/// the file could be another organisation's id by the time the import reads it) and on the
/// line it had, so that the import's own errors name the lines of the administrator's file.
/// Fields hold no line breaks (the parse refuses them), so each row is one line.
fn rewrite(rows: &[ImportRow], org_id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = 1;
    write_record(&mut out, &IMPORT_HEADER.map(String::from));
    for row in rows {
        while line + 1 < row.line {
            out.push(b'\n');
            line += 1;
        }
        write_record(
            &mut out,
            &[
                row.address.clone(),
                row.first_name.clone(),
                row.last_name.clone(),
                org_id.to_string(),
                row.town.clone(),
                row.business_type.clone(),
            ],
        );
        line += 1;
    }
    out
}

fn write_record(out: &mut Vec<u8>, fields: &[String; 6]) {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer
        .write_record(fields.iter().map(|f| neutralise_formula(f).into_owned()))
        .expect("writing CSV to memory cannot fail");
    out.extend(
        writer
            .into_inner()
            .expect("flushing CSV to memory cannot fail"),
    );
}

/// Which of the rows' addresses are users already (read a few at a time): the others are the
/// new users who get accounts.
async fn existing(app: &App, rows: &[ImportRow]) -> Result<Vec<bool>, WebError> {
    let reads: Vec<_> = rows
        .iter()
        .map(|row| app.store.user(&row.address))
        .collect();
    let found: Vec<Option<_>> = futures_util::stream::iter(reads)
        .buffered(crate::directory::READS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(found.iter().map(Option::is_some).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::csv::parse;

    #[test]
    fn a_rewritten_file_keeps_each_row_on_its_line_and_names_the_org_by_id() {
        let file = b"\n\nsecure_address,first_name,last_name,organisation,town,business_type\n\
            a@x.cjsm.net,Ann,\"Lee, QC\",Alpha LLP,,\n\n\
            b@x.cjsm.net,'=Bob,Ray,alpha,Leeds,Police\n";
        let rows = parse(file).unwrap();
        let again = parse(&rewrite(&rows, "alpha")).unwrap();
        assert_eq!(again.len(), 2);
        for (before, after) in rows.iter().zip(&again) {
            assert_eq!(before.line, after.line);
            assert_eq!(after.organisation, "alpha");
            assert_eq!(
                (
                    &before.address,
                    &before.first_name,
                    &before.last_name,
                    &before.town
                ),
                (
                    &after.address,
                    &after.first_name,
                    &after.last_name,
                    &after.town
                )
            );
        }
        assert_eq!(again[1].first_name, "=Bob");
    }
}
