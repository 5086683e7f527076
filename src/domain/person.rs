//! The state of one subscriber (one enrollment at one insurer): what the ledger stores and the
//! engine changes while a run applies events to it (loaded from the ledger, changed by the
//! engine, stored back in one transaction), and the 副本 changes it publishes.

use super::{
    Address, AgeTransitionHandoff, Date, DisclosureClassification, FlagSource, FlagType, FukuhonOperation,
    IndividualNumber, InfoCode, InsuredBranchNumber, InsurerNumber, MunicipalityCode, PersonalFamilyClassification,
    PostNumber, ReasonOfLoss, ReasonOfQualification, ResidentCode, SelfInfoReason, Sex1, SubscriberKey, Timestamp,
};
use std::collections::BTreeMap;

/// Where an enrollment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Lost,
    /// 取消: erroneous enrollment removed (ProcessingCode 15).
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Lost => "lost",
            Status::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "active" => Some(Status::Active),
            "lost" => Some(Status::Lost),
            "cancelled" => Some(Status::Cancelled),
            _ => None,
        }
    }
}

/// One qualification period (`04` row).
#[derive(Clone, Debug, PartialEq)]
pub struct Period {
    pub card_symbol: Option<String>,
    pub card_number: String,
    pub branch: InsuredBranchNumber,
    pub qualification_date: Date,
    pub reason_of_qualification: ReasonOfQualification,
    pub disqualification_date: Option<Date>,
    pub reason_of_loss: Option<ReasonOfLoss>,
    pub personal_family: PersonalFamilyClassification,
}

/// A flag held on a subscriber (whole subscriber when `info_code` is None).
#[derive(Clone, Debug, PartialEq)]
pub struct Flag {
    pub reason: Option<SelfInfoReason>,
    pub source: FlagSource,
    pub effective_time: Timestamp,
    pub support_measure_end: Option<Date>,
    /// Provenance: `file#RecordSequence`, or `carry:<insurer>/<key>`.
    pub origin: String,
}

/// Key of a flag on a subscriber: (InfoCode narrowing, type).
pub type FlagKey = (Option<InfoCode>, FlagType);

/// The latest release of a flag that is not set now (R1a: a later-arriving event older than this
/// is stale; R2: FlagLinkage dates the release with this time).
#[derive(Clone, Debug, PartialEq)]
pub struct Released {
    pub effective_time: Timestamp,
    /// Provenance of the release: `file#RecordSequence`.
    pub origin: String,
}

/// One enrollment (加入者) at one insurer.
#[derive(Clone, Debug, PartialEq)]
pub struct Enrollment {
    pub insurer: InsurerNumber,
    pub key: SubscriberKey,
    pub individual_number: Option<IndividualNumber>,
    pub municipality: Option<MunicipalityCode>,
    pub resident: Option<ResidentCode>,
    pub name: String,
    pub name_kana: String,
    pub sex: Sex1,
    pub birthdate: Date,
    pub post_number: Option<PostNumber>,
    pub address: Option<Address>,
    pub periods: Vec<Period>,
    pub status: Status,
    /// Whether the server holds a registration of this subscriber (decides ProcessingCode 11 vs
    /// 12). Only a published group changes it: a withheld or refused one never does (R14).
    pub published: bool,
    /// The ledger holds a state of this subscriber the server has not been sent yet (withheld,
    /// refused for a character): every later run writes it until it is published (R14).
    pub unsent: bool,
    pub flags: BTreeMap<FlagKey, Flag>,
    /// Flags released and not set again, with the release's time (R1a). Never both here and in
    /// `flags` for one key.
    pub released: BTreeMap<FlagKey, Released>,
}

impl Enrollment {
    pub fn flag(&self, t: FlagType) -> Option<&Flag> {
        self.flags.get(&(None, t))
    }
    /// The 自己情報提供不可 ReasonCode to state for this subscriber, if the flag is set. A flag
    /// stored without a reason (only possible for data that predates the reason) is stated as `1`
    /// (提供対象外（情報提供者都合）), never as `0`.
    pub fn self_info_reason(&self) -> Option<SelfInfoReason> {
        self.flag(FlagType::SelfInfoProvisionProhibited)
            .map(|f| f.reason.unwrap_or(SelfInfoReason::ProviderReason))
    }
    /// Both 自己情報提供不可 and 不開示該当 set on the whole subscriber: nothing a carry could add.
    pub fn has_protective_flag_pair(&self) -> bool {
        self.flag(FlagType::SelfInfoProvisionProhibited).is_some() && self.flag(FlagType::NonDisclosure).is_some()
    }
    /// 自己情報提供不可 or 不開示該当 set on the whole subscriber.
    pub fn has_protective_flag(&self) -> bool {
        self.flag(FlagType::SelfInfoProvisionProhibited).is_some() || self.flag(FlagType::NonDisclosure).is_some()
    }
    /// The EffectiveTime of the flag's current state: of the set that holds it, or of the
    /// release that cleared it (R1a).
    pub fn flag_state_time(&self, k: &FlagKey) -> Option<Timestamp> {
        self.flags
            .get(k)
            .map(|f| f.effective_time)
            .or_else(|| self.released.get(k).map(|r| r.effective_time))
    }
    pub fn current_period(&self) -> Option<&Period> {
        self.periods.last()
    }
    /// The person keys used for matching across insurers (R3, R5).
    pub fn person(&self) -> PersonKey {
        PersonKey {
            individual_number: self.individual_number,
            municipality: self.municipality,
            resident: self.resident.clone(),
            birthdate: self.birthdate,
        }
    }
    /// Active on date `d`: a period covers it.
    pub fn active_on(&self, d: Date) -> bool {
        self.status != Status::Cancelled
            && self
                .periods
                .iter()
                .any(|p| p.qualification_date <= d && p.disqualification_date.is_none_or(|x| x >= d))
    }
}

/// The keys whose flag differs between `before` and `after` (set, released, or set again with
/// other values), in key order, with the flag on each side.
pub fn flag_diff<'a, K: Ord>(
    before: &'a BTreeMap<K, Flag>,
    after: &'a BTreeMap<K, Flag>,
) -> Vec<(&'a K, Option<&'a Flag>, Option<&'a Flag>)> {
    before
        .keys()
        .chain(after.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|k| (k, before.get(k), after.get(k)))
        .filter(|(_, b, a)| b != a)
        .collect()
}

/// What identifies a person across insurers: My Number when both sides have one, otherwise
/// (MunicipalityCode, ResidentCode, Birthdate) — the 宛名番号 is shared by a municipality's 国保 and
/// 後期 sections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PersonKey {
    pub individual_number: Option<IndividualNumber>,
    pub municipality: Option<MunicipalityCode>,
    pub resident: Option<ResidentCode>,
    pub birthdate: Date,
}

/// Which rule matched two records of the same person (report.json `carries[].rule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MatchRule {
    #[serde(rename = "individual_number")]
    IndividualNumber,
    #[serde(rename = "municipality_resident_birthdate")]
    ResidentCode,
}

/// Where the 国保 side of a carry came from (report.json `carries[].via`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CarryVia {
    /// A 国保 enrollment in the ledger.
    Ledger,
    /// An AgeTransitionHandoff record (stored or of this run).
    Handoff,
    /// The ledger's enrollment and a hand-off for it, united.
    #[serde(rename = "ledger+handoff")]
    LedgerAndHandoff,
    /// A protective flag set at the 国保 after the registration was made (a late carry).
    FlagAfterRegistration,
}

impl CarryVia {
    /// The name report.json and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            CarryVia::Ledger => "ledger",
            CarryVia::Handoff => "handoff",
            CarryVia::LedgerAndHandoff => "ledger+handoff",
            CarryVia::FlagAfterRegistration => "flag_after_registration",
        }
    }
}

impl std::fmt::Display for CarryVia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PersonKey {
    /// The person an AgeTransitionHandoff record names (R3 keys).
    pub fn of_handoff(h: &AgeTransitionHandoff) -> PersonKey {
        PersonKey {
            individual_number: h.individual_number,
            municipality: Some(h.municipality),
            resident: Some(h.resident.clone()),
            birthdate: h.birthdate,
        }
    }

    /// Same municipality, 宛名番号 and birthdate, but both My Numbers present and different: R3
    /// does not match them, yet a mistyped number must not hide a victim (review, or an answer
    /// that states the flags and says so).
    pub fn resident_match_only(&self, other: &PersonKey) -> bool {
        self.individual_number.is_some()
            && other.individual_number.is_some()
            && self.individual_number != other.individual_number
            && self.municipality.is_some()
            && self.resident.is_some()
            && self.municipality == other.municipality
            && self.resident == other.resident
            && self.birthdate == other.birthdate
    }

    /// R3 matching: by My Number when both have one, else by municipality + 宛名番号 + birthdate.
    pub fn matches(&self, other: &PersonKey) -> Option<MatchRule> {
        match (self.individual_number, other.individual_number) {
            (Some(a), Some(b)) => (a == b).then_some(MatchRule::IndividualNumber),
            _ => (self.municipality.is_some()
                && self.resident.is_some()
                && self.municipality == other.municipality
                && self.resident == other.resident
                && self.birthdate == other.birthdate)
                .then_some(MatchRule::ResidentCode),
        }
    }
}

/// An insurer's insurer-wide (Scope 2) flags, by InfoCode and flag type.
pub type InsurerFlags = BTreeMap<(InfoCode, FlagType), Flag>;

/// A 副本 change to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct FukuhonOut {
    pub info_code: InfoCode,
    pub operation: FukuhonOperation,
    pub effective_date: Date,
    pub disclosure: Option<DisclosureClassification>,
    pub items: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(mn: Option<&str>, res: Option<&str>, b: &str) -> PersonKey {
        PersonKey {
            individual_number: mn.map(|m| IndividualNumber::parse(m).unwrap()),
            municipality: Some(MunicipalityCode::parse("131041").unwrap()),
            resident: res.map(|r| ResidentCode::parse(r).unwrap()),
            birthdate: Date::parse(b).unwrap(),
        }
    }

    #[test]
    fn person_matching_rules() {
        let a = pk(Some("123456789018"), Some("100"), "19520110");
        assert_eq!(a.matches(&a), Some(MatchRule::IndividualNumber));
        // both have My Numbers and they differ: no match even if the resident code agrees
        let mut other_mn = a.clone();
        other_mn.individual_number = Some(IndividualNumber::parse("000000000019").unwrap_or_else(|_| {
            let c = crate::domain::ids::individual_number_check_digit(b"00000000001");
            IndividualNumber::parse(&format!("00000000001{c}")).unwrap()
        }));
        assert_eq!(a.matches(&other_mn), None);
        // one side lacks a My Number: fall back to municipality + resident + birthdate
        let b = pk(None, Some("100"), "19520110");
        assert_eq!(a.matches(&b), Some(MatchRule::ResidentCode));
        assert_eq!(b.matches(&pk(None, Some("100"), "19520111")), None);
        assert_eq!(b.matches(&pk(None, None, "19520110")), None);
    }
}
