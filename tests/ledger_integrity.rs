//! The ledger's integrity (issue 13 item 4, issue 16): a corrupted flag row is found before
//! anything is published; a flipped byte is found by the start's check (the small tables every
//! time, the whole file when due) or by SQLite as a run reads the page, and stops the run with
//! exit 3; `ledger check` finds what a run would trip over; `ledger backup` writes a checked,
//! private copy.

mod common;
use common::*;
use nhi_linkage::domain::FileKind;
use nhi_linkage::formats::{Format, TextEncoding};
use std::process::Command;

fn flagged_member(site: &Site, f: &Files) {
    write_file(
        &site.inbox(),
        "SubscriberChange_k",
        FileKind::SubscriberChange,
        f,
        KOKUHO,
        "K-1",
        "20261110230000",
        &[
            acquisition(
                KOKUHO,
                &key(1),
                None,
                "1001",
                "19600101",
                "20100401",
                "03",
                "山田　花子",
            ),
            acquisition(
                KOKUHO,
                &key(2),
                None,
                "1002",
                "19600101",
                "20100401",
                "03",
                "佐藤　一子",
            ),
        ],
    );
    write_file(
        &site.inbox(),
        "FlagChange_k",
        FileKind::FlagChange,
        f,
        KOKUHO,
        "KF-1",
        "20261110230100",
        &[flag_set(KOKUHO, &key(1), "3", "2", "20261110090000")],
    );
}

fn ledger_cmd(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("ledger").args(args).output().unwrap()
}

#[test]
fn a_flipped_flag_type_is_found_before_anything_is_published() {
    for (format, encoding) in [(Format::Csv, TextEncoding::ShiftJis), (Format::Xml, TextEncoding::Utf8)] {
        let f = Files { format, encoding };
        let site = Site::new();
        flagged_member(&site, &f);
        assert!(site.run(&[]).status.success());
        let ledger = site.p("ledger.sqlite");
        let l = ledger.to_str().unwrap();
        assert_eq!(ledger_cmd(&["check", "--ledger", l]).status.code(), Some(0));

        // 自己情報提供不可 (3) becomes 自動応答不可 (1) in the flag row: a valid SQLite file
        let c = rusqlite::Connection::open(&ledger).unwrap();
        c.execute("UPDATE flag SET flag_type = '1' WHERE subscriber_key = ?1", [key(1)])
            .unwrap();
        drop(c);
        let o = ledger_cmd(&["check", "--ledger", l]);
        assert_eq!(o.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&key(1)));

        // the next night touches her: the run stops, nothing is published
        next_night_touches_her(&site, &f);
        let before = site.outbox_files();
        let o = site.run(&["--as-of", "20261121"]);
        assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("ledger check"));
        assert_eq!(site.outbox_files(), before, "nothing published");
    }
}

/// Moves everything into the main file (no WAL), then flips every bit of one byte of the
/// B-tree page that is the root of `table` (its page type: SQLite no longer knows the page).
fn flip_root_page_byte(ledger: &std::path::Path, table: &str) {
    let (root, page_size) = {
        let c = rusqlite::Connection::open(ledger).unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
        let root: i64 = c
            .query_row("SELECT rootpage FROM sqlite_schema WHERE name = ?1", [table], |r| {
                r.get(0)
            })
            .unwrap();
        let size: i64 = c.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
        (root, size)
    };
    assert!(root > 1, "{table}: root page {root}");
    let mut bytes = std::fs::read(ledger).unwrap();
    let at = ((root - 1) * page_size) as usize;
    bytes[at] ^= 0xFF;
    std::fs::write(ledger, &bytes).unwrap();
    assert!(!ledger.with_extension("sqlite-wal").exists());
}

/// The next night's inbox: one update (a new post number) of the flagged member, key 1.
fn next_night_touches_her(site: &Site, f: &Files) {
    std::fs::remove_dir_all(site.inbox()).unwrap();
    let mut upd = keys_change("2", "20261120", KOKUHO, &key(1));
    upd.insert("PostNumber", "1600022".into());
    write_file(
        &site.inbox(),
        "SubscriberChange_2",
        FileKind::SubscriberChange,
        f,
        KOKUHO,
        "K-2",
        "20261120230000",
        &[upd],
    );
}

fn empty_inbox(site: &Site) {
    std::fs::remove_dir_all(site.inbox()).ok();
    std::fs::create_dir_all(site.inbox()).unwrap();
}

fn assert_damaged_and_nothing_published(
    site: &Site,
    o: &std::process::Output,
    before: &std::collections::BTreeMap<String, Vec<u8>>,
) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("is damaged") && err.contains("ledger check"), "{err}");
    assert_eq!(&site.outbox_files(), before, "nothing published");
}

/// A flipped byte in a page the night reads (her enrollment row): SQLite reports the page as
/// corrupt as it reads it, and the run stops with the documented message and exit 3; nothing is
/// published. The start's own check (not due: the ledger is new and was closed cleanly) looked
/// only at the small tables.
#[test]
fn a_flipped_byte_in_a_page_the_run_reads_stops_it() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let site = Site::new();
    flagged_member(&site, &f);
    assert!(site.run(&[]).status.success());
    let ledger = site.p("ledger.sqlite");
    flip_root_page_byte(&ledger, "enrollment");
    next_night_touches_her(&site, &f);
    let before = site.outbox_files();
    let o = site.run(&["-v", "--as-of", "20261121"]);
    assert_damaged_and_nothing_published(&site, &o, &before);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("all but the bulk tables"),
        "the start did not check the whole file: {err}"
    );
    assert!(err.contains("SQLite: "), "{err}");
    assert!(!err.contains(&key(1)), "no subscriber named in the message: {err}");
    assert_eq!(
        ledger_cmd(&["check", "--ledger", ledger.to_str().unwrap()])
            .status
            .code(),
        Some(3)
    );
}

/// A flipped byte in the flag table is found at every start, before anything is read or
/// published, even by a night that touches nobody.
#[test]
fn a_flipped_byte_in_the_flag_table_is_found_at_every_start() {
    let f = Files {
        format: Format::Xml,
        encoding: TextEncoding::ShiftJis,
    };
    let site = Site::new();
    flagged_member(&site, &f);
    assert!(site.run(&[]).status.success());
    flip_root_page_byte(&site.p("ledger.sqlite"), "flag");
    empty_inbox(&site);
    let before = site.outbox_files();
    let o = site.run(&["--as-of", "20261121"]);
    assert_damaged_and_nothing_published(&site, &o, &before);
    assert!(String::from_utf8_lossy(&o.stderr).contains("quick_check: flag:"));
}

/// Damage in a bulk table that the night does not read (the journal) is found by the whole-file
/// check: asked for (`--full-check`), when the last whole check is 7 days old, when the last
/// process left the ledger open, and by `ledger check`; and a whole page overwritten is found
/// as well as a single byte.
#[test]
fn damage_anywhere_is_found_by_the_whole_file_check_when_due() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let site = Site::new();
    flagged_member(&site, &f);
    assert!(site.run(&[]).status.success());
    let ledger = site.p("ledger.sqlite");
    let l = ledger.to_str().unwrap().to_owned();
    let pristine = std::fs::read(&ledger).unwrap();
    let wal = site.p("ledger.sqlite-wal");
    empty_inbox(&site);
    let before = site.outbox_files();

    // asked for
    flip_root_page_byte(&ledger, "journal_line");
    let damaged = std::fs::read(&ledger).unwrap();
    let o = site.run(&["-v", "--as-of", "20261121", "--full-check"]);
    assert_damaged_and_nothing_published(&site, &o, &before);
    assert!(String::from_utf8_lossy(&o.stderr).contains("asked for"));
    assert_eq!(ledger_cmd(&["check", "--ledger", &l]).status.code(), Some(3));

    // due: the last whole-file check on record is 8 days old
    std::fs::write(&ledger, &damaged).unwrap();
    {
        let c = rusqlite::Connection::open(&ledger).unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
        let n = c
            .execute("UPDATE ledger_check SET checked_at = checked_at - 8 * 86400", [])
            .unwrap();
        assert_eq!(n, 1, "the first run recorded its whole-file check");
    }
    let o = site.run(&["-v", "--as-of", "20261121"]);
    assert_damaged_and_nothing_published(&site, &o, &before);
    assert!(String::from_utf8_lossy(&o.stderr).contains("days old"));

    // left open: the WAL of a process that did not close the ledger is still there
    std::fs::write(&ledger, &damaged).unwrap();
    std::fs::write(&wal, b"").unwrap();
    let o = site.run(&["-v", "--as-of", "20261121"]);
    assert_damaged_and_nothing_published(&site, &o, &before);
    assert!(String::from_utf8_lossy(&o.stderr).contains("did not close it"));

    // a whole page overwritten in the middle of the file
    let mut bytes = pristine.clone();
    let page = 4096;
    assert!(bytes.len() >= 4 * page, "{} bytes", bytes.len());
    for b in &mut bytes[2 * page..3 * page] {
        *b = 0xA5;
    }
    std::fs::write(&ledger, &bytes).unwrap();
    std::fs::remove_file(&wal).ok();
    let o = site.run(&["--as-of", "20261121", "--full-check"]);
    assert_damaged_and_nothing_published(&site, &o, &before);
    assert_eq!(ledger_cmd(&["check", "--ledger", &l]).status.code(), Some(3));

    // the sound ledger back: the whole check passes and is recorded, `ledger check` records its own
    std::fs::write(&ledger, &pristine).unwrap();
    let o = site.run(&["-v", "--as-of", "20261121", "--full-check"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("scope=\"whole file\""));
    let o = site.run(&["-v", "--as-of", "20261122"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("all but the bulk tables"),
        "not due again right after a whole-file check"
    );
    assert_eq!(ledger_cmd(&["check", "--ledger", &l]).status.code(), Some(0));
    let c = rusqlite::Connection::open(&ledger).unwrap();
    let how: String = c
        .query_row("SELECT how FROM ledger_check WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(how, "integrity_check");
}

/// A dry run checks like any run but records nothing in the ledger.
#[test]
fn a_dry_run_does_not_record_its_whole_file_check() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let site = Site::new();
    flagged_member(&site, &f);
    assert!(site.run(&[]).status.success());
    let ledger = site.p("ledger.sqlite");
    let at = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT checked_at FROM ledger_check", [], |r| r.get(0))
            .unwrap()
    };
    {
        let c = rusqlite::Connection::open(&ledger).unwrap();
        c.execute("UPDATE ledger_check SET checked_at = 1000", []).unwrap();
    }
    empty_inbox(&site);
    let o = site.run(&["-v", "--as-of", "20261121", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("days old"));
    assert_eq!(at(&rusqlite::Connection::open(&ledger).unwrap()), 1000);
    let o = site.run(&["--as-of", "20261121"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(at(&rusqlite::Connection::open(&ledger).unwrap()) > 1000);
}

#[test]
fn a_backup_is_a_checked_private_copy_and_never_replaces_a_file() {
    let f = Files {
        format: Format::Xml,
        encoding: TextEncoding::ShiftJis,
    };
    let site = Site::new();
    flagged_member(&site, &f);
    assert!(site.run(&[]).status.success());
    let (l, b) = (site.p("ledger.sqlite"), site.p("backup.sqlite"));
    let o = ledger_cmd(&["backup", "--ledger", l.to_str().unwrap(), "--to", b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&b).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(
        ledger_cmd(&["check", "--ledger", b.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let o = ledger_cmd(&["backup", "--ledger", l.to_str().unwrap(), "--to", b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "refuses to replace");
    // restored in place of a lost ledger, the next run goes on from it
    std::fs::remove_file(&l).unwrap();
    std::fs::copy(&b, &l).unwrap();
    std::fs::remove_dir_all(site.inbox()).unwrap();
    std::fs::create_dir_all(site.inbox()).unwrap();
    let o = site.run(&["--as-of", "20261121"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let c = rusqlite::Connection::open(&l).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM flag WHERE flag_type = '3'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

/// Item 5: run ids are chained to the ledger's previous run, and a published folder is never
/// replaced (the committed run is published once the foreign folder is moved aside).
#[test]
fn a_published_folder_is_never_replaced_and_run_ids_are_chained() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    // an empty inbox on the same day: a new ledger and one with a history get different ids
    let a = Site::new();
    flagged_member(&a, &f);
    let (b, c) = (Site::new(), Site::new());
    flagged_member(&b, &f);
    assert!(b.run(&["--as-of", "20261110"]).status.success());
    for s in [&b, &c] {
        std::fs::remove_dir_all(s.inbox()).ok();
        std::fs::create_dir_all(s.inbox()).unwrap();
    }
    let (oc, ob) = (c.run(&["--as-of", "20261201"]), b.run(&["--as-of", "20261201"]));
    assert!(oc.status.success() && ob.status.success());
    assert_ne!(c.report("")["run_id"], b.report("")["run_id"], "chained to b's history");

    // a folder at outbox/<run-id> that this ledger did not publish
    let o = a.run(&["--dry-run"]);
    assert!(o.status.success());
    let id = a.report("-dry-run")["run_id"].as_str().unwrap().to_owned();
    let foreign = a.p("outbox").join(&id);
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("SubscriberLinkage_other.csv"), b"not ours").unwrap();
    let o = a.run(&[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refusing to replace"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read(foreign.join("SubscriberLinkage_other.csv")).unwrap(),
        b"not ours"
    );
    // moved aside, the next start publishes the committed run
    std::fs::rename(&foreign, a.p("aside")).unwrap();
    std::fs::remove_dir_all(a.inbox()).unwrap();
    std::fs::create_dir_all(a.inbox()).unwrap();
    let o = a.run(&["--as-of", "20261202"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_dir(&foreign).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("SubscriberLinkage_00131045")
    }));
}

/// A new ledger is made aside and renamed into place: a crash while creating it leaves no empty
/// file at the ledger's path (which every later run would refuse), only a leftover the next
/// `--init-ledger` removes.
#[test]
fn a_new_ledger_appears_whole_and_leftovers_of_a_crashed_creation_are_removed() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let site = Site::new();
    flagged_member(&site, &f);
    std::fs::write(site.p("ledger.sqlite.init-99999"), b"").unwrap();
    let o = site.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!site.p("ledger.sqlite.init-99999").exists());
    assert!(std::fs::metadata(site.p("ledger.sqlite")).unwrap().len() > 0);
    let left: Vec<String> = std::fs::read_dir(site.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".init-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
