//! Helpers every command shares: the config file (`--config`), `--as-of`, `--threads`.

use crate::domain::Date;
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{Format, Limits, TextEncoding};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::PathBuf;

/// The config file: every option of `run`, by the same names with underscores. Every command
/// that shares options with `run` takes `--config` and uses the keys it has options for (flags
/// win); an unknown key, in any table, is an error naming it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub inbox: Option<PathBuf>,
    pub outbox: Option<PathBuf>,
    pub reports: Option<PathBuf>,
    pub ledger: Option<PathBuf>,
    pub as_of: Option<String>,
    pub output_format: Option<Format>,
    pub output_encoding: Option<TextEncoding>,
    pub unmappable: Option<UnmappablePolicy>,
    pub threads: Option<usize>,
    pub catalog: Option<PathBuf>,
    pub chunk_records: Option<u64>,
    /// `"I/N"`, as `--shard`
    pub shard: Option<String>,
    /// `"utf-8"` or `"shift_jis"`, as `--report-encoding`
    pub report_encoding: Option<crate::report::ReportEncoding>,
    #[serde(default)]
    pub limits: Option<Limits>,
}

pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        None => Ok(Config::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("invalid config {}", p.display()))
        }
    }
}

pub fn parse_as_of(s: Option<String>) -> Result<Date> {
    match s {
        Some(s) => Date::parse(&s).map_err(|e| anyhow::anyhow!("--as-of {s}: {e}")),
        None => Ok(Date(chrono::Local::now().date_naive())),
    }
}

pub fn setup_threads(n: Option<usize>) -> Result<()> {
    if let Some(n) = n {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("cannot set up worker threads")?;
    }
    Ok(())
}
