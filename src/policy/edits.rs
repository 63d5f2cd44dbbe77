//! The edits of an accepted message: the headers we add (and the forged copies we remove),
//! the Subject tag, and address translation.

use super::{Edit, MessageFacts, Recipient, Rules, Zone};
use crate::marking::Level;

/// The edits of an accepted message: our marking and routing headers (forged copies removed
/// first), the Subject (`subject_edit`), and address translation of the sender and the
/// recipients.
pub fn for_accepted(
    rules: &Rules,
    message: &MessageFacts,
    marking: &Level,
    encrypting: bool,
) -> Vec<Edit> {
    let mut edits = Vec::new();
    let marking_header = rules.config.marking.header.as_str();
    // Our marking header is ours alone: remove copies from outside before adding ours.
    edits.extend(Edit::delete_copies(
        marking_header,
        1,
        message.own_headers_present,
    ));
    edits.push(Edit::AddHeader {
        name: marking_header.into(),
        value: format!("{}; source={}", marking.name, message.classification.source),
    });
    if let Some(route_header) = rules.routing().route_header.as_deref() {
        edits.extend(Edit::delete_copies(
            route_header,
            1,
            message.route_headers_present,
        ));
        let secure = message.recipients.iter().all(Recipient::is_secure);
        edits.push(Edit::AddHeader {
            name: route_header.into(),
            value: if secure { "secure" } else { "open" }.into(),
        });
    }
    let tag = message
        .recipients
        .iter()
        .any(|r| r.zone == Zone::SecureSuffix);
    let requested = rules.config.encryption.enabled && message.encryption_requested;
    if let Some(edit) = subject_edit(rules, message, tag, encrypting && requested, encrypting) {
        edits.push(edit);
    }
    if let Some((as_sent, secure)) = message.sender_translation {
        if let Some(value) = message
            .from_raw
            .and_then(|raw| replace_address(raw, as_sent, secure))
        {
            edits.push(Edit::ChangeHeader {
                name: "From".into(),
                index: 1,
                value,
            });
        }
        edits.push(Edit::ChangeSender {
            address: secure.into(),
        });
    }
    for recipient in message.recipients {
        if let Some(address) = &recipient.deliver_to {
            edits.push(Edit::ReplaceRecipient {
                as_received: recipient.as_received.clone(),
                address: address.clone(),
            });
        }
    }
    edits
}

/// The Subject edit: the tag put in once (none when the tag's word is already there: a reply to
/// a tagged message is not tagged twice), the encryption trigger taken out once used, or the
/// neutral Subject of an encrypted message. `None` when the Subject stays as it is.
fn subject_edit(
    rules: &Rules,
    message: &MessageFacts,
    tag: bool,
    remove_trigger: bool,
    encrypting: bool,
) -> Option<Edit> {
    let tag_text = rules.routing().subject_tag.trim();
    let neutral = (rules.config.encryption.neutral_subject.as_deref())
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let with_tag = |mut value: Vec<u8>| {
        if tag {
            if !value.is_empty() {
                value.push(b' ');
            }
            value.extend_from_slice(tag_text.as_bytes());
        }
        value
    };
    if encrypting && let Some(neutral) = neutral {
        let value = with_tag(neutral.as_bytes().to_vec());
        return Some(if message.subject_present {
            Edit::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value,
            }
        } else {
            Edit::AddHeader {
                name: "Subject".into(),
                value: String::from_utf8_lossy(&value).into_owned(),
            }
        });
    }
    if !message.subject_present {
        return tag.then(|| Edit::AddHeader {
            name: "Subject".into(),
            value: tag_text.into(),
        });
    }
    // A Subject too large to keep is left as it is rather than rewritten from a part of it.
    let raw = message.subject_raw?;
    let mut value = raw.trim_ascii().to_vec();
    let mut changed = false;
    if remove_trigger
        && let Some(trigger) = rules.config.encryption.trigger.as_deref()
        && let Some(rest) = remove_once(&value, trigger)
    {
        value = rest;
        changed = true;
    }
    let raw_text = String::from_utf8_lossy(raw);
    let tag = tag
        && !already_tagged(
            message
                .classification
                .subject
                .as_deref()
                .unwrap_or(&raw_text),
            tag_text,
        );
    if tag {
        value = with_tag(value);
        changed = true;
    }
    changed.then(|| Edit::ChangeHeader {
        name: "Subject".into(),
        index: 1,
        value,
    })
}

/// `text` without the first occurrence of `word` (ASCII case-insensitive), its spaces tidied.
fn remove_once(text: &[u8], word: &str) -> Option<Vec<u8>> {
    let word = word.trim().as_bytes();
    if word.is_empty() || text.len() < word.len() {
        return None;
    }
    let at = text
        .windows(word.len())
        .position(|w| w.eq_ignore_ascii_case(word))?;
    let before = text[..at].trim_ascii_end();
    let after = text[at + word.len()..].trim_ascii_start();
    let mut out = before.to_vec();
    if !before.is_empty() && !after.is_empty() {
        out.push(b' ');
    }
    out.extend_from_slice(after);
    Some(out)
}

/// The Subject already carries the tag: the tag itself in any case (`[cjsm]`), or its word
/// standing alone in capitals (`RE: CJSM: …`). The word inside an address or a domain
/// (`bob@firm.cjsm.net`) does not count.
fn already_tagged(subject: &str, tag: &str) -> bool {
    let lower = subject.to_lowercase();
    if lower.contains(&tag.to_lowercase()) {
        return true;
    }
    let word: String = tag.chars().filter(|c| c.is_alphanumeric()).collect();
    if word.is_empty() {
        return false;
    }
    let joins = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || "@.-_".contains(c));
    subject.match_indices(word.as_str()).any(|(i, _)| {
        !joins(subject[..i].chars().next_back()) && !joins(subject[i + word.len()..].chars().next())
    })
}

/// `value` (a header's raw value) with `from` replaced by `to` where it stands as a whole
/// address (case-insensitive); `None` when it does not appear.
pub fn replace_address(value: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let from = from.as_bytes();
    if from.is_empty() || value.len() < from.len() {
        return None;
    }
    let part_of_address =
        |b: u8| b.is_ascii_alphanumeric() || b".-_+=!#$%&'*/?^`{|}~@".contains(&b);
    let mut out = Vec::with_capacity(value.len() + to.len());
    let mut i = 0;
    let mut replaced = false;
    while i < value.len() {
        let fits = i + from.len() <= value.len()
            && value[i..i + from.len()].eq_ignore_ascii_case(from)
            && (i == 0 || !part_of_address(value[i - 1]))
            && value
                .get(i + from.len())
                .is_none_or(|&b| !part_of_address(b));
        if fits {
            out.extend_from_slice(to.as_bytes());
            i += from.len();
            replaced = true;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    replaced.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_addresses() {
        let cases: [(&[u8], Option<&[u8]>); 6] = [
            (
                b"Alice Smith <alice@firm.co.uk>",
                Some(b"Alice Smith <alice@firm.co.uk.cjsm.net>"),
            ),
            (b"ALICE@Firm.co.uk", Some(b"alice@firm.co.uk.cjsm.net")),
            (
                b"\"alice@firm.co.uk\" <alice@firm.co.uk>",
                Some(b"\"alice@firm.co.uk.cjsm.net\" <alice@firm.co.uk.cjsm.net>"),
            ),
            (b"malice@firm.co.uk", None),
            (b"alice@firm.co.uk.evil.com", None),
            (b"Bob <bob@firm.co.uk>", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                replace_address(value, "alice@firm.co.uk", "alice@firm.co.uk.cjsm.net").as_deref(),
                expected,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
