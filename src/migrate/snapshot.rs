//! The lenient typer of a SubscriberLinkage snapshot (what the intermediate server holds, as
//! exported by an earlier system), CSV or XML, UTF-8 or Shift_JIS, streaming: the raw reader
//! ([`crate::formats::linkage_reader::raw`], [`Strictness::Snapshot`]) hands out one group
//! (`01`, `02`, `04`…) at a time; this module types it into one desired subscriber state, or
//! rejects that record alone.
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

use super::source::DesiredPeriod;
use super::source::{Desired, SourceItem, SourceSummary, build_acquisition, diags, parse_flags, period_of};
use crate::domain::{
    Catalog, Date, FieldFault, FileKind, InsurerNumber, MunicipalityCode, ProcessingCode, SubscriberChange,
    SubscriberKey,
};
use crate::error::{Diagnostic, ErrorCode, FieldError};
use crate::formats::Format;
use crate::formats::checks::type_header;
use crate::formats::linkage::{
    BASIC_COLUMNS as BASIC, CONTROL_COLUMNS as CONTROL, QUALIFICATION_COLUMNS as QUALIFICATION,
};
use crate::formats::linkage_reader::raw::{RawGroup, RawPiece, RawRow, RowKind, Strictness};
use crate::formats::linkage_reader::raw_reader::{HEAD, RawReader};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Options of the snapshot reader.
pub struct SnapshotOptions<'a> {
    pub as_of: Date,
    pub catalog: &'a Catalog,
    /// MunicipalityCode for new 国保/後期 subscribers (the format does not carry it).
    pub municipality: Option<MunicipalityCode>,
}

/// What a snapshot reader hands back: the summary, or the diagnostics that reject the file whole.
type Outcome = Result<Result<SourceSummary, Vec<Diagnostic>>>;

/// Reads a snapshot (format sniffed from the first bytes). `Ok(Err(..))` rejects it whole.
pub fn read_snapshot(
    path: &Path,
    display: &str,
    o: &SnapshotOptions,
    on_item: &mut dyn FnMut(SourceItem) -> Result<()>,
) -> Outcome {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_stream(f, display, o, on_item)
}

/// Reads a snapshot from `input`.
pub fn read_stream<R: Read>(
    mut input: R,
    display: &str,
    o: &SnapshotOptions,
    on_item: &mut dyn FnMut(SourceItem) -> Result<()>,
) -> Outcome {
    let mut head = Vec::with_capacity(HEAD);
    (&mut input).take(HEAD as u64).read_to_end(&mut head)?;
    let mut raw = match RawReader::new(head, input, Strictness::Snapshot) {
        Ok(raw) => raw,
        Err(e) => return Ok(Err(vec![e.diagnostic(display)])),
    };
    let (format, encoding) = (raw.format(), raw.encoding());
    let mut header = None;
    let mut groups = 0;
    loop {
        let piece = match raw.next_piece() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => return Ok(Err(vec![e.diagnostic(display)])),
        };
        match piece {
            RawPiece::Header(h) => {
                let values = h.values.each_ref().map(Option::as_deref);
                match type_header(FileKind::SubscriberLinkage, format, encoding, values, display, h.line) {
                    Ok(h) => header = Some(h),
                    Err(d) => return Ok(Err(d)),
                }
            }
            RawPiece::Group(g) => {
                groups += 1;
                on_item(group_item(g, groups, display, o))?;
            }
            RawPiece::Trailer { values, line } => {
                if let Err(d) = check_trailer(display, line, (groups, raw.rows()), &values) {
                    return Ok(Err(d));
                }
            }
            RawPiece::Record(_) => {
                let m = "a record outside a Subscriber group";
                return Ok(Err(vec![Diagnostic::new(display, ErrorCode::Schema, m)]));
            }
        }
    }
    let (sha256, _) = raw.finish()?;
    Ok(Ok(SourceSummary {
        kind: "SubscriberLinkage".into(),
        format: match format {
            Format::Csv => "csv",
            Format::Xml => "xml",
        }
        .into(),
        encoding,
        records: groups,
        sha256,
        creation_time: header.map(|h| h.creation_time),
    }))
}

fn count(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The trailer's GroupCount and RowCount (exactly two values) against the groups and rows read.
fn check_trailer(
    display: &str,
    line: u64,
    (groups, rows): (u64, u64),
    values: &[String],
) -> std::result::Result<(), Vec<Diagnostic>> {
    let g = values.first().and_then(|s| count(s));
    let r = values.get(1).filter(|_| values.len() == 2).and_then(|s| count(s));
    let d = match (g, r) {
        (Some(g), Some(r)) if g == groups && r == rows => return Ok(()),
        (Some(_), Some(_)) => Diagnostic::new(
            display,
            ErrorCode::TrailerCount,
            format!("trailer counts differ from the file: read {groups} group(s) and {rows} row(s)"),
        ),
        _ => Diagnostic::new(
            display,
            ErrorCode::TrailerCount,
            "trailer GroupCount/RowCount missing or not a number",
        ),
    };
    Err(vec![d.line(line)])
}

/// The rows of one group, looked up by kind and column.
struct Rows<'a>(&'a [RawRow]);

impl Rows<'_> {
    /// The value of column `f` in the `i`th row of `kind`; `None` when absent or empty.
    fn get(&self, kind: RowKind, i: usize, f: &str) -> Option<&str> {
        let idx = kind.columns(FileKind::SubscriberLinkage).iter().position(|c| *c == f)?;
        self.0
            .iter()
            .filter(|r| r.kind == kind)
            .nth(i)
            .and_then(|r| r.values.get(idx))
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }

    /// One `01`, one `02`, then one or more `04` rows.
    fn well_shaped(&self) -> bool {
        let r = self.0;
        r.first().is_some_and(|r| r.kind == RowKind::Basic)
            && r.get(1).is_some_and(|r| r.kind == RowKind::Control)
            && r.len() >= 3
            && r[2..].iter().all(|r| r.kind == RowKind::Qualification)
    }
}

fn schema(m: &str) -> FieldFault {
    FieldFault {
        field: "Subscriber".into(),
        error: FieldError::new(ErrorCode::Schema, m),
    }
}

/// Types one group into a desired subscriber state, or rejects it with all its faults.
fn group_item(g: RawGroup, seq: u64, display: &str, o: &SnapshotOptions) -> SourceItem {
    let mut faults: Vec<FieldFault> = g.faults.iter().map(|m| schema(m)).collect();
    let rows = Rows(&g.rows);
    let key = rows
        .get(RowKind::Basic, 0, "InsurerNumber")
        .and_then(|v| InsurerNumber::parse(v).ok())
        .zip(
            rows.get(RowKind::Basic, 0, "SubscriberKey")
                .and_then(|v| SubscriberKey::parse(v).ok()),
        );
    if !rows.well_shaped() {
        faults.push(schema(
            "a Subscriber group is one 01 (BasicInfo), one 02 (ProvisionControl), then one or more 04 (Qualification)",
        ));
        return SourceItem::Rejected {
            key,
            faults: diags(display, seq, g.line, faults),
        };
    }
    identity_faults(&rows, &mut faults);
    let vals = subscriber_values(&rows, o);
    let flags = parse_flags(&vals, &mut faults);
    let (base, periods) = periods(&rows, &vals, seq, o, &mut faults);
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

/// One RecordIdentificationNumber for the group's rows; a ProcessingCode that is a held state.
fn identity_faults(rows: &Rows, faults: &mut Vec<FieldFault>) {
    let ids: Vec<&str> = rows.0.iter().map(|r| r.values[0].as_str()).collect();
    if ids.iter().any(|i| *i != ids[0]) {
        faults.push(schema(
            "the rows of one group must share their RecordIdentificationNumber",
        ));
    }
    let processing = |error| FieldFault {
        field: "ProcessingCode".into(),
        error,
    };
    match rows.get(RowKind::Basic, 0, "ProcessingCode").map(ProcessingCode::parse) {
        None => faults.push(processing(FieldError::new(
            ErrorCode::Schema,
            "ProcessingCode is required",
        ))),
        Some(Err(e)) => faults.push(processing(e)),
        Some(Ok(ProcessingCode::Delete)) => faults.push(processing(FieldError::new(
            ErrorCode::Code,
            "ProcessingCode 15 (delete) is not a state the server holds; a snapshot cannot migrate it",
        ))),
        Some(Ok(_)) => {}
    }
}

/// The subscriber's values by spec field name: the `01` and `02` rows, and what the format does
/// not carry.
fn subscriber_values(rows: &Rows, o: &SnapshotOptions) -> HashMap<&'static str, String> {
    let mut vals: HashMap<&str, String> = HashMap::new();
    for f in &BASIC[2..] {
        if let Some(v) = rows.get(RowKind::Basic, 0, f) {
            vals.insert(f, v.to_owned());
        }
    }
    for f in &CONTROL[1..] {
        if let Some(v) = rows.get(RowKind::Control, 0, f) {
            vals.insert(f, v.to_owned());
        }
    }
    if let Some(m) = o.municipality {
        vals.insert("MunicipalityCode", m.as_str().to_owned());
    }
    // the format does not carry ReasonOfQualification: その他, never compared
    vals.insert("ReasonOfQualification", "99".into());
    vals
}

/// Each `04` row with the subscriber's values, validated as a 資格取得: the first as the base,
/// all as periods.
fn periods(
    rows: &Rows,
    vals: &HashMap<&str, String>,
    seq: u64,
    o: &SnapshotOptions,
    faults: &mut Vec<FieldFault>,
) -> (Option<SubscriberChange>, Vec<DesiredPeriod>) {
    let n = rows.0.len() - 2;
    let mut base = None;
    let mut periods = Vec::with_capacity(n);
    for i in 0..n {
        let mut v = vals.clone();
        for f in &QUALIFICATION[2..] {
            v.remove(f);
            if let Some(x) = rows.get(RowKind::Qualification, i, f) {
                v.insert(f, x.to_owned());
            }
        }
        if rows.get(RowKind::Qualification, i, "InsurerNumber") != rows.get(RowKind::Basic, 0, "InsurerNumber") {
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
    (base, periods)
}

#[cfg(test)]
mod tests {
    use super::super::source::DesiredFlags;
    use super::*;
    use crate::domain::{
        Address, IndividualNumber, InsuredBranchNumber, PersonalFamilyClassification, PostNumber, ReasonOfLoss,
        SelfInfoReason, Sex1, Timestamp,
    };
    use crate::formats::linkage::{
        LinkageLayout, ProvisionControl, QualificationRow, StandardLayout, SubscriberGroup, linkage_header,
    };
    use crate::formats::writer::UnmappablePolicy;
    use crate::formats::{Format, TextEncoding};

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
        let mut push = |i| {
            items.push(i);
            Ok(())
        };
        let r = read_stream(bytes, "s", &o, &mut push).unwrap();
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
