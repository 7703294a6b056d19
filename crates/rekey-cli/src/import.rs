//! `rekey cred import`: streams a JSON-lines file to the server in chunks.
//!
//! All or nothing by default: a first pass sends every chunk as a dry run and stops with the list
//! of bad lines if there is any, before a single line is written; the second pass writes. With
//! `--continue-on-error` there is one pass that writes the good lines and lists the bad ones.
//! Standard input is read into memory first (it cannot be read twice); a file is streamed.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use zeroize::Zeroizing;

use rekey_core::import::{ImportReport, LineError};

use crate::args::{ImportArgs, OutputFormat};
use crate::client::Client;
use crate::output;

/// Largest chunk body, well under the server's default import limit.
const MAX_CHUNK_BYTES: usize = 16 * 1024 * 1024;

enum Source {
    File(std::path::PathBuf, u64),
    Memory(Zeroizing<Vec<u8>>),
}

impl Source {
    fn open(&self) -> Result<Box<dyn BufRead + '_>> {
        Ok(match self {
            Source::File(path, _) => Box::new(BufReader::with_capacity(
                1 << 20,
                File::open(path).with_context(|| format!("opening {}", path.display()))?,
            )),
            Source::Memory(bytes) => Box::new(Cursor::new(bytes.as_slice())),
        })
    }

    fn len(&self) -> u64 {
        match self {
            Source::File(_, len) => *len,
            Source::Memory(bytes) => bytes.len() as u64,
        }
    }
}

fn progress(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .expect("constant template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// Sends the whole source once; returns the sum of the chunk reports.
async fn pass(client: &Client, source: &Source, args: &ImportArgs, dry_run: bool) -> Result<ImportReport> {
    let bar = progress(source.len(), if dry_run { "checking" } else { "importing" });
    let mode = if args.continue_on_error { "continue-on-error" } else { "atomic" };
    let mut reader = source.open()?;
    let mut total = ImportReport::default();
    let mut line_no: u64 = 0;
    loop {
        let first_line = line_no + 1;
        let mut chunk = Zeroizing::new(Vec::with_capacity(1 << 20));
        let mut lines = 0;
        while lines < args.chunk.max(1) && chunk.len() < MAX_CHUNK_BYTES {
            let before = chunk.len();
            let read = reader.read_until(b'\n', &mut chunk).context("reading the import file")?;
            if read == 0 {
                break;
            }
            if chunk.last() != Some(&b'\n') {
                chunk.push(b'\n');
            }
            line_no += 1;
            lines += 1;
            bar.inc((chunk.len() - before) as u64);
        }
        if lines == 0 {
            break;
        }
        let request = client
            .request(Method::POST, "/v1/import")
            .query(&[
                ("dry_run", dry_run.to_string()),
                ("create_tenants", args.create_tenants.to_string()),
                ("mode", mode.to_owned()),
                ("first_line", first_line.to_string()),
            ])
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(chunk.to_vec());
        let report: ImportReport = client.send(request).await.with_context(|| {
            format!(
                "importing lines {first_line}-{line_no} ({} lines of the file had been written before)",
                total.written
            )
        })?;
        total.lines += report.lines;
        total.written += report.written;
        total.tenants_created.extend(report.tenants_created);
        total.errors.extend(report.errors);
    }
    bar.finish_and_clear();
    Ok(total)
}

fn print_errors(errors: &[LineError]) {
    for e in errors.iter().take(200) {
        eprintln!("  line {}: {}", e.line, e.reason);
    }
    if errors.len() > 200 {
        eprintln!("  … and {} more", errors.len() - 200);
    }
}

pub(crate) async fn run(client: &Client, args: ImportArgs, format: OutputFormat) -> Result<ExitCode> {
    let source = if args.file.as_os_str() == "-" {
        let mut buf = Zeroizing::new(Vec::new());
        std::io::stdin().read_to_end(&mut buf).context("reading standard input")?;
        Source::Memory(buf)
    } else {
        let len = std::fs::metadata(&args.file).with_context(|| format!("reading {}", args.file.display()))?.len();
        Source::File(args.file.clone(), len)
    };
    if !args.continue_on_error {
        let check = pass(client, &source, &args, true).await?;
        if !check.errors.is_empty() {
            eprintln!("{} of {} lines are invalid; nothing was written:", check.errors.len(), check.lines);
            print_errors(&check.errors);
            if format == OutputFormat::Json {
                output::json(&check);
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    let report = pass(client, &source, &args, false).await?;
    match format {
        OutputFormat::Json => output::json(&report),
        OutputFormat::Table => {
            println!(
                "imported {} of {} lines; {} tenants created; {} errors",
                report.written,
                report.lines,
                report.tenants_created.len(),
                report.errors.len()
            );
        }
    }
    if !report.errors.is_empty() {
        eprintln!("lines not written:");
        print_errors(&report.errors);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
