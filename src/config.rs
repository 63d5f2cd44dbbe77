//! The configuration: one TOML file, every key optional, the CJSM profile as the default.
//!
//! `Config::default()` is what `cjsm-milter run` uses without `--config`. Unknown keys are
//! errors, and every validation error names the key (and, when read from a file, its line).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Enforce the verdicts, or only decide, log and count them.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Report,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mode: Mode,
    pub milter: MilterConfig,
    pub marking: MarkingConfig,
    pub routing: RoutingConfig,
    pub limits: Limits,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub socketmap: SocketmapConfig,
    pub encryption: EncryptionConfig,
}

/// S/MIME encryption for recipients without a secure route who have a registered certificate.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Encrypt rather than reject, when every recipient without a secure route has a valid
    /// certificate.
    pub enabled: bool,
    /// `aes-256-gcm` (CMS AuthEnvelopedData) or `aes-256-cbc` (EnvelopedData, older clients).
    pub cipher: crate::smime::encrypt::Cipher,
    /// The hub's archive/escrow certificate (PEM): every encrypted message is encrypted for it
    /// too.
    pub escrow_certificate: Option<PathBuf>,
    /// Replaces the outer Subject of an encrypted message (the real one travels inside);
    /// "" keeps it.
    pub neutral_subject: String,
    /// In the Subject, forces encryption for any marking up to the ceiling; removed after use.
    /// "" for none.
    pub trigger: String,
    /// The largest message encrypted; a message above it that needs encryption is rejected.
    pub max_message_bytes: usize,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            enabled: true,
            cipher: crate::smime::encrypt::Cipher::Aes256Gcm,
            escrow_certificate: None,
            neutral_subject: String::new(),
            trigger: "[encrypt]".into(),
            max_message_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SocketmapConfig {
    /// Address of the socketmap server (maps `transport`, `tlspolicy`, `mailertable`,
    /// `access`); "" (the default) for none, until the MTA is set up to ask it.
    pub listen: String,
    /// The Sendmail mailer a `mailertable` answer names (`esmtp:[mx.firm.co.uk]`).
    pub sendmail_mailer: String,
}

impl Default for SocketmapConfig {
    fn default() -> Self {
        SocketmapConfig {
            listen: String::new(),
            sendmail_mailer: "esmtp".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of /metrics, /healthz and /readyz; "" turns the endpoint off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9357".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    /// `inet:HOST:PORT` or `unix:/path/to/socket`.
    pub listen: String,
    /// Octal permissions of a unix socket, e.g. "0660".
    pub socket_mode: Option<String>,
    /// Group that owns a unix socket (e.g. "postfix"), so the MTA can connect.
    pub socket_group: Option<String>,
    /// Internal deadline for one milter stage, in milliseconds; past it the answer is tempfail.
    /// Keep it well under Postfix's `milter_command_timeout` (30 s) and `milter_content_timeout`.
    pub deadline_ms: u64,
    pub max_connections: usize,
}

/// One protective-marking level of the vocabulary.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// Canonical name, e.g. "OFFICIAL-SENSITIVE".
    pub name: String,
    /// Higher is more sensitive.
    pub rank: u32,
    /// Other spellings and equivalents. The canonical name is always a spelling too.
    /// Words may be separated by spaces, `-` or `:` in the text; case does not matter.
    #[serde(default)]
    pub spellings: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarkingConfig {
    /// Replaces the built-in vocabulary when given.
    pub levels: Option<Vec<LevelConfig>>,
    /// Extends the vocabulary: a known name gains the spellings, a new name is a new level.
    pub extra_levels: Vec<LevelConfig>,
    /// Words that may follow a marking: `OFFICIAL-SENSITIVE [PERSONAL]`.
    pub descriptors: Vec<String>,
    /// The highest level the service carries; anything above is rejected.
    pub ceiling: String,
    /// From this level up, every recipient needs a secure route.
    pub secure_from: String,
    /// The level of unmarked mail.
    pub default: String,
    /// Labels of a body line that states the marking: `Classification: OFFICIAL`.
    pub line_labels: Vec<String>,
    /// Everyday wording that resembles a marking but is none: `SECRET SANTA`.
    pub everyday_phrases: Vec<String>,
    /// Words that make CONFIDENTIAL next to them (up to four words before or after) the
    /// confidentiality of legal and commercial practice, read at the ceiling: `PRIVATE &
    /// CONFIDENTIAL`, `CONFIDENTIAL - LEGALLY PRIVILEGED`.
    pub confidential_qualifiers: Vec<String>,
    /// Microsoft Purview label GUID -> level name.
    pub msip_labels: BTreeMap<String, String>,
    /// Our own header stating the effective marking.
    pub header: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Domains (and their subdomains) on the government secure networks.
    pub secure_domains: Vec<String>,
    /// The hub's own secure suffix; its addresses are checked against the directory.
    pub secure_suffix: String,
    /// Put into the Subject of mail delivered to a secure-suffix recipient, once.
    pub subject_tag: String,
    /// Client address ranges (CIDR) of peers on the government secure networks: their mail
    /// arrives over an accredited network, so the TLS rule below does not apply to it.
    pub secure_networks: Vec<String>,
    /// Client address ranges of the hub's own hosts (e.g. "127.0.0.1/32" for mail submitted
    /// on the MTA host): trusted as the sender says, without certificate or SMTP AUTH.
    pub trusted_networks: Vec<String>,
    /// Inbound mail marked at or above this level, to a secure address, must arrive over TLS
    /// (from a peer that is not on a secure or trusted network); "" for never.
    pub require_tls_from: String,
    /// Address translation for server-connected organisations: `alice@firm.co.uk` sending
    /// from the organisation's server becomes `alice@firm.co.uk.<secure_suffix>`, and mail to
    /// `bob@firm.co.uk.<secure_suffix>` is delivered to `bob@firm.co.uk`.
    pub translate: bool,
    /// A header stating whether every recipient has a secure route (`secure`) or not
    /// (`open`), for `milter_header_checks` to FILTER on; "" for none.
    pub route_header: String,
    /// The closed community: a hub mailbox (under `secure_suffix`) receives only from secure
    /// senders (an authenticated hub user, a connected organisation's verified server, a
    /// client on `secure_networks` or `trusted_networks`), and a sender in `secure_domains`
    /// is believed only from `secure_networks` or `trusted_networks`. `false` opens both.
    pub closed_community: bool,
}

/// What to do with a message whose scan hit a bound (size, parts, nesting).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverLimit {
    /// Take the highest marking found, but at least the ceiling: secure recipients only.
    #[default]
    Ceiling,
    Quarantine,
    Reject,
    Tempfail,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Body bytes kept and scanned; the rest passes through unread.
    pub max_scan_bytes: usize,
    /// Header bytes kept (all headers together).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_parts: usize,
    /// Depth of attached messages read (message/rfc822 inside message/rfc822 ...).
    pub max_depth: usize,
    /// Recipients of one message.
    pub max_recipients: usize,
    pub on_exceeded: OverLimit,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    File,
    Redis,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: Backend,
    /// File store: a directory the milter owns.
    pub path: PathBuf,
    /// Redis store: `redis://`, `rediss://` (TLS), `redis+sentinel://` or several
    /// `redis://` URLs separated by commas for a Cluster.
    pub url: Option<String>,
    /// `rediss://`: the CA (PEM) that issued the server's certificate, for a private CA.
    pub tls_ca_file: Option<PathBuf>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Audit entries kept (Redis stream length, or file store log lines).
    pub audit_retention: usize,
    /// How long the milter may answer a lookup from its cache, in milliseconds. Changes are
    /// also pushed to every milter at once (Redis pub/sub); this bounds a missed push.
    pub cache_ttl_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Where log lines go.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum LogTarget {
    #[default]
    #[serde(rename = "stderr")]
    Stderr,
    /// The mail facility of syslog, beside the MTA's own lines.
    #[serde(rename = "syslog")]
    Syslog,
    /// Syslog, and a copy on stderr (for a milter run in the foreground).
    #[serde(rename = "syslog+stderr")]
    SyslogAndStderr,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `stderr`, `syslog` or `syslog+stderr`.
    pub target: LogTarget,
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "cjsm_milter=debug".
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Enforce,
            milter: MilterConfig::default(),
            marking: MarkingConfig::default(),
            routing: RoutingConfig::default(),
            limits: Limits::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            socketmap: SocketmapConfig::default(),
            encryption: EncryptionConfig::default(),
        }
    }
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: "inet:127.0.0.1:7357".into(),
            socket_mode: None,
            socket_group: None,
            deadline_ms: 10_000,
            max_connections: 500,
        }
    }
}

fn level(name: &str, rank: u32, spellings: &[&str]) -> LevelConfig {
    LevelConfig {
        name: name.into(),
        rank,
        spellings: spellings.iter().map(|s| s.to_string()).collect(),
    }
}

/// The CJSM profile: UK Government Security Classifications with their legacy and commercial
/// equivalents, and the Australian PSPF levels.
pub fn cjsm_levels() -> Vec<LevelConfig> {
    vec![
        level(
            "OFFICIAL",
            10,
            &[
                "UNCLASSIFIED",
                "NOT PROTECTIVELY MARKED",
                "PROTECT",
                "UNOFFICIAL",
            ],
        ),
        level(
            "OFFICIAL-SENSITIVE",
            20,
            &[
                "RESTRICTED",
                // OFFICIAL-SENSITIVE's own word, standing apart (`[SENSITIVE] OFFICIAL: …`).
                "SENSITIVE",
                "PRIVATE",
                "PRIVATE AND CONFIDENTIAL",
                "STRICTLY PRIVATE AND CONFIDENTIAL",
                "COMMERCIAL IN CONFIDENCE",
                "COMPANY CONFIDENTIAL",
                "COMMERCIALLY CONFIDENTIAL",
                "STRICTLY CONFIDENTIAL",
                // Legal professional privilege: the confidentiality of legal practice, not
                // the government classification CONFIDENTIAL.
                "LEGALLY PRIVILEGED",
                "PRIVILEGED AND CONFIDENTIAL",
                "PRIVILEGED & CONFIDENTIAL",
                "CONFIDENTIAL AND PRIVILEGED",
                "CONFIDENTIAL & PRIVILEGED",
                "CONFIDENTIAL AND LEGALLY PRIVILEGED",
                "LEGALLY PRIVILEGED AND CONFIDENTIAL",
            ],
        ),
        level("CONFIDENTIAL", 30, &[]),
        level("PROTECTED", 35, &[]),
        level("SECRET", 40, &[]),
        level("TOP SECRET", 50, &[]),
    ]
}

impl Default for MarkingConfig {
    fn default() -> Self {
        MarkingConfig {
            levels: None,
            extra_levels: Vec::new(),
            // Not SENSITIVE: "OFFICIAL [SENSITIVE]" is OFFICIAL-SENSITIVE, never OFFICIAL.
            descriptors: ["PERSONAL", "COMMERCIAL", "LOCSEN"]
                .map(String::from)
                .to_vec(),
            ceiling: "OFFICIAL-SENSITIVE".into(),
            secure_from: "OFFICIAL-SENSITIVE".into(),
            default: "OFFICIAL-SENSITIVE".into(),
            line_labels: [
                "Classification",
                "Protective Marking",
                "Security Classification",
                "Security Marking",
                "Marking",
            ]
            .map(String::from)
            .to_vec(),
            everyday_phrases: [
                "SECRET SANTA",
                "SECRET BALLOT",
                "SECRET RECORDING",
                "SECRET RECORDINGS",
                "SECRET SERVICE",
                "SECRET INTELLIGENCE SERVICE",
                "TRADE SECRET",
                "TRADE SECRETS",
                "SECRET COMMISSION",
                "SECRET COMMISSIONS",
                "SECRET TRUST",
                "SECRET TRUSTS",
                "SECRET PROFIT",
                "SECRET PROFITS",
                "SECRET CAMERA",
                "SECRET CAMERAS",
                "PROTECTED DISCLOSURE",
                "PROTECTED DISCLOSURES",
                "PROTECTED CHARACTERISTIC",
                "PROTECTED CHARACTERISTICS",
                "PROTECTED PARTY",
                "PROTECTED PARTIES",
                "PROTECTED PERSON",
                "PROTECTED PERSONS",
                "PROTECTED WITNESS",
                "PROTECTED WITNESSES",
                "PROTECTED CONVERSATION",
                "PROTECTED CONVERSATIONS",
                "PROTECTED TENANCY",
                "PROTECTED TENANT",
                "PROTECTED TENANTS",
                "PROTECTED SHORTHOLD",
                "PROTECTED TRUST DEED",
                "PROTECTED ADULT",
                "PROTECTED ADULTS",
                "PROTECTED CHILD",
                "PROTECTED CHILDREN",
                "PROTECTED MATERIAL",
                "PROTECTED VICTIM",
                "PROTECTED VICTIMS",
                "PROTECTED SPECIES",
                // Words one letter away from a marking.
                "PROJECTED",
                "PROTESTED",
                "PROTECTEE",
                "PROTECTEES",
                "PROTECTOR",
                "SECRETE",
                "SECRETED",
                "SECRETT",
            ]
            .map(String::from)
            .to_vec(),
            confidential_qualifiers: [
                "PRIVATE",
                "PERSONAL",
                "PRIVILEGED",
                "PRIVILEGE",
                "LEGALLY",
                "LEGAL",
                "PREJUDICE",
                "HIGHLY",
                "STRICTLY",
                "COMMERCIAL",
                "COMMERCIALLY",
                "COMPANY",
                "BUSINESS",
                "CLIENT",
                "SOLICITOR",
                "ATTORNEY",
                "ATTORNEYS",
                "ADDRESSEE",
                "MEDICAL",
                "STAFF",
                "WASTE",
                "NON",
                "NOT",
                "LPP",
                "CONTRACT",
                "SETTLEMENT",
                "SENSITIVE",
                "HUMAN",
                "SOURCE",
                "MARAC",
                "MAPPA",
            ]
            .map(String::from)
            .to_vec(),
            msip_labels: BTreeMap::new(),
            header: "X-CJSM-Marking".into(),
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            secure_domains: [
                "gsi.gov.uk",
                "gsx.gov.uk",
                "gse.gov.uk",
                "gcsx.gov.uk",
                "pnn.police.uk",
            ]
            .map(String::from)
            .to_vec(),
            secure_suffix: "cjsm.net".into(),
            subject_tag: "[CJSM]".into(),
            secure_networks: Vec::new(),
            trusted_networks: Vec::new(),
            require_tls_from: "OFFICIAL-SENSITIVE".into(),
            translate: true,
            route_header: "X-CJSM-Route".into(),
            closed_community: true,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_scan_bytes: 16 * 1024 * 1024,
            max_header_bytes: 2 * 1024 * 1024,
            max_headers: 1000,
            max_parts: 500,
            max_depth: 3,
            max_recipients: 1000,
            on_exceeded: OverLimit::Ceiling,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::File,
            path: PathBuf::from("/var/lib/cjsm-milter"),
            url: None,
            tls_ca_file: None,
            key_prefix: "cjsm".into(),
            audit_retention: 100_000,
            cache_ttl_ms: 1000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            target: LogTarget::Stderr,
            format: LogFormat::Plain,
            level: "info".into(),
        }
    }
}

/// A config error that names the file, the line (when known) and the key at fault.
#[derive(Debug)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => write!(f, "config")?,
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.into()),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text).map_err(|mut e| {
            e.file = Some(path.into());
            e
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of_offset(text, span.start));
            ConfigError {
                file: None,
                line,
                key: line.and_then(|line| key_at_line(text, line)),
                message: e.message().trim().to_string(),
            }
        })?;
        config.validate().map_err(|(key, message)| ConfigError {
            file: None,
            line: line_of_key(text, &key),
            key: Some(key),
            message,
        })?;
        Ok(config)
    }

    /// Semantic checks the TOML types cannot express. Returns (key, reason).
    fn validate(&self) -> Result<(), (String, String)> {
        let vocabulary = crate::marking::Vocabulary::from_config(&self.marking)?;
        if self.milter.deadline_ms == 0 {
            return Err(("milter.deadline_ms".into(), "must be above 0".into()));
        }
        if self.milter.max_connections == 0 {
            return Err(("milter.max_connections".into(), "must be above 0".into()));
        }
        crate::listen::ListenAddr::parse(&self.milter.listen)
            .map_err(|e| ("milter.listen".to_string(), e))?;
        if let Some(mode) = &self.milter.socket_mode {
            parse_octal_mode(mode).map_err(|e| ("milter.socket_mode".to_string(), e))?;
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err((
                "metrics.listen".into(),
                format!(
                    "{:?}: expected ADDRESS:PORT such as 127.0.0.1:9357, or \"\" for none",
                    self.metrics.listen
                ),
            ));
        }
        if !self.socketmap.listen.is_empty()
            && self
                .socketmap
                .listen
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err((
                "socketmap.listen".into(),
                format!(
                    "{:?}: expected ADDRESS:PORT such as 127.0.0.1:7358, or \"\" for none",
                    self.socketmap.listen
                ),
            ));
        }
        for (key, ranges) in [
            ("routing.secure_networks", &self.routing.secure_networks),
            ("routing.trusted_networks", &self.routing.trusted_networks),
        ] {
            for range in ranges {
                parse_network(range).map_err(|e| (key.to_string(), e))?;
            }
        }
        if !self.routing.require_tls_from.is_empty() {
            vocabulary.level_by_name("routing.require_tls_from", &self.routing.require_tls_from)?;
        }
        // "" turns the routing header off.
        let route_header = &self.routing.route_header;
        if !route_header.is_empty() && !is_header_name(route_header) {
            return Err((
                "routing.route_header".into(),
                format!("{:?} is not a header name", self.routing.route_header),
            ));
        }
        if self.encryption.max_message_bytes == 0 {
            return Err((
                "encryption.max_message_bytes".into(),
                "must be above 0".into(),
            ));
        }
        if self.encryption.neutral_subject.contains(['\r', '\n']) {
            return Err((
                "encryption.neutral_subject".into(),
                "must be one line".into(),
            ));
        }
        if self.routing.secure_suffix.trim().is_empty() {
            return Err(("routing.secure_suffix".into(), "must not be empty".into()));
        }
        if !is_header_name(&self.marking.header) {
            return Err((
                "marking.header".into(),
                format!("{:?} is not a valid header name", self.marking.header),
            ));
        }
        if self.routing.subject_tag.trim().is_empty()
            || self.routing.subject_tag.contains(['\r', '\n'])
        {
            return Err((
                "routing.subject_tag".into(),
                "must be non-empty text on one line".into(),
            ));
        }
        for (key, value) in [
            ("limits.max_scan_bytes", self.limits.max_scan_bytes),
            ("limits.max_header_bytes", self.limits.max_header_bytes),
            ("limits.max_headers", self.limits.max_headers),
            ("limits.max_parts", self.limits.max_parts),
            ("limits.max_recipients", self.limits.max_recipients),
        ] {
            if value == 0 {
                return Err((key.into(), "must be above 0".into()));
            }
        }
        if self.store.cache_ttl_ms > 1000 {
            return Err((
                "store.cache_ttl_ms".into(),
                "at most 1000: a suspension must reach every milter within a second even when a change notice is missed".into(),
            ));
        }
        let prefix = &self.store.key_prefix;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err((
                "store.key_prefix".into(),
                format!("{prefix:?}: use letters, digits, '-', '_', '.' or ':'"),
            ));
        }
        if self.store.backend == Backend::Redis && self.store.url.is_none() {
            return Err(("store.url".into(), "the redis backend needs `url`".into()));
        }
        Ok(())
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// A client address range: `192.0.2.0/24`, `2001:db8::/32`, or one address.
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?}: expected an address range such as 192.0.2.0/24"))
}

pub fn parse_octal_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal file mode such as \"0660\""))
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key defined on a line (`[table]` headers above it give the prefix).
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (index, content) in text.lines().enumerate().take(line) {
        let trimmed = content.trim();
        if trimmed.starts_with('[') {
            table = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        } else if index + 1 == line {
            let (key, _) = trimmed.split_once('=')?;
            let key = key.trim().trim_matches('"');
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

/// Finds the line of `table.key = …` in the text: the first line defining `key` after the
/// `[table]` header (or anywhere for a top-level key).
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = match dotted.rsplit_once('.') {
        Some((table, key)) => (Some(table), key),
        None => (None, dotted),
    };
    let mut in_table = table.is_none();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let name = trimmed.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = table.is_some_and(|t| t == name);
            continue;
        }
        if in_table
            && let Some((k, _)) = trimmed.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return Some(index + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        Config::parse("").unwrap();
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err = Config::parse("mode = \"report\"\n[milter]\nlisen = \"x\"\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("lisen"), "{err}");
    }

    #[test]
    fn semantic_error_names_key_and_line() {
        let err = Config::parse("[marking]\nheader = \"X-A\"\nceiling = \"BOGUS\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("marking.ceiling"), "{err}");
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().contains("BOGUS"), "{err}");
    }

    #[test]
    fn bad_listen_is_refused() {
        let err = Config::parse("[milter]\nlisten = \"tcp:1\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("milter.listen"));
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn report_mode_parses() {
        let config = Config::parse("mode = \"report\"\n").unwrap();
        assert_eq!(config.mode, Mode::Report);
    }

    #[test]
    fn octal_modes() {
        assert_eq!(parse_octal_mode("0660"), Ok(0o660));
        assert!(parse_octal_mode("999").is_err());
        assert!(parse_octal_mode("07777").is_err());
    }
}
