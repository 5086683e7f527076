//! Lists a run can make as long as its input: rejects and pending flag events. A file of a
//! million rejected records must cost a file on disk, not gigabytes of memory (issue 13 item 6),
//! so these lists keep their items serialised: in a small buffer while short, then in an
//! anonymous temporary file (no name, so nothing is left behind by a crash) in the folder the
//! run spills to (beside the ledger: as private as the ledger, sized for the data). In memory
//! each item costs one [`Slot`] (16 bytes), whatever its size.
//!
//! report.json, rejects.csv and report.xlsx read every item back in order; report.html shows a
//! head (see [`Spooled::head`]) with the total.

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Mutex;

/// Bytes of serialised items kept in memory before they go to the file.
const BUFFER_BYTES: usize = 4 << 20;

/// Bytes read from the spill file at once.
const CACHE_BYTES: u64 = 256 << 10;

/// A window of the spill file: `bytes` from offset `at`.
#[derive(Default)]
struct Cache {
    at: u64,
    bytes: Vec<u8>,
}

/// Where an item's bytes are: below `spilled` in the file, above it in the buffer.
#[derive(Clone, Copy, Debug)]
struct Slot {
    pos: u64,
    len: u32,
}

/// A list of `T` kept serialised (JSON, one item per slot), in memory while short and in an
/// anonymous file once long. Items come back in list order, which [`Spooled::sort_by_key`]
/// can change.
pub struct Spooled<T> {
    slots: Vec<Slot>,
    buf: Vec<u8>,
    file: Option<Mutex<File>>,
    spilled: u64,
    dir: Option<PathBuf>,
    buffer_bytes: usize,
    _item: PhantomData<fn() -> T>,
}

impl<T> Default for Spooled<T> {
    fn default() -> Self {
        Spooled {
            slots: Vec::new(),
            buf: Vec::new(),
            file: None,
            spilled: 0,
            dir: None,
            buffer_bytes: BUFFER_BYTES,
            _item: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Spooled<T> {
    // never the items: they may name files and fields of a person's record
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spooled")
            .field("len", &self.slots.len())
            .field("spilled_bytes", &self.spilled)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Spooled<T> {
    /// An empty list that spills into `dir` (the system's temporary folder when never set).
    pub fn in_dir(dir: PathBuf) -> Self {
        Spooled {
            dir: Some(dir),
            ..Spooled::default()
        }
    }

    /// Sets the folder a list not yet spilled spills into.
    pub fn spill_to(&mut self, dir: PathBuf) {
        self.dir = Some(dir);
    }

    /// The folder the list spills into, when set.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    #[cfg(test)]
    fn with_buffer(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes in the spill file (0 while the list is in memory).
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled
    }

    pub fn push(&mut self, item: T) -> Result<()> {
        let pos = self.spilled + self.buf.len() as u64;
        serde_json::to_writer(&mut self.buf, &item).context("cannot serialise a report item")?;
        let len = (self.spilled + self.buf.len() as u64 - pos) as u32;
        self.slots.push(Slot { pos, len });
        if self.buf.len() >= self.buffer_bytes {
            self.spill()?;
        }
        Ok(())
    }

    pub fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) -> Result<()> {
        for i in items {
            self.push(i)?;
        }
        Ok(())
    }

    /// Moves every item of `other` to the end of this list, changed by `f`.
    pub fn append_with(&mut self, other: Spooled<T>, mut f: impl FnMut(&mut T)) -> Result<()> {
        for item in other.iter() {
            let mut item = item?;
            f(&mut item);
            self.push(item)?;
        }
        Ok(())
    }

    /// Moves every item of `other` to the end of this list (taking its storage whole when this
    /// list is empty: no item is read or written again).
    pub fn append(&mut self, other: Spooled<T>) -> Result<()> {
        if self.slots.is_empty() {
            let dir = self.dir.take();
            *self = other;
            if self.dir.is_none() {
                self.dir = dir;
            }
            return Ok(());
        }
        self.append_with(other, |_| {})
    }

    fn spill(&mut self) -> Result<()> {
        if self.file.is_none() {
            let f = match &self.dir {
                Some(d) => tempfile::tempfile_in(d)
                    .with_context(|| format!("cannot create a spill file in {}", d.display()))?,
                None => tempfile::tempfile().context("cannot create a spill file")?,
            };
            self.file = Some(Mutex::new(f));
        }
        let file = self.file.as_ref().expect("opened above");
        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
        f.seek(SeekFrom::Start(self.spilled))?;
        f.write_all(&self.buf).context("cannot write a spill file")?;
        self.spilled += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// One item: from the buffer, or from the file through `cache` (a window of the file read
    /// in one call, so that reading in list order costs a read per 256 KiB, not per item).
    fn read(&self, s: Slot, cache: &mut Cache) -> Result<T> {
        let bytes: &[u8] = if s.pos >= self.spilled {
            let at = (s.pos - self.spilled) as usize;
            &self.buf[at..at + s.len as usize]
        } else {
            let end = s.pos + u64::from(s.len);
            if s.pos < cache.at || end > cache.at + cache.bytes.len() as u64 {
                let file = self.file.as_ref().context("spill file missing")?;
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                let want = (u64::from(s.len).max(CACHE_BYTES)).min(self.spilled - s.pos) as usize;
                cache.bytes.resize(want, 0);
                f.seek(SeekFrom::Start(s.pos))?;
                f.read_exact(&mut cache.bytes)
                    .context("cannot read a spill file back")?;
                cache.at = s.pos;
            }
            let at = (s.pos - cache.at) as usize;
            &cache.bytes[at..at + s.len as usize]
        };
        serde_json::from_slice(bytes).context("a spilled report item does not read back")
    }

    /// The items in list order.
    pub fn iter(&self) -> impl Iterator<Item = Result<T>> + '_ {
        let mut cache = Cache::default();
        self.slots.iter().map(move |&s| self.read(s, &mut cache))
    }

    /// The first `n` items.
    pub fn head(&self, n: usize) -> Result<Vec<T>> {
        self.iter().take(n).collect()
    }

    /// Stable sort by a key computed once per item (one pass reading the items back; a list
    /// already in order keeps its slots).
    pub fn sort_by_key<K: Ord>(&mut self, mut key: impl FnMut(&T) -> K) -> Result<()> {
        let mut keys: Vec<K> = Vec::with_capacity(self.slots.len());
        for item in self.iter() {
            keys.push(key(&item?));
        }
        if keys.is_sorted() {
            return Ok(());
        }
        let mut order: Vec<u32> = (0..self.slots.len() as u32).collect();
        order.sort_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]));
        drop(keys);
        let sorted: Vec<Slot> = order.into_iter().map(|i| self.slots[i as usize]).collect();
        self.slots = sorted;
        Ok(())
    }
}

/// Written as a JSON array, item by item (a streaming writer never holds the whole list).
impl<T: Serialize + DeserializeOwned> Serialize for Spooled<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for item in self.iter() {
            seq.serialize_element(&item.map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

/// Reads a JSON array item by item into the list (spilling to the system's temporary folder
/// when long: set no other folder before reading).
impl<'de, T: Serialize + DeserializeOwned> serde::Deserialize<'de> for Spooled<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(PhantomData<fn() -> T>);
        impl<'de, T: Serialize + DeserializeOwned> serde::de::Visitor<'de> for V<T> {
            type Value = Spooled<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Spooled<T>, A::Error> {
                use serde::de::Error;
                let mut out = Spooled::default();
                while let Some(item) = a.next_element::<T>()? {
                    out.push(item).map_err(|e| A::Error::custom(format!("{e:#}")))?;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Item {
        n: u32,
        text: String,
    }

    fn items(n: u32) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                n: (i * 7919) % n,
                text: format!("row {i} 不備"),
            })
            .collect()
    }

    #[test]
    fn spills_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Spooled::<Item>::in_dir(dir.path().into()).with_buffer(100);
        let all = items(1000);
        l.extend(all.clone()).unwrap();
        assert!(l.spilled_bytes() > 0, "a 100-byte buffer spills");
        assert_eq!(l.len(), 1000);
        let back: Vec<Item> = l.iter().collect::<Result<_>>().unwrap();
        assert_eq!(back, all);
        assert_eq!(l.head(3).unwrap(), all[..3]);
        // anonymous: nothing named is left in the folder
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn sorts_stably_across_the_file_and_the_buffer() {
        let mut l = Spooled::<Item>::default().with_buffer(64);
        let all = items(500);
        l.extend(all.clone()).unwrap();
        l.sort_by_key(|i| i.n / 10).unwrap();
        let mut want = all.clone();
        want.sort_by_key(|i| i.n / 10);
        assert_eq!(l.iter().collect::<Result<Vec<_>>>().unwrap(), want);
    }

    #[test]
    fn serialises_as_a_json_array_and_appends() {
        let mut a = Spooled::<Item>::default().with_buffer(10);
        a.extend(items(3)).unwrap();
        let mut b = Spooled::<Item>::default();
        b.extend(items(2)).unwrap();
        a.append_with(b, |i| i.text.push('!')).unwrap();
        let mut empty = Spooled::<Item>::default();
        let mut c = Spooled::<Item>::default().with_buffer(10);
        c.extend(items(4)).unwrap();
        empty.append(c).unwrap();
        assert_eq!(
            empty.iter().collect::<Result<Vec<_>>>().unwrap(),
            items(4),
            "taken whole"
        );
        let v: Vec<Item> = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[3].text, "row 0 不備!");
        assert!(!format!("{a:?}").contains("不備"), "Debug shows no item");
    }
}
