//! Applying a run's records to the ledger state: events per subscriber in two waves (everything
//! but 後期 first, then 後期, so that a carry sees the 国保 state after this run), carry resolution
//! between the waves (R3), hand-off matching in both directions, R5 and storage.

use super::apply::*;
use super::state::*;
use crate::domain::*;
use crate::error::{Diagnostic, ErrorCode};
use crate::formats::linkage::{FlagRow, FukuhonRow};
use crate::ledger::{self, StoredHandoff};
use anyhow::Result;
use rayon::prelude::*;
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub type SubKey = (InsurerNumber, SubscriberKey);

/// Everything the publisher and the report need from the apply phase.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Subscribers written to the linkage (touched), with their state before the run.
    pub touched: BTreeMap<SubKey, Option<Enrollment>>,
    pub after: BTreeMap<SubKey, Enrollment>,
    pub engine_rejects: Vec<(Diagnostic, bool)>,
    pub carries: Vec<CarryDone>,
    /// (subscriber, candidates, why)
    pub review: Vec<(SubKey, Vec<SubKey>, String)>,
    /// Transition registrations not published: ambiguous match with a flagged candidate.
    pub withheld: Vec<SubKey>,
    /// R5 rows: (new enrollment, other enrollment, flags there, note)
    pub flag_confirmation: Vec<(SubKey, SubKey, Vec<FlagType>, String)>,
    pub fukuhon_rows: Vec<FukuhonRow>,
    pub flag_rows: Vec<FlagRow>,
    pub pending_applied: usize,
    pub events_applied: u64,
    pub handoffs_received: u64,
    pub handoffs_matched: u64,
}

/// The FlagLinkage row of a changed InfoCode-scoped flag: set (with its reason and time) or
/// released (stamped with the time of the flag that was released).
pub fn flag_row(
    insurer: InsurerNumber,
    key: Option<SubscriberKey>,
    info_code: InfoCode,
    flag_type: FlagType,
    before: Option<&Flag>,
    after: Option<&Flag>,
) -> FlagRow {
    let (set, reason, effective_time) = match (after, before) {
        (Some(a), _) => (true, a.reason, a.effective_time),
        (None, Some(b)) => (false, None, b.effective_time),
        (None, None) => unreachable!("flag_diff yields only changed flags"),
    };
    FlagRow {
        insurer,
        key,
        info_code,
        flag_type,
        set,
        reason,
        effective_time,
    }
}

/// Ledger tables that were empty when the run started: lookups in them are skipped (a full load
/// into a new ledger would otherwise spend most of its time on queries that cannot find anything).
#[derive(Clone, Copy, Debug)]
struct Empty {
    enrollment: bool,
    pending: bool,
    handoff: bool,
    fukuhon: bool,
}

impl Empty {
    fn probe(conn: &Connection) -> Result<Empty> {
        let none = |t: &str| -> Result<bool> {
            Ok(conn.query_row(&format!("SELECT NOT EXISTS (SELECT 1 FROM {t})"), [], |r| r.get(0))?)
        };
        Ok(Empty {
            enrollment: none("enrollment")?,
            pending: none("pending_flag")?,
            handoff: none("handoff")?,
            fukuhon: none("fukuhon")?,
        })
    }
}

/// What is kept of a [`Work`] after it is applied (not its events).
struct Meta {
    insurer: InsurerNumber,
    key: SubscriberKey,
    before: Option<Enrollment>,
}

impl Meta {
    fn of(w: &Work) -> Meta {
        Meta {
            insurer: w.insurer,
            key: w.key,
            before: w.before.clone(),
        }
    }
}

/// A run's input: records of the applied files in R1 file order.
pub struct Batch {
    pub files: Vec<(Arc<str>, Vec<Record>)>,
}

fn person_of_change(c: &SubscriberChange) -> Option<PersonKey> {
    Some(PersonKey {
        individual_number: c.individual_number,
        municipality: c.municipality,
        resident: c.resident.clone(),
        birthdate: c.birthdate?,
    })
}

fn stored_handoff(h: &AgeTransitionHandoff, origin: String) -> StoredHandoff {
    StoredHandoff {
        source_insurer: h.source_insurer,
        source_key: h.source_key,
        person: PersonKey {
            individual_number: h.individual_number,
            municipality: Some(h.municipality),
            resident: Some(h.resident.clone()),
            birthdate: h.birthdate,
        },
        transition_date: h.transition_date,
        self_info: h.self_info,
        non_disclosure: h.non_disclosure,
        auto_response: h.auto_response,
        flag_set_time: h.flag_set_time,
        origin,
        matched: None,
    }
}

/// Index of in-memory enrollments by person key parts.
#[derive(Default)]
struct PersonIndex {
    by_mn: HashMap<IndividualNumber, Vec<SubKey>>,
    by_res: HashMap<(MunicipalityCode, ResidentCode, Date), Vec<SubKey>>,
}

impl PersonIndex {
    fn add(&mut self, e: &Enrollment) {
        let k = (e.insurer, e.key);
        if let Some(mn) = e.individual_number {
            self.by_mn.entry(mn).or_default().push(k);
        }
        if let (Some(m), Some(r)) = (e.municipality, e.resident.clone()) {
            self.by_res.entry((m, r, e.birthdate)).or_default().push(k);
        }
    }
    fn find(&self, p: &PersonKey) -> Vec<SubKey> {
        let mut v = Vec::new();
        if let Some(mn) = p.individual_number {
            v.extend(self.by_mn.get(&mn).into_iter().flatten().copied());
        }
        if let (Some(m), Some(r)) = (p.municipality, p.resident.clone()) {
            v.extend(self.by_res.get(&(m, r, p.birthdate)).into_iter().flatten().copied());
        }
        v
    }
}

/// Enrollments matching `person` (R3 rule), from memory first, then the ledger. `filter` selects insurers.
fn matching_enrollments(
    conn: &Connection,
    empty: Empty,
    person: &PersonKey,
    mem: &BTreeMap<SubKey, Enrollment>,
    idx: &PersonIndex,
    filter: impl Fn(InsurerNumber) -> bool,
) -> Result<Vec<(Enrollment, MatchRule)>> {
    let mut keys = if empty.enrollment {
        Vec::new()
    } else {
        ledger::find_person(conn, person)?
    };
    keys.extend(idx.find(person));
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys.into_iter().filter(|k| filter(k.0)) {
        let e = match mem.get(&k) {
            Some(e) => Some(e.clone()),
            None => ledger::load_enrollment(conn, k.0, k.1)?,
        };
        if let Some(e) = e.filter(|e| e.status != Status::Cancelled) {
            if let Some(rule) = person.matches(&e.person()) {
                out.push((e, rule));
            }
        }
    }
    Ok(out)
}

struct Resolution {
    carry: Option<Carry>,
    any_flagged: bool,
    handoffs_used: Vec<SubKey>,
}

/// R3: which 国保 enrollment (ledger) or hand-off is this person's, and what it carries.
fn resolve_carry(
    conn: &Connection,
    empty: Empty,
    person: &PersonKey,
    wave1: &BTreeMap<SubKey, Enrollment>,
    idx: &PersonIndex,
    run_handoffs: &BTreeMap<SubKey, StoredHandoff>,
) -> Result<Resolution> {
    let mut cands: BTreeMap<SubKey, CarrySource> = BTreeMap::new();
    for (e, rule) in matching_enrollments(conn, empty, person, wave1, idx, |i| i.is_kokuho())? {
        cands.insert(
            (e.insurer, e.key),
            CarrySource {
                from: (e.insurer, e.key),
                rule,
                via: "ledger",
                self_info: e.self_info_reason(),
                non_disclosure: e.flag(FlagType::NonDisclosure).is_some(),
                auto_response: e.flag(FlagType::AutoResponseProhibited).is_some(),
                set_time: e.flags.values().map(|f| f.effective_time).min(),
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
        if person.matches(&h.person).is_some() {
            hs.insert(*k, h.clone());
        }
    }
    let mut handoffs_used = Vec::new();
    for (k, h) in hs {
        let Some(rule) = person.matches(&h.person) else {
            continue;
        };
        handoffs_used.push(k);
        let c = cands.entry(k).or_insert(CarrySource {
            from: k,
            rule,
            via: "handoff",
            self_info: None,
            non_disclosure: false,
            auto_response: false,
            set_time: h.flag_set_time,
        });
        // union of what the ledger and the hand-off say: the carry never weakens a protection
        c.self_info = c.self_info.or(h.self_info);
        c.non_disclosure |= h.non_disclosure;
        c.auto_response |= h.auto_response;
        c.set_time = match (c.set_time, h.flag_set_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if c.via == "ledger" {
            c.via = "ledger+handoff";
        }
    }
    let any_flagged = cands.values().any(|c| c.self_info.is_some() || c.non_disclosure);
    let carry = match cands.len() {
        0 => None,
        1 => {
            let c = cands.into_values().next().expect("one");
            (c.self_info.is_some() || c.non_disclosure || c.auto_response).then_some(Carry::Flags(c))
        }
        _ => Some(Carry::Ambiguous(cands.into_keys().collect())),
    };
    Ok(Resolution {
        carry,
        any_flagged,
        handoffs_used,
    })
}

/// Applies the batch to the state held in `conn` (inside the run's transaction) and stores it.
pub fn apply_batch(conn: &Connection, run_id: &str, batch: Batch) -> Result<BatchOutcome> {
    let mut out = BatchOutcome::default();
    let empty = Empty::probe(conn)?;
    let mut subs: BTreeMap<SubKey, Vec<Event>> = BTreeMap::new();
    let mut scope2: BTreeMap<InsurerNumber, Vec<(Event, FlagChange)>> = BTreeMap::new();
    let mut run_handoffs: BTreeMap<SubKey, StoredHandoff> = BTreeMap::new();
    for (fo, (name, records)) in batch.files.into_iter().enumerate() {
        for rec in records {
            let ev = |date, seq, kind| Event {
                date,
                file_order: fo as u32,
                seq,
                file: name.clone(),
                kind,
            };
            match rec {
                Record::SubscriberChange(c) => {
                    subs.entry((c.insurer, c.key))
                        .or_default()
                        .push(ev(c.effective_date, c.seq, EventKind::Change(c)));
                }
                Record::FlagChange(f) => match f.key {
                    Some(k) if f.scope == FlagScope::Subscriber => {
                        subs.entry((f.insurer, k)).or_default().push(ev(
                            f.effective_time.date(),
                            f.seq,
                            EventKind::Flag(f),
                        ));
                    }
                    _ => scope2
                        .entry(f.insurer)
                        .or_default()
                        .push((ev(f.effective_time.date(), f.seq, EventKind::Flag(f.clone())), f)),
                },
                Record::Fukuhon(f) => {
                    subs.entry((f.insurer, f.key)).or_default().push(ev(
                        f.effective_date,
                        f.seq,
                        EventKind::Fukuhon(f),
                    ));
                }
                Record::AgeTransitionHandoff(h) => {
                    out.handoffs_received += 1;
                    // a later file's hand-off for the same 国保 subscriber replaces an earlier one
                    run_handoffs.insert(
                        (h.source_insurer, h.source_key),
                        stored_handoff(&h, format!("{name}#{}", h.seq)),
                    );
                }
            }
        }
    }

    // Insurer-wide InfoCode flags (Scope 2), in R1 order.
    let mut insurer_flags: HashMap<InsurerNumber, Arc<BTreeMap<(InfoCode, FlagType), Flag>>> = HashMap::new();
    for (ins, mut evs) in scope2 {
        evs.sort_by_key(|(e, _)| e.order_key());
        let mut flags = ledger::load_insurer_flags(conn, ins)?;
        let before = flags.clone();
        for (ev, f) in evs {
            let info = f.info_code.expect("Scope 2 has an InfoCode");
            match f.operation {
                FlagOperation::Set => {
                    flags.insert(
                        (info, f.flag_type),
                        Flag {
                            reason: f.reason,
                            source: f.source,
                            effective_time: f.effective_time,
                            support_measure_end: f.support_measure_end,
                            origin: ev.origin(),
                        },
                    );
                }
                FlagOperation::Release => {
                    if flags.remove(&(info, f.flag_type)).is_none() {
                        out.engine_rejects.push((
                            Diagnostic::new(
                                &*ev.file,
                                ErrorCode::StateConflict,
                                format!(
                                    "{} for {info} is not set for this insurer; nothing to release",
                                    f.flag_type.name_en()
                                ),
                            )
                            .seq(ev.seq)
                            .field("Operation"),
                            true,
                        ));
                        continue;
                    }
                }
            }
            out.events_applied += 1;
            ledger::journal(
                conn,
                run_id,
                Some(&ev.file),
                Some(ev.seq),
                None,
                "insurer_flag",
                &format!("{ins} {info} {} op {}", f.flag_type.name_en(), f.operation.code()),
            )?;
        }
        for (k, b, a) in flag_diff(&before, &flags) {
            out.flag_rows.push(flag_row(ins, None, k.0, k.1, b, a));
        }
        ledger::store_insurer_flags(conn, ins, &flags)?;
        insurer_flags.insert(ins, Arc::new(flags));
    }

    // Load what each subscriber needs (indexed lookups only).
    let mut works = Vec::with_capacity(subs.len());
    for ((ins, key), events) in subs {
        let before = if empty.enrollment {
            None
        } else {
            ledger::load_enrollment(conn, ins, key)?
        };
        let pending = if before.is_none() {
            if empty.pending {
                Vec::new()
            } else {
                ledger::take_pending_flags(conn, ins, key)?
            }
        } else {
            Vec::new()
        };
        let mut fukuhon_before = BTreeMap::new();
        for e in &events {
            if let EventKind::Fukuhon(f) = &e.kind {
                let stored = if empty.fukuhon {
                    None
                } else {
                    ledger::load_fukuhon(conn, ins, key, f.info_code)?
                };
                if let Some(s) = stored {
                    fukuhon_before.insert(f.info_code, s);
                }
            }
        }
        let iflags = match insurer_flags.get(&ins) {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(ledger::load_insurer_flags(conn, ins)?);
                insurer_flags.insert(ins, f.clone());
                f
            }
        };
        works.push(Work {
            insurer: ins,
            key,
            before,
            events,
            pending,
            fukuhon_before,
            insurer_flags: iflags,
            carry: None,
        });
    }
    tracing::debug!(subscribers = works.len(), "loaded from the ledger");
    let (mut wave2, wave1): (Vec<Work>, Vec<Work>) = works.into_iter().partition(|w| w.insurer.is_kouki());

    // Wave 1: everything but 後期, in parallel.
    let outcomes1: Vec<(Meta, Outcome)> = wave1.into_par_iter().map(|w| (Meta::of(&w), apply(w))).collect();
    let mut mem: BTreeMap<SubKey, Enrollment> = BTreeMap::new();
    let mut idx = PersonIndex::default();
    for (_, o) in &outcomes1 {
        if let Some(e) = &o.after {
            idx.add(e);
            mem.insert((e.insurer, e.key), e.clone());
        }
    }

    // Carry resolution for 後期 transition acquisitions (sequential: ledger lookups).
    let mut used_handoffs: BTreeMap<SubKey, SubKey> = BTreeMap::new();
    let mut any_flagged: BTreeMap<SubKey, bool> = BTreeMap::new();
    for w in &mut wave2 {
        let mut acq = w.events.iter().filter_map(|e| match &e.kind {
            EventKind::Change(c)
                if c.change_type == ChangeType::Acquisition
                    && c.reason_of_qualification.is_some_and(|r| r.is_transition()) =>
            {
                Some(c)
            }
            _ => None,
        });
        if let Some(person) = acq.next_back().and_then(person_of_change) {
            let r = resolve_carry(conn, empty, &person, &mem, &idx, &run_handoffs)?;
            if matches!(r.carry, Some(Carry::Flags(_))) {
                for h in r.handoffs_used {
                    used_handoffs.insert(h, (w.insurer, w.key));
                }
            }
            any_flagged.insert((w.insurer, w.key), r.any_flagged);
            w.carry = r.carry;
        }
    }

    // Wave 2: 後期, in parallel.
    let outcomes2: Vec<(Meta, Outcome)> = wave2.into_par_iter().map(|w| (Meta::of(&w), apply(w))).collect();
    let mut idx2 = PersonIndex::default();
    let mut mem2: BTreeMap<SubKey, Enrollment> = BTreeMap::new();
    for (_, o) in &outcomes2 {
        if let Some(e) = &o.after {
            idx2.add(e);
            mem2.insert((e.insurer, e.key), e.clone());
        }
    }

    let mut acquisitions: Vec<(SubKey, SubscriberChange, bool)> = Vec::new();
    for (w, o) in outcomes1.into_iter().chain(outcomes2) {
        let k = (w.insurer, w.key);
        for pf in &o.pending {
            ledger::insert_pending_flag(conn, pf, run_id)?;
        }
        out.pending_applied += o.pending_applied;
        out.engine_rejects.extend(o.rejects.iter().cloned());
        for (file, seq, ev, detail) in &o.journal {
            ledger::journal(conn, run_id, Some(file), Some(*seq), Some(k), ev, detail)?;
        }
        out.events_applied += o
            .journal
            .iter()
            .filter(|j| j.2 != "flag_pending" && j.2 != "carry")
            .count() as u64;
        let carried = !o.carries.is_empty();
        out.carries.extend(o.carries.iter().cloned());
        if let Some(c) = &o.ambiguous {
            let flagged = any_flagged.get(&k).copied().unwrap_or(false);
            let lacks = o.after.as_ref().is_some_and(|e| !e.has_protective_flag());
            let why = if flagged && lacks {
                out.withheld.push(k);
                "several possible 国保 enrollments, one of them flagged: registration withheld until resolved"
                    .to_owned()
            } else {
                "several possible 国保 enrollments: no carry".to_owned()
            };
            out.review.push((k, c.clone(), why));
        }
        for c in &o.acquisitions {
            acquisitions.push((k, c.clone(), carried || o.ambiguous.is_some()));
        }
        for (info, (_, f)) in &o.fukuhon {
            out.fukuhon_rows.push(FukuhonRow {
                operation: f.operation,
                effective_date: f.effective_date,
                insurer: w.insurer,
                key: w.key,
                info_code: *info,
                disclosure: f.disclosure,
                items: f.items.clone(),
            });
            let next = match f.operation {
                FukuhonOperation::Delete => None,
                _ => Some(ledger::StoredFukuhon {
                    effective_date: f.effective_date,
                    disclosure: f.disclosure,
                    items: f.items.clone(),
                    origin: format!("run {run_id}"),
                }),
            };
            ledger::store_fukuhon(conn, w.insurer, w.key, *info, next.as_ref())?;
        }
        if o.touched {
            let after = o.after.clone().expect("touched means enrolled");
            out.touched.insert(k, w.before.clone());
            out.after.insert(k, after);
        }
    }

    // Hand-offs not consumed by a registration of this run: match registrations already held.
    for (hk, mut h) in run_handoffs {
        if let Some(to) = used_handoffs.get(&hk) {
            h.matched = Some(*to);
            out.handoffs_matched += 1;
            ledger::upsert_handoff(conn, &h)?;
            continue;
        }
        let regs: Vec<(Enrollment, MatchRule)> =
            matching_enrollments(conn, empty, &h.person, &mem2, &idx2, |i| i.is_kouki())?
                .into_iter()
                .filter(|(e, _)| {
                    e.current_period()
                        .is_some_and(|p| p.reason_of_qualification.is_transition())
                })
                .collect();
        match regs.len() {
            0 => {}
            1 => {
                let (e, rule) = regs.into_iter().next().expect("one");
                let k = (e.insurer, e.key);
                let before = out.touched.get(&k).cloned().unwrap_or_else(|| Some(e.clone()));
                let mut after = out.after.get(&k).cloned().unwrap_or(e);
                let time = h
                    .flag_set_time
                    .unwrap_or_else(|| Timestamp::start_of(h.transition_date));
                let carried = carry_onto(&mut after, h.self_info, h.non_disclosure, time, hk);
                let src = CarrySource {
                    from: hk,
                    rule,
                    via: "handoff",
                    self_info: h.self_info,
                    non_disclosure: h.non_disclosure,
                    auto_response: h.auto_response,
                    set_time: h.flag_set_time,
                };
                ledger::journal(
                    conn,
                    run_id,
                    Some(h.origin.split('#').next().unwrap_or("")),
                    None,
                    Some(k),
                    "carry",
                    &format!("flags carried from {}/{} (handoff after registration)", hk.0, hk.1),
                )?;
                out.carries.push(CarryDone {
                    source: src,
                    to: k,
                    qualification_date: after
                        .current_period()
                        .map(|p| p.qualification_date)
                        .expect("has a period"),
                    flags: carried.clone(),
                });
                if !carried.is_empty() {
                    out.touched.insert(k, before);
                    out.after.insert(k, after);
                }
                h.matched = Some(k);
                out.handoffs_matched += 1;
            }
            _ => out.review.push((
                hk,
                regs.iter().map(|(e, _)| (e.insurer, e.key)).collect(),
                "hand-off matches several 後期 registrations: no carry".into(),
            )),
        }
        ledger::upsert_handoff(conn, &h)?;
    }

    // R5: any other new enrollment of a person flagged elsewhere goes to flag confirmation.
    let mut all_mem = mem;
    all_mem.extend(mem2);
    let mut all_idx = idx;
    for e in all_mem.values().filter(|e| e.insurer.is_kouki()) {
        all_idx.add(e);
    }
    for (k, c, carried_or_ambiguous) in acquisitions {
        let Some(person) = person_of_change(&c) else { continue };
        if carried_or_ambiguous {
            if let Some(cd) = out
                .carries
                .iter()
                .find(|cd| cd.to == k)
                .filter(|cd| cd.source.auto_response)
            {
                out.flag_confirmation.push((
                    k,
                    cd.source.from,
                    vec![FlagType::AutoResponseProhibited],
                    "自動応答不可 at the previous insurer is not carried: confirm with the person".into(),
                ));
            }
            continue;
        }
        let own = out.after.get(&k);
        for (e, _) in matching_enrollments(conn, empty, &person, &all_mem, &all_idx, |i| i != k.0)? {
            // only protections this enrollment lacks need a person's decision
            let flags: Vec<FlagType> = [
                FlagType::SelfInfoProvisionProhibited,
                FlagType::NonDisclosure,
                FlagType::AutoResponseProhibited,
            ]
            .into_iter()
            .filter(|t| e.flag(*t).is_some() && own.is_none_or(|o| o.flag(*t).is_none()))
            .collect();
            if flags.iter().any(|t| t.is_protective()) {
                out.flag_confirmation.push((
                    k,
                    (e.insurer, e.key),
                    flags,
                    "new enrollment of a person flagged at another insurer: ask the person and set the flags if needed"
                        .into(),
                ));
            }
        }
    }

    // Store the after-states. `published` is provisional: the writer clears it for groups it refuses.
    for (k, e) in &out.after {
        let mut e = e.clone();
        e.published = match e.status {
            Status::Cancelled => false,
            _ if out.withheld.contains(k) => e.published,
            _ => true,
        };
        ledger::store_enrollment(conn, &e, out.touched.get(k).is_some_and(|b| b.is_some()))?;
    }
    Ok(out)
}
