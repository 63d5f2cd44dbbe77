//! The milter's listening socket: `inet:HOST:PORT` or `unix:/path`.
//!
//! Over TCP the accepted sockets get `TCP_NODELAY`, and `TCP_QUICKACK` is re-armed around
//! every read: the MTA writes the macro packet and the command packet as two small writes,
//! and without QUICKACK Linux delays the ACK of the first by 40 ms, which costs the MTA that much
//! per message.
//!
//! Every listener is bounded, so that no local client can make the daemon exit or lock the MTA
//! out: an accept that fails (out of open files) backs off and goes on; the socketmap and the
//! metrics endpoint serve a capped number of connections, sized from the open-files limit
//! after the milter's slots; and a milter connection that does not negotiate within
//! [`NEGOTIATION_LIMIT`] is closed.

use crate::metrics::{Listener, metrics};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

/// The address is a setting: parsed when the config is read.
pub use crate::config::ListenAddr;

pub fn io_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub use bind::{GatedListener, MilterListener, bind};

/// How long an accepted milter connection may take to send its negotiation. The MTA sends it
/// at once; a connection that sends nothing would otherwise hold one of the slots for the
/// whole session timeout.
pub const NEGOTIATION_LIMIT: Duration = Duration::from_secs(5);

/// How long a listener waits after a failed accept before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Open files kept for everything but connections: the store, the audit log, the logs,
/// Redis connections, certificates, the config on reload.
const RESERVED_FILES: u64 = 64;

/// The socketmap serves at most this many connections at once (each Postfix process that
/// looks up a map holds one).
const SOCKETMAP_MAX: usize = 256;

/// The metrics endpoint serves at most this many (Prometheus scrapes with one, people with a
/// few more).
pub const METRICS_MAX: usize = 8;

/// How many connections the socketmap and the metrics endpoint may hold open at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub socketmap: usize,
    pub metrics: usize,
}

/// The caps of the other listeners within `open_files`, after the milter's `milter_slots`
/// and the reserve; and a warning when the limit is too low for them all.
pub fn connection_caps(open_files: u64, milter_slots: usize) -> (ConnectionCaps, Option<String>) {
    let needed = RESERVED_FILES + milter_slots as u64 + (METRICS_MAX + SOCKETMAP_MAX) as u64;
    let left = open_files.saturating_sub(RESERVED_FILES + milter_slots as u64 + METRICS_MAX as u64);
    let caps = ConnectionCaps {
        // At least a few, so that Postfix's lookups still get through on a low limit.
        socketmap: (left as usize).clamp(4, SOCKETMAP_MAX),
        metrics: METRICS_MAX,
    };
    let warning = (open_files < needed).then(|| {
        format!(
            "the open-files limit ({open_files}) is below what {milter_slots} milter connections \
             and the other listeners need ({needed}): raise it (LimitNOFILE in the systemd unit) \
             or lower [milter] max_connections"
        )
    });
    (caps, warning)
}

/// Raises the soft open-files limit to the hard one (systemd's `LimitNOFILE`, or the shell's
/// `ulimit -Hn`), and returns it: the default soft limit (1024) is too low for 500 milter
/// connections besides the other listeners.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// Logs a failed accept at most once a second per listener (a flood of them would flood the
/// log), and counts every one.
fn accept_failed(listener: Listener, error: &io::Error) {
    static LAST_WARNED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    metrics()
        .accept_errors
        .with_label_values(&[listener.as_str()])
        .inc();
    let now = crate::clock::now_unix();
    let last = &LAST_WARNED[listener as usize];
    if last.swap(now, Ordering::Relaxed) != now {
        warn!(listener = listener.as_str(), error = %error, "accept failed; backing off and going on");
    }
}

/// The next connection of a socketmap or metrics listener. A failed accept (out of open
/// files, a connection reset before it was accepted) is logged, and after a short pause the
/// listener goes on: it never ends the daemon.
pub async fn accept(listener: &TcpListener, which: Listener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) => {
                accept_failed(which, &e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

mod bind {
    use super::{ListenAddr, Listener, NEGOTIATION_LIMIT, io_context, metrics};
    use crate::metrics::OpenConnection;
    use std::future::Future;
    use std::io;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::path::Path;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpListener, TcpStream, UnixListener};

    /// A TCP listener whose streams re-arm `TCP_QUICKACK` around every read.
    pub struct QuickAckListener(TcpListener);

    pub struct QuickAckStream(TcpStream);

    impl QuickAckStream {
        fn quickack(&self) {
            // Best effort: a failure only costs latency, never correctness.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }

    impl indymilter::Listener for QuickAckListener {
        type Io = QuickAckStream;

        fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<QuickAckStream>> {
            self.0.poll_accept(cx).map_ok(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                let stream = QuickAckStream(stream);
                stream.quickack();
                stream
            })
        }
    }

    impl AsyncRead for QuickAckStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.quickack();
            let result = Pin::new(&mut self.0).poll_read(cx, buf);
            self.quickack();
            result
        }
    }

    impl AsyncWrite for QuickAckStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.0.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    pub type MilterListener = indymilter::EitherListener<QuickAckListener, UnixListener>;

    /// A listener that, once the gate closes (draining for shutdown), closes every new
    /// connection at once: the MTA falls back to `milter_default_action` (tempfail). A failed
    /// accept backs off and goes on (indymilter would end the daemon on it). Each connection
    /// is counted while open, and must negotiate within [`NEGOTIATION_LIMIT`].
    pub struct GatedListener {
        pub inner: MilterListener,
        pub closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
        pub backoff: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl GatedListener {
        pub fn new(
            inner: MilterListener,
            closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
        ) -> GatedListener {
            GatedListener {
                inner,
                closed,
                backoff: None,
            }
        }
    }

    type InnerStream = <MilterListener as indymilter::Listener>::Io;

    impl indymilter::Listener for GatedListener {
        type Io = MilterStream;

        fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<MilterStream>> {
            loop {
                if let Some(backoff) = &mut self.backoff {
                    std::task::ready!(backoff.as_mut().poll(cx));
                    self.backoff = None;
                }
                match std::task::ready!(self.inner.poll_accept(cx)) {
                    Ok(stream) if !self.closed.load(std::sync::atomic::Ordering::Acquire) => {
                        return Poll::Ready(Ok(MilterStream::new(stream)));
                    }
                    Ok(stream) => drop(stream),
                    Err(e) => {
                        super::accept_failed(Listener::Milter, &e);
                        self.backoff = Some(Box::pin(tokio::time::sleep(super::ACCEPT_BACKOFF)));
                    }
                }
            }
        }
    }

    /// An accepted MTA connection: counted in `cjsm_connections_open` while it lives, and
    /// closed (a read error) if its first packet, the negotiation, is not complete within
    /// [`NEGOTIATION_LIMIT`].
    pub struct MilterStream {
        inner: InnerStream,
        negotiation: Option<Negotiation>,
        _open: OpenConnection,
    }

    /// The deadline of the first packet, and the packet as it arrives.
    struct Negotiation {
        deadline: Pin<Box<tokio::time::Sleep>>,
        packet: FirstPacket,
    }

    /// The first packet as it arrives: a 4-byte big-endian length, then that many bytes.
    #[derive(Default)]
    pub(super) struct FirstPacket {
        length: [u8; 4],
        seen: usize,
    }

    impl FirstPacket {
        /// Takes in bytes read; true once the whole first packet has arrived.
        pub(super) fn saw(&mut self, bytes: &[u8]) -> bool {
            for &byte in bytes {
                if self.seen < 4 {
                    self.length[self.seen] = byte;
                }
                self.seen += 1;
            }
            self.seen >= 4 && self.seen - 4 >= u32::from_be_bytes(self.length) as usize
        }
    }

    impl MilterStream {
        fn new(inner: InnerStream) -> MilterStream {
            MilterStream {
                inner,
                negotiation: Some(Negotiation {
                    deadline: Box::pin(tokio::time::sleep(NEGOTIATION_LIMIT)),
                    packet: FirstPacket::default(),
                }),
                _open: metrics().connection_opened(Listener::Milter),
            }
        }
    }

    impl AsyncRead for MilterStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            let this = &mut *self;
            let result = Pin::new(&mut this.inner).poll_read(cx, buf);
            let Some(negotiation) = &mut this.negotiation else {
                return result;
            };
            match result {
                Poll::Ready(Ok(())) => {
                    if negotiation.packet.saw(&buf.filled()[before..]) {
                        this.negotiation = None;
                    }
                    Poll::Ready(Ok(()))
                }
                Poll::Pending if negotiation.deadline.as_mut().poll(cx).is_ready() => {
                    metrics()
                        .connections_timed_out
                        .with_label_values(&[Listener::Milter.as_str()])
                        .inc();
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no milter negotiation within {NEGOTIATION_LIMIT:?}"),
                    )))
                }
                other => other,
            }
        }
    }

    impl AsyncWrite for MilterStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Binds the milter socket. A unix socket gets `mode` and `group`; a stale socket file
    /// left by a dead instance is replaced, a live one is an error.
    pub async fn bind(
        addr: &ListenAddr,
        mode: Option<u32>,
        group: Option<&str>,
    ) -> io::Result<(MilterListener, ListenAddr)> {
        match addr {
            ListenAddr::Inet(socket) => {
                let listener = TcpListener::bind(socket)
                    .await
                    .map_err(|e| io_context(e, format!("bind {addr}")))?;
                let local = ListenAddr::Inet(listener.local_addr()?);
                Ok((
                    indymilter::EitherListener::Tcp(QuickAckListener(listener)),
                    local,
                ))
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener =
                    UnixListener::bind(path).map_err(|e| io_context(e, format!("bind {addr}")))?;
                if let Some(mode) = mode {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| io_context(e, format!("chmod {}", path.display())))?;
                }
                if let Some(group) = group {
                    let gid = group_id(group)?;
                    std::os::unix::fs::chown(path, None, Some(gid))
                        .map_err(|e| io_context(e, format!("chgrp {group} {}", path.display())))?;
                }
                Ok((indymilter::EitherListener::Unix(listener), addr.clone()))
            }
        }
    }

    async fn remove_stale_socket(path: &Path) -> io::Result<()> {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return Ok(());
        };
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not removing it",
                    path.display()
                ),
            ));
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running milter", path.display()),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| io_context(e, format!("remove stale {}", path.display())))
    }

    /// The numeric id of a group, from /etc/group (a number is taken as it is).
    fn group_id(group: &str) -> io::Result<u32> {
        if let Ok(gid) = group.parse() {
            return Ok(gid);
        }
        let groups = std::fs::read_to_string("/etc/group")?;
        groups
            .lines()
            .find_map(|line| {
                let mut fields = line.split(':');
                (fields.next() == Some(group)).then(|| fields.nth(1)?.parse().ok())?
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no group {group:?} in /etc/group"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socketmap_cap_fits_in_what_the_milter_leaves() {
        // (open files, milter slots) → (socketmap cap, warned)
        let cases = [
            (65_536, 500, SOCKETMAP_MAX, false),
            (1024, 500, SOCKETMAP_MAX, false),
            (700, 500, 700 - 64 - 500 - 8, true),
            (256, 20, 256 - 64 - 20 - 8, true),
            (128, 500, 4, true),
            (0, 500, 4, true),
        ];
        for (open_files, slots, socketmap, warned) in cases {
            let (caps, warning) = connection_caps(open_files, slots);
            assert_eq!(
                caps.socketmap, socketmap,
                "{open_files} files, {slots} slots"
            );
            assert_eq!(caps.metrics, METRICS_MAX);
            assert_eq!(warning.is_some(), warned, "{open_files} files: {warning:?}");
        }
    }

    #[test]
    fn the_negotiation_is_complete_when_its_whole_packet_has_arrived() {
        let negotiation = bind::FirstPacket::default;
        let packet = [0, 0, 0, 3, b'O', 0, 0];
        // Whole, in pieces, a byte at a time; incomplete.
        assert!(negotiation().saw(&packet));
        let mut pieces = negotiation();
        assert!(!pieces.saw(&packet[..2]));
        assert!(!pieces.saw(&packet[2..5]));
        assert!(pieces.saw(&packet[5..]));
        let mut bytes = negotiation();
        let last = packet.len() - 1;
        for (i, byte) in packet.iter().enumerate() {
            assert_eq!(bytes.saw(&[*byte]), i == last, "byte {i}");
        }
        assert!(!negotiation().saw(&[0, 0, 1, 0, b'O']));
        assert!(negotiation().saw(&[0, 0, 0, 0]));
    }
}
