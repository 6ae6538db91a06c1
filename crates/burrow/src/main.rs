//! `burrow`: the one binary. Parses flags and environment, sets up logging
//! and signals, and hands typed configuration to the gateway and agent
//! libraries.

#![forbid(unsafe_code)]

mod cli;
mod identity;
mod keygen;
mod manage;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed buffers cached per thread; with glibc's allocator
/// the 64 KiB read buffers of the data path were trimmed back to the OS and
/// faulted in again on every read (page faults were 5% of gateway CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("burrow: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if daemon {
                tracing::error!("{e:#}");
            }
            eprintln!("burrow: {e:#}");
            // Bad input is a usage error (2), as clap's own are.
            if e.downcast_ref::<manage::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
