//! `run`: one nightly (or age-transition) batch, end to end.
//!
//! Order of work, chosen so that a kill at any moment loses and doubles nothing (R12):
//! 1. read every inbox file (in parallel) into the spool (sorted by subscriber, spilled to disk
//!    past `--chunk-records`), R10 check, order files (R1) — [`super::inbox`];
//! 2. in one ledger transaction, chunk by chunk: apply wave 1 (everything but 後期), then wave 2
//!    (後期) with carries resolved against the ledger; match hand-offs; R5; store —
//!    [`super::transaction`];
//! 3. stream the linkage from the ledger into staging folders, verifying the safety invariant
//!    (R4) group by group; report; fsync; MANIFEST.json — [`super::outbox`];
//! 4. record the run as `committed` with its staging paths, COMMIT (synchronous=FULL);
//! 5. rename staging → final, mark the run `published` — [`super::staging`].
//!
//! SIGTERM/SIGINT ([`super::interrupt`]) are noticed after reading, after applying, after
//! writing the outputs and before commit; the run then rolls back, removes its staging and returns
//! [`super::interrupt::Interrupted`], so nothing partial is committed or published.
//!
//! A rerun first finishes any committed-but-unpublished run (renames) and removes staging left by
//! uncommitted ones. Run ids are derived from the inputs ([`super::run_id`]), so a rerun after a
//! crash has the same id.

use super::batch::Batch;
use super::failpoint::{crash_at, wait_at};
use super::inbox;
use super::interrupt;
use super::run_id::run_id;
use super::transaction::{Prepared, Session, execute};
use crate::ledger;
use crate::report::Report;
use crate::shard::Gate;
use anyhow::Result;

pub use super::options::RunOptions;
pub use super::run_report::{RunResult, RunStatus};

/// Runs one batch. Errors are usage/environment problems; an R4 violation returns `Aborted`.
pub fn run(opts: &RunOptions) -> Result<RunResult> {
    let mut whole_checked = false;
    let mut session = Session::open(opts, |led| {
        whole_checked = ledger::check_at_start(led, opts.whole_check)?;
        Ok(())
    })?;
    let opts = &session.opts;

    // 1. read, into a spool partitioned by subscriber (spilled to disk when the inbox is large)
    let spill_to = opts.spill_dir();
    let spool = opts.spool();
    let gate = Gate::new(opts.shard); // shard hook
    let mut files = inbox::read_inbox(opts, &spool, &spill_to, &gate)?;
    crash_at("after-read");
    wait_at("wait-after-read");
    interrupt::check("after reading")?;
    gate.check(&session.conn)?; // shard hook: refuses before anything is applied
    inbox::fill_missing_sha(&mut files);
    inbox::check_resent(&session.conn, &mut files)?; // R10

    let run_id = run_id(&session.conn, opts, &files, &gate)?;
    let mut report = Report::new(run_id.clone(), opts.as_of.to_string(), opts.dry_run);
    let batch = Batch {
        files: inbox::batch_files(&files), // R1
        spool,
    };
    report.spill_to(&opts.spill_dir());
    let applied = inbox::record_inputs(&mut report, &mut files)?;
    let prepared = Prepared {
        run_id,
        report,
        batch,
        creation: inbox::creation_time(&files, opts.as_of),
    };
    let result = execute(&mut session.conn, opts, prepared, &mut |tx, report| {
        for f in &applied {
            f.record(tx, &report.run_id)?;
        }
        if whole_checked {
            // with the run's commit: a dry run or a run that fails records nothing
            ledger::record_whole_check(tx, "quick_check")?;
        }
        Ok(())
    });
    session.close();
    result
}
