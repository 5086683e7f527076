//! Helpers every command shares: the config file (`--config`), `--as-of`, `--threads`, and
//! the checks before and after a refusal (writable places; refusing creates nothing).

use crate::domain::Date;
use crate::formats::writer::UnmappablePolicy;
use crate::formats::{Format, Limits, TextEncoding};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

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

/// Refuses, before anything is read, a folder the command will write into that it cannot write:
/// a read-only outbox found only after the whole night's work would leave the run committed and
/// unpublished. Each place is a folder that may not exist yet (then its nearest existing
/// ancestor must be a writable folder) or, for the ledger, a file that must open for writing.
/// Probing creates and removes a temporary file; nothing else is created.
pub fn check_writable(places: &[Place<'_>]) -> Result<()> {
    for place in places {
        match place {
            Place::Folder(what, p) => {
                let existing = p
                    .ancestors()
                    .map(|a| if a.as_os_str().is_empty() { Path::new(".") } else { a })
                    .find(|a| std::fs::symlink_metadata(a).is_ok())
                    .unwrap_or(Path::new("."));
                if !existing.is_dir() && existing == *p {
                    anyhow::bail!("{what} {} is not a folder; nothing was read or applied", p.display());
                }
                if !existing.is_dir() {
                    anyhow::bail!(
                        "{what} {}: {} is in the way and is not a folder; nothing was read or applied",
                        p.display(),
                        existing.display()
                    );
                }
                if let Err(e) = tempfile::Builder::new()
                    .prefix(".nhi-linkage-write-check-")
                    .tempfile_in(existing)
                {
                    anyhow::bail!(
                        "{what} {}: cannot write in {} ({}); nothing was read or applied. Make it writable for this \
                         user, or give another folder",
                        p.display(),
                        existing.display(),
                        e.kind()
                    );
                }
            }
            Place::File(what, p) => {
                if p.is_file() {
                    if let Err(e) = std::fs::OpenOptions::new().write(true).open(p) {
                        anyhow::bail!(
                            "{what} {}: cannot open it for writing ({}); nothing was read or applied",
                            p.display(),
                            e.kind()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// One place [`check_writable`] checks, named as the error should name it.
pub enum Place<'a> {
    Folder(&'a str, &'a Path),
    File(&'a str, &'a Path),
}

/// The places `run` and `migrate` write: the outbox, the reports folder, the ledger and its folder.
pub fn run_places<'a>(outbox: &'a Path, reports: &'a Path, ledger: &'a Path) -> [Place<'a>; 4] {
    let ledger_dir = ledger
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    [
        Place::Folder("outbox", outbox),
        Place::Folder("reports folder", reports),
        Place::Folder("ledger folder", ledger_dir),
        Place::File("ledger", ledger),
    ]
}

/// What was absent before a command ran, so that a refusal takes away what the command created
/// on the way (a new ledger with no run in it, its lock file, empty folders): refusing creates
/// nothing. Anything holding a run, or a file in a folder, stays.
#[derive(Debug)]
pub struct Footprint {
    ledger: Option<PathBuf>,
    /// folders absent before, deepest first
    folders: Vec<PathBuf>,
}

impl Footprint {
    pub fn note(ledger: &Path, folders: &[&Path]) -> Footprint {
        let mut absent: Vec<PathBuf> = Vec::new();
        let ledger_dir = ledger.parent().filter(|d| !d.as_os_str().is_empty());
        for f in folders.iter().copied().chain(ledger_dir) {
            for a in f.ancestors().filter(|a| !a.as_os_str().is_empty()) {
                if std::fs::symlink_metadata(a).is_ok() {
                    break;
                }
                if !absent.iter().any(|x| x == a) {
                    absent.push(a.to_path_buf());
                }
            }
        }
        absent.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        Footprint {
            ledger: std::fs::symlink_metadata(ledger).is_err().then(|| ledger.to_path_buf()),
            folders: absent,
        }
    }

    /// Best effort: a refusal is reported whatever happens here.
    pub fn undo(&self) {
        if let Some(l) = &self.ledger {
            match crate::ledger::discard_unused(l) {
                Ok(true) => tracing::info!(ledger = %l.display(), "removed the new ledger the refused run created"),
                Ok(false) => {}
                Err(e) => tracing::warn!(ledger = %l.display(), "cannot remove the new ledger: {e:#}"),
            }
        }
        for f in &self.folders {
            let _ = std::fs::remove_dir(f); // only when empty
        }
    }
}
