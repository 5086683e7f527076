//! `merge-shards`: joins the N runs of `run --shard I/N` into the run folder a single unsharded
//! process would have published — same name (the unsharded run id), same linkage files byte for
//! byte, same MANIFEST.json — and one merged report.
//!
//! Each `--from` folder is one shard's folder holding `outbox/` and `reports/` as its runs wrote
//! them. A shard run is recognised by its id, `<unsharded id>-s{I}of{N}`; the set to merge must
//! be complete (every index 0..N−1 exactly once, one N, one unsharded id) or nothing is written.
//!
//! Linkage files are merged per insurer and kind in the order the single process writes them:
//! groups and rows in subscriber-key order (each subscriber lives in exactly one shard, which is
//! checked), FlagLinkage's insurer-wide (Scope 2) rows first and once (they are replicated to
//! every shard, and must agree). The merge streams: every shard file is checked against its
//! MANIFEST.json entry and its header read before anything is written, then per insurer and kind
//! a k-way merge by subscriber key pulls one group or row at a time from each shard's
//! [`LinkageReader`] (checking each file's key order as it goes) and hands it to
//! [`StandardLayout`], which numbers RecordIdentificationNumber / RecordSequence and writes
//! header and trailer straight into the staged file (size and SHA-256 computed on the way). A
//! reader's error stops the merge and nothing is published; the staging is renamed like `run`
//! does. Memory holds one item per shard (and the few insurer-wide FlagLinkage rows), whatever
//! the number of subscribers.

//!
//! Here: the command's options and its steps. Finding and checking the shard runs is
//! [`super::found`], the k-way merge of one file [`super::kway`], the merged report
//! [`super::merged_report`].

use super::Shard;
use super::found::{Found, ShardFile, ShardRun, applied_nothing, complete_set, load_shard, plain_run_id, shard_runs};
use super::kway::merge_set;
use super::merged_report::merged_report;
use crate::domain::{FileKind, InsurerNumber, Timestamp};
use crate::formats::linkage::{StandardLayout, linkage_header};
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{Format, TextEncoding};
use crate::publish::sync_dir;
use crate::report::{OutputEntry, Report, write_private};
use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `merge-shards`.
#[derive(Clone, Debug)]
pub struct MergeOptions {
    /// One folder per shard, each with `outbox/` and `reports/`.
    pub from: Vec<PathBuf>,
    /// The unsharded run id to merge; `None`: every complete shard run not merged yet.
    pub run_id: Option<String>,
    pub outbox: PathBuf,
    pub reports: PathBuf,
}

/// One merged run.
#[derive(Debug)]
pub struct Merged {
    pub run_id: String,
    pub report: Report,
    pub report_dir: PathBuf,
    pub outbox_dir: Option<PathBuf>,
    /// The outbox already held this very run folder (a merge run again): left as it was.
    pub already_published: bool,
}

/// Merges every selected run. Checks every shard set before writing anything.
pub fn merge_shards(o: &MergeOptions) -> Result<Vec<Merged>> {
    ensure!(!o.from.is_empty(), "give each shard's folder with --from");
    let mut by_base: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for (i, f) in o.from.iter().enumerate() {
        for (base, found) in shard_runs(f, i)? {
            by_base.entry(base).or_default().push(found);
        }
    }
    let bases: Vec<String> = match &o.run_id {
        Some(id) => {
            if let Some((base, s)) = Shard::split_run_id(id) {
                bail!("--run-id {id} is the id of shard {s}; give the unsharded run id {base}");
            }
            ensure!(
                plain_run_id(id),
                "--run-id: a run id is letters, digits and '-' only (like 20261201-5e6295e0f67a)"
            );
            vec![id.clone()]
        }
        None => by_base
            .keys()
            .filter(|b| !o.reports.join(b).exists())
            .cloned()
            .collect(),
    };
    let mut sets = Vec::new();
    for b in &bases {
        let found = by_base.get(b).map(Vec::as_slice).unwrap_or_default();
        match complete_set(b, found, &o.from) {
            Ok(set) => sets.push((b.clone(), set)),
            // a shard retried after it had committed reruns with every input skipped: a run id of
            // its own that the other shards do not have, and nothing in it to merge
            Err(e) if o.run_id.is_none() && applied_nothing(found, &o.from)? => {
                tracing::warn!("shard runs of {b} not merged: they applied nothing, and {e:#}");
            }
            Err(e) => return Err(e),
        }
    }
    let mut runs = Vec::new();
    for (base, set) in &sets {
        let loaded = set
            .iter()
            .map(|f| load_shard(&o.from[f.from], f))
            .collect::<Result<Vec<_>>>()?;
        runs.push((base.clone(), loaded));
    }
    std::fs::create_dir_all(&o.outbox).with_context(|| format!("cannot create outbox {}", o.outbox.display()))?;
    std::fs::create_dir_all(&o.reports)
        .with_context(|| format!("cannot create reports folder {}", o.reports.display()))?;
    runs.into_iter()
        .map(|(base, shards)| merge_one(o, &base, &shards))
        .collect()
}

#[derive(serde::Serialize)]
struct Manifest<'a> {
    run_id: &'a str,
    files: &'a [OutputEntry],
}

/// Merges the linkage files into `dir`, one file at a time, each streamed from the shards' files;
/// returns the MANIFEST entries.
fn write_linkage(dir: &Path, base: &str, shards: &[ShardRun]) -> Result<Vec<OutputEntry>> {
    let all: Vec<(&ShardRun, &ShardFile)> = shards
        .iter()
        .flat_map(|s| s.files.iter().map(move |f| (s, f)))
        .collect();
    let Some((_, first)) = all.first() else {
        return Ok(Vec::new());
    };
    let (format, encoding, creation): (Format, TextEncoding, Timestamp) =
        (first.header.format, first.header.encoding, first.header.creation_time);
    for (s, f) in &all {
        ensure!(
            (f.header.format, f.header.encoding, f.header.creation_time) == (format, encoding, creation),
            "shard run {} wrote its linkage files in another format, encoding or CreationTime than the others: \
             the shards must run with the same options on the same inbox",
            s.run_id
        );
    }
    let mut sets: BTreeMap<(InsurerNumber, FileKind), Vec<(&ShardRun, &ShardFile)>> = BTreeMap::new();
    for (s, f) in all {
        let slot = sets.entry((f.header.sender, f.header.kind)).or_default();
        ensure!(
            slot.iter().all(|(o, _)| o.shard != s.shard),
            "shard run {} holds two {} files for insurer {}",
            s.run_id,
            f.header.kind.name(),
            f.header.sender
        );
        slot.push((s, f));
    }
    let layout = StandardLayout {
        policy: UnmappablePolicy::Reject,
    };
    let mut entries = Vec::new();
    for ((ins, kind), parts) in sets {
        let name = format!("{}_{}_{}.{}", kind.name(), ins, base, format.extension());
        let header = linkage_header(
            kind,
            format!("{}-{}", kind.name(), base),
            ins,
            creation,
            format,
            encoding,
        );
        let (written, bytes, sha256) = merge_set(&dir.join(&name), &header, &layout, shards, &parts)
            .map_err(|e| e.context(format!("cannot merge {name}")))?;
        ensure!(
            written.refused.is_empty() && written.replaced.is_empty(),
            "cannot write {name}: characters the shard runs wrote do not encode again"
        );
        entries.push(OutputEntry {
            name,
            kind: kind.name().to_owned(),
            records: written.records,
            bytes,
            sha256,
        });
    }
    let mut m = serde_json::to_vec_pretty(&Manifest {
        run_id: base,
        files: &entries,
    })?;
    m.push(b'\n');
    write_private(&dir.join("MANIFEST.json"), &m)?;
    sync_dir(dir);
    Ok(entries)
}

fn merge_one(o: &MergeOptions, base: &str, shards: &[ShardRun]) -> Result<Merged> {
    let first = &shards[0];
    for s in shards {
        ensure!(
            s.report.as_of == first.report.as_of,
            "shard runs {} and {} have different as-of dates",
            first.run_id,
            s.run_id
        );
        ensure!(
            s.report.inputs == first.report.inputs,
            "shard runs {} and {} read different inputs: every shard must read the same inbox",
            first.run_id,
            s.run_id
        );
    }
    // linkage files: staged, then renamed (or found already published, unchanged)
    let stage = o.outbox.join(format!(".staging-merge-{base}"));
    let fin = o.outbox.join(base);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    std::fs::create_dir_all(&stage)?;
    let entries = match write_linkage(&stage, base, shards) {
        Ok(e) => e,
        Err(e) => {
            std::fs::remove_dir_all(&stage).ok();
            return Err(e);
        }
    };
    let mut already_published = false;
    let outbox_dir = if entries.is_empty() {
        std::fs::remove_dir_all(&stage)?;
        None
    } else {
        if fin.exists() {
            let same = std::fs::read(fin.join("MANIFEST.json")).ok() == std::fs::read(stage.join("MANIFEST.json")).ok();
            std::fs::remove_dir_all(&stage)?;
            ensure!(
                same,
                "{} already holds a different run folder {base}: refusing to replace published linkage files",
                o.outbox.display()
            );
            already_published = true;
        } else {
            std::fs::rename(&stage, &fin).with_context(|| format!("cannot publish {}", fin.display()))?;
            sync_dir(&o.outbox);
        }
        Some(fin)
    };

    let mut report = merged_report(base, shards, entries)?;
    let rstage = o.reports.join(format!(".staging-merge-{base}"));
    let rfin = o.reports.join(base);
    if rstage.exists() {
        std::fs::remove_dir_all(&rstage)?;
    }
    report.write_to(&rstage)?;
    sync_dir(&rstage);
    if rfin.exists() {
        std::fs::remove_dir_all(&rfin)?;
    }
    std::fs::rename(&rstage, &rfin).with_context(|| format!("cannot publish {}", rfin.display()))?;
    sync_dir(&o.reports);
    Ok(Merged {
        run_id: base.to_owned(),
        report,
        report_dir: rfin,
        outbox_dir,
        already_published,
    })
}
