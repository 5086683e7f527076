//! The XML reader's state machine: one [`Parser`] over quick-xml's raw events, its phase
//! (prolog, FileHeader, records, FileTrailer, epilog) and the record being collected. It is long
//! because every rule of the table in [`super`] is a transition here, and a rule reads best next
//! to the event it judges; the entry points (whole file, piece, encoding) are in [`super`].

use super::{FileErr, Phase, PieceState, unclear};
use crate::domain::{FileKind, RawRecord};
use crate::error::{Diagnostic, ErrorCode};
use crate::formats::checks::{self, StructFault, is_xml_char};
use crate::formats::decode::{StopReason, StrictDecoder};
use crate::formats::piece::LIMIT_MARGIN;
use crate::formats::writer::XML_NS;
use crate::formats::{FileHeader, Format, ReadOptions, RecordOutcome, TextEncoding};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use std::io::Read;

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

/// The state machine over one file's (or piece's) events.
pub(super) struct Parser<'a, R: Read> {
    pub(super) xr: Reader<StrictDecoder<R>>,
    encoding: TextEncoding,
    display: &'a str,
    opts: &'a ReadOptions<'a>,
    pub(super) depth: usize,
    pub(super) phase: Phase,
    pub(super) kind: FileKind,
    pub(super) header: Option<FileHeader>,
    pub(super) records: u64,
    pub(super) rejected: u64,
    pub(super) prev_seq: u64,
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
    pub(super) trailer_count: Option<u64>,
    // pieces
    pub(super) piece: Option<PieceState>,
    pub(super) first_seq: Option<u64>,
}

impl<'a, R: Read> Parser<'a, R> {
    pub(super) fn new(
        dec: StrictDecoder<R>,
        encoding: TextEncoding,
        display: &'a str,
        opts: &'a ReadOptions<'a>,
    ) -> Self {
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

    pub(super) fn run(&mut self, on_record: &mut dyn FnMut(RecordOutcome)) -> Result<(), FileErr> {
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
