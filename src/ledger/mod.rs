//! The durable ledger: SQLite (rusqlite, bundled) in WAL mode, committed with synchronous=FULL.
//!
//! A run reads what it needs by key (indexed lookups only, so a nightly delta touches just the
//! subscribers it names), computes a chunk of subscribers in memory, writes it back, and commits
//! all chunks in one transaction; what the publisher needs later sits in [`scratch`] tables.
//! A lock file next to the database keeps a second run out while one is running. A first load
//! (a ledger that holds nothing) is built beside it and renamed into place ([`aside`]).

pub mod aside;
mod check;
mod flags;
mod handoff;
mod inquiry;
mod lookup;
mod pending;
mod runs;
pub mod scratch;
mod store;

pub use check::{
    BULK_TABLES, WHOLE_CHECK_DAYS, WholeCheck, check_at_start, full_check, name_corruption, partial_check, quick_check,
    record_whole_check, whole_check_due,
};
pub use flags::{ExpiredSupportMeasure, expired_support_measures, subscriber_flag_types};
pub use handoff::{StoredHandoff, find_handoffs, list_pending_handoffs, mark_handoff_matched, upsert_handoff};
pub use pending::{PendingFlag, for_each_pending_flag, insert_pending_flag, take_pending_flags};
pub use runs::{
    JournalEvent, RunRow, RunStatus, applied_file_sha, checkpoint, count_journal_events, defer_checkpoint, delete_run,
    insert_applied_file, insert_run, journal, last_run_id, mark_published, run_exists, runs_to_publish,
};
pub use store::{
    FlaggedPersonKeys, RawFlagRow, StoredFukuhon, digest_mismatches, find_person, flag_digest, flag_orphans,
    flagged_person_keys, list_unsent, load_enrollment, load_fukuhon, load_insurer_flags, load_released,
    raw_flags_and_digest, set_publication, store_enrollment, store_fukuhon, store_insurer_flags, store_released,
    unsent_count,
};

pub use inquiry::{
    FlaglessHandoff, OpenInquiry, answered_inquiries, delete_inquiry, handoff_matched_uninquired, inquiry_exists,
    inquiry_is_open, mark_inquired, mark_inquiry_answered, match_flagless_handoff, open_inquiries, open_inquiry,
    open_inquiry_keys, record_answered, unmatched_flagless_handoffs,
};
pub use lookup::{
    EmptyTables, count_flagged_subscribers, empty_tables, flagged_kokuho_keys, flagged_subscriber_keys,
    holds_subscribers_of, insurers_in_municipality, read_snapshot, run_ids, uncancelled_with_flags,
    unmatched_handoff_sources,
};

use anyhow::{Context, Result};
use rusqlite::Connection;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

const SCHEMA_V1: &str = include_str!("schema.sql");
/// R13 registration inquiries (union side), beside schema v1: created when missing, so a ledger
/// of any v1 release gains it on open. One row per 後期 registration that matched nothing;
/// `status` 'open' until a hand-off, an answer or a 国保 enrollment matches it ('answered').
const INQUIRY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inquiry (
    insurer             TEXT NOT NULL,
    subscriber_key      TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('open', 'answered')),
    first_run           TEXT NOT NULL,
    last_run            TEXT,
    times_inquired      INTEGER NOT NULL DEFAULT 0,
    answered_run        TEXT,
    answered_by         TEXT,
    PRIMARY KEY (insurer, subscriber_key)
) WITHOUT ROWID;
";

/// Version 1 → 2 (also applied after version 1 when a ledger is created).
const SCHEMA_V2: &str = include_str!("schema_v2.sql");
/// Version 2 → 3: journal v2 (also applied after version 2 when a ledger is created).
const SCHEMA_V3: &str = include_str!("schema_v3.sql");
/// Page cache of the ledger itself, MiB (upper bound; SQLite allocates pages on demand).
const LEDGER_CACHE_MIB: i64 = 256;
/// Page cache of the run's scratch tables (TEMP schema), MiB.
const SCRATCH_CACHE_MIB: i64 = 128;

/// Current schema version (PRAGMA user_version).
pub const SCHEMA_VERSION: i64 = 3;

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

/// Takes the lock of the ledger at `ledger` without waiting. Give it the canonical path
/// ([`canonical`]): the lock file is `<path>.lock`, so a ledger reached through a symbolic link
/// or a relative path gets the same lock.
pub fn lock(ledger: &Path) -> Result<LedgerLock> {
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

/// What `acquire` does when no ledger is at the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfMissing {
    /// Refuse: a missing ledger is never taken for a new one (an unmounted disk or a mistyped
    /// path would otherwise look like an empty ledger).
    Refuse,
    /// Create it (`--init-ledger`): only when nothing at all is at the path.
    Create,
    /// Stand in an empty in-memory ledger and create nothing (dry runs).
    InMemory,
}

/// No ledger at the path, and the caller did not ask for a new one.
#[derive(Debug, thiserror::Error)]
#[error(
    "no ledger at {0}: a missing ledger is never taken for a new one. If this is a new installation, \
     create it with `run --init-ledger` (or `migrate --init-ledger`); otherwise check that the disk or mount holding it is \
     available and the path is right, or restore the ledger from its backup"
)]
pub struct LedgerMissing(pub String);

/// A zero-length file where the ledger should be.
#[derive(Debug, thiserror::Error)]
#[error(
    "the ledger {0} is empty (0 bytes): that is not a ledger and is never taken for a new one. If a \
     ledger should be there, restore it from its backup; if this is a new installation, remove the empty \
     file and run again with --init-ledger"
)]
pub struct LedgerEmpty(pub String);

/// A ledger opened for a command: the connection, the lock held until it is dropped, and the
/// canonical path that names everything belonging to this ledger (lock, spill, staging tags).
#[derive(Debug)]
pub struct Opened {
    pub conn: Connection,
    /// `None` only for an in-memory stand-in.
    pub lock: Option<LedgerLock>,
    /// The canonical path (symbolic links resolved); for an in-memory stand-in, the path as given.
    pub path: PathBuf,
    /// No ledger was at the path and an empty in-memory one stands in for it (nothing created).
    pub in_memory: bool,
    /// This call created the ledger (`IfMissing::Create`).
    pub created: bool,
    /// The ledger's WAL file was there before it was opened: the last process that had it open
    /// did not close it (a crash, a kill, a power cut), so the start checks the whole file.
    pub left_open: bool,
}

/// The canonical form of a ledger path: symbolic links and `..` resolved, absolute. For a path
/// where nothing exists yet, the canonical folder joined with the file name; `None` when the
/// folder does not exist either.
pub fn canonical(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Some(p);
    }
    let name = path.file_name()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::canonicalize(dir).ok().map(|d| d.join(name))
}

/// A short tag derived from a ledger's canonical path: names the staging and spill folders that
/// belong to this ledger, so that recovery removes only its own when ledgers share folders.
pub fn tag(canonical: &Path) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    h[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// What is at the ledger's path: `Ok(true)` a ledger (non-empty regular file), `Ok(false)`
/// nothing at all; an error for anything else (an empty file, a folder, a dangling link).
fn present(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => Err(LedgerEmpty(path.display().to_string()).into()),
        Ok(m) if m.is_file() => Ok(true),
        Ok(_) => anyhow::bail!("the ledger {} is not a regular file", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::symlink_metadata(path).is_ok() {
                anyhow::bail!(
                    "the ledger {} is a symbolic link to nothing: check that the disk or mount it points to is available",
                    path.display()
                );
            }
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the ledger {}", path.display())),
    }
}

/// Locks and opens the ledger at `path` for a command. A missing ledger is refused, created
/// (only when nothing is at the path) or stood in for by an empty in-memory one, as `if_missing`
/// says; a zero-length file is always refused. Refusing creates nothing (no folder, no lock file).
pub fn acquire(path: &Path, if_missing: IfMissing) -> Result<Opened> {
    let exists = present(path)?;
    if !exists {
        match if_missing {
            IfMissing::Refuse => return Err(LedgerMissing(path.display().to_string()).into()),
            IfMissing::InMemory => {
                return Ok(Opened {
                    conn: open(Path::new(":memory:"))?,
                    lock: None,
                    path: path.to_path_buf(),
                    in_memory: true,
                    created: false,
                    left_open: false,
                });
            }
            IfMissing::Create => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    let mut b = std::fs::DirBuilder::new();
                    b.recursive(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::DirBuilderExt;
                        b.mode(0o700);
                    }
                    b.create(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
            }
        }
    }
    let canon = canonical(path).with_context(|| format!("cannot resolve the ledger path {}", path.display()))?;
    check_private(&canon)?;
    let lock = lock(&canon)?;
    // again under the lock: another process may have created it meanwhile
    let created = !present(&canon)?;
    if created {
        if if_missing != IfMissing::Create {
            return Err(LedgerMissing(path.display().to_string()).into());
        }
        create_atomically(&canon)?;
        tracing::warn!(ledger = %canon.display(), "created a new, empty ledger (--init-ledger)");
    }
    let left_open = side_file(&canon, "-wal").exists();
    let conn = open(&canon)?;
    Ok(Opened {
        conn,
        lock: Some(lock),
        path: canon,
        in_memory: false,
        created,
        left_open,
    })
}

/// Tables the schema itself fills (code tables), and the record of the last whole-file check
/// (written by the start of a run that was then refused): rows there say nothing about the
/// ledger's use.
const SCHEMA_FILLED_TABLES: [&str; 2] = ["journal_event", "ledger_check"];

/// Removes the ledger at `path` when it holds nothing at all (no row in any table but the
/// schema's own code tables): a ledger that a refused first run created (`--init-ledger`), so
/// that refusing creates nothing.
/// Decided under the ledger's lock; `Ok(false)` when anything is in it (or nothing is there).
pub fn discard_unused(path: &Path) -> Result<bool> {
    let Some(canon) = canonical(path) else { return Ok(false) };
    if !present(&canon)? {
        return Ok(false);
    }
    let _lock = lock(&canon)?;
    {
        let conn = Connection::open_with_flags(&canon, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        if !holds_nothing(&conn)? {
            return Ok(false);
        }
    }
    std::fs::remove_file(&canon).with_context(|| format!("cannot remove {}", canon.display()))?;
    for suffix in SIDE_FILES {
        let mut name = canon.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
    Ok(true)
}

/// The ledger holds no row in any table but the schema's own code tables and the record of its
/// last whole-file check: nothing was ever applied to it.
pub fn holds_nothing(conn: &Connection) -> Result<bool> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for t in tables.iter().filter(|t| !SCHEMA_FILLED_TABLES.contains(&t.as_str())) {
        let any: bool = conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM \"{t}\")"), [], |r| r.get(0))?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `<ledger><suffix>`: a file SQLite keeps beside the ledger (`-wal`, `-shm`, `-journal`).
fn side_file(canon: &Path, suffix: &str) -> PathBuf {
    let mut name = canon.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Files SQLite keeps beside the ledger, and the lock file.
const SIDE_FILES: [&str; 4] = ["-wal", "-journal", "-shm", ".lock"];

/// The ledger's folder and files must be the user's alone: a folder others can write to lets
/// them plant a `-wal` file they can read (every change of the night, My Numbers included) or
/// replace the ledger, so it is refused, and so is a ledger, WAL, journal, shared-memory or lock
/// file that belongs to another user or is a link. Folder owned by this user or root, not
/// writable by group or others; files owned by this user.
#[cfg(unix)]
fn check_private(canon: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let dir = canon.parent().unwrap_or(Path::new("/"));
    let m = std::fs::metadata(dir).with_context(|| format!("cannot read the ledger folder {}", dir.display()))?;
    if m.mode() & 0o022 != 0 {
        anyhow::bail!(
            "the ledger folder {} can be written by other users (mode {:04o}): they could plant a WAL file \
             and read the ledger's changes, or replace the ledger. Make it private (chmod 700 {}) or move \
             the ledger to a private folder",
            dir.display(),
            m.mode() & 0o7777,
            dir.display()
        );
    }
    if m.uid() != me && m.uid() != 0 {
        anyhow::bail!(
            "the ledger folder {} belongs to another user (uid {}): run as that user, or move the ledger to a folder of your own",
            dir.display(),
            m.uid()
        );
    }
    let mut files = vec![canon.to_path_buf()];
    for suffix in SIDE_FILES {
        let mut name = canon.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for f in files {
        let m = match std::fs::symlink_metadata(&f) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", f.display())),
        };
        if !m.file_type().is_file() {
            anyhow::bail!(
                "{} is not a regular file (a link, folder or device): refusing to let SQLite open it. Check who put it there and remove it",
                f.display()
            );
        }
        if m.uid() != me {
            anyhow::bail!(
                "{} belongs to another user (uid {}): it may have been planted to read or change the ledger. \
                 Check who created it and remove it (or run as the ledger's owner)",
                f.display(),
                m.uid()
            );
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_canon: &Path) -> Result<()> {
    Ok(())
}

/// Creates an empty ledger file, 0600, failing if anything is at the path.
/// Creates a new ledger with its schema beside `path` and renames it into place, so that a
/// crash while creating it leaves no empty or half-made file at `path` (a rerun with
/// `--init-ledger` then simply creates it); leftovers of such a crash are removed here, under
/// the ledger's lock.
fn create_atomically(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{name}.init-");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                std::fs::remove_file(e.path()).ok();
            }
        }
    }
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    create_new(&tmp)?;
    // the schema, then the connection closed: SQLite checkpoints and removes its WAL
    drop(open(&tmp)?);
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write the new ledger {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot create the ledger {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().ok();
    }
    Ok(())
}

fn create_new(path: &Path) -> Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .with_context(|| format!("cannot create the ledger {}", path.display()))?;
    Ok(())
}

/// Opens (creating if needed) and migrates the ledger.
pub fn open(path: &Path) -> Result<Connection> {
    open_as(path, Journal::Wal)
}

/// How a ledger file is journaled while open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Journal {
    /// The ledger in place: WAL, every commit durable (synchronous=FULL).
    Wal,
    /// A first load built aside ([`aside`]): rollback journal in memory (a new file's pages need
    /// none), no fsync until the file is complete; a crash leaves only a file the rerun removes.
    Aside,
}

fn open_as(path: &Path, journal: Journal) -> Result<Connection> {
    if path.as_os_str() == ":memory:" {
        // an in-memory ledger (migrate's dry run against a ledger that does not exist yet)
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        conn.execute_batch(INQUIRY_SCHEMA)?;
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
    match journal {
        Journal::Wal => {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        Journal::Aside => {
            conn.pragma_update(None, "journal_mode", "MEMORY")?;
            conn.pragma_update(None, "synchronous", "OFF")?;
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        }
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // every cell of every page read is checked to lie within its page: damage in what a run
    // reads is reported (SQLITE_CORRUPT → exit 3) rather than read (see check.rs)
    conn.pragma_update(None, "cell_size_check", "ON")?;
    // Page caches are allocated as pages are used: a nightly delta stays small, while a full
    // load stops re-reading index pages it spilled (2 MiB default) and the run's scratch tables
    // (TEMP, read back for the linkage) stay out of their temporary file. Measured on a 500k
    // full load: 61.8 s → 40.8 s together with mimalloc; peak RSS 288 → 660 MB.
    conn.pragma_update(None, "cache_size", -(LEDGER_CACHE_MIB * 1024))?;
    conn.pragma_update(Some("temp"), "cache_size", -(SCRATCH_CACHE_MIB * 1024))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&conn)?;
    conn.execute_batch(INQUIRY_SCHEMA)
        .context("cannot create the inquiry table")?;
    conn.execute_batch(check::CHECK_SCHEMA)
        .context("cannot create the ledger_check table")?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let (steps, what) = match v {
        0 => (
            vec![SCHEMA_V1, SCHEMA_V2, SCHEMA_V3],
            "cannot create the ledger schema".to_owned(),
        ),
        1 => (
            vec![SCHEMA_V2, SCHEMA_V3],
            format!("cannot upgrade the ledger from schema version 1 to {SCHEMA_VERSION}"),
        ),
        2 => (
            vec![SCHEMA_V3],
            format!("cannot upgrade the ledger from schema version 2 to {SCHEMA_VERSION}"),
        ),
        SCHEMA_VERSION => return Ok(()),
        v if v > SCHEMA_VERSION => anyhow::bail!(
            "the ledger has schema version {v}, newer than this nhi-linkage ({SCHEMA_VERSION}); use a newer release"
        ),
        v => anyhow::bail!("unknown ledger schema version {v}"),
    };
    if v > 0 {
        tracing::info!(from = v, to = SCHEMA_VERSION, "upgrading the ledger schema");
    }
    // one transaction: an upgrade interrupted half-way leaves the ledger at its old version
    conn.execute_batch(&format!(
        "BEGIN;\n{}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;",
        steps.join("\n")
    ))
    .inspect_err(|_| {
        // leave no transaction open on the connection
        let _ = conn.execute_batch("ROLLBACK");
    })
    .context(what)
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
/// The version 1 → 2 upgrade: with [`SCHEMA_V1_SQL`], a version 2 ledger as releases before
/// journal v2 wrote it, for tests of the upgrade path.
#[doc(hidden)]
pub const SCHEMA_V2_SQL: &str = SCHEMA_V2;
