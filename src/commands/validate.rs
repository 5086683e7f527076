//! `nhi-linkage validate`: checks bulk files against the interchange spec, applies nothing.
//!
//! Streams each file through the readers and only counts records; the diagnostics shown per
//! file are capped so a file full of bad rows cannot exhaust memory.

use super::Exit;
use crate::domain::Catalog;
use crate::error::Diagnostic;
use crate::formats::{self, FileHeader, ReadOptions, RecordOutcome};
use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Diagnostics kept per file; further ones are counted, not shown.
const MAX_SHOWN: usize = 1000;

/// Arguments of `validate`. The help text below is what an operator sees with `--help`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks input files (加入者異動, フラグ設定, 副本, 年齢到達引継) without applying anything.
Each file is read in full: character encoding, XML/CSV syntax, file header, RecordSequence
order, the trailer's record count, and every field of every record. Nothing is written to the
ledger. Error messages never show My Numbers, addresses or other field values.

Result per file:
  OK        the file is valid and can be applied
  ERRORS    the file can be applied, but the listed records will be rejected
  REJECTED  the whole file would be refused; nothing in it would be applied
Each error names the file, line, RecordSequence, field and error code (E_…).

The last line totals the files (OK, with errors, rejected), records and errors. With -q only
the files that are not OK are listed, and nothing at all when every file is OK.

Exit status: 0 all files OK, 1 some file or record has an error, 2 usage error or no files.

Examples:
  nhi-linkage validate inbox/
  nhi-linkage validate --message-format json SubscriberChange_20261121.xml")]
pub struct Args {
    /// Files or folders to check. Folders are searched (including subfolders) for .xml and .csv
    /// files, in name order.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// 副本 layout catalog (item codes per InfoCode). Default: the catalog shipped with the program.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// What validate prints: text for people, json for other programs (`--format` is its older
    /// spelling; `--output-format` names a file syntax in the other commands).
    #[arg(long = "message-format", alias = "format", value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Worker threads for reading a large file in pieces [default: all cores]. Results are
    /// identical whatever the number.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Settings file (TOML) of `run`: its `catalog`, `threads` and `[limits]` apply here too
    /// (command-line flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub limits: super::LimitArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Errors,
    Rejected,
}

#[derive(Debug, Serialize)]
struct FileResult {
    file: String,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<FileHeader>,
    records: u64,
    rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    diagnostics: Vec<Diagnostic>,
    /// Diagnostics found but not listed (over the per-file cap).
    #[serde(skip_serializing_if = "is_zero")]
    diagnostics_not_shown: u64,
}

/// The last line of `validate`'s text output.
#[derive(Debug, Default)]
struct Totals {
    files: u64,
    ok: u64,
    errors: u64,
    rejected: u64,
    records: u64,
    records_rejected: u64,
    diagnostics: u64,
}

impl Totals {
    fn add(&mut self, r: &FileResult) {
        self.files += 1;
        match r.status {
            Status::Ok => self.ok += 1,
            Status::Errors => self.errors += 1,
            Status::Rejected => self.rejected += 1,
        }
        self.records += r.records;
        self.records_rejected += r.rejected;
        self.diagnostics += r.diagnostics.len() as u64 + r.diagnostics_not_shown;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TOTAL {} file(s): {} OK, {} with errors, {} rejected; {} record(s), {} rejected; {} error(s)",
            self.files, self.ok, self.errors, self.rejected, self.records, self.records_rejected, self.diagnostics
        )
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let cfg = super::common::load_config(args.config.as_ref())?;
    super::common::setup_threads(args.threads.or(cfg.threads))?;
    let catalog = match args.catalog.as_ref().or(cfg.catalog.as_ref()) {
        Some(p) => Catalog::load(p).with_context(|| format!("cannot load the layout catalog {}", p.display()))?,
        None => Catalog::default_catalog(),
    };
    let mut files = Vec::new();
    for p in &args.paths {
        if p.is_dir() {
            collect(p, &mut files).with_context(|| format!("cannot list folder {}", p.display()))?;
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            crate::complain!("nhi-linkage: {}: no such file or folder", p.display());
            return Ok(Exit::Usage);
        }
    }
    if files.is_empty() {
        crate::complain!("nhi-linkage: no .xml or .csv files found to check");
        return Ok(Exit::Usage);
    }
    let opts = ReadOptions {
        catalog: &catalog,
        limits: args.limits.apply(cfg.limits.unwrap_or_default()),
    };
    // a closed stdout (`| head`) never stops the check nor changes its exit status
    let mut out = crate::logging::Stdout;
    let quiet = crate::logging::quiet();
    let mut all_ok = true;
    let mut results = Vec::new();
    let mut totals = Totals::default();
    for f in &files {
        let r = check(f, &opts);
        all_ok &= matches!(r.status, Status::Ok);
        totals.add(&r);
        match args.format {
            // -q: only what is wrong
            Format::Text if quiet && matches!(r.status, Status::Ok) => {}
            Format::Text => print_text(&mut out, &r)?,
            Format::Json => results.push(r),
        }
    }
    if args.format == Format::Text && !(quiet && all_ok) {
        writeln!(out, "{totals}")?;
    }
    if args.format == Format::Json {
        #[derive(Serialize)]
        struct Report {
            ok: bool,
            files: Vec<FileResult>,
        }
        serde_json::to_writer_pretty(
            &mut out,
            &Report {
                ok: all_ok,
                files: results,
            },
        )?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(if all_ok { Exit::Ok } else { Exit::Rejected })
}

use OutputFormat as Format;

/// Appends the .xml/.csv files under `dir`, recursively, sorted by name at each level.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, files)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("xml") || e.eq_ignore_ascii_case("csv"))
        {
            files.push(p);
        }
    }
    Ok(())
}

fn check(path: &Path, opts: &ReadOptions) -> FileResult {
    let display = path.display().to_string();
    let mut diagnostics = Vec::new();
    let mut not_shown = 0u64;
    let mut on_record = |o: RecordOutcome| {
        if let RecordOutcome::Rejected { faults, .. } = o {
            for d in faults {
                if diagnostics.len() < MAX_SHOWN {
                    diagnostics.push(d);
                } else {
                    not_shown += 1;
                }
            }
        }
    };
    let result = formats::read_input(path, &display, opts, &mut on_record);
    match result {
        Ok(s) => FileResult {
            file: display,
            status: if s.rejected == 0 { Status::Ok } else { Status::Errors },
            header: Some(s.header),
            records: s.records,
            rejected: s.rejected,
            sha256: Some(formats::hex(&s.sha256)),
            bytes: Some(s.bytes),
            diagnostics,
            diagnostics_not_shown: not_shown,
        },
        Err(e) => FileResult {
            file: display,
            status: Status::Rejected,
            header: e.header,
            records: 0,
            rejected: 0,
            sha256: None,
            bytes: None,
            // Record errors found before the file-level one are moot: nothing would be applied.
            diagnostics: e.diagnostics,
            diagnostics_not_shown: 0,
        },
    }
}

fn print_text(out: &mut impl Write, r: &FileResult) -> std::io::Result<()> {
    let desc = |h: &FileHeader| {
        format!(
            "{}, {}, {}",
            h.kind.name(),
            h.format.extension(),
            match h.encoding {
                formats::TextEncoding::Utf8 => "UTF-8",
                formats::TextEncoding::ShiftJis => "Shift_JIS",
            }
        )
    };
    match (&r.status, &r.header) {
        (Status::Ok, Some(h)) => writeln!(out, "OK {} ({}, {} records)", r.file, desc(h), r.records)?,
        (Status::Errors, Some(h)) => writeln!(
            out,
            "ERRORS {} ({}, {} records, {} rejected; the other records can be applied)",
            r.file,
            desc(h),
            r.records,
            r.rejected
        )?,
        _ => writeln!(
            out,
            "REJECTED {} (the whole file is refused; nothing in it is applied)",
            r.file
        )?,
    }
    for d in &r.diagnostics {
        writeln!(out, "  {d}")?;
    }
    if r.diagnostics_not_shown > 0 {
        writeln!(out, "  … and {} more errors not shown", r.diagnostics_not_shown)?;
    }
    Ok(())
}
