//! `nhi-linkage merge-shards`: join the N shard runs of `run --shard I/N` into one run folder.

use super::Exit;
use crate::shard::merge::{MergeOptions, merge_shards};
use anyhow::Result;
use std::path::PathBuf;

/// Join the runs of `run --shard I/N` into the run folder a single process would have published:
/// named by the unsharded run id, with linkage files byte-identical to an unsharded run's, a
/// MANIFEST.json, and one merged report.
///
/// Each --from is one shard's folder holding the outbox/ and reports/ its runs wrote (e.g.
/// var/shard-3 for `run --shard 3/N --outbox var/shard-3/outbox --reports var/shard-3/reports`).
/// Every shard 0..N-1 must be there exactly once, with runs of the same inputs: otherwise nothing
/// is written. Without --run-id, every complete shard run not merged yet is merged.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One shard's folder (with outbox/ and reports/); give it once per shard.
    #[arg(long, value_name = "DIR", required = true)]
    pub from: Vec<PathBuf>,
    /// The unsharded run id to merge (the shard run ids without -s{I}of{N}) [default: every
    /// complete shard run whose merged report is not in --reports yet]
    #[arg(long, value_name = "RUN_ID")]
    pub run_id: Option<String>,
    /// Where the merged run folder is published [default: ./var/outbox]
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    /// Where the merged report is written [default: ./var/reports]
    #[arg(long)]
    pub reports: Option<PathBuf>,
    /// Settings file (TOML) of `run`: its `outbox`, `reports` and `report_encoding` apply here
    /// too; command-line flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub report: super::ReportArgs,
}

pub fn run(a: Args) -> Result<Exit> {
    let cfg = super::common::load_config(a.config.as_ref())?;
    a.report.apply(cfg.report_encoding);
    let o = MergeOptions {
        from: a.from,
        run_id: a.run_id,
        outbox: a.outbox.or(cfg.outbox).unwrap_or_else(|| "var/outbox".into()),
        reports: a.reports.or(cfg.reports).unwrap_or_else(|| "var/reports".into()),
    };
    let merged = merge_shards(&o)?;
    if merged.is_empty() {
        crate::say!("nothing to merge: every complete set of shard runs is merged already");
        return Ok(Exit::Ok);
    }
    let mut exit = Exit::Ok;
    for m in &merged {
        let r = &m.report;
        super::print_outcome(
            &format!("merged run {} from {} shard(s)", m.run_id, r.extra["sharded"]["count"]),
            r,
        );
        match &m.outbox_dir {
            Some(d) if m.already_published => crate::say!("outputs: {} (already published, unchanged)", d.display()),
            Some(d) => crate::say!("outputs: {}", d.display()),
            None => crate::say!("outputs: none"),
        }
        crate::say!("report:  {}", m.report_dir.join("report.html").display());
        if r.status == crate::report::ReportStatus::CompletedWithCriticalFindings {
            exit = Exit::Critical;
        } else if !r.rejects.is_empty() && exit != Exit::Critical {
            exit = Exit::Rejected;
        }
    }
    Ok(exit)
}
