//! The streaming reader against the writer and against the whole-file parse.

use super::oracle::read_linkage;
use super::{EVENT_LIMIT, LinkageFile, LinkageItem, LinkageReader, LinkageRows};
use crate::domain::{
    Address, Date, DisclosureClassification, FileKind, FlagType, FukuhonOperation, IndividualNumber, InfoCode,
    InsuredBranchNumber, InsurerNumber, PersonalFamilyClassification, PostNumber, ProcessingCode, ReasonOfLoss,
    SelfInfoReason, Sex1, SubscriberKey, Timestamp,
};
use crate::formats::hex;
use crate::formats::linkage::{FlagRow, FukuhonRow, ProvisionControl, QualificationRow, SubscriberGroup};
use crate::formats::linkage::{LinkageLayout, StandardLayout, linkage_header};
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{Format, TextEncoding};
use anyhow::Result;
use sha2::Digest;
use std::io::Read;

fn group(key: &str, processing: ProcessingCode) -> SubscriberGroup {
    SubscriberGroup {
        processing,
        insurer: InsurerNumber::parse("39130018").unwrap(),
        key: SubscriberKey::parse(key).unwrap(),
        individual_number: Some(IndividualNumber::parse("123456789018").unwrap()),
        name: "山田　花子".into(),
        name_kana: "ﾔﾏﾀﾞ ﾊﾅｺ".into(),
        sex: Sex1::Female,
        birthdate: Date::parse("19520110").unwrap(),
        post_number: Some(PostNumber::parse("160-0023").unwrap()),
        address: Some(Address::parse("東京都新宿区西新宿\"9\",<9>&9").unwrap()),
        control: ProvisionControl {
            self_info: Some(SelfInfoReason::PersonReason),
            non_disclosure: true,
            auto_response: false,
        },
        qualifications: vec![
            QualificationRow {
                insurer: InsurerNumber::parse("39130018").unwrap(),
                card_symbol: None,
                card_number: "1001".into(),
                branch: InsuredBranchNumber::parse("00").unwrap(),
                qualification_date: Date::parse("20270110").unwrap(),
                disqualification_date: None,
                reason_of_loss: None,
                personal_family: PersonalFamilyClassification::Self_,
            },
            QualificationRow {
                insurer: InsurerNumber::parse("39130018").unwrap(),
                card_symbol: Some("記号".into()),
                card_number: "1002".into(),
                branch: InsuredBranchNumber::parse("01").unwrap(),
                qualification_date: Date::parse("20200110").unwrap(),
                disqualification_date: Some(Date::parse("20210110").unwrap()),
                reason_of_loss: Some(ReasonOfLoss::Other),
                personal_family: PersonalFamilyClassification::Family,
            },
        ],
    }
}

fn write(kind: FileKind, format: Format, encoding: TextEncoding, rows: &LinkageRows) -> Vec<u8> {
    let layout = StandardLayout {
        policy: UnmappablePolicy::Reject,
    };
    let h = linkage_header(
        kind,
        format!("{}-x", kind.name()),
        InsurerNumber::parse("39130018").unwrap(),
        Timestamp::parse("20261120230000").unwrap(),
        format,
        encoding,
    );
    let mut buf = Vec::new();
    match rows {
        LinkageRows::Subscribers(g) => layout.subscriber_linkage(&h, &mut g.iter().cloned(), &mut buf),
        LinkageRows::Flags(r) => layout.flag_linkage(&h, &mut r.iter().cloned(), &mut buf),
        LinkageRows::Fukuhon(r) => layout.fukuhon_linkage(&h, &mut r.iter().cloned(), &mut buf),
    }
    .unwrap();
    buf
}

fn samples() -> Vec<(FileKind, LinkageRows)> {
    let ins = InsurerNumber::parse("39130018").unwrap();
    let info = InfoCode::parse("TM00000000000004").unwrap();
    vec![
        (
            FileKind::SubscriberLinkage,
            LinkageRows::Subscribers(vec![
                group("0000000000000001", ProcessingCode::FirstRegistration),
                group("0000000000000002", ProcessingCode::Delete),
            ]),
        ),
        (
            FileKind::FlagLinkage,
            LinkageRows::Flags(vec![
                FlagRow {
                    insurer: ins,
                    key: None,
                    info_code: info,
                    flag_type: FlagType::NonDisclosure,
                    set: true,
                    reason: None,
                    effective_time: Timestamp::parse("20261120090000").unwrap(),
                },
                FlagRow {
                    insurer: ins,
                    key: Some(SubscriberKey::parse("0000000000000001").unwrap()),
                    info_code: info,
                    flag_type: FlagType::SelfInfoProvisionProhibited,
                    set: false,
                    reason: Some(SelfInfoReason::ProviderReason),
                    effective_time: Timestamp::parse("20261120090000").unwrap(),
                },
            ]),
        ),
        (
            FileKind::FukuhonLinkage,
            LinkageRows::Fukuhon(vec![
                FukuhonRow {
                    operation: FukuhonOperation::Register,
                    effective_date: Date::parse("20261201").unwrap(),
                    insurer: ins,
                    key: SubscriberKey::parse("0000000000000001").unwrap(),
                    info_code: info,
                    disclosure: Some(DisclosureClassification::NonDisclose),
                    items: vec![
                        ("001".into(), "20261201".into()),
                        ("002".into(), "所見,\"なし\" <&>".into()),
                    ],
                },
                FukuhonRow {
                    operation: FukuhonOperation::Delete,
                    effective_date: Date::parse("20261201").unwrap(),
                    insurer: ins,
                    key: SubscriberKey::parse("0000000000000002").unwrap(),
                    info_code: info,
                    disclosure: None,
                    items: vec![],
                },
            ]),
        ),
    ]
}

/// The streaming reader, collected.
fn stream(bytes: &[u8]) -> Result<LinkageFile> {
    LinkageReader::new(bytes).and_then(LinkageReader::read_all)
}

/// Hands out a few bytes per read call (1 to 7), so characters, rows and tags are split
/// across reads.
struct Trickle<'a>(&'a [u8], usize);
impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.1 = self.1 % 7 + 1;
        let n = self.1.min(self.0.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn variants() -> Vec<(FileKind, Format, TextEncoding, LinkageRows)> {
    let mut out = Vec::new();
    for (kind, rows) in samples() {
        for format in [Format::Csv, Format::Xml] {
            for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
                out.push((kind, format, encoding, rows.clone()));
            }
        }
    }
    out
}

#[test]
fn reads_back_exactly_what_the_writer_wrote() {
    for (kind, format, encoding, rows) in variants() {
        let bytes = write(kind, format, encoding, &rows);
        let back = read_linkage(&bytes).unwrap_or_else(|e| panic!("{kind:?} {format:?} {encoding:?}: {e:#}"));
        assert_eq!(back.header.kind, kind);
        assert_eq!(back.header.format, format);
        assert_eq!(back.header.encoding, encoding);
        assert_eq!(back.header.file_identifier, format!("{}-x", kind.name()));
        assert_eq!(back.rows, rows, "{kind:?} {format:?} {encoding:?}");
        assert_eq!(write(kind, format, encoding, &back.rows), bytes, "byte for byte");
        // streamed, whole or a few bytes at a time: the same, and the digest of the bytes
        assert_eq!(stream(&bytes).unwrap(), back, "{kind:?} {format:?} {encoding:?}");
        let mut r = LinkageReader::new(Trickle(&bytes, 0)).unwrap();
        assert_eq!(*r.header(), back.header);
        let mut items = Vec::new();
        while let Some(i) = r.next_item().unwrap() {
            items.push(i);
        }
        assert_eq!(r.items(), rows.len() as u64);
        assert!(r.next_item().unwrap().is_none(), "stays at the end");
        let (sha, n) = r.finish().unwrap();
        assert_eq!((hex(&sha), n), (hex(&sha2::Sha256::digest(&bytes)), bytes.len() as u64));
        let expected: Vec<LinkageItem> = match rows {
            LinkageRows::Subscribers(v) => v.into_iter().map(LinkageItem::Subscriber).collect(),
            LinkageRows::Flags(v) => v.into_iter().map(LinkageItem::Flag).collect(),
            LinkageRows::Fukuhon(v) => v.into_iter().map(LinkageItem::Fukuhon).collect(),
        };
        assert_eq!(items, expected);
    }
}

#[test]
fn a_long_file_streams_across_buffer_boundaries() {
    let (_, rows) = samples().remove(0);
    let LinkageRows::Subscribers(g) = rows else {
        unreachable!()
    };
    let many: Vec<SubscriberGroup> = (1..=1500u64)
        .map(|i| {
            let mut x = g[(i % 2) as usize].clone();
            x.key = SubscriberKey::parse(&format!("{i:016}")).unwrap();
            x
        })
        .collect();
    let rows = LinkageRows::Subscribers(many);
    for format in [Format::Csv, Format::Xml] {
        for encoding in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            let bytes = write(FileKind::SubscriberLinkage, format, encoding, &rows);
            assert!(bytes.len() > 4 * crate::formats::decode::CHUNK);
            let back = stream(&bytes).unwrap_or_else(|e| panic!("{format:?} {encoding:?}: {e:#}"));
            assert_eq!(back.rows, rows, "{format:?} {encoding:?}");
            assert_eq!(back, read_linkage(&bytes).unwrap());
        }
    }
}

/// Every prefix of every sample file: the streaming reader accepts exactly what the whole-file
/// parse accepts, with the same result, and says why it refuses without echoing a value.
#[test]
fn truncated_anywhere_the_streaming_reader_agrees_with_the_whole_file_parse() {
    for (kind, format, encoding, rows) in variants() {
        let bytes = write(kind, format, encoding, &rows);
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            let what = format!("{kind:?} {format:?} {encoding:?} cut at {cut}");
            match (read_linkage(part), stream(part)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
                (Err(_), Err(e)) => {
                    let e = format!("{e:#}");
                    assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{what}: {e}");
                }
                (a, b) => panic!("{what}: whole-file {:?}, streamed {:?}", a.err(), b.err()),
            }
        }
    }
}

/// Every byte of every sample file changed in turn: the streaming reader gives the same
/// result as the whole-file parse, or refuses where that parse let through what the writer
/// never writes (text between records, a group split over two elements).
#[test]
fn a_changed_byte_anywhere_the_streaming_reader_agrees_with_the_whole_file_parse() {
    let stricter = [
        "text between the records",
        "text in Subscriber",
        "no 01 row",
        "no 02 row",
    ];
    for (kind, format, encoding, rows) in variants() {
        let bytes = write(kind, format, encoding, &rows);
        for at in 0..bytes.len() {
            for b in [b'x', b'1', b' '] {
                if bytes[at] == b {
                    continue;
                }
                let mut bad = bytes.clone();
                bad[at] = b;
                let what = format!("{kind:?} {format:?} {encoding:?} byte {at} → {:?}", b as char);
                match (read_linkage(&bad), stream(&bad)) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
                    (Err(_), Err(e)) => {
                        let e = format!("{e:#}");
                        assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{what}: {e}");
                    }
                    (Ok(_), Err(e)) if stricter.iter().any(|s| format!("{e:#}").contains(s)) => {}
                    (a, b) => panic!("{what}: whole-file {:?}, streamed {:?}", a.err(), b.err()),
                }
            }
        }
    }
}

#[test]
fn rejects_what_the_writer_never_writes_without_echoing_values() {
    let (kind, rows) = samples().remove(0);
    let good = String::from_utf8(write(kind, Format::Csv, TextEncoding::Utf8, &rows)).unwrap();
    for (bad, why) in [
        (good.replace("T,2,8", "T,2,7"), "trailer"),
        (good.replace("\r\nT,2,8\r\n", "\r\n"), "trailer"),
        (good.replacen("02,1,", "02,2,", 1), "RecordIdentificationNumber"),
        (good.replace("123456789018", "123456789019"), "IndividualNumber"),
        (
            good.replace("H,SubscriberLinkage", "H,SubscriberChange"),
            "not a linkage file",
        ),
        (good.replace("T,2,8\r\n", "T,2,8\r\n01,3\r\n"), "after the trailer"),
        (good.replace("T,2,8\r\n", "T,2,8"), "CRLF"),
        (good.replacen("\r\n02,1,", "\r\n04,1,", 1), "02 row"),
        (good.replacen("\r\n04,1,", "\r\n02,1,", 1), "04 row"),
    ] {
        for e in [
            read_linkage(bad.as_bytes()).unwrap_err(),
            stream(bad.as_bytes()).unwrap_err(),
        ] {
            let e = format!("{e:#}");
            assert!(e.contains(why), "{why}: {e}");
            assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{e}");
        }
    }
    let xml = String::from_utf8(write(kind, Format::Xml, TextEncoding::Utf8, &rows)).unwrap();
    for bad in [
        xml.replace("<GroupCount>2</GroupCount>", "<GroupCount>3</GroupCount>"),
        xml.replace("</SubscriberLinkageFile>\n", ""),
        xml.replace("<Name>", "<Nom>").replace("</Name>", "</Nom>"),
        xml.replacen("<Sex1>2</Sex1>", "<Sex1>2</Sex1><Sex1>2</Sex1>", 1),
    ] {
        assert!(read_linkage(bad.as_bytes()).is_err());
        let e = format!("{:#}", stream(bad.as_bytes()).unwrap_err());
        assert!(!e.contains("12345678901") && !e.contains("西新宿"), "{e}");
    }
    // stricter than the whole-file parse, which let these through: one group per element,
    // nothing but whitespace between the records
    let first_group_end = xml.find("</Subscriber>").unwrap();
    for (bad, why) in [
        (
            xml.replacen("<Subscriber>", "<Subscriber></Subscriber><Subscriber>", 1),
            "no 01 row",
        ),
        (
            xml.replacen(
                "<ProvisionControl>",
                "</Subscriber>\n  <Subscriber><ProvisionControl>",
                1,
            ),
            "no 02 row",
        ),
        (
            format!("{}x{}", &xml[..first_group_end], &xml[first_group_end..]),
            "text in Subscriber",
        ),
        (xml.replacen("<Subscriber>", "x<Subscriber>", 1), "between the records"),
    ] {
        let e = format!("{:#}", stream(bad.as_bytes()).unwrap_err());
        assert!(e.contains(why), "{why}: {e}");
    }
    let sjis = write(kind, Format::Csv, TextEncoding::ShiftJis, &rows);
    let mut broken = sjis.clone();
    let at = broken.iter().position(|b| *b >= 0x81).unwrap();
    broken[at] = 0xA0;
    for e in [read_linkage(&broken).unwrap_err(), stream(&broken).unwrap_err()] {
        let e = format!("{e:#}");
        assert!(e.contains("encoding"), "{e}");
    }
}

#[test]
fn a_row_or_event_beyond_the_limit_is_refused_not_buffered() {
    let (kind, rows) = samples().remove(0);
    let long = "ｱ".repeat(EVENT_LIMIT as usize);
    for format in [Format::Csv, Format::Xml] {
        let good = String::from_utf8(write(kind, format, TextEncoding::Utf8, &rows)).unwrap();
        let bad = good.replacen("ﾔﾏﾀﾞ ﾊﾅｺ", &long, 1);
        let e = format!("{:#}", stream(bad.as_bytes()).unwrap_err());
        assert!(e.contains("longer than this program writes"), "{format:?}: {e}");
    }
}

#[test]
fn the_iterator_ends_after_an_error() {
    let (kind, rows) = samples().remove(0);
    let good = String::from_utf8(write(kind, Format::Csv, TextEncoding::Utf8, &rows)).unwrap();
    let bad = good.replace("T,2,8", "T,2,7");
    let items: Vec<Result<LinkageItem>> = LinkageReader::new(bad.as_bytes()).unwrap().collect();
    assert_eq!(items.len(), 3, "two groups, then the trailer error");
    assert!(items[..2].iter().all(Result::is_ok));
    assert!(format!("{:#}", items[2].as_ref().unwrap_err()).contains("trailer"));
    let mut r = LinkageReader::new(bad.as_bytes()).unwrap();
    while r.next_item().is_ok_and(|i| i.is_some()) {}
    assert!(r.next_item().is_err(), "a failed reader keeps failing");
    assert!(r.finish().is_err());
}
