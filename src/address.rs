//! Envelope addresses as the MTA will use them.
//!
//! The milter is handed the raw `MAIL FROM`/`RCPT TO` argument, but the MTA queues what its own
//! parser makes of it: Postfix turns `<mary@smithchambers.cjsm.net(x)>` into
//! `mary@smithchambers.cjsm.net`, drops a source route, applies the `%` and `!` routing hacks
//! and appends a domain to a bare user name. Judging the raw text would judge another address
//! than the one delivered, so:
//!
//! - the raw argument must be a *plain* RFC 5321 mailbox (below), or it is refused;
//! - the address the MTA reports for it (`{mail_addr}`, `{rcpt_addr}`) must be the same
//!   address, or it is refused; what is judged is that address.
//!
//! "Plain" is deliberately narrower than RFC 5321: every form a hub's legitimate mail does not
//! need, and that MTAs read differently, is refused rather than interpreted.
//!
//! | form | example | |
//! |---|---|---|
//! | comment, space, control or non-ASCII character, `\`, `(`, `"` … | `<mary@x.cjsm.net(x)>` | refused |
//! | group syntax, a second `@`, unbalanced `<` `>` | `<g:mary@x;>` | refused |
//! | source route | `<@a,@b:mary@x>` | refused |
//! | quoted local part | `<"mary"@x>` | refused |
//! | `%` or `!` in the local part (routing hacks) | `<bob%firm.co.uk@hub>` | refused |
//! | empty or dot-edged labels, a final dot, a single label, a numeric top label | `<m@x..net>`, `<m@x.net.>` | refused |
//! | address literal | `<m@[192.0.2.1]>` | refused |
//! | a user name without domain | `<postmaster>` | a form of its own: the trust rules decide |
//! | the null sender | `<>` | at MAIL only |
//!
//! Internationalised addresses (SMTPUTF8) are refused too: the directory holds ASCII
//! addresses only. A domain in its ASCII (`xn--`) form is plain.

/// A mail domain: lower case, without a final dot (`firm.co.uk`, not `Firm.Co.UK.`). Every rule
/// that compares domains compares these.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// The domain as given (an address's domain part, a config value, a directory entry);
    /// `None` when nothing is left of it.
    pub fn new(text: &str) -> Option<Domain> {
        let domain = text.trim().trim_matches('.').to_ascii_lowercase();
        (!domain.is_empty()).then_some(Domain(domain))
    }

    /// The domain of an address (what follows its last `@`); `None` for a bare user name.
    pub fn of(address: &str) -> Option<Domain> {
        address.rsplit_once('@').and_then(|(_, d)| Domain::new(d))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain itself or one of its subdomains: `met.pnn.police.uk` is within
    /// `pnn.police.uk`; `notpnn.police.uk` is not.
    pub fn is_within(&self, parent: &Domain) -> bool {
        self.0 == parent.0
            || self
                .0
                .strip_suffix(parent.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }

    /// The domain with `suffix` added (`firm.co.uk` under `cjsm.net` is `firm.co.uk.cjsm.net`).
    pub fn under(&self, suffix: &Domain) -> Domain {
        Domain(format!("{}.{}", self.0, suffix.0))
    }

    /// The domain with `suffix` taken off its end (`firm.co.uk.cjsm.net` less `cjsm.net` is
    /// `firm.co.uk`); `None` unless it is a proper subdomain of `suffix`.
    pub fn less(&self, suffix: &Domain) -> Option<Domain> {
        let head = self.0.strip_suffix(suffix.as_str())?.strip_suffix('.')?;
        Domain::new(head)
    }
}

/// Tests and tables compare a domain with its text.
impl PartialEq<&str> for Domain {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address with `suffix` added to its domain: its secure form
/// (`alice@firm.co.uk` → `alice@firm.co.uk.cjsm.net`). A bare user name, or an empty suffix,
/// leaves it as it is.
pub fn with_suffix(address: &str, suffix: &str) -> String {
    let suffix = suffix.trim_matches('.');
    if !address.contains('@') || suffix.is_empty() {
        address.to_string()
    } else {
        format!("{}.{suffix}", address.trim_end_matches('.'))
    }
}

/// An envelope address after the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvelopeAddress {
    /// `<>`: the null sender (bounces).
    Null,
    /// A user name without a domain (`postmaster`), lower-cased; the MTA qualifies it.
    Unqualified(String),
    /// `user@domain`, lower-cased.
    Mailbox(String),
}

impl EnvelopeAddress {
    /// The address as the rules compare it: lower-case, "" for the null sender.
    pub fn as_str(&self) -> &str {
        match self {
            EnvelopeAddress::Null => "",
            EnvelopeAddress::Unqualified(a) | EnvelopeAddress::Mailbox(a) => a,
        }
    }
}

/// Which envelope address: the reply codes differ (RFC 3463: 5.1.7 bad sender's mailbox
/// address syntax, 5.1.3 bad destination mailbox address syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Recipient,
}

/// The longest argument looked at: RFC 5321's path limit (256) with room for brackets. Past
/// it nothing else is read, so the work per address is bounded.
const MAX_ARGUMENT: usize = 512;

/// Characters of an RFC 5321 `Atom` (atext), less `%` and `!`: the percent hack and bang
/// paths make an MTA route on them.
fn atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"#$&'*+-/=?^_`{|}~".contains(&b)
}

/// The raw SMTP argument as a plain mailbox, or why it is not one (for the reply text).
pub fn parse(raw: &str) -> Result<EnvelopeAddress, &'static str> {
    if raw.len() > MAX_ARGUMENT {
        return Err("too long");
    }
    if let Some(b) = raw
        .bytes()
        .find(|b| !b.is_ascii_graphic() || *b == b'\\' || *b == b'"' || *b == b'(')
    {
        return Err(match b {
            b' ' | b'\t' => "spaces are not allowed",
            b'(' => "comments are not allowed",
            b'"' => "quoted local parts are not allowed",
            b'\\' => "backslashes are not allowed",
            b if b >= 0x80 => "only ASCII addresses are accepted",
            _ => "control characters are not allowed",
        });
    }
    let inner = match raw.strip_prefix('<') {
        Some(rest) => rest.strip_suffix('>').ok_or("unbalanced angle brackets")?,
        None => raw,
    };
    if inner.contains(['<', '>']) {
        return Err("unbalanced angle brackets");
    }
    if inner.is_empty() {
        return Ok(EnvelopeAddress::Null);
    }
    if inner.starts_with('@') {
        return Err("source routes are not allowed");
    }
    if inner.contains('[') {
        return Err("address literals are not allowed");
    }
    if inner.contains([':', ';', ',']) {
        return Err("group syntax and lists are not allowed");
    }
    let (local, domain) = match inner.split_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (inner, None),
    };
    check_local(local)?;
    let Some(domain) = domain else {
        return Ok(EnvelopeAddress::Unqualified(local.to_ascii_lowercase()));
    };
    check_domain(domain)?;
    if inner.len() > 254 {
        return Err("too long");
    }
    Ok(EnvelopeAddress::Mailbox(inner.to_ascii_lowercase()))
}

fn check_local(local: &str) -> Result<(), &'static str> {
    if local.is_empty() {
        return Err("the user name is empty");
    }
    if local.len() > 64 {
        return Err("the user name is longer than 64 characters");
    }
    if local.contains(['%', '!']) {
        return Err("routing characters (% and !) are not allowed");
    }
    dotted(local, atext).map_err(|e| e.unwrap_or("characters not allowed in the user name"))
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.contains('@') {
        return Err("more than one @");
    }
    if domain.ends_with('.') {
        return Err("the domain ends with a dot");
    }
    if domain.len() > 253 {
        return Err("the domain is too long");
    }
    let ldh = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    dotted(domain, ldh).map_err(|e| e.unwrap_or("characters not allowed in the domain"))?;
    let labels: Vec<&str> = domain.split('.').collect();
    if labels
        .iter()
        .any(|l| l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
    {
        return Err("a domain label is too long or starts or ends with a hyphen");
    }
    if labels.len() < 2 {
        return Err("the domain must have at least two labels");
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the domain's last label is numeric");
    }
    Ok(())
}

/// Dot-separated words of `allowed` characters, none empty. `Err(Some(_))` for a dot
/// problem, `Err(None)` for a character not allowed.
fn dotted(text: &str, allowed: impl Fn(u8) -> bool) -> Result<(), Option<&'static str>> {
    if text.split('.').any(str::is_empty) {
        return Err(Some("empty label (a leading, trailing or double dot)"));
    }
    if !text.bytes().all(|b| b == b'.' || allowed(b)) {
        return Err(None);
    }
    Ok(())
}

/// What the MTA reported for the address (`{mail_addr}`, `{rcpt_addr}`), in a comparable
/// form. Postfix reports the address it resolved (a bare user name completed with
/// `@$myhostname`, the null sender as ""); Sendmail the user part of its mailer triple (the
/// whole address for a relay, the user name alone for local delivery), maybe with a final dot
/// or in angle brackets.
fn reported(value: &str) -> String {
    let value = value.trim();
    let value = value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value);
    value.trim_end_matches('.').to_ascii_lowercase()
}

/// The address the MTA will use: the raw argument checked by [`parse`], agreeing with what
/// the MTA reported for it (`None`: nothing reported, as from `check` or an MTA that does
/// not send the macro; the raw address, being plain, is then what every MTA makes of it).
///
/// The two agree when they are the same address, or when one of them is the other without
/// its domain (Postfix completes a bare user name; Sendmail reports a local user by name).
/// The address judged is the raw one, which then names the same mailbox. The error says why
/// the address is refused (the rules answer `553`).
pub fn as_the_mta_uses(
    raw: &str,
    reported_value: Option<&str>,
    role: Role,
) -> Result<EnvelopeAddress, &'static str> {
    let parsed = parse(raw)?;
    if parsed == EnvelopeAddress::Null && role == Role::Recipient {
        return Err("an empty address");
    }
    let Some(reported_value) = reported_value else {
        return Ok(parsed);
    };
    let mta = reported(reported_value);
    let local_of = |a: &str| a.rsplit_once('@').map_or(a.to_string(), |(l, _)| l.into());
    let agreed = match &parsed {
        // Sendmail may report the null sender by a name of its own; it queues `<>` whatever.
        EnvelopeAddress::Null => Some(EnvelopeAddress::Null)
            .filter(|_| mta.is_empty() || mta.eq_ignore_ascii_case("mailer-daemon") || mta == "<>"),
        EnvelopeAddress::Mailbox(address) => (mta == *address
            || (!mta.contains('@') && mta == local_of(address)))
        .then(|| parsed.clone()),
        // Postfix reports a bare user name completed with `@$myhostname`, but queues it with
        // `@$myorigin`: the report does not say where it goes, so it stays unqualified (and
        // the trust rules allow it only from the hub's own hosts).
        EnvelopeAddress::Unqualified(user) => (local_of(&mta) == *user
            && (mta == *user || matches!(parse(&mta), Ok(EnvelopeAddress::Mailbox(_)))))
        .then(|| parsed.clone()),
    };
    agreed.ok_or("the address the mail server made of it differs from the address given")
}

/// An address as the directory keys it: lower case, without the angle brackets of an SMTP
/// path.
pub fn normalize_address(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        // A root-anchored domain (`a@firm.co.uk.`) is the same domain: the MTA drops the dot
        // when it rewrites the address, so it must not dodge a lookup here.
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mailboxes() {
        for (raw, expected) in [
            (
                "<mary@smithchambers.cjsm.net>",
                "mary@smithchambers.cjsm.net",
            ),
            ("mary@smithchambers.cjsm.net", "mary@smithchambers.cjsm.net"),
            (
                "<Mary.Smith@SmithChambers.cjsm.net>",
                "mary.smith@smithchambers.cjsm.net",
            ),
            ("<o'brien+cases@firm.co.uk>", "o'brien+cases@firm.co.uk"),
            ("<a@xn--bcher-kva.example>", "a@xn--bcher-kva.example"),
            ("<a-b@a-1.b2.co.uk>", "a-b@a-1.b2.co.uk"),
        ] {
            assert_eq!(
                parse(raw),
                Ok(EnvelopeAddress::Mailbox(expected.into())),
                "{raw}"
            );
        }
        assert_eq!(parse("<>"), Ok(EnvelopeAddress::Null));
        assert_eq!(parse(""), Ok(EnvelopeAddress::Null));
        assert_eq!(
            parse("<Postmaster>"),
            Ok(EnvelopeAddress::Unqualified("postmaster".into()))
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let long_local = format!("<{}@x.net>", "a".repeat(65));
        let long_label = format!("<a@{}.net>", "b".repeat(64));
        let huge = "a".repeat(100_000);
        let cases: Vec<&str> = vec![
            // The examples.
            "<mary@smithchambers.cjsm.net(x)>",
            "<mary@smithchambers.cjsm.net (x)>",
            "<mary@smithchambers\\.cjsm.net>",
            "<mary@smith\\chambers.cjsm.net>",
            "<g:mary@smithchambers.cjsm.net;>",
            "<g: mary@smithchambers.cjsm.net;>",
            // Source routes, lists, more than one @.
            "<@a,@b:mary@smithchambers.cjsm.net>",
            "<@hub.example:mary@smithchambers.cjsm.net>",
            "<mary@smithchambers.cjsm.net,bob@x.net>",
            "<mary@evil.example@smithchambers.cjsm.net>",
            // Quoted local parts, whatever their content.
            "<\"mary\"@smithchambers.cjsm.net>",
            "<\"mary@smithchambers.cjsm.net\"@evil.example>",
            // Routing hacks.
            "<mary%smithchambers.cjsm.net@hub.example>",
            "<smithchambers.cjsm.net!mary>",
            "<smithchambers.cjsm.net!mary@hub.example>",
            // Dots and labels.
            "<mary@smithchambers.cjsm.net.>",
            "<mary@smithchambers..cjsm.net>",
            "<mary@.smithchambers.cjsm.net>",
            "<.mary@smithchambers.cjsm.net>",
            "<mary.@smithchambers.cjsm.net>",
            "<ma..ry@smithchambers.cjsm.net>",
            "<mary@smithchambers>",
            "<mary@-smith.cjsm.net>",
            "<mary@smith-.cjsm.net>",
            "<mary@smith_chambers.cjsm.net>",
            "<mary@1.2.3.4>",
            "<mary@>",
            "<@smithchambers.cjsm.net>",
            "<mary@[192.0.2.1]>",
            "<mary@[IPv6:2001:db8::1]>",
            // Brackets.
            "<mary@smithchambers.cjsm.net",
            "mary@smithchambers.cjsm.net>",
            "<<mary@smithchambers.cjsm.net>>",
            // Non-ASCII, controls, spaces.
            "<mary@smithchambers.cjsm.net\u{0}>",
            "<mary@smithchambers.cjsm.net\r\n>",
            "<mary@smithchambers.cjsm.net\t>",
            "< mary@smithchambers.cjsm.net>",
            "<märy@smithchambers.cjsm.net>",
            "<mary@smithchambers.cjsm.net\u{200b}>",
            "<mary@smіthchambers.cjsm.net>", // Cyrillic і
            &long_local,
            &long_label,
            &huge,
        ];
        for raw in cases {
            assert!(parse(raw).is_err(), "{raw:?}: {:?}", parse(raw));
        }
    }

    #[test]
    fn the_address_the_mta_reports_must_agree() {
        use EnvelopeAddress::*;
        let ok = |raw: &str, mta: Option<&str>, role| {
            as_the_mta_uses(raw, mta, role).map_err(|why| {
                crate::policy::not_plain(role, raw, why)
                    .reply()
                    .unwrap()
                    .to_string()
            })
        };
        let mary = "mary@smithchambers.cjsm.net";
        assert_eq!(
            ok("<Mary@SmithChambers.cjsm.net>", Some(mary), Role::Sender),
            Ok(Mailbox(mary.into()))
        );
        assert_eq!(
            ok(&format!("<{mary}>"), None, Role::Recipient),
            Ok(Mailbox(mary.into()))
        );
        // Sendmail: a trailing dot, or the user name alone for local delivery.
        assert_eq!(
            ok(
                &format!("<{mary}>"),
                Some(&format!("{mary}.")),
                Role::Recipient
            ),
            Ok(Mailbox(mary.into()))
        );
        assert_eq!(
            ok(&format!("<{mary}>"), Some("mary"), Role::Recipient),
            Ok(Mailbox(mary.into()))
        );
        // Postfix completes a bare user name (with another domain than it queues).
        assert_eq!(
            ok(
                "<postmaster>",
                Some("postmaster@hub.cjsm.net"),
                Role::Recipient
            ),
            Ok(Unqualified("postmaster".into()))
        );
        assert_eq!(ok("<>", Some(""), Role::Sender), Ok(Null));
        assert_eq!(ok("<>", Some("<>"), Role::Sender), Ok(Null));
        assert_eq!(ok("<>", None, Role::Sender), Ok(Null));

        for (raw, mta, role, status) in [
            ("<bob@firm.co.uk>", Some(mary), Role::Recipient, "553 5.1.3"),
            ("<bob@firm.co.uk>", Some("alice"), Role::Sender, "553 5.1.7"),
            (
                "<postmaster>",
                Some("root@hub.cjsm.net"),
                Role::Sender,
                "553 5.1.7",
            ),
            (
                "<postmaster>",
                Some("postmaster@hub..net"),
                Role::Sender,
                "553 5.1.7",
            ),
            ("<>", Some(mary), Role::Sender, "553 5.1.7"),
            ("<>", None, Role::Recipient, "553 5.1.3"),
            (
                "<mary@smithchambers.cjsm.net(x)>",
                Some(mary),
                Role::Sender,
                "553 5.1.7",
            ),
        ] {
            let got = ok(raw, mta, role).unwrap_err();
            assert!(got.starts_with(status), "{raw} {mta:?}: {got}");
        }
    }

    #[test]
    fn domains() {
        let d = |text: &str| Domain::new(text).unwrap();
        assert_eq!(d("Firm.Co.UK."), d("firm.co.uk"));
        assert_eq!(Domain::new(" . "), None);
        assert_eq!(Domain::of("a@Firm.co.uk"), Some(d("firm.co.uk")));
        assert_eq!(Domain::of("postmaster"), None);
        // (domain, parent, within)
        let cases = [
            ("pnn.police.uk", "pnn.police.uk", true),
            ("met.pnn.police.uk", "pnn.police.uk", true),
            ("notpnn.police.uk", "pnn.police.uk", false),
            ("pnn.police.uk.evil.com", "pnn.police.uk", false),
            ("police.uk", "pnn.police.uk", false),
        ];
        for (domain, parent, within) in cases {
            assert_eq!(
                d(domain).is_within(&d(parent)),
                within,
                "{domain} in {parent}"
            );
        }
        assert_eq!(
            d("firm.co.uk.cjsm.net").less(&d("cjsm.net")),
            Some(d("firm.co.uk"))
        );
        assert_eq!(d("cjsm.net").less(&d("cjsm.net")), None);
        assert_eq!(
            d("firm.co.uk").under(&d("cjsm.net")),
            d("firm.co.uk.cjsm.net")
        );
        assert_eq!(d("xcjsm.net").less(&d("cjsm.net")), None);
        assert_eq!(
            with_suffix("alice@firm.co.uk.", ".cjsm.net."),
            "alice@firm.co.uk.cjsm.net"
        );
        assert_eq!(with_suffix("postmaster", "cjsm.net"), "postmaster");
        assert_eq!(with_suffix("alice@firm.co.uk", ""), "alice@firm.co.uk");
    }
}
