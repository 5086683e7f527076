//! A bounded smoke run of the fuzz targets (tests/fuzz) inside `cargo test`: proptest mutates the
//! sample files (bit flips, byte edits, truncation, splices of two samples) and feeds them to
//! both readers and to `read_input`. No input may panic; a rejected file names spec codes; counts
//! agree with what was handed over. About 3 000 inputs, a few seconds.

use nhi_linkage::domain::Catalog;
use nhi_linkage::error::ErrorCode;
use nhi_linkage::formats::{
    FileRejected, FileSummary, Limits, ReadOptions, RecordOutcome, csv_reader, read_input, xml_reader,
};
use proptest::prelude::*;
use std::path::Path;
use std::sync::LazyLock;

static SAMPLES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "xml" || x == "csv") {
                out.push(std::fs::read(p).unwrap());
            }
        }
    }
    out.sort();
    out
});
static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::default_catalog);

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Splice {
        at: usize,
        other: usize,
        from: usize,
        len: usize,
    },
    Duplicate {
        from: usize,
        len: usize,
    },
}

fn apply(mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = b.len().max(1);
    match *m {
        Mutation::FlipBit(i, bit) => {
            if !b.is_empty() {
                b[i % n] ^= 1 << (bit % 8);
            }
        }
        Mutation::SetByte(i, v) => {
            if !b.is_empty() {
                b[i % n] = v;
            }
        }
        Mutation::Truncate(i) => b.truncate(i % n),
        Mutation::Splice { at, other, from, len } => {
            let o = &SAMPLES[other % SAMPLES.len()];
            let from = from % o.len().max(1);
            let piece = &o[from..(from + len).min(o.len())];
            let at = at % n;
            b.splice(at..at, piece.iter().copied());
        }
        Mutation::Duplicate { from, len } => {
            let from = from % n;
            let piece = b[from.min(b.len())..(from + len).min(b.len())].to_vec();
            b.splice(from.min(b.len())..from.min(b.len()), piece);
        }
    }
    b
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<usize>(), prop_oneof![Just(b'<'), Just(b'>'), Just(b'"'), Just(b','), Just(b'\n'), Just(b'&'), Just(0u8), Just(0x82u8), Just(0xEFu8), any::<u8>()])
            .prop_map(|(i, v)| Mutation::SetByte(i, v)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), any::<usize>(), any::<usize>(), 1usize..400)
            .prop_map(|(at, other, from, len)| Mutation::Splice { at, other, from, len }),
        1 => (any::<usize>(), 1usize..2000).prop_map(|(from, len)| Mutation::Duplicate { from, len }),
    ]
}

fn check(res: Result<FileSummary, FileRejected>, outcomes: &[RecordOutcome]) -> Result<(), TestCaseError> {
    match res {
        Ok(s) => {
            prop_assert_eq!(s.records, outcomes.len() as u64);
            let rejected = outcomes
                .iter()
                .filter(|o| matches!(o, RecordOutcome::Rejected { .. }))
                .count() as u64;
            prop_assert_eq!(s.rejected, rejected);
        }
        Err(r) => {
            prop_assert!(!r.diagnostics.is_empty());
            for d in &r.diagnostics {
                prop_assert!(ErrorCode::parse(d.code.as_str()).is_some());
            }
        }
    }
    for o in outcomes {
        if let RecordOutcome::Rejected { faults, .. } = o {
            prop_assert!(!faults.is_empty());
        }
    }
    Ok(())
}

fn limits(sel: u8) -> Limits {
    match sel % 3 {
        0 => Limits::default(),
        1 => Limits {
            max_field_bytes: 16,
            max_record_bytes: 512,
            max_depth: 4,
            ..Limits::default()
        },
        _ => Limits {
            max_record_bytes: 100,
            ..Limits::default()
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_samples_never_panic(sample in any::<usize>(), muts in prop::collection::vec(mutation(), 1..4), sel in any::<u8>()) {
        let mut b = SAMPLES[sample % SAMPLES.len()].clone();
        for m in &muts {
            b = apply(b, m);
        }
        let opts = ReadOptions { catalog: &CATALOG, limits: limits(sel) };
        let mut out = Vec::new();
        let r = xml_reader::read_from(&b[..], "m.xml", &opts, &mut |o| out.push(o));
        check(r, &out)?;
        let mut out = Vec::new();
        let r = csv_reader::read_from(&b[..], "m.csv", &opts, &mut |o| out.push(o));
        check(r, &out)?;
        if sel % 8 == 0 {
            // the dispatching entry point, through a real file
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), &b).unwrap();
            let mut out = Vec::new();
            let r = read_input(f.path(), "m", &opts, &mut |o| out.push(o));
            check(r, &out)?;
        }
    }
}
