//! The whole age-75 cycle, both encodings: 国保 ledger → extract → hand-off file → union run with a
//! future-dated registration → the 02 row carries the flags; and the registration arriving before
//! the hand-off still ends flagged once it arrives.

mod common;
use common::*;
use nhi_linkage::domain::FileKind;
use nhi_linkage::formats::{Format, TextEncoding};
use std::process::Command;

const BIRTH: &str = "19520110"; // A = 2027-01-10
const LEAP: &str = "19520229"; // A = 2027-03-01

fn kokuho_site(f: &Files) -> Site {
    let site = Site::new();
    write_file(
        &site.inbox(),
        "SubscriberChange_k",
        FileKind::SubscriberChange,
        f,
        KOKUHO,
        "K-1",
        "20261101230000",
        &[
            acquisition(
                KOKUHO,
                &key(1),
                Some(&my_number(111)),
                "1001",
                BIRTH,
                "20100401",
                "03",
                "山田　花子",
            ),
            acquisition(KOKUHO, &key(2), None, "1002", LEAP, "20100401", "03", "鈴木　梅子"),
            acquisition(
                KOKUHO,
                &key(3),
                Some(&my_number(333)),
                "1003",
                "19600101",
                "20100401",
                "03",
                "高橋　松子",
            ),
            acquisition(
                KOKUHO,
                &key(4),
                Some(&my_number(444)),
                "1004",
                "19520601",
                "20100401",
                "03",
                "田中　竹子",
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
        "20261101230100",
        &[
            flag_set(KOKUHO, &key(1), "3", "2", "20261101090000"),
            flag_set(KOKUHO, &key(1), "2", "", "20261101090000"),
            flag_set(KOKUHO, &key(2), "3", "1", "20261101090000"),
            flag_set(KOKUHO, &key(3), "2", "", "20261101090000"), // not turning 75 soon
            flag_set(KOKUHO, &key(4), "2", "", "20261101090000"), // A = 2027-06-01: outside a 3-month lead
        ],
    );
    let o = site.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    site
}

fn extract(site: &Site, f: &Files, lead: &str) -> std::process::Output {
    Command::new(BIN)
        .args([
            "age-transition",
            "extract",
            "--as-of",
            "20261201",
            "--lead-months",
            lead,
            "--format",
            fmt_arg(f.format),
            "--encoding",
            enc_arg(f.encoding),
        ])
        .arg("--ledger")
        .arg(site.p("ledger.sqlite"))
        .arg("--out")
        .arg(site.p("handoff"))
        .arg("--reports")
        .arg(site.p("reports"))
        .output()
        .unwrap()
}

#[test]
fn full_cycle_in_both_encodings() {
    for (format, encoding) in [
        (Format::Csv, TextEncoding::ShiftJis),
        (Format::Xml, TextEncoding::Utf8),
        (Format::Xml, TextEncoding::ShiftJis),
        (Format::Csv, TextEncoding::Utf8),
    ] {
        let f = Files { format, encoding };
        let kokuho = kokuho_site(&f);
        let o = extract(&kokuho, &f, "3");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let handoffs: Vec<_> = std::fs::read_dir(kokuho.p("handoff"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(handoffs.len(), 1);
        let text = text_of(&std::fs::read(&handoffs[0]).unwrap());
        assert!(
            text.contains("20270110") && text.contains("20270301"),
            "29 February → 1 March"
        );
        assert!(!text.contains(&key(3)) && !text.contains(&key(4)), "outside the window");
        // validate accepts what we wrote
        let v = Command::new(BIN).arg("validate").arg(&handoffs[0]).output().unwrap();
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

        // the union: registrations (future dated) and the hand-off in one run
        let union = Site::new();
        std::fs::create_dir_all(union.inbox()).unwrap();
        std::fs::copy(&handoffs[0], union.inbox().join(handoffs[0].file_name().unwrap())).unwrap();
        write_file(
            &union.inbox(),
            "SubscriberChange_u",
            FileKind::SubscriberChange,
            &f,
            KOUKI,
            "U-1",
            "20261120230000",
            &[
                acquisition(
                    KOUKI,
                    &key(900001),
                    Some(&my_number(111)),
                    "1001",
                    BIRTH,
                    "20270110",
                    "01",
                    "山田　花子",
                ),
                acquisition(KOUKI, &key(900002), None, "1002", LEAP, "20270301", "01", "鈴木　梅子"),
            ],
        );
        let o = union.run(&[
            "--output-format",
            fmt_arg(format),
            "--output-encoding",
            enc_arg(encoding),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let linkage = subscriber_linkage_for(&union, KOUKI).unwrap();
        assert_eq!(
            control_of(&linkage, &key(900001)).unwrap(),
            ("2".into(), "1".into(), "0".into())
        );
        assert_eq!(
            control_of(&linkage, &key(900002)).unwrap(),
            ("1".into(), "0".into(), "0".into())
        );
        let r = union.report("");
        assert_eq!(r["carries"].as_array().unwrap().len(), 2);
        assert!(r["carries"].as_array().unwrap().iter().all(|c| c["via"] == "handoff"));
    }
}

#[test]
fn registration_before_the_handoff_ends_flagged_once_it_arrives() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    let kokuho = kokuho_site(&f);
    assert!(extract(&kokuho, &f, "6").status.success());
    let union = Site::new();
    write_file(
        &union.inbox(),
        "SubscriberChange_u",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U-1",
        "20261120230000",
        &[acquisition(
            KOUKI,
            &key(900001),
            Some(&my_number(111)),
            "1001",
            BIRTH,
            "20270110",
            "01",
            "山田　花子",
        )],
    );
    // nothing known yet: R13 inquires and withholds the future-dated registration (exit 5)
    assert_eq!(union.run(&[]).status.code(), Some(5));
    assert!(
        subscriber_linkage_for(&union, KOUKI).is_none(),
        "withheld until matched"
    );
    assert_eq!(union.report("")["summary"]["withheld"], 1);
    // the hand-off arrives in the next run
    std::fs::remove_dir_all(union.inbox()).unwrap();
    std::fs::create_dir_all(union.inbox()).unwrap();
    for e in std::fs::read_dir(kokuho.p("handoff")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, union.inbox().join(p.file_name().unwrap())).unwrap();
    }
    let o = union.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = union.report("");
    assert_eq!(r["carries"].as_array().unwrap().len(), 1);
    let all: String = union
        .outbox_files()
        .into_iter()
        .filter(|(n, _)| n.contains("SubscriberLinkage"))
        .map(|(_, b)| text_of(&b))
        .collect();
    assert!(all.contains("11,39130018"), "published for the first time, flagged");
    let latest = subscriber_linkage_for(&union, KOUKI).unwrap();
    assert_eq!(
        control_of(&latest, &key(900001)).unwrap(),
        ("2".into(), "1".into(), "0".into())
    );
    assert!(
        r["pending_handoffs"].as_u64().unwrap() >= 1,
        "the 29 February hand-off waits for its registration"
    );
}

#[test]
fn missed_transitions_are_critical() {
    let f = Files {
        format: Format::Xml,
        encoding: TextEncoding::Utf8,
    };
    let site = Site::new();
    // turned 75 on 2026-11-10, still 国保 (active) the day before, flagged; no 後期 enrollment anywhere
    write_file(
        &site.inbox(),
        "SubscriberChange_k",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "K-1",
        "20261101230000",
        &[acquisition(
            KOKUHO,
            &key(5),
            Some(&my_number(555)),
            "1005",
            "19511110",
            "20100401",
            "03",
            "伊藤　桜",
        )],
    );
    write_file(
        &site.inbox(),
        "FlagChange_k",
        FileKind::FlagChange,
        &f,
        KOKUHO,
        "KF-1",
        "20261101230100",
        &[flag_set(KOKUHO, &key(5), "3", "1", "20261101090000")],
    );
    assert!(site.run(&[]).status.success());
    let o = extract(&site, &f, "6");
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    let r = site.report("extract-20261201");
    assert_eq!(r["worklists"]["missed"], 1);
}

#[test]
fn disability_route_members_are_not_listed_again() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let site = kokuho_site(&f);
    // the same ledger also holds the union (a vendor running both): key(1) already 後期 by 障害認定
    std::fs::remove_dir_all(site.inbox()).unwrap();
    write_file(
        &site.inbox(),
        "SubscriberChange_u",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U-1",
        "20261102230000",
        &[acquisition(
            KOUKI,
            &key(800001),
            Some(&my_number(111)),
            "1001",
            BIRTH,
            "20250401",
            "02",
            "山田　花子",
        )],
    );
    let o = site.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        site.report("")["carries"].as_array().unwrap().len(),
        1,
        "disability route carries too"
    );
    let o = extract(&site, &f, "6");
    assert!(o.status.success());
    let r = site.report("extract-20261201");
    assert_eq!(r["summary"]["already_kouki_by_disability"], 1);
    assert_eq!(
        r["worklists"]["upcoming_transitions"], 2,
        "the 29 February member and the June one"
    );
}

fn extract_with(site: &Site, f: &Files, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["age-transition", "extract", "--as-of", "20261201", "--lead-months", "6"])
        .args(["--format", fmt_arg(f.format), "--encoding", enc_arg(f.encoding)])
        .args(extra)
        .arg("--ledger")
        .arg(site.p("ledger.sqlite"))
        .arg("--out")
        .arg(site.p("handoff"))
        .arg("--reports")
        .arg(site.p("reports"))
        .output()
        .unwrap()
}

fn clear_inbox(site: &Site) {
    std::fs::remove_dir_all(site.inbox()).ok();
    std::fs::create_dir_all(site.inbox()).unwrap();
}

fn handoff_files(site: &Site) -> std::collections::BTreeMap<String, Vec<u8>> {
    files_under(&site.p("handoff"))
}

fn file_identifier(text: &str) -> String {
    if let Some(s) = text.find("<FileIdentifier>") {
        let rest = &text[s + "<FileIdentifier>".len()..];
        rest[..rest.find('<').unwrap()].to_owned()
    } else {
        // CSV header: H,kind,version,FileIdentifier,…
        text.lines()
            .next()
            .unwrap()
            .split(',')
            .nth(3)
            .unwrap()
            .trim_matches('"')
            .to_owned()
    }
}

/// Issue 12 item 4 (R8): two extracts on one day, a member flagged in between. Each file has a
/// FileIdentifier of its own (≤ 40 characters), the union's run applies both, and the member
/// flagged in between is carried. The same ledger state extracted again gives the same file.
#[test]
fn two_extracts_on_one_day_get_file_identifiers_of_their_own() {
    const BIRTH6: &str = "19520315"; // A = 2027-03-15
    for (format, encoding) in [(Format::Csv, TextEncoding::ShiftJis), (Format::Xml, TextEncoding::Utf8)] {
        let f = Files { format, encoding };
        let kokuho = kokuho_site(&f);
        // a member turning 75 in the window, not flagged yet
        clear_inbox(&kokuho);
        write_file(
            &kokuho.inbox(),
            "SubscriberChange_k2",
            FileKind::SubscriberChange,
            &f,
            KOKUHO,
            "K-2",
            "20261102230000",
            &[acquisition(
                KOKUHO,
                &key(6),
                Some(&my_number(666)),
                "1006",
                BIRTH6,
                "20100401",
                "03",
                "佐藤　菊子",
            )],
        );
        let o = kokuho.run(&[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = extract_with(&kokuho, &f, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let first = handoff_files(&kokuho);
        assert_eq!(first.len(), 1);
        let (first_name, first_bytes) = first.iter().next().unwrap();
        assert!(!text_of(first_bytes).contains(&key(6)), "not flagged yet");

        // the same day: key(6) gets 自己情報提供不可, and the extract runs again
        clear_inbox(&kokuho);
        write_file(
            &kokuho.inbox(),
            "FlagChange_k2",
            FileKind::FlagChange,
            &f,
            KOKUHO,
            "KF-2",
            "20261102230100",
            &[flag_set(KOKUHO, &key(6), "3", "2", "20261102090000")],
        );
        let o = kokuho.run(&[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = extract_with(&kokuho, &f, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let both = handoff_files(&kokuho);
        assert_eq!(both.len(), 2, "the first file is not overwritten: {:?}", both.keys());
        assert_eq!(both.get(first_name), Some(first_bytes));
        let (second_name, second_bytes) = both.iter().find(|(n, _)| *n != first_name).unwrap();
        assert!(text_of(second_bytes).contains(&key(6)));
        let (id1, id2) = (
            file_identifier(&text_of(first_bytes)),
            file_identifier(&text_of(second_bytes)),
        );
        assert_ne!(id1, id2, "different content, different FileIdentifier");
        for id in [&id1, &id2] {
            assert!(id.len() <= 40 && id.starts_with("ATH-00131045-20261201-"), "{id}");
        }
        for n in both.keys() {
            let v = Command::new(BIN)
                .arg("validate")
                .arg(kokuho.p("handoff").join(n))
                .output()
                .unwrap();
            assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
        }
        // deterministic: the same ledger state and options give the same file
        let o = extract_with(&kokuho, &f, &[]);
        assert!(o.status.success());
        assert_eq!(handoff_files(&kokuho), both);

        // a union that collects both files at once applies both
        {
            let union = Site::new();
            std::fs::create_dir_all(union.inbox()).unwrap();
            for (n, b) in &both {
                std::fs::write(union.inbox().join(n), b).unwrap();
            }
            write_file(
                &union.inbox(),
                "SubscriberChange_u",
                FileKind::SubscriberChange,
                &f,
                KOUKI,
                "U-1",
                "20261120230000",
                &[
                    acquisition(
                        KOUKI,
                        &key(900001),
                        Some(&my_number(111)),
                        "1001",
                        BIRTH,
                        "20270110",
                        "01",
                        "山田　花子",
                    ),
                    acquisition(
                        KOUKI,
                        &key(900006),
                        Some(&my_number(666)),
                        "1006",
                        BIRTH6,
                        "20270315",
                        "01",
                        "佐藤　菊子",
                    ),
                ],
            );
            let o = union.run(&[]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let r = union.report("");
            assert!(
                r["inputs"].as_array().unwrap().iter().all(|i| i["status"] == "applied"),
                "{r}"
            );
            assert!(r["rejects"].as_array().unwrap().is_empty(), "{r}");
            let linkage = subscriber_linkage_for(&union, KOUKI).unwrap();
            assert_eq!(
                control_of(&linkage, &key(900001)).unwrap(),
                ("2".into(), "1".into(), "0".into())
            );
            assert_eq!(
                control_of(&linkage, &key(900006)).unwrap(),
                ("2".into(), "0".into(), "0".into())
            );
        }

        // the union applies the first file with one registration, then the second with another
        let union = Site::new();
        std::fs::create_dir_all(union.inbox()).unwrap();
        std::fs::write(union.inbox().join(first_name), first_bytes).unwrap();
        write_file(
            &union.inbox(),
            "SubscriberChange_u1",
            FileKind::SubscriberChange,
            &f,
            KOUKI,
            "U-1",
            "20261120230000",
            &[acquisition(
                KOUKI,
                &key(900001),
                Some(&my_number(111)),
                "1001",
                BIRTH,
                "20270110",
                "01",
                "山田　花子",
            )],
        );
        let o = union.run(&[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        clear_inbox(&union);
        std::fs::write(union.inbox().join(second_name), second_bytes).unwrap();
        write_file(
            &union.inbox(),
            "SubscriberChange_u2",
            FileKind::SubscriberChange,
            &f,
            KOUKI,
            "U-2",
            "20261121230000",
            &[acquisition(
                KOUKI,
                &key(900006),
                Some(&my_number(666)),
                "1006",
                BIRTH6,
                "20270315",
                "01",
                "佐藤　菊子",
            )],
        );
        let o = union.run(&[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = union.report("");
        let input = r["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == second_name.as_str())
            .expect("the second hand-off is an input");
        assert_eq!(input["status"], "applied", "{r}");
        assert!(
            r["rejects"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["code"] != "E_FILE_ID_REUSED"),
            "{r}"
        );
        assert!(
            r["carries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["to_subscriber_key"] == key(900006).as_str()),
            "{r}"
        );
        let linkage = subscriber_linkage_for(&union, KOUKI).unwrap();
        assert_eq!(
            control_of(&linkage, &key(900006)).unwrap(),
            ("2".into(), "0".into(), "0".into()),
            "the member flagged between the two extracts is published flagged"
        );
    }
}

/// A flagged 国保 member who turned 75 on 2025-06-10, 18 months before the as-of date, still
/// without a 後期 enrollment.
fn long_missed_site(f: &Files) -> Site {
    let site = Site::new();
    write_file(
        &site.inbox(),
        "SubscriberChange_k",
        FileKind::SubscriberChange,
        f,
        KOKUHO,
        "K-1",
        "20261101230000",
        &[acquisition(
            KOKUHO,
            &key(7),
            Some(&my_number(777)),
            "1007",
            "19500610",
            "20100401",
            "03",
            "渡辺　楓",
        )],
    );
    write_file(
        &site.inbox(),
        "FlagChange_k",
        FileKind::FlagChange,
        f,
        KOKUHO,
        "KF-1",
        "20261101230100",
        &[flag_set(KOKUHO, &key(7), "2", "", "20261101090000")],
    );
    let o = site.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    site
}

/// Issue 12 item 8 (R8): the missed section has no default limit; `--missed-lookback-months`
/// narrows it and the report says so.
#[test]
fn missed_transitions_have_no_default_window() {
    for (format, encoding) in [(Format::Csv, TextEncoding::ShiftJis), (Format::Xml, TextEncoding::Utf8)] {
        let f = Files { format, encoding };
        let site = long_missed_site(&f);
        let o = extract_with(&site, &f, &[]);
        assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
        let r = site.report("extract-20261201");
        assert_eq!(r["worklists"]["missed"], 1, "{r}");
        assert_eq!(r["missed_window"]["narrowed"], false);
        let dir = site.report_dir("extract-20261201");
        let missed = std::fs::read_to_string(dir.join("missed.csv")).unwrap();
        assert!(missed.contains(&key(7)) && missed.contains("20250610"), "{missed}");

        // narrowed on purpose: not listed, and the report states the window
        let o = extract_with(&site, &f, &["--missed-lookback-months", "12"]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let r = site.report("extract-20261201");
        assert_eq!(r["worklists"]["missed"], 0);
        assert_eq!(r["missed_window"]["narrowed"], true);
        assert_eq!(r["missed_window"]["lookback_months"], 12);
        assert_eq!(r["missed_window"]["acquisition_dates_after"], "20251201");
        let narrowed = site.report_dir("extract-20261201");
        assert_ne!(narrowed, dir, "another extract on the same date: a folder of its own");
        assert!(dir.join("report.json").is_file(), "the first extract's report is kept");
        let html = std::fs::read_to_string(narrowed.join("report.html")).unwrap();
        assert!(html.contains("--missed-lookback-months 12") && html.contains("20251201"));
        assert!(String::from_utf8_lossy(&o.stdout).contains("NARROWED"));
        // a window that reaches the date lists it again
        let o = extract_with(&site, &f, &["--missed-lookback-months", "24"]);
        assert_eq!(o.status.code(), Some(5));
        assert_eq!(site.report("extract-20261201")["worklists"]["missed"], 1);
        // the same extract again: the same folder
        let before = std::fs::read_dir(site.p("reports")).unwrap().count();
        extract_with(&site, &f, &["--missed-lookback-months", "24"]);
        assert_eq!(std::fs::read_dir(site.p("reports")).unwrap().count(), before);
    }
}

/// Issue 12 item 11 (R8): a rejected AgeTransitionHandoff record is critical, like a rejected
/// FlagChange.
#[test]
fn rejected_handoff_records_are_critical() {
    for (format, encoding) in [(Format::Csv, TextEncoding::ShiftJis), (Format::Xml, TextEncoding::Utf8)] {
        let f = Files { format, encoding };
        let site = Site::new();
        let handoff = |k: u64, resident: &str, date: &str| {
            row(&[
                ("SourceInsurerNumber", KOKUHO),
                ("SourceSubscriberKey", &key(k)),
                ("MunicipalityCode", MUNI),
                ("ResidentCode", resident),
                ("Name", "山田　花子"),
                ("NameKana", "ﾔﾏﾀﾞ ﾊﾅｺ"),
                ("Sex1", "2"),
                ("Birthdate", BIRTH),
                ("AgeTransitionDate", date),
                ("SelfInfoProvisionProhibitedFlg", "2"),
                ("NonDisclosureFlg", "1"),
                ("AutoResponseProhibitedFlg", "0"),
                ("FlagSetTime", "20261101090000"),
            ])
        };
        write_file(
            &site.inbox(),
            "AgeTransitionHandoff_x",
            FileKind::AgeTransitionHandoff,
            &f,
            KOKUHO,
            "H-1",
            "20261110230000",
            &[handoff(1, "1001", "20270110"), handoff(2, "1002", "20270230")],
        );
        let o = site.run(&[]);
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
        let r = site.report("");
        let rejects = r["rejects"].as_array().unwrap();
        assert_eq!(rejects.len(), 1, "{r}");
        assert_eq!(rejects[0]["code"], "E_DATE");
        assert_eq!(rejects[0]["record_sequence"], 2);
        assert_eq!(rejects[0]["field"], "AgeTransitionDate");
        assert_eq!(rejects[0]["critical"], true, "a hand-off carries protections");
        let dir = std::fs::read_dir(site.p("reports"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("rejects.csv").exists())
            .unwrap();
        let csv = std::fs::read_to_string(dir.join("rejects.csv")).unwrap();
        assert!(csv.lines().nth(1).unwrap().contains(",critical,"), "{csv}");
        assert!(
            std::fs::read_to_string(dir.join("report.html"))
                .unwrap()
                .contains("CRITICAL")
        );
    }
}
