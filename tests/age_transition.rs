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
    assert!(union.run(&[]).status.success());
    // nothing known yet: R13 inquires and withholds the future-dated registration
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
