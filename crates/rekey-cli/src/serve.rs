//! `rekey serve`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use rekey_server::{App, Config};

use crate::args::ServeArgs;

fn init_logging(config: &Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log.level: {:?} is not a valid filter", config.log.level))?;
    // A log line that cannot be written is dropped: the fallback (on by default) reports it
    // with `eprintln!`, which panics when stderr is a closed pipe, taking a request or a
    // background task down with it.
    // Colours only for a terminal: a file or a journal gets plain lines (and each line costs less).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Writes the root token to `path`, readable by its owner only.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    if !args.dev && args.config.is_none() {
        anyhow::bail!("give --config FILE for a production server, or --dev for the quickstart");
    }
    let base = if args.dev { Config::dev_defaults() } else { Config::defaults() };
    let mut config = Config::load(base, args.config.as_deref()).context("loading the configuration")?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    init_logging(&config)?;
    let dev = config.dev;
    let token_file = config.root_token_file();
    let mut app = App::build(config).await.context("starting Rekey")?;
    if let Some(root) = app.root_token.take() {
        if dev {
            write_private(&token_file, root.expose())?;
            notice(&format!("Root operator token written to {} (mode 0600).\n", token_file.display()));
        } else {
            notice("Root operator token (shown once; store it in a password manager and create narrower tokens):\n");
            // The one copy: failing to hand it over is an error, not a notice.
            writeln!(std::io::stdout(), "{}", root.expose()).context("printing the root operator token")?;
        }
    }
    let scheme = if app.config.tls.is_some() { "https" } else { "http" };
    let dev_seal = app.config.seal.kind == "dev";
    let started = app.start(shutdown_signal()).await.context("starting the listener")?;
    if dev {
        let seal_note = if dev_seal {
            "DEV SEAL: the root key is a file in the data folder. Never use --dev in production."
        } else {
            "Plain HTTP on loopback (--dev). Never use --dev in production."
        };
        notice(&format!(
            "\nRekey dev server on {scheme}://{addr}\n  {seal_note}\n\n  export REKEY_ADDR={scheme}://{addr}\n  export REKEY_TOKEN=$(cat {token})\n\n",
            addr = started.addr,
            token = token_file.display()
        ));
    } else {
        tracing::info!(addr = %started.addr, "listening");
    }
    started.task.await.context("server task")?;
    tracing::info!("stopped");
    Ok(())
}

/// Writes a notice for the operator to stderr in one piece, and carries on if nobody reads it
/// any more: a server must not stop because the terminal or pipe it started from went away
/// (`eprintln!` would panic on a closed pipe, in the middle of a notice written piecemeal).
fn notice(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
