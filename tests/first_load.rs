//! The first-load path (issue 16): a run into a ledger that holds nothing builds the new ledger
//! aside and renames it into place. Its ledger must hold exactly what the normal path (WAL, in
//! place; test hook `NHI_FAILPOINT=no-first-load`) writes, its outputs must be the same bytes, and
//! a crash before the rename must leave the empty ledger and nothing the rerun keeps.

mod common;

use common::*;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A logical dump of a ledger: its schema (every table, index and view as SQLite stores it), its
/// user_version, and every row of every table in a fixed order, the wall-clock time of the last
/// whole-file check masked.
fn dump(ledger: &Path) -> BTreeMap<String, Vec<String>> {
    let conn = Connection::open_with_flags(ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut out = BTreeMap::new();
    let schema: Vec<String> = conn
        .prepare("SELECT type || ' ' || name || ': ' || IFNULL(sql, '') FROM sqlite_master ORDER BY type, name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    out.insert("(schema)".to_owned(), schema);
    out.insert("(user_version)".to_owned(), vec![version.to_string()]);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in tables {
        let stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY {}", order.join(", ")))
            .unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let rows: Vec<String> = stmt
            .query_map([], |r| {
                let mut cells = Vec::with_capacity(n);
                for (i, name) in names.iter().enumerate() {
                    let v: rusqlite::types::Value = r.get(i)?;
                    if t == "ledger_check" && name == "checked_at" {
                        cells.push("(time)".to_owned());
                    } else {
                        cells.push(format!("{v:?}"));
                    }
                }
                Ok(cells.join("|"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        out.insert(t, rows);
    }
    out
}

/// `run -v` of `inbox` into `root`'s ledger, outbox and reports.
fn run_in(root: &Path, inbox: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(["-v", "run", "--as-of", "20261201", "--inbox"])
        .arg(inbox)
        .arg("--outbox")
        .arg(root.join("outbox"))
        .arg("--reports")
        .arg(root.join("reports"))
        .arg("--ledger")
        .arg(root.join("ledger.sqlite"))
        .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The report.json files under `reports`, wall-clock times masked.
fn reports(reports: &Path) -> BTreeMap<String, serde_json::Value> {
    files_under(reports)
        .into_iter()
        .filter(|(k, _)| k.ends_with("report.json"))
        .map(|(k, v)| {
            let mut r: serde_json::Value = serde_json::from_slice(&v).unwrap();
            r["started_at"] = serde_json::Value::Null;
            r["finished_at"] = serde_json::Value::Null;
            (k, r)
        })
        .collect()
}

/// Files beside the ledger (the ledger's folder), by name.
fn beside(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ledger.sqlite"))
        .collect();
    v.sort();
    v
}

struct Loaded {
    ledger: BTreeMap<String, Vec<String>>,
    outbox: BTreeMap<String, Vec<u8>>,
    reports: BTreeMap<String, serde_json::Value>,
    stderr: String,
}

/// Removes the ledger, outbox and reports under `root`.
fn clear(root: &Path) {
    for d in ["outbox", "reports", "ledger.sqlite", "ledger.sqlite.lock"] {
        let p = root.join(d);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else if p.exists() {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

const OPTS: [&str; 2] = ["--unmappable", "replace"];

/// What a site holds after its runs.
fn loaded(root: &Path, stderr: String) -> Loaded {
    assert_eq!(
        beside(root),
        ["ledger.sqlite", "ledger.sqlite.lock"],
        "nothing left beside the ledger"
    );
    Loaded {
        ledger: dump(&root.join("ledger.sqlite")),
        outbox: files_under(&root.join("outbox")),
        reports: reports(&root.join("reports")),
        stderr,
    }
}

/// A first run of `inbox` into a new ledger at `root` (emptied first).
fn first_night(root: &Path, inbox: &Path, extra: &[&str], env: &[(&str, &str)]) -> Loaded {
    clear(root);
    let args: Vec<&str> = ["--init-ledger"].iter().chain(&OPTS).chain(extra).copied().collect();
    let o = run_in(root, inbox, &args, env);
    assert!(matches!(o.status.code(), Some(0 | 1 | 5)), "{}", text(&o));
    loaded(root, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// [`first_night`], then the same inbox again (every file already applied, R10: the ledger put
/// in place goes on working).
fn load(root: &Path, inbox: &Path, extra: &[&str], env: &[(&str, &str)]) -> Loaded {
    let first = first_night(root, inbox, extra, env);
    let args: Vec<&str> = OPTS.iter().chain(extra).copied().collect();
    let again = run_in(root, inbox, &args, env);
    assert!(matches!(again.status.code(), Some(0 | 1 | 5)), "{}", text(&again));
    loaded(root, first.stderr)
}

/// Table by table (a whole dump would drown the difference).
fn assert_same_ledger(got: &BTreeMap<String, Vec<String>>, want: &BTreeMap<String, Vec<String>>) {
    for (table, rows) in want {
        assert_eq!(got.get(table), Some(rows), "ledger table {table}");
    }
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
}

fn samples_inbox() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/inbox")
}

fn assert_same_as_normal_path(inbox: &Path, extra: &[&str]) {
    let site = Site::new();
    let root = site.p("site");
    std::fs::create_dir_all(&root).unwrap();
    let normal = load(&root, inbox, extra, &[("NHI_FAILPOINT", "no-first-load")]);
    assert!(!normal.stderr.contains("first load"), "{}", normal.stderr);
    let first = load(&root, inbox, extra, &[]);
    assert!(
        first.stderr.contains("first load: building the new ledger aside")
            && first.stderr.contains("first load: ledger put in place"),
        "the first-load path was taken: {}",
        first.stderr
    );
    assert!(
        normal.ledger.values().map(Vec::len).sum::<usize>() > 100,
        "the load stored something"
    );
    assert_same_ledger(&first.ledger, &normal.ledger);
    assert!(!normal.outbox.is_empty());
    assert_eq!(first.outbox, normal.outbox, "the same linkage, byte for byte");
    assert_eq!(first.reports, normal.reports);
    // the installed ledger is a WAL ledger like any other
    let conn = Connection::open(root.join("ledger.sqlite")).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn first_load_of_the_samples_holds_what_the_normal_path_holds() {
    assert_same_as_normal_path(&samples_inbox(), &[]);
}

/// `generate` of `n` subscribers (a fifth of them flagged) into a folder of `site`.
fn generated(site: &Site, n: u32, seed: &str, format: &str, encoding: &str) -> PathBuf {
    let inbox = site.p("gen");
    let flags = ["--format", format, "--encoding", encoding, "--flagged-ratio", "0.2"];
    generate(n, seed, &flags, &inbox);
    inbox
}

#[test]
fn first_load_of_generated_csv_in_shift_jis_holds_what_the_normal_path_holds() {
    let site = Site::new();
    assert_same_as_normal_path(&generated(&site, 400, "11", "csv", "shift_jis"), &[]);
}

#[test]
fn first_load_of_generated_xml_in_chunks_holds_what_the_normal_path_holds() {
    let site = Site::new();
    let inbox = generated(&site, 300, "12", "xml", "utf-8");
    // applied chunk by chunk: the file aside is read back while it is built
    assert_same_as_normal_path(&inbox, &["--chunk-records", "200", "--threads", "2"]);
}

#[test]
fn a_crash_before_the_new_ledger_is_in_place_leaves_the_empty_ledger_and_the_rerun_loads_again() {
    let site = Site::new();
    let root = site.p("site");
    std::fs::create_dir_all(&root).unwrap();
    let want = first_night(&root, &samples_inbox(), &[], &[]);
    clear(&root);

    let o = run_in(
        &root,
        &samples_inbox(),
        &["--init-ledger", "--unmappable", "replace"],
        &[("NHI_FAILPOINT", "first-load-before-install")],
    );
    assert_eq!(o.status.code(), Some(86), "{}", text(&o));
    // committed aside, not in place: the ledger at its path is the empty one
    let left: Vec<String> = beside(&root);
    assert!(
        left.iter().any(|n| n.starts_with("ledger.sqlite.first-load-")),
        "the file built aside is still there: {left:?}"
    );
    let conn =
        Connection::open_with_flags(root.join("ledger.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let runs: i64 = conn.query_row("SELECT COUNT(*) FROM run", [], |r| r.get(0)).unwrap();
    let people: i64 = conn
        .query_row("SELECT COUNT(*) FROM enrollment", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    assert_eq!((runs, people), (0, 0), "nothing in the ledger in place");
    let published: Vec<String> = files_under(&root.join("outbox"))
        .into_keys()
        .filter(|k| !k.starts_with(".staging-"))
        .collect();
    assert!(published.is_empty(), "nothing published: {published:?}");

    // the rerun (the ledger exists now: no --init-ledger) removes the leftovers and loads again
    let o = run_in(&root, &samples_inbox(), &["--unmappable", "replace"], &[]);
    assert!(matches!(o.status.code(), Some(0 | 1 | 5)), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("removed a first load left aside"), "{stderr}");
    assert_eq!(beside(&root), ["ledger.sqlite", "ledger.sqlite.lock"]);
    let got_outbox = files_under(&root.join("outbox"));
    assert_eq!(
        got_outbox.keys().collect::<Vec<_>>(),
        want.outbox.keys().collect::<Vec<_>>()
    );
    assert!(got_outbox == want.outbox, "the same linkage, byte for byte");
    assert_same_ledger(&dump(&root.join("ledger.sqlite")), &want.ledger);
}

#[test]
fn an_r4_abort_on_a_first_load_commits_nothing_and_leaves_nothing_aside() {
    let site = Site::new();
    let root = site.p("site");
    std::fs::create_dir_all(&root).unwrap();
    let o = run_in(
        &root,
        &samples_inbox(),
        &["--init-ledger"],
        &[("NHI_FAILPOINT", "writer-clear-flag")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("E_FLAG_WOULD_BE_CLEARED"));
    let left = beside(&root);
    assert!(
        !left.iter().any(|n| n.contains("first-load")),
        "nothing left aside: {left:?}"
    );
    assert!(files_under(&root.join("outbox")).is_empty(), "nothing published");
}

#[test]
fn a_dry_run_against_a_missing_ledger_touches_nothing_beside_it() {
    let site = Site::new();
    let root = site.p("site");
    std::fs::create_dir_all(&root).unwrap();
    // not this process's: no ledger, so no lock to take
    let stranger = root.join("ledger.sqlite.first-load-999999");
    std::fs::write(&stranger, b"someone else's").unwrap();
    let o = run_in(&root, &samples_inbox(), &["--dry-run", "--unmappable", "replace"], &[]);
    assert!(matches!(o.status.code(), Some(0 | 1 | 5)), "{}", text(&o));
    assert!(!root.join("ledger.sqlite").exists(), "a dry run creates no ledger");
    assert_eq!(std::fs::read(&stranger).unwrap(), b"someone else's");
}

#[test]
fn only_what_a_first_load_leaves_is_removed_beside_the_ledger() {
    let site = Site::new();
    let root = site.p("site");
    std::fs::create_dir_all(&root).unwrap();
    // a neighbour's ledger whose name merely begins like a leftover, and a real leftover
    let neighbour = root.join("ledger.sqlite.first-load-2.sqlite");
    std::fs::write(&neighbour, b"a neighbour's ledger").unwrap();
    let leftover = root.join("ledger.sqlite.first-load-4242");
    std::fs::write(&leftover, b"left by a crash").unwrap();
    let o = run_in(
        &root,
        &samples_inbox(),
        &["--init-ledger", "--unmappable", "replace"],
        &[],
    );
    assert!(matches!(o.status.code(), Some(0 | 1 | 5)), "{}", text(&o));
    assert!(!leftover.exists(), "the leftover is removed");
    assert_eq!(std::fs::read(&neighbour).unwrap(), b"a neighbour's ledger");
}
