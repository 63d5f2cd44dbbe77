//! The lines of an HTML part as a reader sees them: block-level elements end lines, entities
//! are decoded (`&shy;` and `&#8203;` included, so normalisation removes them), and text a
//! reader does not see (hidden by style, `hidden`, `<head>`, comments) is kept but marked
//! hidden: it may raise a message, never lower it. One linear pass, bounded nesting.

use super::body::TextLine;
use std::borrow::Cow;

/// Elements that end a line where they open or close. Asked for every tag: a `match` (the
/// compiler compares lengths first, then a few candidates) rather than a walk of a list.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "br"
            | "caption"
            | "center"
            | "dd"
            | "details"
            | "dialog"
            | "div"
            | "dl"
            | "dt"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "header"
            | "hgroup"
            | "hr"
            | "legend"
            | "li"
            | "main"
            | "menu"
            | "nav"
            | "ol"
            | "optgroup"
            | "option"
            | "p"
            | "pre"
            | "search"
            | "section"
            | "summary"
            | "table"
            | "tbody"
            | "td"
            | "tfoot"
            | "th"
            | "thead"
            | "title"
            | "tr"
            | "ul"
    )
}

/// Elements without content: never on the stack of open elements.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Elements whose text no reader sees.
const UNSEEN: &[&str] = &[
    "head", "title", "script", "style", "template", "noscript", "iframe", "noembed", "noframes",
    "canvas", "video", "audio", "object", "desc",
];

/// Classes mail clients give to quoted text (Gmail, Thunderbird, Yahoo, Proton, Outlook):
/// another message's text, which may raise this one but never lower it.
const QUOTE_CLASSES: &[&str] = &[
    "gmail_quote",
    "moz-cite-prefix",
    "yahoo_quoted",
    "protonmail_quote",
    "outlookmessageheader",
];

/// Ids after which Outlook puts the message replied to (not inside the element: after it).
const QUOTE_AFTER_IDS: &[&str] = &["divrplyfwdmsg", "appendonsend"];

/// Open elements kept; deeper nesting is read as if flat (hidden stays hidden).
const MAX_DEPTH: usize = 256;

/// The bytes of a line kept: a marking line is short, and only its start is read.
const MAX_LINE: usize = 4096;

/// Open elements: what each means for the text inside it.
struct Element {
    name: String,
    hidden: bool,
    block: bool,
    upper: bool,
}

/// Markup that shows the reader text the markup does not hold, or holds it in another order:
/// generated content (`content:` in CSS), right-to-left overrides, `<plaintext>`. Where it
/// stands, no line of the part may lower the message.
const REORDERING: &[&str] = &[
    "content:",
    "::before",
    "::after",
    ":before",
    ":after",
    "direction:rtl",
    "direction: rtl",
    "dir=\"rtl\"",
    "dir='rtl'",
    "dir=rtl",
    "row-reverse",
    "column-reverse",
    "<plaintext",
    "<bdo",
    "<xmp",
];

static REORDERING_FINDER: std::sync::LazyLock<aho_corasick::AhoCorasick> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            // A DFA: the whole part is searched, and for these few patterns it is small.
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(REORDERING)
            .expect("fixed patterns")
    });

/// The lines of `html`.
pub fn lines(html: &str) -> Vec<TextLine<'static>> {
    let style = hidden_by_style_sheets(html);
    let mut out = Lines {
        hide_everything: REORDERING_FINDER.is_match(html),
        ..Lines::default()
    };
    let mut open: Vec<Element> = Vec::new();
    // Generated text is read apart, as hidden: it may raise, never lower.
    for generated in &style.generated {
        out.aside(generated);
    }
    if style.hidden.all {
        out.hide_everything = true;
    }
    let mut hidden_depth = 0usize;
    let mut upper_depth = 0usize;
    let mut quoted_after = false;
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.text(rest, hidden_depth > 0, upper_depth > 0);
            break;
        };
        out.text(&rest[..lt], hidden_depth > 0, upper_depth > 0);
        rest = &rest[lt..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            let end = comment.find("-->").unwrap_or(comment.len());
            // Read apart, as hidden text; the line around it goes on (`SEC<!-- -->RET`).
            out.aside(&comment[..end]);
            rest = comment.get(end + 3..).unwrap_or("");
            continue;
        }
        if !opens_tag(rest) {
            // A `<` that opens no tag is text.
            out.text("<", hidden_depth > 0, upper_depth > 0);
            rest = &rest[1..];
            continue;
        }
        let Some(gt) = tag_end(rest) else {
            // A tag that never ends: the rest is read as text (and one scan stays linear).
            out.text(rest, hidden_depth > 0, upper_depth > 0);
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
        if closing {
            if let Some(at) = open.iter().rposition(|e| e.name == name) {
                let mut block = is_block(&name);
                for element in open.drain(at..) {
                    hidden_depth -= usize::from(element.hidden);
                    upper_depth -= usize::from(element.upper);
                    block |= element.block;
                }
                if block {
                    out.break_line();
                }
            } else if is_block(&name) {
                out.break_line();
            }
            continue;
        }
        let attributes = &body[name_end..];
        let squeezed = squeezed_style(attributes);
        let block = is_block(&name)
            || [
                "display:block",
                "display:flex",
                "display:grid",
                "display:list-item",
                "display:table",
            ]
            .iter()
            .any(|d| !squeezed.is_empty() && squeezed.contains(d));
        if block {
            out.break_line();
        }
        // An image's text stands in for it when images are not shown (Outlook's default).
        if let Some(alt) = matches!(name.as_str(), "img" | "area" | "input")
            .then(|| attribute(attributes, "alt"))
            .flatten()
        {
            out.aside(alt);
        }
        let self_closing = body.trim_end().ends_with('/');
        if VOID.contains(&name.as_str()) || self_closing {
            continue;
        }
        let id = attribute(attributes, "id")
            .unwrap_or("")
            .to_ascii_lowercase();
        if !quoted_after && QUOTE_AFTER_IDS.contains(&id.as_str()) {
            // Everything from here on is the message replied to.
            quoted_after = true;
            hidden_depth += 1;
        }
        let class = attribute(attributes, "class")
            .unwrap_or("")
            .to_ascii_lowercase();
        let quoted =
            name == "blockquote" || class.split_whitespace().any(|c| QUOTE_CLASSES.contains(&c));
        let closed = matches!(name.as_str(), "details" | "dialog")
            && attribute(attributes, "open").is_none();
        let hidden = UNSEEN.contains(&name.as_str())
            || quoted
            || closed
            || attribute(attributes, "popover").is_some()
            || hides(attributes, &squeezed)
            || style.hides(&name, attributes);
        let upper = shows_capitals(&squeezed) || style.upper.selects(&name, attributes);
        if open.len() < MAX_DEPTH {
            open.push(Element {
                name,
                hidden,
                block,
                upper,
            });
            hidden_depth += usize::from(hidden);
            upper_depth += usize::from(upper);
        } else if hidden {
            // Too deep to track its end: what follows is treated as hidden (never lowers).
            hidden_depth += 1;
        }
    }
    out.finish()
}

/// The `style` attribute (and any `color` or `hidden` attribute) with spaces and CSS
/// comments removed, lower-cased: `display:/**/none` is `display:none`.
fn squeezed_style(attributes: &str) -> String {
    let style = attribute(attributes, "style");
    let color = attribute(attributes, "color");
    match (style, color) {
        // Most tags have neither: nothing to squeeze, nothing to allocate.
        (None, None) => String::new(),
        (Some(style), None) => squeeze_css(style),
        (style, Some(color)) => squeeze_css(&format!("{};color:{color}", style.unwrap_or(""))),
    }
}

fn squeeze_css(css: &str) -> String {
    // Entities in an attribute value are decoded before the browser reads the style.
    let css = html_escape::decode_html_entities(css);
    let mut out = String::with_capacity(css.len());
    let mut rest: &str = &css;
    while let Some(at) = rest.find("/*") {
        out.push_str(&rest[..at]);
        rest = rest[at + 2..]
            .find("*/")
            .map_or("", |end| &rest[at + 2 + end + 2..]);
    }
    out.push_str(rest);
    out.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
        .replace("!important", "")
}

/// The value of attribute `name` (quoted or not), when the tag has it.
fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let bytes = attributes.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        // Skip to the next attribute name.
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'/') {
            at += 1;
        }
        let name_start = at;
        while at < bytes.len()
            && !bytes[at].is_ascii_whitespace()
            && bytes[at] != b'='
            && bytes[at] != b'/'
        {
            at += 1;
        }
        let this = &attributes[name_start..at];
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let mut value = None;
        if at < bytes.len() && bytes[at] == b'=' {
            at += 1;
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            let (start, end) = match bytes.get(at) {
                Some(&q @ (b'"' | b'\'')) => {
                    let end = attributes[at + 1..]
                        .find(q as char)
                        .map_or(bytes.len(), |e| at + 1 + e);
                    (at + 1, end)
                }
                _ => {
                    let end = attributes[at..]
                        .find(|c: char| c.is_ascii_whitespace())
                        .map_or(bytes.len(), |e| at + e);
                    (at, end)
                }
            };
            value = Some(&attributes[start..end]);
            at = end + 1;
        }
        if this.eq_ignore_ascii_case(name) {
            return Some(value.unwrap_or(""));
        }
        if at == name_start {
            at += 1;
        }
    }
    None
}

fn has_word(attributes: &str, word: &str) -> bool {
    attributes
        .split(|c: char| c.is_whitespace() || c == '/')
        .any(|a| a.eq_ignore_ascii_case(word))
}

/// What the part's `<style>` sheets do to the elements they select: hide them, or show
/// their text in capitals (`text-transform: uppercase`, small capitals); and the text they
/// generate (`content: "…"`).
#[derive(Default)]
struct StyleSheets {
    hidden: Selected,
    upper: Selected,
    generated: Vec<String>,
}

/// Elements selected by class, id or name; `all` for `*`. Bounded: 256 of each.
#[derive(Default)]
struct Selected {
    classes: Vec<String>,
    ids: Vec<String>,
    elements: Vec<String>,
    all: bool,
}

impl Selected {
    fn selects(&self, name: &str, attributes: &str) -> bool {
        if self.all {
            return true;
        }
        if self.classes.is_empty() && self.ids.is_empty() && self.elements.is_empty() {
            return false;
        }
        if self.elements.iter().any(|e| e == name) {
            return true;
        }
        let classes = attribute(attributes, "class").unwrap_or("");
        let id = attribute(attributes, "id").unwrap_or("");
        classes
            .split_whitespace()
            .any(|c| self.classes.iter().any(|h| h.eq_ignore_ascii_case(c)))
            || (!id.is_empty() && self.ids.iter().any(|h| h.eq_ignore_ascii_case(id)))
    }

    /// Takes the last compound of a selector (`div.quote > p.a:first-child` → `p.a`) and
    /// records its classes, its id, or its element name. Generous on purpose: selecting more
    /// than the browser does only keeps more text from lowering.
    fn add(&mut self, selector: &str) {
        let last = selector
            .rsplit(|c: char| c.is_whitespace() || ">+~".contains(c))
            .find(|s| !s.is_empty())
            .unwrap_or("");
        let compound = last.split([':', '[']).next().unwrap_or("");
        if compound == "*" || (compound.is_empty() && !last.is_empty()) {
            self.all = true;
            return;
        }
        let name_end = compound.find(['.', '#']).unwrap_or(compound.len());
        let element = compound[..name_end].to_ascii_lowercase();
        if !element.is_empty() && self.elements.len() < 256 {
            self.elements.push(element);
        }
        let mut rest = &compound[name_end..];
        while let Some(kind) = rest.chars().next() {
            let body = &rest[1..];
            let end = body.find(['.', '#']).unwrap_or(body.len());
            let name = body[..end].to_ascii_lowercase();
            let list = if kind == '#' {
                &mut self.ids
            } else {
                &mut self.classes
            };
            if !name.is_empty() && list.len() < 256 {
                list.push(name);
            }
            rest = &body[end..];
        }
    }
}

impl StyleSheets {
    fn hides(&self, name: &str, attributes: &str) -> bool {
        self.hidden.selects(name, attributes)
    }
}

/// The part's `<style>` sheets, read rule by rule (see [`StyleSheets`]).
fn hidden_by_style_sheets(html: &str) -> StyleSheets {
    let mut sheets = StyleSheets::default();
    let mut rest = html;
    while let Some(at) = find_ignore_case(rest, "<style") {
        let sheet = &rest[at..];
        let Some(open) = sheet.find('>') else { break };
        let body = &sheet[open + 1..];
        let end = find_ignore_case(body, "</style").unwrap_or(body.len());
        for rule in body[..end].split('}') {
            let Some((selectors, declarations)) = rule.split_once('{') else {
                continue;
            };
            let squeezed = squeeze_css(declarations);
            let hiding = hides("", &squeezed);
            let upper = shows_capitals(&squeezed);
            if let Some(content) = generated_content(declarations)
                && sheets.generated.len() < 256
            {
                sheets.generated.push(content);
            }
            for selector in selectors.split(',') {
                if hiding {
                    sheets.hidden.add(selector.trim());
                }
                if upper {
                    sheets.upper.add(selector.trim());
                }
            }
        }
        rest = &body[end..];
    }
    sheets
}

/// Text in capitals to the reader: `text-transform: uppercase`, small capitals.
fn shows_capitals(squeezed: &str) -> bool {
    squeezed.contains("text-transform:uppercase") || squeezed.contains("small-caps")
}

/// The string of a `content: "…"` declaration (generated text, shown by the browser).
fn generated_content(declarations: &str) -> Option<String> {
    let at = declarations.find("content")?;
    let value = declarations[at + 7..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = &value[1..];
    let end = inner.find(quote)?;
    Some(inner[..end].chars().take(MAX_LINE).collect())
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    let (hay, needle) = (haystack.as_bytes(), needle.as_bytes());
    let last = hay.len().checked_sub(needle.len())?;
    // Only where the first byte matches (the needles start with `<`): a memchr-fast skip.
    let (lower, upper) = (
        needle[0].to_ascii_lowercase(),
        needle[0].to_ascii_uppercase(),
    );
    memchr::memchr2_iter(lower, upper, &hay[..=last])
        .find(|&at| hay[at..at + needle.len()].eq_ignore_ascii_case(needle))
}

/// `<` followed by a letter, `/`, `!` or `?`.
fn opens_tag(text: &str) -> bool {
    text[1..]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "/!?".contains(c))
}

/// The end of the tag that starts `text` (at `<`). As browsers read it: a quote opens a
/// quoted value only right after `=`; anywhere else (`<div x=a'>`) it is a character.
fn tag_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = 1;
    let mut after_equals = false;
    while at < bytes.len() {
        match bytes[at] {
            b'>' => return Some(at),
            b'=' => after_equals = true,
            q @ (b'"' | b'\'') if after_equals => {
                at += 1 + text[at + 1..].find(q as char)?;
                after_equals = false;
            }
            b if b.is_ascii_whitespace() => {}
            _ => after_equals = false,
        }
        at += 1;
    }
    None
}

/// Attributes and styles that hide an element: `hidden` (`aria-hidden` is not: screen
/// readers only), `display:none`, `visibility:hidden`, a zero or tiny size, zero opacity,
/// `mso-hide:all`, clipping or moving it out of view, white or near-white text.
fn hides(attributes: &str, squeezed_style: &str) -> bool {
    if has_word(attributes, "hidden") || attribute(attributes, "hidden").is_some() {
        return true;
    }
    const HIDING: &[&str] = &[
        "display:none",
        "visibility:hidden",
        "visibility:collapse",
        "font-size:xx-small",
        "max-height:0",
        "height:0",
        "width:0",
        "line-height:0",
        "opacity:0",
        "mso-hide:all",
        "color:transparent",
        "clip:rect(0",
        "clip-path:inset(50%",
        "scale(0",
    ];
    // No style: nothing below can hide it (most tags).
    if squeezed_style.is_empty() {
        return false;
    }
    HIDING.iter().any(|h| squeezed_style.contains(h))
        || light_text(squeezed_style)
        || tiny(squeezed_style)
}

/// A property set so that nothing shows: opacity or zoom under 0.1, a font under 4 px
/// (3 pt, 30 %, 0.3 em), a transform that scales to nothing or moves, a position far off.
fn tiny(style: &str) -> bool {
    let number = |value: &str| -> Option<(f64, String)> {
        let end = value
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(value.len());
        Some((value[..end].parse().ok()?, value[end..].to_string()))
    };
    style.split(';').any(|declaration| {
        let Some((property, value)) = declaration.split_once(':') else {
            return false;
        };
        match property {
            "opacity" | "zoom" => number(value).is_some_and(|(v, _)| v < 0.1),
            "font-size" => number(value).is_some_and(|(v, unit)| match unit.as_str() {
                "px" | "" => v < 4.0,
                "pt" => v < 3.0,
                "%" => v < 30.0,
                "em" | "rem" => v < 0.3,
                _ => false,
            }),
            "filter" => value.contains("opacity(0"),
            // Moved far out of view.
            "left" | "top" | "text-indent" | "margin-left" | "margin-top" => number(value)
                .is_some_and(|(v, unit)| match unit.as_str() {
                    "px" | "" | "pt" => v <= -500.0,
                    "em" | "rem" | "in" | "cm" => v <= -20.0,
                    _ => false,
                }),
            "transform" => {
                value.contains("scale(0") || value.contains("scale(.0") || value.contains("(-")
            }
            _ => false,
        }
    })
}

/// Text colour white or nearly so: on the usual white background nobody reads it.
fn light_text(style: &str) -> bool {
    style.split(';').any(|declaration| {
        let Some(value) = declaration.strip_prefix("color:") else {
            return false;
        };
        let value = value.trim_matches(['"', '\'']);
        if value == "white" || value == "snow" || value == "ivory" {
            return true;
        }
        if let Some(hsl) = value
            .strip_prefix("hsl(")
            .or_else(|| value.strip_prefix("hsla("))
        {
            // Lightness 95 % or more is white.
            return hsl
                .split([',', ')', '/', ' '])
                .nth(2)
                .and_then(|l| l.trim_end_matches('%').parse::<f64>().ok())
                .is_some_and(|l| l >= 95.0);
        }
        // Channels, then alpha (`#ffffff00`, `rgba(0,0,0,0)`): transparent is hidden too.
        let channels: Vec<f64> = if let Some(hex) = value.strip_prefix('#') {
            match hex.len() {
                3 | 4 => hex
                    .chars()
                    .filter_map(|c| c.to_digit(16).map(|d| f64::from(d * 17)))
                    .collect(),
                6 | 8 => (0..hex.len() / 2)
                    .filter_map(|i| u32::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
                    .map(f64::from)
                    .collect(),
                _ => return false,
            }
        } else if let Some(rgb) = value
            .strip_prefix("rgb(")
            .or_else(|| value.strip_prefix("rgba("))
        {
            rgb.split([',', ')', '/', ' '])
                .filter(|v| !v.is_empty())
                .take(4)
                .filter_map(|v| v.parse().ok())
                .enumerate()
                .map(|(i, v): (usize, f64)| if i == 3 && v <= 1.0 { v * 255.0 } else { v })
                .collect()
        } else {
            return false;
        };
        let transparent = channels.get(3).is_some_and(|&a| a < 32.0);
        transparent || (channels.len() >= 3 && channels[..3].iter().all(|&c| c >= 240.0))
    })
}

/// Numeric character references decoded as a browser decodes them: with or without the
/// final `;` (`&#83&#69`), and NUL, a surrogate or a value past U+10FFFF as U+FFFD (the
/// entity decoder would leave those as text: `&#0;SECRET`). Named ones are left to it.
fn numeric_references_decoded(text: &str) -> Cow<'_, str> {
    if !text.contains("&#") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("&#") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let (radix, digits_at) = match after.strip_prefix(['x', 'X']) {
            Some(_) => (16, 1),
            None => (10, 0),
        };
        let digits = &after[digits_at..];
        let len = digits
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(digits.len());
        if len == 0 {
            out.push_str("&#");
            rest = after;
            continue;
        }
        let value = u32::from_str_radix(&digits[..len.min(8)], radix).ok();
        let decoded = value
            .filter(|&v| v != 0 && len <= 8)
            .and_then(char::from_u32)
            .unwrap_or('\u{FFFD}');
        out.push(decoded);
        let end = digits_at + len;
        rest = after[end..].strip_prefix(';').unwrap_or(&after[end..]);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[derive(Default)]
struct Lines {
    done: Vec<TextLine<'static>>,
    /// The line as read, hidden text included (its first `MAX_LINE` bytes).
    current: String,
    /// The same line as shown, without its hidden text, once the line has hidden text.
    shown: Option<String>,
    hidden: bool,
    /// Markup reorders or generates text (see `REORDERING`): every line counts as hidden.
    hide_everything: bool,
}

impl Lines {
    fn text(&mut self, text: &str, hidden: bool, upper: bool) {
        if text.is_empty() {
            return;
        }
        let text = numeric_references_decoded(text);
        let decoded = html_escape::decode_html_entities(&text);
        // Line ends inside text are spaces in HTML, except in `<pre>`; either way a marking
        // split over source lines is still one line to the reader.
        let has_text = decoded.chars().any(|c| !c.is_whitespace());
        if hidden && has_text && self.shown.is_none() {
            // Hidden text arrives: what the line held so far is what is shown of it.
            self.shown = Some(self.current.clone());
        }
        if !upper {
            // The same characters as the loop below, pushed as one slice: up to and including
            // the character that crosses `MAX_LINE`, line ends as spaces (one byte for one).
            let room = MAX_LINE.saturating_sub(self.current.len());
            let mut end = room.min(decoded.len());
            while !decoded.is_char_boundary(end) {
                end += 1;
            }
            let kept = &decoded[..end];
            let kept: Cow<str> = if kept.contains(['\n', '\r']) {
                Cow::Owned(kept.replace(['\n', '\r'], " "))
            } else {
                Cow::Borrowed(kept)
            };
            self.current.push_str(&kept);
            if !hidden && let Some(shown) = &mut self.shown {
                shown.push_str(&kept);
            }
            self.hidden |= hidden && has_text;
            return;
        }
        for c in decoded.chars() {
            // A marking line is short: the rest of a long line is not kept.
            if self.current.len() >= MAX_LINE {
                break;
            }
            let c = if c == '\n' || c == '\r' { ' ' } else { c };
            for u in std::iter::once(c).flat_map(|c| {
                // `text-transform: uppercase`: the reader sees capitals.
                let upper = if upper { Some(c.to_uppercase()) } else { None };
                let plain = if upper.is_none() { Some(c) } else { None };
                upper.into_iter().flatten().chain(plain)
            }) {
                self.current.push(u);
                if !hidden && let Some(shown) = &mut self.shown {
                    shown.push(u);
                }
            }
        }
        self.hidden |= hidden && has_text;
    }

    fn break_line(&mut self) {
        if !self.current.trim().is_empty() {
            let hidden = self.hidden || self.hide_everything;
            self.done.push(TextLine {
                text: Cow::Owned(std::mem::take(&mut self.current)),
                hidden,
            });
            // A line that mixes hidden and shown text is read both ways: as read (it may
            // raise) and as shown (`TOP SECRET` without a hidden tail of prose).
            if let Some(shown) = self.shown.take().filter(|s| !s.trim().is_empty()) {
                self.done.push(TextLine {
                    text: Cow::Owned(shown),
                    hidden: self.hide_everything,
                });
            }
        }
        self.current.clear();
        self.shown = None;
        self.hidden = false;
    }

    /// Text read apart from the line being built, as hidden: a comment, an image's `alt`.
    fn aside(&mut self, text: &str) {
        let text = numeric_references_decoded(text);
        let decoded = html_escape::decode_html_entities(&text);
        let line: String = decoded
            .chars()
            .take(MAX_LINE)
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        if !line.trim().is_empty() {
            self.done.push(TextLine {
                text: Cow::Owned(line),
                hidden: true,
            });
        }
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
        // A comment or an image inside a word does not split it.
        assert!(shown("<p>SEC<!-- x -->RET</p>").contains(&("SECRET".into(), false)));
        assert!(shown("<p>SEC<img src=x alt=\"\">RET</p>").contains(&("SECRET".into(), false)));
        let l = shown("<p><font color=\"#FFFFFF\">OFFICIAL</font></p>");
        assert!(l[0].1);
        let l = shown("<span style='font-size:0'>SEC</span>RET");
        assert_eq!(l[0], ("SECRET".to_string(), true));
    }

    #[test]
    fn read_as_a_browser_shows_it() {
        // A quote inside an unquoted value is a character, not the start of a quoted value.
        assert!(
            shown("<div x=a'>SECRET</div><div y=b'>x</div>")
                .iter()
                .any(|(t, _)| t == "SECRET")
        );
        assert_eq!(shown("<p>&#83&#69&#67&#82&#69&#84</p>")[0].0, "SECRET");
        assert_eq!(
            shown("<p style=\"text-transform: uppercase\">secret</p>")[0].0,
            "SECRET"
        );
        assert_eq!(
            shown("<span style=\"display:block\">SECRET</span> tail")[0].0,
            "SECRET"
        );
        assert!(shown("<p>x</p><img alt=\"SECRET\" src=y>").contains(&("SECRET".into(), true)));
        // Text shown beside hidden text is read alone too.
        let l = shown("<p>TOP SECRET<span style=\"display:none\"> with kind regards</span></p>");
        assert!(
            l.contains(&("TOP SECRET with kind regards".into(), true)),
            "{l:?}"
        );
        assert!(l.contains(&("TOP SECRET".into(), false)), "{l:?}");
    }

    #[test]
    fn hidden_by_class_colour_position_and_size() {
        for html in [
            "<style>.h { display: none }</style><p class=\"x h\">OFFICIAL</p>",
            "<style>#h{visibility:hidden}</style><p id=h>OFFICIAL</p>",
            "<p style=\"position:absolute;left:-9999px\">OFFICIAL</p>",
            "<p style=\"color:#fefefe\">OFFICIAL</p>",
            "<p style=\"color: rgb(250, 250, 250)\">OFFICIAL</p>",
            "<p style=\"font-size:1pt\">OFFICIAL</p>",
            "<p style=\"display:/**/none\">OFFICIAL</p>",
            "<details><p>OFFICIAL</p></details>",
        ] {
            let l = shown(html);
            assert!(l.iter().all(|(_, hidden)| *hidden), "{html}: {l:?}");
        }
        assert!(!shown("<p style=\"color:#333333\">OFFICIAL</p>")[0].1);
        // Generated or reordered text: no line of the part may lower.
        let l = shown("<style>.m::after{content:\"-SENSITIVE\"}</style><p class=m>OFFICIAL</p>");
        assert!(l.iter().all(|(_, hidden)| *hidden), "{l:?}");
    }

    #[test]
    fn style_sheets_as_a_browser_applies_them() {
        for html in [
            "<style>p.a { display:none }</style><p class=\"b a\">OFFICIAL</p>",
            "<style>.q > p:first-child { display:none }</style><p>OFFICIAL</p>",
            "<style>*{display:none}</style><p>OFFICIAL</p>",
            "<blockquote><p>OFFICIAL</p></blockquote>",
            "<div class=\"gmail_quote\"><p>OFFICIAL</p></div>",
            "<div id=\"divRplyFwdMsg\">From: x</div><p>OFFICIAL</p>",
            "<dialog><p>OFFICIAL</p></dialog>",
            "<p style=\"color:#fff !important\">OFFICIAL</p>",
            "<p style=\"color:rgba(0,0,0,0)\">OFFICIAL</p>",
            "<p style=\"color:hsl(0,0%,100%)\">OFFICIAL</p>",
            "<p style=\"opacity:.0\">OFFICIAL</p>",
            "<p style=\"font-size:3px\">OFFICIAL</p>",
            "<p style=\"disp&#108;ay:none\">OFFICIAL</p>",
        ] {
            let l = shown(html);
            assert!(
                l.iter()
                    .filter(|(t, _)| t.contains("OFFICIAL"))
                    .all(|(_, hidden)| *hidden),
                "{html}: {l:?}"
            );
        }
        assert!(!shown("<p style=\"font-size:0.9em;margin-left:-.25in\">OFFICIAL</p>")[0].1);
        let l = shown("<style>.m{text-transform:uppercase}</style><p class=m>top secret</p>");
        assert!(l.contains(&("TOP SECRET".into(), false)), "{l:?}");
        let l = shown("<p style=\"font-variant:small-caps\">secret</p>");
        assert!(l.contains(&("SECRET".into(), false)), "{l:?}");
        let l = shown("<style>p.m::before{content:\"TOP SECRET\"}</style><p class=m></p>");
        assert!(l.contains(&("TOP SECRET".into(), true)), "{l:?}");
    }

    #[test]
    fn is_block_knows_the_blocks() {
        for name in [
            "p",
            "div",
            "br",
            "td",
            "tr",
            "li",
            "h1",
            "h6",
            "blockquote",
            "title",
        ] {
            assert!(is_block(name), "{name}");
        }
        for name in ["span", "b", "font", "a", "img", "", "P", "divx", "h7"] {
            assert!(!is_block(name), "{name}");
        }
        assert_eq!(
            shown("<p>a<br>b<hr>c</p>"),
            [("a", false), ("b", false), ("c", false)].map(|(t, h)| (t.to_string(), h))
        );
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
