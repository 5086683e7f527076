//! The `run` command end to end, driving the real binary on real files in every format and
//! encoding: carries (R3), the invariant (R4), pending flags (R7), idempotence (R10), dry run
//! (R11), crash safety (R12), determinism across thread counts, privacy.

mod common;
use common::*;
use nhi_linkage::domain::FileKind;
use nhi_linkage::formats::{Format, TextEncoding};

const BIRTH_75_NEXT_MONTH: &str = "19520110"; // 75 on 2027-01-10, as-of 2026-12-01
const FLAGGED_ADDRESS: &str = "東京都新宿区西新宿九丁目９番９号秘匿荘";

/// Run 1 (国保): a member enrolled and flagged. Run 2 (後期): her registration, future-dated.
fn kokuho_then_kouki(site: &Site, f: &Files) -> (String, String) {
    let mn = my_number(12345678);
    let k_kokuho = key(1);
    let k_kouki = key(500001);
    write_file(
        &site.inbox(),
        "SubscriberChange_kokuho",
        FileKind::SubscriberChange,
        f,
        KOKUHO,
        "KOKUHO-0001",
        "20261110230000",
        &[acquisition(
            KOKUHO,
            &k_kokuho,
            Some(&mn),
            "1001",
            BIRTH_75_NEXT_MONTH,
            "20100401",
            "03",
            "山田　花子",
        )],
    );
    write_file(
        &site.inbox(),
        "FlagChange_kokuho",
        FileKind::FlagChange,
        f,
        KOKUHO,
        "KOKUHO-FLAG-0001",
        "20261110230100",
        &[
            flag_set(KOKUHO, &k_kokuho, "3", "2", "20261110090000"),
            flag_set(KOKUHO, &k_kokuho, "2", "", "20261110090000"),
        ],
    );
    (k_kokuho, k_kouki)
}

#[test]
fn age_transition_carry_in_every_format_and_encoding() {
    for (format, encoding) in VARIANTS {
        let site = Site::new();
        let f = Files { format, encoding };
        let (_, k_kouki) = kokuho_then_kouki(&site, &f);
        let args = [
            "--output-format",
            fmt_arg(format),
            "--output-encoding",
            enc_arg(encoding),
        ];
        let o = site.run(&args);
        assert!(
            o.status.success(),
            "{format:?}/{encoding:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let kokuho = subscriber_linkage_for(&site, "00131045").expect("国保 linkage");
        assert_eq!(
            control_of(&kokuho, &key(1)).unwrap(),
            ("2".into(), "1".into(), "0".into())
        );

        // the union registers her ahead of time; its file does not state the flag
        std::fs::remove_dir_all(site.inbox()).unwrap();
        write_file(
            &site.inbox(),
            "SubscriberChange_kouki",
            FileKind::SubscriberChange,
            &f,
            KOUKI,
            "KOUKI-0001",
            "20261120230000",
            &[acquisition(
                KOUKI,
                &k_kouki,
                Some(&my_number(12345678)),
                "1001",
                BIRTH_75_NEXT_MONTH,
                "20270110",
                "01",
                "山田　花子",
            )],
        );
        let o = site.run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let kouki = subscriber_linkage_for(&site, KOUKI).expect("後期 linkage");
        assert_eq!(
            control_of(&kouki, &k_kouki).unwrap(),
            ("2".into(), "1".into(), "0".into()),
            "{format:?}/{encoding:?}"
        );
        let report = site.report("");
        let carries = report["carries"].as_array().unwrap();
        assert_eq!(carries.len(), 1);
        assert_eq!(carries[0]["rule"], "individual_number");
        assert_eq!(carries[0]["future_dated"], true);
        assert_eq!(
            report["worklists"]["certificate_issuance"], 1,
            "newly set 自己情報提供不可 at 後期"
        );
    }
}

#[test]
fn carry_by_resident_code_when_my_number_is_missing() {
    let site = Site::new();
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    let (_, k_kouki) = kokuho_then_kouki(&site, &f);
    assert!(site.run(&[]).status.success());
    std::fs::remove_dir_all(site.inbox()).unwrap();
    write_file(
        &site.inbox(),
        "SubscriberChange_kouki",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "KOUKI-0001",
        "20261120230000",
        &[acquisition(
            KOUKI,
            &k_kouki,
            None,
            "1001",
            BIRTH_75_NEXT_MONTH,
            "20270110",
            "02",
            "山田　花子",
        )],
    );
    assert!(site.run(&[]).status.success());
    let kouki = subscriber_linkage_for(&site, KOUKI).unwrap();
    assert_eq!(control_of(&kouki, &k_kouki).unwrap().0, "2");
    assert_eq!(site.report("")["carries"][0]["rule"], "municipality_resident_birthdate");
}

#[test]
fn ambiguous_match_is_not_carried_and_is_withheld() {
    let site = Site::new();
    let f = Files {
        format: Format::Xml,
        encoding: TextEncoding::Utf8,
    };
    // two 国保 enrollments share 宛名番号 and birthdate, neither has a My Number; one is flagged
    write_file(
        &site.inbox(),
        "SubscriberChange_kokuho",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "K1",
        "20261110230000",
        &[
            acquisition(
                KOKUHO,
                &key(1),
                None,
                "1001",
                BIRTH_75_NEXT_MONTH,
                "20100401",
                "03",
                "山田　花子",
            ),
            acquisition(
                KOKUHO,
                &key(2),
                None,
                "1001",
                BIRTH_75_NEXT_MONTH,
                "20110401",
                "03",
                "山田　花子",
            ),
        ],
    );
    write_file(
        &site.inbox(),
        "FlagChange_kokuho",
        FileKind::FlagChange,
        &f,
        KOKUHO,
        "KF1",
        "20261110230100",
        &[flag_set(KOKUHO, &key(1), "3", "1", "20261110090000")],
    );
    write_file(
        &site.inbox(),
        "SubscriberChange_kouki",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U1",
        "20261120230000",
        &[acquisition(
            KOUKI,
            &key(7),
            None,
            "1001",
            BIRTH_75_NEXT_MONTH,
            "20270110",
            "01",
            "山田　花子",
        )],
    );
    let o = site.run(&[]);
    // withheld: a critical finding a person must act on (exit 5), not a failed run
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    let report = site.report("");
    assert_eq!(report["carries"].as_array().unwrap().len(), 0);
    assert_eq!(report["worklists"]["review"], 1);
    assert_eq!(report["summary"]["withheld"], 1);
    assert_eq!(report["summary"]["unpublished"], 1);
    assert!(
        subscriber_linkage_for(&site, KOUKI).is_none(),
        "never published unflagged"
    );
}

#[test]
fn flag_before_enrollment_stays_pending_across_runs() {
    let site = Site::new();
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    write_file(
        &site.inbox(),
        "FlagChange_1",
        FileKind::FlagChange,
        &f,
        KOKUHO,
        "F1",
        "20261110230000",
        &[flag_set(KOKUHO, &key(3), "2", "", "20261110090000")],
    );
    assert!(site.run(&[]).status.success());
    let r = site.report("");
    assert_eq!(r["pending_flags"].as_array().unwrap().len(), 1);
    write_file(
        &site.inbox(),
        "SubscriberChange_1",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "S1",
        "20261111230000",
        &[acquisition(
            KOKUHO,
            &key(3),
            None,
            "2002",
            "19600101",
            "20200401",
            "03",
            "佐藤　一郎",
        )],
    );
    let o = site.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = site.report("");
    assert_eq!(r["pending_flags"].as_array().unwrap().len(), 0);
    let kokuho = subscriber_linkage_for(&site, "00131045").unwrap();
    assert_eq!(control_of(&kokuho, &key(3)).unwrap().1, "1");
}

#[test]
fn rerun_is_idempotent_and_reused_ids_are_rejected() {
    let site = Site::new();
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    kokuho_then_kouki(&site, &f);
    assert!(site.run(&[]).status.success());
    let first = site.outbox_files();
    let o = site.run(&[]);
    assert!(o.status.success());
    assert_eq!(site.outbox_files(), first, "nothing published twice");
    let r = site.report("");
    assert!(r["inputs"].as_array().unwrap().iter().all(|i| i["status"] == "skipped"));
    // same FileIdentifier, different content
    write_file(
        &site.inbox(),
        "FlagChange_kokuho",
        FileKind::FlagChange,
        &f,
        KOKUHO,
        "KOKUHO-FLAG-0001",
        "20261110230100",
        &[flag_set(KOKUHO, &key(1), "1", "", "20261110090000")],
    );
    let o = site.run(&[]);
    assert_eq!(o.status.code(), Some(1));
    let r = site.report("");
    assert!(
        r["rejects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["code"] == "E_FILE_ID_REUSED")
    );
}

#[test]
fn dry_run_changes_nothing() {
    let site = Site::new();
    let f = Files {
        format: Format::Xml,
        encoding: TextEncoding::ShiftJis,
    };
    kokuho_then_kouki(&site, &f);
    assert!(site.run(&[]).status.success());
    let ledger_before = std::fs::read(site.p("ledger.sqlite")).unwrap();
    let outbox_before = site.outbox_files();
    std::fs::remove_dir_all(site.inbox()).unwrap();
    write_file(
        &site.inbox(),
        "FlagChange_2",
        FileKind::FlagChange,
        &f,
        KOKUHO,
        "F2",
        "20261111230000",
        &[flag_set(KOKUHO, &key(1), "1", "", "20261111090000")],
    );
    let o = site.run(&["--dry-run"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(site.p("ledger.sqlite")).unwrap(), ledger_before);
    assert_eq!(site.outbox_files(), outbox_before);
    let r = site.report("-dry-run");
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["flag_changes"][0]["change"], "set");
    assert_eq!(r["flag_changes"][0]["flag_type"], "AutoResponseProhibited");
}

#[test]
fn invariant_violation_aborts_and_publishes_nothing() {
    for fault in ["writer-clear-flag", "writer-drop-carry"] {
        let site = Site::new();
        let f = Files {
            format: Format::Csv,
            encoding: TextEncoding::Utf8,
        };
        let (_, k_kouki) = kokuho_then_kouki(&site, &f);
        if fault == "writer-drop-carry" {
            assert!(site.run(&[]).status.success());
            std::fs::remove_dir_all(site.inbox()).unwrap();
            write_file(
                &site.inbox(),
                "SubscriberChange_kouki",
                FileKind::SubscriberChange,
                &f,
                KOUKI,
                "U1",
                "20261120230000",
                &[acquisition(
                    KOUKI,
                    &k_kouki,
                    Some(&my_number(12345678)),
                    "1001",
                    BIRTH_75_NEXT_MONTH,
                    "20270110",
                    "01",
                    "山田　花子",
                )],
            );
        }
        let ledger_before = std::fs::read(site.p("ledger.sqlite")).ok();
        let outbox_before = site.outbox_files();
        let o = site.run_env(&[], &[("NHI_FAILPOINT", fault)]);
        assert_eq!(
            o.status.code(),
            Some(3),
            "{fault}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("E_FLAG_WOULD_BE_CLEARED"));
        assert_eq!(site.outbox_files(), outbox_before, "{fault}: nothing published");
        if let Some(b) = ledger_before {
            assert_eq!(
                std::fs::read(site.p("ledger.sqlite")).unwrap(),
                b,
                "{fault}: nothing committed"
            );
        }
        let r = site.report("-aborted");
        assert_eq!(r["status"], "aborted");
        // the same inbox without the fault goes through
        assert!(site.run(&[]).status.success());
    }
}

#[test]
fn killed_at_any_phase_a_rerun_ends_in_the_same_state() {
    let clean = Site::new();
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    kokuho_then_kouki(&clean, &f);
    assert!(clean.run(&[]).status.success());
    let want = clean.outbox_files();
    for phase in ["after-stage", "after-commit", "after-rename"] {
        let site = Site::new();
        kokuho_then_kouki(&site, &f);
        let o = site.run_env(&[], &[("NHI_FAILPOINT", phase)]);
        assert_eq!(o.status.code(), Some(86), "{phase}");
        let o = site.run(&[]);
        assert!(o.status.success(), "{phase}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            site.outbox_files(),
            want,
            "{phase}: same outbox, nothing lost or doubled"
        );
        // and a third run applies nothing again
        let o = site.run(&[]);
        assert!(o.status.success());
        assert_eq!(site.outbox_files(), want, "{phase}");
    }
}

#[test]
fn output_is_identical_whatever_the_thread_count() {
    let mut outs = Vec::new();
    for threads in ["1", "2", "4"] {
        let site = Site::new();
        let f = Files {
            format: Format::Xml,
            encoding: TextEncoding::Utf8,
        };
        let rows: Vec<_> = (1..=60u64)
            .map(|n| {
                acquisition(
                    KOKUHO,
                    &key(n),
                    Some(&my_number(1000 + n)),
                    &format!("{}", 5000 + n),
                    "19600101",
                    "20200401",
                    "03",
                    "田中　次郎",
                )
            })
            .collect();
        write_file(
            &site.inbox(),
            "SubscriberChange_a",
            FileKind::SubscriberChange,
            &f,
            KOKUHO,
            "A",
            "20261110230000",
            &rows,
        );
        let flags: Vec<_> = (1..=60u64)
            .step_by(3)
            .map(|n| flag_set(KOKUHO, &key(n), "3", "1", "20261110090000"))
            .collect();
        write_file(
            &site.inbox(),
            "FlagChange_a",
            FileKind::FlagChange,
            &f,
            KOKUHO,
            "B",
            "20261110230100",
            &flags,
        );
        assert!(site.run(&["--threads", threads]).status.success());
        outs.push(site.outbox_files());
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
}

#[test]
fn a_second_run_on_the_same_ledger_is_refused() {
    let site = Site::new();
    std::fs::create_dir_all(site.inbox()).unwrap();
    let _held = nhi_linkage::ledger::lock(&site.p("ledger.sqlite")).unwrap();
    let o = site.run(&[]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by another"));
}

#[test]
fn no_my_number_or_flagged_address_in_reports_or_logs() {
    let site = Site::new();
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    kokuho_then_kouki(&site, &f);
    // a broken record too, so that errors are produced
    write_file(
        &site.inbox(),
        "SubscriberChange_bad",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "BAD",
        "20261110230500",
        &[acquisition(
            KOKUHO,
            &key(9),
            Some("123456789012"),
            "1001",
            "19520110",
            "20100401",
            "03",
            "山田　花子",
        )],
    );
    let o = site.run(&["-vv"]);
    let mn = my_number(12345678);
    let mut haystacks: Vec<(String, String)> = files_under(&site.p("reports"))
        .into_iter()
        .map(|(n, b)| (n, text_of(&b)))
        .collect();
    haystacks.push(("stderr".into(), String::from_utf8_lossy(&o.stderr).into_owned()));
    haystacks.push(("stdout".into(), String::from_utf8_lossy(&o.stdout).into_owned()));
    for (name, text) in haystacks {
        for secret in [mn.as_str(), "123456789012", FLAGGED_ADDRESS] {
            assert!(!text.contains(secret), "{name} leaks a secret");
        }
    }
}

/// Carries onto registrations made in an earlier run, for a 国保 flag set in this one.
fn late_carries(report: &serde_json::Value) -> u64 {
    report["carries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["via"] == "flag_after_registration")
        .count() as u64
}

#[test]
fn a_generated_delta_applies_cleanly_on_its_population() {
    let site = Site::new();
    let generate = |extra: &[&str], out: &std::path::Path| {
        let args = [&["--format", "csv", "--encoding", "shift_jis"][..], extra].concat();
        common::generate(400, "3", &args, out);
    };
    generate(&[], &site.inbox());
    let o = site.run(&["--unmappable", "replace"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    std::fs::remove_dir_all(site.inbox()).unwrap();
    generate(&["--delta", "60"], &site.inbox());
    let o = site.run_env(&["--unmappable", "replace", "--as-of", "20261202"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let r = site.report("");
    // the delta's 60 subscribers, plus registrations made earlier at the union that get a flag
    // 国保 set today (late carry, R3)
    assert_eq!(
        r["summary"]["subscribers_written"],
        60 + late_carries(&r),
        "{}",
        r["carries"]
    );
    assert_eq!(r["rejects"].as_array().unwrap().len(), 0);
}

/// `generate --delta --newcomers-from`: one delta, generated from a small population, applies
/// the same way on the small ledger and on a larger one of the same seed (the benchmark's P2
/// compares exactly these two runs): no reject, the same subscribers written. Without the option
/// its new members already exist in the larger ledger and are rejected there.
#[test]
fn a_delta_with_newcomers_after_a_larger_population_applies_alike_on_both() {
    let generate = |n: u32, extra: &[&str], out: &std::path::Path| {
        common::generate(n, "3", extra, out);
    };
    let (small, large, large_plain) = (Site::new(), Site::new(), Site::new());
    for (site, n) in [(&small, 400), (&large, 800), (&large_plain, 800)] {
        generate(n, &[], &site.inbox());
        let o = site.run(&["--unmappable", "replace"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        std::fs::remove_dir_all(site.inbox()).unwrap();
    }
    generate(400, &["--delta", "60", "--newcomers-from", "800"], &small.inbox());
    generate(400, &["--delta", "60", "--newcomers-from", "800"], &large.inbox());
    generate(400, &["--delta", "60"], &large_plain.inbox());
    let delta = |site: &Site| {
        let o = site.run(&["--unmappable", "replace", "--as-of", "20261202"]);
        (o.status.code(), site.report(""))
    };
    let (small_exit, s) = delta(&small);
    let (large_exit, l) = delta(&large);
    assert_eq!((small_exit, large_exit), (Some(0), Some(0)));
    for r in [&s, &l] {
        assert_eq!(r["rejects"].as_array().unwrap().len(), 0, "{}", r["rejects"]);
        assert_eq!(r["summary"]["subscribers_written"], 60 + late_carries(r));
    }
    assert_eq!(s["summary"]["subscribers_written"], l["summary"]["subscribers_written"]);
    let (plain_exit, p) = delta(&large_plain);
    assert_eq!(
        plain_exit,
        Some(1),
        "the plain delta's newcomers exist in the larger ledger"
    );
    assert!(!p["rejects"].as_array().unwrap().is_empty());
}

/// A generated delta also registers at the union the members whose 75th birthday enters the
/// 6-month window that day (reason 01, future-dated) and hands off the flagged ones: applied on its
/// population, every kind of change goes through without a reject and the flagged member's
/// registration is carried.
#[test]
fn a_generated_delta_registers_members_turning_75_and_carries_their_flags() {
    let generate = |seed: &str, extra: &[&str], out: &std::path::Path| -> String {
        let args = [
            &["--flagged-ratio", "0.3", "--format", "csv", "--encoding", "utf-8"][..],
            extra,
        ]
        .concat();
        common::generate(2000, seed, &args, out)
    };
    // records written per file kind, from the command's listing
    let records = |listing: &str, prefix: &str| -> u64 {
        listing
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    // a day's birthdays are few: find a seed where a flagged member turns 75 on the new day
    let scratch = tempfile::tempdir().unwrap();
    let seed = (1..=300)
        .map(|s| s.to_string())
        .find(|s| {
            let listing = generate(s, &["--delta", "100"], &scratch.path().join(s));
            records(&listing, "AgeTransitionHandoff_") > 0
        })
        .expect("a seed whose delta hands off a flagged member");

    let site = Site::new();
    generate(&seed, &[], &site.inbox());
    let o = site.run(&["--unmappable", "replace"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    std::fs::remove_dir_all(site.inbox()).unwrap();
    let listing = generate(&seed, &["--delta", "100"], &site.inbox());
    assert!(records(&listing, "SubscriberChange_39") > 0, "{listing}");
    assert!(records(&listing, "FlagChange_") > 0, "{listing}");
    let o = site.run(&["--unmappable", "replace", "--as-of", "20261202"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let r = site.report("");
    let s = &r["summary"];
    assert_eq!(r["rejects"].as_array().unwrap().len(), 0);
    assert_eq!(s["subscribers_written"], 100 + late_carries(&r));
    assert!(s["kouki_transitions_202706"].as_u64().unwrap() > 0, "{s}");
    assert!(s["handoffs_received"].as_u64().unwrap() > 0, "{s}");
    assert!(s["carries"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["withheld"], 0);
}

#[test]
fn cancellation_is_published_as_processing_code_15() {
    let site = Site::new();
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    write_file(
        &site.inbox(),
        "SubscriberChange_1",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "S1",
        "20261110230000",
        &[acquisition(
            KOKUHO,
            &key(11),
            None,
            "3001",
            "19700101",
            "20200401",
            "03",
            "小林　一",
        )],
    );
    assert!(site.run(&[]).status.success());
    std::fs::remove_dir_all(site.inbox()).unwrap();
    let cancel = row(&[
        ("ChangeType", "9"),
        ("EffectiveDate", "20261121"),
        ("InsurerNumber", KOKUHO),
        ("SubscriberKey", &key(11)),
    ]);
    write_file(
        &site.inbox(),
        "SubscriberChange_2",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "S2",
        "20261121230000",
        std::slice::from_ref(&cancel),
    );
    let o = site.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let l = subscriber_linkage_for(&site, "00131045").unwrap();
    assert!(l.lines().any(|x| x.starts_with("01,1,15,00131045,")), "{l}");
    // a second 取消 is a state conflict
    std::fs::remove_dir_all(site.inbox()).unwrap();
    write_file(
        &site.inbox(),
        "SubscriberChange_3",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "S3",
        "20261122230000",
        &[cancel],
    );
    assert_eq!(site.run(&[]).status.code(), Some(1));
    assert_eq!(site.report("")["rejects"][0]["code"], "E_STATE_CONFLICT");
}

#[test]
fn unmappable_characters_are_refused_or_replaced_never_lost() {
    for (policy, exit, mark) in [("reject", 1, false), ("replace", 0, true)] {
        let site = Site::new();
        let f = Files {
            format: Format::Csv,
            encoding: TextEncoding::Utf8,
        };
        write_file(
            &site.inbox(),
            "SubscriberChange_1",
            FileKind::SubscriberChange,
            &f,
            KOKUHO,
            "S1",
            "20261110230000",
            &[
                acquisition(
                    KOKUHO,
                    &key(21),
                    None,
                    "4001",
                    "19700101",
                    "20200401",
                    "03",
                    "𠮷田　花子",
                ),
                acquisition(
                    KOKUHO,
                    &key(22),
                    None,
                    "4002",
                    "19700101",
                    "20200401",
                    "03",
                    "吉田　太郎",
                ),
            ],
        );
        let o = site.run(&["--output-encoding", "shift_jis", "--unmappable", policy]);
        assert_eq!(o.status.code(), Some(exit), "{policy}");
        let r = site.report("");
        assert_eq!(r["worklists"]["character_identification"], 1, "{policy}");
        let l = subscriber_linkage_for(&site, "00131045").unwrap();
        assert_eq!(l.contains("●田　花子"), mark, "{policy}");
        assert!(l.contains("吉田　太郎"));
        assert!(!l.contains("&#"), "never numeric character references");
        if !mark {
            assert!(
                r["rejects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["code"] == "E_UNMAPPABLE_CHAR")
            );
            assert!(!l.contains(&key(21)), "refused, not half-written");
        }
    }
}

#[test]
fn a_person_flagged_elsewhere_goes_to_flag_confirmation_without_automatic_flags() {
    let site = Site::new();
    let f = Files {
        format: Format::Xml,
        encoding: TextEncoding::ShiftJis,
    };
    let (_, _) = kokuho_then_kouki(&site, &f);
    // the same person also joins the union by moving in (転入, reason 03): no carry (R5)
    write_file(
        &site.inbox(),
        "SubscriberChange_u",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U1",
        "20261120230000",
        &[acquisition(
            KOUKI,
            &key(600001),
            Some(&my_number(12345678)),
            "1001",
            BIRTH_75_NEXT_MONTH,
            "20261115",
            "03",
            "山田　花子",
        )],
    );
    let o = site.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = site.report("");
    assert_eq!(r["carries"].as_array().unwrap().len(), 0);
    assert_eq!(r["worklists"]["flag_confirmation"], 1);
    let l = subscriber_linkage_for(&site, KOUKI).unwrap();
    assert_eq!(
        control_of(&l, &key(600001)).unwrap(),
        ("0".into(), "0".into(), "0".into())
    );
}

#[test]
fn expired_support_measures_are_listed_never_released() {
    let site = Site::new();
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    write_file(
        &site.inbox(),
        "SubscriberChange_1",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "S1",
        "20261110230000",
        &[acquisition(
            KOKUHO,
            &key(31),
            None,
            "5001",
            "19800101",
            "20200401",
            "03",
            "中村　梅",
        )],
    );
    let mut fl = flag_set(KOKUHO, &key(31), "2", "", "20251020093000");
    fl.insert("Source", "2".into());
    fl.insert("SupportMeasureEndDate", "20261019".into());
    write_file(
        &site.inbox(),
        "FlagChange_1",
        FileKind::FlagChange,
        &f,
        KOKUHO,
        "F1",
        "20261110230100",
        &[fl],
    );
    assert!(site.run(&[]).status.success());
    let r = site.report("");
    assert_eq!(r["worklists"]["support_measure_expiry"], 1);
    let l = subscriber_linkage_for(&site, "00131045").unwrap();
    assert_eq!(control_of(&l, &key(31)).unwrap().1, "1", "still set");
}

#[test]
fn invariant_holds_on_the_handoff_path_too() {
    let site = Site::new();
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    let mut h = row(&[
        ("SourceInsurerNumber", KOKUHO),
        ("SourceSubscriberKey", &key(1)),
        ("MunicipalityCode", MUNI),
        ("ResidentCode", "1001"),
        ("Name", "山田　花子"),
        ("NameKana", "ﾔﾏﾀﾞ ﾊﾅｺ"),
        ("Sex1", "2"),
        ("Birthdate", BIRTH_75_NEXT_MONTH),
        ("AgeTransitionDate", "20270110"),
        ("SelfInfoProvisionProhibitedFlg", "1"),
        ("NonDisclosureFlg", "1"),
        ("AutoResponseProhibitedFlg", "0"),
        ("FlagSetTime", "20261101090000"),
    ]);
    h.insert("IndividualNumber", my_number(12345678));
    write_file(
        &site.inbox(),
        "AgeTransitionHandoff_1",
        FileKind::AgeTransitionHandoff,
        &f,
        KOKUHO,
        "H1",
        "20261110230000",
        &[h],
    );
    write_file(
        &site.inbox(),
        "SubscriberChange_u",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U1",
        "20261120230000",
        &[acquisition(
            KOUKI,
            &key(700001),
            Some(&my_number(12345678)),
            "1001",
            BIRTH_75_NEXT_MONTH,
            "20270110",
            "01",
            "山田　花子",
        )],
    );
    let o = site.run_env(&[], &[("NHI_FAILPOINT", "writer-drop-carry")]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(site.outbox_files().is_empty());
    let o = site.run(&[]);
    assert!(o.status.success());
    let l = subscriber_linkage_for(&site, KOUKI).unwrap();
    assert_eq!(
        control_of(&l, &key(700001)).unwrap(),
        ("1".into(), "1".into(), "0".into())
    );
    assert_eq!(site.report("")["summary"]["kouki_transitions_202701"], 1);
}

/// Bounded memory: a run whose input exceeds `--chunk-records` spills to disk and applies chunk
/// by chunk. The outbox and the reports must be byte-identical to an in-memory run, on a full
/// load and on a delta (updates, losses, flag sets and releases, 後期 registrations), and no
/// spill folder may be left behind.
#[test]
fn chunked_runs_publish_exactly_what_an_in_memory_run_publishes() {
    let mut results = Vec::new();
    for chunk in [None, Some("50"), Some("700")] {
        let site = Site::new();
        let generate = |extra: &[&str], out: &std::path::Path| {
            let args = [&["--format", "xml", "--encoding", "utf-8"][..], extra].concat();
            common::generate(500, "11", &args, out);
        };
        let args = |as_of: &'static str| {
            let mut a = vec!["--unmappable", "replace", "--as-of", as_of];
            if let Some(c) = chunk {
                a.extend(["--chunk-records", c]);
            }
            a
        };
        generate(&[], &site.inbox());
        let o = site.run(&args("20261201"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let full = site.report("");
        std::fs::remove_dir_all(site.inbox()).unwrap();
        generate(&["--delta", "120"], &site.inbox());
        let o = site.run(&args("20261202"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let delta = site.report("");
        let leftovers: Vec<_> = std::fs::read_dir(site.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".nhi-spill-"))
            .collect();
        assert!(leftovers.is_empty(), "spill folders left behind: {leftovers:?}");
        results.push((site.outbox_files(), full, delta));
    }
    assert!(
        results[0].1["summary"]["carries"].as_u64().unwrap() > 0
            || results[0].2["summary"]["carries"].as_u64().unwrap() > 0
    );
    for r in &results[1..] {
        assert_eq!(r.0.keys().collect::<Vec<_>>(), results[0].0.keys().collect::<Vec<_>>());
        for (name, bytes) in &r.0 {
            assert!(bytes == &results[0].0[name], "{name} differs when chunked");
        }
        assert_eq!(r.1, results[0].1, "full-load report differs when chunked");
        assert_eq!(r.2, results[0].2, "delta report differs when chunked");
    }
}

/// A crash while records are spilled leaves a private spill folder (personal data) beside the
/// ledger; the next run removes it and publishes what a clean run publishes.
#[test]
fn a_crash_with_spilled_records_leaves_nothing_after_the_rerun() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::ShiftJis,
    };
    let clean = Site::new();
    kokuho_then_kouki(&clean, &f);
    assert!(clean.run(&[]).status.success());
    let want = clean.outbox_files();

    let site = Site::new();
    kokuho_then_kouki(&site, &f);
    let spill_dirs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(site.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".nhi-spill-"))
            .map(|e| e.path())
            .collect()
    };
    let o = site.run_env(&["--chunk-records", "1"], &[("NHI_FAILPOINT", "after-read")]);
    assert_eq!(o.status.code(), Some(86));
    let left = spill_dirs();
    assert_eq!(left.len(), 1, "the crash leaves its spill folder");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&left[0]).unwrap().permissions().mode() & 0o777, 0o700);
        for e in std::fs::read_dir(&left[0]).unwrap() {
            let m = e.unwrap().metadata().unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
    }
    let o = site.run(&["--chunk-records", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(spill_dirs().is_empty(), "the rerun removed the leftover spill");
    assert_eq!(site.outbox_files(), want);
}
