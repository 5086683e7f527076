//! Withholding (R4, v1.1): states that input can reach and in which a subscriber's group must
//! not go out. Decided per group before it is written, from the ledger the run has built:
//!
//! - a 後期 registration whose match is ambiguous (several possible 国保 enrollments or
//!   hand-offs) while one of them is flagged and the registration lacks the protection — past or
//!   future-dated (R3 forbids the carry, and an unflagged registration would clear the flag);
//! - a future-dated 後期 registration that lacks 自己情報提供不可 or 不開示該当 while a matched 国保
//!   enrollment or hand-off holds it (e.g. the union released a carried flag before the
//!   acquisition date while 国保 still holds it, or a reason-03 registration of a flagged person);
//! - a future-dated 01/02 registration that nothing matched while its R13 inquiry is unanswered
//!   ([`super::inquiry`]): the only hold that needs no flagged match.
//!
//! A withheld group is not published, stays unsent in the ledger (R14), is critical on the review
//! worklist and is tried again by every later run. A 取消 (ProcessingCode 15) is never withheld.
//! The R4 check in the writer stays the independent last line: it aborts the run if a group that
//! passed here would still clear a flag (a defect, not an input).

use super::carry::person_candidates;
use crate::domain::SubKey;
use crate::domain::person::{Enrollment, Status};
use crate::domain::{Date, FlagType};
use crate::ledger;
use anyhow::Result;
use rusqlite::Connection;
use std::collections::BTreeMap;

/// Why a group is withheld, with the 国保 enrollments / hand-offs involved.
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    pub why: String,
    pub candidates: Vec<SubKey>,
}

/// Decides holds for the groups of one run. Every hold needs a flagged match, so after a few
/// thousand 後期 groups (a full load) the checker reads the index keys of all flagged persons
/// once and skips the per-group lookups for registrations that match none of them; a nightly
/// delta only does the indexed lookups of its own registrations.
#[derive(Default)]
pub struct HoldChecker {
    looked_up: u32,
    flagged: Option<ledger::FlaggedPersonKeys>,
    /// R13: registrations with an unanswered inquiry (read once; few), which need no flagged
    /// match to be held.
    open_inquiries: Option<std::collections::HashSet<SubKey>>,
}

/// 後期 groups checked one by one before the flagged persons' keys are read instead.
const PREFILTER_AFTER: u32 = 2000;

impl HoldChecker {
    /// The hold on a 後期 registration about to be written, if any. `e` is its state after the run.
    pub fn check(&mut self, conn: &Connection, e: &Enrollment, as_of: Date) -> Result<Option<Hold>> {
        if !e.insurer.is_kouki() || e.status == Status::Cancelled {
            return Ok(None);
        }
        // R13 withholds an unanswered future-dated registration whatever flags it holds (the spec
        // makes no exception for one the union flagged itself)
        if self.open_inquiries.is_none() {
            self.open_inquiries = Some(ledger::open_inquiry_keys(conn)?.into_iter().collect());
        }
        let inquired = self
            .open_inquiries
            .as_ref()
            .is_some_and(|s| s.contains(&(e.insurer, e.key)));
        if inquired {
            if let Some(h) = inquiry_hold(e, as_of) {
                return Ok(Some(h));
            }
        }
        if e.has_protective_flag_pair() {
            return Ok(None); // nothing a carry could add: no other hold applies
        }
        self.looked_up += 1;
        if self.flagged.is_none() && self.looked_up > PREFILTER_AFTER {
            self.flagged = Some(ledger::flagged_person_keys(conn)?);
        }
        if let Some(f) = &self.flagged {
            let by_mn = e
                .individual_number
                .is_some_and(|m| f.individual_numbers.contains(m.expose()));
            let by_res = match (e.municipality, &e.resident) {
                (Some(m), Some(r)) => {
                    f.residents
                        .contains(&(m.as_str().to_owned(), r.as_str().to_owned(), e.birthdate.to_string()))
                }
                _ => false,
            };
            if !by_mn && !by_res {
                return Ok(None);
            }
        }
        hold_reason(conn, e, as_of)
    }
}

/// The hold on a 後期 registration about to be written, if any. `e` is its state after the run.
pub fn hold_reason(conn: &Connection, e: &Enrollment, as_of: Date) -> Result<Option<Hold>> {
    if !e.insurer.is_kouki() || e.status == Status::Cancelled {
        return Ok(None);
    }
    let lacks_si = e.flag(FlagType::SelfInfoProvisionProhibited).is_none();
    let lacks_nd = e.flag(FlagType::NonDisclosure).is_none();
    if !lacks_si && !lacks_nd {
        return Ok(None);
    }
    let Some(period) = e.current_period() else {
        return Ok(None);
    };
    if ledger::inquiry_is_open(conn, e.insurer, e.key)? {
        if let Some(h) = inquiry_hold(e, as_of) {
            return Ok(Some(h));
        }
    }
    let person = e.person();
    // candidates by 国保 key: (self_info, non_disclosure), the union of ledger and hand-off
    let mut cands: BTreeMap<SubKey, (bool, bool)> = BTreeMap::new();
    for (c, rule) in person_candidates(conn, true, &person, |i| i.is_kokuho())? {
        if rule.is_some() {
            let v = cands.entry((c.insurer, c.key)).or_default();
            v.0 |= c.flag(FlagType::SelfInfoProvisionProhibited).is_some();
            v.1 |= c.flag(FlagType::NonDisclosure).is_some();
        }
    }
    for h in ledger::find_handoffs(conn, &person)? {
        if person.matches(&h.person).is_some() {
            let v = cands.entry((h.source_insurer, h.source_key)).or_default();
            v.0 |= h.self_info.is_some();
            v.1 |= h.non_disclosure;
        }
    }
    let lacking = |(si, nd): &(bool, bool)| (*si && lacks_si) || (*nd && lacks_nd);
    let flagged: Vec<SubKey> = cands.iter().filter(|(_, v)| lacking(v)).map(|(k, _)| *k).collect();
    if flagged.is_empty() {
        return Ok(None);
    }
    let keys: Vec<SubKey> = cands.keys().copied().collect();
    if period.reason_of_qualification.is_transition() && cands.len() > 1 {
        return Ok(Some(Hold {
            why: "several possible 国保 enrollments, one of them flagged: registration withheld until resolved (R3/R4)"
                .into(),
            candidates: keys,
        }));
    }
    if period.qualification_date > as_of {
        return Ok(Some(Hold {
            why: format!(
                "future-dated registration (QualificationDate {}) lacks a protective flag that the matched 国保 enrollment or hand-off holds: withheld until the flag is set here or released there (R4)",
                period.qualification_date
            ),
            candidates: flagged,
        }));
    }
    Ok(None)
}

/// R13: a future-dated transition registration that nothing matched and whose inquiry the 国保
/// side has not answered yet (the caller checked that it is open and lacks a protective flag).
fn inquiry_hold(e: &Enrollment, as_of: Date) -> Option<Hold> {
    let p = e.current_period()?;
    (p.reason_of_qualification.is_transition() && p.qualification_date > as_of).then(|| Hold {
        why: "future-dated registration that no 国保 enrollment or hand-off matches: withheld until the 国保 side answers its inquiry (R13)".into(),
        candidates: Vec::new(),
    })
}
