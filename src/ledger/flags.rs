//! Reads of the flag table that check and review what the engine stored: the R4 re-check of
//! flags held elsewhere, and support measures past their end date (R9 worklist).

use crate::domain::{Date, FlagSource};
use anyhow::Result;
use rusqlite::{Connection, params};

/// The flag types of a subscriber's subscriber-wide flags (InfoCode empty), as stored: read
/// with plain SQL, independent of the engine's loading, for the R4 re-check.
pub fn subscriber_flag_types(conn: &Connection, insurer: &str, key: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT flag_type, reason_code FROM flag WHERE insurer = ?1 AND subscriber_key = ?2 AND info_code = ''",
    )?;
    let rows = st.query_map([insurer, key], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A flag from 住基 support measures (支援措置, source 2) whose end date has passed (R9): never
/// released automatically, listed for review. Values as stored.
pub struct ExpiredSupportMeasure {
    pub insurer: String,
    pub subscriber_key: String,
    pub info_code: String,
    pub flag_type: String,
    pub support_measure_end: String,
}

/// Support measures that ended before `as_of`, in (insurer, key, InfoCode, flag type) order.
pub fn expired_support_measures(conn: &Connection, as_of: Date) -> Result<Vec<ExpiredSupportMeasure>> {
    let mut st = conn.prepare(
        "SELECT insurer, subscriber_key, info_code, flag_type, support_measure_end FROM flag \
         WHERE source = ?2 AND support_measure_end IS NOT NULL AND support_measure_end < ?1 \
         ORDER BY insurer, subscriber_key, info_code, flag_type",
    )?;
    let rows = st.query_map(params![as_of.to_string(), FlagSource::SupportMeasure], |row| {
        Ok(ExpiredSupportMeasure {
            insurer: row.get(0)?,
            subscriber_key: row.get(1)?,
            info_code: row.get(2)?,
            flag_type: row.get(3)?,
            support_measure_end: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
