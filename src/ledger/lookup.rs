//! Questions the layers above ask the ledger outside the per-subscriber reads of [`super::store`]:
//! which runs it holds, which kinds of insurer, which flagged subscribers, which hand-offs still
//! wait. Every query text of the program lives under `ledger/`; callers get typed answers.

use crate::domain::person::Status;
use crate::domain::{FlagType, InsurerKind, InsurerNumber, MunicipalityCode, SubscriberKey};
use anyhow::{Result, anyhow};
use rusqlite::{Connection, params};

/// Every run id the ledger recorded, in order.
pub fn run_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare("SELECT run_id FROM run ORDER BY run_id")?;
    let ids = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Whether the ledger holds an enrollment or a pending flag of an insurer of `kind` (国保 or 後期).
pub fn holds_subscribers_of(conn: &Connection, kind: InsurerKind) -> Result<bool> {
    let like = match kind {
        InsurerKind::Kokuho => "00%",
        InsurerKind::Kouki => "39%",
        InsurerKind::Other => return Err(anyhow!("only 国保 and 後期 insurers are asked for")),
    };
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM enrollment WHERE insurer LIKE ?1)
             OR EXISTS (SELECT 1 FROM pending_flag WHERE insurer LIKE ?1)",
        [like],
        |r| r.get(0),
    )?)
}

/// Hand-offs not matched to a registration yet, as `insurer/key` of their source, in that order.
pub fn unmatched_handoff_sources(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare(
        "SELECT source_insurer || '/' || source_key FROM handoff WHERE matched_insurer IS NULL
         ORDER BY source_insurer, source_key",
    )?;
    let sources = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(sources)
}

/// 国保 subscribers holding 自己情報提供不可 or 不開示該当 on the whole subscriber, in key order.
pub fn flagged_kokuho_keys(conn: &Connection) -> Result<Vec<(InsurerNumber, SubscriberKey)>> {
    let mut st = conn.prepare(
        "SELECT DISTINCT insurer, subscriber_key FROM flag
         WHERE info_code = '' AND subscriber_key <> '' AND flag_type IN (?1, ?2) AND substr(insurer, 1, 2) = ?3
         ORDER BY insurer, subscriber_key",
    )?;
    let protective = [FlagType::NonDisclosure, FlagType::SelfInfoProvisionProhibited];
    debug_assert!(protective.iter().all(|t| t.is_protective()));
    let kokuho = InsurerKind::Kokuho.number_prefix();
    Ok(st
        .query_map(params![protective[0], protective[1], kokuho], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// How many subscribers hold a subscriber-wide flag (any type).
pub fn count_flagged_subscribers(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(DISTINCT insurer || '/' || subscriber_key) FROM flag
         WHERE subscriber_key != '' AND info_code = ''",
        [],
        |r| r.get(0),
    )?)
}

/// The subscribers holding a subscriber-wide flag (any type); keys the ledger cannot parse are
/// left out.
pub fn flagged_subscriber_keys(conn: &Connection) -> Result<Vec<(InsurerNumber, SubscriberKey)>> {
    let mut st = conn.prepare(
        "SELECT DISTINCT insurer, subscriber_key FROM flag
         WHERE subscriber_key != '' AND info_code = ''",
    )?;
    let keys: Vec<(Option<InsurerNumber>, Option<SubscriberKey>)> = st
        .query_map([], |r| Ok((r.get(0).ok(), r.get(1).ok())))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(keys.into_iter().filter_map(|(i, k)| Some((i?, k?))).collect())
}

/// Insurers with enrollments in the municipality, in number order (numbers the ledger cannot
/// parse are left out).
pub fn insurers_in_municipality(conn: &Connection, muni: MunicipalityCode) -> Result<Vec<InsurerNumber>> {
    let mut st = conn.prepare_cached("SELECT DISTINCT insurer FROM enrollment WHERE municipality = ?1 ORDER BY 1")?;
    let rows: Vec<Option<InsurerNumber>> = st
        .query_map([muni], |r| Ok(r.get(0).ok()))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows.into_iter().flatten().collect())
}

/// The enrollments of `ins` that are not cancelled, in key order, with their subscriber-wide
/// flag types (as stored; unknown codes left out), except those `skip` names.
pub fn uncancelled_with_flags(
    conn: &Connection,
    ins: InsurerNumber,
    skip: impl Fn(SubscriberKey) -> bool,
) -> Result<Vec<(SubscriberKey, Vec<FlagType>)>> {
    let mut st = conn.prepare(
        "SELECT e.subscriber_key,
                (SELECT group_concat(f.flag_type, ' ') FROM flag f
                  WHERE f.insurer = e.insurer AND f.subscriber_key = e.subscriber_key AND f.info_code = '')
           FROM enrollment e WHERE e.insurer = ?1 AND e.status != ?2 ORDER BY e.subscriber_key",
    )?;
    let mut rows = st.query(params![ins, Status::Cancelled])?;
    let mut found = Vec::new();
    while let Some(r) = rows.next()? {
        let key: SubscriberKey = r.get(0)?;
        if skip(key) {
            continue;
        }
        let flags: Option<String> = r.get(1)?;
        let fl: Vec<FlagType> = flags
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|t| FlagType::parse(t).ok())
            .collect();
        found.push((key, fl));
    }
    Ok(found)
}

/// Ledger tables that hold no row at all (a new ledger): lookups in them can be skipped.
#[derive(Clone, Copy, Debug)]
pub struct EmptyTables {
    pub enrollment: bool,
    pub pending: bool,
    pub handoff: bool,
    pub fukuhon: bool,
}

/// Which of the tables a run looks subscribers up in are empty.
pub fn empty_tables(conn: &Connection) -> Result<EmptyTables> {
    let none = |t: &str| -> Result<bool> {
        Ok(conn.query_row(&format!("SELECT NOT EXISTS (SELECT 1 FROM {t})"), [], |r| r.get(0))?)
    };
    Ok(EmptyTables {
        enrollment: none("enrollment")?,
        pending: none("pending_flag")?,
        handoff: none("handoff")?,
        fukuhon: none("fukuhon")?,
    })
}

/// Runs `read` on one snapshot of the ledger (a deferred read transaction, committed after it;
/// rolled back when `read` fails).
pub fn read_snapshot<T>(conn: &Connection, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN DEFERRED")?;
    match read(conn) {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
