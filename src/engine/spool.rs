//! The run's input records, partitioned by subscriber so that a load of any size is applied
//! chunk by chunk with bounded memory.
//!
//! Records addressed to a subscriber go to one of [`BUCKETS`] buckets by a stable hash of
//! (InsurerNumber, SubscriberKey), separately for the two waves (everything but 後期, then 後期).
//! All events of a subscriber are therefore in one bucket, which is all the per-subscriber apply
//! needs; the engine applies chunk after chunk (a run of adjacent buckets holding about
//! `chunk_records` records) inside the run's one transaction.
//!
//! The spool counts records, not bytes, because memory follows records whatever the syntax (a
//! CSV row and an XML element of the same record differ threefold in size). It holds records in
//! memory until there are more than `chunk_records`; then it moves them, and everything after, to
//! checksummed bucket files ([`super::spill`]) in a private temporary folder next to the ledger,
//! removed when the spool is dropped (and by the next run's recovery after a crash). A small run
//! never touches the disk.
//!
//! Insurer-wide flag changes (Scope 2) and hand-offs are few and needed by every chunk: they are
//! kept in memory.

use crate::domain::*;
use anyhow::{Context, Result};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Prefix of the spill folders (the next run removes leftovers of a crashed one).
pub const SPILL_PREFIX: &str = ".nhi-spill-";
/// Buckets per wave once the spool spills (two files per bucket are open while reading).
pub const BUCKETS: u32 = 128;
/// Default records applied per chunk: about 2.5 KB of memory each at peak, so ≈ 500 MB.
pub const DEFAULT_CHUNK_RECORDS: u64 = 200_000;

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

fn bucket_of(insurer: InsurerNumber, key: SubscriberKey, buckets: u32) -> u32 {
    (subscriber_hash(insurer, key) % u64::from(buckets)) as u32
}

struct Disk {
    dir: tempfile::TempDir,
    /// [wave][bucket] → writer, records
    files: Vec<(BufWriter<std::fs::File>, u64)>,
}

enum Store {
    /// [wave] → records
    Memory([Vec<(u32, Record)>; 2], u64),
    Disk(Disk),
}

/// Records of a run, by wave and bucket. `tag` is the caller's file index.
pub struct Spool {
    chunk_records: u64,
    spill_in: PathBuf,
    store: Mutex<Store>,
    scope2: Mutex<Vec<(u32, FlagChange)>>,
    handoffs: Mutex<Vec<(u32, AgeTransitionHandoff)>>,
}

impl Spool {
    /// A spool that never spills (tests, callers with few records).
    pub fn in_memory() -> Spool {
        Spool::new(u64::MAX, Path::new("."))
    }

    /// A spool that spills to a private folder under `spill_in` past `chunk_records` records.
    pub fn new(chunk_records: u64, spill_in: &Path) -> Spool {
        Spool {
            chunk_records: chunk_records.max(1),
            spill_in: spill_in.to_path_buf(),
            store: Mutex::new(Store::Memory([Vec::new(), Vec::new()], 0)),
            scope2: Mutex::new(Vec::new()),
            handoffs: Mutex::new(Vec::new()),
        }
    }

    pub fn spills(&self) -> bool {
        matches!(*self.store.lock().expect("spool lock"), Store::Disk(_))
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
        };
        let wave = Wave::of(ins) as usize;
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut store = self.store.lock().expect("spool lock");
        let held = match &mut *store {
            Store::Memory(v, n) if *n < self.chunk_records => {
                v[wave].push((tag, rec));
                *n += 1;
                return Ok(());
            }
            Store::Memory(v, n) => {
                tracing::info!(records = *n + 1, "spilling the run's records to disk");
                Some(std::mem::take(v))
            }
            Store::Disk(_) => None,
        };
        if let Some(held) = held {
            let mut d = self.create_disk()?;
            for (tag, r) in held.into_iter().flatten() {
                BUF.with_borrow_mut(|buf| d.write(buf, tag, &r))?;
            }
            *store = Store::Disk(d);
        }
        let Store::Disk(d) = &mut *store else { unreachable!() };
        BUF.with_borrow_mut(|buf| d.write(buf, tag, &rec))
    }

    fn create_disk(&self) -> Result<Disk> {
        // owner only, from creation: the spill holds personal data like the ledger
        let mut b = tempfile::Builder::new();
        b.prefix(SPILL_PREFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            b.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = b
            .tempdir_in(&self.spill_in)
            .with_context(|| format!("cannot create a spill folder in {}", self.spill_in.display()))?;
        let mut files = Vec::new();
        for i in 0..2 * BUCKETS {
            let path = dir.path().join(format!("bucket-{i:03}"));
            let f = private_file(&path).with_context(|| format!("cannot create {}", path.display()))?;
            files.push((BufWriter::with_capacity(64 * 1024, f), 0));
        }
        Ok(Disk { dir, files })
    }

    /// The chunks to apply for `wave`, as bucket ranges of about `chunk_records` records each.
    pub fn chunks(&self, wave: Wave) -> Vec<Range<u32>> {
        match &*self.store.lock().expect("spool lock") {
            Store::Memory(..) => std::iter::once(0..1).collect(),
            Store::Disk(d) => {
                let mut out = Vec::new();
                let (mut start, mut n) = (0u32, 0u64);
                for b in 0..BUCKETS {
                    let c = d.files[Disk::slot(wave, b)].1;
                    if n > 0 && n + c > self.chunk_records {
                        out.push(start..b);
                        (start, n) = (b, 0);
                    }
                    n += c;
                }
                out.push(start..BUCKETS);
                out
            }
        }
    }

    /// Takes the records of one chunk of one wave (in no particular order: the engine orders
    /// events by R1 keys, which are unique per subscriber).
    pub fn take(&self, wave: Wave, chunk: Range<u32>) -> Result<Vec<(u32, Record)>> {
        let mut store = self.store.lock().expect("spool lock");
        match &mut *store {
            Store::Memory(v, _) => Ok(std::mem::take(&mut v[wave as usize])),
            Store::Disk(d) => {
                let mut out = Vec::new();
                for b in chunk {
                    let slot = Disk::slot(wave, b);
                    d.files[slot].0.flush().context("cannot write the spill")?;
                    let path = d.dir.path().join(format!("bucket-{slot:03}"));
                    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    // free the disk space at once; nothing is written to this bucket again
                    let _ = std::fs::remove_file(&path);
                    for r in super::spill::FrameReader::new(&bytes) {
                        out.push(r.context("the spill is corrupt")?);
                    }
                }
                Ok(out)
            }
        }
    }

    pub fn take_scope2(&self) -> Vec<(u32, FlagChange)> {
        std::mem::take(&mut *self.scope2.lock().expect("spool lock"))
    }

    pub fn take_handoffs(&self) -> Vec<(u32, AgeTransitionHandoff)> {
        std::mem::take(&mut *self.handoffs.lock().expect("spool lock"))
    }
}

impl Disk {
    fn slot(wave: Wave, bucket: u32) -> usize {
        wave as usize * BUCKETS as usize + bucket as usize
    }

    fn write(&mut self, buf: &mut Vec<u8>, tag: u32, rec: &Record) -> Result<()> {
        let (ins, key) = match rec {
            Record::SubscriberChange(c) => (c.insurer, c.key),
            Record::Fukuhon(f) => (f.insurer, f.key),
            Record::FlagChange(f) => (f.insurer, f.key.expect("subscriber-scoped")),
            Record::AgeTransitionHandoff(_) => unreachable!("hand-offs stay in memory"),
        };
        let slot = Disk::slot(Wave::of(ins), bucket_of(ins, key, BUCKETS));
        buf.clear();
        super::spill::encode_frame(tag, rec, buf);
        let f = &mut self.files[slot];
        f.0.write_all(buf).context("cannot write the spill")?;
        f.1 += 1;
        Ok(())
    }
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

/// Removes spill folders left in `dir` by a crashed run.
pub fn remove_leftovers(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(SPILL_PREFIX) && e.path().is_dir() {
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

    #[test]
    fn hash_is_stable() {
        // FNV-1a 64 of "00131045\x1f0000000000000001", computed independently: bucket (and shard)
        // assignment must never change between releases or platforms
        let ins = InsurerNumber::parse("131045").unwrap();
        let key = SubscriberKey::parse("0000000000000001").unwrap();
        assert_eq!(subscriber_hash(ins, key), 0xc96f_b9e2_2107_7133);
    }

    #[test]
    fn spills_past_the_chunk_and_groups_buckets_into_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(10, dir.path());
        let ins = InsurerNumber::parse("131045").unwrap();
        let rec = |n: u64| {
            Record::Fukuhon(Fukuhon {
                seq: n,
                operation: FukuhonOperation::parse("1").unwrap(),
                effective_date: Date::parse("20261201").unwrap(),
                insurer: ins,
                key: SubscriberKey::parse(&format!("{n:016}")).unwrap(),
                info_code: InfoCode::parse("TM00000000000001").unwrap(),
                disclosure: None,
                items: Vec::new(),
            })
        };
        for n in 1..=10 {
            spool.push(0, rec(n)).unwrap();
        }
        assert!(!spool.spills());
        assert_eq!(spool.chunks(Wave::NotKouki), vec![0..1]);
        for n in 11..=40 {
            spool.push(0, rec(n)).unwrap();
        }
        assert!(spool.spills());
        let chunks = spool.chunks(Wave::NotKouki);
        assert!(chunks.len() >= 4, "{chunks:?}");
        assert_eq!(chunks.first().unwrap().start, 0);
        assert_eq!(chunks.last().unwrap().end, BUCKETS);
        let mut seen: Vec<u64> = chunks
            .into_iter()
            .flat_map(|c| spool.take(Wave::NotKouki, c).unwrap())
            .map(|(_, r)| r.seq())
            .collect();
        seen.sort();
        assert_eq!(seen, (1..=40).collect::<Vec<_>>());
        assert!(spool.take(Wave::Kouki, 0..BUCKETS).unwrap().is_empty());
    }
}
