//! Reader throughput: `read_input` on ~30 MB of SubscriberChange records (XML and CSV, UTF-8 and
//! Shift_JIS), serial and in pieces on pools of 1 and 2 threads, against a raw quick-xml event
//! scan and a raw csv ByteRecord scan as reference.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nhi_linkage::domain::{Catalog, FileKind, InsurerNumber, Timestamp};
use nhi_linkage::formats::writer::{RecordWriter, UnmappablePolicy};
use nhi_linkage::formats::{FileHeader, Format, ParallelConfig, ReadOptions, ReadPath, TextEncoding, read_input_with};
use std::hint::black_box;
use std::io::Write;

const TARGET_BYTES: u64 = 30 * 1024 * 1024;

fn write_file(format: Format, encoding: TextEncoding) -> tempfile::NamedTempFile {
    let header = FileHeader {
        kind: FileKind::SubscriberChange,
        file_identifier: "BENCH-1".into(),
        sender: InsurerNumber::parse("131045").unwrap(),
        creation_time: Timestamp::parse("20261121230000").unwrap(),
        file_sequence: 1,
        format,
        encoding,
    };
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut w = RecordWriter::start(
        std::io::BufWriter::new(f.reopen().unwrap()),
        header,
        UnmappablePolicy::Reject,
    )
    .unwrap();
    let mut seq = 0u64;
    let mut bytes = 0u64;
    while bytes < TARGET_BYTES {
        seq += 1;
        let s = seq.to_string();
        let key = format!("{:016}", seq);
        let vals = [
            s.as_str(),
            "1",
            "20260401",
            "131045",
            &key,
            "",
            "12345",
            "01",
            "123456789018",
            "131041",
            "1234567",
            "山田　太郎",
            "ﾔﾏﾀﾞ ﾀﾛｳ",
            "1",
            "19600101",
            "20260401",
            "03",
            "",
            "",
            "1",
            "160-0022",
            "東京都新宿区新宿一丁目1番1号 ソン﨑ハイツ101",
        ];
        w.write(&vals, &[]).unwrap();
        bytes = 400 * seq; // rough; the exact size is measured below
    }
    let (mut out, _, _) = w.finish().unwrap();
    out.flush().unwrap();
    f
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::default_catalog();
    let opts = ReadOptions {
        catalog: &catalog,
        limits: Default::default(),
    };
    let mut g = c.benchmark_group("readers");
    g.sample_size(10);
    let serial = ParallelConfig {
        min_file_bytes: u64::MAX,
        ..Default::default()
    };
    let pieces = ParallelConfig {
        single_thread: true,
        ..Default::default()
    };
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2]
        .into_iter()
        .map(|n| (n, rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()))
        .collect();
    for format in [Format::Xml, Format::Csv] {
        for enc in [TextEncoding::Utf8, TextEncoding::ShiftJis] {
            let f = write_file(format, enc);
            let path = f.path().to_owned();
            let len = std::fs::metadata(&path).unwrap().len();
            g.throughput(Throughput::Bytes(len));
            let read = |config: &ParallelConfig| {
                let mut n = 0u64;
                let (s, how) = read_input_with(&path, "bench", &opts, &mut |_| n += 1, config);
                assert_eq!(s.unwrap().rejected, 0);
                assert!(!matches!(how, ReadPath::Fallback { .. }));
                black_box(n)
            };
            let name = format!("read_input/{}/{:?}/serial", format.extension(), enc);
            g.bench_function(&name, |b| b.iter(|| read(&serial)));
            for (threads, pool) in &pools {
                let name = format!("read_input/{}/{:?}/pieces-{threads}-threads", format.extension(), enc);
                g.bench_function(&name, |b| b.iter(|| pool.install(|| read(&pieces))));
            }
            if enc == TextEncoding::Utf8 {
                match format {
                    Format::Xml => g.bench_function("raw/quick-xml events", |b| {
                        b.iter(|| {
                            let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
                            let mut r = quick_xml::Reader::from_reader(file);
                            let mut buf = Vec::new();
                            let mut n = 0u64;
                            loop {
                                buf.clear();
                                match r.read_event_into(&mut buf).unwrap() {
                                    quick_xml::events::Event::Eof => break,
                                    _ => n += 1,
                                }
                            }
                            black_box(n)
                        })
                    }),
                    Format::Csv => g.bench_function("raw/csv ByteRecord", |b| {
                        b.iter(|| {
                            let mut r = csv::ReaderBuilder::new()
                                .has_headers(false)
                                .flexible(true)
                                .from_path(&path)
                                .unwrap();
                            let mut rec = csv::ByteRecord::new();
                            let mut n = 0u64;
                            while r.read_byte_record(&mut rec).unwrap() {
                                n += rec.len() as u64;
                            }
                            black_box(n)
                        })
                    }),
                };
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
