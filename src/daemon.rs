//! `cjsm-milter run`: load, bind, serve; SIGHUP reloads the config, SIGTERM drains.

use crate::audit::AuditSink;
use crate::clock::now_unix;
use crate::config::{Config, LogConfig, LogFormat, LogTarget};
use crate::engine::{Compiled, Engine, Shared, compile};
use crate::listen::{self, ListenAddr};
use crate::metrics::metrics;
use crate::milter;
use crate::privilege::{self, Account, Plan};
use crate::store;
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// Loads the config file, or the built-in CJSM defaults without one.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::default()),
    }
}

/// Sets up logging to stderr or syslog (mail facility), plain or JSON. Never logs a body.
pub fn init_logging(log: &LogConfig) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_new(&log.level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let syslog = match log.target {
        LogTarget::Stderr => None,
        LogTarget::Syslog => Some(syslog_tracing::Options::LOG_PID),
        LogTarget::SyslogAndStderr => {
            Some(syslog_tracing::Options::LOG_PID | syslog_tracing::Options::LOG_PERROR)
        }
    };
    let _ = match syslog.and_then(|options| {
        syslog_tracing::Syslog::new(c"cjsm-milter", options, syslog_tracing::Facility::Mail)
    }) {
        // syslog stamps the time itself.
        Some(writer) => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(writer)
                .with_ansi(false)
                .without_time()
                .with_target(false);
            match log.format {
                LogFormat::Json => builder.json().try_init(),
                LogFormat::Plain => builder.fmt_fields(plain_fields()).try_init(),
            }
        }
        None => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false);
            match log.format {
                LogFormat::Json => builder.json().try_init(),
                LogFormat::Plain => builder.fmt_fields(plain_fields()).try_init(),
            }
        }
    };
}

/// The plain format's fields, as tracing writes them by default (`message`, then `name=value`
/// separated by spaces) but with control characters escaped: a queue ID, address or header
/// value from the MTA or the client that holds a newline must not start a log line of its own.
/// (JSON escapes them already.)
fn plain_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static
{
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let value = format!("{value:?}");
        let text = escape_controls(&value);
        match field.name() {
            "message" => write!(writer, "{text}"),
            name => write!(writer, "{name}={text}"),
        }
    })
    .delimited(" ")
}

/// `text` with every control character written as an escape (`\n`, `\r`, `\t`, `\u{1b}`).
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}

/// Runs the milter until SIGTERM or SIGINT.
pub async fn run(config_path: Option<PathBuf>) -> Result<()> {
    let config = load_config(config_path.as_deref())?;
    init_logging(&config.log);
    // Everything `config check` checks, before anything is opened or bound.
    let compiled = compile(config)?;
    let config = compiled.config();
    // Who it runs as is settled before anything is bound: an account that does not exist
    // stops it here.
    let plan = privilege::plan(&config.milter)?;
    let open_files = listen::raise_open_files_limit();
    let (caps, warning) = listen::connection_caps(open_files, config.milter.max_connections);
    if let Some(warning) = warning {
        warn!("{warning}");
    }
    let (listener, local) = listen::bind(
        &config.milter.listen,
        config.milter.socket_mode,
        config.milter.socket_group.as_deref(),
    )
    .await?;
    let metrics_server = match config.metrics.listen {
        None => None,
        Some(addr) => {
            let (local, serve) = crate::metrics::http::bind(addr, caps.metrics)
                .await
                .with_context(|| format!("binding the metrics endpoint {addr}"))?;
            info!(listen = %local, "metrics endpoint: /metrics /healthz /readyz");
            Some(tokio::spawn(serve))
        }
    };
    let socketmap_listener = match config.socketmap.listen {
        None => None,
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the socketmap {addr}"))?,
        ),
    };
    // The store's password and TLS key are files for root (and the service group): read
    // while still root.
    let credentials =
        store::milter_credentials(&config.store).context("opening the directory store")?;
    // Everything bound: from here on it runs as the service account, and opens the store as it.
    if let Plan::Become(account) = &plan {
        drop_privileges(account, config, &local, config_path.as_deref()).await?;
    }
    let store = store::open_for_milter(&config.store, credentials.as_ref())
        .await
        .context("opening the directory store")?;
    let m = metrics();
    m.config_last_reload.set(now_unix() as f64);
    m.milter_listening.store(true, Ordering::Release);
    let monitor = tokio::spawn(watch_store(store.read.clone()));
    let audit = AuditSink::start(store.audit.clone());
    let shared = Shared::new(Engine::new(compiled, store.read).with_audit(Some(audit.clone())));
    let socketmap = match socketmap_listener {
        None => None,
        Some(listener) => {
            info!(listen = %listener.local_addr()?, maps = %crate::routing::MAPS.join(" "), "socketmap");
            Some(tokio::spawn(crate::routing::serve(
                listener,
                shared.clone(),
                caps.socketmap,
            )))
        }
    };
    let markings: Vec<String> = shared
        .current()
        .rules
        .vocab
        .levels
        .iter()
        .map(|l| l.name.clone())
        .collect();
    m.initialise(&markings);
    info!(listen = %local, mode = ?shared.current().config().mode, "cjsm-milter listening");

    let mut hangup = signal(SignalKind::hangup())?;
    let reloader = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                reload(config_path.as_deref(), &shared).await;
            }
        })
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        info!("shutting down: no new connections, open sessions finish");
    };
    let result = milter::serve(listener, shared, shutdown).await;
    m.milter_listening.store(false, Ordering::Release);
    // The verdicts of the sessions just finished reach the audit trail before we go.
    audit.drain(std::time::Duration::from_secs(5)).await;
    reloader.abort();
    monitor.abort();
    for task in [metrics_server, socketmap].into_iter().flatten() {
        task.abort();
    }
    if let ListenAddr::Unix(path) = &local {
        let _ = std::fs::remove_file(path);
    }
    info!("stopped");
    Ok(result?)
}

/// Started as root: the store directory and the unix socket are given to the account, the
/// process becomes it, and the config is read once more as it, so that a file only root can
/// read is found now rather than at the first SIGHUP.
async fn drop_privileges(
    account: &Account,
    config: &Config,
    local: &ListenAddr,
    config_path: Option<&Path>,
) -> Result<()> {
    if config.store.backend == crate::config::Backend::Sqlite {
        privilege::prepare_directory(&config.store.path, account)
            .context("preparing the directory store for the service account")?;
    }
    if let ListenAddr::Unix(path) = local {
        privilege::give_socket(path, account, config.milter.socket_group.is_some())?;
    }
    privilege::become_account(account)?;
    info!(
        user = %account.user,
        uid = account.uid,
        group = %account.group,
        gid = account.gid,
        "dropped root: running as the service account"
    );
    if let Some(path) = config_path {
        let reread = load_and_compile(path).await;
        if let Err(e) = reread {
            warn!(
                user = %account.user,
                error = %e,
                "the config cannot be read as the service account: a SIGHUP reload will fail \
                 until it can (make the file and its certificates readable by its group)"
            );
        }
    }
    Ok(())
}

/// Every few seconds: is the store reachable (readiness), and how big is the directory.
async fn watch_store(store: Arc<dyn crate::store::DirectoryRead>) {
    let m = metrics();
    let mut round: u64 = 0;
    loop {
        // Certificates change rarely: counted once a minute (every 12th round).
        if round.is_multiple_of(12)
            && let Ok(certs) = store.certificates().await
        {
            let soon = now_unix() + 30 * 86_400;
            m.certificates.set(certs.len() as i64);
            m.certificates_expiring
                .set(certs.iter().filter(|c| c.not_after <= soon).count() as i64);
        }
        round += 1;
        match store.size().await {
            Ok((users, orgs)) => {
                m.store_reachable.store(true, Ordering::Release);
                m.directory_users.set(users as i64);
                m.directory_organisations.set(orgs as i64);
            }
            Err(e) => {
                if m.store_reachable.swap(false, Ordering::AcqRel) {
                    warn!(error = %e, "directory store not reachable: not ready");
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// Reads and compiles the config file on a blocking thread: reading it, or the escrow
/// certificate it names, can be slow (a network file system), and the milter, the socketmap
/// and /healthz share this runtime.
async fn load_and_compile(path: &Path) -> Result<Compiled> {
    let file = path.to_path_buf();
    tokio::task::spawn_blocking(move || Config::load(&file).and_then(compile))
        .await
        .map_err(anyhow::Error::from)
        .and_then(|compiled| compiled.map_err(anyhow::Error::from))
}

/// Reloads the config; a bad file keeps the running config and says why.
async fn reload(path: Option<&Path>, shared: &Arc<Shared>) {
    let Some(path) = path else {
        warn!("SIGHUP: running on built-in defaults, no config file to reload");
        return;
    };
    let old = shared.current();
    let m = metrics();
    // Compiled before anything is said of it: a refused file says only why.
    let loaded = load_and_compile(path).await;
    let compiled = match loaded {
        Ok(compiled) => compiled,
        Err(e) => {
            m.config_reloads.with_label_values(&["failed"]).inc();
            error!(error = %e, "config reload failed; keeping the running config");
            return;
        }
    };
    let new = compiled.config();
    if new.milter.listen != old.config().milter.listen
        || new.milter.socket_mode != old.config().milter.socket_mode
        || new.milter.socket_group != old.config().milter.socket_group
        || new.milter.max_connections != old.config().milter.max_connections
    {
        warn!("milter socket settings changed: restart needed for them to apply");
    }
    if new.milter.user != old.config().milter.user
        || new.milter.group != old.config().milter.group
        || new.milter.allow_root != old.config().milter.allow_root
    {
        warn!("milter account settings changed: restart needed for them to apply");
    }
    if new.store != old.config().store {
        warn!("store settings changed: restart needed for them to apply; keeping the open store");
    }
    if new.metrics != old.config().metrics {
        warn!("metrics settings changed: restart needed for them to apply");
    }
    if new.socketmap.listen != old.config().socketmap.listen {
        warn!("socketmap address changed: restart needed for it to apply");
    }
    if new.log != old.config().log {
        warn!("log settings changed: restart needed for them to apply");
    }
    shared.replace(Engine::new(compiled, old.store.clone()).with_audit(old.audit.clone()));
    m.config_reloads.with_label_values(&["ok"]).inc();
    m.config_last_reload.set(now_unix() as f64);
    info!(file = %path.display(), "config reloaded");
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("Q1 é ✓"), "Q1 é ✓");
        assert_eq!(
            escape_controls("Q1\nFORGED\r\t\u{1b}[0m\u{85}"),
            "Q1\\nFORGED\\r\\t\\u{1b}[0m\\u{85}"
        );
    }
}
