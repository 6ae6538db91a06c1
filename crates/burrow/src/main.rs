//! `burrow`: the one binary. Parses flags and environment, sets up logging
//! and signals, and hands typed configuration to the gateway and agent
//! libraries.

#![forbid(unsafe_code)]

mod cli;
mod identity;
mod keygen;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed buffers cached per thread; with glibc's allocator
/// the 64 KiB read buffers of the data path were trimmed back to the OS and
/// faulted in again on every read (page faults were 5% of gateway CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
            tracing::error!("{e:#}");
            eprintln!("burrow: {e:#}");
            ExitCode::FAILURE
        }
    }
}
