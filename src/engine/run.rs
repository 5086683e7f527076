//! `run`: one nightly (or age-transition) batch, end to end.
//!
//! Order of work, chosen so that a kill at any moment loses and doubles nothing (R12):
//! 1. read every inbox file (in parallel), R10 check, order files (R1);
//! 2. in one ledger transaction: apply wave 1 (everything but 後期), resolve carries, apply
//!    wave 2 (後期), match hand-offs, store;
//! 3. build the linkage from the ledger, verify the safety invariant (R4) against the ledger;
//! 4. write outputs and report into staging folders, fsync, MANIFEST.json;
//! 5. record the run as `committed` with its staging paths, COMMIT (synchronous=FULL);
//! 6. rename staging → final, mark the run `published`.
//!
//! SIGTERM/SIGINT ([`super::interrupt`]) are noticed after reading, after applying, after
//! writing the outputs and before commit; the run then rolls back, removes its staging and returns
//! [`super::interrupt::Interrupted`], so nothing partial is committed or published.
//!
//! A rerun first finishes any committed-but-unpublished run (renames) and removes staging left by
//! uncommitted ones. Run ids are derived from the inputs, so a rerun after a crash has the same id.

use super::batch::{Batch, BatchOutcome, SubKey, apply_batch, flag_row};
use super::interrupt;
use super::shard::{Gate, Shard}; // scale-out hook (see shard.rs)
use super::state::*;
use crate::domain::*;
use crate::error::{Diagnostic, ErrorCode};
use crate::formats::linkage::*;
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{FileHeader, Format, Limits, ReadOptions, RecordOutcome, TextEncoding, hex, read_input};
use crate::ledger;
use crate::report::*;
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// Options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    pub reports: PathBuf,
    pub ledger: PathBuf,
    pub as_of: Date,
    pub dry_run: bool,
    pub format: Format,
    pub encoding: TextEncoding,
    pub unmappable: UnmappablePolicy,
    pub catalog: Catalog,
    pub limits: Limits,
    /// `--shard I/N`: only this shard's subscribers (scale-out hook, see shard.rs).
    pub shard: Option<Shard>,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Completed,
    CompletedWithRejects,
    /// The safety invariant failed or output could not be written: nothing committed or published.
    Aborted,
}

#[derive(Debug)]
pub struct RunResult {
    pub status: RunStatus,
    pub report: Report,
    pub report_dir: PathBuf,
    pub outbox_dir: Option<PathBuf>,
}

/// The R4 violation.
#[derive(Debug, thiserror::Error)]
#[error("E_FLAG_WOULD_BE_CLEARED: {0}")]
pub struct FlagWouldBeCleared(pub String);

/// Test hook: `NHI_FAILPOINT=<name>` stops the process at that phase (crash tests, R12) or
/// injects a writer fault (R4 tests).
fn failpoint(name: &str) -> bool {
    std::env::var("NHI_FAILPOINT").is_ok_and(|v| v.split(',').any(|p| p == name))
}
fn crash_at(name: &str) {
    if failpoint(name) {
        eprintln!("nhi-linkage: failpoint {name}: simulated crash");
        std::process::exit(86);
    }
}

/// Test hook: `NHI_FAILPOINT=<name>` holds the run at that phase boundary until a signal
/// arrives (at most 60 s), so signal tests hit each check deterministically.
fn wait_at(name: &str) {
    if failpoint(name) {
        eprintln!("nhi-linkage: failpoint {name}: waiting for a signal");
        let start = std::time::Instant::now();
        while !interrupt::requested() && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

struct LoadedFile {
    name: String,
    sha: String,
    header: Option<FileHeader>,
    records: Vec<Record>,
    rejects: Vec<Diagnostic>,
    file_errors: Vec<Diagnostic>,
    total: u64,
    status: &'static str,
    note: Option<String>,
}

fn list_inbox(inbox: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![inbox.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read inbox {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension()
                    .and_then(|x| x.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("xml" | "csv")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn load(path: &Path, inbox: &Path, opts: &ReadOptions, gate: &Gate) -> LoadedFile {
    let name = path
        .strip_prefix(inbox)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/");
    let mut records = Vec::new();
    let mut rejects = Vec::new();
    let res = read_input(path, &name, opts, &mut |o| match o {
        RecordOutcome::Accepted(r) if gate.admit(&r) => records.push(r), // shard hook
        RecordOutcome::Accepted(_) => {}
        RecordOutcome::Rejected { faults, .. } => rejects.extend(faults),
    });
    match res {
        Ok(s) => LoadedFile {
            name,
            sha: hex(&s.sha256),
            header: Some(s.header),
            records,
            rejects,
            file_errors: Vec::new(),
            total: s.records,
            status: "applied",
            note: None,
        },
        Err(r) => LoadedFile {
            name,
            sha: String::new(),
            header: r.header,
            records: Vec::new(),
            rejects: Vec::new(),
            file_errors: r.diagnostics,
            total: 0,
            status: "rejected",
            note: None,
        },
    }
}

/// A span that shows as a progress bar on a terminal (a spinner when `len` is unknown).
fn progress_span(what: &'static str, len: Option<u64>) -> tracing::Span {
    use tracing_indicatif::style::ProgressStyle;
    let span = tracing::info_span!("phase", phase = what);
    let template = match len {
        Some(_) => "{spinner} {span_fields} {pos}/{len} {wide_bar} {elapsed}",
        None => "{spinner} {span_fields} {elapsed}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        span.pb_set_style(&style);
    }
    if let Some(n) = len {
        span.pb_set_length(n);
    }
    span
}

fn sha_file(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

/// Moves a committed run's staged folders to their final names and marks the run published.
fn publish(conn: &Connection, r: &ledger::RunRow) -> Result<()> {
    for (staging, fin) in [
        (&r.outbox_staging, &r.outbox_final),
        (&r.report_staging, &r.report_final),
    ] {
        if let (Some(s), Some(f)) = (staging, fin) {
            let (s, f) = (Path::new(s), Path::new(f));
            if s.exists() {
                if f.exists() {
                    std::fs::remove_dir_all(f)?;
                }
                std::fs::rename(s, f).with_context(|| format!("cannot publish {}", s.display()))?;
                sync_dir(f.parent().unwrap_or(Path::new(".")));
            } else if !f.exists() {
                bail!(
                    "run {} was committed but its staged output {} is missing",
                    r.run_id,
                    s.display()
                );
            }
        }
    }
    crash_at("after-rename");
    ledger::mark_published(conn, &r.run_id)
}

/// Finishes runs committed but not yet published, and removes staging of uncommitted runs (R12).
pub fn recover(conn: &Connection, outbox: &Path, reports: &Path) -> Result<()> {
    for r in ledger::runs_to_publish(conn)? {
        publish(conn, &r)?;
        tracing::warn!(run_id = %r.run_id, "finished publishing a run interrupted after commit");
    }
    for dir in [outbox, reports] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(".staging-") {
                    std::fs::remove_dir_all(e.path()).ok();
                    tracing::warn!(dir = %n, "removed staging left by an interrupted run");
                }
            }
        }
    }
    Ok(())
}

fn sync_dir(d: &Path) {
    if let Ok(f) = std::fs::File::open(d) {
        let _ = f.sync_all();
    }
}

/// Runs one batch. Errors are usage/environment problems; an R4 violation returns `Aborted`.
pub fn run(opts: &RunOptions) -> Result<RunResult> {
    let _lock = ledger::lock(&opts.ledger)?;
    let mut conn = ledger::open(&opts.ledger)?;
    std::fs::create_dir_all(&opts.outbox).with_context(|| format!("cannot create outbox {}", opts.outbox.display()))?;
    std::fs::create_dir_all(&opts.reports)
        .with_context(|| format!("cannot create reports folder {}", opts.reports.display()))?;
    recover(&conn, &opts.outbox, &opts.reports)?;

    // 1. read
    let paths = list_inbox(&opts.inbox)?;
    let ropts = ReadOptions {
        catalog: &opts.catalog,
        limits: opts.limits,
    };
    let gate = Gate::new(opts.shard); // shard hook
    tracing::info!(files = paths.len(), "reading inbox");
    let t0 = std::time::Instant::now();
    let bar = progress_span("reading inbox files", Some(paths.len() as u64));
    // a signal stops the reading of further files; what was read is discarded
    let files: Option<Vec<LoadedFile>> = bar.in_scope(|| {
        paths
            .par_iter()
            .map(|p| {
                let f = (!interrupt::requested()).then(|| load(p, &opts.inbox, &ropts, &gate));
                bar.pb_inc(1);
                f
            })
            .collect()
    });
    drop(bar);
    let mut files = files.ok_or(interrupt::Interrupted { phase: "reading" })?;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "read inbox");
    wait_at("wait-after-read");
    interrupt::check("after reading")?;
    gate.check(&conn)?; // shard hook: refuses before anything is applied
    for (f, p) in files.iter_mut().zip(&paths) {
        if f.sha.is_empty() {
            f.sha = sha_file(p).unwrap_or_default();
        }
    }

    // R10
    let mut seen: HashMap<(InsurerNumber, String), String> = HashMap::new();
    for f in files.iter_mut().filter(|f| f.status == "applied") {
        let h = f.header.as_ref().expect("parsed");
        let key = (h.sender, h.file_identifier.clone());
        let prior = match seen.get(&key) {
            Some(s) => Some(s.clone()),
            None => ledger::applied_file_sha(&conn, h.sender, &h.file_identifier)?,
        };
        match prior {
            Some(s) if s == f.sha => {
                f.status = "skipped";
                f.note = Some("already applied (same FileIdentifier and SHA-256)".into());
                f.records.clear();
                f.rejects.clear();
            }
            Some(_) => {
                f.status = "rejected";
                f.records.clear();
                f.rejects.clear();
                f.file_errors.push(
                    Diagnostic::new(
                        &f.name,
                        ErrorCode::FileIdReused,
                        "FileIdentifier was already used by this sender for a file with different content",
                    )
                    .field("FileIdentifier"),
                );
            }
            None => {
                seen.insert(key, f.sha.clone());
            }
        }
    }

    // Run id from the inputs: a rerun of the same inbox state gets the same id.
    let run_id = {
        let mut h = Sha256::new();
        h.update(opts.as_of.to_string());
        h.update(format!("{:?}{:?}{:?}", opts.format, opts.encoding, opts.unmappable));
        for f in &files {
            h.update(f.status);
            h.update(&f.sha);
        }
        gate.run_id(format!("{}-{}", opts.as_of, &hex(&h.finalize())[..12])) // shard hook: -s{I}of{N}
    };
    let mut report = Report::new(run_id.clone(), opts.as_of.to_string(), opts.dry_run);

    // R1: file order
    let mut order: Vec<usize> = (0..files.len()).filter(|&i| files[i].status == "applied").collect();
    order.sort_by(|&a, &b| {
        let (ha, hb) = (files[a].header.as_ref().unwrap(), files[b].header.as_ref().unwrap());
        (ha.creation_time, ha.sender, ha.file_sequence, &files[a].name).cmp(&(
            hb.creation_time,
            hb.sender,
            hb.file_sequence,
            &files[b].name,
        ))
    });

    let batch = Batch {
        files: order
            .iter()
            .map(|&i| {
                (
                    Arc::<str>::from(files[i].name.as_str()),
                    std::mem::take(&mut files[i].records),
                )
            })
            .collect(),
    };
    let mut applied = Vec::new();
    for f in &files {
        let h = f.header.as_ref();
        let rejected = f
            .rejects
            .iter()
            .filter_map(|d| d.record_sequence)
            .collect::<BTreeSet<_>>()
            .len() as u64;
        report.inputs.push(InputEntry {
            name: f.name.clone(),
            kind: h.map(|h| h.kind.name().to_owned()).unwrap_or_default(),
            format: h.map(|h| format!("{:?}", h.format).to_lowercase()).unwrap_or_default(),
            encoding: h.map(|h| h.encoding.xml_label().to_owned()).unwrap_or_default(),
            status: f.status,
            records: f.total,
            rejected,
            note: f.note.clone(),
        });
        for d in f.file_errors.iter().chain(&f.rejects) {
            let critical = h.is_some_and(|h| h.kind == FileKind::FlagChange) || f.status == "rejected";
            report.rejects.push(RejectEntry::from_diag(d, critical));
        }
        if f.status == "applied" {
            let h = h.expect("parsed");
            applied.push((
                h.sender,
                h.file_identifier.clone(),
                f.sha.clone(),
                h.kind,
                f.name.clone(),
                f.total,
                rejected,
            ));
        }
    }
    let creation = files
        .iter()
        .filter(|f| f.status == "applied")
        .filter_map(|f| f.header.as_ref().map(|h| h.creation_time))
        .max()
        .unwrap_or_else(|| Timestamp::start_of(opts.as_of));
    let prepared = Prepared {
        run_id,
        report,
        batch,
        creation,
    };
    execute(&mut conn, opts, prepared, &mut |tx, report| {
        for (sender, id, sha, kind, name, total, rejected) in &applied {
            ledger::insert_applied_file(tx, *sender, id, sha, *kind, name, &report.run_id, *total, *rejected)?;
        }
        Ok(())
    })
}

/// A batch ready to apply, with the report its caller has begun (inputs, rejects so far).
pub struct Prepared {
    pub run_id: String,
    pub report: Report,
    pub batch: Batch,
    /// CreationTime written in the output headers.
    pub creation: Timestamp,
}

/// Applies a prepared batch in one transaction, builds the linkage from the ledger, verifies the
/// invariant (R4), stages outputs and report, commits and publishes (or, in a dry run, rolls
/// back and writes the report only). `in_tx` runs inside the transaction after the batch is
/// applied: callers record what they applied there, or refuse (an `Err` rolls everything back).
/// Used by `run` and `migrate`, so both share writers, invariant and atomic publish.
pub fn execute(
    conn: &mut Connection,
    opts: &RunOptions,
    p: Prepared,
    in_tx: &mut dyn FnMut(&Connection, &mut Report) -> Result<()>,
) -> Result<RunResult> {
    let Prepared {
        run_id,
        mut report,
        batch,
        creation,
    } = p;
    let tx = conn.transaction()?;
    let t0 = std::time::Instant::now();
    let bar = progress_span("applying and storing", None);
    let outcome = bar.in_scope(|| apply_batch(&tx, &run_id, batch))?;
    drop(bar);
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        subscribers = outcome.touched.len(),
        "applied and stored"
    );
    in_tx(&tx, &mut report)?;
    wait_at("wait-after-apply");
    interrupt::check("after applying")?; // dropping `tx` rolls back
    report.rejects.extend(
        outcome
            .engine_rejects
            .iter()
            .map(|(d, c)| RejectEntry::from_diag(d, *c)),
    );

    // 3. linkage from the ledger + R4
    let mut groups = build_groups(&tx, &outcome, opts.as_of)?;
    if failpoint("writer-clear-flag") {
        // test hook: a writer bug that would state 0 for a set flag
        if let Some(g) = groups
            .iter_mut()
            .find(|g| g.control.self_info.is_some() || g.control.non_disclosure)
        {
            g.control = ProvisionControl {
                self_info: None,
                non_disclosure: false,
                auto_response: g.control.auto_response,
            };
        }
    }
    if failpoint("writer-drop-carry") {
        for g in groups.iter_mut().filter(|g| g.insurer.is_kouki()) {
            g.control = ProvisionControl {
                self_info: None,
                non_disclosure: false,
                auto_response: false,
            };
        }
    }
    let withheld: BTreeSet<(InsurerNumber, SubscriberKey)> = outcome.withheld.iter().copied().collect();
    groups.retain(|g| !withheld.contains(&(g.insurer, g.key)));
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        groups = groups.len(),
        "linkage built from the ledger"
    );
    if let Err(v) = verify_invariant(&tx, &groups, opts.as_of) {
        drop(tx); // rollback
        return abort(opts, report, &v.to_string());
    }

    // 4. write into staging
    let out_stage = opts.outbox.join(format!(".staging-{run_id}"));
    let out_final = opts.outbox.join(&run_id);
    if out_stage.exists() {
        std::fs::remove_dir_all(&out_stage)?;
    }
    std::fs::create_dir_all(&out_stage)?;
    let layout = StandardLayout {
        policy: opts.unmappable,
    };
    let written = write_outputs(&layout, &out_stage, &run_id, creation, opts, &groups, &outcome)?;
    let mut char_rows = Vec::new();
    for (kind, ins, key, chars, refused) in &written.unmappable {
        for c in chars {
            char_rows.push(vec![
                kind.clone(),
                ins.to_string(),
                key.map(|k| k.to_string()).unwrap_or_default(),
                c.field.clone(),
                c.code_point.clone(),
                if *refused {
                    "refused (E_UNMAPPABLE_CHAR)".into()
                } else {
                    "replaced by ●".into()
                },
            ]);
        }
        if *refused {
            report.rejects.push(RejectEntry::from_diag(
                &Diagnostic::new(
                    kind.as_str(),
                    ErrorCode::UnmappableChar,
                    format!(
                        "subscriber {}/{} not written: characters with no Shift_JIS mapping ({})",
                        ins,
                        key.map(|k| k.to_string()).unwrap_or_default(),
                        chars
                            .iter()
                            .map(|c| format!("{} in {}", c.code_point, c.field))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .field(chars.first().map(|c| c.field.clone()).unwrap_or_default()),
                false,
            ));
            if let Some(k) = key {
                // not sent: the server does not hold it yet
                tx.execute(
                    "UPDATE enrollment SET published = 0 WHERE insurer = ?1 AND subscriber_key = ?2 AND published = 1",
                    rusqlite::params![ins.as_str(), k.as_str()],
                )?;
            }
        }
    }
    report.add_worklist(
        "character_identification",
        Worklist {
            title: "文字同定 — characters to identify".into(),
            columns: vec![
                "file_kind",
                "insurer",
                "subscriber_key",
                "field",
                "code_point",
                "action",
            ],
            rows: char_rows,
        },
    );
    report.outputs = written.entries.clone();
    fill_report(&tx, &mut report, &outcome, opts)?;
    super::shard::annotate(opts.shard, &tx, &mut report)?; // shard hook: what merge-shards needs

    report.status = if report.rejects.is_empty() {
        "completed".into()
    } else {
        "completed_with_rejects".into()
    };
    let status = if report.rejects.is_empty() {
        RunStatus::Completed
    } else {
        RunStatus::CompletedWithRejects
    };

    if let Err(e) = interrupt::check("after writing outputs") {
        drop(tx);
        std::fs::remove_dir_all(&out_stage).ok();
        return Err(e.into());
    }
    if opts.dry_run {
        drop(tx); // rollback: the ledger is untouched
        std::fs::remove_dir_all(&out_stage).ok();
        let dir = opts.reports.join(format!("{run_id}-dry-run"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        report.write_to(&dir)?;
        return Ok(RunResult {
            status,
            report,
            report_dir: dir,
            outbox_dir: None,
        });
    }

    let rep_stage = opts.reports.join(format!(".staging-{run_id}"));
    let rep_final = opts.reports.join(&run_id);
    if rep_stage.exists() {
        std::fs::remove_dir_all(&rep_stage)?;
    }
    report.write_to(&rep_stage)?;
    sync_dir(&rep_stage);
    let publish_outbox = !written.entries.is_empty();
    if !publish_outbox {
        std::fs::remove_dir_all(&out_stage)?;
    }
    wait_at("wait-before-commit");
    if let Err(e) = interrupt::check("before commit") {
        drop(tx);
        std::fs::remove_dir_all(&out_stage).ok();
        std::fs::remove_dir_all(&rep_stage).ok();
        return Err(e.into());
    }
    crash_at("after-stage");
    if ledger::run_exists(&tx, &run_id)? {
        // same inputs as an earlier run that published nothing new (e.g. all skipped): refresh its report
        tx.execute("DELETE FROM run WHERE run_id = ?1", [&run_id])?;
    }
    let row = ledger::RunRow {
        run_id: run_id.clone(),
        status: "committed".into(),
        outbox_staging: publish_outbox.then(|| out_stage.display().to_string()),
        outbox_final: publish_outbox.then(|| out_final.display().to_string()),
        report_staging: Some(rep_stage.display().to_string()),
        report_final: Some(rep_final.display().to_string()),
    };
    ledger::insert_run(&tx, &row, opts.as_of)?;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "outputs staged");
    tx.commit().context("cannot commit the ledger")?;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "committed");
    crash_at("after-commit");
    publish(conn, &row)?;
    Ok(RunResult {
        status,
        report,
        report_dir: rep_final,
        outbox_dir: publish_outbox.then_some(out_final),
    })
}

fn abort(opts: &RunOptions, mut report: Report, reason: &str) -> Result<RunResult> {
    tracing::error!("{reason}");
    report.status = "aborted".into();
    report.abort_reason = Some(reason.to_owned());
    report.outputs.clear();
    report.rejects.push(RejectEntry {
        file: String::new(),
        record_sequence: None,
        line: None,
        field: Some("ProvisionControl".into()),
        code: ErrorCode::FlagWouldBeCleared.as_str().into(),
        message: reason.to_owned(),
        critical: true,
    });
    let dir = opts.reports.join(format!("{}-aborted", report.run_id));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    report.write_to(&dir)?;
    Ok(RunResult {
        status: RunStatus::Aborted,
        report,
        report_dir: dir,
        outbox_dir: None,
    })
}

fn control_from(e: &Enrollment) -> ProvisionControl {
    ProvisionControl {
        self_info: e.self_info_reason(),
        non_disclosure: e.flag(FlagType::NonDisclosure).is_some(),
        auto_response: e.flag(FlagType::AutoResponseProhibited).is_some(),
    }
}

/// R2: each touched subscriber once, with its complete state re-read from the ledger.
fn build_groups(conn: &Connection, o: &BatchOutcome, _as_of: Date) -> Result<Vec<SubscriberGroup>> {
    let mut groups = Vec::with_capacity(o.touched.len());
    for (k, before) in &o.touched {
        let e = ledger::load_enrollment(conn, k.0, k.1)?.expect("stored in this run");
        let was_published = before.as_ref().is_some_and(|b| b.published);
        let processing = match e.status {
            // never sent: nothing to delete at the server
            Status::Cancelled if !was_published => continue,
            Status::Cancelled => ProcessingCode::Delete,
            _ if was_published => ProcessingCode::Update,
            _ => ProcessingCode::FirstRegistration,
        };
        groups.push(SubscriberGroup {
            processing,
            insurer: e.insurer,
            key: e.key,
            individual_number: e.individual_number,
            name: e.name.clone(),
            name_kana: e.name_kana.clone(),
            sex: e.sex,
            birthdate: e.birthdate,
            post_number: e.post_number,
            address: e.address.clone(),
            control: control_from(&e),
            qualifications: e
                .periods
                .iter()
                .map(|p| QualificationRow {
                    insurer: e.insurer,
                    card_symbol: p.card_symbol.clone(),
                    card_number: p.card_number.clone(),
                    branch: p.branch,
                    qualification_date: p.qualification_date,
                    disqualification_date: p.disqualification_date,
                    reason_of_loss: p.reason_of_loss,
                    personal_family: p.personal_family,
                })
                .collect(),
        });
    }
    Ok(groups)
}

/// R4, independent of R2/R3: re-reads the flag table and the matching 国保 enrollments and
/// hand-offs with plain SQL, and checks every group that is about to be published.
pub fn verify_invariant(conn: &Connection, groups: &[SubscriberGroup], as_of: Date) -> Result<(), FlagWouldBeCleared> {
    let err = |e: anyhow::Error| FlagWouldBeCleared(format!("cannot verify the ledger: {e}"));
    let flags_of = |ins: &str, key: &str| -> Result<Vec<(String, Option<String>)>> {
        let mut st = conn.prepare_cached(
            "SELECT flag_type, reason_code FROM flag WHERE insurer = ?1 AND subscriber_key = ?2 AND info_code = ''",
        )?;
        let rows = st.query_map([ins, key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    };
    for g in groups {
        let (ins, key) = (g.insurer.to_string(), g.key.to_string());
        let held = flags_of(&ins, &key).map_err(err)?;
        for (ty, reason) in &held {
            let written = match ty.as_str() {
                "1" => g.control.auto_response.then(|| "1".to_owned()),
                "2" => g.control.non_disclosure.then(|| "1".to_owned()),
                _ => g.control.self_info.map(|r| r.code().to_owned()),
            };
            let ok = match (ty.as_str(), &written) {
                ("3", Some(w)) => reason.as_deref().is_none_or(|r| r == w),
                (_, Some(_)) => true,
                _ => false,
            };
            if !ok {
                return Err(FlagWouldBeCleared(format!(
                    "the 02 row of subscriber {ins}/{key} would state flag type {ty} as {} while the ledger holds it as set",
                    written.as_deref().unwrap_or("0")
                )));
            }
        }
        if !g.insurer.is_kouki() {
            continue;
        }
        // a 後期 registration with a future QualificationDate must not go out unflagged while a
        // matching 国保 enrollment (or hand-off) is flagged
        let future = g.qualifications.last().is_some_and(|q| q.qualification_date > as_of);
        if !future {
            continue;
        }
        let e = ledger::load_enrollment(conn, g.insurer, g.key)
            .map_err(err)?
            .ok_or_else(|| FlagWouldBeCleared(format!("subscriber {ins}/{key} is not in the ledger")))?;
        let person = e.person();
        let mut flagged_elsewhere: Vec<(String, bool, bool)> = Vec::new();
        for (ci, ck) in ledger::find_person(conn, &person).map_err(err)? {
            if !ci.is_kokuho() {
                continue;
            }
            let Some(c) = ledger::load_enrollment(conn, ci, ck).map_err(err)? else {
                continue;
            };
            if c.status == Status::Cancelled || person.matches(&c.person()).is_none() {
                continue;
            }
            let fl = flags_of(ci.as_str(), ck.as_str()).map_err(err)?;
            flagged_elsewhere.push((
                format!("{ci}/{ck}"),
                fl.iter().any(|f| f.0 == "3"),
                fl.iter().any(|f| f.0 == "2"),
            ));
        }
        for h in ledger::find_handoffs(conn, &person).map_err(err)? {
            if person.matches(&h.person).is_some() {
                flagged_elsewhere.push((
                    format!("hand-off {}/{}", h.source_insurer, h.source_key),
                    h.self_info.is_some(),
                    h.non_disclosure,
                ));
            }
        }
        for (src, si, nd) in flagged_elsewhere {
            if (si && g.control.self_info.is_none()) || (nd && !g.control.non_disclosure) {
                return Err(FlagWouldBeCleared(format!(
                    "後期 registration {ins}/{key} with future QualificationDate {} would go out without the flags set at {src}",
                    g.qualifications
                        .last()
                        .map(|q| q.qualification_date.to_string())
                        .unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

struct WrittenSet {
    entries: Vec<OutputEntry>,
    /// (file kind, insurer, key, characters, refused?)
    unmappable: Vec<(
        String,
        InsurerNumber,
        Option<SubscriberKey>,
        Vec<crate::formats::writer::UnmappableChar>,
        bool,
    )>,
}

#[derive(serde::Serialize)]
struct Manifest<'a> {
    run_id: &'a str,
    files: &'a [OutputEntry],
}

fn write_outputs(
    layout: &dyn LinkageLayout,
    dir: &Path,
    run_id: &str,
    creation: Timestamp,
    opts: &RunOptions,
    groups: &[SubscriberGroup],
    o: &BatchOutcome,
) -> Result<WrittenSet> {
    let mut set = WrittenSet {
        entries: Vec::new(),
        unmappable: Vec::new(),
    };
    let insurers: BTreeSet<InsurerNumber> = groups
        .iter()
        .map(|g| g.insurer)
        .chain(o.flag_rows.iter().map(|r| r.insurer))
        .chain(o.fukuhon_rows.iter().map(|r| r.insurer))
        .collect();
    // InfoCode-scoped subscriber flags after the run (FlagLinkage), from the touched subscribers
    let mut flag_rows = o.flag_rows.clone();
    for (k, before) in &o.touched {
        let after = &o.after[k];
        let empty = Default::default();
        let bflags = before.as_ref().map_or(&empty, |b| &b.flags);
        for (key, b, a) in flag_diff(bflags, &after.flags) {
            if let Some(info) = key.0 {
                flag_rows.push(flag_row(k.0, Some(k.1), info, key.1, b, a));
            }
        }
    }
    for ins in insurers {
        let kinds: [(FileKind, usize); 3] = [
            (
                FileKind::SubscriberLinkage,
                groups.iter().filter(|g| g.insurer == ins).count(),
            ),
            (
                FileKind::FlagLinkage,
                flag_rows.iter().filter(|r| r.insurer == ins).count(),
            ),
            (
                FileKind::FukuhonLinkage,
                o.fukuhon_rows.iter().filter(|r| r.insurer == ins).count(),
            ),
        ];
        for (kind, n) in kinds {
            if n == 0 {
                continue;
            }
            let name = format!("{}_{}_{}.{}", kind.name(), ins, run_id, opts.format.extension());
            let header = linkage_header(
                kind,
                format!("{}-{}", kind.name(), run_id),
                ins,
                creation,
                opts.format,
                opts.encoding,
            );
            let mut buf: Vec<u8> = Vec::new();
            let w = match kind {
                FileKind::SubscriberLinkage => {
                    let gs: Vec<SubscriberGroup> = groups.iter().filter(|g| g.insurer == ins).cloned().collect();
                    layout.subscriber_linkage(&header, &gs, &mut buf)
                }
                FileKind::FlagLinkage => {
                    let rs: Vec<FlagRow> = flag_rows.iter().filter(|r| r.insurer == ins).cloned().collect();
                    layout.flag_linkage(&header, &rs, &mut buf)
                }
                _ => {
                    let rs: Vec<FukuhonRow> = o.fukuhon_rows.iter().filter(|r| r.insurer == ins).cloned().collect();
                    layout.fukuhon_linkage(&header, &rs, &mut buf)
                }
            }
            .map_err(|e| anyhow::anyhow!("cannot write {name}: {e}"))?;
            for (i, k, chars) in w.refused {
                set.unmappable.push((kind.name().to_owned(), i, k, chars, true));
            }
            for (i, k, chars) in w.replaced {
                set.unmappable.push((kind.name().to_owned(), i, k, chars, false));
            }
            write_private(&dir.join(&name), &buf)?;
            set.entries.push(OutputEntry {
                name,
                kind: kind.name().to_owned(),
                records: w.records,
                bytes: buf.len() as u64,
                sha256: hex(&Sha256::digest(&buf)),
            });
        }
    }
    let mut m = serde_json::to_vec_pretty(&Manifest {
        run_id,
        files: &set.entries,
    })?;
    m.push(b'\n');
    write_private(&dir.join("MANIFEST.json"), &m)?;
    sync_dir(dir);
    Ok(set)
}

fn key_cells(k: &SubKey) -> [String; 2] {
    [k.0.to_string(), k.1.to_string()]
}

fn fill_report(conn: &Connection, r: &mut Report, o: &BatchOutcome, opts: &RunOptions) -> Result<()> {
    let flag_names = |fs: &[FlagType]| fs.iter().map(|f| f.name_en().to_owned()).collect::<Vec<_>>();
    for c in &o.carries {
        let mut flags = Vec::new();
        if c.source.self_info.is_some() {
            flags.push(format!(
                "SelfInfoProvisionProhibited({})",
                c.source.self_info.map_or("", |x| x.code())
            ));
        }
        if c.source.non_disclosure {
            flags.push("NonDisclosure".into());
        }
        r.carries.push(CarryEntry {
            from_insurer: c.source.from.0.to_string(),
            from_subscriber_key: c.source.from.1.to_string(),
            to_insurer: c.to.0.to_string(),
            to_subscriber_key: c.to.1.to_string(),
            flags,
            rule: serde_json::to_value(c.source.rule)?
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            via: c.source.via.to_owned(),
            qualification_date: c.qualification_date.to_string(),
            future_dated: c.qualification_date > opts.as_of,
        });
    }
    for pf in ledger::list_pending_flags(conn)? {
        let c = &pf.change;
        r.pending_flags.push(PendingEntry {
            insurer: c.insurer.to_string(),
            subscriber_key: c.key.map(|k| k.to_string()).unwrap_or_default(),
            flag_type: c.flag_type.name_en().to_owned(),
            operation: if c.operation == FlagOperation::Set {
                "set"
            } else {
                "release"
            }
            .to_owned(),
            info_code: c.info_code.map(|i| i.to_string()),
            file: pf.file.clone(),
            record_sequence: c.seq,
        });
    }
    r.pending_handoffs = ledger::list_pending_handoffs(conn)?.len() as u64;

    // flag changes and R9 certificate issuance
    let mut cert = Vec::new();
    for (k, before) in &o.touched {
        let after = &o.after[k];
        let empty = Default::default();
        let bflags = before.as_ref().map_or(&empty, |b| &b.flags);
        for (key, b, a) in flag_diff(bflags, &after.flags) {
            let change = match (b, a) {
                (None, Some(_)) => "set",
                (Some(_), None) => "released",
                (Some(b), Some(a)) if b.reason != a.reason => "reason_changed",
                _ => continue,
            };
            r.flag_changes.push(FlagChangeEntry {
                insurer: k.0.to_string(),
                subscriber_key: k.1.to_string(),
                info_code: key.0.map(|i| i.to_string()),
                flag_type: key.1.name_en().to_owned(),
                change: change.into(),
            });
        }
        let si = (None, FlagType::SelfInfoProvisionProhibited);
        if !bflags.contains_key(&si) && after.status != Status::Cancelled {
            if let Some(f) = after.flags.get(&si) {
                let [i, s] = key_cells(k);
                cert.push(vec![i, s, after.name.clone(), after.name_kana.clone(), f.reason.map_or("", |x| x.code()).to_owned(), f.effective_time.to_string(), "資格確認書を交付（申請不要）。交付方法は本人と調整すること／agree the delivery method with the person; never mail where the abuser may receive it".into()]);
            }
        }
    }
    r.add_worklist(
        "certificate_issuance",
        Worklist {
            title: "資格確認書の交付 — certificate to issue (自己情報提供不可 newly set)".into(),
            columns: vec![
                "insurer",
                "subscriber_key",
                "name",
                "name_kana",
                "reason_code",
                "flag_set_time",
                "action",
            ],
            rows: cert,
        },
    );
    let review = o.review.iter().map(|(k, cands, why)| {
        let [i, s] = key_cells(k);
        vec![
            i,
            s,
            cands
                .iter()
                .map(|c| format!("{}/{}", c.0, c.1))
                .collect::<Vec<_>>()
                .join(" "),
            why.clone(),
        ]
    });
    r.add_worklist(
        "review",
        Worklist {
            title: "確認 — matches to review".into(),
            columns: vec!["insurer", "subscriber_key", "candidates", "why"],
            rows: review.collect(),
        },
    );
    let confirm = o.flag_confirmation.iter().map(|(k, other, flags, note)| {
        let [i, s] = key_cells(k);
        vec![
            i,
            s,
            format!("{}/{}", other.0, other.1),
            flag_names(flags).join(" "),
            note.clone(),
        ]
    });
    r.add_worklist(
        "flag_confirmation",
        Worklist {
            title: "フラグ設定の確認 — flagged elsewhere (R5)".into(),
            columns: vec!["insurer", "subscriber_key", "flagged_at", "flags", "note"],
            rows: confirm.collect(),
        },
    );
    // R9: support measures past their end date: review, never released automatically
    let mut st = conn.prepare("SELECT insurer, subscriber_key, info_code, flag_type, support_measure_end FROM flag WHERE source = '2' AND support_measure_end IS NOT NULL AND support_measure_end < ?1 ORDER BY insurer, subscriber_key, info_code, flag_type")?;
    let expired: Vec<Vec<String>> = st
        .query_map([opts.as_of.to_string()], |row| {
            let ty: String = row.get(3)?;
            Ok(vec![row.get(0)?, row.get(1)?, row.get(2)?, FlagType::parse(&ty).map(|t| t.name_en().to_owned()).unwrap_or(ty), row.get(4)?, "住基支援措置の期限切れ: 延長の有無を確認（自動解除しない）/ check renewal; never released automatically".to_owned()])
        })?
        .collect::<rusqlite::Result<_>>()?;
    r.add_worklist(
        "support_measure_expiry",
        Worklist {
            title: "支援措置期限 — support measures past their end date".into(),
            columns: vec![
                "insurer",
                "subscriber_key",
                "info_code",
                "flag",
                "support_measure_end",
                "action",
            ],
            rows: expired,
        },
    );

    // union side: 後期 transition registrations of this run by month of acquisition
    for e in o.after.values().filter(|e| e.insurer.is_kouki()) {
        if let Some(p) = e.current_period().filter(|p| p.reason_of_qualification.is_transition()) {
            let month = p.qualification_date.to_string()[..6].to_owned();
            *r.summary.entry(format!("kouki_transitions_{month}")).or_insert(0) += 1;
        }
    }
    let s = &mut r.summary;
    s.insert(
        "files_applied".into(),
        r.inputs.iter().filter(|i| i.status == "applied").count() as u64,
    );
    s.insert(
        "files_skipped".into(),
        r.inputs.iter().filter(|i| i.status == "skipped").count() as u64,
    );
    s.insert(
        "files_rejected".into(),
        r.inputs.iter().filter(|i| i.status == "rejected").count() as u64,
    );
    s.insert("records_rejected".into(), r.rejects.len() as u64);
    s.insert("events_applied".into(), o.events_applied);
    s.insert("subscribers_written".into(), o.touched.len() as u64);
    s.insert("carries".into(), o.carries.len() as u64);
    s.insert("withheld".into(), o.withheld.len() as u64);
    s.insert("pending_flags_applied".into(), o.pending_applied as u64);
    s.insert("handoffs_received".into(), o.handoffs_received);
    s.insert("handoffs_matched".into(), o.handoffs_matched);
    Ok(())
}
