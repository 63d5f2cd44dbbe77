//! Prometheus metrics and the health endpoints, on their own address
//! (`[metrics] listen = "127.0.0.1:9357"`): `/metrics`, `/healthz` (the process answers),
//! `/readyz` (config loaded, store reachable, milter listening).
//!
//! Names have the `cjsm_` prefix and base units; labels take only bounded values (marking
//! levels from the config, fixed actions, reasons, zones and operations), never an address or
//! a subject.

use crate::policy::{Action, Reason, Zone};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Metrics {
    pub registry: Registry,
    /// Messages decided at end of message, by effective marking and action.
    pub messages: IntCounterVec,
    /// Rejections and tempfails, by stage (mail, rcpt, eom), action and reason.
    pub refusals: IntCounterVec,
    /// Recipients of decided messages, by zone.
    pub recipients: IntCounterVec,
    /// Markings found only after normalisation or by resemblance, by source.
    pub obfuscated_markings: IntCounterVec,
    pub verdict_seconds: Histogram,
    pub sessions_active: IntGauge,
    /// Connections accepted and open now, negotiated or not, by listener.
    pub connections_open: IntGaugeVec,
    /// Accepts that failed (out of open files, …), by listener: the listener backs off and
    /// goes on.
    pub accept_errors: IntCounterVec,
    /// Connections closed for sending nothing in time (no negotiation, an unfinished request),
    /// by listener.
    pub connections_timed_out: IntCounterVec,
    /// The milter's connection slots (`[milter] max_connections`).
    pub milter_connection_slots: IntGauge,
    pub store_operations: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub store_seconds: HistogramVec,
    pub directory_users: IntGauge,
    pub directory_organisations: IntGauge,
    pub config_reloads: IntCounterVec,
    pub config_last_reload: Gauge,
    pub audit_dropped: IntCounter,
    pub messages_encrypted: IntCounter,
    pub certificates: IntGauge,
    pub certificates_expiring: IntGauge,
    pub build_info: IntGaugeVec,
    /// 1 when /readyz answers ready, else 0 (for alerting).
    pub ready: IntGauge,
    /// 1 when the directory store answered its last health check, else 0.
    pub store_up: IntGauge,
    /// The website's sign-ins, by result (ok, failed, locked).
    pub web_sign_ins: IntCounterVec,
    /// The website's actions (an application, an approval, a user added, …), by action.
    pub web_actions: IntCounterVec,
    /// Readiness parts, set by the daemon.
    pub store_reachable: AtomicBool,
    pub milter_listening: AtomicBool,
    /// This process is the website (`cjsm-milter web`), ready once it serves: its /readyz
    /// asks that, not the milter's listener.
    pub website_listening: AtomicBool,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        // Sub-millisecond verdicts need fine buckets at the low end.
        let latency_buckets = vec![
            0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ];
        let verdict_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "cjsm_verdict_duration_seconds",
                "Time to classify a message and decide its verdict at end of message.",
            )
            .buckets(latency_buckets.clone()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(verdict_seconds.clone()))
            .expect("unique metric");
        let store_seconds = HistogramVec::new(
            HistogramOpts::new(
                "cjsm_store_operation_duration_seconds",
                "Time of directory store operations.",
            )
            .buckets(latency_buckets),
            &["op"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_seconds.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let sessions_active = gauge(
            "cjsm_milter_sessions_active",
            "MTA connections that negotiated and are open now.",
        );
        let milter_connection_slots = gauge(
            "cjsm_milter_connection_slots",
            "MTA connections the milter serves at once ([milter] max_connections).",
        );
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "cjsm_connections_open",
                "Connections accepted and open now, by listener (milter, socketmap, metrics).",
            ),
            &["listener"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(connections_open.clone()))
            .expect("unique metric");
        let directory_users = gauge("cjsm_directory_users", "Users in the directory.");
        let directory_organisations = gauge(
            "cjsm_directory_organisations",
            "Organisations in the directory.",
        );
        let ready = gauge(
            "cjsm_ready",
            "1 when ready (config loaded, store reachable, milter listening), else 0.",
        );
        let store_up = gauge(
            "cjsm_store_up",
            "1 when the directory store answered its last health check, else 0.",
        );
        let config_last_reload = Gauge::new(
            "cjsm_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (Unix time).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(config_last_reload.clone()))
            .expect("unique metric");
        let audit_dropped = IntCounter::new(
            "cjsm_audit_dropped_total",
            "Audit entries dropped because the audit queue was full.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(audit_dropped.clone()))
            .expect("unique metric");
        let messages_encrypted = IntCounter::new(
            "cjsm_messages_encrypted_total",
            "Messages encrypted (S/MIME) for recipients without a secure route.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(messages_encrypted.clone()))
            .expect("unique metric");
        let certificates = gauge(
            "cjsm_certificates",
            "S/MIME certificates registered in the directory.",
        );
        let certificates_expiring = gauge(
            "cjsm_certificates_expiring",
            "Registered S/MIME certificates that lapse within 30 days (or have).",
        );
        let build_info = IntGaugeVec::new(
            Opts::new(
                "cjsm_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Metrics {
            messages_encrypted,
            certificates,
            certificates_expiring,
            messages: counter_vec(
                &registry,
                "cjsm_messages_total",
                "Messages decided at end of message, by effective marking and action.",
                &["marking", "action"],
            ),
            obfuscated_markings: counter_vec(
                &registry,
                "cjsm_obfuscated_markings_total",
                "Markings found only after normalisation or by resemblance (hidden or \
                 mistyped), by source.",
                &["source"],
            ),
            refusals: counter_vec(
                &registry,
                "cjsm_refusals_total",
                "Rejections and tempfails, by stage, action and reason.",
                &["stage", "action", "reason"],
            ),
            recipients: counter_vec(
                &registry,
                "cjsm_recipients_total",
                "Recipients of decided messages, by zone.",
                &["zone"],
            ),
            store_operations: counter_vec(
                &registry,
                "cjsm_store_operations_total",
                "Directory store operations, by operation.",
                &["op"],
            ),
            store_errors: counter_vec(
                &registry,
                "cjsm_store_errors_total",
                "Directory store operations that failed, by operation.",
                &["op"],
            ),
            accept_errors: counter_vec(
                &registry,
                "cjsm_accept_errors_total",
                "Accepts that failed (e.g. out of open files), by listener; it backs off and \
                 goes on.",
                &["listener"],
            ),
            connections_timed_out: counter_vec(
                &registry,
                "cjsm_connections_timed_out_total",
                "Connections closed for sending nothing in time, by listener.",
                &["listener"],
            ),
            config_reloads: counter_vec(
                &registry,
                "cjsm_config_reloads_total",
                "Config reloads, by result (ok, failed).",
                &["result"],
            ),
            web_sign_ins: counter_vec(
                &registry,
                "cjsm_web_sign_ins_total",
                "Sign-ins to the website, by result (ok, failed, locked: refused while the \
                 account or the client address is throttled).",
                &["result"],
            ),
            web_actions: counter_vec(
                &registry,
                "cjsm_web_actions_total",
                "Changes made on the website, by action (as the audit trail names them).",
                &["action"],
            ),
            verdict_seconds,
            sessions_active,
            connections_open,
            milter_connection_slots,
            store_seconds,
            directory_users,
            directory_organisations,
            config_last_reload,
            audit_dropped,
            build_info,
            ready,
            store_up,
            registry,
            store_reachable: AtomicBool::new(false),
            milter_listening: AtomicBool::new(false),
            website_listening: AtomicBool::new(false),
        }
    }

    /// Creates the expected label combinations at zero, so every dashboard query has a series
    /// to show (and rate() a starting point) before the first event of its kind.
    pub fn initialise(&self, markings: &[String]) {
        for marking in markings {
            for action in Action::ALL {
                self.messages
                    .with_label_values(&[marking.as_str(), action.as_str()]);
            }
        }
        for reason in Reason::ALL {
            for (stage, action) in reason.refusals() {
                self.refusals.with_label_values(&[
                    stage.as_str(),
                    action.as_str(),
                    reason.as_str(),
                ]);
            }
        }
        for zone in Zone::ALL {
            self.recipients.with_label_values(&[zone.as_str()]);
        }
        for op in ["lookup", "size", "append_audit"] {
            self.store_operations.with_label_values(&[op]);
            self.store_errors.with_label_values(&[op]);
            self.store_seconds.with_label_values(&[op]);
        }
        for result in ["ok", "failed"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for listener in Listener::ALL {
            self.connections_open
                .with_label_values(&[listener.as_str()]);
            self.accept_errors.with_label_values(&[listener.as_str()]);
            self.connections_timed_out
                .with_label_values(&[listener.as_str()]);
        }
    }

    /// Counts a connection accepted by `listener` as open while the guard lives.
    pub fn connection_opened(&'static self, listener: Listener) -> OpenConnection {
        self.connections_open
            .with_label_values(&[listener.as_str()])
            .inc();
        OpenConnection(listener)
    }

    /// The milter's connection slots are all taken: the next MTA connection waits.
    fn milter_slots_full(&self) -> bool {
        // 0 until the milter serves.
        let slots = self.milter_connection_slots.get();
        slots > 0
            && self
                .connections_open
                .with_label_values(&[Listener::Milter.as_str()])
                .get()
                >= slots
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.store_up
            .set(i64::from(self.store_reachable.load(Ordering::Acquire)));
        self.ready.set(i64::from(self.not_ready().is_empty()));
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Why the process is not ready, if it is not.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if !self.store_reachable.load(Ordering::Acquire) {
            reasons.push("store not reachable");
        }
        if self.website_listening.load(Ordering::Acquire) {
            return reasons;
        }
        if !self.milter_listening.load(Ordering::Acquire) {
            reasons.push("milter not listening");
        }
        if self.milter_slots_full() {
            reasons.push("milter connection slots full");
        }
        reasons
    }
}

/// The daemon's listening sockets, as metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Milter,
    Socketmap,
    Metrics,
}

impl Listener {
    pub const ALL: [Listener; 3] = [Listener::Milter, Listener::Socketmap, Listener::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Milter => "milter",
            Listener::Socketmap => "socketmap",
            Listener::Metrics => "metrics",
        }
    }
}

/// One open connection of a listener, counted in `cjsm_connections_open` until dropped.
pub struct OpenConnection(Listener);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics()
            .connections_open
            .with_label_values(&[self.0.as_str()])
            .dec();
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

pub mod http {
    //! The small HTTP server for `/metrics`, `/healthz` and `/readyz`.

    use super::{Listener, metrics};
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Method, Request, Response, StatusCode};
    use hyper_util::rt::{TokioIo, TokioTimer};
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use tokio::net::TcpListener;

    fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }

    async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Ok(response(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".into(),
            ));
        }
        Ok(match request.uri().path() {
            "/metrics" => response(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics().render(),
            ),
            "/healthz" => response(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" => {
                let reasons = metrics().not_ready();
                if reasons.is_empty() {
                    response(StatusCode::OK, "text/plain", "ready\n".into())
                } else {
                    response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        format!("not ready: {}\n", reasons.join(", ")),
                    )
                }
            }
            _ => response(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        })
    }

    /// How long a client may take to send a request's headers, and how long one connection
    /// may stay open in all (a scrape takes milliseconds; a client that sends nothing must
    /// not hold one of the few connections).
    const HEADER_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
    const CONNECTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

    /// Binds the metrics address; the returned future serves it, at most `max_connections`
    /// at once, until dropped.
    pub async fn bind(
        addr: SocketAddr,
        max_connections: usize,
    ) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
        let serve = async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let stream = crate::listen::accept(&listener, Listener::Metrics).await;
                let open = metrics().connection_opened(Listener::Metrics);
                tokio::spawn(async move {
                    let _held = (slot, open);
                    let service = hyper::service::service_fn(handle);
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_LIMIT)
                        .serve_connection(TokioIo::new(stream), service);
                    if tokio::time::timeout(CONNECTION_LIMIT, connection)
                        .await
                        .is_err()
                    {
                        metrics()
                            .connections_timed_out
                            .with_label_values(&[Listener::Metrics.as_str()])
                            .inc();
                    }
                });
            }
        };
        Ok((local, serve))
    }
}
