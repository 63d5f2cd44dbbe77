//! Bounds on what the MIME parser is given, found before it runs.
//!
//! The parser holds every part and every header it meets, and its RFC 2231 parameter
//! handling is quadratic in the number of continuations: a 16 MiB attached message of short
//! header lines, a multipart of hundreds of thousands of parts, or a Content-Type of a few
//! MiB of `name*N=` parameters would cost hundreds of MB or tens of seconds. One linear pass
//! over the raw lines finds where such a message outgrows the bounds, and the parser is given
//! only the bytes before that point; the rest is left to the raw scan, which never lowers.

use crate::config::Limits;

/// A Content-Type or Content-Disposition longer than this is no real one (a long file name
/// is a few hundred bytes), and its parameters would cost the parser quadratic time.
pub const MAX_PARAMETER_FIELD: usize = 16 * 1024;

/// Where the parser's input must end, and why; `None` when the whole message may be parsed.
pub fn parser_input_end(raw: &[u8], limits: &Limits) -> Option<(usize, String)> {
    let max_fields = limits.max_headers.saturating_mul(8);
    let max_boundaries = limits.max_parts.saturating_add(1).saturating_mul(2);
    let mut fields = 0usize;
    let mut boundaries = 0usize;
    // Reading a header block: the message's own, a part's, or an attached message's.
    let mut in_header = true;
    // The block's Content-Type says message/…: its body starts with another header block.
    let mut block_is_message = false;
    // The parameter field being read: where it starts and how long it is so far.
    let mut parameter_field: Option<(usize, usize)> = None;
    let mut offset = 0;
    // The same lines as `raw.split(|&b| b == b'\n')`, found by a vectorised search.
    let ends = memchr::memchr_iter(b'\n', raw).chain(std::iter::once(raw.len()));
    for end in ends {
        let line = &raw[offset..end];
        let start = offset;
        offset = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_header {
            if line.is_empty() {
                in_header = block_is_message;
                block_is_message = false;
                parameter_field = None;
                continue;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                if let Some((field_start, length)) = &mut parameter_field {
                    *length += line.len();
                    if *length > MAX_PARAMETER_FIELD {
                        return Some((
                            *field_start,
                            format!("a Content-Type longer than {MAX_PARAMETER_FIELD} bytes"),
                        ));
                    }
                }
                continue;
            }
            let Some(colon) = field_name_end(line) else {
                // Not a header line: the block has ended and body text follows.
                in_header = false;
                block_is_message = false;
                parameter_field = None;
                continue;
            };
            fields += 1;
            if fields > max_fields {
                return Some((start, format!("more than {max_fields} header lines in all")));
            }
            let name = &line[..colon];
            let parameters = name.eq_ignore_ascii_case(b"Content-Type")
                || name.eq_ignore_ascii_case(b"Content-Disposition");
            parameter_field = parameters.then_some((start, line.len()));
            if line.len() > MAX_PARAMETER_FIELD && parameters {
                return Some((
                    start,
                    format!("a Content-Type longer than {MAX_PARAMETER_FIELD} bytes"),
                ));
            }
            if name.eq_ignore_ascii_case(b"Content-Type") {
                let value = line[colon + 1..].trim_ascii_start();
                block_is_message |= value
                    .get(..8)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"message/"));
            }
        } else if line.starts_with(b"--") && line.get(2).is_some_and(|&b| b > b' ') {
            // A boundary (or a rule): a part's header block may follow.
            boundaries += 1;
            if boundaries > max_boundaries {
                return Some((start, format!("more than {max_boundaries} MIME boundaries")));
            }
            in_header = true;
        }
    }
    None
}

/// The end of a header field's name (the colon), when `line` is a header line.
fn field_name_end(line: &[u8]) -> Option<usize> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic())).then_some(colon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(raw: &str) -> Option<String> {
        parser_input_end(raw.as_bytes(), &Limits::default()).map(|(at, why)| format!("{at}: {why}"))
    }

    #[test]
    fn ordinary_messages_are_parsed_whole() {
        assert_eq!(cut("Subject: x\r\n\r\nbody\r\n"), None);
        let rules =
            "Subject: x\r\n\r\n".to_string() + &"-----\r\nDear Sir,\r\nthe text\r\n".repeat(5000);
        assert!(
            cut(&rules).unwrap().contains("boundaries"),
            "a thousand rules are too many"
        );
        let log = "Subject: x\r\n\r\n".to_string() + &"12:00:01 INFO started\r\n".repeat(100_000);
        assert_eq!(cut(&log), None, "a log of colons in the body is body text");
        let filename = format!(
            "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: application/pdf; name=\"{}.pdf\"\r\n\r\nx\r\n--b--\r\n",
            "a".repeat(500)
        );
        assert_eq!(cut(&filename), None);
    }

    #[test]
    fn hostile_structures_are_cut() {
        let parts = "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_string()
            + &"--b\r\n\r\nx\r\n".repeat(10_000);
        assert!(
            cut(&parts)
                .unwrap()
                .contains("more than 1002 MIME boundaries")
        );

        let headers = "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: message/rfc822\r\n\r\n"
            .to_string()
            + &"X-A: a\r\n".repeat(10_000);
        assert!(
            cut(&headers)
                .unwrap()
                .contains("more than 8000 header lines")
        );

        let continuations: String = (0..5000)
            .map(|i| format!(";\r\n name*{i}=abcdefgh"))
            .collect();
        let rfc2231 = format!(
            "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: text/plain{continuations}\r\n\r\nx\r\n--b--\r\n"
        );
        let why = cut(&rfc2231).unwrap();
        assert!(why.contains("Content-Type longer"), "{why}");
        let at: usize = why.split(':').next().unwrap().parse().unwrap();
        assert!(rfc2231[at..].starts_with("Content-Type: text/plain"));
    }
}
