//! Synthetic data: the reviewed sample set ([`samples`]) and the `generate` command's streaming
//! generator of large, deterministic inboxes for load tests and demos.
//!
//! Determinism: every person is derived from `(seed, index)` alone through a hand-written
//! splitmix64, so the same arguments give byte-identical files on every platform and any N can be
//! streamed without holding the population in memory.

pub mod data;
pub mod samples;

use crate::domain::{
    Date, FileKind, Timestamp, individual_number_check_digit, insurer_check_digit, municipality_check_digit,
    text::normalize_kana,
};
use crate::formats::writer::{RecordWriter, UnmappablePolicy};
use crate::formats::{FileHeader, Format, TextEncoding};
use anyhow::Context;
use chrono::{Days, NaiveTime, TimeDelta};
use data::NameReading;
use std::io::{BufWriter, Write};
use std::path::Path;

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to pick names and dates.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant at these sizes).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The splitmix64 finaliser: a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 地方公共団体コード from its 5-digit body.
pub fn municipality_code(body5: &str) -> String {
    format!("{body5}{}", municipality_check_digit(body5.as_bytes()))
}

/// 国保 保険者番号 (pref 2 + insurer 3 + check), written zero-padded to 8 as the interface wants.
pub fn kokuho_insurer_number(pref_insurer5: &str) -> String {
    format!("00{pref_insurer5}{}", insurer_check_digit(pref_insurer5.as_bytes()))
}

/// 後期 保険者番号: 法別番号 39 + pref 2 + insurer 3 + check.
pub fn kouki_insurer_number(pref_insurer5: &str) -> String {
    let body = format!("39{pref_insurer5}");
    let c = insurer_check_digit(body.as_bytes());
    format!("{body}{c}")
}

/// A valid My Number from an 11-digit body.
pub fn my_number(body: u64) -> String {
    let body = format!("{:011}", body % 100_000_000_000);
    let c = individual_number_check_digit(body.as_bytes());
    format!("{body}{c}")
}

/// Full-width digits, as addresses are customarily written (８番１号).
pub fn zenkaku_digits(n: u64) -> String {
    n.to_string()
        .chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).expect("digit"))
        .collect()
}

/// Half-width reading of a full-width katakana name (the form the server uses).
pub fn hankaku_kana(full: &str) -> String {
    normalize_kana(full).expect("embedded readings are plain katakana")
}

/// One data record under construction: values by the kind's field order, empty = absent.
#[derive(Clone, Debug)]
pub struct Row {
    kind: FileKind,
    values: Vec<String>,
    pub items: Vec<(String, String)>,
}

impl Row {
    pub fn new(kind: FileKind) -> Row {
        Row {
            kind,
            values: vec![String::new(); kind.fields().len()],
            items: Vec::new(),
        }
    }
    /// Sets a field by its spec name. Panics on a name the kind does not have, so that a typo in
    /// a scenario fails the tests instead of silently writing an empty column.
    pub fn set(&mut self, field: &str, value: impl AsRef<str>) -> &mut Row {
        let i = self
            .kind
            .fields()
            .iter()
            .position(|f| *f == field)
            .unwrap_or_else(|| panic!("{:?} has no field {field}", self.kind));
        let v = &mut self.values[i];
        v.clear();
        v.push_str(value.as_ref());
        self
    }
    pub fn item(&mut self, code: &str, value: impl Into<String>) -> &mut Row {
        self.items.push((code.to_owned(), value.into()));
        self
    }
    pub fn get(&self, field: &str) -> &str {
        let i = self
            .kind
            .fields()
            .iter()
            .position(|f| *f == field)
            .expect("known field");
        &self.values[i]
    }
    pub fn kind(&self) -> FileKind {
        self.kind
    }
    pub fn values(&self) -> &[String] {
        &self.values
    }
    /// Writes the row with RecordSequence = the writer's next number.
    pub fn write_to<W: Write>(
        &mut self,
        w: &mut RecordWriter<W>,
    ) -> Result<Vec<crate::formats::writer::UnmappableChar>, crate::formats::writer::WriteError> {
        self.values[0] = (w.count() + 1).to_string();
        let vals: Vec<&str> = self.values.iter().map(String::as_str).collect();
        let items: Vec<(&str, &str)> = self.items.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        w.write(&vals, &items)
    }
}

fn ts(d: Date, h: u32, m: u32, s: u32) -> Timestamp {
    Timestamp(d.0.and_time(NaiveTime::from_hms_opt(h, m, s).expect("valid time")))
}

fn minus_days(d: Date, n: u64) -> Date {
    Date(d.0.checked_sub_days(Days::new(n)).expect("date in range"))
}

fn plus_days(d: Date, n: u64) -> Date {
    Date(d.0.checked_add_days(Days::new(n)).expect("date in range"))
}

/// Options of `nhi-linkage generate`.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub subscribers: u64,
    pub seed: u64,
    pub format: Format,
    pub encoding: TextEncoding,
    pub as_of: Date,
}

/// One file written by [`generate`].
#[derive(Clone, Debug)]
pub struct GeneratedFile {
    pub name: String,
    pub kind: FileKind,
    pub records: u64,
    pub bytes: u64,
    /// Characters written as `●` (Shift_JIS output only).
    pub replaced: u64,
}

/// The protective and other flags a synthetic person holds at their 国保 insurer.
#[derive(Clone, Debug)]
struct Flags {
    /// 自己情報提供不可 with this ReasonCode.
    self_info: Option<&'static str>,
    non_disclosure: bool,
    auto_response: bool,
    source: &'static str,
    set_time: Timestamp,
    /// 住基支援措置 end (Source 2 only); may already be past, as happens when renewal is late.
    support_end: Option<Date>,
}

impl Flags {
    fn protective(&self) -> bool {
        self.self_info.is_some() || self.non_disclosure
    }
}

/// How a synthetic person reaches the union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transition {
    /// Turns 75 within the lead window: future-dated acquisition, reason 01.
    AgeReached(Date),
    /// 障害認定 at 65–74: acquisition on the certification date (past), reason 02, 国保 lost that day.
    Disability(Date),
}

/// One synthetic 国保 subscriber, derived from (seed, index) alone.
struct Person {
    muni: usize,
    index: u64,
    name: String,
    kana: String,
    sex: &'static str,
    birth: Date,
    kokuho_since: Date,
    family: &'static str,
    my_number: Option<String>,
    post: &'static str,
    address: String,
    transition: Option<Transition>,
    flags: Option<Flags>,
}

const LEAD_MONTHS: u32 = 6;

fn person(seed: u64, i: u64, as_of: Date) -> Person {
    let mut r = SplitMix64::new(mix64(seed) ^ mix64(i.wrapping_add(0x5DEE_CE66_D1CE_4E5B)));
    let muni = r.below(MUNICIPALITIES_LEN) as usize;
    let m = &data::MUNICIPALITIES[muni];
    let sex = match r.below(1000) {
        0 => "3",
        x if x < 490 => "1",
        _ => "2",
    };
    let family: NameReading = if r.chance(2) {
        data::FAMILY_OUTSIDE_CP932
    } else {
        *r.pick(data::FAMILY)
    };
    let given: NameReading = match sex {
        "1" => *r.pick(data::GIVEN_MALE),
        "2" => *r.pick(data::GIVEN_FEMALE),
        _ => {
            let list = if r.chance(500) {
                data::GIVEN_MALE
            } else {
                data::GIVEN_FEMALE
            };
            *r.pick(list)
        }
    };
    let name = format!("{}\u{3000}{}", family.0, given.0);
    let full_kana = format!("{}\u{3000}{}", family.1, given.1);
    // Many sources deliver full-width readings; the readers convert them.
    let kana = if r.chance(300) {
        full_kana
    } else {
        hankaku_kana(&full_kana)
    };

    // Fixed roles for the first indices so that even a tiny N exercises every path.
    let role = if i < 4 { i } else { 100 };
    let lead_end = as_of.add_months(LEAD_MONTHS);
    let turning = role == 0 || role == 2 || (role == 100 && r.chance(30));
    let birth = if turning {
        // 75th birthday within (as_of, as_of + 6 months]
        let span = (lead_end.0 - as_of.0).num_days() as u64;
        let a = plus_days(as_of, 1 + r.below(span));
        birth_for_acquisition(a)
    } else {
        let age = if role == 1 {
            // the disability-route role: 65–72, clear of the 75th-birthday window
            65 + r.below(8)
        } else {
            match r.below(100) {
                0..15 => r.below(20),
                15..35 => 20 + r.below(20),
                35..65 => 40 + r.below(25),
                _ => 65 + r.below(10),
            }
        };
        let mut b = minus_days(Date(as_of.0.with_year_sub(age)), r.below(365));
        // never 75 or older on as_of: those are the union's
        while b.age_on(as_of) >= 75 {
            b = plus_days(b, 30);
        }
        b
    };
    let a = birth.kouki_acquisition_date();
    let age = birth.age_on(as_of);
    let mut transition = None;
    if as_of < a && a <= lead_end {
        transition = Some(Transition::AgeReached(a));
    } else if (65..75).contains(&age) && (role == 1 || (role == 100 && r.chance(10))) {
        let b65 = birth.birthday_at_age(65);
        let cert = minus_days(as_of, 1 + r.below(120)).max(b65);
        transition = Some(Transition::Disability(cert));
    }
    let kokuho_since = if age >= 60 {
        birth.birthday_at_age(60 + r.below((age - 59).min(5) as u64) as i32)
    } else {
        minus_days(as_of, 30 + r.below(15 * 365)).max(birth)
    };
    let kokuho_since = match transition {
        Some(Transition::Disability(cert)) => kokuho_since.min(minus_days(cert, 1)),
        _ => kokuho_since,
    };
    let family_class = if age < 20 || r.chance(250) { "2" } else { "1" };
    // Unique, scrambled My Numbers: an odd multiplier not divisible by 5 is a bijection mod 10^11.
    let my_number = (!r.chance(100))
        .then(|| my_number((i.wrapping_mul(7_919_207_347) + mix64(seed) % 100_000_000_000) % 100_000_000_000));
    let town = r.pick(m.towns);
    let mut address = format!(
        "{}{}{}{}丁目{}番{}号",
        m.pref_name,
        m.name,
        town.name,
        r.pick(data::CHOME),
        zenkaku_digits(1 + r.below(30)),
        zenkaku_digits(1 + r.below(20))
    );
    if r.chance(200) {
        address.push('\u{3000}');
        address.push_str(r.pick::<&str>(data::BUILDINGS));
        address.push_str(town.name);
        address.push_str(&zenkaku_digits((1 + r.below(8)) * 100 + 1 + r.below(12)));
        address.push_str("号室");
    }
    let flagged = role == 0 || role == 1 || role == 3 || (role == 100 && r.chance(20));
    let flags = flagged.then(|| {
        let set_date = minus_days(as_of, 1 + r.below(720));
        let set_time = ts(set_date, 9 + r.below(8) as u32, r.below(60) as u32, r.below(60) as u32);
        let support_end = Some(minus_days(set_date.add_months(12), 1));
        let k = match role {
            0 => 0,
            1 => 800,
            3 => 700,
            _ => r.below(1000),
        };
        match k {
            // 住基 DV等支援措置: both protective flags, set ex officio with the measure's end date
            0..500 => Flags {
                self_info: Some("2"),
                non_disclosure: true,
                auto_response: false,
                source: "2",
                set_time,
                support_end,
            },
            500..700 => Flags {
                self_info: Some("2"),
                non_disclosure: true,
                auto_response: false,
                source: "1",
                set_time,
                support_end: None,
            },
            700..800 => Flags {
                self_info: Some("1"),
                non_disclosure: false,
                auto_response: false,
                source: "3",
                set_time,
                support_end: None,
            },
            800..920 => Flags {
                self_info: None,
                non_disclosure: true,
                auto_response: false,
                source: "1",
                set_time,
                support_end: None,
            },
            _ => Flags {
                self_info: None,
                non_disclosure: false,
                auto_response: true,
                source: "9",
                set_time,
                support_end: None,
            },
        }
    });
    Person {
        muni,
        index: i,
        name,
        kana,
        sex,
        birth,
        kokuho_since,
        family: family_class,
        my_number,
        post: town.post,
        address,
        transition,
        flags,
    }
}

const MUNICIPALITIES_LEN: u64 = data::MUNICIPALITIES.len() as u64;

/// Birthdate whose 75th birthday (後期 acquisition) is `a`. A 1 March acquisition in a common
/// year stays 1 March 75 years earlier; a 29 February one moves to 28 February (still within the
/// window, one day earlier).
fn birth_for_acquisition(a: Date) -> Date {
    use chrono::Datelike;
    let y = a.0.year() - 75;
    Date::ymd(y, a.0.month(), a.0.day()).unwrap_or_else(|| Date::ymd(y, 2, 28).expect("28 Feb"))
}

trait YearSub {
    fn with_year_sub(self, years: u64) -> chrono::NaiveDate;
}
impl YearSub for chrono::NaiveDate {
    fn with_year_sub(self, years: u64) -> chrono::NaiveDate {
        use chrono::Datelike;
        let y = self.year() - years as i32;
        self.with_year(y)
            .unwrap_or_else(|| chrono::NaiveDate::from_ymd_opt(y, 2, 28).expect("28 Feb"))
    }
}

struct Out {
    name: String,
    w: RecordWriter<BufWriter<std::fs::File>>,
    replaced: u64,
}

impl Out {
    fn put(&mut self, row: &mut Row) -> anyhow::Result<()> {
        let replaced = row
            .write_to(&mut self.w)
            .with_context(|| format!("writing {}", self.name))?;
        self.replaced += replaced.len() as u64;
        Ok(())
    }
}

/// Per-municipality 国保 files.
struct MuniOuts {
    change: Out,
    flags: Out,
    fukuhon: Out,
    handoff: Out,
}

fn file_identifier(seed: u64, abbr: &str, sender: &str, as_of: Date) -> String {
    format!("G{:08X}-{abbr}-{sender}-{as_of}", mix64(seed) as u32)
}

/// Fills `fc` as a whole-subscriber (Scope 1) FlagChange row.
#[allow(clippy::too_many_arguments)]
fn subscriber_flag(
    fc: &mut Row,
    time: &str,
    flag_type: &str,
    operation: &str,
    insurer: &str,
    key: &str,
    reason: &str,
    source: &str,
    support_end: &str,
) {
    fc.set("EffectiveTime", time)
        .set("FlagType", flag_type)
        .set("Operation", operation)
        .set("Scope", "1")
        .set("InsurerNumber", insurer)
        .set("SubscriberKey", key)
        .set("InfoCode", "")
        .set("ReasonCode", reason)
        .set("Source", source)
        .set("SupportMeasureEndDate", support_end);
}

/// Opens one generated file: header, name `<Kind>_<sender>_<seq>.<ext>`, buffered writer.
#[allow(clippy::too_many_arguments)]
fn open_out(
    opts: &GenerateOptions,
    out: &Path,
    policy: UnmappablePolicy,
    kind: FileKind,
    sender: &str,
    seq: u64,
    abbr: &str,
    id_date: Date,
    creation: Timestamp,
) -> anyhow::Result<Out> {
    let header = FileHeader {
        kind,
        file_identifier: file_identifier(opts.seed, abbr, sender, id_date),
        sender: crate::domain::InsurerNumber::parse(sender).expect("generated insurer numbers are valid"),
        creation_time: creation,
        file_sequence: seq,
        format: opts.format,
        encoding: opts.encoding,
    };
    let name = format!("{}_{sender}_{seq:04}.{}", kind.name(), opts.format.extension());
    let path = out.join(&name);
    let f = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let w = RecordWriter::start(BufWriter::with_capacity(1 << 20, f), header, policy)?;
    Ok(Out { name, w, replaced: 0 })
}

/// Writes a synthetic inbox to `out`: per municipality a 国保 SubscriberChange, FlagChange,
/// Fukuhon and AgeTransitionHandoff file, and the union's SubscriberChange file with the 後期
/// registrations. Streams: one pass over the population, every file open at once.
pub fn generate(opts: &GenerateOptions, out: &Path) -> anyhow::Result<Vec<GeneratedFile>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let as_of = opts.as_of;
    let night = as_of.pred();
    let policy = match opts.encoding {
        TextEncoding::Utf8 => UnmappablePolicy::Reject,
        TextEncoding::ShiftJis => UnmappablePolicy::Replace,
    };
    let mut minute = 0i64;
    let mut open = |kind: FileKind, sender: &str, seq: u64, abbr: &str| -> anyhow::Result<Out> {
        let creation = Timestamp(ts(night, 19, 0, 0).0 + TimeDelta::minutes(minute));
        minute += 5;
        open_out(opts, out, policy, kind, sender, seq, abbr, as_of, creation)
    };
    let mut munis = Vec::new();
    for m in data::MUNICIPALITIES {
        let k = kokuho_insurer_number(m.code_body);
        munis.push(MuniOuts {
            change: open(FileKind::SubscriberChange, &k, 1, "SC")?,
            flags: open(FileKind::FlagChange, &k, 2, "FC")?,
            fukuhon: open(FileKind::Fukuhon, &k, 3, "FK")?,
            handoff: open(FileKind::AgeTransitionHandoff, &k, 4, "HO")?,
        });
    }
    let union_sender = kouki_insurer_number(data::MUNICIPALITIES[0].code_body);
    let mut union = open(FileKind::SubscriberChange, &union_sender, 1, "SC")?;
    let mut sc = Row::new(FileKind::SubscriberChange);
    let mut fc = Row::new(FileKind::FlagChange);
    let mut fk = Row::new(FileKind::Fukuhon);
    let mut ho = Row::new(FileKind::AgeTransitionHandoff);
    let codes: Vec<(String, String, String)> = data::MUNICIPALITIES
        .iter()
        .map(|m| {
            (
                municipality_code(m.code_body),
                kokuho_insurer_number(m.code_body),
                kouki_insurer_number(m.code_body),
            )
        })
        .collect();
    for i in 0..opts.subscribers {
        let p = person(opts.seed, i, as_of);
        let mut r = SplitMix64::new(mix64(opts.seed ^ 0xF00D) ^ mix64(i));
        let (muni_code, kokuho, kouki) = &codes[p.muni];
        let o = &mut munis[p.muni];
        let key = format!("{}{:010}", &kokuho[2..], i + 1);
        let resident = format!("{:010}", i + 1);
        let card = format!("{:08}", i + 1);
        let symbol = &kokuho[4..7];
        let branch = if p.family == "1" { "01" } else { "02" };
        let my_number = p.my_number.as_deref().unwrap_or("");

        // 国保 資格取得 (and, on the disability route, the loss on the certification date)
        sc.set("ChangeType", "1")
            .set("EffectiveDate", p.kokuho_since.to_string())
            .set("InsurerNumber", kokuho)
            .set("SubscriberKey", &key)
            .set("InsuredCardSymbol", symbol)
            .set("InsuredIdentificationNumber", &card)
            .set("InsuredBranchNumber", branch)
            .set("IndividualNumber", my_number)
            .set("MunicipalityCode", muni_code)
            .set("ResidentCode", &resident)
            .set("Name", &p.name)
            .set("NameKana", &p.kana)
            .set("Sex1", p.sex)
            .set("Birthdate", p.birth.to_string())
            .set("QualificationDate", p.kokuho_since.to_string())
            .set(
                "ReasonOfQualification",
                if p.birth.age_on(p.kokuho_since) == 0 {
                    "99"
                } else {
                    "04"
                },
            )
            .set("DisqualificationDate", "")
            .set("ReasonOfLoss", "")
            .set("PersonalFamilyClassification", p.family)
            .set("PostNumber", p.post)
            .set("Address", &p.address);
        o.change.put(&mut sc)?;
        if let Some(Transition::Disability(cert)) = p.transition {
            let mut loss = Row::new(FileKind::SubscriberChange);
            loss.set("ChangeType", "3")
                .set("EffectiveDate", cert.to_string())
                .set("InsurerNumber", kokuho)
                .set("SubscriberKey", &key)
                .set("DisqualificationDate", cert.to_string())
                .set("ReasonOfLoss", "03");
            o.change.put(&mut loss)?;
        }

        // flags at the 国保 insurer
        if let Some(f) = &p.flags {
            let mut put = |o: &mut Out, flag_type: &str, reason: &str| -> anyhow::Result<()> {
                let end = f.support_end.map(|d| d.to_string()).unwrap_or_default();
                let time = f.set_time.to_string();
                subscriber_flag(&mut fc, &time, flag_type, "1", kokuho, &key, reason, f.source, &end);
                o.put(&mut fc)
            };
            if let Some(reason) = f.self_info {
                put(&mut o.flags, "3", reason)?;
            }
            if f.non_disclosure {
                put(&mut o.flags, "2", "")?;
            }
            if f.auto_response {
                put(&mut o.flags, "1", "")?;
            }
        }

        // 副本: 資格情報 always, the others by chance
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
        let d = disclosure(&mut r);
        base(&mut fk, "TM00000000000001", p.kokuho_since, d);
        fk.item("001", kokuho.as_str()).item("002", p.kokuho_since.to_string());
        if let Some(Transition::Disability(cert)) = p.transition {
            fk.item("003", cert.to_string());
        }
        fk.item("004", p.family);
        o.fukuhon.put(&mut fk)?;
        if r.chance(200) {
            // 診療年月 one to six months back
            let ym = minus_days(as_of, 30 * (1 + r.below(6))).to_string()[..6].to_owned();
            let d = disclosure(&mut r);
            base(&mut fk, "TM00000000000002", night.max(p.kokuho_since), d);
            fk.item("001", ym).item("002", (8_000 + r.below(300_000)).to_string());
            o.fukuhon.put(&mut fk)?;
        }
        if p.birth.age_on(as_of) >= 18 && r.chance(250) {
            use chrono::Datelike;
            let y = if as_of.0.month() >= 8 {
                as_of.0.year() + 1
            } else {
                as_of.0.year()
            };
            let d = disclosure(&mut r);
            base(&mut fk, "TM00000000000003", night.max(p.kokuho_since), d);
            fk.item("001", *r.pick(data::LIMIT_CLASSES))
                .item("002", format!("{y}0731"));
            o.fukuhon.put(&mut fk)?;
        }
        if (40..75).contains(&p.birth.age_on(as_of)) && r.chance(300) {
            // a 特定健診 of this insurer: not before the member joined it (R1 would apply it first)
            let exam = minus_days(as_of, 20 + r.below(330)).max(p.kokuho_since);
            let d = disclosure(&mut r);
            base(&mut fk, "TM00000000000004", exam, d);
            fk.item("001", exam.to_string()).item("002", *r.pick(data::FINDINGS));
            o.fukuhon.put(&mut fk)?;
        }

        // the union's registration, and the hand-off of flagged members turning 75
        if let Some(t) = p.transition {
            let (q, reason) = match t {
                Transition::AgeReached(a) => (a, "01"),
                Transition::Disability(c) => (c, "02"),
            };
            sc.set("ChangeType", "1")
                .set("EffectiveDate", q.to_string())
                .set("InsurerNumber", kouki)
                .set("SubscriberKey", format!("{kouki}{:08}", i + 1))
                .set("InsuredCardSymbol", "")
                .set("InsuredIdentificationNumber", format!("{:08}", 10_000_000 + p.index))
                .set("InsuredBranchNumber", "00")
                .set("QualificationDate", q.to_string())
                .set("ReasonOfQualification", reason)
                .set("PersonalFamilyClassification", "1");
            union.put(&mut sc)?;
            if let (Transition::AgeReached(a), Some(f)) = (t, p.flags.as_ref().filter(|f| f.protective())) {
                ho.set("SourceInsurerNumber", kokuho)
                    .set("SourceSubscriberKey", &key)
                    .set("IndividualNumber", my_number)
                    .set("MunicipalityCode", muni_code)
                    .set("ResidentCode", &resident)
                    .set("Name", &p.name)
                    .set("NameKana", &p.kana)
                    .set("Sex1", p.sex)
                    .set("Birthdate", p.birth.to_string())
                    .set("AgeTransitionDate", a.to_string())
                    .set("SelfInfoProvisionProhibitedFlg", f.self_info.unwrap_or("0"))
                    .set("NonDisclosureFlg", if f.non_disclosure { "1" } else { "0" })
                    .set("AutoResponseProhibitedFlg", if f.auto_response { "1" } else { "0" })
                    .set("FlagSetTime", f.set_time.to_string());
                o.handoff.put(&mut ho)?;
            }
        }
    }
    let mut done = Vec::new();
    let mut finish = |o: Out, kind: FileKind| -> anyhow::Result<()> {
        let (mut bw, records, bytes) = o.w.finish().with_context(|| format!("writing {}", o.name))?;
        bw.flush()?;
        bw.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        done.push(GeneratedFile {
            name: o.name,
            kind,
            records,
            bytes,
            replaced: o.replaced,
        });
        Ok(())
    };
    for m in munis {
        finish(m.change, FileKind::SubscriberChange)?;
        finish(m.flags, FileKind::FlagChange)?;
        finish(m.fukuhon, FileKind::Fukuhon)?;
        finish(m.handoff, FileKind::AgeTransitionHandoff)?;
    }
    finish(union, FileKind::SubscriberChange)?;
    Ok(done)
}

/// Writes a nightly delta of `changes` changes against the population [`generate`] wrote with
/// the same seed, `subscribers` and as-of: address changes (記載事項変更), losses (資格喪失), flag
/// settings and releases, and new 国保 members. Changes are dated the day after the base as-of
/// (run the delta with `--as-of` one day later); each touches a different person.
pub fn generate_delta(opts: &GenerateOptions, changes: u64, out: &Path) -> anyhow::Result<Vec<GeneratedFile>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    anyhow::ensure!(
        changes <= opts.subscribers,
        "a delta touches each person once: at most --subscribers changes"
    );
    let base = opts.as_of;
    let day = base.succ();
    let policy = match opts.encoding {
        TextEncoding::Utf8 => UnmappablePolicy::Reject,
        TextEncoding::ShiftJis => UnmappablePolicy::Replace,
    };
    let mut minute = 0i64;
    let mut open = |kind: FileKind, sender: &str, seq: u64, abbr: &str| -> anyhow::Result<Out> {
        let creation = Timestamp(ts(base, 22, 0, 0).0 + TimeDelta::minutes(minute));
        minute += 5;
        open_out(opts, out, policy, kind, sender, seq, abbr, day, creation)
    };
    let codes: Vec<(String, String)> = data::MUNICIPALITIES
        .iter()
        .map(|m| (municipality_code(m.code_body), kokuho_insurer_number(m.code_body)))
        .collect();
    let mut outs = Vec::new();
    for (_, k) in &codes {
        outs.push((
            open(FileKind::SubscriberChange, k, 5, "DSC")?,
            open(FileKind::FlagChange, k, 6, "DFC")?,
        ));
    }
    let mut sc = Row::new(FileKind::SubscriberChange);
    let mut fc = Row::new(FileKind::FlagChange);
    let mut seen = std::collections::HashSet::new();
    let mut r = SplitMix64::new(mix64(opts.seed ^ 0xDE17A) ^ mix64(day.to_string().parse::<u64>().expect("digits")));
    let mut picked = Vec::with_capacity(changes as usize);
    while (picked.len() as u64) < changes {
        let i = r.below(opts.subscribers);
        if seen.insert(i) {
            picked.push(i);
        }
    }
    picked.sort_unstable();
    let time = ts(day, 9, 0, 0).to_string();
    let clear = |row: &mut Row| {
        for f in FileKind::SubscriberChange.fields().iter().skip(1) {
            row.set(f, "");
        }
    };
    for i in picked {
        let p = person(opts.seed, i, base);
        let (_, kokuho) = &codes[p.muni];
        let (change, flags) = &mut outs[p.muni];
        let key = format!("{}{:010}", &kokuho[2..], i + 1);
        let lost = matches!(p.transition, Some(Transition::Disability(_)));
        let protective = p.flags.as_ref().filter(|f| f.protective());
        let what = r.below(100);
        clear(&mut sc);
        sc.set("EffectiveDate", day.to_string())
            .set("InsurerNumber", kokuho)
            .set("SubscriberKey", &key);
        match what {
            45..60 if !lost => {
                sc.set("ChangeType", "3")
                    .set("DisqualificationDate", day.to_string())
                    .set("ReasonOfLoss", "99");
                change.put(&mut sc)?;
            }
            60..80 if !lost && !p.flags.as_ref().is_some_and(|f| f.non_disclosure) => {
                subscriber_flag(&mut fc, &time, "2", "1", kokuho, &key, "", "1", "");
                flags.put(&mut fc)?;
            }
            80..90 if !lost && protective.is_some() => {
                let f = protective.expect("checked");
                let types = [("3", f.self_info.is_some()), ("2", f.non_disclosure)];
                for (t, _) in types.iter().filter(|(_, on)| *on) {
                    subscriber_flag(&mut fc, &time, t, "2", kokuho, &key, "", "1", "");
                    flags.put(&mut fc)?;
                }
            }
            _ if !lost => {
                // 転居 within the municipality: new building number
                sc.set("ChangeType", "2")
                    .set("Address", format!("{}－{}", p.address, 1 + r.below(9)));
                change.put(&mut sc)?;
            }
            _ => {
                // already lost at 国保 (disability route): a name-reading correction at the union is
                // out of scope here, so record a 国保 address change of the lost record instead
                sc.set("ChangeType", "2").set("PostNumber", p.post);
                change.put(&mut sc)?;
            }
        }
    }
    let mut done = Vec::new();
    for (c, f) in outs {
        for (o, kind) in [(c, FileKind::SubscriberChange), (f, FileKind::FlagChange)] {
            let (mut bw, records, bytes) = o.w.finish().with_context(|| format!("writing {}", o.name))?;
            bw.flush()?;
            bw.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            done.push(GeneratedFile {
                name: o.name,
                kind,
                records,
                bytes,
                replaced: o.replaced,
            });
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IndividualNumber, InsurerNumber, MunicipalityCode};

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
            let p = person(7, i, as_of);
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
        assert!(person(7, 0, as_of).flags.is_some() && person(7, 0, as_of).transition.is_some());
    }

    fn opts(seed: u64, format: Format) -> GenerateOptions {
        GenerateOptions {
            subscribers: 3000,
            seed,
            format,
            encoding: TextEncoding::Utf8,
            as_of: Date::parse("20261201").unwrap(),
        }
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

    /// Every generated record passes the shared record builder, and the union's registrations,
    /// flags and hand-offs are consistent with each other.
    #[test]
    fn generated_records_are_valid_and_consistent() {
        use crate::domain::{Catalog, RawRecord, build};
        let dir = tempfile::tempdir().unwrap();
        let stats = generate(&opts(9, Format::Csv), dir.path()).unwrap();
        assert_eq!(stats.len(), 17);
        let catalog = Catalog::default_catalog();
        let as_of = Date::parse("20261201").unwrap();
        let mut counts = std::collections::HashMap::<&str, u64>::new();
        let mut union_future = std::collections::HashSet::new();
        let mut handoff_dates = Vec::new();
        for f in &stats {
            let mut rd = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_path(dir.path().join(&f.name))
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
                        use crate::domain::Record;
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
                            Record::AgeTransitionHandoff(h) => {
                                assert!(h.self_info.is_some() || h.non_disclosure);
                                handoff_dates.push((h.resident.as_str().to_owned(), h.transition_date));
                            }
                        }
                    }
                    "T" => assert_eq!(row[1].parse::<u64>().unwrap(), n),
                    other => panic!("row kind {other}"),
                }
            }
            assert_eq!(n, f.records);
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
}
