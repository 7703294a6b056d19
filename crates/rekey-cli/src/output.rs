//! Tables for people, JSON for programs.

use std::io::IsTerminal;

use serde::Serialize;

use crate::args::{OutputArg, OutputFormat};

/// The format a command prints in; `csv` prints JSON except where a command exports rows.
pub(crate) fn format(requested: Option<OutputArg>) -> OutputFormat {
    match requested {
        Some(OutputArg::Table) => OutputFormat::Table,
        Some(OutputArg::Json | OutputArg::Csv) => OutputFormat::Json,
        None if std::io::stdout().is_terminal() => OutputFormat::Table,
        None => OutputFormat::Json,
    }
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

pub(crate) fn json<T: Serialize + ?Sized>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).expect("views always serialize"));
}

/// Prints rows under headers, each column as wide as its widest cell.
pub(crate) fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.into_iter().collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Key/value lines for one object.
pub(crate) fn pairs(items: &[(&str, String)]) {
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in items {
        println!("{k:<width$}  {v}");
    }
}

pub(crate) fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// Prints `value` as JSON, or as `as_table` draws it.
pub(crate) fn show<T: Serialize>(format: OutputFormat, value: &T, as_table: impl FnOnce(&T)) {
    match format {
        OutputFormat::Json => json(value),
        OutputFormat::Table => as_table(value),
    }
}
