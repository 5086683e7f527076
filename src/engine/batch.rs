//! Applying a run's records to the ledger state: events per subscriber in two waves (everything
//! but 後期 first, then 後期, so that a carry sees the 国保 state after this run), carry resolution
//! before each 後期 subscriber is applied (R3), hand-off matching in both directions, R5 and
//! storage.
//!
//! Memory is bounded by the chunk, not the load: records come from a [`Spool`] bucket by bucket
//! (all events of a subscriber are in one bucket), each bucket is applied in parallel and stored
//! at once inside the run's transaction, and what the publisher needs later (pre-run state of
//! touched subscribers, 副本 changes, acquisitions for R5) goes to the scratch tables
//! ([`ledger::scratch`]). Cross-subscriber steps (carry resolution, late hand-off matching, R5)
//! read the ledger, which by then holds this run's earlier waves. Everything kept in memory is
//! proportional to exceptions (rejects, carries, reviews), never to the input.

use super::apply::{
    Carry, CarryDone, CarrySource, Event, EventKind, FlagStep, Outcome, Work, apply, carry_onto, step_flag,
};
use super::spool::{Spool, Wave};
use crate::domain::person::{Enrollment, Flag, FlagKey, InsurerFlags, MatchRule, PersonKey, Status, flag_diff};
use crate::domain::{
    AgeTransitionHandoff, ChangeType, Date, FlagChange, FlagType, FukuhonOperation, IndividualNumber, InfoCode,
    InsurerNumber, MunicipalityCode, Record, ResidentCode, SubscriberChange, SubscriberKey, Timestamp,
};
use crate::error::{Diagnostic, ErrorCode};
use crate::formats::FileHeader;
use crate::formats::linkage::FlagRow;
use crate::ledger::{self, EmptyTables, JournalEvent, StoredHandoff, scratch};
use anyhow::Result;
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub type SubKey = (InsurerNumber, SubscriberKey);

/// What the publisher and the report need from the apply phase, beyond the scratch tables.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Subscribers touched (written to the linkage unless withheld or never published).
    pub touched: u64,
    pub engine_rejects: Vec<(Diagnostic, bool)>,
    pub carries: Vec<CarryDone>,
    pub review: Vec<ReviewItem>,
    /// R5 rows: (new enrollment, other enrollment, flags there, note)
    pub flag_confirmation: Vec<(SubKey, SubKey, Vec<FlagType>, String)>,
    /// FlagLinkage rows of insurer-wide (Scope 2) flags changed in this run.
    pub flag_rows: Vec<FlagRow>,
    /// Review findings about insurer-wide flags (stale events, R1a): (insurer, why, critical).
    pub insurer_review: Vec<(InsurerNumber, String, bool)>,
    pub pending_applied: usize,
    pub events_applied: u64,
    pub handoffs_received: u64,
    pub handoffs_matched: u64,
    /// Chunks the input was applied in (1 per wave when it fitted in memory).
    pub chunks: u32,
    /// R13: 後期 transition registrations of this run that matched no 国保 enrollment and no
    /// hand-off (zero candidates): inquired by [`super::inquiry`].
    pub unmatched: Vec<SubKey>,
    /// R13: answers about persons the 国保 ledger does not know (empty SourceSubscriberKey):
    /// (origin `file#seq`, person). Not hand-offs: [`super::inquiry`] matches them to inquiries.
    pub unknown_answers: Vec<(String, PersonKey)>,
}

/// A line of the review worklist: a case a person must look at.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewItem {
    pub subscriber: SubKey,
    /// Other enrollments or hand-offs involved (candidates of a match).
    pub candidates: Vec<SubKey>,
    pub why: String,
    /// A protection may be missing at the server until a person acts (withheld groups, stale
    /// releases, mismatched My Numbers).
    pub critical: bool,
}

impl ReviewItem {
    pub fn new(subscriber: SubKey, candidates: Vec<SubKey>, why: impl Into<String>, critical: bool) -> Self {
        ReviewItem {
            subscriber,
            candidates,
            why: why.into(),
            critical,
        }
    }
}

/// The FlagLinkage row of a changed InfoCode-scoped flag: set (with its reason and time) or
/// released (R2: stamped with the release's own EffectiveTime, `release_time`).
pub fn flag_row(
    insurer: InsurerNumber,
    key: Option<SubscriberKey>,
    info_code: InfoCode,
    flag_type: FlagType,
    before: Option<&Flag>,
    after: Option<&Flag>,
    release_time: Option<Timestamp>,
) -> FlagRow {
    let (set, reason, effective_time) = match (after, before) {
        (Some(a), _) => (true, a.reason, a.effective_time),
        (None, Some(b)) => (false, None, release_time.unwrap_or(b.effective_time)),
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

/// What is kept of a [`Work`] after it is applied (not its events).
struct Meta {
    insurer: InsurerNumber,
    key: SubscriberKey,
    before: Option<Enrollment>,
}

/// One input file of the batch: its name and R1 position (`None`: read but not applied — a
/// skipped or rejected file whose records are ignored).
#[derive(Clone, Debug)]
pub struct BatchFile {
    pub name: Arc<str>,
    pub order: Option<u32>,
    /// R1 position across runs, kept with pending flags: see [`BatchFile::r1_key`].
    pub key: Arc<str>,
}

impl BatchFile {
    /// A file's R1 position as a string that sorts like (CreationTime, SenderInsurerNumber,
    /// FileSequence, name), so that pending flags kept from different runs apply in R1 order.
    pub fn r1_key(h: &FileHeader, name: &str) -> Arc<str> {
        Arc::from(format!(
            "{}|{}|{:010}|{name}",
            h.creation_time, h.sender, h.file_sequence
        ))
    }
}

/// A run's input: the files (indexed by the tag their records were spooled with) and the records.
pub struct Batch {
    pub files: Vec<BatchFile>,
    pub spool: Spool,
}

impl Batch {
    /// A batch held in memory, files applied in the order given (tests, small callers).
    pub fn in_memory(files: Vec<(Arc<str>, Vec<Record>)>) -> Result<Batch> {
        Batch::with_spool(files, Spool::in_memory())
    }

    /// Like [`Batch::in_memory`] but into the given spool.
    pub fn with_spool(files: Vec<(Arc<str>, Vec<Record>)>, spool: Spool) -> Result<Batch> {
        let mut out = Vec::new();
        for (i, (name, records)) in files.into_iter().enumerate() {
            for r in records {
                spool.push(i as u32, r)?;
            }
            out.push(BatchFile {
                key: Arc::from(format!("{i:010}|{name}")),
                name,
                order: Some(i as u32),
            });
        }
        Ok(Batch { files: out, spool })
    }
}

fn person_of_change(c: &SubscriberChange) -> Option<PersonKey> {
    Some(PersonKey {
        individual_number: c.individual_number,
        municipality: c.municipality,
        resident: c.resident.clone(),
        birthdate: c.birthdate?,
    })
}

fn stored_handoff(h: &AgeTransitionHandoff, source_key: SubscriberKey, origin: String) -> StoredHandoff {
    StoredHandoff {
        source_insurer: h.source_insurer,
        source_key,
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

/// Index of enrollments by person key parts (R5 over many acquisitions: flagged persons only).
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
        v.sort();
        v.dedup();
        v
    }
}

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
fn matching_enrollments(
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

struct Resolution {
    /// 国保 enrollments and hand-offs matching the person (0: R13 inquiry).
    candidates: usize,
    carry: Option<Carry>,
    any_flagged: bool,
    /// Some candidate states 自己情報提供不可 / 不開示該当.
    flagged_si: bool,
    flagged_nd: bool,
    handoffs_used: Vec<SubKey>,
    /// Matched 国保 enrollments' protective flags narrowed to one InfoCode: never carried, the
    /// person goes to flag confirmation (R3).
    narrowed: Vec<(SubKey, InfoCode, FlagType)>,
    /// Flagged 国保 enrollments or hand-offs that match on (municipality, 宛名番号, birthdate)
    /// while the My Numbers differ: no carry, critical review (R3).
    mismatched: Vec<SubKey>,
}

/// R3: which 国保 enrollment (ledger, after this run's first wave) or hand-off is this person's,
/// and what it carries.
fn resolve_carry(
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
                via: "ledger",
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
            via: "handoff",
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
        if c.via == "ledger" {
            c.via = "ledger+handoff";
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

/// The `published` value stored with an after-state: provisional, as if its group is published
/// by this run (a 取消 deletes the registration at the server). The writer restores the pre-run
/// value for a group it withholds or refuses (R14).
fn stored_published(e: &Enrollment) -> bool {
    e.status != Status::Cancelled
}

/// The rejects (diagnostic, critical?) of one subscriber in one wave.
struct SubscriberRejects {
    wave: Wave,
    key: SubKey,
    rejects: Vec<(Diagnostic, bool)>,
}

/// State carried from bucket to bucket.
struct Applier<'a> {
    conn: &'a Connection,
    run_id: &'a str,
    files: &'a [BatchFile],
    /// Ledger tables that were empty when the run started: lookups in them are skipped (a full
    /// load into a new ledger would otherwise spend most of its time on queries that cannot find
    /// anything).
    empty: EmptyTables,
    /// Whether the ledger may hold enrollments (it did at start, or this run stored some).
    lookup: bool,
    insurer_flags: HashMap<InsurerNumber, Arc<InsurerFlags>>,
    run_handoffs: BTreeMap<SubKey, StoredHandoff>,
    used_handoffs: BTreeMap<SubKey, SubKey>,
    /// Hand-offs among the candidates of an ambiguous resolution in this run.
    ambiguous_handoffs: BTreeSet<SubKey>,
    /// Registrations resolved as ambiguous in this run.
    ambiguous_regs: BTreeSet<SubKey>,
    /// Registrations whose transition acquisition was applied in this run: their carry was
    /// resolved then, against the 国保 state after this run's first wave.
    acquired_regs: BTreeSet<SubKey>,
    out: BatchOutcome,
    /// Sorted at the end so reports do not depend on the buckets.
    rejects: Vec<SubscriberRejects>,
    review: Vec<ReviewItem>,
    /// 国保 persons whose protective flag was newly set in this run (late carries, R3).
    newly_flagged: Vec<PersonKey>,
}

impl Applier<'_> {
    /// Applies one chunk of one wave (whole subscribers, in key order) and stores the results.
    fn bucket(&mut self, wave: Wave, records: Vec<(u32, Record)>) -> Result<()> {
        let conn = self.conn;
        let mut subs: BTreeMap<SubKey, Vec<Event>> = BTreeMap::new();
        for (tag, rec) in records {
            let f = &self.files[tag as usize];
            let Some(order) = f.order else { continue };
            let ev = |date, seq, kind| Event {
                date,
                file_order: order,
                seq,
                file: f.name.clone(),
                file_key: f.key.clone(),
                kind,
            };
            let (k, e) = match rec {
                Record::SubscriberChange(c) => ((c.insurer, c.key), ev(c.effective_date, c.seq, EventKind::Change(c))),
                Record::Fukuhon(x) => ((x.insurer, x.key), ev(x.effective_date, x.seq, EventKind::Fukuhon(x))),
                Record::FlagChange(x) => {
                    let k = (x.insurer, x.key.expect("spooled by subscriber"));
                    (k, ev(x.effective_time.date(), x.seq, EventKind::Flag(x)))
                }
                Record::AgeTransitionHandoff(_) | Record::AgeTransitionInquiry(_) => {
                    unreachable!("hand-offs and inquiries are not spooled by subscriber")
                }
            };
            subs.entry(k).or_default().push(e);
        }
        if subs.is_empty() {
            return Ok(());
        }

        // Load what each subscriber needs (indexed lookups only).
        let mut works = Vec::with_capacity(subs.len());
        for ((ins, key), events) in subs {
            let before = if self.empty.enrollment {
                None
            } else {
                ledger::load_enrollment(conn, ins, key)?
            };
            // flags kept while the subscriber was not enrolled: never, or since a 取消 (R7)
            let enrolled = before.as_ref().is_some_and(|b| b.status != Status::Cancelled);
            let pending = if !enrolled && !self.empty.pending {
                ledger::take_pending_flags(conn, ins, key)?
            } else {
                Vec::new()
            };
            let mut fukuhon_before = BTreeMap::new();
            if !self.empty.fukuhon {
                for e in &events {
                    if let EventKind::Fukuhon(f) = &e.kind {
                        if let Some(s) = ledger::load_fukuhon(conn, ins, key, f.info_code)? {
                            fukuhon_before.insert(f.info_code, s);
                        }
                    }
                }
            }
            let iflags = match self.insurer_flags.get(&ins) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(ledger::load_insurer_flags(conn, ins)?);
                    self.insurer_flags.insert(ins, f.clone());
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

        // Carry resolution for 後期 transition acquisitions (sequential: ledger lookups; the
        // ledger holds every non-後期 subscriber of this run by now).
        let mut resolutions: BTreeMap<SubKey, Resolution> = BTreeMap::new();
        if wave == Wave::Kouki {
            for w in &mut works {
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
                    let r = resolve_carry(conn, self.lookup, self.empty, &person, &self.run_handoffs)?;
                    w.carry = r.carry.clone();
                    resolutions.insert((w.insurer, w.key), r);
                }
            }
        }

        // Apply, in parallel: pure per-subscriber work.
        let outcomes: Vec<(Meta, Outcome)> = works
            .into_par_iter()
            .map(|w| {
                let meta = Meta {
                    insurer: w.insurer,
                    key: w.key,
                    before: w.before.clone(),
                };
                (meta, apply(w))
            })
            .collect();

        // Store, in key order.
        let run_id = self.run_id;
        for (m, o) in outcomes {
            let k = (m.insurer, m.key);
            for pf in &o.pending {
                ledger::insert_pending_flag(conn, pf, run_id)?;
            }
            self.out.pending_applied += o.pending_applied;
            if !o.rejects.is_empty() {
                self.rejects.push(SubscriberRejects {
                    wave,
                    key: k,
                    rejects: o.rejects.clone(),
                });
            }
            for (note, critical) in &o.review {
                self.review
                    .push(ReviewItem::new(k, Vec::new(), note.clone(), *critical));
            }
            for j in &o.journal {
                ledger::journal(conn, run_id, Some(&j.file), Some(j.seq), Some(k), j.event, &j.detail)?;
            }
            self.out.events_applied += o
                .journal
                .iter()
                .filter(|j| !matches!(j.event, JournalEvent::FlagPending | JournalEvent::Carry))
                .count() as u64;
            let carried = !o.carries.is_empty();
            self.out.carries.extend(o.carries.iter().cloned());
            // the transition acquisition was applied: its resolution took effect
            let acquired = o
                .acquisitions
                .iter()
                .any(|c| c.reason_of_qualification.is_some_and(|r| r.is_transition()));
            if acquired {
                self.acquired_regs.insert(k);
            }
            if let Some(r) = resolutions.remove(&k).filter(|_| acquired) {
                if r.candidates == 0 {
                    // R13: inquire. Only a 資格取得 that applied: a rejected one (e.g. resent)
                    // leaves the registration as it was matched when it was made
                    self.out.unmatched.push(k);
                }
                if let Some(Carry::Ambiguous(_)) = r.carry {
                    // in review with this registration: never carried later in the run. Only
                    // once the acquisition applied: a rejected one (e.g. a resent 資格取得) leaves
                    // the registration and its hand-offs to the late-carry pass
                    self.ambiguous_handoffs.extend(r.handoffs_used.iter().copied());
                    self.ambiguous_regs.insert(k);
                }
                if let Some(Carry::Flags(src)) = &r.carry {
                    // a hand-off counts as matched only once its flags are set on the registration
                    for h in &r.handoffs_used {
                        self.used_handoffs.insert(*h, k);
                    }
                    // 自動応答不可 alone carries nothing and makes no carry entry: from a hand-off it
                    // goes to flag confirmation here (R5 lists a 国保 enrollment of the ledger, and
                    // a carry's from the carry)
                    let lacks_ar = o
                        .after
                        .as_ref()
                        .is_some_and(|e| e.flag(FlagType::AutoResponseProhibited).is_none());
                    if src.auto_response && src.via != "ledger" && !carried && lacks_ar {
                        self.out.flag_confirmation.push((
                            k,
                            src.from,
                            vec![FlagType::AutoResponseProhibited],
                            "自動応答不可 at the previous insurer is not carried: confirm with the person".into(),
                        ));
                    }
                }
                for (from, info, t) in r.narrowed {
                    self.out.flag_confirmation.push((
                        k,
                        from,
                        vec![t],
                        format!(
                            "{} at the 国保 enrollment is narrowed to InfoCode {info} and is not carried: confirm with the person",
                            t.name_ja()
                        ),
                    ));
                }
                if !r.mismatched.is_empty() {
                    self.review.push(ReviewItem::new(
                        k,
                        r.mismatched,
                        "a flagged 国保 enrollment or hand-off has the same municipality, 宛名番号 and birthdate but another My Number: no carry; check the My Number (R3)",
                        true,
                    ));
                }
                if let Some(c) = &o.ambiguous {
                    let lacks = o.after.as_ref().is_some_and(|e| !e.has_protective_flag());
                    // a flagged candidate: the writer withholds the registration and says so
                    if !(r.any_flagged && lacks) {
                        self.review.push(ReviewItem::new(
                            k,
                            c.clone(),
                            "several possible 国保 enrollments: no carry",
                            false,
                        ));
                    }
                }
            }
            if wave == Wave::NotKouki && m.insurer.is_kokuho() {
                // a protective flag newly set on a 国保 enrollment: a registration made earlier at
                // the union may need it (late carry, R3)
                if let Some(after) = o.after.as_ref().filter(|a| a.status != Status::Cancelled) {
                    let newly = [FlagType::SelfInfoProvisionProhibited, FlagType::NonDisclosure]
                        .into_iter()
                        .any(|t| after.flag(t).is_some() && m.before.as_ref().is_none_or(|b| b.flag(t).is_none()));
                    if newly {
                        self.newly_flagged.push(after.person());
                    }
                }
            }
            for c in &o.acquisitions {
                if let Some(person) = person_of_change(c) {
                    scratch::add_acquisition(conn, k.0, k.1, &person, carried || o.ambiguous.is_some())?;
                }
            }
            for (info, (_, f)) in &o.fukuhon {
                scratch::add_fukuhon_out(conn, m.insurer, m.key, *info, f)?;
                let next = match f.operation {
                    FukuhonOperation::Delete => None,
                    _ => Some(ledger::StoredFukuhon {
                        effective_date: f.effective_date,
                        disclosure: f.disclosure,
                        items: f.items.clone(),
                        origin: format!("run {run_id}"),
                    }),
                };
                ledger::store_fukuhon(conn, m.insurer, m.key, *info, next.as_ref())?;
            }
            if o.touched {
                let mut after = o.after.expect("touched means enrolled");
                after.published = stored_published(&after);
                scratch::touch(conn, k.0, k.1, m.before.as_ref())?;
                ledger::store_enrollment(conn, &after, m.before.is_some())?;
                self.lookup = true;
            }
        }
        Ok(())
    }

    /// Late carries (R3), after both waves: hand-offs not consumed by a registration of this run
    /// are matched to registrations already held, and 国保 enrollments that got a protective flag
    /// in this run are matched to registrations made earlier.
    ///
    /// A registration found this way is resolved like a new one (R3 over the ledger's 国保
    /// enrollments and every hand-off, stored or of this run): one candidate carries, several
    /// go to review and carry nothing. Hand-offs that took part in an ambiguous resolution in
    /// this run stay pending (they are in the review worklist already).
    fn late_carries(&mut self) -> Result<Vec<CarryDone>> {
        let conn = self.conn;
        let mut late = Vec::new();
        let run_handoffs = std::mem::take(&mut self.run_handoffs);
        let mut matched: BTreeMap<SubKey, SubKey> = BTreeMap::new();
        // registration → what points at it: (origin file for the journal, a hand-off of this run?)
        let mut targets: BTreeMap<SubKey, Vec<(String, Option<SubKey>)>> = BTreeMap::new();
        let transition_regs = |person: &PersonKey| -> Result<Vec<SubKey>> {
            Ok(matching_enrollments(conn, self.lookup, person, |i| i.is_kouki())?
                .into_iter()
                .filter(|(e, _)| {
                    e.current_period()
                        .is_some_and(|p| p.reason_of_qualification.is_transition())
                })
                .map(|(e, _)| (e.insurer, e.key))
                .collect())
        };
        for (hk, h) in &run_handoffs {
            if let Some(to) = self.used_handoffs.get(hk) {
                matched.insert(*hk, *to);
                continue;
            }
            if self.ambiguous_handoffs.contains(hk) {
                continue;
            }
            let regs = transition_regs(&h.person)?;
            match regs.len() {
                0 => {}
                1 => targets
                    .entry(regs[0])
                    .or_default()
                    .push((h.origin.split('#').next().unwrap_or("").to_owned(), Some(*hk))),
                _ => self.review.push(ReviewItem::new(
                    *hk,
                    regs,
                    "hand-off matches several 後期 registrations: no carry",
                    true,
                )),
            }
        }
        // hand-offs kept unmatched from earlier runs (e.g. an ambiguity since resolved by a 取消):
        // their registrations are resolved again
        if !self.empty.handoff {
            for h in ledger::list_pending_handoffs(conn)? {
                let hk = (h.source_insurer, h.source_key);
                if run_handoffs.contains_key(&hk) || self.used_handoffs.contains_key(&hk) {
                    continue; // handled above, or carried at a 資格取得 of this run
                }
                let regs = transition_regs(&h.person)?;
                // a registration made in this run was resolved at its acquisition: what its own
                // later events did (a pending release applied after the carry) stands
                if let [reg] = regs[..]
                    && !self.acquired_regs.contains(&reg)
                {
                    targets
                        .entry(reg)
                        .or_default()
                        .push((h.origin.split('#').next().unwrap_or("").to_owned(), Some(hk)));
                }
            }
        }
        for person in std::mem::take(&mut self.newly_flagged) {
            // a registration made in this run saw these flags at its acquisition already: what its
            // own later events did to them (a release) stands
            for reg in transition_regs(&person)?
                .into_iter()
                .filter(|r| !self.acquired_regs.contains(r))
            {
                targets
                    .entry(reg)
                    .or_default()
                    .push(("国保 flag set after the registration".into(), None));
            }
        }
        for (k, via) in targets {
            if self.ambiguous_regs.contains(&k) {
                continue; // resolved as ambiguous in this run already
            }
            let Some(e) = ledger::load_enrollment(conn, k.0, k.1)? else {
                continue;
            };
            if e.status == Status::Cancelled {
                continue;
            }
            let r = resolve_carry(conn, self.lookup, self.empty, &e.person(), &run_handoffs)?;
            let mut src = match r.carry {
                Some(Carry::Flags(src)) => src,
                Some(Carry::Ambiguous(cands)) => {
                    let lacks = (r.flagged_si && e.flag(FlagType::SelfInfoProvisionProhibited).is_none())
                        || (r.flagged_nd && e.flag(FlagType::NonDisclosure).is_none());
                    if lacks {
                        // the writer withholds it (ambiguous, flagged, lacking the protection) and
                        // lists it, this night and every later one until resolved (R4, R14). One
                        // that holds what the candidates state is not written again: nothing
                        // changed for it, and a pending hand-off is resolved every night
                        scratch::touch(conn, k.0, k.1, Some(&e))?;
                    } else {
                        self.review.push(ReviewItem::new(
                            k,
                            cands,
                            "late hand-off or 国保 flag for a registration with several possible 国保 enrollments: no carry",
                            false,
                        ));
                    }
                    continue;
                }
                None => continue,
            };
            let by_handoff = via.iter().any(|v| v.1.is_some());
            if !by_handoff {
                src.via = "flag_after_registration";
            }
            let mut after = e.clone();
            let transition_date = e.current_period().map(|p| p.qualification_date).expect("has a period");
            let time = src.set_time.unwrap_or_else(|| Timestamp::start_of(transition_date));
            let (carried, over_release) = carry_onto(
                &mut after,
                src.self_info,
                src.non_disclosure,
                time,
                &src.flag_times,
                src.from,
            );
            for t in over_release {
                self.review.push(ReviewItem::new(
                    k,
                    vec![src.from],
                    format!(
                        "{} carried from {}/{} is older than the registration's own release of it (R1a): set again, protection wins",
                        t.name_ja(),
                        src.from.0,
                        src.from.1
                    ),
                    false,
                ));
            }
            if carried.is_empty() && !by_handoff {
                continue; // the registration holds these flags already
            }
            ledger::journal(
                conn,
                self.run_id,
                Some(via[0].0.as_str()),
                None,
                Some(k),
                JournalEvent::Carry,
                &format!(
                    "flags carried from {}/{} ({})",
                    src.from.0,
                    src.from.1,
                    if by_handoff {
                        "handoff after registration"
                    } else {
                        "国保 flag set after registration"
                    }
                ),
            )?;
            for hk in &r.handoffs_used {
                matched.insert(*hk, k);
            }
            for (from, info, t) in r.narrowed {
                self.out.flag_confirmation.push((
                    k,
                    from,
                    vec![t],
                    format!(
                        "{} at the 国保 enrollment is narrowed to InfoCode {info} and is not carried: confirm with the person",
                        t.name_ja()
                    ),
                ));
            }
            if src.auto_response && after.flag(FlagType::AutoResponseProhibited).is_none() {
                self.out.flag_confirmation.push((
                    k,
                    src.from,
                    vec![FlagType::AutoResponseProhibited],
                    "自動応答不可 at the previous insurer is not carried: confirm with the person".into(),
                ));
            }
            if !carried.is_empty() {
                // a hand-off that adds nothing (e.g. R13's nightly follow-up answer repeating
                // flags carried already) is matched without a carry entry
                late.push(CarryDone {
                    source: src,
                    to: k,
                    qualification_date: transition_date,
                    flags: carried.clone(),
                });
                // the pre-run state is `e` unless this run touched it already
                scratch::touch(conn, k.0, k.1, Some(&e))?;
                after.published = stored_published(&after);
                ledger::store_enrollment(conn, &after, true)?;
            }
        }
        for (hk, mut h) in run_handoffs {
            if let Some(to) = matched.remove(&hk) {
                h.matched = Some(to);
                self.out.handoffs_matched += 1;
            }
            ledger::upsert_handoff(conn, &h)?;
        }
        // hand-offs kept from earlier runs that a registration of this run consumed
        for (hk, to) in self.used_handoffs.iter().map(|(h, t)| (*h, *t)).chain(matched) {
            if ledger::mark_handoff_matched(conn, hk, to)? {
                self.out.handoffs_matched += 1;
            }
        }
        // in hand-off order, as before
        late.sort_by_key(|c| c.source.from);
        Ok(late)
    }

    /// R5: any other new enrollment of a person flagged elsewhere goes to flag confirmation.
    fn flag_confirmation(&mut self, late: &[CarryDone]) -> Result<()> {
        let conn = self.conn;
        let n_acq = scratch::acquisition_count(conn)?;
        if n_acq == 0 {
            return Ok(());
        }
        // first carry to each subscriber (applied ones, then late ones), for 自動応答不可
        let mut first_carry: HashMap<SubKey, &CarryDone> = HashMap::new();
        for c in self.out.carries.iter().chain(late) {
            first_carry.entry(c.to).or_insert(c);
        }
        // Only flagged enrollments can produce a row (自動応答不可 alone too: it is never carried). With many acquisitions (a
        // full load) index those persons once; with few, look each acquisition up.
        let n_flagged = ledger::count_flagged_subscribers(conn)?;
        let index = if n_acq as i64 > 4 * n_flagged.max(1) / 3 {
            let mut idx = PersonIndex::default();
            for (i, k) in ledger::flagged_subscriber_keys(conn)? {
                if let Some(e) = ledger::load_enrollment(conn, i, k)? {
                    idx.add(&e);
                }
            }
            Some(idx)
        } else {
            None
        };
        let mut rows: Vec<(bool, SubKey, SubKey, Vec<FlagType>, String)> = Vec::new();
        let mut last = 0i64;
        loop {
            let page = scratch::acquisition_page(conn, last, 4096)?;
            let Some(l) = page.last() else { break };
            last = l.id;
            for scratch::AcquisitionRow {
                insurer: ins,
                key,
                person,
                carried_or_ambiguous,
                ..
            } in page
            {
                let k = (ins, key);
                if carried_or_ambiguous {
                    if let Some(cd) = first_carry.get(&k).filter(|cd| cd.source.auto_response) {
                        rows.push((
                            ins.is_kouki(),
                            k,
                            cd.source.from,
                            vec![FlagType::AutoResponseProhibited],
                            "自動応答不可 at the previous insurer is not carried: confirm with the person".into(),
                        ));
                    }
                    continue;
                }
                let matched: Vec<Enrollment> = match &index {
                    Some(idx) => {
                        let mut v = Vec::new();
                        for (ci, ck) in idx.find(&person).into_iter().filter(|c| c.0 != ins) {
                            if let Some(e) = ledger::load_enrollment(conn, ci, ck)?
                                .filter(|e| e.status != Status::Cancelled && person.matches(&e.person()).is_some())
                            {
                                v.push(e);
                            }
                        }
                        v
                    }
                    None => matching_enrollments(conn, self.lookup, &person, |i| i != ins)?
                        .into_iter()
                        .map(|(e, _)| e)
                        .collect(),
                };
                if matched.is_empty() {
                    continue;
                }
                let own = ledger::load_enrollment(conn, ins, key)?;
                for e in matched {
                    // only protections this enrollment lacks need a person's decision
                    let flags: Vec<FlagType> = [
                        FlagType::SelfInfoProvisionProhibited,
                        FlagType::NonDisclosure,
                        FlagType::AutoResponseProhibited,
                    ]
                    .into_iter()
                    .filter(|t| e.flag(*t).is_some() && own.as_ref().is_none_or(|o| o.flag(*t).is_none()))
                    .collect();
                    if !flags.is_empty() {
                        rows.push((
                            ins.is_kouki(),
                            k,
                            (e.insurer, e.key),
                            flags,
                            "new enrollment of a person flagged at another insurer: ask the person and set the flags if needed"
                                .into(),
                        ));
                    }
                }
            }
        }
        // wave, then subscriber: the same order whatever the buckets (stable for equal keys)
        rows.sort_by_key(|a| (a.0, a.1));
        self.out
            .flag_confirmation
            .extend(rows.into_iter().map(|(_, k, o, f, n)| (k, o, f, n)));
        Ok(())
    }
}

/// Applies the batch to the state held in `conn` (inside the run's transaction) and stores it,
/// bucket by bucket.
pub fn apply_batch(conn: &Connection, run_id: &str, batch: Batch) -> Result<BatchOutcome> {
    scratch::create(conn)?;
    let empty = ledger::empty_tables(conn)?;
    let Batch { files, spool } = batch;
    let mut out = BatchOutcome::default();

    // Hand-offs in R1 order: a later file's hand-off for the same 国保 subscriber replaces an
    // earlier one.
    let mut handoffs: Vec<(u32, AgeTransitionHandoff)> = spool
        .take_handoffs()
        .into_iter()
        .filter_map(|(tag, h)| files[tag as usize].order.map(|_| (tag, h)))
        .collect();
    handoffs.sort_by_key(|(tag, h)| (files[*tag as usize].order, h.seq));
    let mut run_handoffs: BTreeMap<SubKey, StoredHandoff> = BTreeMap::new();
    for (tag, h) in handoffs {
        out.handoffs_received += 1;
        let origin = format!("{}#{}", files[tag as usize].name, h.seq);
        let Some(source_key) = h.source_key else {
            // R13: the answer about a person the 国保 ledger does not know
            out.unknown_answers.push((origin, PersonKey::of_handoff(&h)));
            continue;
        };
        run_handoffs.insert((h.source_insurer, source_key), stored_handoff(&h, source_key, origin));
    }

    // Insurer-wide InfoCode flags (Scope 2), in R1 order.
    let mut scope2: BTreeMap<InsurerNumber, Vec<(Event, FlagChange)>> = BTreeMap::new();
    for (tag, f) in spool.take_scope2() {
        let file = &files[tag as usize];
        let Some(order) = file.order else { continue };
        let ev = Event {
            date: f.effective_time.date(),
            file_order: order,
            seq: f.seq,
            file: file.name.clone(),
            file_key: file.key.clone(),
            kind: EventKind::Flag(f.clone()),
        };
        scope2.entry(f.insurer).or_default().push((ev, f));
    }
    let mut insurer_flags: HashMap<InsurerNumber, Arc<InsurerFlags>> = HashMap::new();
    for (ins, mut evs) in scope2 {
        evs.sort_by_key(|(e, _)| e.order_key());
        let before = ledger::load_insurer_flags(conn, ins)?;
        let mut flags: BTreeMap<FlagKey, Flag> = before.iter().map(|((i, t), f)| ((Some(*i), *t), f.clone())).collect();
        let mut released = ledger::load_released(conn, ins, None)?;
        for (ev, f) in evs {
            let info = f.info_code.expect("Scope 2 has an InfoCode");
            let diag =
                |code, field: &str, msg: String| (Diagnostic::new(&*ev.file, code, msg).seq(ev.seq).field(field), true);
            let label = format!("{} for {info}", f.flag_type.name_en());
            match step_flag(&mut flags, &mut released, (Some(info), f.flag_type), &f, ev.origin()) {
                FlagStep::Set | FlagStep::Released => {}
                FlagStep::StaleSetApplied | FlagStep::StaleSetKept => out.insurer_review.push((
                    ins,
                    format!(
                        "{}#{}: insurer-wide {label} set with EffectiveTime {} is older than the flag's current state (R1a)",
                        ev.file, ev.seq, f.effective_time
                    ),
                    false,
                )),
                FlagStep::StaleRelease(current) => {
                    let msg = format!(
                        "release of insurer-wide {label} with EffectiveTime {} is older than the flag's current state ({current}): not applied",
                        f.effective_time
                    );
                    out.insurer_review
                        .push((ins, format!("{}#{}: {msg} (R1a, E_STALE_EVENT)", ev.file, ev.seq), true));
                    out.engine_rejects.push(diag(ErrorCode::StaleEvent, "EffectiveTime", msg));
                    continue;
                }
                FlagStep::NotSet => {
                    out.engine_rejects.push(diag(
                        ErrorCode::StateConflict,
                        "Operation",
                        format!("{label} is not set for this insurer; nothing to release"),
                    ));
                    continue;
                }
            }
            out.events_applied += 1;
            ledger::journal(
                conn,
                run_id,
                Some(&ev.file),
                Some(ev.seq),
                None,
                JournalEvent::InsurerFlag,
                &format!("{ins} {info} {} op {}", f.flag_type.name_en(), f.operation.code()),
            )?;
        }
        // insurer-wide flags are keyed by InfoCode alone
        let flags: InsurerFlags = flags.into_iter().filter_map(|((i, t), f)| Some(((i?, t), f))).collect();
        for (k, b, a) in flag_diff(&before, &flags) {
            let release_time = released.get(&(Some(k.0), k.1)).map(|r| r.effective_time);
            out.flag_rows.push(flag_row(ins, None, k.0, k.1, b, a, release_time));
        }
        ledger::store_insurer_flags(conn, ins, &flags)?;
        ledger::store_released(conn, ins, None, &released, true)?;
        insurer_flags.insert(ins, Arc::new(flags));
    }

    let mut ap = Applier {
        conn,
        run_id,
        files: &files,
        empty,
        lookup: !empty.enrollment,
        insurer_flags,
        run_handoffs,
        used_handoffs: BTreeMap::new(),
        ambiguous_handoffs: BTreeSet::new(),
        ambiguous_regs: BTreeSet::new(),
        acquired_regs: BTreeSet::new(),
        out,
        rejects: Vec::new(),
        review: Vec::new(),
        newly_flagged: Vec::new(),
    };
    for wave in [Wave::NotKouki, Wave::Kouki] {
        let mut chunks = spool.chunks(wave)?;
        loop {
            // a long load stops between chunks on SIGTERM/SIGINT (the caller rolls back)
            super::interrupt::check("while applying")?;
            let Some(records) = chunks.next_chunk()? else { break };
            let n = records.len();
            ap.bucket(wave, records)?;
            ap.out.chunks += 1;
            tracing::debug!(?wave, records = n, "chunk applied");
        }
    }
    drop(spool);
    // applied carries in subscriber order (as if one bucket)
    ap.out.carries.sort_by_key(|c| (c.to, c.source.from));
    ap.review.sort_by_key(|r| r.subscriber);
    let late = ap.late_carries()?;
    ap.flag_confirmation(&late)?;
    ap.out.carries.extend(late);
    // one row per (subscriber, other enrollment, flags): the acquisition and R5 may both find it
    let mut seen = std::collections::HashSet::new();
    ap.out
        .flag_confirmation
        .retain(|(k, other, flags, _)| seen.insert((*k, *other, flags.clone())));
    ap.rejects.sort_by_key(|r| (r.wave, r.key));
    let Applier {
        mut out,
        rejects,
        review,
        ..
    } = ap;
    out.engine_rejects.extend(rejects.into_iter().flat_map(|r| r.rejects));
    out.review = review;
    // R14: subscribers an earlier run could not send are written by this one
    for (ins, key) in ledger::list_unsent(conn)? {
        if let Some(e) = ledger::load_enrollment(conn, ins, key)? {
            scratch::touch(conn, ins, key, Some(&e))?;
        }
    }
    out.touched = scratch::touched_count(conn)?;
    Ok(out)
}
