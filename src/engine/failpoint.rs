//! Test hooks: `NHI_FAILPOINT=<name>[,<name>…]` stops the process at a phase boundary (crash
//! tests, R12), holds it there until a signal arrives (signal tests) or injects a writer fault
//! (R4 tests). Unset in production: every hook is one environment lookup.

use super::interrupt;
use std::path::PathBuf;

/// Test hook: `NHI_FAILPOINT=<name>` stops the process at that phase (crash tests, R12) or
/// injects a writer fault (R4 tests).
pub(crate) fn failpoint(name: &str) -> bool {
    std::env::var("NHI_FAILPOINT").is_ok_and(|v| v.split(',').any(|p| p == name))
}

/// Test hook: `NHI_FAILPOINT=<name>` exits the process (code 86) at that phase.
pub(crate) fn crash_at(name: &str) {
    if failpoint(name) {
        eprintln!("nhi-linkage: failpoint {name}: simulated crash");
        std::process::exit(86);
    }
}

/// Test hook: `NHI_FAILPOINT=<name>` holds the run at that phase boundary until a signal
/// arrives (at most 60 s), so signal tests hit each check deterministically.
pub(crate) fn wait_at(name: &str) {
    if failpoint(name) {
        eprintln!("nhi-linkage: failpoint {name}: waiting for a signal");
        let start = std::time::Instant::now();
        while !interrupt::requested() && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Test hook: `NHI_FAILPOINT=pause-after-file` holds the run after a file was read, until the
/// file named by `NHI_FAILPOINT_RESUME` exists (at most 60 s), so a test can change the file
/// between the reading and the check that it did not change.
pub(crate) fn pause_after_file(name: &str) {
    if failpoint("pause-after-file") {
        eprintln!("nhi-linkage: failpoint pause-after-file: read {name}");
        let gate = std::env::var_os("NHI_FAILPOINT_RESUME").map(PathBuf::from);
        let start = std::time::Instant::now();
        while gate.as_ref().is_some_and(|g| !g.exists()) && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
