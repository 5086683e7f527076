//! `nhi-linkage run`: apply the inbox to the ledger and publish linkage files.

use super::Exit;
use super::common::{Footprint, check_writable, load_config, parse_as_of, run_places, setup_threads};
use crate::domain::Catalog;
use crate::engine::run::{RunOptions, RunStatus, run};
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{Format, TextEncoding};
use crate::shard::Shard;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Apply the bulk files in the inbox to the ledger, carry DV-protection flags across the
/// 国保→後期 transfer, and publish linkage files for the intermediate server.
///
/// Files are applied in order (creation time, sender, file sequence); a file already applied is
/// skipped. Nothing is published if any output would clear a flag the ledger holds.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder with the bulk files to apply (.xml/.csv, any kind, UTF-8 or Shift_JIS).
    #[arg(long)]
    pub inbox: Option<PathBuf>,
    /// Where linkage files are published, one folder per run [default: ./var/outbox]
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    /// Where run reports are written [default: ./var/reports]
    #[arg(long)]
    pub reports: Option<PathBuf>,
    /// The SQLite ledger [default: ./var/ledger.sqlite]
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Create a new ledger if nothing is at the ledger's path (first run of an installation).
    /// Without it a missing or empty ledger is refused: an unmounted disk or a mistyped path is
    /// never taken for a new ledger. An existing ledger is opened as usual.
    #[arg(long)]
    pub init_ledger: bool,
    /// Processing date (基準日), YYYYMMDD [default: today]
    #[arg(long, value_name = "YYYYMMDD")]
    pub as_of: Option<String>,
    /// Do everything but commit the ledger and publish: the report shows what would happen.
    #[arg(long)]
    pub dry_run: bool,
    /// Output syntax of linkage files [default: csv]
    #[arg(long, value_enum)]
    pub output_format: Option<Format>,
    /// Output encoding of linkage files [default: shift_jis]
    #[arg(long, value_enum)]
    pub output_encoding: Option<TextEncoding>,
    /// Characters Shift_JIS cannot hold, and private-use characters (外字, U+E000–U+F8FF) in
    /// any output encoding: reject the subscriber (E_UNMAPPABLE_CHAR) or write ● and list it for
    /// 文字同定 [default: reject]
    #[arg(long, value_enum)]
    pub unmappable: Option<UnmappablePolicy>,
    /// Worker threads [default: all cores]. Results are identical whatever the number.
    #[arg(long)]
    pub threads: Option<usize>,
    /// 副本 layout catalog (TOML) [default: the bundled one]
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Records applied per chunk: an inbox with more is spilled to disk (beside the ledger) and
    /// applied chunk by chunk in the same transaction, so memory stays bounded (2.5–4.5 KB per
    /// record of the chunk) whatever the load. Results do not depend on it. [default: 100000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_records: Option<u64>,
    /// Settings file (TOML) with the same options; command-line flags win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check the whole ledger file at the start (SQLite's quick_check of every page), due or not.
    /// Without it the whole file is checked when the last process left the ledger open, and at
    /// least every 7 days; every other start checks the flags and everything but the
    /// per-subscriber bulk tables, and SQLite checks each page a run reads.
    #[arg(long)]
    pub full_check: bool,
    /// Scale-out: process only shard I of N (the subscribers whose stable hash of InsurerNumber and
    /// SubscriberKey modulo N is I; hand-offs and insurer-wide flags go to every shard). Give each
    /// shard its own --ledger, --outbox and --reports, then join the runs with `merge-shards`.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub limits: super::LimitArgs,
    #[command(flatten)]
    pub report: super::ReportArgs,
}

pub fn run_cmd(a: Args) -> Result<Exit> {
    let cfg = load_config(a.config.as_ref())?;
    a.report.apply(cfg.report_encoding);
    let opts = RunOptions {
        inbox: a
            .inbox
            .or(cfg.inbox)
            .context("--inbox is required (or `inbox` in the config file)")?,
        outbox: a.outbox.or(cfg.outbox).unwrap_or_else(|| "var/outbox".into()),
        reports: a.reports.or(cfg.reports).unwrap_or_else(|| "var/reports".into()),
        ledger: a.ledger.or(cfg.ledger).unwrap_or_else(|| "var/ledger.sqlite".into()),
        as_of: parse_as_of(a.as_of.or(cfg.as_of))?,
        dry_run: a.dry_run,
        init_ledger: a.init_ledger,
        format: a.output_format.or(cfg.output_format).unwrap_or(Format::Csv),
        encoding: a
            .output_encoding
            .or(cfg.output_encoding)
            .unwrap_or(TextEncoding::ShiftJis),
        unmappable: a.unmappable.or(cfg.unmappable).unwrap_or_default(),
        catalog: match a.catalog.or(cfg.catalog) {
            Some(p) => Catalog::load(&p)?,
            None => Catalog::default_catalog(),
        },
        limits: a.limits.apply(cfg.limits.unwrap_or_default()),
        chunk_records: a
            .chunk_records
            .or(cfg.chunk_records)
            .unwrap_or(crate::engine::spool::DEFAULT_CHUNK_RECORDS)
            .max(1),
        shard: match (a.shard, cfg.shard) {
            (Some(s), _) => Some(s),
            (None, Some(s)) => Some(Shard::parse(&s).map_err(|e| anyhow::anyhow!("config `shard`: {e}"))?),
            (None, None) => None,
        },
        whole_check: if a.full_check {
            crate::ledger::WholeCheck::Always
        } else {
            crate::ledger::WholeCheck::Auto
        },
    };
    setup_threads(a.threads.or(cfg.threads))?;
    if !opts.inbox.is_dir() {
        anyhow::bail!("inbox {} is not a folder", opts.inbox.display());
    }
    check_writable(&run_places(&opts.outbox, &opts.reports, &opts.ledger))?;
    let footprint = Footprint::note(&opts.ledger, &[&opts.outbox, &opts.reports]);
    // only `run` stops at phase boundaries; other commands keep the default (immediate) signals
    crate::engine::interrupt::install().context("cannot install the SIGTERM/SIGINT handler")?;
    let res = match run(&opts).map_err(|e| crate::ledger::name_corruption(e, &opts.ledger)) {
        Ok(r) => r,
        Err(e) => match super::settle_error(&e, &footprint) {
            Some(status) => {
                crate::complain!("nhi-linkage: {e:#}");
                return Ok(status);
            }
            None => return Err(e),
        },
    };
    let r = &res.report;
    if let Some(s) = opts.shard {
        crate::say!(
            "shard {s}: merge the {} shard runs with `nhi-linkage merge-shards`",
            s.count
        );
    }
    super::print_outcome(
        &format!("run {}{}", r.run_id, if r.dry_run { " (dry run)" } else { "" }),
        r,
    );
    if !r.pending_flags.is_empty() {
        crate::say!("pending flags (waiting for enrollment): {}", r.pending_flags.len());
    }
    match &res.outbox_dir {
        Some(d) => crate::say!("outputs: {}", d.display()),
        None if r.dry_run => crate::say!("outputs: none (dry run; the report lists what would be written)"),
        None => crate::say!("outputs: none"),
    }
    crate::say!("report:  {}", res.report_dir.join("report.html").display());
    Ok(match res.status {
        RunStatus::Completed => Exit::Ok,
        RunStatus::CompletedWithRejects => Exit::Rejected,
        RunStatus::CompletedWithCriticalFindings => {
            crate::complain!("nhi-linkage: completed with critical findings: see the review worklist in the report");
            Exit::Critical
        }
        RunStatus::Aborted => {
            crate::complain!(
                "nhi-linkage: run aborted, nothing committed or published: {}",
                r.abort_reason.as_deref().unwrap_or("")
            );
            Exit::Aborted
        }
    })
}
