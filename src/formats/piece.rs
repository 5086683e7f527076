//! What the parallel reader ([`super::parallel`]) and the piece parsers of the two readers
//! (`read_piece` in [`super::xml_reader`] and [`super::csv_reader`]) hand each other: a piece to
//! parse, and what was found in it.

use super::{FileHeader, RecordOutcome, TextEncoding};
use crate::domain::FileKind;

/// A piece parser leaves events and rows within this many bytes of `max_record_bytes` to the
/// serial reader (its own measures differ by a byte or two at piece boundaries).
pub(crate) const LIMIT_MARGIN: u64 = 8;

/// One piece of a file, for a piece parser.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Piece {
    /// Offset of the piece's first byte in the file; 0 for the first piece.
    pub offset: u64,
    /// Line of that byte.
    pub line: u64,
    /// The piece ends the file.
    pub last: bool,
    /// Kind of the file, as its start says (the first piece checks it).
    pub kind: FileKind,
    /// Declared encoding, read from the start of the file as the serial reader does.
    pub encoding: TextEncoding,
}

/// What a piece parser found in a piece it read without doubt.
pub(crate) struct PieceOut {
    pub outcomes: Vec<RecordOutcome>,
    pub records: u64,
    pub rejected: u64,
    /// RecordSequence of the piece's first and last records (`last_seq` is 0 without records).
    pub first_seq: Option<u64>,
    pub last_seq: u64,
    /// The file header (first piece).
    pub header: Option<FileHeader>,
    /// The trailer's RecordCount (last piece).
    pub trailer: Option<u64>,
}
