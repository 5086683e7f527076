//! Applying one subscriber's events in order (R1), with pending flags (R7), the disclosure rule
//! (R6) and the age-transition carry (R3) injected at the acquisition. Pure: no I/O, so it runs
//! on any thread and its result never depends on the thread count.

use crate::domain::person::{
    CarryVia, Enrollment, Flag, FlagKey, FukuhonOut, InsurerFlags, MatchRule, Period, Released, Status,
};
use crate::domain::{
    ACQUISITION_FIELDS, ChangeType, Date, DisclosureClassification, FlagChange, FlagOperation, FlagSource, FlagType,
    Fukuhon, FukuhonOperation, InfoCode, InsurerNumber, SelfInfoReason, SubscriberChange, SubscriberKey, Timestamp,
};
use crate::error::{Diagnostic, ErrorCode};
use crate::ledger::{JournalEvent, PendingFlag, StoredFukuhon};
use std::collections::BTreeMap;

/// One event addressed to one subscriber, with its position for ordering and diagnostics.
#[derive(Clone, Debug)]
pub struct Event {
    pub date: Date,
    pub file_order: u32,
    pub seq: u64,
    pub file: std::sync::Arc<str>,
    /// The file's R1 position across runs (see [`PendingFlag::file_key`]).
    pub file_key: std::sync::Arc<str>,
    pub kind: EventKind,
}

#[derive(Clone, Debug)]
pub enum EventKind {
    Change(SubscriberChange),
    Flag(FlagChange),
    Fukuhon(Fukuhon),
}

impl Event {
    /// R1: (effective date, file order, RecordSequence).
    pub fn order_key(&self) -> (Date, u32, u64) {
        (self.date, self.file_order, self.seq)
    }
    pub fn origin(&self) -> String {
        format!("{}#{}", self.file, self.seq)
    }
}

/// What the carry resolution (done between the waves) decided for a 後期 acquisition.
#[derive(Clone, Debug)]
pub enum Carry {
    /// Flags to set, from the matched 国保 enrollment or hand-off.
    Flags(CarrySource),
    /// Several candidates: no carry; the case goes to the review worklist.
    Ambiguous(Vec<(InsurerNumber, SubscriberKey)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CarrySource {
    pub from: (InsurerNumber, SubscriberKey),
    pub rule: MatchRule,
    /// `ledger` or `handoff`
    pub via: CarryVia,
    pub self_info: Option<SelfInfoReason>,
    pub non_disclosure: bool,
    pub auto_response: bool,
    pub set_time: Option<Timestamp>,
    /// Each protective flag's own set time at the source (a hand-off states only the earliest,
    /// `set_time`): compared with a release the registration holds (R1a).
    pub flag_times: BTreeMap<FlagType, Timestamp>,
}

/// Everything one subscriber's processing needs.
#[derive(Clone, Debug)]
pub struct Work {
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub before: Option<Enrollment>,
    pub events: Vec<Event>,
    /// R7 flags kept from earlier runs.
    pub pending: Vec<PendingFlag>,
    /// 副本 the ledger holds for the InfoCodes this run touches.
    pub fukuhon_before: BTreeMap<InfoCode, StoredFukuhon>,
    /// Insurer-wide InfoCode flags after this run (for R6).
    pub insurer_flags: std::sync::Arc<InsurerFlags>,
    /// Carry decided for this subscriber's transition acquisition, if any.
    pub carry: Option<Carry>,
}

/// A carry that happened, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct CarryDone {
    pub source: CarrySource,
    pub to: (InsurerNumber, SubscriberKey),
    pub qualification_date: Date,
    pub flags: Vec<FlagType>,
}

/// One line for the ledger's journal, of one input record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalLine {
    pub file: String,
    pub seq: u64,
    pub event: JournalEvent,
    /// What changed, in words: no My Number, no address.
    pub detail: String,
}

impl JournalLine {
    pub fn new(file: String, seq: u64, event: JournalEvent, detail: String) -> Self {
        JournalLine {
            file,
            seq,
            event,
            detail,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub after: Option<Enrollment>,
    /// Whether anything was applied (the subscriber is written to the linkage).
    pub touched: bool,
    pub rejects: Vec<(Diagnostic, bool)>,
    /// Flags still waiting for an enrollment (R7), to store.
    pub pending: Vec<PendingFlag>,
    pub fukuhon: BTreeMap<InfoCode, (Option<StoredFukuhon>, FukuhonOut)>,
    pub carries: Vec<CarryDone>,
    pub ambiguous: Option<Vec<(InsurerNumber, SubscriberKey)>>,
    /// The transition acquisition applied in this run (for R5 and the hand-off matching).
    pub acquisitions: Vec<SubscriberChange>,
    /// Lines for the journal. No My Number, no address.
    pub journal: Vec<JournalLine>,
    /// Pending flags applied in this run.
    pub pending_applied: usize,
    /// Findings for the review worklist (stale flag events, R1a), critical or not.
    pub review: Vec<(String, bool)>,
}

fn reject(out: &mut Outcome, ev_file: &str, seq: u64, field: &str, code: ErrorCode, msg: String, critical: bool) {
    out.rejects
        .push((Diagnostic::new(ev_file, code, msg).seq(seq).field(field), critical));
}

/// Applies one subscriber's events, sorted by R1, to its state.
pub fn apply(mut w: Work) -> Outcome {
    let mut out = Outcome {
        after: w.before.clone(),
        ..Default::default()
    };
    w.events.sort_by_key(Event::order_key);
    // R6: a 開示 is refused when 不開示該当 is set at its effective date or at the end of the
    // run; the end-of-run flags come from the same events and pending flags without the 副本
    // (pure, so cheap; only for subscribers with a 開示)
    let discloses = w
        .events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Fukuhon(f) if f.disclosure == Some(DisclosureClassification::Disclose)));
    let end_flags = if discloses {
        let mut flags_only = w.clone();
        flags_only.events.retain(|e| !matches!(e.kind, EventKind::Fukuhon(_)));
        apply(flags_only).after.map(|e| e.flags).unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    let mut pending: Vec<PendingFlag> = std::mem::take(&mut w.pending);
    let mut fukuhon: BTreeMap<InfoCode, Option<StoredFukuhon>> =
        w.fukuhon_before.iter().map(|(k, v)| (*k, Some(v.clone()))).collect();
    // A subscriber the ledger already holds should have no pending flags; apply any at once.
    if out.after.as_ref().is_some_and(|e| e.status != Status::Cancelled) && !pending.is_empty() {
        apply_pending(&mut out, &mut pending);
    }
    for ev in &w.events {
        match &ev.kind {
            EventKind::Change(c) => apply_change(&mut out, &w, ev, c, &mut pending),
            EventKind::Flag(f) => {
                let enrolled = out.after.as_ref().is_some_and(|e| e.status != Status::Cancelled);
                if enrolled {
                    apply_flag(&mut out, ev, f);
                } else {
                    // R7: keep it until the enrollment arrives, never drop it
                    pending.push(PendingFlag {
                        change: f.clone(),
                        file: ev.file.to_string(),
                        file_order: ev.file_order,
                        file_key: ev.file_key.to_string(),
                    });
                    out.journal.push(JournalLine::new(
                        ev.file.to_string(),
                        ev.seq,
                        JournalEvent::FlagPending,
                        format!("{} {} kept pending", f.flag_type.name_en(), op_name(f.operation)),
                    ));
                }
            }
            EventKind::Fukuhon(f) => apply_fukuhon(&mut out, &w, ev, f, &mut fukuhon, &end_flags),
        }
    }
    out.pending = pending;
    net_fukuhon(&mut out, &fukuhon);
    out
}

/// R2: one FukuhonLinkage row per (subscriber, InfoCode) touched, stating the 副本 after the run
/// with the Operation the server needs: `1` when the server holds none yet, `2` when it does, `3`
/// when one it holds was deleted; none for a 副本 registered and deleted within the run.
fn net_fukuhon(out: &mut Outcome, end: &BTreeMap<InfoCode, Option<StoredFukuhon>>) {
    out.fukuhon.retain(|info, (before, row)| {
        let after = end.get(info).cloned().flatten();
        match (before.as_ref(), after) {
            (None, None) => return false,
            (Some(_), None) => row.operation = FukuhonOperation::Delete,
            (b, Some(a)) => {
                row.operation = if b.is_some() {
                    FukuhonOperation::Update
                } else {
                    FukuhonOperation::Register
                };
                row.effective_date = a.effective_date;
                row.disclosure = a.disclosure;
                row.items = a.items;
            }
        }
        true
    });
}

fn op_name(op: FlagOperation) -> &'static str {
    match op {
        FlagOperation::Set => "set",
        FlagOperation::Release => "release",
    }
}

/// R7 + R1: flags that waited for the enrollment apply in R1 order, whatever run (and order)
/// they arrived in.
fn apply_pending(out: &mut Outcome, pending: &mut Vec<PendingFlag>) {
    let mut pending = std::mem::take(pending);
    pending.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    for pf in pending {
        let ev = Event {
            date: pf.change.effective_time.date(),
            file_order: pf.file_order,
            seq: pf.change.seq,
            file: pf.file.as_str().into(),
            file_key: pf.file_key.as_str().into(),
            kind: EventKind::Flag(pf.change.clone()),
        };
        apply_flag(out, &ev, &pf.change);
        out.pending_applied += 1;
    }
}

fn apply_flag(out: &mut Outcome, ev: &Event, f: &FlagChange) {
    let e = out.after.as_mut().expect("enrolled");
    let k = (f.info_code, f.flag_type);
    match step_flag(&mut e.flags, &mut e.released, k, f, ev.origin()) {
        FlagStep::Set => {
            out.touched = true;
            out.journal.push(JournalLine::new(
                ev.file.to_string(),
                ev.seq,
                JournalEvent::FlagSet,
                flag_label(f),
            ));
        }
        step @ (FlagStep::StaleSetApplied | FlagStep::StaleSetKept) => {
            out.touched = true;
            out.journal.push(JournalLine::new(
                ev.file.to_string(),
                ev.seq,
                JournalEvent::FlagSet,
                format!("{} (stale)", flag_label(f)),
            ));
            out.review.push((
                format!(
                    "{}#{}: {} set with EffectiveTime {} is older than the flag's current state (R1a); {}",
                    ev.file,
                    ev.seq,
                    flag_label(f),
                    f.effective_time,
                    if step == FlagStep::StaleSetApplied {
                        "applied: protection wins"
                    } else {
                        "the newer setting is kept"
                    }
                ),
                false,
            ));
        }
        FlagStep::Released => {
            out.touched = true;
            out.journal.push(JournalLine::new(
                ev.file.to_string(),
                ev.seq,
                JournalEvent::FlagReleased,
                flag_label(f),
            ));
        }
        FlagStep::StaleRelease(current) => {
            let msg = format!(
                "release of {} with EffectiveTime {} is older than the flag's current state ({current}): not applied",
                flag_label(f),
                f.effective_time
            );
            out.review
                .push((format!("{}#{}: {msg} (R1a, E_STALE_EVENT)", ev.file, ev.seq), true));
            reject(out, &ev.file, ev.seq, "EffectiveTime", ErrorCode::StaleEvent, msg, true)
        }
        FlagStep::NotSet => reject(
            out,
            &ev.file,
            ev.seq,
            "Operation",
            ErrorCode::StateConflict,
            format!("{} is not set on this subscriber; nothing to release", flag_label(f)),
            true,
        ),
    }
}

/// What one flag event did to a flag (R1a).
#[derive(Debug, PartialEq)]
pub enum FlagStep {
    Set,
    /// An older set while the flag was released later: applied (protection wins), for review.
    StaleSetApplied,
    /// An older set while a newer set holds the flag: the newer one is kept, for review.
    StaleSetKept,
    Released,
    /// An older release than the flag's current state: not applied (`E_STALE_EVENT`).
    StaleRelease(Timestamp),
    /// A release of a flag that is not set (`E_STATE_CONFLICT`).
    NotSet,
}

/// Applies one FlagChange to a set of flags and their releases, with R1a's stale rule. Shared by
/// subscriber flags and insurer-wide (Scope 2) flags.
pub fn step_flag<K: Ord + Copy>(
    flags: &mut BTreeMap<K, Flag>,
    released: &mut BTreeMap<K, Released>,
    k: K,
    f: &FlagChange,
    origin: String,
) -> FlagStep {
    let t = f.effective_time;
    match f.operation {
        FlagOperation::Set => {
            if flags.get(&k).is_some_and(|cur| t < cur.effective_time) {
                return FlagStep::StaleSetKept;
            }
            let stale = released.remove(&k).is_some_and(|r| t < r.effective_time);
            flags.insert(
                k,
                Flag {
                    reason: f.reason,
                    source: f.source,
                    effective_time: t,
                    support_measure_end: f.support_measure_end,
                    origin,
                },
            );
            if stale {
                FlagStep::StaleSetApplied
            } else {
                FlagStep::Set
            }
        }
        FlagOperation::Release => {
            let current = flags
                .get(&k)
                .map(|x| x.effective_time)
                .or_else(|| released.get(&k).map(|r| r.effective_time));
            if let Some(c) = current.filter(|c| t < *c) {
                return FlagStep::StaleRelease(c);
            }
            if flags.remove(&k).is_none() {
                return FlagStep::NotSet;
            }
            released.insert(
                k,
                Released {
                    effective_time: t,
                    origin,
                },
            );
            FlagStep::Released
        }
    }
}

fn flag_label(f: &FlagChange) -> String {
    match f.info_code {
        Some(i) => format!("{} for {i}", f.flag_type.name_en()),
        None => f.flag_type.name_en().to_owned(),
    }
}

/// Refuses a change the subscriber's state does not allow (`E_STATE_CONFLICT` on ChangeType).
fn conflict(out: &mut Outcome, ev: &Event, msg: &str) {
    reject(
        out,
        &ev.file,
        ev.seq,
        "ChangeType",
        ErrorCode::StateConflict,
        msg.to_owned(),
        false,
    )
}

fn apply_change(out: &mut Outcome, w: &Work, ev: &Event, c: &SubscriberChange, pending: &mut Vec<PendingFlag>) {
    match c.change_type {
        ChangeType::Acquisition => apply_acquisition(out, w, ev, c, pending),
        ChangeType::Update | ChangeType::Loss => apply_update_or_loss(out, ev, c),
        ChangeType::Cancel => {
            let Some(e) = out.after.as_mut().filter(|e| e.status != Status::Cancelled) else {
                return conflict(out, ev, "取消 of a subscriber who is not enrolled");
            };
            e.status = Status::Cancelled;
            out.touched = true;
            out.journal.push(JournalLine::new(
                ev.file.to_string(),
                ev.seq,
                JournalEvent::Cancel,
                "取消".into(),
            ));
        }
    }
}

/// 資格取得: a new period (after a 資格喪失, or the first), the carry at a 後期 transition
/// registration (R3) and the flags that waited for it (R7).
fn apply_acquisition(out: &mut Outcome, w: &Work, ev: &Event, c: &SubscriberChange, pending: &mut Vec<PendingFlag>) {
    let Some(a) = c.acquisition() else {
        // `build` refuses such a record; a record typed elsewhere is refused here, never
        // applied half
        return reject(
            out,
            &ev.file,
            ev.seq,
            "ChangeType",
            ErrorCode::Schema,
            format!("a 資格取得 requires {}", ACQUISITION_FIELDS.join(", ")),
            false,
        );
    };
    let prior = out.after.take();
    if let Some(p) = prior.as_ref().filter(|p| p.status == Status::Active) {
        out.after = Some(p.clone());
        return conflict(
            out,
            ev,
            "subscriber is already enrolled (active); a new 資格取得 needs a 資格喪失 first",
        );
    }
    let period = Period {
        card_symbol: c.card_symbol.clone(),
        card_number: a.card_number,
        branch: a.branch,
        qualification_date: a.qualification_date,
        reason_of_qualification: a.reason_of_qualification,
        disqualification_date: None,
        reason_of_loss: None,
        personal_family: a.personal_family,
    };
    if let Some(last) = prior
        .as_ref()
        .filter(|p| p.status == Status::Lost)
        .and_then(|p| p.periods.last())
    {
        if last
            .disqualification_date
            .is_some_and(|d| period.qualification_date < d)
        {
            out.after = prior.clone();
            return reject(
                out,
                &ev.file,
                ev.seq,
                "QualificationDate",
                ErrorCode::StateConflict,
                "QualificationDate is before the previous period's DisqualificationDate".into(),
                false,
            );
        }
    }
    let (mut periods, flags, released, published, unsent) = match prior {
        Some(p) if p.status == Status::Lost => (p.periods, p.flags, p.released, p.published, p.unsent),
        // after a 取消 the enrollment starts over; flags are kept (never dropped silently)
        Some(p) => (Vec::new(), p.flags, p.released, p.published, p.unsent),
        None => (Vec::new(), BTreeMap::new(), BTreeMap::new(), false, false),
    };
    periods.push(period);
    out.after = Some(Enrollment {
        insurer: c.insurer,
        key: c.key,
        individual_number: c.individual_number,
        municipality: c.municipality,
        resident: c.resident.clone(),
        name: a.name,
        name_kana: a.name_kana,
        sex: a.sex,
        birthdate: a.birthdate,
        post_number: c.post_number,
        address: c.address.clone(),
        periods,
        status: Status::Active,
        published,
        unsent,
        flags,
        released,
    });
    out.touched = true;
    out.acquisitions.push(c.clone());
    out.journal.push(JournalLine::new(
        ev.file.to_string(),
        ev.seq,
        JournalEvent::Acquisition,
        format!("資格取得 reason {}", a.reason_of_qualification.code()),
    ));
    // R3: the carry decided between the waves applies right at the acquisition
    let transition = c.insurer.is_kouki() && a.reason_of_qualification.is_transition();
    if transition {
        match &w.carry {
            Some(Carry::Flags(src)) => carry_flags(out, ev, src, c, a.qualification_date),
            Some(Carry::Ambiguous(cands)) => out.ambiguous = Some(cands.clone()),
            None => {}
        }
    }
    // R7: flags that waited for this enrollment
    if !pending.is_empty() {
        apply_pending(out, pending);
    }
}

/// 記載事項変更 or 資格喪失 of an enrolled subscriber.
fn apply_update_or_loss(out: &mut Outcome, ev: &Event, c: &SubscriberChange) {
    let Some(e) = out.after.as_mut().filter(|e| e.status != Status::Cancelled) else {
        return conflict(out, ev, "subscriber is not enrolled");
    };
    if c.change_type == ChangeType::Loss && e.status != Status::Active {
        return conflict(out, ev, "資格喪失 of a subscriber who is not enrolled (already lost)");
    }
    let mut next = e.clone();
    update_fields(&mut next, c);
    if c.change_type == ChangeType::Loss {
        next.status = Status::Lost;
    }
    if let Some(p) = next.periods.last() {
        if p.disqualification_date.is_some_and(|d| d < p.qualification_date) {
            return reject(
                out,
                &ev.file,
                ev.seq,
                "DisqualificationDate",
                ErrorCode::StateConflict,
                "DisqualificationDate would be before the QualificationDate the ledger holds".into(),
                false,
            );
        }
    }
    *e = next;
    out.touched = true;
    let what = if c.change_type == ChangeType::Loss {
        JournalEvent::Loss
    } else {
        JournalEvent::Update
    };
    out.journal
        .push(JournalLine::new(ev.file.to_string(), ev.seq, what, String::new()));
}

/// 記載事項変更: present fields replace the ledger's; absent ones keep it.
fn update_fields(e: &mut Enrollment, c: &SubscriberChange) {
    macro_rules! set {
        ($dst:expr, $src:expr) => {
            if let Some(v) = $src.clone() {
                $dst = v;
            }
        };
    }
    macro_rules! set_opt {
        ($dst:expr, $src:expr) => {
            if $src.is_some() {
                $dst = $src.clone();
            }
        };
    }
    set_opt!(e.individual_number, c.individual_number);
    set_opt!(e.municipality, c.municipality);
    set_opt!(e.resident, c.resident);
    set!(e.name, c.name);
    set!(e.name_kana, c.name_kana);
    set!(e.sex, c.sex);
    set!(e.birthdate, c.birthdate);
    set_opt!(e.post_number, c.post_number);
    set_opt!(e.address, c.address);
    if let Some(p) = e.periods.last_mut() {
        set_opt!(p.card_symbol, c.card_symbol);
        set!(p.card_number, c.card_number);
        set!(p.branch, c.branch);
        set!(p.qualification_date, c.qualification_date);
        set!(p.reason_of_qualification, c.reason_of_qualification);
        set_opt!(p.disqualification_date, c.disqualification_date);
        set_opt!(p.reason_of_loss, c.reason_of_loss);
        set!(p.personal_family, c.personal_family);
    }
}

/// R3: sets the carried protective flags (Source 4, ReasonCode kept) that `e` does not hold yet
/// and returns the types set. An explicit flag already present wins: a carry never weakens it.
pub fn carry_onto(
    e: &mut Enrollment,
    self_info: Option<SelfInfoReason>,
    non_disclosure: bool,
    time: Timestamp,
    flag_times: &BTreeMap<FlagType, Timestamp>,
    from: (InsurerNumber, SubscriberKey),
) -> (Vec<FlagType>, Vec<FlagType>) {
    let origin = format!("carry:{}/{}", from.0, from.1);
    let wanted = [
        (self_info.is_some(), FlagType::SelfInfoProvisionProhibited, self_info),
        (non_disclosure, FlagType::NonDisclosure, None),
    ];
    let (mut carried, mut over_release) = (Vec::new(), Vec::new());
    for (on, t, reason) in wanted {
        if !on || e.flags.contains_key(&(None, t)) {
            continue;
        }
        // a carry older than a release the registration holds is a stale set (R1a): applied,
        // protection wins, and listed for review by the caller
        let time = flag_times.get(&t).copied().unwrap_or(time);
        if e.released.remove(&(None, t)).is_some_and(|r| r.effective_time > time) {
            over_release.push(t);
        }
        e.flags.insert(
            (None, t),
            Flag {
                reason,
                source: FlagSource::AgeTransitionCarry,
                effective_time: time,
                support_measure_end: None,
                origin: origin.clone(),
            },
        );
        carried.push(t);
    }
    (carried, over_release)
}

fn carry_flags(out: &mut Outcome, ev: &Event, src: &CarrySource, c: &SubscriberChange, qualification_date: Date) {
    let e = out.after.as_mut().expect("just enrolled");
    let time = src.set_time.unwrap_or_else(|| Timestamp::start_of(c.effective_date));
    let (carried, over_release) = carry_onto(e, src.self_info, src.non_disclosure, time, &src.flag_times, src.from);
    for t in over_release {
        out.review.push((
            format!(
                "{}#{}: {} carried from {}/{} is older than the registration's own release of it (R1a): set again, protection wins",
                ev.file,
                ev.seq,
                t.name_ja(),
                src.from.0,
                src.from.1
            ),
            false,
        ));
    }
    if !carried.is_empty() || src.self_info.is_some() || src.non_disclosure {
        out.journal.push(JournalLine::new(
            ev.file.to_string(),
            ev.seq,
            JournalEvent::Carry,
            format!("flags carried from {}/{} ({})", src.from.0, src.from.1, src.via),
        ));
        out.carries.push(CarryDone {
            source: src.clone(),
            to: (c.insurer, c.key),
            qualification_date,
            flags: carried,
        });
    }
}

fn apply_fukuhon(
    out: &mut Outcome,
    w: &Work,
    ev: &Event,
    f: &Fukuhon,
    store: &mut BTreeMap<InfoCode, Option<StoredFukuhon>>,
    end_flags: &BTreeMap<FlagKey, Flag>,
) {
    let Some(e) = out.after.as_ref().filter(|e| e.status != Status::Cancelled) else {
        return reject(
            out,
            &ev.file,
            ev.seq,
            "SubscriberKey",
            ErrorCode::StateConflict,
            "副本 for a subscriber who is not enrolled".into(),
            false,
        );
    };
    // R6: a disclosure setting overrides 不開示該当 when staff answer manually, so it is refused
    if f.disclosure == Some(DisclosureClassification::Disclose) {
        let nd = FlagType::NonDisclosure;
        let set_in = |flags: &BTreeMap<FlagKey, Flag>| {
            flags.contains_key(&(None, nd)) || flags.contains_key(&(Some(f.info_code), nd))
        };
        let flagged = set_in(&e.flags) || set_in(end_flags) || w.insurer_flags.contains_key(&(f.info_code, nd));
        if flagged {
            return reject(
                out,
                &ev.file,
                ev.seq,
                "DisclosureClassification",
                ErrorCode::DisclosureConflict,
                "DisclosureClassification 0 (開示) for a subscriber or InfoCode whose 不開示該当 flag is set".into(),
                false,
            );
        }
    }
    let current = store.get(&f.info_code).cloned().flatten();
    let ok = match f.operation {
        FukuhonOperation::Register => current.is_none(),
        FukuhonOperation::Update | FukuhonOperation::Delete => current.is_some(),
    };
    if !ok {
        let msg = if current.is_some() {
            "副本 is already registered for this InfoCode (use Operation 2)"
        } else {
            "no 副本 is registered for this InfoCode"
        };
        return reject(
            out,
            &ev.file,
            ev.seq,
            "Operation",
            ErrorCode::StateConflict,
            msg.into(),
            false,
        );
    }
    let before = out
        .fukuhon
        .get(&f.info_code)
        .map(|(b, _)| b.clone())
        .unwrap_or_else(|| current.clone());
    let next = match f.operation {
        FukuhonOperation::Delete => None,
        FukuhonOperation::Register => Some(StoredFukuhon {
            effective_date: f.effective_date,
            disclosure: f.disclosure,
            items: f.items.clone(),
            origin: ev.origin(),
        }),
        // 更新: an absent field (DisclosureClassification, an item) keeps the ledger's value
        FukuhonOperation::Update => {
            let cur = current.clone().expect("checked above");
            let mut items = cur.items;
            for (code, value) in &f.items {
                match items.iter_mut().find(|(c, _)| c == code) {
                    Some(slot) => slot.1 = value.clone(),
                    None => items.push((code.clone(), value.clone())),
                }
            }
            Some(StoredFukuhon {
                effective_date: f.effective_date,
                disclosure: f.disclosure.or(cur.disclosure),
                items,
                origin: ev.origin(),
            })
        }
    };
    store.insert(f.info_code, next);
    out.fukuhon.insert(
        f.info_code,
        (
            before,
            FukuhonOut {
                info_code: f.info_code,
                operation: f.operation,
                effective_date: f.effective_date,
                disclosure: f.disclosure,
                items: f.items.clone(),
            },
        ),
    );
    out.journal.push(JournalLine::new(
        ev.file.to_string(),
        ev.seq,
        JournalEvent::Fukuhon,
        format!("{} op {}", f.info_code, f.operation.code()),
    ));
}
