//! Export of the directory's active users: CSV for a spreadsheet (re-importable with
//! `user import`) and LDIF (RFC 2849, `inetOrgPerson`) for an organisation's own global
//! address list. [`write_csv`] and [`write_ldif`] stream them from the store a page of users at
//! a time (memory bounded by the page and the organisations, not the directory);
//! [`to_csv`] and [`to_ldif`] are the same output from users and organisations in hand.

use super::csv::IMPORT_HEADER;
use super::model::{OrgState, Organisation, User, UserState};
use super::{PAGE, learn_orgs};
use crate::store::{DirectoryRead, StoreError};
use std::collections::HashMap;
use std::io::Write;

/// An export that could not be read or written whole.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}

/// The longest an LDIF line may be, continuation lines' leading space included.
const LDIF_LINE_WIDTH: usize = 76;

/// The active users, by address.
/// The users the directory lists: active users of active organisations.
fn active_users<'u>(users: &'u [User], orgs: &[Organisation]) -> Vec<&'u User> {
    let mut active: Vec<&User> = users
        .iter()
        .filter(|user| user.state == UserState::Active)
        .filter(|user| {
            orgs.iter()
                .any(|o| o.id == user.org && o.state == OrgState::Active)
        })
        .collect();
    active.sort_by(|a, b| a.address.cmp(&b.address));
    active
}

/// What a spreadsheet reads as the start of a formula.
pub const FORMULA_SIGNS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) gets a leading
/// `'`: users write their own names, and the file goes into other organisations' spreadsheets.
/// So does a cell that begins with `'` itself, so that [`restore_formula`] (which `user import`
/// applies) gives back exactly what was exported.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_SIGNS) || cell.starts_with('\'') {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The inverse of [`neutralise_formula`]: the guard `'` comes off a cell that needed one.
pub fn restore_formula(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_SIGNS) || rest.starts_with('\'') => rest,
        _ => cell,
    }
}

/// CSV with the bulk-import header ([`IMPORT_HEADER`]), one row per active user ordered by
/// address, the organisation column holding the organisation's id: the file can be loaded
/// back with `user import`. Fields are quoted as RFC 4180 needs; lines end in CRLF.
///
/// Cells that a spreadsheet would take for a formula are neutralised ([`neutralise_formula`]).
pub fn to_csv(users: &[User], orgs: &[Organisation]) -> String {
    let mut writer = csv_writer(Vec::new());
    writer
        .write_record(IMPORT_HEADER)
        .expect("writing CSV to memory cannot fail");
    for u in active_users(users, orgs) {
        write_csv_row(&mut writer, u).expect("writing CSV to memory cannot fail");
    }
    let bytes = writer
        .into_inner()
        .expect("flushing CSV to memory cannot fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8")
}

fn csv_writer<W: Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out)
}

fn write_csv_row<W: Write>(writer: &mut csv::Writer<W>, u: &User) -> csv::Result<()> {
    let row = [
        &u.address,
        &u.first_name,
        &u.last_name,
        &u.org,
        &u.town,
        &u.business_type,
    ]
    .map(|cell| neutralise_formula(cell));
    writer.write_record(row.iter().map(|c| c.as_bytes()))
}

/// The CSV of [`to_csv`], streamed to `out` from the store a page of users at a time.
pub async fn write_csv(store: &dyn DirectoryRead, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut writer = csv_writer(out);
    writer.write_record(IMPORT_HEADER).map_err(csv_error)?;
    walk_active(store, |user, _| {
        write_csv_row(&mut writer, user).map_err(csv_error)
    })
    .await?;
    writer.flush()?;
    Ok(())
}

fn csv_error(e: csv::Error) -> ExportError {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => ExportError::Write(e),
        other => ExportError::Write(std::io::Error::other(format!("{other:?}"))),
    }
}

/// The LDIF of [`to_ldif`], streamed to `out` from the store a page of users at a time.
pub async fn write_ldif(
    store: &dyn DirectoryRead,
    base_dn: &str,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    out.write_all(b"version: 1\n")?;
    let mut entry = String::new();
    walk_active(store, |user, org_name| {
        entry.clear();
        push_ldif_entry(&mut entry, user, org_name, base_dn);
        out.write_all(entry.as_bytes())?;
        Ok(())
    })
    .await?;
    out.flush()?;
    Ok(())
}

/// Calls `each` with every active user of an active organisation, by address, and the
/// organisation's name: the users a page at a time, each organisation read once.
async fn walk_active(
    store: &dyn DirectoryRead,
    mut each: impl FnMut(&User, &str) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    // The name of each active organisation seen so far; `None` for one not active.
    let mut active: HashMap<String, Option<String>> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.users_page(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.address.clone());
        learn_orgs(store, &page, &mut active, |org| {
            org.filter(|o| o.state == OrgState::Active).map(|o| o.name)
        })
        .await?;
        for user in page.iter().filter(|u| u.state == UserState::Active) {
            if let Some(Some(name)) = active.get(&user.org) {
                each(user, name)?;
            }
        }
        if page.len() < PAGE {
            return Ok(());
        }
    }
}

/// LDIF (RFC 2849), one `inetOrgPerson` entry per active user ordered by address, named
/// `mail=<address>,<base_dn>`. Values that are not an LDIF SAFE-STRING (non-ASCII, a leading
/// space, colon or `<`, a trailing space, control characters) are written base64-encoded
/// after `::`; lines are folded at 76 columns.
pub fn to_ldif(users: &[User], orgs: &[Organisation], base_dn: &str) -> String {
    let mut out = String::from("version: 1\n");
    for user in active_users(users, orgs) {
        let org = orgs.iter().find(|org| org.id == user.org);
        let org_name = org.map_or(user.org.as_str(), |org| org.name.as_str());
        push_ldif_entry(&mut out, user, org_name, base_dn);
    }
    out
}

/// One user's entry, after a blank line.
fn push_ldif_entry(out: &mut String, user: &User, org_name: &str, base_dn: &str) {
    let local_part = user
        .address
        .rsplit_once('@')
        .map_or(user.address.as_str(), |(local, _)| local);
    let first = user.first_name.trim();
    let last = user.last_name.trim();
    let cn = match (first.is_empty(), last.is_empty()) {
        (false, false) => format!("{first} {last}"),
        (false, true) => first.to_string(),
        (true, false) => last.to_string(),
        (true, true) => local_part.to_string(),
    };
    let sn = if last.is_empty() { local_part } else { last };

    let mut dn = format!("mail={}", escape_dn_value(&user.address));
    let base_dn = base_dn.trim();
    if !base_dn.is_empty() {
        dn.push(',');
        dn.push_str(base_dn);
    }

    out.push('\n');
    push_attribute(out, "dn", &dn);
    for class in ["top", "person", "organizationalPerson", "inetOrgPerson"] {
        push_attribute(out, "objectClass", class);
    }
    push_attribute(out, "cn", &cn);
    push_attribute(out, "sn", sn);
    let optional = [
        ("givenName", first),
        ("mail", user.address.as_str()),
        ("o", org_name.trim()),
        ("l", user.town.trim()),
        ("businessCategory", user.business_type.trim()),
    ];
    for (name, value) in optional {
        if !value.is_empty() {
            push_attribute(out, name, value);
        }
    }
}

/// Appends `name: value` (or `name:: base64`) folded at [`LDIF_LINE_WIDTH`] columns.
fn push_attribute(out: &mut String, name: &str, value: &str) {
    let line = if is_safe_string(value) {
        format!("{name}: {value}")
    } else {
        format!("{name}:: {}", base64(value.as_bytes()))
    };
    push_folded(out, &line);
}

/// RFC 2849 SAFE-STRING, more strictly: printable ASCII only (control characters are allowed by
/// the RFC but base64 keeps them from being mangled), not starting with a space, `:` or `<`,
/// and not ending with a space (which the RFC says should be base64-encoded).
fn is_safe_string(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.iter().all(|&b| (0x20..0x7f).contains(&b))
        && !matches!(bytes.first(), Some(b' ' | b':' | b'<'))
        && bytes.last() != Some(&b' ')
}

/// Folds an (ASCII) line: the first piece is at most 76 characters, each continuation is a
/// space and at most 75 more.
fn push_folded(out: &mut String, line: &str) {
    let mut rest = line;
    let mut width = LDIF_LINE_WIDTH;
    let mut first = true;
    while !rest.is_empty() {
        let mut cut = rest.len().min(width);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if !first {
            out.push(' ');
        }
        out.push_str(&rest[..cut]);
        out.push('\n');
        rest = &rest[cut..];
        first = false;
        width = LDIF_LINE_WIDTH - 1;
    }
}

/// Escapes an attribute value for a DN's RDN (RFC 4514 section 2.4): `"+,;<>\` anywhere, `#`
/// or a space at the start, a space at the end, and control characters (as `\XX` hex).
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{byte:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding), as LDIF uses.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::csv::parse as parse_csv;
    use crate::directory::model::{ConnectionType, test_org};

    fn org(id: &str, name: &str) -> Organisation {
        test_org(id, name, &["firm.co.uk"], ConnectionType::Server)
    }

    fn user(address: &str, first: &str, last: &str, town: &str, business: &str) -> User {
        User {
            address: address.to_string(),
            org: "smith-llp".to_string(),
            first_name: first.to_string(),
            last_name: last.to_string(),
            town: town.to_string(),
            business_type: business.to_string(),
            state: UserState::Active,
            created: 1,
            updated: 1,
            smime_certificate: None,
            revision: 0,
        }
    }

    /// Unfolds LDIF and returns the entries as (attribute, decoded value) lists.
    fn read_ldif(text: &str) -> Vec<Vec<(String, String)>> {
        let mut lines: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(more) = line.strip_prefix(' ') {
                lines.last_mut().unwrap().push_str(more);
            } else {
                lines.push(line.to_string());
            }
        }
        let mut entries = Vec::new();
        let mut current = Vec::new();
        for line in lines {
            if line.is_empty() {
                if !current.is_empty() {
                    entries.push(std::mem::take(&mut current));
                }
                continue;
            }
            let (name, value) = if let Some((name, b64)) = line.split_once(":: ") {
                (name.to_string(), String::from_utf8(unbase64(b64)).unwrap())
            } else {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_string(), value.to_string())
            };
            if name != "version" {
                current.push((name, value));
            }
        }
        if !current.is_empty() {
            entries.push(current);
        }
        entries
    }

    fn unbase64(text: &str) -> Vec<u8> {
        let digits: Vec<u32> = text
            .bytes()
            .filter(|&b| b != b'=')
            .map(|b| match b {
                b'A'..=b'Z' => u32::from(b - b'A'),
                b'a'..=b'z' => u32::from(b - b'a') + 26,
                b'0'..=b'9' => u32::from(b - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                _ => panic!("not base64: {text}"),
            })
            .collect();
        let mut out = Vec::new();
        for chunk in digits.chunks(4) {
            let mut n = 0u32;
            for (i, d) in chunk.iter().enumerate() {
                n |= d << (18 - 6 * i);
            }
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }

    #[test]
    fn base64_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("Siân Ó Briain", "U2nDom4gw5MgQnJpYWlu"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
            assert_eq!(unbase64(encoded), plain.as_bytes());
        }
    }

    #[test]
    fn formulas_are_neutralised_and_load_back_unchanged() {
        let users = vec![
            user(
                "eve@firm.co.uk.cjsm.net",
                "=HYPERLINK(\"x\")",
                "-1",
                "+44",
                "@work",
            ),
            user(
                "liz@firm.co.uk.cjsm.net",
                "Liz",
                "O'Neil",
                "Leeds",
                "Police",
            ),
        ];
        let orgs = [org("smith-llp", "Smith LLP")];
        let csv = to_csv(&users, &orgs);
        assert!(
            csv.contains("\"'=HYPERLINK(\"\"x\"\")\",'-1,smith-llp,'+44,'@work"),
            "{csv}"
        );
        let rows = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(rows[0].first_name, "=HYPERLINK(\"x\")");
        assert_eq!(rows[0].last_name, "-1");
        assert_eq!(rows[0].town, "+44");
        assert_eq!(rows[0].business_type, "@work");
        assert_eq!(rows[1].last_name, "O'Neil");
    }

    #[test]
    fn users_of_inactive_organisations_are_not_listed() {
        let users = vec![user("a@firm.co.uk.cjsm.net", "A", "B", "", "")];
        let mut suspended = org("smith-llp", "Smith LLP");
        suspended.state = OrgState::Suspended;
        assert_eq!(to_csv(&users, &[suspended.clone()]).lines().count(), 1);
        assert!(!to_ldif(&users, &[suspended], "dc=x").contains("mail=a@"));
    }

    #[test]
    fn csv_round_trip() {
        let mut suspended = user("zed@firm.co.uk.cjsm.net", "Zed", "Z", "", "");
        suspended.state = UserState::Suspended;
        let mut deleted = user("del@firm.co.uk.cjsm.net", "Del", "D", "", "");
        deleted.state = UserState::Deleted;
        let users = vec![
            user(
                "carol@firm.co.uk.cjsm.net",
                "Carol \"CJ\"",
                "O'Brien, Jr",
                "Newcastle upon Tyne",
                "Barristers' chambers",
            ),
            suspended,
            user("alice@firm.co.uk.cjsm.net", "Siân", "Ó Briain", "", ""),
            deleted,
            user("bob@firm.co.uk.cjsm.net", "Bob", "Jones", "Leeds", "Police"),
        ];
        let csv = to_csv(&users, &[org("smith-llp", "Smith LLP")]);
        assert!(csv.starts_with(
            "secure_address,first_name,last_name,organisation,town,business_type\r\n"
        ));
        assert!(
            csv.contains(",\"Carol \"\"CJ\"\"\",\"O'Brien, Jr\","),
            "{csv}"
        );

        let rows = parse_csv(csv.as_bytes()).unwrap();
        let got: Vec<[&str; 6]> = rows
            .iter()
            .map(|r| {
                [
                    r.address.as_str(),
                    r.first_name.as_str(),
                    r.last_name.as_str(),
                    r.organisation.as_str(),
                    r.town.as_str(),
                    r.business_type.as_str(),
                ]
            })
            .collect();
        let want: Vec<[&str; 6]> = active_users(&users, &[org("smith-llp", "Smith LLP")])
            .into_iter()
            .map(|u| {
                [
                    u.address.as_str(),
                    u.first_name.as_str(),
                    u.last_name.as_str(),
                    u.org.as_str(),
                    u.town.as_str(),
                    u.business_type.as_str(),
                ]
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            got.iter().map(|r| r[0]).collect::<Vec<_>>(),
            [
                "alice@firm.co.uk.cjsm.net",
                "bob@firm.co.uk.cjsm.net",
                "carol@firm.co.uk.cjsm.net"
            ]
        );
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(
            to_csv(&[], &[]),
            "secure_address,first_name,last_name,organisation,town,business_type\r\n"
        );
    }

    #[test]
    fn ldif_entries() {
        let users = vec![
            user("bob@firm.co.uk.cjsm.net", "Bob", "Jones", "Leeds", "Police"),
            user("alice@firm.co.uk.cjsm.net", "Siân", "Ó Briain", "", ""),
            user("nolast@firm.co.uk.cjsm.net", "", "", "", ""),
        ];
        let ldif = to_ldif(
            &users,
            &[org("smith-llp", "Smith LLP")],
            "ou=people,dc=example,dc=org",
        );
        assert!(ldif.is_ascii());
        assert!(ldif.starts_with("version: 1\n\ndn: mail=alice@"), "{ldif}");
        assert!(ldif.contains("\ncn:: U2nDom4gw5MgQnJpYWlu\n"), "{ldif}");
        assert!(ldif.contains("\ngivenName:: U2nDom4=\n"), "{ldif}");
        assert!(ldif.contains("\n\ndn: mail=bob@"), "{ldif}");
        let entries = read_ldif(&ldif);
        assert_eq!(entries.len(), 3);
        let pairs = |entry: &Vec<(String, String)>| -> Vec<String> {
            entry.iter().map(|(k, v)| format!("{k}={v}")).collect()
        };
        assert_eq!(
            pairs(&entries[0]),
            [
                "dn=mail=alice@firm.co.uk.cjsm.net,ou=people,dc=example,dc=org",
                "objectClass=top",
                "objectClass=person",
                "objectClass=organizationalPerson",
                "objectClass=inetOrgPerson",
                "cn=Siân Ó Briain",
                "sn=Ó Briain",
                "givenName=Siân",
                "mail=alice@firm.co.uk.cjsm.net",
                "o=Smith LLP",
            ]
        );
        assert_eq!(
            pairs(&entries[1])[5..],
            [
                "cn=Bob Jones",
                "sn=Jones",
                "givenName=Bob",
                "mail=bob@firm.co.uk.cjsm.net",
                "o=Smith LLP",
                "l=Leeds",
                "businessCategory=Police",
            ]
        );
        assert_eq!(
            pairs(&entries[2])[5..],
            [
                "cn=nolast",
                "sn=nolast",
                "mail=nolast@firm.co.uk.cjsm.net",
                "o=Smith LLP"
            ]
        );
        // Only active users.
        let mut gone = users[0].clone();
        gone.state = UserState::Suspended;
        assert_eq!(to_ldif(&[gone], &[], "dc=x"), "version: 1\n");
    }

    #[test]
    fn ldif_safe_strings() {
        let cases = [
            ("plain value", true),
            ("", true),
            ("a:b<c", true),
            (" leading space", false),
            ("trailing space ", false),
            (":colon", false),
            ("<less", false),
            ("tab\there", false),
            ("line\nbreak", false),
            ("Siân", false),
            ("del\u{7f}", false),
        ];
        for (value, safe) in cases {
            assert_eq!(is_safe_string(value), safe, "{value:?}");
            let mut out = String::new();
            push_attribute(&mut out, "l", value);
            assert_eq!(out.starts_with("l:: "), !safe, "{out}");
            let entries = read_ldif(&format!("dn: x\n{out}"));
            if !value.is_empty() {
                assert_eq!(entries[0][1].1, value);
            }
        }
    }

    #[test]
    fn ldif_folds_long_values() {
        let long_town = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch ".repeat(4);
        let long_town = long_town.trim_end();
        let long_name = "Ŵ".repeat(100);
        let mut u = user(
            "alice@firm.co.uk.cjsm.net",
            &long_name,
            "Smith",
            long_town,
            "",
        );
        u.business_type = "x".repeat(75 - "businessCategory: ".len() + 1);
        let ldif = to_ldif(&[u], &[org("smith-llp", "Smith LLP")], "dc=example,dc=org");
        for line in ldif.lines() {
            assert!(line.len() <= 76, "{} > 76: {line}", line.len());
        }
        assert!(ldif.lines().any(|l| l.len() == 76));
        let lines: Vec<&str> = ldif.lines().collect();
        let l = lines.iter().position(|l| l.starts_with("l: ")).unwrap();
        assert_eq!(lines[l].len(), 76, "a folded plain value:\n{ldif}");
        assert!(
            lines[l + 1].starts_with(' '),
            "a folded plain value:\n{ldif}"
        );
        let entry = &read_ldif(&ldif)[0];
        let get = |name: &str| {
            entry
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("l"), long_town);
        assert_eq!(get("givenName"), long_name);
        assert_eq!(get("cn"), format!("{long_name} Smith"));
        assert_eq!(get("businessCategory").len(), 58);

        // Exactly 76 columns is not folded; 77 is.
        for (len, lines) in [(76, 1), (77, 2), (76 + 75, 2), (76 + 76, 3)] {
            let mut out = String::new();
            push_attribute(&mut out, "l", &"y".repeat(len - 3));
            assert_eq!(out.lines().count(), lines, "{len}: {out}");
            assert!(out.lines().skip(1).all(|l| l.starts_with(' ')));
        }
    }

    #[test]
    fn dn_escaping() {
        let cases = [
            ("alice@firm.cjsm.net", "alice@firm.cjsm.net"),
            ("a,b+c\"d\\e<f>g;h", "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h"),
            ("#hash", "\\#hash"),
            ("mid#hash", "mid#hash"),
            (" lead", "\\ lead"),
            ("trail ", "trail\\ "),
            (" ", "\\ "),
            ("in side", "in side"),
            ("nul\0", "nul\\00"),
            ("a=b", "a=b"),
            ("Siân", "Siân"),
        ];
        for (value, escaped) in cases {
            assert_eq!(escape_dn_value(value), escaped, "{value:?}");
        }
        let ldif = to_ldif(
            &[user("alice+tag@firm.co.uk.cjsm.net", "A", "B", "", "")],
            &[org("smith-llp", "Smith LLP")],
            "ou=people,dc=example,dc=org",
        );
        assert!(
            ldif.contains(
                "\ndn: mail=alice\\+tag@firm.co.uk.cjsm.net,ou=people,dc=example,dc=org\n"
            ),
            "{ldif}"
        );
        assert!(ldif.contains("\no: Smith LLP\n"), "{ldif}");
    }

    #[test]
    fn an_address_a_spreadsheet_would_run_is_refused_at_the_door() {
        for address in [
            "=cmd@firm.co.uk.cjsm.net",
            "+44@firm.co.uk.cjsm.net",
            "-x@firm.co.uk.cjsm.net",
        ] {
            assert!(
                crate::directory::rules::check_address(address).is_err(),
                "{address}"
            );
        }
        assert!(crate::directory::rules::check_address("o'neil@firm.co.uk.cjsm.net").is_ok());
    }

    /// Export then import is the identity for every value the directory accepts: generated
    /// values mixing the spreadsheet's formula signs, the guard itself, quotes, separators and
    /// non-ASCII letters, in every column.
    #[test]
    fn export_then_import_is_the_identity() {
        use crate::directory::rules::{check_address, checked_text};
        let pieces = [
            "=",
            "+",
            "-",
            "@",
            "'",
            "''",
            "\"",
            ",",
            ";",
            " ",
            "a",
            "Z",
            "9",
            "é",
            "O'Neil",
            "=HYPERLINK(\"x\")",
            "'=x",
            "''+1",
            "\\",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let text = |next: &mut dyn FnMut(usize) -> usize| {
            let len = 1 + next(4);
            (0..len)
                .map(|_| pieces[next(pieces.len())])
                .collect::<String>()
        };
        let mut users = Vec::new();
        let mut tried = 0;
        while users.len() < 500 {
            tried += 1;
            assert!(tried < 100_000, "the generator finds accepted values");
            let local: String = ["a", "o'neil", "x.y", "'q", "b-c", "d=e", "f+g"][next(7)].into();
            let address = format!("{local}{}@firm.co.uk.cjsm.net", users.len());
            let fields = [
                text(&mut next),
                text(&mut next),
                text(&mut next),
                text(&mut next),
            ];
            // Only what the directory accepts: the checks of `user add` and `user import`.
            let checked: Vec<String> = fields
                .iter()
                .filter_map(|f| checked_text("field", f).ok())
                .filter(|f| !f.is_empty())
                .collect();
            if check_address(&address).is_err() || checked.len() < 4 {
                continue;
            }
            users.push(user(
                &address,
                &checked[0],
                &checked[1],
                &checked[2],
                &checked[3],
            ));
        }
        let orgs = [org("smith-llp", "Smith LLP")];
        let rows = parse_csv(to_csv(&users, &orgs).as_bytes()).unwrap();
        assert_eq!(rows.len(), users.len());
        let mut sorted = users.clone();
        sorted.sort_by(|a, b| a.address.cmp(&b.address));
        for (row, user) in rows.iter().zip(&sorted) {
            let got = (
                &row.address,
                &row.first_name,
                &row.last_name,
                &row.organisation,
                &row.town,
                &row.business_type,
            );
            let want = (
                &user.address,
                &user.first_name,
                &user.last_name,
                &user.org,
                &user.town,
                &user.business_type,
            );
            assert_eq!(got, want);
        }
    }
}
