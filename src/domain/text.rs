//! Character rules of names, kana and addresses.

use crate::error::FieldError;
use std::fmt;

fn is_control(c: char) -> bool {
    c.is_control() || c == '\u{FEFF}'
}

fn is_halfwidth(c: char) -> bool {
    c.is_ascii() || ('\u{FF61}'..='\u{FF9F}').contains(&c)
}

/// 氏名: full-width, family and given name separated by a full-width space, ≤ 100 characters.
pub fn validate_name(s: &str) -> Result<(), FieldError> {
    let n = s.chars().count();
    if n > 100 {
        return Err(FieldError::format(format!("Name has {n} characters (at most 100)")));
    }
    if let Some((i, c)) = s.chars().enumerate().find(|&(_, c)| is_halfwidth(c) || is_control(c)) {
        return Err(FieldError::format(format!(
            "Name must be full-width (half-width or control character U+{:04X} at position {})",
            c as u32,
            i + 1
        )));
    }
    Ok(())
}

/// Free text fields (card symbol, number, address): no control characters, bounded length.
pub fn validate_text(s: &str, field: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(FieldError::format(format!(
            "{field} has {n} characters ({min} to {max} allowed)"
        )));
    }
    if let Some((i, c)) = s.chars().enumerate().find(|&(_, c)| is_control(c)) {
        return Err(FieldError::format(format!(
            "{field} contains control character U+{:04X} at position {}",
            c as u32,
            i + 1
        )));
    }
    Ok(())
}

const PLAIN: &[(char, char)] = &[
    ('ァ', 'ｧ'),
    ('ア', 'ｱ'),
    ('ィ', 'ｨ'),
    ('イ', 'ｲ'),
    ('ゥ', 'ｩ'),
    ('ウ', 'ｳ'),
    ('ェ', 'ｪ'),
    ('エ', 'ｴ'),
    ('ォ', 'ｫ'),
    ('オ', 'ｵ'),
    ('カ', 'ｶ'),
    ('キ', 'ｷ'),
    ('ク', 'ｸ'),
    ('ケ', 'ｹ'),
    ('コ', 'ｺ'),
    ('サ', 'ｻ'),
    ('シ', 'ｼ'),
    ('ス', 'ｽ'),
    ('セ', 'ｾ'),
    ('ソ', 'ｿ'),
    ('タ', 'ﾀ'),
    ('チ', 'ﾁ'),
    ('ッ', 'ｯ'),
    ('ツ', 'ﾂ'),
    ('テ', 'ﾃ'),
    ('ト', 'ﾄ'),
    ('ナ', 'ﾅ'),
    ('ニ', 'ﾆ'),
    ('ヌ', 'ﾇ'),
    ('ネ', 'ﾈ'),
    ('ノ', 'ﾉ'),
    ('ハ', 'ﾊ'),
    ('ヒ', 'ﾋ'),
    ('フ', 'ﾌ'),
    ('ヘ', 'ﾍ'),
    ('ホ', 'ﾎ'),
    ('マ', 'ﾏ'),
    ('ミ', 'ﾐ'),
    ('ム', 'ﾑ'),
    ('メ', 'ﾒ'),
    ('モ', 'ﾓ'),
    ('ャ', 'ｬ'),
    ('ヤ', 'ﾔ'),
    ('ュ', 'ｭ'),
    ('ユ', 'ﾕ'),
    ('ョ', 'ｮ'),
    ('ヨ', 'ﾖ'),
    ('ラ', 'ﾗ'),
    ('リ', 'ﾘ'),
    ('ル', 'ﾙ'),
    ('レ', 'ﾚ'),
    ('ロ', 'ﾛ'),
    ('ワ', 'ﾜ'),
    ('ヲ', 'ｦ'),
    ('ン', 'ﾝ'),
    ('ー', 'ｰ'),
    ('・', '･'),
    ('゛', 'ﾞ'),
    ('゜', 'ﾟ'),
    ('　', ' '),
];
const VOICED: &[(char, char)] = &[
    ('ガ', 'ｶ'),
    ('ギ', 'ｷ'),
    ('グ', 'ｸ'),
    ('ゲ', 'ｹ'),
    ('ゴ', 'ｺ'),
    ('ザ', 'ｻ'),
    ('ジ', 'ｼ'),
    ('ズ', 'ｽ'),
    ('ゼ', 'ｾ'),
    ('ゾ', 'ｿ'),
    ('ダ', 'ﾀ'),
    ('ヂ', 'ﾁ'),
    ('ヅ', 'ﾂ'),
    ('デ', 'ﾃ'),
    ('ド', 'ﾄ'),
    ('バ', 'ﾊ'),
    ('ビ', 'ﾋ'),
    ('ブ', 'ﾌ'),
    ('ベ', 'ﾍ'),
    ('ボ', 'ﾎ'),
    ('ヴ', 'ｳ'),
];
const SEMI_VOICED: &[(char, char)] = &[('パ', 'ﾊ'), ('ピ', 'ﾋ'), ('プ', 'ﾌ'), ('ペ', 'ﾍ'), ('ポ', 'ﾎ')];

fn lookup(table: &[(char, char)], c: char) -> Option<char> {
    table.iter().find(|&&(f, _)| f == c).map(|&(_, h)| h)
}

/// フリガナ: half-width katakana, space and Latin letters, ≤ 100 characters. Full-width katakana,
/// spaces and letters are converted to half-width. Characters with no half-width form (ヰ, ヱ, ヮ,
/// ヵ, ヶ, hiragana …) are rejected rather than approximated, so nothing is lost silently.
pub fn normalize_kana(s: &str) -> Result<String, FieldError> {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        let ok =
            |c: char| ('\u{FF66}'..='\u{FF9F}').contains(&c) || c == '\u{FF65}' || c == ' ' || c.is_ascii_alphabetic();
        if ok(c) {
            out.push(c);
        } else if let Some(h) = lookup(PLAIN, c) {
            out.push(h);
        } else if let Some(h) = lookup(VOICED, c) {
            out.push(h);
            out.push('ﾞ');
        } else if let Some(h) = lookup(SEMI_VOICED, c) {
            out.push(h);
            out.push('ﾟ');
        } else if ('Ａ'..='Ｚ').contains(&c) || ('ａ'..='ｚ').contains(&c) {
            out.push(char::from_u32(c as u32 - 0xFEE0).expect("ascii letter"));
        } else {
            return Err(FieldError::format(format!(
                "NameKana allows katakana, space and letters only (U+{:04X} at position {})",
                c as u32,
                i + 1
            )));
        }
    }
    let n = out.chars().count();
    if n > 100 {
        return Err(FieldError::format(format!(
            "NameKana has {n} half-width characters (at most 100)"
        )));
    }
    Ok(out)
}

/// 住所. Part of a person's whereabouts: `Debug` and `Display` are masked so that the address of
/// a flagged subscriber cannot reach a log or an error by accident. Writers call [`Address::expose`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Address(String);

impl Address {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        validate_text(s, "Address", 1, 250)?;
        Ok(Address(s.to_owned()))
    }
    /// For decoding data this process encoded (the engine's spill files, whose frames are
    /// checksummed): the text was an `Address` when it was written, so it is not validated again.
    /// Anything read from outside the process must go through [`Address::parse`].
    pub(crate) fn from_spill(s: String) -> Self {
        Address(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Address(***)")
    }
}
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_full_width() {
        assert!(validate_name("山田　太郎").is_ok());
        assert!(validate_name("𠮷野　花子").is_ok());
        assert!(validate_name("山田 太郎").is_err());
        assert!(validate_name("ﾔﾏﾀﾞ").is_err());
        assert!(validate_name(&"山".repeat(101)).is_err());
        assert!(validate_name(&"山".repeat(100)).is_ok());
    }

    #[test]
    fn kana_is_normalised_to_half_width() {
        assert_eq!(normalize_kana("ヤマダ　タロウ").unwrap(), "ﾔﾏﾀﾞ ﾀﾛｳ");
        assert_eq!(normalize_kana("パピプペポ").unwrap(), "ﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ");
        assert_eq!(normalize_kana("ヴィッキー").unwrap(), "ｳﾞｨｯｷｰ");
        assert_eq!(normalize_kana("ﾔﾏﾀﾞ ﾀﾛｳ").unwrap(), "ﾔﾏﾀﾞ ﾀﾛｳ");
        assert_eq!(normalize_kana("ＳＭＩＴＨ　ジョン").unwrap(), "SMITH ｼﾞｮﾝ");
        assert!(normalize_kana("やまだ").is_err());
        assert!(normalize_kana("ヰ").is_err());
        assert!(normalize_kana("ﾔﾏﾀﾞ1").is_err());
        assert!(normalize_kana(&"ガ".repeat(51)).is_err()); // 102 half-width characters
    }

    #[test]
    fn address_is_masked() {
        let a = Address::parse("東京都新宿区西新宿二丁目８番１号").unwrap();
        assert!(!format!("{a:?}").contains("新宿"));
        assert!(!format!("{a}").contains("新宿"));
        assert!(Address::parse("").is_err());
        assert!(Address::parse("a\u{0}b").is_err());
        assert!(Address::parse(&"あ".repeat(251)).is_err());
    }
}
