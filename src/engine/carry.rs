//! R3: which 国保 enrollment or hand-off a 後期 transition registration is the person's, and
//! what it carries ([`resolve_carry`]): at the registration's acquisition ([`super::batch`]) and
//! for the late carries after both waves ([`super::late`]).

use super::apply::{Carry, CarrySource};
use crate::domain::person::{CarryVia, Enrollment, MatchRule, PersonKey, Status};
use crate::domain::{FlagType, InfoCode, InsurerNumber, SubKey};
use crate::ledger::{self, EmptyTables, StoredHandoff};
use anyhow::Result;
use rusqlite::Connection;
use std::collections::BTreeMap;

/// Enrollments in the ledger (which holds this run's stored waves) that share an index key with
/// `person`, each with the R3 rule that matches it (None: it shares a key but is not the same
/// person by R3, e.g. both My Numbers present and different). `lookup` false: the ledger holds no
/// enrollment at all. `filter` selects insurers. Cancelled enrollments are left out.
pub(crate) fn person_candidates(
    conn: &Connection,
    lookup: bool,
    person: &PersonKey,
    filter: impl Fn(InsurerNumber) -> bool,
) -> Result<Vec<(Enrollment, Option<MatchRule>)>> {
    if !lookup {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for k in ledger::find_person(conn, person)?.into_iter().filter(|k| filter(k.0)) {
        if let Some(e) = ledger::load_enrollment(conn, k.0, k.1)?.filter(|e| e.status != Status::Cancelled) {
            let rule = person.matches(&e.person());
            out.push((e, rule));
        }
    }
    Ok(out)
}

/// Enrollments in the ledger matching `person` by the R3 rule (see [`person_candidates`]).
pub(super) fn matching_enrollments(
    conn: &Connection,
    lookup: bool,
    person: &PersonKey,
    filter: impl Fn(InsurerNumber) -> bool,
) -> Result<Vec<(Enrollment, MatchRule)>> {
    Ok(person_candidates(conn, lookup, person, filter)?
        .into_iter()
        .filter_map(|(e, r)| Some((e, r?)))
        .collect())
}

pub(super) struct Resolution {
    /// 国保 enrollments and hand-offs matching the person (0: R13 inquiry).
    pub(super) candidates: usize,
    pub(super) carry: Option<Carry>,
    pub(super) any_flagged: bool,
    /// Some candidate states 自己情報提供不可 / 不開示該当.
    pub(super) flagged_si: bool,
    pub(super) flagged_nd: bool,
    pub(super) handoffs_used: Vec<SubKey>,
    /// Matched 国保 enrollments' protective flags narrowed to one InfoCode: never carried, the
    /// person goes to flag confirmation (R3).
    pub(super) narrowed: Vec<(SubKey, InfoCode, FlagType)>,
    /// Flagged 国保 enrollments or hand-offs that match on (municipality, 宛名番号, birthdate)
    /// while the My Numbers differ: no carry, critical review (R3).
    pub(super) mismatched: Vec<SubKey>,
}

/// R3: which 国保 enrollment (ledger, after this run's first wave) or hand-off is this person's,
/// and what it carries.
pub(super) fn resolve_carry(
    conn: &Connection,
    lookup: bool,
    empty: EmptyTables,
    person: &PersonKey,
    run_handoffs: &BTreeMap<SubKey, StoredHandoff>,
) -> Result<Resolution> {
    let mut cands: BTreeMap<SubKey, CarrySource> = BTreeMap::new();
    let mut narrowed = Vec::new();
    let mut mismatched = Vec::new();
    for (e, rule) in person_candidates(conn, lookup, person, |i| i.is_kokuho())? {
        let Some(rule) = rule else {
            if e.has_protective_flag() && person.resident_match_only(&e.person()) {
                mismatched.push((e.insurer, e.key));
            }
            continue;
        };
        for (info, t) in e.flags.keys() {
            if let (Some(info), true) = (info, t.is_protective()) {
                narrowed.push(((e.insurer, e.key), *info, *t));
            }
        }
        cands.insert(
            (e.insurer, e.key),
            CarrySource {
                from: (e.insurer, e.key),
                rule,
                via: CarryVia::Ledger,
                self_info: e.self_info_reason(),
                non_disclosure: e.flag(FlagType::NonDisclosure).is_some(),
                auto_response: e.flag(FlagType::AutoResponseProhibited).is_some(),
                set_time: e.flags.values().map(|f| f.effective_time).min(),
                flag_times: [FlagType::SelfInfoProvisionProhibited, FlagType::NonDisclosure]
                    .into_iter()
                    .filter_map(|t| Some((t, e.flag(t)?.effective_time)))
                    .collect(),
            },
        );
    }
    let mut hs: BTreeMap<SubKey, StoredHandoff> = (if empty.handoff {
        Vec::new()
    } else {
        ledger::find_handoffs(conn, person)?
    })
    .into_iter()
    .map(|h| ((h.source_insurer, h.source_key), h))
    .collect();
    for (k, h) in run_handoffs {
        if person.matches(&h.person).is_some() || person.resident_match_only(&h.person) {
            hs.insert(*k, h.clone());
        }
    }
    let mut handoffs_used = Vec::new();
    for (k, h) in hs {
        let Some(rule) = person.matches(&h.person) else {
            if (h.self_info.is_some() || h.non_disclosure) && person.resident_match_only(&h.person) {
                mismatched.push(k);
            }
            continue;
        };
        handoffs_used.push(k);
        let c = cands.entry(k).or_insert(CarrySource {
            from: k,
            rule,
            via: CarryVia::Handoff,
            self_info: None,
            non_disclosure: false,
            auto_response: false,
            set_time: h.flag_set_time,
            flag_times: BTreeMap::new(),
        });
        // union of what the ledger and the hand-off say: the carry never weakens a protection
        c.self_info = c.self_info.or(h.self_info);
        c.non_disclosure |= h.non_disclosure;
        c.auto_response |= h.auto_response;
        c.set_time = match (c.set_time, h.flag_set_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if c.via == CarryVia::Ledger {
            c.via = CarryVia::LedgerAndHandoff;
        }
    }
    mismatched.sort();
    mismatched.dedup();
    let flagged_si = cands.values().any(|c| c.self_info.is_some());
    let flagged_nd = cands.values().any(|c| c.non_disclosure);
    let any_flagged = flagged_si || flagged_nd;
    let candidates = cands.len();
    let carry = match cands.len() {
        0 => None,
        1 => {
            let c = cands.into_values().next().expect("one");
            (c.self_info.is_some() || c.non_disclosure || c.auto_response).then_some(Carry::Flags(c))
        }
        _ => Some(Carry::Ambiguous(cands.into_keys().collect())),
    };
    Ok(Resolution {
        candidates,
        carry,
        any_flagged,
        flagged_si,
        flagged_nd,
        handoffs_used,
        narrowed,
        mismatched,
    })
}
