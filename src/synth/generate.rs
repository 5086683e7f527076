//! The `generate` command's two outputs: a whole synthetic population ([`generate`]) and a
//! night's delta against it ([`generate_delta`]), each streamed in one pass with every file open.

use super::files::{
    FlagSetting, MuniCodes, Opener, Out, fill_acquisition, fill_handoff, fill_union_registration, finish_all,
    kokuho_key, muni_codes, put_flags, subscriber_flag,
};
use super::person::{LEAD_MONTHS, Person, Transition, person};
use super::{FUKUHON_INFO_CODES, GenerateOptions, GeneratedFile, Row, SplitMix64, data, kokuho_insurer_number};
use super::{kouki_insurer_number, minus_days, mix64, ts};
use crate::domain::{Date, FileKind};
use anyhow::Context;
use std::path::Path;

/// Per-municipality 国保 files of a population.
struct MuniOuts {
    change: Out,
    flags: Out,
    fukuhon: Out,
    handoff: Out,
}

/// The rows every record is filled into (one allocation per kind for the whole run).
struct Rows {
    sc: Row,
    fc: Row,
    fk: Row,
    ho: Row,
}

impl Rows {
    fn new() -> Rows {
        Rows {
            sc: Row::new(FileKind::SubscriberChange),
            fc: Row::new(FileKind::FlagChange),
            fk: Row::new(FileKind::Fukuhon),
            ho: Row::new(FileKind::AgeTransitionHandoff),
        }
    }
}

/// Writes a synthetic inbox to `out`: per municipality a 国保 SubscriberChange, FlagChange,
/// Fukuhon and AgeTransitionHandoff file, and the union's SubscriberChange file with the 後期
/// registrations. Streams: one pass over the population, every file open at once.
pub fn generate(opts: &GenerateOptions, out: &Path) -> anyhow::Result<Vec<GeneratedFile>> {
    opts.validate()?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let as_of = opts.as_of;
    let night = as_of.pred();
    let mut opener = Opener::new(opts, out, as_of, ts(night, 19, 0, 0));
    let mut munis = Vec::new();
    for m in data::MUNICIPALITIES {
        let k = kokuho_insurer_number(m.code_body);
        munis.push(MuniOuts {
            change: opener.open(FileKind::SubscriberChange, &k, 1, "SC")?,
            flags: opener.open(FileKind::FlagChange, &k, 2, "FC")?,
            fukuhon: opener.open(FileKind::Fukuhon, &k, 3, "FK")?,
            handoff: opener.open(FileKind::AgeTransitionHandoff, &k, 4, "HO")?,
        });
    }
    let union_sender = kouki_insurer_number(data::MUNICIPALITIES[0].code_body);
    let mut union = opener.open(FileKind::SubscriberChange, &union_sender, 1, "SC")?;
    let mut rows = Rows::new();
    let codes = muni_codes();
    for i in 0..opts.subscribers {
        let p = person(opts.seed, i, as_of, opts.flagged_per_million);
        let mut r = SplitMix64::new(mix64(opts.seed ^ 0xF00D) ^ mix64(i));
        let c = &codes[p.muni];
        let o = &mut munis[p.muni];
        write_kokuho_member(o, &mut rows, &p, c)?;
        write_fukuhon(&mut o.fukuhon, &mut rows.fk, &p, &c.kokuho, opts, &mut r)?;
        // the union's registration, and the hand-off of flagged members turning 75
        if let Some(t) = p.transition {
            let (q, reason) = match t {
                Transition::AgeReached(a) => (a, "01"),
                Transition::Disability(c) => (c, "02"),
            };
            fill_union_registration(&mut rows.sc, &p, &c.kouki, q, reason);
            union.put(&mut rows.sc)?;
            if let (Transition::AgeReached(a), Some(f)) = (t, p.flags.as_ref().filter(|f| f.protective())) {
                fill_handoff(&mut rows.ho, &p, &c.kokuho, &c.muni_code, a, f);
                o.handoff.put(&mut rows.ho)?;
            }
        }
    }
    let files = munis
        .into_iter()
        .flat_map(|m| [m.change, m.flags, m.fukuhon, m.handoff])
        .chain([union]);
    finish_all(files)
}

/// The member's 国保 資格取得 (and, on the disability route, the loss on the certification date)
/// and flags at the 国保 insurer.
fn write_kokuho_member(o: &mut MuniOuts, rows: &mut Rows, p: &Person, c: &MuniCodes) -> anyhow::Result<()> {
    let key = kokuho_key(&c.kokuho, p.index);
    let reason = if p.birth.age_on(p.kokuho_since) == 0 {
        "99"
    } else {
        "04"
    };
    fill_acquisition(&mut rows.sc, p, &c.kokuho, &c.muni_code, p.kokuho_since, reason);
    o.change.put(&mut rows.sc)?;
    if let Some(Transition::Disability(cert)) = p.transition {
        let mut loss = Row::new(FileKind::SubscriberChange);
        loss.set("ChangeType", "3")
            .set("EffectiveDate", cert.to_string())
            .set("InsurerNumber", &c.kokuho)
            .set("SubscriberKey", &key)
            .set("DisqualificationDate", cert.to_string())
            .set("ReasonOfLoss", "03");
        o.change.put(&mut loss)?;
    }
    if let Some(f) = &p.flags {
        let end = f.support_end.map(|d| d.to_string()).unwrap_or_default();
        put_flags(
            &mut o.flags,
            &mut rows.fc,
            f,
            &f.set_time.to_string(),
            &end,
            &c.kokuho,
            &key,
        )?;
    }
    Ok(())
}

/// The member's 副本: 資格情報 always, the others by chance (or the first K InfoCodes), drawn from
/// `r` in InfoCode order.
fn write_fukuhon(
    out: &mut Out,
    fk: &mut Row,
    p: &Person,
    kokuho: &str,
    opts: &GenerateOptions,
    r: &mut SplitMix64,
) -> anyhow::Result<()> {
    let as_of = opts.as_of;
    let night = as_of.pred();
    let key = kokuho_key(kokuho, p.index);
    let fixed = |n: usize| opts.fukuhon_per_subscriber.map(|k| n < k as usize);
    let non_disclosure = p.flags.as_ref().is_some_and(|f| f.non_disclosure);
    let disclosure = |r: &mut SplitMix64| {
        if non_disclosure {
            "1"
        } else if r.chance(500) {
            "0"
        } else {
            ""
        }
    };
    let base = |fk: &mut Row, code: &str, eff: Date, disc: &str| {
        fk.items.clear();
        fk.set("Operation", "1")
            .set("EffectiveDate", eff.to_string())
            .set("InsurerNumber", kokuho)
            .set("SubscriberKey", &key)
            .set("InfoCode", code)
            .set("DisclosureClassification", disc);
    };
    if fixed(0).unwrap_or(true) {
        let d = disclosure(r);
        base(fk, FUKUHON_INFO_CODES[0], p.kokuho_since, d);
        fk.item("001", kokuho).item("002", p.kokuho_since.to_string());
        if let Some(Transition::Disability(cert)) = p.transition {
            fk.item("003", cert.to_string());
        }
        fk.item("004", p.family);
        out.put(fk)?;
    }
    if fixed(1).unwrap_or_else(|| r.chance(200)) {
        // 診療年月 one to six months back
        let ym = minus_days(as_of, 30 * (1 + r.below(6))).to_string()[..6].to_owned();
        let d = disclosure(r);
        base(fk, FUKUHON_INFO_CODES[1], night.max(p.kokuho_since), d);
        fk.item("001", ym).item("002", (8_000 + r.below(300_000)).to_string());
        out.put(fk)?;
    }
    if fixed(2).unwrap_or_else(|| p.birth.age_on(as_of) >= 18 && r.chance(250)) {
        use chrono::Datelike;
        let y = if as_of.0.month() >= 8 {
            as_of.0.year() + 1
        } else {
            as_of.0.year()
        };
        let d = disclosure(r);
        base(fk, FUKUHON_INFO_CODES[2], night.max(p.kokuho_since), d);
        fk.item("001", *r.pick(data::LIMIT_CLASSES))
            .item("002", format!("{y}0731"));
        out.put(fk)?;
    }
    if fixed(3).unwrap_or_else(|| (40..75).contains(&p.birth.age_on(as_of)) && r.chance(300)) {
        // a 特定健診 of this insurer: not before the member joined it (R1 would apply it first)
        let exam = minus_days(as_of, 20 + r.below(330)).max(p.kokuho_since);
        let d = disclosure(r);
        base(fk, FUKUHON_INFO_CODES[3], exam, d);
        fk.item("001", exam.to_string()).item("002", *r.pick(data::FINDINGS));
        out.put(fk)?;
    }
    Ok(())
}

/// Per-municipality 国保 files of a delta.
struct DeltaOuts {
    change: Out,
    flags: Out,
    handoff: Out,
}

/// Writes a nightly delta of `changes` changes against the population [`generate`] wrote with
/// the same seed, `subscribers`, as-of and flag share. Changes are dated the day after the base
/// as-of (run the delta with `--as-of` one day later) and each touches a different person:
///
/// - the union's 後期 registrations (資格取得, reason 01, future-dated) of every member whose 75th
///   birthday enters the 6-month lead window that day, with the 国保's hand-off of the flagged
///   ones, so that the run carries their flags;
/// - one in twenty of the other changes: new 国保 members (資格取得, 転入), with their flags if they
///   hold any;
/// - the rest: address changes (記載事項変更), losses (資格喪失), flag settings and releases.
pub fn generate_delta(opts: &GenerateOptions, changes: u64, out: &Path) -> anyhow::Result<Vec<GeneratedFile>> {
    opts.validate()?;
    anyhow::ensure!(
        changes <= opts.subscribers,
        "--delta {changes}: a delta touches each person once, so at most --subscribers ({}) changes",
        opts.subscribers
    );
    let base = opts.as_of;
    let day = base.succ();
    let turning = entering_the_window(opts, day);
    anyhow::ensure!(
        turning.len() as u64 <= changes,
        "--delta {changes}: on {day} the 75th birthdays of {} members enter the {LEAD_MONTHS}-month window and \
         their 後期 registrations are part of the delta: give at least --delta {}",
        turning.len(),
        turning.len()
    );
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut opener = Opener::new(opts, out, day, ts(base, 22, 0, 0));
    let codes = muni_codes();
    let mut outs = Vec::new();
    for c in &codes {
        outs.push(DeltaOuts {
            change: opener.open(FileKind::SubscriberChange, &c.kokuho, 5, "DSC")?,
            flags: opener.open(FileKind::FlagChange, &c.kokuho, 6, "DFC")?,
            handoff: opener.open(FileKind::AgeTransitionHandoff, &c.kokuho, 7, "DHO")?,
        });
    }
    let union_sender = kouki_insurer_number(data::MUNICIPALITIES[0].code_body);
    let mut union = opener.open(FileKind::SubscriberChange, &union_sender, 2, "DSC")?;
    let mut rows = Rows::new();
    let time = ts(day, 9, 0, 0).to_string();

    // 後期 registrations of the members entering the window (and the hand-offs of the flagged)
    for p in &turning {
        let c = &codes[p.muni];
        let a = p.birth.kouki_acquisition_date();
        fill_acquisition(&mut rows.sc, p, &c.kokuho, &c.muni_code, p.kokuho_since, "04");
        fill_union_registration(&mut rows.sc, p, &c.kouki, a, "01");
        union.put(&mut rows.sc)?;
        if let Some(f) = p.flags.as_ref().filter(|f| f.protective()) {
            fill_handoff(&mut rows.ho, p, &c.kokuho, &c.muni_code, a, f);
            outs[p.muni].handoff.put(&mut rows.ho)?;
        }
    }

    let others = changes - turning.len() as u64;
    let newcomers = others / 20;
    let mut r = SplitMix64::new(mix64(opts.seed ^ 0xDE17A) ^ mix64(day.to_string().parse::<u64>().expect("digits")));
    let picked = pick_members(&mut r, opts.subscribers, &turning, others - newcomers);
    write_newcomers(opts, day, newcomers, &codes, &mut outs, &mut rows, &time)?;
    for i in picked {
        let p = person(opts.seed, i, base, opts.flagged_per_million);
        write_change(&p, day, &time, &codes[p.muni], &mut outs[p.muni], &mut rows, &mut r)?;
    }
    let files = outs
        .into_iter()
        .flat_map(|o| [o.change, o.flags, o.handoff])
        .chain([union]);
    finish_all(files)
}

/// Members not registered at the union whose 75th birthday enters the lead window on `day`.
fn entering_the_window(opts: &GenerateOptions, day: Date) -> Vec<Person> {
    let base = opts.as_of;
    let (window_start, window_end) = (base.add_months(LEAD_MONTHS), day.add_months(LEAD_MONTHS));
    (0..opts.subscribers)
        .map(|i| person(opts.seed, i, base, opts.flagged_per_million))
        .filter(|p| {
            let a = p.birth.kouki_acquisition_date();
            p.transition.is_none() && window_start < a && a <= window_end
        })
        .collect()
}

/// `n` distinct members of the population other than `turning`, drawn from `r`, in index order.
fn pick_members(r: &mut SplitMix64, subscribers: u64, turning: &[Person], n: u64) -> Vec<u64> {
    let mut seen: std::collections::HashSet<u64> = turning.iter().map(|p| p.index).collect();
    let mut picked = Vec::with_capacity(n as usize);
    while (picked.len() as u64) < n {
        let i = r.below(subscribers);
        if seen.insert(i) {
            picked.push(i);
        }
    }
    picked.sort_unstable();
    picked
}

/// New 国保 members (転入), indices after the population's (or from --newcomers-from); those who
/// would turn 75 within the lead window are left out (they would need a 後期 registration too).
fn write_newcomers(
    opts: &GenerateOptions,
    day: Date,
    newcomers: u64,
    codes: &[MuniCodes],
    outs: &mut [DeltaOuts],
    rows: &mut Rows,
    time: &str,
) -> anyhow::Result<()> {
    let mut written = 0;
    for j in opts.delta_newcomers_from.unwrap_or(opts.subscribers).. {
        if written == newcomers {
            break;
        }
        let p = person(opts.seed, j, opts.as_of, opts.flagged_per_million);
        if p.transition.is_some() {
            continue;
        }
        let c = &codes[p.muni];
        let o = &mut outs[p.muni];
        fill_acquisition(&mut rows.sc, &p, &c.kokuho, &c.muni_code, day, "03");
        o.change.put(&mut rows.sc)?;
        if let Some(f) = &p.flags {
            let end = f
                .support_end
                .map(|_| minus_days(day.add_months(12), 1).to_string())
                .unwrap_or_default();
            put_flags(
                &mut o.flags,
                &mut rows.fc,
                f,
                time,
                &end,
                &c.kokuho,
                &kokuho_key(&c.kokuho, j),
            )?;
        }
        written += 1;
    }
    Ok(())
}

/// One change to a member of the population, drawn from `r`: a loss, a 不開示該当 setting, a
/// release of the protective flags, or an address change.
fn write_change(
    p: &Person,
    day: Date,
    time: &str,
    c: &MuniCodes,
    o: &mut DeltaOuts,
    rows: &mut Rows,
    r: &mut SplitMix64,
) -> anyhow::Result<()> {
    let kokuho = c.kokuho.as_str();
    let key = kokuho_key(kokuho, p.index);
    let lost = matches!(p.transition, Some(Transition::Disability(_)));
    let protective = p.flags.as_ref().filter(|f| f.protective());
    let what = r.below(100);
    let sc = &mut rows.sc;
    for f in FileKind::SubscriberChange.fields().iter().skip(1) {
        sc.set(f, "");
    }
    sc.set("EffectiveDate", day.to_string())
        .set("InsurerNumber", kokuho)
        .set("SubscriberKey", &key);
    let setting = |flag_type, operation| FlagSetting {
        time,
        flag_type,
        operation,
        reason: "",
        source: "1",
        support_end: "",
    };
    match what {
        45..60 if !lost => {
            sc.set("ChangeType", "3")
                .set("DisqualificationDate", day.to_string())
                .set("ReasonOfLoss", "99");
            o.change.put(sc)?;
        }
        60..80 if !lost && !p.flags.as_ref().is_some_and(|f| f.non_disclosure) => {
            subscriber_flag(&mut rows.fc, &setting("2", "1"), kokuho, &key);
            o.flags.put(&mut rows.fc)?;
        }
        80..90 if !lost && protective.is_some() => {
            let f = protective.expect("checked");
            let types = [("3", f.self_info.is_some()), ("2", f.non_disclosure)];
            for (t, _) in types.iter().filter(|(_, on)| *on) {
                subscriber_flag(&mut rows.fc, &setting(*t, "2"), kokuho, &key);
                o.flags.put(&mut rows.fc)?;
            }
        }
        _ if !lost => {
            // 転居 within the municipality: new building number
            sc.set("ChangeType", "2")
                .set("Address", format!("{}－{}", p.address, 1 + r.below(9)));
            o.change.put(sc)?;
        }
        _ => {
            // already lost at 国保 (disability route): a name-reading correction at the union is
            // out of scope here, so record a 国保 address change of the lost record instead
            sc.set("ChangeType", "2").set("PostNumber", p.post);
            o.change.put(sc)?;
        }
    }
    Ok(())
}
