//! `rekey`: the server (`rekey serve`) and a client for every API call.
#![forbid(unsafe_code)]

mod alerts;
mod args;
mod campaigns;
mod client;
mod commands;
mod connect;
mod exports;
mod import;
mod incidents;
mod keys;
mod login;
mod output;
mod proofs;
mod serve;
mod witness;
mod workloads;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    rekey_server::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Tasks that still hold the store let go of it as the runtime goes, the audit writer's
    // threads just after: wait for the store to close (a SQLite file then checkpoints its WAL).
    // Every answered write is on disk either way.
    drop(runtime);
    if !rekey_store::wait_until_closed(std::time::Duration::from_secs(10)) {
        tracing::warn!("the store did not close within 10 s; its WAL will be replayed at the next start");
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
