//! `rekey witness key|serve`: a witness of another Rekey's audit log (see
//! `rekey_server::witness` and docs/audit.md).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use rekey_server::witness::{serve, verifier_key, SigningKey, WitnessOptions};
use rekey_tlog::VerifierKey;

use crate::args::WitnessCmd;

pub(crate) async fn run(cmd: WitnessCmd) -> Result<ExitCode> {
    match cmd {
        WitnessCmd::Key { name, out } => {
            let key = SigningKey::generate().context("generating a key")?;
            let verifier = verifier_key(&name, &key).context("the witness name")?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&out).with_context(|| format!("creating {}", out.display()))?;
            file.write_all(key.seed_hex().as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            println!("{verifier}");
        }
        WitnessCmd::Serve { listen, name, key_file, logs, state } => {
            let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).log_internal_errors(false).try_init();
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&key_file).with_context(|| format!("reading {}", key_file.display()))?,
            );
            let key = SigningKey::from_seed_hex(&text).context("the witness key file")?;
            let logs = logs
                .iter()
                .map(|l| VerifierKey::parse(l).with_context(|| format!("--log {l}")))
                .collect::<Result<Vec<_>>>()?;
            serve(WitnessOptions { listen, name, key, logs, state_dir: state }).await.context("the witness")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
