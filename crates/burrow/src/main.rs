//! `burrow`: the one binary. Parses flags and environment, sets up logging
//! and signals, and hands typed configuration to the gateway and agent
//! libraries.

#![forbid(unsafe_code)]

mod ask;
mod cli;
mod doctor;
mod identity;
mod keygen;
mod manage;
mod reload;
mod secrets;
mod settings;
mod ui;

use std::process::ExitCode;

/// mimalloc keeps freed buffers cached per thread; with glibc's allocator
/// the 64 KiB read buffers of the data path were trimmed back to the OS and
/// faulted in again on every read (page faults were 5% of gateway CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let parsed = match settings::parse(&args, &env) {
        Ok(p) => p,
        Err(settings::SettingsError::Clap(e)) => {
            // clap quotes values it refuses: never a secret's.
            let text = secrets::redact(&e.render().to_string(), &args);
            if e.use_stderr() {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(e) => {
            eprintln!("burrow: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = &parsed.cli;
    // Long-running commands log their fatal error too (log shippers see
    // it); one-shot commands print it once.
    let daemon = matches!(
        cli.command,
        cli::Command::Gateway(_) | cli::Command::Run(_) | cli::Command::Demo(_)
    );
    // One crypto provider for every TLS user (sqlx's PostgreSQL TLS too).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let Err(e) = cli::init_logging(&cli.log) {
        eprintln!("burrow: {e:#}");
        return ExitCode::from(2);
    }
    for w in secrets::flag_warnings(&args).iter().chain(&parsed.warnings) {
        tracing::warn!("{w}");
    }
    let effective = parsed.effective();
    if daemon {
        for (setting, value, source) in &effective {
            tracing::info!(event = burrow_transport::event::SETTING, %setting, %value, %source, "setting");
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("burrow: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let startup = reload::Startup {
        args: args.clone(),
        env,
        effective,
    };
    match runtime.block_on(cli::run(parsed.cli, startup)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = secrets::redact(&said_once(&e), &args);
            // Said once: a long-running command's console log is stderr
            // (and its log file, for shippers); a one-shot command prints.
            if daemon {
                tracing::error!("{text}");
            } else {
                eprintln!("burrow: {text}");
            }
            // Bad input is a usage error (2), as clap's own are.
            if e.downcast_ref::<manage::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error and its causes as one line, each cause once: a message that
/// already quotes its cause (`cannot listen on …: Address already in use
/// (os error 98)`) is not followed by that cause again.
fn said_once(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let os = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot listen on 127.0.0.1:1: {source}")]
        struct Bind {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Bind { source: os }).context("gateway");
        let text = said_once(&e);
        assert_eq!(text.matches("in use").count(), 1, "{text}");
        assert!(
            text.starts_with("gateway: cannot listen on 127.0.0.1:1: "),
            "{text}"
        );
        let plain = anyhow::anyhow!("no such file").context("reading /x");
        assert_eq!(said_once(&plain), "reading /x: no such file");
    }
}
