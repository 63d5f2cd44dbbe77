//! The engine: a config compiled once into the rules (with everything derived from it: the
//! vocabulary, the levels the settings name, the escrow certificate), with the shell's parts
//! the rules need (the directory store, the encryption, the audit trail); and [`Shared`], the
//! engine in force, which a reload replaces whole. Each milter session and each socketmap
//! query takes the engine in force when it starts, so a reload never changes the rules in the
//! middle of a message.
//!
//! [`compile`] is the one step from settings to something that runs: `config check` runs it to
//! refuse what `run` would refuse, and `run`, SIGHUP and the tests build their engines with it.

use crate::audit::AuditSink;
use crate::clock::now_unix;
use crate::config::{Config, ConfigError, ConfigErrorKind};
use crate::lookups::StoreLookups;
use crate::policy::Rules;
use crate::policy::encryption::{Validity, validity};
use crate::smime::{self, Escrow, Smime};
use crate::store::DirectoryRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// A config with everything derived from it, checked.
pub struct Compiled {
    pub rules: Rules,
    pub escrow: Option<Escrow>,
}

impl Compiled {
    pub fn config(&self) -> &Config {
        &self.rules.config
    }
}

/// Builds everything derived from `config`; an error names the file, line and key at fault.
pub fn compile(config: Config) -> Result<Compiled, ConfigError> {
    let escrow = config
        .encryption
        .escrow_certificate
        .as_deref()
        .map(load_escrow)
        .transpose()
        .map_err(|kind| {
            let error = ConfigError::at("encryption.escrow_certificate", kind);
            config.source.locate(error)
        });
    // The words first: their errors come before the escrow certificate's.
    let rules = Rules::new(config)?;
    Ok(Compiled {
        rules,
        escrow: escrow?,
    })
}

/// The escrow certificate: readable, and usable for encryption now.
fn load_escrow(path: &Path) -> Result<Escrow, ConfigErrorKind> {
    let problem = |problem: String| ConfigErrorKind::Certificate {
        path: path.into(),
        problem,
    };
    // A certificate is a few kilobytes; a FIFO or device here must not stall `run` or SIGHUP.
    let bytes = crate::config::read_regular_file(path, crate::config::MAX_CONFIG_BYTES)
        .map_err(|e| problem(e.to_string()))?;
    let parsed = smime::cert::parse(&bytes).map_err(|e| problem(e.to_string()))?;
    if let Some(unusable) = &parsed.unusable_for_encryption {
        return Err(problem(format!(
            "cannot be used for encryption: {unusable}"
        )));
    }
    if validity(parsed.not_before, parsed.not_after, now_unix()) != Validity::Valid {
        return Err(problem(format!(
            "not valid now (valid {} to {})",
            smime::cert::date(parsed.not_before),
            smime::cert::date(parsed.not_after)
        )));
    }
    Ok(Escrow {
        pem: parsed.pem,
        not_after: parsed.not_after,
    })
}

/// The rules in force with the directory they ask: what a session snapshots at its start.
pub struct Engine {
    pub rules: Rules,
    pub smime: Smime,
    pub store: Arc<dyn DirectoryRead>,
    /// Where the milter records its verdicts (none for `check`).
    pub audit: Option<AuditSink>,
}

impl Engine {
    pub fn new(compiled: Compiled, store: Arc<dyn DirectoryRead>) -> Engine {
        let Compiled { rules, escrow } = compiled;
        let smime = Smime {
            cipher: rules.config.encryption.cipher,
            escrow,
        };
        Engine {
            rules,
            smime,
            store,
            audit: None,
        }
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

/// The engine in force (replaced whole on reload), the count of messages in flight, and
/// whether the milter is draining for shutdown. The milter and the socketmap both answer
/// from it.
pub struct Shared {
    engine: RwLock<Arc<Engine>>,
    /// Messages between MAIL and end of message (or abort); the milter counts them.
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// Set when a shutdown begins: the milter takes no new connections.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_compile() {
        let compiled = compile(Config::default()).unwrap();
        let level = compiled.rules.require_tls_from.unwrap();
        assert_eq!(compiled.rules.vocab.level(level).name, "OFFICIAL-SENSITIVE");
        assert!(compiled.escrow.is_none());
    }

    #[test]
    fn a_level_error_names_key_and_line() {
        let config = Config::parse("[marking]\nheader = \"X-A\"\nceiling = \"BOGUS\"\n").unwrap();
        let err = compile(config).err().unwrap();
        assert_eq!(err.key.as_deref(), Some("marking.ceiling"), "{err}");
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().contains("BOGUS"), "{err}");

        let config = Config::parse("[routing]\n\nrequire_tls_from = \"NOPE\"\n").unwrap();
        let err = compile(config).err().unwrap();
        assert_eq!(
            err.key.as_deref(),
            Some("routing.require_tls_from"),
            "{err}"
        );
        assert_eq!(err.line, Some(3), "{err}");

        let config = Config::parse("[routing]\nrequire_tls_from = \"\"\n").unwrap();
        assert_eq!(compile(config).unwrap().rules.require_tls_from, None);
    }

    #[test]
    fn an_unreadable_escrow_certificate_is_refused() {
        let config =
            Config::parse("[encryption]\nescrow_certificate = \"/nonexistent/escrow.pem\"\n")
                .unwrap();
        let err = compile(config).err().unwrap();
        assert_eq!(
            err.key.as_deref(),
            Some("encryption.escrow_certificate"),
            "{err}"
        );
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.to_string().contains("/nonexistent/escrow.pem"), "{err}");
    }
}
