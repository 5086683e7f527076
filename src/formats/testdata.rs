//! Valid sample records and helpers shared by the reader tests.

use super::writer::{RecordWriter, UnmappablePolicy};
use super::{FileHeader, FileRejected, FileSummary, Format, ReadOptions, RecordOutcome, TextEncoding};
use crate::domain::{Catalog, FileKind, InsurerNumber, Timestamp};

pub fn header(kind: FileKind, format: Format, encoding: TextEncoding) -> FileHeader {
    FileHeader {
        kind,
        file_identifier: "F-2026-0001".into(),
        sender: InsurerNumber::parse("131045").unwrap(),
        creation_time: Timestamp::parse("20261121230000").unwrap(),
        file_sequence: 1,
        format,
        encoding,
    }
}

/// One valid record of `kind` (values follow `kind.fields()`), with 副本 items.
pub fn valid(kind: FileKind, seq: u64) -> (Vec<String>, Vec<(String, String)>) {
    let seq = seq.to_string();
    let v: Vec<&str> = match kind {
        FileKind::SubscriberChange => vec![
            &seq,
            "1",
            "20260401",
            "131045",
            "1234567890123456",
            "記号Ａ",
            "12345",
            "01",
            "123456789018",
            "131041",
            "1234567",
            "山田　太郎",
            "ﾔﾏﾀﾞ ﾀﾛｳ",
            "1",
            "19600101",
            "20260401",
            "03",
            "",
            "",
            "1",
            "160-0022",
            "東京都新宿区新宿一丁目1番1号 ソン﨑ハイツ‐101",
        ],
        FileKind::FlagChange => vec![
            &seq,
            "20261121100000",
            "3",
            "1",
            "1",
            "01130012",
            "1234567890123456",
            "",
            "1",
            "1",
            "",
        ],
        FileKind::Fukuhon => vec![
            &seq,
            "1",
            "20261201",
            "01130012",
            "1234567890123456",
            "TM00000000000001",
            "1",
        ],
        FileKind::AgeTransitionHandoff => vec![
            &seq,
            "131045",
            "1234567890123456",
            "123456789018",
            "131041",
            "1234567",
            "山田　花子",
            "ﾔﾏﾀﾞ ﾊﾅｺ",
            "2",
            "19511202",
            "20261202",
            "1",
            "1",
            "0",
            "20240101090000",
        ],
        FileKind::AgeTransitionInquiry => vec![
            &seq,
            "39131040",
            "3913104052000530",
            "123456789018",
            "131041",
            "1234567",
            "山田　花子",
            "ﾔﾏﾀﾞ ﾊﾅｺ",
            "2",
            "19560310",
            "20261116",
            "02",
        ],
        _ => unreachable!(),
    };
    let items = if kind.has_items() {
        vec![
            ("001".into(), "01130012".into()),
            ("002".into(), "20261201".into()),
            ("004".into(), "1".into()),
        ]
    } else {
        vec![]
    };
    (v.into_iter().map(str::to_owned).collect(), items)
}

/// Field values (in `kind.fields()` order) and 副本 item pairs of one record.
pub type Values = (Vec<String>, Vec<(String, String)>);

pub fn write(header: FileHeader, records: &[Values]) -> Vec<u8> {
    let mut w = RecordWriter::start(Vec::new(), header, UnmappablePolicy::Reject).unwrap();
    for (v, items) in records {
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        let items: Vec<(&str, &str)> = items.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        w.write(&v, &items).unwrap();
    }
    w.finish().unwrap().0
}

pub fn write_valid(kind: FileKind, format: Format, encoding: TextEncoding, n: u64) -> Vec<u8> {
    let recs: Vec<_> = (1..=n).map(|i| valid(kind, i)).collect();
    write(header(kind, format, encoding), &recs)
}

pub type Read = (Result<FileSummary, FileRejected>, Vec<RecordOutcome>);

pub fn read(bytes: &[u8]) -> Read {
    let catalog = Catalog::default_catalog();
    let opts = ReadOptions {
        catalog: &catalog,
        limits: Default::default(),
    };
    read_with(bytes, &opts)
}

pub fn read_with(bytes: &[u8], opts: &ReadOptions) -> Read {
    let mut out = Vec::new();
    let r = match super::sniff_format(bytes) {
        Some(Format::Csv) => super::csv_reader::read_from(bytes, "t", opts, &mut |o| out.push(o)),
        _ => super::xml_reader::read_from(bytes, "t", opts, &mut |o| out.push(o)),
    };
    (r, out)
}

/// The file-level error codes, or panics if the file was accepted.
pub fn file_codes(r: &Read) -> Vec<String> {
    match &r.0 {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e.diagnostics.iter().map(|d| d.code.to_string()).collect(),
    }
}

pub fn sjis(s: &str) -> Vec<u8> {
    let (b, _, unmappable) = encoding_rs::SHIFT_JIS.encode(s);
    assert!(!unmappable);
    b.into_owned()
}
