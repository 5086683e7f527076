//! The spec's code tables as enums. Codes are strings; leading zeros are significant.

use crate::error::{ErrorCode, FieldError};

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $var),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn code(self) -> &'static str {
                match self { $($name::$var => $code),+ }
            }
            pub fn parse(s: &str) -> Result<Self, FieldError> {
                match s {
                    $($code => Ok($name::$var),)+
                    _ => Err(FieldError::new(
                        ErrorCode::Code,
                        format!(concat!("not a ", stringify!($name), " code (allowed: {})"),
                            [$($code),+].join(", ")),
                    )),
                }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

code_enum!(
    /// 異動区分
    ChangeType {
        /// 資格取得
        Acquisition = "1",
        /// 記載事項変更
        Update = "2",
        /// 資格喪失
        Loss = "3",
        /// 取消 (cancels an erroneous enrollment)
        Cancel = "9",
    }
);

code_enum!(
    /// 資格取得事由
    ReasonOfQualification {
        /// 年齢到達
        AgeReached = "01",
        /// 障害認定
        DisabilityCertified = "02",
        /// 転入
        MovedIn = "03",
        /// 他保険喪失
        LostOtherInsurance = "04",
        /// その他
        Other = "99",
    }
);

impl ReasonOfQualification {
    /// Reasons that make a 後期 acquisition an age transition (R3).
    pub fn is_transition(self) -> bool {
        matches!(self, Self::AgeReached | Self::DisabilityCertified)
    }
}

code_enum!(
    /// 資格喪失事由
    ReasonOfLoss {
        /// 死亡
        Death = "01",
        /// 生活保護受給開始
        PublicAssistance = "02",
        /// 医療保険等の資格取得
        OtherInsurance = "03",
        /// その他
        Other = "99",
    }
);

code_enum!(
    /// 性別1
    Sex1 { Male = "1", Female = "2", Unset = "3" }
);

code_enum!(
    /// 本人・家族の別
    PersonalFamilyClassification { Self_ = "1", Family = "2" }
);

code_enum!(
    /// The three flags of the intermediate server.
    FlagType {
        /// 自動応答不可フラグ
        AutoResponseProhibited = "1",
        /// 不開示該当フラグ
        NonDisclosure = "2",
        /// 自己情報提供不可フラグ
        SelfInfoProvisionProhibited = "3",
    }
);

impl FlagType {
    /// Flags that protect whereabouts and must be carried across the 後期 transfer (R3).
    pub fn is_protective(self) -> bool {
        matches!(self, Self::NonDisclosure | Self::SelfInfoProvisionProhibited)
    }
    pub fn name_ja(self) -> &'static str {
        match self {
            Self::AutoResponseProhibited => "自動応答不可",
            Self::NonDisclosure => "不開示該当",
            Self::SelfInfoProvisionProhibited => "自己情報提供不可",
        }
    }
    pub fn name_en(self) -> &'static str {
        match self {
            Self::AutoResponseProhibited => "AutoResponseProhibited",
            Self::NonDisclosure => "NonDisclosure",
            Self::SelfInfoProvisionProhibited => "SelfInfoProvisionProhibited",
        }
    }
}

code_enum!(
    /// 設定 / 解除
    FlagOperation { Set = "1", Release = "2" }
);

code_enum!(
    /// Scope of a FlagChange
    FlagScope {
        /// one subscriber (被保険者枝番単位)
        Subscriber = "1",
        /// one InfoCode for all subscribers of the insurer
        InfoCode = "2",
    }
);

code_enum!(
    /// 自己情報提供不可 reason
    SelfInfoReason {
        /// 提供対象外（情報提供者都合）
        ProviderReason = "1",
        /// 提供対象外（国民等利用者都合）
        PersonReason = "2",
    }
);

code_enum!(
    /// Where a flag setting came from
    FlagSource {
        /// 本人申出
        PersonRequest = "1",
        /// 住基支援措置
        SupportMeasure = "2",
        /// 職権
        ExOfficio = "3",
        /// 年齢到達引継
        AgeTransitionCarry = "4",
        /// その他
        Other = "9",
    }
);

code_enum!(
    /// 副本 operation
    FukuhonOperation { Register = "1", Update = "2", Delete = "3" }
);

code_enum!(
    /// 開示区分
    DisclosureClassification { Disclose = "0", NonDisclose = "1" }
);

code_enum!(
    /// SubscriberLinkage processing code
    ProcessingCode {
        /// first registration
        FirstRegistration = "11",
        /// update
        Update = "12",
        /// delete (after 取消)
        Delete = "15",
    }
);

code_enum!(
    /// CharacterCodeIdentifier in CSV headers
    CharacterCode { Utf8 = "0", ShiftJis = "1" }
);

/// Value of the hand-off/linkage 自己情報提供不可 column: `0` none, `1`/`2` set with that reason.
pub fn self_info_column(reason: Option<SelfInfoReason>) -> &'static str {
    reason.map_or("0", SelfInfoReason::code)
}

/// Parses the hand-off/linkage 自己情報提供不可 column.
pub fn parse_self_info_column(s: &str) -> Result<Option<SelfInfoReason>, FieldError> {
    if s == "0" { Ok(None) } else { SelfInfoReason::parse(s).map(Some) }
}

/// Parses a `0`/`1` flag column.
pub fn parse_bool_flag(s: &str) -> Result<bool, FieldError> {
    match s {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(FieldError::new(ErrorCode::Code, "flag value must be 0 or 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_reject_unknown() {
        for c in ChangeType::ALL {
            assert_eq!(ChangeType::parse(c.code()).unwrap(), *c);
        }
        assert_eq!(ReasonOfQualification::parse("01").unwrap(), ReasonOfQualification::AgeReached);
        // leading zeros are significant
        assert_eq!(ReasonOfQualification::parse("1").unwrap_err().code, ErrorCode::Code);
        assert_eq!(ChangeType::parse("4").unwrap_err().code, ErrorCode::Code);
        assert_eq!(Sex1::parse("").unwrap_err().code, ErrorCode::Code);
        assert!(ReasonOfQualification::DisabilityCertified.is_transition());
        assert!(!ReasonOfQualification::MovedIn.is_transition());
        assert!(FlagType::NonDisclosure.is_protective());
        assert!(!FlagType::AutoResponseProhibited.is_protective());
        assert_eq!(parse_self_info_column("2").unwrap(), Some(SelfInfoReason::PersonReason));
        assert_eq!(parse_self_info_column("0").unwrap(), None);
        assert!(parse_self_info_column("3").is_err());
        assert!(parse_bool_flag("2").is_err());
    }
}
