//! `nhi-linkage generate`: writes a deterministic synthetic inbox (same arguments → the same
//! bytes) for load tests, demos and schema checks. See [`crate::synth`].

use super::Exit;
use crate::domain::Date;
use crate::formats::{Format, TextEncoding};
use crate::synth::{GenerateOptions, generate, generate_delta};
use std::path::PathBuf;

/// Write a deterministic synthetic inbox (国保 and 後期 files) for tests and demos
///
/// For four Tokyo municipalities: a 国保 SubscriberChange, FlagChange (about 2% DV-flagged
/// members), Fukuhon (副本) and AgeTransitionHandoff file; plus the union's SubscriberChange with
/// the 後期 registrations: members turning 75 within 6 months of --as-of (future-dated, reason 01)
/// and 障害認定 members aged 65–74 (reason 02).
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
    /// File syntax.
    #[arg(long, value_enum, default_value = "xml")]
    pub format: Format,
    /// Character encoding (shift_jis means Windows-31J / CP932).
    #[arg(long, value_enum, default_value = "utf-8")]
    pub encoding: TextEncoding,
    /// Reference date: ages, the 6-month lead for age transitions and file times derive from it.
    /// Defaults to today; give it for reproducible output.
    #[arg(long, value_name = "YYYYMMDD")]
    pub as_of: Option<String>,
    /// Write a nightly delta of N changes (address changes, losses, flag settings and releases)
    /// against the population that the same --seed, --subscribers and --as-of generate, instead of
    /// that population. The changes are dated the next day: run them with --as-of one day later.
    #[arg(long, value_name = "N")]
    pub delta: Option<u64>,
}

pub fn run(a: Args) -> anyhow::Result<Exit> {
    let as_of = match &a.as_of {
        Some(s) => Date::parse(s).map_err(|e| anyhow::anyhow!("--as-of {s}: {}", e.message))?,
        None => Date(chrono::Local::now().date_naive()),
    };
    let opts = GenerateOptions {
        subscribers: a.subscribers,
        seed: a.seed,
        format: a.format,
        encoding: a.encoding,
        as_of,
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
        println!("{:<44} {:>10} records {:>14} bytes{note}", f.name, f.records, f.bytes);
        records += f.records;
        bytes += f.bytes;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{} files, {records} records, {bytes} bytes in {secs:.2} s ({:.0} records/s, {:.1} MB/s) → {}",
        files.len(),
        records as f64 / secs,
        bytes as f64 / secs / 1e6,
        a.out.display()
    );
    Ok(Exit::Ok)
}
