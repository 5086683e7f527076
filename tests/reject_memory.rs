//! Issue 13 item 6: rejects and pending flags are spooled, so memory does not grow with them.
//! A run over a file of rejected records holds a few bytes per reject (its slot and its
//! RecordSequence), not the reject: four times the rejects cost a few MB more, where the lists
//! held in memory cost about a kilobyte per reject. One test in this binary, so that the
//! allocation counter sees only it.

mod heap;

use nhi_linkage::domain::{Catalog, Date};
use nhi_linkage::engine::run::{RunOptions, RunStatus, run};
use nhi_linkage::formats::{Format, TextEncoding};
use std::io::Write;
use std::path::Path;

/// A UTF-8 CSV SubscriberChange file of `records` rows, each with a MunicipalityCode whose check
/// digit is wrong (`131042`): every record is rejected (`E_CHECK_DIGIT`).
fn write_rejected(path: &Path, records: u64) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all("H,SubscriberChange,1,REJ-1,131045,20261121230000,1,0\r\n".as_bytes())
        .unwrap();
    for seq in 1..=records {
        write!(
            w,
            "D,{seq},1,20260401,131045,{seq:016},,12345,01,123456789018,131042,1234567,山田　太郎,ﾔﾏﾀﾞ ﾀﾛｳ,1,19600101,20260401,03,,,1,160-0022,東京都新宿区新宿一丁目1番1号\r\n"
        )
        .unwrap();
    }
    write!(w, "T,{records}\r\n").unwrap();
    w.flush().unwrap();
}

/// Peak heap growth of a run over an inbox holding one file of `records` rejected records.
fn run_peak(root: &Path, records: u64) -> usize {
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    write_rejected(&inbox.join("rejected.csv"), records);
    let opts = RunOptions {
        inbox,
        outbox: root.join("outbox"),
        reports: root.join("reports"),
        ledger: root.join("ledger/ledger.sqlite"),
        as_of: Date::parse("20261201").unwrap(),
        dry_run: false,
        init_ledger: true,
        format: Format::Xml,
        encoding: TextEncoding::Utf8,
        unmappable: Default::default(),
        catalog: Catalog::default_catalog(),
        limits: Default::default(),
        chunk_records: 50_000,
        shard: None,
        whole_check: Default::default(),
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (r, peak) = heap::peak_during(|| pool.install(|| run(&opts)));
    let r = r.unwrap();
    assert_eq!(r.status, RunStatus::CompletedWithRejects);
    assert_eq!(r.report.rejects.len() as u64, records);
    // every reject is in rejects.csv (a header row, then one row per reject) and report.json
    let csv = std::fs::read(r.report_dir.join("rejects.csv")).unwrap();
    assert_eq!(csv.iter().filter(|&&b| b == b'\n').count() as u64, records + 1);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.report_dir.join("report.json")).unwrap()).unwrap();
    let rejects = json["rejects"].as_array().unwrap();
    assert_eq!(rejects.len() as u64, records);
    assert_eq!(rejects[0]["code"], "E_CHECK_DIGIT");
    assert_eq!(rejects[rejects.len() - 1]["record_sequence"], records);
    // report.html shows the head and says where the rest is
    let html = std::fs::read_to_string(r.report_dir.join("report.html")).unwrap();
    assert!(
        html.contains(&format!("First 200 of {records} shown")),
        "html names the total"
    );
    assert!(html.len() < 400_000, "report.html is {} bytes", html.len());
    peak
}

#[test]
fn memory_does_not_grow_with_the_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let small = run_peak(&dir.path().join("small"), 10_000);
    let large = run_peak(&dir.path().join("large"), 40_000);
    // 30,000 more rejects in a file four times as large: at most 450 bytes each, reading the
    // larger file included (the lists held whole cost over 1 KB per reject: 1.39 GB for 1M)
    let grew = large.saturating_sub(small);
    assert!(
        grew < 30_000 * 450,
        "peak {small} bytes for 10,000 rejects, {large} bytes for 40,000 (+{grew})"
    );
}
