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

use super::checks::{self, StructFault, is_xml_char};
use super::decode::{Output, StopReason, StrictDecoder};
use super::piece::{LIMIT_MARGIN, Piece, PieceOut};
use super::writer::XML_NS;
use super::{FileHeader, FileRejected, FileSummary, Format, ReadOptions, RecordOutcome, TextEncoding};
use crate::domain::{FileKind, RawRecord};
use crate::error::{Diagnostic, ErrorCode};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Prolog,
    ExpectHeader,
    Header,
    Body,
    Record,
    Trailer,
    AfterTrailer,
    Epilog,
}

/// Where element text goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Capture {
    None,
    Header(usize),
    Field(usize),
    ItemCode,
    ItemValue,
    Count,
}

const HEADER_FIELDS: [&str; 4] = ["FileIdentifier", "SenderInsurerNumber", "CreationTime", "FileSequence"];

type FileErr = Vec<Diagnostic>;

/// What a piece parser found unclear; never shown (the file is read again serially).
fn unclear() -> FileErr {
    Vec::new()
}

/// Parsing a piece of a file rather than a whole file.
struct PieceState {
    /// The piece ends the file (else it must end between two records).
    last: bool,
    /// The piece starts at a record element, inside the root (else at the start of the file).
    resumed: bool,
    /// Consumed output at the end of the previous event.
    mark: u64,
}

struct Parser<'a, R: Read> {
    xr: Reader<StrictDecoder<R>>,
    encoding: TextEncoding,
    display: &'a str,
    opts: &'a ReadOptions<'a>,
    depth: usize,
    phase: Phase,
    kind: FileKind,
    header: Option<FileHeader>,
    records: u64,
    rejected: u64,
    prev_seq: u64,
    // text capture
    capture: Capture,
    cap_depth: usize,
    /// Depth of an element (and its subtree) being skipped after a record-level error.
    skip_depth: Option<usize>,
    // header
    hdr_next: usize,
    hdr_vals: [String; 4],
    // record
    raw: RawRecord,
    next_field: usize,
    seen: u64,
    oversize: u64,
    faults: Vec<StructFault>,
    rec_line: u64,
    rec_start: u64,
    items_seen: bool,
    item_stage: u8,
    item_code: String,
    item_value: String,
    // trailer
    count_seen: bool,
    count_text: String,
    trailer_count: Option<u64>,
    // pieces
    piece: Option<PieceState>,
    first_seq: Option<u64>,
}

impl<'a, R: Read> Parser<'a, R> {
    fn new(dec: StrictDecoder<R>, encoding: TextEncoding, display: &'a str, opts: &'a ReadOptions<'a>) -> Self {
        let mut dec = dec;
        dec.set_limit(opts.limits.max_record_bytes as u64);
        let mut xr = Reader::from_reader(dec);
        let c = xr.config_mut();
        c.check_comments = true;
        c.check_end_names = true;
        c.expand_empty_elements = false;
        c.allow_unmatched_ends = false;
        c.allow_dangling_amp = false;
        c.trim_text(false);
        Parser {
            xr,
            encoding,
            display,
            opts,
            depth: 0,
            phase: Phase::Prolog,
            kind: FileKind::SubscriberChange,
            header: None,
            records: 0,
            rejected: 0,
            prev_seq: 0,
            capture: Capture::None,
            cap_depth: 0,
            skip_depth: None,
            hdr_next: 0,
            hdr_vals: Default::default(),
            raw: RawRecord::default(),
            next_field: 0,
            seen: 0,
            oversize: 0,
            faults: Vec::new(),
            rec_line: 0,
            rec_start: 0,
            items_seen: false,
            item_stage: 0,
            item_code: String::new(),
            item_value: String::new(),
            count_seen: false,
            count_text: String::new(),
            trailer_count: None,
            piece: None,
            first_seq: None,
        }
    }

    fn line(&self) -> u64 {
        self.xr.get_ref().line()
    }

    fn err(&self, code: ErrorCode, msg: impl Into<String>) -> FileErr {
        vec![Diagnostic::new(self.display, code, msg).line(self.line())]
    }

    fn rec_fault(&mut self, field: Option<&'static str>, msg: impl Into<String>) {
        self.faults.push(StructFault {
            field,
            code: ErrorCode::Schema,
            message: msg.into(),
        });
    }

    fn run(&mut self, on_record: &mut dyn FnMut(RecordOutcome)) -> Result<(), FileErr> {
        let mut buf = Vec::with_capacity(4096);
        let mut first = !self.piece.as_ref().is_some_and(|p| p.resumed);
        loop {
            buf.clear();
            let ev = match self.xr.read_event_into(&mut buf) {
                Ok(ev) => ev,
                Err(e) => return Err(self.xml_error(e)),
            };
            if let Some(p) = &mut self.piece {
                // The serial reader fails an event once more than the limit was consumed when its
                // decoder is asked for more; when that happens depends on where its buffers end.
                // An event that comes close to the limit is left to the serial reader.
                let consumed = self.xr.get_ref().consumed();
                if consumed - p.mark + LIMIT_MARGIN > self.opts.limits.max_record_bytes as u64 {
                    return Err(unclear());
                }
                p.mark = consumed;
            }
            self.xr.get_mut().mark();
            match ev {
                Event::Decl(_) if first => {}
                Event::Decl(_) => {
                    return Err(self.err(
                        ErrorCode::XmlSyntax,
                        "XML declaration is only allowed at the very start",
                    ));
                }
                Event::DocType(_) => {
                    return Err(self.err(
                        ErrorCode::DtdForbidden,
                        "a DOCTYPE (DTD) is not allowed in interchange files; remove it",
                    ));
                }
                Event::Comment(_) => {}
                Event::PI(pi) => {
                    if pi.target().eq_ignore_ascii_case(b"xml") {
                        return Err(self.err(
                            ErrorCode::XmlSyntax,
                            "XML declaration is only allowed at the very start",
                        ));
                    }
                }
                Event::Start(e) => self.start(&e, false, on_record)?,
                Event::Empty(e) => self.start(&e, true, on_record)?,
                Event::End(e) => {
                    if self.depth <= 1 && self.piece.as_ref().is_some_and(|p| p.resumed) {
                        // the root's end tag, which quick-xml could not match to its start tag
                        if self.depth == 0 || e.name().as_ref() != self.kind.root().as_bytes() {
                            return Err(unclear());
                        }
                    }
                    self.end(on_record)?
                }
                Event::Text(t) => {
                    let s = t
                        .xml10_content()
                        .map_err(|_| self.err(ErrorCode::Encoding, "text is not valid UTF-8"))?;
                    self.text(&s)?;
                }
                Event::CData(t) => {
                    let s = t
                        .xml10_content()
                        .map_err(|_| self.err(ErrorCode::Encoding, "text is not valid UTF-8"))?;
                    if self.phase == Phase::Prolog || self.phase == Phase::Epilog {
                        return Err(self.err(ErrorCode::XmlSyntax, "CDATA section outside the root element"));
                    }
                    self.text(&s)?;
                }
                Event::GeneralRef(r) => {
                    let c = self.resolve_ref(&r)?;
                    let mut b = [0u8; 4];
                    self.text(c.encode_utf8(&mut b))?;
                }
                Event::Eof => return self.eof(),
            }
            first = false;
            if self.phase == Phase::Record
                && self.xr.get_ref().consumed() - self.rec_start > self.opts.limits.max_record_bytes as u64
            {
                return Err(self.err(
                    ErrorCode::Schema,
                    format!(
                        "record is larger than the limit of {} bytes",
                        self.opts.limits.max_record_bytes
                    ),
                ));
            }
        }
    }

    fn xml_error(&self, e: quick_xml::Error) -> FileErr {
        use quick_xml::errors::IllFormedError as I;
        match (&e, self.xr.get_ref().stop_reason()) {
            (quick_xml::Error::Io(_), Some(StopReason::Encoding(d))) => {
                vec![
                    Diagnostic::new(self.display, ErrorCode::Encoding, d.message.clone())
                        .line(d.line)
                        .offset(d.offset),
                ]
            }
            (quick_xml::Error::Io(_), Some(StopReason::SizeLimit)) => self.err(
                ErrorCode::Schema,
                format!(
                    "markup or text longer than the limit of {} bytes",
                    self.opts.limits.max_record_bytes
                ),
            ),
            (quick_xml::Error::Io(io), None) => self.err(ErrorCode::Schema, format!("cannot read file: {}", io.kind())),
            (quick_xml::Error::IllFormed(I::MissingEndTag(_)), _) => self.eof().err().unwrap_or_default(),
            (quick_xml::Error::IllFormed(i), _) => {
                let msg = match i {
                    I::MismatchedEndTag { expected, found } => format!(
                        "end tag {} does not match start tag {}",
                        checks::safe_name(found.as_bytes()),
                        checks::safe_name(expected.as_bytes())
                    ),
                    I::UnmatchedEndTag(n) => format!("end tag {} has no start tag", checks::safe_name(n.as_bytes())),
                    I::DoubleHyphenInComment => "'--' inside a comment".into(),
                    I::UnclosedReference => "'&' without a closing ';' (write & as &amp;)".into(),
                    I::MissingDeclVersion(_) => "the XML declaration must start with version=\"1.0\"".into(),
                    I::MissingDoctypeName => "a DOCTYPE without a name".into(),
                    I::MissingEndTag(_) => unreachable!(),
                };
                self.err(ErrorCode::XmlSyntax, msg)
            }
            (quick_xml::Error::Syntax(s), _) => {
                use quick_xml::errors::SyntaxError as S;
                // A file cut inside a tag, comment or CDATA is a truncated file, like one cut
                // between tags: inside the root that is the missing trailer (E_TRAILER_COUNT).
                if matches!(s, S::UnclosedTag | S::UnclosedComment | S::UnclosedCData)
                    && !matches!(self.phase, Phase::Prolog | Phase::Epilog)
                {
                    return self.eof().err().unwrap_or_default();
                }
                if matches!(s, quick_xml::errors::SyntaxError::UnclosedDoctype) {
                    return self.err(
                        ErrorCode::DtdForbidden,
                        "a DOCTYPE (DTD) is not allowed in interchange files",
                    );
                }
                self.err(ErrorCode::XmlSyntax, s.to_string())
            }
            _ => self.err(ErrorCode::XmlSyntax, "not well-formed XML"),
        }
    }

    fn resolve_ref(&self, r: &quick_xml::events::BytesRef) -> Result<char, FileErr> {
        let c = match &**r {
            b"amp" => '&',
            b"lt" => '<',
            b"gt" => '>',
            b"apos" => '\'',
            b"quot" => '"',
            _ if r.is_char_ref() => match r.resolve_char_ref() {
                Ok(Some(c)) if is_xml_char(c) => c,
                _ => return Err(self.err(ErrorCode::XmlSyntax, "invalid character reference")),
            },
            _ => {
                return Err(self.err(
                    ErrorCode::XmlSyntax,
                    "unknown entity reference: only &amp; &lt; &gt; &apos; &quot; and character references are allowed",
                ));
            }
        };
        Ok(c)
    }

    /// Checks attributes: none allowed except `xmlns` on the root. Ok(true) = an attribute that
    /// is not allowed (a schema problem for the caller to place); syntax errors are file-level.
    fn bad_attributes(&self, e: &BytesStart, root: bool) -> Result<bool, FileErr> {
        if e.attributes_raw().iter().all(u8::is_ascii_whitespace) {
            return Ok(root); // the root needs its xmlns
        }
        let mut ns_ok = false;
        let mut other = false;
        for a in e.attributes() {
            let a = a.map_err(|_| self.err(ErrorCode::XmlSyntax, "malformed attribute"))?;
            if root && a.key.as_ref() == b"xmlns" && a.value.as_ref() == XML_NS.as_bytes() {
                ns_ok = true;
            } else {
                other = true;
            }
        }
        Ok(other || (root && !ns_ok))
    }

    fn start(&mut self, e: &BytesStart, empty: bool, on_record: &mut dyn FnMut(RecordOutcome)) -> Result<(), FileErr> {
        if self.depth + 1 > self.opts.limits.max_depth {
            return Err(self.err(
                ErrorCode::Schema,
                format!(
                    "elements nested deeper than the limit of {}",
                    self.opts.limits.max_depth
                ),
            ));
        }
        self.depth += 1;
        let name = e.name();
        let name = name.as_ref();
        if let Some(d) = self.skip_depth {
            debug_assert!(self.depth > d);
            self.bad_attributes(e, false)?; // syntax still matters
        } else {
            self.start_element(e, name)?;
        }
        if empty {
            self.end(on_record)?;
        }
        Ok(())
    }

    fn start_element(&mut self, e: &BytesStart, name: &[u8]) -> Result<(), FileErr> {
        let depth = self.depth;
        match self.phase {
            Phase::Prolog => {
                let Some(kind) = std::str::from_utf8(name)
                    .ok()
                    .and_then(FileKind::from_root)
                    .filter(|k| k.is_input())
                else {
                    return Err(self.err(
                        ErrorCode::Schema,
                        format!(
                            "root element {} is not an input file kind (SubscriberChangeFile, FlagChangeFile, FukuhonFile, AgeTransitionHandoffFile, AgeTransitionInquiryFile)",
                            checks::safe_name(name)
                        ),
                    ));
                };
                if self.bad_attributes(e, true)? {
                    return Err(self.err(
                        ErrorCode::Schema,
                        format!("the root element must have xmlns=\"{XML_NS}\" and no other attribute"),
                    ));
                }
                self.kind = kind;
                self.phase = Phase::ExpectHeader;
                Ok(())
            }
            Phase::Epilog => Err(self.err(ErrorCode::XmlSyntax, "a second root element after the end of the first")),
            Phase::ExpectHeader => {
                if name != b"FileHeader" {
                    return Err(self.err(ErrorCode::Schema, "FileHeader must be the first element in the root"));
                }
                self.no_attrs_file(e)?;
                self.phase = Phase::Header;
                self.hdr_next = 0;
                Ok(())
            }
            Phase::Header => {
                if self.capture != Capture::None {
                    return Err(self.err(ErrorCode::Schema, "file header fields hold text, not elements"));
                }
                self.no_attrs_file(e)?;
                match HEADER_FIELDS.iter().position(|f| f.as_bytes() == name) {
                    Some(i) if i == self.hdr_next => {
                        self.hdr_next += 1;
                        self.capture = Capture::Header(i);
                        self.cap_depth = depth;
                        self.hdr_vals[i].clear();
                        Ok(())
                    }
                    Some(_) => Err(self.err(
                        ErrorCode::Schema,
                        "FileHeader must hold FileIdentifier, SenderInsurerNumber, CreationTime, FileSequence once each, in this order",
                    )),
                    None => Err(self.err(
                        ErrorCode::Schema,
                        format!("{} is not a FileHeader field", checks::safe_name(name)),
                    )),
                }
            }
            Phase::Body => {
                if name == self.kind.name().as_bytes() {
                    self.begin_record(e)
                } else if name == b"FileTrailer" {
                    self.no_attrs_file(e)?;
                    self.phase = Phase::Trailer;
                    Ok(())
                } else {
                    Err(self.err(
                        ErrorCode::Schema,
                        format!(
                            "{} is not allowed here: a {} holds FileHeader, {} records and FileTrailer",
                            checks::safe_name(name),
                            self.kind.root(),
                            self.kind.name()
                        ),
                    ))
                }
            }
            Phase::AfterTrailer => Err(self.err(ErrorCode::Schema, "nothing may follow FileTrailer")),
            Phase::Trailer => {
                if name != b"RecordCount" || self.count_seen || self.capture != Capture::None {
                    return Err(self.err(ErrorCode::Schema, "FileTrailer holds exactly one RecordCount"));
                }
                self.no_attrs_file(e)?;
                self.count_seen = true;
                self.capture = Capture::Count;
                self.cap_depth = depth;
                self.count_text.clear();
                Ok(())
            }
            Phase::Record => self.record_child(e, name),
        }
    }

    fn no_attrs_file(&self, e: &BytesStart) -> Result<(), FileErr> {
        if self.bad_attributes(e, false)? {
            return Err(self.err(ErrorCode::Schema, "attributes are not allowed here"));
        }
        Ok(())
    }

    fn begin_record(&mut self, e: &BytesStart) -> Result<(), FileErr> {
        self.phase = Phase::Record;
        self.rec_line = self.line();
        self.rec_start = self.xr.get_ref().consumed();
        let n = self.kind.fields().len();
        self.raw.values.resize_with(n, || Some(String::new()));
        for v in &mut self.raw.values {
            match v {
                Some(s) => s.clear(),
                None => *v = Some(String::new()),
            }
        }
        self.raw.items.clear();
        self.next_field = 0;
        self.seen = 0;
        self.oversize = 0;
        self.faults.clear();
        self.items_seen = false;
        if self.bad_attributes(e, false)? {
            self.rec_fault(None, "attributes are not allowed on record elements");
        }
        Ok(())
    }

    /// A child element somewhere inside a record (depth ≥ 3).
    fn record_child(&mut self, e: &BytesStart, name: &[u8]) -> Result<(), FileErr> {
        let depth = self.depth;
        let kind = self.kind;
        let fields = kind.fields();
        let skip = |p: &mut Self, field: Option<&'static str>, msg: String| {
            p.rec_fault(field, msg);
            p.skip_depth = Some(depth);
        };
        if self.bad_attributes(e, false)? {
            self.rec_fault(
                None,
                format!("attributes are not allowed on {}", checks::safe_name(name)),
            );
        }
        match (depth, self.capture) {
            (3, Capture::None) => {
                if name == b"Items" && kind.has_items() {
                    if self.items_seen {
                        skip(self, None, "Items appears twice".into());
                    } else {
                        self.items_seen = true;
                        self.next_field = fields.len();
                    }
                    return Ok(());
                }
                let Some(i) = fields.iter().position(|f| f.as_bytes() == name) else {
                    skip(
                        self,
                        None,
                        format!("{} is not a field of {}", checks::safe_name(name), kind.name()),
                    );
                    return Ok(());
                };
                let f = fields[i];
                if self.seen & (1 << i) != 0 {
                    skip(self, Some(f), format!("{f} appears twice"));
                } else if i < self.next_field {
                    let after = if self.items_seen {
                        "Items"
                    } else {
                        "the fields before it"
                    };
                    self.rec_fault(
                        Some(f),
                        format!("{f} is out of order: it must come before {after}, in the order of the spec"),
                    );
                    self.capture_field(i, depth);
                } else {
                    self.next_field = i + 1;
                    self.capture_field(i, depth);
                }
            }
            (4, Capture::None) if self.items_seen => {
                if name == b"Item" {
                    self.item_stage = 0;
                    self.item_code.clear();
                    self.item_value.clear();
                } else {
                    skip(
                        self,
                        None,
                        format!("{} is not allowed in Items (only Item)", checks::safe_name(name)),
                    );
                }
            }
            (5, Capture::None) if self.items_seen => {
                if name == b"ItemCode" && self.item_stage == 0 {
                    self.item_stage = 1;
                    self.capture = Capture::ItemCode;
                    self.cap_depth = depth;
                } else if name == b"Value" && self.item_stage == 1 {
                    self.item_stage = 2;
                    self.capture = Capture::ItemValue;
                    self.cap_depth = depth;
                } else {
                    skip(
                        self,
                        Some("Items/ItemCode"),
                        "an Item holds ItemCode then Value, once each".into(),
                    );
                    self.item_stage = 3;
                }
            }
            (_, Capture::Field(i)) => skip(self, Some(fields[i]), format!("{} holds text, not elements", fields[i])),
            _ => skip(self, None, format!("{} is not allowed here", checks::safe_name(name))),
        }
        Ok(())
    }

    fn capture_field(&mut self, i: usize, depth: usize) {
        self.seen |= 1 << i;
        self.capture = Capture::Field(i);
        self.cap_depth = depth;
        if let Some(Some(s)) = self.raw.values.get_mut(i) {
            s.clear();
        }
    }

    fn end(&mut self, on_record: &mut dyn FnMut(RecordOutcome)) -> Result<(), FileErr> {
        let depth = self.depth;
        self.depth -= 1;
        if let Some(d) = self.skip_depth {
            if depth > d {
                return Ok(()); // inside the skipped subtree
            }
            self.skip_depth = None;
        }
        if self.capture != Capture::None && depth == self.cap_depth {
            self.capture = Capture::None;
            return Ok(());
        }
        if self.capture != Capture::None {
            return Ok(()); // a skipped element inside a leaf
        }
        match (self.phase, depth) {
            (Phase::ExpectHeader, 1) => Err(self.err(ErrorCode::Schema, "FileHeader is missing")),
            (Phase::Body, 1) | (Phase::AfterTrailer, 1) | (Phase::Trailer, 1) => {
                self.phase = Phase::Epilog;
                self.finish_root()
            }
            (Phase::Header, 2) => self.finish_header(),
            (Phase::Trailer, 2) => {
                if !self.count_seen {
                    return Err(self.err(ErrorCode::TrailerCount, "FileTrailer must hold RecordCount"));
                }
                match checks::parse_count(&self.count_text) {
                    Some(n) => self.trailer_count = Some(n),
                    None => {
                        return Err(self.err(ErrorCode::TrailerCount, "RecordCount must be a non-negative integer"));
                    }
                }
                self.phase = Phase::AfterTrailer;
                Ok(())
            }
            (Phase::Record, 2) => self.finish_record(on_record),
            (Phase::Record, 4) if self.items_seen => {
                if self.item_stage == 2 {
                    self.raw.items.push((
                        std::mem::take(&mut self.item_code),
                        std::mem::take(&mut self.item_value),
                    ));
                } else if self.item_stage < 2 {
                    self.rec_fault(Some("Items/ItemCode"), "an Item holds ItemCode then Value, once each");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn finish_header(&mut self) -> Result<(), FileErr> {
        let line = self.line();
        let vals: [Option<&str>; 4] = std::array::from_fn(|i| {
            if i < self.hdr_next {
                Some(self.hdr_vals[i].as_str())
            } else {
                None
            }
        });
        let h = checks::type_header(self.kind, Format::Xml, self.encoding, vals, self.display, line)?;
        self.header = Some(h);
        self.phase = Phase::Body;
        Ok(())
    }

    fn finish_record(&mut self, on_record: &mut dyn FnMut(RecordOutcome)) -> Result<(), FileErr> {
        self.phase = Phase::Body;
        let seq = checks::check_sequence(
            self.raw.values[0].as_deref(),
            self.prev_seq,
            self.display,
            self.rec_line,
        )
        .map_err(|d| vec![d])?;
        self.prev_seq = seq;
        self.first_seq.get_or_insert(seq);
        self.records += 1;
        let out = checks::record_outcome(
            self.kind,
            seq,
            &self.raw,
            self.opts.catalog,
            self.display,
            self.rec_line,
            &mut self.faults,
        );
        if matches!(out, RecordOutcome::Rejected { .. }) {
            self.rejected += 1;
        }
        on_record(out);
        Ok(())
    }

    fn finish_root(&mut self) -> Result<(), FileErr> {
        let Some(count) = self.trailer_count else {
            return Err(self.err(
                ErrorCode::TrailerCount,
                "FileTrailer is missing before the end of the root element",
            ));
        };
        if self.piece.is_some() {
            return Ok(()); // the count covers every piece: compared when they are merged
        }
        if count != self.records {
            return Err(self.err(
                ErrorCode::TrailerCount,
                format!("FileTrailer says {count} records but the file holds {}", self.records),
            ));
        }
        Ok(())
    }

    fn eof(&self) -> Result<(), FileErr> {
        if self.piece.as_ref().is_some_and(|p| !p.last) {
            // a piece other than the last ends between two records, or it is unclear
            let between = self.phase == Phase::Body
                && self.depth == 1
                && self.capture == Capture::None
                && self.skip_depth.is_none();
            return if between { Ok(()) } else { Err(unclear()) };
        }
        match self.phase {
            Phase::Epilog => Ok(()),
            Phase::Prolog => Err(self.err(ErrorCode::XmlSyntax, "no root element")),
            Phase::AfterTrailer => Err(self.err(ErrorCode::XmlSyntax, "the root element is not closed at end of file")),
            _ => Err(self.err(
                ErrorCode::TrailerCount,
                "file ends before its FileTrailer (truncated file?); nothing in it is applied",
            )),
        }
    }

    fn text(&mut self, s: &str) -> Result<(), FileErr> {
        if s.bytes().any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
            || (!s.is_ascii() && s.contains(['\u{FFFE}', '\u{FFFF}']))
        {
            return Err(self.err(ErrorCode::XmlSyntax, "control character not allowed in XML"));
        }
        if s.contains("]]>") {
            return Err(self.err(ErrorCode::XmlSyntax, "']]>' is not allowed in text"));
        }
        if self.skip_depth.is_some() {
            return Ok(());
        }
        if self.capture != Capture::None && self.depth == self.cap_depth {
            let max = self.opts.limits.max_field_bytes;
            let target = match self.capture {
                Capture::Header(i) => &mut self.hdr_vals[i],
                Capture::Count => &mut self.count_text,
                Capture::ItemCode => &mut self.item_code,
                Capture::ItemValue => &mut self.item_value,
                Capture::Field(i) => {
                    if self.oversize & (1 << i) != 0 {
                        return Ok(());
                    }
                    let v = self.raw.values[i].as_mut().expect("values are Some");
                    if v.len() + s.len() > max {
                        v.clear();
                        self.oversize |= 1 << i;
                        let f = self.kind.fields()[i];
                        self.faults.push(StructFault {
                            field: Some(f),
                            code: ErrorCode::FieldFormat,
                            message: format!("{f} is longer than the limit of {max} bytes"),
                        });
                        return Ok(());
                    }
                    v.push_str(s);
                    return Ok(());
                }
                Capture::None => unreachable!(),
            };
            if target.len() + s.len() > max {
                let what = match self.capture {
                    Capture::ItemCode | Capture::ItemValue => "an item value",
                    _ => "a header or trailer value",
                };
                if matches!(self.capture, Capture::ItemCode | Capture::ItemValue) {
                    self.faults.push(StructFault {
                        field: Some("Items/Value"),
                        code: ErrorCode::FieldFormat,
                        message: format!("{what} is longer than the limit of {max} bytes"),
                    });
                    self.skip_depth = Some(self.depth);
                    self.item_stage = 3;
                    return Ok(());
                }
                return Err(self.err(
                    ErrorCode::FieldFormat,
                    format!("{what} is longer than the limit of {max} bytes"),
                ));
            }
            target.push_str(s);
            return Ok(());
        }
        if s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            return Ok(());
        }
        match self.phase {
            Phase::Prolog | Phase::Epilog => Err(self.err(ErrorCode::XmlSyntax, "text outside the root element")),
            Phase::Record => {
                self.rec_fault(
                    None,
                    format!(
                        "text is not allowed between the elements of a {} record",
                        self.kind.name()
                    ),
                );
                Ok(())
            }
            _ => Err(self.err(ErrorCode::Schema, "text is not allowed between elements here")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Limits;
    use super::super::testdata::read as read_bytes;
    use super::super::testdata::{file_codes, header, read_with, sjis, valid, write_valid};
    use super::*;

    const K: FileKind = FileKind::SubscriberChange;

    fn doc(body: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SubscriberChangeFile xmlns=\"urn:nhi-linkage:v1\">\n  <FileHeader>\n    <FileIdentifier>F-1</FileIdentifier>\n    <SenderInsurerNumber>131045</SenderInsurerNumber>\n    <CreationTime>20261121230000</CreationTime>\n    <FileSequence>1</FileSequence>\n  </FileHeader>\n{body}</SubscriberChangeFile>\n"
        )
    }

    /// A SubscriberChange record element with the valid values, `edit` applied to (name, value).
    fn rec(seq: u64, edit: impl Fn(&str, &str) -> Option<String>) -> String {
        let (vals, _) = valid(K, seq);
        let mut s = String::from("  <SubscriberChange>\n");
        for (name, v) in K.fields().iter().zip(&vals) {
            let v = edit(name, v).unwrap_or_else(|| v.clone());
            if !v.is_empty() {
                s += &format!("    <{name}>{v}</{name}>\n");
            }
        }
        s + "  </SubscriberChange>\n"
    }

    fn ok_rec(seq: u64) -> String {
        rec(seq, |_, _| None)
    }

    fn trailer(n: u64) -> String {
        format!("  <FileTrailer><RecordCount>{n}</RecordCount></FileTrailer>\n")
    }

    fn codes_of(out: &[RecordOutcome]) -> Vec<Vec<(Option<String>, String)>> {
        out.iter()
            .map(|o| match o {
                RecordOutcome::Accepted(_) => vec![],
                RecordOutcome::Rejected { faults, .. } => {
                    faults.iter().map(|d| (d.field.clone(), d.code.to_string())).collect()
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_every_kind_and_encoding() {
        for kind in FileKind::INPUTS {
            for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
                let bytes = write_valid(kind, Format::Xml, enc, 3);
                let (r, out) = read_bytes(&bytes);
                let s = r.unwrap_or_else(|e| panic!("{kind:?} {enc:?}: {:?}", e.diagnostics));
                assert_eq!((s.records, s.rejected, s.bytes), (3, 0, bytes.len() as u64));
                assert_eq!(s.header, header(kind, Format::Xml, enc));
                use sha2::Digest;
                assert_eq!(s.sha256, <[u8; 32]>::from(sha2::Sha256::digest(&bytes)));
                let cat = crate::domain::Catalog::default_catalog();
                for (i, o) in out.iter().enumerate() {
                    let (v, items) = valid(kind, i as u64 + 1);
                    let raw = RawRecord {
                        values: v.into_iter().map(Some).collect(),
                        items,
                    };
                    let want = crate::domain::records::build(kind, i as u64 + 1, &raw, &cat).unwrap();
                    match o {
                        RecordOutcome::Accepted(r) => assert_eq!(r, &want),
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn shift_jis_trail_byte_0x5d_in_text_and_cdata() {
        assert_eq!(sjis("‐"), b"\x81\x5D");
        assert_eq!(sjis("ゾ"), b"\x83\x5D");
        let addr = "東京都ゾ‐]]"; // ends in ']]' right before '<' or inside CDATA before ']]>'
        for body in [
            rec(1, |n, _| (n == "Address").then(|| addr.to_owned())),
            rec(1, |n, _| (n == "Address").then(|| format!("<![CDATA[{addr}]]>"))),
        ] {
            let text = doc(&(body + &trailer(1))).replace("UTF-8", "Shift_JIS");
            let (r, out) = read_bytes(&sjis(&text));
            r.unwrap();
            let RecordOutcome::Accepted(crate::domain::Record::SubscriberChange(c)) = &out[0] else {
                panic!()
            };
            assert_eq!(c.address.as_ref().unwrap().expose(), addr);
        }
    }

    #[test]
    fn empty_is_absent_and_entities() {
        let body = rec(1, |n, _| match n {
            "InsuredCardSymbol" => Some("<![CDATA[]]>".into()),
            "Address" => Some("A&amp;B &#x5C71;&#30000;".into()),
            _ => None,
        })
        .replace("<ResidentCode>1234567</ResidentCode>", "<ResidentCode/>");
        let (r, out) = read_bytes(doc(&(body + &trailer(1))).as_bytes());
        r.unwrap();
        let RecordOutcome::Accepted(crate::domain::Record::SubscriberChange(c)) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(c.card_symbol, None);
        assert_eq!(c.resident, None);
        assert_eq!(c.address.as_ref().unwrap().expose(), "A&B 山田");
    }

    #[test]
    fn record_level_schema_errors_reject_the_record_only() {
        let out_of_order = ok_rec(2)
            .replace("    <EffectiveDate>20260401</EffectiveDate>\n", "")
            .replace("<Address>", "<EffectiveDate>20260401</EffectiveDate><Address>");
        let repeated = ok_rec(3).replace("<Sex1>1</Sex1>", "<Sex1>1</Sex1><Sex1>2</Sex1>");
        let unknown = ok_rec(4).replace("<Sex1>1</Sex1>", "<Sex1>1</Sex1><Gender><x/>2</Gender>");
        let nested = ok_rec(5).replace("<Sex1>1</Sex1>", "<Sex1><b>1</b></Sex1>");
        let mixed = ok_rec(6).replace("<Sex1>1</Sex1>", "<Sex1>1</Sex1>stray");
        let attr = ok_rec(7).replace("<Sex1>", "<Sex1 a=\"1\">");
        let items = ok_rec(8).replace("<Sex1>1</Sex1>", "<Sex1>1</Sex1><Items/>");
        let field_errors = rec(9, |n, _| match n {
            "InsurerNumber" => Some("131046".into()),
            "Birthdate" => Some("20230229".into()),
            "Sex1" => Some(" 1".into()),
            _ => None,
        });
        let body = [
            ok_rec(1),
            out_of_order,
            repeated,
            unknown,
            nested,
            mixed,
            attr,
            items,
            field_errors,
            ok_rec(10),
        ]
        .concat();
        let (r, out) = read_bytes(doc(&(body + &trailer(10))).as_bytes());
        let s = r.unwrap_or_else(|e| panic!("{:?}", e.diagnostics));
        assert_eq!((s.records, s.rejected), (10, 8));
        let c = codes_of(&out);
        let schema = |f: Option<&str>| (f.map(str::to_owned), "E_SCHEMA".to_owned());
        assert!(c[0].is_empty() && c[9].is_empty());
        assert_eq!(c[1], vec![schema(Some("EffectiveDate"))]);
        assert_eq!(c[2], vec![schema(Some("Sex1"))]);
        assert_eq!(c[3], vec![schema(None)]);
        assert_eq!(
            c[4],
            vec![schema(Some("Sex1")), schema(Some("Sex1"))],
            "nested element; then Sex1 is missing"
        );
        assert_eq!(c[5], vec![schema(None)]);
        assert_eq!(c[6], vec![schema(None)]);
        assert_eq!(c[7], vec![schema(None)]);
        let codes: Vec<_> = c[8]
            .iter()
            .map(|(f, c)| format!("{}:{c}", f.as_deref().unwrap()))
            .collect();
        assert_eq!(
            codes,
            ["InsurerNumber:E_CHECK_DIGIT", "Sex1:E_CODE", "Birthdate:E_DATE"]
                .map(String::from)
                .to_vec()
                .into_iter()
                .filter(|x| codes.contains(x))
                .collect::<Vec<_>>()
        );
        assert_eq!(codes.len(), 3, "{codes:?}");
        let RecordOutcome::Rejected { seq, faults } = &out[8] else {
            panic!()
        };
        assert_eq!(*seq, 9);
        assert!(
            faults
                .iter()
                .all(|d| d.line == Some(d.line.unwrap()) && d.record_sequence == Some(9))
        );
        assert!(
            faults
                .iter()
                .all(|d| !d.message.contains("20230229") && !d.message.contains("131046"))
        );
    }

    fn file_err(text: &str) -> (String, Option<u64>) {
        let r = read_bytes(text.as_bytes());
        let d = &r.0.as_ref().expect_err("rejected").diagnostics[0];
        (d.code.to_string(), d.line)
    }

    #[test]
    fn file_level_rules() {
        let good = doc(&(ok_rec(1) + &trailer(1)));
        assert!(read_bytes(good.as_bytes()).0.is_ok());
        let cases: Vec<(String, &str)> = vec![
            (
                good.replace(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE x [<!ENTITY a \"b\">]>",
                ),
                "E_DTD_FORBIDDEN",
            ),
            (good.replace("<Address>", "<Address>&bogus;"), "E_XML_SYNTAX"),
            (good.replace("<Address>", "<Address>&#0;"), "E_XML_SYNTAX"),
            (good.clone() + "<SubscriberChangeFile/>", "E_XML_SYNTAX"),
            (good.clone() + "junk", "E_XML_SYNTAX"),
            (good.replace("</SubscriberChangeFile>\n", ""), "E_XML_SYNTAX"),
            (good.replace("</Sex1>", "</Sex>"), "E_XML_SYNTAX"),
            (good.replace("<Address>", "<Address>]]>"), "E_XML_SYNTAX"),
            (good.replace("<Address>", "<Address>\u{1}"), "E_XML_SYNTAX"),
            (format!("  {}", good), "E_XML_SYNTAX"),
            (good.replace(" xmlns=\"urn:nhi-linkage:v1\"", ""), "E_SCHEMA"),
            (good.replace("urn:nhi-linkage:v1", "urn:other"), "E_SCHEMA"),
            (
                good.replace("SubscriberChangeFile", "SubscriberLinkageFile"),
                "E_SCHEMA",
            ),
            (good.replace("<FileHeader>", "<FileHeader id=\"1\">"), "E_SCHEMA"),
            (good.replace("<FileSequence>1</FileSequence>", ""), "E_SCHEMA"),
            (
                good.replace("<FileSequence>1</FileSequence>", "<FileSequence>0</FileSequence>"),
                "E_FIELD_FORMAT",
            ),
            (
                good.replace("<SenderInsurerNumber>131045", "<SenderInsurerNumber>131046"),
                "E_CHECK_DIGIT",
            ),
            (good.replace("20261121230000", "20260230230000"), "E_DATE"),
            (good.replace("F-1", &"x".repeat(41)), "E_FIELD_FORMAT"),
            (good.replace("<FileTrailer>", "<Foo/><FileTrailer>"), "E_SCHEMA"),
            (good.replace("</FileTrailer>", "</FileTrailer><Foo/>"), "E_SCHEMA"),
            (good.replace("<RecordCount>1", "<RecordCount>2"), "E_TRAILER_COUNT"),
            (good.replace("<RecordCount>1", "<RecordCount>one"), "E_TRAILER_COUNT"),
            (good.replace(&trailer(1), ""), "E_TRAILER_COUNT"),
            (good[..good.find("<Sex1>").unwrap()].to_owned(), "E_TRAILER_COUNT"),
            (good.replace("<RecordSequence>1<", "<RecordSequence>x<"), "E_SEQUENCE"),
            (good.replace("<RecordSequence>1</RecordSequence>", ""), "E_SEQUENCE"),
            (doc(&(ok_rec(2) + &ok_rec(2) + &trailer(2))), "E_SEQUENCE"),
            (doc(&(ok_rec(3) + &ok_rec(2) + &trailer(2))), "E_SEQUENCE"),
            (good.replace("encoding=\"UTF-8\"", "encoding=\"EUC-JP\""), "E_ENCODING"),
            (String::new(), "E_XML_SYNTAX"),
        ];
        for (text, want) in &cases {
            assert_eq!(&file_err(text).0, want, "{text}");
        }
        // lines: the sequence error names the record's line, syntax errors theirs
        let t = doc(&(ok_rec(2) + &ok_rec(2) + &trailer(2)));
        let r = read_bytes(t.as_bytes());
        let d = &r.0.unwrap_err().diagnostics[0];
        assert_eq!(d.line, Some(31));
        assert!(d.message.contains("RecordSequence 2"), "{}", d.message);
        assert_eq!(file_err(&good.replace("</Sex1>", "</Sex>")).1, Some(23));
    }

    #[test]
    fn encoding_errors_name_offset_and_line() {
        let good = doc(&(ok_rec(1) + &trailer(1)));
        // Shift_JIS bytes in a file declared UTF-8
        let mut bytes = good.as_bytes().to_vec();
        let at = good.find("山田").unwrap();
        bytes.splice(at..at + "山田".len(), sjis("山田"));
        let e = read_bytes(&bytes).0.unwrap_err();
        let d = &e.diagnostics[0];
        assert_eq!(
            (d.code, d.byte_offset, d.line),
            (ErrorCode::Encoding, Some(at as u64), Some(21))
        );
        // BOM + Shift_JIS declaration
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(sjis(&good.replace("UTF-8", "Shift_JIS")));
        let d = &read_bytes(&bytes).0.unwrap_err().diagnostics[0];
        assert_eq!((d.code, d.byte_offset), (ErrorCode::Encoding, Some(0)));
        // BOM + UTF-8 is fine
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(good.as_bytes());
        assert!(read_bytes(&bytes).0.is_ok());
        // no declaration = UTF-8
        let nodecl = good.replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", "");
        assert!(read_bytes(nodecl.as_bytes()).0.is_ok());
    }

    #[test]
    fn limits() {
        let cat = crate::domain::Catalog::default_catalog();
        let mut limits = Limits {
            max_depth: 4,
            ..Default::default()
        };
        let opts = ReadOptions { catalog: &cat, limits };
        let deep = doc(&(ok_rec(1).replace("<Sex1>1</Sex1>", "<Sex1><a><b>1</b></a></Sex1>") + &trailer(1)));
        assert_eq!(file_codes(&read_with(deep.as_bytes(), &opts)), ["E_SCHEMA"]);
        limits = Limits {
            max_field_bytes: 30,
            ..Default::default()
        };
        let opts = ReadOptions { catalog: &cat, limits };
        let (r, out) = read_with(doc(&(ok_rec(1) + &trailer(1))).as_bytes(), &opts);
        r.unwrap();
        assert_eq!(
            codes_of(&out)[0],
            vec![(Some("Address".to_owned()), "E_FIELD_FORMAT".to_owned())]
        );
        limits = Limits {
            max_record_bytes: 600,
            ..Default::default()
        };
        let opts = ReadOptions { catalog: &cat, limits };
        let big = doc(
            &(ok_rec(1).replace("<Sex1>1</Sex1>", &format!("<Sex1>1</Sex1><!--{}-->", "x".repeat(2000))) + &trailer(1)),
        );
        assert_eq!(file_codes(&read_with(big.as_bytes(), &opts)), ["E_SCHEMA"]);
    }
}
