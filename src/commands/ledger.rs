//! `ledger check` and `ledger backup`: the operator's tools for the ledger's integrity.

use super::Exit;
use anyhow::Result;
use std::path::PathBuf;

/// Check or back up a ledger (integrity, backup for restore).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Full integrity check: SQLite's integrity_check, every subscriber's flags against their
    /// second record, flag rows that belong to nothing. Exit 0 sound, 3 damaged (restore the last
    /// good backup), 4 busy.
    Check {
        /// The ledger [default: the config file's `ledger`, else ./var/ledger.sqlite]
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Settings file (TOML) of `run`: its `ledger` applies here too.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// A consistent, compacted copy of the ledger (taken under the ledger's lock; the file must
    /// not exist; created owner-only). Restore = put a checked backup back in the ledger's place
    /// while no run is active.
    Backup {
        /// The ledger [default: the config file's `ledger`, else ./var/ledger.sqlite]
        #[arg(long)]
        ledger: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Settings file (TOML) of `run`: its `ledger` applies here too.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(a: Args) -> Result<Exit> {
    let (ledger, config) = match &a.command {
        LedgerCommand::Check { ledger, config } | LedgerCommand::Backup { ledger, config, .. } => (ledger, config),
    };
    let cfg = super::common::load_config(config.as_ref())?;
    let ledger = ledger
        .clone()
        .or(cfg.ledger)
        .unwrap_or_else(|| "var/ledger.sqlite".into());
    if !ledger.is_file() || std::fs::metadata(&ledger)?.len() == 0 {
        anyhow::bail!("ledger {} does not exist or is empty", ledger.display());
    }
    // on the canonical path, as every command takes it (a symlinked path is the same ledger)
    let _lock = match crate::ledger::lock(&crate::ledger::canonical(&ledger).unwrap_or_else(|| ledger.clone())) {
        Ok(l) => l,
        Err(e) if e.downcast_ref::<crate::ledger::LedgerBusy>().is_some() => {
            crate::complain!("nhi-linkage: {e}");
            return Ok(Exit::Busy);
        }
        Err(e) => return Err(e),
    };
    match a.command {
        LedgerCommand::Check { .. } => {
            // damage SQLite reports as an error (opening, or reading the flags) is a finding too
            let checked = crate::ledger::open(&ledger).and_then(|conn| {
                let problems = crate::ledger::full_check(&conn)?;
                Ok((conn, problems))
            });
            let (conn, problems) = match checked {
                Ok((conn, problems)) => (Some(conn), problems),
                Err(e) => match crate::ledger::name_corruption(e, &ledger).downcast::<crate::ledger::LedgerCorrupt>() {
                    Ok(c) => (None, vec![c.what]),
                    Err(e) => return Err(e),
                },
            };
            if let (Some(conn), true) = (&conn, problems.is_empty()) {
                // a sound whole-file check: the next runs' starts need not repeat it for a while
                crate::ledger::record_whole_check(conn, "integrity_check")?;
                crate::say!(
                    "ledger {}: sound (integrity_check ok, flags match their second record)",
                    ledger.display()
                );
                return Ok(Exit::Ok);
            }
            for p in &problems {
                crate::say!("{p}");
            }
            crate::complain!(
                "nhi-linkage: ledger {} is damaged ({} problem(s)): restore the last good backup and rerun the runs since",
                ledger.display(),
                problems.len()
            );
            Ok(Exit::Aborted)
        }
        LedgerCommand::Backup { to, .. } => {
            let conn = crate::ledger::open(&ledger)?;
            crate::ledger::backup(&conn, &to)?;
            let copy = rusqlite::Connection::open_with_flags(&to, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let problems = crate::ledger::full_check(&copy)?;
            anyhow::ensure!(
                problems.is_empty(),
                "the backup {} does not check: {}",
                to.display(),
                problems.join("; ")
            );
            crate::say!("backup {} written and checked", to.display());
            Ok(Exit::Ok)
        }
    }
}
