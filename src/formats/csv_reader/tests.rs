//! Tests of the CSV reader: round trips, quoting, header and trailer rules, encodings, limits.

use super::*;
use crate::formats::Limits;
use crate::formats::testdata::{file_codes, header, read_with, sjis, valid, write, write_valid};

const H: &str = "H,SubscriberChange,1,F-1,131045,20261121230000,1,0\r\n";

fn row(seq: u64, edit: impl Fn(&str, &str) -> Option<String>) -> String {
    let (vals, _) = valid(FileKind::SubscriberChange, seq);
    let cols: Vec<String> = FileKind::SubscriberChange
        .fields()
        .iter()
        .zip(&vals)
        .map(|(n, v)| edit(n, v).unwrap_or_else(|| v.clone()))
        .collect();
    format!("D,{}\r\n", cols.join(","))
}

fn ok(seq: u64) -> String {
    row(seq, |_, _| None)
}

fn read_bytes(b: &[u8]) -> crate::formats::testdata::Read {
    let cat = crate::domain::Catalog::default_catalog();
    let mut out = Vec::new();
    let r = read_from(
        b,
        "t",
        &ReadOptions {
            catalog: &cat,
            limits: Default::default(),
        },
        &mut |o| out.push(o),
    );
    (r, out)
}

fn first_code(text: &[u8]) -> (String, Option<u64>, Option<u64>) {
    let r = read_bytes(text);
    let d = &r.0.as_ref().expect_err("rejected").diagnostics[0];
    (d.code.to_string(), d.line, d.byte_offset)
}

#[test]
fn round_trip_every_kind_and_encoding_with_quoting() {
    for kind in FileKind::INPUTS {
        for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            let bytes = write_valid(kind, Format::Csv, enc, 3);
            let (r, out) = read_bytes(&bytes);
            let s = r.unwrap_or_else(|e| panic!("{kind:?} {enc:?}: {:?}", e.diagnostics));
            assert_eq!((s.records, s.rejected, s.bytes), (3, 0, bytes.len() as u64));
            assert_eq!(s.header, header(kind, Format::Csv, enc));
            assert!(out.iter().all(|o| matches!(o, RecordOutcome::Accepted(_))));
        }
    }
    // quoted fields with commas, quotes and a 0x5C trail byte (ソ) in Shift_JIS
    let mut recs = vec![valid(FileKind::SubscriberChange, 1)];
    recs[0].0[21] = "東京都\"ソ,ゾ\"区".into();
    for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
        let mut h = header(FileKind::SubscriberChange, Format::Csv, enc);
        h.file_identifier = "F,\"1\"".into();
        let bytes = write(h.clone(), &recs);
        let (r, out) = read_bytes(&bytes);
        assert_eq!(r.unwrap().header, h);
        let RecordOutcome::Accepted(crate::domain::Record::SubscriberChange(c)) = &out[0] else {
            panic!()
        };
        assert_eq!(c.address.as_ref().unwrap().expose(), "東京都\"ソ,ゾ\"区");
    }
}

#[test]
fn lf_line_ends_bom_and_empty_fields() {
    let text = format!("\u{FEFF}{H}{}T,1\n", ok(1)).replace("\r\n", "\n");
    let (r, out) = read_bytes(text.as_bytes());
    assert_eq!(r.unwrap().records, 1);
    assert!(matches!(out[0], RecordOutcome::Accepted(_)));
    // BOM with CharacterCodeIdentifier 1 (Shift_JIS)
    let text = format!("{}{}T,1\r\n", H.replace(",0\r\n", ",1\r\n"), ok(1));
    let (code, line, off) = first_code(&[&b"\xEF\xBB\xBF"[..], &sjis(&text)].concat());
    assert_eq!((code.as_str(), line, off), ("E_ENCODING", Some(1), Some(0)));
}

#[test]
fn record_level_errors() {
    let short = ok(2).replacen(",1,", ",", 1).replace(",03,", ",03");
    let fields = row(3, |n, _| match n {
        "IndividualNumber" => Some("123456789012".into()),
        "EffectiveDate" => Some("S630101".into()),
        "ChangeType" => Some("7".into()),
        _ => None,
    });
    let text = format!("{H}{}{short}{fields}{}T,4\r\n", ok(1), ok(4));
    let (r, out) = read_bytes(text.as_bytes());
    let s = r.unwrap_or_else(|e| panic!("{:?}", e.diagnostics));
    assert_eq!((s.records, s.rejected), (4, 2));
    let RecordOutcome::Rejected { seq: 2, faults } = &out[1] else {
        panic!("{:?}", out[1])
    };
    assert_eq!((faults[0].code, faults[0].line), (ErrorCode::Schema, Some(3)));
    let RecordOutcome::Rejected { seq: 3, faults } = &out[2] else {
        panic!()
    };
    let got: Vec<_> = faults.iter().map(|d| (d.field.clone().unwrap(), d.code)).collect();
    assert!(
        got.contains(&("IndividualNumber".into(), ErrorCode::CheckDigit)),
        "{got:?}"
    );
    assert!(got.contains(&("EffectiveDate".into(), ErrorCode::FieldFormat)));
    assert!(got.contains(&("ChangeType".into(), ErrorCode::Code)));
    assert!(faults.iter().all(|d| !d.to_string().contains("123456789012")));
    // Fukuhon: item pairs, odd tail
    let (v, _) = valid(FileKind::Fukuhon, 1);
    let base = format!("D,{}", v.join(","));
    let text = format!(
        "H,Fukuhon,1,F-1,131045,20261121230000,1,0\n{base},001,01130012,002,20261201,004,1\n{},001,01130012,002,20261201,004\nT,2\n",
        base.replace("D,1,", "D,2,")
    );
    let (r, out) = read_bytes(text.as_bytes());
    r.unwrap();
    let RecordOutcome::Accepted(crate::domain::Record::Fukuhon(f)) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!(f.items.len(), 3);
    let RecordOutcome::Rejected { faults, .. } = &out[1] else {
        panic!()
    };
    assert!(
        faults
            .iter()
            .any(|d| d.code == ErrorCode::Schema && d.field.as_deref() == Some("Items/ItemCode"))
    );
}

#[test]
fn file_level_rules() {
    let good = format!("{H}{}{}T,2\r\n", ok(1), ok(2));
    assert!(read_bytes(good.as_bytes()).0.is_ok());
    let cases: Vec<(String, &str, Option<u64>)> = vec![
        (good.replace("東京都", "東\"京都"), "E_SCHEMA", Some(2)),
        (
            good.replace("東京都新宿区新宿一丁目1番1号 ソン﨑ハイツ‐101\r\nT", "\"東京都\"x\r\nT"),
            "E_SCHEMA",
            Some(3),
        ),
        (good.replace("T,2\r\n", "\"T,2\r\n"), "E_SCHEMA", None),
        (good.replace("H,", "X,"), "E_SCHEMA", Some(1)),
        (good.replace(",1,0\r\n", ",1\r\n"), "E_SCHEMA", Some(1)),
        (good.replace(",1,0\r\n", ",1,2\r\n"), "E_CODE", Some(1)),
        (
            good.replace("SubscriberChange,1,", "SubscriberChange,2,"),
            "E_SCHEMA",
            Some(1),
        ),
        (
            good.replace("H,SubscriberChange", "H,SubscriberLinkage"),
            "E_SCHEMA",
            Some(1),
        ),
        (good.replace(",131045,", ",131046,"), "E_CHECK_DIGIT", Some(1)),
        (good.replace(",20261121230000,", ",20261121240000,"), "E_DATE", Some(1)),
        (good.replace("F-1", ""), "E_SCHEMA", Some(1)),
        (good.replace("F-1", "F\u{7}1"), "E_FIELD_FORMAT", Some(1)),
        (good.clone() + H, "E_SCHEMA", Some(5)),
        (good.replace("T,2", &format!("{}T,2", H)), "E_SCHEMA", Some(4)),
        (good.clone() + "T,2\r\n", "E_SCHEMA", Some(5)),
        (good.replace("T,2", "X,2"), "E_SCHEMA", Some(4)),
        (good.replace("T,2", "T,3"), "E_TRAILER_COUNT", None),
        (good.replace("T,2", "T,2,0"), "E_TRAILER_COUNT", Some(4)),
        (good.replace("T,2\r\n", ""), "E_TRAILER_COUNT", None),
        (good[..good.len() - 40].to_owned(), "E_TRAILER_COUNT", None),
        (good.replace("D,2,", "D,1,"), "E_SEQUENCE", Some(3)),
        (good.replace("D,2,", "D,,"), "E_SEQUENCE", Some(3)),
        (good.replace("D,2,", "D,-2,"), "E_SEQUENCE", Some(3)),
        (String::new(), "E_SCHEMA", None),
    ];
    for (text, want, line) in &cases {
        let (code, l, _) = first_code(text.as_bytes());
        assert_eq!(&code, want, "{text}");
        if line.is_some() {
            assert_eq!(&l, line, "{text}");
        }
    }
    let d = read_bytes(good.replace("D,2,", "D,1,").as_bytes())
        .0
        .unwrap_err()
        .diagnostics;
    assert!(d[0].message.contains("RecordSequence 1"), "{}", d[0]);
}

#[test]
fn encoding_errors_name_offset_and_line() {
    // Shift_JIS bytes in a file declaring UTF-8
    let good = format!("{H}{}{}T,2\r\n", ok(1), ok(2));
    let at = good.rfind("山田").unwrap();
    let mut bytes = good.as_bytes().to_vec();
    bytes.splice(at..at + "山田".len(), sjis("山田"));
    let (code, line, off) = first_code(&bytes);
    assert_eq!((code.as_str(), line, off), ("E_ENCODING", Some(3), Some(at as u64)));
    // an invalid Shift_JIS sequence (lead byte + comma)
    let text = good.replace(",0\r\n", ",1\r\n");
    let mut bytes = sjis(&text);
    let at = bytes.len() - 10;
    bytes[at] = 0x83;
    bytes[at + 1] = b',';
    let (code, line, off) = first_code(&bytes);
    assert_eq!((code.as_str(), line, off), ("E_ENCODING", Some(3), Some(at as u64)));
}

#[test]
fn limits() {
    let cat = crate::domain::Catalog::default_catalog();
    let good = format!("{H}{}T,1\r\n", ok(1));
    let opts = ReadOptions {
        catalog: &cat,
        limits: Limits {
            max_field_bytes: 40,
            ..Default::default()
        },
    };
    let (r, out) = read_with(good.as_bytes(), &opts);
    r.unwrap();
    let RecordOutcome::Rejected { faults, .. } = &out[0] else {
        panic!()
    };
    assert_eq!(faults.len(), 1);
    assert_eq!(
        (faults[0].field.as_deref(), faults[0].code),
        (Some("Address"), ErrorCode::FieldFormat)
    );
    let opts = ReadOptions {
        catalog: &cat,
        limits: Limits {
            max_record_bytes: 100,
            ..Default::default()
        },
    };
    assert_eq!(file_codes(&read_with(good.as_bytes(), &opts)), ["E_SCHEMA"]);
    let huge = format!("{H}D,1,{}\r\nT,1\r\n", "x".repeat(400_000));
    assert_eq!(file_codes(&read_bytes(huge.as_bytes())), ["E_SCHEMA"]);
}
