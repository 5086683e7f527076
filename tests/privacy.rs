//! Privacy sweep (issue: hardening item 5): every sample and every malformed file through every
//! command, with `-vv` and `NHI_LOG=debug`; stdout, stderr and every file under the reports
//! folders are searched for each test My Number and each flagged subscriber's address, computed
//! from the sample files. Zero hits. Files with personal data must be mode 0600.

mod common;
mod malformed;

use common::*;
use nhi_linkage::domain::{FileKind, Record};
use nhi_linkage::formats::{ReadOptions, RecordOutcome, read_input};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = files_under(dir)
        .into_keys()
        .map(|k| dir.join(k))
        .filter(|p| p.extension().is_some_and(|e| e == "xml" || e == "csv"))
        .collect();
    v.sort();
    v
}

/// Every 12-digit IndividualNumber value written in a file, valid or not (XML element text or the
/// IndividualNumber column of a CSV D row), in either encoding.
fn my_numbers_in(bytes: &[u8], out: &mut BTreeSet<String>) {
    let text = text_of(bytes);
    for part in text.split("<IndividualNumber>").skip(1) {
        if let Some((v, _)) = part.split_once('<') {
            out.insert(v.trim().to_owned());
        }
    }
    let kind = text
        .lines()
        .next()
        .and_then(|h| h.trim_start_matches('\u{feff}').split(',').nth(1))
        .and_then(FileKind::from_name);
    if let Some(i) = kind.and_then(|k| k.fields().iter().position(|f| *f == "IndividualNumber")) {
        for line in text.lines().filter(|l| l.starts_with("D,")) {
            if let Some(v) = line.split(',').nth(i + 1) {
                out.insert(v.trim().to_owned());
            }
        }
    }
    out.retain(|v| v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()));
}

/// Addresses of flagged subscribers in the valid samples: subscribers named by a FlagChange or a
/// hand-off, and every enrollment of the same person (same My Number, or same municipality,
/// resident code and birthdate), e.g. the 後期 registration a flag is carried to.
fn flagged_addresses() -> BTreeSet<String> {
    let catalog = nhi_linkage::domain::Catalog::default_catalog();
    let opts = ReadOptions {
        catalog: &catalog,
        limits: Default::default(),
    };
    let mut records = Vec::new();
    for p in files_in(&root().join("inbox"))
        .into_iter()
        .chain(files_in(&root().join("formats")))
    {
        read_input(&p, "s", &opts, &mut |o| {
            if let RecordOutcome::Accepted(r) = o {
                records.push(r);
            }
        })
        .unwrap();
    }
    let mut keys = BTreeSet::new();
    let mut persons = BTreeSet::new();
    for r in &records {
        match r {
            Record::FlagChange(f) => {
                if let Some(k) = f.key {
                    keys.insert((f.insurer.to_string(), k.to_string()));
                }
            }
            Record::AgeTransitionHandoff(h) => {
                if let Some(k) = h.source_key {
                    keys.insert((h.source_insurer.to_string(), k.to_string()));
                }
                if let Some(m) = h.individual_number {
                    persons.insert(m.expose().to_owned());
                }
                persons.insert(format!("{}/{}/{}", h.municipality, h.resident.as_str(), h.birthdate));
            }
            _ => {}
        }
    }
    let subs: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::SubscriberChange(s) => Some(s),
            _ => None,
        })
        .collect();
    for s in &subs {
        if keys.contains(&(s.insurer.to_string(), s.key.to_string())) {
            if let Some(m) = s.individual_number {
                persons.insert(m.expose().to_owned());
            }
            if let (Some(mu), Some(re), Some(b)) = (s.municipality, &s.resident, s.birthdate) {
                persons.insert(format!("{mu}/{}/{b}", re.as_str()));
            }
        }
    }
    let mut out = BTreeSet::new();
    for s in &subs {
        let by_key = keys.contains(&(s.insurer.to_string(), s.key.to_string()));
        let by_mn = s.individual_number.is_some_and(|m| persons.contains(m.expose()));
        let by_res = matches!((s.municipality, &s.resident, s.birthdate), (Some(mu), Some(re), Some(b)) if persons.contains(&format!("{mu}/{}/{b}", re.as_str())));
        if let Some(a) = s.address.as_ref().filter(|_| by_key || by_mn || by_res) {
            out.insert(a.expose().to_owned());
        }
    }
    out
}

struct Sweep {
    secrets: Vec<String>,
    checked: usize,
}

impl Sweep {
    fn scan(&mut self, what: &str, text: &str) {
        self.checked += 1;
        for s in &self.secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} leaks a My Number or a flagged address"
            );
        }
    }
    fn output(&mut self, what: &str, o: &Output) {
        assert_ne!(o.status.code(), Some(101), "{what} panicked");
        assert!(o.status.code().is_some(), "{what} died from a signal");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{what}: {err}");
        self.scan(&format!("{what} stdout"), &String::from_utf8_lossy(&o.stdout));
        self.scan(&format!("{what} stderr"), &err);
    }
    fn folder(&mut self, what: &str, dir: &Path) {
        for (name, bytes) in files_under(dir) {
            // R13: the inquiry files sit in the report folder but are linkage data for the 国保
            // side (they carry the IndividualNumber to match on, like the linkage files); they
            // are owner-only like every file holding personal data
            if name
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("AgeTransitionInquiry_"))
            {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(dir.join(&name)).unwrap().permissions().mode();
                    assert_eq!(mode & 0o077, 0, "{what}: {name} is readable by others");
                }
                continue;
            }
            self.scan(&format!("{what}: {name}"), &text_of(&bytes));
        }
    }
}

fn cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env("NHI_LOG", "debug").arg("-vv");
    c
}

#[cfg(unix)]
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for name in files_under(dir).into_keys() {
        let p = dir.join(&name);
        if name.ends_with(".lock") {
            continue; // empty lock file, no data
        }
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is mode {mode:o}", p.display());
    }
}
#[cfg(not(unix))]
fn assert_private(_: &Path) {}

#[test]
fn no_my_number_or_flagged_address_anywhere() {
    let corpus_dir = tempfile::tempdir().unwrap();
    malformed::write_corpus(corpus_dir.path());
    let valid_dirs: Vec<PathBuf> = vec![
        root().join("inbox"),
        root().join("formats/csv/utf-8"),
        root().join("formats/csv/shift_jis"),
        root().join("formats/xml/utf-8"),
        root().join("formats/xml/shift_jis"),
    ];
    let bad_files: Vec<PathBuf> = files_in(&root().join("invalid"))
        .into_iter()
        .chain(files_in(corpus_dir.path()))
        .collect();

    let mut mns = BTreeSet::new();
    for p in valid_dirs
        .iter()
        .flat_map(|d| files_in(d))
        .chain(bad_files.iter().cloned())
    {
        my_numbers_in(&std::fs::read(&p).unwrap(), &mut mns);
    }
    let addresses = flagged_addresses();
    assert!(mns.len() >= 10, "My Numbers found in the samples: {}", mns.len());
    assert!(!addresses.is_empty(), "flagged addresses found in the samples");
    eprintln!(
        "searching for {} My Numbers and {} flagged addresses",
        mns.len(),
        addresses.len()
    );
    let mut sweep = Sweep {
        secrets: mns.into_iter().chain(addresses).collect(),
        checked: 0,
    };

    // validate: every file, text and JSON
    for fmt in ["text", "json"] {
        let o = cmd()
            .args(["validate", "--format", fmt])
            .arg(root())
            .arg(corpus_dir.path())
            .output()
            .unwrap();
        sweep.output(&format!("validate --format {fmt}"), &o);
    }

    // run, dry run and extract on each valid set, in every format and encoding
    for d in &valid_dirs {
        let site = Site::new();
        for (i, args) in [&["--dry-run"][..], &[], &[]].iter().enumerate() {
            let mut c = cmd();
            c.args(["run", "--inbox"]).arg(d);
            c.arg("--outbox").arg(site.p("outbox"));
            c.arg("--reports").arg(site.p("reports"));
            c.arg("--ledger").arg(site.p("ledger.sqlite"));
            if !site.p("ledger.sqlite").exists() {
                c.arg("--init-ledger");
            }
            c.args(["--as-of", "20261201"]).args(*args);
            let o = c.output().unwrap();
            sweep.output(&format!("run #{i} {args:?} {}", d.display()), &o);
        }
        let o = cmd()
            .args(["age-transition", "extract", "--as-of", "20260601", "--ledger"])
            .arg(site.p("ledger.sqlite"))
            .arg("--out")
            .arg(site.p("handoff"))
            .arg("--reports")
            .arg(site.p("reports"))
            .output()
            .unwrap();
        sweep.output(&format!("extract {}", d.display()), &o);
        sweep.folder("reports", &site.p("reports"));
        // the detector is not vacuous: linkage files (for the server) do hold these values
        let outbox: String = files_under(&site.p("outbox")).values().map(|b| text_of(b)).collect();
        assert!(
            sweep.secrets.iter().any(|s| outbox.contains(s.as_str())),
            "no secret found even in the outbox: the secret list is wrong"
        );
        assert_private(&site.p("reports"));
        assert_private(&site.p("outbox"));
        assert_private(&site.p("handoff"));
        let ledger: Vec<_> = std::fs::read_dir(site.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("ledger.sqlite") && !p.to_string_lossy().ends_with(".lock"))
            .collect();
        assert!(!ledger.is_empty());
        #[cfg(unix)]
        for p in ledger {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }

    // each malformed file next to the sample inbox: run and dry run
    std::thread::scope(|s| {
        let chunks: Vec<&[PathBuf]> = bad_files.chunks(bad_files.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let secrets = sweep.secrets.clone();
                s.spawn(move || {
                    let mut sw = Sweep { secrets, checked: 0 };
                    for f in chunk {
                        let site = Site::new();
                        std::fs::create_dir_all(site.inbox()).unwrap();
                        for p in files_in(&root().join("inbox")) {
                            std::fs::copy(&p, site.inbox().join(p.file_name().unwrap())).unwrap();
                        }
                        let name = f.file_name().unwrap().to_string_lossy().into_owned();
                        std::fs::copy(f, site.inbox().join(format!("zz_{name}"))).unwrap();
                        for args in [&["--dry-run"][..], &[]] {
                            let mut c = cmd();
                            c.args(["run", "--inbox"]).arg(site.inbox());
                            c.arg("--outbox").arg(site.p("outbox"));
                            c.arg("--reports").arg(site.p("reports"));
                            c.arg("--ledger").arg(site.p("ledger.sqlite"));
                            if !site.p("ledger.sqlite").exists() {
                                c.arg("--init-ledger");
                            }
                            c.args(["--as-of", "20261201"]).args(args);
                            let o = c.output().unwrap();
                            sw.output(&format!("run {args:?} with {name}"), &o);
                        }
                        sw.folder(&format!("reports with {name}"), &site.p("reports"));
                    }
                    sw.checked
                })
            })
            .collect();
        for h in handles {
            sweep.checked += h.join().unwrap();
        }
    });
    assert!(sweep.checked > 500, "{} texts checked", sweep.checked);
}
