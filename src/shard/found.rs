//! Finding and checking the shard runs to merge: which runs the `--from` folders hold, whether
//! a set is complete, and each shard run loaded — its report.json read whole (typed, the fields
//! this program does not know kept in `extra`), its linkage files checked against MANIFEST.json
//! with their headers read.

use super::{Shard, ShardSection};
use crate::formats::FileHeader;
use crate::formats::linkage_reader::LinkageReader;
use crate::publish::file_digest;
use crate::report::{InputStatus, OutputEntry, Report};
use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A shard run found under a `--from` folder.
#[derive(Clone, Debug)]
pub(super) struct Found {
    pub(super) from: usize,
    pub(super) shard: Shard,
    pub(super) run_id: String,
}

/// One shard run, checked: its report, and its linkage files checked against MANIFEST.json
/// with their headers read (their groups and rows are streamed when merged).
pub(super) struct ShardRun {
    pub(super) shard: Shard,
    pub(super) run_id: String,
    pub(super) report: Report,
    /// The report's `shard` section.
    pub(super) section: ShardSection,
    pub(super) report_dir: PathBuf,
    pub(super) files: Vec<ShardFile>,
}

/// One linkage file of a shard run.
pub(super) struct ShardFile {
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) header: FileHeader,
    /// Groups (SubscriberLinkage) or records, as MANIFEST.json says.
    pub(super) records: u64,
    pub(super) bytes: u64,
    pub(super) sha256: String,
}

fn from_reports(from: &Path) -> PathBuf {
    from.join("reports")
}

fn from_outbox(from: &Path) -> PathBuf {
    from.join("outbox")
}

/// Shard runs with a published report under `<from>/reports` (dry runs, aborted runs and staging
/// folders are not shard runs).
pub(super) fn shard_runs(from: &Path, i: usize) -> Result<Vec<(String, Found)>> {
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
pub(super) fn complete_set(base: &str, found: &[Found], froms: &[PathBuf]) -> Result<Vec<Found>> {
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
pub(super) fn applied_nothing(found: &[Found], froms: &[PathBuf]) -> Result<bool> {
    for f in found {
        let r: Report = read_json(&from_reports(&froms[f.from]).join(&f.run_id).join("report.json"))?;
        let applied = r.inputs.iter().any(|i| i.status == InputStatus::Applied);
        if applied || !r.outputs.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A JSON file this program wrote (report.json, MANIFEST.json), read typed.
pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
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

pub(super) fn load_shard(from: &Path, f: &Found) -> Result<ShardRun> {
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
pub(super) fn plain_run_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && !s.starts_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A name read from a file, for a message: shown only when short and plain.
pub(super) fn shown(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::{Found, complete_set};
    use crate::shard::Shard;
    use std::path::PathBuf;

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
