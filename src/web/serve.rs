//! Serving the website: binding its address (HTTPS with the configured certificate, or plain
//! HTTP on loopback), dropping root like the milter, each connection bounded in time and in
//! number, and sessions past their expiry swept away hourly.

use super::session::Peer;
use super::{App, router};
use crate::clock::now_unix;
use crate::config::{Config, WebConfig};
use crate::privilege::{self, Plan};
use crate::store::{self, Access};
use anyhow::{Context as _, Result, anyhow};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 512;
/// How long a client may take to send a request's headers (and the TLS handshake).
const HEADER_LIMIT: Duration = Duration::from_secs(10);
/// How long one connection may stay open in all: a page, or a 1 MB upload on a slow line,
/// takes far less; a client trickling a body must not hold one of the slots for long.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);
/// The largest TLS certificate or key file read.
const MAX_PEM_BYTES: u64 = 256 * 1024;

/// The TLS settings for `[web]`'s certificate and key, read now (before root is dropped).
fn tls_acceptor(web: &WebConfig) -> Result<Option<TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_path), Some(key_path)) = (&web.tls_cert_file, &web.tls_key_file) else {
        return Ok(None);
    };
    let cert_pem = crate::config::read_regular_file(cert_path, MAX_PEM_BYTES)
        .with_context(|| format!("[web] tls_cert_file {}", cert_path.display()))?;
    let key_pem = crate::config::read_secret_file(key_path, MAX_PEM_BYTES)
        .with_context(|| format!("[web] tls_key_file {}", key_path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("[web] tls_cert_file {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "[web] tls_cert_file {}: no certificate in it",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow!("[web] tls_key_file {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("[web] tls_cert_file and tls_key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Runs the website until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<()> {
    let web = config.web.clone();
    let plan = privilege::plan(&config.milter)?;
    let tls = tls_acceptor(&web)?;
    let listener = TcpListener::bind(web.listen)
        .await
        .with_context(|| format!("binding the website {}", web.listen))?;
    let local = listener.local_addr()?;
    let metrics_server = match web.metrics_listen {
        None => None,
        Some(addr) => {
            let (local, serve) = crate::metrics::http::bind(addr, 16)
                .await
                .with_context(|| format!("binding the website's metrics {addr}"))?;
            info!(listen = %local, "website metrics endpoint: /metrics");
            Some(tokio::spawn(serve))
        }
    };
    let credentials =
        store::milter_credentials(&config.store).context("opening the directory store")?;
    if let Plan::Become(account) = &plan {
        if config.store.backend == crate::config::Backend::Sqlite {
            privilege::prepare_directory(&config.store.path, account)
                .context("preparing the directory store for the service account")?;
        }
        privilege::become_account(account)?;
        info!(user = %account.user, uid = account.uid, "dropped root: running as the service account");
    }
    let store = match credentials {
        None => store::open(&config.store, Access::ReadWrite).await,
        Some(credentials) => store::open_with_credentials(&config.store, &credentials).await,
    }
    .context("opening the directory store")?;
    // The website's /readyz: ready once it serves with its store open. (A store that fails
    // later answers each page 503, "nothing was changed".)
    let m = crate::metrics::metrics();
    m.store_reachable
        .store(true, std::sync::atomic::Ordering::Release);
    m.website_listening
        .store(true, std::sync::atomic::Ordering::Release);
    let app = App::new(store, config);
    let sweeper = tokio::spawn(sweep_sessions(app.clone()));
    let service = router(app.clone());
    info!(
        listen = %local,
        https = tls.is_some(),
        "cjsm-milter website listening"
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let accept = async {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "website: accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let service = service.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let handle = hyper::service::service_fn(
                    move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(Peer(peer));
                        let service = service.clone();
                        async move {
                            use tower::ServiceExt as _;
                            service.oneshot(request).await
                        }
                    },
                );
                let serve = async {
                    let builder = {
                        let mut b = hyper::server::conn::http1::Builder::new();
                        b.timer(TokioTimer::new()).header_read_timeout(HEADER_LIMIT);
                        b
                    };
                    match tls {
                        Some(tls) => {
                            let Ok(Ok(stream)) =
                                tokio::time::timeout(HEADER_LIMIT, tls.accept(stream)).await
                            else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(stream), handle).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), handle).await;
                        }
                    }
                };
                let _ = tokio::time::timeout(CONNECTION_LIMIT, serve).await;
            });
        }
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = accept => {},
        _ = terminate.recv() => {},
        _ = interrupt.recv() => {},
    }
    info!("website shutting down");
    sweeper.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    Ok(())
}

/// Removes sessions past their expiry, hourly (they already read as absent).
async fn sweep_sessions(app: App) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match app
            .store
            .purge_expired(super::session::KIND, now_unix())
            .await
        {
            Ok(0) => {}
            Ok(n) => info!(sessions = n, "website: expired sessions removed"),
            Err(e) => warn!(error = %e, "website: removing expired sessions failed"),
        }
    }
}
