//! `cjsm-milter dovecot-auth`: Dovecot's checkpassword program, so that a mailbox user signs in
//! to mail (IMAP, and SMTP AUTH through Dovecot SASL) with the website's password.
//!
//! The checkpassword interface: Dovecot writes `login\0password\0` (and a timestamp) to file
//! descriptor 3 and closes it. Granted, the program executes the rest of its arguments (the
//! reply helper Dovecot names) with `USER` set to the login as the directory spells it;
//! refused, it exits 1; when it cannot tell (the store unreachable, a bad config, anything
//! unexpected) it exits 111, a temporary failure, so that nobody is let in or turned away
//! because of an outage. The decision itself is [`accounts::mail_login`]; one line per attempt
//! goes to standard error, which Dovecot writes to its log. The password never does.

use cjsm_milter::clock::now_unix;
use cjsm_milter::store::{self, Access};
use cjsm_milter::web::accounts::{self, MailLogin};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::Path;

/// Dovecot's descriptor for the login and password.
const CREDENTIALS_FD: i32 = 3;
/// Login, password and timestamp are far shorter; anything longer is refused unread.
const MAX_INPUT: usize = 1024;
/// A login is an e-mail address (at most 254 characters); longer is refused.
const MAX_LOGIN: usize = 254;

/// Exit statuses Dovecot understands.
const REFUSED: i32 = 1;
const TEMPORARY_FAILURE: i32 = 111;

/// Runs one sign-in and exits (or, granted, becomes the reply program): never returns.
pub async fn run(config_path: Option<&Path>, reply: Vec<OsString>) -> ! {
    let client = std::env::var("TCPREMOTEIP").unwrap_or_default();
    let credentials = match read_credentials() {
        Ok(credentials) => credentials,
        Err(outcome) => finish("", &client, outcome),
    };
    let login = credentials.login.trim().to_ascii_lowercase();
    let outcome = decide(config_path, &login, &credentials.password).await;
    if let Outcome::Granted = outcome {
        if reply.is_empty() {
            finish(
                &login,
                &client,
                Outcome::Failed("no reply program to run: Dovecot passes one".into()),
            );
        }
        log(&login, &client, "granted", "");
        // USER is the name Dovecot carries on with: the directory's spelling of the login.
        let error = std::os::unix::process::CommandExt::exec(
            std::process::Command::new(&reply[0])
                .args(&reply[1..])
                .env("USER", &login),
        );
        log(
            &login,
            &client,
            "temporary-failure",
            &format!("cannot run the reply program {:?}: {error}", reply[0]),
        );
        std::process::exit(TEMPORARY_FAILURE);
    }
    finish(&login, &client, outcome)
}

#[derive(Debug)]
enum Outcome {
    Granted,
    Refused(String),
    /// The answer could not be had: a temporary failure.
    Failed(String),
}

struct Credentials {
    login: String,
    password: String,
}

async fn decide(config_path: Option<&Path>, login: &str, password: &str) -> Outcome {
    let config = match super::load_settings(config_path) {
        Ok(config) => config,
        Err(e) => return Outcome::Failed(format!("config: {e:#}")),
    };
    let store = match store::open(&config.store, Access::ReadOnly).await {
        Ok(store) => store,
        Err(e) => return Outcome::Failed(format!("opening the directory store: {e}")),
    };
    let answer = accounts::mail_login(store.as_ref(), login, password, now_unix()).await;
    // Closed before the reply program runs: it inherits nothing of the store.
    drop(store);
    match answer {
        Ok(MailLogin::Granted) => Outcome::Granted,
        Ok(MailLogin::Refused(why)) => Outcome::Refused(why.to_string()),
        Err(e) => Outcome::Failed(format!("reading the directory store: {e}")),
    }
}

/// `login\0password\0…` from descriptor 3, read to its end but no further than [`MAX_INPUT`].
fn read_credentials() -> Result<Credentials, Outcome> {
    if !inherited_input(CREDENTIALS_FD) {
        return Err(Outcome::Failed(
            "descriptor 3 was not handed over: this is Dovecot's checkpassword program \
             (passdb driver = checkpassword), which writes the login and password there"
                .into(),
        ));
    }
    // SAFETY: descriptor 3 is open, was inherited (not one this process opened: those are all
    // close-on-exec) and is a pipe, socket or file: Dovecot's, handed over for this read and
    // used by nothing else here, so it is ours to read and close.
    let pipe = unsafe { std::fs::File::from_raw_fd(CREDENTIALS_FD) };
    let mut input = Vec::with_capacity(MAX_INPUT + 1);
    if let Err(e) = pipe.take(MAX_INPUT as u64 + 1).read_to_end(&mut input) {
        return Err(Outcome::Failed(format!("reading descriptor 3: {e}")));
    }
    parse(&input)
}

/// Whether `fd` is open, inherited from the parent and something to read from. Run by hand
/// without it, the number may be taken by a descriptor of this process's own (the runtime's,
/// opened before the command is known): those are close-on-exec, an inherited one is not.
fn inherited_input(fd: i32) -> bool {
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
        return false;
    }
    // SAFETY: fstat(2) on an open descriptor into a zeroed stat we own.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return false;
    }
    matches!(
        stat.st_mode & libc::S_IFMT,
        libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFREG
    )
}

fn parse(input: &[u8]) -> Result<Credentials, Outcome> {
    if input.len() > MAX_INPUT {
        return Err(Outcome::Refused(format!(
            "more than {MAX_INPUT} bytes of login and password"
        )));
    }
    let mut fields = input.split(|&b| b == 0);
    let (Some(login), Some(password), Some(_)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(Outcome::Refused(
            "not login\\0password\\0 on descriptor 3".into(),
        ));
    };
    let (Ok(login), Ok(password)) = (std::str::from_utf8(login), std::str::from_utf8(password))
    else {
        return Err(Outcome::Refused("login or password not UTF-8".into()));
    };
    if login.trim().is_empty() || login.len() > MAX_LOGIN {
        return Err(Outcome::Refused(format!(
            "login empty or longer than {MAX_LOGIN} bytes"
        )));
    }
    Ok(Credentials {
        login: login.to_string(),
        password: password.to_string(),
    })
}

/// Logs the outcome and exits with its status.
fn finish(login: &str, client: &str, outcome: Outcome) -> ! {
    let (result, detail, status) = match outcome {
        Outcome::Granted => unreachable!("a grant runs the reply program"),
        Outcome::Refused(why) => ("refused", why, REFUSED),
        Outcome::Failed(why) => ("temporary-failure", why, TEMPORARY_FAILURE),
    };
    log(login, client, result, &detail);
    std::process::exit(status)
}

/// One line on standard error (Dovecot's log): the login as given (escaped: it comes from the
/// network), the client when Dovecot says, the result and why.
fn log(login: &str, client: &str, result: &str, detail: &str) {
    let mut line = format!(
        "cjsm-milter dovecot-auth: login=\"{}\"",
        login.escape_debug()
    );
    if !client.is_empty() {
        line.push_str(&format!(" client={}", client.escape_debug()));
    }
    line.push_str(&format!(" result={result}"));
    if !detail.is_empty() {
        line.push_str(&format!(" reason=\"{}\"", detail.escape_debug()));
    }
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(input: &[u8]) -> String {
        match parse(input) {
            Err(Outcome::Refused(why)) => why,
            Err(Outcome::Failed(why)) => panic!("failed, not refused: {why}"),
            Err(Outcome::Granted) | Ok(_) => panic!("accepted {input:?}"),
        }
    }

    #[test]
    fn reads_dovecot_fields() {
        let credentials = parse(b"Alice@Example.cjsm.net\0pass word\x001700000000\0").unwrap();
        assert_eq!(credentials.login, "Alice@Example.cjsm.net");
        assert_eq!(credentials.password, "pass word");
        // Without the timestamp, as other checkpassword callers send.
        let credentials = parse(b"a@b\0pw\0").unwrap();
        assert_eq!(credentials.password, "pw");
        // An empty password is a password (a wrong one), not a malformed request.
        assert_eq!(parse(b"a@b\0\0").unwrap().password, "");
    }

    #[test]
    fn refuses_what_is_not_login_and_password() {
        assert!(refused(b"").contains("not login"));
        assert!(refused(b"a@b").contains("not login"));
        assert!(refused(b"a@b\0pw").contains("not login"));
        assert!(refused(b"\0pw\0").contains("empty"));
        assert!(refused(b"a@b\xff\0pw\0").contains("UTF-8"));
        let long_login = format!("{}@b\0pw\0", "a".repeat(MAX_LOGIN));
        assert!(refused(long_login.as_bytes()).contains("longer"));
        let too_much = vec![b'a'; MAX_INPUT + 1];
        assert!(refused(&too_much).contains("more than 1024 bytes"));
    }
}
