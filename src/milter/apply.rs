//! Applying a verdict: its edits through the milter actions, then its answer.

use super::{Handled, MilterError, Session};
use crate::policy::{Action, Edit, Verdict};
use indymilter::{ContextActions, EomContext, SetErrorReply, SmtpReply, Status};
use std::ffi::CString;

/// Body replacement chunk size: 64 KiB, the milter protocol's usual body chunk.
const BODY_CHUNK: usize = 65_535;

/// Applies the verdict's edits (a message that goes on) and answer.
pub(super) async fn apply(cx: &mut EomContext<Session>, verdict: &Verdict) -> Handled {
    if verdict.delivers() {
        for edit in verdict.edits() {
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
        if let Some(reason) = verdict.quarantine_reason() {
            cx.actions.quarantine(c_string(reason)).await?;
        }
    }
    status_with_reply(&mut cx.reply, verdict)
}

/// The verdict's answer, with its reply.
pub(super) fn status_with_reply(reply: &mut SmtpReply, verdict: &Verdict) -> Handled {
    if let Some(r) = &verdict.reply() {
        reply
            .set_error_reply(&r.code, Some(&r.status), [r.text.as_str()])
            .map_err(|e| MilterError::Internal(format!("reply {r}: {e}")))?;
    }
    Ok(match verdict.action() {
        Action::Reject => Status::Reject,
        Action::Tempfail => Status::Tempfail,
        Action::Accept | Action::Quarantine => Status::Accept,
    })
}

fn header_index(index: usize) -> Result<i32, MilterError> {
    i32::try_from(index).map_err(|_| MilterError::Internal(format!("header index {index}")))
}

/// Header values come from the message; a NUL cannot cross the milter protocol.
fn c_string(text: impl AsRef<[u8]>) -> CString {
    let bytes: Vec<u8> = text.as_ref().iter().copied().filter(|&b| b != 0).collect();
    CString::new(bytes).unwrap_or_default()
}
