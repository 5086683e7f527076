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
    // the union's unmatched registrations are withheld while inquired (R13): exit 5 is complete
    assert!(matches!(o.status.code(), Some(0 | 1 | 5)), "{}", text(&o));
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
    assert!(matches!(o.status.code(), Some(0 | 1 | 5)), "{}", text(&o));
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

// ---- item 2: owner-only folders; a ledger folder or side file others control is refused ----

/// Every path under `dir` except `skip` with its mode bits.
#[cfg(unix)]
fn modes(dir: &Path, skip: &str) -> Vec<(String, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    listing(dir)
        .into_iter()
        .filter(|p| !p.starts_with(skip))
        .map(|p| {
            let m = std::fs::symlink_metadata(dir.join(&p)).unwrap();
            (p, m.permissions().mode() & 0o777, m.is_dir())
        })
        .collect()
}

/// Under umask 000 every folder the program creates is 0700 and every file 0600: ledger folder,
/// outbox, reports, staging (a run stopped after its commit) and run folders.
#[cfg(unix)]
#[test]
fn under_umask_000_everything_created_is_owner_only() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    let run = |env: &[(&str, &str)]| {
        let mut c = Command::new("sh");
        c.args(["-c", "umask 000; exec \"$0\" \"$@\"", BIN])
            .args(["run", "--init-ledger", "--as-of", "20261201", "--inbox"])
            .arg(site.inbox())
            .arg("--ledger")
            .arg(site.p("var/db/ledger.sqlite"))
            .arg("--outbox")
            .arg(site.p("out/linkage"))
            .arg("--reports")
            .arg(site.p("rep/nightly"));
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = run(&[("NHI_FAILPOINT", "after-commit")]);
    assert_eq!(o.status.code(), Some(86), "{}", text(&o));
    let staged = modes(site.dir.path(), "inbox");
    assert!(staged.iter().any(|(p, ..)| p.contains(".staging-")), "{staged:?}");
    let o = run(&[]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let published = modes(site.dir.path(), "inbox");
    assert!(
        published.iter().any(|(p, ..)| p.starts_with("out/linkage/2026")),
        "{published:?}"
    );
    for (p, m, dir) in staged.iter().chain(&published) {
        let want = if *dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{p}: {m:o}");
    }
}

#[cfg(unix)]
#[test]
fn a_ledger_folder_others_can_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    std::fs::create_dir(site.p("new")).unwrap();
    let o = run_with_ledger(site.dir.path(), "var/ledger.sqlite", &["--init-ledger"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let existing = listing(&site.p("var"));
    for mode in [0o777, 0o1777, 0o770] {
        // an existing ledger in a folder opened up, and a new one in such a folder
        for (ledger, extra) in [
            ("var/ledger.sqlite", &[][..]),
            ("new/ledger.sqlite", &["--init-ledger"]),
        ] {
            let dir = site.p(ledger).parent().unwrap().to_path_buf();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let before = listing(&dir);
            let o = run_with_ledger(site.dir.path(), ledger, extra);
            assert_eq!(o.status.code(), Some(2), "{mode:o} {ledger}: {}", text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("can be written by other users") && err.contains(&dir.display().to_string()),
                "{err}"
            );
            assert_eq!(listing(&dir), before, "nothing created in it");
        }
    }
    assert_eq!(listing(&site.p("var")), existing);
    // once private again, the ledger is used as before
    std::fs::set_permissions(site.p("var"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = run_with_ledger(site.dir.path(), "var/ledger.sqlite", &[]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
}

/// A WAL or journal file planted beside the ledger by someone else is refused (as root the test
/// gives it to another uid; any user can test the planted link).
#[cfg(unix)]
#[test]
fn a_planted_wal_or_journal_is_refused() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    let o = run_with_ledger(site.dir.path(), "ledger.sqlite", &["--init-ledger"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let is_root = unsafe { libc::geteuid() } == 0;
    for suffix in ["-wal", "-journal"] {
        let planted = site.p(&format!("ledger.sqlite{suffix}"));
        let owned_by_other = is_root;
        if owned_by_other {
            std::fs::write(&planted, b"").unwrap();
            std::os::unix::fs::chown(&planted, Some(54321), Some(54321)).unwrap();
        } else {
            std::os::unix::fs::symlink(site.p("elsewhere"), &planted).unwrap();
        }
        let o = run_with_ledger(site.dir.path(), "ledger.sqlite", &[]);
        assert_eq!(o.status.code(), Some(2), "{suffix}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("ledger.sqlite{suffix}")), "{err}");
        if owned_by_other {
            assert!(err.contains("belongs to another user"), "{err}");
            assert_eq!(std::fs::metadata(&planted).unwrap().len(), 0, "nothing written into it");
        }
        std::fs::remove_file(&planted).unwrap();
    }
    // and a symlinked WAL is refused for any user
    std::os::unix::fs::symlink(site.p("elsewhere"), site.p("ledger.sqlite-wal")).unwrap();
    let o = run_with_ledger(site.dir.path(), "ledger.sqlite", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!site.p("elsewhere").exists());
}

// ---- item 11: characters XML forbids are E_FIELD_FORMAT in CSV; no output holds one ----

/// The sample inbox with `edit` applied to the text of the CSV file `name`, re-encoded as
/// Shift_JIS (CharacterCodeIdentifier 1) when `sjis`.
fn edited_csv(dir: &Path, name: &str, sjis: bool, edit: impl Fn(&str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(root().join("samples/inbox").join(name)).unwrap();
    let mut text = edit(&text);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    if sjis {
        let (h, rest) = text.split_once("\r\n").or_else(|| text.split_once('\n')).unwrap();
        assert!(h.ends_with(",0"));
        text = format!("{}1\r\n{rest}", &h[..h.len() - 1]);
        let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&text);
        assert!(!bad);
        std::fs::write(&path, bytes).unwrap();
    } else {
        std::fs::write(&path, text).unwrap();
    }
    path
}

fn validate(path: &Path) -> Output {
    Command::new(BIN).arg("validate").arg(path).output().unwrap()
}

#[test]
fn csv_fields_with_characters_xml_forbids_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    // an address in a 記載事項変更 and a 副本 item value, in both encodings
    for sjis in [false, true] {
        for (ch, ok_in_sjis) in [
            ('\u{FFFE}', false),
            ('\u{FFFF}', false),
            ('\u{1}', true),
            ('\u{1B}', true),
        ] {
            if sjis && !ok_in_sjis {
                continue; // Shift_JIS cannot hold U+FFFE/U+FFFF at all (E_ENCODING)
            }
            let sub = dir.path().join(format!("{sjis}-{:x}", ch as u32));
            let f = edited_csv(&sub, "Fukuhon_00131045_0343.csv", sjis, |t| {
                t.replacen("異常なし", &format!("異常{ch}なし"), 1)
            });
            let o = validate(&f);
            let out = text(&o);
            assert_eq!(o.status.code(), Some(1), "{out}");
            assert!(out.contains("E_FIELD_FORMAT") && out.contains("Items/Value"), "{out}");
            let s = edited_csv(&sub, "SubscriberChange_00131045_0341.csv", sjis, |t| {
                t.replacen("東京都", &format!("東京都{ch}"), 1)
            });
            let o = validate(&s);
            let out = text(&o);
            assert_eq!(o.status.code(), Some(1), "{out}");
            assert!(out.contains("E_FIELD_FORMAT") && out.contains("Address"), "{out}");
            assert!(out.contains(&format!("U+{:04X}", ch as u32)), "{out}");
        }
    }
}

/// The run rejects such a record (E_FIELD_FORMAT), applies the rest, and no published XML file
/// holds the character: every XML output parses.
#[test]
fn a_forbidden_character_never_reaches_a_published_file() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    edited_csv(&site.inbox(), "SubscriberChange_00131045_0341.csv", false, |t| {
        t.replacen("東京都", "東京都\u{FFFE}", 1)
    });
    let o = site.run(&["--output-format", "xml", "--output-encoding", "utf-8"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = site.report("");
    let rejects = r["rejects"].as_array().unwrap();
    assert!(
        rejects
            .iter()
            .any(|x| x["code"] == "E_FIELD_FORMAT" && x["field"] == "Address"),
        "{rejects:?}"
    );
    for (name, bytes) in site.outbox_files() {
        let s = String::from_utf8(bytes).unwrap();
        assert!(!s.contains(['\u{FFFE}', '\u{FFFF}']), "{name}");
    }
}

/// The writers' guard: a value XML forbids that reached the ledger anyway (here planted in it)
/// aborts the run before its commit: exit 3, nothing committed or published, no staging left.
#[test]
fn the_output_guard_aborts_before_commit() {
    for format in ["xml", "csv"] {
        let site = Site::new();
        std::fs::create_dir_all(site.inbox()).unwrap();
        let first = "SubscriberChange_00131045_0340.xml";
        std::fs::copy(root().join("samples/inbox").join(first), site.inbox().join(first)).unwrap();
        let o = site.run(&["--output-format", format]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let ledger = site.p("ledger.sqlite");
        let n = rusqlite::Connection::open(&ledger)
            .unwrap()
            .execute(
                "UPDATE enrollment SET name = name || char(65535) WHERE subscriber_key = '1310450004700037'",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
        let before_files = applied_files(&ledger);
        let before_outbox = site.outbox_files();
        // a 記載事項変更 of that subscriber (address only): the group is written again
        let second = "SubscriberChange_00131045_0341.csv";
        std::fs::copy(root().join("samples/inbox").join(second), site.inbox().join(second)).unwrap();
        let o = site.run(&["--output-format", format]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert!(
            out.contains("E_FIELD_FORMAT") && out.contains("U+FFFF") && out.contains("Name"),
            "{out}"
        );
        assert!(out.contains("nothing was committed or published"), "{out}");
        assert!(out.contains("SubscriberLinkage_"), "names the file: {out}");
        assert_eq!(applied_files(&ledger), before_files, "nothing committed");
        assert_eq!(site.outbox_files(), before_outbox, "nothing published");
        assert!(run_folders(&site.p("outbox")).iter().all(|n| !n.starts_with('.')));
    }
}

// ---- item 7: only the inbox's own regular files are read, and only if they hold still ----

/// Runs `c` to the end, failing the test (and killing the process) if it takes over 120 s: a
/// run that blocks forever must fail the test, not hang it.
fn output_within(mut c: Command) -> Output {
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &id.to_string()]).status();
            panic!("the run hung");
        }
    }
}

fn input_names(report: &serde_json::Value) -> Vec<String> {
    report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_inbox_is_skipped_not_opened() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    let fifo = site.inbox().join("zz_fifo.xml");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap().success();
    assert!(ok);
    let mut c = Command::new(BIN);
    c.args(["run", "--init-ledger", "--as-of", "20261201", "--inbox"])
        .arg(site.inbox())
        .arg("--outbox")
        .arg(site.p("outbox"))
        .arg("--reports")
        .arg(site.p("reports"))
        .arg("--ledger")
        .arg(site.p("ledger.sqlite"));
    let o = output_within(c);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("zz_fifo.xml") && err.contains("not a regular file"),
        "{err}"
    );
    assert!(!input_names(&site.report("")).iter().any(|n| n.contains("fifo")));
}

#[cfg(unix)]
#[test]
fn the_inbox_is_read_flat_and_links_never_lead_out_of_it() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    // processed files kept in inbox/processed/, a copy outside linked in, a link loop
    let processed = site.inbox().join("processed");
    std::fs::create_dir(&processed).unwrap();
    let extra = edited_csv(&processed, "SubscriberChange_00131045_0341.csv", false, |t| {
        t.replacen("KK131045-20261130-0341", "KK131045-20261130-9999", 1)
    });
    let outside = site.p("outside");
    std::fs::create_dir(&outside).unwrap();
    let out_file = outside.join("Other.csv");
    std::fs::copy(&extra, &out_file).unwrap();
    std::os::unix::fs::symlink(&out_file, site.inbox().join("link_out.csv")).unwrap();
    std::os::unix::fs::symlink(site.inbox(), site.inbox().join("loop")).unwrap();
    std::os::unix::fs::symlink(site.inbox(), site.inbox().join("loop.xml")).unwrap();
    // a link to a file of the inbox itself is read (it is the inbox's own file)
    std::os::unix::fs::symlink(
        site.inbox().join("Fukuhon_00131045_0343.csv"),
        site.inbox().join("zz_alias.csv"),
    )
    .unwrap();
    let o = site.run(&[]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let mut names = input_names(&site.report(""));
    names.sort();
    let mut want: Vec<String> = std::fs::read_dir(root().join("samples/inbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    want.push("zz_alias.csv".into());
    want.sort();
    assert_eq!(names, want);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("link_out.csv"), "the skipped link is named: {err}");
}

/// A file rewritten in place while the run reads it is rejected whole (deterministic: the run
/// pauses after reading the file until the test has changed it).
#[test]
fn a_file_that_changes_while_it_is_read_is_rejected_whole() {
    let site = Site::new();
    std::fs::create_dir_all(site.inbox()).unwrap();
    let name = "SubscriberChange_00131045_0340.xml";
    let file = site.inbox().join(name);
    std::fs::copy(root().join("samples/inbox").join(name), &file).unwrap();
    let gate = site.p("resume");
    let mut child = Command::new(BIN)
        .args(["run", "--init-ledger", "--as-of", "20261201", "--inbox"])
        .arg(site.inbox())
        .arg("--outbox")
        .arg(site.p("outbox"))
        .arg("--reports")
        .arg(site.p("reports"))
        .arg("--ledger")
        .arg(site.p("ledger.sqlite"))
        .env("NHI_FAILPOINT", "pause-after-file")
        .env("NHI_FAILPOINT_RESUME", &gate)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l.contains("failpoint pause-after-file") {
            break;
        }
    }
    assert!(seen.contains("pause-after-file"), "{seen}");
    // rewritten in place, same size: another name in the same bytes
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(6).position(|w| w == "山田".as_bytes()).expect("a name");
    bytes[at..at + 6].copy_from_slice("川田".as_bytes());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .unwrap();
    std::fs::write(&gate, b"").unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap_or_default()).collect();
    let status = child.wait().unwrap();
    let stderr = format!("{seen}{}", rest.join("\n"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    let r = site.report("");
    assert_eq!(r["inputs"][0]["status"], "rejected", "{r}");
    let msg = r["rejects"].to_string();
    assert!(msg.contains("changed while it was read"), "{msg}");
    assert_eq!(applied_files(&site.p("ledger.sqlite")), 0);
    // the complete file, read again, applies
    let o = site.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(applied_files(&site.p("ledger.sqlite")), 1);
}

// ---- item 8: merge-shards takes no name from a shard's files as a path ----

fn shard_runs_of_kokuho(root: &Path) -> Vec<PathBuf> {
    let (kokuho_in, _) = split_inboxes(root);
    (0..2)
        .map(|i| {
            let d = root.join(format!("s{i}"));
            let o = run_cmd(
                &kokuho_in,
                &d.join("outbox"),
                &d.join("reports"),
                &d.join("ledger.sqlite"),
                &["--init-ledger", "--shard", &format!("{i}/2")],
            )
            .output()
            .unwrap();
            assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
            d
        })
        .collect()
}

fn merge_shards(froms: &[PathBuf], out: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("merge-shards");
    for f in froms {
        c.arg("--from").arg(f);
    }
    c.arg("--outbox")
        .arg(out.join("outbox"))
        .arg("--reports")
        .arg(out.join("reports"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn merge_shards_refuses_worklist_names_that_lead_out_of_its_folder() {
    let site = Site::new();
    let froms = shard_runs_of_kokuho(site.dir.path());
    let m = site.p("m");
    std::fs::create_dir_all(m.join("reports")).unwrap();
    // the file a crafted name would overwrite: m/victim.csv
    let victim = m.join("victim.csv");
    std::fs::write(&victim, b"keep me\n").unwrap();
    let evil = "../../victim";
    for f in &froms {
        let reports = f.join("reports");
        let run = std::fs::read_dir(&reports)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("report.json").is_file())
            .unwrap();
        let jp = run.join("report.json");
        let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(&jp).unwrap()).unwrap();
        j["worklists"][evil] = 0.into();
        std::fs::write(&jp, serde_json::to_vec_pretty(&j).unwrap()).unwrap();
        // what the crafted name reads in the shard's folder: a worklist with a header row only
        std::fs::write(run.join(format!("{evil}.csv")), b"insurer,subscriber_key\r\n").unwrap();
    }
    let o = merge_shards(&froms, &m, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("worklist"), "{}", text(&o));
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me\n");
    assert!(
        !m.join("outbox").exists() || files_under(&m.join("outbox")).is_empty(),
        "nothing merged"
    );
    // and a run id given on the command line is a name, not a path
    let o = merge_shards(&froms, &m, &["--run-id", "../../x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--run-id"), "{}", text(&o));
}

// ---- item 10: smaller leaks ----

/// Every cell of every CSV file under `dir`.
fn csv_cells(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, bytes) in files_under(dir) {
        // inquiry files beside a report are linkage data in the run's output encoding (R13)
        let linkage = name
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("AgeTransitionInquiry_"));
        if !name.ends_with(".csv") || linkage {
            continue;
        }
        // report CSVs are UTF-8 with BOM by default, Shift_JIS with --report-encoding shift_jis
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => encoding_rs::SHIFT_JIS.decode(e.as_bytes()).0.into_owned(),
        };
        let mut rd = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        for r in rd.records() {
            for c in r.unwrap().iter() {
                out.push((name.clone(), c.to_owned()));
            }
        }
    }
    out
}

#[test]
fn report_cells_never_hold_a_formula_and_echoed_names_mask_digit_runs() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    // a file whose name is a formula (rejected whole: not a bulk file)
    std::fs::write(
        site.inbox().join("=HYPERLINK(\"x.example\",\"y\").csv"),
        b"nonsense\r\n",
    )
    .unwrap();
    std::fs::write(site.inbox().join("+1-2.csv"), b"nonsense\r\n").unwrap();
    // an element whose name carries a 12-digit number, inside a record
    let name = "SubscriberChange_00131045_0340.xml";
    let text0 = std::fs::read_to_string(root().join("samples/inbox").join(name)).unwrap();
    let bad =
        text0
            .replacen("<Address>", "<Address123456789012>", 1)
            .replacen("</Address>", "</Address123456789012>", 1);
    assert_ne!(bad, text0);
    std::fs::write(site.inbox().join(name), bad).unwrap();
    let o = site.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!text(&o).contains("123456789012"), "{}", text(&o));
    let rejects = site.report("")["rejects"].to_string();
    assert!(
        rejects.contains("<Address******>"),
        "the element is named, masked: {rejects}"
    );
    let cells = csv_cells(&site.p("reports"));
    assert!(cells.iter().any(|(_, c)| c.contains("HYPERLINK")), "the file is listed");
    for (f, c) in &cells {
        assert!(!c.starts_with(['=', '+', '-', '@']), "{f}: {c}");
        assert!(!c.contains("123456789012"), "{f}: {c}");
    }
    for (f, bytes) in files_under(&site.p("reports")) {
        assert!(!String::from_utf8_lossy(&bytes).contains("123456789012"), "{f}");
    }
}

#[test]
fn a_migration_spool_left_by_a_crash_is_removed_by_the_next_run() {
    let site = Site::new();
    let o = migrate_cmd(&site, &["--init-ledger"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let spools = || -> Vec<String> {
        listing(&site.p("reports"))
            .into_iter()
            .filter(|n| n.contains(".spool-migrate-"))
            .collect()
    };
    // a second source, killed before its commit: its diff spool stays behind
    let second = site.p("second.csv");
    let t = std::fs::read(root().join("samples/legacy/kokuho_export.csv")).unwrap();
    std::fs::write(&second, &t).unwrap();
    let o = Command::new(BIN)
        .args(["migrate", "--as-of", "20261202", "--ledger"])
        .arg(site.p("var/ledger.sqlite"))
        .arg("--from")
        .arg(&second)
        .arg("--mapping")
        .arg(root().join("samples/legacy/mapping.toml"))
        .arg("--reports")
        .arg(site.p("reports"))
        .arg("--outbox")
        .arg(site.p("outbox"))
        .env("NHI_FAILPOINT", "after-stage")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(86), "{}", text(&o));
    assert_eq!(spools().len(), 1, "{:?}", listing(&site.p("reports")));
    let o = migrate_cmd(&site, &["--dry-run"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    assert!(spools().is_empty(), "{:?}", spools());
}

#[test]
fn a_row_over_the_size_limit_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text0 = std::fs::read_to_string(root().join("samples/inbox/SubscriberChange_00131045_0341.csv")).unwrap();
    let mut lines: Vec<String> = text0.lines().map(str::to_owned).collect();
    // far over the limit (a row just over it was always placed; one of 1 MB said line 0)
    lines[2] = format!("{}{}", lines[2], "x".repeat(1 << 20));
    let p = dir.path().join("long.csv");
    std::fs::write(&p, lines.join("\r\n") + "\r\n").unwrap();
    let o = validate(&p);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("limit"), "{out}");
    assert!(!out.contains(":0: "), "never line 0: {out}");
    assert!(out.contains("long.csv:3: E_SCHEMA"), "{out}");
}

// ---- item 9: outcomes after the commit are told as they are ----

/// The run id a real run will have: that of its dry run.
fn dry_run_id(reports: &Path) -> String {
    let d = std::fs::read_dir(reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with("-dry-run"))
        .expect("a dry-run report");
    d.trim_end_matches("-dry-run").to_owned()
}

#[test]
fn a_run_that_cannot_publish_after_its_commit_says_so_and_the_next_run_publishes_it() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    let o = site.run(&["--dry-run"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let run_id = dry_run_id(&site.p("reports"));
    // a plain file where the run folder goes
    std::fs::create_dir_all(site.p("outbox")).unwrap();
    std::fs::write(site.p("outbox").join(&run_id), b"in the way").unwrap();
    let o = site.run(&[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}");
    assert!(out.contains("IS COMMITTED") && out.contains(&run_id), "{out}");
    assert!(out.contains(&format!("outbox/{run_id}")), "names the path: {out}");
    assert!(out.contains("run again"), "says what to do: {out}");
    assert!(!out.contains("nothing was"), "{out}");
    assert!(applied_files(&site.p("ledger.sqlite")) > 0, "committed");
    // once the file is out of the way, the next run publishes the committed run
    std::fs::remove_file(site.p("outbox").join(&run_id)).unwrap();
    let o = site.run(&[]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    assert!(site.p("outbox").join(&run_id).join("MANIFEST.json").is_file());
    assert!(site.p("reports").join(&run_id).join("report.json").is_file());
}

#[test]
fn migrate_tells_a_failure_after_its_commit_from_one_before() {
    let site = Site::new();
    let o = migrate_cmd(&site, &["--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let run_id = dry_run_id(&site.p("reports"));
    std::fs::create_dir_all(site.p("outbox")).unwrap();
    std::fs::write(site.p("outbox").join(&run_id), b"in the way").unwrap();
    let o = migrate_cmd(&site, &["--init-ledger"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}");
    assert!(
        out.contains("IS COMMITTED") && !out.contains("nothing was committed"),
        "{out}"
    );
    // an error before the commit still says nothing was committed
    let o = Command::new(BIN)
        .args(["migrate", "--as-of", "20261201", "--ledger"])
        .arg(site.p("var/ledger.sqlite"))
        .arg("--from")
        .arg(site.p("no-such-source.csv"))
        .arg("--reports")
        .arg(site.p("reports"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn extract_on_a_busy_ledger_exits_4() {
    let site = Site::new();
    copy_sample_inbox(&site.inbox());
    let o = site.run(&[]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let (mut held, t) = spawn_held(run_cmd(
        &site.inbox(),
        &site.p("outbox"),
        &site.p("reports"),
        &site.p("ledger.sqlite"),
        &[],
    ));
    let o = Command::new(BIN)
        .args(["age-transition", "extract", "--as-of", "20261201", "--ledger"])
        .arg(site.p("ledger.sqlite"))
        .arg("--out")
        .arg(site.p("handoff"))
        .arg("--reports")
        .arg(site.p("reports"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use"), "{}", text(&o));
    stop(&mut held, t);
}
