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

mod diff;
pub mod mapping;
pub mod snapshot;
pub mod source;

use crate::domain::{
    FlagChange, FlagOperation, FlagScope, FlagSource, InsurerNumber, MunicipalityCode, Record, Timestamp,
};
use crate::engine::batch::{Batch, BatchFile};
use crate::engine::spool::Spool;
use crate::engine::{LedgerConn, Prepared, RunOptions, RunStatus, Session, chain_run_hash, execute};
use crate::error::Diagnostic;
use crate::formats::hex;
use crate::ledger::{self, JournalEvent};
use crate::report::{Chart, InputEntry, InputStatus, RejectEntry, Report, ReportStatus, SummaryKey, Worklist};
use anyhow::{Context, Result};
use diff::{DiffKind, Differ, Loss, loss_list};
use mapping::Mapping;
use sha2::{Digest, Sha256};
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
    // A dry run never creates a ledger: an absent one is diffed as empty, in memory.
    let mut session = Session::open(&o.run, |led| {
        // a migration is rare and reads the whole ledger: always the whole file (not recorded:
        // a refused migration leaves the ledger as it was, byte for byte)
        ledger::check_at_start(led, ledger::WholeCheck::Always)?;
        // a full source would bring every shard's subscribers into one shard's ledger
        if let Some(s) = crate::shard::ledger_shard(&led.conn)? {
            anyhow::bail!("this ledger belongs to shard {s} of a sharded deployment: migrate into an unsharded ledger");
        }
        Ok(())
    })?;
    let opts = &session.opts;

    let sources = list_sources(&o.from)?;
    let spool_path = opts
        .reports
        .join(format!("{}{}.csv", opts.migrate_spool_prefix(), std::process::id()));
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
    let res = migrate_with(o, opts, &mut session.conn, &sources, spool, &spool_path);
    std::fs::remove_file(&spool_path).ok();
    res
}

fn migrate_with(
    o: &MigrateOptions,
    opts: &RunOptions,
    conn: &mut LedgerConn,
    sources: &[PathBuf],
    spool: std::fs::File,
    spool_path: &Path,
) -> Result<MigrateResult> {
    let mut d = Differ {
        conn,
        as_of: opts.as_of,
        file: Arc::from(""),
        batch: opts.spool(),
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
    let read = read_sources(o, opts, &mut d, sources, &mut run_hash)?;
    let source_rejected = !read.file_errors.is_empty();
    if !source_rejected {
        let insurers: Vec<InsurerNumber> = d.seen.keys().copied().collect();
        for ins in insurers {
            d.absent(ins)?;
        }
    }
    d.spool.flush()?;
    chain_run_hash(&mut run_hash, d.conn)?;
    let run_id = format!("{}-{}", opts.as_of, &hex(&run_hash.finalize())[..12]);
    let decision = Decision::of(o, opts, &mut d.losses, source_rejected)?;
    if decision.accepted && decision.losses > 0 {
        release_accepted(&mut d);
    }
    let report = migration_report(o, opts, &mut d, &read, &decision, &run_id, sources, spool_path)?;
    let early = |mut report: Report, status: MigrateStatus, report_status: ReportStatus| -> Result<MigrateResult> {
        report.status = report_status;
        let dir = opts.reports.join(format!("{run_id}-{}", report_status.as_str()));
        report.write_replacing(&dir)?;
        Ok(MigrateResult {
            status,
            report,
            report_dir: dir,
            outbox_dir: None,
            flag_losses: decision.losses,
            flag_loss_sha256: decision.loss_sha.clone(),
            would_refuse: false,
        })
    };
    if source_rejected {
        return early(report, MigrateStatus::SourceRejected, ReportStatus::Rejected);
    }
    if decision.refuse {
        return early(report, MigrateStatus::Refused, ReportStatus::Refused);
    }
    if let Some(e) = d.batch_error.take() {
        return Err(e);
    }
    let differences = Differences {
        spool: std::mem::replace(&mut d.batch, Spool::in_memory()),
        counts: std::mem::take(&mut d.counts),
        creation: read.creation,
    };
    drop(d);
    apply_differences(o, opts, conn, differences, report, &decision, run_id, sources)
}

/// The differences to apply, once the diff is done.
struct Differences {
    /// As engine records, partitioned by subscriber.
    spool: Spool,
    /// Subscribers by (insurer, change kind).
    counts: BTreeMap<(InsurerNumber, DiffKind), u64>,
    /// The latest CreationTime of the sources.
    creation: Option<Timestamp>,
}

/// What reading the sources gave, besides the differences the [`Differ`] holds.
struct SourcesRead {
    inputs: Vec<InputEntry>,
    /// File-level errors: any rejects the whole source (nothing changes).
    file_errors: Vec<Diagnostic>,
    /// The latest CreationTime of the sources.
    creation: Option<Timestamp>,
    elapsed: std::time::Duration,
}

/// Streams every source file through the differ; each file's digest (or its rejection) goes into
/// the run id's hash.
fn read_sources(
    o: &MigrateOptions,
    opts: &RunOptions,
    d: &mut Differ<'_>,
    sources: &[PathBuf],
    run_hash: &mut Sha256,
) -> Result<SourcesRead> {
    let mut inputs = Vec::new();
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
    Ok(SourcesRead {
        inputs,
        file_errors,
        creation,
        elapsed: started.elapsed(),
    })
}

/// The flag-loss gate (step 3): the canonical list's hash and what the operator's
/// `--accept-flag-losses` makes of it.
struct Decision {
    losses: u64,
    loss_sha: String,
    /// `--accept-flag-losses`, lower-cased.
    given: Option<String>,
    /// `given` names exactly this list.
    accepted: bool,
    /// A real run refused (nothing changes).
    refuse: bool,
    /// A dry run whose real run would be refused.
    would_refuse: bool,
}

impl Decision {
    /// Sorts the losses into the canonical order and decides.
    fn of(o: &MigrateOptions, opts: &RunOptions, losses: &mut [Loss], source_rejected: bool) -> Result<Decision> {
        let n = losses.len() as u64;
        losses.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        // the canonical list and its hash: what a dry run shows is what a real run accepts
        let loss_sha = hex(&Sha256::digest(loss_list(losses, None).to_csv().as_bytes()));
        let given = o.accept_flag_losses.as_deref().map(str::to_ascii_lowercase);
        if given.is_some() && o.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            anyhow::bail!("--accept-flag-losses needs --reason TEXT: why these flag losses are accepted");
        }
        let accepted = given.as_deref() == Some(loss_sha.as_str());
        let mismatch = given.is_some() && !accepted;
        Ok(Decision {
            losses: n,
            refuse: !opts.dry_run && !source_rejected && (n > 0 && !accepted || mismatch),
            would_refuse: opts.dry_run && (n > 0 && !accepted || mismatch),
            loss_sha,
            given,
            accepted,
        })
    }

    /// The decision in words, for the report.
    fn text(&self, o: &MigrateOptions, dry_run: bool, source_rejected: bool) -> String {
        let (losses, loss_sha) = (self.losses, &self.loss_sha);
        let reason = o.reason.as_deref().map(str::trim);
        if source_rejected {
            "source rejected: nothing changed".to_owned()
        } else if losses == 0 && self.given.is_none() {
            "no flag losses".to_owned()
        } else if self.accepted {
            format!(
                "operator {} accepted the flag-loss list {loss_sha} ({losses} flag loss(es)): {}",
                o.operator,
                reason.unwrap_or_default()
            )
        } else {
            let what = if dry_run {
                "a real run would be refused"
            } else {
                "refused"
            };
            match &self.given {
                Some(a) => format!(
                    "{what}: --accept-flag-losses {a} is not this source's flag-loss list {loss_sha} ({losses} flag loss(es))"
                ),
                None => {
                    format!(
                        "{what}: {losses} flag loss(es) found (list {loss_sha}) and --accept-flag-losses was not given"
                    )
                }
            }
        }
    }
}

/// Releases only when the operator accepted the exact count (absent subscribers are kept).
fn release_accepted(d: &mut Differ<'_>) {
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

/// The migration's report: inputs, rejects, counts, the flag-loss list, the summary by insurer,
/// the diff, charts, and the decision.
#[allow(clippy::too_many_arguments)]
fn migration_report(
    o: &MigrateOptions,
    opts: &RunOptions,
    d: &mut Differ<'_>,
    read: &SourcesRead,
    decision: &Decision,
    run_id: &str,
    sources: &[PathBuf],
    spool_path: &Path,
) -> Result<Report> {
    let losses = decision.losses;
    let mut report = Report::new(run_id.to_owned(), opts.as_of.to_string(), opts.dry_run);
    report.spill_to(&opts.spill_dir());
    report.kind = crate::report::ReportKind::Migrate;
    report.inputs = read.inputs.clone();
    report
        .rejects
        .extend(read.file_errors.iter().map(|e| RejectEntry::from_diag(e, true)))?;
    report.rejects.extend(std::mem::take(&mut d.rejects))?;
    let counts = &d.counts;
    let total = |kind: DiffKind| {
        counts
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    for k in DiffKind::ALL {
        report.summary.set(k.counter(), total(k));
    }
    report.summary.set(SummaryKey::FlagLosses, losses);
    report.summary.set(SummaryKey::FlagsToSet, d.flag_sets);
    if decision.accepted && losses > 0 {
        report.summary.set(SummaryKey::FlagLossesAccepted, losses);
    }
    report.add_worklist("flag_losses", loss_list(&d.losses, Some(&decision.loss_sha)));
    let insurers: Vec<InsurerNumber> = {
        let mut v: Vec<InsurerNumber> = counts.keys().map(|(i, _)| *i).collect();
        v.dedup();
        v
    };
    let n = |i: InsurerNumber, k: DiffKind| {
        counts
            .iter()
            .find(|((a, b), _)| *a == i && *b == k)
            .map_or(0, |(_, n)| *n)
    };
    report.add_worklist(
        "migration_summary",
        Worklist {
            title: "移行サマリー — subscribers by insurer and change kind".into(),
            columns: std::iter::once("insurer")
                .chain(DiffKind::ALL.map(DiffKind::as_str))
                .chain(["flag_losses"])
                .collect(),
            rows: insurers
                .iter()
                .map(|&i| {
                    let mut r = vec![i.to_string()];
                    r.extend(DiffKind::ALL.iter().map(|&k| n(i, k).to_string()));
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
        bars: DiffKind::EXCLUSIVE
            .iter()
            .map(|&k| (k.as_str().to_owned(), total(k)))
            .collect(),
    });
    report.charts.push(Chart {
        title: "保険者別 — subscribers by insurer".into(),
        bars: insurers
            .iter()
            .map(|&i| (i.to_string(), DiffKind::EXCLUSIVE.iter().map(|&k| n(i, k)).sum()))
            .collect(),
    });
    let reason = o.reason.as_deref().map(str::trim);
    let source_rejected = !read.file_errors.is_empty();
    let decision_text = decision.text(o, opts.dry_run, source_rejected);
    let loss_sha = &decision.loss_sha;
    report
        .notes
        .push(format!("flag-loss list: {losses} loss(es), SHA-256 {loss_sha}"));
    report.notes.push(format!("decision: {decision_text}"));
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
            "counts": DiffKind::ALL.iter().map(|&k| (k.as_str().to_owned(), total(k))).collect::<BTreeMap<_, _>>(),
            "flag_losses": losses,
            "flag_loss_list_sha256": loss_sha,
            "accept_flag_losses": decision.given,
            "flag_losses_accepted": decision.accepted && losses > 0,
            "operator": { "user": o.operator, "reason": reason },
            "refused": decision.refuse,
            "would_be_refused": decision.would_refuse,
            "decision": decision_text,
            "read_seconds": read.elapsed.as_secs_f64(),
        }),
    );
    Ok(report)
}

/// Step 4: the differences, as one batch, through the transaction `run` uses
/// ([`crate::engine::execute`]): same apply, same invariant (R4), same staged atomic publish.
#[allow(clippy::too_many_arguments)]
fn apply_differences(
    o: &MigrateOptions,
    opts: &RunOptions,
    conn: &mut LedgerConn,
    d: Differences,
    report: Report,
    decision: &Decision,
    run_id: String,
    sources: &[PathBuf],
) -> Result<MigrateResult> {
    let total = |kind: DiffKind| {
        d.counts
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let (losses, loss_sha) = (decision.losses, &decision.loss_sha);
    let reason = o.reason.as_deref().map(str::trim);
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
    let summary_line = format!(
        "migration from {name}: new {}, changed {}, unchanged {}, absent {}, rejected {}, flag losses {}{}",
        total(DiffKind::New),
        total(DiffKind::Changed),
        total(DiffKind::Unchanged),
        total(DiffKind::Absent),
        total(DiffKind::Rejected),
        losses,
        if decision.accepted && losses > 0 {
            format!(
                " (list {loss_sha} accepted by {}: {})",
                o.operator,
                reason.unwrap_or_default()
            )
        } else {
            String::new()
        }
    );
    let prepared = Prepared {
        run_id,
        report,
        batch: Batch {
            files: vec![BatchFile {
                key: file.clone(),
                name: file.clone(),
                order: Some(0),
            }],
            spool: d.spool,
        },
        creation: d.creation.unwrap_or_else(|| Timestamp::start_of(opts.as_of)),
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
        flag_loss_sha256: loss_sha.clone(),
        would_refuse: decision.would_refuse,
    })
}
