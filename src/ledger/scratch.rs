//! Per-run scratch tables (SQLite TEMP tables of the run's connection).
//!
//! A full load touches millions of subscribers; what the publisher needs about each of them
//! (its state before the run, its 副本 changes, its transition acquisitions) goes here instead of
//! into memory. TEMP tables live in a temporary file SQLite deletes when the connection closes,
//! are private to the connection, and are filled and read inside the run's transaction, so a
//! rollback (dry run, abort, interrupt) leaves nothing behind. They hold personal data only for
//! the length of the run, like the ledger itself.

use super::store::{insert_flag, load_subscriber_flags};
use crate::domain::person::{Enrollment, Flag, FlagKey, PersonKey};
use crate::domain::sql::{OrEmpty, stored};
use crate::domain::{IndividualNumber, InfoCode, InsurerNumber, SubscriberKey};
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

const SCRATCH: &str = "
CREATE TEMP TABLE IF NOT EXISTS touched (
    insurer         TEXT NOT NULL,
    subscriber_key  TEXT NOT NULL,
    existed         INTEGER NOT NULL,
    was_published   INTEGER NOT NULL,
    PRIMARY KEY (insurer, subscriber_key)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS before_flag (
    insurer              TEXT NOT NULL,
    subscriber_key       TEXT NOT NULL,
    info_code            TEXT NOT NULL,
    flag_type            TEXT NOT NULL,
    reason_code          TEXT,
    source               TEXT NOT NULL,
    effective_time       TEXT NOT NULL,
    support_measure_end  TEXT,
    origin               TEXT NOT NULL,
    PRIMARY KEY (insurer, subscriber_key, info_code, flag_type)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS fukuhon_out (
    insurer         TEXT NOT NULL,
    subscriber_key  TEXT NOT NULL,
    info_code       TEXT NOT NULL,
    operation       TEXT NOT NULL,
    effective_date  TEXT NOT NULL,
    disclosure      TEXT,
    items           TEXT NOT NULL,
    PRIMARY KEY (insurer, subscriber_key, info_code)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS acquisition (
    id                 INTEGER PRIMARY KEY,
    insurer            TEXT NOT NULL,
    subscriber_key     TEXT NOT NULL,
    individual_number  TEXT,
    municipality       TEXT,
    resident_code      TEXT,
    birthdate          TEXT NOT NULL,
    carried            INTEGER NOT NULL
);
DELETE FROM temp.touched;
DELETE FROM temp.before_flag;
DELETE FROM temp.fukuhon_out;
DELETE FROM temp.acquisition;
";

/// Creates (or empties) the scratch tables. Call inside the run's transaction.
pub fn create(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCRATCH)
        .context("cannot create the run's scratch tables")
}

/// What the publisher needs of a subscriber's state before the run.
#[derive(Clone, Debug)]
pub struct Before {
    pub existed: bool,
    pub was_published: bool,
    pub flags: BTreeMap<FlagKey, Flag>,
}

/// Records that the run touched this subscriber, with its state before the run. The first call
/// for a subscriber wins (a later touch in the same run must not overwrite the pre-run state).
/// Returns whether this call recorded it.
pub fn touch(
    conn: &Connection,
    insurer: InsurerNumber,
    key: SubscriberKey,
    before: Option<&Enrollment>,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO temp.touched (insurer, subscriber_key, existed, was_published) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            insurer,
            key,
            before.is_some(),
            before.is_some_and(|b| b.published)
        ])?;
    if n == 1 {
        if let Some(b) = before {
            for ((info, ty), f) in &b.flags {
                insert_flag(conn, "temp.before_flag", insurer, Some(key), *info, *ty, f)?;
            }
        }
    }
    Ok(n == 1)
}

pub fn is_touched(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM temp.touched WHERE insurer = ?1 AND subscriber_key = ?2")?
        .query_row(params![insurer, key], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Whether the server held the subscriber's registration before the run (R14).
pub fn was_published(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT was_published FROM temp.touched WHERE insurer = ?1 AND subscriber_key = ?2")?
        .query_row(params![insurer, key], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

pub fn touched_count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT count(*) FROM temp.touched", [], |r| r.get::<_, i64>(0))? as u64)
}

/// Insurers with touched subscribers or 副本 changes, in order.
pub fn insurers(conn: &Connection) -> Result<Vec<InsurerNumber>> {
    let mut st =
        conn.prepare("SELECT insurer FROM temp.touched UNION SELECT insurer FROM temp.fukuhon_out ORDER BY 1")?;
    Ok(st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

/// One page of an insurer's touched subscribers after `after` (key order), with their pre-run state.
pub fn touched_page(
    conn: &Connection,
    insurer: InsurerNumber,
    after: Option<SubscriberKey>,
    limit: usize,
) -> Result<Vec<(SubscriberKey, Before)>> {
    let mut st = conn.prepare_cached(
        "SELECT subscriber_key, existed, was_published FROM temp.touched
         WHERE insurer = ?1 AND subscriber_key > ?2 ORDER BY subscriber_key LIMIT ?3",
    )?;
    let rows: Vec<(SubscriberKey, bool, bool)> = st
        .query_map(params![insurer, OrEmpty(after), limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (key, existed, was_published) in rows {
        let flags = if existed {
            load_subscriber_flags(conn, "temp.before_flag", insurer, key)?
        } else {
            BTreeMap::new()
        };
        out.push((
            key,
            Before {
                existed,
                was_published,
                flags,
            },
        ));
    }
    Ok(out)
}

/// A 副本 change to publish (FukuhonLinkage row), kept until the writer streams it.
pub fn add_fukuhon_out(
    conn: &Connection,
    insurer: InsurerNumber,
    key: SubscriberKey,
    info: InfoCode,
    f: &crate::domain::person::FukuhonOut,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO temp.fukuhon_out (insurer, subscriber_key, info_code, operation, effective_date, disclosure, items)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        insurer,
        key,
        info,
        f.operation,
        f.effective_date,
        f.disclosure,
        serde_json::to_string(&f.items)?,
    ])?;
    Ok(())
}

/// One page of an insurer's 副本 changes after `(key, info)`, in (key, InfoCode) order.
pub fn fukuhon_page(
    conn: &Connection,
    insurer: InsurerNumber,
    after: Option<(SubscriberKey, InfoCode)>,
    limit: usize,
) -> Result<Vec<crate::formats::linkage::FukuhonRow>> {
    let (ak, ai) = (OrEmpty(after.map(|a| a.0)), OrEmpty(after.map(|a| a.1)));
    let mut st = conn.prepare_cached(
        "SELECT subscriber_key, info_code, operation, effective_date, disclosure, items FROM temp.fukuhon_out
         WHERE insurer = ?1 AND (subscriber_key, info_code) > (?2, ?3)
         ORDER BY subscriber_key, info_code LIMIT ?4",
    )?;
    let rows: Vec<(crate::formats::linkage::FukuhonRow, String)> = st
        .query_map(params![insurer, ak, ai, limit as i64], |r| {
            let row = crate::formats::linkage::FukuhonRow {
                operation: r.get(2)?,
                effective_date: r.get(3)?,
                insurer,
                key: r.get(0)?,
                info_code: r.get(1)?,
                disclosure: r.get::<_, OrEmpty<_>>(4)?.0,
                items: Vec::new(),
            };
            Ok((row, r.get(5)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(mut row, items)| {
            row.items = serde_json::from_str(&items).context("scratch holds invalid 副本 items")?;
            Ok(row)
        })
        .collect()
}

/// A transition acquisition applied in this run, for R5 after every subscriber is stored.
pub fn add_acquisition(
    conn: &Connection,
    insurer: InsurerNumber,
    key: SubscriberKey,
    person: &PersonKey,
    carried_or_ambiguous: bool,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO temp.acquisition (insurer, subscriber_key, individual_number, municipality, resident_code, birthdate, carried)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        insurer,
        key,
        person.individual_number.as_ref().map(IndividualNumber::expose),
        person.municipality,
        person.resident,
        person.birthdate,
        carried_or_ambiguous,
    ])?;
    Ok(())
}

pub fn acquisition_count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT count(*) FROM temp.acquisition", [], |r| r.get::<_, i64>(0))? as u64)
}

/// A transition acquisition of this run, as the scratch table keeps it.
#[derive(Clone, Debug)]
pub struct AcquisitionRow {
    /// Row id: pages continue after the last one.
    pub id: i64,
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub person: PersonKey,
    /// Its carry was made, or found ambiguous.
    pub carried_or_ambiguous: bool,
}

/// One page of acquisitions after row id `after`, in row id order ((insurer, key) order is not
/// needed: callers sort what they derive).
pub fn acquisition_page(conn: &Connection, after: i64, limit: usize) -> Result<Vec<AcquisitionRow>> {
    let mut st = conn.prepare_cached(
        "SELECT id, insurer, subscriber_key, individual_number, municipality, resident_code, birthdate, carried
         FROM temp.acquisition WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = st.query_map(params![after, limit as i64], |r| {
        let individual_number = match r.get::<_, Option<String>>(3)? {
            Some(s) => Some(stored(3, "IndividualNumber", IndividualNumber::parse(&s))?),
            None => None,
        };
        Ok(AcquisitionRow {
            id: r.get(0)?,
            insurer: r.get(1)?,
            key: r.get(2)?,
            person: PersonKey {
                individual_number,
                municipality: r.get(4)?,
                resident: r.get(5)?,
                birthdate: r.get(6)?,
            },
            carried_or_ambiguous: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn fukuhon_count(conn: &Connection, insurer: InsurerNumber) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM temp.fukuhon_out WHERE insurer = ?1")?
        .query_row([insurer], |r| r.get::<_, i64>(0))? as u64)
}
