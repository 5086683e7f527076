//! The merged run's report: the shard runs' reports joined into the one a single process would
//! have written — the record lists (rejects once, the subscribers' entries in key order), the
//! worklists (read from each shard's CSV, replicated rows once), the counters (summed, less the
//! extra copies of what every shard counted) and the status.

use super::REPLICATED_COUNTERS;
use super::found::{RUN_WORKLISTS, ShardRun, shown};
use crate::report::{InputStatus, OutputEntry, Report, ReportStatus, Summary, SummaryKey, Worklist};
use anyhow::{Result, anyhow, bail, ensure};
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::path::Path;

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

/// The merged run's report, with the merged linkage files as its outputs.
pub(super) fn merged_report(base: &str, shards: &[ShardRun], outputs: Vec<OutputEntry>) -> Result<Report> {
    let first = &shards[0].report;
    let n = shards.len() as u64;
    let mut r = Report::new(base.to_owned(), first.as_of.clone(), false);
    r.inputs = first.inputs.clone();
    merge_records(&mut r, shards)?;
    merge_worklists(&mut r, shards)?;
    r.outputs = outputs;
    r.summary = merged_summary(&r, shards)?;
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

/// Rejects (replicated ones once), carries, pending flags and flag changes in subscriber order,
/// and the hand-offs no shard matched.
fn merge_records(r: &mut Report, shards: &[ShardRun]) -> Result<()> {
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
    Ok(())
}

/// Worklists: rows of every shard (replicated rows once), sorted.
fn merge_worklists(r: &mut Report, shards: &[ShardRun]) -> Result<()> {
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
    Ok(())
}

/// Counters: summed, less the N−1 extra copies of what every shard counted (replicated
/// records); the file and reject counts of the merged report.
fn merged_summary(r: &Report, shards: &[ShardRun]) -> Result<Summary> {
    let n = shards.len() as u64;
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
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::union_by_max_count;

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
}
