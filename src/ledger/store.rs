//! Typed reads and writes of ledger rows. Every lookup goes through an index.

use crate::domain::person::{Enrollment, Flag, FlagKey, InsurerFlags, Period, PersonKey, Released, Status};
use crate::domain::{
    Address, Date, DisclosureClassification, FileKind, FlagChange, FlagOperation, FlagScope, FlagSource, FlagType,
    IndividualNumber, InfoCode, InsuredBranchNumber, InsurerNumber, MunicipalityCode, PersonalFamilyClassification,
    PostNumber, ReasonOfLoss, ReasonOfQualification, ResidentCode, SelfInfoReason, Sex1, SubscriberKey, Timestamp,
    parse_self_info_column,
};
use anyhow::{Context, Result, anyhow};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

fn p<T>(r: Result<T, crate::error::FieldError>, what: &str) -> Result<T> {
    r.map_err(|e| anyhow!("ledger holds an invalid {what}: {e}"))
}
fn opt<T>(v: Option<String>, f: impl Fn(&str) -> Result<T, crate::error::FieldError>, what: &str) -> Result<Option<T>> {
    v.filter(|s| !s.is_empty()).map(|s| p(f(&s), what)).transpose()
}

/// A flag row's columns as stored (reason_code, source, effective_time, support_measure_end,
/// origin), read inside a query and typed after it.
struct FlagText {
    reason: Option<String>,
    source: String,
    time: String,
    end: Option<String>,
    origin: String,
}

fn flag_from_row(row: &Row, base: usize) -> rusqlite::Result<FlagText> {
    Ok(FlagText {
        reason: row.get(base)?,
        source: row.get(base + 1)?,
        time: row.get(base + 2)?,
        end: row.get(base + 3)?,
        origin: row.get(base + 4)?,
    })
}

fn make_flag(f: FlagText) -> Result<Flag> {
    Ok(Flag {
        reason: opt(f.reason, SelfInfoReason::parse, "ReasonCode")?,
        source: p(FlagSource::parse(&f.source), "Source")?,
        effective_time: p(Timestamp::parse(&f.time), "EffectiveTime")?,
        support_measure_end: opt(f.end, Date::parse, "SupportMeasureEndDate")?,
        origin: f.origin,
    })
}

/// Loads one enrollment with its periods and flags.
pub fn load_enrollment(conn: &Connection, insurer: InsurerNumber, key: SubscriberKey) -> Result<Option<Enrollment>> {
    let mut st = conn.prepare_cached(
        "SELECT individual_number, municipality, resident_code, name, name_kana, sex, birthdate,
                post_number, address, status, published, unsent, flag_digest
         FROM enrollment WHERE insurer = ?1 AND subscriber_key = ?2",
    )?;
    let row = st
        .query_row(params![insurer.as_str(), key.as_str()], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, bool>(10)?,
                r.get::<_, bool>(11)?,
                r.get::<_, String>(12)?,
            ))
        })
        .optional()?;
    let Some((mn, muni, res, name, kana, sex, birth, post, addr, status, published, unsent, digest)) = row else {
        return Ok(None);
    };
    let mut e = Enrollment {
        insurer,
        key,
        individual_number: opt(mn, IndividualNumber::parse, "IndividualNumber")?,
        municipality: opt(muni, MunicipalityCode::parse, "MunicipalityCode")?,
        resident: opt(res, ResidentCode::parse, "ResidentCode")?,
        name,
        name_kana: kana,
        sex: p(Sex1::parse(&sex), "Sex1")?,
        birthdate: p(Date::parse(&birth), "Birthdate")?,
        post_number: opt(post, PostNumber::parse, "PostNumber")?,
        address: opt(addr, Address::parse, "Address")?,
        periods: Vec::new(),
        status: Status::parse(&status).ok_or_else(|| anyhow!("ledger holds an invalid status"))?,
        published,
        unsent,
        flags: BTreeMap::new(),
        released: BTreeMap::new(),
    };
    let mut st = conn.prepare_cached(
        "SELECT card_symbol, card_number, branch, qualification_date, reason_of_qualification,
                disqualification_date, reason_of_loss, personal_family
         FROM period WHERE insurer = ?1 AND subscriber_key = ?2 ORDER BY ordinal",
    )?;
    let rows = st.query_map(params![insurer.as_str(), key.as_str()], |r| {
        Ok((
            r.get::<_, Option<String>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    for row in rows {
        let (sym, num, branch, q, rq, d, rl, pf) = row?;
        e.periods.push(Period {
            card_symbol: sym.filter(|s| !s.is_empty()),
            card_number: num,
            branch: p(InsuredBranchNumber::parse(&branch), "InsuredBranchNumber")?,
            qualification_date: p(Date::parse(&q), "QualificationDate")?,
            reason_of_qualification: p(ReasonOfQualification::parse(&rq), "ReasonOfQualification")?,
            disqualification_date: opt(d, Date::parse, "DisqualificationDate")?,
            reason_of_loss: opt(rl, ReasonOfLoss::parse, "ReasonOfLoss")?,
            personal_family: p(PersonalFamilyClassification::parse(&pf), "PersonalFamilyClassification")?,
        });
    }
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
    let rows = st.query_map(
        params![insurer.as_str(), key.as_ref().map_or("", SubscriberKey::as_str)],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        },
    )?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (info, ty, time, origin) = row?;
        out.insert(
            (
                opt(Some(info), InfoCode::parse, "InfoCode")?,
                p(FlagType::parse(&ty), "FlagType")?,
            ),
            Released {
                effective_time: p(Timestamp::parse(&time), "EffectiveTime")?,
                origin,
            },
        );
    }
    Ok(out)
}

/// Replaces the released flags of a subscriber (`key` None: insurer-wide).
pub fn store_released(
    conn: &Connection,
    insurer: InsurerNumber,
    key: Option<SubscriberKey>,
    released: &BTreeMap<FlagKey, Released>,
    existed: bool,
) -> Result<()> {
    let k = key.as_ref().map_or("", SubscriberKey::as_str);
    if existed {
        conn.prepare_cached("DELETE FROM flag_released WHERE insurer = ?1 AND subscriber_key = ?2")?
            .execute(params![insurer.as_str(), k])?;
    }
    if released.is_empty() {
        return Ok(());
    }
    let mut st = conn.prepare_cached(
        "INSERT OR REPLACE INTO flag_released (insurer, subscriber_key, info_code, flag_type, effective_time, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for ((info, ty), r) in released {
        st.execute(params![
            insurer.as_str(),
            k,
            info.as_ref().map_or("", InfoCode::as_str),
            ty.code(),
            r.effective_time.to_string(),
            r.origin,
        ])?;
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
    let rows = st.query_map(params![insurer.as_str(), key.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, flag_from_row(r, 2)?))
    })?;
    let mut flags = BTreeMap::new();
    for row in rows {
        let (info, ty, f) = row?;
        let info = opt(Some(info), InfoCode::parse, "InfoCode")?;
        flags.insert((info, p(FlagType::parse(&ty), "FlagType")?), make_flag(f)?);
    }
    Ok(flags)
}

/// Writes an enrollment with its periods and subscriber flags, replacing what the ledger held.
/// `existed`: the ledger may hold rows of it (false for a subscriber new in this run: the
/// deletes are skipped).
pub fn store_enrollment(conn: &Connection, e: &Enrollment, existed: bool) -> Result<()> {
    let (ins, key) = (e.insurer.as_str(), e.key.as_str());
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
        e.municipality.as_ref().map(MunicipalityCode::as_str),
        e.resident.as_ref().map(ResidentCode::as_str),
        e.name,
        e.name_kana,
        e.sex.code(),
        e.birthdate.to_string(),
        e.post_number.as_ref().map(PostNumber::as_str),
        e.address.as_ref().map(Address::expose),
        e.status.as_str(),
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
            pr.branch.as_str(),
            pr.qualification_date.to_string(),
            pr.reason_of_qualification.code(),
            pr.disqualification_date.map(|d| d.to_string()),
            pr.reason_of_loss.map(ReasonOfLoss::code),
            pr.personal_family.code(),
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
        insurer.as_str(),
        key.as_ref().map_or("", SubscriberKey::as_str),
        info.as_ref().map_or("", InfoCode::as_str),
        ty.code(),
        f.reason.map(SelfInfoReason::code),
        f.source.code(),
        f.effective_time.to_string(),
        f.support_measure_end.map(|d| d.to_string()),
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
    let rows = st.query_map(params![insurer.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, flag_from_row(r, 2)?))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (info, ty, f) = row?;
        out.insert(
            (
                p(InfoCode::parse(&info), "InfoCode")?,
                p(FlagType::parse(&ty), "FlagType")?,
            ),
            make_flag(f)?,
        );
    }
    Ok(out)
}

pub fn store_insurer_flags(conn: &Connection, insurer: InsurerNumber, flags: &InsurerFlags) -> Result<()> {
    conn.prepare_cached("DELETE FROM flag WHERE insurer = ?1 AND subscriber_key = ''")?
        .execute(params![insurer.as_str()])?;
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
        let rows = st.query_map(params![mn.expose()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    if let (Some(m), Some(res)) = (person.municipality, &person.resident) {
        let mut st = conn.prepare_cached(
            "SELECT insurer, subscriber_key FROM enrollment
             WHERE municipality = ?1 AND resident_code = ?2 AND birthdate = ?3",
        )?;
        let rows = st.query_map(params![m.as_str(), res.as_str(), person.birthdate.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    out.sort();
    out.dedup();
    out.into_iter()
        .map(|(i, k)| {
            Ok((
                p(InsurerNumber::parse(&i), "InsurerNumber")?,
                p(SubscriberKey::parse(&k), "SubscriberKey")?,
            ))
        })
        .collect()
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
    .execute(params![insurer.as_str(), key.as_str(), published, unsent])?;
    Ok(())
}

/// Subscribers whose state the server has not been sent yet (R14), in key order.
pub fn list_unsent(conn: &Connection) -> Result<Vec<(InsurerNumber, SubscriberKey)>> {
    let mut st = conn.prepare_cached(
        "SELECT insurer, subscriber_key FROM enrollment WHERE unsent = 1 ORDER BY insurer, subscriber_key",
    )?;
    let rows: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(i, k)| {
            Ok((
                p(InsurerNumber::parse(&i), "InsurerNumber")?,
                p(SubscriberKey::parse(&k), "SubscriberKey")?,
            ))
        })
        .collect()
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
    for sql in [
        "SELECT e.individual_number, e.municipality, e.resident_code, e.birthdate
         FROM enrollment e JOIN flag f ON f.insurer = e.insurer AND f.subscriber_key = e.subscriber_key
         WHERE f.info_code = '' AND f.flag_type IN ('2', '3') AND e.status != 'cancelled'",
        "SELECT individual_number, municipality, resident_code, birthdate FROM handoff
         WHERE self_info != '0' OR non_disclosure = 1",
    ] {
        let mut st = conn.prepare_cached(sql)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        for r in rows {
            let (mn, muni, res, birth): Row = r?;
            add(mn, muni, res, birth);
        }
    }
    Ok(out)
}

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

pub fn list_pending_flags(conn: &Connection) -> Result<Vec<PendingFlag>> {
    let mut all = Vec::new();
    for_each_pending_flag(conn, |p| {
        all.push(p);
        Ok(())
    })?;
    Ok(all)
}

/// Every pending flag event, one at a time, in [`list_pending_flags`] order: the report lists
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
        .query_row(params![insurer.as_str(), key.as_str(), info.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?;
    row.map(|(d, disc, items, origin)| {
        Ok(StoredFukuhon {
            effective_date: p(Date::parse(&d), "EffectiveDate")?,
            disclosure: opt(disc, DisclosureClassification::parse, "DisclosureClassification")?,
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
                .execute(params![insurer.as_str(), key.as_str(), info.as_str()])?;
        }
        Some(f) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO fukuhon (insurer, subscriber_key, info_code, effective_date, disclosure, items, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                insurer.as_str(),
                key.as_str(),
                info.as_str(),
                f.effective_date.to_string(),
                f.disclosure.map(DisclosureClassification::code),
                serde_json::to_string(&f.items)?,
                f.origin,
            ])?;
        }
    }
    Ok(())
}

/// SHA-256 (hex) of an applied file with this sender and identifier, if any (R10).
pub fn applied_file_sha(conn: &Connection, sender: InsurerNumber, file_identifier: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT sha256 FROM applied_file WHERE sender = ?1 AND file_identifier = ?2")?
        .query_row(params![sender.as_str(), file_identifier], |r| r.get(0))
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
        sender.as_str(),
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

/// What a journal line records: the `event` column of the `journal` table.
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
}

impl rusqlite::ToSql for JournalEvent {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

pub fn journal(
    conn: &Connection,
    run_id: &str,
    file: Option<&str>,
    seq: Option<u64>,
    subscriber: Option<(InsurerNumber, SubscriberKey)>,
    event: JournalEvent,
    detail: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO journal (run_id, file, record_sequence, insurer, subscriber_key, event, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        run_id,
        file,
        seq.map(|s| s as i64),
        subscriber.map(|s| s.0.to_string()),
        subscriber.map(|s| s.1.to_string()),
        event,
        detail
    ])?;
    Ok(())
}

/// How many journal lines of `event` a run wrote.
pub fn count_journal_events(conn: &Connection, run_id: &str, event: JournalEvent) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM journal WHERE run_id = ?1 AND event = ?2",
        params![run_id, event],
        |r| r.get(0),
    )?)
}

/// A run whose ledger changes are committed; its outputs may still sit in staging (R12).
#[derive(Clone, Debug)]
pub struct RunRow {
    pub run_id: String,
    pub status: String,
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
         WHERE status = 'committed' ORDER BY run_id",
    )?;
    let rows = st.query_map([], |r| {
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
    conn.execute("UPDATE run SET status = 'published' WHERE run_id = ?1", params![run_id])?;
    Ok(())
}

pub fn run_exists(conn: &Connection, run_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM run WHERE run_id = ?1")?
        .query_row(params![run_id], |_| Ok(()))
        .optional()?
        .is_some())
}
