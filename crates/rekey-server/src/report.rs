//! A campaign's report as CSV (one row per credential) and as one self-contained HTML page (a
//! section per tenant: what was exposed, what was done, by whom and when). HTML is built with
//! `maud`, which escapes every value.

use maud::{html, Markup, DOCTYPE};
use rekey_core::campaigns::{CampaignReport, ReportItem};
use rekey_types::Timestamp;

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break. A field that
/// a spreadsheet would run as a formula is prefixed with a quote mark: one that starts with
/// `=`, `+`, `-` or `@`, or with a tab or carriage return (spreadsheets skip those and read on;
/// OWASP's list for CSV injection).
fn field(value: &str) -> String {
    let value =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn when(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

const COLUMNS: &[&str] = &[
    "tenant",
    "region",
    "credential",
    "kind",
    "reasons",
    "reveals_since",
    "mode",
    "state",
    "attempts",
    "done_by",
    "notified_at",
    "rotated_at",
    "verified_at",
    "retired_at",
    "error",
    "waiver",
];

pub(crate) fn csv(report: &CampaignReport) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for tenant in &report.tenants {
        for r in &tenant.items {
            let i = &r.item;
            let row = [
                i.tenant.clone(),
                i.region.clone(),
                i.name.clone(),
                i.kind.to_string(),
                r.reasons.clone(),
                r.reveals_since.to_string(),
                i.mode.to_string(),
                i.state.to_string(),
                i.attempts.to_string(),
                i.done_by.clone().unwrap_or_default(),
                when(i.notified_at),
                when(i.rotated_at),
                when(i.verified_at),
                when(i.retired_at),
                i.error.clone().unwrap_or_default(),
                i.note.clone().unwrap_or_default(),
            ];
            out.push_str(&row.iter().map(|v| field(v)).collect::<Vec<_>>().join(","));
            out.push_str("\r\n");
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#1a1a1a;max-width:80rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}th,td{border:1px solid #ccc;padding:.3rem .5rem;\
text-align:left;font-size:.9rem;vertical-align:top}th{background:#f2f2f2}.retired,.waived{color:#176b2c}\
.failed{color:#a11}.muted{color:#666}h2{margin-top:2rem;border-bottom:2px solid #333}";

fn item_row(r: &ReportItem) -> Markup {
    let i = &r.item;
    html! {
        tr {
            td { (i.name) }
            td { (i.kind) }
            td { (r.reasons) }
            td { (r.reveals_since) }
            td class=(i.state) { (i.state) }
            td { (i.mode) }
            td { (i.done_by.as_deref().unwrap_or("")) }
            td { (when(i.notified_at)) }
            td { (when(i.rotated_at)) }
            td { (when(i.verified_at)) }
            td { (when(i.retired_at)) }
            td { (i.error.as_deref().unwrap_or("")) (i.note.as_deref().map(|n| format!("waived: {n}")).unwrap_or_default()) }
        }
    }
}

pub(crate) fn html(report: &CampaignReport) -> String {
    let c = &report.campaign;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Rekey campaign report: " (report.incident.title) }
                style { (STYLE) }
            }
            body {
                h1 { "Campaign report" }
                p {
                    "Incident " strong { (report.incident.title) } " (" (report.incident.id) "), scope "
                    code { (report.incident.scope.join(" ")) }
                    @if let Some(since) = report.incident.since { ", exposure since " (since) }
                    "."
                }
                p {
                    "Campaign " (c.id) ", started " (c.created_at) " by " (c.created_by) ", deadline " (c.deadline)
                    ", state " strong { (c.state) }
                    @if let Some(f) = c.finished_at { ", finished " (f) }
                    ". " (report.done) " of " (c.items) " credentials done, " (report.open) " still open."
                }
                p class="muted" { "Generated " (report.generated_at) ". No secret appears in this report." }
                @for tenant in &report.tenants {
                    section {
                        h2 { (tenant.tenant) " " span class="muted" { "(" (tenant.region) ")" } }
                        table {
                            thead { tr {
                                th { "credential" } th { "kind" } th { "why in scope" } th { "reveals since" }
                                th { "state" } th { "how" } th { "done by" } th { "notified" } th { "rotated" }
                                th { "verified" } th { "retired" } th { "note" }
                            } }
                            tbody { @for item in &tenant.items { (item_row(item)) } }
                        }
                        p class="muted" {
                            "Audit evidence (each event with its proof against a signed checkpoint): "
                            code { "GET " (tenant.evidence) }
                        }
                        @if !tenant.notices.is_empty() {
                            p { "Notices:" }
                            ul {
                                @for n in &tenant.notices {
                                    li {
                                        (n.purpose) " by " (n.channel) ": " (n.state) " after " (n.attempts) " attempt(s)"
                                        @if let Some(at) = n.sent_at { ", sent " (at) }
                                        @if let Some(e) = &n.error { " (" (e) ")" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page.into_string()
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(field("\t=1+1"), "'\t=1+1");
        assert_eq!(field("\r=1+1"), "\"'\r=1+1\"");
    }
}
