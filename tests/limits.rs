//! Size limits are enforced before allocation: a 10 MB field is refused while the reader holds at
//! most about one record's worth of memory, and the limits are configurable on the command line.
//! One test in this binary, so that the allocation counter sees only it.

mod common;
mod heap;
mod malformed;

use common::*;
use nhi_linkage::domain::Catalog;
use nhi_linkage::formats::{Limits, ReadOptions, read_input};
use std::process::Command;

/// Peak heap growth while reading `path`, and the codes of the file's diagnostics.
fn read_peak(path: &std::path::Path, limits: Limits) -> (usize, Vec<String>) {
    let catalog = Catalog::default_catalog();
    let opts = ReadOptions {
        catalog: &catalog,
        limits,
    };
    let mut record_codes = Vec::new();
    let (res, peak) = heap::peak_during(|| {
        read_input(path, "big", &opts, &mut |o| {
            if let nhi_linkage::formats::RecordOutcome::Rejected { faults, .. } = o {
                record_codes.extend(faults.iter().map(|d| d.code.as_str().to_owned()));
            }
        })
    });
    let codes = match res {
        Ok(_) => record_codes,
        Err(r) => r.diagnostics.iter().map(|d| d.code.as_str().to_owned()).collect(),
    };
    (peak, codes)
}

#[test]
fn limits_hold_before_allocation_and_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let ten_mb = "あ".repeat(10 * 1024 * 1024 / 3 + 1);
    let xml = dir.path().join("big.xml");
    let csv = dir.path().join("big.csv");
    let fields = |v: &str| {
        let mut f = malformed::base_fields();
        f.iter_mut().find(|(k, _)| *k == "Address").unwrap().1 = v.to_owned();
        f
    };
    std::fs::write(&xml, malformed::xml_one("BIG", &fields(&ten_mb), "")).unwrap();
    std::fs::write(&csv, malformed::csv_one("BIG", &fields(&ten_mb))).unwrap();
    let four_kb = Limits {
        max_field_bytes: 4096,
        ..Limits::default()
    };
    for p in [&xml, &csv] {
        let (peak, codes) = read_peak(p, four_kb);
        assert_eq!(codes, ["E_SCHEMA"], "{}", p.display());
        // the record limit (256 KiB) plus buffers, never the 10 MB field
        assert!(peak < 2 * 1024 * 1024, "{}: peak heap {peak} bytes", p.display());
        eprintln!("{}: peak heap growth {peak} bytes for a 10 MB field", p.display());
    }

    // a 100 KB field: within the record limit, over the field limit: the record is rejected
    let hundred_kb = "あ".repeat(100 * 1024 / 3);
    let csv2 = dir.path().join("field.csv");
    std::fs::write(&csv2, malformed::csv_one("FIELD", &fields(&hundred_kb))).unwrap();
    let (_, codes) = read_peak(&csv2, four_kb);
    assert_eq!(codes, ["E_FIELD_FORMAT"]);

    // command line: --max-field-bytes raises the field limit, --max-record-bytes lowers the row limit
    let validate = |args: &[&str], p: &std::path::Path| {
        let o = Command::new(BIN)
            .args(["validate", "--format", "json"])
            .args(args)
            .arg(p)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let f = v["files"][0].clone();
        let codes: Vec<String> = f["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["code"].as_str().unwrap().to_owned())
            .collect();
        (o.status.code(), f["status"].as_str().unwrap().to_owned(), codes)
    };
    let (_, status, codes) = validate(&[], &csv2);
    assert_eq!((status.as_str(), codes), ("errors", vec!["E_FIELD_FORMAT".to_owned()]));
    // a bigger field limit moves the failure to the (valid-length) Address check, not the limit
    let (_, _, codes) = validate(&["--max-field-bytes", "200000"], &csv2);
    assert!(
        !codes.is_empty() && codes.iter().all(|c| c == "E_FIELD_FORMAT"),
        "{codes:?}"
    );
    let (_, status, codes) = validate(&["--max-record-bytes", "1024"], &csv2);
    assert_eq!((status.as_str(), codes), ("rejected", vec!["E_SCHEMA".to_owned()]));
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbox/SubscriberChange_00131045_0340.xml");
    let (code, status, _) = validate(&[], &sample);
    assert_eq!((code, status.as_str()), (Some(0), "ok"));
    let (_, status, codes) = validate(&["--max-file-bytes", "1000"], &sample);
    assert_eq!((status.as_str(), codes), ("rejected", vec!["E_SCHEMA".to_owned()]));

    // run: the flag wins over the config file's [limits]
    let site = Site::new();
    std::fs::create_dir_all(site.inbox()).unwrap();
    std::fs::copy(&sample, site.inbox().join("a.xml")).unwrap();
    let cfg = site.p("cfg.toml");
    std::fs::write(&cfg, "[limits]\nmax_file_bytes = 1000\n").unwrap();
    let o = site.run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "over the configured file size: rejected");
    assert_eq!(site.report("")["inputs"][0]["status"], "rejected");
    let o = site.run(&["--config", cfg.to_str().unwrap(), "--max-file-bytes", "100000000"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}
