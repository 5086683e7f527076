//! The run's input records, ordered by subscriber so that a load of any size is applied chunk
//! by chunk with bounded memory.
//!
//! The spool is an external sort by (wave, InsurerNumber, SubscriberKey), the waves being
//! everything but 後期 first, then 後期 (so that a carry sees the 国保 state after this run). It
//! holds records in memory until there are `chunk_records` of them; then it sorts them and writes
//! them as a sorted run ([`super::spill`] frames, checksummed) to a private temporary folder next
//! to the ledger, and starts again. At apply time the runs of a wave are merged (one buffered
//! reader per run) and handed out in chunks of about `chunk_records` records, never splitting a
//! subscriber's records. A small run never touches the disk.
//!
//! Chunks come in subscriber order whatever their size, so the ledger is written in key order
//! (B-tree appends, not random page writes all over the tables) and the result — ledger, outbox,
//! reports — does not depend on the chunk size. The folder is removed when the spool is dropped,
//! and by the next run's recovery after a crash.
//!
//! The spool counts records, not bytes, because memory follows records whatever the syntax (a CSV
//! row and an XML element of the same record differ threefold in size). Insurer-wide flag
//! changes (Scope 2) and hand-offs are few and needed by every chunk: they stay in memory.

use crate::domain::{AgeTransitionHandoff, FlagChange, FlagScope, InsurerNumber, Record, SubKey, SubscriberKey};
use anyhow::{Context, Result};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Prefix of the spill folders (the next run removes leftovers of a crashed one).
pub const SPILL_PREFIX: &str = ".nhi-spill-";
/// Runs of one wave merged into one when there are this many (so a tiny chunk size cannot
/// exhaust file handles at merge time; the default chunk never gets here below ~25M records).
const MAX_RUNS: usize = 128;
/// Default records per chunk: 2.5–4.5 KB of memory each at peak (a migration's records are all
/// full registrations), so under 500 MB.
pub const DEFAULT_CHUNK_RECORDS: u64 = 100_000;

/// The two apply waves: 後期 subscribers are applied after everybody else, so that a carry sees
/// the 国保 state after this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wave {
    NotKouki = 0,
    Kouki = 1,
}

impl Wave {
    pub fn of(insurer: InsurerNumber) -> Wave {
        if insurer.is_kouki() {
            Wave::Kouki
        } else {
            Wave::NotKouki
        }
    }
}

/// Stable 64-bit FNV-1a of a subscriber's (InsurerNumber, SubscriberKey).
pub fn subscriber_hash(insurer: InsurerNumber, key: SubscriberKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in insurer.as_str().bytes().chain([0x1f]).chain(key.as_str().bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The subscriber a spooled record belongs to (hand-offs and Scope 2 flags are not spooled).
fn sub_key(rec: &Record) -> SubKey {
    match rec {
        Record::SubscriberChange(c) => (c.insurer, c.key),
        Record::Fukuhon(f) => (f.insurer, f.key),
        Record::FlagChange(f) => (f.insurer, f.key.expect("subscriber-scoped")),
        Record::AgeTransitionHandoff(_) | Record::AgeTransitionInquiry(_) => {
            unreachable!("hand-offs and inquiries are not spooled by subscriber")
        }
    }
}

struct State {
    /// [wave] → records not yet written to a run
    mem: [Vec<(u32, Record)>; 2],
    held: u64,
    /// Sorted runs on disk, once the spool spilled.
    disk: Option<Disk>,
}

struct Disk {
    dir: tempfile::TempDir,
    /// [wave] → run files
    runs: [Vec<PathBuf>; 2],
    next: usize,
}

/// Records of a run, sorted by subscriber. `tag` is the caller's file index.
pub struct Spool {
    chunk_records: u64,
    spill_in: PathBuf,
    prefix: String,
    state: Mutex<State>,
    scope2: Mutex<Vec<(u32, FlagChange)>>,
    handoffs: Mutex<Vec<(u32, AgeTransitionHandoff)>>,
}

impl Spool {
    /// A spool that never spills (tests, callers with few records).
    pub fn in_memory() -> Spool {
        Spool::new(u64::MAX, Path::new("."))
    }

    /// A spool that spills sorted runs of `chunk_records` records to a private folder under
    /// `spill_in`.
    pub fn new(chunk_records: u64, spill_in: &Path) -> Spool {
        Spool {
            chunk_records: chunk_records.max(1),
            spill_in: spill_in.to_path_buf(),
            prefix: SPILL_PREFIX.to_owned(),
            state: Mutex::new(State {
                mem: [Vec::new(), Vec::new()],
                held: 0,
                disk: None,
            }),
            scope2: Mutex::new(Vec::new()),
            handoffs: Mutex::new(Vec::new()),
        }
    }

    /// Names the spill folder `<prefix>XXXXXX` (a prefix of one ledger's own, so that its
    /// recovery removes only its own leftovers); the default is [`SPILL_PREFIX`].
    pub fn with_prefix(mut self, prefix: String) -> Spool {
        self.prefix = prefix;
        self
    }

    /// Whether records went to disk.
    pub fn spills(&self) -> bool {
        self.state.lock().expect("spool lock").disk.is_some()
    }

    /// Adds one record of file `tag`. Safe to call from several reading threads.
    pub fn push(&self, tag: u32, rec: Record) -> Result<()> {
        let ins = match &rec {
            Record::SubscriberChange(c) => c.insurer,
            Record::Fukuhon(f) => f.insurer,
            Record::FlagChange(f) => match f.key {
                Some(_) if f.scope == FlagScope::Subscriber => f.insurer,
                _ => {
                    let Record::FlagChange(f) = rec else { unreachable!() };
                    self.scope2.lock().expect("spool lock").push((tag, f));
                    return Ok(());
                }
            },
            Record::AgeTransitionHandoff(_) => {
                let Record::AgeTransitionHandoff(h) = rec else {
                    unreachable!()
                };
                self.handoffs.lock().expect("spool lock").push((tag, h));
                return Ok(());
            }
            Record::AgeTransitionInquiry(_) => {
                anyhow::bail!("an AgeTransitionInquiry record cannot be applied (run refuses inquiry files)")
            }
        };
        let mut st = self.state.lock().expect("spool lock");
        st.mem[Wave::of(ins) as usize].push((tag, rec));
        st.held += 1;
        if st.held >= self.chunk_records {
            self.write_runs(&mut st)?;
        }
        Ok(())
    }

    /// Sorts what memory holds and writes it as one run per wave.
    fn write_runs(&self, st: &mut State) -> Result<()> {
        if st.disk.is_none() {
            tracing::info!(
                records = st.held,
                "spilling the run's records to disk, sorted by subscriber"
            );
            st.disk = Some(Disk {
                dir: private_dir(&self.spill_in, &self.prefix)?,
                runs: [Vec::new(), Vec::new()],
                next: 0,
            });
        }
        let disk = st.disk.as_mut().expect("created");
        let mut buf = Vec::with_capacity(1 << 16);
        for (w, recs) in st.mem.iter_mut().enumerate() {
            if recs.is_empty() {
                continue;
            }
            recs.sort_by_key(|(_, r)| sub_key(r));
            let path = disk.dir.path().join(format!("run-{:05}", disk.next));
            disk.next += 1;
            let f = private_file(&path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, f);
            for (tag, r) in recs.drain(..) {
                buf.clear();
                super::spill::encode_frame(tag, &r, &mut buf);
                out.write_all(&buf).context("cannot write the spill")?;
            }
            out.flush().context("cannot write the spill")?;
            disk.runs[w].push(path);
            if disk.runs[w].len() >= MAX_RUNS {
                disk.compact(w)?;
            }
        }
        st.mem.iter_mut().for_each(|v| v.shrink_to(0));
        st.held = 0;
        Ok(())
    }

    /// The chunks of one wave, in subscriber order. Call once per wave, after all pushes.
    pub fn chunks(&self, wave: Wave) -> Result<Chunks> {
        let mut st = self.state.lock().expect("spool lock");
        if st.disk.is_none() {
            let mut recs = std::mem::take(&mut st.mem[wave as usize]);
            recs.sort_by_key(|(_, r)| sub_key(r));
            return Ok(Chunks {
                limit: self.chunk_records,
                source: Source::Memory(Some(recs)),
            });
        }
        if st.held > 0 {
            self.write_runs(&mut st)?;
        }
        let disk = st.disk.as_ref().expect("spilled");
        let mut readers = disk.runs[wave as usize]
            .iter()
            .map(|p| RunReader::open(p))
            .collect::<Result<Vec<_>>>()?;
        let merge = Merge::new(&mut readers)?;
        Ok(Chunks {
            limit: self.chunk_records,
            source: Source::Runs { readers, merge },
        })
    }

    pub fn take_scope2(&self) -> Vec<(u32, FlagChange)> {
        std::mem::take(&mut *self.scope2.lock().expect("spool lock"))
    }

    pub fn take_handoffs(&self) -> Vec<(u32, AgeTransitionHandoff)> {
        std::mem::take(&mut *self.handoffs.lock().expect("spool lock"))
    }
}

impl Disk {
    /// Merges the runs of wave `w` into one sorted run.
    fn compact(&mut self, w: usize) -> Result<()> {
        let paths = std::mem::take(&mut self.runs[w]);
        let mut readers = paths.iter().map(|p| RunReader::open(p)).collect::<Result<Vec<_>>>()?;
        let path = self.dir.path().join(format!("run-{:05}", self.next));
        self.next += 1;
        let f = private_file(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        let mut merge = Merge::new(&mut readers)?;
        let mut buf = Vec::with_capacity(1 << 16);
        while let Some((tag, r)) = merge.next(&mut readers)? {
            buf.clear();
            super::spill::encode_frame(tag, &r, &mut buf);
            out.write_all(&buf).context("cannot write the spill")?;
        }
        out.flush().context("cannot write the spill")?;
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
        self.runs[w].push(path);
        Ok(())
    }
}

/// A k-way merge of sorted runs by subscriber (ties in run order, so deterministic).
struct Merge {
    heads: Vec<Option<(u32, Record)>>,
    heap: BinaryHeap<Reverse<(SubKey, usize)>>,
}

impl Merge {
    fn new(readers: &mut [RunReader]) -> Result<Merge> {
        let mut heads = Vec::with_capacity(readers.len());
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            let head = r.next()?;
            if let Some((_, rec)) = &head {
                heap.push(Reverse((sub_key(rec), i)));
            }
            heads.push(head);
        }
        Ok(Merge { heads, heap })
    }

    fn peek_key(&self) -> Option<SubKey> {
        self.heap.peek().map(|Reverse((k, _))| *k)
    }

    fn next(&mut self, readers: &mut [RunReader]) -> Result<Option<(u32, Record)>> {
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let rec = self.heads[i].take().expect("a head for every heap entry");
        self.heads[i] = readers[i].next()?;
        if let Some((_, r)) = &self.heads[i] {
            self.heap.push(Reverse((sub_key(r), i)));
        }
        Ok(Some(rec))
    }
}

/// One sorted run, read frame by frame.
struct RunReader {
    input: BufReader<std::fs::File>,
    frame: Vec<u8>,
    /// Bytes of the run file not read yet: a frame length beyond them is corruption, found
    /// before anything is allocated for it.
    left: u64,
}

impl RunReader {
    fn open(path: &Path) -> Result<RunReader> {
        let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let left = f
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        Ok(RunReader {
            input: BufReader::with_capacity(1 << 16, f),
            frame: Vec::new(),
            left,
        })
    }

    fn next(&mut self) -> Result<Option<(u32, Record)>> {
        if self.input.fill_buf().context("cannot read the spill")?.is_empty() {
            return Ok(None);
        }
        self.frame.resize(8, 0);
        self.input
            .read_exact(&mut self.frame[..8])
            .context("the spill is truncated")?;
        let len = u32::from_le_bytes(self.frame[..4].try_into().expect("4 bytes")) as usize;
        let need = 8 + len as u64;
        if need > self.left {
            anyhow::bail!(
                "the spill is corrupt: a frame of {len} bytes where {} are left",
                self.left.saturating_sub(8)
            );
        }
        self.left -= need;
        self.frame.resize(8 + len, 0);
        self.input
            .read_exact(&mut self.frame[8..])
            .context("the spill is truncated")?;
        match super::spill::FrameReader::new(&self.frame).next() {
            Some(r) => Ok(Some(r.context("the spill is corrupt")?)),
            None => anyhow::bail!("the spill is corrupt"),
        }
    }
}

enum Source {
    Memory(Option<Vec<(u32, Record)>>),
    Runs { readers: Vec<RunReader>, merge: Merge },
}

/// The chunks of one wave: each about `limit` records, subscribers never split, in order.
pub struct Chunks {
    limit: u64,
    source: Source,
}

impl Chunks {
    pub fn next_chunk(&mut self) -> Result<Option<Vec<(u32, Record)>>> {
        match &mut self.source {
            Source::Memory(v) => Ok(v.take().filter(|v| !v.is_empty())),
            Source::Runs { readers, merge } => {
                let mut out: Vec<(u32, Record)> = Vec::new();
                while let Some(k) = merge.peek_key() {
                    if out.len() as u64 >= self.limit && out.last().is_some_and(|(_, r)| sub_key(r) != k) {
                        break;
                    }
                    out.extend(merge.next(readers)?);
                }
                Ok((!out.is_empty()).then_some(out))
            }
        }
    }
}

fn private_dir(spill_in: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    // owner only, from creation: the spill holds personal data like the ledger
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o700));
    }
    b.tempdir_in(spill_in)
        .with_context(|| format!("cannot create a spill folder in {}", spill_in.display()))
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Removes spill folders named `<prefix>…` left in `dir` by a crashed run.
pub fn remove_leftovers(dir: &Path, prefix: &str) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) && e.path().is_dir() {
                if std::fs::remove_dir_all(e.path()).is_ok() {
                    tracing::warn!("removed a spill folder left by an interrupted run");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Date, Fukuhon, FukuhonOperation, InfoCode};

    /// A corrupted frame length is found before the frame is allocated.
    #[test]
    fn a_corrupt_frame_length_fails_fast_without_allocating_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let mut bytes = (256u32 << 20).to_le_bytes().to_vec(); // 256 MiB
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&[7; 92]);
        std::fs::write(&path, &bytes).unwrap();
        let mut r = RunReader::open(&path).unwrap();
        let e = r.next().unwrap_err();
        assert!(format!("{e:#}").contains("corrupt"), "{e:#}");
        assert!(r.frame.capacity() < 1 << 20, "allocated {} bytes", r.frame.capacity());
    }

    #[test]
    fn hash_is_stable() {
        // FNV-1a 64 of "00131045\x1f0000000000000001", computed independently: bucket (and shard)
        // assignment must never change between releases or platforms
        let ins = InsurerNumber::parse("131045").unwrap();
        let key = SubscriberKey::parse("0000000000000001").unwrap();
        assert_eq!(subscriber_hash(ins, key), 0xc96f_b9e2_2107_7133);
    }

    #[test]
    fn spills_sorted_runs_and_merges_them_into_ordered_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(10, dir.path());
        let ins = InsurerNumber::parse("131045").unwrap();
        let rec = |n: u64, seq: u64| {
            Record::Fukuhon(Fukuhon {
                seq,
                operation: FukuhonOperation::parse("1").unwrap(),
                effective_date: Date::parse("20261201").unwrap(),
                insurer: ins,
                key: SubscriberKey::parse(&format!("{n:016}")).unwrap(),
                info_code: InfoCode::parse("TM00000000000001").unwrap(),
                disclosure: None,
                items: Vec::new(),
            })
        };
        // subscriber n gets records n and n+100 (in different runs), pushed out of order
        let order: Vec<u64> = (1..=20).rev().chain(1..=20).collect();
        for (i, n) in order.iter().enumerate() {
            assert_eq!(spool.spills(), i >= 10, "{i}");
            spool.push(0, rec(*n, if i < 20 { *n } else { *n + 100 })).unwrap();
        }
        let mut chunks = spool.chunks(Wave::NotKouki).unwrap();
        let mut all = Vec::new();
        while let Some(c) = chunks.next_chunk().unwrap() {
            assert!(c.len() <= 11, "a chunk is about the limit: {}", c.len());
            // a subscriber is never split: both of its records are in the same chunk
            let keys: std::collections::BTreeSet<_> = c.iter().map(|(_, r)| sub_key(r).1).collect();
            assert_eq!(keys.len() * 2, c.len());
            all.extend(c.into_iter().map(|(_, r)| (sub_key(&r).1, r.seq())));
        }
        let keys: Vec<_> = all.iter().map(|x| x.0).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "chunks come in subscriber order");
        let mut seqs: Vec<u64> = all.iter().map(|x| x.1).collect();
        seqs.sort();
        assert_eq!(seqs, (1..=20).chain(101..=120).collect::<Vec<_>>());
        assert!(spool.chunks(Wave::Kouki).unwrap().next_chunk().unwrap().is_none());
    }

    #[test]
    fn many_runs_are_compacted_and_still_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(1, dir.path());
        let ins = InsurerNumber::parse("131045").unwrap();
        let n = MAX_RUNS as u64 * 2 + 7;
        for i in (1..=n).rev() {
            spool
                .push(
                    0,
                    Record::Fukuhon(Fukuhon {
                        seq: i,
                        operation: FukuhonOperation::parse("1").unwrap(),
                        effective_date: Date::parse("20261201").unwrap(),
                        insurer: ins,
                        key: SubscriberKey::parse(&format!("{i:016}")).unwrap(),
                        info_code: InfoCode::parse("TM00000000000001").unwrap(),
                        disclosure: None,
                        items: Vec::new(),
                    }),
                )
                .unwrap();
        }
        let files = std::fs::read_dir(dir.path())
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .count();
        assert!(files < MAX_RUNS, "{files} run files");
        let mut c = spool.chunks(Wave::NotKouki).unwrap();
        let mut seqs = Vec::new();
        while let Some(part) = c.next_chunk().unwrap() {
            seqs.extend(part.into_iter().map(|(_, r)| r.seq()));
        }
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    }
}
