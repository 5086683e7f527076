//! 外字 (spec v1.1 §1): a private-use character (U+E000–U+F8FF, what CP932's user-defined area
//! 0xF040–0xF9FC decodes to) is handled like an unmappable character in every output encoding,
//! UTF-8 included: the subscriber is refused (`E_UNMAPPABLE_CHAR`, naming the code point and the
//! field) or, with `--unmappable replace`, written with `●` and listed on the 文字同定 worklist.
//! Input in both syntaxes and both encodings; output in both encodings.

mod common;
use common::*;
use nhi_linkage::domain::FileKind;
use nhi_linkage::formats::{Format, TextEncoding};

/// A placeholder in CP932 (〓, 0x81AC; UTF-8 E3 80 93) that the test swaps for the 外字 after
/// the file is written: the writers themselves refuse private-use characters.
const PLACEHOLDER: char = '〓';

/// Writes one 資格取得 whose Name holds U+E001: in a Shift_JIS file as the CP932 user-defined
/// byte pair 0xF041, in a UTF-8 file as the character itself.
fn inbox_with_gaiji(site: &Site, f: &Files) {
    let name = format!("山田　花{PLACEHOLDER}");
    let p = write_file(
        &site.inbox(),
        "SubscriberChange_gaiji",
        FileKind::SubscriberChange,
        f,
        KOKUHO,
        "GAIJI-1",
        "20261120230000",
        &[acquisition(
            KOKUHO,
            &key(1),
            None,
            "1001",
            "19600101",
            "20261120",
            "03",
            &name,
        )],
    );
    let bytes = std::fs::read(&p).unwrap();
    let (from, to): (&[u8], &[u8]) = match f.encoding {
        TextEncoding::ShiftJis => (&[0x81, 0xAC], &[0xF0, 0x41]),
        TextEncoding::Utf8 => (&[0xE3, 0x80, 0x93], "\u{E001}".as_bytes()),
    };
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the placeholder once in {}", p.display());
    let mut out = bytes[..at[0]].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&bytes[at[0] + from.len()..]);
    std::fs::write(&p, out).unwrap();
}

fn linkage_text(site: &Site) -> String {
    site.outbox_files()
        .iter()
        .filter(|(n, _)| n.contains("SubscriberLinkage"))
        .map(|(_, b)| text_of(b))
        .collect()
}

#[test]
fn private_use_characters_are_refused_or_replaced_in_every_encoding() {
    for (format, encoding) in VARIANTS {
        for out_enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            let what = format!("{format:?} {encoding:?} input, {out_enc:?} output");
            let f = Files { format, encoding };

            // default: refused, named by code point and field, nothing of it published
            let site = Site::new();
            inbox_with_gaiji(&site, &f);
            let o = site.run(&[
                "--output-encoding",
                enc_arg(out_enc),
                "--output-format",
                fmt_arg(Format::Csv),
            ]);
            assert_eq!(
                o.status.code(),
                Some(1),
                "{what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let r = site.report("");
            let rejects = r["rejects"].as_array().unwrap();
            assert_eq!(rejects.len(), 1, "{what}: {r}");
            assert_eq!(rejects[0]["code"], "E_UNMAPPABLE_CHAR", "{what}");
            assert_eq!(rejects[0]["field"], "Name", "{what}");
            let msg = rejects[0]["message"].as_str().unwrap();
            assert!(msg.contains("U+E001"), "{what}: {msg}");
            let linkage = linkage_text(&site);
            assert!(
                !linkage.contains('\u{E001}') && !linkage.contains(&key(1)),
                "{what}: not published"
            );
            assert_eq!(r["summary"]["unpublished"], 1, "{what}: kept unsent (R14)");

            // replace: ● in the linkage, the 文字同定 worklist names code point and field
            let site = Site::new();
            inbox_with_gaiji(&site, &f);
            let o = site.run(&[
                "--output-encoding",
                enc_arg(out_enc),
                "--output-format",
                fmt_arg(format),
                "--unmappable",
                "replace",
            ]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let linkage = linkage_text(&site);
            assert!(linkage.contains("山田　花●"), "{what}: {linkage}");
            assert!(!linkage.contains('\u{E001}'), "{what}");
            let r = site.report("");
            assert_eq!(r["worklists"]["character_identification"], 1, "{what}");
            let dir = std::fs::read_dir(site.p("reports"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.join("character_identification.csv").exists())
                .unwrap();
            let csv = text_of(&std::fs::read(dir.join("character_identification.csv")).unwrap());
            let row = csv.lines().nth(1).expect("a row");
            assert!(row.contains(&key(1)) && row.contains(",Name,U+E001,"), "{what}: {row}");
        }
    }
}
