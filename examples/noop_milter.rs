//! A no-op milter: the baseline the benchmarks compare cjsm-milter against.
//!
//! It asks for what cjsm-milter asks for (the same actions, the same macros per stage, every
//! callback registered so the MTA sends every stage, body included), listens through the
//! same listener (`TCP_NODELAY`, `TCP_QUICKACK` re-armed around reads), and answers
//! continue to everything and accept at end of message. What is left is the price of the
//! milter protocol in indymilter. Without `--noreply` it is the baseline "negotiated the
//! usual way" (a reply awaited at every stage), which cjsm-milter no longer is.
//!
//! ```sh
//! cargo build --release --example noop_milter
//! target/release/examples/noop_milter inet:127.0.0.1:7358     # or unix:/path/to/sock
//! target/release/examples/noop_milter --noreply inet:127.0.0.1:7358
//! ```
//! `--noreply` also asks the MTA not to wait for a reply to CONNECT, each header, end of
//! headers and each body chunk (the answer there is always "continue"), the same no-reply
//! stages cjsm-milter asks for (src/milter/mod.rs `NO_REPLY`): the no-op with cjsm-milter's
//! round trips.
//! It prints `listening on ADDR` once bound, and exits on SIGTERM or SIGINT.

use cjsm_milter::listen::{self, ListenAddr};
use indymilter::{Actions, Callbacks, MacroStage, ProtoOpts, Status};
use std::ffi::CString;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// The macros cjsm-milter asks for (src/milter/mod.rs `MACROS`), so the MTA sends as much.
const MACROS: &[(MacroStage, &str)] = &[
    (MacroStage::Connect, "j {client_addr}"),
    (
        MacroStage::Helo,
        "{tls_version} {cipher} {cert_subject} {cert_issuer} {verify}",
    ),
    (
        MacroStage::Mail,
        "i {auth_type} {auth_authen} {tls_version} {cipher} {cert_subject} {cert_issuer} {verify} {client_addr}",
    ),
    (MacroStage::Rcpt, "i"),
    (MacroStage::Data, "i"),
    (MacroStage::Eoh, "i"),
    (MacroStage::Eom, "i"),
];

const ACTIONS: Actions = Actions::ADD_HEADER
    .union(Actions::CHANGE_HEADER)
    .union(Actions::QUARANTINE);

/// Stages whose answer is always "continue": with `--noreply` the MTA is asked not to wait
/// for a reply to them (only what the MTA offers is requested).
const NOREPLY: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_EOH)
    .union(ProtoOpts::NOREPLY_BODY);

/// Continue, or nothing at all where the MTA agreed not to wait.
fn answer(noreply: &Option<ProtoOpts>, stage: ProtoOpts) -> Status {
    if noreply.is_some_and(|n| n.contains(stage)) {
        Status::Noreply
    } else {
        Status::Continue
    }
}

/// The session's data is the set of no-reply stages agreed with the MTA.
fn callbacks(noreply: bool) -> Callbacks<ProtoOpts> {
    Callbacks::new()
        .on_negotiate(move |cx, _actions, mta_opts| {
            Box::pin(async move {
                cx.requested_actions = ACTIONS;
                for (stage, names) in MACROS {
                    cx.requested_macros
                        .insert(*stage, CString::new(*names).expect("no NUL"));
                }
                let agreed = if noreply {
                    mta_opts & NOREPLY
                } else {
                    ProtoOpts::empty()
                };
                cx.requested_opts |= agreed;
                cx.data = Some(agreed);
                Status::Continue
            })
        })
        .on_connect(|cx, _, _| {
            Box::pin(async move { answer(&cx.data, ProtoOpts::NOREPLY_CONNECT) })
        })
        .on_mail(|_, _| Box::pin(async { Status::Continue }))
        .on_rcpt(|_, _| Box::pin(async { Status::Continue }))
        .on_header(|cx, _, _| Box::pin(async move { answer(&cx.data, ProtoOpts::NOREPLY_HEADER) }))
        .on_eoh(|cx| Box::pin(async move { answer(&cx.data, ProtoOpts::NOREPLY_EOH) }))
        .on_body(|cx, _| Box::pin(async move { answer(&cx.data, ProtoOpts::NOREPLY_BODY) }))
        .on_eom(|_| Box::pin(async { Status::Accept }))
        .on_abort(|_| Box::pin(async { Status::Continue }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let noreply = args.iter().any(|a| a == "--noreply");
    let arg = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "inet:127.0.0.1:7358".into());
    let addr = ListenAddr::parse(&arg).map_err(std::io::Error::other)?;
    let (listener, local) = listen::bind(&addr, Some(0o666), None).await?;
    println!("listening on {local}");
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    };
    let config = indymilter::Config {
        max_connections: 500,
        actions: ACTIONS,
        connection_timeout: Duration::from_secs(600),
    };
    let result = indymilter::run(listener, callbacks(noreply), config, shutdown).await;
    if let ListenAddr::Unix(path) = &local {
        let _ = std::fs::remove_file(path);
    }
    result
}
