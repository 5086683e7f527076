//! Tests of the generator: derived numbers, the random source, plausible people, byte-identical
//! output for the same arguments, valid records, the flag share, 副本 per subscriber, deltas.

use super::person::{Person, Transition, chance_per_million, person};
use super::*;
use crate::domain::{IndividualNumber, InsurerNumber, MunicipalityCode};
use std::path::Path;

#[test]
fn derived_numbers_are_valid() {
    for m in data::MUNICIPALITIES {
        assert!(MunicipalityCode::parse(&municipality_code(m.code_body)).is_ok());
        let k = InsurerNumber::parse(&kokuho_insurer_number(m.code_body)).unwrap();
        assert!(k.is_kokuho());
        assert!(
            InsurerNumber::parse(&kouki_insurer_number(m.code_body))
                .unwrap()
                .is_kouki()
        );
    }
    assert_eq!(kokuho_insurer_number("13104"), "00131045");
    assert_eq!(municipality_code("13104"), "131041");
    for b in [0, 1, 99_999_999_999, 12_345_678_901] {
        assert!(IndividualNumber::parse(&my_number(b)).is_ok());
    }
    assert_eq!(zenkaku_digits(302), "３０２");
}

#[test]
fn splitmix_is_stable() {
    // reference values of splitmix64 seeded with 0
    let mut r = SplitMix64::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
}

#[test]
fn people_are_plausible() {
    let as_of = Date::parse("20261201").unwrap();
    for i in 0..5000 {
        let p = person(7, i, as_of, DEFAULT_FLAGGED_PER_MILLION);
        assert!(p.birth.age_on(as_of) < 75, "{i}");
        assert!(p.kokuho_since <= as_of && p.kokuho_since >= p.birth, "{i}");
        match p.transition {
            Some(Transition::AgeReached(a)) => {
                assert_eq!(a, p.birth.kouki_acquisition_date());
                assert!(a > as_of && a <= as_of.add_months(6));
            }
            Some(Transition::Disability(c)) => {
                assert!(c <= as_of && c > p.kokuho_since && p.birth.age_on(c) >= 65);
            }
            None => {}
        }
    }
    let p0 = person(7, 0, as_of, DEFAULT_FLAGGED_PER_MILLION);
    assert!(p0.flags.is_some() && p0.transition.is_some());
}

fn opts(seed: u64, format: Format) -> GenerateOptions {
    GenerateOptions::new(3000, seed, format, TextEncoding::Utf8, Date::parse("20261201").unwrap())
}

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn same_arguments_give_the_same_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    generate(&opts(5, Format::Xml), a.path()).unwrap();
    generate(&opts(5, Format::Xml), b.path()).unwrap();
    generate(&opts(6, Format::Xml), c.path()).unwrap();
    assert_eq!(read_all(a.path()), read_all(b.path()));
    assert_ne!(read_all(a.path()), read_all(c.path()));
}

/// Every record of the generated CSV files, built (and so validated) by the shared record
/// builder, with the name of its file. Checks RecordSequence and the trailer's count.
fn records_of(dir: &Path, files: &[GeneratedFile]) -> Vec<(String, crate::domain::Record)> {
    use crate::domain::{Catalog, RawRecord, build};
    let catalog = Catalog::default_catalog();
    let mut out = Vec::new();
    for f in files {
        let mut rd = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(dir.join(&f.name))
            .unwrap();
        let mut kind = None;
        let mut n = 0u64;
        for row in rd.records() {
            let row = row.unwrap();
            match &row[0] {
                "H" => kind = FileKind::from_name(&row[1]),
                "D" => {
                    let kind = kind.unwrap();
                    let nf = kind.fields().len();
                    let raw = RawRecord {
                        values: row
                            .iter()
                            .skip(1)
                            .take(nf)
                            .map(|v| (!v.is_empty()).then(|| v.to_owned()))
                            .collect(),
                        items: row
                            .iter()
                            .skip(1 + nf)
                            .collect::<Vec<_>>()
                            .chunks(2)
                            .map(|c| (c[0].to_owned(), c[1].to_owned()))
                            .collect(),
                    };
                    n += 1;
                    assert_eq!(row[1].parse::<u64>().unwrap(), n);
                    let rec = build(kind, n, &raw, &catalog).unwrap_or_else(|e| panic!("{} #{n}: {e:?}", f.name));
                    out.push((f.name.clone(), rec));
                }
                "T" => assert_eq!(row[1].parse::<u64>().unwrap(), n),
                other => panic!("row kind {other}"),
            }
        }
        assert_eq!(n, f.records, "{}", f.name);
    }
    out
}

/// Every generated record passes the shared record builder, and the union's registrations,
/// flags and hand-offs are consistent with each other.
#[test]
fn generated_records_are_valid_and_consistent() {
    use crate::domain::Record;
    let dir = tempfile::tempdir().unwrap();
    let stats = generate(&opts(9, Format::Csv), dir.path()).unwrap();
    assert_eq!(stats.len(), 17);
    let as_of = Date::parse("20261201").unwrap();
    let mut counts = std::collections::HashMap::<&str, u64>::new();
    let mut union_future = std::collections::HashSet::new();
    let mut handoff_dates = Vec::new();
    for (_, rec) in records_of(dir.path(), &stats) {
        match rec {
            Record::SubscriberChange(r) if r.insurer.is_kouki() => {
                let q = r.qualification_date.unwrap();
                match r.reason_of_qualification.unwrap().code() {
                    "01" => {
                        assert_eq!(q, r.birthdate.unwrap().kouki_acquisition_date());
                        assert!(q > as_of && q <= as_of.add_months(6));
                        union_future.insert((r.resident.unwrap().as_str().to_owned(), q));
                        *counts.entry("kouki01").or_default() += 1;
                    }
                    "02" => *counts.entry("kouki02").or_default() += 1,
                    other => panic!("union reason {other}"),
                }
            }
            Record::SubscriberChange(r) => {
                assert!(r.insurer.is_kokuho());
                *counts
                    .entry(if r.individual_number.is_some() {
                        "mynumber"
                    } else {
                        "no_mynumber"
                    })
                    .or_default() += 1;
            }
            Record::FlagChange(_) => *counts.entry("flags").or_default() += 1,
            Record::Fukuhon(_) => *counts.entry("fukuhon").or_default() += 1,
            Record::AgeTransitionInquiry(_) => panic!("the generator writes no inquiry"),
            Record::AgeTransitionHandoff(h) => {
                assert!(h.self_info.is_some() || h.non_disclosure);
                handoff_dates.push((h.resident.as_str().to_owned(), h.transition_date));
            }
        }
    }
    assert!(!handoff_dates.is_empty());
    for h in &handoff_dates {
        assert!(union_future.contains(h), "every hand-off has its union registration");
    }
    let c = |k| counts.get(k).copied().unwrap_or(0);
    assert!(c("kouki01") > 0 && c("kouki02") > 0, "{counts:?}");
    let share = c("mynumber") as f64 / (c("mynumber") + c("no_mynumber")) as f64;
    assert!((0.85..0.95).contains(&share), "My Number share {share}");
    assert!(c("fukuhon") > 3000 && c("flags") > 40, "{counts:?}");
}

#[test]
fn per_million_draws_agree_with_per_mille_ones() {
    let (mut a, mut b) = (SplitMix64::new(42), SplitMix64::new(42));
    for pm in [0u32, 1, 20, 500, 999, 1000] {
        for _ in 0..2000 {
            assert_eq!(a.chance(u64::from(pm)), chance_per_million(&mut b, pm * 1000));
        }
    }
}

#[test]
fn flagged_ratio_sets_the_share_of_flagged_members() {
    let as_of = Date::parse("20261201").unwrap();
    let n = 20_000;
    for ppm in [0u32, 20_000, 100_000, 500_000, 1_000_000] {
        let people: Vec<Person> = (0..n).map(|i| person(7, i, as_of, ppm)).collect();
        let flagged = people.iter().filter(|p| p.flags.is_some()).count() as f64;
        let share = flagged / n as f64;
        let want = f64::from(ppm) / 1e6;
        assert!((share - want).abs() < 0.01, "{ppm}: {share}");
        if ppm == 0 || ppm == 1_000_000 {
            assert_eq!(share, want, "{ppm}");
        }
        if ppm >= 100_000 {
            // the mix stays: both ReasonCodes, every flag type
            let f = || people.iter().filter_map(|p| p.flags.as_ref());
            assert!(f().any(|f| f.self_info == Some("1")) && f().any(|f| f.self_info == Some("2")));
            assert!(f().any(|f| f.self_info.is_none() && f.non_disclosure));
            assert!(f().any(|f| f.auto_response) && f().any(|f| f.support_end.is_some()));
        }
    }
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(1, Format::Csv);
    o.flagged_per_million = 1_000_001;
    assert!(
        generate(&o, dir.path())
            .unwrap_err()
            .to_string()
            .contains("--flagged-ratio")
    );
    let mut o = opts(1, Format::Csv);
    o.fukuhon_per_subscriber = Some(5);
    assert!(
        generate(&o, dir.path())
            .unwrap_err()
            .to_string()
            .contains("--fukuhon-per-subscriber")
    );
    let o = opts(1, Format::Csv);
    assert!(
        generate_delta(&o, 3001, dir.path())
            .unwrap_err()
            .to_string()
            .contains("--delta 3001")
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
}

/// `--fukuhon-per-subscriber K`: exactly K records per subscriber, the first K InfoCodes, all
/// valid against the bundled catalog; the rest of the population is unchanged.
#[test]
fn fukuhon_per_subscriber_writes_k_info_codes_each() {
    use crate::domain::Record;
    let base = tempfile::tempdir().unwrap();
    let mut o = opts(4, Format::Csv);
    o.subscribers = 400;
    generate(&o, base.path()).unwrap();
    for k in 0..=4u32 {
        let dir = tempfile::tempdir().unwrap();
        o.fukuhon_per_subscriber = Some(k);
        let stats = generate(&o, dir.path()).unwrap();
        let mut per_key = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (_, rec) in records_of(dir.path(), &stats) {
            if let Record::Fukuhon(f) = rec {
                per_key
                    .entry(f.key.as_str().to_owned())
                    .or_default()
                    .push(f.info_code.as_str().to_owned());
            }
        }
        let want: Vec<String> = FUKUHON_INFO_CODES[..k as usize].iter().map(|c| c.to_string()).collect();
        assert_eq!(per_key.len(), if k == 0 { 0 } else { 400 });
        assert!(per_key.values().all(|codes| *codes == want), "K={k}");
        // only the Fukuhon files differ from the default population
        for f in &stats {
            let (a, b) = (
                std::fs::read(dir.path().join(&f.name)).unwrap(),
                std::fs::read(base.path().join(&f.name)).unwrap(),
            );
            assert_eq!(a == b, f.kind != FileKind::Fukuhon, "K={k} {}", f.name);
        }
    }
}

/// A delta: deterministic, every kind of change present, all records valid, the 後期
/// registrations exactly the members whose 75th birthday enters the window that day.
#[test]
fn a_delta_holds_every_kind_of_change() {
    use crate::domain::Record;
    let mut o = opts(0, Format::Csv);
    o.subscribers = 4000;
    o.flagged_per_million = 300_000;
    let day = o.as_of.succ();
    // the window gains one day of birthdays: find a seed where one of them is flagged
    let (dir, stats) = (1..200)
        .find_map(|seed| {
            o.seed = seed;
            let dir = tempfile::tempdir().unwrap();
            let stats = generate_delta(&o, 300, dir.path()).unwrap();
            let handoffs: u64 = stats
                .iter()
                .filter(|f| f.kind == FileKind::AgeTransitionHandoff)
                .map(|f| f.records)
                .sum();
            (handoffs > 0).then_some((dir, stats))
        })
        .expect("a seed with a flagged member turning 75");
    let again = tempfile::tempdir().unwrap();
    generate_delta(&o, 300, again.path()).unwrap();
    assert_eq!(
        read_all(dir.path()),
        read_all(again.path()),
        "same arguments, same bytes"
    );

    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    let mut keys = std::collections::HashSet::new();
    let mut registered = std::collections::BTreeSet::new();
    let mut handoffs = Vec::new();
    for (_, rec) in records_of(dir.path(), &stats) {
        let kind = match &rec {
            Record::SubscriberChange(r) if r.insurer.is_kouki() => {
                assert_eq!(r.reason_of_qualification.unwrap().code(), "01");
                let q = r.qualification_date.unwrap();
                assert_eq!(q, r.birthdate.unwrap().kouki_acquisition_date());
                assert!(q > day.pred().add_months(6) && q <= day.add_months(6), "{q}");
                registered.insert(r.resident.as_ref().unwrap().as_str().to_owned());
                "registration"
            }
            Record::SubscriberChange(r) => {
                assert!(keys.insert(r.key.as_str().to_owned()), "one change per person");
                match (r.change_type.code(), r.reason_of_qualification.map(|q| q.code())) {
                    ("1", Some("03")) => "newcomer",
                    ("2", _) => "update",
                    ("3", _) => "loss",
                    other => panic!("{other:?}"),
                }
            }
            Record::FlagChange(f) if f.operation.code() == "1" => "flag_set",
            Record::FlagChange(_) => "flag_release",
            Record::AgeTransitionHandoff(h) => {
                handoffs.push(h.resident.as_str().to_owned());
                "handoff"
            }
            Record::Fukuhon(_) => panic!("no 副本 in a delta"),
            Record::AgeTransitionInquiry(_) => panic!("no inquiry in a delta"),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    for k in [
        "registration",
        "newcomer",
        "update",
        "loss",
        "flag_set",
        "flag_release",
        "handoff",
    ] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 0, "{k} missing: {kinds:?}");
    }
    // exactly the members entering the window
    let want: std::collections::BTreeSet<String> = (0..o.subscribers)
        .map(|i| person(o.seed, i, o.as_of, o.flagged_per_million))
        .filter(|p| {
            let a = p.birth.kouki_acquisition_date();
            a > o.as_of.add_months(6) && a <= day.add_months(6)
        })
        .map(|p| format!("{:010}", p.index + 1))
        .collect();
    assert_eq!(registered, want);
    assert!(
        handoffs.iter().all(|h| registered.contains(h)),
        "hand-offs of registered members"
    );
    assert_eq!(kinds["newcomer"], (300 - want.len() as u64) / 20);
}

/// `--newcomers-from`: the same delta, except that its new members take person numbers from
/// the given one on (so they are new to a larger population too); every other record is the
/// same, and a number inside the population is refused.
#[test]
fn a_delta_can_number_its_newcomers_after_a_larger_population() {
    use crate::domain::Record;
    let mut o = opts(5, Format::Csv);
    o.subscribers = 2000;
    let plain = tempfile::tempdir().unwrap();
    let plain_stats = generate_delta(&o, 200, plain.path()).unwrap();
    o.delta_newcomers_from = Some(20_000);
    let moved = tempfile::tempdir().unwrap();
    let moved_stats = generate_delta(&o, 200, moved.path()).unwrap();
    // the person number of a 国保 key: its last 10 digits, counted from 1
    let number = |key: &str| key[key.len() - 10..].parse::<u64>().unwrap() - 1;
    let split = |records: Vec<(String, Record)>| {
        let (mut newcomers, mut others) = (Vec::new(), Vec::new());
        for (_, mut rec) in records {
            // record sequence numbers shift with the newcomers' flag rows: compare the rest
            match &mut rec {
                Record::SubscriberChange(r) => r.seq = 0,
                Record::FlagChange(r) => r.seq = 0,
                Record::AgeTransitionHandoff(r) => r.seq = 0,
                _ => {}
            }
            match &rec {
                Record::SubscriberChange(r)
                    if r.insurer.is_kokuho() && r.reason_of_qualification.is_some_and(|q| q.code() == "03") =>
                {
                    newcomers.push(number(r.key.as_str()))
                }
                Record::FlagChange(f) if f.key.as_ref().is_some_and(|k| number(k.as_str()) >= 2000) => {
                    newcomers.push(number(f.key.as_ref().unwrap().as_str()))
                }
                _ => others.push(rec),
            }
        }
        (newcomers, others)
    };
    let (plain_new, plain_others) = split(records_of(plain.path(), &plain_stats));
    let (moved_new, moved_others) = split(records_of(moved.path(), &moved_stats));
    assert!(
        plain_others == moved_others,
        "the changes of existing members are the same"
    );
    assert!(!moved_new.is_empty());
    assert!(plain_new.iter().all(|&i| (2000..20_000).contains(&i)), "{plain_new:?}");
    assert!(moved_new.iter().all(|&i| i >= 20_000), "{moved_new:?}");
    let count = |v: &[u64]| v.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(count(&plain_new), count(&moved_new), "as many new members");

    o.delta_newcomers_from = Some(1999);
    let dir = tempfile::tempdir().unwrap();
    let err = generate_delta(&o, 200, dir.path()).unwrap_err().to_string();
    assert!(err.contains("--newcomers-from 1999"), "{err}");
}
