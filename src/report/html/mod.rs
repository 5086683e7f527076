//! `report.html`: one self-contained page (no scripts, no external resources) for the people
//! who act on a run: municipal staff and the batch operator, in Japanese with English as
//! secondary text.
//!
//! The page begins with **今日の対応** (what to do today): critical items first (an aborted
//! run, a refused migration with the exact command that accepts its flag losses, withheld
//! registrations, critical review items and rejects, missed age transitions), then every
//! non-empty worklist with its count, what to do with it and links to its CSV file and to
//! report.xlsx, then the rejects grouped by error code with what to do about each code (a
//! sentence per code: [`super::labels::error_ja`]). The run's facts follow: status, counts under
//! Japanese labels, inputs, the lists. Sections that do not apply are left out.
//!
//! **Bounded lists.** Rejects, pending flags and worklist rows may be far too many for a page:
//! the renderer takes a [`ListHead`] of each (the first rows and the total), shows at most
//! [`MAX_ROWS`] rows and points to the full CSV/xlsx. The counts it shows per error code and
//! per worklist come with the input ([`Input::reject_codes`], [`WorklistHead::critical`]), never
//! from counting the head, so an engine that spools its lists to disk can hand over a head
//! slice and the totals it kept. [`Input::from_report`] builds the input from a report that
//! holds its lists in memory.
//!
//! **Template engine: minijinja.** The page is a template file (`templates/report.html`,
//! compiled into the binary with `include_str!`) rendered from plain serialisable view structs
//! built here. minijinja escapes every value by default for a `.html` template (so a file
//! name or a worklist cell such as `<script>` stays text), needs no proc-macro crates (its
//! only dependencies are serde and memo-map, both light), and keeps the markup in one file
//! that reads as HTML. askama would check the template at compile time but brings a
//! proc-macro tree and recompiles the crate on every template change; maud writes the page
//! as Rust macros, which is harder for someone fixing a label to read.
//!
//! Privacy: the view structs hold only what the report holds (no My Number, no address:
//! [`super`]).
//!
//! **Layout.** This file is the frame: the input, the heads, rendering and the page's order.
//! [`today`] builds 今日の対応, [`facts`] the run's facts and charts, [`tables`] every list
//! through one table builder.

mod facts;
mod tables;
mod today;

use super::labels;
use super::{PendingEntry, RejectEntry, Report, ReportKind, ReportStatus};
use anyhow::{Context, Result};
use facts::{ChartView, Count, Fact};
use serde::Serialize;
use std::collections::BTreeMap;
use tables::Table;
pub use today::accept_command;
use today::{Item, RejectGroup, WorklistLink};

/// At most this many rows of each list on the page; the rest are in the CSV and xlsx files.
pub const MAX_ROWS: usize = 200;

/// The first rows of a list and how many it has in all (which may be more than `rows`).
#[derive(Debug)]
pub struct ListHead<'a, T> {
    pub rows: &'a [T],
    pub total: u64,
}

impl<T> Clone for ListHead<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ListHead<'_, T> {}

impl<'a, T> ListHead<'a, T> {
    /// The head of a list held in memory: its first [`MAX_ROWS`] rows and its length.
    pub fn of(all: &'a [T]) -> Self {
        ListHead {
            rows: &all[..all.len().min(MAX_ROWS)],
            total: all.len() as u64,
        }
    }

    fn shown(&self) -> &'a [T] {
        &self.rows[..self.rows.len().min(MAX_ROWS)]
    }
}

/// Rejects of one error code, over the whole list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeTotals {
    pub total: u64,
    pub critical: u64,
}

/// One worklist: its name (file `<name>.csv`), title, columns, the head of its rows, and how
/// many of all its rows are critical (a `critical` column saying `critical`; every row of
/// `missed` and `handoff_blocked`).
#[derive(Clone, Debug)]
pub struct WorklistHead<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub columns: &'a [&'static str],
    pub rows: ListHead<'a, Vec<String>>,
    pub critical: u64,
}

/// What the page is rendered from. The report gives the facts (status, counts, inputs,
/// carries, flag changes, outputs, notes, charts, command-specific sections); the lists come
/// as heads with their totals.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub report: &'a Report,
    pub rejects: ListHead<'a, RejectEntry>,
    /// Error code → totals over all rejects.
    pub reject_codes: BTreeMap<String, CodeTotals>,
    pub pending_flags: ListHead<'a, PendingEntry>,
    /// Every worklist with rows in the report (`report.worklist_rows` order). Worklists the
    /// report only counts (`report.worklists`, e.g. a migration's diff) are linked by name.
    pub worklists: Vec<WorklistHead<'a>>,
    /// The command line that wrote the report (program first), for commands that continue it.
    pub invocation: &'a [String],
}

/// Worklists whose every row is critical.
const ALL_CRITICAL: &[&str] = &["missed", "handoff_blocked"];

/// The worklist column that marks a critical row, and the value it holds in such a row.
const CRITICAL: &str = "critical";

impl<'a> Input<'a> {
    /// The input for a report whose long lists are spooled: `heads` holds their first
    /// [`MAX_ROWS`] items, read back by [`Heads::of`].
    pub fn from_report(r: &'a Report, heads: &'a Heads, invocation: &'a [String]) -> Self {
        let worklists = r
            .worklist_rows
            .iter()
            .map(|(name, wl)| {
                let critical = if ALL_CRITICAL.contains(&name.as_str()) {
                    wl.rows.len() as u64
                } else {
                    match wl.columns.iter().position(|c| *c == CRITICAL) {
                        Some(i) => wl
                            .rows
                            .iter()
                            .filter(|row| row.get(i).is_some_and(|c| c == CRITICAL))
                            .count() as u64,
                        None => 0,
                    }
                };
                WorklistHead {
                    name,
                    title: &wl.title,
                    columns: &wl.columns,
                    rows: ListHead::of(&wl.rows),
                    critical,
                }
            })
            .collect();
        Input {
            report: r,
            rejects: ListHead {
                rows: &heads.rejects,
                total: r.rejects.len() as u64,
            },
            reject_codes: heads.reject_codes.clone(),
            pending_flags: ListHead {
                rows: &heads.pending_flags,
                total: r.pending_flags.len() as u64,
            },
            worklists,
            invocation,
        }
    }
}

/// The heads of a report's spooled lists, and its rejects' totals per error code (one pass
/// over the rejects).
#[derive(Debug, Default)]
pub struct Heads {
    rejects: Vec<RejectEntry>,
    reject_codes: BTreeMap<String, CodeTotals>,
    pending_flags: Vec<PendingEntry>,
}

impl Heads {
    pub fn of(r: &Report) -> anyhow::Result<Self> {
        let mut reject_codes: BTreeMap<String, CodeTotals> = BTreeMap::new();
        for x in r.rejects.iter() {
            let x = x?;
            let t = reject_codes.entry(x.code.clone()).or_default();
            t.total += 1;
            t.critical += u64::from(x.critical);
        }
        Ok(Heads {
            rejects: r.rejects.head(MAX_ROWS)?,
            reject_codes,
            pending_flags: r.pending_flags.head(MAX_ROWS)?,
        })
    }
}

/// The page of a report.
pub fn render_report(r: &Report, invocation: &[String]) -> anyhow::Result<String> {
    let heads = Heads::of(r)?;
    render(&Input::from_report(r, &heads, invocation))
}

const TEMPLATE: &str = include_str!("../templates/report.html");

/// The page.
pub fn render(input: &Input<'_>) -> Result<String> {
    let mut env = minijinja::Environment::new();
    // `.html`: every value is HTML-escaped unless the template says otherwise (it never does);
    // escaped as below rather than minijinja's default, which also writes `/` as `&#x2f;` and
    // so makes paths and commands unreadable in the page's source
    env.set_formatter(|out, _state, value| {
        if value.is_none() || value.is_undefined() {
            return Ok(());
        }
        let text = match value.as_str() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(value.to_string()),
        };
        out.write_str(&escape(&text))
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
    });
    env.add_template("report.html", TEMPLATE)
        .context("report.html template")?;
    let page = page(input);
    let t = env.get_template("report.html").context("report.html template")?;
    t.render(&page).context("cannot render report.html")
}

/// `&`, `<`, `>`, `"` and `'` as character references: safe in text and in quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Serialize)]
struct Page {
    title: String,
    title_en: String,
    run_id: String,
    as_of: String,
    status_ja: String,
    status_en: String,
    /// ok | warn | crit
    status_class: &'static str,
    dry_run: bool,
    critical: Vec<Item>,
    worklists_todo: Vec<WorklistLink>,
    worklists_empty: Vec<String>,
    reject_groups: Vec<RejectGroup>,
    rejects_total: u64,
    rejects_critical: u64,
    nothing_to_do: bool,
    facts: Vec<Fact>,
    counts: Vec<Count>,
    notes: Vec<String>,
    charts: Vec<ChartView>,
    tables: Vec<Table>,
}

#[derive(Serialize)]
struct Link {
    href: String,
    label: String,
}

fn link(href: &str) -> Link {
    Link {
        href: href.to_owned(),
        label: href.to_owned(),
    }
}

fn xlsx_link(sheet: &str) -> Link {
    Link {
        href: "report.xlsx".into(),
        label: format!("report.xlsx（シート「{sheet}」）"),
    }
}

fn titles(r: &Report, migration: Option<&serde_json::Value>) -> (String, String) {
    let get = |k: &str| migration.and_then(|m| m.get(k)).and_then(serde_json::Value::as_bool) == Some(true);
    let (ja, en) = match r.kind {
        ReportKind::Run if r.dry_run => ("夜間処理レポート（ドライラン）", "Run report (dry run)"),
        ReportKind::Run => ("夜間処理レポート", "Run report"),
        ReportKind::Extract => ("75歳到達抽出レポート", "Age-75 transition extract report"),
        ReportKind::Migrate if r.status == ReportStatus::Rejected => {
            ("移行レポート（ソース不備）", "Migration report (source rejected)")
        }
        ReportKind::Migrate if r.dry_run && get("would_be_refused") => (
            "移行レポート（ドライラン・このままでは拒否）",
            "Migration report (dry run; a real run would be refused)",
        ),
        ReportKind::Migrate if r.dry_run => ("移行レポート（ドライラン）", "Migration report (dry run)"),
        ReportKind::Migrate if r.status == ReportStatus::Refused || get("refused") => {
            ("移行レポート（拒否）", "Migration report (refused)")
        }
        ReportKind::Migrate => ("移行レポート", "Migration report"),
    };
    (ja.to_owned(), en.to_owned())
}

/// The page frame: 今日の対応 ([`today`]), the run's facts ([`facts`]) and the lists
/// ([`tables`]), with the status that colours the page.
fn page(input: &Input<'_>) -> Page {
    let r = input.report;
    let migration = (r.kind == ReportKind::Migrate)
        .then(|| r.extra.get("migration"))
        .flatten();
    let (title, title_en) = titles(r, migration);
    let rejects_critical: u64 = input.reject_codes.values().map(|t| t.critical).sum();
    let rejects_total: u64 = input.rejects.total;
    let critical = today::critical_items(input, migration);
    let (worklists_todo, worklists_empty) = today::worklist_links(input);
    let reject_groups = today::reject_groups(input);
    let nothing_to_do = critical.is_empty() && worklists_todo.is_empty() && reject_groups.is_empty();
    let status_class = match r.status {
        ReportStatus::Completed if rejects_total == 0 && critical.is_empty() => "ok",
        ReportStatus::Completed | ReportStatus::CompletedWithRejects if critical.is_empty() => "warn",
        _ => "crit",
    };
    Page {
        title,
        title_en,
        run_id: r.run_id.clone(),
        as_of: r.as_of.clone(),
        status_ja: labels::status_ja(r.status).to_owned(),
        status_en: labels::status_en(r.status).to_owned(),
        status_class,
        dry_run: r.dry_run,
        critical,
        worklists_todo,
        worklists_empty,
        reject_groups,
        rejects_total,
        rejects_critical,
        nothing_to_do,
        facts: facts::facts(r),
        counts: facts::counts(r),
        notes: r.notes.clone(),
        charts: r.charts.iter().map(facts::chart).collect(),
        tables: tables::tables(input),
    }
}

#[cfg(test)]
mod tests;
