//! The whole-file parse that [`super::LinkageReader`] replaced, kept for its tests alone: the
//! reference the streaming reader is held against (the same file, whole or streamed, gives the
//! same result). It shares the checks of one row, one element and one group with the raw
//! reader, not its state machines.

use super::raw::{BOM_MESSAGE, RawPiece, RawRow, invalid_bytes};
use super::raw_csv::{OwnLine, own_header, own_line};
use super::raw_xml::{El, MARKUP_NEVER_WRITTEN, own_reference, root_child};
use super::typed::{check_groups, check_records, flag_row, fukuhon_row, header_of, parse_group, rows_after};
use super::{LinkageFile, LinkageRows};
use crate::domain::FileKind;
use crate::formats::linkage::SubscriberGroup;
use crate::formats::writer::XML_NS;
use crate::formats::{FileHeader, Format, TextEncoding, csv_reader, sniff_format, xml_reader};
use anyhow::{Result, anyhow, bail};
use quick_xml::events::Event;

/// Reads a whole linkage file held in memory.
pub fn read_linkage(bytes: &[u8]) -> Result<LinkageFile> {
    match sniff_format(&bytes[..bytes.len().min(64)]) {
        Some(Format::Csv) => read_csv(bytes),
        Some(Format::Xml) => read_xml(bytes),
        None => bail!("neither CSV (an H row) nor XML"),
    }
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
            None => {
                let h = own_header(&cells)?;
                header = Some(header_of(h.kind, Format::Csv, encoding, &h.values)?);
            }
            Some(h) => match own_line(cells, at, h.kind)? {
                OwnLine::Trailer(t) => trailer = Some(t),
                OwnLine::Row(r) => rows.push(r),
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
                    if attrs != format!("xmlns=\"{XML_NS}\"").as_bytes() {
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
                        match root_child(kind, el, header.is_some(), trailer.is_some(), &mut n)? {
                            RawPiece::Header(h) => header = Some(header_of(h.kind, Format::Xml, encoding, &h.values)?),
                            RawPiece::Trailer { values, .. } => trailer = Some(values),
                            RawPiece::Group(g) => rows.extend(g.rows),
                            RawPiece::Record(r) => rows.push(r),
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
                let c = own_reference(&r, r.resolve_char_ref().ok().flatten())?;
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

/// Splits a whole file's rows into groups.
fn groups(rows: Vec<RawRow>) -> Result<(Vec<SubscriberGroup>, u64)> {
    let n_rows = rows.len() as u64;
    let mut out: Vec<SubscriberGroup> = Vec::new();
    let mut it = rows.into_iter().peekable();
    while let Some(b) = it.next() {
        let ordinal = out.len() as u64 + 1;
        let (c, quals) = rows_after(&b, &mut it, ordinal)?;
        out.push(parse_group(ordinal, &b, &c, &quals)?);
    }
    Ok((out, n_rows))
}
