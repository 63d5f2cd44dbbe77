//! `export --format ldif` read back by real LDIF readers, not string compares: python-ldap's
//! `ldif` module (Debian package python3-ldap, which also parses each DN with libldap's RFC 4514
//! parser) and OpenLDAP's `ldapadd -n` (Debian package ldap-utils), which parses the file
//! without contacting any server. A missing reader fails the test, naming the package.

mod common;

use cjsm_milter::directory::export::to_ldif;
use cjsm_milter::directory::model::{ConnectionType, Organisation, User, UserState};
use common::fixtures::{org, user};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Debian's interpreter: python3-ldap installs into its dist-packages, which another python3
/// earlier on PATH (pyenv, a venv) would not see.
const PYTHON: &str = "/usr/bin/python3";

const BASE_DN: &str = "ou=People,dc=example,dc=org";

/// Reads the LDIF file named by argv[1] with python-ldap and prints its entries as JSON.
const READER: &str = r#"
import json, sys
try:
    import ldap.dn, ldif
except ImportError as e:
    print("python3-ldap is not installed (%s)" % e, file=sys.stderr)
    sys.exit(3)
with open(sys.argv[1], "rb") as f:
    parser = ldif.LDIFRecordList(f)
    parser.parse()
out = {"version": parser.version, "entries": []}
for dn, attrs in parser.all_records:
    out["entries"].append({
        "dn": dn,
        "rdns": [[[t, v] for (t, v, _) in rdn] for rdn in ldap.dn.str2dn(dn)],
        "attrs": {k: [v.decode("utf-8") for v in vs] for k, vs in attrs.items()},
    })
print(json.dumps(out))
"#;

const LONG_TOWN: &str = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch \
                         (Ynys Môn), Gwynedd, Cymru — a very long town name indeed";
const LONG_BUSINESS: &str = "Barristers' chambers, solicitors' practices and other \
                             criminal justice practitioners in the north of England";

/// What an exported entry must read back as: the `mail` RDN value and the attributes.
type Expected = (&'static str, Vec<(&'static str, Vec<&'static str>)>);

/// The directory the tests export, and what each exported entry must read back as.
fn fixture() -> (Vec<User>, Vec<Organisation>, Vec<Expected>) {
    let orgs = vec![
        Organisation {
            name: "Smith & Jones, Solicitors".into(),
            connection: ConnectionType::Server,
            ..org("smith-llp", &["firm.co.uk"])
        },
        Organisation {
            name: "Siambrau Gŵyr".into(),
            ..org("smith-chambers", &["smithchambers.cjsm.net"])
        },
    ];
    // What the export writes of a user: address, organisation, names, town and business.
    let person = |[address, org, first, last, town, business]: [&str; 6]| User {
        first_name: first.into(),
        last_name: last.into(),
        town: town.into(),
        business_type: business.into(),
        ..user(address, org)
    };
    let dave = ["dave@firm.co.uk.cjsm.net", "smith-llp", "Dave", "D", "", ""];
    #[rustfmt::skip]
    let users = vec![
        person(["bob@firm.co.uk.cjsm.net", "smith-llp", "Bob", "Jones", "Leeds", LONG_BUSINESS]),
        User { state: UserState::Suspended, ..person(dave) },
        person(["alice+cps@firm.co.uk.cjsm.net", "smith-llp", "Siân", "Ó Briain", LONG_TOWN, "Solicitors"]),
        person(["carol@smithchambers.cjsm.net", "smith-chambers", "Carol", "", "", "<Barristers>"]),
    ];
    let classes = vec!["top", "person", "organizationalPerson", "inetOrgPerson"];
    let expected = vec![
        (
            "alice+cps@firm.co.uk.cjsm.net",
            vec![
                ("objectClass", classes.clone()),
                ("cn", vec!["Siân Ó Briain"]),
                ("sn", vec!["Ó Briain"]),
                ("givenName", vec!["Siân"]),
                ("mail", vec!["alice+cps@firm.co.uk.cjsm.net"]),
                ("o", vec!["Smith & Jones, Solicitors"]),
                ("l", vec![LONG_TOWN]),
                ("businessCategory", vec!["Solicitors"]),
            ],
        ),
        (
            "bob@firm.co.uk.cjsm.net",
            vec![
                ("objectClass", classes.clone()),
                ("cn", vec!["Bob Jones"]),
                ("sn", vec!["Jones"]),
                ("givenName", vec!["Bob"]),
                ("mail", vec!["bob@firm.co.uk.cjsm.net"]),
                ("o", vec!["Smith & Jones, Solicitors"]),
                ("l", vec!["Leeds"]),
                ("businessCategory", vec![LONG_BUSINESS]),
            ],
        ),
        (
            "carol@smithchambers.cjsm.net",
            vec![
                ("objectClass", classes),
                ("cn", vec!["Carol"]),
                ("sn", vec!["carol"]),
                ("givenName", vec!["Carol"]),
                ("mail", vec!["carol@smithchambers.cjsm.net"]),
                ("o", vec!["Siambrau Gŵyr"]),
                ("businessCategory", vec!["<Barristers>"]),
            ],
        ),
    ];
    (users, orgs, expected)
}

fn write_export() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let (users, orgs, _) = fixture();
    let ldif = to_ldif(&users, &orgs, BASE_DN);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.ldif");
    std::fs::write(&path, &ldif).unwrap();
    (dir, path, ldif)
}

/// What the export must look like on the wire for the readers to be tested on the hard parts.
fn assert_exercises_encodings(ldif: &str) {
    assert!(ldif.is_ascii(), "LDIF output must be ASCII:\n{ldif}");
    assert!(ldif.lines().all(|l| l.len() <= 76), "{ldif}");
    assert!(ldif.contains("\ncn:: "), "a base64 name:\n{ldif}");
    assert!(ldif.contains("\nl:: "), "a base64 town:\n{ldif}");
    assert!(
        ldif.contains("\nbusinessCategory:: "),
        "a base64 `<` value:\n{ldif}"
    );
    let lines: Vec<&str> = ldif.lines().collect();
    let plain_folded = lines
        .windows(2)
        .any(|w| w[0].starts_with("businessCategory: ") && w[1].starts_with(' '));
    let base64_folded = lines
        .windows(2)
        .any(|w| w[0].starts_with("l:: ") && w[1].starts_with(' '));
    assert!(plain_folded && base64_folded, "folded values:\n{ldif}");
}

#[test]
fn python_ldap_reads_the_export() {
    let (_dir, path, ldif) = write_export();
    assert_exercises_encodings(&ldif);
    let parsed = run_python_reader(&path);

    assert_eq!(parsed["version"], 1, "{parsed}");
    let entries = parsed["entries"].as_array().expect("entries");
    let (_, _, expected) = fixture();
    assert_eq!(entries.len(), expected.len(), "{parsed}");
    for (entry, (mail, attrs)) in entries.iter().zip(&expected) {
        // The DN, as libldap's RFC 4514 parser reads it: `+` in the address came back.
        let rdns: Vec<Vec<(String, String)>> = entry["rdns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rdn| {
                rdn.as_array()
                    .unwrap()
                    .iter()
                    .map(|ava| {
                        (
                            ava[0].as_str().unwrap().to_string(),
                            ava[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .collect();
        let want_rdns: Vec<Vec<(String, String)>> = [
            ("mail", *mail),
            ("ou", "People"),
            ("dc", "example"),
            ("dc", "org"),
        ]
        .iter()
        .map(|(t, v)| vec![(t.to_string(), v.to_string())])
        .collect();
        assert_eq!(rdns, want_rdns, "{entry}");

        let got: BTreeMap<String, Vec<String>> =
            serde_json::from_value(entry["attrs"].clone()).unwrap();
        let want: BTreeMap<String, Vec<String>> = attrs
            .iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect();
        assert_eq!(got, want, "{mail}");
    }
}

#[test]
fn ldapadd_dry_run_reads_the_export() {
    let (_dir, path, ldif) = write_export();
    assert_exercises_encodings(&ldif);
    let output = Command::new("ldapadd")
        .args(["-n", "-v", "-f"])
        .arg(&path)
        // Read no ldap.conf or ~/.ldaprc: `-n` never connects, and nothing local should matter.
        .env("LDAPNOINIT", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run ldapadd ({e}): this test needs the Debian package ldap-utils \
                 (apt-get install ldap-utils)"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ldapadd -n refused the export ({}):\n{stderr}\n{stdout}\n{ldif}",
        output.status
    );
    let added: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("!adding new entry \"")?.strip_suffix('"'))
        .collect();
    assert_eq!(
        added,
        [
            "mail=alice\\+cps@firm.co.uk.cjsm.net,ou=People,dc=example,dc=org",
            "mail=bob@firm.co.uk.cjsm.net,ou=People,dc=example,dc=org",
            "mail=carol@smithchambers.cjsm.net,ou=People,dc=example,dc=org",
        ],
        "{stdout}"
    );
    // `-v` prints each ASCII value (one per line, after a tab), unfolded; others as a byte count.
    let values: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('\t'))
        .collect();
    assert!(values.contains(&LONG_BUSINESS), "{stdout}");
    assert!(values.contains(&"Smith & Jones, Solicitors"), "{stdout}");
    assert!(values.contains(&"<Barristers>"), "{stdout}");
    let non_ascii = |s: &str| format!("NOT ASCII ({} bytes)", s.len());
    assert!(
        values.contains(&non_ascii("Siân Ó Briain").as_str()),
        "{stdout}"
    );
    assert!(values.contains(&non_ascii(LONG_TOWN).as_str()), "{stdout}");
}

fn run_python_reader(path: &Path) -> Value {
    let output = Command::new(PYTHON)
        .arg("-c")
        .arg(READER)
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {PYTHON} ({e}): this test needs the Debian packages python3 and \
                 python3-ldap (apt-get install python3-ldap)"
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!(
            "{PYTHON} has no python-ldap: this test needs the Debian package python3-ldap \
             (apt-get install python3-ldap): {stderr}"
        );
    }
    assert!(
        output.status.success(),
        "python-ldap's LDIF reader refused the export ({}):\n{stderr}",
        output.status
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "reader output is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
