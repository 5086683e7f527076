//! The runs a ledger recorded: applied files (R10), the journal, and runs with their staged and
//! published folders (R12).

use crate::domain::{Date, FileKind, InsurerNumber, SubscriberKey};
use anyhow::Result;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

/// SHA-256 (hex) of an applied file with this sender and identifier, if any (R10).
pub fn applied_file_sha(conn: &Connection, sender: InsurerNumber, file_identifier: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT sha256 FROM applied_file WHERE sender = ?1 AND file_identifier = ?2")?
        .query_row(params![sender, file_identifier], |r| r.get(0))
        .optional()?)
}

#[allow(clippy::too_many_arguments)]
pub fn insert_applied_file(
    conn: &Connection,
    sender: InsurerNumber,
    file_identifier: &str,
    sha256: &str,
    kind: FileKind,
    name: &str,
    run_id: &str,
    records: u64,
    rejected: u64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO applied_file (sender, file_identifier, sha256, kind, name, run_id, records, rejected)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        sender,
        file_identifier,
        sha256,
        kind.name(),
        name,
        run_id,
        records as i64,
        rejected as i64
    ])?;
    Ok(())
}

/// What a journal line records: the `event` column of the `journal` view (stored as a code in
/// `journal_line.event`, named by the `journal_event` table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalEvent {
    /// 資格取得 applied.
    Acquisition,
    /// 記載事項変更 applied.
    Update,
    /// 資格喪失 applied.
    Loss,
    /// 取消 applied.
    Cancel,
    FlagSet,
    FlagReleased,
    /// A flag kept until its enrollment arrives (R7).
    FlagPending,
    /// Flags carried across the 国保→後期 transfer (R3).
    Carry,
    /// A 副本 record applied.
    Fukuhon,
    /// An insurer-wide (Scope 2) flag change.
    InsurerFlag,
    /// A migration's summary line.
    Migrate,
}

impl JournalEvent {
    /// The value stored in the `event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalEvent::Acquisition => "acquisition",
            JournalEvent::Update => "update",
            JournalEvent::Loss => "loss",
            JournalEvent::Cancel => "cancel",
            JournalEvent::FlagSet => "flag_set",
            JournalEvent::FlagReleased => "flag_released",
            JournalEvent::FlagPending => "flag_pending",
            JournalEvent::Carry => "carry",
            JournalEvent::Fukuhon => "fukuhon",
            JournalEvent::InsurerFlag => "insurer_flag",
            JournalEvent::Migrate => "migrate",
        }
    }

    /// The code stored in `journal_line.event`: the `journal_event` row of the same name
    /// (schema_v3.sql fills that table; the two lists must agree, a test checks it).
    pub fn code(self) -> i64 {
        match self {
            JournalEvent::Acquisition => 1,
            JournalEvent::Update => 2,
            JournalEvent::Loss => 3,
            JournalEvent::Cancel => 4,
            JournalEvent::FlagSet => 5,
            JournalEvent::FlagReleased => 6,
            JournalEvent::FlagPending => 7,
            JournalEvent::Carry => 8,
            JournalEvent::Fukuhon => 9,
            JournalEvent::InsurerFlag => 10,
            JournalEvent::Migrate => 11,
        }
    }

    /// Every event, for checks of the code table.
    pub const ALL: [JournalEvent; 11] = [
        JournalEvent::Acquisition,
        JournalEvent::Update,
        JournalEvent::Loss,
        JournalEvent::Cancel,
        JournalEvent::FlagSet,
        JournalEvent::FlagReleased,
        JournalEvent::FlagPending,
        JournalEvent::Carry,
        JournalEvent::Fukuhon,
        JournalEvent::InsurerFlag,
        JournalEvent::Migrate,
    ];
}

impl rusqlite::ToSql for JournalEvent {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// Writes one journal line. The run and file are stored once, in `journal_source`, and the line
/// points at them (journal v2, schema version 3).
pub fn journal(
    conn: &Connection,
    run_id: &str,
    file: Option<&str>,
    seq: Option<u64>,
    subscriber: Option<(InsurerNumber, SubscriberKey)>,
    event: JournalEvent,
    detail: &str,
) -> Result<()> {
    let source = journal_source(conn, run_id, file)?;
    conn.prepare_cached(
        "INSERT INTO journal_line (source, record_sequence, insurer, subscriber_key, event, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        source,
        seq.map(|s| s as i64),
        subscriber.map(|s| s.0.to_string()),
        subscriber.map(|s| s.1.to_string()),
        event.code(),
        detail
    ])?;
    Ok(())
}

/// The `journal_source` row of this run and file, created on first use.
fn journal_source(conn: &Connection, run_id: &str, file: Option<&str>) -> Result<i64> {
    let found = conn
        .prepare_cached("SELECT id FROM journal_source WHERE run_id = ?1 AND file IS ?2")?
        .query_row(params![run_id, file], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO journal_source (run_id, file) VALUES (?1, ?2)")?
        .execute(params![run_id, file])?;
    Ok(conn.last_insert_rowid())
}

/// How many journal lines of `event` a run wrote.
pub fn count_journal_events(conn: &Connection, run_id: &str, event: JournalEvent) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM journal_line l JOIN journal_source s ON s.id = l.source
         WHERE s.run_id = ?1 AND l.event = ?2",
        params![run_id, event.code()],
        |r| r.get(0),
    )?)
}

/// A run's `status` column (R12): its ledger changes are committed with its staged outputs,
/// then it is published once they are renamed into place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Committed,
    Published,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Committed => "committed",
            RunStatus::Published => "published",
        }
    }
}

impl ToSql for RunStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RunStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "committed" => Ok(RunStatus::Committed),
            "published" => Ok(RunStatus::Published),
            other => Err(FromSqlError::Other(format!("unknown run status {other:?}").into())),
        }
    }
}

/// A run whose ledger changes are committed; its outputs may still sit in staging (R12).
#[derive(Clone, Debug)]
pub struct RunRow {
    pub run_id: String,
    pub status: RunStatus,
    pub outbox_staging: Option<String>,
    pub outbox_final: Option<String>,
    pub report_staging: Option<String>,
    pub report_final: Option<String>,
}

/// The ledger's latest run that changed something — applied a file or published linkage — to
/// chain the next run id to, `None` for a new ledger. Runs that did neither (a retry whose files
/// were all skipped) are left out: they change nothing, and a shard retried that way must keep
/// the same chain as the other shards. A shard ledger's run id is returned as stored, with its
/// `-s{I}of{N}` suffix (the run-id chaining strips it).
pub fn last_run_id(conn: &Connection) -> Result<Option<String>> {
    let id: Option<String> = conn
        .prepare_cached(
            "SELECT run_id FROM run r
             WHERE r.outbox_final IS NOT NULL OR EXISTS (SELECT 1 FROM applied_file a WHERE a.run_id = r.run_id)
             ORDER BY coalesce(seq, 0) DESC, run_id DESC LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(id)
}

pub fn insert_run(conn: &Connection, r: &RunRow, as_of: Date) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO run (run_id, as_of, status, outbox_staging, outbox_final, report_staging, report_final, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT coalesce(max(seq), 0) + 1 FROM run))",
    )?
    .execute(params![
        r.run_id,
        as_of.to_string(),
        r.status,
        r.outbox_staging,
        r.outbox_final,
        r.report_staging,
        r.report_final
    ])?;
    Ok(())
}

pub fn runs_to_publish(conn: &Connection) -> Result<Vec<RunRow>> {
    let mut st = conn.prepare_cached(
        "SELECT run_id, status, outbox_staging, outbox_final, report_staging, report_final FROM run
         WHERE status = ?1 ORDER BY run_id",
    )?;
    let rows = st.query_map([RunStatus::Committed], |r| {
        Ok(RunRow {
            run_id: r.get(0)?,
            status: r.get(1)?,
            outbox_staging: r.get(2)?,
            outbox_final: r.get(3)?,
            report_staging: r.get(4)?,
            report_final: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn mark_published(conn: &Connection, run_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE run SET status = ?2 WHERE run_id = ?1",
        params![run_id, RunStatus::Published],
    )?;
    Ok(())
}

pub fn run_exists(conn: &Connection, run_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM run WHERE run_id = ?1")?
        .query_row(params![run_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Removes the record of a run, so that a rerun with the same id (same inputs, nothing new
/// published) records its refreshed report instead.
pub fn delete_run(conn: &Connection, run_id: &str) -> Result<()> {
    conn.execute("DELETE FROM run WHERE run_id = ?1", [run_id])?;
    Ok(())
}

/// Turns SQLite's automatic checkpoint off for the rest of this transaction: it would copy the
/// run's pages from the WAL into the ledger file inside the commit; [`checkpoint`] does the same
/// just after it, so that the log shows what each costs.
pub fn defer_checkpoint(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(())
}

/// Copies the committed pages from the WAL into the ledger file (what SQLite's automatic
/// checkpoint would have done inside the commit), then turns the automatic checkpoint back on
/// (SQLite's default, every 1000 pages). The commit is durable without it: a failure is logged
/// and left to the next checkpoint, as SQLite does with its own.
pub fn checkpoint(conn: &Connection) {
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

#[cfg(test)]
mod tests {
    use super::JournalEvent;

    /// The codes written to `journal_line.event` name the same events in the ledger's
    /// `journal_event` table (schema_v3.sql), so the `journal` view shows every line's name.
    #[test]
    fn journal_event_codes_agree_with_the_code_table() {
        let conn = crate::ledger::open(std::path::Path::new(":memory:")).unwrap();
        let mut st = conn
            .prepare("SELECT code, name FROM journal_event ORDER BY code")
            .unwrap();
        let table: Vec<(i64, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let ours: Vec<(i64, String)> = JournalEvent::ALL
            .iter()
            .map(|e| (e.code(), e.as_str().to_owned()))
            .collect();
        assert_eq!(table, ours);
    }
}
