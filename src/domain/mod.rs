//! The domain: identifiers with check digits, dates and 和暦, code tables, text rules,
//! and the typed records of the four input kinds.

pub mod catalog;
pub mod codes;
pub mod dates;
pub mod ids;
pub mod person;
pub mod records;
pub mod sql;
pub mod text;

pub use crate::error::FieldFault;
pub use catalog::Catalog;
pub use codes::{
    ChangeType, CharacterCode, DisclosureClassification, FlagOperation, FlagScope, FlagSource, FlagType,
    FukuhonOperation, PersonalFamilyClassification, ProcessingCode, ReasonOfLoss, ReasonOfQualification,
    SelfInfoReason, Sex1, parse_bool_flag, parse_self_info_column, self_info_column,
};
pub use dates::{Date, Timestamp};
pub use ids::{
    IndividualNumber, InfoCode, InsuredBranchNumber, InsurerKind, InsurerNumber, MunicipalityCode, PostNumber,
    ResidentCode, SubKey, SubscriberKey, individual_number_check_digit, insurer_check_digit, municipality_check_digit,
};
pub use records::{
    ACQUISITION_FIELDS, AcquisitionFields, AgeTransitionHandoff, AgeTransitionInquiry, FLAG_CHANGE_FIELDS,
    FLAG_LINKAGE_FIELDS, FUKUHON_FIELDS, FileKind, FlagChange, Fukuhon, HANDOFF_FIELDS, INQUIRY_FIELDS, RawRecord,
    Record, SUBSCRIBER_CHANGE_FIELDS, SubscriberChange, build,
};
pub use text::Address;
