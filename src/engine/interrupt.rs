//! SIGTERM / SIGINT (Ctrl-C) during a run.
//!
//! A signal only sets a flag; the run polls it between phases (after reading, after applying,
//! before commit) and, when set, rolls the transaction back, removes its staging folders and
//! returns [`Interrupted`]. Nothing is committed or published, so a rerun starts from the same
//! ledger state. A second signal while the first is still pending ends the process at once
//! (status 130): that is a crash, which R12 already covers (rerun finishes or discards it).
//!
//! The flag is process-global because signals are; `signal-hook`'s `flag` module does only an
//! atomic store in the handler (async-signal-safe) and is a small, maintained dependency.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of a run stopped by a signal (documented in README.md), as 128 + SIGINT.
pub const EXIT_STATUS: i32 = 130;

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// The run was stopped by a signal before commit; nothing was committed or published.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal at {phase}: nothing was committed or published; run again to complete")]
pub struct Interrupted {
    /// The phase boundary at which the signal was noticed.
    pub phase: &'static str,
}

/// Installs the SIGTERM and SIGINT handlers (idempotent). Called by the binary, not the library,
/// so that embedding programs keep their own signal handling.
pub fn install() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        static DONE: OnceLock<()> = OnceLock::new();
        if DONE.get().is_some() {
            return Ok(());
        }
        for sig in [SIGTERM, SIGINT] {
            // Order matters: the conditional shutdown sees the flag as it was before this signal.
            signal_hook::flag::register_conditional_shutdown(sig, EXIT_STATUS, Arc::clone(flag()))?;
            signal_hook::flag::register(sig, Arc::clone(flag()))?;
        }
        let _ = DONE.set(());
    }
    Ok(())
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    flag().load(Ordering::SeqCst)
}

/// Requests a stop as a signal would (tests, and programs embedding the engine).
pub fn request() {
    flag().store(true, Ordering::SeqCst);
}

/// Returns `Err(Interrupted)` if a stop was requested.
pub fn check(phase: &'static str) -> Result<(), Interrupted> {
    if requested() {
        tracing::warn!(phase, "stop requested by a signal");
        Err(Interrupted { phase })
    } else {
        Ok(())
    }
}
