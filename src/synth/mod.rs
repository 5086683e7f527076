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

/// Share of 国保 members with flags when `--flagged-ratio` is not given: 2%, in millionths.
pub const DEFAULT_FLAGGED_PER_MILLION: u32 = 20_000;

/// The 副本 InfoCodes the generator writes, in the order `--fukuhon-per-subscriber K` takes the
/// first K of them (all are in the bundled layout catalog).
pub const FUKUHON_INFO_CODES: [&str; 4] = [
    "TM00000000000001",
    "TM00000000000002",
    "TM00000000000003",
    "TM00000000000004",
];

/// Options of `nhi-linkage generate`.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub subscribers: u64,
    pub seed: u64,
    pub format: Format,
    pub encoding: TextEncoding,
    pub as_of: Date,
    /// Share of 国保 members holding flags, in millionths (0 to 1000000); see
    /// [`DEFAULT_FLAGGED_PER_MILLION`].
    pub flagged_per_million: u32,
    /// 副本 records per subscriber (0 to 4, the first K of [`FUKUHON_INFO_CODES`]); `None`: 資格情報
    /// for everyone and the other three by chance (about 1.6 per subscriber).
    pub fukuhon_per_subscriber: Option<u32>,
    /// A delta's new 国保 members get the indices from this one on (`None`: from `subscribers`, just
    /// after the population). Give the size of a larger population of the same seed, as-of and flag
    /// share to run one delta against both: its changed members are drawn from the first
    /// `subscribers`, the same people in both, and its new members are new in both.
    pub delta_newcomers_from: Option<u64>,
}

impl GenerateOptions {
    /// Options with the default flag share and 副本 mix.
    pub fn new(subscribers: u64, seed: u64, format: Format, encoding: TextEncoding, as_of: Date) -> GenerateOptions {
        GenerateOptions {
            subscribers,
            seed,
            format,
            encoding,
            as_of,
            flagged_per_million: DEFAULT_FLAGGED_PER_MILLION,
            fukuhon_per_subscriber: None,
            delta_newcomers_from: None,
        }
    }

    /// Checks the combination (the command line checks each value's range).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=99_999_999).contains(&self.subscribers),
            "--subscribers must be between 1 and 99999999"
        );
        anyhow::ensure!(
            self.flagged_per_million <= 1_000_000,
            "--flagged-ratio must be between 0 and 1"
        );
        if let Some(k) = self.fukuhon_per_subscriber {
            anyhow::ensure!(
                k as usize <= FUKUHON_INFO_CODES.len(),
                "--fukuhon-per-subscriber must be between 0 and {} (the InfoCodes of the bundled catalog)",
                FUKUHON_INFO_CODES.len()
            );
        }
        if let Some(from) = self.delta_newcomers_from {
            anyhow::ensure!(
                (self.subscribers..=99_999_999).contains(&from),
                "--newcomers-from {from}: new members must not be members of the population: give a number from \
                 --subscribers ({}) to 99999999",
                self.subscribers
            );
        }
        Ok(())
    }
}

/// True with probability `per_million / 1000000`. Draws one number; for whole per-mille values it
/// decides exactly as [`SplitMix64::chance`] would (the per-mille part is the draw's low digits).
fn chance_per_million(r: &mut SplitMix64, per_million: u32) -> bool {
    let x = r.next_u64();
    let v = (x % 1000) * 1000 + (x / 1000) % 1000;
    v < u64::from(per_million)
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

fn person(seed: u64, i: u64, as_of: Date, flagged_per_million: u32) -> Person {
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
    // the fixed roles keep their example flags unless no one is to be flagged (role 2 is the
    // unflagged transition unless everyone is)
    let flagged = match role {
        0 | 1 | 3 => flagged_per_million > 0,
        2 => flagged_per_million >= 1_000_000,
        _ => chance_per_million(&mut r, flagged_per_million),
    };
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
    /// Writes the trailer, flushes and syncs the file.
    fn finish(self, kind: FileKind) -> anyhow::Result<GeneratedFile> {
        let (mut bw, records, bytes) = self.w.finish().with_context(|| format!("writing {}", self.name))?;
        bw.flush()?;
        bw.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(GeneratedFile {
            name: self.name,
            kind,
            records,
            bytes,
            replaced: self.replaced,
        })
    }

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

/// A 国保 member's SubscriberKey: the insurer number without its leading zeros, then the index.
fn kokuho_key(kokuho: &str, i: u64) -> String {
    format!("{}{:010}", &kokuho[2..], i + 1)
}

/// Fills `sc` as the person's 国保 資格取得 on `since` (every field set).
fn fill_acquisition(sc: &mut Row, p: &Person, kokuho: &str, muni_code: &str, since: Date, reason: &str) {
    let i = p.index;
    sc.set("ChangeType", "1")
        .set("EffectiveDate", since.to_string())
        .set("InsurerNumber", kokuho)
        .set("SubscriberKey", kokuho_key(kokuho, i))
        .set("InsuredCardSymbol", &kokuho[4..7])
        .set("InsuredIdentificationNumber", format!("{:08}", i + 1))
        .set("InsuredBranchNumber", if p.family == "1" { "01" } else { "02" })
        .set("IndividualNumber", p.my_number.as_deref().unwrap_or(""))
        .set("MunicipalityCode", muni_code)
        .set("ResidentCode", format!("{:010}", i + 1))
        .set("Name", &p.name)
        .set("NameKana", &p.kana)
        .set("Sex1", p.sex)
        .set("Birthdate", p.birth.to_string())
        .set("QualificationDate", since.to_string())
        .set("ReasonOfQualification", reason)
        .set("DisqualificationDate", "")
        .set("ReasonOfLoss", "")
        .set("PersonalFamilyClassification", p.family)
        .set("PostNumber", p.post)
        .set("Address", &p.address);
}

/// Turns `sc`, filled by [`fill_acquisition`] for the same person, into the union's 後期 資格取得 on
/// `q` (identity, municipality, 宛名番号 and address kept, so that the carry can match).
fn fill_union_registration(sc: &mut Row, p: &Person, kouki: &str, q: Date, reason: &str) {
    sc.set("ChangeType", "1")
        .set("EffectiveDate", q.to_string())
        .set("InsurerNumber", kouki)
        .set("SubscriberKey", format!("{kouki}{:08}", p.index + 1))
        .set("InsuredCardSymbol", "")
        .set("InsuredIdentificationNumber", format!("{:08}", 10_000_000 + p.index))
        .set("InsuredBranchNumber", "00")
        .set("QualificationDate", q.to_string())
        .set("ReasonOfQualification", reason)
        .set("PersonalFamilyClassification", "1");
}

/// Fills `ho` as the 国保's hand-off of a flagged member turning 75 on `a`.
fn fill_handoff(ho: &mut Row, p: &Person, kokuho: &str, muni_code: &str, a: Date, f: &Flags) {
    ho.set("SourceInsurerNumber", kokuho)
        .set("SourceSubscriberKey", kokuho_key(kokuho, p.index))
        .set("IndividualNumber", p.my_number.as_deref().unwrap_or(""))
        .set("MunicipalityCode", muni_code)
        .set("ResidentCode", format!("{:010}", p.index + 1))
        .set("Name", &p.name)
        .set("NameKana", &p.kana)
        .set("Sex1", p.sex)
        .set("Birthdate", p.birth.to_string())
        .set("AgeTransitionDate", a.to_string())
        .set("SelfInfoProvisionProhibitedFlg", f.self_info.unwrap_or("0"))
        .set("NonDisclosureFlg", if f.non_disclosure { "1" } else { "0" })
        .set("AutoResponseProhibitedFlg", if f.auto_response { "1" } else { "0" })
        .set("FlagSetTime", f.set_time.to_string());
}

/// Writes the person's flags as Scope-1 settings (自己情報提供不可, 不開示該当, 自動応答不可 in that
/// order) at `time`.
fn put_flags(
    out: &mut Out,
    fc: &mut Row,
    f: &Flags,
    time: &str,
    end: &str,
    kokuho: &str,
    key: &str,
) -> anyhow::Result<()> {
    if let Some(reason) = f.self_info {
        subscriber_flag(fc, time, "3", "1", kokuho, key, reason, f.source, end);
        out.put(fc)?;
    }
    if f.non_disclosure {
        subscriber_flag(fc, time, "2", "1", kokuho, key, "", f.source, end);
        out.put(fc)?;
    }
    if f.auto_response {
        subscriber_flag(fc, time, "1", "1", kokuho, key, "", f.source, end);
        out.put(fc)?;
    }
    Ok(())
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
    opts.validate()?;
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
        let p = person(opts.seed, i, as_of, opts.flagged_per_million);
        let mut r = SplitMix64::new(mix64(opts.seed ^ 0xF00D) ^ mix64(i));
        let (muni_code, kokuho, kouki) = &codes[p.muni];
        let o = &mut munis[p.muni];
        let key = kokuho_key(kokuho, i);

        // 国保 資格取得 (and, on the disability route, the loss on the certification date)
        let reason = if p.birth.age_on(p.kokuho_since) == 0 {
            "99"
        } else {
            "04"
        };
        fill_acquisition(&mut sc, &p, kokuho, muni_code, p.kokuho_since, reason);
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
            let end = f.support_end.map(|d| d.to_string()).unwrap_or_default();
            put_flags(&mut o.flags, &mut fc, f, &f.set_time.to_string(), &end, kokuho, &key)?;
        }

        // 副本: 資格情報 always, the others by chance (or the first K InfoCodes)
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
            let d = disclosure(&mut r);
            base(&mut fk, FUKUHON_INFO_CODES[0], p.kokuho_since, d);
            fk.item("001", kokuho.as_str()).item("002", p.kokuho_since.to_string());
            if let Some(Transition::Disability(cert)) = p.transition {
                fk.item("003", cert.to_string());
            }
            fk.item("004", p.family);
            o.fukuhon.put(&mut fk)?;
        }
        if fixed(1).unwrap_or_else(|| r.chance(200)) {
            // 診療年月 one to six months back
            let ym = minus_days(as_of, 30 * (1 + r.below(6))).to_string()[..6].to_owned();
            let d = disclosure(&mut r);
            base(&mut fk, FUKUHON_INFO_CODES[1], night.max(p.kokuho_since), d);
            fk.item("001", ym).item("002", (8_000 + r.below(300_000)).to_string());
            o.fukuhon.put(&mut fk)?;
        }
        if fixed(2).unwrap_or_else(|| p.birth.age_on(as_of) >= 18 && r.chance(250)) {
            use chrono::Datelike;
            let y = if as_of.0.month() >= 8 {
                as_of.0.year() + 1
            } else {
                as_of.0.year()
            };
            let d = disclosure(&mut r);
            base(&mut fk, FUKUHON_INFO_CODES[2], night.max(p.kokuho_since), d);
            fk.item("001", *r.pick(data::LIMIT_CLASSES))
                .item("002", format!("{y}0731"));
            o.fukuhon.put(&mut fk)?;
        }
        if fixed(3).unwrap_or_else(|| (40..75).contains(&p.birth.age_on(as_of)) && r.chance(300)) {
            // a 特定健診 of this insurer: not before the member joined it (R1 would apply it first)
            let exam = minus_days(as_of, 20 + r.below(330)).max(p.kokuho_since);
            let d = disclosure(&mut r);
            base(&mut fk, FUKUHON_INFO_CODES[3], exam, d);
            fk.item("001", exam.to_string()).item("002", *r.pick(data::FINDINGS));
            o.fukuhon.put(&mut fk)?;
        }

        // the union's registration, and the hand-off of flagged members turning 75
        if let Some(t) = p.transition {
            let (q, reason) = match t {
                Transition::AgeReached(a) => (a, "01"),
                Transition::Disability(c) => (c, "02"),
            };
            fill_union_registration(&mut sc, &p, kouki, q, reason);
            union.put(&mut sc)?;
            if let (Transition::AgeReached(a), Some(f)) = (t, p.flags.as_ref().filter(|f| f.protective())) {
                fill_handoff(&mut ho, &p, kokuho, muni_code, a, f);
                o.handoff.put(&mut ho)?;
            }
        }
    }
    let mut done = Vec::new();
    let mut finish = |o: Out, kind: FileKind| -> anyhow::Result<()> {
        done.push(o.finish(kind)?);
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
    // members not registered at the union whose 75th birthday enters the lead window on `day`
    let (window_start, window_end) = (base.add_months(LEAD_MONTHS), day.add_months(LEAD_MONTHS));
    let turning: Vec<Person> = (0..opts.subscribers)
        .map(|i| person(opts.seed, i, base, opts.flagged_per_million))
        .filter(|p| {
            let a = p.birth.kouki_acquisition_date();
            p.transition.is_none() && window_start < a && a <= window_end
        })
        .collect();
    anyhow::ensure!(
        turning.len() as u64 <= changes,
        "--delta {changes}: on {day} the 75th birthdays of {} members enter the {LEAD_MONTHS}-month window and \
         their 後期 registrations are part of the delta: give at least --delta {}",
        turning.len(),
        turning.len()
    );
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
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
    let mut outs = Vec::new();
    for (_, k, _) in &codes {
        outs.push((
            open(FileKind::SubscriberChange, k, 5, "DSC")?,
            open(FileKind::FlagChange, k, 6, "DFC")?,
            open(FileKind::AgeTransitionHandoff, k, 7, "DHO")?,
        ));
    }
    let mut union = open(
        FileKind::SubscriberChange,
        &kouki_insurer_number(data::MUNICIPALITIES[0].code_body),
        2,
        "DSC",
    )?;
    let mut sc = Row::new(FileKind::SubscriberChange);
    let mut fc = Row::new(FileKind::FlagChange);
    let mut ho = Row::new(FileKind::AgeTransitionHandoff);
    let time = ts(day, 9, 0, 0).to_string();

    // 後期 registrations of the members entering the window (and the hand-offs of the flagged)
    for p in &turning {
        let (muni_code, kokuho, kouki) = &codes[p.muni];
        let a = p.birth.kouki_acquisition_date();
        fill_acquisition(&mut sc, p, kokuho, muni_code, p.kokuho_since, "04");
        fill_union_registration(&mut sc, p, kouki, a, "01");
        union.put(&mut sc)?;
        if let Some(f) = p.flags.as_ref().filter(|f| f.protective()) {
            fill_handoff(&mut ho, p, kokuho, muni_code, a, f);
            outs[p.muni].2.put(&mut ho)?;
        }
    }

    let others = changes - turning.len() as u64;
    let newcomers = others / 20;
    let mut r = SplitMix64::new(mix64(opts.seed ^ 0xDE17A) ^ mix64(day.to_string().parse::<u64>().expect("digits")));
    let mut seen: std::collections::HashSet<u64> = turning.iter().map(|p| p.index).collect();
    let mut picked = Vec::with_capacity((others - newcomers) as usize);
    while (picked.len() as u64) < others - newcomers {
        let i = r.below(opts.subscribers);
        if seen.insert(i) {
            picked.push(i);
        }
    }
    picked.sort_unstable();

    // new 国保 members (転入), indices after the population's (or from --newcomers-from); those
    // who would turn 75 within the lead window are left out (they would need a 後期 registration too)
    let mut written = 0;
    for j in opts.delta_newcomers_from.unwrap_or(opts.subscribers).. {
        if written == newcomers {
            break;
        }
        let p = person(opts.seed, j, base, opts.flagged_per_million);
        if p.transition.is_some() {
            continue;
        }
        let (muni_code, kokuho, _) = &codes[p.muni];
        let (change, flags, _) = &mut outs[p.muni];
        fill_acquisition(&mut sc, &p, kokuho, muni_code, day, "03");
        change.put(&mut sc)?;
        if let Some(f) = &p.flags {
            let end = f
                .support_end
                .map(|_| minus_days(day.add_months(12), 1).to_string())
                .unwrap_or_default();
            put_flags(flags, &mut fc, f, &time, &end, kokuho, &kokuho_key(kokuho, j))?;
        }
        written += 1;
    }

    let clear = |row: &mut Row| {
        for f in FileKind::SubscriberChange.fields().iter().skip(1) {
            row.set(f, "");
        }
    };
    for i in picked {
        let p = person(opts.seed, i, base, opts.flagged_per_million);
        let (_, kokuho, _) = &codes[p.muni];
        let (change, flags, _) = &mut outs[p.muni];
        let key = kokuho_key(kokuho, i);
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
    let mut finish = |o: Out, kind: FileKind| -> anyhow::Result<()> {
        done.push(o.finish(kind)?);
        Ok(())
    };
    for (c, f, h) in outs {
        finish(c, FileKind::SubscriberChange)?;
        finish(f, FileKind::FlagChange)?;
        finish(h, FileKind::AgeTransitionHandoff)?;
    }
    finish(union, FileKind::SubscriberChange)?;
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
}
