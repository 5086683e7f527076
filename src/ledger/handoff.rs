//! Stored age-transition hand-offs (年齢到達引継, R3): the `handoff` table.

use super::store::{opt, p};
use crate::domain::person::PersonKey;
use crate::domain::{
    Date, IndividualNumber, InsurerNumber, MunicipalityCode, ResidentCode, SelfInfoReason, SubscriberKey, Timestamp,
    parse_self_info_column,
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
        .execute(params![
            handoff.0.as_str(),
            handoff.1.as_str(),
            to.0.as_str(),
            to.1.as_str()
        ])?;
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
        h.source_insurer.as_str(),
        h.source_key.as_str(),
        h.person.individual_number.as_ref().map(IndividualNumber::expose),
        h.person.municipality.as_ref().map(MunicipalityCode::as_str),
        h.person.resident.as_ref().map(ResidentCode::as_str),
        h.person.birthdate.to_string(),
        h.transition_date.to_string(),
        crate::domain::self_info_column(h.self_info),
        h.non_disclosure,
        h.auto_response,
        h.flag_set_time.map(|t| t.to_string()),
        h.origin,
        h.matched.map(|m| m.0.to_string()),
        h.matched.map(|m| m.1.to_string()),
    ])?;
    Ok(())
}

const HANDOFF_COLS: &str = "source_insurer, source_key, individual_number, municipality, resident_code, birthdate,
    transition_date, self_info, non_disclosure, auto_response, flag_set_time, origin, matched_insurer, matched_key";

fn handoff_from(r: &Row) -> rusqlite::Result<Vec<Option<String>>> {
    (0..14)
        .map(|i| match i {
            8 | 9 => r.get::<_, bool>(i).map(|b| Some(if b { "1" } else { "0" }.to_owned())),
            _ => r.get::<_, Option<String>>(i),
        })
        .collect()
}

fn make_handoff(v: Vec<Option<String>>) -> Result<StoredHandoff> {
    let s = |i: usize| v[i].clone().unwrap_or_default();
    let matched = match (
        opt(v[12].clone(), InsurerNumber::parse, "InsurerNumber")?,
        opt(v[13].clone(), SubscriberKey::parse, "SubscriberKey")?,
    ) {
        (Some(i), Some(k)) => Some((i, k)),
        _ => None,
    };
    Ok(StoredHandoff {
        source_insurer: p(InsurerNumber::parse(&s(0)), "InsurerNumber")?,
        source_key: p(SubscriberKey::parse(&s(1)), "SubscriberKey")?,
        person: PersonKey {
            individual_number: opt(v[2].clone(), IndividualNumber::parse, "IndividualNumber")?,
            municipality: opt(v[3].clone(), MunicipalityCode::parse, "MunicipalityCode")?,
            resident: opt(v[4].clone(), ResidentCode::parse, "ResidentCode")?,
            birthdate: p(Date::parse(&s(5)), "Birthdate")?,
        },
        transition_date: p(Date::parse(&s(6)), "AgeTransitionDate")?,
        self_info: p(parse_self_info_column(&s(7)), "SelfInfoProvisionProhibitedFlg")?,
        non_disclosure: s(8) == "1",
        auto_response: s(9) == "1",
        flag_set_time: opt(v[10].clone(), Timestamp::parse, "FlagSetTime")?,
        origin: s(11),
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
        for r in st.query_map(
            params![m.as_str(), res.as_str(), person.birthdate.to_string()],
            handoff_from,
        )? {
            rows.push(r?);
        }
    }
    let mut out: Vec<StoredHandoff> = rows.into_iter().map(make_handoff).collect::<Result<_>>()?;
    out.sort_by_key(|h| (h.source_insurer, h.source_key));
    out.dedup_by_key(|h| (h.source_insurer, h.source_key));
    Ok(out)
}

pub fn list_pending_handoffs(conn: &Connection) -> Result<Vec<StoredHandoff>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {HANDOFF_COLS} FROM handoff WHERE matched_insurer IS NULL ORDER BY source_insurer, source_key"
    ))?;
    let rows: Vec<_> = st.query_map([], handoff_from)?.collect::<rusqlite::Result<_>>()?;
    rows.into_iter().map(make_handoff).collect()
}
