//! The engine: a config compiled once, with everything derived from it (the vocabulary, the
//! levels named by the settings, the escrow certificate), and the engine in force, which a
//! reload replaces whole.
//!
//! [`compile`] is the one step from settings to something that runs: `config check` runs it to
//! refuse what `run` would refuse, and `run`, SIGHUP and the tests build their engines with it.

use crate::audit::AuditSink;
use crate::config::{Config, ConfigError, ConfigErrorKind, Mode};
use crate::marking::{LevelId, Vocabulary};
use crate::smime;
use crate::store::{Directory, now_unix};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// The hub's archive certificate (`encryption.escrow_certificate`): every encrypted message is
/// also encrypted for it.
#[derive(Clone, Debug)]
pub struct Escrow {
    pub pem: String,
    /// When it lapses (Unix seconds): past it, encryption tempfails rather than leave the
    /// hub's archive without a copy.
    pub not_after: u64,
}

/// A config with everything derived from it, checked.
pub struct Compiled {
    pub config: Config,
    pub vocab: Vocabulary,
    /// `routing.require_tls_from` as a level (`None`: never).
    pub require_tls_from: Option<LevelId>,
    pub escrow: Option<Escrow>,
}

/// Builds everything derived from `config`; an error names the file, line and key at fault.
pub fn compile(config: Config) -> Result<Compiled, ConfigError> {
    let (vocab, require_tls_from) = vocabulary(&config)?;
    let locate = |error| config.source.locate(error);
    let escrow = config
        .encryption
        .escrow_certificate
        .as_deref()
        .map(load_escrow)
        .transpose()
        .map_err(|kind| locate(ConfigError::at("encryption.escrow_certificate", kind)))?;
    Ok(Compiled {
        config,
        vocab,
        require_tls_from,
        escrow,
    })
}

/// The vocabulary, and `routing.require_tls_from` as one of its levels: the settings' words
/// checked, without reading any other file. (The directory and audit commands, which never
/// classify or encrypt, check a config with this alone.)
pub fn vocabulary(config: &Config) -> Result<(Vocabulary, Option<LevelId>), ConfigError> {
    let locate = |error| config.source.locate(error);
    let vocab = Vocabulary::from_config(&config.marking).map_err(locate)?;
    let require_tls_from = config
        .routing
        .require_tls_from
        .as_deref()
        .map(|name| vocab.level_by_name("routing.require_tls_from", name))
        .transpose()
        .map_err(locate)?;
    Ok((vocab, require_tls_from))
}

/// The escrow certificate: readable, and usable for encryption now.
fn load_escrow(path: &Path) -> Result<Escrow, ConfigErrorKind> {
    let problem = |problem: String| ConfigErrorKind::Certificate {
        path: path.into(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    let parsed = smime::cert::parse(&bytes).map_err(problem)?;
    if let Some(unusable) = &parsed.unusable_for_encryption {
        return Err(problem(format!(
            "cannot be used for encryption: {unusable}"
        )));
    }
    if smime::cert::validity(parsed.not_before, parsed.not_after, now_unix())
        != smime::cert::Validity::Valid
    {
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

/// A compiled config with the directory it asks: what a session snapshots at its start.
pub struct Engine {
    pub config: Config,
    pub vocab: Vocabulary,
    /// `routing.require_tls_from` as a level (`None`: never).
    pub require_tls_from: Option<LevelId>,
    pub escrow: Option<Escrow>,
    pub store: Arc<dyn Directory>,
    /// Where the milter records its verdicts (none for `check`).
    pub audit: Option<AuditSink>,
}

impl Engine {
    pub fn new(compiled: Compiled, store: Arc<dyn Directory>) -> Engine {
        let Compiled {
            config,
            vocab,
            require_tls_from,
            escrow,
        } = compiled;
        Engine {
            config,
            vocab,
            require_tls_from,
            escrow,
            store,
            audit: None,
        }
    }

    /// Records verdicts in the audit trail through `sink`.
    pub fn with_audit(mut self, sink: Option<AuditSink>) -> Engine {
        self.audit = sink;
        self
    }

    pub fn enforcing(&self) -> bool {
        self.config.mode == Mode::Enforce
    }
}

/// The engine in force (replaced whole on reload), and the count of messages in flight. The
/// milter and the socketmap both answer from it.
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
        let level = compiled.require_tls_from.unwrap();
        assert_eq!(compiled.vocab.level(level).name, "OFFICIAL-SENSITIVE");
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
        assert_eq!(compile(config).unwrap().require_tls_from, None);
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
