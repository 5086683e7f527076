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

use super::{REPLICATED_COUNTERS, Shard, ShardSection};
use crate::domain::{FileKind, InsurerNumber, SubscriberKey, Timestamp};
use crate::formats::linkage::{FlagRow, LinkageLayout, StandardLayout, Written, linkage_header};
use crate::formats::linkage_reader::{LinkageItem, LinkageReader};
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{FileHeader, Format, TextEncoding, hex};
use crate::publish::{file_digest, sync_dir, write_linkage_file};
use crate::report::{InputStatus, OutputEntry, Report, ReportStatus, Summary, SummaryKey, Worklist, write_private};
use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
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

/// A shard run found under a `--from` folder.
#[derive(Clone, Debug)]
struct Found {
    from: usize,
    shard: Shard,
    run_id: String,
}

/// One shard run, checked: its report, and its linkage files checked against MANIFEST.json
/// with their headers read (their groups and rows are streamed when merged).
struct ShardRun {
    shard: Shard,
    run_id: String,
    report: Report,
    /// The report's `shard` section.
    section: ShardSection,
    report_dir: PathBuf,
    files: Vec<ShardFile>,
}

/// One linkage file of a shard run.
struct ShardFile {
    name: String,
    path: PathBuf,
    header: FileHeader,
    /// Groups (SubscriberLinkage) or records, as MANIFEST.json says.
    records: u64,
    bytes: u64,
    sha256: String,
}

fn from_reports(from: &Path) -> PathBuf {
    from.join("reports")
}
fn from_outbox(from: &Path) -> PathBuf {
    from.join("outbox")
}

/// Shard runs with a published report under `<from>/reports` (dry runs, aborted runs and staging
/// folders are not shard runs).
fn shard_runs(from: &Path, i: usize) -> Result<Vec<(String, Found)>> {
    let dir = from_reports(from);
    let rd = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "--from {}: no reports/ folder; give each shard's folder, the one holding its outbox/ and reports/",
            from.display()
        )
    })?;
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().join("report.json").is_file() {
            continue;
        }
        if let Some((base, shard)) = Shard::split_run_id(&name).filter(|(b, _)| plain_run_id(b)) {
            out.push((
                base.to_owned(),
                Found {
                    from: i,
                    shard,
                    run_id: name.clone(),
                },
            ));
        }
    }
    Ok(out)
}

/// The complete shard set of one unsharded run id, in index order, or why it is incomplete.
fn complete_set(base: &str, found: &[Found], froms: &[PathBuf]) -> Result<Vec<Found>> {
    let counts: BTreeSet<u32> = found.iter().map(|f| f.shard.count).collect();
    if counts.len() > 1 {
        bail!(
            "run {base}: the shard runs disagree on N ({}): mixed shard sets cannot be merged",
            counts.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    let n = *counts
        .first()
        .ok_or_else(|| anyhow!("run {base}: no shard run of it under any --from folder"))?;
    for (i, f) in froms.iter().enumerate() {
        let mine: Vec<&Found> = found.iter().filter(|x| x.from == i).collect();
        match mine.len() {
            0 => bail!(
                "run {base}: --from {} has no shard run {base}-s?of{n}: the shard set is incomplete (did that shard \
                 fail, or run on other inputs?)",
                f.display()
            ),
            1 => {}
            _ => bail!(
                "run {base}: --from {} holds the runs of several shards ({}); each shard needs its own folder",
                f.display(),
                mine.iter().map(|x| x.shard.to_string()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    if froms.len() != n as usize {
        bail!(
            "run {base}: its shard runs say N = {n}, but {} --from folder(s) were given",
            froms.len()
        );
    }
    let mut by_index: BTreeMap<u32, &Found> = BTreeMap::new();
    for f in found {
        if let Some(prev) = by_index.insert(f.shard.index, f) {
            bail!(
                "run {base}: shard {} appears under both --from {} and --from {}",
                f.shard,
                froms[prev.from].display(),
                froms[f.from].display()
            );
        }
    }
    if let Some(missing) = (0..n).find(|i| !by_index.contains_key(i)) {
        bail!("run {base}: shard {missing}/{n} is missing: the shard set is incomplete");
    }
    Ok(by_index.into_values().cloned().collect())
}

/// Whether every one of these shard runs applied no file and published nothing.
fn applied_nothing(found: &[Found], froms: &[PathBuf]) -> Result<bool> {
    for f in found {
        let r: Report = read_json(&from_reports(&froms[f.from]).join(&f.run_id).join("report.json"))?;
        let applied = r.inputs.iter().any(|i| i.status == InputStatus::Applied);
        if applied || !r.outputs.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
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

/// A JSON file this program wrote (report.json, MANIFEST.json), read typed.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_reader(std::io::BufReader::new(f)).map_err(|e| {
        let what = if e.is_data() {
            "does not hold what this program writes there"
        } else {
            "is not valid JSON"
        };
        anyhow::Error::new(e).context(format!("{} {what}", path.display()))
    })
}

/// MANIFEST.json as read: the run and its files.
#[derive(serde::Deserialize)]
struct ManifestIn {
    run_id: String,
    files: Vec<OutputEntry>,
}

fn load_shard(from: &Path, f: &Found) -> Result<ShardRun> {
    let report_dir = from_reports(from).join(&f.run_id);
    let report: Report = read_json(&report_dir.join("report.json"))?;
    let at = || format!("shard run {} ({})", f.run_id, report_dir.display());
    ensure!(report.run_id == f.run_id, "{}: report.json names another run", at());
    ensure!(!report.dry_run, "{}: a dry run cannot be merged", at());
    ensure!(report.status.completed(), "{}: the run did not complete", at());
    // every name read from the report that becomes a file name: checked before anything is written
    for name in report.worklists.keys() {
        ensure!(
            RUN_WORKLISTS.contains(&name.as_str()),
            "{}: report.json names a worklist `run` does not write, {}: nothing merged",
            at(),
            shown(name)
        );
    }
    let section = report
        .extra
        .get("shard")
        .and_then(|v| serde_json::from_value::<ShardSection>(v.clone()).ok())
        .filter(|s| s.index == f.shard.index && s.count == f.shard.count)
        .ok_or_else(|| anyhow!("{}: report.json does not describe shard {}", at(), f.shard))?;
    let outputs = &report.outputs;
    let run_dir = from_outbox(from).join(&f.run_id);
    let mut files = Vec::new();
    if outputs.is_empty() {
        ensure!(
            !run_dir.exists(),
            "{}: the report lists no linkage files, but {} exists",
            at(),
            run_dir.display()
        );
    } else {
        let manifest: ManifestIn = read_json(&run_dir.join("MANIFEST.json")).with_context(|| {
            format!(
                "{}: its linkage files are missing (expected {})",
                at(),
                run_dir.display()
            )
        })?;
        ensure!(
            manifest.run_id == f.run_id && manifest.files == *outputs,
            "{}: MANIFEST.json and report.json disagree",
            at()
        );
        for e in outputs {
            let name = e.name.as_str();
            ensure!(
                !name.is_empty() && !name.contains(['/', '\\']) && name != "MANIFEST.json",
                "{}: a bad file name in MANIFEST.json",
                at()
            );
            let path = run_dir.join(name);
            // the whole file is checked before anything is merged; its groups and rows are read
            // (and hashed again) only while merging, one at a time
            let (bytes, sha256) = file_digest(&path)?;
            ensure!(
                e.bytes == bytes && e.sha256 == sha256,
                "{}: {name} does not match its MANIFEST.json entry (size or SHA-256)",
                at()
            );
            let h = LinkageReader::open(&path)
                .with_context(|| format!("{}: cannot read {name}", at()))?
                .header()
                .clone();
            let expected = format!("{}_{}_{}.{}", h.kind.name(), h.sender, f.run_id, h.format.extension());
            ensure!(
                name == expected && e.kind == h.kind.name(),
                "{}: {name} is not named after its header",
                at()
            );
            ensure!(
                h.file_identifier == format!("{}-{}", h.kind.name(), f.run_id) && h.file_sequence == 1,
                "{}: {name} has a FileIdentifier or FileSequence that run does not write",
                at()
            );
            files.push(ShardFile {
                name: name.to_owned(),
                path,
                header: h,
                records: e.records,
                bytes,
                sha256,
            });
        }
    }
    Ok(ShardRun {
        shard: f.shard,
        run_id: f.run_id.clone(),
        report,
        section,
        report_dir,
        files,
    })
}

/// The key a row belongs to, checked against the shard it came from.
fn owned(shard: Shard, run_id: &str, insurer: InsurerNumber, key: SubscriberKey) -> Result<SubscriberKey> {
    ensure!(
        shard.owns(insurer, key),
        "shard run {run_id} published subscriber {insurer}/{key}, which belongs to shard {}/{}: the shards were \
         not run with the same N, or a ledger was used by the wrong shard",
        Shard::of_subscriber(shard.count, insurer, key),
        shard.count
    );
    Ok(key)
}

/// One shard's file of a merge: its reader, the next subscriber's item (read ahead), the key
/// before it.
struct Part<'a> {
    run: &'a ShardRun,
    file: &'a ShardFile,
    reader: LinkageReader<std::fs::File>,
    head: Option<(SubscriberKey, LinkageItem)>,
    last: Option<SubscriberKey>,
}

impl Part<'_> {
    fn at(&self) -> String {
        format!("shard run {} ({})", self.run.run_id, self.run.report_dir.display())
    }

    fn read(&mut self) -> Result<Option<LinkageItem>> {
        self.reader
            .next_item()
            .with_context(|| format!("{}: cannot read {}", self.at(), self.file.name))
    }

    /// Takes `item` (the next one of this file) as the head: of the insurer, of a subscriber of
    /// this shard, in key order after the previous one (strictly so when `one_per_key`).
    fn accept(&mut self, item: Option<LinkageItem>, what: &str, ins: InsurerNumber, one_per_key: bool) -> Result<()> {
        let Some(item) = item else {
            self.head = None;
            return Ok(());
        };
        let row = if one_per_key { "group" } else { "row" };
        ensure!(item.insurer() == ins, "{what}: a {row} of another insurer");
        let Some(k) = item.key() else {
            bail!(
                "{what}: shard run {} mixes insurer-wide rows among subscriber rows",
                self.run.run_id
            );
        };
        owned(self.run.shard, &self.run.run_id, ins, k)?;
        match self.last {
            Some(prev) if k < prev => bail!(
                "{what}: {} of shard run {} is not in subscriber-key order (subscriber {k} after {prev}); run writes \
                 every linkage file in key order, so this file was not written by run as it is",
                self.file.name,
                self.run.run_id
            ),
            Some(prev) if k == prev && one_per_key => bail!(
                "{what}: subscriber {k} appears twice in {} of shard run {}",
                self.file.name,
                self.run.run_id
            ),
            _ => {}
        }
        self.last = Some(k);
        self.head = Some((k, item));
        Ok(())
    }

    fn advance(&mut self, what: &str, ins: InsurerNumber, one_per_key: bool) -> Result<()> {
        let item = self.read()?;
        self.accept(item, what, ins, one_per_key)
    }

    /// The insurer-wide (Scope 2) rows a FlagLinkage file starts with; reads up to the first
    /// subscriber row, which becomes the head.
    fn insurer_wide(&mut self, what: &str, ins: InsurerNumber) -> Result<Vec<FlagRow>> {
        let mut wide = Vec::new();
        loop {
            match self.read()? {
                Some(LinkageItem::Flag(r)) if r.key.is_none() => {
                    ensure!(r.insurer == ins, "{what}: a row of another insurer");
                    wide.push(r);
                }
                other => {
                    self.accept(other, what, ins, false)?;
                    return Ok(wide);
                }
            }
        }
    }
}

/// A k-way merge, by subscriber key, of one insurer's files of one kind across the shards. Each
/// file is in key order (checked as it is read) and a subscriber lives in one shard only
/// (checked), so the merged sequence is the order one process writes.
struct KWay<'a> {
    what: String,
    ins: InsurerNumber,
    /// SubscriberLinkage: one group per subscriber.
    one_per_key: bool,
    parts: Vec<Part<'a>>,
}

impl KWay<'_> {
    fn next(&mut self) -> Result<Option<LinkageItem>> {
        let mut best: Option<(usize, SubscriberKey)> = None;
        for (i, p) in self.parts.iter().enumerate() {
            let Some((k, _)) = &p.head else { continue };
            match best {
                Some((b, bk)) if *k == bk => bail!(
                    "{}: subscriber {k} appears in shards {} and {}",
                    self.what,
                    self.parts[b].run.shard.index,
                    p.run.shard.index
                ),
                Some((_, bk)) if *k > bk => {}
                _ => best = Some((i, *k)),
            }
        }
        let Some((b, _)) = best else {
            return Ok(None);
        };
        let (_, item) = self.parts[b].head.take().expect("the smallest head");
        self.parts[b].advance(&self.what, self.ins, self.one_per_key)?;
        Ok(Some(item))
    }

    /// Once the merge is through (every file read to its end and its trailer checked): each file
    /// held the number of records MANIFEST.json says, and its bytes are still those it lists.
    fn finish(self) -> Result<()> {
        for p in self.parts {
            let (at, name) = (p.at(), &p.file.name);
            ensure!(
                p.reader.items() == p.file.records,
                "{at}: {name} holds another number of records than MANIFEST.json says"
            );
            let (sha, bytes) = p.reader.finish().with_context(|| format!("{at}: cannot read {name}"))?;
            ensure!(
                bytes == p.file.bytes && hex(&sha) == p.file.sha256,
                "{at}: {name} changed while it was merged (no longer the size or SHA-256 of its MANIFEST.json entry)"
            );
        }
        Ok(())
    }
}

/// The merged items as the writers take them: an error (a reader's, a failed check) is stashed
/// in `fatal` and ends the sequence, so the caller can tell a complete merge from a cut one.
fn stream<'m, T: 'm>(
    merge: &'m mut KWay<'_>,
    fatal: &'m mut Option<anyhow::Error>,
    take: fn(LinkageItem) -> Option<T>,
) -> impl Iterator<Item = T> + 'm {
    std::iter::from_fn(move || {
        if fatal.is_some() {
            return None;
        }
        match merge.next() {
            Ok(Some(item)) => match take(item) {
                Some(t) => Some(t),
                None => {
                    *fatal = Some(anyhow!("{}: a row of another kind than the file's", merge.what));
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                *fatal = Some(e);
                None
            }
        }
    })
}

/// Merges one insurer's files of one kind straight into `path` (0600, fsynced); returns what
/// was written, its size and SHA-256. Holds one item per shard, plus the insurer-wide FlagLinkage
/// rows.
fn merge_set(
    path: &Path,
    header: &FileHeader,
    layout: &dyn LinkageLayout,
    shards: &[ShardRun],
    parts: &[(&ShardRun, &ShardFile)],
) -> Result<(Written, u64, String)> {
    let (ins, kind) = (header.sender, header.kind);
    let what = format!("{} of insurer {ins}", kind.name());
    let mut merge = KWay {
        one_per_key: kind == FileKind::SubscriberLinkage,
        parts: parts
            .iter()
            .map(|(run, file)| {
                let reader = LinkageReader::open(&file.path)
                    .with_context(|| format!("shard run {}: cannot read {}", run.run_id, file.name))?;
                Ok(Part {
                    run,
                    file,
                    reader,
                    head: None,
                    last: None,
                })
            })
            .collect::<Result<_>>()?,
        what,
        ins,
    };
    let mut insurer_wide: Vec<FlagRow> = Vec::new();
    if kind == FileKind::FlagLinkage {
        // Scope 2 rows come first in every shard and are the same in every shard (a shard
        // without the file has none)
        let mut first: Option<Vec<FlagRow>> = None;
        for s in shards {
            let wide = match merge.parts.iter_mut().find(|p| p.run.shard == s.shard) {
                Some(p) => p.insurer_wide(&merge.what, ins)?,
                None => Vec::new(),
            };
            match &first {
                Some(w) if *w != wide => bail!(
                    "{}: shard runs {} and {} disagree on the insurer-wide (Scope 2) flags, which every shard holds: \
                     were their ledgers changed apart?",
                    merge.what,
                    shards[0].run_id,
                    s.run_id
                ),
                Some(_) => {}
                None => first = Some(wide),
            }
        }
        insurer_wide = first.unwrap_or_default();
    } else {
        let (what, one) = (merge.what.clone(), merge.one_per_key);
        for p in &mut merge.parts {
            p.advance(&what, ins, one)?;
        }
    }
    let mut fatal: Option<anyhow::Error> = None;
    let written = {
        let items = &mut merge;
        match kind {
            FileKind::SubscriberLinkage => {
                let mut groups = stream(items, &mut fatal, |i| match i {
                    LinkageItem::Subscriber(g) => Some(g),
                    _ => None,
                });
                write_linkage_file(path, |out| layout.subscriber_linkage(header, &mut groups, out))
            }
            FileKind::FlagLinkage => {
                let keyed = stream(items, &mut fatal, |i| match i {
                    LinkageItem::Flag(r) => Some(r),
                    _ => None,
                });
                let mut rows = insurer_wide.into_iter().chain(keyed);
                write_linkage_file(path, |out| layout.flag_linkage(header, &mut rows, out))
            }
            FileKind::FukuhonLinkage => {
                let mut rows = stream(items, &mut fatal, |i| match i {
                    LinkageItem::Fukuhon(r) => Some(r),
                    _ => None,
                });
                write_linkage_file(path, |out| layout.fukuhon_linkage(header, &mut rows, out))
            }
            k => bail!("{} is not a linkage kind", k.name()),
        }
    };
    if let Some(e) = fatal {
        return Err(e);
    }
    let written = written?;
    merge.finish()?;
    Ok(written)
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

/// Entries of a list in several shards, each as often as in the shard holding it most often
/// (replicated entries appear in every shard, a subscriber's in one), in order of first sight,
/// handed to `out`.
fn union_by_max_count<T: Clone + Eq + Hash>(
    lists: impl IntoIterator<Item = impl IntoIterator<Item = Result<T>>>,
    mut out: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut taken: HashMap<T, usize> = HashMap::new();
    for list in lists {
        let mut here: HashMap<T, usize> = HashMap::new();
        for v in list {
            let v = v?;
            let n = here.entry(v.clone()).or_default();
            *n += 1;
            let t = taken.entry(v.clone()).or_default();
            if *n > *t {
                *t += 1;
                out(v)?;
            }
        }
    }
    Ok(())
}

/// A worklist column name for [`Worklist`] (which holds `&'static str`, as the columns of a
/// run are literals). A merge makes a handful of them once per process.
fn column(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The worklists a `run` writes: the only names a shard's report.json may give (each becomes a
/// file name, `<name>.csv`, read in the shard's folder and written in the merged one).
pub const RUN_WORKLISTS: [&str; 8] = [
    "certificate_issuance",
    "character_identification",
    "flag_confirmation",
    "inquiry_answered",
    "inquiry_awaiting",
    "inquiry_not_written",
    "review",
    "support_measure_expiry",
];

/// A name fit to become a folder name: letters, digits and `-`, not empty, at most 100 bytes
/// (what `run` makes a run id of), so no name read from a shard's folder can lead elsewhere.
fn plain_run_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && !s.starts_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A name read from a file, for a message: shown only when short and plain.
fn shown(s: &str) -> String {
    if !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
    {
        format!("{s:?}")
    } else {
        "(a name not shown)".to_owned()
    }
}

fn read_worklist(dir: &Path, name: &str, expected: u64) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let path = dir.join(format!("{name}.csv"));
    let (columns, rows) = crate::report::csv::read_table(&path)?;
    // the cell as the run held it: the report writer neutralises it again
    let raw = |c: String| match c.strip_prefix('\'') {
        Some(rest) if crate::report::neutral_cell(rest).len() != rest.len() => rest.to_owned(),
        _ => c,
    };
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.into_iter().map(raw).collect()).collect();
    ensure!(
        rows.len() as u64 == expected,
        "{} holds {} rows, report.json says {expected}",
        path.display(),
        rows.len()
    );
    Ok((columns, rows))
}

fn merged_report(base: &str, shards: &[ShardRun], outputs: Vec<OutputEntry>) -> Result<Report> {
    let first = &shards[0].report;
    let n = shards.len() as u64;
    let mut r = Report::new(base.to_owned(), first.as_of.clone(), false);
    r.inputs = first.inputs.clone();
    let rejects = &mut r.rejects;
    union_by_max_count(shards.iter().map(|s| s.report.rejects.iter()), |e| rejects.push(e))?;
    for s in shards {
        r.carries.extend(s.report.carries.iter().cloned());
        for p in s.report.pending_flags.iter() {
            r.pending_flags.push(p?)?;
        }
        r.flag_changes.extend(s.report.flag_changes.iter().cloned());
    }
    // subscriber order, as a single run lists them (stable: a subscriber's entries keep theirs)
    r.carries
        .sort_by(|a, b| (&a.to_insurer, &a.to_subscriber_key).cmp(&(&b.to_insurer, &b.to_subscriber_key)));
    r.pending_flags
        .sort_by_key(|p| (p.insurer.clone(), p.subscriber_key.clone()))?;
    r.flag_changes
        .sort_by(|a, b| (&a.insurer, &a.subscriber_key).cmp(&(&b.insurer, &b.subscriber_key)));

    // a hand-off is pending only if no shard matched it
    let mut pending: Option<BTreeSet<&String>> = None;
    for s in shards {
        let here: BTreeSet<&String> = s.section.pending_handoffs.iter().collect();
        pending = Some(match pending {
            None => here,
            Some(p) => p.intersection(&here).copied().collect(),
        });
    }
    r.pending_handoffs = pending.map_or(0, |p| p.len() as u64);

    // worklists: rows of every shard (replicated rows once), sorted
    let mut names: BTreeSet<String> = BTreeSet::new();
    for s in shards {
        for name in s.report.worklists.keys() {
            ensure!(
                RUN_WORKLISTS.contains(&name.as_str()),
                "shard run {}: report.json names a worklist `run` does not write, {}: nothing merged",
                s.run_id,
                shown(name)
            );
        }
        names.extend(s.report.worklists.keys().cloned());
    }
    for name in names {
        let mut columns: Option<Vec<String>> = None;
        let mut lists: Vec<Vec<Vec<String>>> = Vec::new();
        for s in shards {
            let expected = s.report.worklists.get(&name).copied().unwrap_or(0) as u64;
            let (cols, rows) = read_worklist(&s.report_dir, &name, expected)?;
            match &columns {
                Some(c) if *c != cols => bail!("worklist {name}: the shard runs wrote different columns"),
                _ => columns = Some(cols),
            }
            lists.push(rows);
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        union_by_max_count(lists.into_iter().map(|l| l.into_iter().map(Ok)), |row| {
            rows.push(row);
            Ok(())
        })?;
        rows.sort();
        let title = shards
            .iter()
            .find_map(|s| s.section.worklist_titles.get(&name))
            .unwrap_or(&name)
            .to_owned();
        r.add_worklist(
            &name,
            Worklist {
                title,
                columns: columns.unwrap_or_default().into_iter().map(column).collect(),
                rows,
            },
        );
    }
    r.outputs = outputs;

    // counters: summed, less the N−1 extra copies of what every shard counted (replicated records)
    let mut summary = Summary::default();
    for s in shards {
        for (k, v) in s.report.summary.iter() {
            summary.add(k.clone(), v);
        }
    }
    for c in &REPLICATED_COUNTERS {
        let reps: BTreeSet<u64> = shards.iter().map(|s| s.section.replicated.of(c)).collect();
        ensure!(
            reps.len() == 1,
            "the shard runs disagree on the replicated (insurer-level) part of {}: were their ledgers changed apart?",
            c.name()
        );
        let rep = reps.first().copied().unwrap_or(0);
        let total = summary.entry(c.clone());
        *total = total
            .checked_sub((n - 1) * rep)
            .ok_or_else(|| anyhow!("the shard runs' counters of {} do not add up", c.name()))?;
    }
    let count = |st: InputStatus| r.inputs.iter().filter(|i| i.status == st).count() as u64;
    summary.set(SummaryKey::FilesApplied, count(InputStatus::Applied));
    summary.set(SummaryKey::FilesSkipped, count(InputStatus::Skipped));
    summary.set(SummaryKey::FilesRejected, count(InputStatus::Rejected));
    summary.set(SummaryKey::RecordsRejected, r.rejects.len() as u64);
    r.summary = summary;
    r.status = if shards
        .iter()
        .any(|s| s.report.status == ReportStatus::CompletedWithCriticalFindings)
    {
        ReportStatus::CompletedWithCriticalFindings
    } else if r.rejects.is_empty() {
        ReportStatus::Completed
    } else {
        ReportStatus::CompletedWithRejects
    };
    r.extra.insert(
        "sharded".into(),
        serde_json::json!({
            "count": n,
            "shard_runs": shards.iter().map(|s| s.run_id.clone()).collect::<Vec<_>>(),
            "key": "fnv1a64(InsurerNumber 0x1F SubscriberKey) mod count",
        }),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicated_entries_count_once_partitioned_ones_add_up() {
        let a = ["x", "y", "x"];
        let b = ["x", "z", "x"];
        let mut got = Vec::new();
        union_by_max_count([a, b].map(|l| l.map(Ok)), |v| {
            got.push(v);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, ["x", "y", "x", "z"]);
    }

    fn found(from: usize, index: u32, count: u32) -> Found {
        Found {
            from,
            shard: Shard { index, count },
            run_id: format!("b-s{index}of{count}"),
        }
    }

    #[test]
    fn incomplete_or_mixed_shard_sets_are_refused() {
        let froms: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("shard-{i}"))).collect();
        let ok = [found(0, 0, 3), found(1, 1, 3), found(2, 2, 3)];
        assert_eq!(complete_set("b", &ok, &froms).unwrap().len(), 3);
        let cases: [(&[Found], &str); 5] = [
            (&[found(0, 0, 3), found(1, 1, 3)], "incomplete"),
            (&[found(0, 0, 3), found(1, 1, 3), found(2, 1, 3)], "appears under both"),
            (&[found(0, 0, 3), found(1, 1, 3), found(2, 1, 2)], "disagree on N"),
            (&[found(0, 0, 2), found(1, 1, 2), found(2, 1, 2)], "N = 2"),
            (&[found(0, 0, 3), found(0, 1, 3), found(2, 2, 3)], "several shards"),
        ];
        for (set, why) in cases {
            let e = complete_set("b", set, &froms).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
