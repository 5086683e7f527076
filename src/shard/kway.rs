//! The k-way merge of one insurer's linkage files of one kind across the shard runs: each
//! shard's file streamed by its [`LinkageReader`] (key order and shard ownership checked as it
//! goes), the smallest subscriber key taken next, the result streamed into [`LinkageLayout`].
//! Memory holds one item per shard, plus the insurer-wide FlagLinkage rows.

use super::Shard;
use super::found::{ShardFile, ShardRun};
use crate::domain::{FileKind, InsurerNumber, SubscriberKey};
use crate::formats::linkage::{FlagRow, LinkageLayout, Written};
use crate::formats::linkage_reader::{LinkageItem, LinkageReader};
use crate::formats::{FileHeader, hex};
use crate::publish::write_linkage_file;
use anyhow::{Context, Result, anyhow, bail, ensure};
use std::path::Path;

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
pub(super) fn merge_set(
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
