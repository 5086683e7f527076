//! Data integrity under faults and hostile neighbours (issue 13): missing or empty ledgers,
//! ledgers sharing an outbox, folder modes, files that change or are not files, hostile names.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_sample_inbox(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(root().join("samples/inbox")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every path under `dir`, relative, sorted (folders included).
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `run` with everything under `root`, the ledger at `ledger` (relative to `root`).
fn run_with_ledger(root: &Path, ledger: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["run", "--as-of", "20261201", "--inbox"])
        .arg(root.join("inbox"))
        .arg("--outbox")
        .arg(root.join("outbox"))
        .arg("--reports")
        .arg(root.join("reports"))
        .arg("--ledger")
        .arg(root.join(ledger))
        .args(extra)
        .output()
        .unwrap()
}

fn applied_files(ledger: &Path) -> i64 {
    let c = rusqlite::Connection::open(ledger).unwrap();
    c.query_row("SELECT count(*) FROM applied_file", [], |r| r.get(0))
        .unwrap()
}

// ---- item 3: a missing or empty ledger is never taken for a new one ----

#[test]
fn run_refuses_a_missing_ledger_and_creates_nothing() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    let before = listing(site.dir.path());
    // an unmounted disk: the ledger's folder is missing too
    let o = run_with_ledger(site.dir.path(), "mnt/ledger.sqlite", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mnt/ledger.sqlite"), "names the path: {err}");
    assert!(err.contains("--init-ledger"), "says how to create one: {err}");
    // the folder exists but not the ledger
    std::fs::create_dir(site.p("mnt")).unwrap();
    let before_mnt = listing(site.dir.path());
    let o = run_with_ledger(site.dir.path(), "mnt/ledger.sqlite", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(listing(site.dir.path()), before_mnt, "no lock file, outbox or reports");
    std::fs::remove_dir(site.p("mnt")).unwrap();
    assert_eq!(listing(site.dir.path()), before);
}

#[test]
fn run_refuses_an_empty_ledger_even_with_init_ledger() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    std::fs::write(site.p("ledger.sqlite"), b"").unwrap();
    let before = listing(site.dir.path());
    for extra in [&[][..], &["--init-ledger"], &["--dry-run"]] {
        let o = run_with_ledger(site.dir.path(), "ledger.sqlite", extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("ledger.sqlite") && err.contains("empty"), "{err}");
        assert_eq!(listing(site.dir.path()), before, "{extra:?}: nothing created");
        assert_eq!(std::fs::metadata(site.p("ledger.sqlite")).unwrap().len(), 0);
    }
}

#[test]
fn init_ledger_creates_a_ledger_only_where_there_is_none() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    let o = run_with_ledger(site.dir.path(), "var/ledger.sqlite", &["--init-ledger"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let ledger = site.p("var/ledger.sqlite");
    let applied = applied_files(&ledger);
    assert!(applied > 0);
    // given again on an existing ledger, it opens that ledger as it is: nothing is reset
    let o = run_with_ledger(site.dir.path(), "var/ledger.sqlite", &["--init-ledger"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    assert_eq!(applied_files(&ledger), applied);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 file(s) applied"),
        "{}",
        text(&o)
    );
    // and without it the existing ledger is used as every night
    let o = run_with_ledger(site.dir.path(), "var/ledger.sqlite", &[]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
}

#[test]
fn a_dry_run_against_a_missing_ledger_creates_no_ledger() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    for extra in [&["--dry-run"][..], &["--dry-run", "--init-ledger"]] {
        let o = run_with_ledger(site.dir.path(), "var/ledger.sqlite", extra);
        assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
        assert!(!site.p("var").exists(), "{extra:?}: no ledger, folder or lock file");
    }
}

fn migrate_cmd(site: &Site, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["migrate", "--as-of", "20261201", "--ledger"])
        .arg(site.p("var/ledger.sqlite"))
        .arg("--from")
        .arg(root().join("samples/legacy/kokuho_export.csv"))
        .arg("--mapping")
        .arg(root().join("samples/legacy/mapping.toml"))
        .arg("--reports")
        .arg(site.p("reports"))
        .arg("--outbox")
        .arg(site.p("outbox"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn migrate_refuses_a_missing_or_empty_ledger_unless_initialised() {
    let site = Site::new();
    let o = migrate_cmd(&site, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("var/ledger.sqlite") && err.contains("--init-ledger"),
        "{err}"
    );
    assert!(
        !err.contains("nothing was committed"),
        "a refusal is not a failed migration: {err}"
    );
    assert!(listing(site.dir.path()).is_empty(), "nothing created");
    std::fs::create_dir(site.p("var")).unwrap();
    std::fs::write(site.p("var/ledger.sqlite"), b"").unwrap();
    let o = migrate_cmd(&site, &["--init-ledger"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("empty"));
    assert_eq!(listing(site.dir.path()), ["var", "var/ledger.sqlite"]);
    std::fs::remove_file(site.p("var/ledger.sqlite")).unwrap();
    let o = migrate_cmd(&site, &["--init-ledger"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(std::fs::metadata(site.p("var/ledger.sqlite")).unwrap().len() > 0);
}

#[test]
fn extract_refuses_a_missing_ledger_and_creates_nothing() {
    let site = Site::new();
    let o = Command::new(BIN)
        .args(["age-transition", "extract", "--as-of", "20261201", "--ledger"])
        .arg(site.p("var/ledger.sqlite"))
        .arg("--out")
        .arg(site.p("handoff"))
        .arg("--reports")
        .arg(site.p("reports"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("var/ledger.sqlite"));
    assert!(listing(site.dir.path()).is_empty(), "{:?}", listing(site.dir.path()));
}
