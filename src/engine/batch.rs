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

use super::apply::{Carry, CarryDone, Event, EventKind, FlagStep, Outcome, Work, apply, step_flag};
use super::carry::{Resolution, resolve_carry};
use super::spool::{Spool, Wave};
use crate::domain::person::{CarryVia, Enrollment, Flag, FlagKey, InsurerFlags, PersonKey, Status, flag_diff};
use crate::domain::{
    AgeTransitionHandoff, ChangeType, FlagChange, FlagType, FukuhonOperation, InfoCode, InsurerNumber, Record, SubKey,
    SubscriberChange, SubscriberKey, Timestamp,
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
    /// R13: 後期 transition registrations of this run carried from a hand-off an earlier run
    /// stored: 国保's flags may have changed since, so [`super::inquiry`] asks again when the
    /// registration lacks a protection.
    pub carried_from_earlier_handoff: Vec<SubKey>,
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

/// The `published` value stored with an after-state: provisional, as if its group is published
/// by this run (a 取消 deletes the registration at the server). The writer restores the pre-run
/// value for a group it withholds or refuses (R14).
pub(super) fn stored_published(e: &Enrollment) -> bool {
    e.status != Status::Cancelled
}

/// The rejects (diagnostic, critical?) of one subscriber in one wave.
struct SubscriberRejects {
    wave: Wave,
    key: SubKey,
    rejects: Vec<(Diagnostic, bool)>,
}

/// State carried from bucket to bucket.
pub(super) struct Applier<'a> {
    pub(super) conn: &'a Connection,
    pub(super) run_id: &'a str,
    files: &'a [BatchFile],
    /// Ledger tables that were empty when the run started: lookups in them are skipped (a full
    /// load into a new ledger would otherwise spend most of its time on queries that cannot find
    /// anything).
    pub(super) empty: EmptyTables,
    /// Whether the ledger may hold enrollments (it did at start, or this run stored some).
    pub(super) lookup: bool,
    insurer_flags: HashMap<InsurerNumber, Arc<InsurerFlags>>,
    pub(super) run_handoffs: BTreeMap<SubKey, StoredHandoff>,
    pub(super) used_handoffs: BTreeMap<SubKey, SubKey>,
    /// Hand-offs among the candidates of an ambiguous resolution in this run.
    pub(super) ambiguous_handoffs: BTreeSet<SubKey>,
    /// Registrations resolved as ambiguous in this run.
    pub(super) ambiguous_regs: BTreeSet<SubKey>,
    /// Registrations whose transition acquisition was applied in this run: their carry was
    /// resolved then, against the 国保 state after this run's first wave.
    pub(super) acquired_regs: BTreeSet<SubKey>,
    pub(super) out: BatchOutcome,
    /// Sorted at the end so reports do not depend on the buckets.
    rejects: Vec<SubscriberRejects>,
    pub(super) review: Vec<ReviewItem>,
    /// 国保 persons whose protective flag was newly set in this run (late carries, R3).
    pub(super) newly_flagged: Vec<PersonKey>,
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
        for (m, o) in outcomes {
            self.store(wave, m, o, &mut resolutions)?;
        }
        Ok(())
    }

    /// Stores one subscriber's outcome: pending flags, rejects, review, journal, carries, what
    /// its transition acquisition's resolution says (R3, R5, R13), newly flagged 国保 persons,
    /// acquisitions, 負担区分 rows and the enrollment itself.
    fn store(&mut self, wave: Wave, m: Meta, o: Outcome, resolutions: &mut BTreeMap<SubKey, Resolution>) -> Result<()> {
        let conn = self.conn;
        let run_id = self.run_id;
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
            self.settle_resolution(k, r, &o, carried);
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
        Ok(())
    }

    /// The resolution of a transition acquisition that applied took effect: R13 inquiry, the
    /// hand-offs it used, R5 confirmations, and the review of mismatched or ambiguous matches.
    /// R3: a matched 国保 enrollment's protective flags narrowed to one InfoCode are never
    /// carried; the person goes to flag confirmation (at the 資格取得 and late alike).
    pub(super) fn confirm_narrowed(&mut self, k: SubKey, narrowed: Vec<(SubKey, InfoCode, FlagType)>) {
        for (from, info, t) in narrowed {
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
    }

    fn settle_resolution(&mut self, k: SubKey, r: Resolution, o: &Outcome, carried: bool) {
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
            if src.via == CarryVia::Handoff && !self.run_handoffs.contains_key(&src.from) {
                self.out.carried_from_earlier_handoff.push(k);
            }
            // 自動応答不可 alone carries nothing and makes no carry entry: from a hand-off it
            // goes to flag confirmation here (R5 lists a 国保 enrollment of the ledger, and
            // a carry's from the carry)
            let lacks_ar = o
                .after
                .as_ref()
                .is_some_and(|e| e.flag(FlagType::AutoResponseProhibited).is_none());
            if src.auto_response && src.via != CarryVia::Ledger && !carried && lacks_ar {
                self.out.flag_confirmation.push((
                    k,
                    src.from,
                    vec![FlagType::AutoResponseProhibited],
                    "自動応答不可 at the previous insurer is not carried: confirm with the person".into(),
                ));
            }
        }
        self.confirm_narrowed(k, r.narrowed);
        if !r.mismatched.is_empty() {
            self.review.push(ReviewItem::new(
                    k,
                    r.mismatched,
                    "a flagged 国保 enrollment or hand-off has the same municipality, 宛名番号 and birthdate but another My Number: no carry; check the My Number (R3)",
                    true,
                ));
        }
        if let Some(c) = &o.ambiguous {
            let after = o.after.as_ref();
            let unprotected = r.any_flagged && after.is_some_and(|e| !e.has_protective_flag());
            // a registration that is still a transition 資格取得 after the run: the writer
            // withholds it (engine::hold) and says so. One the run went on to cancel and acquire
            // again under another reason is not withheld: it is listed here, or a flagged
            // candidate's protection would be missing in silence
            let withheld_by_writer = unprotected
                && after.is_some_and(|e| {
                    e.status != Status::Cancelled
                        && e.current_period()
                            .is_some_and(|p| p.reason_of_qualification.is_transition())
                });
            if !withheld_by_writer {
                let why = if unprotected {
                    "several possible 国保 enrollments, one of them flagged, and the registration was then cancelled or acquired again under another reason: no carry; confirm the person's flags with the 国保 side (R3)"
                } else {
                    "several possible 国保 enrollments: no carry"
                };
                self.review.push(ReviewItem::new(k, c.clone(), why, unprotected));
            }
        }
    }
}

/// Applies the batch to the state held in `conn` (inside the run's transaction) and stores it,
/// bucket by bucket.
pub fn apply_batch(conn: &Connection, run_id: &str, batch: Batch) -> Result<BatchOutcome> {
    scratch::create(conn)?;
    let empty = ledger::empty_tables(conn)?;
    let Batch { files, spool } = batch;
    let mut out = BatchOutcome::default();

    let run_handoffs = run_handoffs(&files, spool.take_handoffs(), &mut out);
    let insurer_flags = apply_insurer_flags(conn, run_id, &files, spool.take_scope2(), &mut out)?;

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

/// This run's hand-offs by 国保 subscriber, in R1 order: a later file's hand-off for the same
/// subscriber replaces an earlier one. An answer about a person the 国保 ledger does not know
/// (R13) goes to `out.unknown_answers`.
fn run_handoffs(
    files: &[BatchFile],
    handoffs: Vec<(u32, AgeTransitionHandoff)>,
    out: &mut BatchOutcome,
) -> BTreeMap<SubKey, StoredHandoff> {
    // Hand-offs in R1 order: a later file's hand-off for the same 国保 subscriber replaces an
    // earlier one.
    let mut handoffs: Vec<(u32, AgeTransitionHandoff)> = handoffs
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
    run_handoffs
}

/// Applies the insurer-wide InfoCode flags (Scope 2) in R1 order and stores them; their linkage
/// rows, review items and rejects go to `out`. Returns each insurer's flags for the
/// subscribers' step.
fn apply_insurer_flags(
    conn: &Connection,
    run_id: &str,
    files: &[BatchFile],
    scope2_records: Vec<(u32, FlagChange)>,
    out: &mut BatchOutcome,
) -> Result<HashMap<InsurerNumber, Arc<InsurerFlags>>> {
    // Insurer-wide InfoCode flags (Scope 2), in R1 order.
    let mut scope2: BTreeMap<InsurerNumber, Vec<(Event, FlagChange)>> = BTreeMap::new();
    for (tag, f) in scope2_records {
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
    Ok(insurer_flags)
}
