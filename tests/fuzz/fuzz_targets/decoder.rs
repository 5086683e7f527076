//! The strict decoder (both encodings, both outputs, any chunk size) against encoding_rs decoding
//! the whole input at once: it must accept exactly the inputs encoding_rs decodes without error,
//! produce the same text, and hash every byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhi_linkage::formats::TextEncoding;
use nhi_linkage::formats::decode::{Output, StrictDecoder, decode_field};
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    // the mode comes from the length, so any file is a usable seed as it is
    let body = data;
    let sel = data.len();
    let encoding = if sel & 1 == 0 { TextEncoding::Utf8 } else { TextEncoding::ShiftJis };
    let output = if sel & 2 == 0 { Output::Utf8 } else { Output::Validated };
    let chunk = 4 + (sel >> 2) % 61;
    let mut d = StrictDecoder::with_chunk(body, encoding, output, chunk);
    let mut got = Vec::new();
    let res = d.read_to_end(&mut got);

    // reference: whole-input decoding (a UTF-8 BOM is skipped for UTF-8 and refused for Shift_JIS)
    let bom = body.starts_with(b"\xEF\xBB\xBF");
    let want: Option<String> = match encoding {
        TextEncoding::Utf8 => {
            let rest = if bom { &body[3..] } else { body };
            std::str::from_utf8(rest).ok().map(str::to_owned)
        }
        TextEncoding::ShiftJis if bom => None,
        TextEncoding::ShiftJis => encoding_rs::SHIFT_JIS
            .decode_without_bom_handling_and_without_replacement(body)
            .map(|c| c.into_owned()),
    };
    match (&want, &res) {
        (Some(text), Ok(_)) => {
            if output == Output::Utf8 {
                assert_eq!(got, text.as_bytes(), "same text");
            } else {
                let raw = if bom && encoding == TextEncoding::Utf8 { &body[3..] } else { body };
                assert_eq!(got, raw, "validated mode passes the raw bytes");
            }
            assert_eq!(d.finish_digest().unwrap().1, body.len() as u64, "every byte hashed");
        }
        (None, Err(_)) => {}
        _ => panic!("strict decoder and encoding_rs disagree: reference ok = {}", want.is_some()),
    }

    // field decoding agrees with the stream decoder on BOM-less input
    let mut s = String::new();
    let field_ok = decode_field(body, encoding, &mut s).is_ok();
    if !bom {
        assert_eq!(field_ok, want.is_some(), "decode_field agrees");
    }
});
