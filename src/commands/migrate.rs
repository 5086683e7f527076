//! `nhi-linkage migrate`: bring the ledger in line with a snapshot or a legacy export.

use super::Exit;
use super::common::{Footprint, Place, check_writable, parse_as_of, run_places};
use crate::domain::{Catalog, MunicipalityCode};
use crate::engine::run::RunOptions;
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{Format, TextEncoding};
use crate::migrate::mapping::Mapping;
use crate::migrate::{MigrateOptions, MigrateResult, MigrateStatus, migrate};
use crate::report::SummaryKey;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Migrate a ledger from a SubscriberLinkage snapshot (what the intermediate server holds) or a
/// legacy export described by a mapping file; diff per subscriber and never lose a flag unnoticed.
///
/// Run with --dry-run first: the report lists new, changed, unchanged and absent subscribers and
/// every flag the ledger holds that the source does not (flag losses), one per (subscriber, flag
/// type, InfoCode), and the SHA-256 of that list. A real run with flag losses is refused unless
/// --accept-flag-losses names exactly that list's SHA-256, with --reason.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQLite ledger [default: ./var/ledger.sqlite]
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Create a new ledger if nothing is at the ledger's path (a first migration). Without it a
    /// missing or empty ledger is refused; a dry run never creates one (it diffs against an
    /// empty ledger in memory).
    #[arg(long)]
    pub init_ledger: bool,
    /// Source file, or a folder of .csv/.xml source files.
    #[arg(long)]
    pub from: PathBuf,
    /// Mapping file (TOML) of a legacy export; without it the source is a SubscriberLinkage snapshot.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Processing date (基準日), YYYYMMDD [default: today]
    #[arg(long, value_name = "YYYYMMDD")]
    pub as_of: Option<String>,
    /// Change nothing: write the full report only.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the migration report is written (or `reports` in the config file).
    #[arg(long)]
    pub reports: Option<PathBuf>,
    /// Where linkage files of the resulting changes are published [default: ./var/outbox]
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    /// Output syntax of linkage files [default: csv]
    #[arg(long, value_enum)]
    pub output_format: Option<Format>,
    /// Output encoding of linkage files [default: shift_jis]
    #[arg(long, value_enum)]
    pub output_encoding: Option<TextEncoding>,
    /// Characters Shift_JIS cannot hold, and 外字 (U+E000–U+F8FF) in any encoding: reject the
    /// subscriber or write ● [default: reject]
    #[arg(long, value_enum)]
    pub unmappable: Option<UnmappablePolicy>,
    /// Accept exactly the flag-loss list a dry run showed: its SHA-256 (printed, and in the
    /// report; the SHA-256 of its flag_losses.csv). Any other list is refused (exit 5).
    #[arg(long, value_name = "SHA256", value_parser = parse_sha256, requires = "reason")]
    pub accept_flag_losses: Option<String>,
    /// Why the flag losses are accepted (required with --accept-flag-losses); recorded in
    /// report.json with the operator's user name.
    #[arg(long, value_name = "TEXT", requires = "accept_flag_losses")]
    pub reason: Option<String>,
    /// MunicipalityCode for new 国保/後期 subscribers of a snapshot (the format does not carry it).
    #[arg(long, value_name = "CODE")]
    pub municipality: Option<String>,
    /// Differences applied per chunk (see `run --chunk-records`) [default: 100000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_records: Option<u64>,
    /// Settings file (TOML) of `run`: the keys of the options above (ledger, outbox, reports,
    /// as_of, output_format, output_encoding, unmappable, chunk_records), `threads`, `catalog`,
    /// `[limits]` and `report_encoding` apply here too; command-line flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub report: super::ReportArgs,
}

pub fn run(a: Args) -> Result<Exit> {
    // report.html shows the exact command that accepts a refused migration's flag losses
    crate::report::set_invocation(std::env::args().collect());
    let o = options(a)?;
    if o.run.dry_run {
        check_writable(&[Place::Folder("reports folder", &o.run.reports)])?;
    } else {
        check_writable(&run_places(&o.run.outbox, &o.run.reports, &o.run.ledger))?;
    }
    let footprint = Footprint::note(&o.run.ledger, &[&o.run.outbox, &o.run.reports]);
    let res = match migrate(&o).map_err(|e| crate::ledger::name_corruption(e, &o.run.ledger)) {
        Ok(r) => r,
        Err(e) => {
            match super::settle_error(&e, &footprint) {
                Some(status) => {
                    crate::complain!("nhi-linkage: {e:#}");
                    return Ok(status);
                }
                None if e.downcast_ref::<crate::ledger::LedgerMissing>().is_some()
                    || e.downcast_ref::<crate::ledger::LedgerEmpty>().is_some() =>
                {
                    return Err(e);
                }
                // every other error comes before the commit: the one after it is PublishFailed
                None => return Err(e).context("migration failed before its commit; nothing was committed"),
            }
        }
    };
    Ok(say_outcome(&res, o.accept_flag_losses.as_deref()))
}

/// The migration's options: the command line, then the config file, then the defaults.
fn options(a: Args) -> Result<MigrateOptions> {
    let cfg = super::common::load_config(a.config.as_ref())?;
    a.report.apply(cfg.report_encoding);
    super::common::setup_threads(cfg.threads)?;
    let mapping = match &a.mapping {
        Some(p) => Some((p.clone(), Mapping::load(p)?)),
        None => None,
    };
    let municipality = match &a.municipality {
        Some(m) => Some(MunicipalityCode::parse(m).map_err(|e| anyhow::anyhow!("--municipality: {e}"))?),
        None => None,
    };
    if !a.from.exists() {
        anyhow::bail!("--from {}: no such file or folder", a.from.display());
    }
    Ok(MigrateOptions {
        run: RunOptions {
            inbox: a.from.clone(),
            outbox: a.outbox.or(cfg.outbox).unwrap_or_else(|| "var/outbox".into()),
            reports: a
                .reports
                .or(cfg.reports)
                .context("--reports is required (or `reports` in the config file)")?,
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
            catalog: match &cfg.catalog {
                Some(p) => Catalog::load(p)?,
                None => Catalog::default_catalog(),
            },
            limits: cfg.limits.unwrap_or_default(),
            chunk_records: a
                .chunk_records
                .or(cfg.chunk_records)
                .unwrap_or(crate::engine::spool::DEFAULT_CHUNK_RECORDS),
            shard: None,
            whole_check: crate::ledger::WholeCheck::Always,
        },
        from: a.from,
        mapping,
        accept_flag_losses: a.accept_flag_losses,
        reason: a.reason,
        operator: operator(),
        municipality,
    })
}

/// Says what the migration did and what to do next; its exit status.
fn say_outcome(res: &MigrateResult, accept_given: Option<&str>) -> Exit {
    let r = &res.report;
    let n = |k: SummaryKey| r.summary.count(&k);
    crate::say!(
        "migration {}{}: {} new, {} changed, {} unchanged, {} absent, {} rejected; {} flag loss(es)",
        r.run_id,
        if r.dry_run { " (dry run)" } else { "" },
        n(SummaryKey::MigrationNew),
        n(SummaryKey::MigrationChanged),
        n(SummaryKey::MigrationUnchanged),
        n(SummaryKey::MigrationAbsent),
        n(SummaryKey::MigrationRejected),
        res.flag_losses
    );
    crate::say!(
        "flag-loss list: {} loss(es), SHA-256 {}",
        res.flag_losses,
        res.flag_loss_sha256
    );
    if let Some(d) = r
        .extra
        .get("migration")
        .and_then(|m| m.get("decision"))
        .and_then(|d| d.as_str())
    {
        crate::say!("decision: {d}");
    }
    match &res.outbox_dir {
        Some(d) => crate::say!("outputs: {}", d.display()),
        None => crate::say!("outputs: none"),
    }
    crate::say!("report:  {}", res.report_dir.join("report.html").display());
    match res.status {
        MigrateStatus::SourceRejected => {
            crate::complain!("nhi-linkage: the source was rejected; nothing changed (see rejects.csv)");
            Exit::Rejected
        }
        MigrateStatus::Refused => {
            match accept_given {
                Some(given) => crate::complain!(
                    "nhi-linkage: refused: --accept-flag-losses {given} is not the SHA-256 of this source's flag-loss \
                     list ({}, {} loss(es)); nothing changed. Review flag_losses.csv: it lists what a run would lose.",
                    res.flag_loss_sha256,
                    res.flag_losses
                ),
                None => crate::complain!(
                    "nhi-linkage: refused: {} flag loss(es); review flag_losses.csv, and only if every loss is intended \
                     rerun with --accept-flag-losses {} --reason TEXT",
                    res.flag_losses,
                    res.flag_loss_sha256
                ),
            }
            Exit::Critical
        }
        MigrateStatus::Aborted => {
            crate::complain!(
                "nhi-linkage: migration aborted, nothing committed or published: {}",
                r.abort_reason.as_deref().unwrap_or("")
            );
            Exit::Aborted
        }
        _ if res.would_refuse => {
            crate::complain!(
                "nhi-linkage: dry run: a real run would be refused ({} flag loss(es) not accepted); to accept exactly \
                 this list: --accept-flag-losses {} --reason TEXT",
                res.flag_losses,
                res.flag_loss_sha256
            );
            Exit::Critical
        }
        MigrateStatus::CompletedWithRejects => Exit::Rejected,
        MigrateStatus::CompletedWithCriticalFindings => Exit::Critical,
        MigrateStatus::Completed => Exit::Ok,
    }
}

/// `--accept-flag-losses`: a SHA-256 in hex (64 digits, either case).
fn parse_sha256(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(
            "takes the SHA-256 of a flag-loss list (64 hex digits), as a dry run prints it; \
             a count of losses is no longer accepted"
                .into(),
        )
    }
}

/// Who runs the migration, for the report: `USER`, else `LOGNAME`, else the numeric user id.
fn operator() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            let v = v.trim();
            if !v.is_empty() {
                return v.to_owned();
            }
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return format!("uid {}", m.uid());
        }
    }
    "unknown".to_owned()
}
