//! The CSV reader on arbitrary bytes: never panics, never loops, outcomes are consistent.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nhi_linkage::formats::{ReadOptions, csv_reader};

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions {
        catalog: common::catalog(),
        limits: common::limits(data.len()),
    };
    let mut out = Vec::new();
    let res = csv_reader::read_from(data, "fuzz.csv", &opts, &mut |o| out.push(o));
    common::check(res, &out);
});
