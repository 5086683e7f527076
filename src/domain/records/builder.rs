//! The field-by-field builder both readers share: a [`RawRecord`] of an input kind typed into a
//! [`Record`], every field checked, *all* of the record's faults collected (not the first).

use super::{
    AgeTransitionHandoff, AgeTransitionInquiry, FileKind, FlagChange, Fukuhon, RawRecord, Record, SubscriberChange,
};
use crate::domain::catalog::Catalog;
use crate::domain::codes::{
    ChangeType, DisclosureClassification, FlagOperation, FlagScope, FlagSource, FlagType, FukuhonOperation,
    PersonalFamilyClassification, ReasonOfLoss, ReasonOfQualification, SelfInfoReason, Sex1, parse_bool_flag,
    parse_self_info_column,
};
use crate::domain::dates::{Date, Timestamp};
use crate::domain::ids::{
    IndividualNumber, InfoCode, InsuredBranchNumber, InsurerNumber, MunicipalityCode, PostNumber, ResidentCode,
    SubscriberKey,
};
use crate::domain::text::{self, Address};
use crate::error::{ErrorCode, FieldError, FieldFault};

/// The raw record being typed, and the faults found so far.
struct Fields<'a> {
    kind: FileKind,
    raw: &'a RawRecord,
    faults: Vec<FieldFault>,
}

impl<'a> Fields<'a> {
    fn idx(&self, name: &str) -> usize {
        self.kind
            .fields()
            .iter()
            .position(|f| *f == name)
            .expect("field name from the kind's own list")
    }
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.raw
            .values
            .get(self.idx(name))
            .and_then(|v| v.as_deref())
            .filter(|v| !v.is_empty())
    }
    fn fault(&mut self, field: &str, error: FieldError) {
        self.faults.push(FieldFault {
            field: field.to_owned(),
            error,
        });
    }
    fn opt<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, FieldError>) -> Option<T> {
        let v = self.raw(name)?;
        match parse(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.fault(name, e);
                None
            }
        }
    }
    /// Required field: absence is `E_SCHEMA`.
    fn req<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, FieldError>) -> Option<T> {
        if self.raw(name).is_none() {
            self.fault(name, FieldError::new(ErrorCode::Schema, format!("{name} is required")));
            return None;
        }
        self.opt(name, parse)
    }
    /// Required when `cond` holds, otherwise optional.
    fn req_if<T>(
        &mut self,
        cond: bool,
        why: &str,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, FieldError>,
    ) -> Option<T> {
        if cond && self.raw(name).is_none() {
            self.fault(
                name,
                FieldError::new(ErrorCode::Schema, format!("{name} is required {why}")),
            );
            return None;
        }
        self.opt(name, parse)
    }
    fn forbid(&mut self, cond: bool, name: &str, why: &str) {
        if cond && self.raw(name).is_some() {
            self.fault(
                name,
                FieldError::new(ErrorCode::Schema, format!("{name} must be empty {why}")),
            );
        }
    }
}

fn text_field(field: &'static str, min: usize, max: usize) -> impl Fn(&str) -> Result<String, FieldError> {
    move |s| text::validate_text(s, field, min, max).map(|()| s.to_owned())
}

fn name_field(s: &str) -> Result<String, FieldError> {
    text::validate_name(s).map(|()| s.to_owned())
}

/// Types a raw record of an input kind. `seq` has been parsed by the reader (a bad
/// RecordSequence is a file-level error). Returns every fault of the record.
pub fn build(kind: FileKind, seq: u64, raw: &RawRecord, catalog: &Catalog) -> Result<Record, Vec<FieldFault>> {
    let mut f = Fields {
        kind,
        raw,
        faults: Vec::new(),
    };
    let rec = match kind {
        FileKind::SubscriberChange => build_subscriber_change(&mut f, seq).map(Record::SubscriberChange),
        FileKind::FlagChange => build_flag_change(&mut f, seq).map(Record::FlagChange),
        FileKind::Fukuhon => build_fukuhon(&mut f, seq, catalog).map(Record::Fukuhon),
        FileKind::AgeTransitionHandoff => build_handoff(&mut f, seq).map(Record::AgeTransitionHandoff),
        FileKind::AgeTransitionInquiry => build_inquiry(&mut f, seq).map(Record::AgeTransitionInquiry),
        _ => panic!("build() is for input kinds; {kind:?} is an output"),
    };
    match rec {
        Some(r) if f.faults.is_empty() => Ok(r),
        _ => {
            debug_assert!(!f.faults.is_empty());
            Err(f.faults)
        }
    }
}

fn build_subscriber_change(f: &mut Fields, seq: u64) -> Option<SubscriberChange> {
    let change_type = f.req("ChangeType", ChangeType::parse);
    let effective_date = f.req("EffectiveDate", Date::parse);
    let insurer = f.req("InsurerNumber", InsurerNumber::parse);
    let key = f.req("SubscriberKey", SubscriberKey::parse);
    let acq = change_type == Some(ChangeType::Acquisition);
    let loss = change_type == Some(ChangeType::Loss);
    const ACQ: &str = "for ChangeType 1";
    let card_symbol = f.opt("InsuredCardSymbol", text_field("InsuredCardSymbol", 0, 20));
    let card_number = f.req_if(
        acq,
        ACQ,
        "InsuredIdentificationNumber",
        text_field("InsuredIdentificationNumber", 1, 20),
    );
    let branch = f.req_if(acq, ACQ, "InsuredBranchNumber", InsuredBranchNumber::parse);
    let individual_number = f.opt("IndividualNumber", IndividualNumber::parse);
    let needs_muni = acq && insurer.is_some_and(|i| i.is_kokuho() || i.is_kouki());
    let municipality = f.req_if(
        needs_muni,
        "for 国保 and 後期 insurers",
        "MunicipalityCode",
        MunicipalityCode::parse,
    );
    let resident = f.opt("ResidentCode", ResidentCode::parse);
    let name = f.req_if(acq, ACQ, "Name", name_field);
    let name_kana = f.req_if(acq, ACQ, "NameKana", text::normalize_kana);
    let sex = f.req_if(acq, ACQ, "Sex1", Sex1::parse);
    let birthdate = f.req_if(acq, ACQ, "Birthdate", Date::parse);
    let qualification_date = f.req_if(acq, ACQ, "QualificationDate", Date::parse);
    let reason_of_qualification = f.req_if(acq, ACQ, "ReasonOfQualification", ReasonOfQualification::parse);
    let disqualification_date = f.req_if(loss, "for ChangeType 3", "DisqualificationDate", Date::parse);
    let has_disq = f.raw("DisqualificationDate").is_some();
    let reason_of_loss = f.req_if(
        has_disq,
        "with DisqualificationDate",
        "ReasonOfLoss",
        ReasonOfLoss::parse,
    );
    if !has_disq {
        f.forbid(true, "ReasonOfLoss", "without DisqualificationDate");
    }
    let personal_family = f.req_if(
        acq,
        ACQ,
        "PersonalFamilyClassification",
        PersonalFamilyClassification::parse,
    );
    let post_number = f.opt("PostNumber", PostNumber::parse);
    let address = f.opt("Address", Address::parse);
    if let (Some(q), Some(d)) = (qualification_date, disqualification_date) {
        if d < q {
            f.fault(
                "DisqualificationDate",
                FieldError::new(ErrorCode::Date, "DisqualificationDate is before QualificationDate"),
            );
        }
    }
    if let (Some(b), Some(q)) = (birthdate, qualification_date) {
        if q < b {
            f.fault(
                "QualificationDate",
                FieldError::new(ErrorCode::Date, "QualificationDate is before Birthdate"),
            );
        }
    }
    Some(SubscriberChange {
        seq,
        change_type: change_type?,
        effective_date: effective_date?,
        insurer: insurer?,
        key: key?,
        card_symbol,
        card_number,
        branch,
        individual_number,
        municipality,
        resident,
        name,
        name_kana,
        sex,
        birthdate,
        qualification_date,
        reason_of_qualification,
        disqualification_date,
        reason_of_loss,
        personal_family,
        post_number,
        address,
    })
}

fn build_flag_change(f: &mut Fields, seq: u64) -> Option<FlagChange> {
    let effective_time = f.req("EffectiveTime", Timestamp::parse);
    let flag_type = f.req("FlagType", FlagType::parse);
    let operation = f.req("Operation", FlagOperation::parse);
    let scope = f.req("Scope", FlagScope::parse);
    let insurer = f.req("InsurerNumber", InsurerNumber::parse);
    let key = f.req_if(
        scope == Some(FlagScope::Subscriber),
        "for Scope 1",
        "SubscriberKey",
        SubscriberKey::parse,
    );
    f.forbid(
        scope == Some(FlagScope::InfoCode),
        "SubscriberKey",
        "for Scope 2 (all subscribers)",
    );
    let info_code = f.req_if(
        scope == Some(FlagScope::InfoCode),
        "for Scope 2",
        "InfoCode",
        InfoCode::parse,
    );
    let is_self_info = flag_type == Some(FlagType::SelfInfoProvisionProhibited);
    let reason = f.req_if(
        is_self_info && operation == Some(FlagOperation::Set),
        "to set FlagType 3",
        "ReasonCode",
        SelfInfoReason::parse,
    );
    f.forbid(
        flag_type.is_some() && !is_self_info,
        "ReasonCode",
        "for FlagType 1 and 2",
    );
    let source = f.req("Source", FlagSource::parse);
    let support_measure_end = f.opt("SupportMeasureEndDate", Date::parse);
    f.forbid(
        source.is_some() && source != Some(FlagSource::SupportMeasure),
        "SupportMeasureEndDate",
        "unless Source is 2 (住基支援措置)",
    );
    Some(FlagChange {
        seq,
        effective_time: effective_time?,
        flag_type: flag_type?,
        operation: operation?,
        scope: scope?,
        insurer: insurer?,
        key,
        info_code,
        reason,
        source: source?,
        support_measure_end,
    })
}

fn build_fukuhon(f: &mut Fields, seq: u64, catalog: &Catalog) -> Option<Fukuhon> {
    let operation = f.req("Operation", FukuhonOperation::parse);
    let effective_date = f.req("EffectiveDate", Date::parse);
    let insurer = f.req("InsurerNumber", InsurerNumber::parse);
    let key = f.req("SubscriberKey", SubscriberKey::parse);
    let info_code = f.req("InfoCode", InfoCode::parse);
    let disclosure = f.opt("DisclosureClassification", DisclosureClassification::parse);
    if let Some(code) = info_code {
        let deleting = operation == Some(FukuhonOperation::Delete);
        for fault in catalog.check_items(code, &f.raw.items, !deleting) {
            f.faults.push(fault);
        }
    }
    Some(Fukuhon {
        seq,
        operation: operation?,
        effective_date: effective_date?,
        insurer: insurer?,
        key: key?,
        info_code: info_code?,
        disclosure,
        items: f.raw.items.clone(),
    })
}

fn build_handoff(f: &mut Fields, seq: u64) -> Option<AgeTransitionHandoff> {
    let source_insurer = f.req("SourceInsurerNumber", InsurerNumber::parse);
    let individual_number = f.opt("IndividualNumber", IndividualNumber::parse);
    let municipality = f.req("MunicipalityCode", MunicipalityCode::parse);
    let resident = f.req("ResidentCode", ResidentCode::parse);
    let name = f.req("Name", name_field);
    let name_kana = f.req("NameKana", text::normalize_kana);
    let sex = f.req("Sex1", Sex1::parse);
    let birthdate = f.req("Birthdate", Date::parse);
    let transition_date = f.req("AgeTransitionDate", Date::parse);
    let self_info = f.req("SelfInfoProvisionProhibitedFlg", parse_self_info_column);
    let non_disclosure = f.req("NonDisclosureFlg", parse_bool_flag);
    let auto_response = f.req("AutoResponseProhibitedFlg", parse_bool_flag);
    let any_flag = self_info.flatten().is_some() || non_disclosure == Some(true) || auto_response == Some(true);
    // R13: an empty SourceSubscriberKey is the answer about a person the 国保 ledger does not
    // know, which states no flag; a record with a flag set (or a flag column in error) needs it
    let flags_known_zero = self_info == Some(None) && non_disclosure == Some(false) && auto_response == Some(false);
    let source_key = f.req_if(
        !flags_known_zero,
        "unless the record answers an inquiry about an unknown person (all flags 0)",
        "SourceSubscriberKey",
        SubscriberKey::parse,
    );
    let flag_set_time = f.req_if(any_flag, "when a flag is set", "FlagSetTime", Timestamp::parse);
    if let (Some(b), Some(t)) = (birthdate, transition_date) {
        if t <= b {
            f.fault(
                "AgeTransitionDate",
                FieldError::new(ErrorCode::Date, "AgeTransitionDate is not after Birthdate"),
            );
        }
    }
    Some(AgeTransitionHandoff {
        seq,
        source_insurer: source_insurer?,
        source_key,
        individual_number,
        municipality: municipality?,
        resident: resident?,
        name: name?,
        name_kana: name_kana?,
        sex: sex?,
        birthdate: birthdate?,
        transition_date: transition_date?,
        self_info: self_info?,
        non_disclosure: non_disclosure?,
        auto_response: auto_response?,
        flag_set_time,
    })
}

fn build_inquiry(f: &mut Fields, seq: u64) -> Option<AgeTransitionInquiry> {
    let insurer = f.req("InsurerNumber", InsurerNumber::parse);
    if insurer.is_some_and(|i| !i.is_kouki()) {
        f.fault(
            "InsurerNumber",
            FieldError::new(
                ErrorCode::Code,
                "InsurerNumber of an inquiry must be a 後期 insurer (39…)",
            ),
        );
    }
    let key = f.req("SubscriberKey", SubscriberKey::parse);
    let individual_number = f.opt("IndividualNumber", IndividualNumber::parse);
    let municipality = f.req("MunicipalityCode", MunicipalityCode::parse);
    let resident = f.req("ResidentCode", ResidentCode::parse);
    let name = f.req("Name", name_field);
    let name_kana = f.req("NameKana", text::normalize_kana);
    let sex = f.req("Sex1", Sex1::parse);
    let birthdate = f.req("Birthdate", Date::parse);
    let qualification_date = f.req("QualificationDate", Date::parse);
    let reason = f.req("ReasonOfQualification", ReasonOfQualification::parse);
    if reason.is_some_and(|r| !r.is_transition()) {
        f.fault(
            "ReasonOfQualification",
            FieldError::new(ErrorCode::Code, "an inquiry is for ReasonOfQualification 01 or 02"),
        );
    }
    if let (Some(b), Some(q)) = (birthdate, qualification_date) {
        if q < b {
            f.fault(
                "QualificationDate",
                FieldError::new(ErrorCode::Date, "QualificationDate is before Birthdate"),
            );
        }
    }
    Some(AgeTransitionInquiry {
        seq,
        insurer: insurer?,
        key: key?,
        individual_number,
        municipality: municipality?,
        resident: resident?,
        name: name?,
        name_kana: name_kana?,
        sex: sex?,
        birthdate: birthdate?,
        qualification_date: qualification_date?,
        reason: reason?,
    })
}
