//! Flag safety v1.1 (issue 12): multi-night histories that used to lose a flag in silence or
//! abort a whole run for one person. Every scenario runs in both input syntaxes (CSV in
//! Shift_JIS, XML in UTF-8) with output in the same syntax and encoding.

mod common;
use common::*;
use nhi_linkage::domain::FileKind;
use nhi_linkage::formats::{Format, TextEncoding};
use std::collections::BTreeMap;
use std::path::PathBuf;

const BIRTH: &str = "19520110"; // 75 on 2027-01-10; as-of 2026-12-01
const FUTURE_Q: &str = "20270110";

fn syntaxes() -> [Files; 2] {
    [
        Files {
            format: Format::Csv,
            encoding: TextEncoding::ShiftJis,
        },
        Files {
            format: Format::Xml,
            encoding: TextEncoding::Utf8,
        },
    ]
}

/// One night: the inbox holds exactly `files`, the run uses the syntax of `f` for its output.
struct Night<'a> {
    site: &'a Site,
    f: &'a Files,
    n: u32,
}

impl<'a> Night<'a> {
    fn new(site: &'a Site, f: &'a Files) -> Self {
        Night { site, f, n: 0 }
    }
    /// Writes a file into a fresh inbox for the next run.
    fn file(&mut self, kind: FileKind, sender: &str, ctime: &str, rows: &[BTreeMap<&'static str, String>]) {
        self.n += 1;
        let id = format!("{}-{:03}", kind.name(), self.n);
        write_file(
            &self.site.inbox(),
            &format!("{}_{sender}_{:03}", kind.name(), self.n),
            kind,
            self.f,
            sender,
            &id,
            ctime,
            rows,
        );
    }
    /// Runs, then empties the inbox; returns (exit code, report).
    fn run(&self, as_of: &str, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec![
            "--as-of",
            as_of,
            "--output-format",
            fmt_arg(self.f.format),
            "--output-encoding",
            enc_arg(self.f.encoding),
        ];
        args.extend_from_slice(extra);
        std::fs::create_dir_all(self.site.inbox()).unwrap();
        let o = self.site.run(&args);
        let code = o.status.code().unwrap_or(-1);
        assert_ne!(
            code,
            3,
            "no run aborts for a state input can reach: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            [0, 1, 5].contains(&code),
            "exit {code}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::remove_dir_all(self.site.inbox()).unwrap();
        (code, self.site.report(""))
    }
}

/// The SubscriberLinkage text this report's run published for `insurer` (None: nothing).
fn published(site: &Site, report: &serde_json::Value, insurer: &str) -> Option<String> {
    let dir: PathBuf = site.p("outbox").join(report["run_id"].as_str().unwrap());
    let rd = std::fs::read_dir(dir).ok()?;
    for e in rd {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("SubscriberLinkage_{insurer}"))
        {
            return Some(text_of(&std::fs::read(p).unwrap()));
        }
    }
    None
}

/// ProcessingCode of subscriber `k` in a SubscriberLinkage text.
fn processing_of(linkage: &str, k: &str) -> Option<String> {
    if linkage.starts_with("H,") {
        linkage
            .lines()
            .find(|l| l.starts_with("01,") && l.split(',').nth(4) == Some(k))
            .map(|l| l.split(',').nth(2).unwrap().to_owned())
    } else {
        let pos = linkage.find(&format!("<SubscriberKey>{k}</SubscriberKey>"))?;
        let head = &linkage[..pos];
        let s = head.rfind("<ProcessingCode>")? + "<ProcessingCode>".len();
        Some(head[s..s + 2].to_owned())
    }
}

fn release(insurer: &str, k: &str, flag_type: &str, time: &str) -> BTreeMap<&'static str, String> {
    let mut r = flag_set(insurer, k, flag_type, "", time);
    r.insert("Operation", "2".into());
    r
}

fn handoff(
    source_key: &str,
    mn: Option<&str>,
    resident: &str,
    self_info: &str,
    nd: &str,
) -> BTreeMap<&'static str, String> {
    let mut r = row(&[
        ("SourceInsurerNumber", KOKUHO),
        ("SourceSubscriberKey", source_key),
        ("MunicipalityCode", MUNI),
        ("ResidentCode", resident),
        ("Name", "山田　花子"),
        ("NameKana", "ヤマダ　ハナコ"),
        ("Sex1", "2"),
        ("Birthdate", BIRTH),
        ("AgeTransitionDate", FUTURE_Q),
        ("SelfInfoProvisionProhibitedFlg", self_info),
        ("NonDisclosureFlg", nd),
        ("AutoResponseProhibitedFlg", "0"),
        ("FlagSetTime", "20261101090000"),
    ]);
    if let Some(m) = mn {
        r.insert("IndividualNumber", m.into());
    }
    r
}

fn codes(report: &serde_json::Value) -> Vec<String> {
    report["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

fn review_csv(site: &Site, report: &serde_json::Value) -> String {
    let p = site
        .p("reports")
        .join(report["run_id"].as_str().unwrap())
        .join("review.csv");
    std::fs::read_to_string(p).unwrap()
}

/// Item 1: the hand-off arrives after the union's future-dated registration, together with a
/// re-sent duplicate of that registration (rightly rejected): the carry still happens.
#[test]
fn late_handoff_with_a_rejected_duplicate_registration_still_carries() {
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let mn = my_number(4242);
        let reg = acquisition(
            KOUKI,
            &key(9001),
            Some(&mn),
            "2001",
            BIRTH,
            FUTURE_Q,
            "01",
            "山田　花子",
        );
        night.file(
            FileKind::SubscriberChange,
            KOUKI,
            "20261101230000",
            std::slice::from_ref(&reg),
        );
        let (code1, r1) = night.run("20261102", &[]);
        // nothing known yet: R13 inquires and withholds the future-dated registration (critical)
        assert_eq!(code1, 5);
        assert!(published(&site, &r1, KOUKI).is_none(), "withheld until matched");
        assert_eq!(r1["summary"]["withheld"], 1);

        night.file(FileKind::SubscriberChange, KOUKI, "20261102230000", &[reg]);
        night.file(
            FileKind::AgeTransitionHandoff,
            KOKUHO,
            "20261102230100",
            &[handoff(&key(1), Some(&mn), "2001", "2", "1")],
        );
        let (_, r2) = night.run("20261103", &[]);
        assert!(codes(&r2).contains(&"E_STATE_CONFLICT".to_owned()), "{}", r2["rejects"]);
        assert_eq!(
            r2["carries"].as_array().unwrap().len(),
            1,
            "{:?}: {}",
            f.format,
            r2["carries"]
        );
        let l2 = published(&site, &r2, KOUKI).expect("the carried registration is sent again");
        assert_eq!(
            control_of(&l2, &key(9001)).unwrap(),
            ("2".into(), "1".into(), "0".into())
        );
        // first sent now, flagged (R14: the withheld group was kept unsent)
        assert_eq!(processing_of(&l2, &key(9001)).as_deref(), Some("11"));
        assert_eq!(r2["summary"]["handoffs_matched"], 1);
    }
}

/// Item 2: pending flags apply in R1 order (effective time), not in arrival order.
#[test]
fn pending_flags_apply_in_r1_order_whatever_order_they_arrived_in() {
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let k = key(11);
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261125230000",
            &[flag_set(KOKUHO, &k, "3", "2", "20261125090000")],
        );
        let (_, r1) = night.run("20261126", &[]);
        assert_eq!(r1["pending_flags"].as_array().unwrap().len(), 1);
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261126230000",
            &[release(KOKUHO, &k, "3", "20261120090000")],
        );
        let (_, r2) = night.run("20261127", &[]);
        assert_eq!(r2["pending_flags"].as_array().unwrap().len(), 2);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261127230000",
            &[acquisition(
                KOKUHO,
                &k,
                None,
                "3001",
                "19600101",
                "20100401",
                "03",
                "佐藤　一子",
            )],
        );
        let (_, r3) = night.run("20261128", &[]);
        let l3 = published(&site, &r3, "00131045").expect("published");
        assert_eq!(
            control_of(&l3, &k).unwrap().0,
            "2",
            "{:?}: the set of 25 Nov outlives the release of 20 Nov",
            f.format
        );
        // the release (20 Nov) applied first, to a flag not yet set: a critical reject, not a loss
        assert_eq!(codes(&r3), vec!["E_STATE_CONFLICT".to_owned()]);
        assert_eq!(r3["pending_flags"].as_array().unwrap().len(), 0);
    }
}

/// Item 3 (R1a): a release older than the flag's current state, delivered late, is stale.
#[test]
fn an_older_release_delivered_late_is_stale_and_not_applied() {
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let k = key(12);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261124230000",
            &[acquisition(
                KOKUHO,
                &k,
                None,
                "3002",
                "19600101",
                "20100401",
                "03",
                "佐藤　二子",
            )],
        );
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261125230000",
            &[flag_set(KOKUHO, &k, "3", "2", "20261125090000")],
        );
        night.run("20261126", &[]);
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261120230000",
            &[release(KOKUHO, &k, "3", "20261120090000")],
        );
        let (code, r2) = night.run("20261127", &[]);
        assert_eq!(codes(&r2), vec!["E_STALE_EVENT".to_owned()], "{:?}", f.format);
        assert_eq!(r2["rejects"][0]["critical"], true);
        assert_eq!(code, 5, "a critical finding");
        assert!(review_csv(&site, &r2).contains("critical") || r2["rejects"][0]["critical"] == true);
        // nothing changed, so nothing is sent; the ledger still holds the flag
        let conn = rusqlite::Connection::open(site.p("ledger.sqlite")).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM flag WHERE subscriber_key = ?1 AND flag_type = '3'",
                [&k],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);

        // an older set after a newer release is applied (protection wins) and listed for review
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261128230000",
            &[release(KOKUHO, &k, "3", "20261128090000")],
        );
        night.run("20261129", &[]);
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261121230000",
            &[flag_set(KOKUHO, &k, "3", "1", "20261121090000")],
        );
        let (_, r4) = night.run("20261130", &[]);
        let l4 = published(&site, &r4, "00131045").expect("published");
        assert_eq!(control_of(&l4, &k).unwrap().0, "1");
        assert!(review_csv(&site, &r4).contains("R1a"), "{:?}", f.format);
    }
}

/// Item 5: a withheld ambiguous registration stays withheld when an unrelated change touches it.
#[test]
fn a_withheld_ambiguous_registration_stays_withheld_on_later_nights() {
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261110230000",
            &[
                acquisition(KOKUHO, &key(1), None, "1001", BIRTH, "20100401", "03", "山田　花子"),
                acquisition(KOKUHO, &key(2), None, "1001", BIRTH, "20110401", "03", "山田　花子"),
            ],
        );
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261110230100",
            &[flag_set(KOKUHO, &key(1), "3", "1", "20261110090000")],
        );
        night.run("20261201", &[]);
        // past-dated union registration (障害認定), two candidates, one flagged
        night.file(
            FileKind::SubscriberChange,
            KOUKI,
            "20261120230000",
            &[acquisition(
                KOUKI,
                &key(7),
                None,
                "1001",
                BIRTH,
                "20261101",
                "02",
                "山田　花子",
            )],
        );
        let (code, r1) = night.run("20261201", &[]);
        assert_eq!(code, 5);
        assert_eq!(r1["summary"]["withheld"], 1);
        assert!(published(&site, &r1, KOUKI).is_none());

        let mut upd = keys_change("2", "20261121", KOUKI, &key(7));
        upd.insert("PostNumber", "1600022".into());
        night.file(FileKind::SubscriberChange, KOUKI, "20261121230000", &[upd]);
        let (code, r2) = night.run("20261202", &[]);
        assert_eq!(code, 5, "{:?}", f.format);
        assert_eq!(r2["summary"]["withheld"], 1);
        assert!(published(&site, &r2, KOUKI).is_none(), "never published unflagged");
        assert!(review_csv(&site, &r2).contains(&key(7)));

        // an empty night retries it and still withholds it (R14: unsent, listed)
        let (code, r3) = night.run("20261203", &[]);
        assert_eq!(code, 5);
        assert_eq!(r3["summary"]["unpublished"], 1);
        assert!(published(&site, &r3, KOUKI).is_none());
    }
}

/// Item 7 (R14): a refused update never resets "published"; a refused first registration is
/// sent by a later run.
#[test]
fn a_refused_group_keeps_its_processing_code_and_is_sent_later() {
    // Shift_JIS output refuses 𠮷; the input is UTF-8 (CSV and XML)
    for format in [Format::Csv, Format::Xml] {
        let f = Files {
            format,
            encoding: TextEncoding::Utf8,
        };
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let sjis = |n: &Night, as_of: &str, extra: &[&str]| {
            let mut a = vec!["--output-encoding", "shift_jis"];
            a.extend_from_slice(extra);
            let mut args = vec!["--as-of", as_of, "--output-format", fmt_arg(n.f.format)];
            args.extend(a);
            std::fs::create_dir_all(n.site.inbox()).unwrap();
            let o = n.site.run(&args);
            std::fs::remove_dir_all(n.site.inbox()).unwrap();
            (o.status.code().unwrap(), n.site.report(""))
        };
        let k = key(21);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261120230000",
            &[acquisition(
                KOKUHO,
                &k,
                None,
                "4001",
                "19600101",
                "20100401",
                "03",
                "吉田　花子",
            )],
        );
        let (_, r1) = sjis(&night, "20261121", &[]);
        assert_eq!(
            processing_of(&published(&site, &r1, "00131045").unwrap(), &k).as_deref(),
            Some("11")
        );
        let upd = |name: &str| {
            let mut r = keys_change("2", "20261122", KOKUHO, &k);
            r.insert("Name", name.to_owned());
            r
        };
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261122230000",
            &[upd("𠮷田　花子")],
        );
        let (code, r2) = sjis(&night, "20261123", &[]);
        assert_eq!(code, 1);
        assert!(codes(&r2).contains(&"E_UNMAPPABLE_CHAR".to_owned()));
        assert_eq!(r2["summary"]["unpublished"], 1);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261123230000",
            &[upd("吉田　花子")],
        );
        let (_, r3) = sjis(&night, "20261124", &[]);
        assert_eq!(
            processing_of(&published(&site, &r3, "00131045").unwrap(), &k).as_deref(),
            Some("12"),
            "{format:?}: the server holds the registration since night 1"
        );
        assert_eq!(r3["summary"]["unpublished"], 0);

        // refused at its first registration, sent by a later run with nothing in the inbox
        let k2 = key(22);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261124230000",
            &[acquisition(
                KOKUHO,
                &k2,
                None,
                "4002",
                "19600101",
                "20100401",
                "03",
                "𠮷川　一郎",
            )],
        );
        let (_, r4) = sjis(&night, "20261125", &[]);
        assert!(published(&site, &r4, "00131045").is_none_or(|l| control_of(&l, &k2).is_none()));
        assert_eq!(r4["summary"]["unpublished"], 1);
        let (_, r5) = sjis(&night, "20261126", &["--unmappable", "replace"]);
        let l5 = published(&site, &r5, "00131045").expect("sent by the next run");
        assert_eq!(processing_of(&l5, &k2).as_deref(), Some("11"));
        assert!(l5.contains('●'));
        assert_eq!(r5["summary"]["unpublished"], 0);
    }
}

/// Item 10: states input can reach withhold one group, never the whole run.
#[test]
fn reachable_unsafe_states_withhold_one_group_and_the_rest_publishes() {
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let mn = my_number(777);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261110230000",
            &[
                acquisition(
                    KOKUHO,
                    &key(1),
                    Some(&mn),
                    "5001",
                    BIRTH,
                    "20100401",
                    "03",
                    "山田　花子",
                ),
                acquisition(KOKUHO, &key(3), None, "5003", BIRTH, "20100401", "03", "田中　三郎"),
            ],
        );
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261110230100",
            &[
                flag_set(KOKUHO, &key(1), "3", "2", "20261110090000"),
                flag_set(KOKUHO, &key(3), "2", "", "20261110090000"),
            ],
        );
        night.run("20261201", &[]);
        // the union registers key 1's person (carried) and, with reason 03, key 3's person
        night.file(
            FileKind::SubscriberChange,
            KOUKI,
            "20261120230000",
            &[
                acquisition(KOUKI, &key(101), Some(&mn), "5001", BIRTH, FUTURE_Q, "01", "山田　花子"),
                acquisition(KOUKI, &key(103), None, "5003", BIRTH, FUTURE_Q, "03", "田中　三郎"),
                acquisition(
                    KOUKI,
                    &key(104),
                    None,
                    "5004",
                    "19400101",
                    "20261101",
                    "04",
                    "鈴木　四郎",
                ),
            ],
        );
        let (code, r1) = night.run("20261201", &[]);
        assert_eq!(code, 5, "{:?}", f.format);
        let l1 = published(&site, &r1, KOUKI).expect("the others are published");
        assert_eq!(control_of(&l1, &key(101)).unwrap().0, "2");
        assert!(control_of(&l1, &key(104)).is_some());
        assert!(
            control_of(&l1, &key(103)).is_none(),
            "reason-03 future registration of a flagged person withheld"
        );
        assert_eq!(r1["summary"]["withheld"], 1);

        // the union releases the carried flag before the acquisition date while 国保 holds it
        night.file(
            FileKind::FlagChange,
            KOUKI,
            "20261121230000",
            &[release(KOUKI, &key(101), "3", "20261121090000")],
        );
        let (code, r2) = night.run("20261201", &[]);
        assert_eq!(code, 5);
        assert!(published(&site, &r2, KOUKI).is_none_or(|l| control_of(&l, &key(101)).is_none()));
        assert_eq!(r2["summary"]["withheld"], 2);

        // a 取消 of the withheld reason-03 registration is never a violation: nothing to delete
        // (it was never published), and the union sets the flag on key 101 again: published
        let cancel = keys_change("9", "20261122", KOUKI, &key(103));
        night.file(FileKind::SubscriberChange, KOUKI, "20261122230000", &[cancel]);
        night.file(
            FileKind::FlagChange,
            KOUKI,
            "20261122230100",
            &[flag_set(KOUKI, &key(101), "3", "2", "20261122090000")],
        );
        let (code, r3) = night.run("20261201", &[]);
        assert_eq!(code, 0, "{}", r3["worklists"]);
        let l3 = published(&site, &r3, KOUKI).expect("published");
        assert_eq!(control_of(&l3, &key(101)).unwrap().0, "2");
        assert_eq!(r3["summary"]["unpublished"], 0);
    }
}

/// Item 10, last case: a 取消 of a published, unflagged future registration once a flagged
/// hand-off is known goes out as ProcessingCode 15.
#[test]
fn deleting_an_unflagged_future_registration_is_never_a_violation() {
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let mn = my_number(888);
        night.file(
            FileKind::SubscriberChange,
            KOUKI,
            "20261101230000",
            &[acquisition(
                KOUKI,
                &key(201),
                Some(&mn),
                "6001",
                BIRTH,
                FUTURE_Q,
                "03",
                "山田　花子",
            )],
        );
        night.run("20261102", &[]);
        night.file(
            FileKind::AgeTransitionHandoff,
            KOKUHO,
            "20261102230000",
            &[handoff(&key(2), Some(&mn), "6001", "1", "0")],
        );
        let cancel = keys_change("9", "20261103", KOUKI, &key(201));
        night.file(FileKind::SubscriberChange, KOUKI, "20261103230000", &[cancel]);
        let (code, r) = night.run("20261104", &[]);
        assert_ne!(code, 3);
        let l = published(&site, &r, KOUKI).expect("the delete is published");
        assert_eq!(processing_of(&l, &key(201)).as_deref(), Some("15"), "{:?}", f.format);
    }
}

/// Item 11: a 国保 flag set after the union's registration is carried; a mistyped My Number on a
/// flagged resident match goes to critical review; a flag narrowed to one InfoCode goes to flag
/// confirmation.
#[test]
fn flags_never_passed_over_in_silence() {
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let mn = my_number(999);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261110230000",
            &[
                acquisition(
                    KOKUHO,
                    &key(1),
                    Some(&mn),
                    "7001",
                    BIRTH,
                    "20100401",
                    "03",
                    "山田　花子",
                ),
                acquisition(
                    KOKUHO,
                    &key(2),
                    Some(&my_number(1000)),
                    "7002",
                    BIRTH,
                    "20100401",
                    "03",
                    "川上　二子",
                ),
                acquisition(KOKUHO, &key(3), None, "7003", BIRTH, "20100401", "03", "森　三子"),
            ],
        );
        let mut narrowed = flag_set(KOKUHO, &key(3), "2", "", "20261110090000");
        narrowed.insert("InfoCode", "TM00000000000001".into());
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261110230100",
            &[flag_set(KOKUHO, &key(2), "2", "", "20261110090000"), narrowed],
        );
        night.run("20261201", &[]);
        night.file(
            FileKind::SubscriberChange,
            KOUKI,
            "20261120230000",
            &[
                acquisition(KOUKI, &key(101), Some(&mn), "7001", BIRTH, FUTURE_Q, "01", "山田　花子"),
                // a mistyped My Number, same 宛名番号 and birthdate as the flagged key 2
                acquisition(
                    KOUKI,
                    &key(102),
                    Some(&my_number(1001)),
                    "7002",
                    BIRTH,
                    "20261101",
                    "02",
                    "川上　二子",
                ),
                acquisition(KOUKI, &key(103), None, "7003", BIRTH, "20261101", "02", "森　三子"),
            ],
        );
        let (code, r1) = night.run("20261201", &[]);
        assert_eq!(code, 5, "{}", r1["worklists"]);
        let review = review_csv(&site, &r1);
        assert!(
            review.lines().any(|l| l.contains(&key(102)) && l.ends_with("critical")),
            "{review}"
        );
        let confirm = std::fs::read_to_string(
            site.p("reports")
                .join(r1["run_id"].as_str().unwrap())
                .join("flag_confirmation.csv"),
        )
        .unwrap();
        assert!(
            confirm
                .lines()
                .any(|l| l.contains(&key(103)) && l.contains("TM00000000000001")),
            "{confirm}"
        );

        // 国保 sets 自己情報提供不可 on key 1 after the union registered her: carried now
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261121230000",
            &[flag_set(KOKUHO, &key(1), "3", "1", "20261121090000")],
        );
        let (_, r2) = night.run("20261201", &[]);
        assert_eq!(r2["carries"].as_array().unwrap().len(), 1, "{:?}", f.format);
        assert_eq!(r2["carries"][0]["via"], "flag_after_registration");
        let l2 = published(&site, &r2, KOUKI).expect("the registration is sent again");
        assert_eq!(control_of(&l2, &key(101)).unwrap().0, "1");
    }
}

/// Item 15: FlagLinkage dates a release with the release's own EffectiveTime.
#[test]
fn flag_linkage_dates_a_release_with_its_own_time() {
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let k = key(31);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261109230000",
            &[acquisition(
                KOKUHO,
                &k,
                None,
                "8001",
                "19600101",
                "20100401",
                "03",
                "佐藤　一子",
            )],
        );
        let mut set = flag_set(KOKUHO, &k, "1", "", "20261110090000");
        set.insert("InfoCode", "TM00000000000002".into());
        night.file(FileKind::FlagChange, KOKUHO, "20261110230000", &[set]);
        night.run("20261111", &[]);
        let mut rel = release(KOKUHO, &k, "1", "20261111090000");
        rel.insert("InfoCode", "TM00000000000002".into());
        night.file(FileKind::FlagChange, KOKUHO, "20261111230000", &[rel]);
        let (_, r) = night.run("20261112", &[]);
        let dir = site.p("outbox").join(r["run_id"].as_str().unwrap());
        let flag_linkage = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("FlagLinkage_"))
            .expect("a FlagLinkage file");
        let text = text_of(&std::fs::read(flag_linkage).unwrap());
        assert!(text.contains("20261111090000"), "{:?}: {text}", f.format);
        assert!(!text.contains("20261110090000"), "{text}");
    }
}

fn fukuhon(op: &str, date: &str, k: &str, info: &str, disclosure: &str) -> BTreeMap<&'static str, String> {
    row(&[
        ("Operation", op),
        ("EffectiveDate", date),
        ("InsurerNumber", KOKUHO),
        ("SubscriberKey", k),
        ("InfoCode", info),
        ("DisclosureClassification", disclosure),
    ])
}

/// The FukuhonLinkage rows this report's run published.
fn fukuhon_rows(site: &Site, report: &serde_json::Value) -> Vec<nhi_linkage::formats::linkage::FukuhonRow> {
    use nhi_linkage::formats::linkage_reader::{LinkageItem, LinkageReader};
    let dir = site.p("outbox").join(report["run_id"].as_str().unwrap());
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("FukuhonLinkage_") {
            for item in LinkageReader::open(&p).unwrap() {
                if let LinkageItem::Fukuhon(r) = item.unwrap() {
                    out.push(r);
                }
            }
        }
    }
    out
}

/// Item 14 (R2): FukuhonLinkage states the 副本 after the run with the Operation the server needs.
#[test]
fn fukuhon_linkage_states_the_net_state_per_info_code() {
    const Q: &str = "TM00000000000004"; // 特定健診情報: 001 date (required), 002 text
    const H: &str = "TM00000000000002"; // 高額療養費: 001, 002 digits (required)
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let k = key(41);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261109230000",
            &[acquisition(
                KOKUHO,
                &k,
                None,
                "9001",
                "19600101",
                "20100401",
                "03",
                "佐藤　一子",
            )],
        );
        night.run("20261110", &[]);
        night.n += 1;
        write_file_with_items(
            &site.inbox(),
            "Fukuhon_1",
            FileKind::Fukuhon,
            &f,
            KOKUHO,
            "FUKU-1",
            "20261110230000",
            &[
                // registered (不開示) and updated in one run: one row, Operation 1, the update's items
                (
                    fukuhon("1", "20261110", &k, Q, "1"),
                    vec![("001", "20261001"), ("002", "所見なし")],
                ),
                (fukuhon("2", "20261110", &k, Q, ""), vec![("001", "20261002")]),
                // registered and deleted in one run: no row
                (
                    fukuhon("1", "20261110", &k, H, ""),
                    vec![("001", "202610"), ("002", "1000")],
                ),
                (
                    fukuhon("3", "20261110", &k, H, ""),
                    vec![("001", "202610"), ("002", "1000")],
                ),
            ],
        );
        let (_, r1) = night.run("20261111", &[]);
        let rows = fukuhon_rows(&site, &r1);
        assert_eq!(rows.len(), 1, "{:?}: {rows:?}", f.format);
        assert_eq!(rows[0].operation.code(), "1");
        assert_eq!(rows[0].disclosure.map(|d| d.code()), Some("1"));
        assert_eq!(
            rows[0].items,
            vec![
                ("001".to_owned(), "20261002".to_owned()),
                ("002".to_owned(), "所見なし".to_owned())
            ]
        );

        // a later 更新 without DisclosureClassification keeps 不開示; then a 削除: Operation 3
        write_file_with_items(
            &site.inbox(),
            "Fukuhon_2",
            FileKind::Fukuhon,
            &f,
            KOKUHO,
            "FUKU-2",
            "20261111230000",
            &[(fukuhon("2", "20261111", &k, Q, ""), vec![("001", "20261003")])],
        );
        let (_, r2) = night.run("20261112", &[]);
        let rows = fukuhon_rows(&site, &r2);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].operation.code(), "2");
        assert_eq!(
            rows[0].disclosure.map(|d| d.code()),
            Some("1"),
            "an absent field keeps the ledger's value"
        );
        write_file_with_items(
            &site.inbox(),
            "Fukuhon_3",
            FileKind::Fukuhon,
            &f,
            KOKUHO,
            "FUKU-3",
            "20261112230000",
            &[(fukuhon("3", "20261112", &k, Q, ""), vec![("001", "20261003")])],
        );
        let (_, r3) = night.run("20261113", &[]);
        let rows = fukuhon_rows(&site, &r3);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].operation.code(), "3");
    }
}

/// Item 6 (R6): a 開示 is refused when 不開示該当 is set later in the same run.
#[test]
fn a_disclosure_is_refused_when_non_disclosure_is_set_later_in_the_run() {
    const Q: &str = "TM00000000000004";
    for f in syntaxes() {
        let site = Site::new();
        let mut night = Night::new(&site, &f);
        let k = key(51);
        night.file(
            FileKind::SubscriberChange,
            KOKUHO,
            "20261109230000",
            &[acquisition(
                KOKUHO,
                &k,
                None,
                "9101",
                "19600101",
                "20100401",
                "03",
                "佐藤　五子",
            )],
        );
        night.run("20261110", &[]);
        write_file_with_items(
            &site.inbox(),
            "Fukuhon_1",
            FileKind::Fukuhon,
            &f,
            KOKUHO,
            "FUKU-1",
            "20261120230000",
            &[(fukuhon("1", "20261120", &k, Q, "0"), vec![("001", "20261001")])],
        );
        night.file(
            FileKind::FlagChange,
            KOKUHO,
            "20261121230000",
            &[flag_set(KOKUHO, &k, "2", "", "20261121090000")],
        );
        let (_, r) = night.run("20261122", &[]);
        assert_eq!(codes(&r), vec!["E_DISCLOSURE_CONFLICT".to_owned()], "{:?}", f.format);
        assert!(fukuhon_rows(&site, &r).is_empty(), "no 開示 is sent");
        let l = published(&site, &r, "00131045").unwrap();
        assert_eq!(control_of(&l, &k).unwrap().1, "1");
    }
}

/// Schema v1 ledgers are upgraded in place and keep working.
#[test]
fn a_schema_v1_ledger_is_upgraded_in_place() {
    let site = Site::new();
    {
        let conn = rusqlite::Connection::open(site.p("ledger.sqlite")).unwrap();
        conn.execute_batch(nhi_linkage::ledger::SCHEMA_V1_SQL).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO pending_flag (insurer, subscriber_key, info_code, flag_type, operation, reason_code, source,
                effective_time, support_measure_end, file, record_sequence, file_order, run_id)
             VALUES ('00131045', ?1, '', '3', '1', '2', '1', '20261101090000', NULL, 'old.xml', 1, 0, 'r0')",
            [key(61)],
        )
        .unwrap();
    }
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    let mut night = Night::new(&site, &f);
    night.file(
        FileKind::SubscriberChange,
        KOKUHO,
        "20261109230000",
        &[acquisition(
            KOKUHO,
            &key(61),
            None,
            "9201",
            "19600101",
            "20100401",
            "03",
            "佐藤　六子",
        )],
    );
    let (code, r) = night.run("20261110", &[]);
    assert_eq!(code, 0);
    assert_eq!(r["summary"]["pending_flags_applied"], 1);
    let l = published(&site, &r, "00131045").unwrap();
    assert_eq!(control_of(&l, &key(61)).unwrap().0, "2");
    let conn = rusqlite::Connection::open(site.p("ledger.sqlite")).unwrap();
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, nhi_linkage::ledger::SCHEMA_VERSION);
}
