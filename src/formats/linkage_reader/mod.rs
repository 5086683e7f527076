//! Reading SubscriberLinkage, FlagLinkage and FukuhonLinkage files (CSV or XML; UTF-8 or
//! Shift_JIS): one raw reader, two typers.
//!
//! - [`raw_reader::RawReader`] reads a file into [`raw`] pieces — the header's values, one
//!   group or record at a time with its position, the trailer's values — with one state machine
//!   per syntax ([`raw_csv`], `raw_xml`), each at two levels of [`Strictness`].
//! - [`LinkageReader`] (here) types the pieces of this program's own output for `merge-shards`:
//!   it gives back exactly the groups and rows [`super::linkage::StandardLayout`] wrote, so that
//!   writing them again reproduces the file byte for byte (with new numbering, header and
//!   trailer).
//! - `migrate::snapshot` types the pieces of a SubscriberLinkage snapshot exported by an earlier
//!   system, record by record.
//!
//! [`LinkageReader`] streams: it reads the header when opened, then hands out one
//! [`LinkageItem`] at a time (a SubscriberLinkage group — its `01`, `02` and `04` rows or its
//! `<Subscriber>` element —, a FlagLinkage or FukuhonLinkage row), and checks the trailer counts
//! when it reaches the end. Memory stays bounded by one group whatever the file's size: the bytes
//! are decoded chunk by chunk (`StrictDecoder`, which also hashes them), a CSV row or an XML
//! event may not exceed [`EVENT_LIMIT`]. Its tests hold it against a whole-file parse kept for
//! them alone (`oracle`).
//!
//! Anything that the writer would not have produced is an error: another layout, a missing or
//! extra row or element, a wrong column count, RecordIdentificationNumber / RecordSequence out
//! of order, trailer counts that differ, bytes invalid in the declared encoding. Error messages
//! name the row and the field, never a value (a My Number or an address cannot leak).

pub mod raw;
pub mod raw_csv;
pub mod raw_reader;
mod raw_xml;
mod typed;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;

pub use raw::{EVENT_LIMIT, Strictness};

use super::FileHeader;
use super::linkage::{FlagRow, FukuhonRow, SubscriberGroup};
use crate::domain::{FileKind, InsurerNumber, SubscriberKey};
use anyhow::{Context, Result, bail};
use raw::RawPiece;
use raw_reader::{HEAD, RawReader};
use std::io::Read;
use std::path::Path;
use typed::{check_groups, check_records, flag_row, fukuhon_row, group_of, header_of};

/// The rows of one linkage file.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkageRows {
    Subscribers(Vec<SubscriberGroup>),
    Flags(Vec<FlagRow>),
    Fukuhon(Vec<FukuhonRow>),
}

impl LinkageRows {
    pub fn len(&self) -> usize {
        match self {
            LinkageRows::Subscribers(v) => v.len(),
            LinkageRows::Flags(v) => v.len(),
            LinkageRows::Fukuhon(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One linkage file as read.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkageFile {
    pub header: FileHeader,
    pub rows: LinkageRows,
}

/// What [`LinkageReader`] hands out: one group or one row.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkageItem {
    Subscriber(SubscriberGroup),
    Flag(FlagRow),
    Fukuhon(FukuhonRow),
}

impl LinkageItem {
    /// The insurer the group or row is of.
    pub fn insurer(&self) -> InsurerNumber {
        match self {
            LinkageItem::Subscriber(g) => g.insurer,
            LinkageItem::Flag(r) => r.insurer,
            LinkageItem::Fukuhon(r) => r.insurer,
        }
    }
    /// The subscriber the group or row is of; `None` for an insurer-wide (Scope 2) flag.
    pub fn key(&self) -> Option<SubscriberKey> {
        match self {
            LinkageItem::Subscriber(g) => Some(g.key),
            LinkageItem::Flag(r) => r.key,
            LinkageItem::Fukuhon(r) => Some(r.key),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Reading,
    Done,
    Failed,
}

/// Streams one linkage file: the header on opening, then one group or row at a time, the
/// trailer checked at the end. Use [`LinkageReader::next_item`] or iterate (`Result` items; the
/// iterator ends after the first error). See the module docs for what is checked.
pub struct LinkageReader<R: Read> {
    header: FileHeader,
    raw: RawReader<R>,
    /// Groups (SubscriberLinkage) or records handed out.
    items: u64,
    /// SubscriberLinkage rows read (`01`, `02`, `04`).
    rows: u64,
    state: State,
}

impl LinkageReader<std::fs::File> {
    /// Opens a linkage file and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        LinkageReader::new(f)
    }
}

impl<R: Read> LinkageReader<R> {
    /// Reads the header from `input`.
    pub fn new(mut input: R) -> Result<Self> {
        let mut head = Vec::with_capacity(HEAD);
        (&mut input)
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .context("cannot read the file")?;
        let mut raw = RawReader::new(head, input, Strictness::Own)?;
        let header = match raw.next_piece()? {
            Some(RawPiece::Header(h)) => header_of(h.kind, raw.format(), raw.encoding(), &h.values)?,
            _ => bail!("no FileHeader"),
        };
        if !matches!(
            header.kind,
            FileKind::SubscriberLinkage | FileKind::FlagLinkage | FileKind::FukuhonLinkage
        ) {
            bail!("{} is not a linkage kind", header.kind.name());
        }
        Ok(LinkageReader {
            header,
            raw,
            items: 0,
            rows: 0,
            state: State::Reading,
        })
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Groups (SubscriberLinkage) or records handed out so far; at the end, the file's count.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The next group or row; `Ok(None)` at the end, once the trailer counts are checked. After
    /// an error every call fails.
    pub fn next_item(&mut self) -> Result<Option<LinkageItem>> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => bail!("reading stopped at an earlier error"),
            State::Reading => {}
        }
        let r = self.step();
        match &r {
            Ok(Some(_)) => {}
            Ok(None) => self.state = State::Done,
            Err(_) => self.state = State::Failed,
        }
        r
    }

    fn step(&mut self) -> Result<Option<LinkageItem>> {
        let ordinal = self.items + 1;
        let kind = self.header.kind;
        let item = match (self.raw.next_piece()?, kind) {
            (Some(RawPiece::Group(g)), FileKind::SubscriberLinkage) => {
                self.rows += g.rows.len() as u64;
                LinkageItem::Subscriber(group_of(g.rows, ordinal)?)
            }
            (Some(RawPiece::Record(r)), FileKind::FlagLinkage) => LinkageItem::Flag(flag_row(&r, ordinal)?),
            (Some(RawPiece::Record(r)), FileKind::FukuhonLinkage) => LinkageItem::Fukuhon(fukuhon_row(&r, ordinal)?),
            (Some(RawPiece::Trailer { values, .. }), _) => return self.check_trailer(&values).map(|()| None),
            (None, _) => return self.check_trailer(&[]).map(|()| None),
            (Some(_), _) => bail!("unexpected element under the root"),
        };
        self.items += 1;
        Ok(Some(item))
    }

    /// The trailer's counts against the groups and rows, or the records, read.
    fn check_trailer(&self, trailer: &[String]) -> Result<()> {
        if self.header.kind == FileKind::SubscriberLinkage {
            check_groups(trailer, self.items, self.rows)
        } else {
            check_records(trailer, self.items)
        }
    }

    /// Reads the rest into memory (only for files known to be small, and for tests).
    pub fn read_all(mut self) -> Result<LinkageFile> {
        let mut rows = match self.header.kind {
            FileKind::SubscriberLinkage => LinkageRows::Subscribers(Vec::new()),
            FileKind::FlagLinkage => LinkageRows::Flags(Vec::new()),
            _ => LinkageRows::Fukuhon(Vec::new()),
        };
        while let Some(item) = self.next_item()? {
            match (&mut rows, item) {
                (LinkageRows::Subscribers(v), LinkageItem::Subscriber(g)) => v.push(g),
                (LinkageRows::Flags(v), LinkageItem::Flag(r)) => v.push(r),
                (LinkageRows::Fukuhon(v), LinkageItem::Fukuhon(r)) => v.push(r),
                _ => bail!("a row of another kind than the file's"),
            }
        }
        Ok(LinkageFile {
            header: self.header,
            rows,
        })
    }

    /// SHA-256 and size of the bytes read, once the file is read to its end.
    pub fn finish(self) -> Result<([u8; 32], u64)> {
        if self.state != State::Done {
            bail!("the file was not read to its end");
        }
        Ok(self.raw.finish()?)
    }
}

impl<R: Read> Iterator for LinkageReader<R> {
    type Item = Result<LinkageItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Failed {
            return None;
        }
        self.next_item().transpose()
    }
}

/// Reads a linkage file from disk (streamed, collected).
pub fn read_linkage_file(path: &Path) -> Result<LinkageFile> {
    LinkageReader::open(path)
        .and_then(LinkageReader::read_all)
        .with_context(|| format!("{} is not a linkage file as this program writes it", path.display()))
}
