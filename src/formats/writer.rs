//! Writers for the header / data / trailer file shape of §3 (the four input kinds, FlagLinkage and
//! FukuhonLinkage), in XML or CSV, UTF-8 or Shift_JIS.
//!
//! A record is encoded completely into a buffer before any of it reaches the output, so a record
//! refused for an unmappable character leaves no partial row behind.

use super::encode::{encode_into, encode_replacing};
use super::{FileHeader, Format, TextEncoding};
use crate::domain::FileKind;
use crate::error::ErrorCode;
use std::io::{self, Write};

/// What to do with a character that the output cannot carry: one Shift_JIS cannot represent,
/// or a private-use character (外字) in any encoding (spec v1.1 §1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UnmappablePolicy {
    /// Refuse the record (`E_UNMAPPABLE_CHAR`).
    #[default]
    Reject,
    /// Write `●` and list the record for 文字同定 (character identification).
    Replace,
}

/// One character that could not be written as is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UnmappableChar {
    pub field: String,
    /// `U+20BB7`
    pub code_point: String,
}

impl UnmappableChar {
    fn new(field: &str, c: char) -> Self {
        UnmappableChar {
            field: field.to_owned(),
            code_point: format!("U+{:04X}", c as u32),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The record was not written: characters with no mapping in the output encoding.
    #[error("{}: {}", ErrorCode::UnmappableChar, .0.iter().map(|u| format!("{} in {}", u.code_point, u.field)).collect::<Vec<_>>().join(", "))]
    Unmappable(Vec<UnmappableChar>),
    /// A value holds a character XML 1.0 does not allow (§1): the file would not be well-formed
    /// (and the CSV form must hold the same text), so nothing may be published.
    #[error(
        "{}: {} holds {}, a character XML does not allow; the output would not be well-formed",
        ErrorCode::FieldFormat,
        .0.field,
        .0.code_point
    )]
    NotXmlChar(UnmappableChar),
}

/// Encodes text fields of one record into a buffer, applying the unmappable policy.
pub struct FieldEncoder {
    pub encoding: TextEncoding,
    pub policy: UnmappablePolicy,
    /// Characters replaced by `●` in the current record (policy Replace).
    pub replaced: Vec<UnmappableChar>,
    /// Characters refused in the current record (policy Reject).
    pub refused: Vec<UnmappableChar>,
    /// The first character XML does not allow, in any field of the current record.
    pub forbidden: Option<UnmappableChar>,
}

impl FieldEncoder {
    pub fn new(encoding: TextEncoding, policy: UnmappablePolicy) -> Self {
        FieldEncoder {
            encoding,
            policy,
            replaced: Vec::new(),
            refused: Vec::new(),
            forbidden: None,
        }
    }

    /// Appends `s`, already escaped for its syntax, for field `field`. Every value of every
    /// output goes through here, so this is the well-formedness guard of the XML outputs: the
    /// writers build the markup from fixed names and escape `&`, `<` and `>`, which leaves the
    /// characters XML forbids as the one way input could break a file.
    pub fn push(&mut self, out: &mut Vec<u8>, field: &str, s: &str) {
        if self.forbidden.is_none() {
            if let Some(c) = s.chars().find(|&c| !super::checks::is_xml_char(c)) {
                self.forbidden = Some(UnmappableChar::new(field, c));
            }
        }
        match self.policy {
            UnmappablePolicy::Reject => {
                if let Err(c) = encode_into(out, s, self.encoding) {
                    self.refused.push(UnmappableChar::new(field, c));
                    // keep scanning so that every refused character of the record is reported
                    for c in s.chars() {
                        let mut b = [0u8; 4];
                        if encode_into(&mut Vec::new(), c.encode_utf8(&mut b), self.encoding).is_err()
                            && !self
                                .refused
                                .iter()
                                .any(|u| u.field == field && u.code_point == format!("U+{:04X}", c as u32))
                        {
                            self.refused.push(UnmappableChar::new(field, c));
                        }
                    }
                }
            }
            UnmappablePolicy::Replace => {
                for c in encode_replacing(out, s, self.encoding) {
                    self.replaced.push(UnmappableChar::new(field, c));
                }
            }
        }
    }

    /// Ends a record: `Err` if anything was refused, else the replaced characters. A character
    /// XML forbids is an error of the whole file ([`WriteError::NotXmlChar`]).
    pub fn take(&mut self) -> Result<Vec<UnmappableChar>, WriteError> {
        if let Some(c) = self.forbidden.take() {
            return Err(WriteError::NotXmlChar(c));
        }
        if !self.refused.is_empty() {
            self.replaced.clear();
            return Err(WriteError::Unmappable(std::mem::take(&mut self.refused)));
        }
        Ok(std::mem::take(&mut self.replaced))
    }
}

/// RFC 4180: quote a field holding a comma, quote, CR or LF; double inner quotes.
pub fn csv_escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// Escapes element text (`&`, `<`, `>`).
pub fn xml_escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| matches!(b, b'&' | b'<' | b'>')) {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").into()
    } else {
        s.into()
    }
}

/// The namespace of every XML file of format v1.
pub const XML_NS: &str = "urn:nhi-linkage:v1";

/// Writes the CSV `H` row.
pub fn csv_header_row(h: &FileHeader) -> String {
    format!(
        "H,{},1,{},{},{},{},{}\r\n",
        h.kind.name(),
        csv_escape(&h.file_identifier),
        h.sender,
        h.creation_time,
        h.file_sequence,
        h.encoding.csv_code()
    )
}

/// Writes the XML prolog, root start tag and `FileHeader`.
pub fn xml_header(h: &FileHeader) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"{}\"?>\n<{} xmlns=\"{XML_NS}\">\n  <FileHeader>\n    <FileIdentifier>{}</FileIdentifier>\n    <SenderInsurerNumber>{}</SenderInsurerNumber>\n    <CreationTime>{}</CreationTime>\n    <FileSequence>{}</FileSequence>\n  </FileHeader>\n",
        h.encoding.xml_label(),
        h.kind.root(),
        xml_escape(&h.file_identifier),
        h.sender,
        h.creation_time,
        h.file_sequence
    )
}

/// Writer of the §3 shape: header, one record per call, trailer with the record count.
pub struct RecordWriter<W: Write> {
    out: W,
    header: FileHeader,
    enc: FieldEncoder,
    buf: Vec<u8>,
    count: u64,
    bytes: u64,
}

impl<W: Write> RecordWriter<W> {
    pub fn start(mut out: W, header: FileHeader, policy: UnmappablePolicy) -> Result<Self, WriteError> {
        assert!(
            header.kind != FileKind::SubscriberLinkage,
            "SubscriberLinkage has grouped rows"
        );
        let mut enc = FieldEncoder::new(header.encoding, policy);
        let mut buf = Vec::with_capacity(1024);
        let head = match header.format {
            Format::Csv => csv_header_row(&header),
            Format::Xml => xml_header(&header),
        };
        enc.push(&mut buf, "FileIdentifier", &head);
        enc.take()?;
        out.write_all(&buf)?;
        let bytes = buf.len() as u64;
        buf.clear();
        Ok(RecordWriter {
            out,
            header,
            enc,
            buf,
            count: 0,
            bytes,
        })
    }

    /// Writes one data record. `values` follow `kind.fields()` (RecordSequence first; empty =
    /// absent); `items` are 副本 item pairs. Returns the characters replaced by `●`, if any.
    pub fn write(&mut self, values: &[&str], items: &[(&str, &str)]) -> Result<Vec<UnmappableChar>, WriteError> {
        let fields = self.header.kind.fields();
        assert_eq!(values.len(), fields.len(), "values follow the kind's field list");
        self.buf.clear();
        match self.header.format {
            Format::Csv => {
                self.buf.extend_from_slice(b"D");
                for (name, v) in fields.iter().zip(values) {
                    self.buf.push(b',');
                    self.enc.push(&mut self.buf, name, &csv_escape(v));
                }
                for (code, v) in items {
                    self.buf.push(b',');
                    self.enc.push(&mut self.buf, "Items/ItemCode", &csv_escape(code));
                    self.buf.push(b',');
                    self.enc.push(&mut self.buf, &format!("Items/{code}"), &csv_escape(v));
                }
                self.buf.extend_from_slice(b"\r\n");
            }
            Format::Xml => {
                let kind = self.header.kind.name();
                self.buf.extend_from_slice(format!("  <{kind}>\n").as_bytes());
                for (name, v) in fields.iter().zip(values) {
                    if v.is_empty() {
                        continue;
                    }
                    self.buf.extend_from_slice(format!("    <{name}>").as_bytes());
                    self.enc.push(&mut self.buf, name, &xml_escape(v));
                    self.buf.extend_from_slice(format!("</{name}>\n").as_bytes());
                }
                if self.header.kind.has_items() && !items.is_empty() {
                    self.buf.extend_from_slice(b"    <Items>\n");
                    for (code, v) in items {
                        self.buf.extend_from_slice(b"      <Item><ItemCode>");
                        self.enc.push(&mut self.buf, "Items/ItemCode", &xml_escape(code));
                        self.buf.extend_from_slice(b"</ItemCode><Value>");
                        self.enc.push(&mut self.buf, &format!("Items/{code}"), &xml_escape(v));
                        self.buf.extend_from_slice(b"</Value></Item>\n");
                    }
                    self.buf.extend_from_slice(b"    </Items>\n");
                }
                self.buf.extend_from_slice(format!("  </{kind}>\n").as_bytes());
            }
        }
        let replaced = self.enc.take()?;
        self.out.write_all(&self.buf)?;
        self.bytes += self.buf.len() as u64;
        self.count += 1;
        Ok(replaced)
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes the trailer and returns the output, the record count and the bytes written.
    pub fn finish(mut self) -> Result<(W, u64, u64), WriteError> {
        let tail = match self.header.format {
            Format::Csv => format!("T,{}\r\n", self.count),
            Format::Xml => format!(
                "  <FileTrailer>\n    <RecordCount>{}</RecordCount>\n  </FileTrailer>\n</{}>\n",
                self.count,
                self.header.kind.root()
            ),
        };
        self.out.write_all(tail.as_bytes())?;
        self.bytes += tail.len() as u64;
        self.out.flush()?;
        Ok((self.out, self.count, self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InsurerNumber, Timestamp};

    fn header(format: Format, encoding: TextEncoding) -> FileHeader {
        FileHeader {
            kind: FileKind::FlagChange,
            file_identifier: "F-1".into(),
            sender: InsurerNumber::parse("01130012").unwrap(),
            creation_time: Timestamp::parse("20261121230000").unwrap(),
            file_sequence: 1,
            format,
            encoding,
        }
    }

    #[test]
    fn csv_shape_and_quoting() {
        let mut w = RecordWriter::start(
            Vec::new(),
            header(Format::Csv, TextEncoding::Utf8),
            UnmappablePolicy::Reject,
        )
        .unwrap();
        let mut vals = vec![""; FileKind::FlagChange.fields().len()];
        vals[0] = "1";
        vals[1] = "a,\"b\"";
        w.write(&vals, &[]).unwrap();
        let (out, n, bytes) = w.finish().unwrap();
        assert_eq!(n, 1);
        assert_eq!(bytes as usize, out.len());
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "H,FlagChange,1,F-1,01130012,20261121230000,1,0\r\nD,1,\"a,\"\"b\"\"\",,,,,,,,,\r\nT,1\r\n"
        );
    }

    #[test]
    fn unmappable_rejects_the_record_or_is_replaced() {
        let mut w = RecordWriter::start(
            Vec::new(),
            header(Format::Xml, TextEncoding::ShiftJis),
            UnmappablePolicy::Reject,
        )
        .unwrap();
        let mut vals = vec![""; FileKind::FlagChange.fields().len()];
        vals[0] = "1";
        vals[1] = "𠮷と𩸽";
        match w.write(&vals, &[]) {
            Err(WriteError::Unmappable(u)) => {
                assert_eq!(u.len(), 2);
                assert_eq!(u[0].code_point, "U+20BB7");
                assert_eq!(u[0].field, "EffectiveTime");
            }
            other => panic!("{other:?}"),
        }
        let (out, n, _) = w.finish().unwrap();
        assert_eq!(n, 0);
        assert!(!String::from_utf8_lossy(&out).contains("RecordSequence"));

        let mut w = RecordWriter::start(
            Vec::new(),
            header(Format::Csv, TextEncoding::ShiftJis),
            UnmappablePolicy::Replace,
        )
        .unwrap();
        let replaced = w.write(&vals, &[]).unwrap();
        assert_eq!(replaced.len(), 2);
        let (out, _, _) = w.finish().unwrap();
        let (text, _) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(&out);
        assert!(text.contains("●と●"));
        assert!(!text.contains("&#"));
    }
}
