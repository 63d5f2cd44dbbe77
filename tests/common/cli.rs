//! The command line as a test runs it: `cjsm-milter [--config FILE] ARGS…` as a child process,
//! with the administrator's commands built on it (onboarding an organisation, adding a user,
//! `check` on a message from standard input).

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// What one run of the binary left: its exit status and both outputs as text.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts the run succeeded (the failure names the standard error) and never panicked.
    pub fn success(self) -> CliOutput {
        assert!(
            self.status.success(),
            "exit {:?}: {}{}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// The standard output as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not one JSON value ({e}): {}", self.stdout))
    }
}

/// Runs `cjsm-milter [--config CONFIG] ARGS…` with `stdin` on its standard input, to the end.
pub fn run_cli(config: Option<&Path>, stdin: &[u8], args: &[&str]) -> CliOutput {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_cjsm-milter"));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cjsm-milter runs");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // Written from a thread: a large message would fill the pipe before the output is read.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `cjsm-milter ARGS…` with nothing on its standard input, stopped by its PID after `limit`
/// if it has not exited by then, and with `memory` (bytes), when given, as its address-space
/// limit: a hang or an unbounded read fails its test instead of stalling or filling the
/// machine. The output, and whether it exited on its own.
pub fn run_for(args: &[&str], limit: Duration, memory: Option<u64>) -> (CliOutput, bool) {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_cjsm-milter"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(bytes) = memory {
        // SAFETY: setrlimit(2) only, between fork and exec; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("cjsm-milter runs");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(25));
    }
    let exited = child.try_wait().unwrap().is_some();
    if !exited {
        // Still running: stopped by its own id, so its output can be read.
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let output = CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    (output, exited)
}

/// `cjsm-milter --config CONFIG ARGS…`, nothing on its standard input.
pub fn cli(config: &Path, args: &[&str]) -> CliOutput {
    run_cli(Some(config), b"", args)
}

/// `cjsm-milter --config CONFIG ARGS…`, which must succeed; its standard output.
pub fn cli_ok(config: &Path, args: &[&str]) -> String {
    cli(config, args).success().stdout
}

/// Registers an organisation and switches it on, through the admin commands.
pub fn onboard(config: &Path, id: &str, name: &str, domain: &str, connection: &str) {
    onboard_with(config, id, name, domain, connection, &[]);
}

/// [`onboard`] with more `org apply` options (a client certificate, a mail server).
pub fn onboard_with(
    config: &Path,
    id: &str,
    name: &str,
    domain: &str,
    connection: &str,
    options: &[&str],
) {
    let mut apply = vec!["directory", "org", "apply", "--id", id, "--name", name];
    apply.extend_from_slice(&["--domain", domain, "--connection", connection]);
    apply.extend_from_slice(options);
    cli_ok(config, &apply);
    for step in ["approve", "sign-terms", "activate"] {
        cli_ok(config, &["directory", "org", step, id]);
    }
}

/// `directory user add` for `address` in organisation `org`.
pub fn cli_add_user(config: &Path, address: &str, org: &str, first: &str, last: &str) {
    let add = ["directory", "user", "add", address, "--org", org];
    cli_ok(
        config,
        &[&add[..], &["--first-name", first, "--last-name", last]].concat(),
    );
}

/// `cjsm-milter --config CONFIG check ARGS… -` with `message` on its standard input: the
/// JSON report. The process must succeed and never panic, whatever the message.
pub fn check_message(config: &Path, args: &[&str], message: &[u8]) -> serde_json::Value {
    let args = [&["check"], args, &["-"]].concat();
    run_cli(Some(config), message, &args).success().json()
}

/// The hosted-mailbox organisation `smith` (Smith Chambers, smithchambers.cjsm.net), switched
/// on, with an active user `NAME@smithchambers.cjsm.net` ("NAME Smith") for each name.
pub fn smith_chambers(config: &Path, names: &[&str]) {
    onboard(
        config,
        "smith",
        "Smith Chambers",
        "smithchambers.cjsm.net",
        "mailbox",
    );
    for name in names {
        let address = format!("{name}@smithchambers.cjsm.net");
        cli_add_user(config, &address, "smith", name, "Smith");
    }
}
