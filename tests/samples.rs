//! The files under `samples/inbox` and `samples/formats` are golden files rendered by
//! `nhi_linkage::synth::samples`. This test re-renders them and compares byte for byte;
//! `NHI_BLESS=1 cargo test --test samples` rewrites them (then review the diff).
//!
//! It also checks the scenario itself against the domain rules, so a sample can never teach a
//! wrong value: every record passes the shared record builder (check digits, codes, dates,
//! kana), and the age-transition dates follow the 後期 acquisition rule.

use nhi_linkage::domain::{Catalog, Date, FileKind, RawRecord, build};
use nhi_linkage::synth::samples::{self, AS_OF, Replacement, SampleFile};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn files_under(dir: &Path, out: &mut BTreeSet<String>, base: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out, base);
        } else {
            out.insert(p.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn golden_files_match_the_scenario() {
    let (set, _) = samples::sample_set().expect("samples render");
    let dir = samples_dir();
    let bless = std::env::var("NHI_BLESS").is_ok_and(|v| v == "1");
    if bless {
        for sub in ["inbox", "formats"] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
        }
        for (rel, bytes) in &set {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
        }
        eprintln!(
            "NHI_BLESS=1: rewrote {} files under {}; review the diff",
            set.len(),
            dir.display()
        );
        return;
    }
    let mut on_disk = BTreeSet::new();
    for sub in ["inbox", "formats"] {
        files_under(&dir.join(sub), &mut on_disk, &dir);
    }
    let expected: BTreeSet<String> = set.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        on_disk, expected,
        "samples/inbox and samples/formats hold exactly the rendered set (NHI_BLESS=1 to rewrite)"
    );
    for (rel, bytes) in &set {
        let actual = std::fs::read(dir.join(rel)).unwrap();
        assert!(
            actual == *bytes,
            "{rel} differs from the rendered scenario (NHI_BLESS=1 to rewrite, then review)"
        );
    }
}

#[test]
fn every_sample_record_is_valid_by_the_domain_rules() {
    let catalog = Catalog::default_catalog();
    for f in samples::scenario().into_iter().chain(samples::exchange()) {
        for (i, row) in f.rows.iter().enumerate() {
            let raw = RawRecord {
                values: row
                    .values()
                    .iter()
                    .map(|v| (!v.is_empty()).then(|| v.clone()))
                    .collect(),
                items: row.items.clone(),
            };
            if let Err(faults) = build(f.header.kind, i as u64 + 1, &raw, &catalog) {
                panic!("{} record {}: {faults:?}", f.stem, i + 1);
            }
        }
    }
}

#[test]
fn only_the_cp932_outsider_is_replaced() {
    let (_, replaced) = samples::sample_set().unwrap();
    let union = samples::scenario().last().unwrap().stem.clone();
    // inbox (CSV Shift_JIS) + formats/xml/shift_jis + formats/csv/shift_jis
    assert_eq!(replaced.len(), 3, "{replaced:?}");
    for Replacement { stem, seq, char } in &replaced {
        assert_eq!((stem.as_str(), *seq), (union.as_str(), 2));
        assert_eq!((char.field.as_str(), char.code_point.as_str()), ("Name", "U+20BB7"));
    }
    let inbox = std::fs::read(samples_dir().join(format!("inbox/{union}.csv"))).unwrap();
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&inbox);
    assert!(!bad);
    assert!(text.contains("●田　花子"));
}

fn rows_of(files: &[SampleFile], kind: FileKind) -> impl Iterator<Item = &nhi_linkage::synth::Row> {
    files
        .iter()
        .filter(move |f| f.header.kind == kind)
        .flat_map(|f| f.rows.iter())
}

#[test]
fn the_scenario_covers_what_the_readme_promises() {
    let files = samples::scenario();
    let as_of = Date::parse(AS_OF).unwrap();
    // headers: distinct identity, names begin with the kind, applied in CreationTime order
    let ids: HashSet<_> = files.iter().map(|f| f.header.file_identifier.clone()).collect();
    let seqs: HashSet<_> = files.iter().map(|f| f.header.file_sequence).collect();
    let times: Vec<_> = files.iter().map(|f| f.header.creation_time).collect();
    assert_eq!(ids.len(), files.len());
    assert_eq!(seqs.len(), files.len());
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    for f in &files {
        assert!(f.stem.starts_with(f.header.kind.name()));
    }
    let formats: HashSet<_> = files.iter().map(|f| (f.header.format, f.header.encoding)).collect();
    assert_eq!(formats.len(), 4, "the inbox mixes all four format × encoding variants");

    // union registrations: reason 01 on the 75th birthday, incl. 29 February → 1 March
    let kouki = samples::kouki();
    let mut reasons = BTreeSet::new();
    let mut future = 0;
    for r in rows_of(&files, FileKind::SubscriberChange).filter(|r| r.get("InsurerNumber") == kouki) {
        let birth = Date::parse(r.get("Birthdate")).unwrap();
        let q = Date::parse(r.get("QualificationDate")).unwrap();
        reasons.insert(r.get("ReasonOfQualification").to_owned());
        match r.get("ReasonOfQualification") {
            "01" => assert_eq!(q, birth.kouki_acquisition_date()),
            "02" => assert!((65..75).contains(&birth.age_on(q))),
            _ => {}
        }
        if q > as_of {
            future += 1;
        }
        if r.get("Birthdate") == "19520229" {
            assert_eq!(r.get("QualificationDate"), "20270301");
        }
    }
    assert!(reasons.contains("01") && reasons.contains("02"));
    assert_eq!(future, 3);

    // hand-off: flagged, turning 75 within (as_of, as_of + 6 months], matching the union's dates
    let handoffs: Vec<_> = rows_of(&files, FileKind::AgeTransitionHandoff).collect();
    assert_eq!(handoffs.len(), 2);
    for h in handoffs {
        let a = Date::parse(h.get("AgeTransitionDate")).unwrap();
        assert_eq!(a, Date::parse(h.get("Birthdate")).unwrap().kouki_acquisition_date());
        assert!(as_of < a && a <= as_of.add_months(6));
        assert!(h.get("SelfInfoProvisionProhibitedFlg") != "0" || h.get("NonDisclosureFlg") == "1");
    }

    // flags: 自己情報提供不可 with both reasons, 不開示該当, 住基支援措置 with an end date that has passed
    let flags: Vec<_> = rows_of(&files, FileKind::FlagChange).collect();
    let has = |t: &str, reason: &str| {
        flags
            .iter()
            .any(|f| f.get("FlagType") == t && f.get("ReasonCode") == reason)
    };
    assert!(has("3", "1") && has("3", "2") && has("2", ""));
    let ends: Vec<Date> = flags
        .iter()
        .filter(|f| f.get("Source") == "2")
        .map(|f| Date::parse(f.get("SupportMeasureEndDate")).unwrap())
        .collect();
    assert!(ends.iter().any(|d| *d < as_of) && ends.iter().any(|d| *d > as_of));

    // changes: updates and a loss
    let types: BTreeSet<_> = rows_of(&files, FileKind::SubscriberChange)
        .map(|r| r.get("ChangeType").to_owned())
        .collect();
    assert!(types.contains("1") && types.contains("2") && types.contains("3"));
}

/// samples/README.md's two-ledger walk-through, run as written (every command must work), ends
/// with three carries: two from the extract, the 障害認定 one from the inquiry's answer.
#[test]
fn two_ledger_walkthrough_ends_with_three_carries() {
    let readme = std::fs::read_to_string(samples_dir().join("README.md")).unwrap();
    let section = &readme[readme.find("## Two ledgers").expect("the walk-through section")..];
    let start = section.find("```sh\n").expect("a sh block") + 6;
    let script = &section[start..start + section[start..].find("```").unwrap()];
    assert!(
        script.contains("age-transition answer"),
        "the inquiry round trip is shown"
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nhi-linkage"), bin.join("nhi-linkage")).unwrap();
    std::os::unix::fs::symlink(samples_dir(), dir.path().join("samples")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the walk-through failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut carries = Vec::new();
    let reports = dir.path().join("var/union/reports");
    let mut runs: Vec<_> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for r in &runs {
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r.join("report.json")).unwrap()).unwrap();
        for c in j["carries"].as_array().unwrap() {
            carries.push((c["to_subscriber_key"].as_str().unwrap().to_owned(), c["flags"].clone()));
        }
    }
    assert_eq!(carries.len(), 3, "{carries:?}");
    // 中村　節子 (union key 3913104052000530) gets 不開示該当 on the second night
    assert!(
        carries
            .iter()
            .any(|(k, f)| k == "3913104052000530" && f == &serde_json::json!(["NonDisclosure"])),
        "{carries:?}"
    );
}
