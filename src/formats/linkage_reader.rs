//! A strict reader of this program's own linkage output (SubscriberLinkage, FlagLinkage,
//! FukuhonLinkage; CSV or XML; UTF-8 or Shift_JIS), for `merge-shards`: it gives back exactly
//! the groups and rows [`super::linkage::StandardLayout`] wrote, so that writing them again
//! reproduces the file byte for byte (with new numbering, header and trailer).
//!
//! [`LinkageReader`] streams: it reads the header when opened, then hands out one
//! [`LinkageItem`] at a time (a SubscriberLinkage group — its `01`, `02` and `04` rows or its
//! `<Subscriber>` element —, a FlagLinkage or FukuhonLinkage row), and checks the trailer counts
//! when it reaches the end. Memory stays bounded by one group whatever the file's size: the bytes
//! are decoded chunk by chunk ([`StrictDecoder`], which also hashes them), a CSV row or an XML
//! event may not exceed [`EVENT_LIMIT`]. [`read_linkage`] is the whole-file parse it replaced,
//! kept as the reference the streaming reader is tested against.
//!
//! Anything that the writer would not have produced is an error: another layout, a missing or
//! extra row or element, a wrong column count, RecordIdentificationNumber / RecordSequence out
//! of order, trailer counts that differ, bytes invalid in the declared encoding. Error messages
//! name the row and the field, never a value (a My Number or an address cannot leak).

use super::decode::{Output, StopReason, StrictDecoder};
use super::linkage::{
    BASIC_COLUMNS as BASIC, CONTROL_COLUMNS as CONTROL, FlagRow, FukuhonRow, ProvisionControl,
    QUALIFICATION_COLUMNS as QUALIFICATION, QualificationRow, SubscriberGroup,
};
use super::{FileHeader, Format, TextEncoding, csv_reader, sniff_format, xml_reader};
use crate::domain::{
    Address, Date, DisclosureClassification, FileKind, FlagType, FukuhonOperation, IndividualNumber, InfoCode,
    InsuredBranchNumber, InsurerNumber, PersonalFamilyClassification, PostNumber, ProcessingCode, ReasonOfLoss,
    SelfInfoReason, Sex1, SubscriberKey, Timestamp, parse_bool_flag, parse_self_info_column,
};
use crate::error::FieldError;
use anyhow::{Context, Result, anyhow, bail};
use quick_xml::events::Event;
use std::io::{Chain, Cursor, Read};
use std::path::Path;

/// Bytes one CSV row or one XML event (a tag, a text) may take: far beyond anything the writer
/// produces, and what bounds the streaming reader's buffers.
pub const EVENT_LIMIT: u64 = 1 << 20;

/// Bytes read ahead to tell the format and the declared encoding.
const HEAD: usize = 4096;

/// The rows of one linkage file.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkageRows {
    Subscribers(Vec<SubscriberGroup>),
    Flags(Vec<FlagRow>),
    Fukuhon(Vec<FukuhonRow>),
}

impl LinkageRows {
    pub fn len(&self) -> usize {
        match self {
            LinkageRows::Subscribers(v) => v.len(),
            LinkageRows::Flags(v) => v.len(),
            LinkageRows::Fukuhon(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One linkage file as read.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkageFile {
    pub header: FileHeader,
    pub rows: LinkageRows,
}

/// What [`LinkageReader`] hands out: one group or one row.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkageItem {
    Subscriber(SubscriberGroup),
    Flag(FlagRow),
    Fukuhon(FukuhonRow),
}

impl LinkageItem {
    /// The insurer the group or row is of.
    pub fn insurer(&self) -> InsurerNumber {
        match self {
            LinkageItem::Subscriber(g) => g.insurer,
            LinkageItem::Flag(r) => r.insurer,
            LinkageItem::Fukuhon(r) => r.insurer,
        }
    }
    /// The subscriber the group or row is of; `None` for an insurer-wide (Scope 2) flag.
    pub fn key(&self) -> Option<SubscriberKey> {
        match self {
            LinkageItem::Subscriber(g) => Some(g.key),
            LinkageItem::Flag(r) => r.key,
            LinkageItem::Fukuhon(r) => Some(r.key),
        }
    }
}

/// One row (or XML record element) as read: values by column, empty = absent.
struct RawRow {
    /// `01`, `02`, `04` or `D`
    kind: String,
    values: Vec<String>,
    items: Vec<(String, String)>,
    /// 1-based row (CSV) or record (XML) number, for messages.
    at: u64,
}

fn field<T>(r: Result<T, FieldError>, name: &str, at: u64) -> Result<T> {
    r.map_err(|e| anyhow!("row {at}, field {name}: {}", e.message))
}

fn opt<T>(v: &str, parse: impl Fn(&str) -> Result<T, FieldError>, name: &str, at: u64) -> Result<Option<T>> {
    if v.is_empty() {
        Ok(None)
    } else {
        field(parse(v), name, at).map(Some)
    }
}

fn header_of(kind: FileKind, format: Format, encoding: TextEncoding, vals: [&str; 4]) -> Result<FileHeader> {
    let [id, sender, ctime, fseq] = vals;
    if id.is_empty() {
        bail!("header: FileIdentifier is empty");
    }
    Ok(FileHeader {
        kind,
        file_identifier: id.to_owned(),
        sender: field(InsurerNumber::parse(sender), "SenderInsurerNumber", 1)?,
        creation_time: field(Timestamp::parse(ctime), "CreationTime", 1)?,
        file_sequence: fseq
            .parse()
            .ok()
            .filter(|n: &u64| *n >= 1 && fseq.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| anyhow!("header: FileSequence is not a positive number"))?,
        format,
        encoding,
    })
}

const BOM_MESSAGE: &str = "starts with a byte order mark, which this program never writes";

fn invalid_bytes(encoding: TextEncoding) -> String {
    format!("bytes invalid in the declared encoding {}", encoding.xml_label())
}

fn decode(bytes: &[u8], encoding: TextEncoding) -> Result<String> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bail!(BOM_MESSAGE);
    }
    encoding
        .encoding_rs()
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
        .ok_or_else(|| anyhow!(invalid_bytes(encoding)))
}

/// The first CSV row: the `H` row of a linkage kind.
fn csv_header(cells: &[String], encoding: TextEncoding) -> Result<FileHeader> {
    if cells[0] != "H" {
        bail!("row 1: the first row must be the H row");
    }
    let kind = cells
        .get(1)
        .and_then(|k| FileKind::from_name(k))
        .filter(|k| !k.is_input())
        .ok_or_else(|| anyhow!("row 1: not a linkage file (SubscriberLinkage, FlagLinkage, FukuhonLinkage)"))?;
    if cells.len() != 8 || cells[2] != "1" {
        bail!("row 1: the H row must be H,<kind>,1,FileIdentifier,Sender,CreationTime,FileSequence,CharacterCode");
    }
    header_of(
        kind,
        Format::Csv,
        encoding,
        [&cells[3], &cells[4], &cells[5], &cells[6]],
    )
}

/// A CSV row after the `H` row.
enum CsvLine {
    Trailer(Vec<String>),
    Row(RawRow),
}

fn csv_line(cells: Vec<String>, at: u64, header: &FileHeader) -> Result<CsvLine> {
    match cells[0].as_str() {
        "T" => Ok(CsvLine::Trailer(cells[1..].to_vec())),
        k @ ("01" | "02" | "04" | "D") => {
            let kind = k.to_owned();
            let (values, items) = if kind == "D" && header.kind.has_items() {
                let n = FileKind::FukuhonLinkage.fields().len();
                if cells.len() < n + 1 || !(cells.len() - n - 1).is_multiple_of(2) {
                    bail!("row {at}: a FukuhonLinkage row has {n} fields then ItemCode,Value pairs");
                }
                let items = cells[n + 1..].chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
                (cells[1..=n].to_vec(), items)
            } else {
                (cells[1..].to_vec(), Vec::new())
            };
            Ok(CsvLine::Row(RawRow {
                kind,
                values,
                items,
                at,
            }))
        }
        _ => bail!("row {at}: unknown row kind"),
    }
}

/// One element as read from the XML: name, text, children (this program's output is shallow).
#[derive(Default)]
struct El {
    name: String,
    text: String,
    children: Vec<El>,
}

/// A closed child element of the XML root.
enum Child {
    Header(FileHeader),
    Trailer(Vec<String>),
    /// The rows of one `<Subscriber>` element.
    Group(Vec<RawRow>),
    /// One FlagLinkage / FukuhonLinkage record.
    Record(RawRow),
}

/// Reads a closed child of the root: the header first, then groups or records, the trailer.
/// `n` counts the groups or records (this one included).
fn root_child(
    kind: FileKind,
    encoding: TextEncoding,
    el: El,
    header_seen: bool,
    trailer_seen: bool,
    n: &mut u64,
) -> Result<Child> {
    if trailer_seen {
        bail!("an element after the trailer");
    }
    match el.name.as_str() {
        "FileHeader" if !header_seen => {
            let v = leaves(
                &el,
                &["FileIdentifier", "SenderInsurerNumber", "CreationTime", "FileSequence"],
                0,
            )?;
            Ok(Child::Header(header_of(
                kind,
                Format::Xml,
                encoding,
                [&v[0], &v[1], &v[2], &v[3]],
            )?))
        }
        _ if !header_seen => bail!("the FileHeader must come first"),
        "FileTrailer" => {
            let names: &[&str] = if kind == FileKind::SubscriberLinkage {
                &["GroupCount", "RowCount"]
            } else {
                &["RecordCount"]
            };
            Ok(Child::Trailer(leaves(&el, names, 0)?))
        }
        "Subscriber" if kind == FileKind::SubscriberLinkage => {
            *n += 1;
            if !el.text.trim().is_empty() {
                bail!("group {n}: text in Subscriber outside its rows");
            }
            let mut rows = Vec::with_capacity(el.children.len());
            for c in &el.children {
                let (k, cols) = match c.name.as_str() {
                    "BasicInfo" => ("01", BASIC),
                    "ProvisionControl" => ("02", CONTROL),
                    "Qualification" => ("04", QUALIFICATION),
                    _ => bail!("group {n}: unknown element in a Subscriber group"),
                };
                rows.push(RawRow {
                    kind: k.into(),
                    values: leaves(c, cols, *n)?,
                    items: Vec::new(),
                    at: *n,
                });
            }
            Ok(Child::Group(rows))
        }
        k if k == kind.name() && kind != FileKind::SubscriberLinkage => {
            *n += 1;
            let mut el = el;
            let items = match el.children.last().filter(|c| c.name == "Items") {
                Some(_) if kind.has_items() => {
                    let it = el.children.pop().expect("Items");
                    let mut v = Vec::new();
                    for i in &it.children {
                        if i.name != "Item" {
                            bail!("record {n}: Items holds Item elements only");
                        }
                        let p = leaves(i, &["ItemCode", "Value"], *n)?;
                        v.push((p[0].clone(), p[1].clone()));
                    }
                    if v.is_empty() {
                        bail!("record {n}: an empty Items element");
                    }
                    v
                }
                _ => Vec::new(),
            };
            Ok(Child::Record(RawRow {
                kind: "D".into(),
                values: leaves(&el, kind.fields(), *n)?,
                items,
                at: *n,
            }))
        }
        _ => bail!("unexpected element under the root"),
    }
}

/// The character an entity or character reference stands for.
fn reference(r: &[u8], resolved: impl FnOnce() -> Option<char>) -> Result<char> {
    Ok(match r {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"apos" => '\'',
        b"quot" => '"',
        _ => match resolved() {
            Some(c) => c,
            None => bail!("an entity reference this program never writes"),
        },
    })
}

const MARKUP_NEVER_WRITTEN: &str =
    "markup this program never writes (CDATA, comment, processing instruction or DOCTYPE)";

/// Reads a whole linkage file held in memory: the parse [`LinkageReader`] replaced, kept as the
/// reference it is tested against. Prefer [`LinkageReader`], whose memory does not grow with the
/// file.
pub fn read_linkage(bytes: &[u8]) -> Result<LinkageFile> {
    match sniff_format(&bytes[..bytes.len().min(64)]) {
        Some(Format::Csv) => read_csv(bytes),
        Some(Format::Xml) => read_xml(bytes),
        None => bail!("neither CSV (an H row) nor XML"),
    }
}

fn read_csv(bytes: &[u8]) -> Result<LinkageFile> {
    let encoding = csv_reader::declared_encoding(bytes).map_err(|(_, m)| anyhow!("header: {m}"))?;
    let text = decode(bytes, encoding)?;
    if !text.ends_with("\r\n") {
        bail!("the last row does not end with CRLF (truncated?)");
    }
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut header: Option<FileHeader> = None;
    let mut rows: Vec<RawRow> = Vec::new();
    let mut trailer: Option<Vec<String>> = None;
    for (i, rec) in rd.records().enumerate() {
        let at = i as u64 + 1;
        let rec = rec.map_err(|_| anyhow!("row {at}: not well-formed CSV"))?;
        let cells: Vec<String> = rec.iter().map(str::to_owned).collect();
        if trailer.is_some() {
            bail!("row {at}: a row after the trailer");
        }
        match &header {
            None => header = Some(csv_header(&cells, encoding)?),
            Some(h) => match csv_line(cells, at, h)? {
                CsvLine::Trailer(t) => trailer = Some(t),
                CsvLine::Row(r) => rows.push(r),
            },
        }
    }
    let header = header.ok_or_else(|| anyhow!("empty file"))?;
    let trailer = trailer.ok_or_else(|| anyhow!("no trailer (truncated?)"))?;
    build(header, rows, &trailer)
}

fn read_xml(bytes: &[u8]) -> Result<LinkageFile> {
    let encoding = xml_reader::declared_encoding(bytes).map_err(|(_, m)| anyhow!("XML declaration: {m}"))?;
    let text = decode(bytes, encoding)?;
    let mut xr = quick_xml::Reader::from_str(&text);
    {
        let c = xr.config_mut();
        c.check_end_names = true;
        c.expand_empty_elements = true;
        c.trim_text(false);
    }
    let mut stack: Vec<El> = Vec::new();
    let mut kind: Option<FileKind> = None;
    let mut header: Option<FileHeader> = None;
    let mut rows: Vec<RawRow> = Vec::new();
    let mut trailer: Option<Vec<String>> = None;
    let mut n = 0u64;
    let bad = |m: &str| anyhow!("{m}");
    loop {
        let ev = xr.read_event().map_err(|_| bad("not well-formed XML"))?;
        match ev {
            Event::Decl(_) => {}
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let attrs = e.attributes_raw().trim_ascii();
                if stack.is_empty() {
                    if attrs != format!("xmlns=\"{}\"", super::writer::XML_NS).as_bytes() {
                        bail!("the root element must carry exactly the format's namespace");
                    }
                    if kind.is_some() {
                        bail!("a second root element");
                    }
                    kind = Some(
                        FileKind::from_root(&name)
                            .filter(|k| !k.is_input())
                            .ok_or_else(|| bad("not a linkage file (root element)"))?,
                    );
                } else if !attrs.is_empty() {
                    bail!("attributes on an inner element");
                }
                stack.push(El { name, ..El::default() });
                if stack.len() > 6 {
                    bail!("elements nested deeper than this program writes");
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| bad("unbalanced end tag"))?;
                match stack.len() {
                    0 => {}
                    1 => {
                        let kind = kind.expect("root seen");
                        match root_child(kind, encoding, el, header.is_some(), trailer.is_some(), &mut n)? {
                            Child::Header(h) => header = Some(h),
                            Child::Trailer(t) => trailer = Some(t),
                            Child::Group(g) => rows.extend(g),
                            Child::Record(r) => rows.push(r),
                        }
                    }
                    _ => stack.last_mut().expect("parent").children.push(el),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|_| bad("text is not valid"))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => bail!("text outside the root element"),
                }
            }
            Event::GeneralRef(r) => {
                let c = reference(&r, || r.resolve_char_ref().ok().flatten())?;
                stack
                    .last_mut()
                    .ok_or_else(|| bad("a reference outside the root element"))?
                    .text
                    .push(c);
            }
            Event::Eof => break,
            Event::Empty(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {
                bail!(MARKUP_NEVER_WRITTEN)
            }
        }
    }
    if !stack.is_empty() {
        bail!("the root element is not closed (truncated?)");
    }
    let header = header.ok_or_else(|| bad("no FileHeader"))?;
    let trailer = trailer.ok_or_else(|| bad("no FileTrailer (truncated?)"))?;
    build(header, rows, &trailer)
}

/// Values of `el`'s leaf children, in `names` order (absent = empty). Elements must come in that
/// order, once each, with text only.
fn leaves(el: &El, names: &[&str], at: u64) -> Result<Vec<String>> {
    if !el.text.trim().is_empty() {
        bail!(
            "record {at}: text in {} outside its fields",
            super::checks::safe_name(el.name.as_bytes())
        );
    }
    let mut out = vec![String::new(); names.len()];
    let mut next = 0;
    for c in &el.children {
        let Some(i) = names.iter().position(|n| *n == c.name) else {
            bail!(
                "record {at}: unknown element in {}",
                super::checks::safe_name(el.name.as_bytes())
            );
        };
        if i < next {
            bail!(
                "record {at}: element out of order or repeated in {}",
                super::checks::safe_name(el.name.as_bytes())
            );
        }
        if !c.children.is_empty() {
            bail!("record {at}: a field holds elements");
        }
        if c.text.is_empty() {
            bail!("record {at}: an empty element (this program omits empty fields)");
        }
        out[i] = c.text.clone();
        next = i + 1;
    }
    Ok(out)
}

fn count(v: Option<&String>, what: &str) -> Result<u64> {
    v.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("trailer: {what} is not a number"))
}

/// SubscriberLinkage trailer: GroupCount and RowCount against what was read.
fn check_groups(trailer: &[String], groups: u64, rows: u64) -> Result<()> {
    if trailer.len() != 2 {
        bail!("trailer: GroupCount and RowCount expected");
    }
    if count(trailer.first(), "GroupCount")? != groups || count(trailer.get(1), "RowCount")? != rows {
        bail!("trailer counts differ from the groups and rows read");
    }
    Ok(())
}

fn build(header: FileHeader, rows: Vec<RawRow>, trailer: &[String]) -> Result<LinkageFile> {
    let rows = match header.kind {
        FileKind::SubscriberLinkage => {
            let (groups, n_rows) = groups(rows)?;
            check_groups(trailer, groups.len() as u64, n_rows)?;
            LinkageRows::Subscribers(groups)
        }
        FileKind::FlagLinkage => {
            let v = rows
                .iter()
                .enumerate()
                .map(|(i, r)| flag_row(r, i as u64 + 1))
                .collect::<Result<Vec<_>>>()?;
            check_records(trailer, v.len() as u64)?;
            LinkageRows::Flags(v)
        }
        FileKind::FukuhonLinkage => {
            let v = rows
                .iter()
                .enumerate()
                .map(|(i, r)| fukuhon_row(r, i as u64 + 1))
                .collect::<Result<Vec<_>>>()?;
            check_records(trailer, v.len() as u64)?;
            LinkageRows::Fukuhon(v)
        }
        k => bail!("{} is not a linkage kind", k.name()),
    };
    Ok(LinkageFile { header, rows })
}

fn check_records(trailer: &[String], n: u64) -> Result<()> {
    if trailer.len() != 1 || count(trailer.first(), "RecordCount")? != n {
        bail!("trailer RecordCount differs from the records read");
    }
    Ok(())
}

fn check_shape(r: &RawRow, kind: &str, cols: &[&str]) -> Result<()> {
    if r.kind != kind || r.values.len() != cols.len() {
        bail!("row {}: expected a {kind} row of {} columns", r.at, cols.len() + 1);
    }
    Ok(())
}

/// Splits a whole file's rows into groups (the reference parse).
fn groups(rows: Vec<RawRow>) -> Result<(Vec<SubscriberGroup>, u64)> {
    let n_rows = rows.len() as u64;
    let mut out: Vec<SubscriberGroup> = Vec::new();
    let mut it = rows.into_iter().peekable();
    while let Some(b) = it.next() {
        let ordinal = out.len() as u64 + 1;
        check_shape(&b, "01", BASIC)?;
        let c = it
            .next()
            .ok_or_else(|| anyhow!("group {ordinal}: no 02 row after the 01 row"))?;
        check_shape(&c, "02", CONTROL)?;
        let mut quals = Vec::new();
        while it.peek().is_some_and(|r| r.kind == "04") {
            let q = it.next().expect("peeked");
            check_shape(&q, "04", QUALIFICATION)?;
            quals.push(q);
        }
        out.push(parse_group(ordinal, &b, &c, &quals)?);
    }
    Ok((out, n_rows))
}

/// One group from the rows of one subscriber (streaming: a `<Subscriber>` element, or the CSV
/// rows from a `01` row to the last `04` row after it).
fn group_of(rows: Vec<RawRow>, ordinal: u64) -> Result<SubscriberGroup> {
    let mut it = rows.into_iter().peekable();
    let b = it.next().ok_or_else(|| anyhow!("group {ordinal}: no 01 row"))?;
    check_shape(&b, "01", BASIC)?;
    let c = it
        .next()
        .ok_or_else(|| anyhow!("group {ordinal}: no 02 row after the 01 row"))?;
    check_shape(&c, "02", CONTROL)?;
    let mut quals = Vec::new();
    while it.peek().is_some_and(|r| r.kind == "04") {
        let q = it.next().expect("peeked");
        check_shape(&q, "04", QUALIFICATION)?;
        quals.push(q);
    }
    if let Some(r) = it.next().filter(|_| !quals.is_empty()) {
        bail!("row {}: a {} row after the 04 rows of group {ordinal}", r.at, r.kind);
    }
    parse_group(ordinal, &b, &c, &quals)
}

/// The group of a `01`, a `02` and its `04` rows, shapes checked.
fn parse_group(ordinal: u64, b: &RawRow, c: &RawRow, quals: &[RawRow]) -> Result<SubscriberGroup> {
    if quals.is_empty() {
        bail!("group {ordinal}: no 04 row");
    }
    let id = ordinal.to_string();
    for r in std::iter::once(b).chain([c]).chain(quals) {
        if r.values[0] != id {
            bail!(
                "row {}: RecordIdentificationNumber is not the group's ordinal {ordinal}",
                r.at
            );
        }
    }
    let (v, at) = (&b.values, b.at);
    let sex = field(Sex1::parse(&v[7]), "Sex1", at)?;
    Ok(SubscriberGroup {
        processing: field(ProcessingCode::parse(&v[1]), "ProcessingCode", at)?,
        insurer: field(InsurerNumber::parse(&v[2]), "InsurerNumber", at)?,
        key: field(SubscriberKey::parse(&v[3]), "SubscriberKey", at)?,
        individual_number: opt(&v[4], IndividualNumber::parse, "IndividualNumber", at)?,
        name: v[5].clone(),
        name_kana: v[6].clone(),
        sex,
        birthdate: field(Date::parse(&v[8]), "Birthdate", at)?,
        post_number: opt(&v[9], PostNumber::parse, "PostNumber", at)?,
        address: opt(&v[10], Address::parse, "Address", at)?,
        control: ProvisionControl {
            self_info: field(
                parse_self_info_column(&c.values[1]),
                "SelfInfoProvisionProhibitedFlg",
                c.at,
            )?,
            non_disclosure: field(parse_bool_flag(&c.values[2]), "NonDisclosureFlg", c.at)?,
            auto_response: field(parse_bool_flag(&c.values[3]), "AutoResponseProhibitedFlg", c.at)?,
        },
        qualifications: quals
            .iter()
            .map(|q| {
                let (v, at) = (&q.values, q.at);
                Ok(QualificationRow {
                    insurer: field(InsurerNumber::parse(&v[1]), "InsurerNumber", at)?,
                    card_symbol: (!v[2].is_empty()).then(|| v[2].clone()),
                    card_number: v[3].clone(),
                    branch: field(InsuredBranchNumber::parse(&v[4]), "InsuredBranchNumber", at)?,
                    qualification_date: field(Date::parse(&v[5]), "QualificationDate", at)?,
                    disqualification_date: opt(&v[6], Date::parse, "DisqualificationDate", at)?,
                    reason_of_loss: opt(&v[7], ReasonOfLoss::parse, "ReasonOfLoss", at)?,
                    personal_family: field(
                        PersonalFamilyClassification::parse(&v[8]),
                        "PersonalFamilyClassification",
                        at,
                    )?,
                })
            })
            .collect::<Result<_>>()?,
    })
}

fn check_seq(r: &RawRow, kind: FileKind, ordinal: u64) -> Result<()> {
    check_shape(r, "D", kind.fields())?;
    if r.values[0] != ordinal.to_string() {
        bail!("record {}: RecordSequence is not {ordinal}", r.at);
    }
    Ok(())
}

fn flag_row(r: &RawRow, ordinal: u64) -> Result<FlagRow> {
    check_seq(r, FileKind::FlagLinkage, ordinal)?;
    let (v, at) = (&r.values, r.at);
    Ok(FlagRow {
        insurer: field(InsurerNumber::parse(&v[1]), "InsurerNumber", at)?,
        key: opt(&v[2], SubscriberKey::parse, "SubscriberKey", at)?,
        info_code: field(InfoCode::parse(&v[3]), "InfoCode", at)?,
        flag_type: field(FlagType::parse(&v[4]), "FlagType", at)?,
        set: field(parse_bool_flag(&v[5]), "FlagValue", at)?,
        reason: opt(&v[6], SelfInfoReason::parse, "ReasonCode", at)?,
        effective_time: field(Timestamp::parse(&v[7]), "EffectiveTime", at)?,
    })
}

fn fukuhon_row(r: &RawRow, ordinal: u64) -> Result<FukuhonRow> {
    check_seq(r, FileKind::FukuhonLinkage, ordinal)?;
    let (v, at) = (&r.values, r.at);
    Ok(FukuhonRow {
        operation: field(FukuhonOperation::parse(&v[1]), "Operation", at)?,
        effective_date: field(Date::parse(&v[2]), "EffectiveDate", at)?,
        insurer: field(InsurerNumber::parse(&v[3]), "InsurerNumber", at)?,
        key: field(SubscriberKey::parse(&v[4]), "SubscriberKey", at)?,
        info_code: field(InfoCode::parse(&v[5]), "InfoCode", at)?,
        disclosure: opt(&v[6], DisclosureClassification::parse, "DisclosureClassification", at)?,
        items: r.items.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Streaming

/// The input behind the decoder: the bytes read ahead to sniff, then the rest.
type Input<R> = Chain<Cursor<Vec<u8>>, R>;

/// Why a streamed read failed: the decoder's reason if it stopped the stream, else `otherwise`.
fn stream_error<R: Read>(dec: &StrictDecoder<R>, at: &str, otherwise: &str) -> anyhow::Error {
    match dec.stop_reason() {
        Some(StopReason::Encoding(e)) => {
            anyhow!("{} (byte {}, line {})", invalid_bytes(dec.encoding()), e.offset, e.line)
        }
        Some(StopReason::SizeLimit) => anyhow!("{at}: longer than this program writes"),
        None => anyhow!("{at}: {otherwise}"),
    }
}

/// Remembers the last two bytes that went through (a CSV file ends with CRLF).
struct Tail<R> {
    inner: R,
    last: [u8; 2],
    len: u64,
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match n {
            0 => {}
            1 => self.last = [self.last[1], buf[0]],
            _ => self.last = [buf[n - 2], buf[n - 1]],
        }
        self.len += n as u64;
        Ok(n)
    }
}

struct CsvSource<R: Read> {
    rd: csv::Reader<Tail<StrictDecoder<Input<R>>>>,
    rec: csv::StringRecord,
    /// Rows read (the csv crate skips blank lines, as the whole-file parse did).
    at: u64,
    trailer: Option<Vec<String>>,
    eof: bool,
    /// A row read ahead: a group ends at the first row after its `01` and `02` that is not `04`.
    ahead: Option<RawRow>,
}

impl<R: Read> CsvSource<R> {
    fn cells(&mut self) -> Result<Option<Vec<String>>> {
        match self.rd.read_record(&mut self.rec) {
            Ok(true) => {
                self.at += 1;
                self.rd.get_mut().inner.mark(); // the size limit bounds one row
                Ok(Some(self.rec.iter().map(str::to_owned).collect()))
            }
            Ok(false) => Ok(None),
            Err(_) => Err(stream_error(
                &self.rd.get_ref().inner,
                &format!("row {}", self.at + 1),
                "not well-formed CSV",
            )),
        }
    }

    /// The next `01`/`02`/`04`/`D` row; `None` once the trailer and the end are read and checked.
    fn row(&mut self, header: &FileHeader) -> Result<Option<RawRow>> {
        if let Some(r) = self.ahead.take() {
            return Ok(Some(r));
        }
        while !self.eof {
            let Some(cells) = self.cells()? else {
                self.eof = true;
                let t = self.rd.get_ref();
                if t.len < 2 || t.last != *b"\r\n" {
                    bail!("the last row does not end with CRLF (truncated?)");
                }
                if self.trailer.is_none() {
                    bail!("no trailer (truncated?)");
                }
                break;
            };
            let at = self.at;
            if self.trailer.is_some() {
                bail!("row {at}: a row after the trailer");
            }
            match csv_line(cells, at, header)? {
                CsvLine::Trailer(t) => self.trailer = Some(t),
                CsvLine::Row(r) => return Ok(Some(r)),
            }
        }
        Ok(None)
    }

    /// The rows of the next group: a row, the row after it, then the `04` rows that follow.
    fn group(&mut self, header: &FileHeader) -> Result<Option<Vec<RawRow>>> {
        let Some(first) = self.row(header)? else {
            return Ok(None);
        };
        let mut rows = vec![first];
        if let Some(r) = self.row(header)? {
            rows.push(r);
            while let Some(r) = self.row(header)? {
                if r.kind != "04" {
                    self.ahead = Some(r);
                    break;
                }
                rows.push(r);
            }
        }
        Ok(Some(rows))
    }
}

struct XmlSource<R: Read> {
    xr: quick_xml::Reader<StrictDecoder<Input<R>>>,
    buf: Vec<u8>,
    encoding: TextEncoding,
    kind: Option<FileKind>,
    /// Open elements; the root's own text (the whitespace between records) is not kept.
    stack: Vec<El>,
    header_seen: bool,
    trailer: Option<Vec<String>>,
    /// Groups or records read.
    n: u64,
    eof: bool,
}

impl<R: Read> XmlSource<R> {
    /// The next closed child of the root other than the trailer (which is kept); `None` at the
    /// end of the document, once its completeness is checked.
    fn child(&mut self) -> Result<Option<Child>> {
        while !self.eof {
            self.buf.clear();
            let ev = match self.xr.read_event_into(&mut self.buf) {
                Ok(ev) => ev,
                Err(_) => {
                    return Err(stream_error(
                        self.xr.get_ref(),
                        &format!("line {}", self.xr.get_ref().line()),
                        "not well-formed XML",
                    ));
                }
            };
            self.xr.get_mut().mark(); // the size limit bounds one event
            match ev {
                Event::Decl(_) => {}
                Event::Start(e) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let attrs = e.attributes_raw().trim_ascii();
                    if self.stack.is_empty() {
                        if attrs != format!("xmlns=\"{}\"", super::writer::XML_NS).as_bytes() {
                            bail!("the root element must carry exactly the format's namespace");
                        }
                        if self.kind.is_some() {
                            bail!("a second root element");
                        }
                        self.kind = Some(
                            FileKind::from_root(&name)
                                .filter(|k| !k.is_input())
                                .ok_or_else(|| anyhow!("not a linkage file (root element)"))?,
                        );
                    } else if !attrs.is_empty() {
                        bail!("attributes on an inner element");
                    }
                    self.stack.push(El { name, ..El::default() });
                    if self.stack.len() > 6 {
                        bail!("elements nested deeper than this program writes");
                    }
                }
                Event::End(_) => {
                    let el = self.stack.pop().ok_or_else(|| anyhow!("unbalanced end tag"))?;
                    match self.stack.len() {
                        0 => {}
                        1 => {
                            let kind = self.kind.ok_or_else(|| anyhow!("unbalanced end tag"))?;
                            let trailer_seen = self.trailer.is_some();
                            match root_child(kind, self.encoding, el, self.header_seen, trailer_seen, &mut self.n)? {
                                Child::Trailer(t) => self.trailer = Some(t),
                                Child::Header(h) => {
                                    self.header_seen = true;
                                    return Ok(Some(Child::Header(h)));
                                }
                                c => return Ok(Some(c)),
                            }
                        }
                        _ => self.stack.last_mut().expect("parent").children.push(el),
                    }
                }
                Event::Text(t) => {
                    let s = t.xml10_content().map_err(|_| anyhow!("text is not valid"))?;
                    match self.stack.len() {
                        0 if s.trim().is_empty() => {}
                        0 => bail!("text outside the root element"),
                        1 if s.trim().is_empty() => {}
                        1 => bail!("text between the records"),
                        _ => self.stack.last_mut().expect("open").text.push_str(&s),
                    }
                }
                Event::GeneralRef(r) => {
                    let c = reference(&r, || r.resolve_char_ref().ok().flatten())?;
                    match self.stack.len() {
                        0 => bail!("a reference outside the root element"),
                        1 => bail!("text between the records"),
                        _ => self.stack.last_mut().expect("open").text.push(c),
                    }
                }
                Event::Eof => {
                    self.eof = true;
                    if !self.stack.is_empty() {
                        bail!("the root element is not closed (truncated?)");
                    }
                    if !self.header_seen {
                        bail!("no FileHeader");
                    }
                    if self.trailer.is_none() {
                        bail!("no FileTrailer (truncated?)");
                    }
                }
                Event::Empty(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {
                    bail!(MARKUP_NEVER_WRITTEN)
                }
            }
        }
        Ok(None)
    }
}

enum Source<R: Read> {
    Csv(Box<CsvSource<R>>),
    Xml(Box<XmlSource<R>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Reading,
    Done,
    Failed,
}

/// Streams one linkage file: the header on opening, then one group or row at a time, the
/// trailer checked at the end. Use [`LinkageReader::next_item`] or iterate (`Result` items; the
/// iterator ends after the first error). See the module docs for what is checked.
pub struct LinkageReader<R: Read> {
    header: FileHeader,
    src: Source<R>,
    /// Groups (SubscriberLinkage) or records handed out.
    items: u64,
    /// SubscriberLinkage rows read (`01`, `02`, `04`).
    rows: u64,
    state: State,
}

impl LinkageReader<std::fs::File> {
    /// Opens a linkage file and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        LinkageReader::new(f)
    }
}

impl<R: Read> LinkageReader<R> {
    /// Reads the header from `input`.
    pub fn new(mut input: R) -> Result<Self> {
        let mut head = Vec::with_capacity(HEAD);
        (&mut input)
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .context("cannot read the file")?;
        let format = sniff_format(&head[..head.len().min(64)]);
        let encoding = match format {
            Some(Format::Csv) => csv_reader::declared_encoding(&head).map_err(|(_, m)| anyhow!("header: {m}"))?,
            Some(Format::Xml) => {
                xml_reader::declared_encoding(&head).map_err(|(_, m)| anyhow!("XML declaration: {m}"))?
            }
            None => bail!("neither CSV (an H row) nor XML"),
        };
        if head.starts_with(b"\xEF\xBB\xBF") {
            bail!(BOM_MESSAGE);
        }
        let mut dec = StrictDecoder::new(Cursor::new(head).chain(input), encoding, Output::Utf8);
        dec.set_limit(EVENT_LIMIT);
        let (header, src) = if format == Some(Format::Csv) {
            dec.count_lines(false);
            let mut c = CsvSource {
                rd: csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(Tail {
                        inner: dec,
                        last: [0; 2],
                        len: 0,
                    }),
                rec: csv::StringRecord::new(),
                at: 0,
                trailer: None,
                eof: false,
                ahead: None,
            };
            let cells = c.cells()?.ok_or_else(|| anyhow!("empty file"))?;
            (csv_header(&cells, encoding)?, Source::Csv(Box::new(c)))
        } else {
            let mut xr = quick_xml::Reader::from_reader(dec);
            {
                let c = xr.config_mut();
                c.check_end_names = true;
                c.expand_empty_elements = true;
                c.trim_text(false);
            }
            let mut x = XmlSource {
                xr,
                buf: Vec::with_capacity(4096),
                encoding,
                kind: None,
                stack: Vec::new(),
                header_seen: false,
                trailer: None,
                n: 0,
                eof: false,
            };
            match x.child()? {
                Some(Child::Header(h)) => (h, Source::Xml(Box::new(x))),
                _ => bail!("no FileHeader"),
            }
        };
        if !matches!(
            header.kind,
            FileKind::SubscriberLinkage | FileKind::FlagLinkage | FileKind::FukuhonLinkage
        ) {
            bail!("{} is not a linkage kind", header.kind.name());
        }
        Ok(LinkageReader {
            header,
            src,
            items: 0,
            rows: 0,
            state: State::Reading,
        })
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Groups (SubscriberLinkage) or records handed out so far; at the end, the file's count.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The next group or row; `Ok(None)` at the end, once the trailer counts are checked. After
    /// an error every call fails.
    pub fn next_item(&mut self) -> Result<Option<LinkageItem>> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => bail!("reading stopped at an earlier error"),
            State::Reading => {}
        }
        let r = self.step();
        match &r {
            Ok(Some(_)) => {}
            Ok(None) => self.state = State::Done,
            Err(_) => self.state = State::Failed,
        }
        r
    }

    fn step(&mut self) -> Result<Option<LinkageItem>> {
        let ordinal = self.items + 1;
        let kind = self.header.kind;
        let item = if kind == FileKind::SubscriberLinkage {
            let rows = match &mut self.src {
                Source::Csv(c) => c.group(&self.header)?,
                Source::Xml(x) => match x.child()? {
                    Some(Child::Group(rows)) => Some(rows),
                    Some(_) => bail!("unexpected element under the root"),
                    None => None,
                },
            };
            match rows {
                Some(rows) => {
                    self.rows += rows.len() as u64;
                    Some(LinkageItem::Subscriber(group_of(rows, ordinal)?))
                }
                None => {
                    check_groups(self.trailer(), self.items, self.rows)?;
                    None
                }
            }
        } else {
            let row = match &mut self.src {
                Source::Csv(c) => c.row(&self.header)?,
                Source::Xml(x) => match x.child()? {
                    Some(Child::Record(r)) => Some(r),
                    Some(_) => bail!("unexpected element under the root"),
                    None => None,
                },
            };
            match (row, kind) {
                (Some(r), FileKind::FlagLinkage) => Some(LinkageItem::Flag(flag_row(&r, ordinal)?)),
                (Some(r), _) => Some(LinkageItem::Fukuhon(fukuhon_row(&r, ordinal)?)),
                (None, _) => {
                    check_records(self.trailer(), self.items)?;
                    None
                }
            }
        };
        if item.is_some() {
            self.items += 1;
        }
        Ok(item)
    }

    fn trailer(&self) -> &[String] {
        match &self.src {
            Source::Csv(c) => c.trailer.as_deref(),
            Source::Xml(x) => x.trailer.as_deref(),
        }
        .unwrap_or_default()
    }

    /// Reads the rest into memory (only for files known to be small, and for tests).
    pub fn read_all(mut self) -> Result<LinkageFile> {
        let mut rows = match self.header.kind {
            FileKind::SubscriberLinkage => LinkageRows::Subscribers(Vec::new()),
            FileKind::FlagLinkage => LinkageRows::Flags(Vec::new()),
            _ => LinkageRows::Fukuhon(Vec::new()),
        };
        while let Some(item) = self.next_item()? {
            match (&mut rows, item) {
                (LinkageRows::Subscribers(v), LinkageItem::Subscriber(g)) => v.push(g),
                (LinkageRows::Flags(v), LinkageItem::Flag(r)) => v.push(r),
                (LinkageRows::Fukuhon(v), LinkageItem::Fukuhon(r)) => v.push(r),
                _ => bail!("a row of another kind than the file's"),
            }
        }
        Ok(LinkageFile {
            header: self.header,
            rows,
        })
    }

    /// SHA-256 and size of the bytes read, once the file is read to its end.
    pub fn finish(self) -> Result<([u8; 32], u64)> {
        if self.state != State::Done {
            bail!("the file was not read to its end");
        }
        let dec = match self.src {
            Source::Csv(c) => c.rd.into_inner().inner,
            Source::Xml(x) => x.xr.into_inner(),
        };
        Ok(dec.finish_digest()?)
    }
}

impl<R: Read> Iterator for LinkageReader<R> {
    type Item = Result<LinkageItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Failed {
            return None;
        }
        self.next_item().transpose()
    }
}

/// Reads a linkage file from disk (streamed, collected).
pub fn read_linkage_file(path: &Path) -> Result<LinkageFile> {
    LinkageReader::open(path)
        .and_then(LinkageReader::read_all)
        .with_context(|| format!("{} is not a linkage file as this program writes it", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::hex;
    use crate::formats::linkage::{LinkageLayout, StandardLayout, linkage_header};
    use crate::formats::writer::UnmappablePolicy;
    use sha2::Digest;

    fn group(key: &str, processing: ProcessingCode) -> SubscriberGroup {
        SubscriberGroup {
            processing,
            insurer: InsurerNumber::parse("39130018").unwrap(),
            key: SubscriberKey::parse(key).unwrap(),
            individual_number: Some(IndividualNumber::parse("123456789018").unwrap()),
            name: "山田　花子".into(),
            name_kana: "ﾔﾏﾀﾞ ﾊﾅｺ".into(),
            sex: Sex1::Female,
            birthdate: Date::parse("19520110").unwrap(),
            post_number: Some(PostNumber::parse("160-0023").unwrap()),
            address: Some(Address::parse("東京都新宿区西新宿\"9\",<9>&9").unwrap()),
            control: ProvisionControl {
                self_info: Some(SelfInfoReason::PersonReason),
                non_disclosure: true,
                auto_response: false,
            },
            qualifications: vec![
                QualificationRow {
                    insurer: InsurerNumber::parse("39130018").unwrap(),
                    card_symbol: None,
                    card_number: "1001".into(),
                    branch: InsuredBranchNumber::parse("00").unwrap(),
                    qualification_date: Date::parse("20270110").unwrap(),
                    disqualification_date: None,
                    reason_of_loss: None,
                    personal_family: PersonalFamilyClassification::Self_,
                },
                QualificationRow {
                    insurer: InsurerNumber::parse("39130018").unwrap(),
                    card_symbol: Some("記号".into()),
                    card_number: "1002".into(),
                    branch: InsuredBranchNumber::parse("01").unwrap(),
                    qualification_date: Date::parse("20200110").unwrap(),
                    disqualification_date: Some(Date::parse("20210110").unwrap()),
                    reason_of_loss: Some(ReasonOfLoss::Other),
                    personal_family: PersonalFamilyClassification::Family,
                },
            ],
        }
    }

    fn write(kind: FileKind, format: Format, encoding: TextEncoding, rows: &LinkageRows) -> Vec<u8> {
        let layout = StandardLayout {
            policy: UnmappablePolicy::Reject,
        };
        let h = linkage_header(
            kind,
            format!("{}-x", kind.name()),
            InsurerNumber::parse("39130018").unwrap(),
            Timestamp::parse("20261120230000").unwrap(),
            format,
            encoding,
        );
        let mut buf = Vec::new();
        match rows {
            LinkageRows::Subscribers(g) => layout.subscriber_linkage(&h, &mut g.iter().cloned(), &mut buf),
            LinkageRows::Flags(r) => layout.flag_linkage(&h, &mut r.iter().cloned(), &mut buf),
            LinkageRows::Fukuhon(r) => layout.fukuhon_linkage(&h, &mut r.iter().cloned(), &mut buf),
        }
        .unwrap();
        buf
    }

    fn samples() -> Vec<(FileKind, LinkageRows)> {
        let ins = InsurerNumber::parse("39130018").unwrap();
        let info = InfoCode::parse("TM00000000000004").unwrap();
        vec![
            (
                FileKind::SubscriberLinkage,
                LinkageRows::Subscribers(vec![
                    group("0000000000000001", ProcessingCode::FirstRegistration),
                    group("0000000000000002", ProcessingCode::Delete),
                ]),
            ),
            (
                FileKind::FlagLinkage,
                LinkageRows::Flags(vec![
                    FlagRow {
                        insurer: ins,
                        key: None,
                        info_code: info,
                        flag_type: FlagType::NonDisclosure,
                        set: true,
                        reason: None,
                        effective_time: Timestamp::parse("20261120090000").unwrap(),
                    },
                    FlagRow {
                        insurer: ins,
                        key: Some(SubscriberKey::parse("0000000000000001").unwrap()),
                        info_code: info,
                        flag_type: FlagType::SelfInfoProvisionProhibited,
                        set: false,
                        reason: Some(SelfInfoReason::ProviderReason),
                        effective_time: Timestamp::parse("20261120090000").unwrap(),
                    },
                ]),
            ),
            (
                FileKind::FukuhonLinkage,
                LinkageRows::Fukuhon(vec![
                    FukuhonRow {
                        operation: FukuhonOperation::Register,
                        effective_date: Date::parse("20261201").unwrap(),
                        insurer: ins,
                        key: SubscriberKey::parse("0000000000000001").unwrap(),
                        info_code: info,
                        disclosure: Some(DisclosureClassification::NonDisclose),
                        items: vec![
                            ("001".into(), "20261201".into()),
                            ("002".into(), "所見,\"なし\" <&>".into()),
                        ],
                    },
                    FukuhonRow {
                        operation: FukuhonOperation::Delete,
                        effective_date: Date::parse("20261201").unwrap(),
                        insurer: ins,
                        key: SubscriberKey::parse("0000000000000002").unwrap(),
                        info_code: info,
                        disclosure: None,
                        items: vec![],
                    },
                ]),
            ),
        ]
    }

    /// The streaming reader, collected.
    fn stream(bytes: &[u8]) -> Result<LinkageFile> {
        LinkageReader::new(bytes).and_then(LinkageReader::read_all)
    }

    /// Hands out a few bytes per read call (1 to 7), so characters, rows and tags are split
    /// across reads.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 7 + 1;
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn variants() -> Vec<(FileKind, Format, TextEncoding, LinkageRows)> {
        let mut out = Vec::new();
        for (kind, rows) in samples() {
            for format in [Format::Csv, Format::Xml] {
                for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
                    out.push((kind, format, encoding, rows.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn reads_back_exactly_what_the_writer_wrote() {
        for (kind, format, encoding, rows) in variants() {
            let bytes = write(kind, format, encoding, &rows);
            let back = read_linkage(&bytes).unwrap_or_else(|e| panic!("{kind:?} {format:?} {encoding:?}: {e:#}"));
            assert_eq!(back.header.kind, kind);
            assert_eq!(back.header.format, format);
            assert_eq!(back.header.encoding, encoding);
            assert_eq!(back.header.file_identifier, format!("{}-x", kind.name()));
            assert_eq!(back.rows, rows, "{kind:?} {format:?} {encoding:?}");
            assert_eq!(write(kind, format, encoding, &back.rows), bytes, "byte for byte");
            // streamed, whole or a few bytes at a time: the same, and the digest of the bytes
            assert_eq!(stream(&bytes).unwrap(), back, "{kind:?} {format:?} {encoding:?}");
            let mut r = LinkageReader::new(Trickle(&bytes, 0)).unwrap();
            assert_eq!(*r.header(), back.header);
            let mut items = Vec::new();
            while let Some(i) = r.next_item().unwrap() {
                items.push(i);
            }
            assert_eq!(r.items(), rows.len() as u64);
            assert!(r.next_item().unwrap().is_none(), "stays at the end");
            let (sha, n) = r.finish().unwrap();
            assert_eq!((hex(&sha), n), (hex(&sha2::Sha256::digest(&bytes)), bytes.len() as u64));
            let expected: Vec<LinkageItem> = match rows {
                LinkageRows::Subscribers(v) => v.into_iter().map(LinkageItem::Subscriber).collect(),
                LinkageRows::Flags(v) => v.into_iter().map(LinkageItem::Flag).collect(),
                LinkageRows::Fukuhon(v) => v.into_iter().map(LinkageItem::Fukuhon).collect(),
            };
            assert_eq!(items, expected);
        }
    }

    #[test]
    fn a_long_file_streams_across_buffer_boundaries() {
        let (_, rows) = samples().remove(0);
        let LinkageRows::Subscribers(g) = rows else {
            unreachable!()
        };
        let many: Vec<SubscriberGroup> = (1..=1500u64)
            .map(|i| {
                let mut x = g[(i % 2) as usize].clone();
                x.key = SubscriberKey::parse(&format!("{i:016}")).unwrap();
                x
            })
            .collect();
        let rows = LinkageRows::Subscribers(many);
        for format in [Format::Csv, Format::Xml] {
            for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
                let bytes = write(FileKind::SubscriberLinkage, format, encoding, &rows);
                assert!(bytes.len() > 4 * crate::formats::decode::CHUNK);
                let back = stream(&bytes).unwrap_or_else(|e| panic!("{format:?} {encoding:?}: {e:#}"));
                assert_eq!(back.rows, rows, "{format:?} {encoding:?}");
                assert_eq!(back, read_linkage(&bytes).unwrap());
            }
        }
    }

    /// Every prefix of every sample file: the streaming reader accepts exactly what the whole-file
    /// parse accepts, with the same result, and says why it refuses without echoing a value.
    #[test]
    fn truncated_anywhere_the_streaming_reader_agrees_with_the_whole_file_parse() {
        for (kind, format, encoding, rows) in variants() {
            let bytes = write(kind, format, encoding, &rows);
            for cut in 0..bytes.len() {
                let part = &bytes[..cut];
                let what = format!("{kind:?} {format:?} {encoding:?} cut at {cut}");
                match (read_linkage(part), stream(part)) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
                    (Err(_), Err(e)) => {
                        let e = format!("{e:#}");
                        assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{what}: {e}");
                    }
                    (a, b) => panic!("{what}: whole-file {:?}, streamed {:?}", a.err(), b.err()),
                }
            }
        }
    }

    /// Every byte of every sample file changed in turn: the streaming reader gives the same
    /// result as the whole-file parse, or refuses where that parse let through what the writer
    /// never writes (text between records, a group split over two elements).
    #[test]
    fn a_changed_byte_anywhere_the_streaming_reader_agrees_with_the_whole_file_parse() {
        let stricter = [
            "text between the records",
            "text in Subscriber",
            "no 01 row",
            "no 02 row",
        ];
        for (kind, format, encoding, rows) in variants() {
            let bytes = write(kind, format, encoding, &rows);
            for at in 0..bytes.len() {
                for b in [b'x', b'1', b' '] {
                    if bytes[at] == b {
                        continue;
                    }
                    let mut bad = bytes.clone();
                    bad[at] = b;
                    let what = format!("{kind:?} {format:?} {encoding:?} byte {at} → {:?}", b as char);
                    match (read_linkage(&bad), stream(&bad)) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
                        (Err(_), Err(e)) => {
                            let e = format!("{e:#}");
                            assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{what}: {e}");
                        }
                        (Ok(_), Err(e)) if stricter.iter().any(|s| format!("{e:#}").contains(s)) => {}
                        (a, b) => panic!("{what}: whole-file {:?}, streamed {:?}", a.err(), b.err()),
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_what_the_writer_never_writes_without_echoing_values() {
        let (kind, rows) = samples().remove(0);
        let good = String::from_utf8(write(kind, Format::Csv, TextEncoding::Utf8, &rows)).unwrap();
        for (bad, why) in [
            (good.replace("T,2,8", "T,2,7"), "trailer"),
            (good.replace("\r\nT,2,8\r\n", "\r\n"), "trailer"),
            (good.replacen("02,1,", "02,2,", 1), "RecordIdentificationNumber"),
            (good.replace("123456789018", "123456789019"), "IndividualNumber"),
            (
                good.replace("H,SubscriberLinkage", "H,SubscriberChange"),
                "not a linkage file",
            ),
            (good.replace("T,2,8\r\n", "T,2,8\r\n01,3\r\n"), "after the trailer"),
            (good.replace("T,2,8\r\n", "T,2,8"), "CRLF"),
            (good.replacen("\r\n02,1,", "\r\n04,1,", 1), "02 row"),
            (good.replacen("\r\n04,1,", "\r\n02,1,", 1), "04 row"),
        ] {
            for e in [
                read_linkage(bad.as_bytes()).unwrap_err(),
                stream(bad.as_bytes()).unwrap_err(),
            ] {
                let e = format!("{e:#}");
                assert!(e.contains(why), "{why}: {e}");
                assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{e}");
            }
        }
        let xml = String::from_utf8(write(kind, Format::Xml, TextEncoding::Utf8, &rows)).unwrap();
        for bad in [
            xml.replace("<GroupCount>2</GroupCount>", "<GroupCount>3</GroupCount>"),
            xml.replace("</SubscriberLinkageFile>\n", ""),
            xml.replace("<Name>", "<Nom>").replace("</Name>", "</Nom>"),
            xml.replacen("<Sex1>2</Sex1>", "<Sex1>2</Sex1><Sex1>2</Sex1>", 1),
        ] {
            assert!(read_linkage(bad.as_bytes()).is_err());
            let e = format!("{:#}", stream(bad.as_bytes()).unwrap_err());
            assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{e}");
        }
        // stricter than the whole-file parse, which let these through: one group per element,
        // nothing but whitespace between the records
        let first_group_end = xml.find("</Subscriber>").unwrap();
        for (bad, why) in [
            (
                xml.replacen("<Subscriber>", "<Subscriber></Subscriber><Subscriber>", 1),
                "no 01 row",
            ),
            (
                xml.replacen(
                    "<ProvisionControl>",
                    "</Subscriber>\n  <Subscriber><ProvisionControl>",
                    1,
                ),
                "no 02 row",
            ),
            (
                format!("{}x{}", &xml[..first_group_end], &xml[first_group_end..]),
                "text in Subscriber",
            ),
            (xml.replacen("<Subscriber>", "x<Subscriber>", 1), "between the records"),
        ] {
            let e = format!("{:#}", stream(bad.as_bytes()).unwrap_err());
            assert!(e.contains(why), "{why}: {e}");
        }
        let sjis = write(kind, Format::Csv, TextEncoding::ShiftJis, &rows);
        let mut broken = sjis.clone();
        let at = broken.iter().position(|b| *b >= 0x81).unwrap();
        broken[at] = 0xA0;
        for e in [read_linkage(&broken).unwrap_err(), stream(&broken).unwrap_err()] {
            let e = format!("{e:#}");
            assert!(e.contains("encoding"), "{e}");
        }
    }

    #[test]
    fn a_row_or_event_beyond_the_limit_is_refused_not_buffered() {
        let (kind, rows) = samples().remove(0);
        let long = "ｱ".repeat(EVENT_LIMIT as usize);
        for format in [Format::Csv, Format::Xml] {
            let good = String::from_utf8(write(kind, format, TextEncoding::Utf8, &rows)).unwrap();
            let bad = good.replacen("ﾔﾏﾀﾞ ﾊﾅｺ", &long, 1);
            let e = format!("{:#}", stream(bad.as_bytes()).unwrap_err());
            assert!(e.contains("longer than this program writes"), "{format:?}: {e}");
        }
    }

    #[test]
    fn the_iterator_ends_after_an_error() {
        let (kind, rows) = samples().remove(0);
        let good = String::from_utf8(write(kind, Format::Csv, TextEncoding::Utf8, &rows)).unwrap();
        let bad = good.replace("T,2,8", "T,2,7");
        let items: Vec<Result<LinkageItem>> = LinkageReader::new(bad.as_bytes()).unwrap().collect();
        assert_eq!(items.len(), 3, "two groups, then the trailer error");
        assert!(items[..2].iter().all(Result::is_ok));
        assert!(format!("{:#}", items[2].as_ref().unwrap_err()).contains("trailer"));
        let mut r = LinkageReader::new(bad.as_bytes()).unwrap();
        while r.next_item().is_ok_and(|i| i.is_some()) {}
        assert!(r.next_item().is_err(), "a failed reader keeps failing");
        assert!(r.finish().is_err());
    }
}
