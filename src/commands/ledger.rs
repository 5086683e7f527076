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
        #[arg(long)]
        ledger: PathBuf,
    },
    /// A consistent, compacted copy of the ledger (taken under the ledger's lock; the file must
    /// not exist; created owner-only). Restore = put a checked backup back in the ledger's place
    /// while no run is active.
    Backup {
        #[arg(long)]
        ledger: PathBuf,
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
}

pub fn run(a: Args) -> Result<Exit> {
    let ledger = match &a.command {
        LedgerCommand::Check { ledger } | LedgerCommand::Backup { ledger, .. } => ledger.clone(),
    };
    if !ledger.is_file() || std::fs::metadata(&ledger)?.len() == 0 {
        anyhow::bail!("ledger {} does not exist or is empty", ledger.display());
    }
    let _lock = match crate::ledger::lock(&ledger) {
        Ok(l) => l,
        Err(e) if e.downcast_ref::<crate::ledger::LedgerBusy>().is_some() => {
            eprintln!("nhi-linkage: {e}");
            return Ok(Exit::Busy);
        }
        Err(e) => return Err(e),
    };
    let conn = crate::ledger::open(&ledger)?;
    match a.command {
        LedgerCommand::Check { .. } => {
            let problems = crate::ledger::full_check(&conn)?;
            if problems.is_empty() {
                println!(
                    "ledger {}: sound (integrity_check ok, flags match their second record)",
                    ledger.display()
                );
                return Ok(Exit::Ok);
            }
            for p in &problems {
                println!("{p}");
            }
            eprintln!(
                "nhi-linkage: ledger {} is damaged ({} problem(s)): restore the last good backup and rerun the runs since",
                ledger.display(),
                problems.len()
            );
            Ok(Exit::Aborted)
        }
        LedgerCommand::Backup { to, .. } => {
            crate::ledger::backup(&conn, &to)?;
            let copy = rusqlite::Connection::open_with_flags(&to, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let problems = crate::ledger::full_check(&copy)?;
            anyhow::ensure!(
                problems.is_empty(),
                "the backup {} does not check: {}",
                to.display(),
                problems.join("; ")
            );
            println!("backup {} written and checked", to.display());
            Ok(Exit::Ok)
        }
    }
}
