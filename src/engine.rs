//! The engine: the rules of one config with the shell's parts they need (the directory store,
//! the encryption, the audit trail), and [`Shared`], the engine in force, replaced whole on
//! reload. Each milter session and each socketmap query takes the engine in force when it
//! starts, so a reload never changes the rules in the middle of a message.

use crate::audit::AuditSink;
use crate::clock::now_unix;
use crate::config::{Config, ConfigError};
use crate::lookups::StoreLookups;
use crate::policy::Rules;
use crate::policy::encryption::{Validity, validity};
use crate::smime::{self, Smime};
use crate::store::DirectoryRead;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// A config with everything derived from it: what a session snapshots at its start.
pub struct Engine {
    pub rules: Rules,
    pub smime: Smime,
    pub store: Arc<dyn DirectoryRead>,
    /// Where the milter records its verdicts (none for `check`).
    pub audit: Option<AuditSink>,
}

impl Engine {
    pub fn new(config: Config, store: Arc<dyn DirectoryRead>) -> Result<Engine, ConfigError> {
        let escrow = match &config.encryption.escrow_certificate {
            None => None,
            Some(path) => Some(load_escrow(path).map_err(|message| ConfigError {
                file: None,
                line: None,
                key: Some("encryption.escrow_certificate".into()),
                message,
            })?),
        };
        let smime = Smime {
            cipher: config.encryption.cipher,
            escrow,
        };
        Ok(Engine {
            rules: Rules::new(config)?,
            smime,
            store,
            audit: None,
        })
    }

    /// Records verdicts in the audit trail through `sink`.
    pub fn with_audit(mut self, sink: Option<AuditSink>) -> Engine {
        self.audit = sink;
        self
    }

    pub fn config(&self) -> &Config {
        &self.rules.config
    }

    pub fn enforcing(&self) -> bool {
        self.rules.enforcing()
    }

    /// The directory, asked as the transaction asks.
    pub fn lookups(&self) -> StoreLookups<'_> {
        StoreLookups(self.store.as_ref())
    }
}

/// The escrow certificate: readable, and usable for encryption now. Its PEM and when it lapses.
fn load_escrow(path: &std::path::Path) -> Result<(String, u64), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parsed = smime::cert::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(problem) = &parsed.unusable_for_encryption {
        return Err(format!(
            "{}: cannot be used for encryption: {problem}",
            path.display()
        ));
    }
    if validity(parsed.not_before, parsed.not_after, now_unix()) != Validity::Valid {
        return Err(format!(
            "{}: not valid now (valid {} to {})",
            path.display(),
            smime::cert::date(parsed.not_before),
            smime::cert::date(parsed.not_after)
        ));
    }
    Ok((parsed.pem, parsed.not_after))
}

/// The engine in force (replaced whole on reload), the count of messages in flight, and
/// whether the milter is draining for shutdown.
pub struct Shared {
    engine: RwLock<Arc<Engine>>,
    pub(crate) in_flight: Arc<AtomicUsize>,
    pub(crate) draining: Arc<AtomicBool>,
}

impl Shared {
    pub fn new(engine: Engine) -> Arc<Shared> {
        Arc::new(Shared {
            engine: RwLock::new(Arc::new(engine)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            draining: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Messages between MAIL and end of message (or abort) right now.
    pub fn messages_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Engine> {
        self.engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn replace(&self, engine: Engine) {
        *self.engine.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(engine);
    }
}
