//! nhi-linkage: reads insurers' bulk files strictly, applies them per person against a SQLite
//! ledger, keeps DV-protection flags across the 国保→後期 transfer and writes linkage files for
//! the medical insurers' intermediate server (医療保険者等向け中間サーバー).

// Nested `if let` reads better than let-chains in several places here.
#![allow(clippy::collapsible_if, clippy::too_many_arguments)]

pub mod domain;
pub mod error;

pub use error::{Diagnostic, ErrorCode};
pub mod age_transition;
pub mod commands;
pub mod engine;
pub mod formats;
pub mod ledger;
pub mod logging;
pub mod migrate;
pub mod publish;
pub mod report;
pub mod shard;
pub mod synth;

/// Makes everything this process creates owner-only: umask 077, set once at the start of the
/// command before any thread exists. Folders come out 0700 and files 0600 whoever creates them
/// (this crate, SQLite's -wal/-shm/-journal, tempfile), whatever umask the scheduler left; the
/// few places that create folders name 0700 explicitly as well, for library callers.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file mode mask; called before any thread starts.
    unsafe {
        libc::umask(0o077);
    }
}
