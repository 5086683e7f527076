//! Run reports: `report.json` (machine-readable, keys of spec §6), `report.html` (one
//! self-contained page), `rejects.csv` and one CSV per worklist.
//!
//! Report rows are built from typed values that carry no My Number and no address: the types
//! that hold them ([`crate::domain::IndividualNumber`], [`crate::domain::Address`]) are never put
//! in these structs.

mod html;

use crate::error::Diagnostic;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct InputEntry {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub encoding: String,
    /// applied | skipped | rejected
    pub status: &'static str,
    pub records: u64,
    pub rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
pub struct CarryEntry {
    pub from_insurer: String,
    pub from_subscriber_key: String,
    pub to_insurer: String,
    pub to_subscriber_key: String,
    pub flags: Vec<String>,
    pub rule: String,
    pub via: String,
    pub qualification_date: String,
    pub future_dated: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PendingEntry {
    pub insurer: String,
    pub subscriber_key: String,
    pub flag_type: String,
    pub operation: String,
    pub info_code: Option<String>,
    pub file: String,
    pub record_sequence: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FlagChangeEntry {
    pub insurer: String,
    pub subscriber_key: String,
    pub info_code: Option<String>,
    pub flag_type: String,
    /// set | released | reason_changed
    pub change: String,
}

#[derive(Clone, Debug, Serialize)]
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
    /// The worklist's CSV file, exactly as written into the report folder (column row, then
    /// one CRLF-terminated row per entry).
    pub fn to_csv(&self) -> String {
        let mut s = csv_line(&self.columns);
        for row in &self.rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            s.push_str(&csv_line(&cells));
        }
        s
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub run_id: String,
    pub as_of: String,
    pub dry_run: bool,
    /// completed | completed_with_rejects | aborted
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    pub inputs: Vec<InputEntry>,
    pub rejects: Vec<RejectEntry>,
    pub carries: Vec<CarryEntry>,
    pub pending_flags: Vec<PendingEntry>,
    pub pending_handoffs: u64,
    /// name → row count
    pub worklists: BTreeMap<String, usize>,
    pub outputs: Vec<OutputEntry>,
    /// Flags that changed (or would change, in a dry run).
    pub flag_changes: Vec<FlagChangeEntry>,
    pub summary: BTreeMap<String, u64>,
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
    pub fn new(run_id: String, as_of: String, dry_run: bool) -> Self {
        Report {
            run_id,
            as_of,
            dry_run,
            status: "completed".into(),
            abort_reason: None,
            inputs: Vec::new(),
            rejects: Vec::new(),
            carries: Vec::new(),
            pending_flags: Vec::new(),
            pending_handoffs: 0,
            worklists: BTreeMap::new(),
            outputs: Vec::new(),
            flag_changes: Vec::new(),
            summary: BTreeMap::new(),
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

    /// Writes report.json, report.html, rejects.csv and `<worklist>.csv` into `dir`.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        write_private(&dir.join("report.json"), &json)?;
        write_private(&dir.join("report.html"), html::render(self).as_bytes())?;
        let mut rejects = csv_line(&[
            "file",
            "record_sequence",
            "line",
            "field",
            "code",
            "critical",
            "message",
            "byte_offset",
        ]);
        for r in &self.rejects {
            rejects.push_str(&csv_line(&[
                &r.file,
                &r.record_sequence.map(|s| s.to_string()).unwrap_or_default(),
                &r.line.map(|s| s.to_string()).unwrap_or_default(),
                r.field.as_deref().unwrap_or(""),
                &r.code,
                if r.critical { "critical" } else { "" },
                &r.message,
                &r.byte_offset.map(|o| o.to_string()).unwrap_or_default(),
            ]));
        }
        write_private(&dir.join("rejects.csv"), rejects.as_bytes())?;
        for (name, wl) in &self.worklist_rows {
            write_private(&dir.join(format!("{name}.csv")), wl.to_csv().as_bytes())?;
        }
        for (name, src) in &self.attachments {
            let dst = dir.join(name);
            std::fs::copy(src, &dst).with_context(|| format!("cannot write {}", dst.display()))?;
            std::fs::File::open(&dst)?.sync_all()?;
        }
        Ok(())
    }
}

fn csv_line(cells: &[&str]) -> String {
    let mut s = cells
        .iter()
        .map(|c| crate::formats::writer::csv_escape(c).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    s.push_str("\r\n");
    s
}

/// Writes a file readable by its owner only (reports and outputs hold personal data) and fsyncs it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
