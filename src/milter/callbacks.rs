//! The indymilter callbacks: each forwards to a handler, which turns the MTA's macros into facts
//! and drives one step of the [`Transaction`]. An `Err` from a handler is a tempfail: at once
//! where the MTA waits for a reply, at end of message where it does not ([`reply_or_remember`]).

use super::apply::{apply, status_with_reply};
use super::record;
use super::{Deferred, Handled, Message, MilterError, Session, negotiate};
use crate::engine::{Engine, Shared};
use crate::policy::{SessionFacts, Stage};
use crate::transaction::{Answer, Outcome, Transaction};
use indymilter::{Callbacks, Context, EomContext, Macros, ProtoOpts, SocketInfo, Status};
use std::ffi::{CStr, CString};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Messages of at most this many bytes held (headers, body, header lines past the bounds)
/// are decided on the I/O thread (see [`eom`]).
const INLINE_BYTES: u64 = 64 * 1024;

/// The indymilter callbacks, each forwarding to a handler.
pub fn callbacks(shared: Arc<Shared>) -> Callbacks<Session> {
    Callbacks::new()
        .on_negotiate(move |cx, actions, opts| {
            let engine = shared.current();
            let in_flight = shared.in_flight.clone();
            Box::pin(async move { negotiate(cx, engine, in_flight, actions, opts) })
        })
        .on_connect(|cx, _host, socket| {
            Box::pin(async move {
                // Nothing here can fail (an error would be recorded at MAIL, the first stage
                // with a reply of its own).
                connect(cx, socket);
                reply_or_remember(cx, ProtoOpts::NOREPLY_CONNECT, Stage::Mail, Ok(()))
            })
        })
        .on_mail(|cx, args| {
            Box::pin(async move {
                let result = mail(cx, args).await;
                finish(cx, Stage::Mail, result)
            })
        })
        .on_rcpt(|cx, args| {
            Box::pin(async move {
                let result = rcpt(cx, args).await;
                finish(cx, Stage::Rcpt, result)
            })
        })
        .on_header(|cx, name, value| {
            Box::pin(async move {
                let result = header(cx, &name, &value);
                reply_or_remember(cx, ProtoOpts::NOREPLY_HEADER, Stage::Data, result)
            })
        })
        .on_eoh(|cx| {
            Box::pin(async move {
                let result = eoh(cx);
                reply_or_remember(cx, ProtoOpts::NOREPLY_EOH, Stage::Data, result)
            })
        })
        .on_body(|cx, chunk| {
            Box::pin(async move {
                let result = body(cx, &chunk);
                reply_or_remember(cx, ProtoOpts::NOREPLY_BODY, Stage::Data, result)
            })
        })
        .on_eom(|cx| Box::pin(async move { eom_finish(cx).await }))
        .on_abort(|cx| Box::pin(async move { abort(cx) }))
}

fn macro_value(macros: &Macros, name: &str) -> Option<String> {
    macro_sent(macros, name).filter(|v| !v.is_empty())
}

/// A macro as the MTA sent it, empty or not (Postfix sends `{mail_addr}` empty for `<>`).
fn macro_sent(macros: &Macros, name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    macros.get(&name).map(|v| v.to_string_lossy().into_owned())
}

/// The first argument of MAIL or RCPT: the address as the client sent it.
fn first_argument(args: &[CString]) -> String {
    args.first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn session(data: &mut Option<Session>) -> Result<&mut Session, MilterError> {
    data.as_mut()
        .ok_or_else(|| MilterError::Internal("no session state (negotiation skipped?)".into()))
}

fn message(data: &mut Option<Session>) -> Result<(&Arc<Engine>, &mut Message), MilterError> {
    let session = session(data)?;
    let engine = &session.engine;
    let message = session
        .message
        .as_mut()
        .ok_or_else(|| MilterError::Internal("message stage before MAIL".into()))?;
    Ok((engine, message))
}

/// Runs a step that asks the directory under the deadline.
async fn deadline<T>(
    engine: &Engine,
    work: impl Future<Output = Result<T, crate::store::StoreError>>,
) -> Result<T, MilterError> {
    let limit = engine.config().milter.deadline;
    match tokio::time::timeout(limit, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(MilterError::Deadline(limit)),
    }
}

/// Logs an error with the queue ID and answers tempfail, with a reply saying so.
fn finish(cx: &mut Context<Session>, stage: Stage, result: Handled) -> Status {
    match result {
        Ok(status) => status,
        Err(e) => {
            let queue_id = cx
                .data
                .as_ref()
                .and_then(|s| s.message.as_ref())
                .and_then(|m| m.queue_id.clone())
                .unwrap_or_else(|| "NOQUEUE".into());
            record::tempfail(cx.data.as_ref(), &mut cx.reply, stage, &queue_id, &e)
        }
    }
}

/// The answer at a stage where the milter has nothing to say before end of message: none
/// where the MTA agreed not to wait for one, continue otherwise. An error there is answered
/// with tempfail at once where the MTA waits; where it does not, a reply would be read as the
/// answer to a later command (the protocol desynchronised), so the first error is remembered
/// and answered at end of message instead, as the error at `stage` it was.
///
/// (An MTA may send the last body chunk with the end-of-message command; indymilter then
/// skips the end of message on any answer but continue. Postfix and Sendmail send that
/// command empty, and the body stage negotiated without a reply is answered with none.)
fn reply_or_remember(
    cx: &mut Context<Session>,
    no_reply: ProtoOpts,
    stage: Stage,
    result: Result<(), MilterError>,
) -> Status {
    let session = cx
        .data
        .as_mut()
        .filter(|session| session.no_reply.contains(no_reply));
    match (result, session) {
        (Ok(()), None) => Status::Continue,
        (Ok(()), Some(_)) => Status::Noreply,
        (Err(e), None) => finish(cx, stage, Err(e)),
        (Err(error), Some(session)) => {
            session.deferred.get_or_insert(Deferred { stage, error });
            Status::Noreply
        }
    }
}

/// The client's address from the connection (the MAIL stage's `{client_addr}` otherwise).
fn connect(cx: &mut Context<Session>, socket: SocketInfo) {
    if let Some(session) = cx.data.as_mut() {
        session.facts.client_addr = match socket {
            SocketInfo::Inet(addr) => Some(addr.ip()),
            _ => None,
        };
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
    let raw = first_argument(&args);
    let reported = macro_sent(&cx.macros, "{mail_addr}");
    let session = session(&mut cx.data)?;
    session.facts = facts.clone();
    session.message = None;
    session.deferred = None;
    let engine = session.engine.clone();
    let lookups = engine.lookups();
    let mail = Transaction::mail(&engine.rules, &lookups, &raw, reported.as_deref(), facts);
    let (transaction, answer) = deadline(&engine, mail).await?;
    let sender = transaction.sender.address.clone();
    // A refused sender ends the transaction; a reported one goes on.
    if !matches!(answer, Answer::Refuse(_)) {
        let session = self::session(&mut cx.data)?;
        session.message = Some(Message {
            queue_id: queue_id.clone(),
            transaction,
            started: Instant::now(),
            _in_flight: super::InFlight::new(&session.in_flight),
        });
    }
    let queue_id = queue_id.as_deref().unwrap_or("NOQUEUE");
    let refusal = record::Refusal {
        stage: Stage::Mail,
        queue_id,
        address: &sender,
        sender: Some(&sender),
        raw: &raw,
    };
    answered(cx, &engine, refusal, answer)
}

async fn rcpt(cx: &mut Context<Session>, args: Vec<CString>) -> Handled {
    let raw = first_argument(&args);
    let reported = macro_sent(&cx.macros, "{rcpt_addr}");
    let queue_id = macro_value(&cx.macros, "i");
    let (engine, message) = message(&mut cx.data)?;
    let engine = engine.clone();
    if queue_id.is_some() {
        message.queue_id = queue_id;
    }
    let lookups = engine.lookups();
    let step = message
        .transaction
        .rcpt(&engine.rules, &lookups, &raw, reported.as_deref());
    let answer = deadline(&engine, step).await?;
    let (_, message) = self::message(&mut cx.data)?;
    let queue_id = message.queue_id.clone();
    let queue_id = queue_id.as_deref().unwrap_or("NOQUEUE");
    let sender = message.transaction.sender.address.clone();
    let address = message
        .transaction
        .refused
        .last()
        .map(|r| r.address.clone())
        .unwrap_or_default();
    let refusal = record::Refusal {
        stage: Stage::Rcpt,
        queue_id,
        address: &address,
        sender: Some(&sender),
        raw: &raw,
    };
    answered(cx, &engine, refusal, answer)
}

/// A step's answer, recorded and given to the MTA.
fn answered(
    cx: &mut Context<Session>,
    engine: &Engine,
    refusal: record::Refusal,
    answer: Answer,
) -> Handled {
    match answer {
        Answer::Continue => Ok(Status::Continue),
        Answer::Report(verdict) => {
            record::refusal(engine, &refusal, &verdict);
            Ok(Status::Continue)
        }
        Answer::Refuse(verdict) => {
            record::refusal(engine, &refusal, &verdict);
            status_with_reply(&mut cx.reply, &verdict)
        }
    }
}

fn header(cx: &mut Context<Session>, name: &CStr, value: &CStr) -> Result<(), MilterError> {
    let (_, message) = message(&mut cx.data)?;
    message
        .transaction
        .header(name.to_bytes(), value.to_bytes());
    Ok(())
}

fn eoh(cx: &mut Context<Session>) -> Result<(), MilterError> {
    let (_, message) = message(&mut cx.data)?;
    message.transaction.end_of_headers();
    Ok(())
}

/// Past the scan bound the rest of the body is counted, not kept. (Not answered with Skip:
/// indymilter would then skip the end-of-message call for a final chunk that fills the
/// bound, and the message would pass without a verdict.)
fn body(cx: &mut Context<Session>, chunk: &[u8]) -> Result<(), MilterError> {
    let (_, message) = message(&mut cx.data)?;
    message.transaction.body(chunk);
    Ok(())
}

fn abort(cx: &mut Context<Session>) -> Status {
    if let Some(session) = cx.data.as_mut() {
        session.message = None;
        session.deferred = None;
    }
    Status::Continue
}

async fn eom_finish(cx: &mut EomContext<Session>) -> Status {
    let queue_id = macro_value(&cx.macros, "i");
    // An error remembered at a stage that had no reply: answered now, as it would have been
    // there (the transaction's sender and recipients still in the audit entry).
    if let Some(Deferred { stage, error }) = cx.data.as_mut().and_then(|s| s.deferred.take()) {
        let queue_id = queue_id
            .or_else(|| {
                let message = cx.data.as_ref()?.message.as_ref()?;
                message.queue_id.clone()
            })
            .unwrap_or_else(|| "NOQUEUE".into());
        let status = record::tempfail(cx.data.as_ref(), &mut cx.reply, stage, &queue_id, &error);
        if let Some(session) = cx.data.as_mut() {
            session.message = None;
        }
        return status;
    }
    match eom(cx, queue_id.clone()).await {
        Ok(status) => status,
        Err(e) => {
            let queue_id = queue_id.as_deref().unwrap_or("NOQUEUE");
            record::tempfail(cx.data.as_ref(), &mut cx.reply, Stage::Eom, queue_id, &e)
        }
    }
}

async fn eom(cx: &mut EomContext<Session>, queue_id: Option<String>) -> Handled {
    let session = session(&mut cx.data)?;
    let engine = session.engine.clone();
    let mut message = session
        .message
        .take()
        .ok_or_else(|| MilterError::Internal("end of message before MAIL".into()))?;
    let queue_id = queue_id
        .or(message.queue_id.take())
        .unwrap_or_else(|| "NOQUEUE".into());
    message.transaction.end_of_headers();

    let limit = engine.config().milter.deadline;
    let decide = move |engine: &Engine, message: Message| {
        let started = Instant::now();
        let outcome = message.transaction.finish(&engine.rules, &engine.smime);
        (outcome, message, started.elapsed())
    };
    // A small message (every byte held counted: a small body under 2 MiB of headers is not
    // small) is decided here, on the I/O thread: tens of microseconds, less than
    // handing it to another thread and back. Larger ones, and any encryption, are CPU work
    // run on the blocking pool, under the deadline (for this stage: a slow SMTP client before
    // end of data costs nothing here). Either way a panic is a tempfail, not a lost answer.
    let collector = &message.transaction.collector;
    let (outcome, message, verdict_time) =
        if collector.held_bytes() <= INLINE_BYTES && !collector.is_whole() {
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
    if let Some(error) = &outcome.error {
        tracing::error!(queue_id = %queue_id, error = %format!("encryption failed: {error}"), "tempfail");
    }
    let Outcome { applied, .. } = &outcome;
    let status = apply(cx, applied).await?;
    record::message(&engine, &queue_id, &message, &outcome, verdict_time);
    Ok(status)
}
