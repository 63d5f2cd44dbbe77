//! The milter's listening socket: `inet:HOST:PORT` or `unix:/path`.
//!
//! Over TCP the accepted sockets get `TCP_NODELAY`, and `TCP_QUICKACK` is re-armed around
//! every read: the MTA writes the macro packet and the command packet as two small writes,
//! and without QUICKACK Linux delays the ACK of the first by 40 ms, which costs the MTA that much
//! per message.

use std::io;

/// The address is a setting: parsed when the config is read.
pub use crate::config::ListenAddr;

pub fn io_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub use bind::{GatedListener, MilterListener, bind};

mod bind {
    use super::{ListenAddr, io_context};
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
    /// connection at once: the MTA falls back to `milter_default_action` (tempfail).
    pub struct GatedListener {
        pub inner: MilterListener,
        pub closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl indymilter::Listener for GatedListener {
        type Io = <MilterListener as indymilter::Listener>::Io;

        fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
            loop {
                let stream = std::task::ready!(self.inner.poll_accept(cx))?;
                if !self.closed.load(std::sync::atomic::Ordering::Acquire) {
                    return Poll::Ready(Ok(stream));
                }
                drop(stream);
            }
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
