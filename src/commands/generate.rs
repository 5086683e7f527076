//! `nhi-linkage generate`: writes a deterministic synthetic inbox (same arguments → the same
//! bytes) for load tests, demos and schema checks. See [`crate::synth`].

use super::Exit;
use crate::domain::Date;
use crate::formats::{Format, TextEncoding};
use crate::synth::{GenerateOptions, generate, generate_delta};
use std::path::PathBuf;

/// Write a deterministic synthetic inbox (国保 and 後期 files) for tests and demos
///
/// For four Tokyo municipalities: a 国保 SubscriberChange, FlagChange (2% of members flagged
/// unless --flagged-ratio says otherwise), Fukuhon (副本) and AgeTransitionHandoff file; plus the
/// union's SubscriberChange with the 後期 registrations: members turning 75 within 6 months of
/// --as-of (future-dated, reason 01) and 障害認定 members aged 65–74 (reason 02).
///
/// All names, numbers and addresses are invented; My Numbers carry valid check digits but are
/// synthetic. The output folder is created if needed; files of the same name are overwritten.
/// Shift_JIS output writes the rare character outside CP932 (𠮷) as ● (文字同定).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of 国保 subscribers to generate (1 to 99999999).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=99_999_999))]
    pub subscribers: u64,
    /// Folder to write the files to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of the generator: the same seed and arguments give byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// File syntax (`--format` is its older spelling).
    #[arg(long = "output-format", alias = "format", value_enum, default_value = "xml")]
    pub format: Format,
    /// Character encoding (shift_jis means Windows-31J / CP932; `--encoding` is its older
    /// spelling).
    #[arg(long = "output-encoding", alias = "encoding", value_enum, default_value = "utf-8")]
    pub encoding: TextEncoding,
    /// Reference date: ages, the 6-month lead for age transitions and file times derive from it.
    /// Defaults to today; give it for reproducible output.
    #[arg(long, value_name = "YYYYMMDD")]
    pub as_of: Option<String>,
    /// Share of 国保 members with flags, 0 to 1 (0.05 = 5%). The mix of the flagged stays: 70% both
    /// protective flags with ReasonCode 2 (50% 住基支援措置 with its end date), 10% 自己情報提供不可
    /// alone with ReasonCode 1, 12% 不開示該当 alone, 8% 自動応答不可 alone.
    #[arg(long, value_name = "R", default_value = "0.02", value_parser = parse_ratio, allow_hyphen_values = true)]
    pub flagged_ratio: u32,
    /// 副本 records per subscriber, 0 to 4: the first K InfoCodes of the bundled catalog (資格情報,
    /// 高額療養費, 限度額適用認定, 特定健診). Without it: 資格情報 for everyone and the others by
    /// chance (about 1.6 per subscriber).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(0..=4))]
    pub fukuhon_per_subscriber: Option<u32>,
    /// Write a nightly delta of N changes instead of the population: against the population that
    /// the same --seed, --subscribers, --as-of and --flagged-ratio generate, the union's 後期
    /// registrations of the members whose 75th birthday enters the 6-month window that day (with
    /// the hand-offs of the flagged), new 国保 members, address changes, losses, flag settings and
    /// releases, each for a different person. The changes are dated the next day: run them with
    /// --as-of one day later. --fukuhon-per-subscriber does not change a delta.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=99_999_999))]
    pub delta: Option<u64>,
    /// With --delta: the new 国保 members take the person numbers from N on instead of just after
    /// the population (N ≥ --subscribers). To run one delta against a small and a large ledger of
    /// the same --seed, --as-of and --flagged-ratio, generate it with the small --subscribers and
    /// the large one here: everyone it changes is in both ledgers, everyone it adds is new to both.
    #[arg(long, value_name = "N", requires = "delta", value_parser = clap::value_parser!(u64).range(1..=99_999_999))]
    pub newcomers_from: Option<u64>,
}

/// `--flagged-ratio`: a decimal from 0 to 1, kept in millionths.
fn parse_ratio(s: &str) -> Result<u32, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number: give a share from 0 to 1, such as 0.05"))?;
    if !(0.0..=1.0).contains(&r) {
        return Err(format!("{s} is outside 0 to 1: give a share such as 0.05 for 5%"));
    }
    Ok((r * 1e6).round() as u32)
}

pub fn run(a: Args) -> anyhow::Result<Exit> {
    let as_of = match &a.as_of {
        Some(s) => Date::parse(s).map_err(|e| anyhow::anyhow!("--as-of {s}: {}", e.message))?,
        None => Date(chrono::Local::now().date_naive()),
    };
    let opts = GenerateOptions {
        flagged_per_million: a.flagged_ratio,
        fukuhon_per_subscriber: a.fukuhon_per_subscriber,
        delta_newcomers_from: a.newcomers_from,
        ..GenerateOptions::new(a.subscribers, a.seed, a.format, a.encoding, as_of)
    };
    let started = std::time::Instant::now();
    let files = match a.delta {
        Some(n) => generate_delta(&opts, n, &a.out)?,
        None => generate(&opts, &a.out)?,
    };
    let (mut records, mut bytes) = (0u64, 0u64);
    for f in &files {
        let note = if f.replaced > 0 {
            format!("  ({} characters written as ● for 文字同定)", f.replaced)
        } else {
            String::new()
        };
        crate::say!("{:<44} {:>10} records {:>14} bytes{note}", f.name, f.records, f.bytes);
        records += f.records;
        bytes += f.bytes;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    crate::say!(
        "{} files, {records} records, {bytes} bytes in {secs:.2} s ({:.0} records/s, {:.1} MB/s) → {}",
        files.len(),
        records as f64 / secs,
        bytes as f64 / secs / 1e6,
        a.out.display()
    );
    Ok(Exit::Ok)
}
