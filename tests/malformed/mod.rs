//! The malformed-input corpus, built from code at test time (issue: hardening item 1).
//!
//! File-level cases are mutations of the bundled samples; record-level cases are one-record
//! files with their own FileIdentifier, so that a run applies nothing from them. The large cases
//! (a 10 MB field, 10 000-deep nesting) are generated here and never committed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Whether the error rejects the whole file or only the (single) record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    File,
    Record,
}

pub struct Case {
    /// `<what>.<ext>`
    pub name: String,
    pub code: &'static str,
    pub level: Level,
    pub bytes: Vec<u8>,
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples").join(name)).unwrap()
}

fn replace_once(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = hay
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{:?} not in sample", String::from_utf8_lossy(from)));
    [&hay[..i], to, &hay[i + from.len()..]].concat()
}

fn cut_before(hay: &[u8], at: &[u8]) -> Vec<u8> {
    let i = hay.windows(at.len()).position(|w| w == at).unwrap();
    hay[..i].to_vec()
}

/// The fields of the one valid 資格取得 the record-level cases start from (spec §3.1 order).
pub fn base_fields() -> Vec<(&'static str, String)> {
    [
        ("RecordSequence", "1"),
        ("ChangeType", "1"),
        ("EffectiveDate", "20261120"),
        ("InsurerNumber", "00131045"),
        ("SubscriberKey", "1310450009990001"),
        ("InsuredCardSymbol", ""),
        ("InsuredIdentificationNumber", "9990001"),
        ("InsuredBranchNumber", "00"),
        ("IndividualNumber", MALFORMED_MY_NUMBER),
        ("MunicipalityCode", "131041"),
        ("ResidentCode", "9990001"),
        ("Name", "試験　花子"),
        ("NameKana", "ｼｹﾝ ﾊﾅｺ"),
        ("Sex1", "2"),
        ("Birthdate", "19600101"),
        ("QualificationDate", "20261120"),
        ("ReasonOfQualification", "03"),
        ("DisqualificationDate", ""),
        ("ReasonOfLoss", ""),
        ("PersonalFamilyClassification", "1"),
        ("PostNumber", "160-0023"),
        ("Address", MALFORMED_ADDRESS),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// A My Number with a valid check digit, used only in this corpus.
pub const MALFORMED_MY_NUMBER: &str = "876543210989";
/// The address in this corpus's records.
pub const MALFORMED_ADDRESS: &str = "東京都新宿区試験町九丁目９番９号";

fn with(fields: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut f = base_fields();
    for (k, v) in fields {
        f.iter_mut().find(|(n, _)| n == k).unwrap_or_else(|| panic!("{k}")).1 = (*v).to_owned();
    }
    f
}

const HEADER_XML: &str = "<FileHeader><FileIdentifier>{ID}</FileIdentifier><SenderInsurerNumber>00131045</SenderInsurerNumber><CreationTime>20261130200000</CreationTime><FileSequence>900</FileSequence></FileHeader>";

/// A one-record SubscriberChange XML file (UTF-8); `extra` goes inside the record, last.
pub fn xml_one(id: &str, fields: &[(&'static str, String)], extra: &str) -> Vec<u8> {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SubscriberChangeFile xmlns=\"urn:nhi-linkage:v1\">{}\n<SubscriberChange>",
        HEADER_XML.replace("{ID}", id)
    );
    for (k, v) in fields {
        if !v.is_empty() {
            s.push_str(&format!("<{k}>{v}</{k}>"));
        }
    }
    s.push_str(extra);
    s.push_str(
        "</SubscriberChange>\n<FileTrailer><RecordCount>1</RecordCount></FileTrailer>\n</SubscriberChangeFile>\n",
    );
    s.into_bytes()
}

/// A one-record SubscriberChange CSV file (UTF-8).
pub fn csv_one(id: &str, fields: &[(&'static str, String)]) -> Vec<u8> {
    let vals: Vec<&str> = fields.iter().map(|(_, v)| v.as_str()).collect();
    format!(
        "H,SubscriberChange,1,{id},00131045,20261130200000,900,0\r\nD,{}\r\nT,1\r\n",
        vals.join(",")
    )
    .into_bytes()
}

/// Every case of the corpus.
pub fn corpus() -> Vec<Case> {
    use Level::*;
    let mut v = Vec::new();
    let mut add = |name: &str, code: &'static str, level: Level, bytes: Vec<u8>| {
        v.push(Case {
            name: name.to_owned(),
            code,
            level,
            bytes,
        })
    };
    let sc_xml = sample("inbox/SubscriberChange_00131045_0340.xml"); // UTF-8
    let sc_csv = sample("inbox/SubscriberChange_00131045_0341.csv"); // UTF-8
    let sc_sjis = sample("formats/xml/shift_jis/SubscriberChange_00131045_0340.xml"); // Shift_JIS, non-ASCII
    let kouki_sjis = sample("inbox/SubscriberChange_39131040_0087.csv"); // Shift_JIS

    // truncation and trailers
    add(
        "truncated_no_trailer.xml",
        "E_TRAILER_COUNT",
        File,
        cut_before(&sc_xml, b"<FileTrailer>"),
    );
    add(
        "truncated_mid_record.xml",
        "E_TRAILER_COUNT",
        File,
        sc_xml[..sc_xml.len() / 2].to_vec(),
    );
    add(
        "truncated_no_trailer.csv",
        "E_TRAILER_COUNT",
        File,
        cut_before(&sc_csv, b"T,"),
    );
    add(
        "truncated_mid_row.csv",
        "E_TRAILER_COUNT",
        File,
        cut_before(&sc_csv, b"T,")[..sc_csv.len() - 20].to_vec(),
    );
    let n = sc_xml.windows(13).filter(|w| w == b"<RecordCount>").count();
    assert_eq!(n, 1);
    add(
        "trailer_count_off.xml",
        "E_TRAILER_COUNT",
        File,
        replace_once(&sc_xml, b"<RecordCount>19<", b"<RecordCount>20<"),
    );
    add(
        "trailer_count_off.csv",
        "E_TRAILER_COUNT",
        File,
        replace_once(&sc_csv, b"\nT,5", b"\nT,4"),
    );

    // encodings
    add(
        "bom_with_shift_jis_declaration.xml",
        "E_ENCODING",
        File,
        [&b"\xEF\xBB\xBF"[..], &sc_sjis].concat(),
    );
    add(
        "bom_with_shift_jis_code.csv",
        "E_ENCODING",
        File,
        [&b"\xEF\xBB\xBF"[..], &kouki_sjis].concat(),
    );
    add(
        "shift_jis_bytes_declared_utf8.xml",
        "E_ENCODING",
        File,
        replace_once(&sc_sjis, b"encoding=\"Shift_JIS\"", b"encoding=\"UTF-8\""),
    );
    add(
        "shift_jis_bytes_declared_utf8.csv",
        "E_ENCODING",
        File,
        replace_once(&kouki_sjis, b",87,1\r\n", b",87,0\r\n"),
    );
    add(
        "utf8_bytes_declared_shift_jis.xml",
        "E_ENCODING",
        File,
        replace_once(&sc_xml, b"encoding=\"UTF-8\"", b"encoding=\"Shift_JIS\""),
    );
    add(
        "utf8_bytes_declared_shift_jis.csv",
        "E_ENCODING",
        File,
        replace_once(&sc_csv, b",341,0", b",341,1"),
    );
    add(
        "nul_byte.xml",
        "E_XML_SYNTAX",
        File,
        replace_once(&sc_xml, "山田　太郎".as_bytes(), "山田\0太郎".as_bytes()),
    );
    add(
        "nul_byte.csv",
        "E_FIELD_FORMAT",
        Record,
        csv_one("MAL-NUL", &with(&[("Name", "試験\0花子")])),
    );

    // sizes: generated, never committed
    let big = "あ".repeat(10 * 1024 * 1024 / 3 + 1);
    add(
        "field_10mb.xml",
        "E_SCHEMA",
        File,
        xml_one("MAL-BIG", &with(&[("Address", &big)]), ""),
    );
    add(
        "field_10mb.csv",
        "E_SCHEMA",
        File,
        csv_one("MAL-BIG", &with(&[("Address", &big)])),
    );
    let deep = format!("{}{}", "<Items>".repeat(10_000), "</Items>".repeat(10_000));
    add(
        "nesting_10k.xml",
        "E_SCHEMA",
        File,
        xml_one("MAL-DEEP", &base_fields(), &deep),
    );

    // DTDs
    let bomb = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE SubscriberChangeFile [\n<!ENTITY a \"aaaaaaaaaa\">\n<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">\n<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">\n<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">\n]>\n";
    let body = String::from_utf8(sc_xml.clone()).unwrap();
    let body = body.split_once("?>\n").unwrap().1.replace("山田　太郎", "&d;");
    add(
        "doctype_entity_bomb.xml",
        "E_DTD_FORBIDDEN",
        File,
        format!("{bomb}{body}").into_bytes(),
    );
    let ext = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE SubscriberChangeFile [\n<!ENTITY x SYSTEM \"file:///etc/passwd\">\n]>\n";
    add(
        "doctype_external_entity.xml",
        "E_DTD_FORBIDDEN",
        File,
        format!("{ext}{}", body.replace("&d;", "&x;")).into_bytes(),
    );

    // structure
    add(
        "two_roots.xml",
        "E_XML_SYNTAX",
        File,
        [&sc_xml[..], b"<SubscriberChangeFile xmlns=\"urn:nhi-linkage:v1\"/>\n"].concat(),
    );
    add(
        "unknown_element_in_header.xml",
        "E_SCHEMA",
        File,
        replace_once(&sc_xml, b"<FileSequence>", b"<Priority>1</Priority><FileSequence>"),
    );
    add(
        "unknown_element_in_record.xml",
        "E_SCHEMA",
        Record,
        xml_one("MAL-UNK", &base_fields(), "<Nickname>x</Nickname>"),
    );
    add(
        "duplicate_record_sequence.xml",
        "E_SEQUENCE",
        File,
        replace_once(&sc_xml, b"<RecordSequence>2<", b"<RecordSequence>1<"),
    );
    add(
        "duplicate_record_sequence.csv",
        "E_SEQUENCE",
        File,
        replace_once(&sc_csv, b"\nD,2,", b"\nD,1,"),
    );
    add(
        "stray_quote.csv",
        "E_SCHEMA",
        File,
        replace_once(&sc_csv, b"\nD,2,2,", b"\nD,2,2\"x\","),
    );
    add(
        "header_flagchange_rows_subscriberchange.csv",
        "E_SCHEMA",
        Record,
        replace_once(
            &csv_one("MAL-KIND", &base_fields()),
            b"H,SubscriberChange,",
            b"H,FlagChange,",
        ),
    );
    add(
        "root_flagchange_records_subscriberchange.xml",
        "E_SCHEMA",
        File,
        replace_once(
            &replace_once(
                &xml_one("MAL-KIND", &base_fields(), ""),
                b"<SubscriberChangeFile ",
                b"<FlagChangeFile ",
            ),
            b"</SubscriberChangeFile>",
            b"</FlagChangeFile>",
        ),
    );

    // impossible dates
    for (ext, f) in [
        ("xml", xml_one as fn(&str, &[(&'static str, String)], &str) -> Vec<u8>),
        ("csv", |id: &str, fl: &[(&'static str, String)], _: &str| {
            csv_one(id, fl)
        }),
    ] {
        add(
            &format!("birthdate_0229_common_year.{ext}"),
            "E_DATE",
            Record,
            f("MAL-0229", &with(&[("Birthdate", "19510229")]), ""),
        );
        add(
            &format!("birthdate_showa_64_jan_8.{ext}"),
            "E_FIELD_FORMAT",
            Record,
            f("MAL-S64", &with(&[("Birthdate", "昭和64年1月8日")]), ""),
        );
        add(
            &format!("birthdate_showa_64_jan_8_packed.{ext}"),
            "E_FIELD_FORMAT",
            Record,
            f("MAL-S64P", &with(&[("Birthdate", "3640108")]), ""),
        );
        add(
            &format!("effective_date_month_13.{ext}"),
            "E_DATE",
            Record,
            f("MAL-M13", &with(&[("EffectiveDate", "20261320")]), ""),
        );
        // check digits of every kind
        add(
            &format!("check_digit_insurer_8.{ext}"),
            "E_CHECK_DIGIT",
            Record,
            f("MAL-CD1", &with(&[("InsurerNumber", "00131046")]), ""),
        );
        add(
            &format!("check_digit_insurer_6_padded.{ext}"),
            "E_CHECK_DIGIT",
            Record,
            f("MAL-CD2", &with(&[("InsurerNumber", "  131046")]), ""),
        );
        add(
            &format!("check_digit_kouki_insurer.{ext}"),
            "E_CHECK_DIGIT",
            Record,
            f("MAL-CD3", &with(&[("InsurerNumber", "39131041")]), ""),
        );
        add(
            &format!("check_digit_my_number.{ext}"),
            "E_CHECK_DIGIT",
            Record,
            f("MAL-CD4", &with(&[("IndividualNumber", "876543210980")]), ""),
        );
        add(
            &format!("check_digit_municipality.{ext}"),
            "E_CHECK_DIGIT",
            Record,
            f("MAL-CD5", &with(&[("MunicipalityCode", "131042")]), ""),
        );
    }
    add(
        "check_digit_sender.xml",
        "E_CHECK_DIGIT",
        File,
        replace_once(
            &sc_xml,
            b"<SenderInsurerNumber>00131045<",
            b"<SenderInsurerNumber>00131046<",
        ),
    );
    add(
        "check_digit_sender.csv",
        "E_CHECK_DIGIT",
        File,
        replace_once(&sc_csv, b",00131045,2026", b",00131046,2026"),
    );
    v
}

/// Writes the corpus into `dir` as `<CODE>__<what>.<ext>`; returns the paths with their cases.
pub fn write_corpus(dir: &Path) -> Vec<(PathBuf, Case)> {
    std::fs::create_dir_all(dir).unwrap();
    corpus()
        .into_iter()
        .map(|c| {
            let p = dir.join(format!("{}__{}", c.code, c.name));
            std::fs::write(&p, &c.bytes).unwrap();
            (p, c)
        })
        .collect()
}

/// Mixed CRLF/LF line ends: not malformed (the spec reads CRLF or LF), so it must read exactly
/// like the original.
pub fn mixed_line_ends() -> (Vec<u8>, Vec<u8>) {
    let orig = sample("inbox/SubscriberChange_00131045_0341.csv");
    let text = String::from_utf8(orig.clone()).unwrap();
    let mut mixed = String::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i % 2 == 1 {
            mixed.push_str(&line.replace("\r\n", "\n"));
        } else {
            mixed.push_str(line);
        }
    }
    assert_ne!(mixed.as_bytes(), &orig[..]);
    (orig, mixed.into_bytes())
}
