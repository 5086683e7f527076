//! Drives the real `nhi-linkage validate` binary over the invalid samples and over valid files
//! written with `RecordWriter`.

use nhi_linkage::domain::{FileKind, InsurerNumber, Timestamp};
use nhi_linkage::formats::writer::{RecordWriter, UnmappablePolicy};
use nhi_linkage::formats::{FileHeader, Format, TextEncoding};
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nhi-linkage"))
}

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/invalid");
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn every_invalid_sample_fails_with_the_code_in_its_name() {
    let files = samples();
    let mut seen = std::collections::BTreeSet::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let want = name.split("__").next().unwrap();
        seen.insert(want.to_owned());
        let out = bin().args(["validate", "--format", "json"]).arg(f).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let diags = v["files"][0]["diagnostics"].as_array().unwrap();
        assert!(!diags.is_empty(), "{name}");
        for d in diags {
            assert_eq!(d["code"], want, "{name}: {d}");
        }
        // never an input value: the My Number, the name or the address of the samples
        let text = String::from_utf8_lossy(&out.stdout);
        for secret in ["123456789018", "123456789012", "山田", "新宿一丁目"] {
            assert!(!text.contains(secret), "{name} leaks {secret}");
        }
        let out = bin().arg("validate").arg(f).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(want) && (text.starts_with("REJECTED") || text.starts_with("ERRORS")),
            "{text}"
        );
    }
    for code in [
        "E_ENCODING",
        "E_XML_SYNTAX",
        "E_DTD_FORBIDDEN",
        "E_SCHEMA",
        "E_FIELD_FORMAT",
        "E_CHECK_DIGIT",
        "E_DATE",
        "E_CODE",
        "E_TRAILER_COUNT",
        "E_SEQUENCE",
    ] {
        assert!(seen.contains(code), "no sample for {code}");
    }
    // the whole folder at once: exit 1, one block per file
    let out = bin().arg("validate").arg(files[0].parent().unwrap()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let blocks = text.lines().filter(|l| !l.starts_with(' ')).count();
    assert_eq!(blocks, files.len());
}

fn write_valid(path: &Path, kind: FileKind, format: Format, encoding: TextEncoding) {
    let header = FileHeader {
        kind,
        file_identifier: format!("T-{kind:?}"),
        sender: InsurerNumber::parse("131045").unwrap(),
        creation_time: Timestamp::parse("20261121230000").unwrap(),
        file_sequence: 1,
        format,
        encoding,
    };
    let f = std::fs::File::create(path).unwrap();
    let mut w = RecordWriter::start(std::io::BufWriter::new(f), header, UnmappablePolicy::Reject).unwrap();
    for seq in 1..=5u32 {
        let s = seq.to_string();
        let vals: Vec<&str> = match kind {
            FileKind::SubscriberChange => vec![
                &s,
                "1",
                "20260401",
                "131045",
                "1234567890123456",
                "",
                "12345",
                "01",
                "123456789018",
                "131041",
                "1234567",
                "髙橋　ソン子",
                "ﾀｶﾊｼ ｿﾝｺ",
                "2",
                "19600101",
                "20260401",
                "03",
                "",
                "",
                "1",
                "1600022",
                "東京都新宿区\"ゾ‐\",1-1 <b>&amp;",
            ],
            FileKind::FlagChange => {
                vec![
                    &s,
                    "20261121100000",
                    "2",
                    "1",
                    "2",
                    "01130012",
                    "",
                    "TM00000000000001",
                    "",
                    "3",
                    "",
                ]
            }
            FileKind::Fukuhon => vec![
                &s,
                "3",
                "20261201",
                "01130012",
                "1234567890123456",
                "TM00000000000004",
                "",
            ],
            FileKind::AgeTransitionInquiry => vec![
                &s,
                "39131040",
                "3913104052000530",
                "",
                "131041",
                "1234567",
                "山田　花子",
                "ﾔﾏﾀﾞ ﾊﾅｺ",
                "2",
                "19560520",
                "20261116",
                "02",
            ],
            _ => vec![
                &s,
                "131045",
                "1234567890123456",
                "",
                "131041",
                "1234567",
                "山田　花子",
                "ﾔﾏﾀﾞ ﾊﾅｺ",
                "2",
                "19511202",
                "20261202",
                "2",
                "0",
                "1",
                "20240101090000",
            ],
        };
        let items: &[(&str, &str)] = if kind == FileKind::Fukuhon {
            &[("001", "20261201"), ("002", "所見,\"なし\"")]
        } else {
            &[]
        };
        w.write(&vals, items).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn files_written_by_record_writer_validate() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("inbox/sub");
    std::fs::create_dir_all(&sub).unwrap();
    let mut n = 0;
    for kind in FileKind::INPUTS {
        for format in [Format::Xml, Format::Csv] {
            for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
                let name = format!("{kind:?}_{enc:?}.{}", format.extension());
                write_valid(&sub.join(name), kind, format, enc);
                n += 1;
            }
        }
    }
    std::fs::write(dir.path().join("inbox/notes.txt"), "ignored").unwrap();
    let out = bin().arg("validate").arg(dir.path().join("inbox")).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("OK ")).count(), n, "{text}");
    assert!(text.contains("(SubscriberChange, csv, Shift_JIS, 5 records)"), "{text}");
    let out = bin()
        .args(["validate", "--format", "json"])
        .arg(dir.path().join("inbox"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["files"].as_array().unwrap().len(), n);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(bin().arg("validate").output().unwrap().status.code(), Some(2));
    assert_eq!(
        bin()
            .args(["validate", "/nonexistent/x.xml"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        bin().arg("validate").arg(dir.path()).output().unwrap().status.code(),
        Some(2)
    );
    let help = bin().args(["validate", "--help"]).output().unwrap();
    assert!(String::from_utf8(help.stdout).unwrap().contains("REJECTED"));
}
