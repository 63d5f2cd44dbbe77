//! `cjsm-milter check`: a message from a file through the milter's own [`Transaction`], the
//! MTA's part played by splitting the message into headers and body as an MTA would, and the
//! outcome printed as a report.

use crate::engine::Engine;
use crate::policy::{
    Action, DirectoryAnswer, Edit, Reason, Recipient, Reply, SessionFacts, Trust, Zone,
    encryption::Validity,
};
use crate::smime::encrypt::Cipher;
use crate::store::StoreError;
use crate::transaction::Transaction;
use serde::Serialize;

pub struct CheckInput {
    pub sender: String,
    pub recipients: Vec<String>,
    pub session: SessionFacts,
    pub message: Vec<u8>,
}

/// What `check` prints (as JSON).
#[derive(Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub marking: MarkingReport,
    /// What is applied (in report mode: accept).
    pub action: Action,
    pub reply: Option<Reply>,
    pub reason: Reason,
    /// What went wrong, when the verdict is a tempfail for an internal error.
    pub error: Option<String>,
    /// What the rules decided, applied or not.
    pub decision: Decision,
    pub quarantine: Option<String>,
    pub sender: String,
    pub sender_trust: Trust,
    pub recipients: Vec<String>,
    pub routes: Vec<Route>,
    pub encryption: Option<EncryptionReport>,
    pub delivered_as: DeliveredAs,
    pub refused_recipients: Vec<Refused>,
    pub subject: Option<String>,
    pub headers_added: Vec<HeaderAdded>,
    pub headers_removed: Vec<HeaderRemoved>,
    pub headers_changed: Vec<HeaderAdded>,
    pub session: SessionFacts,
}

#[derive(Serialize)]
pub struct MarkingReport {
    pub label: String,
    pub rank: u32,
    pub source: String,
    pub found: Vec<Found>,
    pub conflict: bool,
    pub limits_exceeded: Vec<String>,
    pub ambiguous: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
pub struct Found {
    pub label: String,
    pub source: String,
    pub obfuscated: bool,
}

#[derive(Serialize)]
pub struct Decision {
    pub action: Action,
    pub reply: Option<Reply>,
    pub reason: Reason,
}

#[derive(Serialize)]
pub struct Route {
    pub address: String,
    pub zone: Zone,
    pub directory: DirectoryAnswer,
    pub secure: bool,
    pub deliver_to: Option<String>,
    pub certificate: Option<Validity>,
}

#[derive(Serialize)]
pub struct EncryptionReport {
    #[serde(rename = "for")]
    pub for_: Vec<String>,
    pub escrow: bool,
    pub cipher: Cipher,
    pub body_bytes: Option<usize>,
}

#[derive(Serialize)]
pub struct DeliveredAs {
    pub sender: String,
    pub recipients: Vec<String>,
}

#[derive(Serialize)]
pub struct Refused {
    pub address: String,
    pub reason: Reason,
    pub reply: Option<Reply>,
}

#[derive(Serialize)]
pub struct HeaderAdded {
    pub name: String,
    pub value: String,
}

#[derive(Serialize)]
pub struct HeaderRemoved {
    pub name: String,
    pub index: usize,
}

/// Runs the message through a transaction and reports what the milter would do.
pub async fn check(engine: &Engine, input: CheckInput) -> Result<Report, StoreError> {
    let rules = &engine.rules;
    let lookups = engine.lookups();
    // No MTA: no {mail_addr}/{rcpt_addr}. The arguments get the same syntax rule.
    let (mut transaction, _) =
        Transaction::mail(rules, &lookups, &input.sender, None, input.session.clone()).await?;
    for rcpt in &input.recipients {
        transaction.rcpt(rules, &lookups, rcpt, None).await?;
    }
    feed(&mut transaction, &input.message);
    let outcome = transaction.finish(rules, &engine.smime);
    let classification = &outcome.classification;
    let applied = &outcome.applied;

    let vocab = &rules.vocab;
    let level = vocab.level(classification.level);
    let edits = if applied.delivers() {
        applied.edits()
    } else {
        &[]
    };
    let sender = transaction.sender.address.clone();
    let recipients = &transaction.recipients;
    Ok(Report {
        mode: if engine.enforcing() {
            "enforce"
        } else {
            "report"
        },
        marking: MarkingReport {
            label: level.name.clone(),
            rank: level.rank,
            source: classification.source.clone(),
            found: classification
                .found
                .iter()
                .map(|f| Found {
                    label: vocab.level(f.level).name.clone(),
                    source: f.source.clone(),
                    obfuscated: f.obfuscated,
                })
                .collect(),
            conflict: classification.conflict,
            limits_exceeded: classification.limits_exceeded.clone(),
            ambiguous: classification.ambiguous.clone(),
            warnings: classification.warnings.clone(),
        },
        action: applied.action(),
        reply: applied.reply().cloned(),
        reason: applied.reason(),
        error: outcome
            .error
            .as_ref()
            .map(|e| format!("encryption failed: {e}")),
        decision: Decision {
            action: outcome.decision.action(),
            reply: outcome.decision.reply().cloned(),
            reason: outcome.decision.reason(),
        },
        quarantine: if applied.delivers() {
            applied.quarantine_reason().map(str::to_string)
        } else {
            None
        },
        sender_trust: transaction.sender.trust,
        recipients: recipients.iter().map(|r| r.address.clone()).collect(),
        routes: recipients
            .iter()
            .map(|r| Route {
                address: r.address.clone(),
                zone: r.zone,
                directory: r.directory,
                secure: r.is_secure(),
                deliver_to: r.deliver_to.clone(),
                certificate: r.certificate,
            })
            .collect(),
        encryption: (applied.delivers() && !applied.encrypt_for().is_empty()).then(|| {
            EncryptionReport {
                for_: applied.encrypt_for().to_vec(),
                escrow: engine.smime.escrow.is_some(),
                cipher: engine.config().encryption.cipher,
                body_bytes: edits.iter().find_map(|e| match e {
                    Edit::ReplaceBody { body } => Some(body.len()),
                    _ => None,
                }),
            }
        }),
        delivered_as: DeliveredAs {
            sender: delivered_sender(edits).unwrap_or_else(|| sender.clone()),
            recipients: recipients
                .iter()
                .map(|r| delivered_recipient(edits, r))
                .collect(),
        },
        refused_recipients: transaction
            .refused
            .iter()
            .map(|r| Refused {
                address: r.address.clone(),
                reason: r.verdict.reason(),
                reply: r.verdict.reply().cloned(),
            })
            .collect(),
        subject: final_subject(classification.subject.as_deref(), edits),
        headers_added: edits
            .iter()
            .filter_map(|e| match e {
                Edit::AddHeader { name, value } => Some(HeaderAdded {
                    name: name.clone(),
                    value: value.clone(),
                }),
                _ => None,
            })
            .collect(),
        headers_removed: edits
            .iter()
            .filter_map(|e| match e {
                Edit::DeleteHeader { name, index } => Some(HeaderRemoved {
                    name: name.clone(),
                    index: *index,
                }),
                _ => None,
            })
            .collect(),
        headers_changed: edits
            .iter()
            .filter_map(|e| match e {
                Edit::ChangeHeader { name, value, .. } if !name.eq_ignore_ascii_case("Subject") => {
                    Some(HeaderAdded {
                        name: name.clone(),
                        value: String::from_utf8_lossy(value).into_owned(),
                    })
                }
                _ => None,
            })
            .collect(),
        sender,
        session: input.session,
    })
}

/// The envelope sender as delivered: address translation's, if any.
fn delivered_sender(edits: &[Edit]) -> Option<String> {
    edits.iter().find_map(|e| match e {
        Edit::ChangeSender { address } => Some(address.clone()),
        _ => None,
    })
}

/// A recipient as delivered: address translation's, if any.
fn delivered_recipient(edits: &[Edit], recipient: &Recipient) -> String {
    edits
        .iter()
        .find_map(|e| match e {
            Edit::ReplaceRecipient {
                as_received,
                address,
            } if *as_received == recipient.as_received => Some(address.clone()),
            _ => None,
        })
        .unwrap_or_else(|| recipient.address.clone())
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
        Some(value) => crate::collector::decode_subject(&value)
            .or_else(|| Some(String::from_utf8_lossy(&value).into_owned())),
        None => decoded.map(str::to_string),
    }
}

/// Splits a message into header fields and body as an MTA hands them to a milter: a header
/// value without the space after the colon, folded lines kept, the body from the blank line.
/// A line that is neither a header nor a continuation ends the headers, as in Postfix.
pub fn feed(transaction: &mut Transaction, message: &[u8]) {
    let mut pos = 0;
    let mut current: Option<(usize, usize, usize)> = None; // (name start, name end, value end)
    let flush = |transaction: &mut Transaction, current: Option<(usize, usize, usize)>| {
        if let Some((start, colon, end)) = current {
            let name = trim_ascii_end(&message[start..colon]);
            let mut value = &message[colon + 1..end];
            if let Some(rest) = value.strip_prefix(b" ") {
                value = rest;
            }
            // Milter header values are C strings: a NUL ends what the milter sees.
            let value = value.split(|&b| b == 0).next().unwrap_or_default();
            transaction.header(name, trim_line_end(value));
        }
    };
    while pos < message.len() {
        let line_end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..line_end];
        if trim_line_end(line).is_empty() {
            flush(transaction, current.take());
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
                flush(transaction, current.take());
                current = Some((pos, pos + colon, line_end));
                pos = line_end;
            }
            // Not a header: the body starts here.
            None => break,
        }
    }
    flush(transaction, current.take());
    transaction.end_of_headers();
    if pos < message.len() {
        transaction.body(&message[pos..]);
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
