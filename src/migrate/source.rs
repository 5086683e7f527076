//! What every migration source yields: one desired full subscriber state per source record,
//! validated with the same domain parsers as any input (check digits, dates, kana).

use crate::domain::{
    ACQUISITION_FIELDS, AcquisitionFields, Catalog, ChangeType, Date, FieldFault, FileKind, FlagType,
    InsuredBranchNumber, InsurerNumber, PersonalFamilyClassification, RawRecord, ReasonOfLoss, ReasonOfQualification,
    Record, SUBSCRIBER_CHANGE_FIELDS, SelfInfoReason, SubscriberChange, SubscriberKey, Timestamp, build,
    parse_bool_flag, parse_self_info_column,
};
use crate::error::{Diagnostic, ErrorCode, FieldError};
use crate::formats::TextEncoding;
use crate::formats::decode::StrictDecoder;
use crate::formats::linkage_reader::raw_csv;
pub use crate::formats::linkage_reader::raw_csv::{field_text, strip_cr};
use std::collections::HashMap;
use std::io::Read;

/// The whole-subscriber flags a source states (`02` row or legacy flag columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DesiredFlags {
    pub self_info: Option<SelfInfoReason>,
    pub non_disclosure: bool,
    pub auto_response: bool,
}

impl DesiredFlags {
    /// Whether the source holds flag `t`.
    pub fn holds(&self, t: FlagType) -> bool {
        match t {
            FlagType::SelfInfoProvisionProhibited => self.self_info.is_some(),
            FlagType::NonDisclosure => self.non_disclosure,
            FlagType::AutoResponseProhibited => self.auto_response,
        }
    }
}

/// One qualification period as the source states it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredPeriod {
    pub card_symbol: Option<String>,
    pub card_number: String,
    pub branch: InsuredBranchNumber,
    pub qualification_date: Date,
    /// None when the source format does not carry it (a snapshot): never compared then.
    pub reason_of_qualification: Option<ReasonOfQualification>,
    pub disqualification_date: Option<Date>,
    pub reason_of_loss: Option<ReasonOfLoss>,
    pub personal_family: PersonalFamilyClassification,
}

/// A source record: the full state the source holds for one subscriber.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Ordinal of the record in the source (1, 2, …) and its line.
    pub seq: u64,
    pub line: u64,
    /// Identity fields (and the first period) as a validated 資格取得.
    pub base: SubscriberChange,
    /// Oldest first; at least one.
    pub periods: Vec<DesiredPeriod>,
    pub flags: DesiredFlags,
}

/// What a source reader hands over per record.
#[derive(Debug)]
pub enum SourceItem {
    Record(Box<Desired>),
    /// All of the record's errors; `key` when the subscriber could still be identified.
    Rejected {
        key: Option<(InsurerNumber, SubscriberKey)>,
        faults: Vec<Diagnostic>,
    },
}

/// A source read to its end.
#[derive(Clone, Debug)]
pub struct SourceSummary {
    /// `SubscriberLinkage` (snapshot) or `legacy`.
    pub kind: String,
    pub format: String,
    pub encoding: TextEncoding,
    pub records: u64,
    pub sha256: [u8; 32],
    /// The snapshot's CreationTime, when it has one.
    pub creation_time: Option<Timestamp>,
}

/// Spec field names a source can give for a subscriber (SubscriberChange fields without the
/// per-record ones), plus the three `02` flag columns.
pub const SUBSCRIBER_FIELDS: &[&str] = &[
    "InsurerNumber",
    "SubscriberKey",
    "InsuredCardSymbol",
    "InsuredIdentificationNumber",
    "InsuredBranchNumber",
    "IndividualNumber",
    "MunicipalityCode",
    "ResidentCode",
    "Name",
    "NameKana",
    "Sex1",
    "Birthdate",
    "QualificationDate",
    "ReasonOfQualification",
    "DisqualificationDate",
    "ReasonOfLoss",
    "PersonalFamilyClassification",
    "PostNumber",
    "Address",
    "SelfInfoProvisionProhibitedFlg",
    "NonDisclosureFlg",
    "AutoResponseProhibitedFlg",
];

/// Validates identity + one period (values by spec field name, already decoded) as a 資格取得.
/// `muni_optional`: the source format cannot carry MunicipalityCode (a snapshot), so its absence
/// is decided later (required only for a new subscriber): the record is then typed as a
/// 記載事項変更 and the other 資格取得 requirements are checked here.
pub fn build_acquisition(
    seq: u64,
    as_of: Date,
    vals: &HashMap<&str, String>,
    catalog: &Catalog,
    muni_optional: bool,
) -> Result<Acquired, Vec<FieldFault>> {
    let date = as_of.to_string();
    let present = |f: &str| vals.get(f).filter(|v| !v.is_empty()).cloned();
    let raw = RawRecord {
        values: SUBSCRIBER_CHANGE_FIELDS
            .iter()
            .map(|f| match *f {
                "RecordSequence" => Some(seq.to_string()),
                "ChangeType" => Some(if muni_optional { "2" } else { "1" }.to_owned()),
                "EffectiveDate" => Some(date.clone()),
                f => present(f),
            })
            .collect(),
        items: Vec::new(),
    };
    let missing = || -> Vec<FieldFault> {
        ACQUISITION_FIELDS
            .iter()
            .filter(|f| present(f).is_none())
            .map(|f| FieldFault {
                field: (*f).into(),
                error: FieldError::new(ErrorCode::Schema, format!("{f} is required")),
            })
            .collect()
    };
    // typed as a 記載事項変更, the record's 資格取得 requirements are checked here
    let mut faults = if muni_optional { missing() } else { Vec::new() };
    match build(FileKind::SubscriberChange, seq, &raw, catalog) {
        Ok(Record::SubscriberChange(mut c)) if faults.is_empty() => {
            c.change_type = ChangeType::Acquisition;
            match c.acquisition() {
                Some(fields) => Ok(Acquired { change: c, fields }),
                None => Err(missing()),
            }
        }
        Ok(_) => Err(faults),
        Err(f) => {
            faults.extend(f);
            Err(faults)
        }
    }
}

/// A validated 資格取得: the change, and its required fields typed.
pub struct Acquired {
    pub change: SubscriberChange,
    pub fields: AcquisitionFields,
}

/// The period part of a validated 資格取得.
pub fn period_of(a: &Acquired, reason_known: bool) -> DesiredPeriod {
    let (c, f) = (&a.change, &a.fields);
    DesiredPeriod {
        card_symbol: c.card_symbol.clone(),
        card_number: f.card_number.clone(),
        branch: f.branch,
        qualification_date: f.qualification_date,
        reason_of_qualification: Some(f.reason_of_qualification).filter(|_| reason_known),
        disqualification_date: c.disqualification_date,
        reason_of_loss: c.reason_of_loss,
        personal_family: f.personal_family,
    }
}

/// Parses the three flag columns (empty = not set).
pub fn parse_flags(vals: &HashMap<&str, String>, faults: &mut Vec<FieldFault>) -> DesiredFlags {
    let get = |f: &str| vals.get(f).map(String::as_str).filter(|v| !v.is_empty()).unwrap_or("0");
    let mut fault = |field: &str, error: FieldError| {
        faults.push(FieldFault {
            field: field.into(),
            error,
        })
    };
    let self_info = parse_self_info_column(get("SelfInfoProvisionProhibitedFlg")).unwrap_or_else(|e| {
        fault("SelfInfoProvisionProhibitedFlg", e);
        None
    });
    let mut b = |f: &str| {
        parse_bool_flag(get(f)).unwrap_or_else(|e| {
            fault(f, e);
            false
        })
    };
    DesiredFlags {
        self_info,
        non_disclosure: b("NonDisclosureFlg"),
        auto_response: b("AutoResponseProhibitedFlg"),
    }
}

/// Field faults of one record as diagnostics.
pub fn diags(display: &str, seq: u64, line: u64, faults: Vec<FieldFault>) -> Vec<Diagnostic> {
    faults
        .into_iter()
        .map(|f| {
            Diagnostic::new(display, f.error.code, f.error.message)
                .line(line)
                .seq(seq)
                .field(f.field)
        })
        .collect()
}

/// A csv error on a stream read through [`StrictDecoder`], as a file-level diagnostic.
pub fn csv_error<R: Read>(display: &str, e: &csv::Error, dec: &StrictDecoder<R>) -> Diagnostic {
    raw_csv::csv_error(e, dec).diagnostic(display)
}
