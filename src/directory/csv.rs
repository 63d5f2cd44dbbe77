//! Bulk import of users from CSV: parsing and validation (no I/O), then the load itself.
//!
//! [`parse`] checks the file on its own (header, row count, every field of every row) and
//! [`check_against`] checks the rows against the directory's organisations. Both report every
//! problem they find, by physical line of the file, so an administrator can fix the whole file
//! in one go; the caller loads nothing unless both come back clean.

use super::export::restore_formula;
use super::model::{Organisation, User, UserState};
use super::rules::{
    MAX_FIELD_CHARS, address_in_org, check_address, check_text, outside_org_message, shown,
};
use super::{ATTEMPTS, Admin, AdminError, READS_IN_FLIGHT, refused};
use crate::clock::now_unix;
use futures_util::{StreamExt as _, TryStreamExt as _};
use std::collections::HashMap;
use std::fmt;

/// The most rows one bulk load takes.
pub const MAX_IMPORT_ROWS: usize = 500;

/// The header line the file must start with (and that `export --format csv` writes).
pub const IMPORT_HEADER: [&str; 6] = [
    "secure_address",
    "first_name",
    "last_name",
    "organisation",
    "town",
    "business_type",
];

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// One valid data row of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRow {
    /// The physical line of the file the row starts on (the header is line 1).
    pub line: usize,
    /// The secure address, trimmed and lower-cased.
    pub address: String,
    pub first_name: String,
    pub last_name: String,
    /// An organisation's id or name, as written in the file.
    pub organisation: String,
    pub town: String,
    pub business_type: String,
}

/// A problem with one field of one row (`field` is a column name, or `row` for the row as a
/// whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, field {}: {}",
            self.line, self.field, self.reason
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("{rows} rows: a bulk load takes at most {limit}")]
    TooManyRows { rows: usize, limit: usize },
    #[error("{}", header_message(found))]
    Header { found: String },
    #[error("{}", rows_message(.0))]
    Rows(Vec<RowError>),
    #[error("line {line}: not a readable CSV file: {message}")]
    Csv { line: usize, message: String },
}

fn header_message(found: &str) -> String {
    let expected = IMPORT_HEADER.join(",");
    if found.is_empty() {
        format!("the file is empty: its first line must be the header `{expected}`")
    } else {
        format!("the first line must be the header `{expected}`, found `{found}`")
    }
}

fn rows_message(errors: &[RowError]) -> String {
    let mut message = match errors.len() {
        1 => "1 error:".to_string(),
        n => format!("{n} errors:"),
    };
    for error in errors {
        message.push('\n');
        message.push_str(&error.to_string());
    }
    message
}

/// Parses and validates a bulk-load file: the header must be [`IMPORT_HEADER`], there may be at
/// most [`MAX_IMPORT_ROWS`] data rows, and every row must be valid. Blank lines are ignored; a
/// UTF-8 byte order mark and CRLF line ends are accepted. All-or-nothing: any problem and no
/// row is returned, with every problem of every row in [`ImportError::Rows`].
pub fn parse(bytes: &[u8]) -> Result<Vec<ImportRow>, ImportError> {
    let (rows, errors) = parse_rows(bytes)?;
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(ImportError::Rows(errors))
    }
}

/// As [`parse`], but returns the rows that are valid alongside the errors of the others, so
/// that the directory checks can report the valid rows' problems in the same run.
pub fn parse_rows(bytes: &[u8]) -> Result<(Vec<ImportRow>, Vec<RowError>), ImportError> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);

    // First pass: count, so that an oversized file is refused before any validation.
    let mut records = 0usize;
    for_each_record(bytes, |_, record| {
        if !is_blank(record) {
            records += 1;
        }
        Ok(())
    })?;
    let rows = records.saturating_sub(1);
    if rows > MAX_IMPORT_ROWS {
        return Err(ImportError::TooManyRows {
            rows,
            limit: MAX_IMPORT_ROWS,
        });
    }

    // Second pass: the header, then every row.
    let mut header_seen = false;
    let mut parsed = Vec::with_capacity(rows);
    let mut errors = Vec::new();
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    for_each_record(bytes, |line, record| {
        if is_blank(record) {
            return Ok(());
        }
        if !header_seen {
            header_seen = true;
            return check_header(record);
        }
        let mut fields = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => fields.push(text),
                // One more problem of this row; the report goes on to the others.
                Err(_) => {
                    let name = IMPORT_HEADER
                        .get(i)
                        .map_or_else(|| format!("{}", i + 1), |name| name.to_string());
                    errors.push(RowError {
                        line,
                        field: name,
                        reason: "is not UTF-8 text (save the file as \"CSV UTF-8\")".into(),
                    });
                    return Ok(());
                }
            }
        }
        if let Some(row) = check_row(line, &fields, &mut errors, &mut first_line_of) {
            parsed.push(row);
        }
        Ok(())
    })?;
    if !header_seen {
        return Err(ImportError::Header {
            found: String::new(),
        });
    }
    Ok((parsed, errors))
}

/// Reads every CSV record with the physical line it starts on. The csv reader streams: the
/// work is linear in the size of the input whatever its shape.
fn for_each_record(
    bytes: &[u8],
    mut each: impl FnMut(usize, &csv::ByteRecord) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(bytes);
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = lines.line_of(record.position().map_or(0, |p| p.byte()));
                each(line, &record)?;
            }
            Err(error) => {
                let line = lines.line_of(error.position().map_or(0, |p| p.byte()));
                return Err(ImportError::Csv {
                    line,
                    message: error.to_string(),
                });
            }
        }
    }
}

/// Physical line numbers from byte offsets. The csv crate's own line count goes wrong with
/// CRLF and blank lines, and the byte offset it gives for a record may point at the line ends
/// before it: the record starts at the first byte from there that is not CR or LF (a record
/// cannot start with one).
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the record reported at `offset`; offsets must not go backwards.
    fn line_of(&mut self, offset: u64) -> usize {
        let mut start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .clamp(self.offset, self.bytes.len());
        while matches!(self.bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        self.line += self.bytes[self.offset..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = start;
        self.line
    }
}

/// A line with nothing but separators and white space (as spreadsheets write for empty rows).
fn is_blank(record: &csv::ByteRecord) -> bool {
    record
        .iter()
        .all(|field| field.iter().all(|b| b.is_ascii_whitespace()))
}

fn check_header(record: &csv::ByteRecord) -> Result<(), ImportError> {
    let fields: Vec<String> = record
        .iter()
        .map(|field| String::from_utf8_lossy(field).trim().to_string())
        .collect();
    let matches = fields.len() == IMPORT_HEADER.len()
        && fields
            .iter()
            .zip(IMPORT_HEADER)
            .all(|(found, expected)| found.eq_ignore_ascii_case(expected));
    if matches {
        Ok(())
    } else {
        Err(ImportError::Header {
            found: shown(&fields.join(",")),
        })
    }
}

fn check_row(
    line: usize,
    fields: &[&str],
    errors: &mut Vec<RowError>,
    first_line_of: &mut HashMap<String, usize>,
) -> Option<ImportRow> {
    if fields.len() != IMPORT_HEADER.len() {
        errors.push(RowError {
            line,
            field: "row".to_string(),
            reason: format!(
                "has {} fields, expected {} ({})",
                fields.len(),
                IMPORT_HEADER.len(),
                IMPORT_HEADER.join(",")
            ),
        });
        return None;
    }
    let errors_before = errors.len();
    let mut push = |field: &str, reason: String| {
        errors.push(RowError {
            line,
            field: field.to_string(),
            reason,
        })
    };

    let address = restore_formula(fields[0].trim()).to_ascii_lowercase();
    match check_address(&address) {
        Err(reason) => push(IMPORT_HEADER[0], reason),
        Ok(()) => {
            if let Some(first) = first_line_of.get(&address) {
                push(
                    IMPORT_HEADER[0],
                    format!("`{address}` is already on line {first}"),
                );
            } else {
                first_line_of.insert(address.clone(), line);
            }
        }
    }

    let mut values: [String; 5] = Default::default();
    for (i, value) in values.iter_mut().enumerate() {
        let name = IMPORT_HEADER[i + 1];
        // The export's guard against spreadsheet formulas (`'=…`) comes off again.
        let text = restore_formula(fields[i + 1].trim());
        // first_name, last_name and organisation are required; town and business_type not.
        let required = i < 3;
        let problem = if required && text.is_empty() {
            Some("is empty; it is required".to_string())
        } else {
            check_text(text, MAX_FIELD_CHARS)
        };
        match problem {
            Some(reason) => push(name, reason),
            None => *value = text.to_string(),
        }
    }

    if errors.len() > errors_before {
        return None;
    }
    let [first_name, last_name, organisation, town, business_type] = values;
    Some(ImportRow {
        line,
        address,
        first_name,
        last_name,
        organisation,
        town,
        business_type,
    })
}

/// Checks the rows against the directory: the `organisation` column must name an organisation
/// (by id, or by name ignoring case) and the address must be under that organisation's domains.
/// Returns every problem; empty means the rows may be loaded.
pub fn check_against(
    rows: &[ImportRow],
    orgs: &[Organisation],
    secure_suffix: &str,
) -> Vec<RowError> {
    let mut errors = Vec::new();
    for row in rows {
        match find_org(&row.organisation, orgs) {
            Err(reason) => errors.push(RowError {
                line: row.line,
                field: IMPORT_HEADER[3].to_string(),
                reason,
            }),
            Ok(org) => {
                if !address_in_org(&row.address, org, secure_suffix) {
                    errors.push(RowError {
                        line: row.line,
                        field: IMPORT_HEADER[0].to_string(),
                        reason: outside_org_message(&row.address, org, secure_suffix),
                    });
                }
            }
        }
    }
    errors
}

pub fn find_org<'a>(wanted: &str, orgs: &'a [Organisation]) -> Result<&'a Organisation, String> {
    if let Some(org) = orgs.iter().find(|org| org.id == wanted) {
        return Ok(org);
    }
    let wanted_lower = wanted.to_lowercase();
    let mut by_name = orgs
        .iter()
        .filter(|org| org.name.trim().to_lowercase() == wanted_lower);
    match (by_name.next(), by_name.next()) {
        (Some(org), None) => Ok(org),
        (Some(_), Some(_)) => Err(format!(
            "`{}` is the name of more than one organisation; use the organisation's id",
            shown(wanted)
        )),
        (None, _) => Err(format!(
            "no organisation has the id or name `{}`",
            shown(wanted)
        )),
    }
}

/// What a bulk import did.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// A bulk-load file larger than this is refused before it is parsed (500 rows of at most
/// six 200-character fields fit well within it).
const MAX_IMPORT_BYTES: usize = 4 * 1024 * 1024;

impl Admin<'_> {
    /// `user import`: at most 500 rows, validated whole first, then written all together
    /// (compare-and-swap: a concurrent change makes it read and check again). Re-running the
    /// same file changes nothing; a row never moves a user to another organisation.
    pub async fn user_import(&self, csv: &[u8]) -> Result<ImportSummary, AdminError> {
        if csv.len() > MAX_IMPORT_BYTES {
            return refused(format!(
                "the file is {} bytes; a bulk load of at most {} rows is at most {MAX_IMPORT_BYTES} bytes",
                csv.len(),
                MAX_IMPORT_ROWS
            ));
        }
        let (rows, parse_errors) = parse_rows(csv)?;
        for _ in 0..ATTEMPTS {
            let orgs = self.orgs_named(&rows).await?;
            let mut errors = parse_errors.clone();
            errors.extend(check_against(&rows, &orgs, self.secure_suffix));
            let existing = self.users_named(&rows).await?;
            let now = now_unix();
            let mut summary = ImportSummary::default();
            let mut changes = Vec::new();
            for row in &rows {
                // check_against reported rows whose organisation is unknown or ambiguous.
                let Ok(org) = find_org(&row.organisation, &orgs) else {
                    continue;
                };
                let wanted = User {
                    address: row.address.clone(),
                    org: org.id.clone(),
                    first_name: row.first_name.clone(),
                    last_name: row.last_name.clone(),
                    town: row.town.clone(),
                    business_type: row.business_type.clone(),
                    state: UserState::Active,
                    created: now,
                    updated: now,
                    smime_certificate: None,
                    revision: 0,
                };
                match existing.get(&row.address) {
                    None => {
                        summary.added += 1;
                        changes.push((None, wanted));
                    }
                    Some(user) if user.org != wanted.org => errors.push(RowError {
                        line: row.line,
                        field: "organisation".into(),
                        reason: format!(
                            "{} belongs to organisation {}; a bulk load does not move users",
                            user.address, user.org
                        ),
                    }),
                    Some(user) if same_details(user, &wanted) => summary.unchanged += 1,
                    Some(user) => {
                        summary.updated += 1;
                        changes.push((
                            Some(user.revision),
                            User {
                                state: user.state,
                                created: user.created,
                                smime_certificate: user.smime_certificate.clone(),
                                ..wanted
                            },
                        ));
                    }
                }
            }
            if !errors.is_empty() {
                errors.sort_by_key(|e| e.line);
                errors.dedup_by(|a, b| {
                    a.line == b.line && a.field == b.field && a.reason == b.reason
                });
                return Err(ImportError::Rows(errors).into());
            }
            let written: Vec<(String, bool)> = changes
                .iter()
                .map(|(expected, u)| (u.address.clone(), expected.is_none()))
                .collect();
            if !self.store.swap_users(changes).await? {
                continue;
            }
            let entries = written
                .into_iter()
                .map(|(address, added)| {
                    let action = if added {
                        "user import add"
                    } else {
                        "user import update"
                    };
                    (action, address, "bulk load".to_string())
                })
                .collect();
            self.audit_batch(entries).await?;
            return Ok(summary);
        }
        refused("the directory keeps changing under the import; try again")
    }
}

impl Admin<'_> {
    /// The organisations the rows name, by id or by name, as [`find_org`] needs them: each
    /// name read by id first; only when some name is no organisation's id are the
    /// organisations read whole, once, keeping those whose name it is (no index answers a
    /// name).
    async fn orgs_named(&self, rows: &[ImportRow]) -> Result<Vec<Organisation>, AdminError> {
        let mut names: Vec<&str> = rows.iter().map(|r| r.organisation.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        // The reads made first and streamed as they are, not by a closure in the stream: the
        // future stays provably `Send` (the website awaits it in a handler).
        let reads: Vec<_> = names.iter().map(|name| self.store.org(name)).collect();
        let by_id: Vec<Option<Organisation>> = futures_util::stream::iter(reads)
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        let unresolved: Vec<String> = names
            .iter()
            .zip(&by_id)
            .filter(|(_, org)| org.is_none())
            .map(|(name, _)| name.to_lowercase())
            .collect();
        let mut orgs: Vec<Organisation> = by_id.into_iter().flatten().collect();
        if !unresolved.is_empty() {
            orgs.extend(
                self.store
                    .orgs()
                    .await?
                    .into_iter()
                    .filter(|o| unresolved.contains(&o.name.trim().to_lowercase())),
            );
        }
        orgs.sort_by(|a, b| a.id.cmp(&b.id));
        orgs.dedup_by(|a, b| a.id == b.id);
        Ok(orgs)
    }

    /// The users the rows name that exist already, by address: read one by one (a few at a
    /// time), not the whole directory.
    async fn users_named(&self, rows: &[ImportRow]) -> Result<HashMap<String, User>, AdminError> {
        let reads: Vec<_> = rows
            .iter()
            .map(|row| self.store.user(&row.address))
            .collect();
        let found: Vec<Option<User>> = futures_util::stream::iter(reads)
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .flatten()
            .map(|user| (user.address.clone(), user))
            .collect())
    }
}

fn same_details(a: &User, b: &User) -> bool {
    a.org == b.org
        && a.first_name == b.first_name
        && a.last_name == b.last_name
        && a.town == b.town
        && a.business_type == b.business_type
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::model::ConnectionType;

    const HEADER: &str = "secure_address,first_name,last_name,organisation,town,business_type\n";

    fn file(rows: &[&str]) -> Vec<u8> {
        let mut text = HEADER.to_string();
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        text.into_bytes()
    }

    fn n_rows(n: usize) -> Vec<u8> {
        let mut text = HEADER.to_string();
        for i in 0..n {
            text.push_str(&format!(
                "user{i}@firm.co.uk.cjsm.net,First{i},Last{i},smith-chambers,Leeds,Solicitors\n"
            ));
        }
        text.into_bytes()
    }

    fn row_errors(bytes: &[u8]) -> Vec<(usize, String)> {
        match parse(bytes) {
            Err(ImportError::Rows(errors)) => {
                errors.into_iter().map(|e| (e.line, e.field)).collect()
            }
            other => panic!("expected row errors, got {other:?}"),
        }
    }

    use crate::directory::model::test_org as org;

    #[test]
    fn good_file() {
        let rows = parse(&file(&[
            "  Alice@Firm.co.uk.CJSM.net , Alice , Smith ,smith-chambers,Leeds,Solicitors",
            "bob@firm.co.uk.cjsm.net,Bob,Jones,Smith Chambers,,",
        ]))
        .unwrap();
        assert_eq!(
            rows,
            vec![
                ImportRow {
                    line: 2,
                    address: "alice@firm.co.uk.cjsm.net".into(),
                    first_name: "Alice".into(),
                    last_name: "Smith".into(),
                    organisation: "smith-chambers".into(),
                    town: "Leeds".into(),
                    business_type: "Solicitors".into(),
                },
                ImportRow {
                    line: 3,
                    address: "bob@firm.co.uk.cjsm.net".into(),
                    first_name: "Bob".into(),
                    last_name: "Jones".into(),
                    organisation: "Smith Chambers".into(),
                    town: String::new(),
                    business_type: String::new(),
                },
            ]
        );
    }

    #[test]
    fn row_limits() {
        assert!(parse(HEADER.as_bytes()).unwrap().is_empty());
        assert_eq!(parse(&n_rows(1)).unwrap().len(), 1);
        let rows = parse(&n_rows(500)).unwrap();
        assert_eq!(rows.len(), 500);
        assert_eq!(rows[499].line, 501);

        let refused = parse(&n_rows(501)).unwrap_err();
        assert_eq!(
            refused,
            ImportError::TooManyRows {
                rows: 501,
                limit: 500
            }
        );
        assert_eq!(
            refused.to_string(),
            "501 rows: a bulk load takes at most 500"
        );

        // Counted before validation: 501 bad rows still say the limit.
        let mut bad = HEADER.to_string();
        for _ in 0..501 {
            bad.push_str("not an address,,,,,\n");
        }
        assert!(matches!(
            parse(bad.as_bytes()),
            Err(ImportError::TooManyRows { rows: 501, .. })
        ));
        // Blank lines are not rows.
        let mut spaced = String::from_utf8(n_rows(500)).unwrap();
        spaced.push_str("\n\n,,,,,\n  \n");
        assert_eq!(parse(spaced.as_bytes()).unwrap().len(), 500);
    }

    #[test]
    fn header() {
        let cases: &[(&str, bool)] = &[
            (HEADER, true),
            (
                " SECURE_ADDRESS , First_Name,last_name,Organisation,TOWN,business_type\r\n",
                true,
            ),
            (
                "\n\nsecure_address,first_name,last_name,organisation,town,business_type\n",
                true,
            ),
            (
                "secure_address,first_name,last_name,organisation,town\n",
                false,
            ),
            (
                "secure_address,first_name,last_name,organisation,town,business_type,\n",
                false,
            ),
            (
                "address,first_name,last_name,organisation,town,business_type\n",
                false,
            ),
            (
                "alice@firm.co.uk.cjsm.net,Alice,Smith,smith-chambers,Leeds,Solicitors\n",
                false,
            ),
            ("", false),
            ("\n\n", false),
        ];
        for (text, ok) in cases {
            let result = parse(text.as_bytes());
            assert_eq!(result.is_ok(), *ok, "{text:?}: {result:?}");
            if let Err(error) = result {
                assert!(matches!(error, ImportError::Header { .. }), "{text:?}");
                assert!(
                    error.to_string().contains(
                        "secure_address,first_name,last_name,organisation,town,business_type"
                    ),
                    "{error}"
                );
            }
        }
        assert_eq!(
            parse(b"").unwrap_err().to_string(),
            "the file is empty: its first line must be the header \
             `secure_address,first_name,last_name,organisation,town,business_type`"
        );
        assert_eq!(
            parse(b"email,name\n").unwrap_err().to_string(),
            "the first line must be the header \
             `secure_address,first_name,last_name,organisation,town,business_type`, \
             found `email,name`"
        );
    }

    #[test]
    fn bad_rows() {
        let long = "x".repeat(201);
        let just_fits = "x".repeat(200);
        let cases: Vec<(String, &str)> = vec![
            ("a@firm.cjsm.net,A,B,org,town".into(), "row"),
            ("a@firm.cjsm.net,A,B,org,town,type,extra".into(), "row"),
            ("a@firm.cjsm.net".into(), "row"),
            (",A,B,org,,".into(), "secure_address"),
            ("a@firm.cjsm.net,,B,org,,".into(), "first_name"),
            ("a@firm.cjsm.net,A,  ,org,,".into(), "last_name"),
            ("a@firm.cjsm.net,A,B,,,".into(), "organisation"),
            ("alice,A,B,org,,".into(), "secure_address"),
            ("a@b@firm.cjsm.net,A,B,org,,".into(), "secure_address"),
            ("@firm.cjsm.net,A,B,org,,".into(), "secure_address"),
            ("a@,A,B,org,,".into(), "secure_address"),
            ("a b@firm.cjsm.net,A,B,org,,".into(), "secure_address"),
            ("a@firm,A,B,org,,".into(), "secure_address"),
            ("a@firm..cjsm.net,A,B,org,,".into(), "secure_address"),
            ("a@-firm.cjsm.net,A,B,org,,".into(), "secure_address"),
            (".a@firm.cjsm.net,A,B,org,,".into(), "secure_address"),
            ("a<b>@firm.cjsm.net,A,B,org,,".into(), "secure_address"),
            ("\"a\tb@firm.cjsm.net\",A,B,org,,".into(), "secure_address"),
            (
                format!("{}@firm.cjsm.net,A,B,org,,", "a".repeat(65)),
                "secure_address",
            ),
            (
                format!("a@{}.cjsm.net,A,B,org,,", vec!["b".repeat(60); 5].join(".")),
                "secure_address",
            ),
            (format!("a@firm.cjsm.net,{long},B,org,,"), "first_name"),
            (format!("a@firm.cjsm.net,A,B,org,{long},"), "town"),
            (format!("a@firm.cjsm.net,A,B,org,,{long}"), "business_type"),
            ("a@firm.cjsm.net,A\u{7},B,org,,".into(), "first_name"),
            ("a@firm.cjsm.net,A,B\u{85}C,org,,".into(), "last_name"),
            ("a@firm.cjsm.net,A,B,org,\"Le\neds\",".into(), "town"),
        ];
        for (row, field) in &cases {
            let errors = row_errors(&file(&[row]));
            assert_eq!(errors, vec![(2, field.to_string())], "{row:?}");
        }
        let fine = [
            format!("a@firm.cjsm.net,{just_fits},B,org,,"),
            "o'brien+tag@firm.co.uk.cjsm.net,A,B,org,,".into(),
            "\"a@firm.cjsm.net\",\"Smith, Jr\",\"O\"\"Brien\",org,,".into(),
            "a@firm.cjsm.net,Siân,Ó Briain,org,Llanfair\u{AD}pwll,".into(),
        ];
        for row in &fine {
            assert!(parse(&file(&[row])).is_ok(), "{row:?}");
        }
    }

    #[test]
    fn duplicates_name_the_earlier_line() {
        let bytes = file(&[
            "a@firm.cjsm.net,A,B,org,,",
            "b@firm.cjsm.net,A,B,org,,",
            "A@FIRM.cjsm.net ,A,B,org,,",
            "a@firm.cjsm.net,A,B,org,,",
        ]);
        let Err(ImportError::Rows(errors)) = parse(&bytes) else {
            panic!("expected duplicates")
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "line 4, field secure_address: `a@firm.cjsm.net` is already on line 2",
                "line 5, field secure_address: `a@firm.cjsm.net` is already on line 2",
            ]
        );
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let bytes = file(&[
            "ok1@firm.cjsm.net,A,B,org,,",
            "bad,,,org,,",
            "",
            "ok2@firm.cjsm.net,A,B,org,,",
            "short,row",
            "ok1@firm.cjsm.net,A,B,,,",
        ]);
        let error = parse(&bytes).unwrap_err();
        let ImportError::Rows(errors) = &error else {
            panic!("{error:?}")
        };
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            found,
            [
                (3, "secure_address"),
                (3, "first_name"),
                (3, "last_name"),
                (6, "row"),
                (7, "secure_address"),
                (7, "organisation"),
            ]
        );
        let text = error.to_string();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("6 errors:"));
        assert_eq!(
            lines.next(),
            Some("line 3, field secure_address: `bad` has no @")
        );
        assert_eq!(lines.count(), 5);
    }

    #[test]
    fn quoted_fields_keep_line_numbers() {
        let text = concat!(
            "secure_address,first_name,last_name,organisation,town,business_type\r\n",
            "a@firm.cjsm.net,\"Smith, Alice\",\"B\",\"Smith Chambers, Leeds\",,\r\n",
            "b@firm.cjsm.net,A,B,org,\"Two\r\nline\r\ntown\",\r\n",
            "c@firm.cjsm.net,A,B,org,,\r\n",
            "\r\n",
            "bad,A,B,org,,\r\n",
        );
        let errors = row_errors(text.as_bytes());
        assert_eq!(errors, [(3, "town".into()), (8, "secure_address".into())]);

        let good = concat!(
            "secure_address,first_name,last_name,organisation,town,business_type\n",
            "a@firm.cjsm.net,\"Smith, Alice\",\"O\"\"Brien\",\"Smith Chambers, Leeds\",,\n",
            "\n",
            "c@firm.cjsm.net,A,B,org,,",
        );
        let rows = parse(good.as_bytes()).unwrap();
        assert_eq!(rows[0].first_name, "Smith, Alice");
        assert_eq!(rows[0].last_name, "O\"Brien");
        assert_eq!(rows[0].organisation, "Smith Chambers, Leeds");
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn bom_and_crlf() {
        let mut bytes = UTF8_BOM.to_vec();
        bytes.extend_from_slice(
            b"secure_address,first_name,last_name,organisation,town,business_type\r\n\
              a@firm.cjsm.net,A,B,org,,\r\n\r\nb@firm.cjsm.net,A,B,org,Leeds,\r\n",
        );
        let rows = parse(&bytes).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line, rows[1].line), (2, 4));
        assert_eq!(rows[1].town, "Leeds");
        assert_eq!(rows[0].business_type, "");

        let text = "\r\n\r\nsecure_address,first_name,last_name,organisation,town,business_type\r\n\
                    \r\n,,,,,\r\nbad,A,B,org,,\r\n";
        assert_eq!(row_errors(text.as_bytes()), [(6, "secure_address".into())]);
    }

    #[test]
    fn not_utf8() {
        let mut bytes = file(&["a@firm.cjsm.net,A,B,org,,"]);
        bytes.extend_from_slice(b"b@firm.cjsm.net,Ren\xe9,B,org,,\n");
        // One row's problem, not the end of the report.
        let error = parse(&bytes).unwrap_err();
        let ImportError::Rows(rows) = &error else {
            panic!("{error:?}");
        };
        assert_eq!((rows[0].line, rows[0].field.as_str()), (3, "first_name"));
        assert!(error.to_string().contains("UTF-8"), "{error}");
    }

    #[test]
    fn hostile_sizes_stay_bounded() {
        let huge = "x".repeat(10 * 1024 * 1024);
        let bytes = file(&[&format!("a@firm.cjsm.net,{huge},B,org,,")]);
        let error = parse(&bytes).unwrap_err();
        assert!(error.to_string().len() < 200, "{error}");
        assert_eq!(row_errors(&bytes), [(2, "first_name".into())]);

        let bytes = file(&[&format!("{huge}@firm.cjsm.net,A,B,org,,")]);
        assert!(parse(&bytes).unwrap_err().to_string().len() < 200);

        let header = format!("{huge}\n");
        assert!(parse(header.as_bytes()).unwrap_err().to_string().len() < 300);

        let commas = format!("a{}", ",".repeat(1_000_000));
        assert_eq!(row_errors(&file(&[&commas])), [(2, "row".into())]);

        let open_quote = format!("a@firm.cjsm.net,\"{huge}");
        assert_eq!(row_errors(&file(&[&open_quote])), [(2, "row".into())]);
    }

    #[test]
    fn check_against_orgs() {
        let orgs = [
            org(
                "smith-llp",
                "Smith LLP",
                &["firm.co.uk"],
                ConnectionType::Server,
            ),
            org(
                "smith-chambers",
                "Smith Chambers",
                &["smithchambers.cjsm.net"],
                ConnectionType::Mailbox,
            ),
            org(
                "twin-a",
                "Twin",
                &["twin-a.cjsm.net"],
                ConnectionType::Mailbox,
            ),
            org(
                "twin-b",
                "twin",
                &["twin-b.cjsm.net"],
                ConnectionType::Mailbox,
            ),
        ];
        let rows = parse(&file(&[
            "a@firm.co.uk.cjsm.net,A,B,smith-llp,,",
            "b@firm.co.uk.cjsm.net,A,B,SMITH llp,,",
            "c@smithchambers.cjsm.net,A,B,Smith Chambers,,",
            "d@firm.co.uk.cjsm.net,A,B,smith-chambers,,",
            "e@firm.co.uk.cjsm.net,A,B,no-such-org,,",
            "f@twin-a.cjsm.net,A,B,TWIN,,",
            "g@twin-a.cjsm.net,A,B,twin-a,,",
            "h@firm.co.uk,A,B,smith-llp,,",
        ]))
        .unwrap();
        let errors = check_against(&rows, &orgs, "cjsm.net");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "line 5, field secure_address: `d@firm.co.uk.cjsm.net` is not under \
                 organisation `smith-chambers`'s domains; allowed: @smithchambers.cjsm.net",
                "line 6, field organisation: no organisation has the id or name `no-such-org`",
                "line 7, field organisation: `TWIN` is the name of more than one \
                 organisation; use the organisation's id",
                "line 9, field secure_address: `h@firm.co.uk` is not under organisation \
                 `smith-llp`'s domains; allowed: @firm.co.uk.cjsm.net",
            ]
        );
        assert!(check_against(&rows[..3], &orgs, "cjsm.net").is_empty());
    }
}
