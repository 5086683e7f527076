//! The first-load path: a run or migration into a ledger that holds nothing builds the new
//! ledger aside, as `<ledger>.first-load-<pid>` in the ledger's folder, with its rollback journal
//! in memory (a new file's pages need none) and no fsync while it is built. Once the run's
//! transaction is committed in it, the file is fsynced once and renamed over the empty ledger
//! (the folder fsynced too); the run then reopens the ledger in place in WAL mode, to publish.
//!
//! Why: in WAL mode a first load writes every page twice (into the WAL, then the checkpoint
//! copies it into the ledger) and fsyncs both; aside, each page is written once.
//!
//! Crash safety (R12): before the rename, the ledger at its path is still the empty one; the
//! rerun removes the file left aside (here, under the ledger's lock) and the run's staging (which
//! the empty ledger never recorded), and loads again. After the rename, the ledger holds the
//! committed run, and the rerun publishes it as after any commit.

use super::{Journal, create_new, open_as, side_file};
use anyhow::{Context, Result};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// A new ledger being built aside, removed when dropped before [`Aside::put_in_place`].
#[derive(Debug)]
pub struct Aside {
    built: PathBuf,
    target: PathBuf,
    in_place: bool,
}

/// What a file built aside for the ledger `<name>` is called: `<name>.first-load-<pid>`.
fn prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name}.first-load-")
}

/// Removes what an earlier first load of the ledger at `target` left aside (a crash before its
/// rename): files named exactly `<name>.first-load-<digits>`, nothing else. Call under the
/// ledger's lock.
pub fn remove_leftovers(target: &Path) {
    let dir = target.parent().unwrap_or(Path::new("."));
    let prefix = prefix(target);
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let left = name
            .strip_prefix(&prefix)
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if left && e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok() {
            tracing::warn!(file = %name, "removed a first load left aside by an interrupted run");
        }
    }
}

/// Starts a first load for the ledger at `target` (its canonical path): the caller holds the
/// ledger's lock, has found it holding nothing ([`super::holds_nothing`]) and has closed its
/// connection. `None` when SQLite's side files are still beside it (a WAL or journal that the
/// rename must not pair with another file): the run then goes the normal way.
pub fn begin(target: &Path) -> Result<Option<(Connection, Aside)>> {
    if side_file(target, "-wal").exists() || side_file(target, "-journal").exists() {
        return Ok(None);
    }
    remove_leftovers(target);
    let dir = target.parent().unwrap_or(Path::new("."));
    let built = dir.join(format!("{}{}", prefix(target), std::process::id()));
    create_new(&built)?;
    let aside = Aside {
        built,
        target: target.to_path_buf(),
        in_place: false,
    };
    let conn = open_as(&aside.built, Journal::Aside)
        .with_context(|| format!("cannot build the new ledger aside at {}", aside.built.display()))?;
    tracing::info!(file = %aside.built.display(), "first load: building the new ledger aside");
    Ok(Some((conn, aside)))
}

impl Aside {
    /// Closes the ledger built aside (its transaction committed), fsyncs it, renames it over the
    /// empty ledger and fsyncs the folder. An error here leaves the empty ledger in place (and
    /// the file aside is removed when `self` drops): nothing is committed.
    pub fn put_in_place(mut self, conn: Connection) -> Result<PathBuf> {
        let what = || format!("cannot put the new ledger {} in place", self.target.display());
        conn.close().map_err(|(_, e)| e).with_context(what)?;
        std::fs::File::open(&self.built)
            .and_then(|f| f.sync_all())
            .with_context(what)?;
        // the empty ledger's shared-memory index would describe another file
        let _ = std::fs::remove_file(side_file(&self.target, "-shm"));
        std::fs::rename(&self.built, &self.target).with_context(what)?;
        self.in_place = true;
        if let Ok(d) = std::fs::File::open(self.target.parent().unwrap_or(Path::new("."))) {
            d.sync_all().ok();
        }
        Ok(self.target.clone())
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        if !self.in_place {
            let _ = std::fs::remove_file(&self.built);
        }
    }
}
