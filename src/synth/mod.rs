//! Synthetic data: the reviewed sample set ([`samples`]) and the `generate` command's streaming
//! generator of large, deterministic inboxes for load tests and demos.
//!
//! Determinism: every person is derived from `(seed, index)` alone through a hand-written
//! splitmix64, so the same arguments give byte-identical files on every platform and any N can be
//! streamed without holding the population in memory.
//!
//! Layout: this file holds the random source, the derived numbers, [`Row`] and the options;
//! [`person`] makes one synthetic subscriber, [`files`] opens, fills and finishes the files, and
//! [`generate()`]/[`generate_delta`] write a population and a night's delta.

pub mod data;
mod files;
mod generate;
mod person;
pub mod samples;

pub use generate::{generate, generate_delta};

use crate::domain::{
    Date, FileKind, Timestamp, individual_number_check_digit, insurer_check_digit, municipality_check_digit,
    text::normalize_kana,
};
use crate::formats::writer::RecordWriter;
use crate::formats::{Format, TextEncoding};
use chrono::{Days, NaiveTime};
use std::io::Write;

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

#[cfg(test)]
mod tests;
