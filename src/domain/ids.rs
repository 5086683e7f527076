//! Identifiers of the linkage world, each validated on construction (check digits included).

use crate::error::{ErrorCode, FieldError};
use std::fmt;

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn digits_exact(s: &str, n: usize, what: &str) -> Result<(), FieldError> {
    if s.len() == n && all_digits(s.as_bytes()) {
        Ok(())
    } else {
        Err(FieldError::format(format!("{what} must be exactly {n} digits")))
    }
}

/// Luhn-variant check digit of insurer numbers: weights 2,1,2,… from the rightmost body digit,
/// digits of each product summed, check = (10 − sum mod 10) mod 10.
pub fn insurer_check_digit(body: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, &b) in body.iter().rev().enumerate() {
        let d = u32::from(b - b'0');
        let p = if i % 2 == 0 { d * 2 } else { d };
        sum += p / 10 + p % 10;
    }
    ((10 - sum % 10) % 10) as u8
}

/// 保険者番号. Stored 8 wide; a 6-digit 国保 number is zero-padded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InsurerNumber([u8; 8]);

/// What kind of insurer a number designates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsurerKind {
    /// 市町村国保 (6-digit number, written zero-padded to 8)
    Kokuho,
    /// 後期高齢者医療広域連合 (法別番号 39)
    Kouki,
    /// Any other insurer (健保組合, 協会けんぽ, 共済 …)
    Other,
}

impl InsurerKind {
    /// The first two digits of the 8-digit numbers of this kind (`None` for any other insurer).
    pub const fn number_prefix(self) -> Option<&'static str> {
        match self {
            InsurerKind::Kokuho => Some("00"),
            InsurerKind::Kouki => Some("39"),
            InsurerKind::Other => None,
        }
    }
}

impl InsurerNumber {
    /// Reads 6 digits, 8 digits, or 6 digits right-aligned with 2 spaces; verifies the check digit.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let b = s.as_bytes();
        let mut out = [b'0'; 8];
        match b.len() {
            6 if all_digits(b) => out[2..].copy_from_slice(b),
            8 if b.starts_with(b"  ") && all_digits(&b[2..]) => out[2..].copy_from_slice(&b[2..]),
            8 if all_digits(b) => out.copy_from_slice(b),
            _ => {
                return Err(FieldError::format(
                    "InsurerNumber must be 6 or 8 digits (6 digits may be right-aligned with 2 spaces)",
                ));
            }
        }
        let check = insurer_check_digit(&out[..7]);
        if out[7] - b'0' != check {
            return Err(FieldError::new(
                ErrorCode::CheckDigit,
                format!("InsurerNumber check digit is wrong (expected {check})"),
            ));
        }
        Ok(InsurerNumber(out))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii digits")
    }

    pub fn kind(&self) -> InsurerKind {
        [InsurerKind::Kouki, InsurerKind::Kokuho]
            .into_iter()
            .find(|k| k.number_prefix().is_some_and(|p| self.0.starts_with(p.as_bytes())))
            .unwrap_or(InsurerKind::Other)
    }
    pub fn is_kouki(&self) -> bool {
        self.kind() == InsurerKind::Kouki
    }
    pub fn is_kokuho(&self) -> bool {
        self.kind() == InsurerKind::Kokuho
    }
}

impl fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsurerNumber({})", self.as_str())
    }
}

macro_rules! digit_id {
    ($(#[$m:meta])* $name:ident, $len:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, FieldError> {
                digits_exact(s, $len, stringify!($name))?;
                let mut a = [0u8; $len];
                a.copy_from_slice(s.as_bytes());
                Ok($name(a))
            }
            pub fn as_str(&self) -> &str {
                std::str::from_utf8(&self.0).expect("ascii digits")
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.as_str())
            }
        }
    };
}

digit_id!(
    /// 被保険者枝番 at the intermediate server: the insurer's 16-digit per-person key.
    SubscriberKey, 16
);

/// One subscriber: (insurer, SubscriberKey), the key of a ledger enrollment.
pub type SubKey = (InsurerNumber, SubscriberKey);
digit_id!(
    /// 枝番 on the card: exactly 2 digits.
    InsuredBranchNumber, 2
);

/// 地方公共団体コード: 5 body digits and a check digit (weights 6,5,4,3,2; (11 − Σ mod 11) mod 10).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MunicipalityCode([u8; 6]);

pub fn municipality_check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip([6u32, 5, 4, 3, 2])
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    ((11 - sum % 11) % 10) as u8
}

impl MunicipalityCode {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        digits_exact(s, 6, "MunicipalityCode")?;
        let b = s.as_bytes();
        let check = municipality_check_digit(&b[..5]);
        if b[5] - b'0' != check {
            return Err(FieldError::new(
                ErrorCode::CheckDigit,
                format!("MunicipalityCode check digit is wrong (expected {check})"),
            ));
        }
        let mut a = [0u8; 6];
        a.copy_from_slice(b);
        Ok(MunicipalityCode(a))
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii digits")
    }
}
impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MunicipalityCode({})", self.as_str())
    }
}

/// 個人番号 (My Number). 特定個人情報: `Debug` and `Display` are masked, there is no `Serialize`,
/// and the digits are reachable only through [`IndividualNumber::expose`], which the linkage
/// writers and the ledger call. Nothing else should.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndividualNumber([u8; 12]);

/// Check digit of a My Number: weights 2..7,2..6 from the rightmost body digit; r = Σ mod 11;
/// check = 0 if r ≤ 1 else 11 − r.
pub fn individual_number_check_digit(body: &[u8]) -> u8 {
    const W: [u32; 11] = [2, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6];
    let sum: u32 = body.iter().rev().zip(W).map(|(&b, w)| u32::from(b - b'0') * w).sum();
    let r = sum % 11;
    if r <= 1 { 0 } else { (11 - r) as u8 }
}

impl IndividualNumber {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        // The message never echoes the value.
        digits_exact(s, 12, "IndividualNumber")?;
        let b = s.as_bytes();
        if b[11] - b'0' != individual_number_check_digit(&b[..11]) {
            return Err(FieldError::new(
                ErrorCode::CheckDigit,
                "IndividualNumber check digit is wrong",
            ));
        }
        let mut a = [0u8; 12];
        a.copy_from_slice(b);
        Ok(IndividualNumber(a))
    }
    /// The digits, for the ledger and the linkage writers only.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii digits")
    }
}
impl fmt::Debug for IndividualNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndividualNumber(************)")
    }
}
impl fmt::Display for IndividualNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("************")
    }
}

/// 特定個人情報名コード: `TM` + 14 digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoCode([u8; 16]);

impl InfoCode {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let b = s.as_bytes();
        if b.len() != 16 || &b[..2] != b"TM" || !all_digits(&b[2..]) {
            return Err(FieldError::format("InfoCode must be TM followed by 14 digits"));
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(InfoCode(a))
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii")
    }
}
impl fmt::Display for InfoCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for InfoCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoCode({})", self.as_str())
    }
}

/// 宛名番号: 1–15 digits, leading zeros significant.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResidentCode(String);

impl ResidentCode {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.is_empty() || s.len() > 15 || !all_digits(s.as_bytes()) {
            return Err(FieldError::format("ResidentCode must be 1 to 15 digits"));
        }
        Ok(ResidentCode(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for ResidentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentCode({})", self.0)
    }
}

/// 郵便番号, normalised to `123-4567` (`1234567` accepted on input).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostNumber([u8; 8]);

impl PostNumber {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let b = s.as_bytes();
        let mut a = [b'-'; 8];
        if b.len() == 8 && b[3] == b'-' && all_digits(&b[..3]) && all_digits(&b[4..]) {
            a.copy_from_slice(b);
        } else if b.len() == 7 && all_digits(b) {
            a[..3].copy_from_slice(&b[..3]);
            a[4..].copy_from_slice(&b[3..]);
        } else {
            return Err(FieldError::format("PostNumber must be 123-4567 or 1234567"));
        }
        Ok(PostNumber(a))
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii")
    }
}
/// Masked: a postal code is part of the whereabouts of a possibly flagged person.
impl fmt::Debug for PostNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostNumber(***-****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insurer_numbers_from_the_domain_reference() {
        assert_eq!(InsurerNumber::parse("33120015").unwrap().as_str(), "33120015");
        assert_eq!(InsurerNumber::parse("01130012").unwrap().as_str(), "01130012");
        assert_eq!(
            InsurerNumber::parse("33120016").unwrap_err().code,
            ErrorCode::CheckDigit
        );
    }

    #[test]
    fn six_digit_kokuho_is_padded_and_alignment_accepted() {
        // 13 (Tokyo) 104 (insurer) + check digit
        let body = b"13104";
        let c = insurer_check_digit(body);
        let six = format!("13104{c}");
        let n = InsurerNumber::parse(&six).unwrap();
        assert_eq!(n.as_str(), format!("0013104{c}"));
        assert_eq!(n.kind(), InsurerKind::Kokuho);
        assert_eq!(InsurerNumber::parse(&format!("  {six}")).unwrap(), n);
        assert_eq!(InsurerNumber::parse(&format!("00{six}")).unwrap(), n);
        assert_eq!(
            InsurerNumber::parse(&format!(" {six} ")).unwrap_err().code,
            ErrorCode::FieldFormat
        );
        assert_eq!(
            InsurerNumber::parse("1234567").unwrap_err().code,
            ErrorCode::FieldFormat
        );
        assert_eq!(InsurerNumber::parse("").unwrap_err().code, ErrorCode::FieldFormat);
        assert_eq!(
            InsurerNumber::parse("3913abcd").unwrap_err().code,
            ErrorCode::FieldFormat
        );
    }

    #[test]
    fn kouki_numbers_are_recognised() {
        let body = b"3913001";
        let n = InsurerNumber::parse(&format!("3913001{}", insurer_check_digit(body))).unwrap();
        assert!(n.is_kouki());
        assert!(!n.is_kokuho());
        assert_eq!(InsurerNumber::parse("01130012").unwrap().kind(), InsurerKind::Other);
    }

    #[test]
    fn my_number_check_digit_and_masking() {
        let n = IndividualNumber::parse("123456789018").unwrap();
        assert_eq!(n.expose(), "123456789018");
        assert!(!format!("{n:?}").contains("1234"));
        assert!(!format!("{n}").contains("1234"));
        let e = IndividualNumber::parse("123456789012").unwrap_err();
        assert_eq!(e.code, ErrorCode::CheckDigit);
        assert!(!e.message.contains("123456789012"));
        assert_eq!(
            IndividualNumber::parse("12345678901").unwrap_err().code,
            ErrorCode::FieldFormat
        );
        // r <= 1 gives check digit 0
        for body in ["00000000000", "10000000000"] {
            let c = individual_number_check_digit(body.as_bytes());
            assert!(IndividualNumber::parse(&format!("{body}{c}")).is_ok());
        }
    }

    #[test]
    fn municipality_codes_from_the_domain_reference() {
        for ok in ["131041", "011002", "141003"] {
            assert!(MunicipalityCode::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            MunicipalityCode::parse("131042").unwrap_err().code,
            ErrorCode::CheckDigit
        );
        assert_eq!(
            MunicipalityCode::parse("13104").unwrap_err().code,
            ErrorCode::FieldFormat
        );
    }

    #[test]
    fn fixed_width_ids() {
        assert!(SubscriberKey::parse("0000000000000001").is_ok());
        assert!(SubscriberKey::parse("000000000000001").is_err());
        assert!(InsuredBranchNumber::parse("01").is_ok());
        assert!(InsuredBranchNumber::parse("1").is_err());
        assert!(InfoCode::parse("TM00000000000001").is_ok());
        assert!(InfoCode::parse("TX00000000000001").is_err());
        assert!(InfoCode::parse("TM0000000000001").is_err());
        assert!(ResidentCode::parse("000123").is_ok());
        assert!(ResidentCode::parse("1234567890123456").is_err());
        assert_eq!(PostNumber::parse("1600023").unwrap().as_str(), "160-0023");
        assert_eq!(PostNumber::parse("160-0023").unwrap().as_str(), "160-0023");
        assert!(PostNumber::parse("16-00023").is_err());
    }
}
