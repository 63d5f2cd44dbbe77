//! `cjsm-milter check`: a message from a file through exactly the milter's pipeline, the
//! MTA's part played by splitting the message into headers and body as an MTA would.

use crate::engine::Engine;
use crate::pipeline::{Collector, Envelope};
use crate::policy::{Action, Edit, Recipient, Reply, SessionFacts, Verdict};
use crate::store::StoreError;
use serde::Serialize;
use serde_json::{Value, json};

pub struct CheckInput {
    pub sender: String,
    pub recipients: Vec<String>,
    pub session: SessionFacts,
    pub message: Vec<u8>,
}

#[derive(Serialize)]
struct Refused {
    address: String,
    reason: &'static str,
    reply: Option<Reply>,
}

/// Runs the pipeline and returns the report printed as JSON.
pub async fn check(engine: &Engine, input: CheckInput) -> Result<Value, StoreError> {
    let enforcing = engine.enforcing();
    let mut refused = Vec::new();

    // No MTA: no {mail_addr}/{rcpt_addr}. The arguments get the same syntax rule.
    let sender_outcome = engine.sender(&input.sender, None, &input.session).await?;
    let sender = sender_outcome.address.clone();
    let mut recipients: Vec<Recipient> = Vec::new();
    let mut first_refusal: Option<Verdict> = None;
    for rcpt in &input.recipients {
        let (recipient, verdict) = engine
            .recipient(
                rcpt,
                None,
                recipients.len(),
                (&sender, sender_outcome.trust),
                &input.session,
            )
            .await?;
        match verdict {
            Some(verdict) => {
                refused.push(Refused {
                    address: recipient.address.clone(),
                    reason: verdict.reason,
                    reply: verdict.reply.clone(),
                });
                // As in the milter: the recipient bound holds in report mode too.
                if !enforcing && verdict.reason != crate::policy::TOO_MANY_RECIPIENTS {
                    recipients.push(recipient);
                }
                first_refusal.get_or_insert(verdict);
            }
            None => recipients.push(recipient),
        }
    }

    let mut collector = Collector::new(&engine.config);
    collector.recipients(&recipients);
    feed(&mut collector, &input.message);
    collector.end_of_headers();
    let envelope = Envelope {
        sender: sender.clone(),
        sender_translation: sender_outcome.translated.clone(),
        sender_trust: sender_outcome.trust,
        session: input.session.clone(),
    };
    let outcome = engine.end_of_message(&envelope, &recipients, &collector);
    let classification = &outcome.classification;

    // What the MTA would have done before end of message: a refused sender ends the
    // transaction at MAIL, and with every recipient refused there is no DATA.
    let decision = match (
        sender_outcome.verdict.clone(),
        recipients.is_empty(),
        first_refusal,
    ) {
        (Some(verdict), _, _) => verdict,
        (None, true, Some(verdict)) => verdict,
        _ => outcome.verdict.clone(),
    };
    let applied = if enforcing {
        decision.clone()
    } else {
        Verdict {
            action: Action::Accept,
            reply: None,
            reason: "report-only",
            edits: Vec::new(),
            quarantine_reason: None,
            encrypt_for: Vec::new(),
        }
    };

    let vocab = &engine.vocab;
    let level = vocab.level(classification.level);
    let found: Vec<Value> = classification
        .found
        .iter()
        .map(|f| {
            json!({
                "label": vocab.level(f.level).name,
                "source": f.source,
                "obfuscated": f.obfuscated,
            })
        })
        .collect();
    let accepted = matches!(applied.action, Action::Accept | Action::Quarantine);
    let edits = if accepted {
        applied.edits.as_slice()
    } else {
        &[]
    };
    let headers_added: Vec<Value> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::AddHeader { name, value } => Some(json!({"name": name, "value": value})),
            _ => None,
        })
        .collect();
    let headers_removed: Vec<Value> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::DeleteHeader { name, index } => Some(json!({"name": name, "index": index})),
            _ => None,
        })
        .collect();
    let headers_changed: Vec<Value> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::ChangeHeader { name, value, .. } if !name.eq_ignore_ascii_case("Subject") => {
                Some(json!({"name": name, "value": String::from_utf8_lossy(value)}))
            }
            _ => None,
        })
        .collect();
    let sender_delivered = edits
        .iter()
        .find_map(|e| match e {
            Edit::ChangeSender { address } => Some(address.clone()),
            _ => None,
        })
        .unwrap_or_else(|| sender.clone());
    let recipients_delivered: Vec<String> = recipients
        .iter()
        .map(|r| {
            edits
                .iter()
                .find_map(|e| match e {
                    Edit::ReplaceRecipient {
                        as_received,
                        address,
                    } if *as_received == r.as_received => Some(address.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| r.address.clone())
        })
        .collect();
    let subject = final_subject(classification.subject.as_deref(), edits);

    Ok(json!({
        "mode": if enforcing { "enforce" } else { "report" },
        "marking": {
            "label": level.name,
            "rank": level.rank,
            "source": classification.source,
            "found": found,
            "conflict": classification.conflict,
            "limits_exceeded": classification.limits_exceeded,
            "ambiguous": classification.ambiguous,
            "warnings": classification.warnings,
        },
        "action": applied.action,
        "reply": applied.reply,
        "reason": applied.reason,
        "error": outcome.error,
        "decision": {
            "action": decision.action,
            "reply": decision.reply,
            "reason": decision.reason,
        },
        "quarantine": if accepted { applied.quarantine_reason.clone() } else { None },
        "sender": sender,
        "sender_trust": sender_outcome.trust,
        "recipients": recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
        "routes": recipients.iter().map(|r| json!({
            "address": r.address, "zone": r.zone, "directory": r.directory, "secure": r.is_secure(),
            "deliver_to": r.deliver_to, "certificate": r.certificate,
        })).collect::<Vec<_>>(),
        "encryption": if accepted && !applied.encrypt_for.is_empty() {
            json!({
                "for": applied.encrypt_for,
                "escrow": engine.escrow.is_some(),
                "cipher": engine.config.encryption.cipher,
                "body_bytes": edits.iter().find_map(|e| match e {
                    Edit::ReplaceBody { body } => Some(body.len()),
                    _ => None,
                }),
            })
        } else {
            Value::Null
        },
        "delivered_as": {
            "sender": sender_delivered,
            "recipients": recipients_delivered,
        },
        "refused_recipients": refused,
        "subject": subject,
        "headers_added": headers_added,
        "headers_removed": headers_removed,
        "headers_changed": headers_changed,
        "session": input.session,
    }))
}

/// The Subject as delivered, decoded: the Subject edit's value when there is one.
fn final_subject(decoded: Option<&str>, edits: &[Edit]) -> Option<String> {
    let edited = edits.iter().rev().find_map(|e| match e {
        Edit::ChangeHeader { name, value, .. } if name.eq_ignore_ascii_case("Subject") => {
            Some(value.clone())
        }
        Edit::AddHeader { name, value } if name.eq_ignore_ascii_case("Subject") => {
            Some(value.as_bytes().to_vec())
        }
        _ => None,
    });
    match edited {
        Some(value) => crate::pipeline::decode_subject(&value)
            .or_else(|| Some(String::from_utf8_lossy(&value).into_owned())),
        None => decoded.map(str::to_string),
    }
}

/// Splits a message into header fields and body as an MTA hands them to a milter: a header
/// value without the space after the colon, folded lines kept, the body from the blank line.
/// A line that is neither a header nor a continuation ends the headers, as in Postfix.
pub fn feed(collector: &mut Collector, message: &[u8]) {
    let mut pos = 0;
    let mut current: Option<(usize, usize, usize)> = None; // (name start, name end, value end)
    let flush = |collector: &mut Collector, current: Option<(usize, usize, usize)>| {
        if let Some((start, colon, end)) = current {
            let name = trim_ascii_end(&message[start..colon]);
            let mut value = &message[colon + 1..end];
            if let Some(rest) = value.strip_prefix(b" ") {
                value = rest;
            }
            // Milter header values are C strings: a NUL ends what the milter sees.
            let value = value.split(|&b| b == 0).next().unwrap_or_default();
            collector.header(name, trim_line_end(value));
        }
    };
    while pos < message.len() {
        let line_end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..line_end];
        if trim_line_end(line).is_empty() {
            flush(collector, current.take());
            pos = line_end;
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            match current.as_mut() {
                Some((_, _, end)) => {
                    *end = line_end;
                    pos = line_end;
                    continue;
                }
                // A continuation with nothing to continue: not a header, the body starts.
                None => break,
            }
        }
        match header_name_end(line) {
            Some(colon) => {
                flush(collector, current.take());
                current = Some((pos, pos + colon, line_end));
                pos = line_end;
            }
            // Not a header: the body starts here.
            None => break,
        }
    }
    flush(collector, current.take());
    collector.end_of_headers();
    if pos < message.len() {
        collector.body(&message[pos..]);
    }
}

/// The offset of the colon of a header line: a name of printable ASCII without spaces, then
/// optional blanks (the obsolete `Subject :`), then `:`.
fn header_name_end(line: &[u8]) -> Option<usize> {
    let name_len = line
        .iter()
        .position(|&b| !(b.is_ascii_graphic() && b != b':'))
        .unwrap_or(line.len());
    if name_len == 0 {
        return None;
    }
    let blanks = line[name_len..]
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(line.len() - name_len);
    let colon = name_len + blanks;
    (line.get(colon) == Some(&b':')).then_some(colon)
}

fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && (bytes[end - 1] == b'\n' || bytes[end - 1] == b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

fn trim_ascii_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && bytes[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names() {
        assert_eq!(header_name_end(b"Subject: x"), Some(7));
        assert_eq!(header_name_end(b"Subject : x"), Some(8));
        assert_eq!(header_name_end(b"X-A:"), Some(3));
        assert_eq!(header_name_end(b"Not a header: x"), None);
        assert_eq!(header_name_end(b": x"), None);
        assert_eq!(header_name_end(b"NoColon"), None);
    }
}
