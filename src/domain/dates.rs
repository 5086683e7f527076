//! Dates: strict 西暦 `YYYYMMDD` / `YYYYMMDDHHMMSS`, 和暦 for legacy sources, and the
//! age arithmetic of the 後期 transition.

use crate::error::{ErrorCode, FieldError};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use std::fmt;

/// A calendar date, written `YYYYMMDD`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date(pub NaiveDate);

/// A Japan-time timestamp, written `YYYYMMDDHHMMSS`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub NaiveDateTime);

fn num(b: &[u8]) -> u32 {
    b.iter().fold(0, |a, &d| a * 10 + u32::from(d - b'0'))
}

impl Date {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let b = s.as_bytes();
        if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
            return Err(FieldError::format("date must be YYYYMMDD"));
        }
        NaiveDate::from_ymd_opt(num(&b[..4]) as i32, num(&b[4..6]), num(&b[6..]))
            .map(Date)
            .ok_or_else(|| FieldError::new(ErrorCode::Date, "not a real calendar date"))
    }
    pub fn ymd(y: i32, m: u32, d: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(y, m, d).map(Date)
    }
    pub fn succ(self) -> Date {
        Date(self.0.succ_opt().expect("date in range"))
    }
    pub fn pred(self) -> Date {
        Date(self.0.pred_opt().expect("date in range"))
    }

    /// The date `months` later, clamped to the month's end (20260831 + 6 months = 20270228).
    pub fn add_months(self, months: u32) -> Date {
        let total = self.0.year() * 12 + self.0.month0() as i32 + months as i32;
        let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
        let last = last_day_of_month(y, m);
        Date(NaiveDate::from_ymd_opt(y, m, self.0.day().min(last)).expect("clamped"))
    }

    /// 後期 acquisition date for a person born on `self`: the 75th birthday itself; a person born
    /// on 29 February acquires on 1 March in common years (age completes at the end of 28 Feb).
    pub fn kouki_acquisition_date(self) -> Date {
        self.birthday_at_age(75)
    }

    /// The day on which a person born on `self` starts being `age` years old.
    pub fn birthday_at_age(self, age: i32) -> Date {
        let y = self.0.year() + age;
        match NaiveDate::from_ymd_opt(y, self.0.month(), self.0.day()) {
            Some(d) => Date(d),
            None => Date(NaiveDate::from_ymd_opt(y, 3, 1).expect("1 March exists")),
        }
    }

    /// Age in completed years on `on` (年齢計算ニ関スル法律: a year completes at the end of the
    /// day before the birthday, so on the birthday itself the new age holds).
    pub fn age_on(self, on: Date) -> i32 {
        let mut age = on.0.year() - self.0.year();
        if self.birthday_at_age(age) > on {
            age -= 1;
        }
        age
    }
}

pub fn last_day_of_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .expect("valid month")
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.0.year(), self.0.month(), self.0.day())
    }
}
impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

impl Timestamp {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let b = s.as_bytes();
        if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
            return Err(FieldError::format("timestamp must be YYYYMMDDHHMMSS"));
        }
        let d = Date::parse(&s[..8])?;
        let t = NaiveTime::from_hms_opt(num(&b[8..10]), num(&b[10..12]), num(&b[12..]))
            .ok_or_else(|| FieldError::new(ErrorCode::Date, "not a real time of day"))?;
        Ok(Timestamp(d.0.and_time(t)))
    }
    pub fn date(self) -> Date {
        Date(self.0.date())
    }
    pub fn start_of(d: Date) -> Timestamp {
        Timestamp(d.0.and_time(NaiveTime::MIN))
    }
}
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y%m%d%H%M%S"))
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// 元号. Codes 1–5 as used by legacy layouts (`GYYMMDD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    Meiji,
    Taisho,
    Showa,
    Heisei,
    Reiwa,
}

impl Era {
    const ALL: [Era; 5] = [Era::Meiji, Era::Taisho, Era::Showa, Era::Heisei, Era::Reiwa];

    pub fn code(self) -> u32 {
        self as u32 + 1
    }
    pub fn from_code(c: u32) -> Option<Era> {
        Self::ALL.get((c as usize).checked_sub(1)?).copied()
    }
    pub fn from_letter(c: char) -> Option<Era> {
        match c.to_ascii_uppercase() {
            'M' => Some(Era::Meiji),
            'T' => Some(Era::Taisho),
            'S' => Some(Era::Showa),
            'H' => Some(Era::Heisei),
            'R' => Some(Era::Reiwa),
            _ => None,
        }
    }
    pub fn kanji(self) -> &'static str {
        ["明治", "大正", "昭和", "平成", "令和"][self as usize]
    }
    pub fn from_kanji(s: &str) -> Option<Era> {
        Self::ALL.into_iter().find(|e| e.kanji() == s)
    }
    /// First day of the era (明治 by the usual convention).
    pub fn start(self) -> NaiveDate {
        let (y, m, d) = [(1868, 1, 25), (1912, 7, 30), (1926, 12, 25), (1989, 1, 8), (2019, 5, 1)]
            [self as usize];
        NaiveDate::from_ymd_opt(y, m, d).expect("era start")
    }
    /// First day of the next era, if any.
    pub fn end_exclusive(self) -> Option<NaiveDate> {
        Self::ALL.get(self as usize + 1).map(|e| e.start())
    }

    /// The Gregorian date of era year `year`, `month`, `day`, checked against the era's span
    /// (昭和64年1月7日 is valid, 昭和64年1月8日 is not).
    pub fn to_date(self, year: u32, month: u32, day: u32) -> Result<Date, FieldError> {
        if year == 0 {
            return Err(FieldError::new(ErrorCode::Date, "era year 0 does not exist"));
        }
        let g = self.start().year() + year as i32 - 1;
        let d = NaiveDate::from_ymd_opt(g, month, day)
            .ok_or_else(|| FieldError::new(ErrorCode::Date, "not a real calendar date"))?;
        if d < self.start() || self.end_exclusive().is_some_and(|e| d >= e) {
            return Err(FieldError::new(
                ErrorCode::Date,
                format!("date is outside the {} era", self.kanji()),
            ));
        }
        Ok(Date(d))
    }
}

/// Legacy 和暦 forms a mapping can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarekiForm {
    /// `GYYMMDD` with a 1-digit era code: `3600214` = 昭和60年2月14日
    Packed1,
    /// `GGYYMMDD` with a 2-digit era code: `03600214`
    Packed2,
    /// `R06.12.02` (era letter, dots)
    Letter,
    /// `令和6年12月2日`, `令和元年5月1日` (full-width digits accepted)
    Kanji,
}

fn fullwidth_digits_to_ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            _ => c,
        })
        .collect()
}

/// Parses a 和暦 date in the given form.
pub fn parse_wareki(s: &str, form: WarekiForm) -> Result<Date, FieldError> {
    let bad = || FieldError::format(format!("not a 和暦 date of the form {form:?}"));
    let s = s.trim();
    match form {
        WarekiForm::Packed1 | WarekiForm::Packed2 => {
            let w = if form == WarekiForm::Packed1 { 1 } else { 2 };
            let b = s.as_bytes();
            if b.len() != 6 + w || !b.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let era = Era::from_code(num(&b[..w]))
                .ok_or_else(|| FieldError::new(ErrorCode::Code, "unknown era code"))?;
            era.to_date(num(&b[w..w + 2]), num(&b[w + 2..w + 4]), num(&b[w + 4..]))
        }
        WarekiForm::Letter => {
            let mut chars = s.chars();
            let era = chars.next().and_then(Era::from_letter).ok_or_else(bad)?;
            let rest: Vec<&str> = chars.as_str().split('.').collect();
            if rest.len() != 3
                || rest.iter().any(|p| p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(bad());
            }
            era.to_date(
                num(rest[0].as_bytes()),
                num(rest[1].as_bytes()),
                num(rest[2].as_bytes()),
            )
        }
        WarekiForm::Kanji => {
            let s = fullwidth_digits_to_ascii(s);
            let era_str: String = s.chars().take(2).collect();
            let era = Era::from_kanji(&era_str).ok_or_else(bad)?;
            let rest = &s[era_str.len()..];
            let (y, rest) = rest.split_once('年').ok_or_else(bad)?;
            let (m, rest) = rest.split_once('月').ok_or_else(bad)?;
            let d = rest.strip_suffix('日').ok_or_else(bad)?;
            let part = |p: &str| -> Result<u32, FieldError> {
                if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    Err(bad())
                } else {
                    Ok(num(p.as_bytes()))
                }
            };
            let year = if y == "元" { 1 } else { part(y)? };
            era.to_date(year, part(m)?, part(d)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn strict_dates() {
        assert_eq!(d("20241202").to_string(), "20241202");
        assert_eq!(Date::parse("20230230").unwrap_err().code, ErrorCode::Date);
        assert_eq!(Date::parse("20230431").unwrap_err().code, ErrorCode::Date);
        assert_eq!(Date::parse("20230229").unwrap_err().code, ErrorCode::Date);
        assert!(Date::parse("20240229").is_ok());
        assert_eq!(Date::parse("2024-12-02").unwrap_err().code, ErrorCode::FieldFormat);
        assert_eq!(Date::parse("2024120").unwrap_err().code, ErrorCode::FieldFormat);
        assert_eq!(Date::parse("").unwrap_err().code, ErrorCode::FieldFormat);
        assert_eq!(Timestamp::parse("20261121230000").unwrap().to_string(), "20261121230000");
        assert_eq!(Timestamp::parse("20261121240000").unwrap_err().code, ErrorCode::Date);
        assert_eq!(Timestamp::parse("20261131230000").unwrap_err().code, ErrorCode::Date);
        assert_eq!(Timestamp::parse("2026112123000").unwrap_err().code, ErrorCode::FieldFormat);
    }

    #[test]
    fn kouki_acquisition_at_75() {
        assert_eq!(d("19511215").kouki_acquisition_date(), d("20261215"));
        // 29 February: 1 March in common years, 29 February in leap years
        assert_eq!(d("19520229").kouki_acquisition_date(), d("20270301"));
        assert_eq!(d("19480229").kouki_acquisition_date(), d("20230301"));
        assert_eq!(d("19560229").kouki_acquisition_date(), d("20310301"));
        assert_eq!(d("19520229").birthday_at_age(72), d("20240229"));
    }

    #[test]
    fn age_completes_on_the_birthday() {
        let b = d("19511215");
        assert_eq!(b.age_on(d("20261214")), 74);
        assert_eq!(b.age_on(d("20261215")), 75);
        let leap = d("19520229");
        assert_eq!(leap.age_on(d("20270228")), 74);
        assert_eq!(leap.age_on(d("20270301")), 75);
    }

    #[test]
    fn month_arithmetic_clamps_to_month_end() {
        assert_eq!(d("20260831").add_months(6), d("20270228"));
        assert_eq!(d("20270831").add_months(6), d("20280229"));
        assert_eq!(d("20261122").add_months(6), d("20270522"));
        assert_eq!(d("20261231").add_months(2), d("20270228"));
        assert_eq!(d("20260131").add_months(1), d("20260228"));
        assert_eq!(d("20260115").add_months(0), d("20260115"));
        assert_eq!(d("20261130").add_months(13), d("20271230"));
    }

    #[test]
    fn wareki_packed_forms() {
        assert_eq!(parse_wareki("3600214", WarekiForm::Packed1).unwrap(), d("19850214"));
        assert_eq!(parse_wareki("03600214", WarekiForm::Packed2).unwrap(), d("19850214"));
        assert_eq!(parse_wareki("5061202", WarekiForm::Packed1).unwrap(), d("20241202"));
        assert_eq!(parse_wareki("1010125", WarekiForm::Packed1).unwrap(), d("18680125"));
        assert_eq!(parse_wareki("1010124", WarekiForm::Packed1).unwrap_err().code, ErrorCode::Date);
        assert_eq!(parse_wareki("6010101", WarekiForm::Packed1).unwrap_err().code, ErrorCode::Code);
        assert_eq!(parse_wareki("0010101", WarekiForm::Packed1).unwrap_err().code, ErrorCode::Code);
        assert_eq!(parse_wareki("360021", WarekiForm::Packed1).unwrap_err().code, ErrorCode::FieldFormat);
        assert_eq!(parse_wareki("3600230", WarekiForm::Packed1).unwrap_err().code, ErrorCode::Date);
    }

    #[test]
    fn wareki_era_boundaries() {
        // 昭和64年 is 1–7 January 1989 only
        assert_eq!(parse_wareki("3640101", WarekiForm::Packed1).unwrap(), d("19890101"));
        assert_eq!(parse_wareki("3640107", WarekiForm::Packed1).unwrap(), d("19890107"));
        assert_eq!(parse_wareki("3640108", WarekiForm::Packed1).unwrap_err().code, ErrorCode::Date);
        assert_eq!(parse_wareki("4010108", WarekiForm::Packed1).unwrap(), d("19890108"));
        assert_eq!(parse_wareki("4010107", WarekiForm::Packed1).unwrap_err().code, ErrorCode::Date);
        // 平成31年 ends on 30 April 2019
        assert_eq!(parse_wareki("H31.04.30", WarekiForm::Letter).unwrap(), d("20190430"));
        assert_eq!(parse_wareki("H31.05.01", WarekiForm::Letter).unwrap_err().code, ErrorCode::Date);
        assert_eq!(parse_wareki("R01.05.01", WarekiForm::Letter).unwrap(), d("20190501"));
        assert_eq!(parse_wareki("R01.04.30", WarekiForm::Letter).unwrap_err().code, ErrorCode::Date);
        // 大正 and 昭和 edges
        assert_eq!(parse_wareki("T15.12.24", WarekiForm::Letter).unwrap(), d("19261224"));
        assert_eq!(parse_wareki("T15.12.25", WarekiForm::Letter).unwrap_err().code, ErrorCode::Date);
        assert_eq!(parse_wareki("S01.12.25", WarekiForm::Letter).unwrap(), d("19261225"));
        assert_eq!(parse_wareki("M45.07.29", WarekiForm::Letter).unwrap(), d("19120729"));
        assert_eq!(parse_wareki("T01.07.30", WarekiForm::Letter).unwrap(), d("19120730"));
        assert_eq!(parse_wareki("R00.05.01", WarekiForm::Letter).unwrap_err().code, ErrorCode::Date);
    }

    #[test]
    fn wareki_letter_and_kanji_forms() {
        assert_eq!(parse_wareki("R06.12.02", WarekiForm::Letter).unwrap(), d("20241202"));
        assert_eq!(parse_wareki("r6.12.2", WarekiForm::Letter).unwrap(), d("20241202"));
        assert!(parse_wareki("X06.12.02", WarekiForm::Letter).is_err());
        assert!(parse_wareki("R06-12-02", WarekiForm::Letter).is_err());
        assert_eq!(parse_wareki("令和6年12月2日", WarekiForm::Kanji).unwrap(), d("20241202"));
        assert_eq!(parse_wareki("令和６年１２月２日", WarekiForm::Kanji).unwrap(), d("20241202"));
        assert_eq!(parse_wareki("令和元年5月1日", WarekiForm::Kanji).unwrap(), d("20190501"));
        assert_eq!(parse_wareki("平成元年1月8日", WarekiForm::Kanji).unwrap(), d("19890108"));
        assert_eq!(parse_wareki("昭和64年1月7日", WarekiForm::Kanji).unwrap(), d("19890107"));
        assert_eq!(parse_wareki("昭和64年1月8日", WarekiForm::Kanji).unwrap_err().code, ErrorCode::Date);
        assert_eq!(parse_wareki("平成31年4月30日", WarekiForm::Kanji).unwrap(), d("20190430"));
        assert_eq!(parse_wareki("平成31年5月1日", WarekiForm::Kanji).unwrap_err().code, ErrorCode::Date);
        assert!(parse_wareki("令和6年12月", WarekiForm::Kanji).is_err());
        assert!(parse_wareki("西暦6年12月2日", WarekiForm::Kanji).is_err());
    }
}
