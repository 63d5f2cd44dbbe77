//! The milter: the protocol around one [`Transaction`] per message. The callbacks turn the
//! MTA's macros into facts and drive the transaction's steps (`callbacks`), apply its
//! answers and edits (`apply`), and record what happened: the log line, the metrics, the
//! audit trail (`record`). No rule is decided here.
//!
//! Every handler returns `Result`; an `Err` is logged with the queue ID and answered with
//! tempfail, so the MTA keeps the message. Each session snapshots the engine (rules, store)
//! when it starts: a reload never changes the rules in the middle of a message.
//!
//! Round trips: the milter has nothing to say before end of message at CONNECT, each header,
//! end of headers and each body chunk, so it asks the MTA not to wait for a reply there
//! ([`NO_REPLY`]), and not to send HELO, DATA and unknown commands at all ([`SKIPPED`]); only
//! what the MTA offers is asked for, and an MTA that offers none of it is served as before.
//! An error at a stage the MTA does not wait on cannot be answered there (the MTA would take
//! that reply for the answer to a later command): it is remembered and answered at end of
//! message (`callbacks::reply_or_remember`).

mod apply;
mod callbacks;
mod record;

use crate::engine::{Engine, Shared};
use crate::listen::{GatedListener, MilterListener};
use crate::metrics::metrics;
use crate::policy::{Reason, SessionFacts};
use crate::store::StoreError;
use crate::transaction::Transaction;
use indymilter::{Actions, MacroStage, NegotiateContext, ProtoOpts, Status};
use std::ffi::CString;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, error, warn};

pub use callbacks::callbacks;

/// How long a shutdown waits for messages in flight before closing their sessions.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The macros requested per stage (Postfix and Sendmail send what is asked for).
const MACROS: &[(MacroStage, &str)] = &[
    (MacroStage::Connect, "j {client_addr}"),
    (
        MacroStage::Helo,
        "{tls_version} {cipher} {cert_subject} {cert_issuer} {cn_subject} {cn_issuer} {verify}",
    ),
    // {mail_addr} and {rcpt_addr}: the address the MTA made of the argument, and will use.
    // {cn_subject}/{cn_issuer}: Sendmail's common names (Postfix has none; its
    // {cert_subject}/{cert_issuer} are the common names already).
    (
        MacroStage::Mail,
        "i {mail_addr} {auth_type} {auth_authen} {tls_version} {cipher} {cert_subject} {cert_issuer} {cn_subject} {cn_issuer} {verify} {client_addr}",
    ),
    (MacroStage::Rcpt, "i {rcpt_addr}"),
    (MacroStage::Data, "i"),
    (MacroStage::Eoh, "i"),
    (MacroStage::Eom, "i"),
];

/// The stages where the milter has nothing to say before end of message: the MTA is asked not
/// to wait for a reply to them. (CONNECT and end of headers are kept rather than skipped: the
/// connection's client address comes with CONNECT, and a packet the MTA does not wait on costs
/// it next to nothing.)
const NO_REPLY: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_EOH)
    .union(ProtoOpts::NOREPLY_BODY);

/// The stages the milter has no callback for: the MTA is asked not to send them.
const SKIPPED: ProtoOpts = ProtoOpts::NO_HELO
    .union(ProtoOpts::NO_DATA)
    .union(ProtoOpts::NO_UNKNOWN);

/// Headers, quarantine, the envelope changes of address translation, and the body (S/MIME
/// encryption).
const NEEDED_ACTIONS: Actions = Actions::ADD_HEADER
    .union(Actions::CHANGE_HEADER)
    .union(Actions::QUARANTINE)
    .union(Actions::REPLACE_BODY)
    .union(Actions::CHANGE_SENDER)
    .union(Actions::ADD_RCPT)
    .union(Actions::DELETE_RCPT);

/// The per-connection state.
pub struct Session {
    _gauge: SessionGauge,
    engine: Arc<Engine>,
    in_flight: Arc<AtomicUsize>,
    facts: SessionFacts,
    message: Option<Message>,
    /// The stages the MTA agreed not to wait on (part of [`NO_REPLY`]).
    no_reply: ProtoOpts,
    /// An error at one of those stages, answered at end of message.
    deferred: Option<Deferred>,
}

/// An error found where no reply could be sent: the stage it is recorded at, and the error.
struct Deferred {
    stage: crate::policy::Stage,
    error: MilterError,
}

/// The per-message state: the transaction and what the log line needs besides.
struct Message {
    queue_id: Option<String>,
    transaction: Transaction,
    started: Instant,
    _in_flight: InFlight,
}

#[derive(Debug, thiserror::Error)]
enum MilterError {
    #[error("directory: {0}")]
    Store(#[from] StoreError),
    #[error("deadline of {0:?} passed")]
    Deadline(Duration),
    #[error("milter action failed: {0}")]
    Action(#[from] indymilter::ActionError),
    #[error("{0}")]
    Internal(String),
}

type Handled = Result<Status, MilterError>;

impl MilterError {
    /// The reason of the tempfail this error causes.
    fn reason(&self) -> Reason {
        match self {
            MilterError::Store(_) => Reason::StoreError,
            MilterError::Deadline(_) => Reason::Deadline,
            MilterError::Action(_) | MilterError::Internal(_) => Reason::InternalError,
        }
    }
}

/// Counts a message in flight while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts an open MTA connection while it lives.
struct SessionGauge;

impl SessionGauge {
    fn new() -> SessionGauge {
        metrics().sessions_active.inc();
        SessionGauge
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        metrics().sessions_active.dec();
    }
}

/// Serves MTA connections until `shutdown` completes. Then it drains: new connections are
/// closed at once, messages in flight get up to `DRAIN_LIMIT` to finish, and the sessions end.
pub async fn serve(
    listener: MilterListener,
    shared: Arc<Shared>,
    shutdown: impl Future,
) -> io::Result<()> {
    let listener = GatedListener::new(listener, shared.draining.clone());
    let drained = {
        let shared = shared.clone();
        async move {
            shutdown.await;
            shared.draining.store(true, Ordering::Release);
            let started = Instant::now();
            while shared.messages_in_flight() > 0 && started.elapsed() < DRAIN_LIMIT {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let left = shared.messages_in_flight();
            if left > 0 {
                warn!(
                    messages = left,
                    "drain limit reached; the MTA will retry these messages"
                );
            }
        }
    };
    let engine = shared.current();
    let slots = engine.config().milter.max_connections;
    metrics().milter_connection_slots.set(slots as i64);
    let config = indymilter::Config {
        max_connections: slots,
        actions: NEEDED_ACTIONS,
        // Idle MTA connections are closed after the SMTP session timeouts would have fired.
        connection_timeout: Duration::from_secs(600),
    };
    indymilter::run(listener, callbacks(shared), config, drained).await
}

/// Negotiation: exactly the actions we need (an MTA that lacks one is refused, with a clear
/// log line), the macros per stage, the stages not to wait on or not to send (those the MTA
/// offers), and the session with the engine in force.
fn negotiate(
    cx: &mut NegotiateContext<Session>,
    engine: Arc<Engine>,
    in_flight: Arc<AtomicUsize>,
    mta_actions: Actions,
    mta_opts: ProtoOpts,
) -> Status {
    if !mta_actions.contains(NEEDED_ACTIONS) {
        error!(
            offered = ?mta_actions,
            "MTA does not offer the milter actions we need (add and change header, quarantine, change sender, add and delete recipient, replace body); refusing the connection"
        );
        return Status::Reject;
    }
    cx.requested_actions = NEEDED_ACTIONS;
    // indymilter's default asks for every stage without a callback to be skipped, offered or
    // not (and then ends the session of an MTA that does not offer it).
    let no_reply = mta_opts & NO_REPLY;
    cx.requested_opts = (cx.requested_opts - SKIPPED) | (mta_opts & SKIPPED) | no_reply;
    debug!(offered = ?mta_opts, requested = ?cx.requested_opts, "milter options negotiated");
    for (stage, names) in MACROS {
        cx.requested_macros.insert(
            *stage,
            CString::new(*names).expect("macro names have no NUL"),
        );
    }
    cx.data = Some(Session {
        _gauge: SessionGauge::new(),
        engine,
        in_flight,
        facts: SessionFacts::default(),
        message: None,
        no_reply,
        deferred: None,
    });
    Status::Continue
}
