//! The malformed corpus (tests/malformed/mod.rs) through `validate` and `run`: each file gets its
//! named error, a rejected file (or record) applies nothing, and nothing panics.

mod common;
mod malformed;

use common::*;
use malformed::Level;
use std::path::Path;
use std::process::{Command, Output};

fn no_panic(what: &str, o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(101), "{what} panicked: {err}");
    assert!(o.status.code().is_some(), "{what} died from a signal");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn every_malformed_file_gets_its_named_error() {
    let dir = tempfile::tempdir().unwrap();
    for (path, case) in malformed::write_corpus(dir.path()) {
        let o = Command::new(BIN)
            .args(["validate", "--format", "json"])
            .arg(&path)
            .output()
            .unwrap();
        no_panic(&case.name, &o);
        assert_eq!(o.status.code(), Some(1), "{}", case.name);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let f = &v["files"][0];
        let want_status = match case.level {
            Level::File => "rejected",
            Level::Record => "errors",
        };
        assert_eq!(f["status"], want_status, "{}: {f}", case.name);
        let diags = f["diagnostics"].as_array().unwrap();
        assert!(!diags.is_empty(), "{}", case.name);
        for d in diags {
            assert_eq!(d["code"], case.code, "{}: {d}", case.name);
        }
        if case.level == Level::Record {
            assert_eq!(f["records"], 1, "{}", case.name);
            assert_eq!(f["rejected"], 1, "{}", case.name);
        }
    }
}

#[test]
fn mixed_crlf_lf_reads_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let (orig, mixed) = malformed::mixed_line_ends();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    std::fs::write(&a, orig).unwrap();
    std::fs::write(&b, mixed).unwrap();
    let json = |p: &Path| {
        let o = Command::new(BIN)
            .args(["validate", "--format", "json"])
            .arg(p)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["files"][0]["records"].clone(), v["files"][0]["header"].clone())
    };
    assert_eq!(json(&a), json(&b));
}

/// Row counts of the ledger's tables: what a run applied.
fn ledger_counts(ledger: &Path) -> Vec<(String, i64)> {
    let c = rusqlite::Connection::open(ledger).unwrap();
    ["enrollment", "period", "flag", "pending_flag", "handoff", "fukuhon"]
        .iter()
        .map(|t| {
            let n: i64 = c
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap();
            (t.to_string(), n)
        })
        .collect()
}

const COMPANION: &str = "SubscriberChange_00131045_0340.xml";

fn site_with_companion() -> Site {
    let site = Site::new();
    std::fs::create_dir_all(site.inbox()).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/inbox")
        .join(COMPANION);
    std::fs::copy(src, site.inbox().join(COMPANION)).unwrap();
    site
}

#[test]
fn a_run_applies_nothing_from_a_malformed_file() {
    let base = site_with_companion();
    let o = base.run(&[]);
    no_panic("baseline", &o);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let want = ledger_counts(&base.p("ledger.sqlite"));
    assert!(want[0].1 > 0);

    let cases = malformed::corpus();
    // two at a time: the machine has two cores
    std::thread::scope(|s| {
        for chunk in cases.chunks(cases.len().div_ceil(2)) {
            let want = &want;
            s.spawn(move || {
                for case in chunk {
                    let site = site_with_companion();
                    let name = format!("{}__{}", case.code, case.name);
                    std::fs::write(site.inbox().join(&name), &case.bytes).unwrap();
                    let o = site.run(&["-v"]);
                    no_panic(&name, &o);
                    assert_eq!(
                        o.status.code(),
                        Some(1),
                        "{name}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    assert_eq!(
                        &ledger_counts(&site.p("ledger.sqlite")),
                        want,
                        "{name}: applied something"
                    );
                    let r = site.report("");
                    let inputs = r["inputs"].as_array().unwrap();
                    let me = inputs.iter().find(|i| i["name"] == name.as_str()).unwrap();
                    let companion = inputs.iter().find(|i| i["name"] == COMPANION).unwrap();
                    assert_eq!(companion["status"], "applied", "{name}");
                    match case.level {
                        Level::File => assert_eq!(me["status"], "rejected", "{name}"),
                        Level::Record => {
                            assert_eq!(me["rejected"], me["records"], "{name}: every record rejected")
                        }
                    }
                    let rejects = r["rejects"].as_array().unwrap();
                    let mine: Vec<_> = rejects.iter().filter(|x| x["file"] == name.as_str()).collect();
                    assert!(!mine.is_empty(), "{name}: listed in rejects");
                    assert!(mine.iter().all(|x| x["code"] == case.code), "{name}: {mine:?}");
                }
            });
        }
    });
}
