//! Flags kept until their subscriber is enrolled (R7): the `pending_flag` table.

use crate::domain::sql::OrEmpty;
use crate::domain::{Date, FlagChange, FlagScope, InsurerNumber, SubscriberKey};
use anyhow::Result;
use rusqlite::{Connection, Row, params};

/// A FlagChange kept until its subscriber is enrolled (R7).
#[derive(Clone, Debug)]
pub struct PendingFlag {
    pub change: FlagChange,
    pub file: String,
    pub file_order: u32,
    /// The file's R1 position across runs: (CreationTime, SenderInsurerNumber, FileSequence) as
    /// a sortable string ('' for rows kept by schema version 1).
    pub file_key: String,
}

impl PendingFlag {
    /// R1 order of pending events, whatever run they arrived in: (effective date, file, sequence).
    pub fn order_key(&self) -> (Date, &str, u64) {
        (
            self.change.effective_time.date(),
            self.file_key.as_str(),
            self.change.seq,
        )
    }
}

pub fn insert_pending_flag(conn: &Connection, pf: &PendingFlag, run_id: &str) -> Result<()> {
    let c = &pf.change;
    conn.prepare_cached(
        "INSERT INTO pending_flag (insurer, subscriber_key, info_code, flag_type, operation, reason_code, source,
            effective_time, support_measure_end, file, record_sequence, file_order, run_id, file_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        c.insurer,
        OrEmpty(c.key),
        OrEmpty(c.info_code),
        c.flag_type,
        c.operation,
        c.reason,
        c.source,
        c.effective_time,
        c.support_measure_end,
        pf.file,
        c.seq as i64,
        pf.file_order,
        run_id,
        pf.file_key,
    ])?;
    Ok(())
}

const PENDING_COLS: &str = "insurer, subscriber_key, info_code, flag_type, operation, reason_code, source,
    effective_time, support_measure_end, file, record_sequence, file_order, file_key";

/// A `pending_flag` row ([`PENDING_COLS`]), typed as it is read.
fn pending_row(r: &Row) -> rusqlite::Result<PendingFlag> {
    Ok(PendingFlag {
        change: FlagChange {
            seq: r.get::<_, i64>(10)? as u64,
            effective_time: r.get(7)?,
            flag_type: r.get(3)?,
            operation: r.get(4)?,
            scope: FlagScope::Subscriber,
            insurer: r.get(0)?,
            key: Some(r.get(1)?),
            info_code: r.get::<_, OrEmpty<_>>(2)?.0,
            reason: r.get::<_, OrEmpty<_>>(5)?.0,
            source: r.get(6)?,
            support_measure_end: r.get::<_, OrEmpty<_>>(8)?.0,
        },
        file: r.get(9)?,
        file_order: r.get(11)?,
        file_key: r.get(12)?,
    })
}

/// Removes and returns the pending flags of a subscriber, in arrival order (the engine applies
/// them in R1 order, [`PendingFlag::order_key`]).
pub fn take_pending_flags(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey) -> Result<Vec<PendingFlag>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {PENDING_COLS} FROM pending_flag WHERE insurer = ?1 AND subscriber_key = ?2 ORDER BY id"
    ))?;
    let rows: Vec<PendingFlag> = st
        .query_map(params![insurer, key], pending_row)?
        .collect::<rusqlite::Result<_>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    conn.prepare_cached("DELETE FROM pending_flag WHERE insurer = ?1 AND subscriber_key = ?2")?
        .execute(params![insurer, key])?;
    Ok(rows)
}

/// Every pending flag event, one at a time, by subscriber and arrival: the report lists
/// them all, and there may be a million (issue 13 item 6).
pub fn for_each_pending_flag(conn: &Connection, mut f: impl FnMut(PendingFlag) -> Result<()>) -> Result<()> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {PENDING_COLS} FROM pending_flag ORDER BY insurer, subscriber_key, id"
    ))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(pending_row(r)?)?;
    }
    Ok(())
}
