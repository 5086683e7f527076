//! Upgrading a ledger written by an older release: a schema version 2 ledger (journal v1: one
//! table whose lines repeat the run id, the file name and the event's name) is upgraded in place
//! to journal v2 when a run opens it. Every journal line reads back through the `journal` view
//! exactly as it was stored (same ids, runs, files, events, details), the run then works on it,
//! and `ledger check` finds nothing; an upgrade that fails leaves the ledger at its old version.

mod common;

use common::*;
use rusqlite::Connection;
use std::process::Command;

/// A journal line as the `journal` table of schema version 2 stored it.
type Line = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn line(
    id: i64,
    run: &str,
    file: Option<&str>,
    seq: Option<i64>,
    who: Option<(&str, &str)>,
    event: &str,
    detail: &str,
) -> Line {
    (
        id,
        run.to_owned(),
        file.map(str::to_owned),
        seq,
        who.map(|w| w.0.to_owned()),
        who.map(|w| w.1.to_owned()),
        event.to_owned(),
        detail.to_owned(),
    )
}

/// Journal lines of two earlier runs, with what v2 allowed: a line of no file, a line of no
/// subscriber, ids with a gap, and an event name this release does not know.
fn old_lines() -> Vec<Line> {
    let k1 = key(901);
    let k2 = key(902);
    vec![
        line(
            1,
            "20261101-aaaaaaaaaaaa",
            Some("SubscriberChange_00131045_0001.xml"),
            Some(1),
            Some(("00131045", &k1)),
            "acquisition",
            "資格取得 reason 04",
        ),
        line(
            2,
            "20261101-aaaaaaaaaaaa",
            Some("Fukuhon_00131045_0003.xml"),
            Some(1),
            Some(("00131045", &k1)),
            "fukuhon",
            "TM00000000000001 op 1",
        ),
        line(
            3,
            "20261101-aaaaaaaaaaaa",
            Some("SubscriberChange_00131045_0001.xml"),
            Some(2),
            Some(("00131045", &k2)),
            "acquisition",
            "資格取得 reason 04",
        ),
        line(
            4,
            "20261101-aaaaaaaaaaaa",
            Some("FlagChange_00131045_0002.xml"),
            Some(1),
            None,
            "insurer_flag",
            "00131045 TM00000000000001 NonDisclosure op 1",
        ),
        line(
            7,
            "20261102-bbbbbbbbbbbb",
            Some("SubscriberChange_00131045_0001.xml"),
            Some(1),
            Some(("00131045", &k2)),
            "loss",
            "",
        ),
        line(
            8,
            "20261102-bbbbbbbbbbbb",
            None,
            None,
            None,
            "migrate",
            "snapshot of 2 subscribers",
        ),
        line(
            9,
            "20261102-bbbbbbbbbbbb",
            None,
            None,
            Some(("00131045", &k1)),
            "legacy_event",
            "kept as it was",
        ),
    ]
}

/// Writes a schema version 2 ledger at `path` holding `lines` in its journal table, as releases
/// before journal v2 did (the schema text is theirs: v1, then the v1 → v2 upgrade).
fn write_v2_ledger(path: &std::path::Path, lines: &[Line]) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(nhi_linkage::ledger::SCHEMA_V1_SQL).unwrap();
    conn.execute_batch(nhi_linkage::ledger::SCHEMA_V2_SQL).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    for l in lines {
        conn.execute(
            "INSERT INTO journal (id, run_id, file, record_sequence, insurer, subscriber_key, event, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![l.0, l.1, l.2, l.3, l.4, l.5, l.6, l.7],
        )
        .unwrap();
    }
}

fn journal_lines(conn: &Connection) -> Vec<Line> {
    let mut st = conn
        .prepare(
            "SELECT id, run_id, file, record_sequence, insurer, subscriber_key, event, detail FROM journal ORDER BY id",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn user_version(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
}

#[test]
fn a_schema_v2_ledger_is_upgraded_to_journal_v2_and_keeps_every_line() {
    let site = Site::new();
    generate(30, "5", &["--format", "xml", "--encoding", "utf-8"], &site.inbox());
    let old = old_lines();
    write_v2_ledger(&site.p("ledger.sqlite"), &old);

    let o = site.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let report = site.report("");
    let run_id = report["run_id"].as_str().unwrap().to_owned();

    let conn = Connection::open(site.p("ledger.sqlite")).unwrap();
    assert_eq!(user_version(&conn), nhi_linkage::ledger::SCHEMA_VERSION);
    assert_eq!(nhi_linkage::ledger::SCHEMA_VERSION, 3);
    let kind: String = conn
        .query_row("SELECT type FROM sqlite_schema WHERE name = 'journal'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        kind, "view",
        "the v1 journal table is replaced by the view over journal v2"
    );

    let lines = journal_lines(&conn);
    // the old lines read back exactly as stored, ids included, before this run's lines
    assert_eq!(&lines[..old.len()], &old[..]);
    let new = &lines[old.len()..];
    assert!(!new.is_empty());
    assert!(
        new.iter().all(|l| l.0 > 9 && l.1 == run_id),
        "this run's lines follow, under its run id"
    );
    let acquisitions = new.iter().filter(|l| l.6 == "acquisition").count() as u64;
    assert!(acquisitions > 0);
    // the run id and each file are stored once, not once a line
    let sources: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM journal_source WHERE run_id = ?1",
            [&run_id],
            |r| r.get(0),
        )
        .unwrap();
    let files = new
        .iter()
        .map(|l| l.2.clone())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(sources as usize, files.len());
    assert!(lines.len() > 2 * files.len() + 4);

    let check = Command::new(BIN)
        .args(["ledger", "check", "--ledger"])
        .arg(site.p("ledger.sqlite"))
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn a_failed_upgrade_leaves_the_ledger_at_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let old = old_lines();
    write_v2_ledger(&path, &old);
    // something in the way of the upgrade: a table of the new schema's name already there
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE journal_source (x);")
        .unwrap();

    let err = nhi_linkage::ledger::open(&path).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot upgrade the ledger from schema version 2 to 3"),
        "{err:#}"
    );
    let conn = Connection::open(&path).unwrap();
    assert_eq!(user_version(&conn), 2);
    assert_eq!(journal_lines(&conn), old, "the journal table is as it was");
}
