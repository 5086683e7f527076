//! What the run reports say about rejects: every reject names what `validate` names on the
//! console, the byte offset of an encoding error included (§7), in report.json, rejects.csv and
//! report.html.

mod common;
use common::*;
use nhi_linkage::domain::FileKind;
use nhi_linkage::formats::Format;
use std::process::Command;

/// Issue 12 item 9: a file with bytes invalid in its declared encoding, in both syntaxes and
/// both encodings; the run's reports carry the byte offset `validate` prints.
#[test]
fn run_reports_carry_the_byte_offset_of_encoding_errors() {
    for (format, encoding) in VARIANTS {
        let f = Files { format, encoding };
        let site = Site::new();
        let path = write_file(
            &site.inbox(),
            "SubscriberChange_bad",
            FileKind::SubscriberChange,
            &f,
            KOKUHO,
            "K-1",
            "20261101230000",
            &[acquisition(
                KOKUHO,
                &key(1),
                None,
                "1001",
                "19600101",
                "20100401",
                "03",
                "山田　花子",
            )],
        );
        // a byte no encoding of ours allows, inside the data record
        let mut bytes = std::fs::read(&path).unwrap();
        let anchor: &[u8] = match format {
            Format::Csv => b"\nD,",
            Format::Xml => b"<Name>",
        };
        let at = bytes.windows(anchor.len()).position(|w| w == anchor).unwrap() + anchor.len();
        bytes.insert(at, 0xFF);
        std::fs::write(&path, &bytes).unwrap();

        let v = Command::new(BIN).arg("validate").arg(&path).output().unwrap();
        let console = format!(
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        assert!(console.contains("E_ENCODING"), "{console}");
        assert!(
            console.contains(&format!("(byte {at})")),
            "validate names byte {at}: {console}"
        );

        let o = site.run(&[]);
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
        let r = site.report("");
        let rejects = r["rejects"].as_array().unwrap();
        let e = rejects
            .iter()
            .find(|x| x["code"] == "E_ENCODING")
            .unwrap_or_else(|| panic!("{format:?} {encoding:?}: {r}"));
        assert_eq!(e["byte_offset"], at as u64, "report.json, {format:?} {encoding:?}");

        let dir = std::fs::read_dir(site.p("reports"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("rejects.csv").exists())
            .unwrap();
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_path(dir.join("rejects.csv"))
            .unwrap();
        let col = csv
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "byte_offset")
            .expect("a byte_offset column");
        let row = csv
            .records()
            .map(Result::unwrap)
            .find(|x| x.iter().any(|c| c == "E_ENCODING"))
            .unwrap();
        assert_eq!(row[col], at.to_string(), "rejects.csv, {format:?} {encoding:?}");

        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("byte offset"), "report.html has the column");
        let tr = html
            .lines()
            .find(|l| l.contains("<td>E_ENCODING</td>"))
            .expect("the reject's row");
        assert!(
            tr.contains(&format!("<td>{at}</td>")),
            "report.html, {format:?} {encoding:?}: {tr}"
        );
    }
}
