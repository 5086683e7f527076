//! Shared by the reader targets: limits chosen from the input's length (so sample files work as
//! seeds unchanged, and the fuzzer still reaches the size-limit paths with small inputs), and the
//! checks every outcome must pass.

use nhi_linkage::domain::Catalog;
use nhi_linkage::formats::{FileRejected, FileSummary, Limits, RecordOutcome};
use std::sync::LazyLock;

/// The bundled layout catalog, parsed once (not per input).
pub fn catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::default_catalog);
    &CATALOG
}

/// Default limits, or tiny ones, by `selector` (the input's length).
pub fn limits(selector: usize) -> Limits {
    match selector % 4 {
        0 => Limits::default(),
        1 => Limits {
            max_field_bytes: 8,
            ..Limits::default()
        },
        2 => Limits {
            max_record_bytes: 64,
            ..Limits::default()
        },
        _ => Limits {
            max_depth: 3,
            max_field_bytes: 16,
            max_record_bytes: 256,
            ..Limits::default()
        },
    }
}

/// What must hold whatever the input: a rejected file names at least one diagnostic; a read file
/// counts every record it handed over; every rejected record carries at least one fault.
pub fn check(res: Result<FileSummary, FileRejected>, outcomes: &[RecordOutcome]) {
    match res {
        Ok(s) => {
            assert_eq!(s.records, outcomes.len() as u64, "records counted");
            let rejected = outcomes
                .iter()
                .filter(|o| matches!(o, RecordOutcome::Rejected { .. }))
                .count() as u64;
            assert_eq!(s.rejected, rejected, "rejected counted");
        }
        Err(r) => assert!(!r.diagnostics.is_empty(), "a rejected file names its error"),
    }
    for o in outcomes {
        if let RecordOutcome::Rejected { faults, .. } = o {
            assert!(!faults.is_empty(), "a rejected record names its errors");
        }
    }
}
