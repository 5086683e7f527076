//! Typed reads and writes of ledger rows. Every lookup goes through an index.

use crate::domain::person::{Enrollment, Flag, FlagKey, InsurerFlags, Period, PersonKey, Released, Status};
use crate::domain::sql::{OrEmpty, stored};
use crate::domain::{
    Address, Date, DisclosureClassification, FlagType, IndividualNumber, InfoCode, InsurerNumber, SelfInfoReason,
    SubscriberKey,
};
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

/// A flag row's columns from `base` on (reason_code, source, effective_time,
/// support_measure_end, origin), typed as they are read.
fn flag_from_row(row: &Row, base: usize) -> rusqlite::Result<Flag> {
    Ok(Flag {
        reason: row.get::<_, OrEmpty<_>>(base)?.0,
        source: row.get(base + 1)?,
        effective_time: row.get(base + 2)?,
        support_measure_end: row.get::<_, OrEmpty<_>>(base + 3)?.0,
        origin: row.get(base + 4)?,
    })
}

/// The columns of one `enrollment` row, typed as they are read (periods and flags are read
/// after it).
fn enrollment_from_row(r: &Row, insurer: InsurerNumber, key: SubscriberKey) -> rusqlite::Result<(Enrollment, String)> {
    let individual_number = match r.get::<_, Option<String>>(0)?.filter(|s| !s.is_empty()) {
        Some(s) => Some(stored(0, "IndividualNumber", IndividualNumber::parse(&s))?),
        None => None,
    };
    let address = match r.get::<_, Option<String>>(8)?.filter(|s| !s.is_empty()) {
        Some(s) => Some(stored(8, "Address", Address::parse(&s))?),
        None => None,
    };
    let e = Enrollment {
        insurer,
        key,
        individual_number,
        municipality: r.get::<_, OrEmpty<_>>(1)?.0,
        resident: r.get::<_, OrEmpty<_>>(2)?.0,
        name: r.get(3)?,
        name_kana: r.get(4)?,
        sex: r.get(5)?,
        birthdate: r.get(6)?,
        post_number: r.get::<_, OrEmpty<_>>(7)?.0,
        address,
        periods: Vec::new(),
        status: r.get(9)?,
        published: r.get(10)?,
        unsent: r.get(11)?,
        flags: BTreeMap::new(),
        released: BTreeMap::new(),
    };
    Ok((e, r.get(12)?))
}

/// One `period` row, typed as it is read.
fn period_from_row(r: &Row) -> rusqlite::Result<Period> {
    Ok(Period {
        card_symbol: r.get::<_, Option<String>>(0)?.filter(|s| !s.is_empty()),
        card_number: r.get(1)?,
        branch: r.get(2)?,
        qualification_date: r.get(3)?,
        reason_of_qualification: r.get(4)?,
        disqualification_date: r.get::<_, OrEmpty<_>>(5)?.0,
        reason_of_loss: r.get::<_, OrEmpty<_>>(6)?.0,
        personal_family: r.get(7)?,
    })
}

/// Loads one enrollment with its periods and flags.
pub fn load_enrollment(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey) -> Result<Option<Enrollment>> {
    let mut st = conn.prepare_cached(
        "SELECT individual_number, municipality, resident_code, name, name_kana, sex, birthdate,
                post_number, address, status, published, unsent, flag_digest
         FROM enrollment WHERE insurer = ?1 AND subscriber_key = ?2",
    )?;
    let Some((mut e, digest)) = st
        .query_row(params![insurer, key], |r| enrollment_from_row(r, insurer, key))
        .optional()?
    else {
        return Ok(None);
    };
    let mut st = conn.prepare_cached(
        "SELECT card_symbol, card_number, branch, qualification_date, reason_of_qualification,
                disqualification_date, reason_of_loss, personal_family
         FROM period WHERE insurer = ?1 AND subscriber_key = ?2 ORDER BY ordinal",
    )?;
    e.periods = st
        .query_map(params![insurer, key], period_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    e.flags = load_subscriber_flags(conn, "main.flag", insurer, key)?;
    if digest_of(&e.flags) != digest {
        // the flag rows and their second record disagree: never act on either
        return Err(super::LedgerCorrupt {
            path: "the ledger".into(),
            what: format!("the flags of subscriber {insurer}/{key} do not match their second record (flag_digest)"),
        }
        .into());
    }
    e.released = load_released(conn, insurer, Some(key))?;
    Ok(Some(e))
}

/// The released flags of a subscriber (`key` None: the insurer-wide InfoCode flags), R1a.
pub fn load_released(
    conn: &Connection,
    insurer: InsurerNumber,
    key: Option<SubscriberKey>,
) -> Result<BTreeMap<FlagKey, Released>> {
    let mut st = conn.prepare_cached(
        "SELECT info_code, flag_type, effective_time, origin FROM flag_released
         WHERE insurer = ?1 AND subscriber_key = ?2",
    )?;
    let rows = st.query_map(params![insurer, OrEmpty(key)], |r| {
        Ok((
            (r.get::<_, OrEmpty<InfoCode>>(0)?.0, r.get::<_, FlagType>(1)?),
            Released {
                effective_time: r.get(2)?,
                origin: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Replaces the released flags of a subscriber (`key` None: insurer-wide).
pub fn store_released(
    conn: &Connection,
    insurer: InsurerNumber,
    key: Option<SubscriberKey>,
    released: &BTreeMap<FlagKey, Released>,
    existed: bool,
) -> Result<()> {
    let k = OrEmpty(key);
    if existed {
        conn.prepare_cached("DELETE FROM flag_released WHERE insurer = ?1 AND subscriber_key = ?2")?
            .execute(params![insurer, k])?;
    }
    if released.is_empty() {
        return Ok(());
    }
    let mut st = conn.prepare_cached(
        "INSERT OR REPLACE INTO flag_released (insurer, subscriber_key, info_code, flag_type, effective_time, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for ((info, ty), r) in released {
        st.execute(params![insurer, k, OrEmpty(*info), ty, r.effective_time, r.origin])?;
    }
    Ok(())
}

/// A subscriber's flags from `table` (`main.flag`, or a scratch copy with the same columns).
pub(crate) fn load_subscriber_flags(
    conn: &Connection,
    table: &str,
    insurer: InsurerNumber,
    key: SubscriberKey,
) -> Result<BTreeMap<crate::domain::person::FlagKey, Flag>> {
    // constant SQL per table: no formatting on this hot path
    let sql = match table {
        "main.flag" => {
            "SELECT info_code, flag_type, reason_code, source, effective_time, support_measure_end, origin
             FROM main.flag WHERE insurer = ?1 AND subscriber_key = ?2"
        }
        "temp.before_flag" => {
            "SELECT info_code, flag_type, reason_code, source, effective_time, support_measure_end, origin
             FROM temp.before_flag WHERE insurer = ?1 AND subscriber_key = ?2"
        }
        _ => unreachable!("flags are read from main.flag or temp.before_flag"),
    };
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(params![insurer, key], |r| {
        Ok((
            (r.get::<_, OrEmpty<InfoCode>>(0)?.0, r.get::<_, FlagType>(1)?),
            flag_from_row(r, 2)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Writes an enrollment with its periods and subscriber flags, replacing what the ledger held.
/// `existed`: the ledger may hold rows of it (false for a subscriber new in this run: the
/// deletes are skipped).
pub fn store_enrollment(conn: &Connection, e: &Enrollment, existed: bool) -> Result<()> {
    let (ins, key) = (e.insurer, e.key);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO enrollment (insurer, subscriber_key, individual_number, municipality,
            resident_code, name, name_kana, sex, birthdate, post_number, address, status, published, unsent,
            flag_digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        ins,
        key,
        e.individual_number.as_ref().map(IndividualNumber::expose),
        e.municipality,
        e.resident,
        e.name,
        e.name_kana,
        e.sex,
        e.birthdate,
        e.post_number,
        e.address.as_ref().map(Address::expose),
        e.status,
        e.published,
        e.unsent,
        digest_of(&e.flags),
    ])?;
    if existed {
        conn.prepare_cached("DELETE FROM period WHERE insurer = ?1 AND subscriber_key = ?2")?
            .execute(params![ins, key])?;
    }
    let mut ins_p = conn.prepare_cached(
        "INSERT INTO period (insurer, subscriber_key, ordinal, card_symbol, card_number, branch,
            qualification_date, reason_of_qualification, disqualification_date, reason_of_loss, personal_family)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for (i, pr) in e.periods.iter().enumerate() {
        ins_p.execute(params![
            ins,
            key,
            i as i64,
            pr.card_symbol,
            pr.card_number,
            pr.branch,
            pr.qualification_date,
            pr.reason_of_qualification,
            pr.disqualification_date,
            pr.reason_of_loss,
            pr.personal_family,
        ])?;
    }
    if existed {
        conn.prepare_cached("DELETE FROM flag WHERE insurer = ?1 AND subscriber_key = ?2")?
            .execute(params![ins, key])?;
    }
    for ((info, ty), f) in &e.flags {
        insert_flag(conn, "main.flag", e.insurer, Some(e.key), *info, *ty, f)?;
    }
    store_released(conn, e.insurer, Some(e.key), &e.released, existed)?;
    Ok(())
}

/// The canonical list of a subscriber's flags kept in `enrollment.flag_digest` (schema v2):
/// `info_code|flag_type|reason_code` per flag, sorted, joined by ';'. Written with the enrollment
/// row, compared with the flag rows by R4 and `ledger check`.
pub fn flag_digest<'a>(flags: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    // ordered by (info_code, flag_type) as the SQL of the upgrade and of `ledger check` orders it
    let mut v: Vec<(&str, &str, &str)> = flags.into_iter().collect();
    v.sort();
    v.iter()
        .map(|(i, t, r)| format!("{i}|{t}|{r}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// [`flag_digest`] of a subscriber's flags.
fn digest_of(flags: &BTreeMap<FlagKey, Flag>) -> String {
    flag_digest(flags.iter().map(|((info, ty), f)| {
        (
            info.as_ref().map_or("", InfoCode::as_str),
            ty.code(),
            f.reason.map_or("", SelfInfoReason::code),
        )
    }))
}

/// A flag row as stored, read with plain SQL (an empty `info_code`: the whole subscriber; an
/// empty `reason_code`: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFlagRow {
    pub info_code: String,
    pub flag_type: String,
    pub reason_code: String,
}

/// A subscriber's flag rows as stored, and the digest stored with its enrollment row (None: no
/// enrollment row).
pub fn raw_flags_and_digest(conn: &Connection, insurer: &str, key: &str) -> Result<(Vec<RawFlagRow>, Option<String>)> {
    let mut st = conn.prepare_cached(
        "SELECT info_code, flag_type, coalesce(reason_code, '') FROM flag WHERE insurer = ?1 AND subscriber_key = ?2",
    )?;
    let rows = st
        .query_map([insurer, key], |r| {
            Ok(RawFlagRow {
                info_code: r.get(0)?,
                flag_type: r.get(1)?,
                reason_code: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<RawFlagRow>>>()?;
    let digest = conn
        .prepare_cached("SELECT flag_digest FROM enrollment WHERE insurer = ?1 AND subscriber_key = ?2")?
        .query_row([insurer, key], |r| r.get(0))
        .optional()?;
    Ok((rows, digest))
}

/// Every enrollment whose flag rows do not match its stored digest (`ledger check`).
pub fn digest_mismatches(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut st = conn.prepare(
        "SELECT e.insurer, e.subscriber_key FROM enrollment e
         WHERE e.flag_digest != coalesce((
             SELECT group_concat(f.info_code || '|' || f.flag_type || '|' || coalesce(f.reason_code, ''), ';'
                                 ORDER BY f.info_code, f.flag_type)
             FROM flag f WHERE f.insurer = e.insurer AND f.subscriber_key = e.subscriber_key), '')
         ORDER BY 1, 2",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Flag rows of subscribers the ledger holds no enrollment for, and flags both set and released
/// (`ledger check`): (insurer, subscriber_key, what).
pub fn flag_orphans(conn: &Connection) -> Result<Vec<(String, String, String)>> {
    let mut st = conn.prepare(
        "SELECT f.insurer, f.subscriber_key, 'flag row without an enrollment' FROM flag f
         WHERE f.subscriber_key != '' AND NOT EXISTS (
             SELECT 1 FROM enrollment e WHERE e.insurer = f.insurer AND e.subscriber_key = f.subscriber_key)
         UNION ALL
         SELECT r.insurer, r.subscriber_key, 'flag both set and released' FROM flag_released r
         JOIN flag f USING (insurer, subscriber_key, info_code, flag_type)
         ORDER BY 1, 2",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Writes one flag row into `table` (`main.flag`, or a scratch copy with the same columns).
pub(crate) fn insert_flag(
    conn: &Connection,
    table: &str,
    insurer: InsurerNumber,
    key: Option<SubscriberKey>,
    info: Option<InfoCode>,
    ty: FlagType,
    f: &Flag,
) -> Result<()> {
    let sql = match table {
        "main.flag" => {
            "INSERT OR REPLACE INTO main.flag (insurer, subscriber_key, info_code, flag_type, reason_code, source,
                effective_time, support_measure_end, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        }
        "temp.before_flag" => {
            "INSERT OR REPLACE INTO temp.before_flag (insurer, subscriber_key, info_code, flag_type, reason_code,
                source, effective_time, support_measure_end, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        }
        _ => unreachable!("flags are written to main.flag or temp.before_flag"),
    };
    conn.prepare_cached(sql)?.execute(params![
        insurer,
        OrEmpty(key),
        OrEmpty(info),
        ty,
        f.reason,
        f.source,
        f.effective_time,
        f.support_measure_end,
        f.origin,
    ])?;
    Ok(())
}

/// Insurer-wide InfoCode flags (FlagChange Scope 2).
pub fn load_insurer_flags(conn: &Connection, insurer: InsurerNumber) -> Result<InsurerFlags> {
    let mut st = conn.prepare_cached(
        "SELECT info_code, flag_type, reason_code, source, effective_time, support_measure_end, origin
         FROM flag WHERE insurer = ?1 AND subscriber_key = ''",
    )?;
    let rows = st.query_map(params![insurer], |r| {
        Ok((
            (r.get::<_, InfoCode>(0)?, r.get::<_, FlagType>(1)?),
            flag_from_row(r, 2)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn store_insurer_flags(conn: &Connection, insurer: InsurerNumber, flags: &InsurerFlags) -> Result<()> {
    conn.prepare_cached("DELETE FROM flag WHERE insurer = ?1 AND subscriber_key = ''")?
        .execute(params![insurer])?;
    for ((info, ty), f) in flags {
        insert_flag(conn, "main.flag", insurer, None, Some(*info), *ty, f)?;
    }
    Ok(())
}

/// Enrollments of other insurers that may be the same person (candidates; the caller applies
/// [`PersonKey::matches`]). Uses the My Number index and the (municipality, 宛名番号, birthdate) index.
pub fn find_person(conn: &Connection, person: &PersonKey) -> Result<Vec<(InsurerNumber, SubscriberKey)>> {
    let mut out = Vec::new();
    if let Some(mn) = person.individual_number {
        let mut st =
            conn.prepare_cached("SELECT insurer, subscriber_key FROM enrollment WHERE individual_number = ?1")?;
        let rows = st.query_map(params![mn.expose()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for r in rows {
            out.push(r?);
        }
    }
    if let (Some(m), Some(res)) = (person.municipality, &person.resident) {
        let mut st = conn.prepare_cached(
            "SELECT insurer, subscriber_key FROM enrollment
             WHERE municipality = ?1 AND resident_code = ?2 AND birthdate = ?3",
        )?;
        let rows = st.query_map(params![m, res, person.birthdate], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for r in rows {
            out.push(r?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Records what the server holds of a subscriber after the run's outputs (R14): `published`, the
/// server holds a registration; `unsent`, the ledger's state still has to be sent.
pub fn set_publication(
    conn: &Connection,
    insurer: InsurerNumber,
    key: SubscriberKey,
    published: bool,
    unsent: bool,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE enrollment SET published = ?3, unsent = ?4 WHERE insurer = ?1 AND subscriber_key = ?2",
    )?
    .execute(params![insurer, key, published, unsent])?;
    Ok(())
}

/// Subscribers whose state the server has not been sent yet (R14), in key order.
pub fn list_unsent(conn: &Connection) -> Result<Vec<(InsurerNumber, SubscriberKey)>> {
    let mut st = conn.prepare_cached(
        "SELECT insurer, subscriber_key FROM enrollment WHERE unsent = 1 ORDER BY insurer, subscriber_key",
    )?;
    Ok(st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn unsent_count(conn: &Connection) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM enrollment WHERE unsent = 1")?
        .query_row([], |r| r.get::<_, i64>(0))? as u64)
}

/// Index keys of every person the ledger holds with a protective flag (自己情報提供不可 or 不開示該当
/// on a whole 国保 subscriber) or a flagged hand-off: My Numbers, and (municipality, 宛名番号,
/// birthdate). A prefilter for checks that need a flagged match (R3/R4): a person matching none
/// of these keys has no flagged match.
#[derive(Debug, Default)]
pub struct FlaggedPersonKeys {
    pub individual_numbers: std::collections::HashSet<String>,
    pub residents: std::collections::HashSet<(String, String, String)>,
}

pub fn flagged_person_keys(conn: &Connection) -> Result<FlaggedPersonKeys> {
    let mut out = FlaggedPersonKeys::default();
    let mut add = |mn: Option<String>, muni: Option<String>, res: Option<String>, birth: String| {
        if let Some(mn) = mn.filter(|m| !m.is_empty()) {
            out.individual_numbers.insert(mn);
        }
        if let (Some(m), Some(r)) = (muni.filter(|m| !m.is_empty()), res.filter(|r| !r.is_empty())) {
            out.residents.insert((m, r, birth));
        }
    };
    type Row = (Option<String>, Option<String>, Option<String>, String);
    let row = |r: &rusqlite::Row| -> rusqlite::Result<Row> { Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)) };
    let mut st = conn.prepare_cached(
        "SELECT e.individual_number, e.municipality, e.resident_code, e.birthdate
         FROM enrollment e JOIN flag f ON f.insurer = e.insurer AND f.subscriber_key = e.subscriber_key
         WHERE f.info_code = '' AND f.flag_type IN (?1, ?2) AND e.status != ?3",
    )?;
    let protective = params![
        FlagType::NonDisclosure,
        FlagType::SelfInfoProvisionProhibited,
        Status::Cancelled
    ];
    for r in st.query_map(protective, row)? {
        let (mn, muni, res, birth) = r?;
        add(mn, muni, res, birth);
    }
    let mut st = conn.prepare_cached(
        "SELECT individual_number, municipality, resident_code, birthdate FROM handoff
         WHERE self_info != ?1 OR non_disclosure = 1",
    )?;
    for r in st.query_map([crate::domain::self_info_column(None)], row)? {
        let (mn, muni, res, birth) = r?;
        add(mn, muni, res, birth);
    }
    Ok(out)
}

/// A 副本 as registered in the ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFukuhon {
    pub effective_date: Date,
    pub disclosure: Option<DisclosureClassification>,
    pub items: Vec<(String, String)>,
    pub origin: String,
}

pub fn load_fukuhon(
    conn: &Connection,
    insurer: InsurerNumber,
    key: SubscriberKey,
    info: InfoCode,
) -> Result<Option<StoredFukuhon>> {
    let mut st = conn.prepare_cached(
        "SELECT effective_date, disclosure, items, origin FROM fukuhon
         WHERE insurer = ?1 AND subscriber_key = ?2 AND info_code = ?3",
    )?;
    let row = st
        .query_row(params![insurer, key, info], |r| {
            Ok((
                r.get::<_, Date>(0)?,
                r.get::<_, OrEmpty<DisclosureClassification>>(1)?.0,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?;
    row.map(|(effective_date, disclosure, items, origin)| {
        Ok(StoredFukuhon {
            effective_date,
            disclosure,
            items: serde_json::from_str(&items).context("ledger holds invalid 副本 items")?,
            origin,
        })
    })
    .transpose()
}

pub fn store_fukuhon(
    conn: &Connection,
    insurer: InsurerNumber,
    key: SubscriberKey,
    info: InfoCode,
    f: Option<&StoredFukuhon>,
) -> Result<()> {
    match f {
        None => {
            conn.prepare_cached("DELETE FROM fukuhon WHERE insurer = ?1 AND subscriber_key = ?2 AND info_code = ?3")?
                .execute(params![insurer, key, info])?;
        }
        Some(f) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO fukuhon (insurer, subscriber_key, info_code, effective_date, disclosure, items, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                insurer,
                key,
                info,
                f.effective_date,
                f.disclosure,
                serde_json::to_string(&f.items)?,
                f.origin,
            ])?;
        }
    }
    Ok(())
}
