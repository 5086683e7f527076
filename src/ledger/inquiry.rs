//! The `inquiry` table (R13, the union's side): one row per 後期 registration that matched
//! nothing, `open` until a hand-off, an answer or a 国保 enrollment matches it (`answered`).
//! [`crate::engine::inquiry`] decides; these functions hold its queries.

use crate::domain::{InsurerNumber, SubscriberKey};
use anyhow::Result;
use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::{Connection, params};

/// An inquiry's `status` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InquiryStatus {
    /// Nobody answered yet.
    Open,
    /// A hand-off, an answer or a 国保 enrollment matched it.
    Answered,
}

impl ToSql for InquiryStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(match self {
            InquiryStatus::Open => "open",
            InquiryStatus::Answered => "answered",
        }))
    }
}

/// Whether the registration has an inquiry nobody answered yet.
pub fn inquiry_is_open(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey) -> Result<bool> {
    let mut st = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM inquiry WHERE insurer = ?1 AND subscriber_key = ?2 AND status = ?3)",
    )?;
    Ok(st.query_row(params![insurer, key, InquiryStatus::Open], |r| r.get(0))?)
}

/// Whether the registration was ever inquired (open or answered).
pub fn inquiry_exists(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM inquiry WHERE insurer = ?1 AND subscriber_key = ?2)",
        params![insurer, key],
        |r| r.get(0),
    )?)
}

/// An open inquiry as stored: the registration's insurer and key (text, as the ledger holds them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenInquiry {
    pub insurer: String,
    pub subscriber_key: String,
}

/// Every open inquiry, in (insurer, key) order.
pub fn open_inquiries(conn: &Connection) -> Result<Vec<OpenInquiry>> {
    inquiries_in(conn, InquiryStatus::Open)
}

/// Every answered inquiry, in (insurer, key) order (the same row shape as an open one).
pub fn answered_inquiries(conn: &Connection) -> Result<Vec<OpenInquiry>> {
    inquiries_in(conn, InquiryStatus::Answered)
}

/// An [`OpenInquiry`] from a row whose first two columns are insurer and subscriber key.
fn inquiry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OpenInquiry> {
    Ok(OpenInquiry {
        insurer: r.get(0)?,
        subscriber_key: r.get(1)?,
    })
}

fn inquiries_in(conn: &Connection, status: InquiryStatus) -> Result<Vec<OpenInquiry>> {
    let mut st = conn.prepare_cached(
        "SELECT insurer, subscriber_key FROM inquiry WHERE status = ?1
         ORDER BY insurer, subscriber_key",
    )?;
    let rows = st.query_map([status], inquiry_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// The registrations with an open inquiry (keys the ledger cannot parse left out).
pub fn open_inquiry_keys(conn: &Connection) -> Result<Vec<(InsurerNumber, SubscriberKey)>> {
    Ok(open_inquiries(conn)?
        .iter()
        .filter_map(|q| {
            Some((
                InsurerNumber::parse(&q.insurer).ok()?,
                SubscriberKey::parse(&q.subscriber_key).ok()?,
            ))
        })
        .collect())
}

/// Opens an inquiry for a registration of this run (nothing if it has one already).
pub fn open_inquiry(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey, run_id: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO inquiry (insurer, subscriber_key, status, first_run) VALUES (?1, ?2, ?4, ?3)
         ON CONFLICT (insurer, subscriber_key) DO NOTHING",
        params![insurer, key, run_id, InquiryStatus::Open],
    )?;
    Ok(())
}

/// Removes the inquiry of a registration that is cancelled or gone.
pub fn delete_inquiry(conn: &Connection, q: &OpenInquiry) -> Result<()> {
    conn.execute(
        "DELETE FROM inquiry WHERE insurer = ?1 AND subscriber_key = ?2",
        params![q.insurer, q.subscriber_key],
    )?;
    Ok(())
}

/// Marks an inquiry answered by this run, saying by what.
pub fn mark_inquiry_answered(conn: &Connection, q: &OpenInquiry, run_id: &str, by: &str) -> Result<()> {
    conn.execute(
        "UPDATE inquiry SET status = ?5, answered_run = ?3, answered_by = ?4
         WHERE insurer = ?1 AND subscriber_key = ?2",
        params![q.insurer, q.subscriber_key, run_id, by, InquiryStatus::Answered],
    )?;
    Ok(())
}

/// 後期 registrations a hand-off matched (R3) that were never inquired, in (insurer, key) order:
/// candidates for follow-up inquiries like answered ones (a flag 国保 sets after the extract,
/// once its enrollment has stopped being listed, reaches them no other way).
pub fn handoff_matched_uninquired(conn: &Connection) -> Result<Vec<OpenInquiry>> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT h.matched_insurer, h.matched_key FROM handoff h
         WHERE h.matched_key IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM inquiry q
                           WHERE q.insurer = h.matched_insurer AND q.subscriber_key = h.matched_key)
         ORDER BY h.matched_insurer, h.matched_key",
    )?;
    let rows = st.query_map([], inquiry_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Records a registration that a hand-off answered without an inquiry, before its first
/// follow-up inquiry (nothing if it has a row already).
pub fn record_answered(conn: &Connection, q: &OpenInquiry, run_id: &str, by: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO inquiry (insurer, subscriber_key, status, first_run, answered_run, answered_by)
         VALUES (?1, ?2, ?5, ?3, ?3, ?4)
         ON CONFLICT (insurer, subscriber_key) DO NOTHING",
        params![q.insurer, q.subscriber_key, run_id, by, InquiryStatus::Answered],
    )?;
    Ok(())
}

/// Counts one more inquiry file naming the registration, written by this run.
pub fn mark_inquired(conn: &Connection, q: &OpenInquiry, run_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE inquiry SET last_run = ?3, times_inquired = times_inquired + 1
         WHERE insurer = ?1 AND subscriber_key = ?2",
        params![q.insurer, q.subscriber_key, run_id],
    )?;
    Ok(())
}

/// A stored hand-off stating no flag at all that no registration matched yet (the extract never
/// writes such a record, so it is an answer to an inquiry). Text as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlaglessHandoff {
    pub source_insurer: String,
    pub source_key: String,
    pub individual_number: Option<String>,
    pub municipality: String,
    pub resident_code: String,
    pub birthdate: String,
}

/// Every unmatched hand-off that states no flag.
pub fn unmatched_flagless_handoffs(conn: &Connection) -> Result<Vec<FlaglessHandoff>> {
    let mut st = conn.prepare(
        "SELECT source_insurer, source_key, individual_number, municipality, resident_code, birthdate FROM handoff
         WHERE matched_insurer IS NULL AND self_info = ?1 AND non_disclosure = 0 AND auto_response = 0",
    )?;
    let rows = st
        .query_map([crate::domain::self_info_column(None)], |r| {
            Ok(FlaglessHandoff {
                source_insurer: r.get(0)?,
                source_key: r.get(1)?,
                individual_number: r.get(2)?,
                municipality: r.get(3)?,
                resident_code: r.get(4)?,
                birthdate: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Matches a flagless hand-off to the inquired registration it answers.
pub fn match_flagless_handoff(
    conn: &Connection,
    h: &FlaglessHandoff,
    insurer: InsurerNumber,
    key: SubscriberKey,
) -> Result<()> {
    conn.execute(
        "UPDATE handoff SET matched_insurer = ?3, matched_key = ?4 WHERE source_insurer = ?1 AND source_key = ?2",
        params![h.source_insurer, h.source_key, insurer, key],
    )?;
    Ok(())
}
