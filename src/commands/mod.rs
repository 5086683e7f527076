//! One file per subcommand; this module holds the shared CLI definition and exit statuses.

pub mod age_transition;
pub mod generate;
pub mod ledger;
pub mod merge_shards;
pub mod migrate;
pub mod run;
pub mod validate;

use clap::{Parser, Subcommand};

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
#[command(name = "nhi-linkage", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output (-v info, -vv debug). Logs never contain My Numbers or flagged addresses.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on the terminal.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check bulk files against the interchange spec without applying anything.
    Validate(validate::Args),
    /// Apply the inbox to the ledger and publish linkage files (nightly and age-transition runs).
    Run(run::Args),
    /// Age-75 transition tools (国保 side hand-off extract).
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

/// Prints a run's outcome on stdout: `{what}: <file and subscriber counts>`, then one line per
/// non-empty worklist (shared by `run` and `merge-shards`, which operators read alike).
fn print_outcome(what: &str, r: &crate::report::Report) {
    let n = |k: &str| r.summary.get(k).copied().unwrap_or(0);
    println!(
        "{what}: {} file(s) applied, {} skipped, {} rejected; {} subscriber(s) written, {} carr{}, {} reject(s)",
        n("files_applied"),
        n("files_skipped"),
        n("files_rejected"),
        n("subscribers_written"),
        n("carries"),
        if n("carries") == 1 { "y" } else { "ies" },
        r.rejects.len()
    );
    for (name, count) in r.worklists.iter().filter(|(_, c)| **c > 0) {
        println!("worklist {name}: {count}");
    }
}

/// Logs go to stderr through tracing. `NHI_LOG` overrides the level filter. On a terminal, long
/// phases show progress bars (tracing-indicatif); piped or redirected, nothing but the log lines.
pub fn init_logging(verbose: u8, quiet: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = || EnvFilter::try_from_env("NHI_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    if std::io::stderr().is_terminal() && !quiet {
        let bars = tracing_indicatif::IndicatifLayer::new();
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(bars.get_stderr_writer())
            .with_target(false)
            .with_filter(filter());
        let _ = tracing_subscriber::registry().with(fmt).with(bars).try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init();
    }
}
