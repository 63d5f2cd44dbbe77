//! The configuration: one TOML file, every key optional, the CJSM profile as the default.
//!
//! `Config::default()` is what `cjsm-milter run` uses without `--config`. Unknown keys are
//! errors, and every error names the key (and, when read from a file, its line).
//!
//! Values are parsed as they are read (addresses, ranges, modes, durations; `Option` where
//! `""` turns a feature off), so nothing downstream parses a setting again. What needs the
//! vocabulary or the file system (level names, the escrow certificate) is checked when the
//! settings are compiled into an engine (`crate::engine::compile`), with the same file, line
//! and key. Config is data: it imports nothing of the marking, the listener or S/MIME.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

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
    pub web: WebConfig,
    /// Where the settings were read, for errors found once they are compiled.
    #[serde(skip)]
    pub source: Source,
}

/// S/MIME encryption for recipients without a secure route who have a registered certificate.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Encrypt rather than reject, when every recipient without a secure route has a valid
    /// certificate.
    pub enabled: bool,
    /// `aes-256-gcm` (CMS AuthEnvelopedData) or `aes-256-cbc` (EnvelopedData, older clients).
    pub cipher: Cipher,
    /// The hub's archive/escrow certificate (PEM): every encrypted message is encrypted for it
    /// too.
    pub escrow_certificate: Option<PathBuf>,
    /// Replaces the outer Subject of an encrypted message (the real one travels inside);
    /// blank (`None`) keeps it.
    #[serde(deserialize_with = "de::one_line_or_blank")]
    pub neutral_subject: Option<String>,
    /// In the Subject, forces encryption for any marking up to the ceiling; removed after use.
    /// Blank (`None`) for none.
    #[serde(deserialize_with = "de::text_or_blank")]
    pub trigger: Option<String>,
    /// The largest message encrypted; a message above it that needs encryption is rejected.
    pub max_message_bytes: usize,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            enabled: true,
            cipher: Cipher::Aes256Gcm,
            escrow_certificate: None,
            neutral_subject: None,
            trigger: Some("[encrypt]".into()),
            max_message_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The content cipher of an encrypted message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub enum Cipher {
    /// AES-256-GCM: CMS AuthEnvelopedData (RFC 5083), `smime-type=authEnveloped-data`.
    #[default]
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// AES-256-CBC: CMS EnvelopedData, `smime-type=enveloped-data`, for older clients.
    #[serde(rename = "aes-256-cbc")]
    Aes256Cbc,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SocketmapConfig {
    /// Address of the socketmap server (maps `transport`, `tlspolicy`, `mailertable`,
    /// `access`); "" (`None`, the default) for none, until the MTA is set up to ask it.
    #[serde(deserialize_with = "de::socket_addr_or_empty")]
    pub listen: Option<SocketAddr>,
    /// The Sendmail mailer a `mailertable` answer names (`esmtp:[mx.firm.co.uk]`).
    pub sendmail_mailer: String,
}

impl Default for SocketmapConfig {
    fn default() -> Self {
        SocketmapConfig {
            listen: None,
            sendmail_mailer: "esmtp".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of /metrics, /healthz and /readyz; "" (`None`) turns the endpoint off.
    #[serde(deserialize_with = "de::socket_addr_or_empty")]
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9357))),
        }
    }
}

/// The website (`cjsm-milter web`), its own process beside the milter.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address of the website. HTTPS when `tls_cert_file` and `tls_key_file` are set; else
    /// plain HTTP, on a loopback address only (behind a reverse proxy that serves HTTPS).
    #[serde(deserialize_with = "de::parsed")]
    pub listen: SocketAddr,
    /// The website's certificate (PEM, the chain after it) and its private key (PEM).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Plain HTTP behind a reverse proxy on this machine that serves HTTPS: cookies are
    /// marked `Secure`, and the client address is the last one the proxy adds to
    /// `X-Forwarded-For` (read only from a proxy on loopback).
    pub behind_https_proxy: bool,
    /// Address of the website's /metrics; "" (`None`) turns it off.
    #[serde(deserialize_with = "de::socket_addr_or_empty")]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a sign-in lasts, in minutes.
    pub session_minutes: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert_file: None,
            tls_key_file: None,
            behind_https_proxy: false,
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9358))),
            session_minutes: 480,
        }
    }
}

impl WebConfig {
    /// The website speaks HTTPS itself.
    pub fn https(&self) -> bool {
        self.tls_cert_file.is_some() && self.tls_key_file.is_some()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    /// `inet:HOST:PORT` or `unix:/path/to/socket`.
    #[serde(deserialize_with = "de::parsed")]
    pub listen: ListenAddr,
    /// Permissions of a unix socket, written in octal in the file, e.g. "0660".
    #[serde(deserialize_with = "de::octal_mode")]
    pub socket_mode: Option<u32>,
    /// Group that owns a unix socket (e.g. "postfix"), so the MTA can connect.
    pub socket_group: Option<String>,
    /// Internal deadline for one milter stage (and one socketmap query), in milliseconds; past
    /// it the answer is tempfail (TEMP for the socketmap).
    /// Keep it well under Postfix's `milter_command_timeout` (30 s) and `milter_content_timeout`.
    #[serde(rename = "deadline_ms", deserialize_with = "de::millis")]
    pub deadline: Duration,
    pub max_connections: usize,
    /// Started as root, the account `run` becomes once its sockets are bound. Unset (`None`):
    /// `cjsm-milter`, or `nobody` with a warning where that account does not exist. `""`:
    /// none, so root is refused unless `allow_root`. Unused when started unprivileged.
    pub user: Option<String>,
    /// The group it becomes; unset: the user's own (login) group.
    pub group: Option<String>,
    /// Started as root, stay root (no `user`, no `group`): for a host that cannot give the
    /// milter an account of its own. Off, root without a usable user is refused.
    pub allow_root: bool,
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
    ///
    /// This and the other lists of words below are `None` when the file leaves them out: the
    /// marking module's CJSM profile (`marking::profile`) then supplies them, so the profile
    /// is written once, beside the code that reads it.
    pub levels: Option<Vec<LevelConfig>>,
    /// Extends the vocabulary: a known name gains the spellings, a new name is a new level.
    pub extra_levels: Vec<LevelConfig>,
    /// Words that may follow a marking: `OFFICIAL-SENSITIVE [PERSONAL]`.
    pub descriptors: Option<Vec<String>>,
    /// The highest level the service carries; anything above is rejected.
    pub ceiling: String,
    /// From this level up, every recipient needs a secure route.
    pub secure_from: String,
    /// The level of unmarked mail.
    pub default: String,
    /// Labels of a body line that states the marking: `Classification: OFFICIAL`.
    pub line_labels: Option<Vec<String>>,
    /// Everyday wording that resembles a marking but is none: `SECRET SANTA`.
    pub everyday_phrases: Option<Vec<String>>,
    /// Words that make CONFIDENTIAL next to them (up to four words before or after) the
    /// confidentiality of legal and commercial practice, read at the ceiling: `PRIVATE &
    /// CONFIDENTIAL`, `CONFIDENTIAL - LEGALLY PRIVILEGED`.
    pub confidential_qualifiers: Option<Vec<String>>,
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
    #[serde(deserialize_with = "de::networks")]
    pub secure_networks: Vec<ipnet::IpNet>,
    /// Client address ranges of the hub's own hosts (e.g. "127.0.0.1/32" for mail submitted
    /// on the MTA host): trusted as the sender says, without certificate or SMTP AUTH.
    #[serde(deserialize_with = "de::networks")]
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Inbound mail marked at or above this level, to a secure address, must arrive over TLS
    /// (from a peer that is not on a secure or trusted network); "" (`None`) for never. A
    /// level name: the compiled engine holds the level.
    #[serde(deserialize_with = "de::text_or_empty")]
    pub require_tls_from: Option<String>,
    /// Address translation for server-connected organisations: `alice@firm.co.uk` sending
    /// from the organisation's server becomes `alice@firm.co.uk.<secure_suffix>`, and mail to
    /// `bob@firm.co.uk.<secure_suffix>` is delivered to `bob@firm.co.uk`.
    pub translate: bool,
    /// A header stating whether every recipient has a secure route (`secure`) or not
    /// (`open`), for `milter_header_checks` to FILTER on; "" (`None`) for none.
    #[serde(deserialize_with = "de::text_or_empty")]
    pub route_header: Option<String>,
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
    /// The embedded store, a SQLite database in `path`. `"file"`, its name before SQLite, is
    /// still accepted, so existing configs keep working.
    #[serde(alias = "file", alias = "embedded")]
    Sqlite,
    Redis,
}

/// `Debug` is written out, not derived: the URL is shown with its password hidden.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: Backend,
    /// The embedded store: a directory the milter owns, holding the database.
    pub path: PathBuf,
    /// Redis store: `redis://`, `rediss://` (TLS), `redis+sentinel://` or several
    /// `redis://` URLs separated by commas for a Cluster.
    pub url: Option<String>,
    /// `rediss://`: the CA (PEM) that issued the server's certificate, for a private CA.
    pub tls_ca_file: Option<PathBuf>,
    /// `rediss://` with a client certificate (mutual TLS): the certificate (PEM, the chain
    /// after it) and its private key (PEM). Both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The Redis ACL user the milter logs in as (`AUTH username password`); the server's
    /// `default` user when unset. Needs `password_file`.
    pub username: Option<String>,
    /// A file holding the Redis password alone (one line): read at start, never shown. Kept
    /// out of the URL, which appears in logs and on command lines.
    pub password_file: Option<PathBuf>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Audit entries kept (the Redis stream's length, or the embedded store's audit table).
    pub audit_retention: usize,
    /// How long the milter may answer a lookup from its cache, in milliseconds. Changes are
    /// also pushed to every milter at once (Redis pub/sub); this bounds a missed push.
    #[serde(rename = "cache_ttl_ms", deserialize_with = "de::millis")]
    pub cache_ttl: Duration,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(crate::store::redact_url))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("key_prefix", &self.key_prefix)
            .field("audit_retention", &self.audit_retention)
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
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
            web: WebConfig::default(),
            source: Source::default(),
        }
    }
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: ListenAddr::Inet(SocketAddr::from(([127, 0, 0, 1], 7357))),
            socket_mode: None,
            socket_group: None,
            deadline: Duration::from_millis(10_000),
            max_connections: 500,
            user: None,
            group: None,
            allow_root: false,
        }
    }
}

impl Default for MarkingConfig {
    fn default() -> Self {
        MarkingConfig {
            levels: None,
            extra_levels: Vec::new(),
            descriptors: None,
            ceiling: "OFFICIAL-SENSITIVE".into(),
            secure_from: "OFFICIAL-SENSITIVE".into(),
            default: "OFFICIAL-SENSITIVE".into(),
            line_labels: None,
            everyday_phrases: None,
            confidential_qualifiers: None,
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
            require_tls_from: Some("OFFICIAL-SENSITIVE".into()),
            translate: true,
            route_header: Some("X-CJSM-Route".into()),
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
            backend: Backend::Sqlite,
            path: PathBuf::from("/var/lib/cjsm-milter"),
            url: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            username: None,
            password_file: None,
            key_prefix: "cjsm".into(),
            audit_retention: 100_000,
            cache_ttl: Duration::from_millis(1000),
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

/// Where the MTA connects: `inet:HOST:PORT` (also `inet:PORT@HOST`) or `unix:/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(text: &str) -> Result<ListenAddr, BadValue> {
        if let Some(addr) = text.strip_prefix("inet:") {
            // `inet:PORT@HOST` (Sendmail style) or `inet:HOST:PORT`.
            let normalized = match addr.split_once('@') {
                Some((port, host)) => format!("{host}:{port}"),
                None => addr.to_string(),
            };
            let normalized = normalized.replace("localhost:", "127.0.0.1:");
            normalized
                .parse::<SocketAddr>()
                .map(ListenAddr::Inet)
                .map_err(|_| BadValue::InetAddress(text.into()))
        } else if let Some(path) = text
            .strip_prefix("unix:")
            .or_else(|| text.strip_prefix("local:"))
        {
            if path.is_empty() {
                return Err(BadValue::EmptySocketPath(text.into()));
            }
            Ok(ListenAddr::Unix(PathBuf::from(path)))
        } else {
            Err(BadValue::ListenAddress(text.into()))
        }
    }
}

impl FromStr for ListenAddr {
    type Err = BadValue;

    fn from_str(text: &str) -> Result<ListenAddr, BadValue> {
        ListenAddr::parse(text)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Inet(addr) => write!(f, "inet:{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// How much of a value an error shows: enough to find it in the file, never a whole
/// (possibly huge, possibly hostile) value on the admin's terminal or in the log.
const SHOWN_CHARS: usize = 80;

/// At most [`SHOWN_CHARS`] characters of `text`, then "…" when there were more.
fn short(text: &str) -> String {
    cut(text, SHOWN_CHARS)
}

/// At most `chars` characters of `text`, then "…" when there were more.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// `text` quoted and escaped as Rust writes a string, cut to [`SHOWN_CHARS`] characters first.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// A value the file writes as text that does not parse as what its key needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    #[error("{}: expected inet:ADDRESS:PORT, e.g. inet:127.0.0.1:7357", quoted(.0))]
    InetAddress(String),
    #[error("{}: the unix socket path is empty", quoted(.0))]
    EmptySocketPath(String),
    #[error("{}: expected inet:ADDRESS:PORT or unix:/path/to/socket", quoted(.0))]
    ListenAddress(String),
    #[error("{}: expected ADDRESS:PORT such as 127.0.0.1:9357, or \"\" for none", quoted(.0))]
    SocketAddress(String),
    #[error("{} is not an octal file mode such as \"0660\"", quoted(.0))]
    FileMode(String),
    #[error("{}: expected an address range such as 192.0.2.0/24", quoted(.0))]
    Network(String),
    #[error("must be one line")]
    NotOneLine,
}

/// A client address range: `192.0.2.0/24`, `2001:db8::/32`, or one address.
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, BadValue> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| BadValue::Network(text.into()))
}

/// A file mode written in octal (`"0660"`, `"0o660"`), at most `0777`.
pub fn parse_octal_mode(text: &str) -> Result<u32, BadValue> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| BadValue::FileMode(text.into()))
}

/// A config error that names the file, the line (when known) and the key at fault.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    /// Boxed: an error is rare, and the `Result`s that carry it stay small.
    pub kind: Box<ConfigErrorKind>,
}

/// What is wrong, whatever the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigErrorKind {
    #[error("cannot read: {0}")]
    Unreadable(std::io::Error),
    /// Not TOML, an unknown key, a value of the wrong type or one that does not parse
    /// ([`BadValue`]): toml's own words, which may quote a value of any length; cut long
    /// enough to keep the list of keys or values it expects.
    #[error("{}", cut(.0, 8 * SHOWN_CHARS))]
    Toml(String),
    #[error("must be above 0")]
    NotAboveZero,
    #[error("{} is not a user or group name (letters, digits, '.', '_', '-'; at most 32)", quoted(.0))]
    NotAnAccountName(String),
    #[error("allow_root = true keeps root: leave out user and group (or set allow_root = false)")]
    RootAndAccount,
    #[error("a group needs a user: user = \"\" means no user to run as")]
    GroupWithoutUser,
    #[error("must not be empty")]
    Empty,
    #[error("must be non-empty text on one line")]
    NotOneNonEmptyLine,
    #[error("{} is not a header name", quoted(.0))]
    NotAHeaderName(String),
    #[error(
        "at most 1000: a suspension must reach every milter within a second even when a change notice is missed"
    )]
    CacheTooLong,
    #[error("{}: use letters, digits, '-', '_', '.' or ':'", quoted(.0))]
    KeyPrefix(String),
    #[error("the redis backend needs `url`")]
    RedisWithoutUrl,
    /// The URL itself is not repeated: it may hold a password.
    #[error(
        "a Sentinel URL names the Sentinels and the master's service: {}",
        crate::store::SENTINEL_FORM
    )]
    SentinelWithoutService,
    #[error("set both `tls_cert_file` and `tls_key_file`, or neither")]
    CertWithoutKey,
    #[error(
        "plain HTTP is served on a loopback address only (behind a reverse proxy): set `tls_cert_file` and `tls_key_file` to serve HTTPS on {0}"
    )]
    PlainHttpOffLoopback(SocketAddr),
    #[error("a client certificate needs a TLS URL: `rediss://…` (or a Sentinel URL)")]
    CertWithoutTls,
    #[error("`username` needs `password_file`")]
    UsernameWithoutPassword,
    /// The URL is not repeated: it holds the other password.
    #[error(
        "the URL carries a user or password too: keep the credentials in `username` and `password_file` alone"
    )]
    CredentialsTwice,
    #[error("must be a user name on one line, without spaces")]
    BadUsername,
    #[error("at least one level is needed")]
    NoLevels,
    #[error("level name {} has no letters", quoted(.0))]
    LevelWithoutLetters(String),
    #[error("spelling {} of {} has no letters", quoted(.spelling), short(.level))]
    SpellingWithoutLetters { spelling: String, level: String },
    #[error("levels {} and {} share rank {rank}; ranks must differ", short(.first), short(.second))]
    SharedRank {
        first: String,
        second: String,
        rank: u32,
    },
    #[error("spelling {} belongs to both {} and {}", quoted(.spelling), short(.first), short(.second))]
    SpellingOfTwoLevels {
        spelling: String,
        first: String,
        second: String,
    },
    #[error("unknown level {}; levels are {}", quoted(.name), short(&known.join(", ")))]
    UnknownLevel { name: String, known: Vec<String> },
    #[error("must not be above marking.ceiling")]
    SecureFromAboveCeiling,
    /// A certificate file that cannot be read, parsed or used (the escrow certificate).
    #[error("{}: {problem}", short(&path.display().to_string()))]
    Certificate { path: PathBuf, problem: String },
}

impl ConfigError {
    /// An error at `key`; the file and line are added by [`Source::locate`].
    pub fn at(key: impl Into<String>, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            key: Some(key.into()),
            kind: Box::new(kind),
        }
    }
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
            // A key is the file's text too: a long one is cut like a value.
            write!(f, ", key `{}`", cut(key, 2 * SHOWN_CHARS))?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The largest config file read: real ones are a few kilobytes, and a path pointing at a huge
/// file or a device must not grow the daemon's memory without bound.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The bytes of a file the config names or is, refusing what is not a regular file or is
/// larger than `limit`. Opened without blocking (a FIFO would wait for a writer) and judged by
/// the opened file's own metadata, so a swap of the path after the check changes nothing.
pub fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    read_file_checked(path, limit, false)
}

/// As [`read_regular_file`], for a file holding a secret (a password, a private key): also
/// refused when every user on the machine may read or change it (any "other" permission bit),
/// judged on the opened file. Group access is allowed: `root:cjsm-milter 0640` is how the
/// daemon and the administrators share it. Errors never quote the content.
pub fn read_secret_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    read_file_checked(path, limit, true)
}

fn read_file_checked(path: &Path, limit: u64, secret: bool) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read as _};
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if secret && mode & 0o007 != 0 {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!("open to every user (mode {mode:04o}): a secret must not be; chmod o-rwx it"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Where a config was read: the file, and the line of every key in it (from toml's spans), so
/// that an error found after parsing (validation, compiling) names its line too.
#[derive(Clone, Debug, Default)]
pub struct Source {
    pub file: Option<PathBuf>,
    /// Dotted key (`marking.msip_labels.GUID`) → line of its first definition.
    lines: BTreeMap<String, usize>,
}

impl Source {
    /// The error with this source's file, and the line of its key when it has none.
    pub fn locate(&self, mut error: ConfigError) -> ConfigError {
        if error.file.is_none() {
            error.file.clone_from(&self.file);
        }
        if error.line.is_none() {
            error.line = error
                .key
                .as_deref()
                .and_then(|key| self.lines.get(key).copied());
        }
        error
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let unreadable = |e| ConfigError {
            file: Some(path.into()),
            line: None,
            key: None,
            kind: Box::new(ConfigErrorKind::Unreadable(e)),
        };
        let bytes = read_regular_file(path, MAX_CONFIG_BYTES).map_err(unreadable)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            unreadable(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        })?;
        let with_file = |mut e: ConfigError| {
            e.file = Some(path.into());
            e
        };
        let mut config = Config::parse(&text).map_err(with_file)?;
        config.source.file = Some(path.into());
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let toml_error = |e: toml::de::Error, keys: &[KeySpan]| {
            let offset = e.span().map(|span| span.start);
            ConfigError {
                file: None,
                line: offset.map(|offset| line_at(text, offset)),
                key: offset.and_then(|offset| key_at(keys, offset)),
                kind: Box::new(ConfigErrorKind::Toml(e.message().trim().to_string())),
            }
        };
        let document = toml::de::DeTable::parse(text).map_err(|e| toml_error(e, &[]))?;
        let keys = key_spans(document.get_ref());
        let mut config = Config::deserialize(toml::de::Deserializer::from(document))
            .map_err(|e| toml_error(e, &keys))?;
        let mut lines = BTreeMap::new();
        for key in &keys {
            lines
                .entry(key.path.clone())
                .or_insert_with(|| line_at(text, key.key.start));
        }
        config.source = Source { file: None, lines };
        config.validate().map_err(|e| config.source.locate(e))?;
        Ok(config)
    }

    /// Checks the types cannot express, of the settings alone (what needs the vocabulary or
    /// the file system is checked when the config is compiled).
    fn validate(&self) -> Result<(), ConfigError> {
        use ConfigErrorKind::*;
        let fail = |key: &str, kind| Err(ConfigError::at(key, kind));
        if self.milter.deadline.is_zero() {
            return fail("milter.deadline_ms", NotAboveZero);
        }
        if self.milter.max_connections == 0 {
            return fail("milter.max_connections", NotAboveZero);
        }
        for (key, name) in [
            (
                "milter.user",
                self.milter.user.as_deref().filter(|u| !u.is_empty()),
            ),
            ("milter.group", self.milter.group.as_deref()),
        ] {
            if let Some(name) = name
                && !is_account_name(name)
            {
                return fail(key, NotAnAccountName(name.to_string()));
            }
        }
        if self.milter.allow_root {
            if self.milter.user.as_deref().is_some_and(|u| !u.is_empty()) {
                return fail("milter.allow_root", RootAndAccount);
            }
            if self.milter.group.is_some() {
                return fail("milter.allow_root", RootAndAccount);
            }
        }
        if self.milter.user.as_deref() == Some("") && self.milter.group.is_some() {
            return fail("milter.group", GroupWithoutUser);
        }
        if let Some(route_header) = &self.routing.route_header
            && !is_header_name(route_header)
        {
            return fail("routing.route_header", NotAHeaderName(route_header.clone()));
        }
        if self.encryption.max_message_bytes == 0 {
            return fail("encryption.max_message_bytes", NotAboveZero);
        }
        if self.routing.secure_suffix.trim().is_empty() {
            return fail("routing.secure_suffix", Empty);
        }
        if !is_header_name(&self.marking.header) {
            return fail(
                "marking.header",
                NotAHeaderName(self.marking.header.clone()),
            );
        }
        if self.routing.subject_tag.trim().is_empty()
            || self.routing.subject_tag.contains(['\r', '\n'])
        {
            return fail("routing.subject_tag", NotOneNonEmptyLine);
        }
        for (key, value) in [
            ("limits.max_scan_bytes", self.limits.max_scan_bytes),
            ("limits.max_header_bytes", self.limits.max_header_bytes),
            ("limits.max_headers", self.limits.max_headers),
            ("limits.max_parts", self.limits.max_parts),
            ("limits.max_recipients", self.limits.max_recipients),
        ] {
            if value == 0 {
                return fail(key, NotAboveZero);
            }
        }
        if self.store.cache_ttl > Duration::from_millis(1000) {
            return fail("store.cache_ttl_ms", CacheTooLong);
        }
        let prefix = &self.store.key_prefix;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return fail("store.key_prefix", KeyPrefix(prefix.clone()));
        }
        if self.store.backend == Backend::Redis && self.store.url.is_none() {
            return fail("store.url", RedisWithoutUrl);
        }
        if let Some(url) = &self.store.url
            && url.starts_with("redis+sentinel://")
            && crate::store::sentinel_parts(url).is_none()
        {
            return fail("store.url", SentinelWithoutService);
        }
        let store = &self.store;
        if store.tls_cert_file.is_some() != store.tls_key_file.is_some() {
            let key = if store.tls_cert_file.is_some() {
                "store.tls_key_file"
            } else {
                "store.tls_cert_file"
            };
            return fail(key, CertWithoutKey);
        }
        if store.tls_cert_file.is_some()
            && let Some(url) = &store.url
            && !url
                .split(',')
                .all(|u| u.trim().starts_with("rediss://") || u.starts_with("redis+sentinel://"))
        {
            return fail("store.tls_cert_file", CertWithoutTls);
        }
        let web = &self.web;
        if web.tls_cert_file.is_some() != web.tls_key_file.is_some() {
            let key = if web.tls_cert_file.is_some() {
                "web.tls_key_file"
            } else {
                "web.tls_cert_file"
            };
            return fail(key, CertWithoutKey);
        }
        if !web.https() && !web.listen.ip().is_loopback() {
            return fail("web.listen", PlainHttpOffLoopback(web.listen));
        }
        if web.session_minutes == 0 {
            return fail("web.session_minutes", NotAboveZero);
        }
        if let Some(username) = &store.username {
            if username.is_empty()
                || username.len() > 256
                || !username.chars().all(|c| c.is_ascii_graphic())
            {
                return fail("store.username", BadUsername);
            }
            if store.password_file.is_none() {
                return fail("store.username", UsernameWithoutPassword);
            }
        }
        if store.password_file.is_some()
            && let Some(url) = &store.url
            && crate::store::redact_url(url) != *url
        {
            return fail("store.password_file", CredentialsTwice);
        }
        Ok(())
    }
}

/// A user or group name as `useradd` and `groupadd` accept one (at most 32 characters,
/// no `:` or white space), so that what the password database is asked for is short and plain.
fn is_account_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-$".contains(&b))
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// The line (from 1) of a byte offset: toml's spans are offsets.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A key of the document, dotted from the root, with the spans of the key and its value.
struct KeySpan {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

/// Every key of the document, tables and arrays of tables included (an array of tables adds
/// no index: `marking.levels.name`).
fn key_spans(root: &toml::de::DeTable<'_>) -> Vec<KeySpan> {
    fn walk(table: &toml::de::DeTable<'_>, prefix: &str, out: &mut Vec<KeySpan>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            out.push(KeySpan {
                path: path.clone(),
                key: key.span(),
                value: value.span(),
            });
            walk_value(value.get_ref(), &path, out);
        }
    }
    fn walk_value(value: &toml::de::DeValue<'_>, path: &str, out: &mut Vec<KeySpan>) {
        match value {
            toml::de::DeValue::Table(table) => walk(table, path, out),
            toml::de::DeValue::Array(items) => {
                for item in items.iter() {
                    walk_value(item.get_ref(), path, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

/// The innermost key whose name or value holds the byte at `offset`.
fn key_at(keys: &[KeySpan], offset: usize) -> Option<String> {
    keys.iter()
        .filter(|k| k.key.contains(&offset) || k.value.contains(&offset))
        .max_by_key(|k| k.path.matches('.').count())
        .map(|k| k.path.clone())
}

/// `deserialize_with` helpers: the file keeps its text forms, the config holds parsed values.
mod de {
    use super::{BadValue, parse_network, parse_octal_mode};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use std::fmt::Display;
    use std::net::SocketAddr;
    use std::str::FromStr;
    use std::time::Duration;

    /// Text parsed with `FromStr`.
    pub fn parsed<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr,
        T::Err: Display,
    {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }

    /// `ADDRESS:PORT`, `""` for none.
    pub fn socket_addr_or_empty<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| D::Error::custom(BadValue::SocketAddress(text)))
    }

    /// Text, `""` for none.
    pub fn text_or_empty<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok((!text.is_empty()).then_some(text))
    }

    /// Text, blank (empty or only white space) for none.
    pub fn text_or_blank<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok((!text.trim().is_empty()).then_some(text))
    }

    /// One line of text, blank for none.
    pub fn one_line_or_blank<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.contains(['\r', '\n']) {
            return Err(D::Error::custom(BadValue::NotOneLine));
        }
        Ok((!text.trim().is_empty()).then_some(text))
    }

    pub fn octal_mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_octal_mode(&text).map(Some).map_err(D::Error::custom)
    }

    pub fn networks<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<ipnet::IpNet>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| parse_network(text).map_err(D::Error::custom))
            .collect()
    }

    /// A whole number of milliseconds.
    pub fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
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
    fn errors_quote_only_the_start_of_a_long_value() {
        let long = format!("10.0.0.0/{}", "\u{e9}".repeat(500));
        let shown = parse_network(&long).unwrap_err().to_string();
        assert!(shown.starts_with("\"10.0.0.0/\u{e9}"), "{shown}");
        assert!(shown.contains("\"…: expected"), "{shown}");
        assert!(shown.chars().count() < 200, "{shown}");
        let short = parse_network("banana").unwrap_err().to_string();
        assert!(short.starts_with("\"banana\": "), "{short}");
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err = Config::parse("mode = \"report\"\n[milter]\nlisen = \"x\"\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().contains("lisen"), "{err}");
        assert_eq!(err.key.as_deref(), Some("milter.lisen"), "{err}");
    }

    #[test]
    fn semantic_error_names_key_and_line() {
        let err = Config::parse("[store]\nkey_prefix = \"a b\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("store.key_prefix"), "{err}");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.to_string().contains("a b"), "{err}");
    }

    #[test]
    fn a_sentinel_url_without_its_service_is_refused_without_its_password() {
        let text = "[store]\nbackend = \"redis\"\nurl = \"redis+sentinel://:secret@host:26379\"\n";
        let err = Config::parse(text).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("store.url"), "{err}");
        assert_eq!(err.line, Some(3), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(!format!("{err:?}").contains("secret"), "{err:?}");
        let config = Config::parse("[store]\nbackend = \"redis\"\nurl = \"redis+sentinel://:secret@host:26379/mymaster\"\n")
            .unwrap();
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn bad_listen_is_refused() {
        let err = Config::parse("[milter]\nlisten = \"tcp:1\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("milter.listen"));
        assert_eq!(err.line, Some(2));
        assert!(err.to_string().contains("unix:/path/to/socket"), "{err}");
    }

    /// The embedded store is `"sqlite"`; configs written before it say `"file"` (or the
    /// `"embedded"` the docs call it) and keep working; anything else is refused.
    #[test]
    fn the_embedded_store_answers_to_its_old_name() {
        for name in ["sqlite", "file", "embedded"] {
            let config = Config::parse(&format!("[store]\nbackend = \"{name}\"\n")).unwrap();
            assert_eq!(config.store.backend, Backend::Sqlite, "{name}");
        }
        assert_eq!(Config::default().store.backend, Backend::Sqlite);
        assert!(Config::parse("[store]\nbackend = \"json\"\n").is_err());
    }

    /// The Redis login and client certificate settings: both halves of a certificate, TLS for
    /// a certificate, a password for a user name, and the credentials in one place only (the
    /// URL is not repeated in the error: it would hold the other password).
    #[test]
    fn redis_login_settings_are_checked() {
        let redis = "[store]\nbackend = \"redis\"\n";
        let cases = [
            (
                "url = \"rediss://h/\"\ntls_cert_file = \"/c\"\n",
                "store.tls_key_file",
            ),
            (
                "url = \"rediss://h/\"\ntls_key_file = \"/k\"\n",
                "store.tls_cert_file",
            ),
            (
                "url = \"redis://h/\"\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\n",
                "store.tls_cert_file",
            ),
            (
                "url = \"redis://h/\"\nusername = \"cjsm\"\n",
                "store.username",
            ),
            (
                "url = \"redis://h/\"\nusername = \"a b\"\npassword_file = \"/p\"\n",
                "store.username",
            ),
            (
                "url = \"redis://:hunter2@h/\"\npassword_file = \"/p\"\n",
                "store.password_file",
            ),
        ];
        for (text, key) in cases {
            let err = Config::parse(&format!("{redis}{text}")).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let config = Config::parse(&format!(
            "{redis}url = \"rediss://h/\"\nusername = \"cjsm-milter\"\n\
             password_file = \"/etc/cjsm-milter/redis.pass\"\ntls_cert_file = \"/c\"\n\
             tls_key_file = \"/k\"\n"
        ))
        .unwrap();
        assert_eq!(config.store.username.as_deref(), Some("cjsm-milter"));
        // A Sentinel URL takes a client certificate for its master.
        Config::parse(&format!(
            "{redis}url = \"redis+sentinel://h:26379/m\"\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\n"
        ))
        .unwrap();
    }

    /// A secret file open to every user is refused, naming its mode, never its content; one
    /// shared with a group is read.
    #[test]
    fn secret_files_must_not_be_open_to_every_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redis.pass");
        std::fs::write(&path, "hunter2\n").unwrap();
        for mode in [0o644, 0o604, 0o602, 0o601] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_secret_file(&path, 64).unwrap_err().to_string();
            assert!(err.contains("every user"), "{mode:o}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        for mode in [0o600, 0o640, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_secret_file(&path, 64).unwrap(), b"hunter2\n");
        }
        assert!(read_secret_file(&path, 4).is_err());
        assert!(read_secret_file(dir.path(), 64).is_err());
    }

    #[test]
    fn values_are_parsed_on_load() {
        let config = Config::parse(
            "[milter]\nlisten = \"unix:/run/m.sock\"\nsocket_mode = \"0660\"\ndeadline_ms = 250\n\
             [metrics]\nlisten = \"\"\n[socketmap]\nlisten = \"127.0.0.1:7358\"\n\
             [routing]\ntrusted_networks = [\" 192.0.2.7 \", \"2001:db8::/32\"]\n\
             require_tls_from = \"\"\nroute_header = \"\"\n\
             [encryption]\ntrigger = \" \"\nneutral_subject = \"Secure message\"\n",
        )
        .unwrap();
        assert_eq!(config.milter.listen, ListenAddr::Unix("/run/m.sock".into()));
        assert_eq!(config.milter.socket_mode, Some(0o660));
        assert_eq!(config.milter.deadline, Duration::from_millis(250));
        assert_eq!(config.metrics.listen, None);
        assert_eq!(
            config.socketmap.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 7358)))
        );
        assert_eq!(
            config.routing.trusted_networks,
            vec![
                "192.0.2.7/32".parse::<ipnet::IpNet>().unwrap(),
                "2001:db8::/32".parse().unwrap()
            ]
        );
        assert_eq!(config.routing.require_tls_from, None);
        assert_eq!(config.routing.route_header, None);
        assert_eq!(config.encryption.trigger, None);
        assert_eq!(
            config.encryption.neutral_subject.as_deref(),
            Some("Secure message")
        );
    }

    #[test]
    fn bad_values_name_their_key_and_line() {
        let cases = [
            ("[milter]\nsocket_mode = \"999\"\n", "milter.socket_mode", 2),
            (
                "[milter]\nsocket_mode = \"07777\"\n",
                "milter.socket_mode",
                2,
            ),
            ("[milter]\nsocket_mode = 660\n", "milter.socket_mode", 2),
            ("[milter]\ndeadline_ms = 0\n", "milter.deadline_ms", 2),
            ("[milter]\nuser = \"a b\"\n", "milter.user", 2),
            ("[milter]\ngroup = \"\"\n", "milter.group", 2),
            (
                "[milter]\nuser = \"nobody\"\nallow_root = true\n",
                "milter.allow_root",
                3,
            ),
            (
                "[milter]\nuser = \"\"\ngroup = \"nogroup\"\n",
                "milter.group",
                3,
            ),
            ("[metrics]\nlisten = \"localhost\"\n", "metrics.listen", 2),
            // Plain HTTP only on loopback; a sign-in lasts a while.
            ("[web]\nlisten = \"0.0.0.0:8080\"\n", "web.listen", 2),
            ("[web]\nsession_minutes = 0\n", "web.session_minutes", 2),
            ("[socketmap]\nlisten = \" \"\n", "socketmap.listen", 2),
            (
                "[routing]\n\nsecure_networks = [\"10.0.0.0/8\", \"nowhere\"]\n",
                "routing.secure_networks",
                3,
            ),
            (
                "[routing]\nroute_header = \" \"\n",
                "routing.route_header",
                2,
            ),
            (
                "[encryption]\nneutral_subject = \"a\\nb\"\n",
                "encryption.neutral_subject",
                2,
            ),
            ("[store]\ncache_ttl_ms = 1001\n", "store.cache_ttl_ms", 2),
        ];
        for (text, key, line) in cases {
            let err = Config::parse(text).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text:?}: {err}");
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_later_error_is_located_by_its_key() {
        let config =
            Config::parse("[marking]\n\n[marking.msip_labels]\n\"guid\" = \"NOPE\"\n").unwrap();
        let err = config.source.locate(ConfigError::at(
            "marking.msip_labels.guid",
            ConfigErrorKind::NoLevels,
        ));
        assert_eq!(err.line, Some(4), "{err}");
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

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            ListenAddr::parse("inet:127.0.0.1:7357"),
            Ok(ListenAddr::Inet("127.0.0.1:7357".parse().unwrap()))
        );
        assert_eq!(
            ListenAddr::parse("inet:7357@127.0.0.1"),
            Ok(ListenAddr::Inet("127.0.0.1:7357".parse().unwrap()))
        );
        assert_eq!(
            ListenAddr::parse("inet:[::1]:7357"),
            Ok(ListenAddr::Inet("[::1]:7357".parse().unwrap()))
        );
        assert_eq!(
            ListenAddr::parse("unix:/run/cjsm/milter.sock"),
            Ok(ListenAddr::Unix("/run/cjsm/milter.sock".into()))
        );
        assert!(ListenAddr::parse("tcp:1").is_err());
        assert!(ListenAddr::parse("unix:").is_err());
        assert!(ListenAddr::parse("inet:nohost").is_err());
    }
}
