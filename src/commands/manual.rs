//! `nhi-linkage completions SHELL` and `nhi-linkage man`: shell completion scripts (clap_complete)
//! and manual pages (clap_mangen), generated from the same argument definitions as `--help`, so
//! they never disagree with the program that prints them.

use super::{Cli, Exit};
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::PathBuf;

/// Print a shell completion script, e.g. `nhi-linkage completions bash > /etc/bash_completion.d/nhi-linkage`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print the manual page (roff) of nhi-linkage, or write one page per command into a folder.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `nhi-linkage.1` and `nhi-linkage-<command>.1` for every command into this folder
    /// (e.g. /usr/local/share/man/man1) instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn completions(a: CompletionsArgs) -> Result<Exit> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "nhi-linkage", &mut out);
    write_stdout(&out)?;
    Ok(Exit::Ok)
}

pub fn man(a: ManArgs) -> Result<Exit> {
    let cmd = Cli::command();
    match a.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write manual pages into {}", dir.display()))?;
            crate::say!("manual pages written into {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            write_stdout(&out)?;
        }
    }
    Ok(Exit::Ok)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(bytes).and_then(|()| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}
