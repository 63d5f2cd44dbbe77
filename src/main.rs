//! The command line: parses arguments and calls the library. Exit 2 with a one-line error on
//! bad usage, bad config or unreadable input.

use anyhow::{Context as _, Result};
use cjsm_milter::check::{CheckInput, check};
use cjsm_milter::config::Config;
use cjsm_milter::daemon::{self, load_config};
use cjsm_milter::engine::{Engine, compile};
use cjsm_milter::policy::SessionFacts;
use cjsm_milter::store;
use clap::{Parser, Subcommand};

mod directory_cli;
mod dovecot_auth;
#[cfg(test)]
mod manpage;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cjsm-milter",
    version,
    about = "Protective-marking milter for a CJSM-style secure-email hub"
)]
struct Cli {
    /// The TOML config file; without it the built-in CJSM defaults apply.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the milter daemon.
    ///
    /// Started as root, it binds its sockets and then becomes the [milter] user (by default
    /// cjsm-milter, else nobody) for good; it refuses to stay root unless [milter] allow_root
    /// = true.
    Run,
    /// Run a message through the milter's pipeline offline and print the verdict as JSON.
    Check(CheckArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The Secure eMail Directory: organisations, users, search and export.
    Directory {
        #[command(subcommand)]
        command: directory_cli::DirectoryCommand,
    },
    /// The audit trail of verdicts and admin changes.
    Audit {
        #[command(subcommand)]
        command: directory_cli::AuditCommand,
    },
    /// The Secure eMail website: without a subcommand, serve it on [web] listen.
    ///
    /// Started as root, it binds its address, reads its TLS key and then becomes the [milter]
    /// user, as `run` does.
    Web {
        #[command(subcommand)]
        command: Option<WebCommand>,
    },
    /// Dovecot's checkpassword program (passdb driver = checkpassword): signs mailbox users in
    /// to mail with the website's password. Reads login and password from descriptor 3; runs
    /// REPLY (Dovecot's reply helper) when granted, else exits 1 (refused) or 111 (temporary
    /// failure). See dovecot/README.md.
    DovecotAuth {
        #[arg(
            value_name = "REPLY",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        reply: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum WebCommand {
    /// Create a hub operator's account (the first one, or another) and print its one-time
    /// password, to be changed at first sign-in.
    AddOperator {
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
    /// Give an account a new one-time password (and end its sessions): for a hub operator
    /// locked out, or any account whose password is lost.
    ResetPassword {
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Envelope sender (MAIL FROM), as the client sends it; "" or "<>" for the null sender.
    #[arg(long, value_name = "ADDR")]
    from: String,
    /// Envelope recipient (RCPT TO); repeat for several.
    #[arg(long = "rcpt", value_name = "ADDR", required = true)]
    rcpts: Vec<String>,
    /// SMTP AUTH user ({auth_authen}).
    #[arg(long, value_name = "USER")]
    auth: Option<String>,
    /// Client IP address.
    #[arg(long, value_name = "IP")]
    client_addr: Option<IpAddr>,
    /// TLS version of the inbound session ({tls_version}), e.g. TLSv1.3.
    #[arg(long, value_name = "V")]
    tls_version: Option<String>,
    /// Verified client certificate subject ({cert_subject}).
    #[arg(long, value_name = "S")]
    cert_subject: Option<String>,
    /// Client certificate issuer ({cert_issuer}).
    #[arg(long, value_name = "I")]
    cert_issuer: Option<String>,
    /// Sendmail's {verify} for the client certificate, e.g. OK or FAIL.
    #[arg(long, value_name = "RESULT")]
    verify: Option<String>,
    /// Sendmail's {cn_subject}: the client certificate's common name (xtext), preferred to
    /// the one-line DN of --cert-subject.
    #[arg(long, value_name = "CN")]
    cn_subject: Option<String>,
    /// Sendmail's {cn_issuer}: the issuer's common name (xtext).
    #[arg(long, value_name = "CN")]
    cn_issuer: Option<String>,
    /// The message file, or - for standard input.
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file; names the key and line at fault.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cjsm-milter: error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if !matches!(cli.command, Command::Run | Command::Web { command: None }) {
        // An admin command that hits a bug says so in one line and exits 2, like any other
        // error. (The daemon keeps the default hook: a panic there is logged in full.)
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            eprintln!(
                "cjsm-milter: error: internal error{location}: {}",
                panic_text(info)
            );
        }));
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(dispatch(cli))
    }));
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("cjsm-milter: error: {}", one_line(&e));
            ExitCode::from(2)
        }
        Err(_) => ExitCode::from(2),
    }
}

fn panic_text(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    text.replace('\n', " ")
}

/// The whole error chain on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run => daemon::run(cli.config).await,
        Command::Check(args) => run_check(cli.config, args).await,
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            // Everything `run` checks before it starts, the escrow certificate and the Redis
            // password and TLS files included (read, not used: no connection is made).
            let compiled = compile(Config::load(&file)?)?;
            let store = &compiled.config().store;
            if store.backend == cjsm_milter::config::Backend::Redis {
                store::redis_credentials(store).context("reading the Redis credentials")?;
            }
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Directory { command } => {
            let config = load_settings(cli.config.as_deref())?;
            directory_cli::directory(&config, command).await
        }
        Command::Audit { command } => {
            let config = load_settings(cli.config.as_deref())?;
            directory_cli::audit(&config, command).await
        }
        Command::Web { command: None } => {
            let config = load_settings(cli.config.as_deref())?;
            daemon::init_logging(&config.log);
            cjsm_milter::web::serve(config).await
        }
        Command::Web {
            command: Some(command),
        } => {
            let config = load_settings(cli.config.as_deref())?;
            directory_cli::web_account(&config, command).await
        }
        Command::DovecotAuth { reply } => dovecot_auth::run(cli.config.as_deref(), reply).await,
    }
}

/// The config of a command that neither classifies nor encrypts (directory, audit): its words
/// are checked like every config's, but the escrow certificate is not read, so that the
/// directory can be kept while the certificate is being replaced.
fn load_settings(path: Option<&std::path::Path>) -> Result<Config> {
    let config = load_config(path)?;
    cjsm_milter::policy::vocabulary(&config)?;
    Ok(config)
}

async fn run_check(config_path: Option<PathBuf>, args: CheckArgs) -> Result<()> {
    let compiled = compile(load_config(config_path.as_deref())?)?;
    let mut message = Vec::new();
    if args.file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut message)
            .context("reading the message from standard input")?;
    } else {
        message = std::fs::read(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
    }
    let store = store::open(&compiled.config().store, store::Access::ReadOnly)
        .await
        .context("opening the directory store")?;
    let engine = Engine::new(compiled, store);
    let input = CheckInput {
        sender: args.from,
        recipients: args.rcpts,
        session: SessionFacts {
            client_addr: args.client_addr,
            tls_version: args.tls_version,
            cipher: None,
            cert_subject: args.cert_subject,
            cert_issuer: args.cert_issuer,
            verify: args.verify,
            auth_user: args.auth,
            cn_subject: args.cn_subject,
            cn_issuer: args.cn_issuer,
        },
        message,
    };
    let report = check(&engine, input).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
