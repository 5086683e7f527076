//! The transaction shared by `run` and `migrate` (R12): a [`Session`] opens the ledger and
//! finishes what an earlier run left; [`execute`] applies a [`Prepared`] batch in one ledger
//! transaction, writes the linkage from the ledger into staging (each group checked against R4),
//! stages the report, commits and publishes (or, in a dry run, rolls back and writes the report
//! only).
//!
//! SIGTERM/SIGINT ([`super::interrupt`]) are noticed after applying, after writing the outputs
//! and before commit; the run then rolls back, removes its staging and returns
//! [`super::interrupt::Interrupted`], so nothing partial is committed or published.

use super::batch::{Batch, BatchOutcome, apply_batch};
use super::failpoint::{crash_at, failpoint, wait_at};
use super::inquiry::{self, Inquiries, InquiryFile, InquiryOutput};
use super::interrupt;
use super::options::RunOptions;
use super::outbox::{LinkageWriter, WrittenSet};
use super::progress::progress_span;
use super::run_report::{RunResult, RunStatus, fill_report, note_unmappable, settle_status};
use super::staging::{PublishFailed, Staging, publish, recover};
use crate::domain::Timestamp;
use crate::formats::linkage::StandardLayout;
use crate::ledger::{self, LedgerLock};
use crate::publish::sync_dir;
use crate::report::{RejectEntry, Report};
use anyhow::Result;
use rusqlite::{Connection, Transaction};
use std::path::Path;
use std::time::Instant;

/// Writing the outputs aside failed before the commit: the ledger was rolled back and nothing
/// was published (exit 3, like an R4 abort).
#[derive(Debug, thiserror::Error)]
#[error("output failed; the ledger was rolled back, nothing was committed or published")]
pub struct OutputFailed;

/// The ledger opened for one run or migration: locked until dropped, vetted by the caller, the
/// options settled on its canonical path, and runs an earlier process left committed but
/// unpublished published first, its staging and spill leftovers removed (R12).
pub struct Session {
    pub conn: LedgerConn,
    /// The options with the ledger at its canonical path and the folders made absolute.
    pub opts: RunOptions,
    /// No ledger was at the path: an empty in-memory one stands in (dry runs only).
    pub in_memory: bool,
    _lock: Option<LedgerLock>,
}

impl Session {
    /// Opens the ledger of `opts`; `vet` checks it before anything is created or recovered
    /// (integrity, the kind of ledger the command accepts).
    pub fn open(opts: &RunOptions, vet: impl FnOnce(&ledger::Opened) -> Result<()>) -> Result<Session> {
        let led = ledger::acquire(&opts.ledger, opts.if_missing())?;
        vet(&led)?;
        let opts = opts.settled(&led.path)?;
        recover(&led.conn, &opts)?;
        let conn = LedgerConn::first_load_or_in_place(led.conn, &led.path, &opts, led.in_memory)?;
        Ok(Session {
            conn,
            opts,
            in_memory: led.in_memory,
            _lock: led.lock,
        })
    }

    /// Closes the connection, which checkpoints what is left in the WAL and removes it (at a
    /// full load, freeing the blocks of a WAL as large as the ledger) and frees the page caches;
    /// then releases the lock.
    pub fn close(self) {
        let t0 = Instant::now();
        drop(self.conn);
        tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "ledger closed");
    }
}

/// The connection a run works on: the ledger in place, or, for a first load (a ledger that
/// holds nothing), a new ledger built aside ([`ledger::aside`]) and put in place just after its
/// commit. Dereferences to the connection.
pub struct LedgerConn {
    // dropped first: the file aside is closed before it is removed
    conn: Connection,
    aside: Option<ledger::aside::Aside>,
}

impl LedgerConn {
    /// The ledger in place, or a first load aside when the ledger holds nothing and the run
    /// commits (not a dry run; test hook `NHI_FAILPOINT=no-first-load` turns it off).
    fn first_load_or_in_place(conn: Connection, path: &Path, opts: &RunOptions, in_memory: bool) -> Result<Self> {
        if in_memory {
            // no ledger and no lock: nothing beside the path is this process's to remove
            return Ok(LedgerConn { conn, aside: None });
        }
        if opts.dry_run || failpoint("no-first-load") || !ledger::holds_nothing(&conn)? {
            ledger::aside::remove_leftovers(path);
            return Ok(LedgerConn { conn, aside: None });
        }
        // closed cleanly, SQLite removes its WAL: the rename then pairs the new file with nothing
        conn.close().map_err(|(_, e)| e)?;
        match ledger::aside::begin(path)? {
            Some((conn, aside)) => Ok(LedgerConn {
                conn,
                aside: Some(aside),
            }),
            None => Ok(LedgerConn {
                conn: ledger::open(path)?,
                aside: None,
            }),
        }
    }

    /// After the commit of a first load: the ledger built aside goes in place (fsync, rename)
    /// and is reopened there. Nothing to do for a ledger in place. A failure before the rename
    /// leaves the empty ledger (nothing committed: [`OutputFailed`]); after it, the run is
    /// committed and waits to be published ([`PublishFailed`]).
    fn install(&mut self, row: &ledger::RunRow) -> Result<()> {
        let Some(aside) = self.aside.take() else { return Ok(()) };
        let t0 = Instant::now();
        let built = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        // the ledger in place is still the empty one: what was staged goes at the next start
        let target = aside.put_in_place(built).map_err(|e| e.context(OutputFailed))?;
        self.conn = ledger::open(&target).map_err(|e| e.context(PublishFailed::of(row)))?;
        tracing::info!(
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "first load: ledger put in place"
        );
        Ok(())
    }
}

impl std::ops::Deref for LedgerConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for LedgerConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
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
    conn: &mut LedgerConn,
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
    let t0 = Instant::now();
    let (outcome, inquiries) = apply(&tx, opts, &run_id, batch, t0)?;
    in_tx(&tx, &mut report)?;
    wait_at("wait-after-apply");
    interrupt::check("after applying")?; // dropping `tx` rolls back
    report.rejects.extend(
        outcome
            .engine_rejects
            .iter()
            .map(|(d, c)| RejectEntry::from_diag(d, *c)),
    )?;

    // 3. linkage streamed from the ledger (R2) into staging, each group checked against R4
    // before it is written
    let out_stage = Staging::fresh(&opts.outbox, &opts.ledger_tag(), &run_id)?;
    std::fs::create_dir_all(out_stage.path())?;
    let (written, derived) = match write_linkage(&tx, opts, &run_id, creation, &outcome, out_stage.path()) {
        Ok(Ok(w)) => w,
        Err(e) => {
            // a file could not be written (disk full, a value XML forbids): nothing committed
            drop(tx); // rollback
            drop(out_stage);
            return Err(e.context(OutputFailed));
        }
        Ok(Err(v)) => {
            drop(tx); // rollback
            drop(out_stage);
            return abort(opts, report, &v.to_string());
        }
    };
    // R14: the ledger records what the server holds once these outputs are published
    for (k, published, unsent) in &derived.publication {
        ledger::set_publication(&tx, k.0, k.1, *published, *unsent)?;
    }
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        files = written.entries.len(),
        "linkage written from the ledger"
    );
    note_unmappable(&tx, &mut report, &written.unmappable)?;
    report.outputs = written.entries.clone();
    fill_report(&tx, &mut report, &outcome, derived, opts.as_of)?;
    let inquiry_files = finish_inquiries(inquiries, &mut report, &run_id, creation, opts)?;
    crate::shard::annotate(opts.shard, &tx, &mut report)?; // shard hook: what merge-shards needs
    let status = settle_status(&mut report, &outcome);

    if let Err(e) = interrupt::check("after writing outputs") {
        drop(tx);
        drop(out_stage);
        return Err(e.into());
    }
    if opts.dry_run {
        drop(tx); // rollback: the ledger is untouched
        drop(out_stage);
        return dry_run_report(opts, report, status, &run_id);
    }
    let has_linkage = !written.entries.is_empty();
    let staged = Staged {
        report: &mut report,
        inquiry_files: &inquiry_files,
        outbox: out_stage,
        has_linkage,
    };
    let row = stage_and_commit(tx, opts, &run_id, staged, t0)?;
    crash_at("first-load-before-install");
    conn.install(&row)?;
    ledger::checkpoint(conn);
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "ledger checkpointed");
    crash_at("after-commit");
    publish(conn, &row)?;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "published");
    Ok(RunResult {
        status,
        report,
        report_dir: opts.reports.join(&run_id),
        outbox_dir: has_linkage.then(|| opts.outbox.join(&run_id)),
    })
}

/// Applies the batch (R1, R3, R5, R7) and reconciles the age-transition inquiries (R13).
fn apply(
    tx: &Connection,
    opts: &RunOptions,
    run_id: &str,
    batch: Batch,
    t0: Instant,
) -> Result<(BatchOutcome, Inquiries)> {
    let bar = progress_span("applying and storing", None);
    let mut outcome = bar.in_scope(|| apply_batch(tx, run_id, batch))?;
    drop(bar);
    let inquiries = inquiry::reconcile(tx, run_id, opts.as_of, &mut outcome)?; // R13
    tracing::info!(
        elapsed_ms = t0.elapsed().as_millis() as u64,
        subscribers = outcome.touched,
        chunks = outcome.chunks,
        "applied and stored"
    );
    Ok((outcome, inquiries))
}

/// The run's linkage written into `dir` (see [`LinkageWriter`]), with a progress bar.
fn write_linkage(
    tx: &Connection,
    opts: &RunOptions,
    run_id: &str,
    creation: Timestamp,
    outcome: &BatchOutcome,
    dir: &Path,
) -> Result<Result<(WrittenSet, super::group::Derived), super::invariant::FlagWouldBeCleared>> {
    let layout = StandardLayout {
        policy: opts.unmappable,
    };
    let bar = progress_span("writing linkage", Some(outcome.touched));
    let writer = LinkageWriter {
        conn: tx,
        layout: &layout,
        dir,
        run_id,
        creation,
        format: opts.format,
        encoding: opts.encoding,
        as_of: opts.as_of,
        bar: &bar,
    };
    bar.in_scope(|| writer.write(outcome))
}

fn finish_inquiries(
    inquiries: Inquiries,
    report: &mut Report,
    run_id: &str,
    creation: Timestamp,
    opts: &RunOptions,
) -> Result<Vec<InquiryFile>> {
    inquiries.finish(
        report,
        run_id,
        creation,
        &InquiryOutput {
            format: opts.format,
            encoding: opts.encoding,
            unmappable: opts.unmappable,
        },
    ) // R13
}

/// A dry run's report, in `<run-id>-dry-run` (the ledger was rolled back, nothing staged).
fn dry_run_report(opts: &RunOptions, mut report: Report, status: RunStatus, run_id: &str) -> Result<RunResult> {
    let dir = opts.reports.join(format!("{run_id}-dry-run"));
    report.write_replacing(&dir)?;
    Ok(RunResult {
        status,
        report,
        report_dir: dir,
        outbox_dir: None,
    })
}

/// What goes into staging beside the linkage: the report and the inquiry files (R13).
struct Staged<'a> {
    report: &'a mut Report,
    inquiry_files: &'a [InquiryFile],
    /// The linkage staging.
    outbox: Staging,
    /// The run wrote a linkage file: otherwise its (empty) staging is not published.
    has_linkage: bool,
}

/// Stages the report, records the run as `committed` with its staging paths and commits
/// (synchronous=FULL). Every way out before the commit removes the staging; after it, the
/// staging is the ledger's to publish.
fn stage_and_commit(
    tx: Transaction<'_>,
    opts: &RunOptions,
    run_id: &str,
    s: Staged<'_>,
    t0: Instant,
) -> Result<ledger::RunRow> {
    let rep_stage = Staging::fresh(&opts.reports, &opts.ledger_tag(), run_id)?;
    s.report.write_to(rep_stage.path())?;
    inquiry::write_files(rep_stage.path(), s.inquiry_files)?; // R13: beside the report
    sync_dir(rep_stage.path());
    let out_stage = if s.has_linkage {
        Some(s.outbox)
    } else {
        s.outbox.discard()?;
        None
    };
    wait_at("wait-before-commit");
    if let Err(e) = interrupt::check("before commit") {
        drop(tx);
        drop(out_stage);
        drop(rep_stage);
        return Err(e.into());
    }
    crash_at("after-stage");
    if ledger::run_exists(&tx, run_id)? {
        // same inputs as an earlier run that published nothing new (e.g. all skipped): refresh its report
        ledger::delete_run(&tx, run_id)?;
    }
    let row = ledger::RunRow {
        run_id: run_id.to_owned(),
        status: ledger::RunStatus::Committed,
        outbox_staging: out_stage.as_ref().map(|s| s.path().display().to_string()),
        outbox_final: out_stage
            .as_ref()
            .map(|_| opts.outbox.join(run_id).display().to_string()),
        report_staging: Some(rep_stage.path().display().to_string()),
        report_final: Some(opts.reports.join(run_id).display().to_string()),
    };
    ledger::insert_run(&tx, &row, opts.as_of)?;
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "outputs staged");
    // SQLite would checkpoint inside the commit: done just after it instead (ledger::checkpoint)
    ledger::defer_checkpoint(&tx)?;
    if let Err(e) = tx.commit() {
        // SQLite rolled the transaction back (a full disk, most often): nothing is committed,
        // nothing published; the staged outputs go (exit 3, not "usage")
        drop(out_stage);
        drop(rep_stage);
        return Err(anyhow::Error::new(e)
            .context(format!("cannot commit the ledger {}", opts.ledger.display()))
            .context(OutputFailed));
    }
    if let Some(s) = out_stage {
        s.committed();
    }
    rep_stage.committed();
    tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "committed");
    Ok(row)
}

/// An R4 violation: the ledger was rolled back and the staging removed; the report (status
/// `aborted`) goes to `<run-id>-aborted`.
fn abort(opts: &RunOptions, mut report: Report, reason: &str) -> Result<RunResult> {
    tracing::error!("{reason}");
    report.abort(reason)?;
    let dir = opts.reports.join(format!("{}-aborted", report.run_id));
    report.write_replacing(&dir)?;
    Ok(RunResult {
        status: RunStatus::Aborted,
        report,
        report_dir: dir,
        outbox_dir: None,
    })
}
