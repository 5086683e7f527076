//! CSV reader on the csv crate's `ByteRecord` (one reused record; RFC 4180; CRLF or LF).
//!
//! The `H` row is ASCII, so its CharacterCodeIdentifier is read from the raw first line. The
//! stream then goes through [`StrictDecoder`] in validating mode (raw bytes out, each checked in
//! the declared encoding, hashed) and [`QuoteCheck`] (the csv crate accepts stray quotes; we do
//! not). Shift_JIS never has `,` `"` CR LF inside a character, so rows split on raw bytes and
//! each field is decoded strictly afterwards.
//!
//! | problem | code | level |
//! |---|---|---|
//! | bytes invalid in the declared encoding, BOM with CharacterCodeIdentifier 1 | `E_ENCODING` | file |
//! | stray or unclosed quote, first row not `H`, H row not 8 columns, unknown FileKind, FormatVersion ≠ 1, second `H`, unknown row kind, rows after `T`, a row over `max_record_bytes` | `E_SCHEMA` | file |
//! | CharacterCodeIdentifier not `0`/`1` | `E_CODE` | file |
//! | header field values | the field's code (`E_CHECK_DIGIT`, `E_DATE`, `E_FIELD_FORMAT`, …) | file |
//! | RecordSequence missing, not a positive integer, not increasing | `E_SEQUENCE` | file |
//! | `T` row missing (truncated file), malformed, or its count ≠ D rows | `E_TRAILER_COUNT` | file |
//! | D row with the wrong number of columns, Fukuhon item pairs with an odd tail | `E_SCHEMA` | record |
//! | a value over `max_field_bytes` (bytes as stored) | `E_FIELD_FORMAT` | record |
//! | field values | from [`crate::domain::records::build`] | record |
//!
//! Blank lines are skipped (the csv crate's behaviour); they carry no data.

use super::decode::{self, Output, StopReason, StrictDecoder, StructFault};
use super::*;
use crate::domain::RawRecord;
use csv::ByteRecord;
use std::io::{self, Cursor, Read};

/// Reads one CSV input file. See the module docs for what is checked.
pub fn read(
    path: &Path,
    display: &str,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(RecordOutcome),
) -> Result<FileSummary, FileRejected> {
    let file = std::fs::File::open(path).map_err(|e| {
        one(Diagnostic::new(
            display,
            ErrorCode::Schema,
            format!("cannot open file: {}", e.kind()),
        ))
    })?;
    read_from(file, display, opts, on_record)
}

fn one(d: Diagnostic) -> FileRejected {
    FileRejected {
        diagnostics: vec![d],
        header: None,
    }
}

/// Slack over `max_record_bytes` for what the csv crate buffers ahead of the current row.
const READ_AHEAD: u64 = 64 * 1024;

/// [`read`] on any byte stream (tests, benches).
pub fn read_from<R: Read>(
    mut input: R,
    display: &str,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(RecordOutcome),
) -> Result<FileSummary, FileRejected> {
    let mut head = Vec::with_capacity(4096);
    (&mut input).take(4096).read_to_end(&mut head).map_err(|e| {
        one(Diagnostic::new(
            display,
            ErrorCode::Schema,
            format!("cannot read file: {}", e.kind()),
        ))
    })?;
    let encoding = declared_encoding(&head).map_err(|(code, msg)| one(Diagnostic::new(display, code, msg).line(1)))?;
    let bom = if head.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let mut dec = StrictDecoder::new(Cursor::new(head).chain(input), encoding, Output::Validated);
    dec.count_lines(false);
    dec.set_limit(opts.limits.max_record_bytes as u64 + READ_AHEAD);
    let qc = QuoteCheck {
        inner: dec,
        state: Quote::FieldStart,
        offset: bom,
        line: 1,
        error: None,
    };
    let rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(qc);
    let mut p = CsvParser {
        rdr,
        encoding,
        display,
        opts,
        kind: FileKind::SubscriberChange,
        header: None,
        records: 0,
        rejected: 0,
        prev_seq: 0,
        trailer: None,
        raw: RawRecord::default(),
        faults: Vec::new(),
    };
    if let Err(d) = p.run(on_record) {
        return Err(FileRejected {
            diagnostics: d,
            header: p.header,
        });
    }
    let header = p.header.expect("header read");
    let (sha256, bytes) = p.rdr.into_inner().inner.finish_digest().map_err(|e| {
        one(Diagnostic::new(
            display,
            ErrorCode::Schema,
            format!("cannot read file: {}", e.kind()),
        ))
    })?;
    Ok(FileSummary {
        header,
        records: p.records,
        rejected: p.rejected,
        sha256,
        bytes,
    })
}

/// CharacterCodeIdentifier of the (ASCII) `H` row at the start of `head`.
pub fn declared_encoding(head: &[u8]) -> Result<TextEncoding, (ErrorCode, String)> {
    let b = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let Some(end) = b
        .iter()
        .position(|&c| c == b'\n')
        .or((b.len() < 4096).then_some(b.len()))
    else {
        return Err((ErrorCode::Schema, "the first row (H header row) is too long".into()));
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&b[..end]);
    let mut rec = ByteRecord::new();
    let schema = |m: &str| (ErrorCode::Schema, m.to_owned());
    if !r.read_byte_record(&mut rec).unwrap_or(false) || rec.get(0) != Some(&b"H"[..]) {
        return Err(schema("the first row must be the H header row"));
    }
    if rec.len() != 8 {
        return Err(schema(
            "the H row must have 8 columns: H,FileKind,1,FileIdentifier,SenderInsurerNumber,CreationTime,FileSequence,CharacterCodeIdentifier",
        ));
    }
    std::str::from_utf8(&rec[7])
        .ok()
        .and_then(TextEncoding::from_csv_code)
        .ok_or((
            ErrorCode::Code,
            "CharacterCodeIdentifier must be 0 (UTF-8) or 1 (Shift_JIS)".into(),
        ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quote {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: either the closing quote or the first of `""`.
    QuoteInQuoted,
}

/// RFC 4180 quoting check on the raw stream (the csv crate is lenient about stray quotes).
/// Errors carry the byte offset and line.
pub struct QuoteCheck<R> {
    inner: R,
    state: Quote,
    offset: u64,
    line: u64,
    error: Option<Diagnostic>,
}

impl<R: Read> Read for QuoteCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        if n == 0 {
            if self.state == Quote::Quoted {
                return Err(self.fail(0, "a quoted field is not closed at the end of the file"));
            }
            return Ok(0);
        }
        if matches!(self.state, Quote::FieldStart | Quote::Unquoted) && !chunk.contains(&b'"') {
            self.state = match chunk[n - 1] {
                b',' | b'\n' | b'\r' => Quote::FieldStart,
                _ => Quote::Unquoted,
            };
        } else {
            for (i, &b) in chunk.iter().enumerate() {
                self.state = match (self.state, b) {
                    (Quote::FieldStart, b'"') => Quote::Quoted,
                    (Quote::FieldStart | Quote::Unquoted | Quote::QuoteInQuoted, b',' | b'\n' | b'\r') => {
                        Quote::FieldStart
                    }
                    (Quote::FieldStart | Quote::Unquoted, _) if b != b'"' => Quote::Unquoted,
                    (Quote::Unquoted, _) => {
                        let line = self.line + decode::count_nl(&chunk[..i]);
                        return Err(self.fail_at(
                            i,
                            line,
                            "stray '\"' inside an unquoted field (quote the whole field and double the quotes inside)",
                        ));
                    }
                    (Quote::Quoted, b'"') => Quote::QuoteInQuoted,
                    (Quote::Quoted, _) => Quote::Quoted,
                    (Quote::QuoteInQuoted, b'"') => Quote::Quoted,
                    (Quote::QuoteInQuoted, _) => {
                        let line = self.line + decode::count_nl(&chunk[..i]);
                        return Err(self.fail_at(i, line, "text after the closing '\"' of a quoted field"));
                    }
                    (Quote::FieldStart, _) => unreachable!(),
                };
            }
        }
        self.line += decode::count_nl(chunk);
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R> QuoteCheck<R> {
    fn fail(&mut self, i: usize, msg: &str) -> io::Error {
        let line = self.line;
        self.fail_at(i, line, msg)
    }
    fn fail_at(&mut self, i: usize, line: u64, msg: &str) -> io::Error {
        self.error = Some(
            Diagnostic::new("", ErrorCode::Schema, msg)
                .line(line)
                .offset(self.offset + i as u64),
        );
        io::Error::new(io::ErrorKind::InvalidData, "CSV quoting")
    }
}

type FileErr = Vec<Diagnostic>;

struct CsvParser<'a, R: Read> {
    rdr: csv::Reader<QuoteCheck<StrictDecoder<R>>>,
    encoding: TextEncoding,
    display: &'a str,
    opts: &'a ReadOptions<'a>,
    kind: FileKind,
    header: Option<FileHeader>,
    records: u64,
    rejected: u64,
    prev_seq: u64,
    trailer: Option<u64>,
    raw: RawRecord,
    faults: Vec<StructFault>,
}

impl<R: Read> CsvParser<'_, R> {
    fn err(&self, line: u64, code: ErrorCode, msg: impl Into<String>) -> FileErr {
        vec![Diagnostic::new(self.display, code, msg).line(line)]
    }

    fn read_error(&self, e: csv::Error) -> FileErr {
        let qc = self.rdr.get_ref();
        if let Some(d) = &qc.error {
            let mut d = d.clone();
            d.file = self.display.to_owned();
            return vec![d];
        }
        let line = e.position().map(|p| p.line()).unwrap_or(0);
        match qc.inner.stop_reason() {
            Some(StopReason::Encoding(d)) => {
                vec![
                    Diagnostic::new(self.display, ErrorCode::Encoding, d.message.clone())
                        .line(d.line)
                        .offset(d.offset),
                ]
            }
            Some(StopReason::SizeLimit) => self.err(
                line,
                ErrorCode::Schema,
                format!(
                    "row is longer than the limit of {} bytes",
                    self.opts.limits.max_record_bytes
                ),
            ),
            None => match e.kind() {
                csv::ErrorKind::Io(io) => self.err(line, ErrorCode::Schema, format!("cannot read file: {}", io.kind())),
                _ => self.err(line, ErrorCode::Schema, "malformed CSV"),
            },
        }
    }

    /// Decodes field `bytes` into `out`; invalid bytes are a file-level `E_ENCODING`
    /// (normally caught earlier by the stream check).
    fn decode(&self, bytes: &[u8], out: &mut String, line: u64) -> Result<(), FileErr> {
        decode::decode_field(bytes, self.encoding, out).map_err(|_| {
            self.err(
                line,
                ErrorCode::Encoding,
                "a field is not valid in the declared character encoding",
            )
        })
    }

    fn run(&mut self, on_record: &mut dyn FnMut(RecordOutcome)) -> Result<(), FileErr> {
        let mut rec = ByteRecord::new();
        let mut first = true;
        let max_row = self.opts.limits.max_record_bytes as u64;
        loop {
            match self.rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(self.read_error(e)),
            }
            self.rdr.get_mut().inner.mark();
            let pos = rec.position().expect("csv sets positions");
            let line = pos.line();
            if self.rdr.position().byte() - pos.byte() > max_row {
                return Err(self.err(
                    line,
                    ErrorCode::Schema,
                    format!("row is longer than the limit of {max_row} bytes"),
                ));
            }
            let row_kind = &rec[0];
            if first {
                first = false;
                self.header_row(&rec, line)?;
                continue;
            }
            if self.trailer.is_some() {
                return Err(self.err(line, ErrorCode::Schema, "no row may follow the T trailer row"));
            }
            match row_kind {
                b"D" => self.data_row(&rec, line, on_record)?,
                b"T" => {
                    let count = (rec.len() == 2).then(|| std::str::from_utf8(&rec[1]).ok()).flatten();
                    match count.and_then(decode::parse_count) {
                        Some(n) => self.trailer = Some(n),
                        None => {
                            return Err(self.err(
                                line,
                                ErrorCode::TrailerCount,
                                "the T row must be T,<RecordCount> with a non-negative integer",
                            ));
                        }
                    }
                }
                b"H" => return Err(self.err(line, ErrorCode::Schema, "a second H header row")),
                _ => return Err(self.err(line, ErrorCode::Schema, "unknown row kind: rows start with H, D or T")),
            }
        }
        let end_line = self.rdr.position().line();
        if first {
            return Err(self.err(1, ErrorCode::Schema, "the file is empty"));
        }
        match self.trailer {
            None => Err(self.err(
                end_line,
                ErrorCode::TrailerCount,
                "file ends without its T trailer row (truncated file?); nothing in it is applied",
            )),
            Some(n) if n != self.records => Err(self.err(
                end_line,
                ErrorCode::TrailerCount,
                format!("T row says {n} records but the file holds {}", self.records),
            )),
            Some(_) => Ok(()),
        }
    }

    fn header_row(&mut self, rec: &ByteRecord, line: u64) -> Result<(), FileErr> {
        // Shape and CharacterCodeIdentifier were checked on the raw first line.
        let kind = std::str::from_utf8(&rec[1])
            .ok()
            .and_then(FileKind::from_name)
            .filter(|k| k.is_input());
        let Some(kind) = kind else {
            return Err(self.err(
                line,
                ErrorCode::Schema,
                "FileKind must be SubscriberChange, FlagChange, Fukuhon or AgeTransitionHandoff",
            ));
        };
        self.kind = kind;
        if &rec[2] != b"1" {
            return Err(self.err(line, ErrorCode::Schema, "FormatVersion must be 1"));
        }
        let mut vals: [String; 4] = Default::default();
        for (i, v) in vals.iter_mut().enumerate() {
            let bytes = &rec[3 + i];
            if bytes.len() > self.opts.limits.max_field_bytes {
                return Err(self.err(line, ErrorCode::FieldFormat, "a header value is longer than the limit"));
            }
            self.decode(bytes, v, line)?;
        }
        let vals = vals.each_ref().map(|s| Some(s.as_str()));
        self.header = Some(decode::type_header(
            kind,
            Format::Csv,
            self.encoding,
            vals,
            self.display,
            line,
        )?);
        Ok(())
    }

    fn data_row(
        &mut self,
        rec: &ByteRecord,
        line: u64,
        on_record: &mut dyn FnMut(RecordOutcome),
    ) -> Result<(), FileErr> {
        let fields = self.kind.fields();
        let n = fields.len();
        let mut seq_text = String::new();
        if let Some(b) = rec.get(1) {
            if b.len() <= 20 {
                self.decode(b, &mut seq_text, line)?;
            } else {
                seq_text.push('x'); // far too long: not a RecordSequence, and not echoed
            }
        }
        let seq = decode::check_sequence(rec.get(1).map(|_| seq_text.as_str()), self.prev_seq, self.display, line)
            .map_err(|d| vec![d])?;
        self.prev_seq = seq;
        self.records += 1;
        let cols = rec.len() - 1;
        let has_items = self.kind.has_items();
        let count_ok = if has_items { cols >= n } else { cols == n };
        if !count_ok {
            let want = if has_items {
                format!("at least {n}")
            } else {
                n.to_string()
            };
            let fault = Diagnostic::new(
                self.display,
                ErrorCode::Schema,
                format!("D row has {cols} data columns; {} rows have {want}", self.kind.name()),
            )
            .line(line)
            .seq(seq);
            self.rejected += 1;
            on_record(RecordOutcome::Rejected {
                seq,
                faults: vec![fault],
            });
            return Ok(());
        }
        let max = self.opts.limits.max_field_bytes;
        self.raw.values.resize_with(n, || Some(String::new()));
        for i in 0..n {
            let mut s = self.raw.values[i].take().unwrap_or_default();
            s.clear();
            let bytes = &rec[1 + i];
            if bytes.len() > max {
                self.faults.push(StructFault {
                    field: Some(fields[i]),
                    code: ErrorCode::FieldFormat,
                    message: format!("{} is longer than the limit of {max} bytes", fields[i]),
                });
            } else {
                let r = self.decode(bytes, &mut s, line);
                self.raw.values[i] = Some(s);
                r?;
                continue;
            }
            self.raw.values[i] = Some(s);
        }
        self.raw.items.clear();
        if has_items {
            let tail = cols - n;
            if tail % 2 == 1 {
                self.faults.push(StructFault {
                    field: Some("Items/ItemCode"),
                    code: ErrorCode::Schema,
                    message: "item columns come in ItemCode,Value pairs; the last pair is incomplete".into(),
                });
            }
            let mut i = 1 + n;
            while i + 1 < rec.len() {
                let (c, v) = (&rec[i], &rec[i + 1]);
                if c.len() > max || v.len() > max {
                    self.faults.push(StructFault {
                        field: Some("Items/Value"),
                        code: ErrorCode::FieldFormat,
                        message: format!("an item is longer than the limit of {max} bytes"),
                    });
                } else {
                    let (mut cs, mut vs) = (String::new(), String::new());
                    self.decode(c, &mut cs, line)?;
                    self.decode(v, &mut vs, line)?;
                    self.raw.items.push((cs, vs));
                }
                i += 2;
            }
        }
        let out = decode::record_outcome(
            self.kind,
            seq,
            &self.raw,
            self.opts.catalog,
            self.display,
            line,
            &mut self.faults,
        );
        if matches!(out, RecordOutcome::Rejected { .. }) {
            self.rejected += 1;
        }
        on_record(out);
        Ok(())
    }
}
