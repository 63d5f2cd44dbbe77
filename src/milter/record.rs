//! Recording what happened to a message: one log line per message with the queue ID (and one
//! per refusal or failure), the metrics, and the audit trail. Never a message body.

use super::apply::status_with_reply;
use super::{Message, MilterError, Session};
use crate::clock::now_unix_ms;
use crate::directory::model::{AuditEvent, VerdictEvent};
use crate::engine::Engine;
use crate::metrics::metrics;
use crate::policy::{Action, Reason, Stage, Verdict};
use crate::transaction::Outcome;
use indymilter::{SmtpReply, Status};
use std::time::Duration;
use tracing::{error, info, warn};

/// A refusal at MAIL or RCPT, as recorded.
pub(super) struct Refusal<'a> {
    pub stage: Stage,
    pub queue_id: &'a str,
    /// The address as judged (the sender at MAIL, the recipient at RCPT).
    pub address: &'a str,
    /// The transaction's sender.
    pub sender: Option<&'a str>,
    /// The argument as the client sent it (logged, escaped).
    pub raw: &'a str,
}

/// A client's argument for a log line: control characters escaped, bounded.
pub(super) fn loggable(raw: &str) -> String {
    raw.chars().take(300).flat_map(char::escape_debug).collect()
}

/// Counts a refusal for the metrics.
fn count_refusal(stage: Stage, verdict: &Verdict) {
    if matches!(verdict.action(), Action::Reject | Action::Tempfail) {
        metrics()
            .refusals
            .with_label_values(&[
                stage.as_str(),
                verdict.action().as_str(),
                verdict.reason().as_str(),
            ])
            .inc();
    }
}

/// The action an audit entry records: the verdict's, marked when it was only reported.
fn audit_action(engine: &Engine, verdict: &Verdict) -> String {
    if engine.enforcing() {
        verdict.action().as_str().into()
    } else {
        format!("report-only {}", verdict.action().as_str())
    }
}

/// A refusal at MAIL or RCPT (or, in report mode, one that would have been): logged, counted,
/// audited. The recipient bound is not policy: it is logged and counted only.
pub(super) fn refusal(engine: &Engine, refusal: &Refusal, verdict: &Verdict) {
    let queue_id = refusal.queue_id;
    count_refusal(refusal.stage, verdict);
    let address = loggable(refusal.raw);
    if verdict.reason() == Reason::TooManyRecipients {
        info!(queue_id = %queue_id, address = %address, "too many recipients");
        return;
    }
    if let Some(audit) = &engine.audit {
        let recipients = match refusal.stage {
            Stage::Rcpt => vec![refusal.address.to_string()],
            _ => Vec::new(),
        };
        audit.record(AuditEvent::Verdict(VerdictEvent {
            time_ms: now_unix_ms(),
            queue_id: Some(queue_id.to_string()),
            sender: refusal.sender.map(str::to_string),
            recipients,
            action: audit_action(engine, verdict),
            reason: verdict.reason().as_str().into(),
            ..VerdictEvent::default()
        }));
    }
    let what = match refusal.stage {
        Stage::Mail => "sender",
        _ => "recipient",
    };
    let reply = verdict
        .reply()
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    if engine.enforcing() {
        info!(queue_id = %queue_id, what = %what, address = %address, reason = %verdict.reason(), reply = %reply, "refused");
    } else {
        info!(queue_id = %queue_id, what = %what, address = %address, reason = %verdict.reason(), reply = %reply, "report-only: would refuse");
    }
}

/// An error at `stage`: logged, counted and audited with the queue ID, answered tempfail.
pub(super) fn tempfail(
    session: Option<&Session>,
    reply: &mut SmtpReply,
    stage: Stage,
    queue_id: &str,
    e: &MilterError,
) -> Status {
    error!(queue_id = %queue_id, error = %e, "tempfail");
    let verdict = Verdict::tempfail(e.reason());
    count_refusal(stage, &verdict);
    audit_tempfail(session, queue_id, verdict.reason());
    let _ = status_with_reply(reply, &verdict);
    Status::Tempfail
}

/// Records an internal failure's tempfail in the audit trail (the reason, never the detail).
fn audit_tempfail(session: Option<&Session>, queue_id: &str, reason: Reason) {
    let Some(session) = session else { return };
    let Some(audit) = &session.engine.audit else {
        return;
    };
    let transaction = session.message.as_ref().map(|m| &m.transaction);
    audit.record(AuditEvent::Verdict(VerdictEvent {
        time_ms: now_unix_ms(),
        queue_id: Some(queue_id.to_string()),
        sender: transaction.map(|t| t.sender.address.clone()),
        recipients: transaction
            .map(|t| t.recipients.iter().map(|r| r.address.clone()).collect())
            .unwrap_or_default(),
        action: "tempfail".into(),
        reason: reason.as_str().into(),
        ..VerdictEvent::default()
    }));
}

/// End of message: the warnings about the marking, the metrics, the audit entry and the
/// message's one summary line.
pub(super) fn message(
    engine: &Engine,
    queue_id: &str,
    message: &Message,
    outcome: &Outcome,
    verdict_time: Duration,
) {
    let Outcome {
        classification,
        verdict,
        ..
    } = outcome;
    let transaction = &message.transaction;
    let vocab = &engine.rules.vocab;
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
        .with_label_values(&[marking.as_str(), verdict.action().as_str()])
        .inc();
    m.verdict_seconds.observe(verdict_time.as_secs_f64());
    for recipient in &transaction.recipients {
        m.recipients
            .with_label_values(&[recipient.zone.as_str()])
            .inc();
    }
    count_refusal(Stage::Eom, verdict);
    let sender = &transaction.sender;
    if let Some(audit) = &engine.audit {
        audit.record(AuditEvent::Verdict(VerdictEvent {
            time_ms: now_unix_ms(),
            queue_id: Some(queue_id.to_string()),
            sender: Some(sender.address.clone()),
            recipients: transaction
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .collect(),
            marking: Some(marking.clone()),
            action: audit_action(engine, verdict),
            reason: verdict.reason().as_str().into(),
        }));
    }
    let session = &transaction.session;
    info!(
        queue_id = %queue_id,
        sender = %sender.address,
        trust = %sender.trust,
        translated = %sender.translated.as_deref().unwrap_or(""),
        client = %session.client_addr.map(|a| a.to_string()).unwrap_or_default(),
        tls = %session.tls_version.as_deref().unwrap_or("none"),
        recipients = transaction.recipients.len(),
        translated_recipients = transaction.recipients.iter().filter(|r| r.deliver_to.is_some()).count(),
        refused_recipients = transaction.refused.len(),
        marking = %marking,
        source = %classification.source,
        action = %verdict.action().as_str(),
        reason = %verdict.reason(),
        enforced = engine.enforcing(),
        body_bytes = transaction.collector.body_bytes(),
        limits = %classification.limits_exceeded.join("; "),
        verdict_us = verdict_time.as_micros() as u64,
        session_ms = message.started.elapsed().as_millis() as u64,
        "message"
    );
}
