//! The strict typer's steps: a header, a SubscriberLinkage group, a FlagLinkage or
//! FukuhonLinkage row, and the trailer counts, from the raw values of this program's own output.
//! Messages name the row and the field, never a value.

use super::raw::{RawRow, RowKind};
use crate::domain::{
    Address, Date, DisclosureClassification, FileKind, FlagType, FukuhonOperation, IndividualNumber, InfoCode,
    InsuredBranchNumber, InsurerNumber, PersonalFamilyClassification, PostNumber, ProcessingCode, ReasonOfLoss,
    SelfInfoReason, Sex1, SubscriberKey, Timestamp, parse_bool_flag, parse_self_info_column,
};
use crate::error::FieldError;
use crate::formats::linkage::{FlagRow, FukuhonRow, ProvisionControl, QualificationRow, SubscriberGroup};
use crate::formats::{FileHeader, Format, TextEncoding};
use anyhow::{Result, anyhow, bail};
use std::iter::Peekable;

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

/// The header from its four values (absent = empty).
pub(super) fn header_of(
    kind: FileKind,
    format: Format,
    encoding: TextEncoding,
    values: &[Option<String>; 4],
) -> Result<FileHeader> {
    let [id, sender, ctime, fseq] = values.each_ref().map(|v| v.as_deref().unwrap_or(""));
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

fn count(v: Option<&String>, what: &str) -> Result<u64> {
    v.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("trailer: {what} is not a number"))
}

/// SubscriberLinkage trailer: GroupCount and RowCount against what was read.
pub(super) fn check_groups(trailer: &[String], groups: u64, rows: u64) -> Result<()> {
    if trailer.len() != 2 {
        bail!("trailer: GroupCount and RowCount expected");
    }
    if count(trailer.first(), "GroupCount")? != groups || count(trailer.get(1), "RowCount")? != rows {
        bail!("trailer counts differ from the groups and rows read");
    }
    Ok(())
}

/// FlagLinkage / FukuhonLinkage trailer: RecordCount against what was read.
pub(super) fn check_records(trailer: &[String], n: u64) -> Result<()> {
    if trailer.len() != 1 || count(trailer.first(), "RecordCount")? != n {
        bail!("trailer RecordCount differs from the records read");
    }
    Ok(())
}

fn check_shape(r: &RawRow, kind: RowKind) -> Result<()> {
    let cols = kind.columns(FileKind::SubscriberLinkage);
    if r.kind != kind || r.values.len() != cols.len() {
        bail!(
            "row {}: expected a {} row of {} columns",
            r.at,
            kind.code(),
            cols.len() + 1
        );
    }
    Ok(())
}

/// One group from the rows of one subscriber (a `<Subscriber>` element, or the CSV rows from a
/// `01` row to the last `04` row after it), the `ordinal`th.
pub(super) fn group_of(rows: Vec<RawRow>, ordinal: u64) -> Result<SubscriberGroup> {
    let mut it = rows.into_iter().peekable();
    let b = it.next().ok_or_else(|| anyhow!("group {ordinal}: no 01 row"))?;
    let (c, quals) = rows_after(&b, &mut it, ordinal)?;
    if let Some(r) = it.next().filter(|_| !quals.is_empty()) {
        bail!(
            "row {}: a {} row after the 04 rows of group {ordinal}",
            r.at,
            r.kind.code()
        );
    }
    parse_group(ordinal, &b, &c, &quals)
}

/// The `02` row after the `01` row `b` and the `04` rows that follow it, shapes checked.
pub(super) fn rows_after(
    b: &RawRow,
    it: &mut Peekable<impl Iterator<Item = RawRow>>,
    ordinal: u64,
) -> Result<(RawRow, Vec<RawRow>)> {
    check_shape(b, RowKind::Basic)?;
    let c = it
        .next()
        .ok_or_else(|| anyhow!("group {ordinal}: no 02 row after the 01 row"))?;
    check_shape(&c, RowKind::Control)?;
    let mut quals = Vec::new();
    while it.peek().is_some_and(|r| r.kind == RowKind::Qualification) {
        let q = it.next().expect("peeked");
        check_shape(&q, RowKind::Qualification)?;
        quals.push(q);
    }
    Ok((c, quals))
}

/// The group of a `01`, a `02` and its `04` rows, shapes checked.
pub(super) fn parse_group(ordinal: u64, b: &RawRow, c: &RawRow, quals: &[RawRow]) -> Result<SubscriberGroup> {
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
        control: control(c)?,
        qualifications: quals.iter().map(qualification).collect::<Result<_>>()?,
    })
}

fn control(c: &RawRow) -> Result<ProvisionControl> {
    Ok(ProvisionControl {
        self_info: field(
            parse_self_info_column(&c.values[1]),
            "SelfInfoProvisionProhibitedFlg",
            c.at,
        )?,
        non_disclosure: field(parse_bool_flag(&c.values[2]), "NonDisclosureFlg", c.at)?,
        auto_response: field(parse_bool_flag(&c.values[3]), "AutoResponseProhibitedFlg", c.at)?,
    })
}

fn qualification(q: &RawRow) -> Result<QualificationRow> {
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
}

fn check_seq(r: &RawRow, kind: FileKind, ordinal: u64) -> Result<()> {
    if r.kind != RowKind::Record || r.values.len() != kind.fields().len() {
        bail!("row {}: expected a D row of {} columns", r.at, kind.fields().len() + 1);
    }
    if r.values[0] != ordinal.to_string() {
        bail!("record {}: RecordSequence is not {ordinal}", r.at);
    }
    Ok(())
}

pub(super) fn flag_row(r: &RawRow, ordinal: u64) -> Result<FlagRow> {
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

pub(super) fn fukuhon_row(r: &RawRow, ordinal: u64) -> Result<FukuhonRow> {
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
