//! The reference model of issue 12: the spec's per-person flag semantics (v1.1 §3–§5, R1–R14,
//! with the engine's decisions D1–D6 where the spec is silent), in memory, written from the spec
//! and not from `src/`. It is the oracle of `tests/model.rs`: small on purpose, so that it can be
//! read and trusted.
//!
//! What it knows: a handful of persons, each with up to two 国保 enrollments (keys A and B at
//! 00131045) and one 後期 registration (at 39131040); enrollments with status, QualificationDate,
//! reason, a name that may hold 𠮷, and whether the server holds a registration (R14); whole-
//! subscriber flags with EffectiveTime, ReasonCode and Source, kept after a release (R1a);
//! pending flag events (R7, D1); hand-offs; carries (R3, D4); R13 inquiries (a registration
//! nothing matches is withheld while future-dated); withheld (R4, D5) and unsent (R14,
//! D6) groups. For every night it states what the run must show.
//!
//! Decisions of this model where neither the spec nor D1–D6 say (listed again in the test's
//! documentation, and in the report of the helper that wrote it):
//! - M1 Flags survive a 取消 (releasing is always an explicit act); a re-acquisition finds them.
//! - M2 A carry at a 資格取得 happens before the pending events (D1) are applied.
//! - M3 A late carry (R3: hand-off in a later run, 国保 flag set after the registration) happens
//!   after the registration's own events of that run; its triggers are an unmatched hand-off of
//!   the person in the ledger, or a candidate's protective flag that was unset before the run and
//!   is set after it. A withheld registration is not re-carried merely because it is retried.
//! - M4 A merged candidate (国保 enrollment + hand-off of the same key) holds a flag if either
//!   does; its ReasonCode is the enrollment's when the enrollment holds 自己情報提供不可.
//! - M5 A 資格取得 of an active enrollment, a 記載事項変更 or 取消 of one not enrolled, a 資格喪失
//!   of one not active, and a period that would overlap (QualificationDate before the previous
//!   DisqualificationDate, DisqualificationDate before the QualificationDate) are E_STATE_CONFLICT.
//! - M6 A delete (15) is refused like any group when the name has no Shift_JIS mapping.
//! - M7 A registration listed for flag confirmation because its 国保 enrollment or hand-off holds
//!   自動応答不可 (never carried) is not listed when, at the end of the run, the registration
//!   holds 自動応答不可 already (the union set it in the same run): nothing is left to confirm.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

/// 国保 of the test city (6-digit 131045, written zero-padded).
pub const KOKUHO: &str = "00131045";
/// The prefecture's union, 新宿区's number.
pub const KOUKI: &str = "39131040";
pub const MUNI: &str = "131041";
/// Wrong check digits (131041 and 00131045 are the valid ones).
pub const BAD_MUNI: &str = "131042";
pub const BAD_INSURER: &str = "00131046";

/// 国保 QualificationDates: long ago, or a re-entry.
pub const KOKUHO_Q: [&str; 2] = ["20100401", "20261201"];
/// 後期 QualificationDates: past, two days after the first night, far future.
pub const KOUKI_Q: [&str; 3] = ["20261116", "20261203", "20270110"];
pub const KOKUHO_DISQ: &str = "20261130";
pub const KOUKI_DISQ: &str = "20270131";
/// EffectiveTimes of 国保 flag events and of hand-offs' FlagSetTime (all before the union's).
pub const KOKUHO_T: [&str; 5] = [
    "20261105090000",
    "20261110090000",
    "20261110120000",
    "20261115090000",
    "20261120090000",
];
/// EffectiveTimes of the union's flag events: later than anything a carry can hold.
pub const KOUKI_T: [&str; 4] = ["20261121090000", "20261125090000", "20261125120000", "20261128090000"];
/// What a carried flag holds as EffectiveTime in the model: below every union time (the spec
/// leaves the carried time open; the generator keeps it out of every comparison).
const CARRIED_T: &str = "20261120235959";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum At {
    KokuhoA,
    KokuhoB,
    Kouki,
}

impl At {
    pub fn insurer(self) -> &'static str {
        match self {
            At::Kouki => KOUKI,
            _ => KOKUHO,
        }
    }
    pub fn is_kouki(self) -> bool {
        self == At::Kouki
    }
}

/// A subscriber of the model: (person, which enrollment).
pub type Sub = (usize, At);

pub fn sub_key(s: Sub) -> String {
    let (p, at) = s;
    match at {
        At::KokuhoA => format!("131045{p:06}0001"),
        At::KokuhoB => format!("131045{p:06}0002"),
        At::Kouki => format!("391310{p:06}0009"),
    }
}

pub fn birthdate(p: usize) -> String {
    format!("195201{:02}", 10 + p)
}
/// The 75th birthday: the 後期 acquisition date of the hand-off.
pub fn transition_date(p: usize) -> String {
    format!("202701{:02}", 10 + p)
}
pub fn resident(p: usize) -> String {
    format!("{}", 5001 + p)
}
pub fn my_number_body(p: usize) -> u64 {
    70_000 + p as u64
}
const FAMILY: [&str; 4] = ["山田", "鈴木", "佐藤", "田中"];
/// The person's name; `weird` puts 𠮷 (no CP932 mapping) in it.
pub fn name(p: usize, weird: bool) -> String {
    if weird {
        "𠮷田　花子".to_owned()
    } else {
        format!("{}　花子", FAMILY[p % 4])
    }
}

/// One input record, in the terms of the spec.
#[derive(Clone, Debug, PartialEq)]
pub enum Rec {
    /// 資格取得: `q` indexes [`KOKUHO_Q`] or [`KOUKI_Q`]; `reason` "01" / "02" / "03".
    Acq {
        p: usize,
        at: At,
        day: u8,
        q: usize,
        reason: &'static str,
        weird: bool,
        mn: bool,
    },
    /// 記載事項変更 of the name only.
    Update { p: usize, at: At, day: u8, weird: bool },
    /// 資格喪失 (DisqualificationDate [`KOKUHO_DISQ`] / [`KOUKI_DISQ`], ReasonOfLoss 99).
    Loss { p: usize, at: At, day: u8 },
    /// 取消.
    Cancel { p: usize, at: At, day: u8 },
    /// FlagChange, Scope 1, whole subscriber: `t` indexes [`KOKUHO_T`] or [`KOUKI_T`] by `at`;
    /// `reason` 1/2 for a set of type 3.
    Flag {
        p: usize,
        at: At,
        ty: u8,
        set: bool,
        reason: u8,
        t: usize,
    },
    /// AgeTransitionHandoff of the person's 国保 enrollment `src`; `self_info` 0/1/2.
    Handoff {
        p: usize,
        src: At,
        self_info: u8,
        nd: bool,
        auto: bool,
        t: usize,
        mn: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    SubscriberChange,
    FlagChange,
    Handoff,
}

impl Rec {
    pub fn kind(&self) -> Kind {
        match self {
            Rec::Flag { .. } => Kind::FlagChange,
            Rec::Handoff { .. } => Kind::Handoff,
            _ => Kind::SubscriberChange,
        }
    }
    pub fn at(&self) -> At {
        match *self {
            Rec::Acq { at, .. }
            | Rec::Update { at, .. }
            | Rec::Loss { at, .. }
            | Rec::Cancel { at, .. }
            | Rec::Flag { at, .. } => at,
            Rec::Handoff { src, .. } => src,
        }
    }
    pub fn person(&self) -> usize {
        match *self {
            Rec::Acq { p, .. }
            | Rec::Update { p, .. }
            | Rec::Loss { p, .. }
            | Rec::Cancel { p, .. }
            | Rec::Flag { p, .. }
            | Rec::Handoff { p, .. } => p,
        }
    }
    /// The sender, which is also the records' InsurerNumber (hand-offs come from 国保).
    pub fn sender(&self) -> &'static str {
        self.at().insurer()
    }
    /// R1: the event's effective date.
    pub fn date(&self) -> String {
        match *self {
            Rec::Acq { day, .. } | Rec::Update { day, .. } | Rec::Loss { day, .. } | Rec::Cancel { day, .. } => {
                format!("202611{day:02}")
            }
            Rec::Flag { .. } => self.flag_time()[..8].to_owned(),
            Rec::Handoff { .. } => transition_date(self.person()),
        }
    }
    pub fn flag_time(&self) -> &'static str {
        match *self {
            Rec::Flag { at: At::Kouki, t, .. } => KOUKI_T[t % KOUKI_T.len()],
            Rec::Flag { t, .. } | Rec::Handoff { t, .. } => KOKUHO_T[t % KOKUHO_T.len()],
            _ => "",
        }
    }
}

/// One input file: its records (one kind, one sender), when it arrives, its syntax and encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub recs: Vec<Rec>,
    /// The night it arrives on (0-based).
    pub night: usize,
    /// CreationTime's day in November (1–30); files are ordered by it, then by their index.
    pub day: u8,
    /// Index of a record written with a bad check digit.
    pub bad: Option<usize>,
    pub csv: bool,
    pub sjis: bool,
    /// Re-sent, byte for byte, this many nights later (must be skipped, R10).
    pub resend: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub persons: usize,
    pub nights: usize,
    pub files: Vec<File>,
    pub out_csv: bool,
    pub out_sjis: bool,
    /// `--unmappable replace` (else reject).
    pub replace: bool,
}

impl Case {
    /// The file's CreationTime: unique per case, so that file order is total.
    pub fn creation_time(&self, i: usize) -> String {
        format!("202611{:02}23{:02}00", self.files[i].day.clamp(1, 30), i % 60)
    }
    pub fn file_name(&self, i: usize) -> String {
        let f = &self.files[i];
        let kind = match f.recs[0].kind() {
            Kind::SubscriberChange => "SubscriberChange",
            Kind::FlagChange => "FlagChange",
            Kind::Handoff => "AgeTransitionHandoff",
        };
        format!(
            "{kind}_{}_{i:02}.{}",
            f.recs[0].sender(),
            if f.csv { "csv" } else { "xml" }
        )
    }
    pub fn file_identifier(&self, i: usize) -> String {
        format!("MODEL-{i:02}")
    }
    /// The records that are written: a person's hand-off from one 国保 key appears once in a
    /// history (a second one for the same key would be a different question).
    pub fn written(&self, i: usize) -> Vec<Rec> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (j, f) in self.files.iter().enumerate() {
            for r in &f.recs {
                if let Rec::Handoff { p, src, .. } = r
                    && !seen.insert((*p, *src))
                {
                    continue;
                }
                if j == i {
                    out.push(r.clone());
                }
            }
        }
        out
    }
    /// The age of an AgeTransitionDate test etc. is irrelevant; `as_of` of night `n`.
    pub fn as_of(n: usize) -> String {
        format!("202612{:02}", 1 + n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Lost,
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct Enrollment {
    pub status: Status,
    pub q: String,
    pub reason: &'static str,
    pub disq: Option<String>,
    pub weird: bool,
    /// The server holds a registration (R14: ProcessingCode 12, else 11).
    pub server: bool,
    /// Not published yet; every run writes it until it is.
    pub unsent: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FlagState {
    pub set: bool,
    pub time: String,
    /// ReasonCode of 自己情報提供不可.
    pub reason: Option<u8>,
    /// Source code (`4` for a carry).
    pub source: u8,
}

/// A flag event with its R1 position: (date, CreationTime, sender, FileSequence, RecordSequence).
#[derive(Clone, Debug)]
pub struct FlagEvent {
    pub order: (String, String, String, u64),
    pub file: String,
    pub seq: u64,
    pub ty: u8,
    pub set: bool,
    pub reason: u8,
    pub time: String,
}

#[derive(Clone, Debug)]
pub struct Handoff {
    pub self_info: u8,
    pub nd: bool,
    pub auto: bool,
    pub matched: bool,
}

/// The flags a carry candidate holds (M4).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CandFlags {
    pub self_info: Option<u8>,
    pub nd: bool,
    pub auto: bool,
}

impl CandFlags {
    fn has(&self, ty: u8) -> bool {
        match ty {
            1 => self.auto,
            2 => self.nd,
            _ => self.self_info.is_some(),
        }
    }
}

/// What one night's run must show.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub as_of: String,
    /// Files that arrive again (R10): name.
    pub skipped: BTreeSet<String>,
    /// (file, RecordSequence) → (code, critical).
    pub rejects: BTreeMap<(String, u64), (&'static str, bool)>,
    /// Groups refused for a character with no Shift_JIS mapping.
    pub refused: BTreeSet<Sub>,
    /// Groups to publish: ProcessingCode and the 02 row (self-info reason or 0, 不開示, 自動応答不可).
    pub publish: BTreeMap<Sub, (&'static str, (u8, bool, bool))>,
    /// Groups the engine may write too (subscribers this night's input concerns).
    pub may_publish: BTreeSet<Sub>,
    pub withheld: BTreeSet<Sub>,
    pub review: BTreeSet<Sub>,
    pub flag_confirmation: BTreeSet<Sub>,
    pub character_identification: BTreeSet<Sub>,
    /// Carries that set flags: registration → types set.
    pub carries: BTreeMap<Sub, Vec<u8>>,
    /// Pending flag events after the run: (subscriber, type, operation "set"/"release").
    pub pending: BTreeSet<(Sub, u8, &'static str)>,
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub enr: BTreeMap<Sub, Enrollment>,
    pub flags: BTreeMap<(Sub, u8), FlagState>,
    pub pending: BTreeMap<Sub, Vec<FlagEvent>>,
    pub handoffs: BTreeMap<Sub, Handoff>,
    /// FileIdentifiers already applied (R10).
    pub applied: BTreeSet<String>,
    /// R13: 01/02 registrations nothing matched when they were made, not matched since
    /// (inquired; a future-dated one is withheld while open).
    pub inquiry: BTreeSet<Sub>,
}

/// One event of the run, in R1 order.
struct Ev {
    order: (String, String, String, u64),
    file: String,
    seq: u64,
    rec: Rec,
}

struct Night<'a> {
    case: &'a Case,
    ex: Expect,
    touched: BTreeSet<Sub>,
    acquired: BTreeSet<Sub>,
    /// Registrations whose carry was ambiguous with a flagged candidate (review), or found
    /// 自動応答不可 not carried (flag_confirmation): listed unless cancelled by the end of the run.
    ambiguous: BTreeSet<Sub>,
    not_carried: BTreeSet<Sub>,
}

impl Model {
    pub fn is_set(&self, s: Sub, ty: u8) -> bool {
        self.flags.get(&(s, ty)).is_some_and(|f| f.set)
    }
    fn enrolled(&self, s: Sub) -> bool {
        self.enr.get(&s).is_some_and(|e| e.status != Status::Cancelled)
    }
    /// The 02 row the model holds for `s`: (self-info reason or 0, 不開示, 自動応答不可).
    pub fn control(&self, s: Sub) -> (u8, bool, bool) {
        let si = self
            .flags
            .get(&(s, 3))
            .filter(|f| f.set)
            .map_or(0, |f| f.reason.unwrap_or(0));
        (si, self.is_set(s, 2), self.is_set(s, 1))
    }

    /// Runs night `n` of `case`: applies what arrives and says what the run must show.
    pub fn night(&mut self, case: &Case, n: usize) -> Expect {
        let as_of = Case::as_of(n);
        let mut night = Night {
            case,
            ex: Expect {
                as_of: as_of.clone(),
                ..Default::default()
            },
            touched: BTreeSet::new(),
            acquired: BTreeSet::new(),
            ambiguous: BTreeSet::new(),
            not_carried: BTreeSet::new(),
        };
        // 1. the files of the night; re-sent ones are skipped (R10)
        let mut events: BTreeMap<Sub, Vec<Ev>> = BTreeMap::new();
        let mut arriving: Vec<usize> = (0..case.files.len()).filter(|&i| case.files[i].night == n).collect();
        arriving.sort_by_key(|&i| (case.creation_time(i), case.files[i].recs[0].sender()));
        for i in 0..case.files.len() {
            let f = &case.files[i];
            if f.resend.is_some_and(|d| f.night + d == n) {
                night.ex.skipped.insert(resent_name(&case.file_name(i)));
            }
        }
        for &i in &arriving {
            let id = case.file_identifier(i);
            if !self.applied.insert(id) {
                continue;
            }
            let f = &case.files[i];
            for (j, rec) in case.written(i).into_iter().enumerate() {
                let seq = j as u64 + 1;
                let file = case.file_name(i);
                night.ex.may_publish.insert((rec.person(), rec.at()));
                night.ex.may_publish.insert((rec.person(), At::Kouki));
                if f.bad == Some(j) {
                    let critical = rec.kind() != Kind::SubscriberChange;
                    night.ex.rejects.insert((file, seq), ("E_CHECK_DIGIT", critical));
                    continue;
                }
                if let Rec::Handoff {
                    p,
                    src,
                    self_info,
                    nd,
                    auto,
                    ..
                } = rec
                {
                    self.handoffs.insert(
                        (p, src),
                        Handoff {
                            self_info,
                            nd,
                            auto,
                            matched: false,
                        },
                    );
                    continue;
                }
                let order = (rec.date(), case.creation_time(i), rec.sender().to_owned(), seq);
                events
                    .entry((rec.person(), rec.at()))
                    .or_default()
                    .push(Ev { order, file, seq, rec });
            }
        }
        // 2. everything but 後期 first, then 後期 (a carry sees the 国保 state after the run)
        let before = self.flags.clone();
        let subs: BTreeSet<Sub> = events.keys().copied().collect();
        for s in subs.iter().filter(|s| !s.1.is_kouki()) {
            let evs = events.remove(s).unwrap_or_default();
            self.subscriber(&mut night, *s, evs);
        }
        for s in subs.iter().filter(|s| s.1.is_kouki()) {
            let evs = events.remove(s).unwrap_or_default();
            self.subscriber(&mut night, *s, evs);
        }
        // 3. late carries (R3, M3)
        let persons: BTreeSet<usize> = (0..case.persons).collect();
        for p in persons {
            let r = (p, At::Kouki);
            let Some(e) = self.enr.get(&r) else { continue };
            if e.status == Status::Cancelled || !matches!(e.reason, "01" | "02") || night.acquired.contains(&r) {
                continue;
            }
            let handoff_waits = self.handoffs.iter().any(|(k, h)| k.0 == p && !h.matched);
            let newly_flagged = [At::KokuhoA, At::KokuhoB].into_iter().any(|a| {
                [2u8, 3].into_iter().any(|t| {
                    let was = before.get(&((p, a), t)).is_some_and(|f| f.set);
                    !was && self.is_set((p, a), t) && self.enrolled((p, a))
                })
            });
            if handoff_waits || newly_flagged {
                self.carry(&mut night, r, handoff_waits);
            }
        }
        for s in std::mem::take(&mut night.ambiguous) {
            if self.enrolled(s) {
                night.ex.review.insert(s);
            }
        }
        for s in std::mem::take(&mut night.not_carried) {
            // M7: a registration whose 自動応答不可 the union set itself by the end of the run
            // has nothing left to confirm
            if self.enrolled(s) && !self.is_set(s, 1) {
                night.ex.flag_confirmation.insert(s);
            }
        }
        // R13: an inquiry closes once anything matches its registration (a 国保 enrollment, a
        // hand-off or an answer)
        let open: Vec<Sub> = self.inquiry.iter().copied().collect();
        for r in open {
            if !self.candidates(r.0).is_empty() {
                self.inquiry.remove(&r);
            }
        }
        // 4. publish (R2, R4, R14)
        let unsent: BTreeSet<Sub> = self.enr.iter().filter(|(_, e)| e.unsent).map(|(s, _)| *s).collect();
        let to_write: BTreeSet<Sub> = night.touched.union(&unsent).copied().collect();
        for s in to_write {
            self.publish(&mut night, s, &as_of);
        }
        // pending flags (R7) are listed
        for (s, evs) in &self.pending {
            for ev in evs {
                night
                    .ex
                    .pending
                    .insert((*s, ev.ty, if ev.set { "set" } else { "release" }));
            }
        }
        night.ex
    }

    /// Applies one subscriber's events of the run, in R1 order.
    fn subscriber(&mut self, night: &mut Night, s: Sub, mut evs: Vec<Ev>) {
        evs.sort_by(|a, b| a.order.cmp(&b.order));
        // D1: events waiting for the enrollment, in R1 order whatever run they came in
        let mut waiting = self.pending.remove(&s).unwrap_or_default();
        for ev in evs {
            let conflict = |night: &mut Night| {
                night
                    .ex
                    .rejects
                    .insert((ev.file.clone(), ev.seq), ("E_STATE_CONFLICT", false));
            };
            match ev.rec {
                Rec::Flag { ty, set, reason, .. } => {
                    let fe = FlagEvent {
                        order: ev.order.clone(),
                        file: ev.file.clone(),
                        seq: ev.seq,
                        ty,
                        set,
                        reason,
                        time: ev.rec.flag_time().to_owned(),
                    };
                    if self.enrolled(s) {
                        self.flag(night, s, &fe);
                    } else {
                        waiting.push(fe);
                        waiting.sort_by(|a, b| a.order.cmp(&b.order));
                    }
                }
                Rec::Acq { q, reason, weird, .. } => {
                    let qd = if s.1.is_kouki() {
                        KOUKI_Q[q % KOUKI_Q.len()]
                    } else {
                        KOKUHO_Q[q % KOKUHO_Q.len()]
                    };
                    let prior = self.enr.get(&s).cloned();
                    match &prior {
                        Some(e) if e.status == Status::Active => {
                            conflict(night);
                            continue;
                        }
                        Some(e) if e.status == Status::Lost && e.disq.as_deref().is_some_and(|d| qd < d) => {
                            conflict(night);
                            continue;
                        }
                        _ => {}
                    }
                    let (server, _) = prior.as_ref().map_or((false, false), |e| (e.server, e.unsent));
                    self.enr.insert(
                        s,
                        Enrollment {
                            status: Status::Active,
                            q: qd.to_owned(),
                            reason,
                            disq: None,
                            weird,
                            server,
                            unsent: false,
                        },
                    );
                    night.touched.insert(s);
                    night.acquired.insert(s);
                    if s.1.is_kouki() && matches!(reason, "01" | "02") {
                        if self.candidates(s.0).is_empty() {
                            self.inquiry.insert(s); // R13: nothing to match: inquired
                        }
                        self.carry(night, s, true); // M2: before the pending events
                    }
                    for fe in std::mem::take(&mut waiting) {
                        self.flag(night, s, &fe);
                    }
                }
                Rec::Update { weird, .. } => {
                    if !self.enrolled(s) {
                        conflict(night);
                        continue;
                    }
                    self.enr.get_mut(&s).expect("enrolled").weird = weird;
                    night.touched.insert(s);
                }
                Rec::Loss { .. } => {
                    let disq = if s.1.is_kouki() { KOUKI_DISQ } else { KOKUHO_DISQ };
                    match self.enr.get_mut(&s) {
                        Some(e) if e.status == Status::Active && e.q.as_str() <= disq => {
                            e.status = Status::Lost;
                            e.disq = Some(disq.to_owned());
                            night.touched.insert(s);
                        }
                        _ => conflict(night),
                    }
                }
                Rec::Cancel { .. } => {
                    if !self.enrolled(s) {
                        conflict(night);
                        continue;
                    }
                    self.enr.get_mut(&s).expect("enrolled").status = Status::Cancelled;
                    self.inquiry.remove(&s); // R13: a 取消 drops its inquiry
                    night.touched.insert(s);
                }
                Rec::Handoff { .. } => unreachable!("hand-offs are stored, not applied"),
            }
        }
        if !waiting.is_empty() {
            self.pending.insert(s, waiting);
        }
    }

    /// One flag event on an enrolled subscriber: R1a with D2 and D3.
    fn flag(&mut self, night: &mut Night, s: Sub, fe: &FlagEvent) {
        let cur = self.flags.get(&(s, fe.ty)).cloned();
        let stale = cur.as_ref().is_some_and(|c| fe.time < c.time);
        let reject = |night: &mut Night, code: &'static str| {
            night.ex.rejects.insert((fe.file.clone(), fe.seq), (code, true));
        };
        let new = FlagState {
            set: true,
            time: fe.time.clone(),
            reason: (fe.ty == 3).then_some(fe.reason),
            source: 1,
        };
        if !fe.set {
            match cur {
                None => reject(night, "E_STATE_CONFLICT"),
                Some(_) if stale => {
                    reject(night, "E_STALE_EVENT");
                    night.ex.review.insert(s);
                }
                Some(c) if !c.set => reject(night, "E_STATE_CONFLICT"),
                Some(_) => {
                    self.flags.insert(
                        (s, fe.ty),
                        FlagState {
                            set: false,
                            time: fe.time.clone(),
                            reason: None,
                            source: 1,
                        },
                    );
                    night.touched.insert(s);
                }
            }
            return;
        }
        match cur {
            Some(c) if stale && c.set => {
                night.ex.review.insert(s); // kept unchanged
            }
            Some(_) if stale => {
                self.flags.insert((s, fe.ty), new); // protection wins
                night.ex.review.insert(s);
                night.touched.insert(s);
            }
            _ => {
                self.flags.insert((s, fe.ty), new);
                night.touched.insert(s);
            }
        }
    }

    /// R3 candidates of person `p` (D4): 国保 enrollments not cancelled and hand-offs, merged by
    /// 国保 key (M4).
    pub fn candidates(&self, p: usize) -> BTreeMap<At, CandFlags> {
        let mut c: BTreeMap<At, CandFlags> = BTreeMap::new();
        for a in [At::KokuhoA, At::KokuhoB] {
            if self.enrolled((p, a)) {
                let f = c.entry(a).or_default();
                if self.is_set((p, a), 3) {
                    f.self_info = self.flags[&((p, a), 3)].reason;
                }
                f.nd |= self.is_set((p, a), 2);
                f.auto |= self.is_set((p, a), 1);
            }
            if let Some(h) = self.handoffs.get(&(p, a)) {
                let f = c.entry(a).or_default();
                if f.self_info.is_none() && h.self_info != 0 {
                    f.self_info = Some(h.self_info);
                }
                f.nd |= h.nd;
                f.auto |= h.auto;
            }
        }
        c
    }

    /// R3 carry onto registration `r` (D4).
    /// `relist`: a 自動応答不可 that is not carried is listed again even when nothing else is
    /// carried (at the acquisition, and for a hand-off); a late carry triggered only by a 国保
    /// flag lists it only when it carries something.
    fn carry(&mut self, night: &mut Night, r: Sub, relist: bool) {
        let p = r.0;
        let cands = self.candidates(p);
        if cands.len() >= 2 {
            if [2u8, 3]
                .iter()
                .any(|&t| !self.is_set(r, t) && cands.values().any(|c| c.has(t)))
            {
                night.ambiguous.insert(r);
            }
            return;
        }
        let Some(c) = cands.into_values().next() else { return };
        let mut carried = Vec::new();
        for t in [3u8, 2] {
            if c.has(t) && !self.is_set(r, t) {
                self.flags.insert(
                    (r, t),
                    FlagState {
                        set: true,
                        time: CARRIED_T.to_owned(),
                        reason: if t == 3 { c.self_info } else { None },
                        source: 4,
                    },
                );
                carried.push(t);
            }
        }
        if c.auto && !self.is_set(r, 1) && (relist || !carried.is_empty()) {
            night.not_carried.insert(r); // 自動応答不可 is never carried
        }
        if !carried.is_empty() {
            night.touched.insert(r);
            night.ex.carries.entry(r).or_default().extend(carried);
        }
        for (k, h) in self.handoffs.iter_mut() {
            if k.0 == p {
                h.matched = true;
            }
        }
    }

    /// D5 (and D4's ambiguous case): the protective flags `r` lacks that a candidate holds, when
    /// that withholds the group.
    pub fn withheld(&self, r: Sub, as_of: &str) -> bool {
        let Some(e) = self
            .enr
            .get(&r)
            .filter(|e| r.1.is_kouki() && e.status != Status::Cancelled)
        else {
            return false;
        };
        let cands = self.candidates(r.0);
        let lacks = [2u8, 3]
            .iter()
            .any(|&t| !self.is_set(r, t) && cands.values().any(|c| c.has(t)));
        let ambiguous = cands.len() >= 2 && matches!(e.reason, "01" | "02");
        // R13: unanswered, future-dated
        let unanswered = self.inquiry.contains(&r) && e.q.as_str() > as_of;
        (lacks && (e.q.as_str() > as_of || ambiguous)) || unanswered
    }

    /// R2/R4/R14 for one group to write (D5, D6).
    fn publish(&mut self, night: &mut Night, s: Sub, as_of: &str) {
        let refuse = night.case.out_sjis && !night.case.replace;
        let withheld = self.withheld(s, as_of);
        let control = self.control(s);
        let e = self.enr.get_mut(&s).expect("a written subscriber is in the ledger");
        if e.status == Status::Cancelled {
            if !e.server {
                e.unsent = false; // 取消 of a subscriber never published writes nothing
                return;
            }
            if e.weird && refuse {
                e.unsent = true;
                night.ex.refused.insert(s);
                return;
            }
            e.server = false;
            e.unsent = false;
            night.ex.publish.insert(s, ("15", control));
            return;
        }
        if withheld {
            e.unsent = true;
            night.ex.withheld.insert(s);
            night.ex.review.insert(s);
            return;
        }
        if e.weird && refuse {
            e.unsent = true;
            night.ex.refused.insert(s);
            return;
        }
        if e.weird && night.case.out_sjis {
            night.ex.character_identification.insert(s);
        }
        let code = if e.server { "12" } else { "11" };
        e.server = true;
        e.unsent = false;
        night.ex.publish.insert(s, (code, control));
    }

    /// The engine wrote a group the model did not require (allowed for a subscriber the night's
    /// input concerns): the server now holds it.
    pub fn published_extra(&mut self, s: Sub) {
        if let Some(e) = self.enr.get_mut(&s) {
            e.server = e.status != Status::Cancelled;
            e.unsent = false;
        }
    }

    /// The ledger's whole-subscriber flags as the model holds them:
    /// (insurer, key, type) → (ReasonCode, Source, EffectiveTime unless carried).
    pub fn ledger_flags(&self) -> LedgerFlags {
        self.flags
            .iter()
            .filter(|(_, f)| f.set)
            .map(|((s, t), f)| {
                (
                    (s.1.insurer().to_owned(), sub_key(*s), t.to_string()),
                    (
                        f.reason.map(|r| r.to_string()).unwrap_or_default(),
                        f.source.to_string(),
                        (f.source != 4).then(|| f.time.clone()),
                    ),
                )
            })
            .collect()
    }
}

/// The history in a few lines, for failure messages.
pub fn describe(case: &Case) -> String {
    let mut s = format!(
        "{} persons, {} nights, output {} {} unmappable {}\n",
        case.persons,
        case.nights,
        if case.out_csv { "csv" } else { "xml" },
        if case.out_sjis { "shift_jis" } else { "utf-8" },
        if case.replace { "replace" } else { "reject" }
    );
    for (i, f) in case.files.iter().enumerate() {
        s += &format!(
            "  {} (night {}, {} {}, bad {:?}, resend {:?}): {:?}\n",
            case.file_name(i),
            f.night,
            case.creation_time(i),
            if f.sjis { "sjis" } else { "utf-8" },
            f.bad,
            f.resend,
            f.recs
        );
    }
    s
}

/// (insurer, key, type) → (ReasonCode, Source, EffectiveTime; `None` where not compared).
pub type LedgerFlags = BTreeMap<(String, String, String), (String, String, Option<String>)>;

pub fn resent_name(name: &str) -> String {
    let (stem, ext) = name.rsplit_once('.').expect("an extension");
    format!("{stem}_again.{ext}")
}
