//! A private CA and the certificates the MTA tests need, made with the openssl CLI: the hub's
//! server certificate, an organisation server's client certificate, and that server's own
//! server certificate (for the hub's verified delivery to it).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    pub ca: PathBuf,
    pub hub_cert: PathBuf,
    pub hub_key: PathBuf,
    /// The organisation's mail server as a client of the hub (CN mail.firm.co.uk).
    pub firm_client_cert: PathBuf,
    pub firm_client_key: PathBuf,
    /// The same server receiving from the hub (CN mx.firm.co.uk).
    pub firm_server_cert: PathBuf,
    pub firm_server_key: PathBuf,
    /// SHA-256 fingerprint of the client certificate, as `directory org apply` takes it.
    pub firm_client_fingerprint: String,
    /// A client certificate for the same CN whose organisation name holds `/CN=`.
    pub firm_client_odd_o_cert: PathBuf,
    pub firm_client_odd_o_key: PathBuf,
}

pub const CA_CN: &str = "CJSM Test Client CA";
pub const FIRM_CLIENT_CN: &str = "mail.firm.co.uk";

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new RSA key `NAME.key` and a certificate request `NAME.csr` for `subject` (openssl's
/// `-subj` form: `/O=Test/CN=cn`).
fn key_and_request(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ],
    );
}

/// A key and a certificate for `subject` signed by the CA, with `extensions` (an openssl
/// config section's lines).
fn issue(dir: &Path, name: &str, subject: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    key_and_request(dir, name, subject);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// A self-signed CA `ca.crt` / `ca.key` in `dir` named `cn`, valid for `days`.
fn new_ca(dir: &Path, cn: &str, days: u32) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            &days.to_string(),
            "-subj",
            &format!("/O=Test/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A private CA for a TLS-only Redis: its server certificate (for 127.0.0.1) and a client
/// certificate for mutual TLS. The keys are private to their owner (mode 0600), as the
/// milter wants a key file.
pub struct RedisPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl RedisPki {
    pub fn create(dir: &Path, ca_cn: &str) -> RedisPki {
        use std::os::unix::fs::PermissionsExt;
        new_ca(dir, ca_cn, 2);
        issue(
            dir,
            "redis-server",
            "/O=Test/CN=127.0.0.1",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
        );
        issue(
            dir,
            "redis-client",
            "/O=Test/CN=cjsm-milter",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        for key in ["ca.key", "redis-server.key", "redis-client.key"] {
            std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        RedisPki {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("redis-server.crt"),
            server_key: dir.join("redis-server.key"),
            client_cert: dir.join("redis-client.crt"),
            client_key: dir.join("redis-client.key"),
        }
    }
}

impl Pki {
    pub fn create(dir: &Path) -> Pki {
        new_ca(dir, CA_CN, 2);
        let server = |dns: &str| {
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:{dns}\n"
            )
        };
        issue(
            dir,
            "hub",
            "/O=Test/CN=mx.test.local",
            &server("mx.test.local"),
        );
        issue(
            dir,
            "firm-client",
            &format!("/O=Test/CN={FIRM_CLIENT_CN}"),
            &server(FIRM_CLIENT_CN),
        );
        // The same server's name, with an O value that reads like a CN in a one-line DN
        // (`/O=Test/CN=evil.example/CN=mail.firm.co.uk`): ambiguous unless the CN is read alone.
        issue(
            dir,
            "firm-client-odd-o",
            &format!("/O=Test\\/CN=evil.example/CN={FIRM_CLIENT_CN}"),
            &server(FIRM_CLIENT_CN),
        );
        issue(
            dir,
            "firm-server",
            "/O=Test/CN=mx.firm.co.uk",
            &server("mx.firm.co.uk"),
        );
        let fingerprint = openssl(
            dir,
            &[
                "x509",
                "-in",
                "firm-client.crt",
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
        );
        let fingerprint = fingerprint
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_ascii_lowercase();
        // Readable by the MTAs' unprivileged processes (the keys too: a throwaway test CA).
        for entry in std::fs::read_dir(dir).unwrap() {
            use std::os::unix::fs::PermissionsExt;
            let path = entry.unwrap().path();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        Pki {
            ca: dir.join("ca.crt"),
            hub_cert: dir.join("hub.crt"),
            hub_key: dir.join("hub.key"),
            firm_client_cert: dir.join("firm-client.crt"),
            firm_client_key: dir.join("firm-client.key"),
            firm_server_cert: dir.join("firm-server.crt"),
            firm_server_key: dir.join("firm-server.key"),
            firm_client_fingerprint: fingerprint,
            firm_client_odd_o_cert: dir.join("firm-client-odd-o.crt"),
            firm_client_odd_o_key: dir.join("firm-client-odd-o.key"),
        }
    }
}

/// A private CA issuing S/MIME certificates with chosen dates, key usage and address (with
/// `openssl ca`, which can backdate).
pub struct SmimeCa {
    pub dir: PathBuf,
}

/// A certificate's validity: from now for some days, or a fixed range (`YYMMDDHHMMSSZ`).
pub enum Dates {
    Days(u32),
    Range(&'static str, &'static str),
}

impl SmimeCa {
    pub fn create(dir: &Path) -> SmimeCa {
        std::fs::create_dir_all(dir.join("newcerts")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndir = .\ndatabase = index.txt\nnew_certs_dir = newcerts\n\
             serial = serial\ndefault_md = sha256\npolicy = anything\nemail_in_dn = no\n\
             unique_subject = no\ncopy_extensions = none\n[anything]\ncommonName = optional\n\
             emailAddress = optional\norganizationName = optional\n",
        )
        .unwrap();
        new_ca(dir, "Test SMIME CA", 30);
        SmimeCa {
            dir: dir.to_path_buf(),
        }
    }

    /// A key and a certificate for `email` (or none) with this key usage, e.g.
    /// `keyEncipherment` or `digitalSignature`. Returns (certificate, key).
    pub fn issue(
        &self,
        name: &str,
        email: Option<&str>,
        key_usage: &str,
        dates: Dates,
    ) -> (PathBuf, PathBuf) {
        let dir = &self.dir;
        let san = email.map_or(String::new(), |e| format!("subjectAltName=email:{e}\n"));
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!(
                "[ext]\nbasicConstraints=CA:FALSE\nkeyUsage={key_usage}\n\
                 extendedKeyUsage=emailProtection\n{san}"
            ),
        )
        .unwrap();
        key_and_request(dir, name, &format!("/O=Test/CN={name}"));
        let mut args: Vec<String> = [
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert",
            "ca.crt", "-extfile",
        ]
        .map(String::from)
        .to_vec();
        args.extend([
            format!("{name}.ext"),
            "-extensions".into(),
            "ext".into(),
            "-in".into(),
            format!("{name}.csr"),
            "-out".into(),
            format!("{name}.crt"),
        ]);
        match dates {
            Dates::Days(days) => args.extend(["-days".into(), days.to_string()]),
            Dates::Range(start, end) => args.extend([
                "-startdate".into(),
                start.into(),
                "-enddate".into(),
                end.into(),
            ]),
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(dir, &refs);
        (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        )
    }
}
