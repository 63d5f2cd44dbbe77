//! The milter's listening socket: `inet:HOST:PORT` or `unix:/path`.
//!
//! Over TCP the accepted sockets get `TCP_NODELAY`, and `TCP_QUICKACK` is re-armed around
//! every read: the MTA writes the macro packet and the command packet as two small writes,
//! and without QUICKACK Linux delays the ACK of the first by 40 ms (../shared/RECIPES.md §6).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
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
                .map_err(|_| format!("{text:?}: expected inet:ADDRESS:PORT, e.g. inet:127.0.0.1:7357"))
        } else if let Some(path) = text.strip_prefix("unix:").or_else(|| text.strip_prefix("local:")) {
            if path.is_empty() {
                return Err(format!("{text:?}: the unix socket path is empty"));
            }
            Ok(ListenAddr::Unix(PathBuf::from(path)))
        } else {
            Err(format!(
                "{text:?}: expected inet:ADDRESS:PORT or unix:/path/to/socket"
            ))
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Inet(addr) => write!(f, "inet:{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

pub fn io_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
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
