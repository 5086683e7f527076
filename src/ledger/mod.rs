//! The durable ledger: SQLite (rusqlite, bundled) in WAL mode, committed with synchronous=FULL.
//!
//! A run reads what it needs by key (indexed lookups only, so a nightly delta touches just the
//! subscribers it names), computes a chunk of subscribers in memory, writes it back, and commits
//! all chunks in one transaction; what the publisher needs later sits in [`scratch`] tables.
//! A lock file next to the database keeps a second run out while one is running.

pub mod scratch;
mod store;

pub use store::*;

use anyhow::{Context, Result};
use rusqlite::Connection;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

const SCHEMA_V1: &str = include_str!("schema.sql");
/// Version 1 → 2 (also applied after version 1 when a ledger is created).
const SCHEMA_V2: &str = include_str!("schema_v2.sql");
/// Page cache of the ledger itself, MiB (upper bound; SQLite allocates pages on demand).
const LEDGER_CACHE_MIB: i64 = 256;
/// Page cache of the run's scratch tables (TEMP schema), MiB.
const SCRATCH_CACHE_MIB: i64 = 128;

/// Current schema version (PRAGMA user_version).
pub const SCHEMA_VERSION: i64 = 2;

/// Held for the whole run: an exclusive lock on `<ledger>.lock`.
#[derive(Debug)]
pub struct LedgerLock {
    _file: File,
    path: PathBuf,
}

impl LedgerLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Another process holds the ledger.
#[derive(Debug, thiserror::Error)]
#[error("the ledger {0} is in use by another nhi-linkage process (lock file {0}.lock); wait for it to finish")]
pub struct LedgerBusy(pub String);

/// Takes the ledger's lock without waiting.
pub fn lock(ledger: &Path) -> Result<LedgerLock> {
    if let Some(dir) = ledger.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut name = ledger.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        // nothing is written in it, but everything beside the ledger is owner-only
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(LedgerLock { _file: file, path }),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerBusy(ledger.display().to_string()).into()),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context("cannot lock the ledger"),
    }
}

/// Opens (creating if needed) and migrates the ledger.
pub fn open(path: &Path) -> Result<Connection> {
    if path.as_os_str() == ":memory:" {
        // an in-memory ledger (migrate's dry run against a ledger that does not exist yet)
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        return Ok(conn);
    }
    #[cfg(unix)]
    {
        // Create a new ledger as 0600 before SQLite touches it, so it is never readable by others,
        // not even for a moment; SQLite gives its -wal/-shm files the database file's mode.
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open ledger {}", path.display()))?;
    }
    let conn = Connection::open(path).with_context(|| format!("cannot open ledger {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // personal data: owner only
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Page caches are allocated as pages are used: a nightly delta stays small, while a full
    // load stops re-reading index pages it spilled (2 MiB default) and the run's scratch tables
    // (TEMP, read back for the linkage) stay out of their temporary file. Measured on a 500k
    // full load: 61.8 s → 40.8 s together with mimalloc; peak RSS 288 → 660 MB.
    conn.pragma_update(None, "cache_size", -(LEDGER_CACHE_MIB * 1024))?;
    conn.pragma_update(Some("temp"), "cache_size", -(SCRATCH_CACHE_MIB * 1024))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match v {
        0 => conn
            .execute_batch(&format!(
                "BEGIN;\n{SCHEMA_V1}\n{SCHEMA_V2}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
            ))
            .context("cannot create the ledger schema"),
        1 => conn
            .execute_batch(&format!("BEGIN;\n{SCHEMA_V2}\nPRAGMA user_version = 2;\nCOMMIT;"))
            .context("cannot upgrade the ledger from schema version 1 to 2"),
        SCHEMA_VERSION => Ok(()),
        v if v > SCHEMA_VERSION => anyhow::bail!(
            "the ledger has schema version {v}, newer than this nhi-linkage ({SCHEMA_VERSION}); use a newer release"
        ),
        v => anyhow::bail!("unknown ledger schema version {v}"),
    }
}

/// The ledger is damaged: SQLite's own check or the flags' second record disagree.
#[derive(Debug, thiserror::Error)]
#[error(
    "the ledger {path} is damaged ({what}); nothing was changed or published. Run `nhi-linkage ledger check --ledger {path}` and restore the last good backup (see docs)"
)]
pub struct LedgerCorrupt {
    pub path: String,
    pub what: String,
}

/// SQLite's `PRAGMA quick_check` (every page and B-tree structure, not index contents): run at
/// the start of every command that publishes, before anything is read for publishing.
pub fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let t0 = std::time::Instant::now();
    let lines = (|| -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare("PRAGMA quick_check(20)")?;
        st.query_map([], |r| r.get(0))?.collect()
    })()
    .unwrap_or_else(|e| vec![e.to_string()]);
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "ledger quick_check");
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(());
    }
    Err(LedgerCorrupt {
        path: path.display().to_string(),
        what: format!("quick_check: {}", lines.join("; ")),
    }
    .into())
}

/// A full check (`ledger check`): SQLite's integrity_check (pages, B-trees and every index
/// against its table), each subscriber's flag rows against their second record, and flag rows
/// that belong to nothing. Returns the problems found (empty: the ledger is sound).
pub fn full_check(conn: &Connection) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut st = conn.prepare("PRAGMA integrity_check(100)")?;
    let lines: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    if !(lines.len() == 1 && lines[0] == "ok") {
        problems.extend(lines.into_iter().map(|l| format!("integrity_check: {l}")));
        // the tables below cannot be trusted to be read
        return Ok(problems);
    }
    for (i, k) in digest_mismatches(conn)? {
        problems.push(format!(
            "subscriber {i}/{k}: flag rows do not match their second record (flag_digest)"
        ));
    }
    for (i, k, what) in flag_orphans(conn)? {
        problems.push(format!("subscriber {i}/{k}: {what}"));
    }
    Ok(problems)
}

/// A consistent copy of the ledger at `to` (SQLite `VACUUM INTO`: a snapshot of the last commit,
/// taken while holding the ledger's lock, compacted). `to` must not exist.
pub fn backup(conn: &Connection, to: &Path) -> Result<()> {
    // created empty and owner-only first (VACUUM INTO accepts an empty file), so the copy of
    // personal data is never readable by others, not even for a moment
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(to).with_context(|| {
        format!(
            "cannot create the backup {} (a backup never replaces a file)",
            to.display()
        )
    })?;
    conn.execute("VACUUM INTO ?1", [to.to_string_lossy()])
        .with_context(|| format!("cannot write the backup {}", to.display()))?;
    Ok(())
}

/// The version 1 schema, for tests of the upgrade path.
#[doc(hidden)]
pub const SCHEMA_V1_SQL: &str = SCHEMA_V1;
