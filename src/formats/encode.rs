//! Encoding text for output. Shift_JIS output uses encoding_rs's no-replacement encoder, so a
//! character with no CP932 mapping is detected (never written as `&#NNNN;`): the caller rejects the
//! record (`E_UNMAPPABLE_CHAR`) or replaces the character by `●` and lists it for 文字同定.
//!
//! Private-use characters (外字, U+E000–U+F8FF; CP932's user-defined area 0xF040–0xF9FC decodes
//! to U+E000–U+E757) mean nothing outside the sender's own system (spec v1.1 §1): on output
//! they are unmappable in every encoding, UTF-8 included.

use super::TextEncoding;
use encoding_rs::EncoderResult;

/// The replacement mark of the intermediate server's character identification (文字同定).
pub const REPLACEMENT_MARK: char = '●';

/// Appends `s` encoded in `enc` to `out`. On the first unmappable character, returns it and leaves
/// `out` as it was.
pub fn encode_into(out: &mut Vec<u8>, s: &str, enc: TextEncoding) -> Result<(), char> {
    if !s.is_ascii()
        && let Some(c) = s.chars().find(|&c| is_private_use(c))
    {
        return Err(c);
    }
    match enc {
        TextEncoding::Utf8 => {
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        TextEncoding::ShiftJis => {
            if s.is_ascii() {
                out.extend_from_slice(s.as_bytes());
                return Ok(());
            }
            let start = out.len();
            let mut encoder = encoding_rs::SHIFT_JIS.new_encoder();
            let need = encoder
                .max_buffer_length_from_utf8_without_replacement(s.len())
                .expect("field length fits usize");
            out.resize(start + need, 0);
            let (res, _read, written) = encoder.encode_from_utf8_without_replacement(s, &mut out[start..], true);
            match res {
                EncoderResult::InputEmpty => {
                    out.truncate(start + written);
                    Ok(())
                }
                EncoderResult::Unmappable(c) => {
                    out.truncate(start);
                    Err(c)
                }
                EncoderResult::OutputFull => unreachable!("buffer sized by max_buffer_length"),
            }
        }
    }
}

/// A private-use character of the Basic Multilingual Plane (外字: U+E000–U+F8FF).
pub fn is_private_use(c: char) -> bool {
    ('\u{E000}'..='\u{F8FF}').contains(&c)
}

/// Appends `s` encoded, replacing each unmappable character by `●`. Returns the replaced characters.
pub fn encode_replacing(out: &mut Vec<u8>, s: &str, enc: TextEncoding) -> Vec<char> {
    let mut replaced = Vec::new();
    if encode_into(out, s, enc).is_ok() {
        return replaced;
    }
    for c in s.chars() {
        let mut b = [0u8; 4];
        if encode_into(out, c.encode_utf8(&mut b), enc).is_err() {
            replaced.push(c);
            encode_into(out, REPLACEMENT_MARK.encode_utf8(&mut b), enc).expect("● is in CP932");
        }
    }
    replaced
}

/// Whether `s` can be written in `enc` without loss; the first unmappable character otherwise.
pub fn first_unmappable(s: &str, enc: TextEncoding) -> Option<char> {
    let mut scratch = Vec::new();
    encode_into(&mut scratch, s, enc).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_jis_round_trip_and_unmappable() {
        let mut out = Vec::new();
        encode_into(&mut out, "山田　太郎ﾔﾏﾀﾞ", TextEncoding::ShiftJis).unwrap();
        let (back, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(&out);
        assert!(!had_errors);
        assert_eq!(back, "山田　太郎ﾔﾏﾀﾞ");
        // NEC special characters (①, ㈱) and IBM extensions (髙, 﨑) are in CP932
        for s in ["①", "㈱", "髙", "﨑"] {
            assert_eq!(first_unmappable(s, TextEncoding::ShiftJis), None, "{s}");
        }
        let mut out = b"x".to_vec();
        assert_eq!(encode_into(&mut out, "𠮷野", TextEncoding::ShiftJis), Err('𠮷'));
        assert_eq!(out, b"x", "nothing half-written");
        let mut out = Vec::new();
        let replaced = encode_replacing(&mut out, "𠮷野　花子", TextEncoding::ShiftJis);
        assert_eq!(replaced, vec!['𠮷']);
        let (back, _) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(&out);
        assert_eq!(back, "●野　花子");
        assert!(
            !out.windows(2).any(|w| w == b"&#"),
            "never numeric character references"
        );
        assert_eq!(first_unmappable("𠮷", TextEncoding::Utf8), None);
    }

    #[test]
    fn private_use_characters_are_unmappable_in_every_encoding() {
        // CP932's user-defined area decodes to the private-use area
        let (decoded, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(&[0xF0, 0x40, 0xF9, 0xFC]);
        assert!(!had_errors);
        assert_eq!(decoded, "\u{E000}\u{E757}");
        for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            for s in ["山\u{E001}花子", "\u{E000}", "\u{F8FF}x"] {
                let mut out = b"x".to_vec();
                let c = s.chars().find(|&c| is_private_use(c)).unwrap();
                assert_eq!(encode_into(&mut out, s, enc), Err(c), "{enc:?} {s:?}");
                assert_eq!(out, b"x", "nothing half-written");
            }
            let mut out = Vec::new();
            assert_eq!(encode_replacing(&mut out, "山\u{E001}花子", enc), vec!['\u{E001}']);
            let text = match enc {
                TextEncoding::Utf8 => String::from_utf8(out).unwrap(),
                TextEncoding::ShiftJis => encoding_rs::SHIFT_JIS.decode_without_bom_handling(&out).0.into_owned(),
            };
            assert_eq!(text, "山●花子", "{enc:?}");
        }
        // the characters around the area are ordinary
        assert!(!is_private_use('\u{D7FF}') && !is_private_use('\u{F900}'));
        assert_eq!(
            first_unmappable("\u{F900}", TextEncoding::Utf8),
            None,
            "a CJK compatibility ideograph"
        );
    }
}
