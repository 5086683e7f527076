//! Reader of a SubscriberLinkage snapshot (what the intermediate server holds, as exported), CSV
//! or XML, UTF-8 or Shift_JIS, streaming: one group (`01`, `02`, `04`…) at a time.
//!
//! | problem | code | level |
//! |---|---|---|
//! | bytes invalid in the declared encoding | `E_ENCODING` | file |
//! | XML not well-formed / a DOCTYPE | `E_XML_SYNTAX` / `E_DTD_FORBIDDEN` | file |
//! | not a SubscriberLinkage file, H row or FileHeader malformed, unknown row kind or element outside a group, rows after the trailer | `E_SCHEMA` (header values: their own codes) | file |
//! | trailer missing (truncated) or GroupCount/RowCount ≠ what was read | `E_TRAILER_COUNT` | file |
//! | a group without exactly one `01` then one `02` then `04` rows, wrong column count, unknown element in a group | `E_SCHEMA` | record |
//! | ProcessingCode 15 (a deletion is not a held state) | `E_CODE` | record |
//! | field values | from the domain parsers | record |

use super::source::{
    Desired, SourceItem, SourceSummary, build_acquisition, csv_error, diags, field_text, parse_flags, period_of,
    strip_cr,
};
use crate::domain::{
    Catalog, Date, FieldFault, FileKind, InsurerNumber, MunicipalityCode, ProcessingCode, SubscriberKey,
};
use crate::error::{Diagnostic, ErrorCode, FieldError};
use crate::formats::checks::type_header;
use crate::formats::decode::{Output, StopReason, StrictDecoder};
use crate::formats::linkage::{
    BASIC_COLUMNS as BASIC, CONTROL_COLUMNS as CONTROL, QUALIFICATION_COLUMNS as QUALIFICATION,
};
use crate::formats::{FileHeader, Format, csv_reader, xml_reader};
use anyhow::{Context, Result};
use quick_xml::events::Event;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

fn columns(kind: RowKind) -> &'static [&'static str] {
    match kind {
        RowKind::Basic => BASIC,
        RowKind::Control => CONTROL,
        RowKind::Qualification => QUALIFICATION,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowKind {
    Basic,
    Control,
    Qualification,
}

/// One subscriber group as read: rows with values by column (empty = absent).
#[derive(Default)]
struct Group {
    line: u64,
    rows: Vec<(RowKind, Vec<String>)>,
    faults: Vec<FieldFault>,
}

/// Options of the snapshot reader.
pub struct SnapshotOptions<'a> {
    pub as_of: Date,
    pub catalog: &'a Catalog,
    /// MunicipalityCode for new 国保/後期 subscribers (the format does not carry it).
    pub municipality: Option<MunicipalityCode>,
}

/// Types one group into a desired subscriber state.
fn group_item(g: Group, seq: u64, display: &str, o: &SnapshotOptions) -> SourceItem {
    let mut faults = g.faults;
    let schema = |m: &str| FieldFault {
        field: "Subscriber".into(),
        error: FieldError::new(ErrorCode::Schema, m),
    };
    let shape_ok = g.rows.first().is_some_and(|r| r.0 == RowKind::Basic)
        && g.rows.get(1).is_some_and(|r| r.0 == RowKind::Control)
        && g.rows.len() >= 3
        && g.rows[2..].iter().all(|r| r.0 == RowKind::Qualification);
    let get = |kind: RowKind, i: usize, f: &str| -> Option<&str> {
        let idx = columns(kind).iter().position(|c| *c == f)?;
        g.rows
            .iter()
            .filter(|r| r.0 == kind)
            .nth(i)
            .and_then(|r| r.1.get(idx))
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    };
    let key = get(RowKind::Basic, 0, "InsurerNumber")
        .and_then(|v| InsurerNumber::parse(v).ok())
        .zip(get(RowKind::Basic, 0, "SubscriberKey").and_then(|v| SubscriberKey::parse(v).ok()));
    if !shape_ok {
        faults.push(schema(
            "a Subscriber group is one 01 (BasicInfo), one 02 (ProvisionControl), then one or more 04 (Qualification)",
        ));
        return SourceItem::Rejected {
            key,
            faults: diags(display, seq, g.line, faults),
        };
    }
    let ids: Vec<&str> = g.rows.iter().map(|r| r.1[0].as_str()).collect();
    if ids.iter().any(|i| *i != ids[0]) {
        faults.push(schema(
            "the rows of one group must share their RecordIdentificationNumber",
        ));
    }
    match get(RowKind::Basic, 0, "ProcessingCode").map(ProcessingCode::parse) {
        None => faults.push(FieldFault {
            field: "ProcessingCode".into(),
            error: FieldError::new(ErrorCode::Schema, "ProcessingCode is required"),
        }),
        Some(Err(e)) => faults.push(FieldFault {
            field: "ProcessingCode".into(),
            error: e,
        }),
        Some(Ok(ProcessingCode::Delete)) => faults.push(FieldFault {
            field: "ProcessingCode".into(),
            error: FieldError::new(
                ErrorCode::Code,
                "ProcessingCode 15 (delete) is not a state the server holds; a snapshot cannot migrate it",
            ),
        }),
        Some(Ok(_)) => {}
    }
    let mut vals: HashMap<&str, String> = HashMap::new();
    for f in &BASIC[2..] {
        if let Some(v) = get(RowKind::Basic, 0, f) {
            vals.insert(f, v.to_owned());
        }
    }
    for f in &CONTROL[1..] {
        if let Some(v) = get(RowKind::Control, 0, f) {
            vals.insert(f, v.to_owned());
        }
    }
    if let Some(m) = o.municipality {
        vals.insert("MunicipalityCode", m.as_str().to_owned());
    }
    // the format does not carry ReasonOfQualification: その他, never compared
    vals.insert("ReasonOfQualification", "99".into());
    let flags = parse_flags(&vals, &mut faults);
    let n = g.rows.len() - 2;
    let mut base = None;
    let mut periods = Vec::with_capacity(n);
    for i in 0..n {
        let mut v = vals.clone();
        for f in &QUALIFICATION[2..] {
            v.remove(f);
            if let Some(x) = get(RowKind::Qualification, i, f) {
                v.insert(f, x.to_owned());
            }
        }
        if get(RowKind::Qualification, i, "InsurerNumber") != get(RowKind::Basic, 0, "InsurerNumber") {
            faults.push(FieldFault {
                field: "InsurerNumber".into(),
                error: FieldError::new(ErrorCode::Schema, "a 04 row's InsurerNumber differs from the 01 row's"),
            });
        }
        match build_acquisition(seq, o.as_of, &v, o.catalog, o.municipality.is_none()) {
            Ok(c) => {
                periods.push(period_of(&c, false));
                base.get_or_insert(c.change);
            }
            Err(ff) => {
                // identity faults once (from the first period), period faults from each
                faults.extend(
                    ff.into_iter()
                        .filter(|f| i == 0 || QUALIFICATION.contains(&f.field.as_str())),
                );
            }
        }
    }
    match base {
        Some(base) if faults.is_empty() => SourceItem::Record(Box::new(Desired {
            seq,
            line: g.line,
            base,
            periods,
            flags,
        })),
        _ => SourceItem::Rejected {
            key,
            faults: diags(display, seq, g.line, faults),
        },
    }
}

/// Reads a snapshot (format sniffed from the first bytes). `Ok(Err(..))` rejects it whole.
pub fn read_snapshot(
    path: &Path,
    display: &str,
    o: &SnapshotOptions,
    on_item: &mut dyn FnMut(SourceItem) -> Result<()>,
) -> Result<Result<SourceSummary, Vec<Diagnostic>>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut head = Vec::with_capacity(4096);
    (&mut f).take(4096).read_to_end(&mut head)?;
    let input = Cursor::new(head.clone()).chain(f);
    match crate::formats::sniff_format(&head) {
        Some(Format::Xml) => read_xml(input, &head, display, o, on_item),
        Some(Format::Csv) => read_csv(input, &head, display, o, on_item),
        None => Ok(Err(vec![Diagnostic::new(
            display,
            ErrorCode::Schema,
            "neither XML (starts with '<') nor CSV (starts with an H row)",
        )])),
    }
}

struct Counter {
    groups: u64,
    rows: u64,
}

fn check_trailer(
    display: &str,
    line: u64,
    c: &Counter,
    groups: Option<u64>,
    rows: Option<u64>,
) -> std::result::Result<(), Vec<Diagnostic>> {
    match (groups, rows) {
        (Some(g), Some(r)) if g == c.groups && r == c.rows => Ok(()),
        (Some(_), Some(_)) => Err(vec![
            Diagnostic::new(
                display,
                ErrorCode::TrailerCount,
                format!(
                    "trailer counts differ from the file: read {} group(s) and {} row(s)",
                    c.groups, c.rows
                ),
            )
            .line(line),
        ]),
        _ => Err(vec![
            Diagnostic::new(
                display,
                ErrorCode::TrailerCount,
                "trailer GroupCount/RowCount missing or not a number",
            )
            .line(line),
        ]),
    }
}

fn count(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// CSV form: `H`, groups of `01`/`02`/`04` rows, `T,<GroupCount>,<RowCount>`.
pub fn read_csv<R: Read>(
    input: R,
    head: &[u8],
    display: &str,
    o: &SnapshotOptions,
    on_item: &mut dyn FnMut(SourceItem) -> Result<()>,
) -> Result<Result<SourceSummary, Vec<Diagnostic>>> {
    let one = |d: Diagnostic| Ok(Err(vec![d]));
    let enc = match csv_reader::declared_encoding(head) {
        Ok(e) => e,
        Err((code, msg)) => return one(Diagnostic::new(display, code, msg).line(1)),
    };
    let mut dec = StrictDecoder::new(input, enc, Output::Validated);
    dec.set_limit(1024 * 1024);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(dec);
    let mut rec = csv::ByteRecord::new();
    let mut header: Option<FileHeader> = None;
    let mut group: Option<Group> = None;
    let mut c = Counter { groups: 0, rows: 0 };
    let mut trailer_seen = false;
    let text = |b: &[u8]| field_text(b, enc);
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {
                strip_cr(&mut rec);
                // the size limit bounds one row, not the file
                rdr.get_mut().mark();
            }
            Ok(false) => break,
            Err(e) => return one(csv_error(display, &e, rdr.get_ref())),
        }
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        let schema = |m: String| Ok(Err(vec![Diagnostic::new(display, ErrorCode::Schema, m).line(line)]));
        if trailer_seen {
            return schema("rows after the T (trailer) row".into());
        }
        let kind = &rec[0];
        if header.is_none() {
            if kind != b"H" || rec.len() != 8 || &rec[1] != b"SubscriberLinkage" || &rec[2] != b"1" {
                return schema(
                    "the first row must be H,SubscriberLinkage,1,FileIdentifier,SenderInsurerNumber,CreationTime,FileSequence,CharacterCodeIdentifier"
                        .into(),
                );
            }
            let vals: Vec<String> = (3..7).map(|i| text(&rec[i]).unwrap_or_default()).collect();
            match type_header(
                FileKind::SubscriberLinkage,
                Format::Csv,
                enc,
                [
                    Some(vals[0].as_str()),
                    Some(vals[1].as_str()),
                    Some(vals[2].as_str()),
                    Some(vals[3].as_str()),
                ],
                display,
                line,
            ) {
                Ok(h) => header = Some(h),
                Err(d) => return Ok(Err(d)),
            }
            continue;
        }
        let row_kind = match kind {
            b"01" => RowKind::Basic,
            b"02" => RowKind::Control,
            b"04" => RowKind::Qualification,
            b"T" => {
                if let Some(g) = group.take() {
                    c.groups += 1;
                    on_item(group_item(g, c.groups, display, o))?;
                }
                let g = rec.get(1).and_then(|b| std::str::from_utf8(b).ok()).and_then(count);
                let r = rec.get(2).and_then(|b| std::str::from_utf8(b).ok()).and_then(count);
                let r = if rec.len() == 3 { r } else { None };
                if let Err(d) = check_trailer(display, line, &c, g, r) {
                    return Ok(Err(d));
                }
                trailer_seen = true;
                continue;
            }
            _ => return schema("unknown row kind (01, 02, 04 and T follow the H row)".into()),
        };
        c.rows += 1;
        if row_kind == RowKind::Basic {
            if let Some(g) = group.take() {
                c.groups += 1;
                on_item(group_item(g, c.groups, display, o))?;
            }
            group = Some(Group {
                line,
                ..Default::default()
            });
        }
        let Some(g) = group.as_mut() else {
            return schema("a 02 or 04 row before any 01 row".into());
        };
        let cols = columns(row_kind);
        if rec.len() != cols.len() + 1 {
            g.faults.push(FieldFault {
                field: "Subscriber".into(),
                error: FieldError::new(
                    ErrorCode::Schema,
                    format!(
                        "row {} must have {} columns",
                        String::from_utf8_lossy(kind),
                        cols.len() + 1
                    ),
                ),
            });
        }
        let mut vals = Vec::with_capacity(cols.len());
        for i in 0..cols.len() {
            match rec.get(i + 1).map(text) {
                Some(Ok(v)) => vals.push(v),
                Some(Err(_)) => {
                    return Ok(Err(vec![
                        Diagnostic::new(
                            display,
                            ErrorCode::Encoding,
                            "field is not valid in the declared encoding",
                        )
                        .line(line),
                    ]));
                }
                None => vals.push(String::new()),
            }
        }
        g.rows.push((row_kind, vals));
    }
    if header.is_none() {
        return one(Diagnostic::new(display, ErrorCode::Schema, "the file is empty"));
    }
    if !trailer_seen {
        return one(Diagnostic::new(
            display,
            ErrorCode::TrailerCount,
            "the T (trailer) row is missing: the file is truncated",
        ));
    }
    let (sha256, _) = rdr.into_inner().finish_digest()?;
    Ok(Ok(SourceSummary {
        kind: "SubscriberLinkage".into(),
        format: "csv".into(),
        encoding: enc,
        records: c.groups,
        sha256,
        creation_time: header.map(|h| h.creation_time),
    }))
}

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

/// XML form: `<SubscriberLinkageFile>` with `<Subscriber>` groups.
pub fn read_xml<R: Read>(
    input: R,
    head: &[u8],
    display: &str,
    o: &SnapshotOptions,
    on_item: &mut dyn FnMut(SourceItem) -> Result<()>,
) -> Result<Result<SourceSummary, Vec<Diagnostic>>> {
    let enc = match xml_reader::declared_encoding(head) {
        Ok(e) => e,
        Err((code, msg)) => return Ok(Err(vec![Diagnostic::new(display, code, msg).line(1)])),
    };
    let mut dec = StrictDecoder::new(input, enc, Output::Utf8);
    dec.set_limit(1024 * 1024);
    let mut xr = quick_xml::Reader::from_reader(dec);
    {
        let c = xr.config_mut();
        c.check_comments = true;
        c.check_end_names = true;
        c.expand_empty_elements = true;
        c.allow_unmatched_ends = false;
        c.trim_text(false);
    }
    let mut buf = Vec::with_capacity(4096);
    let mut at = At::Prolog;
    let mut leaf: Option<String> = None;
    let mut text = String::new();
    let mut hdr: HashMap<String, String> = HashMap::new();
    let mut header: Option<FileHeader> = None;
    let mut group: Option<Group> = None;
    let mut row: Vec<String> = Vec::new();
    let mut trailer: HashMap<String, String> = HashMap::new();
    let mut trailer_seen = false;
    let mut c = Counter { groups: 0, rows: 0 };
    macro_rules! fail {
        ($code:expr, $msg:expr) => {
            return Ok(Err(vec![
                Diagnostic::new(display, $code, $msg).line(xr.get_ref().line()),
            ]))
        };
    }
    loop {
        buf.clear();
        let ev = match xr.read_event_into(&mut buf) {
            Ok(ev) => ev,
            Err(e) => {
                let d = match (&e, xr.get_ref().stop_reason()) {
                    (quick_xml::Error::Io(_), Some(StopReason::Encoding(d))) => {
                        Diagnostic::new(display, ErrorCode::Encoding, d.message.clone())
                            .line(d.line)
                            .offset(d.offset)
                    }
                    (quick_xml::Error::Syntax(quick_xml::errors::SyntaxError::UnclosedDoctype), _) => {
                        Diagnostic::new(display, ErrorCode::DtdForbidden, "a DOCTYPE (DTD) is not allowed")
                    }
                    _ => Diagnostic::new(display, ErrorCode::XmlSyntax, format!("not well-formed XML: {e}"))
                        .line(xr.get_ref().line()),
                };
                return Ok(Err(vec![d]));
            }
        };
        xr.get_mut().mark();
        match ev {
            Event::DocType(_) => fail!(ErrorCode::DtdForbidden, "a DOCTYPE (DTD) is not allowed"),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Start(e) => {
                if leaf.is_some() {
                    fail!(ErrorCode::Schema, "a field holds text, not elements");
                }
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let line = xr.get_ref().line();
                match (at, name.as_str()) {
                    (At::Prolog, "SubscriberLinkageFile") => at = At::Root,
                    (At::Prolog, _) => fail!(ErrorCode::Schema, "the root element must be SubscriberLinkageFile"),
                    (At::Root, "FileHeader") if header.is_none() => at = At::Header,
                    (At::Root, "Subscriber") if header.is_some() && !trailer_seen => {
                        at = At::Subscriber;
                        group = Some(Group {
                            line,
                            ..Default::default()
                        });
                    }
                    (At::Root, "FileTrailer") if header.is_some() && !trailer_seen => at = At::Trailer,
                    (At::Subscriber, k @ ("BasicInfo" | "ProvisionControl" | "Qualification")) => {
                        at = At::Row(match k {
                            "BasicInfo" => RowKind::Basic,
                            "ProvisionControl" => RowKind::Control,
                            _ => RowKind::Qualification,
                        });
                        row = Vec::new();
                        c.rows += 1;
                    }
                    (At::Row(k), f) => {
                        if !columns(k).contains(&f) {
                            if let Some(g) = group.as_mut() {
                                g.faults.push(FieldFault {
                                    field: "Subscriber".into(),
                                    error: FieldError::new(ErrorCode::Schema, "unknown element in a Subscriber group"),
                                });
                            }
                        }
                        leaf = Some(name);
                        text.clear();
                    }
                    (At::Header | At::Trailer, _) => {
                        leaf = Some(name);
                        text.clear();
                    }
                    (At::Epilog, _) => fail!(ErrorCode::XmlSyntax, "a second root element"),
                    _ => fail!(
                        ErrorCode::Schema,
                        format!(
                            "unexpected element {}",
                            crate::formats::checks::safe_name(name.as_bytes())
                        )
                    ),
                }
            }
            Event::End(_) => {
                if let Some(f) = leaf.take() {
                    let v = std::mem::take(&mut text);
                    match at {
                        At::Header => {
                            hdr.insert(f, v);
                        }
                        At::Trailer => {
                            trailer.insert(f, v);
                        }
                        At::Row(_) => row.push(format!("{f}\u{0}{v}")),
                        _ => {}
                    }
                    continue;
                }
                match at {
                    At::Header => {
                        let g = |k: &str| hdr.get(k).map(String::as_str);
                        match type_header(
                            FileKind::SubscriberLinkage,
                            Format::Xml,
                            enc,
                            [
                                g("FileIdentifier"),
                                g("SenderInsurerNumber"),
                                g("CreationTime"),
                                g("FileSequence"),
                            ],
                            display,
                            xr.get_ref().line(),
                        ) {
                            Ok(h) => header = Some(h),
                            Err(d) => return Ok(Err(d)),
                        }
                        at = At::Root;
                    }
                    At::Row(k) => {
                        let cols = columns(k);
                        let mut vals = vec![String::new(); cols.len()];
                        for entry in row.drain(..) {
                            let (f, v) = entry.split_once('\u{0}').expect("joined above");
                            if let Some(i) = cols.iter().position(|c| *c == f) {
                                vals[i] = v.to_owned();
                            }
                        }
                        if let Some(g) = group.as_mut() {
                            g.rows.push((k, vals));
                        }
                        at = At::Subscriber;
                    }
                    At::Subscriber => {
                        c.groups += 1;
                        let g = group.take().expect("open group");
                        on_item(group_item(g, c.groups, display, o))?;
                        at = At::Root;
                    }
                    At::Trailer => {
                        let g = trailer.get("GroupCount").and_then(|s| count(s));
                        let r = trailer.get("RowCount").and_then(|s| count(s));
                        if let Err(d) = check_trailer(display, xr.get_ref().line(), &c, g, r) {
                            return Ok(Err(d));
                        }
                        trailer_seen = true;
                        at = At::Root;
                    }
                    At::Root => at = At::Epilog,
                    _ => {}
                }
            }
            Event::Text(t) => {
                let s = match t.xml10_content() {
                    Ok(s) => s,
                    Err(_) => fail!(ErrorCode::Encoding, "text is not valid"),
                };
                if leaf.is_some() {
                    text.push_str(&s);
                } else if !s.trim().is_empty() {
                    fail!(ErrorCode::Schema, "text where only elements go");
                }
            }
            Event::CData(t) => {
                if leaf.is_none() {
                    fail!(ErrorCode::Schema, "CDATA where only elements go");
                }
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::GeneralRef(r) => {
                let ch = match &*r {
                    b"amp" => '&',
                    b"lt" => '<',
                    b"gt" => '>',
                    b"apos" => '\'',
                    b"quot" => '"',
                    _ if r.is_char_ref() => match r.resolve_char_ref() {
                        Ok(Some(ch)) => ch,
                        _ => fail!(ErrorCode::XmlSyntax, "invalid character reference"),
                    },
                    _ => fail!(ErrorCode::XmlSyntax, "unknown entity reference"),
                };
                if leaf.is_none() {
                    fail!(ErrorCode::Schema, "text where only elements go");
                }
                text.push(ch);
            }
            Event::Empty(_) => unreachable!("expand_empty_elements"),
            Event::Eof => break,
        }
    }
    if at != At::Epilog {
        if trailer_seen || at == At::Prolog {
            fail!(
                ErrorCode::XmlSyntax,
                "the document ends before its root element is closed"
            );
        }
        fail!(
            ErrorCode::TrailerCount,
            "the file ends before its FileTrailer: it is truncated"
        );
    }
    if !trailer_seen {
        fail!(ErrorCode::TrailerCount, "FileTrailer is missing");
    }
    let (sha256, _) = xr.into_inner().finish_digest()?;
    Ok(Ok(SourceSummary {
        kind: "SubscriberLinkage".into(),
        format: "xml".into(),
        encoding: enc,
        records: c.groups,
        sha256,
        creation_time: header.map(|h| h.creation_time),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::source::DesiredFlags;
    use super::*;
    use crate::domain::{
        Address, IndividualNumber, InsuredBranchNumber, PersonalFamilyClassification, PostNumber, ReasonOfLoss,
        SelfInfoReason, Sex1, Timestamp,
    };
    use crate::formats::TextEncoding;
    use crate::formats::linkage::*;
    use crate::formats::writer::UnmappablePolicy;

    fn group(key: &str, self_info: Option<SelfInfoReason>) -> SubscriberGroup {
        SubscriberGroup {
            processing: ProcessingCode::FirstRegistration,
            insurer: InsurerNumber::parse("131045").unwrap(),
            key: SubscriberKey::parse(key).unwrap(),
            individual_number: Some(IndividualNumber::parse("123456789018").unwrap()),
            name: "山田　花子".into(),
            name_kana: "ﾔﾏﾀﾞ ﾊﾅｺ".into(),
            sex: Sex1::Female,
            birthdate: Date::parse("19511202").unwrap(),
            post_number: Some(PostNumber::parse("160-0023").unwrap()),
            address: Some(Address::parse("東京都新宿区西新宿九丁目９番９号").unwrap()),
            control: ProvisionControl {
                self_info,
                non_disclosure: self_info.is_some(),
                auto_response: false,
            },
            qualifications: vec![
                QualificationRow {
                    insurer: InsurerNumber::parse("131045").unwrap(),
                    card_symbol: Some("記号".into()),
                    card_number: "1001".into(),
                    branch: InsuredBranchNumber::parse("00").unwrap(),
                    qualification_date: Date::parse("20200401").unwrap(),
                    disqualification_date: Some(Date::parse("20210331").unwrap()),
                    reason_of_loss: Some(ReasonOfLoss::Other),
                    personal_family: PersonalFamilyClassification::Self_,
                },
                QualificationRow {
                    insurer: InsurerNumber::parse("131045").unwrap(),
                    card_symbol: None,
                    card_number: "1002".into(),
                    branch: InsuredBranchNumber::parse("01").unwrap(),
                    qualification_date: Date::parse("20220401").unwrap(),
                    disqualification_date: None,
                    reason_of_loss: None,
                    personal_family: PersonalFamilyClassification::Family,
                },
            ],
        }
    }

    fn write(format: Format, enc: TextEncoding) -> Vec<u8> {
        let h = linkage_header(
            FileKind::SubscriberLinkage,
            "snap-1".into(),
            InsurerNumber::parse("131045").unwrap(),
            Timestamp::parse("20261130230000").unwrap(),
            format,
            enc,
        );
        let mut out = Vec::new();
        StandardLayout {
            policy: UnmappablePolicy::Reject,
        }
        .subscriber_linkage(
            &h,
            &mut [
                group("0000000000000001", Some(SelfInfoReason::PersonReason)),
                group("0000000000000002", None),
            ]
            .into_iter(),
            &mut out,
        )
        .unwrap();
        out
    }

    fn read(bytes: &[u8]) -> (std::result::Result<SourceSummary, Vec<Diagnostic>>, Vec<SourceItem>) {
        let cat = Catalog::default_catalog();
        let o = SnapshotOptions {
            as_of: Date::parse("20261201").unwrap(),
            catalog: &cat,
            municipality: None,
        };
        let mut items = Vec::new();
        let head = &bytes[..bytes.len().min(4096)];
        let mut push = |i| {
            items.push(i);
            Ok(())
        };
        let r = match crate::formats::sniff_format(head) {
            Some(Format::Xml) => read_xml(bytes, head, "s", &o, &mut push),
            _ => read_csv(bytes, head, "s", &o, &mut push),
        }
        .unwrap();
        (r, items)
    }

    #[test]
    fn reads_what_the_linkage_writer_writes() {
        for format in [Format::Csv, Format::Xml] {
            for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
                let (r, items) = read(&write(format, enc));
                let s = r.unwrap_or_else(|d| panic!("{format:?} {enc:?}: {d:?}"));
                assert_eq!((s.records, s.encoding), (2, enc));
                let SourceItem::Record(d) = &items[0] else {
                    panic!("{:?}", items[0])
                };
                assert_eq!(d.periods.len(), 2);
                assert_eq!(d.periods[1].card_number, "1002");
                assert_eq!(d.periods[0].reason_of_loss, Some(ReasonOfLoss::Other));
                assert_eq!(d.flags.self_info, Some(SelfInfoReason::PersonReason));
                assert!(d.flags.non_disclosure && !d.flags.auto_response);
                assert_eq!(d.base.municipality, None);
                let SourceItem::Record(d2) = &items[1] else { panic!() };
                assert_eq!(d2.flags, DesiredFlags::default());
            }
        }
    }

    #[test]
    fn large_files_stream_past_the_row_size_limit() {
        for format in [Format::Csv, Format::Xml] {
            let h = linkage_header(
                FileKind::SubscriberLinkage,
                "snap-big".into(),
                InsurerNumber::parse("131045").unwrap(),
                Timestamp::parse("20261130230000").unwrap(),
                format,
                TextEncoding::ShiftJis,
            );
            let groups: Vec<SubscriberGroup> = (1..=9000).map(|i| group(&format!("{i:016}"), None)).collect();
            let mut out = Vec::new();
            StandardLayout {
                policy: UnmappablePolicy::Reject,
            }
            .subscriber_linkage(&h, &mut groups.into_iter(), &mut out)
            .unwrap();
            assert!(out.len() > 1024 * 1024 + 64 * 1024, "{}", out.len());
            let (r, items) = read(&out);
            assert_eq!(r.unwrap().records, 9000);
            assert!(items.iter().all(|i| matches!(i, SourceItem::Record(_))));
        }
    }

    #[test]
    fn file_and_record_errors() {
        let csv = String::from_utf8(write(Format::Csv, TextEncoding::Utf8)).unwrap();
        // trailer count wrong
        let bad = csv.replace("T,2,8", "T,3,8");
        let (r, _) = read(bad.as_bytes());
        assert_eq!(r.unwrap_err()[0].code, ErrorCode::TrailerCount);
        // truncated
        let cut = &csv[..csv.find("T,").unwrap()];
        assert_eq!(read(cut.as_bytes()).0.unwrap_err()[0].code, ErrorCode::TrailerCount);
        // check digit in one group: that record only
        let bad = csv.replacen("0000000000000002,123456789018", "0000000000000002,123456789010", 1);
        let (r, items) = read(bad.as_bytes());
        assert!(r.is_ok());
        let SourceItem::Rejected { key, faults } = &items[1] else {
            panic!()
        };
        assert!(key.is_some());
        assert_eq!(faults[0].code, ErrorCode::CheckDigit);
        assert_eq!(faults[0].field.as_deref(), Some("IndividualNumber"));
        // XML: malformed, DOCTYPE
        let xml = String::from_utf8(write(Format::Xml, TextEncoding::Utf8)).unwrap();
        let bad = xml.replacen("</Name>", "</Nam>", 1);
        assert_eq!(read(bad.as_bytes()).0.unwrap_err()[0].code, ErrorCode::XmlSyntax);
        let bad = xml.replacen(
            "<SubscriberLinkageFile",
            "<!DOCTYPE x [<!ENTITY a \"b\">]>\n<SubscriberLinkageFile",
            1,
        );
        assert_eq!(read(bad.as_bytes()).0.unwrap_err()[0].code, ErrorCode::DtdForbidden);
        let cut = &xml[..xml.find("<FileTrailer>").unwrap()];
        assert_eq!(read(cut.as_bytes()).0.unwrap_err()[0].code, ErrorCode::TrailerCount);
    }
}
