//! The four input record kinds, their field lists (same order in XML and CSV), and the
//! field-by-field builder both readers share ([`builder`]: [`build`] collects *all* of a
//! record's errors).

mod builder;

pub use builder::build;

use super::codes::{
    ChangeType, DisclosureClassification, FlagOperation, FlagScope, FlagSource, FlagType, FukuhonOperation,
    PersonalFamilyClassification, ReasonOfLoss, ReasonOfQualification, SelfInfoReason, Sex1,
};
use super::dates::{Date, Timestamp};
use super::ids::{
    IndividualNumber, InfoCode, InsuredBranchNumber, InsurerNumber, MunicipalityCode, PostNumber, ResidentCode,
    SubscriberKey,
};
use super::text::Address;

/// File kinds of the spec. The first four are inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum FileKind {
    SubscriberChange,
    FlagChange,
    Fukuhon,
    AgeTransitionHandoff,
    /// R13 registration inquiry: written by the union's run, read by `age-transition answer`.
    AgeTransitionInquiry,
    SubscriberLinkage,
    FlagLinkage,
    FukuhonLinkage,
}

impl FileKind {
    /// Kinds the readers accept (AgeTransitionInquiry is read by `age-transition answer` and
    /// `validate`; `run` refuses it).
    pub const INPUTS: [FileKind; 5] = [
        FileKind::SubscriberChange,
        FileKind::FlagChange,
        FileKind::Fukuhon,
        FileKind::AgeTransitionHandoff,
        FileKind::AgeTransitionInquiry,
    ];
    pub const ALL: [FileKind; 8] = [
        FileKind::SubscriberChange,
        FileKind::FlagChange,
        FileKind::Fukuhon,
        FileKind::AgeTransitionHandoff,
        FileKind::AgeTransitionInquiry,
        FileKind::SubscriberLinkage,
        FileKind::FlagLinkage,
        FileKind::FukuhonLinkage,
    ];
    /// Name used in CSV headers and as the XML record element.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::SubscriberChange => "SubscriberChange",
            FileKind::FlagChange => "FlagChange",
            FileKind::Fukuhon => "Fukuhon",
            FileKind::AgeTransitionHandoff => "AgeTransitionHandoff",
            FileKind::AgeTransitionInquiry => "AgeTransitionInquiry",
            FileKind::SubscriberLinkage => "SubscriberLinkage",
            FileKind::FlagLinkage => "FlagLinkage",
            FileKind::FukuhonLinkage => "FukuhonLinkage",
        }
    }
    /// XML root element name.
    pub fn root(self) -> &'static str {
        match self {
            FileKind::SubscriberChange => "SubscriberChangeFile",
            FileKind::FlagChange => "FlagChangeFile",
            FileKind::Fukuhon => "FukuhonFile",
            FileKind::AgeTransitionHandoff => "AgeTransitionHandoffFile",
            FileKind::AgeTransitionInquiry => "AgeTransitionInquiryFile",
            FileKind::SubscriberLinkage => "SubscriberLinkageFile",
            FileKind::FlagLinkage => "FlagLinkageFile",
            FileKind::FukuhonLinkage => "FukuhonLinkageFile",
        }
    }
    pub fn from_name(s: &str) -> Option<FileKind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
    pub fn from_root(s: &str) -> Option<FileKind> {
        Self::ALL.into_iter().find(|k| k.root() == s)
    }
    pub fn is_input(self) -> bool {
        Self::INPUTS.contains(&self)
    }
    /// Data fields in order, RecordSequence first. Fukuhon's item pairs follow the last one.
    /// SubscriberLinkage has grouped rows instead (see the linkage writer).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            FileKind::SubscriberChange => SUBSCRIBER_CHANGE_FIELDS,
            FileKind::FlagChange => FLAG_CHANGE_FIELDS,
            FileKind::Fukuhon | FileKind::FukuhonLinkage => FUKUHON_FIELDS,
            FileKind::AgeTransitionHandoff => HANDOFF_FIELDS,
            FileKind::AgeTransitionInquiry => INQUIRY_FIELDS,
            FileKind::FlagLinkage => FLAG_LINKAGE_FIELDS,
            FileKind::SubscriberLinkage => &[],
        }
    }
    /// Whether records end with repeated `ItemCode,Value` pairs (`<Items>` in XML).
    pub fn has_items(self) -> bool {
        matches!(self, FileKind::Fukuhon | FileKind::FukuhonLinkage)
    }
}

pub const SUBSCRIBER_CHANGE_FIELDS: &[&str] = &[
    "RecordSequence",
    "ChangeType",
    "EffectiveDate",
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
];

pub const FLAG_CHANGE_FIELDS: &[&str] = &[
    "RecordSequence",
    "EffectiveTime",
    "FlagType",
    "Operation",
    "Scope",
    "InsurerNumber",
    "SubscriberKey",
    "InfoCode",
    "ReasonCode",
    "Source",
    "SupportMeasureEndDate",
];

pub const FUKUHON_FIELDS: &[&str] = &[
    "RecordSequence",
    "Operation",
    "EffectiveDate",
    "InsurerNumber",
    "SubscriberKey",
    "InfoCode",
    "DisclosureClassification",
];

pub const HANDOFF_FIELDS: &[&str] = &[
    "RecordSequence",
    "SourceInsurerNumber",
    "SourceSubscriberKey",
    "IndividualNumber",
    "MunicipalityCode",
    "ResidentCode",
    "Name",
    "NameKana",
    "Sex1",
    "Birthdate",
    "AgeTransitionDate",
    "SelfInfoProvisionProhibitedFlg",
    "NonDisclosureFlg",
    "AutoResponseProhibitedFlg",
    "FlagSetTime",
];

/// AgeTransitionInquiry (R13): a 後期 registration (reason 01/02) the union could not match.
pub const INQUIRY_FIELDS: &[&str] = &[
    "RecordSequence",
    "InsurerNumber",
    "SubscriberKey",
    "IndividualNumber",
    "MunicipalityCode",
    "ResidentCode",
    "Name",
    "NameKana",
    "Sex1",
    "Birthdate",
    "QualificationDate",
    "ReasonOfQualification",
];

/// FlagLinkage (our output, §4): the InfoCode-scoped flags as they stand after the run.
pub const FLAG_LINKAGE_FIELDS: &[&str] = &[
    "RecordSequence",
    "InsurerNumber",
    "SubscriberKey",
    "InfoCode",
    "FlagType",
    "FlagValue",
    "ReasonCode",
    "EffectiveTime",
];

/// 加入者異動. Beyond the keys every field is optional in the type: which ones are required
/// depends on ChangeType (checked by [`build`]); in a 記載事項変更 an absent field keeps its value.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriberChange {
    pub seq: u64,
    pub change_type: ChangeType,
    pub effective_date: Date,
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub card_symbol: Option<String>,
    pub card_number: Option<String>,
    pub branch: Option<InsuredBranchNumber>,
    pub individual_number: Option<IndividualNumber>,
    pub municipality: Option<MunicipalityCode>,
    pub resident: Option<ResidentCode>,
    pub name: Option<String>,
    pub name_kana: Option<String>,
    pub sex: Option<Sex1>,
    pub birthdate: Option<Date>,
    pub qualification_date: Option<Date>,
    pub reason_of_qualification: Option<ReasonOfQualification>,
    pub disqualification_date: Option<Date>,
    pub reason_of_loss: Option<ReasonOfLoss>,
    pub personal_family: Option<PersonalFamilyClassification>,
    pub post_number: Option<PostNumber>,
    pub address: Option<Address>,
}

/// What a 資格取得 (ChangeType 1) carries beyond its keys: the fields [`build`] requires for
/// it, typed. [`SubscriberChange::acquisition`] gives them for an acquisition that has them all
/// (every one [`build`] accepts), so a caller never unwraps a field validation has checked.
#[derive(Clone, Debug, PartialEq)]
pub struct AcquisitionFields {
    pub card_number: String,
    pub branch: InsuredBranchNumber,
    pub name: String,
    pub name_kana: String,
    pub sex: Sex1,
    pub birthdate: Date,
    pub qualification_date: Date,
    pub reason_of_qualification: ReasonOfQualification,
    pub personal_family: PersonalFamilyClassification,
}

/// The fields [`AcquisitionFields`] holds, as [`build`] names them.
pub const ACQUISITION_FIELDS: [&str; 9] = [
    "InsuredIdentificationNumber",
    "InsuredBranchNumber",
    "Name",
    "NameKana",
    "Sex1",
    "Birthdate",
    "QualificationDate",
    "ReasonOfQualification",
    "PersonalFamilyClassification",
];

impl SubscriberChange {
    /// The required fields of a 資格取得, when it is one and has them all (`build` refuses an
    /// acquisition without them, naming each missing field).
    pub fn acquisition(&self) -> Option<AcquisitionFields> {
        if self.change_type != ChangeType::Acquisition {
            return None;
        }
        self.required_acquisition_fields()
    }

    /// The fields a 資格取得 requires, whatever this change's type (`migrate` types a held state
    /// as an acquisition); `None` when one is missing.
    pub fn required_acquisition_fields(&self) -> Option<AcquisitionFields> {
        Some(AcquisitionFields {
            card_number: self.card_number.clone()?,
            branch: self.branch?,
            name: self.name.clone()?,
            name_kana: self.name_kana.clone()?,
            sex: self.sex?,
            birthdate: self.birthdate?,
            qualification_date: self.qualification_date?,
            reason_of_qualification: self.reason_of_qualification?,
            personal_family: self.personal_family?,
        })
    }

    /// A change naming only its keys: every optional field absent (keeps the ledger's values).
    pub fn keys_only(
        seq: u64,
        change_type: ChangeType,
        effective_date: Date,
        insurer: InsurerNumber,
        key: SubscriberKey,
    ) -> SubscriberChange {
        SubscriberChange {
            seq,
            change_type,
            effective_date,
            insurer,
            key,
            card_symbol: None,
            card_number: None,
            branch: None,
            individual_number: None,
            municipality: None,
            resident: None,
            name: None,
            name_kana: None,
            sex: None,
            birthdate: None,
            qualification_date: None,
            reason_of_qualification: None,
            disqualification_date: None,
            reason_of_loss: None,
            personal_family: None,
            post_number: None,
            address: None,
        }
    }
}

/// フラグ設定
#[derive(Clone, Debug, PartialEq)]
pub struct FlagChange {
    pub seq: u64,
    pub effective_time: Timestamp,
    pub flag_type: FlagType,
    pub operation: FlagOperation,
    pub scope: FlagScope,
    pub insurer: InsurerNumber,
    pub key: Option<SubscriberKey>,
    pub info_code: Option<InfoCode>,
    pub reason: Option<SelfInfoReason>,
    pub source: FlagSource,
    pub support_measure_end: Option<Date>,
}

/// 副本
#[derive(Clone, Debug, PartialEq)]
pub struct Fukuhon {
    pub seq: u64,
    pub operation: FukuhonOperation,
    pub effective_date: Date,
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub info_code: InfoCode,
    pub disclosure: Option<DisclosureClassification>,
    /// (ItemCode, Value) in file order, validated against the layout catalog.
    pub items: Vec<(String, String)>,
}

/// 年齢到達引継: a flagged 国保 member about to move to 後期, or the 国保 side's answer to a
/// registration inquiry (R13).
#[derive(Clone, Debug, PartialEq)]
pub struct AgeTransitionHandoff {
    pub seq: u64,
    pub source_insurer: InsurerNumber,
    /// `None` only in the answer about a person the 国保 ledger does not know: all three flags
    /// `0` (the extract writes flagged members only, so a record without flags is an answer).
    pub source_key: Option<SubscriberKey>,
    pub individual_number: Option<IndividualNumber>,
    pub municipality: MunicipalityCode,
    pub resident: ResidentCode,
    pub name: String,
    pub name_kana: String,
    pub sex: Sex1,
    pub birthdate: Date,
    pub transition_date: Date,
    pub self_info: Option<SelfInfoReason>,
    pub non_disclosure: bool,
    pub auto_response: bool,
    pub flag_set_time: Option<Timestamp>,
}

impl AgeTransitionHandoff {
    /// Whether any of the three flags is set (a record without flags is an answer, R13).
    pub fn any_flag(&self) -> bool {
        self.self_info.is_some() || self.non_disclosure || self.auto_response
    }
}

/// 年齢到達照会 (R13): the union asks the 国保 side about a registration it cannot match.
#[derive(Clone, Debug, PartialEq)]
pub struct AgeTransitionInquiry {
    pub seq: u64,
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub individual_number: Option<IndividualNumber>,
    pub municipality: MunicipalityCode,
    pub resident: ResidentCode,
    pub name: String,
    pub name_kana: String,
    pub sex: Sex1,
    pub birthdate: Date,
    pub qualification_date: Date,
    pub reason: ReasonOfQualification,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    SubscriberChange(SubscriberChange),
    FlagChange(FlagChange),
    Fukuhon(Fukuhon),
    AgeTransitionHandoff(AgeTransitionHandoff),
    AgeTransitionInquiry(AgeTransitionInquiry),
}

impl Record {
    pub fn seq(&self) -> u64 {
        match self {
            Record::SubscriberChange(r) => r.seq,
            Record::FlagChange(r) => r.seq,
            Record::Fukuhon(r) => r.seq,
            Record::AgeTransitionHandoff(r) => r.seq,
            Record::AgeTransitionInquiry(r) => r.seq,
        }
    }
}

/// One record as read, before typing: values by field index (empty = absent, already decoded),
/// plus Fukuhon item pairs.
#[derive(Clone, Debug, Default)]
pub struct RawRecord {
    pub values: Vec<Option<String>>,
    pub items: Vec<(String, String)>,
}
