//! What the raw side of reading a linkage file hands out: the header's values, then one group (a
//! SubscriberLinkage subscriber: its `01`, `02` and `04` rows) or one record (a FlagLinkage or
//! FukuhonLinkage row) at a time with its position, then the trailer's values — untyped. One
//! state machine per syntax ([`super::raw_csv`], [`super::raw_xml`]) does the reading; the typers
//! ([`super::LinkageReader`] for this program's own output, `migrate::snapshot` for a snapshot)
//! turn the values into domain types and the raw errors into their own error model.
//!
//! [`Strictness`] is what the two callers differ in. A file this program wrote is refused whole
//! at the first thing the writer would not have written, judged when an element closes (so a
//! broken tag is told before an unknown name inside it); a snapshot exported by an earlier system
//! may use LF line ends, comments and fields in any order, and a group that breaks the format is
//! noted on the group ([`RawGroup::faults`]) so that only that record is rejected.

use crate::domain::FileKind;
use crate::error::{Diagnostic, ErrorCode};
use crate::formats::TextEncoding;
use crate::formats::decode::{StopReason, StrictDecoder};
use crate::formats::linkage::{BASIC_COLUMNS, CONTROL_COLUMNS, QUALIFICATION_COLUMNS};
use std::fmt;
use std::io::{Chain, Cursor, Read};

/// Bytes one CSV row or one XML event (a tag, a text) may take: far beyond anything the writer
/// produces, and what bounds the streaming reader's buffers.
pub const EVENT_LIMIT: u64 = 1 << 20;

/// How strictly a file is read. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// This program's own output (`merge-shards`): exactly what the writer writes.
    Own,
    /// A SubscriberLinkage snapshot of an earlier system (`migrate`): lenient in syntax, a
    /// malformed group is the group's fault.
    Snapshot,
}

/// The kind of a row (CSV) or row element (XML).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// `01` / `<BasicInfo>`
    Basic,
    /// `02` / `<ProvisionControl>`
    Control,
    /// `04` / `<Qualification>`
    Qualification,
    /// `D`: a FlagLinkage or FukuhonLinkage record
    Record,
}

impl RowKind {
    /// The CSV row kind, as messages name it.
    pub fn code(self) -> &'static str {
        match self {
            RowKind::Basic => "01",
            RowKind::Control => "02",
            RowKind::Qualification => "04",
            RowKind::Record => "D",
        }
    }

    /// The columns after the row kind, in order (a record's: its file kind's fields).
    pub fn columns(self, kind: FileKind) -> &'static [&'static str] {
        match self {
            RowKind::Basic => BASIC_COLUMNS,
            RowKind::Control => CONTROL_COLUMNS,
            RowKind::Qualification => QUALIFICATION_COLUMNS,
            RowKind::Record => kind.fields(),
        }
    }
}

/// One row (or XML row or record element) as read: values by column, empty = absent.
#[derive(Debug)]
pub struct RawRow {
    pub kind: RowKind,
    pub values: Vec<String>,
    /// A FukuhonLinkage record's ItemCode/Value pairs.
    pub items: Vec<(String, String)>,
    /// 1-based row (CSV) or group / record (XML) number, for messages.
    pub at: u64,
}

/// The rows of one subscriber.
#[derive(Debug, Default)]
pub struct RawGroup {
    pub rows: Vec<RawRow>,
    /// Line of its first row or its `<Subscriber>` tag ([`Strictness::Snapshot`]).
    pub line: u64,
    /// What breaks the format in the group ([`Strictness::Snapshot`]; under
    /// [`Strictness::Own`] such a group is an error of the file).
    pub faults: Vec<String>,
}

/// The header's values (FileIdentifier, SenderInsurerNumber, CreationTime, FileSequence).
#[derive(Debug)]
pub struct RawHeader {
    pub kind: FileKind,
    pub values: [Option<String>; 4],
    pub line: u64,
}

/// What the raw reader hands out, in file order: the header first, the trailer last.
#[derive(Debug)]
pub enum RawPiece {
    Header(RawHeader),
    Group(RawGroup),
    Record(RawRow),
    /// GroupCount and RowCount, or RecordCount, as written (after `T` in CSV).
    Trailer {
        values: Vec<String>,
        line: u64,
    },
}

/// Why a file cannot be read: a code (what a snapshot reports), a message that names a row, a
/// record or a field but never a value, and where it is known the line and byte offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawError {
    pub code: ErrorCode,
    pub message: String,
    pub line: Option<u64>,
    pub offset: Option<u64>,
}

impl RawError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RawError {
        RawError {
            code,
            message: message.into(),
            line: None,
            offset: None,
        }
    }

    /// An error of this program's own output, whose message says where.
    pub fn own(message: impl Into<String>) -> RawError {
        RawError::new(ErrorCode::Schema, message)
    }

    pub fn line(mut self, line: u64) -> RawError {
        self.line = Some(line);
        self
    }

    /// As a file-level diagnostic of `display`.
    pub fn diagnostic(self, display: &str) -> Diagnostic {
        let d = Diagnostic::new(display, self.code, self.message);
        let d = match self.line {
            Some(l) => d.line(l),
            None => d,
        };
        match self.offset {
            Some(o) => d.offset(o),
            None => d,
        }
    }
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RawError {}

pub(super) const BOM_MESSAGE: &str = "starts with a byte order mark, which this program never writes";

pub(super) fn invalid_bytes(encoding: TextEncoding) -> String {
    format!("bytes invalid in the declared encoding {}", encoding.xml_label())
}

/// The input behind the decoder: the bytes read ahead to sniff, then the rest.
pub(super) type Input<R> = Chain<Cursor<Vec<u8>>, R>;

/// Why a read of this program's own output failed: the decoder's reason if it stopped the
/// stream, else `otherwise`, at `at`.
pub(super) fn stream_error<R: Read>(dec: &StrictDecoder<R>, at: &str, otherwise: &str) -> RawError {
    RawError::own(match dec.stop_reason() {
        Some(StopReason::Encoding(e)) => {
            format!("{} (byte {}, line {})", invalid_bytes(dec.encoding()), e.offset, e.line)
        }
        Some(StopReason::SizeLimit) => format!("{at}: longer than this program writes"),
        None => format!("{at}: {otherwise}"),
    })
}
