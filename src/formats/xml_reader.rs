//! XML reader on quick-xml raw events (no serde, one reused event buffer).
//!
//! The prolog's `encoding="…"` is read from the raw bytes first; the file is then transcoded to
//! UTF-8 by [`StrictDecoder`] and parsed, so a Shift_JIS trail byte 0x5D can never split `]]>`.
//! quick-xml is lax, so this module adds what makes a file well-formed and valid for us:
//!
//! | problem | code | level |
//! |---|---|---|
//! | bytes invalid in the declared encoding, BOM with Shift_JIS, unknown encoding label | `E_ENCODING` | file |
//! | not well-formed: unclosed/mismatched tags, text outside the root, two roots, unknown entity, bad character reference, control character, `]]>` in text, misplaced XML declaration | `E_XML_SYNTAX` | file |
//! | a DOCTYPE anywhere | `E_DTD_FORBIDDEN` | file |
//! | wrong root or namespace, attribute other than the root's `xmlns`, FileHeader missing/not first/malformed, element outside records, nesting deeper than `max_depth`, a single markup event or a record over `max_record_bytes` | `E_SCHEMA` | file |
//! | header field values | the field's code (`E_CHECK_DIGIT`, `E_DATE`, `E_FIELD_FORMAT`, …) | file |
//! | RecordSequence missing, not a positive integer, not increasing | `E_SEQUENCE` | file |
//! | FileTrailer/RecordCount missing or malformed, count ≠ records, file truncated before its trailer | `E_TRAILER_COUNT` | file |
//! | in a record: unknown, repeated or out-of-order element, text or attributes where only elements go, malformed `Items` | `E_SCHEMA` | record |
//! | in a record: a value over `max_field_bytes` (UTF-8 bytes after transcoding) | `E_FIELD_FORMAT` | record |
//! | field values | from [`crate::domain::records::build`] | record |
//!
//! Record fields follow `FileKind::fields()` order, each optional (an `xs:sequence` of
//! `minOccurs="0"` elements); absent and empty (`<Name/>`) both mean absent. Fukuhon records end
//! with an optional `<Items>` of `<Item><ItemCode/><Value/></Item>` (both children required).
//!
//! Layout: this file reads the declared encoding and runs the [`parser`] (the state machine that
//! applies the table above) over a whole file or one piece of it.

mod parser;

use super::decode::{Output, StrictDecoder};
use super::piece::{Piece, PieceOut};
use super::{FileHeader, FileRejected, FileSummary, ReadOptions, RecordOutcome, TextEncoding};
use crate::error::{Diagnostic, ErrorCode};
use parser::Parser;
use std::io::{Cursor, Read};
use std::path::Path;

/// Reads one XML input file. See the module docs for what is checked.
pub fn read(
    path: &Path,
    display: &str,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(RecordOutcome),
) -> Result<FileSummary, FileRejected> {
    let file = std::fs::File::open(path).map_err(|e| {
        rejected(
            Diagnostic::new(display, ErrorCode::Schema, format!("cannot open file: {}", e.kind())),
            None,
        )
    })?;
    read_from(file, display, opts, on_record)
}

/// [`read`] on any byte stream (tests, benches).
pub fn read_from<R: Read>(
    mut input: R,
    display: &str,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(RecordOutcome),
) -> Result<FileSummary, FileRejected> {
    let mut head = Vec::with_capacity(1024);
    (&mut input).take(1024).read_to_end(&mut head).map_err(|e| {
        rejected(
            Diagnostic::new(display, ErrorCode::Schema, format!("cannot read file: {}", e.kind())),
            None,
        )
    })?;
    let encoding =
        declared_encoding(&head).map_err(|(code, msg)| rejected(Diagnostic::new(display, code, msg).line(1), None))?;
    let dec = StrictDecoder::new(Cursor::new(head).chain(input), encoding, Output::Utf8);
    let mut p = Parser::new(dec, encoding, display, opts);
    match p.run(on_record) {
        Ok(()) => {}
        Err(d) => return Err(rejected_many(d, p.header.clone())),
    }
    let header = p.header.clone().expect("header read before the trailer");
    let (records, rejected_n) = (p.records, p.rejected);
    let (sha256, bytes) = p.xr.into_inner().finish_digest().map_err(|e| {
        rejected(
            Diagnostic::new(display, ErrorCode::Schema, format!("cannot read file: {}", e.kind())),
            None,
        )
    })?;
    Ok(FileSummary {
        header,
        records,
        rejected: rejected_n,
        sha256,
        bytes,
    })
}

/// Parses one piece of a file read in pieces ([`super::parallel`]): `bytes` start at a record
/// element (or at the start of the file) and the piece is parsed as the serial reader would parse
/// these bytes there. `None` when anything is unclear: an error of any kind, a piece that does
/// not end between two records, an event or record too close to a size limit to tell how the
/// serial reader's buffering would judge it. The caller then reads the file serially.
pub(crate) fn read_piece(bytes: &[u8], piece: &Piece, display: &str, opts: &ReadOptions) -> Option<PieceOut> {
    let resumed = piece.offset > 0;
    let dec = if resumed {
        StrictDecoder::resume(bytes, piece.encoding, Output::Utf8, piece.offset, piece.line)
    } else {
        StrictDecoder::new(bytes, piece.encoding, Output::Utf8)
    };
    let mut p = Parser::new(dec.without_digest(), piece.encoding, display, opts);
    p.piece = Some(PieceState {
        last: piece.last,
        resumed,
        mark: 0,
    });
    if resumed {
        // between two records of the root element, whose start tag an earlier piece read
        p.phase = Phase::Body;
        p.depth = 1;
        p.kind = piece.kind;
        // quick-xml has not seen the root's start tag: its end tag is checked in `run`
        p.xr.config_mut().allow_unmatched_ends = true;
    }
    let mut outcomes = Vec::new();
    p.run(&mut |o| outcomes.push(o)).ok()?;
    Some(PieceOut {
        outcomes,
        records: p.records,
        rejected: p.rejected,
        first_seq: p.first_seq,
        last_seq: p.prev_seq,
        header: p.header.take(),
        trailer: p.trailer_count,
    })
}

fn rejected(d: Diagnostic, header: Option<FileHeader>) -> FileRejected {
    FileRejected {
        diagnostics: vec![d],
        header,
    }
}

fn rejected_many(d: Vec<Diagnostic>, header: Option<FileHeader>) -> FileRejected {
    FileRejected { diagnostics: d, header }
}

/// The encoding named in the XML declaration (none → UTF-8), read from the raw first bytes.
pub fn declared_encoding(head: &[u8]) -> Result<TextEncoding, (ErrorCode, String)> {
    let b = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    if !(b.starts_with(b"<?xml") && b.get(5).is_some_and(|c| c.is_ascii_whitespace())) {
        return Ok(TextEncoding::Utf8);
    }
    let Some(end) = b.windows(2).position(|w| w == b"?>") else {
        return Err((ErrorCode::XmlSyntax, "the XML declaration is not closed by '?>'".into()));
    };
    let decl = &b[5..end];
    let Some(at) = decl.windows(8).position(|w| w == b"encoding") else {
        return Ok(TextEncoding::Utf8);
    };
    let rest = decl[at + 8..].trim_ascii_start();
    let bad = || {
        (
            ErrorCode::XmlSyntax,
            "malformed encoding declaration in the XML declaration".to_owned(),
        )
    };
    let rest = rest.strip_prefix(b"=").ok_or_else(bad)?.trim_ascii_start();
    let (&q, rest) = rest.split_first().ok_or_else(bad)?;
    if q != b'"' && q != b'\'' {
        return Err(bad());
    }
    let close = rest.iter().position(|&c| c == q).ok_or_else(bad)?;
    let label = std::str::from_utf8(&rest[..close]).ok();
    match label.and_then(TextEncoding::from_label) {
        Some(e) => Ok(e),
        None => {
            let shown = label
                .filter(|l| l.len() <= 40 && l.bytes().all(|c| c.is_ascii_graphic()))
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            Err((
                ErrorCode::Encoding,
                format!("declared encoding{shown} is not supported: use UTF-8 or Shift_JIS (Windows-31J)"),
            ))
        }
    }
}

/// Where the parser is in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Prolog,
    ExpectHeader,
    Header,
    Body,
    Record,
    Trailer,
    AfterTrailer,
    Epilog,
}

pub(super) type FileErr = Vec<Diagnostic>;

/// What a piece parser found unclear; never shown (the file is read again serially).
pub(super) fn unclear() -> FileErr {
    Vec::new()
}

/// Parsing a piece of a file rather than a whole file.
pub(super) struct PieceState {
    /// The piece ends the file (else it must end between two records).
    pub last: bool,
    /// The piece starts at a record element, inside the root (else at the start of the file).
    pub resumed: bool,
    /// Consumed output at the end of the previous event.
    pub mark: u64,
}

#[cfg(test)]
mod tests;
