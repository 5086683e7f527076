//! The raw reader's state machine for XML: the root element, a `<FileHeader>`, `<Subscriber>`
//! groups of `<BasicInfo>`, `<ProvisionControl>` and `<Qualification>` (or FlagLinkage /
//! FukuhonLinkage record elements), a `<FileTrailer>`.
//!
//! One event pump ([`XmlRaw::event`]: the decoder, quick-xml, the size limit per event) feeds two
//! grammars. Under [`Strictness::Own`] each child of the root is gathered whole (at most six
//! levels deep) and judged when it closes: fields in the writer's order, once each, nothing but
//! the namespace as an attribute, no comment, CDATA or processing instruction. Under
//! [`Strictness::Snapshot`] each start tag is judged as it comes: fields in any order (an
//! unknown one is the group's fault), comments and processing instructions skipped, CDATA taken
//! as text, a DOCTYPE refused.

use super::raw::{Input, RawError, RawGroup, RawHeader, RawPiece, RawRow, RowKind, Strictness, stream_error};
use crate::domain::FileKind;
use crate::error::ErrorCode;
use crate::formats::checks::safe_name;
use crate::formats::decode::{StopReason, StrictDecoder};
use crate::formats::writer::XML_NS;
use quick_xml::events::Event;
use std::collections::HashMap;

pub(super) const MARKUP_NEVER_WRITTEN: &str =
    "markup this program never writes (CDATA, comment, processing instruction or DOCTYPE)";

const HEADER_FIELDS: [&str; 4] = ["FileIdentifier", "SenderInsurerNumber", "CreationTime", "FileSequence"];

/// One XML event, owned, as both grammars need it.
enum Ev {
    Decl,
    Start {
        name: String,
        attrs: Vec<u8>,
    },
    End,
    /// `None`: not valid text.
    Text(Option<String>),
    Ref {
        name: Vec<u8>,
        char_ref: bool,
        resolved: Option<char>,
    },
    CData(Vec<u8>),
    /// A comment or a processing instruction.
    Aside,
    DocType,
    Empty,
    Eof,
}

/// One element as gathered (this program's output is shallow).
#[derive(Default)]
pub(super) struct El {
    pub name: String,
    pub text: String,
    pub children: Vec<El>,
}

/// Where a snapshot's reading stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum At {
    Prolog,
    Root,
    Header,
    Subscriber,
    Row(RowKind),
    Trailer,
    Epilog,
}

pub(super) struct XmlRaw<R: std::io::Read> {
    xr: quick_xml::Reader<StrictDecoder<Input<R>>>,
    buf: Vec<u8>,
    strictness: Strictness,
    eof: bool,
    header_seen: bool,
    trailer_seen: bool,
    // own output
    kind: Option<FileKind>,
    /// Open elements; the root's own text (the whitespace between records) is not kept.
    stack: Vec<El>,
    /// The trailer's values, handed out once the end is checked.
    trailer: Option<Vec<String>>,
    /// Groups or records read.
    n: u64,
    // a snapshot
    at: At,
    /// The field element open under the header, the trailer or a row.
    leaf: Option<String>,
    text: String,
    header: HashMap<String, String>,
    group: Option<RawGroup>,
    row: Vec<(String, String)>,
    trailer_values: HashMap<String, String>,
    /// Row elements read.
    rows: u64,
}

impl<R: std::io::Read> XmlRaw<R> {
    pub(super) fn new(dec: StrictDecoder<Input<R>>, strictness: Strictness) -> Self {
        let mut xr = quick_xml::Reader::from_reader(dec);
        {
            let c = xr.config_mut();
            if strictness == Strictness::Snapshot {
                c.check_comments = true;
                c.allow_unmatched_ends = false;
            }
            c.check_end_names = true;
            c.expand_empty_elements = true;
            c.trim_text(false);
        }
        XmlRaw {
            xr,
            buf: Vec::with_capacity(4096),
            strictness,
            eof: false,
            header_seen: false,
            trailer_seen: false,
            kind: None,
            stack: Vec::new(),
            trailer: None,
            n: 0,
            at: At::Prolog,
            leaf: None,
            text: String::new(),
            header: HashMap::new(),
            group: None,
            row: Vec::new(),
            trailer_values: HashMap::new(),
            rows: 0,
        }
    }

    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    pub(super) fn into_decoder(self) -> StrictDecoder<Input<R>> {
        self.xr.into_inner()
    }

    pub(super) fn next_piece(&mut self) -> Result<Option<RawPiece>, RawError> {
        match self.strictness {
            Strictness::Own => self.own_piece(),
            Strictness::Snapshot => self.snapshot_piece(),
        }
    }

    fn line(&self) -> u64 {
        self.xr.get_ref().line()
    }

    /// The next event, owned; the size limit bounds one event.
    fn event(&mut self) -> Result<Ev, RawError> {
        self.buf.clear();
        let ev = match self.xr.read_event_into(&mut self.buf) {
            Ok(ev) => ev,
            Err(e) => return Err(self.read_error(&e)),
        };
        let ev = match ev {
            Event::Decl(_) => Ev::Decl,
            Event::Start(e) => Ev::Start {
                name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                attrs: e.attributes_raw().trim_ascii().to_vec(),
            },
            Event::End(_) => Ev::End,
            Event::Text(t) => Ev::Text(t.xml10_content().ok().map(|s| s.into_owned())),
            Event::GeneralRef(r) => Ev::Ref {
                name: r.to_vec(),
                char_ref: r.is_char_ref(),
                resolved: r.resolve_char_ref().ok().flatten(),
            },
            Event::CData(t) => Ev::CData(t.to_vec()),
            Event::Comment(_) | Event::PI(_) => Ev::Aside,
            Event::DocType(_) => Ev::DocType,
            Event::Empty(_) => Ev::Empty,
            Event::Eof => Ev::Eof,
        };
        self.xr.get_mut().mark();
        Ok(ev)
    }

    fn read_error(&self, e: &quick_xml::Error) -> RawError {
        let dec = self.xr.get_ref();
        match self.strictness {
            Strictness::Own => stream_error(dec, &format!("line {}", dec.line()), "not well-formed XML"),
            Strictness::Snapshot => match (e, dec.stop_reason()) {
                (quick_xml::Error::Io(_), Some(StopReason::Encoding(d))) => RawError {
                    code: ErrorCode::Encoding,
                    message: d.message.clone(),
                    line: Some(d.line),
                    offset: Some(d.offset),
                },
                (quick_xml::Error::Syntax(quick_xml::errors::SyntaxError::UnclosedDoctype), _) => {
                    RawError::new(ErrorCode::DtdForbidden, "a DOCTYPE (DTD) is not allowed")
                }
                _ => RawError::new(ErrorCode::XmlSyntax, format!("not well-formed XML: {e}")).line(dec.line()),
            },
        }
    }
}

/// The character an entity or character reference stands for, in this program's own output.
pub(super) fn own_reference(name: &[u8], resolved: Option<char>) -> Result<char, RawError> {
    Ok(match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"apos" => '\'',
        b"quot" => '"',
        _ => match resolved {
            Some(c) => c,
            None => return Err(RawError::own("an entity reference this program never writes")),
        },
    })
}

// -- this program's own output --------------------------------------------------------------------

impl<R: std::io::Read> XmlRaw<R> {
    fn own_piece(&mut self) -> Result<Option<RawPiece>, RawError> {
        match self.own_child()? {
            Some(p) => Ok(Some(p)),
            None => Ok(self.trailer.take().map(|values| RawPiece::Trailer { values, line: 0 })),
        }
    }

    /// The next closed child of the root other than the trailer (which is kept); `None` at the
    /// end of the document, once its completeness is checked.
    fn own_child(&mut self) -> Result<Option<RawPiece>, RawError> {
        while !self.eof {
            match self.event()? {
                Ev::Decl => {}
                Ev::Start { name, attrs } => self.own_start(name, &attrs)?,
                Ev::End => {
                    let el = self.stack.pop().ok_or_else(|| RawError::own("unbalanced end tag"))?;
                    match self.stack.len() {
                        0 => {}
                        1 => {
                            let kind = self.kind.ok_or_else(|| RawError::own("unbalanced end tag"))?;
                            let trailer_seen = self.trailer.is_some();
                            match root_child(kind, el, self.header_seen, trailer_seen, &mut self.n)? {
                                RawPiece::Trailer { values, .. } => self.trailer = Some(values),
                                p => {
                                    self.header_seen = true;
                                    return Ok(Some(p));
                                }
                            }
                        }
                        _ => self.stack.last_mut().expect("parent").children.push(el),
                    }
                }
                Ev::Text(t) => {
                    let s = t.ok_or_else(|| RawError::own("text is not valid"))?;
                    match self.stack.len() {
                        0 if s.trim().is_empty() => {}
                        0 => return Err(RawError::own("text outside the root element")),
                        1 if s.trim().is_empty() => {}
                        1 => return Err(RawError::own("text between the records")),
                        _ => self.stack.last_mut().expect("open").text.push_str(&s),
                    }
                }
                Ev::Ref { name, resolved, .. } => {
                    let c = own_reference(&name, resolved)?;
                    match self.stack.len() {
                        0 => return Err(RawError::own("a reference outside the root element")),
                        1 => return Err(RawError::own("text between the records")),
                        _ => self.stack.last_mut().expect("open").text.push(c),
                    }
                }
                Ev::Eof => {
                    self.eof = true;
                    if !self.stack.is_empty() {
                        return Err(RawError::own("the root element is not closed (truncated?)"));
                    }
                    if !self.header_seen {
                        return Err(RawError::own("no FileHeader"));
                    }
                    if self.trailer.is_none() {
                        return Err(RawError::own("no FileTrailer (truncated?)"));
                    }
                }
                Ev::Empty | Ev::CData(_) | Ev::Aside | Ev::DocType => return Err(RawError::own(MARKUP_NEVER_WRITTEN)),
            }
        }
        Ok(None)
    }

    fn own_start(&mut self, name: String, attrs: &[u8]) -> Result<(), RawError> {
        if self.stack.is_empty() {
            if attrs != format!("xmlns=\"{XML_NS}\"").as_bytes() {
                return Err(RawError::own(
                    "the root element must carry exactly the format's namespace",
                ));
            }
            if self.kind.is_some() {
                return Err(RawError::own("a second root element"));
            }
            self.kind = Some(
                FileKind::from_root(&name)
                    .filter(|k| !k.is_input())
                    .ok_or_else(|| RawError::own("not a linkage file (root element)"))?,
            );
        } else if !attrs.is_empty() {
            return Err(RawError::own("attributes on an inner element"));
        }
        self.stack.push(El { name, ..El::default() });
        if self.stack.len() > 6 {
            return Err(RawError::own("elements nested deeper than this program writes"));
        }
        Ok(())
    }
}

/// Reads a closed child of the root: the header first, then groups or records, the trailer.
/// `n` counts the groups or records (this one included).
pub(super) fn root_child(
    kind: FileKind,
    el: El,
    header_seen: bool,
    trailer_seen: bool,
    n: &mut u64,
) -> Result<RawPiece, RawError> {
    if trailer_seen {
        return Err(RawError::own("an element after the trailer"));
    }
    match el.name.as_str() {
        "FileHeader" if !header_seen => {
            let v = leaves(&el, &HEADER_FIELDS, 0)?;
            Ok(RawPiece::Header(RawHeader {
                kind,
                values: [0, 1, 2, 3].map(|i| Some(v[i].clone())),
                line: 0,
            }))
        }
        _ if !header_seen => Err(RawError::own("the FileHeader must come first")),
        "FileTrailer" => {
            let names: &[&str] = if kind == FileKind::SubscriberLinkage {
                &["GroupCount", "RowCount"]
            } else {
                &["RecordCount"]
            };
            Ok(RawPiece::Trailer {
                values: leaves(&el, names, 0)?,
                line: 0,
            })
        }
        "Subscriber" if kind == FileKind::SubscriberLinkage => {
            *n += 1;
            own_group(&el, *n).map(RawPiece::Group)
        }
        k if k == kind.name() && kind != FileKind::SubscriberLinkage => {
            *n += 1;
            own_record(el, kind, *n).map(RawPiece::Record)
        }
        _ => Err(RawError::own("unexpected element under the root")),
    }
}

/// The rows of one `<Subscriber>` element, the `n`th.
fn own_group(el: &El, n: u64) -> Result<RawGroup, RawError> {
    if !el.text.trim().is_empty() {
        return Err(RawError::own(format!("group {n}: text in Subscriber outside its rows")));
    }
    let mut rows = Vec::with_capacity(el.children.len());
    for c in &el.children {
        let kind = match c.name.as_str() {
            "BasicInfo" => RowKind::Basic,
            "ProvisionControl" => RowKind::Control,
            "Qualification" => RowKind::Qualification,
            _ => {
                return Err(RawError::own(format!(
                    "group {n}: unknown element in a Subscriber group"
                )));
            }
        };
        rows.push(RawRow {
            kind,
            values: leaves(c, kind.columns(FileKind::SubscriberLinkage), n)?,
            items: Vec::new(),
            at: n,
        });
    }
    Ok(RawGroup {
        rows,
        ..RawGroup::default()
    })
}

/// One FlagLinkage / FukuhonLinkage record element, the `n`th.
fn own_record(mut el: El, kind: FileKind, n: u64) -> Result<RawRow, RawError> {
    let items = match el.children.last().filter(|c| c.name == "Items") {
        Some(_) if kind.has_items() => {
            let it = el.children.pop().expect("Items");
            let mut v = Vec::new();
            for i in &it.children {
                if i.name != "Item" {
                    return Err(RawError::own(format!("record {n}: Items holds Item elements only")));
                }
                let p = leaves(i, &["ItemCode", "Value"], n)?;
                v.push((p[0].clone(), p[1].clone()));
            }
            if v.is_empty() {
                return Err(RawError::own(format!("record {n}: an empty Items element")));
            }
            v
        }
        _ => Vec::new(),
    };
    Ok(RawRow {
        kind: RowKind::Record,
        values: leaves(&el, kind.fields(), n)?,
        items,
        at: n,
    })
}

/// Values of `el`'s leaf children, in `names` order (absent = empty). Elements must come in that
/// order, once each, with text only.
pub(super) fn leaves(el: &El, names: &[&str], at: u64) -> Result<Vec<String>, RawError> {
    if !el.text.trim().is_empty() {
        return Err(RawError::own(format!(
            "record {at}: text in {} outside its fields",
            safe_name(el.name.as_bytes())
        )));
    }
    let mut out = vec![String::new(); names.len()];
    let mut next = 0;
    for c in &el.children {
        let Some(i) = names.iter().position(|n| *n == c.name) else {
            return Err(RawError::own(format!(
                "record {at}: unknown element in {}",
                safe_name(el.name.as_bytes())
            )));
        };
        if i < next {
            return Err(RawError::own(format!(
                "record {at}: element out of order or repeated in {}",
                safe_name(el.name.as_bytes())
            )));
        }
        if !c.children.is_empty() {
            return Err(RawError::own(format!("record {at}: a field holds elements")));
        }
        if c.text.is_empty() {
            return Err(RawError::own(format!(
                "record {at}: an empty element (this program omits empty fields)"
            )));
        }
        out[i] = c.text.clone();
        next = i + 1;
    }
    Ok(out)
}

// -- a snapshot ----------------------------------------------------------------------------------

impl<R: std::io::Read> XmlRaw<R> {
    fn snapshot_piece(&mut self) -> Result<Option<RawPiece>, RawError> {
        loop {
            let fail = |code: ErrorCode, m: &str, line: u64| Err(RawError::new(code, m).line(line));
            match self.event()? {
                Ev::DocType => return fail(ErrorCode::DtdForbidden, "a DOCTYPE (DTD) is not allowed", self.line()),
                Ev::Decl | Ev::Aside => {}
                Ev::Start { name, .. } => self.snapshot_start(name)?,
                Ev::End => {
                    if let Some(p) = self.snapshot_end() {
                        return Ok(Some(p));
                    }
                }
                Ev::Text(t) => {
                    let Some(s) = t else {
                        return fail(ErrorCode::Encoding, "text is not valid", self.line());
                    };
                    if self.leaf.is_some() {
                        self.text.push_str(&s);
                    } else if !s.trim().is_empty() {
                        return fail(ErrorCode::Schema, "text where only elements go", self.line());
                    }
                }
                Ev::CData(t) => {
                    if self.leaf.is_none() {
                        return fail(ErrorCode::Schema, "CDATA where only elements go", self.line());
                    }
                    self.text.push_str(&String::from_utf8_lossy(&t));
                }
                Ev::Ref {
                    name,
                    char_ref,
                    resolved,
                } => {
                    let ch = match name.as_slice() {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"apos" => '\'',
                        b"quot" => '"',
                        _ if char_ref => match resolved {
                            Some(ch) => ch,
                            None => return fail(ErrorCode::XmlSyntax, "invalid character reference", self.line()),
                        },
                        _ => return fail(ErrorCode::XmlSyntax, "unknown entity reference", self.line()),
                    };
                    if self.leaf.is_none() {
                        return fail(ErrorCode::Schema, "text where only elements go", self.line());
                    }
                    self.text.push(ch);
                }
                Ev::Empty => unreachable!("expand_empty_elements"),
                Ev::Eof => return self.snapshot_eof().map(|()| None),
            }
        }
    }

    /// A start tag, judged where it stands.
    fn snapshot_start(&mut self, name: String) -> Result<(), RawError> {
        let line = self.line();
        let fail = |code: ErrorCode, m: String| Err(RawError::new(code, m).line(line));
        if self.leaf.is_some() {
            return fail(ErrorCode::Schema, "a field holds text, not elements".into());
        }
        match (self.at, name.as_str()) {
            (At::Prolog, "SubscriberLinkageFile") => self.at = At::Root,
            (At::Prolog, _) => {
                return fail(
                    ErrorCode::Schema,
                    "the root element must be SubscriberLinkageFile".into(),
                );
            }
            (At::Root, "FileHeader") if !self.header_seen => self.at = At::Header,
            (At::Root, "Subscriber") if self.header_seen && !self.trailer_seen => {
                self.at = At::Subscriber;
                self.group = Some(RawGroup {
                    line,
                    ..RawGroup::default()
                });
            }
            (At::Root, "FileTrailer") if self.header_seen && !self.trailer_seen => self.at = At::Trailer,
            (At::Subscriber, k @ ("BasicInfo" | "ProvisionControl" | "Qualification")) => {
                self.at = At::Row(match k {
                    "BasicInfo" => RowKind::Basic,
                    "ProvisionControl" => RowKind::Control,
                    _ => RowKind::Qualification,
                });
                self.row.clear();
                self.rows += 1;
            }
            (At::Row(k), f) => {
                if !k.columns(FileKind::SubscriberLinkage).contains(&f) {
                    if let Some(g) = self.group.as_mut() {
                        g.faults.push("unknown element in a Subscriber group".into());
                    }
                }
                self.leaf = Some(name);
                self.text.clear();
            }
            (At::Header | At::Trailer, _) => {
                self.leaf = Some(name);
                self.text.clear();
            }
            (At::Epilog, _) => return fail(ErrorCode::XmlSyntax, "a second root element".into()),
            _ => {
                return fail(
                    ErrorCode::Schema,
                    format!("unexpected element {}", safe_name(name.as_bytes())),
                );
            }
        }
        Ok(())
    }

    /// An end tag: a field's value kept, or a header, group or trailer handed out.
    fn snapshot_end(&mut self) -> Option<RawPiece> {
        if let Some(f) = self.leaf.take() {
            let v = std::mem::take(&mut self.text);
            match self.at {
                At::Header => {
                    self.header.insert(f, v);
                }
                At::Trailer => {
                    self.trailer_values.insert(f, v);
                }
                At::Row(_) => self.row.push((f, v)),
                _ => {}
            }
            return None;
        }
        let line = self.line();
        match self.at {
            At::Header => {
                self.at = At::Root;
                self.header_seen = true;
                let values = HEADER_FIELDS.map(|k| self.header.get(k).cloned());
                Some(RawPiece::Header(RawHeader {
                    kind: FileKind::SubscriberLinkage,
                    values,
                    line,
                }))
            }
            At::Row(k) => {
                let cols = k.columns(FileKind::SubscriberLinkage);
                let mut values = vec![String::new(); cols.len()];
                for (f, v) in self.row.drain(..) {
                    if let Some(i) = cols.iter().position(|c| *c == f) {
                        values[i] = v;
                    }
                }
                if let Some(g) = self.group.as_mut() {
                    g.rows.push(RawRow {
                        kind: k,
                        values,
                        items: Vec::new(),
                        at: line,
                    });
                }
                self.at = At::Subscriber;
                None
            }
            At::Subscriber => {
                self.at = At::Root;
                self.group.take().map(RawPiece::Group)
            }
            At::Trailer => {
                self.at = At::Root;
                self.trailer_seen = true;
                let values = ["GroupCount", "RowCount"]
                    .map(|k| self.trailer_values.get(k).cloned().unwrap_or_default())
                    .to_vec();
                Some(RawPiece::Trailer { values, line })
            }
            At::Root => {
                self.at = At::Epilog;
                None
            }
            _ => None,
        }
    }

    /// The end of the document: the root element closed after its trailer.
    fn snapshot_eof(&self) -> Result<(), RawError> {
        let fail = |code: ErrorCode, m: &str| Err(RawError::new(code, m).line(self.line()));
        if self.at != At::Epilog {
            if self.trailer_seen || self.at == At::Prolog {
                return fail(
                    ErrorCode::XmlSyntax,
                    "the document ends before its root element is closed",
                );
            }
            return fail(
                ErrorCode::TrailerCount,
                "the file ends before its FileTrailer: it is truncated",
            );
        }
        if !self.trailer_seen {
            return fail(ErrorCode::TrailerCount, "FileTrailer is missing");
        }
        Ok(())
    }
}
