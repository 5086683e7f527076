//! What a command checks of the ledger before it publishes anything, and when (docs/operators.md
//! section 7, docs/design.md "Integrity of the ledger").
//!
//! A whole-file `PRAGMA quick_check` reads every page: at 2M subscribers 9 s of a nightly delta's
//! 12 s, growing with the ledger, not with the night. So a run's start checks the whole file only
//! when there is a reason to ([`WholeCheck`], [`whole_check_due`]): asked for (`--full-check`),
//! the last process left the ledger open (a crash, a kill, a power cut: its WAL is still there),
//! no whole-file check is on record, or the last one is older than [`WHOLE_CHECK_DAYS`] days.
//! Every other start checks the tables that are not per-subscriber bulk ([`partial_check`]: the
//! flags, hand-offs, pending flags, runs, applied files, inquiries; a few pages), and the rest is
//! guarded where the run reads it: SQLite verifies every page it reads (with `cell_size_check`
//! on, each cell's extent too) and reports `SQLITE_CORRUPT`, which [`name_corruption`] turns
//! into [`LedgerCorrupt`] (exit 3, nothing committed or published).
//!
//! A sound whole-file check is recorded by the transaction of the `run` that made it (a dry run,
//! a refused or failed run records nothing) and by a sound `ledger check`; `migrate` always checks
//! the whole file and records nothing.

use super::{LedgerCorrupt, Opened, digest_mismatches, flag_orphans};
use anyhow::Result;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The longest a run goes without a whole-file check, in days (by the clock of the machine).
pub const WHOLE_CHECK_DAYS: u64 = 7;

/// The per-subscriber bulk tables: read by key (a night reads only the pages of the subscribers
/// it touches) and left to the whole-file check and to SQLite's check of each page it reads.
/// Their indexes go with them. Every other table is checked at every start.
pub const BULK_TABLES: [&str; 4] = ["enrollment", "period", "fukuhon", "journal_line"];

/// The record of the last whole-file check (one row; Unix seconds and which check it was).
pub(super) const CHECK_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_check (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at  INTEGER NOT NULL,
    how         TEXT NOT NULL CHECK (how IN ('quick_check', 'integrity_check'))
);
";

/// Whether a command's start checks the whole file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WholeCheck {
    /// When [`whole_check_due`] says so.
    #[default]
    Auto,
    /// Always (`--full-check`, and `migrate`).
    Always,
}

/// Why the start checks the whole file now (`None`: only [`partial_check`]).
pub fn whole_check_due(conn: &Connection, led: &Opened, whole: WholeCheck) -> Result<Option<String>> {
    if whole == WholeCheck::Always {
        return Ok(Some("asked for".into()));
    }
    if led.left_open {
        return Ok(Some(
            "the last process that had the ledger open did not close it (its WAL file was still there)".into(),
        ));
    }
    let last: Option<i64> = conn
        .query_row("SELECT checked_at FROM ledger_check WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    let Some(last) = last else {
        return Ok(Some("no whole-file check on record".into()));
    };
    let now = unix_now();
    let age = now - last;
    if age < 0 {
        return Ok(Some(
            "the last whole-file check is dated in the future (the clock was changed)".into(),
        ));
    }
    let days = age / 86_400;
    if days >= WHOLE_CHECK_DAYS as i64 {
        return Ok(Some(format!("the last whole-file check is {days} days old")));
    }
    Ok(None)
}

/// The start's check of a command that publishes: the whole file when [`whole_check_due`] says
/// so, otherwise [`partial_check`]. `Ok(true)`: the whole file was checked and is sound; `run`
/// records that with [`record_whole_check`] in its own transaction, so a dry run, a refused or
/// failed run leaves the ledger as it was. An in-memory stand-in is not checked.
pub fn check_at_start(led: &Opened, whole: WholeCheck) -> Result<bool> {
    if led.in_memory {
        return Ok(false);
    }
    let conn = &led.conn;
    match whole_check_due(conn, led, whole)? {
        Some(why) => {
            tracing::info!(reason = %why, "checking the whole ledger");
            quick_check(conn, &led.path)?;
            Ok(true)
        }
        None => partial_check(conn, &led.path).map(|()| false),
    }
}

/// Notes a sound whole-file check (`how`: `quick_check` or `integrity_check`) as the last one.
pub fn record_whole_check(conn: &Connection, how: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO ledger_check (id, checked_at, how) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at, how = excluded.how",
        rusqlite::params![unix_now(), how],
    )?;
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// SQLite's `PRAGMA quick_check` (every page and B-tree structure, not index contents) of the
/// whole file.
pub fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let t0 = Instant::now();
    let lines = pragma_lines(conn, "PRAGMA quick_check(20)");
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        scope = "whole file",
        "ledger quick_check"
    );
    verdict(path, lines)
}

/// `PRAGMA quick_check(TABLE)` of every table but the [`BULK_TABLES`] (each with its indexes):
/// the flags and what carries them (hand-offs, pending flags), runs, applied files, inquiries.
pub fn partial_check(conn: &Connection, path: &Path) -> Result<()> {
    let t0 = Instant::now();
    let tables = (|| -> rusqlite::Result<Vec<String>> {
        conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect()
    })();
    let tables = match tables {
        Ok(t) => t,
        Err(e) => return verdict(path, vec![e.to_string()]),
    };
    let mut lines = Vec::new();
    for t in tables.iter().filter(|t| !BULK_TABLES.contains(&t.as_str())) {
        let found = pragma_lines(conn, &format!("PRAGMA quick_check(\"{t}\")"));
        if !(found.len() == 1 && found[0] == "ok") {
            lines.extend(found.into_iter().map(|l| format!("{t}: {l}")));
        }
    }
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        scope = "all but the bulk tables",
        "ledger quick_check"
    );
    if lines.is_empty() {
        lines.push("ok".into());
    }
    verdict(path, lines)
}

fn pragma_lines(conn: &Connection, pragma: &str) -> Vec<String> {
    (|| -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare(pragma)?;
        st.query_map([], |r| r.get(0))?.collect()
    })()
    .unwrap_or_else(|e| vec![e.to_string()])
}

fn verdict(path: &Path, lines: Vec<String>) -> Result<()> {
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
    // SQLite may report damage as lines or, when it cannot go on, as an error: both are damage
    let lines = pragma_lines(conn, "PRAGMA integrity_check(100)");
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

/// SQLite found a damaged page while the command read or wrote the ledger at `path`
/// (`SQLITE_CORRUPT`, or `SQLITE_NOTADB` for a damaged header): the error becomes
/// [`LedgerCorrupt`] (exit 3, the documented message); any other error is returned as it is.
/// Only SQLite's own message is kept: the contexts around it may name a subscriber.
pub fn name_corruption(e: anyhow::Error, path: &Path) -> anyhow::Error {
    if e.downcast_ref::<LedgerCorrupt>().is_some() {
        return e;
    }
    let found = e.chain().find_map(|c| match c.downcast_ref::<rusqlite::Error>() {
        Some(rusqlite::Error::SqliteFailure(f, msg))
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            Some(format!(
                "SQLite: {} (code {})",
                msg.as_deref().unwrap_or("database disk image is malformed"),
                f.extended_code
            ))
        }
        _ => None,
    });
    match found {
        Some(what) => LedgerCorrupt {
            path: path.display().to_string(),
            what,
        }
        .into(),
        None => e,
    }
}
