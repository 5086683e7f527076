//! `run`: one nightly (or age-transition) batch, end to end.
//!
//! Order of work, chosen so that a kill at any moment loses and doubles nothing (R12):
//! 1. read every inbox file (in parallel) into the spool (sorted by subscriber, spilled to disk
//!    past `--chunk-records`), R10 check, order files (R1);
//! 2. in one ledger transaction, chunk by chunk: apply wave 1 (everything but 後期), then wave 2
//!    (後期) with carries resolved against the ledger; match hand-offs; R5; store;
//! 3. stream the linkage from the ledger into staging folders, verifying the safety invariant
//!    (R4) group by group; report; fsync; MANIFEST.json;
//! 4. record the run as `committed` with its staging paths, COMMIT (synchronous=FULL);
//! 5. rename staging → final, mark the run `published`.
//!
//! SIGTERM/SIGINT ([`super::interrupt`]) are noticed after reading, after applying, after
//! writing the outputs and before commit; the run then rolls back, removes its staging and returns
//! [`super::interrupt::Interrupted`], so nothing partial is committed or published.
//!
//! A rerun first finishes any committed-but-unpublished run (renames) and removes staging left by
//! uncommitted ones. Run ids are derived from the inputs, so a rerun after a crash has the same id.

use super::batch::{Batch, BatchFile, BatchOutcome, SubKey, apply_batch, flag_row};
use super::interrupt;
use super::spool::{self, Spool};
use crate::domain::person::{Enrollment, Status, flag_diff};
use crate::domain::{
    Catalog, Date, FileKind, FlagOperation, FlagType, InsurerNumber, ProcessingCode, Record, SubscriberKey, Timestamp,
};
use crate::error::{Diagnostic, ErrorCode};
use crate::formats::linkage::{
    FlagRow, FukuhonRow, LinkageLayout, ProvisionControl, QualificationRow, StandardLayout, SubscriberGroup, Written,
    linkage_header,
};
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{FileHeader, Format, Limits, ReadOptions, RecordOutcome, TextEncoding, hex, read_input};
use crate::ledger::{self, scratch};
use crate::publish::{sync_dir, write_linkage_file};
use crate::report::{
    CarryEntry, FlagChangeEntry, FlagChangeKind, InputEntry, InputStatus, OutputEntry, PendingEntry, RejectEntry,
    Report, ReportStatus, Spooled, SummaryKey, Worklist, write_private,
};
use crate::shard::{Gate, Shard}; // scale-out hook (see shard.rs)
use anyhow::{Context, Result, bail};
use rayon::iter::{IndexedParallelIterator, IntoParallelRefIterator, ParallelIterator};
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// Options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    pub reports: PathBuf,
    pub ledger: PathBuf,
    pub as_of: Date,
    pub dry_run: bool,
    /// `--init-ledger`: create the ledger when nothing is at its path (otherwise refused).
    pub init_ledger: bool,
    pub format: Format,
    pub encoding: TextEncoding,
    pub unmappable: UnmappablePolicy,
    pub catalog: Catalog,
    pub limits: Limits,
    /// Records applied per chunk: a larger input spills to disk and is applied chunk by chunk,
    /// which bounds memory whatever the load ([`spool::DEFAULT_CHUNK_RECORDS`]).
    pub chunk_records: u64,
    /// `--shard I/N`: only this shard's subscribers (scale-out hook, see shard.rs).
    pub shard: Option<Shard>,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Completed,
    CompletedWithRejects,
    /// Completed, but a person must act now: a group was withheld (R4, v1.1) or the review
    /// worklist holds a critical case (stale release, mismatched My Number, …).
    CompletedWithCriticalFindings,
    /// The safety invariant failed or output could not be written: nothing committed or published.
    Aborted,
}

#[derive(Debug)]
pub struct RunResult {
    pub status: RunStatus,
    pub report: Report,
    pub report_dir: PathBuf,
    pub outbox_dir: Option<PathBuf>,
}

/// Writing the outputs aside failed before the commit: the ledger was rolled back and nothing
/// was published (exit 3, like an R4 abort).
#[derive(Debug, thiserror::Error)]
#[error("output failed; the ledger was rolled back, nothing was committed or published")]
pub struct OutputFailed;

/// The R4 violation.
#[derive(Debug, thiserror::Error)]
#[error("E_FLAG_WOULD_BE_CLEARED: {0}")]
pub struct FlagWouldBeCleared(pub String);

/// Test hook: `NHI_FAILPOINT=<name>` stops the process at that phase (crash tests, R12) or
/// injects a writer fault (R4 tests).
fn failpoint(name: &str) -> bool {
    std::env::var("NHI_FAILPOINT").is_ok_and(|v| v.split(',').any(|p| p == name))
}
fn crash_at(name: &str) {
    if failpoint(name) {
        eprintln!("nhi-linkage: failpoint {name}: simulated crash");
        std::process::exit(86);
    }
}

/// Test hook: `NHI_FAILPOINT=<name>` holds the run at that phase boundary until a signal
/// arrives (at most 60 s), so signal tests hit each check deterministically.
fn wait_at(name: &str) {
    if failpoint(name) {
        eprintln!("nhi-linkage: failpoint {name}: waiting for a signal");
        let start = std::time::Instant::now();
        while !interrupt::requested() && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

struct LoadedFile {
    name: String,
    sha: String,
    header: Option<FileHeader>,
    /// Its rejected records' errors (spooled: a file can hold a million bad records).
    rejects: Spooled<RejectEntry>,
    /// How many records the rejects are about (distinct RecordSequences).
    rejected_records: u64,
    file_errors: Vec<Diagnostic>,
    total: u64,
    status: InputStatus,
    note: Option<String>,
}

/// The inbox's own `.xml`/`.csv` files, in name order. Only regular files directly in the
/// inbox are read: sub-folders (operators keep processed files in `inbox/processed/`) are not
/// entered; a FIFO, socket or device is skipped with a warning, never opened (a FIFO would block
/// the run while it holds the lock); a symbolic link is read only when it leads to a regular
/// file directly in the inbox, never outside it.
fn list_inbox(inbox: &Path) -> Result<Vec<PathBuf>> {
    let canon = std::fs::canonicalize(inbox).with_context(|| format!("cannot read inbox {}", inbox.display()))?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(inbox).with_context(|| format!("cannot read inbox {}", inbox.display()))? {
        let e = e.with_context(|| format!("cannot read inbox {}", inbox.display()))?;
        let p = e.path();
        let wanted = matches!(
            p.extension()
                .and_then(|x| x.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("xml" | "csv")
        );
        let ft = e.file_type().with_context(|| format!("cannot read {}", p.display()))?;
        if ft.is_dir() {
            continue; // e.g. inbox/processed/: not read
        }
        if !wanted {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if ft.is_file() {
            out.push(p);
        } else if ft.is_symlink() {
            match std::fs::canonicalize(&p) {
                Ok(t) if t.parent() == Some(canon.as_path()) && t.is_file() => out.push(p),
                _ => tracing::warn!(
                    file = %name,
                    "skipped: a symbolic link that does not lead to a regular file in the inbox (links are not followed out of the inbox)"
                ),
            }
        } else {
            tracing::warn!(file = %name, "skipped: not a regular file (a FIFO, socket or device is never read)");
        }
    }
    out.sort();
    Ok(out)
}

/// What identifies a file's content without reading it: device, inode, size, modification and
/// status-change times. Equal before and after the read ⇒ the bytes parsed (and hashed) are
/// the file's bytes, not a mix of two versions.
fn identity(path: &Path) -> std::io::Result<(u64, u64, u64, i64, i64, i64, i64)> {
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ))
    }
    #[cfg(not(unix))]
    {
        let t = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        Ok((0, 0, m.len(), t.as_secs() as i64, t.subsec_nanos() as i64, 0, 0))
    }
}

/// Test hook: `NHI_FAILPOINT=pause-after-file` holds the run after a file was read, until the
/// file named by `NHI_FAILPOINT_RESUME` exists (at most 60 s), so a test can change the file
/// between the reading and the check that it did not change.
fn pause_after_file(name: &str) {
    if failpoint("pause-after-file") {
        eprintln!("nhi-linkage: failpoint pause-after-file: read {name}");
        let gate = std::env::var_os("NHI_FAILPOINT_RESUME").map(PathBuf::from);
        let start = std::time::Instant::now();
        while gate.as_ref().is_some_and(|g| !g.exists()) && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Reads one file, spooling the accepted records this process applies (`gate`: all of them, or
/// this shard's) under `tag`. A spool write error (disk full) is an environment error of the
/// run, not a property of the file.
fn load(
    path: &Path,
    inbox: &Path,
    opts: &ReadOptions,
    spool: &Spool,
    spill_dir: &Path,
    tag: u32,
    gate: &Gate,
) -> Result<LoadedFile> {
    let name = path
        .strip_prefix(inbox)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/");
    let rejected_whole = |name: String, message: String| LoadedFile {
        file_errors: vec![Diagnostic::new(&name, ErrorCode::Schema, message)],
        name,
        sha: String::new(),
        header: None,
        rejects: Spooled::default(),
        rejected_records: 0,
        total: 0,
        status: InputStatus::Rejected,
        note: None,
    };
    let before = match identity(path) {
        Ok(id) if std::fs::metadata(path).is_ok_and(|m| m.is_file()) => id,
        _ => {
            return Ok(rejected_whole(
                name,
                "not a regular file any more, or gone: not read".into(),
            ));
        }
    };
    let mut rejects = Spooled::in_dir(spill_dir.to_path_buf());
    let mut rejected_seqs: Vec<u64> = Vec::new();
    let mut spool_error = None;
    let res = read_input(path, &name, opts, &mut |o| match o {
        RecordOutcome::Accepted(Record::AgeTransitionInquiry(_)) => {} // refused below (R13)
        RecordOutcome::Accepted(r) if gate.admit(&r) => {
            if spool_error.is_none() {
                if let Err(e) = spool.push(tag, r) {
                    spool_error = Some(e);
                }
            }
        }
        RecordOutcome::Accepted(_) => {} // another shard's
        RecordOutcome::Rejected { faults, .. } => {
            rejected_seqs.extend(faults.iter().filter_map(|d| d.record_sequence));
            if spool_error.is_none() {
                if let Err(e) = rejects.extend(faults.iter().map(|d| RejectEntry::from_diag(d, false))) {
                    spool_error = Some(e);
                }
            }
        }
    });
    if let Some(e) = spool_error {
        return Err(e);
    }
    pause_after_file(&name);
    if identity(path).ok() != Some(before) {
        // its records stay in the spool unused, like those of any rejected file
        return Ok(rejected_whole(
            name,
            "the file changed while it was read (size, modification time or inode differ): rejected whole, nothing in it \
             applied; let the sender finish writing it (write aside, then rename into the inbox) and run again"
                .into(),
        ));
    }
    Ok(match res {
        Ok(s) if s.header.kind == FileKind::AgeTransitionInquiry => LoadedFile {
            name: name.clone(),
            sha: hex(&s.sha256),
            header: Some(s.header),
            rejects: Spooled::default(),
            rejected_records: 0,
            file_errors: vec![
                Diagnostic::new(
                    &name,
                    ErrorCode::Schema,
                    "an AgeTransitionInquiry file is answered on the 国保 side (`age-transition answer`), not applied by `run`",
                )
                .field("FileKind"),
            ],
            total: 0,
            status: InputStatus::Rejected,
            note: None,
        },
        Ok(s) => LoadedFile {
            name,
            sha: hex(&s.sha256),
            header: Some(s.header),
            rejects,
            rejected_records: {
                rejected_seqs.sort_unstable();
                rejected_seqs.dedup();
                rejected_seqs.len() as u64
            },
            file_errors: Vec::new(),
            total: s.records,
            status: InputStatus::Applied,
            note: None,
        },
        Err(r) => LoadedFile {
            name,
            sha: String::new(),
            header: r.header,
            rejects: Spooled::default(),
            rejected_records: 0,
            file_errors: r.diagnostics,
            total: 0,
            status: InputStatus::Rejected,
            note: None,
        },
    })
}

/// A span that shows as a progress bar on a terminal (a spinner when `len` is unknown).
fn progress_span(what: &'static str, len: Option<u64>) -> tracing::Span {
    use tracing_indicatif::style::ProgressStyle;
    let span = tracing::info_span!("phase", phase = what);
    let template = match len {
        Some(_) => "{spinner} {span_fields} {pos}/{len} {wide_bar} {elapsed}",
        None => "{spinner} {span_fields} {elapsed}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        span.pb_set_style(&style);
    }
    if let Some(n) = len {
        span.pb_set_length(n);
    }
    span
}

fn sha_file(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

/// Feeds the ledger's previous run id into a run id's hash (see [`ledger::last_run_id`]). A
/// shard ledger's run id is taken without its `-s{I}of{N}` suffix, so that shard ledgers and a
/// single ledger chain the same ids.
pub fn chain_run_hash(h: &mut Sha256, conn: &Connection) -> Result<()> {
    if let Some(prev) = ledger::last_run_id(conn)? {
        let prev = Shard::split_run_id(&prev).map_or(prev.as_str(), |(base, _)| base);
        h.update(b"after:");
        h.update(prev.as_bytes());
        h.update(b"\n");
    }
    Ok(())
}

/// Moves a committed run's staged folders to their final names and marks the run published.
/// A published folder is never replaced: one that holds the very same files (a restored ledger
/// running the same night again) is kept and the staging dropped; any other is an error. An error
/// after the commit (a path in the way, a full disk) is returned inside [`PublishFailed`], which
/// says what was committed and published and what to do.
fn publish(conn: &Connection, r: &ledger::RunRow) -> Result<()> {
    publish_inner(conn, r).map_err(|e| e.context(PublishFailed::of(r)))
}

fn publish_inner(conn: &Connection, r: &ledger::RunRow) -> Result<()> {
    for (staging, fin, linkage) in [
        (&r.outbox_staging, &r.outbox_final, true),
        (&r.report_staging, &r.report_final, false),
    ] {
        if let (Some(s), Some(f)) = (staging, fin) {
            let (s, f) = (Path::new(s), Path::new(f));
            if s.exists() {
                if f.exists() && !linkage {
                    // an earlier report of this run id (a restored ledger): kept beside
                    let aside = (1..)
                        .map(|n| f.with_file_name(format!("{}.earlier-{n}", r.run_id)))
                        .find(|p| !p.exists())
                        .expect("a free name");
                    std::fs::rename(f, &aside).with_context(|| format!("cannot move {} aside", f.display()))?;
                }
                if f.exists() {
                    if same_files(s, f)? {
                        std::fs::remove_dir_all(s).with_context(|| format!("cannot remove {}", s.display()))?;
                        continue;
                    }
                    bail!(
                        "run {} is committed in the ledger, but {} already holds a different published folder: \
                         refusing to replace it. Move that folder aside (it was published by another ledger or \
                         before a restore) and run again to publish {}",
                        r.run_id,
                        f.display(),
                        s.display()
                    );
                }
                std::fs::rename(s, f).with_context(|| format!("cannot rename {} to {}", s.display(), f.display()))?;
                sync_dir(f.parent().unwrap_or(Path::new(".")));
            } else if !f.exists() {
                bail!(
                    "run {} was committed but its staged output {} is missing",
                    r.run_id,
                    s.display()
                );
            }
        }
    }
    crash_at("after-rename");
    ledger::mark_published(conn, &r.run_id).context("cannot record the run as published in the ledger")
}

/// Whether two folders hold the same files with the same bytes.
fn same_files(a: &Path, b: &Path) -> Result<bool> {
    let list = |d: &Path| -> Result<BTreeMap<std::ffi::OsString, Vec<u8>>> {
        let mut m = BTreeMap::new();
        for e in std::fs::read_dir(d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e?;
            if e.file_type()?.is_file() {
                m.insert(e.file_name(), std::fs::read(e.path())?);
            }
        }
        Ok(m)
    };
    Ok(list(a)? == list(b)?)
}

/// A run committed to the ledger whose publishing failed (exit 6): its inputs are applied and
/// recorded, its outputs wait in staging; the next run (or migrate) of the ledger publishes
/// them first, once the cause is fixed.
#[derive(Debug, thiserror::Error)]
#[error(
    "run {run_id} IS COMMITTED to the ledger (its inputs are applied and recorded) but was not fully published: \
     {state}. Fix the cause, then run again with the same ledger, outbox and reports: the next run \
     publishes it before anything else. Do not apply or send its inputs again. Cause"
)]
pub struct PublishFailed {
    pub run_id: String,
    /// What is published and what waits, by path.
    pub state: String,
}

impl PublishFailed {
    fn of(r: &ledger::RunRow) -> PublishFailed {
        let mut parts = Vec::new();
        for (what, staging, fin) in [
            ("linkage files", &r.outbox_staging, &r.outbox_final),
            ("report", &r.report_staging, &r.report_final),
        ] {
            if let (Some(s), Some(f)) = (staging, fin) {
                if Path::new(s).exists() {
                    parts.push(format!("{what} not published, waiting in {s} for {f}"));
                } else if Path::new(f).is_dir() {
                    parts.push(format!("{what} published in {f}"));
                }
            }
        }
        PublishFailed {
            run_id: r.run_id.clone(),
            state: if parts.is_empty() {
                "nothing of it was published".into()
            } else {
                parts.join("; ")
            },
        }
    }
}

impl RunOptions {
    /// What a command does when no ledger is at `ledger`: a dry run diffs against an empty
    /// in-memory ledger and creates nothing; `--init-ledger` creates it; otherwise refused.
    pub fn if_missing(&self) -> ledger::IfMissing {
        if self.dry_run {
            ledger::IfMissing::InMemory
        } else if self.init_ledger {
            ledger::IfMissing::Create
        } else {
            ledger::IfMissing::Refuse
        }
    }

    /// These options with the ledger at its canonical path (as [`ledger::acquire`] found it)
    /// and outbox and reports created (0700) and made absolute, so that the staging paths
    /// recorded in the ledger hold from any working directory (R12).
    pub fn settled(&self, ledger_path: &Path) -> Result<RunOptions> {
        let dir = |p: &Path, what: &str| -> Result<PathBuf> {
            create_private_dir(p).with_context(|| format!("cannot create {what} {}", p.display()))?;
            std::fs::canonicalize(p).with_context(|| format!("cannot resolve {what} {}", p.display()))
        };
        Ok(RunOptions {
            outbox: dir(&self.outbox, "outbox")?,
            reports: dir(&self.reports, "reports folder")?,
            ledger: ledger_path.to_path_buf(),
            ..self.clone()
        })
    }

    /// The tag of this ledger's staging and spill folders ([`ledger::tag`]).
    pub fn ledger_tag(&self) -> String {
        ledger::tag(&self.ledger)
    }
}

/// Creates a folder and its missing parents owner-only (0700).
pub fn create_private_dir(p: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(p)
}

/// The staging folder name of `run_id` for the ledger tagged `tag`: `.staging-<tag>-<run-id>`.
fn staging_name(tag: &str, run_id: &str) -> String {
    format!(".staging-{tag}-{run_id}")
}

/// Finishes runs committed but not yet published, from the staging paths the ledger recorded,
/// and removes this ledger's staging of uncommitted runs and its spill folders (R12). Staging
/// and spill of other ledgers sharing the outbox, reports folder or ledger folder are never
/// touched: their names carry another ledger's tag.
pub fn recover(conn: &Connection, opts: &RunOptions) -> Result<()> {
    for r in ledger::runs_to_publish(conn)? {
        publish(conn, &r)?;
        tracing::warn!(run_id = %r.run_id, "finished publishing a run interrupted after commit");
    }
    let prefix = staging_name(&opts.ledger_tag(), "");
    for dir in [&opts.outbox, &opts.reports] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) {
                    std::fs::remove_dir_all(e.path()).ok();
                    tracing::warn!(dir = %n, "removed staging left by an interrupted run");
                }
            }
        }
    }
    spool::remove_leftovers(&spill_dir(opts), &spill_prefix(opts));
    // migrate's diff spool (each subscriber's flag state) left by a crashed migration
    let spool_prefix = migrate_spool_prefix(opts);
    if let Ok(rd) = std::fs::read_dir(&opts.reports) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&spool_prefix) && n.ends_with(".csv") && std::fs::remove_file(e.path()).is_ok() {
                tracing::warn!(file = %n, "removed a migration spool left by an interrupted migration");
            }
        }
    }
    Ok(())
}

/// Name prefix of `migrate`'s diff spool in the reports folder: `.spool-migrate-<tag>-`
/// (followed by the process id).
pub fn migrate_spool_prefix(opts: &RunOptions) -> String {
    format!(".spool-migrate-{}-", opts.ledger_tag())
}

/// Where spill folders go: beside the ledger (a filesystem sized for the data, as private);
/// the reports folder when the ledger's folder does not exist (a dry run without a ledger).
pub fn spill_dir(opts: &RunOptions) -> PathBuf {
    match opts.ledger.parent() {
        Some(p) if !p.as_os_str().is_empty() && p.is_dir() => p.to_path_buf(),
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        _ => opts.reports.clone(),
    }
}

/// Name prefix of this ledger's spill folders: `.nhi-spill-<tag>-`.
pub fn spill_prefix(opts: &RunOptions) -> String {
    format!("{}{}-", spool::SPILL_PREFIX, opts.ledger_tag())
}

/// Runs one batch. Errors are usage/environment problems; an R4 violation returns `Aborted`.
pub fn run(opts: &RunOptions) -> Result<RunResult> {
    let led = ledger::acquire(&opts.ledger, opts.if_missing())?;
    let _lock = led.lock;
    let mut conn = led.conn;
    ledger::quick_check(&conn, &led.path)?;
    let opts = &opts.settled(&led.path)?;
    recover(&conn, opts)?;

    // 1. read, into a spool partitioned by subscriber (spilled to disk when the inbox is large)
    let paths = list_inbox(&opts.inbox)?;
    let ropts = ReadOptions {
        catalog: &opts.catalog,
        limits: opts.limits,
    };
    let input_bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let spill_to = spill_dir(opts);
    let spool = Spool::new(opts.chunk_records, &spill_to).with_prefix(spill_prefix(opts));
    let gate = Gate::new(opts.shard); // shard hook
    tracing::info!(files = paths.len(), bytes = input_bytes, "reading inbox");
    let t0 = std::time::Instant::now();
    let bar = progress_span("reading inbox files", Some(paths.len() as u64));
    // a signal stops the reading of further files; what was read is discarded
    let files: Option<Result<Vec<LoadedFile>>> = bar.in_scope(|| {
        paths
            .par_iter()
            .enumerate()
            .map(|(tag, p)| {
                let f = (!interrupt::requested())
                    .then(|| load(p, &opts.inbox, &ropts, &spool, &spill_to, tag as u32, &gate));
                bar.pb_inc(1);
                f
            })
            .collect()
    });
    drop(bar);
    let mut files = files.ok_or(interrupt::Interrupted { phase: "reading" })??;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "read inbox");
    crash_at("after-read");
    wait_at("wait-after-read");
    interrupt::check("after reading")?;
    gate.check(&conn)?; // shard hook: refuses before anything is applied
    for (f, p) in files.iter_mut().zip(&paths) {
        if f.sha.is_empty() {
            f.sha = sha_file(p).unwrap_or_default();
        }
    }

    // R10
    let mut seen: HashMap<(InsurerNumber, String), String> = HashMap::new();
    for f in files.iter_mut().filter(|f| f.status == InputStatus::Applied) {
        let h = f.header.as_ref().expect("parsed");
        let key = (h.sender, h.file_identifier.clone());
        let prior = match seen.get(&key) {
            Some(s) => Some(s.clone()),
            None => ledger::applied_file_sha(&conn, h.sender, &h.file_identifier)?,
        };
        match prior {
            Some(s) if s == f.sha => {
                f.status = InputStatus::Skipped;
                f.note = Some("already applied (same FileIdentifier and SHA-256)".into());
                f.rejects = Spooled::default();
                f.rejected_records = 0;
            }
            Some(_) => {
                f.status = InputStatus::Rejected;
                f.rejects = Spooled::default();
                f.rejected_records = 0;
                f.file_errors.push(
                    Diagnostic::new(
                        &f.name,
                        ErrorCode::FileIdReused,
                        "FileIdentifier was already used by this sender for a file with different content",
                    )
                    .field("FileIdentifier"),
                );
            }
            None => {
                seen.insert(key, f.sha.clone());
            }
        }
    }

    // Run id from the inputs and the ledger's previous run: a rerun of the same inbox state on
    // the same ledger state gets the same id (R12), and no two runs of a ledger share one.
    let run_id = {
        let mut h = Sha256::new();
        chain_run_hash(&mut h, &conn)?;
        h.update(opts.as_of.to_string());
        h.update(format!("{:?}{:?}{:?}", opts.format, opts.encoding, opts.unmappable));
        for f in &files {
            h.update(f.status.as_str());
            h.update(&f.sha);
        }
        gate.run_id(format!("{}-{}", opts.as_of, &hex(&h.finalize())[..12])) // shard hook: -s{I}of{N}
    };
    let mut report = Report::new(run_id.clone(), opts.as_of.to_string(), opts.dry_run);

    // R1: file order
    let mut order: Vec<usize> = (0..files.len())
        .filter(|&i| files[i].status == InputStatus::Applied)
        .collect();
    order.sort_by(|&a, &b| {
        let (ha, hb) = (files[a].header.as_ref().unwrap(), files[b].header.as_ref().unwrap());
        (ha.creation_time, ha.sender, ha.file_sequence, &files[a].name).cmp(&(
            hb.creation_time,
            hb.sender,
            hb.file_sequence,
            &files[b].name,
        ))
    });

    // records of files not applied (skipped, rejected) stay in the spool and are ignored
    let mut batch_files: Vec<BatchFile> = files
        .iter()
        .map(|f| BatchFile {
            name: Arc::from(f.name.as_str()),
            order: None,
            key: match (&f.header, f.status) {
                (Some(h), InputStatus::Applied) => BatchFile::r1_key(h, &f.name),
                _ => Arc::from(f.name.as_str()),
            },
        })
        .collect();
    for (pos, &i) in order.iter().enumerate() {
        batch_files[i].order = Some(pos as u32);
    }
    let batch = Batch {
        files: batch_files,
        spool,
    };
    report.spill_to(&spill_dir(opts));
    let mut applied = Vec::new();
    for f in &mut files {
        let h = f.header.as_ref();
        let rejected = f.rejected_records;
        report.inputs.push(InputEntry {
            name: f.name.clone(),
            kind: h.map(|h| h.kind.name().to_owned()).unwrap_or_default(),
            format: h.map(|h| format!("{:?}", h.format).to_lowercase()).unwrap_or_default(),
            encoding: h.map(|h| h.encoding.xml_label().to_owned()).unwrap_or_default(),
            status: f.status,
            records: f.total,
            rejected,
            note: f.note.clone(),
        });
        let critical = h.is_some_and(|h| matches!(h.kind, FileKind::FlagChange | FileKind::AgeTransitionHandoff))
            || f.status == InputStatus::Rejected;
        for d in &f.file_errors {
            report.rejects.push(RejectEntry::from_diag(d, critical))?;
        }
        let rejects = std::mem::take(&mut f.rejects);
        if critical {
            report.rejects.append_with(rejects, |e| e.critical = true)?;
        } else {
            report.rejects.append(rejects)?;
        }
        if f.status == InputStatus::Applied {
            let h = h.expect("parsed");
            applied.push((
                h.sender,
                h.file_identifier.clone(),
                f.sha.clone(),
                h.kind,
                f.name.clone(),
                f.total,
                rejected,
            ));
        }
    }
    let creation = files
        .iter()
        .filter(|f| f.status == InputStatus::Applied)
        .filter_map(|f| f.header.as_ref().map(|h| h.creation_time))
        .max()
        .unwrap_or_else(|| Timestamp::start_of(opts.as_of));
    let prepared = Prepared {
        run_id,
        report,
        batch,
        creation,
    };
    let result = execute(&mut conn, opts, prepared, &mut |tx, report| {
        for (sender, id, sha, kind, name, total, rejected) in &applied {
            ledger::insert_applied_file(tx, *sender, id, sha, *kind, name, &report.run_id, *total, *rejected)?;
        }
        Ok(())
    });
    // closing checkpoints what is left in the WAL and removes it (at a full load, freeing the
    // blocks of a WAL as large as the ledger) and frees the page caches
    let t0 = std::time::Instant::now();
    drop(conn);
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "ledger closed");
    result
}

/// A batch ready to apply, with the report its caller has begun (inputs, rejects so far).
pub struct Prepared {
    pub run_id: String,
    pub report: Report,
    pub batch: Batch,
    /// CreationTime written in the output headers.
    pub creation: Timestamp,
}

/// Applies a prepared batch in one transaction, builds the linkage from the ledger, verifies the
/// invariant (R4), stages outputs and report, commits and publishes (or, in a dry run, rolls
/// back and writes the report only). `in_tx` runs inside the transaction after the batch is
/// applied: callers record what they applied there, or refuse (an `Err` rolls everything back).
/// Used by `run` and `migrate`, so both share writers, invariant and atomic publish.
pub fn execute(
    conn: &mut Connection,
    opts: &RunOptions,
    p: Prepared,
    in_tx: &mut dyn FnMut(&Connection, &mut Report) -> Result<()>,
) -> Result<RunResult> {
    let Prepared {
        run_id,
        mut report,
        batch,
        creation,
    } = p;
    let tx = conn.transaction()?;
    let t0 = std::time::Instant::now();
    let bar = progress_span("applying and storing", None);
    let mut outcome = bar.in_scope(|| apply_batch(&tx, &run_id, batch))?;
    drop(bar);
    let inquiries = super::inquiry::reconcile(&tx, &run_id, opts.as_of, &mut outcome)?; // R13
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        subscribers = outcome.touched,
        chunks = outcome.chunks,
        "applied and stored"
    );
    in_tx(&tx, &mut report)?;
    wait_at("wait-after-apply");
    interrupt::check("after applying")?; // dropping `tx` rolls back
    report.rejects.extend(
        outcome
            .engine_rejects
            .iter()
            .map(|(d, c)| RejectEntry::from_diag(d, *c)),
    )?;

    // 3. linkage streamed from the ledger (R2) into staging, each group checked against R4
    // before it is written
    let out_stage = opts.outbox.join(staging_name(&opts.ledger_tag(), &run_id));
    let out_final = opts.outbox.join(&run_id);
    if out_stage.exists() {
        std::fs::remove_dir_all(&out_stage)?;
    }
    std::fs::create_dir_all(&out_stage)?;
    let layout = StandardLayout {
        policy: opts.unmappable,
    };
    let bar = progress_span("writing linkage", Some(outcome.touched));
    let written = bar.in_scope(|| write_outputs(&tx, &layout, &out_stage, &run_id, creation, opts, &outcome, &bar));
    drop(bar);
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            // a file could not be written (disk full, a value XML forbids): nothing committed
            drop(tx); // rollback
            std::fs::remove_dir_all(&out_stage).ok();
            return Err(e.context(OutputFailed));
        }
    };
    let (written, derived) = match written {
        Ok(w) => w,
        Err(v) => {
            drop(tx); // rollback
            std::fs::remove_dir_all(&out_stage).ok();
            return abort(opts, report, &v.to_string());
        }
    };
    // R14: the ledger records what the server holds once these outputs are published
    for (k, published, unsent) in &derived.publication {
        ledger::set_publication(&tx, k.0, k.1, *published, *unsent)?;
    }
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        files = written.entries.len(),
        "linkage written from the ledger"
    );
    let mut char_rows = Vec::new();
    for UnmappableRecord {
        kind,
        insurer: ins,
        key,
        chars,
        refused,
    } in &written.unmappable
    {
        for c in chars {
            char_rows.push(vec![
                kind.clone(),
                ins.to_string(),
                key.map(|k| k.to_string()).unwrap_or_default(),
                c.field.clone(),
                c.code_point.clone(),
                if *refused {
                    "refused (E_UNMAPPABLE_CHAR)".into()
                } else {
                    "replaced by ●".into()
                },
            ]);
        }
        if *refused {
            report.rejects.push(RejectEntry::from_diag(
                &Diagnostic::new(
                    kind.as_str(),
                    ErrorCode::UnmappableChar,
                    format!(
                        "subscriber {}/{} not written: characters the output cannot carry (no Shift_JIS mapping, or 外字/private use) ({})",
                        ins,
                        key.map(|k| k.to_string()).unwrap_or_default(),
                        chars
                            .iter()
                            .map(|c| format!("{} in {}", c.code_point, c.field))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .field(chars.first().map(|c| c.field.clone()).unwrap_or_default()),
                false,
            ))?;
            if let Some(k) = key {
                // not sent (R14): the server holds what it held before the run; a later run sends it
                let was = scratch::was_published(&tx, *ins, *k)?;
                ledger::set_publication(&tx, *ins, *k, was, true)?;
            }
        }
    }
    report.add_worklist(
        "character_identification",
        Worklist {
            title: "文字同定 — characters to identify".into(),
            columns: vec![
                "file_kind",
                "insurer",
                "subscriber_key",
                "field",
                "code_point",
                "action",
            ],
            rows: char_rows,
        },
    );
    report.outputs = written.entries.clone();
    fill_report(&tx, &mut report, &outcome, derived, opts)?;
    let inquiry_files = inquiries.finish(
        &mut report,
        &run_id,
        creation,
        &super::inquiry::InquiryOutput {
            format: opts.format,
            encoding: opts.encoding,
            unmappable: opts.unmappable,
        },
    )?; // R13
    crate::shard::annotate(opts.shard, &tx, &mut report)?; // shard hook: what merge-shards needs

    let critical = outcome.review.iter().any(|r| r.critical)
        || outcome.insurer_review.iter().any(|r| r.2)
        || report.summary.count(&SummaryKey::Withheld) > 0;
    let status = if critical {
        RunStatus::CompletedWithCriticalFindings
    } else if report.rejects.is_empty() {
        RunStatus::Completed
    } else {
        RunStatus::CompletedWithRejects
    };
    report.status = match status {
        RunStatus::Completed => ReportStatus::Completed,
        RunStatus::CompletedWithRejects => ReportStatus::CompletedWithRejects,
        _ => ReportStatus::CompletedWithCriticalFindings,
    };

    if let Err(e) = interrupt::check("after writing outputs") {
        drop(tx);
        std::fs::remove_dir_all(&out_stage).ok();
        return Err(e.into());
    }
    if opts.dry_run {
        drop(tx); // rollback: the ledger is untouched
        std::fs::remove_dir_all(&out_stage).ok();
        let dir = opts.reports.join(format!("{run_id}-dry-run"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        report.write_to(&dir)?;
        return Ok(RunResult {
            status,
            report,
            report_dir: dir,
            outbox_dir: None,
        });
    }

    let rep_stage = opts.reports.join(staging_name(&opts.ledger_tag(), &run_id));
    let rep_final = opts.reports.join(&run_id);
    if rep_stage.exists() {
        std::fs::remove_dir_all(&rep_stage)?;
    }
    report.write_to(&rep_stage)?;
    super::inquiry::write_files(&rep_stage, &inquiry_files)?; // R13: beside the report
    sync_dir(&rep_stage);
    let publish_outbox = !written.entries.is_empty();
    if !publish_outbox {
        std::fs::remove_dir_all(&out_stage)?;
    }
    wait_at("wait-before-commit");
    if let Err(e) = interrupt::check("before commit") {
        drop(tx);
        std::fs::remove_dir_all(&out_stage).ok();
        std::fs::remove_dir_all(&rep_stage).ok();
        return Err(e.into());
    }
    crash_at("after-stage");
    if ledger::run_exists(&tx, &run_id)? {
        // same inputs as an earlier run that published nothing new (e.g. all skipped): refresh its report
        tx.execute("DELETE FROM run WHERE run_id = ?1", [&run_id])?;
    }
    let row = ledger::RunRow {
        run_id: run_id.clone(),
        status: "committed".into(),
        outbox_staging: publish_outbox.then(|| out_stage.display().to_string()),
        outbox_final: publish_outbox.then(|| out_final.display().to_string()),
        report_staging: Some(rep_stage.display().to_string()),
        report_final: Some(rep_final.display().to_string()),
    };
    ledger::insert_run(&tx, &row, opts.as_of)?;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "outputs staged");
    // SQLite would checkpoint inside the commit (copy the run's pages from the WAL into the
    // ledger file: at a full load, as long as writing them): done just after it instead, the
    // same PASSIVE checkpoint, so that the log shows what each costs
    tx.pragma_update(None, "wal_autocheckpoint", 0)?;
    if let Err(e) = tx.commit() {
        // SQLite rolled the transaction back (a full disk, most often): nothing is committed,
        // nothing published; the staged outputs go (exit 3, not "usage")
        std::fs::remove_dir_all(&out_stage).ok();
        std::fs::remove_dir_all(&rep_stage).ok();
        return Err(anyhow::Error::new(e)
            .context(format!("cannot commit the ledger {}", opts.ledger.display()))
            .context(OutputFailed));
    }
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "committed");
    checkpoint(conn);
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "ledger checkpointed");
    crash_at("after-commit");
    publish(conn, &row)?;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "published");
    Ok(RunResult {
        status,
        report,
        report_dir: rep_final,
        outbox_dir: publish_outbox.then_some(out_final),
    })
}

/// Copies the committed pages from the WAL into the ledger file (what SQLite's automatic
/// checkpoint would have done inside the commit), then turns the automatic checkpoint back on
/// (SQLite's default, every 1000 pages). The commit is durable without it: a failure is logged
/// and left to the next checkpoint, as SQLite does with its own.
fn checkpoint(conn: &Connection) {
    let done = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .and_then(|(busy, wal_pages, copied)| {
            tracing::debug!(busy, wal_pages, copied, "WAL checkpoint");
            conn.pragma_update(None, "wal_autocheckpoint", 1000)
        });
    if let Err(e) = done {
        tracing::warn!("the ledger's WAL checkpoint failed (the next run or checkpoint does it): {e}");
    }
}

fn abort(opts: &RunOptions, mut report: Report, reason: &str) -> Result<RunResult> {
    tracing::error!("{reason}");
    report.status = ReportStatus::Aborted;
    report.abort_reason = Some(reason.to_owned());
    report.outputs.clear();
    report.rejects.push(RejectEntry {
        file: String::new(),
        record_sequence: None,
        line: None,
        byte_offset: None,
        field: Some("ProvisionControl".into()),
        code: ErrorCode::FlagWouldBeCleared.as_str().into(),
        message: reason.to_owned(),
        critical: true,
    })?;
    let dir = opts.reports.join(format!("{}-aborted", report.run_id));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    report.write_to(&dir)?;
    Ok(RunResult {
        status: RunStatus::Aborted,
        report,
        report_dir: dir,
        outbox_dir: None,
    })
}

fn control_from(e: &Enrollment) -> ProvisionControl {
    ProvisionControl {
        self_info: e.self_info_reason(),
        non_disclosure: e.flag(FlagType::NonDisclosure).is_some(),
        auto_response: e.flag(FlagType::AutoResponseProhibited).is_some(),
    }
}

/// What the report learns while the linkage is streamed (one pass over the touched subscribers).
#[derive(Default)]
struct Derived {
    flag_changes: Vec<FlagChangeEntry>,
    /// R9 certificate issuance rows
    cert: Vec<Vec<String>>,
    /// 後期 transition registrations by month of acquisition (`YYYYMM`)
    kouki_months: BTreeMap<String, u64>,
    /// Groups withheld (R4, v1.1), in writing order.
    held: Vec<(SubKey, super::hold::Hold)>,
    holds: super::hold::HoldChecker,
    /// Ledger publication state to set once the outputs are written: (subscriber, published,
    /// unsent) — R14. Only subscribers whose stored state differs are listed.
    publication: Vec<(SubKey, bool, bool)>,
}

/// R2: a touched (or still unsent, R14) subscriber's group, with its complete state re-read from
/// the ledger; `None` when it is not written (cancelled before ever being sent, or withheld:
/// [`super::hold`]). Also records what the report needs about it (flag changes, certificates,
/// transitions, holds), its changed InfoCode flags (FlagLinkage rows), and the ledger's
/// publication state to correct once the group is written.
fn group_for(
    conn: &Connection,
    insurer: InsurerNumber,
    key: SubscriberKey,
    before: &scratch::Before,
    as_of: Date,
    derived: &mut Derived,
    info_rows: &mut Vec<FlagRow>,
) -> Result<Option<SubscriberGroup>> {
    let e = ledger::load_enrollment(conn, insurer, key)?.context("a touched subscriber is missing from the ledger")?;
    for (fk, b, a) in flag_diff(&before.flags, &e.flags) {
        if let Some(info) = fk.0 {
            let release_time = e.released.get(fk).map(|r| r.effective_time);
            info_rows.push(flag_row(insurer, Some(key), info, fk.1, b, a, release_time));
        }
        let change = match (b, a) {
            (None, Some(_)) => FlagChangeKind::Set,
            (Some(_), None) => FlagChangeKind::Released,
            (Some(b), Some(a)) if b.reason != a.reason => FlagChangeKind::ReasonChanged,
            _ => continue,
        };
        derived.flag_changes.push(FlagChangeEntry {
            insurer: insurer.to_string(),
            subscriber_key: key.to_string(),
            info_code: fk.0.map(|i| i.to_string()),
            flag_type: fk.1.name_en().to_owned(),
            change,
        });
    }
    let si = (None, FlagType::SelfInfoProvisionProhibited);
    if !before.flags.contains_key(&si) && e.status != Status::Cancelled {
        if let Some(f) = e.flags.get(&si) {
            derived.cert.push(vec![insurer.to_string(), key.to_string(), e.name.clone(), e.name_kana.clone(), f.reason.map_or("", |x| x.code()).to_owned(), f.effective_time.to_string(), "資格確認書を交付（申請不要）。交付方法は本人と調整すること／agree the delivery method with the person; never mail where the abuser may receive it".into()]);
        }
    }
    if insurer.is_kouki() {
        if let Some(p) = e.current_period().filter(|p| p.reason_of_qualification.is_transition()) {
            *derived
                .kouki_months
                .entry(p.qualification_date.to_string()[..6].to_owned())
                .or_insert(0) += 1;
        }
    }
    let k = (insurer, key);
    let processing = match e.status {
        // never sent: nothing to delete at the server
        Status::Cancelled if !before.was_published => {
            if e.unsent || e.published {
                derived.publication.push((k, false, false));
            }
            return Ok(None);
        }
        Status::Cancelled => ProcessingCode::Delete,
        _ if before.was_published => ProcessingCode::Update,
        _ => ProcessingCode::FirstRegistration,
    };
    if let Some(h) = derived.holds.check(conn, &e, as_of)? {
        // R14: not sent; the server's registration state is what it was before the run
        derived.publication.push((k, before.was_published, true));
        derived.held.push((k, h));
        return Ok(None);
    }
    // R14: what the server holds once this group is published
    let published = processing != ProcessingCode::Delete;
    if e.unsent || e.published != published {
        derived.publication.push((k, published, false));
    }
    Ok(Some(SubscriberGroup {
        processing,
        insurer: e.insurer,
        key: e.key,
        individual_number: e.individual_number,
        name: e.name.clone(),
        name_kana: e.name_kana.clone(),
        sex: e.sex,
        birthdate: e.birthdate,
        post_number: e.post_number,
        address: e.address.clone(),
        control: control_from(&e),
        qualifications: e
            .periods
            .iter()
            .map(|p| QualificationRow {
                insurer: e.insurer,
                card_symbol: p.card_symbol.clone(),
                card_number: p.card_number.clone(),
                branch: p.branch,
                qualification_date: p.qualification_date,
                disqualification_date: p.disqualification_date,
                reason_of_loss: p.reason_of_loss,
                personal_family: p.personal_family,
            })
            .collect(),
    }))
}

/// R4 over a set of groups (see [`verify_group`]).
pub fn verify_invariant(conn: &Connection, groups: &[SubscriberGroup], as_of: Date) -> Result<(), FlagWouldBeCleared> {
    groups.iter().try_for_each(|g| verify_group(conn, g, as_of))
}

/// R4, independent of R2/R3: re-reads the flag table and the matching 国保 enrollments and
/// hand-offs with plain SQL, and checks one group that is about to be published.
pub fn verify_group(conn: &Connection, g: &SubscriberGroup, as_of: Date) -> Result<(), FlagWouldBeCleared> {
    if g.processing == ProcessingCode::Delete {
        return Ok(()); // deleting a registration states no flag (v1.1 R4)
    }
    let err = |e: anyhow::Error| FlagWouldBeCleared(format!("cannot verify the ledger: {e}"));
    let flags_of = |ins: &str, key: &str| -> Result<Vec<(String, Option<String>)>> {
        let mut st = conn.prepare_cached(
            "SELECT flag_type, reason_code FROM flag WHERE insurer = ?1 AND subscriber_key = ?2 AND info_code = ''",
        )?;
        let rows = st.query_map([ins, key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    };
    let (ins, key) = (g.insurer.to_string(), g.key.to_string());
    // the flag rows against the second record of them kept with the enrollment row: a corrupted
    // flag row (or digest) is found here, before anything is published
    let (rows, digest) = ledger::raw_flags_and_digest(conn, &ins, &key).map_err(err)?;
    let recomputed = ledger::flag_digest(
        rows.iter()
            .map(|r| (r.info_code.as_str(), r.flag_type.as_str(), r.reason_code.as_str())),
    );
    if digest.as_deref() != Some(recomputed.as_str()) {
        return Err(FlagWouldBeCleared(format!(
            "the ledger's flags of subscriber {ins}/{key} do not match their second record (flag_digest): \
             the ledger may be corrupted; run `nhi-linkage ledger check` and restore the last good backup"
        )));
    }
    let held: Vec<(String, Option<String>)> = rows
        .into_iter()
        .filter(|r| r.info_code.is_empty())
        .map(|r| (r.flag_type, Some(r.reason_code).filter(|r| !r.is_empty())))
        .collect();
    for (ty, reason) in &held {
        // as stored: a type the ledger should not hold is checked as 自己情報提供不可
        let held_type = FlagType::parse(ty).ok();
        let written = match held_type {
            Some(FlagType::AutoResponseProhibited) => g.control.auto_response.then(|| "1".to_owned()),
            Some(FlagType::NonDisclosure) => g.control.non_disclosure.then(|| "1".to_owned()),
            Some(FlagType::SelfInfoProvisionProhibited) | None => g.control.self_info.map(|r| r.code().to_owned()),
        };
        let ok = match (held_type, &written) {
            (Some(FlagType::SelfInfoProvisionProhibited), Some(w)) => reason.as_deref().is_none_or(|r| r == w),
            (_, Some(_)) => true,
            _ => false,
        };
        if !ok {
            return Err(FlagWouldBeCleared(format!(
                "the 02 row of subscriber {ins}/{key} would state flag type {ty} as {} while the ledger holds it as set",
                written.as_deref().unwrap_or("0")
            )));
        }
    }
    if !g.insurer.is_kouki() {
        return Ok(());
    }
    // a 後期 registration with a future QualificationDate must not go out unflagged while a
    // matching 国保 enrollment (or hand-off) is flagged
    let future = g.qualifications.last().is_some_and(|q| q.qualification_date > as_of);
    if !future {
        return Ok(());
    }
    let e = ledger::load_enrollment(conn, g.insurer, g.key)
        .map_err(err)?
        .ok_or_else(|| FlagWouldBeCleared(format!("subscriber {ins}/{key} is not in the ledger")))?;
    let person = e.person();
    let mut flagged_elsewhere: Vec<(String, bool, bool)> = Vec::new();
    for (ci, ck) in ledger::find_person(conn, &person).map_err(err)? {
        if !ci.is_kokuho() {
            continue;
        }
        let Some(c) = ledger::load_enrollment(conn, ci, ck).map_err(err)? else {
            continue;
        };
        if c.status == Status::Cancelled || person.matches(&c.person()).is_none() {
            continue;
        }
        let fl = flags_of(ci.as_str(), ck.as_str()).map_err(err)?;
        flagged_elsewhere.push((
            format!("{ci}/{ck}"),
            fl.iter()
                .any(|f| FlagType::parse(&f.0) == Ok(FlagType::SelfInfoProvisionProhibited)),
            fl.iter().any(|f| FlagType::parse(&f.0) == Ok(FlagType::NonDisclosure)),
        ));
    }
    for h in ledger::find_handoffs(conn, &person).map_err(err)? {
        if person.matches(&h.person).is_some() {
            flagged_elsewhere.push((
                format!("hand-off {}/{}", h.source_insurer, h.source_key),
                h.self_info.is_some(),
                h.non_disclosure,
            ));
        }
    }
    for (src, si, nd) in flagged_elsewhere {
        if (si && g.control.self_info.is_none()) || (nd && !g.control.non_disclosure) {
            return Err(FlagWouldBeCleared(format!(
                "後期 registration {ins}/{key} with future QualificationDate {} would go out without the flags set at {src}",
                g.qualifications
                    .last()
                    .map(|q| q.qualification_date.to_string())
                    .unwrap_or_default()
            )));
        }
    }
    Ok(())
}

#[derive(Default)]
struct WrittenSet {
    entries: Vec<OutputEntry>,
    unmappable: Vec<UnmappableRecord>,
}

/// A record written with (or refused for) characters the output encoding cannot represent.
struct UnmappableRecord {
    /// The linkage file kind's name.
    kind: String,
    insurer: InsurerNumber,
    key: Option<SubscriberKey>,
    chars: Vec<crate::formats::writer::UnmappableChar>,
    /// Refused (E_UNMAPPABLE_CHAR) rather than written with replacements.
    refused: bool,
}

#[derive(serde::Serialize)]
struct Manifest<'a> {
    run_id: &'a str,
    files: &'a [OutputEntry],
}

/// Touched subscribers of one insurer in key order, a page at a time.
struct TouchedPager<'c> {
    conn: &'c Connection,
    insurer: InsurerNumber,
    last: Option<SubscriberKey>,
    page: std::collections::VecDeque<(SubscriberKey, scratch::Before)>,
    done: bool,
}

impl TouchedPager<'_> {
    fn next(&mut self) -> Result<Option<(SubscriberKey, scratch::Before)>> {
        if self.page.is_empty() && !self.done {
            let page = scratch::touched_page(self.conn, self.insurer, self.last, 1024)?;
            self.done = page.len() < 1024;
            self.last = page.last().map(|p| p.0);
            self.page.extend(page);
        }
        Ok(self.page.pop_front())
    }
}

/// Streams the run's linkage files into `dir` (staging): per insurer, SubscriberLinkage groups
/// re-read from the ledger (R2) and checked against R4 one by one, FlagLinkage (insurer-wide and
/// InfoCode flags changed), FukuhonLinkage; then MANIFEST.json. An R4 violation stops the
/// writing and is returned as the inner `Err` (the caller aborts and removes the staging).
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    conn: &Connection,
    layout: &dyn LinkageLayout,
    dir: &Path,
    run_id: &str,
    creation: Timestamp,
    opts: &RunOptions,
    o: &BatchOutcome,
    bar: &tracing::Span,
) -> Result<Result<(WrittenSet, Derived), FlagWouldBeCleared>> {
    let mut set = WrittenSet::default();
    let mut derived = Derived::default();
    let mut insurers: BTreeSet<InsurerNumber> = scratch::insurers(conn)?.into_iter().collect();
    insurers.extend(o.flag_rows.iter().map(|r| r.insurer));
    // test hooks: a writer bug that would state 0 for a set flag, or drop every carried flag
    let mut clear_one = failpoint("writer-clear-flag");
    let drop_carry = failpoint("writer-drop-carry");
    let file_name =
        |kind: FileKind, ins: InsurerNumber| format!("{}_{}_{}.{}", kind.name(), ins, run_id, opts.format.extension());
    let header_of = |kind: FileKind, ins: InsurerNumber| {
        linkage_header(
            kind,
            format!("{}-{}", kind.name(), run_id),
            ins,
            creation,
            opts.format,
            opts.encoding,
        )
    };
    let note = |set: &mut WrittenSet, kind: FileKind, name: String, w: Written, bytes: u64, sha: String| {
        for (i, k, chars) in w.refused {
            set.unmappable.push(UnmappableRecord {
                kind: kind.name().to_owned(),
                insurer: i,
                key: k,
                chars,
                refused: true,
            });
        }
        for (i, k, chars) in w.replaced {
            set.unmappable.push(UnmappableRecord {
                kind: kind.name().to_owned(),
                insurer: i,
                key: k,
                chars,
                refused: false,
            });
        }
        set.entries.push(OutputEntry {
            name,
            kind: kind.name().to_owned(),
            records: w.records,
            bytes,
            sha256: sha,
        });
    };
    for ins in insurers {
        // SubscriberLinkage, streamed
        let mut info_rows: Vec<FlagRow> = Vec::new();
        let mut violation: Option<FlagWouldBeCleared> = None;
        let mut fatal: Option<anyhow::Error> = None;
        let mut yielded = 0u64;
        let name = file_name(FileKind::SubscriberLinkage, ins);
        let path = dir.join(&name);
        let (w, bytes, sha) = {
            let mut pager = TouchedPager {
                conn,
                insurer: ins,
                last: None,
                page: Default::default(),
                done: false,
            };
            let mut groups = std::iter::from_fn(|| {
                while violation.is_none() && fatal.is_none() {
                    let (key, before) = match pager.next() {
                        Ok(Some(x)) => x,
                        Ok(None) => return None,
                        Err(e) => {
                            fatal = Some(e);
                            return None;
                        }
                    };
                    bar.pb_inc(1);
                    let mut g = match group_for(conn, ins, key, &before, opts.as_of, &mut derived, &mut info_rows) {
                        Ok(Some(g)) => g,
                        Ok(None) => continue,
                        Err(e) => {
                            fatal = Some(e);
                            return None;
                        }
                    };
                    if clear_one && (g.control.self_info.is_some() || g.control.non_disclosure) {
                        clear_one = false;
                        g.control = ProvisionControl {
                            self_info: None,
                            non_disclosure: false,
                            auto_response: g.control.auto_response,
                        };
                    }
                    if drop_carry && g.insurer.is_kouki() {
                        g.control = ProvisionControl {
                            self_info: None,
                            non_disclosure: false,
                            auto_response: false,
                        };
                    }
                    if let Err(v) = verify_group(conn, &g, opts.as_of) {
                        violation = Some(v);
                        return None;
                    }
                    yielded += 1;
                    return Some(g);
                }
                None
            });
            let header = header_of(FileKind::SubscriberLinkage, ins);
            write_linkage_file(&path, |out| layout.subscriber_linkage(&header, &mut groups, out))?
        };
        if let Some(e) = fatal {
            return Err(e);
        }
        if let Some(v) = violation {
            return Ok(Err(v));
        }
        if yielded == 0 {
            std::fs::remove_file(&path)?;
        } else {
            note(&mut set, FileKind::SubscriberLinkage, name, w, bytes, sha);
        }

        // FlagLinkage: insurer-wide rows, then the subscribers' InfoCode flags, in key order
        let mut flag_rows = o
            .flag_rows
            .iter()
            .filter(|r| r.insurer == ins)
            .cloned()
            .chain(info_rows)
            .peekable();
        if flag_rows.peek().is_some() {
            let name = file_name(FileKind::FlagLinkage, ins);
            let header = header_of(FileKind::FlagLinkage, ins);
            let (w, bytes, sha) = write_linkage_file(&dir.join(&name), |out| {
                layout.flag_linkage(&header, &mut flag_rows, out)
            })?;
            note(&mut set, FileKind::FlagLinkage, name, w, bytes, sha);
        }

        // FukuhonLinkage, streamed from the scratch table in (key, InfoCode) order
        if scratch::fukuhon_count(conn, ins)? > 0 {
            let mut fatal: Option<anyhow::Error> = None;
            let mut last = None;
            let mut page = std::collections::VecDeque::new();
            let mut rows = std::iter::from_fn(|| {
                if page.is_empty() && fatal.is_none() {
                    match scratch::fukuhon_page(conn, ins, last, 4096) {
                        Ok(p) => {
                            last = p.last().map(|r: &FukuhonRow| (r.key, r.info_code));
                            page.extend(p);
                        }
                        Err(e) => fatal = Some(e),
                    }
                }
                page.pop_front()
            });
            let name = file_name(FileKind::FukuhonLinkage, ins);
            let header = header_of(FileKind::FukuhonLinkage, ins);
            let (w, bytes, sha) =
                write_linkage_file(&dir.join(&name), |out| layout.fukuhon_linkage(&header, &mut rows, out))?;
            if let Some(e) = fatal {
                return Err(e);
            }
            note(&mut set, FileKind::FukuhonLinkage, name, w, bytes, sha);
        }
    }
    let mut m = serde_json::to_vec_pretty(&Manifest {
        run_id,
        files: &set.entries,
    })?;
    m.push(b'\n');
    write_private(&dir.join("MANIFEST.json"), &m)?;
    sync_dir(dir);
    Ok(Ok((set, derived)))
}

fn key_cells(k: &SubKey) -> [String; 2] {
    [k.0.to_string(), k.1.to_string()]
}

fn fill_report(conn: &Connection, r: &mut Report, o: &BatchOutcome, derived: Derived, opts: &RunOptions) -> Result<()> {
    let flag_names = |fs: &[FlagType]| fs.iter().map(|f| f.name_en().to_owned()).collect::<Vec<_>>();
    for c in &o.carries {
        let mut flags = Vec::new();
        if c.source.self_info.is_some() {
            flags.push(format!(
                "SelfInfoProvisionProhibited({})",
                c.source.self_info.map_or("", |x| x.code())
            ));
        }
        if c.source.non_disclosure {
            flags.push("NonDisclosure".into());
        }
        r.carries.push(CarryEntry {
            from_insurer: c.source.from.0.to_string(),
            from_subscriber_key: c.source.from.1.to_string(),
            to_insurer: c.to.0.to_string(),
            to_subscriber_key: c.to.1.to_string(),
            flags,
            rule: serde_json::to_value(c.source.rule)?
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            via: c.source.via.to_owned(),
            qualification_date: c.qualification_date.to_string(),
            future_dated: c.qualification_date > opts.as_of,
        });
    }
    let pending = &mut r.pending_flags;
    ledger::for_each_pending_flag(conn, |pf| {
        let c = &pf.change;
        pending.push(PendingEntry {
            insurer: c.insurer.to_string(),
            subscriber_key: c.key.map(|k| k.to_string()).unwrap_or_default(),
            flag_type: c.flag_type.name_en().to_owned(),
            operation: if c.operation == FlagOperation::Set {
                "set"
            } else {
                "release"
            }
            .to_owned(),
            info_code: c.info_code.map(|i| i.to_string()),
            file: pf.file.clone(),
            record_sequence: c.seq,
        })
    })?;
    r.pending_handoffs = ledger::list_pending_handoffs(conn)?.len() as u64;

    // flag changes and R9 certificate issuance (collected while the linkage was written)
    let Derived {
        flag_changes,
        cert,
        kouki_months,
        held: derived_held,
        publication: _,
        holds: _,
    } = derived;
    r.flag_changes.extend(flag_changes);
    r.add_worklist(
        "certificate_issuance",
        Worklist {
            title: "資格確認書の交付 — certificate to issue (自己情報提供不可 newly set)".into(),
            columns: vec![
                "insurer",
                "subscriber_key",
                "name",
                "name_kana",
                "reason_code",
                "flag_set_time",
                "action",
            ],
            rows: cert,
        },
    );
    let held = derived_held
        .iter()
        .map(|(k, h)| (k, &h.candidates, h.why.as_str(), true));
    let reviews = o
        .review
        .iter()
        .map(|r| (&r.subscriber, &r.candidates, r.why.as_str(), r.critical))
        .chain(held);
    let mut review: Vec<Vec<String>> = reviews
        .map(|(k, cands, why, critical)| {
            let [i, s] = key_cells(k);
            vec![
                i,
                s,
                cands
                    .iter()
                    .map(|c| format!("{}/{}", c.0, c.1))
                    .collect::<Vec<_>>()
                    .join(" "),
                why.to_owned(),
                if critical { "critical" } else { "" }.to_owned(),
            ]
        })
        .collect();
    review.extend(o.insurer_review.iter().map(|(ins, why, critical)| {
        vec![
            ins.to_string(),
            String::new(),
            String::new(),
            why.clone(),
            if *critical { "critical" } else { "" }.to_owned(),
        ]
    }));
    r.add_worklist(
        "review",
        Worklist {
            title: "確認 — cases to review (critical first: a protection may be missing)".into(),
            columns: vec!["insurer", "subscriber_key", "candidates", "why", "critical"],
            rows: review,
        },
    );
    let confirm = o.flag_confirmation.iter().map(|(k, other, flags, note)| {
        let [i, s] = key_cells(k);
        vec![
            i,
            s,
            format!("{}/{}", other.0, other.1),
            flag_names(flags).join(" "),
            note.clone(),
        ]
    });
    r.add_worklist(
        "flag_confirmation",
        Worklist {
            title: "フラグ設定の確認 — flagged elsewhere (R5)".into(),
            columns: vec!["insurer", "subscriber_key", "flagged_at", "flags", "note"],
            rows: confirm.collect(),
        },
    );
    // R9: support measures past their end date: review, never released automatically
    let mut st = conn.prepare("SELECT insurer, subscriber_key, info_code, flag_type, support_measure_end FROM flag WHERE source = '2' AND support_measure_end IS NOT NULL AND support_measure_end < ?1 ORDER BY insurer, subscriber_key, info_code, flag_type")?;
    let expired: Vec<Vec<String>> = st
        .query_map([opts.as_of.to_string()], |row| {
            let ty: String = row.get(3)?;
            Ok(vec![row.get(0)?, row.get(1)?, row.get(2)?, FlagType::parse(&ty).map(|t| t.name_en().to_owned()).unwrap_or(ty), row.get(4)?, "住基支援措置の期限切れ: 延長の有無を確認（自動解除しない）/ check renewal; never released automatically".to_owned()])
        })?
        .collect::<rusqlite::Result<_>>()?;
    r.add_worklist(
        "support_measure_expiry",
        Worklist {
            title: "支援措置期限 — support measures past their end date".into(),
            columns: vec![
                "insurer",
                "subscriber_key",
                "info_code",
                "flag",
                "support_measure_end",
                "action",
            ],
            rows: expired,
        },
    );

    // union side: 後期 transition registrations of this run by month of acquisition
    for (month, n) in kouki_months {
        r.summary.add(SummaryKey::KoukiTransitions(month), n);
    }
    let s = &mut r.summary;
    s.set(
        SummaryKey::FilesApplied,
        r.inputs.iter().filter(|i| i.status == InputStatus::Applied).count() as u64,
    );
    s.set(
        SummaryKey::FilesSkipped,
        r.inputs.iter().filter(|i| i.status == InputStatus::Skipped).count() as u64,
    );
    s.set(
        SummaryKey::FilesRejected,
        r.inputs.iter().filter(|i| i.status == InputStatus::Rejected).count() as u64,
    );
    s.set(SummaryKey::RecordsRejected, r.rejects.len() as u64);
    s.set(SummaryKey::EventsApplied, o.events_applied);
    s.set(SummaryKey::SubscribersWritten, o.touched);
    s.set(SummaryKey::Carries, o.carries.len() as u64);
    s.set(SummaryKey::Withheld, derived_held.len() as u64);
    s.set(SummaryKey::Unpublished, ledger::unsent_count(conn)?);
    s.set(SummaryKey::PendingFlagsApplied, o.pending_applied as u64);
    s.set(SummaryKey::HandoffsReceived, o.handoffs_received);
    s.set(SummaryKey::HandoffsMatched, o.handoffs_matched);
    Ok(())
}
