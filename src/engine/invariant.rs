//! The safety invariant (R4): no group goes out stating a flag cleared that the ledger holds as
//! set, and no future-dated 後期 registration goes out unflagged while a matching 国保 enrollment
//! or hand-off is flagged. Checked group by group just before each is written, independently of
//! the code that built the group (R2/R3): it re-reads the ledger itself.
//!
//! Interface: [`verify_group`] (one group about to be published) and [`verify_invariant`] (a
//! set); both take only the ledger connection, the group and the run date, and answer
//! [`FlagWouldBeCleared`], which aborts the run.

use crate::domain::person::Status;
use crate::domain::{Date, FlagType, ProcessingCode};
use crate::formats::linkage::SubscriberGroup;
use crate::ledger;
use rusqlite::Connection;

/// The R4 violation.
#[derive(Debug, thiserror::Error)]
#[error("E_FLAG_WOULD_BE_CLEARED: {0}")]
pub struct FlagWouldBeCleared(pub String);

/// R4 over a set of groups (see [`verify_group`]).
pub fn verify_invariant(conn: &Connection, groups: &[SubscriberGroup], as_of: Date) -> Result<(), FlagWouldBeCleared> {
    groups.iter().try_for_each(|g| verify_group(conn, g, as_of))
}

/// R4, independent of R2/R3: re-reads the flag table and the matching 国保 enrollments and
/// hand-offs with plain SQL, and checks one group that is about to be published.
pub fn verify_group(conn: &Connection, g: &SubscriberGroup, as_of: Date) -> Result<(), FlagWouldBeCleared> {
    if g.processing == ProcessingCode::Delete {
        return Ok(()); // deleting a registration states no flag (v1.1 R4)
    }
    let err = |e: anyhow::Error| FlagWouldBeCleared(format!("cannot verify the ledger: {e}"));
    let (ins, key) = (g.insurer.to_string(), g.key.to_string());
    // the flag rows against the second record of them kept with the enrollment row: a corrupted
    // flag row (or digest) is found here, before anything is published
    let (rows, digest) = ledger::raw_flags_and_digest(conn, &ins, &key).map_err(err)?;
    let recomputed = ledger::flag_digest(
        rows.iter()
            .map(|r| (r.info_code.as_str(), r.flag_type.as_str(), r.reason_code.as_str())),
    );
    if digest.as_deref() != Some(recomputed.as_str()) {
        return Err(FlagWouldBeCleared(format!(
            "the ledger's flags of subscriber {ins}/{key} do not match their second record (flag_digest): \
             the ledger may be corrupted; run `nhi-linkage ledger check` and restore the last good backup"
        )));
    }
    let held: Vec<(String, Option<String>)> = rows
        .into_iter()
        .filter(|r| r.info_code.is_empty())
        .map(|r| (r.flag_type, Some(r.reason_code).filter(|r| !r.is_empty())))
        .collect();
    for (ty, reason) in &held {
        // as stored: a type the ledger should not hold is checked as 自己情報提供不可
        let held_type = FlagType::parse(ty).ok();
        let written = match held_type {
            Some(FlagType::AutoResponseProhibited) => g.control.auto_response.then(|| "1".to_owned()),
            Some(FlagType::NonDisclosure) => g.control.non_disclosure.then(|| "1".to_owned()),
            Some(FlagType::SelfInfoProvisionProhibited) | None => g.control.self_info.map(|r| r.code().to_owned()),
        };
        let ok = match (held_type, &written) {
            (Some(FlagType::SelfInfoProvisionProhibited), Some(w)) => reason.as_deref().is_none_or(|r| r == w),
            (_, Some(_)) => true,
            _ => false,
        };
        if !ok {
            return Err(FlagWouldBeCleared(format!(
                "the 02 row of subscriber {ins}/{key} would state flag type {ty} as {} while the ledger holds it as set",
                written.as_deref().unwrap_or("0")
            )));
        }
    }
    if !g.insurer.is_kouki() {
        return Ok(());
    }
    // a 後期 registration with a future QualificationDate must not go out unflagged while a
    // matching 国保 enrollment (or hand-off) is flagged
    let future = g.qualifications.last().is_some_and(|q| q.qualification_date > as_of);
    if !future {
        return Ok(());
    }
    let e = ledger::load_enrollment(conn, g.insurer, g.key)
        .map_err(err)?
        .ok_or_else(|| FlagWouldBeCleared(format!("subscriber {ins}/{key} is not in the ledger")))?;
    let person = e.person();
    let mut flagged_elsewhere: Vec<(String, bool, bool)> = Vec::new();
    for (ci, ck) in ledger::find_person(conn, &person).map_err(err)? {
        if !ci.is_kokuho() {
            continue;
        }
        let Some(c) = ledger::load_enrollment(conn, ci, ck).map_err(err)? else {
            continue;
        };
        if c.status == Status::Cancelled || person.matches(&c.person()).is_none() {
            continue;
        }
        let fl = ledger::subscriber_flag_types(conn, ci.as_str(), ck.as_str()).map_err(err)?;
        flagged_elsewhere.push((
            format!("{ci}/{ck}"),
            fl.iter()
                .any(|f| FlagType::parse(f) == Ok(FlagType::SelfInfoProvisionProhibited)),
            fl.iter().any(|f| FlagType::parse(f) == Ok(FlagType::NonDisclosure)),
        ));
    }
    for h in ledger::find_handoffs(conn, &person).map_err(err)? {
        if person.matches(&h.person).is_some() {
            flagged_elsewhere.push((
                format!("hand-off {}/{}", h.source_insurer, h.source_key),
                h.self_info.is_some(),
                h.non_disclosure,
            ));
        }
    }
    for (src, si, nd) in flagged_elsewhere {
        if (si && g.control.self_info.is_none()) || (nd && !g.control.non_disclosure) {
            return Err(FlagWouldBeCleared(format!(
                "後期 registration {ins}/{key} with future QualificationDate {} would go out without the flags set at {src}",
                g.qualifications
                    .last()
                    .map(|q| q.qualification_date.to_string())
                    .unwrap_or_default()
            )));
        }
    }
    Ok(())
}
