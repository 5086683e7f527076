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

use super::labels;
use super::{FlagChangeKind, InputStatus, PendingEntry, RejectEntry, Report, ReportKind, ReportStatus, SummaryKey};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;

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
                    match wl.columns.iter().position(|c| *c == "critical") {
                        Some(i) => wl
                            .rows
                            .iter()
                            .filter(|row| row.get(i).is_some_and(|c| c == "critical"))
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

/// A critical item of 今日の対応.
#[derive(Serialize)]
struct Item {
    title: String,
    text: String,
    en: String,
    command: Option<String>,
    links: Vec<Link>,
}

#[derive(Serialize)]
struct Link {
    href: String,
    label: String,
}

#[derive(Serialize)]
struct WorklistLink {
    name: String,
    name_ja: String,
    count: u64,
    critical: u64,
    todo: String,
    links: Vec<Link>,
}

#[derive(Serialize)]
struct RejectGroup {
    code: String,
    name_ja: String,
    todo: String,
    total: u64,
    critical: u64,
}

#[derive(Serialize)]
struct Fact {
    label: String,
    value: String,
}

/// A count: its Japanese label, the counter in English words (secondary), the number.
#[derive(Serialize)]
struct Count {
    label: String,
    en: String,
    value: u64,
}

#[derive(Serialize)]
struct ChartView {
    title: String,
    width: u64,
    height: u64,
    label_x: u64,
    bar_x: u64,
    bars: Vec<Bar>,
}

#[derive(Serialize)]
struct Bar {
    label: String,
    value: u64,
    y: u64,
    text_y: u64,
    w: u64,
    h: u64,
    value_x: u64,
}

#[derive(Serialize)]
struct Column {
    ja: String,
    en: String,
}

#[derive(Serialize)]
struct Row {
    cells: Vec<String>,
    critical: bool,
}

/// A list on the page: at most [`MAX_ROWS`] rows of `total`.
#[derive(Serialize)]
struct Table {
    id: String,
    heading: String,
    heading_en: String,
    todo: String,
    columns: Vec<Column>,
    rows: Vec<Row>,
    total: u64,
    /// More rows than shown: where the full list is.
    more: Option<Vec<Link>>,
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

fn page(input: &Input<'_>) -> Page {
    let r = input.report;
    let migration = (r.kind == ReportKind::Migrate)
        .then(|| r.extra.get("migration"))
        .flatten();
    let (title, title_en) = titles(r, migration);
    let count = |k: SummaryKey| r.summary.count(&k);
    let wl_count = |name: &str| -> u64 {
        r.worklists
            .get(name)
            .map(|n| *n as u64)
            .or_else(|| input.worklists.iter().find(|w| w.name == name).map(|w| w.rows.total))
            .unwrap_or(0)
    };
    let sheet = |name: &str| {
        let title = input.worklists.iter().find(|w| w.name == name).map_or("", |w| w.title);
        labels::worklist_ja(name, title)
    };
    let rejects_critical: u64 = input.reject_codes.values().map(|t| t.critical).sum();
    let rejects_total: u64 = input.rejects.total;

    // 今日の対応: critical items first
    let mut critical = Vec::new();
    if let Some(reason) = &r.abort_reason {
        critical.push(Item {
            title: "処理を中止しました".into(),
            text: "何も反映・送信していません。原因を解消してから再実行してください。".into(),
            en: format!("Aborted: nothing was committed or published. {reason}"),
            command: None,
            links: vec![link("rejects.csv")],
        });
    }
    if let Some(m) = migration {
        critical.extend(migration_item(r, m, input.invocation));
    }
    let withheld = count(SummaryKey::Withheld);
    if withheld > 0 {
        critical.push(Item {
            title: format!("送信を保留した登録 {withheld}件"),
            text: "フラグの保護が確定しないため送信していません（次回以降の実行で自動的に再試行します）。確認の作業リストの「重要」の行を至急確認してください。".into(),
            en: format!("{withheld} registration(s) withheld: not published until the protection is settled (R4, R14)."),
            command: None,
            links: vec![link("review.csv"), xlsx_link(&sheet("review"))],
        });
    }
    for w in &input.worklists {
        if w.critical == 0 {
            continue;
        }
        let (title, text, en) = match w.name {
            "review" => (
                format!("確認の作業リストに重要な行 {}件", w.critical),
                "保護（フラグ）が欠けている可能性があります。最優先で確認してください。".to_owned(),
                format!("{} critical review item(s): a protection may be missing.", w.critical),
            ),
            "missed" => (
                format!("引継漏れ {}件", w.critical),
                "75歳到達日を過ぎても後期の資格にフラグがないか、後期の資格が見つかりません。至急、広域連合へ連絡してください。".to_owned(),
                format!("{} missed age transition(s): the 後期 enrollment lacks the flags.", w.critical),
            ),
            "handoff_blocked" => (
                format!("引継ファイルに書けなかった人 {}件", w.critical),
                "年齢到達引継ファイルに入っていません。内容を確認し、広域連合へ別途連絡してください。".to_owned(),
                format!("{} member(s) could not be written to the hand-off file.", w.critical),
            ),
            "inquiry_awaiting" => (
                format!("照会の回答待ちで保留した登録 {}件", w.critical),
                "国保側の回答が届くまで送信しません。国保側に照会ファイルの回答を依頼してください。".to_owned(),
                format!("{} registration(s) withheld awaiting the 国保 answer (R13).", w.critical),
            ),
            _ => (
                format!("{}: 重要な行 {}件", sheet(w.name), w.critical),
                labels::worklist_todo(w.name).unwrap_or_default().to_owned(),
                format!("{} critical row(s) in {}.", w.critical, w.name),
            ),
        };
        critical.push(Item {
            title,
            text,
            en,
            command: None,
            links: vec![link(&format!("{}.csv", w.name)), xlsx_link(&sheet(w.name))],
        });
    }
    if rejects_critical > 0 {
        critical.push(Item {
            title: format!("重要な不備 {rejects_critical}件"),
            text: "フラグ設定・年齢到達引継のレコード、またはファイル全体が受け付けられていません。保護が反映されていない可能性があります。送付元に修正・再送を依頼してください。".into(),
            en: format!("{rejects_critical} critical reject(s): a protection may be missing."),
            command: None,
            links: vec![link("rejects.csv"), xlsx_link(labels::REJECTS_SHEET)],
        });
    }

    // every worklist with rows: count, what to do, links
    let mut names: Vec<(String, String)> = input
        .worklists
        .iter()
        .map(|w| (w.name.to_owned(), w.title.to_owned()))
        .collect();
    for name in r.worklists.keys() {
        if !names.iter().any(|(n, _)| n == name) {
            names.push((name.clone(), String::new()));
        }
    }
    let mut worklists_todo = Vec::new();
    let mut worklists_empty = Vec::new();
    for (name, title) in &names {
        let n = wl_count(name);
        let name_ja = labels::worklist_ja(name, title);
        if n == 0 {
            worklists_empty.push(name_ja);
            continue;
        }
        let mut links = vec![link(&format!("{name}.csv"))];
        if input.worklists.iter().any(|w| w.name == name) {
            links.push(xlsx_link(&name_ja));
        }
        worklists_todo.push(WorklistLink {
            name: name.clone(),
            critical: input
                .worklists
                .iter()
                .find(|w| w.name == name)
                .map_or(0, |w| w.critical),
            todo: labels::worklist_todo(name).unwrap_or_default().to_owned(),
            name_ja,
            count: n,
            links,
        });
    }
    let reject_groups: Vec<RejectGroup> = input
        .reject_codes
        .iter()
        .map(|(code, t)| {
            let (name_ja, todo) = labels::error_ja(code).unwrap_or(("", ""));
            RejectGroup {
                code: code.clone(),
                name_ja: name_ja.to_owned(),
                todo: todo.to_owned(),
                total: t.total,
                critical: t.critical,
            }
        })
        .collect();
    let nothing_to_do = critical.is_empty() && worklists_todo.is_empty() && reject_groups.is_empty();

    // the run's facts
    let mut facts = vec![
        Fact {
            label: "状態 Status".into(),
            value: format!("{} — {}", labels::status_ja(r.status), labels::status_en(r.status)),
        },
        Fact {
            label: "基準日 As-of date".into(),
            value: r.as_of.clone(),
        },
        Fact {
            label: "実行ID Run id".into(),
            value: r.run_id.clone(),
        },
    ];
    if r.dry_run {
        facts.push(Fact {
            label: "ドライラン Dry run".into(),
            value: "台帳は変更せず、何も送信していません（変更される内容を示します） / nothing committed or published"
                .into(),
        });
    }
    if let Some(w) = r.extra.get("missed_window") {
        facts.push(Fact {
            label: "引継漏れの確認範囲 Missed window".into(),
            value: missed_window(w),
        });
    }
    let counts = r
        .summary
        .iter()
        .map(|(k, v)| Count {
            label: labels::summary_ja(&k.name()),
            en: k.name().replace('_', " "),
            value: v,
        })
        .collect();
    let charts = r.charts.iter().map(chart).collect();
    let tables = tables(input);
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
        facts,
        counts,
        notes: r.notes.clone(),
        charts,
        tables,
    }
}

fn missed_window(w: &serde_json::Value) -> String {
    let narrowed = w.get("narrowed").and_then(serde_json::Value::as_bool) == Some(true);
    let months = w.get("lookback_months").and_then(serde_json::Value::as_u64);
    match (narrowed, months) {
        (true, Some(n)) => format!(
            "絞り込みあり: 資格取得日が {} より後の人だけを確認しました（--missed-lookback-months {n}）。それより前は確認していません。",
            w.get("acquisition_dates_after")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
        ),
        (false, Some(n)) => format!("すべての資格取得日（--missed-lookback-months {n} でも全期間）"),
        _ => "基準日までのすべての資格取得日".into(),
    }
}

/// A refused migration (or a dry run a real run would refuse): the exact command that accepts
/// this flag-loss list. An accepted list is said too (not critical, but the decision is there).
fn migration_item(r: &Report, m: &serde_json::Value, invocation: &[String]) -> Option<Item> {
    let b = |k: &str| m.get(k).and_then(serde_json::Value::as_bool) == Some(true);
    let losses = m.get("flag_losses").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let sha = m
        .get("flag_loss_list_sha256")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let given = m.get("accept_flag_losses").and_then(serde_json::Value::as_str);
    let links = vec![
        link("flag_losses.csv"),
        xlsx_link(&labels::worklist_ja("flag_losses", "")),
    ];
    if r.status == ReportStatus::Rejected {
        return Some(Item {
            title: "移行元ファイルに不備があり、何も変更していません".into(),
            text: "不備一覧を確認し、移行元ファイルを直してから再実行してください。".into(),
            en: "Source rejected: nothing changed.".into(),
            command: None,
            links: vec![link("rejects.csv")],
        });
    }
    let refused = b("refused") || r.status == ReportStatus::Refused;
    let would = b("would_be_refused");
    if !(refused || would) {
        return None;
    }
    let what = if refused {
        "移行を拒否しました。台帳は変更せず、何も送信していません。".to_owned()
    } else {
        "ドライランです。このまま本実行すると拒否されます（台帳は変更していません）。".to_owned()
    };
    let mismatch = match given {
        Some(g) if g != sha => {
            format!("指定された --accept-flag-losses {g} は、この移行元のフラグ喪失一覧のSHA-256と違います。")
        }
        _ => String::new(),
    };
    Some(Item {
        title: format!("フラグ喪失 {losses}件: 移行は承認が必要です"),
        text: format!(
            "{what}{mismatch}flag_losses.csv の全件を確認し、失ってよいと判断した場合に限り、次のコマンドで承認して実行してください（理由を記入）。一覧が変わると承認は無効になります。"
        ),
        en: format!(
            "{} {losses} flag loss(es), list SHA-256 {sha}. Only if every loss is intended, accept exactly this list:",
            if refused {
                "Refused: nothing changed."
            } else {
                "Dry run: a real run would be refused."
            }
        ),
        command: Some(accept_command(invocation, sha)),
        links,
    })
}

/// The command line that wrote the report with `--dry-run`, `--accept-flag-losses` and
/// `--reason` taken out, then `--accept-flag-losses <sha> --reason '…'`: the command that
/// accepts exactly this list.
pub fn accept_command(invocation: &[String], sha: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut args = invocation.iter();
    match args.next() {
        Some(prog) => out.push(prog.clone()),
        None => out.extend(["nhi-linkage".to_owned(), "migrate".to_owned(), "…".to_owned()]),
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dry-run" => {}
            "--accept-flag-losses" | "--reason" => {
                args.next();
            }
            _ if a.starts_with("--accept-flag-losses=") || a.starts_with("--reason=") => {}
            _ => out.push(a.clone()),
        }
    }
    let mut cmd: Vec<String> = out.iter().map(|a| shell_quote(a)).collect();
    cmd.push("--accept-flag-losses".into());
    cmd.push(sha.to_owned());
    cmd.push("--reason".into());
    cmd.push("'（承認の理由）'".into());
    cmd.join(" ")
}

/// An argument as a POSIX shell reads it back: as it is when it holds only safe characters,
/// else in single quotes.
fn shell_quote(a: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:@%+,…".contains(c);
    if !a.is_empty() && a.chars().all(safe) {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn chart(c: &super::Chart) -> ChartView {
    let max = c.bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (200u64, 400u64, 22u64);
    ChartView {
        title: c.title.clone(),
        width: label_w + bar_w + 80,
        height: row_h * c.bars.len() as u64 + 4,
        label_x: label_w - 6,
        bar_x: label_w,
        bars: c
            .bars
            .iter()
            .enumerate()
            .map(|(i, (label, v))| {
                let y = i as u64 * row_h + 2;
                let w = if *v == 0 { 0 } else { (v * bar_w / max).max(1) };
                Bar {
                    label: labels::summary_ja(&format!("migration_{label}"))
                        .strip_prefix("移行: ")
                        .map_or_else(|| label.clone(), |s| format!("{s} {label}")),
                    value: *v,
                    y,
                    text_y: y + 14,
                    w,
                    h: row_h - 6,
                    value_x: label_w + w + 4,
                }
            })
            .collect(),
    }
}

fn columns(names: &[&str]) -> Vec<Column> {
    names
        .iter()
        .map(|n| Column {
            ja: labels::column_ja(n).to_owned(),
            en: n.replace('_', " "),
        })
        .collect()
}

fn flags_ja(cell: &str) -> String {
    cell.split_whitespace()
        .map(labels::flag_ja)
        .collect::<Vec<_>>()
        .join("・")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The lists, each at most [`MAX_ROWS`] rows; lists with no row are left out.
fn tables(input: &Input<'_>) -> Vec<Table> {
    let r = input.report;
    let mut out = Vec::new();
    let more = |total: u64, shown: usize, links: Vec<Link>| (total > shown as u64).then_some(links);
    if !r.inputs.is_empty() {
        let head = ListHead::of(&r.inputs);
        out.push(Table {
            id: "inputs".into(),
            heading: "入力ファイル".into(),
            heading_en: "Inputs".into(),
            todo: String::new(),
            columns: [
                ("ファイル", "file"),
                ("種別", "kind"),
                ("形式", "format"),
                ("文字コード", "encoding"),
                ("状態", "status"),
                ("件数", "records"),
                ("不備", "rejected"),
                ("備考", "note"),
            ]
            .map(|(ja, en)| Column {
                ja: ja.into(),
                en: en.into(),
            })
            .into(),
            rows: head
                .shown()
                .iter()
                .map(|i| Row {
                    critical: i.status == InputStatus::Rejected,
                    cells: vec![
                        i.name.clone(),
                        i.kind.clone(),
                        i.format.clone(),
                        i.encoding.clone(),
                        labels::input_status_ja(i.status).to_owned(),
                        i.records.to_string(),
                        i.rejected.to_string(),
                        i.note.clone().unwrap_or_default(),
                    ],
                })
                .collect(),
            total: head.total,
            more: more(head.total, head.shown().len(), vec![xlsx_link(labels::SUMMARY_SHEET)]),
        });
    }
    if input.rejects.total > 0 {
        let shown = input.rejects.shown();
        out.push(Table {
            id: "rejects".into(),
            heading: "不備一覧".into(),
            heading_en: "Rejects".into(),
            todo: "対応は「今日の対応」のエラーコード別の説明を参照。 / What to do per code: see above.".into(),
            columns: vec![
                Column {
                    ja: "ファイル".into(),
                    en: "file".into(),
                },
                Column {
                    ja: "レコード番号".into(),
                    en: "RecordSequence".into(),
                },
                Column {
                    ja: "行".into(),
                    en: "line".into(),
                },
                Column {
                    ja: "バイト位置".into(),
                    en: "byte offset".into(),
                },
                Column {
                    ja: "項目".into(),
                    en: "field".into(),
                },
                Column {
                    ja: "エラーコード".into(),
                    en: "code".into(),
                },
                Column {
                    ja: "重要".into(),
                    en: "critical".into(),
                },
                Column {
                    ja: "内容".into(),
                    en: "message".into(),
                },
            ],
            rows: shown
                .iter()
                .map(|x| Row {
                    critical: x.critical,
                    cells: vec![
                        x.file.clone(),
                        opt(x.record_sequence),
                        opt(x.line),
                        opt(x.byte_offset),
                        x.field.clone().unwrap_or_default(),
                        x.code.clone(),
                        if x.critical {
                            "重要 CRITICAL".into()
                        } else {
                            String::new()
                        },
                        x.message.clone(),
                    ],
                })
                .collect(),
            total: input.rejects.total,
            more: more(
                input.rejects.total,
                shown.len(),
                vec![link("rejects.csv"), xlsx_link(labels::REJECTS_SHEET)],
            ),
        });
    }
    if !r.carries.is_empty() {
        let head = ListHead::of(&r.carries);
        out.push(Table {
            id: "carries".into(),
            heading: "フラグ引継（年齢到達）".into(),
            heading_en: "Age-transition carries (R3)".into(),
            todo: String::new(),
            columns: vec![
                Column {
                    ja: "国保 保険者番号".into(),
                    en: "from insurer".into(),
                },
                Column {
                    ja: "国保 被保険者枝番".into(),
                    en: "from key".into(),
                },
                Column {
                    ja: "後期 保険者番号".into(),
                    en: "to insurer".into(),
                },
                Column {
                    ja: "後期 被保険者枝番".into(),
                    en: "to key".into(),
                },
                Column {
                    ja: "フラグ".into(),
                    en: "flags".into(),
                },
                Column {
                    ja: "照合".into(),
                    en: "rule".into(),
                },
                Column {
                    ja: "照合元".into(),
                    en: "via".into(),
                },
                Column {
                    ja: "資格取得日".into(),
                    en: "QualificationDate".into(),
                },
                Column {
                    ja: "未来日".into(),
                    en: "future".into(),
                },
            ],
            rows: head
                .shown()
                .iter()
                .map(|c| Row {
                    critical: false,
                    cells: vec![
                        c.from_insurer.clone(),
                        c.from_subscriber_key.clone(),
                        c.to_insurer.clone(),
                        c.to_subscriber_key.clone(),
                        c.flags
                            .iter()
                            .map(|f| labels::flag_ja(f))
                            .collect::<Vec<_>>()
                            .join("・"),
                        labels::carry_rule_ja(&c.rule).to_owned(),
                        labels::carry_rule_ja(&c.via).to_owned(),
                        c.qualification_date.clone(),
                        if c.future_dated { "○".into() } else { String::new() },
                    ],
                })
                .collect(),
            total: head.total,
            more: more(head.total, head.shown().len(), vec![link("report.json")]),
        });
    }
    if !r.flag_changes.is_empty() {
        let head = ListHead::of(&r.flag_changes);
        out.push(Table {
            id: "flag-changes".into(),
            heading: if r.dry_run {
                "フラグ変更（本実行で変わるもの）".into()
            } else {
                "フラグ変更".into()
            },
            heading_en: "Flag changes".into(),
            todo: String::new(),
            columns: vec![
                Column {
                    ja: "保険者番号".into(),
                    en: "insurer".into(),
                },
                Column {
                    ja: "被保険者枝番".into(),
                    en: "key".into(),
                },
                Column {
                    ja: "情報コード".into(),
                    en: "InfoCode".into(),
                },
                Column {
                    ja: "フラグ".into(),
                    en: "flag".into(),
                },
                Column {
                    ja: "変更".into(),
                    en: "change".into(),
                },
            ],
            rows: head
                .shown()
                .iter()
                .map(|f| Row {
                    critical: f.change == FlagChangeKind::Released,
                    cells: vec![
                        f.insurer.clone(),
                        f.subscriber_key.clone(),
                        f.info_code.clone().unwrap_or_default(),
                        labels::flag_ja(&f.flag_type),
                        labels::flag_change_ja(f.change).to_owned(),
                    ],
                })
                .collect(),
            total: head.total,
            more: more(head.total, head.shown().len(), vec![link("report.json")]),
        });
    }
    if input.pending_flags.total > 0 {
        let shown = input.pending_flags.shown();
        out.push(Table {
            id: "pending".into(),
            heading: "保留中のフラグ（加入の到着待ち）".into(),
            heading_en: "Pending flags (R7)".into(),
            todo: "加入の異動が届くと自動で適用されます。長く残る場合は送付元に加入の異動を確認してください。".into(),
            columns: vec![
                Column {
                    ja: "保険者番号".into(),
                    en: "insurer".into(),
                },
                Column {
                    ja: "被保険者枝番".into(),
                    en: "key".into(),
                },
                Column {
                    ja: "フラグ".into(),
                    en: "flag".into(),
                },
                Column {
                    ja: "操作".into(),
                    en: "operation".into(),
                },
                Column {
                    ja: "情報コード".into(),
                    en: "InfoCode".into(),
                },
                Column {
                    ja: "ファイル".into(),
                    en: "file".into(),
                },
                Column {
                    ja: "レコード番号".into(),
                    en: "RecordSequence".into(),
                },
            ],
            rows: shown
                .iter()
                .map(|p| Row {
                    critical: false,
                    cells: vec![
                        p.insurer.clone(),
                        p.subscriber_key.clone(),
                        labels::flag_ja(&p.flag_type),
                        labels::change_ja(&p.operation).to_owned(),
                        p.info_code.clone().unwrap_or_default(),
                        p.file.clone(),
                        p.record_sequence.to_string(),
                    ],
                })
                .collect(),
            total: input.pending_flags.total,
            more: more(input.pending_flags.total, shown.len(), vec![link("report.json")]),
        });
    }
    for w in &input.worklists {
        if w.rows.total == 0 {
            continue;
        }
        let shown = w.rows.shown();
        let crit_col = w.columns.iter().position(|c| *c == "critical");
        let all_crit = ALL_CRITICAL.contains(&w.name);
        let sheet = labels::worklist_ja(w.name, w.title);
        out.push(Table {
            id: format!("worklist-{}", w.name),
            heading: format!("作業リスト: {sheet}"),
            heading_en: w.title.split(" — ").nth(1).unwrap_or(w.title).to_owned(),
            todo: labels::worklist_todo(w.name).unwrap_or_default().to_owned(),
            columns: columns(w.columns),
            rows: shown
                .iter()
                .map(|row| Row {
                    critical: all_crit || crit_col.is_some_and(|i| row.get(i).is_some_and(|c| c == "critical")),
                    cells: row
                        .iter()
                        .zip(w.columns.iter().chain(std::iter::repeat(&"")))
                        .map(|(c, col)| match *col {
                            "flags" | "flag" | "flag_type" => flags_ja(c),
                            // hand-off flag values: 0 none, 1/2 set (自己情報提供不可: with that ReasonCode)
                            "self_info" | "non_disclosure" | "auto_response" => match c.as_str() {
                                "0" => "－".to_owned(),
                                "1" if *col != "self_info" => "設定".to_owned(),
                                "1" | "2" => format!("設定（理由{c}）"),
                                _ => c.clone(),
                            },
                            "critical" if c == "critical" => "重要".to_owned(),
                            _ => c.clone(),
                        })
                        .collect(),
                })
                .collect(),
            total: w.rows.total,
            more: more(
                w.rows.total,
                shown.len(),
                vec![link(&format!("{}.csv", w.name)), xlsx_link(&sheet)],
            ),
        });
    }
    if !r.outputs.is_empty() {
        let head = ListHead::of(&r.outputs);
        out.push(Table {
            id: "outputs".into(),
            heading: "出力ファイル".into(),
            heading_en: "Outputs".into(),
            todo: String::new(),
            columns: vec![
                Column {
                    ja: "ファイル".into(),
                    en: "file".into(),
                },
                Column {
                    ja: "種別".into(),
                    en: "kind".into(),
                },
                Column {
                    ja: "件数".into(),
                    en: "records".into(),
                },
                Column {
                    ja: "バイト数".into(),
                    en: "bytes".into(),
                },
                Column {
                    ja: "SHA-256".into(),
                    en: "".into(),
                },
            ],
            rows: head
                .shown()
                .iter()
                .map(|f| Row {
                    critical: false,
                    cells: vec![
                        f.name.clone(),
                        f.kind.clone(),
                        f.records.to_string(),
                        f.bytes.to_string(),
                        f.sha256.clone(),
                    ],
                })
                .collect(),
            total: head.total,
            more: more(head.total, head.shown().len(), vec![link("report.json")]),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_command_replaces_dry_run_and_earlier_acceptance() {
        let inv: Vec<String> = [
            "/opt/nhi/nhi-linkage",
            "migrate",
            "--ledger",
            "/srv/a b/ledger.sqlite",
            "--dry-run",
            "--accept-flag-losses",
            "00ff",
            "--reason=old",
            "--from",
            "x.csv",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            accept_command(&inv, "abc"),
            "/opt/nhi/nhi-linkage migrate --ledger '/srv/a b/ledger.sqlite' --from x.csv \
             --accept-flag-losses abc --reason '（承認の理由）'"
        );
    }

    #[test]
    fn lists_are_bounded_and_counted_from_the_totals() {
        let mut r = Report::new("r".into(), "20261201".into(), false);
        for i in 0..(MAX_ROWS + 50) {
            r.rejects
                .push(RejectEntry {
                    file: format!("f{i:04}.csv"),
                    record_sequence: Some(i as u64),
                    line: None,
                    byte_offset: None,
                    field: None,
                    code: "E_DATE".into(),
                    message: "bad date".into(),
                    critical: false,
                })
                .unwrap();
        }
        let html = render_report(&r, &[]).unwrap();
        assert!(
            html.contains("f0199.csv") && !html.contains("f0200.csv"),
            "the first 200 only"
        );
        assert!(html.contains("250"), "the total");
        assert!(html.contains("href=\"rejects.csv\""), "a pointer to the full list");
        // a head slice with a larger total (as a spooling engine hands it over)
        let heads = Heads::of(&r).unwrap();
        let mut input = Input::from_report(&r, &heads, &[]);
        input.rejects = ListHead {
            rows: &heads.rejects[..3],
            total: 100_000,
        };
        input.reject_codes.insert(
            "E_DATE".into(),
            CodeTotals {
                total: 100_000,
                critical: 0,
            },
        );
        let html = render(&input).unwrap();
        assert!(html.contains("100000") && !html.contains("f0003.csv"));
    }

    #[test]
    fn values_are_escaped() {
        let mut r = Report::new("r".into(), "20261201".into(), false);
        r.notes.push("<script>alert(1)</script>".into());
        let html = render_report(&r, &[]).unwrap();
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        r.notes[0] = "\"'><b>&amp;".into();
        let html = render_report(&r, &[]).unwrap();
        assert!(html.contains("&quot;&#39;&gt;&lt;b&gt;&amp;amp;"), "{html}");
    }
}
