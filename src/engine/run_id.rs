//! Run ids (R12): derived from the inputs and the ledger's previous run, so that a rerun of the
//! same inbox state on the same ledger state (after a crash) gets the same id, and no two runs of
//! a ledger share one.

use super::inbox::LoadedFile;
use super::options::RunOptions;
use crate::formats::hex;
use crate::ledger;
use crate::shard::{Gate, Shard};
use anyhow::Result;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

/// Feeds the ledger's previous run id into a run id's hash (see [`ledger::last_run_id`]). A
/// shard ledger's run id is taken without its `-s{I}of{N}` suffix, so that shard ledgers and a
/// single ledger chain the same ids.
pub fn chain_run_hash(h: &mut Sha256, conn: &Connection) -> Result<()> {
    if let Some(prev) = ledger::last_run_id(conn)? {
        let prev = Shard::split_run_id(&prev).map_or(prev.as_str(), |(base, _)| base);
        h.update(b"after:");
        h.update(prev.as_bytes());
        h.update(b"\n");
    }
    Ok(())
}

/// A run's id: `<as-of>-<12 hex digits>` of the previous run, the date, the output options and
/// every file's status and SHA-256; a shard's carries its `-s{I}of{N}` suffix.
pub(crate) fn run_id(conn: &Connection, opts: &RunOptions, files: &[LoadedFile], gate: &Gate) -> Result<String> {
    let mut h = Sha256::new();
    chain_run_hash(&mut h, conn)?;
    h.update(opts.as_of.to_string());
    h.update(format!("{:?}{:?}{:?}", opts.format, opts.encoding, opts.unmappable));
    for f in files {
        h.update(f.fate.status().as_str());
        h.update(&f.sha);
    }
    Ok(gate.run_id(format!("{}-{}", opts.as_of, &hex(&h.finalize())[..12]))) // shard hook: -s{I}of{N}
}
