//! The lines of an HTML part as a reader sees them: block-level elements end lines, entities
//! are decoded (`&shy;` and `&#8203;` included, so normalisation removes them), and text a
//! reader does not see (hidden by style, `hidden`, `<head>`, comments) is kept but marked
//! hidden: it may raise a message, never lower it. One linear pass, bounded nesting.

use super::body::TextLine;
use std::borrow::Cow;

/// Elements that end a line where they open or close.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "ul",
];

/// Elements without content: never on the stack of open elements.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Elements whose text no reader sees.
const UNSEEN: &[&str] = &["head", "title", "script", "style", "template", "noscript"];

/// Open elements kept; deeper nesting is read as if flat (hidden stays hidden).
const MAX_DEPTH: usize = 256;

/// The lines of `html`.
pub fn lines(html: &str) -> Vec<TextLine<'static>> {
    let mut out = Lines::default();
    // (name, hidden) of the open elements.
    let mut open: Vec<(String, bool)> = Vec::new();
    let mut hidden_depth = 0usize;
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.text(rest, hidden_depth > 0);
            break;
        };
        out.text(&rest[..lt], hidden_depth > 0);
        rest = &rest[lt..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            let end = comment.find("-->").unwrap_or(comment.len());
            out.break_line();
            out.text(&comment[..end], true);
            out.break_line();
            rest = comment.get(end + 3..).unwrap_or("");
            continue;
        }
        if !opens_tag(rest) {
            // A `<` that opens no tag is text.
            out.text("<", hidden_depth > 0);
            rest = &rest[1..];
            continue;
        }
        let Some(gt) = tag_end(rest) else {
            // A tag that never ends: the rest is read as text (and one scan stays linear).
            out.text(rest, hidden_depth > 0);
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let body = tag.trim_start_matches('/');
        let name_end = body
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .unwrap_or(body.len());
        let name = body[..name_end].to_ascii_lowercase();
        if name.is_empty() || name.starts_with('!') || name.starts_with('?') {
            continue;
        }
        if BLOCKS.contains(&name.as_str()) {
            out.break_line();
        }
        if closing {
            if let Some(at) = open.iter().rposition(|(n, _)| *n == name) {
                for (_, hidden) in open.drain(at..) {
                    hidden_depth -= usize::from(hidden);
                }
            }
            continue;
        }
        let self_closing = body.trim_end().ends_with('/');
        if VOID.contains(&name.as_str()) || self_closing {
            continue;
        }
        let hidden = UNSEEN.contains(&name.as_str()) || hides(&body[name_end..]);
        if open.len() < MAX_DEPTH {
            open.push((name, hidden));
            hidden_depth += usize::from(hidden);
        } else if hidden {
            // Too deep to track its end: what follows is treated as hidden (never lowers).
            hidden_depth += 1;
        }
    }
    out.finish()
}

/// `<` followed by a letter, `/`, `!` or `?`.
fn opens_tag(text: &str) -> bool {
    text[1..]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "/!?".contains(c))
}

/// The end of the tag that starts `text` (at `<`), skipping `>` inside quoted attributes.
fn tag_end(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (at, c) in text.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(at),
            _ => {}
        }
    }
    None
}

/// Attributes that hide an element: `hidden` (`aria-hidden` is not: screen readers only),
/// a style with `display:none`, `visibility:hidden`, a zero font size, height or opacity,
/// `mso-hide:all`, white or transparent text.
fn hides(attributes: &str) -> bool {
    let squeezed: String = attributes
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let hidden_attribute = attributes
        .split(|c: char| c.is_whitespace() || c == '/')
        .any(|a| a.eq_ignore_ascii_case("hidden") || a.to_ascii_lowercase().starts_with("hidden="));
    hidden_attribute
        || [
            "display:none",
            "visibility:hidden",
            "font-size:0",
            "font-size:1px",
            "max-height:0",
            "height:0",
            "opacity:0",
            "mso-hide:all",
            "color:transparent",
            // White text: on the usual white background nobody reads it.
            "color:#fff",
            "color:white",
            "color:rgb(255,255,255)",
            "color=\"#fff",
            "color=#fff",
            "color=\"white",
            "color=white",
        ]
        .iter()
        .any(|style| squeezed.contains(style))
}

/// Numeric character references to NUL, a surrogate or past U+10FFFF read as U+FFFD, as a
/// browser reads them (the entity decoder would leave them as text, `&#0;SECRET`).
fn invalid_references_replaced(text: &str) -> Cow<'_, str> {
    if !text.contains("&#") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("&#") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let (hex, digits_at) = match after.strip_prefix(['x', 'X']) {
            Some(_) => (true, 1),
            None => (false, 0),
        };
        let digits = &after[digits_at..];
        let len = digits
            .find(|c: char| {
                !(if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                })
            })
            .unwrap_or(digits.len());
        let value = u32::from_str_radix(&digits[..len.min(8)], if hex { 16 } else { 10 }).ok();
        let invalid = len > 0 && value.is_none_or(|v| char::from_u32(v).is_none() || v == 0);
        if invalid {
            out.push('\u{FFFD}');
            let end = digits_at + len;
            rest = after[end..].strip_prefix(';').unwrap_or(&after[end..]);
        } else {
            out.push_str("&#");
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[derive(Default)]
struct Lines {
    done: Vec<TextLine<'static>>,
    current: String,
    hidden: bool,
}

impl Lines {
    fn text(&mut self, text: &str, hidden: bool) {
        if text.is_empty() {
            return;
        }
        let text = invalid_references_replaced(text);
        let decoded = html_escape::decode_html_entities(&text);
        // Line ends inside text are spaces in HTML, except in `<pre>`; either way a marking
        // split over source lines is still one line to the reader.
        for c in decoded.chars() {
            self.current
                .push(if c == '\n' || c == '\r' { ' ' } else { c });
        }
        self.hidden |= hidden && decoded.chars().any(|c| !c.is_whitespace());
    }

    fn break_line(&mut self) {
        if !self.current.trim().is_empty() {
            self.done.push(TextLine {
                text: Cow::Owned(std::mem::take(&mut self.current)),
                hidden: self.hidden,
            });
        }
        self.current.clear();
        self.hidden = false;
    }

    fn finish(mut self) -> Vec<TextLine<'static>> {
        self.break_line();
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(html: &str) -> Vec<(String, bool)> {
        lines(html)
            .into_iter()
            .map(|l| (l.text.trim().to_string(), l.hidden))
            .collect()
    }

    #[test]
    fn blocks_end_lines() {
        assert_eq!(
            shown(
                "<div>Dear all</div><div>OFFICIAL</div><p>x<br>y</p><table><tr><td>a</td><td>b</td></tr></table>"
            ),
            [
                ("Dear all", false),
                ("OFFICIAL", false),
                ("x", false),
                ("y", false),
                ("a", false),
                ("b", false)
            ]
            .map(|(t, h)| (t.to_string(), h))
        );
        assert_eq!(
            shown("<span>OFFICIAL</span><span>-SENSITIVE</span>")[0].0,
            "OFFICIAL-SENSITIVE"
        );
        assert_eq!(shown("<h1>SECRET</h1>text")[0].0, "SECRET");
        assert_eq!(shown("<li>a<li>SECRET")[1].0, "SECRET");
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(shown("SE&shy;CRET")[0].0, "SE\u{AD}CRET");
        assert_eq!(shown("SE&#8203;CRET")[0].0, "SE\u{200B}CRET");
        assert_eq!(shown("&#83;&#x45;CRET")[0].0, "SECRET");
        assert_eq!(shown("&#0;SECRET")[0].0, "\u{FFFD}SECRET");
        assert_eq!(
            shown("&#x0000;SE&#xD800;CRET&#99999999999;")[0].0,
            "\u{FFFD}SE\u{FFFD}CRET\u{FFFD}"
        );
        assert_eq!(
            shown("OFFICIAL&nbsp;&ndash;&nbsp;SENSITIVE")[0].0,
            "OFFICIAL\u{A0}\u{2013}\u{A0}SENSITIVE"
        );
    }

    #[test]
    fn hidden_text_is_kept_and_flagged() {
        let l = shown("<div style=\"display: none\">OFFICIAL</div><div>Hello</div>");
        assert_eq!(
            l,
            [("OFFICIAL".to_string(), true), ("Hello".to_string(), false)]
        );
        let l = shown("<p hidden>OFFICIAL</p><p>x</p>");
        assert!(l[0].1);
        let l = shown("<head><title>OFFICIAL</title></head><body><p>x</p>");
        assert!(l[0].1, "{l:?}");
        let l = shown("<!-- SECRET --><p>x</p>");
        assert_eq!(l[0], ("SECRET".to_string(), true));
        let l = shown("<p><font color=\"#FFFFFF\">OFFICIAL</font></p>");
        assert!(l[0].1);
        let l = shown("<span style='font-size:0'>SEC</span>RET");
        assert_eq!(l[0], ("SECRET".to_string(), true));
    }

    #[test]
    fn hostile_html_terminates() {
        let deep = "<div style=display:none>".repeat(100_000) + "SECRET";
        assert_eq!(lines(&deep).last().unwrap().text.trim(), "SECRET");
        let unclosed = "<a href=\"".to_string() + &"x".repeat(100_000);
        assert_eq!(lines(&unclosed).len(), 1);
        let lts = "<".repeat(100_000);
        assert_eq!(lines(&lts).len(), 1);
        let quotes = "<a \"".repeat(100_000);
        assert_eq!(lines(&quotes).len(), 1);
    }
}
