//! `rekey`: the server (`rekey serve`) and a client for every API call.
#![forbid(unsafe_code)]

mod args;
mod campaigns;
mod client;
mod commands;
mod connect;
mod import;
mod incidents;
mod keys;
mod output;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
