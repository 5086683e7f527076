//! One file per subcommand; this module holds the shared CLI definition and exit statuses.

pub mod age_transition;
pub mod age_transition_answer;
pub mod common;
pub mod generate;
pub mod ledger;
pub mod manual;
pub mod merge_shards;
pub mod migrate;
pub mod run;
pub mod validate;

use crate::report::SummaryKey;
use clap::{Parser, Subcommand};

/// `--version`: the release, the git commit it was built from and the build date (the commit's
/// date, or `SOURCE_DATE_EPOCH`; "unknown" when built without git).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("NHI_GIT_COMMIT"),
    ", built ",
    env!("NHI_BUILD_DATE"),
    ")"
);

/// Exit statuses, documented in README.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything succeeded.
    Ok = 0,
    /// Completed, but some records or files were rejected (see the report / output).
    Rejected = 1,
    /// Usage or configuration error: nothing was done.
    Usage = 2,
    /// The run was aborted; nothing was committed or published.
    Aborted = 3,
    /// Another run holds the ledger.
    Busy = 4,
    /// Completed, but a critical finding needs a person now (e.g. missed age transitions,
    /// flag losses in a migration).
    Critical = 5,
    /// The run was committed to the ledger but publishing failed: fix the cause and run again
    /// (the next run publishes it first).
    CommittedNotPublished = 6,
    /// A run was stopped by SIGTERM or SIGINT (Ctrl-C) before commit: nothing was committed or
    /// published; run again to complete. 128 + SIGINT, as shells report an interrupted command.
    Interrupted = 130,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// nhi-linkage — keeps 国保 and 後期 subscriber data, and the DV-protection flags on it, in step
/// with the medical insurers' intermediate server (中間サーバー).
#[derive(Debug, Parser)]
#[command(name = "nhi-linkage", version = VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug). Logs never contain My Numbers or flagged addresses.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print nothing on success (stdout stays empty; stderr only for what is not a success),
    /// so that cron mails only when something needs a person.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log lines on stderr: text, or one JSON object per line (Japan time, the run id on every
    /// line once known). NHI_LOG (a tracing filter, e.g. `info`) overrides the level.
    #[arg(long, value_enum, global = true, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check bulk files against the interchange spec without applying anything.
    Validate(validate::Args),
    /// Apply the inbox to the ledger and publish linkage files (nightly and age-transition runs).
    Run(run::Args),
    /// Age-75 transition tools (国保 side: hand-off extract, answers to registration inquiries).
    #[command(name = "age-transition")]
    AgeTransition(age_transition::Args),
    // help text: the doc comment of generate::Args (a doc comment here would replace it)
    Generate(generate::Args),
    // help text: the doc comment of migrate::Args
    Migrate(migrate::Args),
    // help text: the doc comment of merge_shards::Args
    #[command(name = "merge-shards")]
    MergeShards(merge_shards::Args),
    /// Check a ledger's integrity, or back it up.
    Ledger(ledger::Args),
    // help text: the doc comment of manual::CompletionsArgs
    Completions(manual::CompletionsArgs),
    // help text: the doc comment of manual::ManArgs
    Man(manual::ManArgs),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Validate(a) => validate::run(a),
        Command::Run(a) => run::run_cmd(a),
        Command::AgeTransition(a) => age_transition::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Migrate(a) => migrate::run(a),
        Command::MergeShards(a) => merge_shards::run(a),
        Command::Ledger(a) => ledger::run(a),
        Command::Completions(a) => manual::completions(a),
        Command::Man(a) => manual::man(a),
    }
}

/// Size limits for hostile inputs, shared by `run` and `validate`. Each flag overrides the
/// config file's `[limits]` value; unset ones keep it (or the default).
#[derive(Debug, Default, clap::Args)]
pub struct LimitArgs {
    /// Longest field value in bytes (input files) [default: 4096]
    #[arg(long, value_name = "BYTES")]
    pub max_field_bytes: Option<usize>,
    /// Longest record (CSV row or XML record element) in bytes [default: 262144]
    #[arg(long, value_name = "BYTES")]
    pub max_record_bytes: Option<usize>,
    /// Largest input file in bytes [default: 4294967296]
    #[arg(long, value_name = "BYTES")]
    pub max_file_bytes: Option<u64>,
}

impl LimitArgs {
    /// `base` with the flags given on the command line applied.
    pub fn apply(&self, base: crate::formats::Limits) -> crate::formats::Limits {
        crate::formats::Limits {
            max_field_bytes: self.max_field_bytes.unwrap_or(base.max_field_bytes),
            max_record_bytes: self.max_record_bytes.unwrap_or(base.max_record_bytes),
            max_file_bytes: self.max_file_bytes.unwrap_or(base.max_file_bytes),
            ..base
        }
    }
}

/// The exit status of an error of `run` or `migrate` that has one of its own: another process
/// holds the ledger (4), output failed before the commit (3), the run was committed but not
/// published (6). `None` for any other error (exit 2: nothing was done).
fn status_of_error(e: &anyhow::Error) -> Option<Exit> {
    if e.downcast_ref::<crate::ledger::LedgerBusy>().is_some() {
        Some(Exit::Busy)
    } else if e.downcast_ref::<crate::engine::PublishFailed>().is_some() {
        Some(Exit::CommittedNotPublished)
    } else if e.downcast_ref::<crate::engine::OutputFailed>().is_some() || disk_full(e) {
        Some(Exit::Aborted)
    } else {
        None
    }
}

/// The exit status an error of `run` or `migrate` maps to (`None`: a usage error, exit 2), after
/// taking away what a refusal created (refusing creates nothing; an interrupted or failed run
/// keeps its ledger and folders, as a rerun expects).
fn settle_error(e: &anyhow::Error, footprint: &common::Footprint) -> Option<Exit> {
    if is_refusal(e) {
        footprint.undo();
    }
    status_of_error(e)
}

/// A refusal (a usage or configuration error, exit 2): not an environment failure, a busy
/// ledger or an interruption, after which a rerun expects what the run created to be there.
fn is_refusal(e: &anyhow::Error) -> bool {
    status_of_error(e).is_none()
        && e.downcast_ref::<crate::engine::interrupt::Interrupted>().is_none()
        && e.downcast_ref::<crate::ledger::LedgerCorrupt>().is_none()
}

/// SQLite found the disk (or its size limit) full: the transaction was rolled back, nothing
/// committed or published (exit 3), which "usage error" would misstate.
fn disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::DiskFull
        ) || c
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
    })
}

#[cfg(test)]
mod exit_tests {
    use super::*;

    #[test]
    fn a_full_disk_is_an_abort_not_a_usage_error() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let e = anyhow::Error::new(full).context("cannot store");
        assert_eq!(status_of_error(&e), Some(Exit::Aborted));
        let io = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull)).context("write");
        assert_eq!(status_of_error(&io), Some(Exit::Aborted));
        assert_eq!(status_of_error(&anyhow::anyhow!("bad option")), None);
    }
}

/// Prints a run's outcome on stdout: `{what}: <file and subscriber counts>`, then one line per
/// non-empty worklist (shared by `run` and `merge-shards`, which operators read alike).
fn print_outcome(what: &str, r: &crate::report::Report) {
    let n = |k: SummaryKey| r.summary.count(&k);
    crate::say!(
        "{what}: {} file(s) applied, {} skipped, {} rejected; {} subscriber(s) written, {} carr{}, {} reject(s)",
        n(SummaryKey::FilesApplied),
        n(SummaryKey::FilesSkipped),
        n(SummaryKey::FilesRejected),
        n(SummaryKey::SubscribersWritten),
        n(SummaryKey::Carries),
        if n(SummaryKey::Carries) == 1 { "y" } else { "ies" },
        r.rejects.len()
    );
    for (name, count) in r.worklists.iter().filter(|(_, c)| **c > 0) {
        crate::say!("worklist {name}: {count}");
    }
}

/// Options of the commands that write a report folder (`run`, `migrate`, `age-transition
/// extract`, `merge-shards`).
#[derive(Debug, Default, clap::Args)]
pub struct ReportArgs {
    /// Encoding of the report folder's CSV files: utf-8 (with BOM, for Excel) or shift_jis
    /// (CP932, no BOM) [default: utf-8]. report.json, report.html and report.xlsx do not change.
    #[arg(long, value_enum, value_name = "ENCODING")]
    pub report_encoding: Option<crate::report::ReportEncoding>,
}

impl ReportArgs {
    /// Applies `--report-encoding`, else the config file's `report_encoding`, else UTF-8.
    pub fn apply(&self, cfg: Option<crate::report::ReportEncoding>) {
        crate::report::configure(self.report_encoding.or(cfg).unwrap_or_default());
    }
}
