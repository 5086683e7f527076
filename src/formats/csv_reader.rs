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

use super::checks::{self, StructFault};
use super::decode::{self, Output, StopReason, StrictDecoder};
use super::piece::{LIMIT_MARGIN, Piece, PieceOut};
use super::{FileHeader, FileRejected, FileSummary, Format, ReadOptions, RecordOutcome, TextEncoding};
use crate::domain::{FileKind, RawRecord};
use crate::error::{Diagnostic, ErrorCode};
use csv::ByteRecord;
use std::collections::VecDeque;
use std::io::{self, Cursor, Read};
use std::path::Path;

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
    let qc = QuoteCheck::new(dec, bom);
    let mut p = CsvParser::new(qc, encoding, display, opts);
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

/// Parses one piece of a file read in pieces ([`super::parallel`]): `bytes` start at a row (or at
/// the start of the file) and the piece is parsed as the serial reader would parse these bytes
/// there. `None` when anything is unclear: an error of any kind, a piece that does not end after
/// a row outside quotes, a row too close to the size limit to tell how the serial reader's
/// buffering would judge it. The caller then reads the file serially.
pub(crate) fn read_piece(bytes: &[u8], piece: &Piece, display: &str, opts: &ReadOptions) -> Option<PieceOut> {
    let resumed = piece.offset > 0;
    let mut dec = if resumed {
        StrictDecoder::resume(bytes, piece.encoding, Output::Validated, piece.offset, piece.line)
    } else {
        StrictDecoder::new(bytes, piece.encoding, Output::Validated)
    }
    .without_digest();
    dec.count_lines(false);
    dec.set_limit(opts.limits.max_record_bytes as u64 + READ_AHEAD);
    let bom = if !resumed && bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut qc = QuoteCheck::new(dec, piece.offset + bom);
    qc.line = piece.line;
    let mut p = CsvParser::new(qc, piece.encoding, display, opts);
    p.piece = Some(PieceState {
        last: piece.last,
        row_end: 0,
    });
    if resumed {
        p.expect_header = false;
        p.kind = piece.kind;
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
        trailer: p.trailer,
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
    ClosingOrDoubled,
}

/// RFC 4180 quoting check on the raw stream (the csv crate is lenient about stray quotes).
/// Errors carry the byte offset and line. It also notes the line on which each row starts
/// (the csv crate's positions point at the previous row's terminator and skip blank lines).
pub struct QuoteCheck<R> {
    inner: R,
    state: Quote,
    offset: u64,
    line: u64,
    at_line_start: bool,
    /// Start lines of rows seen here but not yet taken by the parser (bounded by csv's buffer).
    starts: VecDeque<u64>,
    error: Option<Diagnostic>,
}

impl<R> QuoteCheck<R> {
    fn new(inner: R, offset: u64) -> Self {
        QuoteCheck {
            inner,
            state: Quote::FieldStart,
            offset,
            line: 1,
            at_line_start: true,
            starts: VecDeque::new(),
            error: None,
        }
    }

    fn fail(&mut self, i: usize, msg: &str) -> io::Error {
        self.error = Some(
            Diagnostic::new("", ErrorCode::Schema, msg)
                .line(self.line)
                .offset(self.offset + i as u64),
        );
        io::Error::new(io::ErrorKind::InvalidData, "CSV quoting")
    }

    /// A chunk without quotes, outside a quoted field: only rows and lines to note.
    fn scan_plain(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() {
            if self.at_line_start {
                match chunk[i] {
                    b'\n' => {
                        self.line += 1;
                        i += 1;
                        continue;
                    }
                    b'\r' => {
                        i += 1;
                        continue;
                    }
                    _ => {
                        self.starts.push_back(self.line);
                        self.at_line_start = false;
                    }
                }
            }
            match chunk[i..].iter().position(|&b| b == b'\n') {
                Some(p) => {
                    i += p + 1;
                    self.line += 1;
                    self.at_line_start = true;
                }
                None => break,
            }
        }
        self.state = match chunk.last() {
            Some(b',' | b'\n' | b'\r') => Quote::FieldStart,
            Some(_) => Quote::Unquoted,
            None => self.state,
        };
    }

    fn scan_quoted(&mut self, chunk: &[u8]) -> io::Result<()> {
        for (i, &b) in chunk.iter().enumerate() {
            if self.at_line_start && b != b'\r' && b != b'\n' {
                self.starts.push_back(self.line);
                self.at_line_start = false;
            }
            self.state = match (self.state, b) {
                (Quote::FieldStart, b'"') => Quote::Quoted,
                (Quote::FieldStart | Quote::Unquoted | Quote::ClosingOrDoubled, b',' | b'\r') => Quote::FieldStart,
                (Quote::FieldStart | Quote::Unquoted | Quote::ClosingOrDoubled, b'\n') => {
                    self.at_line_start = true;
                    Quote::FieldStart
                }
                (Quote::FieldStart | Quote::Unquoted, _) if b != b'"' => Quote::Unquoted,
                (Quote::Unquoted, _) => {
                    return Err(self.fail(
                        i,
                        "stray '\"' inside an unquoted field (quote the whole field and double the quotes inside)",
                    ));
                }
                (Quote::Quoted, b'"') => Quote::ClosingOrDoubled,
                (Quote::Quoted, _) => Quote::Quoted,
                (Quote::ClosingOrDoubled, b'"') => Quote::Quoted,
                (Quote::ClosingOrDoubled, _) => {
                    return Err(self.fail(i, "text after the closing '\"' of a quoted field"));
                }
                (Quote::FieldStart, _) => unreachable!(),
            };
            if b == b'\n' {
                self.line += 1;
            }
        }
        Ok(())
    }
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
            self.scan_plain(chunk);
        } else {
            self.scan_quoted(chunk)?;
        }
        self.offset += n as u64;
        Ok(n)
    }
}

type FileErr = Vec<Diagnostic>;

/// What a piece parser found unclear; never shown (the file is read again serially).
fn unclear() -> FileErr {
    Vec::new()
}

/// Parsing a piece of a file rather than a whole file.
struct PieceState {
    /// The piece ends the file (else it must end after a row, outside quotes).
    last: bool,
    /// The csv reader's byte position after the previous row.
    row_end: u64,
}

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
    /// The next row is the file's first, the H row.
    expect_header: bool,
    piece: Option<PieceState>,
    first_seq: Option<u64>,
    /// Line of the last row read (a row whose start was not noted gets the next one).
    last_line: u64,
}

impl<'a, R: Read> CsvParser<'a, R> {
    fn new(
        qc: QuoteCheck<StrictDecoder<R>>,
        encoding: TextEncoding,
        display: &'a str,
        opts: &'a ReadOptions<'a>,
    ) -> Self {
        let rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(qc);
        CsvParser {
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
            expect_header: true,
            piece: None,
            first_seq: None,
            last_line: 0,
        }
    }

    /// Piece parsing: the bytes since the previous row (blank lines and this row, or what
    /// follows the last row) must stay clear of the row limit. The serial reader's own checks
    /// measure nearly the same span, but one of them only when its buffers run dry.
    fn piece_span(&mut self, max_row: u64) -> Result<(), FileErr> {
        let end = self.rdr.position().byte();
        if let Some(p) = &mut self.piece {
            if end - p.row_end + LIMIT_MARGIN > max_row {
                return Err(unclear());
            }
            p.row_end = end;
        }
        Ok(())
    }

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
        // an I/O stop (size limit) has no csv position: the row being read starts at the next
        // noted start, or after the last row read
        let line = e
            .position()
            .map(|p| p.line())
            .or_else(|| qc.starts.front().copied())
            .unwrap_or(self.last_line + 1);
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
        let max_row = self.opts.limits.max_record_bytes as u64;
        loop {
            match self.rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => {
                    self.piece_span(max_row)?;
                    break;
                }
                Err(e) => return Err(self.read_error(e)),
            }
            self.piece_span(max_row)?;
            self.rdr.get_mut().inner.mark();
            let pos = rec.position().expect("csv sets positions");
            let line = match self.rdr.get_mut().starts.pop_front() {
                Some(line) => line,
                // A row that does not start a line (after a lone CR): QuoteCheck did not note it,
                // and rows from here on get the lines of later rows. The serial reader's lines
                // then depend on what came before the piece.
                None if self.piece.is_some() => return Err(unclear()),
                None => self.last_line + 1,
            };
            self.last_line = line;
            if self.rdr.position().byte() - pos.byte() > max_row {
                return Err(self.err(
                    line,
                    ErrorCode::Schema,
                    format!("row is longer than the limit of {max_row} bytes"),
                ));
            }
            let row_kind = &rec[0];
            if self.expect_header {
                self.expect_header = false;
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
                    match count.and_then(checks::parse_count) {
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
        let end_line = self.rdr.get_ref().line;
        if self.expect_header {
            return Err(self.err(1, ErrorCode::Schema, "the file is empty"));
        }
        if let Some(p) = &self.piece {
            let qc = self.rdr.get_ref();
            // ... and each of its rows started a line, as QuoteCheck noted them
            let after_row = qc.state == Quote::FieldStart && qc.at_line_start && qc.starts.is_empty();
            return match (p.last, self.trailer) {
                // the last piece holds the T row; its count covers every piece: compared when
                // they are merged
                (true, Some(_)) => Ok(()),
                // any other piece ends after a row, outside quotes, and before the T row
                (false, None) if after_row => Ok(()),
                _ => Err(unclear()),
            };
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
        // CharacterCodeIdentifier was read from the raw first line; a quoted newline could make
        // the parsed row differ from that line, so the shape is checked again.
        if rec.len() != 8 || rec[7] != *self.encoding.csv_code().as_bytes() {
            return Err(self.err(line, ErrorCode::Schema, "the H row must have 8 columns"));
        }
        let kind = std::str::from_utf8(&rec[1])
            .ok()
            .and_then(FileKind::from_name)
            .filter(|k| k.is_input());
        let Some(kind) = kind else {
            return Err(self.err(
                line,
                ErrorCode::Schema,
                "FileKind must be SubscriberChange, FlagChange, Fukuhon, AgeTransitionHandoff or AgeTransitionInquiry",
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
        self.header = Some(checks::type_header(
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
        let seq = checks::check_sequence(rec.get(1).map(|_| seq_text.as_str()), self.prev_seq, self.display, line)
            .map_err(|d| vec![d])?;
        self.prev_seq = seq;
        self.first_seq.get_or_insert(seq);
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
                r?;
                if let Some(f) = not_xml_char(fields[i], &s) {
                    self.faults.push(f);
                    s.clear(); // reported; not typed again
                }
                self.raw.values[i] = Some(s);
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
                    let bad = not_xml_char("Items/ItemCode", &cs).or_else(|| not_xml_char("Items/Value", &vs));
                    match bad {
                        Some(f) => self.faults.push(f),
                        None => self.raw.items.push((cs, vs)),
                    }
                }
                i += 2;
            }
        }
        let out = checks::record_outcome(
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

/// §1: a character XML 1.0 does not allow (C0 controls but tab, LF and CR; U+FFFE, U+FFFF) is
/// `E_FIELD_FORMAT` in CSV too, so both syntaxes accept the same text.
fn not_xml_char(field: &'static str, s: &str) -> Option<StructFault> {
    let (i, c) = s.chars().enumerate().find(|&(_, c)| !checks::is_xml_char(c))?;
    Some(StructFault {
        field: Some(field),
        code: ErrorCode::FieldFormat,
        message: format!(
            "{field} holds U+{:04X} at position {}, a character XML does not allow",
            c as u32,
            i + 1
        ),
    })
}

#[cfg(test)]
mod tests;
