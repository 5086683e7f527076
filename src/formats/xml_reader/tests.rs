//! Tests of the XML reader: round trips, Shift_JIS trail bytes, record- and file-level rules, encodings, limits.

use super::*;
use crate::domain::{FileKind, RawRecord};
use crate::formats::Format;
use crate::formats::Limits;
use crate::formats::testdata::read as read_bytes;
use crate::formats::testdata::{file_codes, header, read_with, sjis, valid, write_valid};

const K: FileKind = FileKind::SubscriberChange;

fn doc(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SubscriberChangeFile xmlns=\"urn:nhi-linkage:v1\">\n  <FileHeader>\n    <FileIdentifier>F-1</FileIdentifier>\n    <SenderInsurerNumber>131045</SenderInsurerNumber>\n    <CreationTime>20261121230000</CreationTime>\n    <FileSequence>1</FileSequence>\n  </FileHeader>\n{body}</SubscriberChangeFile>\n"
    )
}

/// A SubscriberChange record element with the valid values, `edit` applied to (name, value).
fn rec(seq: u64, edit: impl Fn(&str, &str) -> Option<String>) -> String {
    let (vals, _) = valid(K, seq);
    let mut s = String::from("  <SubscriberChange>\n");
    for (name, v) in K.fields().iter().zip(&vals) {
        let v = edit(name, v).unwrap_or_else(|| v.clone());
        if !v.is_empty() {
            s += &format!("    <{name}>{v}</{name}>\n");
        }
    }
    s + "  </SubscriberChange>\n"
}

fn ok_rec(seq: u64) -> String {
    rec(seq, |_, _| None)
}

fn trailer(n: u64) -> String {
    format!("  <FileTrailer><RecordCount>{n}</RecordCount></FileTrailer>\n")
}

fn codes_of(out: &[RecordOutcome]) -> Vec<Vec<(Option<String>, String)>> {
    out.iter()
        .map(|o| match o {
            RecordOutcome::Accepted(_) => vec![],
            RecordOutcome::Rejected { faults, .. } => {
                faults.iter().map(|d| (d.field.clone(), d.code.to_string())).collect()
            }
        })
        .collect()
}

#[test]
fn round_trip_every_kind_and_encoding() {
    for kind in FileKind::INPUTS {
        for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            let bytes = write_valid(kind, Format::Xml, enc, 3);
            let (r, out) = read_bytes(&bytes);
            let s = r.unwrap_or_else(|e| panic!("{kind:?} {enc:?}: {:?}", e.diagnostics));
            assert_eq!((s.records, s.rejected, s.bytes), (3, 0, bytes.len() as u64));
            assert_eq!(s.header, header(kind, Format::Xml, enc));
            use sha2::Digest;
            assert_eq!(s.sha256, <[u8; 32]>::from(sha2::Sha256::digest(&bytes)));
            let cat = crate::domain::Catalog::default_catalog();
            for (i, o) in out.iter().enumerate() {
                let (v, items) = valid(kind, i as u64 + 1);
                let raw = RawRecord {
                    values: v.into_iter().map(Some).collect(),
                    items,
                };
                let want = crate::domain::records::build(kind, i as u64 + 1, &raw, &cat).unwrap();
                match o {
                    RecordOutcome::Accepted(r) => assert_eq!(r, &want),
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}

#[test]
fn shift_jis_trail_byte_0x5d_in_text_and_cdata() {
    assert_eq!(sjis("‐"), b"\x81\x5D");
    assert_eq!(sjis("ゾ"), b"\x83\x5D");
    let addr = "東京都ゾ‐]]"; // ends in ']]' right before '<' or inside CDATA before ']]>'
    for body in [
        rec(1, |n, _| (n == "Address").then(|| addr.to_owned())),
        rec(1, |n, _| (n == "Address").then(|| format!("<![CDATA[{addr}]]>"))),
    ] {
        let text = doc(&(body + &trailer(1))).replace("UTF-8", "Shift_JIS");
        let (r, out) = read_bytes(&sjis(&text));
        r.unwrap();
        let RecordOutcome::Accepted(crate::domain::Record::SubscriberChange(c)) = &out[0] else {
            panic!()
        };
        assert_eq!(c.address.as_ref().unwrap().expose(), addr);
    }
}

#[test]
fn empty_is_absent_and_entities() {
    let body = rec(1, |n, _| match n {
        "InsuredCardSymbol" => Some("<![CDATA[]]>".into()),
        "Address" => Some("A&amp;B &#x5C71;&#30000;".into()),
        _ => None,
    })
    .replace("<ResidentCode>1234567</ResidentCode>", "<ResidentCode/>");
    let (r, out) = read_bytes(doc(&(body + &trailer(1))).as_bytes());
    r.unwrap();
    let RecordOutcome::Accepted(crate::domain::Record::SubscriberChange(c)) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(c.card_symbol, None);
    assert_eq!(c.resident, None);
    assert_eq!(c.address.as_ref().unwrap().expose(), "A&B 山田");
}

#[test]
fn record_level_schema_errors_reject_the_record_only() {
    let out_of_order = ok_rec(2)
        .replace("    <EffectiveDate>20260401</EffectiveDate>\n", "")
        .replace("<Address>", "<EffectiveDate>20260401</EffectiveDate><Address>");
    let repeated = ok_rec(3).replace("<Sex1>1</Sex1>", "<Sex1>1</Sex1><Sex1>2</Sex1>");
    let unknown = ok_rec(4).replace("<Sex1>1</Sex1>", "<Sex1>1</Sex1><Gender><x/>2</Gender>");
    let nested = ok_rec(5).replace("<Sex1>1</Sex1>", "<Sex1><b>1</b></Sex1>");
    let mixed = ok_rec(6).replace("<Sex1>1</Sex1>", "<Sex1>1</Sex1>stray");
    let attr = ok_rec(7).replace("<Sex1>", "<Sex1 a=\"1\">");
    let items = ok_rec(8).replace("<Sex1>1</Sex1>", "<Sex1>1</Sex1><Items/>");
    let field_errors = rec(9, |n, _| match n {
        "InsurerNumber" => Some("131046".into()),
        "Birthdate" => Some("20230229".into()),
        "Sex1" => Some(" 1".into()),
        _ => None,
    });
    let body = [
        ok_rec(1),
        out_of_order,
        repeated,
        unknown,
        nested,
        mixed,
        attr,
        items,
        field_errors,
        ok_rec(10),
    ]
    .concat();
    let (r, out) = read_bytes(doc(&(body + &trailer(10))).as_bytes());
    let s = r.unwrap_or_else(|e| panic!("{:?}", e.diagnostics));
    assert_eq!((s.records, s.rejected), (10, 8));
    let c = codes_of(&out);
    let schema = |f: Option<&str>| (f.map(str::to_owned), "E_SCHEMA".to_owned());
    assert!(c[0].is_empty() && c[9].is_empty());
    assert_eq!(c[1], vec![schema(Some("EffectiveDate"))]);
    assert_eq!(c[2], vec![schema(Some("Sex1"))]);
    assert_eq!(c[3], vec![schema(None)]);
    assert_eq!(
        c[4],
        vec![schema(Some("Sex1")), schema(Some("Sex1"))],
        "nested element; then Sex1 is missing"
    );
    assert_eq!(c[5], vec![schema(None)]);
    assert_eq!(c[6], vec![schema(None)]);
    assert_eq!(c[7], vec![schema(None)]);
    let codes: Vec<_> = c[8]
        .iter()
        .map(|(f, c)| format!("{}:{c}", f.as_deref().unwrap()))
        .collect();
    assert_eq!(
        codes,
        ["InsurerNumber:E_CHECK_DIGIT", "Sex1:E_CODE", "Birthdate:E_DATE"]
            .map(String::from)
            .to_vec()
            .into_iter()
            .filter(|x| codes.contains(x))
            .collect::<Vec<_>>()
    );
    assert_eq!(codes.len(), 3, "{codes:?}");
    let RecordOutcome::Rejected { seq, faults } = &out[8] else {
        panic!()
    };
    assert_eq!(*seq, 9);
    assert!(
        faults
            .iter()
            .all(|d| d.line == Some(d.line.unwrap()) && d.record_sequence == Some(9))
    );
    assert!(
        faults
            .iter()
            .all(|d| !d.message.contains("20230229") && !d.message.contains("131046"))
    );
}

fn file_err(text: &str) -> (String, Option<u64>) {
    let r = read_bytes(text.as_bytes());
    let d = &r.0.as_ref().expect_err("rejected").diagnostics[0];
    (d.code.to_string(), d.line)
}

#[test]
fn file_level_rules() {
    let good = doc(&(ok_rec(1) + &trailer(1)));
    assert!(read_bytes(good.as_bytes()).0.is_ok());
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE x [<!ENTITY a \"b\">]>",
            ),
            "E_DTD_FORBIDDEN",
        ),
        (good.replace("<Address>", "<Address>&bogus;"), "E_XML_SYNTAX"),
        (good.replace("<Address>", "<Address>&#0;"), "E_XML_SYNTAX"),
        (good.clone() + "<SubscriberChangeFile/>", "E_XML_SYNTAX"),
        (good.clone() + "junk", "E_XML_SYNTAX"),
        (good.replace("</SubscriberChangeFile>\n", ""), "E_XML_SYNTAX"),
        (good.replace("</Sex1>", "</Sex>"), "E_XML_SYNTAX"),
        (good.replace("<Address>", "<Address>]]>"), "E_XML_SYNTAX"),
        (good.replace("<Address>", "<Address>\u{1}"), "E_XML_SYNTAX"),
        (format!("  {}", good), "E_XML_SYNTAX"),
        (good.replace(" xmlns=\"urn:nhi-linkage:v1\"", ""), "E_SCHEMA"),
        (good.replace("urn:nhi-linkage:v1", "urn:other"), "E_SCHEMA"),
        (
            good.replace("SubscriberChangeFile", "SubscriberLinkageFile"),
            "E_SCHEMA",
        ),
        (good.replace("<FileHeader>", "<FileHeader id=\"1\">"), "E_SCHEMA"),
        (good.replace("<FileSequence>1</FileSequence>", ""), "E_SCHEMA"),
        (
            good.replace("<FileSequence>1</FileSequence>", "<FileSequence>0</FileSequence>"),
            "E_FIELD_FORMAT",
        ),
        (
            good.replace("<SenderInsurerNumber>131045", "<SenderInsurerNumber>131046"),
            "E_CHECK_DIGIT",
        ),
        (good.replace("20261121230000", "20260230230000"), "E_DATE"),
        (good.replace("F-1", &"x".repeat(41)), "E_FIELD_FORMAT"),
        (good.replace("<FileTrailer>", "<Foo/><FileTrailer>"), "E_SCHEMA"),
        (good.replace("</FileTrailer>", "</FileTrailer><Foo/>"), "E_SCHEMA"),
        (good.replace("<RecordCount>1", "<RecordCount>2"), "E_TRAILER_COUNT"),
        (good.replace("<RecordCount>1", "<RecordCount>one"), "E_TRAILER_COUNT"),
        (good.replace(&trailer(1), ""), "E_TRAILER_COUNT"),
        (good[..good.find("<Sex1>").unwrap()].to_owned(), "E_TRAILER_COUNT"),
        (good.replace("<RecordSequence>1<", "<RecordSequence>x<"), "E_SEQUENCE"),
        (good.replace("<RecordSequence>1</RecordSequence>", ""), "E_SEQUENCE"),
        (doc(&(ok_rec(2) + &ok_rec(2) + &trailer(2))), "E_SEQUENCE"),
        (doc(&(ok_rec(3) + &ok_rec(2) + &trailer(2))), "E_SEQUENCE"),
        (good.replace("encoding=\"UTF-8\"", "encoding=\"EUC-JP\""), "E_ENCODING"),
        (String::new(), "E_XML_SYNTAX"),
    ];
    for (text, want) in &cases {
        assert_eq!(&file_err(text).0, want, "{text}");
    }
    // lines: the sequence error names the record's line, syntax errors theirs
    let t = doc(&(ok_rec(2) + &ok_rec(2) + &trailer(2)));
    let r = read_bytes(t.as_bytes());
    let d = &r.0.unwrap_err().diagnostics[0];
    assert_eq!(d.line, Some(31));
    assert!(d.message.contains("RecordSequence 2"), "{}", d.message);
    assert_eq!(file_err(&good.replace("</Sex1>", "</Sex>")).1, Some(23));
}

#[test]
fn encoding_errors_name_offset_and_line() {
    let good = doc(&(ok_rec(1) + &trailer(1)));
    // Shift_JIS bytes in a file declared UTF-8
    let mut bytes = good.as_bytes().to_vec();
    let at = good.find("山田").unwrap();
    bytes.splice(at..at + "山田".len(), sjis("山田"));
    let e = read_bytes(&bytes).0.unwrap_err();
    let d = &e.diagnostics[0];
    assert_eq!(
        (d.code, d.byte_offset, d.line),
        (ErrorCode::Encoding, Some(at as u64), Some(21))
    );
    // BOM + Shift_JIS declaration
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(sjis(&good.replace("UTF-8", "Shift_JIS")));
    let d = &read_bytes(&bytes).0.unwrap_err().diagnostics[0];
    assert_eq!((d.code, d.byte_offset), (ErrorCode::Encoding, Some(0)));
    // BOM + UTF-8 is fine
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(good.as_bytes());
    assert!(read_bytes(&bytes).0.is_ok());
    // no declaration = UTF-8
    let nodecl = good.replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", "");
    assert!(read_bytes(nodecl.as_bytes()).0.is_ok());
}

#[test]
fn limits() {
    let cat = crate::domain::Catalog::default_catalog();
    let mut limits = Limits {
        max_depth: 4,
        ..Default::default()
    };
    let opts = ReadOptions { catalog: &cat, limits };
    let deep = doc(&(ok_rec(1).replace("<Sex1>1</Sex1>", "<Sex1><a><b>1</b></a></Sex1>") + &trailer(1)));
    assert_eq!(file_codes(&read_with(deep.as_bytes(), &opts)), ["E_SCHEMA"]);
    limits = Limits {
        max_field_bytes: 30,
        ..Default::default()
    };
    let opts = ReadOptions { catalog: &cat, limits };
    let (r, out) = read_with(doc(&(ok_rec(1) + &trailer(1))).as_bytes(), &opts);
    r.unwrap();
    assert_eq!(
        codes_of(&out)[0],
        vec![(Some("Address".to_owned()), "E_FIELD_FORMAT".to_owned())]
    );
    limits = Limits {
        max_record_bytes: 600,
        ..Default::default()
    };
    let opts = ReadOptions { catalog: &cat, limits };
    let big = doc(
        &(ok_rec(1).replace("<Sex1>1</Sex1>", &format!("<Sex1>1</Sex1><!--{}-->", "x".repeat(2000))) + &trailer(1)),
    );
    assert_eq!(file_codes(&read_with(big.as_bytes(), &opts)), ["E_SCHEMA"]);
}
