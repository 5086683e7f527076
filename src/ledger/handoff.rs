//! Stored age-transition hand-offs (年齢到達引継, R3): the `handoff` table.

use crate::domain::person::PersonKey;
use crate::domain::sql::{OrEmpty, stored};
use crate::domain::{
    Date, IndividualNumber, InsurerNumber, SelfInfoReason, SubscriberKey, Timestamp, parse_self_info_column,
};
use anyhow::Result;
use rusqlite::{Connection, Row, params};

/// A stored hand-off (年齢到達引継) and whether it has been matched.
#[derive(Clone, Debug)]
pub struct StoredHandoff {
    pub source_insurer: InsurerNumber,
    pub source_key: SubscriberKey,
    pub person: PersonKey,
    pub transition_date: Date,
    pub self_info: Option<SelfInfoReason>,
    pub non_disclosure: bool,
    pub auto_response: bool,
    pub flag_set_time: Option<Timestamp>,
    pub origin: String,
    pub matched: Option<(InsurerNumber, SubscriberKey)>,
}

/// Marks a stored, still unmatched hand-off as matched to a registration; false when there is no
/// such unmatched hand-off.
pub fn mark_handoff_matched(
    conn: &Connection,
    handoff: (InsurerNumber, SubscriberKey),
    to: (InsurerNumber, SubscriberKey),
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE handoff SET matched_insurer = ?3, matched_key = ?4
             WHERE source_insurer = ?1 AND source_key = ?2 AND matched_insurer IS NULL",
        )?
        .execute(params![handoff.0, handoff.1, to.0, to.1])?;
    Ok(n > 0)
}

pub fn upsert_handoff(conn: &Connection, h: &StoredHandoff) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO handoff (source_insurer, source_key, individual_number, municipality, resident_code,
            birthdate, transition_date, self_info, non_disclosure, auto_response, flag_set_time, origin,
            matched_insurer, matched_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        h.source_insurer,
        h.source_key,
        h.person.individual_number.as_ref().map(IndividualNumber::expose),
        h.person.municipality,
        h.person.resident,
        h.person.birthdate,
        h.transition_date,
        crate::domain::self_info_column(h.self_info),
        h.non_disclosure,
        h.auto_response,
        h.flag_set_time,
        h.origin,
        h.matched.map(|m| m.0),
        h.matched.map(|m| m.1),
    ])?;
    Ok(())
}

const HANDOFF_COLS: &str = "source_insurer, source_key, individual_number, municipality, resident_code, birthdate,
    transition_date, self_info, non_disclosure, auto_response, flag_set_time, origin, matched_insurer, matched_key";

/// A `handoff` row ([`HANDOFF_COLS`]), typed as it is read.
fn handoff_from(r: &Row) -> rusqlite::Result<StoredHandoff> {
    let individual_number = match r.get::<_, Option<String>>(2)?.filter(|s| !s.is_empty()) {
        Some(s) => Some(stored(2, "IndividualNumber", IndividualNumber::parse(&s))?),
        None => None,
    };
    let self_info: Option<String> = r.get(7)?;
    let matched = match (
        r.get::<_, OrEmpty<InsurerNumber>>(12)?.0,
        r.get::<_, OrEmpty<SubscriberKey>>(13)?.0,
    ) {
        (Some(i), Some(k)) => Some((i, k)),
        _ => None,
    };
    Ok(StoredHandoff {
        source_insurer: r.get(0)?,
        source_key: r.get(1)?,
        person: PersonKey {
            individual_number,
            municipality: r.get::<_, OrEmpty<_>>(3)?.0,
            resident: r.get::<_, OrEmpty<_>>(4)?.0,
            birthdate: r.get(5)?,
        },
        transition_date: r.get(6)?,
        self_info: stored(
            7,
            "SelfInfoProvisionProhibitedFlg",
            parse_self_info_column(self_info.as_deref().unwrap_or_default()),
        )?,
        non_disclosure: r.get(8)?,
        auto_response: r.get(9)?,
        flag_set_time: r.get::<_, OrEmpty<_>>(10)?.0,
        origin: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
        matched,
    })
}

/// Hand-offs that may be the given person (candidates; the caller applies the match rule).
pub fn find_handoffs(conn: &Connection, person: &PersonKey) -> Result<Vec<StoredHandoff>> {
    let mut rows = Vec::new();
    if let Some(mn) = person.individual_number {
        let mut st = conn.prepare_cached(&format!(
            "SELECT {HANDOFF_COLS} FROM handoff WHERE individual_number = ?1"
        ))?;
        for r in st.query_map(params![mn.expose()], handoff_from)? {
            rows.push(r?);
        }
    }
    if let (Some(m), Some(res)) = (person.municipality, &person.resident) {
        let mut st = conn.prepare_cached(&format!(
            "SELECT {HANDOFF_COLS} FROM handoff WHERE municipality = ?1 AND resident_code = ?2 AND birthdate = ?3"
        ))?;
        for r in st.query_map(params![m, res, person.birthdate], handoff_from)? {
            rows.push(r?);
        }
    }
    let mut out = rows;
    out.sort_by_key(|h| (h.source_insurer, h.source_key));
    out.dedup_by_key(|h| (h.source_insurer, h.source_key));
    Ok(out)
}

pub fn list_pending_handoffs(conn: &Connection) -> Result<Vec<StoredHandoff>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {HANDOFF_COLS} FROM handoff WHERE matched_insurer IS NULL ORDER BY source_insurer, source_key"
    ))?;
    Ok(st.query_map([], handoff_from)?.collect::<rusqlite::Result<_>>()?)
}
