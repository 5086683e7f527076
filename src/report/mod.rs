//! Run reports: `report.json` (machine-readable, keys of spec §6), `report.html` (one
//! self-contained page), `rejects.csv` and one CSV per worklist (UTF-8 with BOM, or Shift_JIS:
//! [`csv`]), and `report.xlsx`, the same lists as one Excel workbook ([`xlsx`]).
//!
//! Report rows are built from typed values that carry no My Number and no address: the types
//! that hold them ([`crate::domain::IndividualNumber`], [`crate::domain::Address`]) are never put
//! in these structs.

pub mod csv;
pub mod html;
pub mod labels;
mod run;
pub mod spooled;
pub mod summary;
mod xlsx;

pub use csv::ReportEncoding;
pub use html::ListHead;
pub use spooled::Spooled;
pub use summary::{Summary, SummaryKey};

use crate::domain::person::{CarryVia, MatchRule};
use crate::domain::{FlagOperation, FlagType};
use crate::error::Diagnostic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a run did with an input file (report.json `inputs[].status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputStatus {
    Applied,
    /// Already applied (R10): nothing in it applied again.
    Skipped,
    /// A file-level error: nothing in it applied.
    Rejected,
}

impl InputStatus {
    /// The name report.json gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            InputStatus::Applied => "applied",
            InputStatus::Skipped => "skipped",
            InputStatus::Rejected => "rejected",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputEntry {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub encoding: String,
    pub status: InputStatus,
    pub records: u64,
    pub rejected: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RejectEntry {
    pub file: String,
    pub record_sequence: Option<u64>,
    pub line: Option<u64>,
    /// 0-based byte offset in the file as stored, where the error names one (encoding errors):
    /// the same offset `validate` prints (§7).
    pub byte_offset: Option<u64>,
    pub field: Option<String>,
    pub code: String,
    pub message: String,
    /// A rejected FlagChange or AgeTransitionHandoff record is critical: a protection may be missing.
    pub critical: bool,
}

impl RejectEntry {
    pub fn from_diag(d: &Diagnostic, critical: bool) -> Self {
        RejectEntry {
            file: d.file.clone(),
            record_sequence: d.record_sequence,
            line: d.line,
            byte_offset: d.byte_offset,
            field: d.field.clone(),
            code: d.code.as_str().to_owned(),
            message: d.message.clone(),
            critical,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarryEntry {
    pub from_insurer: String,
    pub from_subscriber_key: String,
    pub to_insurer: String,
    pub to_subscriber_key: String,
    pub flags: Vec<String>,
    pub rule: MatchRule,
    pub via: CarryVia,
    pub qualification_date: String,
    pub future_dated: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingEntry {
    pub insurer: String,
    pub subscriber_key: String,
    #[serde(with = "flag_type_name")]
    pub flag_type: FlagType,
    pub operation: PendingOperation,
    pub info_code: Option<String>,
    pub file: String,
    pub record_sequence: u64,
}

/// What a pending flag does once its enrollment arrives (report.json
/// `pending_flags[].operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingOperation {
    Set,
    Release,
}

impl From<FlagOperation> for PendingOperation {
    fn from(op: FlagOperation) -> Self {
        match op {
            FlagOperation::Set => PendingOperation::Set,
            FlagOperation::Release => PendingOperation::Release,
        }
    }
}

/// A [`FlagType`] in report.json by its English name (`SelfInfoProvisionProhibited`).
mod flag_type_name {
    use crate::domain::FlagType;
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(t: &FlagType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.name_en())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FlagType, D::Error> {
        let name = String::deserialize(d)?;
        FlagType::ALL
            .iter()
            .copied()
            .find(|t| t.name_en() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown flag type {name:?}")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagChangeEntry {
    pub insurer: String,
    pub subscriber_key: String,
    pub info_code: Option<String>,
    pub flag_type: String,
    pub change: FlagChangeKind,
}

/// How a flag changed (report.json `flag_changes[].change`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagChangeKind {
    Set,
    Released,
    /// 自己情報提供不可's ReasonCode changed.
    ReasonChanged,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    pub name: String,
    pub kind: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// One worklist: a name, the columns, and rows of plain strings (never a My Number or an address).
#[derive(Clone, Debug, Serialize)]
pub struct Worklist {
    pub title: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Worklist {
    /// The worklist's CSV file as written into the report folder in the default encoding
    /// (UTF-8 with BOM; column row, then one CRLF-terminated row per entry).
    pub fn to_csv(&self) -> String {
        csv::table(&self.columns, self.rows.iter().map(|r| r.iter().map(String::as_str)))
    }
}

/// Which command wrote a report: report.html's title and what its 今日の対応 looks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportKind {
    /// `run` (and `merge-shards`, which writes a run's report): 夜間処理レポート.
    #[default]
    Run,
    /// `age-transition extract`: 75歳到達抽出レポート.
    Extract,
    /// `migrate`: 移行レポート.
    Migrate,
}

/// How a command ended (report.json `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Completed,
    CompletedWithRejects,
    /// Completed, but a person must act now (a withheld registration, a critical review case, a
    /// missed hand-off).
    CompletedWithCriticalFindings,
    /// Nothing committed or published.
    Aborted,
    /// `migrate`: refused (flag losses not accepted); nothing changed.
    Refused,
    /// `migrate`: the source was rejected; nothing changed.
    Rejected,
}

impl ReportStatus {
    /// The name report.json gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Completed => "completed",
            ReportStatus::CompletedWithRejects => "completed_with_rejects",
            ReportStatus::CompletedWithCriticalFindings => "completed_with_critical_findings",
            ReportStatus::Aborted => "aborted",
            ReportStatus::Refused => "refused",
            ReportStatus::Rejected => "rejected",
        }
    }

    /// A run that completed (with or without rejects or critical findings).
    pub fn completed(self) -> bool {
        matches!(
            self,
            ReportStatus::Completed | ReportStatus::CompletedWithRejects | ReportStatus::CompletedWithCriticalFindings
        )
    }
}

/// A report, written by [`Report::write_to`] and read back (`merge-shards` reads the shards'
/// report.json as one): the keys report.json does not hold come back empty.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// The command that wrote it (not in report.json: `run_id` and the sections say it).
    #[serde(skip)]
    pub kind: ReportKind,
    pub run_id: String,
    pub as_of: String,
    pub dry_run: bool,
    pub status: ReportStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    pub inputs: Vec<InputEntry>,
    /// Every reject, spooled (a file of a million bad records costs a file, not memory).
    pub rejects: Spooled<RejectEntry>,
    pub carries: Vec<CarryEntry>,
    /// Every pending flag event in the ledger, spooled like the rejects.
    pub pending_flags: Spooled<PendingEntry>,
    pub pending_handoffs: u64,
    /// name → row count
    pub worklists: BTreeMap<String, usize>,
    pub outputs: Vec<OutputEntry>,
    /// Flags that changed (or would change, in a dry run).
    pub flag_changes: Vec<FlagChangeEntry>,
    pub summary: Summary,
    #[serde(skip)]
    pub worklist_rows: BTreeMap<String, Worklist>,
    /// Command-specific sections (e.g. `migration`), written as top-level keys of report.json.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Lines shown in report.html under the summary (e.g. an operator's decision); what they say
    /// belongs in `extra` too, for report.json.
    #[serde(skip)]
    pub notes: Vec<String>,
    /// Bar charts drawn inline (SVG) in report.html, after the summary.
    #[serde(skip)]
    pub charts: Vec<Chart>,
    /// Files written elsewhere while streaming (e.g. a large `diff.csv`), copied into the report
    /// folder under the given name. Their row counts belong in `worklists`.
    #[serde(skip)]
    pub attachments: BTreeMap<String, PathBuf>,
}

/// A simple bar chart: one labelled bar per value.
#[derive(Clone, Debug, Serialize)]
pub struct Chart {
    pub title: String,
    pub bars: Vec<(String, u64)>,
}

impl Report {
    /// A run's report, begun as soon as its run id is known: from now on the process's log
    /// lines carry that run id ([`crate::logging::set_run_id`]).
    pub fn new(run_id: String, as_of: String, dry_run: bool) -> Self {
        crate::logging::set_run_id(&run_id);
        Report {
            kind: ReportKind::Run,
            run_id,
            as_of,
            dry_run,
            status: ReportStatus::Completed,
            abort_reason: None,
            inputs: Vec::new(),
            rejects: Spooled::default(),
            carries: Vec::new(),
            pending_flags: Spooled::default(),
            pending_handoffs: 0,
            worklists: BTreeMap::new(),
            outputs: Vec::new(),
            flag_changes: Vec::new(),
            summary: Summary::default(),
            worklist_rows: BTreeMap::new(),
            extra: BTreeMap::new(),
            notes: Vec::new(),
            charts: Vec::new(),
            attachments: BTreeMap::new(),
        }
    }

    pub fn add_worklist(&mut self, name: &str, wl: Worklist) {
        self.worklists.insert(name.to_owned(), wl.rows.len());
        self.worklist_rows.insert(name.to_owned(), wl);
    }

    /// The exit status the command ends with for this report (README's table): what
    /// report.json's `exit_status` says.
    pub fn exit_status(&self) -> u8 {
        let would_refuse = self
            .extra
            .get("migration")
            .and_then(|m| m.get("would_be_refused"))
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        match self.status {
            ReportStatus::Rejected => 1,
            ReportStatus::Refused => 5,
            ReportStatus::Aborted => 3,
            _ if would_refuse => 5,
            ReportStatus::CompletedWithCriticalFindings => 5,
            ReportStatus::CompletedWithRejects => 1,
            _ if !self.rejects.is_empty() => 1,
            ReportStatus::Completed => 0,
        }
    }

    /// How many rejects are critical (one pass over the spooled list).
    pub fn critical_rejects(&self) -> Result<usize> {
        let mut n = 0;
        for e in self.rejects.iter() {
            n += usize::from(e?.critical);
        }
        Ok(n)
    }

    /// Sets the folder the report's long lists (rejects, pending flags) spill into: the run's
    /// spill folder beside the ledger.
    pub fn spill_to(&mut self, dir: &Path) {
        self.rejects.spill_to(dir.to_path_buf());
        self.pending_flags.spill_to(dir.to_path_buf());
    }

    /// Rejects in one order whatever produced them (one process, or shards merged): by input
    /// file (the order of `inputs`; rejects of no input file last), then RecordSequence
    /// (file-level errors first), line and byte offset. The sort is stable: what is equal keeps
    /// its order.
    pub fn sort_rejects(&mut self) -> Result<()> {
        let key = self.reject_key();
        self.rejects.sort_by_key(key)
    }

    fn reject_key(&self) -> impl Fn(&RejectEntry) -> RejectKey + use<> {
        let pos: std::collections::HashMap<String, usize> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        move |e: &RejectEntry| {
            (
                pos.get(e.file.as_str()).copied().unwrap_or(usize::MAX),
                e.record_sequence,
                e.line,
                e.byte_offset,
            )
        }
    }

    /// Writes report.json, report.html, rejects.csv, `<worklist>.csv` and report.xlsx into
    /// `dir`. Rejects are listed in [`Report::sort_rejects`] order; the CSV files are in the
    /// encoding set by [`configure`]. The long lists are streamed from their spool files.
    pub fn write_to(&mut self, dir: &Path) -> Result<()> {
        let t = std::time::Instant::now();
        self.sort_rejects()?;
        tracing::debug!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            rejects = self.rejects.len(),
            "rejects sorted"
        );
        let settings = settings();
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let finished = chrono::Utc::now();
        let meta = JsonMeta {
            report_schema_version: REPORT_SCHEMA_VERSION,
            program_version: env!("CARGO_PKG_VERSION"),
            program_commit: env!("NHI_GIT_COMMIT"),
            started_at: jst(settings.started_at.unwrap_or(finished)),
            finished_at: jst(finished),
            exit_status: self.exit_status(),
            report_encoding: settings.encoding.label(),
            report: self,
        };
        let t = std::time::Instant::now();
        write_private_with(&dir.join("report.json"), |w| {
            serde_json::to_writer_pretty(&mut *w, &meta)?;
            w.write_all(b"\n")?;
            Ok(())
        })?;
        tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "report.json written");
        write_private(
            &dir.join("report.html"),
            html::render_report(self, &invocation())?.as_bytes(),
        )?;
        tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "report.html written");
        write_private_with(&dir.join("rejects.csv"), |w| {
            csv::write_table(
                w,
                settings.encoding,
                &REJECT_COLUMNS,
                self.rejects.iter().map(|r| r.map(|e| reject_cells(&e))),
            )
        })?;
        tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "rejects.csv written");
        for (name, wl) in &self.worklist_rows {
            write_private(
                &dir.join(format!("{name}.csv")),
                &csv::encode(&wl.to_csv(), settings.encoding),
            )?;
        }
        write_private(&dir.join("report.xlsx"), &xlsx::render(self)?)?;
        tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "report.xlsx written");
        for (name, src) in &self.attachments {
            let dst = dir.join(name);
            if name.ends_with(".csv") {
                copy_csv(src, &dst, settings.encoding).with_context(|| format!("cannot write {}", dst.display()))?;
            } else {
                std::fs::copy(src, &dst).with_context(|| format!("cannot write {}", dst.display()))?;
            }
            std::fs::File::open(&dst)?.sync_all()?;
        }
        Ok(())
    }
}

/// Copies a CSV attachment (UTF-8 without BOM, as spooled) in the report folder's CSV encoding:
/// UTF-8 with a BOM, or Shift_JIS ([`csv::encode`]), streaming line by line (a migration's
/// diff.csv has a row per subscriber).
fn copy_csv(src: &Path, dst: &Path, encoding: ReportEncoding) -> Result<()> {
    use std::io::{BufRead, Write};
    let mut input = std::io::BufReader::new(std::fs::File::open(src)?);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut out = std::io::BufWriter::new(o.open(dst)?);
    if encoding == ReportEncoding::Utf8 {
        out.write_all(csv::BOM.as_bytes())?;
    }
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let text = if first {
            line.strip_prefix(csv::BOM).unwrap_or(&line)
        } else {
            &line
        };
        first = false;
        match encoding {
            ReportEncoding::Utf8 => out.write_all(text.as_bytes())?,
            ReportEncoding::ShiftJis => out.write_all(&csv::encode(text, encoding))?,
        }
    }
    out.flush()?;
    Ok(())
}

type RejectKey = (usize, Option<u64>, Option<u64>, Option<u64>);

/// The columns of rejects.csv (README documents them). `byte_offset` is last so that tools
/// reading the earlier columns by position keep working.
pub const REJECT_COLUMNS: [&str; 8] = [
    "file",
    "record_sequence",
    "line",
    "field",
    "code",
    "critical",
    "message",
    "byte_offset",
];

/// One row of rejects.csv, in [`REJECT_COLUMNS`] order.
pub fn reject_cells(r: &RejectEntry) -> Vec<String> {
    vec![
        r.file.clone(),
        r.record_sequence.map(|s| s.to_string()).unwrap_or_default(),
        r.line.map(|s| s.to_string()).unwrap_or_default(),
        r.field.clone().unwrap_or_default(),
        r.code.clone(),
        if r.critical { "critical" } else { "" }.to_owned(),
        r.message.clone(),
        r.byte_offset.map(|o| o.to_string()).unwrap_or_default(),
    ]
}

/// report.json's schema: raised when a key changes meaning or goes away (new keys do not raise
/// it). 2 (this program): `report_schema_version`, `program_version`, `program_commit`,
/// `started_at`, `finished_at`, `exit_status` and `report_encoding` before the keys of spec §6;
/// rejects in input-file order.
pub const REPORT_SCHEMA_VERSION: u32 = 2;

/// The keys every report.json starts with, then the report's own.
#[derive(Serialize)]
struct JsonMeta<'a> {
    report_schema_version: u32,
    program_version: &'static str,
    program_commit: &'static str,
    started_at: String,
    finished_at: String,
    exit_status: u8,
    report_encoding: &'static str,
    #[serde(flatten)]
    report: &'a Report,
}

/// What the command line decides for every report the process writes.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Encoding of the CSV files (`--report-encoding`).
    pub encoding: ReportEncoding,
    /// When the command started (report.json `started_at`); unset: the time of writing.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

static SETTINGS: std::sync::Mutex<Settings> = std::sync::Mutex::new(Settings {
    encoding: ReportEncoding::Utf8,
    started_at: None,
});

/// Sets the CSV encoding of the reports this process writes (the commands call it once, from
/// `--report-encoding` or the config file's `report_encoding`).
pub fn configure(encoding: ReportEncoding) {
    SETTINGS.lock().unwrap_or_else(|e| e.into_inner()).encoding = encoding;
}

/// Records the command's start (report.json `started_at`).
pub fn mark_started() {
    SETTINGS.lock().unwrap_or_else(|e| e.into_inner()).started_at = Some(chrono::Utc::now());
}

static INVOCATION: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Records the command line (program and arguments) so that a report can show the exact
/// command that continues from it (a refused migration's `--accept-flag-losses …`). Set once
/// by the commands that need it; later calls are ignored.
pub fn set_invocation(args: Vec<String>) {
    let _ = INVOCATION.set(args);
}

fn invocation() -> Vec<String> {
    INVOCATION.get().cloned().unwrap_or_default()
}

fn settings() -> Settings {
    *SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Japan time with its offset, to the second: `2026-12-01T02:00:05+09:00`.
pub fn jst(t: chrono::DateTime<chrono::Utc>) -> String {
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).expect("+09:00");
    t.with_timezone(&tokyo).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A report cell as a spreadsheet will not run it: a cell beginning with `=`, `+`, `-`, `@`
/// (or a tab or CR, which some spreadsheets skip before one) gets a leading `'`. Report and
/// worklist CSVs are opened in spreadsheets; a file name such as `=HYPERLINK(…)` must stay text.
/// The same rule applies in report.xlsx.
pub fn neutral_cell(c: &str) -> std::borrow::Cow<'_, str> {
    if c.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{c}").into()
    } else {
        c.into()
    }
}

/// Writes a file readable by its owner only (reports and outputs hold personal data) and fsyncs it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_private_with(path, |w| Ok(w.write_all(bytes)?))
}

/// [`write_private`] for content written piece by piece through a buffer.
pub fn write_private_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
    write(&mut w).with_context(|| format!("cannot write {}", path.display()))?;
    let f = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
