//! Loading the inbox: the files listed, read in parallel into the spool (sorted by subscriber,
//! spilled to disk when large), each checked not to have changed while it was read; R10 (a file
//! already applied is skipped, a reused FileIdentifier rejected); R1's file order; and the
//! report's input lines and rejects.

use super::batch::BatchFile;
use super::failpoint::pause_after_file;
use super::interrupt;
use super::options::RunOptions;
use super::progress::progress_span;
use super::spool::Spool;
use crate::domain::{FileKind, InsurerNumber, Record, Timestamp};
use crate::error::{Diagnostic, ErrorCode};
use crate::formats::{FileHeader, ReadOptions, RecordOutcome, hex, read_input};
use crate::ledger;
use crate::report::{InputEntry, InputStatus, RejectEntry, Report, Spooled};
use crate::shard::Gate;
use anyhow::{Context, Result};
use rayon::iter::{IndexedParallelIterator, IntoParallelRefIterator, ParallelIterator};
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// What becomes of an inbox file (R10), with its header: a file applied or skipped was parsed,
/// so it has one; a rejected file has one when the reader got past it.
pub(crate) enum Fate {
    Applied(FileHeader),
    /// Applied before (same sender, FileIdentifier and SHA-256): not applied again.
    Skipped(FileHeader),
    Rejected(Option<FileHeader>),
}

impl Fate {
    pub(crate) fn status(&self) -> InputStatus {
        match self {
            Fate::Applied(_) => InputStatus::Applied,
            Fate::Skipped(_) => InputStatus::Skipped,
            Fate::Rejected(_) => InputStatus::Rejected,
        }
    }

    pub(crate) fn header(&self) -> Option<&FileHeader> {
        match self {
            Fate::Applied(h) | Fate::Skipped(h) => Some(h),
            Fate::Rejected(h) => h.as_ref(),
        }
    }

    /// The header of a file being applied.
    pub(crate) fn applied(&self) -> Option<&FileHeader> {
        match self {
            Fate::Applied(h) => Some(h),
            _ => None,
        }
    }

    /// R10: an applied file whose bytes were applied before is skipped.
    fn skip(&mut self) {
        *self = match std::mem::replace(self, Fate::Rejected(None)) {
            Fate::Applied(h) => Fate::Skipped(h),
            other => other,
        };
    }

    /// R10: a file is rejected, keeping its header.
    fn reject(&mut self) {
        *self = match std::mem::replace(self, Fate::Rejected(None)) {
            Fate::Applied(h) | Fate::Skipped(h) => Fate::Rejected(Some(h)),
            rejected => rejected,
        };
    }
}

/// One inbox file as read: its digest, rejects and what becomes of it (R10) with its header.
pub(crate) struct LoadedFile {
    /// Where it was read.
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) sha: String,
    /// Its rejected records' errors (spooled: a file can hold a million bad records).
    pub(crate) rejects: Spooled<RejectEntry>,
    /// How many records the rejects are about (distinct RecordSequences).
    pub(crate) rejected_records: u64,
    pub(crate) file_errors: Vec<Diagnostic>,
    pub(crate) total: u64,
    pub(crate) fate: Fate,
    pub(crate) note: Option<String>,
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
        path: path.to_path_buf(),
        file_errors: vec![Diagnostic::new(&name, ErrorCode::Schema, message)],
        name,
        sha: String::new(),
        rejects: Spooled::default(),
        rejected_records: 0,
        total: 0,
        fate: Fate::Rejected(None),
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
            path: path.to_path_buf(),
            name: name.clone(),
            sha: hex(&s.sha256),
            fate: Fate::Rejected(Some(s.header)),
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
            note: None,
        },
        Ok(s) => LoadedFile {
            path: path.to_path_buf(),
            name,
            sha: hex(&s.sha256),
            fate: Fate::Applied(s.header),
            rejects,
            rejected_records: {
                rejected_seqs.sort_unstable();
                rejected_seqs.dedup();
                rejected_seqs.len() as u64
            },
            file_errors: Vec::new(),
            total: s.records,
            note: None,
        },
        Err(r) => LoadedFile {
            path: path.to_path_buf(),
            name,
            sha: String::new(),
            fate: Fate::Rejected(r.header),
            rejects: Spooled::default(),
            rejected_records: 0,
            file_errors: r.diagnostics,
            total: 0,
            note: None,
        },
    })
}

fn sha_file(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

/// Reads every inbox file (in parallel) into `spool`, the records this process applies
/// (`gate`: all of them, or this shard's). A signal stops the reading of further files: what was
/// read is discarded ([`interrupt::Interrupted`]).
pub(crate) fn read_inbox(opts: &RunOptions, spool: &Spool, spill_to: &Path, gate: &Gate) -> Result<Vec<LoadedFile>> {
    let paths = list_inbox(&opts.inbox)?;
    let ropts = ReadOptions {
        catalog: &opts.catalog,
        limits: opts.limits,
    };
    let input_bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    tracing::info!(files = paths.len(), bytes = input_bytes, "reading inbox");
    let t0 = std::time::Instant::now();
    let bar = progress_span("reading inbox files", Some(paths.len() as u64));
    let files: Option<Result<Vec<LoadedFile>>> = bar.in_scope(|| {
        paths
            .par_iter()
            .enumerate()
            .map(|(tag, p)| {
                let f =
                    (!interrupt::requested()).then(|| load(p, &opts.inbox, &ropts, spool, spill_to, tag as u32, gate));
                bar.pb_inc(1);
                f
            })
            .collect()
    });
    drop(bar);
    let files = files.ok_or(interrupt::Interrupted { phase: "reading" })??;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "read inbox");
    Ok(files)
}

/// The SHA-256 of files whose reading stopped before the end (rejected whole), read again for
/// the run id and the report.
pub(crate) fn fill_missing_sha(files: &mut [LoadedFile]) {
    for f in files.iter_mut() {
        if f.sha.is_empty() {
            f.sha = sha_file(&f.path).unwrap_or_default();
        }
    }
}

/// R10: a file whose (sender, FileIdentifier) was applied before, by the ledger or earlier in
/// this inbox, is skipped when its SHA-256 is the same and rejected when it differs.
pub(crate) fn check_resent(conn: &Connection, files: &mut [LoadedFile]) -> Result<()> {
    let mut seen: HashMap<(InsurerNumber, String), String> = HashMap::new();
    for f in files.iter_mut() {
        let Some(h) = f.fate.applied() else { continue };
        let key = (h.sender, h.file_identifier.clone());
        let prior = match seen.get(&key) {
            Some(s) => Some(s.clone()),
            None => ledger::applied_file_sha(conn, h.sender, &h.file_identifier)?,
        };
        match prior {
            Some(s) if s == f.sha => {
                f.fate.skip();
                f.note = Some("already applied (same FileIdentifier and SHA-256)".into());
                f.rejects = Spooled::default();
                f.rejected_records = 0;
            }
            Some(_) => {
                f.fate.reject();
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
    Ok(())
}

/// R1: the applied files in (CreationTime, sender, FileSequence, name) order, as the batch's
/// files. Records of files not applied (skipped, rejected) stay in the spool and are ignored.
pub(crate) fn batch_files(files: &[LoadedFile]) -> Vec<BatchFile> {
    let mut order: Vec<(usize, &FileHeader)> = files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((i, f.fate.applied()?)))
        .collect();
    order.sort_by(|&(a, ha), &(b, hb)| {
        (ha.creation_time, ha.sender, ha.file_sequence, &files[a].name).cmp(&(
            hb.creation_time,
            hb.sender,
            hb.file_sequence,
            &files[b].name,
        ))
    });
    let mut batch_files: Vec<BatchFile> = files
        .iter()
        .map(|f| BatchFile {
            name: Arc::from(f.name.as_str()),
            order: None,
            key: match f.fate.applied() {
                Some(h) => BatchFile::r1_key(h, &f.name),
                None => Arc::from(f.name.as_str()),
            },
        })
        .collect();
    for (pos, &(i, _)) in order.iter().enumerate() {
        batch_files[i].order = Some(pos as u32);
    }
    batch_files
}

/// An applied file as the ledger records it (R10), once the run commits.
pub(crate) struct AppliedFile {
    sender: InsurerNumber,
    file_identifier: String,
    sha: String,
    kind: FileKind,
    name: String,
    records: u64,
    rejected: u64,
}

impl AppliedFile {
    pub(crate) fn record(&self, tx: &Connection, run_id: &str) -> Result<()> {
        ledger::insert_applied_file(
            tx,
            self.sender,
            &self.file_identifier,
            &self.sha,
            self.kind,
            &self.name,
            run_id,
            self.records,
            self.rejected,
        )
    }
}

/// The report's input lines and rejects (a rejected file's, and those of files carrying flags or
/// hand-offs, are critical); returns the applied files for the ledger.
pub(crate) fn record_inputs(report: &mut Report, files: &mut [LoadedFile]) -> Result<Vec<AppliedFile>> {
    let mut applied = Vec::new();
    for f in files.iter_mut() {
        let h = f.fate.header();
        let rejected = f.rejected_records;
        report.inputs.push(InputEntry {
            name: f.name.clone(),
            kind: h.map(|h| h.kind.name().to_owned()).unwrap_or_default(),
            format: h.map(|h| format!("{:?}", h.format).to_lowercase()).unwrap_or_default(),
            encoding: h.map(|h| h.encoding.xml_label().to_owned()).unwrap_or_default(),
            status: f.fate.status(),
            records: f.total,
            rejected,
            note: f.note.clone(),
        });
        let critical = h.is_some_and(|h| matches!(h.kind, FileKind::FlagChange | FileKind::AgeTransitionHandoff))
            || matches!(f.fate, Fate::Rejected(_));
        for d in &f.file_errors {
            report.rejects.push(RejectEntry::from_diag(d, critical))?;
        }
        let rejects = std::mem::take(&mut f.rejects);
        if critical {
            report.rejects.append_with(rejects, |e| e.critical = true)?;
        } else {
            report.rejects.append(rejects)?;
        }
        if let Some(h) = f.fate.applied() {
            applied.push(AppliedFile {
                sender: h.sender,
                file_identifier: h.file_identifier.clone(),
                sha: f.sha.clone(),
                kind: h.kind,
                name: f.name.clone(),
                records: f.total,
                rejected,
            });
        }
    }
    Ok(applied)
}

/// CreationTime of the output headers: the latest of the applied files, or the start of the
/// run date when none applied.
pub(crate) fn creation_time(files: &[LoadedFile], as_of: crate::domain::Date) -> Timestamp {
    files
        .iter()
        .filter_map(|f| f.fate.applied().map(|h| h.creation_time))
        .max()
        .unwrap_or_else(|| Timestamp::start_of(as_of))
}
