//! Linkage files for the intermediate server (§4), behind one interface ([`LinkageLayout`]) so a
//! site-specific layout can be added without touching the engine.

use super::writer::{
    FieldEncoder, RecordWriter, UnmappableChar, UnmappablePolicy, WriteError, csv_escape, csv_header_row, xml_escape,
    xml_header,
};
use super::{FileHeader, Format, TextEncoding};
use crate::domain::{
    Address, Date, DisclosureClassification, FileKind, FlagType, FukuhonOperation, IndividualNumber, InfoCode,
    InsuredBranchNumber, InsurerNumber, PersonalFamilyClassification, PostNumber, ProcessingCode, ReasonOfLoss,
    SelfInfoReason, Sex1, SubscriberKey, Timestamp, self_info_column,
};
use std::io::Write;

/// Columns of the `01` row after the row kind (what the readers of linkage files expect).
pub const BASIC_COLUMNS: &[&str] = &[
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
pub const CONTROL_COLUMNS: &[&str] = &[
    "RecordIdentificationNumber",
    "SelfInfoProvisionProhibitedFlg",
    "NonDisclosureFlg",
    "AutoResponseProhibitedFlg",
];
/// Columns of a `04` row.
pub const QUALIFICATION_COLUMNS: &[&str] = &[
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

/// 02 provision-control values, filled from the ledger (R2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvisionControl {
    pub self_info: Option<SelfInfoReason>,
    pub non_disclosure: bool,
    pub auto_response: bool,
}

/// One `04` row.
#[derive(Clone, Debug, PartialEq)]
pub struct QualificationRow {
    pub insurer: InsurerNumber,
    pub card_symbol: Option<String>,
    pub card_number: String,
    pub branch: InsuredBranchNumber,
    pub qualification_date: Date,
    pub disqualification_date: Option<Date>,
    pub reason_of_loss: Option<ReasonOfLoss>,
    pub personal_family: PersonalFamilyClassification,
}

/// One subscriber's complete state after the run (01, 02, 04… rows).
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriberGroup {
    pub processing: ProcessingCode,
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub individual_number: Option<IndividualNumber>,
    pub name: String,
    pub name_kana: String,
    pub sex: Sex1,
    pub birthdate: Date,
    pub post_number: Option<PostNumber>,
    pub address: Option<Address>,
    pub control: ProvisionControl,
    pub qualifications: Vec<QualificationRow>,
}

/// One FlagLinkage row: an InfoCode-scoped flag as it stands after the run.
#[derive(Clone, Debug, PartialEq)]
pub struct FlagRow {
    pub insurer: InsurerNumber,
    /// None: all subscribers of the insurer (Scope 2).
    pub key: Option<SubscriberKey>,
    pub info_code: InfoCode,
    pub flag_type: FlagType,
    pub set: bool,
    pub reason: Option<SelfInfoReason>,
    pub effective_time: Timestamp,
}

/// One FukuhonLinkage row: a 副本 as registered.
#[derive(Clone, Debug, PartialEq)]
pub struct FukuhonRow {
    pub operation: FukuhonOperation,
    pub effective_date: Date,
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub info_code: InfoCode,
    pub disclosure: Option<DisclosureClassification>,
    pub items: Vec<(String, String)>,
}

/// What a written linkage file holds.
#[derive(Clone, Debug, Default)]
pub struct Written {
    pub records: u64,
    pub bytes: u64,
    /// Groups/records refused for unmappable characters: (insurer, key, characters).
    pub refused: Vec<(InsurerNumber, Option<SubscriberKey>, Vec<UnmappableChar>)>,
    /// Groups/records written with `●` (文字同定 worklist).
    pub replaced: Vec<(InsurerNumber, Option<SubscriberKey>, Vec<UnmappableChar>)>,
}

/// A layout of the three linkage files.
pub trait LinkageLayout: Sync {
    /// Streams groups (a run's groups come from the ledger one by one: memory stays bounded).
    fn subscriber_linkage(
        &self,
        header: &FileHeader,
        groups: &mut dyn Iterator<Item = SubscriberGroup>,
        out: &mut dyn Write,
    ) -> Result<Written, WriteError>;
    fn flag_linkage(
        &self,
        header: &FileHeader,
        rows: &mut dyn Iterator<Item = FlagRow>,
        out: &mut dyn Write,
    ) -> Result<Written, WriteError>;
    fn fukuhon_linkage(
        &self,
        header: &FileHeader,
        rows: &mut dyn Iterator<Item = FukuhonRow>,
        out: &mut dyn Write,
    ) -> Result<Written, WriteError>;
}

/// The layout of interchange format v1 (this project's spec).
pub struct StandardLayout {
    pub policy: UnmappablePolicy,
}

fn d(o: Option<Date>) -> String {
    o.map(|d| d.to_string()).unwrap_or_default()
}

impl StandardLayout {
    fn group_rows(g: &SubscriberGroup, id: &str) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
        let mut rows = vec![
            (
                "01",
                vec![
                    ("RecordIdentificationNumber", id.to_owned()),
                    ("ProcessingCode", g.processing.code().to_owned()),
                    ("InsurerNumber", g.insurer.to_string()),
                    ("SubscriberKey", g.key.to_string()),
                    (
                        "IndividualNumber",
                        g.individual_number.map(|n| n.expose().to_owned()).unwrap_or_default(),
                    ),
                    ("Name", g.name.clone()),
                    ("NameKana", g.name_kana.clone()),
                    ("Sex1", g.sex.code().to_owned()),
                    ("Birthdate", g.birthdate.to_string()),
                    (
                        "PostNumber",
                        g.post_number.map(|p| p.as_str().to_owned()).unwrap_or_default(),
                    ),
                    (
                        "Address",
                        g.address.as_ref().map(|a| a.expose().to_owned()).unwrap_or_default(),
                    ),
                ],
            ),
            (
                "02",
                vec![
                    ("RecordIdentificationNumber", id.to_owned()),
                    (
                        "SelfInfoProvisionProhibitedFlg",
                        self_info_column(g.control.self_info).to_owned(),
                    ),
                    (
                        "NonDisclosureFlg",
                        if g.control.non_disclosure { "1" } else { "0" }.to_owned(),
                    ),
                    (
                        "AutoResponseProhibitedFlg",
                        if g.control.auto_response { "1" } else { "0" }.to_owned(),
                    ),
                ],
            ),
        ];
        for q in &g.qualifications {
            rows.push((
                "04",
                vec![
                    ("RecordIdentificationNumber", id.to_owned()),
                    ("InsurerNumber", q.insurer.to_string()),
                    ("InsuredCardSymbol", q.card_symbol.clone().unwrap_or_default()),
                    ("InsuredIdentificationNumber", q.card_number.clone()),
                    ("InsuredBranchNumber", q.branch.to_string()),
                    ("QualificationDate", q.qualification_date.to_string()),
                    ("DisqualificationDate", d(q.disqualification_date)),
                    (
                        "ReasonOfLoss",
                        q.reason_of_loss.map(|r| r.code().to_owned()).unwrap_or_default(),
                    ),
                    ("PersonalFamilyClassification", q.personal_family.code().to_owned()),
                ],
            ));
        }
        rows
    }

    fn xml_element(kind: &str) -> &'static str {
        match kind {
            "01" => "BasicInfo",
            "02" => "ProvisionControl",
            _ => "Qualification",
        }
    }
}

impl LinkageLayout for StandardLayout {
    fn subscriber_linkage(
        &self,
        header: &FileHeader,
        groups: &mut dyn Iterator<Item = SubscriberGroup>,
        out: &mut dyn Write,
    ) -> Result<Written, WriteError> {
        let mut enc = FieldEncoder::new(header.encoding, self.policy);
        let mut buf = Vec::with_capacity(4096);
        let head = match header.format {
            Format::Csv => csv_header_row(header),
            Format::Xml => xml_header(header),
        };
        enc.push(&mut buf, "FileIdentifier", &head);
        enc.take()?;
        out.write_all(&buf)?;
        let mut w = Written {
            bytes: buf.len() as u64,
            ..Default::default()
        };
        let (mut group_count, mut row_count) = (0u64, 0u64);
        for g in groups {
            buf.clear();
            let id = (group_count + 1).to_string();
            let rows = Self::group_rows(&g, &id);
            if header.format == Format::Xml {
                buf.extend_from_slice(b"  <Subscriber>\n");
            }
            for (kind, fields) in &rows {
                match header.format {
                    Format::Csv => {
                        buf.extend_from_slice(kind.as_bytes());
                        for (name, v) in fields {
                            buf.push(b',');
                            enc.push(&mut buf, name, &csv_escape(v));
                        }
                        buf.extend_from_slice(b"\r\n");
                    }
                    Format::Xml => {
                        let el = Self::xml_element(kind);
                        buf.extend_from_slice(format!("    <{el}>\n").as_bytes());
                        for (name, v) in fields {
                            if v.is_empty() {
                                continue;
                            }
                            buf.extend_from_slice(format!("      <{name}>").as_bytes());
                            enc.push(&mut buf, name, &xml_escape(v));
                            buf.extend_from_slice(format!("</{name}>\n").as_bytes());
                        }
                        buf.extend_from_slice(format!("    </{el}>\n").as_bytes());
                    }
                }
            }
            if header.format == Format::Xml {
                buf.extend_from_slice(b"  </Subscriber>\n");
            }
            match enc.take() {
                Ok(replaced) => {
                    if !replaced.is_empty() {
                        w.replaced.push((g.insurer, Some(g.key), replaced));
                    }
                    out.write_all(&buf)?;
                    w.bytes += buf.len() as u64;
                    group_count += 1;
                    row_count += rows.len() as u64;
                }
                Err(WriteError::Unmappable(chars)) => w.refused.push((g.insurer, Some(g.key), chars)),
                Err(e) => return Err(e),
            }
        }
        let tail = match header.format {
            Format::Csv => format!("T,{group_count},{row_count}\r\n"),
            Format::Xml => format!(
                "  <FileTrailer>\n    <GroupCount>{group_count}</GroupCount>\n    <RowCount>{row_count}</RowCount>\n  </FileTrailer>\n</{}>\n",
                header.kind.root()
            ),
        };
        out.write_all(tail.as_bytes())?;
        w.bytes += tail.len() as u64;
        w.records = group_count;
        Ok(w)
    }

    fn flag_linkage(
        &self,
        header: &FileHeader,
        rows: &mut dyn Iterator<Item = FlagRow>,
        out: &mut dyn Write,
    ) -> Result<Written, WriteError> {
        let mut rw = RecordWriter::start(out, header.clone(), self.policy)?;
        for (i, r) in rows.enumerate() {
            let seq = (i + 1).to_string();
            let (ins, key, info, ty) = (
                r.insurer.to_string(),
                r.key.map(|k| k.to_string()).unwrap_or_default(),
                r.info_code.to_string(),
                r.flag_type.code(),
            );
            let time = r.effective_time.to_string();
            let vals = [
                seq.as_str(),
                &ins,
                &key,
                &info,
                ty,
                if r.set { "1" } else { "0" },
                r.reason.map_or("", |x| x.code()),
                &time,
            ];
            rw.write(&vals, &[])?;
        }
        let (_, records, bytes) = rw.finish()?;
        Ok(Written {
            records,
            bytes,
            ..Default::default()
        })
    }

    fn fukuhon_linkage(
        &self,
        header: &FileHeader,
        rows: &mut dyn Iterator<Item = FukuhonRow>,
        out: &mut dyn Write,
    ) -> Result<Written, WriteError> {
        let mut rw = RecordWriter::start(out, header.clone(), self.policy)?;
        let mut w = Written::default();
        for (i, r) in rows.enumerate() {
            let seq = (i + 1).to_string();
            let (date, ins, key, info) = (
                r.effective_date.to_string(),
                r.insurer.to_string(),
                r.key.to_string(),
                r.info_code.to_string(),
            );
            let vals = [
                seq.as_str(),
                r.operation.code(),
                &date,
                &ins,
                &key,
                &info,
                r.disclosure.map_or("", |x| x.code()),
            ];
            let items: Vec<(&str, &str)> = r.items.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            match rw.write(&vals, &items) {
                Ok(rep) if !rep.is_empty() => w.replaced.push((r.insurer, Some(r.key), rep)),
                Ok(_) => {}
                Err(WriteError::Unmappable(chars)) => w.refused.push((r.insurer, Some(r.key), chars)),
                Err(e) => return Err(e),
            }
        }
        let (_, records, bytes) = rw.finish()?;
        w.records = records;
        w.bytes = bytes;
        Ok(w)
    }
}

/// Output header for a linkage file.
pub fn linkage_header(
    kind: FileKind,
    file_identifier: String,
    sender: InsurerNumber,
    creation_time: Timestamp,
    format: Format,
    encoding: TextEncoding,
) -> FileHeader {
    FileHeader {
        kind,
        file_identifier,
        sender,
        creation_time,
        file_sequence: 1,
        format,
        encoding,
    }
}
