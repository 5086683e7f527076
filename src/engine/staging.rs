//! Staging and publishing (R12): a run writes its linkage files and report into staging folders
//! named after the ledger and the run, the ledger's commit records them, and publishing renames
//! them to their final names. A rerun finishes what a crash left committed and removes what it
//! left uncommitted.

use super::failpoint::crash_at;
use super::options::RunOptions;
use super::spool;
use crate::ledger;
use crate::publish::sync_dir;
use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A staging folder of one run (`.staging-<tag>-<run-id>` in the outbox or reports folder):
/// removed when dropped, so that every way out before the commit (an error, an R4 abort, a
/// signal, a dry run) leaves nothing half-written behind, unless [`Staging::committed`] said the
/// ledger now records it (then publishing renames it, or the next run does: R12). A simulated
/// crash (`process::exit`) drops nothing: its staging is what [`recover`] finds.
pub(crate) struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    /// The staging folder of `run_id` in `dir` for the ledger tagged `tag`, with whatever an
    /// earlier attempt left there removed; not created.
    pub(crate) fn fresh(dir: &Path, tag: &str, run_id: &str) -> Result<Staging> {
        let path = dir.join(staging_name(tag, run_id));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        Ok(Staging { path, committed: false })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the folder now, reporting a failure (an empty outbox staging is not published).
    pub(crate) fn discard(mut self) -> Result<()> {
        self.committed = true; // nothing left for `drop`
        std::fs::remove_dir_all(&self.path)?;
        Ok(())
    }

    /// The ledger's commit recorded this folder: it is kept for publishing.
    pub(crate) fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            std::fs::remove_dir_all(&self.path).ok();
        }
    }
}

/// The staging folder name of `run_id` for the ledger tagged `tag`: `.staging-<tag>-<run-id>`.
fn staging_name(tag: &str, run_id: &str) -> String {
    format!(".staging-{tag}-{run_id}")
}

/// Finishes runs committed but not yet published, from the staging paths the ledger recorded,
/// and removes this ledger's staging of uncommitted runs and its spill folders (R12). Staging
/// and spill of other ledgers sharing the outbox, reports folder or ledger folder are never
/// touched: their names carry another ledger's tag.
pub(crate) fn recover(conn: &Connection, opts: &RunOptions) -> Result<()> {
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
    spool::remove_leftovers(&opts.spill_dir(), &opts.spill_prefix());
    // migrate's diff spool (each subscriber's flag state) left by a crashed migration
    let spool_prefix = opts.migrate_spool_prefix();
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

/// Moves a committed run's staged folders to their final names and marks the run published.
/// A published folder is never replaced: one that holds the very same files (a restored ledger
/// running the same night again) is kept and the staging dropped; any other is an error. An error
/// after the commit (a path in the way, a full disk) is returned inside [`PublishFailed`], which
/// says what was committed and published and what to do.
pub(crate) fn publish(conn: &Connection, r: &ledger::RunRow) -> Result<()> {
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
    pub(crate) fn of(r: &ledger::RunRow) -> PublishFailed {
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
