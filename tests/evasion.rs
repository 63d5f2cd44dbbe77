//! The classifier as an attacker tries it, family by family: markings hidden, mistyped,
//! wrapped, encoded, pushed past a bound or behind an ambiguous MIME structure, and the
//! everyday wording that must not be taken for a classification.
//!
//! Every case runs through `cjsm-milter check` (the milter's own pipeline), and the whole
//! table once more through the milter itself over the milter protocol, which must agree.
//! `every_obfuscation_of_every_level` is the property test: for every level L of the
//! vocabulary from the default up, every spelling, every obfuscation T and every place a
//! marking stands, `classify(T(L)) >= L`, even next to an exact OFFICIAL elsewhere; and no
//! everyday phrase is read above the ceiling.

mod common;

use base64::Engine as _;
use cjsm_milter::config::{Limits, MarkingConfig};
use cjsm_milter::marking::{Input, Vocabulary, classify};
use common::TestMilter;
use indymilter_test::{EomAction, MacroStage, Status};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};

const SENDER: &str = "dc.jones@met.pnn.police.uk";
const RECIPIENT: &str = "case.team@cps.gsi.gov.uk";
/// The client is on the secure networks: these tests are about markings, not about trust.
/// The largest cases take seconds in a debug build while the other tests of this file run
/// beside them: the deadline (its own tests are elsewhere) must not turn them into tempfails.
const CONFIG: &str =
    "[routing]\nsecure_networks = [\"127.0.0.0/8\"]\n[milter]\ndeadline_ms = 60000\n";

/// What a case must come to, by rank (OFFICIAL 10, OFFICIAL-SENSITIVE 20 = the default and
/// the ceiling, CONFIDENTIAL 30, PROTECTED 35, SECRET 40, TOP SECRET 50).
#[derive(Clone, Copy, Debug)]
enum Want {
    /// At least this rank: not lowered, or raised at least this far.
    AtLeast(u64),
    /// Exactly this rank (an exact OFFICIAL after the prefixes is still OFFICIAL).
    Is(u64),
    /// Not above the ceiling: everyday wording.
    NotAbove(u64),
}

const NOT_LOWERED: Want = Want::AtLeast(20);
const SECRET: Want = Want::AtLeast(40);
const OFFICIAL: Want = Want::Is(10);
const EVERYDAY: Want = Want::NotAbove(20);

struct Case {
    name: String,
    message: Vec<u8>,
    want: Want,
}

fn case(name: impl Into<String>, message: impl Into<Vec<u8>>, want: Want) -> Case {
    Case {
        name: name.into(),
        message: message.into(),
        want,
    }
}

fn with_subject(subject: &str) -> Vec<u8> {
    format!("From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: {subject}\r\n\r\nHello,\r\nsee attached.\r\n")
        .into_bytes()
}

fn with_body(body: &str) -> Vec<u8> {
    format!("From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: case papers\r\n\r\n{body}\r\n")
        .into_bytes()
}

fn with_header(header: &str) -> Vec<u8> {
    format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: case papers\r\n{header}\r\n\r\nHello\r\n"
    )
    .into_bytes()
}

fn with_html(html: &str) -> Vec<u8> {
    format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: case papers\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<html><body>{html}</body></html>\r\n"
    )
    .into_bytes()
}

fn raw(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn lowering_needs_the_exact_form() -> Vec<Case> {
    let subjects = [
        "OFFICIAL-SENSTIVE: bail conditions",
        "OFFICIAL-SENSITVE: bail conditions",
        "OFFICIAL-SENSITIV: bail conditions",
        "OFFICAL: rota",
        "OFFICIAL-SENS: bail conditions",
        "OFFICIAL SEN - bail conditions",
        "OFF-SEN: bail conditions",
        "OFFICIALSENSITIVE: bail conditions",
        "OFFICIAL-S\u{200B}ENSITIVE: bail",
        "OFF\u{200B}ICIAL: rota",
        "OFFI\u{00AD}CIAL: rota",
        "OFFICIAL-SEN\u{00AD}SITIVE: bail",
        "OFFICIAL\u{2060}: rota",
        "OFFICIAL, SENSITIVE: bail",
        "OFFICIAL | SENSITIVE: bail",
        "OFFICIAL \"SENSITIVE\": bail",
        "OFFICIAL 'SENSITIVE' bail",
        "OFFICIAL… SENSITIVE: bail",
        "OFFICIAL-\u{0405}ENSITIVE: bail",
        "OFFICIAL-ＳＥＮＳＩＴＩＶＥ: bail",
        "ＯＦＦＩＣＩＡＬ: rota",
        "OFFICIAL - S3NSITIVE - bail",
        "OFFICIAL - SENSTIVE - bail",
        "OFFICIAL RECEIVER - Smith Ltd in liquidation",
        "OFFICIAL SECRETS ACT briefing",
        "PROTECT YOURSELF FROM FRAUD",
        "PROTECTED: new rota",
    ];
    let mut cases: Vec<Case> = subjects
        .iter()
        .map(|s| case(format!("subject {s:?}"), with_subject(s), NOT_LOWERED))
        .collect();
    for line in [
        "OFFICIAL-SENSTIVE",
        "OFFICIAL SENS",
        "OFF\u{200B}ICIAL",
        "Classification: OFFICIAL SENSTIVE",
        "Classification: OFFICIAL-SENS",
        "Classification: OFF\u{200B}ICIAL",
        "Security Classification: OFFICIAL, SENSITIVE",
        "Protective Marking: OFFICIAL-ЅENSITIVE",
    ] {
        cases.push(case(
            format!("body first line {line:?}"),
            with_body(&format!("{line}\r\n\r\nDear Sir,\r\nRegards")),
            NOT_LOWERED,
        ));
        cases.push(case(
            format!("body last line {line:?}"),
            with_body(&format!("Dear Sir,\r\nRegards\r\n\r\n{line}")),
            NOT_LOWERED,
        ));
    }
    cases.push(case(
        "format=flowed OFFICIAL / SENSITIVE",
        raw(&format!(
            "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: papers\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\nOFFICIAL \r\nSENSITIVE\r\n\r\nDear Sir\r\n"
        )),
        NOT_LOWERED,
    ));
    cases.push(case(
        "HTML paragraphs OFFICIAL / SENSITIVE",
        with_html("<p>OFFICIAL</p><p>SENSITIVE</p><p>Dear Sir</p>"),
        NOT_LOWERED,
    ));
    for header in [
        "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC=OFFICIAL:Sensitve",
        "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC=OFFICIAL Sens",
        "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC=OFFICIAL, SEC=OFFICIAL:Sensitive",
        "msip_labels: MSIP_Label_0000_Enabled=true; MSIP_Label_0000_Name=OFFICIAL-Sensitve",
        "SIO-Label: marking=\"OFFICIAL SENSTIVE\"; type=\":ess\"",
    ] {
        let message = format!(
            "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: papers\r\n{header}\r\n\r\nHello\r\n"
        );
        cases.push(case(format!("header {header:?}"), message, NOT_LOWERED));
    }
    cases
}

fn hidden_secret_is_found() -> Vec<Case> {
    let forms = [
        "SE\u{200B}CRET",
        "SEC\u{00AD}RET",
        "SE\u{2060}CRET",
        "SEC\u{FEFF}RET",
        "SE\u{200D}CR\u{200C}ET",
        "\u{202E}SECRET\u{202C}",
        "ＳＥＣＲＥＴ",
        "\u{0405}\u{0415}\u{0421}R\u{0415}\u{0422}",
        "\u{1D412}\u{1D404}\u{1D402}\u{1D411}\u{1D404}\u{1D413}",
        "S\u{0336}E\u{0336}C\u{0336}RET",
        "*SECRET*",
        "\"SECRET\"",
        "- SECRET -",
        "---- SECRET ----",
        "=== SECRET ===",
        "🔒SECRET🔒",
        "S E C R E T",
        "S.E.C.R.E.T",
        "$ECRET",
        "S3CR3T",
        "SECERT",
        "SECRT",
        "TOP SECRT",
        "TOPSECRET",
        "T0P-SECRET",
    ];
    let mut cases = Vec::new();
    for form in forms {
        cases.push(case(
            format!("subject {form:?}"),
            with_subject(&format!("{form} operation nightjar")),
            SECRET,
        ));
        cases.push(case(
            format!("subject after OFFICIAL {form:?}"),
            with_subject(&format!("OFFICIAL: {form} operation nightjar")),
            SECRET,
        ));
        cases.push(case(
            format!("body first line {form:?}"),
            with_body(&format!("{form}\r\n\r\nDear Sir,\r\nRegards")),
            SECRET,
        ));
        cases.push(case(
            format!("body last line {form:?}"),
            with_body(&format!("OFFICIAL\r\nDear Sir,\r\nRegards\r\n{form}")),
            SECRET,
        ));
        cases.push(case(
            format!("classification line {form:?}"),
            with_body(&format!("Classification: {form}\r\nDear Sir")),
            SECRET,
        ));
        cases.push(case(
            format!("X-Protective-Marking {form:?}"),
            with_header(&format!(
                "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC={form}"
            )),
            SECRET,
        ));
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode("SE\u{200B}CRET: plan");
    cases.push(case(
        "RFC 2047 Subject with a zero-width space",
        with_subject(&format!("=?UTF-8?B?{encoded}?=")),
        SECRET,
    ));
    for html in [
        "<p>SE&shy;CRET</p><p>Dear Sir</p>",
        "<p>SE&#8203;CRET</p><p>Dear Sir</p>",
        "<p>&#83;&#69;&#67;&#82;&#69;&#84;</p><p>Dear Sir</p>",
        "<p>Dear Sir</p><p><b>SEC</b><b>RET</b></p>",
    ] {
        cases.push(case(format!("html {html:?}"), with_html(html), SECRET));
    }
    for header in [
        "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC=\"SECRET\"",
        "X-Protective-Marking: VER=2018.4; NS=gov.au; SEC=SECRET",
        "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC=SECRET AUSTEO",
        "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC=Secret",
        "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC=OFFICIAL, SEC=SECRET",
        "msip_labels: MSIP_Label_0000_Enabled=true; MSIP_Label_0000_Name=Secret - Internal",
        "msip_labels: MSIP_Label_0000_Enabled=true; MSIP_Label_0000_Name=OFFICIAL; MSIP_Label_0000_Name=SECRET",
        "SIO-Label: marking=\"SECRET//UK EYES ONLY\"; type=\":ess\"",
        "SIO-Label: marking=\"OFFICIAL\"; marking=\"SECRET\"",
        // RFC 2047 encoded: VER=2018.4, NS=gov.au, SEC=SECRET
        "X-Protective-Marking: =?UTF-8?B?VkVSPTIwMTguNCwgTlM9Z292LmF1LCBTRUM9U0VDUkVU?=",
    ] {
        cases.push(case(
            format!("header {header:?}"),
            with_header(header),
            SECRET,
        ));
    }
    cases
}

const PREFIXES: &[&str] = &[
    "RE:",
    "Re:",
    "FW:",
    "Fwd:",
    "FWD:",
    "AW:",
    "WG:",
    "SV:",
    "VS:",
    "RV:",
    "TR:",
    "Antw:",
    "Antwort:",
    "回复：",
    "转发：",
    "RE[2]:",
    "Re(3):",
    "RE: RE: FW:",
    "[EXTERNAL]",
    "[EXTERNAL]:",
    "EXTERNAL:",
    "*EXTERNAL*",
    "[EXT]",
    "CAUTION:",
    "URGENT:",
    "IMPORTANT:",
    "[CJSM]",
];

fn prefixes_are_skipped() -> Vec<Case> {
    let mut cases = Vec::new();
    for prefix in PREFIXES {
        cases.push(case(
            format!("{prefix} OFFICIAL"),
            with_subject(&format!("{prefix} OFFICIAL: rota for December")),
            OFFICIAL,
        ));
        cases.push(case(
            format!("{prefix} Official-Sensitive"),
            with_subject(&format!("{prefix} Official-Sensitive: bail")),
            Want::Is(20),
        ));
        cases.push(case(
            format!("{prefix} SECRET"),
            with_subject(&format!("{prefix} SECRET: operation")),
            SECRET,
        ));
    }
    cases
}

fn attached(inner_headers: &str, inner_body: &str) -> Vec<u8> {
    format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: fwd\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
         OFFICIAL\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n{inner_headers}\r\n\r\n{inner_body}\r\n--b1--\r\n"
    )
    .into_bytes()
}

fn labels_in_attached_messages() -> Vec<Case> {
    [
        "Subject: lunch\r\nX-Protective-Marking: VER=2018.4, NS=gov.au, SEC=SECRET",
        "Subject: lunch\r\nX-Protective-Marking: VER=2018.4, NS=gov.au,\r\n SEC=SECRET",
        "Subject: lunch\r\nmsip_labels: MSIP_Label_0000_Enabled=true; MSIP_Label_0000_Name=SECRET",
        "Subject: lunch\r\nSIO-Label: marking=\"SECRET\"",
        "Subject: SE\u{200B}CRET lunch",
    ]
    .into_iter()
    .map(|headers| {
        case(
            format!("attached {headers:?}"),
            attached(headers, "hello"),
            SECRET,
        )
    })
    .collect()
}

fn html_is_read_as_shown() -> Vec<Case> {
    let mut cases: Vec<Case> = [
        "<div>Dear Sir</div><div>SECRET</div>",
        "<table><tr><td>Dear Sir</td></tr><tr><td>SECRET</td></tr></table>",
        "<ul><li>Dear Sir</li><li>SECRET</li></ul>",
        "<h1>SECRET</h1>Dear Sir",
        "<p>Dear Sir</p><pre>SECRET</pre>",
        "Dear Sir<br>SECRET",
        "<blockquote>SECRET</blockquote>Dear Sir",
        "<th>SECRET</th>",
        "<span style=\"display:none\">SECRET</span><p>Dear Sir</p>",
        "<p>Dear Sir</p><!-- SECRET -->",
    ]
    .into_iter()
    .map(|html| case(format!("html {html:?}"), with_html(html), SECRET))
    .collect();
    for hidden in [
        "<div style=\"display:none\">OFFICIAL</div><div>Dear Sir</div>",
        "<p hidden>OFFICIAL</p><p>Dear Sir</p>",
        "<p>Dear Sir</p><p style=\"font-size:0\">OFFICIAL</p>",
        "<head><title>OFFICIAL</title></head><p>Dear Sir</p>",
        "<p>Dear Sir</p><p><font color=\"#ffffff\">OFFICIAL</font></p>",
    ] {
        cases.push(case(
            format!("hidden lower {hidden:?}"),
            with_html(hidden),
            NOT_LOWERED,
        ));
    }
    cases
}

fn body_lines() -> Vec<Case> {
    vec![
        case(
            "before a signature",
            with_body("Dear Sir\r\nthe file\r\nOFFICIAL\r\n-- \r\nJ Smith\r\nClerk"),
            OFFICIAL,
        ),
        case(
            "SECRET before a signature",
            with_body("OFFICIAL\r\nDear Sir\r\nSECRET\r\n-- \r\nJ Smith"),
            SECRET,
        ),
        case(
            "before a disclaimer",
            with_body(
                "OFFICIAL\r\nDear Sir\r\nSECRET\r\n\r\nThis email and any attachments are confidential.\r\nbye",
            ),
            SECRET,
        ),
        case("BOM", with_body("\u{FEFF}SECRET\r\nDear Sir"), SECRET),
        case("U+2028", with_body("Dear Sir\u{2028}SECRET"), SECRET),
        case(
            "U+2029",
            with_body("OFFICIAL\r\nDear Sir\u{2029}SECRET"),
            SECRET,
        ),
        case(
            "NEL",
            with_body("OFFICIAL\r\nDear Sir\u{0085}SECRET"),
            SECRET,
        ),
        case(
            "form feed",
            with_body("OFFICIAL\r\nDear Sir\x0CSECRET"),
            SECRET,
        ),
        case("bare CR", with_body("OFFICIAL\r\nDear Sir\rSECRET"), SECRET),
        case(
            "quoted",
            with_body("OFFICIAL\r\nDear Sir\r\n> SECRET\r\n> the plan"),
            SECRET,
        ),
    ]
}

fn parser_differentials() -> Vec<Case> {
    let head = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: papers\r\nMIME-Version: 1.0\r\n"
    );
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode("SECRET\r\nthe plan\r\n");
    let junk_b64 = format!("{}*{}", &secret_b64[..4], &secret_b64[4..]);
    let mut utf16 = head.clone().into_bytes();
    utf16.extend_from_slice(b"Content-Type: text/plain; charset=x-unknown-16\r\n\r\n");
    for c in "SECRET\nthe plan\n".encode_utf16() {
        utf16.extend_from_slice(&c.to_le_bytes());
    }
    vec![
        case(
            "two Content-Type headers",
            raw(&format!(
                "{head}Content-Type: text/plain\r\nContent-Type: application/octet-stream\r\n\r\nSECRET\r\n"
            )),
            SECRET,
        ),
        case(
            "invalid Content-Type",
            raw(&format!("{head}Content-Type: ;;; \r\n\r\nSECRET\r\n")),
            SECRET,
        ),
        case(
            "multipart without boundary",
            raw(&format!(
                "{head}Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nSECRET\r\n--x--\r\n"
            )),
            SECRET,
        ),
        case(
            "Content-Transfer-Encoding with a comment",
            raw(&format!(
                "{head}Content-Type: text/plain\r\nContent-Transfer-Encoding: base64 (encoded)\r\n\r\n{secret_b64}\r\n"
            )),
            SECRET,
        ),
        case(
            "base64 with junk",
            raw(&format!(
                "{head}Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{junk_b64}\r\n"
            )),
            SECRET,
        ),
        case("a charset that cannot be decoded", utf16, SECRET),
    ]
}

fn bounds_do_not_hide() -> Vec<Case> {
    let mut many_headers =
        format!("From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: papers\r\n");
    for i in 0..1100 {
        many_headers.push_str(&format!("X-Filler-{i}: x\r\n"));
    }
    many_headers.push_str("Subject: TOP SECRET plan\r\n\r\nOFFICIAL\r\n");

    let mut many_parts = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: papers\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    );
    for _ in 0..600 {
        many_parts.push_str("--b\r\nContent-Type: text/plain\r\n\r\nOFFICIAL\r\n");
    }
    many_parts.push_str("--b\r\nContent-Type: text/plain\r\n\r\nSECRET\r\n--b--\r\n");

    let mut deep = "Subject: SECRET plan\r\n\r\nhello\r\n".to_string();
    for depth in 0..6 {
        deep = format!(
            "Subject: OFFICIAL: level {depth}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m{depth}\r\n\r\n\
             --m{depth}\r\nContent-Type: message/rfc822\r\n\r\n{deep}\r\n--m{depth}--\r\n"
        );
    }
    let mut long_headers =
        format!("From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: papers\r\n");
    for _ in 0..40 {
        long_headers.push_str(&format!("X-Filler: {}\r\n", "x".repeat(60_000)));
    }
    long_headers
        .push_str("X-Protective-Marking: VER=2018.4, NS=gov.au, SEC=SECRET\r\n\r\nOFFICIAL\r\n");
    // More lines than one text is read for line by line: the exact scan still finds it.
    let mut many_lines = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: papers\r\n\r\nOFFICIAL\r\n"
    );
    for i in 0..110_000 {
        many_lines.push_str(&format!("SECRT SENS {i}\r\n"));
    }
    many_lines.push_str("TOP SECRET\r\nend\r\n");
    vec![
        case(
            "past the lines read one by one",
            many_lines,
            Want::AtLeast(50),
        ),
        case("past max_headers", many_headers, Want::AtLeast(50)),
        case("past max_parts", many_parts, SECRET),
        case("below max_depth", deep, SECRET),
        case("past max_header_bytes", long_headers, SECRET),
    ]
}

const EVERYDAY_PHRASES: &[&str] = &[
    "Confidential: salary review",
    "CONFIDENTIAL AND LEGALLY PRIVILEGED - R v Jones",
    "Privileged & Confidential",
    "Privileged and confidential: draft advice",
    "[Confidential] draft advice",
    "PROTECTED DISCLOSURE - concerns about ward 7",
    "Protected: characteristics training",
    "PROTECTED CHARACTERISTICS training",
    "SECRET SANTA DRAW",
    "Secret Santa draw",
    "Re: Secret Santa",
    "Secret: the surprise party",
    "Our secret weapon: the new form",
    "Top secret recipe for the bake sale",
    "Strictly Private & Confidential",
    "STRICTLY PRIVATE AND CONFIDENTIAL - addressee only",
    "PRIVATE AND CONFIDENTIAL: statement",
    "Legally privileged - draft advice",
    "CONFIDENTIAL & PRIVILEGED",
    "COMMERCIAL IN CONFIDENCE - tender",
    "Company Confidential: results",
    "Confidentiality notice",
    "Protection order hearing",
    "The secretary's report",
];

fn everyday_wording() -> Vec<Case> {
    let mut cases = Vec::new();
    for phrase in EVERYDAY_PHRASES {
        cases.push(case(
            format!("subject {phrase:?}"),
            with_subject(phrase),
            EVERYDAY,
        ));
        cases.push(case(
            format!("first line {phrase:?}"),
            with_body(&format!("{phrase}\r\n\r\nDear Sir,\r\nRegards")),
            EVERYDAY,
        ));
    }
    for line in [
        "Confidential",
        "Private & Confidential",
        "PRIVILEGED AND CONFIDENTIAL",
        "Secret",
    ] {
        cases.push(case(
            format!("body line {line:?}"),
            with_body(&format!("Dear Sir,\r\n{line}\r\nRegards")),
            EVERYDAY,
        ));
    }
    cases
}

/// Cases found by a red-team pass over the first version of this classifier.
fn red_team() -> Vec<Case> {
    let mut cases = Vec::new();
    for subject in [
        "Operation Nightjar [SECRET UK EYES ONLY]",
        "Plan [TOP SECRET//STRAP1]",
        "[SECRET - Operation Nightjar]",
        "[SECRET plan]",
        "Budget [Classification: TOP SECRET]",
        "OFFICIAL: plan [SECRET UK EYES ONLY]",
        "OFFICIAL: \u{A731}\u{1D07}\u{1D04}\u{0280}\u{1D07}\u{1D1B} plan",
        "OFFICIAL: \u{1F162}\u{1F154}\u{1F152}\u{1F161}\u{1F154}\u{1F163} plan",
        "OFFICIAL: \u{1F182}\u{1F174}\u{1F172}\u{1F181}\u{1F174}\u{1F183} plan",
        "OFFICIAL: \u{202E}TERCES\u{202C} plan",
        "OFFICIAL: S\u{20AC}CR\u{20AC}T plan",
        "OFFICIAL: SE\u{00A9}RET plan",
        "OFFICIAL: CONF!DENT!AL plan",
        "OFFICIAL: SEC-RET plan",
        "OFFICIAL: SEC RET plan",
        "OFFICIAL: S    E    C    R    E    T plan",
        "OFFICIAL: S \u{2022} E \u{2022} C \u{2022} R \u{2022} E \u{2022} T plan",
        "PROTECTED - Disclosure schedule R v Smith",
        "PROTECTED: DISCLOSURE OF EVIDENCE",
    ] {
        cases.push(case(
            format!("subject {subject:?}"),
            with_subject(subject),
            Want::AtLeast(30),
        ));
    }
    for subject in [
        "OFFICIAL: Official-Sensitive case file",
        "OFFICIAL: Commercial in Confidence - tender",
        "Budget Official-Sensitive [OFFICIAL]",
        "OFFICIAL - PERSONAL - SENSITIVE: witness details",
        "OFFICIAL: PERSONAL, SENSITIVE",
        "[SENSITIVE] OFFICIAL: witness list",
        "OFFICIAL: Bail [SENSITIVE]",
        "Budget [SEC=OFFICIAL, Sensitive]",
        "(OFFICIAL LOCSEN) witness list",
    ] {
        cases.push(case(
            format!("subject {subject:?}"),
            with_subject(subject),
            NOT_LOWERED,
        ));
    }
    for body in [
        "SECRET - do not forward\r\nOperation details",
        "TOP SECRET: Operation Nightjar briefing for the team, read and destroy after use\r\nDetails",
        &format!("SECRET{}\r\nOperation details", " ".repeat(250)),
        &format!("{}TOP SECRET\r\nOperation details", " ".repeat(200)),
        "Security Marking: SECRET\r\nDear Sir",
        "Classification level: SECRET\r\nDear Sir",
        "Clasification: SECRET\r\nDear Sir",
        "UK EYES ONLY - SECRET\r\nDear Sir",
        "\u{A731}\u{1D07}\u{1D04}\u{0280}\u{1D07}\u{1D1B}\r\nDear Sir",
        "\u{202E}TERCES\u{202C}\r\nDear Sir",
    ] {
        cases.push(case(
            format!("body {body:?}"),
            with_body(&format!("{body}\r\nRegards\r\nOFFICIAL")),
            Want::AtLeast(40),
        ));
    }
    #[rustfmt::skip]
    let bodies = [
        ("OFFICIAL with a descriptor of OFFICIAL-SENSITIVE", "OFFICIAL LOCSEN\r\nDear Sir"),
        ("OFFICIAL-PERSONAL", "OFFICIAL-PERSONAL\r\nDear Sir"),
        ("a quoted OFFICIAL", "Thanks, agreed.\r\n\r\n> Dear all,\r\n> the rota\r\n> OFFICIAL"),
        ("lower case official", "Dear Sir,\r\nthe rota.\r\nofficial."),
    ];
    for (name, body) in bodies {
        cases.push(case(name, with_body(body), NOT_LOWERED));
    }
    let alternative = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: papers\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\n\
         OFFICIAL\r\nsee the HTML\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>Witness address: 1 High St</p>\r\n--a--\r\n"
    );
    cases.push(case(
        "OFFICIAL only in the text alternative",
        alternative,
        NOT_LOWERED,
    ));
    let text_attachment = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: papers\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\n\
         Witness address: 1 High St\r\n--a\r\nContent-Type: text/plain; name=\"readme.txt\"\r\n\
         Content-Disposition: attachment; filename=\"readme.txt\"\r\n\r\nOFFICIAL\r\nreadme\r\n--a--\r\n"
    );
    cases.push(case(
        "OFFICIAL only in a text attachment",
        text_attachment,
        NOT_LOWERED,
    ));
    cases.push(case(
        "OFFICIAL only in an attached message",
        attached_without_official("Subject: OFFICIAL: canteen menu"),
        NOT_LOWERED,
    ));
    for html in [
        "<div x=a'>SECRET</div><div y=b'>Operation details</div>",
        "<p>&#83&#69&#67&#82&#69&#84</p><p>Dear Sir</p>",
        "Hello<details open><summary>SECRET</summary></details>World",
        "<p style=\"text-transform:uppercase\">secret</p><p>Dear Sir</p>",
        "<p>TOP SECRET<span style=\"display:none\"> with kind regards from the team</span></p><p>Plan</p>",
        "<span style=\"display:block\">SECRET</span> Operation Nightjar briefing attached.",
        "<p>Dear Sir</p><img alt=\"SECRET\" src=\"cid:x\">",
    ] {
        cases.push(case(format!("html {html:?}"), with_html(html), SECRET));
    }
    for html in [
        "<style>.h{display:none}</style><p class=\"h\">OFFICIAL</p><p>Witness address: 1 High St</p>",
        "<p style=\"position:absolute;left:-9999px\">OFFICIAL</p><p>Witness address: 1 High St</p>",
        "<p style=\"color:#fefefe\">OFFICIAL</p><p>Witness address: 1 High St</p>",
        "<p style=\"font-size:1pt\">OFFICIAL</p><p>Witness address: 1 High St</p>",
        "<p style=\"display:/**/none\">OFFICIAL</p><p>Witness address: 1 High St</p>",
        "<p>OFFICIAL<span x=a'>-SENSITIVE</span><span y=b'></span></p>",
        "<style>.m::after{content:\"-SENSITIVE\"}</style><p class=\"m\">OFFICIAL</p>",
    ] {
        cases.push(case(format!("html {html:?}"), with_html(html), NOT_LOWERED));
    }
    for subject in [
        "PRIVATE & CONFIDENTIAL",
        "STRICTLY PRIVATE & CONFIDENTIAL",
        "PERSONAL AND CONFIDENTIAL",
        "HIGHLY CONFIDENTIAL - ATTORNEYS' EYES ONLY",
        "CONFIDENTIAL - LEGALLY PRIVILEGED - R v Jones",
        "LEGALLY PRIVILEGED & CONFIDENTIAL",
        "WITHOUT PREJUDICE & CONFIDENTIAL",
        "CONFIDENTIAL AND SUBJECT TO LEGAL PRIVILEGE",
        "RE: PROJECTED COSTS SCHEDULE",
        "PROTESTED BILL OF EXCHANGE",
        "PROTECTED PARTY - LITIGATION FRIEND",
        "PROTECTED CONVERSATION - J SMITH",
        "RE: DVPO - PROTECTED PERSON DETAILS",
        "RE: TRADE SECRET CLAIM",
        "SECRET BALLOT",
        "R V JONES - SECRET RECORDING EVIDENCE",
    ] {
        cases.push(case(
            format!("everyday {subject:?}"),
            with_subject(subject),
            EVERYDAY,
        ));
    }
    cases
}

/// Cases found by a second red-team pass.
fn red_team_again() -> Vec<Case> {
    let mut cases = Vec::new();
    for header in [
        "msip_labels: MSIP_Label_abc_Enabled=true; MSIP_Label_abc_Name=UK TOP SECRET",
        "msip_labels: MSIP_Label_abc_Enabled=true; MSIP_Label_abc_Name=NATO SECRET",
        "msip_labels: MSIP_Label_abc_Enabled=true; MSIP_Label_abc_Name=Classified - Secret",
    ] {
        let message = format!(
            "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: papers\r\n{header}\r\n\r\nHello\r\n"
        );
        cases.push(case(format!("header {header:?}"), message, SECRET));
    }
    for html in [
        "<style>.m{text-transform:uppercase}</style><p class=m>top secret</p><p>Dear Sir</p>",
        "<p style=\"font-variant:all-small-caps\">top secret</p><p>Dear Sir</p>",
        "<style>p.m::before{content:\"TOP SECRET\"}</style><p class=m></p><p>Dear Sir</p>",
        "<p>SEC<!-- x -->RET</p><p>Dear Sir</p>",
        "<p>SEC<img src=x alt=\"\">RET</p><p>Dear Sir</p>",
    ] {
        let message = with_html(html).replace_subject("OFFICIAL: Case file 123");
        cases.push(case(format!("html {html:?}"), message, SECRET));
    }
    let flowed = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: Case file 123\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\nSEC \r\nRET\r\nPlease see the witness list.\r\n"
    );
    cases.push(case("format=flowed delsp=yes", flowed, SECRET));
    let enriched = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: Case file 123\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/enriched\r\n\r\n<bold>SECRET</bold>\r\n\r\nPlease see the witness list.\r\n"
    );
    cases.push(case("text/enriched", enriched, SECRET));
    cases.push(case(
        "TOP SECRETS",
        with_subject("OFFICIAL: TOP SECRETS"),
        SECRET,
    ));
    for html in [
        "<div>Victim address is 12 High St.</div><blockquote type=\"cite\"><div>OFFICIAL</div></blockquote>",
        "<div>Victim address is 12 High St.</div><div class=\"gmail_quote\"><div>OFFICIAL</div></div>",
        "<div>Victim address is 12 High St.</div><div id=\"divRplyFwdMsg\">From: x</div><div>OFFICIAL</div>",
        "<dialog>OFFICIAL</dialog><p>Please see the witness list.</p>",
        "<p style=\"color:#fff !important\">OFFICIAL</p><p>Please see the witness list.</p>",
        "<style>p.a{display:none}</style><p class=\"b a\">OFFICIAL</p><p>Please see the witness list.</p>",
        "<style>*{display:none}</style><p>OFFICIAL</p><p>Please see the witness list.</p>",
    ] {
        let message = with_html(html).replace_subject("Case file 123");
        cases.push(case(format!("html {html:?}"), message, NOT_LOWERED));
    }
    cases.push(case(
        "an Original Message below the reply",
        with_body("Victim address is 12 High St.\r\n\r\n-----Original Message-----\r\nFrom: x\r\n\r\nOFFICIAL"),
        NOT_LOWERED,
    ));
    let html_first = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: papers\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/html\r\n\r\n\
         <p>OFFICIAL</p><p>Witness address: 1 High St</p>\r\n--a\r\nContent-Type: text/plain\r\n\r\nWitness address: 1 High St\r\n--a--\r\n"
    );
    cases.push(case(
        "OFFICIAL only in the HTML alternative",
        html_first,
        NOT_LOWERED,
    ));
    cases.push(case(
        "SEC= and DLM=",
        with_subject("Case 123 [SEC=OFFICIAL, DLM=Sensitive]"),
        NOT_LOWERED,
    ));
    for subject in [
        "SEC RE: HEARING",
        "SECRET COMMISSION - BRIBERY ACT",
        "SECRET TRUST - PROBATE",
        "PROTECTED SHORTHOLD TENANCY",
        "PROTECTED TENANT",
        "PROTECTED-CHARACTERISTIC",
        "OFFICIAL-SENSITIVE: PROTECTED VICTIM",
        "NON-CONFIDENTIAL VERSION - CMA SUBMISSION",
        "CONFIDENTIAL - LPP",
        "CONFIDENTIAL - SUBJECT TO CONTRACT",
        "CONFIDENTIAL SETTLEMENT AGREEMENT",
        "MARAC - CONFIDENTIAL",
    ] {
        cases.push(case(
            format!("everyday {subject:?}"),
            with_subject(subject),
            EVERYDAY,
        ));
    }
    cases
}

fn attached_without_official(inner_headers: &str) -> Vec<u8> {
    format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
         see attached\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n{inner_headers}\r\n\r\nhello\r\n--b1--\r\n"
    )
    .into_bytes()
}

fn all_families() -> Vec<(&'static str, Vec<Case>)> {
    vec![
        ("red team", red_team()),
        ("red team again", red_team_again()),
        (
            "lowering needs the exact form",
            lowering_needs_the_exact_form(),
        ),
        ("hidden SECRET is found", hidden_secret_is_found()),
        ("prefixes are skipped", prefixes_are_skipped()),
        ("labels in attached messages", labels_in_attached_messages()),
        ("HTML is read as shown", html_is_read_as_shown()),
        ("body lines", body_lines()),
        ("parser differentials", parser_differentials()),
        ("bounds do not hide", bounds_do_not_hide()),
        ("everyday wording", everyday_wording()),
    ]
}

fn satisfied(want: Want, rank: u64) -> bool {
    match want {
        Want::AtLeast(r) => rank >= r,
        Want::Is(r) => rank == r,
        Want::NotAbove(r) => rank <= r,
    }
}

fn check(config: &std::path::Path, message: &[u8]) -> Value {
    let args = [
        "--from",
        SENDER,
        "--rcpt",
        RECIPIENT,
        "--client-addr",
        "127.0.0.1",
    ];
    common::cli::check_message(config, &args, message)
}

fn config_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{CONFIG}\n[store]\npath = \"{}\"\n",
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    config
}

/// Every family through `check`; every mismatch of every family reported together.
#[test]
fn families_through_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir);
    let mut failures = Vec::new();
    let mut total = 0;
    for (family, cases) in all_families() {
        for case in cases {
            total += 1;
            let report = check(&config, &case.message);
            let rank = report["marking"]["rank"].as_u64().unwrap();
            if !satisfied(case.want, rank) {
                failures.push(format!(
                    "{family}: {}: want {:?}, got {} from {}",
                    case.name, case.want, report["marking"]["label"], report["marking"]["source"]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The milter reaches the same marking as `check` on every case: accepted with our header
/// naming it, or rejected naming it.
#[tokio::test(flavor = "multi_thread")]
async fn the_milter_agrees_with_check() {
    let milter = TestMilter::start(CONFIG).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir);
    let mut disagreements = Vec::new();
    for (family, cases) in all_families() {
        for case in cases {
            let report = check(&config, &case.message);
            let label = report["marking"]["label"].as_str().unwrap().to_string();
            let milter_label = through_milter(&milter, &case.message).await;
            if milter_label != label {
                disagreements.push(format!(
                    "{family}: {}: check {label}, milter {milter_label}",
                    case.name
                ));
            }
        }
    }
    milter.stop().await;
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// The marking the milter reached: from the header it added, or from its rejection.
async fn through_milter(milter: &TestMilter, message: &[u8]) -> String {
    let mut conn = milter.connect().await;
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
    conn.connect("client.example", client).await.unwrap();
    conn.macros(MacroStage::Mail, [("i", "4XQ1EVASION")])
        .await
        .unwrap();
    assert_eq!(conn.mail([SENDER]).await.unwrap(), Status::Continue);
    assert_eq!(conn.rcpt([RECIPIENT]).await.unwrap(), Status::Continue);
    let split = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a blank line after the headers");
    let (head, body) = (&message[..split + 2], &message[split + 4..]);
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            let last = headers.last_mut().unwrap();
            last.1.extend_from_slice(b"\r\n");
            last.1.extend_from_slice(line);
            continue;
        }
        let colon = line.iter().position(|&b| b == b':').unwrap();
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        headers.push((
            String::from_utf8_lossy(&line[..colon]).into_owned(),
            value.to_vec(),
        ));
    }
    for (name, value) in &headers {
        let status = conn
            .header(
                name.as_str(),
                std::ffi::CString::new(value.clone()).unwrap_or_default(),
            )
            .await
            .unwrap();
        // No reply at all where the milter asked the MTA not to wait (it has nothing to say
        // before end of message).
        assert!(
            matches!(status, Status::Continue | Status::Noreply),
            "{status:?}"
        );
    }
    conn.eoh().await.unwrap();
    for chunk in body.chunks(65_535) {
        if conn.body(chunk.to_vec()).await.unwrap() == Status::Skip {
            break;
        }
    }
    conn.macros(MacroStage::Eom, [("i", "4XQ1EVASION")])
        .await
        .unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    conn.close().await.unwrap();
    match status {
        Status::Accept | Status::Continue => actions
            .actions
            .iter()
            .find_map(|action| match action {
                EomAction::AddHeader { name, value }
                | EomAction::InsertHeader { name, value, .. }
                    if name.to_string_lossy() == "X-CJSM-Marking" =>
                {
                    let value = value.to_string_lossy();
                    Some(value.split(';').next().unwrap().trim().to_string())
                }
                _ => None,
            })
            .unwrap_or_else(|| format!("accepted without a marking header: {:?}", actions.actions)),
        Status::Reject { message: Some(m) } => {
            let text = m.to_string_lossy();
            text.split("marked ")
                .nth(1)
                .and_then(|rest| rest.split(" may not").next())
                .map(str::to_string)
                .unwrap_or_else(|| format!("rejected: {text}"))
        }
        other => format!("{other:?}"),
    }
}

// The property test, on the library's classifier directly (it is the same code `check` and
// the milter run, and thousands of messages would be slow through a process each).

/// An obfuscation: its name and what it does to a marking.
type Transform = (&'static str, fn(&str) -> String);

/// Obfuscations of a marking written in capitals.
fn transforms() -> Vec<Transform> {
    fn insert_middle(text: &str, what: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let middle = chars.len() / 2;
        chars[..middle].iter().collect::<String>()
            + what
            + &chars[middle..].iter().collect::<String>()
    }
    fn map_letters(text: &str, f: impl Fn(char) -> Option<char>) -> String {
        text.chars().map(|c| f(c).unwrap_or(c)).collect()
    }
    fn longest_word_edit(text: &str, edit: fn(&str) -> String) -> String {
        let longest = text.split(' ').max_by_key(|w| w.len()).unwrap_or("");
        text.replacen(longest, &edit(longest), 1)
    }
    vec![
        ("plain", |t| t.to_string()),
        ("zero-width space", |t| insert_middle(t, "\u{200B}")),
        ("soft hyphen", |t| insert_middle(t, "\u{00AD}")),
        ("word joiner", |t| insert_middle(t, "\u{2060}")),
        ("BOM inside", |t| insert_middle(t, "\u{FEFF}")),
        ("bidi override", |t| format!("\u{202D}{t}\u{202C}")),
        ("leading NUL", |t| format!("\0{t}")),
        ("full-width", |t| {
            map_letters(t, |c| {
                c.is_ascii_graphic()
                    .then(|| char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap())
            })
        }),
        ("mathematical bold", |t| {
            map_letters(t, |c| {
                c.is_ascii_uppercase()
                    .then(|| char::from_u32(c as u32 - 'A' as u32 + 0x1D400).unwrap())
            })
        }),
        ("Cyrillic look-alikes", |t| {
            map_letters(t, |c| {
                Some(match c {
                    'A' => 'А',
                    'B' => 'В',
                    'C' => 'С',
                    'E' => 'Е',
                    'H' => 'Н',
                    'I' => 'І',
                    'K' => 'К',
                    'M' => 'М',
                    'O' => 'О',
                    'P' => 'Р',
                    'S' => 'Ѕ',
                    'T' => 'Т',
                    'X' => 'Х',
                    _ => return None,
                })
            })
        }),
        ("combining strike", |t| {
            t.chars().flat_map(|c| [c, '\u{0336}']).collect()
        }),
        ("digits for letters", |t| {
            map_letters(t, |c| {
                Some(match c {
                    'O' => '0',
                    'I' => '1',
                    'E' => '3',
                    'S' => '5',
                    _ => return None,
                })
            })
        }),
        ("letter-spaced", |t| {
            t.chars().map(String::from).collect::<Vec<_>>().join(" ")
        }),
        ("dots between letters", |t| {
            t.chars()
                .filter(|c| *c != ' ')
                .map(String::from)
                .collect::<Vec<_>>()
                .join(".")
        }),
        ("a letter dropped", |t| {
            longest_word_edit(t, |w| {
                let mut c: Vec<char> = w.chars().collect();
                c.remove(c.len() / 2);
                c.into_iter().collect()
            })
        }),
        ("two letters swapped", |t| {
            longest_word_edit(t, |w| {
                let mut c: Vec<char> = w.chars().collect();
                let i = c.len() / 2;
                c.swap(i - 1, i);
                c.into_iter().collect()
            })
        }),
        ("asterisks", |t| format!("*{t}*")),
        ("quotes", |t| format!("\"{t}\"")),
        ("dashes", |t| format!("- {t} -")),
        ("rules", |t| format!("---- {t} ----")),
        ("equals", |t| format!("=== {t} ===")),
        ("emoji", |t| format!("🔒 {t} 🔒")),
        ("brackets", |t| format!("[{t}]")),
        ("en dashes between words", |t| t.replace(' ', " \u{2013} ")),
        ("no-break spaces", |t| t.replace(' ', "\u{00A0}")),
        ("pipes between words", |t| t.replace(' ', "|")),
    ]
}

/// The places a marking stands, each with an exact OFFICIAL somewhere else in the message.
fn places(marking: &str) -> Vec<(&'static str, Vec<u8>)> {
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let qp: String = format!("{marking}\r\n")
        .bytes()
        .map(|b| format!("={b:02X}"))
        .collect();
    let entities: String = marking
        .chars()
        .map(|c| format!("&#{};", c as u32))
        .collect();
    let mut places = vec![
        (
            "subject",
            with_subject(&format!("{marking} plan")).replace_body_with("OFFICIAL"),
        ),
        (
            "subject after OFFICIAL",
            with_subject(&format!("OFFICIAL: {marking} plan")),
        ),
        (
            "body first line",
            with_body(&format!("{marking}\r\nDear Sir\r\nOFFICIAL"))
                .replace_subject("OFFICIAL: papers"),
        ),
        (
            "body last line",
            with_body(&format!("OFFICIAL\r\nDear Sir\r\n{marking}")),
        ),
        (
            "classification line",
            with_body(&format!(
                "Classification: {marking}\r\nDear Sir\r\nOFFICIAL"
            )),
        ),
        (
            "X-Protective-Marking",
            with_header(&format!(
                "X-Protective-Marking: VER=2018.4, NS=gov.au, SEC={marking}"
            ))
            .replace_subject("OFFICIAL: papers"),
        ),
        (
            "html",
            with_html(&format!("<div>Dear Sir</div><div><b>{marking}</b></div>"))
                .replace_subject("OFFICIAL: papers"),
        ),
        (
            "html entities",
            with_html(&format!("<p>{entities}</p><p>Dear Sir</p>"))
                .replace_subject("OFFICIAL: papers"),
        ),
        (
            "RFC 2047 Subject",
            with_subject(&format!("=?UTF-8?B?{}?=", b64(&format!("{marking} plan"))))
                .replace_body_with("OFFICIAL"),
        ),
    ];
    let head = format!(
        "From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: OFFICIAL: papers\r\nMIME-Version: 1.0\r\n"
    );
    places.push((
        "base64 body",
        raw(&format!(
            "{head}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64(&format!("{marking}\r\nDear Sir\r\n"))
        )),
    ));
    places.push((
        "quoted-printable body",
        raw(&format!(
            "{head}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nDear Sir\r\n{qp}"
        )),
    ));
    places
}

trait Rewrite {
    fn replace_subject(self, subject: &str) -> Vec<u8>;
    fn replace_body_with(self, body: &str) -> Vec<u8>;
}

impl Rewrite for Vec<u8> {
    fn replace_subject(self, subject: &str) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replacen("Subject: case papers", &format!("Subject: {subject}"), 1)
            .into_bytes()
    }
    fn replace_body_with(self, body: &str) -> Vec<u8> {
        let text = String::from_utf8(self).unwrap();
        let split = text.find("\r\n\r\n").unwrap();
        format!("{}\r\n\r\n{body}\r\n", &text[..split]).into_bytes()
    }
}

#[test]
fn every_obfuscation_of_every_level() {
    let config = MarkingConfig::default();
    let vocab = Vocabulary::from_config(&config).unwrap();
    let mut spellings: Vec<(String, u32)> = Vec::new();
    for level in cjsm_milter::marking::profile::cjsm_levels() {
        if level.rank < vocab.rank(vocab.default) {
            continue;
        }
        for spelling in std::iter::once(&level.name).chain(&level.spellings) {
            spellings.push((spelling.to_uppercase().replace('-', " "), level.rank));
        }
    }
    let mut failures = Vec::new();
    let mut total = 0;
    for (spelling, rank) in &spellings {
        for (transform, apply) in transforms() {
            let marking = apply(spelling);
            for (place, message) in places(&marking) {
                total += 1;
                let c = classify(
                    Input {
                        raw: &message,
                        overflow: b"",
                        limits_exceeded: vec![],
                    },
                    &vocab,
                    &Limits::default(),
                    "[CJSM]",
                );
                if vocab.rank(c.level) < *rank {
                    failures.push(format!(
                        "{spelling} ({rank}) {transform} in {place}: read {} from {}",
                        vocab.level(c.level).name,
                        c.source
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Everyday wording is never read above the ceiling, wherever it stands.
    for phrase in EVERYDAY_PHRASES {
        for message in [
            with_subject(phrase),
            with_body(&format!("{phrase}\r\nDear Sir")),
            with_body(&format!("Dear Sir\r\n{phrase}")),
        ] {
            let c = classify(
                Input {
                    raw: &message,
                    overflow: b"",
                    limits_exceeded: vec![],
                },
                &vocab,
                &Limits::default(),
                "[CJSM]",
            );
            assert!(
                !vocab.above_ceiling(c.level),
                "{phrase:?}: read {} from {}",
                vocab.level(c.level).name,
                c.source
            );
        }
    }
}
