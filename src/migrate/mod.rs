//! `migrate`: bring a ledger in line with a full source — a SubscriberLinkage snapshot (what the
//! intermediate server holds) or a legacy export described by a mapping — without ever losing a
//! DV-protection flag unnoticed.
//!
//! 1. Stream the source; each record becomes a desired full subscriber state ([`source::Desired`]).
//! 2. Diff it against the ledger (one indexed lookup per subscriber): new, changed (field by
//!    field), unchanged; after the stream, ledger subscribers of the source's insurers that the
//!    source lacks are `absent`. Only differences are kept in memory (as engine records); diff rows
//!    stream to a spool file that becomes `diff.csv`.
//! 3. Flag losses: a flag the ledger holds that the source does not (flag off, or subscriber
//!    absent); one loss is one (subscriber, flag type, InfoCode). The losses form a canonical list
//!    (`flag_losses.csv`, sorted) whose SHA-256 every run reports. A real run with losses is
//!    refused unless `--accept-flag-losses <sha256>` names exactly that list, with `--reason`;
//!    the report records the operator and the reason.
//! 4. The differences become `SubscriberChange`/`FlagChange` records in one [`Batch`] applied by
//!    [`execute`]: same apply, same invariant (R4), same staged atomic publish as `run`.
//!
//! Decisions: absent subscribers are never cancelled or changed (a deletion is an explicit 取消
//! through `run`); their flags stay in the ledger, but they count as flag losses because the
//! source does not carry them, so an incomplete source stops the migration. InfoCode-scoped flags
//! are not in either source format: they are kept and noted. A field the source leaves empty keeps
//! the ledger's value (ChangeType 2 semantics); differences a 記載事項変更 cannot express (a cleared
//! field, a reinstated loss, a rewritten earlier period) are reported as `unapplied`, not applied.

pub mod mapping;
pub mod snapshot;
pub mod source;

use crate::domain::person::{Enrollment, Flag, FlagKey, Status};
use crate::domain::{
    ChangeType, Date, FlagChange, FlagOperation, FlagScope, FlagSource, FlagType, InsurerNumber, MunicipalityCode,
    ReasonOfLoss, ReasonOfQualification, Record, SubscriberChange, SubscriberKey, Timestamp, self_info_column,
};
use crate::engine::batch::{Batch, BatchFile};
use crate::engine::run::{Prepared, RunOptions, RunStatus, execute, recover, spill_dir, spill_prefix};
use crate::engine::spool::Spool;
use crate::error::{Diagnostic, ErrorCode};
use crate::formats::hex;
use crate::ledger::{self, JournalEvent};
use crate::report::{Chart, InputEntry, InputStatus, RejectEntry, Report, ReportStatus, SummaryKey, Worklist};
use anyhow::{Context, Result};
use mapping::Mapping;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use source::{Desired, DesiredFlags, DesiredPeriod, SourceItem};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of one migration. `run.inbox` is unused.
pub struct MigrateOptions {
    pub run: RunOptions,
    /// A source file, or a folder of them (`.csv`/`.xml`, read in name order).
    pub from: PathBuf,
    /// A legacy export's mapping; none = SubscriberLinkage snapshot.
    pub mapping: Option<(PathBuf, Mapping)>,
    /// The operator's explicit acceptance of one flag-loss list: the SHA-256 (hex) of the
    /// canonical list a dry run reported.
    pub accept_flag_losses: Option<String>,
    /// Why the operator accepts the losses (required with `accept_flag_losses`).
    pub reason: Option<String>,
    /// Who runs the migration (user name, or `uid N`), recorded in the report.
    pub operator: String,
    /// MunicipalityCode for new 国保/後期 subscribers from a snapshot (the format lacks it).
    pub municipality: Option<MunicipalityCode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateStatus {
    Completed,
    CompletedWithRejects,
    /// Completed, but a group was withheld or a critical case is on the review worklist.
    CompletedWithCriticalFindings,
    /// Flag losses not accepted: nothing changed.
    Refused,
    /// A source file was rejected whole: nothing changed.
    SourceRejected,
    /// R4 failed or output could not be written: nothing committed or published.
    Aborted,
}

#[derive(Debug)]
pub struct MigrateResult {
    pub status: MigrateStatus,
    pub report: Report,
    pub report_dir: PathBuf,
    pub outbox_dir: Option<PathBuf>,
    pub flag_losses: u64,
    /// SHA-256 (hex) of the canonical flag-loss list (`flag_losses.csv`).
    pub flag_loss_sha256: String,
    /// A dry run whose real run would be refused.
    pub would_refuse: bool,
}

/// One flag loss: one (subscriber, flag type, InfoCode) the ledger holds and the migrated state
/// would not.
#[derive(Clone, Debug)]
struct Loss {
    insurer: InsurerNumber,
    key: SubscriberKey,
    flag_type: FlagType,
    /// Empty for a whole-subscriber flag.
    info_code: String,
    absent: bool,
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
    fn sort_key(&self) -> (InsurerNumber, SubscriberKey, &'static str, &str, bool) {
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
fn loss_list(losses: &[Loss], sha: Option<&str>) -> Worklist {
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

const KINDS: [&str; 6] = ["new", "changed", "unchanged", "absent", "rejected", "unapplied"];
/// The summary counter of each of [`KINDS`].
const KIND_COUNTERS: [SummaryKey; 6] = [
    SummaryKey::MigrationNew,
    SummaryKey::MigrationChanged,
    SummaryKey::MigrationUnchanged,
    SummaryKey::MigrationAbsent,
    SummaryKey::MigrationRejected,
    SummaryKey::MigrationUnapplied,
];

/// Streams source records against the ledger.
struct Differ<'a> {
    conn: &'a Connection,
    as_of: Date,
    file: Arc<str>,
    /// The differences as engine records, partitioned by subscriber (spilled when large).
    batch: Spool,
    /// A spill write error (disk full), reported after the source is read.
    batch_error: Option<anyhow::Error>,
    seq: u64,
    seen: HashMap<InsurerNumber, HashSet<u64>>,
    spool: std::io::BufWriter<std::fs::File>,
    diff_rows: u64,
    counts: BTreeMap<(InsurerNumber, &'static str), u64>,
    losses: Vec<Loss>,
    rejects: Vec<RejectEntry>,
    flag_sets: u64,
}

impl Differ<'_> {
    fn push(&mut self, r: Record) {
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
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn row(
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

    fn count(&mut self, ins: InsurerNumber, kind: &'static str) {
        *self.counts.entry((ins, kind)).or_default() += 1;
    }

    fn reject(&mut self, faults: Vec<Diagnostic>, critical: bool) {
        self.rejects
            .extend(faults.iter().map(|d| RejectEntry::from_diag(d, critical)));
    }

    fn item(&mut self, item: SourceItem) -> Result<()> {
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
                    self.count(ins, "rejected");
                }
                self.row(&i, &k, "rejected", "", "", "", &codes.join("; "))
            }
            SourceItem::Record(d) => self.record(*d),
        }
    }

    fn record(&mut self, d: Desired) -> Result<()> {
        let (ins, key) = (d.base.insurer, d.base.key);
        if !self.seen.entry(ins).or_default().insert(key_num(key)) {
            let diag = Diagnostic::new(
                &*self.file,
                ErrorCode::Schema,
                "the subscriber appears more than once in the source; only its first record is used",
            )
            .line(d.line)
            .seq(d.seq)
            .field("SubscriberKey");
            self.reject(vec![diag], false);
            self.count(ins, "rejected");
            return self.row(
                ins.as_str(),
                key.as_str(),
                "rejected",
                "",
                "",
                "",
                "duplicate SubscriberKey",
            );
        }
        let before = ledger::load_enrollment(self.conn, ins, key)?;
        let is_new = before.as_ref().is_none_or(|b| b.status == Status::Cancelled);
        if is_new && d.base.municipality.is_none() && (ins.is_kokuho() || ins.is_kouki()) {
            let diag = Diagnostic::new(
                &*self.file,
                ErrorCode::Schema,
                "MunicipalityCode is required for a new 国保/後期 subscriber; the snapshot format does not carry it (pass --municipality)",
            )
            .line(d.line)
            .seq(d.seq)
            .field("MunicipalityCode");
            self.reject(vec![diag], false);
            self.count(ins, "rejected");
            return self.row(
                ins.as_str(),
                key.as_str(),
                "rejected",
                "",
                "",
                "",
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
        let scoped = held.keys().filter(|k| k.0.is_some()).count();
        if scoped > 0 {
            unapplied.push(format!("{scoped} InfoCode-scoped flag(s) kept (not in the source)"));
        }
        for t in lost {
            self.losses.push(Loss::new(ins, key, t, false));
        }
        let kind = if is_new {
            "new"
        } else if fields.is_empty() && changes.is_empty() && unapplied.iter().all(|u| u.contains("InfoCode-scoped")) {
            "unchanged"
        } else {
            "changed"
        };
        self.count(ins, kind);
        let real_unapplied = unapplied.iter().filter(|u| !u.contains("InfoCode-scoped")).count();
        if real_unapplied > 0 {
            self.count(ins, "unapplied");
        }
        self.row(
            ins.as_str(),
            key.as_str(),
            kind,
            &fields.join(" "),
            &flag_state(&d.flags),
            &changes.join(" "),
            &unapplied.join("; "),
        )
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
                    "DisqualificationDate empty in the source: reinstating a lost subscriber is not a 記載事項変更"
                        .into(),
                ),
                _ => {}
            }
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
    fn absent(&mut self, ins: InsurerNumber) -> Result<()> {
        let seen = self.seen.get(&ins);
        let found =
            ledger::uncancelled_with_flags(self.conn, ins, |key| seen.is_some_and(|s| s.contains(&key_num(key))))?;
        for (key, mut fl) in found {
            fl.sort_by_key(|t| std::cmp::Reverse(t.code()));
            self.count(ins, "absent");
            let changes: Vec<String> = fl.iter().map(|t| format!("-{}", t.name_en())).collect();
            self.row(
                ins.as_str(),
                key.as_str(),
                "absent",
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

fn list_sources(from: &Path) -> Result<Vec<PathBuf>> {
    if from.is_file() {
        return Ok(vec![from.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(from)
        .with_context(|| format!("cannot read {}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension()
                        .and_then(|x| x.to_str())
                        .map(str::to_ascii_lowercase)
                        .as_deref(),
                    Some("csv" | "xml")
                )
        })
        .collect();
    out.sort();
    if out.is_empty() {
        anyhow::bail!("{} holds no .csv or .xml file", from.display());
    }
    Ok(out)
}

/// Runs one migration. Errors are usage/environment problems.
pub fn migrate(o: &MigrateOptions) -> Result<MigrateResult> {
    let opts = &o.run;
    // A dry run never creates a ledger: an absent one is diffed as empty, in memory.
    let led = ledger::acquire(&opts.ledger, opts.if_missing())?;
    let _lock = led.lock;
    let mut conn = led.conn;
    if !led.in_memory {
        ledger::quick_check(&conn, &opts.ledger)?;
    }
    // a full source would bring every shard's subscribers into one shard's ledger
    if let Some(s) = crate::shard::ledger_shard(&conn)? {
        anyhow::bail!("this ledger belongs to shard {s} of a sharded deployment: migrate into an unsharded ledger");
    }
    let opts = &opts.settled(&led.path)?;
    recover(&conn, opts)?;

    let sources = list_sources(&o.from)?;
    let spool_path = opts.reports.join(format!(
        "{}{}.csv",
        crate::engine::run::migrate_spool_prefix(opts),
        std::process::id()
    ));
    let spool = {
        let mut oo = std::fs::OpenOptions::new();
        oo.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            oo.mode(0o600);
        }
        oo.open(&spool_path)
            .with_context(|| format!("cannot write {}", spool_path.display()))?
    };
    let res = migrate_with(o, opts, &mut conn, &sources, spool, &spool_path);
    std::fs::remove_file(&spool_path).ok();
    res
}

fn migrate_with(
    o: &MigrateOptions,
    opts: &RunOptions,
    conn: &mut Connection,
    sources: &[PathBuf],
    spool: std::fs::File,
    spool_path: &Path,
) -> Result<MigrateResult> {
    let mut d = Differ {
        conn,
        as_of: opts.as_of,
        file: Arc::from(""),
        batch: Spool::new(opts.chunk_records, &spill_dir(opts)).with_prefix(spill_prefix(opts)),
        batch_error: None,
        seq: 0,
        seen: HashMap::new(),
        spool: std::io::BufWriter::with_capacity(256 * 1024, spool),
        diff_rows: 0,
        counts: BTreeMap::new(),
        losses: Vec::new(),
        rejects: Vec::new(),
        flag_sets: 0,
    };
    d.row(
        "insurer",
        "subscriber_key",
        "change",
        "fields_changed",
        "flags_in_source",
        "flag_changes",
        "note",
    )?;
    d.diff_rows = 0;
    let mut inputs = Vec::new();
    let mut run_hash = Sha256::new();
    run_hash.update(b"migrate");
    // the ledger's identity: dry runs of two ledgers into one reports folder never share a folder
    run_hash.update(opts.ledger_tag());
    run_hash.update(opts.as_of.to_string());
    run_hash.update(format!(
        "{:?}{:?}{:?}{:?}{:?}",
        opts.format, opts.encoding, opts.unmappable, o.accept_flag_losses, o.municipality
    ));
    if let Some((p, _)) = &o.mapping {
        run_hash.update(std::fs::read(p).unwrap_or_default());
    }
    let mut file_errors: Vec<Diagnostic> = Vec::new();
    let mut creation: Option<Timestamp> = None;
    let started = std::time::Instant::now();
    for path in sources {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        d.file = Arc::from(name.as_str());
        let rejects_before = d.rejects.len();
        let r = match &o.mapping {
            Some((_, m)) => mapping::read_legacy(path, &name, m, opts.as_of, &opts.catalog, &mut |i| d.item(i))?,
            None => snapshot::read_snapshot(
                path,
                &name,
                &snapshot::SnapshotOptions {
                    as_of: opts.as_of,
                    catalog: &opts.catalog,
                    municipality: o.municipality,
                },
                &mut |i| d.item(i),
            )?,
        };
        match r {
            Ok(s) => {
                run_hash.update(s.sha256);
                creation = creation.max(s.creation_time);
                let rejected = d.rejects[rejects_before..]
                    .iter()
                    .filter_map(|r| r.record_sequence)
                    .collect::<HashSet<_>>()
                    .len() as u64;
                inputs.push(InputEntry {
                    name,
                    kind: s.kind,
                    format: s.format,
                    encoding: s.encoding.xml_label().to_owned(),
                    status: InputStatus::Applied,
                    records: s.records,
                    rejected,
                    note: None,
                });
            }
            Err(diags) => {
                run_hash.update(b"rejected");
                inputs.push(InputEntry {
                    name,
                    kind: if o.mapping.is_some() {
                        "legacy"
                    } else {
                        "SubscriberLinkage"
                    }
                    .into(),
                    format: String::new(),
                    encoding: String::new(),
                    status: InputStatus::Rejected,
                    records: 0,
                    rejected: 0,
                    note: Some("file-level error: nothing in it is used".into()),
                });
                file_errors.extend(diags);
            }
        }
    }
    let source_rejected = !file_errors.is_empty();
    if !source_rejected {
        let insurers: Vec<InsurerNumber> = d.seen.keys().copied().collect();
        for ins in insurers {
            d.absent(ins)?;
        }
    }
    d.spool.flush()?;
    let elapsed = started.elapsed();
    crate::engine::run::chain_run_hash(&mut run_hash, conn)?;
    let run_id = format!("{}-{}", opts.as_of, &hex(&run_hash.finalize())[..12]);
    let losses = d.losses.len() as u64;
    d.losses.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    // the canonical list and its hash: what a dry run shows is what a real run accepts
    let loss_sha = hex(&Sha256::digest(loss_list(&d.losses, None).to_csv().as_bytes()));
    let given = o.accept_flag_losses.as_deref().map(str::to_ascii_lowercase);
    if given.is_some() && o.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        anyhow::bail!("--accept-flag-losses needs --reason TEXT: why these flag losses are accepted");
    }
    let accepted = given.as_deref() == Some(loss_sha.as_str());
    let mismatch = given.is_some() && !accepted;
    let refuse = !opts.dry_run && !source_rejected && (losses > 0 && !accepted || mismatch);
    let would_refuse = opts.dry_run && (losses > 0 && !accepted || mismatch);

    // Releases only when the operator accepted the exact count (absent subscribers are kept).
    if accepted && losses > 0 {
        let as_of = d.as_of;
        let mut rel = Vec::new();
        for l in d.losses.iter().filter(|l| !l.absent && l.info_code.is_empty()) {
            rel.push((l.insurer, l.key, l.flag_type));
        }
        for (ins, key, t) in rel {
            let seq = d.next_seq();
            d.push(Record::FlagChange(FlagChange {
                seq,
                effective_time: Timestamp::start_of(as_of),
                flag_type: t,
                operation: FlagOperation::Release,
                scope: FlagScope::Subscriber,
                insurer: ins,
                key: Some(key),
                info_code: None,
                reason: None,
                source: FlagSource::Other,
                support_measure_end: None,
            }));
        }
    }

    // the report
    let mut report = Report::new(run_id.clone(), opts.as_of.to_string(), opts.dry_run);
    report.spill_to(&spill_dir(opts));
    report.kind = crate::report::ReportKind::Migrate;
    report.inputs = inputs;
    report
        .rejects
        .extend(file_errors.iter().map(|e| RejectEntry::from_diag(e, true)))?;
    report.rejects.extend(std::mem::take(&mut d.rejects))?;
    let total = |kind: &str| {
        d.counts
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    for (k, key) in KINDS.into_iter().zip(KIND_COUNTERS) {
        report.summary.set(key, total(k));
    }
    report.summary.set(SummaryKey::FlagLosses, losses);
    report.summary.set(SummaryKey::FlagsToSet, d.flag_sets);
    if accepted && losses > 0 {
        report.summary.set(SummaryKey::FlagLossesAccepted, losses);
    }
    report.add_worklist("flag_losses", loss_list(&d.losses, Some(&loss_sha)));
    let insurers: Vec<InsurerNumber> = {
        let mut v: Vec<InsurerNumber> = d.counts.keys().map(|(i, _)| *i).collect();
        v.dedup();
        v
    };
    let n = |i: InsurerNumber, k: &str| {
        d.counts
            .iter()
            .find(|((a, b), _)| *a == i && *b == k)
            .map_or(0, |(_, n)| *n)
    };
    report.add_worklist(
        "migration_summary",
        Worklist {
            title: "移行サマリー — subscribers by insurer and change kind".into(),
            columns: vec![
                "insurer",
                "new",
                "changed",
                "unchanged",
                "absent",
                "rejected",
                "unapplied",
                "flag_losses",
            ],
            rows: insurers
                .iter()
                .map(|&i| {
                    let mut r = vec![i.to_string()];
                    r.extend(KINDS.iter().map(|k| n(i, k).to_string()));
                    r.push(d.losses.iter().filter(|l| l.insurer == i).count().to_string());
                    r
                })
                .collect(),
        },
    );
    report.worklists.insert("diff".into(), d.diff_rows as usize);
    report.attachments.insert("diff.csv".into(), spool_path.to_path_buf());
    report.charts.push(Chart {
        title: "変更の種類 — subscribers by change kind".into(),
        bars: KINDS[..5].iter().map(|k| ((*k).to_owned(), total(k))).collect(),
    });
    report.charts.push(Chart {
        title: "保険者別 — subscribers by insurer".into(),
        bars: insurers
            .iter()
            .map(|&i| (i.to_string(), KINDS[..5].iter().map(|k| n(i, k)).sum()))
            .collect(),
    });
    let reason = o.reason.as_deref().map(str::trim);
    let decision = if source_rejected {
        "source rejected: nothing changed".to_owned()
    } else if losses == 0 && given.is_none() {
        "no flag losses".to_owned()
    } else if accepted {
        format!(
            "operator {} accepted the flag-loss list {loss_sha} ({losses} flag loss(es)): {}",
            o.operator,
            reason.unwrap_or_default()
        )
    } else {
        let what = if opts.dry_run {
            "a real run would be refused"
        } else {
            "refused"
        };
        match &given {
            Some(a) => format!(
                "{what}: --accept-flag-losses {a} is not this source's flag-loss list {loss_sha} ({losses} flag loss(es))"
            ),
            None => {
                format!("{what}: {losses} flag loss(es) found (list {loss_sha}) and --accept-flag-losses was not given")
            }
        }
    };
    report
        .notes
        .push(format!("flag-loss list: {losses} loss(es), SHA-256 {loss_sha}"));
    report.notes.push(format!("decision: {decision}"));
    report.notes.push(format!(
        "operator: {}{}",
        o.operator,
        reason.map(|r| format!("; reason: {r}")).unwrap_or_default()
    ));
    report.extra.insert(
        "migration".into(),
        serde_json::json!({
            "sources": sources.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect::<Vec<_>>(),
            "source_kind": if o.mapping.is_some() { "legacy" } else { "SubscriberLinkage" },
            "mapping": o.mapping.as_ref().map(|(p, _)| p.display().to_string()),
            "counts": KINDS.iter().map(|k| (k.to_string(), total(k))).collect::<BTreeMap<_, _>>(),
            "flag_losses": losses,
            "flag_loss_list_sha256": loss_sha,
            "accept_flag_losses": given,
            "flag_losses_accepted": accepted && losses > 0,
            "operator": { "user": o.operator, "reason": reason },
            "refused": refuse,
            "would_be_refused": would_refuse,
            "decision": decision,
            "read_seconds": elapsed.as_secs_f64(),
        }),
    );
    let early = |mut report: Report, status: MigrateStatus, report_status: ReportStatus| -> Result<MigrateResult> {
        report.status = report_status;
        let dir = opts.reports.join(format!("{run_id}-{}", report_status.as_str()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        report.write_to(&dir)?;
        Ok(MigrateResult {
            status,
            report,
            report_dir: dir,
            outbox_dir: None,
            flag_losses: losses,
            flag_loss_sha256: loss_sha.clone(),
            would_refuse: false,
        })
    };
    if source_rejected {
        return early(report, MigrateStatus::SourceRejected, ReportStatus::Rejected);
    }
    if refuse {
        return early(report, MigrateStatus::Refused, ReportStatus::Refused);
    }

    let name = sources
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("+");
    let file: Arc<str> = Arc::from(format!("migrate:{name}").as_str());
    if let Some(e) = d.batch_error.take() {
        return Err(e);
    }
    let spool = std::mem::replace(&mut d.batch, Spool::in_memory());
    let summary_line = format!(
        "migration from {name}: new {}, changed {}, unchanged {}, absent {}, rejected {}, flag losses {}{}",
        total("new"),
        total("changed"),
        total("unchanged"),
        total("absent"),
        total("rejected"),
        losses,
        if accepted && losses > 0 {
            format!(
                " (list {loss_sha} accepted by {}: {})",
                o.operator,
                reason.unwrap_or_default()
            )
        } else {
            String::new()
        }
    );
    drop(d);
    let prepared = Prepared {
        run_id,
        report,
        batch: Batch {
            files: vec![BatchFile {
                key: file.clone(),
                name: file.clone(),
                order: Some(0),
            }],
            spool,
        },
        creation: creation.unwrap_or_else(|| Timestamp::start_of(opts.as_of)),
    };
    let r = execute(conn, opts, prepared, &mut |tx, report| {
        ledger::journal(
            tx,
            &report.run_id,
            Some(&file),
            None,
            None,
            JournalEvent::Migrate,
            &summary_line,
        )
    })?;
    let status = match r.status {
        RunStatus::Completed => MigrateStatus::Completed,
        RunStatus::CompletedWithRejects => MigrateStatus::CompletedWithRejects,
        RunStatus::CompletedWithCriticalFindings => MigrateStatus::CompletedWithCriticalFindings,
        RunStatus::Aborted => MigrateStatus::Aborted,
    };
    Ok(MigrateResult {
        status,
        report: r.report,
        report_dir: r.report_dir,
        outbox_dir: r.outbox_dir,
        flag_losses: losses,
        flag_loss_sha256: loss_sha,
        would_refuse,
    })
}
