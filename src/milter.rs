//! The milter: indymilter callbacks that collect the facts of a message, hand them to the
//! shared pipeline, and apply its verdict. No policy is decided here.
//!
//! Every handler returns `Result`; an `Err` is logged with the queue ID and answered with
//! tempfail, so the MTA keeps the message. Each session snapshots the engine (config, vocabulary,
//! store) when it starts: a reload never changes the rules in the middle of a message.

use crate::config::Mode;
use crate::engine::{Engine, Shared};
use crate::listen::{GatedListener, MilterListener};
use crate::metrics::metrics;
use crate::pipeline::{Collector, Envelope, Outcome};
use crate::policy::{self, Action, Edit, Recipient, SessionFacts, Verdict};
use crate::store::{AuditEvent, now_unix_ms};
use indymilter::{
    Actions, Callbacks, Context, ContextActions, EomContext, MacroStage, Macros, NegotiateContext,
    ProtoOpts, SetErrorReply, SocketInfo, Status,
};
use std::ffi::{CStr, CString};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// How long a shutdown waits for messages in flight before closing their sessions.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

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

/// The per-connection state.
pub struct Session {
    _gauge: SessionGauge,
    engine: Arc<Engine>,
    in_flight: Arc<AtomicUsize>,
    facts: SessionFacts,
    message: Option<MessageState>,
}

struct MessageState {
    queue_id: Option<String>,
    sender: String,
    /// How the sender was recognised (for the log line).
    sender_trust: &'static str,
    /// The secure address the sender is translated to.
    sender_translation: Option<String>,
    recipients: Vec<Recipient>,
    /// Recipients refused at RCPT (report mode: would have been).
    refused: usize,
    collector: Collector,
    started: Instant,
    _in_flight: InFlight,
}

#[derive(Debug, thiserror::Error)]
enum MilterError {
    #[error("directory: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("deadline of {0:?} passed")]
    Deadline(Duration),
    #[error("milter action failed: {0}")]
    Action(#[from] indymilter::ActionError),
    #[error("{0}")]
    Internal(String),
}

type Handled = Result<Status, MilterError>;

impl MilterError {
    /// The reason label of the tempfail this error causes.
    fn reason(&self) -> &'static str {
        match self {
            MilterError::Store(_) => "store-error",
            MilterError::Deadline(_) => "deadline",
            MilterError::Action(_) | MilterError::Internal(_) => "internal-error",
        }
    }
}

/// Records an internal failure's tempfail in the audit trail (the reason, never the detail).
fn audit_tempfail(session: Option<&Session>, queue_id: &str, reason: &'static str) {
    let Some(session) = session else { return };
    let Some(audit) = &session.engine.audit else {
        return;
    };
    let message = session.message.as_ref();
    audit.record(AuditEvent {
        time_ms: now_unix_ms(),
        kind: "verdict".into(),
        queue_id: Some(queue_id.to_string()),
        sender: message.map(|m| m.sender.clone()),
        recipients: message
            .map(|m| m.recipients.iter().map(|r| r.address.clone()).collect())
            .unwrap_or_default(),
        action: "tempfail".into(),
        reason: reason.into(),
        ..AuditEvent::default()
    });
}

/// The action an audit entry records: the verdict's, marked when it was only reported.
fn audit_action(engine: &Engine, verdict: &Verdict) -> String {
    if engine.enforcing() {
        verdict.action.as_str().into()
    } else {
        format!("report-only {}", verdict.action.as_str())
    }
}

/// Counts a refusal for the metrics.
fn count_refusal(stage: &str, verdict: &Verdict) {
    if matches!(verdict.action, Action::Reject | Action::Tempfail) {
        metrics()
            .refusals
            .with_label_values(&[stage, verdict.action.as_str(), verdict.reason])
            .inc();
    }
}

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

/// Messages of at most this many bytes held (headers, body, header lines past the bounds)
/// are decided on the I/O thread (see `eom`).
const INLINE_BYTES: u64 = 64 * 1024;

/// Headers, quarantine, the envelope changes of address translation, and the body (S/MIME
/// encryption).
const NEEDED_ACTIONS: Actions = Actions::ADD_HEADER
    .union(Actions::CHANGE_HEADER)
    .union(Actions::QUARANTINE)
    .union(Actions::REPLACE_BODY)
    .union(Actions::CHANGE_SENDER)
    .union(Actions::ADD_RCPT)
    .union(Actions::DELETE_RCPT);

/// The indymilter callbacks, each forwarding to a handler.
pub fn callbacks(shared: Arc<Shared>) -> Callbacks<Session> {
    Callbacks::new()
        .on_negotiate(move |cx, actions, opts| {
            let engine = shared.current();
            let in_flight = shared.in_flight.clone();
            Box::pin(async move { negotiate(cx, engine, in_flight, actions, opts) })
        })
        .on_connect(|cx, _host, socket| Box::pin(async move { connect(cx, socket) }))
        .on_mail(|cx, args| {
            Box::pin(async move {
                let result = mail(cx, args).await;
                finish(cx, "mail", result)
            })
        })
        .on_rcpt(|cx, args| {
            Box::pin(async move {
                let result = rcpt(cx, args).await;
                finish(cx, "rcpt", result)
            })
        })
        .on_header(|cx, name, value| Box::pin(async move { header(cx, &name, &value) }))
        .on_eoh(|cx| Box::pin(async move { eoh(cx) }))
        .on_body(|cx, chunk| Box::pin(async move { body(cx, &chunk) }))
        .on_eom(|cx| Box::pin(async move { eom_finish(cx).await }))
        .on_abort(|cx| Box::pin(async move { abort(cx) }))
}

/// Serves MTA connections until `shutdown` completes. Then it drains: new connections are
/// closed at once, messages in flight get up to `DRAIN_LIMIT` to finish, and the sessions end.
pub async fn serve(
    listener: MilterListener,
    shared: Arc<Shared>,
    shutdown: impl Future,
) -> io::Result<()> {
    let listener = GatedListener {
        inner: listener,
        closed: shared.draining.clone(),
    };
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
    let config = indymilter::Config {
        max_connections: engine.config.milter.max_connections,
        actions: NEEDED_ACTIONS,
        // Idle MTA connections are closed after the SMTP session timeouts would have fired.
        connection_timeout: Duration::from_secs(600),
    };
    indymilter::run(listener, callbacks(shared), config, drained).await
}

fn negotiate(
    cx: &mut NegotiateContext<Session>,
    engine: Arc<Engine>,
    in_flight: Arc<AtomicUsize>,
    mta_actions: Actions,
    _mta_opts: ProtoOpts,
) -> Status {
    if !mta_actions.contains(NEEDED_ACTIONS) {
        error!(
            offered = ?mta_actions,
            "MTA does not offer the milter actions we need (add and change header, quarantine, change sender, add and delete recipient, replace body); refusing the connection"
        );
        return Status::Reject;
    }
    cx.requested_actions = NEEDED_ACTIONS;
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
    });
    Status::Continue
}

fn macro_value(macros: &Macros, name: &str) -> Option<String> {
    macro_sent(macros, name).filter(|v| !v.is_empty())
}

/// A macro as the MTA sent it, empty or not (Postfix sends `{mail_addr}` empty for `<>`).
fn macro_sent(macros: &Macros, name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    macros.get(&name).map(|v| v.to_string_lossy().into_owned())
}

/// A client's argument for a log line: control characters escaped, bounded.
fn loggable(raw: &str) -> String {
    raw.chars().take(300).flat_map(char::escape_debug).collect()
}

fn connect(cx: &mut Context<Session>, socket: SocketInfo) -> Status {
    if let Some(session) = cx.data.as_mut() {
        session.facts.client_addr = match socket {
            SocketInfo::Inet(addr) => Some(addr.ip()),
            _ => None,
        };
    }
    Status::Continue
}

fn session(data: &mut Option<Session>) -> Result<&mut Session, MilterError> {
    data.as_mut()
        .ok_or_else(|| MilterError::Internal("no session state (negotiation skipped?)".into()))
}

fn message(data: &mut Option<Session>) -> Result<(&Arc<Engine>, &mut MessageState), MilterError> {
    let session = session(data)?;
    let engine = &session.engine;
    let message = session
        .message
        .as_mut()
        .ok_or_else(|| MilterError::Internal("message stage before MAIL".into()))?;
    Ok((engine, message))
}

/// Runs a store lookup under the deadline.
async fn deadline<T>(
    engine: &Engine,
    work: impl Future<Output = Result<T, crate::store::StoreError>>,
) -> Result<T, MilterError> {
    let limit = engine.config.milter.deadline;
    match tokio::time::timeout(limit, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(MilterError::Deadline(limit)),
    }
}

async fn mail(cx: &mut Context<Session>, args: Vec<CString>) -> Handled {
    let queue_id = macro_value(&cx.macros, "i");
    let facts = SessionFacts {
        client_addr: cx
            .data
            .as_ref()
            .and_then(|s| s.facts.client_addr)
            .or_else(|| macro_value(&cx.macros, "{client_addr}").and_then(|a| a.parse().ok())),
        tls_version: macro_value(&cx.macros, "{tls_version}"),
        cipher: macro_value(&cx.macros, "{cipher}"),
        cert_subject: macro_value(&cx.macros, "{cert_subject}"),
        cert_issuer: macro_value(&cx.macros, "{cert_issuer}"),
        verify: macro_value(&cx.macros, "{verify}"),
        auth_user: macro_value(&cx.macros, "{auth_authen}"),
        cn_subject: macro_value(&cx.macros, "{cn_subject}"),
        cn_issuer: macro_value(&cx.macros, "{cn_issuer}"),
    };
    let raw = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reported = macro_sent(&cx.macros, "{mail_addr}");
    let session = session(&mut cx.data)?;
    session.facts = facts.clone();
    session.message = None;
    let engine = session.engine.clone();
    let outcome = deadline(&engine, engine.sender(&raw, reported.as_deref(), &facts)).await?;
    let sender = outcome.address.clone();
    let refused = outcome.verdict;
    if refused.is_none() || !engine.enforcing() {
        let session = self::session(&mut cx.data)?;
        session.message = Some(MessageState {
            queue_id: queue_id.clone(),
            sender: sender.clone(),
            sender_trust: outcome.trust,
            sender_translation: outcome.translated,
            recipients: Vec::new(),
            refused: 0,
            collector: Collector::new(&engine.config),
            started: Instant::now(),
            _in_flight: InFlight::new(&session.in_flight),
        });
    }
    match refused {
        Some(verdict) => refuse(
            cx,
            &engine,
            queue_id.as_deref(),
            "sender",
            (&sender, &raw),
            &verdict,
        ),
        None => Ok(Status::Continue),
    }
}

async fn rcpt(cx: &mut Context<Session>, args: Vec<CString>) -> Handled {
    let rcpt = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reported = macro_sent(&cx.macros, "{rcpt_addr}");
    let queue_id = macro_value(&cx.macros, "i");
    let session = self::session(&mut cx.data)?;
    let facts = session.facts.clone();
    let (engine, message) = message(&mut cx.data)?;
    let engine = engine.clone();
    if queue_id.is_some() {
        message.queue_id = queue_id;
    }
    let queue_id = message.queue_id.clone();
    let accepted = message.recipients.len();
    let sender = (message.sender.clone(), message.sender_trust);
    let (recipient, refused) = deadline(
        &engine,
        engine.recipient(
            &rcpt,
            reported.as_deref(),
            accepted,
            (&sender.0, sender.1),
            &facts,
        ),
    )
    .await?;
    let (_, message) = self::message(&mut cx.data)?;
    match refused {
        Some(verdict) if verdict.reason == policy::TOO_MANY_RECIPIENTS => {
            // A bound, not policy: enforced in report mode too.
            message.refused += 1;
            info!(queue_id = %queue_id.as_deref().unwrap_or("NOQUEUE"), address = %loggable(&rcpt), "too many recipients");
            count_refusal("rcpt", &verdict);
            status_with_reply(&mut cx.reply, &verdict)
        }
        Some(verdict) => {
            message.refused += 1;
            let recipient_address = recipient.address.clone();
            if !engine.enforcing() {
                // Report mode: the recipient stays; the verdict is only logged.
                message.recipients.push(recipient);
            }
            let address = recipient_address.clone();
            refuse(
                cx,
                &engine,
                queue_id.as_deref(),
                "recipient",
                (&address, &rcpt),
                &verdict,
            )
        }
        None => {
            message.recipients.push(recipient);
            Ok(Status::Continue)
        }
    }
}

/// Answers a refusal at MAIL or RCPT (or, in report mode, only logs it). `address` is the
/// address as judged (for the audit trail) and the argument as the client sent it (logged,
/// escaped).
fn refuse(
    cx: &mut Context<Session>,
    engine: &Engine,
    queue_id: Option<&str>,
    what: &str,
    (address, raw): (&str, &str),
    verdict: &Verdict,
) -> Handled {
    let queue_id = queue_id.unwrap_or("NOQUEUE");
    let reply = verdict.reply.as_ref();
    let reply_text = reply.map(|r| r.to_string()).unwrap_or_default();
    if let Some(audit) = &engine.audit {
        let sender = match what {
            "sender" => Some(address.to_string()),
            _ => cx
                .data
                .as_ref()
                .and_then(|s| s.message.as_ref())
                .map(|m| m.sender.clone()),
        };
        audit.record(AuditEvent {
            time_ms: now_unix_ms(),
            kind: "verdict".into(),
            queue_id: Some(queue_id.to_string()),
            sender,
            recipients: if what == "recipient" {
                vec![address.to_string()]
            } else {
                Vec::new()
            },
            action: audit_action(engine, verdict),
            reason: verdict.reason.into(),
            ..AuditEvent::default()
        });
    }
    count_refusal(if what == "sender" { "mail" } else { "rcpt" }, verdict);
    let address = loggable(raw);
    if !engine.enforcing() {
        info!(queue_id = %queue_id, what = %what, address = %address, reason = %verdict.reason, reply = %reply_text, "report-only: would refuse");
        return Ok(Status::Continue);
    }
    info!(queue_id = %queue_id, what = %what, address = %address, reason = %verdict.reason, reply = %reply_text, "refused");
    status_with_reply(&mut cx.reply, verdict)
}

fn status_with_reply(reply: &mut indymilter::SmtpReply, verdict: &Verdict) -> Handled {
    if let Some(r) = &verdict.reply {
        reply
            .set_error_reply(&r.code, Some(&r.status), [r.text.as_str()])
            .map_err(|e| MilterError::Internal(format!("reply {r}: {e}")))?;
    }
    Ok(match verdict.action {
        Action::Reject => Status::Reject,
        Action::Tempfail => Status::Tempfail,
        Action::Accept | Action::Quarantine => Status::Accept,
    })
}

/// Logs an error with the queue ID and answers tempfail, with a reply saying so.
fn finish(cx: &mut Context<Session>, stage: &str, result: Handled) -> Status {
    match result {
        Ok(status) => status,
        Err(e) => {
            let queue_id = cx
                .data
                .as_ref()
                .and_then(|s| s.message.as_ref())
                .and_then(|m| m.queue_id.clone())
                .unwrap_or_else(|| "NOQUEUE".into());
            tempfail(cx.data.as_ref(), &mut cx.reply, stage, &queue_id, &e)
        }
    }
}

/// An error at `stage`: logged, counted and audited with the queue ID, answered tempfail.
fn tempfail(
    session: Option<&Session>,
    reply: &mut indymilter::SmtpReply,
    stage: &str,
    queue_id: &str,
    e: &MilterError,
) -> Status {
    error!(queue_id = %queue_id, error = %e, "tempfail");
    let verdict = Verdict::tempfail(e.reason());
    count_refusal(stage, &verdict);
    audit_tempfail(session, queue_id, verdict.reason);
    let _ = status_with_reply(reply, &verdict);
    Status::Tempfail
}

fn header(cx: &mut Context<Session>, name: &CStr, value: &CStr) -> Status {
    match message(&mut cx.data) {
        Ok((_, message)) => {
            message.collector.header(name.to_bytes(), value.to_bytes());
            Status::Continue
        }
        Err(e) => finish(cx, "data", Err(e)),
    }
}

/// Body replacement chunk size: 64 KiB, the milter protocol's usual body chunk.
const BODY_CHUNK: usize = 65_535;

fn eoh(cx: &mut Context<Session>) -> Status {
    match message(&mut cx.data) {
        Ok((_, message)) => {
            message.collector.recipients(&message.recipients);
            message.collector.end_of_headers();
            Status::Continue
        }
        Err(e) => finish(cx, "data", Err(e)),
    }
}

/// Past the scan bound the rest of the body is counted, not kept. (Not answered with Skip:
/// indymilter would then skip the end-of-message call for a final chunk that fills the
/// bound, and the message would pass without a verdict.)
fn body(cx: &mut Context<Session>, chunk: &[u8]) -> Status {
    match message(&mut cx.data) {
        Ok((_, message)) => {
            message.collector.body(chunk);
            Status::Continue
        }
        Err(e) => finish(cx, "data", Err(e)),
    }
}

fn abort(cx: &mut Context<Session>) -> Status {
    if let Some(session) = cx.data.as_mut() {
        session.message = None;
    }
    Status::Continue
}

async fn eom_finish(cx: &mut EomContext<Session>) -> Status {
    let queue_id = macro_value(&cx.macros, "i");
    match eom(cx, queue_id.clone()).await {
        Ok(status) => status,
        Err(e) => {
            let queue_id = queue_id.as_deref().unwrap_or("NOQUEUE");
            tempfail(cx.data.as_ref(), &mut cx.reply, "eom", queue_id, &e)
        }
    }
}

async fn eom(cx: &mut EomContext<Session>, queue_id: Option<String>) -> Handled {
    let session = session(&mut cx.data)?;
    let engine = session.engine.clone();
    let session_facts = session.facts.clone();
    let mut message = session
        .message
        .take()
        .ok_or_else(|| MilterError::Internal("end of message before MAIL".into()))?;
    let queue_id = queue_id
        .or(message.queue_id.take())
        .unwrap_or_else(|| "NOQUEUE".into());
    message.collector.end_of_headers();

    let limit = engine.config.milter.deadline;
    let envelope = Envelope {
        sender: message.sender.clone(),
        sender_translation: message.sender_translation.clone(),
        sender_trust: message.sender_trust,
        session: session_facts.clone(),
    };
    let decide = move |engine: &Engine, message: MessageState| {
        let started = Instant::now();
        let outcome = engine.end_of_message(&envelope, &message.recipients, &message.collector);
        (outcome, message, started.elapsed())
    };
    // A small message (every byte held counted: a small body under 2 MiB of headers is not
    // small) is decided here, on the I/O thread: tens of microseconds, less than
    // handing it to another thread and back. Larger ones, and any encryption, are CPU work
    // run on the blocking pool, under the deadline (for this stage: a slow SMTP client before
    // end of data costs nothing here). Either way a panic is a tempfail, not a lost answer.
    let (outcome, message, verdict_time) =
        if message.collector.held_bytes() <= INLINE_BYTES && !message.collector.is_whole() {
            let done =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decide(&engine, message)))
                    .map_err(|_| MilterError::Internal("classifier failed: panic".into()))?;
            // The same deadline as on the blocking pool: a verdict that came too late is a
            // tempfail here too (with every byte held counted, it cannot come late by much).
            if done.2 > limit {
                return Err(MilterError::Deadline(limit));
            }
            done
        } else {
            let engine = engine.clone();
            let worker = tokio::task::spawn_blocking(move || decide(&engine, message));
            match tokio::time::timeout(limit, worker).await {
                Ok(Ok(done)) => done,
                Ok(Err(join)) => {
                    return Err(MilterError::Internal(format!("classifier failed: {join}")));
                }
                Err(_) => return Err(MilterError::Deadline(limit)),
            }
        };
    let Outcome {
        classification,
        verdict,
        error,
    } = &outcome;
    if let Some(error) = error {
        tracing::error!(queue_id = %queue_id, error = %error, "tempfail");
    }

    let status = if engine.config.mode == Mode::Report {
        Status::Accept
    } else {
        apply(cx, verdict).await?
    };

    let vocab = &engine.vocab;
    let found: Vec<String> = classification
        .found
        .iter()
        .map(|f| format!("{}@{}", vocab.level(f.level).name, f.source))
        .collect();
    if classification.conflict {
        warn!(queue_id = %queue_id, found = %found.join(","), "conflicting markings; the highest wins");
    }
    for warning in &classification.warnings {
        warn!(queue_id = %queue_id, warning = %warning, "marking not understood");
    }
    let m = metrics();
    for finding in classification.obfuscated() {
        // The source without an attachment's prefix: a bounded set of metric labels.
        let source = finding.source.rsplit('/').next().unwrap_or_default();
        warn!(
            queue_id = %queue_id,
            marking = %vocab.level(finding.level).name,
            source = %finding.source,
            "obfuscated marking: found only after normalisation or by resemblance"
        );
        m.obfuscated_markings.with_label_values(&[source]).inc();
    }
    for why in &classification.ambiguous {
        warn!(queue_id = %queue_id, why = %why, "ambiguous MIME structure; the raw bytes were scanned too");
    }
    let marking = &vocab.level(classification.level).name;
    m.messages
        .with_label_values(&[marking.as_str(), verdict.action.as_str()])
        .inc();
    m.verdict_seconds.observe(verdict_time.as_secs_f64());
    for recipient in &message.recipients {
        let zone = match recipient.zone {
            policy::Zone::SecureNetwork => "secure-network",
            policy::Zone::SecureSuffix => "secure-suffix",
            policy::Zone::Other => "other",
        };
        m.recipients.with_label_values(&[zone]).inc();
    }
    count_refusal("eom", verdict);
    if let Some(audit) = &engine.audit {
        audit.record(AuditEvent {
            time_ms: now_unix_ms(),
            kind: "verdict".into(),
            queue_id: Some(queue_id.clone()),
            sender: Some(message.sender.clone()),
            recipients: message
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .collect(),
            marking: Some(vocab.level(classification.level).name.clone()),
            action: audit_action(&engine, verdict),
            reason: verdict.reason.into(),
            ..AuditEvent::default()
        });
    }
    info!(
        queue_id = %queue_id,
        sender = %message.sender,
        trust = %message.sender_trust,
        translated = %message.sender_translation.as_deref().unwrap_or(""),
        client = %session_facts.client_addr.map(|a| a.to_string()).unwrap_or_default(),
        tls = %session_facts.tls_version.as_deref().unwrap_or("none"),
        recipients = message.recipients.len(),
        translated_recipients = message.recipients.iter().filter(|r| r.deliver_to.is_some()).count(),
        refused_recipients = message.refused,
        marking = %vocab.level(classification.level).name,
        source = %classification.source,
        action = %verdict.action.as_str(),
        reason = %verdict.reason,
        enforced = engine.enforcing(),
        body_bytes = message.collector.body_bytes(),
        limits = %classification.limits_exceeded.join("; "),
        verdict_us = verdict_time.as_micros() as u64,
        session_ms = message.started.elapsed().as_millis() as u64,
        "message"
    );
    Ok(status)
}

/// Applies the verdict's edits and answer.
async fn apply(cx: &mut EomContext<Session>, verdict: &Verdict) -> Handled {
    if matches!(verdict.action, Action::Accept | Action::Quarantine) {
        for edit in &verdict.edits {
            match edit {
                Edit::DeleteHeader { name, index } => {
                    cx.actions
                        .change_header(name.as_str(), header_index(*index)?, None::<CString>)
                        .await?
                }
                Edit::AddHeader { name, value } => {
                    cx.actions
                        .add_header(name.as_str(), c_string(value))
                        .await?
                }
                Edit::ChangeHeader { name, index, value } => {
                    cx.actions
                        .change_header(name.as_str(), header_index(*index)?, Some(c_string(value)))
                        .await?
                }
                Edit::ChangeSender { address } => {
                    cx.actions
                        .change_sender(c_string(format!("<{address}>")), None::<CString>)
                        .await?
                }
                Edit::ReplaceRecipient {
                    as_received,
                    address,
                } => {
                    cx.actions.delete_recipient(c_string(as_received)).await?;
                    cx.actions
                        .add_recipient(c_string(format!("<{address}>")))
                        .await?
                }
                Edit::ReplaceBody { body } => {
                    // In chunks the size the MTA sends them (a milter packet's bound).
                    for chunk in body.chunks(BODY_CHUNK) {
                        cx.actions.replace_body(chunk).await?;
                    }
                }
            }
        }
        if let Some(reason) = &verdict.quarantine_reason {
            cx.actions.quarantine(c_string(reason)).await?;
        }
    }
    status_with_reply(&mut cx.reply, verdict)
}

fn header_index(index: usize) -> Result<i32, MilterError> {
    i32::try_from(index).map_err(|_| MilterError::Internal(format!("header index {index}")))
}

/// Header values come from the message; a NUL cannot cross the milter protocol.
fn c_string(text: impl AsRef<[u8]>) -> CString {
    let bytes: Vec<u8> = text.as_ref().iter().copied().filter(|&b| b != 0).collect();
    CString::new(bytes).unwrap_or_default()
}
