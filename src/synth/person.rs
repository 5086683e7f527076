//! One synthetic 国保 subscriber, derived from `(seed, index)` alone: name and reading, birthdate
//! and route to the union, address, flags. Every draw comes from the person's own [`SplitMix64`]
//! in a fixed order, so a person never depends on another and any index can be made on its own.

use super::{SplitMix64, data, hankaku_kana, minus_days, mix64, my_number, plus_days, ts, zenkaku_digits};
use crate::domain::{Date, Timestamp};
use data::NameReading;

/// The protective and other flags a synthetic person holds at their 国保 insurer.
#[derive(Clone, Debug)]
pub(super) struct Flags {
    /// 自己情報提供不可 with this ReasonCode.
    pub self_info: Option<&'static str>,
    pub non_disclosure: bool,
    pub auto_response: bool,
    pub source: &'static str,
    pub set_time: Timestamp,
    /// 住基支援措置 end (Source 2 only); may already be past, as happens when renewal is late.
    pub support_end: Option<Date>,
}

impl Flags {
    pub fn protective(&self) -> bool {
        self.self_info.is_some() || self.non_disclosure
    }
}

/// How a synthetic person reaches the union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transition {
    /// Turns 75 within the lead window: future-dated acquisition, reason 01.
    AgeReached(Date),
    /// 障害認定 at 65–74: acquisition on the certification date (past), reason 02, 国保 lost that day.
    Disability(Date),
}

/// One synthetic 国保 subscriber, derived from (seed, index) alone.
pub(super) struct Person {
    pub muni: usize,
    pub index: u64,
    pub name: String,
    pub kana: String,
    pub sex: &'static str,
    pub birth: Date,
    pub kokuho_since: Date,
    pub family: &'static str,
    pub my_number: Option<String>,
    pub post: &'static str,
    pub address: String,
    pub transition: Option<Transition>,
    pub flags: Option<Flags>,
}

/// Months between the union's future-dated registration and the 75th birthday it is for.
pub(super) const LEAD_MONTHS: u32 = 6;

const MUNICIPALITIES_LEN: u64 = data::MUNICIPALITIES.len() as u64;

/// Fixed roles for the first indices, so that even a tiny N exercises every path: 0 a flagged
/// member turning 75, 1 a flagged member on the disability route, 2 an unflagged member turning
/// 75, 3 a flagged member; every other index is [`ANYONE`].
type Role = u64;
const ANYONE: Role = 100;

pub(super) fn person(seed: u64, i: u64, as_of: Date, flagged_per_million: u32) -> Person {
    let mut r = SplitMix64::new(mix64(seed) ^ mix64(i.wrapping_add(0x5DEE_CE66_D1CE_4E5B)));
    let muni = r.below(MUNICIPALITIES_LEN) as usize;
    let m = &data::MUNICIPALITIES[muni];
    let sex = match r.below(1000) {
        0 => "3",
        x if x < 490 => "1",
        _ => "2",
    };
    let (name, kana) = name_and_reading(&mut r, sex);
    let role: Role = if i < 4 { i } else { ANYONE };
    let lead_end = as_of.add_months(LEAD_MONTHS);
    let birth = birthdate(&mut r, role, as_of, lead_end);
    let age = birth.age_on(as_of);
    let transition = transition(&mut r, role, birth, as_of, lead_end);
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
    let address = address(&mut r, m, town);
    // the fixed roles keep their example flags unless no one is to be flagged (role 2 is the
    // unflagged transition unless everyone is)
    let flagged = match role {
        0 | 1 | 3 => flagged_per_million > 0,
        2 => flagged_per_million >= 1_000_000,
        _ => chance_per_million(&mut r, flagged_per_million),
    };
    let flags = flagged.then(|| flags(&mut r, role, as_of));
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

/// Name and reading (氏名, カナ氏名); one in five hundred family names lies outside CP932.
fn name_and_reading(r: &mut SplitMix64, sex: &str) -> (String, String) {
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
    (name, kana)
}

/// The birthdate: 3% (and roles 0 and 2) turn 75 within the lead window; the others are younger
/// than 75 on `as_of`.
fn birthdate(r: &mut SplitMix64, role: Role, as_of: Date, lead_end: Date) -> Date {
    let turning = role == 0 || role == 2 || (role == ANYONE && r.chance(30));
    if turning {
        // 75th birthday within (as_of, as_of + 6 months]
        let span = (lead_end.0 - as_of.0).num_days() as u64;
        let a = plus_days(as_of, 1 + r.below(span));
        return birth_for_acquisition(a);
    }
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
}

/// The route to the union, if any: the 75th birthday within the lead window, or (1% of those
/// aged 65–74, and role 1) a 障害認定 up to 120 days back.
fn transition(r: &mut SplitMix64, role: Role, birth: Date, as_of: Date, lead_end: Date) -> Option<Transition> {
    let a = birth.kouki_acquisition_date();
    let age = birth.age_on(as_of);
    if as_of < a && a <= lead_end {
        Some(Transition::AgeReached(a))
    } else if (65..75).contains(&age) && (role == 1 || (role == ANYONE && r.chance(10))) {
        let b65 = birth.birthday_at_age(65);
        let cert = minus_days(as_of, 1 + r.below(120)).max(b65);
        Some(Transition::Disability(cert))
    } else {
        None
    }
}

/// An address in the municipality's town, sometimes with a building and room.
fn address(r: &mut SplitMix64, m: &data::Municipality, town: &data::Town) -> String {
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
    address
}

/// The flags of a flagged member: half 住基 DV等支援措置 (both protective flags, ex officio, with
/// the measure's end date), the rest by the shares below.
fn flags(r: &mut SplitMix64, role: Role, as_of: Date) -> Flags {
    let set_date = minus_days(as_of, 1 + r.below(720));
    let set_time = ts(set_date, 9 + r.below(8) as u32, r.below(60) as u32, r.below(60) as u32);
    let support_end = Some(minus_days(set_date.add_months(12), 1));
    let k = match role {
        0 => 0,
        1 => 800,
        3 => 700,
        _ => r.below(1000),
    };
    let (self_info, non_disclosure, auto_response, source, support_end) = match k {
        0..500 => (Some("2"), true, false, "2", support_end),
        500..700 => (Some("2"), true, false, "1", None),
        700..800 => (Some("1"), false, false, "3", None),
        800..920 => (None, true, false, "1", None),
        _ => (None, false, true, "9", None),
    };
    Flags {
        self_info,
        non_disclosure,
        auto_response,
        source,
        set_time,
        support_end,
    }
}

/// True with probability `per_million / 1000000`. Draws one number; for whole per-mille values it
/// decides exactly as [`SplitMix64::chance`] would (the per-mille part is the draw's low digits).
pub(super) fn chance_per_million(r: &mut SplitMix64, per_million: u32) -> bool {
    let x = r.next_u64();
    let v = (x % 1000) * 1000 + (x / 1000) % 1000;
    v < u64::from(per_million)
}

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
