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

/// A key and a certificate for `cn` signed by the CA, with `extensions` (an openssl config
/// section's lines).
fn issue(dir: &Path, name: &str, cn: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
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
            &format!("/O=Test/CN={cn}"),
        ],
    );
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

impl Pki {
    pub fn create(dir: &Path) -> Pki {
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
                "2",
                "-subj",
                &format!("/O=Test/CN={CA_CN}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let server = |dns: &str| {
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:{dns}\n"
            )
        };
        issue(dir, "hub", "mx.test.local", &server("mx.test.local"));
        issue(dir, "firm-client", FIRM_CLIENT_CN, &server(FIRM_CLIENT_CN));
        issue(
            dir,
            "firm-server",
            "mx.firm.co.uk",
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
        }
    }
}
