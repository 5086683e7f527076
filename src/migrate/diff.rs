//! The diff of a full source against the ledger (steps 2 and 3 of [`super`]): each desired state
//! is compared with the subscriber the ledger holds; the differences become engine records, the
//! diff rows stream to a spool file, and flags the ledger holds that the source does not are
//! flag losses.

use super::source::{Desired, DesiredFlags, DesiredPeriod, SourceItem};
use crate::domain::person::{Enrollment, Flag, FlagKey, Status};
use crate::domain::{
    ChangeType, Date, FlagChange, FlagOperation, FlagScope, FlagSource, FlagType, InsurerNumber, ReasonOfLoss,
    ReasonOfQualification, Record, SubscriberChange, SubscriberKey, Timestamp, self_info_column,
};
use crate::engine::spool::Spool;
use crate::error::{Diagnostic, ErrorCode};
use crate::ledger;
use crate::report::{RejectEntry, SummaryKey, Worklist};
use anyhow::Result;
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

/// One flag loss: one (subscriber, flag type, InfoCode) the ledger holds and the migrated state
/// would not.
#[derive(Clone, Debug)]
pub(super) struct Loss {
    pub(super) insurer: InsurerNumber,
    pub(super) key: SubscriberKey,
    pub(super) flag_type: FlagType,
    /// Empty for a whole-subscriber flag.
    pub(super) info_code: String,
    pub(super) absent: bool,
}

impl Loss {
    fn new(insurer: InsurerNumber, key: SubscriberKey, t: FlagType, absent: bool) -> Loss {
        Loss {
            insurer,
            key,
            flag_type: t,
            info_code: String::new(),
            absent,
        }
    }
    /// The canonical order: insurer, subscriber, flag type code, InfoCode.
    pub(super) fn sort_key(&self) -> (InsurerNumber, SubscriberKey, &'static str, &str, bool) {
        (
            self.insurer,
            self.key,
            self.flag_type.code(),
            &self.info_code,
            self.absent,
        )
    }
}

/// The canonical flag-loss list: `flag_losses.csv` as written into the report, one row per loss
/// in (insurer, subscriber, flag type, InfoCode) order. Its SHA-256 is what
/// `--accept-flag-losses` names.
pub(super) fn loss_list(losses: &[Loss], sha: Option<&str>) -> Worklist {
    Worklist {
        title: match sha {
            Some(h) => {
                format!("フラグ喪失 — flags the ledger holds that the source does not (critical); list SHA-256 {h}")
            }
            None => String::new(),
        },
        columns: vec!["insurer", "subscriber_key", "flag_type", "info_code", "flag_ja", "why"],
        rows: losses
            .iter()
            .map(|l| {
                vec![
                    l.insurer.to_string(),
                    l.key.to_string(),
                    l.flag_type.name_en().to_owned(),
                    l.info_code.clone(),
                    l.flag_type.name_ja().to_owned(),
                    if l.absent {
                        "absent from the source (ledger keeps the subscriber and its flags)"
                    } else {
                        "flag off in the source"
                    }
                    .into(),
                ]
            })
            .collect(),
    }
}

/// How a source subscriber differs from the ledger (diff.csv's `kind`, the report's counts). A
/// subscriber is one of the first five; `Unapplied` is counted besides, for a subscriber some of
/// whose source values the ledger cannot take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum DiffKind {
    New,
    Changed,
    Unchanged,
    Absent,
    Rejected,
    Unapplied,
}

impl DiffKind {
    /// Every kind, in the order the report lists them.
    pub(super) const ALL: [DiffKind; 6] = [
        DiffKind::New,
        DiffKind::Changed,
        DiffKind::Unchanged,
        DiffKind::Absent,
        DiffKind::Rejected,
        DiffKind::Unapplied,
    ];

    /// The kinds a subscriber is exactly one of (the charts' bars).
    pub(super) const EXCLUSIVE: [DiffKind; 5] = [
        DiffKind::New,
        DiffKind::Changed,
        DiffKind::Unchanged,
        DiffKind::Absent,
        DiffKind::Rejected,
    ];

    /// The name diff.csv and report.json use.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DiffKind::New => "new",
            DiffKind::Changed => "changed",
            DiffKind::Unchanged => "unchanged",
            DiffKind::Absent => "absent",
            DiffKind::Rejected => "rejected",
            DiffKind::Unapplied => "unapplied",
        }
    }

    /// The summary counter of the kind.
    pub(super) fn counter(self) -> SummaryKey {
        match self {
            DiffKind::New => SummaryKey::MigrationNew,
            DiffKind::Changed => SummaryKey::MigrationChanged,
            DiffKind::Unchanged => SummaryKey::MigrationUnchanged,
            DiffKind::Absent => SummaryKey::MigrationAbsent,
            DiffKind::Rejected => SummaryKey::MigrationRejected,
            DiffKind::Unapplied => SummaryKey::MigrationUnapplied,
        }
    }
}

/// Streams source records against the ledger.
pub(super) struct Differ<'a> {
    pub(super) conn: &'a Connection,
    pub(super) as_of: Date,
    pub(super) file: Arc<str>,
    /// The differences as engine records, partitioned by subscriber (spilled when large).
    pub(super) batch: Spool,
    /// A spill write error (disk full), reported after the source is read.
    pub(super) batch_error: Option<anyhow::Error>,
    pub(super) seq: u64,
    pub(super) seen: HashMap<InsurerNumber, HashSet<u64>>,
    pub(super) spool: std::io::BufWriter<std::fs::File>,
    pub(super) diff_rows: u64,
    pub(super) counts: BTreeMap<(InsurerNumber, DiffKind), u64>,
    pub(super) losses: Vec<Loss>,
    pub(super) rejects: Vec<RejectEntry>,
    pub(super) flag_sets: u64,
}

impl Differ<'_> {
    pub(super) fn push(&mut self, r: Record) {
        if self.batch_error.is_none() {
            if let Err(e) = self.batch.push(0, r) {
                self.batch_error = Some(e);
            }
        }
    }
}

fn key_num(k: SubscriberKey) -> u64 {
    k.as_str().parse().expect("16 digits")
}

const FLAG_TYPES: [FlagType; 3] = [
    FlagType::SelfInfoProvisionProhibited,
    FlagType::NonDisclosure,
    FlagType::AutoResponseProhibited,
];

fn flag_state(f: &DesiredFlags) -> String {
    format!(
        "SelfInfoProvisionProhibited={} NonDisclosure={} AutoResponseProhibited={}",
        self_info_column(f.self_info),
        u8::from(f.non_disclosure),
        u8::from(f.auto_response)
    )
}

impl Differ<'_> {
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(super) fn row(
        &mut self,
        ins: &str,
        key: &str,
        change: &'static str,
        fields: &str,
        flags: &str,
        changes: &str,
        note: &str,
    ) -> Result<()> {
        let cells = [ins, key, change, fields, flags, changes, note];
        let line = cells
            .iter()
            .map(|c| crate::formats::writer::csv_escape(&crate::report::neutral_cell(c)).into_owned())
            .collect::<Vec<_>>()
            .join(",");
        self.spool.write_all(line.as_bytes())?;
        self.spool.write_all(b"\r\n")?;
        self.diff_rows += 1;
        Ok(())
    }

    fn count(&mut self, ins: InsurerNumber, kind: DiffKind) {
        *self.counts.entry((ins, kind)).or_default() += 1;
    }

    fn reject(&mut self, faults: Vec<Diagnostic>, critical: bool) {
        self.rejects
            .extend(faults.iter().map(|d| RejectEntry::from_diag(d, critical)));
    }

    pub(super) fn item(&mut self, item: SourceItem) -> Result<()> {
        match item {
            SourceItem::Rejected { key, faults } => {
                // A rejected record changes nothing; its subscriber is not "absent".
                let critical = match key {
                    Some((i, k)) => {
                        self.seen.entry(i).or_default().insert(key_num(k));
                        ledger::load_enrollment(self.conn, i, k)?.is_some_and(|e| !e.flags.is_empty())
                    }
                    None => false,
                };
                let codes: Vec<String> = faults
                    .iter()
                    .map(|d| format!("{} {}", d.field.as_deref().unwrap_or(""), d.code))
                    .collect();
                self.reject(faults, critical);
                let (i, k) = key.map(|(i, k)| (i.to_string(), k.to_string())).unwrap_or_default();
                if let Some((ins, _)) = key {
                    self.count(ins, DiffKind::Rejected);
                }
                self.row(&i, &k, DiffKind::Rejected.as_str(), "", "", "", &codes.join("; "))
            }
            SourceItem::Record(d) => self.record(*d),
        }
    }

    /// Rejects a whole source record (E_SCHEMA on `field`) and lists it as rejected.
    fn reject_record(&mut self, d: &Desired, field: &'static str, message: &str, note: &str) -> Result<()> {
        let (ins, key) = (d.base.insurer, d.base.key);
        let diag = Diagnostic::new(&*self.file, ErrorCode::Schema, message)
            .line(d.line)
            .seq(d.seq)
            .field(field);
        self.reject(vec![diag], false);
        self.count(ins, DiffKind::Rejected);
        self.row(
            ins.as_str(),
            key.as_str(),
            DiffKind::Rejected.as_str(),
            "",
            "",
            "",
            note,
        )
    }

    fn record(&mut self, d: Desired) -> Result<()> {
        let (ins, key) = (d.base.insurer, d.base.key);
        if !self.seen.entry(ins).or_default().insert(key_num(key)) {
            return self.reject_record(
                &d,
                "SubscriberKey",
                "the subscriber appears more than once in the source; only its first record is used",
                "duplicate SubscriberKey",
            );
        }
        let before = ledger::load_enrollment(self.conn, ins, key)?;
        let is_new = before.as_ref().is_none_or(|b| b.status == Status::Cancelled);
        if is_new && d.base.municipality.is_none() && (ins.is_kokuho() || ins.is_kouki()) {
            return self.reject_record(
                &d,
                "MunicipalityCode",
                "MunicipalityCode is required for a new 国保/後期 subscriber; the snapshot format does not carry it (pass --municipality)",
                "MunicipalityCode E_SCHEMA",
            );
        }
        let mut fields: Vec<&'static str> = Vec::new();
        let mut unapplied: Vec<String> = Vec::new();
        if is_new {
            self.new_subscriber(&d);
        } else {
            let b = before.as_ref().expect("existing");
            self.update_subscriber(&d, b, &mut fields, &mut unapplied);
        }
        // flags, whole subscriber, per type
        let empty = BTreeMap::new();
        let held: &BTreeMap<FlagKey, Flag> = before.as_ref().map_or(&empty, |b| &b.flags);
        let (changes, lost) = self.diff_flags(&d, held);
        let scoped = held.keys().filter(|k| k.0.is_some()).count();
        if scoped > 0 {
            unapplied.push(format!("{scoped} InfoCode-scoped flag(s) kept (not in the source)"));
        }
        for t in lost {
            self.losses.push(Loss::new(ins, key, t, false));
        }
        let kind = if is_new {
            DiffKind::New
        } else if fields.is_empty() && changes.is_empty() && unapplied.iter().all(|u| u.contains("InfoCode-scoped")) {
            DiffKind::Unchanged
        } else {
            DiffKind::Changed
        };
        self.count(ins, kind);
        let real_unapplied = unapplied.iter().filter(|u| !u.contains("InfoCode-scoped")).count();
        if real_unapplied > 0 {
            self.count(ins, DiffKind::Unapplied);
        }
        self.row(
            ins.as_str(),
            key.as_str(),
            kind.as_str(),
            &fields.join(" "),
            &flag_state(&d.flags),
            &changes.join(" "),
            &unapplied.join("; "),
        )
    }

    /// The whole-subscriber flags, per type: what changes (`+`set, `~`reason, `-`lost, for the
    /// diff row), with a FlagChange set for each flag to set; and the types lost.
    fn diff_flags(&mut self, d: &Desired, held: &BTreeMap<FlagKey, Flag>) -> (Vec<String>, Vec<FlagType>) {
        let (ins, key) = (d.base.insurer, d.base.key);
        let mut changes = Vec::new();
        let mut lost = Vec::new();
        for t in FLAG_TYPES {
            let h = held.get(&(None, t));
            let want = d.flags.holds(t);
            let set = match (h, want) {
                (None, true) => {
                    changes.push(format!("+{}", t.name_en()));
                    true
                }
                (Some(f), true) if t == FlagType::SelfInfoProvisionProhibited && f.reason != d.flags.self_info => {
                    changes.push(format!(
                        "~{}(reason {})",
                        t.name_en(),
                        self_info_column(d.flags.self_info)
                    ));
                    true
                }
                (Some(_), false) => {
                    changes.push(format!("-{}", t.name_en()));
                    lost.push(t);
                    false
                }
                _ => false,
            };
            if set {
                let seq = self.next_seq();
                self.flag_sets += 1;
                self.push(Record::FlagChange(FlagChange {
                    seq,
                    effective_time: Timestamp::start_of(self.as_of),
                    flag_type: t,
                    operation: FlagOperation::Set,
                    scope: FlagScope::Subscriber,
                    insurer: ins,
                    key: Some(key),
                    info_code: None,
                    reason: if t == FlagType::SelfInfoProvisionProhibited {
                        d.flags.self_info
                    } else {
                        None
                    },
                    source: FlagSource::Other,
                    support_measure_end: None,
                }));
            }
        }
        (changes, lost)
    }

    fn acquisition(&mut self, d: &Desired, p: &DesiredPeriod) {
        let seq = self.next_seq();
        let mut c = d.base.clone();
        c.seq = seq;
        c.change_type = ChangeType::Acquisition;
        c.effective_date = self.as_of;
        c.card_symbol = p.card_symbol.clone();
        c.card_number = Some(p.card_number.clone());
        c.branch = Some(p.branch);
        c.qualification_date = Some(p.qualification_date);
        c.reason_of_qualification = Some(p.reason_of_qualification.unwrap_or(ReasonOfQualification::Other));
        c.disqualification_date = None;
        c.reason_of_loss = None;
        c.personal_family = Some(p.personal_family);
        self.push(Record::SubscriberChange(c));
        if let Some(dq) = p.disqualification_date {
            let seq = self.next_seq();
            let mut l = SubscriberChange::keys_only(seq, ChangeType::Loss, self.as_of, d.base.insurer, d.base.key);
            l.disqualification_date = Some(dq);
            l.reason_of_loss = Some(p.reason_of_loss.unwrap_or(ReasonOfLoss::Other));
            self.push(Record::SubscriberChange(l));
        }
    }

    /// Every period as a 資格取得 (and 資格喪失 when it ended), oldest first.
    fn new_subscriber(&mut self, d: &Desired) {
        for p in &d.periods {
            self.acquisition(d, p);
        }
    }

    fn update_subscriber(
        &mut self,
        d: &Desired,
        b: &Enrollment,
        fields: &mut Vec<&'static str>,
        unapplied: &mut Vec<String>,
    ) {
        let c = &d.base;
        let mut u = SubscriberChange::keys_only(0, ChangeType::Update, self.as_of, c.insurer, c.key);
        macro_rules! opt {
            ($name:literal, $src:expr, $dst:expr, $ledger:expr) => {
                if $src.is_some() && $src != $ledger {
                    fields.push($name);
                    $dst = $src.clone();
                }
            };
        }
        opt!(
            "IndividualNumber",
            c.individual_number,
            u.individual_number,
            b.individual_number
        );
        opt!("MunicipalityCode", c.municipality, u.municipality, b.municipality);
        opt!("ResidentCode", c.resident, u.resident, b.resident);
        opt!("Name", c.name, u.name, Some(b.name.clone()));
        opt!("NameKana", c.name_kana, u.name_kana, Some(b.name_kana.clone()));
        opt!("Sex1", c.sex, u.sex, Some(b.sex));
        opt!("Birthdate", c.birthdate, u.birthdate, Some(b.birthdate));
        opt!("PostNumber", c.post_number, u.post_number, b.post_number);
        opt!("Address", c.address, u.address, b.address);
        for (name, ledger_has, src_has) in [
            ("PostNumber", b.post_number.is_some(), c.post_number.is_some()),
            ("Address", b.address.is_some(), c.address.is_some()),
        ] {
            if ledger_has && !src_has {
                unapplied.push(format!("{name} empty in the source (a 記載事項変更 cannot clear it)"));
            }
        }
        let (lp, sp) = (b.periods.len(), d.periods.len());
        if sp < lp {
            unapplied.push(format!(
                "QualificationHistory: the source has {sp} period(s), the ledger {lp}"
            ));
        } else if lp > 0 {
            diff_current_period(b, d, &mut u, fields, unapplied);
        }
        if !fields.is_empty() {
            u.seq = self.next_seq();
            self.push(Record::SubscriberChange(u));
        }
        // periods the ledger does not hold yet: new acquisitions after the last one
        if sp > lp && (lp == 0 || b.status != Status::Active || d.periods[lp - 1].disqualification_date.is_some()) {
            fields.push("QualificationPeriods");
            for p in &d.periods[lp..] {
                self.acquisition(d, p);
            }
        } else if sp > lp {
            unapplied.push("QualificationHistory: new periods after an active one".into());
        }
    }

    /// Ledger subscribers of `ins` the source did not list.
    pub(super) fn absent(&mut self, ins: InsurerNumber) -> Result<()> {
        let seen = self.seen.get(&ins);
        let found =
            ledger::uncancelled_with_flags(self.conn, ins, |key| seen.is_some_and(|s| s.contains(&key_num(key))))?;
        for (key, mut fl) in found {
            fl.sort_by_key(|t| std::cmp::Reverse(t.code()));
            self.count(ins, DiffKind::Absent);
            let changes: Vec<String> = fl.iter().map(|t| format!("-{}", t.name_en())).collect();
            self.row(
                ins.as_str(),
                key.as_str(),
                DiffKind::Absent.as_str(),
                "",
                "",
                &changes.join(" "),
                "not in the source; the ledger keeps it unchanged",
            )?;
            for t in fl {
                self.losses.push(Loss::new(ins, key, t, true));
            }
        }
        Ok(())
    }
}

/// The earlier periods must equal the ledger's (a 記載事項変更 cannot rewrite them); the current
/// one's differences go into the update `u` (or `unapplied` when it cannot express them).
fn diff_current_period(
    b: &Enrollment,
    d: &Desired,
    u: &mut SubscriberChange,
    fields: &mut Vec<&'static str>,
    unapplied: &mut Vec<String>,
) {
    let lp = b.periods.len();
    for i in 0..lp - 1 {
        let (l, s) = (&b.periods[i], &d.periods[i]);
        let same = l.card_symbol == s.card_symbol
            && l.card_number == s.card_number
            && l.branch == s.branch
            && l.qualification_date == s.qualification_date
            && l.disqualification_date == s.disqualification_date
            && l.reason_of_loss == s.reason_of_loss
            && l.personal_family == s.personal_family
            && s.reason_of_qualification.is_none_or(|r| r == l.reason_of_qualification);
        if !same {
            unapplied.push(format!("QualificationHistory: period {} differs", i + 1));
        }
    }
    let (l, s) = (&b.periods[lp - 1], &d.periods[lp - 1]);
    if s.card_symbol.is_some() && s.card_symbol != l.card_symbol {
        fields.push("InsuredCardSymbol");
        u.card_symbol = s.card_symbol.clone();
    } else if s.card_symbol.is_none() && l.card_symbol.is_some() {
        unapplied.push("InsuredCardSymbol empty in the source (a 記載事項変更 cannot clear it)".into());
    }
    if s.card_number != l.card_number {
        fields.push("InsuredIdentificationNumber");
        u.card_number = Some(s.card_number.clone());
    }
    if s.branch != l.branch {
        fields.push("InsuredBranchNumber");
        u.branch = Some(s.branch);
    }
    if s.qualification_date != l.qualification_date {
        fields.push("QualificationDate");
        u.qualification_date = Some(s.qualification_date);
    }
    if s.reason_of_qualification
        .is_some_and(|r| r != l.reason_of_qualification)
    {
        fields.push("ReasonOfQualification");
        u.reason_of_qualification = s.reason_of_qualification;
    }
    if s.personal_family != l.personal_family {
        fields.push("PersonalFamilyClassification");
        u.personal_family = Some(s.personal_family);
    }
    match (l.disqualification_date, s.disqualification_date) {
        (None, Some(dq)) if b.status == Status::Active => {
            fields.push("DisqualificationDate");
            u.change_type = ChangeType::Loss;
            u.disqualification_date = Some(dq);
            u.reason_of_loss = Some(s.reason_of_loss.unwrap_or(ReasonOfLoss::Other));
        }
        (Some(a), Some(z)) if a != z || l.reason_of_loss != s.reason_of_loss => {
            if a != z {
                fields.push("DisqualificationDate");
            }
            if l.reason_of_loss != s.reason_of_loss {
                fields.push("ReasonOfLoss");
            }
            u.disqualification_date = Some(z);
            u.reason_of_loss = Some(s.reason_of_loss.unwrap_or(ReasonOfLoss::Other));
        }
        (Some(_), None) => unapplied.push(
            "DisqualificationDate empty in the source: reinstating a lost subscriber is not a 記載事項変更".into(),
        ),
        _ => {}
    }
}
