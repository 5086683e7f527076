//! What one run (or migration) is told: folders, date, formats, limits; and the paths derived
//! from them that belong to its ledger (staging and spill folders carry the ledger's tag).

use super::spool::{self, Spool};
use crate::domain::{Catalog, Date};
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{Format, Limits, TextEncoding};
use crate::ledger;
use crate::shard::Shard;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

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
    /// `--full-check`: the start checks the whole ledger file, due or not
    /// ([`ledger::check_at_start`]).
    pub whole_check: ledger::WholeCheck,
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

    /// Where spill folders go: beside the ledger (a filesystem sized for the data, as private);
    /// the reports folder when the ledger's folder does not exist (a dry run without a ledger).
    pub fn spill_dir(&self) -> PathBuf {
        match self.ledger.parent() {
            Some(p) if !p.as_os_str().is_empty() && p.is_dir() => p.to_path_buf(),
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            _ => self.reports.clone(),
        }
    }

    /// Name prefix of this ledger's spill folders: `.nhi-spill-<tag>-`.
    pub fn spill_prefix(&self) -> String {
        format!("{}{}-", spool::SPILL_PREFIX, self.ledger_tag())
    }

    /// A spool for this ledger's records: spilled past `chunk_records`, into
    /// [`Self::spill_dir`] under [`Self::spill_prefix`].
    pub fn spool(&self) -> Spool {
        Spool::new(self.chunk_records, &self.spill_dir()).with_prefix(self.spill_prefix())
    }

    /// Name prefix of `migrate`'s diff spool in the reports folder: `.spool-migrate-<tag>-`
    /// (followed by the process id).
    pub fn migrate_spool_prefix(&self) -> String {
        format!(".spool-migrate-{}-", self.ledger_tag())
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
