//! A strict reader of this program's own linkage output (SubscriberLinkage, FlagLinkage,
//! FukuhonLinkage; CSV or XML; UTF-8 or Shift_JIS), for `merge-shards`: it gives back exactly
//! the groups and rows [`super::linkage::StandardLayout`] wrote, so that writing them again
//! reproduces the file byte for byte (with new numbering, header and trailer).
//!
//! Anything that the writer would not have produced is an error: another layout, a missing or
//! extra row or element, a wrong column count, RecordIdentificationNumber / RecordSequence out
//! of order, trailer counts that differ, bytes invalid in the declared encoding. Error messages
//! name the row and the field, never a value (a My Number or an address cannot leak).

use super::linkage::{FlagRow, FukuhonRow, ProvisionControl, QualificationRow, SubscriberGroup};
use super::{FileHeader, Format, TextEncoding, csv_reader, sniff_format, xml_reader};
use crate::domain::*;
use crate::error::FieldError;
use anyhow::{Context, Result, anyhow, bail};
use quick_xml::events::Event;

/// Columns of the `01` row after the row kind.
const BASIC: &[&str] = &[
    "RecordIdentificationNumber",
    "ProcessingCode",
    "InsurerNumber",
    "SubscriberKey",
    "IndividualNumber",
    "Name",
    "NameKana",
    "Sex1",
    "Birthdate",
    "PostNumber",
    "Address",
];
/// Columns of the `02` row.
const CONTROL: &[&str] = &[
    "RecordIdentificationNumber",
    "SelfInfoProvisionProhibitedFlg",
    "NonDisclosureFlg",
    "AutoResponseProhibitedFlg",
];
/// Columns of a `04` row.
const QUALIFICATION: &[&str] = &[
    "RecordIdentificationNumber",
    "InsurerNumber",
    "InsuredCardSymbol",
    "InsuredIdentificationNumber",
    "InsuredBranchNumber",
    "QualificationDate",
    "DisqualificationDate",
    "ReasonOfLoss",
    "PersonalFamilyClassification",
];

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

fn decode(bytes: &[u8], encoding: TextEncoding) -> Result<String> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bail!("starts with a byte order mark, which this program never writes");
    }
    encoding
        .encoding_rs()
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
        .ok_or_else(|| anyhow!("bytes invalid in the declared encoding {}", encoding.xml_label()))
}

/// Reads a linkage file written by this program.
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
        match (cells[0].as_str(), &header) {
            ("H", None) => {
                let kind = cells
                    .get(1)
                    .and_then(|k| FileKind::from_name(k))
                    .filter(|k| !k.is_input())
                    .ok_or_else(|| {
                        anyhow!("row 1: not a linkage file (SubscriberLinkage, FlagLinkage, FukuhonLinkage)")
                    })?;
                if cells.len() != 8 || cells[2] != "1" {
                    bail!(
                        "row 1: the H row must be H,<kind>,1,FileIdentifier,Sender,CreationTime,FileSequence,CharacterCode"
                    );
                }
                header = Some(header_of(
                    kind,
                    Format::Csv,
                    encoding,
                    [&cells[3], &cells[4], &cells[5], &cells[6]],
                )?);
            }
            (_, None) => bail!("row 1: the first row must be the H row"),
            ("T", Some(_)) => trailer = Some(cells[1..].to_vec()),
            (k @ ("01" | "02" | "04" | "D"), Some(_)) => {
                let kind = k.to_owned();
                let (values, items) = if kind == "D" && header.as_ref().is_some_and(|h| h.kind.has_items()) {
                    let n = FileKind::FukuhonLinkage.fields().len();
                    if cells.len() < n + 1 || !(cells.len() - n - 1).is_multiple_of(2) {
                        bail!("row {at}: a FukuhonLinkage row has {n} fields then ItemCode,Value pairs");
                    }
                    let items = cells[n + 1..].chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
                    (cells[1..=n].to_vec(), items)
                } else {
                    (cells[1..].to_vec(), Vec::new())
                };
                rows.push(RawRow {
                    kind,
                    values,
                    items,
                    at,
                });
            }
            _ => bail!("row {at}: unknown row kind"),
        }
    }
    let header = header.ok_or_else(|| anyhow!("empty file"))?;
    let trailer = trailer.ok_or_else(|| anyhow!("no trailer (truncated?)"))?;
    build(header, rows, &trailer)
}

/// One element as read from the XML: name, text, children (this program's output is shallow).
#[derive(Default)]
struct El {
    name: String,
    text: String,
    children: Vec<El>,
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
                        // a child of the root: header, a record or group, the trailer
                        let kind = kind.expect("root seen");
                        if trailer.is_some() {
                            bail!("an element after the trailer");
                        }
                        match el.name.as_str() {
                            "FileHeader" if header.is_none() => {
                                let v = leaves(
                                    &el,
                                    &["FileIdentifier", "SenderInsurerNumber", "CreationTime", "FileSequence"],
                                    0,
                                )?;
                                header = Some(header_of(kind, Format::Xml, encoding, [&v[0], &v[1], &v[2], &v[3]])?);
                            }
                            _ if header.is_none() => bail!("the FileHeader must come first"),
                            "FileTrailer" => {
                                let names: &[&str] = if kind == FileKind::SubscriberLinkage {
                                    &["GroupCount", "RowCount"]
                                } else {
                                    &["RecordCount"]
                                };
                                trailer = Some(leaves(&el, names, 0)?);
                            }
                            "Subscriber" if kind == FileKind::SubscriberLinkage => {
                                n += 1;
                                for c in &el.children {
                                    let (k, cols) = match c.name.as_str() {
                                        "BasicInfo" => ("01", BASIC),
                                        "ProvisionControl" => ("02", CONTROL),
                                        "Qualification" => ("04", QUALIFICATION),
                                        _ => bail!("group {n}: unknown element in a Subscriber group"),
                                    };
                                    rows.push(RawRow {
                                        kind: k.into(),
                                        values: leaves(c, cols, n)?,
                                        items: Vec::new(),
                                        at: n,
                                    });
                                }
                            }
                            k if k == kind.name() && kind != FileKind::SubscriberLinkage => {
                                n += 1;
                                let mut el = el;
                                let items = match el.children.last().filter(|c| c.name == "Items") {
                                    Some(_) if kind.has_items() => {
                                        let it = el.children.pop().expect("Items");
                                        let mut v = Vec::new();
                                        for i in &it.children {
                                            if i.name != "Item" {
                                                bail!("record {n}: Items holds Item elements only");
                                            }
                                            let p = leaves(i, &["ItemCode", "Value"], n)?;
                                            v.push((p[0].clone(), p[1].clone()));
                                        }
                                        if v.is_empty() {
                                            bail!("record {n}: an empty Items element");
                                        }
                                        v
                                    }
                                    _ => Vec::new(),
                                };
                                rows.push(RawRow {
                                    kind: "D".into(),
                                    values: leaves(&el, kind.fields(), n)?,
                                    items,
                                    at: n,
                                });
                            }
                            _ => bail!("unexpected element under the root"),
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
                let c = match &*r {
                    b"amp" => '&',
                    b"lt" => '<',
                    b"gt" => '>',
                    b"apos" => '\'',
                    b"quot" => '"',
                    _ => match r.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        _ => bail!("an entity reference this program never writes"),
                    },
                };
                stack
                    .last_mut()
                    .ok_or_else(|| bad("a reference outside the root element"))?
                    .text
                    .push(c);
            }
            Event::Eof => break,
            Event::Empty(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {
                bail!("markup this program never writes (CDATA, comment, processing instruction or DOCTYPE)")
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
        bail!("record {at}: text in {} outside its fields", el.name);
    }
    let mut out = vec![String::new(); names.len()];
    let mut next = 0;
    for c in &el.children {
        let Some(i) = names.iter().position(|n| *n == c.name) else {
            bail!("record {at}: unknown element in {}", el.name);
        };
        if i < next {
            bail!("record {at}: element out of order or repeated in {}", el.name);
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

fn build(header: FileHeader, rows: Vec<RawRow>, trailer: &[String]) -> Result<LinkageFile> {
    let rows = match header.kind {
        FileKind::SubscriberLinkage => {
            let (groups, n_rows) = groups(rows)?;
            if trailer.len() != 2 {
                bail!("trailer: GroupCount and RowCount expected");
            }
            if count(trailer.first(), "GroupCount")? != groups.len() as u64
                || count(trailer.get(1), "RowCount")? != n_rows
            {
                bail!("trailer counts differ from the groups and rows read");
            }
            LinkageRows::Subscribers(groups)
        }
        FileKind::FlagLinkage => {
            let v = rows
                .iter()
                .enumerate()
                .map(|(i, r)| flag_row(r, i as u64 + 1))
                .collect::<Result<Vec<_>>>()?;
            check_records(trailer, v.len())?;
            LinkageRows::Flags(v)
        }
        FileKind::FukuhonLinkage => {
            let v = rows
                .iter()
                .enumerate()
                .map(|(i, r)| fukuhon_row(r, i as u64 + 1))
                .collect::<Result<Vec<_>>>()?;
            check_records(trailer, v.len())?;
            LinkageRows::Fukuhon(v)
        }
        k => bail!("{} is not a linkage kind", k.name()),
    };
    Ok(LinkageFile { header, rows })
}

fn check_records(trailer: &[String], n: usize) -> Result<()> {
    if trailer.len() != 1 || count(trailer.first(), "RecordCount")? != n as u64 {
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

fn groups(rows: Vec<RawRow>) -> Result<(Vec<SubscriberGroup>, u64)> {
    let n_rows = rows.len() as u64;
    let mut out: Vec<SubscriberGroup> = Vec::new();
    let mut it = rows.into_iter().peekable();
    while let Some(b) = it.next() {
        let ordinal = out.len() as u64 + 1;
        let id = ordinal.to_string();
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
        if quals.is_empty() {
            bail!("group {ordinal}: no 04 row");
        }
        for r in std::iter::once(&b).chain([&c]).chain(&quals) {
            if r.values[0] != id {
                bail!(
                    "row {}: RecordIdentificationNumber is not the group's ordinal {ordinal}",
                    r.at
                );
            }
        }
        let (v, at) = (&b.values, b.at);
        let sex = field(Sex1::parse(&v[7]), "Sex1", at)?;
        out.push(SubscriberGroup {
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
        });
    }
    Ok((out, n_rows))
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

/// Reads a linkage file from disk.
pub fn read_linkage_file(path: &std::path::Path) -> Result<LinkageFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_linkage(&bytes).with_context(|| format!("{} is not a linkage file as this program writes it", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::linkage::{LinkageLayout, StandardLayout, linkage_header};
    use crate::formats::writer::UnmappablePolicy;

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

    #[test]
    fn reads_back_exactly_what_the_writer_wrote() {
        for (kind, rows) in samples() {
            for format in [Format::Csv, Format::Xml] {
                for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
                    let bytes = write(kind, format, encoding, &rows);
                    let back =
                        read_linkage(&bytes).unwrap_or_else(|e| panic!("{kind:?} {format:?} {encoding:?}: {e:#}"));
                    assert_eq!(back.header.kind, kind);
                    assert_eq!(back.header.format, format);
                    assert_eq!(back.header.encoding, encoding);
                    assert_eq!(back.header.file_identifier, format!("{}-x", kind.name()));
                    assert_eq!(back.rows, rows, "{kind:?} {format:?} {encoding:?}");
                    assert_eq!(write(kind, format, encoding, &back.rows), bytes, "byte for byte");
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
        ] {
            let e = format!("{:#}", read_linkage(bad.as_bytes()).unwrap_err());
            assert!(e.contains(why), "{why}: {e}");
            assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{e}");
        }
        let xml = String::from_utf8(write(kind, Format::Xml, TextEncoding::Utf8, &rows)).unwrap();
        for bad in [
            xml.replace("<GroupCount>2</GroupCount>", "<GroupCount>3</GroupCount>"),
            xml.replace("</SubscriberLinkageFile>\n", ""),
            xml.replace("<Name>", "<Nom>").replace("</Name>", "</Nom>"),
            xml.replacen("<Sex1>2</Sex1>", "<Sex1>2</Sex1><Sex1>2</Sex1>", 1),
        ] {
            assert!(read_linkage(bad.as_bytes()).is_err());
        }
        let sjis = write(kind, Format::Csv, TextEncoding::ShiftJis, &rows);
        let mut broken = sjis.clone();
        let at = broken.iter().position(|b| *b >= 0x81).unwrap();
        broken[at] = 0xA0;
        let e = format!("{:#}", read_linkage(&broken).unwrap_err());
        assert!(e.contains("encoding"), "{e}");
    }
}
