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

// ---- item 1: ledgers sharing folders never touch each other's runs; one lock per ledger ----

/// `run` with explicit paths; `init` adds --init-ledger.
fn run_cmd(inbox: &Path, outbox: &Path, reports: &Path, ledger: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["run", "--as-of", "20261201", "--inbox"])
        .arg(inbox)
        .arg("--outbox")
        .arg(outbox)
        .arg("--reports")
        .arg(reports)
        .arg("--ledger")
        .arg(ledger)
        .args(extra);
    c
}

fn spawn_held(mut c: Command) -> (std::process::Child, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = c
        .env("NHI_FAILPOINT", "wait-after-read")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("waiting for a signal") {
            let t = std::thread::spawn(move || {
                for l in lines {
                    seen.push_str(&l.unwrap_or_default());
                    seen.push('\n');
                }
                seen
            });
            return (child, t);
        }
    }
    let status = child.wait().unwrap();
    panic!("the held run ended ({status}): {seen}");
}

fn stop(child: &mut std::process::Child, t: std::thread::JoinHandle<String>) -> String {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    t.join().unwrap()
}

/// The sample inbox split by side: 国保 files and the union's.
fn split_inboxes(root: &Path) -> (PathBuf, PathBuf) {
    let (kokuho, kouki) = (root.join("inbox-kokuho"), root.join("inbox-kouki"));
    std::fs::create_dir_all(&kokuho).unwrap();
    std::fs::create_dir_all(&kouki).unwrap();
    for e in std::fs::read_dir(self::root().join("samples/inbox")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let to = if name.contains("_39") { &kouki } else { &kokuho };
        std::fs::copy(&p, to.join(&name)).unwrap();
    }
    (kokuho, kouki)
}

fn run_folders(outbox: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The README's 国保/後期 layout: two ledgers, one outbox and reports folder. A 国保 run that dies
/// after its commit, then a union run, then the 国保 rerun: the 国保 run is published whole.
#[test]
fn a_second_ledger_on_the_same_outbox_leaves_a_committed_run_alone() {
    let site = Site::new();
    let (kokuho_in, kouki_in) = split_inboxes(site.dir.path());
    let (outbox, reports) = (site.p("var/outbox"), site.p("var/reports"));
    let (kokuho, kouki) = (site.p("var/kokuho.sqlite"), site.p("var/kouki.sqlite"));

    // reference: the 国保 run uninterrupted, elsewhere
    let clean = Site::new();
    let o = run_cmd(
        &kokuho_in,
        &clean.p("outbox"),
        &clean.p("reports"),
        &clean.p("l.sqlite"),
        &["--init-ledger"],
    )
    .output()
    .unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let want = files_under(&clean.p("outbox"));
    assert!(!want.is_empty());

    let o = run_cmd(&kokuho_in, &outbox, &reports, &kokuho, &["--init-ledger"])
        .env("NHI_FAILPOINT", "after-commit")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(86), "{}", text(&o));
    let staged = run_folders(&outbox);
    assert!(staged.iter().all(|n| n.starts_with(".staging-")), "{staged:?}");
    assert_eq!(staged.len(), 1);

    let o = run_cmd(&kouki_in, &outbox, &reports, &kouki, &["--init-ledger"])
        .output()
        .unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    assert!(
        run_folders(&outbox).contains(&staged[0]),
        "the union's run removed the 国保 run's committed staging"
    );

    let o = run_cmd(&kokuho_in, &outbox, &reports, &kokuho, &[]).output().unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let got: std::collections::BTreeMap<String, Vec<u8>> = files_under(&outbox)
        .into_iter()
        .filter(|(k, _)| k.contains("_00131045_") || want.contains_key(k))
        .collect();
    assert_eq!(got, want, "the 国保 run's linkage, published whole");
    assert!(
        run_folders(&outbox).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        run_folders(&outbox)
    );
    // and the 国保 ledger goes on working
    let o = run_cmd(&kokuho_in, &outbox, &reports, &kokuho, &[]).output().unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
}

/// Two ledgers in one folder: a run of one never removes the other's spill while it runs.
#[test]
fn a_run_on_another_ledger_in_the_same_folder_keeps_this_runs_spill() {
    let site = Site::new();
    let (kokuho_in, kouki_in) = split_inboxes(site.dir.path());
    let spills = || -> Vec<String> {
        listing(&site.p("var"))
            .into_iter()
            .filter(|n| n.contains(".nhi-spill-") && !n.contains('/'))
            .collect()
    };
    let (mut held, t) = spawn_held(run_cmd(
        &kokuho_in,
        &site.p("var/outbox-a"),
        &site.p("var/reports-a"),
        &site.p("var/kokuho.sqlite"),
        &["--init-ledger", "--chunk-records", "1"],
    ));
    let before = spills();
    assert_eq!(before.len(), 1, "the held run spilled: {before:?}");
    let o = run_cmd(
        &kouki_in,
        &site.p("var/outbox-b"),
        &site.p("var/reports-b"),
        &site.p("var/kouki.sqlite"),
        &["--init-ledger", "--chunk-records", "1"],
    )
    .output()
    .unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    assert_eq!(spills(), before, "the other ledger's run removed this run's spill");
    stop(&mut held, t);
    // the rerun of the stopped run completes and leaves no spill behind
    let o = run_cmd(
        &kokuho_in,
        &site.p("var/outbox-a"),
        &site.p("var/reports-a"),
        &site.p("var/kokuho.sqlite"),
        &["--chunk-records", "1"],
    )
    .output()
    .unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    assert!(spills().is_empty(), "{:?}", spills());
}

/// The same ledger reached through a symbolic link is the same ledger: the second run is busy.
#[cfg(unix)]
#[test]
fn a_ledger_reached_through_a_symlink_takes_the_same_lock() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    std::fs::create_dir(site.p("real")).unwrap();
    let o = run_with_ledger(site.dir.path(), "real/ledger.sqlite", &["--init-ledger"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    std::os::unix::fs::symlink(site.p("real/ledger.sqlite"), site.p("link.sqlite")).unwrap();
    std::os::unix::fs::symlink(site.p("real"), site.p("linkdir")).unwrap();
    let (mut held, t) = spawn_held(run_cmd(
        &site.inbox(),
        &site.p("outbox"),
        &site.p("reports"),
        &site.p("real/ledger.sqlite"),
        &[],
    ));
    for other in ["link.sqlite", "linkdir/ledger.sqlite", "real/../real/ledger.sqlite"] {
        let o = run_with_ledger(site.dir.path(), other, &[]);
        assert_eq!(o.status.code(), Some(4), "{other}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("in use"), "{}", text(&o));
    }
    stop(&mut held, t);
    assert!(!site.p("link.sqlite.lock").exists(), "no second lock file");
}

/// R12: a run that died after its commit is published by a rerun from another working
/// directory, with other (absolute) spellings of the same paths.
#[test]
fn recovery_works_from_another_working_directory() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    let rel = |s: &str| PathBuf::from(s);
    let o = run_cmd(
        &rel("inbox"),
        &rel("outbox"),
        &rel("reports"),
        &rel("ledger.sqlite"),
        &["--init-ledger"],
    )
    .current_dir(site.dir.path())
    .env("NHI_FAILPOINT", "after-commit")
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(86), "{}", text(&o));
    let elsewhere = tempfile::tempdir().unwrap();
    let o = run_cmd(
        &site.inbox(),
        &site.p("outbox"),
        &site.p("reports"),
        &site.p("ledger.sqlite"),
        &[],
    )
    .current_dir(elsewhere.path())
    .output()
    .unwrap();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let folders = run_folders(&site.p("outbox"));
    assert_eq!(folders.len(), 1, "{folders:?}");
    assert!(!folders[0].starts_with('.'), "{folders:?}");
    assert!(!files_under(&site.p("outbox")).is_empty());
}
