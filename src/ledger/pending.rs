//! Flags kept until their subscriber is enrolled (R7): the `pending_flag` table.

use super::store::{opt, p};
use crate::domain::{
    Date, FlagChange, FlagOperation, FlagScope, FlagSource, FlagType, InfoCode, InsurerNumber, SelfInfoReason,
    SubscriberKey, Timestamp,
};
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
        c.insurer.as_str(),
        c.key.as_ref().map_or("", SubscriberKey::as_str),
        c.info_code.as_ref().map_or("", InfoCode::as_str),
        c.flag_type.code(),
        c.operation.code(),
        c.reason.map(SelfInfoReason::code),
        c.source.code(),
        c.effective_time.to_string(),
        c.support_measure_end.map(|d| d.to_string()),
        pf.file,
        c.seq as i64,
        pf.file_order,
        run_id,
        pf.file_key,
    ])?;
    Ok(())
}

type PendingRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    i64,
    u32,
    String,
);

fn pending_from(r: PendingRow) -> Result<PendingFlag> {
    let (ins, key, info, ty, op, reason, src, time, end, file, seq, order, file_key) = r;
    Ok(PendingFlag {
        change: FlagChange {
            seq: seq as u64,
            effective_time: p(Timestamp::parse(&time), "EffectiveTime")?,
            flag_type: p(FlagType::parse(&ty), "FlagType")?,
            operation: p(FlagOperation::parse(&op), "Operation")?,
            scope: FlagScope::Subscriber,
            insurer: p(InsurerNumber::parse(&ins), "InsurerNumber")?,
            key: Some(p(SubscriberKey::parse(&key), "SubscriberKey")?),
            info_code: opt(Some(info), InfoCode::parse, "InfoCode")?,
            reason: opt(reason, SelfInfoReason::parse, "ReasonCode")?,
            source: p(FlagSource::parse(&src), "Source")?,
            support_measure_end: opt(end, Date::parse, "SupportMeasureEndDate")?,
        },
        file,
        file_order: order,
        file_key,
    })
}

const PENDING_COLS: &str = "insurer, subscriber_key, info_code, flag_type, operation, reason_code, source,
    effective_time, support_measure_end, file, record_sequence, file_order, file_key";

fn pending_row(r: &Row) -> rusqlite::Result<PendingRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
    ))
}

/// Removes and returns the pending flags of a subscriber, in arrival order (the engine applies
/// them in R1 order, [`PendingFlag::order_key`]).
pub fn take_pending_flags(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey) -> Result<Vec<PendingFlag>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {PENDING_COLS} FROM pending_flag WHERE insurer = ?1 AND subscriber_key = ?2 ORDER BY id"
    ))?;
    let rows: Vec<PendingRow> = st
        .query_map(params![insurer.as_str(), key.as_str()], pending_row)?
        .collect::<rusqlite::Result<_>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    conn.prepare_cached("DELETE FROM pending_flag WHERE insurer = ?1 AND subscriber_key = ?2")?
        .execute(params![insurer.as_str(), key.as_str()])?;
    rows.into_iter().map(pending_from).collect()
}

/// Every pending flag event, one at a time, by subscriber and arrival: the report lists
/// them all, and there may be a million (issue 13 item 6).
pub fn for_each_pending_flag(conn: &Connection, mut f: impl FnMut(PendingFlag) -> Result<()>) -> Result<()> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {PENDING_COLS} FROM pending_flag ORDER BY insurer, subscriber_key, id"
    ))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(pending_from(pending_row(r)?)?)?;
    }
    Ok(())
}
