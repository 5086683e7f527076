//! [`RawReader`]: opens a linkage file (its format and declared encoding told from the first
//! bytes, the strict decoder set up) and hands out its raw pieces from the state machine of its
//! syntax.

use super::raw::{BOM_MESSAGE, EVENT_LIMIT, RawError, RawPiece, Strictness};
use super::raw_csv::CsvRaw;
use super::raw_xml::XmlRaw;
use crate::error::ErrorCode;
use crate::formats::decode::{Output, StrictDecoder};
use crate::formats::{Format, TextEncoding, csv_reader, sniff_format, xml_reader};
use std::io::{Cursor, Read};

/// Bytes read ahead to tell the format and the declared encoding.
pub const HEAD: usize = 4096;

enum Syntax<R: Read> {
    Csv(Box<CsvRaw<R>>),
    Xml(Box<XmlRaw<R>>),
}

/// Reads one linkage file raw: [`RawReader::next_piece`] until `None`, then
/// [`RawReader::finish`] for the digest.
pub struct RawReader<R: Read> {
    syntax: Syntax<R>,
    encoding: TextEncoding,
}

impl<R: Read> RawReader<R> {
    /// Starts reading a file whose first bytes (up to [`HEAD`]) are `head` and whose rest is
    /// `rest`: tells the format and the declared encoding.
    pub fn new(head: Vec<u8>, rest: R, strictness: Strictness) -> Result<RawReader<R>, RawError> {
        let (format, encoding) = match strictness {
            Strictness::Own => own_format(&head)?,
            Strictness::Snapshot => snapshot_format(&head)?,
        };
        let output = match (strictness, format) {
            (Strictness::Snapshot, Format::Csv) => Output::Validated,
            _ => Output::Utf8,
        };
        let mut dec = StrictDecoder::new(Cursor::new(head).chain(rest), encoding, output);
        dec.set_limit(EVENT_LIMIT);
        let syntax = match format {
            Format::Csv => {
                if strictness == Strictness::Own {
                    dec.count_lines(false);
                }
                Syntax::Csv(Box::new(CsvRaw::new(dec, strictness, encoding)))
            }
            Format::Xml => Syntax::Xml(Box::new(XmlRaw::new(dec, strictness))),
        };
        Ok(RawReader { syntax, encoding })
    }

    pub fn format(&self) -> Format {
        match self.syntax {
            Syntax::Csv(_) => Format::Csv,
            Syntax::Xml(_) => Format::Xml,
        }
    }

    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// The next piece; `None` at the end of the file, once its completeness is checked.
    pub fn next_piece(&mut self) -> Result<Option<RawPiece>, RawError> {
        match &mut self.syntax {
            Syntax::Csv(c) => c.next_piece(),
            Syntax::Xml(x) => x.next_piece(),
        }
    }

    /// Rows (`01`, `02`, `04`) read so far ([`Strictness::Snapshot`]).
    pub fn rows(&self) -> u64 {
        match &self.syntax {
            Syntax::Csv(c) => c.rows(),
            Syntax::Xml(x) => x.rows(),
        }
    }

    /// SHA-256 and size of the file's bytes (the rest is read if need be).
    pub fn finish(self) -> std::io::Result<([u8; 32], u64)> {
        match self.syntax {
            Syntax::Csv(c) => c.into_decoder(),
            Syntax::Xml(x) => x.into_decoder(),
        }
        .finish_digest()
    }
}

/// Format and encoding of this program's own output; a byte order mark is refused.
fn own_format(head: &[u8]) -> Result<(Format, TextEncoding), RawError> {
    let (format, declared) = match sniff_format(&head[..head.len().min(64)]) {
        Some(Format::Csv) => (
            Format::Csv,
            csv_reader::declared_encoding(head).map_err(|(_, m)| format!("header: {m}")),
        ),
        Some(Format::Xml) => (
            Format::Xml,
            xml_reader::declared_encoding(head).map_err(|(_, m)| format!("XML declaration: {m}")),
        ),
        None => return Err(RawError::own("neither CSV (an H row) nor XML")),
    };
    let encoding = declared.map_err(RawError::own)?;
    if head.starts_with(b"\xEF\xBB\xBF") {
        return Err(RawError::own(BOM_MESSAGE));
    }
    Ok((format, encoding))
}

/// Format and encoding of a snapshot.
fn snapshot_format(head: &[u8]) -> Result<(Format, TextEncoding), RawError> {
    let declared = match sniff_format(head) {
        Some(Format::Xml) => xml_reader::declared_encoding(head).map(|e| (Format::Xml, e)),
        Some(Format::Csv) => csv_reader::declared_encoding(head).map(|e| (Format::Csv, e)),
        None => {
            return Err(RawError::new(
                ErrorCode::Schema,
                "neither XML (starts with '<') nor CSV (starts with an H row)",
            ));
        }
    };
    declared.map_err(|(code, m)| RawError::new(code, m).line(1))
}
