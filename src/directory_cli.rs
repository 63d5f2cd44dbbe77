//! `cjsm-milter directory …` and `cjsm-milter audit …`: argument parsing and printing only;
//! the rules are in `cjsm_milter::directory`.

use anyhow::{Context as _, Result, bail};
use cjsm_milter::clock::now_unix_ms;
use cjsm_milter::config::Config;
use cjsm_milter::directory::csv::ImportError;
use cjsm_milter::directory::model::{
    AuditEvent, ClientCertificate, ConnectionType, Organisation, UserState,
};
use cjsm_milter::directory::org::Application;
use cjsm_milter::directory::user::{UserDetails, search};
use cjsm_milter::directory::{Admin, AdminError, export};
use cjsm_milter::store::{self, Access};
use clap::Subcommand;
use std::io::Write as _;

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Organisations: apply, approve, sign the terms, activate, suspend.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Users of the hub.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// S/MIME certificates of recipients reached by encryption.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Search users (not deleted ones) by address, name, organisation or town.
    Search {
        text: String,
        /// List at most this many (by address); a last line on standard error says when
        /// more matched.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        limit: u64,
    },
    /// Export active users: CSV for a spreadsheet, LDIF (inetOrgPerson) for an address list.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// LDIF: the base DN the entries go under.
        #[arg(long, default_value = "ou=Secure eMail Directory,dc=cjsm,dc=net")]
        base_dn: String,
    },
    /// Moves the embedded store of an earlier version (`directory.json` and its audit log)
    /// into the SQLite database, in one transaction; the old files are renamed `*.migrated`.
    Migrate,
}

#[derive(Subcommand)]
pub enum CertCommand {
    /// Register an address's certificate (PEM or DER): refused unless valid now, usable for
    /// encryption (key usage), and issued for that address.
    Import {
        address: String,
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Show an address's certificate as JSON.
    Show { address: String },
    /// Remove an address's certificate.
    Remove { address: String },
    /// List certificates that lapse within the given time (or have), soonest first.
    Expiring {
        /// e.g. 30d, 12h.
        #[arg(long, default_value = "30d")]
        within: String,
    },
}

/// How an organisation reaches the hub: the command line's names for [`ConnectionType`]
/// (the directory's model knows nothing of clap).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConnectionArg {
    /// Its own mail server relays through the hub over TLS with a client certificate; its
    /// users' secure addresses are their own with the secure suffix added.
    Server,
    /// Hosted accounts under the secure suffix, with SMTP AUTH submission.
    Mailbox,
}

impl From<ConnectionArg> for ConnectionType {
    fn from(arg: ConnectionArg) -> ConnectionType {
        match arg {
            ConnectionArg::Server => ConnectionType::Server,
            ConnectionArg::Mailbox => ConnectionType::Mailbox,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Ldif,
}

#[derive(Subcommand)]
pub enum OrgCommand {
    /// Apply for an organisation; a domain already registered or pending is refused.
    Apply {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long = "domain", required = true)]
        domains: Vec<String>,
        #[arg(long, value_enum)]
        connection: ConnectionArg,
        #[arg(long = "admin")]
        admins: Vec<String>,
        /// Server connections: SHA-256 fingerprint of the TLS client certificate it presents.
        #[arg(long, requires_all = ["cert_subject", "cert_issuer"])]
        cert_fingerprint: Option<String>,
        /// Server connections: the certificate's subject.
        #[arg(long, requires = "cert_fingerprint")]
        cert_subject: Option<String>,
        /// Server connections: the certificate's issuer.
        #[arg(long, requires = "cert_fingerprint")]
        cert_issuer: Option<String>,
        /// Server connections: where mail to its domains goes (`[mx.firm.co.uk]:25`), answered
        /// to the MTA's transport lookups; without it, the domains' MX records.
        #[arg(long)]
        mail_server: Option<String>,
    },
    Approve {
        id: String,
    },
    /// Record that the organisation signed the terms and conditions.
    SignTerms {
        id: String,
    },
    /// Switch on: refused until approved and the terms are signed.
    Activate {
        id: String,
    },
    Suspend {
        id: String,
    },
    /// Server connections: a renewed client certificate, or another mail server.
    Update {
        id: String,
        /// SHA-256 fingerprint of the new client certificate.
        #[arg(long, requires_all = ["cert_subject", "cert_issuer"])]
        cert_fingerprint: Option<String>,
        #[arg(long, requires = "cert_fingerprint")]
        cert_subject: Option<String>,
        #[arg(long, requires = "cert_fingerprint")]
        cert_issuer: Option<String>,
        /// Where mail to its domains goes (`[mx.firm.co.uk]:25`).
        #[arg(long, conflicts_with = "no_mail_server")]
        mail_server: Option<String>,
        /// Deliver by the domains' MX records again.
        #[arg(long)]
        no_mail_server: bool,
    },
    Show {
        id: String,
    },
    List,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add an active user of an organisation, with a secure address in its domains.
    Add {
        address: String,
        #[arg(long, value_name = "ID")]
        org: String,
        #[arg(long, value_name = "F")]
        first_name: String,
        #[arg(long, value_name = "L")]
        last_name: String,
        #[arg(long, value_name = "T")]
        town: Option<String>,
        #[arg(long, value_name = "B")]
        business_type: Option<String>,
    },
    /// Show a user as JSON.
    Show { address: String },
    /// Suspend a user: mail to them is refused with 5.2.1, from them with 5.7.1.
    Suspend { address: String },
    /// Make a suspended or deleted user active again.
    Reactivate { address: String },
    /// Delete a user (kept as deleted, so mail to them is refused with 5.2.1).
    Delete { address: String },
    /// Change a user's own details.
    Update {
        address: String,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        #[arg(long)]
        town: Option<String>,
        #[arg(long)]
        business_type: Option<String>,
    },
    /// Bulk load of at most 500 users from CSV, all or nothing.
    Import { file: std::path::PathBuf },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The newest entries, newest first, one JSON object per line.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Entries matching every filter given, newest first.
    Search {
        #[arg(long)]
        queue_id: Option<String>,
        /// Sender, recipient or the user an admin change concerned.
        #[arg(long)]
        address: Option<String>,
        /// A time: `2026-11-27`, `2026-11-27T09:30:00Z`, seconds since 1970, or an age such
        /// as `90m`, `24h`, `7d`.
        #[arg(long)]
        since: Option<String>,
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
}

/// Who runs the command, for the audit trail: the user `sudo` names, or the login; without
/// either (cron, a systemd unit) the uid, so that no change is recorded without an author.
fn actor() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let named = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|name| !name.trim().is_empty())
    };
    named("SUDO_USER")
        .or_else(|| named("USER"))
        // /proc/self belongs to the process's effective uid.
        .or_else(|| {
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid {}", m.uid()))
        })
}

fn json(value: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// A refusal or a store error as the one-line error; an import's bad rows one per line first.
fn admin_error(e: AdminError) -> anyhow::Error {
    if let AdminError::Import(ImportError::Rows(rows)) = &e {
        for row in rows {
            eprintln!("{row}");
        }
        let mut lines: Vec<usize> = rows.iter().map(|row| row.line).collect();
        lines.sort_unstable();
        lines.dedup();
        let problems = if rows.len() > lines.len() {
            format!(" ({} problems)", rows.len())
        } else {
            String::new()
        };
        return anyhow::anyhow!("{} bad rows; nothing was imported{problems}", lines.len());
    }
    anyhow::Error::new(e)
}

pub async fn directory(config: &Config, command: DirectoryCommand) -> Result<()> {
    // Before the store is opened: opening refuses a directory.json beside no database.
    if let DirectoryCommand::Migrate = command {
        return migrate(config).await;
    }
    let store = store::open(&config.store, Access::ReadWrite)
        .await
        .context("opening the directory store")?;
    let admin = Admin::new(store.as_ref(), &config.routing.secure_suffix, actor());
    let print_org = |org: &Organisation| -> Result<()> {
        println!("{}", json(org)?);
        Ok(())
    };
    match command {
        DirectoryCommand::Org { command } => match command {
            OrgCommand::Apply {
                id,
                name,
                domains,
                connection,
                admins,
                cert_fingerprint,
                cert_subject,
                cert_issuer,
                mail_server,
            } => {
                let client_certificate = cert_fingerprint.map(|fingerprint| ClientCertificate {
                    fingerprint,
                    subject: cert_subject.unwrap_or_default(),
                    issuer: cert_issuer.unwrap_or_default(),
                });
                let org = admin
                    .org_apply(Application {
                        id,
                        name,
                        domains,
                        connection: connection.into(),
                        admins,
                        client_certificate,
                        mail_server,
                    })
                    .await
                    .map_err(admin_error)?;
                println!("{} applied ({})", org.id, org.domains.join(", "));
            }
            OrgCommand::Approve { id } => {
                let org = admin.org_approve(&id).await.map_err(admin_error)?;
                println!("{} is now {}", org.id, org.state);
            }
            OrgCommand::SignTerms { id } => {
                let org = admin.org_sign_terms(&id).await.map_err(admin_error)?;
                println!("{} has signed the terms", org.id);
            }
            OrgCommand::Activate { id } => {
                let org = admin.org_activate(&id).await.map_err(admin_error)?;
                println!("{} is now {}", org.id, org.state);
            }
            OrgCommand::Suspend { id } => {
                let org = admin.org_suspend(&id).await.map_err(admin_error)?;
                println!("{} is now {}", org.id, org.state);
            }
            OrgCommand::Update {
                id,
                cert_fingerprint,
                cert_subject,
                cert_issuer,
                mail_server,
                no_mail_server,
            } => {
                let certificate = cert_fingerprint.map(|fingerprint| ClientCertificate {
                    fingerprint,
                    subject: cert_subject.unwrap_or_default(),
                    issuer: cert_issuer.unwrap_or_default(),
                });
                let mail_server = if no_mail_server {
                    Some(None)
                } else {
                    mail_server.map(Some)
                };
                let org = admin
                    .org_update(&id, certificate, mail_server)
                    .await
                    .map_err(admin_error)?;
                println!(
                    "{} updated (certificate {}, mail server {})",
                    org.id,
                    org.client_certificate
                        .as_ref()
                        .map_or("none", |c| c.subject.as_str()),
                    org.mail_server.as_deref().unwrap_or("by MX")
                );
            }
            OrgCommand::Show { id } => print_org(&admin.org_show(&id).await.map_err(admin_error)?)?,
            OrgCommand::List => {
                for org in admin.org_list().await.map_err(admin_error)? {
                    println!(
                        "{}\t{}\t{:?}\t{}\t{}",
                        org.id,
                        org.state,
                        org.connection,
                        org.name,
                        org.domains.join(",")
                    );
                }
            }
        },
        DirectoryCommand::User { command } => match command {
            UserCommand::Add {
                address,
                org,
                first_name,
                last_name,
                town,
                business_type,
            } => {
                let details = UserDetails {
                    first_name: Some(first_name),
                    last_name: Some(last_name),
                    town,
                    business_type,
                };
                let user = admin
                    .user_add(&address, &org, details)
                    .await
                    .map_err(admin_error)?;
                println!("added {}", user.address);
            }
            UserCommand::Show { address } => {
                println!(
                    "{}",
                    json(&admin.user_show(&address).await.map_err(admin_error)?)?
                );
            }
            UserCommand::Suspend { address } => {
                set_state(&admin, &address, UserState::Suspended).await?
            }
            UserCommand::Reactivate { address } => {
                set_state(&admin, &address, UserState::Active).await?
            }
            UserCommand::Delete { address } => {
                set_state(&admin, &address, UserState::Deleted).await?
            }
            UserCommand::Update {
                address,
                first_name,
                last_name,
                town,
                business_type,
            } => {
                let details = UserDetails {
                    first_name,
                    last_name,
                    town,
                    business_type,
                };
                let user = admin
                    .user_update(&address, details)
                    .await
                    .map_err(admin_error)?;
                println!("updated {}", user.address);
            }
            UserCommand::Import { file } => {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let summary = admin.user_import(&bytes).await.map_err(admin_error)?;
                println!(
                    "imported {}: {} added, {} updated, {} unchanged",
                    file.display(),
                    summary.added,
                    summary.updated,
                    summary.unchanged
                );
            }
        },
        DirectoryCommand::Cert { command } => match command {
            CertCommand::Import { address, file } => {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let cert = admin
                    .cert_import(&address, &bytes)
                    .await
                    .map_err(admin_error)?;
                println!(
                    "{} certificate imported (sha256 {}, valid until {})",
                    cert.address,
                    cert.fingerprint,
                    cjsm_milter::smime::cert::date(cert.not_after)
                );
            }
            CertCommand::Show { address } => {
                let cert = admin.cert_show(&address).await.map_err(admin_error)?;
                println!("{}", json(&cert)?);
            }
            CertCommand::Remove { address } => {
                admin.cert_remove(&address).await.map_err(admin_error)?;
                println!(
                    "{} certificate removed",
                    cjsm_milter::address::normalize_address(&address)
                );
            }
            CertCommand::Expiring { within } => {
                let seconds = parse_duration(&within)?;
                for cert in admin.cert_expiring(seconds).await.map_err(admin_error)? {
                    println!(
                        "{}\t{}\t{}",
                        cert.address,
                        cjsm_milter::smime::cert::date(cert.not_after),
                        cert.subject
                    );
                }
            }
        },
        DirectoryCommand::Search { text, limit } => {
            if text.trim().is_empty() {
                bail!("search text must not be empty");
            }
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let found = search(store.as_ref(), &text, limit).await?;
            let mut out = std::io::stdout().lock();
            for user in &found.users {
                writeln!(
                    out,
                    "{}\t{} {}\t{}\t{}\t{}",
                    user.address, user.first_name, user.last_name, user.org, user.town, user.state
                )?;
            }
            out.flush()?;
            if found.more {
                eprintln!("… more than {limit} users match; raise --limit or narrow the text");
            }
        }
        DirectoryCommand::Export { format, base_dn } => {
            // Streamed a page of users at a time, through a buffer.
            let mut out = std::io::BufWriter::new(std::io::stdout());
            match format {
                ExportFormat::Csv => export::write_csv(store.as_ref(), &mut out).await,
                ExportFormat::Ldif => export::write_ldif(store.as_ref(), &base_dn, &mut out).await,
            }
            .context("exporting the directory")?;
        }
        DirectoryCommand::Migrate => {} // done above
    }
    Ok(())
}

/// `directory migrate`.
async fn migrate(config: &Config) -> Result<()> {
    if config.store.backend != cjsm_milter::config::Backend::Sqlite {
        anyhow::bail!(
            "directory migrate moves the embedded store's directory.json into its database; \
             [store] backend is not the embedded store"
        );
    }
    let (dir, retention) = (config.store.path.clone(), config.store.audit_retention);
    let outcome =
        tokio::task::spawn_blocking(move || store::migrate::migrate(&dir, retention)).await?;
    let outcome = outcome
        .with_context(|| format!("migrating the store in {}", config.store.path.display()))?;
    println!("{outcome}");
    Ok(())
}

async fn set_state(admin: &Admin<'_>, address: &str, state: UserState) -> Result<()> {
    let user = admin
        .user_set_state(address, state)
        .await
        .map_err(admin_error)?;
    if state != UserState::Active {
        // Signed out of the website everywhere, as a suspension there does: their sessions
        // do not come back if they are reactivated.
        cjsm_milter::web::accounts::end_sessions(
            admin.store(),
            &user.address,
            cjsm_milter::clock::now_unix(),
        )
        .await
        .context("ending the user's website sessions")?;
    }
    println!("{} is now {}", user.address, user.state);
    Ok(())
}

pub async fn audit(config: &Config, command: AuditCommand) -> Result<()> {
    let store = store::open(&config.store, Access::ReadOnly)
        .await
        .context("opening the directory store")?;
    let events: Vec<AuditEvent> = match command {
        AuditCommand::Tail { lines } => store.audit(lines).await?,
        AuditCommand::Search {
            queue_id,
            address,
            since,
            lines,
        } => {
            let since_ms = since
                .as_deref()
                .map(|s| parse_since(s, now_unix_ms()))
                .transpose()?;
            // The whole retained trail is read (it is bounded by audit_retention).
            store
                .audit(config.store.audit_retention)
                .await?
                .into_iter()
                .filter(|e| {
                    queue_id
                        .as_ref()
                        .is_none_or(|q| e.queue_id() == Some(q.as_str()))
                        && address.as_ref().is_none_or(|a| e.mentions(a))
                        && since_ms.is_none_or(|t| e.time_ms() >= t)
                })
                .take(lines)
                .collect()
        }
    };
    for event in &events {
        println!("{}", serde_json::to_string(event)?);
    }
    Ok(())
}

/// `30d`, `12h`, `90m`, `45s` as seconds; `None` for anything else.
fn age_seconds(text: &str) -> Option<u64> {
    let (number, unit) = text.split_at_checked(text.len().saturating_sub(1))?;
    let n = number.parse::<u64>().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(n.saturating_mul(factor))
}

/// `--within`: a duration, as seconds.
fn parse_duration(text: &str) -> Result<u64> {
    let text = text.trim();
    age_seconds(text)
        .ok_or_else(|| anyhow::anyhow!("--within {text:?}: use a duration such as 30d, 12h or 90m"))
}

/// `--since`: an age (`90m`, `24h`, `7d`), seconds since 1970, or a UTC date and time.
fn parse_since(text: &str, now_ms: u64) -> Result<u64> {
    let text = text.trim();
    if let Some(seconds) = age_seconds(text) {
        return Ok(now_ms.saturating_sub(seconds.saturating_mul(1000)));
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds.saturating_mul(1000));
    }
    parse_utc(text).ok_or_else(|| {
        anyhow::anyhow!("--since {text:?}: use an age such as 24h, seconds since 1970, or 2026-11-27[T09:30[:00]][Z]")
    })
}

/// `YYYY-MM-DD[THH:MM[:SS]][Z]` in UTC, as milliseconds since 1970.
fn parse_utc(text: &str) -> Option<u64> {
    let text = text.trim_end_matches('Z');
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm) = (t.next()??, t.next()??);
    let ss = t.next().flatten().unwrap_or(0);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || day < 1
        || day > month_days[(m - 1) as usize]
        || !(0..=23).contains(&hh)
        || !(0..=59).contains(&mm)
        || !(0..=60).contains(&ss)
    {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(seconds).ok().map(|s| s * 1000)
}

/// `web add-operator` and `web reset-password`: accounts made on the command line, their
/// one-time password printed once (stdout) for the person to change at first sign-in.
pub async fn web_account(config: &Config, command: crate::WebCommand) -> Result<()> {
    use cjsm_milter::clock::now_unix;
    use cjsm_milter::directory::rules::check_address;
    use cjsm_milter::web::accounts::{self, Role};
    let store = store::open(&config.store, Access::ReadWrite)
        .await
        .context("opening the directory store")?;
    let admin = Admin::new(store.as_ref(), &config.routing.secure_suffix, actor());
    let now = now_unix();
    match command {
        crate::WebCommand::AddOperator { address } => {
            let address = address.trim().to_ascii_lowercase();
            check_address(&address).map_err(|e| anyhow::anyhow!(e))?;
            let Some(one_time) =
                accounts::create(store.as_ref(), &address, Role::Operator, None, now).await?
            else {
                bail!(
                    "{address} already has an account (web reset-password gives it a new one-time password)"
                );
            };
            admin
                .audit("web add-operator", &address, "hub operator".into())
                .await
                .map_err(admin_error)?;
            eprintln!("hub operator {address} created; one-time password (shown once):");
            println!("{one_time}");
        }
        crate::WebCommand::ResetPassword { address } => {
            let address = address.trim().to_ascii_lowercase();
            let Some(one_time) = accounts::reset(store.as_ref(), &address, now).await? else {
                bail!("{address} has no account");
            };
            admin
                .audit("web reset-password", &address, "one-time password".into())
                .await
                .map_err(admin_error)?;
            eprintln!("{address}: new one-time password (shown once):");
            println!("{one_time}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("90m", now).unwrap(), now - 90 * 60_000);
        assert_eq!(parse_since("7d", now).unwrap(), now - 7 * 86_400_000);
        assert_eq!(parse_since("1700000000", now).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_since("1970-01-02", now).unwrap(), 86_400_000);
        assert_eq!(
            parse_since("2026-11-27T09:30:00Z", now).unwrap(),
            1_795_771_800_000
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("2026-13-01", now).is_err());
        assert!(parse_since("2026-02-31", now).is_err());
        assert!(parse_since("2024-02-29", now).is_ok());
        assert!(
            parse_since("99999999999999999d", now).is_ok(),
            "saturates, no overflow"
        );
        assert!(parse_since("99999999999999999999", now).is_err());
    }
}
