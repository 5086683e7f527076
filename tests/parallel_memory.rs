//! Reading in pieces keeps memory bounded by the pieces in flight: twice the file costs no more
//! heap. One test in this binary, so that the allocation counter sees only it.

mod heap;

use nhi_linkage::domain::Catalog;
use nhi_linkage::formats::{ParallelConfig, ReadOptions, ReadPath, read_input_with};
use std::io::Write;

/// A valid Shift_JIS CSV SubscriberChange file of `records` rows.
fn write_csv(path: &std::path::Path, records: u64) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all(b"H,SubscriberChange,1,MEM-1,131045,20261121230000,1,1\r\n")
        .unwrap();
    let (row, _, _) = encoding_rs::SHIFT_JIS.encode(
        "1,20260401,131045,KEY,,12345,01,123456789018,131041,1234567,山田　太郎,ﾔﾏﾀﾞ ﾀﾛｳ,1,19600101,20260401,03,,,1,160-0022,\"東京都新宿区新宿一丁目1番1号 ソン﨑ハイツ‐101\"\r\n",
    );
    let at = row.windows(3).position(|w| w == b"KEY").unwrap();
    for seq in 1..=records {
        write!(w, "D,{seq},").unwrap();
        w.write_all(&row[..at]).unwrap();
        write!(w, "{seq:016}").unwrap();
        w.write_all(&row[at + 3..]).unwrap();
    }
    write!(w, "T,{records}\r\n").unwrap();
    w.flush().unwrap();
}

/// Peak heap growth while reading `path` in pieces; the outcomes are dropped as they come.
fn read_peak(path: &std::path::Path, catalog: &Catalog, config: &ParallelConfig) -> usize {
    let opts = ReadOptions {
        catalog,
        limits: Default::default(),
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut n = 0u64;
    let ((r, how), peak) =
        heap::peak_during(|| pool.install(|| read_input_with(path, "mem", &opts, &mut |_| n += 1, config)));
    let s = r.unwrap();
    assert_eq!((s.records, s.rejected, n), (s.records, 0, s.records));
    assert!(matches!(how, ReadPath::Parallel { pieces } if pieces > 50), "{how:?}");
    peak
}

#[test]
fn memory_does_not_grow_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::default_catalog();
    let config = ParallelConfig {
        min_file_bytes: 0,
        chunk_bytes: 128 * 1024,
        window: Some(4),
        single_thread: false,
    };
    let (small, large) = (dir.path().join("small.csv"), dir.path().join("large.csv"));
    write_csv(&small, 40_000); // about 9 MB
    write_csv(&large, 160_000); // about 36 MB
    let a = read_peak(&small, &catalog, &config);
    let b = read_peak(&large, &catalog, &config);
    // 4 pieces of 128 KiB (plus what is read ahead to find a boundary) with their records and
    // parsers: a few MB, whatever the size of the file
    assert!(b < 12 << 20, "peak {b} bytes reading 36 MB");
    assert!(b < a + a / 2, "peak {a} bytes for 9 MB, {b} bytes for 36 MB");
}
