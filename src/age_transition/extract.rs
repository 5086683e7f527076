//! R8, 国保 side: the age-transition hand-off extract and the "missed" check.

use crate::domain::person::{Enrollment, Status};
use crate::domain::{Date, FlagType, InsurerNumber, ReasonOfQualification, SubscriberKey};
use crate::ledger;
use anyhow::Result;
use rusqlite::Connection;
use std::collections::BTreeMap;

/// A flagged 国保 member whose 後期 acquisition date falls in the window.
#[derive(Clone, Debug)]
pub struct Upcoming {
    pub enrollment: Enrollment,
    pub acquisition_date: Date,
}

/// A flagged 国保 member past the acquisition date whose 後期 enrollment lacks the flags or is missing.
#[derive(Clone, Debug)]
pub struct Missed {
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub acquisition_date: Date,
    /// `no 後期 enrollment found` or `後期 enrollment <ins>/<key> lacks …`
    pub finding: String,
}

#[derive(Debug, Default)]
pub struct Extract {
    pub upcoming: Vec<Upcoming>,
    pub missed: Vec<Missed>,
    /// Flagged members skipped because a 後期 enrollment by disability certification exists.
    pub already_kouki: Vec<(InsurerNumber, SubscriberKey)>,
}

/// Flagged 国保 enrollments (自己情報提供不可 or 不開示該当 on the whole subscriber).
fn flagged_kokuho(conn: &Connection) -> Result<Vec<Enrollment>> {
    let mut out = Vec::new();
    for (i, k) in ledger::flagged_kokuho_keys(conn)? {
        if let Some(e) = ledger::load_enrollment(conn, i, k)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// 後期 enrollments of the same person (R3 matching rule).
fn kouki_of(conn: &Connection, e: &Enrollment) -> Result<Vec<Enrollment>> {
    let person = e.person();
    let mut out = Vec::new();
    for (i, k) in ledger::find_person(conn, &person)? {
        if !i.is_kouki() {
            continue;
        }
        if let Some(u) = ledger::load_enrollment(conn, i, k)? {
            if u.status != Status::Cancelled && person.matches(&u.person()).is_some() {
                out.push(u);
            }
        }
    }
    Ok(out)
}

/// Computes the extract for as-of `d` and lead `lead_months`. The missed check lists every
/// flagged member with A ≤ D however long ago A was (R8); `lookback_months` narrows it to
/// A > D − lookback months.
pub fn extract(conn: &Connection, d: Date, lead_months: u32, lookback_months: Option<u32>) -> Result<Extract> {
    let mut x = Extract::default();
    let window_end = d.add_months(lead_months);
    let lookback_start = lookback_months.and_then(|n| missed_window_start(d, n));
    for e in flagged_kokuho(conn)? {
        let a = e.birthdate.kouki_acquisition_date();
        if d < a && a <= window_end {
            if !e.active_on(d) {
                continue;
            }
            // already in 後期 through disability certification: nothing to hand over again
            let kouki = kouki_of(conn, &e)?;
            if kouki.iter().any(|u| {
                u.active_on(d)
                    && u.current_period()
                        .is_some_and(|p| p.reason_of_qualification == ReasonOfQualification::DisabilityCertified)
            }) {
                x.already_kouki.push((e.insurer, e.key));
                continue;
            }
            x.upcoming.push(Upcoming {
                enrollment: e,
                acquisition_date: a,
            });
        } else if a <= d && lookback_start.is_none_or(|s| a > s) && e.active_on(a.pred()) {
            let kouki = kouki_of(conn, &e)?;
            let finding = match kouki
                .iter()
                .find(|u| u.periods.iter().any(|p| p.qualification_date <= a.succ()))
            {
                None if kouki.is_empty() => Some("no 後期 enrollment found for this person".to_owned()),
                None => Some(format!(
                    "後期 enrollment {}/{} starts after the acquisition date",
                    kouki[0].insurer, kouki[0].key
                )),
                Some(u) => {
                    let mut lacks = Vec::new();
                    if e.flag(FlagType::SelfInfoProvisionProhibited).is_some()
                        && u.flag(FlagType::SelfInfoProvisionProhibited).is_none()
                    {
                        lacks.push("SelfInfoProvisionProhibited");
                    }
                    if e.flag(FlagType::NonDisclosure).is_some() && u.flag(FlagType::NonDisclosure).is_none() {
                        lacks.push("NonDisclosure");
                    }
                    (!lacks.is_empty())
                        .then(|| format!("後期 enrollment {}/{} lacks {}", u.insurer, u.key, lacks.join(" and ")))
                }
            };
            if let Some(finding) = finding {
                x.missed.push(Missed {
                    insurer: e.insurer,
                    key: e.key,
                    acquisition_date: a,
                    finding,
                });
            }
        }
    }
    x.upcoming
        .sort_by_key(|u| (u.enrollment.insurer, u.acquisition_date, u.enrollment.key));
    Ok(x)
}

/// The day before a narrowed missed window: D − `months` months (month end clamped); the missed
/// check then lists acquisition dates after it. `None` when that is before the calendar's start
/// (no narrowing at all).
pub fn missed_window_start(d: Date, months: u32) -> Option<Date> {
    d.0.checked_sub_months(chrono::Months::new(months)).map(Date)
}

/// Upcoming transitions per month of acquisition (`YYYYMM` → count).
pub fn per_month(up: &[Upcoming]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for u in up {
        *m.entry(u.acquisition_date.to_string()[..6].to_owned()).or_insert(0) += 1;
    }
    m
}
