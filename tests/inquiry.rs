//! R13 registration inquiry, two ledgers (国保 and the union apart), every syntax and encoding:
//! the union's run inquires 01/02 registrations it cannot match, withholds the future-dated ones
//! and lists the past-dated ones; `age-transition answer` answers from the 国保 ledger (flags, all
//! zero, or all zero with no SourceSubscriberKey for an unknown person) without changing it; the
//! union's next run carries what the answer says and publishes what it withheld.

mod common;
use common::*;
use nhi_linkage::domain::FileKind;
use nhi_linkage::formats::{Format, TextEncoding};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const U_DISABLED: u64 = 900010; // 中村: 障害認定 (02), past-dated, 不開示該当 at 国保
const U_FUTURE_FLAGGED: u64 = 900012; // 01, future-dated, both flags at 国保 (no extract ran)
const U_UNKNOWN: u64 = 900013; // 01, past-dated, unknown to 国保
const U_FUTURE_PLAIN: u64 = 900011; // 01, future-dated, at 国保 without flags

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Exit 5: completed, a registration is withheld (critical) until the 国保 side answers.
fn withheld_exit(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

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
                &key(10),
                Some(&my_number(110)),
                "2010",
                "19560520",
                "20160520",
                "04",
                "中村　節子",
            ),
            acquisition(
                KOKUHO,
                &key(11),
                Some(&my_number(111)),
                "2011",
                "19520310",
                "20120401",
                "04",
                "渡辺　清",
            ),
            acquisition(
                KOKUHO,
                &key(12),
                None,
                "2012",
                "19520320",
                "20120401",
                "04",
                "佐藤　梅子",
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
            flag_set(KOKUHO, &key(10), "2", "", "20230111100000"),
            flag_set(KOKUHO, &key(12), "3", "2", "20240101090000"),
            flag_set(KOKUHO, &key(12), "2", "", "20240101090000"),
        ],
    );
    ok(&site.run(&[]));
    site
}

fn union_registrations(site: &Site, f: &Files) {
    write_file(
        &site.inbox(),
        "SubscriberChange_u",
        FileKind::SubscriberChange,
        f,
        KOUKI,
        "U-1",
        "20261130210000",
        &[
            acquisition(
                KOUKI,
                &key(U_DISABLED),
                Some(&my_number(110)),
                "2010",
                "19560520",
                "20261116",
                "02",
                "中村　節子",
            ),
            acquisition(
                KOUKI,
                &key(U_FUTURE_PLAIN),
                Some(&my_number(111)),
                "2011",
                "19520310",
                "20270310",
                "01",
                "渡辺　清",
            ),
            acquisition(
                KOUKI,
                &key(U_FUTURE_FLAGGED),
                None,
                "2012",
                "19520320",
                "20270320",
                "01",
                "佐藤　梅子",
            ),
            acquisition(
                KOUKI,
                &key(U_UNKNOWN),
                Some(&my_number(113)),
                "2013",
                "19500402",
                "20250402",
                "01",
                "林　茂",
            ),
        ],
    );
}

/// The folder of the union's most recent run (its report folder).
fn latest_report_dir(site: &Site) -> PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(site.p("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| (std::fs::metadata(p.join("report.json")).unwrap().modified().unwrap(), p))
        .collect();
    dirs.sort();
    dirs.pop().unwrap().1
}

fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix));
    v.sort();
    v
}

fn answer(kokuho: &Site, inquiry: &Path, out: &Path) -> Output {
    Command::new(BIN)
        .args(["age-transition", "answer", "--as-of", "20261202", "--ledger"])
        .arg(kokuho.p("ledger.sqlite"))
        .arg("--inquiry")
        .arg(inquiry)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn sha(p: &Path) -> Vec<u8> {
    sha2::Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

fn validate(p: &Path) -> Output {
    Command::new(BIN).arg("validate").arg(p).output().unwrap()
}

/// Processing code and 02 row of subscriber `k` in the latest SubscriberLinkage of the union.
fn published(site: &Site, k: &str) -> Option<(String, (String, String, String))> {
    let text = subscriber_linkage_for(site, KOUKI)?;
    let control = control_of(&text, k)?;
    let code = if text.starts_with("H,") {
        text.lines()
            .find(|l| l.starts_with("01,") && l.split(',').nth(4) == Some(k))?
            .split(',')
            .nth(2)?
            .to_owned()
    } else {
        let pos = text.find(&format!("<SubscriberKey>{k}</SubscriberKey>"))?;
        let before = &text[..pos];
        let s = before.rfind("<ProcessingCode>")? + "<ProcessingCode>".len();
        before[s..s + 2].to_owned()
    };
    Some((code, control))
}

fn c(a: &str, b: &str, x: &str) -> (String, String, String) {
    (a.into(), b.into(), x.into())
}

#[test]
fn disability_route_round_trip_in_every_syntax_and_encoding() {
    for (format, encoding) in VARIANTS {
        let f = Files { format, encoding };
        let what = format!("{format:?}/{encoding:?}");
        let kokuho = kokuho_site(&f);
        let union = Site::new();
        union_registrations(&union, &f);
        let out = [
            "--output-format",
            fmt_arg(format),
            "--output-encoding",
            enc_arg(encoding),
        ];
        withheld_exit(&union.run(&out));

        // night 1: one inquiry file for the municipality, in the run's report folder
        let night1 = latest_report_dir(&union);
        let inquiries = files_starting(&night1, "AgeTransitionInquiry_");
        assert_eq!(inquiries.len(), 1, "{what}");
        let name = inquiries[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("AgeTransitionInquiry_{MUNI}_")), "{name}");
        assert!(name.ends_with(&format!(".{}", format.extension())), "{name}");
        let v = validate(&inquiries[0]);
        ok(&v);
        let vout = String::from_utf8_lossy(&v.stdout);
        assert!(
            vout.contains("AgeTransitionInquiry") && vout.contains("4 records"),
            "{what}: {vout}"
        );
        let text = text_of(&std::fs::read(&inquiries[0]).unwrap());
        assert_eq!(
            text.contains("encoding=\"Shift_JIS\"")
                || text.starts_with("H,AgeTransitionInquiry,1,") && text.lines().next().unwrap().ends_with(",1"),
            encoding == TextEncoding::ShiftJis,
            "{what}: encoding as --output-encoding"
        );
        // past-dated: published (unflagged for now) and listed; future-dated: withheld
        assert_eq!(
            published(&union, &key(U_DISABLED)),
            Some(("11".into(), c("0", "0", "0"))),
            "{what}"
        );
        assert_eq!(
            published(&union, &key(U_UNKNOWN)),
            Some(("11".into(), c("0", "0", "0"))),
            "{what}"
        );
        assert_eq!(published(&union, &key(U_FUTURE_FLAGGED)), None, "{what}: withheld");
        assert_eq!(published(&union, &key(U_FUTURE_PLAIN)), None, "{what}: withheld");
        let r = union.report("");
        assert_eq!(r["worklists"]["inquiry_awaiting"], 4, "{what}");
        assert_eq!(r["summary"]["withheld"], 2, "{what}");
        assert_eq!(r["summary"]["inquiries"], 4, "{what}");
        let awaiting = std::fs::read_to_string(night1.join("inquiry_awaiting.csv")).unwrap();
        assert_eq!(awaiting.matches(",critical,withheld").count(), 2, "{what}: {awaiting}");
        let review = std::fs::read_to_string(night1.join("review.csv")).unwrap();
        assert!(review.contains(&key(U_FUTURE_FLAGGED)) && review.contains(&key(U_FUTURE_PLAIN)));
        for f in [&awaiting, &review] {
            for n in [110, 111, 113] {
                assert!(!f.contains(&my_number(n)), "no My Number in worklists");
            }
        }

        // the 国保 side answers from its ledger, which it does not change
        let before = sha(&kokuho.p("ledger.sqlite"));
        let answers = kokuho.p("answers");
        let a = answer(&kokuho, &night1, &answers);
        ok(&a);
        assert_eq!(
            sha(&kokuho.p("ledger.sqlite")),
            before,
            "{what}: the ledger is read only"
        );
        let files = files_starting(&answers, "AgeTransitionHandoff_");
        assert_eq!(files.len(), 1, "{what}");
        assert!(files_starting(&answers, ".").is_empty(), "nothing left staged");
        ok(&validate(&files[0]));
        let atext = text_of(&std::fs::read(&files[0]).unwrap());
        assert!(atext.contains(&key(10)) && atext.contains(&key(11)) && atext.contains(&key(12)));
        assert!(
            atext.contains("20261116") && atext.contains("20270320"),
            "AgeTransitionDate = QualificationDate"
        );
        if format == Format::Csv {
            let unknown = atext.lines().find(|l| l.contains(&my_number(113))).unwrap();
            assert_eq!(unknown.split(',').nth(3), Some(""), "{what}: no SourceSubscriberKey");
            assert!(unknown.contains(",0,0,0,"), "{what}: all zero: {unknown}");
        } else {
            assert_eq!(atext.matches("<SourceSubscriberKey>").count(), 3, "{what}");
        }
        // answering the same inquiry again gives the same file (the union skips it)
        let again = kokuho.p("answers2");
        ok(&answer(&kokuho, &night1, &again));
        assert_eq!(
            std::fs::read(&files[0]).unwrap(),
            std::fs::read(&files_starting(&again, "AgeTransitionHandoff_")[0]).unwrap()
        );

        // night 2: the answer in the union's inbox
        std::fs::copy(&files[0], union.inbox().join(files[0].file_name().unwrap())).unwrap();
        let o = union.run(&[&out[..], &["--as-of", "20261202"]].concat());
        ok(&o);
        let r = union.report("");
        let carries = r["carries"].as_array().unwrap();
        assert_eq!(carries.len(), 2, "{what}: {carries:?}");
        assert_eq!(
            published(&union, &key(U_DISABLED)),
            Some(("12".into(), c("0", "1", "0"))),
            "{what}: 不開示該当 carried"
        );
        assert_eq!(
            published(&union, &key(U_FUTURE_FLAGGED)),
            Some(("11".into(), c("2", "1", "0"))),
            "{what}"
        );
        assert_eq!(
            published(&union, &key(U_FUTURE_PLAIN)),
            Some(("11".into(), c("0", "0", "0"))),
            "{what}: an all-0 answer resolves it"
        );
        assert_eq!(r["worklists"]["inquiry_answered"], 4, "{what}");
        assert_eq!(r["worklists"]["inquiry_awaiting"], 0, "{what}");
        assert_eq!(r["summary"]["withheld"], 0, "{what}");
        // answered; only the future-dated registration still lacking a protection (渡辺, March)
        // is inquired again, every night until its QualificationDate, not withheld: a flag 国保
        // sets meanwhile reaches it by the next answer
        assert_eq!(r["summary"]["inquiries"], 1, "{what}: one follow-up");
        assert_eq!(r["inquiries"].as_array().unwrap().len(), 1, "{what}");
        assert_eq!(
            r["pending_handoffs"], 0,
            "{what}: zero answers are matched, not left pending"
        );
        let follow_up = files_starting(&latest_report_dir(&union), "AgeTransitionInquiry_");
        assert_eq!(follow_up.len(), 1, "{what}");
        let text = text_of(&std::fs::read(&follow_up[0]).unwrap());
        assert!(text.contains(&key(U_FUTURE_PLAIN)), "{what}: {text}");
        for k in [U_DISABLED, U_FUTURE_FLAGGED, U_UNKNOWN] {
            assert!(!text.contains(&key(k)), "{what}: {k} is not inquired again");
        }
    }
}

#[test]
fn unanswered_registrations_are_inquired_every_night_and_stay_withheld() {
    let f = Files {
        format: Format::Xml,
        encoding: TextEncoding::Utf8,
    };
    let union = Site::new();
    union_registrations(&union, &f);
    withheld_exit(&union.run(&[]));
    // night 2: an unrelated change to the withheld registration does not publish it
    std::fs::remove_dir_all(union.inbox()).unwrap();
    write_file(
        &union.inbox(),
        "SubscriberChange_u2",
        FileKind::SubscriberChange,
        &f,
        KOUKI,
        "U-2",
        "20261201210000",
        &[row(&[
            ("ChangeType", "2"),
            ("EffectiveDate", "20261201"),
            ("InsurerNumber", KOUKI),
            ("SubscriberKey", &key(U_FUTURE_FLAGGED)),
            ("PostNumber", "1600022"),
        ])],
    );
    withheld_exit(&union.run(&["--as-of", "20261202"]));
    let r = union.report("");
    assert_eq!(r["summary"]["withheld"], 2);
    assert_eq!(r["summary"]["inquiries"], 4, "inquired again");
    assert_eq!(published(&union, &key(U_FUTURE_FLAGGED)), None);
    let night2 = latest_report_dir(&union);
    assert_eq!(files_starting(&night2, "AgeTransitionInquiry_").len(), 1);
    let awaiting = std::fs::read_to_string(night2.join("inquiry_awaiting.csv")).unwrap();
    assert!(
        awaiting
            .lines()
            .any(|l| l.contains(&key(U_FUTURE_FLAGGED)) && l.contains(",critical,withheld")),
        "{awaiting}"
    );
    let db = rusqlite::Connection::open(union.p("ledger.sqlite")).unwrap();
    let times: i64 = db
        .query_row(
            "SELECT times_inquired FROM inquiry WHERE subscriber_key = ?1",
            [key(U_FUTURE_FLAGGED)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(times, 2, "inquired on both nights");
}

#[test]
fn run_refuses_an_inquiry_file_and_answer_refuses_a_ledger_without_the_municipality() {
    let f = Files {
        format: Format::Csv,
        encoding: TextEncoding::Utf8,
    };
    let union = Site::new();
    union_registrations(&union, &f);
    withheld_exit(&union.run(&[]));
    let inquiry = files_starting(&latest_report_dir(&union), "AgeTransitionInquiry_").remove(0);
    // an inquiry in a run's inbox is a rejected file
    let other = Site::new();
    std::fs::create_dir_all(other.inbox()).unwrap();
    std::fs::copy(&inquiry, other.inbox().join(inquiry.file_name().unwrap())).unwrap();
    let o = other.run(&[]);
    assert_eq!(o.status.code(), Some(1));
    let r = other.report("");
    assert_eq!(r["inputs"][0]["status"], "rejected");
    // a ledger that holds no 国保 enrollment of the municipality must not answer zeros
    let wrong = Site::new();
    write_file(
        &wrong.inbox(),
        "SubscriberChange_k",
        FileKind::SubscriberChange,
        &f,
        KOKUHO,
        "K-1",
        "20261101230000",
        &[{
            // another municipality's member: this ledger does not serve 131041
            let mut a = acquisition(KOKUHO, &key(1), None, "1", "19600101", "20100401", "04", "北海　太郎");
            a.insert("MunicipalityCode", "011002".into());
            a
        }],
    );
    let o = wrong.run(&[]);
    assert!(o.status.code() == Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = wrong.p("answers");
    let a = answer(&wrong, &inquiry, &out);
    assert_eq!(a.status.code(), Some(1), "{}", String::from_utf8_lossy(&a.stderr));
    let err = String::from_utf8_lossy(&a.stderr);
    assert!(
        err.contains("MunicipalityCode") && err.contains("RecordSequence 1"),
        "{err}"
    );
    assert!(
        files_starting(&out, "AgeTransitionHandoff_").is_empty(),
        "no answer at all"
    );
}

#[test]
fn empty_source_subscriber_key_only_in_an_all_zero_answer() {
    for (format, encoding) in VARIANTS {
        let f = Files { format, encoding };
        let dir = tempfile::tempdir().unwrap();
        let base = |flags: [&str; 3], key_: &str| {
            row(&[
                ("SourceInsurerNumber", KOKUHO),
                ("SourceSubscriberKey", key_),
                ("MunicipalityCode", MUNI),
                ("ResidentCode", "2013"),
                ("Name", "林　茂"),
                ("NameKana", "ﾊﾔｼ ｼｹﾞﾙ"),
                ("Sex1", "1"),
                ("Birthdate", "19500402"),
                ("AgeTransitionDate", "20250402"),
                ("SelfInfoProvisionProhibitedFlg", flags[0]),
                ("NonDisclosureFlg", flags[1]),
                ("AutoResponseProhibitedFlg", flags[2]),
                (
                    "FlagSetTime",
                    if flags == ["0", "0", "0"] { "" } else { "20240101090000" },
                ),
            ])
        };
        let p = write_file(
            dir.path(),
            "AgeTransitionHandoff_a",
            FileKind::AgeTransitionHandoff,
            &f,
            KOKUHO,
            "A-1",
            "20261202000000",
            &[
                base(["0", "0", "0"], ""),      // answer about an unknown person: accepted
                base(["0", "1", "0"], ""),      // a flag without the key: rejected
                base(["2", "0", "0"], ""),      // likewise
                base(["0", "0", "1"], ""),      // likewise
                base(["0", "0", "0"], &key(5)), // a known person without flags: accepted
            ],
        );
        let v = validate(&p);
        assert_eq!(v.status.code(), Some(1), "{format:?}/{encoding:?}");
        let out = String::from_utf8_lossy(&v.stdout);
        for seq in [2, 3, 4] {
            assert!(
                out.lines().any(|l| l.contains(&format!("RecordSequence {seq}"))
                    && l.contains("SourceSubscriberKey")
                    && l.contains("E_SCHEMA")),
                "{format:?}/{encoding:?} {seq}: {out}"
            );
        }
        for seq in [1, 5] {
            assert!(!out.contains(&format!("RecordSequence {seq} ")), "{out}");
        }
        // nowhere else: an inquiry without its SubscriberKey is rejected
        let q = write_file(
            dir.path(),
            "AgeTransitionInquiry_q",
            FileKind::AgeTransitionInquiry,
            &f,
            KOUKI,
            "Q-1",
            "20261201000000",
            &[row(&[
                ("InsurerNumber", KOUKI),
                ("SubscriberKey", ""),
                ("MunicipalityCode", MUNI),
                ("ResidentCode", "2013"),
                ("Name", "林　茂"),
                ("NameKana", "ﾊﾔｼ ｼｹﾞﾙ"),
                ("Sex1", "1"),
                ("Birthdate", "19500402"),
                ("QualificationDate", "20250402"),
                ("ReasonOfQualification", "01"),
            ])],
        );
        let v = validate(&q);
        assert_eq!(v.status.code(), Some(1));
        let out = String::from_utf8_lossy(&v.stdout);
        assert!(out.contains("SubscriberKey") && out.contains("E_SCHEMA"), "{out}");
    }
}
