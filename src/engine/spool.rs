//! The run's input records, partitioned by subscriber so that a load of any size is applied
//! chunk by chunk with bounded memory.
//!
//! Records addressed to a subscriber go to one of `buckets` buckets by a stable hash of
//! (InsurerNumber, SubscriberKey), separately for the two waves (everything but 後期, then 後期).
//! All events of a subscriber are therefore in one bucket, which is all the per-subscriber apply
//! needs; the engine applies bucket after bucket inside the run's one transaction. Small inputs
//! use a single bucket held in memory; large ones (more input bytes than the chunk size) spill to
//! bucket files in a private temporary folder next to the ledger, removed when the spool is
//! dropped (and by the next run's recovery after a crash).
//!
//! Insurer-wide flag changes (Scope 2) and hand-offs are few and needed by every bucket: they are
//! kept in memory.

use crate::domain::*;
use anyhow::{Context, Result};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

/// Prefix of the spill folders (the next run removes leftovers of a crashed one).
pub const SPILL_PREFIX: &str = ".nhi-spill-";
/// Most buckets a spool uses (two files per bucket are open while reading).
pub const MAX_BUCKETS: u32 = 128;

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

/// Buckets for `input_bytes` of input at `chunk_bytes` per bucket (at least 1, at most [`MAX_BUCKETS`]).
pub fn buckets_for(input_bytes: u64, chunk_bytes: u64) -> u32 {
    input_bytes
        .div_ceil(chunk_bytes.max(1))
        .clamp(1, u64::from(MAX_BUCKETS)) as u32
}

enum Store {
    Memory(Vec<Mutex<Vec<(u32, Record)>>>),
    Disk {
        dir: tempfile::TempDir,
        files: Vec<Mutex<BufWriter<std::fs::File>>>,
    },
}

/// Records of a run, by wave and bucket. `tag` is the caller's file index.
pub struct Spool {
    buckets: u32,
    store: Store,
    scope2: Mutex<Vec<(u32, FlagChange)>>,
    handoffs: Mutex<Vec<(u32, AgeTransitionHandoff)>>,
}

impl Spool {
    /// One bucket, in memory.
    pub fn in_memory() -> Spool {
        Spool {
            buckets: 1,
            store: Store::Memory((0..2).map(|_| Mutex::new(Vec::new())).collect()),
            scope2: Mutex::new(Vec::new()),
            handoffs: Mutex::new(Vec::new()),
        }
    }

    /// `buckets` buckets; more than one spills to files in a private folder under `spill_in`.
    pub fn new(buckets: u32, spill_in: &Path) -> Result<Spool> {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        if buckets == 1 {
            return Ok(Spool::in_memory());
        }
        // tempfile creates the folder 0700: the spill holds personal data like the ledger
        let dir = tempfile::Builder::new()
            .prefix(SPILL_PREFIX)
            .tempdir_in(spill_in)
            .with_context(|| format!("cannot create a spill folder in {}", spill_in.display()))?;
        let mut files = Vec::new();
        for i in 0..2 * buckets {
            let path = dir.path().join(format!("bucket-{i:03}"));
            let f = private_file(&path).with_context(|| format!("cannot create {}", path.display()))?;
            files.push(Mutex::new(BufWriter::with_capacity(256 * 1024, f)));
        }
        Ok(Spool {
            buckets,
            store: Store::Disk { dir, files },
            scope2: Mutex::new(Vec::new()),
            handoffs: Mutex::new(Vec::new()),
        })
    }

    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    pub fn spills(&self) -> bool {
        matches!(self.store, Store::Disk { .. })
    }

    fn slot(&self, insurer: InsurerNumber, key: SubscriberKey) -> usize {
        let b = (subscriber_hash(insurer, key) % u64::from(self.buckets)) as usize;
        Wave::of(insurer) as usize * self.buckets as usize + b
    }

    /// Adds one record of file `tag`. Safe to call from several reading threads.
    pub fn push(&self, tag: u32, rec: Record) -> Result<()> {
        let slot = match &rec {
            Record::SubscriberChange(c) => self.slot(c.insurer, c.key),
            Record::Fukuhon(f) => self.slot(f.insurer, f.key),
            Record::FlagChange(f) => match f.key {
                Some(k) if f.scope == FlagScope::Subscriber => self.slot(f.insurer, k),
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
        match &self.store {
            Store::Memory(v) => v[slot].lock().expect("spool lock").push((tag, rec)),
            Store::Disk { files, .. } => {
                thread_local! {
                    static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                BUF.with_borrow_mut(|buf| -> Result<()> {
                    buf.clear();
                    super::spill::encode_frame(tag, &rec, buf);
                    files[slot]
                        .lock()
                        .expect("spool lock")
                        .write_all(buf)
                        .context("cannot write the spill")
                })?;
            }
        }
        Ok(())
    }

    /// Takes the records of one bucket of one wave (in no particular order: the engine orders
    /// events by R1 keys, which are unique per subscriber).
    pub fn take(&self, wave: Wave, bucket: u32) -> Result<Vec<(u32, Record)>> {
        let slot = wave as usize * self.buckets as usize + bucket as usize;
        match &self.store {
            Store::Memory(v) => Ok(std::mem::take(&mut *v[slot].lock().expect("spool lock"))),
            Store::Disk { dir, files } => {
                let path = dir.path().join(format!("bucket-{slot:03}"));
                {
                    let mut w = files[slot].lock().expect("spool lock");
                    w.flush().context("cannot write the spill")?;
                }
                let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                // free the disk space at once; the handle stays open but is not written again
                let _ = std::fs::remove_file(&path);
                super::spill::FrameReader::new(&bytes)
                    .map(|r| r.context("the spill is corrupt"))
                    .collect()
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
    fn buckets_follow_input_size() {
        assert_eq!(buckets_for(0, 128), 1);
        assert_eq!(buckets_for(128, 128), 1);
        assert_eq!(buckets_for(129, 128), 2);
        assert_eq!(buckets_for(u64::MAX / 2, 1), MAX_BUCKETS);
    }
}
