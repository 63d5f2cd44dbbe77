//! The manual pages in man/, kept true by tests: cjsm-milter(8) is generated from the clap
//! definitions (so an option cannot be added, renamed or reworded without the page following),
//! and cjsm-milter.toml(5), written by hand, must document every key of the example config and
//! no other, each with the default the example gives it. Both must render with `man` without
//! a warning.
//!
//! After changing a command, an option or its help text, regenerate cjsm-milter(8) with:
//!
//! ```sh
//! CJSM_REGENERATE_MAN=1 cargo test --bin cjsm-milter cjsm_milter_8_is_generated
//! ```

use clap::CommandFactory as _;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

/// The hand-written prose of cjsm-milter(8) before the generated list of commands.
const DESCRIPTION: &str = r#".PP
\fBcjsm\-milter\fR is a mail filter (milter) for Postfix and Sendmail that guards a secure\-email
hub in the style of the UK Criminal Justice Secure eMail service (CJSM).
It reads the protective marking of every message (OFFICIAL, OFFICIAL\-SENSITIVE, RESTRICTED,
SECRET, the Australian and Microsoft label formats), decides whether each recipient may receive
it over a secure route, and accepts it (adding its own marking header), rejects it
(550 5.7.1), or tempfails it (451 4.7.1), per recipient where it can.
It fails closed: any internal error, a lost directory or a missed deadline is a tempfail, so
the MTA keeps the mail and retries.
.PP
The same program runs the daemon (\fBrun\fR), checks a message offline exactly as the daemon
would (\fBcheck\fR), validates a configuration file (\fBconfig check\fR), and administers the
Secure eMail Directory of organisations, users and S/MIME certificates (\fBdirectory\fR) and
its audit trail (\fBaudit\fR).
The directory lives in a SQLite database under \fI/var/lib/cjsm\-milter\fR or in Redis, as
\fBcjsm\-milter.toml\fR(5) sets; run the directory commands as the service user (run as
root, they keep the embedded store's files owned by it):
.PP
.RS 4
.nf
sudo \-u cjsm\-milter cjsm\-milter \-\-config /etc/cjsm\-milter/cjsm\-milter.toml directory org list
.fi
.RE
.PP
Without \fB\-\-config\fR every command uses the built-in CJSM defaults, which are the values
of the example configuration.
"#;

/// The hand-written sections after the generated list of commands.
const TRAILER: &str = r#".SH SIGNALS
.TP
.B SIGHUP
Re-reads the configuration file.
A file that does not load is refused: the error (file, line, key) is logged and the running
configuration stays.
Each SMTP session keeps the configuration it started with.
The \fB[milter]\fR socket settings, \fB[store]\fR, \fB[log]\fR, \fB[metrics]\fR and the
\fB[socketmap]\fR address apply only after a restart (the log says so).
.TP
.BR SIGTERM ", " SIGINT
Drain: new MTA connections are closed at once (the MTA falls back to its
\fBmilter_default_action\fR), messages in flight get up to 30 seconds to finish, the audit
queue up to 5 seconds to be written; then the daemon exits 0.
.SH EXIT STATUS
.TP
.B 0
Success, or \fB\-\-help\fR and \fB\-\-version\fR.
.TP
.B 2
Bad usage, a configuration file that does not load, unreadable input, a refused directory
change, or an internal error; one line on standard error says which:
\fBcjsm\-milter: error: \fR\fIwhat\fR.
.SH FILES
.TP
.I /etc/cjsm\-milter/cjsm\-milter.toml
The configuration, given with \fB\-\-config\fR; see \fBcjsm\-milter.toml\fR(5).
The Debian package installs the example configuration there, with every key at its default.
.TP
.I /var/lib/cjsm\-milter
The embedded store (\fB[store] path\fR): the SQLite database \fIdirectory.sqlite3\fR (with
its \fI\-wal\fR and \fI\-shm\fR files; the audit trail is in it), owned by the service user
\fBcjsm\-milter\fR, the directory mode 0750, the files 0640.
A \fIdirectory.json\fR there is an earlier version's store: the daemon and the directory
commands refuse to start beside it until \fBcjsm\-milter directory migrate\fR has moved it
into the database.
.TP
.I /usr/lib/systemd/system/cjsm\-milter.service
The systemd unit of the Debian package.
It is not enabled on installation: set up the MTA first, then
\fBsystemctl enable \-\-now cjsm\-milter\fR.
Reload with \fBsystemctl reload cjsm\-milter\fR (SIGHUP).
.TP
.I /usr/share/cjsm\-milter/postfix/README.md
.TQ
.I /usr/share/cjsm\-milter/sendmail/README.md
The Postfix and Sendmail kits: the configuration fragments and every step to put the milter
in front of the MTA.
.TP
.I /usr/share/cjsm\-milter/dashboards
Grafana dashboards and Prometheus alerting rules for the \fB[metrics]\fR endpoint.
.SH EXAMPLES
Validate a configuration, then check a message offline as a hub user sending over TLS:
.PP
.RS 4
.nf
cjsm\-milter config check /etc/cjsm\-milter/cjsm\-milter.toml
cjsm\-milter \-\-config /etc/cjsm\-milter/cjsm\-milter.toml check \e
    \-\-from alice@smithchambers.cjsm.net \-\-auth alice@smithchambers.cjsm.net \e
    \-\-tls\-version TLSv1.3 \-\-rcpt dc.jones@met.pnn.police.uk message.eml
.fi
.RE
.PP
Suspend a user; every milter sees it within a second:
.PP
.RS 4
.nf
cjsm\-milter \-\-config /etc/cjsm\-milter/cjsm\-milter.toml \e
    directory user suspend alice@smithchambers.cjsm.net
.fi
.RE
.SH SEE ALSO
\fBcjsm\-milter.toml\fR(5), \fBpostconf\fR(5), \fBsendmail\fR(8), \fBsystemctl\fR(1)
"#;

/// cjsm-milter(8): the generated name, synopsis, options and commands around the prose above.
fn render_cjsm_milter_8() -> String {
    let mut cli = crate::Cli::command().disable_help_subcommand(true);
    cli.build();
    let version = cli
        .get_version()
        .expect("the CLI has a version")
        .to_string();
    let man = Man::new(cli.clone());
    // clap_mangen's title line leaves an empty date unquoted, which shifts the source into
    // the date's place: the title is written here. No date, so the page cannot go stale.
    let mut page = format!(
        "{AQ_STRING}.TH CJSM\\-MILTER 8 \"\" \"cjsm\\-milter {version}\" \"System Administration\"\n"
    );
    page.push_str(&rendered(&man, Man::render_name_section, true));
    page.push_str(&rendered(&man, Man::render_synopsis_section, true));
    page.push_str(&rendered(&man, Man::render_description_section, true));
    page.push_str(DESCRIPTION);
    page.push_str(&rendered(&man, Man::render_options_section, true));
    page.push_str(".SH COMMANDS\n");
    for command in cli.get_subcommands() {
        render_commands(command, &mut page);
    }
    page.push_str(TRAILER);
    page
}

/// The definition clap_mangen writes before every section it renders (the apostrophe
/// glyph), written once at the top of the page instead.
const AQ_STRING: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// One section as clap_mangen renders it, without its repeated definition of `\*(Aq`, and
/// without its `.SH` heading unless `keep_heading`.
fn rendered(
    man: &Man,
    section: fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>,
    keep_heading: bool,
) -> String {
    let mut out = Vec::new();
    section(man, &mut out).expect("rendering to memory");
    let out = String::from_utf8(out).expect("clap_mangen writes UTF-8");
    let out = out.replacen(AQ_STRING, "", 1);
    assert!(
        !out.contains(".ds Aq"),
        "clap_mangen's section preamble changed: {out}"
    );
    // An option without help text leaves an empty line, which roff prints as a blank line.
    out.lines()
        .filter(|line| !line.is_empty() && (keep_heading || !line.starts_with(".SH ")))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// One subsection per command that does something (the leaves of the tree), depth first in
/// the order of the help output: its purpose, its synopsis and its options. The global
/// --config and every --help are documented once, under OPTIONS.
fn render_commands(command: &clap::Command, page: &mut String) {
    if command.is_hide_set() {
        return;
    }
    if command.has_subcommands() {
        for sub in command.get_subcommands() {
            render_commands(sub, page);
        }
        return;
    }
    let name = command
        .get_bin_name()
        .expect("built commands have a bin name");
    let mut leaf = command.clone();
    for global in ["config", "help"] {
        if leaf.get_arguments().any(|a| a.get_id() == global) {
            leaf = leaf.mut_arg(global, |a| a.hide(true));
        }
    }
    page.push_str(&format!(".SS \"{}\"\n", name.replace('-', "\\-")));
    if let Some(about) = leaf.get_long_about().or_else(|| leaf.get_about()) {
        let mut text = Roff::default();
        text.text([roman(about.to_string())]);
        page.push_str(&text.to_roff());
    }
    page.push_str(".PP\n");
    let man = Man::new(leaf);
    page.push_str(&rendered(&man, Man::render_synopsis_section, false));
    page.push_str(&rendered(&man, Man::render_options_section, false));
}

/// Every key of the example config as a dotted path: the keys it sets, and the ones it shows
/// only in comments (`# socket_mode = "0660"`, `# [[marking.levels]]`), which are keys too.
fn example_keys() -> BTreeSet<String> {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cjsm-milter.example.toml"),
    )
    .expect("reading cjsm-milter.example.toml");
    let mut keys = BTreeSet::new();
    let mut table = String::new();
    for line in example.lines() {
        let line = line.trim();
        let (commented, line) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        if let Some(name) = line
            .strip_prefix("[[")
            .and_then(|l| l.strip_suffix("]]"))
            .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        {
            if !commented || name.contains('.') {
                table = name.to_string();
                keys.insert(table.clone());
            }
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let is_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        // A msip_labels GUID is quoted: an example entry, not a key.
        if is_key {
            keys.insert(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    // The example's uncommented keys must all have been found: parse it as TOML to be sure.
    let parsed: toml::Table = example.parse().expect("the example config is TOML");
    let mut set = BTreeSet::new();
    collect_keys("", &parsed, &mut set);
    let missed: Vec<_> = set.difference(&keys).collect();
    assert!(missed.is_empty(), "keys the line reader missed: {missed:?}");
    keys
}

fn collect_keys(prefix: &str, table: &toml::Table, keys: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => {
                keys.insert(path.clone());
                if key != "msip_labels" {
                    collect_keys(&path, inner, keys);
                }
            }
            _ => {
                keys.insert(path);
            }
        }
    }
}

/// The keys cjsm-milter.toml(5) documents in its SETTINGS section, each with the text of its
/// entry (lines joined by spaces): each table is a `.SS [name]` (or `[[name]]`) subsection,
/// each key a `.TP` entry whose tag line is `.B name`.
fn documented_keys(page: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    let mut in_settings = false;
    let mut table = String::new();
    let mut entry: Option<String> = None;
    let mut after_tp = false;
    for line in page.lines() {
        let ends_entry = line.starts_with(".SH ") || line.starts_with(".SS ") || line == ".TP";
        if ends_entry {
            entry = None;
        }
        if let Some(heading) = line.strip_prefix(".SH ") {
            in_settings = heading.trim_matches('"') == "SETTINGS";
            table.clear();
        } else if !in_settings {
        } else if let Some(heading) = line.strip_prefix(".SS ") {
            let heading = heading.trim_matches('"');
            let name = heading
                .strip_prefix("[[")
                .and_then(|h| h.strip_suffix("]]"))
                .or_else(|| heading.strip_prefix('[').and_then(|h| h.strip_suffix(']')))
                .unwrap_or_else(|| panic!("a SETTINGS subsection names a table: {line}"));
            table = name.replace("\\-", "-");
            keys.insert(table.clone(), String::new());
        } else if after_tp && let Some(key) = line.strip_prefix(".B ") {
            let key = key.trim_matches('"').replace("\\-", "-");
            let key = if table.is_empty() {
                key
            } else {
                format!("{table}.{key}")
            };
            keys.insert(key.clone(), String::new());
            entry = Some(key);
        } else if let Some(key) = &entry {
            let text = keys.get_mut(key).expect("the entry's key was inserted");
            text.push_str(line);
            text.push(' ');
        }
        after_tp = line == ".TP";
    }
    keys
}

/// A value as the page writes it: TOML, with roff's `\-` for every minus sign.
fn as_written(value: &toml::Value) -> String {
    value.to_string().replace('-', "\\-")
}

fn read_page(name: &str) -> String {
    let path = man_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `man` renders the page without a warning (groff's and man's own).
fn assert_renders(name: &str) {
    let path = man_dir().join(name);
    let output = std::process::Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(&path)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .unwrap_or_else(|e| panic!("running man (install man-db; scripts/test.sh does): {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "man -l {}: {}\n{stderr}",
        path.display(),
        output.status
    );
    assert!(
        !output.stdout.is_empty(),
        "man -l {} printed nothing",
        path.display()
    );
}

#[test]
fn cjsm_milter_8_is_generated_from_the_cli() {
    let generated = render_cjsm_milter_8();
    let path = man_dir().join("cjsm-milter.8");
    if std::env::var_os("CJSM_REGENERATE_MAN").is_some() {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    let committed = read_page("cjsm-milter.8");
    assert!(
        committed == generated,
        "man/cjsm-milter.8 is not what the CLI generates; regenerate it with \
         `CJSM_REGENERATE_MAN=1 cargo test --bin cjsm-milter cjsm_milter_8_is_generated` and commit it"
    );
}

#[test]
fn cjsm_milter_8_documents_every_command_and_option() {
    let page = read_page("cjsm-milter.8");
    for command in [
        "cjsm\\-milter run",
        "cjsm\\-milter check",
        "cjsm\\-milter config check",
        "cjsm\\-milter directory org apply",
        "cjsm\\-milter directory cert expiring",
        "cjsm\\-milter audit search",
    ] {
        assert!(
            page.contains(&format!(".SS \"{command}\"")),
            "no subsection for {command}"
        );
    }
    for option in [
        "\\-\\-config",
        "\\-\\-rcpt",
        "\\-\\-client\\-addr",
        "\\-\\-base\\-dn",
    ] {
        assert!(page.contains(option), "{option} is not documented");
    }
}

#[test]
fn cjsm_milter_toml_5_documents_every_key_of_the_example_and_no_other() {
    let page = read_page("cjsm-milter.toml.5");
    let documented: BTreeSet<String> = documented_keys(&page).into_keys().collect();
    let example = example_keys();
    let undocumented: Vec<_> = example.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "keys of cjsm-milter.example.toml that man/cjsm-milter.toml.5 does not document: \
         {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&example).collect();
    assert!(
        unknown.is_empty(),
        "keys man/cjsm-milter.toml.5 documents that cjsm-milter.example.toml does not have: \
         {unknown:?}"
    );
}

#[test]
fn cjsm_milter_toml_5_gives_the_default_of_every_key_the_example_sets() {
    let documented = documented_keys(&read_page("cjsm-milter.toml.5"));
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cjsm-milter.example.toml"),
    )
    .expect("reading cjsm-milter.example.toml");
    let example: toml::Table = example.parse().expect("the example config is TOML");
    let mut checked = 0;
    for (table, value) in &example {
        let entries: Vec<(String, &toml::Value)> = match value {
            toml::Value::Table(keys) => keys
                .iter()
                .map(|(key, value)| (format!("{table}.{key}"), value))
                .collect(),
            value => vec![(table.clone(), value)],
        };
        for (key, value) in entries {
            // Long lists (the everyday phrases) are left to the example; tables are not values.
            let long_list = value.as_array().is_some_and(|list| list.len() > 8);
            if long_list || value.is_table() {
                continue;
            }
            let text = documented
                .get(&key)
                .unwrap_or_else(|| panic!("{key} is not documented"));
            assert!(
                text.contains(&as_written(value)),
                "the entry for {key} does not give its default {}: {text}",
                as_written(value)
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} defaults checked");
}

#[test]
fn the_pages_render_with_man() {
    assert_renders("cjsm-milter.8");
    assert_renders("cjsm-milter.toml.5");
}
